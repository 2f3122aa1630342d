//! The OCI runtime spec of a container, from its image config, as containerd 1.6 builds it.
//!
//! [`generate`] is `oci.GenerateSpec` + `oci.WithImageConfig` + the options of `ctr run`, as a
//! pure function: the driver reads the image's `/etc/passwd` and `/etc/group` from the rootfs
//! and hands them in ([`ImageFiles`]); the result is a [`Spec`] whose [`Spec::to_json`] is the
//! `config.json` runc reads. [`exec_process`] is the [`Process`] of `ctr tasks exec`.
//!
//! What an unprivileged container gets (checked field by field against containerd 1.6.20's
//! output for `ctr run 127.0.0.1:5000/busybox:latest t1 true` in `testdata/`):
//!
//! * `ociVersion` `1.0.2-dev`; root `rootfs` (read-write unless asked);
//! * args = Entrypoint + Cmd (an empty result is [`SpecError::NoCommand`]); env = the image's,
//!   or only the default `PATH` if the image has none, then the user's by key; cwd =
//!   `WorkingDir` or `/`; the user from `User` (see [`resolve_user`]);
//! * the 14 capabilities of [`DEFAULT_CAPABILITIES`] in the bounding, effective and permitted
//!   sets (none inheritable); `RLIMIT_NOFILE` 1024/1024; `noNewPrivileges`;
//! * the mounts of [`default_mounts`], then the user's; [`MASKED_PATHS`] and [`READONLY_PATHS`];
//! * new pid, ipc, uts, mount and network namespaces; cgroup `/<namespace>/<id>`;
//! * device rules: deny all, allow the standard character devices; CPU shares 1024 (as
//!   `ctr run` sets; `ctr containers create` sets none).
//!
//! Options ([`SpecOptions`]) follow `ctr run`'s flags and their order of application; where
//! berth differs on purpose, the option's documentation says so. Not set by containerd 1.6 and
//! so not by default: a hostname (the UTS namespace starts with the host's; set
//! [`SpecOptions::hostname`], e.g. to the container id, as nerdctl does).
//!
//! ```
//! use berth_core::image::ExecConfig;
//! use berth_core::spec::{generate, ImageFiles, SpecOptions};
//!
//! let image = ExecConfig { cmd: vec!["/bin/sh".into()], ..ExecConfig::default() };
//! let spec = generate("default", "t1", &image, &ImageFiles::default(), &SpecOptions::default())
//!     .unwrap();
//! let process = spec.process.as_ref().unwrap();
//! assert_eq!(process.args, ["/bin/sh"]);
//! assert_eq!(process.env, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
//! assert_eq!(spec.linux.as_ref().unwrap().cgroups_path, "/default/t1");
//! let config_json: Vec<u8> = spec.to_json();
//! # assert!(config_json.starts_with(br#"{"ociVersion":"1.0.2-dev","process":{"user":{"uid":0"#));
//! ```

mod caps;
mod mounts;
mod types;
mod user;

#[cfg(test)]
mod golden_tests;

use std::collections::BTreeMap;

pub use caps::{ALL_CAPABILITIES, DEFAULT_CAPABILITIES};
pub use mounts::{
    all_devices_rule, default_device_rules, default_mounts, MountFlagError, MASKED_PATHS,
    READONLY_PATHS,
};
pub use types::{
    namespace, Capabilities, Cpu, Device, DeviceRule, Extra, Linux, Memory, Mount, Namespace,
    Process, Resources, Rlimit, Root, Spec, User,
};
pub use user::{resolve_user, ImageFiles};

use crate::image::ExecConfig;
use crate::metadata::{validate_name, NameError};
use caps::{parse_capability, CapabilityArg};

/// The runtime-spec version containerd 1.6 writes.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// The environment of an image that sets none (containerd's `defaultUnixEnv`).
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The root filesystem's path in the bundle.
pub const ROOTFS: &str = "rootfs";

/// CPU shares `ctr run` sets unless told otherwise.
pub const DEFAULT_CPU_SHARES: u64 = 1024;

/// The CFS period `--cpus` uses, in microseconds.
pub const CPU_PERIOD: u64 = 100_000;

