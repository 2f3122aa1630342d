//! Runs the C tests (`tests/run-c-tests.sh`) against the crate's staticlib, so that
//! `cargo test -p berth-ffi` covers the ABI from C: ASan/UBSan-instrumented C tests, the C++
//! header check and the header drift check. Skipped, with a message, only if gcc is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The staticlib cargo built for this test run: `<target>/<profile>/libberth_ffi.a`, beside the
/// `deps/` directory that holds this test binary.
fn staticlib() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps");
    profile_dir.join("libberth_ffi.a")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn c_tests_pass() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".into());
    if !have(&cc) {
        println!("SKIPPED: {cc} is not installed, so the C tests of berth-ffi did not run");
        return;
    }
    // `cargo test` of the whole workspace builds this crate as an rlib only: build the
    // staticlib of the same profile explicitly (cheap when it is up to date).
    let lib = staticlib();
    let profile = lib
        .parent()
        .and_then(Path::file_name)
        .and_then(|p| p.to_str())
        .unwrap_or("debug");
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-p", "berth-ffi", "--lib"]);
    if profile == "release" {
        build.arg("--release");
    }
    let built = build.status().expect("run cargo build -p berth-ffi");
    assert!(built.success(), "cargo build -p berth-ffi failed");
    assert!(
        lib.is_file(),
        "staticlib not found at {} after cargo build",
        lib.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run-c-tests.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("BERTH_FFI_STATICLIB", &lib)
        .output()
        .expect("run tests/run-c-tests.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "C tests failed ({}); output above",
        out.status
    );
}
