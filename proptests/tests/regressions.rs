//! Reproducers of core bugs found by the state-machine test, as plain deterministic tests.
//!
//! Each test FAILS while its bug is open (see `berth_proptests::model::KNOWN_CORE_BUGS`) and
//! passes once it is fixed; then drop the bug's id from `KNOWN_CORE_BUGS` so the state-machine
//! test generates those commands again.
//!
//! All three end in the worst outcome a content store can have: a blob stored under a digest
//! its bytes do not hash to. Each test commits and checks the stored blob (the damage), then
//! asserts the wrong state that caused it (offset or digest after the fault).
//!
//! `rewrite-rollback` and `rewrite-crash` are excluded from the state-machine test's commands
//! (`KNOWN_CORE_BUGS`); `restart-keeps-stale-checkpoints` needs damage from outside that the
//! model does not generate, so it lives only here. `midstate-length-unchecked` was found by the
//! `checkpoint_decode` fuzz target: it panics instead of storing a wrong blob.

use std::panic::{catch_unwind, AssertUnwindSafe};

use berth_core::content::{Ingest, IngestError, IngestPaths, Input, OpenRequest, Recovery, Reply};
use berth_core::digest::{Algorithm, Hasher};
use berth_core::op::errno;
use berth_core::{Digest, Instant, Machine};
use berth_proptests::host::{drive, Action, Drive, Match, MemHost, Rule};

const DIR: &str = "content/ingest/r";
const BLOBS: &str = "content/blobs";
const DATA: &str = "content/ingest/r/data";
const STATE: &str = "content/ingest/r/state";

/// An ingest on a host, driven request by request.
struct Rig {
    host: MemHost,
    ingest: Option<Ingest>,
    now: u64,
}

impl Rig {
    fn new() -> Self {
        let mut rig = Rig {
            host: MemHost::new(),
            ingest: None,
            now: 1,
        };
        let recovery = rig.open();
        assert_eq!(recovery, Recovery::Created);
        rig
    }

    fn now(&mut self) -> Instant {
        self.now += 1;
        Instant(self.now)
    }

    fn open(&mut self) -> Recovery {
        let now = self.now();
        let req = OpenRequest {
            namespace: "default".into(),
            reference: "r".into(),
            expected: None,
            total: 0,
            paths: IngestPaths {
                dir: DIR.into(),
                blobs: BLOBS.into(),
            },
        };
        let mut m = Ingest::open(now, req);
        match drive(&mut self.host, &mut m, now) {
            Ok(Drive::Done(Ok(Reply::Opened { recovery, .. }))) => {
                self.ingest = Some(m);
                recovery
            }
            other => panic!("open: {other:?}"),
        }
    }

