//! `containerd.services.diff.v1.Diff`: applies a layer blob onto an active snapshot.
//!
//! Diff builds a layer from two mounts of berthd's snapshots (an overlay's upper directory read
//! in place, or two trees compared) and stores it as a blob (`berth_drivers::diff`).
//!
//! Apply accepts only mounts of berthd's own snapshotters (a bind of a snapshot directory or an
//! overlay whose upper directory is one): the layer is written straight into that directory,
//! every path resolved beneath it (`berth_drivers::apply`), with whiteouts in the form the
//! snapshotter needs (overlay: 0/0 character devices and opaque xattrs; native: deletions).

use std::sync::Arc;

use berth_api::services::diff::v1::{diff_server::Diff, *};
use berth_api::types;
use berth_core::Digest;
use std::path::Path;

use berth_core::archive::Compression;
use berth_core::image::labels::uncompressed_label;
use berth_core::image::media::OCI_LAYER_GZIP;
use berth_core::metadata::Labels;
use berth_drivers::apply::{apply_file, ApplyError, ApplyMode};
use berth_drivers::diff::{write_layer, DiffOptions, DiffSource};
use berth_drivers::Layout;
use tonic::{Request, Response, Status};

use crate::errors::status;
use crate::state::{lease, namespace, Daemon};
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

/// The host directories a mount reads.
fn mount_dirs(m: &berth_core::snapshot::Mount) -> Vec<&str> {
    match m.kind.as_str() {
        "overlay" => m
            .options
            .iter()
            .filter_map(|o| {
                o.strip_prefix("upperdir=")
                    .or_else(|| o.strip_prefix("workdir="))
                    .map(|d| vec![d])
                    .or_else(|| o.strip_prefix("lowerdir=").map(|l| l.split(':').collect()))
            })
            .flatten()
            .collect(),
        _ => vec![m.source.as_str()],
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

    async fn diff(&self, req: Request<DiffRequest>) -> Result<Response<DiffResponse>, Status> {
        let ns = namespace(&req)?;
        let lease = lease(&req)?;
        let r = req.into_inner();
        let left: Vec<_> = r.left.into_iter().map(mount_from_proto).collect();
        let right: Vec<_> = r.right.into_iter().map(mount_from_proto).collect();
        // only directories of berthd's own snapshots may be read
        for m in left.iter().chain(&right) {
            for dir in mount_dirs(m) {
                if !self.0.snapshotters.owns(Path::new(dir)) {
                    return Err(Status::invalid_argument(format!(
                        "{dir} is not a directory of a snapshot of berthd"
                    )));
                }
            }
        }
        let source = DiffSource::from_mounts(&left, &right)
            .map_err(|e| Status::invalid_argument(format!("diff: {e}")))?;
        let media_type = if r.media_type.is_empty() {
            OCI_LAYER_GZIP.to_string()
        } else {
            r.media_type
        };
        let compression = if media_type.ends_with("+zstd") {
            Compression::Zstd
        } else if media_type.ends_with("+gzip") || media_type.ends_with(".gzip") {
            Compression::Gzip
        } else if media_type.ends_with(".tar") || media_type.ends_with("layer.v1.tar") {
            Compression::None
        } else {
            return Err(Status::invalid_argument(format!(
                "diff: unsupported media type {media_type:?}"
            )));
        };
        let root = self.0.root.clone();
        let summary = blocking::unblock(move || -> Result<_, Status> {
            let dir = root.join(berth_drivers::layout::INGEST);
            std::fs::create_dir_all(&dir).map_err(|e| Status::internal(e.to_string()))?;
            let mut tmp = tempfile::NamedTempFile::new_in(&dir)
                .map_err(|e| Status::internal(format!("diff: {e}")))?;
            let options = DiffOptions {
                compression,
                ..DiffOptions::default()
            };
            let summary = {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
                write_layer(&source, &options, &mut w)
                    .map_err(|e| Status::internal(format!("diff: {e}")))?
            };
            tmp.as_file()
                .sync_all()
                .map_err(|e| Status::internal(format!("diff: {e}")))?;
            let dest = root.join(Layout::blob(&summary.digest));
            if let Some(p) = dest.parent() {
                std::fs::create_dir_all(p).map_err(|e| Status::internal(e.to_string()))?;
            }
            tmp.persist(&dest)
                .map_err(|e| Status::internal(format!("diff: publishing the layer: {e}")))?;
            Ok(summary)
        })
        .await?;
        let mut labels: Labels = r.labels.into_iter().collect();
        let (k, v) = uncompressed_label(&summary.diff_id);
        labels.insert(k, v);
        crate::blobs::record(
            &self.0,
            &ns,
            lease.as_deref(),
            &summary.digest,
            summary.size,
            labels,
        )
        .await?;
        Ok(Response::new(DiffResponse {
            diff: Some(types::Descriptor {
                media_type,
                digest: summary.digest.to_string(),
                size: summary.size as i64,
                annotations: Default::default(),
            }),
        }))
    }
}
