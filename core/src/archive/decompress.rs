//! Push decoders for layer streams: uncompressed, gzip (multi-member) and zstd (multi-frame).
//!
//! A [`Decoder`] takes compressed input in chunks of any size ([`Decoder::push`]) and hands
//! decompressed output back in chunks of at most [`Decoder::chunk_size`] bytes
//! ([`Decoder::poll`]; uncompressed input passes through in the chunks it came in). It never does IO and never holds more than one output chunk: a small
//! input that inflates hugely is drained chunk by chunk, so a decompression bomb costs time,
//! not memory. [`Decoder::finish`] declares the end of input and checks that the stream ended
//! where a stream may end; it returns the diff ID (sha256 of the uncompressed bytes) and the
//! digest of the compressed bytes, both computed on the fly.
//!
//! ```
//! use berth_core::archive::{Compression, Decoder};
//! use bytes::Bytes;
//!
//! # fn gzip(data: &[u8]) -> Vec<u8> {
//! #     use std::io::Write;
//! #     let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
//! #     e.write_all(data).unwrap();
//! #     e.finish().unwrap()
//! # }
//! let blob = gzip(b"hello, layer");
//! let mut d = Decoder::new(Compression::Gzip);
//! let mut out = Vec::new();
//! for piece in blob.chunks(3) {
//!     d.push(Bytes::copy_from_slice(piece)).unwrap();
//!     while let Some(chunk) = d.poll().unwrap() {
//!         out.extend_from_slice(&chunk);
//!     }
//! }
//! let done = d.finish().unwrap();
//! assert_eq!(out, b"hello, layer");
//! assert_eq!(done.diff_id, berth_core::Digest::sha256(b"hello, layer"));
//! assert_eq!(done.compressed_digest, Some(berth_core::Digest::sha256(&blob)));
//! ```
//!
//! Errors are latched: once `push`, `poll` or `finish` has returned an error, every later call
//! returns the same error.
//!
//! Stream rules, as Go's readers (containerd's) apply them:
//!
//! * [`Compression::None`] passes pushed chunks through as they are (no copy, no re-chunking).
//! * gzip: members may be concatenated; anything else after a member, zero padding included,
//!   is a [`DecodeError::GzipHeader`]; each member's CRC-32 and length are checked, and the
//!   header CRC when the header carries one. An empty input is [`DecodeError::Truncated`].
//! * zstd: frames and skippable frames may be concatenated. The window is limited to libzstd's
//!   default (2^27 bytes, 128 MiB): frames made with `zstd --long=31` are refused as
//!   [`DecodeError::Corrupt`] rather than allowed to claim 2 GiB. Frame checksums are checked
//!   when present, and so is a content size a frame header declares. Every frame is decoded
//!   block by block, never by libzstd's one-pass shortcut, so that the outcome does not depend
//!   on how the input is chunked. An empty input is [`DecodeError::Truncated`].

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, Bytes};
use flate2::{Crc, Decompress, FlushDecompress, Status};
use zstd::zstd_safe::{self, DCtx, InBuffer, OutBuffer};

use crate::digest::{Algorithm, Digest, Hasher};

/// Default size of the output chunks handed out by [`Decoder::poll`].
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;

/// The compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// Not compressed: the bytes pass through untouched (and uncopied).
    None,
    /// gzip (RFC 1952), one member or several concatenated.
    Gzip,
    /// Zstandard, one frame or several concatenated (skippable frames allowed).
    Zstd,
}

impl Compression {
    /// Guesses the compression from the first bytes of a stream, by magic number, as
    /// containerd's `DetectCompression` does. Returns `None` if `prefix` is too short to tell
    /// (fewer than 4 bytes) and the stream might still be gzip or zstd; anything without a
    /// known magic is [`Compression::None`].
    #[must_use]
    pub fn sniff(prefix: &[u8]) -> Option<Compression> {
        const GZIP: [u8; 3] = [0x1f, 0x8b, 0x08];
        const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
        let n = prefix.len().min(4);
        if prefix.len() >= 3 && prefix[..3] == GZIP {
            return Some(Compression::Gzip);
        }
        if prefix.len() >= 4 && prefix[..4] == ZSTD {
            return Some(Compression::Zstd);
        }
        // A zstd skippable frame: 0x184D2A5? little endian.
        if prefix.len() >= 4 && prefix[0] & 0xf0 == 0x50 && prefix[1..4] == [0x2a, 0x4d, 0x18] {
            return Some(Compression::Zstd);
        }
        let could_be = |magic: &[u8]| prefix[..n.min(magic.len())] == magic[..n.min(magic.len())];
        if n < 4 && (could_be(&GZIP) || could_be(&ZSTD) || n == 0) {
            return None;
        }
        Some(Compression::None)
    }

    /// The lowercase name: `none`, `gzip` or `zstd`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a compressed stream could not be decoded. Offsets count bytes of compressed input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A gzip member header is malformed (bad magic, unknown method, reserved flags, bad CRC).
    #[error("bad gzip header at input offset {offset}: {reason}")]
    GzipHeader {
        /// Offset of the offending byte.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A gzip member's trailer does not match its data.
    #[error(
        "gzip member trailer at input offset {offset}: stored {field} {stored:#010x}, \
         computed {computed:#010x}"
    )]
    GzipTrailer {
        /// Offset of the trailer.
        offset: u64,
        /// `crc32` or `isize`.
        field: &'static str,
        /// The value stored in the trailer.
        stored: u32,
        /// The value computed from the data.
        computed: u32,
    },
    /// The compressed data is corrupt.
    #[error("corrupt {codec} data near input offset {offset}: {reason}")]
    Corrupt {
        /// The codec.
        codec: Compression,
        /// Input offset at which the decoder gave up (approximate: the decoder may have read
        /// ahead within its input window).
        offset: u64,
        /// The decoder's diagnosis.
        reason: String,
    },
    /// The input ended inside a member or frame (or was empty).
    #[error("{codec} stream truncated: input ended at offset {offset} inside a {what}")]
    Truncated {
        /// The codec.
        codec: Compression,
        /// Total input length.
        offset: u64,
        /// What was being read: `header`, `member`, `frame`, `trailer`, or `stream` for an
        /// empty input.
        what: &'static str,
    },
    /// The decoder could not allocate its state.
    #[error("{codec} decoder state could not be allocated")]
    OutOfMemory {
        /// The codec.
        codec: Compression,
    },
    /// `finish` was called while input or output was still pending: drain `poll` first.
    #[error("finish called with {pending_input} input bytes not yet decoded; drain poll first")]
    NotDrained {
        /// Input bytes still queued.
        pending_input: u64,
    },
    /// `push` or `poll` was called after `finish`.
    #[error("decoder already finished")]
    Finished,
}

/// What [`Decoder::finish`] reports about a complete stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The codec.
    pub compression: Compression,
    /// Bytes of compressed input.
    pub compressed_len: u64,
    /// Digest of the compressed input (the blob digest), unless disabled with
    /// [`Decoder::hash_compressed`]. For [`Compression::None`] it equals `diff_id`.
    pub compressed_digest: Option<Digest>,
    /// Bytes of uncompressed output.
    pub uncompressed_len: u64,
    /// sha256 of the uncompressed output: the layer's diff ID.
    pub diff_id: Digest,
    /// gzip members or zstd frames (skippable frames included) decoded; 0 for `None`.
    pub members: u64,
}

