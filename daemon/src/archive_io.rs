//! Image archives: export as an OCI image layout tar (with a docker-archive `manifest.json` so
//! `docker load` reads it too), and import of OCI layout and docker-archive tars.
//!
//! Import reads the archive once, sequentially: every blob is streamed into the content store
//! with its digest checked (names in the archive are never used as host paths), then the
//! images are recorded and unpacked from the local blobs, all layers in parallel (the pull's
//! unpack path). Export writes the blobs of each image's DAG the namespace has.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_core::image::labels::{children_gc_labels, Children};
use berth_core::image::manifest::{Descriptor, Document};
use berth_core::image::media;
use berth_core::image::reference::Reference;
use berth_core::metadata::Labels;
use berth_core::Digest;
use berth_drivers::Layout;
use serde_json::{json, Value};
use tonic::Status;

use crate::blobs::{self, BlobFile};
use crate::errors::status;
use crate::state::Daemon;

/// Annotation naming an image in an OCI layout's index.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name.
const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

fn bad_archive(what: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("image archive: {what}"))
}

fn io_status(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Status {
    let msg = format!("{what} {}", path.display());
    move |e| Status::internal(format!("{msg}: {e}"))
}

/// The blobs of an image DAG the namespace has, root first, each once.
pub async fn walk(d: &Arc<Daemon>, ns: &str, root: &Descriptor) -> Result<Vec<Descriptor>, Status> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue = vec![root.clone()];
    while let Some(desc) = queue.pop() {
        if !seen.insert(desc.digest) {
            continue;
        }
        let has = d
            .store
            .content_get(ns, &desc.digest)
            .map_err(status)?
            .is_some();
        if !has {
            // An index may list platforms that were not pulled: skip what is absent, as
            // containerd's export does for non-selected platforms.
            if media::is_layer(&desc.media_type) || media::is_known_config(&desc.media_type) {
                return Err(Status::not_found(format!(
                    "content {} is missing",
                    desc.digest
                )));
            }
            continue;
        }
        if media::is_index(&desc.media_type) || media::is_manifest(&desc.media_type) {
            let bytes = blobs::read(d, ns, &desc.digest).await?;
            let doc = Document::parse(&desc.media_type, &bytes)
                .map_err(|e| Status::internal(format!("{}: {e}", desc.digest)))?;
            for c in doc.children().into_iter().rev() {
                queue.push(c.clone());
            }
        }
        out.push(desc);
    }
    Ok(out)
}

