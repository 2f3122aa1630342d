//! Layer application, decided: a layer stream in, the filesystem [`Step`]s that apply it out.
//!
//! [`Apply`] owns the whole decision of what a layer does to a snapshot directory. It runs the
//! [`Decoder`] (gzip, zstd or none, sniffed or given), the [`TarParser`], [`classify`]s every
//! entry path, and turns each entry into a [`Step`] for a driver to execute beneath the
//! snapshot root. The driver decides nothing except how to perform a step safely (resolving
//! every path beneath the root, never following a final symlink).
//!
//! ```
//! use berth_core::archive::apply::{Apply, ApplyMode, Step};
//! use bytes::Bytes;
//!
//! # fn layer() -> Vec<u8> {
//! #     let mut b = tar::Builder::new(Vec::new());
//! #     let mut h = tar::Header::new_ustar();
//! #     h.set_entry_type(tar::EntryType::Directory);
//! #     h.set_size(0);
//! #     h.set_mode(0o755);
//! #     b.append_data(&mut h, "etc/", &b""[..]).unwrap();
//! #     let mut h = tar::Header::new_ustar();
//! #     h.set_size(5);
//! #     h.set_mode(0o644);
//! #     b.append_data(&mut h, "etc/motd", &b"hello"[..]).unwrap();
//! #     b.into_inner().unwrap()
//! # }
//! let blob = layer(); // an uncompressed layer here; gzip and zstd are sniffed the same way
//! let mut apply = Apply::new(ApplyMode::Overlay, None);
//! let mut steps = Vec::new();
//! for piece in blob.chunks(700) {
//!     apply.push(Bytes::copy_from_slice(piece)).unwrap();
//!     while let Some(step) = apply.poll().unwrap() {
//!         steps.push(step); // a driver performs it here
//!     }
//! }
//! let summary = apply.finish().unwrap();
//! while let Some(step) = apply.poll().unwrap() {
//!     steps.push(step); // the final `DirTimes`
//! }
//! assert!(matches!(&steps[0], Step::Mkdir { path, .. } if path == "etc"));
//! assert!(matches!(&steps[1], Step::File { path, size: 5, .. } if path == "etc/motd"));
//! assert!(matches!(&steps[2], Step::Data(d) if &d[..] == b"hello"));
//! assert!(matches!(&steps[3], Step::FileEnd));
//! assert!(matches!(&steps[4], Step::DirTimes(t) if t.len() == 1));
//! assert_eq!(summary.entries, 2);
//! assert_eq!(summary.diff_id, berth_core::Digest::sha256(&blob));
//! ```
//!
//! ## What each entry becomes (containerd's `archive.Apply`, `pkg/archive/tar.go`)
//!
//! * Entry paths are [`classify`]d: a leading `/` is dropped, `..` that climbs above the root
//!   refuses the layer ([`ApplyError::Path`]); the root itself (`.`, `/`) is skipped, as
//!   containerd skips entries that resolve to the root; `.wh..wh.*` whiteout metadata is
//!   skipped.
//! * A missing parent directory is created by the driver (mode 0755, owner of the process), as
//!   containerd's `mkparent` does, for every entry kind (whiteouts included).
//! * Every creating step **replaces** whatever is at its path (removing a directory with all it
//!   holds), except [`Step::Mkdir`] over an existing directory, which keeps the directory and
//!   its children and applies the new metadata (tar duplicates; in native mode, lower content).
//! * Metadata is applied in containerd's order: create, `lchown(uid, gid)`, xattrs (from PAX
//!   `SCHILY.xattr.*`), `chmod(mode)` (after chown, which clears setuid and setgid; never on a
//!   symlink), then `utimensat(mtime, AT_SYMLINK_NOFOLLOW)` with atime = mtime. Times before
//!   the epoch or past 2262 become the epoch (containerd's `boundTime`). Directory times are
//!   set last, in one [`Step::DirTimes`], because creating children changes them.
//! * Hard link metadata is applied to the linked inode, as containerd does.
//! * Whiteouts: in [`ApplyMode::Overlay`] `.wh.<name>` becomes a 0/0 character device at
//!   `<name>` owned like the whiteout entry, and `.wh..wh..opq` sets
//!   `trusted.overlay.opaque=y` on its directory. In [`ApplyMode::Native`] a whiteout removes
//!   its target and an opaque marker removes everything below its directory that this layer
//!   did not create ([`Step::ClearDir`]).
//!
//! ## Where berth deliberately differs
//!
//! * `..` escapes refuse the layer (containerd clamps them to the root), and so does a hard
//!   link whose target climbs above the root (containerd links to the root, which fails).
//! * `trusted.*` xattrs in a layer are dropped, as containerd drops them ("admin attributes from
//!   archive not supported"): among them are overlayfs's own (`trusted.overlay.*`: redirects,
//!   metacopy, origin, opaque), which a layer must not forge; the applier writes the opaque
//!   marker itself. `user.*` xattrs on symlinks, devices and fifos are dropped (the
//!   kernel refuses them; containerd tries, then ignores the `EPERM`).
//! * A native opaque directory keeps the directories that hold this layer's entries even when
//!   the layer has no entry for them (containerd's walk would delete an implicit parent with
//!   the entries below it).
//! * A tar without its end-of-archive marker is refused ([`TarError::MissingEnd`]): cut at an
//!   entry boundary, it would otherwise apply as a shorter layer. Go's reader tolerates it.
//! * aufs hard-link directories (`/.wh..wh.plnk`) are not extracted, so hard links into them
//!   fail as links to a missing target.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::decompress::{Compression, DecodeError, Decoder};
use super::path::{classify, normalize, LayerPath, PathError};
use super::tar::{Device, Entry, EntryKind, Mtime, TarError, TarEvent, TarParser, Xattr};
use crate::Digest;

