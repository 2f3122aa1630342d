//! The daemon's shared state and the helpers every service uses.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use berth_api::{LEASE_HEADER, NAMESPACE_HEADER};
use berth_core::metadata::validate_name;
use berth_core::op::{OpError, OpKind, OpOutput};
use berth_core::Instant;
use berth_drivers::store::Store;
use berth_drivers::{Clock, Executor};
use tonic::{Request, Status};

use crate::events::Exchange;
use crate::gc::Gc;
use crate::snapshots::Snapshotters;

/// Everything the services share.
pub struct Daemon {
    /// The root directory (absolute).
    pub root: std::path::PathBuf,
    /// The metadata store.
    pub store: Store,
    /// The driver performing Ops beneath the root.
    pub exec: Arc<dyn Executor>,
    /// The clock handed to machines.
    pub clock: Arc<dyn Clock>,
    /// Event fan-out.
    pub events: Exchange,
    /// This daemon's UUID (stable across restarts).
    pub uuid: String,
    /// Ingest refs held by an open Write stream, as `(namespace, ref)`.
    pub ingest_locks: Mutex<HashSet<(String, String)>>,
    /// The snapshotters.
    pub snapshotters: Snapshotters,
    /// The garbage collector.
    pub gc: Gc,
    /// Tasks (containers running through runc).
    pub tasks: Arc<crate::tasks::Tasks>,
}

impl Daemon {
    /// The current time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Performs one Op.
    pub async fn op(&self, kind: OpKind) -> Result<OpOutput, OpError> {
        self.exec.execute(kind).await
    }

    /// Runs a metadata write on the blocking pool (redb commits fsync), holding the GC lock for
    /// reading so that a collection never sweeps between a read and this write.
    pub async fn store_write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> T {
        let _gc = self.gc.hold().await;
        self.store_write_held(f).await
    }

    /// [`Daemon::store_write`] for a caller that already holds the GC lock.
    pub async fn store_write_held<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> T {
        let store = self.store.clone();
        blocking::unblock(move || f(&store)).await
    }

    /// Takes the lock on an ingest ref; `None` if a writer holds it already.
    pub fn lock_ingest(self: &Arc<Self>, ns: &str, reference: &str) -> Option<IngestLock> {
        let key = (ns.to_string(), reference.to_string());
        let mut locks = self.ingest_locks.lock().expect("ingest locks");
        if !locks.insert(key.clone()) {
            return None;
        }
        Some(IngestLock {
            daemon: self.clone(),
            key,
        })
    }
}

/// Holds an ingest ref until dropped.
pub struct IngestLock {
    daemon: Arc<Daemon>,
    key: (String, String),
}

impl Drop for IngestLock {
    fn drop(&mut self) {
        self.daemon
            .ingest_locks
            .lock()
            .expect("ingest locks")
            .remove(&self.key);
    }
}

/// The namespace of a call: the `containerd-namespace` header, required and validated.
pub fn namespace<T>(req: &Request<T>) -> Result<String, Status> {
    let ns = req
        .metadata()
        .get(NAMESPACE_HEADER)
        .ok_or_else(|| {
            Status::failed_precondition(
                "namespace is required: set the containerd-namespace header (ctr -n NAME)",
            )
        })?
        .to_str()
        .map_err(|_| Status::invalid_argument("namespace header is not valid text"))?
        .to_string();
    validate_name(&ns).map_err(|e| Status::invalid_argument(format!("namespace: {e}")))?;
    Ok(ns)
}

/// The lease of a call, if the `containerd-lease` header is set.
pub fn lease<T>(req: &Request<T>) -> Result<Option<String>, Status> {
    match req.metadata().get(LEASE_HEADER) {
        None => Ok(None),
        Some(v) => Ok(Some(
            v.to_str()
                .map_err(|_| Status::invalid_argument("lease header is not valid text"))?
                .to_string(),
        )),
    }
}

/// An `Instant` as a protobuf timestamp.
pub fn timestamp(t: Instant) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.secs() as i64,
        nanos: t.subsec_nanos() as i32,
    }
}
