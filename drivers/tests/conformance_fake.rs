//! The conformance suite on the fake host, plus fault-injection cases only the fake can stage.

use std::sync::Arc;

use berth_core::content::{Ingest, IngestError, IngestPaths, Input, OpenRequest, Recovery, Reply};
use berth_core::op::errno;
use berth_core::Digest;
use berth_drivers::conformance;
use berth_drivers::fake::{FakeHost, Fault, FaultRule};
use berth_drivers::{Driven, Executor, SystemClock};
use bytes::Bytes;

#[test]
fn fake_host_passes_conformance() {
    conformance::run_all(|| Arc::new(FakeHost::new()), futures_lite::future::block_on);
}

fn paths() -> IngestPaths {
    IngestPaths {
        dir: "content/ingest/x".into(),
        blobs: "content/blobs".into(),
    }
}

fn open(host: &FakeHost) -> (Driven<Ingest>, Recovery) {
    let req = OpenRequest {
        namespace: "ns".into(),
        reference: "x".into(),
        expected: None,
        total: 0,
        paths: paths(),
    };
    let exec: Arc<dyn Executor> = Arc::new(host.clone());
    let mut d = Driven::new(
        Ingest::open(berth_core::Instant(1), req),
        exec,
        Arc::new(SystemClock),
    );
    match futures_lite::future::block_on(d.start(&mut |()| {})) {
        Ok(Ok(Reply::Opened { recovery, .. })) => (d, recovery),
        other => panic!("{other:?}"),
    }
}

fn req(d: &mut Driven<Ingest>, input: Input) -> Result<Reply, IngestError> {
    futures_lite::future::block_on(d.request(input, &mut |()| {})).expect("driven")
}

fn write(d: &mut Driven<Ingest>, offset: u64, data: &'static [u8]) -> Result<Reply, IngestError> {
    req(
        d,
        Input::Write {
            offset,
            data: Bytes::from_static(data),
        },
    )
}

#[test]
fn enospc_on_a_write_rolls_back_and_the_ingest_goes_on() {
    let host = FakeHost::new();
    let (mut d, _) = open(&host);
    write(&mut d, 0, b"abc").unwrap();
    host.inject(FaultRule {
        op: Some("write"),
        path_contains: Some("/data".into()),
        skip: 0,
        times: 1,
        fault: Fault::Errno(errno::ENOSPC),
    });
    let e = write(&mut d, 3, b"def").unwrap_err();
    assert!(
        matches!(e, IngestError::Io { error, .. } if error.errno == errno::ENOSPC),
        "{e:?}"
    );
    assert_eq!(d.machine().status().offset, 3);
    assert_eq!(
        d.machine().digest(),
        Digest::sha256(b"abc"),
        "the hash is rolled back too"
    );
    write(&mut d, 3, b"def").unwrap();
    let r = req(
        &mut d,
        Input::Commit {
            size: 6,
            expected: Some(Digest::sha256(b"abcdef")),
        },
    );
    assert!(matches!(r, Ok(Reply::Committed { .. })), "{r:?}");
}

#[test]
fn eio_on_the_checkpoint_rolls_back() {
    let host = FakeHost::new();
    let (mut d, _) = open(&host);
    write(&mut d, 0, b"abc").unwrap();
    host.inject(FaultRule {
        op: Some("write"),
        path_contains: Some("/state".into()),
        skip: 0,
        times: 1,
        fault: Fault::Errno(errno::EIO),
    });
    assert!(write(&mut d, 3, b"def").is_err());
    assert_eq!(d.machine().status().offset, 3);
    // data past the offset was written before the failure: commit cuts it off
    let r = req(
        &mut d,
        Input::Commit {
            size: 3,
            expected: Some(Digest::sha256(b"abc")),
        },
    );
    assert!(matches!(r, Ok(Reply::Committed { size: 3, .. })), "{r:?}");
    assert_eq!(
        host.file(&paths().blob(&Digest::sha256(b"abc"))).unwrap(),
        b"abc"
    );
}

#[test]
fn short_writes_are_completed() {
    let host = FakeHost::new();
    host.inject(FaultRule {
        op: Some("write"),
        path_contains: None,
        skip: 0,
        times: usize::MAX,
        fault: Fault::ShortWrite(2),
    });
    let (mut d, _) = open(&host);
    write(&mut d, 0, b"hello world").unwrap();
    let r = req(
        &mut d,
        Input::Commit {
            size: 11,
            expected: Some(Digest::sha256(b"hello world")),
        },
    );
    assert!(matches!(r, Ok(Reply::Committed { .. })), "{r:?}");
}

#[test]
fn crash_mid_write_resumes_at_the_last_checkpoint() {
    let host = FakeHost::new();
    let (mut d, _) = open(&host);
    write(&mut d, 0, b"first-").unwrap();
    // crash right after the data write of the next chunk, before its checkpoint lands
    host.crash_after(1);
    assert!(write(&mut d, 6, b"second").is_err());
    drop(d);
    host.restart();
    host.clear_log();
    let (mut d, recovery) = open(&host);
    assert_eq!(
        recovery,
        Recovery::Resumed {
            offset: 6,
            discarded: 6
        }
    );
    assert!(
        !host
            .log()
            .iter()
            .any(|r| r.op == "read" && r.path.ends_with("/data")),
        "{:?}",
        host.log()
    );
    write(&mut d, 6, b"second").unwrap();
    let r = req(
        &mut d,
        Input::Commit {
            size: 12,
            expected: Some(Digest::sha256(b"first-second")),
        },
    );
    assert!(matches!(r, Ok(Reply::Committed { .. })), "{r:?}");
}

#[test]
fn corrupt_checkpoint_restarts_from_zero() {
    let host = FakeHost::new();
    let (mut d, _) = open(&host);
    write(&mut d, 0, b"data").unwrap();
    drop(d);
    host.perform(berth_core::op::OpKind::WriteFile {
        path: "content/ingest/x/state".into(),
        data: Bytes::from_static(&[7u8; 1024]),
        mode: 0o600,
    })
    .unwrap();
    let (d, recovery) = open(&host);
    assert!(
        matches!(recovery, Recovery::Restarted { .. }),
        "{recovery:?}"
    );
    assert_eq!(d.machine().status().offset, 0);
}

#[test]
fn dropping_a_driven_machine_closes_its_handles() {
    let host = FakeHost::new();
    let (d, _) = open(&host);
    assert_eq!(host.open_handles(), 2);
    drop(d);
    assert_eq!(host.open_handles(), 0);
}
