//! State-machine property test of the task [`TaskTable`] against a naive reference model and a
//! simulated runtime ("the world").
//!
//! Random sequences over two containers and two exec ids mix every Tasks command (including
//! refused ones), runtime outcomes (successes, failures with Internal/Unavailable/NotFound,
//! calls the runtime carried out before answering), process exits at random times (also
//! while a create or start is pending, and bogus exit reports), OOM events, runtime crashes and
//! daemon restarts: the table is serialised and loaded again, the world may have carried out
//! some of the pending calls and lost some processes while berth was down, and the driver
//! reports what it learnt (exits, or a crash when it learnt nothing).
//!
//! The model is a flat state table that spells each rule out once; it resolves every abstract
//! transition into concrete inputs and predicts, for each input, acceptance or the refusal's
//! gRPC code, and the exact sequence of outputs (events with their payload fields, finished
//! commands with their replies or codes, answered Waits with their exit status). After every
//! step the table and the model must agree on every process's status, pid and exit, on the
//! pending calls and on the Waits registered, and the table must survive a serde round trip.
//! Independently of the model, the harness checks the event stream (a task's `/tasks/exit`
//! precedes its `/tasks/delete`, a process starts before it exits) and, at the end of each
//! case, drains everything and checks that every Wait was answered exactly once — or dropped
//! by a restart, whose client is gone.

use std::collections::{BTreeMap, BTreeSet};

use berth_core::task::{
    Accepted, CallId, CallKind, Code, Command, CreateTask, ExecProcess, Found, FoundState, Output,
    ProcessExit, Reply, RuntimeFailure, Status, Stdio, TaskError, TaskTable, WaitResult,
};
use berth_core::task::{EventPayload, EXIT_KILLED, EXIT_RUNTIME_CRASHED};
use berth_core::Instant;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const NS: &str = "default";
const CONTAINERS: [&str; 2] = ["c1", "c2"];
/// Exec ids; the empty one is the init (or, for `Exec`, an invalid argument).
const EXECS: [&str; 3] = ["", "e1", "e2"];

// ----- what the model predicts and the harness observes -----

/// A finished command's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Summary {
    Created(u32),
    Started(u32),
    Deleted {
        id: String,
        pid: u32,
        exit: Option<(u32, u64)>,
    },
    Empty,
}

/// The answer to one input: a command's acceptance, or `Unit` for the other inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Acc {
    Call {
        id: u64,
        kind: &'static str,
        exec: String,
    },
    Empty,
    Exited(u32, u64),
    Waiting(u64),
    Process {
        status: Status,
        pid: u32,
        exit: Option<(u32, u64)>,
    },
    List(Vec<(String, Status, u32)>),
    Unit,
    Recovered {
        unaccounted: Vec<(String, String, u32)>,
        orphans: Vec<(String, String)>,
    },
}

/// One output.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Event {
        topic: &'static str,
        container: String,
        /// The exec id, or for exit/delete the payload's `id`.
        id: String,
        pid: u32,
        status: u32,
        at: u64,
    },
    Done {
        call: u64,
        result: Result<Summary, Code>,
    },
    Wait {
        wait: u64,
        /// `None`: cancelled.
        exit: Option<(u32, u64)>,
    },
}

/// A concrete input, as the model resolved an abstract transition.
#[derive(Debug, Clone)]
enum Input {
    Command(Command),
    Ok {
        call: u64,
        pid: u32,
    },
    Fail {
        call: u64,
        code: Code,
    },
    Exit {
        c: String,
        e: String,
        pid: u32,
        status: u32,
    },
    Oom {
        c: String,
    },
    Crash {
        c: String,
    },
    Restart {
        found: Vec<Found>,
    },
}

/// What one step feeds the table and what it must answer.
#[derive(Debug, Clone, Default)]
struct Step {
    inputs: Vec<Input>,
    results: Vec<Result<Acc, Code>>,
    outputs: Vec<Seen>,
}

// ----- the model -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PState {
    Created,
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MProc {
    state: PState,
    pid: u32,
    exit: Option<(u32, u64)>,
    terminal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MTask {
    init: MProc,
    execs: BTreeMap<String, MProc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MCall {
    Create { terminal: bool },
    Start,
    Kill,
    Pause,
    Resume,
    Exec { terminal: bool },
    CloseStdin,
    Resize,
    Delete,
    DeleteProcess,
}

impl MCall {
    fn name(self) -> &'static str {
        match self {
            MCall::Create { .. } => "create",
            MCall::Start => "start",
            MCall::Kill => "kill",
            MCall::Pause => "pause",
            MCall::Resume => "resume",
            MCall::Exec { .. } => "exec",
            MCall::CloseStdin => "close-stdin",
            MCall::Resize => "resize",
            MCall::Delete => "delete",
            MCall::DeleteProcess => "delete-process",
        }
    }

    fn lifecycle(self) -> bool {
        !matches!(self, MCall::Kill | MCall::CloseStdin | MCall::Resize)
    }
}

#[derive(Debug, Clone)]
struct MPending {
    c: String,
    e: String,
    kind: MCall,
    /// An exit held back while this create or start is pending.
    deferred: Option<(u32, u64)>,
    /// The runtime has carried the call out (in the world) but not answered yet; the pid it
    /// gave the process, if any.
    acted: Option<u32>,
}

/// A process alive in the simulated runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WProc {
    pid: u32,
    state: FoundState,
}

#[derive(Debug, Clone)]
struct Model {
    tasks: BTreeMap<String, MTask>,
    pending: BTreeMap<u64, MPending>,
    waiters: BTreeMap<u64, (String, String)>,
    next_call: u64,
    next_wait: u64,
    /// The runtime's processes, by (container, exec).
    world: BTreeMap<(String, String), WProc>,
    /// Processes that died while berth was down, with (pid, status).
    dead: BTreeMap<(String, String), (u32, u32)>,
    next_pid: u32,
    clock: u64,
    last: Step,
}

fn stdio(terminal: bool) -> Stdio {
    Stdio {
        stdin: "in".into(),
        stdout: "out".into(),
        stderr: if terminal {
            String::new()
        } else {
            "err".into()
        },
        terminal,
    }
}

impl Model {
    fn new() -> Self {
        Model {
            tasks: BTreeMap::new(),
            pending: BTreeMap::new(),
            waiters: BTreeMap::new(),
            next_call: 1,
            next_wait: 1,
            world: BTreeMap::new(),
            dead: BTreeMap::new(),
            next_pid: 1000,
            clock: 0,
            last: Step::default(),
        }
    }

    fn proc(&self, c: &str, e: &str) -> Option<&MProc> {
        let t = self.tasks.get(c)?;
        if e.is_empty() {
            Some(&t.init)
        } else {
            t.execs.get(e)
        }
    }

    fn proc_mut(&mut self, c: &str, e: &str) -> Option<&mut MProc> {
        let t = self.tasks.get_mut(c)?;
        if e.is_empty() {
            Some(&mut t.init)
        } else {
            t.execs.get_mut(e)
        }
    }

