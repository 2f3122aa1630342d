//! `berth snapshot`: the snapshots of a snapshotter (`overlayfs` by default, or `native`), as
//! `ctr snapshots` shows and changes them; and [`mount_all`]/[`unmount_all`], which perform the
//! mounts the Snapshots API hands out (for `berth image mount`).
//!
//! Mounts are data until performed: `prepare --mounts`, `view --mounts` and `mounts` print them
//! as `mount` commands, exactly as ctr does, and mount nothing.
//!
//! As in containerd, a snapshot nothing refers to (no image, no lease, no
//! `containerd.io/gc.root` label) is removed by the next garbage collection: label the ones
//! made by hand with `--label containerd.io/gc.root=…` to keep them.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use berth_api::services::snapshots::v1::{
    CommitSnapshotRequest, Info, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest, UsageRequest,
    ViewSnapshotRequest,
};
use berth_api::types;
use berth_core::snapshot::{plan_mounts, Kind, Mount, MountPlan};
use clap::{Args, Subcommand};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use serde::Serialize;
use tonic::{Code, Status};

use crate::client::Client;
use crate::cmd::{label_paths, remove_each, stdout_err, Failures};
use crate::error::{Error, Result};
use crate::output::{self, Table};
use crate::{parse, Opts};

/// The snapshotter commands use unless told otherwise (containerd's default).
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

/// `berth snapshot [--snapshotter S] …`
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The snapshotter to work in (berthd has overlayfs and native)
    #[arg(
        long,
        global = true,
        env = "BERTH_SNAPSHOTTER",
        default_value = DEFAULT_SNAPSHOTTER,
        value_name = "NAME"
    )]
    snapshotter: String,
    #[command(subcommand)]
    command: SnapshotCommand,
}

