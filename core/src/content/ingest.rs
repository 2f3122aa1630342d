//! The `Ingest` machine: a resumable, digest-verified blob write with containerd's semantics.
//!
//! ```text
//!   open ──► Opening ──► Ready ◄──► Writing
//!                          │  └───► SetTotal (no IO)
//!                          ├──► Committing ──► Finished(committed)
//!                          ├──► Aborting   ──► Finished(aborted)
//!                          └──► Closing    ──► Finished(closed; resumable later)
//! ```
//!
//! Files, all under the ingest directory given in [`IngestPaths`]:
//! `meta` (JSON: namespace, ref, expected, started_at), `data` (the bytes so far) and `state`
//! (the two-slot hash checkpoint of [`super::checkpoint`]). Every request input yields exactly
//! one [`Output::Done`]; an input that is illegal right now is refused by `handle` with an
//! [`IngestError`] and changes nothing.

use std::collections::VecDeque;

use bytes::Bytes;

use super::checkpoint;
use crate::digest::{Algorithm, Digest, Hasher};
use crate::machine::{Machine, Output};
use crate::op::{Completion, Handle, Op, OpError, OpId, OpKind, OpOutput, OpenOptions};
use crate::Instant;

/// Where an ingest lives, as paths relative to the driver's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestPaths {
    /// The ingest's own directory, e.g. `content/ingest/<key>`.
    pub dir: String,
    /// The root of committed blobs, e.g. `content/blobs`; a blob lives at `<blobs>/<alg>/<hex>`.
    pub blobs: String,
}

impl IngestPaths {
    fn file(&self, name: &str) -> String {
        format!("{}/{}", self.dir, name)
    }

    /// Path of the committed blob for `digest`.
    #[must_use]
    pub fn blob(&self, digest: &Digest) -> String {
        format!("{}/{}/{}", self.blobs, digest.algorithm(), digest.hex())
    }
}

/// What the driver asks for when it opens an ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// The namespace that owns the ref.
    pub namespace: String,
    /// The client's ref (e.g. `layer-sha256:…`).
    pub reference: String,
    /// The digest the client expects, if known.
    pub expected: Option<Digest>,
    /// The total size the client expects, 0 if unknown.
    pub total: u64,
    /// Where the files live.
    pub paths: IngestPaths,
}

/// The `meta` file of an ingest directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IngestMeta {
    /// Owning namespace.
    pub namespace: String,
    /// The ref.
    pub reference: String,
    /// Expected digest, if given at start.
    pub expected: Option<Digest>,
    /// Expected total, 0 if unknown.
    pub total: u64,
    /// When the ingest started.
    pub started_at: Instant,
}

/// The status of an ingest, as containerd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The ref.
    pub reference: String,
    /// Bytes written so far (the next write must start here).
    pub offset: u64,
    /// Expected total, 0 if unknown.
    pub total: u64,
    /// Expected digest, if known.
    pub expected: Option<Digest>,
    /// When the ingest started.
    pub started_at: Instant,
    /// When it last changed.
    pub updated_at: Instant,
}

/// How an existing ingest was picked up when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// No ingest existed: a new one was started.
    Created,
    /// An existing ingest resumed at `offset` from its hash checkpoint, without re-reading data.
    /// `discarded` bytes past the checkpoint were cut off.
    Resumed {
        /// The offset resumed at.
        offset: u64,
        /// Bytes beyond the checkpoint that were truncated away.
        discarded: u64,
    },
    /// An existing ingest could not be resumed (why is given) and was restarted from zero.
    Restarted {
        /// Why the old data was not usable.
        reason: String,
    },
}

/// The result of a finished request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// The ingest is open.
    Opened {
        /// Its status.
        status: Status,
        /// How it was picked up.
        recovery: Recovery,
    },
    /// A write or total update completed.
    Status(Status),
    /// The blob is committed under its digest.
    Committed {
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
        /// True if the blob was already in the store (the ingest was dropped).
        already_present: bool,
    },
    /// The ingest was aborted and its files removed.
    Aborted,
    /// The handles are closed; the ingest stays on disk and can be resumed.
    Closed,
}