    fn task_status(&self, c: &str) -> Status {
        let t = &self.tasks[c];
        let pausing = self
            .pending
            .values()
            .any(|p| p.c == c && p.kind == MCall::Pause);
        match t.init.state {
            PState::Running if pausing => Status::Pausing,
            s => status_of(s),
        }
    }

    fn proc_status(&self, c: &str, e: &str) -> Status {
        let ts = self.task_status(c);
        if e.is_empty() || matches!(ts, Status::Paused | Status::Pausing) {
            ts
        } else {
            status_of(self.proc(c, e).expect("exists").state)
        }
    }

    fn busy(&self, c: &str, e: &str) -> bool {
        self.pending
            .values()
            .any(|p| p.c == c && ((p.e == e && p.kind.lifecycle()) || p.kind == MCall::Delete))
    }

    fn pid(&mut self) -> u32 {
        self.next_pid += 1;
        self.next_pid
    }

    fn event(&mut self, topic: &'static str, c: &str, id: &str, pid: u32, exit: (u32, u64)) {
        self.last.outputs.push(Seen::Event {
            topic,
            container: c.into(),
            id: id.into(),
            pid,
            status: exit.0,
            at: exit.1,
        });
    }

    fn done(&mut self, call: u64, result: Result<Summary, Code>) {
        self.last.outputs.push(Seen::Done { call, result });
    }

