//! The Op vocabulary: the one seam between every machine and every driver.
//!
//! A machine never touches the host. It emits [`Op`]s; the driver performs each and hands the
//! outcome back as a [`Completion`]. Paths are relative to a root directory the driver owns and
//! never escape it (the driver resolves them beneath that root).

use bytes::Bytes;

/// True if `path` is a canonical relative Op path: not empty, not absolute, and without empty,
/// `.` or `..` components. Every executor refuses other paths with `EINVAL`.
#[must_use]
pub fn is_canonical_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// A machine-chosen identifier for an Op, echoed back in its [`Completion`]. Opaque to drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// A driver-chosen handle for an open file, returned by [`OpKind::Open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u64);

/// How [`OpKind::Open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// Open for writing as well as reading.
    pub write: bool,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Fail if the file exists (with `create`).
    pub exclusive: bool,
    /// Truncate the file to zero length.
    pub truncate: bool,
    /// Permission bits for a created file.
    pub mode: u32,
}

impl OpenOptions {
    /// Read-only open of an existing file.
    #[must_use]
    pub const fn read() -> Self {
        OpenOptions {
            write: false,
            create: false,
            exclusive: false,
            truncate: false,
            mode: 0,
        }
    }

    /// Read-write open of an existing file.
    #[must_use]
    pub const fn read_write() -> Self {
        OpenOptions {
            write: true,
            create: false,
            exclusive: false,
            truncate: false,
            mode: 0,
        }
    }

    /// Read-write open that creates the file or truncates an existing one.
    #[must_use]
    pub const fn create_truncate(mode: u32) -> Self {
        OpenOptions {
            write: true,
            create: true,
            exclusive: false,
            truncate: true,
            mode,
        }
    }
}

/// One thing for the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The machine's id for this Op.
    pub id: OpId,
    /// What to do.
    pub kind: OpKind,
}

/// The file Ops. Each documents the [`OpOutput`] it completes with on success.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpKind {
    /// Create a directory and any missing parents (like `mkdir -p`). → [`OpOutput::Done`]
    Mkdir {
        /// Directory path.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// Open a file. → [`OpOutput::Opened`]
    Open {
        /// File path.
        path: String,
        /// How to open it.
        options: OpenOptions,
    },
    /// Write `data` at `offset`; may write less than asked. → [`OpOutput::Written`]
    Write {
        /// An open handle.
        handle: Handle,
        /// Byte offset in the file.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// Read up to `len` bytes at `offset` (fewer at end of file). → [`OpOutput::Data`]
    Read {
        /// An open handle.
        handle: Handle,
        /// Byte offset in the file.
        offset: u64,
        /// Most bytes to read.
        len: u32,
    },
    /// Set the file's length. → [`OpOutput::Done`]
    Truncate {
        /// An open handle.
        handle: Handle,
        /// The new length.
        len: u64,
    },
    /// Flush the file's data and metadata to stable storage. → [`OpOutput::Done`]
    Fsync {
        /// An open handle.
        handle: Handle,
    },
    /// Flush a directory (after a rename into it). → [`OpOutput::Done`]
    FsyncDir {
        /// Directory path.
        path: String,
    },
    /// Close a handle. → [`OpOutput::Done`]
    Close {
        /// The handle.
        handle: Handle,
    },
    /// Create or replace a whole small file with `data`. → [`OpOutput::Done`]
    WriteFile {
        /// File path.
        path: String,
        /// Entire contents.
        data: Bytes,
        /// Permission bits.
        mode: u32,
    },
    /// Read a whole small file. → [`OpOutput::Data`]
    ReadFile {
        /// File path.
        path: String,
    },
    /// Stat a path without following a final symlink. → [`OpOutput::Stat`]
    Stat {
        /// The path.
        path: String,
    },
    /// Rename atomically, replacing `to`. → [`OpOutput::Done`]
    Rename {
        /// Source path.
        from: String,
        /// Destination path.
        to: String,
    },
    /// Remove a file or an empty directory. → [`OpOutput::Done`]
    Remove {
        /// The path.
        path: String,
    },
    /// Remove a tree; a missing path is success. → [`OpOutput::Done`]
    RemoveAll {
        /// The path.
        path: String,
    },
    /// List a directory's entry names, sorted. → [`OpOutput::Entries`]
    ReadDir {
        /// Directory path.
        path: String,
    },
}

impl OpKind {
    /// A short name for logs and fault rules.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Mkdir { .. } => "mkdir",
            OpKind::Open { .. } => "open",
            OpKind::Write { .. } => "write",
            OpKind::Read { .. } => "read",
            OpKind::Truncate { .. } => "truncate",
            OpKind::Fsync { .. } => "fsync",
            OpKind::FsyncDir { .. } => "fsyncdir",
            OpKind::Close { .. } => "close",
            OpKind::WriteFile { .. } => "writefile",
            OpKind::ReadFile { .. } => "readfile",
            OpKind::Stat { .. } => "stat",
            OpKind::Rename { .. } => "rename",
            OpKind::Remove { .. } => "remove",
            OpKind::RemoveAll { .. } => "removeall",
            OpKind::ReadDir { .. } => "readdir",
        }
    }
}

/// File type and size from [`OpKind::Stat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Size in bytes.
    pub size: u64,
    /// Mode bits including the file type (`S_IFMT`).
    pub mode: u32,
    /// Modification time.
    pub mtime: crate::Instant,
}

impl FileStat {
    /// True for a directory.
    #[must_use]
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// What a successful Op returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpOutput {
    /// Success with nothing to return.
    Done,
    /// A file was opened; `size` is its length at open.
    Opened {
        /// The new handle.
        handle: Handle,
        /// File length at open.
        size: u64,
    },
    /// Bytes written.
    Written(u64),
    /// Bytes read.
    Data(Bytes),
    /// Metadata of a path.
    Stat(FileStat),
    /// Directory entries.
    Entries(Vec<String>),
}

/// Errno values the core reasons about; drivers pass the host's number through.
pub mod errno {
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// I/O error.
    pub const EIO: i32 = 5;
    /// Bad file descriptor.
    pub const EBADF: i32 = 9;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// Not a directory.
    pub const ENOTDIR: i32 = 20;
    /// Is a directory.
    pub const EISDIR: i32 = 21;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space left on device.
    pub const ENOSPC: i32 = 28;
    /// Too many levels of symlinks / would escape the root.
    pub const ELOOP: i32 = 40;
    /// Path escapes the root (openat2 RESOLVE_BENEATH).
    pub const EXDEV: i32 = 18;
}

/// A failed Op: the host's errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{op} failed: errno {errno}")]
pub struct OpError {
    /// The Op's name ([`OpKind::name`]).
    pub op: &'static str,
    /// The errno.
    pub errno: i32,
}

impl OpError {
    /// True if the error is "no such file".
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.errno == errno::ENOENT
    }
}

/// The outcome of an Op.
pub type OpResult = Result<OpOutput, OpError>;

/// An Op's outcome, handed back to the machine that emitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The Op's id.
    pub id: OpId,
    /// What happened.
    pub result: OpResult,
}