/// Why a spec could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// Neither the image (Entrypoint, Cmd) nor the options give a command.
    #[error("no command specified: the image has no Entrypoint or Cmd; give the command to run")]
    NoCommand,
    /// The namespace or container id is not a valid identifier (it names the cgroup).
    #[error("{what} is not a valid identifier: {source}")]
    Name {
        /// `namespace` or `container id`.
        what: &'static str,
        /// Why.
        source: NameError,
    },
    /// `USER` has more than one `:`.
    #[error("user {user:?} is invalid: expected name, uid, name:group or uid:gid")]
    InvalidUser {
        /// The user string (first 200 characters).
        user: String,
    },
    /// A user name is not in the image's `/etc/passwd`.
    #[error("no user {user:?} in the image's /etc/passwd; use a numeric uid or add the user")]
    UnknownUser {
        /// The name (first 200 characters).
        user: String,
    },
    /// A user name was given but the image has no `/etc/passwd`.
    #[error("user {user:?} cannot be resolved: the image has no /etc/passwd; use a numeric uid")]
    NoPasswdFile {
        /// The name (first 200 characters).
        user: String,
    },
    /// A group name is not in the image's `/etc/group`.
    #[error("no group {group:?} in the image's /etc/group; use a numeric gid or add the group")]
    UnknownGroup {
        /// The name (first 200 characters).
        group: String,
    },
    /// A group name was given but the image has no `/etc/group`.
    #[error("group {group:?} cannot be resolved: the image has no /etc/group; use a numeric gid")]
    NoGroupFile {
        /// The name (first 200 characters).
        group: String,
    },
    /// A capability name Linux does not define.
    #[error("unknown capability {name:?}; expected a name like CAP_NET_ADMIN, or ALL")]
    UnknownCapability {
        /// The name as given (first 200 characters).
        name: String,
    },
    /// A `--mount` value does not parse.
    #[error("mount {flag:?} is invalid: {reason}")]
    MountFlag {
        /// The flag (first 200 characters).
        flag: String,
        /// Why.
        reason: MountFlagError,
    },
    /// A mount's destination is not an absolute path.
    #[error("mount destination {destination:?} is not an absolute path")]
    MountDestination {
        /// The destination (first 200 characters).
        destination: String,
    },
    /// The working directory is not an absolute path (runc refuses it).
    #[error("working directory {cwd:?} is not an absolute path")]
    RelativeCwd {
        /// The directory (first 200 characters).
        cwd: String,
    },
    /// A `--cpus` value is not a positive decimal number.
    #[error(
        "cpus {value:?} is invalid: expected a positive number such as 1.5 (at most 5 decimals)"
    )]
    InvalidCpus {
        /// The value (first 200 characters).
        value: String,
    },
    /// A memory limit beyond `i64::MAX` bytes.
    #[error(
        "memory limit {bytes} is beyond the largest the spec can hold ({})",
        i64::MAX
    )]
    MemoryLimit {
        /// The limit asked for.
        bytes: u64,
    },
    /// A spec or process document is not valid JSON of the right shape.
    #[error("{document} is malformed: {message} (line {line}, column {column})")]
    Json {
        /// `spec` or `process`.
        document: &'static str,
        /// serde_json's description (first 200 characters).
        message: String,
        /// 1-based line (0 if unknown).
        line: usize,
        /// 1-based column (0 if unknown).
        column: usize,
    },
}

fn shown(s: &str) -> String {
    s.chars().take(200).collect()
}

fn json_error(document: &'static str, e: &serde_json::Error) -> SpecError {
    SpecError::Json {
        document,
        message: shown(&e.to_string()),
        line: e.line(),
        column: e.column(),
    }
}

impl Spec {
    /// The spec as compact JSON: the `config.json` of the bundle (the same bytes as containerd's
    /// `json.Marshal` of the same spec).
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a spec always serialises: string keys, finite numbers")
    }

    /// Parses a spec (e.g. one a client stored with its container). Fields berth does not model
    /// are kept in the `extra` maps.
    pub fn from_json(bytes: &[u8]) -> Result<Spec, SpecError> {
        serde_json::from_slice(bytes).map_err(|e| json_error("spec", &e))
    }
}

impl Process {
    /// The process as compact JSON (`runc exec --process`).
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a process always serialises: string keys, finite numbers")
    }

    /// Parses a process document.
    pub fn from_json(bytes: &[u8]) -> Result<Process, SpecError> {
        serde_json::from_slice(bytes).map_err(|e| json_error("process", &e))
    }
}