    fn resolve(&mut self, c: &str, e: Option<&str>, exit: Option<(u32, u64)>) {
        let ids: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, (wc, we))| wc == c && e.is_none_or(|e| we == e))
            .map(|(w, _)| *w)
            .collect();
        for wait in ids {
            self.waiters.remove(&wait);
            self.last.outputs.push(Seen::Wait { wait, exit });
        }
    }

    fn apply_exit(&mut self, c: &str, e: &str, exit: (u32, u64)) {
        let Some(p) = self.proc_mut(c, e) else { return };
        if p.state == PState::Stopped {
            return;
        }
        p.state = PState::Stopped;
        p.exit = Some(exit);
        let pid = p.pid;
        let id = if e.is_empty() { c } else { e };
        self.event("/tasks/exit", c, id, pid, exit);
        self.resolve(c, Some(e), Some(exit));
    }

    fn new_call(&mut self, c: &str, e: &str, kind: MCall) -> Result<Acc, Code> {
        let id = self.next_call;
        self.next_call += 1;
        self.pending.insert(
            id,
            MPending {
                c: c.into(),
                e: e.into(),
                kind,
                deferred: None,
                acted: None,
            },
        );
        Ok(Acc::Call {
            id,
            kind: kind.name(),
            exec: e.into(),
        })
    }

    // ----- commands: the rules, one by one -----

    fn command(&mut self, cmd: &Command) -> Result<Acc, Code> {
        use Code::*;
        let exists = |m: &Model, c: &str, e: &str| -> Result<(), Code> {
            if !m.tasks.contains_key(c) || m.proc(c, e).is_none() {
                return Err(NotFound);
            }
            Ok(())
        };
        match cmd {
            Command::Create(ct) => {
                let c = ct.container_id.as_str();
                if !ct.container_exists {
                    return Err(NotFound);
                }
                let creating = self
                    .pending
                    .values()
                    .any(|p| p.c == c && matches!(p.kind, MCall::Create { .. }));
                if creating || self.tasks.contains_key(c) {
                    return Err(AlreadyExists);
                }
                let terminal = ct.stdio.terminal;
                self.new_call(c, "", MCall::Create { terminal })
            }
            Command::Start {
                container_id: c,
                exec_id: e,
            } => {
                exists(self, c, e)?;
                if self.busy(c, e) {
                    return Err(Unavailable);
                }
                if self.proc(c, e).expect("exists").state != PState::Created {
                    return Err(FailedPrecondition);
                }
                let init = self.tasks[c.as_str()].init.state;
                if !e.is_empty() && !matches!(init, PState::Created | PState::Running) {
                    return Err(FailedPrecondition);
                }
                self.new_call(c, e, MCall::Start)
            }
            Command::Kill {
                container_id: c,
                exec_id: e,
                ..
            } => {
                exists(self, c, e)?;
                match self.proc(c, e).expect("exists").state {
                    PState::Stopped => Err(NotFound),
                    PState::Created if !e.is_empty() => Err(FailedPrecondition),
                    _ => self.new_call(c, e, MCall::Kill),
                }
            }
            Command::Pause { container_id: c } | Command::Resume { container_id: c } => {
                let pause = matches!(cmd, Command::Pause { .. });
                exists(self, c, "")?;
                if self.busy(c, "") {
                    return Err(Unavailable);
                }
                let want = if pause {
                    PState::Running
                } else {
                    PState::Paused
                };
                if self.tasks[c.as_str()].init.state != want {
                    return Err(FailedPrecondition);
                }
                let kind = if pause { MCall::Pause } else { MCall::Resume };
                self.new_call(c, "", kind)
            }
            Command::Exec(ex) => {
                let (c, e) = (ex.container_id.as_str(), ex.exec_id.as_str());
                if e.is_empty() {
                    return Err(InvalidArgument);
                }
                exists(self, c, "")?;
                let adding = self
                    .pending
                    .values()
                    .any(|p| p.c == c && p.e == e && matches!(p.kind, MCall::Exec { .. }));
                if adding || self.proc(c, e).is_some() {
                    return Err(AlreadyExists);
                }
                if self
                    .pending
                    .values()
                    .any(|p| p.c == c && p.kind == MCall::Delete)
                {
                    return Err(Unavailable);
                }
                let init = self.tasks[c].init.state;
                if !matches!(init, PState::Created | PState::Running) {
                    return Err(FailedPrecondition);
                }
                let terminal = ex.stdio.terminal;
                self.new_call(c, e, MCall::Exec { terminal })
            }
            Command::CloseIo {
                container_id: c,
                exec_id: e,
                stdin,
            } => {
                exists(self, c, e)?;
                if !stdin {
                    return Ok(Acc::Empty);
                }
                self.new_call(c, e, MCall::CloseStdin)
            }
            Command::ResizePty {
                container_id: c,
                exec_id: e,
                ..
            } => {
                exists(self, c, e)?;
                let p = self.proc(c, e).expect("exists");
                if !p.terminal || p.state == PState::Stopped {
                    return Ok(Acc::Empty);
                }
                self.new_call(c, e, MCall::Resize)
            }
            Command::Delete { container_id: c } => {
                exists(self, c, "")?;
                if self
                    .pending
                    .values()
                    .any(|p| p.c == *c && p.kind.lifecycle())
                {
                    return Err(Unavailable);
                }
                if matches!(
                    self.tasks[c.as_str()].init.state,
                    PState::Running | PState::Paused
                ) {
                    return Err(FailedPrecondition);
                }
                self.new_call(c, "", MCall::Delete)
            }
            Command::DeleteProcess {
                container_id: c,
                exec_id: e,
            } => {
                if e.is_empty() {
                    return Err(InvalidArgument);
                }
                exists(self, c, e)?;
                if self.busy(c, e) {
                    return Err(Unavailable);
                }
                if self.proc(c, e).expect("exists").state == PState::Running {
                    return Err(FailedPrecondition);
                }
                self.new_call(c, e, MCall::DeleteProcess)
            }
            Command::Wait {
                container_id: c,
                exec_id: e,
            } => {
                exists(self, c, e)?;
                if let Some((s, at)) = self.proc(c, e).expect("exists").exit {
                    return Ok(Acc::Exited(s, at));
                }
                let w = self.next_wait;
                self.next_wait += 1;
                self.waiters.insert(w, (c.clone(), e.clone()));
                Ok(Acc::Waiting(w))
            }
            Command::Get {
                container_id: c,
                exec_id: e,
            } => {
                exists(self, c, e)?;
                let p = self.proc(c, e).expect("exists");
                Ok(Acc::Process {
                    status: self.proc_status(c, e),
                    pid: p.pid,
                    exit: p.exit,
                })
            }
            Command::List => Ok(Acc::List(self.list())),
            _ => unreachable!("not generated"),
        }
    }

    fn list(&self) -> Vec<(String, Status, u32)> {
        self.tasks
            .iter()
            .map(|(c, t)| (c.clone(), self.task_status(c), t.init.pid))
            .collect()
    }

    // ----- the world carries calls out -----

    /// The runtime carries out a pending call (once); returns the pid it gave the process.
    fn act(&mut self, call: u64) -> Option<u32> {
        let p = self.pending.get(&call)?.clone();
        if p.acted.is_some() {
            return p.acted;
        }
        let key = (p.c.clone(), p.e.clone());
        let mut pid = 0;
        match p.kind {
            MCall::Create { .. } => {
                pid = self.pid();
                self.world.insert(
                    key,
                    WProc {
                        pid,
                        state: FoundState::Created,
                    },
                );
            }
            MCall::Start if p.e.is_empty() => {
                if let Some(w) = self.world.get_mut(&key) {
                    if w.state == FoundState::Created {
                        w.state = FoundState::Running;
                    }
                }
            }
            MCall::Start => {
                pid = self.pid();
                self.world.insert(
                    key,
                    WProc {
                        pid,
                        state: FoundState::Running,
                    },
                );
            }
            MCall::Pause | MCall::Resume => {
                let (from, to) = if p.kind == MCall::Pause {
                    (FoundState::Running, FoundState::Paused)
                } else {
                    (FoundState::Paused, FoundState::Running)
                };
                if let Some(w) = self.world.get_mut(&key) {
                    if w.state == from {
                        w.state = to;
                    }
                }
            }
            MCall::Delete => self.world.retain(|(c, _), _| *c != p.c),
            _ => {}
        }
        self.pending.get_mut(&call).expect("pending").acted = Some(pid);
        Some(pid)
    }

    /// The runtime answers a pending call with success.
    fn complete_ok(&mut self, call: u64) -> Input {
        let acted_pid = self.act(call).expect("pending");
        let p = self.pending.remove(&call).expect("pending");
        let now = self.clock;
        let (c, e) = (p.c.as_str(), p.e.as_str());
        let (pid, reply) = match p.kind {
            MCall::Create { terminal } => {
                let pid = acted_pid;
                self.event("/tasks/create", c, "", pid, (0, 0));
                self.tasks.insert(
                    c.into(),
                    MTask {
                        init: MProc {
                            state: PState::Created,
                            pid,
                            exit: None,
                            terminal,
                        },
                        execs: BTreeMap::new(),
                    },
                );
                if let Some(exit) = p.deferred {
                    self.apply_exit(c, "", exit);
                }
                (pid, Summary::Created(pid))
            }
            MCall::Start => {
                let pid = if e.is_empty() {
                    self.tasks[c].init.pid
                } else {
                    acted_pid
                };
                let proc = self.proc_mut(c, e).expect("a started process exists");
                if proc.state == PState::Created {
                    proc.state = PState::Running;
                    proc.pid = pid;
                    if e.is_empty() {
                        self.event("/tasks/start", c, "", pid, (0, 0));
                    } else {
                        self.event("/tasks/exec-started", c, e, pid, (0, 0));
                    }
                }
                if let Some(exit) = p.deferred {
                    self.apply_exit(c, e, exit);
                }
                (pid, Summary::Started(pid))
            }
            MCall::Pause | MCall::Resume => {
                let (from, to, topic) = if p.kind == MCall::Pause {
                    (PState::Running, PState::Paused, "/tasks/paused")
                } else {
                    (PState::Paused, PState::Running, "/tasks/resumed")
                };
                if let Some(t) = self.tasks.get_mut(c) {
                    if t.init.state == from {
                        t.init.state = to;
                        self.event(topic, c, "", 0, (0, 0));
                    }
                }
                (0, Summary::Empty)
            }
            MCall::Exec { terminal } => {
                if let Some(t) = self.tasks.get_mut(c) {
                    t.execs.insert(
                        e.into(),
                        MProc {
                            state: PState::Created,
                            pid: 0,
                            exit: None,
                            terminal,
                        },
                    );
                    self.event("/tasks/exec-added", c, e, 0, (0, 0));
                }
                (0, Summary::Empty)
            }
            MCall::Delete => {
                let t = self.tasks[c].clone();
                let init_exit = match t.init.exit {
                    Some(x) => x,
                    None => {
                        self.apply_exit(c, "", (EXIT_KILLED, now));
                        (EXIT_KILLED, now)
                    }
                };
                for (exec, ep) in &t.execs {
                    if ep.state == PState::Running {
                        self.apply_exit(c, exec, (EXIT_KILLED, init_exit.1));
                    }
                }
                self.tasks.remove(c);
                self.resolve(c, None, None);
                self.event("/tasks/delete", c, c, t.init.pid, init_exit);
                (
                    0,
                    Summary::Deleted {
                        id: c.into(),
                        pid: t.init.pid,
                        exit: Some(init_exit),
                    },
                )
            }
            MCall::DeleteProcess => {
                let removed = self.tasks.get_mut(c).and_then(|t| t.execs.remove(e));
                match removed {
                    Some(ep) => {
                        self.resolve(c, Some(e), None);
                        (
                            0,
                            Summary::Deleted {
                                id: e.into(),
                                pid: ep.pid,
                                exit: ep.exit,
                            },
                        )
                    }
                    None => (0, Summary::Empty),
                }
            }
            MCall::Kill | MCall::CloseStdin | MCall::Resize => (0, Summary::Empty),
        };
        self.done(call, Ok(reply));
        Input::Ok { call, pid }
    }

    /// Undoes a failed (or crashed) call: only an init's exit held during its start remains.
    fn roll_back(&mut self, p: &MPending) {
        if let (MCall::Start, Some(exit)) = (p.kind, p.deferred) {
            if p.e.is_empty() {
                self.apply_exit(&p.c, "", exit);
            }
        }
    }

    fn complete_fail(&mut self, call: u64, code: Code) -> Input {
        let p = self.pending.remove(&call).expect("pending");
        self.roll_back(&p);
        self.done(call, Err(code));
        Input::Fail { call, code }
    }

    /// A process exit reported to the table; returns the table's answer.
    fn exit_report(&mut self, c: &str, e: &str, pid: u32, status: u32) -> Result<Acc, Code> {
        let exit = (status, self.clock);
        let held = self.pending.values_mut().find(|p| {
            p.c == c && p.e == e && matches!(p.kind, MCall::Create { .. } | MCall::Start)
        });
        if let Some(p) = held {
            if p.deferred.is_some() {
                return Err(Code::NotFound);
            }
            p.deferred = Some(exit);
            return Ok(Acc::Unit);
        }
        let Some(p) = self.proc(c, e) else {
            return Err(Code::NotFound);
        };
        match p.state {
            PState::Stopped => return Err(Code::NotFound),
            PState::Created if !e.is_empty() => return Err(Code::FailedPrecondition),
            _ => {}
        }
        if p.pid != pid {
            return Err(Code::Internal);
        }
        self.apply_exit(c, e, exit);
        Ok(Acc::Unit)
    }

    fn crash(&mut self, c: &str) -> Result<Acc, Code> {
        let calls: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.c == c)
            .map(|(id, _)| *id)
            .collect();
        if calls.is_empty() && !self.tasks.contains_key(c) {
            return Err(Code::NotFound);
        }
        for call in calls {
            let p = self.pending.remove(&call).expect("pending");
            self.roll_back(&p);
            self.done(call, Err(Code::Unavailable));
        }
        // The supervisor is gone, and its processes with it.
        self.world.retain(|(wc, _), _| wc != c);
        let Some(t) = self.tasks.get(c).cloned() else {
            return Ok(Acc::Unit);
        };
        let crashed = (EXIT_RUNTIME_CRASHED, self.clock);
        for (e, p) in &t.execs {
            if p.state == PState::Running {
                self.apply_exit(c, e, crashed);
            }
        }
        self.apply_exit(c, "", crashed);
        Ok(Acc::Unit)
    }

    /// The daemon restarts: the table keeps only its persisted state and adopts `found`.
    fn restart(&mut self, found: &[Found]) -> Acc {
        self.pending.clear();
        self.waiters.clear();
        let mut alive: BTreeMap<(String, String), Found> = found
            .iter()
            .map(|f| ((f.container_id.clone(), f.exec_id.clone()), f.clone()))
            .collect();
        let mut unaccounted = Vec::new();
        let ids: Vec<String> = self.tasks.keys().cloned().collect();
        for c in ids {
            let mut procs = vec![String::new()];
            procs.extend(self.tasks[&c].execs.keys().cloned());
            for e in procs {
                let p = self.proc(&c, &e).expect("exists").clone();
                if p.state == PState::Stopped {
                    continue;
                }
                let Some(f) = alive.remove(&(c.clone(), e.clone())) else {
                    if e.is_empty() || p.state == PState::Running {
                        unaccounted.push((c.clone(), e.clone(), p.pid));
                    }
                    continue;
                };
                let init = e.is_empty();
                let mut new = p.state;
                let mut topics: Vec<&'static str> = Vec::new();
                let start_topic = if init {
                    "/tasks/start"
                } else {
                    "/tasks/exec-started"
                };
                match (p.state, f.state) {
                    (PState::Created, FoundState::Running) => {
                        new = PState::Running;
                        topics.push(start_topic);
                    }
                    (PState::Created, FoundState::Paused) if !init => {
                        new = PState::Running;
                        topics.push(start_topic);
                    }
                    (PState::Created, FoundState::Paused) => {
                        new = PState::Paused;
                        topics.extend([start_topic, "/tasks/paused"]);
                    }
                    (PState::Running, FoundState::Paused) if init => {
                        new = PState::Paused;
                        topics.push("/tasks/paused");
                    }
                    (PState::Paused, FoundState::Running) if init => {
                        new = PState::Running;
                        topics.push("/tasks/resumed");
                    }
                    _ => {}
                }
                let mp = self.proc_mut(&c, &e).expect("exists");
                mp.state = new;
                if new != PState::Created {
                    mp.pid = f.pid;
                }
                for topic in topics {
                    match topic {
                        "/tasks/start" | "/tasks/exec-started" => {
                            self.event(topic, &c, &e, f.pid, (0, 0))
                        }
                        _ => self.event(topic, &c, "", 0, (0, 0)),
                    }
                }
            }
        }
        let orphans: Vec<(String, String)> = alive.into_keys().collect();
        Acc::Recovered {
            unaccounted,
            orphans,
        }
    }
}

