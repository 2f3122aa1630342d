//! `berth image`: the images of a namespace. Pull, push, import and export are done by berthd
//! itself (berth's Transfer service) while this client shows their progress; list, inspect,
//! tag, label and remove work on image records and read their documents from the content
//! store; mount and unmount put an image's unpacked snapshot on a directory of this host.
//!
//! Image names are looked up as given, then in their normalised form, so `busybox` finds
//! `docker.io/library/busybox:latest`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as StdInstant};

use berth_api::berth_services::transfer::v1::{
    ExportRequest, ImportRequest, LayerProgress, Progress, PullRequest, PushRequest,
};
use berth_api::services::content::v1::ReadContentRequest;
use berth_api::services::images::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest,
    UpdateImageRequest,
};
use berth_api::services::leases::v1::{
    CreateRequest as CreateLease, DeleteRequest as DeleteLease, ListRequest as ListLeases,
};
use berth_api::services::snapshots::v1::{
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest, ViewSnapshotRequest,
};
use berth_api::types;
use berth_core::digest::Hasher;
use berth_core::image::chain::chain_ids;
use berth_core::image::manifest::{ImageConfig, Index, Manifest};
use berth_core::image::media;
use berth_core::image::platform::{Matcher, Platform};
use berth_core::image::reference::Reference;
use berth_core::Digest;
use clap::{Args, Subcommand};
use serde::Serialize;
use tonic::{Code, Status};

use crate::client::Client;
use crate::cmd::snapshot::{self, DEFAULT_SNAPSHOTTER};
use crate::cmd::{label_paths, lease, stdout_err, Failures};
use crate::error::{Error, Result};
use crate::output::{self, Table};
use crate::{parse, Opts};

/// `berth image …`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry and unpack it, showing each layer's progress
    Pull(PullArgs),
    /// List images (filters such as name==x, target.digest==sha256:…, labels."k"==v; OR-ed)
    #[command(visible_alias = "list")]
    Ls {
        /// containerd filters
        filters: Vec<String>,
        /// Print only the names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images; their content and snapshots go at the next garbage collection
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// Image names
        #[arg(required = true)]
        names: Vec<String>,
        /// Wait until the garbage collection the removal triggers has finished
        #[arg(long)]
        sync: bool,
    },
    /// Give an image more names: each DST points at SRC's content
    Tag {
        /// The image to tag
        source: String,
        /// The new names
        #[arg(required = true, value_name = "DST")]
        targets: Vec<String>,
        /// Move a DST that already names another image
        #[arg(short, long)]
        force: bool,
    },
    /// Set labels on an image (key= removes a label)
    Label {
        /// The image's name
        name: String,
        /// Labels as key=value; an empty value removes the label
        #[arg(required = true, value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Show an image's record and its index, manifest and config documents as JSON
    Inspect {
        /// The image's name
        name: String,
    },
    /// Push an image to a registry, showing each layer's progress
    Push(PushArgs),
    /// Import the images of an OCI layout or docker-archive tar (a file on berthd's host)
    Import(ImportArgs),
    /// Export images as an OCI layout tar (with a docker-archive manifest.json)
    Export {
        /// The tar to write (on berthd's host; relative to this directory)
        file: PathBuf,
        /// The images to put in it
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Mount an image's unpacked filesystem (read-only unless --rw) at a directory
    Mount(MountArgs),
    /// Unmount what `berth image mount` mounted at a directory
    #[command(visible_alias = "umount")]
    Unmount {
        /// The directory
        target: PathBuf,
        /// Also remove the snapshot (and lease) the mount used; changes made with --rw are lost
        #[arg(long)]
        rm: bool,
        /// The snapshotter the mount was made from [default: the one its lease names, else
        /// overlayfs]
        #[arg(long, value_name = "NAME")]
        snapshotter: Option<String>,
    },
}

/// What `berth image pull` takes.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image reference: busybox, docker.io/library/alpine:3.20, HOST:PORT/app@sha256:…
    reference: String,
    /// Pull this platform (os/arch[/variant]); repeatable [default: the host's]
    #[arg(long = "platform", value_name = "PLATFORM")]
    platforms: Vec<String>,
    /// Pull every platform of a multi-platform image (only the host's is unpacked)
    #[arg(long, conflicts_with = "platforms")]
    all_platforms: bool,
    /// Reach this registry over plain HTTP (HOST[:PORT]; repeatable). Loopback registries
    /// (localhost, 127.0.0.1) always are
    #[arg(long = "plain-http", value_name = "HOST")]
    plain_http: Vec<String>,
    /// Registry credentials as USER:PASSWORD
    #[arg(
        short,
        long,
        value_name = "USER:PASSWORD",
        env = "BERTH_REGISTRY_USER",
        hide_env_values = true
    )]
    user: Option<String>,
    /// The snapshotter to unpack into
    #[arg(long, default_value = DEFAULT_SNAPSHOTTER, value_name = "NAME")]
    snapshotter: String,
    /// Only download: do not unpack the layers into snapshots
    #[arg(long)]
    no_unpack: bool,
    /// Show no progress
    #[arg(short, long)]
    quiet: bool,
}

impl PullArgs {
    /// What `berth run` pulls a missing image with: the host's platform, unpacked into
    /// `snapshotter`, progress shown.
    pub(crate) fn for_run(reference: &str, plain_http: &[String], snapshotter: &str) -> Self {
        PullArgs {
            reference: reference.to_string(),
            platforms: Vec::new(),
            all_platforms: false,
            plain_http: plain_http.to_vec(),
            user: std::env::var("BERTH_REGISTRY_USER").ok(),
            snapshotter: snapshotter.to_string(),
            no_unpack: false,
            quiet: false,
        }
    }
}

/// What `berth image push` takes.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image to push
    name: String,
    /// Where to push it [default: its name]
    reference: Option<String>,
    /// Reach this registry over plain HTTP (HOST[:PORT]; repeatable). Loopback registries
    /// always are
    #[arg(long = "plain-http", value_name = "HOST")]
    plain_http: Vec<String>,
    /// Registry credentials as USER:PASSWORD
    #[arg(
        short,
        long,
        value_name = "USER:PASSWORD",
        env = "BERTH_REGISTRY_USER",
        hide_env_values = true
    )]
    user: Option<String>,
    /// Show no progress
    #[arg(short, long)]
    quiet: bool,
}

/// What `berth image import` takes.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The tar (on berthd's host; relative to this directory)
    file: PathBuf,
    /// The snapshotter to unpack into
    #[arg(long, default_value = DEFAULT_SNAPSHOTTER, value_name = "NAME")]
    snapshotter: String,
    /// Only store the content: do not unpack the layers into snapshots
    #[arg(long)]
    no_unpack: bool,
    /// The name for an image the archive does not name
    #[arg(long, value_name = "NAME")]
    base_name: Option<String>,
}

