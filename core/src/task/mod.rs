//! Tasks: the task and exec-process lifecycle of containerd's Tasks API, as a pure machine.
//!
//! A [`TaskTable`] holds every task of every namespace: the init process of a container and
//! its exec processes, keyed by exec id. It decides what each Tasks request means right now —
//! refuse it with a typed error, answer it at once, or ask the driver for one **runtime call**
//! (`runc create`, `runc start`, `runc kill`, …) — and it learns from the driver what the
//! runtime did and what the world did (exits, OOM kills, a dead runtime, a daemon restart).
//! Nothing here runs a process or reads a clock.
//!
//! ## States
//!
//! ```text
//!            Create ok          Start ok           Pause ok
//!   (none) ───────────► Created ───────► Running ─────────► Paused
//!      ▲                   │               │    ◄─────────     │
//!      │                   │ exit          │ exit  Resume ok   │ exit
//!      │ Delete ok         ▼               ▼                   ▼
//!      └──────────────── Stopped ◄──────────────────────────────┘
//!        (also from Created: the runtime kills it)
//! ```
//!
//! An exec process is Created (added, not started), Running or Stopped; it has no paused
//! state of its own, but while its task is paused (or pausing) `Get` reports it as paused, as
//! containerd's shim does. [`Status`] carries containerd's wire numbers.
//!
//! ## The rules
//!
//! | command | accepted when | runtime call | refused with |
//! |---|---|---|---|
//! | `Create` | the container exists, no task (nor a create in progress) | `Create` | `InvalidArgument` (empty id), `NotFound` (no container), `AlreadyExists` |
//! | `Start` (init) | Created | `Start` | `NotFound`, `Unavailable` (busy), `FailedPrecondition` |
//! | `Start` (exec) | exec Created, task Created or Running | `Start` | `NotFound`, `Unavailable`, `FailedPrecondition` |
//! | `Kill` (init) | Created, Running, Paused | `Kill` | `NotFound` (also "process already finished" when Stopped) |
//! | `Kill` (exec) | Running | `Kill` | `FailedPrecondition` (not started), `NotFound` (finished) |
//! | `Pause` / `Resume` | Running / Paused | `Pause` / `Resume` | `NotFound`, `Unavailable`, `FailedPrecondition` |
//! | `Exec` | exec id given and unused, task Created or Running | `Exec` | `InvalidArgument`, `NotFound`, `AlreadyExists`, `FailedPrecondition` |
//! | `CloseIO` | the process exists | `CloseStdin` if `stdin`, else answered | `NotFound` |
//! | `ResizePty` | the process exists | `Resize` if it has a terminal and is not Stopped, else answered | `NotFound` |
//! | `Delete` | Created (the runtime kills it) or Stopped; no lifecycle call in progress | `Delete` | `NotFound`, `Unavailable`, `FailedPrecondition` |
//! | `DeleteProcess` | exec Created or Stopped | `DeleteProcess` | `InvalidArgument`, `NotFound`, `Unavailable`, `FailedPrecondition` |
//! | `Wait` | the process exists (any state until deleted) | none: answered if Stopped, else registered | `NotFound` |
//! | `Get`, `List` | always | none | `NotFound` |
//!
//! (Every [`TaskError`] names its gRPC [`Code`].) Where containerd's shim answers a state
//! error with a bare error (gRPC `Unknown`), berth says `FailedPrecondition`. `Exec` follows
//! containerd and runc, not a stricter reading: a created (not yet started) task accepts execs.
//!
//! ## Commit on success
//!
//! Accepting a command changes no visible state: it records a *pending* call and hands back a
//! [`RuntimeCall`]. The driver performs it and reports [`TaskTable::runtime_ok`] (the state
//! changes, events are published, the command's [`Output::Done`] carries its reply) or
//! [`TaskTable::runtime_failed`] (nothing changes — the rollback is that nothing was applied —
//! and the command fails with the runtime's code, `Internal` or `Unavailable`). While a
//! *lifecycle* call (`Start`, `Pause`, `Resume`, `Delete`, `DeleteProcess`, and the `Create` and
//! `Exec` that reserve their ids) is pending on a process, another lifecycle command on it is
//! refused with `Unavailable` ("busy; retry"); a driver that serialises requests per task never
//! sees that. `Kill`, `CloseIO` and `ResizePty` are never busy. `Get` reports a task whose
//! pause is pending as `PAUSING`.
//!
//! ## Exits, waits and events
//!
//! * [`TaskTable::exited`]: a process exited. It becomes Stopped with its status and time,
//!   `/tasks/exit` is published and every Wait on it is answered. An exit that arrives while
//!   the process's `Start` is pending is held back until the start is reported, so that
//!   `/tasks/start` always precedes its `/tasks/exit` (containerd's shim does the same).
//! * The init's exit does not stop the execs: the kernel kills them (they share its pid
//!   namespace) and their own exits follow. A task deleted before they arrive takes its execs
//!   with it: each still running is reported exited with status 137 (SIGKILL) at the init's
//!   exit time, before `/tasks/delete`; a late exit report then finds nothing (`NotFound`).
//! * Deleting a Created task kills its never-started init: unless an exit was reported
//!   first, the init is reported exited with 137 at the delete's time (containerd answers 0 and
//!   leaves its waiters hanging until the shim goes away; berth answers them).
//! * A Wait on an exec that never started is answered [`WaitResult::Cancelled`] when the exec
//!   is deleted. Every Wait is answered exactly once, or dropped by a daemon restart (its
//!   client is gone with the old daemon) or by [`TaskTable::forget_wait`].
//! * [`TaskTable::runtime_crashed`]: the task's runtime or supervisor died. Its pending calls
//!   fail (`Unavailable`); every running exec, then the init, is reported exited with status
//!   **255** at `now`, the value containerd's `cleanupAfterDeadShim` publishes when it cannot
//!   learn the real one. The task stays, Stopped, until deleted.
//! * [`TaskTable::oom`] publishes `/tasks/oom`; the kill itself arrives as an exit.
//! * Events carry containerd's topics and `containerd.events.Task*` fields; nothing is
//!   published for a refused command or a failed call. `/tasks/exit` always precedes the
//!   `/tasks/delete` of its task. `DeleteProcess` publishes nothing, as containerd 1.6.
//!
//! ## Persistence and restart
//!
//! The table serialises with serde; only confirmed state is persisted (pending calls, waiters
//! and queued outputs are not). Persist whenever [`TaskTable::generation`] changes. After a
//! restart, load the table and call [`TaskTable::restarted`] with the processes the driver
//! finds alive. It adopts what changed while berth was down (a start or pause that completed
//! after the last persist, with its events), and returns the processes the driver must account
//! for — report each one's exit as [`TaskTable::exited`] (or the task as
//! [`TaskTable::runtime_crashed`] if nothing is known) — and the orphans it must kill and
//! delete (created by a call whose success was never recorded).
//!
//! ## Driving it
//!
//! ```
//! use berth_core::task::{
//!     Accepted, CallKind, Command, CreateTask, ProcessExit, Reply, Status, Stdio, TaskTable,
//!     Output, WaitResult,
//! };
//! use berth_core::Instant;
//!
//! let mut table = TaskTable::new();
//! let now = Instant(1_700_000_000_000_000_000);
//! let call = |a: Accepted| match a { Accepted::Call(c) => c, other => panic!("{other:?}") };
//!
//! // ctr run --rm: create, wait before start, start, exit, get, delete.
//! let create = call(table.command(now, "default", Command::Create(CreateTask {
//!     container_id: "c1".into(),
//!     container_exists: true,
//!     bundle: "/run/berth/tasks/default/c1".into(),
//!     rootfs: vec![],
//!     stdio: Stdio::default(),
//! })).unwrap());
//! assert!(matches!(create.kind, CallKind::Create { .. }));
//! table.runtime_ok(now, create.id, 42).unwrap(); // runc create gave pid 42
//!
//! let Accepted::Waiting(wait) = table.command(now, "default", Command::Wait {
//!     container_id: "c1".into(), exec_id: String::new(),
//! }).unwrap() else { panic!() };
//!
//! let start = call(table.command(now, "default", Command::Start {
//!     container_id: "c1".into(), exec_id: String::new(),
//! }).unwrap());
//! table.runtime_ok(now, start.id, 42).unwrap();
//!
//! table.exited(now, ProcessExit {
//!     namespace: "default".into(), container_id: "c1".into(), exec_id: String::new(),
//!     pid: 42, status: 3, at: now,
//! }).unwrap();
//! assert_eq!(table.get("default", "c1", "").unwrap().status, Status::Stopped);
//!
//! let delete = call(table.command(now, "default", Command::Delete {
//!     container_id: "c1".into(),
//! }).unwrap());
//! table.runtime_ok(now, delete.id, 0).unwrap();
//!
//! let outputs: Vec<Output> = std::iter::from_fn(|| table.poll()).collect();
//! let topics: Vec<&str> = outputs.iter().filter_map(|o| match o {
//!     Output::Event(e) => Some(e.topic()),
//!     _ => None,
//! }).collect();
//! assert_eq!(topics, ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
//! assert!(outputs.iter().any(|o| matches!(o,
//!     Output::WaitDone { wait: w, result: WaitResult::Exited(e) } if *w == wait && e.status == 3)));
//! assert!(outputs.iter().any(|o| matches!(o,
//!     Output::Done { call, result: Ok(Reply::Deleted(d)) } if *call == delete.id
//!         && d.exit.map(|e| e.status) == Some(3))));
//! ```

