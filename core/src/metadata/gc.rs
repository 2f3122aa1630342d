//! Garbage collection: containerd's mark-and-sweep over the metadata graph, as a pure function.
//!
//! The driver hands [`collect`] a [`Graph`] — per namespace, the images, containers, content
//! records, snapshots, leases and ingests with their labels — and the time. It gets back a
//! [`Sweep`]: per namespace, the records nothing reaches, and the blobs to unlink from the shared
//! content store because no namespace keeps a record of them any more.
//!
//! Roots and edges are containerd 1.6's (`metadata/gc.go`):
//!
//! * **Roots**, per namespace: every image (its target digest, and its labels' references);
//!   every container (its `snapshotter`/`snapshot_key`, and its labels' references); content and
//!   snapshots labelled [`LABEL_GC_ROOT`] (any value); every lease that has not expired, with
//!   all its resources; ingests whose expiry is set and has not passed.
//! * **Edges**: the labels [`LABEL_GC_REF_CONTENT`] and `…content.<x>` / `…content/<x>` name a
//!   content digest; `containerd.io/gc.ref.snapshot.<snapshotter>[/<x>]` names a snapshot key of
//!   that snapshotter; a snapshot points to its parent; an ingest to its expected digest.
//!   References stay within a namespace.
//! * **Flat leases** (labelled [`LABEL_GC_FLAT`]) protect their resources without following
//!   their references: a leased snapshot keeps its parent chain, not what its labels name.
//! * A lease is expired when `now` is past its expiry (an unparsable expiry never expires, as in
//!   containerd). Expired leases are swept too.
//!
//! Snapshots to delete are listed children first, so a tree's `remove` accepts each in turn.
//!
//! ```
//! use berth_core::metadata::gc::{collect, Graph, Image, Namespace};
//! use berth_core::metadata::Labels;
//! use berth_core::{Digest, Instant};
//!
//! let manifest = Digest::sha256(b"manifest");
//! let layer = Digest::sha256(b"layer");
//! let stray = Digest::sha256(b"stray");
//! let mut ns = Namespace::default();
//! ns.images.insert("docker.io/library/x:1".into(), Image { target: manifest, labels: Labels::new() });
//! let refs = Labels::from([("containerd.io/gc.ref.content.l.0".into(), layer.to_string())]);
//! ns.content.insert(manifest, refs);
//! ns.content.insert(layer, Labels::new());
//! ns.content.insert(stray, Labels::new());
//! let graph = Graph { namespaces: [("default".into(), ns)].into(), ..Graph::default() };
//!
//! let sweep = collect(&graph, Instant(0));
//! assert_eq!(sweep.namespaces["default"].content, [stray]);
//! assert_eq!(sweep.unlink, [stray]);
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::Labels;
use crate::{Digest, Instant};

/// Label that makes a content blob or a snapshot a root (any value).
pub const LABEL_GC_ROOT: &str = "containerd.io/gc.root";
/// Label (and prefix, followed by `.` or `/`) naming a content digest to keep.
pub const LABEL_GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";
/// Prefix of labels naming a snapshot to keep: `…snapshot.<snapshotter>[/<anything>]=<key>`.
pub const LABEL_GC_REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot.";
/// Lease label: protect the leased resources without following their references.
pub const LABEL_GC_FLAT: &str = "containerd.io/gc.flat";

/// A snapshot of the whole metadata store, as garbage collection sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    /// Every namespace's objects.
    pub namespaces: BTreeMap<String, Namespace>,
    /// Blobs in the shared content store, if the driver listed them: those no namespace keeps a
    /// record of are unlinked too (blobs left by a crash). Every recorded digest is considered
    /// whether listed or not.
    pub blobs: BTreeSet<Digest>,
}

/// One namespace's objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Images, by name.
    pub images: BTreeMap<String, Image>,
    /// Containers, by id.
    pub containers: BTreeMap<String, Container>,
    /// The namespace's content records: digest → labels.
    pub content: BTreeMap<Digest, Labels>,
    /// Snapshots: snapshotter → key → snapshot.
    pub snapshots: BTreeMap<String, BTreeMap<String, Snapshot>>,
    /// Leases, by id.
    pub leases: BTreeMap<String, Lease>,
    /// Content ingests, by ref.
    pub ingests: BTreeMap<String, Ingest>,
}