fn status_of(s: PState) -> Status {
    match s {
        PState::Created => Status::Created,
        PState::Running => Status::Running,
        PState::Paused => Status::Paused,
        PState::Stopped => Status::Stopped,
    }
}

// ----- abstract transitions -----

#[derive(Debug, Clone)]
enum CmdT {
    Create {
        c: usize,
        exists: bool,
        terminal: bool,
    },
    Start {
        c: usize,
        e: usize,
    },
    Kill {
        c: usize,
        e: usize,
        all: bool,
    },
    Pause {
        c: usize,
    },
    Resume {
        c: usize,
    },
    Exec {
        c: usize,
        e: usize,
        terminal: bool,
    },
    CloseIo {
        c: usize,
        e: usize,
        stdin: bool,
    },
    Resize {
        c: usize,
        e: usize,
    },
    Delete {
        c: usize,
    },
    DeleteProcess {
        c: usize,
        e: usize,
    },
    Wait {
        c: usize,
        e: usize,
    },
    Get {
        c: usize,
        e: usize,
    },
    List,
}

#[derive(Debug, Clone)]
enum Transition {
    Command(CmdT),
    /// The runtime answers the pending call picked (modulo their number).
    Complete {
        pick: usize,
        outcome: Option<Code>,
    },
    /// The runtime carries the picked call out but has not answered yet.
    Act {
        pick: usize,
    },
    /// A live process picked in the world exits.
    Exit {
        pick: usize,
        status: u32,
    },
    /// An exit report for any process (a confused or lying driver).
    BogusExit {
        c: usize,
        e: usize,
        status: u32,
        /// Report another pid than the process has.
        wrong_pid: bool,
    },
    Oom {
        c: usize,
    },
    Crash {
        c: usize,
    },
    /// The daemon restarts. `acted[i]`: the i-th pending call was carried out meanwhile;
    /// `dies[j]`: the j-th live process died meanwhile (with this status); `known[k]`: the
    /// driver learnt the exit of the k-th unaccounted process (else it reports a crash).
    Restart {
        acted: Vec<bool>,
        dies: Vec<Option<u32>>,
        known: Vec<bool>,
    },
}

