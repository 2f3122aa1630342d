//! `berth events`: follow berthd's event stream (every namespace), like `ctr events`: one line
//! per event — timestamp, namespace, topic and the event decoded as compact JSON — or, with
//! `--json`, one JSON object per line. Runs until interrupted.

use berth_api::any::from_any;
use berth_api::events as ev;
use berth_api::services::events::v1::{Envelope, SubscribeRequest};
use berth_api::services::images::v1 as img;
use clap::Args;
use prost_types::Any;
use serde_json::{json, Value};
use tonic::Code;

use crate::client::Client;
use crate::cmd::container::any_json;
use crate::cmd::snapshot::mount_views;
use crate::cmd::stdout_err;
use crate::error::{Error, Result};
use crate::output;
use crate::Opts;

/// `berth events [FILTER…]`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// containerd filters on the envelope, OR-ed: topic=="/tasks/exit", namespace==default,
    /// topic!="/tasks/exit" (a comma inside one filter means AND)
    filters: Vec<String>,
}

fn labels(l: &std::collections::HashMap<String, String>) -> Value {
    json!(output::sorted(l))
}

fn time(ts: Option<&prost_types::Timestamp>) -> Value {
    json!(output::rfc3339(ts))
}

/// Decodes an event payload whose type berth knows (namespace, content, snapshot, container,
/// task and image events) into JSON with containerd's field names; `None` for other types.
pub fn event_json(any: &Any) -> Option<Value> {
    macro_rules! try_decode {
        ($($ty:ty => |$e:ident| $body:expr),* $(,)?) => {
            $(if let Some($e) = from_any::<$ty>(any) {
                return Some($body);
            })*
        };
    }
    try_decode! {
        ev::NamespaceCreate => |e| json!({ "name": e.name, "labels": labels(&e.labels) }),
        ev::NamespaceUpdate => |e| json!({ "name": e.name, "labels": labels(&e.labels) }),
        ev::NamespaceDelete => |e| json!({ "name": e.name }),
        ev::ContentCreate => |e| json!({ "digest": e.digest, "size": e.size }),
        ev::ContentDelete => |e| json!({ "digest": e.digest }),
        ev::SnapshotPrepare => |e| json!({
            "key": e.key, "parent": e.parent, "snapshotter": e.snapshotter,
        }),
        ev::SnapshotCommit => |e| json!({
            "key": e.key, "name": e.name, "snapshotter": e.snapshotter,
        }),
        ev::SnapshotRemove => |e| json!({ "key": e.key, "snapshotter": e.snapshotter }),
        ev::ContainerCreate => |e| json!({
            "id": e.id,
            "image": e.image,
            "runtime": e.runtime.as_ref().map(|r| json!({
                "name": r.name,
                "options": r.options.as_ref().map(any_json),
            })),
        }),
        ev::ContainerUpdate => |e| json!({
            "id": e.id,
            "image": e.image,
            "labels": labels(&e.labels),
            "snapshot_key": e.snapshot_key,
        }),
        ev::ContainerDelete => |e| json!({ "id": e.id }),
        ev::TaskCreate => |e| json!({
            "container_id": e.container_id,
            "bundle": e.bundle,
            "rootfs": mount_views(&e.rootfs),
            "io": e.io.as_ref().map(|io| json!({
                "stdin": io.stdin, "stdout": io.stdout, "stderr": io.stderr,
                "terminal": io.terminal,
            })),
            "checkpoint": e.checkpoint,
            "pid": e.pid,
        }),
        ev::TaskStart => |e| json!({ "container_id": e.container_id, "pid": e.pid }),
        ev::TaskDelete => |e| json!({
            "container_id": e.container_id,
            "id": e.id,
            "pid": e.pid,
            "exit_status": e.exit_status,
            "exited_at": time(e.exited_at.as_ref()),
        }),
        ev::TaskExit => |e| json!({
            "container_id": e.container_id,
            "id": e.id,
            "pid": e.pid,
            "exit_status": e.exit_status,
            "exited_at": time(e.exited_at.as_ref()),
        }),
        ev::TaskOom => |e| json!({ "container_id": e.container_id }),
        ev::TaskExecAdded => |e| json!({ "container_id": e.container_id, "exec_id": e.exec_id }),
        ev::TaskExecStarted => |e| json!({
            "container_id": e.container_id, "exec_id": e.exec_id, "pid": e.pid,
        }),
        ev::TaskPaused => |e| json!({ "container_id": e.container_id }),
        ev::TaskResumed => |e| json!({ "container_id": e.container_id }),
        img::ImageCreate => |e| json!({ "name": e.name, "labels": labels(&e.labels) }),
        img::ImageUpdate => |e| json!({ "name": e.name, "labels": labels(&e.labels) }),
        img::ImageDelete => |e| json!({ "name": e.name }),
    }
    None
}

