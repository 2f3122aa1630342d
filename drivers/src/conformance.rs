//! The conformance suite: one list of behaviours every executor must show — the fake host, the
//! smol driver and the io_uring driver alike. An executor that passes it is correct by
//! definition for the machines in core.
//!
//! Each case takes a fresh executor (an empty root) and panics on a violation. Driver crates
//! call [`run_all`] from a test.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use berth_core::content::{Ingest, IngestError, IngestPaths, Input, OpenRequest, Recovery, Reply};
use berth_core::op::{errno, Handle, OpKind, OpOutput, OpenOptions};
use berth_core::Digest;
use bytes::Bytes;

use crate::exec::{Executor, OpFuture, SystemClock};
use crate::run::{DriveError, Driven};

/// A conformance case.
pub type Case = fn(Arc<dyn Executor>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("file_ops", |e| Box::pin(file_ops(e))),
    ("paths_stay_beneath_root", |e| {
        Box::pin(paths_stay_beneath_root(e))
    }),
    ("ingest_commit", |e| Box::pin(ingest_commit(e))),
    ("ingest_offsets", |e| Box::pin(ingest_offsets(e))),
    ("ingest_mismatch_leaves_nothing", |e| {
        Box::pin(ingest_mismatch_leaves_nothing(e))
    }),
    ("ingest_resumes_without_rereading", |e| {
        Box::pin(ingest_resumes_without_rereading(e))
    }),
    ("ingest_abort", |e| Box::pin(ingest_abort(e))),
];

/// Runs every case, each on a fresh executor from `make`, blocking on each with `block_on`.
pub fn run_all(
    make: impl Fn() -> Arc<dyn Executor>,
    block_on: impl Fn(Pin<Box<dyn Future<Output = ()> + Send>>),
) {
    for (name, case) in CASES {
        eprintln!("conformance: {name}");
        block_on(case(make()));
    }
}

async fn op(e: &Arc<dyn Executor>, kind: OpKind) -> Result<OpOutput, i32> {
    e.execute(kind).await.map_err(|x| x.errno)
}