mod table;
#[cfg(test)]
mod tests;

pub use table::{LoadError, TaskTable};

use serde::{Deserialize, Serialize};

use crate::snapshot::Mount;
use crate::Instant;

/// `/tasks/create`
pub const TOPIC_CREATE: &str = "/tasks/create";
/// `/tasks/start`
pub const TOPIC_START: &str = "/tasks/start";
/// `/tasks/exit`
pub const TOPIC_EXIT: &str = "/tasks/exit";
/// `/tasks/delete`
pub const TOPIC_DELETE: &str = "/tasks/delete";
/// `/tasks/paused`
pub const TOPIC_PAUSED: &str = "/tasks/paused";
/// `/tasks/resumed`
pub const TOPIC_RESUMED: &str = "/tasks/resumed";
/// `/tasks/exec-added`
pub const TOPIC_EXEC_ADDED: &str = "/tasks/exec-added";
/// `/tasks/exec-started`
pub const TOPIC_EXEC_STARTED: &str = "/tasks/exec-started";
/// `/tasks/oom`
pub const TOPIC_OOM: &str = "/tasks/oom";

/// The exit status berth reports for a process killed along with its task (SIGKILL: 128 + 9):
/// a Created init removed by `Delete`, execs still running when their task is deleted.
pub const EXIT_KILLED: u32 = 137;
/// The exit status berth reports for every process of a task whose runtime died
/// ([`TaskTable::runtime_crashed`]), as containerd does when the shim is gone.
pub const EXIT_RUNTIME_CRASHED: u32 = 255;

