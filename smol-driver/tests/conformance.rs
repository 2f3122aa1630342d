//! The conformance suite on the smol driver, on a real directory.

use std::sync::{Arc, Mutex};

use berth_drivers::conformance;
use berth_drivers::Executor;
use berth_smol::SmolExecutor;

#[test]
fn smol_driver_passes_conformance() {
    let dirs = Mutex::new(Vec::new());
    conformance::run_all(
        || {
            let dir = tempfile::tempdir().unwrap();
            let e: Arc<dyn Executor> = Arc::new(SmolExecutor::open(dir.path()).unwrap());
            dirs.lock().unwrap().push(dir);
            e
        },
        smol::block_on,
    );
}

#[test]
fn symlinks_cannot_lead_out_of_the_root() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    let e = SmolExecutor::open(dir.path()).unwrap();
    let r = smol::block_on(e.execute(berth_core::op::OpKind::WriteFile {
        path: "link/pwned".into(),
        data: bytes::Bytes::from_static(b"x"),
        mode: 0o600,
    }));
    assert!(r.is_err(), "{r:?}");
    assert!(!outside.path().join("pwned").exists());
}
