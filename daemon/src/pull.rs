//! berthd's own pull: resolve, fetch the documents, then download every missing layer at once,
//! **unpacking each while it downloads** into its own snapshot directory, and commit the chain
//! in order once every layer is in.
//!
//! Overlay layers do not depend on one another on disk (a whiteout is a 0/0 device, an opaque
//! directory an xattr), so layer *i* is unpacked into a parentless active snapshot and rebased
//! onto chain *i−1* just before its commit (`Tree::rebase`). A layer whose blob is already in
//! the store is unpacked from the local file; a layer whose chain is already committed is not
//! unpacked at all. Every blob's digest and every layer's diff ID is checked before anything is
//! committed; a failed layer leaves no committed snapshot and no blob.
//!
//! Crash safety: the pull runs under a lease with a 24-hour expiry, so what a crashed pull
//! committed (blobs, finished snapshots) survives a restart and the next pull of the same image
//! skips it; a layer cut off mid-download restarts from its beginning (its partial snapshot
//! and temporary file are removed at the next start-up and by GC).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant as StdInstant;

use berth_core::image::labels::{
    children_gc_labels, distribution_source_key, snapshot_gc_label, uncompressed_label, Children,
};
use berth_core::image::manifest::{Descriptor, Document, ImageConfig};
use berth_core::image::platform::{Matcher, Platform};
use berth_core::image::reference::Reference;
use berth_core::image::{chain::chain_ids, media};
use berth_core::metadata::Labels;
use berth_core::Digest;
use berth_drivers::apply::{Applied, Applier, ApplyMode};
use berth_drivers::registry::RegistryClient;
use berth_drivers::store::Descriptor as StoreDescriptor;
use tonic::Status;

use crate::blobs::{self, BlobFile};
use crate::errors::status;
use crate::snapshots::Snapshotter;
use crate::state::Daemon;

/// What to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The image reference (normalised).
    pub reference: Reference,
    /// Platforms to pull; empty means the host's.
    pub platforms: Vec<Platform>,
    /// Pull every platform of an index.
    pub all_platforms: bool,
    /// The snapshotter to unpack into (empty: overlayfs).
    pub snapshotter: String,
    /// Unpack the layers (true for `berth image pull`).
    pub unpack: bool,
}

/// Progress of one layer.
#[derive(Debug, Clone, Default)]
pub struct LayerProgress {
    /// The blob.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Bytes downloaded (or read from the local blob).
    pub done: u64,
    /// `waiting`, `downloading`, `unpacking`, `exists`, `done`.
    pub state: &'static str,
}

/// A progress report.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The image name.
    pub image: String,
    /// The root descriptor once resolved.
    pub target: Option<StoreDescriptor>,
    /// Per layer.
    pub layers: Vec<LayerProgress>,
    /// True on the last report.
    pub done: bool,
}

struct LayerJob {
    index: usize,
    desc: Descriptor,
    diff_id: Digest,
    chain: Digest,
    done: Arc<AtomicU64>,
}

fn desc_to_store(d: &Descriptor) -> StoreDescriptor {
    StoreDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest,
        size: d.size,
        annotations: d.annotations.clone().into_iter().collect(),
    }
}

fn bad_image(what: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("image: {what}"))
}

/// A registry failure as a status: NotFound and Unauthenticated where the registry said so.
pub fn registry_status(what: &str, e: &berth_drivers::registry::ClientError) -> Status {
    let msg = format!("{what}: {e}");
    if e.is_not_found() {
        Status::not_found(msg)
    } else if e.is_unauthorized() {
        Status::unauthenticated(msg)
    } else {
        Status::unavailable(msg)
    }
}

/// The host's platform, as containerd's default matcher sees it.
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    Platform::new("linux", arch)
}

/// Pulls an image into namespace `ns`, reporting progress on `tx`; returns the image name.
pub async fn pull(
    d: &Arc<Daemon>,
    ns: &str,
    client: &RegistryClient,
    opts: PullOptions,
    tx: async_channel::Sender<Progress>,
) -> Result<String, Status> {
    let started = StdInstant::now();
    let lease = crate::svc::leases::temporary(d, ns).await?;
    let result = pull_leased(d, ns, client, &opts, &lease, &tx).await;
    // The image record (or its failure) decides now what stays: drop the lease either way.
    let (n, l) = (ns.to_string(), lease.clone());
    let _ = d.store_write(move |s| s.lease_delete(&n, &l)).await;
    d.gc.schedule();
    let name = result?;
    log::info!("pulled {name} in {:?}", started.elapsed());
    Ok(name)
}