/// An image: a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Its target's digest.
    pub target: Digest,
    /// Its labels.
    pub labels: Labels,
}

/// A container: a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Its rootfs snapshot, if it has a snapshotter.
    pub snapshot: Option<SnapshotRef>,
    /// Its labels.
    pub labels: Labels,
}

/// A snapshot as garbage collection sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Its parent's key in the same snapshotter.
    pub parent: Option<String>,
    /// Its labels.
    pub labels: Labels,
}

/// A lease: a root until it expires.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// When it expires (`containerd.io/gc.expire`), if ever.
    pub expires: Option<Instant>,
    /// `containerd.io/gc.flat`: keep the resources, not what they reference.
    pub flat: bool,
    /// What it holds.
    pub resources: Vec<Resource>,
}

impl Lease {
    /// A lease from its labels (`containerd.io/gc.expire`, `containerd.io/gc.flat`) and
    /// resources. An unparsable expiry is no expiry, as in containerd.
    #[must_use]
    pub fn from_labels(labels: &Labels, resources: Vec<Resource>) -> Self {
        Lease {
            expires: super::lease_expiry(labels),
            flat: labels.contains_key(LABEL_GC_FLAT),
            resources,
        }
    }
}

/// A resource a lease holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resource {
    /// Type `content`.
    Content(Digest),
    /// Type `snapshots/<snapshotter>`.
    Snapshot(SnapshotRef),
    /// Type `ingests`.
    Ingest(String),
}

impl Resource {
    /// A resource from the Leases API's `{id, type}`; `None` for a type GC ignores or a
    /// content id that is not a digest.
    #[must_use]
    pub fn from_wire(kind: &str, id: &str) -> Option<Self> {
        match kind {
            "content" => Digest::parse(id).ok().map(Resource::Content),
            "ingests" => Some(Resource::Ingest(id.into())),
            _ => kind.strip_prefix("snapshots/").map(|ss| {
                Resource::Snapshot(SnapshotRef {
                    snapshotter: ss.into(),
                    key: id.into(),
                })
            }),
        }
    }
}

/// A content ingest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingest {
    /// Its expiry: a root until then. Without one, only a lease keeps it.
    pub expires: Option<Instant>,
    /// The digest it is expected to produce (kept while the ingest is).
    pub expected: Option<Digest>,
}

/// A snapshot, named by snapshotter and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// The snapshotter (`overlayfs`, …).
    pub snapshotter: String,
    /// The key.
    pub key: String,
}

/// A reference a label makes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LabelRef {
    /// A content digest.
    Content(Digest),
    /// A snapshot.
    Snapshot(SnapshotRef),
}

/// The references `labels` make, in label order: `containerd.io/gc.ref.content[.x|/x]` to a
/// digest (values that are not digests name nothing), `containerd.io/gc.ref.snapshot.<s>[/x]`
/// to a snapshot key.
pub fn label_refs(labels: &Labels) -> impl Iterator<Item = LabelRef> + '_ {
    labels.iter().filter_map(|(k, v)| {
        if let Some(rest) = k.strip_prefix(LABEL_GC_REF_CONTENT) {
            if rest.is_empty() || rest.starts_with(['.', '/']) {
                return Digest::parse(v).ok().map(LabelRef::Content);
            }
            return None;
        }
        let rest = k.strip_prefix(LABEL_GC_REF_SNAPSHOT)?;
        let snapshotter = rest.split_once('/').map_or(rest, |(s, _)| s);
        Some(LabelRef::Snapshot(SnapshotRef {
            snapshotter: snapshotter.into(),
            key: v.clone(),
        }))
    })
}

/// What one namespace keeps: the marked objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marked {
    /// Content digests reached (recorded or not).
    pub content: BTreeSet<Digest>,
    /// Snapshots reached (existing or not).
    pub snapshots: BTreeSet<SnapshotRef>,
    /// Ingests reached (existing or not).
    pub ingests: BTreeSet<String>,
    /// Leases that have not expired.
    pub leases: BTreeSet<String>,
}

/// What one namespace loses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceSweep {
    /// Content records to delete, by digest.
    pub content: Vec<Digest>,
    /// Snapshots to remove, children before their parents.
    pub snapshots: Vec<SnapshotRef>,
    /// Ingests to delete, by ref.
    pub ingests: Vec<String>,
    /// Expired leases to delete.
    pub leases: Vec<String>,
}

