//! The task table for C: containerd's task and exec-process lifecycle as a pure machine behind
//! an opaque handle, with every runtime call handed to the host.
//!
//! A [`berth_task_table`] wraps `berth_core::task::TaskTable` and keeps its rules word for
//! word; this layer adds translation (C strings and flat structs in and out, result codes)
//! and the storage behind the pointers it lends. A host drives it as the core's module docs
//! say:
//!
//! 1. A Tasks request: call its function (`berth_task_create`, `_start`, `_kill`, `_pause`,
//!    `_resume`, `_exec`, `_close_io`, `_resize_pty`, `_delete`, `_delete_process`). A refusal
//!    returns its code at once and changes nothing (the gRPC code is in
//!    `berth_task_table_last_error_code`, the text in `berth_task_table_last_error`).
//!    Otherwise `*call` is the runtime call to make — or has kind `BERTH_TASK_CALL_NONE` when
//!    the request is answered already (`CloseIO` without stdin, `ResizePty` without a
//!    terminal). `berth_task_wait`, `berth_task_get` and `berth_task_list` answer at once.
//! 2. Make the call; report `berth_task_runtime_ok` (with the pid for CREATE and START) or
//!    `berth_task_runtime_failed` (with the gRPC code to answer, e.g. 13 INTERNAL or
//!    14 UNAVAILABLE).
//! 3. Report what the world does: `berth_task_exited`, `berth_task_oom`,
//!    `berth_task_runtime_crashed`.
//! 4. After every call of 2 and 3, drain `berth_task_poll` until `BERTH_TASK_OUTPUT_NONE`:
//!    events to publish, finished requests (`DONE`, by call id) and answered Waits
//!    (`WAIT_DONE`, by wait id).
//! 5. Persist with `berth_task_table_save` whenever `berth_task_table_generation` changes; after
//!    a restart, `berth_task_table_load`, then `berth_task_restarted` with the processes found
//!    alive, then report an exit (or a crash) for each unaccounted process it returns and
//!    remove each orphan.
//!
//! Refusals map to codes as containerd maps them to gRPC codes: `BERTH_ERR_NOT_FOUND`,
//! `BERTH_ERR_ALREADY_EXISTS`, `BERTH_ERR_FAILED_PRECONDITION`, `BERTH_ERR_INVALID`
//! (InvalidArgument); gRPC UNAVAILABLE (busy, runtime unreachable or dead) is
//! `BERTH_ERR_BUSY`; a failed runtime call with INTERNAL is `BERTH_ERR_IO`; driver mistakes
//! are `BERTH_ERR_UNEXPECTED_COMPLETION` (an unknown call id) and `BERTH_ERR_PROTOCOL` (a
//! missing pid, another pid). Strings lent in a call, event, reply or process are
//! NUL-terminated, never NULL (empty when absent), and valid until the next call that takes
//! the table as a non-`const` pointer; an exec id given as NULL or `""` means the init.

use std::ffi::{c_char, c_void, CString};

use berth_core::snapshot::Mount;
use berth_core::task::{
    Accepted, CallId, CallKind, Code, Command, CreateTask, EventPayload, ExecProcess, Found,
    FoundState, Output, ProcessExit, ProcessInfo, Reply, RuntimeCall, RuntimeFailure, Status,
    Stdio, TaskError, TaskTable, WaitId, WaitResult,
};
use berth_core::Instant;

use crate::arg::{bytes_arg, keep, slice_arg, str_arg, write_out, write_str};
use crate::handle::{
    box_out, free_box, last_error_out, list_get, list_len, CallHandle, CallState, List,
};
use crate::panic::ffi_panic_boundary;
use crate::result::berth_result;
use crate::snapshot::berth_mount;

/// The status of a task or process, with containerd's numbers (`containerd.v1.types.Status`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_task_status {
    /// Not known.
    BERTH_TASK_UNKNOWN = 0,
    /// Created, not started.
    BERTH_TASK_CREATED = 1,
    /// Running.
    BERTH_TASK_RUNNING = 2,
    /// Exited.
    BERTH_TASK_STOPPED = 3,
    /// Frozen (an exec of a paused task is reported paused too).
    BERTH_TASK_PAUSED = 4,
    /// A pause is in progress.
    BERTH_TASK_PAUSING = 5,
}

impl From<Status> for berth_task_status {
    fn from(s: Status) -> Self {
        match s {
            Status::Created => berth_task_status::BERTH_TASK_CREATED,
            Status::Running => berth_task_status::BERTH_TASK_RUNNING,
            Status::Stopped => berth_task_status::BERTH_TASK_STOPPED,
            Status::Paused => berth_task_status::BERTH_TASK_PAUSED,
            Status::Pausing => berth_task_status::BERTH_TASK_PAUSING,
            _ => berth_task_status::BERTH_TASK_UNKNOWN,
        }
    }
}

/// What a `berth_task_call` asks of the runtime.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_task_call_kind {
    /// No call: the request is answered already.
    BERTH_TASK_CALL_NONE = 0,
    /// Create the container's init (`runc create`) in `bundle`, with the rootfs given to
    /// `berth_task_create` mounted and the IO opened; report its pid.
    BERTH_TASK_CALL_CREATE = 1,
    /// Start the init (`runc start`) or the exec `exec_id` (`runc exec`); report its pid.
    BERTH_TASK_CALL_START = 2,
    /// Send `signal` to the process (`all`: to every process of the container).
    BERTH_TASK_CALL_KILL = 3,
    /// Freeze the container.
    BERTH_TASK_CALL_PAUSE = 4,
    /// Thaw the container.
    BERTH_TASK_CALL_RESUME = 5,
    /// Prepare the exec `exec_id`: open its IO, keep its `spec` for its start.
    BERTH_TASK_CALL_EXEC = 6,
    /// Close the process's stdin.
    BERTH_TASK_CALL_CLOSE_STDIN = 7,
    /// Resize the process's terminal to `width` × `height`.
    BERTH_TASK_CALL_RESIZE = 8,
    /// Delete the container in the runtime (kills a created one); succeed if it is gone.
    BERTH_TASK_CALL_DELETE = 9,
    /// Release the exec `exec_id`'s IO and spec.
    BERTH_TASK_CALL_DELETE_PROCESS = 10,
    /// A call these bindings cannot describe (newer core): report it failed.
    BERTH_TASK_CALL_UNSUPPORTED = 255,
}

/// A process's IO as a request names it. A NULL path means none.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_task_stdio {
    /// stdin (FIFO path or URI), or NULL.
    pub stdin_path: *const c_char,
    /// stdout, or NULL.
    pub stdout_path: *const c_char,
    /// stderr, or NULL (none with a terminal).
    pub stderr_path: *const c_char,
    /// The process has a terminal.
    pub terminal: bool,
}

/// A runtime call to make. Only the fields its `kind` names are meaningful; strings are
/// never NULL (empty when absent) and borrow from the table (see the module rules).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_task_call {
    /// The call's id, for `berth_task_runtime_ok` / `_failed`.
    pub id: u64,
    /// What to do.
    pub kind: berth_task_call_kind,
    /// The task's namespace.
    pub namespace_name: *const c_char,
    /// Length of `namespace_name`.
    pub namespace_len: usize,
    /// The container (task) id.
    pub container_id: *const c_char,
    /// Length of `container_id`.
    pub container_id_len: usize,
    /// The exec id, empty for the init and task-wide calls.
    pub exec_id: *const c_char,
    /// Length of `exec_id`.
    pub exec_id_len: usize,
    /// KILL: the signal number.
    pub signal: u32,
    /// KILL: signal every process of the container.
    pub all: bool,
    /// RESIZE: columns.
    pub width: u32,
    /// RESIZE: rows.
    pub height: u32,
    /// CREATE: the bundle directory.
    pub bundle: *const c_char,
    /// Length of `bundle`.
    pub bundle_len: usize,
    /// CREATE, EXEC: stdin.
    pub stdin_path: *const c_char,
    /// Length of `stdin_path`.
    pub stdin_len: usize,
    /// CREATE, EXEC: stdout.
    pub stdout_path: *const c_char,
    /// Length of `stdout_path`.
    pub stdout_len: usize,
    /// CREATE, EXEC: stderr.
    pub stderr_path: *const c_char,
    /// Length of `stderr_path`.
    pub stderr_len: usize,
    /// CREATE, EXEC: the process has a terminal.
    pub terminal: bool,
    /// EXEC: the process spec (JSON) as given to `berth_task_exec`; NULL if empty.
    pub spec: *const u8,
    /// Length of `spec`.
    pub spec_len: usize,
    /// CREATE: how many rootfs mounts (those given to `berth_task_create`, in order).
    pub rootfs_len: usize,
}

