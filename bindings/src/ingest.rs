//! The `Ingest` machine for C: an opaque handle a C host drives with poll and complete.
//!
//! The handle wraps `berth_core::content::Ingest` and keeps its contract word for word (see the
//! crate docs): inputs through `berth_ingest_open`/`_write`/`_set_total`/`_commit`/`_abort`/
//! `_close`/`_complete`, outputs through `berth_ingest_poll`, drained to `BERTH_OUTPUT_NONE`
//! after every input. What this layer adds is only translation: C strings and structs in,
//! flat C structs out, and backing storage for the pointers it lends to the host.

use std::collections::HashMap;
use std::ffi::{c_char, CString};

use berth_core::content::{
    Ingest, IngestError, IngestPaths, Input, OpenRequest, Recovery, Reply, Status,
};
use berth_core::op::{Completion, FileStat, Handle, Op, OpError, OpId, OpKind, OpOutput};
use berth_core::{Digest, Instant, Machine, Output};
use bytes::Bytes;

use crate::arg::{bytes_arg, c_string, fixed_str, str_arg, write_out};
use crate::digest::{berth_digest, BERTH_DIGEST_STRING_MAX};
use crate::handle::{box_out, free_box, last_error_out, CallHandle, CallState};
use crate::panic::ffi_panic_boundary;
use crate::result::berth_result;

/// `berth_op.open_flags` bit: open for writing as well as reading.
pub const BERTH_OPEN_WRITE: u32 = 1;
/// `berth_op.open_flags` bit: create the file if it does not exist (with `berth_op.mode`).
pub const BERTH_OPEN_CREATE: u32 = 2;
/// `berth_op.open_flags` bit: with `BERTH_OPEN_CREATE`, fail with `EEXIST` if the file exists.
pub const BERTH_OPEN_EXCLUSIVE: u32 = 4;
/// `berth_op.open_flags` bit: truncate the file to zero length.
pub const BERTH_OPEN_TRUNCATE: u32 = 8;

/// What `berth_ingest_poll` returned.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_output_kind {
    /// Nothing more until the next input: stop draining.
    BERTH_OUTPUT_NONE = 0,
    /// `berth_output.op` is an operation to perform; answer with `berth_ingest_complete`.
    BERTH_OUTPUT_OP = 1,
    /// An event to publish. The ingest has no events (it never returns this); part of the
    /// machine contract for other machines. Ignore it and keep draining.
    BERTH_OUTPUT_EVENT = 2,
    /// Feed an input no later than `berth_output.deadline_ns`. The ingest has no timers (it
    /// never returns this); part of the machine contract. Keep draining.
    BERTH_OUTPUT_WAIT = 3,
    /// The request in progress finished: see `berth_output.done`.
    BERTH_OUTPUT_DONE = 4,
}

/// The kind of a file operation. Paths are relative to a root directory the host owns and must
/// be resolved beneath it (e.g. `openat2` with `RESOLVE_BENEATH`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_op_kind {
    /// An operation these bindings cannot describe (newer core). Complete it with `ENOSYS`.
    BERTH_OP_UNSUPPORTED = 0,
    /// Create directory `path` and missing parents (`mkdir -p`) with `mode`. → DONE
    BERTH_OP_MKDIR = 1,
    /// Open file `path` with `open_flags` (and `mode` if created). → OPENED {handle, size}
    BERTH_OP_OPEN = 2,
    /// Write `data`/`data_len` at `offset` to `handle`; may write less. → WRITTEN {written}
    BERTH_OP_WRITE = 3,
    /// Read up to `len` bytes at `offset` from `handle` (fewer at end of file). → DATA
    BERTH_OP_READ = 4,
    /// Set the length of `handle`'s file to `len`. → DONE
    BERTH_OP_TRUNCATE = 5,
    /// Flush `handle`'s data and metadata to stable storage. → DONE
    BERTH_OP_FSYNC = 6,
    /// Flush directory `path` (after a rename into it). → DONE
    BERTH_OP_FSYNC_DIR = 7,
    /// Close `handle`. → DONE
    BERTH_OP_CLOSE = 8,
    /// Create or replace file `path` with `data`/`data_len` and `mode`. → DONE
    BERTH_OP_WRITE_FILE = 9,
    /// Read the whole small file `path`. → DATA
    BERTH_OP_READ_FILE = 10,
    /// Stat `path` without following a final symlink. → STAT {size, mode, mtime_ns}
    BERTH_OP_STAT = 11,
    /// Rename `path` (the source) to `to` atomically, replacing `to`. → DONE
    BERTH_OP_RENAME = 12,
    /// Remove file or empty directory `path`. → DONE
    BERTH_OP_REMOVE = 13,
    /// Remove the tree at `path`; a missing path is success. → DONE
    BERTH_OP_REMOVE_ALL = 14,
    /// List directory `path`. The ingest never asks for it and these bindings cannot return
    /// entries yet: complete it with `ENOSYS`.
    BERTH_OP_READ_DIR = 15,
}

/// Which request a successful `BERTH_OUTPUT_DONE` answers.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_reply_kind {
    /// The request failed: see `berth_done.result`.
    BERTH_REPLY_NONE = 0,
    /// `berth_ingest_open` finished: the ingest is ready; see `recovery`.
    BERTH_REPLY_OPENED = 1,
    /// A write or `set_total` finished; `status` has the new offset.
    BERTH_REPLY_STATUS = 2,
    /// The blob is committed: see `digest`, `size`, `already_present`.
    BERTH_REPLY_COMMITTED = 3,
    /// The ingest was aborted and its files removed.
    BERTH_REPLY_ABORTED = 4,
    /// Handles are closed; the ingest stays on disk and resumes when opened again.
    BERTH_REPLY_CLOSED = 5,
    /// A reply these bindings do not know (newer core).
    BERTH_REPLY_OTHER = 6,
}

