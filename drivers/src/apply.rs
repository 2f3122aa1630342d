//! Layer application on a real directory: runs core's [`Apply`] machine and performs its
//! [`Step`]s beneath a snapshot directory, without ever touching anything outside it.
//!
//! [`Applier`] is synchronous (the daemon calls it on a blocking thread): [`Applier::push`]
//! layer bytes in any chunking, then [`Applier::finish`]. [`apply_file`] does both for a blob
//! in the content store. What each tar entry *means* is decided in core
//! ([`berth_core::archive::apply`], which follows containerd's `archive.Apply`); this module
//! only performs it, safely and fast.
//!
//! ## Confinement: nothing outside `dir` is ever touched
//!
//! A layer says whatever it likes: `..`, absolute names, symlinks to `/` or `../../..` followed
//! by entries written through them, hard links to such symlinks, a directory replaced by a
//! symlink and then written through. The rules:
//!
//! 1. Core refuses `..` that climbs above the root (entry paths and hard-link targets) and
//!    hands out canonical relative paths: no empty, `.` or `..` components.
//! 2. A step's *parent* directory is resolved from an fd of `dir` with `openat2`: first with
//!    `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` (the usual case, a path without symlinks), and
//!    if that meets a symlink, with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, so symlinks —
//!    absolute or relative, however many `..` — resolve as if `dir` were `/`, like containerd's
//!    `fs.RootPath`. Missing parents are created by a component walker that only ever goes
//!    down from an fd it holds, one component at a time (`openat(O_PATH | O_NOFOLLOW)`,
//!    `mkdirat`), reads symlinks itself (`readlinkat`) and treats `..` at the root as the root,
//!    exactly as `RESOLVE_IN_ROOT` does.
//! 3. The *final* component is a single name (never `.`, `..` or containing `/`) acted on
//!    relative to that parent fd, never following a symlink: `openat(O_CREAT | O_EXCL |
//!    O_NOFOLLOW)` for files (after removing whatever is there), `mkdirat`, `symlinkat`,
//!    `mknodat`, `linkat` without `AT_SYMLINK_FOLLOW`, `fchownat` / `utimensat` with
//!    `AT_SYMLINK_NOFOLLOW`; metadata of files and directories goes through their own fd
//!    (`fchown`, `fsetxattr`, `fchmod`, `futimens`); xattrs of other nodes through
//!    `lsetxattr("/proc/self/fd/<parent>/<name>")`, which resolves the parent fd and does not
//!    follow the final name. `chmod` of a device or fifo (`fchmodat`, which follows) is only
//!    done on a node this applier has just created with `mknodat`.
//! 4. Existing content is never written into: a file entry removes what is at its path and
//!    creates a new inode, so a hard link (or a native snapshot's lower file) is never
//!    modified through.
//!
//! ## The directory fd cache, and why a stale fd is never a way out
//!
//! Resolving a parent costs an `openat2`; layers hold tens of thousands of entries in a few
//! thousand directories, so parent fds are cached by their lexical path — **only** for paths
//! whose resolution met no symlink (`RESOLVE_NO_SYMLINKS` succeeded, or the walker followed
//! none). So a cached path names the directory physically at that path, and it can only
//! become stale if that path or one of its ancestors is removed or replaced. Every removal
//! of a directory (replacing an entry, a native whiteout, an opaque clear) first drops the
//! cache entries at and below its path — or, when the removal was reached through a symlink
//! (so its cached descendants are known under other names), the whole cache. Removing a
//! file or symlink cannot invalidate a cached path, since no cached path passes through one.
//! The cache is bounded (cleared when full).
//!
//! Even if an fd were stale, it could not lead outside `dir`: it was obtained by a resolution
//! confined to `dir`, and a directory inode leaves the tree only by `rename` (this code never
//! renames; the snapshot directory is private to the applier while it runs) or by removal,
//! after which the kernel refuses to create anything in it (`ENOENT`). And rule 3 means an
//! fd, stale or not, only ever reaches its own direct children.
//!
//! ## Speed
//!
//! Files are written with plain `write` on the fd from `openat`; a file costs `openat`,
//! `write`, `fchown`, `fchmod`, `futimens`, `close`, and parent lookups hit the cache (in a
//! profile of the benchmark below, `openat2` is 0.03 % of the samples). By default the
//! filesystem work runs on a second thread, fed batches of steps (256 steps or 1 MiB of
//! content) through a bounded channel (4 batches), while the caller's thread decompresses,
//! hashes and parses ([`Applier::threaded`]).
//!
//! Measured with `cargo run --release -p berth-drivers --example apply_bench` on this
//! project's machine kind (2 vCPUs, shared): the five layers of the peer `many-files` image
//! (37,747 entries, 99.1 MB gzip / 80.6 MB zstd, 242 MB of tar), each into a fresh
//! directory, medians of 5 rounds, interleaved, in one run:
//!
//! | | fresh ext4, gzip | fresh ext4, zstd | tmpfs, gzip | tmpfs, zstd |
//! |---|---|---|---|---|
//! | berth, 2 threads (default) | **1.06 s** | **1.06 s** | **0.68 s** | **0.59 s** |
//! | berth, 1 thread | 1.51 s | 1.34 s | 1.04 s | 0.87 s |
//! | GNU tar 1.34 `-xp` (with `gzip`/`zstd` as a second process) | 1.51 s | 1.25 s | 1.34 s | 0.81 s |
//!
//! The second thread costs no measurable CPU (1.55 vs 1.51 CPU-s) and saves 30-35 % of the
//! wall time, so it stays. On ext4 the filesystem thread is the bottleneck (gzip and zstd
//! take the same time). "Fresh ext4" is a new filesystem per round (`--fresh-ext4`): on a
//! long-lived ext4, creating inodes shortly after deleting many makes `__ext4_new_inode`
//! scan (`recently_deleted`), which took every applier (GNU tar too) from ~1.1 s to ~23 s on
//! this machine's disk when rounds followed one another.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use berth_core::archive::apply::{self as core_apply, Apply, DeviceKind, Meta, Step};
use berth_core::archive::{DecodeError, Mtime, PathError, TarError};
use berth_core::Digest;
use bytes::Bytes;
use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

