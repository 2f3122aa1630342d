//! Property test of garbage collection: on random metadata graphs (two namespaces sharing a
//! small universe of digests, snapshot keys and ingest refs, with every kind of root, label
//! reference, lease and expiry, dangling references and even parent cycles), `gc::collect`
//! must delete exactly what a naive fixpoint reachability over the same graph cannot reach,
//! list snapshots children first, and unlink exactly the blobs no namespace keeps.

use std::collections::{BTreeMap, BTreeSet};

use berth_core::metadata::gc::{
    self, collect, Container, Graph, Image, Ingest, Lease, Namespace, Resource, Snapshot,
    SnapshotRef,
};
use berth_core::metadata::Labels;
use berth_core::{Digest, Instant};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::sample::select;

const DIGESTS: u8 = 8;
const SNAPSHOTTERS: [&str; 2] = ["overlayfs", "native"];
const KEYS: [&str; 6] = ["k0", "k1", "k2", "k3", "k4", "k5"];
const INGESTS: [&str; 4] = ["i0", "i1", "i2", "i3"];

fn digest(i: u8) -> Digest {
    Digest::sha256(&[i])
}

fn any_digest() -> impl Strategy<Value = Digest> + Clone {
    (0..DIGESTS).prop_map(digest as fn(u8) -> Digest)
}

fn any_key() -> impl Strategy<Value = String> {
    select(&KEYS[..]).prop_map(String::from)
}

fn any_snapshotter() -> impl Strategy<Value = String> {
    select(&SNAPSHOTTERS[..]).prop_map(String::from)
}

fn any_ref() -> impl Strategy<Value = SnapshotRef> {
    (any_snapshotter(), any_key()).prop_map(|(snapshotter, key)| SnapshotRef { snapshotter, key })
}

/// One label: every form GC reads, near misses it must ignore, and noise.
fn label() -> impl Strategy<Value = (String, String)> {
    let d = any_digest().prop_map((|d: Digest| d.to_string()) as fn(Digest) -> String);
    prop_oneof![
        d.clone()
            .prop_map(|v| ("containerd.io/gc.ref.content".to_string(), v)),
        (select(&["m.0", "l.1", "config", ""][..]), d.clone())
            .prop_map(|(s, v)| (format!("containerd.io/gc.ref.content.{s}"), v)),
        (select(&["x", "a/b"][..]), d.clone())
            .prop_map(|(s, v)| (format!("containerd.io/gc.ref.content/{s}"), v)),
        d.clone()
            .prop_map(|v| ("containerd.io/gc.ref.contentX".to_string(), v)),
        Just((
            "containerd.io/gc.ref.content.bad".to_string(),
            "sha256:nope".to_string()
        )),
        (any_snapshotter(), any_key())
            .prop_map(|(s, k)| (format!("containerd.io/gc.ref.snapshot.{s}"), k)),
        (any_snapshotter(), any_key())
            .prop_map(|(s, k)| (format!("containerd.io/gc.ref.snapshot.{s}/top"), k)),
        any_key().prop_map(|k| ("containerd.io/gc.ref.snapshotoverlayfs".to_string(), k)),
        select(&["", "1"][..]).prop_map(|v| ("containerd.io/gc.root".to_string(), v.to_string())),
        d.prop_map(|v| ("unrelated".to_string(), v)),
    ]
}

fn labels() -> impl Strategy<Value = Labels> {
    vec(label(), 0..3).prop_map(|v| v.into_iter().collect())
}

fn expiry() -> impl Strategy<Value = Option<Instant>> {
    proptest::option::of((0u64..20).prop_map(Instant))
}

fn resource() -> impl Strategy<Value = Resource> {
    prop_oneof![
        any_digest().prop_map(Resource::Content),
        any_ref().prop_map(Resource::Snapshot),
        select(&INGESTS[..]).prop_map(|i| Resource::Ingest(i.into())),
    ]
}