/// How `berth_ingest_open` picked up the ingest directory.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_recovery {
    /// Not an open reply.
    BERTH_RECOVERY_NONE = 0,
    /// No ingest existed: a new one was started.
    BERTH_RECOVERY_CREATED = 1,
    /// An existing ingest resumed at `status.offset` from its hash checkpoint, without reading
    /// its data back; `recovery_discarded` bytes past the checkpoint were cut off.
    BERTH_RECOVERY_RESUMED = 2,
    /// An existing ingest was unusable and restarted from zero; `recovery_reason` says why.
    BERTH_RECOVERY_RESTARTED = 3,
    /// A recovery these bindings do not know (newer core).
    BERTH_RECOVERY_OTHER = 4,
}

/// The kind of a successful operation's output, in `berth_op_output.kind`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_op_output_kind {
    /// Success with nothing to return (MKDIR, TRUNCATE, FSYNC, FSYNC_DIR, CLOSE, WRITE_FILE,
    /// RENAME, REMOVE, REMOVE_ALL).
    BERTH_OP_OUTPUT_DONE = 0,
    /// OPEN: `handle` (the host's choice) and the file's `size` at open.
    BERTH_OP_OUTPUT_OPENED = 1,
    /// WRITE: `written` bytes were written.
    BERTH_OP_OUTPUT_WRITTEN = 2,
    /// READ, READ_FILE: the bytes at `data`/`data_len` (copied during the call).
    BERTH_OP_OUTPUT_DATA = 3,
    /// STAT: `size`, `mode` (with the `S_IFMT` file type bits) and `mtime_ns`.
    BERTH_OP_OUTPUT_STAT = 4,
}

/// A file operation for the host to perform. Only the fields its `kind` names are set; the rest
/// are zero or NULL. Pointers borrow from the ingest: valid until the next call that takes the
/// ingest as a non-`const` pointer.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_op {
    /// The ingest's id for this operation: pass it back to `berth_ingest_complete`.
    pub id: u64,
    /// What to do.
    pub kind: berth_op_kind,
    /// The path (the source, for RENAME): NUL-terminated, `path_len` bytes without the NUL.
    pub path: *const c_char,
    /// Length of `path` without the NUL.
    pub path_len: usize,
    /// RENAME's destination: NUL-terminated, `to_len` bytes without the NUL.
    pub to: *const c_char,
    /// Length of `to` without the NUL.
    pub to_len: usize,
    /// The open file (WRITE, READ, TRUNCATE, FSYNC, CLOSE), as returned by an OPEN.
    pub handle: u64,
    /// Byte offset in the file (WRITE, READ).
    pub offset: u64,
    /// READ: the most bytes to read. TRUNCATE: the new length.
    pub len: u64,
    /// The bytes to write (WRITE, WRITE_FILE).
    pub data: *const u8,
    /// Length of `data`.
    pub data_len: usize,
    /// Permission bits (MKDIR, WRITE_FILE, and OPEN with `BERTH_OPEN_CREATE`).
    pub mode: u32,
    /// OPEN: a set of `BERTH_OPEN_*` bits. Without `BERTH_OPEN_WRITE` the open is read-only.
    pub open_flags: u32,
}

impl berth_op {
    const EMPTY: berth_op = berth_op {
        id: 0,
        kind: berth_op_kind::BERTH_OP_UNSUPPORTED,
        path: std::ptr::null(),
        path_len: 0,
        to: std::ptr::null(),
        to_len: 0,
        handle: 0,
        offset: 0,
        len: 0,
        data: std::ptr::null(),
        data_len: 0,
        mode: 0,
        open_flags: 0,
    };
}

/// The status of an ingest, as containerd reports it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_status {
    /// The ingest's ref: NUL-terminated, valid until `berth_ingest_free`.
    pub reference: *const c_char,
    /// Length of `reference` without the NUL.
    pub reference_len: usize,
    /// Bytes written so far: the next write must start here (or at 0, to restart).
    pub offset: u64,
    /// The expected total size, 0 if unknown.
    pub total: u64,
    /// True if the ingest expects a digest (given at open, or stored by an earlier open).
    pub has_expected: bool,
    /// The expected digest as a NUL-terminated string; empty if `has_expected` is false.
    pub expected: [c_char; BERTH_DIGEST_STRING_MAX],
    /// When the ingest started, in nanoseconds since the Unix epoch.
    pub started_at_ns: u64,
    /// When it last changed, in nanoseconds since the Unix epoch.
    pub updated_at_ns: u64,
}

impl berth_status {
    const EMPTY: berth_status = berth_status {
        reference: std::ptr::null(),
        reference_len: 0,
        offset: 0,
        total: 0,
        has_expected: false,
        expected: [0; BERTH_DIGEST_STRING_MAX],
        started_at_ns: 0,
        updated_at_ns: 0,
    };
}

/// A finished request. Pointers borrow from the ingest like those of `berth_op`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_done {
    /// `BERTH_OK`, or why the request failed (`berth_ingest_last_error` has the text).
    pub result: berth_result,
    /// What succeeded; `BERTH_REPLY_NONE` on failure.
    pub reply: berth_reply_kind,
    /// For `BERTH_ERR_IO`: the errno of the host operation that failed; else 0.
    pub io_errno: i32,
    /// The ingest's status after the request.
    pub status: berth_status,
    /// OPENED: how the ingest was picked up.
    pub recovery: berth_recovery,
    /// OPENED with `BERTH_RECOVERY_RESUMED`: bytes past the checkpoint that were cut off.
    pub recovery_discarded: u64,
    /// OPENED with `BERTH_RECOVERY_RESTARTED`: why, NUL-terminated; else NULL.
    pub recovery_reason: *const c_char,
    /// Length of `recovery_reason` without the NUL.
    pub recovery_reason_len: usize,
    /// COMMITTED: the blob's digest as a NUL-terminated string; else empty.
    pub digest: [c_char; BERTH_DIGEST_STRING_MAX],
    /// COMMITTED: the blob's size.
    pub size: u64,
    /// COMMITTED: true if the blob was already in the store (the ingest's copy was dropped).
    pub already_present: bool,
}

