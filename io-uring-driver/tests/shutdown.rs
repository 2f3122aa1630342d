//! Dropping the last executor stops the ring thread, after the Ops in flight complete.
//! (Its own test binary: it counts the process's ring threads.)

use berth_core::op::{OpKind, OpOutput, OpenOptions};
use berth_drivers::Executor;
use berth_uring::UringExecutor;
use bytes::Bytes;

fn ring_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == "berth-uring")
        })
        .count()
}

#[test]
fn dropping_the_last_clone_stops_the_ring_after_in_flight_ops() {
    assert_eq!(ring_threads(), 0);
    let dir = tempfile::tempdir().unwrap();
    let e = UringExecutor::open(dir.path()).unwrap();
    assert!(e.uses_ring_for("write"));
    let e2 = e.clone();
    assert_eq!(ring_threads(), 1);
    let Ok(OpOutput::Opened { handle, .. }) = smol::block_on(e.execute(OpKind::Open {
        path: "f".into(),
        options: OpenOptions::create_truncate(0o644),
    })) else {
        panic!("open")
    };
    let chunk = Bytes::from(vec![7u8; 1 << 20]);
    // 64 MiB of writes in flight (submitted at `execute`), then every executor clone dropped.
    let writes: Vec<_> = (0..64u64)
        .map(|i| {
            e.execute(OpKind::Write {
                handle,
                offset: i << 20,
                data: chunk.clone(),
            })
        })
        .collect();
    drop(e);
    assert_eq!(ring_threads(), 1, "a clone is still alive");
    drop(e2);
    assert_eq!(ring_threads(), 0, "the ring thread outlived the executor");
    for w in writes {
        assert_eq!(smol::block_on(w), Ok(OpOutput::Written(1 << 20)));
    }
    assert_eq!(
        std::fs::metadata(dir.path().join("f")).unwrap().len(),
        64 << 20
    );
    // Over and over: no thread or descriptor left behind.
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    for _ in 0..50 {
        let e = UringExecutor::open(dir.path()).unwrap();
        smol::block_on(e.execute(OpKind::Stat { path: "f".into() })).unwrap();
    }
    assert_eq!(ring_threads(), 0);
    assert_eq!(std::fs::read_dir("/proc/self/fd").unwrap().count(), fds);
}
