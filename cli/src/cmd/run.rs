//! `berth run` and `berth task exec`: a container from an image (pulled if missing), its
//! process's stdio attached, its exit code passed on.
//!
//! The calls are those of `ctr run`, fewer where they can be: the image record and its config
//! (two content reads), a lease, `Snapshots.Prepare` of the container's snapshot on the
//! image's chain, the spec built in core from the image config and the image's own
//! `/etc/passwd` and `/etc/group` (read from the layers, see [`crate::rootfs`]),
//! `Containers.Create`, `Tasks.Create` with the FIFOs, `Tasks.Start`, `Tasks.Wait`, then
//! `Tasks.Delete` and, with `--rm`, the container and its snapshot.

use std::collections::HashMap;
use std::time::Duration;

use berth_api::runc::v1::Options as RuncOptions;
use berth_api::services::containers::v1::container::Runtime;
use berth_api::services::containers::v1::{
    Container, CreateContainerRequest, DeleteContainerRequest, GetContainerRequest,
};
use berth_api::services::leases::v1::CreateRequest as CreateLease;
use berth_api::services::snapshots::v1::PrepareSnapshotRequest;
use berth_api::services::tasks::v1::{
    CloseIoRequest, CreateTaskRequest, DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest,
    KillRequest, ResizePtyRequest, StartRequest, WaitRequest,
};
use berth_api::types::Mount;
use berth_core::metadata::{format_rfc3339, LABEL_GC_EXPIRE};
use berth_core::spec::{self, CpuLimit, ExecOptions, ImageFiles, Network, SpecOptions};
use clap::Args;
use futures_lite::StreamExt;
use prost::Message;
use tonic::Code;

use crate::client::Client;
use crate::cmd::image::{self, Documents, PullArgs};
use crate::cmd::lease;
use crate::cmd::snapshot::{self, DEFAULT_SNAPSHOTTER};
use crate::error::{Error, Result};
use crate::stdio::{Attached, Fifos, RawTerminal};
use crate::{output, rootfs, Opts};

/// The type URL of an OCI runtime spec in an `Any` (containerd's typeurl registration).
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// The type URL of an OCI process in an `Any`.
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// The runtime containers are created with (containerd's runc v2 shim, berth's own shim).
const RUNTIME: &str = "io.containerd.runc.v2";
/// How long output may keep draining after the process exited.
const DRAIN: Duration = Duration::from_secs(2);

/// What `berth run` takes.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container (and its snapshot) when it exits
    #[arg(long)]
    rm: bool,
    /// Start it and return: print the id, attach nothing
    #[arg(short, long, conflicts_with = "rm")]
    detach: bool,
    /// Allocate a terminal (stdin attached; the terminal carries stdout and stderr)
    #[arg(short, long)]
    tty: bool,
    /// Attach stdin
    #[arg(short, long)]
    interactive: bool,
    /// The container's id [default: a random one]
    #[arg(long, value_name = "ID")]
    name: Option<String>,
    /// Set an environment variable (KEY=VALUE; a bare KEY removes the image's); repeatable
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Add a mount, ctr's syntax: type=bind,src=/host,dst=/in,options=rbind:ro; repeatable
    #[arg(long = "mount", value_name = "SPEC")]
    mounts: Vec<String>,
    /// The network: `host` shares the host's network namespace [default: a new, empty one]
    #[arg(long, value_name = "host")]
    net: Option<String>,
    /// Memory limit, in bytes or with a unit: 64m, 1g
    #[arg(long, value_name = "SIZE", value_parser = size)]
    memory: Option<u64>,
    /// CPU limit in CPUs: 0.5, 2
    #[arg(long, value_name = "N")]
    cpus: Option<String>,
    /// Working directory
    #[arg(short = 'w', long, value_name = "DIR")]
    cwd: Option<String>,
    /// Run as USER[:GROUP] (names resolved through the image's /etc/passwd and /etc/group)
    #[arg(short, long, value_name = "USER")]
    user: Option<String>,
    /// Mount the root filesystem read-only
    #[arg(long)]
    read_only: bool,
    /// Every capability, all devices, no masked paths
    #[arg(long)]
    privileged: bool,
    /// Add a capability (NET_ADMIN, CAP_SYS_TIME, ALL); repeatable
    #[arg(long, value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability; repeatable
    #[arg(long, value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Hostname inside the container
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Replace the image's entrypoint (a single program; CMD… follows it)
    #[arg(long, value_name = "PROGRAM")]
    entrypoint: Option<String>,
    /// A label on the container (KEY=VALUE); repeatable
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// The OCI runtime binary (runc by default; crun, youki)
    #[arg(long, value_name = "BINARY")]
    runtime_binary: Option<String>,
    /// The snapshotter of the container's root
    #[arg(long, default_value = DEFAULT_SNAPSHOTTER, value_name = "NAME")]
    snapshotter: String,
    /// Reach the image's registry over plain HTTP if it has to be pulled (HOST[:PORT])
    #[arg(long = "plain-http", value_name = "HOST")]
    plain_http: Vec<String>,
    /// The image: a name `berth image ls` shows, or a reference to pull
    image: String,
    /// The command and its arguments [default: the image's]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// What `berth task exec` takes.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The exec process's id [default: a random one]
    #[arg(long, value_name = "ID")]
    exec_id: Option<String>,
    /// Allocate a terminal
    #[arg(short, long)]
    tty: bool,
    /// Attach stdin
    #[arg(short, long)]
    interactive: bool,
    /// Working directory
    #[arg(short = 'w', long, value_name = "DIR")]
    cwd: Option<String>,
    /// Run as USER[:GROUP]
    #[arg(short, long, value_name = "USER")]
    user: Option<String>,
    /// Set an environment variable; repeatable
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Start it and return (print nothing, attach nothing)
    #[arg(short, long)]
    detach: bool,
    /// The container whose task the process joins
    container: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// Parses a size: bytes, or a number with k, m, g, t (powers of 1024; an optional `b`/`ib`).
