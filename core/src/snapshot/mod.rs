//! Snapshots: the snapshot tree of the overlayfs and native snapshotters, as a pure model.
