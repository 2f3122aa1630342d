//! Task events on the wire: core's [`Event`]s as `containerd.events.Task*` payloads.

use berth_api::any::to_any;
use berth_api::events::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIo, TaskOom, TaskPaused,
    TaskResumed, TaskStart,
};
use berth_core::task::{Event, EventPayload};

use crate::state::{timestamp, Daemon};
use crate::svc::snapshots::mount_to_proto;

/// Publishes a task event with `event.container_id` (and `event.id`/`event.exec_id`) for filters.
pub fn publish(d: &Daemon, ev: &Event) {
    let id = ev.container_id().to_string();
    let (any, extra) = match &ev.payload {
        EventPayload::Create {
            container_id,
            bundle,
            rootfs,
            io,
            pid,
        } => (
            to_any(&TaskCreate {
                container_id: container_id.clone(),
                bundle: bundle.clone(),
                rootfs: rootfs.iter().cloned().map(mount_to_proto).collect(),
                io: Some(TaskIo {
                    stdin: io.stdin.clone(),
                    stdout: io.stdout.clone(),
                    stderr: io.stderr.clone(),
                    terminal: io.terminal,
                }),
                checkpoint: String::new(),
                pid: *pid,
            }),
            None,
        ),
        EventPayload::Start { container_id, pid } => (
            to_any(&TaskStart {
                container_id: container_id.clone(),
                pid: *pid,
            }),
            None,
        ),
        EventPayload::Exit {
            container_id,
            id,
            pid,
            exit_status,
            exited_at,
        } => (
            to_any(&TaskExit {
                container_id: container_id.clone(),
                id: id.clone(),
                pid: *pid,
                exit_status: *exit_status,
                exited_at: Some(timestamp(*exited_at)),
            }),
            Some(id.clone()),
        ),
        EventPayload::Delete {
            container_id,
            pid,
            exit_status,
            exited_at,
            id,
        } => (
            to_any(&TaskDelete {
                container_id: container_id.clone(),
                pid: *pid,
                exit_status: *exit_status,
                exited_at: Some(timestamp(*exited_at)),
                id: id.clone(),
            }),
            Some(id.clone()),
        ),
        EventPayload::Paused { container_id } => (
            to_any(&TaskPaused {
                container_id: container_id.clone(),
            }),
            None,
        ),
        EventPayload::Resumed { container_id } => (
            to_any(&TaskResumed {
                container_id: container_id.clone(),
            }),
            None,
        ),
        EventPayload::ExecAdded {
            container_id,
            exec_id,
        } => (
            to_any(&TaskExecAdded {
                container_id: container_id.clone(),
                exec_id: exec_id.clone(),
            }),
            Some(exec_id.clone()),
        ),
        EventPayload::ExecStarted {
            container_id,
            exec_id,
            pid,
        } => (
            to_any(&TaskExecStarted {
                container_id: container_id.clone(),
                exec_id: exec_id.clone(),
                pid: *pid,
            }),
            Some(exec_id.clone()),
        ),
        EventPayload::Oom { container_id } => (
            to_any(&TaskOom {
                container_id: container_id.clone(),
            }),
            None,
        ),
        _ => return,
    };
    let extra = extra.unwrap_or_default();
    d.events.publish(
        &ev.namespace,
        ev.topic(),
        any,
        &[("container_id", &id), ("id", &extra), ("exec_id", &extra)],
        d.now(),
    );
}
