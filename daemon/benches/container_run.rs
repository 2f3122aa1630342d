//! `cargo bench -p berthd --bench container_run`: running containers with berth against
//! containerd 1.6 + runc on the same machine, in the same run, on a tiny busybox image built and
//! pushed here (one layer: `/bin/busybox` from busybox-static and its `sh`, `true`, `sleep`,
//! `echo` links) to a docker-registry started here on a free loopback port.
//!
//! Figures (medians of BENCH_RUNS runs, default 5, the paths interleaved so that a neighbour's
//! compile hurts everyone alike), each as berth / containerd against its goal:
//!
//! 1. `berth run --rm IMAGE /bin/true` against berthd vs `ctr run --rm IMAGE ID /bin/true`
//!    against containerd, per run; beside `runc run` of an OCI bundle of the same rootfs (the
//!    floor) and each path's overhead over it;
//! 2. 50 such runs one after the other, total wall time;
//! 3. `ctr run --rm` against berthd vs against containerd;
//! 4. the daemons' idle VmRSS after the image pull and after the runs;
//! 5. the per-container supervisor's VmRSS (`berth-shim` vs `containerd-shim-runc-v2`) with five
//!    `run -d … sleep 600` containers on each daemon (`berth run -d`, or `ctr run -d` until
//!    berth has `run`, against berthd; `ctr run -d` against containerd).
//!
//! Both daemons are private: their own roots, states, sockets and runc roots under
//! `/var/tmp/berth-bench-run-<pid>`, all removed at the end (daemons and leftover shims killed by
//! pid, leftover containers `runc delete -f`'d, mounts under that directory unmounted).
//!
//! Needs root, runc, containerd 1.6 (`containerd`, `ctr`, `containerd-shim-runc-v2`),
//! docker-registry, busybox-static, and the binaries as shipped in `target/dist`
//! (`scripts/build-release.sh`). Without them it says what is missing and measures nothing.
//! Until `berth run` exists, its rows say so and the rest is measured.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/common/registry.rs"]
mod registry;
#[path = "util/mod.rs"]
mod util;
use registry::{push_image, Registry};
use util::{median, sh, shipped, Daemon};

/// The namespace both daemons run in (also the parent of ctr's cgroups, `/<ns>/<id>`).
const NS: &str = "berth-bench-run";
/// Sequential runs of figure 2.
const SEQ: usize = 50;
/// Detached containers per daemon for figure 5.
const SHIMS: usize = 5;
const MIB: f64 = 1024.0 * 1024.0;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` (no stdin, stdout discarded); its wall time in seconds, or why it failed.
fn timed(cmd: &mut Command) -> Result<f64, String> {
    let t0 = Instant::now();
    let o = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let t = t0.elapsed().as_secs_f64();
    if o.status.success() {
        Ok(t)
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// A field of /proc/PID/status, in bytes (kB fields) or as is (counts).
fn status_field(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim();
    match v.strip_suffix("kB") {
        Some(kib) => Some(kib.trim().parse::<f64>().ok()? * 1024.0),
        None => v.parse().ok(),
    }
}

/// VmRSS of a process, in bytes.
fn vm_rss(pid: u32) -> Option<f64> {
    status_field(pid, "VmRSS")
}

/// What VmRSS is made of: anonymous and file-backed pages, and the thread count.
fn rss_parts(pid: u32) -> String {
    let mib = |f: &str| status_field(pid, f).map_or("?".into(), |b| format!("{:.1}", b / MIB));
    format!(
        "anon {} + file {} + shmem {} MiB, {} threads",
        mib("RssAnon"),
        mib("RssFile"),
        mib("RssShmem"),
        status_field(pid, "Threads").map_or("?".into(), |t| t.to_string())
    )
}

/// Every process but this one: (pid, comm, cmdline with spaces).
fn processes() -> Vec<(u32, String, String)> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        out.push((pid, comm.trim().to_string(), cmdline));
    }
    out
}

/// The supervisors of this bench's containers: `…/berth-shim start <bundle under base>` (argv:
/// the launcher's fork) or
/// `containerd-shim-runc-v2 … -address <our containerd's socket>` (comm is cut at 15 bytes).
fn shims(base: &Path) -> (Vec<u32>, Vec<u32>) {
    let base = base.to_string_lossy();
    let (mut berth, mut containerd) = (Vec::new(), Vec::new());
    for (pid, comm, cmdline) in processes() {
        if !cmdline.contains(base.as_ref()) {
            continue;
        }
        // the launcher exits at once: a `berth-shim start` still running is the daemon it forked
        if comm == "berth-shim" && cmdline.contains("berth-shim start ") {
            berth.push(pid);
        } else if comm.starts_with("containerd-shim") {
            containerd.push(pid);
        }
    }
    (berth, containerd)
}

