//! Running containers: bundles, the per-container shim, and the OCI runtime (runc) calls that
//! berthd's Tasks service makes.
//!
//! Every function blocks (berthd runs them on its blocking pool) and keeps no state in memory:
//! what a task is lives in its bundle, so a restarted berthd finds everything again with
//! [`Runtime::recover`].
//!
//! ## Where things are
//!
//! ```text
//! <state>/<namespace>/<id>/          the bundle
//!     config.json                    the OCI spec berthd gave (written atomically)
//!     task.json                      runtime binary, runtime root, IO (berth_shim::protocol::TaskConfig)
//!     rootfs/                        the rootfs mounts, unmounted at delete
//!     shim.sock  shim.pid  shim.log  the live shim
//!     init.pid  log.json             written by the runtime
//!     exit/init  exit/<exec-id>      one exit record per exited process, written before anyone hears of it
//!     execs/<exec-id>.process.json   an exec's OCI process spec
//!     execs/<exec-id>.json           its IO
//!     execs/<exec-id>.pid
//! <runtime_root>/<namespace>/        runc's --root (default <state>/runc/<namespace>)
//! ```
//!
//! ## Who does what
//!
//! * [`Runtime::create`] writes the bundle, mounts the rootfs and starts `berth-shim`, which
//!   daemonises, runs `runc create` with the client's FIFOs as the container's stdio (or a
//!   terminal it copies), and reports the init's pid. It is a child of init, never of berthd.
//! * Through the shim's socket: [`start`](Runtime::start) (the init by reading runc's
//!   `exec.fifo`, an exec by `runc exec --detach`), [`exec`](Runtime::exec),
//!   [`wait`](Runtime::wait), [`state`](Runtime::state), [`kill`](Runtime::kill) of an exec
//!   (its pidfd), [`resize_pty`](Runtime::resize_pty), [`close_stdin`](Runtime::close_stdin),
//!   [`delete_process`](Runtime::delete_process).
//! * Through the runtime directly: [`kill`](Runtime::kill) of the init or of all processes
//!   (`runc kill [--all]`), [`pause`](Runtime::pause), [`resume`](Runtime::resume),
//!   [`pids`](Runtime::pids), [`update`](Runtime::update), [`delete`](Runtime::delete).
//! * From the cgroup files: [`metrics`](Runtime::metrics), and the paused state.
//!
//! When a shim has exited (it does once its init and execs have exited and their exits are
//! recorded), the bundle's files answer instead: waits, state and deletes work the same.
//!
//! An exec id is never empty; an empty `exec_id` argument names the init, as in containerd's
//! messages.

mod cgroup;
mod client;
mod mounts;
mod runc;
mod warm;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ChildStdio};
use std::time::Duration;

use berth_core::snapshot::Mount;
use berth_shim::protocol::{
    exit_key, valid_id, ProcessStatus, Reply, Request, TaskConfig, EXECS_DIR, EXIT_DIR,
    INIT_PID_FILE, ROOTFS_DIR, SHIM_LOG_FILE, SHIM_PID_FILE, SPEC_FILE, TASK_FILE,
};

pub use berth_shim::protocol::{ErrorCode, ExitRecord, Stdio};
pub use cgroup::{CpuUsage, MemoryUsage, Metrics, OomCounter, OomEvents, PidsUsage};
pub use mounts::wait_unused;

use client::{call, CallError};

/// How long a request that runs the runtime (start, exec) may take before berth gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Runtime::delete`] waits for the shim to record the init's death.
const DELETE_WAIT: Duration = Duration::from_secs(10);

/// Where tasks live and what runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The state directory: bundles are `<state>/<namespace>/<id>`.
    pub state: PathBuf,
    /// The `berth-shim` binary.
    pub shim: PathBuf,
    /// The OCI runtime binary used unless a task names another (`runc`).
    pub runtime: String,
    /// Runtime roots: a task's `--root` is `<runtime_root>/<namespace>` unless it names its own.
    pub runtime_root: PathBuf,
}

impl RuntimeConfig {
    /// Bundles under `state`, runc from `PATH` with its roots under `<state>/runc`, and the
    /// shim binary `shim`.
    pub fn new(state: impl Into<PathBuf>, shim: impl Into<PathBuf>) -> Self {
        let state = state.into();
        RuntimeConfig {
            runtime_root: state.join("runc"),
            state,
            shim: shim.into(),
            runtime: "runc".into(),
        }
    }
}

/// A task to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateTask {
    /// Its namespace.
    pub namespace: String,
    /// The container id.
    pub id: String,
    /// The OCI runtime spec (JSON), written as `config.json`. Its `root.path` is normally
    /// `rootfs` (the bundle's, where `rootfs` is mounted).
    pub spec: Vec<u8>,
    /// The rootfs mounts (from the snapshotter), mounted at `<bundle>/rootfs` in order.
    pub rootfs: Vec<Mount>,
    /// The init's IO.
    pub stdio: Stdio,
    /// The runtime binary for this task (runc options' `binary_name`, ctr's `--runc-binary`).
    pub runtime: Option<String>,
    /// The runtime root for this task (runc options' `root`).
    pub runtime_root: Option<PathBuf>,
}

/// A created task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The init's pid (not started yet).
    pub pid: u32,
    /// The bundle directory.
    pub bundle: PathBuf,
}

/// A process's status, with containerd's numbers (`containerd.v1.types.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Not known: the shim is gone and left no exit record (it was killed).
    Unknown = 0,
    /// Created, not started.
    Created = 1,
    /// Running.
    Running = 2,
    /// Exited.
    Stopped = 3,
    /// Frozen (`runc pause`).
    Paused = 4,
}

