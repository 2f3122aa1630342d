//! The snapshotters' directory work: carrying out the tree's [`Action`]s under a snapshotter's
//! root and measuring a snapshot's disk usage.
//!
//! Paths in actions are relative to the snapshotter's root and canonical (the tree makes them);
//! this module still refuses anything that is not, so a corrupt tree cannot name a path outside
//! the root. Everything here blocks: callers run it on a blocking thread.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_core::op::is_canonical_path;
use berth_core::snapshot::{Action, Usage};

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapFsError {
    /// The action named a path that is not canonical and relative.
    #[error("snapshot action names a bad path {0:?}")]
    BadPath(String),
    /// A system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `cp -a` failed while copying a parent (native snapshotter).
    #[error("copying {from} to {to}: {detail}")]
    Copy {
        /// Source.
        from: PathBuf,
        /// Destination.
        to: PathBuf,
        /// cp's message.
        detail: String,
    },
}

fn resolve(root: &Path, rel: &str) -> Result<PathBuf, SnapFsError> {
    if !is_canonical_path(rel) {
        return Err(SnapFsError::BadPath(rel.to_string()));
    }
    Ok(root.join(rel))
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapFsError + 'a {
    move |source| SnapFsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Carries out one action under `root`.
pub fn perform(root: &Path, action: &Action) -> Result<(), SnapFsError> {
    match action {
        Action::Mkdir { path, mode } => {
            let p = resolve(root, path)?;
            fs::create_dir(&p).map_err(io_err("mkdir", &p))?;
            // mkdir applies the umask; the tree's mode is meant exactly.
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(io_err("chmod", &p))
        }
        Action::CopyOwner { path, like } => {
            let p = resolve(root, path)?;
            let l = resolve(root, like)?;
            let m = fs::symlink_metadata(&l).map_err(io_err("stat", &l))?;
            std::os::unix::fs::lchown(&p, Some(m.uid()), Some(m.gid())).map_err(io_err("chown", &p))
        }
        Action::CopyTree { from, to } => {
            let f = resolve(root, from)?;
            let t = resolve(root, to)?;
            // `cp -a from/. to` copies the contents and from's own attributes onto `to`,
            // preserving modes, owners, times, links, devices and xattrs.
            let out = Command::new("cp")
                .arg("-a")
                .arg("--reflink=auto")
                .arg(f.join("."))
                .arg(&t)
                .output()
                .map_err(io_err("cp", &f))?;
            if !out.status.success() {
                return Err(SnapFsError::Copy {
                    from: f,
                    to: t,
                    detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            Ok(())
        }
        Action::Rename { from, to } => {
            let f = resolve(root, from)?;
            let t = resolve(root, to)?;
            fs::rename(&f, &t).map_err(io_err("rename", &f))
        }
        Action::RemoveAll { path } => {
            let p = resolve(root, path)?;
            match fs::remove_dir_all(&p) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err("remove", &p)(e)),
            }
        }
        _ => Err(SnapFsError::BadPath(format!("{action:?}"))),
    }
}

/// The entry names of `<root>/snapshots` (empty if it does not exist yet).
pub fn list_snapshot_dirs(root: &Path) -> Result<Vec<String>, SnapFsError> {
    let dir = root.join("snapshots");
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("readdir", &dir)(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(io_err("readdir", &dir))?;
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Disk usage of the tree at `dir` the way containerd measures it: allocated bytes
/// (`st_blocks * 512`) and inodes, each hard-linked inode counted once.
pub fn usage(dir: &Path) -> Result<Usage, SnapFsError> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).map_err(io_err("stat", &p))?;
        if seen.insert((m.dev(), m.ino())) {
            usage.inodes += 1;
            usage.size += m.blocks() * 512;
        }
        if m.is_dir() {
            for e in fs::read_dir(&p).map_err(io_err("readdir", &p))? {
                stack.push(e.map_err(io_err("readdir", &p))?.path());
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_stay_beneath_the_root_and_usage_counts_hard_links_once() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir(root.join("snapshots")).unwrap();
        let bad = Action::Mkdir {
            path: "../escape".into(),
            mode: 0o700,
        };
        assert!(matches!(perform(root, &bad), Err(SnapFsError::BadPath(_))));
        assert!(!t.path().parent().unwrap().join("escape").exists());

        perform(
            root,
            &Action::Mkdir {
                path: "snapshots/new-1".into(),
                mode: 0o755,
            },
        )
        .unwrap();
        let m = fs::metadata(root.join("snapshots/new-1")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o755);
        perform(
            root,
            &Action::Rename {
                from: "snapshots/new-1".into(),
                to: "snapshots/1".into(),
            },
        )
        .unwrap();
        let d = root.join("snapshots/1");
        fs::write(d.join("a"), vec![7u8; 10_000]).unwrap();
        fs::hard_link(d.join("a"), d.join("b")).unwrap();
        let u = usage(&d).unwrap();
        assert_eq!(u.inodes, 2, "the dir and one file (b is a's inode)");
        assert!(u.size >= 10_000);
        assert_eq!(list_snapshot_dirs(root).unwrap(), vec!["1".to_string()]);
        perform(
            root,
            &Action::RemoveAll {
                path: "snapshots/1".into(),
            },
        )
        .unwrap();
        perform(
            root,
            &Action::RemoveAll {
                path: "snapshots/1".into(),
            },
        )
        .expect("removing a missing path is success");
        assert!(list_snapshot_dirs(root).unwrap().is_empty());
    }
}
