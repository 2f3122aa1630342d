//! Index, manifest and image config documents (OCI and Docker schema2), parsed strictly enough
//! to refuse malformed documents with typed errors and tolerantly of fields they do not know.
//!
//! Refused, each with its own [`ManifestError`]: a missing required field (`schemaVersion`,
//! `manifests`, `config`, `layers`, a descriptor's `mediaType`, `digest` or `size`, a config's
//! `rootfs`), a `schemaVersion` other than 2, Docker schema 1 (`fsLayers`), a digest berth does
//! not accept, a negative or fractional size, an index that is really a manifest and the
//! reverse (containerd's `validateMediaType`), and a rootfs type other than `layers`. Unknown
//! fields are ignored; `null` is taken as absent.
//!
//! Why not the `oci-spec` crate: its `image` feature brings derive_builder (darling), getset,
//! strum, const_format and regex into this crate, its image types carry `from_file`/`to_file`
//! (std::fs) into the pure core, it has its own digest type and unordered annotations, and its
//! serde errors would not say which field of which document is wrong. These types are small.

use core::fmt;
use std::collections::{BTreeMap, BTreeSet};

use core::marker::PhantomData;

use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::media;
use super::platform::Platform;
use crate::{Digest, DigestError};

/// Annotations (or labels) of a document or descriptor, sorted by key.
pub type Annotations = BTreeMap<String, String>;

/// Which kind of document an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DocumentKind {
    /// An OCI index or Docker manifest list.
    Index,
    /// An OCI or Docker schema2 image manifest.
    Manifest,
    /// An image config.
    Config,
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DocumentKind::Index => "image index",
            DocumentKind::Manifest => "image manifest",
            DocumentKind::Config => "image config",
        })
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The bytes are not JSON, or a field has the wrong JSON type.
    #[error("{document} is malformed: {message} (line {line}, column {column})")]
    Json {
        /// The document being parsed.
        document: DocumentKind,
        /// serde_json's description (first 200 characters).
        message: String,
        /// 1-based line of the error (0 if unknown).
        line: usize,
        /// 1-based column of the error (0 if unknown).
        column: usize,
    },
    /// A required field is missing or `null`.
    #[error("{document} has no {field}, which is required")]
    MissingField {
        /// The document.
        document: DocumentKind,
        /// Where, e.g. `config`, `layers[2].digest`.
        field: String,
    },
    /// A Docker schema 1 manifest (`schemaVersion` 1 or `fsLayers`).
    #[error("{document} is a Docker schema 1 manifest, which is not supported; push it again with a current client")]
    Schema1 {
        /// The document.
        document: DocumentKind,
    },
    /// `schemaVersion` is not 2.
    #[error("{document} has schemaVersion {found}; only 2 is supported")]
    SchemaVersion {
        /// The document.
        document: DocumentKind,
        /// The version found.
        found: i64,
    },
    /// The document is of another kind than expected: an index where a manifest was expected,
    /// or the reverse.
    #[error("expected an {expected} but found an {found} (its mediaType is {media_type:?})")]
    WrongDocument {
        /// What the descriptor or caller expected.
        expected: DocumentKind,
        /// What the document's fields or mediaType say it is.
        found: DocumentKind,
        /// The document's own `mediaType` (empty if it has none).
        media_type: String,
    },
    /// A digest field does not parse.
    #[error("{field} of the {document} is {value:?}, not a valid digest: {source}")]
    Digest {
        /// The document.
        document: DocumentKind,
        /// Where, e.g. `config.digest`, `rootfs.diff_ids[0]`.
        field: String,
        /// The value (first 200 characters).
        value: String,
        /// Why it does not parse.
        source: DigestError,
    },
    /// A size is negative.
    #[error("{field} of the {document} is negative ({size})")]
    NegativeSize {
        /// The document.
        document: DocumentKind,
        /// Where, e.g. `layers[0].size`.
        field: String,
        /// The size found.
        size: i64,
    },
    /// A size is not a whole number.
    #[error("{field} of the {document} is {value}, not a whole number of bytes")]
    BadSize {
        /// The document.
        document: DocumentKind,
        /// Where.
        field: String,
        /// The number as written.
        value: String,
    },
    /// The config's `rootfs.type` is not `layers`.
    #[error("image config rootfs type is {found:?}; only \"layers\" is supported")]
    RootFsType {
        /// The type found (first 200 characters).
        found: String,
    },
    /// A manifest and its config disagree on the number of layers.
    #[error("mismatched image rootfs and manifest layers: {layers} layers, {diff_ids} diff IDs")]
    LayerCount {
        /// Layers in the manifest.
        layers: usize,
        /// Diff IDs in the config.
        diff_ids: usize,
    },
    /// [`Document::parse`] was given a media type that names no document.
    #[error("media type {media_type:?} is not an index, manifest or image config")]
    NotADocument {
        /// The media type (first 200 characters).
        media_type: String,
    },
}