/// The status of a task or process, with containerd's numbers (`containerd.v1.types.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not known (`UNKNOWN` = 0); never reported for a task in the table.
    Unknown = 0,
    /// Created, not started (`CREATED` = 1).
    Created = 1,
    /// Running (`RUNNING` = 2).
    Running = 2,
    /// Exited (`STOPPED` = 3).
    Stopped = 3,
    /// Frozen (`PAUSED` = 4).
    Paused = 4,
    /// A pause is in progress (`PAUSING` = 5).
    Pausing = 5,
}

impl Status {
    /// The value on the wire.
    #[must_use]
    pub const fn wire(self) -> i32 {
        self as i32
    }

    /// The status of a wire value, `None` for a value outside the enum.
    #[must_use]
    pub const fn from_wire(value: i32) -> Option<Status> {
        Some(match value {
            0 => Status::Unknown,
            1 => Status::Created,
            2 => Status::Running,
            3 => Status::Stopped,
            4 => Status::Paused,
            5 => Status::Pausing,
            _ => return None,
        })
    }

    /// containerd's lower-case name (`created`, `running`, …).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Paused => "paused",
            Status::Pausing => "pausing",
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The state of one process as the table records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    /// Created in the runtime (init) or added (exec), not started.
    Created,
    /// Started and not exited.
    Running,
    /// Frozen (the init only: a paused task).
    Paused,
    /// Exited; the exit is recorded.
    Stopped,
}

impl ProcessState {
    /// The status this state reports, before the task's pause is taken into account.
    #[must_use]
    pub const fn status(self) -> Status {
        match self {
            ProcessState::Created => Status::Created,
            ProcessState::Running => Status::Running,
            ProcessState::Paused => Status::Paused,
            ProcessState::Stopped => Status::Stopped,
        }
    }
}

