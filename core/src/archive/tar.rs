//! A push tar parser: ustar, GNU (long names and links) and PAX (extended and global headers,
//! `SCHILY.xattr.*`), fed decompressed bytes in chunks of any size.
//!
//! [`TarParser::push`] queues input (not copied); [`TarParser::poll`] hands out
//! [`TarEvent`]s: for each entry its [`Entry`] header, then its content as [`TarEvent::Data`]
//! slices of the pushed chunks (zero copy: a `Bytes` slice shares the chunk it came from), then
//! [`TarEvent::EntryEnd`]; finally [`TarEvent::End`] at the end-of-archive marker (two zero
//! blocks). Bytes after the marker (record padding) are accepted and ignored.
//! [`TarParser::finish`] declares the end of input and fails with a typed error if the archive
//! was cut short.
//!
//! The reading rules follow Go's `archive/tar`, which containerd applies layers with, so that a
//! layer means the same thing to berth as to containerd:
//!
//! * The checksum must match, summed with unsigned or signed bytes (both exist in the wild).
//! * Numeric fields are octal (leading and trailing spaces and NULs ignored, all-NUL is 0) or
//!   base-256 (high bit of the first byte set; negative values only where they make sense).
//! * The ustar `prefix` field is joined to `name` with `/` for ustar/PAX headers, not for GNU
//!   headers (whose bytes there mean something else).
//! * PAX records override the header's path, linkpath, size, uid, gid and mtime; an empty value
//!   keeps the header's. A GNU long name (`L`) or long link (`K`) wins over a PAX path. When
//!   two `x` (or two `L`, or two `K`) headers precede an entry, the later one replaces the
//!   earlier.
//! * Link, symlink, device, directory and fifo entries carry no content, whatever their size
//!   field says.
//! * A typeflag `\0` (old "regular file") entry whose name ends in `/` is a directory.
//! * PAX global headers (`g`) are validated and remembered ([`TarParser::globals`]) but not
//!   applied to later entries, as in Go and containerd; extension headers pending before a
//!   global header are dropped, as Go does.
//! * Sparse files (GNU `S`, PAX `GNU.sparse.*`) are refused with [`TarError::Unsupported`]:
//!   image layers do not use them.
//! * Extension headers (`x`, `g`, `L`, `K`) larger than 1 MiB are refused, as in Go.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

/// Tar block size.
pub const BLOCK: usize = 512;

/// The largest PAX or GNU long-name extension accepted (Go's limit).
pub const MAX_EXTENSION: u64 = 1 << 20;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file (typeflags `0`, `\0`, `7`).
    Regular,
    /// A directory (`5`).
    Directory,
    /// A symbolic link (`2`); its target is [`Entry::link_target`].
    Symlink,
    /// A hard link (`1`) to an earlier entry named by [`Entry::link_target`].
    HardLink,
    /// A character device (`3`), numbers in [`Entry::device`].
    CharDevice,
    /// A block device (`4`), numbers in [`Entry::device`].
    BlockDevice,
    /// A fifo (`6`).
    Fifo,
    /// Any other typeflag (e.g. GNU `V` volume labels); its content, if any, is delivered as
    /// data. Layer application should refuse it, as containerd does.
    Other(u8),
}

impl EntryKind {
    fn from_typeflag(t: u8) -> Self {
        match t {
            b'0' | b'\0' | b'7' => EntryKind::Regular,
            b'1' => EntryKind::HardLink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'5' => EntryKind::Directory,
            b'6' => EntryKind::Fifo,
            other => EntryKind::Other(other),
        }
    }

    /// True for kinds whose entries never have content in the archive.
    #[must_use]
    pub fn is_header_only(self) -> bool {
        matches!(
            self,
            EntryKind::HardLink
                | EntryKind::Symlink
                | EntryKind::CharDevice
                | EntryKind::BlockDevice
                | EntryKind::Directory
                | EntryKind::Fifo
        )
    }
}

/// Modification time: seconds since the Unix epoch (negative before it) and nanoseconds
/// (`0..1_000_000_000`, non-zero only from a PAX `mtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mtime {
    /// Whole seconds, rounded down.
    pub secs: i64,
    /// Nanoseconds past `secs`.
    pub nanos: u32,
}

/// Device numbers of a character or block device entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Device {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// An extended attribute from a PAX `SCHILY.xattr.<name>` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Xattr {
    /// The attribute name (e.g. `security.capability`).
    pub name: String,
    /// The raw value.
    pub value: Bytes,
}

/// The header of one archive entry, with every extension applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Stream offset of the entry's first header block (its first extension header, if any).
    pub offset: u64,
    /// The path as stored (raw bytes, not normalised: see [`super::path`]).
    pub path: Vec<u8>,
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits, including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u64,
    /// Owner group id.
    pub gid: u64,
    /// Content length: the number of data bytes that follow (0 for header-only kinds).
    pub size: u64,
    /// Modification time.
    pub mtime: Mtime,
    /// Link target, for [`EntryKind::HardLink`] and [`EntryKind::Symlink`].
    pub link_target: Option<Vec<u8>>,
    /// Device numbers, for [`EntryKind::CharDevice`] and [`EntryKind::BlockDevice`].
    pub device: Option<Device>,
    /// Extended attributes, sorted by name, without duplicates.
    pub xattrs: Vec<Xattr>,
}

