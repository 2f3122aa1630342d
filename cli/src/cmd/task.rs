//! `berth task`: the tasks (running containers) of a namespace, as `ctr tasks` shows and
//! drives them: list, processes, signals, pause and resume, metrics, removal.
//!
//! A task is the live side of a container record (`berth container`): its init process, any
//! exec processes, its cgroup. Each subcommand is one variant of [`TaskCommand`] and one arm of
//! [`run`]; the helpers ([`get`], [`task_err`], [`status_name`], [`parse_signal`]) are public
//! so further subcommands (`task exec`, `berth run`) can share them.

use berth_api::any::from_any;
use berth_api::cgroups_v1 as cg;
use berth_api::runc::v1::ProcessDetails;
use berth_api::services::tasks::v1::{
    DeleteResponse, DeleteTaskRequest, GetRequest, KillRequest, ListPidsRequest, ListTasksRequest,
    MetricsRequest, PauseTaskRequest, ResumeTaskRequest, WaitRequest,
};
use berth_api::task_types::{Process, Status};
use clap::Subcommand;
use serde::Serialize;
use serde_json::{json, Value};
use tonic::Code;

use crate::client::Client;
use crate::cmd::{remove_each, stdout_err};
use crate::error::{Error, Result};
use crate::output::{self, Table};
use crate::Opts;

/// `berth task …`
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Run another process in a running task: output attached, its exit code passed on
    Exec(crate::cmd::run::ExecArgs),
    /// List tasks with their init pid and status (filters such as status==running, id==x)
    #[command(visible_alias = "list")]
    Ls {
        /// A containerd filter
        filter: Option<String>,
        /// Print only the task ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the processes of a task (host pids; INFO names the exec process, if any)
    Ps {
        /// The task (container) id
        id: String,
    },
    /// Send a signal to a task's init process, to one exec process, or to all its processes
    Kill {
        /// The task (container) id
        id: String,
        /// The signal, by name or number: SIGKILL, KILL, kill, 9, RTMIN+3
        #[arg(
            short,
            long,
            default_value = "SIGTERM",
            value_name = "SIGNAL",
            value_parser = parse_signal
        )]
        signal: u32,
        /// Signal every process of the task, not only its init
        #[arg(short, long, conflicts_with = "exec_id")]
        all: bool,
        /// Signal this exec process instead of the init
        #[arg(long, value_name = "EXEC_ID")]
        exec_id: Option<String>,
    },
    /// Freeze every process of a task
    Pause {
        /// The task (container) id
        id: String,
    },
    /// Thaw a paused task
    Resume {
        /// The task (container) id
        id: String,
    },
    /// Show a task's cgroup metrics: memory, CPU, pids
    Metrics {
        /// The task (container) id
        id: String,
    },
    /// Remove stopped tasks (the container record stays; `berth container rm` removes it)
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// Task (container) ids
        #[arg(required = true)]
        ids: Vec<String>,
        /// Kill a task that still runs (SIGKILL to all its processes) and wait for it first
        #[arg(short, long)]
        force: bool,
    },
}

/// A status's upper-case name as ctr prints it (`RUNNING`, `STOPPED`, …).
pub fn status_name(status: i32) -> String {
    Status::try_from(status).map_or_else(
        |_| format!("UNKNOWN({status})"),
        |s| s.as_str_name().to_string(),
    )
}

/// A process as `--json` shows it.
#[derive(Serialize)]
struct ProcessView {
    id: String,
    pid: u32,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_status: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exited_at: Option<String>,
    terminal: bool,
    stdin: String,
    stdout: String,
    stderr: String,
}

fn process_view(p: &Process) -> ProcessView {
    let stopped = p.status == Status::Stopped as i32;
    ProcessView {
        id: p.container_id.clone(),
        pid: p.pid,
        status: status_name(p.status).to_ascii_lowercase(),
        exec_id: (!p.id.is_empty() && p.id != p.container_id).then(|| p.id.clone()),
        exit_status: stopped.then_some(p.exit_status),
        exited_at: if stopped {
            output::rfc3339(p.exited_at.as_ref())
        } else {
            None
        },
        terminal: p.terminal,
        stdin: p.stdin.clone(),
        stdout: p.stdout.clone(),
        stderr: p.stderr.clone(),
    }
}