/// Why an ingest request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// Another request is still in progress.
    #[error("ingest {reference:?} is busy with a previous request")]
    Busy {
        /// The ref.
        reference: String,
    },
    /// The ingest is committed, aborted, closed or failed.
    #[error("ingest {reference:?} is finished; open it again")]
    Finished {
        /// The ref.
        reference: String,
    },
    /// A write did not start at the current offset (nor at 0, which truncates).
    #[error("write at offset {requested} for ingest {reference:?}, but its offset is {current}")]
    OutOfRange {
        /// The ref.
        reference: String,
        /// The offset asked for.
        requested: u64,
        /// The ingest's offset.
        current: u64,
    },
    /// Commit with a size other than the bytes written; the ingest was removed.
    #[error("commit of {reference:?}: expected size {expected}, but {actual} bytes were written")]
    SizeMismatch {
        /// The ref.
        reference: String,
        /// Size given at commit.
        expected: u64,
        /// Bytes written.
        actual: u64,
    },
    /// Commit with a digest other than that of the bytes written; the ingest was removed.
    #[error(
        "commit of {reference:?}: expected digest {expected}, but the data has digest {actual}"
    )]
    DigestMismatch {
        /// The ref.
        reference: String,
        /// Digest given.
        expected: Digest,
        /// Digest of the data.
        actual: Digest,
    },
    /// A completion arrived for an Op that is not outstanding.
    #[error("completion for unknown op {0:?}")]
    UnexpectedCompletion(OpId),
    /// A host operation failed.
    #[error("ingest {reference:?}: {error} on {path}")]
    Io {
        /// The ref.
        reference: String,
        /// The failed Op.
        error: OpError,
        /// The path involved.
        path: String,
    },
    /// The driver answered an Op with the wrong kind of output.
    #[error("driver answered {op} with an unexpected output")]
    Protocol {
        /// The Op's name.
        op: &'static str,
    },
}

/// Inputs of the [`Ingest`] machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// Write `data` at `offset`: `offset` must equal the current offset, or be 0 to truncate.
    Write {
        /// Where the data starts.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// Update the expected total (no IO).
    SetTotal(u64),
    /// Commit: check `size` (if > 0) and `expected` (if given), then move the data into place.
    Commit {
        /// Expected size, 0 for "don't check".
        size: u64,
        /// Expected digest, if any (else the one given at open, if any).
        expected: Option<Digest>,
    },
    /// Drop the ingest and its files.
    Abort,
    /// Release file handles; the ingest stays resumable on disk.
    Close,
    /// The outcome of an Op.
    Completed(Completion),
}

impl From<Completion> for Input {
    fn from(c: Completion) -> Self {
        Input::Completed(c)
    }
}

/// What follows a checkpoint write.
#[derive(Debug, Clone)]
enum AfterCheckpoint {
    /// The write request is done.
    Finish,
    /// A rewrite from offset 0: the zero checkpoint is down, now truncate and write `data`.
    Rewrite { data: Bytes },
    /// A reopen: the resumed state now outranks every older slot; the ingest is open.
    Reopened { recovery: Recovery },
}

/// What to do when the outstanding Op completes.
#[derive(Debug, Clone)]
enum Step {
    ReadMeta,
    // create flow
    CreateDir,
    WriteMeta,
    RenameMeta,
    CreateData,
    CreateState,
    // resume flow
    OpenData,
    OpenState,
    ReadState,
    TruncateResumed {
        offset: u64,
        discarded: u64,
        cp: Box<Option<Hasher>>,
        seq: u64,
    },
    DiscardStale {
        reason: String,
    },
    // write flow
    TruncateForRewrite {
        data: Bytes,
    },
    WriteData {
        offset: u64,
        data: Bytes,
    },
    WriteCheckpoint {
        pos: u64,
        slot: Bytes,
        then: AfterCheckpoint,
    },
    // commit flow
    CommitTruncate,
    CommitFsync,
    CommitCloseData,
    CommitCloseState,
    CommitMkdir,
    CommitStatBlob,
    CommitRename,
    CommitFsyncDir,
    CommitCleanup {
        already_present: bool,
    },
    // failure/abort/close flows
    MismatchClose {
        error: Box<IngestError>,
        next: u8,
    },
    MismatchRemove {
        error: Box<IngestError>,
    },
    AbortClose {
        next: u8,
    },
    AbortRemove,
    CloseHandles {
        next: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Opening,
    Ready,
    Busy,
    Finished,
}

/// Rollback point for a write that fails half way.
#[derive(Debug, Clone)]
struct Undo {
    hasher: Hasher,
    offset: u64,
    seq: u64,
    updated_at: Instant,
}

/// A resumable, digest-verified blob write. See the module docs.
#[derive(Debug)]
pub struct Ingest {
    req: OpenRequest,
    phase: Phase,
    started_at: Instant,
    updated_at: Instant,
    offset: u64,
    total: u64,
    hasher: Hasher,
    seq: u64,
    data: Option<Handle>,
    state: Option<Handle>,
    data_len_at_open: u64,
    /// Bytes past `offset` may exist in the data file (after a failed write).
    tail_dirty: bool,
    committed: Option<Digest>,
    discard_reason: Option<String>,
    undo: Option<Undo>,
    pending: Option<(OpId, Step)>,
    next_id: u64,
    out: VecDeque<Output<(), Result<Reply, IngestError>>>,
}

const META: &str = "meta";
const META_TMP: &str = "meta.tmp";
const DATA: &str = "data";
const STATE: &str = "state";

impl Ingest {
    /// Opens the ingest for `req.reference`: resumes it if its directory holds one, else starts a
    /// new one. Drain [`Machine::poll`] right away; it ends with `Done(Reply::Opened)`.
    #[must_use]
    pub fn open(now: Instant, req: OpenRequest) -> Self {
        let algorithm = req.expected.map_or(Algorithm::Sha256, |d| d.algorithm());
        let total = req.total;
        let mut ingest = Ingest {
            req,
            phase: Phase::Opening,
            started_at: now,
            updated_at: now,
            offset: 0,
            total,
            hasher: Hasher::new(algorithm),
            seq: 0,
            data: None,
            state: None,
            data_len_at_open: 0,
            tail_dirty: false,
            committed: None,
            discard_reason: None,
            undo: None,
            pending: None,
            next_id: 0,
            out: VecDeque::new(),
        };
        let path = ingest.req.paths.file(META);
        ingest.submit(Step::ReadMeta, OpKind::ReadFile { path });
        ingest
    }