    /// One request; `None` if the host crashed during it.
    fn request(&mut self, input: Input) -> Option<Result<Reply, IngestError>> {
        let now = self.now();
        let m = self.ingest.as_mut().expect("open");
        m.handle(now, input).expect("request accepted");
        match drive(&mut self.host, m, now).expect("completions accepted") {
            Drive::Done(d) => Some(d),
            Drive::Crashed => None,
            Drive::Quiet => panic!("machine went quiet"),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<Result<Reply, IngestError>> {
        self.request(Input::Write {
            offset,
            data: data.to_vec().into(),
        })
    }

    fn offset(&self) -> u64 {
        self.ingest.as_ref().expect("open").status().offset
    }

    fn close_and_reopen(&mut self) -> Recovery {
        assert_eq!(self.request(Input::Close), Some(Ok(Reply::Closed)));
        self.ingest = None;
        self.open()
    }

    fn crash_and_reopen(&mut self) -> Recovery {
        self.ingest = None;
        self.host.crash(false);
        self.open()
    }

    /// Commits without checks and asserts the stored blob hashes to the digest it is stored as.
    fn commit_and_check_blob(&mut self) {
        let Some(Ok(Reply::Committed { digest, .. })) = self.request(Input::Commit {
            size: 0,
            expected: None,
        }) else {
            panic!("commit failed");
        };
        let path = format!("{BLOBS}/sha256/{}", digest.hex());
        let blob = self.host.file(&path).expect("blob stored").to_vec();
        assert_eq!(
            Digest::sha256(&blob),
            digest,
            "blob stored as {digest} holds {blob:?}, which hashes to something else"
        );
    }

    fn fail_next(&mut self, op: &'static str, path: &str, action: Action) {
        self.host.push_rule(Rule {
            tag: 9,
            when: Match::OpOn(op, path.into()),
            skip: 0,
            action,
        });
    }
}

/// `rewrite-rollback`: a write at offset 0 over existing data truncates the data file first.
/// When a later Op of that write fails (here the data write, ENOSPC), `Ingest::rollback`
/// restores the old offset and hash, although the bytes they describe were just truncated away.
///
/// Expected: the failed rewrite leaves offset 0 (the truncate happened; nothing can restore the
/// old bytes). Actual: offset 3 with the hash of "abc" over an empty data file; a commit then
/// extends the file with zeros and stores `[0, 0, 0]` as `sha256("abc")`.
#[test]
fn failed_rewrite_rolls_back_to_bytes_it_truncated() {
    let mut rig = Rig::new();
    assert!(matches!(rig.write(0, b"abc"), Some(Ok(Reply::Status(_)))));
    rig.fail_next("write", DATA, Action::Fail(errno::ENOSPC));
    assert!(matches!(
        rig.write(0, b"xyz"),
        Some(Err(IngestError::Io { .. }))
    ));
    assert_eq!(
        rig.host.file(DATA),
        Some(&b""[..]),
        "the rewrite truncated the data"
    );
    let offset = rig.offset();
    let digest = rig.ingest.as_ref().unwrap().digest();
    rig.commit_and_check_blob();
    assert_eq!(
        (offset, digest),
        (0, Digest::sha256(b"")),
        "after the failed rewrite the ingest claims bytes its data file no longer has"
    );
}

/// `rewrite-crash`: a crash during a rewrite, after the truncate and the new data but before
/// the new checkpoint, leaves the old checkpoint in the state file. Resume takes any slot whose
/// offset the data file's length covers (`checkpoint::best`), so it resumes at 3 with the
/// hash of "abc" over the bytes "xyz".
///
/// Expected: resume at 0 (no checkpoint describes the bytes now in the file). Actual:
/// `Resumed { offset: 3 }`; a commit then stores "xyz" as `sha256("abc")`.
#[test]
fn crash_during_rewrite_resumes_from_checkpoint_of_old_bytes() {
    let mut rig = Rig::new();
    assert!(matches!(rig.write(0, b"abc"), Some(Ok(Reply::Status(_)))));
    rig.fail_next("write", STATE, Action::Crash);
    assert_eq!(rig.write(0, b"xyz"), None, "crashed before the checkpoint");
    assert_eq!(rig.host.file(DATA), Some(&b"xyz"[..]));
    let recovery = rig.crash_and_reopen();
    let offset = rig.offset();
    rig.commit_and_check_blob();
    assert_eq!(
        offset, 0,
        "resumed with {recovery:?}: a checkpoint of bytes the rewrite removed"
    );
}

/// `restart-keeps-stale-checkpoints`: when resume finds no checkpoint the data file covers, the
/// ingest restarts at 0 with `seq = 0` but leaves the old slots (higher seqs) in the state
/// file. The next checkpoint (seq 1) overwrites only one slot; the other keeps seq 2, and once
/// the data file is long enough again, resume picks it: the hash of the old bytes.
///
/// The data file can fall behind the checkpoints without any rewrite: the state file is written
/// after the data and neither is fsynced, so a power loss may keep the state's pages and drop
/// the data's (`MemHost::file_mut` models that).
///
/// Expected: resume at 10 with the hash of "0123456789" (or at 0). Actual: resume at 10 with
/// the hash of "abcdefghij"; a commit stores "0123456789" as `sha256("abcdefghij")`.
#[test]
fn restart_leaves_stale_checkpoints_that_win_later() {
    let mut rig = Rig::new();
    assert!(rig.write(0, b"abcdef").is_some()); // seq 1, slot 1
    assert!(rig.write(6, b"ghij").is_some()); // seq 2, slot 0
    assert_eq!(rig.request(Input::Close), Some(Ok(Reply::Closed)));
    rig.ingest = None;
    // Power loss: the data file kept only its first 2 bytes, the state file all of its pages.
    rig.host.file_mut(DATA).unwrap().truncate(2);
    let recovery = rig.open();
    assert!(
        matches!(recovery, Recovery::Restarted { .. }),
        "no checkpoint fits 2 bytes: {recovery:?}"
    );
    assert_eq!(rig.offset(), 0);
    assert!(rig.write(0, b"0123456789").is_some()); // seq 1 again, slot 1
    let recovery = rig.close_and_reopen();
    let digest = rig.ingest.as_ref().unwrap().digest();
    rig.commit_and_check_blob();
    assert_eq!(
        digest,
        Digest::sha256(b"0123456789"),
        "resumed with {recovery:?} from a checkpoint written before the restart"
    );
}

/// Where sha2 0.11 keeps the block count in an exported sha256 midstate: after the version and
/// algorithm bytes and the 32-byte chaining state (`[1, 1, state; 32, blocks: u64 LE, pos: u8,
/// buffer; 63]`).
const SHA256_BLOCKS_AT: usize = 2 + 32;

/// `midstate-length-unchecked`: `Hasher::import(bytes, len)` does not check that the midstate
/// covers `len` bytes (block count × block size + buffered bytes). A slot whose checksum is
/// right but whose midstate disagrees with its offset (a bug in an older writer, a crafted
/// file: the checksum is a plain sha256, not a MAC) is accepted; with an absurd block count
/// `Hasher::digest` then overflows `8 * (pos + 64 * blocks)`: a panic where overflow checks
/// are on (debug builds, the fuzzers), a silently wrong digest where they are off.
///
/// Found by `fuzz/fuzz_targets/checkpoint_decode.rs` within seconds. Expected: `import` returns
/// `MidstateError::Corrupt`. Actual: `Ok`, and `digest()` panics.
#[test]
fn import_accepts_a_midstate_that_does_not_cover_its_length() {
    let mut h = Hasher::new(Algorithm::Sha256);
    h.update(b"hello");
    let mut state = h.export();
    assert_eq!(
        state.len(),
        106,
        "sha2's midstate layout changed; fix SHA256_BLOCKS_AT"
    );
    state[SHA256_BLOCKS_AT..SHA256_BLOCKS_AT + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let imported = Hasher::import(&state, 5);
    let digest = catch_unwind(AssertUnwindSafe(|| imported.map(|h| h.digest())));
    assert!(
        matches!(digest, Ok(Err(_))),
        "import must refuse an absurd block count; it gave {}",
        match digest {
            Ok(Ok(_)) => "Ok and a (wrong) digest",
            Ok(Err(_)) => "an error",
            Err(_) => "Ok, and digest() panicked",
        }
    );
    // 1 block + 5 buffered bytes is 69 bytes, not the 5 claimed.
    state[SHA256_BLOCKS_AT..SHA256_BLOCKS_AT + 8].copy_from_slice(&1u64.to_le_bytes());
    assert!(
        Hasher::import(&state, 5).is_err(),
        "a midstate of 69 bytes imported as 5 bytes"
    );
}

/// The same through the machine: resume trusts such a slot, and the ingest panics on
/// `digest()` (and on commit). Expected: the slot is refused (`Recovery::Restarted`).
#[test]
fn resume_trusts_a_checksummed_slot_with_an_inconsistent_midstate() {
    let mut rig = Rig::new();
    assert!(rig.write(0, b"hello").is_some()); // seq 1, slot 1
    assert_eq!(rig.request(Input::Close), Some(Ok(Reply::Closed)));
    rig.ingest = None;
    let state = rig.host.file_mut(STATE).unwrap();
    let slot = &mut state[512..1024];
    let at = 42 + SHA256_BLOCKS_AT; // the midstate starts at byte 42 of a slot
    slot[at..at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let sum = Digest::sha256(&slot[..480]);
    slot[480..].copy_from_slice(sum.raw());
    let recovery = rig.open();
    let ingest = rig.ingest.as_ref().unwrap();
    let digest = catch_unwind(AssertUnwindSafe(|| ingest.digest()));
    assert!(
        matches!(recovery, Recovery::Restarted { .. }),
        "opened with {recovery:?}; digest() then {}",
        if digest.is_err() {
            "panicked"
        } else {
            "returned a wrong digest"
        }
    );
}
