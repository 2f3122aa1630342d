//! Reading one file of a container's root filesystem (the image's `/etc/passwd` and
//! `/etc/group`, which the spec's user resolution needs) from the snapshot mounts berthd gave.
//!
//! ctr mounts the root for this on every run. berth first looks through the layers directly:
//! an overlay's lower (and upper) directories, or a bind mount's source, top layer first,
//! honouring overlayfs whiteouts (a 0:0 character device) and opaque directories
//! (`trusted.overlay.opaque`). Only when a path component is something a plain lookup cannot
//! settle (a symbolic link, an unknown mount type) does it mount the root on a temporary
//! directory and open the file with `RESOLVE_IN_ROOT`, so links resolve inside the root.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use berth_api::types::Mount;
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use crate::cmd::snapshot::{mount_all, unmount_all};
use crate::error::{Error, Result};

/// The largest account file read.
const MAX_FILE: u64 = 4 << 20;

/// What one layer says about a path.
enum Found {
    /// The layer has the file: its contents.
    File(Vec<u8>),
    /// The layer deletes it (or an opaque directory on the way hides the lower layers).
    Gone,
    /// The layer does not mention it: look further down.
    Absent,
    /// Something a plain lookup cannot settle.
    Unsure,
}

/// The file at `path` (relative to the root, e.g. `etc/passwd`) in the root `mounts` describe;
/// `None` if the root has no such file.
pub fn read_file(mounts: &[Mount], path: &str) -> Result<Option<Vec<u8>>> {
    if let Some(layers) = layers(mounts) {
        let mut settled = true;
        for l in &layers {
            match look(l, path) {
                Found::File(data) => return Ok(Some(data)),
                Found::Gone => return Ok(None),
                Found::Absent => {}
                Found::Unsure => {
                    settled = false;
                    break;
                }
            }
        }
        if settled {
            return Ok(None);
        }
    }
    read_mounted(mounts, path)
}

/// The layer directories, top first, if the mounts are a plain overlay or bind mount.
fn layers(mounts: &[Mount]) -> Option<Vec<PathBuf>> {
    let [m] = mounts else { return None };
    match m.r#type.as_str() {
        "bind" | "rbind" => Some(vec![PathBuf::from(&m.source)]),
        "overlay" => {
            let mut upper = None;
            let mut lower = Vec::new();
            for o in &m.options {
                if let Some(u) = o.strip_prefix("upperdir=") {
                    upper = Some(PathBuf::from(u));
                } else if let Some(l) = o.strip_prefix("lowerdir=") {
                    lower = l.split(':').map(PathBuf::from).collect();
                }
            }
            if lower.iter().any(|l| !l.is_absolute()) {
                return None;
            }
            Some(upper.into_iter().chain(lower).collect())
        }
        _ => None,
    }
}

fn is_whiteout(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    let mut v = [0u8; 4];
    matches!(
        rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut v),
        Ok(1) if v[0] == b'y'
    )
}

/// What layer directory `layer` says about `path`.
fn look(layer: &Path, path: &str) -> Found {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let Some((name, dirs)) = parts.split_last() else {
        return Found::Unsure;
    };
    let mut cur = layer.to_path_buf();
    let mut opaque = false;
    for d in dirs {
        let next = cur.join(d);
        match std::fs::symlink_metadata(&next) {
            Ok(md) if md.is_dir() => {
                opaque |= is_opaque(&next);
                cur = next;
            }
            Ok(md) if is_whiteout(&md) => return Found::Gone,
            Ok(_) => return Found::Unsure,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return if opaque { Found::Gone } else { Found::Absent };
            }
            Err(_) => return Found::Unsure,
        }
    }
    let file = cur.join(name);
    match std::fs::symlink_metadata(&file) {
        Ok(md) if md.is_file() => {
            if md.len() > MAX_FILE {
                return Found::Unsure;
            }
            match std::fs::read(&file) {
                Ok(d) => Found::File(d),
                Err(_) => Found::Unsure,
            }
        }
        Ok(md) if is_whiteout(&md) => Found::Gone,
        Ok(_) => Found::Unsure,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if opaque {
                Found::Gone
            } else {
                Found::Absent
            }
        }
        Err(_) => Found::Unsure,
    }
}

/// Mounts the root read-only on a temporary directory and reads `path` inside it.
fn read_mounted(mounts: &[Mount], path: &str) -> Result<Option<Vec<u8>>> {
    let dir = Path::new(crate::stdio::RUN_DIR).join(format!("rootfs-{:016x}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("making {}", dir.display()), &e))?;
    let mut ro: Vec<Mount> = mounts.to_vec();
    for m in &mut ro {
        // a read-only look: an overlay without its upper layer, anything else with `ro`
        if m.r#type == "overlay" && m.options.iter().any(|o| o.starts_with("upperdir=")) {
            let upper = m
                .options
                .iter()
                .find_map(|o| o.strip_prefix("upperdir="))
                .map(str::to_string);
            m.options
                .retain(|o| !o.starts_with("upperdir=") && !o.starts_with("workdir="));
            if let Some(u) = upper {
                for o in &mut m.options {
                    if let Some(l) = o.strip_prefix("lowerdir=") {
                        *o = format!("lowerdir={u}:{l}");
                    }
                }
            }
        } else if !m.options.iter().any(|o| o == "ro") {
            m.options.push("ro".into());
        }
    }
    let result = mount_all(&ro, &dir).and_then(|()| {
        let read = read_in_root(&dir, path);
        let _ = unmount_all(&dir);
        read
    });
    let _ = std::fs::remove_dir(&dir);
    result
}

fn read_in_root(root: &Path, path: &str) -> Result<Option<Vec<u8>>> {
    let what = || format!("/{path} in the container's root");
    let rootfd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening {}", root.display()), &e.into()))?;
    let fd = match rustix::fs::openat2(
        &rootfd,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(Error::io(what(), &e.into())),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(what(), &e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    let mut data = Vec::new();
    File::from(fd)
        .take(MAX_FILE)
        .read_to_end(&mut data)
        .map_err(|e| Error::io(what(), &e))?;
    Ok(Some(data))
}
