//! The reference model of one [`Ingest`](berth_core::content::Ingest): what it must hold and
//! answer after each [`Command`], in containerd's semantics.
//!
//! The model is plain data and a pure `apply`. For every command it records the replies the
//! system under test must produce ([`Expect`]); [`crate::harness`] performs the command and
//! compares. Commands carry concrete values (an offset, a digest), never "the right one", so a
//! shrunk sequence stays meaningful: the model decides whether that value is right *now*.
//!
//! Physical faults are modelled by where they strike in the Ops of one write, which is fixed by
//! the contract. An append writes the data (in pieces when the host writes short), then one
//! checkpoint slot. A rewrite (offset 0 over existing data) first writes a checkpoint of offset 0
//! with a fresh hash under a new seq (the *zero checkpoint*), then truncates the data file, then
//! writes the data and the checkpoint slot as an append does. Once the zero checkpoint is down,
//! offset 0 is where the rewrite falls back to: a failure or a crash after it leaves the ingest
//! at 0 (old bytes may linger past 0 in the data file; resume and commit truncate them). A
//! failure or crash in the zero checkpoint itself leaves the old offset and the old bytes.
//!
//! Like [`crate::host`], this file depends on `berth-core` and `std` only, so the fuzz targets
//! include it with `#[path]`.

use std::collections::BTreeMap;

use berth_core::digest::{Algorithm, Hasher};
use berth_core::op::errno;
use berth_core::Digest;

/// Where in a write an injected errno strikes, in the order of the write's Ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The n-th `Write` of a rewrite's zero checkpoint to the state file (absent for an append).
    ZeroCheckpoint,
    /// The `Truncate` of the data file that follows a rewrite's zero checkpoint (absent for an
    /// append).
    Truncate,
    /// The n-th `Write` to the data file (absent for empty data).
    Data,
    /// The n-th `Write` of the checkpoint slot that ends the write (after a rewrite's zero
    /// checkpoint).
    State,
}

/// An errno injected into one Op of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteFault {
    /// Which kind of Op.
    pub stage: Stage,
    /// Which piece of it: 0 is the first Op; 1 exists only when the host writes short.
    pub piece: u8,
    /// The errno.
    pub errno: i32,
}

/// Where a crash strikes during a write, in the order of the write's Ops.
///
/// The first three exist only in a rewrite: an append has no zero checkpoint and no truncate,
/// so it runs to its end and the crash follows it, between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Before a rewrite's zero checkpoint is written.
    BeforeZeroCheckpoint,
    /// Half of a rewrite's zero checkpoint slot lands, then the crash.
    TornZeroCheckpoint,
    /// After a rewrite's zero checkpoint, before its truncate.
    BeforeTruncate,
    /// Before the first `Write` of data (after a rewrite's truncate), or before the final
    /// checkpoint write when there is no data.
    BeforeData,
    /// After all data, before the final checkpoint slot is written.
    BeforeState,
    /// Half of the final checkpoint slot lands, then the crash.
    TornState,
}

impl CrashPoint {
    /// True if the point lies in the Ops only a rewrite has.
    #[must_use]
    pub fn rewrite_only(self) -> bool {
        matches!(
            self,
            CrashPoint::BeforeZeroCheckpoint
                | CrashPoint::TornZeroCheckpoint
                | CrashPoint::BeforeTruncate
        )
    }

    /// True if the point lies before a rewrite's zero checkpoint is whole.
    #[must_use]
    pub fn before_zero_checkpoint(self) -> bool {
        matches!(
            self,
            CrashPoint::BeforeZeroCheckpoint | CrashPoint::TornZeroCheckpoint
        )
    }
}

