//! Mounts as plain data: what containerd's `overlayfs` and `native` snapshotters return for a
//! snapshot, and the plan that fits an overlay mount's options into the kernel's one-page limit.
//!
//! The Snapshots API hands mounts out with absolute paths, exactly as containerd does. Only when a
//! mount is performed does the length of its options matter: the kernel copies mount data into a
//! single page, so an overlay of a deep chain (`lowerdir=/var/lib/…/snapshots/1/fs:…`, about 60
//! bytes a layer) fails beyond some 60 layers. containerd's answer, which [`plan_mounts`] models,
//! is to run the mount from the snapshots directory and give the lower directories relative to
//! it (`lowerdir=3/fs:2/fs:1/fs`): about seven bytes a layer.

use serde::{Deserialize, Serialize};

/// The mount type of a bind mount.
pub const BIND: &str = "bind";
/// The mount type (and source) of an overlay mount.
pub const OVERLAY: &str = "overlay";

/// Bytes of mount data the kernel accepts: one page, including the terminating NUL.
pub const MOUNT_DATA_LIMIT: usize = 4096;

/// containerd compacts an overlay's lowerdirs once its options take this many bytes (counting one
/// separator each): a page less 512 bytes of headroom, as `mount_linux.go` does.
pub const COMPACT_THRESHOLD: usize = MOUNT_DATA_LIMIT - 512;

/// The most lower layers one overlay mount may stack (the kernel's `OVL_MAX_STACK`).
pub const OVERLAY_MAX_LOWERDIRS: usize = 500;

/// One mount, as the Snapshots API carries it (`containerd.types.Mount`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mount {
    /// The mount type: `bind`, `overlay`, ….
    pub kind: String,
    /// The source: a directory for a bind, `overlay` for an overlay.
    pub source: String,
    /// Where to mount it. Empty in mounts the Snapshots API returns (the client chooses);
    /// [`plan_mounts`] fills it in.
    pub target: String,
    /// Options: mount flags (`ro`, `rbind`, …) and filesystem data (`lowerdir=…`).
    pub options: Vec<String>,
}

impl Mount {
    /// The `lowerdir=` directories of an overlay, top first (none for other mounts).
    #[must_use]
    pub fn lowerdirs(&self) -> Vec<&str> {
        if self.kind != OVERLAY {
            return Vec::new();
        }
        self.options
            .iter()
            .find_map(|o| o.strip_prefix("lowerdir="))
            .map(|l| l.split(':').collect())
            .unwrap_or_default()
    }

    /// The filesystem data the kernel receives: every option that is not a mount flag, joined
    /// by `,`.
    #[must_use]
    pub fn data(&self) -> String {
        let data: Vec<&str> = self
            .options
            .iter()
            .map(String::as_str)
            .filter(|o| !is_flag(o))
            .collect();
        data.join(",")
    }
}

/// Options containerd turns into mount flags rather than passing as data
/// (`parseMountOptions` in containerd's `mount_linux.go`).
const FLAGS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rw",
    "strictatime",
    "suid",
    "sync",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
];

fn is_flag(option: &str) -> bool {
    FLAGS.contains(&option)
}

/// containerd's `optionsSize`: every option's length plus one separator.
fn options_size(options: &[String]) -> usize {
    options.iter().map(|o| o.len() + 1).sum()
}

/// The mount of a snapshot of containerd's `overlayfs` snapshotter.
///
/// `fs(id)` is the absolute path of a snapshot's upper directory, `work(id)` of its work
/// directory; `parents` are the ids of the committed ancestry, immediate parent first.
pub(crate) fn overlay(
    view: bool,
    id: u64,
    parents: &[u64],
    index_off: bool,
    userxattr: bool,
    fs: impl Fn(u64) -> String,
    work: impl Fn(u64) -> String,
) -> Mount {
    if parents.is_empty() {
        return bind(fs(id), view);
    }
    if view && parents.len() == 1 {
        return bind(fs(parents[0]), true);
    }
    let mut options = Vec::with_capacity(5);
    if index_off {
        options.push("index=off".to_string());
    }
    if userxattr {
        options.push("userxattr".to_string());
    }
    if !view {
        options.push(format!("workdir={}", work(id)));
        options.push(format!("upperdir={}", fs(id)));
    }
    let lower: Vec<String> = parents.iter().map(|p| fs(*p)).collect();
    options.push(format!("lowerdir={}", lower.join(":")));
    Mount {
        kind: OVERLAY.into(),
        source: OVERLAY.into(),
        target: String::new(),
        options,
    }
}