/// One process of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Its exec id; empty for the init.
    pub exec_id: String,
    /// Its pid (0 for an exec not started).
    pub pid: u32,
    /// Its status.
    pub status: Status,
    /// How it exited, once stopped.
    pub exit: Option<ExitRecord>,
    /// Its IO.
    pub stdio: Stdio,
}

/// A task as the runtime knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// Its namespace.
    pub namespace: String,
    /// The container id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The runtime binary.
    pub runtime: String,
    /// The runtime root.
    pub runtime_root: PathBuf,
    /// The shim's pid while it runs and answers; `None` once it has exited.
    pub shim_pid: Option<u32>,
    /// The init.
    pub init: Process,
    /// The exec processes, in the order they were added.
    pub execs: Vec<Process>,
}

/// A process listed by [`Runtime::pids`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidInfo {
    /// Its pid.
    pub pid: u32,
    /// The exec process it is, if it is one (containerd's `ProcessDetails`).
    pub exec_id: Option<String>,
}

/// A bundle [`Runtime::recover`] could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenBundle {
    /// Its namespace.
    pub namespace: String,
    /// The container id.
    pub id: String,
    /// Its directory.
    pub bundle: PathBuf,
    /// What is wrong (for example no `task.json`: a create interrupted by a crash).
    pub reason: String,
}

/// What [`Runtime::recover`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Every task, live or exited.
    pub tasks: Vec<TaskState>,
    /// Bundles that are not tasks (delete them with [`Runtime::delete`] and `force`).
    pub broken: Vec<BrokenBundle>,
}

/// The gRPC code an error maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A namespace, container id or exec id breaks containerd's identifier rule.
    #[error("invalid {what} {value:?}: letters and digits separated by single '.', '_' or '-', at most 76")]
    InvalidId {
        /// `namespace`, `container id` or `exec id`.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// Another bad argument.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such task.
    #[error("task {id:?} in namespace {namespace:?} not found")]
    NotFound {
        /// The namespace.
        namespace: String,
        /// The container id.
        id: String,
    },
    /// The task exists.
    #[error("task {id:?} in namespace {namespace:?} already exists")]
    AlreadyExists {
        /// The namespace.
        namespace: String,
        /// The container id.
        id: String,
    },
    /// The task is in the wrong state.
    #[error("task {id:?}: {reason}")]
    FailedPrecondition {
        /// The container id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The shim refused or failed the request.
    #[error("{message}")]
    Shim {
        /// The shim's code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The shim could not be started, or died without leaving what was asked for.
    #[error("shim of task {id:?}: {reason}")]
    ShimFailed {
        /// The container id.
        id: String,
        /// What happened.
        reason: String,
    },
    /// The runtime binary failed.
    #[error("{runtime} {command} failed ({status}): {stderr}")]
    Runtime {
        /// The binary.
        runtime: String,
        /// The subcommand and arguments.
        command: String,
        /// How it exited.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// A rootfs mount or unmount failed.
    #[error("rootfs at {target}: {reason}")]
    Mount {
        /// The mount point.
        target: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// The gRPC code berthd answers with.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            RuntimeError::InvalidId { .. } | RuntimeError::InvalidArgument(_) => {
                Code::InvalidArgument
            }
            RuntimeError::NotFound { .. } => Code::NotFound,
            RuntimeError::AlreadyExists { .. } => Code::AlreadyExists,
            RuntimeError::FailedPrecondition { .. } => Code::FailedPrecondition,
            RuntimeError::Shim { code, .. } => match code {
                ErrorCode::NotFound => Code::NotFound,
                ErrorCode::AlreadyExists => Code::AlreadyExists,
                ErrorCode::FailedPrecondition => Code::FailedPrecondition,
                ErrorCode::InvalidArgument => Code::InvalidArgument,
                _ => Code::Internal,
            },
            RuntimeError::ShimFailed { .. } => Code::Unavailable,
            RuntimeError::Runtime { .. } | RuntimeError::Mount { .. } | RuntimeError::Io { .. } => {
                Code::Internal
            }
        }
    }
}

fn io_err(context: impl std::fmt::Display, source: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        context: context.to_string(),
        source,
    }
}

fn check_id(what: &'static str, value: &str) -> Result<(), RuntimeError> {
    if valid_id(value) {
        Ok(())
    } else {
        Err(RuntimeError::InvalidId {
            what,
            value: value.into(),
        })
    }
}

/// Writes `path` through a temporary file renamed over it.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).map_err(|e| io_err(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(format!("renaming to {}", path.display()), e))
}

fn read_exit(bundle: &Path, exec_id: &str) -> Option<ExitRecord> {
    let data = fs::read(bundle.join(EXIT_DIR).join(exit_key(exec_id))).ok()?;
    serde_json::from_slice(&data).ok()
}

fn read_pid_file(path: &Path) -> u32 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn shim_error(code: ErrorCode, message: String) -> RuntimeError {
    RuntimeError::Shim { code, message }
}

/// The runtime driver: stateless, cheap to clone, safe to share between threads.
#[derive(Debug, Clone)]
pub struct Runtime {
    config: RuntimeConfig,
}

impl Runtime {
    /// A driver with this configuration.
    #[must_use]
    pub fn new(config: RuntimeConfig) -> Self {
        Runtime { config }
    }

    /// Its configuration.
    #[must_use]
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The bundle directory of a task: `<state>/<namespace>/<id>`.
    #[must_use]
    pub fn bundle(&self, namespace: &str, id: &str) -> PathBuf {
        self.config.state.join(namespace).join(id)
    }

