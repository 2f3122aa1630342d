//! Snapshots: the snapshot tree of the overlayfs and native snapshotters, as a pure model.
//!
//! A [`Tree`] holds every snapshot of one snapshotter, per namespace: its key (or, once
//! committed, its name), the numeric id the tree allocates (the snapshot's directory is
//! `snapshots/<id>` under the snapshotter's root), its parent, [`Kind`], times, labels and
//! recorded [`Usage`]. The operations are containerd's, with containerd's rules:
//!
//! | operation | refused with |
//! |---|---|
//! | [`Tree::prepare`], [`Tree::view`] | `AlreadyExists` (key taken), `NotFound` (parent missing), `InvalidArgument` (parent not committed, empty key, bad labels) |
//! | [`Tree::commit`] | `AlreadyExists` (name taken), `NotFound` (key missing), `FailedPrecondition` (key not active) |
//! | [`Tree::remove`] | `NotFound`, `FailedPrecondition` (the snapshot has children) |
//! | [`Tree::mounts`] | `NotFound`, `FailedPrecondition` ("not active or view": committed) |
//! | [`Tree::stat`], [`Tree::usage`] | `NotFound` |
//! | [`Tree::update`] | `NotFound`, `InvalidArgument` (a mask path other than `labels`, `labels.<key>`) |
//!
//! ([`SnapshotError`] documents the gRPC code of each variant.)
//!
//! Nothing here touches a disk. A mutation returns what the driver must do — directory
//! [`Action`]s, the [`Event`] to publish, the [`Mount`]s to hand out — and an [`Undo`] that puts
//! the tree back if the driver cannot do it. Usage is measured by the driver and recorded
//! here. Mounts are exactly containerd's (see [`mounts`]); [`plan_mounts`] fits a deep chain's
//! overlay options into the kernel's one-page limit.
//!
//! ## Driving it
//!
//! 1. At start-up, load the persisted tree (serde; loading checks every invariant) and call
//!    [`Tree::cleanup`] with the entries of `<root>/snapshots`: it removes directories of
//!    half-made or removed snapshots. Ids are never reused, so no new snapshot collides with one.
//! 2. For prepare/view: call the operation, perform its actions in order; if one fails, give the
//!    [`Undo`] back to [`Tree::undo`] and report the failure; otherwise persist, then publish.
//! 3. For commit and update: call, persist (on a failed persist, undo), publish.
//! 4. For remove: call, persist, publish, then perform the actions (a removal that fails leaves
//!    a directory the next cleanup removes, as containerd does).
//!
//! ```
//! use berth_core::metadata::{Filter, Labels};
//! use berth_core::snapshot::{plan_mounts, Action, Config, Kind, Tree, Usage};
//! use berth_core::Instant;
//!
//! let root = "/var/lib/berth/io.containerd.snapshotter.v1.overlayfs";
//! let mut tree = Tree::new(Config::overlayfs(root)).unwrap();
//! let now = Instant(1);
//!
//! // Unpack a base layer: prepare, (apply it into the upper directory), commit.
//! let p = tree.prepare(now, "default", "extract-1", None, Labels::new()).unwrap();
//! assert_eq!(p.mounts[0].kind, "bind");
//! assert_eq!(p.mounts[0].source, format!("{root}/snapshots/1/fs"));
//! assert_eq!(p.actions[0], Action::Mkdir { path: "snapshots/new-1".into(), mode: 0o700 });
//! tree.commit(now, "default", "layer-1", "extract-1", Labels::new(), Usage::default()).unwrap();
//!
//! // A container's rootfs on top of it: an overlay.
//! let c = tree.prepare(now, "default", "c1", Some("layer-1"), Labels::new()).unwrap();
//! assert_eq!(c.mounts[0].options, [
//!     "index=off".to_string(),
//!     format!("workdir={root}/snapshots/2/work"),
//!     format!("upperdir={root}/snapshots/2/fs"),
//!     format!("lowerdir={root}/snapshots/1/fs"),
//! ]);
//! let plan = plan_mounts(&c.mounts, "/run/berth/c1/rootfs").unwrap();
//! assert_eq!(plan.chdir, None);
//!
//! let active = Filter::parse(&["kind==active"]).unwrap();
//! assert_eq!(tree.list("default", &active)[0].name, "c1");
//! assert_eq!(tree.stat("default", "layer-1").unwrap().kind, Kind::Committed);
//! assert!(tree.remove("default", "layer-1").is_err()); // it has a child
//! ```

pub mod mounts;
mod tree;