pub use berth_core::archive::apply::ApplyMode;
pub use berth_core::archive::Compression;

/// Directory fds kept at most (the cache is cleared when it is full).
pub const DIR_CACHE_LIMIT: usize = 512;
/// Symlinks the parent walker follows before giving up with `ELOOP` (the kernel's limit).
const MAX_SYMLINKS: u32 = 40;
/// Steps per batch handed to the filesystem thread.
const BATCH_STEPS: usize = 256;
/// Content bytes per batch handed to the filesystem thread.
const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight between the threads.
const BATCHES_IN_FLIGHT: usize = 4;
/// Read size of [`apply_file`].
const READ_CHUNK: usize = 1 << 20;

/// What a layer was, once applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// sha256 of the uncompressed tar: the diff ID.
    pub diff_id: Digest,
    /// sha256 of the stream as given (the blob digest); equals `diff_id` if uncompressed.
    pub compressed: Digest,
    /// Bytes of the stream as given.
    pub compressed_size: u64,
    /// Bytes of uncompressed tar.
    pub uncompressed_size: u64,
    /// Tar entries read (skipped ones, such as whiteout metadata, included).
    pub entries: u64,
    /// The codec, given or sniffed.
    pub compression: Compression,
}

/// Why a layer could not be applied. After any error the target directory is in an
/// unspecified state (never outside it): the caller removes it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The compressed stream is corrupt or truncated.
    #[error("layer stream: {0}")]
    Decode(DecodeError),
    /// The tar stream is malformed or truncated.
    #[error("layer tar: {0}")]
    Tar(TarError),
    /// An entry's path is unusable (`..` escaping the root, not UTF-8, bad whiteout name).
    #[error("tar entry at offset {offset}: {source}")]
    Path {
        /// Entry offset in the uncompressed tar.
        offset: u64,
        /// What is wrong with the path.
        source: PathError,
    },
    /// Any other refusal decided by core: a hard link escaping the root, a bad link target, an
    /// out-of-range owner, an unsupported entry type, a diff ID mismatch.
    #[error(transparent)]
    Layer(core_apply::ApplyError),
    /// A hard link's target does not exist (or its parent directory does not).
    #[error("hard link {path:?}: target {target:?} does not exist")]
    LinkTargetMissing {
        /// The link.
        path: String,
        /// Its target.
        target: String,
    },
    /// A path's parent is not a directory (a component is a file, device or fifo).
    #[error("{path:?}: a parent component is not a directory")]
    NotADirectory {
        /// The directory path that could not be resolved.
        path: String,
    },
    /// The kernel refused a resolution as escaping the root (`EXDEV` from `openat2`). The
    /// resolution rules make this unreachable; it is reported, not ignored.
    #[error("{path:?} resolves outside the layer root")]
    Escape {
        /// The path.
        path: String,
    },
    /// A system call failed.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// The operation (`open`, `mkdir`, `write`, `chown`, …).
        op: &'static str,
        /// The path relative to the target directory (or the blob or directory itself).
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The filesystem thread panicked.
    #[error("layer apply: the filesystem thread panicked")]
    WorkerPanicked,
    /// An earlier call failed (its error was returned then); the applier is unusable.
    #[error("layer apply already failed")]
    AlreadyFailed,
}

impl From<core_apply::ApplyError> for ApplyError {
    fn from(e: core_apply::ApplyError) -> Self {
        match e {
            core_apply::ApplyError::Decode(e) => ApplyError::Decode(e),
            core_apply::ApplyError::Tar(e) => ApplyError::Tar(e),
            core_apply::ApplyError::Path { offset, source } => ApplyError::Path { offset, source },
            other => ApplyError::Layer(other),
        }
    }
}

fn io(op: &'static str, path: &str, e: Errno) -> ApplyError {
    ApplyError::Io {
        op,
        path: path.to_owned(),
        source: e.into(),
    }
}

