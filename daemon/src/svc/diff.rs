//! `containerd.services.diff.v1.Diff`: applies a layer blob onto an active snapshot.
//!
//! Apply accepts only mounts of berthd's own snapshotters (a bind of a snapshot directory or an
//! overlay whose upper directory is one): the layer is written straight into that directory,
//! every path resolved beneath it (`berth_drivers::apply`), with whiteouts in the form the
//! snapshotter needs (overlay: 0/0 character devices and opaque xattrs; native: deletions).

use std::sync::Arc;

use berth_api::services::diff::v1::{diff_server::Diff, *};
use berth_api::types;
use berth_core::Digest;
use berth_drivers::apply::{apply_file, ApplyError, ApplyMode};
use berth_drivers::Layout;
use tonic::{Request, Response, Status};

use crate::errors::status;
use crate::state::{namespace, Daemon};
use crate::svc::snapshots::mount_from_proto;

/// The diff service.
pub struct Service(pub Arc<Daemon>);

/// Media type of an applied (uncompressed) layer.
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

fn apply_status(digest: &Digest, e: &ApplyError) -> Status {
    let msg = format!("applying layer {digest}: {e}");
    if matches!(e, ApplyError::Io { .. }) {
        Status::internal(msg)
    } else {
        Status::invalid_argument(msg)
    }
}

#[tonic::async_trait]
impl Diff for Service {
    async fn apply(&self, req: Request<ApplyRequest>) -> Result<Response<ApplyResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let desc = r
            .diff
            .ok_or_else(|| Status::invalid_argument("apply needs a diff descriptor"))?;
        let digest = Digest::parse(&desc.digest).map_err(status)?;
        let mounts: Vec<_> = r.mounts.into_iter().map(mount_from_proto).collect();
        let (ss, dir) = self.0.snapshotters.target_of(&mounts).await?;
        if self
            .0
            .store
            .content_get(&ns, &digest)
            .map_err(status)?
            .is_none()
        {
            return Err(Status::not_found(format!("content {digest}: not found")));
        }
        let blob = self.0.root.join(Layout::blob(&digest));
        let mode = if ss.is_overlay() {
            ApplyMode::Overlay
        } else {
            ApplyMode::Native
        };
        let started = std::time::Instant::now();
        let applied = blocking::unblock(move || apply_file(&blob, &dir, mode))
            .await
            .map_err(|e| apply_status(&digest, &e))?;
        if applied.compressed != digest {
            return Err(Status::data_loss(format!(
                "blob {digest} hashes to {} on disk",
                applied.compressed
            )));
        }
        log::debug!(
            "applied {digest} ({} entries, {} bytes) in {:?}",
            applied.entries,
            applied.uncompressed_size,
            started.elapsed()
        );
        Ok(Response::new(ApplyResponse {
            applied: Some(types::Descriptor {
                media_type: LAYER_TAR.into(),
                digest: applied.diff_id.to_string(),
                size: applied.uncompressed_size as i64,
                annotations: Default::default(),
            }),
        }))
    }

    async fn diff(&self, _req: Request<DiffRequest>) -> Result<Response<DiffResponse>, Status> {
        Err(Status::unimplemented(
            "Diff.Diff (building a layer from a snapshot) is not implemented yet",
        ))
    }
}
