//! Media types of OCI and Docker schema2 images, and a classifier that says what a descriptor
//! points at: an index, a manifest, a config or a layer (with its compression).
//!
//! The predicates [`is_layer`], [`is_known_config`], [`is_manifest`] and [`is_index`] follow
//! containerd's `images` package, which the GC labels depend on. [`classify`] is stricter: it
//! names only what berth can unpack, and says why it cannot for the rest.

use core::fmt;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI empty descriptor (`{}`), used as the config of artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// OCI layer, uncompressed tar.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip-compressed tar.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd-compressed tar.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable layer, uncompressed tar.
pub const OCI_LAYER_NONDISTRIBUTABLE: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable layer, gzip-compressed tar.
pub const OCI_LAYER_NONDISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI non-distributable layer, zstd-compressed tar.
pub const OCI_LAYER_NONDISTRIBUTABLE_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

/// Docker schema2 manifest list (the Docker form of an index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, tar (in practice often gzip despite the name; see [`LayerType::sniff`]).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker layer, gzip-compressed tar.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (non-distributable) layer, tar.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
/// Docker foreign (non-distributable) layer, gzip-compressed tar.
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema1 manifest (unsupported).
pub const DOCKER_SCHEMA1_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker signed schema1 manifest (unsupported).
pub const DOCKER_SCHEMA1_SIGNED_MANIFEST: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// containerd checkpoint (CRIU image); a known config for the GC labels.
pub const CONTAINERD_CHECKPOINT: &str =
    "application/vnd.containerd.container.criu.checkpoint.criu.tar";
/// containerd checkpoint config; a known config for the GC labels.
pub const CONTAINERD_CHECKPOINT_CONFIG: &str =
    "application/vnd.containerd.container.checkpoint.config.v1+proto";

const OCI_LAYER_PREFIX: &str = "application/vnd.oci.image.layer.";

/// Which specification a media type belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Family {
    /// The OCI image spec.
    Oci,
    /// Docker image manifest v2, schema 2.
    Docker,
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// zstd (RFC 8878).
    Zstd,
}

impl Compression {
    /// The compression named by the first bytes of a blob, if it is gzip or zstd: what
    /// containerd's `DetectCompression` recognises. At least four bytes are needed for zstd.
    #[must_use]
    pub fn detect(prefix: &[u8]) -> Option<Compression> {
        match prefix {
            [0x1f, 0x8b, 0x08, ..] => Some(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The name containerd uses: `""` (none), `gzip` or `zstd`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "uncompressed",
            other => other.name(),
        })
    }
}

/// What a layer media type says about its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LayerType {
    /// OCI or Docker.
    pub family: Family,
    /// The compression the media type names.
    pub compression: Compression,
    /// False for OCI non-distributable and Docker foreign layers, whose blobs registries may
    /// refuse to serve (their descriptors usually carry `urls`).
    pub distributable: bool,
    /// True for the Docker uncompressed types, which images in the wild also use for gzip
    /// blobs: containerd checks the first bytes ([`Compression::detect`]) instead of trusting
    /// the type.
    pub sniff: bool,
}

/// What a media type identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaKind {
    /// An index (OCI) or manifest list (Docker).
    Index(Family),
    /// An image manifest.
    Manifest(Family),
    /// An image config.
    Config(Family),
    /// A layer.
    Layer(LayerType),
    /// The OCI empty descriptor (`{}`), the config of artifacts.
    Empty,
}

/// Why a media type cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The media type is none berth knows.
    #[error("unknown media type {media_type:?}")]
    Unknown {
        /// The media type (first 200 characters).
        media_type: String,
    },
    /// A Docker schema1 manifest, which berth (like containerd 1.6 by default) does not pull.
    #[error(
        "media type {media_type:?} is a Docker schema 1 manifest, which is not supported; \
         push the image again with a current client to get schema 2"
    )]
    Schema1 {
        /// The media type.
        media_type: String,
    },
    /// A layer wrapped in an encoding berth cannot undo (e.g. `+encrypted`).
    #[error("layer media type {media_type:?} has an unsupported encoding {suffix:?}")]
    LayerEncoding {
        /// The media type (first 200 characters).
        media_type: String,
        /// The `+suffix` that is not understood.
        suffix: String,
    },
}