/// The facts `Get` reports about a process. Strings as in `berth_task_call`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_task_process {
    /// The task.
    pub container_id: *const c_char,
    /// Length of `container_id`.
    pub container_id_len: usize,
    /// The process id: the container id for the init, else the exec id.
    pub id: *const c_char,
    /// Length of `id`.
    pub id_len: usize,
    /// Its pid (0 for an exec not started).
    pub pid: u32,
    /// Its status.
    pub status: berth_task_status,
    /// stdin.
    pub stdin_path: *const c_char,
    /// Length of `stdin_path`.
    pub stdin_len: usize,
    /// stdout.
    pub stdout_path: *const c_char,
    /// Length of `stdout_path`.
    pub stdout_len: usize,
    /// stderr.
    pub stderr_path: *const c_char,
    /// Length of `stderr_path`.
    pub stderr_len: usize,
    /// It has a terminal.
    pub terminal: bool,
    /// It has exited (then `exit_status` and `exited_at_ns` are set; else both 0).
    pub exited: bool,
    /// Its exit status.
    pub exit_status: u32,
    /// When it exited, in nanoseconds since the Unix epoch.
    pub exited_at_ns: u64,
}

/// The answer of `berth_task_wait`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct berth_task_wait_answer {
    /// The process has not exited: the answer comes later as a `WAIT_DONE` output for
    /// `wait_id`. If false, the process has exited and the exit fields hold the answer.
    pub waiting: bool,
    /// The registered wait (when `waiting`).
    pub wait_id: u64,
    /// The exit status (when not `waiting`).
    pub exit_status: u32,
    /// When it exited, in nanoseconds since the Unix epoch (when not `waiting`).
    pub exited_at_ns: u64,
}

/// Which event a `berth_task_event` is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_task_event_kind {
    /// `/tasks/create` (`container_id`, `bundle`, IO fields, `pid`).
    BERTH_TASK_EVENT_CREATE = 1,
    /// `/tasks/start` (`container_id`, `pid`).
    BERTH_TASK_EVENT_START = 2,
    /// `/tasks/exit` (`container_id`, `id`, `pid`, `exit_status`, `exited_at_ns`).
    BERTH_TASK_EVENT_EXIT = 3,
    /// `/tasks/delete` (`container_id`, `pid`, `exit_status`, `exited_at_ns`, `id`).
    BERTH_TASK_EVENT_DELETE = 4,
    /// `/tasks/paused` (`container_id`).
    BERTH_TASK_EVENT_PAUSED = 5,
    /// `/tasks/resumed` (`container_id`).
    BERTH_TASK_EVENT_RESUMED = 6,
    /// `/tasks/exec-added` (`container_id`, `id` = the exec id).
    BERTH_TASK_EVENT_EXEC_ADDED = 7,
    /// `/tasks/exec-started` (`container_id`, `id` = the exec id, `pid`).
    BERTH_TASK_EVENT_EXEC_STARTED = 8,
    /// `/tasks/oom` (`container_id`).
    BERTH_TASK_EVENT_OOM = 9,
    /// An event these bindings cannot describe (newer core); `topic` still names it.
    BERTH_TASK_EVENT_UNSUPPORTED = 255,
}

/// An event to publish, with containerd's topic and `containerd.events.Task*` fields. Only
/// the fields its `kind` names are meaningful; strings as in `berth_task_call`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_task_event {
    /// Which event.
    pub kind: berth_task_event_kind,
    /// Its topic (`/tasks/exit`, …).
    pub topic: *const c_char,
    /// Length of `topic`.
    pub topic_len: usize,
    /// The namespace of the envelope.
    pub namespace_name: *const c_char,
    /// Length of `namespace_name`.
    pub namespace_len: usize,
    /// The task.
    pub container_id: *const c_char,
    /// Length of `container_id`.
    pub container_id_len: usize,
    /// EXIT, DELETE: the payload's `id` (the container id for the init, else the exec id);
    /// EXEC_ADDED, EXEC_STARTED: the exec id.
    pub id: *const c_char,
    /// Length of `id`.
    pub id_len: usize,
    /// CREATE, START, EXIT, DELETE, EXEC_STARTED: the pid.
    pub pid: u32,
    /// EXIT, DELETE: the exit status.
    pub exit_status: u32,
    /// EXIT, DELETE: when the process exited, in nanoseconds since the Unix epoch.
    pub exited_at_ns: u64,
    /// CREATE: the bundle.
    pub bundle: *const c_char,
    /// Length of `bundle`.
    pub bundle_len: usize,
    /// CREATE: `io.stdin`.
    pub stdin_path: *const c_char,
    /// Length of `stdin_path`.
    pub stdin_len: usize,
    /// CREATE: `io.stdout`.
    pub stdout_path: *const c_char,
    /// Length of `stdout_path`.
    pub stdout_len: usize,
    /// CREATE: `io.stderr`.
    pub stderr_path: *const c_char,
    /// Length of `stderr_path`.
    pub stderr_len: usize,
    /// CREATE: `io.terminal`.
    pub terminal: bool,
    /// CREATE: how many rootfs mounts the event carries.
    pub rootfs_len: usize,
}

/// What a finished request replies.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_task_reply_kind {
    /// Nothing to say (KILL, PAUSE, RESUME, EXEC, CLOSE_STDIN, RESIZE), or it failed.
    BERTH_TASK_REPLY_EMPTY = 0,
    /// CREATE succeeded: `pid` is the init's.
    BERTH_TASK_REPLY_CREATED = 1,
    /// START succeeded: `pid` is the process's.
    BERTH_TASK_REPLY_STARTED = 2,
    /// DELETE or DELETE_PROCESS succeeded: `id`, `pid` and the exit fields are the
    /// `DeleteResponse`.
    BERTH_TASK_REPLY_DELETED = 3,
}

/// A request whose runtime call was reported: its reply or its error.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_task_done {
    /// The runtime call.
    pub call_id: u64,
    /// `BERTH_OK`, or the code of the error the request fails with.
    pub result: berth_result,
    /// The gRPC code to answer with (0 on success).
    pub grpc_code: u32,
    /// On failure, the error's text; else empty.
    pub error: *const c_char,
    /// Length of `error`.
    pub error_len: usize,
    /// What the reply is.
    pub reply: berth_task_reply_kind,
    /// CREATED, STARTED, DELETED: the pid.
    pub pid: u32,
    /// DELETED: the container id (Delete) or the exec id (DeleteProcess).
    pub id: *const c_char,
    /// Length of `id`.
    pub id_len: usize,
    /// DELETED: the process had exited (false for an exec that never started).
    pub exited: bool,
    /// DELETED: its exit status.
    pub exit_status: u32,
    /// DELETED: when it exited, in nanoseconds since the Unix epoch.
    pub exited_at_ns: u64,
}

/// A registered Wait, answered.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct berth_task_wait_done {
    /// The wait.
    pub wait_id: u64,
    /// The process was deleted without ever running (an exec never started): no exit.
    pub cancelled: bool,
    /// The exit status (unless cancelled).
    pub exit_status: u32,
    /// When it exited, in nanoseconds since the Unix epoch (unless cancelled).
    pub exited_at_ns: u64,
}

/// Which member of a `berth_task_output` is meaningful.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_task_output_kind {
    /// Nothing more until the next input.
    BERTH_TASK_OUTPUT_NONE = 0,
    /// `event`: publish it.
    BERTH_TASK_OUTPUT_EVENT = 1,
    /// `done`: a request finished.
    BERTH_TASK_OUTPUT_DONE = 2,
    /// `wait`: a Wait is answered.
    BERTH_TASK_OUTPUT_WAIT_DONE = 3,
}

/// One output of `berth_task_poll`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_task_output {
    /// Which member is meaningful.
    pub kind: berth_task_output_kind,
    /// EVENT.
    pub event: berth_task_event,
    /// DONE.
    pub done: berth_task_done,
    /// WAIT_DONE.
    pub wait: berth_task_wait_done,
}

/// `berth_task_found.state`: the process is created in the runtime, not started.
pub const BERTH_TASK_FOUND_CREATED: u32 = 1;
/// `berth_task_found.state`: the process is running.
pub const BERTH_TASK_FOUND_RUNNING: u32 = 2;
/// `berth_task_found.state`: the process is frozen.
pub const BERTH_TASK_FOUND_PAUSED: u32 = 3;

/// A live process the host found after a restart (input of `berth_task_restarted`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_task_found {
    /// Its namespace.
    pub namespace_name: *const c_char,
    /// Its container.
    pub container_id: *const c_char,
    /// Its exec id; NULL or empty for the init.
    pub exec_id: *const c_char,
    /// Its pid.
    pub pid: u32,
    /// `BERTH_TASK_FOUND_CREATED`, `_RUNNING` or `_PAUSED` (another value gives
    /// `BERTH_ERR_INVALID`).
    pub state: u32,
}

/// What a `berth_task_recovered` asks of the host.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum berth_task_recovered_kind {
    /// The table expects this process alive and it was not found: report its exit
    /// (`berth_task_exited`), or its task as crashed (`berth_task_runtime_crashed`).
    BERTH_TASK_RECOVERED_UNACCOUNTED = 1,
    /// A live process the table does not know (or knows as exited): kill it and delete its
    /// container in the runtime; report nothing.
    BERTH_TASK_RECOVERED_ORPHAN = 2,
}

