//! The labels pull and unpack write on content, as containerd 1.6 writes them: the GC
//! references from an index or manifest to its children, a layer's uncompressed digest, the
//! config's reference to its unpacked snapshot, and where a blob was fetched from.
//!
//! ```
//! use berth_core::image::{labels, Manifest};
//! # let json = format!(
//! #     r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{c}","size":1}},
//! #        "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{l}","size":2}}]}}"#,
//! #     c = "1".repeat(64), l = "2".repeat(64));
//! let m = Manifest::parse(json.as_bytes()).unwrap();
//! let l = labels::children_gc_labels(m.children(), labels::Children::All);
//! assert_eq!(l["containerd.io/gc.ref.content.config"], m.config.digest.to_string());
//! assert_eq!(l["containerd.io/gc.ref.content.l.0"], m.layers[0].digest.to_string());
//! ```

use std::collections::{BTreeMap, BTreeSet};

use super::manifest::{Descriptor, Document};
use super::media;
use super::reference::Reference;
use crate::metadata::{validate_labels, Labels};
use crate::Digest;

/// Prefix of the labels by which an object keeps content alive (the collector's own key).
pub use crate::metadata::gc::LABEL_GC_REF_CONTENT as GC_REF_CONTENT;
/// Prefix of the labels by which an object keeps a snapshot alive
/// (`containerd.io/gc.ref.snapshot.<snapshotter>`), as the collector reads them.
pub use crate::metadata::gc::LABEL_GC_REF_SNAPSHOT as GC_REF_SNAPSHOT;
/// The label on a layer blob naming its diff ID.
pub const UNCOMPRESSED: &str = "containerd.io/uncompressed";
/// Prefix of the labels naming the repositories a blob came from
/// (`containerd.io/distribution.source.<host>`).
pub const DISTRIBUTION_SOURCE: &str = "containerd.io/distribution.source";

/// The GC label key (or key prefix, when it ends in `.`) for a child of this media type:
/// containerd's `ChildGCLabels`. Configs get `….config`, manifests `….m.`, layers `….l.`, and
/// anything else (nested indexes, unknown types) `….`.
#[must_use]
pub fn child_gc_label(media_type: &str) -> &'static str {
    if media::is_known_config(media_type) {
        "containerd.io/gc.ref.content.config"
    } else if media::is_manifest(media_type) {
        "containerd.io/gc.ref.content.m."
    } else if media::is_layer(media_type) {
        "containerd.io/gc.ref.content.l."
    } else {
        "containerd.io/gc.ref.content."
    }
}

/// Which children get a GC label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Children {
    /// All of them (containerd's default, `ChildGCLabels`).
    All,
    /// All but layers (`ChildGCLabelsFilterLayers`: keep the metadata, let layers go).
    SkipLayers,
}

/// The labels a parent blob gets for its children, as containerd's `SetChildrenMappedLabels`:
/// each child's key from [`child_gc_label`], numbered per key in document order (`l.0`, `l.1`,
/// …; a key not ending in `.` is numbered only from its second use), valued with the child's
/// digest.
///
/// Give all children, before any platform filtering: containerd labels an index for every
/// manifest it lists, so `m.<i>` is the position in the index.
pub fn children_gc_labels<'a>(
    children: impl IntoIterator<Item = &'a Descriptor>,
    which: Children,
) -> Labels {
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut labels = Labels::new();
    for child in children {
        if which == Children::SkipLayers && media::is_layer(&child.media_type) {
            continue;
        }
        let key = child_gc_label(&child.media_type);
        let count = counts.entry(key).or_insert(0);
        let index = *count;
        *count += 1;
        let key = if index > 0 || key.ends_with('.') {
            format!("{key}{index}")
        } else {
            key.to_owned()
        };
        labels.insert(key, child.digest.to_string());
    }
    labels
}

/// The GC labels of a parsed index or manifest for all its children (none for a config).
#[must_use]
pub fn document_gc_labels(document: &Document) -> Labels {
    children_gc_labels(document.children(), Children::All)
}