fn shown(s: &str) -> String {
    s.chars().take(200).collect()
}

/// A content descriptor: what a document points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    pub media_type: String,
    /// Digest of the target.
    pub digest: Digest,
    /// Size of the target in bytes.
    pub size: u64,
    /// Where else the target may be fetched from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: Annotations,
    /// The platform a manifest is for (in an index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type of an artifact manifest (OCI 1.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with only media type, digest and size.
    #[must_use]
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            urls: Vec::new(),
            annotations: Annotations::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// What the media type identifies ([`media::classify`]).
    pub fn kind(&self) -> Result<media::MediaKind, media::MediaError> {
        media::classify(&self.media_type)
    }
}

/// An OCI image index or Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The document's own media type, if it states one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type (OCI 1.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests (or nested indexes), in document order.
    pub manifests: Vec<Descriptor>,
    /// The subject this index refers to (OCI 1.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: Annotations,
}

/// An OCI or Docker schema2 image manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The document's own media type, if it states one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type (OCI 1.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// The subject this manifest refers to (OCI 1.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: Annotations,
}

/// An image config (OCI and Docker share the fields berth reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// Creation time, RFC 3339, as written.
    pub created: Option<String>,
    /// Author.
    pub author: Option<String>,
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// OS version.
    pub os_version: String,
    /// OS features.
    pub os_features: Vec<String>,
    /// CPU variant.
    pub variant: String,
    /// How to run a container of the image.
    pub config: ExecConfig,
    /// The layers' diff IDs.
    pub rootfs: RootFs,
    /// Build history.
    pub history: Vec<History>,
}

/// The execution parameters of an image config (`config` in the JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecConfig {
    /// `User`.
    pub user: String,
    /// `ExposedPorts` keys (`80/tcp`).
    pub exposed_ports: BTreeSet<String>,
    /// `Env` (`KEY=value`).
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Volumes` keys.
    pub volumes: BTreeSet<String>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`.
    pub stop_signal: String,
    /// `ArgsEscaped` (Windows).
    pub args_escaped: bool,
}

/// The root filesystem of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootFs {
    /// Always `layers`.
    pub fs_type: String,
    /// Digests of the uncompressed layers, base first.
    pub diff_ids: Vec<Digest>,
}

/// One step of an image's build history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// When, RFC 3339, as written.
    pub created: Option<String>,
    /// The command that made it.
    pub created_by: String,
    /// Author.
    pub author: String,
    /// Comment.
    pub comment: String,
    /// True if the step made no layer.
    pub empty_layer: bool,
}

/// A parsed document of any kind (boxed: the three differ in size by hundreds of bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Document {
    /// An index or manifest list.
    Index(Box<Index>),
    /// A manifest.
    Manifest(Box<Manifest>),
    /// An image config.
    Config(Box<ImageConfig>),
}

impl Document {
    /// Parses `bytes` as the document `media_type` (a descriptor's) names. An index where a
    /// manifest is expected, or the reverse, is refused (containerd's `validateMediaType`).
    pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Document, ManifestError> {
        if media::is_index(media_type) {
            Index::parse(bytes).map(|i| Document::Index(Box::new(i)))
        } else if media::is_manifest(media_type) {
            Manifest::parse(bytes).map(|m| Document::Manifest(Box::new(m)))
        } else if matches!(media_type, media::OCI_CONFIG | media::DOCKER_CONFIG) {
            ImageConfig::parse(bytes).map(|c| Document::Config(Box::new(c)))
        } else {
            Err(ManifestError::NotADocument {
                media_type: shown(media_type),
            })
        }
    }