fn to_command(t: &CmdT) -> Command {
    let c = |i: usize| CONTAINERS[i].to_string();
    let e = |i: usize| EXECS[i].to_string();
    match *t {
        CmdT::Create {
            c: ci,
            exists,
            terminal,
        } => Command::Create(CreateTask {
            container_id: c(ci),
            container_exists: exists,
            bundle: format!("/run/berth/{}", c(ci)),
            rootfs: vec![],
            stdio: stdio(terminal),
        }),
        CmdT::Start { c: ci, e: ei } => Command::Start {
            container_id: c(ci),
            exec_id: e(ei),
        },
        CmdT::Kill { c: ci, e: ei, all } => Command::Kill {
            container_id: c(ci),
            exec_id: e(ei),
            signal: 9,
            all,
        },
        CmdT::Pause { c: ci } => Command::Pause {
            container_id: c(ci),
        },
        CmdT::Resume { c: ci } => Command::Resume {
            container_id: c(ci),
        },
        CmdT::Exec {
            c: ci,
            e: ei,
            terminal,
        } => Command::Exec(ExecProcess {
            container_id: c(ci),
            exec_id: e(ei),
            stdio: stdio(terminal),
            spec: b"{}".to_vec(),
        }),
        CmdT::CloseIo {
            c: ci,
            e: ei,
            stdin,
        } => Command::CloseIo {
            container_id: c(ci),
            exec_id: e(ei),
            stdin,
        },
        CmdT::Resize { c: ci, e: ei } => Command::ResizePty {
            container_id: c(ci),
            exec_id: e(ei),
            width: 80,
            height: 24,
        },
        CmdT::Delete { c: ci } => Command::Delete {
            container_id: c(ci),
        },
        CmdT::DeleteProcess { c: ci, e: ei } => Command::DeleteProcess {
            container_id: c(ci),
            exec_id: e(ei),
        },
        CmdT::Wait { c: ci, e: ei } => Command::Wait {
            container_id: c(ci),
            exec_id: e(ei),
        },
        CmdT::Get { c: ci, e: ei } => Command::Get {
            container_id: c(ci),
            exec_id: e(ei),
        },
        CmdT::List => Command::List,
    }
}

fn cmd_strategy() -> BoxedStrategy<CmdT> {
    let c = 0..CONTAINERS.len();
    let e = 0..EXECS.len();
    prop_oneof![
        3 => (c.clone(), prop::bool::weighted(0.95), any::<bool>())
            .prop_map(|(c, exists, terminal)| CmdT::Create { c, exists, terminal }),
        4 => (c.clone(), e.clone()).prop_map(|(c, e)| CmdT::Start { c, e }),
        2 => (c.clone(), e.clone(), any::<bool>()).prop_map(|(c, e, all)| CmdT::Kill { c, e, all }),
        2 => c.clone().prop_map(|c| CmdT::Pause { c }),
        2 => c.clone().prop_map(|c| CmdT::Resume { c }),
        3 => (c.clone(), e.clone(), any::<bool>())
            .prop_map(|(c, e, terminal)| CmdT::Exec { c, e, terminal }),
        1 => (c.clone(), e.clone(), any::<bool>())
            .prop_map(|(c, e, stdin)| CmdT::CloseIo { c, e, stdin }),
        1 => (c.clone(), e.clone()).prop_map(|(c, e)| CmdT::Resize { c, e }),
        3 => c.clone().prop_map(|c| CmdT::Delete { c }),
        2 => (c.clone(), e.clone()).prop_map(|(c, e)| CmdT::DeleteProcess { c, e }),
        3 => (c.clone(), e.clone()).prop_map(|(c, e)| CmdT::Wait { c, e }),
        1 => (c, e).prop_map(|(c, e)| CmdT::Get { c, e }),
        1 => Just(CmdT::List),
    ]
    .boxed()
}

/// The commands that move a container's task along from where the model says it is, so
/// that deep states (running execs in a paused task, a resume pending at a restart) are
/// common rather than lucky.
fn guided(m: &Model) -> BoxedStrategy<CmdT> {
    let mut next = vec![CmdT::List];
    for (ci, c) in CONTAINERS.iter().enumerate() {
        let Some(t) = m.tasks.get(*c) else {
            next.push(CmdT::Create {
                c: ci,
                exists: true,
                terminal: ci == 1,
            });
            continue;
        };
        let execs = |state: PState| {
            (1..EXECS.len())
                .filter(move |&ei| t.execs.get(EXECS[ei]).map(|p| p.state) == Some(state))
                .collect::<Vec<_>>()
        };
        let free: Vec<usize> = (1..EXECS.len())
            .filter(|&ei| !t.execs.contains_key(EXECS[ei]))
            .collect();
        next.push(CmdT::Wait { c: ci, e: 0 });
        match t.init.state {
            PState::Created => {
                next.push(CmdT::Start { c: ci, e: 0 });
                next.push(CmdT::Delete { c: ci });
            }
            PState::Running => {
                next.push(CmdT::Pause { c: ci });
                next.push(CmdT::Kill {
                    c: ci,
                    e: 0,
                    all: true,
                });
            }
            PState::Paused => {
                next.push(CmdT::Resume { c: ci });
                next.push(CmdT::Kill {
                    c: ci,
                    e: 0,
                    all: false,
                });
            }
            PState::Stopped => {
                next.push(CmdT::Delete { c: ci });
                next.push(CmdT::Delete { c: ci });
            }
        }
        if matches!(t.init.state, PState::Created | PState::Running) {
            for &ei in &free {
                next.push(CmdT::Exec {
                    c: ci,
                    e: ei,
                    terminal: ei == 2,
                });
            }
        }
        // Commands the state refuses, so that every refusal is common too.
        match t.init.state {
            PState::Created => next.push(CmdT::Pause { c: ci }),
            PState::Running => {
                next.push(CmdT::Delete { c: ci });
                next.push(CmdT::Start { c: ci, e: 0 });
            }
            PState::Paused => {
                next.push(CmdT::Delete { c: ci });
                next.push(CmdT::Pause { c: ci });
            }
            PState::Stopped => {
                next.push(CmdT::Kill {
                    c: ci,
                    e: 0,
                    all: false,
                });
                next.push(CmdT::Resume { c: ci });
            }
        }
        if !matches!(t.init.state, PState::Created | PState::Running) {
            if let Some(&ei) = free.first() {
                next.push(CmdT::Exec {
                    c: ci,
                    e: ei,
                    terminal: false,
                });
            }
        }
        for ei in execs(PState::Created) {
            next.push(CmdT::Start { c: ci, e: ei });
            next.push(CmdT::Wait { c: ci, e: ei });
            next.push(CmdT::Kill {
                c: ci,
                e: ei,
                all: true,
            });
        }
        for ei in execs(PState::Running) {
            next.push(CmdT::Wait { c: ci, e: ei });
            next.push(CmdT::Resize { c: ci, e: ei });
            next.push(CmdT::DeleteProcess { c: ci, e: ei });
            next.push(CmdT::Start { c: ci, e: ei });
        }
        for ei in execs(PState::Stopped) {
            next.push(CmdT::DeleteProcess { c: ci, e: ei });
        }
    }
    proptest::sample::select(next).boxed()
}

