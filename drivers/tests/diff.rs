//! Layer creation on real trees (run as root: owners, devices, xattrs, overlay mounts).
//!
//! The central check is the round trip: the layer written from a snapshot's changes, applied
//! with berth's own applier onto the snapshot's parent, gives back the snapshot, file by file
//! (type, mode, owner, content, link targets, device numbers, xattrs, mtimes, hard link
//! groups). Overlay snapshots are made by a real overlay mount, their expected content read
//! from another (read-only) overlay mount, and the layer is applied both ways: natively onto
//! a copy of the lower directory, and as an overlay upper directory mounted again.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_core::archive::diff::WriteSummary;
use berth_core::archive::{Compression, Decoder, Entry, EntryKind, TarEvent, TarParser};
use berth_core::Digest;
use berth_drivers::apply::{apply_file, ApplyMode};
use berth_drivers::diff::{write_layer, DiffError, DiffOptions, DiffSource, KEEP_OPEN, PATH_MAX};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};

// ---- building trees ----

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

fn write(path: &Path, data: &[u8], mode: u32) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn symlink(target: &str, path: &Path) {
    std::os::unix::fs::symlink(target, path).unwrap();
}

fn mknod(path: &Path, ft: FileType, mode: u32, major: u32, minor: u32) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        ft,
        Mode::from_raw_mode(mode),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
    rustix::fs::chmodat(
        rustix::fs::CWD,
        path,
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    )
    .unwrap();
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nanos.into(),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Sets the mtime of everything below `dir` (children before their directory).
fn stamp(dir: &Path, secs: i64) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            stamp(&p, secs);
        }
        set_mtime(&p, secs, 0);
    }
}

/// `security.capability` v2: cap_net_bind_service+ep.
const CAP: &[u8] = &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn cp_a(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// An overlay mount, unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn overlay(
        target: &Path,
        lowers: &[&Path],
        upper: Option<(&Path, &Path)>,
        extra: &str,
    ) -> Self {
        fs::create_dir_all(target).unwrap();
        let lowers: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
        let mut opts = format!("lowerdir={}", lowers.join(":"));
        if let Some((u, w)) = upper {
            opts += &format!(",upperdir={},workdir={}", u.display(), w.display());
        }
        if !extra.is_empty() {
            opts += ",";
            opts += extra;
        }
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(target)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount {opts}: {out:?}");
        Mounted(target.to_owned())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

// ---- describing trees ----

/// A tree's observable state: path → description.
type Tree = BTreeMap<String, String>;

/// Describes every node below `dir` (sockets excepted: layers do not carry them), never
/// following a symlink; mtimes to the second unless `nanos`; hard links as groups named by
/// their first path.
fn tree(dir: &Path, nanos: bool) -> Tree {
    let mut nodes = Vec::new();
    walk(dir, dir, &mut nodes);
    let mut groups: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    for (rel, m) in &nodes {
        if !m.is_dir() && m.nlink() > 1 {
            groups
                .entry((m.dev(), m.ino()))
                .or_default()
                .push(rel.clone());
        }
    }
    let mut out = Tree::new();
    for (rel, m) in &nodes {
        let path = dir.join(rel);
        let ft = m.file_type();
        if ft.is_socket() {
            continue;
        }
        let kind = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("symlink -> {:?}", fs::read_link(&path).unwrap())
        } else if ft.is_file() {
            format!(
                "file {} {}",
                m.len(),
                Digest::sha256(&fs::read(&path).unwrap())
            )
        } else if ft.is_char_device() {
            format!(
                "char {}:{}",
                rustix::fs::major(m.rdev()),
                rustix::fs::minor(m.rdev())
            )
        } else if ft.is_block_device() {
            format!(
                "block {}:{}",
                rustix::fs::major(m.rdev()),
                rustix::fs::minor(m.rdev())
            )
        } else if ft.is_fifo() {
            "fifo".into()
        } else {
            "other".into()
        };
        let group = match groups.get(&(m.dev(), m.ino())) {
            Some(g) if g.len() > 1 && !ft.is_dir() => format!(" linked with {}", g[0]),
            _ => String::new(),
        };
        let mtime = if nanos {
            format!("{}.{:09}", m.mtime(), m.mtime_nsec())
        } else {
            m.mtime().to_string()
        };
        out.insert(
            rel.clone(),
            format!(
                "{kind}{group} mode {:o} owner {}:{} mtime {mtime} xattrs {:?}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                xattrs(&path)
            ),
        );
    }
    out
}

