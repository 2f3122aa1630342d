//! `containerd.services.snapshots.v1.Snapshots`: the `overlayfs` and `native` snapshotters.

use std::sync::Arc;

use berth_api::services::snapshots::v1::{snapshots_server::Snapshots, *};
use berth_api::types;
use berth_core::metadata::{Filter, Labels};
use berth_core::snapshot::{self as snap, Event};
use berth_drivers::store::LeaseResource;
use futures_lite::stream::{self, Stream};
use tonic::{Request, Response, Status};

use crate::errors::status;
use crate::snapshots::event_any;
use crate::state::{lease, namespace, timestamp, Daemon};

/// The snapshots service.
pub struct Service(pub Arc<Daemon>);

/// List replies carry this many infos each, as containerd.
const LIST_CHUNK: usize = 100;

/// A core mount on the wire.
pub fn mount_to_proto(m: snap::Mount) -> types::Mount {
    types::Mount {
        r#type: m.kind,
        source: m.source,
        target: m.target,
        options: m.options,
    }
}

/// A wire mount in core's form.
pub fn mount_from_proto(m: types::Mount) -> snap::Mount {
    snap::Mount {
        kind: m.r#type,
        source: m.source,
        target: m.target,
        options: m.options,
    }
}

fn info_to_proto(i: snap::Info) -> Info {
    Info {
        name: i.name,
        parent: i.parent.unwrap_or_default(),
        kind: i.kind.wire(),
        created_at: Some(timestamp(i.created_at)),
        updated_at: Some(timestamp(i.updated_at)),
        labels: i.labels.into_iter().collect(),
    }
}

impl Service {
    fn publish(&self, ev: &Event) {
        let (any, key) = event_any(ev);
        self.0.events.publish(
            &ev.namespace,
            ev.topic(),
            any,
            &[("key", &key), ("snapshotter", &ev.snapshotter)],
            self.0.now(),
        );
    }

    /// Ensures the namespace exists and, under a lease, adds the snapshot to it: `true` if the
    /// lease did not hold it yet.
    async fn bookkeep<T>(
        &self,
        req: &Request<T>,
        ns: &str,
        ss: &str,
        key: &str,
    ) -> Result<bool, Status> {
        let lease = lease(req)?;
        let (n, r) = (ns.to_string(), LeaseResource::snapshot(ss, key));
        self.0
            .store_write_held(move |s| {
                s.namespace_ensure(&n)?;
                match lease {
                    Some(l) => s.lease_add_resource_new(&n, &l, &r),
                    None => Ok(false),
                }
            })
            .await
            .map_err(status)
    }

    /// Takes back the record [`Service::bookkeep`] added for a snapshot that was not made (best
    /// effort: a leftover only keeps the lease referring to a key it did not get).
    async fn unkeep<T>(&self, req: &Request<T>, ns: &str, ss: &str, key: &str) {
        let Ok(Some(lease)) = lease(req) else {
            return;
        };
        let (n, r) = (ns.to_string(), LeaseResource::snapshot(ss, key));
        let _ = self
            .0
            .store_write_held(move |s| s.lease_delete_resource(&n, &lease, &r))
            .await;
    }

    async fn create(
        &self,
        req: Request<PrepareSnapshotRequest>,
        view: bool,
    ) -> Result<Vec<types::Mount>, Status> {
        let ns = namespace(&req)?;
        let ss = self.0.snapshotters.get(&req.get_ref().snapshotter)?;
        if let Some(l) = lease(&req)? {
            if self.0.store.lease_get(&ns, &l).map_err(status)?.is_none() {
                return Err(Status::not_found(format!("lease {l:?} does not exist")));
            }
        }
        let _gc = self.0.gc.hold().await;
        let r = req.get_ref();
        let labels: Labels = r.labels.clone().into_iter().collect();
        // The snapshot and the lease's record of it are two commits in two databases: made
        // at once, a Prepare waits for one disk sync instead of two in a row.
        let (created, kept) = futures_lite::future::zip(
            ss.create(self.0.now(), &ns, &r.key, &r.parent, labels, view),
            self.bookkeep(&req, &ns, &ss.name, &r.key),
        )
        .await;
        let (mounts, ev) = match created {
            Ok(c) => c,
            Err(e) => {
                // only what this call added: the lease may hold the key from before
                if matches!(kept, Ok(true)) {
                    self.unkeep(&req, &ns, &ss.name, &r.key).await;
                }
                return Err(e);
            }
        };
        kept?;
        if let Some(ev) = ev {
            self.publish(&ev);
        }
        Ok(mounts.into_iter().map(mount_to_proto).collect())
    }
}