/// What [`TarParser::poll`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarEvent {
    /// A new entry begins.
    Entry(Entry),
    /// The next slice of the current entry's content (never empty).
    Data(Bytes),
    /// The current entry's content is complete.
    EntryEnd,
    /// The end-of-archive marker: no events follow.
    End,
}

/// Why a tar stream could not be parsed. Offsets are stream offsets of the uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// A header block's checksum does not match its bytes.
    #[error(
        "tar header at offset {offset}: checksum {stored:?} does not match computed {computed}"
    )]
    BadChecksum {
        /// Offset of the header block.
        offset: u64,
        /// The stored checksum (`None` if the field is not a number).
        stored: Option<u64>,
        /// The computed (unsigned) checksum.
        computed: u64,
    },
    /// A numeric header field or PAX value is malformed or out of range.
    #[error("tar header at offset {offset}: bad {field} field")]
    BadNumber {
        /// Offset of the header block.
        offset: u64,
        /// The field (`mode`, `uid`, `gid`, `size`, `mtime`, `devmajor`, `devminor`).
        field: &'static str,
    },
    /// A PAX extended header is malformed.
    #[error("PAX header at offset {offset}: {reason}")]
    BadPax {
        /// Offset of the PAX header block.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// An extension header is larger than [`MAX_EXTENSION`].
    #[error("extension header at offset {offset} is {size} bytes, more than the {limit} allowed")]
    ExtensionTooLarge {
        /// Offset of the header block.
        offset: u64,
        /// Its declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Extension headers were not followed by the entry they describe.
    #[error("extension headers at offset {offset} are not followed by an entry")]
    DanglingExtension {
        /// Offset of the first extension header.
        offset: u64,
    },
    /// A zero block followed by a non-zero block: not a valid end-of-archive marker.
    #[error("tar: lone zero block at offset {offset} followed by data")]
    LoneZeroBlock {
        /// Offset of the zero block.
        offset: u64,
    },
    /// The entry uses a feature berth does not support.
    #[error("tar entry at offset {offset}: unsupported {what}")]
    Unsupported {
        /// Offset of the header block.
        offset: u64,
        /// The feature.
        what: &'static str,
    },
    /// The input ended inside a header, content or padding.
    #[error("tar truncated: input ended at offset {offset} inside {what}")]
    Truncated {
        /// Total input length.
        offset: u64,
        /// What was being read: `header`, `content`, `padding` or `extension`.
        what: &'static str,
    },
    /// The input ended between entries without the end-of-archive marker (two zero blocks).
    /// Go's reader tolerates this; the caller may choose to as well.
    #[error("tar ends at offset {offset} without the end-of-archive marker")]
    MissingEnd {
        /// Total input length.
        offset: u64,
    },
    /// `finish` was called while input was still queued: drain `poll` first.
    #[error("finish called with {pending} input bytes not yet parsed; drain poll first")]
    NotDrained {
        /// Bytes still queued.
        pending: u64,
    },
    /// `push` or `poll` was called after `finish`.
    #[error("tar parser already finished")]
    Finished,
}

/// What [`TarParser::finish`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarSummary {
    /// Entries yielded.
    pub entries: u64,
    /// Stream offset just past the end-of-archive marker.
    pub end_offset: u64,
    /// Bytes after the marker (ignored).
    pub trailing: u64,
}

/// A push tar parser. See the module docs.
#[derive(Debug)]
pub struct TarParser {
    input: VecDeque<Bytes>,
    queued: u64,
    /// Stream offset of the next unconsumed byte.
    offset: u64,
    state: State,
    /// Staging for a header block that straddles input chunks.
    block: [u8; BLOCK],
    have: usize,
    ext: Extensions,
    globals: Vec<(String, Bytes)>,
    entries: u64,
    end_offset: u64,
    error: Option<TarError>,
    finished: bool,
}

#[derive(Debug)]
enum State {
    Header,
    Data {
        left: u64,
        pad: u64,
    },
    Pad {
        left: u64,
    },
    Ext(Box<ExtRead>),
    /// One zero block seen at `offset`.
    Zero {
        offset: u64,
    },
    Ended,
}

#[derive(Debug)]
struct ExtRead {
    kind: u8,
    offset: u64,
    left: u64,
    pad: u64,
    buf: Vec<u8>,
}

/// Extension headers seen since the last entry.
#[derive(Debug, Default)]
struct Extensions {
    first_offset: Option<u64>,
    pax: Vec<(String, Bytes)>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Default for TarParser {
    fn default() -> Self {
        Self::new()
    }
}

impl TarParser {
    /// A parser at the start of an archive.
    #[must_use]
    pub fn new() -> Self {
        TarParser {
            input: VecDeque::new(),
            queued: 0,
            offset: 0,
            state: State::Header,
            block: [0; BLOCK],
            have: 0,
            ext: Extensions::default(),
            globals: Vec::new(),
            entries: 0,
            end_offset: 0,
            error: None,
            finished: false,
        }
    }

    /// Stream offset of the next byte to parse.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Entries yielded so far.
    #[must_use]
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The records of every PAX global header seen so far, in order (later ones last).
    #[must_use]
    pub fn globals(&self) -> &[(String, Bytes)] {
        &self.globals
    }

    /// True once the end-of-archive marker has been seen.
    #[must_use]
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// Queues a chunk of tar bytes (not copied).
    pub fn push(&mut self, data: Bytes) -> Result<(), TarError> {
        self.check()?;
        if !data.is_empty() {
            self.queued += data.len() as u64;
            self.input.push_back(data);
        }
        Ok(())
    }