    /// The bundle of an existing task and its `task.json`.
    fn task(&self, namespace: &str, id: &str) -> Result<(PathBuf, TaskConfig), RuntimeError> {
        check_id("namespace", namespace)?;
        check_id("container id", id)?;
        let bundle = self.bundle(namespace, id);
        let data = match fs::read(bundle.join(TASK_FILE)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotFound {
                    namespace: namespace.into(),
                    id: id.into(),
                })
            }
            Err(e) => {
                return Err(io_err(
                    format!("reading {}/{TASK_FILE}", bundle.display()),
                    e,
                ))
            }
        };
        let cfg = serde_json::from_slice(&data).map_err(|e| {
            io_err(
                format!("parsing {}/{TASK_FILE}", bundle.display()),
                e.into(),
            )
        })?;
        Ok((bundle, cfg))
    }

    /// Runs `<runtime> --root R <args>` and returns its stdout.
    fn run(
        &self,
        cfg: &TaskConfig,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, RuntimeError> {
        let mut cmd = Command::new(&cfg.runtime);
        cmd.arg("--root")
            .arg(&cfg.runtime_root)
            .args(args)
            .stdin(if stdin.is_some() {
                ChildStdio::piped()
            } else {
                ChildStdio::null()
            })
            .stdout(ChildStdio::piped())
            .stderr(ChildStdio::piped());
        let command = args.join(" ");
        let spawn_err = |e| RuntimeError::Runtime {
            runtime: cfg.runtime.clone(),
            command: command.clone(),
            status: "not run".into(),
            stderr: format!("{e}"),
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(data);
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(RuntimeError::Runtime {
            runtime: cfg.runtime.clone(),
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }

    /// A request to the task's shim; `Err(Gone)` when no shim answers.
    fn shim(
        &self,
        bundle: &Path,
        request: &Request,
        timeout: Option<Duration>,
    ) -> Result<Result<Reply, RuntimeError>, CallError> {
        Ok(match call(bundle, request, timeout)? {
            Reply::Error { code, message } => Err(shim_error(code, message)),
            other => Ok(other),
        })
    }

    fn shim_io_error(id: &str, e: std::io::Error) -> RuntimeError {
        RuntimeError::ShimFailed {
            id: id.into(),
            reason: e.to_string(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Create
    // -----------------------------------------------------------------------------------------

    /// Creates a task: the bundle with `config.json`, the rootfs mounted, and a shim that has
    /// run `runc create`. Returns the init's pid; the init runs once [`Runtime::start`]ed.
    ///
    /// On failure nothing is left behind (no bundle, mount, container or shim).
    pub fn create(&self, task: CreateTask) -> Result<Created, RuntimeError> {
        check_id("namespace", &task.namespace)?;
        check_id("container id", &task.id)?;
        // runc will move the init into its cgroup in ~10 ms: start the grace period now.
        warm::before_migration();
        let ns_dir = self.config.state.join(&task.namespace);
        if self.config.runtime_root.starts_with(&ns_dir) {
            return Err(RuntimeError::InvalidArgument(format!(
                "namespace {:?} collides with the runtime root {}",
                task.namespace,
                self.config.runtime_root.display()
            )));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&ns_dir)
            .map_err(|e| io_err(format!("creating {}", ns_dir.display()), e))?;
        let bundle = ns_dir.join(&task.id);
        match fs::DirBuilder::new().mode(0o711).create(&bundle) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists {
                    namespace: task.namespace,
                    id: task.id,
                })
            }
            Err(e) => return Err(io_err(format!("creating {}", bundle.display()), e)),
        }
        let runtime_root = task
            .runtime_root
            .clone()
            .unwrap_or_else(|| self.config.runtime_root.join(&task.namespace));
        let mut cfg = TaskConfig {
            namespace: task.namespace.clone(),
            id: task.id.clone(),
            runtime: task
                .runtime
                .clone()
                .unwrap_or_else(|| self.config.runtime.clone()),
            runtime_root: runtime_root.to_string_lossy().into_owned(),
            stdio: task.stdio.clone(),
            rootfs_mounts: 0,
        };
        match self.create_in(&bundle, &task, &mut cfg) {
            Ok(pid) => Ok(Created { pid, bundle }),
            Err(e) => {
                let _ = self.run(&cfg, &["delete", "--force", &cfg.id], None);
                let _ = mounts::unmount_all(&bundle.join(ROOTFS_DIR));
                if !mounts::is_mount_point(&bundle, &bundle.join(ROOTFS_DIR)) {
                    let _ = fs::remove_dir_all(&bundle);
                }
                Err(e)
            }
        }
    }

    fn create_in(
        &self,
        bundle: &Path,
        task: &CreateTask,
        cfg: &mut TaskConfig,
    ) -> Result<u32, RuntimeError> {
        write_atomic(&bundle.join(SPEC_FILE), &task.spec)?;
        let rootfs = bundle.join(ROOTFS_DIR);
        fs::create_dir(&rootfs).map_err(|e| io_err(format!("creating {}", rootfs.display()), e))?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&cfg.runtime_root)
            .map_err(|e| io_err(format!("creating {}", cfg.runtime_root), e))?;
        if RETIRING.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            // The root of a task deleted a moment ago may still be mounted on these very
            // directories (a task started again on its container's snapshot).
            let dirs = mounts::overlay_dirs(&task.rootfs);
            if !mounts::wait_unused(&dirs, RETIRE_WAIT) {
                return Err(RuntimeError::Mount {
                    target: rootfs,
                    reason: "the snapshot is still mounted for a deleted task".into(),
                });
            }
        }
        let mounted = mounts::mount_all(
            &task.rootfs,
            &rootfs,
            &self.config.shim,
            &mut cfg.rootfs_mounts,
        );
        write_atomic(
            &bundle.join(TASK_FILE),
            &serde_json::to_vec_pretty(cfg).map_err(|e| io_err("encoding task.json", e.into()))?,
        )?;
        mounted?;
        self.spawn_shim(bundle, &cfg.id)
    }

    /// Starts `berth-shim start <bundle>` and reads its handshake: the init's pid.
    fn spawn_shim(&self, bundle: &Path, id: &str) -> Result<u32, RuntimeError> {
        let log_path = bundle.join(SHIM_LOG_FILE);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_err(format!("creating {}", log_path.display()), e))?;
        let mut launcher = Command::new(&self.config.shim)
            .arg("start")
            .arg(bundle)
            .stdin(ChildStdio::null())
            .stdout(ChildStdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| RuntimeError::ShimFailed {
                id: id.into(),
                reason: format!("cannot run {}: {e}", self.config.shim.display()),
            })?;
        let mut line = String::new();
        let read = launcher
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let _ = launcher.wait(); // the launcher exits as soon as the daemon is spawned
        if let Some(Err(e)) = read {
            return Err(Self::shim_io_error(id, e));
        }
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Started { pid }) => Ok(pid),
            Ok(Reply::Error { code, message }) => Err(shim_error(code, message)),
            _ => Err(RuntimeError::ShimFailed {
                id: id.into(),
                reason: format!(
                    "no start-up reply (got {line:?}); see {}",
                    log_path.display()
                ),
            }),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Through the shim
    // -----------------------------------------------------------------------------------------

    /// Starts the init (empty `exec_id`) or an exec process; returns its pid.
    pub fn start(&self, namespace: &str, id: &str, exec_id: &str) -> Result<u32, RuntimeError> {
        let (bundle, _) = self.task(namespace, id)?;
        if !exec_id.is_empty() {
            // `runc exec` moves the process into the container's cgroup (see `warm`).
            warm::before_migration();
        }
        let req = Request::Start {
            exec_id: exec_id.into(),
        };
        match self.shim(&bundle, &req, Some(CALL_TIMEOUT)) {
            Ok(Ok(Reply::Started { pid })) => Ok(pid),
            Ok(Ok(other)) => Err(unexpected(id, &other)),
            Ok(Err(e)) => Err(e),
            Err(CallError::Gone) => Err(RuntimeError::FailedPrecondition {
                id: id.into(),
                reason: "the task has exited (its shim is gone)".into(),
            }),
            Err(CallError::Io(e)) => Err(Self::shim_io_error(id, e)),
        }
    }

    /// Adds an exec process (not started): `spec` is its OCI process spec (JSON).
    pub fn exec(
        &self,
        namespace: &str,
        id: &str,
        exec_id: &str,
        spec: &[u8],
        stdio: Stdio,
    ) -> Result<(), RuntimeError> {
        check_id("exec id", exec_id)?;
        let (bundle, _) = self.task(namespace, id)?;
        let dir = bundle.join(EXECS_DIR);
        fs::create_dir_all(&dir).map_err(|e| io_err(format!("creating {}", dir.display()), e))?;
        let spec_path = dir.join(format!("{exec_id}.process.json"));
        let meta_path = dir.join(format!("{exec_id}.json"));
        if spec_path.exists() {
            return Err(shim_error(
                ErrorCode::AlreadyExists,
                format!("exec {exec_id:?} of task {id:?} already exists"),
            ));
        }
        write_atomic(&spec_path, spec)?;
        write_atomic(
            &meta_path,
            &serde_json::to_vec(&stdio).map_err(|e| io_err("encoding exec IO", e.into()))?,
        )?;
        let req = Request::Exec {
            exec_id: exec_id.into(),
            stdio,
        };
        let result = match self.shim(&bundle, &req, Some(CALL_TIMEOUT)) {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e,
            Err(CallError::Gone) => RuntimeError::FailedPrecondition {
                id: id.into(),
                reason: "the task has exited (its shim is gone)".into(),
            },
            Err(CallError::Io(e)) => Self::shim_io_error(id, e),
        };
        let _ = fs::remove_file(spec_path);
        let _ = fs::remove_file(meta_path);
        Err(result)
    }

    /// Blocks until the process has exited and returns how. Answers at once for a process that
    /// exited already, also while berthd was down.
    pub fn wait(
        &self,
        namespace: &str,
        id: &str,
        exec_id: &str,
    ) -> Result<ExitRecord, RuntimeError> {
        let (bundle, _) = self.task(namespace, id)?;
        self.wait_in(&bundle, id, exec_id, None)
    }

    fn wait_in(
        &self,
        bundle: &Path,
        id: &str,
        exec_id: &str,
        timeout: Option<Duration>,
    ) -> Result<ExitRecord, RuntimeError> {
        let req = Request::Wait {
            exec_id: exec_id.into(),
        };
        match self.shim(bundle, &req, timeout) {
            Ok(Ok(Reply::Exited(rec))) => Ok(rec),
            Ok(Ok(other)) => Err(unexpected(id, &other)),
            Ok(Err(e)) => Err(e),
            Err(CallError::Gone) => read_exit(bundle, exec_id).ok_or_else(|| {
                if exec_id.is_empty()
                    || bundle
                        .join(EXECS_DIR)
                        .join(format!("{exec_id}.json"))
                        .exists()
                {
                    RuntimeError::ShimFailed {
                        id: id.into(),
                        reason: format!(
                            "the shim is gone and recorded no exit for {}",
                            describe(exec_id)
                        ),
                    }
                } else {
                    shim_error(
                        ErrorCode::NotFound,
                        format!("process {exec_id:?} of task {id:?} not found"),
                    )
                }
            }),
            Err(CallError::Io(e)) => Err(Self::shim_io_error(id, e)),
        }
    }

    /// The task's state: every process, with the init `Paused` while the container is frozen.
    pub fn state(&self, namespace: &str, id: &str) -> Result<TaskState, RuntimeError> {
        let (bundle, cfg) = self.task(namespace, id)?;
        self.state_of(bundle, cfg)
    }

    fn state_of(&self, bundle: PathBuf, cfg: TaskConfig) -> Result<TaskState, RuntimeError> {
        let (shim_pid, mut init, execs) =
            match self.shim(&bundle, &Request::State, Some(CALL_TIMEOUT)) {
                Ok(Ok(Reply::State {
                    shim_pid,
                    init,
                    execs,
                })) => (
                    Some(shim_pid),
                    process(init),
                    execs.into_iter().map(process).collect(),
                ),
                Ok(Ok(other)) => return Err(unexpected(&cfg.id, &other)),
                Ok(Err(e)) => return Err(e),
                Err(CallError::Gone) => {
                    let (init, execs) = state_from_files(&bundle);
                    (None, init, execs)
                }
                Err(CallError::Io(e)) => return Err(Self::shim_io_error(&cfg.id, e)),
            };
        if init.status == Status::Running {
            let spec = cgroups_path(&bundle);
            if cgroup::membership(spec.as_deref(), init.pid).is_some_and(|m| cgroup::frozen(&m)) {
                init.status = Status::Paused;
            }
        }
        Ok(TaskState {
            namespace: cfg.namespace,
            id: cfg.id,
            bundle,
            runtime: cfg.runtime,
            runtime_root: PathBuf::from(cfg.runtime_root),
            shim_pid,
            init,
            execs,
        })
    }

    /// Sends `signal` to the init (`runc kill`, which also thaws a paused container for
    /// SIGKILL), to every process of the container (`all`: `runc kill --all`), or to an exec
    /// process (through the shim's pidfd of it, immune to pid reuse).
    pub fn kill(
        &self,
        namespace: &str,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), RuntimeError> {
        let (bundle, cfg) = self.task(namespace, id)?;
        let sig = signal.to_string();
        if exec_id.is_empty() || all {
            let mut args = vec!["kill"];
            if all {
                args.push("--all");
            }
            args.extend([cfg.id.as_str(), sig.as_str()]);
            return match self.run(&cfg, &args, None) {
                Ok(_) => Ok(()),
                Err(RuntimeError::Runtime { stderr, .. })
                    if stderr.contains("not running") || stderr.contains("does not exist") =>
                {
                    Err(shim_error(
                        ErrorCode::NotFound,
                        format!("task {id:?}: process already finished"),
                    ))
                }
                Err(e) => Err(e),
            };
        }
        let req = Request::Kill {
            exec_id: exec_id.into(),
            signal: i32::try_from(signal)
                .map_err(|_| RuntimeError::InvalidArgument(format!("invalid signal {signal}")))?,
        };
        match self.shim(&bundle, &req, Some(CALL_TIMEOUT)) {
            Ok(r) => r.map(|_| ()),
            Err(CallError::Gone) => Err(shim_error(
                ErrorCode::NotFound,
                format!("process {exec_id:?} of task {id:?}: process already finished"),
            )),
            Err(CallError::Io(e)) => Err(Self::shim_io_error(id, e)),
        }
    }

    /// Resizes the process's terminal (nothing for a process without one).
    pub fn resize_pty(
        &self,
        namespace: &str,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), RuntimeError> {
        let (bundle, _) = self.task(namespace, id)?;
        let req = Request::ResizePty {
            exec_id: exec_id.into(),
            width: u16::try_from(width).unwrap_or(u16::MAX),
            height: u16::try_from(height).unwrap_or(u16::MAX),
        };
        self.simple(&bundle, id, &req)
    }

    /// Closes the process's stdin: once the client has closed its end too, the process reads
    /// EOF (with a terminal, it is sent `^D`).
    pub fn close_stdin(
        &self,
        namespace: &str,
        id: &str,
        exec_id: &str,
    ) -> Result<(), RuntimeError> {
        let (bundle, _) = self.task(namespace, id)?;
        let req = Request::CloseStdin {
            exec_id: exec_id.into(),
        };
        self.simple(&bundle, id, &req)
    }

    /// A request answered `ok`; a gone shim means the process is over, which is fine.
    fn simple(&self, bundle: &Path, id: &str, req: &Request) -> Result<(), RuntimeError> {
        match self.shim(bundle, req, Some(CALL_TIMEOUT)) {
            Ok(r) => r.map(|_| ()),
            Err(CallError::Gone) => Ok(()),
            Err(CallError::Io(e)) => Err(Self::shim_io_error(id, e)),
        }
    }

    /// Forgets a stopped (or never started) exec process; returns how it exited (pid 0 and
    /// status 0 for one never started).
    pub fn delete_process(
        &self,
        namespace: &str,
        id: &str,
        exec_id: &str,
    ) -> Result<ExitRecord, RuntimeError> {
        check_id("exec id", exec_id)?;
        let (bundle, _) = self.task(namespace, id)?;
        let req = Request::DeleteExec {
            exec_id: exec_id.into(),
        };
        match self.shim(&bundle, &req, Some(CALL_TIMEOUT)) {
            Ok(Ok(Reply::Exited(rec))) => Ok(rec),
            Ok(Ok(other)) => Err(unexpected(id, &other)),
            Ok(Err(e)) => Err(e),
            Err(CallError::Gone) => {
                let meta = bundle.join(EXECS_DIR).join(format!("{exec_id}.json"));
                if !meta.exists() {
                    return Err(shim_error(
                        ErrorCode::NotFound,
                        format!("process {exec_id:?} of task {id:?} not found"),
                    ));
                }
                let rec = read_exit(&bundle, exec_id).unwrap_or(ExitRecord {
                    pid: 0,
                    status: 0,
                    exited_at: 0,
                });
                let execs = bundle.join(EXECS_DIR);
                for f in [
                    bundle.join(EXIT_DIR).join(exec_id),
                    execs.join(format!("{exec_id}.process.json")),
                    execs.join(format!("{exec_id}.pid")),
                    meta,
                ] {
                    let _ = fs::remove_file(f);
                }
                Ok(rec)
            }
            Err(CallError::Io(e)) => Err(Self::shim_io_error(id, e)),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Through the runtime
    // -----------------------------------------------------------------------------------------

    /// Freezes the container (`runc pause`).
    pub fn pause(&self, namespace: &str, id: &str) -> Result<(), RuntimeError> {
        let (_, cfg) = self.task(namespace, id)?;
        self.run(&cfg, &["pause", &cfg.id], None).map(|_| ())
    }

    /// Thaws the container (`runc resume`).
    pub fn resume(&self, namespace: &str, id: &str) -> Result<(), RuntimeError> {
        let (_, cfg) = self.task(namespace, id)?;
        self.run(&cfg, &["resume", &cfg.id], None).map(|_| ())
    }

    /// The container's processes (`runc ps --format json`), exec processes named.
    pub fn pids(&self, namespace: &str, id: &str) -> Result<Vec<PidInfo>, RuntimeError> {
        let (bundle, cfg) = self.task(namespace, id)?;
        let out = self.run(&cfg, &["ps", "--format", "json", &cfg.id], None)?;
        let pids: Vec<u32> = serde_json::from_slice::<Option<Vec<u32>>>(&out)
            .map_err(|e| io_err("parsing runc ps output", e.into()))?
            .unwrap_or_default();
        let execs = match self.shim(&bundle, &Request::State, Some(CALL_TIMEOUT)) {
            Ok(Ok(Reply::State { execs, .. })) => execs,
            _ => Vec::new(),
        };
        Ok(pids
            .into_iter()
            .map(|pid| PidInfo {
                pid,
                exec_id: execs
                    .iter()
                    .find(|e| e.pid == pid && e.status == ProcessStatus::Running)
                    .map(|e| e.exec_id.clone()),
            })
            .collect())
    }

    /// Changes the container's resources: `resources` is an OCI `LinuxResources` JSON
    /// (`runc update -r -`).
    pub fn update(&self, namespace: &str, id: &str, resources: &[u8]) -> Result<(), RuntimeError> {
        let (_, cfg) = self.task(namespace, id)?;
        self.run(&cfg, &["update", "-r", "-", &cfg.id], Some(resources))
            .map(|_| ())
    }

    /// The container's resource usage, read from its cgroup.
    pub fn metrics(&self, namespace: &str, id: &str) -> Result<Metrics, RuntimeError> {
        let (membership, cfg_id) = self.cgroup(namespace, id)?;
        membership.and_then(|m| cgroup::metrics(&m)).ok_or_else(|| {
            RuntimeError::FailedPrecondition {
                id: cfg_id,
                reason: "its cgroup cannot be found".into(),
            }
        })
    }

    /// The container's cgroup (the spec's `cgroupsPath`, else its init's) and its runtime id.
    fn cgroup(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<(Option<cgroup::Membership>, String), RuntimeError> {
        let (bundle, cfg) = self.task(namespace, id)?;
        let pid = read_pid_file(&bundle.join(INIT_PID_FILE));
        let spec = cgroups_path(&bundle);
        Ok((cgroup::membership(spec.as_deref(), pid), cfg.id))
    }

    /// The counter of the container's processes the OOM killer has killed (`None` if its
    /// cgroup cannot be found). Looked up while the task runs; read when a process exits.
    pub fn oom_counter(&self, namespace: &str, id: &str) -> Option<OomCounter> {
        self.cgroup(namespace, id)
            .ok()
            .and_then(|(m, _)| m)
            .and_then(|m| cgroup::oom_counter(&m))
    }

    /// Deletes the task: the container in the runtime (`runc delete --force`, which kills a
    /// created init; for a stopped runc container berth removes its cgroups and state itself,
    /// saving a runc start), the shim, the rootfs mounts and the bundle. A running task needs
    /// `force` (it is killed). Returns how the init exited, if that is known.
    ///
    /// The root filesystem of a stopped container (own pid namespace: nothing of it runs) is
    /// unmounted just after this returns, on a thread (see `retire_bundle`).
    pub fn delete(
        &self,
        namespace: &str,
        id: &str,
        force: bool,
    ) -> Result<Option<ExitRecord>, RuntimeError> {
        check_id("namespace", namespace)?;
        check_id("container id", id)?;
        let bundle = self.bundle(namespace, id);
        if !bundle.exists() {
            return Err(RuntimeError::NotFound {
                namespace: namespace.into(),
                id: id.into(),
            });
        }
        let mut exit = None;
        let mut stopped = None;
        if let Ok((_, cfg)) = self.task(namespace, id) {
            // With force, a shim that does not answer does not stop the delete.
            let state = match self.state_of(bundle.clone(), cfg.clone()) {
                Ok(s) => Some(s),
                Err(e) if !force => return Err(e),
                Err(_) => None,
            };
            let status = state.as_ref().map_or(Status::Unknown, |s| s.init.status);
            if matches!(status, Status::Running | Status::Paused) && !force {
                return Err(RuntimeError::FailedPrecondition {
                    id: id.into(),
                    reason: "the task is running: kill it first, or delete with force".into(),
                });
            }
            stopped = (status == Status::Stopped)
                .then(|| runc::stopped(&cfg))
                .flatten();
            if !stopped.as_ref().is_some_and(runc::Stopped::delete) {
                match self.run(&cfg, &["delete", "--force", &cfg.id], None) {
                    Ok(_) => {}
                    Err(RuntimeError::Runtime { stderr, .. })
                        if stderr.contains("does not exist") => {}
                    Err(e) => return Err(e),
                }
            }
            exit = state.as_ref().and_then(|s| s.init.exit);
            if state.as_ref().is_none_or(|s| s.shim_pid.is_some()) {
                if exit.is_none() {
                    exit = self.wait_in(&bundle, id, "", Some(DELETE_WAIT)).ok();
                }
                if call(&bundle, &Request::Shutdown, Some(CALL_TIMEOUT)).is_err() {
                    kill_shim(&bundle);
                }
            }
            exit = exit.or_else(|| read_exit(&bundle, ""));
        }
        if stopped.is_some() {
            // Nothing of a stopped container in its own pid namespace runs any more: its root
            // is unmounted after the answer (see `retire_bundle`).
            retire_bundle(&bundle)?;
        } else {
            unmount_and_remove_bundle(&bundle)?;
        }
        Ok(exit)
    }

    // -----------------------------------------------------------------------------------------
    // Restart
    // -----------------------------------------------------------------------------------------

    /// Finds every task after a berthd restart: live shims are asked for their state; the
    /// exits of tasks whose shim finished while berthd was down come from their records.
    pub fn recover(&self) -> Result<Recovery, RuntimeError> {
        let mut out = Recovery::default();
        sweep_deleted(&self.config.state);
        let namespaces = match fs::read_dir(&self.config.state) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(io_err(
                    format!("reading {}", self.config.state.display()),
                    e,
                ))
            }
        };
        let mut namespaces: Vec<_> = namespaces.flatten().map(|e| e.path()).collect();
        namespaces.sort();
        for ns_dir in namespaces {
            let Some(ns) = ns_dir
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if !valid_id(&ns) || self.config.runtime_root.starts_with(&ns_dir) || !ns_dir.is_dir() {
                continue;
            }
            let Ok(entries) = fs::read_dir(&ns_dir) else {
                continue;
            };
            let mut ids: Vec<String> = entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|id| valid_id(id))
                .collect();
            ids.sort();
            for id in ids {
                let bundle = ns_dir.join(&id);
                let found = self
                    .task(&ns, &id)
                    .and_then(|(bundle, cfg)| self.state_of(bundle, cfg));
                match found {
                    Ok(t) => out.tasks.push(t),
                    Err(e) => out.broken.push(BrokenBundle {
                        namespace: ns.clone(),
                        id,
                        bundle,
                        reason: match e {
                            RuntimeError::NotFound { .. } => format!("no {TASK_FILE}"),
                            e => e.to_string(),
                        },
                    }),
                }
            }
        }
        Ok(out)
    }
}

