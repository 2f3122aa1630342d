//! The conformance suite on the io_uring driver, on a real directory: with the ring, with the
//! ring for some Ops only (handles crossing between ring and pool), and with no ring at all.

use std::sync::{Arc, Mutex};

use berth_core::op::{OpKind, OpenOptions};
use berth_drivers::conformance;
use berth_drivers::Executor;
use berth_uring::{UringExecutor, UringOptions};
use bytes::Bytes;

fn run(options: impl Fn() -> UringOptions) {
    let dirs = Mutex::new(Vec::new());
    conformance::run_all(
        || {
            let dir = tempfile::tempdir().unwrap();
            let e: Arc<dyn Executor> =
                Arc::new(UringExecutor::open_with(dir.path(), options()).unwrap());
            dirs.lock().unwrap().push(dir);
            e
        },
        smol::block_on,
    );
}

#[test]
fn uring_driver_passes_conformance() {
    run(UringOptions::default);
}

#[test]
fn uring_driver_passes_conformance_with_pool_opens() {
    // Handles opened on the pool, written, read and synced on the ring.
    run(|| UringOptions::default().without_op("open"));
}

#[test]
fn uring_driver_passes_conformance_with_ring_opens_only() {
    // Handles opened on the ring, used on the pool.
    run(|| {
        UringOptions::default()
            .without_op("write")
            .without_op("read")
            .without_op("fsync")
    });
}

#[test]
fn uring_driver_passes_conformance_without_a_ring() {
    run(|| UringOptions::default().without_ring());
}

#[test]
fn symlinks_cannot_lead_out_of_the_root() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("abs")).unwrap();
    std::os::unix::fs::symlink("../../x", dir.path().join("up")).unwrap();
    let e = UringExecutor::open(dir.path()).unwrap();
    assert!(e.uses_ring_for("open"));
    // the pool path (WriteFile)
    let r = smol::block_on(e.execute(OpKind::WriteFile {
        path: "link/pwned".into(),
        data: Bytes::from_static(b"x"),
        mode: 0o600,
    }));
    assert!(r.is_err(), "{r:?}");
    // the ring path (OPENAT2)
    for (path, options) in [
        ("link/pwned", OpenOptions::create_truncate(0o600)),
        ("link/secret", OpenOptions::read()),
        ("abs", OpenOptions::read()),
        ("abs", OpenOptions::read_write()),
        ("up", OpenOptions::create_truncate(0o600)),
    ] {
        let r = smol::block_on(e.execute(OpKind::Open {
            path: path.into(),
            options,
        }));
        assert!(r.is_err(), "open {path:?} escaped: {r:?}");
    }
    assert!(!outside.path().join("pwned").exists());
    assert_eq!(e.host().handles().len(), 0);
}
