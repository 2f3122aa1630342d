//! State-machine property test of the snapshot [`Tree`] against a naive reference model, for
//! both the overlayfs and the native flavor: random Prepare / View / Commit / Remove / Update
//! sequences (and prepares rolled back with their `Undo`) over two namespaces and a small key
//! pool, so that collisions, missing parents and parents with children are common.
//!
//! After every command the outcome (success or which refusal) must be the model's, and:
//! the tree holds exactly the model's snapshots (ids, kinds, parents, labels); ids are unique and
//! never reused; every parent exists, is committed, and chains are acyclic; a committed snapshot
//! has no mounts; every active snapshot and view mounts exactly its committed ancestry, top
//! first, the way containerd's snapshotter does. A separate property runs deep chains through
//! `plan_mounts`.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use berth_core::metadata::{Filter, Labels};
use berth_core::snapshot::mounts::{COMPACT_THRESHOLD, MOUNT_DATA_LIMIT};
use berth_core::snapshot::{
    plan_mounts, Config, Kind, Mount, MountPlanError, SnapshotError, Tree, Usage,
};
use berth_core::Instant;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config as ProptestConfig;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const NSS: [&str; 2] = ["ns1", "ns2"];
const KEYS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const ROOT: &str = "/var/lib/berth/io.containerd.snapshotter.v1.test";

/// What a command did, as the model predicts it and the tree reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Outcome {
    #[default]
    Ok,
    AlreadyExists,
    NotFound,
    ParentNotFound,
    ParentNotCommitted,
    NotActive,
    HasChildren,
    BadLabels,
}

fn outcome<T>(r: &Result<T, SnapshotError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(SnapshotError::AlreadyExists { .. }) => Outcome::AlreadyExists,
        Err(SnapshotError::NotFound { .. }) => Outcome::NotFound,
        Err(SnapshotError::ParentNotFound { .. }) => Outcome::ParentNotFound,
        Err(SnapshotError::ParentNotCommitted { .. }) => Outcome::ParentNotCommitted,
        Err(SnapshotError::NotActive { .. }) => Outcome::NotActive,
        Err(SnapshotError::HasChildren { .. }) => Outcome::HasChildren,
        Err(SnapshotError::Labels { .. }) => Outcome::BadLabels,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

/// How an update names the labels it changes.
#[derive(Debug, Clone, Copy)]
enum Mask {
    /// No paths: replace all.
    Empty,
    /// `labels`: replace all.
    All,
    /// `labels.<key>`: set or delete one.
    One,
    /// A path that is not a label: refused.
    Bad,
}

#[derive(Debug, Clone)]
enum Cmd {
    Create {
        kind: Kind,
        ns: usize,
        key: String,
        parent: Option<String>,
        label: Option<(String, String)>,
        /// Roll it back with its `Undo` right away.
        undo: bool,
    },
    Commit {
        ns: usize,
        name: String,
        key: String,
        label: Option<(String, String)>,
    },
    Remove {
        ns: usize,
        key: String,
    },
    Update {
        ns: usize,
        key: String,
        label: (String, String),
        mask: Mask,
    },
}

/// The reference: a flat map, rules spelled out one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    id: u64,
    kind: Kind,
    parent: Option<String>,
    labels: Labels,
}

#[derive(Debug, Clone)]
struct Model {
    snaps: BTreeMap<(usize, String), Rec>,
    next_id: u64,
    last: Outcome,
}

fn labels_of(label: &Option<(String, String)>) -> Labels {
    label
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect()
}

impl Model {
    fn get(&self, ns: usize, key: &str) -> Option<&Rec> {
        self.snaps.get(&(ns, key.to_string()))
    }

