//! Layer creation, decided: tar entries in, a compressed layer blob out, plus the pure rules that
//! turn a snapshot's changes into those entries.
//!
//! This is the writing twin of [`super::apply`]. A driver walks a snapshot (an overlay upper
//! directory, or two directory trees to compare) and describes what it finds as [`Node`]s; the
//! rules here say what each node means in a layer ([`classify_upper`], [`compare`],
//! [`HardLinks`], [`Header::from_node`]), and [`LayerWriter`] turns the resulting [`Header`]s
//! and file contents into tar bytes, compresses them (gzip, zstd or none) and hashes both
//! streams as it goes: the diff ID (sha256 of the tar) and the blob digest come out of
//! [`LayerWriter::finish`] without a second pass.
//!
//! ```
//! use berth_core::archive::diff::{Header, LayerWriter};
//! use berth_core::archive::{Compression, Decoder, EntryKind};
//!
//! let mut w = LayerWriter::new(Compression::Gzip);
//! let mut blob = Vec::new();
//! let mut dir = Header::new(EntryKind::Directory, "etc");
//! dir.mode = 0o755;
//! w.entry(&dir).unwrap();
//! let mut motd = Header::new(EntryKind::Regular, "etc/motd");
//! motd.mode = 0o644;
//! motd.size = 5;
//! w.entry(&motd).unwrap();
//! w.data(b"hello").unwrap(); // the entry ends once `size` bytes have been given
//! w.entry(&Header::whiteout("etc/old")).unwrap(); // `etc/.wh.old`
//! while let Some(chunk) = w.poll() {
//!     blob.extend_from_slice(&chunk); // a driver writes it to the content store
//! }
//! let summary = w.finish().unwrap();
//! while let Some(chunk) = w.poll() {
//!     blob.extend_from_slice(&chunk);
//! }
//! assert_eq!(summary.digest, berth_core::Digest::sha256(&blob));
//! assert_eq!(summary.size, blob.len() as u64);
//! assert_eq!(summary.entries, 3);
//!
//! // The layer reads back with the diff ID the writer reported.
//! let mut d = Decoder::new(Compression::Gzip);
//! d.push_slice(&blob).unwrap();
//! while d.poll().unwrap().is_some() {}
//! assert_eq!(d.finish().unwrap().diff_id, summary.diff_id);
//! ```
//!
//! ## The tar format written
//!
//! POSIX ustar headers with PAX extended headers where ustar cannot say it, as Go's
//! `archive/tar` writes with `Format = FormatPAX` (what containerd's `WriteDiff` uses), so any
//! reader of image layers reads them:
//!
//! * Directory names end in `/`. Hard link and symlink targets go in `linkname`.
//! * A PAX `x` header (named `<dir>/PaxHeaders.0/<name>`, mode, owner and mtime 0, records
//!   sorted by key) precedes an entry whose path or link target is longer than 100 bytes or
//!   not ASCII (`path`, `linkpath`; the ustar field keeps an ASCII prefix), whose size exceeds
//!   the 11 octal digits of ustar (`size`, 8 GiB and up), whose owner exceeds 7 octal digits
//!   (`uid`, `gid`), whose mtime has nanoseconds or falls outside `0..8^11` seconds (`mtime`,
//!   as `[-]secs[.frac]`), or that has extended attributes (`SCHILY.xattr.<name>`, raw binary
//!   values). The ustar prefix field is never used, as in Go's PAX mode.
//! * Numbers are zero-padded octal with a NUL terminator; device numbers that do not fit
//!   octal (none do on Linux) use GNU base-256. `uname`/`gname` are empty: owners are numeric,
//!   so a layer does not depend on the host's user database (containerd's
//!   `FileInfoHeaderNoLookups`).
//! * The archive ends with two zero blocks and no record padding, as Go writes it.
//! * Extended headers larger than 1 MiB are refused ([`super::tar::MAX_EXTENSION`]): readers
//!   (Go, berth) refuse them too.
//!
//! gzip output is one member with a fixed header (no name, mtime 0, OS 255 "unknown", as Go
//! writes it), so the same entries always give the same blob, whatever the host. zstd output
//! is one frame with a content checksum. The same inputs give the same bytes, chunk for chunk.
//!
//! ## Overlay upper directory → layer ([`classify_upper`])
//!
//! The upper directory of an overlay snapshot holds exactly the snapshot's changes:
//!
//! * a 0/0 character device is an overlay whiteout: the layer gets `<dir>/.wh.<name>`
//!   ([`Header::whiteout`]: an empty regular file, mode 0, owner 0:0, mtime 0, as containerd
//!   2 writes it). So does a regular file carrying the `overlay.whiteout` xattr (the xattr
//!   whiteout format of Linux 6.7+);
//! * a directory with `overlay.opaque` = `y` is emitted, then `<dir>/.wh..wh..opq`
//!   ([`Header::opaque`]) right after it, before any of its children; containerd instead
//!   writes `.wh.<dir>` followed by the directory, which means the same;
//! * a directory with an `overlay.redirect` (a directory renamed under `redirect_dir=on`)
//!   takes its content from another lower path: it cannot be expressed from the upper
//!   directory alone ([`UpperNode::Redirected`]);
//! * a regular file with `overlay.metacopy` has its data in a lower layer
//!   ([`UpperNode::Metacopy`]): the driver reads the data from there;
//! * sockets are skipped, as containerd skips them;
//! * everything else is emitted as it is.
//!
//! `overlay.*` means `trusted.overlay.*`, or `user.overlay.*` for an overlay mounted with
//! `userxattr` ([`OverlayXattrs`]): only the namespace the mount uses is overlayfs's.
//!
//! ## Two trees → layer ([`compare`])
//!
//! containerd's `fs.Changes` double walk, simplified: both trees are walked in the same sorted
//! order; a name only on the left becomes a whiteout, a name only on the right an addition
//! (with all it holds), a name on both sides is compared by [`compare`]. A change of kind
//! replaces the node (a directory's left-side children are not visited: the replacement
//! removes them on apply).
//!
//! ## Metadata recorded
//!
//! Mode (with setuid, setgid, sticky), numeric owner, mtime, symlink and hard link targets,
//! device numbers, and the extended attributes [`keep_xattr`] keeps: all but `trusted.*`
//! (which appliers refuse: berth's and containerd's drop them, and they include overlayfs's
//! own state), `security.selinux` (a host label, not image content; containerd and Docker
//! record only `security.capability`) and, for a `userxattr` overlay, `user.overlay.*`.
//! containerd truncates mtimes to seconds; berth's driver does too unless asked to keep
//! nanoseconds (the writer itself records whatever the header says).

use std::collections::BTreeMap;

use bytes::Bytes;
use flate2::{Compress, Crc, FlushCompress, Status};
use zstd::zstd_safe::{self, CCtx, CParameter, InBuffer, OutBuffer};

use super::apply::TRUSTED_XATTR_PREFIX;
use super::decompress::Compression;
use super::path::{WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
use super::tar::{Device, EntryKind, Mtime, Xattr, BLOCK, MAX_EXTENSION};
use crate::digest::{Algorithm, Hasher};
use crate::op::is_canonical_path;
use crate::Digest;

/// The gzip level used unless [`LayerWriter::with_level`] says otherwise (Go's and zlib's
/// default).
pub const DEFAULT_GZIP_LEVEL: i32 = 6;
/// The zstd level used unless [`LayerWriter::with_level`] says otherwise (containerd's
/// default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// [`LayerWriter::poll`] hands out compressed output in chunks of at least this size (except
/// the last).
pub const OUTPUT_CHUNK: usize = 64 * 1024;
/// PAX record key prefix of an extended attribute.
pub const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// The SELinux label xattr, which layers do not carry.
pub const SELINUX_XATTR: &str = "security.selinux";

/// ustar `name` and `linkname` field length.
const NAME_LEN: usize = 100;
/// Largest value of a 7-digit octal field (mode, uid, gid, devmajor, devminor).
const MAX_OCTAL_7: u64 = 0o7_777_777;
/// Largest value of an 11-digit octal field (size, mtime).
const MAX_OCTAL_11: u64 = 0o77_777_777_777;
const ZEROS: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// The header of one entry to write.
///
/// Paths are canonical and relative ([`crate::op::is_canonical_path`]): no leading `/`, no
/// empty, `.` or `..` component. The writer adds the trailing `/` of directory names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The entry's path.
    pub path: String,
    /// What it is: [`EntryKind::Regular`], [`EntryKind::Directory`], [`EntryKind::Symlink`],
    /// [`EntryKind::HardLink`], [`EntryKind::CharDevice`], [`EntryKind::BlockDevice`] or
    /// [`EntryKind::Fifo`].
    pub kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky (higher bits are ignored).
    pub mode: u32,
    /// Owner user id.
    pub uid: u64,
    /// Owner group id.
    pub gid: u64,
    /// Content length of a regular file (0 for every other kind).
    pub size: u64,
    /// Modification time.
    pub mtime: Mtime,
    /// Target of a symlink (any bytes but NUL) or hard link (a canonical path); `None` for
    /// other kinds.
    pub link_target: Option<Vec<u8>>,
    /// Numbers of a device; `None` for other kinds.
    pub device: Option<Device>,
    /// Extended attributes (distinct names, without `=` or NUL), written in name order.
    pub xattrs: Vec<Xattr>,
}

