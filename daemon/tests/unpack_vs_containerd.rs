//! The same image unpacked by berthd (`berth image pull`, mounted with `berth image mount`) and
//! by a real containerd 1.6 (`ctr images pull`, mounted with `ctr images mount`) gives identical
//! trees, file by file: type, mode, owner, size, content, link target, device numbers, xattrs
//! and mtimes — whiteouts and opaque directories applied. The test starts its own containerd
//! (temporary root, state and socket) and its own docker-registry, and stops both.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::images::{push_image, rich_layers, Compression, Format, Spec};
use common::{require, sha256_hex, Berthd, Registry};

struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    fn start() -> Containerd {
        require("containerd", "containerd");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let sock = p.join("c.sock");
        std::fs::write(
            p.join("config.toml"),
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"{state}/debug.sock\"\n[metrics]\n  address = \"\"\n",
                root = p.join("root").display(),
                state = p.join("state").display(),
                sock = sock.display()
            ),
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(p.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(p.join("log")).unwrap())
            .spawn()
            .expect("start containerd");
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "containerd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Containerd { dir, child }
    }

    fn ctr(&self, args: &[&str]) -> String {
        let o = Command::new("ctr")
            .arg("-a")
            .arg(self.dir.path().join("c.sock"))
            .args(["-n", "compare"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn berth(d: &Berthd, args: &[&str]) -> String {
    let o = d.berth(args);
    assert!(
        o.status.success(),
        "berth {args:?}: {}\n--- berthd log ---\n{}",
        String::from_utf8_lossy(&o.stderr),
        d.log()
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Everything about one path that an unpack decides.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    content: Option<String>,
    link: Option<PathBuf>,
    rdev: u64,
    mtime: (i64, i64),
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut names).unwrap_or(0);
    let mut out = BTreeMap::new();
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        // overlay's own attributes on the mount point are not the image's
        if name.starts_with("trusted.overlay.") {
            continue;
        }
        let mut v = vec![0u8; 65536];
        let k = rustix::fs::lgetxattr(p, name.as_str(), &mut v).unwrap();
        v.truncate(k);
        out.insert(name, v);
    }
    out
}

fn walk(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "other"
        };
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        out.insert(
            rel,
            Node {
                kind,
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                size: if ft.is_dir() { 0 } else { m.size() },
                content: ft
                    .is_file()
                    .then(|| sha256_hex(&std::fs::read(&p).unwrap())),
                link: ft.is_symlink().then(|| std::fs::read_link(&p).unwrap()),
                rdev: m.rdev(),
                mtime: (m.mtime(), m.mtime_nsec()),
                xattrs: xattrs(&p),
            },
        );
        if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

#[test]
fn berth_unpack_is_identical_to_containerds() {
    let reg = Registry::start();
    let layers = rich_layers();
    let img = push_image(
        &reg,
        "t/rich",
        "cmp",
        &layers,
        Spec::amd64(Compression::Gzip, Format::Oci),
    );
    let c = Containerd::start();
    let d = Berthd::start("smol");

    c.ctr(&["images", "pull", "--plain-http", &img.reference]);
    berth(&d, &["image", "pull", &img.reference]);

    let theirs = tempfile::tempdir().unwrap();
    let ours = tempfile::tempdir().unwrap();
    c.ctr(&[
        "images",
        "mount",
        &img.reference,
        theirs.path().to_str().unwrap(),
    ]);
    berth(
        &d,
        &[
            "image",
            "mount",
            &img.reference,
            ours.path().to_str().unwrap(),
        ],
    );
    let (a, b) = (walk(theirs.path()), walk(ours.path()));
    c.ctr(&["images", "unmount", "--rm", theirs.path().to_str().unwrap()]);
    berth(
        &d,
        &["image", "unmount", "--rm", ours.path().to_str().unwrap()],
    );

    assert!(a.len() > 10, "containerd's tree has {} entries", a.len());
    assert!(a.contains_key("data/xattrs") && !a.contains_key("usr/share/doc/gone.txt"));
    // containerd refuses `trusted.*` xattrs from archives (they could forge overlay's own
    // attributes); berth must too
    assert!(!a["data/xattrs"].xattrs.contains_key("trusted.berth"));
    assert_eq!(a["data/xattrs"].xattrs["user.color"], b"blue");
    let mut diffs = Vec::new();
    for (path, node) in &a {
        // the mount's root is the top snapshot's directory, created (and timed) by each daemon
        if path.is_empty() {
            let r = &b[""];
            assert_eq!(
                (r.kind, r.mode, r.uid, r.gid),
                (node.kind, node.mode, node.uid, node.gid)
            );
            continue;
        }
        match b.get(path) {
            None => diffs.push(format!("{path}: missing in berth's tree")),
            Some(n) if n != node => diffs.push(format!(
                "{path}:\n  containerd {node:?}\n  berth      {n:?}"
            )),
            _ => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("{path}: only in berth's tree"));
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