    /// Queues a copy of `data`.
    pub fn push_slice(&mut self, data: &[u8]) -> Result<(), TarError> {
        self.push(Bytes::copy_from_slice(data))
    }

    /// The next event, or `None` when more input is needed (or the archive has ended). Call it
    /// until it returns `None` after every `push`. Errors are latched.
    pub fn poll(&mut self) -> Result<Option<TarEvent>, TarError> {
        self.check()?;
        let r = self.step();
        if let Err(e) = &r {
            self.error = Some(e.clone());
        }
        r
    }

    /// Declares the end of input: succeeds only if the end-of-archive marker was seen.
    pub fn finish(&mut self) -> Result<TarSummary, TarError> {
        self.check()?;
        let offset = self.offset + self.queued;
        let r = match &self.state {
            State::Ended => Ok(TarSummary {
                entries: self.entries,
                end_offset: self.end_offset,
                trailing: offset - self.end_offset,
            }),
            _ if self.queued > 0 => Err(TarError::NotDrained {
                pending: self.queued,
            }),
            State::Header if self.have == 0 => match self.ext.first_offset {
                Some(offset) => Err(TarError::DanglingExtension { offset }),
                None => Err(TarError::MissingEnd { offset }),
            },
            State::Header => Err(TarError::Truncated {
                offset,
                what: "header",
            }),
            State::Zero { .. } if self.have == 0 => Err(TarError::MissingEnd { offset }),
            State::Zero { .. } => Err(TarError::Truncated {
                offset,
                what: "header",
            }),
            State::Data { .. } => Err(TarError::Truncated {
                offset,
                what: "content",
            }),
            State::Pad { .. } => Err(TarError::Truncated {
                offset,
                what: "padding",
            }),
            State::Ext(_) => Err(TarError::Truncated {
                offset,
                what: "extension",
            }),
        };
        match &r {
            Ok(_) => self.finished = true,
            Err(e) => self.error = Some(e.clone()),
        }
        r
    }

    fn check(&self) -> Result<(), TarError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.finished {
            return Err(TarError::Finished);
        }
        Ok(())
    }

    /// Takes up to `max` bytes from the front chunk (zero copy).
    fn take(&mut self, max: u64) -> Option<Bytes> {
        let front = self.input.front_mut()?;
        let n = (front.len() as u64).min(max) as usize;
        let out = if n == front.len() {
            self.input.pop_front().expect("front exists")
        } else {
            front.split_to(n)
        };
        self.offset += n as u64;
        self.queued -= n as u64;
        Some(out)
    }

    /// Discards up to `max` bytes; returns how many.
    fn skip(&mut self, max: u64) -> u64 {
        let Some(front) = self.input.front_mut() else {
            return 0;
        };
        let n = (front.len() as u64).min(max) as usize;
        if n == front.len() {
            self.input.pop_front();
        } else {
            front.advance(n);
        }
        self.offset += n as u64;
        self.queued -= n as u64;
        n as u64
    }

    /// Fills the staging block; true once it holds a whole block (at `self.offset - 512`).
    fn fill_block(&mut self) -> bool {
        while self.have < BLOCK {
            let Some(front) = self.input.front_mut() else {
                return false;
            };
            let n = (BLOCK - self.have).min(front.len());
            self.block[self.have..self.have + n].copy_from_slice(&front[..n]);
            self.have += n;
            if n == front.len() {
                self.input.pop_front();
            } else {
                front.advance(n);
            }
            self.offset += n as u64;
            self.queued -= n as u64;
        }
        true
    }

    fn step(&mut self) -> Result<Option<TarEvent>, TarError> {
        loop {
            match &mut self.state {
                State::Header => {
                    if !self.fill_block() {
                        return Ok(None);
                    }
                    self.have = 0;
                    let at = self.offset - BLOCK as u64;
                    if let Some(ev) = self.header(at)? {
                        return Ok(Some(ev));
                    }
                }
                State::Data { left: 0, pad } => {
                    let pad = *pad;
                    self.state = State::Pad { left: pad };
                    return Ok(Some(TarEvent::EntryEnd));
                }
                State::Data { left, .. } => {
                    let want = *left;
                    let Some(data) = self.take(want) else {
                        return Ok(None);
                    };
                    if let State::Data { left, .. } = &mut self.state {
                        *left -= data.len() as u64;
                    }
                    return Ok(Some(TarEvent::Data(data)));
                }
                State::Pad { left: 0 } => self.state = State::Header,
                State::Pad { left } => {
                    let want = *left;
                    let n = self.skip(want);
                    if n == 0 {
                        return Ok(None);
                    }
                    self.state = State::Pad { left: want - n };
                }
                State::Ext(x) if x.left == 0 => {
                    let State::Ext(x) = std::mem::replace(&mut self.state, State::Header) else {
                        unreachable!("matched above")
                    };
                    self.state = State::Pad { left: x.pad };
                    self.extension(*x)?;
                }
                State::Ext(x) => {
                    let want = x.left;
                    let Some(data) = self.take(want) else {
                        return Ok(None);
                    };
                    if let State::Ext(x) = &mut self.state {
                        x.left -= data.len() as u64;
                        x.buf.extend_from_slice(&data);
                    }
                }
                State::Zero { offset } => {
                    let zero_at = *offset;
                    if !self.fill_block() {
                        return Ok(None);
                    }
                    self.have = 0;
                    if self.block.iter().any(|&b| b != 0) {
                        return Err(TarError::LoneZeroBlock { offset: zero_at });
                    }
                    self.state = State::Ended;
                    self.end_offset = self.offset;
                    return Ok(Some(TarEvent::End));
                }
                State::Ended => {
                    // Record padding after the marker: consumed and ignored.
                    while self.skip(u64::MAX) > 0 {}
                    return Ok(None);
                }
            }
        }
    }