fn failure_code() -> impl Strategy<Value = Code> {
    prop_oneof![
        Just(Code::Internal),
        Just(Code::Unavailable),
        Just(Code::NotFound)
    ]
}

fn exit_status() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(1), Just(137), Just(143), 0u32..256]
}

struct TaskModel;

impl ReferenceStateMachine for TaskModel {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::new()).boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Transition> {
        let c = 0..CONTAINERS.len();
        // Weights follow the state: runtime answers only while calls are pending, exits
        // while processes live, restarts most while lifecycle calls are in flight (the
        // interesting restarts).
        let pending = state.pending.len() as u32;
        let in_flight = state
            .pending
            .values()
            .filter(|p| p.kind.lifecycle())
            .count() as u32;
        let alive = state.world.len() as u32;
        prop_oneof![
            10 => cmd_strategy().prop_map(Transition::Command),
            24 => guided(state).prop_map(Transition::Command),
            (2 + 8 * pending) => (any::<usize>(), proptest::option::weighted(0.25, failure_code()))
                .prop_map(|(pick, outcome)| Transition::Complete { pick, outcome }),
            (1 + pending) => any::<usize>().prop_map(|pick| Transition::Act { pick }),
            (1 + alive) => (any::<usize>(), exit_status())
                .prop_map(|(pick, status)| Transition::Exit { pick, status }),
            1 => (c.clone(), 0..EXECS.len(), exit_status(), any::<bool>()).prop_map(
                |(c, e, status, wrong_pid)| Transition::BogusExit { c, e, status, wrong_pid }
            ),
            1 => c.clone().prop_map(|c| Transition::Oom { c }),
            1 => c.prop_map(|c| Transition::Crash { c }),
            (1 + in_flight) => (
                prop::collection::vec(any::<bool>(), 8),
                prop::collection::vec(proptest::option::weighted(0.3, exit_status()), 8),
                prop::collection::vec(prop::bool::weighted(0.8), 8),
            )
                .prop_map(|(acted, dies, known)| Transition::Restart { acted, dies, known }),
        ]
        .boxed()
    }

    fn apply(mut m: Model, t: &Transition) -> Model {
        m.clock += 1;
        m.last = Step::default();
        let pick_call = |m: &Model, pick: usize| -> Option<u64> {
            let ids: Vec<u64> = m.pending.keys().copied().collect();
            (!ids.is_empty()).then(|| ids[pick % ids.len()])
        };
        match t {
            Transition::Command(ct) => {
                let cmd = to_command(ct);
                let r = m.command(&cmd);
                m.last.inputs.push(Input::Command(cmd));
                m.last.results.push(r);
            }
            Transition::Complete { pick, outcome } => {
                if let Some(call) = pick_call(&m, *pick) {
                    let input = match outcome {
                        None => m.complete_ok(call),
                        Some(code) => m.complete_fail(call, *code),
                    };
                    m.last.inputs.push(input);
                    m.last.results.push(Ok(Acc::Unit));
                }
            }
            Transition::Act { pick } => {
                if let Some(call) = pick_call(&m, *pick) {
                    m.act(call);
                }
            }
            Transition::Exit { pick, status } => {
                let keys: Vec<(String, String)> = m.world.keys().cloned().collect();
                if !keys.is_empty() {
                    let (c, e) = keys[pick % keys.len()].clone();
                    let w = m.world.remove(&(c.clone(), e.clone())).expect("alive");
                    let r = m.exit_report(&c, &e, w.pid, *status);
                    m.last.inputs.push(Input::Exit {
                        c,
                        e,
                        pid: w.pid,
                        status: *status,
                    });
                    m.last.results.push(r);
                }
            }
            Transition::BogusExit {
                c,
                e,
                status,
                wrong_pid,
            } => {
                let (c, e) = (CONTAINERS[*c].to_string(), EXECS[*e].to_string());
                let known = m.proc(&c, &e).map_or(4242, |p| p.pid.max(1));
                let pid = if *wrong_pid { known + 1 } else { known };
                let r = m.exit_report(&c, &e, pid, *status);
                m.last.inputs.push(Input::Exit {
                    c,
                    e,
                    pid,
                    status: *status,
                });
                m.last.results.push(r);
            }
            Transition::Oom { c } => {
                let c = CONTAINERS[*c].to_string();
                let r = if m.tasks.contains_key(&c) {
                    m.event("/tasks/oom", &c, "", 0, (0, 0));
                    Ok(Acc::Unit)
                } else {
                    Err(Code::NotFound)
                };
                m.last.inputs.push(Input::Oom { c });
                m.last.results.push(r);
            }
            Transition::Crash { c } => {
                let c = CONTAINERS[*c].to_string();
                let r = m.crash(&c);
                m.last.inputs.push(Input::Crash { c });
                m.last.results.push(r);
            }
            Transition::Restart { acted, dies, known } => {
                let calls: Vec<u64> = m.pending.keys().copied().collect();
                for (i, call) in calls.into_iter().enumerate() {
                    if acted[i % acted.len()] {
                        m.act(call);
                    }
                }
                let alive: Vec<(String, String)> = m.world.keys().cloned().collect();
                for (j, key) in alive.into_iter().enumerate() {
                    if let Some(status) = dies[j % dies.len()] {
                        let w = m.world.remove(&key).expect("alive");
                        m.dead.insert(key, (w.pid, status));
                    }
                }
                let found: Vec<Found> = m
                    .world
                    .iter()
                    .map(|((c, e), w)| Found {
                        namespace: NS.into(),
                        container_id: c.clone(),
                        exec_id: e.clone(),
                        pid: w.pid,
                        state: w.state,
                    })
                    .collect();
                let recovered = m.restart(&found);
                m.last.inputs.push(Input::Restart { found });
                m.last.results.push(Ok(recovered.clone()));
                let Acc::Recovered {
                    unaccounted,
                    orphans,
                } = recovered
                else {
                    unreachable!()
                };
                // The driver removes the orphans and reports what it learnt.
                for key in orphans {
                    m.world.remove(&key);
                }
                let mut crashed = BTreeSet::new();
                for (k, (c, e, _)) in unaccounted.into_iter().enumerate() {
                    if crashed.contains(&c) {
                        continue;
                    }
                    let learnt = m.dead.remove(&(c.clone(), e.clone()));
                    match learnt {
                        Some((pid, status)) if known[k % known.len()] => {
                            let r = m.exit_report(&c, &e, pid, status);
                            m.last.inputs.push(Input::Exit { c, e, pid, status });
                            m.last.results.push(r);
                        }
                        _ => {
                            let r = m.crash(&c);
                            m.last.inputs.push(Input::Crash { c: c.clone() });
                            m.last.results.push(r);
                            crashed.insert(c);
                        }
                    }
                }
                m.dead.clear();
            }
        }
        m
    }
}