/// Applies a layer stream into `dir` (an existing, normally empty directory).
pub struct Applier {
    apply: Apply,
    sink: Sink,
    /// Move the filesystem work to its own thread at the first push.
    threaded: bool,
}

enum Sink {
    /// Steps performed on the caller's thread.
    Direct(Box<Exec>),
    /// Steps batched to the filesystem thread.
    Thread(Pipeline),
    /// Shut down after an error.
    Closed,
}

struct Pipeline {
    tx: Option<SyncSender<Vec<Step>>>,
    worker: Option<JoinHandle<Result<(), ApplyError>>>,
    spawn_error: Option<std::io::Error>,
    cancel: Arc<AtomicBool>,
    batch: Vec<Step>,
    bytes: usize,
}

impl Applier {
    /// Opens `dir` as the root of every step. `compression` `None` sniffs it from the first
    /// bytes. The filesystem work runs on a second thread unless [`Applier::threaded`] says
    /// otherwise.
    pub fn new(
        dir: &Path,
        mode: ApplyMode,
        compression: Option<Compression>,
    ) -> Result<Self, ApplyError> {
        let root = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("open", &dir.to_string_lossy(), e))?;
        Ok(Applier {
            apply: Apply::new(mode, compression),
            sink: Sink::Direct(Box::new(Exec::new(root))),
            threaded: true,
        })
    }

    /// Whether the filesystem work runs on its own thread, started at the first push (builder
    /// style; a later call has no effect). On by default: decompression and hashing then
    /// overlap with file creation.
    #[must_use]
    pub fn threaded(mut self, on: bool) -> Self {
        self.threaded = on;
        self
    }

    /// Fails [`Applier::finish`] unless the layer's diff ID is `diff_id` (builder style).
    #[must_use]
    pub fn expect_diff_id(mut self, diff_id: Digest) -> Self {
        self.apply = self.apply.expect_diff_id(diff_id);
        self
    }

    /// Applies the next bytes of the layer stream (copied; see [`Applier::push_bytes`]).
    pub fn push(&mut self, data: &[u8]) -> Result<(), ApplyError> {
        self.push_bytes(Bytes::copy_from_slice(data))
    }

    /// Applies the next bytes of the layer stream, without copying them.
    pub fn push_bytes(&mut self, data: Bytes) -> Result<(), ApplyError> {
        if self.threaded && matches!(self.sink, Sink::Direct(_)) {
            if let Sink::Direct(exec) = std::mem::replace(&mut self.sink, Sink::Closed) {
                self.sink = Sink::Thread(Pipeline::spawn(exec));
            }
        }
        let r = self.apply.push(data).map_err(ApplyError::from);
        let r = r.and_then(|()| self.drain());
        self.check(r)
    }

    /// Declares the end of the stream, performs the last steps and reports the layer's
    /// digests. Fails if the stream was truncated or corrupt, or a step failed.
    pub fn finish(mut self) -> Result<Applied, ApplyError> {
        let r = self.apply.finish().map_err(ApplyError::from);
        let r = r.and_then(|s| self.drain().map(|()| s));
        let summary = self.check(r)?;
        match std::mem::replace(&mut self.sink, Sink::Closed) {
            Sink::Direct(exec) => exec.end()?,
            Sink::Thread(mut p) => p.close()?,
            Sink::Closed => {}
        }
        Ok(Applied {
            diff_id: summary.diff_id,
            compressed: summary.compressed,
            compressed_size: summary.compressed_size,
            uncompressed_size: summary.uncompressed_size,
            entries: summary.entries,
            compression: summary.compression,
        })
    }

    /// Performs (or hands over) every step ready.
    fn drain(&mut self) -> Result<(), ApplyError> {
        while let Some(step) = self.apply.poll()? {
            match &mut self.sink {
                Sink::Direct(exec) => exec.run(step)?,
                Sink::Thread(p) => p.send(step)?,
                Sink::Closed => return Err(ApplyError::AlreadyFailed),
            }
        }
        Ok(())
    }

    /// On error, stops the filesystem thread before returning, so nothing is written into the
    /// directory after the caller sees the error; a worker's own error wins.
    fn check<T>(&mut self, r: Result<T, ApplyError>) -> Result<T, ApplyError> {
        let Err(e) = r else { return r };
        let worker = match std::mem::replace(&mut self.sink, Sink::Closed) {
            Sink::Thread(mut p) => p.abort(),
            _ => None,
        };
        Err(worker.unwrap_or(e))
    }
}

