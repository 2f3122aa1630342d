//! Test harness: a real berthd, a real docker-registry on a free loopback port, containerd's
//! real `ctr`, and an image built and pushed here. Each part stops when dropped.
//!
//! The registry, its HTTP client and the image builders are in `registry.rs` (shared with the
//! CLI's tests and the benches), re-exported here.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod images;
mod registry;

pub use registry::*;

/// The `berth` CLI next to the berthd under test, (re)built once per test binary: cargo
/// builds it only as berthd's sibling package, so a changed CLI would otherwise go stale.
pub fn berth_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth");
    BUILT.call_once(|| build_package("berth"));
    bin
}

/// `berth-shim` next to berthd (where berthd looks for it), (re)built once per test binary.
pub fn shim_built() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| build_package("berth-shim"));
}

fn build_package(package: &str) {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", package, "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
        .status()
        .unwrap();
    assert!(status.success(), "building {package} failed");
}

/// Polls `f` every 50 ms until it holds; fails the test after 20 s.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a `ctr events` started by [`Berthd::ctr_events`]; what it printed.
pub fn events_output(mut child: Child) -> String {
    let _ = child.kill();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
}

/// A berthd process on a private socket and root.
pub struct Berthd {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub driver: String,
    child: Option<Child>,
}

impl Berthd {
    pub fn start(driver: &str) -> Berthd {
        require("ctr", "containerd");
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("berth.sock");
        let mut d = Berthd {
            dir,
            sock,
            driver: driver.into(),
            child: None,
        };
        d.spawn();
        d
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("berthd.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berthd"))
            .arg("--address")
            .arg(&self.sock)
            .arg("--root")
            .arg(self.root())
            .arg("--state")
            .arg(self.dir.path().join("state"))
            .args(["--driver", &self.driver, "--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start berthd");
        self.child = Some(child);
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.sock).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "berthd did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Bytes berthd has read through read-like syscalls (`rchar` of /proc/PID/io).
    pub fn rchar(&self) -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid())).unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&self.sock).args(args);
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// Runs ctr and returns stdout, failing the test with ctr's stderr and berthd's log.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?} failed ({}):\n{}\n--- berthd log ---\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Starts `ctr events` against this berthd, subscribed by the time this returns (give it
    /// to [`events_output`] to stop it and read what it printed).
    pub fn ctr_events(&self) -> Child {
        let child = self
            .ctr_cmd(&["events"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        child
    }

    /// Waits (up to 20 s) until `ctr tasks ls` shows task `id` STOPPED.
    pub fn wait_stopped(&self, id: &str) {
        wait_for(&format!("task {id} to stop"), || {
            self.ctr_ok(&["tasks", "ls"])
                .lines()
                .any(|l| l.split_whitespace().next() == Some(id) && l.contains("STOPPED"))
        });
    }

    /// Runs the `berth` CLI against this berthd.
    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(berth_bin())
            .arg("--address")
            .arg(&self.sock)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs ctr expecting failure; returns stderr.
    pub fn ctr_err(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            !o.status.success(),
            "ctr {args:?} should have failed; stdout:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        self.kill9();
        // Containers outlive berthd by design: a test that failed half-way must not leave its
        // containers, shims or rootfs mounts behind.
        let runc_roots = self.dir.path().join("state/tasks/runc");
        for ns in std::fs::read_dir(&runc_roots)
            .into_iter()
            .flatten()
            .flatten()
        {
            for c in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(ns.path())
                    .args(["delete", "--force"])
                    .arg(c.file_name())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut targets: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|t| t.starts_with(prefix.as_str()))
            .collect();
        targets.reverse();
        for t in targets {
            let _ = Command::new("umount").arg("-l").arg(t).status();
        }
    }
}

/// What the container tests start from: runc present, the shim built, a registry with a
/// busybox image (`t/busybox:latest`), and berthd on the smol driver, with the image pulled
/// through ctr if `pull`. The registry is returned so that it lives as long as the test.
pub fn busybox_berthd(pull: bool) -> (Registry, Berthd, String) {
    require("runc", "runc");
    shim_built();
    let reg = Registry::start();
    let img = push_busybox(&reg, "t/busybox", "latest", 0).reference;
    let d = Berthd::start("smol");
    if pull {
        d.ctr_ok(&["images", "pull", "--plain-http", &img]);
    }
    (reg, d, img)
}

/// The interface names in a `/proc/net/dev`, sorted.
pub fn interfaces(dev: &str) -> Vec<String> {
    let mut v: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .collect();
    v.sort();
    v
}

/// `CapEff` of `grep CapEff /proc/self/status` output, as a bit mask.
pub fn cap_eff(line: &str) -> u64 {
    let hex = line.trim().trim_start_matches("CapEff:").trim();
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("CapEff line {line:?}"))
}

/// The capability bounding set this test runs with, as a bit mask.
pub fn host_cap_bnd() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap()
}

/// The host path of a container's cgroup for `controller`, from its `/proc/self/cgroup`.
pub fn cgroup_dir(proc_cgroup: &str, controller: &str) -> String {
    let rel = proc_cgroup
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            c.split(',').any(|c| c == controller).then(|| p.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup in {proc_cgroup}"));
    format!("/sys/fs/cgroup/{controller}{rel}")
}
