//! Linux capability names: containerd's default set, every capability, and the normalisation
//! of a name a user types (`net_admin`, `CAP_NET_ADMIN`, `ALL`).

use super::SpecError;

/// Every capability Linux defines (up to 6.x), in number order: `CAP_CHOWN` is 0,
/// `CAP_CHECKPOINT_RESTORE` is 40.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd 1.6's default capabilities (`defaultUnixCaps`), in its order: the bounding,
/// effective and permitted sets of an unprivileged container. The inheritable set is empty
/// (containerd dropped it in 1.6.2, CVE-2022-24769).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// What a capability argument names: one capability or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CapabilityArg {
    /// `ALL`.
    All,
    /// One capability, by its canonical `CAP_…` name.
    One(&'static str),
}

/// Normalises a capability a user names: case-insensitive, with or without the `CAP_` prefix,
/// or `ALL`. Unknown names are refused.
pub(crate) fn parse_capability(name: &str) -> Result<CapabilityArg, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" || upper == "CAP_ALL" {
        return Ok(CapabilityArg::All);
    }
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL_CAPABILITIES
        .iter()
        .find(|c| c[4..] == *bare)
        .map(|c| CapabilityArg::One(c))
        .ok_or_else(|| SpecError::UnknownCapability {
            name: super::shown(name),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_and_defaults() {
        assert_eq!(ALL_CAPABILITIES[0], "CAP_CHOWN");
        assert_eq!(ALL_CAPABILITIES[21], "CAP_SYS_ADMIN");
        assert_eq!(ALL_CAPABILITIES[40], "CAP_CHECKPOINT_RESTORE");
        assert!(DEFAULT_CAPABILITIES
            .iter()
            .all(|c| ALL_CAPABILITIES.contains(c)));
    }

    #[test]
    fn spellings() {
        for s in ["CAP_NET_ADMIN", "net_admin", "Cap_Net_Admin", " NET_ADMIN "] {
            assert_eq!(
                parse_capability(s),
                Ok(CapabilityArg::One("CAP_NET_ADMIN")),
                "{s}"
            );
        }
        assert_eq!(parse_capability("all"), Ok(CapabilityArg::All));
        assert_eq!(
            parse_capability("CAP_FLY"),
            Err(SpecError::UnknownCapability {
                name: "CAP_FLY".into()
            })
        );
        assert!(parse_capability("").is_err());
        assert!(parse_capability("CAP_").is_err());
    }
}
