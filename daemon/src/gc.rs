//! Garbage collection: builds core's [`Graph`] from the store and the snapshotters, runs
//! [`collect`], and carries out the sweep.
//!
//! Scheduling follows containerd's: a collection runs shortly after something was deleted (an
//! image, a lease, content, a snapshot), and `sync` deletes run one at once and wait for it.
//! Calls that add references (image and snapshot writes, content commits) hold the GC lock for
//! reading while they write, and a collection holds it for writing from the graph read to the
//! end of the sweep, so nothing can become referenced between mark and sweep.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use berth_core::metadata::gc::{self, collect, Graph, Resource};
use berth_core::op::OpKind;
use berth_drivers::store::StoreError;
use berth_drivers::Layout;
use smol::lock::{RwLock, RwLockReadGuard};

use crate::state::Daemon;

/// Delay between a delete and the collection it schedules.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// The collector's shared state.
pub struct Gc {
    lock: RwLock<()>,
    tx: async_channel::Sender<()>,
    rx: async_channel::Receiver<()>,
}

impl Default for Gc {
    fn default() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Gc {
            lock: RwLock::new(()),
            tx,
            rx,
        }
    }
}

/// What one collection removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Content records deleted.
    pub content: usize,
    /// Blobs unlinked.
    pub blobs: usize,
    /// Snapshots removed.
    pub snapshots: usize,
    /// Expired leases deleted.
    pub leases: usize,
}

impl Gc {
    /// Held by a call that adds references while it writes.
    pub async fn hold(&self) -> RwLockReadGuard<'_, ()> {
        self.lock.read().await
    }

    /// Asks the background collector to run soon.
    pub fn schedule(&self) {
        let _ = self.tx.try_send(());
    }
}

/// Starts the background collector, which runs shortly after each scheduling. (The start-up
/// collection runs before berthd serves: see `main`.)
pub fn spawn(d: Arc<Daemon>) {
    smol::spawn(async move {
        while d.gc.rx.recv().await.is_ok() {
            async_io::Timer::after(DEBOUNCE).await;
            if let Err(e) = run(&d).await {
                log::warn!("garbage collection: {e}");
            }
        }
    })
    .detach();
}

async fn graph(d: &Arc<Daemon>) -> Result<Graph, StoreError> {
    let store = d.store.clone();
    let mut graph = blocking::unblock(move || -> Result<Graph, StoreError> {
        let mut g = Graph::default();
        for ns in store.namespace_names()? {
            let mut n = gc::Namespace::default();
            for (name, img) in store.image_list(&ns)? {
                n.images.insert(
                    name,
                    gc::Image {
                        target: img.target.digest,
                        labels: img.labels,
                    },
                );
            }
            for (id, c) in store.container_list(&ns)? {
                let snapshot = (!c.snapshot_key.is_empty()).then(|| gc::SnapshotRef {
                    snapshotter: c.snapshotter.clone(),
                    key: c.snapshot_key.clone(),
                });
                n.containers.insert(
                    id,
                    gc::Container {
                        snapshot,
                        labels: c.labels,
                    },
                );
            }
            for (digest, rec) in store.content_list(&ns)? {
                n.content.insert(digest, rec.labels);
            }
            for (id, rec) in store.lease_list(&ns)? {
                let resources = store
                    .lease_resources(&ns, &id)?
                    .into_iter()
                    .filter_map(|r| Resource::from_wire(&r.kind, &r.id))
                    .collect();
                n.leases
                    .insert(id, gc::Lease::from_labels(&rec.labels, resources));
            }
            g.namespaces.insert(ns, n);
        }
        Ok(g)
    })
    .await?;
    for (ns, n) in &mut graph.namespaces {
        for ss in d.snapshotters.all() {
            let snaps = ss.gc_snapshots(ns).await;
            if !snaps.is_empty() {
                n.snapshots.insert(ss.name.clone(), snaps);
            }
        }
    }
    Ok(graph)
}

/// Runs one collection now and waits for it.
pub async fn run(d: &Arc<Daemon>) -> Result<Stats, String> {
    let started = StdInstant::now();
    let _w = d.gc.lock.write().await;
    let graph = graph(d)
        .await
        .map_err(|e| format!("reading metadata: {e}"))?;
    let sweep = collect(&graph, d.now());
    let mut stats = Stats::default();
    for (ns, s) in &sweep.namespaces {
        // per snapshotter, in the sweep's order (children first), one persist each
        let mut by_snapshotter: Vec<(String, Vec<String>)> = Vec::new();
        for r in &s.snapshots {
            match by_snapshotter.iter_mut().find(|(n, _)| *n == r.snapshotter) {
                Some((_, keys)) => keys.push(r.key.clone()),
                None => by_snapshotter.push((r.snapshotter.clone(), vec![r.key.clone()])),
            }
        }
        for (name, keys) in &by_snapshotter {
            match d.snapshotters.get(name) {
                Ok(ss) => match ss.remove_many(ns, keys).await {
                    Ok(evs) => stats.snapshots += evs.len(),
                    Err(e) => log::warn!("gc: removing snapshots of {name}: {e}"),
                },
                Err(_) => log::warn!("gc: unknown snapshotter {name:?}"),
            }
        }
        let (store, n, content, leases) = (
            d.store.clone(),
            ns.clone(),
            s.content.clone(),
            s.leases.clone(),
        );
        let (c, l) = blocking::unblock(move || {
            let (mut c, mut l) = (0, 0);
            for dg in &content {
                match store.content_delete(&n, dg) {
                    Ok(_) => c += 1,
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => log::warn!("gc: deleting content {dg} in {n}: {e}"),
                }
            }
            for id in &leases {
                match store.lease_delete(&n, id) {
                    Ok(()) => l += 1,
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => log::warn!("gc: deleting lease {id} in {n}: {e}"),
                }
            }
            (c, l)
        })
        .await;
        stats.content += c;
        stats.leases += l;
    }
    for dg in &sweep.unlink {
        match d
            .op(OpKind::Remove {
                path: Layout::blob(dg),
            })
            .await
        {
            Ok(_) => stats.blobs += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => log::warn!("gc: unlinking blob {dg}: {e}"),
        }
    }
    log::debug!(
        "gc: removed {} content records, {} blobs, {} snapshots, {} leases in {:?}",
        stats.content,
        stats.blobs,
        stats.snapshots,
        stats.leases,
        started.elapsed()
    );
    Ok(stats)
}
