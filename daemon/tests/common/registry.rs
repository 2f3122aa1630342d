//! A real docker-registry (distribution v2) on a free loopback port, the small HTTP/1.1 client
//! that talks to it, and images built here (deterministic tars, gzip, an OCI manifest) pushed
//! to it.
//!
//! Shared, without anything package-specific (no `env!("CARGO_BIN_EXE_…")`), by berthd's tests
//! (`tests/common/mod.rs` re-exports it), berth's CLI tests (`cli/tests/common/mod.rs`) and
//! berthd's `container_run` bench, each including it with `#[path]`. Needs the dev-dependencies
//! `sha2` and `tempfile`, and the host tools `docker-registry`, `tar`, `gzip` (and `busybox`
//! for the busybox images).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A docker-registry (distribution v2) on a free loopback port; killed on drop.
pub struct Registry {
    pub addr: String,
    /// The storage's temporary directory, when [`Registry::start`] made one.
    dir: Option<tempfile::TempDir>,
    child: Child,
}

impl Registry {
    /// A registry storing in a temporary directory of its own, removed on drop.
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::start_in(dir.path());
        reg.dir = Some(dir);
        reg
    }

    /// A registry with its config and storage under `dir` (created if missing, left behind).
    pub fn start_in(dir: &Path) -> Registry {
        require("docker-registry", "docker-registry");
        std::fs::create_dir_all(dir).unwrap();
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let cfg = dir.join("config.yml");
            std::fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: {addr}\n",
                    dir.join("data").display()
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
                    return Registry {
                        addr,
                        dir: None,
                        child,
                    };
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

    /// Pushes a manifest (or index) as `repo:tag` and returns its digest.
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

    /// The bytes of a blob, failing the test unless the registry has it.
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

    /// The status of `GET /v2/<repo>/manifests/<tag>` (0 if the request failed).
    pub fn manifest_status(&self, repo: &str, tag: &str) -> u16 {
        let accept = "application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.oci.image.index.v1+json";
        http(
            &self.addr,
            "GET",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Accept", accept)],
            &[],
        )
        .map_or(0, |(code, _, _)| code)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // then `dir`, if any, is removed
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

/// An image pushed to a registry: its digests (`sha256:…`) and the bytes pushed.
pub struct PushedImage {
    /// `127.0.0.1:PORT/repo:tag`.
    pub reference: String,
    /// The manifest's digest.
    pub manifest: String,
    /// The config's digest.
    pub config: String,
    /// The (compressed) layers' digests, base first.
    pub layers: Vec<String>,
    /// The uncompressed layers' digests, base first.
    pub diff_ids: Vec<String>,
    pub manifest_bytes: Vec<u8>,
    pub config_bytes: Vec<u8>,
    /// The gzip bytes of each layer, base first.
    pub layer_bytes: Vec<Vec<u8>>,
}

/// The host's busybox binary.
pub fn host_busybox() -> PathBuf {
    require("busybox", "busybox-static");
    let out = Command::new("sh")
        .arg("-c")
        .arg("command -v busybox")
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Builds a one-layer busybox image (gzip layer, OCI manifest) plus an extra layer of
/// `extra_bytes` pseudo-random bytes if non-zero, and pushes it as `repo:tag`.
pub fn push_busybox(reg: &Registry, repo: &str, tag: &str, extra_bytes: usize) -> PushedImage {
    let tree = tempfile::tempdir().unwrap();
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(tree.path().join(d)).unwrap();
    }
    std::fs::copy(host_busybox(), tree.path().join("bin/busybox")).unwrap();
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
    push_image(reg, repo, tag, layers)
}

/// Pushes an image of these (tar, tar.gz) layers, base first, with an OCI manifest and a
/// config for the host's architecture (`Env` PATH=/bin, `Cmd` /bin/sh), as `repo:tag`.
pub fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    layers: Vec<(Vec<u8>, Vec<u8>)>,
) -> PushedImage {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|(tar, _)| format!("sha256:{}", sha256_hex(tar)))
        .collect();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids
            .iter()
            .map(|d| format!("\"{d}\""))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes();
    let config_digest = reg.push_blob(repo, &config);
    let mut layer_descs = Vec::new();
    let mut layer_digests = Vec::new();
    let mut layer_bytes = Vec::new();
    for (_, gz) in layers {
        let d = reg.push_blob(repo, &gz);
        layer_descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{}}}"#,
            gz.len()
        ));
        layer_digests.push(d);
        layer_bytes.push(gz);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        layer_descs.join(",")
    )
    .into_bytes();
    let manifest_digest = reg.push_manifest(
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );
    PushedImage {
        reference: format!("{}/{repo}:{tag}", reg.addr),
        manifest: manifest_digest,
        config: config_digest,
        layers: layer_digests,
        diff_ids,
        manifest_bytes: manifest,
        config_bytes: config,
        layer_bytes,
    }
}

/// (tar, tar.gz) of a directory's contents, deterministic.
pub fn gzip_tar(dir: &Path) -> (Vec<u8>, Vec<u8>) {
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