/// One entry of a `berth_task_recovery`. Strings borrow from the list (valid until it is
/// freed), never NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct berth_task_recovered {
    /// What to do.
    pub kind: berth_task_recovered_kind,
    /// The namespace.
    pub namespace_name: *const c_char,
    /// Length of `namespace_name`.
    pub namespace_len: usize,
    /// The container.
    pub container_id: *const c_char,
    /// Length of `container_id`.
    pub container_id_len: usize,
    /// The exec id, empty for the init.
    pub exec_id: *const c_char,
    /// Length of `exec_id`.
    pub exec_id_len: usize,
    /// The pid (recorded for UNACCOUNTED, found for ORPHAN).
    pub pid: u32,
}

/// Receives one task from `berth_task_list`; the process and its strings are valid during the
/// call only. Return true to go on, false to stop.
pub type berth_task_process_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, process: *const berth_task_process) -> bool>;

/// Every task of every namespace, with containerd's lifecycle rules. Create it with
/// `berth_task_table_new`, free it with `berth_task_table_free`.
pub struct berth_task_table {
    table: TaskTable,
    /// Calls, failures (with their gRPC codes) and the storage behind the pointers lent by the
    /// last call.
    state: CallState<Lent>,
}

/// What the pointers lent by the last call of a table point into.
#[derive(Default)]
pub(crate) struct Lent {
    strings: Vec<CString>,
    /// Exec specs.
    bytes: Vec<Vec<u8>>,
}

/// The list `berth_task_restarted` returns. Read it with `berth_task_recovery_len` and
/// `berth_task_recovery_get`, free it with `berth_task_recovery_free`. Immutable; independent
/// of the table.
pub struct berth_task_recovery {
    items: Vec<berth_task_recovered>,
    /// The strings the items point into.
    _strings: Vec<CString>,
}

impl List for berth_task_recovery {
    type Item = berth_task_recovered;
    fn items(&self) -> &[berth_task_recovered] {
        &self.items
    }
}

/// The result code of a task error.
fn code(e: &TaskError) -> berth_result {
    match e {
        TaskError::UnknownCall(_) => berth_result::BERTH_ERR_UNEXPECTED_COMPLETION,
        TaskError::MissingPid { .. } | TaskError::PidMismatch { .. } => {
            berth_result::BERTH_ERR_PROTOCOL
        }
        e => match e.code() {
            Code::InvalidArgument => berth_result::BERTH_ERR_INVALID,
            Code::NotFound => berth_result::BERTH_ERR_NOT_FOUND,
            Code::AlreadyExists => berth_result::BERTH_ERR_ALREADY_EXISTS,
            Code::FailedPrecondition => berth_result::BERTH_ERR_FAILED_PRECONDITION,
            Code::Unavailable => berth_result::BERTH_ERR_BUSY,
            Code::Internal => berth_result::BERTH_ERR_IO,
            _ => berth_result::BERTH_ERR_OTHER,
        },
    }
}

/// The gRPC code a host passes to `berth_task_runtime_failed`.
fn code_of(grpc: u32) -> Option<Code> {
    Some(match grpc {
        3 => Code::InvalidArgument,
        5 => Code::NotFound,
        6 => Code::AlreadyExists,
        9 => Code::FailedPrecondition,
        13 => Code::Internal,
        14 => Code::Unavailable,
        _ => return None,
    })
}

/// Reads an exec id argument: NULL and `""` both mean the init.
///
/// # Safety
///
/// `p` is NULL or a NUL-terminated string alive and unchanged for `'a`.
unsafe fn exec_arg<'a>(p: *const c_char) -> Result<&'a str, berth_result> {
    if p.is_null() {
        return Ok("");
    }
    // SAFETY: not NULL; the caller promises a NUL-terminated string alive for `'a`.
    unsafe { str_arg(p) }
}

/// Reads an optional path: NULL means empty.
///
/// # Safety
///
/// `p` is NULL or a NUL-terminated string alive and unchanged for the call.
unsafe fn path_arg(p: *const c_char) -> Result<String, berth_result> {
    if p.is_null() {
        return Ok(String::new());
    }
    // SAFETY: not NULL; the caller promises a NUL-terminated string.
    unsafe { str_arg(p) }.map(str::to_owned)
}

/// Reads a `berth_task_stdio`; NULL means no IO.
///
/// # Safety
///
/// `p` is NULL or points to a `berth_task_stdio` whose strings are NULL or NUL-terminated.
unsafe fn stdio_arg(p: *const berth_task_stdio) -> Result<Stdio, berth_result> {
    // SAFETY: the caller promises `p` is NULL or valid for a read.
    let Some(s) = (unsafe { p.as_ref() }) else {
        return Ok(Stdio::default());
    };
    Ok(Stdio {
        // SAFETY: the caller promises each path is NULL or NUL-terminated.
        stdin: unsafe { path_arg(s.stdin_path) }?,
        // SAFETY: as above.
        stdout: unsafe { path_arg(s.stdout_path) }?,
        // SAFETY: as above.
        stderr: unsafe { path_arg(s.stderr_path) }?,
        terminal: s.terminal,
    })
}