/// Exports `images` of `ns` to `path` (written atomically); returns the size.
pub async fn export(
    d: &Arc<Daemon>,
    ns: &str,
    images: &[String],
    path: &Path,
) -> Result<u64, Status> {
    let mut index = Vec::new();
    let mut blobs_to_write: BTreeMap<Digest, PathBuf> = BTreeMap::new();
    let mut docker = Vec::new();
    for name in images {
        let rec = d
            .store
            .image_get(ns, name)
            .map_err(status)?
            .ok_or_else(|| Status::not_found(format!("image {name:?}: not found")))?;
        let root = Descriptor::new(&rec.target.media_type, rec.target.digest, rec.target.size);
        let dag = walk(d, ns, &root).await?;
        for b in &dag {
            blobs_to_write.insert(b.digest, d.root.join(Layout::blob(&b.digest)));
        }
        // docker-archive entry for the first manifest with a config present
        if let Some(m) = dag.iter().find(|b| media::is_manifest(&b.media_type)) {
            let bytes = blobs::read(d, ns, &m.digest).await?;
            if let Ok(Document::Manifest(man)) = Document::parse(&m.media_type, &bytes) {
                let tag = Reference::parse(name)
                    .map(|r| r.familiar())
                    .unwrap_or(name.clone());
                docker.push(json!({
                    "Config": format!("blobs/{}/{}", man.config.digest.algorithm(), man.config.digest.hex()),
                    "RepoTags": [tag],
                    "Layers": man.layers.iter().map(|l| format!("blobs/{}/{}", l.digest.algorithm(), l.digest.hex())).collect::<Vec<_>>(),
                }));
            }
        }
        let tag = Reference::parse(name)
            .ok()
            .and_then(|r| r.tag().map(str::to_string))
            .unwrap_or_else(|| name.clone());
        index.push(json!({
            "mediaType": rec.target.media_type,
            "digest": rec.target.digest.to_string(),
            "size": rec.target.size,
            "annotations": { CONTAINERD_IMAGE_NAME: name, REF_NAME: tag },
        }));
    }
    let index = json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": index });
    let path = path.to_path_buf();
    blocking::unblock(move || -> Result<u64, Status> {
        let tmp = path.with_extension("tmp-export");
        let file = std::fs::File::create(&tmp).map_err(io_status("creating", &tmp))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let mut add = |name: &str, data: &[u8]| -> Result<(), Status> {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            tar.append_data(&mut h, name, data)
                .map_err(|e| Status::internal(format!("writing the archive: {e}")))
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json", &serde_json::to_vec(&index).expect("json"))?;
        add("manifest.json", &serde_json::to_vec(&docker).expect("json"))?;
        for (digest, src) in &blobs_to_write {
            let mut f = std::fs::File::open(src).map_err(io_status("opening", src))?;
            let len = f.metadata().map_err(io_status("stat", src))?.len();
            let mut h = tar::Header::new_ustar();
            h.set_size(len);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            tar.append_data(
                &mut h,
                format!("blobs/{}/{}", digest.algorithm(), digest.hex()),
                &mut f,
            )
            .map_err(|e| Status::internal(format!("writing the archive: {e}")))?;
        }
        let mut w = tar
            .into_inner()
            .map_err(|e| Status::internal(format!("writing the archive: {e}")))?;
        w.flush().map_err(io_status("writing", &tmp))?;
        let file = w
            .into_inner()
            .map_err(|e| Status::internal(e.to_string()))?;
        file.sync_all().map_err(io_status("syncing", &tmp))?;
        let size = file.metadata().map_err(io_status("stat", &tmp))?.len();
        std::fs::rename(&tmp, &path).map_err(io_status("renaming", &path))?;
        Ok(size)
    })
    .await
}

/// What the archive held, once its blobs are in the store.
struct Archive {
    /// Blobs written: digest → size.
    blobs: BTreeMap<Digest, u64>,
    /// Small files kept in memory (index.json, manifest.json, docker-archive configs).
    files: BTreeMap<String, Vec<u8>>,
    /// docker-archive layer tars, by archive path → (digest, size) once stored.
    paths: BTreeMap<String, (Digest, u64)>,
}

fn read_archive(root: &Path, path: &Path) -> Result<Archive, Status> {
    let file = std::fs::File::open(path).map_err(io_status("opening", path))?;
    let mut tar = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut out = Archive {
        blobs: BTreeMap::new(),
        files: BTreeMap::new(),
        paths: BTreeMap::new(),
    };
    let entries = tar.entries().map_err(bad_archive)?;
    for entry in entries {
        let mut entry = entry.map_err(bad_archive)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(bad_archive)?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let size = entry.size();
        if let Some(rest) = name.strip_prefix("blobs/") {
            let digest = rest
                .split_once('/')
                .and_then(|(alg, hex)| Digest::parse(&format!("{alg}:{hex}")).ok())
                .ok_or_else(|| bad_archive(format!("{name:?} is not a blob name")))?;
            if !blobs::blob_exists(root, &digest) {
                let mut f = BlobFile::create(root, &digest)?;
                copy(&mut entry, |b| f.write(b))?;
                f.commit(&digest, size)?;
            }
            out.paths.insert(name, (digest, size));
            out.blobs.insert(digest, size);
        } else if name.ends_with(".json") || name == "oci-layout" || name == "repositories" {
            if size > 64 << 20 {
                return Err(bad_archive(format!("{name} is too large")));
            }
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(bad_archive)?;
            out.files.insert(name, buf);
        } else if name.ends_with(".tar") || name.ends_with("/layer.tar") {
            // docker-archive layer: hash it while storing it
            let mut hasher = berth_core::digest::Hasher::new(berth_core::Algorithm::Sha256);
            let tmp_digest_holder = tempfile_blob(root, &mut entry, &mut hasher)?;
            out.paths.insert(name, (tmp_digest_holder, size));
            out.blobs.insert(tmp_digest_holder, size);
        }
    }
    Ok(out)
}

fn copy(
    r: &mut impl Read,
    mut sink: impl FnMut(&[u8]) -> Result<(), Status>,
) -> Result<(), Status> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(bad_archive)?;
        if n == 0 {
            return Ok(());
        }
        sink(&buf[..n])?;
    }
}