/// The xattr that marks an overlayfs directory opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The namespace of overlayfs's own xattrs, which a layer may not set.
pub const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// Prefix of the xattrs a layer may not set (containerd refuses them too).
pub const TRUSTED_XATTR_PREFIX: &str = "trusted.";

/// How a layer's whiteouts are represented in the target directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApplyMode {
    /// The target is the fresh, empty upper directory of an overlayfs snapshot: whiteouts become
    /// 0/0 character devices and opaque directories get `trusted.overlay.opaque=y`.
    Overlay,
    /// The target is a full copy of the parent snapshot: whiteouts delete, and an opaque marker
    /// clears its directory's existing children.
    Native,
}

/// The metadata every created node gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification (and access) time, already bounded to what containerd sets.
    pub mtime: Mtime,
    /// Extended attributes to set, in name order (overlay-internal names removed).
    pub xattrs: Vec<Xattr>,
}

/// Character or block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// A character device.
    Char,
    /// A block device.
    Block,
}

/// One filesystem step, relative to the target directory. Paths are canonical (as
/// [`crate::op::is_canonical_path`] defines: relative, no `.`, `..` or empty components) but
/// may pass through symlinks the layer created: the driver resolves them beneath the root.
///
/// Unless stated otherwise, a creating step first creates missing parent directories and
/// replaces whatever is at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create a directory, or keep an existing directory (and its children), then apply
    /// `meta` except the times, which come with [`Step::DirTimes`].
    Mkdir {
        /// The directory.
        path: String,
        /// Its metadata.
        meta: Meta,
    },
    /// Create a regular file; its content follows as [`Step::Data`] pieces (`size` bytes in
    /// all) and [`Step::FileEnd`], after which `meta` is applied.
    File {
        /// The file.
        path: String,
        /// Its length.
        size: u64,
        /// Its metadata, applied at [`Step::FileEnd`].
        meta: Meta,
    },
    /// The next piece of the current file's content, in order.
    Data(Bytes),
    /// The current file is complete: apply its metadata and close it.
    FileEnd,
    /// Create a symbolic link. No chmod (Linux has no lchmod); xattrs and times apply to the
    /// link itself.
    Symlink {
        /// The link.
        path: String,
        /// What it points to, verbatim (never followed by the applier).
        target: Vec<u8>,
        /// Its metadata.
        meta: Meta,
    },
    /// Create a hard link to an existing node (not following a final symlink), then apply
    /// `meta` to the shared inode (no chmod if it is a symlink).
    HardLink {
        /// The new name.
        path: String,
        /// The existing node, canonical and beneath the root; its parent is resolved beneath
        /// the root and never created.
        target: String,
        /// Metadata for the shared inode.
        meta: Meta,
    },
    /// Create a device node.
    Device {
        /// The node.
        path: String,
        /// Character or block.
        kind: DeviceKind,
        /// Its numbers.
        device: Device,
        /// Its metadata.
        meta: Meta,
    },
    /// Create a fifo.
    Fifo {
        /// The fifo.
        path: String,
        /// Its metadata.
        meta: Meta,
    },
    /// Overlay mode: replace `path` with an overlayfs whiteout, a character device 0/0 with no
    /// permission bits, owned by `uid:gid`.
    Whiteout {
        /// The path whited out.
        path: String,
        /// Owner user id (the whiteout entry's).
        uid: u32,
        /// Owner group id.
        gid: u32,
    },
    /// Overlay mode: set [`OVERLAY_OPAQUE_XATTR`] = `y` on a directory, creating it if missing
    /// (with missing parents).
    Opaque {
        /// The directory; `None` for the target directory itself.
        dir: Option<String>,
    },
    /// Native mode: remove `path` and everything below it, if it exists (missing parents are
    /// created, as containerd does for every entry).
    RemoveAll {
        /// The path removed.
        path: String,
    },
    /// Native mode: remove everything below `dir` (created if missing) except the paths in
    /// `keep`; descend into kept directories and clear them the same way.
    ClearDir {
        /// The directory; `None` for the target directory itself.
        dir: Option<String>,
        /// Paths this layer created below `dir`, with their ancestors, sorted (full paths
        /// relative to the target, for binary search).
        keep: Vec<String>,
    },
    /// The last step: set these directories' times (atime = mtime), not following a final
    /// symlink; paths that are gone are skipped. Sorted by path.
    DirTimes(Vec<(String, Mtime)>),
}

/// What [`Apply::finish`] reports about a complete layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplySummary {
    /// The codec, given or sniffed.
    pub compression: Compression,
    /// sha256 of the uncompressed tar: the layer's diff ID.
    pub diff_id: Digest,
    /// sha256 of the compressed stream as given (the blob digest); equals `diff_id` for an
    /// uncompressed layer.
    pub compressed: Digest,
    /// Bytes of compressed input.
    pub compressed_size: u64,
    /// Bytes of uncompressed tar.
    pub uncompressed_size: u64,
    /// Tar entries read (skipped ones included).
    pub entries: u64,
}

