//! Images: references, media types, index/manifest/config, platform matching, chain IDs, and the
//! labels pull writes.
//!
//! Everything here is pure computation on strings and bytes; the registry, pull and unpack
//! machines build on it.
//!
//! * [`reference`](mod@reference): `busybox` → `docker.io/library/busybox:latest`, as docker's
//!   `ParseNormalizedNamed`; the registry API host.
//! * [`media`]: OCI and Docker schema2 media types; what a descriptor points at, and a layer's
//!   compression.
//! * [`manifest`]: [`Index`], [`Manifest`] and [`ImageConfig`] documents and [`Descriptor`]s,
//!   parsed strictly with typed errors (berth's own serde types; the module says why not
//!   `oci-spec`).
//! * [`platform`]: [`Platform`] parsing and normalisation, containerd's matchers, and the
//!   choice of manifests from an index.
//! * [`chain`]: chain IDs from diff IDs.
//! * [`labels`]: containerd's GC, uncompressed and distribution-source labels.
//!
//! ```
//! use berth_core::image::{chain_id, Index, Matcher, Platform, Reference};
//!
//! let r = Reference::parse("busybox").unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//!
//! let host = Matcher::only(&Platform::parse("linux/arm64").unwrap());
//! let index = Index::parse(br#"{"schemaVersion": 2, "manifests": [
//!   {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
//!    "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
//!    "platform": {"os": "linux", "architecture": "amd64"}},
//!   {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 2,
//!    "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
//!    "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}"#).unwrap();
//! assert_eq!(host.best(&index.manifests).map(|d| d.size), Some(2));
//! assert_eq!(chain_id(&[]), None);
//! ```

pub mod chain;
pub mod labels;
pub mod manifest;
pub mod media;
pub mod platform;
pub mod reference;

pub use chain::{chain_id, chain_ids};
pub use manifest::{
    Descriptor, Document, DocumentKind, ExecConfig, History, ImageConfig, Index, Manifest,
    ManifestError, RootFs,
};
pub use media::{classify, Compression, Family, LayerType, MediaError, MediaKind};
pub use platform::{Matcher, Platform, PlatformError};
pub use reference::{registry_api_host, Reference, ReferenceError};