    /// Handles the header block in `self.block` (at stream offset `at`). Returns the entry
    /// event, or `None` for an extension header or a zero block.
    fn header(&mut self, at: u64) -> Result<Option<TarEvent>, TarError> {
        let b = &self.block;
        if b.iter().all(|&x| x == 0) {
            if let Some(offset) = self.ext.first_offset {
                return Err(TarError::DanglingExtension { offset });
            }
            self.state = State::Zero { offset: at };
            return Ok(None);
        }
        verify_checksum(b, at)?;
        let format = Format::of(b);
        let typeflag = b[156];
        let num = |field: &'static str, range: std::ops::Range<usize>| {
            parse_numeric(&b[range]).ok_or(TarError::BadNumber { offset: at, field })
        };
        let unsigned = |field: &'static str, range: std::ops::Range<usize>| {
            num(field, range).and_then(|v| {
                u64::try_from(v).map_err(|_| TarError::BadNumber { offset: at, field })
            })
        };
        let size = unsigned("size", 124..136)?;

        match typeflag {
            b'x' | b'g' | b'L' | b'K' => {
                if size > MAX_EXTENSION {
                    return Err(TarError::ExtensionTooLarge {
                        offset: at,
                        size,
                        limit: MAX_EXTENSION,
                    });
                }
                self.ext.first_offset.get_or_insert(at);
                self.state = State::Ext(Box::new(ExtRead {
                    kind: typeflag,
                    offset: at,
                    left: size,
                    pad: padding(size),
                    buf: Vec::with_capacity(size as usize),
                }));
                return Ok(None);
            }
            b'S' => {
                return Err(TarError::Unsupported {
                    offset: at,
                    what: "GNU sparse file",
                })
            }
            _ => {}
        }

        let mode = unsigned("mode", 100..108)?;
        let uid = unsigned("uid", 108..116)?;
        let gid = unsigned("gid", 116..124)?;
        let mtime = num("mtime", 136..148)?;
        let mut path = cstr(&b[0..100]).to_vec();
        if format == Format::Ustar {
            let prefix = cstr(&b[345..500]);
            if !prefix.is_empty() {
                let mut p = Vec::with_capacity(prefix.len() + 1 + path.len());
                p.extend_from_slice(prefix);
                p.push(b'/');
                p.extend_from_slice(&path);
                path = p;
            }
        }
        let mut kind = EntryKind::from_typeflag(typeflag);
        let mut link_target = cstr(&b[157..257]).to_vec();
        let device = if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice)
            && format != Format::V7
        {
            let major =
                u32::try_from(num("devmajor", 329..337)?).map_err(|_| TarError::BadNumber {
                    offset: at,
                    field: "devmajor",
                })?;
            let minor =
                u32::try_from(num("devminor", 337..345)?).map_err(|_| TarError::BadNumber {
                    offset: at,
                    field: "devminor",
                })?;
            Some(Device { major, minor })
        } else if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            Some(Device { major: 0, minor: 0 })
        } else {
            None
        };

        let ext = std::mem::take(&mut self.ext);
        let offset = ext.first_offset.unwrap_or(at);
        let mut entry = Entry {
            offset,
            path,
            kind,
            mode: (mode & 0o7777) as u32,
            uid,
            gid,
            size,
            mtime: Mtime {
                secs: mtime,
                nanos: 0,
            },
            link_target: None,
            device,
            xattrs: Vec::new(),
        };
        // PAX records first, then GNU long names over them (Go's order).
        for (key, value) in ext.pax {
            apply_pax(&mut entry, &mut link_target, &key, value, offset)?;
        }
        if let Some(name) = ext.long_name {
            entry.path = name;
        }
        if let Some(link) = ext.long_link {
            link_target = link;
        }
        if typeflag == b'\0' && entry.path.ends_with(b"/") {
            kind = EntryKind::Directory;
            entry.kind = kind;
        }
        if matches!(kind, EntryKind::HardLink | EntryKind::Symlink) {
            entry.link_target = Some(link_target);
        }
        entry.xattrs.sort_by(|a, b| a.name.cmp(&b.name));
        entry.xattrs.dedup_by(|later, earlier| {
            // sort_by is stable: among equal names the last record must win.
            if later.name == earlier.name {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
        let data = if kind.is_header_only() { 0 } else { entry.size };
        entry.size = data;
        self.state = State::Data {
            left: data,
            pad: padding(data),
        };
        self.entries += 1;
        Ok(Some(TarEvent::Entry(entry)))
    }

    /// Records a completed extension header.
    fn extension(&mut self, x: ExtRead) -> Result<(), TarError> {
        match x.kind {
            b'L' => self.ext.long_name = Some(cstr(&x.buf).to_vec()),
            b'K' => self.ext.long_link = Some(cstr(&x.buf).to_vec()),
            // A second `x` header replaces the first, as in Go.
            b'x' => self.ext.pax = parse_pax(Bytes::from(x.buf), x.offset)?,
            _ => {
                let records = parse_pax(Bytes::from(x.buf), x.offset)?;
                // Go hands a global header to its caller as an entry of its own, dropping the
                // extensions pending before it; containerd then skips that entry.
                self.ext = Extensions::default();
                self.globals.extend(records);
            }
        }
        Ok(())
    }
}

/// Header formats, as Go's `getFormat` tells them apart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    V7,
    Ustar,
    Gnu,
}

