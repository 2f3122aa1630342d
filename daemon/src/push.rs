//! berthd's own push: every blob of an image's DAG (as far as the namespace has it) goes up,
//! children before the documents that name them; blobs the registry has are skipped, and blobs
//! pulled from another repository of the same registry are cross-repository mounted (their
//! `containerd.io/distribution.source.<host>` label names it). Several blobs go up at once.

use std::sync::Arc;

use berth_core::image::labels::distribution_source_key;
use berth_core::image::manifest::Descriptor;
use berth_core::image::media;
use berth_core::image::reference::Reference;
use berth_drivers::registry::{FileSource, RegistryClient};
use berth_drivers::Layout;
use tonic::Status;

use crate::errors::status;
use crate::pull::{LayerProgress, Progress};
use crate::state::Daemon;

/// Blobs uploaded at once.
const CONCURRENCY: usize = 4;

/// Pushes image `name` of `ns` to `target`; progress goes to `tx`.
pub async fn push(
    d: &Arc<Daemon>,
    ns: &str,
    client: &RegistryClient,
    name: &str,
    target: &Reference,
    tx: async_channel::Sender<Progress>,
) -> Result<(), Status> {
    let rec = d
        .store
        .image_get(ns, name)
        .map_err(status)?
        .ok_or_else(|| Status::not_found(format!("image {name:?}: not found")))?;
    let root = Descriptor::new(&rec.target.media_type, rec.target.digest, rec.target.size);
    let dag = crate::archive_io::walk(d, ns, &root).await?;
    let (docs, blobs): (Vec<Descriptor>, Vec<Descriptor>) = dag
        .into_iter()
        .partition(|b| media::is_index(&b.media_type) || media::is_manifest(&b.media_type));
    let mut progress = Progress {
        image: target.to_string(),
        layers: blobs
            .iter()
            .map(|b| LayerProgress {
                digest: b.digest.to_string(),
                size: b.size,
                state: "waiting",
                ..LayerProgress::default()
            })
            .collect(),
        ..Progress::default()
    };
    let _ = tx.try_send(progress.clone());
    let source_key = distribution_source_key(target);

    // Blobs, a few at a time.
    for (chunk_i, chunk) in blobs.chunks(CONCURRENCY).enumerate() {
        let mut tasks = Vec::new();
        for b in chunk {
            let mount_from = d
                .store
                .content_get(ns, &b.digest)
                .map_err(status)?
                .and_then(|r| r.labels.get(&source_key).cloned())
                .and_then(|repos| {
                    repos
                        .split(',')
                        .find(|r| *r != target.path())
                        .map(str::to_string)
                });
            let (client, target, b) = (client.clone(), target.clone(), b.clone());
            let path = d.root.join(Layout::blob(&b.digest));
            tasks.push(smol::spawn(async move {
                client
                    .push_blob(
                        &target,
                        &b,
                        Arc::new(FileSource::new(path)),
                        mount_from.as_deref(),
                    )
                    .await
                    .map_err(|e| Status::unavailable(format!("pushing {}: {e}", b.digest)))
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            t.await?;
            let l = &mut progress.layers[chunk_i * CONCURRENCY + i];
            l.done = l.size;
            l.state = "done";
        }
        let _ = tx.try_send(progress.clone());
    }

    // Documents, children first (the walk lists parents first); the root under the tag.
    for doc in docs.iter().rev() {
        let bytes: bytes::Bytes = crate::blobs::read(d, ns, &doc.digest).await?.into();
        let reference = if doc.digest == root.digest {
            target.clone()
        } else {
            Reference::parse(&format!("{}@{}", target.name(), doc.digest))
                .map_err(|e| Status::internal(format!("{e}")))?
        };
        client
            .push_manifest(&reference, doc, bytes)
            .await
            .map_err(|e| Status::unavailable(format!("pushing {}: {e}", doc.digest)))?;
    }
    progress.done = true;
    let _ = tx.send(progress).await;
    Ok(())
}
