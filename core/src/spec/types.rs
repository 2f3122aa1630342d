//! The OCI runtime spec (1.0.2) as serde types: the `config.json` runc reads.
//!
//! Field names, field order and omission rules follow the Go types of
//! `github.com/opencontainers/runtime-spec/specs-go` (`omitempty` becomes
//! `skip_serializing_if`), so a spec serialises to the same bytes as containerd's
//! `json.Marshal` of the same values. Only what berth generates is modelled field by field;
//! everything else a document carries (hooks, seccomp, sysctls, …) is kept verbatim in the
//! `extra` map of the enclosing object, so a spec written by another client (containerd's `ctr`
//! sends its own) survives a parse and a re-serialisation. `null` reads as absent, as in Go.
//!
//! Why not the `oci-spec` crate's `runtime` types (the reasons of the image module, again): they
//! bring derive_builder (darling), getset and strum into this crate, carry `load`/`save` over
//! `std::fs` into the pure core, drop the fields they do not know (so a foreign spec would not
//! round-trip), and their serde errors do not say where a document is wrong. These types are
//! small, and the golden tests prove them byte-identical to containerd's output.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Fields of a JSON object that berth does not model, kept as they were.
pub type Extra = BTreeMap<String, Value>;

/// Reads `null` (and an absent field, with `#[serde(default)]`) as the type's default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The container's configuration: `config.json` of an OCI bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// The runtime-spec version the document follows (`1.0.2-dev`, as containerd 1.6 writes).
    #[serde(default, deserialize_with = "nullable")]
    pub oci_version: String,
    /// The container's first process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    /// The root filesystem, relative to the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Root>,
    /// The hostname inside the container's UTS namespace (empty: not set).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub hostname: String,
    /// Mounts, in the order the runtime performs them.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mounts: Vec<Mount>,
    /// Annotations, sorted by key (Go marshals maps sorted).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// The Linux-specific part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux: Option<Linux>,
    /// Fields berth does not model (`hooks`, `vm`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A process to run: the container's first process, or one started with `exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// Whether the process gets a pseudo-terminal.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub terminal: bool,
    /// Who the process runs as.
    #[serde(default, deserialize_with = "nullable")]
    pub user: User,
    /// `argv`; `args[0]` is looked up in the container's `PATH`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<String>,
    /// The environment, `KEY=value`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    /// The working directory, absolute in the container.
    #[serde(default, deserialize_with = "nullable")]
    pub cwd: String,
    /// Capability sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// Resource limits.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rlimits: Vec<Rlimit>,
    /// Sets `PR_SET_NO_NEW_PRIVS`: setuid binaries and file capabilities gain nothing.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub no_new_privileges: bool,
    /// Fields berth does not model (`consoleSize`, `apparmorProfile`, `oomScoreAdj`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The user a process runs as: numeric ids only, resolved before the container starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// User id.
    #[serde(default, deserialize_with = "nullable")]
    pub uid: u32,
    /// Primary group id.
    #[serde(default, deserialize_with = "nullable")]
    pub gid: u32,
    /// The umask, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub umask: Option<u32>,
    /// Supplementary group ids.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_gids: Vec<u32>,
    /// A user name (Windows only).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub username: String,
}

/// The capability sets of a process (`CAP_…` names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The bounding set.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub bounding: Vec<String>,
    /// The effective set.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub effective: Vec<String>,
    /// The inheritable set (empty in containerd 1.6's defaults since CVE-2022-24769).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub inheritable: Vec<String>,
    /// The permitted set.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub permitted: Vec<String>,
    /// The ambient set.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ambient: Vec<String>,
}

/// One POSIX resource limit (`setrlimit`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// The resource, e.g. `RLIMIT_NOFILE`.
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub kind: String,
    /// The hard limit.
    #[serde(default, deserialize_with = "nullable")]
    pub hard: u64,
    /// The soft limit.
    #[serde(default, deserialize_with = "nullable")]
    pub soft: u64,
}

