//! The shim binary driven over its socket, with a fake OCI runtime (a shell script): no root,
//! no runc. The fake's `create` starts a process that waits for `start`; its `exec` runs
//! `execs/<id>.sh`. (`drivers/tests/runtime.rs` runs the shim with real runc.)

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ChildStdio};
use std::thread;
use std::time::{Duration, Instant};

use berth_shim::protocol::{
    ErrorCode, ExitRecord, ProcessStatus, Reply, Request, Stdio, TaskConfig,
};

const FAKE_RUNTIME: &str = r#"#!/bin/sh
# A fake OCI runtime: global flags, then create/start/exec as berth-shim calls them.
while [ $# -gt 0 ]; do
  case "$1" in --root|--log|--log-format) shift 2 ;; *) break ;; esac
done
cmd=$1; shift
case "$cmd" in
create)
  while [ $# -gt 1 ]; do
    case "$1" in --bundle) bundle=$2; shift 2 ;; --pid-file) pidfile=$2; shift 2 ;; *) shift ;; esac
  done
  ( while [ ! -e "$bundle/started" ]; do sleep 0.01; done; exec sh "$bundle/init.sh" ) &
  echo $! > "$pidfile" ;;
start)
  touch started ;;
exec)
  while [ $# -gt 1 ]; do
    case "$1" in --process) proc=$2; shift 2 ;; --pid-file) pidfile=$2; shift 2 ;; *) shift ;; esac
  done
  # Like runc, leave the process to the shim (the subreaper), not as a child of this script:
  # dash reaps its own background children, so a quick exit's status would be lost.
  rm -f "$pidfile"
  if [ -e "${proc%.process.json}.reaped" ]; then
    # A runtime that waits for what it started: the shim finds the process gone.
    sh "${proc%.process.json}.sh" & echo $! > "$pidfile"; wait; exit 0
  fi
  setsid -f sh -c 'echo $$ > "$1.tmp" && mv "$1.tmp" "$1" && exec sh "$2"' \
    exec "$pidfile" "${proc%.process.json}.sh"
  while [ ! -s "$pidfile" ]; do sleep 0.01; done ;;
*)
  echo "{\"level\":\"error\",\"msg\":\"fake runtime: no $cmd\"}" >> log.json; exit 1 ;;
esac
"#;

/// A test directory (a bundle, or the FIFO's), removed on drop, after the shim and the fake
/// init whose pid files it holds are killed.
struct Bundle {
    dir: PathBuf,
}

