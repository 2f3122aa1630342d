//! Unit tests of the task table: every rule, every error, every event.

use super::*;

const NS: &str = "default";

fn t(n: u64) -> Instant {
    Instant(n)
}

fn s(v: &str) -> String {
    v.to_string()
}

fn stdio(terminal: bool) -> Stdio {
    Stdio {
        stdin: s("/run/fifo/in"),
        stdout: s("/run/fifo/out"),
        stderr: if terminal { s("") } else { s("/run/fifo/err") },
        terminal,
    }
}

fn create_cmd(id: &str) -> Command {
    Command::Create(CreateTask {
        container_id: s(id),
        container_exists: true,
        bundle: format!("/run/berth/tasks/{NS}/{id}"),
        rootfs: vec![Mount {
            kind: s("bind"),
            source: s("/snap/1/fs"),
            target: s(""),
            options: vec![s("rw"), s("rbind")],
        }],
        stdio: stdio(false),
    })
}

fn start(id: &str, exec: &str) -> Command {
    Command::Start {
        container_id: s(id),
        exec_id: s(exec),
    }
}

fn wait(id: &str, exec: &str) -> Command {
    Command::Wait {
        container_id: s(id),
        exec_id: s(exec),
    }
}

fn kill(id: &str, exec: &str, all: bool) -> Command {
    Command::Kill {
        container_id: s(id),
        exec_id: s(exec),
        signal: 9,
        all,
    }
}

fn exec_cmd(id: &str, exec: &str, terminal: bool) -> Command {
    Command::Exec(ExecProcess {
        container_id: s(id),
        exec_id: s(exec),
        stdio: stdio(terminal),
        spec: br#"{"args":["sh"]}"#.to_vec(),
    })
}

fn delete(id: &str) -> Command {
    Command::Delete {
        container_id: s(id),
    }
}

fn delete_process(id: &str, exec: &str) -> Command {
    Command::DeleteProcess {
        container_id: s(id),
        exec_id: s(exec),
    }
}

fn pause(id: &str) -> Command {
    Command::Pause {
        container_id: s(id),
    }
}

fn resume(id: &str) -> Command {
    Command::Resume {
        container_id: s(id),
    }
}

fn drain(table: &mut TaskTable) -> Vec<Output> {
    std::iter::from_fn(|| table.poll()).collect()
}

fn topics(outputs: &[Output]) -> Vec<&'static str> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.topic()),
            _ => None,
        })
        .collect()
}

fn events(outputs: &[Output]) -> Vec<EventPayload> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.payload.clone()),
            _ => None,
        })
        .collect()
}

fn done(outputs: &[Output], call: CallId) -> Result<Reply, TaskError> {
    let mut found = outputs.iter().filter_map(|o| match o {
        Output::Done { call: c, result } if *c == call => Some(result.clone()),
        _ => None,
    });
    let r = found.next().expect("the call is done");
    assert!(found.next().is_none(), "one Done per call");
    r
}

fn wait_results(outputs: &[Output]) -> Vec<(WaitId, WaitResult)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::WaitDone { wait, result } => Some((*wait, *result)),
            _ => None,
        })
        .collect()
}

fn call(a: Result<Accepted, TaskError>) -> RuntimeCall {
    match a {
        Ok(Accepted::Call(c)) => c,
        other => panic!("expected a runtime call, got {other:?}"),
    }
}

fn code<T: core::fmt::Debug>(r: Result<T, TaskError>) -> Code {
    r.expect_err("refused").code()
}

/// Issues a command and reports its runtime call done with `pid`; returns the outputs.
fn ok(table: &mut TaskTable, cmd: Command, pid: u32) -> Vec<Output> {
    let c = call(table.command(t(10), NS, cmd));
    table.runtime_ok(t(11), c.id, pid).unwrap();
    let out = drain(table);
    done(&out, c.id).expect("command succeeded");
    out
}

fn exit(table: &mut TaskTable, id: &str, exec: &str, pid: u32, status: u32, at: u64) {
    table
        .exited(
            t(at),
            ProcessExit {
                namespace: s(NS),
                container_id: s(id),
                exec_id: s(exec),
                pid,
                status,
                at: t(at),
            },
        )
        .unwrap();
}

fn status(table: &TaskTable, id: &str, exec: &str) -> Status {
    table.get(NS, id, exec).unwrap().status
}

/// A table with task `id` created (pid 100) and started.
fn running(id: &str) -> TaskTable {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd(id), 100);
    ok(&mut table, start(id, ""), 100);
    table
}

/// A table with task `id` running and exec `e1` running (pid 200).
fn running_exec(id: &str) -> TaskTable {
    let mut table = running(id);
    ok(&mut table, exec_cmd(id, "e1", false), 0);
    ok(&mut table, start(id, "e1"), 200);
    table
}

/// The persisted form, to check that a refused input changed nothing.
fn persisted(table: &TaskTable) -> String {
    serde_json::to_string(table).unwrap()
}

#[track_caller]
fn refused(table: &mut TaskTable, cmd: Command, want: Code) -> TaskError {
    drain(table);
    let before = persisted(table);
    let pending = table.pending_calls().count();
    let e = table.command(t(50), NS, cmd).expect_err("refused");
    assert_eq!(e.code(), want, "{e}");
    assert_eq!(persisted(table), before, "a refusal changes nothing");
    assert_eq!(table.pending_calls().count(), pending);
    assert!(table.poll().is_none(), "a refusal publishes nothing");
    e
}

// ----- status and codes -----

#[test]
fn status_numbers_are_containerds() {
    let all = [
        (Status::Unknown, 0, "unknown"),
        (Status::Created, 1, "created"),
        (Status::Running, 2, "running"),
        (Status::Stopped, 3, "stopped"),
        (Status::Paused, 4, "paused"),
        (Status::Pausing, 5, "pausing"),
    ];
    for (st, n, name) in all {
        assert_eq!(st.wire(), n);
        assert_eq!(Status::from_wire(n), Some(st));
        assert_eq!(st.name(), name);
    }
    assert_eq!(Status::from_wire(6), None);
    assert_eq!(Code::NotFound.grpc(), 5);
    assert_eq!(Code::AlreadyExists.grpc(), 6);
    assert_eq!(Code::FailedPrecondition.grpc(), 9);
    assert_eq!(Code::InvalidArgument.grpc(), 3);
    assert_eq!(Code::Internal.grpc(), 13);
    assert_eq!(Code::Unavailable.grpc(), 14);
}

// ----- create -----