impl Header {
    /// A header of `kind` at `path` with every other field zero or empty.
    #[must_use]
    pub fn new(kind: EntryKind, path: impl Into<String>) -> Self {
        Header {
            path: path.into(),
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: Mtime::default(),
            link_target: None,
            device: None,
            xattrs: Vec::new(),
        }
    }

    /// The whiteout entry that deletes `target` (a canonical path) from lower layers:
    /// `<dir>/.wh.<name>`, an empty regular file with mode 0, owner 0:0 and mtime 0, as
    /// containerd 2 writes it (so that a layer does not depend on when a file was deleted).
    #[must_use]
    pub fn whiteout(target: &str) -> Self {
        Header::new(EntryKind::Regular, whiteout_path(target))
    }

    /// The marker that makes `dir` (`None`: the layer root) opaque: `<dir>/.wh..wh..opq`, an
    /// empty regular file with mode 0, owner 0:0 and mtime 0.
    #[must_use]
    pub fn opaque(dir: Option<&str>) -> Self {
        Header::new(EntryKind::Regular, opaque_path(dir))
    }

    /// A hard link at `path` to `target`, with this header's metadata (containerd repeats the
    /// file's metadata on its links; appliers apply it to the shared inode).
    #[must_use]
    pub fn link_to(&self, path: impl Into<String>, target: &str) -> Self {
        Header {
            path: path.into(),
            kind: EntryKind::HardLink,
            size: 0,
            link_target: Some(target.as_bytes().to_vec()),
            device: None,
            ..self.clone()
        }
    }

    /// The header of `node` at `path`, with the xattrs [`keep_xattr`] keeps; `None` for a
    /// socket, which layers do not carry.
    #[must_use]
    pub fn from_node(path: &str, node: &Node, overlay: Option<OverlayXattrs>) -> Option<Self> {
        let kind = match node.kind {
            NodeKind::Regular => EntryKind::Regular,
            NodeKind::Directory => EntryKind::Directory,
            NodeKind::Symlink => EntryKind::Symlink,
            NodeKind::CharDevice => EntryKind::CharDevice,
            NodeKind::BlockDevice => EntryKind::BlockDevice,
            NodeKind::Fifo => EntryKind::Fifo,
            NodeKind::Socket => return None,
        };
        Some(Header {
            path: path.to_owned(),
            kind,
            mode: node.mode & 0o7777,
            uid: node.uid.into(),
            gid: node.gid.into(),
            size: if kind == EntryKind::Regular {
                node.size
            } else {
                0
            },
            mtime: node.mtime,
            link_target: if kind == EntryKind::Symlink {
                node.link_target.clone()
            } else {
                None
            },
            device: match kind {
                EntryKind::CharDevice | EntryKind::BlockDevice => {
                    Some(node.device.unwrap_or(Device { major: 0, minor: 0 }))
                }
                _ => None,
            },
            xattrs: node
                .xattrs
                .iter()
                .filter(|x| keep_xattr(&x.name, overlay))
                .cloned()
                .collect(),
        })
    }
}

/// `<dir>/.wh.<name>` for a canonical `target` `<dir>/<name>`.
#[must_use]
pub fn whiteout_path(target: &str) -> String {
    match target.rfind('/') {
        Some(i) => format!("{}/{WHITEOUT_PREFIX}{}", &target[..i], &target[i + 1..]),
        None => format!("{WHITEOUT_PREFIX}{target}"),
    }
}

/// `<dir>/.wh..wh..opq`, or `.wh..wh..opq` for the layer root.
#[must_use]
pub fn opaque_path(dir: Option<&str>) -> String {
    match dir {
        Some(d) => format!("{d}/{WHITEOUT_OPAQUE}"),
        None => WHITEOUT_OPAQUE.to_owned(),
    }
}

// ---- the rules ----

/// What a node of a directory tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A character device (overlay whiteouts are 0/0 ones).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A fifo.
    Fifo,
    /// A UNIX socket (not representable in a layer).
    Socket,
}

/// One node of a directory tree as a driver sees it: `lstat`, `readlink` and its xattrs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Length (meaningful for regular files and symlinks).
    pub size: u64,
    /// Modification time.
    pub mtime: Mtime,
    /// Device numbers, for devices.
    pub device: Option<Device>,
    /// The target, for symlinks.
    pub link_target: Option<Vec<u8>>,
    /// Every extended attribute, sorted by name.
    pub xattrs: Vec<Xattr>,
}

impl Node {
    /// The value of the xattr `name`, if set.
    #[must_use]
    pub fn xattr(&self, name: &str) -> Option<&[u8]> {
        self.xattrs
            .iter()
            .find(|x| x.name == name)
            .map(|x| &x.value[..])
    }
}

/// The xattr namespace overlayfs keeps its own attributes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverlayXattrs {
    /// `trusted.overlay.*` (the default).
    Trusted,
    /// `user.overlay.*` (an overlay mounted with `userxattr`, as in a user namespace).
    User,
}

impl OverlayXattrs {
    /// The namespace prefix, `trusted.overlay.` or `user.overlay.`.
    #[must_use]
    pub fn prefix(self) -> &'static str {
        match self {
            OverlayXattrs::Trusted => "trusted.overlay.",
            OverlayXattrs::User => "user.overlay.",
        }
    }

    /// The full name of overlayfs attribute `attr` (`opaque`, `redirect`, …).
    #[must_use]
    pub fn name(self, attr: &str) -> String {
        format!("{}{attr}", self.prefix())
    }
}

/// Whether an xattr goes into a layer (see the module docs): not `trusted.*`, not
/// `security.selinux`, and not overlayfs's own namespace when `overlay` is given.
#[must_use]
pub fn keep_xattr(name: &str, overlay: Option<OverlayXattrs>) -> bool {
    !name.starts_with(TRUSTED_XATTR_PREFIX)
        && name != SELINUX_XATTR
        && overlay.is_none_or(|o| !name.starts_with(o.prefix()))
}

/// What a node of an overlay upper directory means in a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpperNode {
    /// An overlay whiteout: the layer deletes this path ([`Header::whiteout`]).
    Whiteout,
    /// A directory, emitted; `opaque` hides its lower content ([`Header::opaque`] follows it).
    Dir {
        /// The directory is opaque.
        opaque: bool,
    },
    /// A regular file whose data is in a lower layer: at `redirect` (an absolute path from
    /// the layer root, or a name in the same directory) if set, else at the same path.
    Metacopy {
        /// The `overlay.redirect` value, if any.
        redirect: Option<Vec<u8>>,
    },
    /// A directory renamed with `redirect_dir=on`: its content comes from another lower path,
    /// which an upper directory alone cannot express.
    Redirected,
    /// A node emitted as it is.
    Plain,
    /// A node layers do not carry (a socket).
    Skip,
}