fn describe(exec_id: &str) -> String {
    if exec_id.is_empty() {
        "the init".into()
    } else {
        format!("exec {exec_id:?}")
    }
}

fn unexpected(id: &str, reply: &Reply) -> RuntimeError {
    RuntimeError::ShimFailed {
        id: id.into(),
        reason: format!("unexpected reply {reply:?}"),
    }
}

fn process(p: berth_shim::protocol::ProcessState) -> Process {
    Process {
        status: match p.status {
            ProcessStatus::Created => Status::Created,
            ProcessStatus::Running => Status::Running,
            ProcessStatus::Stopped => Status::Stopped,
        },
        exec_id: p.exec_id,
        pid: p.pid,
        exit: p.exit,
        stdio: p.stdio,
    }
}

/// How long a create waits for a deleted task's root on the same directories to be unmounted.
const RETIRE_WAIT: Duration = Duration::from_secs(10);

/// The prefix of a deleted bundle's name while it is being removed: no task id starts with a
/// dot, so such a directory never collides with a task made right after.
const DELETED_PREFIX: &str = ".deleted-";

/// How many deleted bundles may still have their root filesystem mounted (see
/// [`retire_bundle`]): while none does, a create need not look for one using its directories.
static RETIRING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts one retiring bundle for as long as it lives.
struct Retiring;