#[test]
fn create_asks_the_runtime_and_publishes_on_success() {
    let mut table = TaskTable::new();
    let c = call(table.command(t(1), NS, create_cmd("c1")));
    assert_eq!((c.namespace.as_str(), c.container_id.as_str()), (NS, "c1"));
    assert!(
        matches!(&c.kind, CallKind::Create { bundle, rootfs, stdio: io }
        if bundle == "/run/berth/tasks/default/c1" && rootfs.len() == 1 && !io.terminal)
    );
    // Invisible until the runtime confirms.
    assert_eq!(code(table.get(NS, "c1", "")), Code::NotFound);
    assert!(table.list(NS).is_empty());
    assert!(!table.is_empty(NS), "a task is being created");
    assert!(table.poll().is_none());

    table.runtime_ok(t(2), c.id, 42).unwrap();
    let out = drain(&mut table);
    assert_eq!(done(&out, c.id), Ok(Reply::Created { pid: 42 }));
    assert_eq!(
        events(&out),
        [EventPayload::Create {
            container_id: s("c1"),
            bundle: s("/run/berth/tasks/default/c1"),
            rootfs: table.task(NS, "c1").unwrap().rootfs.clone(),
            io: stdio(false),
            pid: 42,
        }]
    );
    let info = table.get(NS, "c1", "").unwrap();
    assert_eq!(
        info,
        ProcessInfo {
            container_id: s("c1"),
            id: s("c1"),
            pid: 42,
            status: Status::Created,
            stdio: stdio(false),
            exit: None,
        }
    );
    assert_eq!(table.task(NS, "c1").unwrap().updated_at, t(2));
}

#[test]
fn create_refusals() {
    let mut table = TaskTable::new();
    let Command::Create(mut c) = create_cmd("") else {
        unreachable!()
    };
    assert_eq!(
        refused(
            &mut table,
            Command::Create(c.clone()),
            Code::InvalidArgument
        ),
        TaskError::EmptyId
    );
    c.container_id = s("c1");
    c.container_exists = false;
    let e = refused(&mut table, Command::Create(c), Code::NotFound);
    assert_eq!(
        e.to_string(),
        "container \"c1\" in namespace \"default\": not found"
    );

    // A create in progress and an existing task both hold the id.
    let pending = call(table.command(t(1), NS, create_cmd("c1")));
    let e = refused(&mut table, create_cmd("c1"), Code::AlreadyExists);
    assert_eq!(e.to_string(), "task c1: already exists");
    table.runtime_ok(t(2), pending.id, 7).unwrap();
    drain(&mut table);
    refused(&mut table, create_cmd("c1"), Code::AlreadyExists);
    // Another namespace is another table.
    call(table.command(t(3), "other", create_cmd("c1")));
}

#[test]
fn a_failed_create_leaves_nothing() {
    let mut table = TaskTable::new();
    let c = call(table.command(t(1), NS, create_cmd("c1")));
    let failure = RuntimeFailure {
        code: Code::Internal,
        message: s("runc create: exit status 1"),
    };
    table.runtime_failed(t(2), c.id, failure).unwrap();
    let out = drain(&mut table);
    let e = done(&out, c.id).unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert_eq!(
        e.to_string(),
        "create of task \"c1\" failed: runc create: exit status 1"
    );
    assert!(topics(&out).is_empty(), "no event for a failed call");
    assert_eq!(code(table.get(NS, "c1", "")), Code::NotFound);
    assert!(table.is_empty(NS));
    assert_eq!(table.generation(), 0);
    // The id is free again.
    call(table.command(t(3), NS, create_cmd("c1")));
}

#[test]
fn driver_protocol_errors_change_nothing() {
    let mut table = TaskTable::new();
    assert_eq!(
        table.runtime_ok(t(1), CallId(99), 1),
        Err(TaskError::UnknownCall(CallId(99)))
    );
    let failure = RuntimeFailure {
        code: Code::Unavailable,
        message: s("x"),
    };
    assert_eq!(
        table
            .runtime_failed(t(1), CallId(99), failure)
            .unwrap_err()
            .code(),
        Code::Internal
    );
    let c = call(table.command(t(1), NS, create_cmd("c1")));
    let e = table.runtime_ok(t(2), c.id, 0).unwrap_err();
    assert!(matches!(e, TaskError::MissingPid { call: "create", .. }));
    assert!(table.pending_call(c.id).is_some(), "still pending");
    table.runtime_ok(t(2), c.id, 5).unwrap();
    assert_eq!(
        table.runtime_ok(t(2), c.id, 5),
        Err(TaskError::UnknownCall(c.id)),
        "reported once"
    );
}

// ----- missing tasks and processes -----

#[test]
fn every_command_on_a_missing_task_is_not_found() {
    let mut table = TaskTable::new();
    let cmds = [
        start("c1", ""),
        kill("c1", "", false),
        pause("c1"),
        resume("c1"),
        exec_cmd("c1", "e1", false),
        Command::CloseIo {
            container_id: s("c1"),
            exec_id: s(""),
            stdin: true,
        },
        Command::ResizePty {
            container_id: s("c1"),
            exec_id: s(""),
            width: 80,
            height: 24,
        },
        delete("c1"),
        delete_process("c1", "e1"),
        wait("c1", ""),
        Command::Get {
            container_id: s("c1"),
            exec_id: s(""),
        },
    ];
    for cmd in cmds {
        let e = refused(&mut table, cmd, Code::NotFound);
        assert_eq!(e.to_string(), "task c1 not found");
    }
    assert_eq!(
        table.command(t(1), NS, Command::List),
        Ok(Accepted::Done(Reply::List(vec![])))
    );
}

#[test]
fn every_command_on_a_missing_exec_is_not_found() {
    let mut table = running("c1");
    let cmds = [
        start("c1", "e9"),
        kill("c1", "e9", false),
        Command::CloseIo {
            container_id: s("c1"),
            exec_id: s("e9"),
            stdin: true,
        },
        Command::ResizePty {
            container_id: s("c1"),
            exec_id: s("e9"),
            width: 80,
            height: 24,
        },
        delete_process("c1", "e9"),
        wait("c1", "e9"),
        Command::Get {
            container_id: s("c1"),
            exec_id: s("e9"),
        },
    ];
    for cmd in cmds {
        let e = refused(&mut table, cmd, Code::NotFound);
        assert_eq!(e.to_string(), "process e9 of task c1 not found");
    }
}

// ----- start -----

#[test]
fn start_runs_a_created_init_once() {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("c1"), 100);
    let c = call(table.command(t(3), NS, start("c1", "")));
    assert_eq!(c.kind, CallKind::Start);
    assert_eq!(status(&table, "c1", ""), Status::Created, "until confirmed");
    let e = refused(&mut table, start("c1", ""), Code::Unavailable);
    assert_eq!(
        e.to_string(),
        "task \"c1\" is busy: its start is in progress; retry"
    );
    table.runtime_ok(t(4), c.id, 100).unwrap();
    let out = drain(&mut table);
    assert_eq!(done(&out, c.id), Ok(Reply::Started { pid: 100 }));
    assert_eq!(
        events(&out),
        [EventPayload::Start {
            container_id: s("c1"),
            pid: 100
        }]
    );
    assert_eq!(status(&table, "c1", ""), Status::Running);
    let e = refused(&mut table, start("c1", ""), Code::FailedPrecondition);
    assert_eq!(e.to_string(), "cannot start task \"c1\": it is running");
    ok(&mut table, pause("c1"), 0);
    refused(&mut table, start("c1", ""), Code::FailedPrecondition);
    ok(&mut table, resume("c1"), 0);
    exit(&mut table, "c1", "", 100, 0, 20);
    let e = refused(&mut table, start("c1", ""), Code::FailedPrecondition);
    assert_eq!(e.to_string(), "cannot start task \"c1\": it is stopped");
}

