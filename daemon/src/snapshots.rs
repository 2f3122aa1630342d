//! The snapshotters berthd runs (`overlayfs` and `native`): each a [`Tree`] from core, persisted
//! in the metadata store, with its directory actions carried out by `berth_drivers::snapfs`.
//!
//! Every mutation follows the tree's contract (core::snapshot module docs): mutate the tree,
//! carry out the actions, persist — and give the `Undo` back if a step fails, so a failed call
//! changes nothing. One async lock per snapshotter orders mutations; reads take it briefly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_core::metadata::{Filter, Labels};
use berth_core::snapshot::{
    Action, Config, Event, EventPayload, Info, Kind, Mount, SnapshotError, Tree, Undo, Usage,
    UsageAnswer,
};
use berth_core::Instant;
use berth_drivers::snapfs;
use berth_drivers::store::Store;
use smol::lock::Mutex;
use tonic::Status;

/// How long a removed snapshot's files wait for a mount still using them (the root of a task
/// deleted a moment ago, being unmounted) before they are left to the next start-up cleanup.
const UNMOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// One snapshotter.
pub struct Snapshotter {
    /// Its name (`overlayfs`, `native`).
    pub name: String,
    /// Its root directory (absolute).
    pub root: PathBuf,
    store: Store,
    tree: Mutex<Tree>,
}

/// Every snapshotter.
pub struct Snapshotters {
    list: Vec<Arc<Snapshotter>>,
}

/// What a failed snapshot operation reports.
pub fn snapshot_status(e: &SnapshotError) -> Status {
    let msg = e.to_string();
    match e {
        SnapshotError::NotFound { .. } | SnapshotError::ParentNotFound { .. } => {
            Status::not_found(msg)
        }
        SnapshotError::AlreadyExists { .. } => Status::already_exists(msg),
        SnapshotError::NotActive { .. }
        | SnapshotError::NotActiveOrView { .. }
        | SnapshotError::HasChildren { .. }
        | SnapshotError::CannotRebase { .. } => Status::failed_precondition(msg),
        SnapshotError::EmptyKey
        | SnapshotError::Labels { .. }
        | SnapshotError::ParentNotCommitted { .. } => Status::invalid_argument(msg),
        SnapshotError::IdsExhausted => Status::resource_exhausted(msg),
        _ => Status::internal(msg),
    }
}