/// Classifies a node of an overlay upper directory (see the module docs).
#[must_use]
pub fn classify_upper(node: &Node, x: OverlayXattrs) -> UpperNode {
    match node.kind {
        NodeKind::CharDevice if node.device == Some(Device { major: 0, minor: 0 }) => {
            UpperNode::Whiteout
        }
        NodeKind::Regular if node.xattr(&x.name("whiteout")).is_some() => UpperNode::Whiteout,
        NodeKind::Regular => match node.xattr(&x.name("metacopy")) {
            Some(_) => UpperNode::Metacopy {
                redirect: node.xattr(&x.name("redirect")).map(<[u8]>::to_vec),
            },
            None => UpperNode::Plain,
        },
        NodeKind::Directory if node.xattr(&x.name("redirect")).is_some() => UpperNode::Redirected,
        NodeKind::Directory => UpperNode::Dir {
            // `x` marks a directory holding xattr whiteouts, not an opaque one
            opaque: node.xattr(&x.name("opaque")) == Some(b"y"),
        },
        NodeKind::Socket => UpperNode::Skip,
        _ => UpperNode::Plain,
    }
}

/// How a node present in both trees changed ([`compare`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// Nothing a layer records differs.
    Unchanged,
    /// Metadata (or a symlink's target, or a device's numbers) differs: emit the right node.
    Modified,
    /// The kind differs: emit the right node, which replaces the left one and all it holds.
    Replaced,
    /// Regular files alike in metadata, size and whole-second mtime: their contents decide
    /// (unless they are the same inode).
    CompareContent,
}

/// containerd's `sameFile`, with directory mtimes and symlink targets always compared:
///
/// * a different kind is [`Change::Replaced`];
/// * a different mode, owner, or set of kept xattrs ([`keep_xattr`]) is [`Change::Modified`];
/// * directories also compare their mtime, and nothing else;
/// * devices compare their numbers, symlinks their targets, other nodes their size and mtime
///   (seconds and nanoseconds);
/// * regular files equal in all that, non-empty, with a whole-second mtime on both sides
///   (truncated by a tar, so possibly equal by accident) must have their contents compared:
///   [`Change::CompareContent`]. A sub-second mtime is trusted, as containerd trusts it.
#[must_use]
pub fn compare(left: &Node, right: &Node) -> Change {
    if left.kind != right.kind {
        return Change::Replaced;
    }
    let kept = |n: &'_ Node| -> Vec<(String, Bytes)> {
        n.xattrs
            .iter()
            .filter(|x| keep_xattr(&x.name, None))
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect()
    };
    if left.mode != right.mode
        || left.uid != right.uid
        || left.gid != right.gid
        || kept(left) != kept(right)
        || left.mtime != right.mtime
    {
        return Change::Modified;
    }
    match right.kind {
        NodeKind::Directory => Change::Unchanged,
        NodeKind::CharDevice | NodeKind::BlockDevice if left.device != right.device => {
            Change::Modified
        }
        NodeKind::Symlink if left.link_target != right.link_target => Change::Modified,
        _ if left.size != right.size => Change::Modified,
        NodeKind::Regular if right.size > 0 && right.mtime.nanos == 0 => Change::CompareContent,
        _ => Change::Unchanged,
    }
}

/// A file's identity, for hard links: device and inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Inode {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

/// What [`HardLinks::changed`] decides for a changed node that has other links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linked {
    /// The first changed name of its inode: emit the node itself, then a hard link to it at
    /// each path of `also` (unchanged names of the inode seen earlier).
    First {
        /// Paths to emit as hard links to this one, in the order they were seen.
        also: Vec<String>,
    },
    /// The inode was emitted already: emit a hard link to this path instead.
    LinkTo(String),
}

/// containerd's hard link bookkeeping for a layer (by inode, for non-directories whose link
/// count is above 1): the first changed name of an inode carries its content, later names
/// (changed or not) link to it, and unchanged names seen before it are linked after it, so
/// that the links of the right tree survive in the applied layer.
#[derive(Debug, Default, Clone)]
pub struct HardLinks {
    /// Inode → the path its content was emitted at.
    sources: BTreeMap<Inode, String>,
    /// Inode → unchanged names seen before any changed one.
    pending: BTreeMap<Inode, Vec<String>>,
}

impl HardLinks {
    /// Bookkeeping only, nothing seen yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A changed (added or modified) node at `path` with other links.
    pub fn changed(&mut self, inode: Inode, path: &str) -> Linked {
        if let Some(src) = self.sources.get(&inode) {
            return Linked::LinkTo(src.clone());
        }
        self.sources.insert(inode, path.to_owned());
        Linked::First {
            also: self.pending.remove(&inode).unwrap_or_default(),
        }
    }

    /// An unchanged node at `path` with other links: `Some(target)` if it must be emitted as
    /// a hard link to `target` (its inode was emitted), else `None` (remembered, in case a
    /// later name of the inode changed).
    pub fn unchanged(&mut self, inode: Inode, path: &str) -> Option<String> {
        if let Some(src) = self.sources.get(&inode) {
            return Some(src.clone());
        }
        self.pending.entry(inode).or_default().push(path.to_owned());
        None
    }
}

// ---- the writer ----

/// Why an entry could not be written, or the layer could not be finished.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The header cannot be written as given (nothing was written).
    #[error("tar entry {path:?}: {reason}")]
    BadHeader {
        /// The entry's path.
        path: String,
        /// What is wrong: a non-canonical path, a missing or bad link target, a size on a
        /// non-regular entry, a bad xattr name, an extended header over 1 MiB, ….
        reason: &'static str,
    },
    /// A new entry, or the end, came before the current file's content was complete.
    #[error("tar entry {path:?}: {left} content bytes still expected")]
    DataMissing {
        /// The file being written.
        path: String,
        /// Bytes still expected.
        left: u64,
    },
    /// More content than the current entry's size (or content with no file open).
    #[error("tar entry {path:?}: {given} content bytes given, only {left} expected")]
    DataOverflow {
        /// The file being written (empty if none).
        path: String,
        /// Bytes given in this call.
        given: u64,
        /// Bytes still expected.
        left: u64,
    },
    /// The compressor failed (its state could not be allocated, or it reported an error).
    /// Latched: the writer is unusable.
    #[error("{codec:?} compression: {reason}")]
    Codec {
        /// The codec.
        codec: Compression,
        /// What the codec said.
        reason: String,
    },
    /// `entry`, `data` or `finish` after `finish`.
    #[error("layer writer already finished")]
    Finished,
}

/// What [`LayerWriter::finish`] reports about the layer written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// The codec.
    pub compression: Compression,
    /// sha256 of the uncompressed tar: the diff ID (`containerd.io/uncompressed`).
    pub diff_id: Digest,
    /// sha256 of the blob as written (equals `diff_id` for [`Compression::None`]).
    pub digest: Digest,
    /// Bytes of the blob.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Entries written (whiteouts and opaque markers included, PAX headers not).
    pub entries: u64,
}

