//! The snapshot tree: one snapshotter's snapshots, per namespace, and containerd's rules.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::mounts::{self, Mount};
use super::{Action, Event, EventPayload, Info, Kind, Usage};
use crate::metadata::{apply_label_mask, gc, validate_labels, Filter, LabelError, Labels};
use crate::Instant;

/// Which snapshotter the tree models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Flavor {
    /// containerd's `overlayfs`: each snapshot has `snapshots/<id>/fs` (its upper directory)
    /// and, while active, `snapshots/<id>/work`; parents become overlay lower layers.
    Overlay {
        /// Mount with `index=off` (containerd does whenever the kernel has the `index` feature,
        /// i.e. on every kernel berth supports).
        index_off: bool,
        /// Mount with `userxattr` (rootless overlay in a user namespace).
        userxattr: bool,
    },
    /// containerd's `native`: each active snapshot is a full copy of its parent in
    /// `snapshots/<id>`, bind-mounted.
    Native,
}

/// A snapshotter's identity: its name, its flavor and its root directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The name clients use (`overlayfs`, `native`).
    pub snapshotter: String,
    /// The absolute root directory; mounts name `<root>/snapshots/<id>/…`.
    pub root: String,
    /// Which snapshotter.
    pub flavor: Flavor,
}

impl Config {
    /// containerd's `overlayfs` snapshotter at `root`, mounting with `index=off`.
    #[must_use]
    pub fn overlayfs(root: &str) -> Self {
        Config {
            snapshotter: "overlayfs".into(),
            root: root.into(),
            flavor: Flavor::Overlay {
                index_off: true,
                userxattr: false,
            },
        }
    }

    /// containerd's `native` snapshotter at `root`.
    #[must_use]
    pub fn native(root: &str) -> Self {
        Config {
            snapshotter: "native".into(),
            root: root.into(),
            flavor: Flavor::Native,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let r = &self.root;
        if !r.starts_with('/')
            || r.len() < 2
            || r.ends_with('/')
            || r.contains(['\0', ',', ':'])
            || r.split('/')
                .skip(1)
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(ConfigError::BadRoot { root: r.clone() });
        }
        if self.snapshotter.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        Ok(())
    }
}

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The root is not a clean absolute path below `/`, or holds `,` or `:` (which overlay
    /// options cannot carry).
    #[error("snapshotter root {root:?} must be a clean absolute path below / without ',' or ':'")]
    BadRoot {
        /// The root given.
        root: String,
    },
    /// The snapshotter has no name.
    #[error("snapshotter name must not be empty")]
    EmptyName,
}

/// One snapshot as the tree stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The id the tree allocated; its directory is `snapshots/<id>`. Never reused.
    pub id: u64,
    /// Its kind.
    pub kind: Kind,
    /// Its parent's name (a committed snapshot of the same namespace).
    pub parent: Option<String>,
    /// Creation (for a committed snapshot: commit) time.
    pub created_at: Instant,
    /// Last change.
    pub updated_at: Instant,
    /// Labels.
    pub labels: Labels,
    /// Usage recorded at commit (zero for active and view snapshots).
    pub usage: Usage,
}

/// Why a snapshot operation was refused. Each variant names the gRPC code containerd returns.
/// A refused operation changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// `InvalidArgument`: an empty key or name.
    #[error("snapshot key must not be empty")]
    EmptyKey,
    /// `InvalidArgument`: labels or an update mask were refused.
    #[error("snapshot {key:?}: {source}")]
    Labels {
        /// The snapshot.
        key: String,
        /// Why.
        source: LabelError,
    },
    /// `AlreadyExists`: the key (or commit name) is taken in this namespace.
    #[error("snapshot {key:?} already exists in namespace {namespace:?}")]
    AlreadyExists {
        /// The namespace.
        namespace: String,
        /// The key or name.
        key: String,
    },
    /// `NotFound`: no such snapshot in this namespace.
    #[error("snapshot {key:?} does not exist in namespace {namespace:?}")]
    NotFound {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// `NotFound`: the parent of a new snapshot does not exist.
    #[error("parent snapshot {parent:?} of {key:?} does not exist in namespace {namespace:?}")]
    ParentNotFound {
        /// The namespace.
        namespace: String,
        /// The new snapshot's key.
        key: String,
        /// The missing parent.
        parent: String,
    },
    /// `InvalidArgument` (containerd's storage layer): the parent is not committed.
    #[error("parent {parent:?} of {key:?} is {kind}, not a committed snapshot")]
    ParentNotCommitted {
        /// The new snapshot's key.
        key: String,
        /// The parent.
        parent: String,
        /// The parent's kind.
        kind: Kind,
    },
    /// `FailedPrecondition`: only an active snapshot can be committed.
    #[error("snapshot {key:?} is {kind}, not active: only active snapshots can be committed")]
    NotActive {
        /// The key.
        key: String,
        /// Its kind.
        kind: Kind,
    },
    /// `FailedPrecondition`: a committed snapshot has no mounts.
    #[error("snapshot {key:?} is {kind}: not active or view")]
    NotActiveOrView {
        /// The key.
        key: String,
        /// Its kind.
        kind: Kind,
    },
    /// `FailedPrecondition`: the snapshot is the parent of others.
    #[error(
        "cannot remove snapshot {key:?}: it is the parent of {} snapshot(s), e.g. {:?}",
        children.len(),
        children.first().map_or("", String::as_str)
    )]
    HasChildren {
        /// The snapshot.
        key: String,
        /// Its children's keys.
        children: Vec<String>,
    },
    /// `FailedPrecondition`: [`Tree::rebase`] applies only to an active overlay snapshot.
    #[error("cannot rebase snapshot {key:?}: {reason}")]
    CannotRebase {
        /// The snapshot.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// `ResourceExhausted`: every snapshot id has been used.
    #[error("snapshot ids are exhausted")]
    IdsExhausted,
    /// An [`Undo`] given after another mutation of the tree; nothing was undone.
    #[error("undo of generation {expected}, but the tree is at generation {actual}")]
    StaleUndo {
        /// The generation the undo belongs to.
        expected: u64,
        /// The tree's.
        actual: u64,
    },
}

/// Why a persisted tree does not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Its config is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// It breaks an invariant of the tree.
    #[error("snapshot tree: {namespace:?}/{key:?}: {what}")]
    Corrupt {
        /// The namespace.
        namespace: String,
        /// The snapshot.
        key: String,
        /// The broken invariant.
        what: &'static str,
    },
}

/// What the driver does to put the tree back if it cannot carry out a mutation: pass it to
/// [`Tree::undo`] before any other mutation. Ids are not given back: a half-made directory of
/// an undone snapshot can never collide with a later one.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an Undo is the only way to roll back a mutation the driver could not carry out"]
pub struct Undo {
    generation: u64,
    namespace: String,
    restore: Vec<(String, Option<Snapshot>)>,
}