/// What `berth image mount` takes.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// The image
    name: String,
    /// The directory to mount at (it must exist)
    target: PathBuf,
    /// The snapshotter the image was unpacked into
    #[arg(long, default_value = DEFAULT_SNAPSHOTTER, value_name = "NAME")]
    snapshotter: String,
    /// Mount a writable snapshot on top of the image (changes stay until `unmount --rm`)
    #[arg(long)]
    rw: bool,
    /// The platform to mount, for a multi-platform image [default: the host's]
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
}

/// Runs a `berth image` command.
pub async fn run(client: &Client, opts: Opts, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Pull(a) => pull(client, opts, a).await,
        ImageCommand::Ls { filters, quiet } => ls(client, opts, filters, quiet).await,
        ImageCommand::Rm { names, sync } => rm(client, opts, &names, sync).await,
        ImageCommand::Tag {
            source,
            targets,
            force,
        } => tag(client, opts, &source, &targets, force).await,
        ImageCommand::Label { name, labels } => label(client, opts, &name, &labels).await,
        ImageCommand::Inspect { name } => inspect(client, &name).await,
        ImageCommand::Push(a) => push(client, opts, a).await,
        ImageCommand::Import(a) => import(client, opts, a).await,
        ImageCommand::Export { file, names } => export(client, opts, &file, &names).await,
        ImageCommand::Mount(a) => mount(client, opts, a).await,
        ImageCommand::Unmount {
            target,
            rm,
            snapshotter,
        } => unmount(client, opts, &target, rm, snapshotter).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Looking images up

/// Gets the image record called `name`: the record, or the status berthd answered.
async fn try_get(client: &Client, name: &str) -> Result<std::result::Result<Image, Status>> {
    let req = client.request(GetImageRequest {
        name: name.to_string(),
    })?;
    Ok(client
        .images()
        .get(req)
        .await
        .map(|r| r.into_inner().image.unwrap_or_default()))
}

/// The image called `name`; failing that, the one its normalised reference names
/// (`busybox` → `docker.io/library/busybox:latest`).
pub(crate) async fn get_image(client: &Client, name: &str) -> Result<Image> {
    find_image(client, name).await?.ok_or_else(|| {
        Error::failed(format!(
            "image {name:?} not found in namespace {:?} — `berth image ls` lists the images, \
             `berth image pull {name}` fetches one",
            client.namespace()
        ))
    })
}

/// As [`get_image`], `None` when there is no such image.
pub(crate) async fn find_image(client: &Client, name: &str) -> Result<Option<Image>> {
    match try_get(client, name).await? {
        Ok(i) => return Ok(Some(i)),
        Err(s) if s.code() == Code::NotFound => {}
        Err(s) => return Err(client.err(&format!("image {name:?}"), &s)),
    }
    if let Ok(r) = Reference::parse(name) {
        let full = r.to_string();
        if full != name {
            match try_get(client, &full).await? {
                Ok(i) => return Ok(Some(i)),
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(client.err(&format!("image {full:?}"), &s)),
            }
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// Reading documents

/// The largest document (index, manifest, config) read from the content store.
const MAX_DOCUMENT: usize = 8 << 20;

/// Reads a blob from berthd's content store, verifying its digest; `None` if the namespace
/// does not have it.
async fn read_blob(client: &Client, digest: &str) -> Result<Option<Vec<u8>>> {
    let what = format!("content {digest}");
    let d = Digest::parse(digest)
        .map_err(|e| Error::failed(format!("berthd recorded a bad digest {digest:?}: {e}")))?;
    let mut stream = match client
        .content()
        .read(client.request(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        })?)
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::NotFound => return Ok(None),
        Err(s) => return Err(client.err(&what, &s)),
    };
    let mut data = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(m)) => {
                data.extend_from_slice(&m.data);
                if data.len() > MAX_DOCUMENT {
                    return Err(Error::failed(format!(
                        "{what} is larger than {} and not a document berth reads",
                        output::human_size(MAX_DOCUMENT as u64)
                    )));
                }
            }
            Ok(None) => break,
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(client.err(&what, &s)),
        }
    }
    let mut h = Hasher::new(d.algorithm());
    h.update(&data);
    let actual = h.digest();
    if actual != d {
        return Err(Error::failed(format!(
            "{what} failed verification: berthd sent {} bytes that hash to {actual}; the stored \
             blob is damaged (remove it with `berth content rm {digest}` and pull again)",
            data.len()
        )));
    }
    Ok(Some(data))
}

/// Documents read so far, by digest (images often share them).
pub(crate) struct Documents<'a> {
    client: &'a Client,
    cache: HashMap<String, Option<Vec<u8>>>,
}

impl<'a> Documents<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Documents {
            client,
            cache: HashMap::new(),
        }
    }

    pub(crate) async fn get(&mut self, digest: &str) -> Result<Option<&[u8]>> {
        if !self.cache.contains_key(digest) {
            let data = read_blob(self.client, digest).await?;
            self.cache.insert(digest.to_string(), data);
        }
        Ok(self.cache.get(digest).and_then(|d| d.as_deref()))
    }
}

/// A descriptor as the images API carries it, reduced to what walking an image needs.
#[derive(Debug, Clone)]
struct Desc {
    media_type: String,
    digest: String,
    size: u64,
    platform: Option<Platform>,
}

impl Desc {
    fn of_target(t: Option<&types::Descriptor>) -> Desc {
        let t = t.cloned().unwrap_or_default();
        Desc {
            media_type: t.media_type,
            digest: t.digest,
            size: t.size.max(0) as u64,
            platform: None,
        }
    }

    fn of(d: &berth_core::image::Descriptor) -> Desc {
        Desc {
            media_type: d.media_type.clone(),
            digest: d.digest.to_string(),
            size: d.size,
            platform: d.platform.clone(),
        }
    }
}

/// An attestation or other non-image manifest in an index (buildx marks them
/// `unknown/unknown`).
fn is_unknown_platform(p: &Platform) -> bool {
    p.os == "unknown" || p.os.is_empty()
}

/// What `ls` shows of an image's content.
#[derive(Debug, Default)]
struct Summary {
    /// Bytes of the documents present and of the layers of the manifests present.
    size: u64,
    /// Platforms whose manifest is present.
    platforms: BTreeSet<String>,
    /// False if a document was missing or unreadable.
    complete: bool,
}

