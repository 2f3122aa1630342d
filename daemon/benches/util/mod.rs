//! Helpers the benchmarks share (each bench is its own crate and includes this module).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The median of `v` (NaN if empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Where `scripts/build-release.sh` puts the binaries as shipped (release profile, statically
/// linked): `target/dist`. Not `target/release`: `cargo bench` builds berthd's own binary there in
/// the bench profile, dynamically linked, over the shipped one.
pub fn dist_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/release/deps/<bench> -> target/dist
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("dist")
}

/// The shipped binary `name`, or why it is missing.
pub fn shipped(name: &str) -> Result<PathBuf, String> {
    let p = dist_dir().join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "no {}: build it with scripts/build-release.sh",
            p.display()
        ))
    }
}

/// Runs `cmd` with `sh -c`, failing the bench if it fails; its stdout.
pub fn sh(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// berthd or containerd, private under its own directory (socket, root, state, log); killed
/// when dropped.
pub struct Daemon {
    /// The daemon process.
    pub child: Child,
    /// Its gRPC socket.
    pub sock: PathBuf,
    log: PathBuf,
    ns: &'static str,
}

impl Daemon {
    /// Waits (at most 20 s) for the socket to accept a connection.
    fn wait(mut self) -> Result<Daemon, String> {
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.sock).is_err() {
            if t0.elapsed() > Duration::from_secs(20) || self.child.try_wait().unwrap().is_some() {
                return Err(format!(
                    "daemon did not start:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(self)
    }

    /// berthd `bin` with `driver`, its clients working in namespace `ns`; `env` is added to
    /// its environment (e.g. `BERTH_SHIM`).
    pub fn berthd(
        bin: &Path,
        dir: &Path,
        driver: &str,
        ns: &'static str,
        env: &[(&str, &Path)],
    ) -> Result<Daemon, String> {
        std::fs::create_dir_all(dir).unwrap();
        let sock = dir.join("berth.sock");
        let mut cmd = Command::new(bin);
        cmd.arg("--address")
            .arg(&sock)
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--state")
            .arg(dir.join("state"))
            .args(["--driver", driver, "--log-level", "warn"])
            .envs(env.iter().copied());
        Self::spawn(cmd, sock, dir.join("berthd.log"), ns)
    }

    /// Starts `cmd` (stdin and stdout closed, stderr to `log`) and waits for `sock`.
    fn spawn(
        mut cmd: Command,
        sock: PathBuf,
        log: PathBuf,
        ns: &'static str,
    ) -> Result<Daemon, String> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            sock,
            log,
            ns,
        }
        .wait()
    }

    /// containerd (without CRI), its clients working in namespace `ns`.
    pub fn containerd(dir: &Path, ns: &'static str) -> Result<Daemon, String> {
        std::fs::create_dir_all(dir).unwrap();
        let sock = dir.join("containerd.sock");
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"{state}/debug.sock\"\n[metrics]\n  address = \"\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = sock.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(dir.join("config.toml"));
        Self::spawn(cmd, sock, dir.join("containerd.log"), ns)
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ctr` against this daemon.
    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&self.sock).args(["-n", self.ns]).args(args);
        c
    }

    /// The `berth` CLI `cli` against this daemon.
    pub fn berth(&self, cli: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(cli);
        c.arg("--address")
            .arg(&self.sock)
            .args(["-n", self.ns])
            .args(args);
        c
    }

    /// The last ten lines of its log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