/// Reads `len` `berth_mount`s as input: `type`, `source`, `target` (NULL means empty) and the
/// `options_len` strings at `options`; the lengths and `data` are not read.
///
/// # Safety
///
/// If `len > 0`, `p` is NULL or points to `len` readable `berth_mount`s whose strings are
/// NULL or NUL-terminated and whose `options` point to `options_len` such strings.
unsafe fn mounts_arg(p: *const berth_mount, len: usize) -> Result<Vec<Mount>, berth_result> {
    // SAFETY: the caller promises `len` readable, aligned mounts for the call (or NULL).
    let mounts = unsafe { slice_arg(p, len) }?;
    let mut out = Vec::with_capacity(len);
    for m in mounts {
        // SAFETY: the caller promises `options_len` readable pointers at `options` (or NULL).
        let opts = unsafe { slice_arg(m.options, m.options_len) }?;
        let mut options = Vec::with_capacity(opts.len());
        for o in opts {
            // SAFETY: the caller promises each option is NULL or NUL-terminated.
            options.push(unsafe { str_arg(*o) }?.to_owned());
        }
        out.push(Mount {
            // SAFETY: the caller promises the strings are NULL or NUL-terminated.
            kind: unsafe { str_arg(m.r#type) }?.to_owned(),
            // SAFETY: as above.
            source: unsafe { str_arg(m.source) }?.to_owned(),
            // SAFETY: as above.
            target: unsafe { path_arg(m.target) }?,
            options,
        });
    }
    Ok(out)
}

const NO_STR: (*const c_char, usize) = (c"".as_ptr(), 0);

fn empty_call() -> berth_task_call {
    berth_task_call {
        id: 0,
        kind: berth_task_call_kind::BERTH_TASK_CALL_NONE,
        namespace_name: NO_STR.0,
        namespace_len: 0,
        container_id: NO_STR.0,
        container_id_len: 0,
        exec_id: NO_STR.0,
        exec_id_len: 0,
        signal: 0,
        all: false,
        width: 0,
        height: 0,
        bundle: NO_STR.0,
        bundle_len: 0,
        stdin_path: NO_STR.0,
        stdin_len: 0,
        stdout_path: NO_STR.0,
        stdout_len: 0,
        stderr_path: NO_STR.0,
        stderr_len: 0,
        terminal: false,
        spec: std::ptr::null(),
        spec_len: 0,
        rootfs_len: 0,
    }
}

fn empty_event() -> berth_task_event {
    berth_task_event {
        kind: berth_task_event_kind::BERTH_TASK_EVENT_UNSUPPORTED,
        topic: NO_STR.0,
        topic_len: 0,
        namespace_name: NO_STR.0,
        namespace_len: 0,
        container_id: NO_STR.0,
        container_id_len: 0,
        id: NO_STR.0,
        id_len: 0,
        pid: 0,
        exit_status: 0,
        exited_at_ns: 0,
        bundle: NO_STR.0,
        bundle_len: 0,
        stdin_path: NO_STR.0,
        stdin_len: 0,
        stdout_path: NO_STR.0,
        stdout_len: 0,
        stderr_path: NO_STR.0,
        stderr_len: 0,
        terminal: false,
        rootfs_len: 0,
    }
}

fn empty_done() -> berth_task_done {
    berth_task_done {
        call_id: 0,
        result: berth_result::BERTH_OK,
        grpc_code: 0,
        error: NO_STR.0,
        error_len: 0,
        reply: berth_task_reply_kind::BERTH_TASK_REPLY_EMPTY,
        pid: 0,
        id: NO_STR.0,
        id_len: 0,
        exited: false,
        exit_status: 0,
        exited_at_ns: 0,
    }
}

const EMPTY_WAIT: berth_task_wait_done = berth_task_wait_done {
    wait_id: 0,
    cancelled: false,
    exit_status: 0,
    exited_at_ns: 0,
};

/// Lends a call's strings from `lent` (and its spec from `bytes`).
fn lend_call(
    lent: &mut Vec<CString>,
    bytes: &mut Vec<Vec<u8>>,
    call: &RuntimeCall,
) -> berth_task_call {
    let mut c = empty_call();
    c.id = call.id.0;
    (c.namespace_name, c.namespace_len) = keep(lent, &call.namespace);
    (c.container_id, c.container_id_len) = keep(lent, &call.container_id);
    (c.exec_id, c.exec_id_len) = keep(lent, &call.exec_id);
    fn io(c: &mut berth_task_call, lent: &mut Vec<CString>, s: &Stdio) {
        (c.stdin_path, c.stdin_len) = keep(lent, &s.stdin);
        (c.stdout_path, c.stdout_len) = keep(lent, &s.stdout);
        (c.stderr_path, c.stderr_len) = keep(lent, &s.stderr);
        c.terminal = s.terminal;
    }
    c.kind = match &call.kind {
        CallKind::Create {
            bundle,
            rootfs,
            stdio,
        } => {
            (c.bundle, c.bundle_len) = keep(lent, bundle);
            io(&mut c, lent, stdio);
            c.rootfs_len = rootfs.len();
            berth_task_call_kind::BERTH_TASK_CALL_CREATE
        }
        CallKind::Start => berth_task_call_kind::BERTH_TASK_CALL_START,
        CallKind::Kill { signal, all } => {
            c.signal = *signal;
            c.all = *all;
            berth_task_call_kind::BERTH_TASK_CALL_KILL
        }
        CallKind::Pause => berth_task_call_kind::BERTH_TASK_CALL_PAUSE,
        CallKind::Resume => berth_task_call_kind::BERTH_TASK_CALL_RESUME,
        CallKind::Exec { stdio, spec } => {
            io(&mut c, lent, stdio);
            if !spec.is_empty() {
                // Moving the copy into `bytes` does not move its buffer.
                let copy = spec.clone();
                (c.spec, c.spec_len) = (copy.as_ptr(), copy.len());
                bytes.push(copy);
            }
            berth_task_call_kind::BERTH_TASK_CALL_EXEC
        }
        CallKind::CloseStdin => berth_task_call_kind::BERTH_TASK_CALL_CLOSE_STDIN,
        CallKind::Resize { width, height } => {
            c.width = *width;
            c.height = *height;
            berth_task_call_kind::BERTH_TASK_CALL_RESIZE
        }
        CallKind::Delete => berth_task_call_kind::BERTH_TASK_CALL_DELETE,
        CallKind::DeleteProcess => berth_task_call_kind::BERTH_TASK_CALL_DELETE_PROCESS,
        _ => berth_task_call_kind::BERTH_TASK_CALL_UNSUPPORTED,
    };
    c
}

fn lend_process(lent: &mut Vec<CString>, p: &ProcessInfo) -> berth_task_process {
    let (container_id, container_id_len) = keep(lent, &p.container_id);
    let (id, id_len) = keep(lent, &p.id);
    let (stdin_path, stdin_len) = keep(lent, &p.stdio.stdin);
    let (stdout_path, stdout_len) = keep(lent, &p.stdio.stdout);
    let (stderr_path, stderr_len) = keep(lent, &p.stdio.stderr);
    berth_task_process {
        container_id,
        container_id_len,
        id,
        id_len,
        pid: p.pid,
        status: p.status.into(),
        stdin_path,
        stdin_len,
        stdout_path,
        stdout_len,
        stderr_path,
        stderr_len,
        terminal: p.stdio.terminal,
        exited: p.exit.is_some(),
        exit_status: p.exit.map_or(0, |e| e.status),
        exited_at_ns: p.exit.map_or(0, |e| e.at.0),
    }
}

impl CallHandle for berth_task_table {
    type Lent = Lent;
    const NAME: &'static str = "task table";
    fn state(&self) -> &CallState<Lent> {
        &self.state
    }
    fn state_mut(&mut self) -> &mut CallState<Lent> {
        &mut self.state
    }
}

impl berth_task_table {
    fn fail(&mut self, e: &TaskError) -> berth_result {
        self.state
            .fail_grpc(code(e), e.code().grpc(), e.to_string())
    }

    /// Runs a command and writes its runtime call (or `NONE`) to `out` (not NULL).
    fn command(
        &mut self,
        now_ns: u64,
        ns: &str,
        cmd: Command,
        out: *mut berth_task_call,
    ) -> berth_result {
        match self.table.command(Instant(now_ns), ns, cmd) {
            Ok(Accepted::Call(call)) => {
                let Lent { strings, bytes } = &mut self.state.lent;
                let c = lend_call(strings, bytes, &call);
                // SAFETY: the exported function checked `out` is not NULL; its caller
                // promises it is valid for a write.
                try_ok!(unsafe { write_out(out, c) });
                berth_result::BERTH_OK
            }
            Ok(_) => {
                // SAFETY: as above.
                try_ok!(unsafe { write_out(out, empty_call()) });
                berth_result::BERTH_OK
            }
            Err(e) => self.fail(&e),
        }
    }
}

/// Borrows the table for a non-const call, or returns `BERTH_ERR_NULL`.
macro_rules! table_mut {
    ($p:expr) => {
        // SAFETY: every exported function's contract says `table` is NULL or a live table
        // used by one thread at a time.
        try_some!(unsafe { $p.as_mut() })
    };
}

/// Borrows a required string argument.
macro_rules! str_in {
    ($p:expr) => {
        // SAFETY: every exported function's contract says its strings are NULL or
        // NUL-terminated and unchanged during the call.
        try_ok!(unsafe { str_arg($p) })
    };
}

/// Borrows an exec id argument (NULL or "" for the init).
macro_rules! exec_in {
    ($p:expr) => {
        // SAFETY: as for `str_in!`.
        try_ok!(unsafe { exec_arg($p) })
    };
}

// ----- the table: lifetime, persistence, diagnostics -----

/// Creates an empty table. On success `*out` is the new table (free it with
/// `berth_task_table_free`).
///
/// # Safety
///
/// `out` is NULL or valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_table_new(out: *mut *mut berth_task_table) -> berth_result {
    ffi_panic_boundary(|| {
        let handle = berth_task_table {
            table: TaskTable::new(),
            state: CallState::default(),
        };
        // SAFETY: the caller promises `out` is NULL or valid for a pointer write.
        unsafe { box_out(out, handle) }
    })
}

/// Frees the table. NULL is a no-op. Recovery lists stay valid; lent pointers do not.
///
/// # Safety
///
/// `table` is NULL or was returned by `berth_task_table_new` and not freed yet. It must not be
/// used after.
#[no_mangle]
pub unsafe extern "C" fn berth_task_table_free(table: *mut berth_task_table) {
    // SAFETY: the caller promises `table` is NULL or came from `berth_task_table_new`
    // (`box_out`) and is freed once.
    unsafe { free_box(table) }
}

/// Replaces the table's contents with the table persisted as `json` (`len` bytes, not
/// necessarily NUL-terminated), as `berth_task_table_save` wrote it. Loading checks every
/// invariant; on failure it returns `BERTH_ERR_INVALID` with the reason in
/// `berth_task_table_last_error`, and the table is unchanged. Calls in progress, Waits and
/// queued outputs of the old contents are dropped. Call `berth_task_restarted` next.
///
/// # Safety
///
/// `table` is NULL or a live table; `json` is NULL or valid for reads of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn berth_task_table_load(
    table: *mut berth_task_table,
    json: *const u8,
    len: usize,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        // SAFETY: the caller promises `json` is NULL or valid for `len` bytes.
        let json = try_ok!(unsafe { bytes_arg(json, len) });
        table.call(|t| match TaskTable::from_json(json) {
            Ok(loaded) => {
                t.table = loaded;
                berth_result::BERTH_OK
            }
            Err(e) => t.state.fail_grpc(
                berth_result::BERTH_ERR_INVALID,
                Code::InvalidArgument.grpc(),
                format!("persisted task table does not load: {e}"),
            ),
        })
    })
}

/// Writes the table as JSON (for `berth_task_table_load`) and a NUL into `buf` (`len` bytes),
/// and the text's length without the NUL into `*written` (`written` may be NULL).
/// `buf = NULL, len = 0` asks for the size: `BERTH_ERR_BUFFER_TOO_SMALL` with `*written` set;
/// a buffer too small gets nothing. Persist the bytes without the NUL.
///
/// # Safety
///
/// `table` is NULL or a live table; `buf` is NULL or valid for writes of `len` bytes;
/// `written` is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_table_save(
    table: *const berth_task_table,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `table` is NULL or a live table.
        let table = try_some!(unsafe { table.as_ref() });
        try_ok!(table.state.usable());
        // SAFETY: the caller promises `buf`/`len` and `written` are valid or NULL.
        unsafe { write_str(&table.table.to_json(), buf, len, written) }
    })
}