/// Maps a status of the Tasks service about task `id` (and process `exec_id`, if not empty)
/// when trying to `verb` it; `hint` is appended to a failed-precondition message (what to do
/// instead).
pub fn task_err(
    client: &Client,
    id: &str,
    exec_id: &str,
    verb: &str,
    hint: &str,
    s: &tonic::Status,
) -> Error {
    let msg = s.message();
    let what = if exec_id.is_empty() {
        format!("task {id:?}")
    } else {
        format!("process {exec_id:?} of task {id:?}")
    };
    match s.code() {
        Code::NotFound if msg.contains("already finished") => Error::failed(format!(
            "cannot {verb} {what}: it has already exited (see `berth task ls`)"
        )),
        Code::FailedPrecondition if !msg.contains("namespace") => {
            let reason = if msg.starts_with("cannot ") {
                msg.to_string()
            } else {
                format!("cannot {verb} {what}: {msg}")
            };
            Error::failed(if hint.is_empty() {
                reason
            } else {
                format!("{reason} — {hint}")
            })
        }
        _ => client.err(&what, s),
    }
}

/// One process of task `id` (its init if `exec_id` is empty).
pub async fn get(client: &Client, id: &str, exec_id: &str) -> Result<Process> {
    client
        .tasks()
        .get(client.request(GetRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        })?)
        .await
        .map_err(|s| task_err(client, id, exec_id, "inspect", "", &s))?
        .into_inner()
        .process
        .ok_or_else(|| Error::failed(format!("berthd returned no process for task {id:?}")))
}

/// Every task of the namespace matching `filter`, sorted by id.
pub async fn list(client: &Client, filter: Option<String>) -> Result<Vec<Process>> {
    let mut tasks = client
        .tasks()
        .list(client.request(ListTasksRequest {
            filter: filter.unwrap_or_default(),
        })?)
        .await
        .map_err(|s| client.err("tasks", &s))?
        .into_inner()
        .tasks;
    tasks.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    Ok(tasks)
}

/// Runs a `berth task` command.
pub async fn run(client: &Client, opts: Opts, cmd: TaskCommand) -> Result<()> {
    match cmd {
        TaskCommand::Exec(a) => crate::cmd::run::exec(client, opts, a).await,
        TaskCommand::Ls { filter, quiet } => {
            let tasks = list(client, filter).await?;
            if opts.json {
                let v: Vec<ProcessView> = tasks.iter().map(process_view).collect();
                return output::json(&v).map_err(stdout_err);
            }
            if quiet {
                let ids: String = tasks
                    .iter()
                    .map(|t| format!("{}\n", t.container_id))
                    .collect();
                return output::text(&ids).map_err(stdout_err);
            }
            let mut t = Table::new(&["TASK", "PID", "STATUS"]);
            for p in &tasks {
                t.row(vec![
                    p.container_id.clone(),
                    p.pid.to_string(),
                    status_name(p.status),
                ]);
            }
            t.print().map_err(stdout_err)
        }
        TaskCommand::Ps { id } => ps(client, opts, &id).await,
        TaskCommand::Kill {
            id,
            signal,
            all,
            exec_id,
        } => {
            let exec_id = exec_id.unwrap_or_default();
            client
                .tasks()
                .kill(client.request(KillRequest {
                    container_id: id.clone(),
                    exec_id: exec_id.clone(),
                    signal,
                    all,
                })?)
                .await
                .map_err(|s| task_err(client, &id, &exec_id, "signal", "", &s))?;
            Ok(())
        }
        TaskCommand::Pause { id } => {
            client
                .tasks()
                .pause(client.request(PauseTaskRequest {
                    container_id: id.clone(),
                })?)
                .await
                .map_err(|s| task_err(client, &id, "", "pause", "", &s))?;
            Ok(())
        }
        TaskCommand::Resume { id } => {
            client
                .tasks()
                .resume(client.request(ResumeTaskRequest {
                    container_id: id.clone(),
                })?)
                .await
                .map_err(|s| task_err(client, &id, "", "resume", "", &s))?;
            Ok(())
        }
        TaskCommand::Metrics { id } => metrics(client, opts, &id).await,
        TaskCommand::Rm { ids, force } => {
            remove_each(opts, &ids, "tasks", |id| async move {
                let d = remove(client, id, force).await?;
                Ok(json!({
                    "id": id,
                    "pid": d.pid,
                    "exit_status": d.exit_status,
                    "exited_at": output::rfc3339(d.exited_at.as_ref()),
                }))
            })
            .await
        }
    }
}

