//! Reading a container's cgroup: resource usage for `metrics`, the freezer for `state`.
//!
//! The cgroup comes from the spec's `linux.cgroupsPath` when it is an absolute (cgroupfs)
//! path, else from `/proc/<init>/cgroup` (a relative or systemd-style path is resolved by the
//! runtime, and the init's membership is the answer). Controllers are found through
//! `/proc/self/mountinfo`, so cgroup v1 hierarchies mounted anywhere are read; on a host with
//! only the unified hierarchy the v2 files are read instead.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// CPU time used by the container's processes, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Total (`cpuacct.usage`).
    pub total: u64,
    /// In user mode (`cpuacct.stat` user).
    pub user: u64,
    /// In kernel mode (`cpuacct.stat` system).
    pub kernel: u64,
    /// Per CPU (`cpuacct.usage_percpu`; empty on cgroup v2).
    pub per_cpu: Vec<u64>,
}

/// Memory used by the container, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUsage {
    /// Now (`memory.usage_in_bytes`).
    pub usage: u64,
    /// The limit (`memory.limit_in_bytes`; a huge number when unlimited, as the kernel says).
    pub limit: u64,
    /// The most ever used (`memory.max_usage_in_bytes`; `memory.peak` on v2, 0 if absent).
    pub max_usage: u64,
    /// How often the limit was hit (`memory.failcnt`; `max` events on v2).
    pub failcnt: u64,
}

/// Processes in the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsUsage {
    /// Now (`pids.current`).
    pub current: u64,
    /// The limit (`pids.max`; 0 when unlimited, as containerd reports it).
    pub limit: u64,
}

/// A container's resource usage, as containerd's cgroup v1 `Metrics` carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Which hierarchy it was read from: 1 or 2.
    pub cgroup_version: u8,
    /// CPU.
    pub cpu: CpuUsage,
    /// Memory.
    pub memory: MemoryUsage,
    /// Processes.
    pub pids: PidsUsage,
}

/// A mounted cgroup hierarchy.
pub(super) struct Hierarchy {
    /// v1 controllers (empty for v2).
    pub(super) controllers: Vec<String>,
    /// The cgroup path that is mounted (`root` in mountinfo).
    pub(super) root: String,
    pub(super) mount_point: PathBuf,
    pub(super) v2: bool,
}

/// The cgroup hierarchies mounted in this process's mount namespace.
pub(super) fn hierarchies() -> Vec<Hierarchy> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let v2 = match post[0] {
            "cgroup" => false,
            "cgroup2" => true,
            _ => continue,
        };
        let controllers = if v2 {
            Vec::new()
        } else {
            post[2]
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                .map(str::to_string)
                .collect()
        };
        out.push(Hierarchy {
            controllers,
            root: pre[3].to_string(),
            mount_point: PathBuf::from(unescape(pre[4])),
            v2,
        });
    }
    out
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Where a container's cgroup is: an absolute cgroup path, or the init's memberships.
pub(crate) enum Membership {
    /// The same path in every hierarchy (cgroupfs `cgroupsPath`).
    Path(String),
    /// `/proc/<pid>/cgroup` lines: (hierarchy id, controllers, path).
    Proc(Vec<(String, String, String)>),
}

/// The container's cgroup: the spec's absolute `cgroupsPath`, else the init's `/proc/PID/cgroup`.
pub(crate) fn membership(cgroups_path: Option<&str>, pid: u32) -> Option<Membership> {
    if let Some(p) = cgroups_path.filter(|p| p.starts_with('/')) {
        return Some(Membership::Path(p.to_string()));
    }
    if pid == 0 {
        return None;
    }
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let lines = proc_cgroup_lines(&text)
        .map(|(h, c, p)| (h.to_string(), c.to_string(), p.to_string()))
        .collect();
    Some(Membership::Proc(lines))
}

/// The lines of a `/proc/<pid>/cgroup` text: (hierarchy id, controllers, cgroup path).
pub(super) fn proc_cgroup_lines(text: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    text.lines().filter_map(|l| {
        let mut it = l.splitn(3, ':');
        Some((it.next()?, it.next()?, it.next()?))
    })
}

/// The directory of `controller`'s cgroup (`None` for v2's unified directory).
fn dir(hs: &[Hierarchy], m: &Membership, controller: Option<&str>) -> Option<PathBuf> {
    let h = hs.iter().find(|h| match controller {
        Some(c) => !h.v2 && h.controllers.iter().any(|x| x == c),
        None => h.v2,
    })?;
    let path = match m {
        Membership::Path(p) => p.clone(),
        Membership::Proc(lines) => lines
            .iter()
            .find(|(_, ctrls, _)| match controller {
                Some(c) => ctrls.split(',').any(|x| x == c),
                None => ctrls.is_empty(),
            })?
            .2
            .clone(),
    };
    let rel = path
        .strip_prefix(h.root.trim_end_matches('/'))
        .unwrap_or(&path);
    Some(h.mount_point.join(rel.trim_start_matches('/')))
}

