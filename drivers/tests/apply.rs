//! Layer application on real directories (run as root: owners, devices, overlay xattrs).
//!
//! Every test applies into `<tempdir>/root` beside a sentinel tree `<tempdir>/outside`, and
//! hostile layers aim at the sentinel by its absolute path, so an escape would show as a
//! change of the sentinel (checked after every apply) rather than damage to the machine.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_core::archive::apply::ApplyError as CoreError;
use berth_core::archive::{DecodeError, PathError, TarError};
use berth_core::Digest;
use berth_drivers::apply::{apply_file, Applied, Applier, ApplyError, ApplyMode, Compression};
use tar::{EntryType, Header};

// ---- building layers ----

/// A tar being built; raw header fields for what the `tar` crate refuses to write.
struct Layer(tar::Builder<Vec<u8>>);

/// One entry's header fields.
#[derive(Clone)]
struct E {
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Vec<u8>,
    dev: (u32, u32),
    xattrs: Vec<(String, Vec<u8>)>,
}

fn e(kind: EntryType) -> E {
    E {
        kind,
        mode: if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        },
        uid: 0,
        gid: 0,
        mtime: 1_600_000_000,
        link: Vec::new(),
        dev: (0, 0),
        xattrs: Vec::new(),
    }
}

impl E {
    fn mode(mut self, m: u32) -> Self {
        self.mode = m;
        self
    }
    fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    fn mtime(mut self, t: u64) -> Self {
        self.mtime = t;
        self
    }
    fn link(mut self, target: &str) -> Self {
        self.link = target.as_bytes().to_vec();
        self
    }
    fn dev(mut self, major: u32, minor: u32) -> Self {
        self.dev = (major, minor);
        self
    }
    fn xattr(mut self, name: &str, value: &[u8]) -> Self {
        self.xattrs.push((name.into(), value.to_vec()));
        self
    }
}

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn add(mut self, name: &str, e: E, data: &[u8]) -> Self {
        if !e.xattrs.is_empty() {
            let recs: Vec<(String, &[u8])> = e
                .xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), &v[..]))
                .collect();
            self.0
                .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(data.len() as u64);
        h.set_device_major(e.dev.0).unwrap();
        h.set_device_minor(e.dev.1).unwrap();
        assert!(name.len() <= 100 && e.link.len() <= 100, "raw names only");
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname = [0; 100];
        old.linkname[..e.link.len()].copy_from_slice(&e.link);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn dir(self, name: &str) -> Self {
        self.add(name, e(EntryType::Directory), b"")
    }
    fn file(self, name: &str, data: &[u8]) -> Self {
        self.add(name, e(EntryType::Regular), data)
    }
    fn symlink(self, name: &str, target: &str) -> Self {
        self.add(name, e(EntryType::Symlink).mode(0o777).link(target), b"")
    }
    fn hardlink(self, name: &str, target: &str) -> Self {
        self.add(name, e(EntryType::Link).link(target), b"")
    }

    fn tar(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, tar).unwrap();
    enc.finish().unwrap()
}

fn zstd(tar: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(tar, 3).unwrap()
}

// ---- the sandbox ----

struct Sandbox {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    before: Tree,
}

/// A tree's observable state: path → description.
type Tree = BTreeMap<String, String>;

impl Sandbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir_all(outside.join("dir")).unwrap();
        fs::write(outside.join("secret"), b"do not touch").unwrap();
        fs::write(outside.join("dir/file"), b"nor this").unwrap();
        std::os::unix::fs::symlink("secret", outside.join("link")).unwrap();
        fs::write(base.join("sibling"), b"sibling").unwrap();
        let before = snapshot(&base, Some("root"));
        Sandbox {
            _tmp: tmp,
            base,
            root,
            outside,
            before,
        }
    }

    /// The sentinel path without its leading `/`, for entry names aimed at it.
    fn outside_rel(&self) -> String {
        self.outside
            .to_str()
            .unwrap()
            .trim_start_matches('/')
            .to_owned()
    }

    fn apply(&self, blob: &[u8], mode: ApplyMode) -> Result<Applied, ApplyError> {
        apply_chunked(&self.root, blob, mode, 4096, true)
    }

    /// Asserts nothing outside `root` changed.
    fn check_outside(&self) {
        assert_eq!(
            snapshot(&self.base, Some("root")),
            self.before,
            "something outside the root changed"
        );
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.check_outside();
        }
    }
}

fn apply_chunked(
    dir: &Path,
    blob: &[u8],
    mode: ApplyMode,
    chunk: usize,
    threaded: bool,
) -> Result<Applied, ApplyError> {
    let mut a = Applier::new(dir, mode, None)?.threaded(threaded);
    for piece in blob.chunks(chunk) {
        a.push(piece)?;
    }
    a.finish()
}