/// Writes how many times the persisted state has changed into `*out`: persist whenever it
/// differs from its value at the last persist (0 in a new or loaded table).
///
/// # Safety
///
/// `table` is NULL or a live table; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_table_generation(
    table: *const berth_task_table,
    out: *mut u64,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `table` is NULL or a live table.
        let table = try_some!(unsafe { table.as_ref() });
        try_ok!(table.state.usable());
        // SAFETY: the caller promises `out` is NULL or valid for a write.
        try_ok!(unsafe { write_out(out, table.table.generation()) });
        berth_result::BERTH_OK
    })
}

/// Copies the text of the table's last failure into `buf` (e.g. `task c1 not found`,
/// `cannot pause task "c1": it is created`). Empty if nothing has failed yet. Buffer rules as
/// for `berth_task_table_save`.
///
/// # Safety
///
/// `table` is NULL or a live table; `buf` is NULL or valid for writes of `len` bytes;
/// `written` is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_table_last_error(
    table: *const berth_task_table,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    // SAFETY: the caller promises `table` is NULL or a live table, and `buf`/`len` and
    // `written` valid or NULL.
    unsafe { last_error_out(table, buf, len, written) }
}

/// Writes the gRPC code of the table's last failure into `*out` (e.g. 5 NOT_FOUND, 9
/// FAILED_PRECONDITION, 14 UNAVAILABLE; 0 if nothing has failed yet): the code to answer a
/// refused request with.
///
/// # Safety
///
/// `table` is NULL or a live table; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_table_last_error_code(
    table: *const berth_task_table,
    out: *mut u32,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `table` is NULL or a live table.
        let table = try_some!(unsafe { table.as_ref() });
        // SAFETY: the caller promises `out` is NULL or valid for a write.
        try_ok!(unsafe { write_out(out, table.state.last_code()) });
        berth_result::BERTH_OK
    })
}

// ----- requests -----

/// `Tasks.Create` in `namespace_name`. `container_exists` says whether the container is in
/// the container store (NOT_FOUND otherwise). `stdio` may be NULL (no IO); `rootfs` is
/// `rootfs_len` mounts (e.g. from `berth_mounts_get`; their `type`, `source`, `target` and
/// `options` are read). On success `*call` is the CREATE call.
///
/// # Safety
///
/// `table` is NULL or a live table; strings are NULL or NUL-terminated; `stdio` is NULL or
/// valid; `rootfs` is NULL or `rootfs_len` valid mounts; `call` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_create(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    container_exists: bool,
    bundle: *const c_char,
    stdio: *const berth_task_stdio,
    rootfs: *const berth_mount,
    rootfs_len: usize,
    call: *mut berth_task_call,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        let ns = str_in!(namespace_name);
        let id = str_in!(container_id);
        let bundle = str_in!(bundle);
        // SAFETY: the caller promises `stdio` is NULL or valid.
        let stdio = try_ok!(unsafe { stdio_arg(stdio) });
        // SAFETY: the caller promises `rootfs` is NULL or `rootfs_len` valid mounts.
        let rootfs = try_ok!(unsafe { mounts_arg(rootfs, rootfs_len) });
        if call.is_null() {
            return berth_result::BERTH_ERR_NULL;
        }
        let cmd = Command::Create(CreateTask {
            container_id: id.into(),
            container_exists,
            bundle: bundle.into(),
            rootfs,
            stdio,
        });
        table.call(|t| t.command(now_ns, ns, cmd, call))
    })
}

/// Shared body of the requests that name a process: borrows the arguments, builds the
/// command, runs it.
///
/// # Safety
///
/// As for the exported functions that call it.
unsafe fn process_command(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    exec_id: *const c_char,
    call: *mut berth_task_call,
    make: impl FnOnce(String, String) -> Command,
) -> berth_result {
    let table = table_mut!(table);
    let ns = str_in!(namespace_name);
    let id = str_in!(container_id);
    let exec = exec_in!(exec_id);
    if call.is_null() {
        return berth_result::BERTH_ERR_NULL;
    }
    let cmd = make(id.into(), exec.into());
    table.call(|t| t.command(now_ns, ns, cmd, call))
}

/// `Tasks.Start` of the init (`exec_id` NULL or empty) or an exec. On success `*call` is the
/// START call.
///
/// # Safety
///
/// `table` is NULL or a live table; strings are NULL or NUL-terminated; `call` is NULL or
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_start(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    exec_id: *const c_char,
    call: *mut berth_task_call,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller's promises are those of `process_command`.
        unsafe {
            process_command(
                table,
                now_ns,
                namespace_name,
                container_id,
                exec_id,
                call,
                |container_id, exec_id| Command::Start {
                    container_id,
                    exec_id,
                },
            )
        }
    })
}

/// `Tasks.Kill`: `signal` to the init (`exec_id` NULL or empty; `all` signals every process)
/// or an exec. On success `*call` is the KILL call.
///
/// # Safety
///
/// As for `berth_task_start`.
#[no_mangle]
pub unsafe extern "C" fn berth_task_kill(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    exec_id: *const c_char,
    signal: u32,
    all: bool,
    call: *mut berth_task_call,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller's promises are those of `process_command`.
        unsafe {
            process_command(
                table,
                now_ns,
                namespace_name,
                container_id,
                exec_id,
                call,
                |container_id, exec_id| Command::Kill {
                    container_id,
                    exec_id,
                    signal,
                    all,
                },
            )
        }
    })
}

/// `Tasks.Pause`. On success `*call` is the PAUSE call.
///
/// # Safety
///
/// As for `berth_task_start`.
#[no_mangle]
pub unsafe extern "C" fn berth_task_pause(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    call: *mut berth_task_call,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller's promises are those of `process_command`.
        unsafe {
            process_command(
                table,
                now_ns,
                namespace_name,
                container_id,
                std::ptr::null(),
                call,
                |container_id, _| Command::Pause { container_id },
            )
        }
    })
}

/// `Tasks.Resume`. On success `*call` is the RESUME call.
///
/// # Safety
///
/// As for `berth_task_start`.
#[no_mangle]
pub unsafe extern "C" fn berth_task_resume(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    call: *mut berth_task_call,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller's promises are those of `process_command`.
        unsafe {
            process_command(
                table,
                now_ns,
                namespace_name,
                container_id,
                std::ptr::null(),
                call,
                |container_id, _| Command::Resume { container_id },
            )
        }
    })
}

/// `Tasks.Exec`: adds the exec `exec_id` (required: INVALID if NULL or empty) with its IO
/// (`stdio` may be NULL) and process spec (`spec_len` bytes of JSON, copied). On success
/// `*call` is the EXEC call.
///
/// # Safety
///
/// As for `berth_task_start`; `stdio` is NULL or valid; `spec` is NULL or valid for reads of
/// `spec_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn berth_task_exec(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    exec_id: *const c_char,
    stdio: *const berth_task_stdio,
    spec: *const u8,
    spec_len: usize,
    call: *mut berth_task_call,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `stdio` is NULL or valid.
        let stdio = try_ok!(unsafe { stdio_arg(stdio) });
        // SAFETY: the caller promises `spec` is NULL or valid for `spec_len` bytes.
        let spec = try_ok!(unsafe { bytes_arg(spec, spec_len) }).to_vec();
        // SAFETY: the caller's promises are those of `process_command`.
        unsafe {
            process_command(
                table,
                now_ns,
                namespace_name,
                container_id,
                exec_id,
                call,
                |container_id, exec_id| {
                    Command::Exec(ExecProcess {
                        container_id,
                        exec_id,
                        stdio,
                        spec,
                    })
                },
            )
        }
    })
}

/// `Tasks.CloseIO`: with `stdin`, `*call` is the CLOSE_STDIN call; without, the request is
/// answered (`*call` has kind NONE).
///
/// # Safety
///
/// As for `berth_task_start`.
#[no_mangle]
pub unsafe extern "C" fn berth_task_close_io(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    exec_id: *const c_char,
    stdin: bool,
    call: *mut berth_task_call,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller's promises are those of `process_command`.
        unsafe {
            process_command(
                table,
                now_ns,
                namespace_name,
                container_id,
                exec_id,
                call,
                |container_id, exec_id| Command::CloseIo {
                    container_id,
                    exec_id,
                    stdin,
                },
            )
        }
    })
}

/// `Tasks.ResizePty`: `*call` is the RESIZE call, or has kind NONE for a process without a
/// terminal or one that has exited.
///
/// # Safety
///
/// As for `berth_task_start`.
#[no_mangle]
pub unsafe extern "C" fn berth_task_resize_pty(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    exec_id: *const c_char,
    width: u32,
    height: u32,
    call: *mut berth_task_call,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller's promises are those of `process_command`.
        unsafe {
            process_command(
                table,
                now_ns,
                namespace_name,
                container_id,
                exec_id,
                call,
                |container_id, exec_id| Command::ResizePty {
                    container_id,
                    exec_id,
                    width,
                    height,
                },
            )
        }
    })
}

/// `Tasks.Delete` of a created or stopped task. On success `*call` is the DELETE call.
///
/// # Safety
///
/// As for `berth_task_start`.
#[no_mangle]
pub unsafe extern "C" fn berth_task_delete(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    call: *mut berth_task_call,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller's promises are those of `process_command`.
        unsafe {
            process_command(
                table,
                now_ns,
                namespace_name,
                container_id,
                std::ptr::null(),
                call,
                |container_id, _| Command::Delete { container_id },
            )
        }
    })
}