fn read_u64(p: &Path) -> Option<u64> {
    let s = fs::read_to_string(p).ok()?;
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

fn keyed(p: &Path) -> Vec<(String, u64)> {
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn get(kv: &[(String, u64)], key: &str) -> u64 {
    kv.iter().find(|(k, _)| k == key).map_or(0, |(_, v)| *v)
}

/// `USER_HZ`: the unit of `cpuacct.stat` (100 on every Linux ABI berth runs on).
const USER_HZ: u64 = 100;

/// Reads the container's usage; `None` if its cgroup cannot be found.
pub(crate) fn metrics(m: &Membership) -> Option<Metrics> {
    let hs = hierarchies();
    if let Some(cpu) = dir(&hs, m, Some("cpuacct")) {
        let mem = dir(&hs, m, Some("memory"));
        let pids = dir(&hs, m, Some("pids"));
        let stat = keyed(&cpu.join("cpuacct.stat"));
        let per_cpu = fs::read_to_string(cpu.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let memory = mem.map_or_else(MemoryUsage::default, |d| MemoryUsage {
            usage: read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0),
            limit: read_u64(&d.join("memory.limit_in_bytes")).unwrap_or(0),
            max_usage: read_u64(&d.join("memory.max_usage_in_bytes")).unwrap_or(0),
            failcnt: read_u64(&d.join("memory.failcnt")).unwrap_or(0),
        });
        return Some(Metrics {
            cgroup_version: 1,
            cpu: CpuUsage {
                total: read_u64(&cpu.join("cpuacct.usage"))?,
                user: get(&stat, "user") * (1_000_000_000 / USER_HZ),
                kernel: get(&stat, "system") * (1_000_000_000 / USER_HZ),
                per_cpu,
            },
            memory,
            pids: pids_usage(pids.as_deref()),
        });
    }
    let d = dir(&hs, m, None)?;
    let stat = keyed(&d.join("cpu.stat"));
    let events = keyed(&d.join("memory.events"));
    Some(Metrics {
        cgroup_version: 2,
        cpu: CpuUsage {
            total: get(&stat, "usage_usec") * 1000,
            user: get(&stat, "user_usec") * 1000,
            kernel: get(&stat, "system_usec") * 1000,
            per_cpu: Vec::new(),
        },
        memory: MemoryUsage {
            usage: read_u64(&d.join("memory.current")).unwrap_or(0),
            limit: read_u64(&d.join("memory.max")).unwrap_or(0),
            max_usage: read_u64(&d.join("memory.peak")).unwrap_or(0),
            failcnt: get(&events, "max"),
        },
        pids: pids_usage(Some(&d)),
    })
}

/// The file that counts the processes of a cgroup the kernel's OOM killer has killed (v1
/// `memory.oom_control`, v2 `memory.events`): found once, while the container runs, and read
/// at each exit without looking the cgroup up again.
#[derive(Debug, Clone)]
pub struct OomCounter(PathBuf);

impl OomCounter {
    /// The count now (`oom_kill`); 0 once the cgroup is gone.
    pub fn read(&self) -> u64 {
        get(&keyed(&self.0), "oom_kill")
    }

    /// Registers for the cgroup's OOM notifications; `None` unless the counter is a v1
    /// memory controller's `memory.oom_control` (on cgroup v2 an OOM is found when a process
    /// exits, by reading the counter).
    pub fn events(&self) -> Option<OomEvents> {
        use std::os::fd::AsRawFd;
        if self.0.file_name()? != "memory.oom_control" {
            return None;
        }
        let control = fs::File::open(&self.0).ok()?;
        let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).ok()?;
        let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
        let register = self.0.with_file_name("cgroup.event_control");
        if let Err(e) = fs::write(&register, line) {
            log::debug!("{}: registering for OOM events: {e}", register.display());
            return None;
        }
        Some(OomEvents {
            efd,
            control,
            path: self.0.clone(),
        })
    }
}

/// Live OOM notifications of a cgroup v1 memory controller: an eventfd registered for
/// `memory.oom_control` through `cgroup.event_control`. The kernel signals it at each OOM in
/// the cgroup, and once more when the cgroup is removed.
pub struct OomEvents {
    efd: std::os::fd::OwnedFd,
    control: fs::File,
    path: PathBuf,
}

impl OomEvents {
    /// Blocks until the kernel signals: an OOM, or the cgroup's removal ([`OomEvents::gone`]
    /// tells which). `false` if the eventfd cannot be read.
    pub fn wait(&self) -> bool {
        let mut buf = [0u8; 8];
        loop {
            match rustix::io::read(&self.efd, &mut buf) {
                Ok(8) => return true,
                Err(rustix::io::Errno::INTR) => {}
                _ => return false,
            }
        }
    }

    /// Whether the cgroup registered for is gone (removed, perhaps made again under the same
    /// name for a new task, which has new files).
    pub fn gone(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.control.metadata(), fs::metadata(&self.path)) {
            (Ok(held), Ok(now)) => (held.dev(), held.ino()) != (now.dev(), now.ino()),
            _ => true,
        }
    }
}

/// The cgroup's OOM counter; `None` if the cgroup cannot be found.
pub(crate) fn oom_counter(m: &Membership) -> Option<OomCounter> {
    let hs = hierarchies();
    let file = match dir(&hs, m, Some("memory")) {
        Some(mem) => mem.join("memory.oom_control"),
        None => dir(&hs, m, None)?.join("memory.events"),
    };
    file.exists().then_some(OomCounter(file))
}

fn pids_usage(d: Option<&Path>) -> PidsUsage {
    let Some(d) = d else {
        return PidsUsage::default();
    };
    PidsUsage {
        current: read_u64(&d.join("pids.current")).unwrap_or(0),
        limit: match read_u64(&d.join("pids.max")) {
            Some(u64::MAX) | None => 0,
            Some(n) => n,
        },
    }
}

/// Whether the container's freezer says it is frozen (or freezing).
pub(crate) fn frozen(m: &Membership) -> bool {
    let hs = hierarchies();
    if let Some(d) = dir(&hs, m, Some("freezer")) {
        return fs::read_to_string(d.join("freezer.state"))
            .is_ok_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING"));
    }
    dir(&hs, m, None)
        .is_some_and(|d| fs::read_to_string(d.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1"))
}