#[test]
fn a_failed_start_leaves_the_task_created() {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("c1"), 100);
    let gen = table.generation();
    let c = call(table.command(t(3), NS, start("c1", "")));
    let failure = RuntimeFailure {
        code: Code::Unavailable,
        message: s("runc not found"),
    };
    table.runtime_failed(t(4), c.id, failure).unwrap();
    let out = drain(&mut table);
    assert_eq!(done(&out, c.id).unwrap_err().code(), Code::Unavailable);
    assert!(topics(&out).is_empty());
    assert_eq!(status(&table, "c1", ""), Status::Created);
    assert_eq!(table.generation(), gen);
    call(table.command(t(5), NS, start("c1", "")));
}

// ----- the ctr run --rm sequence -----

#[test]
fn ctr_run_rm_wait_before_start() {
    let mut table = TaskTable::new();
    let create = ok(&mut table, create_cmd("c1"), 100);
    assert_eq!(topics(&create), [TOPIC_CREATE]);
    let Ok(Accepted::Waiting(w)) = table.command(t(12), NS, wait("c1", "")) else {
        panic!("a wait before start registers")
    };
    assert_eq!(table.waiting(), 1);
    let started = ok(&mut table, start("c1", ""), 100);
    assert_eq!(topics(&started), [TOPIC_START]);
    assert!(wait_results(&started).is_empty());

    exit(&mut table, "c1", "", 100, 3, 30);
    let out = drain(&mut table);
    assert_eq!(
        events(&out),
        [EventPayload::Exit {
            container_id: s("c1"),
            id: s("c1"),
            pid: 100,
            exit_status: 3,
            exited_at: t(30),
        }]
    );
    let exited = ExitInfo {
        status: 3,
        at: t(30),
    };
    assert_eq!(wait_results(&out), [(w, WaitResult::Exited(exited))]);
    assert_eq!(table.waiting(), 0);

    let info = table.get(NS, "c1", "").unwrap();
    assert_eq!((info.status, info.exit), (Status::Stopped, Some(exited)));
    // A Wait after the exit answers at once.
    assert_eq!(
        table.command(t(31), NS, wait("c1", "")),
        Ok(Accepted::Done(Reply::Exited(exited)))
    );

    let d = call(table.command(t(32), NS, delete("c1")));
    assert_eq!(d.kind, CallKind::Delete);
    table.runtime_ok(t(33), d.id, 0).unwrap();
    let out = drain(&mut table);
    assert_eq!(
        done(&out, d.id),
        Ok(Reply::Deleted(Deleted {
            id: s("c1"),
            pid: 100,
            exit: Some(exited)
        }))
    );
    assert_eq!(
        events(&out),
        [EventPayload::Delete {
            container_id: s("c1"),
            pid: 100,
            exit_status: 3,
            exited_at: t(30),
            id: s("c1"),
        }]
    );
    assert_eq!(code(table.get(NS, "c1", "")), Code::NotFound);
    assert!(table.is_empty(NS));
    assert_eq!(table.namespaces().count(), 0);
}

// ----- kill -----

#[test]
fn kill_rules() {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("c1"), 100);
    // A created init can be signalled (runc kill of a created container).
    let c = call(table.command(t(1), NS, kill("c1", "", true)));
    assert_eq!(
        c.kind,
        CallKind::Kill {
            signal: 9,
            all: true
        }
    );
    ok(&mut table, start("c1", ""), 100);
    // Kill is not a lifecycle call: never busy, and it does not block others.
    call(table.command(t(1), NS, kill("c1", "", false)));
    ok(&mut table, exec_cmd("c1", "e1", false), 0);
    let e = refused(
        &mut table,
        kill("c1", "e1", false),
        Code::FailedPrecondition,
    );
    assert_eq!(
        e.to_string(),
        "cannot kill process \"e1\" of task \"c1\": it is created"
    );
    ok(&mut table, start("c1", "e1"), 200);
    let c = call(table.command(t(1), NS, kill("c1", "e1", true)));
    assert_eq!(
        c.kind,
        CallKind::Kill {
            signal: 9,
            all: false
        },
        "all is for the init"
    );
    assert_eq!(c.exec_id, "e1");
    table.runtime_ok(t(2), c.id, 0).unwrap();
    assert_eq!(done(&drain(&mut table), c.id), Ok(Reply::Empty));
    ok(&mut table, pause("c1"), 0);
    call(table.command(t(1), NS, kill("c1", "", false)));
    exit(&mut table, "c1", "e1", 200, 137, 5);
    let e = refused(&mut table, kill("c1", "e1", false), Code::NotFound);
    assert_eq!(
        e.to_string(),
        "process already finished: process \"e1\" of task \"c1\""
    );
    exit(&mut table, "c1", "", 100, 137, 6);
    refused(&mut table, kill("c1", "", false), Code::NotFound);
}

#[test]
fn a_failed_kill_reports_the_runtimes_code() {
    let mut table = running("c1");
    let c = call(table.command(t(1), NS, kill("c1", "", false)));
    let failure = RuntimeFailure {
        code: Code::NotFound,
        message: s("container not running"),
    };
    table.runtime_failed(t(2), c.id, failure).unwrap();
    assert_eq!(
        done(&drain(&mut table), c.id).unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(status(&table, "c1", ""), Status::Running);
}

// ----- pause and resume -----

#[test]
fn pause_and_resume() {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("c1"), 100);
    let e = refused(&mut table, pause("c1"), Code::FailedPrecondition);
    assert_eq!(e.to_string(), "cannot pause task \"c1\": it is created");
    refused(&mut table, resume("c1"), Code::FailedPrecondition);
    ok(&mut table, start("c1", ""), 100);
    ok(&mut table, exec_cmd("c1", "e1", false), 0);
    refused(&mut table, resume("c1"), Code::FailedPrecondition);

    let p = call(table.command(t(1), NS, pause("c1")));
    assert_eq!(p.kind, CallKind::Pause);
    assert_eq!(status(&table, "c1", ""), Status::Pausing);
    assert_eq!(status(&table, "c1", "e1"), Status::Pausing);
    refused(&mut table, pause("c1"), Code::Unavailable);
    refused(&mut table, resume("c1"), Code::Unavailable);
    table.runtime_ok(t(2), p.id, 0).unwrap();
    let out = drain(&mut table);
    assert_eq!(done(&out, p.id), Ok(Reply::Empty));
    assert_eq!(
        events(&out),
        [EventPayload::Paused {
            container_id: s("c1")
        }]
    );
    assert_eq!(status(&table, "c1", ""), Status::Paused);
    assert_eq!(
        status(&table, "c1", "e1"),
        Status::Paused,
        "an exec of a paused task is reported paused"
    );
    let e = refused(&mut table, pause("c1"), Code::FailedPrecondition);
    assert_eq!(e.to_string(), "cannot pause task \"c1\": it is paused");
    refused(
        &mut table,
        exec_cmd("c1", "e2", false),
        Code::FailedPrecondition,
    );
    let e = refused(&mut table, start("c1", "e1"), Code::FailedPrecondition);
    assert_eq!(
        e.to_string(),
        "cannot start process \"e1\" of task \"c1\": it is paused"
    );
    refused(&mut table, delete("c1"), Code::FailedPrecondition);

    let out = ok(&mut table, resume("c1"), 0);
    assert_eq!(topics(&out), [TOPIC_RESUMED]);
    assert_eq!(status(&table, "c1", ""), Status::Running);
    assert_eq!(status(&table, "c1", "e1"), Status::Created);
}