    /// What the document points at, in containerd's order (`images.Children`): an index's
    /// manifests; a manifest's config then layers; nothing for a config.
    #[must_use]
    pub fn children(&self) -> Vec<&Descriptor> {
        match self {
            Document::Index(i) => i.manifests.iter().collect(),
            Document::Manifest(m) => m.children().collect(),
            Document::Config(_) => Vec::new(),
        }
    }
}

impl Index {
    /// The index as compact JSON (fields berth does not model are not kept, so this is not the
    /// original document and has another digest).
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }

    /// Parses an index or manifest list.
    pub fn parse(bytes: &[u8]) -> Result<Index, ManifestError> {
        let cx = Cx(DocumentKind::Index);
        let raw: RawIndex = cx.json(bytes)?;
        cx.schema(raw.schema_version, raw.fs_layers.is_some())?;
        let declared = raw.media_type.as_deref().unwrap_or_default();
        if raw.config.is_some() || raw.layers.is_some() || media::is_manifest(declared) {
            return Err(ManifestError::WrongDocument {
                expected: DocumentKind::Index,
                found: DocumentKind::Manifest,
                media_type: shown(declared),
            });
        }
        let manifests = raw.manifests.ok_or_else(|| cx.missing("manifests"))?;
        Ok(Index {
            schema_version: 2,
            media_type: raw.media_type,
            artifact_type: raw.artifact_type,
            manifests: cx.descriptors(manifests, "manifests")?,
            subject: raw
                .subject
                .map(|d| cx.descriptor(d.0, "subject"))
                .transpose()?,
            annotations: raw.annotations.unwrap_or_default(),
        })
    }
}

impl Manifest {
    /// The manifest as compact JSON (fields berth does not model are not kept, so this is not
    /// the original document and has another digest).
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }

    /// Parses an OCI or Docker schema2 manifest.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let cx = Cx(DocumentKind::Manifest);
        let raw: RawManifest = cx.json(bytes)?;
        cx.schema(raw.schema_version, raw.fs_layers.is_some())?;
        let declared = raw.media_type.as_deref().unwrap_or_default();
        if raw.manifests.is_some() || media::is_index(declared) {
            return Err(ManifestError::WrongDocument {
                expected: DocumentKind::Manifest,
                found: DocumentKind::Index,
                media_type: shown(declared),
            });
        }
        let config = raw.config.ok_or_else(|| cx.missing("config"))?;
        let layers = raw.layers.ok_or_else(|| cx.missing("layers"))?;
        Ok(Manifest {
            schema_version: 2,
            media_type: raw.media_type,
            artifact_type: raw.artifact_type,
            config: cx.descriptor(config.0, "config")?,
            layers: cx.descriptors(layers, "layers")?,
            subject: raw
                .subject
                .map(|d| cx.descriptor(d.0, "subject"))
                .transpose()?,
            annotations: raw.annotations.unwrap_or_default(),
        })
    }

    /// The config, then the layers (containerd's `images.Children`).
    pub fn children(&self) -> impl Iterator<Item = &Descriptor> {
        core::iter::once(&self.config).chain(&self.layers)
    }

    /// Checks that `config` lists one diff ID per layer, as unpack requires.
    pub fn check_config(&self, config: &ImageConfig) -> Result<(), ManifestError> {
        if self.layers.len() == config.rootfs.diff_ids.len() {
            Ok(())
        } else {
            Err(ManifestError::LayerCount {
                layers: self.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            })
        }
    }
}

