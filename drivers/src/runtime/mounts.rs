//! Mounting a task's rootfs (containerd's `Mount` list) at `<bundle>/rootfs` and unmounting it.

use std::path::Path;
use std::process::{Command, Stdio};

use berth_core::snapshot::mounts::BIND;
use berth_core::snapshot::{plan_mounts, Mount};
use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{mount, mount_remount, unmount, MountFlags, UnmountFlags};

use super::RuntimeError;

/// The flags an option list asks for, and whether it asks for read-only
/// (containerd's `parseMountOptions`; unknown options are filesystem data).
fn flags(options: &[String]) -> MountFlags {
    let mut f = MountFlags::empty();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MountFlags::RDONLY, MountFlags::empty()),
            "rw" => (MountFlags::empty(), MountFlags::RDONLY),
            "nosuid" => (MountFlags::NOSUID, MountFlags::empty()),
            "suid" => (MountFlags::empty(), MountFlags::NOSUID),
            "nodev" => (MountFlags::NODEV, MountFlags::empty()),
            "dev" => (MountFlags::empty(), MountFlags::NODEV),
            "noexec" => (MountFlags::NOEXEC, MountFlags::empty()),
            "exec" => (MountFlags::empty(), MountFlags::NOEXEC),
            "sync" => (MountFlags::SYNCHRONOUS, MountFlags::empty()),
            "async" => (MountFlags::empty(), MountFlags::SYNCHRONOUS),
            "dirsync" => (MountFlags::DIRSYNC, MountFlags::empty()),
            "noatime" => (MountFlags::NOATIME, MountFlags::empty()),
            "atime" => (MountFlags::empty(), MountFlags::NOATIME),
            "nodiratime" => (MountFlags::NODIRATIME, MountFlags::empty()),
            "diratime" => (MountFlags::empty(), MountFlags::NODIRATIME),
            "relatime" => (MountFlags::RELATIME, MountFlags::empty()),
            "norelatime" => (MountFlags::empty(), MountFlags::RELATIME),
            "strictatime" => (MountFlags::STRICTATIME, MountFlags::empty()),
            "nostrictatime" => (MountFlags::empty(), MountFlags::STRICTATIME),
            "bind" => (MountFlags::BIND, MountFlags::empty()),
            "rbind" => (MountFlags::BIND | MountFlags::REC, MountFlags::empty()),
            _ => (MountFlags::empty(), MountFlags::empty()),
        };
        f = (f | set) - clear;
    }
    f
}

fn mount_error(target: &Path, m: &Mount, reason: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Mount {
        target: target.to_path_buf(),
        reason: format!("{} mount of {:?}: {reason}", m.kind, m.source),
    }
}

/// Mounts `mounts` at `target` in order; returns how many were mounted, even on failure (the
/// caller unmounts them). Overlays whose lowerdirs must be relative to a directory (deep
/// chains) are mounted by `berth-shim mount`, run from that directory.
pub(crate) fn mount_all(
    mounts: &[Mount],
    target: &Path,
    shim: &Path,
    done: &mut u32,
) -> Result<(), RuntimeError> {
    let target_str = target.to_str().ok_or_else(|| RuntimeError::Mount {
        target: target.to_path_buf(),
        reason: "the bundle path is not UTF-8".into(),
    })?;
    let plan = plan_mounts(mounts, target_str).map_err(|e| RuntimeError::Mount {
        target: target.to_path_buf(),
        reason: e.to_string(),
    })?;
    for m in &plan.mounts {
        let f = flags(&m.options);
        let bind = m.kind == BIND || f.contains(MountFlags::BIND);
        if bind {
            let base = MountFlags::BIND | (f & MountFlags::REC);
            mount(m.source.as_str(), target, "", base, None)
                .map_err(|e| mount_error(target, m, e))?;
            *done += 1;
            // A bind mount takes its flags only when remounted.
            let rest = f - MountFlags::BIND - MountFlags::REC;
            if !rest.is_empty() {
                mount_remount(target, MountFlags::BIND | rest, "")
                    .map_err(|e| mount_error(target, m, e))?;
            }
            continue;
        }
        let data = m.data();
        match &plan.chdir {
            None => {
                let c = std::ffi::CString::new(data).map_err(|e| mount_error(target, m, e))?;
                let c = (!c.is_empty()).then_some(c.as_c_str());
                mount(m.source.as_str(), target, m.kind.as_str(), f, c)
                    .map_err(|e| mount_error(target, m, e))?;
            }
            Some(dir) => {
                let out = Command::new(shim)
                    .current_dir(dir)
                    .args(["mount", &m.kind, &m.source, target_str])
                    .arg(f.bits().to_string())
                    .arg(&data)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output()
                    .map_err(|e| {
                        mount_error(target, m, format!("running {}: {e}", shim.display()))
                    })?;
                if !out.status.success() {
                    return Err(mount_error(
                        target,
                        m,
                        String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    ));
                }
            }
        }
        *done += 1;
    }
    Ok(())
}