/// A push decoder: compressed chunks in, decompressed chunks out. See the module docs.
pub struct Decoder {
    codec: Codec,
    input: VecDeque<Bytes>,
    queued: u64,
    /// Input bytes consumed by the codec so far.
    in_pos: u64,
    /// Input bytes pushed so far.
    in_len: u64,
    in_hash: Option<Hasher>,
    out_hash: Hasher,
    out_len: u64,
    chunk: usize,
    out: Vec<u8>,
    /// The codec may hold output it could not hand out for lack of room.
    flush_pending: bool,
    error: Option<DecodeError>,
    finished: bool,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("compression", &self.compression())
            .field("in_len", &self.in_len)
            .field("in_pos", &self.in_pos)
            .field("out_len", &self.out_len)
            .field("error", &self.error)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

enum Codec {
    None,
    Gzip(Box<Gzip>),
    Zstd(Box<Zstd>),
    /// State allocation failed; the latched error says so.
    Broken(Compression),
}

impl Decoder {
    /// A decoder for `compression`, with [`DEFAULT_CHUNK_SIZE`] output chunks, hashing both the
    /// compressed and the uncompressed stream.
    #[must_use]
    pub fn new(compression: Compression) -> Self {
        let mut error = None;
        let codec = match compression {
            Compression::None => Codec::None,
            Compression::Gzip => Codec::Gzip(Box::new(Gzip::new())),
            Compression::Zstd => match Zstd::new() {
                Some(z) => Codec::Zstd(Box::new(z)),
                None => {
                    error = Some(DecodeError::OutOfMemory { codec: compression });
                    Codec::Broken(compression)
                }
            },
        };
        Decoder {
            in_hash: match codec {
                Codec::None => None,
                _ => Some(Hasher::new(Algorithm::Sha256)),
            },
            codec,
            input: VecDeque::new(),
            queued: 0,
            in_pos: 0,
            in_len: 0,
            out_hash: Hasher::new(Algorithm::Sha256),
            out_len: 0,
            chunk: DEFAULT_CHUNK_SIZE,
            out: Vec::new(),
            flush_pending: false,
            error,
            finished: false,
        }
    }

    /// Sets the maximum size of output chunks (at least 512 bytes; builder style).
    #[must_use]
    pub fn with_chunk_size(mut self, size: usize) -> Self {
        self.chunk = size.max(512);
        self
    }

    /// Whether to hash the compressed input (on by default). A caller that verified the blob
    /// digest elsewhere (the content store does on commit) can save the CPU.
    #[must_use]
    pub fn hash_compressed(mut self, on: bool) -> Self {
        if matches!(self.codec, Codec::None) {
            return self;
        }
        self.in_hash = on.then(|| Hasher::new(Algorithm::Sha256));
        self
    }

    /// The codec.
    #[must_use]
    pub fn compression(&self) -> Compression {
        match &self.codec {
            Codec::None => Compression::None,
            Codec::Gzip(_) => Compression::Gzip,
            Codec::Zstd(_) => Compression::Zstd,
            Codec::Broken(c) => *c,
        }
    }

    /// The maximum size of an output chunk.
    #[must_use]
    pub fn chunk_size(&self) -> usize {
        self.chunk
    }

    /// Compressed bytes pushed so far.
    #[must_use]
    pub fn input_len(&self) -> u64 {
        self.in_len
    }

    /// Compressed bytes consumed by the codec so far (the offset errors are reported at).
    #[must_use]
    pub fn input_consumed(&self) -> u64 {
        self.in_pos
    }

    /// Uncompressed bytes handed out so far.
    #[must_use]
    pub fn output_len(&self) -> u64 {
        self.out_len
    }

    /// Queues a chunk of compressed input (not copied). Decoding happens in [`Decoder::poll`].
    pub fn push(&mut self, data: Bytes) -> Result<(), DecodeError> {
        self.check()?;
        if data.is_empty() {
            return Ok(());
        }
        if let Some(h) = &mut self.in_hash {
            h.update(&data);
        }
        self.in_len += data.len() as u64;
        self.queued += data.len() as u64;
        self.input.push_back(data);
        Ok(())
    }

    /// Queues a copy of `data`.
    pub fn push_slice(&mut self, data: &[u8]) -> Result<(), DecodeError> {
        self.push(Bytes::copy_from_slice(data))
    }