/// The label a layer blob gets once unpacked: `containerd.io/uncompressed=<diff ID>`.
#[must_use]
pub fn uncompressed_label(diff_id: &Digest) -> (String, String) {
    (UNCOMPRESSED.to_owned(), diff_id.to_string())
}

/// The label the config blob gets once the image is unpacked:
/// `containerd.io/gc.ref.snapshot.<snapshotter>=<top chain ID>`.
#[must_use]
pub fn snapshot_gc_label(snapshotter: &str, chain_id: &Digest) -> (String, String) {
    (
        format!("{GC_REF_SNAPSHOT}{snapshotter}"),
        chain_id.to_string(),
    )
}

/// The distribution source key for a reference:
/// `containerd.io/distribution.source.<host without port>`.
#[must_use]
pub fn distribution_source_key(reference: &Reference) -> String {
    format!("{DISTRIBUTION_SOURCE}.{}", reference.source_host())
}

/// Adds `repo` to a comma-separated source list as containerd's
/// `appendDistributionSourceLabel`: the result is sorted, without duplicates or empty entries.
#[must_use]
pub fn append_distribution_source(existing: Option<&str>, repo: &str) -> String {
    let mut repos: BTreeSet<&str> = existing
        .unwrap_or_default()
        .split(',')
        .filter(|r| !r.is_empty())
        .collect();
    if !repo.is_empty() {
        repos.insert(repo);
    }
    repos.into_iter().collect::<Vec<_>>().join(",")
}