fn walk(top: &Path, dir: &Path, out: &mut Vec<(String, fs::Metadata)>) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = path
            .strip_prefix(top)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let m = fs::symlink_metadata(&path).unwrap();
        let is_dir = m.is_dir();
        out.push((rel, m));
        if is_dir {
            walk(top, &path, out);
        }
    }
}

/// The xattrs a layer carries (no `trusted.*`, no SELinux label).
fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 65536];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut out: Vec<(String, Vec<u8>)> = names[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|name| String::from_utf8(name.to_vec()).unwrap())
        .filter(|k| !k.starts_with("trusted.") && k != "security.selinux")
        .map(|name| {
            let mut buf = vec![0u8; 65536];
            let n = rustix::fs::lgetxattr(path, name.as_str(), &mut buf[..]).unwrap();
            buf.truncate(n);
            (name, buf)
        })
        .collect();
    out.sort();
    out
}

fn assert_trees_eq(got: &Tree, want: &Tree, what: &str) {
    if got == want {
        return;
    }
    let mut msg = String::new();
    let keys: BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    for k in keys {
        let (a, b) = (got.get(k), want.get(k));
        if a != b {
            msg += &format!("{k}:\n   got {a:?}\n  want {b:?}\n");
        }
    }
    panic!("{what}: the trees differ:\n{msg}");
}

// ---- reading layers ----

fn layer(source: &DiffSource, options: &DiffOptions) -> (Vec<u8>, WriteSummary) {
    let mut blob = Vec::new();
    let s = write_layer(source, options, &mut blob).unwrap();
    (blob, s)
}

/// Decompresses a blob: the tar and its sha256 as the decoder computed it.
fn untar(blob: &[u8]) -> (Vec<u8>, Digest) {
    let mut d = Decoder::new(Compression::sniff(blob).unwrap_or(Compression::None));
    d.push_slice(blob).unwrap();
    let mut tar = Vec::new();
    while let Some(b) = d.poll().unwrap() {
        tar.extend_from_slice(&b);
    }
    (tar, d.finish().unwrap().diff_id)
}

fn entries(tar: &[u8]) -> Vec<(Entry, Vec<u8>)> {
    let mut p = TarParser::new();
    p.push_slice(tar).unwrap();
    let mut out: Vec<(Entry, Vec<u8>)> = Vec::new();
    while let Some(ev) = p.poll().unwrap() {
        match ev {
            TarEvent::Entry(e) => out.push((e, Vec::new())),
            TarEvent::Data(d) => out.last_mut().unwrap().1.extend_from_slice(&d),
            TarEvent::EntryEnd | TarEvent::End => {}
        }
    }
    p.finish().unwrap();
    out
}

fn names(entries: &[(Entry, Vec<u8>)]) -> Vec<String> {
    entries
        .iter()
        .map(|(e, _)| String::from_utf8(e.path.clone()).unwrap())
        .collect()
}

/// The checks every layer passes: digests and sizes as reported, each path once, every
/// entry's parent directories before it, an opaque marker right after its directory, GNU
/// tar lists it without a complaint.
fn check_layer(blob: &[u8], s: &WriteSummary) -> Vec<(Entry, Vec<u8>)> {
    assert_eq!(s.digest, Digest::sha256(blob));
    assert_eq!(s.size, blob.len() as u64);
    let (tar, diff_id) = untar(blob);
    assert_eq!(s.diff_id, diff_id);
    assert_eq!(s.diff_id, Digest::sha256(&tar));
    assert_eq!(s.uncompressed_size, tar.len() as u64);
    let es = entries(&tar);
    assert_eq!(es.len() as u64, s.entries);
    let mut seen = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    for (i, (e, _)) in es.iter().enumerate() {
        let p = String::from_utf8(e.path.clone()).unwrap();
        let p = p.trim_end_matches('/').to_owned();
        assert!(seen.insert(p.clone()), "{p} twice");
        if let Some(parent) = p.rfind('/').map(|i| &p[..i]) {
            assert!(dirs.contains(parent), "{p} before its directory");
        }
        if e.kind == EntryKind::Directory {
            assert!(e.path.ends_with(b"/"));
            dirs.insert(p.clone());
        }
        if let Some(dir) = p.strip_suffix("/.wh..wh..opq") {
            let before = String::from_utf8(es[i - 1].0.path.clone()).unwrap();
            assert_eq!(
                before,
                format!("{dir}/"),
                "opaque marker right after its directory"
            );
        }
    }
    // GNU tar reads it, silently
    let tmp = tempfile::NamedTempFile::new().unwrap();
    fs::write(tmp.path(), blob).unwrap();
    let codec = match s.compression {
        Compression::Gzip => "-z",
        Compression::Zstd => "--zstd",
        _ => "--no-auto-compress",
    };
    let out = Command::new("tar")
        .args(["-tv", codec, "-f"])
        .arg(tmp.path())
        .output()
        .unwrap();
    if s.compression != Compression::Zstd || out.status.success() {
        assert!(out.status.success(), "{out:?}");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert_eq!(listing.lines().count(), es.len(), "{listing}");
    }
    es
}

