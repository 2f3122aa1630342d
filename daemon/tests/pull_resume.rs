//! `berth image pull` survives `kill -9` of berthd mid-download: the restarted daemon's next
//! pull continues the layer from the bytes already on disk (unpacking them from disk, asking the
//! registry only for the rest), and the image comes out whole and verified.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{pseudo_random, sha256_hex, Berthd, Registry};

#[test]
fn a_pull_killed_mid_download_resumes_where_it_stopped() {
    let reg = Registry::start();
    // one uncompressed layer holding a 160 MiB file
    let payload = pseudo_random(160 << 20, 11);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), &payload).unwrap();
    let tar = Command::new("tar")
        .args([
            "--sort=name",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--mtime=@0",
            "-C",
        ])
        .arg(dir.path())
        .args(["-cf", "-", "big.bin"])
        .output()
        .unwrap()
        .stdout;
    let layer = reg.push_blob("t/big", &tar);
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let cfg = reg.push_blob("t/big", config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{}}}]}}"#,
        config.len(),
        tar.len()
    );
    reg.push_manifest(
        "t/big",
        "1",
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    );
    let reference = format!("{}/t/big:1", reg.addr);
    let partial = |d: &Berthd| {
        d.root()
            .join("content/ingest")
            .join(format!("pull-{}", layer.trim_start_matches("sha256:")))
    };

    // start a pull and kill berthd once part of the layer is on disk
    let mut d = Berthd::start("smol");
    let mut child = Command::new(common::berth_bin())
        .arg("--address")
        .arg(&d.sock)
        .args(["image", "pull", "-q", &reference])
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut caught = 0;
    while t0.elapsed() < Duration::from_secs(30) {
        let len = std::fs::metadata(partial(&d)).map_or(0, |m| m.len());
        if len > 8 << 20 {
            d.kill9();
            caught = std::fs::metadata(partial(&d)).map_or(0, |m| m.len());
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        caught > 0 && caught < tar.len() as u64,
        "berthd was killed mid-download (partial file of {caught} of {} bytes)",
        tar.len()
    );

    // restart; the next pull resumes from the partial file
    d.restart();
    let o = d.berth(&["image", "pull", "-q", &reference]);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        d.log()
    );
    let log = d.log();
    assert!(log.contains("resuming the download at byte"), "{log}");
    assert!(!partial(&d).exists(), "the partial file became the blob");
    assert!(log.contains("dropped the leases of 1 transfers"), "{log}");
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    assert_eq!(
        snaps.lines().count(),
        2,
        "the killed pull's extraction snapshot is gone: {snaps}"
    );

    // the blob and the unpacked file are whole
    let blob = std::fs::read(
        d.root()
            .join("content/blobs/sha256")
            .join(layer.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&blob)), layer);
    let mnt = tempfile::tempdir().unwrap();
    let m = mnt.path().to_str().unwrap();
    let o = d.berth(&["image", "mount", &reference, m]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = std::fs::read(mnt.path().join("big.bin"));
    let _ = d.berth(&["image", "unmount", "--rm", m]);
    assert!(
        got.unwrap() == payload,
        "the unpacked file is byte-identical"
    );
}
