//! Layer apply benchmark: berth's [`apply_file`] (threaded and single-threaded) against GNU
//! `tar -xzf` / `tar --zstd -xf`, each layer into a fresh directory, medians of N rounds.
//!
//! ```text
//! cargo run --release -p berth-drivers --example apply_bench -- [--rounds N] [--dir DIR] [--fresh-ext4] [LAYER...]
//! ```
//!
//! Without layers it uses the five layers of the peer harness's `many-files` image
//! (`../shared/peer/images.sh`: 37,747 entries, 99 MB gzip, 242 MB of tar) if present. `DIR`
//! (default `/var/tmp`) should be on the filesystem snapshots live on. Run as root (owners).
//!
//! `--fresh-ext4` runs every variant on a freshly made ext4 (a loop device over a file in
//! `/dev/shm`, mounted below `DIR`): on a long-lived ext4, inodes deleted in the last minutes
//! make inode allocation scan (`recently_deleted` in `__ext4_new_inode`, up to 300 µs of
//! system time per file on this machine), which punishes whichever run follows a deletion.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_drivers::apply::{Applier, ApplyMode};

const MANY_FILES: [&str; 5] = [
    "af3591b593fe521a181a8ab0ef1978f85e710ca8ec23c2af3a1110365feb81b8",
    "8b1b6597b37e68fdef94219699e27bd3d2e9c50d581cc539276b8edc49a07df6",
    "4ecfd90c3b826708644a243d9218ac397f918cb7e23fa08d8b95c4d245672332",
    "20947b1f24b09ba662df862732144f7783ec3cbbb8d7c7e887bf75732ada44bd",
    "d4048abc697c7bfddcc4c25e5f2ddf1e5d73280bc65b0c82fb14cf4bd35f06c7",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let mut rounds = 5;
    let mut base = PathBuf::from("/var/tmp");
    let mut layers = Vec::new();
    let mut fresh = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--fresh-ext4" => fresh = true,
            "--rounds" => rounds = args.next().expect("--rounds N").parse().expect("a number"),
            "--dir" => base = args.next().expect("--dir DIR").into(),
            _ => layers.push(PathBuf::from(a)),
        }
    }
    if layers.is_empty() {
        let blobs = Path::new("/var/lib/peer-images/oci/blobs/sha256");
        layers = MANY_FILES.iter().map(|d| blobs.join(d)).collect();
    }
    for l in &layers {
        assert!(l.exists(), "{} not found", l.display());
    }
    let work = tempfile::Builder::new()
        .prefix("berth-apply-bench")
        .tempdir_in(&base)
        .expect("work dir");
    let sizes: u64 = layers
        .iter()
        .map(|l| std::fs::metadata(l).unwrap().len())
        .sum();
    println!(
        "{} layers, {:.1} MB compressed, into {} ({} rounds)",
        layers.len(),
        sizes as f64 / 1e6,
        work.path().display(),
        rounds
    );

    type Run = fn(&Path, &Path) -> Result<(), String>;
    let variants: [(&str, Run); 3] = [
        ("berth, 2 threads", |b, d| berth(b, d, true)),
        ("berth, 1 thread", |b, d| berth(b, d, false)),
        ("GNU tar -x", gnu_tar),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    let mut cpu: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (v, (name, run)) in variants.iter().enumerate() {
            let top = work.path().join(format!("r{round}-v{v}"));
            std::fs::create_dir(&top).unwrap();
            let image = fresh.then(|| mount_fresh_ext4(&top, &format!("{round}-{v}")));
            let dirs: Vec<PathBuf> = (0..layers.len())
                .map(|i| top.join(format!("l{i}")))
                .collect();
            for d in &dirs {
                std::fs::create_dir(d).unwrap();
            }
            sync();
            let cpu0 = cpu_time();
            let t0 = Instant::now();
            for (l, d) in layers.iter().zip(&dirs) {
                run(l, d).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            times[v].push(t0.elapsed());
            cpu[v].push(cpu_time().saturating_sub(cpu0));
            match image {
                Some(img) => {
                    run_cmd(Command::new("umount").arg(&top));
                    std::fs::remove_file(img).unwrap();
                }
                None => {
                    for d in &dirs {
                        std::fs::remove_dir_all(d).unwrap();
                    }
                }
            }
            std::fs::remove_dir(&top).unwrap();
        }
    }
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>11}",
        "", "median", "min", "max", "CPU median"
    );
    for (v, (name, _)) in variants.iter().enumerate() {
        let t = &mut times[v];
        t.sort();
        cpu[v].sort();
        println!(
            "{:<20} {:>8.3}s {:>8.3}s {:>8.3}s {:>10.3}s",
            name,
            t[t.len() / 2].as_secs_f64(),
            t[0].as_secs_f64(),
            t[t.len() - 1].as_secs_f64(),
            cpu[v][cpu[v].len() / 2].as_secs_f64(),
        );
    }
    println!("(CPU: this process and its waited-for children, user + system)");
}

fn berth(blob: &Path, dir: &Path, threaded: bool) -> Result<(), String> {
    let data = std::fs::read(blob).map_err(|e| e.to_string())?;
    let mut a = Applier::new(dir, ApplyMode::Overlay, None)
        .map_err(|e| e.to_string())?
        .threaded(threaded);
    for chunk in data.chunks(1 << 20) {
        a.push(chunk).map_err(|e| e.to_string())?;
    }
    a.finish().map(|_| ()).map_err(|e| e.to_string())
}

fn gnu_tar(blob: &Path, dir: &Path) -> Result<(), String> {
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut std::fs::File::open(blob).unwrap(), &mut magic).unwrap();
    let codec = match magic {
        [0x1f, 0x8b, ..] => "-z",
        [0x28, 0xb5, 0x2f, 0xfd] => "--zstd",
        _ => "--no-auto-compress",
    };
    let ok = Command::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-xp",
            codec,
            "-f",
        ])
        .arg(blob)
        .arg("-C")
        .arg(dir)
        .status()
        .map_err(|e| e.to_string())?;
    ok.success()
        .then_some(())
        .ok_or_else(|| format!("tar: {ok}"))
}

/// Makes a 2 GiB ext4 image in `/dev/shm` and mounts it (loop) on `at`; returns the image.
fn mount_fresh_ext4(at: &Path, tag: &str) -> PathBuf {
    let img = PathBuf::from(format!(
        "/dev/shm/berth-apply-bench-{}-{tag}.img",
        std::process::id()
    ));
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(2 << 30).unwrap();
    run_cmd(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
    run_cmd(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(at));
    img
}

fn run_cmd(cmd: &mut Command) {
    let st = cmd.status().unwrap();
    assert!(st.success(), "{cmd:?}: {st}");
}

fn sync() {
    let _ = Command::new("sync").status();
}

/// User + system time of this process and its reaped children (`/proc/self/stat`, clock
/// ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // fields after the command name: state is field 3; utime, stime, cutime, cstime are 14-17
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}
