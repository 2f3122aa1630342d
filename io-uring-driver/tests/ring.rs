//! The ring itself: the probe, many Ops in flight, large writes.

use berth_core::op::{Handle, OpKind, OpOutput, OpenOptions};
use berth_drivers::Executor;
use berth_uring::UringExecutor;
use bytes::Bytes;

fn open(e: &UringExecutor, path: &str, options: OpenOptions) -> Handle {
    match smol::block_on(e.execute(OpKind::Open {
        path: path.into(),
        options,
    })) {
        Ok(OpOutput::Opened { handle, .. }) => handle,
        other => panic!("open {path}: {other:?}"),
    }
}

#[test]
fn probe_puts_write_read_and_openat2_on_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let e = UringExecutor::open(dir.path()).unwrap();
    assert_eq!(e.name(), "io-uring");
    eprintln!("ring setup: {:?}", e.ring_setup());
    for op in ["write", "read", "open", "fsync"] {
        assert!(e.uses_ring_for(op), "{op} is not on the ring");
    }
    for op in [
        "close",
        "mkdir",
        "rename",
        "stat",
        "truncate",
        "writefile",
        "nonsense",
    ] {
        assert!(!e.uses_ring_for(op), "{op} claims the ring");
    }
}

#[test]
fn two_thousand_concurrent_writes_to_different_files() {
    const N: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let e = UringExecutor::open(dir.path()).unwrap();
    smol::block_on(e.execute(OpKind::Mkdir {
        path: "many".into(),
        mode: 0o755,
    }))
    .unwrap();
    let body = |i: usize| Bytes::from(format!("file {i} ").repeat(i % 50 + 1));
    smol::block_on(async {
        // Opens from concurrent tasks.
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let e = e.clone();
                smol::spawn(async move {
                    match e
                        .execute(OpKind::Open {
                            path: format!("many/f{i}"),
                            options: OpenOptions::create_truncate(0o644),
                        })
                        .await
                    {
                        Ok(OpOutput::Opened { handle, size: 0 }) => handle,
                        other => panic!("open {i}: {other:?}"),
                    }
                })
            })
            .collect();
        let mut handles = Vec::new();
        for t in tasks {
            handles.push(t.await);
        }
        // Every write is submitted before the first is awaited: N in the ring's queue at once.
        let writes: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(i, &h)| {
                e.execute(OpKind::Write {
                    handle: h,
                    offset: 0,
                    data: body(i),
                })
            })
            .collect();
        for (i, w) in writes.into_iter().enumerate() {
            assert_eq!(w.await, Ok(OpOutput::Written(body(i).len() as u64)), "{i}");
        }
        let closes: Vec<_> = handles
            .iter()
            .map(|&h| e.execute(OpKind::Close { handle: h }))
            .collect();
        for c in closes {
            assert_eq!(c.await, Ok(OpOutput::Done));
        }
    });
    assert_eq!(e.host().handles().len(), 0);
    for i in 0..N {
        let got = std::fs::read(dir.path().join(format!("many/f{i}"))).unwrap();
        assert_eq!(got, body(i), "file {i}");
    }
}

#[test]
fn a_large_write_reads_back_equal() {
    const LEN: usize = 8 << 20;
    let dir = tempfile::tempdir().unwrap();
    let e = UringExecutor::open(dir.path()).unwrap();
    let data: Bytes = (0..LEN)
        .map(|i| (i * 31 % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let h = open(&e, "big", OpenOptions::create_truncate(0o644));
    // One Write; the kernel may write less, as the Op allows: finish with more Writes.
    let mut off = 0;
    let mut writes = 0;
    while off < LEN {
        let r = smol::block_on(e.execute(OpKind::Write {
            handle: h,
            offset: off as u64,
            data: data.slice(off..),
        }));
        let Ok(OpOutput::Written(n)) = r else {
            panic!("write at {off}: {r:?}")
        };
        assert!(n > 0 && off + n as usize <= LEN);
        off += n as usize;
        writes += 1;
    }
    eprintln!("8 MiB written in {writes} Write Op(s)");
    assert_eq!(
        smol::block_on(e.execute(OpKind::Fsync { handle: h })),
        Ok(OpOutput::Done)
    );
    let r = smol::block_on(e.execute(OpKind::Read {
        handle: h,
        offset: 0,
        len: LEN as u32 + 4096,
    }));
    let Ok(OpOutput::Data(back)) = r else {
        panic!("read: {r:?}")
    };
    assert_eq!(back.len(), LEN, "the read stops at end of file");
    assert!(back == data, "read back differs");
    let r = smol::block_on(e.execute(OpKind::Read {
        handle: h,
        offset: LEN as u64 - 3,
        len: 100,
    }));
    assert_eq!(r, Ok(OpOutput::Data(data.slice(LEN - 3..))));
    smol::block_on(e.execute(OpKind::Close { handle: h })).unwrap();
    assert_eq!(std::fs::read(dir.path().join("big")).unwrap(), &data[..]);
}

#[test]
fn errors_come_back_as_errnos() {
    let dir = tempfile::tempdir().unwrap();
    let e = UringExecutor::open(dir.path()).unwrap();
    let ro = {
        std::fs::write(dir.path().join("ro"), b"abc").unwrap();
        open(&e, "ro", OpenOptions::read())
    };
    // EBADF from the kernel: a write on a read-only descriptor.
    assert_eq!(
        smol::block_on(e.execute(OpKind::Write {
            handle: ro,
            offset: 0,
            data: Bytes::from_static(b"x"),
        }))
        .map_err(|x| x.errno),
        Err(libc::EBADF)
    );
    // EEXIST from OPENAT2.
    assert_eq!(
        smol::block_on(e.execute(OpKind::Open {
            path: "ro".into(),
            options: OpenOptions {
                exclusive: true,
                ..OpenOptions::create_truncate(0o600)
            },
        }))
        .map_err(|x| x.errno),
        Err(libc::EEXIST)
    );
    // EISDIR: opening a directory for writing.
    std::fs::create_dir(dir.path().join("d")).unwrap();
    assert_eq!(
        smol::block_on(e.execute(OpKind::Open {
            path: "d".into(),
            options: OpenOptions::read_write(),
        }))
        .map_err(|x| x.errno),
        Err(libc::EISDIR)
    );
    // A path with a NUL cannot reach the kernel.
    assert_eq!(
        smol::block_on(e.execute(OpKind::Open {
            path: "a\0b".into(),
            options: OpenOptions::read(),
        }))
        .map_err(|x| x.errno),
        Err(libc::EINVAL)
    );
    // Zero-length Ops complete without the kernel.
    assert_eq!(
        smol::block_on(e.execute(OpKind::Read {
            handle: ro,
            offset: 0,
            len: 0,
        })),
        Ok(OpOutput::Data(Bytes::new()))
    );
    e.close_now(ro);
    assert_eq!(e.host().handles().len(), 0);
}