/// One step of a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `Input::Write` at `offset`, optionally with a fault inside it.
    Write {
        /// Requested offset.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
        /// A fault injected into one of the write's Ops.
        fault: Option<WriteFault>,
    },
    /// `Input::Commit`.
    Commit {
        /// Size to check (0: don't).
        size: u64,
        /// Digest to check.
        digest: Option<Digest>,
    },
    /// `Input::Abort`.
    Abort,
    /// Open the ref again: `Input::Close` first if a machine holds it (else it follows a commit,
    /// abort, crash or failure).
    Reopen {
        /// The digest the open request expects.
        expected: Option<Digest>,
    },
    /// Kill the machine between requests, then open the ref again.
    CrashReopen {
        /// Also lose the host's last unsynced `Write` (only after a successful write).
        lose_last_write: bool,
    },
    /// Start a write, crash at `point`, then open the ref again.
    CrashDuringWrite {
        /// Requested offset.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
        /// Where the crash strikes.
        point: CrashPoint,
    },
    /// The next Op the host performs, whatever it is, fails with this errno.
    FaultNextOp {
        /// The errno.
        errno: i32,
    },
    /// Turn short writes on or off.
    ShortWrites(bool),
}

/// Whether a machine holds the ingest, and whether it exists on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// A machine holds it, ready for requests.
    Open,
    /// It is on disk but no machine holds it: reopening resumes it.
    Resumable,
    /// It does not exist: reopening creates it.
    Gone,
}

/// One reply the system under test must give, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// `Reply::Status` at this offset.
    Status {
        /// Offset after the write.
        offset: u64,
    },
    /// `handle` refuses the write with `OutOfRange`, emitting nothing.
    OutOfRange {
        /// Offset asked for.
        requested: u64,
        /// Offset of the ingest.
        current: u64,
    },
    /// The request ends with `IngestError::Io`.
    IoError,
    /// `Reply::Committed`.
    Committed {
        /// Digest of the blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// It was in the store already.
        already_present: bool,
    },
    /// Commit ends with `SizeMismatch`.
    SizeMismatch {
        /// Size given.
        expected: u64,
        /// Bytes written.
        actual: u64,
    },
    /// Commit ends with `DigestMismatch`.
    DigestMismatch {
        /// Digest given.
        expected: Digest,
        /// Digest of the bytes.
        actual: Digest,
    },
    /// `Reply::Aborted`.
    Aborted,
    /// `Reply::Closed`.
    Closed,
    /// The host crashed before the request finished.
    Crashed,
    /// `Reply::Opened` at this offset.
    Opened {
        /// Offset after opening.
        offset: u64,
        /// No ingest existed (`Recovery::Created`).
        created: bool,
    },
    /// Opening ends with `IngestError::Io`.
    OpenFailed,
}

/// The reference model. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// Who holds the ingest.
    pub life: Life,
    /// The bytes written so far; the offset is their length.
    pub bytes: Vec<u8>,
    /// The digest the ingest expects (stored in its `meta`); it also picks the algorithm.
    pub expected: Option<Digest>,
    /// Committed blobs by `<algorithm>/<hex>`.
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// An errno armed by [`Command::FaultNextOp`] that no Op has consumed yet.
    pub armed: Option<i32>,
    /// The host writes short.
    pub short_writes: bool,
    /// Where losing the host's last write goes back to, if the last request was a successful
    /// write (so the host's last write is its final checkpoint slot): after an append, the
    /// offset before it; after a rewrite, 0 (its zero checkpoint outranks the old slots).
    pub prev_offset: Option<u64>,
    /// What the last command must have produced.
    pub expect: Vec<Expect>,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

/// The errnos faults are drawn from.
pub const FAULT_ERRNOS: [i32; 2] = [errno::ENOSPC, errno::EIO];

impl Model {
    /// Before the first command: the ingest is open, freshly created, and empty.
    #[must_use]
    pub fn new() -> Self {
        Model {
            life: Life::Open,
            bytes: Vec::new(),
            expected: None,
            blobs: BTreeMap::new(),
            armed: None,
            short_writes: false,
            prev_offset: None,
            expect: Vec::new(),
        }
    }