    fn run(&mut self, cmd: &Cmd) -> Outcome {
        match cmd {
            Cmd::Create {
                kind,
                ns,
                key,
                parent,
                label,
                undo,
            } => {
                if self.get(*ns, key).is_some() {
                    return Outcome::AlreadyExists;
                }
                if let Some(p) = parent {
                    match self.get(*ns, p) {
                        None => return Outcome::ParentNotFound,
                        Some(r) if r.kind != Kind::Committed => return Outcome::ParentNotCommitted,
                        Some(_) => {}
                    }
                }
                let id = self.next_id;
                self.next_id += 1;
                if !undo {
                    self.snaps.insert(
                        (*ns, key.clone()),
                        Rec {
                            id,
                            kind: *kind,
                            parent: parent.clone(),
                            labels: labels_of(label),
                        },
                    );
                }
                Outcome::Ok
            }
            Cmd::Commit {
                ns,
                name,
                key,
                label,
            } => {
                if self.get(*ns, name).is_some() {
                    return Outcome::AlreadyExists;
                }
                let Some(r) = self.get(*ns, key).cloned() else {
                    return Outcome::NotFound;
                };
                if r.kind != Kind::Active {
                    return Outcome::NotActive;
                }
                self.snaps.remove(&(*ns, key.clone()));
                self.snaps.insert(
                    (*ns, name.clone()),
                    Rec {
                        kind: Kind::Committed,
                        labels: labels_of(label),
                        ..r
                    },
                );
                Outcome::Ok
            }
            Cmd::Remove { ns, key } => {
                if self.get(*ns, key).is_none() {
                    return Outcome::NotFound;
                }
                if self
                    .snaps
                    .iter()
                    .any(|((n, _), r)| n == ns && r.parent.as_deref() == Some(key.as_str()))
                {
                    return Outcome::HasChildren;
                }
                self.snaps.remove(&(*ns, key.clone()));
                Outcome::Ok
            }
            Cmd::Update {
                ns,
                key,
                label,
                mask,
            } => {
                let Some(r) = self.snaps.get_mut(&(*ns, key.clone())) else {
                    return Outcome::NotFound;
                };
                match mask {
                    Mask::Bad => return Outcome::BadLabels,
                    Mask::Empty | Mask::All => r.labels = labels_of(&Some(label.clone())),
                    Mask::One => {
                        if label.1.is_empty() {
                            r.labels.remove(&label.0);
                        } else {
                            r.labels.insert(label.0.clone(), label.1.clone());
                        }
                    }
                }
                Outcome::Ok
            }
        }
    }

    /// Keys of a namespace's snapshots of `kind`.
    fn keys_of(&self, ns: usize, kind: Kind) -> Vec<String> {
        self.snaps
            .iter()
            .filter(|((n, _), r)| *n == ns && r.kind == kind)
            .map(|((_, k), _)| k.clone())
            .collect()
    }

    /// Ids of the committed ancestry, immediate parent first, walked in the model.
    fn ancestry(&self, ns: usize, key: &str) -> Vec<u64> {
        let mut out = Vec::new();
        let mut cur = self.get(ns, key).and_then(|r| r.parent.clone());
        while let Some(p) = cur {
            let r = self.get(ns, &p).expect("model parent exists");
            out.push(r.id);
            cur = r.parent.clone();
        }
        out
    }
}

fn key() -> impl Strategy<Value = String> {
    select(&KEYS[..]).prop_map(String::from)
}

fn label() -> impl Strategy<Value = (String, String)> {
    (
        select(&["x", "y", "containerd.io/gc.root"][..]),
        select(&["", "1", "2"][..]),
    )
        .prop_map(|(k, v)| (k.to_string(), v.to_string()))
}

/// A key that exists in the model most of the time, else any.
fn existing(keys: Vec<String>) -> BoxedStrategy<String> {
    if keys.is_empty() {
        key().boxed()
    } else {
        prop_oneof![3 => select(keys), 1 => key()].boxed()
    }
}

struct TreeModel;