impl Pipeline {
    fn spawn(mut exec: Box<Exec>) -> Self {
        let (tx, rx): (SyncSender<Vec<Step>>, Receiver<Vec<Step>>) =
            std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = cancel.clone();
        let worker = std::thread::Builder::new()
            .name("berth-apply".into())
            // removal recurses once per directory level (at most ~2k: parents resolve with
            // paths under PATH_MAX); leave a wide margin
            .stack_size(8 << 20)
            .spawn(move || {
                for batch in rx {
                    for step in batch {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        exec.run(step)?;
                    }
                }
                exec.end()
            });
        let (worker, spawn_error) = match worker {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e)),
        };
        Pipeline {
            tx: Some(tx),
            worker,
            spawn_error,
            cancel,
            batch: Vec::with_capacity(BATCH_STEPS),
            bytes: 0,
        }
    }

    fn send(&mut self, step: Step) -> Result<(), ApplyError> {
        if let Step::Data(d) = &step {
            self.bytes += d.len();
        }
        self.batch.push(step);
        if self.batch.len() >= BATCH_STEPS || self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ApplyError> {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_STEPS));
        self.bytes = 0;
        match &self.tx {
            Some(tx) if self.worker.is_some() && tx.send(batch).is_ok() => Ok(()),
            // the worker stopped: it failed, and join returns why
            _ => Err(self.join().err().unwrap_or(ApplyError::WorkerPanicked)),
        }
    }

    /// Closes the channel and waits for the worker.
    fn join(&mut self) -> Result<(), ApplyError> {
        self.tx = None;
        if let Some(source) = self.spawn_error.take() {
            return Err(ApplyError::Io {
                op: "spawn",
                path: "berth-apply thread".into(),
                source,
            });
        }
        match self.worker.take() {
            Some(w) => w.join().unwrap_or(Err(ApplyError::WorkerPanicked)),
            None => Ok(()),
        }
    }

    /// Sends what is left and waits for the worker to perform it.
    fn close(&mut self) -> Result<(), ApplyError> {
        if !self.batch.is_empty() {
            self.flush()?;
        }
        self.join()
    }

    /// Stops the worker as soon as possible; returns its own error, if it failed first.
    fn abort(&mut self) -> Option<ApplyError> {
        self.cancel.store(true, Ordering::Relaxed);
        self.batch.clear();
        self.join().err()
    }
}

impl Drop for Pipeline {
    /// Never leaves the worker writing into the directory after the applier is gone.
    fn drop(&mut self) {
        if self.worker.is_some() {
            self.cancel.store(true, Ordering::Relaxed);
            let _ = self.join();
        }
    }
}

/// Applies the layer blob at `blob` (compression sniffed) into `dir`.
pub fn apply_file(blob: &Path, dir: &Path, mode: ApplyMode) -> Result<Applied, ApplyError> {
    let blob_name = || blob.to_string_lossy().into_owned();
    let mut file = File::open(blob).map_err(|source| ApplyError::Io {
        op: "open",
        path: blob_name(),
        source,
    })?;
    let mut applier = Applier::new(dir, mode, None)?;
    loop {
        let mut buf = vec![0u8; READ_CHUNK];
        let n = loop {
            match file.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ApplyError::Io {
                        op: "read",
                        path: blob_name(),
                        source,
                    })
                }
            }
        };
        if n == 0 {
            break;
        }
        buf.truncate(n);
        applier.push_bytes(Bytes::from(buf))?;
    }
    applier.finish()
}

/// A parent directory, resolved.
struct Parent {
    fd: Arc<OwnedFd>,
    /// Its resolution met no symlink: the fd is the directory physically at its lexical path,
    /// so it (and its children's) may be cached.
    clean: bool,
}

enum Lookup {
    Found(Parent),
    Missing,
    NotDir,
}

/// The file being written.
struct OpenFile {
    fd: OwnedFd,
    path: String,
    meta: Meta,
}

/// Performs steps beneath one root. See the module docs for the rules it keeps.
struct Exec {
    root: Arc<OwnedFd>,
    /// Lexical directory path (no symlink on the way) → its fd.
    cache: HashMap<String, Arc<OwnedFd>>,
    file: Option<OpenFile>,
}

/// Splits a canonical path into its parent (`""` for the root) and final name.
fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

fn timestamps(t: Mtime) -> Timestamps {
    let ts = Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.into(),
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

/// Retries a call interrupted by a signal.
fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => {}
            r => return r,
        }
    }
}

