//! `cargo bench -p berthd --bench image_pull`: berth's image paths against containerd 1.6 on the
//! same machine, in the same run, on `../shared/peer/images.sh`'s `many-files` image (5 layers,
//! 99 MB gzip, 37.7k entries) served by the peer's docker-registry on 127.0.0.1:5000.
//!
//! Figures (medians of BENCH_RUNS runs, default 5), each as berth/containerd and beside the floor
//! measured in the same run (`tar -xzf` of the same layers into fresh directories): cold pull
//! (gzip, zstd), unpack with the content present, import of containerd's export, `images rm
//! --sync`, `ctr images pull` against berthd vs against containerd, and berth's unpack on the
//! smol vs the io_uring driver.
//!
//! Fairness: this machine's ext4 becomes 3–20× slower at creating files for minutes after a large
//! tree is deleted, which would punish whoever runs after a cleanup. So every measurement (the
//! floor too) gets its own freshly made ext4 (a loop-mounted sparse file, no journal, like the
//! root filesystem) as the daemon's root — containerd 1.6 from Debian (the peer's binary) is
//! started privately on it for each measurement, exactly as berthd is.
//!
//! Needs root, the peer registry and images (`../shared/peer/setup.sh`, `images.sh`, run here
//! if needed) and the binaries as shipped in `target/dist` (`scripts/build-release.sh`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[path = "util/mod.rs"]
mod util;
use util::{median, sh, shipped};

const REG: &str = "127.0.0.1:5000";

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

/// A freshly made ext4 (no journal), loop-mounted; unmounted and deleted on drop.
struct FreshFs {
    img: PathBuf,
    mnt: PathBuf,
}

impl FreshFs {
    fn new(base: &Path, name: &str) -> FreshFs {
        let img = base.join(format!("{name}.img"));
        let mnt = base.join(name);
        std::fs::create_dir_all(&mnt).unwrap();
        sh(&format!("truncate -s 8G {}", img.display()));
        sh(&format!(
            "mkfs.ext4 -q -F -O ^has_journal {} && mount -o loop {} {}",
            img.display(),
            img.display(),
            mnt.display()
        ));
        FreshFs { img, mnt }
    }
}

impl Drop for FreshFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = std::fs::remove_file(&self.img);
        let _ = std::fs::remove_dir(&self.mnt);
    }
}

/// A daemon on a fresh filesystem: berthd (a driver) or containerd. The daemon goes first,
/// then the filesystem.
struct OnFs {
    d: util::Daemon,
    _fs: FreshFs,
}

impl std::ops::Deref for OnFs {
    type Target = util::Daemon;
    fn deref(&self) -> &util::Daemon {
        &self.d
    }
}

fn start_berthd(bin: &Path, driver: &str, fs: FreshFs) -> OnFs {
    let d = util::Daemon::berthd(bin, &fs.mnt, driver, "bench", &[]).unwrap();
    OnFs { d, _fs: fs }
}

fn start_containerd(fs: FreshFs) -> OnFs {
    let d = util::Daemon::containerd(&fs.mnt, "bench").unwrap();
    OnFs { d, _fs: fs }
}

struct Figure {
    name: &'static str,
    berth: Vec<f64>,
    peer: Vec<f64>,
    goal: f64,
}

