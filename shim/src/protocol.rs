//! What berthd and a shim share: the bundle's file names, `task.json`, the exit records and the
//! request/reply messages spoken on `<bundle>/shim.sock`.
//!
//! ## The socket protocol
//!
//! JSON lines over a UNIX stream socket. The client writes one [`Request`] per line; the shim
//! answers each with one [`Reply`] line, in order. A connection may carry several requests, but
//! a `wait` holds its connection until the process exits, so clients use one connection per
//! wait. Every request can fail with [`Reply::Error`] carrying an [`ErrorCode`].
//!
//! | request | reply |
//! |---|---|
//! | `{"op":"start","exec_id":""}` | `{"reply":"started","pid":42}` |
//! | `{"op":"exec","exec_id":"e1","stdio":{…}}` (spec already in `execs/e1.process.json`) | `{"reply":"ok"}` |
//! | `{"op":"wait","exec_id":""}` — answered when the process has exited and its record is written | `{"reply":"exited","pid":42,"status":3,"exited_at":…}` |
//! | `{"op":"state"}` | `{"reply":"state","shim_pid":…,"init":{…},"execs":[…]}` |
//! | `{"op":"kill","exec_id":"","signal":9}` (through the process's pidfd) | `{"reply":"ok"}` |
//! | `{"op":"resize_pty","exec_id":"","width":80,"height":24}` | `{"reply":"ok"}` |
//! | `{"op":"close_stdin","exec_id":""}` | `{"reply":"ok"}` |
//! | `{"op":"delete_exec","exec_id":"e1"}` (a stopped or never-started exec) | `{"reply":"exited",…}` |
//! | `{"op":"shutdown"}` — the shim exits after replying | `{"reply":"ok"}` |
//!
//! An empty `exec_id` names the init process.
//!
//! ## Start-up handshake
//!
//! `berth-shim start <bundle>` forks and exits at once; the daemonised copy creates the
//! container and writes a single [`Reply`] line (`started` with the init's pid, or `error`)
//! to the stdout it inherited, then points its stdout at `/dev/null`. By then `shim.sock` is
//! listening.

use serde::{Deserialize, Serialize};

/// `config.json`: the OCI runtime spec, written by berthd.
pub const SPEC_FILE: &str = "config.json";
/// `task.json`: the [`TaskConfig`], written by berthd before it starts the shim.
pub const TASK_FILE: &str = "task.json";
/// `rootfs`: where berthd mounts the container's root filesystem.
pub const ROOTFS_DIR: &str = "rootfs";
/// `shim.sock`: the shim's listening socket (removed when the shim exits).
pub const SOCKET_FILE: &str = "shim.sock";
/// `shim.pid`: the shim's pid.
pub const SHIM_PID_FILE: &str = "shim.pid";
/// `shim.log`: the shim's stderr.
pub const SHIM_LOG_FILE: &str = "shim.log";
/// `init.pid`: the init's pid, written by the runtime (`--pid-file`).
pub const INIT_PID_FILE: &str = "init.pid";
/// `log.json`: the runtime's log (`--log … --log-format json`).
pub const RUNTIME_LOG_FILE: &str = "log.json";
/// `exit/`: one [`ExitRecord`] per exited process, named [`INIT_KEY`] or by exec id.
pub const EXIT_DIR: &str = "exit";
/// The name of the init's exit record.
pub const INIT_KEY: &str = "init";
/// `execs/`: per exec process `<id>.process.json` (its OCI process spec), `<id>.json` (its
/// [`Stdio`]) and `<id>.pid` (written by the runtime).
pub const EXECS_DIR: &str = "execs";

/// The longest container, namespace or exec id (containerd's rule).
pub const MAX_ID_LEN: usize = 76;

/// Whether `id` follows containerd's identifier rule `^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*$`
/// (at most [`MAX_ID_LEN`] bytes), which also makes it a safe file name.
#[must_use]
pub fn valid_id(id: &str) -> bool {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return false;
    }
    let mut prev_sep = true;
    for b in id.bytes() {
        let sep = matches!(b, b'.' | b'_' | b'-');
        if sep && prev_sep || !sep && !b.is_ascii_alphanumeric() {
            return false;
        }
        prev_sep = sep;
    }
    !prev_sep
}

/// The file name of a process's exit record in [`EXIT_DIR`]: [`INIT_KEY`] for the init (empty
/// exec id), else the exec id.
#[must_use]
pub fn exit_key(exec_id: &str) -> &str {
    if exec_id.is_empty() {
        INIT_KEY
    } else {
        exec_id
    }
}

/// A process's standard IO as the client named it: FIFO (or file) paths, empty for none.
///
/// A path that does not exist is created as a FIFO; `file://` names a regular file (stdout
/// and stderr are appended to). With `terminal`, stdout carries the terminal's output and
/// `stderr` is unused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Stdio {
    /// stdin.
    #[serde(default)]
    pub stdin: String,
    /// stdout.
    #[serde(default)]
    pub stdout: String,
    /// stderr.
    #[serde(default)]
    pub stderr: String,
    /// The process has a terminal.
    #[serde(default)]
    pub terminal: bool,
}

/// `task.json`: everything the shim (and a restarted berthd) needs to know about a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskConfig {
    /// The task's namespace.
    pub namespace: String,
    /// The container id (the runtime's container id too).
    pub id: String,
    /// The OCI runtime binary (`runc`, a path, …).
    pub runtime: String,
    /// The runtime's state root (`--root`).
    pub runtime_root: String,
    /// The init's IO.
    pub stdio: Stdio,
    /// How many mounts berthd made at `rootfs/` (unmounted at delete). The shim ignores it.
    #[serde(default)]
    pub rootfs_mounts: u32,
}