fn shown(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Says what `media_type` identifies, or why berth cannot use it.
///
/// ```
/// use berth_core::image::media::{classify, Compression, MediaKind};
///
/// let kind = classify("application/vnd.oci.image.layer.v1.tar+zstd").unwrap();
/// assert!(matches!(kind, MediaKind::Layer(l) if l.compression == Compression::Zstd));
/// ```
pub fn classify(media_type: &str) -> Result<MediaKind, MediaError> {
    Ok(match media_type {
        OCI_INDEX => MediaKind::Index(Family::Oci),
        DOCKER_MANIFEST_LIST => MediaKind::Index(Family::Docker),
        OCI_MANIFEST => MediaKind::Manifest(Family::Oci),
        DOCKER_MANIFEST => MediaKind::Manifest(Family::Docker),
        OCI_CONFIG => MediaKind::Config(Family::Oci),
        DOCKER_CONFIG => MediaKind::Config(Family::Docker),
        OCI_EMPTY => MediaKind::Empty,
        DOCKER_SCHEMA1_MANIFEST | DOCKER_SCHEMA1_SIGNED_MANIFEST => {
            return Err(MediaError::Schema1 {
                media_type: media_type.to_owned(),
            })
        }
        _ => return classify_layer(media_type).map(MediaKind::Layer),
    })
}

fn classify_layer(media_type: &str) -> Result<LayerType, MediaError> {
    let mut parts = media_type.split('+');
    let base = parts.next().unwrap_or_default();
    let suffix = parts.next();
    let extra = parts.next();
    let unknown = || MediaError::Unknown {
        media_type: shown(media_type),
    };
    let encoding = |suffix: &str| MediaError::LayerEncoding {
        media_type: shown(media_type),
        suffix: shown(suffix),
    };
    let (family, distributable, base_compression, sniff) = match base {
        OCI_LAYER => (Family::Oci, true, Compression::None, false),
        OCI_LAYER_NONDISTRIBUTABLE => (Family::Oci, false, Compression::None, false),
        DOCKER_LAYER => (Family::Docker, true, Compression::None, true),
        DOCKER_LAYER_FOREIGN => (Family::Docker, false, Compression::None, true),
        DOCKER_LAYER_GZIP => (Family::Docker, true, Compression::Gzip, false),
        DOCKER_LAYER_FOREIGN_GZIP => (Family::Docker, false, Compression::Gzip, false),
        _ if is_layer(media_type) => {
            // an OCI layer type berth does not know, or a wrapped Docker layer
            return Err(match suffix {
                Some(s) if !base.starts_with(OCI_LAYER_PREFIX) => encoding(s),
                _ => unknown(),
            });
        }
        _ => return Err(unknown()),
    };
    if let Some(extra) = extra {
        return Err(encoding(extra));
    }
    let compression = match (family, suffix) {
        (_, None) => base_compression,
        (Family::Oci, Some("gzip")) => Compression::Gzip,
        (Family::Oci, Some("zstd")) => Compression::Zstd,
        (_, Some(s)) => return Err(encoding(s)),
    };
    Ok(LayerType {
        family,
        compression,
        distributable,
        sniff,
    })
}

/// containerd's `IsLayerType`: any `application/vnd.oci.image.layer.` type, or a Docker layer
/// type with any `+suffix`.
#[must_use]
pub fn is_layer(media_type: &str) -> bool {
    if media_type.starts_with(OCI_LAYER_PREFIX) {
        return true;
    }
    let base = media_type.split('+').next().unwrap_or_default();
    matches!(
        base,
        DOCKER_LAYER | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN | DOCKER_LAYER_FOREIGN_GZIP
    )
}

/// containerd's `IsKnownConfig`: the OCI and Docker image configs and containerd's checkpoint
/// types.
#[must_use]
pub fn is_known_config(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_CONFIG | DOCKER_CONFIG | CONTAINERD_CHECKPOINT | CONTAINERD_CHECKPOINT_CONFIG
    )
}

/// True for the OCI and Docker schema2 image manifest types.
#[must_use]
pub fn is_manifest(media_type: &str) -> bool {
    matches!(media_type, OCI_MANIFEST | DOCKER_MANIFEST)
}