/// The mount of a snapshot of containerd's `native` (copying) snapshotter: a bind of the
/// snapshot's own directory, or of its parent's for a view with a parent.
pub(crate) fn native(
    view: bool,
    id: u64,
    parent: Option<u64>,
    dir: impl Fn(u64) -> String,
) -> Mount {
    let source = match (view, parent) {
        (true, Some(p)) => dir(p),
        _ => dir(id),
    };
    bind(source, view)
}

fn bind(source: String, read_only: bool) -> Mount {
    Mount {
        kind: BIND.into(),
        source,
        target: String::new(),
        options: vec![if read_only { "ro" } else { "rw" }.into(), "rbind".into()],
    }
}

/// How to perform a list of mounts: change into `chdir` (when set), then mount each in order.
///
/// Relative `lowerdir=` paths are resolved by the kernel against the working directory of the
/// process that mounts, so a driver runs the mounts of a plan with a `chdir` in a helper that
/// changes directory first (containerd forks for this), never in its own process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// The directory to mount from, if some lowerdirs were made relative to it.
    pub chdir: Option<String>,
    /// The mounts, targets filled in, in order.
    pub mounts: Vec<Mount>,
}

/// Why mounts cannot be performed as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MountPlanError {
    /// The target is not an absolute path (a plan may change directory before mounting).
    #[error("mount target {target:?} must be an absolute path")]
    RelativeTarget {
        /// The target given.
        target: String,
    },
    /// Even with relative lowerdirs, the mount data does not fit in a page.
    #[error(
        "{kind} mount at {target:?}: its data is {len} bytes even with relative lowerdirs; \
         the kernel takes at most {limit}"
    )]
    OptionsTooLong {
        /// The mount type.
        kind: String,
        /// The target.
        target: String,
        /// Bytes of data (without the NUL).
        len: usize,
        /// Most bytes of data the kernel takes.
        limit: usize,
    },
    /// More lower layers than overlayfs stacks.
    #[error(
        "overlay mount at {target:?} has {count} lower layers; overlayfs stacks at most {limit}"
    )]
    TooManyLowerdirs {
        /// The target.
        target: String,
        /// Lower layers asked for.
        count: usize,
        /// The kernel's limit.
        limit: usize,
    },
    /// Two overlay mounts of one plan would need different working directories.
    #[error("overlay mounts need different working directories ({first:?} and {second:?}); mount them separately")]
    ConflictingChdir {
        /// The first mount's directory.
        first: String,
        /// The other's.
        second: String,
    },
}

/// Plans mounting `mounts` at `target`, as containerd's `mount.All` does.
///
/// Every mount gets the target. An overlay whose options reach [`COMPACT_THRESHOLD`] has its
/// lowerdirs rewritten relative to their common directory, which becomes the plan's `chdir`
/// (workdir and upperdir stay absolute, as in containerd). The plan is refused if any mount's
/// data still does not fit in [`MOUNT_DATA_LIMIT`] with its NUL, or an overlay stacks more than
/// [`OVERLAY_MAX_LOWERDIRS`] layers.
pub fn plan_mounts(mounts: &[Mount], target: &str) -> Result<MountPlan, MountPlanError> {
    if !target.starts_with('/') {
        return Err(MountPlanError::RelativeTarget {
            target: target.into(),
        });
    }
    let mut chdir: Option<String> = None;
    let mut out = Vec::with_capacity(mounts.len());
    for m in mounts {
        let mut m = Mount {
            target: target.into(),
            ..m.clone()
        };
        if m.kind == OVERLAY {
            let count = m.lowerdirs().len();
            if count > OVERLAY_MAX_LOWERDIRS {
                return Err(MountPlanError::TooManyLowerdirs {
                    target: target.into(),
                    count,
                    limit: OVERLAY_MAX_LOWERDIRS,
                });
            }
            if options_size(&m.options) >= COMPACT_THRESHOLD {
                if let Some((dir, options)) = compact_lowerdirs(&m.options) {
                    match &chdir {
                        Some(first) if *first != dir => {
                            return Err(MountPlanError::ConflictingChdir {
                                first: first.clone(),
                                second: dir,
                            })
                        }
                        _ => chdir = Some(dir),
                    }
                    m.options = options;
                }
            }
        }
        let len = m.data().len();
        if len + 1 > MOUNT_DATA_LIMIT {
            return Err(MountPlanError::OptionsTooLong {
                kind: m.kind,
                target: target.into(),
                len,
                limit: MOUNT_DATA_LIMIT - 1,
            });
        }
        out.push(m);
    }
    Ok(MountPlan { chdir, mounts: out })
}