/// A CFS quota: `quota` microseconds of CPU time per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuLimit {
    /// Microseconds per period.
    pub quota: i64,
    /// The period in microseconds.
    pub period: u64,
}

impl CpuLimit {
    /// The quota of `--cpus`: `1.5` → 150000 µs per 100000 µs. Parsed as an exact decimal
    /// (ctr multiplies a float and truncates, so `0.29` gives it 28999; berth 29000).
    ///
    /// ```
    /// use berth_core::spec::CpuLimit;
    /// assert_eq!(CpuLimit::from_cpus("1.5").unwrap(), CpuLimit { quota: 150_000, period: 100_000 });
    /// assert_eq!(CpuLimit::from_cpus("0.29").unwrap().quota, 29_000);
    /// assert!(CpuLimit::from_cpus("0").is_err());
    /// ```
    pub fn from_cpus(cpus: &str) -> Result<CpuLimit, SpecError> {
        let err = || SpecError::InvalidCpus { value: shown(cpus) };
        let (whole, frac) = cpus.split_once('.').unwrap_or((cpus, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
            return Err(err());
        }
        // 1 cpu = 100000 µs = 10^5: five decimals are whole microseconds.
        if frac.len() > 5 {
            return Err(err());
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err())?
        };
        let frac_us: i64 = format!("{frac:0<5}").parse().map_err(|_| err())?;
        let quota = whole
            .checked_mul(CPU_PERIOD as i64)
            .and_then(|q| q.checked_add(frac_us))
            .filter(|&q| q > 0)
            .ok_or_else(err)?;
        Ok(CpuLimit {
            quota,
            period: CPU_PERIOD,
        })
    }
}

/// Which network namespace the container uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Network {
    /// A new, empty network namespace (the default).
    #[default]
    Private,
    /// The host's (`ctr run --net-host`): no network namespace, the host's `/etc/hosts` and
    /// `/etc/resolv.conf` bound read-only, and `HOSTNAME` set to the host's name, which the
    /// caller reads (the core has no access to it; `None` leaves `HOSTNAME` unset).
    Host {
        /// The host's hostname.
        hostname: Option<String>,
    },
    /// Join the network namespace at this path (e.g. one berth's network plan created).
    Join {
        /// The namespace file, e.g. `/var/run/netns/cni-1234`.
        path: String,
    },
}

/// What the user asks of a container, on top of the image config: `ctr run`'s flags.
///
/// The default is what `ctr run IMAGE ID` does with no flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecOptions {
    /// Replaces the image's Cmd (Docker's and containerd's `WithImageConfigArgs`);
    /// `Some(vec![])` runs the Entrypoint alone. ctr's `run IMAGE ID ARGS…` replaces
    /// Entrypoint too: set `entrypoint: Some(vec![])` as well.
    pub args: Option<Vec<String>>,
    /// Replaces the image's Entrypoint (`Some(vec![])` clears it) and, as in Docker and
    /// Kubernetes, drops the image's Cmd: the command is this plus `args`.
    pub entrypoint: Option<Vec<String>>,
    /// Extra environment, `KEY=value`, replacing the image's value of the same key in place or
    /// appended; a bare `KEY` removes it (containerd's `replaceOrAppendEnvValues`).
    pub env: Vec<String>,
    /// Replaces the working directory (`--cwd`).
    pub cwd: Option<String>,
    /// Replaces the image's `User` (resolved the same way).
    pub user: Option<String>,
    /// Allocate a terminal (`--tty`); adds `TERM=xterm` unless `TERM` is set (containerd
    /// appends it even then, leaving two).
    pub tty: bool,
    /// Mount the root filesystem read-only (`--read-only`).
    pub readonly_rootfs: bool,
    /// Privileged (`--privileged`): every capability the caller holds, no masked or read-only
    /// paths, a writable `/sys`, all devices allowed and the host's devices created.
    pub privileged: bool,
    /// The capabilities a privileged container gets: those of the caller (containerd reads its
    /// own with `cap.Current()`; the driver reads `/proc/self/status`). `None`: every
    /// capability in [`ALL_CAPABILITIES`].
    pub host_capabilities: Option<Vec<String>>,
    /// The host's device nodes, created in a privileged container (`WithHostDevices`); the
    /// driver lists them. Ignored unless `privileged`.
    pub host_devices: Vec<Device>,
    /// Device nodes to add (`--device`), each with an `rwm` allow rule.
    pub devices: Vec<Device>,
    /// Capabilities to add (`--cap-add`): `CAP_NET_ADMIN`, `net_admin` or `ALL`.
    pub cap_add: Vec<String>,
    /// Capabilities to drop (`--cap-drop`), after the additions; `ALL` drops every one.
    pub cap_drop: Vec<String>,
    /// Mounts after the default ones (`--mount`, see [`Mount::parse_flag`]).
    pub mounts: Vec<Mount>,
    /// The network namespace.
    pub network: Network,
    /// The hostname (not set by containerd 1.6; nerdctl sets the container id).
    pub hostname: Option<String>,
    /// Memory limit in bytes (`--memory-limit`).
    pub memory_limit: Option<u64>,
    /// CFS quota (`--cpus` through [`CpuLimit::from_cpus`], or `--cpu-quota`/`--cpu-period`).
    pub cpu_limit: Option<CpuLimit>,
    /// CPU shares (`--cpu-shares`, default [`DEFAULT_CPU_SHARES`]; `None` sets none, as
    /// `ctr containers create`).
    pub cpu_shares: Option<u64>,
    /// Set `noNewPrivileges` (default true; `--allow-new-privs` clears it).
    pub no_new_privileges: bool,
    /// Replaces the cgroup path (`--cgroup`; empty: no cgroup path). Default
    /// `/<namespace>/<id>`.
    pub cgroups_path: Option<String>,
    /// Annotations (ctr's `--label`s become annotations).
    pub annotations: BTreeMap<String, String>,
}

