//! Taking the kernel's cgroup-migration grace period off a container start's critical path.
//!
//! Moving a process into a cgroup (`runc create` writing its init's pid to `cgroup.procs`)
//! takes the kernel's global threadgroup semaphore for writing. After a quiet spell, the first
//! writer waits a whole RCU grace period for readers to switch to the slow path: 7–10 ms on
//! this machine, a third of `runc create`. A writer within ~12 ms of the previous one waits
//! 0.1–0.2 ms. So when a container is about to be created (or an exec started), berthd starts a
//! no-op migration of its own: it writes its pid to the `cgroup.procs` of the cgroup it is
//! already in, on a thread of its own. The grace period then passes while berthd mounts the
//! root, forks the shim and runc starts up, and runc's own migration finds the semaphore ready.
//! `runc run` of one bundle, median of 15: 33.1 ms alone, 22.0 ms with the no-op migration
//! started beside it (docs/decisions.md, "cgroup migration").
//!
//! The migration changes nothing (the process stays where it is). Where it is refused (no
//! permission, no cgroup file system), it is not tried again and nothing else changes.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

/// The warming thread's inbox; `None` once warming is known not to work here.
static WARMER: OnceLock<Option<Mutex<Sender<()>>>> = OnceLock::new();

/// Starts a no-op cgroup migration on a background thread, so that a container process moved
/// into its cgroup within the next ~20 ms does not wait for a grace period. Returns at once.
pub(crate) fn before_migration() {
    let warmer = WARMER.get_or_init(|| {
        let files = own_procs_files();
        if files.is_empty() {
            return None;
        }
        let (tx, rx) = channel::<()>();
        std::thread::Builder::new()
            .name("cgroup-warm".into())
            .stack_size(64 << 10)
            .spawn(move || {
                let mut files = files;
                while rx.recv().is_ok() {
                    while rx.try_recv().is_ok() {} // one migration serves every waiting poke
                                                   // Keep to the first file that takes the write.
                    while let Some(f) = files.first() {
                        match migrate_self(f) {
                            Ok(()) => break,
                            Err(e) => {
                                log::debug!("cgroup warm-up through {}: {e}", f.display());
                                files.remove(0);
                            }
                        }
                    }
                    if files.is_empty() {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Mutex::new(tx))
    });
    if let Some(tx) = warmer {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(());
        }
    }
}

/// Writes this process's pid to `procs`, the `cgroup.procs` of a cgroup it is in.
fn migrate_self(procs: &PathBuf) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(procs)?;
    // Not "0": a write of 0 moves only the writing thread and skips the global semaphore.
    f.write_all(std::process::id().to_string().as_bytes())
}

/// The `cgroup.procs` files of the cgroups this process is in, v1 hierarchies first (the
/// semaphore is shared by all hierarchies; any one will do).
fn own_procs_files() -> Vec<PathBuf> {
    let Ok(own) = fs::read_to_string("/proc/self/cgroup") else {
        return Vec::new();
    };
    let hierarchies = super::cgroup::hierarchies();
    let mut v1 = Vec::new();
    let mut v2 = Vec::new();
    for line in own.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
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
        let rel = path
            .strip_prefix(h.root.trim_end_matches('/'))
            .unwrap_or(path);
        let file = h
            .mount_point
            .join(rel.trim_start_matches('/'))
            .join("cgroup.procs");
        if file.exists() {
            if h.v2 { &mut v2 } else { &mut v1 }.push(file);
        }
    }
    v1.extend(v2);
    v1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cgroups_of_self() -> String {
        fs::read_to_string("/proc/self/cgroup").unwrap()
    }

    #[test]
    fn finds_the_cgroups_this_process_is_in_and_migrating_changes_none() {
        if !std::path::Path::new("/sys/fs/cgroup").exists() {
            eprintln!("no /sys/fs/cgroup: nothing to check");
            return;
        }
        let files = own_procs_files();
        assert!(
            !files.is_empty(),
            "no cgroup.procs found for {}",
            cgroups_of_self()
        );
        let pid = std::process::id().to_string();
        for f in &files {
            let members = fs::read_to_string(f).unwrap();
            assert!(
                members.lines().any(|l| l == pid),
                "{} does not list this process {pid}",
                f.display()
            );
        }
        let before = cgroups_of_self();
        for f in &files {
            migrate_self(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
        assert_eq!(cgroups_of_self(), before, "a warm-up moved the process");
        // The background path takes the same write and returns at once.
        before_migration();
        assert_eq!(cgroups_of_self(), before);
    }
}