/// Why a layer cannot be applied. Offsets are stream offsets of the entry's first header block
/// in the uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The compressed stream is corrupt or truncated.
    #[error("layer stream: {0}")]
    Decode(#[from] DecodeError),
    /// The tar stream is malformed or truncated.
    #[error("layer tar: {0}")]
    Tar(#[from] TarError),
    /// An entry's path is unusable (escapes the root, not UTF-8, bad whiteout…).
    #[error("tar entry at offset {offset}: {source}")]
    Path {
        /// Entry offset.
        offset: u64,
        /// What is wrong with it.
        source: PathError,
    },
    /// A hard link's target climbs above the layer root.
    #[error("hard link {path:?} at offset {offset}: target {target:?} escapes the layer root")]
    LinkEscapes {
        /// Entry offset.
        offset: u64,
        /// The link's path.
        path: String,
        /// The target as stored (lossy).
        target: String,
    },
    /// A hard link or symlink target is unusable.
    #[error("link {path:?} at offset {offset}: target {target:?} is {reason}")]
    BadLinkTarget {
        /// Entry offset.
        offset: u64,
        /// The link's path.
        path: String,
        /// The target as stored (lossy).
        target: String,
        /// What is wrong: `missing`, `empty`, `not UTF-8`, `the root`, `the link itself`,
        /// `containing NUL`.
        reason: &'static str,
    },
    /// An owner id does not fit a Linux `uid_t`/`gid_t` (or is -1, "unchanged").
    #[error("tar entry {path:?} at offset {offset}: owner {uid}:{gid} out of range")]
    BadOwner {
        /// Entry offset.
        offset: u64,
        /// The entry.
        path: String,
        /// Its uid.
        uid: u64,
        /// Its gid.
        gid: u64,
    },
    /// The entry's type cannot be applied (GNU volume labels, multi-volume parts…), as in
    /// containerd ("unhandled tar header type").
    #[error("tar entry {path:?} at offset {offset}: unsupported typeflag {typeflag:?}")]
    Unsupported {
        /// Entry offset.
        offset: u64,
        /// The entry.
        path: String,
        /// Its typeflag byte.
        typeflag: u8,
    },
    /// The diff ID differs from the one expected ([`Apply::expect_diff_id`]).
    #[error("layer diff ID is {actual}, expected {expected}")]
    DiffIdMismatch {
        /// Expected.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// `push` or `finish` was called after `finish`.
    #[error("layer apply already finished")]
    Finished,
}

/// Where input goes before the codec is known.
enum Input {
    /// Compression not given: bytes held until [`Compression::sniff`] can tell.
    Sniffing(Vec<u8>),
    Decoding(Box<Decoder>),
}

/// The layer-apply machine. See the module docs.
///
/// Protocol: [`Apply::push`] compressed bytes in any chunking, and after each push drain
/// [`Apply::poll`] until `None`, performing each step in order; then [`Apply::finish`] and
/// drain `poll` once more (it hands out the final [`Step::DirTimes`]). Errors are latched:
/// once a call fails, every later call fails the same way.
pub struct Apply {
    mode: ApplyMode,
    input: Input,
    parser: TarParser,
    queue: VecDeque<Step>,
    /// The current entry is a regular file being written: pass its data on.
    writing: bool,
    /// Directory times to set at the end.
    dirs: BTreeMap<String, Mtime>,
    /// Native mode: paths created by this layer, with their ancestors.
    unpacked: BTreeSet<String>,
    entries: u64,
    expected: Option<Digest>,
    error: Option<ApplyError>,
    finished: bool,
}

impl Apply {
    /// A machine for a layer applied in `mode`; `compression` `None` sniffs it from the first
    /// bytes.
    #[must_use]
    pub fn new(mode: ApplyMode, compression: Option<Compression>) -> Self {
        Apply {
            mode,
            input: match compression {
                Some(c) => Input::Decoding(Box::new(Decoder::new(c))),
                None => Input::Sniffing(Vec::new()),
            },
            parser: TarParser::new(),
            queue: VecDeque::new(),
            writing: false,
            dirs: BTreeMap::new(),
            unpacked: BTreeSet::new(),
            entries: 0,
            expected: None,
            error: None,
            finished: false,
        }
    }

    /// Makes [`Apply::finish`] fail with [`ApplyError::DiffIdMismatch`] unless the layer's diff
    /// ID is `diff_id` (builder style).
    #[must_use]
    pub fn expect_diff_id(mut self, diff_id: Digest) -> Self {
        self.expected = Some(diff_id);
        self
    }

    /// The mode.
    #[must_use]
    pub fn mode(&self) -> ApplyMode {
        self.mode
    }

    /// The codec, once known.
    #[must_use]
    pub fn compression(&self) -> Option<Compression> {
        match &self.input {
            Input::Sniffing(_) => None,
            Input::Decoding(d) => Some(d.compression()),
        }
    }

    /// Tar entries read so far.
    #[must_use]
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Queues a chunk of the layer stream (not copied). Steps come out of [`Apply::poll`].
    pub fn push(&mut self, data: Bytes) -> Result<(), ApplyError> {
        self.check()?;
        let r = self.feed(data);
        self.latch(r)
    }

    /// The next step, or `None` when more input is needed. Call it until it returns `None`
    /// after every `push` and after `finish`.
    pub fn poll(&mut self) -> Result<Option<Step>, ApplyError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let r = self.step();
        self.latch(r)
    }

    /// Declares the end of the stream: checks that it ended cleanly (complete compressed
    /// stream, end-of-archive marker, expected diff ID) and queues the final
    /// [`Step::DirTimes`], which [`Apply::poll`] then hands out after any steps still
    /// pending. Returns the layer's digests and sizes.
    pub fn finish(&mut self) -> Result<ApplySummary, ApplyError> {
        self.check()?;
        let r = self.end();
        self.finished = true;
        self.latch(r)
    }

    fn check(&self) -> Result<(), ApplyError> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None if self.finished => Err(ApplyError::Finished),
            None => Ok(()),
        }
    }

    fn latch<T>(&mut self, r: Result<T, ApplyError>) -> Result<T, ApplyError> {
        if let Err(e) = &r {
            self.error = Some(e.clone());
        }
        r
    }

    fn feed(&mut self, data: Bytes) -> Result<(), ApplyError> {
        match &mut self.input {
            Input::Decoding(d) => Ok(d.push(data)?),
            Input::Sniffing(held) => {
                let c = if held.is_empty() {
                    Compression::sniff(&data)
                } else {
                    held.extend_from_slice(&data);
                    Compression::sniff(held)
                };
                let Some(c) = c else {
                    if held.is_empty() {
                        held.extend_from_slice(&data);
                    }
                    return Ok(());
                };
                let first = if held.is_empty() {
                    data
                } else {
                    Bytes::from(std::mem::take(held))
                };
                let mut d = Box::new(Decoder::new(c));
                d.push(first)?;
                self.input = Input::Decoding(d);
                Ok(())
            }
        }
    }

    fn step(&mut self) -> Result<Option<Step>, ApplyError> {
        loop {
            if let Some(s) = self.queue.pop_front() {
                return Ok(Some(s));
            }
            if self.finished {
                return Ok(None);
            }
            if let Some(ev) = self.parser.poll()? {
                self.on_event(ev)?;
                continue;
            }
            let Input::Decoding(d) = &mut self.input else {
                return Ok(None);
            };
            match d.poll()? {
                Some(tar) => self.parser.push(tar)?,
                None => return Ok(None),
            }
        }
    }

    fn end(&mut self) -> Result<ApplySummary, ApplyError> {
        if let Input::Sniffing(held) = &mut self.input {
            // Fewer than 4 bytes in all: whatever they are, decode them as given.
            let held = std::mem::take(held);
            let mut d = Box::new(Decoder::new(
                Compression::sniff(&held).unwrap_or(Compression::None),
            ));
            d.push(Bytes::from(held))?;
            self.input = Input::Decoding(d);
        }
        // Anything the caller has not drained yet is queued, in order, before DirTimes.
        let mut pending = VecDeque::new();
        while let Some(s) = self.step()? {
            pending.push_back(s);
        }
        self.queue = pending;
        let Input::Decoding(d) = &mut self.input else {
            unreachable!("the decoder was set up above");
        };
        let decoded = d.finish()?;
        self.parser.finish()?;
        let diff_id = decoded.diff_id;
        if let Some(expected) = self.expected {
            if expected != diff_id {
                return Err(ApplyError::DiffIdMismatch {
                    expected,
                    actual: diff_id,
                });
            }
        }
        let dirs = std::mem::take(&mut self.dirs).into_iter().collect();
        self.queue.push_back(Step::DirTimes(dirs));
        Ok(ApplySummary {
            compression: decoded.compression,
            diff_id,
            compressed: decoded.compressed_digest.unwrap_or(diff_id),
            compressed_size: decoded.compressed_len,
            uncompressed_size: decoded.uncompressed_len,
            entries: self.entries,
        })
    }

    fn on_event(&mut self, ev: TarEvent) -> Result<(), ApplyError> {
        match ev {
            TarEvent::Entry(e) => self.on_entry(e),
            TarEvent::Data(b) => {
                if self.writing {
                    self.queue.push_back(Step::Data(b));
                }
                Ok(())
            }
            TarEvent::EntryEnd => {
                if std::mem::take(&mut self.writing) {
                    self.queue.push_back(Step::FileEnd);
                }
                Ok(())
            }
            TarEvent::End => Ok(()),
        }
    }

    fn on_entry(&mut self, e: Entry) -> Result<(), ApplyError> {
        self.entries += 1;
        let offset = e.offset;
        let layer_path = classify(&e.path).map_err(|source| ApplyError::Path { offset, source })?;
        match layer_path {
            // containerd skips entries that resolve to the root, and aufs metadata.
            LayerPath::Root | LayerPath::WhiteoutMeta(_) => {}
            LayerPath::Whiteout { target } => {
                self.removed(&target);
                let step = match self.mode {
                    ApplyMode::Overlay => {
                        let (uid, gid) = owner(&e, &target)?;
                        Step::Whiteout {
                            path: target,
                            uid,
                            gid,
                        }
                    }
                    ApplyMode::Native => Step::RemoveAll { path: target },
                };
                self.queue.push_back(step);
            }
            LayerPath::Opaque { dir } => {
                let step = match self.mode {
                    ApplyMode::Overlay => Step::Opaque { dir },
                    ApplyMode::Native => {
                        let keep = self.kept_below(dir.as_deref());
                        Step::ClearDir { dir, keep }
                    }
                };
                self.queue.push_back(step);
            }
            LayerPath::Plain(path) => self.on_plain(e, path)?,
        }
        Ok(())
    }

    fn on_plain(&mut self, e: Entry, path: String) -> Result<(), ApplyError> {
        let offset = e.offset;
        let (uid, gid) = owner(&e, &path)?;
        let user_xattrs = matches!(
            e.kind,
            EntryKind::Regular | EntryKind::Directory | EntryKind::HardLink
        );
        let meta = Meta {
            mode: e.mode & 0o7777,
            uid,
            gid,
            mtime: bound_time(e.mtime),
            xattrs: e
                .xattrs
                .into_iter()
                .filter(|x| {
                    !x.name.starts_with(TRUSTED_XATTR_PREFIX)
                        && (user_xattrs || !x.name.starts_with("user."))
                })
                .collect(),
        };
        let lossy = |t: &[u8]| String::from_utf8_lossy(t).into_owned();
        let bad = |target: &[u8], path: &str, reason| ApplyError::BadLinkTarget {
            offset,
            path: path.to_owned(),
            target: lossy(target),
            reason,
        };
        let step = match e.kind {
            EntryKind::Directory => {
                self.dirs.insert(path.clone(), meta.mtime);
                Step::Mkdir {
                    path: path.clone(),
                    meta,
                }
            }
            EntryKind::Regular => {
                self.writing = true;
                Step::File {
                    path: path.clone(),
                    size: e.size,
                    meta,
                }
            }
            EntryKind::Symlink => {
                let target = e.link_target.unwrap_or_default();
                if target.is_empty() {
                    return Err(bad(&target, &path, "empty"));
                }
                if target.contains(&0) {
                    return Err(bad(&target, &path, "containing NUL"));
                }
                Step::Symlink {
                    path: path.clone(),
                    target,
                    meta,
                }
            }
            EntryKind::HardLink => {
                let raw = e.link_target.unwrap_or_default();
                let target = match normalize(&raw) {
                    Ok(Some(t)) => t,
                    Ok(None) => return Err(bad(&raw, &path, "the root")),
                    Err(PathError::Escapes { .. }) => {
                        return Err(ApplyError::LinkEscapes {
                            offset,
                            path,
                            target: lossy(&raw),
                        })
                    }
                    Err(PathError::Empty) => return Err(bad(&raw, &path, "empty")),
                    Err(PathError::NotUtf8 { .. }) => return Err(bad(&raw, &path, "not UTF-8")),
                    Err(_) => return Err(bad(&raw, &path, "containing NUL")),
                };
                if target == path {
                    return Err(bad(&raw, &path, "the link itself"));
                }
                Step::HardLink {
                    path: path.clone(),
                    target,
                    meta,
                }
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => Step::Device {
                path: path.clone(),
                kind: if e.kind == EntryKind::CharDevice {
                    DeviceKind::Char
                } else {
                    DeviceKind::Block
                },
                device: e.device.unwrap_or(Device { major: 0, minor: 0 }),
                meta,
            },
            EntryKind::Fifo => Step::Fifo {
                path: path.clone(),
                meta,
            },
            EntryKind::Other(typeflag) => {
                return Err(ApplyError::Unsupported {
                    offset,
                    path,
                    typeflag,
                })
            }
        };
        if !matches!(step, Step::Mkdir { .. }) {
            // A non-directory replaces whatever was there, children included.
            self.removed(&path);
        }
        if self.mode == ApplyMode::Native {
            self.mark_unpacked(&path);
        }
        self.queue.push_back(step);
        Ok(())
    }

    /// `path` and everything below it are gone: forget their directory times and (native)
    /// that this layer created them.
    fn removed(&mut self, path: &str) {
        self.dirs.remove(path);
        remove_below(&mut self.dirs, path);
        if self.mode == ApplyMode::Native {
            self.unpacked.remove(path);
            remove_below_set(&mut self.unpacked, path);
        }
    }

    fn mark_unpacked(&mut self, path: &str) {
        for (i, _) in path.match_indices('/') {
            if !self.unpacked.contains(&path[..i]) {
                self.unpacked.insert(path[..i].to_owned());
            }
        }
        if !self.unpacked.contains(path) {
            self.unpacked.insert(path.to_owned());
        }
    }

    fn kept_below(&self, dir: Option<&str>) -> Vec<String> {
        match dir {
            None => self.unpacked.iter().cloned().collect(),
            Some(d) => {
                let (lo, hi) = below(d);
                self.unpacked.range(lo..hi).cloned().collect()
            }
        }
    }
}