/// The container's root filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Its path, relative to the bundle (`rootfs`) or absolute.
    #[serde(default, deserialize_with = "nullable")]
    pub path: String,
    /// Mount it read-only.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub readonly: bool,
}

/// One mount inside the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Where, absolute in the container.
    #[serde(default, deserialize_with = "nullable")]
    pub destination: String,
    /// The filesystem type (`proc`, `tmpfs`, `bind`, …).
    #[serde(
        rename = "type",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub kind: String,
    /// The source: a device, a host path for a bind, or a name (`proc`, `shm`).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub source: String,
    /// Mount flags and filesystem data (`nosuid`, `rbind`, `mode=755`, …).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub options: Vec<String>,
    /// Fields berth does not model (`uidMappings`, … of runtime-spec 1.1).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Mount {
    /// A mount of `kind` from `source` at `destination` with `options`.
    #[must_use]
    pub fn new(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            destination: destination.to_owned(),
            kind: kind.to_owned(),
            source: source.to_owned(),
            options: options.iter().map(|&o| o.to_owned()).collect(),
            extra: Extra::new(),
        }
    }
}

/// The Linux-specific part of a spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    /// cgroup limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The cgroup, `/<namespace>/<id>` as containerd names it.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub cgroups_path: String,
    /// Namespaces to create (no path) or join (a path).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub namespaces: Vec<Namespace>,
    /// Device nodes to create in the container.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub devices: Vec<Device>,
    /// Paths hidden from the container (a `/dev/null` bind or an empty read-only tmpfs).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub masked_paths: Vec<String>,
    /// Paths remounted read-only.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub readonly_paths: Vec<String>,
    /// Fields berth does not model (`uidMappings`, `sysctl`, `seccomp`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The namespace types of Linux, as the spec names them.
pub mod namespace {
    /// The PID namespace.
    pub const PID: &str = "pid";
    /// The network namespace.
    pub const NETWORK: &str = "network";
    /// The mount namespace.
    pub const MOUNT: &str = "mount";
    /// The IPC namespace.
    pub const IPC: &str = "ipc";
    /// The UTS (hostname) namespace.
    pub const UTS: &str = "uts";
    /// The user namespace.
    pub const USER: &str = "user";
    /// The cgroup namespace.
    pub const CGROUP: &str = "cgroup";
}

/// A namespace: created for the container (no path) or joined (the path of a namespace file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// The type, one of [`namespace`]'s constants.
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub kind: String,
    /// The namespace to join, e.g. `/var/run/netns/x`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub path: String,
}

impl Namespace {
    /// A new namespace of `kind`.
    #[must_use]
    pub fn new(kind: &str) -> Namespace {
        Namespace {
            kind: kind.to_owned(),
            path: String::new(),
        }
    }
}

/// cgroup resource limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// The device cgroup rules, applied in order.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub devices: Vec<DeviceRule>,
    /// Memory limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// CPU limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Fields berth does not model (`pids`, `blockIO`, `hugepageLimits`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// One device cgroup rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    /// Allow (true) or deny.
    #[serde(default, deserialize_with = "nullable")]
    pub allow: bool,
    /// `c`, `b` or `a`; empty means all.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub kind: String,
    /// Major number; none means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    /// Minor number; none means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    /// Any of `r`, `w`, `m`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub access: String,
}

/// Memory limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Soft limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<i64>,
    /// Memory plus swap limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<i64>,
    /// Fields berth does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// CPU limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// Relative weight (cgroup v1 `cpu.shares`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
    /// CFS quota in microseconds per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<i64>,
    /// CFS period in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    /// Fields berth does not model (`cpus`, `mems`, realtime).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A device node to create in the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Its path in the container.
    #[serde(default, deserialize_with = "nullable")]
    pub path: String,
    /// `c`, `b`, `u` or `p`.
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub kind: String,
    /// Major number.
    #[serde(default, deserialize_with = "nullable")]
    pub major: i64,
    /// Minor number.
    #[serde(default, deserialize_with = "nullable")]
    pub minor: i64,
    /// Permission bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    /// Owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}