impl berth_done {
    const EMPTY: berth_done = berth_done {
        result: berth_result::BERTH_OK,
        reply: berth_reply_kind::BERTH_REPLY_NONE,
        io_errno: 0,
        status: berth_status::EMPTY,
        recovery: berth_recovery::BERTH_RECOVERY_NONE,
        recovery_discarded: 0,
        recovery_reason: std::ptr::null(),
        recovery_reason_len: 0,
        digest: [0; BERTH_DIGEST_STRING_MAX],
        size: 0,
        already_present: false,
    };
}

/// One output of `berth_ingest_poll`: a tag and, for it, `op`, `deadline_ns` or `done`.
/// The other members are zero.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_output {
    /// Which member is meaningful.
    pub kind: berth_output_kind,
    /// `BERTH_OUTPUT_OP`: the operation.
    pub op: berth_op,
    /// `BERTH_OUTPUT_WAIT`: the deadline, in nanoseconds since the Unix epoch.
    pub deadline_ns: u64,
    /// `BERTH_OUTPUT_DONE`: the finished request.
    pub done: berth_done,
}

/// A successful operation's output, passed to `berth_ingest_complete`. Only the fields `kind`
/// names are read.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_op_output {
    /// A `berth_op_output_kind` value (an integer, so that any value is well defined; an
    /// unknown one gives `BERTH_ERR_INVALID`).
    pub kind: u32,
    /// OPENED: the host's handle for the file.
    pub handle: u64,
    /// OPENED: the file's length at open. STAT: the size.
    pub size: u64,
    /// WRITTEN: bytes written.
    pub written: u64,
    /// DATA: the bytes read (copied during the call; may be NULL when `data_len` is 0).
    pub data: *const u8,
    /// DATA: how many bytes.
    pub data_len: usize,
    /// STAT: mode bits including the file type (`S_IFMT`).
    pub mode: u32,
    /// STAT: modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
}

/// A resumable, digest-verified blob write (containerd's content writer), driven by the host.
/// Create it with `berth_ingest_open`, free it with `berth_ingest_free`.
pub struct berth_ingest {
    machine: Ingest,
    /// The ref, kept as a C string so `berth_status.reference` can point at it.
    reference: CString,
    /// Names of outstanding operations, for the `OpError` of a failed completion.
    op_names: HashMap<u64, &'static str>,
    /// Calls, failures and the storage behind the pointers of the last polled output.
    state: CallState<Lent>,
}

/// What the pointers of the last `berth_output` point into.
#[derive(Default)]
pub(crate) struct Lent {
    op: Option<Op>,
    path: Option<CString>,
    to: Option<CString>,
    reason: Option<CString>,
}

fn lend(s: &CString) -> (*const c_char, usize) {
    (s.as_ptr(), s.as_bytes().len())
}

impl CallHandle for berth_ingest {
    type Lent = Lent;
    const NAME: &'static str = "ingest";
    fn state(&self) -> &CallState<Lent> {
        &self.state
    }
    fn state_mut(&mut self) -> &mut CallState<Lent> {
        &mut self.state
    }
}

impl berth_ingest {
    fn fail(&mut self, e: &IngestError) -> berth_result {
        self.state.fail(e.into(), e.to_string())
    }

    fn handle(&mut self, now: u64, input: Input) -> berth_result {
        match self.machine.handle(Instant(now), input) {
            Ok(()) => berth_result::BERTH_OK,
            Err(e) => self.fail(&e),
        }
    }

    fn complete(&mut self, now: u64, op_id: u64, result: Result<OpOutput, i32>) -> berth_result {
        let op = self.op_names.get(&op_id).copied().unwrap_or("op");
        let result = result.map_err(|errno| OpError { op, errno });
        let completion = Completion {
            id: OpId(op_id),
            result,
        };
        match self.machine.handle(Instant(now), completion.into()) {
            Ok(()) => {
                self.op_names.remove(&op_id);
                berth_result::BERTH_OK
            }
            Err(e) => self.fail(&e),
        }
    }

    fn c_status(&self, s: &Status) -> berth_status {
        let (reference, reference_len) = lend(&self.reference);
        berth_status {
            reference,
            reference_len,
            offset: s.offset,
            total: s.total,
            has_expected: s.expected.is_some(),
            expected: fixed_str(&s.expected.map(|d| d.to_string()).unwrap_or_default()),
            started_at_ns: s.started_at.0,
            updated_at_ns: s.updated_at.0,
        }
    }

    fn poll(&mut self) -> berth_output {
        let mut out = berth_output {
            kind: berth_output_kind::BERTH_OUTPUT_NONE,
            op: berth_op::EMPTY,
            deadline_ns: 0,
            done: berth_done::EMPTY,
        };
        match self.machine.poll() {
            None => {}
            Some(Output::Event(())) => out.kind = berth_output_kind::BERTH_OUTPUT_EVENT,
            Some(Output::Wait(at)) => {
                out.kind = berth_output_kind::BERTH_OUTPUT_WAIT;
                out.deadline_ns = at.0;
            }
            Some(Output::Op(op)) => {
                out.kind = berth_output_kind::BERTH_OUTPUT_OP;
                out.op = self.lend_op(op);
            }
            Some(Output::Done(result)) => {
                out.kind = berth_output_kind::BERTH_OUTPUT_DONE;
                out.done = self.lend_done(result);
            }
        }
        out
    }