impl ReferenceStateMachine for TreeModel {
    type State = Model;
    type Transition = Cmd;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            snaps: BTreeMap::new(),
            next_id: 1,
            last: Outcome::Ok,
        })
        .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Cmd> {
        let committed: Vec<Vec<String>> = (0..NSS.len())
            .map(|ns| state.keys_of(ns, Kind::Committed))
            .collect();
        let active: Vec<Vec<String>> = (0..NSS.len())
            .map(|ns| state.keys_of(ns, Kind::Active))
            .collect();
        let all: Vec<Vec<String>> = (0..NSS.len())
            .map(|ns| {
                state
                    .snaps
                    .keys()
                    .filter(|(n, _)| *n == ns)
                    .map(|(_, k)| k.clone())
                    .collect()
            })
            .collect();
        let ns = 0..NSS.len();
        let parent = move |ns: usize| {
            prop_oneof![
                2 => Just(None),
                4 => existing(committed[ns].clone()).prop_map(Some),
                1 => key().prop_map(Some),
            ]
        };
        let create = (
            ns.clone(),
            select(&[Kind::Active, Kind::View][..]),
            key(),
            proptest::option::of(label()),
            prop_oneof![6 => Just(false), 1 => Just(true)],
        )
            .prop_flat_map(move |(ns, kind, key, label, undo)| {
                parent(ns).prop_map(move |parent| Cmd::Create {
                    kind,
                    ns,
                    key: key.clone(),
                    parent,
                    label: label.clone(),
                    undo,
                })
            });
        let commit = (ns.clone(), key(), proptest::option::of(label())).prop_flat_map(
            move |(ns, name, label)| {
                existing(active[ns].clone()).prop_map(move |key| Cmd::Commit {
                    ns,
                    name: name.clone(),
                    key,
                    label: label.clone(),
                })
            },
        );
        let all2 = all.clone();
        let remove = ns.clone().prop_flat_map(move |ns| {
            existing(all[ns].clone()).prop_map(move |key| Cmd::Remove { ns, key })
        });
        let update = (
            ns,
            label(),
            select(&[Mask::Empty, Mask::All, Mask::One, Mask::One, Mask::Bad][..]),
        )
            .prop_flat_map(move |(ns, label, mask)| {
                existing(all2[ns].clone()).prop_map(move |key| Cmd::Update {
                    ns,
                    key,
                    label: label.clone(),
                    mask,
                })
            });
        prop_oneof![
            6 => create,
            4 => commit,
            3 => remove,
            2 => update,
        ]
        .boxed()
    }

    fn apply(mut state: Model, cmd: &Cmd) -> Model {
        state.last = state.run(cmd);
        state
    }
}

/// Which snapshotter a test runs.
trait Flavor {
    fn config() -> Config;
    /// The mount the snapshotter must return for a snapshot with these ids.
    fn expected_mount(kind: Kind, id: u64, ancestry: &[u64]) -> Mount;
}

fn bind(source: String, ro: bool) -> Mount {
    Mount {
        kind: "bind".into(),
        source,
        target: String::new(),
        options: vec![if ro { "ro" } else { "rw" }.into(), "rbind".into()],
    }
}

struct Overlay;

impl Flavor for Overlay {
    fn config() -> Config {
        Config::overlayfs(ROOT)
    }

    fn expected_mount(kind: Kind, id: u64, ancestry: &[u64]) -> Mount {
        let fs = |i: u64| format!("{ROOT}/snapshots/{i}/fs");
        let view = kind == Kind::View;
        match ancestry {
            [] => bind(fs(id), view),
            [p] if view => bind(fs(*p), true),
            _ => {
                let mut options = vec!["index=off".to_string()];
                if !view {
                    options.push(format!("workdir={ROOT}/snapshots/{id}/work"));
                    options.push(format!("upperdir={}", fs(id)));
                }
                let lower: Vec<String> = ancestry.iter().map(|p| fs(*p)).collect();
                options.push(format!("lowerdir={}", lower.join(":")));
                Mount {
                    kind: "overlay".into(),
                    source: "overlay".into(),
                    target: String::new(),
                    options,
                }
            }
        }
    }
}

struct Native;

impl Flavor for Native {
    fn config() -> Config {
        Config::native(ROOT)
    }