    /// The ingest's offset.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The algorithm the ingest hashes with: that of its expected digest, else sha256.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.expected.map_or(Algorithm::Sha256, |d| d.algorithm())
    }

    /// The digest of the bytes written, with the ingest's algorithm.
    #[must_use]
    pub fn digest(&self) -> Digest {
        let mut h = Hasher::new(self.algorithm());
        h.update(&self.bytes);
        h.digest()
    }

    /// True if `cmd` may run now.
    #[must_use]
    pub fn allows(&self, cmd: &Command) -> bool {
        match cmd {
            Command::FaultNextOp { .. } | Command::ShortWrites(_) | Command::Reopen { .. } => true,
            Command::CrashReopen {
                lose_last_write: true,
            } => self.life == Life::Open && self.prev_offset.is_some(),
            _ => self.life == Life::Open,
        }
    }

    /// True if the write is refused: neither at the current offset nor at 0.
    fn out_of_range(&self, offset: u64) -> bool {
        offset != self.offset() && offset != 0
    }

    /// True if a write at `offset` rewrites existing data (zero checkpoint, truncate, write).
    fn is_rewrite(&self, offset: u64) -> bool {
        offset == 0 && !self.bytes.is_empty()
    }

    /// True if the Op `fault` names happens in a write of `data` at `offset`.
    fn fault_strikes(&self, offset: u64, data: &[u8], fault: WriteFault) -> bool {
        match (fault.stage, fault.piece) {
            (Stage::ZeroCheckpoint, 0) | (Stage::Truncate, 0) => self.is_rewrite(offset),
            (Stage::ZeroCheckpoint, 1) => self.is_rewrite(offset) && self.short_writes,
            (Stage::Data, 0) => !data.is_empty(),
            (Stage::Data, 1) => self.short_writes && data.len() >= 2,
            (Stage::State, 0) => true,
            (Stage::State, 1) => self.short_writes,
            _ => false,
        }
    }

    /// A write fails after its Ops began. Nothing changes, except that a rewrite whose zero
    /// checkpoint is down falls back to it: offset 0 (its truncate may have taken the old bytes).
    fn write_failed(&mut self, offset: u64, zero_checkpoint_down: bool) {
        if zero_checkpoint_down && self.is_rewrite(offset) {
            self.bytes.clear();
        }
        self.expect.push(Expect::IoError);
    }

    fn write(&mut self, offset: u64, data: &[u8], fault: Option<WriteFault>) {
        if self.out_of_range(offset) {
            self.expect.push(Expect::OutOfRange {
                requested: offset,
                current: self.offset(),
            });
            return;
        }
        if self.armed.take().is_some() {
            // The very first Op fails: nothing has happened yet.
            self.write_failed(offset, false);
            return;
        }
        if let Some(f) = fault.filter(|f| self.fault_strikes(offset, data, *f)) {
            self.write_failed(offset, f.stage != Stage::ZeroCheckpoint);
            return;
        }
        if self.is_rewrite(offset) {
            self.bytes.clear();
            self.prev_offset = Some(0);
        } else {
            self.prev_offset = Some(self.offset());
        }
        self.bytes.extend_from_slice(data);
        self.expect.push(Expect::Status {
            offset: self.offset(),
        });
    }

    fn reopen(&mut self, expected: Option<Digest>) {
        if self.armed.take().is_some() {
            // Reading `meta` fails with an errno other than ENOENT.
            self.expect.push(Expect::OpenFailed);
            return;
        }
        let created = self.life == Life::Gone;
        if created {
            self.expected = expected;
        } else if expected.is_some() && expected != self.expected {
            // The stored ingest expects other content: it is discarded and started afresh.
            self.bytes.clear();
            self.expected = expected;
        }
        // else: it resumes, adopting the expected digest stored in its meta.
        self.life = Life::Open;
        self.expect.push(Expect::Opened {
            offset: self.offset(),
            created,
        });
    }

    fn gone(&mut self) {
        self.life = Life::Gone;
        self.bytes.clear();
        self.expected = None;
    }

    /// Applies `cmd`, recording in [`Model::expect`] what the system must answer.
    pub fn apply(&mut self, cmd: &Command) {
        self.expect.clear();
        // Only a successful write leaves its final checkpoint as the host's last write.
        let prev_offset = self.prev_offset.take();
        match cmd {
            Command::Write {
                offset,
                data,
                fault,
            } => self.write(*offset, data, *fault),
            Command::Commit { size, digest } => {
                let actual = self.digest();
                if *size > 0 && *size != self.offset() {
                    // Mismatches close the handles first and ignore errors doing so.
                    self.armed = None;
                    self.expect.push(Expect::SizeMismatch {
                        expected: *size,
                        actual: self.offset(),
                    });
                    self.gone();
                } else if let Some(expected) = digest.or(self.expected).filter(|d| *d != actual) {
                    self.armed = None;
                    self.expect
                        .push(Expect::DigestMismatch { expected, actual });
                    self.gone();
                } else if self.armed.take().is_some() {
                    // The first commit Op (truncate or fsync) fails: nothing is committed, the
                    // machine is finished, the ingest stays on disk.
                    self.expect.push(Expect::IoError);
                    self.life = Life::Resumable;
                } else {
                    let key = format!("{}/{}", actual.algorithm(), actual.hex());
                    self.expect.push(Expect::Committed {
                        digest: actual,
                        size: self.offset(),
                        already_present: self.blobs.contains_key(&key),
                    });
                    self.blobs.insert(key, self.bytes.clone());
                    self.gone();
                }
            }
            Command::Abort => {
                // Abort closes the handles first and ignores errors doing so.
                self.armed = None;
                self.expect.push(Expect::Aborted);
                self.gone();
            }
            Command::Reopen { expected } => {
                if self.life == Life::Open {
                    // Close ignores errors closing handles.
                    self.armed = None;
                    self.expect.push(Expect::Closed);
                    self.life = Life::Resumable;
                }
                self.reopen(*expected);
            }
            Command::CrashReopen { lose_last_write } => {
                if *lose_last_write {
                    if let Some(prev) = prev_offset {
                        self.bytes.truncate(prev as usize);
                    }
                }
                self.life = Life::Resumable;
                self.reopen(None);
            }
            Command::CrashDuringWrite {
                offset,
                data,
                point,
            } => {
                if self.out_of_range(*offset) {
                    self.expect.push(Expect::OutOfRange {
                        requested: *offset,
                        current: self.offset(),
                    });
                } else if self.armed.take().is_some() {
                    // The write fails on its first Op, before the crash point; the crash then
                    // happens between requests.
                    self.write_failed(*offset, false);
                } else if point.rewrite_only() && !self.is_rewrite(*offset) {
                    // An append has no such Op: it completes, and the crash follows it.
                    self.write(*offset, data, None);
                } else {
                    self.expect.push(Expect::Crashed);
                    // The write never completed, so its final checkpoint is not down. An append
                    // resumes where it was. A rewrite whose zero checkpoint is whole resumes
                    // from it, at 0 (its truncate may have taken the old bytes); one that
                    // crashed before that resumes from the old checkpoint, over the old bytes.
                    if self.is_rewrite(*offset) && !point.before_zero_checkpoint() {
                        self.bytes.clear();
                    }
                }
                // The crash settles the host's last write (nothing was lost): no later crash
                // can lose it.
                self.prev_offset = None;
                self.life = Life::Resumable;
                self.reopen(None);
            }
            Command::FaultNextOp { errno } => {
                self.armed = Some(*errno);
                self.prev_offset = prev_offset;
            }
            Command::ShortWrites(on) => {
                self.short_writes = *on;
                self.prev_offset = prev_offset;
            }
        }
    }
}