fn namespace() -> impl Strategy<Value = Namespace> {
    let images = btree_map(
        select(&["i1", "i2", "i3"][..]).prop_map(String::from),
        (any_digest(), labels()).prop_map(|(target, labels)| Image { target, labels }),
        0..3,
    );
    let containers = btree_map(
        select(&["c1", "c2"][..]).prop_map(String::from),
        (proptest::option::of(any_ref()), labels())
            .prop_map(|(snapshot, labels)| Container { snapshot, labels }),
        0..2,
    );
    let content = btree_map(any_digest(), labels(), 0..DIGESTS as usize);
    let snapshots = btree_map(
        any_snapshotter(),
        btree_map(
            any_key(),
            (proptest::option::of(any_key()), labels())
                .prop_map(|(parent, labels)| Snapshot { parent, labels }),
            0..KEYS.len(),
        ),
        0..3,
    );
    let leases = btree_map(
        select(&["l1", "l2", "l3"][..]).prop_map(String::from),
        (expiry(), any::<bool>(), vec(resource(), 0..4)).prop_map(|(expires, flat, resources)| {
            Lease {
                expires,
                flat,
                resources,
            }
        }),
        0..3,
    );
    let ingests = btree_map(
        select(&INGESTS[..]).prop_map(String::from),
        (expiry(), proptest::option::of(any_digest()))
            .prop_map(|(expires, expected)| Ingest { expires, expected }),
        0..3,
    );
    (images, containers, content, snapshots, leases, ingests).prop_map(
        |(images, containers, content, snapshots, leases, ingests)| Namespace {
            images,
            containers,
            content,
            snapshots,
            leases,
            ingests,
        },
    )
}

fn graph() -> impl Strategy<Value = Graph> {
    (
        btree_map(
            select(&["ns1", "ns2"][..]).prop_map(String::from),
            namespace(),
            0..3,
        ),
        btree_set(any_digest(), 0..3),
    )
        .prop_map(|(namespaces, blobs)| Graph { namespaces, blobs })
}

// ----- the reference: a naive fixpoint, written from containerd's rules, not from gc.rs -----

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Content(Digest),
    ContentFlat(Digest),
    Snapshot(String, String),
    SnapshotFlat(String, String),
    Ingest(String),
}

/// The references a label set makes, by direct string tests.
fn refs(labels: &Labels) -> Vec<Node> {
    let mut out = Vec::new();
    for (k, v) in labels {
        let content = k == "containerd.io/gc.ref.content"
            || k.starts_with("containerd.io/gc.ref.content.")
            || k.starts_with("containerd.io/gc.ref.content/");
        if content {
            if let Ok(d) = v.parse::<Digest>() {
                out.push(Node::Content(d));
            }
        } else if let Some(rest) = k.strip_prefix("containerd.io/gc.ref.snapshot.") {
            let ss = rest.split('/').next().unwrap_or_default();
            out.push(Node::Snapshot(ss.to_string(), v.clone()));
        }
    }
    out
}

fn successors(ns: &Namespace, n: &Node) -> Vec<Node> {
    match n {
        Node::Content(d) => ns.content.get(d).map(refs).unwrap_or_default(),
        Node::ContentFlat(_) => Vec::new(),
        Node::Snapshot(ss, k) | Node::SnapshotFlat(ss, k) => {
            let Some(s) = ns.snapshots.get(ss).and_then(|m| m.get(k)) else {
                return Vec::new();
            };
            let flat = matches!(n, Node::SnapshotFlat(..));
            let mut out = Vec::new();
            if let Some(p) = &s.parent {
                out.push(if flat {
                    Node::SnapshotFlat(ss.clone(), p.clone())
                } else {
                    Node::Snapshot(ss.clone(), p.clone())
                });
            }
            if !flat {
                out.extend(refs(&s.labels));
            }
            out
        }
        Node::Ingest(i) => ns
            .ingests
            .get(i)
            .and_then(|g| g.expected)
            .map(Node::Content)
            .into_iter()
            .collect(),
    }
}