// ----- the system under test -----

struct Sut {
    table: TaskTable,
    /// Waits registered and not answered or dropped yet.
    open_waits: BTreeSet<u64>,
    /// Waits answered (each must be answered once).
    answered: BTreeSet<u64>,
    /// Waits dropped by a restart.
    dropped: BTreeSet<u64>,
    /// Containers whose current task's init has published `/tasks/exit`.
    init_exited: BTreeSet<String>,
    /// Processes (container, id) that published a start and no exit yet.
    started: BTreeSet<(String, String)>,
}

fn exit_pair(e: Option<berth_core::task::ExitInfo>) -> Option<(u32, u64)> {
    e.map(|x| (x.status, x.at.0))
}

fn summarize_reply(r: Reply) -> Summary {
    match r {
        Reply::Created { pid } => Summary::Created(pid),
        Reply::Started { pid } => Summary::Started(pid),
        Reply::Deleted(d) => Summary::Deleted {
            id: d.id,
            pid: d.pid,
            exit: exit_pair(d.exit),
        },
        Reply::Empty => Summary::Empty,
        other => panic!("unexpected reply through Done: {other:?}"),
    }
}

fn summarize_accepted(a: Accepted) -> Acc {
    match a {
        Accepted::Call(c) => Acc::Call {
            id: c.id.0,
            kind: c.kind.name(),
            exec: c.exec_id,
        },
        Accepted::Waiting(w) => Acc::Waiting(w.0),
        Accepted::Done(Reply::Empty) => Acc::Empty,
        Accepted::Done(Reply::Exited(x)) => Acc::Exited(x.status, x.at.0),
        Accepted::Done(Reply::Process(p)) => Acc::Process {
            status: p.status,
            pid: p.pid,
            exit: exit_pair(p.exit),
        },
        Accepted::Done(Reply::List(l)) => {
            Acc::List(l.into_iter().map(|p| (p.id, p.status, p.pid)).collect())
        }
        Accepted::Done(other) => panic!("unexpected immediate reply {other:?}"),
    }
}

fn unit(r: Result<(), TaskError>) -> Result<Acc, Code> {
    r.map(|()| Acc::Unit).map_err(|e| e.code())
}

impl Sut {
    fn now(model: &Model) -> Instant {
        Instant(model.clock)
    }

    fn feed(&mut self, model: &Model, input: &Input) -> Result<Acc, Code> {
        let now = Self::now(model);
        let t = &mut self.table;
        match input {
            Input::Command(cmd) => {
                let r = t
                    .command(now, NS, cmd.clone())
                    .map(summarize_accepted)
                    .map_err(|e| e.code());
                if let Ok(Acc::Waiting(w)) = &r {
                    assert!(self.open_waits.insert(*w), "wait id {w} reused");
                }
                if let Ok(Acc::Call { id, .. }) = &r {
                    let call = t.pending_call(CallId(*id)).expect("the call is pending");
                    assert_eq!(call.namespace, NS);
                    let (c, e) = match cmd {
                        Command::Create(ct) => (ct.container_id.as_str(), ""),
                        Command::Exec(ex) => (ex.container_id.as_str(), ex.exec_id.as_str()),
                        Command::Start {
                            container_id,
                            exec_id,
                        }
                        | Command::Kill {
                            container_id,
                            exec_id,
                            ..
                        }
                        | Command::CloseIo {
                            container_id,
                            exec_id,
                            ..
                        }
                        | Command::ResizePty {
                            container_id,
                            exec_id,
                            ..
                        }
                        | Command::DeleteProcess {
                            container_id,
                            exec_id,
                        } => (container_id.as_str(), exec_id.as_str()),
                        Command::Pause { container_id }
                        | Command::Resume { container_id }
                        | Command::Delete { container_id } => (container_id.as_str(), ""),
                        _ => unreachable!(),
                    };
                    assert_eq!((call.container_id.as_str(), call.exec_id.as_str()), (c, e));
                    if let CallKind::Kill { all, .. } = call.kind {
                        assert!(!all || e.is_empty(), "`all` only for the init");
                    }
                }
                r
            }
            Input::Ok { call, pid } => unit(t.runtime_ok(now, CallId(*call), *pid)),
            Input::Fail { call, code } => unit(t.runtime_failed(
                now,
                CallId(*call),
                RuntimeFailure {
                    code: *code,
                    message: "runtime says no".into(),
                },
            )),
            Input::Exit { c, e, pid, status } => unit(t.exited(
                now,
                ProcessExit {
                    namespace: NS.into(),
                    container_id: c.clone(),
                    exec_id: e.clone(),
                    pid: *pid,
                    status: *status,
                    at: now,
                },
            )),
            Input::Oom { c } => unit(t.oom(NS, c)),
            Input::Crash { c } => unit(t.runtime_crashed(now, NS, c)),
            Input::Restart { found } => {
                let json = t.to_json();
                let mut loaded = TaskTable::from_json(json.as_bytes()).expect("the table loads");
                assert_eq!(loaded.to_json(), json, "the round trip is exact");
                let recovered = loaded.restarted(now, found.clone());
                self.table = loaded;
                let dropped = std::mem::take(&mut self.open_waits);
                self.dropped.extend(dropped);
                Ok(Acc::Recovered {
                    unaccounted: recovered
                        .unaccounted
                        .into_iter()
                        .map(|u| (u.container_id, u.exec_id, u.pid))
                        .collect(),
                    orphans: recovered
                        .orphans
                        .into_iter()
                        .map(|f| (f.container_id, f.exec_id))
                        .collect(),
                })
            }
        }
    }