/// A process's standard IO, as the client named it (FIFO paths or URIs; empty for none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Stdio {
    /// stdin.
    pub stdin: String,
    /// stdout.
    pub stdout: String,
    /// stderr (empty with a terminal).
    pub stderr: String,
    /// The process has a terminal.
    pub terminal: bool,
}

/// How a process exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit status (128 + n for a death by signal n).
    pub status: u32,
    /// When it exited.
    pub at: Instant,
}

/// One process as the table stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Its state.
    pub state: ProcessState,
    /// Its pid: the init's from `Create`, an exec's from its `Start`; 0 before.
    pub pid: u32,
    /// Its IO.
    pub stdio: Stdio,
    /// Its exit, once Stopped.
    pub exit: Option<ExitInfo>,
}

/// One task as the table stores it: a container's init process and its exec processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The bundle directory the runtime was given.
    pub bundle: String,
    /// The rootfs mounts it was created with.
    pub rootfs: Vec<Mount>,
    /// The init process.
    pub init: Process,
    /// Exec processes by exec id.
    pub execs: std::collections::BTreeMap<String, Process>,
    /// When its state last changed.
    pub updated_at: Instant,
}

/// `Tasks.Create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTask {
    /// The container (and task) id.
    pub container_id: String,
    /// Whether the container exists in the container store (the caller looks it up).
    pub container_exists: bool,
    /// The bundle directory the driver prepares for the runtime.
    pub bundle: String,
    /// The rootfs mounts.
    pub rootfs: Vec<Mount>,
    /// The init's IO.
    pub stdio: Stdio,
}

/// `Tasks.Exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecProcess {
    /// The task.
    pub container_id: String,
    /// The new process's id; must not be empty.
    pub exec_id: String,
    /// Its IO.
    pub stdio: Stdio,
    /// Its OCI process spec (JSON), passed through to the runtime call.
    pub spec: Vec<u8>,
}

/// A request of the Tasks API. `exec_id` is empty for the init process, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Create a task for a container.
    Create(CreateTask),
    /// Start the init or an exec process.
    Start {
        /// The task.
        container_id: String,
        /// The exec process, or empty for the init.
        exec_id: String,
    },
    /// Signal a process (`all`: every process of the task).
    Kill {
        /// The task.
        container_id: String,
        /// The exec process, or empty for the init.
        exec_id: String,
        /// The signal number.
        signal: u32,
        /// Signal every process of the task (init only).
        all: bool,
    },
    /// Freeze the task.
    Pause {
        /// The task.
        container_id: String,
    },
    /// Thaw the task.
    Resume {
        /// The task.
        container_id: String,
    },
    /// Add an exec process.
    Exec(ExecProcess),
    /// Close a process's stdin (`stdin`; otherwise nothing to do).
    CloseIo {
        /// The task.
        container_id: String,
        /// The exec process, or empty for the init.
        exec_id: String,
        /// Close stdin.
        stdin: bool,
    },
    /// Resize a process's terminal.
    ResizePty {
        /// The task.
        container_id: String,
        /// The exec process, or empty for the init.
        exec_id: String,
        /// Columns.
        width: u32,
        /// Rows.
        height: u32,
    },
    /// Delete the task (Created or Stopped).
    Delete {
        /// The task.
        container_id: String,
    },
    /// Delete an exec process (Created or Stopped).
    DeleteProcess {
        /// The task.
        container_id: String,
        /// The exec process.
        exec_id: String,
    },
    /// Wait for a process to exit.
    Wait {
        /// The task.
        container_id: String,
        /// The exec process, or empty for the init.
        exec_id: String,
    },
    /// A process's state.
    Get {
        /// The task.
        container_id: String,
        /// The exec process, or empty for the init.
        exec_id: String,
    },
    /// Every task of the namespace.
    List,
}

/// Identifies a runtime call the table asked for. Unique for the life of a table (persisted).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct CallId(pub u64);

/// Identifies a registered Wait. Unique for the life of a table (persisted).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct WaitId(pub u64);

