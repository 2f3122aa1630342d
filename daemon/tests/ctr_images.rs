//! containerd's real `ctr` 1.6 against berthd, on both drivers: image pulls (gzip, zstd, Docker
//! schema 2, a multi-platform index), the images commands, the snapshots commands, and garbage
//! collection leaving nothing behind. Images are built here and served by a real
//! docker-registry; layers are unpacked into real overlayfs snapshots and mounted by ctr.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::images::{
    busybox_layer, push_image, push_index, rich_layers, Compression, Format, Spec,
};
use common::{http, Berthd, Registry};

/// Checks a mounted rich image: content, modes, owners, links, xattrs and whiteouts.
fn check_rich_tree(root: &Path) {
    let meta =
        |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert!(meta("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(meta("tmp").permissions().mode() & 0o7777, 0o1777);
    assert_eq!(meta("data").permissions().mode() & 0o7777, 0o750);
    assert_eq!(meta("data/suid").permissions().mode() & 0o7777, 0o4755);
    let notes = meta("home/user/notes");
    assert_eq!((notes.uid(), notes.gid()), (1000, 1000));
    assert_eq!(
        std::fs::read(root.join("data/big")).unwrap(),
        common::pseudo_random(300_000, 3)
    );
    assert_eq!(
        meta("data/big").ino(),
        meta("data/big-link").ino(),
        "hard link kept"
    );
    assert_eq!(
        std::fs::read_link(root.join("data/passwd-link")).unwrap(),
        Path::new("../etc/passwd")
    );
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &meta("data/fifo").file_type()
    ));
    let x = std::process::Command::new("getfattr")
        .args(["-d", "-m", "-", "--absolute-names"])
        .arg(root.join("data/xattrs"))
        .output()
        .unwrap();
    let x = String::from_utf8_lossy(&x.stdout);
    assert!(x.contains("user.color=\"blue\""), "{x}");
    // `trusted.*` xattrs in a layer are refused, as containerd does: they could forge overlay's
    // own attributes (trusted.overlay.*)
    assert!(!x.contains("trusted.berth"), "{x}");
    assert!(
        !root.join("usr/share/doc/gone.txt").exists(),
        "whiteout applied"
    );
    assert!(root.join("usr/share/doc").is_dir());
    let old: Vec<_> = std::fs::read_dir(root.join("var/lib/old"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        old,
        ["new"],
        "opaque directory hides the lower layer's files"
    );
}

/// Unmounts its target when dropped, also when a test fails half-way.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        assert!(
            sh(&format!("umount {}", self.0.display())) || std::thread::panicking(),
            "umount {}",
            self.0.display()
        );
    }
}

fn sh(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .status()
        .is_ok_and(|s| s.success())
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.trim().is_empty()).collect()
}

