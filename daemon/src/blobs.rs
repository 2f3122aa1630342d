//! Writing blobs into the content store outside the Content.Write stream: berthd's own pulls
//! and imports. A blob is written to a private temporary file under `content/ingest`, its digest
//! checked, fsynced and renamed into `content/blobs` — the same atomic publish the Ingest machine
//! does — and then recorded in the namespace (under a lease, if given).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use berth_core::digest::Hasher;
use berth_core::metadata::Labels;
use berth_core::Digest;
use berth_drivers::layout::INGEST;
use berth_drivers::Layout;
use tonic::Status;

use crate::errors::status;
use crate::state::Daemon;

/// A blob being written: a temporary file and the running hash of its bytes.
pub struct BlobFile {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    hash: Hasher,
    len: u64,
    /// Keep the partial file when dropped uncommitted (a resumable download).
    keep: bool,
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Status {
    let msg = format!("{what} {}", path.display());
    move |e| Status::internal(format!("{msg}: {e}"))
}

impl BlobFile {
    /// Starts writing the blob `digest` under `root`.
    pub fn create(root: &Path, digest: &Digest) -> Result<Self, Status> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(INGEST);
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let tmp = dir.join(format!(
            "tmp-{}-{n}-{}",
            std::process::id(),
            &digest.hex()[..16]
        ));
        let file = File::create(&tmp).map_err(io("creating", &tmp))?;
        Ok(BlobFile {
            file,
            tmp,
            dest: root.join(Layout::blob(digest)),
            hash: Hasher::new(digest.algorithm()),
            len: 0,
            keep: false,
        })
    }

    /// Opens the resumable download of `digest`: `content/ingest/pull-<hex>`, kept when dropped
    /// uncommitted (a crash or a network failure) so that the next pull continues it. Returns
    /// the file and the bytes already there (`feed` gets them, in order, so the caller can hash
    /// and unpack the prefix without downloading it again). The caller holds the download's
    /// lock: two writers never share the file.
    pub fn resume(
        root: &Path,
        digest: &Digest,
        size: u64,
        mut feed: impl FnMut(&[u8]) -> Result<(), Status>,
    ) -> Result<(Self, u64), Status> {
        use std::io::{Read, Seek};
        let dir = root.join(INGEST);
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let tmp = dir.join(format!("pull-{}", digest.hex()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&tmp)
            .map_err(io("opening", &tmp))?;
        let have = file.metadata().map_err(io("stat", &tmp))?.len();
        let mut hash = Hasher::new(digest.algorithm());
        let mut len = 0u64;
        if have > size {
            file.set_len(0).map_err(io("truncating", &tmp))?;
        } else {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).map_err(io("reading", &tmp))?;
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
                feed(&buf[..n])?;
                len += n as u64;
            }
        }
        file.seek(std::io::SeekFrom::Start(len))
            .map_err(io("seeking", &tmp))?;
        Ok((
            BlobFile {
                file,
                tmp,
                dest: root.join(Layout::blob(digest)),
                hash,
                len,
                keep: true,
            },
            len,
        ))
    }

    /// Drops the partial file instead of keeping it (its bytes are known bad).
    pub fn discard(mut self) {
        self.keep = false;
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<(), Status> {
        self.hash.update(data);
        self.len += data.len() as u64;
        self.file.write_all(data).map_err(io("writing", &self.tmp))
    }

    /// Checks the digest and size, makes the bytes durable and publishes the blob.
    pub fn commit(self, expected: &Digest, size: u64) -> Result<(), Status> {
        let got = self.hash.digest();
        if got != *expected || self.len != size {
            self.discard_now();
            return Err(Status::data_loss(format!(
                "blob {expected} ({size} bytes): received {} bytes hashing to {got}",
                self.len
            )));
        }
        self.file.sync_all().map_err(io("syncing", &self.tmp))?;
        if let Some(dir) = self.dest.parent() {
            std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(io("publishing", &self.dest))?;
        Ok(())
    }
}

impl BlobFile {
    fn discard_now(&self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl Drop for BlobFile {
    fn drop(&mut self) {
        // After a commit the temporary name is gone; otherwise leave nothing behind, unless
        // this is a resumable download.
        if !self.keep {
            self.discard_now();
        }
    }
}

/// True if the blob's bytes are in the shared store.
pub fn blob_exists(root: &Path, digest: &Digest) -> bool {
    root.join(Layout::blob(digest)).is_file()
}

/// Records a blob (already in the store) in `ns` with `labels` merged in, under `lease`.
pub async fn record(
    d: &Arc<Daemon>,
    ns: &str,
    lease: Option<&str>,
    digest: &Digest,
    size: u64,
    labels: Labels,
) -> Result<(), Status> {
    let (n, l, dg, now) = (ns.to_string(), lease.map(str::to_string), *digest, d.now());
    d.store_write(move |s| {
        let created = s.content_add(&n, &dg, size, &labels, l.as_deref(), now)?;
        if !created && !labels.is_empty() {
            let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
            s.content_update(&n, &dg, &labels, &paths, now)?;
        }
        Ok::<_, berth_drivers::store::StoreError>(())
    })
    .await
    .map_err(status)
}

/// Writes a small blob held in memory (manifests, configs, indexes) and records it.
pub async fn put(
    d: &Arc<Daemon>,
    ns: &str,
    lease: Option<&str>,
    digest: &Digest,
    bytes: bytes::Bytes,
    labels: Labels,
) -> Result<(), Status> {
    let size = bytes.len() as u64;
    if !blob_exists(&d.root, digest) {
        let (root, dg) = (d.root.clone(), *digest);
        blocking::unblock(move || {
            let mut f = BlobFile::create(&root, &dg)?;
            f.write(&bytes)?;
            f.commit(&dg, size)
        })
        .await?;
    }
    record(d, ns, lease, digest, size, labels).await
}

/// Reads a whole (small) blob the namespace has.
pub async fn read(d: &Arc<Daemon>, ns: &str, digest: &Digest) -> Result<Vec<u8>, Status> {
    if d.store.content_get(ns, digest).map_err(status)?.is_none() {
        return Err(Status::not_found(format!("content {digest}: not found")));
    }
    let path = d.root.join(Layout::blob(digest));
    blocking::unblock(move || std::fs::read(&path).map_err(io("reading", &path))).await
}

/// Reads a whole (small) blob from the shared store, whatever namespace has it.
pub async fn read_any(d: &Arc<Daemon>, digest: &Digest) -> Result<Vec<u8>, Status> {
    let path = d.root.join(Layout::blob(digest));
    blocking::unblock(move || std::fs::read(&path).map_err(io("reading", &path))).await
}

/// The first `n` bytes of a blob (fewer if it is shorter).
pub async fn read_prefix(d: &Arc<Daemon>, digest: &Digest, n: usize) -> Result<Vec<u8>, Status> {
    use std::io::Read;
    let path = d.root.join(Layout::blob(digest));
    blocking::unblock(move || {
        let mut f = File::open(&path).map_err(io("opening", &path))?;
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match f.read(&mut buf[got..]).map_err(io("reading", &path))? {
                0 => break,
                k => got += k,
            }
        }
        buf.truncate(got);
        Ok(buf)
    })
    .await
}