fn internal(what: &str) -> impl FnOnce(String) -> Status + '_ {
    move |e| Status::internal(format!("{what}: {e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    blocking::unblock(f).await
}

impl Snapshotters {
    /// Opens the `overlayfs` and `native` snapshotters under `root` (containerd's directory
    /// names), loading their trees and removing directories no snapshot owns.
    pub fn open(root: &Path, store: &Store) -> Result<Self, String> {
        let mut list = Vec::new();
        for (name, make) in [
            ("overlayfs", Config::overlayfs as fn(&str) -> Config),
            ("native", Config::native as fn(&str) -> Config),
        ] {
            let dir = root.join(format!("io.containerd.snapshotter.v1.{name}"));
            std::fs::create_dir_all(dir.join("snapshots"))
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let dir_str = dir
                .to_str()
                .ok_or_else(|| format!("{} is not UTF-8", dir.display()))?;
            let tree = match store
                .snapshotter_load(name)
                .map_err(|e| format!("loading snapshotter {name}: {e}"))?
            {
                Some(bytes) => {
                    let tree: Tree = serde_json::from_slice(&bytes)
                        .map_err(|e| format!("snapshotter {name}: persisted tree: {e}"))?;
                    if tree.config().root != dir_str {
                        return Err(format!(
                            "snapshotter {name}: persisted root {} differs from {}; \
                             moving a root is not supported",
                            tree.config().root,
                            dir.display()
                        ));
                    }
                    tree
                }
                None => Tree::new(make(dir_str)).map_err(|e| format!("snapshotter {name}: {e}"))?,
            };
            let entries = snapfs::list_snapshot_dirs(&dir).map_err(|e| e.to_string())?;
            for a in tree.cleanup(&entries) {
                log::info!("snapshotter {name}: removing stray {a:?}");
                snapfs::perform(&dir, &a).map_err(|e| e.to_string())?;
            }
            list.push(Arc::new(Snapshotter {
                name: name.to_string(),
                root: dir,
                store: store.clone(),
                tree: Mutex::new(tree),
            }));
        }
        Ok(Snapshotters { list })
    }

    /// The snapshotter called `name`; the empty name means `overlayfs`, as ctr's default.
    pub fn get(&self, name: &str) -> Result<Arc<Snapshotter>, Status> {
        let name = if name.is_empty() { "overlayfs" } else { name };
        self.list
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .ok_or_else(|| {
                // containerd's code and wording: InvalidArgument "snapshotter not loaded: X"
                Status::invalid_argument(format!(
                    "snapshotter not loaded: {name} (berthd has overlayfs and native)"
                ))
            })
    }

    /// Every snapshotter.
    pub fn all(&self) -> &[Arc<Snapshotter>] {
        &self.list
    }

    /// True if no snapshotter holds a snapshot in `ns`.
    pub async fn namespace_empty(&self, ns: &str) -> bool {
        for s in &self.list {
            if !s.tree.lock().await.is_empty(ns) {
                return false;
            }
        }
        true
    }

    /// True if `dir` lies in a snapshot directory of one of berthd's snapshotters (lexically:
    /// `<root>/snapshots/<entry>/…`, without `..`).
    pub fn owns(&self, dir: &Path) -> bool {
        use std::path::Component;
        if dir
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return false;
        }
        self.list.iter().any(|s| {
            dir.strip_prefix(s.root.join("snapshots"))
                .is_ok_and(|rest| rest.components().next().is_some())
        })
    }

    /// The snapshotter and active/view snapshot directory a mount list designates, for
    /// Diff.Apply: a `bind` of `<root>/snapshots/<id>[/fs]` or an `overlay` whose `upperdir` is
    /// such a directory. Anything else (a path no snapshotter of berthd owns) is refused.
    pub async fn target_of(&self, mounts: &[Mount]) -> Result<(Arc<Snapshotter>, PathBuf), Status> {
        let [m] = mounts else {
            return Err(Status::invalid_argument(format!(
                "apply needs exactly one mount, got {}",
                mounts.len()
            )));
        };
        let dir = match m.kind.as_str() {
            "bind" => m.source.clone(),
            "overlay" => m
                .options
                .iter()
                .find_map(|o| o.strip_prefix("upperdir="))
                .map(str::to_string)
                .ok_or_else(|| Status::invalid_argument("overlay mount without upperdir"))?,
            other => {
                return Err(Status::invalid_argument(format!(
                    "cannot apply onto a {other:?} mount"
                )))
            }
        };
        for s in &self.list {
            let tree = s.tree.lock().await;
            for ns in tree.namespaces().map(str::to_string).collect::<Vec<_>>() {
                for (key, snap) in tree.snapshots(&ns) {
                    if snap.kind != Kind::Active {
                        continue;
                    }
                    if tree.fs_dir(&ns, key).map(|d| s.root.join(d)) == Some(PathBuf::from(&dir)) {
                        return Ok((s.clone(), PathBuf::from(dir)));
                    }
                }
            }
        }
        Err(Status::invalid_argument(format!(
            "{dir} is not the directory of an active snapshot of berthd"
        )))
    }
}

impl Snapshotter {
    /// True for the overlayfs flavor.
    pub fn is_overlay(&self) -> bool {
        self.name == "overlayfs"
    }

