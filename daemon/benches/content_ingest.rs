//! `cargo bench -p berthd --bench content_ingest`: 1 GiB through `ctr content ingest` into berthd
//! (both drivers) and into containerd 1.6 on the same machine, in the same run; and through
//! `berth content ingest`. Prints medians of N runs (default 5; env BENCH_RUNS) and ratios.
//!
//! Needs the peer harness (`../shared/peer/setup.sh`, run here if containerd is not up) and the
//! shipped `berth` binary (`scripts/build-release.sh`). Every daemon root is fresh; the input
//! file lives on tmpfs so reading it costs the same for everyone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[path = "util/mod.rs"]
mod util;
use util::{median, sh};

const SIZE: usize = 1 << 30;

/// berthd on a fresh root under `base`, removed when dropped (after the daemon).
struct Daemon {
    d: Option<util::Daemon>,
    dir: PathBuf,
}

impl Daemon {
    fn start(driver: &str, base: &Path, run: usize) -> Daemon {
        let dir = base.join(format!("{driver}-{run}"));
        let bin = Path::new(env!("CARGO_BIN_EXE_berthd"));
        let d = util::Daemon::berthd(bin, &dir, driver, "default", &[]).unwrap();
        Daemon { d: Some(d), dir }
    }

    fn sock(&self) -> &Path {
        &self.d.as_ref().unwrap().sock
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.d.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn time_ctr_ingest(sock: &Path, ns: &str, file: &Path, digest: &str, reference: &str) -> f64 {
    let t0 = Instant::now();
    let st = Command::new("ctr")
        .arg("-a")
        .arg(sock)
        .args([
            "-n",
            ns,
            "content",
            "ingest",
            "--expected-size",
            &SIZE.to_string(),
            "--expected-digest",
            digest,
            reference,
        ])
        .stdin(std::fs::File::open(file).unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let t = t0.elapsed().as_secs_f64();
    assert!(st.success(), "ctr content ingest into {}", sock.display());
    t
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let peer = repo.join("../shared/peer");
    let peer_sock = Path::new("/run/peer-containerd/containerd.sock");
    if std::os::unix::net::UnixStream::connect(peer_sock).is_err() {
        assert!(
            peer.join("setup.sh").exists(),
            "containerd peer not running and ../shared/peer/setup.sh not found"
        );
        sh(&format!("{}/setup.sh >/dev/null", peer.display()));
    }
    let berth_cli = util::dist_dir().join("berth");
    let base = PathBuf::from(format!("/var/tmp/berth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let input = PathBuf::from(format!("/dev/shm/berth-bench-{}.bin", std::process::id()));
    let mut data = vec![0u8; SIZE];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&input, &data).unwrap();
    let digest = {
        use sha2::Digest as _;
        let h = sha2::Sha256::digest(&data);
        format!(
            "sha256:{}",
            h.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    drop(data);
    println!(
        "# content ingest of 1 GiB, median of {runs} runs; loadavg {}",
        sh("cut -d' ' -f1-3 /proc/loadavg").trim()
    );

    // the floor: the same bytes written and fsynced on the same filesystem by dd
    let mut floor = Vec::new();
    let mut containerd = Vec::new();
    let mut by_driver: Vec<(&str, Vec<f64>, Vec<f64>)> =
        vec![("smol", vec![], vec![]), ("io-uring", vec![], vec![])];
    for run in 0..runs {
        let target = base.join(format!("floor-{run}"));
        let t0 = Instant::now();
        sh(&format!(
            "dd if={} of={} bs=1M conv=fsync status=none",
            input.display(),
            target.display()
        ));
        floor.push(t0.elapsed().as_secs_f64());
        let _ = std::fs::remove_file(&target);
        // containerd: remove the blob first so every run writes it anew
        let _ = Command::new("ctr")
            .arg("-a")
            .arg(peer_sock)
            .args(["-n", "berth-bench", "content", "rm", &digest])
            .output();
        containerd.push(time_ctr_ingest(
            peer_sock,
            "berth-bench",
            &input,
            &digest,
            &format!("bench-{run}"),
        ));
        let _ = Command::new("ctr")
            .arg("-a")
            .arg(peer_sock)
            .args(["-n", "berth-bench", "content", "rm", &digest])
            .output();
        for (driver, ctr_times, cli_times) in by_driver.iter_mut() {
            let d = Daemon::start(driver, &base, run);
            ctr_times.push(time_ctr_ingest(
                d.sock(),
                "default",
                &input,
                &digest,
                "bench",
            ));
            drop(d);
            if berth_cli.exists() {
                let d = Daemon::start(driver, &base, run);
                let t0 = Instant::now();
                let st = Command::new(&berth_cli)
                    .arg("--address")
                    .arg(d.sock())
                    .args(["content", "ingest", "--expected", &digest])
                    .arg(&input)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(st.success(), "berth content ingest");
                cli_times.push(t0.elapsed().as_secs_f64());
            }
        }
    }
    let gbps = |t: f64| SIZE as f64 / t / 1e9;
    let f = median(floor);
    println!(
        "{:<52} {:>7.3} s  {:>5.2} GB/s",
        "floor: dd bs=1M conv=fsync, same filesystem",
        f,
        gbps(f)
    );
    let c = median(containerd);
    println!(
        "{:<52} {:>7.3} s  {:>5.2} GB/s",
        "ctr content ingest -> containerd 1.6",
        c,
        gbps(c)
    );
    let mut medians = Vec::new();
    for (driver, ctr_times, cli_times) in &by_driver {
        let b = median(ctr_times.clone());
        println!(
            "{:<52} {:>7.3} s  {:>5.2} GB/s  {:.2}x containerd's throughput, {:.2}x the floor's time",
            format!("ctr content ingest -> berthd ({driver})"),
            b,
            gbps(b),
            c / b,
            b / f
        );
        if !cli_times.is_empty() {
            let cl = median(cli_times.clone());
            println!(
                "{:<52} {:>7.3} s  {:>5.2} GB/s",
                format!("berth content ingest -> berthd ({driver})"),
                cl,
                gbps(cl)
            );
        }
        medians.push(b);
    }
    println!(
        "{:<52} {:>7.2}x",
        "smol / io-uring time (ctr ingest)",
        medians[0] / medians[1]
    );
    if !berth_cli.exists() {
        println!("(berth content ingest skipped: build it with scripts/build-release.sh)");
    }
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_dir_all(&base);
}