/// Describes every node below `dir` (skipping the top-level `skip`), following no symlink.
fn snapshot(dir: &Path, skip: Option<&str>) -> Tree {
    let mut out = Tree::new();
    walk(dir, dir, skip, &mut out, true);
    out
}

fn walk(top: &Path, dir: &Path, skip: Option<&str>, out: &mut Tree, dir_times: bool) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        if dir == top && skip == Some(name.to_str().unwrap()) {
            continue;
        }
        let path = dir.join(&name);
        let rel = path
            .strip_prefix(top)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.insert(rel, describe(&path, dir_times));
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            walk(top, &path, skip, out, dir_times);
        }
    }
}

/// Type, mode, owner, size, content hash, link target, device numbers, nlink, xattrs, mtime.
fn describe(path: &Path, dir_times: bool) -> String {
    let m = fs::symlink_metadata(path).unwrap();
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        "dir".to_string()
    } else if ft.is_symlink() {
        format!("symlink -> {}", fs::read_link(path).unwrap().display())
    } else if ft.is_file() {
        format!(
            "file {} {} nlink {}",
            m.len(),
            Digest::sha256(&fs::read(path).unwrap()),
            m.nlink()
        )
    } else if ft.is_char_device() {
        format!("char {:x}", m.rdev())
    } else if ft.is_block_device() {
        format!("block {:x}", m.rdev())
    } else if ft.is_fifo() {
        "fifo".into()
    } else {
        "other".into()
    };
    let mtime = if ft.is_dir() && !dir_times {
        String::new()
    } else {
        format!(" mtime {}.{:09}", m.mtime(), m.mtime_nsec())
    };
    format!(
        "{kind} mode {:o} owner {}:{}{mtime} xattrs {:?}",
        m.mode() & 0o7777,
        m.uid(),
        m.gid(),
        xattrs(path)
    )
}

fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut out: Vec<(String, Vec<u8>)> = names[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|name| {
            let name = String::from_utf8(name.to_vec()).unwrap();
            (name.clone(), xattr(path, &name).unwrap())
        })
        // SELinux/security labels a filesystem may add on its own
        .filter(|(k, _)| !k.starts_with("security.selinux"))
        .collect();
    out.sort();
    out
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn meta(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---- what a layer does ----

#[test]
fn every_kind_with_its_metadata() {
    let s = Sandbox::new();
    let layer = Layer::new()
        .add("./", e(EntryType::Directory).mode(0o700), b"")
        .add(
            "etc/",
            e(EntryType::Directory)
                .mode(0o750)
                .owner(1000, 1001)
                .mtime(1_500_000_000)
                .xattr("user.dirattr", b"d"),
            b"",
        )
        .add(
            "etc/passwd",
            e(EntryType::Regular)
                .mode(0o640)
                .owner(1000, 1000)
                .mtime(1_400_000_000)
                .xattr("user.note", b"hello")
                .xattr("user.t", b"x"),
            b"root:x:0:0::/root:/bin/sh\n",
        )
        .add(
            "bin/ping",
            // VFS_CAP_REVISION_2, cap_net_raw permitted + effective; set after the chown,
            // which would clear it
            e(EntryType::Regular).mode(0o755).owner(0, 0).xattr(
                "security.capability",
                b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            ),
            b"ping",
        )
        .add("bin/", e(EntryType::Directory), b"")
        .add(
            "bin/su",
            e(EntryType::Regular).mode(0o4755).owner(0, 0),
            b"#!setuid",
        )
        .add(
            "bin/sg",
            e(EntryType::Regular).mode(0o2755).owner(1000, 50),
            b"#!setgid",
        )
        .add("tmp/", e(EntryType::Directory).mode(0o1777), b"")
        .add(
            "bin/sh",
            e(EntryType::Symlink)
                .mode(0o777)
                .owner(1000, 1000)
                .mtime(1_300_000_000)
                .link("/bin/busybox"),
            b"",
        )
        .add(
            "bin/passwd-link",
            e(EntryType::Link)
                .mode(0o640)
                .owner(1000, 1000)
                .mtime(1_400_000_000)
                .link("etc/passwd"),
            b"",
        )
        .add("dev/", e(EntryType::Directory), b"")
        .add(
            "dev/null",
            e(EntryType::Char)
                .mode(0o666)
                .dev(1, 3)
                .mtime(1_200_000_000),
            b"",
        )
        .add(
            "dev/sda",
            e(EntryType::Block).mode(0o660).owner(0, 6).dev(8, 0),
            b"",
        )
        .add(
            "dev/fifo",
            e(EntryType::Fifo).mode(0o600).owner(1000, 1000),
            b"",
        )
        .add("empty", e(EntryType::Regular).mode(0o000), b"")
        .add(
            "deep/a/b/c/file",
            e(EntryType::Regular),
            b"implicit parents",
        )
        .tar();
    let applied = s.apply(&gzip(&layer), ApplyMode::Overlay).unwrap();
    assert_eq!(applied.diff_id, Digest::sha256(&layer));
    assert_eq!(applied.entries, 16);
    assert_eq!(applied.compression, Compression::Gzip);

    // the root entry is skipped, as containerd does
    assert_eq!(meta(&s.root).mode() & 0o7777, 0o755);

    let m = meta(&s.p("etc"));
    assert!(m.is_dir());
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o750, 1000, 1001));
    assert_eq!(
        m.mtime(),
        1_500_000_000,
        "directory times are set after their children"
    );
    assert_eq!(xattr(&s.p("etc"), "user.dirattr").unwrap(), b"d");

    let m = meta(&s.p("etc/passwd"));
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 1000, 1000));
    assert_eq!(m.mtime(), 1_400_000_000);
    assert_eq!(m.atime(), 1_400_000_000);
    assert_eq!(m.nlink(), 2);
    assert_eq!(
        fs::read(s.p("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(xattr(&s.p("etc/passwd"), "user.note").unwrap(), b"hello");
    assert_eq!(xattr(&s.p("etc/passwd"), "user.t").unwrap(), b"x");
    assert_eq!(
        xattr(&s.p("bin/ping"), "security.capability")
            .unwrap()
            .len(),
        20,
        "capabilities survive the chown"
    );

    assert_eq!(
        meta(&s.p("bin/su")).mode() & 0o7777,
        0o4755,
        "setuid survives chown"
    );
    let m = meta(&s.p("bin/sg"));
    assert_eq!(
        (m.mode() & 0o7777, m.gid()),
        (0o2755, 50),
        "setgid survives chown"
    );
    assert_eq!(meta(&s.p("tmp")).mode() & 0o7777, 0o1777);

    let m = meta(&s.p("bin/sh"));
    assert!(m.file_type().is_symlink());
    assert_eq!(
        fs::read_link(s.p("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!((m.uid(), m.gid(), m.mtime()), (1000, 1000, 1_300_000_000));

    assert_eq!(
        meta(&s.p("bin/passwd-link")).ino(),
        meta(&s.p("etc/passwd")).ino()
    );

    let m = meta(&s.p("dev/null"));
    assert!(m.file_type().is_char_device());
    assert_eq!(
        (m.rdev(), m.mode() & 0o7777, m.mtime()),
        (rustix::fs::makedev(1, 3), 0o666, 1_200_000_000)
    );
    let m = meta(&s.p("dev/sda"));
    assert!(m.file_type().is_block_device());
    assert_eq!((m.rdev(), m.gid()), (rustix::fs::makedev(8, 0), 6));
    let m = meta(&s.p("dev/fifo"));
    assert!(m.file_type().is_fifo());
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o600, 1000));
    assert_eq!(meta(&s.p("empty")).mode() & 0o7777, 0);

    assert_eq!(
        fs::read(s.p("deep/a/b/c/file")).unwrap(),
        b"implicit parents"
    );
    let m = meta(&s.p("deep/a/b"));
    assert_eq!(
        (m.mode() & 0o7777, m.uid()),
        (0o755, 0),
        "implicit parents are 0755 root"
    );
}

#[test]
fn overlay_whiteouts_become_devices_and_opaque_xattrs() {
    let s = Sandbox::new();
    let layer = Layer::new()
        .dir("usr/")
        .add(".wh.gone", e(EntryType::Regular).owner(1000, 1000), b"")
        .file("usr/lib/.wh.old", b"")
        .dir("usr/share/")
        .file("usr/share/.wh..wh..opq", b"")
        .file("usr/share/kept", b"k")
        .file("usr/.wh..wh.plnk", b"aufs metadata, skipped")
        .file("opaque-only/.wh..wh..opq", b"")
        .tar();
    s.apply(&layer, ApplyMode::Overlay).unwrap();
    for (p, owner) in [("gone", 1000), ("usr/lib/old", 0)] {
        let m = meta(&s.p(p));
        assert!(m.file_type().is_char_device(), "{p}");
        assert_eq!((m.rdev(), m.mode() & 0o7777, m.uid()), (0, 0, owner), "{p}");
    }
    assert_eq!(
        xattr(&s.p("usr/share"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    assert_eq!(
        xattr(&s.p("opaque-only"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    assert!(xattr(&s.p("usr"), "trusted.overlay.opaque").is_none());
    assert_eq!(fs::read(s.p("usr/share/kept")).unwrap(), b"k");
    assert!(!s.p("usr/share/.wh..wh..opq").exists());
    assert!(!s.p("usr/.wh..wh.plnk").exists());
    assert!(!s.p(".wh.gone").exists());
}

#[test]
fn native_whiteouts_remove_and_opaque_clears_lower_content() {
    let s = Sandbox::new();
    // the parent snapshot's copy
    let lower = Layer::new()
        .dir("a/")
        .file("a/file", b"1")
        .dir("a/tree/")
        .file("a/tree/x", b"x")
        .symlink("a/link", "/outside")
        .dir("o/")
        .file("o/old", b"old")
        .dir("o/sub/")
        .file("o/sub/old", b"old")
        .file("o/sub/kept", b"lower version")
        .tar();
    s.apply(&lower, ApplyMode::Native).unwrap();
    let layer = Layer::new()
        .file("a/.wh.file", b"")
        .file("a/.wh.tree", b"")
        .file("a/.wh.link", b"")
        .file("a/.wh.never-existed", b"")
        .dir("o/")
        .file("o/.wh..wh..opq", b"")
        .file("o/sub/kept", b"upper version")
        .file("o/new", b"new")
        .tar();
    s.apply(&layer, ApplyMode::Native).unwrap();
    let tree = snapshot(&s.root, None);
    let names: Vec<&str> = tree.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "o", "o/new", "o/sub", "o/sub/kept"]);
    assert_eq!(fs::read(s.p("o/sub/kept")).unwrap(), b"upper version");
}

#[test]
fn duplicates_replace_except_directory_over_directory() {
    let s = Sandbox::new();
    let layer = Layer::new()
        .file("f", b"first")
        .file("f", b"second")
        .dir("d/")
        .file("d/child", b"c")
        .add(
            "d/",
            e(EntryType::Directory).mode(0o700).owner(1000, 1000),
            b"",
        )
        .dir("was-dir/")
        .file("was-dir/child", b"c")
        .file("was-dir", b"now a file")
        .file("was-file", b"x")
        .dir("was-file/")
        .symlink("was-link", "/")
        .file("was-link", b"a file again")
        .file("target", b"t")
        .hardlink("hl", "target")
        .file("hl", b"replaced link, target untouched")
        .tar();
    s.apply(&layer, ApplyMode::Overlay).unwrap();
    assert_eq!(fs::read(s.p("f")).unwrap(), b"second");
    let m = meta(&s.p("d"));
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o700, 1000));
    assert_eq!(
        fs::read(s.p("d/child")).unwrap(),
        b"c",
        "dir over dir keeps children"
    );
    assert_eq!(fs::read(s.p("was-dir")).unwrap(), b"now a file");
    assert!(meta(&s.p("was-file")).is_dir());
    assert_eq!(fs::read(s.p("was-link")).unwrap(), b"a file again");
    assert_eq!(fs::read(s.p("target")).unwrap(), b"t");
    assert_eq!(meta(&s.p("target")).nlink(), 1);
}

#[test]
fn compressions_and_digests() {
    let tar = Layer::new()
        .dir("d/")
        .file("d/a", &[7u8; 100_000])
        .file("d/b", b"")
        .tar();
    let mut first: Option<Tree> = None;
    for (blob, c) in [
        (tar.clone(), Compression::None),
        (gzip(&tar), Compression::Gzip),
        (zstd(&tar), Compression::Zstd),
    ] {
        for (chunk, threaded) in [(1 << 20, true), (1000, false), (7, true)] {
            let s = Sandbox::new();
            let a = apply_chunked(&s.root, &blob, ApplyMode::Overlay, chunk, threaded).unwrap();
            assert_eq!(a.compression, c);
            assert_eq!(
                a.diff_id,
                Digest::sha256(&tar),
                "diff ID = sha256 of the tar"
            );
            assert_eq!(a.compressed, Digest::sha256(&blob));
            assert_eq!(a.compressed_size, blob.len() as u64);
            assert_eq!(a.uncompressed_size, tar.len() as u64);
            assert_eq!(a.entries, 3);
            let got = snapshot(&s.root, None);
            match &first {
                None => first = Some(got),
                Some(f) => assert_eq!(&got, f, "{c} chunk {chunk}"),
            }
        }
    }
    // apply_file, and a layer with an explicit compression
    let s = Sandbox::new();
    let blob = s.base.join("blob");
    fs::write(&blob, zstd(&tar)).unwrap();
    let a = apply_file(&blob, &s.root, ApplyMode::Native).unwrap();
    assert_eq!(a.diff_id, Digest::sha256(&tar));
    fs::remove_file(&blob).unwrap();
    assert_eq!(&snapshot(&s.root, None), first.as_ref().unwrap());
    let s = Sandbox::new();
    let mut a = Applier::new(&s.root, ApplyMode::Overlay, Some(Compression::Gzip)).unwrap();
    a.push(&gzip(&tar)).unwrap();
    a.finish().unwrap();
    let s = Sandbox::new();
    let mut a = Applier::new(&s.root, ApplyMode::Overlay, None)
        .unwrap()
        .expect_diff_id(Digest::sha256(b"something else"));
    a.push(&tar).unwrap();
    assert!(matches!(
        a.finish(),
        Err(ApplyError::Layer(CoreError::DiffIdMismatch { actual, .. })) if actual == Digest::sha256(&tar)
    ));
}

#[test]
fn truncated_and_corrupt_streams_are_typed_errors() {
    let tar = Layer::new().file("a", &[1u8; 50_000]).file("b", b"b").tar();
    for threaded in [true, false] {
        let gz = gzip(&tar);
        let s = Sandbox::new();
        let r = apply_chunked(
            &s.root,
            &gz[..gz.len() / 2],
            ApplyMode::Overlay,
            999,
            threaded,
        );
        assert!(
            matches!(r, Err(ApplyError::Decode(DecodeError::Truncated { .. }))),
            "{r:?}"
        );
        let s = Sandbox::new();
        let r = apply_chunked(
            &s.root,
            &gz[..gz.len() - 4],
            ApplyMode::Overlay,
            999,
            threaded,
        );
        assert!(matches!(r, Err(ApplyError::Decode(_))), "{r:?}");
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        bad[mid + 1] ^= 0x55;
        let s = Sandbox::new();
        let r = apply_chunked(&s.root, &bad, ApplyMode::Overlay, 999, threaded);
        assert!(matches!(r, Err(ApplyError::Decode(_))), "{r:?}");
        let z = zstd(&tar);
        let s = Sandbox::new();
        let r = apply_chunked(
            &s.root,
            &z[..z.len() - 3],
            ApplyMode::Overlay,
            999,
            threaded,
        );
        assert!(matches!(r, Err(ApplyError::Decode(_))), "{r:?}");
        // uncompressed: cut inside content, and cut at an entry boundary
        let s = Sandbox::new();
        let r = apply_chunked(&s.root, &tar[..10_000], ApplyMode::Overlay, 999, threaded);
        assert!(
            matches!(r, Err(ApplyError::Tar(TarError::Truncated { .. }))),
            "{r:?}"
        );
        let s = Sandbox::new();
        let r = apply_chunked(
            &s.root,
            &tar[..512 + 50_176],
            ApplyMode::Overlay,
            999,
            threaded,
        );
        assert!(
            matches!(r, Err(ApplyError::Tar(TarError::MissingEnd { .. }))),
            "{r:?}"
        );
    }
}

#[test]
fn a_failing_step_is_a_typed_error_on_either_thread_layout() {
    for threaded in [true, false] {
        let s = Sandbox::new();
        let layer = Layer::new().file("a", b"a").hardlink("b", "missing").tar();
        let r = apply_chunked(&s.root, &layer, ApplyMode::Overlay, 4096, threaded);
        assert!(
            matches!(&r, Err(ApplyError::LinkTargetMissing { path, target }) if path == "b" && target == "missing"),
            "{r:?}"
        );
        let s = Sandbox::new();
        let layer = Layer::new()
            .file("f", b"a file")
            .file("f/below", b"x")
            .tar();
        let r = apply_chunked(&s.root, &layer, ApplyMode::Overlay, 4096, threaded);
        assert!(
            matches!(&r, Err(ApplyError::NotADirectory { path }) if path == "f"),
            "{r:?}"
        );
    }
    let s = Sandbox::new();
    let missing = s.base.join("no-such-dir");
    assert!(matches!(
        Applier::new(&missing, ApplyMode::Overlay, None),
        Err(ApplyError::Io { op: "open", .. })
    ));
}

// ---- hostile layers ----

#[test]
fn dot_dot_names_are_refused() {
    let s = Sandbox::new();
    for name in ["../x", "a/../../x", "../outside/secret", "./../root/x"] {
        let layer = Layer::new().file(name, b"pwned").tar();
        let r = s.apply(&layer, ApplyMode::Overlay);
        assert!(
            matches!(
                r,
                Err(ApplyError::Path {
                    source: PathError::Escapes { .. },
                    ..
                })
            ),
            "{name}: {r:?}"
        );
        s.check_outside();
    }
    let layer = Layer::new().file("../.wh.outside", b"").tar();
    assert!(s.apply(&layer, ApplyMode::Native).is_err());
}

#[test]
fn absolute_names_land_inside_the_root() {
    let s = Sandbox::new();
    let target = format!("{}/secret", s.outside.display());
    let unique = format!("/etc/berth-apply-test-{}", std::process::id());
    let layer = Layer::new()
        .file(&target, b"overwritten?")
        .file(&unique, b"x")
        .tar();
    s.apply(&layer, ApplyMode::Overlay).unwrap();
    assert_eq!(fs::read(s.p(&target[1..])).unwrap(), b"overwritten?");
    assert_eq!(fs::read(s.p(&unique[1..])).unwrap(), b"x");
    assert!(!Path::new(&unique).exists());
}

#[test]
fn symlinks_pointing_out_are_resolved_inside() {
    // (link target, where `evil/<rest>` must land, relative to the root), per sandbox
    let case = |i: usize, s: &Sandbox| -> (String, String) {
        let out = s.outside.to_str().unwrap().to_owned();
        match i {
            0 => ("/".into(), String::new()),
            1 => ("../../..".into(), String::new()),
            2 => ("../../../../../../..".into(), String::new()),
            3 => (out, s.outside_rel()),
            4 => (format!("../../../../../..{out}"), s.outside_rel()),
            _ => ("/proc/self/root".into(), "proc/self/root".into()),
        }
    };
    for i in 0..6 {
        for mode in [ApplyMode::Overlay, ApplyMode::Native] {
            let s = Sandbox::new();
            let (link, inside) = case(i, &s);
            let rel = s.outside_rel();
            let layer = Layer::new()
                .symlink("evil", &link)
                .file("evil/created", b"new")
                .file(&format!("evil/{rel}/secret"), b"overwrite")
                .file(&format!("evil/{rel}/dir/.wh.file"), b"")
                .file(&format!("evil/{rel}/.wh.link"), b"")
                .file(&format!("evil/{rel}/dir/.wh..wh..opq"), b"")
                .symlink("evil/sub", "..")
                .file("evil/sub/sub/sub/deeper", b"d")
                .tar();
            s.apply(&layer, mode)
                .unwrap_or_else(|e| panic!("case {i} {link}: {e}"));
            let base = if inside.is_empty() {
                s.root.clone()
            } else {
                s.p(&inside)
            };
            assert_eq!(fs::read(base.join("created")).unwrap(), b"new", "case {i}");
            assert_eq!(
                fs::read(base.join(&rel).join("secret")).unwrap(),
                b"overwrite",
                "case {i}"
            );
            assert!(meta(&s.p("evil")).file_type().is_symlink());
            s.check_outside();
        }
    }
}

#[test]
fn hard_links_cannot_reach_out() {
    let s = Sandbox::new();
    let rel = s.outside_rel();
    for target in ["../../outside/secret", "../secret", "a/../../x"] {
        let layer = Layer::new().hardlink("hl", target).tar();
        let r = s.apply(&layer, ApplyMode::Overlay);
        assert!(
            matches!(r, Err(ApplyError::Layer(CoreError::LinkEscapes { .. }))),
            "{target}: {r:?}"
        );
    }
    // through a symlink to `/`: resolves inside the root, where the target does not exist
    let layer = Layer::new()
        .symlink("evil", "/")
        .hardlink("hl", &format!("evil/{rel}/secret"))
        .tar();
    let r = s.apply(&layer, ApplyMode::Overlay);
    assert!(
        matches!(r, Err(ApplyError::LinkTargetMissing { .. })),
        "{r:?}"
    );
    // an absolute target is relative to the root
    let s = Sandbox::new();
    let layer = Layer::new()
        .file(&format!("{rel}/secret"), b"inside")
        .hardlink("hl", &format!("/{rel}/secret"))
        .tar();
    s.apply(&layer, ApplyMode::Overlay).unwrap();
    assert_eq!(
        meta(&s.p("hl")).ino(),
        meta(&s.p(&format!("{rel}/secret"))).ino()
    );
    assert_eq!(meta(&s.p("hl")).nlink(), 2);
}

#[test]
fn hard_link_to_a_symlink_pointing_out_then_written() {
    let s = Sandbox::new();
    let secret = format!("{}/secret", s.outside.display());
    let layer = Layer::new()
        .symlink("s", &secret)
        .hardlink("hl", "s")
        .symlink("d", s.outside.to_str().unwrap())
        .hardlink("hd", "d")
        .tar();
    s.apply(&layer, ApplyMode::Overlay).unwrap();
    // the link is to the symlink itself, not what it points to
    assert!(meta(&s.p("hl")).file_type().is_symlink());
    assert_eq!(meta(&s.p("hl")).ino(), meta(&s.p("s")).ino());
    // now write through both names
    let layer = Layer::new()
        .file("hl", b"replaces the link")
        .file("s", b"replaces the symlink")
        .file("hd/secret", b"through a hard-linked symlink")
        .file("hd/dir/file", b"deeper")
        .tar();
    s.apply(&layer, ApplyMode::Overlay).unwrap();
    assert_eq!(fs::read(s.p("hl")).unwrap(), b"replaces the link");
    assert_eq!(fs::read(s.p("s")).unwrap(), b"replaces the symlink");
    let inside = s.p(&s.outside_rel());
    assert_eq!(
        fs::read(inside.join("secret")).unwrap(),
        b"through a hard-linked symlink"
    );
    assert_eq!(fs::read(inside.join("dir/file")).unwrap(), b"deeper");
}

#[test]
fn directory_replaced_by_symlink_then_written_through() {
    for mode in [ApplyMode::Overlay, ApplyMode::Native] {
        for threaded in [true, false] {
            let s = Sandbox::new();
            let rel = s.outside_rel();
            let layer = Layer::new()
                .dir("d/")
                .file("d/one", b"1") // caches d's fd
                .symlink("d", s.outside.to_str().unwrap()) // replaces the directory
                .file("d/secret", b"written through")
                .file("d/dir/file", b"written through")
                .dir("x/")
                .dir("x/y/")
                .file("x/y/z", b"1") // caches x and x/y
                .symlink("x", "/") // replaces x with a link to the root
                .file(&format!("x/{rel}/dir/file"), b"again")
                .file("x/y/z", b"2") // must not reach the old x/y
                .tar();
            apply_chunked(&s.root, &layer, mode, 100, threaded).unwrap();
            let inside = s.p(&rel);
            assert_eq!(fs::read(inside.join("secret")).unwrap(), b"written through");
            assert_eq!(fs::read(inside.join("dir/file")).unwrap(), b"again");
            assert_eq!(fs::read(s.p("y/z")).unwrap(), b"2");
            assert!(meta(&s.p("d")).file_type().is_symlink());
        }
    }
}

#[test]
fn whiteouts_and_opaques_through_symlinks_stay_inside() {
    for mode in [ApplyMode::Overlay, ApplyMode::Native] {
        let s = Sandbox::new();
        let rel = s.outside_rel();
        let layer = Layer::new()
            .symlink("evil", "/")
            .symlink("evil2", s.outside.to_str().unwrap())
            .file(&format!("evil/{rel}/.wh.secret"), b"")
            .file("evil2/.wh.dir", b"")
            .file("evil2/.wh..wh..opq", b"")
            .file("evil2/other/.wh..wh..opq", b"")
            .tar();
        s.apply(&layer, mode).unwrap();
        s.check_outside();
        if mode == ApplyMode::Overlay {
            let inside = s.p(&rel);
            assert!(meta(&inside.join("secret")).file_type().is_char_device());
            assert_eq!(xattr(&inside, "trusted.overlay.opaque").unwrap(), b"y");
        }
    }
}

#[test]
fn trusted_xattrs_are_dropped() {
    let s = Sandbox::new();
    let layer = Layer::new()
        .add(
            "d/",
            e(EntryType::Directory)
                .xattr("trusted.overlay.opaque", b"y")
                .xattr("trusted.overlay.redirect", b"/etc")
                .xattr("trusted.ok", b"1"),
            b"",
        )
        .tar();
    s.apply(&layer, ApplyMode::Overlay).unwrap();
    // containerd refuses every trusted.* xattr of an archive; so does berth
    assert!(xattrs(&s.p("d")).is_empty(), "{:?}", xattrs(&s.p("d")));
}

// ---- against GNU tar ----

/// Builds a tree with every kind and odd metadata, archives it with GNU tar (PAX, xattrs),
/// then compares berth's apply with `tar -xpf` node by node.
#[test]
fn matches_gnu_tar_extraction() {
    let s = Sandbox::new();
    let src = s.base.join("src");
    fs::create_dir(&src).unwrap();
    let w = |p: &str, data: &[u8], mode: u32, uid: u32, gid: u32| {
        let path = src.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        rustix::fs::chown(
            &path,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .unwrap();
        rustix::fs::chmod(&path, rustix::fs::Mode::from_raw_mode(mode)).unwrap();
    };
    for i in 0..300 {
        let size = (i * 97) % 5000;
        let data: Vec<u8> = (0..size).map(|j| (i * 31 + j * 7) as u8).collect();
        w(&format!("usr/lib/d{}/f{i}", i % 17), &data, 0o644, 0, 0);
    }
    w("usr/bin/suid", b"suid", 0o4755, 0, 0);
    w("usr/bin/sgid", b"sgid", 0o2711, 1000, 1000);
    w("home/user/.profile", b"profile", 0o600, 1000, 1000);
    w("big", &vec![0x5a; 3 << 20], 0o644, 0, 0);
    let long = format!("{}/{}", "a".repeat(120), "b".repeat(120));
    w(&format!("long/{long}"), b"long name", 0o644, 0, 0);
    std::os::unix::fs::symlink("../lib/d1/f1", src.join("usr/bin/rel-link")).unwrap();
    std::os::unix::fs::symlink("/usr/lib", src.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("x".repeat(150), src.join("long-target")).unwrap();
    fs::hard_link(src.join("usr/lib/d3/f3"), src.join("usr/bin/hard")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        src.join("usr/bin/suid"),
        "user.one",
        b"1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        src.join("usr/lib"),
        "user.two",
        b"2",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::create_dir_all(src.join("empty/dir")).unwrap();
    rustix::fs::chmod(src.join("empty"), rustix::fs::Mode::from_raw_mode(0o700)).unwrap();
    // varied times, with nanoseconds, set last (children first)
    let mut all = Vec::new();
    for (rel, _) in snapshot(&src, None) {
        all.push(rel);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for (i, rel) in all.iter().enumerate() {
        let t = rustix::fs::Timespec {
            tv_sec: 1_000_000_000 + (i as i64) * 3_600,
            tv_nsec: (i as i64 * 7_919) % 1_000_000_000,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            src.join(rel),
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }

    let layer = s.base.join("layer.tar");
    let ok = Command::new("tar")
        .args([
            "--format=posix",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-cf",
        ])
        .arg(&layer)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    let gnu = s.base.join("gnu");
    fs::create_dir(&gnu).unwrap();
    let ok = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&layer)
        .arg("-C")
        .arg(&gnu)
        .status()
        .unwrap();
    assert!(ok.success());

    let applied = apply_file(&layer, &s.root, ApplyMode::Overlay).unwrap();
    let tar_bytes = fs::read(&layer).unwrap();
    assert_eq!(applied.diff_id, Digest::sha256(&tar_bytes));

    let theirs = snapshot(&gnu, None);
    let ours = snapshot(&s.root, None);
    assert!(theirs.len() > 300);
    // the comparison covers what it should
    assert!(
        theirs["usr/lib"].contains("user.two"),
        "{}",
        theirs["usr/lib"]
    );
    assert!(
        theirs["usr/bin/suid"].contains("mode 4755"),
        "{}",
        theirs["usr/bin/suid"]
    );
    assert!(theirs["usr/bin/suid"].contains("user.one"));
    assert!(theirs["usr/bin/hard"].contains("nlink 2"));
    assert!(theirs["usr/bin/sgid"].contains("owner 1000:1000"));
    assert!(theirs["null"].starts_with("char 103"), "{}", theirs["null"]);
    assert!(theirs["fifo"].starts_with("fifo mode 640"));
    assert!(
        !theirs["abs-link"].contains(".000000000"),
        "nanoseconds: {}",
        theirs["abs-link"]
    );
    let keys = |t: &Tree| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&ours), keys(&theirs));
    for (path, want) in &theirs {
        assert_eq!(&ours[path], want, "{path}");
    }
    // the compared trees go; the sentinel check ignores only `root`
    for d in [&src, &gnu] {
        fs::remove_dir_all(d).unwrap();
    }
    fs::remove_file(&layer).unwrap();
}

/// A real image layer, if the peer harness built one on this machine (busybox: 283 entries,
/// 400 symlinks to one binary).
#[test]
fn matches_gnu_tar_on_the_peer_busybox_layer() {
    let blob = Path::new(
        "/var/lib/peer-images/oci/blobs/sha256/af3591b593fe521a181a8ab0ef1978f85e710ca8ec23c2af3a1110365feb81b8",
    );
    if !blob.exists() {
        eprintln!("skipped: {} not present", blob.display());
        return;
    }
    let s = Sandbox::new();
    let gnu = s.base.join("gnu");
    fs::create_dir(&gnu).unwrap();
    let ok = Command::new("tar")
        .args(["--numeric-owner", "-xpzf"])
        .arg(blob)
        .arg("-C")
        .arg(&gnu)
        .status()
        .unwrap();
    assert!(ok.success());
    apply_file(blob, &s.root, ApplyMode::Overlay).unwrap();
    assert_eq!(snapshot(&s.root, None), snapshot(&gnu, None));
    fs::remove_dir_all(&gnu).unwrap();
}

/// The daemon moves an applier onto a blocking thread.
#[test]
fn applier_is_send() {
    fn send<T: Send>() {}
    send::<Applier>();
    send::<ApplyError>();
}

/// A directory removed through a symlinked path must not leave a stale cached fd behind.
#[test]
fn removals_through_symlinks_invalidate_cached_directories() {
    for mode in [ApplyMode::Overlay, ApplyMode::Native] {
        let s = Sandbox::new();
        let layer = Layer::new()
            .dir("x/")
            .dir("x/sub/")
            .file("x/sub/old", b"o") // caches x/sub
            .dir("x/other/")
            .file("x/other/old", b"o") // caches x/other
            .symlink("evil", "x")
            .file("evil/sub", b"replaces x/sub through the link")
            .file("evil/.wh..wh..opq", b"") // native: clears x/other through the link
            .file("x/other/new", b"n")
            .tar();
        s.apply(&layer, mode).unwrap();
        assert_eq!(
            fs::read(s.p("x/sub")).unwrap(),
            b"replaces x/sub through the link"
        );
        assert_eq!(fs::read(s.p("x/other/new")).unwrap(), b"n");
        if mode == ApplyMode::Native {
            assert!(!s.p("x/other/old").exists());
        }
    }
}