/// `berth snapshot …`
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List snapshots (filters such as kind==active, parent==KEY, labels."k"==v; OR-ed)
    #[command(visible_alias = "list")]
    Ls {
        /// containerd filters
        filters: Vec<String>,
    },
    /// Show snapshots as a tree, each under its parent
    Tree,
    /// Show one snapshot's record as JSON
    Info {
        /// The snapshot's key (or name, once committed)
        key: String,
    },
    /// Show the disk usage of snapshots (all of them without KEYs)
    #[command(visible_alias = "du")]
    Usage {
        /// Keys of the snapshots [default: every snapshot]
        keys: Vec<String>,
        /// Sizes in bytes rather than KiB/MiB/GiB
        #[arg(short, long)]
        bytes: bool,
    },
    /// Create an active (writable) snapshot KEY on top of the committed PARENT
    Prepare(CreateArgs),
    /// Create a read-only view KEY of the committed PARENT
    View(CreateArgs),
    /// Print the mounts of an active snapshot or view as `mount` commands aimed at TARGET
    Mounts {
        /// The directory the commands mount at
        target: String,
        /// The snapshot's key
        key: String,
    },
    /// Commit the active snapshot KEY as the committed snapshot NAME (KEY goes away)
    Commit {
        /// The name of the committed snapshot
        name: String,
        /// The key of the active snapshot to commit
        key: String,
        /// A label on the committed snapshot, as key=value (repeatable; the active snapshot's
        /// labels are not carried over)
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Set labels on a snapshot (key= removes a label)
    Label {
        /// The snapshot's key
        key: String,
        /// Labels as key=value; an empty value removes the label
        #[arg(required = true, value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Remove snapshots (a committed one only once it has no children)
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// Keys of the snapshots
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

/// What `prepare` and `view` take.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The new snapshot's key
    key: String,
    /// The committed snapshot to build on [default: none, an empty snapshot]
    parent: Option<String>,
    /// Print the snapshot's mounts as `mount` commands aimed at this directory
    #[arg(long, value_name = "DIR")]
    target: Option<String>,
    /// Print the snapshot's mounts as `mount` commands (at --target, or at the empty target)
    #[arg(long)]
    mounts: bool,
    /// A label as key=value (repeatable); containerd.io/gc.root=… keeps the snapshot from
    /// garbage collection
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
}

#[derive(Serialize)]
struct InfoView {
    name: String,
    parent: Option<String>,
    kind: String,
    created_at: Option<String>,
    updated_at: Option<String>,
    labels: BTreeMap<String, String>,
}

fn kind_name(kind: i32) -> String {
    Kind::from_wire(kind).map_or_else(|| format!("unknown ({kind})"), |k| k.name().to_string())
}

fn info_view(i: &Info) -> InfoView {
    InfoView {
        name: i.name.clone(),
        parent: (!i.parent.is_empty()).then(|| i.parent.clone()),
        kind: kind_name(i.kind),
        created_at: output::rfc3339(i.created_at.as_ref()),
        updated_at: output::rfc3339(i.updated_at.as_ref()),
        labels: output::sorted(&i.labels),
    }
}

/// A mount as JSON shows it (containerd's field names).
#[derive(Serialize)]
pub struct MountView {
    r#type: String,
    source: String,
    target: String,
    options: Vec<String>,
}

/// Mounts as JSON.
pub fn mount_views(mounts: &[types::Mount]) -> Vec<MountView> {
    mounts
        .iter()
        .map(|m| MountView {
            r#type: m.r#type.clone(),
            source: m.source.clone(),
            target: m.target.clone(),
            options: m.options.clone(),
        })
        .collect()
}

/// A wire mount in core's form.
pub fn core_mount(m: &types::Mount) -> Mount {
    Mount {
        kind: m.r#type.clone(),
        source: m.source.clone(),
        target: m.target.clone(),
        options: m.options.clone(),
    }
}

/// ctr's `printMounts`: one `mount -t TYPE SOURCE TARGET -o OPTIONS` line per mount.
pub fn mount_commands(mounts: &[types::Mount], target: &str) -> String {
    let mut out = String::new();
    for m in mounts {
        let at = if m.target.is_empty() {
            target.to_string()
        } else {
            Path::new(target).join(&m.target).display().to_string()
        };
        out.push_str(&format!(
            "mount -t {} {} {} -o {}\n",
            m.r#type,
            m.source,
            at,
            m.options.join(",")
        ));
    }
    out
}

/// Maps a status of the Snapshots service about `what` in `snapshotter`. An unknown snapshotter
/// is InvalidArgument "snapshotter not loaded: X" (containerd's answer), told apart here.
pub fn snapshot_err(client: &Client, snapshotter: &str, what: &str, s: &Status) -> Error {
    if s.code() == Code::InvalidArgument && s.message().contains("snapshotter not loaded") {
        return Error::failed(format!(
            "berthd has no snapshotter {snapshotter:?} ({}) — pass --snapshotter overlayfs or \
             --snapshotter native",
            s.message()
        ));
    }
    client.err(&format!("{what} (snapshotter {snapshotter})"), s)
}

/// Removes snapshot `key`, best effort: for cleanups after another failure or at the end of a
/// `--rm` run, where a failure to remove has nothing left to stop.
pub async fn remove_quietly(client: &Client, snapshotter: &str, key: &str) {
    if let Ok(req) = client.request(RemoveSnapshotRequest {
        snapshotter: snapshotter.to_string(),
        key: key.to_string(),
    }) {
        let _ = client.snapshots().remove(req).await;
    }
}

/// Every snapshot of `snapshotter` matching `filters`.
pub async fn list(client: &Client, snapshotter: &str, filters: Vec<String>) -> Result<Vec<Info>> {
    let fail = |s: &Status| snapshot_err(client, snapshotter, "snapshots", s);
    let mut stream = client
        .snapshots()
        .list(client.request(ListSnapshotsRequest {
            snapshotter: snapshotter.to_string(),
            filters,
        })?)
        .await
        .map_err(|s| fail(&s))?
        .into_inner();
    let mut infos = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(|s| fail(&s))? {
        infos.extend(chunk.info);
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(infos)
}

/// One snapshot's record.
pub async fn stat(client: &Client, snapshotter: &str, key: &str) -> Result<Info> {
    let what = format!("snapshot {key:?}");
    client
        .snapshots()
        .stat(client.request(StatSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
        })?)
        .await
        .map_err(|s| snapshot_err(client, snapshotter, &what, &s))?
        .into_inner()
        .info
        .ok_or_else(|| Error::failed(format!("berthd returned no record for {what}")))
}

/// The mounts of an active snapshot.
pub async fn mounts(client: &Client, snapshotter: &str, key: &str) -> Result<Vec<types::Mount>> {
    let what = format!("snapshot {key:?}");
    Ok(client
        .snapshots()
        .mounts(client.request(MountsRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
        })?)
        .await
        .map_err(|s| snapshot_err(client, snapshotter, &what, &s))?
        .into_inner()
        .mounts)
}

