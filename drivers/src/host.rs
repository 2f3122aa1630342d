//! The real host: the file Ops performed with blocking syscalls on a real directory.
//!
//! Every path is resolved beneath the root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`,
//! so no Op can reach outside the root, whatever `..` or symlinks the path contains. Both real
//! drivers use this for the Ops they do not perform themselves.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use berth_core::op::{
    errno, is_canonical_path, FileStat, Handle, OpError, OpKind, OpOutput, OpResult, OpenOptions,
};
use berth_core::Instant;
use bytes::Bytes;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Open files by handle.
#[derive(Default)]
pub struct HandleTable {
    next: AtomicU64,
    files: Mutex<HashMap<u64, Arc<OwnedFd>>>,
}

impl HandleTable {
    /// Stores `fd`, returning its new handle.
    pub fn insert(&self, fd: OwnedFd) -> Handle {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.files
            .lock()
            .expect("handle table lock")
            .insert(id, Arc::new(fd));
        Handle(id)
    }

    /// The file behind `h`.
    pub fn get(&self, h: Handle) -> Option<Arc<OwnedFd>> {
        self.files
            .lock()
            .expect("handle table lock")
            .get(&h.0)
            .cloned()
    }

    /// Forgets `h`; the file closes when its last user drops it.
    pub fn remove(&self, h: Handle) -> Option<Arc<OwnedFd>> {
        self.files.lock().expect("handle table lock").remove(&h.0)
    }

    /// Number of open handles.
    pub fn len(&self) -> usize {
        self.files.lock().expect("handle table lock").len()
    }

    /// True if no handle is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A root directory and the handles opened beneath it.
pub struct RealHost {
    root: OwnedFd,
    handles: HandleTable,
}

fn err(op: &'static str, e: Errno) -> OpError {
    OpError {
        op,
        errno: e.raw_os_error(),
    }
}

fn io_err(op: &'static str, e: std::io::Error) -> OpError {
    OpError {
        op,
        errno: e.raw_os_error().unwrap_or(errno::EIO),
    }
}

/// Refuses non-canonical paths ([`is_canonical_path`]). Resolution beneath the root would stop
/// an escape anyway; this keeps Op paths canonical.
pub fn check_path(op: &'static str, path: &str) -> Result<(), OpError> {
    if is_canonical_path(path) {
        Ok(())
    } else {
        Err(OpError {
            op,
            errno: errno::EINVAL,
        })
    }
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path),
    }
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