/// What the driver must ask of the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallKind {
    /// Create the container's init (`runc create`) in `bundle`, with the rootfs mounted and
    /// the IO opened. Report the init's pid.
    Create {
        /// The bundle directory.
        bundle: String,
        /// The rootfs mounts.
        rootfs: Vec<Mount>,
        /// The init's IO.
        stdio: Stdio,
    },
    /// Start the init (`runc start`) or an exec (`runc exec`). Report its pid.
    Start,
    /// Signal the process (`all`: every process of the container).
    Kill {
        /// The signal number.
        signal: u32,
        /// Signal every process.
        all: bool,
    },
    /// Freeze the container.
    Pause,
    /// Thaw the container.
    Resume,
    /// Prepare an exec process: open its IO, keep its spec for its start (the driver keeps
    /// it, e.g. in the bundle, so that it survives a daemon restart).
    Exec {
        /// Its IO.
        stdio: Stdio,
        /// Its OCI process spec (JSON).
        spec: Vec<u8>,
    },
    /// Close the process's stdin.
    CloseStdin,
    /// Resize the process's terminal.
    Resize {
        /// Columns.
        width: u32,
        /// Rows.
        height: u32,
    },
    /// Delete the container in the runtime (`runc delete`, which kills a created one) and
    /// release its bundle and IO. Must succeed if the runtime no longer knows the container.
    Delete,
    /// Release an exec process's IO and spec.
    DeleteProcess,
}

impl CallKind {
    /// The call's name (`create`, `start`, `kill`, …).
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            CallKind::Create { .. } => "create",
            CallKind::Start => "start",
            CallKind::Kill { .. } => "kill",
            CallKind::Pause => "pause",
            CallKind::Resume => "resume",
            CallKind::Exec { .. } => "exec",
            CallKind::CloseStdin => "close-stdin",
            CallKind::Resize { .. } => "resize",
            CallKind::Delete => "delete",
            CallKind::DeleteProcess => "delete-process",
        }
    }

    /// A lifecycle call: only one at a time per process (see the module docs).
    #[must_use]
    pub const fn is_lifecycle(&self) -> bool {
        !matches!(
            self,
            CallKind::Kill { .. } | CallKind::CloseStdin | CallKind::Resize { .. }
        )
    }
}

/// A runtime call for the driver to make, then report with [`TaskTable::runtime_ok`] or
/// [`TaskTable::runtime_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCall {
    /// Its id.
    pub id: CallId,
    /// The task's namespace.
    pub namespace: String,
    /// The task.
    pub container_id: String,
    /// The exec process, or empty for the init (and for task-wide calls).
    pub exec_id: String,
    /// What to do.
    pub kind: CallKind,
}

/// What an accepted command needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Make this runtime call and report its outcome; the command's reply comes as the
    /// [`Output::Done`] of its id.
    Call(RuntimeCall),
    /// The reply, at once.
    Done(Reply),
    /// A Wait on a process that has not exited: answered later as [`Output::WaitDone`].
    Waiting(WaitId),
}

/// The facts about a process that `Get` and `List` report (`containerd.v1.types.Process`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The task.
    pub container_id: String,
    /// The process id: the container id for the init, else the exec id.
    pub id: String,
    /// Its pid (0 for an exec not started).
    pub pid: u32,
    /// Its status.
    pub status: Status,
    /// Its IO.
    pub stdio: Stdio,
    /// Its exit, once Stopped (the wire's `exit_status` and `exited_at`; zero values if none).
    pub exit: Option<ExitInfo>,
}

/// The answer of `Delete` and `DeleteProcess` (`DeleteResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The container id (Delete) or the exec id (DeleteProcess).
    pub id: String,
    /// The process's pid.
    pub pid: u32,
    /// Its exit (none for an exec that never started).
    pub exit: Option<ExitInfo>,
}

/// A command's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// `Create`: the init's pid.
    Created {
        /// The pid.
        pid: u32,
    },
    /// `Start`: the process's pid.
    Started {
        /// The pid.
        pid: u32,
    },
    /// `Delete`, `DeleteProcess`.
    Deleted(Deleted),
    /// `Kill`, `Pause`, `Resume`, `Exec`, `CloseIO`, `ResizePty`: nothing to say.
    Empty,
    /// `Get`.
    Process(ProcessInfo),
    /// `List`: the init of every task of the namespace, by container id.
    List(Vec<ProcessInfo>),
    /// `Wait` on a process that has exited.
    Exited(ExitInfo),
}

/// How a registered Wait ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult {
    /// The process exited.
    Exited(ExitInfo),
    /// The process was deleted without ever running (an exec never started).
    Cancelled,
}

