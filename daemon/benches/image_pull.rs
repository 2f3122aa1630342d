//! `cargo bench -p berthd --bench image_pull`: berth's image paths against containerd 1.6 on the
//! same machine, in the same run, on `../shared/peer/images.sh`'s `many-files` image (5 layers,
//! 99 MB gzip, 37.7k entries) served by the peer's docker-registry on 127.0.0.1:5000.
//!
//! Figures (medians of BENCH_RUNS runs, default 5), each with its ratio to containerd and beside
//! the floor measured in the same run (`tar -x` of the same layers into fresh directories):
//! cold pull (gzip, zstd), unpack with the content present, import of an exported tar,
//! `images rm --sync`, `ctr images pull` against berthd vs against containerd, and berth's
//! unpack on the smol vs the io_uring driver.
//!
//! Needs the peer harness (`../shared/peer/setup.sh` and `images.sh`, run here if needed) and
//! release binaries (`cargo build --release -p berth -p berthd`). Every berthd root is fresh and
//! lives on the same filesystem as containerd's; containerd is wiped between runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REG: &str = "127.0.0.1:5000";
const NS: &str = "berth-bench";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn timed(cmd: &mut Command) -> f64 {
    let t0 = Instant::now();
    let o = cmd.stdout(Stdio::null()).output().unwrap();
    let t = t0.elapsed().as_secs_f64();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    t
}

struct Berthd {
    child: Child,
    sock: PathBuf,
    dir: PathBuf,
}