/// True for the OCI index and Docker manifest list types.
#[must_use]
pub fn is_index(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_MANIFEST_LIST)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(
        family: Family,
        compression: Compression,
        distributable: bool,
        sniff: bool,
    ) -> MediaKind {
        MediaKind::Layer(LayerType {
            family,
            compression,
            distributable,
            sniff,
        })
    }

    #[test]
    fn classifies_every_known_type() {
        use Compression::*;
        use Family::*;
        let cases = [
            (OCI_INDEX, MediaKind::Index(Oci)),
            (DOCKER_MANIFEST_LIST, MediaKind::Index(Docker)),
            (OCI_MANIFEST, MediaKind::Manifest(Oci)),
            (DOCKER_MANIFEST, MediaKind::Manifest(Docker)),
            (OCI_CONFIG, MediaKind::Config(Oci)),
            (DOCKER_CONFIG, MediaKind::Config(Docker)),
            (OCI_EMPTY, MediaKind::Empty),
            (OCI_LAYER, layer(Oci, None, true, false)),
            (OCI_LAYER_GZIP, layer(Oci, Gzip, true, false)),
            (OCI_LAYER_ZSTD, layer(Oci, Zstd, true, false)),
            (OCI_LAYER_NONDISTRIBUTABLE, layer(Oci, None, false, false)),
            (
                OCI_LAYER_NONDISTRIBUTABLE_GZIP,
                layer(Oci, Gzip, false, false),
            ),
            (
                OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
                layer(Oci, Zstd, false, false),
            ),
            (DOCKER_LAYER, layer(Docker, None, true, true)),
            (DOCKER_LAYER_GZIP, layer(Docker, Gzip, true, false)),
            (DOCKER_LAYER_FOREIGN, layer(Docker, None, false, true)),
            (DOCKER_LAYER_FOREIGN_GZIP, layer(Docker, Gzip, false, false)),
        ];
        for (mt, want) in cases {
            assert_eq!(classify(mt), Ok(want), "{mt}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let unknown = |mt: &str| MediaError::Unknown {
            media_type: mt.into(),
        };
        let encoding = |mt: &str, s: &str| MediaError::LayerEncoding {
            media_type: mt.into(),
            suffix: s.into(),
        };
        let cases = [
            ("", unknown("")),
            ("application/json", unknown("application/json")),
            (
                "application/vnd.oci.image.layer.v2.tar",
                unknown("application/vnd.oci.image.layer.v2.tar"),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+encrypted",
                encoding(
                    "application/vnd.oci.image.layer.v1.tar+encrypted",
                    "encrypted",
                ),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                encoding(
                    "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                    "encrypted",
                ),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted",
                encoding(
                    "application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted",
                    "encrypted",
                ),
            ),
            (
                DOCKER_SCHEMA1_SIGNED_MANIFEST,
                MediaError::Schema1 {
                    media_type: DOCKER_SCHEMA1_SIGNED_MANIFEST.into(),
                },
            ),
            (
                DOCKER_SCHEMA1_MANIFEST,
                MediaError::Schema1 {
                    media_type: DOCKER_SCHEMA1_MANIFEST.into(),
                },
            ),
        ];
        for (mt, want) in cases {
            assert_eq!(classify(mt), Err(want.clone()), "{mt}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn predicates_follow_containerd() {
        // IsLayerType: any OCI layer prefix, Docker layers with any suffix
        for mt in [
            OCI_LAYER,
            OCI_LAYER_ZSTD,
            OCI_LAYER_NONDISTRIBUTABLE_GZIP,
            "application/vnd.oci.image.layer.v1.tar+encrypted",
            "application/vnd.oci.image.layer.whatever",
            DOCKER_LAYER,
            DOCKER_LAYER_FOREIGN_GZIP,
            "application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted",
        ] {
            assert!(is_layer(mt), "{mt}");
        }
        for mt in [
            OCI_MANIFEST,
            OCI_CONFIG,
            DOCKER_CONFIG,
            "",
            "application/vnd.docker.image.rootfs.diff",
        ] {
            assert!(!is_layer(mt), "{mt}");
        }
        for mt in [
            OCI_CONFIG,
            DOCKER_CONFIG,
            CONTAINERD_CHECKPOINT,
            CONTAINERD_CHECKPOINT_CONFIG,
        ] {
            assert!(is_known_config(mt), "{mt}");
        }
        assert!(!is_known_config(OCI_EMPTY));
        assert!(
            is_manifest(OCI_MANIFEST) && is_manifest(DOCKER_MANIFEST) && !is_manifest(OCI_INDEX)
        );
        assert!(
            is_index(OCI_INDEX) && is_index(DOCKER_MANIFEST_LIST) && !is_index(DOCKER_MANIFEST)
        );
    }

    #[test]
    fn detects_compression_from_magic() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 0x08, 0]),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::detect(b"ustar"), None);
        assert_eq!(Compression::detect(&[0x1f, 0x8b]), None);
        assert_eq!(Compression::detect(&[]), None);
        assert_eq!(Compression::Gzip.name(), "gzip");
        assert_eq!(Compression::None.to_string(), "uncompressed");
    }
}