/// An event to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The namespace (the envelope's).
    pub namespace: String,
    /// What happened.
    pub payload: EventPayload,
}

impl Event {
    /// The topic to publish on.
    #[must_use]
    pub const fn topic(&self) -> &'static str {
        match self.payload {
            EventPayload::Create { .. } => TOPIC_CREATE,
            EventPayload::Start { .. } => TOPIC_START,
            EventPayload::Exit { .. } => TOPIC_EXIT,
            EventPayload::Delete { .. } => TOPIC_DELETE,
            EventPayload::Paused { .. } => TOPIC_PAUSED,
            EventPayload::Resumed { .. } => TOPIC_RESUMED,
            EventPayload::ExecAdded { .. } => TOPIC_EXEC_ADDED,
            EventPayload::ExecStarted { .. } => TOPIC_EXEC_STARTED,
            EventPayload::Oom { .. } => TOPIC_OOM,
        }
    }

    /// The container the event is about.
    #[must_use]
    pub fn container_id(&self) -> &str {
        match &self.payload {
            EventPayload::Create { container_id, .. }
            | EventPayload::Start { container_id, .. }
            | EventPayload::Exit { container_id, .. }
            | EventPayload::Delete { container_id, .. }
            | EventPayload::Paused { container_id }
            | EventPayload::Resumed { container_id }
            | EventPayload::ExecAdded { container_id, .. }
            | EventPayload::ExecStarted { container_id, .. }
            | EventPayload::Oom { container_id } => container_id,
        }
    }
}

/// The payload of an [`Event`]: containerd's `containerd.events.Task*` messages, field for
/// field (a time of `None` goes out as the zero time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventPayload {
    /// `TaskCreate{container_id, bundle, rootfs, io, pid}` (`checkpoint` is always empty).
    Create {
        /// The task.
        container_id: String,
        /// Its bundle.
        bundle: String,
        /// Its rootfs mounts.
        rootfs: Vec<Mount>,
        /// `io{stdin, stdout, stderr, terminal}`.
        io: Stdio,
        /// The init's pid.
        pid: u32,
    },
    /// `TaskStart{container_id, pid}`.
    Start {
        /// The task.
        container_id: String,
        /// The init's pid.
        pid: u32,
    },
    /// `TaskExit{container_id, id, pid, exit_status, exited_at}`.
    Exit {
        /// The task.
        container_id: String,
        /// The container id for the init, else the exec id.
        id: String,
        /// The process's pid.
        pid: u32,
        /// Its exit status.
        exit_status: u32,
        /// When it exited.
        exited_at: Instant,
    },
    /// `TaskDelete{container_id, pid, exit_status, exited_at, id}`.
    Delete {
        /// The task.
        container_id: String,
        /// The init's pid.
        pid: u32,
        /// The init's exit status.
        exit_status: u32,
        /// When the init exited.
        exited_at: Instant,
        /// The container id.
        id: String,
    },
    /// `TaskPaused{container_id}`.
    Paused {
        /// The task.
        container_id: String,
    },
    /// `TaskResumed{container_id}`.
    Resumed {
        /// The task.
        container_id: String,
    },
    /// `TaskExecAdded{container_id, exec_id}`.
    ExecAdded {
        /// The task.
        container_id: String,
        /// The new exec.
        exec_id: String,
    },
    /// `TaskExecStarted{container_id, exec_id, pid}`.
    ExecStarted {
        /// The task.
        container_id: String,
        /// The exec.
        exec_id: String,
        /// Its pid.
        pid: u32,
    },
    /// `TaskOOM{container_id}`.
    Oom {
        /// The task.
        container_id: String,
    },
}

/// What the table hands out through [`TaskTable::poll`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Publish this event.
    Event(Event),
    /// The command whose runtime call has this id is finished: send its reply or error.
    Done {
        /// The call.
        call: CallId,
        /// The reply, or why the command failed.
        result: Result<Reply, TaskError>,
    },
    /// A registered Wait is answered.
    WaitDone {
        /// The wait.
        wait: WaitId,
        /// Its answer.
        result: WaitResult,
    },
}

