//! The task manager: drives core's [`TaskTable`] (what each Tasks request means, legal or not,
//! and which runtime call it needs) with `berth_drivers::runtime` (the per-container
//! `berth-shim` supervisors and runc).
//!
//! A request: the table accepts it (or refuses it with a typed error); an accepted request's
//! runtime call runs on the blocking pool; its outcome goes back to the table, whose outputs —
//! events, the request's reply, answered Waits — are delivered here. Exits come from one waiter
//! thread per started process (the shim answers when the process is reaped). The table's
//! confirmed state is persisted to `<state>/tasks.json` after every change; after a restart the
//! table is reloaded and reconciled with what the runtime finds (live shims, exit records).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_core::task::{
    Accepted, CallId, CallKind, Code, Command, Found, FoundState, Output, ProcessExit, Reply,
    RuntimeCall, RuntimeFailure, TaskError, TaskTable, WaitId, WaitResult,
};
use berth_core::Instant;
use berth_drivers::runtime::{self as rt, OomCounter, OomEvents, Runtime, RuntimeError};
use tonic::Status;

use crate::state::Daemon;

/// What a Create needs beyond what the table keeps.
#[derive(Debug, Clone, Default)]
pub struct CreateExtra {
    /// The OCI spec (JSON).
    pub spec: Vec<u8>,
    /// The runtime binary (runc options' `binary_name`).
    pub runtime: Option<String>,
}

type CallTx = async_channel::Sender<Result<Reply, TaskError>>;
type WaitTx = async_channel::Sender<WaitResult>;

/// How long an OOM notification waits for the OOM killer to count its kill.
const OOM_KILL_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Tasks of every namespace.
pub struct Tasks {
    table: Mutex<TaskTable>,
    /// The runtime driver.
    pub runtime: Runtime,
    calls: Mutex<HashMap<CallId, CallTx>>,
    waits: Mutex<HashMap<WaitId, WaitTx>>,
    state_file: PathBuf,
    persisted: Mutex<u64>,
    /// Per task, the OOM-kill count last reported (until its init exits): by the live OOM
    /// watch, or at a process's exit.
    oom_seen: Mutex<HashMap<(String, String), u64>>,
}

/// A task error as a gRPC status.
pub fn task_status(e: &TaskError) -> Status {
    let msg = e.to_string();
    match e.code() {
        Code::InvalidArgument => Status::invalid_argument(msg),
        Code::NotFound => Status::not_found(msg),
        Code::AlreadyExists => Status::already_exists(msg),
        Code::FailedPrecondition => Status::failed_precondition(msg),
        Code::Unavailable => Status::unavailable(msg),
        _ => Status::internal(msg),
    }
}

fn failure(e: &RuntimeError) -> RuntimeFailure {
    let code = match e.code() {
        rt::Code::InvalidArgument => Code::InvalidArgument,
        rt::Code::NotFound => Code::NotFound,
        rt::Code::AlreadyExists => Code::AlreadyExists,
        rt::Code::FailedPrecondition => Code::FailedPrecondition,
        rt::Code::Unavailable => Code::Unavailable,
        _ => Code::Internal,
    };
    RuntimeFailure {
        code,
        message: e.to_string(),
    }
}

fn stdio_out(s: &berth_core::task::Stdio) -> rt::Stdio {
    rt::Stdio {
        stdin: s.stdin.clone(),
        stdout: s.stdout.clone(),
        stderr: s.stderr.clone(),
        terminal: s.terminal,
    }
}

