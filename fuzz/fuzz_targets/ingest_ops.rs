//! The `Ingest` machine driven by an arbitrary list of operations on the in-memory host, with
//! fault injection, short writes and crashes, checked against the reference model after every
//! step: the same model, host and invariants as `proptests/`.
//!
//! `host.rs`, `model.rs` and `harness.rs` are included from `proptests/src` with `#[path]`:
//! they depend on `berth-core` and `std` only, so this crate still depends on `berth-core`
//! alone and the fuzzer and the proptests can never drift apart. Only the input type is this
//! file's own: an `Arbitrary` operation list, resolved against the model's state into the
//! model's `Command`s (so "write at the current offset" stays meaningful as libFuzzer mutates).

#![no_main]

use arbitrary::Arbitrary;
use berth_core::digest::{Algorithm, Hasher};
use berth_core::op::errno;
use berth_core::Digest;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../proptests/src/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../../proptests/src/host.rs"]
mod host;
#[allow(dead_code)]
#[path = "../../proptests/src/model.rs"]
mod model;

use model::{Command, CrashPoint, Life, Model, Stage, WriteFault};

/// At most this many operations per input.
const MAX_OPS: usize = 96;
/// At most this many bytes per write.
const MAX_DATA: usize = 96;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum At {
    Current,
    Zero,
    Other(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzStage {
    ZeroCheckpoint,
    Truncate,
    Data,
    State,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Fault {
    stage: FuzzStage,
    second_piece: bool,
    eio: bool,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    Right,
    Zero,
    Other(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Expected {
    None,
    Right,
    Hello256,
    Hello512,
    Sha256Of(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Point {
    BeforeZeroCheckpoint,
    TornZeroCheckpoint,
    BeforeTruncate,
    BeforeData,
    BeforeState,
    TornState,
}

#[derive(Arbitrary, Debug, Clone)]
enum Operation {
    Write {
        at: At,
        data: Vec<u8>,
        fault: Option<Fault>,
    },
    Commit {
        size: Size,
        digest: Expected,
    },
    Abort,
    Reopen {
        expected: Expected,
    },
    Crash {
        lose_last_write: bool,
    },
    CrashDuringWrite {
        at: At,
        data: Vec<u8>,
        point: Point,
    },
    FaultNextOp {
        eio: bool,
    },
    ShortWrites(bool),
}

fn errno(eio: bool) -> i32 {
    if eio {
        errno::EIO
    } else {
        errno::ENOSPC
    }
}

fn offset(m: &Model, at: At) -> u64 {
    match at {
        At::Current => m.offset(),
        At::Zero => 0,
        At::Other(n) => u64::from(n),
    }
}

fn data(mut d: Vec<u8>) -> Vec<u8> {
    d.truncate(MAX_DATA);
    d
}

fn digest(m: &Model, e: Expected) -> Option<Digest> {
    match e {
        Expected::None => None,
        Expected::Right => Some(m.digest()),
        Expected::Hello256 => Some(Digest::sha256(b"hello")),
        Expected::Hello512 => {
            let mut h = Hasher::new(Algorithm::Sha512);
            h.update(b"hello");
            Some(h.digest())
        }
        Expected::Sha256Of(b) => Some(Digest::sha256(&[b])),
    }
}

/// Turns one fuzz operation into a model command, given the model's state.
fn command(m: &Model, op: Operation) -> Command {
    match op {
        Operation::Write { at, data: d, fault } => Command::Write {
            offset: offset(m, at),
            data: data(d),
            fault: fault.map(|f| WriteFault {
                stage: match f.stage {
                    FuzzStage::ZeroCheckpoint => Stage::ZeroCheckpoint,
                    FuzzStage::Truncate => Stage::Truncate,
                    FuzzStage::Data => Stage::Data,
                    FuzzStage::State => Stage::State,
                },
                piece: u8::from(f.second_piece),
                errno: errno(f.eio),
            }),
        },
        Operation::Commit { size, digest: e } => Command::Commit {
            size: match size {
                Size::Right => m.offset(),
                Size::Zero => 0,
                Size::Other(n) => u64::from(n),
            },
            digest: digest(m, e),
        },
        Operation::Abort => Command::Abort,
        Operation::Reopen { expected } => Command::Reopen {
            expected: digest(m, expected),
        },
        Operation::Crash { lose_last_write } => Command::CrashReopen {
            lose_last_write: lose_last_write && m.prev_offset.is_some(),
        },
        Operation::CrashDuringWrite { at, data: d, point } => Command::CrashDuringWrite {
            offset: offset(m, at),
            data: data(d),
            point: match point {
                Point::BeforeZeroCheckpoint => CrashPoint::BeforeZeroCheckpoint,
                Point::TornZeroCheckpoint => CrashPoint::TornZeroCheckpoint,
                Point::BeforeTruncate => CrashPoint::BeforeTruncate,
                Point::BeforeData => CrashPoint::BeforeData,
                Point::BeforeState => CrashPoint::BeforeState,
                Point::TornState => CrashPoint::TornState,
            },
        },
        Operation::FaultNextOp { eio } => Command::FaultNextOp { errno: errno(eio) },
        Operation::ShortWrites(on) => Command::ShortWrites(on),
    }
}

fuzz_target!(|ops: Vec<Operation>| {
    let mut model = Model::new();
    let mut sut = match harness::Harness::new() {
        Ok(h) => h,
        Err(e) => panic!("opening a fresh ingest: {e}"),
    };
    let mut done: Vec<Command> = Vec::new();
    for op in ops.into_iter().take(MAX_OPS) {
        let mut cmd = command(&model, op);
        if !model.allows(&cmd) && model.life != Life::Open {
            // Most commands need an open ingest: open it rather than waste the operation.
            cmd = Command::Reopen { expected: None };
        }
        if !model.allows(&cmd) {
            continue;
        }
        model.apply(&cmd);
        let result = sut.apply(&cmd, &model).and_then(|()| sut.check(&model));
        done.push(cmd);
        if let Err(e) = result {
            panic!("{e}\ncommands: {done:#?}");
        }
    }
});