/// One event as a line of text: `TIMESTAMP NAMESPACE TOPIC EVENT`.
fn line(e: &Envelope) -> String {
    let ts = output::rfc3339(e.timestamp.as_ref()).unwrap_or_else(|| "-".into());
    let ns = if e.namespace.is_empty() {
        "-"
    } else {
        e.namespace.as_str()
    };
    let payload = match &e.event {
        None => "-".to_string(),
        Some(a) => match event_json(a) {
            Some(v) => v.to_string(),
            None => a.type_url.clone(),
        },
    };
    format!("{ts} {ns} {} {payload}\n", e.topic)
}

/// One event as a JSON object (for one line of `--json` output).
fn object(e: &Envelope) -> Value {
    json!({
        "timestamp": output::rfc3339(e.timestamp.as_ref()),
        "namespace": e.namespace,
        "topic": e.topic,
        "type_url": e.event.as_ref().map(|a| a.type_url.clone()),
        "event": e.event.as_ref().and_then(event_json),
    })
}

/// Runs `berth events`: prints events until interrupted (or until berthd goes away).
pub async fn run(client: &Client, opts: Opts, args: EventsArgs) -> Result<()> {
    let mut stream = client
        .events()
        .subscribe(client.request(SubscribeRequest {
            filters: args.filters,
        })?)
        .await
        .map_err(|s| match s.code() {
            Code::InvalidArgument => Error::failed(format!(
                "invalid event filter: {} — filters look like topic==\"/tasks/exit\", \
                 namespace==default or topic!=\"/tasks/exit\"; several are OR-ed, a comma inside \
                 one means AND",
                s.message()
            )),
            _ => client.err("the event stream", &s),
        })?
        .into_inner();
    while let Some(e) = stream
        .message()
        .await
        .map_err(|s| client.err("the event stream", &s))?
    {
        let text = if opts.json {
            format!("{}\n", object(&e))
        } else {
            line(&e)
        };
        output::text(&text).map_err(stdout_err)?;
    }
    Err(Error::failed(
        "berthd closed the event stream (is it shutting down?)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::any::to_any;

    #[test]
    fn known_events_decode_with_containerd_field_names() {
        let a = to_any(&ev::TaskPaused {
            container_id: "s1".into(),
        });
        assert_eq!(
            event_json(&a).unwrap().to_string(),
            r#"{"container_id":"s1"}"#
        );
        let a = to_any(&ev::TaskExit {
            container_id: "s1".into(),
            id: "s1".into(),
            pid: 42,
            exit_status: 137,
            exited_at: None,
        });
        let v = event_json(&a).unwrap();
        assert_eq!(v["exit_status"], 137);
        assert_eq!(v["pid"], 42);
        let a = to_any(&img::ImageDelete { name: "x".into() });
        assert_eq!(event_json(&a).unwrap()["name"], "x");
        let unknown = Any {
            type_url: "example.Unknown".into(),
            value: vec![],
        };
        assert!(event_json(&unknown).is_none());
    }

    #[test]
    fn lines_fall_back_to_the_type_url() {
        let e = Envelope {
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_704_067_200,
                nanos: 5,
            }),
            namespace: "default".into(),
            topic: "/x/y".into(),
            event: Some(Any {
                type_url: "example.Unknown".into(),
                value: vec![],
            }),
        };
        assert_eq!(
            line(&e),
            "2024-01-01T00:00:00.000000005Z default /x/y example.Unknown\n"
        );
    }
}
