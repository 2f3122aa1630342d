//! Taking the kernel's cgroup-migration grace period off a container start's critical path.
//!
//! Moving a process into a cgroup (`runc create` writing its init's pid to `cgroup.procs`)
//! takes the kernel's global threadgroup semaphore for writing. After a quiet spell, the first
//! writer waits a whole RCU grace period for readers to switch to the slow path: 7–10 ms on
//! this machine, a third of `runc create`. A writer within ~12 ms of the previous one waits
//! 0.1–0.2 ms. So when a container is about to be created (or an exec started), berthd starts a
//! no-op migration of its own: on a thread of its own, it writes its pid to the `cgroup.procs`
//! of a cgroup it is already in. The grace period then passes while berthd mounts the root,
//! forks the shim and runc starts up, and runc's own migration finds the semaphore ready.
//! `runc run` of one bundle, median of 15: 33.1 ms alone, 22.0 ms with the no-op migration
//! started beside it (docs/decisions.md, "cgroup migration").
//!
//! The migration must change nothing, so the file is written only if it lists berthd's pid,
//! and berthd's memberships (`/proc/self/cgroup`) are read again before every write: if
//! someone moved berthd, the file is looked up and checked again. Where no such file is found
//! or a write is refused, warming stops for good and nothing else changes.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::OnceLock;

use super::cgroup::{hierarchies, proc_cgroup_lines, Hierarchy};

/// The warming thread's inbox; `None` if the thread could not be started.
static WARMER: OnceLock<Option<Sender<()>>> = OnceLock::new();

/// Starts a no-op cgroup migration on a background thread, so that a container process moved
/// into its cgroup within the next ~20 ms does not wait for a grace period. Returns at once.
pub(crate) fn before_migration() {
    let warmer = WARMER.get_or_init(|| {
        let (tx, rx) = channel::<()>();
        std::thread::Builder::new()
            .name("cgroup-warm".into())
            .stack_size(64 << 10)
            .spawn(move || warm_on_request(&rx))
            .ok()?;
        Some(tx)
    });
    if let Some(tx) = warmer {
        // Fails only once the thread has stopped warming: nothing to do then.
        let _ = tx.send(());
    }
}

/// The warming thread: one no-op migration per request (requests that queued up while it was
/// busy share the next one).
fn warm_on_request(rx: &Receiver<()>) {
    // The memberships last read, and the checked `cgroup.procs` for them.
    let mut known: Option<(String, PathBuf)> = None;
    while rx.recv().is_ok() {
        while rx.try_recv().is_ok() {}
        let Ok(own) = fs::read_to_string("/proc/self/cgroup") else {
            return;
        };
        if known.as_ref().is_none_or(|(k, _)| *k != own) {
            let pid = std::process::id();
            let found = procs_files(&own, &hierarchies())
                .into_iter()
                .find(|f| lists(f, pid));
            let Some(file) = found else {
                log::debug!("cgroup warm-up: no cgroup.procs of berthd's own cgroups found");
                return;
            };
            known = Some((own, file));
        }
        if let Some((_, file)) = &known {
            if let Err(e) = migrate_self(file) {
                log::debug!(
                    "cgroup warm-up through {}: {e}; not tried again",
                    file.display()
                );
                return;
            }
        }
    }
}

/// Whether the `cgroup.procs` file `procs` lists `pid`.
fn lists(procs: &Path, pid: u32) -> bool {
    let pid = pid.to_string();
    fs::read_to_string(procs).is_ok_and(|s| s.lines().any(|l| l == pid))
}

/// Writes this process's pid to `procs`, the `cgroup.procs` of a cgroup it is in. A write to
/// `cgroup.procs` moves the whole thread group and always takes the semaphore.
fn migrate_self(procs: &Path) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(procs)?;
    f.write_all(std::process::id().to_string().as_bytes())
}

