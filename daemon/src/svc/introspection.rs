//! `containerd.services.introspection.v1.Introspection`: the plugins berth provides, named as
//! containerd names its own.

use std::sync::Arc;

use berth_api::services::introspection::v1::{
    introspection_server::Introspection, Plugin, PluginsRequest, PluginsResponse, ServerResponse,
};
use berth_core::metadata::Filter;
use tonic::{Request, Response, Status};

use crate::errors::status;
use crate::state::Daemon;

/// The introspection service.
pub struct Service(pub Arc<Daemon>);

/// `(type, id, requires)` of every plugin berth runs.
const PLUGINS: &[(&str, &str, &[&str])] = &[
    ("io.containerd.content.v1", "content", &[]),
    (
        "io.containerd.metadata.v1",
        "redb",
        &["io.containerd.content.v1"],
    ),
    ("io.containerd.event.v1", "exchange", &[]),
    (
        "io.containerd.lease.v1",
        "manager",
        &["io.containerd.metadata.v1"],
    ),
    (
        "io.containerd.service.v1",
        "content-service",
        &["io.containerd.metadata.v1"],
    ),
    (
        "io.containerd.service.v1",
        "leases-service",
        &["io.containerd.lease.v1"],
    ),
    (
        "io.containerd.service.v1",
        "namespaces-service",
        &["io.containerd.metadata.v1"],
    ),
    (
        "io.containerd.grpc.v1",
        "content",
        &["io.containerd.service.v1"],
    ),
    (
        "io.containerd.grpc.v1",
        "events",
        &["io.containerd.event.v1"],
    ),
    (
        "io.containerd.service.v1",
        "images-service",
        &["io.containerd.metadata.v1"],
    ),
    (
        "io.containerd.grpc.v1",
        "images",
        &["io.containerd.service.v1"],
    ),
    ("io.containerd.grpc.v1", "introspection", &[]),
    (
        "io.containerd.grpc.v1",
        "leases",
        &["io.containerd.service.v1"],
    ),
    (
        "io.containerd.grpc.v1",
        "namespaces",
        &["io.containerd.service.v1"],
    ),
    ("io.containerd.grpc.v1", "version", &[]),
    ("io.containerd.snapshotter.v1", "overlayfs", &[]),
    ("io.containerd.snapshotter.v1", "native", &[]),
    (
        "io.containerd.service.v1",
        "snapshots-service",
        &["io.containerd.snapshotter.v1"],
    ),
    (
        "io.containerd.grpc.v1",
        "snapshots",
        &["io.containerd.service.v1"],
    ),
    ("io.containerd.differ.v1", "walking", &[]),
    (
        "io.containerd.service.v1",
        "diff-service",
        &["io.containerd.differ.v1"],
    ),
    (
        "io.containerd.grpc.v1",
        "diff",
        &["io.containerd.service.v1"],
    ),
];

/// The platform snapshotters serve (the host's): clients such as containerd's `Pull` with
/// unpack check that the snapshotter supports the image's platform.
fn host_platform() -> berth_api::types::Platform {
    let p = crate::pull::host_platform();
    berth_api::types::Platform {
        os: p.os,
        architecture: p.architecture,
        variant: p.variant,
    }
}
#[tonic::async_trait]
impl Introspection for Service {
    async fn plugins(
        &self,
        req: Request<PluginsRequest>,
    ) -> Result<Response<PluginsResponse>, Status> {
        let filter = Filter::parse(&req.get_ref().filters).map_err(status)?;
        let plugins = PLUGINS
            .iter()
            .filter(|(ty, id, _)| {
                filter.matches(|p| match p {
                    [f] if f == "type" => Some(ty.to_string()),
                    [f] if f == "id" => Some(id.to_string()),
                    _ => None,
                })
            })
            .map(|(ty, id, requires)| Plugin {
                r#type: ty.to_string(),
                id: id.to_string(),
                requires: requires.iter().map(|s| s.to_string()).collect(),
                platforms: if *ty == "io.containerd.snapshotter.v1" {
                    vec![host_platform()]
                } else {
                    Vec::new()
                },
                ..Default::default()
            })
            .collect();
        Ok(Response::new(PluginsResponse { plugins }))
    }

    async fn server(&self, _: Request<()>) -> Result<Response<ServerResponse>, Status> {
        Ok(Response::new(ServerResponse {
            uuid: self.0.uuid.clone(),
        }))
    }
}
