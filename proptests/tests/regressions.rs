//! Regression tests of four core bugs the state-machine test and the fuzzers found, as plain
//! deterministic tests. All four ended in the worst outcome a content store can have: a blob
//! stored under a digest its bytes do not hash to (or a panic on the way there). Each test
//! drives the ingest into the situation, asserts the state the fix guarantees (offset, digest,
//! recovery), and where it gets that far commits and checks the stored blob.
//!
//! * `rewrite-rollback`, `rewrite-crash`: a write at offset 0 over existing data (a rewrite)
//!   now first checkpoints offset 0 with a fresh hash under a new seq (the *zero checkpoint*),
//!   then truncates the data file, writes the data and the final checkpoint. A failure or crash
//!   after the zero checkpoint leaves the ingest at 0; one in the zero checkpoint leaves the
//!   old offset over the old bytes. The state-machine test covers every stage of a rewrite
//!   (`model::Stage`, `model::CrashPoint`); these are its simplest cases.
//! * `restart-keeps-stale-checkpoints`: reopening outranks every whole slot, covered or not.
//!   It needs damage from outside that the model does not generate, so it lives only here.
//! * `midstate-length-unchecked`: `Hasher::import` refuses a midstate that does not cover its
//!   length. Found by the `checkpoint_decode` fuzz target, which now asserts the same.

mod rig;

use berth_core::content::{IngestError, Input, Recovery, Reply};
use berth_core::digest::{Algorithm, Hasher, MidstateError};
use berth_core::op::errno;
use berth_core::Digest;
use berth_proptests::host::Action;
use rig::{Rig, DATA, STATE};

/// The Ops of a rewrite of "abc" with "xyz" past its zero checkpoint, as (op, path, how many
/// such Ops precede it in the rewrite): the truncate, the data write, the final checkpoint.
const PAST_ZERO_CHECKPOINT: [(&str, &str, u32); 3] = [
    ("truncate", DATA, 0),
    ("write", DATA, 0),
    ("write", STATE, 1),
];

/// `rewrite-rollback`: a rewrite once truncated the data file first and, when a later Op of it
/// failed, rolled back to the old offset and hash although the bytes they describe were gone: a
/// commit then stored `[0, 0, 0]` as `sha256("abc")`.
///
/// Fixed: once the zero checkpoint is down, a failure of the truncate, the data write or the
/// final checkpoint leaves the ingest at offset 0 with the empty hash, whatever the data file
/// still holds; commit cuts that off and stores the empty blob.
#[test]
fn failed_rewrite_falls_back_to_offset_zero() {
    for (op, path, skip) in PAST_ZERO_CHECKPOINT {
        let mut rig = Rig::with_abc();
        rig.fault(op, path, skip, Action::Fail(errno::ENOSPC));
        assert!(
            matches!(rig.write(0, b"xyz"), Some(Err(IngestError::Io { .. }))),
            "{op} {path}"
        );
        assert_eq!(
            (rig.offset(), rig.digest()),
            (0, Digest::sha256(b"")),
            "after the rewrite failed at {op} {path}"
        );
        if op == "truncate" {
            assert_eq!(rig.data(), b"abc", "the old bytes linger past offset 0");
        }
        assert_eq!(rig.commit_and_check_blob(), b"", "{op} {path}");
    }
}

/// A rewrite whose zero checkpoint fails has changed nothing: the old offset and hash, over the
/// old bytes, in the ingest and after a crash.
#[test]
fn failed_zero_checkpoint_keeps_the_old_bytes() {
    let mut rig = Rig::with_abc();
    rig.fault("write", STATE, 0, Action::Fail(errno::EIO));
    assert!(matches!(
        rig.write(0, b"xyz"),
        Some(Err(IngestError::Io { .. }))
    ));
    assert_eq!((rig.offset(), rig.digest()), (3, Digest::sha256(b"abc")));
    assert_eq!(rig.data(), b"abc");
    let recovery = rig.crash_and_reopen();
    assert_eq!(
        recovery,
        Recovery::Resumed {
            offset: 3,
            discarded: 0
        }
    );
    assert_eq!(rig.digest(), Digest::sha256(b"abc"));
    assert_eq!(rig.commit_and_check_blob(), b"abc");
}