    fn expected_mount(kind: Kind, id: u64, ancestry: &[u64]) -> Mount {
        let dir = |i: u64| format!("{ROOT}/snapshots/{i}");
        match (kind, ancestry.first()) {
            (Kind::View, Some(p)) => bind(dir(*p), true),
            _ => bind(dir(id), kind == Kind::View),
        }
    }
}

struct TreeSut<F>(PhantomData<F>);

impl<F: Flavor> StateMachineTest for TreeSut<F> {
    type SystemUnderTest = Tree;
    type Reference = TreeModel;

    fn init_test(_: &Model) -> Tree {
        Tree::new(F::config()).expect("valid config")
    }

    fn apply(mut tree: Tree, model: &Model, cmd: Cmd) -> Tree {
        let now = Instant(tree.next_id());
        let got = match &cmd {
            Cmd::Create {
                kind,
                ns,
                key,
                parent,
                label,
                undo,
            } => {
                let r = match kind {
                    Kind::View => {
                        tree.view(now, NSS[*ns], key, parent.as_deref(), labels_of(label))
                    }
                    _ => tree.prepare(now, NSS[*ns], key, parent.as_deref(), labels_of(label)),
                };
                let o = outcome(&r);
                if let Ok(p) = r {
                    assert_eq!(p.id, model.next_id - 1, "ids are allocated in order");
                    assert_eq!(
                        p.event.is_some(),
                        *kind == Kind::Active,
                        "only prepare publishes"
                    );
                    assert_eq!(
                        p.mounts,
                        vec![F::expected_mount(
                            *kind,
                            p.id,
                            &model_ancestry(model, *ns, parent)
                        )]
                    );
                    if *undo {
                        tree.undo(p.undo).expect("undo right after the prepare");
                    }
                }
                o
            }
            Cmd::Commit {
                ns,
                name,
                key,
                label,
            } => {
                outcome(&tree.commit(now, NSS[*ns], name, key, labels_of(label), Usage::default()))
            }
            Cmd::Remove { ns, key } => outcome(&tree.remove(NSS[*ns], key)),
            Cmd::Update {
                ns,
                key,
                label,
                mask,
            } => {
                let labels: Labels = [label.clone()].into();
                let paths: Vec<String> = match mask {
                    Mask::Empty => Vec::new(),
                    Mask::All => vec!["labels".into()],
                    Mask::One => vec![format!("labels.{}", label.0)],
                    Mask::Bad => vec!["parent".into()],
                };
                outcome(&tree.update(now, NSS[*ns], key, &labels, &paths))
            }
        };
        assert_eq!(got, model.last, "{cmd:?}");
        tree
    }

    fn check_invariants(tree: &Tree, model: &Model) {
        assert_eq!(tree.next_id(), model.next_id);
        let mut ids = BTreeSet::new();
        let mut count = 0;
        for (n, ns) in NSS.iter().enumerate() {
            let in_tree: BTreeMap<String, Rec> = tree
                .snapshots(ns)
                .map(|(k, s)| {
                    (
                        k.to_string(),
                        Rec {
                            id: s.id,
                            kind: s.kind,
                            parent: s.parent.clone(),
                            labels: s.labels.clone(),
                        },
                    )
                })
                .collect();
            let in_model: BTreeMap<String, Rec> = model
                .snaps
                .iter()
                .filter(|((m, _), _)| *m == n)
                .map(|((_, k), r)| (k.clone(), r.clone()))
                .collect();
            assert_eq!(in_tree, in_model, "namespace {ns}");
            assert_eq!(tree.is_empty(ns), in_model.is_empty());

            for (key, s) in tree.snapshots(ns) {
                count += 1;
                assert!(ids.insert(s.id), "id {} used twice", s.id);
                assert!(s.id < tree.next_id());
                // Parent chain: present, committed, acyclic.
                let mut seen = BTreeSet::from([key.to_string()]);
                let mut cur = s.parent.clone();
                while let Some(p) = cur {
                    let parent = tree
                        .get(ns, &p)
                        .unwrap_or_else(|| panic!("dangling parent {p}"));
                    assert_eq!(parent.kind, Kind::Committed, "parent {p} of {key}");
                    assert!(seen.insert(p.clone()), "cycle through {p}");
                    cur = parent.parent.clone();
                }
                let ancestry = model.ancestry(n, key);
                assert_eq!(tree.parent_ids(ns, key), ancestry);
                match s.kind {
                    Kind::Committed => assert!(matches!(
                        tree.mounts(ns, key),
                        Err(SnapshotError::NotActiveOrView { .. })
                    )),
                    kind => {
                        let mounts = tree.mounts(ns, key).expect("mounts");
                        assert_eq!(mounts, vec![F::expected_mount(kind, s.id, &ancestry)]);
                        if mounts[0].kind == "overlay" {
                            let lower: Vec<String> = ancestry
                                .iter()
                                .map(|p| format!("{ROOT}/snapshots/{p}/fs"))
                                .collect();
                            assert_eq!(mounts[0].lowerdirs(), lower);
                        }
                    }
                }
                let info = tree.stat(ns, key).expect("stat");
                assert_eq!((info.kind, &info.parent), (s.kind, &s.parent));
            }
            let committed = Filter::parse(&["kind==committed"]).expect("filter");
            assert_eq!(
                tree.list(ns, &committed).len(),
                model.keys_of(n, Kind::Committed).len()
            );
        }
        assert_eq!(count, model.snaps.len());
    }
}