impl Figure {
    fn new(name: &'static str, goal: f64) -> Figure {
        Figure {
            name,
            berth: Vec::new(),
            peer: Vec::new(),
            goal,
        }
    }
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
    let manifest_of = |tag: &str| {
        Command::new("curl")
            .args(["-fsS", "-H"])
            .arg("Accept: application/vnd.oci.image.manifest.v1+json")
            .arg(format!("http://{REG}/v2/many-files/manifests/{tag}"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    if manifest_of("latest").is_none() || manifest_of("zstd").is_none() {
        assert!(
            peer.join("setup.sh").exists(),
            "../shared/peer/setup.sh not found"
        );
        sh(&format!("{}/setup.sh >/dev/null", peer.display()));
        if manifest_of("latest").is_none() || manifest_of("zstd").is_none() {
            sh(&format!("{}/images.sh >/dev/null", peer.display()));
        }
    }
    let berthd = shipped("berthd").unwrap_or_else(|e| panic!("{e}"));
    let cli = shipped("berth").unwrap_or_else(|e| panic!("{e}"));
    let base = PathBuf::from(format!("/var/tmp/berth-image-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let mf = format!("{REG}/many-files:latest");
    let mz = format!("{REG}/many-files:zstd");

    // The layers, fetched once, for the floor.
    let layers_dir = base.join("layers");
    std::fs::create_dir_all(&layers_dir).unwrap();
    let manifest = manifest_of("latest").unwrap();
    let layer_digests: Vec<String> = manifest
        .split("\"digest\":")
        .skip(2) // the config's digest comes first
        .map(|s| {
            s.trim_start()
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    for (i, dg) in layer_digests.iter().enumerate() {
        sh(&format!(
            "curl -fsS -o {}/{i}.tar.gz http://{REG}/v2/many-files/blobs/{dg}",
            layers_dir.display()
        ));
    }
    // containerd exports the image once; both import that same tar
    let export = base.join("mf-export.tar");
    {
        let c = start_containerd(FreshFs::new(&base, "export"));
        timed(&mut c.ctr(&["images", "pull", "--plain-http", &mf]));
        timed(&mut c.ctr(&["images", "export", export.to_str().unwrap(), &mf]));
    }

    println!(
        "# images on many-files ({} layers), median of {runs} runs, every root a fresh ext4; loadavg {}",
        layer_digests.len(),
        sh("cut -d' ' -f1-3 /proc/loadavg").trim()
    );
    let mut floor = Vec::new();
    let mut figs = [
        Figure::new("pull, cold (gzip)", 0.33),
        Figure::new("unpack, content present", 0.30),
        Figure::new("pull, cold (zstd)", 0.35),
        Figure::new("import of the exported tar", 0.33),
        Figure::new("images rm --sync", 0.20),
        Figure::new("ctr images pull: berthd vs containerd", 0.60),
    ];
    let mut uring_unpack = Vec::new();
    for run in 0..runs {
        let fresh = |what: &str| FreshFs::new(&base, &format!("{what}-{run}"));
        // floor: the five layers extracted one after the other by GNU tar
        {
            let fs = fresh("floor");
            let t0 = Instant::now();
            for i in 0..layer_digests.len() {
                let d = fs.mnt.join(i.to_string());
                std::fs::create_dir_all(&d).unwrap();
                sh(&format!(
                    "tar -xzf {}/{i}.tar.gz -C {}",
                    layers_dir.display(),
                    d.display()
                ));
            }
            floor.push(t0.elapsed().as_secs_f64());
        }
        // cold gzip pull, then rm --sync of what it pulled
        {
            let c = start_containerd(fresh("c-pull"));
            figs[0]
                .peer
                .push(timed(&mut c.ctr(&["images", "pull", "--plain-http", &mf])));
            figs[4]
                .peer
                .push(timed(&mut c.ctr(&["images", "rm", "--sync", &mf])));
        }
        figs[5].peer.push(*figs[0].peer.last().unwrap());
        {
            let b = start_berthd(&berthd, "smol", fresh("b-pull"));
            figs[0]
                .berth
                .push(timed(&mut b.berth(&cli, &["image", "pull", "-q", &mf])));
            figs[4]
                .berth
                .push(timed(&mut b.berth(&cli, &["image", "rm", "--sync", &mf])));
        }
        // unpack with the content present
        {
            let c = start_containerd(fresh("c-unpack"));
            timed(&mut c.ctr(&["content", "fetch", "--plain-http", &mf]));
            figs[1]
                .peer
                .push(timed(&mut c.ctr(&["images", "pull", "--plain-http", &mf])));
        }
        for driver in ["smol", "io-uring"] {
            let b = start_berthd(&berthd, driver, fresh(&format!("b-unpack-{driver}")));
            timed(&mut b.berth(&cli, &["image", "pull", "-q", "--no-unpack", &mf]));
            let t = timed(&mut b.berth(&cli, &["image", "pull", "-q", &mf]));
            if driver == "smol" {
                figs[1].berth.push(t);
            } else {
                uring_unpack.push(t);
            }
        }
        // cold zstd pull
        {
            let c = start_containerd(fresh("c-zstd"));
            figs[2]
                .peer
                .push(timed(&mut c.ctr(&["images", "pull", "--plain-http", &mz])));
        }
        {
            let b = start_berthd(&berthd, "smol", fresh("b-zstd"));
            figs[2]
                .berth
                .push(timed(&mut b.berth(&cli, &["image", "pull", "-q", &mz])));
        }
        // import of containerd's export
        {
            let c = start_containerd(fresh("c-import"));
            figs[3].peer.push(timed(&mut c.ctr(&[
                "images",
                "import",
                export.to_str().unwrap(),
            ])));
        }
        {
            let b = start_berthd(&berthd, "smol", fresh("b-import"));
            figs[3].berth.push(timed(
                &mut b.berth(&cli, &["image", "import", export.to_str().unwrap()]),
            ));
        }
        // the same client (ctr) against berthd
        {
            let b = start_berthd(&berthd, "smol", fresh("b-ctr"));
            figs[5]
                .berth
                .push(timed(&mut b.ctr(&["images", "pull", "--plain-http", &mf])));
        }
        eprintln!("run {} of {runs} done", run + 1);
    }
    let floor_m = median(floor);
    println!(
        "{:<40} {:>8} {:>12} {:>7} {:>6} {:>9}",
        "figure", "berth s", "containerd s", "ratio", "goal", "vs floor"
    );
    println!(
        "{:<40} {:>8.3} {:>12} {:>7} {:>6} {:>9}",
        "floor: tar -xzf of the 5 layers", floor_m, "", "", "", "1.00x"
    );
    for f in &figs {
        let (b, p) = (median(f.berth.clone()), median(f.peer.clone()));
        println!(
            "{:<40} {:>8.3} {:>12.3} {:>6.2}x {:>5.2}x {:>8.2}x  {}",
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
        "unpack, content present, by driver: smol {s:.3} s, io-uring {u:.3} s, smol/io-uring {:.2}x",
        s / u
    );
    let _ = std::fs::remove_dir_all(&base);
}