/// The outcome of [`Tree::prepare`] and [`Tree::view`].
#[derive(Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The new snapshot.
    pub info: Info,
    /// Its id.
    pub id: u64,
    /// Its mounts.
    pub mounts: Vec<Mount>,
    /// What to create on disk, in order.
    pub actions: Vec<Action>,
    /// The event to publish once done (`None` for a view, as containerd).
    pub event: Option<Event>,
    /// How to roll back.
    pub undo: Undo,
}

/// The outcome of [`Tree::commit`].
#[derive(Debug, PartialEq, Eq)]
pub struct Committed {
    /// The committed snapshot.
    pub info: Info,
    /// The event to publish.
    pub event: Event,
    /// How to roll back.
    pub undo: Undo,
}

/// The outcome of [`Tree::remove`].
#[derive(Debug, PartialEq, Eq)]
pub struct Removed {
    /// The removed snapshot.
    pub snapshot: Snapshot,
    /// What to remove from disk once the tree is persisted.
    pub actions: Vec<Action>,
    /// The event to publish.
    pub event: Event,
    /// How to roll back (only if persisting failed: the actions destroy the data).
    pub undo: Undo,
}

/// The answer of [`Tree::usage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageAnswer {
    /// The usage the tree holds (committed snapshots: recorded at commit; views: zero).
    Recorded(Usage),
    /// An active snapshot: the driver measures this directory (relative to the root).
    Measure {
        /// The directory to measure.
        path: String,
    },
}

/// One snapshotter's snapshots, per namespace. See the [module docs](super).
///
/// Serialises with serde; deserialising checks every invariant (ids unique and below the next
/// id, parents present and committed, no cycles) and refuses a tree that breaks one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "TreeState")]
pub struct Tree {
    config: Config,
    next_id: u64,
    namespaces: BTreeMap<String, BTreeMap<String, Snapshot>>,
    #[serde(skip)]
    generation: u64,
}

/// The serialised form of a [`Tree`], checked on the way in.
#[derive(Deserialize)]
struct TreeState {
    config: Config,
    next_id: u64,
    namespaces: BTreeMap<String, BTreeMap<String, Snapshot>>,
}

impl TryFrom<TreeState> for Tree {
    type Error = LoadError;

    fn try_from(s: TreeState) -> Result<Self, LoadError> {
        s.config.check()?;
        let mut ids = BTreeSet::new();
        for (ns, snaps) in &s.namespaces {
            for (key, snap) in snaps {
                let bad = |what| LoadError::Corrupt {
                    namespace: ns.clone(),
                    key: key.clone(),
                    what,
                };
                if key.is_empty() {
                    return Err(bad("empty key"));
                }
                if snap.id == 0 || snap.id >= s.next_id {
                    return Err(bad("id not below the next id"));
                }
                if !ids.insert(snap.id) {
                    return Err(bad("id used twice"));
                }
                // Walk the ancestry: every parent present and committed, no cycle.
                let mut cur = snap.parent.as_deref();
                let mut steps = 0;
                while let Some(p) = cur {
                    let parent = snaps.get(p).ok_or_else(|| bad("parent missing"))?;
                    if parent.kind != Kind::Committed {
                        return Err(bad("parent not committed"));
                    }
                    steps += 1;
                    if steps > snaps.len() {
                        return Err(bad("parent chain has a cycle"));
                    }
                    cur = parent.parent.as_deref();
                }
            }
        }
        Ok(Tree {
            config: s.config,
            next_id: s.next_id,
            namespaces: s.namespaces,
            generation: 0,
        })
    }
}

