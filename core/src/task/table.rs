//! The task table: every task of every namespace, the calls in progress and the waiters.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::{
    Accepted, CallId, CallKind, Command, CreateTask, Deleted, Event, EventPayload, ExecProcess,
    ExitInfo, Found, FoundState, Output, Process, ProcessExit, ProcessInfo, ProcessState,
    Recovered, Reply, RuntimeCall, RuntimeFailure, Status, Task, TaskError, Unaccounted, WaitId,
    WaitResult, EXIT_KILLED, EXIT_RUNTIME_CRASHED,
};
use crate::Instant;

/// A runtime call the driver has not reported yet.
#[derive(Debug, Clone)]
struct Pending {
    call: RuntimeCall,
    since: Instant,
    /// An exit of the process that arrived while its `Create` or `Start` was pending: applied
    /// once the call is reported, so that `/tasks/start` precedes `/tasks/exit`.
    deferred_exit: Option<ExitInfo>,
}

/// A registered Wait.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Waiter {
    namespace: String,
    container_id: String,
    exec_id: String,
}

/// Every task of every namespace, with containerd's lifecycle rules. See the
/// [module docs](super).
///
/// Serialises with serde: the tasks and the next call and wait ids. Calls in progress,
/// registered Waits and queued outputs are not persisted (they belong to the running daemon).
/// Deserialising checks every invariant and refuses a table that breaks one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "TableState")]
pub struct TaskTable {
    namespaces: BTreeMap<String, BTreeMap<String, Task>>,
    next_call: u64,
    next_wait: u64,
    #[serde(skip)]
    pending: BTreeMap<CallId, Pending>,
    #[serde(skip)]
    waiters: BTreeMap<WaitId, Waiter>,
    #[serde(skip)]
    outputs: VecDeque<Output>,
    #[serde(skip)]
    generation: u64,
}

/// The serialised form of a [`TaskTable`], checked on the way in.
#[derive(Deserialize)]
struct TableState {
    namespaces: BTreeMap<String, BTreeMap<String, Task>>,
    next_call: u64,
    next_wait: u64,
}

/// Why a persisted table does not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The bytes are not a persisted table (bad JSON, missing fields).
    #[error("task table does not parse: {0}")]
    Parse(String),
    /// A task or process breaks an invariant of the table.
    #[error("task table: {namespace:?}/{container_id:?} {exec_id:?}: {what}")]
    Corrupt {
        /// The namespace.
        namespace: String,
        /// The task.
        container_id: String,
        /// The exec id, or empty for the init (or the task as a whole).
        exec_id: String,
        /// The broken invariant.
        what: &'static str,
    },
}

fn check_process(p: &Process, init: bool) -> Result<(), &'static str> {
    if (p.state == ProcessState::Stopped) != p.exit.is_some() {
        return Err("a process has an exit if and only if it is stopped");
    }
    if !init && p.state == ProcessState::Paused {
        return Err("an exec process cannot be paused");
    }
    let started = init || p.state != ProcessState::Created;
    if started && p.pid == 0 {
        return Err("a process that exists in the runtime has a pid");
    }
    if !started && p.pid != 0 {
        return Err("an exec process that never started has no pid");
    }
    Ok(())
}

impl TryFrom<TableState> for TaskTable {
    type Error = LoadError;

    fn try_from(s: TableState) -> Result<Self, LoadError> {
        for (ns, tasks) in &s.namespaces {
            let bad = |id: &str, exec: &str, what| LoadError::Corrupt {
                namespace: ns.clone(),
                container_id: id.into(),
                exec_id: exec.into(),
                what,
            };
            if ns.is_empty() {
                return Err(bad("", "", "empty namespace"));
            }
            if tasks.is_empty() {
                return Err(bad("", "", "namespace without tasks"));
            }
            for (id, task) in tasks {
                if id.is_empty() {
                    return Err(bad(id, "", "empty container id"));
                }
                check_process(&task.init, true).map_err(|w| bad(id, "", w))?;
                for (exec, p) in &task.execs {
                    if exec.is_empty() {
                        return Err(bad(id, exec, "empty exec id"));
                    }
                    check_process(p, false).map_err(|w| bad(id, exec, w))?;
                }
            }
        }
        Ok(TaskTable {
            namespaces: s.namespaces,
            next_call: s.next_call,
            next_wait: s.next_wait,
            pending: BTreeMap::new(),
            waiters: BTreeMap::new(),
            outputs: VecDeque::new(),
            generation: 0,
        })
    }
}

impl Default for TaskTable {
    fn default() -> Self {
        Self::new()
    }
}

/// The id a process has in `Get`, events and replies: the container id for the init.
fn process_id<'a>(container_id: &'a str, exec_id: &'a str) -> &'a str {
    if exec_id.is_empty() {
        container_id
    } else {
        exec_id
    }
}