impl TaskConfig {
    /// Whether the init is started by reading the runtime's `exec.fifo` (runc's protocol:
    /// what `runc start` itself does) instead of running `<runtime> start`, saving one
    /// process. True when the runtime binary is named `runc`.
    #[must_use]
    pub fn starts_through_exec_fifo(&self) -> bool {
        std::path::Path::new(&self.runtime)
            .file_name()
            .is_some_and(|n| n == "runc")
    }
}

/// How a process exited: the content of its file in [`EXIT_DIR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The pid that exited.
    pub pid: u32,
    /// The exit status: the exit code, or 128 + n for a death by signal n.
    pub status: u32,
    /// When the shim reaped it, in nanoseconds since the Unix epoch.
    pub exited_at: u64,
}

/// A process's lifecycle as the shim sees it (a paused container is the runtime's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessStatus {
    /// Created: the init after `runc create`, an exec after `exec`, neither started.
    Created,
    /// Started and not yet reaped.
    Running,
    /// Reaped; its exit is recorded.
    Stopped,
}

/// One process in a [`Reply::State`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    /// The exec id, empty for the init.
    pub exec_id: String,
    /// Its pid (0 for an exec not started).
    pub pid: u32,
    /// Its status.
    pub status: ProcessStatus,
    /// How it exited, once stopped.
    pub exit: Option<ExitRecord>,
    /// Its IO.
    pub stdio: Stdio,
}

/// A request on the shim's socket. An empty `exec_id` names the init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start the init (`exec.fifo` or `<runtime> start`) or a created exec
    /// (`<runtime> exec --detach`).
    Start {
        /// The process.
        #[serde(default)]
        exec_id: String,
    },
    /// Add an exec process (not started). Its OCI process spec must already be in
    /// `execs/<exec_id>.process.json`.
    Exec {
        /// Its id: a valid id, not [`INIT_KEY`].
        exec_id: String,
        /// Its IO, opened when it starts.
        stdio: Stdio,
    },
    /// Reply once the process has exited (at once if it has).
    Wait {
        /// The process.
        #[serde(default)]
        exec_id: String,
    },
    /// Every process's state.
    State,
    /// Signal one process through its pidfd (a signal for every process of the container is
    /// `runc kill --all`, berthd's business).
    Kill {
        /// The process.
        #[serde(default)]
        exec_id: String,
        /// The signal number.
        signal: i32,
    },
    /// Set the size of the process's terminal.
    ResizePty {
        /// The process.
        #[serde(default)]
        exec_id: String,
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Close the process's stdin: drop the shim's own writer on the stdin FIFO (the process
    /// sees EOF once the client's writer is closed too); with a terminal, send it `^D`.
    CloseStdin {
        /// The process.
        #[serde(default)]
        exec_id: String,
    },
    /// Forget a stopped (or never-started) exec process and its files.
    DeleteExec {
        /// The process.
        exec_id: String,
    },
    /// Exit now (after berthd has deleted the container).
    Shutdown,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No such process (or it has already finished, for a kill).
    NotFound,
    /// An exec with this id exists.
    AlreadyExists,
    /// Not in a state that allows it.
    FailedPrecondition,
    /// A malformed request.
    InvalidArgument,
    /// The runtime or the system failed.
    Internal,
}

/// A reply on the shim's socket (and the start-up handshake line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Done.
    Ok,
    /// The process is running (or, in the handshake, the init is created) with this pid.
    Started {
        /// Its pid.
        pid: u32,
    },
    /// The process has exited.
    Exited(ExitRecord),
    /// The state of every process.
    State {
        /// The shim's own pid.
        shim_pid: u32,
        /// The init.
        init: ProcessState,
        /// The exec processes, in the order they were added.
        execs: Vec<ProcessState>,
    },
    /// The request failed.
    Error {
        /// Why.
        code: ErrorCode,
        /// What happened, for a human.
        message: String,
    },
}

impl Reply {
    /// An error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Reply::Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_containerds_rule() {
        for ok in ["c1", "a-b_c.d", "A", &"x".repeat(76)] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a/b",
            "../x",
            ".",
            "a b",
            &"x".repeat(77),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert_eq!(exit_key(""), "init");
        assert_eq!(exit_key("e1"), "e1");
    }

    #[test]
    fn messages_are_json_lines_with_tags() {
        let r: Request = serde_json::from_str(r#"{"op":"wait"}"#).unwrap();
        assert_eq!(
            r,
            Request::Wait {
                exec_id: String::new()
            }
        );
        let r: Request = serde_json::from_str(r#"{"op":"kill","exec_id":"e","signal":9}"#).unwrap();
        assert_eq!(
            r,
            Request::Kill {
                exec_id: "e".into(),
                signal: 9
            }
        );
        let exit = Reply::Exited(ExitRecord {
            pid: 7,
            status: 137,
            exited_at: 1,
        });
        let line = serde_json::to_string(&exit).unwrap();
        assert_eq!(
            line,
            r#"{"reply":"exited","pid":7,"status":137,"exited_at":1}"#
        );
        assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), exit);
        let err = Reply::error(ErrorCode::NotFound, "gone");
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"reply":"error","code":"not_found","message":"gone"}"#
        );
    }

    #[test]
    fn only_runc_starts_through_its_fifo() {
        let mut c = TaskConfig {
            namespace: "n".into(),
            id: "c".into(),
            runtime: "runc".into(),
            runtime_root: "/r".into(),
            stdio: Stdio::default(),
            rootfs_mounts: 0,
        };
        assert!(c.starts_through_exec_fifo());
        c.runtime = "/usr/sbin/runc".into();
        assert!(c.starts_through_exec_fifo());
        c.runtime = "crun".into();
        assert!(!c.starts_through_exec_fifo());
    }
}
