//! The durable metadata store, on redb: namespaces, per-namespace content records, leases.
//!
//! Each mutation is one redb write transaction (durable on commit). The rules — name syntax,
//! label limits, update masks — come from `berth_core::metadata`; this module only keeps
//! records. Blob bytes are shared by every namespace on disk; a namespace sees a blob only if it
//! holds a content record for it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_core::metadata::{
    apply_label_mask, validate_labels, validate_name, LabelError, Labels, NameError,
};
use berth_core::{Digest, Instant};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const NAMESPACES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("namespaces");
/// A table of JSON records keyed by (namespace, key).
type NsTable = TableDefinition<'static, (&'static str, &'static str), &'static [u8]>;
const CONTENT: NsTable = TableDefinition::new("content");
const LEASES: NsTable = TableDefinition::new("leases");
const IMAGES: NsTable = TableDefinition::new("images");
const CONTAINERS: NsTable = TableDefinition::new("containers");
/// Each snapshotter's snapshot tree, serialised (JSON), by snapshotter name.
const SNAPSHOTTERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("snapshotters");
const LEASE_RESOURCES: TableDefinition<'_, (&str, &str, &str, &str), ()> =
    TableDefinition::new("lease_resources");

/// A metadata error, with the facts a caller needs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist.
    #[error("{0}: not found")]
    NotFound(String),
    /// The object exists already.
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// The operation is not allowed in the object's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A request field is invalid.
    #[error("{0}")]
    InvalidArgument(String),
    /// A name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Labels or an update mask are invalid.
    #[error(transparent)]
    Labels(#[from] LabelError),
    /// The database failed.
    #[error("metadata database: {0}")]
    Db(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

/// Result of a store call.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NamespaceRecord {
    /// Its labels.
    pub labels: Labels,
}

/// A namespace's record of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecord {
    /// The blob's size.
    pub size: u64,
    /// When the namespace first got it.
    pub created_at: Instant,
    /// Last label change.
    pub updated_at: Instant,
    /// Labels.
    pub labels: Labels,
}

/// A protobuf `Any` as stored: its type URL and bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnyRecord {
    /// The type URL.
    pub type_url: String,
    /// The encoded message.
    pub value: Vec<u8>,
}

/// A container record (containerd's `Container`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Labels.
    pub labels: Labels,
    /// The image name.
    pub image: String,
    /// The runtime's name (`io.containerd.runc.v2`).
    pub runtime: String,
    /// The runtime's options.
    pub runtime_options: Option<AnyRecord>,
    /// The OCI runtime spec.
    pub spec: Option<AnyRecord>,
    /// The snapshotter of the rootfs snapshot.
    pub snapshotter: String,
    /// The rootfs snapshot's key.
    pub snapshot_key: String,
    /// Creation time.
    pub created_at: Instant,
    /// Last change.
    pub updated_at: Instant,
    /// Extensions.
    pub extensions: BTreeMap<String, AnyRecord>,
    /// The sandbox id (containerd 2.x).
    pub sandbox: String,
}

/// A lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Creation time.
    pub created_at: Instant,
    /// Labels (e.g. `containerd.io/gc.expire`).
    pub labels: Labels,
}

/// An OCI descriptor as an image target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Annotations.
    pub annotations: Labels,
}

/// A named image in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Labels.
    pub labels: Labels,
    /// The root descriptor (index or manifest).
    pub target: Descriptor,
    /// Creation time.
    pub created_at: Instant,
    /// Last update.
    pub updated_at: Instant,
}

/// A resource held by a lease: `(type, id)`, e.g. `("content", "sha256:…")`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaseResource {
    /// `content`, `ingests` or `snapshots/<snapshotter>`.
    pub kind: String,
    /// The resource's id.
    pub id: String,
}

impl LeaseResource {
    /// Snapshot `key` of `snapshotter`.
    pub fn snapshot(snapshotter: &str, key: &str) -> Self {
        LeaseResource {
            kind: format!("snapshots/{snapshotter}"),
            id: key.to_string(),
        }
    }
}

