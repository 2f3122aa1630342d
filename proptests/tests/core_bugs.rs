//! Reproducers of core bugs that are still open, as plain deterministic tests. Each is
//! `#[ignore]`d so that `cargo test` passes while the bug is open, and FAILS when run:
//!
//! ```sh
//! cargo test -p berth-proptests --test core_bugs -- --ignored
//! ```
//!
//! Once a bug is fixed: drop its `#[ignore]`, move the test to `tests/regressions.rs`, and drop
//! its id from `berth_proptests::model::KNOWN_CORE_BUGS` so the state-machine test and the
//! `ingest_ops` fuzz target generate the commands that run into it again.
//!
//! `stale-slot-resurrected`: resume (`checkpoint::best`) trusts the newest whole slot that the
//! data file covers. When an ingest reopens with no slot describing its state (it restarts at
//! 0 because no slot is covered, or resumes at 0 over an empty data file), the uncovered slots
//! stay in the state file, whole. Since the fix of `restart-keeps-stale-checkpoints` the next
//! checkpoint outranks them; but until that checkpoint is down, anything that lengthens the
//! data file (an append that crashes before its checkpoint, or whose checkpoint write fails)
//! makes a stale slot covered again, and the next open resumes from it: the hash of bytes the
//! ingest no longer has, over the new ones. A commit then stores a blob under a digest its
//! bytes do not hash to.
//!
//! The state file can be left like that by a power loss: the state file's pages survive and
//! the data file's do not, or a rewrite's truncate survives and its checkpoints do not (the
//! two slot writes of a rewrite without data are one unsynced burst to the state file).

mod rig;

use berth_core::content::{IngestError, Input, Recovery, Reply};
use berth_core::op::errno;
use berth_core::Digest;
use berth_proptests::host::Action;
use rig::{Rig, DATA, STATE};

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
#[ignore = "open core bug stale-slot-resurrected"]
fn crash_after_restart_resumes_from_a_stale_slot() {
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
#[ignore = "open core bug stale-slot-resurrected"]
fn failed_checkpoint_after_restart_then_reopen_resumes_from_a_stale_slot() {
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
#[ignore = "open core bug stale-slot-resurrected"]
fn lost_rewrite_checkpoints_then_crash_resumes_from_a_stale_slot() {
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
