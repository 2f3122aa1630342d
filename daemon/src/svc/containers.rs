//! `containerd.services.containers.v1.Containers`: container records per namespace.
//!
//! A record is metadata only (the spec, the runtime, the rootfs snapshot's key); tasks run them.
//! containerd's rules: Create validates the id, a runtime name, a spec, and a snapshotter when a
//! snapshot key is given (not that the snapshot exists); Update may change labels, the image,
//! the spec, the snapshot key and extensions, not the runtime or the snapshotter; Delete removes
//! the record only (ctr removes the snapshot itself).

use std::sync::Arc;

use berth_api::any::to_any;
use berth_api::events::{
    container_create, ContainerCreate as EvCreate, ContainerDelete as EvDelete,
    ContainerUpdate as EvUpdate,
};
use berth_api::services::containers::v1::{container, containers_server::Containers, *};
use berth_core::metadata::{apply_label_mask, Filter, Labels};
use berth_drivers::store::{AnyRecord, ContainerRecord, StoreError};
use futures_lite::stream::{self, Stream};
use prost_types::Any;
use tonic::{Request, Response, Status};

use crate::errors::status;
use crate::state::{namespace, timestamp, Daemon};

/// The containers service.
pub struct Service(pub Arc<Daemon>);

const CONTAINER_CREATE: &str = "/containers/create";
const CONTAINER_UPDATE: &str = "/containers/update";
const CONTAINER_DELETE: &str = "/containers/delete";

fn any_in(a: Any) -> AnyRecord {
    AnyRecord {
        type_url: a.type_url,
        value: a.value,
    }
}

fn any_out(a: &AnyRecord) -> Any {
    Any {
        type_url: a.type_url.clone(),
        value: a.value.clone(),
    }
}

/// The wire form of a record.
pub fn to_proto(id: String, r: &ContainerRecord) -> Container {
    Container {
        id,
        labels: r.labels.clone().into_iter().collect(),
        image: r.image.clone(),
        runtime: Some(container::Runtime {
            name: r.runtime.clone(),
            options: r.runtime_options.as_ref().map(any_out),
        }),
        spec: r.spec.as_ref().map(any_out),
        snapshotter: r.snapshotter.clone(),
        snapshot_key: r.snapshot_key.clone(),
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
        extensions: r
            .extensions
            .iter()
            .map(|(k, v)| (k.clone(), any_out(v)))
            .collect(),
        sandbox: r.sandbox.clone(),
    }
}

fn matches(filter: &Filter, id: &str, r: &ContainerRecord) -> bool {
    filter.matches(|p| match p {
        [f] if f == "id" => Some(id.to_string()),
        [f] if f == "image" => Some(r.image.clone()),
        [f] if f == "snapshotter" => Some(r.snapshotter.clone()),
        [rt, n] if rt == "runtime" && n == "name" => Some(r.runtime.clone()),
        [l, k] if l == "labels" => r.labels.get(k).cloned(),
        _ => None,
    })
}

impl Service {
    fn list_filtered(&self, ns: &str, filters: &[String]) -> Result<Vec<Container>, Status> {
        let filter = Filter::parse(filters).map_err(status)?;
        Ok(self
            .0
            .store
            .container_list(ns)
            .map_err(status)?
            .into_iter()
            .filter(|(id, r)| matches(&filter, id, r))
            .map(|(id, r)| to_proto(id, &r))
            .collect())
    }

    fn publish(&self, ns: &str, topic: &str, ev: Any, id: &str) {
        self.0
            .events
            .publish(ns, topic, ev, &[("id", id)], self.0.now());
    }
}

fn not_found(id: &str, ns: &str) -> Status {
    Status::not_found(format!(
        "container \"{id}\" in namespace \"{ns}\": not found"
    ))
}

#[tonic::async_trait]
impl Containers for Service {
    async fn get(
        &self,
        req: Request<GetContainerRequest>,
    ) -> Result<Response<GetContainerResponse>, Status> {
        let ns = namespace(&req)?;
        let id = req.into_inner().id;
        let r = self
            .0
            .store
            .container_get(&ns, &id)
            .map_err(status)?
            .ok_or_else(|| not_found(&id, &ns))?;
        Ok(Response::new(GetContainerResponse {
            container: Some(to_proto(id, &r)),
        }))
    }

    async fn list(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let ns = namespace(&req)?;
        let containers = self.list_filtered(&ns, &req.get_ref().filters)?;
        Ok(Response::new(ListContainersResponse { containers }))
    }

    type ListStreamStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<ListContainerMessage, Status>> + Send>>;

    async fn list_stream(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let ns = namespace(&req)?;
        let items: Vec<Result<ListContainerMessage, Status>> = self
            .list_filtered(&ns, &req.get_ref().filters)?
            .into_iter()
            .map(|c| Ok(ListContainerMessage { container: Some(c) }))
            .collect();
        Ok(Response::new(Box::pin(stream::iter(items))))
    }