/// `rewrite-crash`: a crash during a rewrite, after the truncate and the new data but before
/// the new checkpoint, once left only checkpoints of the old bytes, and resume took the one the
/// data file's length covered: `Resumed { offset: 3 }` with the hash of "abc" over "xyz", and a
/// commit stored "xyz" as `sha256("abc")`.
///
/// Fixed: the rewrite writes two checkpoints, the zero checkpoint and the final one. A crash on
/// the second, after the data, resumes from the zero checkpoint (it outranks the old ones), at
/// 0. So does a crash anywhere between the two.
#[test]
fn crash_during_rewrite_after_its_zero_checkpoint_resumes_at_zero() {
    let mut rig = Rig::with_abc();
    rig.fault("write", STATE, 1, Action::Crash);
    assert_eq!(
        rig.write(0, b"xyz"),
        None,
        "crashed at the final checkpoint"
    );
    assert_eq!(rig.data(), b"xyz", "the new data is down");
    let recovery = rig.crash_and_reopen();
    assert_eq!(
        recovery,
        Recovery::Resumed {
            offset: 0,
            discarded: 3
        },
        "a checkpoint of bytes the rewrite removed"
    );
    assert_eq!(rig.digest(), Digest::sha256(b""));
    assert_eq!(rig.commit_and_check_blob(), b"");

    for (op, path, skip) in PAST_ZERO_CHECKPOINT {
        for action in [Action::Crash, Action::TornCrash] {
            let mut rig = Rig::with_abc();
            rig.fault(op, path, skip, action);
            assert_eq!(rig.write(0, b"xyz"), None, "{action:?} at {op} {path}");
            let recovery = rig.crash_and_reopen();
            assert_eq!(
                (rig.offset(), rig.digest()),
                (0, Digest::sha256(b"")),
                "{action:?} at {op} {path}: resumed with {recovery:?}"
            );
            assert_eq!(
                rig.data(),
                b"",
                "resume cut the data file to its checkpoint"
            );
            assert_eq!(rig.commit_and_check_blob(), b"");
        }
    }
}

/// A crash on the zero checkpoint itself, before any of it lands or half way through (torn),
/// resumes from the old checkpoint at the old offset, over the old bytes.
#[test]
fn crash_on_zero_checkpoint_resumes_at_old_offset_with_old_bytes() {
    for action in [Action::Crash, Action::TornCrash] {
        let mut rig = Rig::with_abc();
        rig.fault("write", STATE, 0, action);
        assert_eq!(rig.write(0, b"xyz"), None, "{action:?}");
        assert_eq!(rig.data(), b"abc", "{action:?}: the data is untouched");
        let recovery = rig.crash_and_reopen();
        assert_eq!(
            recovery,
            Recovery::Resumed {
                offset: 3,
                discarded: 0
            },
            "{action:?}"
        );
        assert_eq!(rig.digest(), Digest::sha256(b"abc"), "{action:?}");
        assert_eq!(rig.commit_and_check_blob(), b"abc", "{action:?}");
    }
}

/// `restart-keeps-stale-checkpoints`: when resume found no checkpoint the data file covers, the
/// ingest restarted at 0 with `seq = 0` but left the old slots (higher seqs) in the state
/// file. The next checkpoint (seq 1) overwrote only one slot; the other kept seq 2, and once
/// the data file was long enough again, resume picked it: the hash of the old bytes, and a
/// commit stored "0123456789" as `sha256("abcdefghij")`.
///
/// The data file can fall behind the checkpoints without any rewrite: the state file is written
/// after the data and neither is fsynced, so a power loss may keep the state's pages and drop
/// the data's (`MemHost::file_mut` models that).
///
/// Fixed: reopening continues from the highest seq of any whole slot, so the next checkpoint
/// (seq 3) outranks the stale one.
#[test]
fn restart_outranks_stale_checkpoints() {
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
    assert!(rig.write(0, b"0123456789").is_some()); // seq 3, slot 1
    let recovery = rig.close_and_reopen();
    assert_eq!(
        rig.digest(),
        Digest::sha256(b"0123456789"),
        "resumed with {recovery:?} from a checkpoint written before the restart"
    );
    assert_eq!(rig.commit_and_check_blob(), b"0123456789");
}