/// `Tasks.DeleteProcess` of a created or stopped exec (`exec_id` required). On success
/// `*call` is the DELETE_PROCESS call.
///
/// # Safety
///
/// As for `berth_task_start`.
#[no_mangle]
pub unsafe extern "C" fn berth_task_delete_process(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    exec_id: *const c_char,
    call: *mut berth_task_call,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller's promises are those of `process_command`.
        unsafe {
            process_command(
                table,
                now_ns,
                namespace_name,
                container_id,
                exec_id,
                call,
                |container_id, exec_id| Command::DeleteProcess {
                    container_id,
                    exec_id,
                },
            )
        }
    })
}

/// `Tasks.Wait` on the init (`exec_id` NULL or empty) or an exec, in any state until it is
/// deleted: answered at once if it has exited, else registered (`out->waiting`) and answered
/// later by a `WAIT_DONE` output.
///
/// # Safety
///
/// `table` is NULL or a live table; strings are NULL or NUL-terminated; `out` is NULL or
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_wait(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    exec_id: *const c_char,
    out: *mut berth_task_wait_answer,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        let ns = str_in!(namespace_name);
        let id = str_in!(container_id);
        let exec = exec_in!(exec_id);
        if out.is_null() {
            return berth_result::BERTH_ERR_NULL;
        }
        let cmd = Command::Wait {
            container_id: id.into(),
            exec_id: exec.into(),
        };
        table.call(|t| {
            let answer = match t.table.command(Instant(now_ns), ns, cmd) {
                Ok(Accepted::Waiting(w)) => berth_task_wait_answer {
                    waiting: true,
                    wait_id: w.0,
                    exit_status: 0,
                    exited_at_ns: 0,
                },
                Ok(Accepted::Done(Reply::Exited(e))) => berth_task_wait_answer {
                    waiting: false,
                    wait_id: 0,
                    exit_status: e.status,
                    exited_at_ns: e.at.0,
                },
                Ok(_) => return berth_result::BERTH_ERR_OTHER,
                Err(e) => return t.fail(&e),
            };
            // SAFETY: checked not NULL; the caller promises it is valid for a write.
            try_ok!(unsafe { write_out(out, answer) });
            berth_result::BERTH_OK
        })
    })
}

/// Drops a registered Wait whose client went away; it will not be answered.
/// `BERTH_ERR_NOT_FOUND` if it is not registered.
///
/// # Safety
///
/// `table` is NULL or a live table.
#[no_mangle]
pub unsafe extern "C" fn berth_task_forget_wait(
    table: *mut berth_task_table,
    wait_id: u64,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        table.call(|t| {
            if t.table.forget_wait(WaitId(wait_id)) {
                berth_result::BERTH_OK
            } else {
                t.state.fail_grpc(
                    berth_result::BERTH_ERR_NOT_FOUND,
                    Code::NotFound.grpc(),
                    format!("wait {wait_id} is not registered"),
                )
            }
        })
    })
}

/// `Tasks.Get` of the init (`exec_id` NULL or empty) or an exec.
///
/// # Safety
///
/// `table` is NULL or a live table; strings are NULL or NUL-terminated; `out` is NULL or
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_get(
    table: *mut berth_task_table,
    namespace_name: *const c_char,
    container_id: *const c_char,
    exec_id: *const c_char,
    out: *mut berth_task_process,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        let ns = str_in!(namespace_name);
        let id = str_in!(container_id);
        let exec = exec_in!(exec_id);
        if out.is_null() {
            return berth_result::BERTH_ERR_NULL;
        }
        table.call(|t| match t.table.get(ns, id, exec) {
            Ok(info) => {
                let p = lend_process(&mut t.state.lent.strings, &info);
                // SAFETY: checked not NULL; the caller promises it is valid for a write.
                try_ok!(unsafe { write_out(out, p) });
                berth_result::BERTH_OK
            }
            Err(e) => t.fail(&e),
        })
    })
}

/// `Tasks.List`: calls `callback` with the init of every task of the namespace, by container
/// id, until it returns false.
///
/// # Safety
///
/// `table` is NULL or a live table; `namespace_name` is NULL or NUL-terminated; `callback`
/// is safe to call with `userdata`. The callback must not call into this table.
#[no_mangle]
pub unsafe extern "C" fn berth_task_list(
    table: *mut berth_task_table,
    namespace_name: *const c_char,
    callback: berth_task_process_callback,
    userdata: *mut c_void,
) -> berth_result {
    ffi_panic_boundary(|| {
        let callback = try_some!(callback);
        let (items, _strings) = {
            // This borrow of the table ends with this block, before the first callback.
            let table = table_mut!(table);
            let ns = str_in!(namespace_name);
            let mut strings = Vec::new();
            let mut items = Vec::new();
            let r = table.call(|t| {
                items = t
                    .table
                    .list(ns)
                    .iter()
                    .map(|p| lend_process(&mut strings, p))
                    .collect();
                berth_result::BERTH_OK
            });
            if r != berth_result::BERTH_OK {
                return r;
            }
            (items, strings)
        };
        for p in &items {
            // SAFETY: the caller promises `callback` is safe to call with `userdata`; `p` and
            // its strings outlive the call; no reference into the table is live.
            if !unsafe { callback(userdata, p) } {
                break;
            }
        }
        berth_result::BERTH_OK
    })
}

/// Reads a runtime call in progress again (e.g. to retry it): NOT_FOUND if it is not pending.
///
/// # Safety
///
/// `table` is NULL or a live table; `call` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_pending_call(
    table: *mut berth_task_table,
    call_id: u64,
    call: *mut berth_task_call,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        if call.is_null() {
            return berth_result::BERTH_ERR_NULL;
        }
        table.call(|t| {
            let Some(rc) = t.table.pending_call(CallId(call_id)) else {
                return t.fail(&TaskError::UnknownCall(CallId(call_id)));
            };
            let Lent { strings, bytes } = &mut t.state.lent;
            let c = lend_call(strings, bytes, rc);
            // SAFETY: checked not NULL; the caller promises it is valid for a write.
            try_ok!(unsafe { write_out(call, c) });
            berth_result::BERTH_OK
        })
    })
}

// ----- runtime outcomes and the world -----

/// The runtime call `call_id` succeeded; `pid` is the process's pid for CREATE and START
/// (ignored otherwise: pass 0). Drain `berth_task_poll` next.
///
/// # Safety
///
/// `table` is NULL or a live table.
#[no_mangle]
pub unsafe extern "C" fn berth_task_runtime_ok(
    table: *mut berth_task_table,
    now_ns: u64,
    call_id: u64,
    pid: u32,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        table.call(
            |t| match t.table.runtime_ok(Instant(now_ns), CallId(call_id), pid) {
                Ok(()) => berth_result::BERTH_OK,
                Err(e) => t.fail(&e),
            },
        )
    })
}

/// The runtime call `call_id` failed: nothing it asked for is applied, and the request fails
/// with `grpc_code` (13 INTERNAL, 14 UNAVAILABLE, or 3, 5, 6, 9; another value gives
/// `BERTH_ERR_INVALID`) and `message` (NULL for none). Drain `berth_task_poll` next.
///
/// # Safety
///
/// `table` is NULL or a live table; `message` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn berth_task_runtime_failed(
    table: *mut berth_task_table,
    now_ns: u64,
    call_id: u64,
    grpc_code: u32,
    message: *const c_char,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        // SAFETY: the caller promises `message` is NULL or NUL-terminated.
        let message = try_ok!(unsafe { path_arg(message) });
        let Some(code) = code_of(grpc_code) else {
            return berth_result::BERTH_ERR_INVALID;
        };
        let failure = RuntimeFailure { code, message };
        table.call(|t| {
            match t
                .table
                .runtime_failed(Instant(now_ns), CallId(call_id), failure)
            {
                Ok(()) => berth_result::BERTH_OK,
                Err(e) => t.fail(&e),
            }
        })
    })
}

/// A process exited with `status` at `exited_at_ns`. NOT_FOUND (nothing changes) for an
/// unknown task or process, or one already exited — e.g. an exec's late exit after its task
/// was deleted; ignore those. Drain `berth_task_poll` next.
///
/// # Safety
///
/// `table` is NULL or a live table; strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn berth_task_exited(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
    exec_id: *const c_char,
    pid: u32,
    status: u32,
    exited_at_ns: u64,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        let exit = ProcessExit {
            namespace: str_in!(namespace_name).into(),
            container_id: str_in!(container_id).into(),
            exec_id: exec_in!(exec_id).into(),
            pid,
            status,
            at: Instant(exited_at_ns),
        };
        table.call(|t| match t.table.exited(Instant(now_ns), exit) {
            Ok(()) => berth_result::BERTH_OK,
            Err(e) => t.fail(&e),
        })
    })
}