#[tonic::async_trait]
impl Snapshots for Service {
    async fn prepare(
        &self,
        req: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let mounts = self.create(req, false).await?;
        Ok(Response::new(PrepareSnapshotResponse { mounts }))
    }

    async fn view(
        &self,
        req: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        let (meta, ext, r) = req.into_parts();
        let req = Request::from_parts(
            meta,
            ext,
            PrepareSnapshotRequest {
                snapshotter: r.snapshotter,
                key: r.key,
                parent: r.parent,
                labels: r.labels,
            },
        );
        let mounts = self.create(req, true).await?;
        Ok(Response::new(ViewSnapshotResponse { mounts }))
    }

    async fn mounts(
        &self,
        req: Request<MountsRequest>,
    ) -> Result<Response<MountsResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let ss = self.0.snapshotters.get(&r.snapshotter)?;
        let mounts = ss.mounts(&ns, &r.key).await?;
        Ok(Response::new(MountsResponse {
            mounts: mounts.into_iter().map(mount_to_proto).collect(),
        }))
    }

    async fn commit(&self, req: Request<CommitSnapshotRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let ss = self.0.snapshotters.get(&req.get_ref().snapshotter)?;
        let _gc = self.0.gc.hold().await;
        let r = req.get_ref();
        let labels: Labels = r.labels.clone().into_iter().collect();
        let ev = ss
            .commit(self.0.now(), &ns, &r.name, &r.key, labels)
            .await?;
        self.bookkeep(&req, &ns, &ss.name, &r.name).await?;
        self.publish(&ev);
        Ok(Response::new(()))
    }

    async fn remove(&self, req: Request<RemoveSnapshotRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let ss = self.0.snapshotters.get(&r.snapshotter)?;
        let ev = ss.remove(&ns, &r.key).await?;
        self.publish(&ev);
        self.0.gc.schedule();
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        req: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let ss = self.0.snapshotters.get(&r.snapshotter)?;
        let info = ss.stat(&ns, &r.key).await?;
        Ok(Response::new(StatSnapshotResponse {
            info: Some(info_to_proto(info)),
        }))
    }

    async fn update(
        &self,
        req: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let ss = self.0.snapshotters.get(&r.snapshotter)?;
        let info = r
            .info
            .ok_or_else(|| Status::invalid_argument("info is required"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let labels: Labels = info.labels.into_iter().collect();
        let _gc = self.0.gc.hold().await;
        let info = ss
            .update(self.0.now(), &ns, &info.name, &labels, &paths)
            .await?;
        Ok(Response::new(UpdateSnapshotResponse {
            info: Some(info_to_proto(info)),
        }))
    }

    type ListStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<ListSnapshotsResponse, Status>> + Send>>;

    async fn list(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let ss = self.0.snapshotters.get(&r.snapshotter)?;
        let filter = Filter::parse(&r.filters).map_err(status)?;
        let infos = ss.list(&ns, &filter).await;
        let chunks: Vec<Result<ListSnapshotsResponse, Status>> = infos
            .chunks(LIST_CHUNK)
            .map(|c| {
                Ok(ListSnapshotsResponse {
                    info: c.iter().cloned().map(info_to_proto).collect(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(stream::iter(chunks))))
    }

    async fn usage(&self, req: Request<UsageRequest>) -> Result<Response<UsageResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let ss = self.0.snapshotters.get(&r.snapshotter)?;
        let u = ss.usage(&ns, &r.key).await?;
        Ok(Response::new(UsageResponse {
            size: u.size as i64,
            inodes: u.inodes as i64,
        }))
    }

    async fn cleanup(&self, req: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        namespace(&req)?;
        let ss = self.0.snapshotters.get(&req.get_ref().snapshotter)?;
        ss.cleanup().await?;
        Ok(Response::new(()))
    }
}
