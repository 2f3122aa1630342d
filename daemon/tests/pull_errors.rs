//! Bad images fail cleanly: a truncated layer, a layer whose diff ID is not the config's, and a
//! hostile layer (escaping names, symlinks out, hard links out) — through `berth image pull`
//! and through ctr's own unpack (Diff.Apply). Each failure is a typed error; no snapshot is
//! committed, no image recorded, and nothing outside the snapshot directory is touched.

mod common;

use std::path::Path;
use std::process::Command;

use common::{sha256_hex, Berthd, Registry};

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let d = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&d).unwrap());
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    out.stdout
}

/// A raw tar entry (ustar header + data + padding), for names the tar tools refuse to write.
fn entry(name: &str, kind: u8, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn tar(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut t: Vec<u8> = entries.concat();
    t.extend_from_slice(&[0u8; 1024]);
    t
}

/// Pushes a one-layer image whose config claims `diff_id`; returns the reference.
fn push(reg: &Registry, repo: &str, layer_blob: &[u8], diff_id: &str) -> String {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let c = reg.push_blob(repo, config.as_bytes());
    let l = reg.push_blob(repo, layer_blob);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{l}","size":{}}}]}}"#,
        config.len(),
        layer_blob.len()
    );
    reg.push_manifest(
        repo,
        "bad",
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    );
    format!("{}/{repo}:bad", reg.addr)
}

fn assert_nothing_committed(d: &Berthd, image: &str) {
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    assert_eq!(snaps.lines().count(), 1, "no snapshot left: {snaps}");
    assert!(!d.ctr_ok(&["images", "ls", "-q"]).contains(image));
}

#[test]
fn bad_layers_fail_with_typed_errors_and_leave_nothing() {
    let reg = Registry::start();
    let d = Berthd::start("smol");
    let good = tar(&[entry("hello", b'0', "", b"hi\n")]);
    let good_gz = gzip(&good);

    // 1. truncated gzip (its digest is that of the truncated bytes: the registry accepts it)
    let cut = &good_gz[..good_gz.len() - 20];
    let r = push(
        &reg,
        "bad/truncated",
        cut,
        &format!("sha256:{}", sha256_hex(&good)),
    );
    let o = d.berth(&["image", "pull", "-q", &r]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("unpacking") && e.contains("truncated"), "{e}");
    assert_nothing_committed(&d, &r);
    let e = d.ctr_err(&["images", "pull", "--plain-http", &r]);
    assert!(
        e.contains("truncated"),
        "ctr's unpack gets the typed error too: {e}"
    );
    assert_nothing_committed(&d, "bad/truncated:bad@");

    // 2. the config names another diff ID
    let r = push(
        &reg,
        "bad/diffid",
        &good_gz,
        &format!("sha256:{}", sha256_hex(b"other")),
    );
    let o = d.berth(&["image", "pull", "-q", &r]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("diff ID"), "{e}");
    assert_nothing_committed(&d, &r);

    // 3. hostile entries: `..` escape is refused outright
    let outside = d.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let evil = tar(&[entry(
        "../../../../../../../../tmp/berth-escape",
        b'0',
        "",
        b"x",
    )]);
    let r = push(
        &reg,
        "bad/dotdot",
        &gzip(&evil),
        &format!("sha256:{}", sha256_hex(&evil)),
    );
    let o = d.berth(&["image", "pull", "-q", &r]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!Path::new("/tmp/berth-escape").exists());
    assert_nothing_committed(&d, &r);

    // 4. a symlink pointing out, then a file written through it, and a hard link to a host
    //    file: applied beneath the snapshot, never outside
    let target = outside.display().to_string();
    let sneaky = tar(&[
        entry("out", b'2', &target, b""),
        entry("out/planted", b'0', "", b"gotcha"),
        entry("abs", b'2', "/", b""),
        entry("abs/etc/berth-planted", b'0', "", b"gotcha"),
        entry("passwd", b'1', "/etc/passwd", b""),
    ]);
    let r = push(
        &reg,
        "bad/links",
        &gzip(&sneaky),
        &format!("sha256:{}", sha256_hex(&sneaky)),
    );
    let o = d.berth(&["image", "pull", "-q", &r]);
    // a hard link to a path the layer never created has no target inside the snapshot
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing written outside"
    );
    assert!(!Path::new("/etc/berth-planted").exists());
    assert_nothing_committed(&d, &r);

    // the same without the hard link applies, entirely inside the snapshot
    let inside = tar(&[
        entry("out", b'2', &target, b""),
        entry("out/planted", b'0', "", b"gotcha"),
        entry("abs", b'2', "/", b""),
        entry("abs/etc/berth-planted", b'0', "", b"gotcha"),
    ]);
    let r = push(
        &reg,
        "bad/inside",
        &gzip(&inside),
        &format!("sha256:{}", sha256_hex(&inside)),
    );
    let o = d.berth(&["image", "pull", "-q", &r]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing written outside"
    );
    assert!(!Path::new("/etc/berth-planted").exists());
    let mnt = tempfile::tempdir().unwrap();
    let m = mnt.path().to_str().unwrap();
    let o = d.berth(&["image", "mount", &r, m]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // the symlinks resolved as if the snapshot were `/`: the files landed under its root
    let planted = std::fs::read(
        mnt.path()
            .join(outside.strip_prefix("/").unwrap())
            .join("planted"),
    );
    let etc = std::fs::read(mnt.path().join("etc/berth-planted"));
    let _ = d.berth(&["image", "unmount", "--rm", m]);
    assert_eq!(planted.unwrap(), b"gotcha");
    assert_eq!(etc.unwrap(), b"gotcha");
}