/// Walks an image's documents: the index (nested ones too), the manifests present, their
/// configs (for a manifest without an index platform).
async fn summarize(docs: &mut Documents<'_>, target: Desc) -> Result<Summary> {
    let mut s = Summary {
        complete: true,
        ..Summary::default()
    };
    let mut stack = vec![(target, 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let Some(bytes) = docs.get(&d.digest).await? else {
            s.complete = false;
            continue;
        };
        if media::is_index(&d.media_type) {
            s.size += d.size;
            match Index::parse(bytes) {
                Ok(ix) if depth < 4 => {
                    stack.extend(ix.manifests.iter().map(|m| (Desc::of(m), depth + 1)))
                }
                _ => s.complete = false,
            }
        } else if media::is_manifest(&d.media_type) {
            let Ok(m) = Manifest::parse(bytes) else {
                s.complete = false;
                continue;
            };
            s.size += d.size + m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>();
            let platform = match d.platform {
                Some(p) => Some(p),
                None => {
                    let digest = m.config.digest.to_string();
                    docs.get(&digest)
                        .await?
                        .and_then(|c| ImageConfig::parse(c).ok())
                        .map(|c| c.platform())
                }
            };
            if let Some(p) = platform.filter(|p| !is_unknown_platform(p)) {
                s.platforms.insert(p.to_string());
            }
        } else {
            s.size += d.size;
        }
    }
    Ok(s)
}

/// A short name for a target's media type.
fn type_name(media_type: &str) -> &str {
    match media_type {
        media::OCI_INDEX => "oci-index",
        media::OCI_MANIFEST => "oci-manifest",
        media::DOCKER_MANIFEST_LIST => "docker-list",
        media::DOCKER_MANIFEST => "docker-manifest",
        other => other,
    }
}

#[derive(Serialize)]
struct DescriptorView {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

fn descriptor_view(t: Option<&types::Descriptor>) -> Option<DescriptorView> {
    t.map(|t| DescriptorView {
        media_type: t.media_type.clone(),
        digest: t.digest.clone(),
        size: t.size,
        annotations: output::sorted(&t.annotations),
    })
}

#[derive(Serialize)]
struct ImageView {
    name: String,
    target: Option<DescriptorView>,
    /// Bytes of the image's content present in the namespace (documents and layers).
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platforms: Option<Vec<String>>,
    created_at: Option<String>,
    updated_at: Option<String>,
    labels: BTreeMap<String, String>,
}

fn image_view(i: &Image, summary: Option<&Summary>) -> ImageView {
    ImageView {
        name: i.name.clone(),
        target: descriptor_view(i.target.as_ref()),
        size: summary.map(|s| s.size),
        platforms: summary.map(|s| s.platforms.iter().cloned().collect()),
        created_at: output::rfc3339(i.created_at.as_ref()),
        updated_at: output::rfc3339(i.updated_at.as_ref()),
        labels: output::sorted(&i.labels),
    }
}

// ---------------------------------------------------------------------------------------------
// ls, rm, tag, label, inspect

async fn ls(client: &Client, opts: Opts, filters: Vec<String>, quiet: bool) -> Result<()> {
    let mut images = client
        .images()
        .list(client.request(ListImagesRequest { filters })?)
        .await
        .map_err(|s| client.err("images", &s))?
        .into_inner()
        .images;
    images.sort_by(|a, b| a.name.cmp(&b.name));
    if quiet {
        if opts.json {
            let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
            return output::json(&names).map_err(stdout_err);
        }
        let mut out = String::new();
        for i in &images {
            out.push_str(&i.name);
            out.push('\n');
        }
        return output::text(&out).map_err(stdout_err);
    }
    let mut docs = Documents::new(client);
    let mut summaries = Vec::with_capacity(images.len());
    for i in &images {
        summaries.push(summarize(&mut docs, Desc::of_target(i.target.as_ref())).await?);
    }
    if opts.json {
        let v: Vec<ImageView> = images
            .iter()
            .zip(&summaries)
            .map(|(i, s)| image_view(i, Some(s)))
            .collect();
        return output::json(&v).map_err(stdout_err);
    }
    let now = output::now();
    let mut t = Table::new(&[
        "NAME",
        "TYPE",
        "DIGEST",
        "SIZE",
        "PLATFORMS",
        "CREATED",
        "LABELS",
    ]);
    for (i, s) in images.iter().zip(&summaries) {
        let target = i.target.clone().unwrap_or_default();
        let mut size = output::human_size(s.size);
        if !s.complete {
            size.push_str(" (partial)");
        }
        let platforms = if s.platforms.is_empty() {
            "-".to_string()
        } else {
            s.platforms.iter().cloned().collect::<Vec<_>>().join(",")
        };
        t.row(vec![
            i.name.clone(),
            type_name(&target.media_type).to_string(),
            target.digest,
            size,
            platforms,
            output::age(i.created_at.as_ref(), now),
            output::labels_cell(&i.labels),
        ]);
    }
    t.print().map_err(stdout_err)
}

async fn rm(client: &Client, opts: Opts, names: &[String], sync: bool) -> Result<()> {
    let mut failures = Failures::new(names.len());
    let mut removed = Vec::new();
    for name in names {
        let image = match get_image(client, name).await {
            Ok(i) => i,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let what = format!("image {:?}", image.name);
        match client
            .images()
            .delete(client.request(DeleteImageRequest {
                name: image.name.clone(),
                sync,
            })?)
            .await
        {
            Ok(_) => {
                if !opts.json {
                    output::text(&format!("{}\n", image.name)).map_err(stdout_err)?;
                }
                removed.push(image.name);
            }
            Err(s) => failures.push(client.err(&what, &s)),
        }
    }
    if opts.json {
        output::json(&removed).map_err(stdout_err)?;
    }
    failures.finish("images", "removed")
}

async fn tag(
    client: &Client,
    opts: Opts,
    source: &str,
    targets: &[String],
    force: bool,
) -> Result<()> {
    let src = get_image(client, source).await?;
    let mut failures = Failures::new(targets.len());
    let mut tagged = Vec::new();
    for dst in targets {
        let what = format!("image {dst:?}");
        let image = Image {
            name: dst.clone(),
            labels: src.labels.clone(),
            target: src.target.clone(),
            ..Default::default()
        };
        let created = client
            .images()
            .create(client.request(CreateImageRequest {
                image: Some(image.clone()),
            })?)
            .await;
        let result = match created {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists && force => client
                .images()
                .update(client.request(UpdateImageRequest {
                    image: Some(image),
                    update_mask: None,
                })?)
                .await
                .map(|_| ())
                .map_err(|s| client.err(&what, &s)),
            Err(s) if s.code() == Code::AlreadyExists => Err(Error::failed(format!(
                "image {dst:?} already exists — pass --force to point it at {:?}",
                src.name
            ))),
            Err(s) => Err(client.err(&what, &s)),
        };
        match result {
            Ok(()) => {
                if !opts.json {
                    output::text(&format!("{dst}\n")).map_err(stdout_err)?;
                }
                tagged.push(dst.clone());
            }
            Err(e) => failures.push(e),
        }
    }
    if opts.json {
        output::json(&tagged).map_err(stdout_err)?;
    }
    failures.finish("names", "tagged")
}

async fn label(client: &Client, opts: Opts, name: &str, labels: &[String]) -> Result<()> {
    let labels = parse::labels(labels).map_err(Error::usage)?;
    let image = get_image(client, name).await?;
    let paths = label_paths(&labels);
    let what = format!("image {:?}", image.name);
    let updated = client
        .images()
        .update(client.request(UpdateImageRequest {
            image: Some(Image {
                name: image.name.clone(),
                labels: labels.into_iter().collect(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        })?)
        .await
        .map_err(|s| client.err(&what, &s))?
        .into_inner()
        .image
        .unwrap_or_default();
    if opts.json {
        return output::json(&image_view(&updated, None)).map_err(stdout_err);
    }
    let mut t = Table::new(&["NAME", "LABELS"]);
    t.row(vec![
        updated.name.clone(),
        output::labels_cell(&updated.labels),
    ]);
    t.print().map_err(stdout_err)
}

#[derive(Serialize)]
struct ManifestInspect {
    digest: String,
    media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<String>,
    /// False if the namespace does not have this manifest (a platform not pulled).
    present: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct InspectView {
    #[serde(flatten)]
    image: ImageView,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<serde_json::Value>,
    manifests: Vec<ManifestInspect>,
}

fn json_value(what: &str, bytes: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::failed(format!("{what} is not valid JSON: {e}")))
}

async fn inspect(client: &Client, name: &str) -> Result<()> {
    let image = get_image(client, name).await?;
    let mut docs = Documents::new(client);
    let target = Desc::of_target(image.target.as_ref());
    let mut index = None;
    let mut manifests = Vec::new();
    let mut stack = vec![(target, 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let bytes = docs.get(&d.digest).await?.map(<[u8]>::to_vec);
        if media::is_index(&d.media_type) {
            let Some(bytes) = bytes else {
                manifests.push(ManifestInspect {
                    digest: d.digest,
                    media_type: d.media_type,
                    platform: d.platform.map(|p| p.to_string()),
                    present: false,
                    manifest: None,
                    config: None,
                });
                continue;
            };
            let ix = Index::parse(&bytes)
                .map_err(|e| Error::failed(format!("index {}: {e}", d.digest)))?;
            if depth == 0 {
                index = Some(json_value(&format!("index {}", d.digest), &bytes)?);
            }
            if depth < 4 {
                stack.extend(ix.manifests.iter().rev().map(|m| (Desc::of(m), depth + 1)));
            }
            continue;
        }
        let mut m = ManifestInspect {
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
            platform: d.platform.as_ref().map(|p| p.to_string()),
            present: bytes.is_some(),
            manifest: None,
            config: None,
        };
        if let Some(bytes) = bytes {
            m.manifest = Some(json_value(&format!("manifest {}", d.digest), &bytes)?);
            if let Ok(parsed) = Manifest::parse(&bytes) {
                let cd = parsed.config.digest.to_string();
                if let Some(c) = docs.get(&cd).await? {
                    m.config = Some(json_value(&format!("config {cd}"), c)?);
                }
            }
        }
        manifests.push(m);
    }
    let view = InspectView {
        image: image_view(&image, None),
        index,
        manifests,
    };
    output::json(&view).map_err(stdout_err)
}

// ---------------------------------------------------------------------------------------------
// Transfers: pull, push, import, export

/// Maps a status of the Transfer service. Statuses berthd sends are about the registry or the
/// archive, not about berthd's objects: "not found" means the registry has no such image.
fn transfer_err(client: &Client, verb: &str, what: &str, s: &Status) -> Error {
    let msg = s.message();
    if std::error::Error::source(s).is_some() {
        // The connection to berthd broke: the usual wording (exit 3).
        return client.err(what, s);
    }
    let registry = matches!(verb, "pull" | "push");
    let hint = match s.code() {
        Code::Unimplemented => {
            return Error::failed(format!(
                "berthd cannot {verb} images yet: the call is not implemented by this berthd \
                 ({msg}) — update berthd"
            ))
        }
        Code::Unavailable | Code::NotFound
            if registry && (msg.contains("not found") || msg.contains("HTTP 404")) =>
        {
            " — the registry has no such image: check the repository and tag"
        }
        Code::Unavailable if registry => {
            " — is the registry reachable? A registry without TLS needs --plain-http HOST \
             (loopback registries need none)"
        }
        Code::Unauthenticated | Code::PermissionDenied if registry => {
            " — the registry wants credentials: pass --user USER:PASSWORD"
        }
        Code::DataLoss if registry => " — the registry sent damaged data; retry",
        Code::ResourceExhausted => " — is berthd's disk (--root) full?",
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition => "",
        Code::AlreadyExists => "",
        _ => return Error::failed(format!("cannot {verb} {what}: {msg} ({:?})", s.code())),
    };
    Error::failed(format!("cannot {verb} {what}: {msg}{hint}"))
}

/// `--plain-http` hosts as berthd wants them: `host[:port]`, without a scheme or a slash.
fn plain_http_hosts(hosts: &[String]) -> Vec<String> {
    hosts
        .iter()
        .map(|h| {
            h.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

fn credentials(user: Option<&str>) -> Result<String> {
    match user {
        None => Ok(String::new()),
        Some(u) if u.contains(':') => Ok(u.to_string()),
        Some(_) => Err(Error::usage(
            "--user takes USER:PASSWORD (or set BERTH_REGISTRY_USER=USER:PASSWORD)",
        )),
    }
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A terminal: a header and one line per layer, redrawn in place.
    Live,
    /// A pipe or file: a line per layer when its state changes, and every few seconds while
    /// it moves.
    Lines,
    /// Nothing (`--quiet`).
    Quiet,
}

/// How often a layer's line is repeated in [`Mode::Lines`] while its bytes move.
const LINE_INTERVAL: Duration = Duration::from_secs(2);
/// How often the live display is redrawn at most (state changes redraw at once).
const REDRAW_INTERVAL: Duration = Duration::from_millis(100);

/// The progress display of a pull or push: fed every [`Progress`] report, it writes to stderr.
struct Display {
    mode: Mode,
    /// `pulling`, `pushing`.
    verb: &'static str,
    /// What is transferred, until berthd names the image.
    what: String,
    started: StdInstant,
    target: Option<String>,
    layers: Vec<LayerProgress>,
    /// Lines drawn by the last redraw ([`Mode::Live`]).
    drawn: usize,
    last_draw: Option<StdInstant>,
    /// Per layer: the state, bytes and time of its last line ([`Mode::Lines`]).
    printed: HashMap<String, (String, i64, StdInstant)>,
    announced: bool,
}

impl Display {
    fn new(quiet: bool, verb: &'static str, what: &str) -> Display {
        let mode = if quiet {
            Mode::Quiet
        } else if io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Lines
        };
        Display::with_mode(mode, verb, what)
    }

    fn with_mode(mode: Mode, verb: &'static str, what: &str) -> Display {
        Display {
            mode,
            verb,
            what: what.to_string(),
            started: StdInstant::now(),
            target: None,
            layers: Vec::new(),
            drawn: 0,
            last_draw: None,
            printed: HashMap::new(),
            announced: false,
        }
    }

    /// Shows a progress report.
    fn update(&mut self, p: &Progress) {
        let width = self.width();
        let text = self.feed(p, StdInstant::now(), width);
        write_stderr(&text);
    }

    /// Shows the final state; on success, a summary line.
    fn finish(&mut self, ok: bool) {
        let width = self.width();
        let text = self.finish_text(ok, StdInstant::now(), width);
        write_stderr(&text);
    }

    fn width(&self) -> usize {
        match self.mode {
            Mode::Live => terminal_width().unwrap_or(100).max(20),
            _ => usize::MAX,
        }
    }

    /// Takes in a report at `now`; returns what to write (`width`: the terminal's columns).
    fn feed(&mut self, p: &Progress, now: StdInstant, width: usize) -> String {
        if !p.image.is_empty() {
            self.what = p.image.clone();
        }
        if let Some(t) = &p.target {
            self.target = Some(t.digest.clone());
        }
        let changed = p.layers.len() != self.layers.len()
            || p.layers
                .iter()
                .zip(&self.layers)
                .any(|(a, b)| a.state != b.state);
        self.layers = p.layers.clone();
        match self.mode {
            Mode::Quiet => String::new(),
            Mode::Live => {
                let due = self
                    .last_draw
                    .is_none_or(|t| now.duration_since(t) >= REDRAW_INTERVAL);
                if changed || due || p.done {
                    self.redraw(now, width)
                } else {
                    String::new()
                }
            }
            Mode::Lines => self.lines(now, false),
        }
    }

    /// The final state of every layer and, on success, a summary line.
    fn finish_text(&mut self, ok: bool, now: StdInstant, width: usize) -> String {
        let mut out = match self.mode {
            Mode::Quiet => return String::new(),
            Mode::Live => self.redraw(now, width),
            Mode::Lines => self.lines(now, true),
        };
        if ok {
            let bytes: i64 = self.layers.iter().map(|l| l.size.max(0)).sum();
            let past = match self.verb {
                "pulling" => "pulled",
                "pushing" => "pushed",
                v => v,
            };
            out.push_str(&format!(
                "{past} {}: {} layer{}, {} in {:.1}s\n",
                self.what,
                self.layers.len(),
                if self.layers.len() == 1 { "" } else { "s" },
                output::human_size(bytes.max(0) as u64),
                now.saturating_duration_since(self.started).as_secs_f64()
            ));
        }
        out
    }

    /// The header: what is transferred and, once resolved, its digest.
    fn header(&self) -> String {
        match &self.target {
            Some(t) => format!("{} {} ({t})", self.verb, self.what),
            None => format!("{} {}", self.verb, self.what),
        }
    }

    /// [`Mode::Live`]: moves the cursor back over the lines drawn last time and draws the
    /// header and every layer again, each line cleared first and cut to the terminal's width
    /// (a wrapped line would break the count).
    fn redraw(&mut self, now: StdInstant, width: usize) -> String {
        let mut lines = vec![self.header()];
        lines.extend(self.layers.iter().map(layer_line));
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for l in &lines {
            out.push_str("\x1b[2K");
            out.extend(l.chars().take(width.saturating_sub(1)));
            out.push('\n');
        }
        out.push_str("\x1b[J");
        self.drawn = lines.len();
        self.last_draw = Some(now);
        out
    }

    /// [`Mode::Lines`]: the header once, then a line for each layer whose state changed, or
    /// whose bytes moved and whose last line is [`LINE_INTERVAL`] old (`all`: whose bytes
    /// moved at all).
    fn lines(&mut self, now: StdInstant, all: bool) -> String {
        let mut out = String::new();
        if !self.announced && (self.target.is_some() || all) {
            out.push_str(&self.header());
            out.push('\n');
            self.announced = true;
        }
        for l in &self.layers {
            let due = match self.printed.get(&l.digest) {
                None => true,
                Some((state, done, at)) => {
                    *state != l.state
                        || (*done != l.done && (all || now.duration_since(*at) >= LINE_INTERVAL))
                }
            };
            if due {
                out.push_str(&layer_line(l));
                out.push('\n');
                self.printed
                    .insert(l.digest.clone(), (l.state.clone(), l.done, now));
            }
        }
        out
    }
}

fn write_stderr(text: &str) {
    if text.is_empty() {
        return;
    }
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// The width of the terminal on stderr.
fn terminal_width() -> Option<usize> {
    rustix::termios::tcgetwinsize(io::stderr())
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|w| *w > 0)
}

/// A digest as 12 hex digits, as docker shows layers.
fn short_digest(d: &str) -> &str {
    let hex = d.split_once(':').map_or(d, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// A bar of `width` cells, `fraction` of them filled.
fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    let mut s = "=".repeat(filled);
    if filled < width && filled > 0 {
        s.pop();
        s.push('>');
    }
    s.push_str(&" ".repeat(width - filled));
    s
}

/// One layer's line: short digest, state, bytes done of size, a bar and the percentage.
fn layer_line(l: &LayerProgress) -> String {
    let (done, size) = (l.done.max(0) as u64, l.size.max(0) as u64);
    let complete = matches!(l.state.as_str(), "done" | "exists");
    let fraction = if complete {
        1.0
    } else if size > 0 {
        done.min(size) as f64 / size as f64
    } else {
        0.0
    };
    let bytes = format!(
        "{}/{}",
        output::human_size(if complete { size.max(done) } else { done }),
        output::human_size(size)
    );
    format!(
        "{}  {:<11}  {:>19}  [{}] {:>3}%",
        short_digest(&l.digest),
        l.state,
        bytes,
        bar(fraction, 24),
        (fraction * 100.0).floor() as u32
    )
}

#[derive(Serialize)]
struct LayerView {
    digest: String,
    size: i64,
    state: String,
}

#[derive(Serialize)]
struct TransferView {
    image: String,
    target: Option<DescriptorView>,
    layers: Vec<LayerView>,
}

/// Follows a progress stream to its end, showing it; the last report must say `done`.
async fn follow(
    client: &Client,
    verb: &'static str,
    what: &str,
    display: &mut Display,
    stream: &mut tonic::Streaming<Progress>,
) -> Result<Progress> {
    let mut last: Option<Progress> = None;
    loop {
        match stream.message().await {
            Ok(Some(p)) => {
                display.update(&p);
                last = Some(p);
            }
            Ok(None) => break,
            Err(s) => {
                display.finish(false);
                return Err(transfer_err(client, verb_base(verb), what, &s));
            }
        }
    }
    match last {
        Some(p) if p.done => {
            display.finish(true);
            Ok(p)
        }
        _ => {
            display.finish(false);
            Err(Error::failed(format!(
                "berthd stopped {verb} {what} before it finished (no final report); check \
                 berthd's log"
            )))
        }
    }
}

fn verb_base(verb: &str) -> &str {
    match verb {
        "pulling" => "pull",
        "pushing" => "push",
        v => v,
    }
}

fn transfer_output(opts: Opts, p: &Progress, name: &str) -> Result<()> {
    if opts.json {
        let v = TransferView {
            image: name.to_string(),
            target: descriptor_view(p.target.as_ref()),
            layers: p
                .layers
                .iter()
                .map(|l| LayerView {
                    digest: l.digest.clone(),
                    size: l.size,
                    state: l.state.clone(),
                })
                .collect(),
        };
        return output::json(&v).map_err(stdout_err);
    }
    output::text(&format!("{name}\n")).map_err(stdout_err)
}

pub(crate) fn host_platform() -> Platform {
    Platform::new("linux", std::env::consts::ARCH).normalize()
}

fn platform_arg(s: &str) -> Result<Platform> {
    Platform::parse_with_host(s, &host_platform())
        .map_err(|e| Error::usage(format!("--platform {s:?}: {e}")))
}

async fn pull(client: &Client, opts: Opts, a: PullArgs) -> Result<()> {
    let (last, name) = pull_image(client, &a).await?;
    transfer_output(opts, &last, &name)
}

/// Pulls (and unless `--no-unpack` unpacks) an image through berthd's Transfer service,
/// showing progress on stderr: the final report and the name of the image record made.
pub(crate) async fn pull_image(client: &Client, a: &PullArgs) -> Result<(Progress, String)> {
    let reference = Reference::parse(&a.reference)
        .map_err(|e| Error::usage(format!("{:?} is not an image reference: {e}", a.reference)))?;
    let platforms = a
        .platforms
        .iter()
        .map(|p| platform_arg(p).map(|p| p.to_string()))
        .collect::<Result<Vec<_>>>()?;
    let what = reference.to_string();
    let req = PullRequest {
        reference: what.clone(),
        platforms,
        all_platforms: a.all_platforms,
        plain_http_hosts: plain_http_hosts(&a.plain_http),
        snapshotter: a.snapshotter.clone(),
        skip_unpack: a.no_unpack,
        credentials: credentials(a.user.as_deref())?,
    };
    let mut display = Display::new(a.quiet, "pulling", &what);
    let mut stream = client
        .transfer()
        .pull(client.request(req)?)
        .await
        .map_err(|s| transfer_err(client, "pull", &what, &s))?
        .into_inner();
    let last = follow(client, "pulling", &what, &mut display, &mut stream).await?;
    let name = if last.image.is_empty() {
        what
    } else {
        last.image.clone()
    };
    Ok((last, name))
}

async fn push(client: &Client, opts: Opts, a: PushArgs) -> Result<()> {
    let image = get_image(client, &a.name).await?;
    let destination = match &a.reference {
        Some(r) => Reference::parse(r)
            .map_err(|e| Error::usage(format!("{r:?} is not an image reference: {e}")))?
            .to_string(),
        None => String::new(),
    };
    let what = if destination.is_empty() {
        image.name.clone()
    } else {
        destination.clone()
    };
    let req = PushRequest {
        image: image.name.clone(),
        reference: destination,
        plain_http_hosts: plain_http_hosts(&a.plain_http),
        credentials: credentials(a.user.as_deref())?,
    };
    let mut display = Display::new(a.quiet, "pushing", &what);
    let mut stream = client
        .transfer()
        .push(client.request(req)?)
        .await
        .map_err(|s| transfer_err(client, "push", &what, &s))?
        .into_inner();
    let last = follow(client, "pushing", &what, &mut display, &mut stream).await?;
    transfer_output(opts, &last, &what)
}

/// A path as berthd must get it: absolute (berthd's working directory is not ours).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(format!("resolving {}", path.display()), &e))
}

async fn import(client: &Client, opts: Opts, a: ImportArgs) -> Result<()> {
    let path = absolute(&a.file)?;
    if let Err(e) = std::fs::metadata(&path) {
        return Err(Error::io(format!("cannot import {}", path.display()), &e));
    }
    let what = path.display().to_string();
    let images = client
        .transfer()
        .import(client.request(ImportRequest {
            path: what.clone(),
            snapshotter: a.snapshotter,
            skip_unpack: a.no_unpack,
            base_name: a.base_name.unwrap_or_default(),
        })?)
        .await
        .map_err(|s| transfer_err(client, "import", &what, &s))?
        .into_inner()
        .images;
    if opts.json {
        return output::json(&images).map_err(stdout_err);
    }
    let mut out = String::new();
    for i in &images {
        out.push_str(i);
        out.push('\n');
    }
    output::text(&out).map_err(stdout_err)
}

#[derive(Serialize)]
struct ExportView {
    path: String,
    size: i64,
    images: Vec<String>,
}

async fn export(client: &Client, opts: Opts, file: &Path, names: &[String]) -> Result<()> {
    let path = absolute(file)?;
    let mut images = Vec::with_capacity(names.len());
    for n in names {
        images.push(get_image(client, n).await?.name);
    }
    let what = path.display().to_string();
    let size = client
        .transfer()
        .export(client.request(ExportRequest {
            path: what.clone(),
            images: images.clone(),
        })?)
        .await
        .map_err(|s| transfer_err(client, "export", &what, &s))?
        .into_inner()
        .size;
    if opts.json {
        let v = ExportView {
            path: what,
            size,
            images,
        };
        return output::json(&v).map_err(stdout_err);
    }
    eprintln!(
        "exported {} image{} to {what} ({})",
        images.len(),
        if images.len() == 1 { "" } else { "s" },
        output::human_size(size.max(0) as u64)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// mount, unmount

/// The chain ID of an image's layers for `platform`: the key of the committed snapshot that
/// unpacking it made.
/// The config of `image` for `platform` and the chain ID of its layers (the snapshot a
/// container of it starts from).
pub(crate) async fn image_config(
    docs: &mut Documents<'_>,
    image: &Image,
    platform: &Platform,
) -> Result<(ImageConfig, Digest)> {
    let name = &image.name;
    let matcher = Matcher::only(platform);
    let mut d = Desc::of_target(image.target.as_ref());
    for _ in 0..4 {
        if !media::is_index(&d.media_type) {
            break;
        }
        let bytes = docs.get(&d.digest).await?.ok_or_else(|| {
            Error::failed(format!(
                "image {name:?}: its index {} is not in the content store — pull it again",
                d.digest
            ))
        })?;
        let ix = Index::parse(bytes)
            .map_err(|e| Error::failed(format!("image {name:?}: index {}: {e}", d.digest)))?;
        let candidates: Vec<Desc> = matcher
            .select(&ix.manifests, None)
            .into_iter()
            .filter(|m| m.platform.as_ref().is_none_or(|p| matcher.matches(p)))
            .map(Desc::of)
            .collect();
        let mut chosen = None;
        for c in candidates {
            if docs.get(&c.digest).await?.is_some() {
                chosen = Some(c);
                break;
            }
        }
        d = chosen.ok_or_else(|| {
            let listed: Vec<String> = ix
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref())
                .filter(|p| !is_unknown_platform(p))
                .map(ToString::to_string)
                .collect();
            Error::failed(format!(
                "image {name:?} has no manifest for {platform} in this namespace (its index \
                 lists {}) — pull it with --platform {platform}, or mount another with \
                 --platform",
                if listed.is_empty() {
                    "no platforms".to_string()
                } else {
                    listed.join(", ")
                }
            ))
        })?;
    }
    if !media::is_manifest(&d.media_type) {
        return Err(Error::failed(format!(
            "image {name:?} points at {} ({}), not an image manifest or index",
            d.digest, d.media_type
        )));
    }
    let bytes = docs.get(&d.digest).await?.ok_or_else(|| {
        Error::failed(format!(
            "image {name:?}: its manifest {} is not in the content store — pull it again",
            d.digest
        ))
    })?;
    let manifest = Manifest::parse(bytes)
        .map_err(|e| Error::failed(format!("image {name:?}: manifest {}: {e}", d.digest)))?;
    let config_digest = manifest.config.digest.to_string();
    let bytes = docs.get(&config_digest).await?.ok_or_else(|| {
        Error::failed(format!(
            "image {name:?}: its config {config_digest} is not in the content store — pull it \
             again"
        ))
    })?;
    let config = ImageConfig::parse(bytes)
        .map_err(|e| Error::failed(format!("image {name:?}: config {config_digest}: {e}")))?;
    let chain = chain_ids(&config.rootfs.diff_ids)
        .pop()
        .ok_or_else(|| Error::failed(format!("image {name:?} has no layers to mount")))?;
    Ok((config, chain))
}

#[derive(Serialize)]
struct MountView {
    image: String,
    target: String,
    snapshotter: String,
    /// The snapshot (and lease) key: the target's absolute path.
    key: String,
    parent: String,
    read_only: bool,
    mounts: Vec<snapshot::MountView>,
}

async fn mount(client: &Client, opts: Opts, a: MountArgs) -> Result<()> {
    let platform = match &a.platform {
        Some(p) => platform_arg(p)?,
        None => host_platform(),
    };
    let meta = std::fs::metadata(&a.target)
        .map_err(|e| Error::io(format!("mount target {}", a.target.display()), &e))?;
    if !meta.is_dir() {
        return Err(Error::usage(format!(
            "mount target {} is not a directory",
            a.target.display()
        )));
    }
    let target = snapshot::absolute_target(&a.target)?;
    let key = target.display().to_string();
    let sn = a.snapshotter.as_str();

    let image = get_image(client, &a.name).await?;
    let mut docs = Documents::new(client);
    let (_, chain) = image_config(&mut docs, &image, &platform).await?;
    let parent = chain.to_string();
    let stat = client
        .snapshots()
        .stat(client.request(StatSnapshotRequest {
            snapshotter: sn.to_string(),
            key: parent.clone(),
        })?)
        .await;
    match stat {
        Ok(_) => {}
        Err(s) if s.code() == Code::NotFound && !s.message().contains("snapshotter") => {
            return Err(Error::failed(format!(
                "image {:?} is not unpacked in snapshotter {sn} (no snapshot {parent}) — pull \
                 it again with --snapshotter {sn} (and without --no-unpack)",
                image.name
            )))
        }
        Err(s) => {
            return Err(snapshot::snapshot_err(
                client,
                sn,
                &format!("snapshot {parent}"),
                &s,
            ))
        }
    }

    // The lease keeps the new snapshot from garbage collection until `unmount --rm`, as ctr's.
    let lease_labels: HashMap<String, String> =
        [(format!("{MOUNT_LEASE_LABEL}{sn}"), key.clone())].into();
    client
        .leases()
        .create(client.request(CreateLease {
            id: key.clone(),
            labels: lease_labels,
        })?)
        .await
        .map_err(|s| {
            if s.code() == Code::AlreadyExists {
                Error::failed(format!(
                    "{key} already has a berth mount (lease {key:?} exists) — unmount it first \
                     with `berth image unmount --rm {key}`"
                ))
            } else {
                client.err(&format!("lease {key:?}"), &s)
            }
        })?;
    let cleanup = |with_snapshot: bool| {
        let key = key.clone();
        async move {
            if with_snapshot {
                snapshot::remove_quietly(client, sn, &key).await;
            }
            lease::delete_quietly(client, &key).await;
        }
    };

    let what = format!("snapshot {key:?}");
    let created = async {
        Ok(if a.rw {
            let req = PrepareSnapshotRequest {
                snapshotter: sn.to_string(),
                key: key.clone(),
                parent: parent.clone(),
                labels: HashMap::new(),
            };
            client
                .snapshots()
                .prepare(client.request_in_lease(req, &key)?)
                .await
                .map(|r| r.into_inner().mounts)
        } else {
            let req = ViewSnapshotRequest {
                snapshotter: sn.to_string(),
                key: key.clone(),
                parent: parent.clone(),
                labels: HashMap::new(),
            };
            client
                .snapshots()
                .view(client.request_in_lease(req, &key)?)
                .await
                .map(|r| r.into_inner().mounts)
        })
    };
    let created: std::result::Result<_, Status> = match created.await {
        Ok(c) => c,
        Err(e) => {
            cleanup(false).await;
            return Err(e);
        }
    };
    let mounts = match created {
        Ok(m) => m,
        Err(s) => {
            cleanup(false).await;
            return Err(if s.code() == Code::AlreadyExists {
                Error::failed(format!(
                    "snapshot {key:?} already exists in snapshotter {sn} (a mount at {key} \
                     not cleaned up?) — remove it with `berth image unmount --rm {key}`"
                ))
            } else {
                snapshot::snapshot_err(client, sn, &what, &s)
            });
        }
    };
    let done = blocking::unblock({
        let (mounts, target) = (mounts.clone(), target.clone());
        move || snapshot::mount_all(&mounts, &target)
    })
    .await;
    if let Err(e) = done {
        cleanup(true).await;
        return Err(e);
    }
    if opts.json {
        let v = MountView {
            image: image.name.clone(),
            target: key.clone(),
            snapshotter: sn.to_string(),
            key: key.clone(),
            parent,
            read_only: !a.rw,
            mounts: snapshot::mount_views(&mounts),
        };
        return output::json(&v).map_err(stdout_err);
    }
    output::text(&format!("{key}\n")).map_err(stdout_err)
}

/// The label `berth image mount` (like ctr) puts on a mount's lease: its suffix names the
/// snapshotter, its value the snapshot.
const MOUNT_LEASE_LABEL: &str = "containerd.io/gc.ref.snapshot.";

/// The snapshotter the lease of the mount at `key` names, if there is such a lease.
async fn mount_snapshotter(client: &Client, key: &str) -> Result<Option<String>> {
    let leases = client
        .leases()
        .list(client.request(ListLeases { filters: vec![] })?)
        .await
        .map_err(|s| client.err("leases", &s))?
        .into_inner()
        .leases;
    Ok(leases.into_iter().find(|l| l.id == key).and_then(|l| {
        l.labels.into_iter().find_map(|(k, v)| {
            k.strip_prefix(MOUNT_LEASE_LABEL)
                .filter(|_| v == key)
                .map(str::to_string)
        })
    }))
}

async fn unmount(
    client: &Client,
    opts: Opts,
    target: &Path,
    rm: bool,
    snapshotter: Option<String>,
) -> Result<()> {
    let target = snapshot::absolute_target(target)?;
    let key = target.display().to_string();
    let unmounted = blocking::unblock({
        let target = target.clone();
        move || snapshot::unmount_all(&target)
    })
    .await?;
    let mut removed_snapshot = false;
    let mut removed_lease = false;
    let sn = match (rm, snapshotter) {
        (false, s) => s.unwrap_or_else(|| DEFAULT_SNAPSHOTTER.to_string()),
        (true, Some(s)) => s,
        (true, None) => mount_snapshotter(client, &key)
            .await?
            .unwrap_or_else(|| DEFAULT_SNAPSHOTTER.to_string()),
    };
    let sn = sn.as_str();
    if rm {
        match client
            .leases()
            .delete(client.request(DeleteLease {
                id: key.clone(),
                sync: false,
            })?)
            .await
        {
            Ok(_) => removed_lease = true,
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(client.err(&format!("lease {key:?}"), &s)),
        }
        match client
            .snapshots()
            .remove(client.request(RemoveSnapshotRequest {
                snapshotter: sn.to_string(),
                key: key.clone(),
            })?)
            .await
        {
            Ok(_) => removed_snapshot = true,
            Err(s) if s.code() == Code::NotFound && !s.message().contains("snapshotter") => {}
            Err(s) => {
                return Err(snapshot::snapshot_err(
                    client,
                    sn,
                    &format!("snapshot {key:?}"),
                    &s,
                ))
            }
        }
    }
    if unmounted == 0 && !removed_snapshot && !removed_lease {
        return Err(Error::failed(format!(
            "nothing is mounted at {key}{}",
            if rm {
                format!(" and there is no snapshot {key:?} in snapshotter {sn} to remove")
            } else {
                String::new()
            }
        )));
    }
    if opts.json {
        #[derive(Serialize)]
        struct UnmountView<'a> {
            target: String,
            unmounted: usize,
            snapshotter: &'a str,
            removed_snapshot: bool,
        }
        return output::json(&UnmountView {
            target: key,
            unmounted,
            snapshotter: sn,
            removed_snapshot,
        })
        .map_err(stdout_err);
    }
    output::text(&format!("{key}\n")).map_err(stdout_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(state: &str, done: i64, size: i64) -> LayerProgress {
        LayerProgress {
            digest: "sha256:0123456789abcdef0123".into(),
            size,
            done,
            state: state.into(),
        }
    }

    #[test]
    fn layer_lines_show_digest_state_bytes_and_bar() {
        let l = layer_line(&layer("downloading", 512, 2048));
        assert!(l.starts_with("0123456789ab  downloading"), "{l}");
        assert!(l.contains("512 B/2.0 KiB"), "{l}");
        assert!(l.contains("[=====>"), "{l}");
        assert!(l.ends_with(" 25%"), "{l}");
        let l = layer_line(&layer("exists", 0, 2048));
        assert!(l.contains("2.0 KiB/2.0 KiB"), "{l}");
        assert!(l.ends_with("100%"), "{l}");
    }

    fn report(layers: &[(&str, &str, i64, i64)], done: bool) -> Progress {
        Progress {
            image: "r/x:1".into(),
            target: Some(types::Descriptor {
                digest: "sha256:ff".into(),
                ..Default::default()
            }),
            layers: layers
                .iter()
                .map(|(digest, state, done, size)| LayerProgress {
                    digest: (*digest).into(),
                    size: *size,
                    done: *done,
                    state: (*state).into(),
                })
                .collect(),
            done,
        }
    }

    #[test]
    fn lines_mode_prints_state_changes_and_periodic_updates() {
        let mut d = Display::with_mode(Mode::Lines, "pulling", "r/x:1");
        let t0 = StdInstant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let first = d.feed(
            &report(&[("sha256:aa", "downloading", 0, 100)], false),
            at(0),
            80,
        );
        assert_eq!(first.lines().count(), 2, "{first}");
        assert!(first.starts_with("pulling r/x:1 (sha256:ff)\n"), "{first}");
        // Bytes moved, but too soon for another line.
        let r = report(&[("sha256:aa", "downloading", 10, 100)], false);
        assert_eq!(d.feed(&r, at(500), 80), "");
        // Later: a line again.
        let r = report(&[("sha256:aa", "downloading", 50, 100)], false);
        assert!(d.feed(&r, at(2600), 80).contains("50%"));
        // A state change: at once.
        let r = report(&[("sha256:aa", "unpacking", 100, 100)], false);
        assert!(d.feed(&r, at(2700), 80).contains("unpacking"));
        let r = report(&[("sha256:aa", "done", 100, 100)], true);
        assert!(d.feed(&r, at(2800), 80).contains("done"));
        let end = d.finish_text(true, at(3000), 80);
        assert!(end.starts_with("pulled r/x:1: 1 layer, 100 B in "), "{end}");
        assert!(!end.contains('\x1b'));
    }

    #[test]
    fn live_mode_redraws_in_place() {
        let mut d = Display::with_mode(Mode::Live, "pulling", "r/x:1");
        let t0 = StdInstant::now();
        let layers = [
            ("sha256:aa", "downloading", 0, 100),
            ("sha256:bb", "waiting", 0, 9),
        ];
        let first = d.feed(&report(&layers, false), t0, 40);
        assert!(
            !first.contains("\x1b[3A"),
            "nothing to move over yet: {first:?}"
        );
        assert_eq!(first.matches("\x1b[2K").count(), 3, "{first:?}");
        assert!(
            first.lines().all(|l| l.chars().count() <= 39 + 4),
            "{first:?}"
        );
        // Within the redraw interval and no state change: nothing.
        assert_eq!(
            d.feed(&report(&layers, false), t0 + Duration::from_millis(10), 40),
            ""
        );
        let second = d.feed(&report(&layers, false), t0 + Duration::from_millis(200), 40);
        assert!(second.starts_with("\x1b[3A\x1b[2K"), "{second:?}");
    }

    #[test]
    fn bars_fill_proportionally() {
        assert_eq!(bar(0.0, 4), "    ");
        assert_eq!(bar(0.5, 4), "=>  ");
        assert_eq!(bar(1.0, 4), "====");
        assert_eq!(bar(7.0, 4), "====");
    }

    #[test]
    fn plain_http_hosts_lose_scheme_and_slash() {
        assert_eq!(
            plain_http_hosts(&["http://reg:5000/".into(), "reg2".into()]),
            ["reg:5000", "reg2"]
        );
    }

    #[test]
    fn credentials_need_a_colon() {
        assert_eq!(credentials(Some("u:p")).unwrap(), "u:p");
        assert!(credentials(Some("u")).is_err());
        assert_eq!(credentials(None).unwrap(), "");
    }

    #[test]
    fn host_platform_is_normalised() {
        let p = host_platform();
        assert_eq!(p.os, "linux");
        assert!(!p.architecture.contains('_'), "{p}");
    }
}