/// The kernel OOM-killed a process of the task: queues `/tasks/oom`.
///
/// # Safety
///
/// `table` is NULL or a live table; strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn berth_task_oom(
    table: *mut berth_task_table,
    namespace_name: *const c_char,
    container_id: *const c_char,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        let ns = str_in!(namespace_name);
        let id = str_in!(container_id);
        table.call(|t| match t.table.oom(ns, id) {
            Ok(()) => berth_result::BERTH_OK,
            Err(e) => t.fail(&e),
        })
    })
}

/// The task's runtime (or supervisor) died: its pending calls fail (UNAVAILABLE), every
/// running process is reported exited with status 255 at `now_ns`.
///
/// # Safety
///
/// `table` is NULL or a live table; strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn berth_task_runtime_crashed(
    table: *mut berth_task_table,
    now_ns: u64,
    namespace_name: *const c_char,
    container_id: *const c_char,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        let ns = str_in!(namespace_name);
        let id = str_in!(container_id);
        table.call(|t| match t.table.runtime_crashed(Instant(now_ns), ns, id) {
            Ok(()) => berth_result::BERTH_OK,
            Err(e) => t.fail(&e),
        })
    })
}

/// The daemon restarted (after `berth_task_table_load`): `found` is the `found_len` processes
/// the host found alive. What changed while it was down is adopted (with events: drain
/// `berth_task_poll`); `*out` lists the processes to account for and the orphans to remove
/// (free it with `berth_task_recovery_free`).
///
/// # Safety
///
/// `table` is NULL or a live table; `found` is NULL or `found_len` valid entries whose strings
/// are NULL or NUL-terminated; `out` is NULL or valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_restarted(
    table: *mut berth_task_table,
    now_ns: u64,
    found: *const berth_task_found,
    found_len: usize,
    out: *mut *mut berth_task_recovery,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `out` is NULL or valid for a pointer write.
        try_ok!(unsafe { write_out(out, std::ptr::null_mut()) });
        let table = table_mut!(table);
        // SAFETY: the caller promises `found_len` readable entries for the call (or NULL).
        let entries = try_ok!(unsafe { slice_arg(found, found_len) });
        let mut list = Vec::with_capacity(entries.len());
        for f in entries {
            let state = match f.state {
                BERTH_TASK_FOUND_CREATED => FoundState::Created,
                BERTH_TASK_FOUND_RUNNING => FoundState::Running,
                BERTH_TASK_FOUND_PAUSED => FoundState::Paused,
                _ => return berth_result::BERTH_ERR_INVALID,
            };
            list.push(Found {
                namespace: str_in!(f.namespace_name).into(),
                container_id: str_in!(f.container_id).into(),
                exec_id: exec_in!(f.exec_id).into(),
                pid: f.pid,
                state,
            });
        }
        table.call(|t| {
            let recovered = t.table.restarted(Instant(now_ns), list);
            let mut strings = Vec::new();
            let mut items = Vec::new();
            let mut push = |kind, ns: &str, id: &str, exec: &str, pid| {
                let (namespace_name, namespace_len) = keep(&mut strings, ns);
                let (container_id, container_id_len) = keep(&mut strings, id);
                let (exec_id, exec_id_len) = keep(&mut strings, exec);
                items.push(berth_task_recovered {
                    kind,
                    namespace_name,
                    namespace_len,
                    container_id,
                    container_id_len,
                    exec_id,
                    exec_id_len,
                    pid,
                });
            };
            for u in &recovered.unaccounted {
                push(
                    berth_task_recovered_kind::BERTH_TASK_RECOVERED_UNACCOUNTED,
                    &u.namespace,
                    &u.container_id,
                    &u.exec_id,
                    u.pid,
                );
            }
            for o in &recovered.orphans {
                push(
                    berth_task_recovered_kind::BERTH_TASK_RECOVERED_ORPHAN,
                    &o.namespace,
                    &o.container_id,
                    &o.exec_id,
                    o.pid,
                );
            }
            let list = berth_task_recovery {
                items,
                _strings: strings,
            };
            // SAFETY: checked valid for a pointer write above (it was NULL-checked by the
            // first write).
            unsafe { box_out(out, list) }
        })
    })
}

/// How many entries a recovery list has; 0 for NULL.
///
/// # Safety
///
/// `list` is NULL or a live list.
#[no_mangle]
pub unsafe extern "C" fn berth_task_recovery_len(list: *const berth_task_recovery) -> usize {
    // SAFETY: the caller promises `list` is NULL or a live list.
    unsafe { list_len(list) }
}

/// Copies entry `index` of a recovery list into `*out`: unaccounted processes first, then
/// orphans. `BERTH_ERR_INVALID` past the end.
///
/// # Safety
///
/// `list` is NULL or a live list; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_recovery_get(
    list: *const berth_task_recovery,
    index: usize,
    out: *mut berth_task_recovered,
) -> berth_result {
    // SAFETY: the caller promises `list` is NULL or a live list and `out` NULL or valid for a
    // write.
    unsafe { list_get(list, index, out) }
}

/// Frees a recovery list. NULL is a no-op.
///
/// # Safety
///
/// `list` is NULL or was returned by `berth_task_restarted` and not freed yet.
#[no_mangle]
pub unsafe extern "C" fn berth_task_recovery_free(list: *mut berth_task_recovery) {
    // SAFETY: the caller promises `list` is NULL or came from `berth_task_restarted`
    // (`box_out`) and is freed once.
    unsafe { free_box(list) }
}

// ----- outputs -----

/// The next output: an event to publish, a finished request, an answered Wait; or
/// `BERTH_TASK_OUTPUT_NONE`. Drain it after every input.
///
/// # Safety
///
/// `table` is NULL or a live table; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn berth_task_poll(
    table: *mut berth_task_table,
    out: *mut berth_task_output,
) -> berth_result {
    ffi_panic_boundary(|| {
        let table = table_mut!(table);
        if out.is_null() {
            return berth_result::BERTH_ERR_NULL;
        }
        table.call(|t| {
            let mut o = berth_task_output {
                kind: berth_task_output_kind::BERTH_TASK_OUTPUT_NONE,
                event: empty_event(),
                done: empty_done(),
                wait: EMPTY_WAIT,
            };
            match t.table.poll() {
                None => {}
                Some(Output::Event(ev)) => {
                    o.kind = berth_task_output_kind::BERTH_TASK_OUTPUT_EVENT;
                    o.event = lend_event(&mut t.state.lent.strings, &ev);
                }
                Some(Output::Done { call, result }) => {
                    o.kind = berth_task_output_kind::BERTH_TASK_OUTPUT_DONE;
                    o.done.call_id = call.0;
                    match result {
                        Ok(reply) => lend_reply(&mut t.state.lent.strings, &mut o.done, &reply),
                        Err(e) => {
                            o.done.result = code(&e);
                            o.done.grpc_code = e.code().grpc();
                            (o.done.error, o.done.error_len) =
                                keep(&mut t.state.lent.strings, &e.to_string());
                        }
                    }
                }
                Some(Output::WaitDone { wait, result }) => {
                    o.kind = berth_task_output_kind::BERTH_TASK_OUTPUT_WAIT_DONE;
                    o.wait.wait_id = wait.0;
                    match result {
                        WaitResult::Exited(e) => {
                            o.wait.exit_status = e.status;
                            o.wait.exited_at_ns = e.at.0;
                        }
                        WaitResult::Cancelled => o.wait.cancelled = true,
                    }
                }
            }
            // SAFETY: checked not NULL; the caller promises it is valid for a write.
            try_ok!(unsafe { write_out(out, o) });
            berth_result::BERTH_OK
        })
    })
}

fn lend_event(lent: &mut Vec<CString>, ev: &berth_core::task::Event) -> berth_task_event {
    let mut e = empty_event();
    (e.topic, e.topic_len) = keep(lent, ev.topic());
    (e.namespace_name, e.namespace_len) = keep(lent, &ev.namespace);
    (e.container_id, e.container_id_len) = keep(lent, ev.container_id());
    e.kind = match &ev.payload {
        EventPayload::Create {
            bundle,
            rootfs,
            io,
            pid,
            ..
        } => {
            (e.bundle, e.bundle_len) = keep(lent, bundle);
            (e.stdin_path, e.stdin_len) = keep(lent, &io.stdin);
            (e.stdout_path, e.stdout_len) = keep(lent, &io.stdout);
            (e.stderr_path, e.stderr_len) = keep(lent, &io.stderr);
            e.terminal = io.terminal;
            e.rootfs_len = rootfs.len();
            e.pid = *pid;
            berth_task_event_kind::BERTH_TASK_EVENT_CREATE
        }
        EventPayload::Start { pid, .. } => {
            e.pid = *pid;
            berth_task_event_kind::BERTH_TASK_EVENT_START
        }
        EventPayload::Exit {
            id,
            pid,
            exit_status,
            exited_at,
            ..
        } => {
            (e.id, e.id_len) = keep(lent, id);
            (e.pid, e.exit_status, e.exited_at_ns) = (*pid, *exit_status, exited_at.0);
            berth_task_event_kind::BERTH_TASK_EVENT_EXIT
        }
        EventPayload::Delete {
            id,
            pid,
            exit_status,
            exited_at,
            ..
        } => {
            (e.id, e.id_len) = keep(lent, id);
            (e.pid, e.exit_status, e.exited_at_ns) = (*pid, *exit_status, exited_at.0);
            berth_task_event_kind::BERTH_TASK_EVENT_DELETE
        }
        EventPayload::Paused { .. } => berth_task_event_kind::BERTH_TASK_EVENT_PAUSED,
        EventPayload::Resumed { .. } => berth_task_event_kind::BERTH_TASK_EVENT_RESUMED,
        EventPayload::ExecAdded { exec_id, .. } => {
            (e.id, e.id_len) = keep(lent, exec_id);
            berth_task_event_kind::BERTH_TASK_EVENT_EXEC_ADDED
        }
        EventPayload::ExecStarted { exec_id, pid, .. } => {
            (e.id, e.id_len) = keep(lent, exec_id);
            e.pid = *pid;
            berth_task_event_kind::BERTH_TASK_EVENT_EXEC_STARTED
        }
        EventPayload::Oom { .. } => berth_task_event_kind::BERTH_TASK_EVENT_OOM,
        _ => berth_task_event_kind::BERTH_TASK_EVENT_UNSUPPORTED,
    };
    e
}