/// Where sha2 0.11 keeps the block count in an exported sha256 midstate: after the version and
/// algorithm bytes and the 32-byte chaining state (`[1, 1, state; 32, blocks: u64 LE, pos: u8,
/// buffer; 63]`).
const SHA256_BLOCKS_AT: usize = 2 + 32;

/// `midstate-length-unchecked`: `Hasher::import(bytes, len)` did not check that the midstate
/// covers `len` bytes (block count × block size + buffered bytes). A slot whose checksum is
/// right but whose midstate disagrees with its offset (a bug in an older writer, a crafted
/// file: the checksum is a plain sha256, not a MAC) was accepted; with an absurd block count
/// `Hasher::digest` then overflowed `8 * (pos + 64 * blocks)`: a panic where overflow checks
/// are on, a silently wrong digest where they are off. Found by
/// `fuzz/fuzz_targets/checkpoint_decode.rs` within seconds.
///
/// Fixed: `import` refuses such a midstate with `MidstateError::Corrupt`.
#[test]
fn import_refuses_a_midstate_that_does_not_cover_its_length() {
    let mut h = Hasher::new(Algorithm::Sha256);
    h.update(b"hello");
    let mut state = h.export();
    assert_eq!(
        state.len(),
        106,
        "sha2's midstate layout changed; fix SHA256_BLOCKS_AT"
    );
    let hello = Hasher::import(&state, 5).expect("a midstate of 5 bytes imports as 5 bytes");
    assert_eq!(hello.digest(), Digest::sha256(b"hello"));
    for len in [0, 4, 6, 69] {
        assert!(
            matches!(
                Hasher::import(&state, len),
                Err(MidstateError::Corrupt { .. })
            ),
            "a midstate of 5 bytes imported as {len} bytes"
        );
    }
    state[SHA256_BLOCKS_AT..SHA256_BLOCKS_AT + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(
        matches!(
            Hasher::import(&state, 5),
            Err(MidstateError::Corrupt { .. })
        ),
        "import must refuse an absurd block count"
    );
    // 1 block + 5 buffered bytes is 69 bytes, not the 5 claimed.
    state[SHA256_BLOCKS_AT..SHA256_BLOCKS_AT + 8].copy_from_slice(&1u64.to_le_bytes());
    assert!(
        matches!(
            Hasher::import(&state, 5),
            Err(MidstateError::Corrupt { .. })
        ),
        "a midstate of 69 bytes imported as 5 bytes"
    );
    let h69 = Hasher::import(&state, 69).expect("and as 69 bytes it is consistent");
    assert_eq!(h69.len(), 69);
}

/// The same through the machine: resume once trusted such a slot, and the ingest panicked on
/// `digest()` (and on commit). Fixed: the slot is refused, the ingest restarts at 0.
#[test]
fn resume_refuses_a_checksummed_slot_with_an_inconsistent_midstate() {
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
    assert!(
        matches!(recovery, Recovery::Restarted { .. }),
        "opened with {recovery:?}"
    );
    assert_eq!((rig.offset(), rig.digest()), (0, Digest::sha256(b"")));
    assert_eq!(rig.commit_and_check_blob(), b"");
}

// `stale-slot-resurrected` (fixed: a reopen now checkpoints the state it resumed at under a
// seq above every slot in the file): resume (`checkpoint::best`) trusts the newest whole slot that the
// data file covers. When an ingest reopens with no slot describing its state (it restarts at
// 0 because no slot is covered, or resumes at 0 over an empty data file), the uncovered slots
// stay in the state file, whole. Since the fix of `restart-keeps-stale-checkpoints` the next
// checkpoint outranks them; but until that checkpoint is down, anything that lengthens the
// data file (an append that crashes before its checkpoint, or whose checkpoint write fails)
// makes a stale slot covered again, and the next open resumes from it: the hash of bytes the
// ingest no longer has, over the new ones. A commit then stores a blob under a digest its
// bytes do not hash to.
//
// The state file can be left like that by a power loss: the state file's pages survive and
// the data file's do not, or a rewrite's truncate survives and its checkpoints do not (the
// two slot writes of a rewrite without data are one unsynced burst to the state file).

/// "abcdefghij" in two writes (slot 1: seq 1 at 6, slot 0: seq 2 at 10), closed; then a power
/// loss keeps the state file and only the first 2 bytes of the data file. Reopening restarts
/// at 0 and leaves both slots, whole, in the state file.
fn restarted_over_stale_slots() -> Rig {
    let mut rig = Rig::new();
    assert!(rig.write(0, b"abcdef").is_some());
    assert!(rig.write(6, b"ghij").is_some());
    assert_eq!(rig.request(Input::Close), Some(Ok(Reply::Closed)));
    rig.ingest = None;
    rig.host.file_mut(DATA).unwrap().truncate(2);
    let recovery = rig.open();
    assert!(
        matches!(recovery, Recovery::Restarted { .. }),
        "no checkpoint fits 2 bytes: {recovery:?}"
    );
    assert_eq!((rig.offset(), rig.data()), (0, &b""[..]));
    rig
}

/// After the restart, an append crashes (`kill -9`) before its checkpoint: the data file now
/// holds 10 bytes and covers the stale slot of seq 2.
///
/// Expected: resume at 0 (no checkpoint describes "0123456789"). Actual: `Resumed { offset: 10
/// }` with the hash of "abcdefghij"; a commit stores "0123456789" as `sha256("abcdefghij")`.
#[test]
fn crash_after_restart_does_not_resume_from_a_stale_slot() {
    let mut rig = restarted_over_stale_slots();
    rig.fault("write", STATE, 0, Action::Crash);
    assert_eq!(rig.write(0, b"0123456789"), None);
    let recovery = rig.crash_and_reopen();
    rig.assert_hash_is_of_data(&format!("resumed with {recovery:?}"));
    rig.commit_and_check_blob();
}

/// No crash needed: after the restart, an append whose checkpoint write fails (ENOSPC) rolls
/// back to 0 but leaves its data in the file; closing and reopening resumes from the stale
/// slot.
///
/// Expected: resume at 0. Actual: `Resumed { offset: 10 }` with the hash of "abcdefghij".
#[test]
fn failed_checkpoint_after_restart_then_reopen_does_not_resume_from_a_stale_slot() {
    let mut rig = restarted_over_stale_slots();
    rig.fault("write", STATE, 0, Action::Fail(errno::ENOSPC));
    assert!(matches!(
        rig.write(0, b"0123456789"),
        Some(Err(IngestError::Io { .. }))
    ));
    assert_eq!(rig.offset(), 0);
    let recovery = rig.close_and_reopen();
    rig.assert_hash_is_of_data(&format!("resumed with {recovery:?}"));
    rig.commit_and_check_blob();
}

/// The path the state-machine test found (`KNOWN_CORE_BUGS`): "hello", then a rewrite with no
/// data (zero checkpoint, truncate, final checkpoint), then a crash that loses the host's last
/// unsynced write: both checkpoint slots of the rewrite (one burst to the state file), not the
/// truncate. Reopening resumes at 0 over the empty data file, correctly, with the slot of
/// "hello" still whole. Then an append of "world" crashes before its checkpoint.
///
/// Expected: resume at 0. Actual: `Resumed { offset: 5 }` with the hash of "hello" over
/// "world"; a commit stores "world" as `sha256("hello")`.
#[test]
fn lost_rewrite_checkpoints_then_crash_does_not_resume_from_a_stale_slot() {
    let mut rig = Rig::new();
    assert!(rig.write(0, b"hello").is_some());
    assert!(matches!(rig.write(0, b""), Some(Ok(Reply::Status(_)))));
    rig.ingest = None;
    rig.host.crash(true);
    let recovery = rig.open();
    assert_eq!(rig.offset(), 0, "resumed with {recovery:?}");
    assert_eq!(rig.digest(), Digest::sha256(b""));
    rig.fault("write", STATE, 0, Action::Crash);
    assert_eq!(rig.write(0, b"world"), None);
    let recovery = rig.crash_and_reopen();
    rig.assert_hash_is_of_data(&format!("resumed with {recovery:?}"));
    rig.commit_and_check_blob();
}