async fn file_ops(e: Arc<dyn Executor>) {
    assert_eq!(
        op(
            &e,
            OpKind::Mkdir {
                path: "a/b/c".into(),
                mode: 0o755
            }
        )
        .await,
        Ok(OpOutput::Done)
    );
    assert_eq!(
        op(
            &e,
            OpKind::Mkdir {
                path: "a/b".into(),
                mode: 0o755
            }
        )
        .await,
        Ok(OpOutput::Done),
        "mkdir -p is idempotent"
    );
    let Ok(OpOutput::Opened { handle: h, size: 0 }) = op(
        &e,
        OpKind::Open {
            path: "a/f".into(),
            options: OpenOptions::create_truncate(0o644),
        },
    )
    .await
    else {
        panic!("open with create")
    };
    assert_eq!(
        op(
            &e,
            OpKind::Write {
                handle: h,
                offset: 0,
                data: Bytes::from_static(b"hello")
            }
        )
        .await,
        Ok(OpOutput::Written(5))
    );
    assert_eq!(
        op(
            &e,
            OpKind::Write {
                handle: h,
                offset: 10,
                data: Bytes::from_static(b"x")
            }
        )
        .await,
        Ok(OpOutput::Written(1))
    );
    let Ok(OpOutput::Data(d)) = op(
        &e,
        OpKind::Read {
            handle: h,
            offset: 0,
            len: 64,
        },
    )
    .await
    else {
        panic!("read")
    };
    assert_eq!(
        &d[..],
        b"hello\0\0\0\0\0x",
        "a read past a hole returns zeros and stops at EOF"
    );
    assert_eq!(
        op(&e, OpKind::Truncate { handle: h, len: 5 }).await,
        Ok(OpOutput::Done)
    );
    let Ok(OpOutput::Data(d)) = op(
        &e,
        OpKind::Read {
            handle: h,
            offset: 3,
            len: 64,
        },
    )
    .await
    else {
        panic!("read")
    };
    assert_eq!(&d[..], b"lo");
    assert_eq!(
        op(&e, OpKind::Fsync { handle: h }).await,
        Ok(OpOutput::Done)
    );
    assert_eq!(
        op(&e, OpKind::Close { handle: h }).await,
        Ok(OpOutput::Done)
    );
    assert_eq!(
        op(&e, OpKind::Close { handle: h }).await,
        Err(errno::EBADF),
        "a closed handle is gone"
    );
    assert_eq!(
        op(
            &e,
            OpKind::Write {
                handle: h,
                offset: 0,
                data: Bytes::from_static(b"z")
            }
        )
        .await,
        Err(errno::EBADF)
    );
    let Ok(OpOutput::Data(d)) = op(&e, OpKind::ReadFile { path: "a/f".into() }).await else {
        panic!("readfile")
    };
    assert_eq!(&d[..], b"hello");
    let Ok(OpOutput::Stat(st)) = op(&e, OpKind::Stat { path: "a/f".into() }).await else {
        panic!("stat")
    };
    assert_eq!(st.size, 5);
    assert!(!st.is_dir());
    let Ok(OpOutput::Stat(st)) = op(&e, OpKind::Stat { path: "a/b".into() }).await else {
        panic!("stat dir")
    };
    assert!(st.is_dir());
    assert_eq!(
        op(
            &e,
            OpKind::Stat {
                path: "a/missing".into()
            }
        )
        .await,
        Err(errno::ENOENT)
    );
    assert_eq!(
        op(
            &e,
            OpKind::Open {
                path: "a/missing".into(),
                options: OpenOptions::read()
            }
        )
        .await
        .err(),
        Some(errno::ENOENT)
    );
    assert_eq!(
        op(
            &e,
            OpKind::Rename {
                from: "a/f".into(),
                to: "a/b/g".into()
            }
        )
        .await,
        Ok(OpOutput::Done)
    );
    assert_eq!(
        op(&e, OpKind::ReadFile { path: "a/f".into() }).await.err(),
        Some(errno::ENOENT)
    );
    assert_eq!(
        op(
            &e,
            OpKind::WriteFile {
                path: "a/w".into(),
                data: Bytes::from_static(b"1"),
                mode: 0o600
            }
        )
        .await,
        Ok(OpOutput::Done)
    );
    assert_eq!(
        op(
            &e,
            OpKind::WriteFile {
                path: "a/w".into(),
                data: Bytes::from_static(b"22"),
                mode: 0o600
            }
        )
        .await,
        Ok(OpOutput::Done)
    );
    let Ok(OpOutput::Data(d)) = op(&e, OpKind::ReadFile { path: "a/w".into() }).await else {
        panic!("readfile")
    };
    assert_eq!(&d[..], b"22", "writefile replaces");
    assert_eq!(
        op(&e, OpKind::ReadDir { path: "a".into() }).await,
        Ok(OpOutput::Entries(vec!["b".into(), "w".into()]))
    );
    assert_eq!(
        op(&e, OpKind::Remove { path: "a/w".into() }).await,
        Ok(OpOutput::Done)
    );
    assert_eq!(
        op(&e, OpKind::RemoveAll { path: "a".into() }).await,
        Ok(OpOutput::Done)
    );
    assert_eq!(
        op(&e, OpKind::Stat { path: "a".into() }).await,
        Err(errno::ENOENT)
    );
    assert_eq!(
        op(&e, OpKind::RemoveAll { path: "a".into() }).await,
        Ok(OpOutput::Done),
        "removing nothing succeeds"
    );
}

async fn paths_stay_beneath_root(e: Arc<dyn Executor>) {
    for bad in ["../escape", "/etc/passwd", "a/../../b", "", "a//b", "./a"] {
        let r = op(
            &e,
            OpKind::WriteFile {
                path: bad.into(),
                data: Bytes::from_static(b"x"),
                mode: 0o600,
            },
        )
        .await;
        assert!(r.is_err(), "writefile {bad:?} must be refused");
        let r = op(
            &e,
            OpKind::Mkdir {
                path: bad.into(),
                mode: 0o700,
            },
        )
        .await;
        assert!(r.is_err(), "mkdir {bad:?} must be refused");
        let r = op(&e, OpKind::RemoveAll { path: bad.into() }).await;
        assert!(r.is_err(), "removeall {bad:?} must be refused");
    }
}

/// An executor wrapper that records each Op's name and path (handles resolved to their paths).
pub struct Recording {
    inner: Arc<dyn Executor>,
    log: Arc<Mutex<Vec<(&'static str, String)>>>,
    paths: Arc<Mutex<HashMap<Handle, String>>>,
}

impl Recording {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Executor>) -> Self {
        Recording {
            inner,
            log: Arc::default(),
            paths: Arc::default(),
        }
    }

    /// The Ops seen since the last call, emptied.
    pub fn take(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.log.lock().expect("log lock"))
    }
}