pub fn size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512m, 1g, 1048576)"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("{s:?}: a size must be positive"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bytes = (n * mult as f64) as u64;
    Ok(bytes)
}

/// A container id when none is given: 12 hex digits, like Docker's short ids.
fn random_id() -> String {
    format!("{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff)
}

/// The process exited with `code`: the command ends with it, printing nothing.
fn exit_with(code: u32) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::silent(i32::try_from(code.min(255)).unwrap_or(255)))
    }
}

/// The capabilities this process holds (its bounding set), for `--privileged`.
fn host_capabilities() -> Option<Vec<String>> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))?
        .trim();
    let bits = u64::from_str_radix(hex, 16).ok()?;
    Some(
        spec::ALL_CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, c)| (*c).to_string())
            .collect(),
    )
}

/// The host's device nodes under `/dev`, for `--privileged` (containerd's `HostDevices`).
fn host_devices() -> Vec<spec::Device> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fn walk(dir: &std::path::Path, out: &mut Vec<spec::Device>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_dir() {
                let name = e.file_name();
                // as containerd: not the pseudo-terminals, shared memory, mqueue, or fds
                if !matches!(
                    name.to_str(),
                    Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
                ) {
                    walk(&p, out);
                }
                continue;
            }
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if p == std::path::Path::new("/dev/console") {
                continue;
            }
            let rdev = md.rdev();
            out.push(spec::Device {
                path: p.display().to_string(),
                kind: kind.into(),
                major: i64::from(rustix::fs::major(rdev)),
                minor: i64::from(rustix::fs::minor(rdev)),
                file_mode: Some(md.mode() & 0o777),
                uid: Some(md.uid()),
                gid: Some(md.gid()),
            });
        }
    }
    let mut out = Vec::new();
    walk(std::path::Path::new("/dev"), &mut out);
    out
}

