//! Proptest strategies for [`Command`]s, and the `proptest-state-machine` glue that runs them
//! against the [`Model`] and a [`Harness`].

use berth_core::digest::{Algorithm, Hasher};
use berth_core::Digest;
use proptest::prelude::*;
use proptest::sample::select;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

use crate::harness::Harness;
use crate::model::{Command, CrashPoint, Life, Model, Stage, WriteFault, FAULT_ERRNOS};

/// A payload that commands and expected digests share, so content repeats across ingests.
pub const HELLO: &[u8] = b"hello";

/// Data for one write: mostly short and random, sometimes empty or [`HELLO`].
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        2 => Just(HELLO.to_vec()),
        8 => proptest::collection::vec(any::<u8>(), 1..24),
    ]
}

/// The digest an open request expects: mostly none, else that of [`HELLO`] (sha256 or sha512)
/// or the one the ingest already stores.
fn expected(current: Option<Digest>) -> impl Strategy<Value = Option<Digest>> {
    let mut sha512 = Hasher::new(Algorithm::Sha512);
    sha512.update(HELLO);
    prop_oneof![
        6 => Just(None),
        1 => Just(Some(Digest::sha256(HELLO))),
        1 => Just(Some(sha512.digest())),
        1 => Just(current),
    ]
}

fn errno() -> impl Strategy<Value = i32> {
    select(&FAULT_ERRNOS[..])
}

/// An offset for a write: mostly the current one, sometimes 0 (rewrite), sometimes wrong
/// (neither: below or above the current offset).
fn offset(cur: u64) -> impl Strategy<Value = u64> {
    let wrong = (1u64..64).prop_map(move |d| {
        if d % 2 == 0 && cur > 1 {
            1 + d % (cur - 1)
        } else {
            cur + d
        }
    });
    prop_oneof![6 => Just(cur), 2 => Just(0), 1 => wrong]
}

fn fault() -> impl Strategy<Value = WriteFault> {
    (
        select(
            &[
                Stage::ZeroCheckpoint,
                Stage::Truncate,
                Stage::Data,
                Stage::State,
            ][..],
        ),
        0u8..2,
        errno(),
    )
        .prop_map(|(stage, piece, errno)| WriteFault {
            stage,
            piece,
            errno,
        })
}

/// The model of an ingest as a proptest reference state machine.
#[derive(Debug, Clone, Copy)]
pub struct IngestModel;

impl ReferenceStateMachine for IngestModel {
    type State = Model;
    type Transition = Command;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::new()).boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Command> {
        if state.life != Life::Open {
            return prop_oneof![
                8 => expected(state.expected).prop_map(|expected| Command::Reopen { expected }),
                1 => errno().prop_map(|errno| Command::FaultNextOp { errno }),
                1 => any::<bool>().prop_map(Command::ShortWrites),
            ]
            .boxed();
        }
        let cur = state.offset();
        let right = state.digest();
        let mut other = state.bytes.clone();
        other.push(0x5a);
        let wrong = Digest::sha256(&other);
        let digest = prop_oneof![
            2 => Just(None),
            2 => Just(Some(right)),
            1 => Just(Some(wrong)),
        ];
        let size =
            prop_oneof![2 => Just(cur), 2 => Just(0), 1 => (1u64..8).prop_map(move |d| cur + d)];
        let lose_last = if state.prev_offset.is_some() {
            any::<bool>().boxed()
        } else {
            Just(false).boxed()
        };
        let point = select(
            &[
                CrashPoint::BeforeZeroCheckpoint,
                CrashPoint::TornZeroCheckpoint,
                CrashPoint::BeforeTruncate,
                CrashPoint::BeforeData,
                CrashPoint::BeforeState,
                CrashPoint::TornState,
            ][..],
        );
        prop_oneof![
            30 => (offset(cur), data()).prop_map(|(offset, data)| Command::Write {
                offset,
                data,
                fault: None,
            }),
            8 => (offset(cur), data(), fault()).prop_map(|(offset, data, fault)| Command::Write {
                offset,
                data,
                fault: Some(fault),
            }),
            8 => (size, digest).prop_map(|(size, digest)| Command::Commit { size, digest }),
            2 => Just(Command::Abort),
            4 => expected(state.expected).prop_map(|expected| Command::Reopen { expected }),
            5 => lose_last.prop_map(|lose_last_write| Command::CrashReopen { lose_last_write }),
            6 => (offset(cur), data(), point).prop_map(|(offset, data, point)| {
                Command::CrashDuringWrite {
                    offset,
                    data,
                    point,
                }
            }),
            3 => errno().prop_map(|errno| Command::FaultNextOp { errno }),
            3 => any::<bool>().prop_map(Command::ShortWrites),
        ]
        .boxed()
    }

    fn preconditions(state: &Model, cmd: &Command) -> bool {
        state.allows(cmd)
    }

    fn apply(mut state: Model, cmd: &Command) -> Model {
        state.apply(cmd);
        state
    }
}

/// A real ingest on the in-memory host, checked against [`IngestModel`].
#[derive(Debug, Clone, Copy)]
pub struct IngestSut;

impl StateMachineTest for IngestSut {
    type SystemUnderTest = Harness;
    type Reference = IngestModel;

    fn init_test(_: &Model) -> Harness {
        Harness::new().unwrap_or_else(|e| panic!("opening a fresh ingest: {e}"))
    }

    fn apply(mut sut: Harness, model: &Model, cmd: Command) -> Harness {
        if let Err(e) = sut.apply(&cmd, model) {
            panic!("{cmd:?}: {e}");
        }
        sut
    }

    fn check_invariants(sut: &Harness, model: &Model) {
        if let Err(e) = sut.check(model) {
            panic!("invariant: {e}");
        }
    }
}