impl NamespaceSweep {
    /// True if nothing is to be deleted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.content.is_empty()
            && self.snapshots.is_empty()
            && self.ingests.is_empty()
            && self.leases.is_empty()
    }
}

/// The outcome of a collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    /// Per namespace, what to delete (namespaces with nothing to delete are left out).
    pub namespaces: BTreeMap<String, NamespaceSweep>,
    /// Blobs to unlink: no namespace keeps a record of them after the sweep. Sorted.
    pub unlink: Vec<Digest>,
}

/// A node of the mark phase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Content(Digest),
    Snapshot(SnapshotRef),
    Ingest(String),
}

/// Marks what a namespace keeps at `now`.
#[must_use]
pub fn mark(ns: &Namespace, now: Instant) -> Marked {
    // (node, flat): a flat node is kept but its references are not followed (a flat snapshot
    // still keeps its parent, flat too). A node reached both ways is followed.
    let mut queue: VecDeque<(Node, bool)> = VecDeque::new();
    let mut leases = BTreeSet::new();
    for (id, lease) in &ns.leases {
        if lease.expires.is_some_and(|e| now > e) {
            continue;
        }
        leases.insert(id.clone());
        for r in &lease.resources {
            queue.push_back(match r {
                Resource::Content(d) => (Node::Content(*d), lease.flat),
                Resource::Snapshot(s) => (Node::Snapshot(s.clone()), lease.flat),
                // containerd follows a leased ingest's expected digest even in a flat lease.
                Resource::Ingest(i) => (Node::Ingest(i.clone()), false),
            });
        }
    }
    let push_labels = |queue: &mut VecDeque<(Node, bool)>, labels: &Labels| {
        queue.extend(label_refs(labels).map(|r| match r {
            LabelRef::Content(d) => (Node::Content(d), false),
            LabelRef::Snapshot(s) => (Node::Snapshot(s), false),
        }));
    };
    for image in ns.images.values() {
        queue.push_back((Node::Content(image.target), false));
        push_labels(&mut queue, &image.labels);
    }
    for c in ns.containers.values() {
        if let Some(s) = &c.snapshot {
            queue.push_back((Node::Snapshot(s.clone()), false));
        }
        push_labels(&mut queue, &c.labels);
    }
    for (d, labels) in &ns.content {
        if labels.contains_key(LABEL_GC_ROOT) {
            queue.push_back((Node::Content(*d), false));
        }
    }
    for (ss, snaps) in &ns.snapshots {
        for (key, s) in snaps {
            if s.labels.contains_key(LABEL_GC_ROOT) {
                queue.push_back((
                    Node::Snapshot(SnapshotRef {
                        snapshotter: ss.clone(),
                        key: key.clone(),
                    }),
                    false,
                ));
            }
        }
    }
    for (r, ingest) in &ns.ingests {
        if ingest.expires.is_some_and(|e| now <= e) {
            queue.push_back((Node::Ingest(r.clone()), false));
        }
    }

    let mut full: BTreeSet<Node> = BTreeSet::new();
    let mut flat: BTreeSet<Node> = BTreeSet::new();
    while let Some((node, is_flat)) = queue.pop_front() {
        if full.contains(&node) || is_flat && flat.contains(&node) {
            continue;
        }
        match &node {
            Node::Content(d) => {
                if !is_flat {
                    if let Some(labels) = ns.content.get(d) {
                        push_labels(&mut queue, labels);
                    }
                }
            }
            Node::Snapshot(r) => {
                if let Some(s) = ns.snapshots.get(&r.snapshotter).and_then(|m| m.get(&r.key)) {
                    if let Some(p) = &s.parent {
                        let parent = SnapshotRef {
                            snapshotter: r.snapshotter.clone(),
                            key: p.clone(),
                        };
                        queue.push_back((Node::Snapshot(parent), is_flat));
                    }
                    if !is_flat {
                        push_labels(&mut queue, &s.labels);
                    }
                }
            }
            Node::Ingest(i) => {
                if let Some(d) = ns.ingests.get(i).and_then(|g| g.expected) {
                    queue.push_back((Node::Content(d), false));
                }
            }
        }
        if is_flat {
            flat.insert(node);
        } else {
            flat.remove(&node);
            full.insert(node);
        }
    }

    let mut marked = Marked {
        leases,
        ..Marked::default()
    };
    for node in full.into_iter().chain(flat) {
        match node {
            Node::Content(d) => {
                marked.content.insert(d);
            }
            Node::Snapshot(s) => {
                marked.snapshots.insert(s);
            }
            Node::Ingest(i) => {
                marked.ingests.insert(i);
            }
        }
    }
    marked
}