impl Retiring {
    fn new() -> Self {
        RETIRING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Retiring
    }
}

impl Drop for Retiring {
    fn drop(&mut self) {
        RETIRING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A name for a deleted bundle beside `bundle`.
fn deleted_name(bundle: &Path) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = bundle.file_name().unwrap_or_default().to_string_lossy();
    bundle.with_file_name(format!(
        "{DELETED_PREFIX}{name}-{}-{seq}",
        std::process::id()
    ))
}

/// Runs `job` on a thread of its own named `name`, or here if no thread can be had.
fn in_background<F: FnOnce() + Send + 'static>(name: &str, job: F) {
    type Slot<F> = std::sync::Mutex<Option<F>>;
    fn take<F>(slot: &Slot<F>) -> Option<F> {
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
    let slot = std::sync::Arc::new(Slot::new(Some(job)));
    let theirs = slot.clone();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || take(&theirs).map(|job| job()));
    if spawned.is_err() {
        if let Some(job) = take(&slot) {
            job();
        }
    }
}

/// Unmounts the bundle's root filesystem and removes the bundle, before answering.
fn unmount_and_remove_bundle(bundle: &Path) -> Result<(), RuntimeError> {
    let rootfs = bundle.join(ROOTFS_DIR);
    mounts::unmount_all(&rootfs)?;
    if mounts::is_mount_point(bundle, &rootfs) {
        return Err(RuntimeError::Mount {
            target: rootfs,
            reason: "still a mount point after unmounting; the bundle is kept".into(),
        });
    }
    remove_bundle(bundle)
}