impl TaskTable {
    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        TaskTable {
            namespaces: BTreeMap::new(),
            next_call: 1,
            next_wait: 1,
            pending: BTreeMap::new(),
            waiters: BTreeMap::new(),
            outputs: VecDeque::new(),
            generation: 0,
        }
    }

    /// The persisted form: JSON of the tasks and the next ids (see the type's docs).
    #[must_use]
    pub fn to_json(&self) -> String {
        // Maps keyed by strings, plain structs and enums: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Loads a table persisted by [`TaskTable::to_json`] (or any serde serialisation),
    /// checking every invariant. Call [`TaskTable::restarted`] next.
    pub fn from_json(json: &[u8]) -> Result<TaskTable, LoadError> {
        serde_json::from_slice::<TableState>(json)
            .map_err(|e| LoadError::Parse(e.to_string()))?
            .try_into()
    }

    // ----- getters -----

    /// Counts changes of the persisted state: persist the table whenever it differs from the
    /// value at the last persist. Starts at 0 in a new or loaded table.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A task's record.
    #[must_use]
    pub fn task(&self, namespace: &str, container_id: &str) -> Option<&Task> {
        self.namespaces.get(namespace)?.get(container_id)
    }

    /// Every task of a namespace, by container id.
    pub fn tasks(&self, namespace: &str) -> impl Iterator<Item = (&str, &Task)> {
        self.namespaces
            .get(namespace)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, t)| (k.as_str(), t)))
    }

    /// The namespaces that hold tasks.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.keys().map(String::as_str)
    }

    /// True if the namespace holds no task and no task is being created in it.
    #[must_use]
    pub fn is_empty(&self, namespace: &str) -> bool {
        self.namespaces
            .get(namespace)
            .is_none_or(BTreeMap::is_empty)
            && !self.pending.values().any(|p| {
                p.call.namespace == namespace && matches!(p.call.kind, CallKind::Create { .. })
            })
    }

    /// `Get`: a process's facts. `exec_id` empty means the init.
    pub fn get(
        &self,
        namespace: &str,
        container_id: &str,
        exec_id: &str,
    ) -> Result<ProcessInfo, TaskError> {
        let task = self.find_task(namespace, container_id)?;
        let p = find_process(task, namespace, container_id, exec_id)?;
        Ok(ProcessInfo {
            container_id: container_id.into(),
            id: process_id(container_id, exec_id).into(),
            pid: p.pid,
            status: self.process_status(namespace, container_id, task, exec_id, p),
            stdio: p.stdio.clone(),
            exit: p.exit,
        })
    }

    /// `List`: the init of every task of the namespace, by container id.
    #[must_use]
    pub fn list(&self, namespace: &str) -> Vec<ProcessInfo> {
        self.tasks(namespace)
            .filter_map(|(id, _)| self.get(namespace, id, "").ok())
            .collect()
    }

    /// The runtime calls in progress, by id, with the time each was asked for (a driver may
    /// time them out and report a failure).
    pub fn pending_calls(&self) -> impl Iterator<Item = (&RuntimeCall, Instant)> {
        self.pending.values().map(|p| (&p.call, p.since))
    }

    /// A runtime call in progress.
    #[must_use]
    pub fn pending_call(&self, call: CallId) -> Option<&RuntimeCall> {
        self.pending.get(&call).map(|p| &p.call)
    }

    /// How many Waits are registered and not answered.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    // ----- inputs -----

    /// A Tasks request in `namespace`: refused (nothing changes), answered at once, or
    /// accepted with a runtime call to make (see the [module docs](super) for the rules).
    pub fn command(
        &mut self,
        now: Instant,
        namespace: &str,
        command: Command,
    ) -> Result<Accepted, TaskError> {
        let ns = namespace;
        match command {
            Command::Create(create) => self.create(now, ns, create),
            Command::Start {
                container_id: id,
                exec_id: exec,
            } => {
                let task = self.find_task(ns, &id)?;
                let p = find_process(task, ns, &id, &exec)?;
                self.refuse_busy(ns, &id, &exec)?;
                if p.state != ProcessState::Created {
                    let status = self.process_status(ns, &id, task, &exec, p);
                    return Err(invalid(&id, &exec, "start", status));
                }
                if !exec.is_empty()
                    && !matches!(
                        task.init.state,
                        ProcessState::Created | ProcessState::Running
                    )
                {
                    let status = self.task_status(ns, &id, task);
                    return Err(invalid(&id, &exec, "start", status));
                }
                Ok(self.call(now, ns, &id, &exec, CallKind::Start))
            }
            Command::Kill {
                container_id: id,
                exec_id: exec,
                signal,
                all,
            } => {
                let task = self.find_task(ns, &id)?;
                let p = find_process(task, ns, &id, &exec)?;
                match p.state {
                    ProcessState::Stopped => Err(TaskError::ProcessFinished {
                        container_id: id,
                        exec_id: exec,
                    }),
                    ProcessState::Created if !exec.is_empty() => {
                        Err(invalid(&id, &exec, "kill", Status::Created))
                    }
                    _ => {
                        let all = all && exec.is_empty();
                        Ok(self.call(now, ns, &id, &exec, CallKind::Kill { signal, all }))
                    }
                }
            }
            Command::Pause { container_id: id } => {
                self.task_transition(now, ns, &id, "pause", ProcessState::Running)
            }
            Command::Resume { container_id: id } => {
                self.task_transition(now, ns, &id, "resume", ProcessState::Paused)
            }
            Command::Exec(exec) => self.exec(now, ns, exec),
            Command::CloseIo {
                container_id: id,
                exec_id: exec,
                stdin,
            } => {
                let task = self.find_task(ns, &id)?;
                find_process(task, ns, &id, &exec)?;
                if !stdin {
                    return Ok(Accepted::Done(Reply::Empty));
                }
                Ok(self.call(now, ns, &id, &exec, CallKind::CloseStdin))
            }
            Command::ResizePty {
                container_id: id,
                exec_id: exec,
                width,
                height,
            } => {
                let task = self.find_task(ns, &id)?;
                let p = find_process(task, ns, &id, &exec)?;
                if !p.stdio.terminal || p.state == ProcessState::Stopped {
                    return Ok(Accepted::Done(Reply::Empty));
                }
                Ok(self.call(now, ns, &id, &exec, CallKind::Resize { width, height }))
            }
            Command::Delete { container_id: id } => {
                let task = self.find_task(ns, &id)?;
                if let Some((exec, pending)) = self.task_lifecycle_pending(ns, &id) {
                    return Err(TaskError::Busy {
                        container_id: id,
                        exec_id: exec,
                        pending,
                    });
                }
                if matches!(
                    task.init.state,
                    ProcessState::Running | ProcessState::Paused
                ) {
                    let status = self.task_status(ns, &id, task);
                    return Err(invalid(&id, "", "delete", status));
                }
                Ok(self.call(now, ns, &id, "", CallKind::Delete))
            }
            Command::DeleteProcess {
                container_id: id,
                exec_id: exec,
            } => {
                if exec.is_empty() {
                    return Err(TaskError::EmptyExecId { container_id: id });
                }
                let task = self.find_task(ns, &id)?;
                let p = find_process(task, ns, &id, &exec)?;
                self.refuse_busy(ns, &id, &exec)?;
                if p.state == ProcessState::Running {
                    return Err(invalid(&id, &exec, "delete", Status::Running));
                }
                Ok(self.call(now, ns, &id, &exec, CallKind::DeleteProcess))
            }
            Command::Wait {
                container_id: id,
                exec_id: exec,
            } => {
                let task = self.find_task(ns, &id)?;
                let p = find_process(task, ns, &id, &exec)?;
                if let Some(exit) = p.exit {
                    return Ok(Accepted::Done(Reply::Exited(exit)));
                }
                let wait = WaitId(self.next_wait);
                self.next_wait += 1;
                self.waiters.insert(
                    wait,
                    Waiter {
                        namespace: ns.into(),
                        container_id: id,
                        exec_id: exec,
                    },
                );
                Ok(Accepted::Waiting(wait))
            }
            Command::Get {
                container_id: id,
                exec_id: exec,
            } => Ok(Accepted::Done(Reply::Process(self.get(ns, &id, &exec)?))),
            Command::List => Ok(Accepted::Done(Reply::List(self.list(ns)))),
        }
    }

    /// The runtime call `call` succeeded; `pid` is the process's pid for `Create` and `Start`
    /// (ignored otherwise: pass 0). The state changes, its events are queued, then the
    /// command's [`Output::Done`]. Refused (nothing changes) for a call that is not pending, or
    /// a `Create`/`Start` without a pid.
    pub fn runtime_ok(&mut self, now: Instant, call: CallId, pid: u32) -> Result<(), TaskError> {
        let p = self
            .pending
            .get(&call)
            .ok_or(TaskError::UnknownCall(call))?;
        if pid == 0 && matches!(p.call.kind, CallKind::Create { .. } | CallKind::Start) {
            return Err(TaskError::MissingPid {
                container_id: p.call.container_id.clone(),
                exec_id: p.call.exec_id.clone(),
                call: p.call.kind.name(),
            });
        }
        let Some(Pending {
            call: rc,
            deferred_exit,
            ..
        }) = self.pending.remove(&call)
        else {
            return Err(TaskError::UnknownCall(call));
        };
        let (ns, id, exec) = (rc.namespace, rc.container_id, rc.exec_id);
        let reply = match rc.kind {
            CallKind::Create {
                bundle,
                rootfs,
                stdio,
            } => {
                self.event(
                    &ns,
                    EventPayload::Create {
                        container_id: id.clone(),
                        bundle: bundle.clone(),
                        rootfs: rootfs.clone(),
                        io: stdio.clone(),
                        pid,
                    },
                );
                let task = Task {
                    bundle,
                    rootfs,
                    init: Process {
                        state: ProcessState::Created,
                        pid,
                        stdio,
                        exit: None,
                    },
                    execs: BTreeMap::new(),
                    updated_at: now,
                };
                self.namespaces
                    .entry(ns.clone())
                    .or_default()
                    .insert(id.clone(), task);
                self.generation += 1;
                if let Some(exit) = deferred_exit {
                    self.apply_exit(now, &ns, &id, "", exit);
                }
                Reply::Created { pid }
            }
            CallKind::Start => {
                if let Some(p) = self.process_mut(&ns, &id, &exec) {
                    if p.state == ProcessState::Created {
                        p.state = ProcessState::Running;
                        p.pid = pid;
                        self.touch(now, &ns, &id);
                        let payload = if exec.is_empty() {
                            EventPayload::Start {
                                container_id: id.clone(),
                                pid,
                            }
                        } else {
                            EventPayload::ExecStarted {
                                container_id: id.clone(),
                                exec_id: exec.clone(),
                                pid,
                            }
                        };
                        self.event(&ns, payload);
                    }
                }
                if let Some(exit) = deferred_exit {
                    self.apply_exit(now, &ns, &id, &exec, exit);
                }
                Reply::Started { pid }
            }
            CallKind::Pause | CallKind::Resume => {
                let (from, to, payload) = if matches!(rc.kind, CallKind::Pause) {
                    (
                        ProcessState::Running,
                        ProcessState::Paused,
                        EventPayload::Paused {
                            container_id: id.clone(),
                        },
                    )
                } else {
                    (
                        ProcessState::Paused,
                        ProcessState::Running,
                        EventPayload::Resumed {
                            container_id: id.clone(),
                        },
                    )
                };
                // A task that exited meanwhile stays Stopped; nothing to announce.
                if let Some(p) = self.process_mut(&ns, &id, "") {
                    if p.state == from {
                        p.state = to;
                        self.touch(now, &ns, &id);
                        self.event(&ns, payload);
                    }
                }
                Reply::Empty
            }
            CallKind::Exec { stdio, .. } => {
                if let Some(task) = self.task_mut(&ns, &id) {
                    task.execs.insert(
                        exec.clone(),
                        Process {
                            state: ProcessState::Created,
                            pid: 0,
                            stdio,
                            exit: None,
                        },
                    );
                    self.touch(now, &ns, &id);
                    self.event(
                        &ns,
                        EventPayload::ExecAdded {
                            container_id: id.clone(),
                            exec_id: exec.clone(),
                        },
                    );
                }
                Reply::Empty
            }
            CallKind::Delete => match self.delete_task(now, &ns, &id) {
                Some(deleted) => Reply::Deleted(deleted),
                None => Reply::Empty,
            },
            CallKind::DeleteProcess => {
                let removed = self.task_mut(&ns, &id).and_then(|t| t.execs.remove(&exec));
                match removed {
                    Some(p) => {
                        self.touch(now, &ns, &id);
                        self.resolve_waiters(&ns, &id, Some(&exec), WaitResult::Cancelled);
                        Reply::Deleted(Deleted {
                            id: exec.clone(),
                            pid: p.pid,
                            exit: p.exit,
                        })
                    }
                    None => Reply::Empty,
                }
            }
            CallKind::Kill { .. } | CallKind::CloseStdin | CallKind::Resize { .. } => Reply::Empty,
        };
        self.outputs.push_back(Output::Done {
            call,
            result: Ok(reply),
        });
        Ok(())
    }

    /// The runtime call `call` failed: nothing it asked for is applied, and the command fails
    /// with `failure`'s code (its [`Output::Done`]). An exit the init made while its `Start`
    /// was pending is applied now. Refused for a call that is not pending.
    pub fn runtime_failed(
        &mut self,
        now: Instant,
        call: CallId,
        failure: RuntimeFailure,
    ) -> Result<(), TaskError> {
        let p = self
            .pending
            .remove(&call)
            .ok_or(TaskError::UnknownCall(call))?;
        let error = TaskError::Runtime {
            container_id: p.call.container_id.clone(),
            exec_id: p.call.exec_id.clone(),
            call: p.call.kind.name(),
            code: failure.code,
            message: failure.message,
        };
        self.roll_back(now, p);
        self.outputs.push_back(Output::Done {
            call,
            result: Err(error),
        });
        Ok(())
    }

    /// A process exited. It becomes Stopped with this status and time, `/tasks/exit` is
    /// queued and every Wait on it answered — unless its `Create` or `Start` is pending: then
    /// the exit is held until that call is reported. Refused (nothing changes) for an unknown
    /// task or process (`NotFound`; e.g. an exec's late exit after its task was deleted), a
    /// process already Stopped (`NotFound`), an exec never started, or another pid.
    pub fn exited(&mut self, now: Instant, exit: ProcessExit) -> Result<(), TaskError> {
        let (ns, id, exec) = (
            exit.namespace.as_str(),
            exit.container_id.as_str(),
            exit.exec_id.as_str(),
        );
        let info = ExitInfo {
            status: exit.status,
            at: exit.at,
        };
        // Held back while the process's create or start is pending.
        let held = self.pending.values_mut().find(|p| {
            p.call.namespace == ns
                && p.call.container_id == id
                && p.call.exec_id == exec
                && matches!(p.call.kind, CallKind::Create { .. } | CallKind::Start)
        });
        if let Some(p) = held {
            if p.deferred_exit.is_some() {
                return Err(TaskError::ProcessFinished {
                    container_id: id.into(),
                    exec_id: exec.into(),
                });
            }
            p.deferred_exit = Some(info);
            return Ok(());
        }
        let task = self.find_task(ns, id)?;
        let p = find_process(task, ns, id, exec)?;
        match p.state {
            ProcessState::Stopped => {
                return Err(TaskError::ProcessFinished {
                    container_id: id.into(),
                    exec_id: exec.into(),
                })
            }
            ProcessState::Created if !exec.is_empty() => {
                return Err(TaskError::NotStarted {
                    container_id: id.into(),
                    exec_id: exec.into(),
                })
            }
            _ => {}
        }
        if p.pid != exit.pid {
            return Err(TaskError::PidMismatch {
                container_id: id.into(),
                exec_id: exec.into(),
                known: p.pid,
                reported: exit.pid,
            });
        }
        let (ns, id, exec) = (ns.to_owned(), id.to_owned(), exec.to_owned());
        self.apply_exit(now, &ns, &id, &exec, info);
        Ok(())
    }

    /// The kernel OOM-killed a process of the task: queues `/tasks/oom` (the kill itself
    /// arrives as an exit). `NotFound` for an unknown task.
    pub fn oom(&mut self, namespace: &str, container_id: &str) -> Result<(), TaskError> {
        self.find_task(namespace, container_id)?;
        self.event(
            namespace,
            EventPayload::Oom {
                container_id: container_id.into(),
            },
        );
        Ok(())
    }

    /// The task's runtime (or its supervisor) died. Its pending calls fail with
    /// `Unavailable`; then every running exec, and the init unless it has exited, is reported
    /// exited with status [`EXIT_RUNTIME_CRASHED`] (255) at `now`. `NotFound` if the table
    /// knows nothing of the task.
    pub fn runtime_crashed(
        &mut self,
        now: Instant,
        namespace: &str,
        container_id: &str,
    ) -> Result<(), TaskError> {
        let calls: Vec<CallId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.call.namespace == namespace && p.call.container_id == container_id)
            .map(|(id, _)| *id)
            .collect();
        if calls.is_empty() {
            self.find_task(namespace, container_id)?;
        }
        for call in calls {
            let Some(p) = self.pending.remove(&call) else {
                continue;
            };
            let error = TaskError::RuntimeCrashed {
                container_id: p.call.container_id.clone(),
                exec_id: p.call.exec_id.clone(),
                call: p.call.kind.name(),
            };
            self.roll_back(now, p);
            self.outputs.push_back(Output::Done {
                call,
                result: Err(error),
            });
        }
        let Some(task) = self.task(namespace, container_id) else {
            return Ok(());
        };
        let crashed = ExitInfo {
            status: EXIT_RUNTIME_CRASHED,
            at: now,
        };
        let running: Vec<String> = task
            .execs
            .iter()
            .filter(|(_, p)| p.state == ProcessState::Running)
            .map(|(e, _)| e.clone())
            .collect();
        let init_alive = task.init.state != ProcessState::Stopped;
        for exec in running {
            self.apply_exit(now, namespace, container_id, &exec, crashed);
        }
        if init_alive {
            self.apply_exit(now, namespace, container_id, "", crashed);
        }
        Ok(())
    }

    /// The daemon restarted: the table was loaded from its last persist, and the driver found
    /// these processes alive. Calls in progress, registered Waits and queued outputs of the
    /// old daemon are dropped (their clients are gone). What changed while berth was down is
    /// adopted, with its events: an init found running that was recorded Created (`/tasks/
    /// start`), found paused or running against the record (`/tasks/paused`, `/tasks/
    /// resumed`), an exec found running that was recorded Created (`/tasks/exec-started`).
    /// Returns the processes the driver must report exits for and the orphans it must remove.
    pub fn restarted(&mut self, now: Instant, found: Vec<Found>) -> Recovered {
        self.pending.clear();
        self.waiters.clear();
        self.outputs.clear();
        let mut alive: BTreeMap<(String, String, String), Found> = BTreeMap::new();
        for f in found {
            let key = (
                f.namespace.clone(),
                f.container_id.clone(),
                f.exec_id.clone(),
            );
            alive.entry(key).or_insert(f);
        }
        let mut recovered = Recovered::default();
        let keys: Vec<(String, String)> = self
            .namespaces
            .iter()
            .flat_map(|(ns, tasks)| tasks.keys().map(move |id| (ns.clone(), id.clone())))
            .collect();
        for (ns, id) in keys {
            let Some(task) = self.task(&ns, &id) else {
                continue;
            };
            let mut processes = vec![String::new()];
            processes.extend(task.execs.keys().cloned());
            for exec in processes {
                let Some(p) = self.process_mut(&ns, &id, &exec) else {
                    continue;
                };
                let key = (ns.clone(), id.clone(), exec.clone());
                if p.state == ProcessState::Stopped {
                    continue; // found alive: an orphan, below
                }
                let Some(f) = alive.remove(&key) else {
                    if exec.is_empty() || p.state == ProcessState::Running {
                        recovered.unaccounted.push(Unaccounted {
                            namespace: ns.clone(),
                            container_id: id.clone(),
                            exec_id: exec.clone(),
                            pid: p.pid,
                        });
                    }
                    continue;
                };
                let before = (p.state, p.pid);
                let mut events = Vec::new();
                let started = |pid| {
                    if exec.is_empty() {
                        EventPayload::Start {
                            container_id: id.clone(),
                            pid,
                        }
                    } else {
                        EventPayload::ExecStarted {
                            container_id: id.clone(),
                            exec_id: exec.clone(),
                            pid,
                        }
                    }
                };
                let paused = EventPayload::Paused {
                    container_id: id.clone(),
                };
                let resumed = EventPayload::Resumed {
                    container_id: id.clone(),
                };
                match (p.state, f.state, exec.is_empty()) {
                    (ProcessState::Created, FoundState::Running, _)
                    | (ProcessState::Created, FoundState::Paused, false) => {
                        p.state = ProcessState::Running;
                        events.push(started(f.pid));
                    }
                    (ProcessState::Created, FoundState::Paused, true) => {
                        p.state = ProcessState::Paused;
                        events.push(started(f.pid));
                        events.push(paused);
                    }
                    (ProcessState::Running, FoundState::Paused, true) => {
                        p.state = ProcessState::Paused;
                        events.push(paused);
                    }
                    (ProcessState::Paused, FoundState::Running, true) => {
                        p.state = ProcessState::Running;
                        events.push(resumed);
                    }
                    // The same state, or one a process cannot go back to (a started process
                    // found "created"): the record stands.
                    _ => {}
                }
                if p.state != ProcessState::Created {
                    p.pid = f.pid;
                }
                if (p.state, p.pid) != before {
                    self.touch(now, &ns, &id);
                }
                for e in events {
                    self.event(&ns, e);
                }
            }
        }
        recovered.orphans = alive.into_values().collect();
        recovered
    }

    /// Drops a registered Wait whose client went away; it will not be answered. False if it
    /// was not registered.
    pub fn forget_wait(&mut self, wait: WaitId) -> bool {
        self.waiters.remove(&wait).is_some()
    }

    // ----- outputs -----

    /// The next output: an event to publish, a finished command, an answered Wait. Drain it
    /// after every input.
    #[must_use]
    pub fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    // ----- internals -----

    fn create(
        &mut self,
        now: Instant,
        ns: &str,
        create: CreateTask,
    ) -> Result<Accepted, TaskError> {
        let id = create.container_id;
        if id.is_empty() {
            return Err(TaskError::EmptyId);
        }
        if !create.container_exists {
            return Err(TaskError::ContainerNotFound {
                namespace: ns.into(),
                container_id: id,
            });
        }
        let creating = self.pending.values().any(|p| {
            p.call.namespace == ns
                && p.call.container_id == id
                && matches!(p.call.kind, CallKind::Create { .. })
        });
        if creating || self.task(ns, &id).is_some() {
            return Err(TaskError::AlreadyExists {
                namespace: ns.into(),
                container_id: id,
            });
        }
        let kind = CallKind::Create {
            bundle: create.bundle,
            rootfs: create.rootfs,
            stdio: create.stdio,
        };
        Ok(self.call(now, ns, &id, "", kind))
    }

    fn exec(&mut self, now: Instant, ns: &str, exec: ExecProcess) -> Result<Accepted, TaskError> {
        let (id, e) = (exec.container_id, exec.exec_id);
        if e.is_empty() {
            return Err(TaskError::EmptyExecId { container_id: id });
        }
        let task = self.find_task(ns, &id)?;
        let adding = self.pending.values().any(|p| {
            p.call.namespace == ns
                && p.call.container_id == id
                && p.call.exec_id == e
                && matches!(p.call.kind, CallKind::Exec { .. })
        });
        if adding || task.execs.contains_key(&e) {
            return Err(TaskError::ExecAlreadyExists {
                container_id: id,
                exec_id: e,
            });
        }
        if let Some((exec_id, pending)) = self.delete_pending(ns, &id) {
            return Err(TaskError::Busy {
                container_id: id,
                exec_id,
                pending,
            });
        }
        if !matches!(
            task.init.state,
            ProcessState::Created | ProcessState::Running
        ) {
            let status = self.task_status(ns, &id, task);
            return Err(invalid(&id, &e, "exec", status));
        }
        let kind = CallKind::Exec {
            stdio: exec.stdio,
            spec: exec.spec,
        };
        Ok(self.call(now, ns, &id, &e, kind))
    }

    /// Pause or resume: the init must be in `from`.
    fn task_transition(
        &mut self,
        now: Instant,
        ns: &str,
        id: &str,
        command: &'static str,
        from: ProcessState,
    ) -> Result<Accepted, TaskError> {
        let task = self.find_task(ns, id)?;
        self.refuse_busy(ns, id, "")?;
        if task.init.state != from {
            let status = self.task_status(ns, id, task);
            return Err(invalid(id, "", command, status));
        }
        let kind = if from == ProcessState::Running {
            CallKind::Pause
        } else {
            CallKind::Resume
        };
        Ok(self.call(now, ns, id, "", kind))
    }

    /// Records a pending call and hands it out.
    fn call(&mut self, now: Instant, ns: &str, id: &str, exec: &str, kind: CallKind) -> Accepted {
        let call = RuntimeCall {
            id: CallId(self.next_call),
            namespace: ns.into(),
            container_id: id.into(),
            exec_id: exec.into(),
            kind,
        };
        self.next_call += 1;
        self.pending.insert(
            call.id,
            Pending {
                call: call.clone(),
                since: now,
                deferred_exit: None,
            },
        );
        Accepted::Call(call)
    }

    /// Undoes what a pending call held: a create's or an exec's reserved id (nothing to do:
    /// they were never applied) and an exit held back during a start. The init existed in the
    /// runtime before its start, so its held exit is applied; an exec's is dropped with the
    /// start that failed.
    fn roll_back(&mut self, now: Instant, p: Pending) {
        if let (CallKind::Start, Some(exit)) = (&p.call.kind, p.deferred_exit) {
            if p.call.exec_id.is_empty() {
                let c = p.call;
                self.apply_exit(now, &c.namespace, &c.container_id, "", exit);
            }
        }
    }

    /// Removes a task whose `Delete` the runtime carried out. A Created init is reported
    /// killed (137, now) unless its exit is known; running execs are reported killed with the
    /// init (137, at the init's exit time); execs never started cancel their waiters.
    fn delete_task(&mut self, now: Instant, ns: &str, id: &str) -> Option<Deleted> {
        let task = self.task(ns, id)?;
        let init_exit = match task.init.exit {
            Some(e) => e,
            None => {
                let killed = ExitInfo {
                    status: EXIT_KILLED,
                    at: now,
                };
                self.apply_exit(now, ns, id, "", killed);
                killed
            }
        };
        let task = self.task(ns, id)?;
        let running: Vec<String> = task
            .execs
            .iter()
            .filter(|(_, p)| p.state == ProcessState::Running)
            .map(|(e, _)| e.clone())
            .collect();
        for exec in running {
            let killed = ExitInfo {
                status: EXIT_KILLED,
                at: init_exit.at,
            };
            self.apply_exit(now, ns, id, &exec, killed);
        }
        let tasks = self.namespaces.get_mut(ns)?;
        let task = tasks.remove(id)?;
        if tasks.is_empty() {
            self.namespaces.remove(ns);
        }
        self.generation += 1;
        self.resolve_waiters(ns, id, None, WaitResult::Cancelled);
        self.event(
            ns,
            EventPayload::Delete {
                container_id: id.into(),
                pid: task.init.pid,
                exit_status: init_exit.status,
                exited_at: init_exit.at,
                id: id.into(),
            },
        );
        Some(Deleted {
            id: id.into(),
            pid: task.init.pid,
            exit: Some(init_exit),
        })
    }

    /// Stops a process: records the exit, queues `/tasks/exit`, answers its Waits.
    fn apply_exit(&mut self, now: Instant, ns: &str, id: &str, exec: &str, exit: ExitInfo) {
        let Some(p) = self.process_mut(ns, id, exec) else {
            return;
        };
        if p.state == ProcessState::Stopped {
            return;
        }
        p.state = ProcessState::Stopped;
        p.exit = Some(exit);
        let pid = p.pid;
        self.touch(now, ns, id);
        self.event(
            ns,
            EventPayload::Exit {
                container_id: id.into(),
                id: process_id(id, exec).into(),
                pid,
                exit_status: exit.status,
                exited_at: exit.at,
            },
        );
        self.resolve_waiters(ns, id, Some(exec), WaitResult::Exited(exit));
    }

    /// Answers the Waits on one process (`Some(exec)`) or on every process of a task.
    fn resolve_waiters(&mut self, ns: &str, id: &str, exec: Option<&str>, result: WaitResult) {
        let done: Vec<WaitId> = self
            .waiters
            .iter()
            .filter(|(_, w)| {
                w.namespace == ns && w.container_id == id && exec.is_none_or(|e| w.exec_id == e)
            })
            .map(|(id, _)| *id)
            .collect();
        for wait in done {
            self.waiters.remove(&wait);
            self.outputs.push_back(Output::WaitDone { wait, result });
        }
    }

    fn event(&mut self, ns: &str, payload: EventPayload) {
        self.outputs.push_back(Output::Event(Event {
            namespace: ns.into(),
            payload,
        }));
    }

    /// Marks a task changed at `now` (and the table's persisted state changed).
    fn touch(&mut self, now: Instant, ns: &str, id: &str) {
        if let Some(t) = self.task_mut(ns, id) {
            t.updated_at = now;
        }
        self.generation += 1;
    }

    fn task_mut(&mut self, ns: &str, id: &str) -> Option<&mut Task> {
        self.namespaces.get_mut(ns)?.get_mut(id)
    }

    fn process_mut(&mut self, ns: &str, id: &str, exec: &str) -> Option<&mut Process> {
        let task = self.task_mut(ns, id)?;
        if exec.is_empty() {
            Some(&mut task.init)
        } else {
            task.execs.get_mut(exec)
        }
    }

    fn find_task(&self, ns: &str, id: &str) -> Result<&Task, TaskError> {
        self.task(ns, id).ok_or_else(|| TaskError::NotFound {
            namespace: ns.into(),
            container_id: id.into(),
        })
    }

    /// The status `Get` reports for the task: the init's, or `Pausing` while a pause is
    /// pending.
    fn task_status(&self, ns: &str, id: &str, task: &Task) -> Status {
        let pausing = task.init.state == ProcessState::Running
            && self.pending.values().any(|p| {
                p.call.namespace == ns
                    && p.call.container_id == id
                    && matches!(p.call.kind, CallKind::Pause)
            });
        if pausing {
            Status::Pausing
        } else {
            task.init.state.status()
        }
    }

    /// The status `Get` reports for a process: an exec of a paused (or pausing) task is
    /// reported paused, as containerd's shim does.
    fn process_status(&self, ns: &str, id: &str, task: &Task, exec: &str, p: &Process) -> Status {
        let task_status = self.task_status(ns, id, task);
        if exec.is_empty() || matches!(task_status, Status::Paused | Status::Pausing) {
            task_status
        } else {
            p.state.status()
        }
    }

    /// `Busy` if a lifecycle call is pending on the process, or a delete on its task.
    fn refuse_busy(&self, ns: &str, id: &str, exec: &str) -> Result<(), TaskError> {
        let on_process = self.pending.values().find(|p| {
            p.call.namespace == ns
                && p.call.container_id == id
                && p.call.exec_id == exec
                && p.call.kind.is_lifecycle()
        });
        if let Some(p) = on_process {
            return Err(TaskError::Busy {
                container_id: id.into(),
                exec_id: exec.into(),
                pending: p.call.kind.name(),
            });
        }
        if let Some((exec_id, pending)) = self.delete_pending(ns, id) {
            return Err(TaskError::Busy {
                container_id: id.into(),
                exec_id,
                pending,
            });
        }
        Ok(())
    }

    /// A pending `Delete` of the task.
    fn delete_pending(&self, ns: &str, id: &str) -> Option<(String, &'static str)> {
        self.pending
            .values()
            .find(|p| {
                p.call.namespace == ns
                    && p.call.container_id == id
                    && matches!(p.call.kind, CallKind::Delete)
            })
            .map(|p| (p.call.exec_id.clone(), p.call.kind.name()))
    }

    /// Any lifecycle call pending on any process of the task.
    fn task_lifecycle_pending(&self, ns: &str, id: &str) -> Option<(String, &'static str)> {
        self.pending
            .values()
            .find(|p| {
                p.call.namespace == ns && p.call.container_id == id && p.call.kind.is_lifecycle()
            })
            .map(|p| (p.call.exec_id.clone(), p.call.kind.name()))
    }
}

fn find_process<'a>(
    task: &'a Task,
    ns: &str,
    id: &str,
    exec: &str,
) -> Result<&'a Process, TaskError> {
    if exec.is_empty() {
        return Ok(&task.init);
    }
    task.execs
        .get(exec)
        .ok_or_else(|| TaskError::ProcessNotFound {
            namespace: ns.into(),
            container_id: id.into(),
            exec_id: exec.into(),
        })
}

fn invalid(id: &str, exec: &str, command: &'static str, status: Status) -> TaskError {
    TaskError::InvalidState {
        container_id: id.into(),
        exec_id: exec.into(),
        command,
        status,
    }
}