/// The `cgroup.procs` files of the cgroups named in `own` (the text of `/proc/self/cgroup`),
/// under the mounted `hierarchies`; v1 hierarchies first (the semaphore is shared by all
/// hierarchies; any one will do). A cgroup outside what its hierarchy's mount shows (a cgroup
/// namespace's `/..` paths, a mount of another subtree) gives no file.
fn procs_files(own: &str, hierarchies: &[Hierarchy]) -> Vec<PathBuf> {
    let mut v1 = Vec::new();
    let mut v2 = Vec::new();
    for (_, ctrls, path) in proc_cgroup_lines(own) {
        let h = hierarchies.iter().find(|h| {
            if ctrls.is_empty() {
                h.v2
            } else {
                !h.v2
                    && ctrls
                        .split(',')
                        .all(|c| h.controllers.iter().any(|x| x == c))
            }
        });
        let Some(h) = h else { continue };
        let Ok(rel) = Path::new(path).strip_prefix(&h.root) else {
            continue;
        };
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            continue;
        }
        let file = h.mount_point.join(rel).join("cgroup.procs");
        if h.v2 { &mut v2 } else { &mut v1 }.push(file);
    }
    v1.extend(v2);
    v1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(controllers: &[&str], root: &str, mount_point: &str) -> Hierarchy {
        Hierarchy {
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            root: root.into(),
            mount_point: mount_point.into(),
            v2: false,
        }
    }

    fn v2(root: &str, mount_point: &str) -> Hierarchy {
        Hierarchy {
            controllers: Vec::new(),
            root: root.into(),
            mount_point: mount_point.into(),
            v2: true,
        }
    }

    #[test]
    fn files_of_a_hybrid_host_v1_first_named_hierarchies_skipped() {
        // As on this project's machine: v1 controllers (cpu,cpuacct co-mounted here), a
        // name=systemd hierarchy (no controllers after mountinfo's options are filtered) and
        // an empty v2 mount.
        let hs = [
            v1(&["cpu", "cpuacct"], "/", "/sys/fs/cgroup/cpu,cpuacct"),
            v1(&["memory"], "/", "/sys/fs/cgroup/memory"),
            v1(&["pids"], "/", "/sys/fs/cgroup/pids"),
            v1(&[], "/", "/sys/fs/cgroup/systemd"),
            v2("/", "/sys/fs/cgroup/unified"),
        ];
        let own = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/eec3\n2:cpu,cpuacct:/\n0::/\n";
        assert_eq!(
            procs_files(own, &hs),
            [
                "/sys/fs/cgroup/pids/cgroup.procs",
                "/sys/fs/cgroup/memory/process_api/eec3/cgroup.procs",
                "/sys/fs/cgroup/cpu,cpuacct/cgroup.procs",
                "/sys/fs/cgroup/unified/cgroup.procs",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn cgroups_outside_the_mounted_subtree_give_no_file() {
        // A cgroup namespace whose view sits below the host's mounts (mountinfo root `/..`),
        // and a mount of another subtree: writing there would move the process.
        let hs = [
            v1(&["pids"], "/../..", "/sys/fs/cgroup/pids"),
            v1(&["memory"], "/docker/abc", "/sys/fs/cgroup/memory"),
            v2("/system.slice/berthd.service", "/sys/fs/cgroup"),
        ];
        let own = "3:pids:/\n2:memory:/docker/abcdef\n0::/system.slice/berthd.service/sub\n";
        assert_eq!(
            procs_files(own, &hs),
            [PathBuf::from("/sys/fs/cgroup/sub/cgroup.procs")]
        );
        assert!(procs_files("1:memory:/docker/abc/../x\n", &hs[1..2]).is_empty());
        assert!(procs_files("garbage\n5:cpuset:/x\n", &hs).is_empty());
    }

    #[test]
    fn on_this_host_the_file_lists_this_process_and_the_migration_moves_nothing() {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let pid = std::process::id();
        let Some(file) = procs_files(&own, &hierarchies())
            .into_iter()
            .find(|f| lists(f, pid))
        else {
            eprintln!("no cgroup.procs of this process readable here ({own:?}): skipped");
            return;
        };
        match migrate_self(&file) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                eprintln!("{}: {e} (not root?): skipped", file.display());
                return;
            }
            Err(e) => panic!("{}: {e}", file.display()),
        }
        assert_eq!(
            fs::read_to_string("/proc/self/cgroup").unwrap(),
            own,
            "the warm-up moved the process"
        );
    }
}