    fn lend_op(&mut self, op: Op) -> berth_op {
        self.op_names.insert(op.id.0, op.kind.name());
        let mut c = berth_op {
            id: op.id.0,
            ..berth_op::EMPTY
        };
        let mut path: Option<&str> = None;
        let mut to: Option<&str> = None;
        match &op.kind {
            OpKind::Mkdir { path: p, mode } => {
                c.kind = berth_op_kind::BERTH_OP_MKDIR;
                path = Some(p);
                c.mode = *mode;
            }
            OpKind::Open { path: p, options } => {
                c.kind = berth_op_kind::BERTH_OP_OPEN;
                path = Some(p);
                c.mode = options.mode;
                c.open_flags = [
                    (options.write, BERTH_OPEN_WRITE),
                    (options.create, BERTH_OPEN_CREATE),
                    (options.exclusive, BERTH_OPEN_EXCLUSIVE),
                    (options.truncate, BERTH_OPEN_TRUNCATE),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .fold(0, |flags, (_, bit)| flags | bit);
            }
            OpKind::Write {
                handle,
                offset,
                data,
            } => {
                c.kind = berth_op_kind::BERTH_OP_WRITE;
                c.handle = handle.0;
                c.offset = *offset;
                // `Bytes` keeps its buffer in place when the `Op` moves into `self.state.lent`.
                (c.data, c.data_len) = (data.as_ptr(), data.len());
            }
            OpKind::Read {
                handle,
                offset,
                len,
            } => {
                c.kind = berth_op_kind::BERTH_OP_READ;
                c.handle = handle.0;
                c.offset = *offset;
                c.len = u64::from(*len);
            }
            OpKind::Truncate { handle, len } => {
                c.kind = berth_op_kind::BERTH_OP_TRUNCATE;
                c.handle = handle.0;
                c.len = *len;
            }
            OpKind::Fsync { handle } => {
                c.kind = berth_op_kind::BERTH_OP_FSYNC;
                c.handle = handle.0;
            }
            OpKind::FsyncDir { path: p } => {
                c.kind = berth_op_kind::BERTH_OP_FSYNC_DIR;
                path = Some(p);
            }
            OpKind::Close { handle } => {
                c.kind = berth_op_kind::BERTH_OP_CLOSE;
                c.handle = handle.0;
            }
            OpKind::WriteFile {
                path: p,
                data,
                mode,
            } => {
                c.kind = berth_op_kind::BERTH_OP_WRITE_FILE;
                path = Some(p);
                c.mode = *mode;
                (c.data, c.data_len) = (data.as_ptr(), data.len());
            }
            OpKind::ReadFile { path: p } => {
                c.kind = berth_op_kind::BERTH_OP_READ_FILE;
                path = Some(p);
            }
            OpKind::Stat { path: p } => {
                c.kind = berth_op_kind::BERTH_OP_STAT;
                path = Some(p);
            }
            OpKind::Rename { from, to: t } => {
                c.kind = berth_op_kind::BERTH_OP_RENAME;
                path = Some(from);
                to = Some(t);
            }
            OpKind::Remove { path: p } => {
                c.kind = berth_op_kind::BERTH_OP_REMOVE;
                path = Some(p);
            }
            OpKind::RemoveAll { path: p } => {
                c.kind = berth_op_kind::BERTH_OP_REMOVE_ALL;
                path = Some(p);
            }
            OpKind::ReadDir { path: p } => {
                c.kind = berth_op_kind::BERTH_OP_READ_DIR;
                path = Some(p);
            }
            _ => c.kind = berth_op_kind::BERTH_OP_UNSUPPORTED,
        }
        let path = path.map(c_string);
        let to = to.map(c_string);
        if let Some(p) = &path {
            (c.path, c.path_len) = lend(p);
        }
        if let Some(t) = &to {
            (c.to, c.to_len) = lend(t);
        }
        // Moving the owners does not move their heap buffers, so the pointers above stay valid.
        self.state.lent.op = Some(op);
        self.state.lent.path = path;
        self.state.lent.to = to;
        c
    }

    fn lend_done(&mut self, result: Result<Reply, IngestError>) -> berth_done {
        let mut done = berth_done {
            status: self.c_status(&self.machine.status()),
            ..berth_done::EMPTY
        };
        match result {
            Ok(Reply::Opened { status, recovery }) => {
                done.reply = berth_reply_kind::BERTH_REPLY_OPENED;
                done.status = self.c_status(&status);
                done.recovery = match recovery {
                    Recovery::Created => berth_recovery::BERTH_RECOVERY_CREATED,
                    Recovery::Resumed { discarded, .. } => {
                        done.recovery_discarded = discarded;
                        berth_recovery::BERTH_RECOVERY_RESUMED
                    }
                    Recovery::Restarted { reason } => {
                        let reason = c_string(&reason);
                        (done.recovery_reason, done.recovery_reason_len) = lend(&reason);
                        self.state.lent.reason = Some(reason);
                        berth_recovery::BERTH_RECOVERY_RESTARTED
                    }
                    _ => berth_recovery::BERTH_RECOVERY_OTHER,
                };
            }
            Ok(Reply::Status(status)) => {
                done.reply = berth_reply_kind::BERTH_REPLY_STATUS;
                done.status = self.c_status(&status);
            }
            Ok(Reply::Committed {
                digest,
                size,
                already_present,
            }) => {
                done.reply = berth_reply_kind::BERTH_REPLY_COMMITTED;
                done.digest = fixed_str(&digest.to_string());
                done.size = size;
                done.already_present = already_present;
            }
            Ok(Reply::Aborted) => done.reply = berth_reply_kind::BERTH_REPLY_ABORTED,
            Ok(Reply::Closed) => done.reply = berth_reply_kind::BERTH_REPLY_CLOSED,
            Ok(_) => done.reply = berth_reply_kind::BERTH_REPLY_OTHER,
            Err(e) => {
                if let IngestError::Io { error, .. } = &e {
                    done.io_errno = error.errno;
                }
                done.result = self.fail(&e);
            }
        }
        done
    }
}

/// Reads an optional digest argument.
///
/// # Safety
///
/// `d` is NULL or a live digest.
unsafe fn opt_digest(d: *const berth_digest) -> Option<Digest> {
    // SAFETY: the caller promises `d` is NULL or a live digest.
    unsafe { d.as_ref() }.map(|d| d.digest)
}

/// Opens the ingest at `dir` for `reference`: resumes the one stored there, or starts a new one.
///
/// `namespace_name` and `reference` identify it (containerd's namespace and ref); `expected` is
/// the digest the client expects, or NULL; `total` the expected size, or 0. `dir` is the
/// ingest's own directory and `blobs_dir` the root of committed blobs (a blob lands at
/// `<blobs_dir>/<algorithm>/<hex>`), both relative to the host's root. `expected` is copied.
///
/// On success `*out` is the new ingest (free it with `berth_ingest_free`), and it has already
/// queued its first operation: drain `berth_ingest_poll` now; the open ends with a
/// `BERTH_OUTPUT_DONE` whose reply is `BERTH_REPLY_OPENED`. On failure `*out` is NULL.
///
/// # Safety
///
/// The strings are NULL or NUL-terminated; `expected` is NULL or a live digest; `out` is NULL or
/// valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_ingest_open(
    now_ns: u64,
    namespace_name: *const c_char,
    reference: *const c_char,
    expected: *const berth_digest,
    total: u64,
    dir: *const c_char,
    blobs_dir: *const c_char,
    out: *mut *mut berth_ingest,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `out` is NULL or valid for a pointer write.
        try_ok!(unsafe { write_out(out, std::ptr::null_mut()) });
        // SAFETY: the caller promises each string is NULL or NUL-terminated.
        let namespace_name = try_ok!(unsafe { str_arg(namespace_name) });
        // SAFETY: as above.
        let reference = try_ok!(unsafe { str_arg(reference) });
        // SAFETY: as above.
        let dir = try_ok!(unsafe { str_arg(dir) });
        // SAFETY: as above.
        let blobs_dir = try_ok!(unsafe { str_arg(blobs_dir) });
        // SAFETY: the caller promises `expected` is NULL or a live digest.
        let expected = unsafe { opt_digest(expected) };
        let req = OpenRequest {
            namespace: namespace_name.to_owned(),
            reference: reference.to_owned(),
            expected,
            total,
            paths: IngestPaths {
                dir: dir.to_owned(),
                blobs: blobs_dir.to_owned(),
            },
        };
        let ingest = berth_ingest {
            machine: Ingest::open(Instant(now_ns), req),
            reference: c_string(reference),
            op_names: HashMap::new(),
            state: CallState::default(),
        };
        // SAFETY: checked non-NULL and valid above.
        unsafe { box_out(out, ingest) }
    })
}