fn gnu_listing(blob: &[u8]) -> String {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    fs::write(tmp.path(), blob).unwrap();
    let out = Command::new("tar")
        .args(["-tvzf"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn apply(blob: &[u8], dir: &Path, mode: ApplyMode) -> Digest {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    fs::write(tmp.path(), blob).unwrap();
    apply_file(tmp.path(), dir, mode).unwrap().diff_id
}

// ---- the scenarios ----

/// A lower tree with every kind of node and metadata.
fn build_lower(l: &Path) {
    mkdir(&l.join("etc"), 0o755);
    write(
        &l.join("etc/passwd"),
        b"root:x:0:0:root:/root:/bin/sh\n",
        0o644,
    );
    write(&l.join("etc/hosts"), b"127.0.0.1 localhost\n", 0o644);
    write(&l.join("etc/keep"), b"unchanged\n", 0o600);
    write(&l.join("etc/group"), b"root:x:0:\n", 0o644);
    write(&l.join("etc/shadow"), b"root:*:1::::::\n", 0o640);
    chown(&l.join("etc/shadow"), 0, 42);
    mkdir(&l.join("usr/bin"), 0o755);
    write(&l.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n", 0o755);
    set_xattr(&l.join("usr/bin/tool"), "security.capability", CAP);
    write(&l.join("usr/bin/hl1"), b"hard linked\n", 0o755);
    fs::hard_link(l.join("usr/bin/hl1"), l.join("usr/bin/hl2")).unwrap();
    write(&l.join("var/lib/data/a"), b"a", 0o644);
    write(&l.join("var/lib/data/b"), b"b", 0o644);
    write(&l.join("var/lib/data/sub/c"), b"c", 0o644);
    write(&l.join("opq/x"), b"x", 0o644);
    write(&l.join("opq/y/z"), b"z", 0o644);
    write(&l.join("gone/deep/z"), b"z", 0o644);
    write(&l.join("f-to-dir"), b"was a file", 0o644);
    write(&l.join("dir-to-f/k"), b"was in a dir", 0o644);
    symlink("etc/passwd", &l.join("link"));
    mkdir(&l.join("dev"), 0o755);
    mknod(&l.join("dev/null"), FileType::CharacterDevice, 0o666, 1, 3);
    mkdir(&l.join("home/user"), 0o750);
    chown(&l.join("home/user"), 1000, 1000);
    set_xattr(&l.join("home/user"), "user.dir", b"attr");
    mkdir(&l.join("srv/empty"), 0o755);
    write(&l.join("opt/app/lib.so"), b"a library\n", 0o755);
    fs::hard_link(l.join("opt/app/lib.so"), l.join("opt/app/lib.so.1")).unwrap();
    stamp(l, 1_600_000_000);
}

/// The changes of a container, made through `m` (an overlay mount, or a plain copy).
fn change(m: &Path) {
    fs::write(m.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/bash\n").unwrap();
    fs::set_permissions(m.join("etc/shadow"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(m.join("etc/hosts"), m.join("etc/hosts2")).unwrap();
    chown(&m.join("var/lib/data/a"), 1000, 1000);
    fs::remove_file(m.join("var/lib/data/b")).unwrap();
    write(&m.join("var/lib/data/sub/new"), b"new file\n", 0o644);
    set_xattr(&m.join("var/lib/data/sub/new"), "user.k", b"v\0binary");
    fs::remove_dir_all(m.join("opq")).unwrap();
    write(&m.join("opq/fresh"), b"fresh", 0o644);
    fs::remove_dir_all(m.join("gone")).unwrap();
    fs::remove_file(m.join("f-to-dir")).unwrap();
    write(&m.join("f-to-dir/inner"), b"inner", 0o644);
    fs::remove_dir_all(m.join("dir-to-f")).unwrap();
    write(&m.join("dir-to-f"), b"now a file", 0o644);
    fs::remove_file(m.join("link")).unwrap();
    symlink("usr/bin/tool", &m.join("link"));
    symlink("/", &m.join("root-link"));
    symlink(&"../".repeat(60), &m.join("long-link"));
    mknod(&m.join("fifo"), FileType::Fifo, 0o640, 0, 0);
    mknod(&m.join("dev/zero"), FileType::CharacterDevice, 0o666, 1, 5);
    mknod(&m.join("dev/loop0"), FileType::BlockDevice, 0o660, 7, 0);
    fs::hard_link(m.join("usr/bin/tool"), m.join("usr/bin/tool-link")).unwrap();
    write(&m.join("h1"), b"two names\n", 0o644);
    fs::hard_link(m.join("h1"), m.join("h2")).unwrap();
    set_xattr(&m.join("etc/keep"), "user.new", b"1");
    write(
        &m.join("big"),
        &(0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
        0o644,
    );
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    write(&m.join(&long), b"long name", 0o644);
    write(&m.join("caf\u{e9}/\u{1F600}"), b"non-ASCII name", 0o644);
    write(&m.join("suid"), b"setuid", 0o644);
    chown(&m.join("suid"), 1000, 1000);
    fs::set_permissions(m.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    write(&m.join("home/user/.profile"), b"export X=1\n", 0o644);
    chown(&m.join("home/user/.profile"), 1000, 1000);
    // a socket: layers do not carry it
    let _sock = std::os::unix::net::UnixListener::bind(m.join("sock")).unwrap();
}

struct Overlay {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    lower: PathBuf,
    upper: PathBuf,
}

/// A lower tree, and an upper directory holding `change`'s changes made through a real
/// overlay mount.
fn overlay_snapshot() -> Overlay {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let (lower, upper, work) = (base.join("lower"), base.join("upper"), base.join("work"));
    for d in [&lower, &upper, &work] {
        fs::create_dir(d).unwrap();
    }
    build_lower(&lower);
    {
        let m = Mounted::overlay(
            &base.join("m"),
            &[&lower],
            Some((&upper, &work)),
            "index=off",
        );
        change(&m.0);
    }
    Overlay {
        _tmp: tmp,
        base,
        lower,
        upper,
    }
}

#[test]
fn overlay_upper_round_trips_in_both_apply_modes() {
    require_root!();
    let o = overlay_snapshot();
    // what the container saw
    let merged = Mounted::overlay(&o.base.join("merged"), &[&o.upper, &o.lower], None, "");
    let want = tree(&merged.0, false);
    assert!(want.contains_key("opq/fresh") && !want.contains_key("opq/x"));
    assert!(!want.contains_key("sock"));

    let source = DiffSource::Overlay {
        upper: o.upper.clone(),
        lowers: vec![o.lower.clone()],
        userxattr: false,
    };
    let (blob, s) = layer(&source, &DiffOptions::default());
    assert_eq!(s.compression, Compression::Gzip);
    let es = check_layer(&blob, &s);
    let ns = names(&es);
    for expected in [
        "etc/",
        "etc/.wh.hosts",
        "etc/hosts2",
        "var/lib/data/.wh.b",
        "opq/",
        "opq/.wh..wh..opq",
        ".wh.gone",
        "f-to-dir/",
        "f-to-dir/.wh..wh..opq",
        "dir-to-f",
        "fifo",
        "dev/zero",
    ] {
        assert!(
            ns.iter().any(|n| n == expected),
            "{expected} missing from {ns:?}"
        );
    }
    assert!(!ns
        .iter()
        .any(|n| n.contains("sock") || n.starts_with("gone/")));
    // unchanged lower content is not in the layer
    assert!(!ns
        .iter()
        .any(|n| n == "usr/bin/hl1" || n.starts_with("opt")));
    let by_name = |n: &str| &es[ns.iter().position(|x| x == n).unwrap()].0;
    let tool_link = by_name("usr/bin/tool-link");
    let tool = by_name("usr/bin/tool");
    // the first name of a hard-linked inode carries the content, the other links to it
    assert_eq!(tool.kind, EntryKind::Regular);
    assert_eq!(tool_link.kind, EntryKind::HardLink);
    assert_eq!(tool_link.link_target.as_deref(), Some(&b"usr/bin/tool"[..]));
    assert!(tool
        .xattrs
        .iter()
        .any(|x| x.name == "security.capability" && x.value == CAP));
    let wh = by_name(".wh.gone");
    assert_eq!(
        (wh.kind, wh.mode, wh.uid, wh.size, wh.mtime.secs),
        (EntryKind::Regular, 0, 0, 0, 0)
    );
    assert!(
        es.iter().all(|(e, _)| e.mtime.nanos == 0),
        "mtimes truncated"
    );
    assert!(es
        .iter()
        .all(|(e, _)| e.xattrs.iter().all(|x| !x.name.starts_with("trusted."))));
    let listing = gnu_listing(&blob);
    assert!(
        listing.contains("usr/bin/tool-link link to usr/bin/tool"),
        "{listing}"
    );
    assert!(listing.contains("opq/.wh..wh..opq"));

    // native: onto a copy of the lower directory
    let native = o.base.join("native");
    cp_a(&o.lower, &native);
    assert_eq!(apply(&blob, &native, ApplyMode::Native), s.diff_id);
    assert_trees_eq(&tree(&native, false), &want, "native apply");

    // overlay: as a new upper directory, mounted over the lower one
    let upper2 = o.base.join("upper2");
    fs::create_dir(&upper2).unwrap();
    assert_eq!(apply(&blob, &upper2, ApplyMode::Overlay), s.diff_id);
    let again = Mounted::overlay(&o.base.join("again"), &[&upper2, &o.lower], None, "");
    assert_trees_eq(&tree(&again.0, false), &want, "overlay apply");

    // the same tree gives the same blob
    let (blob2, s2) = layer(&source, &DiffOptions::default());
    assert_eq!(s, s2);
    assert!(blob == blob2);
}

#[test]
fn two_trees_round_trip_natively() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let (left, right) = (base.join("left"), base.join("right"));
    fs::create_dir(&left).unwrap();
    build_lower(&left);
    cp_a(&left, &right);
    change(&right);
    // what only a content comparison sees: same size, same whole-second mtime
    fs::write(right.join("var/lib/data/sub/c"), b"C").unwrap();
    set_mtime(&right.join("var/lib/data/sub/c"), 1_600_000_000, 0);
    // a new link to an unchanged file: both names must come out linked
    fs::hard_link(right.join("etc/group"), right.join("etc/group-link")).unwrap();
    // ... and in a directory the layer has no other reason to hold
    fs::hard_link(right.join("opt/app/lib.so"), right.join("zz-lib")).unwrap();
    // metadata-only changes
    set_mtime(&right.join("srv/empty"), 1_700_000_000, 0);
    fs::remove_file(right.join("dev/null")).unwrap();
    mknod(
        &right.join("dev/null"),
        FileType::CharacterDevice,
        0o666,
        1,
        7,
    );
    set_mtime(&right.join("dev/null"), 1_600_000_000, 0);
    // a file replaced by a socket: gone, as far as a layer can tell
    fs::remove_file(right.join("var/lib/data/a")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(right.join("var/lib/data/a")).unwrap();
    // a symlink to a directory is not followed, nor is a fifo opened
    symlink("/etc", &right.join("etc-link"));

    let want = tree(&right, false);
    let source = DiffSource::Dirs {
        left: Some(left.clone()),
        right: right.clone(),
    };
    let (blob, s) = layer(&source, &DiffOptions::default());
    let es = check_layer(&blob, &s);
    let ns = names(&es);
    for present in [
        "var/lib/data/sub/c",
        "var/lib/data/.wh.a",
        "srv/",
        "srv/empty/",
        "dev/null",
        "etc-link",
    ] {
        assert!(
            ns.contains(&present.to_string()),
            "{present} missing from {ns:?}"
        );
    }
    // unchanged nodes stay out
    for absent in ["usr/bin/hl1", "usr/bin/hl2", "etc/hosts", "etc/keep-"] {
        assert!(!ns.contains(&absent.to_string()), "{absent} in {ns:?}");
    }
    assert!(!ns.iter().any(|n| n.starts_with("etc-link/")));
    let group: Vec<_> = es
        .iter()
        .filter(|(e, _)| e.path.starts_with(b"etc/group"))
        .map(|(e, _)| (String::from_utf8(e.path.clone()).unwrap(), e.kind))
        .collect();
    assert_eq!(
        group,
        [
            ("etc/group-link".to_string(), EntryKind::Regular),
            ("etc/group".to_string(), EntryKind::HardLink),
        ],
        "the unchanged name is linked after the changed one"
    );
    let tail: Vec<_> = es[es.len() - 5..]
        .iter()
        .map(|(e, _)| (String::from_utf8(e.path.clone()).unwrap(), e.kind))
        .collect();
    assert_eq!(
        tail,
        [
            ("zz-lib".to_string(), EntryKind::Regular),
            ("opt/".to_string(), EntryKind::Directory),
            ("opt/app/".to_string(), EntryKind::Directory),
            ("opt/app/lib.so".to_string(), EntryKind::HardLink),
            ("opt/app/lib.so.1".to_string(), EntryKind::HardLink),
        ],
        "unchanged names elsewhere come with their directories"
    );

    let target = base.join("applied");
    cp_a(&left, &target);
    assert_eq!(apply(&blob, &target, ApplyMode::Native), s.diff_id);
    assert_trees_eq(&tree(&target, false), &want, "native apply");

    // without a left side: a base layer holding the whole tree
    let source = DiffSource::Dirs {
        left: None,
        right: right.clone(),
    };
    let (blob, s) = layer(&source, &DiffOptions::default());
    let es = check_layer(&blob, &s);
    assert!(!names(&es).iter().any(|n| n.contains(".wh.")));
    let fresh = base.join("fresh");
    fs::create_dir(&fresh).unwrap();
    apply(&blob, &fresh, ApplyMode::Native);
    assert_trees_eq(&tree(&fresh, false), &want, "base layer");

    // nothing changed: an empty layer
    let source = DiffSource::Dirs {
        left: Some(right.clone()),
        right: right.clone(),
    };
    let (blob, s) = layer(&source, &DiffOptions::default());
    assert_eq!(check_layer(&blob, &s).len(), 0);
    assert_eq!(s.uncompressed_size, 1024);
}

#[test]
fn codecs_nanoseconds_and_determinism() {
    require_root!();
    let o = overlay_snapshot();
    let merged = Mounted::overlay(&o.base.join("merged"), &[&o.upper, &o.lower], None, "");
    let want = tree(&merged.0, true);
    let source = DiffSource::Overlay {
        upper: o.upper.clone(),
        lowers: vec![o.lower.clone()],
        userxattr: false,
    };
    let mut diff_ids = BTreeSet::new();
    for (i, compression) in [Compression::Zstd, Compression::None, Compression::Gzip]
        .into_iter()
        .enumerate()
    {
        let options = DiffOptions {
            compression,
            level: Some(1),
            keep_nanos: true,
        };
        let (blob, s) = layer(&source, &options);
        assert_eq!(
            Compression::sniff(&blob).unwrap_or(Compression::None),
            compression
        );
        let es = check_layer(&blob, &s);
        assert!(
            es.iter().any(|(e, _)| e.mtime.nanos != 0),
            "nanoseconds kept"
        );
        diff_ids.insert(s.diff_id);
        if compression == Compression::None {
            assert_eq!(s.digest, s.diff_id);
        }
        let (blob2, s2) = layer(&source, &options);
        assert_eq!(s, s2);
        assert!(blob == blob2, "deterministic");
        let target = o.base.join(format!("applied{i}"));
        cp_a(&o.lower, &target);
        assert_eq!(apply(&blob, &target, ApplyMode::Native), s.diff_id);
        assert_trees_eq(&tree(&target, true), &want, "exact mtimes");
    }
    assert_eq!(diff_ids.len(), 1, "the tar is the same whatever the codec");
}

#[test]
fn metacopy_data_comes_from_the_lowers_and_redirected_dirs_are_refused() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let (lower, upper, work) = (base.join("lower"), base.join("upper"), base.join("work"));
    for d in [&lower, &upper, &work] {
        fs::create_dir(d).unwrap();
    }
    write(&lower.join("f"), b"data of f", 0o644);
    write(&lower.join("sub/g"), b"data of g", 0o644);
    mkdir(&lower.join("d"), 0o755);
    write(&lower.join("d/x"), b"x", 0o644);
    {
        let m = Mounted::overlay(
            &base.join("m"),
            &[&lower],
            Some((&upper, &work)),
            "index=off,metacopy=on",
        );
        chown(&m.0.join("f"), 5, 5);
        chown(&m.0.join("sub/g"), 6, 6);
        fs::rename(m.0.join("sub/g"), m.0.join("sub/g2")).unwrap();
    }
    let mut buf = [0u8; 64];
    assert!(
        rustix::fs::lgetxattr(
            upper.join("f").as_path(),
            "trusted.overlay.metacopy",
            &mut buf[..]
        )
        .is_ok(),
        "the kernel made a metacopy file"
    );
    let merged = Mounted::overlay(&base.join("merged"), &[&upper, &lower], None, "metacopy=on");
    let want = tree(&merged.0, false);
    let source = DiffSource::Overlay {
        upper: upper.clone(),
        lowers: vec![lower.clone()],
        userxattr: false,
    };
    let (blob, s) = layer(&source, &DiffOptions::default());
    let es = check_layer(&blob, &s);
    let f = es.iter().find(|(e, _)| e.path == b"f").unwrap();
    assert_eq!((f.0.uid, &f.1[..]), (5, &b"data of f"[..]));
    let g = es.iter().find(|(e, _)| e.path == b"sub/g2").unwrap();
    assert_eq!((g.0.uid, &g.1[..]), (6, &b"data of g"[..]));
    let target = base.join("applied");
    cp_a(&lower, &target);
    apply(&blob, &target, ApplyMode::Native);
    assert_trees_eq(&tree(&target, false), &want, "metacopy");

    // without the lower directory the data is nowhere
    let source = DiffSource::Overlay {
        upper: upper.clone(),
        lowers: vec![],
        userxattr: false,
    };
    let err = write_layer(&source, &DiffOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, DiffError::Unsupported { ref path, .. } if path == "f"),
        "{err}"
    );
    drop(merged);

    // a directory renamed under redirect_dir takes its content from elsewhere
    {
        let m = Mounted::overlay(
            &base.join("m"),
            &[&lower],
            Some((&upper, &work)),
            "index=off,metacopy=on",
        );
        fs::rename(m.0.join("d"), m.0.join("d2")).unwrap();
    }
    let source = DiffSource::Overlay {
        upper,
        lowers: vec![lower],
        userxattr: false,
    };
    let err = write_layer(&source, &DiffOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, DiffError::Unsupported { ref path, .. } if path == "d2"),
        "{err}"
    );
}

#[test]
fn user_xattr_overlays_use_their_own_namespace() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let upper = base.join("upper");
    // an upper directory as a userxattr overlay leaves it
    mkdir(&upper.join("opaque"), 0o755);
    set_xattr(&upper.join("opaque"), "user.overlay.opaque", b"y");
    mkdir(&upper.join("plain"), 0o755);
    set_xattr(&upper.join("plain"), "trusted.overlay.opaque", b"y");
    mknod(&upper.join("wh"), FileType::CharacterDevice, 0, 0, 0);
    let layer_names = |userxattr| {
        let source = DiffSource::Overlay {
            upper: upper.clone(),
            lowers: vec![],
            userxattr,
        };
        let (blob, s) = layer(&source, &DiffOptions::default());
        let es = check_layer(&blob, &s);
        let xattrs: Vec<String> = es
            .iter()
            .flat_map(|(e, _)| e.xattrs.iter().map(|x| x.name.clone()))
            .collect();
        (names(&es), xattrs)
    };
    let (ns, xs) = layer_names(true);
    assert_eq!(ns, ["opaque/", "opaque/.wh..wh..opq", "plain/", ".wh.wh"]);
    assert!(xs.is_empty(), "{xs:?}");
    let (ns, xs) = layer_names(false);
    assert_eq!(ns, ["opaque/", "plain/", "plain/.wh..wh..opq", ".wh.wh"]);
    // user.overlay.* is plain user data to a trusted-namespace overlay
    assert_eq!(xs, ["user.overlay.opaque"]);
}

#[test]
fn names_a_layer_cannot_carry_are_refused() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    for (name, what) in [
        (&b"bad\xffname"[..], "not UTF-8"),
        (b".wh.sneaky", "whiteout name"),
    ] {
        let right = base.join(format!("r{}", what.len()));
        mkdir(&right.join("dir"), 0o755);
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
        fs::write(right.join("dir").join(name), b"x").unwrap();
        let source = DiffSource::Dirs { left: None, right };
        let err = write_layer(&source, &DiffOptions::default(), &mut Vec::new()).unwrap_err();
        match what {
            "not UTF-8" => assert!(matches!(err, DiffError::NotUtf8 { .. }), "{err}"),
            _ => assert!(
                matches!(err, DiffError::Unsupported { ref path, .. } if path == "dir/.wh.sneaky"),
                "{err}"
            ),
        }
    }
}

#[test]
fn deep_trees_reopen_their_directories_and_overlong_paths_are_refused() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let (left, right) = (base.join("left"), base.join("right"));
    // deeper than the levels held open, with files at every level and a change at the bottom
    let depth = KEEP_OPEN * 3;
    let mut l = left.clone();
    let mut r = right.clone();
    for i in 0..depth {
        l.push("d");
        r.push("d");
        write(&l.join("f"), format!("{i}").as_bytes(), 0o644);
        write(&r.join("f"), format!("{i}").as_bytes(), 0o644);
        write(&l.join("g"), b"g", 0o644);
        write(&r.join("g"), b"g", 0o644);
    }
    write(&r.join("new"), b"bottom", 0o644);
    fs::write(right.join("d/z"), b"top").unwrap();
    stamp(&left, 1_600_000_000);
    stamp(&right, 1_600_000_000);
    set_mtime(&r, 1_700_000_000, 0);
    let want = tree(&right, false);
    let source = DiffSource::Dirs {
        left: Some(left.clone()),
        right: right.clone(),
    };
    let (blob, s) = layer(&source, &DiffOptions::default());
    let es = check_layer(&blob, &s);
    // every directory down to the change, the new file, and the file added at the top
    assert_eq!(es.len(), depth + 2, "{:?}", names(&es));
    let target = base.join("applied");
    cp_a(&left, &target);
    apply(&blob, &target, ApplyMode::Native);
    assert_trees_eq(&tree(&target, false), &want, "deep tree");

    // a path longer than PATH_MAX: made with *at calls, a level at a time
    let long = base.join("long");
    fs::create_dir(&long).unwrap();
    let mut fd =
        rustix::fs::open(&long, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    let name = "n".repeat(200);
    for _ in 0..(PATH_MAX / 201 + 1) {
        rustix::fs::mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(
            &fd,
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
    }
    let source = DiffSource::Dirs {
        left: None,
        right: long.clone(),
    };
    let err = write_layer(&source, &DiffOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, DiffError::PathTooLong { .. }), "{err}");
    // tempdir cannot remove it by path either
    let st = Command::new("rm").arg("-rf").arg(&long).status().unwrap();
    assert!(st.success());
}

#[test]
fn output_errors_and_options() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let right = tmp.path().join("r");
    write(&right.join("f"), &[1u8; 200_000], 0o644);
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let source = DiffSource::Dirs {
        left: None,
        right: right.clone(),
    };
    let err = write_layer(&source, &DiffOptions::default(), &mut Broken).unwrap_err();
    assert!(matches!(err, DiffError::Output(_)), "{err}");
    let missing = DiffSource::Dirs {
        left: None,
        right: tmp.path().join("missing"),
    };
    let err = write_layer(&missing, &DiffOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, DiffError::Io { op: "open", .. }), "{err}");
    // levels change the blob, not the diff ID
    let fast = DiffOptions {
        level: Some(1),
        ..DiffOptions::default()
    };
    let (b1, s1) = layer(&source, &fast);
    let (b9, s9) = layer(
        &source,
        &DiffOptions {
            level: Some(9),
            ..DiffOptions::default()
        },
    );
    assert_eq!(s1.diff_id, s9.diff_id);
    assert_ne!(s1.digest, s9.digest);
    assert!(b9.len() <= b1.len());
    let mut gz = flate2::read::GzDecoder::new(&b1[..]);
    let mut tar = Vec::new();
    gz.read_to_end(&mut tar).unwrap();
    assert_eq!(Digest::sha256(&tar), s1.diff_id);
}