impl RealHost {
    /// Opens `root` (creating it if needed) as the root of every Op.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let root = rustix::fs::open(
            root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RealHost {
            root,
            handles: HandleTable::default(),
        })
    }

    /// The root directory every path resolves beneath.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The open handles.
    pub fn handles(&self) -> &HandleTable {
        &self.handles
    }

    /// Opens `path` beneath the root.
    pub fn open_beneath(
        &self,
        op: &'static str,
        path: &str,
        flags: OFlags,
        mode: u32,
    ) -> Result<OwnedFd, OpError> {
        check_path(op, path)?;
        rustix::fs::openat2(
            &self.root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
            BENEATH,
        )
        .map_err(|e| err(op, e))
    }

    /// Opens the parent directory of `path` (the root itself for a single component) and returns
    /// it with the final name.
    fn parent<'p>(
        &self,
        op: &'static str,
        path: &'p str,
    ) -> Result<(Option<OwnedFd>, &'p str), OpError> {
        check_path(op, path)?;
        let (parent, name) = split_parent(path);
        if parent.is_empty() {
            return Ok((None, name));
        }
        let fd = self.open_beneath(op, parent, OFlags::PATH | OFlags::DIRECTORY, 0)?;
        Ok((Some(fd), name))
    }

    fn dir_fd<'a>(&'a self, fd: &'a Option<OwnedFd>) -> BorrowedFd<'a> {
        fd.as_ref().map_or(self.root.as_fd(), |f| f.as_fd())
    }

    fn fd(&self, op: &'static str, h: Handle) -> Result<Arc<OwnedFd>, OpError> {
        self.handles.get(h).ok_or(OpError {
            op,
            errno: errno::EBADF,
        })
    }

    fn mkdir_all(&self, path: &str, mode: u32) -> Result<(), OpError> {
        const OP: &str = "mkdir";
        check_path(OP, path)?;
        let mut dir: Option<OwnedFd> = None;
        for comp in path.split('/') {
            let d = self.dir_fd(&dir);
            match rustix::fs::mkdirat(d, comp, Mode::from_raw_mode(mode)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(err(OP, e)),
            }
            let next = rustix::fs::openat2(
                d,
                comp,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                BENEATH | ResolveFlags::NO_SYMLINKS,
            )
            .map_err(|e| err(OP, e))?;
            dir = Some(next);
        }
        Ok(())
    }

    fn read_all(op: &'static str, fd: &OwnedFd) -> Result<Vec<u8>, OpError> {
        let size = rustix::fs::fstat(fd).map_err(|e| err(op, e))?.st_size as usize;
        let mut buf = vec![0u8; size.max(4096)];
        let mut len = 0;
        loop {
            if len == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = rustix::io::pread(fd, &mut buf[len..], len as u64).map_err(|e| err(op, e))?;
            if n == 0 {
                break;
            }
            len += n;
        }
        buf.truncate(len);
        Ok(buf)
    }

    fn write_all(
        op: &'static str,
        fd: &OwnedFd,
        mut data: &[u8],
        mut offset: u64,
    ) -> Result<(), OpError> {
        while !data.is_empty() {
            let n = rustix::io::pwrite(fd, data, offset).map_err(|e| err(op, e))?;
            if n == 0 {
                return Err(OpError {
                    op,
                    errno: errno::EIO,
                });
            }
            data = &data[n..];
            offset += n as u64;
        }
        Ok(())
    }

    /// Performs one Op, blocking.
    pub fn perform(&self, op: OpKind) -> OpResult {
        let name = op.name();
        match op {
            OpKind::Mkdir { path, mode } => self.mkdir_all(&path, mode).map(|()| OpOutput::Done),
            OpKind::Open { path, options } => {
                // openat2 refuses a mode without O_CREAT
                let mode = if options.create { options.mode } else { 0 };
                let fd = self.open_beneath(name, &path, open_flags(options), mode)?;
                let size = rustix::fs::fstat(&fd).map_err(|e| err(name, e))?.st_size as u64;
                Ok(OpOutput::Opened {
                    handle: self.handles.insert(fd),
                    size,
                })
            }
            OpKind::Write {
                handle,
                offset,
                data,
            } => {
                let fd = self.fd(name, handle)?;
                let n = rustix::io::pwrite(&*fd, &data, offset).map_err(|e| err(name, e))?;
                Ok(OpOutput::Written(n as u64))
            }
            OpKind::Read {
                handle,
                offset,
                len,
            } => {
                let fd = self.fd(name, handle)?;
                let mut buf = vec![0u8; len as usize];
                let mut got = 0;
                while got < buf.len() {
                    let n = rustix::io::pread(&*fd, &mut buf[got..], offset + got as u64)
                        .map_err(|e| err(name, e))?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                buf.truncate(got);
                Ok(OpOutput::Data(Bytes::from(buf)))
            }
            OpKind::Truncate { handle, len } => {
                let fd = self.fd(name, handle)?;
                rustix::fs::ftruncate(&*fd, len).map_err(|e| err(name, e))?;
                Ok(OpOutput::Done)
            }
            OpKind::Fsync { handle } => {
                let fd = self.fd(name, handle)?;
                rustix::fs::fsync(&*fd).map_err(|e| err(name, e))?;
                Ok(OpOutput::Done)
            }
            OpKind::FsyncDir { path } => {
                let fd = self.open_beneath(name, &path, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
                rustix::fs::fsync(&fd).map_err(|e| err(name, e))?;
                Ok(OpOutput::Done)
            }
            OpKind::Close { handle } => {
                self.handles.remove(handle).ok_or(OpError {
                    op: name,
                    errno: errno::EBADF,
                })?;
                Ok(OpOutput::Done)
            }
            OpKind::WriteFile { path, data, mode } => {
                let fd = self.open_beneath(
                    name,
                    &path,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
                    mode,
                )?;
                Self::write_all(name, &fd, &data, 0)?;
                Ok(OpOutput::Done)
            }
            OpKind::ReadFile { path } => {
                let fd = self.open_beneath(name, &path, OFlags::RDONLY, 0)?;
                Ok(OpOutput::Data(Bytes::from(Self::read_all(name, &fd)?)))
            }
            OpKind::Stat { path } => {
                let (dir, file) = self.parent(name, &path)?;
                let st = rustix::fs::statat(self.dir_fd(&dir), file, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| err(name, e))?;
                Ok(OpOutput::Stat(FileStat {
                    size: st.st_size as u64,
                    mode: st.st_mode,
                    mtime: Instant::from_secs_nanos(
                        st.st_mtime.max(0) as u64,
                        st.st_mtime_nsec as u32,
                    ),
                }))
            }
            OpKind::Rename { from, to } => {
                let (fdir, fname) = self.parent(name, &from)?;
                let (tdir, tname) = self.parent(name, &to)?;
                rustix::fs::renameat(self.dir_fd(&fdir), fname, self.dir_fd(&tdir), tname)
                    .map_err(|e| err(name, e))?;
                Ok(OpOutput::Done)
            }
            OpKind::Remove { path } => {
                let (dir, file) = self.parent(name, &path)?;
                let d = self.dir_fd(&dir);
                match rustix::fs::unlinkat(d, file, AtFlags::empty()) {
                    Err(Errno::ISDIR) => rustix::fs::unlinkat(d, file, AtFlags::REMOVEDIR)
                        .map_err(|e| err(name, e))?,
                    r => r.map_err(|e| err(name, e))?,
                }
                Ok(OpOutput::Done)
            }
            OpKind::RemoveAll { path } => {
                let (dir, file) = match self.parent(name, &path) {
                    Err(e) if e.errno == errno::ENOENT => return Ok(OpOutput::Done),
                    r => r?,
                };
                let d = self.dir_fd(&dir);
                match rustix::fs::statat(d, file, AtFlags::SYMLINK_NOFOLLOW) {
                    Err(Errno::NOENT) => return Ok(OpOutput::Done),
                    Err(e) => return Err(err(name, e)),
                    Ok(st) if st.st_mode & 0o170000 == 0o040000 => {
                        // The parent is pinned by its descriptor; std's remove_dir_all does not
                        // follow symlinks inside the tree.
                        let p = format!("/proc/self/fd/{}/{}", d.as_raw_fd(), file);
                        match std::fs::remove_dir_all(&p) {
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            r => r.map_err(|e| io_err(name, e))?,
                        }
                    }
                    Ok(_) => {
                        rustix::fs::unlinkat(d, file, AtFlags::empty()).map_err(|e| err(name, e))?
                    }
                }
                Ok(OpOutput::Done)
            }
            OpKind::ReadDir { path } => {
                let fd = self.open_beneath(name, &path, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
                let mut names = Vec::new();
                for entry in rustix::fs::Dir::read_from(&fd).map_err(|e| err(name, e))? {
                    let entry = entry.map_err(|e| err(name, e))?;
                    let n = entry.file_name().to_string_lossy();
                    if n != "." && n != ".." {
                        names.push(n.into_owned());
                    }
                }
                names.sort();
                Ok(OpOutput::Entries(names))
            }
            other => Err(OpError {
                op: other.name(),
                errno: errno::EINVAL,
            }),
        }
    }
}

fn open_flags(o: OpenOptions) -> OFlags {
    let mut f = if o.write {
        OFlags::RDWR
    } else {
        OFlags::RDONLY
    };
    if o.create {
        f |= OFlags::CREATE;
    }
    if o.exclusive {
        f |= OFlags::EXCL;
    }
    if o.truncate {
        f |= OFlags::TRUNC;
    }
    f
}