/// Runs a `berth snapshot` command.
pub async fn run(client: &Client, opts: Opts, args: SnapshotArgs) -> Result<()> {
    let sn = args.snapshotter.as_str();
    match args.command {
        SnapshotCommand::Ls { filters } => {
            let infos = list(client, sn, filters).await?;
            if opts.json {
                let v: Vec<InfoView> = infos.iter().map(info_view).collect();
                return output::json(&v).map_err(stdout_err);
            }
            let now = output::now();
            let mut t = Table::new(&["KEY", "PARENT", "KIND", "AGE"]);
            for i in &infos {
                t.row(vec![
                    i.name.clone(),
                    if i.parent.is_empty() {
                        "-".into()
                    } else {
                        i.parent.clone()
                    },
                    kind_name(i.kind),
                    output::age(i.created_at.as_ref(), now),
                ]);
            }
            t.print().map_err(stdout_err)
        }
        SnapshotCommand::Tree => {
            let infos = list(client, sn, Vec::new()).await?;
            if opts.json {
                return output::json(&tree_json(&infos)).map_err(stdout_err);
            }
            output::text(&render_tree(&infos)).map_err(stdout_err)
        }
        SnapshotCommand::Info { key } => {
            let info = stat(client, sn, &key).await?;
            output::json(&info_view(&info)).map_err(stdout_err)
        }
        SnapshotCommand::Usage { keys, bytes } => usage(client, opts, sn, keys, bytes).await,
        SnapshotCommand::Prepare(a) => create(client, opts, sn, a, false).await,
        SnapshotCommand::View(a) => create(client, opts, sn, a, true).await,
        SnapshotCommand::Mounts { target, key } => {
            let mounts = mounts(client, sn, &key).await?;
            if opts.json {
                return output::json(&mount_views(&mounts)).map_err(stdout_err);
            }
            output::text(&mount_commands(&mounts, &target)).map_err(stdout_err)
        }
        SnapshotCommand::Commit { name, key, labels } => {
            let labels = parse::labels(&labels).map_err(Error::usage)?;
            let what = format!("active snapshot {key:?}");
            client
                .snapshots()
                .commit(client.request(CommitSnapshotRequest {
                    snapshotter: sn.to_string(),
                    name: name.clone(),
                    key: key.clone(),
                    labels: labels.into_iter().collect(),
                })?)
                .await
                .map_err(|s| snapshot_err(client, sn, &what, &s))?;
            if opts.json {
                let info = stat(client, sn, &name).await?;
                return output::json(&info_view(&info)).map_err(stdout_err);
            }
            output::text(&format!("{name}\n")).map_err(stdout_err)
        }
        SnapshotCommand::Label { key, labels } => {
            let labels = parse::labels(&labels).map_err(Error::usage)?;
            let paths = label_paths(&labels);
            let what = format!("snapshot {key:?}");
            let info = client
                .snapshots()
                .update(client.request(UpdateSnapshotRequest {
                    snapshotter: sn.to_string(),
                    info: Some(Info {
                        name: key.clone(),
                        labels: labels.into_iter().collect(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths }),
                })?)
                .await
                .map_err(|s| snapshot_err(client, sn, &what, &s))?
                .into_inner()
                .info
                .unwrap_or_default();
            if opts.json {
                return output::json(&info_view(&info)).map_err(stdout_err);
            }
            let mut t = Table::new(&["KEY", "LABELS"]);
            t.row(vec![info.name.clone(), output::labels_cell(&info.labels)]);
            t.print().map_err(stdout_err)
        }
        SnapshotCommand::Rm { keys } => {
            remove_each(opts, &keys, "snapshots", |key| async move {
                client
                    .snapshots()
                    .remove(client.request(RemoveSnapshotRequest {
                        snapshotter: sn.to_string(),
                        key: key.to_string(),
                    })?)
                    .await
                    .map_err(|s| snapshot_err(client, sn, &format!("snapshot {key:?}"), &s))?;
                Ok(key)
            })
            .await
        }
    }
}

async fn create(client: &Client, opts: Opts, sn: &str, a: CreateArgs, view: bool) -> Result<()> {
    let labels: HashMap<String, String> = parse::labels(&a.labels)
        .map_err(Error::usage)?
        .into_iter()
        .collect();
    let what = format!("snapshot {:?}", a.key);
    let parent = a.parent.clone().unwrap_or_default();
    let mounts = if view {
        client
            .snapshots()
            .view(client.request(ViewSnapshotRequest {
                snapshotter: sn.to_string(),
                key: a.key.clone(),
                parent,
                labels,
            })?)
            .await
            .map(|r| r.into_inner().mounts)
    } else {
        client
            .snapshots()
            .prepare(client.request(PrepareSnapshotRequest {
                snapshotter: sn.to_string(),
                key: a.key.clone(),
                parent,
                labels,
            })?)
            .await
            .map(|r| r.into_inner().mounts)
    }
    .map_err(|s| parent_err(client, sn, &what, a.parent.as_deref(), &s))?;
    if opts.json {
        return output::json(&mount_views(&mounts)).map_err(stdout_err);
    }
    if a.mounts || a.target.is_some() {
        let target = a.target.as_deref().unwrap_or("");
        return output::text(&mount_commands(&mounts, target)).map_err(stdout_err);
    }
    output::text(&format!("{}\n", a.key)).map_err(stdout_err)
}

/// Prepare and view fail with NotFound when the parent is missing: say so, not "the new
/// snapshot was not found".
fn parent_err(client: &Client, sn: &str, what: &str, parent: Option<&str>, s: &Status) -> Error {
    match parent {
        Some(p) if s.code() == Code::NotFound && !s.message().contains("snapshotter") => {
            Error::failed(format!(
                "cannot create {what}: its parent {p:?} not found in snapshotter {sn} ({}) — \
                 `berth snapshot --snapshotter {sn} ls` lists the snapshots",
                s.message()
            ))
        }
        _ => snapshot_err(client, sn, what, s),
    }
}

#[derive(Serialize)]
struct UsageView {
    key: String,
    size: i64,
    inodes: i64,
}

async fn usage(
    client: &Client,
    opts: Opts,
    sn: &str,
    keys: Vec<String>,
    bytes: bool,
) -> Result<()> {
    let keys = if keys.is_empty() {
        list(client, sn, Vec::new())
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect()
    } else {
        keys
    };
    let mut rows = Vec::new();
    let mut failures = Failures::new(keys.len());
    for key in &keys {
        let what = format!("snapshot {key:?}");
        match client
            .snapshots()
            .usage(client.request(UsageRequest {
                snapshotter: sn.to_string(),
                key: key.clone(),
            })?)
            .await
        {
            Ok(r) => {
                let u = r.into_inner();
                rows.push(UsageView {
                    key: key.clone(),
                    size: u.size,
                    inodes: u.inodes,
                });
            }
            Err(s) => failures.push(snapshot_err(client, sn, &what, &s)),
        }
    }
    if opts.json {
        output::json(&rows).map_err(stdout_err)?;
    } else {
        let mut t = Table::new(&["KEY", "SIZE", "INODES"]);
        for r in &rows {
            let size = if bytes {
                r.size.to_string()
            } else {
                output::human_size(r.size.max(0) as u64)
            };
            t.row(vec![r.key.clone(), size, r.inodes.to_string()]);
        }
        t.print().map_err(stdout_err)?;
    }
    failures.finish("snapshots", "measured")
}

/// The children of each parent (sorted by name), and the roots: snapshots without a parent or
/// whose parent is not in the list.
fn tree_parts(infos: &[Info]) -> (Vec<&str>, BTreeMap<&str, Vec<&str>>) {
    let names: std::collections::HashSet<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let mut roots = Vec::new();
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for i in infos {
        if i.parent.is_empty() || !names.contains(i.parent.as_str()) {
            roots.push(i.name.as_str());
        } else {
            children
                .entry(i.parent.as_str())
                .or_default()
                .push(i.name.as_str());
        }
    }
    roots.sort_unstable();
    for c in children.values_mut() {
        c.sort_unstable();
    }
    (roots, children)
}

/// ctr's `snapshots tree`: each snapshot on its own line, children two spaces deeper than
/// their parent and marked `\_`.
fn render_tree(infos: &[Info]) -> String {
    fn node(out: &mut String, name: &str, depth: usize, children: &BTreeMap<&str, Vec<&str>>) {
        let mut prefix = "  ".repeat(depth);
        if depth > 0 {
            prefix.push_str("\\_");
        }
        out.push_str(&format!("{prefix} {name}\n"));
        for c in children.get(name).into_iter().flatten() {
            node(out, c, depth + 1, children);
        }
    }
    let (roots, children) = tree_parts(infos);
    let mut out = String::new();
    for r in roots {
        node(&mut out, r, 0, &children);
    }
    out
}

#[derive(Serialize)]
struct TreeNode {
    name: String,
    children: Vec<TreeNode>,
}

fn tree_json(infos: &[Info]) -> Vec<TreeNode> {
    fn node(name: &str, children: &BTreeMap<&str, Vec<&str>>) -> TreeNode {
        TreeNode {
            name: name.to_string(),
            children: children
                .get(name)
                .into_iter()
                .flatten()
                .map(|c| node(c, children))
                .collect(),
        }
    }
    let (roots, children) = tree_parts(infos);
    roots.into_iter().map(|r| node(r, &children)).collect()
}

/// The absolute form of a mount target as `berth image mount` keys its snapshot and lease by
/// it: symlinks resolved when the path exists, else made absolute against the working
/// directory.
pub fn absolute_target(target: &Path) -> Result<PathBuf> {
    match std::fs::canonicalize(target) {
        Ok(p) => Ok(p),
        Err(_) => std::path::absolute(target)
            .map_err(|e| Error::io(format!("resolving {}", target.display()), &e)),
    }
}

/// Mount flags and propagation from containerd's options (`parseMountOptions` in
/// `mount_linux.go`); what is neither is filesystem data ([`Mount::data`]).
fn mount_flags(options: &[String]) -> (MountFlags, MountPropagationFlags) {
    let mut flags = MountFlags::empty();
    let mut propagation = MountPropagationFlags::empty();
    for o in options {
        let (set, clear) = match o.as_str() {
            "async" => (MountFlags::empty(), MountFlags::SYNCHRONOUS),
            "atime" => (MountFlags::empty(), MountFlags::NOATIME),
            "bind" => (MountFlags::BIND, MountFlags::empty()),
            "defaults" => (MountFlags::empty(), MountFlags::empty()),
            "dev" => (MountFlags::empty(), MountFlags::NODEV),
            "diratime" => (MountFlags::empty(), MountFlags::NODIRATIME),
            "dirsync" => (MountFlags::DIRSYNC, MountFlags::empty()),
            "exec" => (MountFlags::empty(), MountFlags::NOEXEC),
            "mand" => (
                MountFlags::PERMIT_MANDATORY_FILE_LOCKING,
                MountFlags::empty(),
            ),
            "noatime" => (MountFlags::NOATIME, MountFlags::empty()),
            "nodev" => (MountFlags::NODEV, MountFlags::empty()),
            "nodiratime" => (MountFlags::NODIRATIME, MountFlags::empty()),
            "noexec" => (MountFlags::NOEXEC, MountFlags::empty()),
            "nomand" => (
                MountFlags::empty(),
                MountFlags::PERMIT_MANDATORY_FILE_LOCKING,
            ),
            "norelatime" => (MountFlags::empty(), MountFlags::RELATIME),
            "nostrictatime" => (MountFlags::empty(), MountFlags::STRICTATIME),
            "nosuid" => (MountFlags::NOSUID, MountFlags::empty()),
            "rbind" => (MountFlags::BIND | MountFlags::REC, MountFlags::empty()),
            "relatime" => (MountFlags::RELATIME, MountFlags::empty()),
            "ro" => (MountFlags::RDONLY, MountFlags::empty()),
            "rw" => (MountFlags::empty(), MountFlags::RDONLY),
            "strictatime" => (MountFlags::STRICTATIME, MountFlags::empty()),
            "suid" => (MountFlags::empty(), MountFlags::NOSUID),
            "sync" => (MountFlags::SYNCHRONOUS, MountFlags::empty()),
            other => {
                let p = match other {
                    "private" => MountPropagationFlags::PRIVATE,
                    "rprivate" => MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
                    "shared" => MountPropagationFlags::SHARED,
                    "rshared" => MountPropagationFlags::SHARED | MountPropagationFlags::REC,
                    "slave" => MountPropagationFlags::DOWNSTREAM,
                    "rslave" => MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
                    "unbindable" => MountPropagationFlags::UNBINDABLE,
                    "runbindable" => MountPropagationFlags::UNBINDABLE | MountPropagationFlags::REC,
                    _ => MountPropagationFlags::empty(),
                };
                propagation |= p;
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, propagation)
}

/// Performs one mount of a plan (its target filled in).
fn mount_one(m: &Mount) -> io::Result<()> {
    let (flags, propagation) = mount_flags(&m.options);
    let target = m.target.as_str();
    if flags.contains(MountFlags::BIND) {
        // A bind mount ignores every flag but MS_REC; read-only and the others take a remount.
        rustix::mount::mount(
            m.source.as_str(),
            target,
            "",
            flags & (MountFlags::BIND | MountFlags::REC),
            None,
        )?;
        let rest = flags & !(MountFlags::BIND | MountFlags::REC);
        if !rest.is_empty() {
            rustix::mount::mount_remount(target, MountFlags::BIND | rest, "")?;
        }
    } else {
        let data = CString::new(m.data()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "mount options contain a NUL byte",
            )
        })?;
        rustix::mount::mount(
            m.source.as_str(),
            target,
            m.kind.as_str(),
            flags,
            Some(data.as_c_str()),
        )?;
    }
    if !propagation.is_empty() {
        rustix::mount::mount_change(target, propagation)?;
    }
    Ok(())
}

/// Mounts `mounts` (as the Snapshots API returned them) at the absolute directory `target`,
/// in order, as containerd's `mount.All` does: a deep overlay has its lowerdirs made relative
/// ([`plan_mounts`]), and is then mounted from their common directory. If one mount fails,
/// the ones already made are undone.
pub fn mount_all(mounts: &[types::Mount], target: &Path) -> Result<()> {
    let core: Vec<Mount> = mounts.iter().map(core_mount).collect();
    let at = target.display().to_string();
    let plan: MountPlan =
        plan_mounts(&core, &at).map_err(|e| Error::failed(format!("cannot mount: {e}")))?;
    // Relative lowerdirs resolve against the working directory of the process that mounts.
    let previous = match &plan.chdir {
        Some(dir) => {
            let prev = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
            std::env::set_current_dir(dir)
                .map_err(|e| Error::io(format!("changing into {dir} to mount"), &e))?;
            Some(prev)
        }
        None => None,
    };
    let mut done = 0;
    let mut result = Ok(());
    for m in &plan.mounts {
        if let Err(e) = mount_one(m) {
            result = Err(mount_error(m, &at, e));
            break;
        }
        done += 1;
    }
    if let Some(prev) = previous {
        let _ = std::env::set_current_dir(prev);
    }
    if result.is_err() {
        for _ in 0..done {
            let _ = rustix::mount::unmount(at.as_str(), UnmountFlags::empty());
        }
    }
    result
}

fn mount_error(m: &Mount, target: &str, e: io::Error) -> Error {
    let hint = match e.raw_os_error() {
        Some(n) if n == rustix::io::Errno::PERM.raw_os_error() => {
            " — mounting needs root (CAP_SYS_ADMIN)"
        }
        Some(n) if n == rustix::io::Errno::NOENT.raw_os_error() => {
            " — does the target directory exist, and the snapshot's directories?"
        }
        Some(n) if n == rustix::io::Errno::NODEV.raw_os_error() => {
            " — the kernel does not know this filesystem type (modprobe overlay?)"
        }
        _ => "",
    };
    Error::failed(format!(
        "mounting {} {} at {target} (options {}): {e}{hint}",
        m.kind,
        m.source,
        m.options.join(",")
    ))
}

/// Unmounts everything mounted at `target`, topmost first, as containerd's `UnmountAll`;
/// returns how many mounts were removed (0 if nothing was mounted there).
pub fn unmount_all(target: &Path) -> Result<usize> {
    let mut n = 0;
    loop {
        match rustix::mount::unmount(target, UnmountFlags::NOFOLLOW) {
            Ok(()) => n += 1,
            Err(rustix::io::Errno::INVAL) => return Ok(n),
            Err(rustix::io::Errno::NOENT) if n == 0 => return Ok(0),
            Err(e) => {
                let hint = match e {
                    rustix::io::Errno::BUSY => {
                        " — a process still uses it (find it with `fuser -vm TARGET`)"
                    }
                    rustix::io::Errno::PERM => " — unmounting needs root (CAP_SYS_ADMIN)",
                    _ => "",
                };
                return Err(Error::failed(format!(
                    "unmounting {}: {}{hint}",
                    target.display(),
                    io::Error::from(e)
                )));
            }
        }
        if n > 64 {
            return Err(Error::failed(format!(
                "unmounting {}: still mounted after {n} unmounts",
                target.display()
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, parent: &str) -> Info {
        Info {
            name: name.into(),
            parent: parent.into(),
            ..Default::default()
        }
    }

    #[test]
    fn tree_nests_children_under_parents() {
        let infos = vec![
            info("c", "b"),
            info("a", ""),
            info("b", "a"),
            info("b2", "a"),
            info("orphan", "gone"),
        ];
        assert_eq!(
            render_tree(&infos),
            " a\n  \\_ b\n    \\_ c\n  \\_ b2\n orphan\n"
        );
    }

    #[test]
    fn flags_and_data_split_as_containerd() {
        let o = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (f, p) = mount_flags(&o(&["ro", "rbind"]));
        assert_eq!(f, MountFlags::RDONLY | MountFlags::BIND | MountFlags::REC);
        assert!(p.is_empty());
        let (f, p) = mount_flags(&o(&["index=off", "lowerdir=/a:/b", "nosuid", "rprivate"]));
        assert_eq!(f, MountFlags::NOSUID);
        assert_eq!(
            p,
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC
        );
        let (f, _) = mount_flags(&o(&["ro", "rw"]));
        assert!(f.is_empty());
    }

    #[test]
    fn mount_commands_as_ctr_prints_them() {
        let m = types::Mount {
            r#type: "bind".into(),
            source: "/r/snapshots/1/fs".into(),
            target: String::new(),
            options: vec!["ro".into(), "rbind".into()],
        };
        assert_eq!(
            mount_commands(&[m], "/mnt"),
            "mount -t bind /r/snapshots/1/fs /mnt -o ro,rbind\n"
        );
    }
}