/// `berth run`.
pub async fn run(client: &Client, opts: Opts, a: RunArgs) -> Result<()> {
    // Everything the user typed is checked before berthd is asked for anything.
    let id = a.name.clone().unwrap_or_else(random_id);
    let mut sopts = SpecOptions {
        env: a.env.clone(),
        cwd: a.cwd.clone(),
        user: a.user.clone(),
        tty: a.tty,
        readonly_rootfs: a.read_only,
        privileged: a.privileged,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        hostname: a.hostname.clone(),
        memory_limit: a.memory,
        ..SpecOptions::default()
    };
    if !a.command.is_empty() {
        sopts.args = Some(a.command.clone());
    }
    if let Some(e) = &a.entrypoint {
        sopts.entrypoint = Some(vec![e.clone()]);
        sopts.args.get_or_insert_with(Vec::new);
    }
    if let Some(c) = &a.cpus {
        sopts.cpu_limit =
            Some(CpuLimit::from_cpus(c).map_err(|e| Error::usage(format!("--cpus {c:?}: {e}")))?);
    }
    for m in &a.mounts {
        sopts.mounts.push(
            spec::Mount::parse_flag(m).map_err(|e| Error::usage(format!("--mount {m:?}: {e}")))?,
        );
    }
    match a.net.as_deref() {
        None | Some("none" | "private") => {}
        Some("host") => {
            sopts.network = Network::Host {
                hostname: rustix::system::uname()
                    .nodename()
                    .to_str()
                    .ok()
                    .map(str::to_string),
            };
        }
        Some(n) => {
            return Err(Error::usage(format!(
            "--net {n:?}: only `host` is supported (the default is a new, empty network namespace)"
        )))
        }
    }
    if a.privileged {
        sopts.host_capabilities = host_capabilities();
        sopts.host_devices = host_devices();
    }
    let labels = crate::parse::labels(&a.labels).map_err(Error::usage)?;

    // The lease that keeps the snapshot from a GC until the container record holds it is made
    // while the image is looked up (pulled if missing): neither waits for the other.
    let lease = format!("berth-run-{id}-{:08x}", fastrand::u32(..));
    let image = async {
        let (img, pulled) = match image::find_image(client, &a.image).await? {
            Some(i) => (i, false),
            None => {
                let pull = PullArgs::for_run(&a.image, &a.plain_http, &a.snapshotter);
                let (_, name) = image::pull_image(client, &pull).await?;
                (image::get_image(client, &name).await?, true)
            }
        };
        let mut docs = Documents::new(client);
        let (config, chain) = image::image_config(&mut docs, &img, &image::host_platform()).await?;
        Ok::<_, Error>((img, config, chain, pulled))
    };
    let (leased, resolved) = futures_lite::future::zip(create_lease(client, &lease), image).await;
    let (img, config, chain) = match (leased, resolved) {
        (Ok(()), Ok((img, config, chain, pulled))) => {
            if pulled {
                // a pull may outlast the lease's hour: start it afresh
                lease::delete_quietly(client, &lease).await;
                create_lease(client, &lease).await?;
            }
            (img, config, chain)
        }
        (Err(e), _) => return Err(e),
        (Ok(()), Err(e)) => {
            lease::delete_quietly(client, &lease).await;
            return Err(e);
        }
    };

    let plan = Plan {
        a: &a,
        image: img.name.clone(),
        config: config.config,
        chain: chain.to_string(),
        sopts,
        labels,
        id,
    };
    create_and_run(client, opts, &plan, &lease).await
}

/// A container about to be made: what the user asked for, resolved against the image.
struct Plan<'a> {
    a: &'a RunArgs,
    id: String,
    /// The image record's name.
    image: String,
    /// The image config's execution part.
    config: berth_core::image::ExecConfig,
    /// The chain ID of the image's layers: the container snapshot's parent.
    chain: String,
    sopts: SpecOptions,
    labels: std::collections::BTreeMap<String, String>,
}

/// Makes the short lease under which the container's snapshot is prepared: it expires on its
/// own in an hour should berth be killed before deleting it.
async fn create_lease(client: &Client, lease: &str) -> Result<()> {
    let expire = output::now().add_nanos(3_600_000_000_000);
    let labels: HashMap<String, String> =
        [(LABEL_GC_EXPIRE.to_string(), format_rfc3339(expire))].into();
    client
        .leases()
        .create(client.request(CreateLease {
            id: lease.to_string(),
            labels,
        })?)
        .await
        .map_err(|s| client.err(&format!("lease {lease:?}"), &s))?;
    Ok(())
}