/// The key range of paths strictly below `path`: `path/` up to (excluding) `path0`
/// (`'0'` follows `'/'`).
fn below(path: &str) -> (String, String) {
    (format!("{path}/"), format!("{path}0"))
}

fn remove_below<V>(map: &mut BTreeMap<String, V>, path: &str) {
    let (lo, hi) = below(path);
    let doomed: Vec<String> = map.range(lo..hi).map(|(k, _)| k.clone()).collect();
    for k in doomed {
        map.remove(&k);
    }
}

fn remove_below_set(set: &mut BTreeSet<String>, path: &str) {
    let (lo, hi) = below(path);
    let doomed: Vec<String> = set.range(lo..hi).cloned().collect();
    for k in doomed {
        set.remove(&k);
    }
}

/// The entry's owner as Linux ids; `u32::MAX` is `(uid_t)-1`, "unchanged", so refused too.
fn owner(e: &Entry, path: &str) -> Result<(u32, u32), ApplyError> {
    match (u32::try_from(e.uid), u32::try_from(e.gid)) {
        (Ok(uid), Ok(gid)) if uid != u32::MAX && gid != u32::MAX => Ok((uid, gid)),
        _ => Err(ApplyError::BadOwner {
            offset: e.offset,
            path: path.to_owned(),
            uid: e.uid,
            gid: e.gid,
        }),
    }
}