/// A process exit the driver observed (the reaper's report, or one learnt after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessExit {
    /// The task's namespace.
    pub namespace: String,
    /// The task.
    pub container_id: String,
    /// The exec process, or empty for the init.
    pub exec_id: String,
    /// The pid that exited.
    pub pid: u32,
    /// Its exit status.
    pub status: u32,
    /// When it exited.
    pub at: Instant,
}

/// The state in which the driver found a live process after a daemon restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FoundState {
    /// Created in the runtime, not started.
    Created,
    /// Running.
    Running,
    /// Frozen.
    Paused,
}

/// A live process the driver found after a daemon restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its namespace.
    pub namespace: String,
    /// Its container.
    pub container_id: String,
    /// Its exec id, or empty for the init.
    pub exec_id: String,
    /// Its pid.
    pub pid: u32,
    /// Its state.
    pub state: FoundState,
}

/// A process the table expects alive that the driver did not find after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unaccounted {
    /// Its namespace.
    pub namespace: String,
    /// Its container.
    pub container_id: String,
    /// Its exec id, or empty for the init.
    pub exec_id: String,
    /// Its recorded pid.
    pub pid: u32,
}

/// What [`TaskTable::restarted`] leaves to the driver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Processes the table expects alive but the driver did not find: report each one's exit
    /// ([`TaskTable::exited`]), or the task as crashed ([`TaskTable::runtime_crashed`]).
    pub unaccounted: Vec<Unaccounted>,
    /// Live processes the table does not know (or knows as exited): kill them and delete
    /// their containers in the runtime. Nothing is to be reported back.
    pub orphans: Vec<Found>,
}

/// A failed runtime call, as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFailure {
    /// The gRPC code the command fails with: `Internal` (the runtime failed), `Unavailable`
    /// (it could not be reached or run), or a more precise one the driver knows (e.g.
    /// `NotFound` for a kill that found the process gone).
    pub code: Code,
    /// What the runtime said.
    pub message: String,
}

/// The gRPC status codes task errors map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Code {
    /// `INVALID_ARGUMENT` (3).
    InvalidArgument = 3,
    /// `NOT_FOUND` (5).
    NotFound = 5,
    /// `ALREADY_EXISTS` (6).
    AlreadyExists = 6,
    /// `FAILED_PRECONDITION` (9).
    FailedPrecondition = 9,
    /// `INTERNAL` (13).
    Internal = 13,
    /// `UNAVAILABLE` (14).
    Unavailable = 14,
}

impl Code {
    /// The gRPC code number.
    #[must_use]
    pub const fn grpc(self) -> u32 {
        self as u32
    }
}

/// Names a process in messages: `task "c1"` or `process "e1" of task "c1"`.
fn process_name(container_id: &str, exec_id: &str) -> String {
    if exec_id.is_empty() {
        format!("task {container_id:?}")
    } else {
        format!("process {exec_id:?} of task {container_id:?}")
    }
}