/// Prepares the snapshot (under `lease`, dropped once the container record holds the
/// snapshot, so a GC in between cannot take it), creates the container and runs its task.
async fn create_and_run(client: &Client, opts: Opts, p: &Plan<'_>, lease: &str) -> Result<()> {
    let (a, id) = (p.a, p.id.as_str());
    let mounts = match client
        .snapshots()
        .prepare(client.request_in_lease(
            PrepareSnapshotRequest {
                snapshotter: a.snapshotter.clone(),
                key: id.to_string(),
                parent: p.chain.clone(),
                labels: HashMap::new(),
            },
            lease,
        )?)
        .await
    {
        Ok(r) => r.into_inner().mounts,
        Err(s) => {
            lease::delete_quietly(client, lease).await;
            let e = if s.code() == Code::AlreadyExists {
                Error::failed(format!(
                    "container {id:?} already exists in namespace {:?} (its snapshot does) — \
                     pick another --name or remove it with `berth container rm {id}`",
                    client.namespace()
                ))
            } else {
                client.err(&format!("snapshot {id:?} of image {:?}", p.image), &s)
            };
            return Err(e);
        }
    };
    let created = create_container(client, p, &mounts).await;
    if let Err(e) = created {
        lease::delete_quietly(client, lease).await;
        snapshot::remove_quietly(client, &a.snapshotter, id).await;
        return Err(e);
    }
    // The container record now holds the snapshot: the lease goes while the task is made.
    let (_, outcome) = futures_lite::future::zip(
        lease::delete_quietly(client, lease),
        start_task(client, opts, a, id, &mounts),
    )
    .await;
    if a.detach && outcome.is_ok() {
        return outcome.map(|_| ());
    }
    if a.rm {
        // Neither waits for the other: berthd removes a snapshot whatever record names it.
        let container = async {
            if let Ok(req) = client.request(DeleteContainerRequest { id: id.to_string() }) {
                let _ = client.containers().delete(req).await;
            }
        };
        futures_lite::future::zip(
            container,
            snapshot::remove_quietly(client, &a.snapshotter, id),
        )
        .await;
    }
    outcome.and_then(exit_with)
}

/// Builds the spec (reading the image's account files from the snapshot) and creates the
/// container record.
async fn create_container(client: &Client, p: &Plan<'_>, mounts: &[Mount]) -> Result<()> {
    let (a, id) = (p.a, p.id.as_str());
    let (passwd, group) = account_files(mounts.to_vec()).await?;
    let files = ImageFiles {
        passwd: passwd.as_deref(),
        group: group.as_deref(),
    };
    let spec = spec::generate(client.namespace(), id, &p.config, &files, &p.sopts)
        .map_err(|e| Error::failed(format!("container {id:?}: {e}")))?;
    let options = a.runtime_binary.as_ref().map(|b| prost_types::Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: RuncOptions {
            binary_name: b.clone(),
            ..RuncOptions::default()
        }
        .encode_to_vec(),
    });
    let container = Container {
        id: id.to_string(),
        labels: p.labels.clone().into_iter().collect(),
        image: p.image.clone(),
        runtime: Some(Runtime {
            name: RUNTIME.into(),
            options,
        }),
        spec: Some(prost_types::Any {
            type_url: SPEC_TYPE_URL.into(),
            value: spec.to_json(),
        }),
        snapshotter: a.snapshotter.clone(),
        snapshot_key: id.to_string(),
        ..Container::default()
    };
    client
        .containers()
        .create(client.request(CreateContainerRequest {
            container: Some(container),
        })?)
        .await
        .map_err(|s| client.err(&format!("container {id:?}"), &s))?;
    Ok(())
}

/// Creates and starts the task; unless detached, waits for it and deletes it. The exit code.
async fn start_task(
    client: &Client,
    opts: Opts,
    a: &RunArgs,
    id: &str,
    mounts: &[Mount],
) -> Result<u32> {
    let fifos = if a.detach {
        None
    } else {
        Some(Fifos::create(id, a.interactive || a.tty, a.tty)?)
    };
    let (stdin, stdout, stderr) = fifos.as_ref().map(Fifos::paths).unwrap_or_default();
    let mut attached = fifos.as_ref().map(Fifos::attach).transpose()?;
    let raw = (a.tty && !a.detach).then(RawTerminal::enter);
    let created = client
        .tasks()
        .create(client.request(CreateTaskRequest {
            container_id: id.to_string(),
            rootfs: mounts.to_vec(),
            stdin,
            stdout,
            stderr,
            terminal: a.tty,
            ..CreateTaskRequest::default()
        })?)
        .await;
    if let Err(s) = created {
        drop(raw);
        return Err(client.err(&format!("task {id:?}"), &s));
    }
    if let Some(att) = &mut attached {
        att.start_stdin();
    }
    let code = attach_and_wait(client, id, "", a.tty, attached, a.detach).await;
    drop(raw);
    if a.detach {
        if code.is_ok() {
            if opts.json {
                output::json(&serde_json::json!({ "id": id })).map_err(super::stdout_err)?;
            } else {
                output::text(&format!("{id}\n")).map_err(super::stdout_err)?;
            }
        }
        return code;
    }
    delete_task(client, id).await;
    code
}