impl Tree {
    /// An empty tree for a snapshotter.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.check()?;
        Ok(Tree {
            config,
            next_id: 1,
            namespaces: BTreeMap::new(),
            generation: 0,
        })
    }

    // ----- getters -----

    /// The snapshotter's config.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The id the next snapshot will get.
    #[must_use]
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// A snapshot's record.
    #[must_use]
    pub fn get(&self, ns: &str, key: &str) -> Option<&Snapshot> {
        self.namespaces.get(ns)?.get(key)
    }

    /// Every snapshot of a namespace, by key.
    pub fn snapshots(&self, ns: &str) -> impl Iterator<Item = (&str, &Snapshot)> {
        self.namespaces
            .get(ns)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, s)| (k.as_str(), s)))
    }

    /// The namespaces that hold snapshots.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.keys().map(String::as_str)
    }

    /// True if the namespace holds no snapshot (a namespace delete requires it).
    #[must_use]
    pub fn is_empty(&self, ns: &str) -> bool {
        self.namespaces.get(ns).is_none_or(BTreeMap::is_empty)
    }

    /// Stat: the snapshot's info.
    pub fn stat(&self, ns: &str, key: &str) -> Result<Info, SnapshotError> {
        Ok(info(key, self.find(ns, key)?))
    }

    /// The snapshots of a namespace that match `filter` (fields `kind`, `name`, `parent`,
    /// `labels.<key>`), by key.
    #[must_use]
    pub fn list(&self, ns: &str, filter: &Filter) -> Vec<Info> {
        self.snapshots(ns)
            .filter(|(key, s)| {
                filter.matches(|path| match path {
                    [f] if f == "kind" => Some(s.kind.name().into()),
                    [f] if f == "name" => Some((*key).into()),
                    // containerd reports an absent parent as present and empty.
                    [f] if f == "parent" => Some(s.parent.clone().unwrap_or_default()),
                    [f, rest @ ..] if f == "labels" && !rest.is_empty() => {
                        s.labels.get(&rest.join(".")).cloned()
                    }
                    _ => None,
                })
            })
            .map(|(key, s)| info(key, s))
            .collect()
    }

    /// The ids of a snapshot's committed ancestry, immediate parent first.
    #[must_use]
    pub fn parent_ids(&self, ns: &str, key: &str) -> Vec<u64> {
        let Some(snaps) = self.namespaces.get(ns) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut cur = snaps.get(key).and_then(|s| s.parent.as_deref());
        // Bounded by the namespace's size: the invariants rule cycles out, a loop cannot hang.
        while let Some(p) = cur {
            let Some(parent) = snaps.get(p) else { break };
            if out.len() >= snaps.len() {
                break;
            }
            out.push(parent.id);
            cur = parent.parent.as_deref();
        }
        out
    }

    /// Mounts of an active snapshot or a view, as containerd's snapshotter returns them.
    pub fn mounts(&self, ns: &str, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let s = self.find(ns, key)?;
        if s.kind == Kind::Committed {
            return Err(SnapshotError::NotActiveOrView {
                key: key.into(),
                kind: s.kind,
            });
        }
        Ok(vec![self.mount_of(s.kind, s.id, &self.parent_ids(ns, key))])
    }

    /// Usage: recorded, or to be measured by the driver for an active snapshot.
    pub fn usage(&self, ns: &str, key: &str) -> Result<UsageAnswer, SnapshotError> {
        let s = self.find(ns, key)?;
        Ok(match s.kind {
            Kind::Active => UsageAnswer::Measure {
                path: self.fs_path(s.id),
            },
            _ => UsageAnswer::Recorded(s.usage),
        })
    }

    /// The directory, relative to the root, holding a snapshot's files (where a layer is
    /// applied): `snapshots/<id>/fs` (overlay) or `snapshots/<id>` (native). `None` if the
    /// snapshot does not exist or, for a native view with a parent, has no directory.
    #[must_use]
    pub fn fs_dir(&self, ns: &str, key: &str) -> Option<String> {
        let s = self.get(ns, key)?;
        self.has_dir(s).then(|| self.fs_path(s.id))
    }

    /// A namespace's snapshots as garbage collection sees them (for
    /// [`gc::Namespace::snapshots`](crate::metadata::gc::Namespace::snapshots), under this
    /// snapshotter's name).
    #[must_use]
    pub fn gc_snapshots(&self, ns: &str) -> BTreeMap<String, gc::Snapshot> {
        self.snapshots(ns)
            .map(|(k, s)| {
                (
                    k.to_string(),
                    gc::Snapshot {
                        parent: s.parent.clone(),
                        labels: s.labels.clone(),
                    },
                )
            })
            .collect()
    }

    // ----- mutations -----

    /// Prepare: a new active snapshot `key` on `parent` (a committed snapshot), or on nothing.
    /// `Some("")` means no parent, like the wire's empty string. Labels with an empty value are
    /// not stored (containerd's metadata store drops them).
    pub fn prepare(
        &mut self,
        now: Instant,
        ns: &str,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Prepared, SnapshotError> {
        self.create(now, ns, key, parent, labels, Kind::Active)
    }

    /// View: a new read-only snapshot `key` of `parent`. Publishes no event.
    pub fn view(
        &mut self,
        now: Instant,
        ns: &str,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Prepared, SnapshotError> {
        self.create(now, ns, key, parent, labels, Kind::View)
    }

    /// Commit: the active snapshot `key` becomes the committed snapshot `name`, with the same id
    /// and parent, the given labels (only those, as containerd), `usage` (measured by the driver
    /// beforehand) and both times set to `now`.
    pub fn commit(
        &mut self,
        now: Instant,
        ns: &str,
        name: &str,
        key: &str,
        labels: Labels,
        usage: Usage,
    ) -> Result<Committed, SnapshotError> {
        if name.is_empty() || key.is_empty() {
            return Err(SnapshotError::EmptyKey);
        }
        let labels = without_empty(labels);
        validate_labels(&labels).map_err(|source| SnapshotError::Labels {
            key: name.into(),
            source,
        })?;
        if self.get(ns, name).is_some() {
            return Err(SnapshotError::AlreadyExists {
                namespace: ns.into(),
                key: name.into(),
            });
        }
        let active = self.find(ns, key)?;
        if active.kind != Kind::Active {
            return Err(SnapshotError::NotActive {
                key: key.into(),
                kind: active.kind,
            });
        }
        let committed = Snapshot {
            id: active.id,
            kind: Kind::Committed,
            parent: active.parent.clone(),
            created_at: now,
            updated_at: now,
            labels,
            usage,
        };
        let undo = self.mutate(
            ns,
            vec![(key.into(), None), (name.into(), Some(committed.clone()))],
        );
        Ok(Committed {
            info: info(name, &committed),
            event: self.event(
                ns,
                EventPayload::Commit {
                    key: key.into(),
                    name: name.into(),
                },
            ),
            undo,
        })
    }

    /// Remove a snapshot of any kind that has no children.
    pub fn remove(&mut self, ns: &str, key: &str) -> Result<Removed, SnapshotError> {
        let s = self.find(ns, key)?.clone();
        let children: Vec<String> = self
            .snapshots(ns)
            .filter(|(_, c)| c.parent.as_deref() == Some(key))
            .map(|(k, _)| k.to_string())
            .collect();
        if !children.is_empty() {
            return Err(SnapshotError::HasChildren {
                key: key.into(),
                children,
            });
        }
        let actions = if self.has_dir(&s) {
            vec![Action::RemoveAll {
                path: dir_path(s.id),
            }]
        } else {
            Vec::new()
        };
        let undo = self.mutate(ns, vec![(key.into(), None)]);
        Ok(Removed {
            snapshot: s,
            actions,
            event: self.event(ns, EventPayload::Remove { key: key.into() }),
            undo,
        })
    }

    /// Update a snapshot's labels through a field mask (`labels`, `labels.<key>`; none replaces
    /// every label; an empty value deletes a key). Sets `updated_at`. Publishes no event.
    pub fn update(
        &mut self,
        now: Instant,
        ns: &str,
        key: &str,
        labels: &Labels,
        paths: &[String],
    ) -> Result<(Info, Undo), SnapshotError> {
        let s = self.find(ns, key)?;
        let new = apply_label_mask(&s.labels, labels, paths, |_| false).map_err(|source| {
            SnapshotError::Labels {
                key: key.into(),
                source,
            }
        })?;
        let s = Snapshot {
            labels: without_empty(new),
            updated_at: now,
            ..s.clone()
        };
        let i = info(key, &s);
        Ok((i, self.mutate(ns, vec![(key.into(), Some(s))])))
    }

    /// Rebase: give the active overlay snapshot `key` a new parent (a committed snapshot, or
    /// none). An overlay snapshot's directory does not depend on its parent — the parent only
    /// adds lower layers to its mounts — so layers can be unpacked in parallel, each into a
    /// snapshot without a parent, and rebased onto the previous layer's chain once that is
    /// committed, just before their own commit. Native snapshots copy their parent and cannot
    /// be rebased.
    pub fn rebase(
        &mut self,
        now: Instant,
        ns: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<(Info, Undo), SnapshotError> {
        let parent = parent.filter(|p| !p.is_empty());
        let s = self.find(ns, key)?;
        let refuse = |reason| {
            Err(SnapshotError::CannotRebase {
                key: key.into(),
                reason,
            })
        };
        if !matches!(self.config.flavor, Flavor::Overlay { .. }) {
            return refuse("only overlay snapshots can be rebased");
        }
        if s.kind != Kind::Active {
            return refuse("only active snapshots can be rebased");
        }
        if let Some(p) = parent {
            let ps = self
                .get(ns, p)
                .ok_or_else(|| SnapshotError::ParentNotFound {
                    namespace: ns.into(),
                    key: key.into(),
                    parent: p.into(),
                })?;
            if ps.kind != Kind::Committed {
                return Err(SnapshotError::ParentNotCommitted {
                    key: key.into(),
                    parent: p.into(),
                    kind: ps.kind,
                });
            }
        }
        let s = Snapshot {
            parent: parent.map(Into::into),
            updated_at: now,
            ..s.clone()
        };
        let i = info(key, &s);
        Ok((i, self.mutate(ns, vec![(key.into(), Some(s))])))
    }

    /// Rolls back the mutation that returned `undo`, if nothing else changed the tree since.
    pub fn undo(&mut self, undo: Undo) -> Result<(), SnapshotError> {
        if undo.generation != self.generation {
            return Err(SnapshotError::StaleUndo {
                expected: undo.generation,
                actual: self.generation,
            });
        }
        let _ = self.mutate(&undo.namespace, undo.restore);
        Ok(())
    }

    /// Start-up cleanup: given the entry names of `<root>/snapshots`, the removals of every entry
    /// no snapshot owns (half-made `new-<id>` directories, removed snapshots, ids allocated but
    /// never persisted).
    #[must_use]
    pub fn cleanup<S: AsRef<str>>(&self, entries: &[S]) -> Vec<Action> {
        let owned: BTreeSet<String> = self
            .namespaces
            .values()
            .flat_map(BTreeMap::values)
            .filter(|s| self.has_dir(s))
            .map(|s| s.id.to_string())
            .collect();
        let mut gone: Vec<&str> = entries
            .iter()
            .map(AsRef::as_ref)
            .filter(|e| crate::op::is_canonical_path(e) && !e.contains('/'))
            .filter(|e| !owned.contains(*e))
            .collect();
        gone.sort_unstable();
        gone.dedup();
        gone.into_iter()
            .map(|e| Action::RemoveAll {
                path: format!("snapshots/{e}"),
            })
            .collect()
    }

    // ----- internals -----

    fn find(&self, ns: &str, key: &str) -> Result<&Snapshot, SnapshotError> {
        self.get(ns, key).ok_or_else(|| SnapshotError::NotFound {
            namespace: ns.into(),
            key: key.into(),
        })
    }

    fn create(
        &mut self,
        now: Instant,
        ns: &str,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
        kind: Kind,
    ) -> Result<Prepared, SnapshotError> {
        let parent = parent.filter(|p| !p.is_empty());
        let labels = without_empty(labels);
        if key.is_empty() {
            return Err(SnapshotError::EmptyKey);
        }
        validate_labels(&labels).map_err(|source| SnapshotError::Labels {
            key: key.into(),
            source,
        })?;
        if self.get(ns, key).is_some() {
            return Err(SnapshotError::AlreadyExists {
                namespace: ns.into(),
                key: key.into(),
            });
        }
        let parent_id = match parent {
            None => None,
            Some(p) => {
                let ps = self
                    .get(ns, p)
                    .ok_or_else(|| SnapshotError::ParentNotFound {
                        namespace: ns.into(),
                        key: key.into(),
                        parent: p.into(),
                    })?;
                if ps.kind != Kind::Committed {
                    return Err(SnapshotError::ParentNotCommitted {
                        key: key.into(),
                        parent: p.into(),
                        kind: ps.kind,
                    });
                }
                Some(ps.id)
            }
        };
        let id = self.next_id;
        self.next_id = id.checked_add(1).ok_or(SnapshotError::IdsExhausted)?;
        let snap = Snapshot {
            id,
            kind,
            parent: parent.map(Into::into),
            created_at: now,
            updated_at: now,
            labels,
            usage: Usage::default(),
        };
        let actions = self.create_actions(&snap, parent_id);
        let undo = self.mutate(ns, vec![(key.into(), Some(snap.clone()))]);
        let mounts = vec![self.mount_of(kind, id, &self.parent_ids(ns, key))];
        let event = (kind == Kind::Active).then(|| {
            self.event(
                ns,
                EventPayload::Prepare {
                    key: key.into(),
                    parent: snap.parent.clone(),
                },
            )
        });
        Ok(Prepared {
            info: info(key, &snap),
            id,
            mounts,
            actions,
            event,
            undo,
        })
    }

    /// Sets (`Some`) or deletes (`None`) records of a namespace; returns the undo.
    fn mutate(&mut self, ns: &str, changes: Vec<(String, Option<Snapshot>)>) -> Undo {
        let snaps = self.namespaces.entry(ns.into()).or_default();
        let mut restore = Vec::with_capacity(changes.len());
        for (key, new) in changes {
            let old = match new {
                Some(s) => snaps.insert(key.clone(), s),
                None => snaps.remove(&key),
            };
            restore.push((key, old));
        }
        restore.reverse();
        if snaps.is_empty() {
            self.namespaces.remove(ns);
        }
        self.generation += 1;
        Undo {
            generation: self.generation,
            namespace: ns.into(),
            restore,
        }
    }

    fn event(&self, ns: &str, payload: EventPayload) -> Event {
        Event {
            namespace: ns.into(),
            snapshotter: self.config.snapshotter.clone(),
            payload,
        }
    }

    /// Whether a snapshot has a directory of its own (all but a native view of a parent).
    fn has_dir(&self, s: &Snapshot) -> bool {
        !(self.config.flavor == Flavor::Native && s.kind == Kind::View && s.parent.is_some())
    }

    fn fs_path(&self, id: u64) -> String {
        match self.config.flavor {
            Flavor::Overlay { .. } => format!("snapshots/{id}/fs"),
            Flavor::Native => dir_path(id),
        }
    }

    fn create_actions(&self, s: &Snapshot, parent: Option<u64>) -> Vec<Action> {
        if !self.has_dir(s) {
            return Vec::new();
        }
        let tmp = format!("snapshots/new-{}", s.id);
        let mut out = Vec::with_capacity(5);
        match self.config.flavor {
            Flavor::Overlay { .. } => {
                out.push(Action::Mkdir {
                    path: tmp.clone(),
                    mode: 0o700,
                });
                out.push(Action::Mkdir {
                    path: format!("{tmp}/fs"),
                    mode: 0o755,
                });
                if s.kind == Kind::Active {
                    out.push(Action::Mkdir {
                        path: format!("{tmp}/work"),
                        mode: 0o711,
                    });
                }
                if let Some(p) = parent {
                    out.push(Action::CopyOwner {
                        path: format!("{tmp}/fs"),
                        like: self.fs_path(p),
                    });
                }
            }
            Flavor::Native => {
                out.push(Action::Mkdir {
                    path: tmp.clone(),
                    mode: 0o755,
                });
                if let Some(p) = parent {
                    out.push(Action::CopyTree {
                        from: dir_path(p),
                        to: tmp.clone(),
                    });
                }
            }
        }
        out.push(Action::Rename {
            from: tmp,
            to: dir_path(s.id),
        });
        out
    }

    fn mount_of(&self, kind: Kind, id: u64, parents: &[u64]) -> Mount {
        let root = &self.config.root;
        let view = kind == Kind::View;
        match self.config.flavor {
            Flavor::Overlay {
                index_off,
                userxattr,
            } => mounts::overlay(
                view,
                id,
                parents,
                index_off,
                userxattr,
                |i| format!("{root}/snapshots/{i}/fs"),
                |i| format!("{root}/snapshots/{i}/work"),
            ),
            Flavor::Native => mounts::native(view, id, parents.first().copied(), |i| {
                format!("{root}/snapshots/{i}")
            }),
        }
    }
}

/// Labels as containerd stores them: a key with an empty value is not set.
fn without_empty(mut labels: Labels) -> Labels {
    labels.retain(|_, v| !v.is_empty());
    labels
}

fn dir_path(id: u64) -> String {
    format!("snapshots/{id}")
}

fn info(key: &str, s: &Snapshot) -> Info {
    Info {
        name: key.into(),
        parent: s.parent.clone(),
        kind: s.kind,
        created_at: s.created_at,
        updated_at: s.updated_at,
        labels: s.labels.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::mounts::MOUNT_DATA_LIMIT as MOUNT_LIMIT_FOR_TESTS;
    use crate::snapshot::plan_mounts;

    const ROOT: &str = "/var/lib/berth/io.containerd.snapshotter.v1.overlayfs";
    const NS: &str = "default";

    fn t(n: u64) -> Instant {
        Instant(n)
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn overlay() -> Tree {
        Tree::new(Config::overlayfs(ROOT)).unwrap()
    }

    #[test]
    fn rebase_gives_an_active_overlay_snapshot_a_committed_parent() {
        let mut tree = overlay();
        chain(&mut tree, 1);
        // layer 2 unpacked without a parent, rebased onto l1 before its commit
        tree.prepare(t(3), NS, "x2", None, Labels::new()).unwrap();
        let (info, _) = tree.rebase(t(4), NS, "x2", Some("l1")).unwrap();
        assert_eq!(info.parent.as_deref(), Some("l1"));
        let m = tree.mounts(NS, "x2").unwrap();
        assert_eq!(m[0].lowerdirs(), [format!("{ROOT}/snapshots/1/fs")]);
        tree.commit(t(5), NS, "l2", "x2", Labels::new(), Usage::default())
            .unwrap();
        assert_eq!(tree.stat(NS, "l2").unwrap().parent.as_deref(), Some("l1"));
        assert!(tree.remove(NS, "l1").is_err(), "l1 now has a child");

        // refused: committed, missing parent, active parent, native flavor; nothing changes
        assert!(matches!(
            tree.rebase(t(6), NS, "l2", None),
            Err(SnapshotError::CannotRebase { .. })
        ));
        tree.prepare(t(6), NS, "x3", None, Labels::new()).unwrap();
        tree.prepare(t(6), NS, "x4", None, Labels::new()).unwrap();
        assert!(matches!(
            tree.rebase(t(7), NS, "x3", Some("nope")),
            Err(SnapshotError::ParentNotFound { .. })
        ));
        assert!(matches!(
            tree.rebase(t(7), NS, "x3", Some("x4")),
            Err(SnapshotError::ParentNotCommitted { .. })
        ));
        assert_eq!(tree.stat(NS, "x3").unwrap().parent, None);
        let mut native = Tree::new(Config::native("/var/lib/berth/native")).unwrap();
        native.prepare(t(1), NS, "a", None, Labels::new()).unwrap();
        assert!(matches!(
            native.rebase(t(2), NS, "a", None),
            Err(SnapshotError::CannotRebase { .. })
        ));
    }

    /// A committed chain `l1 <- l2 <- … <- ln` (ids 1..=n).
    fn chain(tree: &mut Tree, n: usize) {
        for i in 1..=n {
            let parent = (i > 1).then(|| format!("l{}", i - 1));
            let key = format!("x{i}");
            tree.prepare(t(1), NS, &key, parent.as_deref(), Labels::new())
                .unwrap();
            tree.commit(
                t(2),
                NS,
                &format!("l{i}"),
                &key,
                Labels::new(),
                Usage::default(),
            )
            .unwrap();
        }
    }

    fn fs(id: u64) -> String {
        format!("{ROOT}/snapshots/{id}/fs")
    }

    #[test]
    fn prepare_commit_view_like_containerd() {
        let mut tree = overlay();
        let p = tree
            .prepare(t(10), NS, "a", None, l(&[("k", "v")]))
            .unwrap();
        assert_eq!(p.id, 1);
        assert_eq!(p.info.kind, Kind::Active);
        assert_eq!(p.info.created_at, t(10));
        assert_eq!(
            p.actions,
            vec![
                Action::Mkdir {
                    path: "snapshots/new-1".into(),
                    mode: 0o700
                },
                Action::Mkdir {
                    path: "snapshots/new-1/fs".into(),
                    mode: 0o755
                },
                Action::Mkdir {
                    path: "snapshots/new-1/work".into(),
                    mode: 0o711
                },
                Action::Rename {
                    from: "snapshots/new-1".into(),
                    to: "snapshots/1".into()
                },
            ]
        );
        assert_eq!(p.mounts[0].source, fs(1));
        assert_eq!(p.mounts[0].options, ["rw", "rbind"]);
        let ev = p.event.unwrap();
        assert_eq!(ev.topic(), "/snapshot/prepare");
        assert_eq!(ev.snapshotter, "overlayfs");
        assert_eq!(
            ev.payload,
            EventPayload::Prepare {
                key: "a".into(),
                parent: None
            }
        );

        let usage = Usage {
            size: 4096,
            inodes: 3,
        };
        let c = tree
            .commit(t(20), NS, "base", "a", l(&[("c", "1")]), usage)
            .unwrap();
        assert_eq!(c.event.topic(), "/snapshot/commit");
        assert_eq!(
            c.event.payload,
            EventPayload::Commit {
                key: "a".into(),
                name: "base".into()
            }
        );
        // Same id, only the commit's labels, both times = commit time.
        let s = tree.get(NS, "base").unwrap();
        assert_eq!((s.id, s.kind), (1, Kind::Committed));
        assert_eq!(s.labels, l(&[("c", "1")]));
        assert_eq!((s.created_at, s.updated_at), (t(20), t(20)));
        assert!(tree.get(NS, "a").is_none());
        assert_eq!(
            tree.usage(NS, "base").unwrap(),
            UsageAnswer::Recorded(usage)
        );

        // A view of one parent: no event, no work dir, bind of the parent ro; owner copied.
        let v = tree
            .view(t(30), NS, "v", Some("base"), Labels::new())
            .unwrap();
        assert_eq!(v.event, None);
        assert_eq!(v.id, 2);
        assert_eq!(
            v.actions,
            vec![
                Action::Mkdir {
                    path: "snapshots/new-2".into(),
                    mode: 0o700
                },
                Action::Mkdir {
                    path: "snapshots/new-2/fs".into(),
                    mode: 0o755
                },
                Action::CopyOwner {
                    path: "snapshots/new-2/fs".into(),
                    like: "snapshots/1/fs".into()
                },
                Action::Rename {
                    from: "snapshots/new-2".into(),
                    to: "snapshots/2".into()
                },
            ]
        );
        assert_eq!(v.mounts[0].kind, "bind");
        assert_eq!(v.mounts[0].source, fs(1));
        assert_eq!(v.mounts[0].options, ["ro", "rbind"]);
        assert_eq!(
            tree.usage(NS, "v").unwrap(),
            UsageAnswer::Recorded(Usage::default())
        );

        // An active child: overlay, measured usage.
        let c = tree
            .prepare(t(40), NS, "c", Some("base"), Labels::new())
            .unwrap();
        assert_eq!(c.mounts[0].kind, "overlay");
        assert_eq!(c.mounts[0].lowerdirs(), vec![fs(1)]);
        assert_eq!(
            tree.usage(NS, "c").unwrap(),
            UsageAnswer::Measure {
                path: "snapshots/3/fs".into()
            }
        );
        assert_eq!(tree.fs_dir(NS, "c").as_deref(), Some("snapshots/3/fs"));
        // An empty-string parent is no parent.
        let e = tree
            .prepare(t(50), NS, "e", Some(""), Labels::new())
            .unwrap();
        assert_eq!(e.info.parent, None);
    }

    #[test]
    fn prepare_and_view_refusals() {
        let mut tree = overlay();
        tree.prepare(t(1), NS, "act", None, Labels::new()).unwrap();
        tree.view(t(1), NS, "vw", None, Labels::new()).unwrap();
        chain(&mut tree, 1);
        let next = tree.next_id();
        for kind in [Kind::Active, Kind::View] {
            let mut go = |key: &str, parent: Option<&str>, labels: Labels| {
                tree.create(t(2), NS, key, parent, labels, kind)
                    .map(|p| p.id)
            };
            assert_eq!(
                go("act", None, Labels::new()),
                Err(SnapshotError::AlreadyExists {
                    namespace: NS.into(),
                    key: "act".into()
                })
            );
            assert_eq!(
                go("new", Some("nope"), Labels::new()),
                Err(SnapshotError::ParentNotFound {
                    namespace: NS.into(),
                    key: "new".into(),
                    parent: "nope".into()
                })
            );
            assert_eq!(
                go("new", Some("act"), Labels::new()),
                Err(SnapshotError::ParentNotCommitted {
                    key: "new".into(),
                    parent: "act".into(),
                    kind: Kind::Active
                })
            );
            assert!(matches!(
                go("new", Some("vw"), Labels::new()),
                Err(SnapshotError::ParentNotCommitted {
                    kind: Kind::View,
                    ..
                })
            ));
            assert_eq!(go("", None, Labels::new()), Err(SnapshotError::EmptyKey));
            assert!(matches!(
                go("new", None, l(&[("k", &"v".repeat(5000))])),
                Err(SnapshotError::Labels {
                    source: LabelError::TooLong { .. },
                    ..
                })
            ));
            // The key check comes before the parent check, as containerd's.
            assert!(matches!(
                go("act", Some("nope"), Labels::new()),
                Err(SnapshotError::AlreadyExists { .. })
            ));
        }
        // Refusals allocate nothing.
        assert_eq!(tree.next_id(), next);
    }

    #[test]
    fn commit_refusals() {
        let mut tree = overlay();
        chain(&mut tree, 1);
        tree.prepare(t(1), NS, "a", Some("l1"), Labels::new())
            .unwrap();
        tree.view(t(1), NS, "v", Some("l1"), Labels::new()).unwrap();
        let commit = |tree: &mut Tree, name: &str, key: &str| {
            tree.commit(t(3), NS, name, key, Labels::new(), Usage::default())
                .map(|c| c.info.name)
        };
        // Name taken (checked first, even when the key is missing).
        assert!(matches!(
            commit(&mut tree, "l1", "missing"),
            Err(SnapshotError::AlreadyExists { .. })
        ));
        assert!(matches!(
            commit(&mut tree, "a", "a"),
            Err(SnapshotError::AlreadyExists { .. })
        ));
        assert_eq!(
            commit(&mut tree, "n", "missing"),
            Err(SnapshotError::NotFound {
                namespace: NS.into(),
                key: "missing".into()
            })
        );
        assert_eq!(
            commit(&mut tree, "n", "v"),
            Err(SnapshotError::NotActive {
                key: "v".into(),
                kind: Kind::View
            })
        );
        assert_eq!(
            commit(&mut tree, "n", "l1"),
            Err(SnapshotError::NotActive {
                key: "l1".into(),
                kind: Kind::Committed
            })
        );
        assert_eq!(commit(&mut tree, "", "a"), Err(SnapshotError::EmptyKey));
        assert_eq!(commit(&mut tree, "n", "a"), Ok("n".into()));
        assert_eq!(tree.get(NS, "n").unwrap().parent.as_deref(), Some("l1"));
    }

    #[test]
    fn remove_refuses_parents() {
        let mut tree = overlay();
        chain(&mut tree, 2);
        tree.view(t(1), NS, "v", Some("l2"), Labels::new()).unwrap();
        assert_eq!(
            tree.remove(NS, "l2").map(|r| r.snapshot.id),
            Err(SnapshotError::HasChildren {
                key: "l2".into(),
                children: vec!["v".into()]
            })
        );
        assert!(matches!(
            tree.remove(NS, "l1"),
            Err(SnapshotError::HasChildren { .. })
        ));
        assert_eq!(
            tree.remove(NS, "l2").unwrap_err().to_string(),
            "cannot remove snapshot \"l2\": it is the parent of 1 snapshot(s), e.g. \"v\""
        );
        assert!(matches!(
            tree.remove(NS, "zz"),
            Err(SnapshotError::NotFound { .. })
        ));
        let r = tree.remove(NS, "v").unwrap();
        assert_eq!(
            r.actions,
            vec![Action::RemoveAll {
                path: "snapshots/3".into()
            }]
        );
        assert_eq!(r.event.topic(), "/snapshot/remove");
        assert_eq!(r.event.payload, EventPayload::Remove { key: "v".into() });
        tree.remove(NS, "l2").unwrap();
        tree.remove(NS, "l1").unwrap();
        assert!(tree.is_empty(NS));
        assert_eq!(tree.namespaces().count(), 0);
        // Ids are never reused.
        assert_eq!(
            tree.prepare(t(1), NS, "a", None, Labels::new()).unwrap().id,
            4
        );
    }

    #[test]
    fn mounts_follow_the_committed_ancestry() {
        let mut tree = overlay();
        chain(&mut tree, 3);
        assert_eq!(
            tree.mounts(NS, "l3"),
            Err(SnapshotError::NotActiveOrView {
                key: "l3".into(),
                kind: Kind::Committed
            })
        );
        assert!(tree
            .mounts(NS, "l3")
            .unwrap_err()
            .to_string()
            .ends_with("not active or view"));
        assert!(matches!(
            tree.mounts(NS, "zz"),
            Err(SnapshotError::NotFound { .. })
        ));
        tree.prepare(t(1), NS, "a", Some("l3"), Labels::new())
            .unwrap();
        tree.view(t(1), NS, "v", Some("l3"), Labels::new()).unwrap();
        let a = &tree.mounts(NS, "a").unwrap()[0];
        assert_eq!(a.lowerdirs(), vec![fs(3), fs(2), fs(1)]);
        assert_eq!(a.options[1], format!("workdir={ROOT}/snapshots/4/work"));
        assert_eq!(a.options[2], format!("upperdir={}", fs(4)));
        let v = &tree.mounts(NS, "v").unwrap()[0];
        assert_eq!(
            v.options,
            vec![
                "index=off".to_string(),
                format!("lowerdir={}:{}:{}", fs(3), fs(2), fs(1))
            ]
        );
        assert_eq!(tree.parent_ids(NS, "v"), vec![3, 2, 1]);
        assert_eq!(tree.parent_ids(NS, "l1"), Vec::<u64>::new());
    }

    #[test]
    fn a_200_layer_rootfs_mounts_with_a_plan() {
        let mut tree = overlay();
        chain(&mut tree, 200);
        let p = tree
            .prepare(t(1), NS, "c", Some("l200"), Labels::new())
            .unwrap();
        let m = &p.mounts[0];
        assert_eq!(m.lowerdirs().len(), 200);
        assert!(
            m.data().len() >= MOUNT_LIMIT_FOR_TESTS,
            "absolute: {}",
            m.data().len()
        );
        let plan = plan_mounts(&p.mounts, "/run/berth/c/rootfs").unwrap();
        assert_eq!(plan.chdir, Some(format!("{ROOT}/snapshots")));
        let data = plan.mounts[0].data();
        assert!(
            data.len() < MOUNT_LIMIT_FOR_TESTS,
            "relative: {}",
            data.len()
        );
        let rel: Vec<String> = (1..=200).rev().map(|i| format!("{i}/fs")).collect();
        assert_eq!(plan.mounts[0].lowerdirs(), rel);
    }

    #[test]
    fn update_uses_label_masks() {
        let mut tree = overlay();
        tree.prepare(t(1), NS, "a", None, l(&[("a", "1"), ("b", "2")]))
            .unwrap();
        let (i, _) = tree
            .update(
                t(5),
                NS,
                "a",
                &l(&[("b", "3"), ("c", "4")]),
                &["labels.b".into()],
            )
            .unwrap();
        assert_eq!(i.labels, l(&[("a", "1"), ("b", "3")]));
        assert_eq!((i.created_at, i.updated_at), (t(1), t(5)));
        let (i, _) = tree
            .update(t(6), NS, "a", &l(&[("b", "")]), &["labels.b".into()])
            .unwrap();
        assert_eq!(i.labels, l(&[("a", "1")]));
        let (i, _) = tree.update(t(7), NS, "a", &l(&[("z", "9")]), &[]).unwrap();
        assert_eq!(i.labels, l(&[("z", "9")]));
        assert_eq!(tree.stat(NS, "a").unwrap(), i);
        assert!(matches!(
            tree.update(t(8), NS, "a", &Labels::new(), &["parent".into()]),
            Err(SnapshotError::Labels {
                source: LabelError::BadMaskPath { .. },
                ..
            })
        ));
        assert!(matches!(
            tree.update(t(8), NS, "b", &Labels::new(), &[]),
            Err(SnapshotError::NotFound { .. })
        ));
        assert_eq!(tree.stat(NS, "a").unwrap().updated_at, t(7));
        // Empty values are never stored, whichever way they come.
        let (i, _) = tree
            .update(t(9), NS, "a", &l(&[("z", "")]), &["labels".into()])
            .unwrap();
        assert!(i.labels.is_empty());
        let p = tree
            .prepare(t(9), NS, "e", None, l(&[("k", ""), ("j", "1")]))
            .unwrap();
        assert_eq!(p.info.labels, l(&[("j", "1")]));
        let c = tree
            .commit(t(9), NS, "f", "e", l(&[("k", "")]), Usage::default())
            .unwrap();
        assert!(c.info.labels.is_empty());
    }

    #[test]
    fn list_filters_like_containerd() {
        let mut tree = overlay();
        chain(&mut tree, 2);
        tree.prepare(t(1), NS, "a", Some("l2"), l(&[("x.y", "1")]))
            .unwrap();
        tree.view(t(1), NS, "v", Some("l1"), l(&[("role", "ro")]))
            .unwrap();
        let names = |f: &[&str]| -> Vec<String> {
            tree.list(NS, &Filter::parse(f).unwrap())
                .into_iter()
                .map(|i| i.name)
                .collect()
        };
        assert_eq!(names(&[]), ["a", "l1", "l2", "v"]);
        assert_eq!(names(&["kind==committed"]), ["l1", "l2"]);
        assert_eq!(names(&["kind==view", "kind==active"]), ["a", "v"]);
        assert_eq!(names(&["parent==l1"]), ["l2", "v"]);
        assert_eq!(names(&["parent==\"\""]), ["l1"]);
        assert_eq!(names(&["parent"]), ["a", "l1", "l2", "v"]);
        assert_eq!(names(&["name==a"]), ["a"]);
        assert_eq!(names(&["labels.role==ro"]), ["v"]);
        assert_eq!(names(&["labels.x.y==1"]), ["a"]);
        assert_eq!(names(&["labels.role"]), ["v"]);
        assert_eq!(names(&["labels"]), Vec::<String>::new());
        assert!(tree.list("other", &Filter::default()).is_empty());
    }

    #[test]
    fn namespaces_are_separate_and_ids_global() {
        let mut tree = overlay();
        let a = tree.prepare(t(1), "ns1", "k", None, Labels::new()).unwrap();
        let b = tree.prepare(t(1), "ns2", "k", None, Labels::new()).unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.event.unwrap().namespace, "ns1");
        tree.commit(t(2), "ns1", "base", "k", Labels::new(), Usage::default())
            .unwrap();
        assert!(matches!(
            tree.prepare(t(3), "ns2", "x", Some("base"), Labels::new()),
            Err(SnapshotError::ParentNotFound { .. })
        ));
        assert!(tree.stat("ns2", "base").is_err());
        assert_eq!(tree.namespaces().collect::<Vec<_>>(), ["ns1", "ns2"]);
        assert!(!tree.is_empty("ns2"));
        assert!(tree.is_empty("ns3"));
    }

    #[test]
    fn undo_puts_the_tree_back() {
        let mut tree = overlay();
        chain(&mut tree, 1);
        let before = serde_json::to_string(&tree).unwrap();

        let p = tree
            .prepare(t(1), NS, "a", Some("l1"), Labels::new())
            .unwrap();
        tree.undo(p.undo).unwrap();
        assert!(tree.get(NS, "a").is_none());
        // The id stays used.
        assert_eq!(tree.next_id(), 3);

        let p = tree
            .prepare(t(1), NS, "a", Some("l1"), Labels::new())
            .unwrap();
        let c = tree
            .commit(t(2), NS, "b", "a", Labels::new(), Usage::default())
            .unwrap();
        tree.undo(c.undo).unwrap();
        assert_eq!(tree.get(NS, "a").unwrap().kind, Kind::Active);
        assert!(tree.get(NS, "b").is_none());

        let r = tree.remove(NS, "a").unwrap();
        tree.undo(r.undo).unwrap();
        assert_eq!(tree.get(NS, "a").unwrap().id, p.id);

        let (_, u) = tree.update(t(9), NS, "l1", &l(&[("k", "v")]), &[]).unwrap();
        tree.undo(u).unwrap();
        assert!(tree.get(NS, "l1").unwrap().labels.is_empty());

        // Stale undos are refused and change nothing.
        let v = tree.view(t(1), NS, "v", None, Labels::new()).unwrap();
        let w = tree.view(t(1), NS, "w", None, Labels::new()).unwrap();
        assert!(matches!(
            tree.undo(v.undo),
            Err(SnapshotError::StaleUndo { .. })
        ));
        assert!(tree.get(NS, "v").is_some());
        tree.undo(w.undo).unwrap();
        tree.remove(NS, "v").unwrap();
        tree.remove(NS, "a").unwrap();
        let mut after: serde_json::Value = serde_json::to_value(&tree).unwrap();
        let mut want: serde_json::Value = serde_json::from_str(&before).unwrap();
        after["next_id"] = 0.into();
        want["next_id"] = 0.into();
        assert_eq!(after, want);
    }

    #[test]
    fn serde_round_trips_and_refuses_corrupt_trees() {
        let mut tree = overlay();
        chain(&mut tree, 3);
        tree.prepare(t(1), "ns2", "a", None, l(&[("k", "v")]))
            .unwrap();
        tree.view(t(1), NS, "v", Some("l3"), Labels::new()).unwrap();
        let json = serde_json::to_string(&tree).unwrap();
        let back: Tree = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        assert_eq!(back.mounts(NS, "v"), tree.mounts(NS, "v"));

        let corrupt = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
            edit(&mut v);
            serde_json::from_value::<Tree>(v).unwrap_err().to_string()
        };
        let s = corrupt(&|v| v["namespaces"][NS]["l1"]["parent"] = "l3".into());
        assert!(s.contains("cycle"), "{s}");
        let s = corrupt(&|v| v["namespaces"][NS]["l1"]["parent"] = "gone".into());
        assert!(s.contains("parent missing"), "{s}");
        let s = corrupt(&|v| v["namespaces"][NS]["v"]["parent"] = "a".into());
        assert!(s.contains("parent missing"), "{s}");
        let s = corrupt(&|v| v["namespaces"][NS]["l2"]["kind"] = "active".into());
        assert!(s.contains("not committed"), "{s}");
        let s = corrupt(&|v| v["namespaces"][NS]["l2"]["id"] = 1.into());
        assert!(s.contains("twice"), "{s}");
        let s = corrupt(&|v| v["next_id"] = 3.into());
        assert!(s.contains("next id"), "{s}");
        let s = corrupt(&|v| v["config"]["root"] = "relative".into());
        assert!(s.contains("root"), "{s}");
        let s = corrupt(&|v| v["namespaces"][NS]["l1"]["kind"] = "bogus".into());
        assert!(s.contains("bogus"), "{s}");
    }

    #[test]
    fn native_copies_parents() {
        let mut tree = Tree::new(Config::native("/n")).unwrap();
        let base = tree.prepare(t(1), NS, "a", None, Labels::new()).unwrap();
        assert_eq!(
            base.actions,
            vec![
                Action::Mkdir {
                    path: "snapshots/new-1".into(),
                    mode: 0o755
                },
                Action::Rename {
                    from: "snapshots/new-1".into(),
                    to: "snapshots/1".into()
                },
            ]
        );
        assert_eq!(base.mounts[0].source, "/n/snapshots/1");
        tree.commit(t(2), NS, "b", "a", Labels::new(), Usage::default())
            .unwrap();
        let c = tree
            .prepare(t(3), NS, "c", Some("b"), Labels::new())
            .unwrap();
        assert_eq!(
            c.actions,
            vec![
                Action::Mkdir {
                    path: "snapshots/new-2".into(),
                    mode: 0o755
                },
                Action::CopyTree {
                    from: "snapshots/1".into(),
                    to: "snapshots/new-2".into()
                },
                Action::Rename {
                    from: "snapshots/new-2".into(),
                    to: "snapshots/2".into()
                },
            ]
        );
        assert_eq!(c.mounts[0].kind, "bind");
        assert_eq!(c.mounts[0].source, "/n/snapshots/2");
        assert_eq!(c.mounts[0].options, ["rw", "rbind"]);
        assert_eq!(c.event.unwrap().snapshotter, "native");
        assert_eq!(
            tree.usage(NS, "c").unwrap(),
            UsageAnswer::Measure {
                path: "snapshots/2".into()
            }
        );
        // A view of a parent has no directory: it binds the parent read-only.
        let v = tree.view(t(4), NS, "v", Some("b"), Labels::new()).unwrap();
        assert!(v.actions.is_empty());
        assert_eq!(v.mounts[0].source, "/n/snapshots/1");
        assert_eq!(v.mounts[0].options, ["ro", "rbind"]);
        assert_eq!(tree.fs_dir(NS, "v"), None);
        assert!(tree.remove(NS, "v").unwrap().actions.is_empty());
        assert_eq!(
            tree.remove(NS, "c").unwrap().actions,
            vec![Action::RemoveAll {
                path: "snapshots/2".into()
            }]
        );
        // A view without a parent gets its own empty directory.
        let e = tree.view(t(5), NS, "e", None, Labels::new()).unwrap();
        assert_eq!(e.actions.len(), 2);
        assert_eq!(e.mounts[0].source, "/n/snapshots/4");
        assert_eq!(e.mounts[0].options, ["ro", "rbind"]);
    }

    #[test]
    fn cleanup_removes_what_no_snapshot_owns() {
        let mut tree = overlay();
        chain(&mut tree, 2);
        tree.remove(NS, "l2").unwrap();
        let entries = ["1", "2", "new-3", "7", "..", "a/b", "1"];
        assert_eq!(
            tree.cleanup(&entries),
            vec![
                Action::RemoveAll {
                    path: "snapshots/2".into()
                },
                Action::RemoveAll {
                    path: "snapshots/7".into()
                },
                Action::RemoveAll {
                    path: "snapshots/new-3".into()
                },
            ]
        );
    }

    #[test]
    fn configs_are_checked() {
        for bad in [
            "", "/", "rel", "/a/", "/a//b", "/a/../b", "/a:b", "/a,b", "/a/./b",
        ] {
            assert_eq!(
                Tree::new(Config::overlayfs(bad)).map(|_| ()),
                Err(ConfigError::BadRoot { root: bad.into() }),
                "{bad}"
            );
        }
        let mut c = Config::native("/n");
        c.snapshotter.clear();
        assert_eq!(Tree::new(c).map(|_| ()), Err(ConfigError::EmptyName));
    }

    #[test]
    fn ids_run_out_with_an_error() {
        let tree = overlay();
        let mut v = serde_json::to_value(&tree).unwrap();
        v["next_id"] = u64::MAX.into();
        let mut tree: Tree = serde_json::from_value(v).unwrap();
        assert_eq!(
            tree.prepare(t(1), NS, "a", None, Labels::new())
                .map(|p| p.id),
            Err(SnapshotError::IdsExhausted)
        );
        assert!(tree.is_empty(NS));
    }
}
