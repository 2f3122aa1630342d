//! The on-disk layout under berthd's root directory.
//!
//! ```text
//! <root>/metadata.redb                     namespaces, content records, leases
//! <root>/content/blobs/<alg>/<hex>         committed blobs, shared by every namespace
//! <root>/content/ingest/<key>/{meta,data,state}
//!                                          ingests in progress; key = sha256(namespace NUL ref)
//! ```

use std::path::{Path, PathBuf};

use berth_core::content::IngestPaths;
use berth_core::Digest;

/// Relative path of the blob directory.
pub const BLOBS: &str = "content/blobs";
/// Relative path of the ingest directory.
pub const INGEST: &str = "content/ingest";

/// Paths under one root directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The metadata database file.
    pub fn metadata_db(&self) -> PathBuf {
        self.root.join("metadata.redb")
    }

    /// A blob's path relative to the root.
    pub fn blob(digest: &Digest) -> String {
        format!("{BLOBS}/{}/{}", digest.algorithm(), digest.hex())
    }

    /// The directory name of the ingest of `reference` in `namespace`.
    pub fn ingest_key(namespace: &str, reference: &str) -> String {
        let mut key = Vec::with_capacity(namespace.len() + reference.len() + 1);
        key.extend_from_slice(namespace.as_bytes());
        key.push(0);
        key.extend_from_slice(reference.as_bytes());
        Digest::sha256(&key).hex()[..40].to_string()
    }

    /// The ingest paths for `reference` in `namespace`, relative to the root.
    pub fn ingest(namespace: &str, reference: &str) -> IngestPaths {
        IngestPaths {
            dir: format!("{INGEST}/{}", Self::ingest_key(namespace, reference)),
            blobs: BLOBS.to_string(),
        }
    }
}