fn lend_reply(lent: &mut Vec<CString>, d: &mut berth_task_done, reply: &Reply) {
    match reply {
        Reply::Created { pid } => {
            d.reply = berth_task_reply_kind::BERTH_TASK_REPLY_CREATED;
            d.pid = *pid;
        }
        Reply::Started { pid } => {
            d.reply = berth_task_reply_kind::BERTH_TASK_REPLY_STARTED;
            d.pid = *pid;
        }
        Reply::Deleted(del) => {
            d.reply = berth_task_reply_kind::BERTH_TASK_REPLY_DELETED;
            d.pid = del.pid;
            (d.id, d.id_len) = keep(lent, &del.id);
            if let Some(e) = del.exit {
                (d.exited, d.exit_status, d.exited_at_ns) = (true, e.status, e.at.0);
            }
        }
        _ => d.reply = berth_task_reply_kind::BERTH_TASK_REPLY_EMPTY,
    }
}

/// containerd's lower-case name of a status value (`"created"`, `"running"`, …;
/// `"unknown"` for any other value), as a static NUL-terminated string. Never NULL.
#[no_mangle]
pub extern "C" fn berth_task_status_name(status: u32) -> *const c_char {
    let name: &'static [u8] =
        ffi_panic_boundary(
            || match i32::try_from(status).ok().and_then(Status::from_wire) {
                Some(Status::Created) => b"created\0".as_slice(),
                Some(Status::Running) => b"running\0",
                Some(Status::Stopped) => b"stopped\0",
                Some(Status::Paused) => b"paused\0",
                Some(Status::Pausing) => b"pausing\0",
                _ => b"unknown\0",
            },
        );
    name.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::ptr::{null, null_mut};

    fn table() -> *mut berth_task_table {
        let mut t = null_mut();
        // SAFETY: `t` is a valid local.
        let r = unsafe { berth_task_table_new(&mut t) };
        assert_eq!(r, berth_result::BERTH_OK);
        assert!(!t.is_null());
        t
    }

    fn last_error(t: *const berth_task_table) -> String {
        let mut buf = [0 as c_char; 256];
        // SAFETY: `t` is live; `buf` is 256 writable bytes.
        let r = unsafe { berth_task_table_last_error(t, buf.as_mut_ptr(), buf.len(), null_mut()) };
        assert_eq!(r, berth_result::BERTH_OK);
        // SAFETY: NUL-terminated by the successful call.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn codes_follow_containerds_grpc_codes() {
        let s = String::new;
        let cases = [
            (TaskError::EmptyId, berth_result::BERTH_ERR_INVALID),
            (
                TaskError::NotFound {
                    namespace: s(),
                    container_id: s(),
                },
                berth_result::BERTH_ERR_NOT_FOUND,
            ),
            (
                TaskError::ProcessFinished {
                    container_id: s(),
                    exec_id: s(),
                },
                berth_result::BERTH_ERR_NOT_FOUND,
            ),
            (
                TaskError::AlreadyExists {
                    namespace: s(),
                    container_id: s(),
                },
                berth_result::BERTH_ERR_ALREADY_EXISTS,
            ),
            (
                TaskError::InvalidState {
                    container_id: s(),
                    exec_id: s(),
                    command: "pause",
                    status: Status::Created,
                },
                berth_result::BERTH_ERR_FAILED_PRECONDITION,
            ),
            (
                TaskError::Busy {
                    container_id: s(),
                    exec_id: s(),
                    pending: "start",
                },
                berth_result::BERTH_ERR_BUSY,
            ),
            (
                TaskError::Runtime {
                    container_id: s(),
                    exec_id: s(),
                    call: "start",
                    code: Code::Internal,
                    message: s(),
                },
                berth_result::BERTH_ERR_IO,
            ),
            (
                TaskError::Runtime {
                    container_id: s(),
                    exec_id: s(),
                    call: "kill",
                    code: Code::NotFound,
                    message: s(),
                },
                berth_result::BERTH_ERR_NOT_FOUND,
            ),
            (
                TaskError::UnknownCall(CallId(1)),
                berth_result::BERTH_ERR_UNEXPECTED_COMPLETION,
            ),
            (
                TaskError::MissingPid {
                    container_id: s(),
                    exec_id: s(),
                    call: "create",
                },
                berth_result::BERTH_ERR_PROTOCOL,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(code(&e), want, "{e:?}");
        }
        for c in [3, 5, 6, 9, 13, 14] {
            assert_eq!(code_of(c).map(Code::grpc), Some(c));
        }
        assert_eq!(code_of(0), None);
        assert_eq!(code_of(2), None);
    }

    #[test]
    fn status_values_are_containerds() {
        for n in 0..=5 {
            let s = Status::from_wire(n).unwrap();
            assert_eq!(berth_task_status::from(s) as i32, n);
        }
    }

    #[test]
    fn a_panic_is_caught_and_poisons_the_table() {
        let t = table();
        // SAFETY: `t` is live and not in use.
        unsafe { (*t).state.panic_on_next_call = true };
        let mut call = std::mem::MaybeUninit::<berth_task_call>::uninit();
        // SAFETY: `t` is live; the strings are NUL-terminated; `call` is a valid local.
        let r = unsafe {
            berth_task_create(
                t,
                1,
                c"default".as_ptr(),
                c"c1".as_ptr(),
                true,
                c"/b".as_ptr(),
                null(),
                null(),
                0,
                call.as_mut_ptr(),
            )
        };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        // Every later call is refused, the const ones too.
        let mut out = std::mem::MaybeUninit::<berth_task_output>::uninit();
        // SAFETY: `t` is live; `out` is a valid local.
        let r = unsafe { berth_task_poll(t, out.as_mut_ptr()) };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        let mut n = 0;
        // SAFETY: `t` is live; a size query.
        let r = unsafe { berth_task_table_save(t, null_mut(), 0, &mut n) };
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        assert_eq!(
            last_error(t),
            "a call into this task table panicked; free it"
        );
        // SAFETY: `t` came from `berth_task_table_new`.
        unsafe { berth_task_table_free(t) };
    }

    #[test]
    fn lent_strings_survive_until_the_next_call() {
        let t = table();
        let mut call = std::mem::MaybeUninit::<berth_task_call>::uninit();
        // SAFETY: `t` is live; the strings are NUL-terminated; `call` is a valid local.
        let r = unsafe {
            berth_task_create(
                t,
                1,
                c"default".as_ptr(),
                c"c1".as_ptr(),
                true,
                c"/run/b".as_ptr(),
                null(),
                null(),
                0,
                call.as_mut_ptr(),
            )
        };
        assert_eq!(r, berth_result::BERTH_OK);
        // SAFETY: written by the successful call.
        let call = unsafe { call.assume_init() };
        // SAFETY: lent until the next non-const call; none happened.
        let bundle = unsafe { CStr::from_ptr(call.bundle) };
        assert_eq!(bundle.to_bytes(), b"/run/b");
        assert_eq!(call.bundle_len, 6);
        // An id lent by the last call may be passed back into the next one.
        let mut p = std::mem::MaybeUninit::<berth_task_process>::uninit();
        // SAFETY: `call.container_id` is still lent; `p` is a valid local.
        let r = unsafe {
            berth_task_get(
                t,
                c"default".as_ptr(),
                call.container_id,
                null(),
                p.as_mut_ptr(),
            )
        };
        assert_eq!(
            r,
            berth_result::BERTH_ERR_NOT_FOUND,
            "not created until confirmed"
        );
        assert_eq!(last_error(t), "task c1 not found");
        // SAFETY: `t` came from `berth_task_table_new`.
        unsafe { berth_task_table_free(t) };
    }
}