/// The distribution source label a blob fetched for `reference` gets, given the blob's current
/// labels: the key from [`distribution_source_key`], the repository path appended to what is
/// there. `None` when the label would pass containerd's size limit, where containerd skips it
/// (with a warning) rather than failing the pull.
#[must_use]
pub fn distribution_source_label(
    reference: &Reference,
    current: &Labels,
) -> Option<(String, String)> {
    let key = distribution_source_key(reference);
    let value = append_distribution_source(current.get(&key).map(String::as_str), reference.path());
    let one = Labels::from([(key, value)]);
    validate_labels(&one).ok()?;
    one.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::tests::{docker_manifest, oci_index, D1, D2, D3};
    use crate::image::manifest::{Index, Manifest};
    use crate::image::media::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn child_keys_follow_containerd() {
        let cases = [
            (OCI_CONFIG, "containerd.io/gc.ref.content.config"),
            (DOCKER_CONFIG, "containerd.io/gc.ref.content.config"),
            (
                CONTAINERD_CHECKPOINT_CONFIG,
                "containerd.io/gc.ref.content.config",
            ),
            (OCI_MANIFEST, "containerd.io/gc.ref.content.m."),
            (DOCKER_MANIFEST, "containerd.io/gc.ref.content.m."),
            (OCI_LAYER_ZSTD, "containerd.io/gc.ref.content.l."),
            (DOCKER_LAYER_FOREIGN_GZIP, "containerd.io/gc.ref.content.l."),
            (OCI_INDEX, "containerd.io/gc.ref.content."),
            (OCI_EMPTY, "containerd.io/gc.ref.content."),
            (
                "application/vnd.cncf.helm.config.v1+json",
                "containerd.io/gc.ref.content.",
            ),
        ];
        for (mt, key) in cases {
            assert_eq!(child_gc_label(mt), key, "{mt}");
        }
    }

    #[test]
    fn labels_an_index_for_every_manifest() {
        let idx = Index::parse(oci_index().as_bytes()).unwrap();
        let want = labels(&[
            ("containerd.io/gc.ref.content.m.0", D1),
            ("containerd.io/gc.ref.content.m.1", D2),
            ("containerd.io/gc.ref.content.m.2", D3),
        ]);
        assert_eq!(children_gc_labels(&idx.manifests, Children::All), want);
        let doc = Document::Index(Box::new(idx));
        assert_eq!(document_gc_labels(&doc), want);
    }

    #[test]
    fn labels_a_manifest_for_config_and_layers() {
        let m = Manifest::parse(docker_manifest().as_bytes()).unwrap();
        assert_eq!(
            children_gc_labels(m.children(), Children::All),
            labels(&[
                ("containerd.io/gc.ref.content.config", D1),
                ("containerd.io/gc.ref.content.l.0", D2),
                ("containerd.io/gc.ref.content.l.1", D3),
            ])
        );
        assert_eq!(
            children_gc_labels(m.children(), Children::SkipLayers),
            labels(&[("containerd.io/gc.ref.content.config", D1)])
        );
        let config = Document::parse(DOCKER_CONFIG, br#"{"rootfs":{"type":"layers"}}"#).unwrap();
        assert!(document_gc_labels(&config).is_empty());
    }

    #[test]
    fn numbers_each_key_on_its_own() {
        let d = |mt: &str, s: &str| Descriptor::new(mt, Digest::parse(s).unwrap(), 1);
        let children = [
            d(OCI_INDEX, D1),
            d(OCI_MANIFEST, D2),
            d("application/x-unknown", D3),
            d(OCI_CONFIG, D1),
            d(OCI_CONFIG, D2),
            d(OCI_MANIFEST, D3),
        ];
        assert_eq!(
            children_gc_labels(&children, Children::All),
            labels(&[
                ("containerd.io/gc.ref.content.0", D1),
                ("containerd.io/gc.ref.content.m.0", D2),
                ("containerd.io/gc.ref.content.1", D3),
                ("containerd.io/gc.ref.content.config", D1),
                ("containerd.io/gc.ref.content.config1", D2),
                ("containerd.io/gc.ref.content.m.1", D3),
            ])
        );
        assert!(children_gc_labels(&[], Children::All).is_empty());
    }

    #[test]
    fn unpack_labels() {
        let diff = Digest::parse(D1).unwrap();
        assert_eq!(
            uncompressed_label(&diff),
            ("containerd.io/uncompressed".to_owned(), D1.to_owned())
        );
        assert_eq!(
            snapshot_gc_label("overlayfs", &diff),
            (
                "containerd.io/gc.ref.snapshot.overlayfs".to_owned(),
                D1.to_owned()
            )
        );
    }

    #[test]
    fn distribution_sources_are_sorted_and_unique() {
        let cases = [
            (None, "library/busybox", "library/busybox"),
            (Some(""), "a", "a"),
            (Some("b"), "a", "a,b"),
            (Some("a,c"), "b", "a,b,c"),
            (Some("a,b"), "b", "a,b"),
            (Some("c,a,,a"), "b", "a,b,c"),
            (Some("a"), "", "a"),
        ];
        for (existing, repo, want) in cases {
            assert_eq!(
                append_distribution_source(existing, repo),
                want,
                "{existing:?} + {repo}"
            );
        }

        let r = Reference::parse("localhost:5000/x/y:1").unwrap();
        assert_eq!(
            distribution_source_key(&r),
            "containerd.io/distribution.source.localhost"
        );
        let mut current = Labels::new();
        assert_eq!(
            distribution_source_label(&r, &current),
            Some((
                "containerd.io/distribution.source.localhost".to_owned(),
                "x/y".to_owned()
            ))
        );
        current.insert(
            "containerd.io/distribution.source.localhost".into(),
            "z/z".into(),
        );
        assert_eq!(
            distribution_source_label(&r, &current).unwrap().1,
            "x/y,z/z"
        );
        let hub = Reference::parse("busybox").unwrap();
        assert_eq!(
            distribution_source_label(&hub, &Labels::new()),
            Some((
                "containerd.io/distribution.source.docker.io".to_owned(),
                "library/busybox".to_owned()
            ))
        );
        // too long: skipped, not an error
        current.insert(
            "containerd.io/distribution.source.localhost".into(),
            (0..1000)
                .map(|i| format!("r/{i}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        assert_eq!(distribution_source_label(&r, &current), None);
    }
}