#[test]
fn a_pause_confirmed_after_the_exit_changes_nothing() {
    let mut table = running("c1");
    let p = call(table.command(t(1), NS, pause("c1")));
    exit(&mut table, "c1", "", 100, 0, 2);
    assert_eq!(topics(&drain(&mut table)), [TOPIC_EXIT]);
    table.runtime_ok(t(3), p.id, 0).unwrap();
    let out = drain(&mut table);
    assert_eq!(done(&out, p.id), Ok(Reply::Empty));
    assert!(topics(&out).is_empty());
    assert_eq!(status(&table, "c1", ""), Status::Stopped);
}

#[test]
fn an_exit_while_paused_stops_the_task() {
    let mut table = running("c1");
    ok(&mut table, pause("c1"), 0);
    exit(&mut table, "c1", "", 100, 137, 9);
    assert_eq!(status(&table, "c1", ""), Status::Stopped);
    refused(&mut table, resume("c1"), Code::FailedPrecondition);
    ok(&mut table, delete("c1"), 0);
}

// ----- exec -----

#[test]
fn ctr_tasks_exec_sequence() {
    let mut table = running("c1");
    let c = call(table.command(t(1), NS, exec_cmd("c1", "e1", true)));
    assert!(
        matches!(&c.kind, CallKind::Exec { stdio: io, spec } if io.terminal && !spec.is_empty())
    );
    assert_eq!(c.exec_id, "e1");
    assert_eq!(
        code(table.get(NS, "c1", "e1")),
        Code::NotFound,
        "until confirmed"
    );
    table.runtime_ok(t(2), c.id, 0).unwrap();
    let out = drain(&mut table);
    assert_eq!(done(&out, c.id), Ok(Reply::Empty));
    assert_eq!(
        events(&out),
        [EventPayload::ExecAdded {
            container_id: s("c1"),
            exec_id: s("e1")
        }]
    );
    let info = table.get(NS, "c1", "e1").unwrap();
    assert_eq!(
        (info.id.as_str(), info.pid, info.status),
        ("e1", 0, Status::Created)
    );

    let Ok(Accepted::Waiting(w)) = table.command(t(3), NS, wait("c1", "e1")) else {
        panic!()
    };
    let out = ok(&mut table, start("c1", "e1"), 200);
    assert_eq!(
        events(&out),
        [EventPayload::ExecStarted {
            container_id: s("c1"),
            exec_id: s("e1"),
            pid: 200
        }]
    );
    assert_eq!(status(&table, "c1", "e1"), Status::Running);
    // CloseIO and ResizePty on the exec.
    let close = call(table.command(
        t(4),
        NS,
        Command::CloseIo {
            container_id: s("c1"),
            exec_id: s("e1"),
            stdin: true,
        },
    ));
    assert_eq!(
        (close.kind, close.exec_id.as_str()),
        (CallKind::CloseStdin, "e1")
    );
    let resize = call(table.command(
        t(4),
        NS,
        Command::ResizePty {
            container_id: s("c1"),
            exec_id: s("e1"),
            width: 120,
            height: 40,
        },
    ));
    assert_eq!(
        resize.kind,
        CallKind::Resize {
            width: 120,
            height: 40
        }
    );
    let e = refused(
        &mut table,
        delete_process("c1", "e1"),
        Code::FailedPrecondition,
    );
    assert_eq!(
        e.to_string(),
        "cannot delete process \"e1\" of task \"c1\": it is running"
    );

    exit(&mut table, "c1", "e1", 200, 3, 7);
    let out = drain(&mut table);
    let exited = ExitInfo {
        status: 3,
        at: t(7),
    };
    assert_eq!(
        events(&out),
        [EventPayload::Exit {
            container_id: s("c1"),
            id: s("e1"),
            pid: 200,
            exit_status: 3,
            exited_at: t(7)
        }]
    );
    assert_eq!(wait_results(&out), [(w, WaitResult::Exited(exited))]);
    assert_eq!(status(&table, "c1", "e1"), Status::Stopped);
    assert_eq!(
        status(&table, "c1", ""),
        Status::Running,
        "the task runs on"
    );

    let d = call(table.command(t(8), NS, delete_process("c1", "e1")));
    assert_eq!(
        (d.kind.clone(), d.exec_id.as_str()),
        (CallKind::DeleteProcess, "e1")
    );
    table.runtime_ok(t(9), d.id, 0).unwrap();
    let out = drain(&mut table);
    assert_eq!(
        done(&out, d.id),
        Ok(Reply::Deleted(Deleted {
            id: s("e1"),
            pid: 200,
            exit: Some(exited)
        }))
    );
    assert!(topics(&out).is_empty(), "DeleteProcess publishes nothing");
    assert_eq!(code(table.get(NS, "c1", "e1")), Code::NotFound);
    // The id can be used again.
    call(table.command(t(10), NS, exec_cmd("c1", "e1", false)));
}

#[test]
fn exec_refusals() {
    let mut table = running("c1");
    let e = refused(&mut table, exec_cmd("c1", "", false), Code::InvalidArgument);
    assert_eq!(e.to_string(), "exec id cannot be empty (task \"c1\")");
    refused(&mut table, delete_process("c1", ""), Code::InvalidArgument);
    let pending = call(table.command(t(1), NS, exec_cmd("c1", "e1", false)));
    let e = refused(&mut table, exec_cmd("c1", "e1", false), Code::AlreadyExists);
    assert_eq!(
        e.to_string(),
        "exec process \"e1\" of task \"c1\": already exists"
    );
    table.runtime_ok(t(2), pending.id, 0).unwrap();
    drain(&mut table);
    refused(&mut table, exec_cmd("c1", "e1", false), Code::AlreadyExists);
    // A start in progress makes the exec busy for other lifecycle commands, not for kill.
    let st = call(table.command(t(3), NS, start("c1", "e1")));
    refused(&mut table, start("c1", "e1"), Code::Unavailable);
    refused(&mut table, delete_process("c1", "e1"), Code::Unavailable);
    refused(&mut table, delete("c1"), Code::Unavailable);
    refused(
        &mut table,
        kill("c1", "e1", false),
        Code::FailedPrecondition,
    );
    table.runtime_ok(t(4), st.id, 201).unwrap();
    drain(&mut table);
    exit(&mut table, "c1", "", 100, 0, 5);
    let e = refused(
        &mut table,
        exec_cmd("c1", "e2", false),
        Code::FailedPrecondition,
    );
    assert_eq!(
        e.to_string(),
        "cannot exec process \"e2\" of task \"c1\": it is stopped"
    );
}

