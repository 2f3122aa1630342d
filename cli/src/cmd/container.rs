//! `berth container`: the container records of a namespace, as `ctr containers` shows and
//! changes them. A record is metadata (image, runtime, OCI spec, rootfs snapshot); its live
//! side is a task (`berth task`).
//!
//! `rm` removes a record together with its rootfs snapshot, as `ctr containers rm` does, and
//! refuses while the container's task is alive; a stopped task is removed with it.

use std::collections::{BTreeMap, HashMap};

use berth_api::any::from_any;
use berth_api::runc::v1::Options as RuncOptions;
use berth_api::services::containers::v1::{
    Container, DeleteContainerRequest, GetContainerRequest, ListContainersRequest,
    UpdateContainerRequest,
};
use berth_api::services::snapshots::v1::RemoveSnapshotRequest;
use berth_api::services::tasks::v1::DeleteTaskRequest;
use berth_api::task_types::Status;
use clap::Subcommand;
use serde::Serialize;
use serde_json::{json, Value};
use tonic::Code;

use crate::client::Client;
use crate::cmd::snapshot::snapshot_err;
use crate::cmd::task::{status_name, task_err};
use crate::cmd::{label_paths, remove_each, stdout_err};
use crate::error::{Error, Result};
use crate::output::{self, Table};
use crate::{parse, Opts};