/// What a content delete left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentDeleted {
    /// Another namespace still has a record of the blob, so its bytes must stay.
    pub still_referenced: bool,
}

/// The metadata store. Cloning shares the database.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

fn ensure_ns(tx: &redb::WriteTransaction, ns: &str) -> Result<bool> {
    validate_name(ns)?;
    let mut t = tx.open_table(NAMESPACES)?;
    if t.get(ns)?.is_some() {
        return Ok(false);
    }
    t.insert(
        ns,
        serde_json::to_vec(&NamespaceRecord::default())?.as_slice(),
    )?;
    Ok(true)
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(NAMESPACES)?;
        tx.open_table(CONTENT)?;
        tx.open_table(LEASES)?;
        tx.open_table(LEASE_RESOURCES)?;
        tx.open_table(IMAGES)?;
        tx.open_table(SNAPSHOTTERS)?;
        tx.open_table(CONTAINERS)?;
        tx.commit()?;
        Ok(Store { db: Arc::new(db) })
    }

    // ---- namespaces ------------------------------------------------------------------------

    /// Creates a namespace. AlreadyExists if it exists.
    pub fn namespace_create(&self, name: &str, labels: &Labels) -> Result<()> {
        validate_name(name)?;
        validate_labels(labels)?;
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(NAMESPACES)?;
            if t.get(name)?.is_some() {
                return Err(StoreError::AlreadyExists(format!("namespace {name:?}")));
            }
            let rec = NamespaceRecord {
                labels: labels.clone(),
            };
            t.insert(name, serde_json::to_vec(&rec)?.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Creates the namespace if missing (implicit creation). Returns true if it was created.
    pub fn namespace_ensure(&self, name: &str) -> Result<bool> {
        if self.namespace_get(name)?.is_some() {
            return Ok(false);
        }
        let tx = self.db.begin_write()?;
        let created = ensure_ns(&tx, name)?;
        tx.commit()?;
        Ok(created)
    }

    /// A namespace's labels, or `None` if it does not exist.
    pub fn namespace_get(&self, name: &str) -> Result<Option<Labels>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NAMESPACES)?;
        Ok(match t.get(name)? {
            Some(v) => Some(serde_json::from_slice::<NamespaceRecord>(v.value())?.labels),
            None => None,
        })
    }

    /// Every namespace, sorted by name.
    pub fn namespace_list(&self) -> Result<Vec<(String, Labels)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NAMESPACES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((
                k.value().to_string(),
                serde_json::from_slice::<NamespaceRecord>(v.value())?.labels,
            ));
        }
        Ok(out)
    }

    /// Updates a namespace's labels through an update mask. NotFound if it does not exist.
    pub fn namespace_update(
        &self,
        name: &str,
        labels: &Labels,
        paths: &[String],
    ) -> Result<Labels> {
        let tx = self.db.begin_write()?;
        let out = {
            let mut t = tx.open_table(NAMESPACES)?;
            let cur = match t.get(name)? {
                Some(v) => serde_json::from_slice::<NamespaceRecord>(v.value())?,
                None => return Err(StoreError::NotFound(format!("namespace {name:?}"))),
            };
            let labels = apply_label_mask(&cur.labels, labels, paths, |_| false)?;
            t.insert(
                name,
                serde_json::to_vec(&NamespaceRecord {
                    labels: labels.clone(),
                })?
                .as_slice(),
            )?;
            labels
        };
        tx.commit()?;
        Ok(out)
    }

    /// Deletes an empty namespace (its leases go with it). NotFound if missing;
    /// FailedPrecondition if it still holds blobs.
    pub fn namespace_delete(&self, name: &str) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(NAMESPACES)?;
            if t.get(name)?.is_none() {
                return Err(StoreError::NotFound(format!("namespace {name:?}")));
            }
            let mut still = Vec::new();
            if has_rows(&tx.open_table(IMAGES)?, name)? {
                still.push("images");
            }
            if has_rows(&tx.open_table(CONTENT)?, name)? {
                still.push("blobs");
            }
            if has_rows(&tx.open_table(CONTAINERS)?, name)? {
                still.push("containers");
            }
            if !still.is_empty() {
                return Err(StoreError::FailedPrecondition(format!(
                    "namespace {name:?} must be empty, but it still has {}",
                    still.join(", ")
                )));
            }
            t.remove(name)?;
            let mut leases = tx.open_table(LEASES)?;
            let ids: Vec<String> = leases
                .range((name, "")..)?
                .map_while(|r| {
                    r.ok()
                        .filter(|(k, _)| k.value().0 == name)
                        .map(|(k, _)| k.value().1.to_string())
                })
                .collect();
            let mut res = tx.open_table(LEASE_RESOURCES)?;
            for id in ids {
                leases.remove((name, id.as_str()))?;
                remove_lease_resources(&mut res, name, &id)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The JSON record under (`ns`, `key`) of a per-namespace table, or `None`.
    fn ns_get<T: for<'de> Deserialize<'de>>(
        &self,
        table: NsTable,
        ns: &str,
        key: &str,
    ) -> Result<Option<T>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        Ok(match t.get((ns, key))? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// Every JSON record of namespace `ns` in a per-namespace table, sorted by key.
    fn ns_list<T: for<'de> Deserialize<'de>>(
        &self,
        table: NsTable,
        ns: &str,
    ) -> Result<Vec<(String, T)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        let mut out = Vec::new();
        for row in t.range((ns, "")..)? {
            let (k, v) = row?;
            let (kns, key) = k.value();
            if kns != ns {
                break;
            }
            out.push((key.to_string(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    // ---- content ---------------------------------------------------------------------------

    /// A namespace's record of a blob.
    pub fn content_get(&self, ns: &str, digest: &Digest) -> Result<Option<ContentRecord>> {
        self.ns_get(CONTENT, ns, &digest.to_string())
    }

    /// Every blob record of a namespace, sorted by digest.
    pub fn content_list(&self, ns: &str) -> Result<Vec<(Digest, ContentRecord)>> {
        self.ns_list(CONTENT, ns)?
            .into_iter()
            .map(|(d, rec)| {
                let digest = Digest::parse(&d)
                    .map_err(|e| StoreError::Db(format!("bad digest key {d:?}: {e}")))?;
                Ok((digest, rec))
            })
            .collect()
    }

    /// Records that `ns` has the blob `digest` (creating the namespace if needed) and, under a
    /// lease, adds it to the lease. Returns false if the record already existed (labels are then
    /// left as they were).
    pub fn content_add(
        &self,
        ns: &str,
        digest: &Digest,
        size: u64,
        labels: &Labels,
        lease: Option<&str>,
        now: Instant,
    ) -> Result<bool> {
        validate_labels(labels)?;
        let key = digest.to_string();
        let tx = self.db.begin_write()?;
        ensure_ns(&tx, ns)?;
        let created = {
            let mut t = tx.open_table(CONTENT)?;
            if t.get((ns, key.as_str()))?.is_some() {
                false
            } else {
                let rec = ContentRecord {
                    size,
                    created_at: now,
                    updated_at: now,
                    labels: labels.clone(),
                };
                t.insert((ns, key.as_str()), serde_json::to_vec(&rec)?.as_slice())?;
                true
            }
        };
        if let Some(lease) = lease {
            add_resource(&tx, ns, lease, "content", &key)?;
        }
        tx.commit()?;
        Ok(created)
    }

    /// Updates a blob record's labels through an update mask (`labels`, `labels.<key>`; no mask
    /// replaces all labels). NotFound if the namespace has no such blob.
    pub fn content_update(
        &self,
        ns: &str,
        digest: &Digest,
        labels: &Labels,
        paths: &[String],
        now: Instant,
    ) -> Result<ContentRecord> {
        let key = digest.to_string();
        let tx = self.db.begin_write()?;
        let rec = {
            let mut t = tx.open_table(CONTENT)?;
            let mut rec: ContentRecord = match t.get((ns, key.as_str()))? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => return Err(StoreError::NotFound(format!("content {key}"))),
            };
            rec.labels = apply_label_mask(&rec.labels, labels, paths, |_| false)?;
            rec.updated_at = now;
            t.insert((ns, key.as_str()), serde_json::to_vec(&rec)?.as_slice())?;
            rec
        };
        tx.commit()?;
        Ok(rec)
    }

    /// Deletes a namespace's record of a blob. NotFound if it has none.
    pub fn content_delete(&self, ns: &str, digest: &Digest) -> Result<ContentDeleted> {
        let key = digest.to_string();
        let tx = self.db.begin_write()?;
        let still_referenced = {
            let mut t = tx.open_table(CONTENT)?;
            if t.remove((ns, key.as_str()))?.is_none() {
                return Err(StoreError::NotFound(format!("content {key}")));
            }
            let mut referenced = false;
            for row in t.iter()? {
                let (k, _) = row?;
                if k.value().1 == key {
                    referenced = true;
                    break;
                }
            }
            referenced
        };
        tx.commit()?;
        Ok(ContentDeleted { still_referenced })
    }

    // ---- images ----------------------------------------------------------------------------

    /// An image by name.
    pub fn image_get(&self, ns: &str, name: &str) -> Result<Option<ImageRecord>> {
        self.ns_get(IMAGES, ns, name)
    }

    /// A namespace's images, sorted by name.
    pub fn image_list(&self, ns: &str) -> Result<Vec<(String, ImageRecord)>> {
        self.ns_list(IMAGES, ns)
    }

    /// Creates an image. AlreadyExists if the name is taken.
    pub fn image_create(
        &self,
        ns: &str,
        name: &str,
        labels: &Labels,
        target: &Descriptor,
        now: Instant,
    ) -> Result<ImageRecord> {
        validate_image(name, target)?;
        validate_labels(labels)?;
        let tx = self.db.begin_write()?;
        ensure_ns(&tx, ns)?;
        let rec = {
            let mut t = tx.open_table(IMAGES)?;
            if t.get((ns, name))?.is_some() {
                return Err(StoreError::AlreadyExists(format!("image {name:?}")));
            }
            let rec = ImageRecord {
                labels: labels.clone(),
                target: target.clone(),
                created_at: now,
                updated_at: now,
            };
            t.insert((ns, name), serde_json::to_vec(&rec)?.as_slice())?;
            rec
        };
        tx.commit()?;
        Ok(rec)
    }

    /// Updates an image. With no mask paths, labels and target are replaced (created_at kept);
    /// paths may be `labels`, `labels.<k>`, `target`, `annotations`, `annotations.<k>`.
    pub fn image_update(
        &self,
        ns: &str,
        name: &str,
        labels: &Labels,
        target: &Descriptor,
        paths: &[String],
        now: Instant,
    ) -> Result<ImageRecord> {
        let tx = self.db.begin_write()?;
        let rec = {
            let mut t = tx.open_table(IMAGES)?;
            let mut rec: ImageRecord = match t.get((ns, name))? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => return Err(StoreError::NotFound(format!("image {name:?}"))),
            };
            if paths.is_empty() {
                validate_image(name, target)?;
                rec.target = target.clone();
            }
            let mut new_target = rec.target.clone();
            let mut target_set = false;
            let mut annotation_paths = Vec::new();
            rec.labels = apply_label_mask(&rec.labels, labels, paths, |p| {
                if p == "target" {
                    target_set = true;
                    true
                } else if p == "annotations" || p.starts_with("annotations.") {
                    annotation_paths.push(p.replacen("annotations", "labels", 1));
                    true
                } else {
                    false
                }
            })?;
            if target_set {
                validate_image(name, target)?;
                new_target = target.clone();
            }
            if !annotation_paths.is_empty() {
                new_target.annotations = apply_label_mask(
                    &new_target.annotations,
                    &target.annotations,
                    &annotation_paths,
                    |_| false,
                )?;
            }
            rec.target = new_target;
            rec.updated_at = now;
            t.insert((ns, name), serde_json::to_vec(&rec)?.as_slice())?;
            rec
        };
        tx.commit()?;
        Ok(rec)
    }

    /// Deletes an image record (its content stays until garbage collection). NotFound if missing.
    pub fn image_delete(&self, ns: &str, name: &str) -> Result<()> {
        let tx = self.db.begin_write()?;
        if tx.open_table(IMAGES)?.remove((ns, name))?.is_none() {
            return Err(StoreError::NotFound(format!("image {name:?}")));
        }
        tx.commit()?;
        Ok(())
    }

    // ---- leases ----------------------------------------------------------------------------

    /// Creates a lease. AlreadyExists on a duplicate id.
    pub fn lease_create(
        &self,
        ns: &str,
        id: &str,
        labels: &Labels,
        now: Instant,
    ) -> Result<LeaseRecord> {
        if id.is_empty() {
            return Err(StoreError::FailedPrecondition(
                "lease id must not be empty".into(),
            ));
        }
        validate_labels(labels)?;
        let tx = self.db.begin_write()?;
        ensure_ns(&tx, ns)?;
        let rec = {
            let mut t = tx.open_table(LEASES)?;
            if t.get((ns, id))?.is_some() {
                return Err(StoreError::AlreadyExists(format!("lease {id:?}")));
            }
            let rec = LeaseRecord {
                created_at: now,
                labels: labels.clone(),
            };
            t.insert((ns, id), serde_json::to_vec(&rec)?.as_slice())?;
            rec
        };
        tx.commit()?;
        Ok(rec)
    }

    /// A lease, or `None`.
    pub fn lease_get(&self, ns: &str, id: &str) -> Result<Option<LeaseRecord>> {
        self.ns_get(LEASES, ns, id)
    }

    /// A namespace's leases, sorted by id.
    pub fn lease_list(&self, ns: &str) -> Result<Vec<(String, LeaseRecord)>> {
        self.ns_list(LEASES, ns)
    }

    /// Deletes a lease and its resource list. NotFound if missing.
    pub fn lease_delete(&self, ns: &str, id: &str) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(LEASES)?;
            if t.remove((ns, id))?.is_none() {
                return Err(StoreError::NotFound(format!("lease {id:?}")));
            }
            let mut res = tx.open_table(LEASE_RESOURCES)?;
            remove_lease_resources(&mut res, ns, id)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds a resource to a lease. NotFound if the lease is missing.
    pub fn lease_add_resource(&self, ns: &str, id: &str, r: &LeaseResource) -> Result<()> {
        self.lease_add_resource_new(ns, id, r).map(|_| ())
    }

    /// As [`Store::lease_add_resource`]; `true` if the lease did not hold the resource yet.
    pub fn lease_add_resource_new(&self, ns: &str, id: &str, r: &LeaseResource) -> Result<bool> {
        let tx = self.db.begin_write()?;
        let new = add_resource(&tx, ns, id, &r.kind, &r.id)?;
        tx.commit()?;
        Ok(new)
    }

    /// Removes a resource from a lease. NotFound if the lease is missing.
    pub fn lease_delete_resource(&self, ns: &str, id: &str, r: &LeaseResource) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            if tx.open_table(LEASES)?.get((ns, id))?.is_none() {
                return Err(StoreError::NotFound(format!("lease {id:?}")));
            }
            tx.open_table(LEASE_RESOURCES)?
                .remove((ns, id, r.kind.as_str(), r.id.as_str()))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every namespace name (the keys of the namespaces table), sorted.
    pub fn namespace_names(&self) -> Result<Vec<String>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NAMESPACES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(row?.0.value().to_string());
        }
        Ok(out)
    }

    // ---- containers ------------------------------------------------------------------------

    /// A container by id.
    pub fn container_get(&self, ns: &str, id: &str) -> Result<Option<ContainerRecord>> {
        self.ns_get(CONTAINERS, ns, id)
    }

    /// A namespace's containers, sorted by id.
    pub fn container_list(&self, ns: &str) -> Result<Vec<(String, ContainerRecord)>> {
        self.ns_list(CONTAINERS, ns)
    }

    /// Creates a container (the namespace comes into existence). AlreadyExists if the id is
    /// taken; the id must be a valid name.
    pub fn container_create(&self, ns: &str, id: &str, rec: &ContainerRecord) -> Result<()> {
        validate_name(id).map_err(|e| StoreError::InvalidArgument(format!("container id: {e}")))?;
        validate_labels(&rec.labels)?;
        let tx = self.db.begin_write()?;
        ensure_ns(&tx, ns)?;
        {
            let mut t = tx.open_table(CONTAINERS)?;
            if t.get((ns, id))?.is_some() {
                return Err(StoreError::AlreadyExists(format!("container {id:?}")));
            }
            t.insert((ns, id), serde_json::to_vec(rec)?.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Changes a container in one transaction. NotFound if missing.
    pub fn container_update(
        &self,
        ns: &str,
        id: &str,
        change: impl FnOnce(&mut ContainerRecord) -> Result<()>,
    ) -> Result<ContainerRecord> {
        let tx = self.db.begin_write()?;
        let rec = {
            let mut t = tx.open_table(CONTAINERS)?;
            let mut rec: ContainerRecord = match t.get((ns, id))? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => return Err(StoreError::NotFound(format!("container {id:?}"))),
            };
            change(&mut rec)?;
            validate_labels(&rec.labels)?;
            t.insert((ns, id), serde_json::to_vec(&rec)?.as_slice())?;
            rec
        };
        tx.commit()?;
        Ok(rec)
    }

    /// Deletes a container record. NotFound if missing.
    pub fn container_delete(&self, ns: &str, id: &str) -> Result<()> {
        let tx = self.db.begin_write()?;
        if tx.open_table(CONTAINERS)?.remove((ns, id))?.is_none() {
            return Err(StoreError::NotFound(format!("container {id:?}")));
        }
        tx.commit()?;
        Ok(())
    }

    // ---- snapshotters ----------------------------------------------------------------------

    /// The persisted state of a snapshotter (its serialised tree), if any.
    pub fn snapshotter_load(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SNAPSHOTTERS)?;
        Ok(t.get(name)?.map(|v| v.value().to_vec()))
    }

    /// Replaces the persisted state of a snapshotter, atomically and durably.
    pub fn snapshotter_save(&self, name: &str, state: &[u8]) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(SNAPSHOTTERS)?.insert(name, state)?;
        tx.commit()?;
        Ok(())
    }

    /// The resources of a lease. NotFound if the lease is missing.
    pub fn lease_resources(&self, ns: &str, id: &str) -> Result<Vec<LeaseResource>> {
        let tx = self.db.begin_read()?;
        if tx.open_table(LEASES)?.get((ns, id))?.is_none() {
            return Err(StoreError::NotFound(format!("lease {id:?}")));
        }
        let t = tx.open_table(LEASE_RESOURCES)?;
        let mut out = Vec::new();
        for row in t.range((ns, id, "", "")..)? {
            let (k, _) = row?;
            let (kns, kid, kind, rid) = k.value();
            if kns != ns || kid != id {
                break;
            }
            out.push(LeaseResource {
                kind: kind.to_string(),
                id: rid.to_string(),
            });
        }
        Ok(out)
    }
}

fn has_rows(t: &redb::Table<'_, (&str, &str), &[u8]>, ns: &str) -> Result<bool> {
    Ok(t.range((ns, "")..)?
        .next()
        .transpose()?
        .is_some_and(|(k, _)| k.value().0 == ns))
}

fn validate_image(name: &str, target: &Descriptor) -> Result<()> {
    let bad = |what: &str| {
        Err(StoreError::InvalidArgument(format!(
            "image {name:?}: {what}"
        )))
    };
    if name.is_empty() {
        return bad("a name is required");
    }
    if target.media_type.is_empty() {
        return bad("the target needs a media type");
    }
    if target.size == 0 {
        return bad("the target needs a size greater than zero");
    }
    Ok(())
}

/// Adds a resource to a lease; `true` if the lease did not hold it yet.
fn add_resource(
    tx: &redb::WriteTransaction,
    ns: &str,
    lease: &str,
    kind: &str,
    id: &str,
) -> Result<bool> {
    if tx.open_table(LEASES)?.get((ns, lease))?.is_none() {
        return Err(StoreError::NotFound(format!(
            "lease {lease:?} does not exist"
        )));
    }
    let old = tx
        .open_table(LEASE_RESOURCES)?
        .insert((ns, lease, kind, id), ())?
        .is_some();
    Ok(!old)
}

fn remove_lease_resources(
    t: &mut redb::Table<'_, (&str, &str, &str, &str), ()>,
    ns: &str,
    id: &str,
) -> Result<()> {
    let keys: Vec<(String, String)> = t
        .range((ns, id, "", "")..)?
        .map_while(|r| {
            r.ok().and_then(|(k, _)| {
                let (a, b, c, d) = k.value();
                (a == ns && b == id).then(|| (c.to_string(), d.to_string()))
            })
        })
        .collect();
    for (kind, rid) in keys {
        t.remove((ns, id, kind.as_str(), rid.as_str()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("m.redb")).unwrap();
        (dir, s)
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn namespaces_follow_containerd_rules() {
        let (_d, s) = store();
        s.namespace_create("a", &labels(&[("x", "1")])).unwrap();
        assert!(matches!(
            s.namespace_create("a", &Labels::new()),
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(matches!(
            s.namespace_create("bad name", &Labels::new()),
            Err(StoreError::Name(_))
        ));
        let l = s
            .namespace_update("a", &labels(&[("y", "2")]), &["labels.y".into()])
            .unwrap();
        assert_eq!(l, labels(&[("x", "1"), ("y", "2")]));
        assert!(s.namespace_get("nope").unwrap().is_none());
        let d = Digest::sha256(b"x");
        s.content_add("a", &d, 1, &Labels::new(), None, Instant(1))
            .unwrap();
        assert!(matches!(
            s.namespace_delete("a"),
            Err(StoreError::FailedPrecondition(_))
        ));
        s.content_delete("a", &d).unwrap();
        s.namespace_delete("a").unwrap();
        assert!(matches!(
            s.namespace_delete("a"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn content_is_per_namespace_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        let d = Digest::sha256(b"blob");
        {
            let s = Store::open(&path).unwrap();
            assert!(s
                .content_add("a", &d, 4, &Labels::new(), None, Instant(1))
                .unwrap());
            assert!(!s
                .content_add("a", &d, 4, &Labels::new(), None, Instant(2))
                .unwrap());
            assert!(s
                .content_add("b", &d, 4, &Labels::new(), None, Instant(3))
                .unwrap());
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.content_list("a").unwrap().len(), 1);
        assert!(s.content_get("c", &d).unwrap().is_none());
        assert!(s.content_delete("a", &d).unwrap().still_referenced);
        assert!(!s.content_delete("b", &d).unwrap().still_referenced);
        assert!(matches!(
            s.content_delete("b", &d),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn leases_hold_resources() {
        let (_d, s) = store();
        s.lease_create("ns", "l1", &Labels::new(), Instant(5))
            .unwrap();
        assert!(matches!(
            s.lease_create("ns", "l1", &Labels::new(), Instant(5)),
            Err(StoreError::AlreadyExists(_))
        ));
        let d = Digest::sha256(b"q");
        s.content_add("ns", &d, 1, &Labels::new(), Some("l1"), Instant(6))
            .unwrap();
        assert!(matches!(
            s.content_add("ns", &d, 1, &Labels::new(), Some("nope"), Instant(6)),
            Err(StoreError::NotFound(_))
        ));
        let r = LeaseResource {
            kind: "ingests".into(),
            id: "ref-1".into(),
        };
        assert!(s.lease_add_resource_new("ns", "l1", &r).unwrap());
        assert!(!s.lease_add_resource_new("ns", "l1", &r).unwrap());
        assert_eq!(s.lease_resources("ns", "l1").unwrap().len(), 2);
        s.lease_delete_resource("ns", "l1", &r).unwrap();
        assert_eq!(
            s.lease_resources("ns", "l1").unwrap(),
            vec![LeaseResource {
                kind: "content".into(),
                id: d.to_string()
            }]
        );
        s.lease_delete("ns", "l1").unwrap();
        assert!(matches!(
            s.lease_resources("ns", "l1"),
            Err(StoreError::NotFound(_))
        ));
    }
}