const NOFOLLOW: AtFlags = AtFlags::SYMLINK_NOFOLLOW;
const DIR_PATH: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);
const DIR_READ: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl Exec {
    fn new(root: OwnedFd) -> Self {
        Exec {
            root: Arc::new(root),
            cache: HashMap::new(),
            file: None,
        }
    }

    fn run(&mut self, step: Step) -> Result<(), ApplyError> {
        match step {
            Step::Data(data) => self.write(&data),
            Step::FileEnd => self.end_file(),
            Step::File { path, meta, .. } => self.create_file(path, meta),
            Step::Mkdir { path, meta } => self.mkdir(&path, &meta),
            Step::Symlink { path, target, meta } => {
                let target = CString::new(target).map_err(|_| {
                    io("symlink", &path, Errno::INVAL) // core refuses NUL; unreachable
                })?;
                let (parent, name, ()) = self.create(&path, "symlink", |d, n| {
                    rustix::fs::symlinkat(target.as_c_str(), d, n)
                })?;
                self.meta_at(parent.fd.as_fd(), name, &path, &meta, false)
            }
            Step::HardLink { path, target, meta } => self.hard_link(&path, &target, &meta),
            Step::Device {
                path,
                kind,
                device,
                meta,
            } => {
                let ft = match kind {
                    DeviceKind::Char => FileType::CharacterDevice,
                    DeviceKind::Block => FileType::BlockDevice,
                };
                let dev = rustix::fs::makedev(device.major, device.minor);
                let mode = Mode::from_raw_mode(meta.mode);
                let (parent, name, ()) = self.create(&path, "mknod", |d, n| {
                    rustix::fs::mknodat(d, n, ft, mode, dev)
                })?;
                self.meta_at(parent.fd.as_fd(), name, &path, &meta, true)
            }
            Step::Fifo { path, meta } => {
                let mode = Mode::from_raw_mode(meta.mode);
                let (parent, name, ()) = self.create(&path, "mkfifo", |d, n| {
                    rustix::fs::mknodat(d, n, FileType::Fifo, mode, 0)
                })?;
                self.meta_at(parent.fd.as_fd(), name, &path, &meta, true)
            }
            Step::Whiteout { path, uid, gid } => {
                let (parent, name, ()) = self.create(&path, "mknod", |d, n| {
                    rustix::fs::mknodat(d, n, FileType::CharacterDevice, Mode::empty(), 0)
                })?;
                retry(|| {
                    rustix::fs::chownat(
                        parent.fd.as_fd(),
                        name,
                        Some(Uid::from_raw(uid)),
                        Some(Gid::from_raw(gid)),
                        NOFOLLOW,
                    )
                })
                .map_err(|e| io("chown", &path, e))
            }
            Step::Opaque { dir } => {
                let dir = dir.unwrap_or_default();
                let fd = self.open_dir_for_read(&dir)?;
                retry(|| {
                    rustix::fs::fsetxattr(
                        &fd,
                        core_apply::OVERLAY_OPAQUE_XATTR,
                        b"y",
                        XattrFlags::empty(),
                    )
                })
                .map_err(|e| io("setxattr", &dir, e))
            }
            Step::RemoveAll { path } => {
                let (parent, name) = split(&path);
                let p = self.dir(parent)?;
                self.remove_all(&p, name, &path)
            }
            Step::ClearDir { dir, keep } => {
                let dir = dir.unwrap_or_default();
                let p = self.dir(&dir)?;
                let fd = retry(|| rustix::fs::openat(&*p.fd, ".", DIR_READ, Mode::empty()))
                    .map_err(|e| io("open", &dir, e))?;
                if p.clean {
                    self.forget_below(&dir);
                } else {
                    // reached through a symlink: its cached descendants have other names
                    self.cache.clear();
                }
                clear_dir(fd, &dir, &keep).map_err(|(p, e)| io("clear", &p, e))
            }
            Step::DirTimes(dirs) => {
                for (path, mtime) in dirs {
                    let (parent, name) = split(&path);
                    let Lookup::Found(p) = self.lookup(parent)? else {
                        continue;
                    };
                    match retry(|| {
                        rustix::fs::utimensat(&*p.fd, name, &timestamps(mtime), NOFOLLOW)
                    }) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(e) => return Err(io("utimensat", &path, e)),
                    }
                }
                Ok(())
            }
        }
    }

    /// Called once every step has run.
    fn end(&self) -> Result<(), ApplyError> {
        match &self.file {
            // core ends every file before the end of the stream; unreachable
            Some(f) => Err(io("write", &f.path, Errno::IO)),
            None => Ok(()),
        }
    }

    // ---- resolution ----

    /// Resolves an existing directory beneath the root, without creating anything.
    fn lookup(&mut self, dir: &str) -> Result<Lookup, ApplyError> {
        if dir.is_empty() {
            return Ok(Lookup::Found(Parent {
                fd: self.root.clone(),
                clean: true,
            }));
        }
        if let Some(fd) = self.cache.get(dir) {
            return Ok(Lookup::Found(Parent {
                fd: fd.clone(),
                clean: true,
            }));
        }
        let clean = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        let in_root = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let mut r =
            retry_again(|| rustix::fs::openat2(&*self.root, dir, DIR_PATH, Mode::empty(), clean));
        let mut is_clean = true;
        if matches!(r, Err(Errno::LOOP)) {
            // a symlink on the way: resolve it as if the root were `/`
            is_clean = false;
            r = retry_again(|| {
                rustix::fs::openat2(&*self.root, dir, DIR_PATH, Mode::empty(), in_root)
            });
        }
        match r {
            Ok(fd) => {
                let fd = Arc::new(fd);
                if is_clean {
                    self.remember(dir, fd.clone());
                }
                Ok(Lookup::Found(Parent {
                    fd,
                    clean: is_clean,
                }))
            }
            Err(Errno::NOENT) => Ok(Lookup::Missing),
            Err(Errno::NOTDIR) => Ok(Lookup::NotDir),
            Err(Errno::XDEV) => Err(ApplyError::Escape { path: dir.into() }),
            Err(e) => Err(io("openat2", dir, e)),
        }
    }

    /// Resolves a directory beneath the root, creating what is missing (containerd's
    /// `mkparent`).
    fn dir(&mut self, dir: &str) -> Result<Parent, ApplyError> {
        match self.lookup(dir)? {
            Lookup::Found(p) => Ok(p),
            Lookup::NotDir => Err(ApplyError::NotADirectory { path: dir.into() }),
            Lookup::Missing => self.make_dirs(dir),
        }
    }

    /// The component walker: creates the missing directories of `dir` (mode 0755), following
    /// symlinks (including dangling ones, whose targets it creates) as `RESOLVE_IN_ROOT` would.
    /// It only ever descends from an fd it holds by one plain name, and handles `..` itself
    /// (never above the root).
    fn make_dirs(&mut self, dir: &str) -> Result<Parent, ApplyError> {
        let mut stack: Vec<Arc<OwnedFd>> = vec![self.root.clone()];
        let mut todo: std::collections::VecDeque<Vec<u8>> =
            dir.split('/').map(|c| c.as_bytes().to_vec()).collect();
        let mut links = 0;
        let fail = |op, e| io(op, dir, e);
        while let Some(c) = todo.pop_front() {
            match &c[..] {
                b"" | b"." => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let cur = stack.last().expect("the root is never popped").clone();
            let name = &c[..];
            let open = || {
                retry(|| {
                    rustix::fs::openat(
                        &*cur,
                        name,
                        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                })
            };
            let fd = match open() {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    // (a dangling symlink would have been opened: O_PATH | O_NOFOLLOW)
                    retry(|| rustix::fs::mkdirat(&*cur, name, Mode::from_raw_mode(0o755)))
                        .map_err(|e| fail("mkdir", e))?;
                    // mkdirat's mode is masked by the umask: make it 0755 whatever the umask
                    // (the name is the directory just made, not a symlink)
                    rustix::fs::chmodat(&*cur, name, Mode::from_raw_mode(0o755), AtFlags::empty())
                        .map_err(|e| fail("chmod", e))?;
                    open().map_err(|e| fail("open", e))?
                }
                Err(e) => return Err(fail("open", e)),
            };
            let st = rustix::fs::fstat(&fd).map_err(|e| fail("stat", e))?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => stack.push(Arc::new(fd)),
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(fail("resolve", Errno::LOOP));
                    }
                    let target = rustix::fs::readlinkat(&fd, "", Vec::new())
                        .map_err(|e| fail("readlink", e))?;
                    let target = target.as_bytes();
                    if target.first() == Some(&b'/') {
                        stack.truncate(1);
                    }
                    for part in target.split(|b| *b == b'/').rev() {
                        todo.push_front(part.to_vec());
                    }
                }
                _ => return Err(ApplyError::NotADirectory { path: dir.into() }),
            }
        }
        let fd = stack.pop().expect("the root is never popped");
        let clean = links == 0;
        if clean && !dir.is_empty() {
            self.remember(dir, fd.clone());
        }
        Ok(Parent { fd, clean })
    }

    fn remember(&mut self, dir: &str, fd: Arc<OwnedFd>) {
        if self.cache.len() >= DIR_CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(dir.to_owned(), fd);
    }

    /// Drops the cached fds of `path` and everything below it (it is being removed).
    fn forget(&mut self, path: &str) {
        self.cache.retain(|k, _| !is_at_or_below(k, path));
    }

    /// Drops the cached fds strictly below `dir` (its children are being removed).
    fn forget_below(&mut self, dir: &str) {
        if dir.is_empty() {
            self.cache.clear();
        } else {
            self.cache
                .retain(|k, _| !(is_at_or_below(k, dir) && k.len() > dir.len()));
        }
    }

    /// A readable fd of `dir` (created if missing), for `fsetxattr`.
    fn open_dir_for_read(&mut self, dir: &str) -> Result<OwnedFd, ApplyError> {
        let p = self.dir(dir)?;
        retry(|| rustix::fs::openat(&*p.fd, ".", DIR_READ, Mode::empty()))
            .map_err(|e| io("open", dir, e))
    }

    // ---- creation ----

    /// Runs `make(parent, name)`; if the name exists, removes it (whatever it is) and runs
    /// `make` again.
    fn create<'p, T>(
        &mut self,
        path: &'p str,
        op: &'static str,
        mut make: impl FnMut(BorrowedFd<'_>, &str) -> rustix::io::Result<T>,
    ) -> Result<(Parent, &'p str, T), ApplyError> {
        let (parent, name) = split(path);
        let p = self.dir(parent)?;
        match retry(|| make(p.fd.as_fd(), name)) {
            Ok(t) => Ok((p, name, t)),
            Err(Errno::EXIST) => {
                self.remove_all(&p, name, path)?;
                let t = retry(|| make(p.fd.as_fd(), name)).map_err(|e| io(op, path, e))?;
                Ok((p, name, t))
            }
            Err(e) => Err(io(op, path, e)),
        }
    }

    fn create_file(&mut self, path: String, meta: Meta) -> Result<(), ApplyError> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        let (_, _, fd) = self.create(&path, "create", |d, n| {
            rustix::fs::openat(d, n, flags, mode)
        })?;
        self.file = Some(OpenFile { fd, path, meta });
        Ok(())
    }

    fn write(&mut self, mut data: &[u8]) -> Result<(), ApplyError> {
        let Some(f) = &self.file else {
            return Ok(()); // core sends data only inside a file; unreachable
        };
        while !data.is_empty() {
            match retry(|| rustix::io::write(&f.fd, data)) {
                Ok(0) => return Err(io("write", &f.path, Errno::IO)),
                Ok(n) => data = &data[n..],
                Err(e) => return Err(io("write", &f.path, e)),
            }
        }
        Ok(())
    }

    fn end_file(&mut self) -> Result<(), ApplyError> {
        let Some(f) = self.file.take() else {
            return Ok(());
        };
        meta_fd(f.fd.as_fd(), &f.meta, &f.path, true)?;
        retry(|| rustix::fs::futimens(&f.fd, &timestamps(f.meta.mtime)))
            .map_err(|e| io("utimensat", &f.path, e))
    }

    fn mkdir(&mut self, path: &str, meta: &Meta) -> Result<(), ApplyError> {
        let (parent, name) = split(path);
        let p = self.dir(parent)?;
        let mode = Mode::from_raw_mode(meta.mode);
        match retry(|| rustix::fs::mkdirat(&*p.fd, name, mode)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st =
                    rustix::fs::statat(&*p.fd, name, NOFOLLOW).map_err(|e| io("stat", path, e))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    // not a directory: replace it (a directory over a directory merges)
                    self.remove_all(&p, name, path)?;
                    retry(|| rustix::fs::mkdirat(&*p.fd, name, mode))
                        .map_err(|e| io("mkdir", path, e))?;
                }
            }
            Err(e) => return Err(io("mkdir", path, e)),
        }
        let fd = retry(|| rustix::fs::openat(&*p.fd, name, DIR_READ, Mode::empty()))
            .map_err(|e| io("open", path, e))?;
        meta_fd(fd.as_fd(), meta, path, true)?;
        if p.clean {
            self.remember(path, Arc::new(fd));
        }
        Ok(())
    }

    fn hard_link(&mut self, path: &str, target: &str, meta: &Meta) -> Result<(), ApplyError> {
        let missing = || ApplyError::LinkTargetMissing {
            path: path.into(),
            target: target.into(),
        };
        let (tparent, tname) = split(target);
        let (parent, name) = split(path);
        let mut replaced = false;
        loop {
            // resolved afresh after a removal: the target may have been below the old path
            let t = match self.lookup(tparent)? {
                Lookup::Found(t) => t,
                Lookup::Missing | Lookup::NotDir => return Err(missing()),
            };
            let p = self.dir(parent)?;
            match retry(|| rustix::fs::linkat(&*t.fd, tname, &*p.fd, name, AtFlags::empty())) {
                Ok(()) => {
                    // containerd chmods a hard link unless it names a symlink
                    let st = rustix::fs::statat(&*p.fd, name, NOFOLLOW)
                        .map_err(|e| io("stat", path, e))?;
                    let chmod = FileType::from_raw_mode(st.st_mode) != FileType::Symlink;
                    return self.meta_at(p.fd.as_fd(), name, path, meta, chmod);
                }
                Err(Errno::EXIST) if !replaced => {
                    self.remove_all(&p, name, path)?;
                    replaced = true;
                }
                Err(Errno::NOENT) => return Err(missing()),
                Err(e) => return Err(io("link", path, e)),
            }
        }
    }

    /// Metadata of a node that has no fd of its own here (symlink, device, fifo, hard link),
    /// by name relative to its parent, never following a final symlink (see the module docs
    /// for `chmod`).
    fn meta_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &str,
        path: &str,
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), ApplyError> {
        retry(|| {
            rustix::fs::chownat(
                parent,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                NOFOLLOW,
            )
        })
        .map_err(|e| io("chown", path, e))?;
        if !meta.xattrs.is_empty() {
            let via = format!("/proc/self/fd/{}/{name}", parent.as_raw_fd());
            for x in &meta.xattrs {
                let r = retry(|| {
                    rustix::fs::lsetxattr(
                        via.as_str(),
                        x.name.as_str(),
                        &x.value,
                        XattrFlags::empty(),
                    )
                });
                xattr_result(r, path, &x.name)?;
            }
        }
        if chmod {
            retry(|| {
                rustix::fs::chmodat(
                    parent,
                    name,
                    Mode::from_raw_mode(meta.mode),
                    AtFlags::empty(),
                )
            })
            .map_err(|e| io("chmod", path, e))?;
        }
        retry(|| rustix::fs::utimensat(parent, name, &timestamps(meta.mtime), NOFOLLOW))
            .map_err(|e| io("utimensat", path, e))
    }

    // ---- removal ----

    /// Removes `name` in `parent` (the node at lexical `path`) and all it holds, if it exists.
    /// A directory's cached fds go first: those at and below `path` if the parent's path is
    /// clean, else all of them (its descendants were cached under other names).
    fn remove_all(&mut self, parent: &Parent, name: &str, path: &str) -> Result<(), ApplyError> {
        let fd = parent.fd.as_fd();
        match retry(|| rustix::fs::unlinkat(fd, name, AtFlags::empty())) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM) => {
                if parent.clean {
                    self.forget(path);
                } else {
                    self.cache.clear();
                }
                remove_tree(fd, name.as_bytes()).map_err(|e| io("remove", path, e))
            }
            Err(e) => Err(io("unlink", path, e)),
        }
    }
}