/// Takes the ingest's next output into `*out` (see `berth_output`). Call it after every input
/// until it gives `BERTH_OUTPUT_NONE`. The pointers in `*out` stay valid until the next call
/// that takes the ingest as a non-`const` pointer (this one included).
///
/// # Safety
///
/// `ingest` is NULL or a live ingest; `out` is NULL or valid for a write of a `berth_output`.
#[no_mangle]
pub unsafe extern "C" fn berth_ingest_poll(
    ingest: *mut berth_ingest,
    out: *mut berth_output,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `ingest` is NULL or a live ingest, used by one thread.
        let ingest = try_some!(unsafe { ingest.as_mut() });
        if out.is_null() {
            return berth_result::BERTH_ERR_NULL;
        }
        ingest.call(|ingest| {
            let output = ingest.poll();
            // SAFETY: `out` is not NULL, and the caller promises it is valid for a write.
            try_ok!(unsafe { write_out(out, output) });
            berth_result::BERTH_OK
        })
    })
}

/// Returns the outcome of operation `op_id` (from a polled `berth_op`) to the ingest.
///
/// `error` is the host's errno (positive) if the operation failed, or 0 if it succeeded, in
/// which case `output` describes the result (its kind must match the operation, see
/// `berth_op_kind`); `output` is not read when `error` is not 0 and may then be NULL.
/// DATA bytes are copied. Drain `berth_ingest_poll` afterwards.
///
/// Returns `BERTH_ERR_UNEXPECTED_COMPLETION` for an id that is not outstanding, and
/// `BERTH_ERR_PROTOCOL` when the output's kind does not fit the operation.
///
/// # Safety
///
/// `ingest` is NULL or a live ingest; `output` is NULL or a valid `berth_op_output` whose
/// `data` is NULL or valid for `data_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn berth_ingest_complete(
    ingest: *mut berth_ingest,
    now_ns: u64,
    op_id: u64,
    error: i32,
    output: *const berth_op_output,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `ingest` is NULL or a live ingest, used by one thread.
        let ingest = try_some!(unsafe { ingest.as_mut() });
        ingest.call(|ingest| {
            if error != 0 {
                return ingest.complete(now_ns, op_id, Err(error));
            }
            // SAFETY: the caller promises `output` is NULL or a valid `berth_op_output`; all its
            // fields are integers or pointers, valid for any bit pattern.
            let o = try_some!(unsafe { output.as_ref() });
            let output = match o.kind {
                k if k == berth_op_output_kind::BERTH_OP_OUTPUT_DONE as u32 => OpOutput::Done,
                k if k == berth_op_output_kind::BERTH_OP_OUTPUT_OPENED as u32 => OpOutput::Opened {
                    handle: Handle(o.handle),
                    size: o.size,
                },
                k if k == berth_op_output_kind::BERTH_OP_OUTPUT_WRITTEN as u32 => {
                    OpOutput::Written(o.written)
                }
                k if k == berth_op_output_kind::BERTH_OP_OUTPUT_DATA as u32 => {
                    // SAFETY: the caller promises `data` is NULL or valid for `data_len` bytes.
                    let data = try_ok!(unsafe { bytes_arg(o.data, o.data_len) });
                    OpOutput::Data(Bytes::copy_from_slice(data))
                }
                k if k == berth_op_output_kind::BERTH_OP_OUTPUT_STAT as u32 => {
                    OpOutput::Stat(FileStat {
                        size: o.size,
                        mode: o.mode,
                        mtime: Instant(o.mtime_ns),
                    })
                }
                other => {
                    return ingest.state.fail(
                        berth_result::BERTH_ERR_INVALID,
                        format!("unknown berth_op_output_kind {other}"),
                    );
                }
            };
            ingest.complete(now_ns, op_id, Ok(output))
        })
    })
}

/// Writes `len` bytes at `data` (copied) at `offset`, which must be the ingest's current offset,
/// or 0 to restart it. Drain `berth_ingest_poll`; the write ends with a DONE whose reply is
/// `BERTH_REPLY_STATUS`. A wrong offset gives `BERTH_ERR_OUT_OF_RANGE` and changes nothing.
///
/// # Safety
///
/// `ingest` is NULL or a live ingest; `data` is NULL or valid for reads of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn berth_ingest_write(
    ingest: *mut berth_ingest,
    now_ns: u64,
    offset: u64,
    data: *const u8,
    len: usize,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `ingest` is NULL or a live ingest, used by one thread.
        let ingest = try_some!(unsafe { ingest.as_mut() });
        // SAFETY: the caller promises `data` is NULL or valid for `len` bytes.
        let data = try_ok!(unsafe { bytes_arg(data, len) });
        let data = Bytes::copy_from_slice(data);
        ingest.call(|ingest| ingest.handle(now_ns, Input::Write { offset, data }))
    })
}