enum Encoder {
    None,
    Gzip {
        deflate: Box<Compress>,
        crc: Crc,
    },
    Zstd(Box<CCtx<'static>>),
    /// The state could not be allocated; the latched error says so.
    Broken,
}

enum State {
    /// Between entries.
    Idle,
    /// A regular file's content is expected.
    File { path: String, left: u64, pad: usize },
    /// Finished; `poll` hands out what is left.
    Finished,
}

/// The layer-writing machine: tar entries in, compressed layer bytes out (see the module
/// docs).
///
/// Protocol: [`LayerWriter::entry`] for each entry, followed for a regular file by
/// [`LayerWriter::data`] until its `size` bytes are given (the entry then ends by itself);
/// drain [`LayerWriter::poll`] whenever convenient (it hands out output in chunks of at least
/// [`OUTPUT_CHUNK`]); [`LayerWriter::finish`], then drain `poll` to the end. A refused call
/// changes nothing, except a codec failure, which is latched.
pub struct LayerWriter {
    compression: Compression,
    encoder: Encoder,
    tar_hash: Hasher,
    tar_len: u64,
    blob_hash: Hasher,
    blob_len: u64,
    /// Encoded bytes not yet handed out; the first `hashed` of them are in `blob_hash`.
    out: Vec<u8>,
    hashed: usize,
    state: State,
    entries: u64,
    error: Option<WriteError>,
}

impl std::fmt::Debug for LayerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerWriter")
            .field("compression", &self.compression)
            .field("tar_len", &self.tar_len)
            .field("blob_len", &self.blob_len)
            .field("entries", &self.entries)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl LayerWriter {
    /// A writer producing a `compression` blob at the codec's default level
    /// ([`DEFAULT_GZIP_LEVEL`], [`DEFAULT_ZSTD_LEVEL`]).
    #[must_use]
    pub fn new(compression: Compression) -> Self {
        let level = match compression {
            Compression::Zstd => DEFAULT_ZSTD_LEVEL,
            _ => DEFAULT_GZIP_LEVEL,
        };
        Self::build(compression, level)
    }

    /// Sets the compression level (builder style, before any entry): gzip 0-9 (0 stores),
    /// zstd as libzstd accepts (1-22, negative for faster); out-of-range levels are clamped.
    /// Ignored for [`Compression::None`].
    #[must_use]
    pub fn with_level(self, level: i32) -> Self {
        if self.tar_len > 0 || self.error.is_some() {
            return self;
        }
        Self::build(self.compression, level)
    }

    fn build(compression: Compression, level: i32) -> Self {
        let mut error = None;
        let mut out = Vec::with_capacity(2 * OUTPUT_CHUNK);
        let encoder = match compression {
            Compression::None => Encoder::None,
            Compression::Gzip => {
                let level = level.clamp(0, 9) as u32;
                // RFC 1952 header: no name, no mtime, XFL as zlib sets it, OS 255 (unknown)
                let xfl = match level {
                    9 => 2,
                    1 => 4,
                    _ => 0,
                };
                out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]);
                Encoder::Gzip {
                    deflate: Box::new(Compress::new(flate2::Compression::new(level), false)),
                    crc: Crc::new(),
                }
            }
            Compression::Zstd => {
                let made = CCtx::try_create().and_then(|mut c| {
                    let level = level.clamp(zstd_safe::min_c_level(), zstd_safe::max_c_level());
                    c.set_parameter(CParameter::CompressionLevel(level)).ok()?;
                    c.set_parameter(CParameter::ChecksumFlag(true)).ok()?;
                    Some(c)
                });
                match made {
                    Some(c) => Encoder::Zstd(Box::new(c)),
                    None => {
                        error = Some(WriteError::Codec {
                            codec: compression,
                            reason: "cannot create a compression context".into(),
                        });
                        Encoder::Broken
                    }
                }
            }
        };
        LayerWriter {
            compression,
            encoder,
            tar_hash: Hasher::new(Algorithm::Sha256),
            tar_len: 0,
            blob_hash: Hasher::new(Algorithm::Sha256),
            blob_len: 0,
            out,
            hashed: 0,
            state: State::Idle,
            entries: 0,
            error,
        }
    }

    /// The codec.
    #[must_use]
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Entries written so far.
    #[must_use]
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Bytes of tar written so far.
    #[must_use]
    pub fn uncompressed_len(&self) -> u64 {
        self.tar_len
    }

    /// Writes an entry's header. A regular file's content follows with [`LayerWriter::data`]
    /// (the entry ends once `size` bytes are in); other entries are complete at once.
    pub fn entry(&mut self, header: &Header) -> Result<(), WriteError> {
        self.check()?;
        if let State::File { path, left, .. } = &self.state {
            return Err(WriteError::DataMissing {
                path: path.clone(),
                left: *left,
            });
        }
        let bytes = encode_header(header)?;
        self.emit(&bytes)?;
        self.entries += 1;
        if header.kind == EntryKind::Regular && header.size > 0 {
            self.state = State::File {
                path: header.path.clone(),
                left: header.size,
                pad: padding(header.size),
            };
        }
        Ok(())
    }

    /// The next bytes of the current regular file's content.
    pub fn data(&mut self, data: &[u8]) -> Result<(), WriteError> {
        self.check()?;
        if data.is_empty() {
            return Ok(());
        }
        let (path, left, pad) = match &self.state {
            State::File { path, left, pad } => (path, *left, *pad),
            _ => {
                return Err(WriteError::DataOverflow {
                    path: String::new(),
                    given: data.len() as u64,
                    left: 0,
                })
            }
        };
        if data.len() as u64 > left {
            return Err(WriteError::DataOverflow {
                path: path.clone(),
                given: data.len() as u64,
                left,
            });
        }
        self.emit(data)?;
        let left = left - data.len() as u64;
        if left == 0 {
            self.state = State::Idle;
            self.emit(&ZEROS[..pad])?;
        } else if let State::File { left: l, .. } = &mut self.state {
            *l = left;
        }
        Ok(())
    }

    /// Compressed output ready to be written out, in order: at least [`OUTPUT_CHUNK`] bytes,
    /// or whatever is left once finished. `None` when nothing (or too little) is ready.
    pub fn poll(&mut self) -> Option<Bytes> {
        let finished = matches!(self.state, State::Finished);
        if self.out.is_empty() || (!finished && self.out.len() < OUTPUT_CHUNK) {
            return None;
        }
        self.hash_out();
        self.hashed = 0;
        let next = Vec::with_capacity(if finished { 0 } else { 2 * OUTPUT_CHUNK });
        Some(Bytes::from(std::mem::replace(&mut self.out, next)))
    }

    /// Ends the archive (two zero blocks) and the compressed stream, and reports the layer's
    /// digests and sizes; then drain [`LayerWriter::poll`] for the last bytes.
    pub fn finish(&mut self) -> Result<WriteSummary, WriteError> {
        self.check()?;
        if let State::File { path, left, .. } = &self.state {
            return Err(WriteError::DataMissing {
                path: path.clone(),
                left: *left,
            });
        }
        self.emit(&ZEROS)?;
        let r = self.end_stream();
        self.latch(r)?;
        self.hash_out();
        self.state = State::Finished;
        let diff_id = self.tar_hash.digest();
        Ok(WriteSummary {
            compression: self.compression,
            diff_id,
            digest: match self.compression {
                Compression::None => diff_id,
                _ => self.blob_hash.digest(),
            },
            size: self.blob_len,
            uncompressed_size: self.tar_len,
            entries: self.entries,
        })
    }

    fn check(&self) -> Result<(), WriteError> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None if matches!(self.state, State::Finished) => Err(WriteError::Finished),
            None => Ok(()),
        }
    }

    fn latch<T>(&mut self, r: Result<T, WriteError>) -> Result<T, WriteError> {
        if let Err(e) = &r {
            self.error = Some(e.clone());
        }
        r
    }

    /// Hashes the output not yet hashed.
    fn hash_out(&mut self) {
        if self.compression != Compression::None {
            self.blob_hash.update(&self.out[self.hashed..]);
        }
        self.blob_len += (self.out.len() - self.hashed) as u64;
        self.hashed = self.out.len();
    }

    /// Appends tar bytes: hashed, then encoded into `out`.
    fn emit(&mut self, tar: &[u8]) -> Result<(), WriteError> {
        if tar.is_empty() {
            return Ok(());
        }
        self.tar_hash.update(tar);
        self.tar_len += tar.len() as u64;
        let r = self.encode(tar);
        self.latch(r)
    }

    fn encode(&mut self, mut input: &[u8]) -> Result<(), WriteError> {
        let codec = self.compression;
        let fail = |reason: String| WriteError::Codec { codec, reason };
        match &mut self.encoder {
            Encoder::None => self.out.extend_from_slice(input),
            Encoder::Gzip { deflate, crc } => {
                crc.update(input);
                while !input.is_empty() {
                    reserve(&mut self.out);
                    let before = deflate.total_in();
                    deflate
                        .compress_vec(input, &mut self.out, FlushCompress::None)
                        .map_err(|e| fail(e.to_string()))?;
                    input = &input[(deflate.total_in() - before) as usize..];
                }
            }
            Encoder::Zstd(c) => {
                let mut inb = InBuffer::around(input);
                while inb.pos() < input.len() {
                    reserve(&mut self.out);
                    let pos = self.out.len();
                    let mut outb = OutBuffer::around_pos(&mut self.out, pos);
                    c.compress_stream2(
                        &mut outb,
                        &mut inb,
                        zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_continue,
                    )
                    .map_err(|code| fail(zstd_safe::get_error_name(code).to_owned()))?;
                }
            }
            Encoder::Broken => return Err(fail("no compression context".into())),
        }
        Ok(())
    }

    fn end_stream(&mut self) -> Result<(), WriteError> {
        let codec = self.compression;
        let fail = |reason: String| WriteError::Codec { codec, reason };
        match &mut self.encoder {
            Encoder::None => {}
            Encoder::Gzip { deflate, crc } => {
                loop {
                    reserve(&mut self.out);
                    let status = deflate
                        .compress_vec(&[], &mut self.out, FlushCompress::Finish)
                        .map_err(|e| fail(e.to_string()))?;
                    if status == Status::StreamEnd {
                        break;
                    }
                }
                self.out.extend_from_slice(&crc.sum().to_le_bytes());
                self.out.extend_from_slice(&crc.amount().to_le_bytes());
            }
            Encoder::Zstd(c) => loop {
                reserve(&mut self.out);
                let pos = self.out.len();
                let mut outb = OutBuffer::around_pos(&mut self.out, pos);
                let left = c
                    .end_stream(&mut outb)
                    .map_err(|code| fail(zstd_safe::get_error_name(code).to_owned()))?;
                if left == 0 {
                    break;
                }
            },
            Encoder::Broken => return Err(fail("no compression context".into())),
        }
        Ok(())
    }
}