    /// The ref.
    #[must_use]
    pub fn reference(&self) -> &str {
        &self.req.reference
    }

    /// The namespace.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.req.namespace
    }

    /// The current status.
    #[must_use]
    pub fn status(&self) -> Status {
        Status {
            reference: self.req.reference.clone(),
            offset: self.offset,
            total: self.total,
            expected: self.req.expected,
            started_at: self.started_at,
            updated_at: self.updated_at,
        }
    }

    /// The digest of the bytes written so far.
    #[must_use]
    pub fn digest(&self) -> Digest {
        self.hasher.digest()
    }

    /// True once committed, aborted, closed or failed.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    fn submit(&mut self, step: Step, kind: OpKind) {
        let id = OpId(self.next_id);
        self.next_id += 1;
        self.pending = Some((id, step));
        self.out.push_back(Output::Op(Op { id, kind }));
    }

    fn finish(&mut self, result: Result<Reply, IngestError>) {
        self.pending = None;
        self.phase = match (&result, self.phase) {
            (Ok(Reply::Committed { .. } | Reply::Aborted | Reply::Closed), _) => Phase::Finished,
            (Ok(_), _) => Phase::Ready,
            (Err(_), Phase::Opening) => Phase::Finished,
            (Err(IngestError::SizeMismatch { .. } | IngestError::DigestMismatch { .. }), _) => {
                Phase::Finished
            }
            (Err(_), _) => Phase::Ready,
        };
        self.out.push_back(Output::Done(result));
    }

    fn io_error(&self, error: OpError, path: String) -> IngestError {
        IngestError::Io {
            reference: self.req.reference.clone(),
            error,
            path,
        }
    }

    fn meta(&self) -> IngestMeta {
        IngestMeta {
            namespace: self.req.namespace.clone(),
            reference: self.req.reference.clone(),
            expected: self.req.expected,
            total: self.total,
            started_at: self.started_at,
        }
    }

    fn start_create(&mut self) {
        self.offset = 0;
        self.seq = 0;
        self.hasher = Hasher::new(
            self.req
                .expected
                .map_or(Algorithm::Sha256, |d| d.algorithm()),
        );
        let path = self.req.paths.dir.clone();
        self.submit(Step::CreateDir, OpKind::Mkdir { path, mode: 0o700 });
    }

    fn opened(&mut self, recovery: Recovery) {
        let status = self.status();
        self.finish(Ok(Reply::Opened { status, recovery }));
    }

    fn data_handle(&self) -> Handle {
        self.data.expect("data handle is open while ready")
    }

    fn state_handle(&self) -> Handle {
        self.state.expect("state handle is open while ready")
    }

    fn write_checkpoint(&mut self, then: AfterCheckpoint) {
        let seq = self.seq + 1;
        let slot = Bytes::from(checkpoint::encode(
            seq,
            self.total,
            self.updated_at,
            &self.hasher,
        ));
        let pos = checkpoint::slot_offset(seq);
        let handle = self.state_handle();
        self.submit(
            Step::WriteCheckpoint {
                pos,
                slot: slot.clone(),
                then,
            },
            OpKind::Write {
                handle,
                offset: pos,
                data: slot,
            },
        );
    }

    fn rollback(&mut self) {
        if let Some(u) = self.undo.take() {
            self.hasher = u.hasher;
            self.offset = u.offset;
            self.seq = u.seq;
            self.updated_at = u.updated_at;
        }
        self.tail_dirty = true;
    }

    /// Starts closing both handles, then continues with `then(next_index)`.
    fn close_next(&mut self, step_for: impl Fn(u8) -> Step, start: u8) -> bool {
        let handles = [self.data, self.state];
        for (i, h) in handles.iter().enumerate().skip(start as usize) {
            if let Some(handle) = h {
                if i == 0 {
                    self.data = None;
                } else {
                    self.state = None;
                }
                self.submit(step_for(i as u8 + 1), OpKind::Close { handle: *handle });
                return true;
            }
        }
        false
    }

    fn start_mismatch(&mut self, error: IngestError) {
        let boxed = Box::new(error);
        let b = boxed.clone();
        if !self.close_next(
            move |n| Step::MismatchClose {
                error: b.clone(),
                next: n,
            },
            0,
        ) {
            let path = self.req.paths.dir.clone();
            self.submit(
                Step::MismatchRemove { error: boxed },
                OpKind::RemoveAll { path },
            );
        }
    }

    fn start_abort(&mut self) {
        if !self.close_next(|n| Step::AbortClose { next: n }, 0) {
            let path = self.req.paths.dir.clone();
            self.submit(Step::AbortRemove, OpKind::RemoveAll { path });
        }
    }

    fn request(&mut self, now: Instant, input: Input) -> Result<(), IngestError> {
        match self.phase {
            Phase::Ready => {}
            Phase::Finished => {
                return Err(IngestError::Finished {
                    reference: self.req.reference.clone(),
                })
            }
            Phase::Opening | Phase::Busy => {
                // Abort is allowed to wait for nothing: it is refused like any other request.
                return Err(IngestError::Busy {
                    reference: self.req.reference.clone(),
                });
            }
        }
        match input {
            Input::Write { offset, data } => {
                if offset != self.offset && offset != 0 {
                    return Err(IngestError::OutOfRange {
                        reference: self.req.reference.clone(),
                        requested: offset,
                        current: self.offset,
                    });
                }
                self.phase = Phase::Busy;
                self.undo = Some(Undo {
                    hasher: self.hasher.clone(),
                    offset: self.offset,
                    seq: self.seq,
                    updated_at: self.updated_at,
                });
                self.updated_at = now;
                if offset == 0 && self.offset > 0 {
                    // A rewrite: first checkpoint "offset 0" under a new seq, so that neither a
                    // crash nor a failure after the truncate can pair old hashes with new bytes.
                    self.hasher = Hasher::new(self.hasher.algorithm());
                    self.offset = 0;
                    self.write_checkpoint(AfterCheckpoint::Rewrite { data });
                } else {
                    self.start_data_write(data);
                }
            }
            Input::SetTotal(total) => {
                self.total = total;
                let status = self.status();
                self.finish(Ok(Reply::Status(status)));
            }
            Input::Commit { size, expected } => {
                self.phase = Phase::Busy;
                let expected = expected.or(self.req.expected);
                let actual = self.hasher.digest();
                if size > 0 && size != self.offset {
                    self.start_mismatch(IngestError::SizeMismatch {
                        reference: self.req.reference.clone(),
                        expected: size,
                        actual: self.offset,
                    });
                } else if let Some(expected) = expected.filter(|e| *e != actual) {
                    self.start_mismatch(IngestError::DigestMismatch {
                        reference: self.req.reference.clone(),
                        expected,
                        actual,
                    });
                } else {
                    self.committed = Some(actual);
                    let handle = self.data_handle();
                    if self.tail_dirty || self.data_len_at_open > self.offset {
                        self.submit(
                            Step::CommitTruncate,
                            OpKind::Truncate {
                                handle,
                                len: self.offset,
                            },
                        );
                    } else {
                        self.submit(Step::CommitFsync, OpKind::Fsync { handle });
                    }
                }
            }
            Input::Abort => {
                self.phase = Phase::Busy;
                self.start_abort();
            }
            Input::Close => {
                self.phase = Phase::Busy;
                if !self.close_next(|n| Step::CloseHandles { next: n }, 0) {
                    self.finish(Ok(Reply::Closed));
                }
            }
            Input::Completed(_) => unreachable!("completions are routed before requests"),
        }
        Ok(())
    }

    fn start_data_write(&mut self, data: Bytes) {
        self.hasher.update(&data);
        let offset = self.offset;
        self.offset += data.len() as u64;
        if data.is_empty() {
            self.write_checkpoint(AfterCheckpoint::Finish);
            return;
        }
        let handle = self.data_handle();
        self.submit(
            Step::WriteData {
                offset,
                data: data.clone(),
            },
            OpKind::Write {
                handle,
                offset,
                data,
            },
        );
    }

    fn complete(&mut self, _now: Instant, c: Completion) -> Result<(), IngestError> {
        let step = match self.pending.take() {
            Some((id, step)) if id == c.id => step,
            other => {
                self.pending = other;
                return Err(IngestError::UnexpectedCompletion(c.id));
            }
        };
        let protocol = |op: &'static str| IngestError::Protocol { op };
        let p = self.req.paths.clone();
        match (step, c.result) {
            // ---- open ------------------------------------------------------------------
            (Step::ReadMeta, Err(e)) if e.is_not_found() => self.start_create(),
            (Step::ReadMeta, Err(e)) => self.finish(Err(self.io_error(e, p.file(META)))),
            (Step::ReadMeta, Ok(OpOutput::Data(bytes))) => {
                match serde_json::from_slice::<IngestMeta>(&bytes) {
                    Ok(meta)
                        if meta.reference == self.req.reference
                            && (self.req.expected.is_none()
                                || self.req.expected == meta.expected) =>
                    {
                        self.started_at = meta.started_at;
                        self.req.expected = meta.expected;
                        if self.total == 0 {
                            self.total = meta.total;
                        }
                        self.submit(
                            Step::OpenData,
                            OpKind::Open {
                                path: p.file(DATA),
                                options: OpenOptions::read_write(),
                            },
                        );
                    }
                    Ok(_) => self.discard("the stored ingest expects other content".into()),
                    Err(e) => self.discard(format!("meta file unreadable: {e}")),
                }
            }
            (Step::ReadMeta, Ok(_)) => self.finish(Err(protocol("readfile"))),
            (Step::DiscardStale { reason }, Ok(_)) => {
                self.discard_reason = Some(reason);
                self.start_create();
            }
            (Step::CreateDir, Ok(_)) => {
                let data = Bytes::from(serde_json::to_vec(&self.meta()).expect("meta serialises"));
                self.submit(
                    Step::WriteMeta,
                    OpKind::WriteFile {
                        path: p.file(META_TMP),
                        data,
                        mode: 0o600,
                    },
                );
            }
            (Step::WriteMeta, Ok(_)) => self.submit(
                Step::RenameMeta,
                OpKind::Rename {
                    from: p.file(META_TMP),
                    to: p.file(META),
                },
            ),
            (Step::RenameMeta, Ok(_)) => self.submit(
                Step::CreateData,
                OpKind::Open {
                    path: p.file(DATA),
                    options: OpenOptions::create_truncate(0o600),
                },
            ),
            (Step::CreateData, Ok(OpOutput::Opened { handle, .. })) => {
                self.data = Some(handle);
                self.submit(
                    Step::CreateState,
                    OpKind::Open {
                        path: p.file(STATE),
                        options: OpenOptions::create_truncate(0o600),
                    },
                );
            }
            (Step::CreateState, Ok(OpOutput::Opened { handle, .. })) => {
                self.state = Some(handle);
                let recovery = match self.discard_reason.take() {
                    Some(reason) => Recovery::Restarted { reason },
                    None => Recovery::Created,
                };
                self.opened(recovery);
            }
            (Step::OpenData, Err(e)) if e.is_not_found() => {
                self.discard("data file missing".into())
            }
            (Step::OpenData, Ok(OpOutput::Opened { handle, size })) => {
                self.data = Some(handle);
                self.data_len_at_open = size;
                self.submit(
                    Step::OpenState,
                    OpKind::Open {
                        path: p.file(STATE),
                        options: OpenOptions {
                            create: true,
                            mode: 0o600,
                            ..OpenOptions::read_write()
                        },
                    },
                );
            }
            (Step::OpenState, Ok(OpOutput::Opened { handle, .. })) => {
                self.state = Some(handle);
                self.submit(
                    Step::ReadState,
                    OpKind::Read {
                        handle,
                        offset: 0,
                        len: 2 * checkpoint::SLOT_LEN as u32,
                    },
                );
            }
            (Step::ReadState, Ok(OpOutput::Data(bytes))) => {
                let data_len = self.data_len_at_open;
                // Later checkpoints must outrank every whole slot, even one the data does not cover.
                let newest = checkpoint::max_seq(&bytes);
                let handle = self.data_handle();
                match checkpoint::best(&bytes, data_len) {
                    Some(cp) => {
                        let algorithm = self
                            .req
                            .expected
                            .map_or(Algorithm::Sha256, |d| d.algorithm());
                        if cp.hasher.algorithm() != algorithm {
                            self.discard_reason =
                                Some("checkpoint hashes with another algorithm".into());
                            let step = Step::TruncateResumed {
                                offset: 0,
                                discarded: data_len,
                                cp: Box::new(None),
                                seq: newest,
                            };
                            self.submit(step, OpKind::Truncate { handle, len: 0 });
                            return Ok(());
                        }
                        let discarded = data_len - cp.offset;
                        if cp.total > 0 && self.total == 0 {
                            self.total = cp.total;
                        }
                        self.updated_at = cp.updated_at.max(self.started_at);
                        let step = Step::TruncateResumed {
                            offset: cp.offset,
                            discarded,
                            cp: Box::new(Some(cp.hasher)),
                            seq: newest,
                        };
                        self.submit(
                            step,
                            OpKind::Truncate {
                                handle,
                                len: cp.offset,
                            },
                        );
                    }
                    None if data_len == 0 => {
                        let step = Step::TruncateResumed {
                            offset: 0,
                            discarded: 0,
                            cp: Box::new(None),
                            seq: newest,
                        };
                        self.submit(step, OpKind::Truncate { handle, len: 0 });
                    }
                    None => {
                        self.discard_reason = Some(format!(
                            "no valid hash checkpoint for {data_len} bytes of data"
                        ));
                        let step = Step::TruncateResumed {
                            offset: 0,
                            discarded: data_len,
                            cp: Box::new(None),
                            seq: newest,
                        };
                        self.submit(step, OpKind::Truncate { handle, len: 0 });
                    }
                }
            }
            (
                Step::TruncateResumed {
                    offset,
                    discarded,
                    cp,
                    seq,
                },
                Ok(_),
            ) => {
                self.data_len_at_open = offset;
                match *cp {
                    Some(hasher) => {
                        self.hasher = hasher;
                        self.offset = offset;
                        self.seq = seq;
                    }
                    None => {
                        self.hasher = Hasher::new(
                            self.req
                                .expected
                                .map_or(Algorithm::Sha256, |d| d.algorithm()),
                        );
                        self.offset = 0;
                        self.seq = seq;
                    }
                }
                let recovery = match self.discard_reason.take() {
                    Some(reason) => Recovery::Restarted { reason },
                    None => Recovery::Resumed { offset, discarded },
                };
                // Checkpoint the state resumed at under a seq above every slot in the file, so
                // no stale slot can describe bytes written from now on.
                self.write_checkpoint(AfterCheckpoint::Reopened { recovery });
            }
            // ---- write -----------------------------------------------------------------
            (Step::TruncateForRewrite { data }, Ok(_)) => {
                self.data_len_at_open = 0;
                self.tail_dirty = false;
                self.start_data_write(data);
            }
            (Step::WriteData { offset, data }, Ok(OpOutput::Written(n))) => {
                let n = n.min(data.len() as u64) as usize;
                if n == 0 {
                    self.rollback();
                    let e = OpError {
                        op: "write",
                        errno: crate::op::errno::EIO,
                    };
                    self.finish(Err(self.io_error(e, p.file(DATA))));
                } else if n < data.len() {
                    let rest = data.slice(n..);
                    let handle = self.data_handle();
                    let offset = offset + n as u64;
                    self.submit(
                        Step::WriteData {
                            offset,
                            data: rest.clone(),
                        },
                        OpKind::Write {
                            handle,
                            offset,
                            data: rest,
                        },
                    );
                } else {
                    self.write_checkpoint(AfterCheckpoint::Finish);
                }
            }
            (Step::WriteCheckpoint { pos, slot, then }, Ok(OpOutput::Written(n))) => {
                let n = n.min(slot.len() as u64) as usize;
                if n == 0 {
                    self.rollback();
                    let e = OpError {
                        op: "write",
                        errno: crate::op::errno::EIO,
                    };
                    self.finish(Err(self.io_error(e, p.file(STATE))));
                } else if n < slot.len() {
                    let rest = slot.slice(n..);
                    let handle = self.state_handle();
                    let pos = pos + n as u64;
                    self.submit(
                        Step::WriteCheckpoint {
                            pos,
                            slot: rest.clone(),
                            then,
                        },
                        OpKind::Write {
                            handle,
                            offset: pos,
                            data: rest,
                        },
                    );
                } else {
                    self.seq += 1;
                    match then {
                        AfterCheckpoint::Finish => {
                            self.undo = None;
                            let status = self.status();
                            self.finish(Ok(Reply::Status(status)));
                        }
                        AfterCheckpoint::Reopened { recovery } => {
                            self.undo = None;
                            self.opened(recovery);
                        }
                        AfterCheckpoint::Rewrite { data } => {
                            // offset 0 is now durable: a later failure rolls back to it
                            self.undo = Some(Undo {
                                hasher: self.hasher.clone(),
                                offset: 0,
                                seq: self.seq,
                                updated_at: self.updated_at,
                            });
                            let handle = self.data_handle();
                            self.submit(
                                Step::TruncateForRewrite { data },
                                OpKind::Truncate { handle, len: 0 },
                            );
                        }
                    }
                }
            }
            (Step::TruncateForRewrite { .. }, Err(e)) => {
                self.rollback();
                self.finish(Err(self.io_error(e, p.file(DATA))));
            }
            (Step::WriteData { .. }, Err(e)) => {
                self.rollback();
                self.finish(Err(self.io_error(e, p.file(DATA))));
            }
            (Step::WriteCheckpoint { .. }, Err(e)) => {
                self.rollback();
                self.finish(Err(self.io_error(e, p.file(STATE))));
            }
            // ---- commit ----------------------------------------------------------------
            (Step::CommitTruncate, Ok(_)) => {
                self.tail_dirty = false;
                self.data_len_at_open = self.offset;
                let handle = self.data_handle();
                self.submit(Step::CommitFsync, OpKind::Fsync { handle });
            }
            (Step::CommitFsync, Ok(_)) => {
                let handle = self.data_handle();
                self.data = None;
                self.submit(Step::CommitCloseData, OpKind::Close { handle });
            }
            (Step::CommitCloseData, Ok(_)) => {
                let handle = self.state_handle();
                self.state = None;
                self.submit(Step::CommitCloseState, OpKind::Close { handle });
            }
            (Step::CommitCloseState, Ok(_)) => {
                let digest = self.committed.expect("digest set at commit");
                let path = format!("{}/{}", p.blobs, digest.algorithm());
                self.submit(Step::CommitMkdir, OpKind::Mkdir { path, mode: 0o755 });
            }
            (Step::CommitMkdir, Ok(_)) => {
                let digest = self.committed.expect("digest set at commit");
                self.submit(
                    Step::CommitStatBlob,
                    OpKind::Stat {
                        path: p.blob(&digest),
                    },
                );
            }
            (Step::CommitStatBlob, Ok(OpOutput::Stat(st)))
                if st.size == self.offset && !st.is_dir() =>
            {
                self.submit(
                    Step::CommitCleanup {
                        already_present: true,
                    },
                    OpKind::RemoveAll {
                        path: p.dir.clone(),
                    },
                );
            }
            (Step::CommitStatBlob, Ok(_)) | (Step::CommitStatBlob, Err(_)) => {
                let digest = self.committed.expect("digest set at commit");
                self.submit(
                    Step::CommitRename,
                    OpKind::Rename {
                        from: p.file(DATA),
                        to: p.blob(&digest),
                    },
                );
            }
            (Step::CommitRename, Ok(_)) => {
                let digest = self.committed.expect("digest set at commit");
                let path = format!("{}/{}", p.blobs, digest.algorithm());
                self.submit(Step::CommitFsyncDir, OpKind::FsyncDir { path });
            }
            (Step::CommitFsyncDir, Ok(_)) => self.submit(
                Step::CommitCleanup {
                    already_present: false,
                },
                OpKind::RemoveAll {
                    path: p.dir.clone(),
                },
            ),
            (Step::CommitCleanup { already_present }, _) => {
                // The blob is in place; a leftover ingest directory is harmless garbage.
                let digest = self.committed.expect("digest set at commit");
                self.finish(Ok(Reply::Committed {
                    digest,
                    size: self.offset,
                    already_present,
                }));
            }
            (
                step @ (Step::CommitTruncate
                | Step::CommitFsync
                | Step::CommitCloseData
                | Step::CommitCloseState
                | Step::CommitMkdir
                | Step::CommitRename
                | Step::CommitFsyncDir),
                Err(e),
            ) => {
                // Nothing is committed. The data stays in the ingest; handles may be closed,
                // so the ingest is finished and must be reopened (it resumes) to retry.
                let path = match step {
                    Step::CommitMkdir | Step::CommitFsyncDir => p.blobs.clone(),
                    _ => p.file(DATA),
                };
                self.committed = None;
                let err = self.io_error(e, path);
                self.pending = None;
                self.phase = Phase::Finished;
                self.out.push_back(Output::Done(Err(err)));
            }
            // ---- mismatch / abort / close ----------------------------------------------
            (Step::MismatchClose { error, next }, _) => {
                let e2 = error.clone();
                if !self.close_next(
                    move |n| Step::MismatchClose {
                        error: e2.clone(),
                        next: n,
                    },
                    next,
                ) {
                    self.submit(
                        Step::MismatchRemove { error },
                        OpKind::RemoveAll {
                            path: p.dir.clone(),
                        },
                    );
                }
            }
            (Step::MismatchRemove { error }, _) => self.finish(Err(*error)),
            (Step::AbortClose { next }, _) => {
                if !self.close_next(|n| Step::AbortClose { next: n }, next) {
                    self.submit(
                        Step::AbortRemove,
                        OpKind::RemoveAll {
                            path: p.dir.clone(),
                        },
                    );
                }
            }
            (Step::AbortRemove, Ok(_)) => self.finish(Ok(Reply::Aborted)),
            (Step::AbortRemove, Err(e)) => {
                let err = self.io_error(e, p.dir.clone());
                self.pending = None;
                self.phase = Phase::Finished;
                self.out.push_back(Output::Done(Err(err)));
            }
            (Step::CloseHandles { next }, _) => {
                if !self.close_next(|n| Step::CloseHandles { next: n }, next) {
                    self.finish(Ok(Reply::Closed));
                }
            }
            // ---- failures while opening ------------------------------------------------
            (
                step @ (Step::CreateDir
                | Step::WriteMeta
                | Step::RenameMeta
                | Step::CreateData
                | Step::CreateState
                | Step::OpenData
                | Step::OpenState
                | Step::ReadState
                | Step::TruncateResumed { .. }
                | Step::DiscardStale { .. }),
                Err(e),
            ) => {
                let path = match step {
                    Step::CreateDir | Step::DiscardStale { .. } => p.dir.clone(),
                    Step::WriteMeta | Step::RenameMeta => p.file(META),
                    Step::CreateState | Step::OpenState | Step::ReadState => p.file(STATE),
                    _ => p.file(DATA),
                };
                let err = self.io_error(e, path);
                // Release whatever was opened; the ingest can be opened again.
                self.release_after_failure(err);
            }
            (step, Ok(_)) => {
                // The driver answered with the wrong kind of output: the request ends with a
                // protocol error and, for a write, leaves the ingest as it was before it.
                let op = match step {
                    Step::CreateData | Step::CreateState | Step::OpenData | Step::OpenState => {
                        "open"
                    }
                    Step::ReadState => "read",
                    Step::WriteData { .. } | Step::WriteCheckpoint { .. } => "write",
                    _ => "op",
                };
                if self.undo.is_some() {
                    self.rollback();
                }
                self.finish(Err(protocol(op)));
            }
        }
        Ok(())
    }

    /// Removes an unusable ingest directory (no handles are open yet) and starts afresh.
    fn discard(&mut self, reason: String) {
        let path = self.req.paths.dir.clone();
        self.submit(Step::DiscardStale { reason }, OpKind::RemoveAll { path });
    }

    /// Ends a failed open. Handles opened so far are closed by the driver, which owns every
    /// handle a machine leaves open when it is dropped.
    fn release_after_failure(&mut self, err: IngestError) {
        self.pending = None;
        self.phase = Phase::Finished;
        self.out.push_back(Output::Done(Err(err)));
    }
}