/// containerd's `compactLowerdirOption`: the lowerdirs' common directory and the options with
/// `lowerdir=` (moved last) relative to it; `None` when there is nothing to gain (one lowerdir,
/// relative paths, or no common directory below `/`).
///
/// The common directory is taken component by component and always leaves each lowerdir at
/// least one component (`/r/snapshots/1/fs`, `/r/snapshots/12/fs` → `/r/snapshots`).
fn compact_lowerdirs(options: &[String]) -> Option<(String, Vec<String>)> {
    let idx = options.iter().position(|o| o.starts_with("lowerdir="))?;
    let dirs: Vec<Vec<&str>> = options[idx]["lowerdir=".len()..]
        .split(':')
        .map(|d| {
            d.strip_prefix('/')
                .map(|d| d.split('/').filter(|c| !c.is_empty()).collect())
        })
        .collect::<Option<_>>()?;
    if dirs.len() < 2 {
        return None;
    }
    let mut common = dirs[0].len().saturating_sub(1);
    for d in &dirs[1..] {
        let same = dirs[0].iter().zip(d).take_while(|(a, b)| a == b).count();
        common = common.min(same).min(d.len().saturating_sub(1));
    }
    if common == 0 {
        return None;
    }
    let chdir = format!("/{}", dirs[0][..common].join("/"));
    let relative: Vec<String> = dirs.iter().map(|d| d[common..].join("/")).collect();
    let mut out: Vec<String> = options
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != idx)
        .map(|(_, o)| o.clone())
        .collect();
    out.push(format!("lowerdir={}", relative.join(":")));
    Some((chdir, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "/var/lib/berth/io.containerd.snapshotter.v1.overlayfs";

    fn fs(id: u64) -> String {
        format!("{ROOT}/snapshots/{id}/fs")
    }

    fn work(id: u64) -> String {
        format!("{ROOT}/snapshots/{id}/work")
    }

    fn ov(view: bool, id: u64, parents: &[u64]) -> Mount {
        overlay(view, id, parents, true, false, fs, work)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn overlay_mounts_are_containerds() {
        // No parent: a bind of the snapshot's own fs, rw (ro for a view).
        let m = ov(false, 1, &[]);
        assert_eq!((m.kind.as_str(), m.source.clone()), ("bind", fs(1)));
        assert_eq!(m.options, s(&["rw", "rbind"]));
        assert_eq!(ov(true, 1, &[]).options, s(&["ro", "rbind"]));
        // A view of one parent: the parent's fs, read-only.
        let m = ov(true, 5, &[3]);
        assert_eq!((m.kind.as_str(), m.source.clone()), ("bind", fs(3)));
        assert_eq!(m.options, s(&["ro", "rbind"]));
        // An active snapshot on one parent: an overlay with upper and work.
        let m = ov(false, 5, &[3]);
        assert_eq!((m.kind.as_str(), m.source.as_str()), ("overlay", "overlay"));
        assert_eq!(
            m.options,
            vec![
                "index=off".to_string(),
                format!("workdir={}", work(5)),
                format!("upperdir={}", fs(5)),
                format!("lowerdir={}", fs(3)),
            ]
        );
        // A view of several parents: only the lowerdirs, top first.
        let m = ov(true, 9, &[4, 2, 1]);
        assert_eq!(
            m.options,
            vec![
                "index=off".to_string(),
                format!("lowerdir={}:{}:{}", fs(4), fs(2), fs(1))
            ]
        );
        assert_eq!(m.lowerdirs(), vec![fs(4), fs(2), fs(1)]);
        // Without index=off, with userxattr.
        let m = overlay(false, 2, &[1], false, true, fs, work);
        assert_eq!(m.options[0], "userxattr");
        assert_eq!(m.options.len(), 4);
    }

    #[test]
    fn native_mounts_bind_their_own_directory() {
        let dir = |id| format!("/n/snapshots/{id}");
        assert_eq!(native(false, 2, Some(1), dir).source, "/n/snapshots/2");
        assert_eq!(native(false, 2, Some(1), dir).options, s(&["rw", "rbind"]));
        assert_eq!(native(true, 2, Some(1), dir).source, "/n/snapshots/1");
        assert_eq!(native(true, 2, None, dir).source, "/n/snapshots/2");
        assert_eq!(native(true, 2, None, dir).options, s(&["ro", "rbind"]));
    }

    #[test]
    fn short_mounts_are_planned_unchanged() {
        let m = ov(false, 3, &[2, 1]);
        let plan = plan_mounts(std::slice::from_ref(&m), "/run/c1/rootfs").unwrap();
        assert_eq!(plan.chdir, None);
        assert_eq!(
            plan.mounts,
            vec![Mount {
                target: "/run/c1/rootfs".into(),
                ..m
            }]
        );
        assert_eq!(
            plan_mounts(&[], "rootfs"),
            Err(MountPlanError::RelativeTarget {
                target: "rootfs".into()
            })
        );
    }

    #[test]
    fn a_200_layer_chain_fits_only_with_relative_lowerdirs() {
        let parents: Vec<u64> = (1..=200).rev().collect();
        let m = ov(false, 201, &parents);
        // Absolute paths: far beyond a page.
        assert!(m.data().len() + 1 > MOUNT_DATA_LIMIT, "{}", m.data().len());
        let plan = plan_mounts(std::slice::from_ref(&m), "/run/c/rootfs").unwrap();
        assert_eq!(plan.chdir.as_deref(), Some(&*format!("{ROOT}/snapshots")));
        let p = &plan.mounts[0];
        assert!(p.data().len() < MOUNT_DATA_LIMIT, "{}", p.data().len());
        // Same order, same directories once resolved against chdir; upper and work untouched.
        let resolved: Vec<String> = p
            .lowerdirs()
            .iter()
            .map(|d| format!("{}/{d}", plan.chdir.as_deref().unwrap()))
            .collect();
        assert_eq!(resolved, m.lowerdirs());
        assert_eq!(p.lowerdirs()[0], "200/fs");
        assert_eq!(p.options[..3], m.options[..3]);
        assert!(p.options[3].starts_with("lowerdir=200/fs:199/fs:"));
    }

    #[test]
    fn hopeless_mounts_are_refused() {
        let parents: Vec<u64> = (1..=501).rev().collect();
        assert!(matches!(
            plan_mounts(&[ov(true, 600, &parents)], "/t"),
            Err(MountPlanError::TooManyLowerdirs { count: 501, .. })
        ));
        // 450 layers of long ids: relative paths are still more than a page.
        let parents: Vec<u64> = (1_000_000_000..1_000_000_450).rev().collect();
        assert!(matches!(
            plan_mounts(&[ov(true, 1, &parents)], "/t"),
            Err(MountPlanError::OptionsTooLong { limit: 4095, .. })
        ));
        // No common directory below "/": nothing to compact, too long as it stands.
        let long: Vec<String> = (0..100).map(|i| format!("/d{i:0>40}")).collect();
        let m = Mount {
            kind: OVERLAY.into(),
            source: OVERLAY.into(),
            target: String::new(),
            options: vec![format!("lowerdir={}", long.join(":"))],
        };
        assert!(matches!(
            plan_mounts(&[m], "/t"),
            Err(MountPlanError::OptionsTooLong { .. })
        ));
    }

    #[test]
    fn compaction_follows_containerd() {
        assert_eq!(compact_lowerdirs(&s(&["lowerdir=/a/b/1/fs"])), None);
        assert_eq!(compact_lowerdirs(&s(&["lowerdir=rel/1:/a/2"])), None);
        assert_eq!(compact_lowerdirs(&s(&["lowerdir=/x/1:/y/2"])), None);
        assert_eq!(
            compact_lowerdirs(&s(&["lowerdir=/r/s/1/fs:/r/s/12/fs", "index=off"])),
            Some(("/r/s".into(), s(&["index=off", "lowerdir=1/fs:12/fs"])))
        );
        // A lowerdir that is an ancestor of another keeps one component.
        assert_eq!(
            compact_lowerdirs(&s(&["lowerdir=/r/s:/r/s/t"])),
            Some(("/r".into(), s(&["lowerdir=s:s/t"])))
        );
    }

    #[test]
    fn flags_are_not_data() {
        let m = Mount {
            kind: BIND.into(),
            source: "/x".into(),
            target: String::new(),
            options: s(&["ro", "rbind", "nosuid", "mode=755"]),
        };
        assert_eq!(m.data(), "mode=755");
        assert!(m.lowerdirs().is_empty());
    }
}
