//! What the CLI's end-to-end tests share: a real `berthd` from this workspace per test, and
//! (in `registry`, berthd's test module of that name) a real docker-registry with images built
//! and pushed here.
//!
//! Each [`Daemon`] runs on a socket in a fresh temporary directory
//! (`--address <tmp>/s.sock --root <tmp>/root --state <tmp>/state`) and is killed when dropped.
//!
//! The daemon binary: `$BERTHD` if set; otherwise `berthd` next to the CLI binary under test
//! (`target/<profile>/berthd`), built first with `cargo build -p berthd` if it is missing.
//! A `berthd` binary that is present but older than the daemon's sources is used as it is, so
//! build the workspace (`cargo build --workspace`, or `cargo test --workspace`, which builds
//! every binary) before running these tests on their own.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../../../daemon/tests/common/registry.rs"]
pub mod registry;

/// The `berth` binary under test.
pub const CLI: &str = env!("CARGO_BIN_EXE_berth");

/// Finds (or builds once) the berthd binary.
fn berthd_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("BERTHD") {
            return PathBuf::from(p);
        }
        let cli = Path::new(CLI);
        let bin = cli.with_file_name("berthd");
        if !bin.exists() {
            let profile_dir = cli.parent().expect("CLI binary has a directory");
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let target_dir = profile_dir.parent().expect("target dir");
            let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
            cmd.args(["build", "-p", "berthd", "--manifest-path"])
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
                .arg("--target-dir")
                .arg(target_dir);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("running cargo build -p berthd");
            assert!(status.success(), "cargo build -p berthd failed");
        }
        assert!(bin.exists(), "no berthd at {}", bin.display());
        bin
    })
    .clone()
}

/// A running berthd in its own temporary directory; killed (by pid) on drop.
pub struct Daemon {
    child: Child,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
}

impl Daemon {
    pub fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("s.sock");
        let log = std::fs::File::create(dir.path().join("berthd.log")).expect("log file");
        let child = Command::new(berthd_bin())
            .arg("--address")
            .arg(&sock)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting berthd");
        let mut d = Daemon { child, dir, sock };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&d.sock).is_err() {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("berthd exited early ({st}); log:\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not listen; log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `berth` command aimed at this daemon (through BERTH_ADDRESS, as a user would), with
    /// no BERTH_NAMESPACE or BERTH_SNAPSHOTTER from the environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CLI);
        c.env("BERTH_ADDRESS", &self.sock)
            .env_remove("BERTH_NAMESPACE")
            .env_remove("BERTH_SNAPSHOTTER")
            .args(args);
        c
    }

    /// Runs `berth ARGS` (no stdin), returning the output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("running berth")
    }

    /// Runs `berth ARGS`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}\nberthd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            stderr(&out),
            self.log()
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs `berth ARGS`, asserts it failed with `code`, returns stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "berth {args:?}: expected exit {code}:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        stderr(&out)
    }

    /// Runs `berth --json ARGS` and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("berth {a:?}: bad JSON {e}: {out}"))
    }

    /// `berth image pull ARGS`, asserting success; returns (stdout, stderr).
    pub fn pull(&self, args: &[&str]) -> (String, String) {
        let mut a = vec!["image", "pull"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        assert!(
            out.status.success(),
            "berth {a:?} failed ({}):\nstdout: {}\nstderr: {}\nberthd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            stderr(&out),
            self.log()
        );
        let err = stderr(&out);
        (String::from_utf8(out.stdout).unwrap(), err)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command's stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