/// `openat2` may fail with `EAGAIN` if a rename raced with a `RESOLVE_IN_ROOT` resolution.
fn retry_again<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) if tries < 8 => tries += 1,
            r => return r,
        }
    }
}

fn is_at_or_below(key: &str, path: &str) -> bool {
    key.starts_with(path) && (key.len() == path.len() || key.as_bytes()[path.len()] == b'/')
}

/// Metadata through a file's or directory's own fd: owner, xattrs, mode (after the owner,
/// which clears setuid/setgid).
fn meta_fd(fd: BorrowedFd<'_>, meta: &Meta, path: &str, chmod: bool) -> Result<(), ApplyError> {
    retry(|| {
        rustix::fs::fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
    })
    .map_err(|e| io("chown", path, e))?;
    for x in &meta.xattrs {
        let r = retry(|| rustix::fs::fsetxattr(fd, x.name.as_str(), &x.value, XattrFlags::empty()));
        xattr_result(r, path, &x.name)?;
    }
    if chmod {
        retry(|| rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode)))
            .map_err(|e| io("chmod", path, e))?;
    }
    Ok(())
}

/// containerd ignores xattrs the filesystem does not support, and `user.*` ones the kernel
/// refuses on a node kind.
fn xattr_result(r: rustix::io::Result<()>, path: &str, name: &str) -> Result<(), ApplyError> {
    match r {
        Ok(()) => Ok(()),
        Err(Errno::NOTSUP) => {
            log::warn!("layer apply: xattr {name} on {path:?} ignored: not supported here");
            Ok(())
        }
        Err(Errno::PERM) if name.starts_with("user.") => {
            log::warn!("layer apply: xattr {name} on {path:?} ignored: refused by the kernel");
            Ok(())
        }
        Err(e) => Err(io("setxattr", path, e)),
    }
}