/// Leaves room for a codec call to make progress.
fn reserve(out: &mut Vec<u8>) {
    if out.capacity() - out.len() < OUTPUT_CHUNK / 2 {
        out.reserve(OUTPUT_CHUNK);
    }
}

fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

// ---- header encoding ----

/// The tar bytes of one entry's header: a PAX header with its records if needed, then the
/// ustar header block.
fn encode_header(h: &Header) -> Result<Vec<u8>, WriteError> {
    let bad = |reason| WriteError::BadHeader {
        path: h.path.clone(),
        reason,
    };
    if !is_canonical_path(&h.path) || h.path.contains('\0') {
        return Err(bad("path is not canonical"));
    }
    let typeflag = match h.kind {
        EntryKind::Regular => b'0',
        EntryKind::HardLink => b'1',
        EntryKind::Symlink => b'2',
        EntryKind::CharDevice => b'3',
        EntryKind::BlockDevice => b'4',
        EntryKind::Directory => b'5',
        EntryKind::Fifo => b'6',
        _ => return Err(bad("unsupported entry kind")),
    };
    let link: Option<&[u8]> = match (h.kind, h.link_target.as_deref()) {
        (EntryKind::Symlink, Some(t)) => {
            if t.is_empty() || t.contains(&0) {
                return Err(bad("symlink target is empty or contains NUL"));
            }
            Some(t)
        }
        (EntryKind::HardLink, Some(t)) => {
            let ok = std::str::from_utf8(t)
                .is_ok_and(|t| is_canonical_path(t) && !t.contains('\0') && t != h.path);
            if !ok {
                return Err(bad(
                    "hard link target is not a canonical path to another entry",
                ));
            }
            Some(t)
        }
        (EntryKind::Symlink | EntryKind::HardLink, None) => {
            return Err(bad("link without a target"))
        }
        (_, Some(_)) => return Err(bad("link target on an entry that is not a link")),
        (_, None) => None,
    };
    let device = match (h.kind, h.device) {
        (EntryKind::CharDevice | EntryKind::BlockDevice, Some(d)) => Some(d),
        (EntryKind::CharDevice | EntryKind::BlockDevice, None) => {
            return Err(bad("device without numbers"))
        }
        (_, Some(_)) => return Err(bad("device numbers on an entry that is not a device")),
        (_, None) => None,
    };
    if h.kind != EntryKind::Regular && h.size != 0 {
        return Err(bad("size on an entry that is not a regular file"));
    }
    if h.mtime.nanos >= 1_000_000_000 {
        return Err(bad("mtime nanoseconds out of range"));
    }

    let mut name = h.path.clone();
    if h.kind == EntryKind::Directory {
        name.push('/');
    }
    let mut records: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if name.len() > NAME_LEN || !name.is_ascii() {
        records.insert("path".into(), name.as_bytes().to_vec());
    }
    if let Some(l) = link {
        if l.len() > NAME_LEN || !l.is_ascii() {
            records.insert("linkpath".into(), l.to_vec());
        }
    }
    if h.size > MAX_OCTAL_11 {
        records.insert("size".into(), h.size.to_string().into_bytes());
    }
    if h.uid > MAX_OCTAL_7 {
        records.insert("uid".into(), h.uid.to_string().into_bytes());
    }
    if h.gid > MAX_OCTAL_7 {
        records.insert("gid".into(), h.gid.to_string().into_bytes());
    }
    let mtime_octal = u64::try_from(h.mtime.secs)
        .ok()
        .filter(|s| *s <= MAX_OCTAL_11);
    if mtime_octal.is_none() || h.mtime.nanos != 0 {
        records.insert("mtime".into(), pax_time(h.mtime).into_bytes());
    }
    for x in &h.xattrs {
        if x.name.is_empty() || x.name.contains(['=', '\0']) {
            return Err(bad("xattr name is empty or contains '=' or NUL"));
        }
        let key = format!("{PAX_XATTR_PREFIX}{}", x.name);
        if records.insert(key, x.value.to_vec()).is_some() {
            return Err(bad("duplicate xattr"));
        }
    }

    let mut out = Vec::with_capacity(BLOCK);
    if !records.is_empty() {
        let mut body = Vec::new();
        for (k, v) in &records {
            pax_record(&mut body, k, v);
        }
        if body.len() as u64 > MAX_EXTENSION {
            return Err(bad("extended header larger than 1 MiB"));
        }
        let mut b = [0u8; BLOCK];
        put_str(&mut b[0..100], &pax_header_name(&name));
        put_octal(&mut b[100..108], 0);
        put_octal(&mut b[108..116], 0);
        put_octal(&mut b[116..124], 0);
        put_octal(&mut b[124..136], body.len() as u64);
        put_octal(&mut b[136..148], 0);
        b[156] = b'x';
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        set_checksum(&mut b);
        out.extend_from_slice(&b);
        out.extend_from_slice(&body);
        out.resize(out.len() + padding(body.len() as u64), 0);
    }

    let mut b = [0u8; BLOCK];
    put_str(&mut b[0..100], &ascii_prefix(name.as_bytes(), NAME_LEN));
    put_octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    put_octal(
        &mut b[108..116],
        if h.uid > MAX_OCTAL_7 { 0 } else { h.uid },
    );
    put_octal(
        &mut b[116..124],
        if h.gid > MAX_OCTAL_7 { 0 } else { h.gid },
    );
    put_octal(
        &mut b[124..136],
        if h.size > MAX_OCTAL_11 { 0 } else { h.size },
    );
    put_octal(&mut b[136..148], mtime_octal.unwrap_or(0));
    b[156] = typeflag;
    if let Some(l) = link {
        put_str(&mut b[157..257], &ascii_prefix(l, NAME_LEN));
    }
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    let d = device.unwrap_or(Device { major: 0, minor: 0 });
    put_numeric(&mut b[329..337], d.major.into());
    put_numeric(&mut b[337..345], d.minor.into());
    set_checksum(&mut b);
    out.extend_from_slice(&b);
    Ok(out)
}

/// Go's name for a PAX header: `<dir>/PaxHeaders.0/<name>`, ASCII, at most 100 bytes.
fn pax_header_name(name: &str) -> Vec<u8> {
    // path.Split keeps the trailing slash of a directory name in `dir`
    let (dir, file) = match name.rfind('/') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => ("", name),
    };
    let mut p = String::new();
    if !dir.is_empty() {
        p.push_str(dir);
        p.push('/');
    }
    p.push_str("PaxHeaders.0");
    if !file.is_empty() {
        p.push('/');
        p.push_str(file);
    }
    let mut v = ascii_prefix(p.as_bytes(), NAME_LEN);
    while v.last() == Some(&b'/') {
        v.pop();
    }
    v
}

/// The ASCII bytes of `s` (others dropped, as Go's `toASCII`), at most `max` of them.
fn ascii_prefix(s: &[u8], max: usize) -> Vec<u8> {
    s.iter().copied().filter(u8::is_ascii).take(max).collect()
}

fn put_str(field: &mut [u8], s: &[u8]) {
    field[..s.len()].copy_from_slice(s);
}

/// Zero-padded octal in all but the last byte, then NUL. The value must fit.
fn put_octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// Octal if it fits, else GNU base-256 (big-endian, high bit of the first byte set).
fn put_numeric(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    if v < 1 << (3 * digits) {
        put_octal(field, v);
    } else {
        field.fill(0);
        let n = field.len();
        let be = v.to_be_bytes();
        let take = be.len().min(n - 1);
        field[n - take..].copy_from_slice(&be[be.len() - take..]);
        field[0] = 0x80;
    }
}