async fn ps(client: &Client, opts: Opts, id: &str) -> Result<()> {
    let mut processes = client
        .tasks()
        .list_pids(client.request(ListPidsRequest {
            container_id: id.to_string(),
        })?)
        .await
        .map_err(|s| task_err(client, id, "", "list the processes of", "", &s))?
        .into_inner()
        .processes;
    processes.sort_by_key(|p| p.pid);
    let exec_of = |p: &berth_api::task_types::ProcessInfo| -> Option<String> {
        p.info
            .as_ref()
            .and_then(from_any::<ProcessDetails>)
            .map(|d| d.exec_id)
            .filter(|e| !e.is_empty())
    };
    if opts.json {
        let v: Vec<Value> = processes
            .iter()
            .map(|p| match (exec_of(p), &p.info) {
                (Some(e), _) => json!({ "pid": p.pid, "exec_id": e }),
                (None, Some(a)) => json!({ "pid": p.pid, "info_type": a.type_url }),
                (None, None) => json!({ "pid": p.pid }),
            })
            .collect();
        return output::json(&v).map_err(stdout_err);
    }
    let mut t = Table::new(&["PID", "INFO"]);
    for p in &processes {
        let info = match (exec_of(p), &p.info) {
            (Some(e), _) => format!("exec {e}"),
            (None, Some(a)) => a.type_url.clone(),
            (None, None) => "-".into(),
        };
        t.row(vec![p.pid.to_string(), info]);
    }
    t.print().map_err(stdout_err)
}

/// Removes task `id`; with `force`, kills a live one with SIGKILL first and waits for its exit.
async fn remove(client: &Client, id: &str, force: bool) -> Result<DeleteResponse> {
    if force {
        let p = get(client, id, "").await?;
        if p.status != Status::Stopped as i32 {
            if p.status == Status::Paused as i32 || p.status == Status::Pausing as i32 {
                // a frozen process would not die until thawed
                let _ = client
                    .tasks()
                    .resume(client.request(ResumeTaskRequest {
                        container_id: id.to_string(),
                    })?)
                    .await;
            }
            match client
                .tasks()
                .kill(client.request(KillRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                    signal: SIGKILL,
                    all: true,
                })?)
                .await
            {
                Ok(_) => {}
                // it exited meanwhile
                Err(s) if s.code() == Code::NotFound && s.message().contains("finished") => {}
                Err(s) => return Err(task_err(client, id, "", "kill", "", &s)),
            }
            client
                .tasks()
                .wait(client.request(WaitRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                })?)
                .await
                .map_err(|s| task_err(client, id, "", "wait for", "", &s))?;
        }
    }
    let hint = format!("kill it first (`berth task kill {id}`) or pass -f to kill and remove it");
    Ok(client
        .tasks()
        .delete(client.request(DeleteTaskRequest {
            container_id: id.to_string(),
        })?)
        .await
        .map_err(|s| task_err(client, id, "", "remove", &hint, &s))?
        .into_inner())
}

/// The limit a cgroup reports for "no limit" is a huge number (cgroup v1: the largest
/// page-aligned i64) or zero; both read as unlimited.
fn limit_cell(limit: u64, fmt: impl Fn(u64) -> String) -> String {
    if limit == 0 || limit >= 1 << 62 {
        "unlimited".into()
    } else {
        fmt(limit)
    }
}

fn bytes_cell(n: u64) -> String {
    format!("{} ({n} bytes)", output::human_size(n))
}

fn nanos_cell(n: u64) -> String {
    format!("{:.3}s ({n} ns)", n as f64 / 1e9)
}

/// cgroups v1 metrics as JSON, with containerd's field names.
fn metrics_json(m: &cg::Metrics) -> Value {
    let entry = |e: &Option<cg::MemoryEntry>| {
        e.as_ref().map(
            |e| json!({ "limit": e.limit, "usage": e.usage, "max": e.max, "failcnt": e.failcnt }),
        )
    };
    json!({
        "pids": m.pids.as_ref().map(|p| json!({ "current": p.current, "limit": p.limit })),
        "cpu": m.cpu.as_ref().map(|c| json!({
            "usage": c.usage.as_ref().map(|u| json!({
                "total": u.total,
                "kernel": u.kernel,
                "user": u.user,
                "per_cpu": u.per_cpu,
            })),
            "throttling": c.throttling.as_ref().map(|t| json!({
                "periods": t.periods,
                "throttled_periods": t.throttled_periods,
                "throttled_time": t.throttled_time,
            })),
        })),
        "memory": m.memory.as_ref().map(|mm| json!({
            "cache": mm.cache,
            "rss": mm.rss,
            "rss_huge": mm.rss_huge,
            "mapped_file": mm.mapped_file,
            "usage": entry(&mm.usage),
            "swap": entry(&mm.swap),
            "kernel": entry(&mm.kernel),
            "kernel_tcp": entry(&mm.kernel_tcp),
        })),
    })
}