/// Removes the directory `name` in `parent` and everything in it, never following a symlink.
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    let fd = retry(|| rustix::fs::openat(parent, name, DIR_READ, Mode::empty()))?;
    let children = list(fd.as_fd())?;
    for (child, ft) in children {
        let r = if ft == FileType::Directory {
            Err(Errno::ISDIR)
        } else {
            retry(|| rustix::fs::unlinkat(&fd, child.as_c_str(), AtFlags::empty()))
        };
        match r {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR) | Err(Errno::PERM) => remove_tree(fd.as_fd(), child.as_bytes())?,
            Err(e) => return Err(e),
        }
    }
    retry(|| rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR))
}

/// The entries of a directory (without `.` and `..`), with their types (`Unknown` resolved by
/// `lstat`).
fn list(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<(CString, FileType)>> {
    let reader = retry(|| rustix::fs::openat(dir, ".", DIR_READ, Mode::empty()))?;
    let mut out = Vec::new();
    for entry in Dir::new(reader)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let mut ft = entry.file_type();
        if ft == FileType::Unknown {
            ft = FileType::from_raw_mode(rustix::fs::statat(dir, name, NOFOLLOW)?.st_mode);
        }
        out.push((name.to_owned(), ft));
    }
    Ok(out)
}

/// Native opaque directory: removes every child of `dir` not in `keep` (sorted full paths),
/// descending into kept directories. Errors carry the path concerned.
fn clear_dir(fd: OwnedFd, dir: &str, keep: &[String]) -> Result<(), (String, Errno)> {
    let children = list(fd.as_fd()).map_err(|e| (dir.to_owned(), e))?;
    for (name, ft) in children {
        let os = name.as_bytes();
        let child = match name.to_str() {
            Ok(n) => join(dir, n),
            // a name that is not UTF-8 cannot be one this layer created
            Err(_) => String::new(),
        };
        let kept = !child.is_empty() && keep.binary_search(&child).is_ok();
        if !kept {
            let r = if ft == FileType::Directory {
                remove_tree(fd.as_fd(), os)
            } else {
                match retry(|| rustix::fs::unlinkat(&fd, name.as_c_str(), AtFlags::empty())) {
                    Err(Errno::ISDIR) => remove_tree(fd.as_fd(), os),
                    r => r,
                }
            };
            r.map_err(|e| (join(dir, &name.to_string_lossy()), e))?;
        } else if ft == FileType::Directory {
            let sub = retry(|| rustix::fs::openat(&fd, name.as_c_str(), DIR_READ, Mode::empty()))
                .map_err(|e| (child.clone(), e))?;
            clear_dir(sub, &child, keep)?;
        }
    }
    Ok(())
}