async fn pull_leased(
    d: &Arc<Daemon>,
    ns: &str,
    client: &RegistryClient,
    opts: &PullOptions,
    lease: &str,
    tx: &async_channel::Sender<Progress>,
) -> Result<String, Status> {
    let reference = &opts.reference;
    let name = reference.to_string();
    let root = client
        .resolve(reference)
        .await
        .map_err(|e| registry_status(&format!("resolving {name}"), &e))?;
    let mut progress = Progress {
        image: name.clone(),
        target: Some(desc_to_store(&root)),
        ..Progress::default()
    };
    let _ = tx.try_send(progress.clone());
    let source = {
        let mut l = Labels::new();
        let (k, v) = (
            distribution_source_key(reference),
            reference.path().to_string(),
        );
        l.insert(k, v);
        l
    };

    // Documents: the root, then (for an index) the manifests for the platforms, then configs.
    let remote = Remote {
        client: client.clone(),
        reference: reference.clone(),
    };
    let root_bytes = fetch_doc(d, ns, Some(&remote), &root).await?;
    let root_doc = Document::parse(&root.media_type, &root_bytes).map_err(bad_image)?;
    let mut labels = children_gc_labels(root_doc.children(), Children::All);
    labels.extend(source.clone());
    blobs::put(d, ns, Some(lease), &root.digest, root_bytes.clone(), labels).await?;
    let manifests: Vec<Descriptor> = match &root_doc {
        Document::Index(index) => {
            let one = !opts.all_platforms && opts.platforms.len() <= 1;
            let matcher = if opts.all_platforms {
                Matcher::All
            } else if opts.platforms.is_empty() {
                Matcher::only(&host_platform())
            } else if one {
                Matcher::only(&opts.platforms[0])
            } else {
                Matcher::any(&opts.platforms)
            };
            let chosen: Vec<Descriptor> = if one {
                matcher
                    .best(&index.manifests)
                    .into_iter()
                    .cloned()
                    .collect()
            } else {
                matcher
                    .filter(&index.manifests)
                    .into_iter()
                    .cloned()
                    .collect()
            };
            if chosen.is_empty() {
                return Err(Status::not_found(format!(
                    "{name}: no manifest matches the platform ({matcher:?})"
                )));
            }
            chosen
        }
        Document::Manifest(_) => vec![root.clone()],
        _ => return Err(bad_image(format!("{name} points at a {}", root.media_type))),
    };

    unpack_manifests(
        d,
        ns,
        lease,
        Some(&remote),
        &manifests,
        root_bytes.clone(),
        &root,
        &source,
        opts.unpack,
        &opts.snapshotter,
        &mut progress,
        tx,
    )
    .await?;

    crate::svc::images::put_image(d, ns, &name, desc_to_store(&root)).await?;
    progress.done = true;
    for l in &mut progress.layers {
        l.done = l.size;
        l.state = "done";
    }
    let _ = tx.send(progress).await;
    Ok(name)
}

/// Where missing blobs come from.
#[derive(Clone)]
struct Remote {
    client: RegistryClient,
    reference: Reference,
}

/// Unpacks an image whose documents are in the store (berthd's import; `berth image pull` with
/// the content present): the host platform's manifest, every layer at once from local blobs.
pub async fn unpack_local(
    d: &Arc<Daemon>,
    ns: &str,
    lease: &str,
    root: &Descriptor,
    snapshotter: &str,
) -> Result<(), Status> {
    let root_bytes: bytes::Bytes = blobs::read(d, ns, &root.digest).await?.into();
    let doc = Document::parse(&root.media_type, &root_bytes).map_err(bad_image)?;
    let manifests = match &doc {
        Document::Index(index) => Matcher::only(&host_platform())
            .best(&index.manifests)
            .into_iter()
            .cloned()
            .collect(),
        Document::Manifest(_) => vec![root.clone()],
        _ => {
            return Err(bad_image(format!(
                "{} is a {}",
                root.digest, root.media_type
            )))
        }
    };
    let (tx, _rx) = async_channel::bounded(1);
    let mut progress = Progress::default();
    unpack_manifests(
        d,
        ns,
        lease,
        None,
        &manifests,
        root_bytes,
        root,
        &Labels::new(),
        true,
        snapshotter,
        &mut progress,
        &tx,
    )
    .await
}