impl Berthd {
    fn start(bin: &Path, driver: &str, dir: PathBuf) -> Berthd {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s.sock");
        let child = Command::new(bin)
            .arg("--address")
            .arg(&sock)
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--state")
            .arg(dir.join("state"))
            .args(["--driver", driver, "--log-level", "warn"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "berthd did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Berthd { child, sock, dir }
    }

    fn berth(&self, cli: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(cli);
        c.arg("--address")
            .arg(&self.sock)
            .args(["-n", NS])
            .args(args);
        c
    }

    fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&self.sock).args(["-n", NS]).args(args);
        c
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn peer_ctr(args: &[&str]) -> Command {
    let mut c = Command::new("ctr");
    c.args(["-a", "/run/peer-containerd/containerd.sock", "-n", NS])
        .args(args);
    c
}

/// Removes every image of the bench namespace from containerd and waits for its GC.
fn wipe_containerd() {
    let o = peer_ctr(&["images", "ls", "-q"]).output().unwrap();
    let names = String::from_utf8_lossy(&o.stdout).to_string();
    let names: Vec<&str> = names.lines().filter(|l| !l.is_empty()).collect();
    if !names.is_empty() {
        let mut args = vec!["images", "rm", "--sync"];
        args.extend(names);
        timed(&mut peer_ctr(&args));
    }
    for l in
        String::from_utf8_lossy(&peer_ctr(&["leases", "ls", "-q"]).output().unwrap().stdout).lines()
    {
        let _ = peer_ctr(&["leases", "rm", l]).output();
    }
    let _ = peer_ctr(&["content", "prune", "references"]).output();
}

struct Figure {
    name: &'static str,
    berth: Vec<f64>,
    peer: Vec<f64>,
    goal: f64,
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
    if std::os::unix::net::UnixStream::connect("/run/peer-containerd/containerd.sock").is_err() {
        assert!(
            peer.join("setup.sh").exists(),
            "../shared/peer/setup.sh not found"
        );
        sh(&format!("{}/setup.sh >/dev/null", peer.display()));
    }
    let mf = format!("{REG}/many-files:latest");
    let mz = format!("{REG}/many-files:zstd");
    let have = |r: &str| {
        Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", "-H"])
            .arg("Accept: application/vnd.oci.image.manifest.v1+json")
            .arg(format!("http://{REG}/v2/{}/manifests/{}", "many-files", r))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !have("latest") || !have("zstd") {
        sh(&format!("{}/images.sh >/dev/null", peer.display()));
    }
    let target = std::env::current_exe().unwrap();
    let bin_dir = target.parent().unwrap().parent().unwrap();
    let berthd = bin_dir.join("berthd");
    let cli = bin_dir.join("berth");
    assert!(
        cli.exists(),
        "build the CLI first: cargo build --release -p berth"
    );
    let base = PathBuf::from(format!("/var/tmp/berth-image-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();

    // The layers, fetched once, for the floor (tar -x into fresh directories).
    let layers_dir = base.join("layers");
    std::fs::create_dir_all(&layers_dir).unwrap();
    let manifest = sh(&format!(
        "curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://{REG}/v2/many-files/manifests/latest"
    ));
    let layer_digests: Vec<String> = manifest
        .split("\"digest\":\"")
        .skip(2) // the config's digest comes first
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect();
    for (i, dg) in layer_digests.iter().enumerate() {
        sh(&format!(
            "curl -fsS -o {}/{i}.tar.gz http://{REG}/v2/many-files/blobs/{dg}",
            layers_dir.display()
        ));
    }
    // containerd exports the image once; both import the same tar
    wipe_containerd();
    timed(peer_ctr(&["images", "pull", "--plain-http", &mf]));
    let export = base.join("mf-export.tar");
    timed(peer_ctr(&[
        "images",
        "export",
        export.to_str().unwrap(),
        &mf,
    ]));
    wipe_containerd();

    println!(
        "# images on many-files ({} layers), median of {runs} runs; loadavg {}",
        layer_digests.len(),
        sh("cut -d' ' -f1-3 /proc/loadavg").trim()
    );
    let mut floor = Vec::new();
    let mut figs = vec![
        Figure {
            name: "pull, cold (gzip)",
            berth: vec![],
            peer: vec![],
            goal: 0.33,
        },
        Figure {
            name: "unpack, content present",
            berth: vec![],
            peer: vec![],
            goal: 0.30,
        },
        Figure {
            name: "pull, cold (zstd)",
            berth: vec![],
            peer: vec![],
            goal: 0.35,
        },
        Figure {
            name: "import of the exported tar",
            berth: vec![],
            peer: vec![],
            goal: 0.33,
        },
        Figure {
            name: "images rm --sync",
            berth: vec![],
            peer: vec![],
            goal: 0.20,
        },
        Figure {
            name: "ctr images pull: berthd vs containerd",
            berth: vec![],
            peer: vec![],
            goal: 0.60,
        },
    ];
    let mut uring_unpack = Vec::new();
    for run in 0..runs {
        // floor
        let dir = base.join(format!("floor-{run}"));
        let t0 = Instant::now();
        for i in 0..layer_digests.len() {
            let d = dir.join(i.to_string());
            std::fs::create_dir_all(&d).unwrap();
            sh(&format!(
                "tar -xzf {}/{i}.tar.gz -C {}",
                layers_dir.display(),
                d.display()
            ));
        }
        floor.push(t0.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&dir);

        // 0: cold gzip pull; 4: rm --sync of what it pulled
        wipe_containerd();
        figs[0]
            .peer
            .push(timed(peer_ctr(&["images", "pull", "--plain-http", &mf])));
        figs[4]
            .peer
            .push(timed(peer_ctr(&["images", "rm", "--sync", &mf])));
        wipe_containerd();
        let b = Berthd::start(&berthd, "smol", base.join(format!("b0-{run}")));
        figs[0]
            .berth
            .push(timed(&mut b.berth(&cli, &["image", "pull", &mf])));
        figs[4]
            .berth
            .push(timed(&mut b.berth(&cli, &["image", "rm", "--sync", &mf])));
        drop(b);

        // 1: unpack with the content present (containerd: content fetch, then pull)
        timed(peer_ctr(&["content", "fetch", "--plain-http", &mf]));
        figs[1]
            .peer
            .push(timed(peer_ctr(&["images", "pull", "--plain-http", &mf])));
        wipe_containerd();
        for (driver, out) in [("smol", 0usize), ("io-uring", 1)] {
            let b = Berthd::start(&berthd, driver, base.join(format!("b1-{driver}-{run}")));
            timed(&mut b.berth(&cli, &["image", "pull", "--no-unpack", &mf]));
            let t = timed(&mut b.berth(&cli, &["image", "pull", &mf]));
            if out == 0 {
                figs[1].berth.push(t);
            } else {
                uring_unpack.push(t);
            }
        }

        // 2: cold zstd pull
        figs[2]
            .peer
            .push(timed(peer_ctr(&["images", "pull", "--plain-http", &mz])));
        wipe_containerd();
        let b = Berthd::start(&berthd, "smol", base.join(format!("b2-{run}")));
        figs[2]
            .berth
            .push(timed(&mut b.berth(&cli, &["image", "pull", &mz])));
        drop(b);

        // 3: import of containerd's export
        figs[3].peer.push(timed(peer_ctr(&[
            "images",
            "import",
            export.to_str().unwrap(),
        ])));
        wipe_containerd();
        let b = Berthd::start(&berthd, "smol", base.join(format!("b3-{run}")));
        figs[3].berth.push(timed(
            &mut b.berth(&cli, &["image", "import", export.to_str().unwrap()]),
        ));
        drop(b);

        // 5: the same client (ctr) against berthd and against containerd
        figs[5]
            .peer
            .push(timed(peer_ctr(&["images", "pull", "--plain-http", &mf])));
        wipe_containerd();
        let b = Berthd::start(&berthd, "smol", base.join(format!("b5-{run}")));
        figs[5]
            .berth
            .push(timed(&mut b.ctr(&["images", "pull", "--plain-http", &mf])));
        drop(b);
        eprintln!("run {} of {runs} done", run + 1);
    }
    let floor_m = median(floor);
    println!(
        "{:<42} {:>9} {:>11} {:>7} {:>6} {:>9}",
        "figure", "berth s", "containerd s", "ratio", "goal", "vs floor"
    );
    println!("{:<42} {:>9.3}", "floor: tar -xzf of the 5 layers", floor_m);
    for f in &figs {
        let (b, p) = (median(f.berth.clone()), median(f.peer.clone()));
        println!(
            "{:<42} {:>9.3} {:>11.3} {:>6.2}x {:>5.2}x {:>8.2}x {}",
            f.name,
            b,
            p,
            b / p,
            f.goal,
            b / floor_m,
            if b / p <= f.goal { "met" } else { "NOT MET" }
        );
    }
    let (s, u) = (median(figs[1].berth.clone()), median(uring_unpack));
    println!(
        "unpack, content present: smol {s:.3} s, io-uring {u:.3} s, smol/io-uring {:.2}x",
        s / u
    );
    let _ = std::fs::remove_dir_all(&base);
}