/// Stores a blob whose digest is not known in advance (docker-archive layers).
fn tempfile_blob(
    root: &Path,
    r: &mut impl Read,
    hasher: &mut berth_core::digest::Hasher,
) -> Result<Digest, Status> {
    let dir = root.join(berth_drivers::layout::INGEST);
    std::fs::create_dir_all(&dir).map_err(io_status("creating", &dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_status("creating in", &dir))?;
    copy(r, |b| {
        hasher.update(b);
        tmp.write_all(b)
            .map_err(|e| Status::internal(e.to_string()))
    })?;
    let digest = hasher.digest();
    tmp.as_file()
        .sync_all()
        .map_err(|e| Status::internal(e.to_string()))?;
    let dest = root.join(Layout::blob(&digest));
    if let Some(p) = dest.parent() {
        std::fs::create_dir_all(p).map_err(io_status("creating", p))?;
    }
    tmp.persist(&dest)
        .map_err(|e| Status::internal(format!("publishing {digest}: {e}")))?;
    Ok(digest)
}

fn descriptor_of(v: &Value) -> Option<Descriptor> {
    let mut d = Descriptor::new(
        v.get("mediaType")?.as_str()?,
        Digest::parse(v.get("digest")?.as_str()?).ok()?,
        v.get("size")?.as_u64()?,
    );
    if let Some(a) = v.get("annotations").and_then(Value::as_object) {
        for (k, val) in a {
            if let Some(s) = val.as_str() {
                d.annotations.insert(k.clone(), s.to_string());
            }
        }
    }
    Some(d)
}

/// Imports the archive at `path` into `ns`; returns the image names.
pub async fn import(
    d: &Arc<Daemon>,
    ns: &str,
    path: &Path,
    snapshotter: &str,
    unpack: bool,
    base_name: &str,
) -> Result<Vec<String>, Status> {
    let (root, p) = (d.root.clone(), path.to_path_buf());
    let archive = blocking::unblock(move || read_archive(&root, &p)).await?;
    let lease = crate::svc::leases::temporary(d, ns).await?;
    let result = import_leased(d, ns, &archive, &lease, snapshotter, unpack, base_name).await;
    let (n, l) = (ns.to_string(), lease.clone());
    let _ = d.store_write(move |s| s.lease_delete(&n, &l)).await;
    d.gc.schedule();
    result
}

async fn import_leased(
    d: &Arc<Daemon>,
    ns: &str,
    archive: &Archive,
    lease: &str,
    snapshotter: &str,
    unpack: bool,
    base_name: &str,
) -> Result<Vec<String>, Status> {
    // Record every blob; documents get their children's GC labels.
    let mut images: Vec<(String, Descriptor)> = Vec::new();
    if let Some(index) = archive.files.get("index.json") {
        let v: Value = serde_json::from_slice(index).map_err(bad_archive)?;
        for m in v
            .get("manifests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let desc =
                descriptor_of(m).ok_or_else(|| bad_archive("a bad descriptor in index.json"))?;
            let name = desc
                .annotations
                .get(CONTAINERD_IMAGE_NAME)
                .cloned()
                .or_else(|| {
                    desc.annotations.get(REF_NAME).map(|r| {
                        if base_name.is_empty() || r.contains(['/', ':']) {
                            r.clone()
                        } else {
                            format!("{base_name}:{r}")
                        }
                    })
                })
                .ok_or_else(|| {
                    bad_archive(format!("image {} has no name in index.json", desc.digest))
                })?;
            let name = Reference::parse(&name)
                .map(|r| r.to_string())
                .unwrap_or(name);
            images.push((name, desc));
        }
    } else if let Some(manifest) = archive.files.get("manifest.json") {
        images = docker_archive(d, ns, archive, manifest, lease).await?;
    } else {
        return Err(bad_archive("neither index.json nor manifest.json"));
    }
    // Documents get their children's GC labels: walk from each image's root, parsing only
    // indexes and manifests (their media types come from the descriptors that name them).
    let mut labels_of: BTreeMap<Digest, Labels> = BTreeMap::new();
    let mut stack: Vec<Descriptor> = images.iter().map(|(_, d)| d.clone()).collect();
    let mut seen = BTreeSet::new();
    while let Some(desc) = stack.pop() {
        let document = media::is_index(&desc.media_type) || media::is_manifest(&desc.media_type);
        if !document || !archive.blobs.contains_key(&desc.digest) || !seen.insert(desc.digest) {
            continue;
        }
        let bytes = blobs::read_any(d, &desc.digest).await?;
        let doc = Document::parse(&desc.media_type, &bytes).map_err(bad_archive)?;
        labels_of.insert(
            desc.digest,
            children_gc_labels(doc.children(), Children::All),
        );
        stack.extend(doc.children().into_iter().cloned());
    }
    for (digest, size) in &archive.blobs {
        let labels = labels_of.remove(digest).unwrap_or_default();
        blobs::record(d, ns, Some(lease), digest, *size, labels).await?;
    }
    let mut names = Vec::new();
    for (name, desc) in &images {
        if unpack {
            crate::pull::unpack_local(d, ns, lease, desc, snapshotter).await?;
        }
        let target = berth_drivers::store::Descriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest,
            size: desc.size,
            annotations: Default::default(),
        };
        crate::svc::images::put_image(d, ns, name, target).await?;
        names.push(name.clone());
    }
    Ok(names)
}

