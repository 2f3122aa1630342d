//! The image's `USER` resolved to numeric ids through its `/etc/passwd` and `/etc/group`, as
//! containerd 1.6.20 does (`oci.WithUser`, then `WithAdditionalGIDs` with the uid).
//!
//! | `USER`        | uid                         | gid                                  |
//! |---------------|-----------------------------|--------------------------------------|
//! | (empty)       | 0                           | 0                                    |
//! | `uid`         | `uid`                       | its passwd entry's gid, else 0       |
//! | `name`        | its passwd entry's (error if none) | its passwd entry's            |
//! | `uid:gid`     | `uid`                       | `gid` (no file read)                 |
//! | `name:group`, `uid:group`, `name:gid` | from passwd | from group (error if none) |
//!
//! The supplementary groups (`additionalGids`) are the groups of `/etc/group` that list the
//! user's name (the name of the first passwd entry with the uid; `root` when `USER` is empty)
//! as a member, in file order, except a group of the user's own name; the primary gid comes
//! first unless it is among them (containerd's fix for GHSA-hmfx-3pcx-653p). An empty part
//! (`name:`, `:gid`) stands for id 0, as in containerd.
//!
//! Files are parsed as libcontainer's `user` package does (lines trimmed, blank lines skipped,
//! `:`-separated fields, `,`-separated members), but stricter in one way: a line whose id field
//! is not a number is skipped, where Go would read it as id 0, i.e. root.

use super::types::User;
use super::{shown, SpecError};

/// The image's account files, as the driver read them from the rootfs (`None`: no such file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageFiles<'a> {
    /// `/etc/passwd`.
    pub passwd: Option<&'a [u8]>,
    /// `/etc/group`.
    pub group: Option<&'a [u8]>,
}

/// One `/etc/passwd` entry (the fields berth uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PasswdEntry<'a> {
    name: &'a [u8],
    uid: u32,
    gid: u32,
}

/// One `/etc/group` entry (the fields berth uses).
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry<'a> {
    name: &'a [u8],
    gid: u32,
    members: Vec<&'a [u8]>,
}

/// Non-blank lines, trimmed, split at `:`.
fn records(file: &[u8]) -> impl Iterator<Item = Vec<&[u8]>> {
    file.split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(|&b| b == b':').collect())
}

fn id(field: Option<&&[u8]>) -> Option<u32> {
    std::str::from_utf8(field?).ok()?.parse().ok()
}

fn passwd_entries(file: &[u8]) -> impl Iterator<Item = PasswdEntry<'_>> {
    records(file).filter_map(|f| {
        Some(PasswdEntry {
            name: f[0],
            uid: id(f.get(2))?,
            gid: id(f.get(3))?,
        })
    })
}

fn group_entries(file: &[u8]) -> impl Iterator<Item = GroupEntry<'_>> {
    records(file).filter_map(|f| {
        Some(GroupEntry {
            name: f[0],
            gid: id(f.get(2))?,
            members: match f.get(3) {
                Some(m) if !m.is_empty() => m.split(|&b| b == b',').collect(),
                _ => Vec::new(),
            },
        })
    })
}

/// A numeric id as Go's `strconv.Atoi` + `uint32` would take it, limited to what fits.
fn numeric(part: &str) -> Option<u32> {
    part.parse().ok()
}

fn user_by_name<'a>(files: &ImageFiles<'a>, name: &str) -> Result<PasswdEntry<'a>, SpecError> {
    let passwd = files
        .passwd
        .ok_or_else(|| SpecError::NoPasswdFile { user: shown(name) })?;
    passwd_entries(passwd)
        .find(|e| e.name == name.as_bytes())
        .ok_or_else(|| SpecError::UnknownUser { user: shown(name) })
}

fn user_by_uid<'a>(files: &ImageFiles<'a>, uid: u32) -> Option<PasswdEntry<'a>> {
    passwd_entries(files.passwd?).find(|e| e.uid == uid)
}

fn group_by_name(files: &ImageFiles<'_>, name: &str) -> Result<u32, SpecError> {
    let group = files
        .group
        .ok_or_else(|| SpecError::NoGroupFile { group: shown(name) })?;
    group_entries(group)
        .find(|g| g.name == name.as_bytes())
        .map(|g| g.gid)
        .ok_or_else(|| SpecError::UnknownGroup { group: shown(name) })
}