    /// The next chunk of decompressed output, or `None` when all queued input is decoded and
    /// more is needed. Call it until it returns `None` after every `push`.
    pub fn poll(&mut self) -> Result<Option<Bytes>, DecodeError> {
        self.check()?;
        let r = match &mut self.codec {
            Codec::None => Ok(self.input.pop_front().inspect(|b| {
                self.in_pos += b.len() as u64;
                self.queued -= b.len() as u64;
            })),
            Codec::Gzip(_) | Codec::Zstd(_) => self.decode(),
            Codec::Broken(c) => Err(DecodeError::OutOfMemory { codec: *c }),
        };
        match r {
            Ok(Some(chunk)) => {
                self.out_hash.update(&chunk);
                self.out_len += chunk.len() as u64;
                Ok(Some(chunk))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Declares the end of input. Succeeds if the stream ended at a member or frame boundary
    /// and `poll` had drained everything, and reports the digests.
    pub fn finish(&mut self) -> Result<Decoded, DecodeError> {
        self.check()?;
        let r = self.finish_inner();
        match &r {
            Ok(_) => self.finished = true,
            Err(e) => self.error = Some(e.clone()),
        }
        r
    }

    fn finish_inner(&mut self) -> Result<Decoded, DecodeError> {
        if self.queued > 0 || self.flush_pending || !self.out.is_empty() {
            return Err(DecodeError::NotDrained {
                pending_input: self.queued,
            });
        }
        let codec = self.compression();
        let truncated = |what| DecodeError::Truncated {
            codec,
            offset: self.in_len,
            what,
        };
        let members = match &self.codec {
            Codec::None => 0,
            Codec::Gzip(g) => match g.phase {
                _ if self.in_len == 0 => return Err(truncated("stream")),
                GzPhase::Between => g.members,
                GzPhase::Header(_) => return Err(truncated("header")),
                GzPhase::Body => return Err(truncated("member")),
                GzPhase::Trailer { .. } => return Err(truncated("trailer")),
            },
            Codec::Zstd(z) => {
                if self.in_len == 0 {
                    return Err(truncated("stream"));
                }
                if z.in_frame() {
                    return Err(truncated("frame"));
                }
                z.frames
            }
            Codec::Broken(c) => return Err(DecodeError::OutOfMemory { codec: *c }),
        };
        let diff_id = self.out_hash.digest();
        Ok(Decoded {
            compression: codec,
            compressed_len: self.in_len,
            compressed_digest: match &self.codec {
                Codec::None => Some(diff_id),
                _ => self.in_hash.as_ref().map(Hasher::digest),
            },
            uncompressed_len: self.out_len,
            diff_id,
            members,
        })
    }

    fn check(&self) -> Result<(), DecodeError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.finished {
            return Err(DecodeError::Finished);
        }
        Ok(())
    }

    /// Consumes `n` bytes of the front input chunk.
    fn advance(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let front = self
            .input
            .front_mut()
            .expect("advance within the front chunk");
        front.advance(n);
        if front.is_empty() {
            self.input.pop_front();
        }
        self.in_pos += n as u64;
        self.queued -= n as u64;
    }

    /// Runs the gzip or zstd codec until an output chunk is full or input runs out.
    fn decode(&mut self) -> Result<Option<Bytes>, DecodeError> {
        if self.out.capacity() == 0 {
            self.out = Vec::with_capacity(self.chunk);
        }
        loop {
            if self.out.len() == self.out.capacity() {
                break;
            }
            let progressed = match &mut self.codec {
                Codec::Gzip(_) => self.step_gzip()?,
                Codec::Zstd(_) => self.step_zstd()?,
                _ => false,
            };
            if !progressed {
                break;
            }
        }
        if self.out.is_empty() {
            return Ok(None);
        }
        Ok(Some(Bytes::from(std::mem::take(&mut self.out))))
    }

    /// One gzip step. Returns whether anything was consumed or produced.
    fn step_gzip(&mut self) -> Result<bool, DecodeError> {
        let Codec::Gzip(g) = &mut self.codec else {
            return Ok(false);
        };
        let in_pos = self.in_pos;
        let front: &[u8] = match self.input.front() {
            Some(f) => f,
            None if matches!(g.phase, GzPhase::Body) && self.flush_pending => &[],
            None => return Ok(false),
        };
        match &mut g.phase {
            GzPhase::Between => {
                g.phase = GzPhase::Header(GzHeader::default());
                Ok(true)
            }
            GzPhase::Header(h) => {
                let used = h.feed(front, in_pos)?;
                if h.done() {
                    g.inflate.reset(false);
                    g.crc.reset();
                    g.phase = GzPhase::Body;
                }
                self.advance(used);
                Ok(true)
            }
            GzPhase::Body => {
                let (in0, out0) = (g.inflate.total_in(), self.out.len());
                let status = g
                    .inflate
                    .decompress_vec(front, &mut self.out, FlushDecompress::None)
                    .map_err(|e| DecodeError::Corrupt {
                        codec: Compression::Gzip,
                        offset: in_pos + (g.inflate.total_in() - in0),
                        reason: e.message().unwrap_or("invalid deflate data").to_owned(),
                    })?;
                let used = (g.inflate.total_in() - in0) as usize;
                let made = self.out.len() - out0;
                g.crc.update(&self.out[out0..]);
                self.flush_pending = self.out.len() == self.out.capacity();
                if status == Status::StreamEnd {
                    g.phase = GzPhase::Trailer {
                        buf: [0; 8],
                        have: 0,
                    };
                    self.flush_pending = false;
                } else if used == 0 && made == 0 && !front.is_empty() {
                    return Err(DecodeError::Corrupt {
                        codec: Compression::Gzip,
                        offset: in_pos,
                        reason: "inflate made no progress".to_owned(),
                    });
                }
                self.advance(used);
                Ok(used > 0 || made > 0 || status == Status::StreamEnd)
            }
            GzPhase::Trailer { buf, have } => {
                let n = (8 - *have).min(front.len());
                buf[*have..*have + n].copy_from_slice(&front[..n]);
                *have += n;
                if *have == 8 {
                    let trailer_at = in_pos + n as u64 - 8;
                    let stored_crc = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    let stored_len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    if stored_crc != g.crc.sum() {
                        return Err(DecodeError::GzipTrailer {
                            offset: trailer_at,
                            field: "crc32",
                            stored: stored_crc,
                            computed: g.crc.sum(),
                        });
                    }
                    if stored_len != g.crc.amount() {
                        return Err(DecodeError::GzipTrailer {
                            offset: trailer_at + 4,
                            field: "isize",
                            stored: stored_len,
                            computed: g.crc.amount(),
                        });
                    }
                    g.members += 1;
                    g.phase = GzPhase::Between;
                }
                self.advance(n);
                Ok(true)
            }
        }
    }

    /// One zstd step. Returns whether anything was consumed or produced.
    fn step_zstd(&mut self) -> Result<bool, DecodeError> {
        let Codec::Zstd(z) = &mut self.codec else {
            return Ok(false);
        };
        let in_pos = self.in_pos;
        let corrupt = |offset: u64, reason: String| DecodeError::Corrupt {
            codec: Compression::Zstd,
            offset,
            reason,
        };
        let Some(frame) = &mut z.frame else {
            // Between frames: gather the next frame header, then hand it to libzstd alone (see
            // `Zstd`).
            let Some(front) = self.input.front() else {
                return Ok(false);
            };
            let used = z.gather(front, in_pos)?;
            if z.head_len == z.header_len() {
                let head = &z.head[..z.head_len];
                let start = in_pos + used as u64 - head.len() as u64;
                let mut inb = InBuffer::around(head);
                let out0 = self.out.len();
                let hint = {
                    let mut outb = OutBuffer::around_pos(&mut self.out, out0);
                    z.dctx.decompress_stream(&mut outb, &mut inb)
                };
                let hint = hint
                    .map_err(|code| corrupt(start, zstd_safe::get_error_name(code).to_owned()))?;
                if inb.pos() != head.len() || self.out.len() != out0 {
                    return Err(corrupt(
                        start,
                        "zstd did not take the frame header".to_owned(),
                    ));
                }
                let declared = if head[0] & 0xf0 == 0x50 {
                    None
                } else {
                    zstd_safe::get_frame_content_size(head).ok().flatten()
                };
                z.head_len = 0;
                if hint == 0 {
                    // An empty skippable frame ends with its header.
                    z.frames += 1;
                } else {
                    z.frame = Some(ZstdFrame {
                        declared,
                        produced: 0,
                    });
                }
            }
            self.advance(used);
            return Ok(true);
        };
        let front: &[u8] = match self.input.front() {
            Some(f) => f,
            None if self.flush_pending => &[],
            None => return Ok(false),
        };
        let out0 = self.out.len();
        let mut inb = InBuffer::around(front);
        let hint = {
            let mut outb = OutBuffer::around_pos(&mut self.out, out0);
            z.dctx.decompress_stream(&mut outb, &mut inb)
        };
        let used = inb.pos();
        let at = in_pos + used as u64;
        let hint = hint.map_err(|code| corrupt(at, zstd_safe::get_error_name(code).to_owned()))?;
        let made = self.out.len() - out0;
        frame.produced += made as u64;
        if let Some(declared) = frame.declared {
            if frame.produced > declared || hint == 0 && frame.produced != declared {
                return Err(corrupt(
                    at,
                    format!(
                        "frame content size differs from the {declared} bytes its header declares"
                    ),
                ));
            }
        }
        if hint == 0 {
            z.frames += 1;
            z.frame = None;
            self.flush_pending = false;
        } else {
            self.flush_pending = self.out.len() == self.out.capacity();
        }
        if used == 0 && made == 0 && !front.is_empty() {
            return Err(corrupt(in_pos, "zstd made no progress".to_owned()));
        }
        self.advance(used);
        Ok(used > 0 || made > 0)
    }
}

struct Gzip {
    inflate: Decompress,
    crc: Crc,
    phase: GzPhase,
    members: u64,
}

impl Gzip {
    fn new() -> Self {
        Gzip {
            inflate: Decompress::new(false),
            crc: Crc::new(),
            phase: GzPhase::Header(GzHeader::default()),
            members: 0,
        }
    }
}

enum GzPhase {
    Header(GzHeader),
    Body,
    Trailer {
        buf: [u8; 8],
        have: usize,
    },
    /// After a member's trailer: the stream may end here, or another member follows.
    Between,
}

const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

/// An incremental RFC 1952 member header parser.
struct GzHeader {
    stage: HStage,
    fixed: [u8; 10],
    have: usize,
    flags: u8,
    /// Bytes left in the current variable-length field (FEXTRA length or data, FHCRC).
    left: usize,
    xlen: [u8; 2],
    hcrc: [u8; 2],
    crc: Crc,
}

impl Default for GzHeader {
    fn default() -> Self {
        GzHeader {
            stage: HStage::Fixed,
            fixed: [0; 10],
            have: 0,
            flags: 0,
            left: 0,
            xlen: [0; 2],
            hcrc: [0; 2],
            crc: Crc::new(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HStage {
    Fixed,
    XLen,
    Extra,
    Name,
    Comment,
    Hcrc,
    Done,
}

impl GzHeader {
    fn done(&self) -> bool {
        self.stage == HStage::Done
    }

    /// Consumes header bytes from `data` (which starts at input offset `at`); returns how many.
    fn feed(&mut self, data: &[u8], at: u64) -> Result<usize, DecodeError> {
        let mut i = 0;
        let bad = |offset: u64, reason| DecodeError::GzipHeader { offset, reason };
        while i < data.len() && self.stage != HStage::Done {
            let (start, stage) = (i, self.stage);
            match stage {
                HStage::Fixed => {
                    let n = (10 - self.have).min(data.len() - i);
                    self.fixed[self.have..self.have + n].copy_from_slice(&data[i..i + n]);
                    // Check the magic as soon as its bytes arrive, so that garbage after a
                    // member is reported at once, at the right offset.
                    for k in self.have..self.have + n {
                        let offset = at + (i + k - self.have) as u64;
                        match k {
                            0 if self.fixed[0] != 0x1f => return Err(bad(offset, "not gzip")),
                            1 if self.fixed[1] != 0x8b => return Err(bad(offset, "not gzip")),
                            2 if self.fixed[2] != 8 => {
                                return Err(bad(offset, "compression method is not deflate"))
                            }
                            3 if self.fixed[3] & 0xe0 != 0 => {
                                return Err(bad(offset, "reserved flag bits set"))
                            }
                            _ => {}
                        }
                    }
                    self.have += n;
                    i += n;
                    if self.have == 10 {
                        self.flags = self.fixed[3];
                        self.have = 0;
                        self.stage = HStage::XLen;
                        self.next_stage_from(HStage::XLen);
                    }
                }
                HStage::XLen => {
                    self.xlen[self.have] = data[i];
                    self.have += 1;
                    i += 1;
                    if self.have == 2 {
                        self.have = 0;
                        self.left = u16::from_le_bytes(self.xlen) as usize;
                        self.stage = HStage::Extra;
                        if self.left == 0 {
                            self.next_stage_from(HStage::Name);
                        }
                    }
                }
                HStage::Extra => {
                    let n = self.left.min(data.len() - i);
                    self.left -= n;
                    i += n;
                    if self.left == 0 {
                        self.next_stage_from(HStage::Name);
                    }
                }
                HStage::Name | HStage::Comment => match data[i..].iter().position(|&b| b == 0) {
                    Some(p) => {
                        i += p + 1;
                        let next = if self.stage == HStage::Name {
                            HStage::Comment
                        } else {
                            HStage::Hcrc
                        };
                        self.next_stage_from(next);
                    }
                    None => i = data.len(),
                },
                HStage::Hcrc => {
                    self.hcrc[self.have] = data[i];
                    self.have += 1;
                    i += 1;
                    if self.have == 2 {
                        let stored = u16::from_le_bytes(self.hcrc);
                        if u32::from(stored) != self.crc.sum() & 0xffff {
                            return Err(bad(at + i as u64 - 2, "header CRC mismatch"));
                        }
                        self.stage = HStage::Done;
                    }
                }
                HStage::Done => {}
            }
            // Everything before the FHCRC field is covered by the header CRC.
            if stage != HStage::Hcrc {
                self.crc.update(&data[start..i]);
            }
        }
        Ok(i)
    }

    /// Moves to the first stage at or after `from` whose flag is set.
    fn next_stage_from(&mut self, from: HStage) {
        let order = [
            (HStage::XLen, FEXTRA),
            (HStage::Name, FNAME),
            (HStage::Comment, FCOMMENT),
            (HStage::Hcrc, FHCRC),
        ];
        let start = order.iter().position(|(s, _)| *s == from).unwrap_or(0);
        self.have = 0;
        self.stage = order[start..]
            .iter()
            .find(|(_, f)| self.flags & f != 0)
            .map_or(HStage::Done, |(s, _)| *s);
    }
}

/// The magic number of a zstd frame, as it appears in the stream.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The longest zstd frame header (`ZSTD_FRAMEHEADERSIZE_MAX`): magic number, frame header
/// descriptor, window descriptor, 4-byte dictionary ID and 8-byte content size.
const ZSTD_HEADER_MAX: usize = 18;

/// libzstd's streaming decoder, fed so that its result cannot depend on chunking.
///
/// `ZSTD_decompressStream` has a one-pass shortcut: in the call in which it completes a frame
/// header, if the frame declares a content size, the output buffer has room for all of it and
/// the call's input holds a whole frame, it decodes that frame with the one-shot
/// `ZSTD_decompress` path instead of block by block. The two paths check different things:
/// the one-pass path checks the declared content size always (block by block, libzstd skips
/// the check when the last block is empty) but checks neither the window limit nor the block
/// size limit. Whether the shortcut is taken depends on where pushes and output chunks end,
/// and so did the result. Worse, the shortcut reads the "whole frame" from the first byte of
/// the call's input, which is the middle of the header when the header spans two calls.
///
/// So every frame header is gathered here (up to [`ZSTD_HEADER_MAX`] bytes) and handed to
/// libzstd alone, in one call that starts at the frame's first byte: that input never holds a
/// whole frame, the shortcut is never taken, and every frame is decoded block by block.
/// The check that path lacks, a declared content size against the bytes the frame holds, is
/// made here for every frame.
struct Zstd {
    dctx: DCtx<'static>,
    /// The header of the next frame, `head_len` bytes of it gathered so far.
    head: [u8; ZSTD_HEADER_MAX],
    head_len: usize,
    /// The frame whose header libzstd has taken, until it ends.
    frame: Option<ZstdFrame>,
    frames: u64,
}

struct ZstdFrame {
    /// The content size its header declares (`None` if it declares none, or is skippable).
    declared: Option<u64>,
    /// Bytes it has produced so far.
    produced: u64,
}

impl Zstd {
    fn new() -> Option<Self> {
        Some(Zstd {
            dctx: DCtx::try_create()?,
            head: [0; ZSTD_HEADER_MAX],
            head_len: 0,
            frame: None,
            frames: 0,
        })
    }

    /// Whether input of an unfinished frame has been consumed.
    fn in_frame(&self) -> bool {
        self.head_len > 0 || self.frame.is_some()
    }

    /// The length of the header being gathered: 5 until its first 5 bytes (magic number and
    /// frame header descriptor) are in, then its full length (as `ZSTD_frameHeaderSize`).
    fn header_len(&self) -> usize {
        if self.head_len < 5 {
            return 5;
        }
        if self.head[0] & 0xf0 == 0x50 {
            // A skippable frame: magic number and a 4-byte length.
            return 8;
        }
        let fhd = self.head[4];
        let single_segment = fhd & 0x20 != 0;
        let dict_id = [0, 1, 2, 4][usize::from(fhd & 3)];
        let content_size = [usize::from(single_segment), 2, 4, 8][usize::from(fhd >> 6)];
        5 + usize::from(!single_segment) + dict_id + content_size
    }

    /// Gathers header bytes from `data` (which starts at input offset `at`); returns how many
    /// it took. A wrong magic number is refused as soon as its bytes arrive, as libzstd does.
    fn gather(&mut self, data: &[u8], at: u64) -> Result<usize, DecodeError> {
        let mut i = 0;
        while i < data.len() && self.head_len < self.header_len() {
            let have = self.head_len;
            let n = (self.header_len() - have).min(data.len() - i);
            self.head[have..have + n].copy_from_slice(&data[i..i + n]);
            let magic = if self.head[0] & 0xf0 == 0x50 {
                [self.head[0], 0x2a, 0x4d, 0x18]
            } else {
                ZSTD_MAGIC
            };
            if let Some(k) = (have..(have + n).min(4)).find(|&k| self.head[k] != magic[k]) {
                return Err(DecodeError::Corrupt {
                    codec: Compression::Zstd,
                    offset: at + (i + k - have) as u64,
                    reason: "Unknown frame descriptor".to_owned(),
                });
            }
            self.head_len += n;
            i += n;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    /// Decodes `input` pushed in pieces of `size` bytes; returns output and the summary.
    fn decode(
        c: Compression,
        input: &[u8],
        size: usize,
    ) -> Result<(Vec<u8>, Decoded), DecodeError> {
        let mut d = Decoder::new(c).with_chunk_size(1000);
        let mut out = Vec::new();
        for piece in input.chunks(size.max(1)) {
            d.push_slice(piece)?;
            while let Some(chunk) = d.poll()? {
                assert!(chunk.len() <= 1000);
                out.extend_from_slice(&chunk);
            }
        }
        let s = d.finish()?;
        Ok((out, s))
    }

    fn sample() -> Vec<u8> {
        (0..50_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn gzip_round_trips_in_any_chunking() {
        let data = sample();
        let gz = gzip(&data);
        for size in [1, 2, 7, 10, 11, 512, 4096, gz.len()] {
            let (out, s) = decode(Compression::Gzip, &gz, size).unwrap();
            assert_eq!(out, data, "chunk {size}");
            assert_eq!(s.diff_id, Digest::sha256(&data));
            assert_eq!(s.compressed_digest, Some(Digest::sha256(&gz)));
            assert_eq!(s.uncompressed_len, data.len() as u64);
            assert_eq!(s.compressed_len, gz.len() as u64);
            assert_eq!(s.members, 1);
        }
    }

    #[test]
    fn gzip_multi_member_and_optional_header_fields() {
        let mut gz = gzip(b"first ");
        // A member with FEXTRA, FNAME, FCOMMENT and FHCRC, built by hand.
        let mut e = flate2::GzBuilder::new()
            .extra(vec![1, 2, 3, 4])
            .filename("name.tar")
            .comment("a comment")
            .write(Vec::new(), flate2::Compression::fast());
        e.write_all(b"second").unwrap();
        let mut m2 = e.finish().unwrap();
        // flate2 does not write FHCRC: splice one in.
        let hdr_len = 10 + 2 + 4 + "name.tar".len() + 1 + "a comment".len() + 1;
        m2[3] |= FHCRC;
        let mut crc = Crc::new();
        crc.update(&m2[..hdr_len]);
        let h = (crc.sum() & 0xffff) as u16;
        m2.splice(hdr_len..hdr_len, h.to_le_bytes());
        gz.extend_from_slice(&m2);
        gz.extend_from_slice(&gzip(b""));
        for size in [1, 3, 13, 1000] {
            let (out, s) = decode(Compression::Gzip, &gz, size).unwrap();
            assert_eq!(out, b"first second");
            assert_eq!(s.members, 3);
        }
        // a wrong header CRC is caught
        let at = gzip(b"first ").len() + hdr_len;
        let mut bad = gz.clone();
        bad[at] ^= 1;
        assert!(matches!(
            decode(Compression::Gzip, &bad, 5),
            Err(DecodeError::GzipHeader {
                reason: "header CRC mismatch",
                ..
            })
        ));
    }

    #[test]
    fn gzip_errors_are_typed_with_offsets() {
        let data = sample();
        let gz = gzip(&data);
        // truncation anywhere is an error at finish (or earlier)
        for cut in [0, 1, 5, 10, 11, gz.len() / 2, gz.len() - 8, gz.len() - 1] {
            let e = decode(Compression::Gzip, &gz[..cut], 100).unwrap_err();
            assert!(
                matches!(e, DecodeError::Truncated { offset, .. } if offset == cut as u64),
                "cut {cut}: {e:?}"
            );
        }
        // trailer mismatch
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 8] ^= 0xff;
        assert!(matches!(
            decode(Compression::Gzip, &bad, 64),
            Err(DecodeError::GzipTrailer { field: "crc32", offset, .. }) if offset == n as u64 - 8
        ));
        let mut bad = gz.clone();
        bad[n - 1] ^= 0xff;
        assert!(matches!(
            decode(Compression::Gzip, &bad, 64),
            Err(DecodeError::GzipTrailer { field: "isize", .. })
        ));
        // garbage after a member
        let mut bad = gz.clone();
        bad.extend_from_slice(b"\0\0\0\0");
        assert_eq!(
            decode(Compression::Gzip, &bad, 64).unwrap_err(),
            DecodeError::GzipHeader {
                offset: gz.len() as u64,
                reason: "not gzip"
            }
        );
        // not gzip at all
        assert!(matches!(
            decode(Compression::Gzip, b"hello world", 3),
            Err(DecodeError::GzipHeader { offset: 0, .. })
        ));
        // reserved flags
        let mut bad = gz.clone();
        bad[3] |= 0x80;
        assert!(matches!(
            decode(Compression::Gzip, &bad, 3),
            Err(DecodeError::GzipHeader { offset: 3, .. })
        ));
        // corrupt deflate data: an invalid block type
        let mut bad = gz.clone();
        bad[10] |= 0b110;
        assert!(matches!(
            decode(Compression::Gzip, &bad, 64),
            Err(DecodeError::Corrupt {
                codec: Compression::Gzip,
                ..
            })
        ));
    }

    #[test]
    fn errors_latch_and_finish_requires_drain() {
        let gz = gzip(&sample());
        let mut d = Decoder::new(Compression::Gzip);
        d.push_slice(&gz).unwrap();
        assert!(matches!(d.finish(), Err(DecodeError::NotDrained { .. })));
        assert!(matches!(d.poll(), Err(DecodeError::NotDrained { .. })));

        let mut d = Decoder::new(Compression::Gzip);
        d.push_slice(&gz).unwrap();
        while d.poll().unwrap().is_some() {}
        d.finish().unwrap();
        assert_eq!(d.push_slice(b"x"), Err(DecodeError::Finished));
    }

    #[test]
    fn zstd_round_trips_multi_frame_and_skippable() {
        let data = sample();
        let mut z = zstd(&data[..100_000]);
        // a skippable frame between two frames
        z.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
        z.extend_from_slice(&zstd(&data[100_000..]));
        for size in [1, 4, 99, 4096, z.len()] {
            let (out, s) = decode(Compression::Zstd, &z, size).unwrap();
            assert_eq!(out, data, "chunk {size}");
            assert_eq!(s.diff_id, Digest::sha256(&data));
            assert_eq!(s.compressed_digest, Some(Digest::sha256(&z)));
            assert_eq!(s.members, 3);
        }
    }

    /// Decodes `input` pushed in pieces cut at `cuts` (any order, out-of-range cuts ignored),
    /// with output chunks of at most `chunk` bytes.
    fn decode_cut(
        input: &[u8],
        cuts: &[usize],
        chunk: usize,
    ) -> Result<(Vec<u8>, Decoded), DecodeError> {
        let mut cuts: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
        cuts.push(0);
        cuts.push(input.len());
        cuts.sort_unstable();
        cuts.dedup();
        let mut d = Decoder::new(Compression::Zstd).with_chunk_size(chunk);
        let mut out = Vec::new();
        for w in cuts.windows(2) {
            d.push_slice(&input[w[0]..w[1]])?;
            while let Some(c) = d.poll()? {
                assert!(!c.is_empty() && c.len() <= d.chunk_size());
                out.extend_from_slice(&c);
            }
        }
        let s = d.finish()?;
        assert_eq!(s.uncompressed_len, out.len() as u64);
        assert_eq!(s.diff_id, Digest::sha256(&out));
        Ok((out, s))
    }

    /// Whether two outcomes agree: the same output and summary, or errors of one kind (corrupt
    /// data offsets are approximate). The error describes the difference.
    fn same_outcome(
        a: &Result<(Vec<u8>, Decoded), DecodeError>,
        b: &Result<(Vec<u8>, Decoded), DecodeError>,
    ) -> Result<(), String> {
        match (a, b) {
            (Ok(x), Ok(y)) if x == y => Ok(()),
            (Err(x), Err(y)) if std::mem::discriminant(x) == std::mem::discriminant(y) => Ok(()),
            _ => Err(format!("{:?} vs {:?}", brief(a), brief(b))),
        }
    }

    fn brief(r: &Result<(Vec<u8>, Decoded), DecodeError>) -> Result<(usize, u64), &DecodeError> {
        r.as_ref().map(|(o, s)| (o.len(), s.members))
    }

    /// A block of a hand-made zstd frame.
    #[derive(Debug, Clone)]
    enum Block {
        Raw(Vec<u8>),
        /// A byte and its repeat count.
        Rle(u8, u32),
    }

    impl Block {
        fn content(&self) -> Vec<u8> {
            match self {
                Block::Raw(d) => d.clone(),
                Block::Rle(b, n) => vec![*b; *n as usize],
            }
        }

        fn encode(&self, last: bool, out: &mut Vec<u8>) {
            let (kind, size, payload): (u32, u32, &[u8]) = match self {
                Block::Raw(d) => (0, d.len() as u32, d),
                Block::Rle(b, n) => (1, *n, std::slice::from_ref(b)),
            };
            let header = u32::from(last) | kind << 1 | size << 3;
            out.extend_from_slice(&header.to_le_bytes()[..3]);
            out.extend_from_slice(payload);
        }
    }

    /// How a hand-made frame header states its content size.
    #[derive(Debug, Clone, Copy)]
    enum Fcs {
        /// Not at all (a window descriptor instead).
        Absent,
        /// In a field of the smallest size that holds it (8 bytes if `wide`); a single-segment
        /// frame has no window descriptor.
        Declared { single: bool, wide: bool },
    }

    /// A hand-made frame (no checksum): a header with a 2^`window_log` window (unless single
    /// segment) and `blocks`, of which the last is flagged last (an empty raw one if there are
    /// none). The header declares `declared`, or else the true content size.
    fn hand_frame(fcs: Fcs, window_log: u8, blocks: &[Block], declared: Option<u64>) -> Vec<u8> {
        let size =
            declared.unwrap_or_else(|| blocks.iter().map(|b| b.content().len() as u64).sum());
        let mut out = ZSTD_MAGIC.to_vec();
        let (single, field): (bool, Vec<u8>) = match fcs {
            Fcs::Absent => (false, Vec::new()),
            Fcs::Declared { single, wide } => (
                single,
                match size {
                    _ if wide => size.to_le_bytes().to_vec(),
                    0..=255 if single => vec![size as u8],
                    256..=65791 => ((size - 256) as u16).to_le_bytes().to_vec(),
                    _ if size <= u64::from(u32::MAX) => (size as u32).to_le_bytes().to_vec(),
                    _ => size.to_le_bytes().to_vec(),
                },
            ),
        };
        let fcs_id: u8 = match field.len() {
            0 | 1 => 0,
            2 => 1,
            4 => 2,
            _ => 3,
        };
        out.push(fcs_id << 6 | u8::from(single) << 5);
        if !single {
            out.push((window_log - 10) << 3);
        }
        out.extend_from_slice(&field);
        match blocks.split_last() {
            None => Block::Raw(Vec::new()).encode(true, &mut out),
            Some((last, rest)) => {
                for b in rest {
                    b.encode(false, &mut out);
                }
                last.encode(true, &mut out);
            }
        }
        out
    }

    fn skippable_frame(nibble: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x50 | (nibble & 0xf), 0x2a, 0x4d, 0x18];
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Found by the `archive_zstd` fuzz target: a frame whose header declares 259 bytes but
    /// whose only block is an empty last raw block, then an RLE frame of 8192 bytes. libzstd
    /// checked the declared size only when it decoded the first frame in one pass (the whole
    /// frame in one input buffer and room for it in the output), so the stream was refused
    /// when pushed whole and decoded when pushed in pieces. It is corrupt either way.
    #[test]
    fn zstd_result_does_not_depend_on_chunking() {
        let input: &[u8] = &[
            0x28, 0xb5, 0x2f, 0xfd, 0x40, 0x64, 0x03, 0x00, 0x01, 0x00, 0x00, 0x28, 0xb5, 0x2f,
            0xfd, 0x00, 0x64, 0x03, 0x00, 0x01, 0x46,
        ];
        let whole = decode(Compression::Zstd, input, input.len()).map(|(o, _)| o);
        assert!(
            matches!(whole, Err(DecodeError::Corrupt { .. })),
            "{whole:?}"
        );
        for chunk in [512, 1000, DEFAULT_CHUNK_SIZE] {
            for size in 1..=input.len() {
                let cuts: Vec<usize> = (size..input.len()).step_by(size).collect();
                let r = decode_cut(input, &cuts, chunk);
                assert!(
                    matches!(r, Err(DecodeError::Corrupt { .. })),
                    "chunk {chunk}, size {size}: {:?}",
                    brief(&r)
                );
            }
        }
    }

    /// A frame header that libzstd takes in two calls must not be read again from the start
    /// of the second call's input. libzstd looks for its one-pass shortcut at the start of the
    /// call in which a header completes, so with the header split after its window byte it
    /// used to decode the dictionary ID and content size fields, which here spell an empty
    /// skippable frame, as the whole frame: the frame's dictionary ID (which needs a dictionary
    /// this decoder does not have) and its declared size went unchecked, and the stream
    /// decoded. Pushed whole it is refused.
    #[test]
    fn zstd_frame_header_split_across_pushes_is_read_once() {
        let mut input = vec![0x28, 0xb5, 0x2f, 0xfd, 0x43, 0x00];
        // Dictionary ID, then a 2-byte content size (256) and the first two bytes of a block
        // header: from the dictionary ID on, an empty skippable frame.
        input.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 0x00, 0x00, 0x00, 0x00]);
        input.extend_from_slice(&zstd(b"hello"));
        for chunk in [512, DEFAULT_CHUNK_SIZE] {
            let whole = decode_cut(&input, &[], chunk);
            assert!(
                matches!(whole, Err(DecodeError::Corrupt { .. })),
                "{:?}",
                brief(&whole)
            );
            for cut in 1..input.len() {
                let r = decode_cut(&input, &[cut], chunk);
                assert!(
                    matches!(r, Err(DecodeError::Corrupt { .. })),
                    "cut {cut}: {:?}",
                    brief(&r)
                );
            }
        }
    }

    /// Frames whose header disagrees with their blocks, or asks for more than the decoder
    /// allows, are refused however they arrive, including when a whole small frame fits in
    /// one push and one output chunk (where libzstd would decode it in one pass, with checks
    /// of its own).
    #[test]
    fn zstd_frame_checks_do_not_depend_on_chunking() {
        let declared = |single, n| {
            hand_frame(
                Fcs::Declared {
                    single,
                    wide: false,
                },
                17,
                &[
                    Block::Raw(b"abc".to_vec()),
                    Block::Rle(b'x', 5),
                    Block::Raw(Vec::new()),
                ],
                Some(n),
            )
        };
        let refused = [
            // declared size above, below, and an empty frame declaring content
            declared(false, 9),
            declared(false, 7),
            declared(true, 300),
            declared(true, 0),
            hand_frame(
                Fcs::Declared {
                    single: true,
                    wide: true,
                },
                17,
                &[],
                Some(3),
            ),
            // a 2 GiB window (above libzstd's default limit) with a tiny declared size
            hand_frame(
                Fcs::Declared {
                    single: false,
                    wide: false,
                },
                31,
                &[Block::Raw(b"tiny".to_vec())],
                None,
            ),
            // a 2 KiB raw block in a frame with a 1 KiB window
            hand_frame(
                Fcs::Declared {
                    single: false,
                    wide: false,
                },
                10,
                &[Block::Raw(vec![7; 2048])],
                None,
            ),
        ];
        for (i, frame) in refused.iter().enumerate() {
            let mut input = frame.clone();
            input.extend_from_slice(&zstd(b"after"));
            for chunk in [512, DEFAULT_CHUNK_SIZE] {
                for size in [1, 2, 3, 5, 7, 11, input.len()] {
                    let cuts: Vec<usize> = (size..input.len()).step_by(size).collect();
                    let r = decode_cut(&input, &cuts, chunk);
                    assert!(
                        matches!(r, Err(DecodeError::Corrupt { .. })),
                        "frame {i}, chunk {chunk}, size {size}: {:?}",
                        brief(&r)
                    );
                }
            }
        }
        // The same frames telling the truth decode, each in every way.
        let ok = [
            declared(false, 8),
            declared(true, 8),
            hand_frame(
                Fcs::Declared {
                    single: true,
                    wide: true,
                },
                17,
                &[],
                None,
            ),
            hand_frame(
                Fcs::Absent,
                10,
                &[Block::Raw(vec![7; 1024]), Block::Rle(1, 1024)],
                None,
            ),
            hand_frame(
                Fcs::Declared {
                    single: false,
                    wide: false,
                },
                27,
                &[Block::Raw(b"tiny".to_vec())],
                None,
            ),
        ];
        for (i, frame) in ok.iter().enumerate() {
            let want = zstd::decode_all(&frame[..]).unwrap();
            for chunk in [512, DEFAULT_CHUNK_SIZE] {
                for size in [1, 2, 3, 5, 7, 11, frame.len()] {
                    let cuts: Vec<usize> = (size..frame.len()).step_by(size).collect();
                    let (out, s) = decode_cut(frame, &cuts, chunk)
                        .unwrap_or_else(|e| panic!("frame {i}: {e}"));
                    assert_eq!(out, want, "frame {i}");
                    assert_eq!(s.members, 1);
                }
            }
        }
    }

    /// One frame of a generated zstd stream.
    #[derive(Debug, Clone)]
    enum FrameSpec {
        /// Made by libzstd (compressed blocks, raw ones for incompressible data, RLE ones for
        /// runs after the first block; an empty input makes an empty frame).
        Lib {
            data: Vec<u8>,
            level: i32,
            checksum: bool,
            declared: bool,
        },
        /// Made by hand from raw and RLE blocks, empty ones included, with a 2^`window_log`
        /// window unless single segment, declaring its content size plus `lie` if it declares
        /// one.
        Hand {
            blocks: Vec<Block>,
            fcs: Fcs,
            window_log: u8,
            lie: i8,
        },
        Skippable {
            nibble: u8,
            payload: Vec<u8>,
        },
    }

    impl FrameSpec {
        /// The frame's bytes and content.
        fn build(&self) -> (Vec<u8>, Vec<u8>) {
            match self {
                FrameSpec::Lib {
                    data,
                    level,
                    checksum,
                    declared,
                } => {
                    let mut e = zstd::stream::Encoder::new(Vec::new(), *level).unwrap();
                    e.include_checksum(*checksum).unwrap();
                    if *declared {
                        e.include_contentsize(true).unwrap();
                        e.set_pledged_src_size(Some(data.len() as u64)).unwrap();
                    }
                    e.write_all(data).unwrap();
                    (e.finish().unwrap(), data.clone())
                }
                FrameSpec::Hand {
                    blocks,
                    fcs,
                    window_log,
                    lie,
                } => {
                    let content: Vec<u8> = blocks.iter().flat_map(Block::content).collect();
                    let declared = (content.len() as u64).saturating_add_signed(i64::from(*lie));
                    (
                        hand_frame(*fcs, *window_log, blocks, Some(declared)),
                        content,
                    )
                }
                FrameSpec::Skippable { nibble, payload } => {
                    (skippable_frame(*nibble, payload), Vec::new())
                }
            }
        }
    }

    /// A generated stream: its bytes, its content, its frame count and the offsets at which
    /// its frames start.
    #[derive(Debug, Clone)]
    struct Stream {
        bytes: Vec<u8>,
        content: Vec<u8>,
        frames: u64,
        starts: Vec<usize>,
    }

    fn stream(specs: &[FrameSpec]) -> Stream {
        let mut st = Stream {
            bytes: Vec::new(),
            content: Vec::new(),
            frames: specs.len() as u64,
            starts: Vec::new(),
        };
        for spec in specs {
            let (bytes, content) = spec.build();
            st.starts.push(st.bytes.len());
            st.bytes.extend_from_slice(&bytes);
            st.content.extend_from_slice(&content);
        }
        st
    }

    mod strategies {
        use super::{Block, Fcs, FrameSpec};
        use proptest::collection::vec;
        use proptest::prelude::*;

        /// Frame content: pieces of incompressible bytes, long runs and repetitive text.
        fn data() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                3 => vec(any::<u8>(), 0..3000),
                1 => (any::<u8>(), 0..300_000usize).prop_map(|(b, n)| vec![b; n]),
                2 => (1..40usize, 0..60_000usize).prop_map(|(m, n)| {
                    (0..n).map(|i| (i % m) as u8 ^ (i / 4096) as u8).collect()
                }),
            ];
            vec(piece, 0..4).prop_map(|v| v.concat())
        }

        fn block() -> impl Strategy<Value = Block> {
            prop_oneof![
                2 => vec(any::<u8>(), 0..2000).prop_map(Block::Raw),
                1 => Just(Block::Raw(Vec::new())),
                2 => (any::<u8>(), 1..5000u32).prop_map(|(b, n)| Block::Rle(b, n)),
            ]
        }

        fn fcs() -> impl Strategy<Value = Fcs> {
            prop_oneof![
                Just(Fcs::Absent),
                (any::<bool>(), any::<bool>())
                    .prop_map(|(single, wide)| Fcs::Declared { single, wide }),
            ]
        }

        /// A valid frame; if `lying`, a hand-made one may declare the wrong content size and
        /// any window (2^10 to 2^31: its blocks may not fit, or the window may be above the
        /// limit).
        pub(super) fn frame(lying: bool) -> impl Strategy<Value = FrameSpec> {
            let (window, lie) = if lying {
                (
                    prop_oneof![Just(17), 10..32u8].boxed(),
                    prop_oneof![Just(0), -3..4i8].boxed(),
                )
            } else {
                (Just(17).boxed(), Just(0).boxed())
            };
            prop_oneof![
                3 => (data(), -3..10i32, any::<bool>(), any::<bool>()).prop_map(
                    |(data, level, checksum, declared)| FrameSpec::Lib {
                        data,
                        level,
                        checksum,
                        declared,
                    }
                ),
                3 => (vec(block(), 0..5), fcs(), window, lie).prop_map(
                    |(blocks, fcs, window_log, lie)| FrameSpec::Hand {
                        blocks,
                        fcs,
                        window_log,
                        lie,
                    }
                ),
                1 => (0..16u8, vec(any::<u8>(), 0..100))
                    .prop_map(|(nibble, payload)| FrameSpec::Skippable { nibble, payload }),
            ]
        }

        /// Where to cut a stream: anywhere, and just after frame starts (frame `i % frames`,
        /// plus 0 to 19 bytes: inside its header).
        pub(super) fn cuts(
        ) -> impl Strategy<Value = (Vec<prop::sample::Index>, Vec<(usize, usize)>)> {
            (
                vec(any::<prop::sample::Index>(), 0..24),
                vec((any::<usize>(), 0..20usize), 0..8),
            )
        }

        pub(super) fn chunk() -> impl Strategy<Value = usize> {
            prop_oneof![Just(512), 512..70_000usize, Just(super::DEFAULT_CHUNK_SIZE)]
        }
    }

    fn cut_points(
        st: &Stream,
        (anywhere, near): &(Vec<prop::sample::Index>, Vec<(usize, usize)>),
    ) -> Vec<usize> {
        let len = st.bytes.len().max(1);
        anywhere
            .iter()
            .map(|i| i.index(len))
            .chain(near.iter().map(|(f, k)| st.starts[f % st.starts.len()] + k))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

        /// Valid multi-frame streams decode to their content, as `zstd::decode_all` does, and
        /// to the same output and summary however they are pushed and drained.
        #[test]
        fn zstd_valid_streams_decode_the_same_in_any_chunking(
            specs in prop::collection::vec(strategies::frame(false), 1..6),
            cuts in strategies::cuts(),
            chunk in strategies::chunk(),
            chunk2 in strategies::chunk(),
        ) {
            let st = stream(&specs);
            prop_assert_eq!(zstd::decode_all(&st.bytes[..]).unwrap(), st.content.clone());
            let whole = decode_cut(&st.bytes, &[], chunk);
            let (out, s) = whole.clone().unwrap();
            prop_assert!(out == st.content, "whole: {} bytes out, {} expected", out.len(), st.content.len());
            prop_assert_eq!(s.members, st.frames);
            prop_assert_eq!(s.compressed_digest, Some(Digest::sha256(&st.bytes)));
            let cut = decode_cut(&st.bytes, &cut_points(&st, &cuts), chunk2);
            same_outcome(&whole, &cut).map_err(TestCaseError::fail)?;
            // Headers split everywhere: every frame's first 20 bytes pushed one at a time.
            let bytewise: Vec<usize> = st.starts.iter().flat_map(|&s| s..s + 20).collect();
            let bytewise = decode_cut(&st.bytes, &bytewise, chunk);
            same_outcome(&whole, &bytewise).map_err(TestCaseError::fail)?;
        }

        /// Damaged streams (frames declaring the wrong content size or a window their blocks
        /// do not fit in or above the limit; bytes flipped, inserted or dropped, in headers
        /// above all; cut short) get one outcome however they are pushed: the same output, or
        /// the same kind of error.
        #[test]
        fn zstd_damaged_streams_get_one_outcome_in_any_chunking(
            specs in prop::collection::vec(strategies::frame(true), 1..4),
            damage in prop::collection::vec(
                (any::<usize>(), 0..24usize, any::<prop::sample::Index>(), 1..=255u8, 0..4u8),
                0..4,
            ),
            cuts in strategies::cuts(),
            chunk in strategies::chunk(),
            chunk2 in strategies::chunk(),
        ) {
            let st = stream(&specs);
            let mut bytes = st.bytes.clone();
            for &(f, k, anywhere, x, how) in &damage {
                if bytes.is_empty() {
                    break;
                }
                // Half the damage lands in the first 24 bytes of a frame.
                let at = if x % 2 == 0 {
                    (st.starts[f % st.starts.len()] + k).min(bytes.len() - 1)
                } else {
                    anywhere.index(bytes.len())
                };
                match how {
                    0 => bytes[at] ^= x,
                    1 => bytes.insert(at, x),
                    2 => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            let st = Stream { bytes, ..st };
            let whole = decode_cut(&st.bytes, &[], chunk);
            let cut = decode_cut(&st.bytes, &cut_points(&st, &cuts), chunk2);
            same_outcome(&whole, &cut).map_err(TestCaseError::fail)?;
            let bytewise: Vec<usize> = st.starts.iter().flat_map(|&s| s..s + 20).collect();
            let bytewise = decode_cut(&st.bytes, &bytewise, chunk2);
            same_outcome(&whole, &bytewise).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn zstd_errors() {
        let data = sample();
        let z = zstd(&data);
        for cut in [0, 1, 4, 5, z.len() / 2, z.len() - 1] {
            let e = decode(Compression::Zstd, &z[..cut], 100).unwrap_err();
            assert!(
                matches!(e, DecodeError::Truncated { offset, .. } | DecodeError::Corrupt { offset, .. } if offset <= cut as u64),
                "cut {cut}: {e:?}"
            );
        }
        assert!(matches!(
            decode(Compression::Zstd, b"definitely not zstd", 4),
            Err(DecodeError::Corrupt {
                codec: Compression::Zstd,
                ..
            })
        ));
        let mut bad = z.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        bad[mid + 1] ^= 0x55;
        // zstd frames carry no checksum by default: corruption may or may not be detected,
        // but it must never panic.
        let _ = decode(Compression::Zstd, &bad, 77);
    }

    #[test]
    fn zstd_checks_checksums_and_refuses_huge_windows() {
        let data = sample();
        let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        e.include_checksum(true).unwrap();
        e.write_all(&data).unwrap();
        let mut z = e.finish().unwrap();
        assert_eq!(decode(Compression::Zstd, &z, 1000).unwrap().0, data);
        let n = z.len();
        z[n - 1] ^= 1;
        assert!(matches!(
            decode(Compression::Zstd, &z, 1000),
            Err(DecodeError::Corrupt {
                codec: Compression::Zstd,
                ..
            })
        ));

        let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        e.window_log(28).unwrap();
        e.write_all(&data).unwrap();
        let z = e.finish().unwrap();
        assert!(matches!(
            decode(Compression::Zstd, &z, 1000),
            Err(DecodeError::Corrupt { codec: Compression::Zstd, offset, .. }) if offset < 20
        ));
    }

    #[test]
    fn none_passes_bytes_through_without_copying() {
        let mut d = Decoder::new(Compression::None);
        let b = Bytes::from_static(b"tar bytes");
        d.push(b.clone()).unwrap();
        let out = d.poll().unwrap().unwrap();
        assert_eq!(out.as_ptr(), b.as_ptr());
        assert_eq!(d.poll().unwrap(), None);
        let s = d.finish().unwrap();
        assert_eq!(s.diff_id, Digest::sha256(b"tar bytes"));
        assert_eq!(s.compressed_digest, Some(s.diff_id));
    }

    #[test]
    fn hash_compressed_can_be_disabled() {
        let gz = gzip(b"abc");
        let mut d = Decoder::new(Compression::Gzip).hash_compressed(false);
        d.push_slice(&gz).unwrap();
        while d.poll().unwrap().is_some() {}
        let s = d.finish().unwrap();
        assert_eq!(s.compressed_digest, None);
        assert_eq!(s.diff_id, Digest::sha256(b"abc"));
    }

    #[test]
    fn bombs_are_drained_in_bounded_chunks() {
        let zeros = vec![0u8; 8 << 20];
        for (c, blob) in [
            (Compression::Gzip, gzip(&zeros)),
            (Compression::Zstd, zstd(&zeros)),
        ] {
            let mut d = Decoder::new(c);
            d.push_slice(&blob).unwrap();
            let mut total = 0;
            while let Some(chunk) = d.poll().unwrap() {
                assert!(chunk.len() <= DEFAULT_CHUNK_SIZE);
                total += chunk.len();
            }
            assert_eq!(total, zeros.len());
            d.finish().unwrap();
        }
    }

    #[test]
    fn sniffs_magic_numbers() {
        assert_eq!(Compression::sniff(&gzip(b"x")), Some(Compression::Gzip));
        assert_eq!(Compression::sniff(&zstd(b"x")), Some(Compression::Zstd));
        assert_eq!(
            Compression::sniff(&[0x5e, 0x2a, 0x4d, 0x18]),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::sniff(b"etc/passwd"), Some(Compression::None));
        assert_eq!(Compression::sniff(&[0x1f]), None);
        assert_eq!(Compression::sniff(&[]), None);
        assert_eq!(Compression::sniff(b"ab"), Some(Compression::None));
    }
}