fn set_checksum(b: &mut [u8; BLOCK]) {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    // six digits, NUL, space (what Go and GNU tar write)
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

/// Appends one PAX record, `"<len> <key>=<value>\n"`, `len` counting the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A PAX time: `[-]secs[.frac]`, the fraction without trailing zeros.
fn pax_time(t: Mtime) -> String {
    const NS: i128 = 1_000_000_000;
    let total = i128::from(t.secs) * NS + i128::from(t.nanos);
    let (sign, abs) = if total < 0 {
        ("-", -total)
    } else {
        ("", total)
    };
    let (secs, frac) = (abs / NS, abs % NS);
    if frac == 0 {
        return format!("{sign}{secs}");
    }
    let frac = format!("{frac:09}");
    format!("{sign}{secs}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::apply::{Apply, ApplyMode, Step};
    use crate::archive::{Decoder, Entry, TarEvent, TarParser};

    /// Writes `entries` (header, content) and returns the blob and summary, draining `poll`
    /// after every call.
    fn write(
        compression: Compression,
        entries: &[(Header, Vec<u8>)],
    ) -> (Vec<u8>, WriteSummary, Vec<usize>) {
        let mut w = LayerWriter::new(compression);
        let mut blob = Vec::new();
        let mut chunks = Vec::new();
        let mut drain = |w: &mut LayerWriter, blob: &mut Vec<u8>| {
            while let Some(c) = w.poll() {
                chunks.push(c.len());
                blob.extend_from_slice(&c);
            }
        };
        for (h, data) in entries {
            w.entry(h).unwrap();
            for piece in data.chunks(1000) {
                w.data(piece).unwrap();
                drain(&mut w, &mut blob);
            }
            drain(&mut w, &mut blob);
        }
        let s = w.finish().unwrap();
        drain(&mut w, &mut blob);
        assert!(w.poll().is_none());
        (blob, s, chunks)
    }

    fn decode(blob: &[u8]) -> (Vec<u8>, Digest) {
        let mut d = Decoder::new(Compression::sniff(blob).unwrap_or(Compression::None));
        d.push_slice(blob).unwrap();
        let mut tar = Vec::new();
        while let Some(b) = d.poll().unwrap() {
            tar.extend_from_slice(&b);
        }
        (tar, d.finish().unwrap().diff_id)
    }

    fn parse(tar: &[u8]) -> Vec<(Entry, Vec<u8>)> {
        let mut p = TarParser::new();
        p.push_slice(tar).unwrap();
        let mut out: Vec<(Entry, Vec<u8>)> = Vec::new();
        while let Some(ev) = p.poll().unwrap() {
            match ev {
                TarEvent::Entry(e) => out.push((e, Vec::new())),
                TarEvent::Data(d) => out.last_mut().unwrap().1.extend_from_slice(&d),
                TarEvent::EntryEnd | TarEvent::End => {}
            }
        }
        let s = p.finish().unwrap();
        assert_eq!(s.trailing, 0, "no record padding after the marker");
        out
    }

    fn file(path: &str, data: &[u8]) -> (Header, Vec<u8>) {
        let mut h = Header::new(EntryKind::Regular, path);
        h.mode = 0o644;
        h.uid = 1000;
        h.gid = 1000;
        h.size = data.len() as u64;
        h.mtime = Mtime {
            secs: 1_700_000_000,
            nanos: 0,
        };
        (h, data.to_vec())
    }

    fn header_only(kind: EntryKind, path: &str) -> (Header, Vec<u8>) {
        let mut h = Header::new(kind, path);
        h.mode = 0o755;
        h.mtime.secs = 1_600_000_000;
        (h, Vec::new())
    }

    /// Every field the writer takes comes back out of the parser.
    fn assert_same(h: &Header, e: &Entry) {
        let mut want = h.path.clone().into_bytes();
        if h.kind == EntryKind::Directory {
            want.push(b'/');
        }
        assert_eq!(e.path, want);
        assert_eq!(e.kind, h.kind, "{}", h.path);
        assert_eq!(e.mode, h.mode & 0o7777);
        assert_eq!((e.uid, e.gid), (h.uid, h.gid));
        assert_eq!(e.size, h.size);
        assert_eq!(e.mtime, h.mtime);
        assert_eq!(e.link_target, h.link_target);
        assert_eq!(e.device, h.device);
        let mut xs = h.xattrs.clone();
        xs.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(e.xattrs, xs);
    }

    fn sample() -> Vec<(Header, Vec<u8>)> {
        let long_dir = "d".repeat(120);
        let mut v = vec![
            header_only(EntryKind::Directory, "etc"),
            file("etc/motd", b"hello"),
            file("etc/empty", b""),
            file("etc/big", &vec![7u8; 70_000]),
            header_only(EntryKind::Directory, &long_dir),
            file(&format!("{long_dir}/{}", "f".repeat(200)), b"long name"),
            file("caf\u{e9}/\u{1F600}", b"non-ASCII name"),
            header_only(EntryKind::Fifo, "fifo"),
        ];
        let mut sym = Header::new(EntryKind::Symlink, "etc/link");
        sym.link_target = Some(b"../usr/lib/os-release".to_vec());
        sym.mode = 0o777;
        v.push((sym, vec![]));
        let mut sym = Header::new(EntryKind::Symlink, "longlink");
        sym.link_target = Some([b"x/".repeat(80), b"\xff\xfe".to_vec()].concat());
        v.push((sym, vec![]));
        let mut hl = v[1].0.link_to("etc/motd2", "etc/motd");
        hl.mode = 0o4755;
        v.push((hl, vec![]));
        let mut dev = Header::new(EntryKind::CharDevice, "dev/null");
        dev.device = Some(Device { major: 1, minor: 3 });
        dev.mode = 0o666;
        v.push((dev, vec![]));
        let mut dev = Header::new(EntryKind::BlockDevice, "dev/sda");
        dev.device = Some(Device {
            major: 8,
            minor: 1_048_575,
        });
        v.push((dev, vec![]));
        let (mut h, d) = file("owners", b"x");
        h.uid = 4_000_000_000;
        h.gid = 2_097_152;
        h.mtime = Mtime {
            secs: 1_700_000_000,
            nanos: 123_456_789,
        };
        h.xattrs = vec![
            Xattr {
                name: "user.z".into(),
                value: Bytes::from_static(b"last"),
            },
            Xattr {
                name: "security.capability".into(),
                value: Bytes::from_static(b"\x01\0\0\x02\n=\0\n"),
            },
            Xattr {
                name: "user.empty".into(),
                value: Bytes::new(),
            },
        ];
        v.push((h, d));
        let (mut h, d) = file("old", b"");
        h.mtime = Mtime {
            secs: -2,
            nanos: 500_000_000,
        };
        v.push((h, d));
        let (mut h, d) = file("future", b"");
        h.mtime.secs = 1 << 40;
        v.push((h, d));
        v.push((Header::whiteout("etc/gone"), vec![]));
        v.push((Header::opaque(Some("etc")), vec![]));
        v.push((Header::opaque(None), vec![]));
        v
    }

    #[test]
    fn round_trips_through_the_parser_in_every_codec() {
        let entries = sample();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let (blob, s, _) = write(c, &entries);
            assert_eq!(Compression::sniff(&blob).unwrap_or(Compression::None), c);
            assert_eq!(s.compression, c);
            assert_eq!(s.size, blob.len() as u64);
            assert_eq!(s.digest, Digest::sha256(&blob));
            let (tar, diff_id) = decode(&blob);
            assert_eq!(s.diff_id, diff_id);
            assert_eq!(s.diff_id, Digest::sha256(&tar));
            assert_eq!(s.uncompressed_size, tar.len() as u64);
            assert_eq!(s.entries, entries.len() as u64);
            assert_eq!(tar.len() % BLOCK, 0);
            assert_eq!(&tar[tar.len() - 1024..], &[0u8; 1024][..]);
            let parsed = parse(&tar);
            assert_eq!(parsed.len(), entries.len());
            for ((h, data), (e, got)) in entries.iter().zip(&parsed) {
                assert_same(h, e);
                assert_eq!(data, got);
            }
        }
    }

    #[test]
    fn reads_back_with_the_tar_crate() {
        let entries = sample();
        let (blob, _, _) = write(Compression::None, &entries);
        let mut a = tar::Archive::new(&blob[..]);
        let mut seen = 0;
        for (e, (h, data)) in a.entries().unwrap().zip(&entries) {
            let mut e = e.unwrap();
            let path = e.path_bytes().into_owned();
            let want = h.path.trim_end_matches('/');
            assert_eq!(String::from_utf8_lossy(&path).trim_end_matches('/'), want);
            assert_eq!(e.header().mode().unwrap(), h.mode & 0o7777);
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut got).unwrap();
            assert_eq!(&got, data);
            seen += 1;
        }
        assert_eq!(seen, entries.len());
    }

    #[test]
    fn ustar_fields_are_what_go_writes() {
        let (blob, _, _) = write(Compression::None, &[file("etc/motd", b"hello")]);
        let b = &blob[..BLOCK];
        assert_eq!(&b[..9], b"etc/motd\0");
        assert_eq!(&b[100..108], b"0000644\0");
        assert_eq!(&b[108..116], b"0001750\0");
        assert_eq!(&b[124..136], b"00000000005\0");
        assert_eq!(&b[136..148], format!("{:011o}\0", 1_700_000_000).as_bytes());
        assert_eq!(b[154..156], [0, b' ']);
        assert_eq!(b[156], b'0');
        assert_eq!(&b[257..265], b"ustar\x0000");
        assert_eq!(&b[265..329], &[0u8; 64][..], "no uname/gname");
        assert_eq!(&b[329..345], b"0000000\x000000000\0");
        assert_eq!(&blob[BLOCK..BLOCK + 5], b"hello");
        assert_eq!(blob.len(), 2 * BLOCK + 2 * BLOCK);

        // A long name gets a PAX header, named as Go names it.
        let long = format!("a/{}", "b".repeat(150));
        let (blob, _, _) = write(Compression::None, &[file(&long, b"")]);
        assert_eq!(blob[156], b'x');
        assert_eq!(&blob[..17], b"a/PaxHeaders.0/bb");
        assert_eq!(&blob[100..108], b"0000000\0");
        assert_eq!(blob[2 * BLOCK + 156], b'0');
        assert_eq!(&blob[2 * BLOCK..2 * BLOCK + 100], &long.as_bytes()[..100]);
        let body = format!("162 path={long}\n");
        assert_eq!(&blob[BLOCK..BLOCK + body.len()], body.as_bytes());
        let (blob, _, _) = write(
            Compression::None,
            &[header_only(EntryKind::Directory, &long)],
        );
        assert_eq!(&blob[..16], b"a/bbbbbbbbbbbbbb");
        assert_eq!(&blob[BLOCK..BLOCK + 10], b"163 path=a");
        assert_eq!(blob[2 * BLOCK + 156], b'5');

        // PAX times
        assert_eq!(pax_time(Mtime { secs: 5, nanos: 0 }), "5");
        assert_eq!(
            pax_time(Mtime {
                secs: 5,
                nanos: 500_000_000
            }),
            "5.5"
        );
        assert_eq!(pax_time(Mtime { secs: 0, nanos: 1 }), "0.000000001");
        assert_eq!(
            pax_time(Mtime {
                secs: -2,
                nanos: 500_000_000
            }),
            "-1.5"
        );
        assert_eq!(pax_time(Mtime { secs: -3, nanos: 0 }), "-3");
        // PAX record lengths that cross a power of ten
        for n in 0..200 {
            let mut out = Vec::new();
            pax_record(&mut out, "k", &vec![b'v'; n]);
            let sp = out.iter().position(|&c| c == b' ').unwrap();
            let len: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "{n}");
        }
    }

    #[test]
    fn output_is_deterministic_and_chunked() {
        let entries = sample();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let (a, sa, ca) = write(c, &entries);
            let (b, sb, cb) = write(c, &entries);
            assert_eq!(a, b);
            assert_eq!(sa, sb);
            assert_eq!(ca, cb);
            let (last, rest) = ca.split_last().unwrap();
            assert!(*last > 0);
            assert!(rest.iter().all(|&n| n >= OUTPUT_CHUNK), "{c:?} {ca:?}");
        }
        // Levels change the bytes, not the diff ID.
        let mut w = LayerWriter::new(Compression::Gzip).with_level(1);
        w.entry(&file("a", &[1u8; 10_000]).0).unwrap();
        w.data(&[1u8; 10_000]).unwrap();
        let fast = w.finish().unwrap();
        let (_, six, _) = write(Compression::Gzip, &[file("a", &[1u8; 10_000])]);
        assert_eq!(fast.diff_id, six.diff_id);
        assert_ne!(fast.digest, six.digest);
    }

    #[test]
    fn refuses_bad_input_without_changing_anything() {
        let mut w = LayerWriter::new(Compression::None);
        let bad_paths = ["", "/abs", "a/../b", "a//b", "./a", "a/", "a\0b"];
        for p in bad_paths {
            assert!(
                matches!(
                    w.entry(&Header::new(EntryKind::Regular, p)),
                    Err(WriteError::BadHeader { .. })
                ),
                "{p:?}"
            );
        }
        let mut h = Header::new(EntryKind::Symlink, "s");
        assert!(w.entry(&h).is_err());
        h.link_target = Some(b"a\0".to_vec());
        assert!(w.entry(&h).is_err());
        let mut h = Header::new(EntryKind::HardLink, "h");
        for t in [&b"../x"[..], b"h", b"", b"/x"] {
            h.link_target = Some(t.to_vec());
            assert!(w.entry(&h).is_err(), "{t:?}");
        }
        assert!(w.entry(&Header::new(EntryKind::CharDevice, "c")).is_err());
        assert!(w.entry(&Header::new(EntryKind::Other(b'V'), "v")).is_err());
        let mut h = Header::new(EntryKind::Directory, "d");
        h.size = 1;
        assert!(w.entry(&h).is_err());
        let mut h = Header::new(EntryKind::Regular, "f");
        h.xattrs = vec![
            Xattr {
                name: "user.a".into(),
                value: Bytes::new(),
            },
            Xattr {
                name: "user.a".into(),
                value: Bytes::new(),
            },
        ];
        assert!(w.entry(&h).is_err());
        h.xattrs = vec![Xattr {
            name: "user.a=b".into(),
            value: Bytes::new(),
        }];
        assert!(w.entry(&h).is_err());
        h.xattrs = vec![Xattr {
            name: "user.big".into(),
            value: Bytes::from(vec![0u8; 1 << 20]),
        }];
        assert!(w.entry(&h).is_err());
        assert_eq!(w.entries(), 0);
        assert_eq!(w.uncompressed_len(), 0);

        // content protocol
        assert!(matches!(
            w.data(b"x"),
            Err(WriteError::DataOverflow { left: 0, .. })
        ));
        w.entry(&file("f", b"abc").0).unwrap();
        assert!(matches!(
            w.entry(&file("g", b"").0),
            Err(WriteError::DataMissing { left: 3, .. })
        ));
        assert!(matches!(
            w.data(b"abcd"),
            Err(WriteError::DataOverflow {
                given: 4,
                left: 3,
                ..
            })
        ));
        w.data(b"ab").unwrap();
        assert!(matches!(
            w.finish(),
            Err(WriteError::DataMissing { left: 1, .. })
        ));
        w.data(b"c").unwrap();
        w.finish().unwrap();
        assert_eq!(w.finish(), Err(WriteError::Finished));
        assert_eq!(w.entry(&file("g", b"").0), Err(WriteError::Finished));
        let mut tar = Vec::new();
        while let Some(b) = w.poll() {
            tar.extend_from_slice(&b);
        }
        let parsed = parse(&tar);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].1, b"abc");
    }

    #[test]
    fn whiteout_and_opaque_names() {
        assert_eq!(whiteout_path("a"), ".wh.a");
        assert_eq!(whiteout_path("a/b/c"), "a/b/.wh.c");
        assert_eq!(opaque_path(None), ".wh..wh..opq");
        assert_eq!(opaque_path(Some("a/b")), "a/b/.wh..wh..opq");
        let w = Header::whiteout("x/y");
        assert_eq!(
            (w.kind, w.mode, w.uid, w.gid, w.size, w.mtime),
            (EntryKind::Regular, 0, 0, 0, 0, Mtime::default())
        );
    }

    /// The layer the writer makes is applied as intended by core's own Apply machine.
    #[test]
    fn applies_as_intended() {
        let entries = vec![
            header_only(EntryKind::Directory, "a"),
            (Header::opaque(Some("a")), vec![]),
            file("a/f", b"data"),
            (Header::whiteout("a/g"), vec![]),
            (Header::whiteout("h"), vec![]),
        ];
        let (blob, s, _) = write(Compression::Gzip, &entries);
        for mode in [ApplyMode::Overlay, ApplyMode::Native] {
            let mut a = Apply::new(mode, None).expect_diff_id(s.diff_id);
            a.push(Bytes::from(blob.clone())).unwrap();
            let mut steps = Vec::new();
            while let Some(st) = a.poll().unwrap() {
                steps.push(st);
            }
            let sum = a.finish().unwrap();
            while let Some(st) = a.poll().unwrap() {
                steps.push(st);
            }
            assert_eq!(sum.compressed, s.digest);
            assert!(matches!(&steps[0], Step::Mkdir { path, .. } if path == "a"));
            match mode {
                ApplyMode::Overlay => {
                    assert_eq!(
                        steps[1],
                        Step::Opaque {
                            dir: Some("a".into())
                        }
                    );
                    assert!(matches!(&steps[5], Step::Whiteout { path, .. } if path == "a/g"));
                    assert!(matches!(&steps[6], Step::Whiteout { path, .. } if path == "h"));
                }
                ApplyMode::Native => {
                    assert!(matches!(&steps[1], Step::ClearDir { dir: Some(d), .. } if d == "a"));
                    assert_eq!(steps[5], Step::RemoveAll { path: "a/g".into() });
                }
            }
        }
    }

    fn node(kind: NodeKind) -> Node {
        Node {
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: Mtime {
                secs: 100,
                nanos: 0,
            },
            device: None,
            link_target: None,
            xattrs: Vec::new(),
        }
    }

    fn xattr(name: &str, value: &'static [u8]) -> Xattr {
        Xattr {
            name: name.into(),
            value: Bytes::from_static(value),
        }
    }

    #[test]
    fn overlay_upper_rules() {
        let t = OverlayXattrs::Trusted;
        let u = OverlayXattrs::User;
        let mut wh = node(NodeKind::CharDevice);
        wh.device = Some(Device { major: 0, minor: 0 });
        assert_eq!(classify_upper(&wh, t), UpperNode::Whiteout);
        wh.device = Some(Device { major: 1, minor: 3 });
        assert_eq!(classify_upper(&wh, t), UpperNode::Plain);

        let mut d = node(NodeKind::Directory);
        assert_eq!(classify_upper(&d, t), UpperNode::Dir { opaque: false });
        d.xattrs = vec![xattr("trusted.overlay.opaque", b"y")];
        assert_eq!(classify_upper(&d, t), UpperNode::Dir { opaque: true });
        // the other namespace is plain user data
        assert_eq!(classify_upper(&d, u), UpperNode::Dir { opaque: false });
        d.xattrs = vec![xattr("user.overlay.opaque", b"y")];
        assert_eq!(classify_upper(&d, u), UpperNode::Dir { opaque: true });
        assert_eq!(classify_upper(&d, t), UpperNode::Dir { opaque: false });
        d.xattrs = vec![xattr("trusted.overlay.opaque", b"x")];
        assert_eq!(classify_upper(&d, t), UpperNode::Dir { opaque: false });
        d.xattrs = vec![xattr("trusted.overlay.redirect", b"/old")];
        assert_eq!(classify_upper(&d, t), UpperNode::Redirected);

        let mut f = node(NodeKind::Regular);
        assert_eq!(classify_upper(&f, t), UpperNode::Plain);
        f.xattrs = vec![xattr("trusted.overlay.whiteout", b"")];
        assert_eq!(classify_upper(&f, t), UpperNode::Whiteout);
        f.xattrs = vec![
            xattr("trusted.overlay.metacopy", b""),
            xattr("trusted.overlay.redirect", b"/a/b"),
        ];
        assert_eq!(
            classify_upper(&f, t),
            UpperNode::Metacopy {
                redirect: Some(b"/a/b".to_vec())
            }
        );
        assert_eq!(classify_upper(&node(NodeKind::Socket), t), UpperNode::Skip);

        // xattrs a layer keeps
        assert!(keep_xattr("user.x", Some(t)));
        assert!(keep_xattr("security.capability", Some(t)));
        assert!(!keep_xattr("trusted.overlay.opaque", Some(t)));
        assert!(!keep_xattr("trusted.other", None));
        assert!(!keep_xattr("security.selinux", None));
        assert!(keep_xattr("user.overlay.x", Some(t)));
        assert!(!keep_xattr("user.overlay.x", Some(u)));

        let mut f = node(NodeKind::Regular);
        f.xattrs = vec![
            xattr("trusted.overlay.origin", b"\0"),
            xattr("user.a", b"1"),
            xattr("security.selinux", b"l"),
        ];
        let h = Header::from_node("f", &f, Some(t)).unwrap();
        assert_eq!(h.xattrs, vec![xattr("user.a", b"1")]);
        assert_eq!(Header::from_node("s", &node(NodeKind::Socket), None), None);
    }

    #[test]
    fn comparison_rules() {
        let f = {
            let mut f = node(NodeKind::Regular);
            f.size = 10;
            f
        };
        assert_eq!(compare(&f, &f), Change::CompareContent);
        let mut g = f.clone();
        g.mtime.nanos = 5;
        assert_eq!(compare(&f, &g), Change::Modified);
        let mut f5 = f.clone();
        f5.mtime.nanos = 5;
        assert_eq!(
            compare(&f5, &g),
            Change::Unchanged,
            "sub-second mtimes are trusted"
        );
        let mut g = f.clone();
        g.size = 11;
        assert_eq!(compare(&f, &g), Change::Modified);
        let mut g = f.clone();
        g.uid = 1;
        assert_eq!(compare(&f, &g), Change::Modified);
        let mut g = f.clone();
        g.xattrs = vec![xattr("security.capability", b"c")];
        assert_eq!(compare(&f, &g), Change::Modified);
        g.xattrs = vec![xattr("security.selinux", b"c")];
        assert_eq!(compare(&f, &g), Change::CompareContent);
        let mut empty = f.clone();
        empty.size = 0;
        assert_eq!(compare(&empty, &empty), Change::Unchanged);
        assert_eq!(compare(&f, &node(NodeKind::Directory)), Change::Replaced);

        let d = node(NodeKind::Directory);
        let mut d2 = d.clone();
        d2.size = 4096 * 3;
        assert_eq!(compare(&d, &d2), Change::Unchanged);
        d2.mtime.secs += 1;
        assert_eq!(compare(&d, &d2), Change::Modified);

        let mut s = node(NodeKind::Symlink);
        s.link_target = Some(b"a".to_vec());
        let mut s2 = s.clone();
        s2.link_target = Some(b"b".to_vec());
        assert_eq!(compare(&s, &s2), Change::Modified);
        assert_eq!(compare(&s, &s), Change::Unchanged);

        let mut c = node(NodeKind::CharDevice);
        c.device = Some(Device { major: 1, minor: 3 });
        let mut c2 = c.clone();
        c2.device = Some(Device { major: 1, minor: 5 });
        assert_eq!(compare(&c, &c2), Change::Modified);
    }

    #[test]
    fn hard_link_bookkeeping() {
        let i = Inode { dev: 1, ino: 2 };
        let j = Inode { dev: 1, ino: 3 };
        let mut l = HardLinks::new();
        assert_eq!(l.unchanged(i, "a"), None);
        assert_eq!(l.unchanged(i, "b"), None);
        assert_eq!(
            l.changed(i, "c"),
            Linked::First {
                also: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(l.changed(i, "d"), Linked::LinkTo("c".into()));
        assert_eq!(l.unchanged(i, "e"), Some("c".into()));
        assert_eq!(l.changed(j, "x"), Linked::First { also: vec![] });
    }
}