impl Format {
    fn of(b: &[u8; BLOCK]) -> Self {
        match (&b[257..263], &b[263..265]) {
            (b"ustar\0", b"00") => Format::Ustar,
            (b"ustar ", b" \0") => Format::Gnu,
            _ => Format::V7,
        }
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The bytes of a NUL-terminated field up to its first NUL.
fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(n) => &field[..n],
        None => field,
    }
}

fn verify_checksum(b: &[u8; BLOCK], at: u64) -> Result<(), TarError> {
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += u64::from(c);
        signed += i64::from(c as i8);
    }
    let stored = parse_octal(&b[148..156]);
    match stored {
        Some(s) if s == unsigned as i64 || s == signed => Ok(()),
        _ => Err(TarError::BadChecksum {
            offset: at,
            stored: stored.and_then(|s| u64::try_from(s).ok()),
            computed: unsigned,
        }),
    }
}

/// Parses a numeric field: base-256 if the high bit of the first byte is set, else octal.
fn parse_numeric(field: &[u8]) -> Option<i64> {
    if field.first().is_some_and(|&c| c & 0x80 != 0) {
        // Base-256 (GNU): big-endian two's complement, the first byte's high bit a marker.
        let inv = if field[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in field.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 != 0 {
                return None;
            }
            x = (x << 8) | u64::from(c);
        }
        if x >> 63 != 0 {
            return None;
        }
        let x = x as i64;
        return Some(if inv == 0xff { !x } else { x });
    }
    parse_octal(field)
}

/// Parses an octal field, ignoring leading and trailing spaces and NULs (empty is 0).
fn parse_octal(field: &[u8]) -> Option<i64> {
    let trim = |c: &u8| *c == b' ' || *c == 0;
    let start = field.iter().position(|c| !trim(c)).unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|c| !trim(c))
        .map_or(start, |e| e + 1);
    let digits = &field[start..end];
    let mut v: i64 = 0;
    for &c in digits {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(v)
}

/// Parses the records of a PAX header: `"<len> <key>=<value>\n"`, `len` counting the whole
/// record. Values are slices of `buf` (binary xattr values included).
fn parse_pax(buf: Bytes, offset: u64) -> Result<Vec<(String, Bytes)>, TarError> {
    let bad = |reason| TarError::BadPax { offset, reason };
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let sp = rest
            .iter()
            .take(20)
            .position(|&c| c == b' ')
            .ok_or(bad("record length not followed by a space"))?;
        let len_digits = &rest[..sp];
        if len_digits.is_empty() || !len_digits.iter().all(u8::is_ascii_digit) {
            return Err(bad("record length is not a decimal number"));
        }
        let len: usize = std::str::from_utf8(len_digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(bad("record length is not a decimal number"))?;
        if len <= sp + 1 || len > rest.len() {
            return Err(bad("record length out of range"));
        }
        if rest[len - 1] != b'\n' {
            return Err(bad("record does not end with a newline"));
        }
        let kv = &rest[sp + 1..len - 1];
        let eq = kv
            .iter()
            .position(|&c| c == b'=')
            .ok_or(bad("record has no '='"))?;
        let key = std::str::from_utf8(&kv[..eq]).map_err(|_| bad("record key is not UTF-8"))?;
        if key.is_empty() || key.contains('\0') {
            return Err(bad("record key is empty or contains NUL"));
        }
        let vstart = pos + sp + 1 + eq + 1;
        let value = buf.slice(vstart..pos + len - 1);
        records.push((key.to_owned(), value));
        pos += len;
    }
    Ok(records)
}

/// Applies one PAX record to an entry (Go's `mergePAX`).
fn apply_pax(
    e: &mut Entry,
    link_target: &mut Vec<u8>,
    key: &str,
    value: Bytes,
    offset: u64,
) -> Result<(), TarError> {
    const XATTR: &str = "SCHILY.xattr.";
    if let Some(name) = key.strip_prefix(XATTR) {
        // Xattr values are binary and may legitimately be empty.
        e.xattrs.push(Xattr {
            name: name.to_owned(),
            value,
        });
        return Ok(());
    }
    if key.starts_with("GNU.sparse.") {
        return Err(TarError::Unsupported {
            offset,
            what: "PAX sparse file",
        });
    }
    if value.is_empty() {
        return Ok(());
    }
    let bad = |field| TarError::BadNumber { offset, field };
    let decimal = |field| {
        std::str::from_utf8(&value)
            .ok()
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|v| i64::try_from(*v).is_ok())
            .ok_or(bad(field))
    };
    match key {
        "path" | "linkpath" => {
            if value.contains(&0) {
                return Err(TarError::BadPax {
                    offset,
                    reason: "path contains NUL",
                });
            }
            if key == "path" {
                e.path = value.to_vec();
            } else {
                *link_target = value.to_vec();
            }
        }
        "size" => e.size = decimal("size")?,
        "uid" => e.uid = decimal("uid")?,
        "gid" => e.gid = decimal("gid")?,
        "mtime" => e.mtime = parse_pax_time(&value).ok_or(bad("mtime"))?,
        _ => {}
    }
    Ok(())
}

