//! Index, manifest and config parsing on arbitrary bytes: never panics; whatever parses as an
//! index or manifest serialises to JSON that parses back to the same value; labels, children
//! and platform selection work on anything that parses.
#![no_main]

use berth_core::image::labels::{self, Children};
use berth_core::image::media;
use berth_core::image::{chain_ids, Document, ImageConfig, Index, Manifest, Matcher, Platform};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = Index::parse(data) {
        let json = index.to_json();
        assert_eq!(Index::parse(&json).as_ref(), Ok(&index), "index round trip");
        let l = labels::children_gc_labels(&index.manifests, Children::All);
        assert_eq!(l.len(), index.manifests.len());
        for m in [
            Matcher::All,
            Matcher::only(&Platform::new("linux", "arm64")),
            Matcher::only(&Platform::new("linux", "amd64")),
        ] {
            let chosen = m.select(&index.manifests, None);
            assert!(chosen.len() <= index.manifests.len());
            assert_eq!(m.best(&index.manifests), chosen.first().copied());
        }
    }
    if let Ok(manifest) = Manifest::parse(data) {
        let json = manifest.to_json();
        assert_eq!(
            Manifest::parse(&json).as_ref(),
            Ok(&manifest),
            "manifest round trip"
        );
        let l = labels::children_gc_labels(manifest.children(), Children::All);
        assert!(l.len() <= manifest.layers.len() + 1);
        for layer in &manifest.layers {
            let _ = layer.kind();
        }
    }
    if let Ok(config) = ImageConfig::parse(data) {
        let chain = chain_ids(&config.rootfs.diff_ids);
        assert_eq!(chain.len(), config.rootfs.diff_ids.len());
        let _ = config.platform().normalize();
    }
    for mt in [
        media::OCI_INDEX,
        media::DOCKER_MANIFEST,
        media::OCI_CONFIG,
        media::OCI_LAYER,
    ] {
        match Document::parse(mt, data) {
            Ok(doc) => {
                let _ = labels::children_gc_labels(doc.children(), Children::SkipLayers);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
