//! Content: resumable, digest-verified blob ingests.

pub mod checkpoint;
pub mod ingest;

pub use ingest::{
    Ingest, IngestError, IngestMeta, IngestPaths, Input, OpenRequest, Recovery, Reply, Status,
};