impl ImageConfig {
    /// Parses an OCI or Docker image config.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
        let cx = Cx(DocumentKind::Config);
        let raw: RawConfig = cx.json(bytes)?;
        let Obj(rootfs) = raw.rootfs.ok_or_else(|| cx.missing("rootfs"))?;
        let fs_type = rootfs.fs_type.ok_or_else(|| cx.missing("rootfs.type"))?;
        if fs_type != "layers" {
            return Err(ManifestError::RootFsType {
                found: shown(&fs_type),
            });
        }
        let diff_ids = rootfs
            .diff_ids
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, d)| cx.digest(d, &format!("rootfs.diff_ids[{i}]")))
            .collect::<Result<_, _>>()?;
        let c = raw.config.map(|c| c.0).unwrap_or_default();
        let keys = |m: Option<BTreeMap<String, IgnoredAny>>| {
            m.unwrap_or_default().into_keys().collect::<BTreeSet<_>>()
        };
        Ok(ImageConfig {
            created: raw.created,
            author: raw.author,
            architecture: raw.architecture.unwrap_or_default(),
            os: raw.os.unwrap_or_default(),
            os_version: raw.os_version.unwrap_or_default(),
            os_features: raw.os_features.unwrap_or_default(),
            variant: raw.variant.unwrap_or_default(),
            config: ExecConfig {
                user: c.user.unwrap_or_default(),
                exposed_ports: keys(c.exposed_ports),
                env: c.env.unwrap_or_default(),
                entrypoint: c.entrypoint.unwrap_or_default(),
                cmd: c.cmd.unwrap_or_default(),
                volumes: keys(c.volumes),
                working_dir: c.working_dir.unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                stop_signal: c.stop_signal.unwrap_or_default(),
                args_escaped: c.args_escaped.unwrap_or_default(),
            },
            rootfs: RootFs { fs_type, diff_ids },
            history: raw
                .history
                .unwrap_or_default()
                .into_iter()
                .map(|Obj(h)| History {
                    created: h.created,
                    created_by: h.created_by.unwrap_or_default(),
                    author: h.author.unwrap_or_default(),
                    comment: h.comment.unwrap_or_default(),
                    empty_layer: h.empty_layer.unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// The platform the image is for, from the config's own fields.
    #[must_use]
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant: self.variant.clone(),
        }
    }
}

/// Serialises one of this module's types. It cannot fail: every map has string keys and
/// there are no floats.
fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// The document being parsed, for error context.
struct Cx(DocumentKind);

impl Cx {
    fn json<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, ManifestError> {
        serde_json::from_slice::<Obj<T>>(bytes)
            .map(|o| o.0)
            .map_err(|e| {
                let (line, column) = (e.line(), e.column());
                let full = e.to_string();
                let suffix = format!(" at line {line} column {column}");
                let message = full.strip_suffix(&suffix).unwrap_or(&full);
                ManifestError::Json {
                    document: self.0,
                    message: shown(message),
                    line,
                    column,
                }
            })
    }

    fn missing(&self, field: &str) -> ManifestError {
        ManifestError::MissingField {
            document: self.0,
            field: field.to_owned(),
        }
    }

    fn schema(&self, version: Option<i64>, fs_layers: bool) -> Result<(), ManifestError> {
        match version {
            _ if fs_layers => Err(ManifestError::Schema1 { document: self.0 }),
            None => Err(self.missing("schemaVersion")),
            Some(1) => Err(ManifestError::Schema1 { document: self.0 }),
            Some(2) => Ok(()),
            Some(found) => Err(ManifestError::SchemaVersion {
                document: self.0,
                found,
            }),
        }
    }

    fn digest(&self, value: &str, field: &str) -> Result<Digest, ManifestError> {
        Digest::parse(value).map_err(|source| ManifestError::Digest {
            document: self.0,
            field: field.to_owned(),
            value: shown(value),
            source,
        })
    }

    fn descriptors(
        &self,
        raw: Vec<Obj<RawDescriptor>>,
        field: &str,
    ) -> Result<Vec<Descriptor>, ManifestError> {
        raw.into_iter()
            .enumerate()
            .map(|(i, d)| self.descriptor(d.0, &format!("{field}[{i}]")))
            .collect()
    }

    fn descriptor(&self, raw: RawDescriptor, field: &str) -> Result<Descriptor, ManifestError> {
        let media_type = raw
            .media_type
            .ok_or_else(|| self.missing(&format!("{field}.mediaType")))?;
        let digest = raw
            .digest
            .ok_or_else(|| self.missing(&format!("{field}.digest")))?;
        let digest = self.digest(&digest, &format!("{field}.digest"))?;
        let size_field = format!("{field}.size");
        let size = raw.size.ok_or_else(|| self.missing(&size_field))?;
        let size = match (size.as_u64(), size.as_i64()) {
            (Some(n), _) => n,
            (None, Some(negative)) => {
                return Err(ManifestError::NegativeSize {
                    document: self.0,
                    field: size_field,
                    size: negative,
                })
            }
            (None, None) => {
                return Err(ManifestError::BadSize {
                    document: self.0,
                    field: size_field,
                    value: shown(&size.to_string()),
                })
            }
        };
        Ok(Descriptor {
            media_type,
            digest,
            size,
            urls: raw.urls.unwrap_or_default(),
            annotations: raw.annotations.unwrap_or_default(),
            platform: raw.platform.map(|Obj(p)| Platform {
                architecture: p.architecture.unwrap_or_default(),
                os: p.os.unwrap_or_default(),
                os_version: p.os_version.unwrap_or_default(),
                os_features: p.os_features.unwrap_or_default(),
                variant: p.variant.unwrap_or_default(),
            }),
            artifact_type: raw.artifact_type,
        })
    }
}

/// A value that must be a JSON object: serde's derived structs also accept an array of the
/// fields in order, which no manifest is.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(PhantomData)).map(Obj)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<serde_json::Number>,
    urls: Option<Vec<String>>,
    annotations: Option<Annotations>,
    platform: Option<Obj<RawPlatform>>,
    artifact_type: Option<String>,
}