impl Machine for Ingest {
    type Input = Input;
    type Event = ();
    type Done = Result<Reply, IngestError>;
    type Error = IngestError;

    fn handle(&mut self, now: Instant, input: Input) -> Result<(), IngestError> {
        match input {
            Input::Completed(c) => self.complete(now, c),
            other => self.request(now, other),
        }
    }

    fn poll(&mut self) -> Option<Output<(), Result<Reply, IngestError>>> {
        self.out.pop_front()
    }
}

/// The `meta` file of an ingest, parsed. `None` if it is not an ingest's meta file.
#[must_use]
pub fn parse_meta(meta: &[u8]) -> Option<IngestMeta> {
    serde_json::from_slice(meta).ok()
}

/// The status of an ingest that no machine holds open, from its parsed `meta` file, its
/// `state` file and the length of its `data` file.
#[must_use]
pub fn status_at_rest(meta: IngestMeta, state: &[u8], data_len: u64) -> Status {
    let cp = checkpoint::best(state, data_len);
    Status {
        reference: meta.reference,
        offset: cp.as_ref().map_or(0, |c| c.offset),
        total: cp.as_ref().map_or(meta.total, |c| c.total.max(meta.total)),
        expected: meta.expected,
        started_at: meta.started_at,
        updated_at: cp.map_or(meta.started_at, |c| c.updated_at),
    }
}