impl Default for SpecOptions {
    fn default() -> Self {
        SpecOptions {
            args: None,
            entrypoint: None,
            env: Vec::new(),
            cwd: None,
            user: None,
            tty: false,
            readonly_rootfs: false,
            privileged: false,
            host_capabilities: None,
            host_devices: Vec::new(),
            devices: Vec::new(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            mounts: Vec::new(),
            network: Network::Private,
            hostname: None,
            memory_limit: None,
            cpu_limit: None,
            cpu_shares: Some(DEFAULT_CPU_SHARES),
            no_new_privileges: true,
            cgroups_path: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// `overrides` applied to `base` by key: a `KEY=value` replaces `base`'s `KEY` in place or is
/// appended; a bare `KEY` removes it (containerd's `replaceOrAppendEnvValues`).
#[must_use]
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
    let mut out: Vec<Option<String>> = base.iter().cloned().map(Some).collect();
    // containerd's cache: the last index of each key in `base`.
    let mut index: BTreeMap<String, usize> =
        base.iter().enumerate().map(|(i, e)| (key(e), i)).collect();
    for e in overrides {
        match (e.contains('='), index.get(&key(e))) {
            (false, Some(&i)) => out[i] = None,
            (false, None) => {}
            (true, Some(&i)) => out[i] = Some(e.clone()),
            (true, None) => {
                // A later override of the same key replaces this one (containerd appends both;
                // its cache only knows `base`). Keep one entry per key.
                index.insert(key(e), out.len());
                out.push(Some(e.clone()));
            }
        }
    }
    out.into_iter()
        .flatten()
        .filter(|e| !e.is_empty())
        .collect()
}

fn has_key(env: &[String], key: &str) -> bool {
    env.iter()
        .any(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
}

fn check_cwd(cwd: &str) -> Result<(), SpecError> {
    if cwd.starts_with('/') {
        Ok(())
    } else {
        Err(SpecError::RelativeCwd { cwd: shown(cwd) })
    }
}

/// The capability list after `add` then `drop` (containerd's `WithAddedCapabilities`,
/// `WithDroppedCapabilities`).
fn adjust_capabilities(
    set: &mut Vec<String>,
    add: &[String],
    drop: &[String],
) -> Result<(), SpecError> {
    for a in add {
        let names: Vec<&str> = match parse_capability(a)? {
            CapabilityArg::All => ALL_CAPABILITIES.to_vec(),
            CapabilityArg::One(c) => vec![c],
        };
        for c in names {
            if !set.iter().any(|s| s == c) {
                set.push(c.to_owned());
            }
        }
    }
    for d in drop {
        match parse_capability(d)? {
            CapabilityArg::All => set.clear(),
            CapabilityArg::One(c) => set.retain(|s| s != c),
        }
    }
    Ok(())
}

/// Builds the spec of container `id` in `namespace` from its image's config, the image's
/// account files and the user's options, as containerd 1.6's `ctr run` does.
///
/// Errors: [`SpecError::NoCommand`] when there is nothing to run; the user errors of
/// [`resolve_user`]; [`SpecError::UnknownCapability`]; [`SpecError::MountDestination`] and
/// [`SpecError::RelativeCwd`] for relative paths runc would refuse; [`SpecError::Name`] for a
/// namespace or id that is not an identifier (they name the cgroup).
pub fn generate(
    namespace: &str,
    id: &str,
    image: &ExecConfig,
    files: &ImageFiles<'_>,
    opts: &SpecOptions,
) -> Result<Spec, SpecError> {
    validate_name(namespace).map_err(|source| SpecError::Name {
        what: "namespace",
        source,
    })?;
    validate_name(id).map_err(|source| SpecError::Name {
        what: "container id",
        source,
    })?;

    // Process: WithImageConfig (env, args, cwd, user), then --cwd, --tty.
    let image_env = if image.env.is_empty() {
        vec![DEFAULT_PATH_ENV.to_owned()]
    } else {
        image.env.clone()
    };
    let mut env = merge_env(&image_env, &opts.env);
    // A new Entrypoint drops the image's Cmd, as in Docker and Kubernetes.
    let (entrypoint, cmd) = match (&opts.entrypoint, &opts.args) {
        (Some(ep), args) => (ep, args.as_deref().unwrap_or_default()),
        (None, args) => (&image.entrypoint, args.as_deref().unwrap_or(&image.cmd)),
    };
    let mut args = entrypoint.clone();
    args.extend_from_slice(cmd);
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let cwd = match (&opts.cwd, image.working_dir.as_str()) {
        (Some(cwd), _) => cwd.clone(),
        (None, "") => "/".to_owned(),
        (None, dir) => dir.to_owned(),
    };
    check_cwd(&cwd)?;
    let user = resolve_user(opts.user.as_deref().unwrap_or(&image.user), files)?;
    if opts.tty && !has_key(&env, "TERM") {
        env.push("TERM=xterm".into());
    }

    // Mounts: the defaults, the user's, then --net-host's.
    let mut mounts = default_mounts();
    for m in &opts.mounts {
        if !m.destination.starts_with('/') {
            return Err(SpecError::MountDestination {
                destination: shown(&m.destination),
            });
        }
        mounts.push(m.clone());
    }

    let mut caps: Vec<String> = DEFAULT_CAPABILITIES.map(str::to_owned).to_vec();
    let mut masked_paths = MASKED_PATHS.map(str::to_owned).to_vec();
    let mut readonly_paths = READONLY_PATHS.map(str::to_owned).to_vec();
    let mut device_rules = default_device_rules();
    let mut devices = Vec::new();
    if opts.privileged {
        caps = match &opts.host_capabilities {
            Some(c) => c.clone(),
            None => ALL_CAPABILITIES.map(str::to_owned).to_vec(),
        };
        masked_paths.clear();
        readonly_paths.clear();
        for m in mounts.iter_mut().filter(|m| m.kind == "sysfs") {
            for o in m.options.iter_mut().filter(|o| *o == "ro") {
                "rw".clone_into(o);
            }
        }
        device_rules = vec![all_devices_rule()];
        devices.extend(opts.host_devices.iter().cloned());
    }

    let mut namespaces: Vec<Namespace> = [
        namespace::PID,
        namespace::IPC,
        namespace::UTS,
        namespace::MOUNT,
        namespace::NETWORK,
    ]
    .into_iter()
    .map(Namespace::new)
    .collect();
    match &opts.network {
        Network::Private => {}
        Network::Host { hostname } => {
            namespaces.retain(|n| n.kind != namespace::NETWORK);
            mounts.push(mounts::host_file_bind("/etc/hosts"));
            mounts.push(mounts::host_file_bind("/etc/resolv.conf"));
            if let Some(h) = hostname {
                env = merge_env(&env, &[format!("HOSTNAME={h}")]);
            }
        }
        Network::Join { path } => {
            for n in namespaces
                .iter_mut()
                .filter(|n| n.kind == namespace::NETWORK)
            {
                n.path.clone_from(path);
            }
        }
    }

    adjust_capabilities(&mut caps, &opts.cap_add, &opts.cap_drop)?;

    let memory = opts
        .memory_limit
        .map(|bytes| {
            i64::try_from(bytes)
                .map(|limit| Memory {
                    limit: Some(limit),
                    ..Memory::default()
                })
                .map_err(|_| SpecError::MemoryLimit { bytes })
        })
        .transpose()?;
    for d in &opts.devices {
        devices.push(d.clone());
        device_rules.push(DeviceRule {
            allow: true,
            kind: d.kind.clone(),
            major: Some(d.major),
            minor: Some(d.minor),
            access: "rwm".into(),
        });
    }
    let cpu = (opts.cpu_shares.is_some() || opts.cpu_limit.is_some()).then(|| Cpu {
        shares: opts.cpu_shares,
        quota: opts.cpu_limit.map(|c| c.quota),
        period: opts.cpu_limit.map(|c| c.period),
        ..Cpu::default()
    });

    Ok(Spec {
        oci_version: OCI_VERSION.into(),
        process: Some(Process {
            terminal: opts.tty,
            user,
            args,
            env,
            cwd,
            capabilities: Some(Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                inheritable: Vec::new(),
                permitted: caps,
                ambient: Vec::new(),
            }),
            rlimits: vec![Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                hard: 1024,
                soft: 1024,
            }],
            no_new_privileges: opts.no_new_privileges,
            extra: Extra::new(),
        }),
        root: Some(Root {
            path: ROOTFS.into(),
            readonly: opts.readonly_rootfs,
        }),
        hostname: opts.hostname.clone().unwrap_or_default(),
        mounts,
        annotations: opts.annotations.clone(),
        linux: Some(Linux {
            resources: Some(Resources {
                devices: device_rules,
                memory,
                cpu,
                extra: Extra::new(),
            }),
            cgroups_path: opts
                .cgroups_path
                .clone()
                .unwrap_or_else(|| format!("/{namespace}/{id}")),
            namespaces,
            devices,
            masked_paths,
            readonly_paths,
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    })
}

/// What `ctr tasks exec` asks for, on top of the container's process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The command (required).
    pub args: Vec<String>,
    /// Allocate a terminal.
    pub tty: bool,
    /// Replaces the working directory.
    pub cwd: Option<String>,
    /// Run as this user instead, resolved through the image's files like `USER`. Unlike ctr
    /// (whose exec `--user` gives no supplementary groups), the user gets the groups
    /// `/etc/group` lists them in, as for the container's own process.
    pub user: Option<String>,
    /// Extra environment, merged as [`merge_env`] (a berth addition; ctr 1.6 has none).
    pub env: Vec<String>,
}

/// The process of `ctr tasks exec`: the container's process with the command, terminal, and
/// optionally cwd, user and environment replaced. Everything else (capabilities, rlimits,
/// `noNewPrivileges`, fields berth does not model) is the container's.
///
/// ```
/// use berth_core::spec::{exec_process, ExecOptions, ImageFiles, Process};
///
/// let base = Process { cwd: "/".into(), args: vec!["/bin/sh".into()], ..Process::default() };
/// let opts = ExecOptions { args: vec!["ls".into()], tty: true, ..ExecOptions::default() };
/// let p = exec_process(&base, &opts, &ImageFiles::default()).unwrap();
/// assert_eq!((p.args.as_slice(), p.terminal), (&["ls".to_owned()][..], true));
/// ```
pub fn exec_process(
    base: &Process,
    opts: &ExecOptions,
    files: &ImageFiles<'_>,
) -> Result<Process, SpecError> {
    if opts.args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let mut p = base.clone();
    p.args.clone_from(&opts.args);
    p.terminal = opts.tty;
    if let Some(cwd) = &opts.cwd {
        check_cwd(cwd)?;
        p.cwd.clone_from(cwd);
    }
    if let Some(user) = &opts.user {
        let resolved = resolve_user(user, files)?;
        p.user = User {
            umask: p.user.umask,
            ..resolved
        };
    }
    p.env = merge_env(&p.env, &opts.env);
    Ok(p)
}

#[cfg(test)]
mod tests;