async fn metrics(client: &Client, opts: Opts, id: &str) -> Result<()> {
    let metrics = client
        .tasks()
        .metrics(client.request(MetricsRequest {
            filters: vec![format!("id=={id}")],
        })?)
        .await
        .map_err(|s| task_err(client, id, "", "read the metrics of", "", &s))?
        .into_inner()
        .metrics;
    let Some(metric) = metrics.into_iter().find(|m| m.id == id) else {
        // tell "no such task" from "a task without metrics"
        let p = get(client, id, "").await?;
        return Err(Error::failed(format!(
            "berthd has no metrics for task {id:?} (it is {}): only a task whose processes run \
             has a cgroup to read",
            status_name(p.status).to_ascii_lowercase()
        )));
    };
    let data = metric.data.as_ref();
    let decoded = data.and_then(from_any::<cg::Metrics>);
    let Some(m) = decoded else {
        let kind = data.map_or("none", |d| d.type_url.as_str());
        return Err(Error::failed(format!(
            "task {id:?}: metrics of type {kind:?} cannot be shown by this client (it reads \
             io.containerd.cgroups.v1.Metrics)"
        )));
    };
    if opts.json {
        let v = json!({
            "id": metric.id,
            "timestamp": output::rfc3339(metric.timestamp.as_ref()),
            "metrics": metrics_json(&m),
        });
        return output::json(&v).map_err(stdout_err);
    }
    let mut t = Table::new(&["METRIC", "VALUE"]);
    if let Some(u) = m.memory.as_ref().and_then(|mm| mm.usage.as_ref()) {
        t.row(vec!["memory usage".into(), bytes_cell(u.usage)]);
        t.row(vec!["memory limit".into(), limit_cell(u.limit, bytes_cell)]);
    }
    if let Some(u) = m.cpu.as_ref().and_then(|c| c.usage.as_ref()) {
        t.row(vec!["cpu usage total".into(), nanos_cell(u.total)]);
    }
    if let Some(p) = &m.pids {
        t.row(vec!["pids current".into(), p.current.to_string()]);
        t.row(vec![
            "pids limit".into(),
            limit_cell(p.limit, |n| n.to_string()),
        ]);
    }
    t.print().map_err(stdout_err)
}

/// SIGKILL's number.
pub const SIGKILL: u32 = 9;

/// Linux's signal numbers (x86, ARM, RISC-V and the other "generic" architectures).
const SIGNALS: [(&str, u32); 33] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];
const SIGRTMIN: u32 = 34;
const SIGRTMAX: u32 = 64;

/// Parses a signal: a name with or without `SIG` in any case (`SIGKILL`, `kill`), a number
/// (`9`), or a real-time signal (`RTMIN+3`, `SIGRTMAX-1`).
pub fn parse_signal(s: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "unknown signal {s:?}: use a name such as SIGTERM, KILL or HUP, a number from 1 to \
             {SIGRTMAX}, or RTMIN+N"
        )
    };
    let t = s.trim();
    if let Ok(n) = t.parse::<u32>() {
        return if (1..=SIGRTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(&(_, n)) = SIGNALS.iter().find(|(k, _)| *k == name) {
        return Ok(n);
    }
    let rt = |base: u32, rest: &str, sign: i64| -> Option<u32> {
        let off: i64 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix(if sign > 0 { '+' } else { '-' })?
                .parse()
                .ok()?
        };
        let n = i64::from(base) + sign * off;
        (i64::from(SIGRTMIN)..=i64::from(SIGRTMAX))
            .contains(&n)
            .then_some(n as u32)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(SIGRTMIN, rest, 1).ok_or_else(bad);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt(SIGRTMAX, rest, -1).ok_or_else(bad);
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        for s in ["SIGKILL", "KILL", "kill", "SigKill", "9"] {
            assert_eq!(parse_signal(s), Ok(9), "{s}");
        }
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("hup"), Ok(1));
        assert_eq!(parse_signal("USR1"), Ok(10));
        assert_eq!(parse_signal("RTMIN"), Ok(34));
        assert_eq!(parse_signal("SIGRTMIN+3"), Ok(37));
        assert_eq!(parse_signal("RTMAX-1"), Ok(63));
        for bad in [
            "", "0", "65", "SIGNOPE", "RTMIN+40", "RTMIN-1", "RTMAX+1", "-9",
        ] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_names() {
        assert_eq!(status_name(Status::Running as i32), "RUNNING");
        assert_eq!(status_name(Status::Paused as i32), "PAUSED");
        assert_eq!(status_name(42), "UNKNOWN(42)");
    }

    #[test]
    fn limits() {
        assert_eq!(limit_cell(0, |n| n.to_string()), "unlimited");
        assert_eq!(
            limit_cell(9_223_372_036_854_771_712, |n| n.to_string()),
            "unlimited"
        );
        assert_eq!(limit_cell(1 << 20, bytes_cell), "1.0 MiB (1048576 bytes)");
    }
}