/// The groups that list `name` as a member, except its own-name group, in file order.
fn supplementary(files: &ImageFiles<'_>, name: &[u8]) -> Vec<u32> {
    let Some(group) = files.group else {
        return Vec::new();
    };
    group_entries(group)
        .filter(|g| g.name != name && g.members.contains(&name))
        .map(|g| g.gid)
        .collect()
}

/// The primary gid first, unless the supplementary groups hold it already.
fn with_primary(gid: u32, mut gids: Vec<u32>) -> Vec<u32> {
    if !gids.contains(&gid) {
        gids.insert(0, gid);
    }
    gids
}

/// Resolves an image's (or a user's) `USER` string to numeric ids and supplementary groups.
///
/// ```
/// use berth_core::spec::{resolve_user, ImageFiles};
///
/// let files = ImageFiles {
///     passwd: Some(b"root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"),
///     group: Some(b"root:x:0:\nwheel:x:10:alice\n"),
/// };
/// let u = resolve_user("alice", &files).unwrap();
/// assert_eq!((u.uid, u.gid, u.additional_gids), (1000, 1000, vec![1000, 10]));
/// assert_eq!(resolve_user("7:8", &ImageFiles::default()).unwrap().additional_gids, vec![8]);
/// assert!(resolve_user("bob", &files).is_err());
/// ```
pub fn resolve_user(user: &str, files: &ImageFiles<'_>) -> Result<User, SpecError> {
    let (uid, gid) = primary_ids(user, files)?;
    // containerd: WithAdditionalGIDs("root") with no USER, else WithAdditionalGIDs("<uid>").
    let supplementary = if user.is_empty() {
        supplementary(files, b"root")
    } else {
        user_by_uid(files, uid)
            .map(|e| supplementary(files, e.name))
            .unwrap_or_default()
    };
    Ok(User {
        uid,
        gid,
        additional_gids: with_primary(gid, supplementary),
        ..User::default()
    })
}