/// Removes an unmounted bundle. It is renamed out of the way at once (a new task of that id
/// may be created the next moment) and its files, a dozen unlinks that cost about half a
/// millisecond on the path of every delete, go on a thread of their own. Leftovers of a crash
/// are removed by [`sweep_deleted`].
fn remove_bundle(bundle: &Path) -> Result<(), RuntimeError> {
    let trash = deleted_name(bundle);
    if fs::rename(bundle, &trash).is_err() {
        return fs::remove_dir_all(bundle)
            .map_err(|e| io_err(format!("removing {}", bundle.display()), e));
    }
    in_background("bundle-rm", move || {
        if let Err(e) = fs::remove_dir_all(&trash) {
            log::warn!("removing {}: {e}", trash.display());
        }
    });
    Ok(())
}

/// Retires the bundle of a stopped task whose processes are all gone: renamed out of the way
/// with its root filesystem still mounted (a rename moves the mount along), which is then
/// unmounted and removed on a thread. The unmount syncs the upper filesystem (~1.5 ms here),
/// the slowest step of a delete, and nothing needs it done before the answer: whoever uses
/// the root's directories next waits until no mount does ([`mounts::wait_unused`]: a create
/// of the same snapshot, the removal of the snapshot's files), and [`sweep_deleted`]
/// finishes the job after a crash.
fn retire_bundle(bundle: &Path) -> Result<(), RuntimeError> {
    let trash = deleted_name(bundle);
    let retiring = Retiring::new();
    if fs::rename(bundle, &trash).is_err() {
        drop(retiring);
        return unmount_and_remove_bundle(bundle);
    }
    in_background("bundle-umount", move || {
        if !unmount_and_remove(&trash) {
            // still mounted: creates keep looking for mounts on their directories
            std::mem::forget(retiring);
        }
    });
    Ok(())
}