impl Executor for Recording {
    fn execute(&self, kind: OpKind) -> OpFuture {
        let name = kind.name();
        let path = match &kind {
            OpKind::Open { path, .. }
            | OpKind::ReadFile { path }
            | OpKind::WriteFile { path, .. }
            | OpKind::Mkdir { path, .. }
            | OpKind::Stat { path }
            | OpKind::RemoveAll { path } => path.clone(),
            OpKind::Rename { from, .. } => from.clone(),
            OpKind::Write { handle, .. }
            | OpKind::Read { handle, .. }
            | OpKind::Truncate { handle, .. }
            | OpKind::Fsync { handle }
            | OpKind::Close { handle } => self
                .paths
                .lock()
                .expect("paths lock")
                .get(handle)
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        };
        self.log
            .lock()
            .expect("log lock")
            .push((name, path.clone()));
        let fut = self.inner.execute(kind);
        let paths = self.paths.clone();
        Box::pin(async move {
            let r = fut.await;
            if let Ok(OpOutput::Opened { handle, .. }) = &r {
                paths.lock().expect("paths lock").insert(*handle, path);
            }
            r
        })
    }

    fn close_now(&self, handle: Handle) {
        self.inner.close_now(handle)
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

fn paths(name: &str) -> IngestPaths {
    IngestPaths {
        dir: format!("content/ingest/{name}"),
        blobs: "content/blobs".into(),
    }
}

async fn open(
    e: &Arc<dyn Executor>,
    name: &str,
    expected: Option<Digest>,
    total: u64,
) -> (Driven<Ingest>, Recovery) {
    let clock = Arc::new(SystemClock);
    let now = crate::exec::Clock::now(&*clock);
    let req = OpenRequest {
        namespace: "default".into(),
        reference: name.into(),
        expected,
        total,
        paths: paths(name),
    };
    let mut d = Driven::new(Ingest::open(now, req), e.clone(), clock);
    match d.start(&mut |()| {}).await {
        Ok(Ok(Reply::Opened { recovery, .. })) => (d, recovery),
        other => panic!("open {name}: {other:?}"),
    }
}

async fn write(d: &mut Driven<Ingest>, offset: u64, data: &[u8]) -> Result<Reply, IngestError> {
    match d
        .request(
            Input::Write {
                offset,
                data: Bytes::copy_from_slice(data),
            },
            &mut |()| {},
        )
        .await
    {
        Ok(r) => r,
        Err(DriveError::Refused(e)) => Err(e),
        Err(DriveError::Stalled) => panic!("stalled"),
    }
}

async fn commit(
    d: &mut Driven<Ingest>,
    size: u64,
    expected: Option<Digest>,
) -> Result<Reply, IngestError> {
    match d
        .request(Input::Commit { size, expected }, &mut |()| {})
        .await
    {
        Ok(r) => r,
        Err(DriveError::Refused(e)) => Err(e),
        Err(DriveError::Stalled) => panic!("stalled"),
    }
}

async fn read_file(e: &Arc<dyn Executor>, path: String) -> Option<Vec<u8>> {
    match op(e, OpKind::ReadFile { path }).await {
        Ok(OpOutput::Data(d)) => Some(d.to_vec()),
        _ => None,
    }
}

async fn ingest_commit(e: Arc<dyn Executor>) {
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = Digest::sha256(&body);
    let (mut d, rec) = open(&e, "r1", Some(digest), body.len() as u64).await;
    assert_eq!(rec, Recovery::Created);
    for (i, chunk) in body.chunks(100_000).enumerate() {
        let Ok(Reply::Status(s)) = write(&mut d, (i * 100_000) as u64, chunk).await else {
            panic!("write")
        };
        assert_eq!(s.offset, ((i + 1) * 100_000) as u64);
    }
    let r = commit(&mut d, body.len() as u64, Some(digest)).await;
    assert_eq!(
        r,
        Ok(Reply::Committed {
            digest,
            size: body.len() as u64,
            already_present: false
        })
    );
    assert_eq!(
        read_file(&e, paths("r1").blob(&digest)).await.as_deref(),
        Some(&body[..])
    );
    assert_eq!(
        read_file(&e, "content/ingest/r1/meta".into()).await,
        None,
        "the ingest is cleaned up"
    );
    // the same bytes again under another ref: already present
    let (mut d, _) = open(&e, "r2", None, 0).await;
    write(&mut d, 0, &body).await.unwrap();
    let r = commit(&mut d, 0, None).await;
    assert_eq!(
        r,
        Ok(Reply::Committed {
            digest,
            size: body.len() as u64,
            already_present: true
        })
    );
}

async fn ingest_offsets(e: Arc<dyn Executor>) {
    let (mut d, _) = open(&e, "r", None, 0).await;
    write(&mut d, 0, b"abc").await.unwrap();
    let err = write(&mut d, 7, b"zzz").await.unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::OutOfRange {
                requested: 7,
                current: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        d.machine().status().offset,
        3,
        "a refused write changes nothing"
    );
    write(&mut d, 3, b"def").await.unwrap();
    // offset 0 truncates and starts over
    write(&mut d, 0, b"xy").await.unwrap();
    assert_eq!(d.machine().status().offset, 2);
    let r = commit(&mut d, 2, Some(Digest::sha256(b"xy"))).await;
    assert!(matches!(r, Ok(Reply::Committed { size: 2, .. })), "{r:?}");
    assert_eq!(
        read_file(&e, paths("r").blob(&Digest::sha256(b"xy")))
            .await
            .as_deref(),
        Some(&b"xy"[..])
    );
}

async fn ingest_mismatch_leaves_nothing(e: Arc<dyn Executor>) {
    let (mut d, _) = open(&e, "s", None, 0).await;
    write(&mut d, 0, b"12345").await.unwrap();
    let r = commit(&mut d, 6, None).await;
    assert!(
        matches!(
            r,
            Err(IngestError::SizeMismatch {
                expected: 6,
                actual: 5,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        op(
            &e,
            OpKind::Stat {
                path: "content/ingest/s".into()
            }
        )
        .await,
        Err(errno::ENOENT)
    );
    assert_eq!(
        read_file(&e, paths("s").blob(&Digest::sha256(b"12345"))).await,
        None
    );

    let wrong = Digest::sha256(b"other");
    let (mut d, _) = open(&e, "t", None, 0).await;
    write(&mut d, 0, b"12345").await.unwrap();
    let r = commit(&mut d, 5, Some(wrong)).await;
    match r {
        Err(IngestError::DigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (wrong, Digest::sha256(b"12345")));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        op(
            &e,
            OpKind::Stat {
                path: "content/ingest/t".into()
            }
        )
        .await,
        Err(errno::ENOENT)
    );
    assert_eq!(
        read_file(&e, paths("t").blob(&Digest::sha256(b"12345"))).await,
        None
    );
    assert_eq!(read_file(&e, paths("t").blob(&wrong)).await, None);
}

async fn ingest_resumes_without_rereading(e: Arc<dyn Executor>) {
    let rec = Arc::new(Recording::new(e.clone()));
    let er: Arc<dyn Executor> = rec.clone();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let digest = Digest::sha256(&body);
    let (mut d, _) = open(&er, "c", Some(digest), body.len() as u64).await;
    write(&mut d, 0, &body[..120_000]).await.unwrap();
    drop(d); // a crash: no close, no commit; the driver releases the handles
    rec.take();
    let (mut d, recovery) = open(&er, "c", Some(digest), body.len() as u64).await;
    assert_eq!(
        recovery,
        Recovery::Resumed {
            offset: 120_000,
            discarded: 0
        }
    );
    let reads: Vec<_> = rec
        .take()
        .into_iter()
        .filter(|(n, p)| *n == "read" && p.ends_with("/data"))
        .collect();
    assert!(reads.is_empty(), "resume re-read the data: {reads:?}");
    assert_eq!(d.machine().status().offset, 120_000);
    write(&mut d, 120_000, &body[120_000..]).await.unwrap();
    let r = commit(&mut d, body.len() as u64, Some(digest)).await;
    assert!(matches!(r, Ok(Reply::Committed { .. })), "{r:?}");
    assert_eq!(
        read_file(&e, paths("c").blob(&digest)).await.as_deref(),
        Some(&body[..])
    );
}

async fn ingest_abort(e: Arc<dyn Executor>) {
    let (mut d, _) = open(&e, "a", None, 0).await;
    write(&mut d, 0, b"doomed").await.unwrap();
    let r = d.request(Input::Abort, &mut |()| {}).await.unwrap();
    assert_eq!(r, Ok(Reply::Aborted));
    assert_eq!(
        op(
            &e,
            OpKind::Stat {
                path: "content/ingest/a".into()
            }
        )
        .await,
        Err(errno::ENOENT)
    );
    let again = write(&mut d, 6, b"x").await.unwrap_err();
    assert!(matches!(again, IngestError::Finished { .. }));
}