#[test]
fn a_created_task_accepts_execs_as_containerd_does() {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("c1"), 100);
    ok(&mut table, exec_cmd("c1", "e1", false), 0);
    ok(&mut table, start("c1", "e1"), 200);
    assert_eq!(status(&table, "c1", ""), Status::Created);
    assert_eq!(status(&table, "c1", "e1"), Status::Running);
}

#[test]
fn a_failed_exec_or_exec_start_leaves_no_trace() {
    let mut table = running("c1");
    let fail = || RuntimeFailure {
        code: Code::Internal,
        message: s("boom"),
    };
    let c = call(table.command(t(1), NS, exec_cmd("c1", "e1", false)));
    table.runtime_failed(t(2), c.id, fail()).unwrap();
    let out = drain(&mut table);
    assert_eq!(done(&out, c.id).unwrap_err().code(), Code::Internal);
    assert!(topics(&out).is_empty());
    assert_eq!(code(table.get(NS, "c1", "e1")), Code::NotFound);

    ok(&mut table, exec_cmd("c1", "e1", false), 0);
    let c = call(table.command(t(3), NS, start("c1", "e1")));
    table.runtime_failed(t(4), c.id, fail()).unwrap();
    assert!(topics(&drain(&mut table)).is_empty());
    let info = table.get(NS, "c1", "e1").unwrap();
    assert_eq!((info.status, info.pid), (Status::Created, 0));
}

#[test]
fn delete_process_of_an_exec_that_never_started_cancels_its_waits() {
    let mut table = running("c1");
    ok(&mut table, exec_cmd("c1", "e1", false), 0);
    let Ok(Accepted::Waiting(w)) = table.command(t(1), NS, wait("c1", "e1")) else {
        panic!()
    };
    let d = call(table.command(t(2), NS, delete_process("c1", "e1")));
    table.runtime_ok(t(3), d.id, 0).unwrap();
    let out = drain(&mut table);
    assert_eq!(wait_results(&out), [(w, WaitResult::Cancelled)]);
    assert_eq!(
        done(&out, d.id),
        Ok(Reply::Deleted(Deleted {
            id: s("e1"),
            pid: 0,
            exit: None
        }))
    );
    assert_eq!(table.waiting(), 0);
}

// ----- close IO and resize -----

#[test]
fn close_io_and_resize_answer_at_once_when_there_is_nothing_to_do() {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("c1"), 100);
    let close = |stdin| Command::CloseIo {
        container_id: s("c1"),
        exec_id: s(""),
        stdin,
    };
    let resize = || Command::ResizePty {
        container_id: s("c1"),
        exec_id: s(""),
        width: 80,
        height: 24,
    };
    assert_eq!(
        table.command(t(1), NS, close(false)),
        Ok(Accepted::Done(Reply::Empty))
    );
    assert_eq!(
        call(table.command(t(1), NS, close(true))).kind,
        CallKind::CloseStdin
    );
    // No terminal: nothing to resize.
    assert_eq!(
        table.command(t(1), NS, resize()),
        Ok(Accepted::Done(Reply::Empty))
    );
    ok(&mut table, exec_cmd("c1", "t1", true), 0);
    let resize_exec = || Command::ResizePty {
        container_id: s("c1"),
        exec_id: s("t1"),
        width: 80,
        height: 24,
    };
    // Not busy while its start is pending.
    let st = call(table.command(t(2), NS, start("c1", "t1")));
    assert!(matches!(
        call(table.command(t(2), NS, resize_exec())).kind,
        CallKind::Resize { .. }
    ));
    table.runtime_ok(t(3), st.id, 300).unwrap();
    exit(&mut table, "c1", "t1", 300, 0, 4);
    assert_eq!(
        table.command(t(5), NS, resize_exec()),
        Ok(Accepted::Done(Reply::Empty)),
        "a stopped process has no terminal to resize"
    );
}

// ----- delete -----

#[test]
fn delete_rules() {
    let mut table = running("c1");
    let e = refused(&mut table, delete("c1"), Code::FailedPrecondition);
    assert_eq!(e.to_string(), "cannot delete task \"c1\": it is running");
    // A lifecycle call in progress anywhere in the task makes it busy.
    let ex = call(table.command(t(1), NS, exec_cmd("c1", "e1", false)));
    exit(&mut table, "c1", "", 100, 0, 2);
    let e = refused(&mut table, delete("c1"), Code::Unavailable);
    assert_eq!(
        e.to_string(),
        "process \"e1\" of task \"c1\" is busy: its exec is in progress; retry"
    );
    table.runtime_ok(t(3), ex.id, 0).unwrap();
    drain(&mut table);
    let d = call(table.command(t(4), NS, delete("c1")));
    refused(&mut table, delete("c1"), Code::Unavailable);
    refused(&mut table, start("c1", "e1"), Code::Unavailable);
    refused(&mut table, exec_cmd("c1", "e2", false), Code::Unavailable);
    refused(&mut table, create_cmd("c1"), Code::AlreadyExists);
    let failure = RuntimeFailure {
        code: Code::Internal,
        message: s("device busy"),
    };
    table.runtime_failed(t(5), d.id, failure).unwrap();
    let out = drain(&mut table);
    assert!(topics(&out).is_empty());
    assert_eq!(
        status(&table, "c1", ""),
        Status::Stopped,
        "a failed delete keeps the task"
    );
    ok(&mut table, delete("c1"), 0);
}

#[test]
fn deleting_a_created_task_kills_its_init() {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("c1"), 100);
    let Ok(Accepted::Waiting(w)) = table.command(t(1), NS, wait("c1", "")) else {
        panic!()
    };
    let d = call(table.command(t(2), NS, delete("c1")));
    table.runtime_ok(t(3), d.id, 0).unwrap();
    let out = drain(&mut table);
    let killed = ExitInfo {
        status: EXIT_KILLED,
        at: t(3),
    };
    assert_eq!(topics(&out), [TOPIC_EXIT, TOPIC_DELETE]);
    assert_eq!(wait_results(&out), [(w, WaitResult::Exited(killed))]);
    assert_eq!(
        done(&out, d.id),
        Ok(Reply::Deleted(Deleted {
            id: s("c1"),
            pid: 100,
            exit: Some(killed)
        }))
    );
}

