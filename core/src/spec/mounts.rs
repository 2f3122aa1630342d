//! containerd 1.6's default mounts, masked and read-only paths and device rules, and the
//! `--mount` flag of `ctr run` (`type=bind,src=/tmp,dst=/host,options=rbind:ro`).

use super::types::{DeviceRule, Mount};
use super::{shown, SpecError};

/// The mounts every container gets (containerd's `defaultMounts`), in order.
#[must_use]
pub fn default_mounts() -> Vec<Mount> {
    vec![
        Mount::new("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        Mount::new(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        Mount::new(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        Mount::new(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        Mount::new(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        Mount::new(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        Mount::new(
            "/run",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
    ]
}

/// Paths hidden from an unprivileged container (containerd 1.6's `maskedPaths`).
pub const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// Paths read-only in an unprivileged container (containerd 1.6's `readonlyPaths`).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The device cgroup rules of an unprivileged container: deny everything, then allow the
/// devices runc creates (`WithDefaultUnixDevices`): null, random, full, tty, zero, urandom,
/// console, the pty slaves (136:*) and ptmx, each `rwm`.
#[must_use]
pub fn default_device_rules() -> Vec<DeviceRule> {
    let allow = |major: i64, minor: Option<i64>| DeviceRule {
        allow: true,
        kind: "c".into(),
        major: Some(major),
        minor,
        access: "rwm".into(),
    };
    vec![
        DeviceRule {
            allow: false,
            access: "rwm".into(),
            ..DeviceRule::default()
        },
        allow(1, Some(3)),
        allow(1, Some(8)),
        allow(1, Some(7)),
        allow(5, Some(0)),
        allow(1, Some(5)),
        allow(1, Some(9)),
        allow(5, Some(1)),
        allow(136, None),
        allow(5, Some(2)),
    ]
}

/// The device rule of a privileged container: every device, `rwm` (`WithAllDevicesAllowed`).
#[must_use]
pub fn all_devices_rule() -> DeviceRule {
    DeviceRule {
        allow: true,
        access: "rwm".into(),
        ..DeviceRule::default()
    }
}

/// A read-only recursive bind of a host file at the same path (`WithHostHostsFile`,
/// `WithHostResolvconf`).
pub(crate) fn host_file_bind(path: &str) -> Mount {
    Mount::new(path, "bind", path, &["rbind", "ro"])
}

/// Why a `--mount` flag was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MountFlagError {
    /// A field is not `key=value`.
    #[error("expected key=val fields")]
    NotKeyValue,
    /// A key other than `type`, `source`/`src`, `destination`/`dst`, `options`.
    #[error("only type, source (src), destination (dst) and options are supported")]
    UnknownKey,
    /// A quoted field is not closed, or text follows its closing quote.
    #[error("a quoted field is malformed")]
    Quote,
    /// No `destination`.
    #[error("it has no destination")]
    NoDestination,
}

/// The comma-separated fields of a `--mount` value, CSV-quoted as Go's `encoding/csv` reads
/// them (`"a,b"` is one field, `""` inside quotes is a quote).
fn csv_fields(s: &str) -> Result<Vec<String>, MountFlagError> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(MountFlagError::Quote),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(MountFlagError::Quote),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

impl Mount {
    /// Parses the value of `ctr run --mount`: comma-separated `key=value` fields, keys `type`,
    /// `source` (`src`), `destination` (`dst`) and `options` (`:`-separated), as ctr's
    /// `parseMountFlag`. A mount with no destination is refused (ctr leaves that to runc).
    ///
    /// ```
    /// use berth_core::spec::Mount;
    ///
    /// let m = Mount::parse_flag("type=bind,src=/tmp,dst=/host,options=rbind:ro").unwrap();
    /// assert_eq!((m.kind.as_str(), m.source.as_str(), m.destination.as_str()), ("bind", "/tmp", "/host"));
    /// assert_eq!(m.options, ["rbind", "ro"]);
    /// ```
    pub fn parse_flag(flag: &str) -> Result<Mount, SpecError> {
        let err = |reason| SpecError::MountFlag {
            flag: shown(flag),
            reason,
        };
        let mut mount = Mount::default();
        for field in csv_fields(flag).map_err(err)? {
            let (key, value) = field
                .split_once('=')
                .ok_or(err(MountFlagError::NotKeyValue))?;
            match key {
                "type" => mount.kind = value.into(),
                "source" | "src" => mount.source = value.into(),
                "destination" | "dst" => mount.destination = value.into(),
                "options" => mount.options = value.split(':').map(str::to_owned).collect(),
                _ => return Err(err(MountFlagError::UnknownKey)),
            }
        }
        if mount.destination.is_empty() {
            return Err(err(MountFlagError::NoDestination));
        }
        Ok(mount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag_err(flag: &str) -> MountFlagError {
        match Mount::parse_flag(flag) {
            Err(SpecError::MountFlag { reason, .. }) => reason,
            other => panic!("{flag}: {other:?}"),
        }
    }

    #[test]
    fn parse_flag() {
        let m = Mount::parse_flag("type=bind,src=/tmp,dst=/host,options=rbind:ro").unwrap();
        assert_eq!(m, Mount::new("/host", "bind", "/tmp", &["rbind", "ro"]));
        let m = Mount::parse_flag("destination=/d,source=/s,type=tmpfs").unwrap();
        assert_eq!(m, Mount::new("/d", "tmpfs", "/s", &[]));
        // Quoted fields carry commas; a value may contain '='.
        let m = Mount::parse_flag(r#""src=/a,b",dst=/c,"options=x=1:y""#).unwrap();
        assert_eq!(m.source, "/a,b");
        assert_eq!(m.options, ["x=1", "y"]);
        let m = Mount::parse_flag(r#""src=/say ""hi""",dst=/x"#).unwrap();
        assert_eq!(m.source, r#"/say "hi""#);
        // Later keys win, as in ctr.
        assert_eq!(
            Mount::parse_flag("dst=/a,dst=/b").unwrap().destination,
            "/b"
        );
    }

    #[test]
    fn parse_flag_errors() {
        assert_eq!(flag_err("bind,dst=/x"), MountFlagError::NotKeyValue);
        assert_eq!(flag_err("dst=/x,"), MountFlagError::NotKeyValue);
        assert_eq!(flag_err("mode=1,dst=/x"), MountFlagError::UnknownKey);
        assert_eq!(flag_err(r#""dst=/x"#), MountFlagError::Quote);
        assert_eq!(flag_err(r#""dst=/x"y"#), MountFlagError::Quote);
        assert_eq!(flag_err("type=bind,src=/a"), MountFlagError::NoDestination);
        assert_eq!(flag_err(""), MountFlagError::NotKeyValue);
        let e = Mount::parse_flag("src=/a").unwrap_err().to_string();
        assert!(e.contains("src=/a") && e.contains("destination"), "{e}");
    }
}