/// uid and gid of `USER` (containerd's `WithUser`).
fn primary_ids(user: &str, files: &ImageFiles<'_>) -> Result<(u32, u32), SpecError> {
    let parts: Vec<&str> = user.split(':').collect();
    match parts[..] {
        [""] => Ok((0, 0)),
        [one] => match numeric(one) {
            Some(uid) => Ok((uid, user_by_uid(files, uid).map_or(0, |e| e.gid))),
            None => user_by_name(files, one).map(|e| (e.uid, e.gid)),
        },
        [u, g] => {
            let uid = match numeric(u) {
                Some(uid) => uid,
                None if u.is_empty() => 0,
                None => user_by_name(files, u)?.uid,
            };
            let gid = match numeric(g) {
                Some(gid) => gid,
                None if g.is_empty() => 0,
                None => group_by_name(files, g)?,
            };
            Ok((uid, gid))
        }
        _ => Err(SpecError::InvalidUser { user: shown(user) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = include_bytes!("testdata/users.passwd");
    const GROUP: &[u8] = include_bytes!("testdata/users.group");

    fn files() -> ImageFiles<'static> {
        ImageFiles {
            passwd: Some(PASSWD),
            group: Some(GROUP),
        }
    }

    fn ids(user: &str, files: &ImageFiles<'_>) -> (u32, u32, Vec<u32>) {
        let u = resolve_user(user, files).unwrap_or_else(|e| panic!("{user}: {e}"));
        (u.uid, u.gid, u.additional_gids)
    }

    /// What containerd 1.6.20 generated for images with these `User`s and the same files
    /// (`testdata/ctr-create-users.json`, from `ctr containers create` on the peer).
    #[test]
    fn matches_containerd() {
        let golden: serde_json::Value =
            serde_json::from_slice(include_bytes!("testdata/ctr-create-users.json")).unwrap();
        let cases = golden.as_array().unwrap();
        assert_eq!(cases.len(), 7);
        for case in cases {
            let user = case["imageUser"].as_str().unwrap();
            let expected: User = serde_json::from_value(case["user"].clone()).unwrap();
            assert_eq!(resolve_user(user, &files()).unwrap(), expected, "{user}");
        }
    }

    #[test]
    fn by_name() {
        // alice: own group 1000; member of users (100), wheel (10), audio (29).
        assert_eq!(
            ids("alice", &files()),
            (1000, 1000, vec![1000, 100, 10, 29])
        );
        // bob's primary group (users) is among his memberships: not repeated.
        assert_eq!(ids("bob", &files()), (1001, 100, vec![100, 29]));
        assert_eq!(ids("root", &files()), (0, 0, vec![0]));
    }

    #[test]
    fn by_uid() {
        assert_eq!(ids("1000", &files()), (1000, 1000, vec![1000, 100, 10, 29]));
        // Unknown uid: gid 0, no file needed, no supplementary groups.
        assert_eq!(ids("4242", &files()), (4242, 0, vec![0]));
        assert_eq!(ids("4242", &ImageFiles::default()), (4242, 0, vec![0]));
    }

    #[test]
    fn with_group() {
        assert_eq!(ids("1000:5", &files()), (1000, 5, vec![5, 100, 10, 29]));
        assert_eq!(ids("alice:wheel", &files()), (1000, 10, vec![100, 10, 29]));
        assert_eq!(ids("1001:audio", &files()), (1001, 29, vec![100, 29]));
        assert_eq!(ids("bob:0", &files()), (1001, 0, vec![0, 100, 29]));
        // Numeric pairs need no files at all.
        assert_eq!(ids("7:8", &ImageFiles::default()), (7, 8, vec![8]));
        // Empty parts are id 0, as in containerd.
        assert_eq!(ids("alice:", &files()), (1000, 0, vec![0, 100, 10, 29]));
        assert_eq!(ids(":wheel", &files()), (0, 10, vec![10]));
    }

    #[test]
    fn no_user_means_root_and_roots_groups() {
        let files = ImageFiles {
            passwd: None,
            group: Some(b"root:x:0:\nwheel:x:10:root,alice\ndisk:x:6:root\n"),
        };
        assert_eq!(ids("", &files), (0, 0, vec![0, 10, 6]));
        assert_eq!(ids("", &ImageFiles::default()), (0, 0, vec![0]));
    }

    #[test]
    fn errors() {
        assert_eq!(
            resolve_user("nobody", &files()),
            Err(SpecError::UnknownUser {
                user: "nobody".into()
            })
        );
        assert_eq!(
            resolve_user("nobody", &ImageFiles::default()),
            Err(SpecError::NoPasswdFile {
                user: "nobody".into()
            })
        );
        assert_eq!(
            resolve_user("alice:staff", &files()),
            Err(SpecError::UnknownGroup {
                group: "staff".into()
            })
        );
        let no_group = ImageFiles {
            passwd: Some(PASSWD),
            group: None,
        };
        assert_eq!(
            resolve_user("alice:wheel", &no_group),
            Err(SpecError::NoGroupFile {
                group: "wheel".into()
            })
        );
        assert_eq!(ids("alice", &no_group), (1000, 1000, vec![1000]));
        assert_eq!(
            resolve_user("a:b:c", &files()),
            Err(SpecError::InvalidUser {
                user: "a:b:c".into()
            })
        );
        // Out of u32 range: not an id, so a name, which does not exist.
        assert!(matches!(
            resolve_user("4294967296", &files()),
            Err(SpecError::UnknownUser { .. })
        ));
    }

    #[test]
    fn tolerant_parsing() {
        let files = ImageFiles {
            passwd: Some(
                b"\n  # comment\n\
                  evil:x:notanumber:0::/:/bin/sh\n\
                  short:x\n\
                  \t carol:x:2000:2000:Carol:/home/carol:/bin/sh \r\n\
                  carol:x:3000:3000::/:/bin/sh\n",
            ),
            group: Some(b"carol:x:2000:carol\nstaff:x:50:dave,,carol\nbad:x:y:carol\n"),
        };
        // The first entry of a name wins; a malformed id line never matches (Go: uid 0).
        assert_eq!(ids("carol", &files), (2000, 2000, vec![2000, 50]));
        assert!(resolve_user("evil", &files).is_err());
        assert!(resolve_user("short", &files).is_err());
        // Non-UTF-8 bytes are fine: names are compared as bytes.
        let files = ImageFiles {
            passwd: Some(b"\xff\xfe:x:1:1::/:\nu:x:5:5::/:\n"),
            group: Some(b"g\xff:x:9:u\n"),
        };
        assert_eq!(ids("u", &files), (5, 5, vec![5, 9]));
    }
}