#[test]
fn an_exit_reported_before_the_delete_of_a_created_task_is_kept() {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("c1"), 100);
    let d = call(table.command(t(2), NS, delete("c1")));
    exit(&mut table, "c1", "", 100, 143, 3);
    table.runtime_ok(t(4), d.id, 0).unwrap();
    let out = drain(&mut table);
    assert_eq!(topics(&out), [TOPIC_EXIT, TOPIC_DELETE]);
    let Ok(Reply::Deleted(del)) = done(&out, d.id) else {
        panic!()
    };
    assert_eq!(
        del.exit,
        Some(ExitInfo {
            status: 143,
            at: t(3)
        })
    );
}

#[test]
fn deleting_a_task_takes_its_execs_along() {
    let mut table = running_exec("c1");
    ok(&mut table, exec_cmd("c1", "e2", false), 0);
    let Ok(Accepted::Waiting(w1)) = table.command(t(1), NS, wait("c1", "e1")) else {
        panic!()
    };
    let Ok(Accepted::Waiting(w2)) = table.command(t(1), NS, wait("c1", "e2")) else {
        panic!()
    };
    exit(&mut table, "c1", "", 100, 0, 20);
    drain(&mut table);
    assert_eq!(
        status(&table, "c1", "e1"),
        Status::Running,
        "its exit follows"
    );
    let d = call(table.command(t(21), NS, delete("c1")));
    table.runtime_ok(t(22), d.id, 0).unwrap();
    let out = drain(&mut table);
    assert_eq!(
        events(&out),
        [
            EventPayload::Exit {
                container_id: s("c1"),
                id: s("e1"),
                pid: 200,
                exit_status: EXIT_KILLED,
                exited_at: t(20),
            },
            EventPayload::Delete {
                container_id: s("c1"),
                pid: 100,
                exit_status: 0,
                exited_at: t(20),
                id: s("c1"),
            }
        ]
    );
    let killed = ExitInfo {
        status: EXIT_KILLED,
        at: t(20),
    };
    assert_eq!(
        wait_results(&out),
        [
            (w1, WaitResult::Exited(killed)),
            (w2, WaitResult::Cancelled)
        ]
    );
    assert_eq!(table.waiting(), 0);
    // The exec's own exit arrives late: nothing to do.
    let late = table.exited(
        t(23),
        ProcessExit {
            namespace: s(NS),
            container_id: s("c1"),
            exec_id: s("e1"),
            pid: 200,
            status: 137,
            at: t(20),
        },
    );
    assert_eq!(code(late), Code::NotFound);
    assert!(table.poll().is_none());
}

// ----- exits -----

#[test]
fn an_exit_during_a_pending_start_follows_the_start_event() {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("c1"), 100);
    let Ok(Accepted::Waiting(w)) = table.command(t(1), NS, wait("c1", "")) else {
        panic!()
    };
    let st = call(table.command(t(2), NS, start("c1", "")));
    exit(&mut table, "c1", "", 100, 1, 3);
    assert!(table.poll().is_none(), "held until the start is reported");
    assert_eq!(status(&table, "c1", ""), Status::Created);
    table.runtime_ok(t(4), st.id, 100).unwrap();
    let out = drain(&mut table);
    assert_eq!(topics(&out), [TOPIC_START, TOPIC_EXIT]);
    assert_eq!(
        wait_results(&out),
        [(
            w,
            WaitResult::Exited(ExitInfo {
                status: 1,
                at: t(3)
            })
        )]
    );
    assert_eq!(done(&out, st.id), Ok(Reply::Started { pid: 100 }));
    assert_eq!(status(&table, "c1", ""), Status::Stopped);
}

#[test]
fn an_init_exit_held_during_a_failed_start_still_stops_it() {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("c1"), 100);
    let st = call(table.command(t(2), NS, start("c1", "")));
    exit(&mut table, "c1", "", 100, 1, 3);
    let failure = RuntimeFailure {
        code: Code::Internal,
        message: s("exec format error"),
    };
    table.runtime_failed(t(4), st.id, failure).unwrap();
    let out = drain(&mut table);
    assert_eq!(topics(&out), [TOPIC_EXIT]);
    assert_eq!(done(&out, st.id).unwrap_err().code(), Code::Internal);
    assert_eq!(status(&table, "c1", ""), Status::Stopped);
}

#[test]
fn an_exec_exit_held_during_a_failed_start_is_dropped() {
    let mut table = running("c1");
    ok(&mut table, exec_cmd("c1", "e1", false), 0);
    let st = call(table.command(t(2), NS, start("c1", "e1")));
    exit(&mut table, "c1", "e1", 200, 1, 3);
    let failure = RuntimeFailure {
        code: Code::Internal,
        message: s("x"),
    };
    table.runtime_failed(t(4), st.id, failure).unwrap();
    let out = drain(&mut table);
    assert!(topics(&out).is_empty());
    assert_eq!(status(&table, "c1", "e1"), Status::Created);
}

#[test]
fn an_exit_during_a_pending_create_follows_the_create_event() {
    let mut table = TaskTable::new();
    let c = call(table.command(t(1), NS, create_cmd("c1")));
    exit(&mut table, "c1", "", 100, 2, 2);
    table.runtime_ok(t(3), c.id, 100).unwrap();
    let out = drain(&mut table);
    assert_eq!(topics(&out), [TOPIC_CREATE, TOPIC_EXIT]);
    assert_eq!(status(&table, "c1", ""), Status::Stopped);
}

#[test]
fn exit_refusals() {
    let mut table = TaskTable::new();
    let report = |table: &mut TaskTable, exec: &str, pid: u32| {
        table.exited(
            t(9),
            ProcessExit {
                namespace: s(NS),
                container_id: s("c1"),
                exec_id: s(exec),
                pid,
                status: 0,
                at: t(9),
            },
        )
    };
    assert_eq!(code(report(&mut table, "", 100)), Code::NotFound);
    ok(&mut table, create_cmd("c1"), 100);
    ok(&mut table, exec_cmd("c1", "e1", false), 0);
    let before = persisted(&table);
    let e = report(&mut table, "", 101).unwrap_err();
    assert_eq!(
        e,
        TaskError::PidMismatch {
            container_id: s("c1"),
            exec_id: s(""),
            known: 100,
            reported: 101
        }
    );
    let e = report(&mut table, "e1", 5).unwrap_err();
    assert!(matches!(e, TaskError::NotStarted { .. }));
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(code(report(&mut table, "e9", 5)), Code::NotFound);
    assert_eq!(persisted(&table), before);
    assert!(table.poll().is_none());
    // A created init can exit (killed before start).
    report(&mut table, "", 100).unwrap();
    assert_eq!(status(&table, "c1", ""), Status::Stopped);
    drain(&mut table);
    assert_eq!(
        code(report(&mut table, "", 100)),
        Code::NotFound,
        "exited once"
    );
    assert!(table.poll().is_none());
}