    async fn create(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let ns = namespace(&req)?;
        let c = req
            .into_inner()
            .container
            .ok_or_else(|| Status::invalid_argument("container is missing"))?;
        let runtime = c.runtime.unwrap_or_default();
        if runtime.name.is_empty() {
            return Err(Status::invalid_argument(format!(
                "container {:?}: a runtime name is required",
                c.id
            )));
        }
        let spec = c.spec.ok_or_else(|| {
            Status::invalid_argument(format!("container {:?}: a spec is required", c.id))
        })?;
        if !c.snapshot_key.is_empty() && c.snapshotter.is_empty() {
            return Err(Status::invalid_argument(format!(
                "container {:?}: a snapshot key needs a snapshotter",
                c.id
            )));
        }
        let now = self.0.now();
        let rec = ContainerRecord {
            labels: c.labels.into_iter().collect(),
            image: c.image,
            runtime: runtime.name,
            runtime_options: runtime.options.map(any_in),
            spec: Some(any_in(spec)),
            snapshotter: c.snapshotter,
            snapshot_key: c.snapshot_key,
            created_at: now,
            updated_at: now,
            extensions: c
                .extensions
                .into_iter()
                .map(|(k, v)| (k, any_in(v)))
                .collect(),
            sandbox: c.sandbox,
        };
        let (n, id, r) = (ns.clone(), c.id.clone(), rec.clone());
        self.0
            .store_write(move |s| s.container_create(&n, &id, &r))
            .await
            .map_err(status)?;
        let ev = EvCreate {
            id: c.id.clone(),
            image: rec.image.clone(),
            runtime: Some(container_create::Runtime {
                name: rec.runtime.clone(),
                options: rec.runtime_options.as_ref().map(any_out),
            }),
        };
        self.publish(&ns, CONTAINER_CREATE, to_any(&ev), &c.id);
        Ok(Response::new(CreateContainerResponse {
            container: Some(to_proto(c.id, &rec)),
        }))
    }

    async fn update(
        &self,
        req: Request<UpdateContainerRequest>,
    ) -> Result<Response<UpdateContainerResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let c = r
            .container
            .ok_or_else(|| Status::invalid_argument("container is missing"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let cid = c.id.clone();
        let (n, id, now) = (ns.clone(), c.id.clone(), self.0.now());
        let rec = self
            .0
            .store_write(move |s| {
                s.container_update(&n, &id, |rec| {
                    let runtime = c.runtime.clone().unwrap_or_default();
                    let labels: Labels = c.labels.clone().into_iter().collect();
                    if paths.is_empty() {
                        // a full replace of the mutable fields
                        if (!runtime.name.is_empty() && runtime.name != rec.runtime)
                            || (!c.snapshotter.is_empty() && c.snapshotter != rec.snapshotter)
                        {
                            return Err(StoreError::InvalidArgument(
                                "the runtime and the snapshotter of a container cannot change"
                                    .into(),
                            ));
                        }
                        rec.labels = labels;
                        rec.image = c.image.clone();
                        if let Some(spec) = c.spec.clone() {
                            rec.spec = Some(any_in(spec));
                        }
                        rec.snapshot_key = c.snapshot_key.clone();
                        rec.extensions = c
                            .extensions
                            .clone()
                            .into_iter()
                            .map(|(k, v)| (k, any_in(v)))
                            .collect();
                    } else {
                        let mut bad = None;
                        rec.labels = apply_label_mask(&rec.labels, &labels, &paths, |p| {
                            match p {
                                "image" => rec.image = c.image.clone(),
                                "spec" => rec.spec = c.spec.clone().map(any_in),
                                "snapshotkey" | "snapshot_key" => {
                                    rec.snapshot_key = c.snapshot_key.clone()
                                }
                                "extensions" => {
                                    rec.extensions = c
                                        .extensions
                                        .clone()
                                        .into_iter()
                                        .map(|(k, v)| (k, any_in(v)))
                                        .collect()
                                }
                                p if p.starts_with("extensions.") => {
                                    let k = &p["extensions.".len()..];
                                    match c.extensions.get(k) {
                                        Some(v) => {
                                            rec.extensions.insert(k.to_string(), any_in(v.clone()));
                                        }
                                        None => {
                                            rec.extensions.remove(k);
                                        }
                                    }
                                }
                                other => {
                                    bad = Some(other.to_string());
                                }
                            }
                            true
                        })?;
                        if let Some(p) = bad {
                            return Err(StoreError::InvalidArgument(format!(
                                "cannot update {p:?} of a container"
                            )));
                        }
                    }
                    rec.updated_at = now;
                    Ok(())
                })
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => not_found(&cid, &ns),
                e => status(e),
            })?;
        let ev = EvUpdate {
            id: cid.clone(),
            image: rec.image.clone(),
            labels: rec.labels.clone().into_iter().collect(),
            snapshot_key: rec.snapshot_key.clone(),
        };
        self.publish(&ns, CONTAINER_UPDATE, to_any(&ev), &cid);
        Ok(Response::new(UpdateContainerResponse {
            container: Some(to_proto(cid, &rec)),
        }))
    }

    async fn delete(&self, req: Request<DeleteContainerRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let id = req.into_inner().id;
        let (n, i) = (ns.clone(), id.clone());
        self.0
            .store_write(move |s| s.container_delete(&n, &i))
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => not_found(&id, &ns),
                e => status(e),
            })?;
        self.0.gc.schedule();
        self.publish(
            &ns,
            CONTAINER_DELETE,
            to_any(&EvDelete { id: id.clone() }),
            &id,
        );
        Ok(Response::new(()))
    }
}