/// Starts process `exec_id` ("" = the task's own) and, unless `detach`, forwards signals and
/// window sizes, closes its stdin at our end of input, and waits: the exit status.
async fn attach_and_wait(
    client: &Client,
    id: &str,
    exec_id: &str,
    tty: bool,
    attached: Option<Attached>,
    detach: bool,
) -> Result<u32> {
    let what = if exec_id.is_empty() {
        format!("task {id:?}")
    } else {
        format!("process {exec_id:?} of task {id:?}")
    };
    let start = async {
        client
            .tasks()
            .start(client.request(StartRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            })?)
            .await
            .map(|_| ())
            .map_err(|s| client.err(&what, &s))
    };
    if detach {
        return start.await.map(|()| 0);
    }
    // The Wait goes out with the Start (as ctr sends it first): berthd answers a Wait in every
    // state, so the exit needs no round trip of its own once the process is started.
    let mut wait = Box::pin(async {
        client
            .tasks()
            .wait(client.request(WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            })?)
            .await
            .map(|r| r.into_inner().exit_status)
            .map_err(|s| client.err(&what, &s))
    });
    let mut start = Box::pin(start);
    let early = futures_lite::future::or(async { (&mut start).await.map(|()| None) }, async {
        (&mut wait).await.map(Some)
    })
    .await?;
    if let Some(status) = early {
        // exited before the Start's reply came: that reply still says whether it started
        start.await?;
        if let Some(att) = attached {
            blocking::unblock(move || att.drain(DRAIN)).await;
        }
        return Ok(status);
    }
    if tty {
        resize(client, id, exec_id).await;
    }
    let stdin_done = attached.as_ref().map(|a| a.stdin_done.clone());
    let side = async {
        let mut signals = async_signal::Signals::new([
            async_signal::Signal::Int,
            async_signal::Signal::Term,
            async_signal::Signal::Hup,
            async_signal::Signal::Quit,
            async_signal::Signal::Winch,
        ])
        .ok();
        let mut stdin_open = stdin_done.is_some();
        loop {
            let next = async {
                match signals.as_mut() {
                    Some(s) => s.next().await.and_then(std::result::Result::ok).map(Some),
                    None => futures_lite::future::pending().await,
                }
            };
            let eof = async {
                match (&stdin_done, stdin_open) {
                    (Some(rx), true) => {
                        let _ = rx.recv().await;
                        None
                    }
                    _ => futures_lite::future::pending().await,
                }
            };
            match futures_lite::future::or(next, eof).await {
                Some(Some(async_signal::Signal::Winch)) => {
                    if tty {
                        resize(client, id, exec_id).await;
                    }
                }
                Some(Some(sig)) => {
                    let signal = match sig {
                        async_signal::Signal::Hup => 1,
                        async_signal::Signal::Int => 2,
                        async_signal::Signal::Quit => 3,
                        _ => 15,
                    };
                    if let Ok(req) = client.request(KillRequest {
                        container_id: id.to_string(),
                        exec_id: exec_id.to_string(),
                        signal,
                        all: false,
                    }) {
                        let _ = client.tasks().kill(req).await;
                    }
                }
                Some(None) => signals = None,
                None => {
                    stdin_open = false;
                    if let Ok(req) = client.request(CloseIoRequest {
                        container_id: id.to_string(),
                        exec_id: exec_id.to_string(),
                        stdin: true,
                    }) {
                        let _ = client.tasks().close_io(req).await;
                    }
                }
            }
        }
    };
    let status = futures_lite::future::or(wait, side).await?;
    if let Some(att) = attached {
        blocking::unblock(move || att.drain(DRAIN)).await;
    }
    Ok(status)
}