/// `berth container …`
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// List containers (filters such as image==x, runtime.name==y, labels."k"==v; OR-ed)
    #[command(visible_alias = "list")]
    Ls {
        /// containerd filters
        filters: Vec<String>,
        /// Print only the ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show a container's record as JSON, its OCI spec decoded
    Info {
        /// The container's id
        id: String,
    },
    /// Set labels on a container (key= removes a label)
    Label {
        /// The container's id
        id: String,
        /// Labels as key=value; an empty value removes the label
        #[arg(required = true, value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Remove containers and their rootfs snapshots (a stopped task goes with them)
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// Container ids
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// A container as `ls --json` shows it.
#[derive(Serialize)]
struct ContainerView {
    id: String,
    image: String,
    runtime: String,
    snapshotter: String,
    snapshot_key: String,
    created_at: Option<String>,
    updated_at: Option<String>,
    labels: BTreeMap<String, String>,
}

fn runtime_name(c: &Container) -> String {
    c.runtime
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_default()
}

fn view(c: &Container) -> ContainerView {
    ContainerView {
        id: c.id.clone(),
        image: c.image.clone(),
        runtime: runtime_name(c),
        snapshotter: c.snapshotter.clone(),
        snapshot_key: c.snapshot_key.clone(),
        created_at: output::rfc3339(c.created_at.as_ref()),
        updated_at: output::rfc3339(c.updated_at.as_ref()),
        labels: output::sorted(&c.labels),
    }
}

/// An `Any` as JSON: runc options decoded field by field, a JSON payload (an OCI spec, as
/// containerd encodes it) as itself, anything else as its type URL and size.
pub fn any_json(any: &prost_types::Any) -> Value {
    if let Some(o) = from_any::<RuncOptions>(any) {
        return json!({
            "type_url": any.type_url,
            "no_pivot_root": o.no_pivot_root,
            "no_new_keyring": o.no_new_keyring,
            "shim_cgroup": o.shim_cgroup,
            "io_uid": o.io_uid,
            "io_gid": o.io_gid,
            "binary_name": o.binary_name,
            "root": o.root,
            "systemd_cgroup": o.systemd_cgroup,
        });
    }
    match serde_json::from_slice::<Value>(&any.value) {
        Ok(v) => v,
        Err(_) => json!({ "type_url": any.type_url, "size": any.value.len() }),
    }
}

/// The full record as JSON.
fn info_json(c: &Container) -> Value {
    let extensions: BTreeMap<&String, Value> =
        c.extensions.iter().map(|(k, v)| (k, any_json(v))).collect();
    json!({
        "id": c.id,
        "image": c.image,
        "runtime": {
            "name": runtime_name(c),
            "options": c.runtime.as_ref().and_then(|r| r.options.as_ref()).map(any_json),
        },
        "snapshotter": c.snapshotter,
        "snapshot_key": c.snapshot_key,
        "created_at": output::rfc3339(c.created_at.as_ref()),
        "updated_at": output::rfc3339(c.updated_at.as_ref()),
        "labels": output::sorted(&c.labels),
        "extensions": extensions,
        "sandbox": c.sandbox,
        "spec_type_url": c.spec.as_ref().map(|s| s.type_url.clone()),
        "spec": c.spec.as_ref().map(any_json),
    })
}

/// Maps a status of the Containers service about container `id`.
fn container_err(client: &Client, id: &str, s: &tonic::Status) -> Error {
    client.err(&format!("container {id:?}"), s)
}

/// The record of container `id`.
pub async fn get(client: &Client, id: &str) -> Result<Container> {
    client
        .containers()
        .get(client.request(GetContainerRequest { id: id.to_string() })?)
        .await
        .map_err(|s| container_err(client, id, &s))?
        .into_inner()
        .container
        .ok_or_else(|| Error::failed(format!("berthd returned no record for container {id:?}")))
}

/// Runs a `berth container` command.
pub async fn run(client: &Client, opts: Opts, cmd: ContainerCommand) -> Result<()> {
    match cmd {
        ContainerCommand::Ls { filters, quiet } => {
            let mut containers = client
                .containers()
                .list(client.request(ListContainersRequest { filters })?)
                .await
                .map_err(|s| client.err("containers", &s))?
                .into_inner()
                .containers;
            containers.sort_by(|a, b| a.id.cmp(&b.id));
            if opts.json {
                let v: Vec<ContainerView> = containers.iter().map(view).collect();
                return output::json(&v).map_err(stdout_err);
            }
            if quiet {
                let ids: String = containers.iter().map(|c| format!("{}\n", c.id)).collect();
                return output::text(&ids).map_err(stdout_err);
            }
            let mut t = Table::new(&["ID", "IMAGE", "RUNTIME"]);
            for c in &containers {
                let or_dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
                t.row(vec![
                    c.id.clone(),
                    or_dash(c.image.clone()),
                    or_dash(runtime_name(c)),
                ]);
            }
            t.print().map_err(stdout_err)
        }
        ContainerCommand::Info { id } => {
            let c = get(client, &id).await?;
            output::json(&info_json(&c)).map_err(stdout_err)
        }
        ContainerCommand::Label { id, labels } => {
            let labels = parse::labels(&labels).map_err(Error::usage)?;
            let paths = label_paths(&labels);
            let labels: HashMap<String, String> =
                labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            let c = client
                .containers()
                .update(client.request(UpdateContainerRequest {
                    container: Some(Container {
                        id: id.clone(),
                        labels,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths }),
                })?)
                .await
                .map_err(|s| container_err(client, &id, &s))?
                .into_inner()
                .container
                .unwrap_or_default();
            if opts.json {
                return output::json(&view(&c)).map_err(stdout_err);
            }
            let mut t = Table::new(&["ID", "LABELS"]);
            t.row(vec![c.id.clone(), output::labels_cell(&c.labels)]);
            t.print().map_err(stdout_err)
        }
        ContainerCommand::Rm { ids } => {
            remove_each(opts, &ids, "containers", |id| async move {
                remove(client, id).await.map(|()| id)
            })
            .await
        }
    }
}

/// `ctr containers rm`: refuse while the task lives, remove a stopped task, the record, then
/// the rootfs snapshot (which the garbage collection may have taken already).
async fn remove(client: &Client, id: &str) -> Result<()> {
    let c = get(client, id).await?;
    let hint = format!(
        "stop it first (`berth task kill {id}`, or `berth task rm -f {id}` to kill and remove \
         the task)"
    );
    match crate::cmd::task::get(client, id, "").await {
        Ok(p) if p.status == Status::Stopped as i32 || p.status == Status::Created as i32 => {
            client
                .tasks()
                .delete(client.request(DeleteTaskRequest {
                    container_id: id.to_string(),
                })?)
                .await
                .map_err(|s| task_err(client, id, "", "remove", &hint, &s))?;
        }
        Ok(p) => {
            return Err(Error::failed(format!(
                "cannot remove container {id:?}: its task is {} — {hint}",
                status_name(p.status).to_ascii_lowercase()
            )))
        }
        Err(_) => {} // no task (or none we can see): berthd has the last word below
    }
    client
        .containers()
        .delete(client.request(DeleteContainerRequest { id: id.to_string() })?)
        .await
        .map_err(|s| match s.code() {
            Code::FailedPrecondition => Error::failed(format!(
                "cannot remove container {id:?}: {} — {hint}",
                s.message()
            )),
            _ => container_err(client, id, &s),
        })?;
    if c.snapshot_key.is_empty() || c.snapshotter.is_empty() {
        return Ok(());
    }
    match client
        .snapshots()
        .remove(client.request(RemoveSnapshotRequest {
            snapshotter: c.snapshotter.clone(),
            key: c.snapshot_key.clone(),
        })?)
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::NotFound => Ok(()),
        Err(s) => {
            let e = snapshot_err(
                client,
                &c.snapshotter,
                &format!("snapshot {:?}", c.snapshot_key),
                &s,
            );
            Err(Error::failed(format!(
                "container {id:?} was removed, but its rootfs snapshot was not: {e}"
            )))
        }
    }
}