    /// Drains the outputs, checking the event-order rules the model does not state.
    fn drain(&mut self) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Some(o) = self.table.poll() {
            out.push(match o {
                Output::Event(ev) => {
                    assert_eq!(ev.namespace, NS);
                    let topic = ev.topic();
                    let c = ev.container_id().to_string();
                    let (id, pid, status, at) = match ev.payload {
                        EventPayload::Create { pid, .. } | EventPayload::Start { pid, .. } => {
                            (String::new(), pid, 0, 0)
                        }
                        EventPayload::Exit {
                            id,
                            pid,
                            exit_status,
                            exited_at,
                            ..
                        }
                        | EventPayload::Delete {
                            id,
                            pid,
                            exit_status,
                            exited_at,
                            ..
                        } => (id, pid, exit_status, exited_at.0),
                        EventPayload::ExecAdded { exec_id, .. } => (exec_id, 0, 0, 0),
                        EventPayload::ExecStarted { exec_id, pid, .. } => (exec_id, pid, 0, 0),
                        _ => (String::new(), 0, 0, 0),
                    };
                    self.check_order(topic, &c, &id);
                    Seen::Event {
                        topic,
                        container: c,
                        id,
                        pid,
                        status,
                        at,
                    }
                }
                Output::Done { call, result } => Seen::Done {
                    call: call.0,
                    result: result.map(summarize_reply).map_err(|e| e.code()),
                },
                Output::WaitDone { wait, result } => {
                    assert!(
                        self.open_waits.remove(&wait.0),
                        "wait {} answered but not open",
                        wait.0
                    );
                    assert!(
                        self.answered.insert(wait.0),
                        "wait {} answered twice",
                        wait.0
                    );
                    Seen::Wait {
                        wait: wait.0,
                        exit: match result {
                            WaitResult::Exited(x) => Some((x.status, x.at.0)),
                            WaitResult::Cancelled => None,
                        },
                    }
                }
            });
        }
        out
    }

    fn check_order(&mut self, topic: &str, c: &str, id: &str) {
        match topic {
            "/tasks/create" => {
                self.init_exited.remove(c);
            }
            "/tasks/start" => {
                assert!(
                    self.started.insert((c.into(), c.into())),
                    "{c} started twice"
                );
            }
            "/tasks/exec-started" => {
                assert!(self.started.insert((c.into(), id.into())));
            }
            "/tasks/exit" => {
                if id == c {
                    assert!(self.init_exited.insert(c.into()), "{c} exited twice");
                }
                self.started.remove(&(c.to_string(), id.to_string()));
            }
            "/tasks/delete" => {
                assert!(
                    self.init_exited.remove(c),
                    "/tasks/delete of {c} without its /tasks/exit"
                );
                self.started.retain(|(sc, _)| sc != c);
            }
            _ => {}
        }
    }
}

struct TaskSut;

impl StateMachineTest for TaskSut {
    type SystemUnderTest = Sut;
    type Reference = TaskModel;

    fn init_test(_: &Model) -> Sut {
        Sut {
            table: TaskTable::new(),
            open_waits: BTreeSet::new(),
            answered: BTreeSet::new(),
            dropped: BTreeSet::new(),
            init_exited: BTreeSet::new(),
            started: BTreeSet::new(),
        }
    }

    fn apply(mut sut: Sut, model: &Model, t: Transition) -> Sut {
        let step = &model.last;
        let mut results = Vec::new();
        let mut outputs = Vec::new();
        for input in &step.inputs {
            let r = sut.feed(model, input);
            let out = sut.drain();
            // A refusal publishes nothing; accepting a command publishes nothing yet.
            if r.is_err() || matches!(input, Input::Command(_)) {
                assert!(out.is_empty(), "{input:?} gave {r:?} and published {out:?}");
            }
            outputs.extend(out);
            results.push(r);
        }
        assert_eq!(results, step.results, "{t:?} → {:?}", step.inputs);
        assert_eq!(outputs, step.outputs, "{t:?} → {:?}", step.inputs);
        sut
    }

    fn check_invariants(sut: &Sut, m: &Model) {
        let t = &sut.table;
        for c in CONTAINERS {
            match m.tasks.get(c) {
                None => assert_eq!(t.get(NS, c, "").map_err(|e| e.code()), Err(Code::NotFound)),
                Some(task) => {
                    let mut procs = vec![("", &task.init)];
                    procs.extend(task.execs.iter().map(|(e, p)| (e.as_str(), p)));
                    for (e, p) in procs {
                        let info = t.get(NS, c, e).expect("the process exists");
                        assert_eq!(info.status, m.proc_status(c, e), "{c}/{e}");
                        assert_eq!(info.pid, p.pid, "{c}/{e}");
                        assert_eq!(exit_pair(info.exit), p.exit, "{c}/{e}");
                        assert_eq!(info.stdio.terminal, p.terminal);
                        assert_eq!(info.id, if e.is_empty() { c } else { e });
                    }
                    let execs: Vec<&String> = t.task(NS, c).expect("task").execs.keys().collect();
                    assert_eq!(execs, task.execs.keys().collect::<Vec<_>>());
                }
            }
        }
        let list: Vec<(String, Status, u32)> = t
            .list(NS)
            .into_iter()
            .map(|p| (p.id, p.status, p.pid))
            .collect();
        assert_eq!(list, m.list());
        let pending: Vec<u64> = t.pending_calls().map(|(c, _)| c.id.0).collect();
        assert_eq!(pending, m.pending.keys().copied().collect::<Vec<_>>());
        for (call, _) in t.pending_calls() {
            let mp = &m.pending[&call.id.0];
            assert_eq!(call.kind.name(), mp.kind.name());
        }
        assert_eq!(t.waiting(), m.waiters.len());
        assert_eq!(
            sut.open_waits,
            m.waiters.keys().copied().collect::<BTreeSet<_>>()
        );
        assert_eq!(
            t.is_empty(NS),
            m.tasks.is_empty()
                && !m
                    .pending
                    .values()
                    .any(|p| matches!(p.kind, MCall::Create { .. }))
        );
    }

    /// Drains the table to nothing: every pending call succeeds, every task's runtime goes
    /// away, every task is deleted. Then every Wait ever registered has been answered exactly
    /// once, or was dropped by a restart.
    fn teardown(mut sut: Sut, m: Model) {
        let now = Instant(m.clock + 1);
        loop {
            let next = sut.table.pending_calls().map(|(c, _)| c.id).next();
            let Some(call) = next else { break };
            sut.table.runtime_ok(now, call, 4242).expect("pending");
            sut.drain();
        }
        let ids: Vec<String> = sut.table.list(NS).into_iter().map(|p| p.id).collect();
        for c in &ids {
            sut.table
                .runtime_crashed(now, NS, c)
                .expect("the task exists");
            sut.drain();
            let del = sut.table.command(
                now,
                NS,
                Command::Delete {
                    container_id: c.clone(),
                },
            );
            let Ok(Accepted::Call(d)) = del else {
                panic!("a crashed task can be deleted: {del:?}")
            };
            sut.table.runtime_ok(now, d.id, 0).expect("pending");
            sut.drain();
        }
        assert!(sut.table.is_empty(NS));
        assert_eq!(sut.table.waiting(), 0);
        assert!(
            sut.open_waits.is_empty(),
            "unanswered: {:?}",
            sut.open_waits
        );
        let all: BTreeSet<u64> = (1..m.next_wait).collect();
        let seen: BTreeSet<u64> = sut.answered.union(&sut.dropped).copied().collect();
        assert_eq!(
            seen, all,
            "every wait answered once or dropped by a restart"
        );
        assert!(sut.answered.is_disjoint(&sut.dropped));
    }
}

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 2048;
    }
    config
}

prop_state_machine! {
    #![proptest_config(config())]

    #[test]
    fn task_table_matches_model(sequential 1..100 => TaskSut);
}