/// The ancestry a new snapshot on `parent` has, from the model after the command.
fn model_ancestry(model: &Model, ns: usize, parent: &Option<String>) -> Vec<u64> {
    match parent {
        None => Vec::new(),
        Some(p) => {
            let mut out = vec![model.get(ns, p).expect("parent").id];
            out.extend(model.ancestry(ns, p));
            out
        }
    }
}

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 1024;
    }
    config
}

prop_state_machine! {
    #![proptest_config(config())]

    #[test]
    fn overlay_tree_matches_model(sequential 1..64 => TreeSut<Overlay>);

    #[test]
    fn native_tree_matches_model(sequential 1..64 => TreeSut<Native>);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any chain up to overlayfs's 500 layers, under roots of any length: the plan either fits
    /// in a page with lowerdirs that resolve to exactly the absolute ones, or (only if even the
    /// relative form is too long) is refused with a typed error.
    #[test]
    fn deep_chains_plan_within_a_page(depth in 1usize..=500, root_len in 2usize..200) {
        let root = format!("/{}", "r".repeat(root_len - 1));
        let mut tree = Tree::new(Config::overlayfs(&root)).expect("config");
        let now = Instant(1);
        let mut parent: Option<String> = None;
        for i in 0..depth {
            let name = format!("l{i}");
            tree.prepare(now, "ns", "x", parent.as_deref(), Labels::new()).expect("prepare");
            tree.commit(now, "ns", &name, "x", Labels::new(), Usage::default()).expect("commit");
            parent = Some(name);
        }
        let p = tree.view(now, "ns", "v", parent.as_deref(), Labels::new()).expect("view");
        let absolute = &p.mounts[0];
        match plan_mounts(&p.mounts, "/mnt/t") {
            Ok(plan) => {
                let m = &plan.mounts[0];
                prop_assert!(m.data().len() < MOUNT_DATA_LIMIT);
                let resolved: Vec<String> = m
                    .lowerdirs()
                    .iter()
                    .map(|d| match &plan.chdir {
                        Some(c) if !d.starts_with('/') => format!("{c}/{d}"),
                        _ => d.to_string(),
                    })
                    .collect();
                prop_assert_eq!(resolved, absolute.lowerdirs());
                // Compacted only when the absolute form was long.
                prop_assert_eq!(
                    plan.chdir.is_some(),
                    absolute.kind == "overlay" && absolute.data().len() + 1 >= COMPACT_THRESHOLD
                );
            }
            Err(MountPlanError::OptionsTooLong { len, .. }) => {
                prop_assert!(len >= MOUNT_DATA_LIMIT);
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}