/// Updates the expected total size (no file operation; the DONE follows at once).
///
/// # Safety
///
/// `ingest` is NULL or a live ingest.
#[no_mangle]
pub unsafe extern "C" fn berth_ingest_set_total(
    ingest: *mut berth_ingest,
    now_ns: u64,
    total: u64,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `ingest` is NULL or a live ingest, used by one thread.
        let ingest = try_some!(unsafe { ingest.as_mut() });
        ingest.call(|ingest| ingest.handle(now_ns, Input::SetTotal(total)))
    })
}

/// Commits the ingest: checks `size` (unless 0) and the digest (`expected`, or else the one
/// given at open, if any) against the bytes written, then moves the data to its blob path.
/// Drain `berth_ingest_poll`; the DONE has reply `BERTH_REPLY_COMMITTED`, or
/// `BERTH_ERR_SIZE_MISMATCH` / `BERTH_ERR_DIGEST_MISMATCH` after the ingest's files were
/// removed. `expected` may be NULL and is copied.
///
/// # Safety
///
/// `ingest` is NULL or a live ingest; `expected` is NULL or a live digest.
#[no_mangle]
pub unsafe extern "C" fn berth_ingest_commit(
    ingest: *mut berth_ingest,
    now_ns: u64,
    size: u64,
    expected: *const berth_digest,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `ingest` is NULL or a live ingest, used by one thread.
        let ingest = try_some!(unsafe { ingest.as_mut() });
        // SAFETY: the caller promises `expected` is NULL or a live digest.
        let expected = unsafe { opt_digest(expected) };
        ingest.call(|ingest| ingest.handle(now_ns, Input::Commit { size, expected }))
    })
}

/// Aborts the ingest: closes its files and removes its directory. Drain `berth_ingest_poll`;
/// the DONE has reply `BERTH_REPLY_ABORTED`.
///
/// # Safety
///
/// `ingest` is NULL or a live ingest.
#[no_mangle]
pub unsafe extern "C" fn berth_ingest_abort(
    ingest: *mut berth_ingest,
    now_ns: u64,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `ingest` is NULL or a live ingest, used by one thread.
        let ingest = try_some!(unsafe { ingest.as_mut() });
        ingest.call(|ingest| ingest.handle(now_ns, Input::Abort))
    })
}

/// Closes the ingest's file handles, leaving it on disk to be resumed by a later open. Drain
/// `berth_ingest_poll`; the DONE has reply `BERTH_REPLY_CLOSED`.
///
/// # Safety
///
/// `ingest` is NULL or a live ingest.
#[no_mangle]
pub unsafe extern "C" fn berth_ingest_close(
    ingest: *mut berth_ingest,
    now_ns: u64,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `ingest` is NULL or a live ingest, used by one thread.
        let ingest = try_some!(unsafe { ingest.as_mut() });
        ingest.call(|ingest| ingest.handle(now_ns, Input::Close))
    })
}

/// Writes the ingest's current status into `*out`. `out->reference` stays valid until
/// `berth_ingest_free`.
///
/// # Safety
///
/// `ingest` is NULL or a live ingest; `out` is NULL or valid for a write of a `berth_status`.
#[no_mangle]
pub unsafe extern "C" fn berth_ingest_status(
    ingest: *const berth_ingest,
    out: *mut berth_status,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `ingest` is NULL or a live ingest.
        let ingest = try_some!(unsafe { ingest.as_ref() });
        try_ok!(ingest.state.usable());
        let status = ingest.c_status(&ingest.machine.status());
        // SAFETY: the caller promises `out` is NULL or valid for a write.
        try_ok!(unsafe { write_out(out, status) });
        berth_result::BERTH_OK
    })
}

/// Copies the text of the ingest's last failure (a refused input, or a DONE with an error) into
/// `buf`, with the values involved (offsets, expected and actual digests, errno, path). The
/// text is empty if nothing has failed yet. Buffer rules as for `berth_digest_to_string`:
/// `*written` gets the length without the NUL; `BERTH_ERR_BUFFER_TOO_SMALL` copies nothing.
///
/// # Safety
///
/// `ingest` is NULL or a live ingest; `buf` is NULL or valid for writes of `len` bytes;
/// `written` is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn berth_ingest_last_error(
    ingest: *const berth_ingest,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    // SAFETY: the caller promises `ingest` is NULL or a live ingest, and `buf`/`len` and
    // `written` valid or NULL.
    unsafe { last_error_out(ingest, buf, len, written) }
}