fn live_lease(l: &Lease, now: Instant) -> bool {
    match l.expires {
        None => true,
        Some(e) => now <= e,
    }
}

fn roots(ns: &Namespace, now: Instant) -> BTreeSet<Node> {
    let mut r = BTreeSet::new();
    for i in ns.images.values() {
        r.insert(Node::Content(i.target));
        r.extend(refs(&i.labels));
    }
    for c in ns.containers.values() {
        if let Some(s) = &c.snapshot {
            r.insert(Node::Snapshot(s.snapshotter.clone(), s.key.clone()));
        }
        r.extend(refs(&c.labels));
    }
    for (d, l) in &ns.content {
        if l.contains_key("containerd.io/gc.root") {
            r.insert(Node::Content(*d));
        }
    }
    for (ss, m) in &ns.snapshots {
        for (k, s) in m {
            if s.labels.contains_key("containerd.io/gc.root") {
                r.insert(Node::Snapshot(ss.clone(), k.clone()));
            }
        }
    }
    for l in ns.leases.values().filter(|l| live_lease(l, now)) {
        for res in &l.resources {
            r.insert(match (res, l.flat) {
                (Resource::Content(d), false) => Node::Content(*d),
                (Resource::Content(d), true) => Node::ContentFlat(*d),
                (Resource::Snapshot(s), false) => {
                    Node::Snapshot(s.snapshotter.clone(), s.key.clone())
                }
                (Resource::Snapshot(s), true) => {
                    Node::SnapshotFlat(s.snapshotter.clone(), s.key.clone())
                }
                (Resource::Ingest(i), _) => Node::Ingest(i.clone()),
            });
        }
    }
    for (i, g) in &ns.ingests {
        if g.expires.is_some_and(|e| now <= e) {
            r.insert(Node::Ingest(i.clone()));
        }
    }
    r
}

