//! Test images: layers built here from real files (GNU tar), compressed with gzip or zstd,
//! described by OCI or Docker schema 2 manifests, optionally gathered in an index, and pushed
//! to the test registry.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{require, sha256_hex, Registry};

/// How layers are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

/// What manifest format to push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

/// A pushed image manifest.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub reference: String,
    pub manifest: String,
    pub manifest_size: usize,
    pub media_type: &'static str,
    pub config: String,
    pub layers: Vec<String>,
    pub diff_ids: Vec<String>,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tar_dir(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .args([
            "--sort=name",
            "--numeric-owner",
            "--mtime=@1704067200",
            "--xattrs",
            "--xattrs-include=*",
            "--format=pax",
            "-C",
        ])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    let prog: &[&str] = match c {
        Compression::Gzip => &["gzip", "-n", "-c"],
        Compression::Zstd => &["zstd", "-q", "-c"],
    };
    let mut child = Command::new(prog[0])
        .args(&prog[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", prog[0]));
    let mut stdin = child.stdin.take().unwrap();
    let data = tar.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Two layers with everything an unpack must get right: a busybox base (binary, applet
/// symlinks, passwd/group), and a second layer with owners, setuid, sticky dirs, hard links,
/// a fifo, xattrs, a whiteout of a base file and an opaque directory.
pub fn rich_layers() -> Vec<Vec<u8>> {
    require("busybox", "busybox-static");
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    for d in ["bin", "etc", "tmp", "usr/share/doc", "var/lib/old"] {
        std::fs::create_dir_all(b.join(d)).unwrap();
    }
    std::fs::set_permissions(b.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let busybox = Command::new("sh")
        .args(["-c", "command -v busybox"])
        .output()
        .unwrap();
    let busybox = String::from_utf8(busybox.stdout).unwrap();
    std::fs::copy(busybox.trim(), b.join("bin/busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "true", "echo"] {
        std::os::unix::fs::symlink("busybox", b.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        b.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(b.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
    std::fs::write(
        b.join("usr/share/doc/gone.txt"),
        "deleted by the next layer\n",
    )
    .unwrap();
    std::fs::write(b.join("var/lib/old/a"), "hidden by an opaque dir\n").unwrap();
    std::fs::write(b.join("var/lib/old/b"), "hidden too\n").unwrap();

    let top = tempfile::tempdir().unwrap();
    let t = top.path();
    for d in ["home/user", "usr/share/doc", "var/lib/old", "data"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    std::fs::write(t.join("usr/share/doc/.wh.gone.txt"), "").unwrap();
    std::fs::write(t.join("var/lib/old/.wh..wh..opq"), "").unwrap();
    std::fs::write(t.join("var/lib/old/new"), "the only file left here\n").unwrap();
    std::fs::write(t.join("home/user/notes"), "owned by user\n").unwrap();
    run(Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(t.join("home/user")));
    std::fs::write(t.join("data/suid"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(t.join("data/suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::write(t.join("data/big"), super::pseudo_random(300_000, 3)).unwrap();
    std::fs::hard_link(t.join("data/big"), t.join("data/big-link")).unwrap();
    std::os::unix::fs::symlink("../etc/passwd", t.join("data/passwd-link")).unwrap();
    run(Command::new("mkfifo").arg(t.join("data/fifo")));
    std::fs::write(t.join("data/xattrs"), "with xattrs\n").unwrap();
    run(Command::new("setfattr")
        .args(["-n", "user.color", "-v", "blue"])
        .arg(t.join("data/xattrs")));
    run(Command::new("setfattr")
        .args(["-n", "trusted.berth", "-v", "yes"])
        .arg(t.join("data/xattrs")));
    std::fs::set_permissions(t.join("data"), std::fs::Permissions::from_mode(0o750)).unwrap();
    vec![tar_dir(b), tar_dir(t)]
}

/// The busybox layer alone (small images for the multi-platform index).
pub fn busybox_layer() -> Vec<u8> {
    rich_layers().swap_remove(0)
}

/// How an image is pushed: layer compression, manifest format, platform.
#[derive(Clone, Copy, Debug)]
pub struct Spec<'a> {
    pub compression: Compression,
    pub format: Format,
    pub arch: &'a str,
    pub variant: Option<&'a str>,
}

impl Spec<'static> {
    /// An amd64 image with this compression and format.
    pub fn amd64(compression: Compression, format: Format) -> Self {
        Spec {
            compression,
            format,
            arch: "amd64",
            variant: None,
        }
    }
}

/// Pushes an image of these uncompressed layers as `repo:tag`.
pub fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    tars: &[Vec<u8>],
    spec: Spec<'_>,
) -> Pushed {
    let Spec {
        compression: c,
        format: f,
        arch,
        variant,
    } = spec;
    let diff_ids: Vec<String> = tars
        .iter()
        .map(|t| format!("sha256:{}", sha256_hex(t)))
        .collect();
    let quoted: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    let variant_json = variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux"{variant_json},"config":{{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        quoted.join(",")
    );
    let (manifest_type, config_type, layer_type) = match (f, c) {
        (Format::Oci, Compression::Gzip) => (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (Format::Oci, Compression::Zstd) => (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (Format::Docker, _) => (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
    };
    let config_digest = reg.push_blob(repo, config.as_bytes());
    let mut descs = Vec::new();
    let mut layers = Vec::new();
    for t in tars {
        let blob = compress(t, c);
        let d = reg.push_blob(repo, &blob);
        descs.push(format!(
            r#"{{"mediaType":"{layer_type}","digest":"{d}","size":{}}}"#,
            blob.len()
        ));
        layers.push(d);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{manifest_type}","config":{{"mediaType":"{config_type}","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        descs.join(",")
    );
    let digest = reg.push_manifest(repo, tag, manifest_type, manifest.as_bytes());
    Pushed {
        reference: format!("{}/{repo}:{tag}", reg.addr),
        manifest: digest,
        manifest_size: manifest.len(),
        media_type: manifest_type,
        config: config_digest,
        layers,
        diff_ids,
    }
}

/// Pushes an OCI index of `(image, arch, variant)` as `repo:tag`; returns its digest.
pub fn push_index(
    reg: &Registry,
    repo: &str,
    tag: &str,
    images: &[(&Pushed, &str, Option<&str>)],
) -> String {
    let entries: Vec<String> = images
        .iter()
        .map(|(p, arch, variant)| {
            let v = variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"linux"{v}}}}}"#,
                p.media_type, p.manifest, p.manifest_size
            )
        })
        .collect();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    );
    reg.push_manifest(
        repo,
        tag,
        "application/vnd.oci.image.index.v1+json",
        index.as_bytes(),
    )
}