impl Tasks {
    /// Opens the task state under `state` (bundles, runc roots, `tasks.json`), with the shim
    /// binary `shim`.
    pub fn open(state: &std::path::Path, shim: PathBuf) -> Result<Self, String> {
        let dir = state.join("tasks");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // bundles deleted just before a crash, their roots perhaps still mounted
        rt::sweep_deleted(&dir);
        let state_file = state.join("tasks.json");
        let table = match std::fs::read(&state_file) {
            Ok(bytes) => TaskTable::from_json(&bytes)
                .map_err(|e| format!("{}: {e}", state_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TaskTable::new(),
            Err(e) => return Err(format!("reading {}: {e}", state_file.display())),
        };
        let generation = table.generation();
        Ok(Tasks {
            table: Mutex::new(table),
            runtime: Runtime::new(rt::RuntimeConfig::new(dir, shim)),
            calls: Mutex::default(),
            waits: Mutex::default(),
            state_file,
            persisted: Mutex::new(generation),
            oom_seen: Mutex::default(),
        })
    }

    /// True if `ns` has no task.
    pub fn namespace_empty(&self, ns: &str) -> bool {
        self.table.lock().expect("tasks").is_empty(ns)
    }

    /// Delivers the table's outputs and persists a changed table. Call with the table locked.
    fn drain(&self, d: &Daemon, table: &mut TaskTable) {
        while let Some(out) = table.poll() {
            match out {
                Output::Event(ev) => crate::task_events::publish(d, &ev),
                Output::Done { call, result } => {
                    if let Some(tx) = self.calls.lock().expect("calls").remove(&call) {
                        let _ = tx.try_send(result);
                    }
                }
                Output::WaitDone { wait, result } => {
                    if let Some(tx) = self.waits.lock().expect("waits").remove(&wait) {
                        let _ = tx.try_send(result);
                    }
                }
            }
        }
        let generation = table.generation();
        let mut persisted = self.persisted.lock().expect("persisted");
        if *persisted != generation {
            let tmp = self.state_file.with_extension("json.tmp");
            let ok = std::fs::write(&tmp, table.to_json())
                .and_then(|()| std::fs::rename(&tmp, &self.state_file));
            match ok {
                Ok(()) => *persisted = generation,
                Err(e) => log::error!("persisting {}: {e}", self.state_file.display()),
            }
        }
    }

    /// Runs one Tasks request to its reply.
    pub async fn command(
        self: &Arc<Self>,
        d: &Arc<Daemon>,
        ns: &str,
        cmd: Command,
        extra: CreateExtra,
    ) -> Result<Reply, Status> {
        let accepted = {
            let mut table = self.table.lock().expect("tasks");
            let a = table
                .command(d.now(), ns, cmd)
                .map_err(|e| task_status(&e))?;
            let a = match a {
                Accepted::Call(call) => {
                    let (tx, rx) = async_channel::bounded(1);
                    self.calls.lock().expect("calls").insert(call.id, tx);
                    Ok((call, rx))
                }
                Accepted::Waiting(w) => {
                    let (tx, rx) = async_channel::bounded(1);
                    self.waits.lock().expect("waits").insert(w, tx);
                    Err(Ok(rx))
                }
                Accepted::Done(reply) => Err(Err(reply)),
            };
            self.drain(d, &mut table);
            a
        };
        match accepted {
            Err(Err(reply)) => Ok(reply),
            Err(Ok(wait)) => match wait.recv().await {
                Ok(WaitResult::Exited(e)) => Ok(Reply::Exited(e)),
                Ok(WaitResult::Cancelled) | Err(_) => Err(Status::cancelled(
                    "the process was deleted before it exited",
                )),
            },
            Ok((call, rx)) => {
                let this = self.clone();
                let (ns2, c2) = (ns.to_string(), call.clone());
                let outcome = blocking::unblock(move || this.perform(&ns2, &c2, extra)).await;
                {
                    let mut table = self.table.lock().expect("tasks");
                    let now = d.now();
                    let r = match &outcome {
                        Ok(pid) => table.runtime_ok(now, call.id, *pid),
                        Err(e) => table.runtime_failed(now, call.id, failure(e)),
                    };
                    if let Err(e) = r {
                        log::warn!("task {}: reporting a runtime call: {e}", call.container_id);
                    }
                    self.drain(d, &mut table);
                }
                let reply = rx
                    .recv()
                    .await
                    .map_err(|_| Status::internal("the task table dropped the call"))?
                    .map_err(|e| task_status(&e))?;
                if matches!(call.kind, CallKind::Start) {
                    if let Reply::Started { .. } = reply {
                        self.watch(d, ns, &call.container_id, &call.exec_id);
                    }
                }
                Ok(reply)
            }
        }
    }

    /// Carries out a runtime call; returns the pid it reports (0 where none).
    fn perform(
        &self,
        ns: &str,
        call: &RuntimeCall,
        extra: CreateExtra,
    ) -> Result<u32, RuntimeError> {
        let (id, exec) = (call.container_id.as_str(), call.exec_id.as_str());
        let r = &self.runtime;
        match &call.kind {
            CallKind::Create { rootfs, stdio, .. } => r
                .create(rt::CreateTask {
                    namespace: ns.to_string(),
                    id: id.to_string(),
                    spec: extra.spec,
                    rootfs: rootfs.clone(),
                    stdio: stdio_out(stdio),
                    runtime: extra.runtime,
                    runtime_root: None,
                })
                .map(|c| c.pid),
            CallKind::Start => r.start(ns, id, exec),
            CallKind::Kill { signal, all } => r.kill(ns, id, exec, *signal, *all).map(|()| 0),
            CallKind::Pause => r.pause(ns, id).map(|()| 0),
            CallKind::Resume => r.resume(ns, id).map(|()| 0),
            CallKind::Exec { stdio, spec } => {
                r.exec(ns, id, exec, spec, stdio_out(stdio)).map(|()| 0)
            }
            CallKind::CloseStdin => r.close_stdin(ns, id, exec).map(|()| 0),
            CallKind::Resize { width, height } => {
                r.resize_pty(ns, id, exec, *width, *height).map(|()| 0)
            }
            CallKind::Delete => r.delete(ns, id, true).map(|_| 0),
            CallKind::DeleteProcess => r.delete_process(ns, id, exec).map(|_| 0),
            other => Err(RuntimeError::FailedPrecondition {
                id: id.to_string(),
                reason: format!("berthd cannot carry out a {:?} call", other.name()),
            }),
        }
    }

    /// Reports the OOMs of a running task's cgroup as they happen, on a thread, until its init
    /// exits or the cgroup goes. An OOM is published once: this and the exit check of
    /// [`Tasks::watch`] share the count last reported.
    fn watch_oom(
        self: &Arc<Self>,
        d: &Arc<Daemon>,
        key: (String, String),
        events: OomEvents,
        counter: OomCounter,
    ) {
        self.oom_seen
            .lock()
            .expect("oom counters")
            .entry(key.clone())
            .or_insert(0);
        let (this, d) = (self.clone(), d.clone());
        std::thread::spawn(move || {
            let (ns, id) = (&key.0, &key.1);
            while events.wait() && !events.gone() {
                // The kernel signals when the cgroup runs out of memory, a moment before the
                // OOM killer counts its kill: wait for the count (at most a second), so that the
                // exit check does not report the same OOM again.
                let Some(before) = this.seen_ooms(&key) else {
                    break; // the init has exited: the task's OOMs are reported
                };
                let deadline = std::time::Instant::now() + OOM_KILL_WAIT;
                let mut ooms = counter.read();
                while ooms <= before && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    ooms = counter.read();
                }
                let mut table = this.table.lock().expect("tasks");
                let new = match this.oom_seen.lock().expect("oom counters").get_mut(&key) {
                    // a kill not yet reported, or an OOM that killed nothing
                    Some(last) if ooms > *last || ooms <= before => {
                        *last = (*last).max(ooms);
                        true
                    }
                    Some(_) => false, // the exit check reported it first
                    None => break,
                };
                if new {
                    if let Err(e) = table.oom(ns, id) {
                        log::debug!("task {id}: oom: {e}");
                    }
                    this.drain(&d, &mut table);
                }
            }
        });
    }

    /// The OOM-kill count last reported for a task whose init runs.
    fn seen_ooms(&self, key: &(String, String)) -> Option<u64> {
        self.oom_seen
            .lock()
            .expect("oom counters")
            .get(key)
            .copied()
    }

    /// Waits (on a thread) for a started process to exit and reports the exit.
    fn watch(self: &Arc<Self>, d: &Arc<Daemon>, ns: &str, id: &str, exec: &str) {
        let (this, d, ns, id, exec) = (
            self.clone(),
            d.clone(),
            ns.to_string(),
            id.to_string(),
            exec.to_string(),
        );
        std::thread::spawn(move || {
            // An exit may be the OOM killer's: its counter went up since the last look. The
            // counter is found while the process runs, so that its exit costs one read. Where
            // the init's cgroup also tells of OOMs as they happen (cgroup v1), a thread of
            // their own reports them.
            let counter = this.runtime.oom_counter(&ns, &id);
            if let (true, Some(c)) = (exec.is_empty(), &counter) {
                if let Some(events) = c.events() {
                    this.watch_oom(&d, (ns.clone(), id.clone()), events, c.clone());
                }
            }
            let result = this.runtime.wait(&ns, &id, &exec);
            let ooms = counter.map_or(0, |c| c.read());
            let mut table = this.table.lock().expect("tasks");
            let now = d.now();
            let new_oom = {
                let mut seen = this.oom_seen.lock().expect("oom counters");
                let last = seen.entry((ns.clone(), id.clone())).or_insert(0);
                let new = ooms > *last;
                *last = (*last).max(ooms);
                if exec.is_empty() {
                    // the init's exit ends the task: a later task of that id starts afresh
                    seen.remove(&(ns.clone(), id.clone()));
                }
                new
            };
            if new_oom {
                if let Err(e) = table.oom(&ns, &id) {
                    log::debug!("task {id}: oom: {e}");
                }
            }
            match result {
                Ok(x) => {
                    let exit = ProcessExit {
                        namespace: ns.clone(),
                        container_id: id.clone(),
                        exec_id: exec.clone(),
                        pid: x.pid,
                        status: x.status,
                        at: Instant(x.exited_at),
                    };
                    if let Err(e) = table.exited(now, exit) {
                        log::debug!("task {id}: exit of {exec:?}: {e}");
                    }
                }
                Err(e) => {
                    log::warn!("task {id}: waiting for {exec:?}: {e}");
                    if let Err(e) = table.runtime_crashed(now, &ns, &id) {
                        log::debug!("task {id}: {e}");
                    }
                }
            }
            this.drain(&d, &mut table);
        });
    }

    /// After a restart: reconciles the reloaded table with what the runtime finds, watches
    /// every live process again and records exits that happened while berthd was down.
    pub fn recover(self: &Arc<Self>, d: &Arc<Daemon>) {
        let recovery = match self.runtime.recover() {
            Ok(r) => r,
            Err(e) => {
                log::error!("recovering tasks: {e}");
                return;
            }
        };
        let mut found = Vec::new();
        let mut exits = Vec::new();
        let mut live = Vec::new();
        for t in &recovery.tasks {
            for p in std::iter::once(&t.init).chain(&t.execs) {
                let state = match p.status {
                    rt::Status::Created => Some(FoundState::Created),
                    rt::Status::Running => Some(FoundState::Running),
                    rt::Status::Paused => Some(FoundState::Paused),
                    _ => None,
                };
                if let Some(state) = state {
                    found.push(Found {
                        namespace: t.namespace.clone(),
                        container_id: t.id.clone(),
                        exec_id: p.exec_id.clone(),
                        pid: p.pid,
                        state,
                    });
                    if state != FoundState::Created {
                        live.push((t.namespace.clone(), t.id.clone(), p.exec_id.clone()));
                    }
                }
                if let Some(x) = &p.exit {
                    exits.push(ProcessExit {
                        namespace: t.namespace.clone(),
                        container_id: t.id.clone(),
                        exec_id: p.exec_id.clone(),
                        pid: x.pid,
                        status: x.status,
                        at: Instant(x.exited_at),
                    });
                }
            }
        }
        for b in &recovery.broken {
            log::warn!(
                "task bundle {} is broken ({}): removing it",
                b.bundle.display(),
                b.reason
            );
            let _ = self.runtime.delete(&b.namespace, &b.id, true);
        }
        let mut table = self.table.lock().expect("tasks");
        let now = d.now();
        let recovered = table.restarted(now, found);
        for o in &recovered.orphans {
            log::warn!(
                "task {}: created by a call never confirmed: removing it",
                o.container_id
            );
            let _ = self.runtime.delete(&o.namespace, &o.container_id, true);
        }
        for u in &recovered.unaccounted {
            let exit = exits.iter().find(|x| {
                x.namespace == u.namespace
                    && x.container_id == u.container_id
                    && x.exec_id == u.exec_id
            });
            match exit {
                Some(x) => {
                    if let Err(e) = table.exited(now, x.clone()) {
                        log::debug!("task {}: {e}", u.container_id);
                    }
                }
                None => {
                    if let Err(e) = table.runtime_crashed(now, &u.namespace, &u.container_id) {
                        log::debug!("task {}: {e}", u.container_id);
                    }
                }
            }
        }
        let n = table
            .namespaces()
            .map(|ns| table.tasks(ns).count())
            .sum::<usize>();
        self.drain(d, &mut table);
        drop(table);
        for (ns, id, exec) in live {
            self.watch(d, &ns, &id, &exec);
        }
        if n > 0 {
            log::info!("recovered {n} tasks");
        }
    }
}