pub use mounts::{plan_mounts, Mount, MountPlan, MountPlanError};
pub use tree::{
    Committed, Config, ConfigError, Flavor, LoadError, Prepared, Removed, Snapshot, SnapshotError,
    Tree, Undo, UsageAnswer,
};

use crate::metadata::Labels;
use crate::Instant;
use serde::{Deserialize, Serialize};

/// Topic of the event [`Tree::prepare`] returns.
pub const TOPIC_PREPARE: &str = "/snapshot/prepare";
/// Topic of the event [`Tree::commit`] returns.
pub const TOPIC_COMMIT: &str = "/snapshot/commit";
/// Topic of the event [`Tree::remove`] returns.
pub const TOPIC_REMOVE: &str = "/snapshot/remove";

/// The kind of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A read-only view of a committed snapshot; never committed itself.
    View,
    /// A writable snapshot, to be committed or removed.
    Active,
    /// Immutable; may be the parent of others.
    Committed,
}

impl Kind {
    /// The name filters use: `view`, `active`, `committed`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }

    /// The value of `containerd.snapshots.v1.Kind` on the wire.
    #[must_use]
    pub const fn wire(self) -> i32 {
        match self {
            Kind::View => 1,
            Kind::Active => 2,
            Kind::Committed => 3,
        }
    }

    /// The kind of a wire value (`None` for `UNKNOWN` and anything else).
    #[must_use]
    pub const fn from_wire(value: i32) -> Option<Self> {
        match value {
            1 => Some(Kind::View),
            2 => Some(Kind::Active),
            3 => Some(Kind::Committed),
            _ => None,
        }
    }
}

impl core::fmt::Display for Kind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the Snapshots API reports about a snapshot (`containerd.snapshots.v1.Info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Its key (active or view) or name (committed).
    pub name: String,
    /// Its parent's name, if any (the wire's empty string).
    pub parent: Option<String>,
    /// Its kind.
    pub kind: Kind,
    /// When it was created (for a committed snapshot: when it was committed).
    pub created_at: Instant,
    /// When it last changed.
    pub updated_at: Instant,
    /// Its labels.
    pub labels: Labels,
}

/// Disk usage of a snapshot, as the driver measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes.
    pub size: u64,
    /// Inodes.
    pub inodes: u64,
}

/// Something the driver must do on disk for a snapshot operation, in order. Paths are relative
/// to the snapshotter's root directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Action {
    /// Create one directory (its parent exists) with these permission bits.
    Mkdir {
        /// The directory.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// Give `path` the owner and group of `like` (a new upper directory takes its parent's, as
    /// containerd's overlayfs snapshotter does, so unprivileged images stay writable).
    CopyOwner {
        /// The directory to change.
        path: String,
        /// The directory whose owner to copy.
        like: String,
    },
    /// Copy the whole tree at `from` into the existing, empty directory `to`: contents, modes,
    /// owners, times, xattrs, hard links, symlinks and devices, and `from`'s own attributes
    /// (the native snapshotter's copy of a parent).
    CopyTree {
        /// The source directory.
        from: String,
        /// The destination directory.
        to: String,
    },
    /// Rename `from` to `to`, which does not exist.
    Rename {
        /// The old path.
        from: String,
        /// The new path.
        to: String,
    },
    /// Remove a directory tree; a missing path is success.
    RemoveAll {
        /// The directory.
        path: String,
    },
}

/// An event to publish after a snapshot operation succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The namespace of the snapshot (the envelope's).
    pub namespace: String,
    /// The snapshotter's name (containerd 1.7+ events carry it; 1.6 has no such field).
    pub snapshotter: String,
    /// What happened.
    pub payload: EventPayload,
}

impl Event {
    /// The topic to publish on.
    #[must_use]
    pub const fn topic(&self) -> &'static str {
        match self.payload {
            EventPayload::Prepare { .. } => TOPIC_PREPARE,
            EventPayload::Commit { .. } => TOPIC_COMMIT,
            EventPayload::Remove { .. } => TOPIC_REMOVE,
        }
    }
}

/// The payload of an [`Event`] (`containerd.events.Snapshot*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventPayload {
    /// `SnapshotPrepare{key, parent}`.
    Prepare {
        /// The new snapshot's key.
        key: String,
        /// Its parent, if any.
        parent: Option<String>,
    },
    /// `SnapshotCommit{key, name}`.
    Commit {
        /// The active key that was committed.
        key: String,
        /// The committed name.
        name: String,
    },
    /// `SnapshotRemove{key}`.
    Remove {
        /// The removed snapshot's key or name.
        key: String,
    },
}