/// Builds the busybox layer under `dir` (tree, `layer.tar`), pushes the image as
/// `bench/busybox:latest` and returns its reference and the layer tar's path.
fn push_busybox(reg: &Registry, dir: &Path) -> (String, PathBuf) {
    let tree = dir.join("tree");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    for applet in ["sh", "true", "sleep", "echo"] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
    }
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(tree.join("etc/group"), "root:x:0:\n").unwrap();
    let tar = dir.join("layer.tar");
    sh(&format!(
        "tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C {} -cf {} . && gzip -n -k {}",
        tree.display(),
        tar.display(),
        tar.display()
    ));
    let tar_bytes = std::fs::read(&tar).unwrap();
    let gz = std::fs::read(dir.join("layer.tar.gz")).unwrap();
    let image = push_image(reg, "bench/busybox", "latest", vec![(tar_bytes, gz)]);
    (image.reference, tar)
}

/// The scratch directory; on drop (after the daemons, which are declared after it): leftover
/// containers `runc delete -f`'d, leftover shims killed, mounts under it unmounted, the empty
/// cgroup parents it created removed, and the directory deleted.
struct Scratch {
    base: PathBuf,
    new_cgroups: Vec<PathBuf>,
}

impl Scratch {
    fn new(base: PathBuf) -> Scratch {
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
        roots.extend(
            std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !p.is_symlink()),
        );
        let new_cgroups = roots
            .into_iter()
            .map(|r| r.join(NS))
            .filter(|p| p.parent().is_some_and(|r| r.join("cgroup.procs").exists()) && !p.exists())
            .collect();
        Scratch { base, new_cgroups }
    }

    /// Runtime roots (directories holding runc's `<id>/state.json`) under the scratch directory.
    fn runc_roots(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
            if depth == 0 {
                return;
            }
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if !e.file_type().is_ok_and(|t| t.is_dir()) || p.ends_with("rootfs") {
                    continue;
                }
                if p.join("state.json").is_file() {
                    out.push(dir.to_path_buf());
                } else {
                    walk(&p, depth - 1, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.base, 8, &mut out);
        out.sort();
        out.dedup();
        out
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for root in self.runc_roots() {
            for c in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force"])
                    .arg(c.file_name())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let (b, c) = shims(&self.base);
        for pid in b.into_iter().chain(c) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let prefix = format!("{}/", self.base.display());
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut targets: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|t| t.starts_with(&prefix))
            .collect();
        targets.reverse();
        for t in targets {
            let _ = Command::new("umount").arg("-l").arg(t).status();
        }
        for cg in &self.new_cgroups {
            let _ = std::fs::remove_dir(cg); // only if empty
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// One way of running a container: its samples, or why it stopped working.
struct Path_ {
    make: Box<dyn Fn(usize) -> Command>,
    samples: Vec<f64>,
    err: Option<String>,
}

impl Path_ {
    fn new(make: impl Fn(usize) -> Command + 'static) -> Path_ {
        Path_ {
            make: Box::new(make),
            samples: Vec::new(),
            err: None,
        }
    }

    fn unavailable(why: &str) -> Path_ {
        Path_ {
            make: Box::new(|_| Command::new("false")),
            samples: Vec::new(),
            err: Some(why.into()),
        }
    }

    /// Runs once (container number `n`); the time in seconds unless this path has failed.
    fn once(&mut self, n: usize) -> Option<f64> {
        if self.err.is_some() {
            return None;
        }
        match timed(&mut (self.make)(n)) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("failed: {e}");
                self.err = Some(format!("failed: {}", e.lines().last().unwrap_or("")));
                None
            }
        }
    }

    fn sample(&mut self, n: usize) {
        if let Some(t) = self.once(n) {
            self.samples.push(t);
        }
    }

    /// `count` runs one after the other, from container number `n0`; total seconds.
    fn batch(&mut self, n0: usize, count: usize) -> Option<f64> {
        let mut total = 0.0;
        for i in 0..count {
            total += self.once(n0 + i)?;
        }
        Some(total)
    }

    fn median_ms(&self) -> Option<f64> {
        if self.err.is_some() || self.samples.is_empty() {
            None
        } else {
            Some(median(self.samples.clone()) * 1e3)
        }
    }
}

enum Goal {
    /// berth / containerd at most this.
    Ratio(f64),
    /// berth's figure at most this (in the row's unit).
    AtMost(f64),
    /// Shown for information.
    None,
    /// The same floor for both: no ratio.
    Floor,
}

struct Row {
    name: String,
    berth: Result<f64, String>,
    peer: Option<f64>,
    goal: Goal,
}

fn row(name: impl Into<String>, berth: Result<f64, String>, peer: Option<f64>, goal: Goal) -> Row {
    Row {
        name: name.into(),
        berth,
        peer,
        goal,
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<58} | {:>10} | {:>10} | {:>6} | {:>9} | met?",
        "figure", "berth", "containerd", "ratio", "goal"
    );
    println!("{}", "-".repeat(111));
    for r in rows {
        let peer = r.peer.map_or("n/a".into(), |p| format!("{p:.2}"));
        let goal = match r.goal {
            Goal::Ratio(g) => format!("<= {g:.2}x"),
            Goal::AtMost(g) => format!("<= {g}"),
            Goal::None | Goal::Floor => String::new(),
        };
        match &r.berth {
            Ok(b) => {
                let ratio = r
                    .peer
                    .map(|p| b / p)
                    .filter(|_| !matches!(r.goal, Goal::Floor));
                let met = match r.goal {
                    Goal::Ratio(g) => {
                        ratio.map_or("n/a", |x| if x <= g { "met" } else { "NOT MET" })
                    }
                    Goal::AtMost(g) => {
                        if *b <= g {
                            "met"
                        } else {
                            "NOT MET"
                        }
                    }
                    Goal::None | Goal::Floor => "",
                };
                println!(
                    "{:<58} | {:>10.2} | {:>10} | {:>6} | {:>9} | {met}",
                    r.name,
                    b,
                    peer,
                    ratio.map_or(String::new(), |x| format!("{x:.2}x")),
                    goal
                );
            }
            Err(why) => println!(
                "{:<58} | {:>10} | {:>10} | {:>6} | {:>9} | n/a   ({why})",
                r.name, "n/a", peer, "n/a", goal
            ),
        }
    }
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let skip = |why: String| {
        println!("container_run: skipped: {why}");
    };
    if !rustix::process::geteuid().is_root() {
        return skip("needs root (runc, mounts)".into());
    }
    let mut missing: Vec<&str> = [
        ("runc", "runc"),
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("docker-registry", "docker-registry"),
        ("tar", "tar"),
        ("gzip", "gzip"),
        ("file", "file"),
    ]
    .into_iter()
    .filter(|(t, _)| !have(t))
    .map(|(_, p)| p)
    .collect();
    missing.dedup();
    if !missing.is_empty() {
        return skip(format!(
            "missing tools: apt-get install {}",
            missing.join(" ")
        ));
    }
    if !Path::new("/bin/busybox").exists() {
        return skip("/bin/busybox missing: apt-get install busybox-static".into());
    }
    let (berthd, cli, shim) = match (shipped("berthd"), shipped("berth"), shipped("berth-shim")) {
        (Ok(d), Ok(c), Ok(s)) => (d, c, s),
        (d, c, s) => {
            let why: Vec<String> = [d, c, s].into_iter().filter_map(Result::err).collect();
            return skip(why.join("; "));
        }
    };
    let is_static = |bin: &Path| sh(&format!("file -L {}", bin.display())).contains("static");
    let shim_static = is_static(&shim);
    for (bin, linked_static) in [(&berthd, is_static(&berthd)), (&shim, shim_static)] {
        if !linked_static {
            println!(
                "warning: {} is dynamically linked; its RSS counts glibc's pages. Build it as shipped: scripts/build-release.sh",
                bin.display()
            );
        }
    }
    let berth_run = Command::new(&cli)
        .args(["run", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !berth_run {
        println!("berth run: not available yet (`berth run --help` fails); its rows are skipped");
    }

    let pid = std::process::id();
    let scratch = Scratch::new(PathBuf::from(format!("/var/tmp/berth-bench-run-{pid}")));
    let base = scratch.base.clone();
    let reg = Registry::start_in(&base.join("registry"));
    let (image, layer_tar) = push_busybox(&reg, &base.join("image"));

    // The floor: `runc run` of an OCI bundle (runc spec's defaults) of the same rootfs.
    let bundle = base.join("floor/bundle");
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    sh(&format!(
        "tar -xf {} -C {}/rootfs && runc spec -b {}",
        layer_tar.display(),
        bundle.display(),
        bundle.display()
    ));
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();

    let c = match Daemon::containerd(&base.join("containerd"), NS) {
        Ok(d) => d,
        Err(e) => return println!("containerd: {e}"),
    };
    let b = match Daemon::berthd(
        &berthd,
        &base.join("berthd"),
        "smol",
        NS,
        &[("BERTH_SHIM", &shim)],
    ) {
        Ok(d) => d,
        Err(e) => return println!("berthd: {e}"),
    };
    // containerd's runc root would be /run/containerd/runc/<ns> otherwise: keep it private
    let c_runc_root = base.join("containerd-runc");
    let c_runc_root_s = c_runc_root.to_string_lossy().into_owned();

    // Pull into both: ctr into containerd, berth image pull (ctr if that fails) into berthd.
    let pulled = timed(&mut c.ctr(&["images", "pull", "--plain-http", &image]));
    if let Err(e) = pulled {
        return println!("pull into containerd: {e}\n{}", c.log_tail());
    }
    if let Err(e) = timed(&mut b.berth(&cli, &["image", "pull", "-q", &image])) {
        println!("berth image pull failed ({e}); pulling with ctr");
        if let Err(e) = timed(&mut b.ctr(&["images", "pull", "--plain-http", &image])) {
            return println!("pull into berthd: {e}\n{}", b.log_tail());
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_pull = (vm_rss(b.pid()), vm_rss(c.pid()));

    let id = move |p: &str, n: usize| format!("{p}{pid}-{n}");
    let mut floor = {
        let (bundle, root) = (bundle.clone(), base.join("floor/runc"));
        Path_::new(move |n| {
            let mut cmd = Command::new("runc");
            cmd.arg("--root")
                .arg(&root)
                .args(["run", "-b"])
                .arg(&bundle)
                .arg(id("f", n));
            cmd
        })
    };
    // What a shim does with runc (create, start, delete: three runs of runc instead of one);
    // `delete -f` rather than waiting for /bin/true, so a lower bound.
    let mut floor_csd = {
        let (bundle, root) = (bundle.clone(), base.join("floor/runc"));
        Path_::new(move |n| {
            let (r, i) = (root.display(), id("g", n));
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(format!(
                "runc --root {r} create -b {} {i} && runc --root {r} start {i} && runc --root {r} delete -f {i}",
                bundle.display()
            ));
            cmd
        })
    };
    let mut berth = if berth_run {
        let (cli, sock, image) = (cli.clone(), b.sock.clone(), image.clone());
        Path_::new(move |n| {
            let mut cmd = Command::new(&cli);
            cmd.arg("--address")
                .arg(&sock)
                .args(["-n", NS, "run", "--rm", "--name"]);
            cmd.arg(id("b", n)).args([image.as_str(), "/bin/true"]);
            cmd
        })
    } else {
        Path_::unavailable("berth run: not available yet")
    };
    let ctr_run = |d: &Daemon, prefix: &'static str, runc_root: Option<String>| {
        let (sock, image) = (d.sock.clone(), image.clone());
        Path_::new(move |n| {
            let mut cmd = Command::new("ctr");
            cmd.arg("-a").arg(&sock).args(["-n", NS, "run", "--rm"]);
            if let Some(r) = &runc_root {
                cmd.args(["--runc-root", r]);
            }
            cmd.args([image.as_str(), &id(prefix, n), "/bin/true"]);
            cmd
        })
    };
    let mut ctr_b = ctr_run(&b, "cb", None);
    let mut ctr_c = ctr_run(&c, "cc", Some(c_runc_root_s.clone()));

    println!(
        "# container_run: busybox /bin/true, medians of {runs} runs; {} cores, loadavg {}; {}; {}; berth-shim {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sh("cut -d' ' -f1-3 /proc/loadavg").trim(),
        sh("containerd --version | cut -d' ' -f3").trim(),
        sh("runc --version | head -1").trim(),
        if shim_static { "static" } else { "DYNAMIC" }
    );
    // warm-up, then figures 1 and 3, interleaved
    let mut n = 0;
    let paths = [
        &mut floor,
        &mut floor_csd,
        &mut berth,
        &mut ctr_b,
        &mut ctr_c,
    ];
    for p in paths {
        p.once(n);
        n += 1;
    }
    for r in 0..runs {
        floor.sample(n);
        floor_csd.sample(n);
        berth.sample(n + 1);
        ctr_b.sample(n + 2);
        ctr_c.sample(n + 3);
        n += 4;
        eprintln!("run {} of {runs} done", r + 1);
    }
    // figure 2: SEQ runs one after the other
    let mut seq = Vec::new();
    for p in [&mut floor, &mut berth, &mut ctr_b, &mut ctr_c] {
        seq.push(p.batch(n, SEQ));
        n += SEQ;
        eprintln!("{SEQ} sequential runs done");
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_runs = (vm_rss(b.pid()), vm_rss(c.pid()));
    let rss_runs_parts = (rss_parts(b.pid()), rss_parts(c.pid()));

    // figure 5: SHIMS detached containers on each daemon
    let detached = |d: &Daemon, prefix: &str, runc_root: Option<&str>| -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..SHIMS {
            let cid = id(prefix, i);
            let mut args = vec!["run", "-d"];
            if let Some(r) = runc_root {
                args.extend(["--runc-root", r]);
            }
            args.extend([image.as_str(), cid.as_str(), "sleep", "600"]);
            match timed(&mut d.ctr(&args)) {
                Ok(_) => ids.push(cid),
                Err(e) => {
                    eprintln!("run -d failed: {e}");
                    break;
                }
            }
        }
        ids
    };
    // berth's own client when it has `run`; the supervisor is berth-shim either way
    let ids_b = if berth_run {
        let mut ids = Vec::new();
        for i in 0..SHIMS {
            let cid = id("db", i);
            let args = ["run", "-d", "--name", &cid, &image, "sleep", "600"];
            match timed(&mut b.berth(&cli, &args)) {
                Ok(_) => ids.push(cid),
                Err(e) => {
                    eprintln!("berth run -d failed: {e}");
                    break;
                }
            }
        }
        ids
    } else {
        detached(&b, "db", None)
    };
    let ids_c = detached(&c, "dc", Some(&c_runc_root_s));
    std::thread::sleep(Duration::from_secs(2));
    let (shim_b, shim_c) = shims(&base);
    let rss_of = |pids: &[u32]| -> Vec<f64> { pids.iter().filter_map(|&p| vm_rss(p)).collect() };
    let (rss_b, rss_c) = (rss_of(&shim_b), rss_of(&shim_c));
    let shim_rss_b = median(rss_b.clone());
    let shim_rss_c = median(rss_c.clone());
    for (d, ids) in [(&b, &ids_b), (&c, &ids_c)] {
        for cid in ids {
            let _ = timed(&mut d.ctr(&["tasks", "rm", "-f", cid]));
            let _ = timed(&mut d.ctr(&["containers", "rm", cid]));
        }
    }
    let t0 = Instant::now();
    while shims(&base) != (vec![], vec![]) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = shims(&base);
    if left != (vec![], vec![]) {
        println!("note: shims still running 10 s after their containers were removed: {left:?} (killed at the end)");
    }

    // the table
    let ms = |p: &Path_| {
        p.median_ms()
            .ok_or_else(|| p.err.clone().unwrap_or_default())
    };
    let floor_ms = floor.median_ms();
    let seq_s = |i: usize, p: &Path_| -> Result<f64, String> {
        seq[i].ok_or_else(|| p.err.clone().unwrap_or_default())
    };
    let mib = |v: Option<f64>| v.map(|x| x / MIB);
    let dynamic = if shim_static { "" } else { " [DYNAMIC]" };
    let mut rows = vec![
        row(
            "1. run --rm /bin/true: berth run | ctr->containerd, ms",
            ms(&berth),
            ctr_c.median_ms(),
            Goal::Ratio(0.35),
        ),
        row(
            format!("2. {SEQ} sequential runs: berth run | ctr->containerd, s"),
            seq_s(1, &berth),
            seq[3],
            Goal::Ratio(0.35),
        ),
        row(
            "3. ctr run --rm: ->berthd | ->containerd, ms",
            ms(&ctr_b),
            ctr_c.median_ms(),
            Goal::Ratio(0.6),
        ),
        row(
            format!("   {SEQ} sequential ctr run --rm: ->berthd | ->containerd, s"),
            seq_s(2, &ctr_b),
            seq[3],
            Goal::None,
        ),
        row(
            "4. idle VmRSS after the pull: berthd | containerd, MiB",
            mib(rss_pull.0).ok_or_else(|| "berthd gone".to_string()),
            mib(rss_pull.1),
            Goal::None,
        ),
        row(
            "4. idle VmRSS after pull and runs: berthd | containerd, MiB",
            mib(rss_runs.0).ok_or_else(|| "berthd gone".to_string()),
            mib(rss_runs.1),
            Goal::AtMost(8.0),
        ),
        row(
            format!(
                "5. shim VmRSS, median of {}|{}: berth-shim | runc-v2, MiB{dynamic}",
                rss_b.len(),
                rss_c.len()
            ),
            if rss_b.is_empty() {
                Err("no berth-shim found".into())
            } else {
                Ok(shim_rss_b / MIB)
            },
            (!rss_c.is_empty()).then_some(shim_rss_c / MIB),
            Goal::AtMost(2.0),
        ),
    ];
    if let Some(f) = floor_csd.median_ms() {
        rows.insert(
            1,
            row(
                "   floor: runc create+start+delete -f (a shim's runc), ms",
                Ok(f),
                Some(f),
                Goal::Floor,
            ),
        );
    }
    if let Some(f) = floor_ms {
        rows.insert(
            1,
            row(
                "   floor: runc run of the same rootfs, ms",
                Ok(f),
                Some(f),
                Goal::Floor,
            ),
        );
    }
    println!();
    print_table(&rows);
    println!();
    match floor_ms {
        Some(f) => {
            let over = |p: &Path_| {
                p.median_ms()
                    .map_or("n/a".into(), |m| format!("{:+.1} ms", m - f))
            };
            println!(
                "over the floor (runc run, {f:.1} ms): berth run {}, ctr->berthd {}, ctr->containerd {}",
                over(&berth),
                over(&ctr_b),
                over(&ctr_c)
            );
        }
        None => println!("floor: {}", floor.err.clone().unwrap_or_default()),
    }
    if let Some(f) = floor_csd.median_ms() {
        let over = |p: &Path_| {
            p.median_ms()
                .map_or("n/a".into(), |m| format!("{:+.1} ms", m - f))
        };
        println!(
            "over runc create+start+delete -f ({f:.1} ms): berth run {}, ctr->berthd {}, ctr->containerd {}",
            over(&berth),
            over(&ctr_b),
            over(&ctr_c)
        );
    }
    if let Some(c) = ctr_c.median_ms() {
        println!(
            "goal 1 means berth run <= {:.1} ms per run; goal 3 means ctr->berthd <= {:.1} ms",
            0.35 * c,
            0.6 * c
        );
    }
    if let (Some(s), Some(t)) = (seq[0], seq[3]) {
        println!(
            "{SEQ} sequential runs: runc run {s:.2} s ({:.1} ms each), ctr->containerd {:.1} ms each{}{}",
            s / SEQ as f64 * 1e3,
            t / SEQ as f64 * 1e3,
            seq[1].map_or(String::new(), |x| format!(", berth run {:.1} ms each", x / SEQ as f64 * 1e3)),
            seq[2].map_or(String::new(), |x| format!(", ctr->berthd {:.1} ms each", x / SEQ as f64 * 1e3)),
        );
    }
    println!(
        "idle VmRSS after the runs: berthd {}; containerd {}",
        rss_runs_parts.0, rss_runs_parts.1
    );
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{:.2}", x / MIB))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "supervisor VmRSS, MiB: berth-shim [{}], containerd-shim-runc-v2 [{}]",
        list(&rss_b),
        list(&rss_c)
    );
    if !berth_run {
        println!("berth run: not available yet");
    }
    drop((b, c, reg));
    drop(scratch);
}