/// Everything reachable, by iterating to a fixpoint.
fn reachable(ns: &Namespace, now: Instant) -> BTreeSet<Node> {
    let mut marked = roots(ns, now);
    loop {
        let next: BTreeSet<Node> = marked
            .iter()
            .flat_map(|n| successors(ns, n))
            .filter(|n| !marked.contains(n))
            .collect();
        if next.is_empty() {
            return marked;
        }
        marked.extend(next);
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    content: BTreeSet<Digest>,
    snapshots: BTreeSet<SnapshotRef>,
    ingests: BTreeSet<String>,
    leases: BTreeSet<String>,
}

fn expected(ns: &Namespace, now: Instant) -> Expected {
    let reach = reachable(ns, now);
    let keeps_content =
        |d: &Digest| reach.contains(&Node::Content(*d)) || reach.contains(&Node::ContentFlat(*d));
    let keeps_snapshot = |ss: &str, k: &str| {
        reach.contains(&Node::Snapshot(ss.into(), k.into()))
            || reach.contains(&Node::SnapshotFlat(ss.into(), k.into()))
    };
    Expected {
        content: ns
            .content
            .keys()
            .filter(|d| !keeps_content(d))
            .copied()
            .collect(),
        snapshots: ns
            .snapshots
            .iter()
            .flat_map(|(ss, m)| {
                m.keys()
                    .filter(|k| !keeps_snapshot(ss, k))
                    .map(|k| SnapshotRef {
                        snapshotter: ss.clone(),
                        key: k.clone(),
                    })
            })
            .collect(),
        ingests: ns
            .ingests
            .keys()
            .filter(|i| !reach.contains(&Node::Ingest((*i).clone())))
            .cloned()
            .collect(),
        leases: ns
            .leases
            .iter()
            .filter(|(_, l)| !live_lease(l, now))
            .map(|(k, _)| k.clone())
            .collect(),
    }
}

/// True if following parents from `key` within `m` ever revisits a snapshot.
fn on_or_below_cycle(m: &BTreeMap<String, Snapshot>, key: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut cur = Some(key.to_string());
    while let Some(k) = cur {
        if !seen.insert(k.clone()) {
            return true;
        }
        cur = m.get(&k).and_then(|s| s.parent.clone());
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        if std::env::var_os("PROPTEST_CASES").is_some() { ProptestConfig::default().cases } else { 4096 }
    ))]

    #[test]
    fn collect_deletes_exactly_the_unreachable(g in graph(), now in (0u64..20).prop_map(Instant)) {
        let sweep = collect(&g, now);
        let mut kept_anywhere: BTreeSet<Digest> = BTreeSet::new();
        let mut every: BTreeSet<Digest> = g.blobs.clone();
        for (name, ns) in &g.namespaces {
            let want = expected(ns, now);
            let got = sweep.namespaces.get(name).cloned().unwrap_or_default();
            prop_assert!(!sweep.namespaces.contains_key(name) || !got.is_empty());
            prop_assert_eq!(got.content.iter().copied().collect::<BTreeSet<_>>(), want.content.clone());
            prop_assert_eq!(got.content.len(), want.content.len(), "no duplicates");
            prop_assert_eq!(got.snapshots.iter().cloned().collect::<BTreeSet<_>>(), want.snapshots.clone());
            prop_assert_eq!(got.snapshots.len(), want.snapshots.len(), "no duplicates");
            prop_assert_eq!(got.ingests.iter().cloned().collect::<BTreeSet<_>>(), want.ingests);
            prop_assert_eq!(got.leases.iter().cloned().collect::<BTreeSet<_>>(), want.leases);

            // Nothing a root reaches is deleted; `mark` agrees with the sweep.
            let marked = gc::mark(ns, now);
            for d in &got.content {
                prop_assert!(!marked.content.contains(d));
            }
            for d in ns.content.keys().filter(|d| !want.content.contains(d)) {
                prop_assert!(marked.content.contains(d));
                kept_anywhere.insert(*d);
            }
            every.extend(ns.content.keys());

            // Children before parents, unless a (malformed) cycle makes that impossible.
            let pos: BTreeMap<&SnapshotRef, usize> =
                got.snapshots.iter().enumerate().map(|(i, r)| (r, i)).collect();
            for (i, r) in got.snapshots.iter().enumerate() {
                let m = &ns.snapshots[&r.snapshotter];
                if on_or_below_cycle(m, &r.key) {
                    continue;
                }
                if let Some(p) = &m[&r.key].parent {
                    let parent = SnapshotRef { snapshotter: r.snapshotter.clone(), key: p.clone() };
                    if let Some(j) = pos.get(&parent) {
                        prop_assert!(i < *j, "{:?} listed after its parent", r);
                    }
                }
            }
        }
        let unlink: Vec<Digest> = every.difference(&kept_anywhere).copied().collect();
        prop_assert_eq!(sweep.unlink, unlink);
    }

    /// Collecting what a sweep leaves deletes nothing more: deleting the unreachable never
    /// makes anything else unreachable.
    #[test]
    fn a_second_collection_finds_nothing(g in graph(), now in (0u64..20).prop_map(Instant)) {
        let sweep = collect(&g, now);
        let mut after = g.clone();
        for (name, s) in &sweep.namespaces {
            let ns = after.namespaces.get_mut(name).expect("namespace");
            for d in &s.content {
                ns.content.remove(d);
            }
            for r in &s.snapshots {
                ns.snapshots.get_mut(&r.snapshotter).expect("snapshotter").remove(&r.key);
            }
            for i in &s.ingests {
                ns.ingests.remove(i);
            }
            for l in &s.leases {
                ns.leases.remove(l);
            }
        }
        after.blobs.retain(|b| !sweep.unlink.contains(b));
        let again = collect(&after, now);
        prop_assert!(again.namespaces.is_empty(), "{:?}", again.namespaces);
        prop_assert!(again.unlink.is_empty());
    }
}