fn suite(driver: &str) {
    let reg = Registry::start();
    let layers = rich_layers();
    let gz = push_image(
        &reg,
        "t/rich",
        "gzip",
        &layers,
        Spec::amd64(Compression::Gzip, Format::Oci),
    );
    let zs = push_image(
        &reg,
        "t/rich",
        "zstd",
        &layers,
        Spec::amd64(Compression::Zstd, Format::Oci),
    );
    let dk = push_image(
        &reg,
        "t/rich",
        "docker",
        &layers,
        Spec::amd64(Compression::Gzip, Format::Docker),
    );
    let bb = busybox_layer();
    let amd = push_image(
        &reg,
        "t/multi",
        "amd64",
        std::slice::from_ref(&bb),
        Spec::amd64(Compression::Gzip, Format::Oci),
    );
    let arm = push_image(
        &reg,
        "t/multi",
        "arm64",
        &[bb],
        Spec {
            compression: Compression::Gzip,
            format: Format::Oci,
            arch: "arm64",
            variant: Some("v8"),
        },
    );
    push_index(
        &reg,
        "t/multi",
        "latest",
        &[(&amd, "amd64", None), (&arm, "arm64", Some("v8"))],
    );
    let multi = format!("{}/t/multi:latest", reg.addr);

    let d = Berthd::start(driver);
    let events = d.ctr_events();

    // pulls: gzip, zstd, Docker schema 2 (all three share their diff IDs, so one chain)
    for img in [&gz, &zs, &dk] {
        let out = d.ctr_ok(&["images", "pull", "--plain-http", &img.reference]);
        assert!(out.contains("done"), "{out}");
    }
    let ls = d.ctr_ok(&["images", "ls", "-q"]);
    for img in [&gz, &zs, &dk] {
        assert!(ls.contains(&img.reference), "{ls}");
    }
    let check = d.ctr_ok(&["images", "check"]);
    assert_eq!(
        check.lines().filter(|l| l.contains("complete")).count(),
        3,
        "{check}"
    );
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    assert_eq!(
        snaps.lines().filter(|l| l.contains("Committed")).count(),
        2,
        "two layers, one chain shared by all three images: {snaps}"
    );
    // the config's snapshot gc label points at the top chain ID (ctr's unpack writes it)
    let info = d.ctr_ok(&["content", "ls"]);
    assert!(
        info.contains("containerd.io/gc.ref.snapshot.overlayfs="),
        "{info}"
    );
    assert!(info.contains("containerd.io/uncompressed="), "{info}");

    // the unpacked image, mounted by ctr from berthd's snapshot mounts
    let mnt = tempfile::tempdir().unwrap();
    let target = mnt.path().to_str().unwrap();
    d.ctr_ok(&["images", "mount", &gz.reference, target]);
    check_rich_tree(mnt.path());
    // ctr's mount holds a lease named after the target; --rm drops it and the snapshot
    d.ctr_ok(&["images", "unmount", "--rm", target]);
    assert!(!mnt.path().join("bin").exists(), "unmounted");

    // multi-platform: one platform, then all
    d.ctr_ok(&[
        "images",
        "pull",
        "--plain-http",
        "--platform",
        "linux/arm64",
        &multi,
    ]);
    let content = d.ctr_ok(&["content", "ls", "-q"]);
    assert!(
        content.contains(&arm.config),
        "arm64 config fetched: {content}"
    );
    assert!(
        !content.contains(&amd.config),
        "amd64 config not fetched: {content}"
    );
    d.ctr_ok(&["images", "pull", "--plain-http", "--all-platforms", &multi]);
    let content = d.ctr_ok(&["content", "ls", "-q"]);
    assert!(
        content.contains(&arm.config) && content.contains(&amd.config),
        "{content}"
    );

    // tag, label
    let tagged = format!("{}/t/rich:tagged", reg.addr);
    d.ctr_ok(&["images", "tag", &gz.reference, &tagged]);
    d.ctr_ok(&["images", "label", &tagged, "tier=gold"]);
    let ls = d.ctr_ok(&["images", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&tagged) && l.contains("tier=gold")),
        "{ls}"
    );

    // snapshots commands on top of an image's chain
    let top = d
        .ctr_ok(&["snapshots", "ls"])
        .lines()
        .filter(|l| l.contains("Committed"))
        .find(|l| {
            !l.split_whitespace().nth(1).unwrap_or("").is_empty()
                && l.split_whitespace().count() == 3
        })
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .expect("a committed snapshot with a parent");
    d.ctr_ok(&["snapshots", "prepare", "work", &top]);
    let m = d.ctr_ok(&["snapshots", "mounts", "/mnt", "work"]);
    assert!(m.contains("overlay") && m.contains("lowerdir="), "{m}");
    // changes in the upper directory become a layer (Diff.Diff): a new file and a whiteout
    let upper = m
        .split(',')
        .find_map(|o| o.strip_prefix("upperdir="))
        .expect("upperdir")
        .to_string();
    std::fs::write(Path::new(&upper).join("added.txt"), "new\n").unwrap();
    std::fs::create_dir(Path::new(&upper).join("etc")).unwrap();
    let st = std::process::Command::new("mknod")
        .arg(Path::new(&upper).join("etc/group"))
        .args(["c", "0", "0"])
        .status()
        .unwrap();
    assert!(st.success());
    let layer = d.ctr(&["snapshots", "diff", "work"]);
    assert!(
        layer.status.success(),
        "{}",
        String::from_utf8_lossy(&layer.stderr)
    );
    let listing = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(listing.path(), &layer.stdout).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(listing.path())
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&tar.stdout);
    assert!(
        names.contains("added.txt") && names.contains("etc/.wh.group"),
        "the layer holds the change and the whiteout: {names}"
    );
    // A removed snapshot that is still mounted (as the root of a task deleted a moment ago
    // can be) keeps its files until the mount is gone: they are never deleted under it.
    d.ctr_ok(&["snapshots", "prepare", "held", &top]);
    let target = tempfile::tempdir().unwrap();
    let cmd = d.ctr_ok(&[
        "snapshots",
        "mounts",
        &target.path().to_string_lossy(),
        "held",
    ]);
    assert!(sh(&cmd), "{cmd}");
    let mounted = Unmount(target.path().to_path_buf());
    let held_upper = cmd
        .split(',')
        .find_map(|o| o.strip_prefix("upperdir="))
        .expect("upperdir")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let id = Path::new(&held_upper)
        .parent()
        .and_then(|p| p.file_name())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::write(target.path().join("marker"), "x").unwrap();
    d.ctr_ok(&["snapshots", "rm", "held"]);
    let trash = Path::new(&held_upper)
        .parent()
        .unwrap()
        .with_file_name(format!("trash-{id}"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        trash.join("fs/marker").exists(),
        "the files of a mounted snapshot were deleted ({})",
        trash.display()
    );
    drop(mounted);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while trash.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !trash.exists(),
        "{} stayed after the unmount",
        trash.display()
    );
    d.ctr_ok(&["snapshots", "label", "work", "purpose=test"]);
    assert!(d.ctr_ok(&["snapshots", "info", "work"]).contains("purpose"));
    d.ctr_ok(&["snapshots", "commit", "work-done", "work"]);
    // `ctr snapshots view` sets no gc.root label (prepare does): like containerd, berthd's next
    // collection removes such a view. Collections follow deletes (the pulls' lease removals
    // above) by 100 ms: let them finish so the view lives through the checks below.
    std::thread::sleep(Duration::from_millis(600));
    d.ctr_ok(&["snapshots", "view", "look", "work-done"]);
    let tree = d.ctr_ok(&["snapshots", "tree"]);
    assert!(
        tree.contains("work-done") && tree.contains("look"),
        "{tree}"
    );
    let usage = d.ctr_ok(&["snapshots", "usage"]);
    assert!(usage.contains(&top), "{usage}");
    let e = d.ctr_err(&["snapshots", "rm", "work-done"]);
    assert!(e.contains("parent"), "{e}");
    d.ctr_ok(&["snapshots", "rm", "look"]);
    d.ctr_ok(&["snapshots", "rm", "work-done"]);

    // export, then remove everything, then import the export
    let exp = tempfile::tempdir().unwrap();
    let tarball = exp.path().join("rich.tar");
    d.ctr_ok(&["images", "export", tarball.to_str().unwrap(), &gz.reference]);

    // push to another repository of the registry (ctr uploads what it reads from berthd)
    let pushed = format!("{}/t/pushed:1", reg.addr);
    d.ctr_ok(&["images", "tag", &gz.reference, &pushed]);
    d.ctr_ok(&["images", "push", "--plain-http", &pushed]);
    let (code, _, body) = http(
        &reg.addr,
        "GET",
        "/v2/t/pushed/manifests/1",
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        &[],
    )
    .unwrap();
    assert_eq!(code, 200);
    assert_eq!(format!("sha256:{}", common::sha256_hex(&body)), gz.manifest);

    // convert: uncompressed layers, a new manifest
    d.ctr_ok(&[
        "images",
        "convert",
        "--uncompress",
        &gz.reference,
        "converted:1",
    ]);
    assert!(d.ctr_ok(&["images", "ls", "-q"]).contains("converted:1"));

    let all = d.ctr_ok(&["images", "ls", "-q"]);
    let mut rm = vec!["images", "rm", "--sync"];
    rm.extend(lines(&all));
    d.ctr_ok(&rm);
    assert_eq!(d.ctr_ok(&["images", "ls", "-q"]).trim(), "");
    assert_eq!(
        d.ctr_ok(&["content", "ls", "-q"]).trim(),
        "",
        "GC removed every blob"
    );
    let left = d.ctr_ok(&["snapshots", "ls"]);
    assert_eq!(
        lines(&left).len(),
        1,
        "only the header is left: {left}\nleases: {}",
        d.ctr_ok(&["leases", "ls"])
    );
    let blobs = d.root().join("content/blobs/sha256");
    assert_eq!(
        std::fs::read_dir(&blobs).map_or(0, |r| r.count()),
        0,
        "blob files unlinked"
    );

    d.ctr_ok(&["images", "import", tarball.to_str().unwrap()]);
    assert!(d.ctr_ok(&["images", "ls", "-q"]).contains(&gz.reference));
    let mnt = tempfile::tempdir().unwrap();
    let target = mnt.path().to_str().unwrap();
    d.ctr_ok(&["images", "mount", &gz.reference, target]);
    check_rich_tree(mnt.path());
    d.ctr_ok(&["images", "unmount", "--rm", target]);
    d.ctr_ok(&["images", "rm", "--sync", &gz.reference]);
    assert_eq!(d.ctr_ok(&["content", "ls", "-q"]).trim(), "");
    assert_eq!(lines(&d.ctr_ok(&["snapshots", "ls"])).len(), 1);

    let ev = common::events_output(events);
    for topic in [
        "/snapshot/prepare",
        "/snapshot/commit",
        "/snapshot/remove",
        "/images/create",
        "/images/delete",
    ] {
        assert!(ev.contains(topic), "event {topic} missing:\n{ev}");
    }
}

#[test]
fn ctr_images_on_smol() {
    suite("smol");
}

#[test]
fn ctr_images_on_io_uring() {
    suite("io-uring");
}