    async fn persist(&self, tree: &Tree) -> Result<(), Status> {
        let bytes = serde_json::to_vec(tree).map_err(|e| internal("serialising")(e.to_string()))?;
        let (store, name) = (self.store.clone(), self.name.clone());
        blocking(move || store.snapshotter_save(&name, &bytes))
            .await
            .map_err(|e| internal("persisting snapshots")(e.to_string()))
    }

    async fn perform(&self, actions: Vec<Action>) -> Result<(), String> {
        let root = self.root.clone();
        blocking(move || {
            for a in &actions {
                snapfs::perform(&root, a).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await
    }

    async fn undo(&self, tree: &mut Tree, undo: Undo) {
        if let Err(e) = tree.undo(undo) {
            log::error!("snapshotter {}: undo failed: {e}", self.name);
        }
    }

    /// Prepare (`view == false`) or View.
    pub async fn create(
        &self,
        now: Instant,
        ns: &str,
        key: &str,
        parent: &str,
        labels: Labels,
        view: bool,
    ) -> Result<(Vec<Mount>, Option<Event>), Status> {
        let mut tree = self.tree.lock().await;
        let parent = (!parent.is_empty()).then_some(parent);
        let p = if view {
            tree.view(now, ns, key, parent, labels)
        } else {
            tree.prepare(now, ns, key, parent, labels)
        }
        .map_err(|e| snapshot_status(&e))?;
        if let Err(e) = self.perform(p.actions.clone()).await {
            self.undo(&mut tree, p.undo).await;
            // Leave no half-made directory behind: the next cleanup would, but do it now. The
            // `trash-*` directories are left to the removals that made them (they may be
            // waiting for an unmount) and to the start-up cleanup.
            let dirs = snapfs::list_snapshot_dirs(&self.root).unwrap_or_default();
            let stray = tree.cleanup(&dirs);
            let stray: Vec<Action> = stray
                .into_iter()
                .filter(|a| {
                    !matches!(a, Action::RemoveAll { path } if path.starts_with("snapshots/trash-"))
                })
                .collect();
            let _ = self.perform(stray).await;
            return Err(Status::internal(format!("preparing snapshot {key:?}: {e}")));
        }
        if let Err(e) = self.persist(&tree).await {
            self.undo(&mut tree, p.undo).await;
            let _ = self
                .perform(vec![Action::RemoveAll {
                    path: format!("snapshots/{}", p.id),
                }])
                .await;
            return Err(e);
        }
        Ok((p.mounts, p.event))
    }

    /// Commit the active `key` as `name`, measuring its usage first.
    pub async fn commit(
        &self,
        now: Instant,
        ns: &str,
        name: &str,
        key: &str,
        labels: Labels,
    ) -> Result<Event, Status> {
        let mut tree = self.tree.lock().await;
        let usage = match tree.usage(ns, key).map_err(|e| snapshot_status(&e))? {
            UsageAnswer::Measure { path } => {
                let dir = self.root.join(path);
                blocking(move || snapfs::usage(&dir))
                    .await
                    .map_err(|e| Status::internal(format!("measuring {key:?}: {e}")))?
            }
            UsageAnswer::Recorded(u) => u,
        };
        let c = tree
            .commit(now, ns, name, key, labels, usage)
            .map_err(|e| snapshot_status(&e))?;
        if let Err(e) = self.persist(&tree).await {
            self.undo(&mut tree, c.undo).await;
            return Err(e);
        }
        Ok(c.event)
    }

    /// Remove `key` (no children allowed).
    pub async fn remove(&self, ns: &str, key: &str) -> Result<Event, Status> {
        let mut tree = self.tree.lock().await;
        let r = tree.remove(ns, key).map_err(|e| snapshot_status(&e))?;
        if let Err(e) = self.persist(&tree).await {
            self.undo(&mut tree, r.undo).await;
            return Err(e);
        }
        drop(tree);
        self.discard(r.actions).await;
        Ok(r.event)
    }

    /// Removes several snapshots (children listed before their parents) with one persist:
    /// garbage collection's sweep. Keys already gone are skipped. Returns the events.
    pub async fn remove_many(&self, ns: &str, keys: &[String]) -> Result<Vec<Event>, Status> {
        let mut tree = self.tree.lock().await;
        let before = tree.clone();
        let mut events = Vec::new();
        let mut actions = Vec::new();
        for key in keys {
            match tree.remove(ns, key) {
                Ok(r) => {
                    events.push(r.event);
                    actions.extend(r.actions);
                }
                Err(SnapshotError::NotFound { .. }) => {}
                Err(e) => log::warn!("snapshotter {}: gc cannot remove {key:?}: {e}", self.name),
            }
        }
        if events.is_empty() {
            return Ok(events);
        }
        if let Err(e) = self.persist(&tree).await {
            *tree = before;
            return Err(e);
        }
        drop(tree);
        self.discard(actions).await;
        Ok(events)
    }

    /// Carries out a removal's actions: each snapshot directory is renamed to `trash-<id>` at
    /// once (a rename: the snapshot is gone from the tree and from disk names immediately) and
    /// its files are deleted on a background thread. A crash before that finishes leaves a
    /// `trash-*` directory that the next start-up cleanup removes (no snapshot owns it).
    async fn discard(&self, actions: Vec<Action>) {
        let root = self.root.clone();
        let name = self.name.clone();
        // Each removal with the directory it had before the rename: a task's root that is
        // still being unmounted names that one.
        let trash = blocking(move || {
            let mut trash = Vec::new();
            for a in actions {
                let renamed = match &a {
                    Action::RemoveAll { path } => path
                        .strip_prefix("snapshots/")
                        .filter(|id| !id.contains('/'))
                        .map(|id| Action::Rename {
                            from: path.clone(),
                            to: format!("snapshots/trash-{id}"),
                        }),
                    _ => None,
                };
                let was = match &a {
                    Action::RemoveAll { path } => Some(root.join(path)),
                    _ => None,
                };
                match renamed {
                    Some(Action::Rename { from, to }) => {
                        let r = Action::Rename {
                            from,
                            to: to.clone(),
                        };
                        match snapfs::perform(&root, &r) {
                            Ok(()) => trash.push((Action::RemoveAll { path: to }, was)),
                            Err(e) => {
                                log::debug!("snapshotter {name}: {e}; removing in place");
                                trash.push((a, was));
                            }
                        }
                    }
                    _ => trash.push((a, was)),
                }
            }
            trash
        })
        .await;
        let (root, name) = (self.root.clone(), self.name.clone());
        std::thread::spawn(move || {
            for (a, was) in &trash {
                // The snapshot may be the root of a task deleted a moment ago, still being
                // unmounted on a thread of its own: never delete files under a mount.
                if let Some(dir) = was.as_ref().and_then(|d| d.to_str()) {
                    if !berth_drivers::runtime::wait_unused(&[dir.to_string()], UNMOUNT_WAIT) {
                        log::warn!(
                            "snapshotter {name}: {dir} is still mounted; its files stay until \
                             the next start"
                        );
                        continue;
                    }
                }
                if let Err(e) = snapfs::perform(&root, a) {
                    // The record is gone; the directory goes at the next start-up cleanup.
                    log::warn!("snapshotter {name}: {e}");
                }
            }
        });
    }

    /// Update labels through a mask.
    pub async fn update(
        &self,
        now: Instant,
        ns: &str,
        key: &str,
        labels: &Labels,
        paths: &[String],
    ) -> Result<Info, Status> {
        let mut tree = self.tree.lock().await;
        let (info, undo) = tree
            .update(now, ns, key, labels, paths)
            .map_err(|e| snapshot_status(&e))?;
        if let Err(e) = self.persist(&tree).await {
            self.undo(&mut tree, undo).await;
            return Err(e);
        }
        Ok(info)
    }

    /// Rebase an active overlay snapshot onto `parent` (see `Tree::rebase`).
    pub async fn rebase(
        &self,
        now: Instant,
        ns: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<(), Status> {
        let mut tree = self.tree.lock().await;
        let (_, undo) = tree
            .rebase(now, ns, key, parent)
            .map_err(|e| snapshot_status(&e))?;
        if let Err(e) = self.persist(&tree).await {
            self.undo(&mut tree, undo).await;
            return Err(e);
        }
        Ok(())
    }

    /// The absolute directory holding a snapshot's files.
    pub async fn dir_of(&self, ns: &str, key: &str) -> Result<PathBuf, Status> {
        self.tree
            .lock()
            .await
            .fs_dir(ns, key)
            .map(|d| self.root.join(d))
            .ok_or_else(|| Status::not_found(format!("snapshot {key:?} has no directory")))
    }

    /// Stat.
    pub async fn stat(&self, ns: &str, key: &str) -> Result<Info, Status> {
        self.tree
            .lock()
            .await
            .stat(ns, key)
            .map_err(|e| snapshot_status(&e))
    }

    /// Mounts of an active or view snapshot.
    pub async fn mounts(&self, ns: &str, key: &str) -> Result<Vec<Mount>, Status> {
        self.tree
            .lock()
            .await
            .mounts(ns, key)
            .map_err(|e| snapshot_status(&e))
    }

    /// List with filters.
    pub async fn list(&self, ns: &str, filter: &Filter) -> Vec<Info> {
        self.tree.lock().await.list(ns, filter)
    }

    /// Usage: recorded for committed snapshots, measured for active ones.
    pub async fn usage(&self, ns: &str, key: &str) -> Result<Usage, Status> {
        let answer = self
            .tree
            .lock()
            .await
            .usage(ns, key)
            .map_err(|e| snapshot_status(&e))?;
        match answer {
            UsageAnswer::Recorded(u) => Ok(u),
            UsageAnswer::Measure { path } => {
                let dir = self.root.join(path);
                blocking(move || snapfs::usage(&dir))
                    .await
                    .map_err(|e| Status::internal(format!("measuring {key:?}: {e}")))
            }
        }
    }

    /// The GC view of a namespace's snapshots.
    pub async fn gc_snapshots(
        &self,
        ns: &str,
    ) -> std::collections::BTreeMap<String, berth_core::metadata::gc::Snapshot> {
        self.tree.lock().await.gc_snapshots(ns)
    }

    /// Removes directories no snapshot owns (the Cleanup call).
    pub async fn cleanup(&self) -> Result<(), Status> {
        let tree = self.tree.lock().await;
        let root = self.root.clone();
        let entries = blocking(move || snapfs::list_snapshot_dirs(&root))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let actions = tree.cleanup(&entries);
        drop(tree);
        self.perform(actions)
            .await
            .map_err(|e| Status::internal(format!("cleanup: {e}")))
    }
}

/// The wire payload and the `event.key` value of a snapshot event.
pub fn event_any(ev: &Event) -> (prost_types::Any, String) {
    use berth_api::any::to_any;
    use berth_api::events::{SnapshotCommit, SnapshotPrepare, SnapshotRemove};
    match &ev.payload {
        EventPayload::Prepare { key, parent } => (
            to_any(&SnapshotPrepare {
                key: key.clone(),
                parent: parent.clone().unwrap_or_default(),
                snapshotter: ev.snapshotter.clone(),
            }),
            key.clone(),
        ),
        EventPayload::Commit { key, name } => (
            to_any(&SnapshotCommit {
                key: key.clone(),
                name: name.clone(),
                snapshotter: ev.snapshotter.clone(),
            }),
            key.clone(),
        ),
        EventPayload::Remove { key } => (
            to_any(&SnapshotRemove {
                key: key.clone(),
                snapshotter: ev.snapshotter.clone(),
            }),
            key.clone(),
        ),
    }
}