async fn resize(client: &Client, id: &str, exec_id: &str) {
    if let Some((width, height)) = crate::stdio::window_size() {
        if let Ok(req) = client.request(ResizePtyRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            width,
            height,
        }) {
            let _ = client.tasks().resize_pty(req).await;
        }
    }
}

async fn delete_task(client: &Client, id: &str) {
    if let Ok(req) = client.request(DeleteTaskRequest {
        container_id: id.to_string(),
    }) {
        let _ = client.tasks().delete(req).await;
    }
}

/// The root's `/etc/passwd` and `/etc/group`, read off the caller's thread.
async fn account_files(mounts: Vec<Mount>) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>)> {
    blocking::unblock(move || {
        Ok((
            rootfs::read_file(&mounts, "etc/passwd")?,
            rootfs::read_file(&mounts, "etc/group")?,
        ))
    })
    .await
}

/// `berth task exec`.
pub async fn exec(client: &Client, _opts: Opts, a: ExecArgs) -> Result<()> {
    let id = a.container.as_str();
    let exec_id = a
        .exec_id
        .clone()
        .unwrap_or_else(|| format!("exec-{}", random_id()));
    let c = client
        .containers()
        .get(client.request(GetContainerRequest { id: id.to_string() })?)
        .await
        .map_err(|s| client.err(&format!("container {id:?}"), &s))?
        .into_inner()
        .container
        .unwrap_or_default();
    let spec_any = c
        .spec
        .ok_or_else(|| Error::failed(format!("container {id:?} has no spec")))?;
    let base = spec::Spec::from_json(&spec_any.value)
        .map_err(|e| Error::failed(format!("container {id:?}: its spec: {e}")))?
        .process
        .ok_or_else(|| Error::failed(format!("container {id:?}: its spec has no process")))?;
    let eopts = ExecOptions {
        args: a.command.clone(),
        tty: a.tty,
        cwd: a.cwd.clone(),
        user: a.user.clone(),
        env: a.env.clone(),
    };
    // --user resolves through the container's root (names, and a uid's group and groups),
    // as the container's own user did.
    let (passwd, group) = if a.user.is_some() {
        account_files(snapshot::mounts(client, &c.snapshotter, &c.snapshot_key).await?).await?
    } else {
        (None, None)
    };
    let files = ImageFiles {
        passwd: passwd.as_deref(),
        group: group.as_deref(),
    };
    let process = spec::exec_process(&base, &eopts, &files)
        .map_err(|e| Error::failed(format!("exec in {id:?}: {e}")))?;
    let fifos = if a.detach {
        None
    } else {
        Some(Fifos::create(&exec_id, a.interactive || a.tty, a.tty)?)
    };
    let (stdin, stdout, stderr) = fifos.as_ref().map(Fifos::paths).unwrap_or_default();
    let mut attached = fifos.as_ref().map(Fifos::attach).transpose()?;
    let what = format!("process {exec_id:?} of task {id:?}");
    client
        .tasks()
        .exec(client.request(ExecProcessRequest {
            container_id: id.to_string(),
            exec_id: exec_id.clone(),
            stdin,
            stdout,
            stderr,
            terminal: a.tty,
            spec: Some(prost_types::Any {
                type_url: PROCESS_TYPE_URL.into(),
                value: process.to_json(),
            }),
        })?)
        .await
        .map_err(|s| client.err(&what, &s))?;
    if let Some(att) = &mut attached {
        att.start_stdin();
    }
    let raw = (a.tty && !a.detach).then(RawTerminal::enter);
    let code = attach_and_wait(client, id, &exec_id, a.tty, attached, a.detach).await;
    drop(raw);
    if !a.detach {
        if let Ok(req) = client.request(DeleteProcessRequest {
            container_id: id.to_string(),
            exec_id: exec_id.clone(),
        }) {
            let _ = client.tasks().delete_process(req).await;
        }
    }
    exit_with(code?)
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_take_units() {
        assert_eq!(size("64m"), Ok(64 << 20));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert_eq!(size("512kib"), Ok(512 << 10));
        assert_eq!(size("1048576"), Ok(1 << 20));
        assert_eq!(size("0.5g"), Ok(512 << 20));
        assert!(size("lots").is_err());
        assert!(size("-1m").is_err());
        assert!(size("0").is_err());
    }
}