/// Collects garbage: marks each namespace at `now` and sweeps what is not marked.
#[must_use]
pub fn collect(graph: &Graph, now: Instant) -> Sweep {
    let mut sweep = Sweep::default();
    let mut kept: BTreeSet<Digest> = BTreeSet::new();
    let mut candidates: BTreeSet<Digest> = graph.blobs.clone();
    for (name, ns) in &graph.namespaces {
        let m = mark(ns, now);
        let mut out = NamespaceSweep::default();
        for d in ns.content.keys() {
            candidates.insert(*d);
            if m.content.contains(d) {
                kept.insert(*d);
            } else {
                out.content.push(*d);
            }
        }
        for (ss, snaps) in &ns.snapshots {
            out.snapshots.extend(children_first(ss, snaps, |key| {
                !m.snapshots.contains(&SnapshotRef {
                    snapshotter: ss.clone(),
                    key: key.into(),
                })
            }));
        }
        out.ingests = ns
            .ingests
            .keys()
            .filter(|i| !m.ingests.contains(*i))
            .cloned()
            .collect();
        out.leases = ns
            .leases
            .keys()
            .filter(|l| !m.leases.contains(*l))
            .cloned()
            .collect();
        if !out.is_empty() {
            sweep.namespaces.insert(name.clone(), out);
        }
    }
    sweep.unlink = candidates.difference(&kept).copied().collect();
    sweep
}