/// Builds Docker schema 2 manifests for a docker-archive's entries.
async fn docker_archive(
    d: &Arc<Daemon>,
    ns: &str,
    archive: &Archive,
    manifest: &[u8],
    lease: &str,
) -> Result<Vec<(String, Descriptor)>, Status> {
    let entries: Vec<Value> = serde_json::from_slice(manifest).map_err(bad_archive)?;
    let mut out = Vec::new();
    for e in entries {
        let config_path = e
            .get("Config")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_archive("an entry without Config"))?;
        let config = match archive.files.get(config_path) {
            Some(c) => c.clone(),
            None => {
                let (dg, _) = archive
                    .paths
                    .get(config_path)
                    .ok_or_else(|| bad_archive(format!("{config_path} missing")))?;
                blobs::read_any(d, dg).await?
            }
        };
        let config_digest = Digest::sha256(&config);
        blobs::put(
            d,
            ns,
            Some(lease),
            &config_digest,
            config.clone().into(),
            Labels::new(),
        )
        .await?;
        let mut layers = Vec::new();
        for l in e
            .get("Layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let p = l.as_str().ok_or_else(|| bad_archive("a bad layer path"))?;
            let (dg, size) = archive
                .paths
                .get(p)
                .ok_or_else(|| bad_archive(format!("{p} missing")))?;
            let head = blobs::read_prefix(d, dg, 8).await?;
            let mt = match berth_core::archive::Compression::sniff(&head) {
                Some(berth_core::archive::Compression::Gzip) => media::DOCKER_LAYER_GZIP,
                Some(berth_core::archive::Compression::Zstd) => media::OCI_LAYER_ZSTD,
                _ => media::DOCKER_LAYER,
            };
            layers.push(json!({"mediaType": mt, "digest": dg.to_string(), "size": size}));
        }
        let m = json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST,
            "config": {"mediaType": media::DOCKER_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&m).expect("json");
        let digest = Digest::sha256(&bytes);
        let doc = Document::parse(media::DOCKER_MANIFEST, &bytes).map_err(bad_archive)?;
        let labels = children_gc_labels(doc.children(), Children::All);
        let size = bytes.len() as u64;
        blobs::put(d, ns, Some(lease), &digest, bytes.into(), labels).await?;
        for tag in e
            .get("RepoTags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = tag.as_str() {
                let name = Reference::parse(t)
                    .map(|r| r.to_string())
                    .unwrap_or(t.to_string());
                out.push((name, Descriptor::new(media::DOCKER_MANIFEST, digest, size)));
            }
        }
    }
    Ok(out)
}