/// Parses a PAX time: `[-]seconds[.fraction]`, fraction digits past nanoseconds truncated.
fn parse_pax_time(v: &[u8]) -> Option<Mtime> {
    let (neg, v) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let (secs, frac) = match v.iter().position(|&c| c == b'.') {
        Some(p) => (&v[..p], &v[p + 1..]),
        None => (v, &[][..]),
    };
    if secs.is_empty() || !secs.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let secs: i64 = std::str::from_utf8(secs).ok()?.parse().ok()?;
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |c| u32::from(c - b'0'));
    }
    if !neg {
        return Some(Mtime { secs, nanos });
    }
    // -s.f = -(s+1) + (1 - .f)
    if nanos == 0 {
        Some(Mtime {
            secs: secs.checked_neg()?,
            nanos: 0,
        })
    } else {
        Some(Mtime {
            secs: secs.checked_neg()?.checked_sub(1)?,
            nanos: 1_000_000_000 - nanos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a whole archive fed in pieces of `size`; returns (entry, data) pairs.
    type Parsed = (Vec<(Entry, Vec<u8>)>, TarSummary);

    pub(crate) fn parse_all(tar: &[u8], size: usize) -> Result<Parsed, TarError> {
        let mut p = TarParser::new();
        let mut out: Vec<(Entry, Vec<u8>)> = Vec::new();
        let mut open = false;
        let mut ended = false;
        for piece in tar.chunks(size.max(1)) {
            p.push_slice(piece)?;
            while let Some(ev) = p.poll()? {
                match ev {
                    TarEvent::Entry(e) => {
                        assert!(!open && !ended);
                        open = true;
                        out.push((e, Vec::new()));
                    }
                    TarEvent::Data(d) => {
                        assert!(open && !d.is_empty());
                        out.last_mut().unwrap().1.extend_from_slice(&d);
                    }
                    TarEvent::EntryEnd => {
                        assert!(open);
                        open = false;
                        let (e, d) = out.last().unwrap();
                        assert_eq!(e.size, d.len() as u64);
                    }
                    TarEvent::End => {
                        assert!(!open && !ended);
                        ended = true;
                    }
                }
            }
        }
        let s = p.finish()?;
        Ok((out, s))
    }

    fn header(name: &str, typeflag: u8, size: u64) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..107].copy_from_slice(b"0000644");
        b[108..115].copy_from_slice(b"0001750");
        b[116..123].copy_from_slice(b"0001750");
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[136..147].copy_from_slice(b"14000000000");
        b[156] = typeflag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        set_checksum(&mut b);
        b
    }

    fn set_checksum(b: &mut [u8; BLOCK]) {
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    }

    fn archive(parts: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts {
            v.extend_from_slice(p);
            v.resize(v.len().next_multiple_of(BLOCK), 0);
        }
        v.extend_from_slice(&[0; 2 * BLOCK]);
        v
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let body = k.len() + v.len() + 3;
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            out.extend_from_slice(format!("{len} {k}=").as_bytes());
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn parses_a_simple_archive_in_every_chunking() {
        let tar = archive(&[
            &header("dir/", b'5', 0),
            &header("dir/file", b'0', 5),
            b"hello",
            &header("dir/empty", b'0', 0),
        ]);
        for size in [1, 3, 100, 511, 512, 513, 1024, tar.len()] {
            let (entries, s) = parse_all(&tar, size).unwrap();
            assert_eq!(entries.len(), 3);
            assert_eq!(entries[0].0.kind, EntryKind::Directory);
            assert_eq!(entries[1].0.path, b"dir/file");
            assert_eq!(entries[1].0.mode, 0o644);
            assert_eq!(entries[1].0.uid, 1000);
            assert_eq!(entries[1].0.mtime.secs, 0o14000000000);
            assert_eq!(entries[1].1, b"hello");
            assert_eq!(entries[1].0.offset, 512);
            assert_eq!(entries[2].1, b"");
            assert_eq!(s.entries, 3);
            assert_eq!(s.end_offset, tar.len() as u64);
        }
    }

    #[test]
    fn data_is_sliced_without_copying() {
        let tar = Bytes::from(archive(&[&header("f", b'0', 1000), &[7u8; 1000]]));
        let mut p = TarParser::new();
        p.push(tar.clone()).unwrap();
        let mut datas = Vec::new();
        while let Some(ev) = p.poll().unwrap() {
            if let TarEvent::Data(d) = ev {
                datas.push(d);
            }
        }
        assert_eq!(datas.len(), 1);
        assert_eq!(datas[0].as_ptr(), tar[512..].as_ptr());
    }

    #[test]
    fn pax_overrides_and_xattrs() {
        let long = "a/".repeat(150) + "file";
        let records = pax(&[
            ("path", long.as_bytes()),
            ("uid", b"4000000000"),
            ("gid", b"77"),
            ("mtime", b"1700000000.123456789123"),
            ("SCHILY.xattr.user.b", b"two"),
            ("SCHILY.xattr.security.capability", b"\x01\0\0\x02\n=\0"),
            ("SCHILY.xattr.user.b", b"second wins"),
            ("size", b"3"),
            ("comment", b"ignored"),
        ]);
        let tar = archive(&[
            &header("PaxHeaders/x", b'x', records.len() as u64),
            &records,
            &header("short", b'0', 999),
            b"abc",
        ]);
        for size in [1, 7, 512, tar.len()] {
            let (entries, _) = parse_all(&tar, size).unwrap();
            let (e, data) = &entries[0];
            assert_eq!(e.path, long.as_bytes());
            assert_eq!(e.uid, 4_000_000_000);
            assert_eq!(e.gid, 77);
            assert_eq!(
                e.mtime,
                Mtime {
                    secs: 1_700_000_000,
                    nanos: 123_456_789
                }
            );
            assert_eq!(e.size, 3);
            assert_eq!(data, b"abc");
            assert_eq!(e.offset, 0);
            let names: Vec<_> = e.xattrs.iter().map(|x| x.name.as_str()).collect();
            assert_eq!(names, ["security.capability", "user.b"]);
            assert_eq!(&e.xattrs[0].value[..], b"\x01\0\0\x02\n=\0");
            assert_eq!(&e.xattrs[1].value[..], b"second wins");
        }
    }

    #[test]
    fn gnu_long_names_win_over_pax_and_prefix_joins() {
        let long = "L".repeat(300);
        let link = "K".repeat(200);
        let records = pax(&[("path", b"pax-path"), ("linkpath", b"pax-link")]);
        let mut gnu = header(&long[..100], b'2', 0);
        gnu[257..263].copy_from_slice(b"ustar ");
        gnu[263..265].copy_from_slice(b" \0");
        // GNU headers keep atime here: it must not be read as a prefix.
        gnu[345..356].copy_from_slice(b"14000000000");
        set_checksum(&mut gnu);
        let mut ustar = header("name", b'0', 0);
        ustar[345..351].copy_from_slice(b"prefix");
        set_checksum(&mut ustar);
        let mut lname = long.clone().into_bytes();
        lname.push(0);
        let tar = archive(&[
            &header("././@LongLink", b'L', lname.len() as u64),
            &lname,
            &header("PaxHeaders/x", b'x', records.len() as u64),
            &records,
            &header("././@LongLink", b'K', link.len() as u64),
            link.as_bytes(),
            &gnu,
            &ustar,
        ]);
        let (entries, _) = parse_all(&tar, 13).unwrap();
        assert_eq!(entries[0].0.path, long.as_bytes());
        assert_eq!(entries[0].0.kind, EntryKind::Symlink);
        assert_eq!(entries[0].0.link_target.as_deref(), Some(link.as_bytes()));
        assert_eq!(entries[1].0.path, b"prefix/name");
        assert_eq!(entries[1].0.offset, 512 * 7);
    }

    #[test]
    fn header_only_kinds_have_no_data_and_devices_have_numbers() {
        let mut dev = header("dev/null", b'3', 0);
        dev[329..336].copy_from_slice(b"0000001");
        dev[337..344].copy_from_slice(b"0000003");
        set_checksum(&mut dev);
        let tar = archive(&[
            // a size on a hard link is ignored: no data follows
            &header("hl", b'1', 1234),
            &dev,
            &header("fifo", b'6', 0),
            &header("v7dir/", b'\0', 0),
        ]);
        let (entries, _) = parse_all(&tar, 64).unwrap();
        assert_eq!(entries[0].0.kind, EntryKind::HardLink);
        assert_eq!(entries[0].0.size, 0);
        assert_eq!(entries[0].0.link_target.as_deref(), Some(&b""[..]));
        assert_eq!(entries[1].0.device, Some(Device { major: 1, minor: 3 }));
        assert_eq!(entries[2].0.kind, EntryKind::Fifo);
        assert_eq!(entries[3].0.kind, EntryKind::Directory);
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_octal(b"  0755 \0"), Some(0o755));
        assert_eq!(parse_octal(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_octal(b"12 34"), None);
        assert_eq!(parse_octal(b"9"), None);
        assert_eq!(parse_octal(b"77777777777777777777777"), None);
        // base-256
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[4..].copy_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(parse_numeric(&f), Some(1 << 40));
        assert_eq!(parse_numeric(&[0xff; 8]), Some(-1));
        let mut f = [0xffu8; 12];
        f[11] = 0xfe;
        assert_eq!(parse_numeric(&f), Some(-2));
        assert_eq!(parse_numeric(&[0x80, 0xff, 0, 0, 0, 0, 0, 0, 0]), None);
        // PAX times
        let t = |s: &[u8]| parse_pax_time(s);
        assert_eq!(t(b"5"), Some(Mtime { secs: 5, nanos: 0 }));
        assert_eq!(
            t(b"5.5"),
            Some(Mtime {
                secs: 5,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            t(b"-1.5"),
            Some(Mtime {
                secs: -2,
                nanos: 500_000_000
            })
        );
        assert_eq!(t(b"-3"), Some(Mtime { secs: -3, nanos: 0 }));
        assert_eq!(t(b"1e5"), None);
        assert_eq!(t(b".5"), None);
        assert_eq!(t(b"99999999999999999999"), None);
    }

    #[test]
    fn base256_size_and_negative_mtime() {
        let mut h = header("big", b'0', 0);
        h[124] = 0x80;
        h[125..136].fill(0);
        h[135] = 3;
        h[136..148].fill(0xff);
        set_checksum(&mut h);
        let tar = archive(&[&h, b"xyz"]);
        let (entries, _) = parse_all(&tar, 100).unwrap();
        assert_eq!(entries[0].0.size, 3);
        assert_eq!(entries[0].0.mtime.secs, -1);
        assert_eq!(entries[0].1, b"xyz");
    }

    #[test]
    fn errors_are_typed() {
        let good = archive(&[&header("f", b'0', 5), b"hello"]);
        // checksum
        let mut bad = good.clone();
        bad[0] = b'g';
        assert!(matches!(
            parse_all(&bad, 512),
            Err(TarError::BadChecksum { offset: 0, .. })
        ));
        // truncations
        for (cut, what) in [(100, "header"), (515, "content"), (1000, "padding")] {
            assert_eq!(
                parse_all(&good[..cut], 64).unwrap_err(),
                TarError::Truncated {
                    offset: cut as u64,
                    what
                }
            );
        }
        assert_eq!(
            parse_all(&good[..1024], 64).unwrap_err(),
            TarError::MissingEnd { offset: 1024 }
        );
        assert_eq!(
            parse_all(&good[..1536], 64).unwrap_err(),
            TarError::MissingEnd { offset: 1536 }
        );
        // lone zero block
        let mut bad = good[..1536].to_vec();
        bad.extend_from_slice(&header("g", b'0', 0));
        assert_eq!(
            parse_all(&bad, 64).unwrap_err(),
            TarError::LoneZeroBlock { offset: 1024 }
        );
        // dangling extension
        let r = pax(&[("path", b"x")]);
        let bad = archive(&[&header("p", b'x', r.len() as u64), &r]);
        assert_eq!(
            parse_all(&bad, 64).unwrap_err(),
            TarError::DanglingExtension { offset: 0 }
        );
        // oversized extension
        let bad = archive(&[&header("p", b'L', MAX_EXTENSION + 1)]);
        assert!(matches!(
            parse_all(&bad, 64),
            Err(TarError::ExtensionTooLarge { .. })
        ));
        // bad PAX
        for body in [
            &b"5 a=b"[..],
            b"x a=b\n",
            b"3 a=b\n",
            b"6 ab\n",
            b"100 a=b\n",
        ] {
            let bad = archive(&[
                &header("p", b'x', body.len() as u64),
                body,
                &header("f", b'0', 0),
            ]);
            assert!(
                matches!(parse_all(&bad, 64), Err(TarError::BadPax { offset: 0, .. })),
                "{body:?}"
            );
        }
        let r = pax(&[("uid", b"-1")]);
        let bad = archive(&[
            &header("p", b'x', r.len() as u64),
            &r,
            &header("f", b'0', 0),
        ]);
        assert!(matches!(
            parse_all(&bad, 64),
            Err(TarError::BadNumber { field: "uid", .. })
        ));
        // sparse
        let bad = archive(&[&header("s", b'S', 0)]);
        assert!(matches!(
            parse_all(&bad, 64),
            Err(TarError::Unsupported { .. })
        ));
        // errors latch
        let mut p = TarParser::new();
        p.push_slice(&good[..100]).unwrap();
        assert_eq!(p.poll(), Ok(None));
        assert!(p.finish().is_err());
        assert!(p.poll().is_err());
    }

    #[test]
    fn later_extensions_replace_earlier_ones_and_globals_drop_them() {
        let x1 = pax(&[("path", b"first"), ("uid", b"9")]);
        let x2 = pax(&[("gid", b"8")]);
        let g = pax(&[("comment", b"c")]);
        let tar = archive(&[
            &header("p1", b'x', x1.len() as u64),
            &x1,
            &header("p2", b'x', x2.len() as u64),
            &x2,
            &header("a", b'0', 0),
            &header("p3", b'x', x1.len() as u64),
            &x1,
            &header("g", b'g', g.len() as u64),
            &g,
            &header("b", b'0', 0),
        ]);
        let (entries, _) = parse_all(&tar, 100).unwrap();
        let e = &entries[0].0;
        assert_eq!((&e.path[..], e.uid, e.gid), (&b"a"[..], 1000, 8));
        assert_eq!(e.offset, 0);
        let e = &entries[1].0;
        assert_eq!((&e.path[..], e.uid, e.gid), (&b"b"[..], 1000, 1000));
        assert_eq!(e.offset, 512 * 9);
    }

    #[test]
    fn global_headers_are_kept_not_applied() {
        let g = pax(&[("comment", b"commit 123"), ("uid", b"5")]);
        let tar = archive(&[
            &header("pax_global_header", b'g', g.len() as u64),
            &g,
            &header("f", b'0', 0),
        ]);
        let mut p = TarParser::new();
        p.push_slice(&tar).unwrap();
        let mut entries = vec![];
        while let Some(ev) = p.poll().unwrap() {
            if let TarEvent::Entry(e) = ev {
                entries.push(e);
            }
        }
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].uid, 1000);
        assert_eq!(entries[0].offset, 1024);
        assert_eq!(p.globals().len(), 2);
        assert_eq!(p.globals()[0].0, "comment");
        p.finish().unwrap();
    }

    #[test]
    fn trailing_padding_after_the_marker_is_ignored() {
        let mut tar = archive(&[&header("f", b'0', 0)]);
        let end = tar.len() as u64;
        tar.resize(10240, 0);
        let (_, s) = parse_all(&tar, 1000).unwrap();
        assert_eq!(s.end_offset, end);
        assert_eq!(s.trailing, 10240 - end);
    }
}
