//! The system under test: a real [`Ingest`] on a [`MemHost`], driven by [`Command`]s and checked
//! against the [`Model`] after each one.
//!
//! [`Harness::apply`] performs a command and compares every reply with [`Model::expect`];
//! [`Harness::check`] holds the invariants that must be true between commands. Both return a
//! description of the first violation instead of panicking, so the proptest and the fuzz target
//! decide how to fail.
//!
//! Beyond the replies, `apply` checks on the way:
//! * at the first Op of every request, that a second request is refused with `Busy` and a
//!   completion with an unknown id with `UnexpectedCompletion` (and neither disturbs it);
//! * that a refused write emits nothing and changes neither offset nor digest;
//! * that reopening never reads the data file (resume uses the hash checkpoint only);
//! * that a machine which finished cleanly (committed, aborted, closed, mismatch) left no
//!   handle open.

use berth_core::content::checkpoint::SLOT_LEN;
use berth_core::content::{Ingest, IngestError, IngestPaths, Input, OpenRequest, Recovery, Reply};
use berth_core::digest::Hasher;
use berth_core::op::{Completion, OpId};
use berth_core::{Digest, Instant, Machine, Output};

use crate::host::{Action, Match, MemHost, Outcome, Rule};
use crate::model::{Command, CrashPoint, Expect, Life, Model, Stage};

/// The ingest directory.
pub const DIR: &str = "content/ingest/ref1";
/// The blob root.
pub const BLOBS: &str = "content/blobs";
/// The ref.
pub const REF: &str = "layer-ref1";

/// Tag of the rule armed by [`Command::FaultNextOp`].
const ARMED: u32 = 1;
/// Tag of rules that live for one request.
const REQUEST: u32 = 2;

/// The data file of the ingest.
#[must_use]
pub fn data_path() -> String {
    format!("{DIR}/data")
}