/// Unmounts a deleted bundle's root filesystem and removes the bundle; one whose root stays
/// mounted is kept (never delete under a mount) and reported: `false` then.
fn unmount_and_remove(trash: &Path) -> bool {
    let rootfs = trash.join(ROOTFS_DIR);
    let unmounted = mounts::unmount_all(&rootfs);
    if unmounted.is_err() || mounts::is_mount_point(trash, &rootfs) {
        log::warn!(
            "{}: the root filesystem stays mounted ({:?}); the directory is kept",
            trash.display(),
            unmounted.err()
        );
        return false;
    }
    if let Err(e) = fs::remove_dir_all(trash) {
        log::warn!("removing {}: {e}", trash.display());
    }
    true
}

/// Finishes the deleted bundles a crash left under the task state directory `state`:
/// unmounts their root filesystems and removes them. Run before anything else at start-up
/// (before the snapshotters remove their own leftovers, which may be such a root), and by
/// [`Runtime::recover`] (where nothing is left then, unless the caller skipped the first).
pub fn sweep_deleted(state: &Path) {
    for ns_dir in fs::read_dir(state).into_iter().flatten().flatten() {
        for e in fs::read_dir(ns_dir.path()).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(DELETED_PREFIX) {
                let _ = unmount_and_remove(&e.path());
            }
        }
    }
}