/// The snapshots of one snapshotter that `doomed` selects, each before its parent (Kahn's
/// algorithm over child → parent edges; members of a parent cycle, which a valid tree cannot
/// have, come last in key order).
fn children_first(
    snapshotter: &str,
    snaps: &BTreeMap<String, Snapshot>,
    doomed: impl Fn(&str) -> bool,
) -> Vec<SnapshotRef> {
    let set: BTreeSet<&str> = snaps
        .keys()
        .map(String::as_str)
        .filter(|k| doomed(k))
        .collect();
    // How many doomed children each doomed snapshot still has.
    let mut pending: BTreeMap<&str, usize> = set.iter().map(|k| (*k, 0)).collect();
    for k in &set {
        if let Some(p) = snaps[*k].parent.as_deref() {
            if let Some(n) = pending.get_mut(p) {
                *n += 1;
            }
        }
    }
    let mut ready: VecDeque<&str> = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut order: Vec<&str> = Vec::with_capacity(set.len());
    let mut done: BTreeSet<&str> = BTreeSet::new();
    while let Some(k) = ready.pop_front() {
        if !done.insert(k) {
            continue;
        }
        order.push(k);
        if let Some(p) = snaps[k].parent.as_deref() {
            if let Some(n) = pending.get_mut(p) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    ready.push_back(p);
                }
            }
        }
    }
    order.extend(set.iter().filter(|k| !done.contains(*k)));
    order
        .into_iter()
        .map(|k| SnapshotRef {
            snapshotter: snapshotter.into(),
            key: k.into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Config, Tree, Usage};

    fn d(s: &str) -> Digest {
        Digest::sha256(s.as_bytes())
    }

    fn l(pairs: &[(&str, String)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn sref(ss: &str, key: &str) -> SnapshotRef {
        SnapshotRef {
            snapshotter: ss.into(),
            key: key.into(),
        }
    }

    fn snap(parent: Option<&str>, labels: Labels) -> Snapshot {
        Snapshot {
            parent: parent.map(Into::into),
            labels,
        }
    }

    fn graph(ns: Namespace) -> Graph {
        Graph {
            namespaces: [("default".to_string(), ns)].into(),
            blobs: BTreeSet::new(),
        }
    }

    fn swept(g: &Graph, now: u64) -> NamespaceSweep {
        collect(g, Instant(now))
            .namespaces
            .get("default")
            .cloned()
            .unwrap_or_default()
    }

    /// An image as a pull leaves it: index → manifest → config + layers, config → snapshot.
    fn pulled() -> Namespace {
        let mut ns = Namespace::default();
        ns.images.insert(
            "img".into(),
            Image {
                target: d("index"),
                labels: Labels::new(),
            },
        );
        ns.content.insert(
            d("index"),
            l(&[(
                "containerd.io/gc.ref.content.m.0",
                d("manifest").to_string(),
            )]),
        );
        ns.content.insert(
            d("manifest"),
            l(&[
                (
                    "containerd.io/gc.ref.content.config",
                    d("config").to_string(),
                ),
                ("containerd.io/gc.ref.content.l.0", d("layer0").to_string()),
                ("containerd.io/gc.ref.content.l.1", d("layer1").to_string()),
            ]),
        );
        ns.content.insert(
            d("config"),
            l(&[("containerd.io/gc.ref.snapshot.overlayfs", "chain1".into())]),
        );
        ns.content.insert(d("layer0"), Labels::new());
        ns.content.insert(d("layer1"), Labels::new());
        let ov = ns.snapshots.entry("overlayfs".into()).or_default();
        ov.insert("chain0".into(), snap(None, Labels::new()));
        ov.insert("chain1".into(), snap(Some("chain0"), Labels::new()));
        ns
    }

    #[test]
    fn a_pulled_image_keeps_everything_it_reaches() {
        let mut ns = pulled();
        ns.content.insert(d("stray"), Labels::new());
        let ov = ns.snapshots.get_mut("overlayfs").unwrap();
        ov.insert("orphan".into(), snap(Some("chain1"), Labels::new()));
        ov.insert("orphan-child".into(), snap(Some("orphan"), Labels::new()));
        let s = swept(&graph(ns), 0);
        assert_eq!(s.content, [d("stray")]);
        assert_eq!(
            s.snapshots,
            [
                sref("overlayfs", "orphan-child"),
                sref("overlayfs", "orphan")
            ]
        );

        // Without the image, everything goes, children first.
        let mut ns = pulled();
        ns.images.clear();
        let s = swept(&graph(ns), 0);
        assert_eq!(s.content.len(), 5);
        assert_eq!(
            s.snapshots,
            [sref("overlayfs", "chain1"), sref("overlayfs", "chain0")]
        );
    }

    #[test]
    fn label_forms_follow_containerd() {
        let l1 = Labels::from([
            ("containerd.io/gc.ref.content".into(), d("a").to_string()),
            ("containerd.io/gc.ref.content.x".into(), d("b").to_string()),
            ("containerd.io/gc.ref.content/y".into(), d("c").to_string()),
            ("containerd.io/gc.ref.contentz".into(), d("d").to_string()),
            (
                "containerd.io/gc.ref.content.bad".into(),
                "not-a-digest".into(),
            ),
            (
                "containerd.io/gc.ref.snapshot.overlayfs".into(),
                "k1".into(),
            ),
            (
                "containerd.io/gc.ref.snapshot.native/x/y".into(),
                "k2".into(),
            ),
            ("containerd.io/gc.ref.snapshotx".into(), "k3".into()),
            ("other".into(), d("e").to_string()),
        ]);
        let refs: BTreeSet<LabelRef> = label_refs(&l1).collect();
        let want: BTreeSet<LabelRef> = [
            LabelRef::Content(d("a")),
            LabelRef::Content(d("b")),
            LabelRef::Content(d("c")),
            LabelRef::Snapshot(sref("overlayfs", "k1")),
            LabelRef::Snapshot(sref("native", "k2")),
        ]
        .into();
        assert_eq!(refs, want);
    }

    #[test]
    fn containers_and_root_labels_are_roots() {
        let mut ns = Namespace::default();
        ns.containers.insert(
            "c1".into(),
            Container {
                snapshot: Some(sref("overlayfs", "c1")),
                labels: l(&[("containerd.io/gc.ref.content.spec", d("spec").to_string())]),
            },
        );
        ns.containers.insert(
            "c2".into(),
            Container {
                snapshot: None,
                labels: Labels::new(),
            },
        );
        ns.content.insert(d("spec"), Labels::new());
        ns.content
            .insert(d("pinned"), l(&[(LABEL_GC_ROOT, String::new())]));
        ns.content.insert(d("loose"), Labels::new());
        let ov = ns.snapshots.entry("overlayfs".into()).or_default();
        ov.insert("base".into(), snap(None, Labels::new()));
        ov.insert("c1".into(), snap(Some("base"), Labels::new()));
        ov.insert(
            "keep".into(),
            snap(
                None,
                l(&[
                    (LABEL_GC_ROOT, "x".into()),
                    ("containerd.io/gc.ref.content", d("via-snap").to_string()),
                ]),
            ),
        );
        ov.insert("loose".into(), snap(None, Labels::new()));
        ns.content.insert(d("via-snap"), Labels::new());
        let s = swept(&graph(ns), 0);
        assert_eq!(s.content, [d("loose")]);
        assert_eq!(s.snapshots, [sref("overlayfs", "loose")]);
    }

    #[test]
    fn leases_protect_until_they_expire() {
        let mut ns = pulled();
        ns.images.clear();
        let lease = Lease {
            expires: Some(Instant(100)),
            flat: false,
            resources: vec![Resource::Content(d("manifest"))],
        };
        ns.leases.insert("l".into(), lease);
        // At and before the expiry the manifest and what it references stay.
        for now in [0, 100] {
            let s = swept(&graph(ns.clone()), now);
            assert_eq!(s.content, [d("index")], "now={now}");
            assert!(s.snapshots.is_empty());
            assert!(s.leases.is_empty());
        }
        // Past it, everything goes, the lease too.
        let s = swept(&graph(ns), 101);
        assert_eq!(s.content.len(), 5);
        assert_eq!(s.leases, ["l"]);
    }

    #[test]
    fn flat_leases_do_not_follow_references() {
        let mut ns = pulled();
        ns.images.clear();
        ns.snapshots
            .get_mut("overlayfs")
            .unwrap()
            .get_mut("chain1")
            .unwrap()
            .labels
            .insert(
                "containerd.io/gc.ref.content.l".into(),
                d("layer1").to_string(),
            );
        ns.leases.insert(
            "flat".into(),
            Lease::from_labels(
                &l(&[(LABEL_GC_FLAT, String::new())]),
                vec![
                    Resource::Content(d("manifest")),
                    Resource::Snapshot(sref("overlayfs", "chain1")),
                ],
            ),
        );
        let s = swept(&graph(ns.clone()), 0);
        // The manifest stays, not what it references; the snapshot keeps its parent, not its
        // label's layer.
        let mut want = vec![d("index"), d("config"), d("layer0"), d("layer1")];
        want.sort();
        assert_eq!(s.content, want);
        assert!(s.snapshots.is_empty());

        // Reached both flat and not: followed.
        ns.images.insert(
            "img".into(),
            Image {
                target: d("manifest"),
                labels: Labels::new(),
            },
        );
        let s = swept(&graph(ns), 0);
        assert_eq!(s.content, [d("index")]);
    }

    #[test]
    fn ingests_live_by_expiry_or_lease() {
        let mut ns = Namespace::default();
        let ing = |expires: Option<u64>, expected: Option<Digest>| Ingest {
            expires: expires.map(Instant),
            expected,
        };
        ns.ingests
            .insert("future".into(), ing(Some(10), Some(d("x"))));
        ns.ingests.insert("past".into(), ing(Some(4), None));
        ns.ingests.insert("none".into(), ing(None, None));
        ns.ingests.insert("leased".into(), ing(None, Some(d("y"))));
        ns.content.insert(d("x"), Labels::new());
        ns.content.insert(d("y"), Labels::new());
        ns.content.insert(d("z"), Labels::new());
        ns.leases.insert(
            "l".into(),
            Lease {
                expires: None,
                flat: true,
                resources: vec![Resource::Ingest("leased".into())],
            },
        );
        let s = swept(&graph(ns), 5);
        assert_eq!(s.ingests, ["none", "past"]);
        assert_eq!(s.content, [d("z")]);
    }

    #[test]
    fn blobs_are_unlinked_only_when_no_namespace_keeps_them() {
        let mut a = Namespace::default();
        a.content.insert(d("shared"), Labels::new());
        a.content.insert(d("only-a"), Labels::new());
        let mut b = Namespace::default();
        b.content
            .insert(d("shared"), l(&[(LABEL_GC_ROOT, "1".into())]));
        // A reference from another namespace does not count.
        b.images.insert(
            "i".into(),
            Image {
                target: d("only-a"),
                labels: Labels::new(),
            },
        );
        let g = Graph {
            namespaces: [("a".to_string(), a), ("b".to_string(), b)].into(),
            blobs: [d("shared"), d("orphan")].into(),
        };
        let sweep = collect(&g, Instant(0));
        let mut want_a = vec![d("shared"), d("only-a")];
        want_a.sort();
        assert_eq!(sweep.namespaces["a"].content, want_a);
        assert!(!sweep.namespaces.contains_key("b"));
        let mut unlink = vec![d("only-a"), d("orphan")];
        unlink.sort();
        assert_eq!(sweep.unlink, unlink);
    }

    #[test]
    fn resources_and_leases_from_the_wire() {
        assert_eq!(
            Resource::from_wire("content", &d("a").to_string()),
            Some(Resource::Content(d("a")))
        );
        assert_eq!(Resource::from_wire("content", "nope"), None);
        assert_eq!(
            Resource::from_wire("ingests", "r"),
            Some(Resource::Ingest("r".into()))
        );
        assert_eq!(
            Resource::from_wire("snapshots/overlayfs", "k"),
            Some(Resource::Snapshot(sref("overlayfs", "k")))
        );
        assert_eq!(Resource::from_wire("containers", "c"), None);
        let lease = Lease::from_labels(
            &l(&[("containerd.io/gc.expire", "1970-01-01T00:00:10Z".into())]),
            Vec::new(),
        );
        assert_eq!(lease.expires, Some(Instant(10_000_000_000)));
        assert!(!lease.flat);
        let lease = Lease::from_labels(
            &l(&[("containerd.io/gc.expire", "garbage".into())]),
            Vec::new(),
        );
        assert_eq!(lease.expires, None);
    }

    #[test]
    fn cycles_in_a_bad_graph_end() {
        let mut ns = Namespace::default();
        let ov = ns.snapshots.entry("o".into()).or_default();
        ov.insert("a".into(), snap(Some("b"), Labels::new()));
        ov.insert("b".into(), snap(Some("a"), Labels::new()));
        ov.insert("c".into(), snap(Some("c"), Labels::new()));
        ov.insert("d".into(), snap(Some("a"), Labels::new()));
        let s = swept(&graph(ns.clone()), 0);
        assert_eq!(s.snapshots[0], sref("o", "d"));
        assert_eq!(s.snapshots.len(), 4);
        ns.containers.insert(
            "x".into(),
            Container {
                snapshot: Some(sref("o", "a")),
                labels: Labels::new(),
            },
        );
        let s = swept(&graph(ns), 0);
        // d has no child: first; c (its own parent) can only come last.
        assert_eq!(s.snapshots, [sref("o", "d"), sref("o", "c")]);
    }

    #[test]
    fn a_tree_removes_what_gc_sweeps_in_order() {
        let mut tree = Tree::new(Config::overlayfs("/r")).unwrap();
        let now = Instant(1);
        let mut parent: Option<String> = None;
        for i in 0..5 {
            let key = format!("x{i}");
            tree.prepare(now, "default", &key, parent.as_deref(), Labels::new())
                .unwrap();
            tree.commit(
                now,
                "default",
                &format!("c{i}"),
                &key,
                Labels::new(),
                Usage::default(),
            )
            .unwrap();
            parent = Some(format!("c{i}"));
        }
        tree.view(now, "default", "v", Some("c2"), Labels::new())
            .unwrap();
        tree.prepare(now, "default", "a", Some("c4"), Labels::new())
            .unwrap();
        let mut ns = Namespace::default();
        ns.snapshots
            .insert("overlayfs".into(), tree.gc_snapshots("default"));
        ns.containers.insert(
            "keeper".into(),
            Container {
                snapshot: Some(sref("overlayfs", "v")),
                labels: Labels::new(),
            },
        );
        let s = swept(&graph(ns), 0);
        let keys: Vec<&str> = s.snapshots.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["a", "c4", "c3"]);
        for r in &s.snapshots {
            tree.remove("default", &r.key).unwrap();
        }
        let left: Vec<&str> = tree.snapshots("default").map(|(k, _)| k).collect();
        assert_eq!(left, ["c0", "c1", "c2", "v"]);
    }
}
