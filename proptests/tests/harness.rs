//! The harness's own checks are not vacuous: scripted command lists that must pass, and the
//! facts the invariants rely on (what reopening reads, what a commit leaves behind).

use berth_core::op::errno;
use berth_core::Digest;
use berth_proptests::harness::{self, data_path, state_path, Harness, BLOBS, DIR};
use berth_proptests::model::{Command, CrashPoint, Model, Stage, WriteFault};

fn write(offset: u64, data: &[u8]) -> Command {
    Command::Write {
        offset,
        data: data.to_vec(),
        fault: None,
    }
}

fn step(model: &mut Model, sut: &mut Harness, cmd: Command) {
    model.apply(&cmd);
    sut.apply(&cmd, model)
        .and_then(|()| sut.check(model))
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
}

#[test]
fn reopening_reads_the_checkpoint_not_the_data() {
    let mut model = Model::new();
    let mut sut = Harness::new().unwrap();
    step(&mut model, &mut sut, write(0, b"hello "));
    step(&mut model, &mut sut, write(6, b"world"));
    step(
        &mut model,
        &mut sut,
        Command::CrashReopen {
            lose_last_write: false,
        },
    );
    let log = sut.host.log();
    assert!(log.iter().any(|r| r.op == "read" && r.path == state_path()));
    assert!(log
        .iter()
        .any(|r| r.op == "readfile" && r.path == format!("{DIR}/meta")));
    assert!(!log
        .iter()
        .any(|r| r.path == data_path() && r.op.starts_with("read")));
    assert_eq!(sut.ingest.as_ref().unwrap().status().offset, 11);
}

#[test]
fn losing_the_last_checkpoint_resumes_one_write_back() {
    let mut model = Model::new();
    let mut sut = Harness::new().unwrap();
    step(&mut model, &mut sut, Command::ShortWrites(true));
    step(&mut model, &mut sut, write(0, b"abc"));
    step(&mut model, &mut sut, write(3, b"defg"));
    step(
        &mut model,
        &mut sut,
        Command::CrashReopen {
            lose_last_write: true,
        },
    );
    assert_eq!(model.bytes, b"abc");
    assert_eq!(sut.ingest.as_ref().unwrap().status().offset, 3);
}

#[test]
fn commit_stores_the_bytes_under_their_digest_once() {
    let mut model = Model::new();
    let mut sut = Harness::new().unwrap();
    for _ in 0..2 {
        step(&mut model, &mut sut, write(0, b"layer"));
        step(
            &mut model,
            &mut sut,
            Command::Commit {
                size: 5,
                digest: Some(Digest::sha256(b"layer")),
            },
        );
        step(&mut model, &mut sut, Command::Reopen { expected: None });
    }
    let blob = format!("{BLOBS}/sha256/{}", Digest::sha256(b"layer").hex());
    assert_eq!(sut.host.file(&blob), Some(&b"layer"[..]));
    assert_eq!(sut.host.files_under(BLOBS).len(), 1);
}

#[test]
fn scripted_faults_and_crashes_pass() {
    let fault = |stage, piece| {
        Some(WriteFault {
            stage,
            piece,
            errno: errno::ENOSPC,
        })
    };
    let cmds = [
        write(0, b"0123"),
        Command::Write {
            offset: 4,
            data: b"4567".to_vec(),
            fault: fault(Stage::Data, 0),
        },
        Command::ShortWrites(true),
        Command::Write {
            offset: 4,
            data: b"4567".to_vec(),
            fault: fault(Stage::State, 1),
        },
        Command::CrashDuringWrite {
            offset: 4,
            data: b"xx".to_vec(),
            point: CrashPoint::TornState,
        },
        write(4, b"45"),
        write(99, b"no"),
        Command::FaultNextOp { errno: errno::EIO },
        Command::Commit {
            size: 6,
            digest: None,
        },
        Command::Reopen { expected: None },
        Command::Commit {
            size: 6,
            digest: Some(Digest::sha256(b"012345")),
        },
        Command::Reopen {
            expected: Some(Digest::sha256(b"hello")),
        },
        write(0, b"hello"),
        Command::Commit {
            size: 0,
            digest: None,
        },
    ];
    harness::run(&cmds).unwrap();
}

/// Every fault stage and crash point, in a rewrite and in an append, with and without short
/// writes: the model and the machine agree on each (the proptest draws these at random).
#[test]
fn every_fault_and_crash_point_of_a_rewrite_and_an_append_passes() {
    let stages = [
        Stage::ZeroCheckpoint,
        Stage::Truncate,
        Stage::Data,
        Stage::State,
    ];
    let points = [
        CrashPoint::BeforeZeroCheckpoint,
        CrashPoint::TornZeroCheckpoint,
        CrashPoint::BeforeTruncate,
        CrashPoint::BeforeData,
        CrashPoint::BeforeState,
        CrashPoint::TornState,
    ];
    for short in [false, true] {
        for offset in [0, 4] {
            for data in [&b""[..], b"x", b"wxyz"] {
                let start = [
                    Command::ShortWrites(short),
                    write(0, b"0123"),
                    Command::Write {
                        offset: 4,
                        data: b"4".to_vec(),
                        fault: None,
                    },
                    Command::Write {
                        offset: 5,
                        data: b"5".to_vec(),
                        fault: None,
                    },
                ];
                let offset = if offset == 0 { 0 } else { 6 };
                let then = [
                    Command::CrashReopen {
                        lose_last_write: false,
                    },
                    write(0, b"again"),
                    Command::CrashReopen {
                        lose_last_write: true,
                    },
                    Command::Commit {
                        size: 0,
                        digest: None,
                    },
                ];
                for stage in stages {
                    for piece in 0..2 {
                        let fault = Command::Write {
                            offset,
                            data: data.to_vec(),
                            fault: Some(WriteFault {
                                stage,
                                piece,
                                errno: errno::EIO,
                            }),
                        };
                        let cmds: Vec<Command> = start
                            .iter()
                            .cloned()
                            .chain([fault])
                            .chain(then.clone())
                            .collect();
                        harness::run(&cmds).unwrap_or_else(|e| panic!("{e}\n{cmds:#?}"));
                    }
                }
                for point in points {
                    let crash = Command::CrashDuringWrite {
                        offset,
                        data: data.to_vec(),
                        point,
                    };
                    let cmds: Vec<Command> = start
                        .iter()
                        .cloned()
                        .chain([crash])
                        .chain(then.clone())
                        .collect();
                    harness::run(&cmds).unwrap_or_else(|e| panic!("{e}\n{cmds:#?}"));
                }
            }
        }
    }
}

/// After a successful rewrite, losing its final checkpoint falls back to its zero checkpoint,
/// which outranks the older slot of the old bytes: offset 0, not the old offset.
#[test]
fn losing_a_rewrites_final_checkpoint_resumes_at_zero() {
    let mut model = Model::new();
    let mut sut = Harness::new().unwrap();
    step(&mut model, &mut sut, write(0, b"abc"));
    step(&mut model, &mut sut, write(0, b"wxyz"));
    assert_eq!(model.prev_offset, Some(0));
    step(
        &mut model,
        &mut sut,
        Command::CrashReopen {
            lose_last_write: true,
        },
    );
    assert_eq!(sut.ingest.as_ref().unwrap().status().offset, 0);
    assert_eq!(sut.host.file(&data_path()), Some(&b""[..]));
}