/// Why a command or an input was refused, or a command failed. Each variant names its gRPC
/// [`Code`]. A refused command or input changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// `InvalidArgument`: `Create` without a container id.
    #[error("container id must not be empty")]
    EmptyId,
    /// `InvalidArgument`: `Exec` or `DeleteProcess` without an exec id.
    #[error("exec id cannot be empty (task {container_id:?})")]
    EmptyExecId {
        /// The task.
        container_id: String,
    },
    /// `NotFound`: `Create` for a container that does not exist.
    #[error("container {container_id:?} in namespace {namespace:?}: not found")]
    ContainerNotFound {
        /// The namespace.
        namespace: String,
        /// The container.
        container_id: String,
    },
    /// `NotFound`: no such task (containerd's message, word for word).
    #[error("task {container_id} not found")]
    NotFound {
        /// The namespace.
        namespace: String,
        /// The task.
        container_id: String,
    },
    /// `NotFound`: the task has no such exec process.
    #[error("process {exec_id} of task {container_id} not found")]
    ProcessNotFound {
        /// The namespace.
        namespace: String,
        /// The task.
        container_id: String,
        /// The exec id.
        exec_id: String,
    },
    /// `AlreadyExists`: the container has a task (or one is being created).
    #[error("task {container_id}: already exists")]
    AlreadyExists {
        /// The namespace.
        namespace: String,
        /// The task.
        container_id: String,
    },
    /// `AlreadyExists`: the exec id is taken in this task (or being added).
    #[error("exec process {exec_id:?} of task {container_id:?}: already exists")]
    ExecAlreadyExists {
        /// The task.
        container_id: String,
        /// The exec id.
        exec_id: String,
    },
    /// `FailedPrecondition`: the process is not in a state that allows the command.
    #[error(
        "cannot {command} {}: it is {status}",
        process_name(container_id, exec_id)
    )]
    InvalidState {
        /// The task.
        container_id: String,
        /// The exec id, or empty for the init.
        exec_id: String,
        /// The command (`start`, `pause`, `delete`, …).
        command: &'static str,
        /// The status that forbids it (of the task, for commands that depend on it).
        status: Status,
    },
    /// `NotFound`: a kill of a process that has exited (containerd's "process already
    /// finished").
    #[error("process already finished: {}", process_name(container_id, exec_id))]
    ProcessFinished {
        /// The task.
        container_id: String,
        /// The exec id, or empty for the init.
        exec_id: String,
    },
    /// `Unavailable`: another lifecycle call on the process is in progress; retry once it has
    /// finished.
    #[error(
        "{} is busy: its {pending} is in progress; retry",
        process_name(container_id, exec_id)
    )]
    Busy {
        /// The task.
        container_id: String,
        /// The exec id, or empty for the init.
        exec_id: String,
        /// The call in progress.
        pending: &'static str,
    },
    /// The runtime call failed (code as the driver reported it; usually `Internal` or
    /// `Unavailable`). Nothing changed.
    #[error("{call} of {} failed: {message}", process_name(container_id, exec_id))]
    Runtime {
        /// The task.
        container_id: String,
        /// The exec id, or empty for the init.
        exec_id: String,
        /// The call.
        call: &'static str,
        /// The code.
        code: Code,
        /// The runtime's message.
        message: String,
    },
    /// `Unavailable`: the task's runtime died while the call was pending.
    #[error("{call} of {}: the runtime died", process_name(container_id, exec_id))]
    RuntimeCrashed {
        /// The task.
        container_id: String,
        /// The exec id, or empty for the init.
        exec_id: String,
        /// The call.
        call: &'static str,
    },
    /// `Internal` (a driver bug): no runtime call with this id is pending.
    #[error("no runtime call {} is pending", .0 .0)]
    UnknownCall(CallId),
    /// `Internal` (a driver bug): a `create` or `start` reported without a pid.
    #[error(
        "{call} of {} succeeded without a pid",
        process_name(container_id, exec_id)
    )]
    MissingPid {
        /// The task.
        container_id: String,
        /// The exec id, or empty for the init.
        exec_id: String,
        /// The call.
        call: &'static str,
    },
    /// `Internal` (a driver bug): an exit reported for another pid than the process has.
    #[error(
        "exit of {} reported for pid {reported}, but its pid is {known}",
        process_name(container_id, exec_id)
    )]
    PidMismatch {
        /// The task.
        container_id: String,
        /// The exec id, or empty for the init.
        exec_id: String,
        /// The pid the table knows.
        known: u32,
        /// The pid reported.
        reported: u32,
    },
    /// `FailedPrecondition` (a driver bug): an exit reported for an exec that was never
    /// started.
    #[error(
        "exit of {} reported, but it was never started",
        process_name(container_id, exec_id)
    )]
    NotStarted {
        /// The task.
        container_id: String,
        /// The exec id.
        exec_id: String,
    },
}

impl TaskError {
    /// The gRPC code to answer with.
    #[must_use]
    pub const fn code(&self) -> Code {
        match self {
            TaskError::EmptyId | TaskError::EmptyExecId { .. } => Code::InvalidArgument,
            TaskError::ContainerNotFound { .. }
            | TaskError::NotFound { .. }
            | TaskError::ProcessNotFound { .. }
            | TaskError::ProcessFinished { .. } => Code::NotFound,
            TaskError::AlreadyExists { .. } | TaskError::ExecAlreadyExists { .. } => {
                Code::AlreadyExists
            }
            TaskError::InvalidState { .. } | TaskError::NotStarted { .. } => {
                Code::FailedPrecondition
            }
            TaskError::Busy { .. } | TaskError::RuntimeCrashed { .. } => Code::Unavailable,
            TaskError::Runtime { code, .. } => *code,
            TaskError::UnknownCall(_)
            | TaskError::MissingPid { .. }
            | TaskError::PidMismatch { .. } => Code::Internal,
        }
    }
}