#[derive(Deserialize)]
struct RawPlatform {
    architecture: Option<String>,
    os: Option<String>,
    #[serde(rename = "os.version")]
    os_version: Option<String>,
    #[serde(rename = "os.features")]
    os_features: Option<Vec<String>>,
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndex {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    manifests: Option<Vec<Obj<RawDescriptor>>>,
    subject: Option<Obj<RawDescriptor>>,
    annotations: Option<Annotations>,
    // fields that say this is not an index
    config: Option<IgnoredAny>,
    layers: Option<IgnoredAny>,
    fs_layers: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Obj<RawDescriptor>>,
    layers: Option<Vec<Obj<RawDescriptor>>>,
    subject: Option<Obj<RawDescriptor>>,
    annotations: Option<Annotations>,
    // fields that say this is not a schema2 manifest
    manifests: Option<IgnoredAny>,
    fs_layers: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct RawConfig {
    created: Option<String>,
    author: Option<String>,
    architecture: Option<String>,
    os: Option<String>,
    #[serde(rename = "os.version")]
    os_version: Option<String>,
    #[serde(rename = "os.features")]
    os_features: Option<Vec<String>>,
    variant: Option<String>,
    config: Option<Obj<RawExecConfig>>,
    rootfs: Option<Obj<RawRootFs>>,
    history: Option<Vec<Obj<RawHistory>>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawExecConfig {
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, IgnoredAny>>,
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    volumes: Option<BTreeMap<String, IgnoredAny>>,
    working_dir: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    stop_signal: Option<String>,
    args_escaped: Option<bool>,
}

#[derive(Deserialize)]
struct RawRootFs {
    #[serde(rename = "type")]
    fs_type: Option<String>,
    diff_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawHistory {
    created: Option<String>,
    created_by: Option<String>,
    author: Option<String>,
    comment: Option<String>,
    empty_layer: Option<bool>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::media::*;

    pub(crate) const D1: &str =
        "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    pub(crate) const D2: &str =
        "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    pub(crate) const D3: &str =
        "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    /// A multi-platform OCI index like busybox's, with an attestation entry.
    pub(crate) fn oci_index() -> String {
        format!(
            r#"{{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{D1}", "size": 610,
      "platform": {{"architecture": "amd64", "os": "linux"}}}},
    {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{D2}", "size": 610,
      "platform": {{"architecture": "arm64", "os": "linux", "variant": "v8"}},
      "annotations": {{"org.opencontainers.image.ref.name": "1.36"}}}},
    {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{D3}", "size": 566,
      "platform": {{"architecture": "unknown", "os": "unknown"}},
      "annotations": {{"vnd.docker.reference.type": "attestation-manifest"}}}}
  ],
  "annotations": {{"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}},
  "someFutureField": {{"nested": [1, 2, {{"x": null}}]}}
}}"#
        )
    }

    /// A Docker schema2 manifest with two gzip layers.
    pub(crate) fn docker_manifest() -> String {
        format!(
            r#"{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {{"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469, "digest": "{D1}"}},
   "layers": [
      {{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2814559, "digest": "{D2}"}},
      {{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "size": 5, "digest": "{D3}",
        "urls": ["https://example.invalid/layer"]}}
   ]
}}"#
        )
    }

    /// A Docker image config with the usual nulls and extra fields.
    pub(crate) fn docker_config() -> String {
        format!(
            r##"{{"architecture":"arm","variant":"v7","os":"linux","created":"2024-01-01T00:00:00.123Z",
  "docker_version":"20.10.7","container":"abc",
  "config":{{"Hostname":"","User":"1000:1000","Env":["PATH=/usr/bin","A=b"],"Cmd":["sh"],"Entrypoint":null,
    "ExposedPorts":{{"80/tcp":{{}},"443/tcp":{{}}}},"Volumes":null,"WorkingDir":"/srv","Labels":{{"k":"v"}},
    "OnBuild":null,"StopSignal":"SIGTERM"}},
  "container_config":{{"Cmd":["/bin/sh","-c","#(nop) CMD [\"sh\"]"]}},
  "rootfs":{{"type":"layers","diff_ids":["{D1}","{D2}"]}},
  "history":[{{"created":"2024-01-01T00:00:00Z","created_by":"ADD file:x in /"}},
             {{"created_by":"CMD [\"sh\"]","empty_layer":true}}]}}"##
        )
    }

    #[test]
    fn parses_an_oci_index() {
        let idx = Index::parse(oci_index().as_bytes()).unwrap();
        assert_eq!(idx.media_type.as_deref(), Some(OCI_INDEX));
        assert_eq!(idx.manifests.len(), 3);
        let m = &idx.manifests[1];
        assert_eq!(m.digest.to_string(), D2);
        assert_eq!(m.size, 610);
        let p = m.platform.as_ref().unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_str()),
            ("linux", "arm64", "v8")
        );
        assert_eq!(m.annotations["org.opencontainers.image.ref.name"], "1.36");
        assert_eq!(idx.annotations.len(), 1);
        // serialising gives a document that parses back to the same value
        let again = Index::parse(&idx.to_json()).unwrap();
        assert_eq!(again, idx);
        let doc = Document::parse(DOCKER_MANIFEST_LIST, oci_index().as_bytes()).unwrap();
        assert_eq!(doc.children().len(), 3);
    }

    #[test]
    fn parses_a_docker_manifest_and_config() {
        let m = Manifest::parse(docker_manifest().as_bytes()).unwrap();
        assert_eq!(m.config.media_type, DOCKER_CONFIG);
        assert_eq!(m.config.size, 1469);
        assert_eq!(m.layers.len(), 2);
        assert_eq!(m.layers[1].urls, ["https://example.invalid/layer"]);
        let kinds: Vec<_> = m.layers.iter().map(|l| l.kind().unwrap()).collect();
        assert!(
            matches!(kinds[1], MediaKind::Layer(l) if !l.distributable && l.compression == Compression::Gzip)
        );
        let children: Vec<_> = m.children().map(|d| d.digest.to_string()).collect();
        assert_eq!(children, [D1, D2, D3]);
        let again = Manifest::parse(&m.to_json()).unwrap();
        assert_eq!(again, m);

        let c = ImageConfig::parse(docker_config().as_bytes()).unwrap();
        assert_eq!(
            c.platform(),
            Platform::new("linux", "arm").with_variant("v7")
        );
        assert_eq!(c.config.user, "1000:1000");
        assert_eq!(c.config.env, ["PATH=/usr/bin", "A=b"]);
        assert_eq!(c.config.cmd, ["sh"]);
        assert!(c.config.entrypoint.is_empty());
        assert_eq!(
            c.config.exposed_ports.iter().collect::<Vec<_>>(),
            ["443/tcp", "80/tcp"]
        );
        assert!(c.config.volumes.is_empty());
        assert_eq!(c.config.working_dir, "/srv");
        assert_eq!(c.config.labels["k"], "v");
        assert_eq!(c.config.stop_signal, "SIGTERM");
        assert_eq!(c.rootfs.diff_ids.len(), 2);
        assert_eq!(c.history.len(), 2);
        assert!(c.history[1].empty_layer);
        assert_eq!(c.created.as_deref(), Some("2024-01-01T00:00:00.123Z"));
        assert_eq!(m.check_config(&c), Ok(()));
        let one_layer = Manifest {
            layers: m.layers[..1].to_vec(),
            ..m.clone()
        };
        assert_eq!(
            one_layer.check_config(&c),
            Err(ManifestError::LayerCount {
                layers: 1,
                diff_ids: 2
            })
        );
        assert!(matches!(
            Document::parse(DOCKER_CONFIG, docker_config().as_bytes()),
            Ok(Document::Config(_))
        ));
    }

    #[test]
    fn parses_a_minimal_oci_manifest_and_config() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":2}},"layers":[]}}"#
        );
        let m = Manifest::parse(m.as_bytes()).unwrap();
        assert_eq!(m.media_type, None);
        assert!(m.layers.is_empty());
        let c = ImageConfig::parse(br#"{"rootfs":{"type":"layers"}}"#).unwrap();
        assert!(c.rootfs.diff_ids.is_empty());
        assert_eq!(c.os, "");
    }

    #[test]
    fn refuses_malformed_documents() {
        use DocumentKind::{Config, Index as I, Manifest as M};
        let desc = |extra: &str| {
            format!(r#"{{"mediaType":"{OCI_LAYER}","digest":"{D1}","size":1{extra}}}"#)
        };
        let manifest = |config: &str, layers: &str| {
            format!(r#"{{"schemaVersion":2,"config":{config},"layers":[{layers}]}}"#)
        };
        let good = desc("");
        let missing = |document, field: &str| ManifestError::MissingField {
            document,
            field: field.into(),
        };
        // (document kind to parse as, bytes, expected error)
        let cases: Vec<(DocumentKind, String, ManifestError)> = vec![
            (
                M,
                r#"{"schemaVersion":2,"layers":[]}"#.into(),
                missing(M, "config"),
            ),
            (
                M,
                format!(r#"{{"schemaVersion":2,"config":{good},"layers":null}}"#),
                missing(M, "layers"),
            ),
            (
                M,
                format!(r#"{{"config":{good},"layers":[]}}"#),
                missing(M, "schemaVersion"),
            ),
            (
                M,
                format!(r#"{{"schemaVersion":3,"config":{good},"layers":[]}}"#),
                ManifestError::SchemaVersion {
                    document: M,
                    found: 3,
                },
            ),
            (
                M,
                r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[{"blobSum":"sha256:0"}]}"#
                    .into(),
                ManifestError::Schema1 { document: M },
            ),
            (
                I,
                r#"{"schemaVersion":2,"fsLayers":[]}"#.into(),
                ManifestError::Schema1 { document: I },
            ),
            (
                M,
                manifest(&good, &desc("").replace(D1, "sha256:abc")),
                ManifestError::Digest {
                    document: M,
                    field: "layers[0].digest".into(),
                    value: "sha256:abc".into(),
                    source: DigestError::BadLength {
                        algorithm: crate::Algorithm::Sha256,
                        expected: 64,
                        actual: 3,
                    },
                },
            ),
            (
                M,
                manifest(&good.replace(D1, "../etc/passwd"), ""),
                ManifestError::Digest {
                    document: M,
                    field: "config.digest".into(),
                    value: "../etc/passwd".into(),
                    source: DigestError::MissingAlgorithm {
                        input: "../etc/passwd".into(),
                    },
                },
            ),
            (
                M,
                manifest(
                    &good,
                    &format!("{good},{}", good.replace("\"size\":1", "\"size\":-5")),
                ),
                ManifestError::NegativeSize {
                    document: M,
                    field: "layers[1].size".into(),
                    size: -5,
                },
            ),
            (
                M,
                manifest(&good.replace("\"size\":1", "\"size\":1.5"), ""),
                ManifestError::BadSize {
                    document: M,
                    field: "config.size".into(),
                    value: "1.5".into(),
                },
            ),
            (
                M,
                manifest(&good.replace(",\"size\":1", ""), ""),
                missing(M, "config.size"),
            ),
            (
                M,
                manifest(&format!(r#"{{"digest":"{D1}","size":1}}"#), ""),
                missing(M, "config.mediaType"),
            ),
            (
                I,
                format!(
                    r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
                    good.replace(&format!(",\"digest\":\"{D1}\""), "")
                ),
                missing(I, "manifests[0].digest"),
            ),
            (I, r#"{"schemaVersion":2}"#.into(), missing(I, "manifests")),
            (
                I,
                manifest(&good, ""),
                ManifestError::WrongDocument {
                    expected: I,
                    found: M,
                    media_type: "".into(),
                },
            ),
            (
                I,
                format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","manifests":[]}}"#),
                ManifestError::WrongDocument {
                    expected: I,
                    found: M,
                    media_type: DOCKER_MANIFEST.into(),
                },
            ),
            (
                M,
                r#"{"schemaVersion":2,"manifests":[]}"#.into(),
                ManifestError::WrongDocument {
                    expected: M,
                    found: I,
                    media_type: "".into(),
                },
            ),
            (
                M,
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","config":{good},"layers":[]}}"#
                ),
                ManifestError::WrongDocument {
                    expected: M,
                    found: I,
                    media_type: OCI_INDEX.into(),
                },
            ),
            (
                M,
                manifest(&format!(r#"["{OCI_CONFIG}","{D1}",1]"#), ""),
                ManifestError::Json {
                    document: M,
                    message: "invalid type: sequence, expected a JSON object".into(),
                    line: 1,
                    column: 28,
                },
            ),
            (
                Config,
                r#"{"os":"linux"}"#.into(),
                missing(Config, "rootfs"),
            ),
            (
                Config,
                r#"{"rootfs":{}}"#.into(),
                missing(Config, "rootfs.type"),
            ),
            (
                Config,
                r#"{"rootfs":{"type":"layerz","diff_ids":[]}}"#.into(),
                ManifestError::RootFsType {
                    found: "layerz".into(),
                },
            ),
            (
                Config,
                format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{D1}","sha256:NOPE"]}}}}"#),
                ManifestError::Digest {
                    document: Config,
                    field: "rootfs.diff_ids[1]".into(),
                    value: "sha256:NOPE".into(),
                    source: DigestError::BadLength {
                        algorithm: crate::Algorithm::Sha256,
                        expected: 64,
                        actual: 4,
                    },
                },
            ),
        ];
        for (kind, bytes, want) in cases {
            let got = match kind {
                I => Index::parse(bytes.as_bytes()).map(|_| ()),
                M => Manifest::parse(bytes.as_bytes()).map(|_| ()),
                Config => ImageConfig::parse(bytes.as_bytes()).map(|_| ()),
            };
            assert_eq!(got, Err(want.clone()), "{bytes}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn refuses_bad_json_with_its_position() {
        // (bytes, line, also refused as a config: configs have no schemaVersion)
        let cases: [(&[u8], usize, bool); 7] = [
            (b"", 1, true),
            (b"{", 1, true),
            (b"[]", 1, true),
            (b"[2]", 1, true),
            (b"{\"schemaVersion\": \"2\"}", 1, false),
            (b"{\"schemaVersion\":2,\n\"schemaVersion\":2}", 2, false),
            (b"\xff", 1, true),
        ];
        for (bytes, line, config) in cases {
            let mut results = vec![
                Index::parse(bytes).map(|_| ()),
                Manifest::parse(bytes).map(|_| ()),
            ];
            if config {
                results.push(ImageConfig::parse(bytes).map(|_| ()));
            }
            for r in results {
                match r {
                    Err(ManifestError::Json {
                        line: l, message, ..
                    }) => {
                        assert_eq!(l, line, "{bytes:?}: {message}");
                        assert!(!message.contains(" at line "), "{message}");
                    }
                    other => panic!("{bytes:?}: {other:?}"),
                }
            }
        }
        assert!(matches!(
            ImageConfig::parse(br#"{"rootfs":{"type":"layers"},"config":{"Env":"PATH"}}"#),
            Err(ManifestError::Json {
                document: DocumentKind::Config,
                line: 1,
                ..
            })
        ));
        // a huge string in the wrong place is not copied whole into the error
        let huge = format!(r#"{{"schemaVersion":"{}"}}"#, "x".repeat(100_000));
        match Manifest::parse(huge.as_bytes()) {
            Err(ManifestError::Json { message, .. }) => assert!(message.chars().count() <= 200),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Document::parse(OCI_LAYER, b"{}"),
            Err(ManifestError::NotADocument { .. })
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        // in an unknown field (skipped), in a field that says "not an index", in a typed field
        for doc in [
            format!(r#"{{"schemaVersion":2,"x":{}}}"#, nest(100_000)),
            format!(r#"{{"schemaVersion":2,"config":{}}}"#, nest(100_000)),
            format!(r#"{{"schemaVersion":2,"manifests":{}}}"#, nest(100_000)),
            format!(r#"{{"annotations":{{"a":{}}}}}"#, nest(100_000)),
        ] {
            assert!(Index::parse(doc.as_bytes()).is_err());
            assert!(Manifest::parse(doc.as_bytes()).is_err());
            assert!(ImageConfig::parse(doc.as_bytes()).is_err());
        }
    }
}