#[test]
fn every_wait_is_answered_once() {
    let mut table = running("c1");
    let waits: Vec<WaitId> = (0..3)
        .map(|_| match table.command(t(1), NS, wait("c1", "")) {
            Ok(Accepted::Waiting(w)) => w,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(waits.len(), 3);
    assert!(table.forget_wait(waits[1]));
    assert!(!table.forget_wait(waits[1]));
    exit(&mut table, "c1", "", 100, 0, 2);
    let out = drain(&mut table);
    let answered: Vec<WaitId> = wait_results(&out).into_iter().map(|(w, _)| w).collect();
    assert_eq!(answered, [waits[0], waits[2]]);
}

// ----- oom and runtime crashes -----

#[test]
fn oom_publishes_an_event_and_changes_nothing() {
    let mut table = running("c1");
    let gen = table.generation();
    table.oom(NS, "c1").unwrap();
    assert_eq!(
        events(&drain(&mut table)),
        [EventPayload::Oom {
            container_id: s("c1")
        }]
    );
    assert_eq!(table.generation(), gen);
    assert_eq!(status(&table, "c1", ""), Status::Running);
    assert_eq!(code(table.oom(NS, "c9")), Code::NotFound);
}

#[test]
fn a_runtime_crash_stops_every_process_with_255() {
    let mut table = running_exec("c1");
    ok(&mut table, exec_cmd("c1", "e2", false), 0);
    let Ok(Accepted::Waiting(w)) = table.command(t(1), NS, wait("c1", "")) else {
        panic!()
    };
    let p = call(table.command(t(2), NS, pause("c1")));
    table.runtime_crashed(t(5), NS, "c1").unwrap();
    let out = drain(&mut table);
    let e = done(&out, p.id).unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(e.to_string(), "pause of task \"c1\": the runtime died");
    assert_eq!(
        events(&out),
        [
            EventPayload::Exit {
                container_id: s("c1"),
                id: s("e1"),
                pid: 200,
                exit_status: 255,
                exited_at: t(5)
            },
            EventPayload::Exit {
                container_id: s("c1"),
                id: s("c1"),
                pid: 100,
                exit_status: 255,
                exited_at: t(5)
            },
        ]
    );
    let crashed = ExitInfo {
        status: EXIT_RUNTIME_CRASHED,
        at: t(5),
    };
    assert_eq!(wait_results(&out), [(w, WaitResult::Exited(crashed))]);
    assert_eq!(status(&table, "c1", ""), Status::Stopped);
    assert_eq!(
        status(&table, "c1", "e2"),
        Status::Created,
        "never started: no process"
    );
    assert_eq!(table.pending_calls().count(), 0);
    // The runtime's late answer to the failed call is refused.
    assert_eq!(
        table.runtime_ok(t(6), p.id, 0),
        Err(TaskError::UnknownCall(p.id))
    );
    ok(&mut table, delete("c1"), 0);
    assert_eq!(code(table.runtime_crashed(t(7), NS, "c1")), Code::NotFound);
}

#[test]
fn a_runtime_crash_during_create_fails_it() {
    let mut table = TaskTable::new();
    let c = call(table.command(t(1), NS, create_cmd("c1")));
    table.runtime_crashed(t(2), NS, "c1").unwrap();
    let out = drain(&mut table);
    assert_eq!(done(&out, c.id).unwrap_err().code(), Code::Unavailable);
    assert!(topics(&out).is_empty());
    assert!(table.is_empty(NS));
}

// ----- get and list -----

#[test]
fn list_covers_the_namespace() {
    let mut table = running("b");
    ok(&mut table, create_cmd("a"), 7);
    let c = call(table.command(t(1), "other", create_cmd("z")));
    table.runtime_ok(t(1), c.id, 9).unwrap();
    let Ok(Accepted::Done(Reply::List(list))) = table.command(t(1), NS, Command::List) else {
        panic!()
    };
    let got: Vec<(&str, u32, Status)> = list
        .iter()
        .map(|p| (p.id.as_str(), p.pid, p.status))
        .collect();
    assert_eq!(
        got,
        [("a", 7, Status::Created), ("b", 100, Status::Running)]
    );
    assert_eq!(table.list("other").len(), 1);
    assert_eq!(table.list("none").len(), 0);
    let Ok(Accepted::Done(Reply::Process(p))) = table.command(
        t(1),
        NS,
        Command::Get {
            container_id: s("b"),
            exec_id: s(""),
        },
    ) else {
        panic!()
    };
    assert_eq!(p.status, Status::Running);
}

// ----- persistence -----

#[test]
fn generation_counts_persisted_changes_only() {
    let mut table = TaskTable::new();
    let c = call(table.command(t(1), NS, create_cmd("c1")));
    assert_eq!(table.generation(), 0, "a pending call is not persisted");
    table.runtime_ok(t(2), c.id, 100).unwrap();
    let g1 = table.generation();
    assert!(g1 > 0);
    let _ = table.command(t(3), NS, wait("c1", ""));
    let _ = table.command(t(3), NS, Command::List);
    let _ = table.command(t(3), NS, pause("c1"));
    assert_eq!(table.generation(), g1);
    ok(&mut table, start("c1", ""), 100);
    assert!(table.generation() > g1);
}

#[test]
fn the_table_round_trips_without_its_transient_state() {
    let mut table = running_exec("c1");
    ok(&mut table, pause("c1"), 0);
    ok(&mut table, create_cmd("c2"), 300);
    exit(&mut table, "c1", "e1", 200, 4, 40);
    let _ = table.command(t(41), NS, wait("c2", ""));
    let _ = call(table.command(t(41), NS, start("c2", "")));
    drain(&mut table);
    let json = table.to_json();
    let back = TaskTable::from_json(json.as_bytes()).unwrap();
    assert_eq!(back.to_json(), json);
    assert_eq!(serde_json::to_string(&table).unwrap(), json);
    assert!(matches!(
        TaskTable::from_json(b"{\"namespaces\": 3}"),
        Err(LoadError::Parse(_))
    ));
    assert_eq!(back.task(NS, "c1"), table.task(NS, "c1"));
    assert_eq!(back.pending_calls().count(), 0);
    assert_eq!(back.waiting(), 0);
    assert_eq!(back.get(NS, "c1", "").unwrap().status, Status::Paused);
    let e1 = back.get(NS, "c1", "e1").unwrap();
    assert_eq!(
        e1.exit,
        Some(ExitInfo {
            status: 4,
            at: t(40)
        })
    );
}

#[test]
fn a_corrupt_table_does_not_load() {
    let table = running_exec("c1");
    let json: serde_json::Value = serde_json::to_value(&table).unwrap();
    let corrupt = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = json.clone();
        f(&mut v);
        serde_json::from_value::<TaskTable>(v)
            .unwrap_err()
            .to_string()
    };
    let e = corrupt(&|v| v["namespaces"][NS]["c1"]["init"]["state"] = "stopped".into());
    assert!(e.contains("exit if and only if it is stopped"), "{e}");
    let e = corrupt(&|v| v["namespaces"][NS]["c1"]["execs"]["e1"]["state"] = "paused".into());
    assert!(e.contains("cannot be paused"), "{e}");
    let e = corrupt(&|v| v["namespaces"][NS]["c1"]["init"]["pid"] = 0.into());
    assert!(e.contains("has a pid"), "{e}");
    let e = corrupt(&|v| {
        v["namespaces"][NS]["c1"]["execs"]["e1"]["state"] = "created".into();
    });
    assert!(e.contains("never started has no pid"), "{e}");
    let e = corrupt(&|v| v["namespaces"][NS] = serde_json::json!({}));
    assert!(e.contains("namespace without tasks"), "{e}");
}

// ----- daemon restart -----

fn found(id: &str, exec: &str, pid: u32, state: FoundState) -> Found {
    Found {
        namespace: s(NS),
        container_id: s(id),
        exec_id: s(exec),
        pid,
        state,
    }
}

#[test]
fn a_restart_adopts_what_happened_while_down() {
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("a"), 10); // started while down
    ok(&mut table, create_cmd("b"), 20);
    ok(&mut table, start("b", ""), 20); // paused while down
    ok(&mut table, create_cmd("c"), 30);
    ok(&mut table, start("c", ""), 30);
    ok(&mut table, exec_cmd("c", "e1", false), 0); // started while down
    ok(&mut table, exec_cmd("c", "e2", false), 0); // never started
    ok(&mut table, pause("c"), 0); // resumed while down
    ok(&mut table, create_cmd("d"), 40); // gone while down
    ok(&mut table, start("d", ""), 40);
    ok(&mut table, exec_cmd("d", "x", false), 0);
    ok(&mut table, start("d", "x"), 41); // gone too
    ok(&mut table, create_cmd("e"), 50);
    ok(&mut table, start("e", ""), 50);
    exit(&mut table, "e", "", 50, 0, 5); // stopped, yet "found": an orphan
    let _ = table.command(t(60), NS, wait("a", "")); // dropped by the restart
    let _ = call(table.command(t(60), NS, kill("b", "", false))); // dropped too
    drain(&mut table);

    let mut table: TaskTable =
        serde_json::from_str(&serde_json::to_string(&table).unwrap()).unwrap();
    let recovered = table.restarted(
        t(70),
        vec![
            found("a", "", 10, FoundState::Running),
            found("b", "", 20, FoundState::Paused),
            found("c", "", 30, FoundState::Running),
            found("c", "e1", 31, FoundState::Running),
            found("e", "", 50, FoundState::Running),
            found("zz", "", 99, FoundState::Created),
            found("b", "unknown", 98, FoundState::Running),
        ],
    );
    let out = drain(&mut table);
    assert_eq!(
        events(&out),
        [
            EventPayload::Start {
                container_id: s("a"),
                pid: 10
            },
            EventPayload::Paused {
                container_id: s("b")
            },
            EventPayload::Resumed {
                container_id: s("c")
            },
            EventPayload::ExecStarted {
                container_id: s("c"),
                exec_id: s("e1"),
                pid: 31
            },
        ]
    );
    assert_eq!(
        recovered.unaccounted,
        [
            Unaccounted {
                namespace: s(NS),
                container_id: s("d"),
                exec_id: s(""),
                pid: 40
            },
            Unaccounted {
                namespace: s(NS),
                container_id: s("d"),
                exec_id: s("x"),
                pid: 41
            },
        ]
    );
    let orphans: Vec<(&str, &str)> = recovered
        .orphans
        .iter()
        .map(|f| (f.container_id.as_str(), f.exec_id.as_str()))
        .collect();
    assert_eq!(orphans, [("b", "unknown"), ("e", ""), ("zz", "")]);
    assert_eq!(status(&table, "a", ""), Status::Running);
    assert_eq!(status(&table, "b", ""), Status::Paused);
    assert_eq!(status(&table, "c", ""), Status::Running);
    assert_eq!(status(&table, "c", "e1"), Status::Running);
    assert_eq!(status(&table, "c", "e2"), Status::Created);
    assert_eq!(table.waiting(), 0);
    assert_eq!(table.pending_calls().count(), 0);

    // The driver reports what it learnt of the unaccounted processes.
    exit(&mut table, "d", "x", 41, 1, 65);
    table.runtime_crashed(t(71), NS, "d").unwrap();
    let out = drain(&mut table);
    assert_eq!(topics(&out), [TOPIC_EXIT, TOPIC_EXIT]);
    let d = table.get(NS, "d", "").unwrap();
    assert_eq!(d.exit.map(|e| e.status), Some(EXIT_RUNTIME_CRASHED));
    assert_eq!(
        table.get(NS, "d", "x").unwrap().exit.map(|e| e.status),
        Some(1)
    );
}