/// Fetches the manifests' configs and layers (from `remote` when missing) and unpacks every
/// layer at once, then commits the chains in order.
#[allow(clippy::too_many_arguments)]
async fn unpack_manifests(
    d: &Arc<Daemon>,
    ns: &str,
    lease: &str,
    remote: Option<&Remote>,
    manifests: &[Descriptor],
    root_bytes: bytes::Bytes,
    root: &Descriptor,
    source: &Labels,
    unpack: bool,
    snapshotter: &str,
    progress: &mut Progress,
    tx: &async_channel::Sender<Progress>,
) -> Result<(), Status> {
    let mut jobs: Vec<(LayerJob, Descriptor)> = Vec::new();
    let mut configs = Vec::new();
    for m in manifests {
        let bytes = if m.digest == root.digest {
            root_bytes.clone()
        } else {
            let b = fetch_doc(d, ns, remote, m).await?;
            let doc = Document::parse(&m.media_type, &b).map_err(bad_image)?;
            let mut l = children_gc_labels(doc.children(), Children::All);
            l.extend(source.clone());
            blobs::put(d, ns, Some(lease), &m.digest, b.clone(), l).await?;
            b
        };
        let Document::Manifest(manifest) =
            Document::parse(&m.media_type, &bytes).map_err(bad_image)?
        else {
            return Err(bad_image(format!("{} is not a manifest", m.digest)));
        };
        let cfg_bytes = fetch_doc(d, ns, remote, &manifest.config).await?;
        let config = ImageConfig::parse(&cfg_bytes).map_err(bad_image)?;
        manifest.check_config(&config).map_err(bad_image)?;
        blobs::put(
            d,
            ns,
            Some(lease),
            &manifest.config.digest,
            cfg_bytes,
            source.clone(),
        )
        .await?;
        let diff_ids = config.rootfs.diff_ids.clone();
        let chains = chain_ids(&diff_ids);
        for (i, layer) in manifest.layers.iter().enumerate() {
            jobs.push((
                LayerJob {
                    index: progress.layers.len(),
                    desc: layer.clone(),
                    diff_id: diff_ids[i],
                    chain: chains[i],
                    done: Arc::new(AtomicU64::new(0)),
                },
                manifest.config.clone(),
            ));
            progress.layers.push(LayerProgress {
                digest: layer.digest.to_string(),
                size: layer.size,
                state: "waiting",
                ..LayerProgress::default()
            });
        }
        configs.push((manifest.config.clone(), chains));
    }
    let _ = tx.try_send(progress.clone());

    let ss = d.snapshotters.get(snapshotter)?;
    let make_task = |job: &LayerJob, parent: Option<String>| LayerTask {
        d: d.clone(),
        ns: ns.to_string(),
        lease: lease.to_string(),
        remote: remote.cloned(),
        ss: ss.clone(),
        unpack,
        source: source.clone(),
        parent,
        job: LayerJob {
            index: job.index,
            desc: job.desc.clone(),
            diff_id: job.diff_id,
            chain: job.chain,
            done: job.done.clone(),
        },
    };
    let ticker = {
        let tx = tx.clone();
        let mut p = progress.clone();
        let counters: Vec<Arc<AtomicU64>> = jobs.iter().map(|(j, _)| j.done.clone()).collect();
        smol::spawn(async move {
            loop {
                async_io::Timer::after(std::time::Duration::from_millis(100)).await;
                for (l, c) in p.layers.iter_mut().zip(&counters) {
                    l.done = c.load(Ordering::Relaxed);
                    l.state = if l.done >= l.size {
                        "unpacking"
                    } else {
                        "downloading"
                    };
                }
                if tx.send(p.clone()).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut outcomes = Vec::with_capacity(jobs.len());
    if ss.is_overlay() {
        // Every layer at once, each into a parentless snapshot; each reports its bytes through
        // `done`. The chains are committed in order below.
        let tasks: Vec<_> = jobs
            .iter()
            .map(|(job, _)| smol::spawn(make_task(job, None).run()))
            .collect();
        for t in tasks {
            outcomes.push(t.await);
        }
    } else {
        // A native snapshot starts as a copy of its parent: one layer after the other, each
        // prepared on the previous chain and committed before the next.
        let mut k = 0;
        for (_, chains) in &configs {
            for i in 0..chains.len() {
                let parent = (i > 0).then(|| chains[i - 1].to_string());
                let job = &jobs[k].0;
                k += 1;
                match make_task(job, parent).run().await {
                    Ok(Some(key)) => {
                        let chain = job.chain.to_string();
                        commit_layer(d, &ss, ns, lease, &key, &chain).await?;
                        outcomes.push(Ok(None));
                    }
                    other => outcomes.push(other),
                }
                if outcomes.last().is_some_and(Result::is_err) {
                    break;
                }
            }
        }
    }
    drop(ticker);
    let mut extracted = Vec::with_capacity(outcomes.len());
    let mut first_err = None;
    for o in outcomes {
        match o {
            Ok(x) => extracted.push(Some(x)),
            Err(e) => {
                first_err.get_or_insert(e);
                extracted.push(None);
            }
        }
    }
    if let Some(e) = first_err {
        for key in extracted.into_iter().flatten().flatten() {
            let _ = ss.remove(ns, &key).await;
        }
        return Err(e);
    }

    // Commit each chain in order: rebase the extracted snapshot onto the previous chain.
    if unpack {
        let mut k = 0;
        for (config, chains) in &configs {
            for (i, chain) in chains.iter().enumerate() {
                let key = extracted[k].take().flatten();
                k += 1;
                let Some(key) = key else { continue };
                let parent = (i > 0).then(|| chains[i - 1].to_string());
                ss.rebase(d.now(), ns, &key, parent.as_deref()).await?;
                commit_layer(d, &ss, ns, lease, &key, &chain.to_string()).await?;
            }
            if let Some(top) = chains.last() {
                let (k, v) = snapshot_gc_label(&ss.name, top);
                blobs::record(
                    d,
                    ns,
                    Some(lease),
                    &config.digest,
                    config.size,
                    Labels::from([(k, v)]),
                )
                .await?;
            }
        }
    }

    Ok(())
}

/// Commits the extracted snapshot `key` as `chain` (an existing chain wins: the extraction is
/// dropped), under the lease.
async fn commit_layer(
    d: &Arc<Daemon>,
    ss: &Arc<Snapshotter>,
    ns: &str,
    lease: &str,
    key: &str,
    chain: &str,
) -> Result<(), Status> {
    let _gc = d.gc.hold().await;
    match ss.commit(d.now(), ns, chain, key, Labels::new()).await {
        Ok(ev) => {
            publish_snapshot(d, &ev);
            add_snapshot_to_lease_held(d, ns, lease, &ss.name, chain).await
        }
        Err(e) if e.code() == tonic::Code::AlreadyExists => {
            let _ = ss.remove(ns, key).await;
            Ok(())
        }
        Err(e) => {
            let _ = ss.remove(ns, key).await;
            Err(e)
        }
    }
}

/// Fetches a small document (local if the namespace has it), checking its digest.
async fn fetch_doc(
    d: &Arc<Daemon>,
    ns: &str,
    remote: Option<&Remote>,
    desc: &Descriptor,
) -> Result<bytes::Bytes, Status> {
    if let Ok(b) = blobs::read(d, ns, &desc.digest).await {
        return Ok(b.into());
    }
    let Some(Remote { client, reference }) = remote else {
        return Err(Status::not_found(format!(
            "content {}: not found",
            desc.digest
        )));
    };
    if desc.size > 64 << 20 {
        return Err(bad_image(format!(
            "{} is {} bytes: too large for a document",
            desc.digest, desc.size
        )));
    }
    let fetch = async { client.fetch(reference, desc, 0).await?.bytes().await };
    let bytes = fetch
        .await
        .map_err(|e| registry_status(&format!("fetching {}", desc.digest), &e))?;
    if Digest::sha256(&bytes) != desc.digest || bytes.len() as u64 != desc.size {
        return Err(Status::data_loss(format!(
            "{}: the registry sent {} bytes that do not match the descriptor",
            desc.digest,
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn publish_snapshot(d: &Arc<Daemon>, ev: &berth_core::snapshot::Event) {
    let (any, key) = crate::snapshots::event_any(ev);
    d.events.publish(
        &ev.namespace,
        ev.topic(),
        any,
        &[("key", &key), ("snapshotter", &ev.snapshotter)],
        d.now(),
    );
}

/// Adds a snapshot to the pull's lease; the caller holds the GC lock.
async fn add_snapshot_to_lease_held(
    d: &Arc<Daemon>,
    ns: &str,
    lease: &str,
    snapshotter: &str,
    key: &str,
) -> Result<(), Status> {
    let (n, l, r) = (
        ns.to_string(),
        lease.to_string(),
        berth_drivers::store::LeaseResource::snapshot(snapshotter, key),
    );
    d.store_write_held(move |s| s.lease_add_resource(&n, &l, &r))
        .await
        .map_err(status)
}

/// One layer's download and unpack.
struct LayerTask {
    d: Arc<Daemon>,
    ns: String,
    lease: String,
    remote: Option<Remote>,
    ss: Arc<Snapshotter>,
    unpack: bool,
    source: Labels,
    /// The parent to prepare on (native snapshots); overlay extractions have none.
    parent: Option<String>,
    job: LayerJob,
}

impl LayerTask {
    /// Returns the key of the extracted (active, parentless) snapshot, or `None` if the chain
    /// is already committed (or unpacking was not asked for).
    async fn run(self) -> Result<Option<String>, Status> {
        let LayerTask {
            d,
            ns,
            lease,
            remote,
            ss,
            unpack,
            source,
            parent,
            job,
        } = self;
        let digest = job.desc.digest;
        let have_blob = d.store.content_get(&ns, &digest).map_err(status)?.is_some()
            && blobs::blob_exists(&d.root, &digest);
        let have_chain = ss.stat(&ns, &job.chain.to_string()).await.is_ok();
        let need_unpack = unpack && !have_chain;
        if media::is_layer(&job.desc.media_type) && !need_unpack && have_blob {
            job.done.store(job.desc.size, Ordering::Relaxed);
            return Ok(None);
        }
        // The extraction snapshot (overlay: without a parent, rebased at commit), under the
        // pull's lease so that no collection takes it while it is being filled.
        let key = if need_unpack {
            let key = format!("extract-{}-{} {}", d.now().as_nanos(), job.index, job.chain);
            let _gc = d.gc.hold().await;
            ss.create(
                d.now(),
                &ns,
                &key,
                parent.as_deref().unwrap_or(""),
                Labels::new(),
                false,
            )
            .await?;
            add_snapshot_to_lease_held(&d, &ns, &lease, &ss.name, &key).await?;
            Some(key)
        } else {
            None
        };
        let dir = match &key {
            Some(k) => Some(ss.dir_of(&ns, k).await?),
            None => None,
        };
        let mode = if ss.is_overlay() {
            ApplyMode::Overlay
        } else {
            ApplyMode::Native
        };
        let result = if have_blob {
            let path = d.root.join(berth_drivers::Layout::blob(&digest));
            let done = job.done.clone();
            let size = job.desc.size;
            match dir.clone() {
                Some(dir) => {
                    blocking::unblock(move || {
                        let a = berth_drivers::apply::apply_file(&path, &dir, mode).map_err(|e| {
                            Status::invalid_argument(format!("unpacking {digest}: {e}"))
                        });
                        done.store(size, Ordering::Relaxed);
                        a.map(Some)
                    })
                    .await
                }
                None => Ok(None),
            }
        } else if let Some(r) = &remote {
            download(&d, &r.client, &r.reference, &job, dir.clone(), mode).await
        } else {
            Err(Status::not_found(format!("content {digest}: not found")))
        };
        let applied = match result {
            Ok(a) => a,
            Err(e) => {
                if let Some(k) = &key {
                    let _ = ss.remove(&ns, k).await;
                }
                return Err(e);
            }
        };
        if let Some(a) = &applied {
            if a.diff_id != job.diff_id {
                if let Some(k) = &key {
                    let _ = ss.remove(&ns, k).await;
                }
                return Err(Status::data_loss(format!(
                    "layer {digest}: diff ID {} does not match the config's {}",
                    a.diff_id, job.diff_id
                )));
            }
        }
        let mut labels = source;
        let (k, v) = uncompressed_label(&job.diff_id);
        labels.insert(k, v);
        blobs::record(&d, &ns, Some(&lease), &digest, job.desc.size, labels).await?;
        Ok(key)
    }
}

/// Streams a layer from the registry into the blob store and, if `dir` is given, through the
/// Applier into that directory at the same time.
async fn download(
    d: &Arc<Daemon>,
    client: &RegistryClient,
    reference: &Reference,
    job: &LayerJob,
    dir: Option<std::path::PathBuf>,
    mode: ApplyMode,
) -> Result<Option<Applied>, Status> {
    let digest = job.desc.digest;
    let size = job.desc.size;
    // One resumable download per blob at a time; a second concurrent pull of the same blob
    // downloads into a private file.
    let lock = d.lock_ingest("", &format!("pull-{}", digest.hex()));
    let root = d.root.clone();
    let done = job.done.clone();
    let (start_tx, start_rx) = async_channel::bounded::<Result<u64, Status>>(1);
    let (tx, rx) = async_channel::bounded::<bytes::Bytes>(16);
    let resumable = lock.is_some();
    let worker = blocking::unblock(move || -> Result<Option<Applied>, Status> {
        let _lock = lock;
        let mut applier = match dir {
            Some(dir) => Some(
                Applier::new(&dir, mode, None)
                    .map_err(|e| Status::internal(format!("unpacking {digest}: {e}")))?,
            ),
            None => None,
        };
        let unpack_err = |e: berth_drivers::apply::ApplyError| {
            Status::invalid_argument(format!("unpacking {digest}: {e}"))
        };
        // the bytes a previous, interrupted pull left: unpacked from disk, not downloaded again
        let opened = if resumable {
            BlobFile::resume(&root, &digest, size, |b| {
                if let Some(a) = applier.as_mut() {
                    a.push(b).map_err(unpack_err)?;
                }
                done.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(())
            })
        } else {
            BlobFile::create(&root, &digest).map(|f| (f, 0))
        };
        let mut file = match opened {
            Ok((f, have)) => {
                let _ = start_tx.send_blocking(Ok(have));
                f
            }
            Err(e) => {
                let _ = start_tx.send_blocking(Err(e.clone()));
                return Err(e);
            }
        };
        while let Ok(chunk) = rx.recv_blocking() {
            file.write(&chunk)?;
            let len = chunk.len() as u64;
            if let Some(a) = applier.as_mut() {
                if let Err(e) = a.push_bytes(chunk) {
                    file.discard();
                    return Err(unpack_err(e));
                }
            }
            done.fetch_add(len, Ordering::Relaxed);
        }
        let applied = match applier {
            Some(a) => match a.finish() {
                Ok(a) => Some(a),
                Err(e) => {
                    // a stream cut short keeps its prefix for the next pull; bad bytes do not
                    if !matches!(
                        e,
                        berth_drivers::apply::ApplyError::Decode(
                            berth_core::archive::DecodeError::Truncated { .. }
                        )
                    ) || file.len() >= size
                    {
                        file.discard();
                    }
                    return Err(unpack_err(e));
                }
            },
            None => None,
        };
        file.commit(&digest, size)?;
        Ok(applied)
    });
    let have = start_rx
        .recv()
        .await
        .map_err(|_| Status::internal("download worker ended early"))??;
    if have > 0 {
        log::info!("{digest}: resuming the download at byte {have} of {size}");
    }
    if have >= size {
        drop(tx);
        return worker.await;
    }
    let mut stream = match client.fetch(reference, &job.desc, have).await {
        Ok(s) => s,
        Err(e) => {
            drop(tx);
            let _ = worker.await;
            return Err(registry_status(&format!("fetching {digest}"), &e));
        }
    };
    let mut received = have;
    let feed = async {
        while let Some(chunk) = stream
            .next_chunk()
            .await
            .map_err(|e| Status::unavailable(format!("downloading {digest}: {e}")))?
        {
            received += chunk.len() as u64;
            if received > size {
                return Err(Status::data_loss(format!(
                    "{digest}: the registry sent more than {size} bytes"
                )));
            }
            if tx.send(chunk).await.is_err() {
                break; // the worker failed: its error is the one to report
            }
        }
        Ok(())
    };
    let fed = feed.await;
    drop(tx);
    let out = worker.await;
    fed?;
    out
}
