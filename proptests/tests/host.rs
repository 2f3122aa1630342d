//! The in-memory host itself: the semantics the other tests rely on.

use berth_core::op::{errno, Handle, OpKind, OpOutput, OpenOptions};
use berth_proptests::host::{Action, Match, MemHost, Outcome, Rule};

fn ok(host: &mut MemHost, kind: OpKind) -> OpOutput {
    match host.perform(kind) {
        Outcome::Completed(Ok(out)) => out,
        other => panic!("expected success, got {other:?}"),
    }
}

fn errno_of(host: &mut MemHost, kind: OpKind) -> i32 {
    match host.perform(kind) {
        Outcome::Completed(Err(e)) => e.errno,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn open(host: &mut MemHost, path: &str) -> Handle {
    match ok(
        host,
        OpKind::Open {
            path: path.into(),
            options: OpenOptions::create_truncate(0o600),
        },
    ) {
        OpOutput::Opened { handle, .. } => handle,
        other => panic!("{other:?}"),
    }
}

fn write(host: &mut MemHost, handle: Handle, offset: u64, data: &[u8]) -> OpOutput {
    ok(
        host,
        OpKind::Write {
            handle,
            offset,
            data: data.to_vec().into(),
        },
    )
}

fn mkdir(host: &mut MemHost, path: &str) {
    ok(
        host,
        OpKind::Mkdir {
            path: path.into(),
            mode: 0o755,
        },
    );
}

#[test]
fn files_need_their_directory() {
    let mut host = MemHost::new();
    let e = errno_of(
        &mut host,
        OpKind::Open {
            path: "a/b/f".into(),
            options: OpenOptions::create_truncate(0o600),
        },
    );
    assert_eq!(e, errno::ENOENT);
    mkdir(&mut host, "a/b");
    assert!(host.is_dir("a") && host.is_dir("a/b"));
    let h = open(&mut host, "a/b/f");
    assert_eq!(write(&mut host, h, 2, b"xy"), OpOutput::Written(2));
    assert_eq!(host.file("a/b/f"), Some(&b"\0\0xy"[..]));
}

#[test]
fn short_writes_write_half() {
    let mut host = MemHost::new();
    let h = open(&mut host, "f");
    host.short_writes = true;
    assert_eq!(write(&mut host, h, 0, b"abcd"), OpOutput::Written(2));
    assert_eq!(write(&mut host, h, 2, b"c"), OpOutput::Written(1));
    assert_eq!(host.file("f"), Some(&b"abc"[..]));
}

#[test]
fn rules_skip_then_fire_once() {
    let mut host = MemHost::new();
    let h = open(&mut host, "f");
    host.push_rule(Rule {
        tag: 7,
        when: Match::OpOn("write", "f".into()),
        skip: 1,
        action: Action::Fail(errno::EIO),
    });
    write(&mut host, h, 0, b"a");
    assert!(host.has_rule(7));
    let e = errno_of(
        &mut host,
        OpKind::Write {
            handle: h,
            offset: 1,
            data: b"b".to_vec().into(),
        },
    );
    assert_eq!(e, errno::EIO);
    assert!(!host.has_rule(7));
    assert_eq!(
        host.file("f"),
        Some(&b"a"[..]),
        "a failed write changes nothing"
    );
    write(&mut host, h, 1, b"b");
    assert_eq!(host.log().last().unwrap().failed, None);
}

#[test]
fn a_failed_close_still_releases_the_handle() {
    let mut host = MemHost::new();
    let h = open(&mut host, "f");
    host.push_rule(Rule {
        tag: 1,
        when: Match::Any,
        skip: 0,
        action: Action::Fail(errno::EIO),
    });
    assert_eq!(errno_of(&mut host, OpKind::Close { handle: h }), errno::EIO);
    assert_eq!(host.open_handles(), 0);
}

#[test]
fn torn_crash_lands_half_a_write() {
    let mut host = MemHost::new();
    let h = open(&mut host, "f");
    host.push_rule(Rule {
        tag: 1,
        when: Match::Op("write"),
        skip: 0,
        action: Action::TornCrash,
    });
    let out = host.perform(OpKind::Write {
        handle: h,
        offset: 0,
        data: b"abcd".to_vec().into(),
    });
    assert_eq!(out, Outcome::Crashed);
    host.crash(false);
    assert_eq!(host.file("f"), Some(&b"ab"[..]));
    assert_eq!(host.open_handles(), 0);
}

#[test]
fn crash_can_lose_the_last_unsynced_logical_write() {
    let mut host = MemHost::new();
    let d = open(&mut host, "d");
    let s = open(&mut host, "s");
    host.seal();
    write(&mut host, d, 0, b"12");
    write(&mut host, s, 0, b"old!");
    host.seal();
    write(&mut host, d, 2, b"34");
    host.short_writes = true;
    write(&mut host, s, 0, b"new!"); // two Ops: "ne", then "w!"
    write(&mut host, s, 2, b"w!");
    host.crash(true);
    assert_eq!(host.file("s"), Some(&b"old!"[..]), "both pieces are lost");
    assert_eq!(
        host.file("d"),
        Some(&b"1234"[..]),
        "only the last write is lost"
    );
}

#[test]
fn fsync_protects_the_last_write() {
    let mut host = MemHost::new();
    let f = open(&mut host, "f");
    write(&mut host, f, 0, b"kept");
    ok(&mut host, OpKind::Fsync { handle: f });
    host.crash(true);
    assert_eq!(host.file("f"), Some(&b"kept"[..]));
}

#[test]
fn handles_follow_their_file_through_rename_and_removal() {
    let mut host = MemHost::new();
    mkdir(&mut host, "x");
    let h = open(&mut host, "x/f");
    ok(
        &mut host,
        OpKind::Rename {
            from: "x/f".into(),
            to: "g".into(),
        },
    );
    write(&mut host, h, 0, b"hi");
    assert_eq!(host.file("g"), Some(&b"hi"[..]));
    assert_eq!(host.log().last().unwrap().path, "g");
    ok(&mut host, OpKind::RemoveAll { path: "x".into() });
    ok(
        &mut host,
        OpKind::RemoveAll {
            path: "missing".into(),
        },
    );
    assert!(!host.exists("x"));
    ok(&mut host, OpKind::Remove { path: "g".into() });
    write(&mut host, h, 2, b"!"); // an unlinked but open file still takes writes
    assert_eq!(host.file("g"), None);
    ok(&mut host, OpKind::Close { handle: h });
    assert_eq!(
        errno_of(&mut host, OpKind::Close { handle: h }),
        errno::EBADF
    );
}

#[test]
fn stat_readdir_and_remove_report_like_posix() {
    let mut host = MemHost::new();
    mkdir(&mut host, "d/e");
    let h = open(&mut host, "d/f");
    write(&mut host, h, 0, b"abc");
    match ok(&mut host, OpKind::Stat { path: "d/f".into() }) {
        OpOutput::Stat(st) => assert_eq!((st.size, st.is_dir()), (3, false)),
        other => panic!("{other:?}"),
    }
    match ok(&mut host, OpKind::Stat { path: "d".into() }) {
        OpOutput::Stat(st) => assert!(st.is_dir()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ok(&mut host, OpKind::ReadDir { path: "d".into() }),
        OpOutput::Entries(vec!["e".into(), "f".into()])
    );
    assert_eq!(
        errno_of(&mut host, OpKind::Remove { path: "d".into() }),
        berth_proptests::host::ENOTEMPTY
    );
    assert_eq!(
        errno_of(
            &mut host,
            OpKind::Stat {
                path: "nope".into()
            }
        ),
        errno::ENOENT
    );
    assert_eq!(
        ok(
            &mut host,
            OpKind::Read {
                handle: h,
                offset: 1,
                len: 10
            }
        ),
        OpOutput::Data(b"bc".to_vec().into())
    );
}

#[test]
fn write_ops_counts_the_writes_of_short_writing() {
    let mut host = MemHost::new();
    mkdir(&mut host, "d");
    let h = open(&mut host, "d/f");
    for short in [false, true] {
        host.short_writes = short;
        for len in [0usize, 1, 2, 3, 7, 512] {
            let data = vec![7u8; len];
            let mut at = 0;
            let mut ops = 0;
            while at < len {
                let OpOutput::Written(n) = write(&mut host, h, at as u64, &data[at..]) else {
                    panic!("not a write");
                };
                at += n as usize;
                ops += 1;
            }
            assert_eq!(host.write_ops(len), ops, "short {short}, {len} bytes");
        }
    }
    assert_eq!(host.write_ops(512), 10);
}