#[test]
fn a_restart_adopts_a_created_init_found_paused() {
    // Started and paused while berth was down: both events, in order.
    let mut table = TaskTable::new();
    ok(&mut table, create_cmd("a"), 10);
    let recovered = table.restarted(t(5), vec![found("a", "", 10, FoundState::Paused)]);
    assert_eq!(recovered, Recovered::default());
    assert_eq!(
        events(&drain(&mut table)),
        [
            EventPayload::Start {
                container_id: s("a"),
                pid: 10
            },
            EventPayload::Paused {
                container_id: s("a")
            },
        ]
    );
    assert_eq!(status(&table, "a", ""), Status::Paused);
    // A started process is never taken back to created.
    let recovered = table.restarted(t(6), vec![found("a", "", 10, FoundState::Created)]);
    assert_eq!(recovered, Recovered::default());
    assert_eq!(status(&table, "a", ""), Status::Paused);
    assert!(table.poll().is_none());
}

#[test]
fn a_restart_of_a_live_table_drops_its_calls_waits_and_outputs() {
    let mut table = running("c1");
    let _ = table.command(t(1), NS, wait("c1", ""));
    let k = call(table.command(t(1), NS, kill("c1", "", false)));
    table.oom(NS, "c1").unwrap(); // queued, never polled
    let gen = table.generation();
    let recovered = table.restarted(t(2), vec![found("c1", "", 100, FoundState::Running)]);
    assert_eq!(recovered, Recovered::default());
    assert_eq!(table.waiting(), 0);
    assert_eq!(table.pending_calls().count(), 0);
    assert!(table.poll().is_none());
    assert_eq!(table.generation(), gen, "nothing persisted changed");
    assert_eq!(
        table.runtime_ok(t(3), k.id, 0),
        Err(TaskError::UnknownCall(k.id))
    );
    // Ids are not reused after a restart.
    let Ok(Accepted::Waiting(w)) = table.command(t(4), NS, wait("c1", "")) else {
        panic!()
    };
    assert_eq!(w, WaitId(2));
    assert_eq!(
        call(table.command(t(4), NS, kill("c1", "", false))).id,
        CallId(k.id.0 + 1)
    );
}