impl Drop for Bundle {
    fn drop(&mut self) {
        // After a failed test too: the shim and the fake init (which would spin once its
        // bundle is gone).
        for file in ["shim.pid", "init.pid"] {
            if let Ok(pid) = fs::read_to_string(self.dir.join(file)) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn bundle(name: &str, init: &str, stdio: Stdio) -> Bundle {
    let dir = std::env::temp_dir().join(format!("berth-shim-fake-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("execs")).unwrap();
    let runtime = dir.join("fake-runtime");
    fs::write(&runtime, FAKE_RUNTIME).unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("init.sh"), init).unwrap();
    let cfg = TaskConfig {
        namespace: "test".into(),
        id: name.into(),
        runtime: runtime.to_str().unwrap().into(),
        runtime_root: dir.join("root").to_str().unwrap().into(),
        stdio,
        rootfs_mounts: 0,
    };
    fs::write(dir.join("task.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    Bundle { dir }
}

/// `berth-shim start`, as berthd runs it: returns the handshake.
fn start_shim(b: &Bundle) -> Reply {
    let mut launcher = Command::new(env!("CARGO_BIN_EXE_berth-shim"))
        .arg("start")
        .arg(&b.dir)
        .stdin(ChildStdio::null())
        .stdout(ChildStdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(launcher.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(launcher.wait().unwrap().success());
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

fn call(b: &Bundle, req: &Request) -> Reply {
    let mut s = UnixStream::connect(b.dir.join("shim.sock")).unwrap();
    let mut line = serde_json::to_vec(req).unwrap();
    line.push(b'\n');
    s.write_all(&line).unwrap();
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
}

fn exited(r: Reply) -> ExitRecord {
    match r {
        Reply::Exited(e) => e,
        other => panic!("expected an exit, got {other:?}"),
    }
}

/// Starts exec `id` and waits for its exit: its pid and exit record.
fn start_and_wait(b: &Bundle, id: &str) -> (u32, ExitRecord) {
    let started = call(b, &Request::Start { exec_id: id.into() });
    let Reply::Started { pid } = started else {
        panic!("starting {id}: {started:?}")
    };
    let rec = exited(call(b, &Request::Wait { exec_id: id.into() }));
    (pid, rec)
}

fn mkfifo(p: &Path) {
    rustix::fs::mkfifoat(rustix::fs::CWD, p, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn lifecycle_through_the_socket() {
    let out_dir = Bundle {
        dir: std::env::temp_dir().join(format!("berth-shim-fifo-{}", std::process::id())),
    };
    let _ = fs::remove_dir_all(&out_dir.dir);
    fs::create_dir_all(&out_dir.dir).unwrap();
    let out = out_dir.dir.join("out");
    mkfifo(&out);
    let reader = {
        let out = out.clone();
        thread::spawn(move || {
            let mut v = String::new();
            fs::File::open(out).unwrap().read_to_string(&mut v).unwrap();
            v
        })
    };
    let b = bundle(
        "life",
        "echo init says hi; while [ ! -e stop ]; do sleep 0.01; done; exit 3\n",
        Stdio {
            stdout: out.to_str().unwrap().into(),
            ..Stdio::default()
        },
    );
    let Reply::Started { pid } = start_shim(&b) else {
        panic!("no start")
    };
    assert!(pid > 0);
    let shim_pid: u32 = fs::read_to_string(b.dir.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = fs::read_to_string(format!("/proc/{shim_pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("");
    println!("berth-shim (this build, not the shipped static one): {rss}");

    // Wait before start, on its own connection.
    let waiter = {
        let dir = b.dir.clone();
        thread::spawn(move || {
            let mut s = UnixStream::connect(dir.join("shim.sock")).unwrap();
            s.write_all(b"{\"op\":\"wait\"}\n").unwrap();
            let mut reply = String::new();
            BufReader::new(&s).read_line(&mut reply).unwrap();
            serde_json::from_str::<Reply>(&reply).unwrap()
        })
    };
    let Reply::State { init, .. } = call(&b, &Request::State) else {
        panic!()
    };
    assert_eq!((init.pid, init.status), (pid, ProcessStatus::Created));
    assert_eq!(
        call(
            &b,
            &Request::Start {
                exec_id: String::new()
            }
        ),
        Reply::Started { pid }
    );
    assert!(matches!(
        call(
            &b,
            &Request::Start {
                exec_id: String::new()
            }
        ),
        Reply::Error {
            code: ErrorCode::FailedPrecondition,
            ..
        }
    ));

    // An exec: added, started, exits 7.
    fs::write(b.dir.join("execs/e1.process.json"), "{}").unwrap();
    fs::write(b.dir.join("execs/e1.sh"), "exit 7\n").unwrap();
    let add = |id: &str| Request::Exec {
        exec_id: id.into(),
        stdio: Stdio::default(),
    };
    assert_eq!(call(&b, &add("e1")), Reply::Ok);
    assert!(matches!(
        call(&b, &add("e1")),
        Reply::Error {
            code: ErrorCode::AlreadyExists,
            ..
        }
    ));
    assert!(matches!(
        call(&b, &add("init")),
        Reply::Error {
            code: ErrorCode::InvalidArgument,
            ..
        }
    ));
    let (e1, rec) = start_and_wait(&b, "e1");
    assert_eq!((rec.pid, rec.status), (e1, 7));
    let on_disk: ExitRecord =
        serde_json::from_slice(&fs::read(b.dir.join("exit/e1")).unwrap()).unwrap();
    assert_eq!(on_disk, rec);
    assert_eq!(
        exited(call(
            &b,
            &Request::DeleteExec {
                exec_id: "e1".into()
            }
        )),
        rec
    );
    assert!(!b.dir.join("exit/e1").exists());

    // An exec killed through its pidfd: 128 + SIGTERM.
    fs::write(b.dir.join("execs/e2.process.json"), "{}").unwrap();
    fs::write(b.dir.join("execs/e2.sh"), "exec sleep 600\n").unwrap();
    assert_eq!(call(&b, &add("e2")), Reply::Ok);
    call(
        &b,
        &Request::Start {
            exec_id: "e2".into(),
        },
    );
    assert_eq!(
        call(
            &b,
            &Request::Kill {
                exec_id: "e2".into(),
                signal: 15
            }
        ),
        Reply::Ok
    );
    assert_eq!(
        exited(call(
            &b,
            &Request::Wait {
                exec_id: "e2".into()
            }
        ))
        .status,
        143
    );
    assert!(matches!(
        call(
            &b,
            &Request::Kill {
                exec_id: "e2".into(),
                signal: 15
            }
        ),
        Reply::Error {
            code: ErrorCode::NotFound,
            ..
        }
    ));

    // An exec the runtime itself reaped: started, its status lost (255), not an error.
    fs::write(b.dir.join("execs/e3.process.json"), "{}").unwrap();
    fs::write(b.dir.join("execs/e3.sh"), "exit 5\n").unwrap();
    fs::write(b.dir.join("execs/e3.reaped"), "").unwrap();
    assert_eq!(call(&b, &add("e3")), Reply::Ok);
    let (e3, rec) = start_and_wait(&b, "e3");
    assert_eq!((rec.pid, rec.status), (e3, 255));

    // The init exits: recorded, the early waiter answered, stdout closed, the shim gone.
    fs::write(b.dir.join("stop"), "").unwrap();
    let rec = exited(waiter.join().unwrap());
    assert_eq!((rec.pid, rec.status), (pid, 3));
    let on_disk: ExitRecord =
        serde_json::from_slice(&fs::read(b.dir.join("exit/init")).unwrap()).unwrap();
    assert_eq!(on_disk, rec);
    assert_eq!(reader.join().unwrap(), "init says hi\n");
    until("the shim to exit", || !b.dir.join("shim.sock").exists());
    until("the shim's pid file to go", || {
        !b.dir.join("shim.pid").exists()
    });
    drop(out_dir);
}

#[test]
fn a_runtime_failure_is_reported_in_the_handshake() {
    let b = bundle("fail", "exit 0\n", Stdio::default());
    // A runtime that fails `create`.
    fs::write(
        b.dir.join("fake-runtime"),
        "#!/bin/sh\necho '{\"level\":\"error\",\"msg\":\"no such image\"}' >> log.json\nexit 1\n",
    )
    .unwrap();
    match start_shim(&b) {
        Reply::Error { code, message } => {
            assert_eq!(code, ErrorCode::Internal);
            assert!(message.contains("no such image"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!b.dir.join("shim.sock").exists());
    assert!(!b.dir.join("shim.pid").exists());
}

#[test]
fn the_shim_holds_no_descriptor_of_its_creator() {
    // A pipe this test leaks on purpose (not close-on-exec), as a careless parent would.
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::empty()).unwrap();
    let b = bundle("fds", "exec sleep 600\n", Stdio::default());
    assert!(matches!(start_shim(&b), Reply::Started { .. }));
    drop(w);
    // Only the shim could still hold the write end: EOF means it does not.
    let mut buf = [0u8; 1];
    let mut r = fs::File::from(r);
    assert_eq!(r.read(&mut buf).unwrap(), 0);
    call(
        &b,
        &Request::Kill {
            exec_id: String::new(),
            signal: 9,
        },
    );
    // The shim may be gone already (its only process has exited): the record tells.
    until("the exit record", || b.dir.join("exit/init").exists());
    let rec: ExitRecord =
        serde_json::from_slice(&fs::read(b.dir.join("exit/init")).unwrap()).unwrap();
    assert_eq!(rec.status, 137);
}