/// containerd's `boundTime`: a time before the epoch, or past what a 64-bit nanosecond count
/// holds (2262-04-11), becomes the epoch.
#[must_use]
pub fn bound_time(t: Mtime) -> Mtime {
    let nanos = i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos);
    if t.secs < 0 || nanos > i128::from(i64::MAX) {
        Mtime::default()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar builder for tests, with raw headers for what the `tar` crate refuses.
    struct Layer(tar::Builder<Vec<u8>>);

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    impl Layer {
        fn new() -> Self {
            Layer(tar::Builder::new(Vec::new()))
        }
        fn dir(mut self, path: &str, mode: u32) -> Self {
            let mut h = header(tar::EntryType::Directory, mode, 0);
            self.0.append_data(&mut h, path, &b""[..]).unwrap();
            self
        }
        fn file(mut self, path: &str, data: &[u8]) -> Self {
            let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
            if path.starts_with('/') || path.contains("..") {
                // the tar crate refuses these names: write the header field directly
                h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                self.0.append(&h, data).unwrap();
            } else {
                self.0.append_data(&mut h, path, data).unwrap();
            }
            self
        }
        fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
            let mut h = header(kind, 0o777, 0);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }
        /// A raw ustar header with the given name and link name (no checks at all).
        fn raw(mut self, typeflag: u8, name: &[u8], link: &[u8], uid: u64) -> Self {
            let mut h = header(tar::EntryType::new(typeflag), 0o644, 0);
            h.set_uid(uid);
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..name.len()].copy_from_slice(name);
            old.linkname = [0; 100];
            old.linkname[..link.len()].copy_from_slice(link);
            h.set_cksum();
            self.0.append(&h, &b""[..]).unwrap();
            self
        }
        fn build(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn run(
        mode: ApplyMode,
        blob: &[u8],
        chunk: usize,
    ) -> Result<(Vec<Step>, ApplySummary), ApplyError> {
        let mut a = Apply::new(mode, None);
        let mut steps = Vec::new();
        for piece in blob.chunks(chunk) {
            a.push(Bytes::copy_from_slice(piece))?;
            while let Some(s) = a.poll()? {
                steps.push(s);
            }
        }
        let summary = a.finish()?;
        while let Some(s) = a.poll()? {
            steps.push(s);
        }
        Ok((steps, summary))
    }

    /// Steps with `Data` pieces merged, so results do not depend on chunking.
    fn merged(steps: Vec<Step>) -> Vec<Step> {
        let mut out: Vec<Step> = Vec::new();
        for s in steps {
            if let (Step::Data(d), Some(Step::Data(prev))) = (&s, out.last_mut()) {
                let mut v = prev.to_vec();
                v.extend_from_slice(d);
                *prev = Bytes::from(v);
                continue;
            }
            out.push(s);
        }
        out
    }

    fn meta(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime: Mtime {
                secs: 1_700_000_000,
                nanos: 0,
            },
            xattrs: Vec::new(),
        }
    }

    fn paths(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Mkdir { path, .. } => format!("mkdir {path}"),
                Step::File { path, .. } => format!("file {path}"),
                Step::Data(d) => format!("data {}", d.len()),
                Step::FileEnd => "end".into(),
                Step::Symlink { path, target, .. } => {
                    format!("symlink {path} -> {}", String::from_utf8_lossy(target))
                }
                Step::HardLink { path, target, .. } => format!("link {path} => {target}"),
                Step::Device { path, .. } => format!("dev {path}"),
                Step::Fifo { path, .. } => format!("fifo {path}"),
                Step::Whiteout { path, .. } => format!("whiteout {path}"),
                Step::Opaque { dir } => format!("opaque {dir:?}"),
                Step::RemoveAll { path } => format!("rm {path}"),
                Step::ClearDir { dir, keep } => format!("clear {dir:?} keep {keep:?}"),
                Step::DirTimes(t) => format!(
                    "times {:?}",
                    t.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>()
                ),
            })
            .collect()
    }

    #[test]
    fn plain_layer_gives_steps_in_order_for_any_chunking() {
        let blob = Layer::new()
            .dir("./", 0o755)
            .dir("etc/", 0o755)
            .file("etc/motd", b"hello")
            .link(tar::EntryType::Symlink, "etc/link", "motd")
            .link(tar::EntryType::Link, "etc/hard", "etc/motd")
            .file("/abs", b"x")
            .build();
        let (whole, summary) = run(ApplyMode::Overlay, &blob, blob.len()).unwrap();
        let whole = merged(whole);
        for chunk in [1, 7, 512, 4096] {
            let (steps, s) = run(ApplyMode::Overlay, &blob, chunk).unwrap();
            assert_eq!(merged(steps), whole, "chunk {chunk}");
            assert_eq!(s, summary);
        }
        assert_eq!(
            paths(&whole),
            [
                "mkdir etc",
                "file etc/motd",
                "data 5",
                "end",
                "symlink etc/link -> motd",
                "link etc/hard => etc/motd",
                "file abs",
                "data 1",
                "end",
                "times [\"etc\"]",
            ]
        );
        assert_eq!(
            whole[1],
            Step::File {
                path: "etc/motd".into(),
                size: 5,
                meta: meta(0o644)
            }
        );
        assert_eq!(summary.entries, 6);
        assert_eq!(summary.compression, Compression::None);
        assert_eq!(summary.diff_id, Digest::sha256(&blob));
        assert_eq!(summary.compressed, summary.diff_id);
        assert_eq!(summary.uncompressed_size, blob.len() as u64);
    }

    #[test]
    fn gzip_and_zstd_are_sniffed_and_digested() {
        let tar = Layer::new().file("a", b"abc").build();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
        for (blob, c) in [(&gz, Compression::Gzip), (&zst, Compression::Zstd)] {
            for chunk in [1, 3, 100, blob.len()] {
                let (steps, s) = run(ApplyMode::Native, blob, chunk).unwrap();
                assert_eq!(
                    paths(&merged(steps)),
                    ["file a", "data 3", "end", "times []"]
                );
                assert_eq!(s.compression, c);
                assert_eq!(s.diff_id, Digest::sha256(&tar));
                assert_eq!(s.compressed, Digest::sha256(blob));
                assert_eq!(s.compressed_size, blob.len() as u64);
            }
        }
        // a truncated gzip stream is a typed error, not a shorter layer
        let cut = &gz[..gz.len() - 5];
        assert!(matches!(
            run(ApplyMode::Overlay, cut, 64),
            Err(ApplyError::Decode(_))
        ));
        // so is a tar cut at an entry boundary, even uncompressed
        assert!(matches!(
            run(ApplyMode::Overlay, &tar[..1024], 64),
            Err(ApplyError::Tar(TarError::MissingEnd { .. }))
        ));
        // and an empty stream
        assert!(matches!(
            run(ApplyMode::Overlay, b"", 64),
            Err(ApplyError::Tar(TarError::MissingEnd { .. }))
        ));
    }

    #[test]
    fn whiteouts_by_mode() {
        let blob = Layer::new()
            .dir("a/", 0o755)
            .file("a/.wh..wh..opq", b"")
            .file("a/keep", b"k")
            .file("a/.wh.gone", b"")
            .file(".wh..wh.plnk", b"")
            .file(".wh..wh..opq", b"")
            .build();
        let (steps, _) = run(ApplyMode::Overlay, &blob, 100).unwrap();
        assert_eq!(
            paths(&merged(steps)),
            [
                "mkdir a",
                "opaque Some(\"a\")",
                "file a/keep",
                "data 1",
                "end",
                "whiteout a/gone",
                "opaque None",
                "times [\"a\"]",
            ]
        );
        let (steps, _) = run(ApplyMode::Native, &blob, 100).unwrap();
        assert_eq!(
            paths(&merged(steps)),
            [
                "mkdir a",
                "clear Some(\"a\") keep []",
                "file a/keep",
                "data 1",
                "end",
                "rm a/gone",
                "clear None keep [\"a\", \"a/keep\"]",
                "times [\"a\"]",
            ]
        );
    }

    #[test]
    fn native_opaque_keeps_implicit_parents_and_forgets_removed() {
        let blob = Layer::new()
            .file("d/x/new", b"n")
            .file("d/y", b"y")
            .file("d/.wh.y", b"")
            .file("d/.wh..wh..opq", b"")
            .build();
        let (steps, _) = run(ApplyMode::Native, &blob, 100).unwrap();
        let p = paths(&merged(steps));
        assert_eq!(
            p[p.len() - 2],
            "clear Some(\"d\") keep [\"d/x\", \"d/x/new\"]"
        );
    }

    #[test]
    fn replaced_directories_lose_their_times() {
        let blob = Layer::new()
            .dir("a/", 0o755)
            .dir("a/b/", 0o755)
            .dir("c/", 0o755)
            .file("a", b"now a file")
            .file("c/.wh.x", b"")
            .dir("c/", 0o700)
            .build();
        let (steps, _) = run(ApplyMode::Overlay, &blob, 100).unwrap();
        assert_eq!(paths(&steps).last().unwrap(), "times [\"c\"]");
        assert!(steps
            .iter()
            .any(|s| matches!(s, Step::Mkdir { path, meta } if path == "c" && meta.mode == 0o700)));
    }

    #[test]
    fn hostile_names_are_refused() {
        let esc = Layer::new().file("a/../../x", b"x").build();
        assert!(matches!(
            run(ApplyMode::Overlay, &esc, 512),
            Err(ApplyError::Path {
                offset: 0,
                source: PathError::Escapes { .. }
            })
        ));
        let link = Layer::new().raw(b'1', b"hl", b"../../outside", 0).build();
        assert!(matches!(
            run(ApplyMode::Overlay, &link, 512),
            Err(ApplyError::LinkEscapes { .. })
        ));
        let link = Layer::new().raw(b'1', b"hl", b"/etc/passwd", 0).build();
        let (steps, _) = run(ApplyMode::Overlay, &link, 512).unwrap();
        assert_eq!(paths(&steps)[0], "link hl => etc/passwd");
        for (target, reason) in [
            (&b"./"[..], "the root"),
            (b"hl", "the link itself"),
            (b"", "empty"),
        ] {
            let l = Layer::new().raw(b'1', b"hl", target, 0).build();
            match run(ApplyMode::Overlay, &l, 512) {
                Err(ApplyError::BadLinkTarget { reason: r, .. }) => assert_eq!(r, reason),
                other => panic!("{target:?}: {other:?}"),
            }
        }
        let sym = Layer::new().raw(b'2', b"s", b"", 0).build();
        assert!(matches!(
            run(ApplyMode::Overlay, &sym, 512),
            Err(ApplyError::BadLinkTarget {
                reason: "empty",
                ..
            })
        ));
        let vol = Layer::new().raw(b'V', b"label", b"", 0).build();
        assert!(matches!(
            run(ApplyMode::Overlay, &vol, 512),
            Err(ApplyError::Unsupported { typeflag: b'V', .. })
        ));
        let owner = Layer::new().raw(b'0', b"f", b"", 0o77777777).build();
        assert!(run(ApplyMode::Overlay, &owner, 512).is_ok());
        let mut h = header(tar::EntryType::Regular, 0o644, 0);
        h.set_uid(u64::from(u32::MAX) + 1);
        let mut b = tar::Builder::new(Vec::new());
        // base-256 encoding for a uid past 8 octal digits
        b.append_data(&mut h, "f", &b""[..]).unwrap();
        let big = b.into_inner().unwrap();
        assert!(matches!(
            run(ApplyMode::Overlay, &big, 512),
            Err(ApplyError::BadOwner { .. })
        ));
        // errors are latched
        let mut a = Apply::new(ApplyMode::Overlay, Some(Compression::None));
        a.push(Bytes::from(esc)).unwrap();
        assert!(a.poll().is_err());
        assert!(a.poll().is_err());
        assert!(a.push(Bytes::new()).is_err());
    }

    #[test]
    fn xattrs_are_filtered_and_times_bounded() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.user.a", &b"1"[..]),
            ("SCHILY.xattr.trusted.overlay.redirect", &b"/x"[..]),
            ("SCHILY.xattr.trusted.other", &b"t"[..]),
            ("SCHILY.xattr.security.capability", &b"cap"[..]),
        ])
        .unwrap();
        let mut h = header(tar::EntryType::Regular, 0o4755, 0);
        b.append_data(&mut h, "f", &b""[..]).unwrap();
        b.append_pax_extensions([("SCHILY.xattr.user.a", &b"1"[..]), ("mtime", &b"-5"[..])])
            .unwrap();
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, "s", "f").unwrap();
        let blob = b.into_inner().unwrap();
        let (steps, _) = run(ApplyMode::Overlay, &blob, 512).unwrap();
        let Step::File { meta, .. } = &steps[0] else {
            panic!("{steps:?}")
        };
        assert_eq!(meta.mode, 0o4755);
        let names: Vec<&str> = meta.xattrs.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["security.capability", "user.a"]);
        let Step::Symlink { meta, .. } = &steps[2] else {
            panic!("{steps:?}")
        };
        assert!(meta.xattrs.is_empty());
        assert_eq!(meta.mtime, Mtime::default());
        assert_eq!(
            bound_time(Mtime {
                secs: 9_300_000_000,
                nanos: 0
            }),
            Mtime::default()
        );
    }

    #[test]
    fn expected_diff_id_is_checked() {
        let blob = Layer::new().file("a", b"x").build();
        let good = Apply::new(ApplyMode::Overlay, None).expect_diff_id(Digest::sha256(&blob));
        let bad = Apply::new(ApplyMode::Overlay, None).expect_diff_id(Digest::sha256(b"other"));
        for (mut a, ok) in [(good, true), (bad, false)] {
            a.push(Bytes::from(blob.clone())).unwrap();
            while a.poll().unwrap().is_some() {}
            assert_eq!(a.finish().is_ok(), ok);
        }
    }

    #[test]
    fn finish_queues_undrained_steps_before_dir_times() {
        let tar = Layer::new().dir("d/", 0o755).file("d/f", b"1").build();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let blob = gz.finish().unwrap();
        // two bytes of gzip magic: too short to sniff, so held
        let mut a = Apply::new(ApplyMode::Overlay, None);
        a.push(Bytes::copy_from_slice(&blob[..2])).unwrap();
        assert_eq!(a.poll().unwrap(), None);
        assert_eq!(a.compression(), None);
        a.push(Bytes::copy_from_slice(&blob[2..])).unwrap();
        assert_eq!(a.compression(), Some(Compression::Gzip));
        // not drained: finish queues the pending steps first
        a.finish().unwrap();
        let mut steps = Vec::new();
        while let Some(s) = a.poll().unwrap() {
            steps.push(s);
        }
        assert_eq!(
            paths(&steps),
            ["mkdir d", "file d/f", "data 1", "end", "times [\"d\"]"]
        );
        assert_eq!(a.finish(), Err(ApplyError::Finished));
    }
}