/// The state (checkpoint) file of the ingest.
#[must_use]
pub fn state_path() -> String {
    format!("{DIR}/state")
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// How one request ended.
#[derive(Debug)]
enum Ran {
    /// `handle` refused the request input.
    Refused(IngestError),
    /// The machine reported `Done`.
    Done(Result<Reply, IngestError>),
    /// The host crashed.
    Crashed,
}

/// An ingest on an in-memory host. See the module docs.
#[derive(Debug)]
pub struct Harness {
    /// The host.
    pub host: MemHost,
    /// The machine, while one holds the ingest.
    pub ingest: Option<Ingest>,
    clock: u64,
}

impl Harness {
    /// A host with a freshly opened, empty ingest (what [`Model::new`] describes).
    pub fn new() -> Result<Self, String> {
        let mut h = Harness {
            host: MemHost::new(),
            ingest: None,
            clock: 1_700_000_000_000_000_000,
        };
        let ran = h.open(None)?;
        h.expect_opened(ran, 0, true)?;
        Ok(h)
    }

    fn now(&mut self) -> Instant {
        self.clock += 1_000_000;
        Instant(self.clock)
    }

    fn paths() -> IngestPaths {
        IngestPaths {
            dir: DIR.into(),
            blobs: BLOBS.into(),
        }
    }

    /// Drains the machine until `Done` or a crash. Probes the busy machine at its first Op.
    fn drive(&mut self, probe: bool) -> Result<Ran, String> {
        let now = self.now();
        let m = self.ingest.as_mut().ok_or("no machine to drive")?;
        let mut first = probe;
        loop {
            match m.poll() {
                Some(Output::Op(op)) => {
                    if std::mem::take(&mut first) {
                        let busy = m.handle(now, Input::Abort);
                        ensure!(
                            matches!(busy, Err(IngestError::Busy { .. })),
                            "a request while {} is in flight gave {busy:?}, not Busy",
                            op.kind.name()
                        );
                        let bogus = OpId(op.id.0.wrapping_add(1000));
                        let stray = m.handle(
                            now,
                            Completion {
                                id: bogus,
                                result: Ok(berth_core::op::OpOutput::Done),
                            }
                            .into(),
                        );
                        ensure!(
                            stray == Err(IngestError::UnexpectedCompletion(bogus)),
                            "a completion with an unknown id gave {stray:?}"
                        );
                    }
                    match self.host.perform(op.kind) {
                        Outcome::Completed(result) => m
                            .handle(now, Completion { id: op.id, result }.into())
                            .map_err(|e| format!("completion refused: {e:?}"))?,
                        Outcome::Crashed => return Ok(Ran::Crashed),
                    }
                }
                Some(Output::Done(d)) => {
                    ensure!(
                        m.poll().is_none(),
                        "the machine emitted more after Done {d:?}"
                    );
                    return Ok(Ran::Done(d));
                }
                Some(Output::Event(()) | Output::Wait(_)) => {}
                None => return Err("the machine went quiet without Done".into()),
            }
        }
    }

    /// Hands a request input to the machine and drives it to its end.
    fn request(&mut self, input: Input) -> Result<Ran, String> {
        let now = self.now();
        self.host.seal();
        let m = self.ingest.as_mut().ok_or("no machine for a request")?;
        match m.handle(now, input) {
            Ok(()) => self.drive(true),
            Err(e) => {
                let extra = m.poll();
                ensure!(
                    extra.is_none(),
                    "a refused request emitted {extra:?} ({e:?})"
                );
                Ok(Ran::Refused(e))
            }
        }
    }

    /// Drops a machine that finished. `clean`: it must have closed its handles itself.
    fn drop_machine(&mut self, clean: bool) -> Result<(), String> {
        if let Some(m) = self.ingest.take() {
            ensure!(m.is_finished(), "dropping a machine that is not finished");
            let now = self.now();
            let mut m = m;
            let again = m.handle(now, Input::Abort);
            ensure!(
                matches!(again, Err(IngestError::Finished { .. })),
                "a request to a finished machine gave {again:?}, not Finished"
            );
        }
        let leaked = self.host.close_all();
        ensure!(
            !clean || leaked == 0,
            "a cleanly finished machine left {leaked} handles open"
        );
        Ok(())
    }

    /// Opens the ingest with a new machine. Checks that no Op read the data file.
    fn open(&mut self, expected: Option<Digest>) -> Result<Ran, String> {
        ensure!(
            self.ingest.is_none(),
            "opening while a machine holds the ingest"
        );
        let now = self.now();
        let req = OpenRequest {
            namespace: "default".into(),
            reference: REF.into(),
            expected,
            total: 0,
            paths: Self::paths(),
        };
        self.host.clear_log();
        self.ingest = Some(Ingest::open(now, req));
        let ran = self.drive(false)?;
        let data = data_path();
        let read = self
            .host
            .log()
            .iter()
            .find(|r| (r.op == "read" || r.op == "readfile") && r.path == data);
        ensure!(read.is_none(), "opening read the data file: {read:?}");
        Ok(ran)
    }

    fn expect_opened(&mut self, ran: Ran, offset: u64, created: bool) -> Result<(), String> {
        let data_len = self.host.file(&data_path()).map_or(0, |d| d.len() as u64);
        match ran {
            Ran::Done(Ok(Reply::Opened { status, recovery })) => {
                ensure!(
                    status.offset == offset,
                    "opened at offset {}, model says {offset} ({recovery:?})",
                    status.offset
                );
                let ok = match &recovery {
                    Recovery::Created => created,
                    Recovery::Resumed { offset: o, .. } => !created && *o == offset,
                    Recovery::Restarted { .. } => !created && offset == 0,
                    _ => false,
                };
                ensure!(
                    ok,
                    "opened with {recovery:?}, model says offset {offset}, created {created}"
                );
                ensure!(
                    data_len == offset,
                    "after opening at {offset} the data file holds {data_len} bytes"
                );
                Ok(())
            }
            Ran::Done(Err(IngestError::Io { .. })) => {
                Err(format!("open failed, model says open at {offset}: {ran:?}"))
            }
            other => Err(format!("open ended with {other:?}")),
        }
    }

    /// Compares the end of one request with what the model expects.
    fn expect(&mut self, ran: Ran, expect: Option<&Expect>) -> Result<(), String> {
        let Some(expect) = expect else {
            return Err(format!("the model expected nothing, got {ran:?}"));
        };
        match (expect, &ran) {
            (Expect::Status { offset }, Ran::Done(Ok(Reply::Status(s)))) => {
                ensure!(
                    s.offset == *offset,
                    "write status at {}, model says {offset}",
                    s.offset
                );
            }
            (
                Expect::OutOfRange { requested, current },
                Ran::Refused(IngestError::OutOfRange {
                    requested: r,
                    current: c,
                    ..
                }),
            ) => {
                ensure!(
                    (r, c) == (requested, current),
                    "OutOfRange({r}, {c}), model says ({requested}, {current})"
                );
            }
            (Expect::IoError, Ran::Done(Err(IngestError::Io { .. }))) => {
                if self.ingest.as_ref().is_some_and(Ingest::is_finished) {
                    self.drop_machine(false)?;
                }
            }
            (
                Expect::Committed {
                    digest,
                    size,
                    already_present,
                },
                Ran::Done(Ok(Reply::Committed {
                    digest: d,
                    size: s,
                    already_present: a,
                })),
            ) => {
                ensure!(
                    (d, s, a) == (digest, size, already_present),
                    "committed ({d}, {s}, {a}), model says ({digest}, {size}, {already_present})"
                );
                self.drop_machine(true)?;
            }
            (
                Expect::SizeMismatch { expected, actual },
                Ran::Done(Err(IngestError::SizeMismatch {
                    expected: e,
                    actual: a,
                    ..
                })),
            ) => {
                ensure!(
                    (e, a) == (expected, actual),
                    "SizeMismatch({e}, {a}), model says ({expected}, {actual})"
                );
                self.drop_machine(true)?;
            }
            (
                Expect::DigestMismatch { expected, actual },
                Ran::Done(Err(IngestError::DigestMismatch {
                    expected: e,
                    actual: a,
                    ..
                })),
            ) => {
                ensure!(
                    (e, a) == (expected, actual),
                    "DigestMismatch({e}, {a}), model says ({expected}, {actual})"
                );
                self.drop_machine(true)?;
            }
            (Expect::Aborted, Ran::Done(Ok(Reply::Aborted)))
            | (Expect::Closed, Ran::Done(Ok(Reply::Closed))) => self.drop_machine(true)?,
            (Expect::Crashed, Ran::Crashed) => {}
            (Expect::Opened { offset, created }, _) => {
                self.expect_opened(ran, *offset, *created)?;
            }
            (Expect::OpenFailed, Ran::Done(Err(IngestError::Io { .. }))) => {
                self.drop_machine(false)?;
            }
            _ => return Err(format!("model expected {expect:?}, got {ran:?}")),
        }
        Ok(())
    }

    /// Kills the machine (if any) and the host's handles; contents stay.
    fn crash(&mut self, lose_last_write: bool) {
        self.ingest = None;
        self.host.crash(lose_last_write);
    }

    fn reopen(
        &mut self,
        expected: Option<Digest>,
        expect: &mut std::slice::Iter<'_, Expect>,
    ) -> Result<(), String> {
        let ran = self.open(expected)?;
        self.expect(ran, expect.next())
    }

    fn rule(&mut self, when: Match, skip: u32, action: Action) {
        self.host.push_rule(Rule {
            tag: REQUEST,
            when,
            skip,
            action,
        });
    }

    /// True if a write at `offset` is a rewrite: offset 0 over existing data.
    fn is_rewrite(&self, offset: u64) -> bool {
        offset == 0 && self.ingest.as_ref().is_some_and(|m| m.status().offset > 0)
    }

    /// How many `Write`s to the state file precede the final checkpoint of a write at `offset`:
    /// those of a rewrite's zero checkpoint (one slot, in pieces when the host writes short).
    fn zero_checkpoint_writes(&self, offset: u64) -> u32 {
        if self.is_rewrite(offset) {
            self.host.write_ops(SLOT_LEN)
        } else {
            0
        }
    }

    /// Performs `cmd` and checks its replies; `model` is the model *after* the command. Call
    /// [`Harness::check`] afterwards for the invariants.
    pub fn apply(&mut self, cmd: &Command, model: &Model) -> Result<(), String> {
        let mut expect = model.expect.iter();
        let (data, state) = (data_path(), state_path());
        match cmd {
            Command::Write {
                offset,
                data: bytes,
                fault,
            } => {
                let before = self
                    .ingest
                    .as_ref()
                    .map(|m| (m.status().offset, m.digest()));
                if let Some(f) = fault {
                    let action = Action::Fail(f.errno);
                    let piece = u32::from(f.piece);
                    let zero = self.zero_checkpoint_writes(*offset);
                    match f.stage {
                        // Only within the zero checkpoint: beyond it lies the final one.
                        Stage::ZeroCheckpoint if piece < zero => {
                            self.rule(Match::OpOn("write", state), piece, action);
                        }
                        Stage::ZeroCheckpoint => {}
                        Stage::Truncate => self.rule(Match::OpOn("truncate", data), piece, action),
                        Stage::Data => self.rule(Match::OpOn("write", data), piece, action),
                        Stage::State => {
                            self.rule(Match::OpOn("write", state), zero + piece, action);
                        }
                    }
                }
                let ran = self.request(Input::Write {
                    offset: *offset,
                    data: bytes.clone().into(),
                })?;
                self.host.remove_rules(REQUEST);
                if let Ran::Refused(_) = ran {
                    let after = self
                        .ingest
                        .as_ref()
                        .map(|m| (m.status().offset, m.digest()));
                    ensure!(
                        before == after,
                        "a refused write changed the ingest from {before:?} to {after:?}"
                    );
                }
                self.expect(ran, expect.next())?;
            }
            Command::Commit { size, digest } => {
                let ran = self.request(Input::Commit {
                    size: *size,
                    expected: *digest,
                })?;
                self.expect(ran, expect.next())?;
            }
            Command::Abort => {
                let ran = self.request(Input::Abort)?;
                self.expect(ran, expect.next())?;
            }
            Command::Reopen { expected } => {
                if self.ingest.is_some() {
                    let ran = self.request(Input::Close)?;
                    self.expect(ran, expect.next())?;
                }
                self.reopen(*expected, &mut expect)?;
            }
            Command::CrashReopen { lose_last_write } => {
                self.crash(*lose_last_write);
                self.reopen(None, &mut expect)?;
            }
            Command::CrashDuringWrite {
                offset,
                data: bytes,
                point,
            } => {
                // Rules for Ops the write does not have never fire: it completes.
                let zero = self.zero_checkpoint_writes(*offset);
                match point {
                    CrashPoint::BeforeZeroCheckpoint if zero > 0 => {
                        self.rule(Match::OpOn("write", state), 0, Action::Crash);
                    }
                    CrashPoint::TornZeroCheckpoint if zero > 0 => {
                        self.rule(Match::OpOn("write", state), 0, Action::TornCrash);
                    }
                    CrashPoint::BeforeZeroCheckpoint | CrashPoint::TornZeroCheckpoint => {}
                    CrashPoint::BeforeTruncate => {
                        self.rule(Match::OpOn("truncate", data), 0, Action::Crash);
                    }
                    CrashPoint::BeforeData => {
                        self.rule(Match::OpOn("write", data), 0, Action::Crash);
                        self.rule(Match::OpOn("write", state), zero, Action::Crash);
                    }
                    CrashPoint::BeforeState => {
                        self.rule(Match::OpOn("write", state), zero, Action::Crash);
                    }
                    CrashPoint::TornState => {
                        self.rule(Match::OpOn("write", state), zero, Action::TornCrash);
                    }
                }
                let ran = self.request(Input::Write {
                    offset: *offset,
                    data: bytes.clone().into(),
                })?;
                self.host.remove_rules(REQUEST);
                self.expect(ran, expect.next())?;
                self.crash(false);
                self.reopen(None, &mut expect)?;
            }
            Command::FaultNextOp { errno } => {
                self.host.remove_rules(ARMED);
                self.host.push_rule(Rule {
                    tag: ARMED,
                    when: Match::Any,
                    skip: 0,
                    action: Action::Fail(*errno),
                });
            }
            Command::ShortWrites(on) => self.host.short_writes = *on,
        }
        if let Some(extra) = expect.next() {
            return Err(format!("the model expected {extra:?} as well"));
        }
        Ok(())
    }

    /// The invariants between commands.
    pub fn check(&self, model: &Model) -> Result<(), String> {
        let data = self.host.file(&data_path());
        match (model.life, &self.ingest) {
            (Life::Open, Some(m)) => {
                ensure!(!m.is_finished(), "the machine is finished, model says open");
                let status = m.status();
                ensure!(
                    status.offset == model.offset(),
                    "status offset {}, model offset {}",
                    status.offset,
                    model.offset()
                );
                ensure!(
                    m.digest() == model.digest(),
                    "hasher digest {}, digest of the model's {} bytes {}",
                    m.digest(),
                    model.offset(),
                    model.digest()
                );
                let data = data.ok_or("the ingest is open but has no data file")?;
                ensure!(
                    data.get(..model.bytes.len()) == Some(&model.bytes[..]),
                    "the data file's first {} bytes are not the bytes written \
                     (file {} bytes, digest of its prefix {})",
                    model.bytes.len(),
                    data.len(),
                    Digest::sha256(&data[..data.len().min(model.bytes.len())])
                );
                ensure!(
                    self.host.open_handles() == 2,
                    "an open ingest should hold 2 handles, the host has {}",
                    self.host.open_handles()
                );
            }
            (Life::Open, None) => return Err("the model says open, no machine holds it".into()),
            (_, Some(_)) => {
                return Err(format!(
                    "a machine holds the ingest, model says {:?}",
                    model.life
                ))
            }
            (life, None) => {
                ensure!(
                    self.host.open_handles() == 0,
                    "no machine, but {} handles are open",
                    self.host.open_handles()
                );
                let present = self.host.exists(DIR);
                match life {
                    Life::Gone => ensure!(
                        !present,
                        "the ingest is gone, but {DIR} holds {:?}",
                        self.host.files_under(DIR).keys().collect::<Vec<_>>()
                    ),
                    _ => ensure!(
                        self.host.file(&format!("{DIR}/meta")).is_some(),
                        "the ingest is resumable but has no meta file"
                    ),
                }
            }
        }
        let blobs = self.host.files_under(BLOBS);
        let want: std::collections::BTreeMap<String, Vec<u8>> = model
            .blobs
            .iter()
            .map(|(key, b)| (format!("{BLOBS}/{key}"), b.clone()))
            .collect();
        if blobs != want {
            let names = |m: &std::collections::BTreeMap<String, Vec<u8>>| {
                m.iter()
                    .map(|(k, v)| format!("{k} ({} bytes)", v.len()))
                    .collect::<Vec<_>>()
            };
            return Err(format!(
                "blob store holds {:?}, model says {:?}",
                names(&blobs),
                names(&want)
            ));
        }
        for (path, bytes) in &blobs {
            let named = path
                .strip_prefix(&format!("{BLOBS}/"))
                .and_then(|p| Digest::parse(&p.replacen('/', ":", 1)).ok())
                .ok_or_else(|| format!("blob {path} is not named by a digest"))?;
            let mut h = Hasher::new(named.algorithm());
            h.update(bytes);
            ensure!(h.digest() == named, "blob {path} does not hash to its name");
        }
        ensure!(
            self.host.has_rule(ARMED) == model.armed.is_some(),
            "host has an armed fault: {}, model: {:?}",
            self.host.has_rule(ARMED),
            model.armed
        );
        Ok(())
    }
}

/// Runs `cmds` from the start, checking after each; skips commands the model does not allow.
/// Returns the first violation with the index of the command that caused it.
pub fn run(cmds: &[Command]) -> Result<(), String> {
    let mut model = Model::new();
    let mut sut = Harness::new()?;
    sut.check(&model)?;
    for (i, cmd) in cmds.iter().enumerate() {
        if !model.allows(cmd) {
            continue;
        }
        model.apply(cmd);
        sut.apply(cmd, &model)
            .and_then(|()| sut.check(&model))
            .map_err(|e| format!("step {i} {cmd:?}: {e}"))?;
    }
    Ok(())
}