/// Unmounts everything stacked at `target` (detaching what is busy).
pub(crate) fn unmount_all(target: &Path) -> Result<(), RuntimeError> {
    for _ in 0..128 {
        match unmount(target, UnmountFlags::NOFOLLOW) {
            Ok(()) => {}
            Err(Errno::INVAL | Errno::NOENT) => return Ok(()), // not (or no longer) a mount point
            Err(Errno::BUSY) => {
                unmount(target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW).map_err(|e| {
                    RuntimeError::Mount {
                        target: target.to_path_buf(),
                        reason: format!("unmount (detached): {e}"),
                    }
                })?;
            }
            Err(e) => {
                return Err(RuntimeError::Mount {
                    target: target.to_path_buf(),
                    reason: format!("unmount: {e}"),
                })
            }
        }
    }
    Err(RuntimeError::Mount {
        target: target.to_path_buf(),
        reason: "still mounted after 128 unmounts".into(),
    })
}

/// Whether `path` is on another mount than its parent `dir` (a mount point): checked before a
/// bundle is removed, so that a failed unmount never lets a removal reach into an image.
pub(crate) fn is_mount_point(dir: &Path, path: &Path) -> bool {
    let id = |p: &Path| {
        statx(CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::MNT_ID).map(|s| s.stx_mnt_id)
    };
    match (id(dir), id(path)) {
        (Ok(a), Ok(b)) => a != b,
        (Ok(_), Err(Errno::NOENT)) => false,
        _ => true, // cannot tell: assume the worst
    }
}

/// The directories an overlay among `mounts` writes to (`upperdir=` and `workdir=`): what two
/// mounts at once must not share.
pub(crate) fn overlay_dirs(mounts: &[Mount]) -> Vec<String> {
    mounts
        .iter()
        .filter(|m| m.kind == "overlay")
        .flat_map(|m| m.options.iter())
        .filter_map(|o| {
            o.strip_prefix("upperdir=")
                .or_else(|| o.strip_prefix("workdir="))
        })
        .map(str::to_string)
        .collect()
}

/// Whether a line of `/proc/self/mountinfo` names `dir` (or a path below it) as its mount
/// point or in its filesystem options (an overlay's `upperdir=`, `workdir=`, `lowerdir=`).
fn mountinfo_uses(line: &str, dir: &str) -> bool {
    let names = |p: &str| p == dir || p.strip_prefix(dir).is_some_and(|r| r.starts_with('/'));
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4).unwrap_or_default();
    let options = line.rsplit(' ').next().unwrap_or_default();
    names(mount_point)
        || options
            .split(',')
            .filter_map(|o| o.split_once('=').map(|(_, v)| v))
            .flat_map(|v| v.split(':'))
            .any(names)
}

/// Whether any mount of this process's namespace uses one of `dirs`.
pub(crate) fn in_use(dirs: &[String]) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .any(|l| dirs.iter().any(|d| mountinfo_uses(l, d)))
}

/// Waits until no mount uses any of `dirs` (looking every 2 ms), at most `timeout`; `false`
/// if one still does. Mounts made with relative paths (a deep layer chain's `lowerdir=`)
/// cannot be told apart and do not count.
pub fn wait_unused(dirs: &[String], timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while in_use(dirs) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn mountinfo_lines_name_their_directories() {
        let line = "812 25 0:86 / /run/t/default/c1/rootfs rw,relatime - overlay overlay \
                    rw,lowerdir=/r/snapshots/1/fs:/r/snapshots/2/fs,upperdir=/r/snapshots/13/fs,\
                    workdir=/r/snapshots/13/work,index=off";
        assert!(mountinfo_uses(line, "/r/snapshots/13"));
        assert!(mountinfo_uses(line, "/r/snapshots/13/work"));
        assert!(mountinfo_uses(line, "/r/snapshots/2"));
        assert!(mountinfo_uses(line, "/run/t/default/c1"));
        assert!(!mountinfo_uses(line, "/r/snapshots/1/f"));
        assert!(!mountinfo_uses(line, "/r/snapshots/130"));
        assert!(!mountinfo_uses(line, "/r/snapshots/3"));
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: s(&["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l"]),
        };
        assert_eq!(overlay_dirs(&[m]), s(&["/w", "/u"]));
    }

    #[test]
    fn options_become_flags_like_containerds() {
        assert_eq!(
            flags(&s(&["ro", "rbind"])),
            MountFlags::RDONLY | MountFlags::BIND | MountFlags::REC
        );
        assert_eq!(flags(&s(&["ro", "rw", "nosuid"])), MountFlags::NOSUID);
        assert_eq!(
            flags(&s(&["index=off", "lowerdir=/a"])),
            MountFlags::empty()
        );
    }
}