/// Kills the bundle's shim if it still runs (a shim that did not answer a shutdown); the pid
/// is only trusted while its command line is that shim's.
fn kill_shim(bundle: &Path) {
    let Some(pid) = fs::read_to_string(bundle.join(SHIM_PID_FILE))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return;
    };
    // `<shim> start <bundle>` (the forked daemon) or `<shim> serve <bundle>`
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut args = cmdline.split(|b| *b == 0).skip(1);
    let (cmd, dir) = (args.next(), args.next());
    if matches!(cmd, Some(b"start" | b"serve"))
        && dir == Some(bundle.as_os_str().as_encoded_bytes())
    {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// The spec's `linux.cgroupsPath`.
fn cgroups_path(bundle: &Path) -> Option<String> {
    let spec: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join(SPEC_FILE)).ok()?).ok()?;
    spec.get("linux")?
        .get("cgroupsPath")?
        .as_str()
        .map(str::to_string)
}

/// What the files say when no shim answers: recorded exits are final; a process without a
/// record whose shim is gone is `Unknown` (the shim was killed before it could record it).
fn state_from_files(bundle: &Path) -> (Process, Vec<Process>) {
    let cfg: Option<TaskConfig> = fs::read(bundle.join(TASK_FILE))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok());
    let from_record = |exec_id: String, pid: u32, stdio: Stdio| {
        let exit = read_exit(bundle, &exec_id);
        Process {
            status: if exit.is_some() {
                Status::Stopped
            } else {
                Status::Unknown
            },
            pid: exit.map_or(pid, |e| e.pid),
            exec_id,
            exit,
            stdio,
        }
    };
    let init = from_record(
        String::new(),
        read_pid_file(&bundle.join(INIT_PID_FILE)),
        cfg.map(|c| c.stdio).unwrap_or_default(),
    );
    let mut execs = Vec::new();
    if let Ok(entries) = fs::read_dir(bundle.join(EXECS_DIR)) {
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|n| {
                n.strip_suffix(".json")
                    .filter(|s| !s.ends_with(".process"))
                    .map(str::to_string)
            })
            .filter(|id| valid_id(id))
            .collect();
        names.sort();
        for id in names {
            let dir = bundle.join(EXECS_DIR);
            let stdio = fs::read(dir.join(format!("{id}.json")))
                .ok()
                .and_then(|d| serde_json::from_slice(&d).ok())
                .unwrap_or_default();
            let pid = read_pid_file(&dir.join(format!("{id}.pid")));
            let mut p = from_record(id, pid, stdio);
            if p.exit.is_none() && pid == 0 {
                p.status = Status::Created; // never started (and never will be)
            }
            execs.push(p);
        }
    }
    (init, execs)
}