/// Frees the ingest. NULL is a no-op. Freeing does not close files or remove anything: an ingest
/// freed without `berth_ingest_close` is exactly a crash, and resumes when opened again. The
/// host closes any handles it still has open for it.
///
/// # Safety
///
/// `ingest` is NULL or was returned by `berth_ingest_open` and not freed yet. It must not be
/// used after.
#[no_mangle]
pub unsafe extern "C" fn berth_ingest_free(ingest: *mut berth_ingest) {
    // SAFETY: the caller promises `ingest` is NULL or came from `berth_ingest_open` (`box_out`)
    // and is freed once.
    unsafe { free_box(ingest) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::ptr::{null, null_mut};

    const NOW: u64 = 1_700_000_000_000_000_000;
    const ENOENT: i32 = 2;

    fn open() -> *mut berth_ingest {
        let mut ing = null_mut();
        // SAFETY: literals are NUL-terminated; `ing` is a valid local.
        let r = unsafe {
            berth_ingest_open(
                NOW,
                c"default".as_ptr(),
                c"ref-1".as_ptr(),
                null(),
                0,
                c"ingest/a".as_ptr(),
                c"blobs".as_ptr(),
                &mut ing,
            )
        };
        assert_eq!(r, berth_result::BERTH_OK);
        assert!(!ing.is_null());
        ing
    }

    fn poll(ing: *mut berth_ingest) -> berth_output {
        let mut out = std::mem::MaybeUninit::<berth_output>::uninit();
        // SAFETY: `ing` is live; `out` is valid for a write.
        let r = unsafe { berth_ingest_poll(ing, out.as_mut_ptr()) };
        assert_eq!(r, berth_result::BERTH_OK);
        // SAFETY: a successful poll wrote the whole struct.
        unsafe { out.assume_init() }
    }

    /// Answers each operation the way a fresh, empty host would, without keeping file contents.
    fn answer(op: &berth_op) -> (i32, berth_op_output) {
        let mut o = berth_op_output {
            kind: berth_op_output_kind::BERTH_OP_OUTPUT_DONE as u32,
            handle: 0,
            size: 0,
            written: 0,
            data: null(),
            data_len: 0,
            mode: 0,
            mtime_ns: 0,
        };
        let err = match op.kind {
            berth_op_kind::BERTH_OP_READ_FILE | berth_op_kind::BERTH_OP_STAT => ENOENT,
            berth_op_kind::BERTH_OP_OPEN => {
                o.kind = berth_op_output_kind::BERTH_OP_OUTPUT_OPENED as u32;
                o.handle = op.id + 100;
                0
            }
            berth_op_kind::BERTH_OP_WRITE => {
                o.kind = berth_op_output_kind::BERTH_OP_OUTPUT_WRITTEN as u32;
                o.written = op.data_len as u64;
                0
            }
            _ => 0,
        };
        (err, o)
    }

    /// Drains the ingest, answering operations, until the request's DONE.
    fn run(ing: *mut berth_ingest) -> berth_done {
        loop {
            let out = poll(ing);
            match out.kind {
                berth_output_kind::BERTH_OUTPUT_OP => {
                    let (err, o) = answer(&out.op);
                    // SAFETY: `ing` is live; `o` is a valid local.
                    let r = unsafe { berth_ingest_complete(ing, NOW, out.op.id, err, &o) };
                    assert_eq!(r, berth_result::BERTH_OK);
                }
                berth_output_kind::BERTH_OUTPUT_DONE => return out.done,
                berth_output_kind::BERTH_OUTPUT_NONE => panic!("went quiet without a DONE"),
                _ => {}
            }
        }
    }

    fn last_error(ing: *const berth_ingest) -> String {
        let mut buf = [0 as c_char; 512];
        // SAFETY: `ing` is live; `buf` is 512 writable bytes.
        let r = unsafe { berth_ingest_last_error(ing, buf.as_mut_ptr(), buf.len(), null_mut()) };
        assert_eq!(r, berth_result::BERTH_OK);
        // SAFETY: NUL-terminated by the successful call.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn open_lends_nul_terminated_paths_and_reaches_ready() {
        let ing = open();
        let out = poll(ing);
        assert_eq!(out.kind, berth_output_kind::BERTH_OUTPUT_OP);
        assert_eq!(out.op.kind, berth_op_kind::BERTH_OP_READ_FILE);
        // SAFETY: `path` is lent NUL-terminated until the next call on `ing`.
        let path = unsafe { CStr::from_ptr(out.op.path) };
        assert_eq!(path.to_bytes(), b"ingest/a/meta");
        assert_eq!(out.op.path_len, path.to_bytes().len());
        assert!(out.op.to.is_null());
        // SAFETY: `ing` is live.
        let r = unsafe { berth_ingest_complete(ing, NOW, out.op.id, ENOENT, null()) };
        assert_eq!(r, berth_result::BERTH_OK);
        let done = run(ing);
        assert_eq!(done.result, berth_result::BERTH_OK);
        assert_eq!(done.reply, berth_reply_kind::BERTH_REPLY_OPENED);
        assert_eq!(done.recovery, berth_recovery::BERTH_RECOVERY_CREATED);
        // SAFETY: the reference stays valid until free.
        let reference = unsafe { CStr::from_ptr(done.status.reference) };
        assert_eq!(reference.to_bytes(), b"ref-1");
        assert_eq!(poll(ing).kind, berth_output_kind::BERTH_OUTPUT_NONE);
        // SAFETY: `ing` is live and freed once.
        unsafe { berth_ingest_free(ing) };
    }

    #[test]
    fn refused_write_changes_nothing_and_explains_itself() {
        let ing = open();
        assert_eq!(run(ing).reply, berth_reply_kind::BERTH_REPLY_OPENED);
        assert_eq!(last_error(ing), "");
        // SAFETY: `ing` is live; the data is 3 readable bytes.
        let r = unsafe { berth_ingest_write(ing, NOW, 0, b"abc".as_ptr(), 3) };
        assert_eq!(r, berth_result::BERTH_OK);
        assert_eq!(run(ing).status.offset, 3);
        // SAFETY: as above.
        let r = unsafe { berth_ingest_write(ing, NOW, 7, b"def".as_ptr(), 3) };
        assert_eq!(r, berth_result::BERTH_ERR_OUT_OF_RANGE);
        assert_eq!(poll(ing).kind, berth_output_kind::BERTH_OUTPUT_NONE);
        assert!(last_error(ing).contains("offset 7"), "{}", last_error(ing));
        let mut st = std::mem::MaybeUninit::<berth_status>::uninit();
        // SAFETY: `ing` is live; `st` is valid for a write.
        let r = unsafe { berth_ingest_status(ing, st.as_mut_ptr()) };
        assert_eq!(r, berth_result::BERTH_OK);
        // SAFETY: a successful call wrote the whole struct.
        assert_eq!(unsafe { st.assume_init() }.offset, 3);
        // SAFETY: `ing` is live and freed once.
        unsafe { berth_ingest_free(ing) };
    }

    #[test]
    fn completions_are_checked_for_kind_and_id() {
        let ing = open();
        let op = poll(ing).op;
        let (_, mut o) = answer(&op);
        o.kind = 99;
        // SAFETY: `ing` is live; `o` a valid local.
        let r = unsafe { berth_ingest_complete(ing, NOW, op.id, 0, &o) };
        assert_eq!(r, berth_result::BERTH_ERR_INVALID);
        assert!(last_error(ing).contains("99"));
        // SAFETY: as above.
        let r = unsafe { berth_ingest_complete(ing, NOW, op.id + 1000, ENOENT, null()) };
        assert_eq!(r, berth_result::BERTH_ERR_UNEXPECTED_COMPLETION);
        // SAFETY: success without an output is refused before anything is read.
        let r = unsafe { berth_ingest_complete(ing, NOW, op.id, 0, null()) };
        assert_eq!(r, berth_result::BERTH_ERR_NULL);
        // the operation is still outstanding and completes normally
        // SAFETY: as above.
        let r = unsafe { berth_ingest_complete(ing, NOW, op.id, ENOENT, null()) };
        assert_eq!(r, berth_result::BERTH_OK);
        assert_eq!(run(ing).reply, berth_reply_kind::BERTH_REPLY_OPENED);
        // SAFETY: `ing` is live and freed once.
        unsafe { berth_ingest_free(ing) };
    }

    #[test]
    fn a_panic_is_caught_and_poisons_the_ingest() {
        let ing = open();
        // SAFETY: `ing` is live and not in use.
        unsafe { (*ing).state.panic_on_next_call = true };
        let mut out = std::mem::MaybeUninit::<berth_output>::uninit();
        // SAFETY: `ing` is live; `out` valid for a write.
        let r = unsafe { berth_ingest_poll(ing, out.as_mut_ptr()) };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        // SAFETY: as above; every later call is refused.
        let r = unsafe { berth_ingest_poll(ing, out.as_mut_ptr()) };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        // SAFETY: `ing` is live.
        let r = unsafe { berth_ingest_abort(ing, NOW) };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        let mut st = std::mem::MaybeUninit::<berth_status>::uninit();
        // SAFETY: `ing` is live; `st` valid for a write.
        let r = unsafe { berth_ingest_status(ing, st.as_mut_ptr()) };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        assert!(last_error(ing).contains("panicked"));
        // SAFETY: `ing` is live and freed once; freeing a poisoned ingest is allowed.
        unsafe { berth_ingest_free(ing) };
    }

    #[test]
    fn null_arguments_are_refused() {
        let n: *mut berth_ingest = null_mut();
        let mut out = std::mem::MaybeUninit::<berth_output>::uninit();
        let mut st = std::mem::MaybeUninit::<berth_status>::uninit();
        let o = answer(&berth_op::EMPTY).1;
        // SAFETY: every function accepts NULL for its pointers and refuses it before use.
        unsafe {
            assert_eq!(
                berth_ingest_poll(n, out.as_mut_ptr()),
                berth_result::BERTH_ERR_NULL
            );
            assert_eq!(
                berth_ingest_complete(n, NOW, 0, 0, &o),
                berth_result::BERTH_ERR_NULL
            );
            assert_eq!(
                berth_ingest_write(n, NOW, 0, b"x".as_ptr(), 1),
                berth_result::BERTH_ERR_NULL
            );
            assert_eq!(
                berth_ingest_set_total(n, NOW, 1),
                berth_result::BERTH_ERR_NULL
            );
            assert_eq!(
                berth_ingest_commit(n, NOW, 0, null()),
                berth_result::BERTH_ERR_NULL
            );
            assert_eq!(berth_ingest_abort(n, NOW), berth_result::BERTH_ERR_NULL);
            assert_eq!(berth_ingest_close(n, NOW), berth_result::BERTH_ERR_NULL);
            assert_eq!(
                berth_ingest_status(n, st.as_mut_ptr()),
                berth_result::BERTH_ERR_NULL
            );
            assert_eq!(
                berth_ingest_last_error(n, null_mut(), 0, null_mut()),
                berth_result::BERTH_ERR_NULL
            );
            berth_ingest_free(n);
        }

        let mut ing = std::ptr::dangling_mut::<berth_ingest>();
        let s = c"x".as_ptr();
        // SAFETY: NULL strings are refused before use; `ing` is a valid local.
        unsafe {
            for args in [
                [null(), s, s, s],
                [s, null(), s, s],
                [s, s, null(), s],
                [s, s, s, null()],
            ] {
                let r =
                    berth_ingest_open(NOW, args[0], args[1], null(), 0, args[2], args[3], &mut ing);
                assert_eq!(r, berth_result::BERTH_ERR_NULL);
                assert!(ing.is_null());
            }
            let r = berth_ingest_open(NOW, s, s, null(), 0, s, s, null_mut());
            assert_eq!(r, berth_result::BERTH_ERR_NULL);
        }

        // A NULL out-pointer for poll or status consumes nothing.
        let ing = open();
        // SAFETY: `ing` is live; NULL out is refused before the machine is touched.
        unsafe {
            assert_eq!(
                berth_ingest_poll(ing, null_mut()),
                berth_result::BERTH_ERR_NULL
            );
            assert_eq!(
                berth_ingest_status(ing, null_mut()),
                berth_result::BERTH_ERR_NULL
            );
            // a write with NULL data and a length
            assert_eq!(
                berth_ingest_write(ing, NOW, 0, null(), 4),
                berth_result::BERTH_ERR_NULL
            );
        }
        assert_eq!(poll(ing).op.kind, berth_op_kind::BERTH_OP_READ_FILE);
        // SAFETY: `ing` is live and freed once.
        unsafe { berth_ingest_free(ing) };
    }

    #[test]
    fn non_utf8_strings_are_invalid() {
        let mut ing = null_mut();
        let bad = b"\xff\0";
        // SAFETY: all strings are NUL-terminated; `ing` is a valid local.
        let r = unsafe {
            berth_ingest_open(
                NOW,
                c"default".as_ptr(),
                bad.as_ptr().cast(),
                null(),
                0,
                c"d".as_ptr(),
                c"b".as_ptr(),
                &mut ing,
            )
        };
        assert_eq!(r, berth_result::BERTH_ERR_INVALID);
        assert!(ing.is_null());
    }
}
