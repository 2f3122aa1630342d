//! Test harness: a real berthd, a real docker-registry on a free loopback port, containerd's
//! real `ctr`, and an image built and pushed here. Each part stops when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub mod images;

/// Fails the test with a clear message if a host tool is missing.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success());
    assert!(
        found.unwrap_or(false),
        "{tool} is not installed: run `apt-get install {package}` (see README)"
    );
}

pub fn sha256_hex(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A docker-registry (distribution v2) on a free loopback port.
pub struct Registry {
    pub addr: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    pub fn start() -> Registry {
        require("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let cfg = dir.path().join("config.yml");
            std::fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: {addr}\n",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if child.try_wait().unwrap().is_some() {
                    break; // port taken meanwhile: try another
                }
                if let Ok((200, _, _)) = http(&addr, "GET", "/v2/", &[], &[]) {
                    return Registry { addr, dir, child };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }

    /// Uploads a blob (monolithic POST+PUT) and returns its digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", sha256_hex(data));
        let (code, headers, _) = http(
            &self.addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(code, 202, "start upload");
        let loc = header(&headers, "location").expect("upload location");
        let path = loc
            .split_once(&self.addr)
            .map_or(loc.as_str(), |(_, p)| p)
            .to_string();
        let sep = if path.contains('?') { '&' } else { '?' };
        let (code, _, body) = http(
            &self.addr,
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        )
        .unwrap();
        assert_eq!(
            code,
            201,
            "finish upload: {}",
            String::from_utf8_lossy(&body)
        );
        digest
    }

    pub fn push_manifest(&self, repo: &str, tag: &str, media_type: &str, data: &[u8]) -> String {
        let (code, _, body) = http(
            &self.addr,
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", media_type)],
            data,
        )
        .unwrap();
        assert_eq!(
            code,
            201,
            "push manifest: {}",
            String::from_utf8_lossy(&body)
        );
        format!("sha256:{}", sha256_hex(data))
    }

    pub fn blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let (code, _, body) = http(
            &self.addr,
            "GET",
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(code, 200);
        body
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Status code, headers and body.
pub type HttpResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// A minimal HTTP/1.1 client (one request per connection), enough to talk to the registry.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let hdrs: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if header(&hdrs, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body);
    }
    Ok((code, hdrs, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = b.windows(2).position(|w| w == b"\r\n") {
        let len = usize::from_str_radix(String::from_utf8_lossy(&b[..pos]).trim(), 16).unwrap_or(0);
        if len == 0 {
            break;
        }
        out.extend_from_slice(&b[pos + 2..pos + 2 + len]);
        b = &b[pos + 2 + len + 2..];
    }
    out
}

/// An image pushed to a registry.
pub struct PushedImage {
    pub reference: String,
    pub manifest: String,
    pub config: String,
    pub layers: Vec<String>,
}

/// Builds a one-layer busybox image (gzip layer, OCI manifest) plus an extra layer of
/// `extra_bytes` pseudo-random bytes if non-zero, and pushes it as `repo:tag`.
pub fn push_busybox(reg: &Registry, repo: &str, tag: &str, extra_bytes: usize) -> PushedImage {
    require("busybox", "busybox-static");
    let tree = tempfile::tempdir().unwrap();
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(tree.path().join(d)).unwrap();
    }
    let busybox = Command::new("sh")
        .arg("-c")
        .arg("command -v busybox")
        .output()
        .unwrap();
    let busybox = String::from_utf8(busybox.stdout).unwrap();
    std::fs::copy(busybox.trim(), tree.path().join("bin/busybox")).unwrap();
    for applet in [
        "sh", "true", "sleep", "echo", "cat", "pwd", "ls", "id", "hostname", "touch", "grep",
        "head", "sort",
    ] {
        std::os::unix::fs::symlink("busybox", tree.path().join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        tree.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        tree.path().join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .unwrap();
    let mut layers = vec![gzip_tar(tree.path())];
    if extra_bytes > 0 {
        let big = tempfile::tempdir().unwrap();
        std::fs::write(big.path().join("blob.bin"), pseudo_random(extra_bytes, 7)).unwrap();
        layers.push(gzip_tar(big.path()));
    }
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|(tar, _)| format!("\"sha256:{}\"", sha256_hex(tar)))
        .collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let config_digest = reg.push_blob(repo, config.as_bytes());
    let mut layer_descs = Vec::new();
    let mut layer_digests = Vec::new();
    for (_, gz) in &layers {
        let d = reg.push_blob(repo, gz);
        layer_descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{}}}"#,
            gz.len()
        ));
        layer_digests.push(d);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        layer_descs.join(",")
    );
    let manifest_digest = reg.push_manifest(
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    );
    PushedImage {
        reference: format!("{}/{repo}:{tag}", reg.addr),
        manifest: manifest_digest,
        config: config_digest,
        layers: layer_digests,
    }
}

/// (tar, tar.gz) of a directory's contents, deterministic.
fn gzip_tar(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let tar = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-C",
        ])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    assert!(tar.status.success());
    let mut gz = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = gz.stdin.take().unwrap();
    let data = tar.stdout.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = gz.wait_with_output().unwrap();
    writer.join().unwrap();
    (tar.stdout, out.stdout)
}

/// Deterministic incompressible bytes (xorshift).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
