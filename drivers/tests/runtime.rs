//! `berth_drivers::runtime` against real runc and the real `berth-shim`, as root.
//!
//! Each test gets its own state directory, runc root and busybox rootfs (bind-mounted into the
//! bundle, as a snapshot would be), and removes every container, shim, mount and bundle it
//! made when it ends, also when it fails. The tests run one at a time (they measure time and
//! memory, and share two CPUs with the build).
//!
//! The shim binary is `$BERTH_SHIM`, or built here the way it ships: statically linked, in
//! release mode, with `panic = abort` (see the `berth-shim` crate docs).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ChildStdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use berth_core::snapshot::Mount;
use berth_drivers::runtime::{CreateTask, Runtime, RuntimeConfig, Status, Stdio};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Root, runc and busybox are needed; without them the tests say so and pass.
fn usable() -> bool {
    let root = rustix::process::geteuid().is_root();
    let runc = Command::new("runc")
        .arg("--version")
        .stdout(ChildStdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let busybox = Path::new("/bin/busybox").exists();
    if !(root && runc && busybox) {
        eprintln!("skipped: needs root ({root}), runc ({runc}) and /bin/busybox ({busybox})");
    }
    root && runc && busybox
}

fn shim_binary() -> PathBuf {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        if let Some(p) = std::env::var_os("BERTH_SHIM") {
            return PathBuf::from(p);
        }
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let target_dir =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| ws.join("target"), PathBuf::from);
        let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(ws)
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "berth-shim",
                "--target",
                &triple,
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("running cargo to build berth-shim");
        assert!(status.success(), "building berth-shim failed");
        target_dir.join(triple).join("release").join("berth-shim")
    })
    .clone()
}

/// A test's world: a state directory, a busybox rootfs, a runtime.
struct Env {
    dir: Option<tempfile::TempDir>,
    rt: Runtime,
    rootfs: PathBuf,
    ns: &'static str,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("berth-rt-")
            .tempdir_in("/tmp")
            .unwrap();
        let rootfs = dir.path().join("image");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "true", "sleep", "cat", "echo", "tty", "stty"] {
            symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let rt = Runtime::new(RuntimeConfig::new(dir.path().join("state"), shim_binary()));
        Env {
            dir: Some(dir),
            rt,
            rootfs,
            ns: "testing",
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.as_ref().unwrap().path().join(name)
    }

    fn fifo(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from_raw_mode(0o700)).unwrap();
        p
    }

    fn spec(&self, id: &str, args: &[&str], terminal: bool) -> Vec<u8> {
        spec(id, args, terminal)
    }

    fn mounts(&self) -> Vec<Mount> {
        vec![Mount {
            kind: "bind".into(),
            source: self.rootfs.to_str().unwrap().into(),
            target: String::new(),
            options: vec!["rw".into(), "rbind".into()],
        }]
    }

    fn task(&self, id: &str, args: &[&str], stdio: Stdio) -> CreateTask {
        CreateTask {
            namespace: self.ns.into(),
            id: id.into(),
            spec: self.spec(id, args, stdio.terminal),
            rootfs: self.mounts(),
            stdio,
            runtime: None,
            runtime_root: None,
        }
    }

    /// Creates and starts `args`; returns the init's pid.
    fn run(&self, id: &str, args: &[&str], stdio: Stdio) -> u32 {
        let created = self.rt.create(self.task(id, args, stdio)).unwrap();
        let pid = self.rt.start(self.ns, id, "").unwrap();
        assert_eq!(pid, created.pid);
        pid
    }

    fn runc_status(&self, id: &str) -> String {
        let root = self.rt.config().runtime_root.join(self.ns);
        let out = Command::new("runc")
            .arg("--root")
            .arg(root)
            .args(["state", id])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["status"].as_str().unwrap_or("").to_string()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let state = self.rt.config().state.clone();
        let mut clean = true;
        for ns_dir in fs::read_dir(&state).into_iter().flatten().flatten() {
            let ns = ns_dir.file_name().to_string_lossy().into_owned();
            if ns_dir.path() == self.rt.config().runtime_root {
                continue;
            }
            for b in fs::read_dir(ns_dir.path()).into_iter().flatten().flatten() {
                let id = b.file_name().to_string_lossy().into_owned();
                if id.starts_with(".deleted-") {
                    // a deleted bundle that its removal thread is still unlinking
                    for _ in 0..100 {
                        if !b.path().exists() {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    clean &= !b.path().exists();
                    continue;
                }
                let shim_pid = fs::read_to_string(b.path().join("shim.pid")).ok();
                if let Err(e) = self.rt.delete(&ns, &id, true) {
                    eprintln!("cleanup: delete {ns}/{id}: {e}");
                    let root = self.rt.config().runtime_root.join(&ns);
                    let _ = Command::new("runc")
                        .arg("--root")
                        .arg(root)
                        .args(["delete", "--force", &id])
                        .status();
                    let rootfs = b.path().join("rootfs");
                    while rustix::mount::unmount(&rootfs, rustix::mount::UnmountFlags::DETACH)
                        .is_ok()
                    {}
                }
                if let Some(pid) = shim_pid.and_then(|p| p.trim().parse::<i32>().ok()) {
                    kill_shim(pid);
                }
                if b.path().exists() {
                    clean = false;
                }
            }
        }
        if !clean {
            // Never remove a directory that may still have a mount inside.
            let kept = self.dir.take().unwrap().keep();
            eprintln!("cleanup: left {} behind", kept.display());
        }
    }
}

/// Kills a shim that is still running (only if the pid is still a berth-shim).
fn kill_shim(pid: i32) {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let shim = args.first().is_some_and(|a| a.ends_with(b"berth-shim"))
        && matches!(args.get(1), Some(&(b"start" | b"serve")));
    if shim {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

fn spec(id: &str, args: &[&str], terminal: bool) -> Vec<u8> {
    let cgroup = format!("/berth-test-{}-{id}", std::process::id());
    serde_json::to_vec_pretty(&serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs"},
        "hostname": "berth-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}
        ],
        "linux": {
            "cgroupsPath": cgroup,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
        }
    }))
    .unwrap()
}

fn process_spec(args: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/bin"],
        "cwd": "/"
    }))
    .unwrap()
}

/// A client reading a FIFO to its end, like ctr's stdout copy.
fn read_all(path: PathBuf) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut f = fs::File::open(path).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    })
}

/// A client reading a FIFO line by line.
fn read_lines(path: PathBuf) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let f = BufReader::new(fs::File::open(path).unwrap());
        for line in f.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn shim_pid_of(env: &Env, id: &str) -> u32 {
    env.rt
        .state(env.ns, id)
        .unwrap()
        .shim_pid
        .expect("a live shim")
}

#[test]
fn exit_statuses_reach_a_waiter_issued_before_start() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    for (id, args, want) in [
        ("true", &["/bin/true"][..], 0),
        ("three", &["sh", "-c", "exit 3"][..], 3),
    ] {
        env.rt.create(env.task(id, args, Stdio::default())).unwrap();
        // ctr issues its Wait before Start.
        let rt = env.rt.clone();
        let ns = env.ns;
        let id2 = id.to_string();
        let waiter = thread::spawn(move || rt.wait(ns, &id2, ""));
        thread::sleep(Duration::from_millis(50));
        assert_eq!(
            env.rt.state(env.ns, id).unwrap().init.status,
            Status::Created
        );
        env.rt.start(env.ns, id, "").unwrap();
        let exit = waiter.join().unwrap().unwrap();
        assert_eq!(exit.status, want, "{id}");
        assert!(exit.exited_at > 0);
        // After the exit: state says stopped, a second wait answers at once, delete gives it.
        let st = env.rt.state(env.ns, id).unwrap();
        assert_eq!(st.init.status, Status::Stopped);
        assert_eq!(env.rt.wait(env.ns, id, "").unwrap(), exit);
        let bundle = env.rt.bundle(env.ns, id);
        assert_eq!(env.rt.delete(env.ns, id, false).unwrap(), Some(exit));
        assert!(!bundle.exists());
        assert!(matches!(
            env.rt.state(env.ns, id),
            Err(berth_drivers::runtime::RuntimeError::NotFound { .. })
        ));
        // The root is unmounted just after the delete answers, under the bundle's new name.
        let ns_dir = bundle.parent().unwrap().to_string_lossy().into_owned();
        until(
            "the deleted root to be unmounted",
            Duration::from_secs(10),
            || berth_drivers::runtime::wait_unused(std::slice::from_ref(&ns_dir), Duration::ZERO),
        );
        // The same id can be used again at once.
        env.rt
            .create(env.task(id, &["/bin/true"], Stdio::default()))
            .unwrap();
        env.rt.delete(env.ns, id, true).unwrap();
    }
}

#[test]
fn a_crash_between_delete_and_unmount_is_finished_at_start_up() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    // What a crash just after a delete answered leaves: the bundle renamed, its root mounted.
    let state = env.rt.config().state.clone();
    let left = state.join(env.ns).join(".deleted-gone-1-0");
    // the mount's source lives beside the state directory, not in it (it is no namespace)
    let src = state.parent().unwrap().join("src");
    fs::create_dir_all(left.join("rootfs")).unwrap();
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("file"), b"x").unwrap();
    rustix::mount::mount_bind(&src, left.join("rootfs")).unwrap();
    berth_drivers::runtime::sweep_deleted(&state);
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(".deleted-gone"), "{mountinfo}");
    assert!(!left.exists());
    assert!(src.join("file").exists(), "the mount's source was touched");
}

#[test]
fn stdout_reaches_a_reader_and_eof_follows_the_exit() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let out = env.fifo("out");
    let err = env.fifo("err");
    let out_reader = read_all(out.clone());
    let err_reader = read_all(err.clone());
    let stdio = Stdio {
        stdout: out.to_str().unwrap().into(),
        stderr: err.to_str().unwrap().into(),
        ..Stdio::default()
    };
    env.run(
        "echo",
        &["sh", "-c", "echo hello; echo oops >&2; exit 2"],
        stdio,
    );
    assert_eq!(env.rt.wait(env.ns, "echo", "").unwrap().status, 2);
    // EOF arrives (the readers finish) once the process has exited.
    assert_eq!(out_reader.join().unwrap(), b"hello\n");
    assert_eq!(err_reader.join().unwrap(), b"oops\n");
    env.rt.delete(env.ns, "echo", false).unwrap();
}

#[test]
fn stdin_ends_with_close_io_not_with_the_client_closing() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let inp = env.fifo("in");
    let out = env.fifo("out");
    let reader = read_all(out.clone());
    let stdio = Stdio {
        stdin: inp.to_str().unwrap().into(),
        stdout: out.to_str().unwrap().into(),
        ..Stdio::default()
    };
    env.run("cat", &["cat"], stdio);
    {
        let mut w = fs::OpenOptions::new().write(true).open(&inp).unwrap();
        w.write_all(b"through the fifo\n").unwrap();
    } // the client closes its end
    thread::sleep(Duration::from_millis(300));
    // containerd's behaviour: the shim's spare writer keeps cat reading.
    assert_eq!(
        env.rt.state(env.ns, "cat").unwrap().init.status,
        Status::Running
    );
    env.rt.close_stdin(env.ns, "cat", "").unwrap();
    assert_eq!(env.rt.wait(env.ns, "cat", "").unwrap().status, 0);
    assert_eq!(reader.join().unwrap(), b"through the fifo\n");
    env.rt.delete(env.ns, "cat", false).unwrap();
}

#[test]
fn exec_kill_pause_resume_ps_update_metrics() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let pid = env.run("sleeper", &["sleep", "600"], Stdio::default());
    let ns = env.ns;

    // ps lists the init.
    let pids = env.rt.pids(ns, "sleeper").unwrap();
    assert!(
        pids.iter().any(|p| p.pid == pid && p.exec_id.is_none()),
        "{pids:?}"
    );

    // An exec with its own output and exit status.
    let out = env.fifo("exec-out");
    let reader = read_all(out.clone());
    let stdio = Stdio {
        stdout: out.to_str().unwrap().into(),
        ..Stdio::default()
    };
    env.rt
        .exec(
            ns,
            "sleeper",
            "e1",
            &process_spec(&["sh", "-c", "echo from exec; exit 7"]),
            stdio,
        )
        .unwrap();
    let st = env.rt.state(ns, "sleeper").unwrap();
    assert_eq!(st.execs.len(), 1);
    assert_eq!(st.execs[0].status, Status::Created);
    let epid = env.rt.start(ns, "sleeper", "e1").unwrap();
    let exit = env.rt.wait(ns, "sleeper", "e1").unwrap();
    assert_eq!((exit.pid, exit.status), (epid, 7));
    assert_eq!(reader.join().unwrap(), b"from exec\n");
    assert_eq!(env.rt.delete_process(ns, "sleeper", "e1").unwrap(), exit);
    assert!(env.rt.state(ns, "sleeper").unwrap().execs.is_empty());

    // An exec that is killed through the shim, while ps names it.
    env.rt
        .exec(
            ns,
            "sleeper",
            "e2",
            &process_spec(&["sleep", "600"]),
            Stdio::default(),
        )
        .unwrap();
    let e2 = env.rt.start(ns, "sleeper", "e2").unwrap();
    let pids = env.rt.pids(ns, "sleeper").unwrap();
    assert!(
        pids.iter()
            .any(|p| p.pid == e2 && p.exec_id.as_deref() == Some("e2")),
        "{pids:?}"
    );
    env.rt.kill(ns, "sleeper", "e2", 15, false).unwrap();
    assert_eq!(env.rt.wait(ns, "sleeper", "e2").unwrap().status, 128 + 15);

    // pause/resume show in runc's state and in ours.
    env.rt.pause(ns, "sleeper").unwrap();
    assert_eq!(env.runc_status("sleeper"), "paused");
    assert_eq!(
        env.rt.state(ns, "sleeper").unwrap().init.status,
        Status::Paused
    );
    env.rt.resume(ns, "sleeper").unwrap();
    assert_eq!(env.runc_status("sleeper"), "running");
    assert_eq!(
        env.rt.state(ns, "sleeper").unwrap().init.status,
        Status::Running
    );

    // update, then metrics see the new limit.
    env.rt
        .update(
            ns,
            "sleeper",
            br#"{"pids":{"limit":42},"memory":{"limit":67108864}}"#,
        )
        .unwrap();
    let m = env.rt.metrics(ns, "sleeper").unwrap();
    println!("metrics: {m:?}");
    assert_eq!(m.pids.limit, 42);
    assert!(m.pids.current >= 1);
    assert_eq!(m.memory.limit, 64 << 20);
    assert!(m.memory.usage > 0);
    assert!(m.cpu.total > 0);

    // A running task is not deleted without force; kill -9 gives 137.
    assert!(env.rt.delete(ns, "sleeper", false).is_err());
    env.rt.kill(ns, "sleeper", "", 9, false).unwrap();
    let exit = env.rt.wait(ns, "sleeper", "").unwrap();
    assert_eq!((exit.pid, exit.status), (pid, 137));
    env.rt.delete(ns, "sleeper", false).unwrap();
}

#[test]
fn a_terminal_is_copied_both_ways() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let inp = env.fifo("in");
    let out = env.fifo("out");
    let reader = read_all(out.clone());
    let stdio = Stdio {
        stdin: inp.to_str().unwrap().into(),
        stdout: out.to_str().unwrap().into(),
        terminal: true,
        ..Stdio::default()
    };
    let mut w = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc_nonblock())
        .open(&inp);
    assert!(w.is_err()); // no reader yet
    env.run(
        "tty",
        &["sh", "-c", "tty; stty size; read line; echo got $line"],
        stdio,
    );
    env.rt.resize_pty(env.ns, "tty", "", 100, 40).unwrap();
    w = fs::OpenOptions::new().write(true).open(&inp);
    w.as_mut().unwrap().write_all(b"typed\n").unwrap();
    let exit = env.rt.wait(env.ns, "tty", "").unwrap();
    assert_eq!(exit.status, 0);
    let text = String::from_utf8(reader.join().unwrap()).unwrap();
    assert!(text.contains("/dev/pts/0"), "{text:?}");
    assert!(text.contains("got typed"), "{text:?}");
    drop(w);
    env.rt.delete(env.ns, "tty", false).unwrap();

    // An exec with its own terminal, in a running container.
    env.run("tty2", &["sleep", "600"], Stdio::default());
    let out = env.fifo("exec-out");
    let reader = read_all(out.clone());
    let mut spec: serde_json::Value = serde_json::from_slice(&process_spec(&["tty"])).unwrap();
    spec["terminal"] = true.into();
    let stdio = Stdio {
        stdout: out.to_str().unwrap().into(),
        terminal: true,
        ..Stdio::default()
    };
    env.rt
        .exec(
            env.ns,
            "tty2",
            "t",
            &serde_json::to_vec(&spec).unwrap(),
            stdio,
        )
        .unwrap();
    env.rt.start(env.ns, "tty2", "t").unwrap();
    assert_eq!(env.rt.wait(env.ns, "tty2", "t").unwrap().status, 0);
    let text = String::from_utf8(reader.join().unwrap()).unwrap();
    assert!(text.starts_with("/dev/pts/"), "{text:?}");
    env.rt.kill(env.ns, "tty2", "", 9, false).unwrap();
    env.rt.wait(env.ns, "tty2", "").unwrap();
}

/// `O_NONBLOCK`, without a libc dependency.
fn libc_nonblock() -> i32 {
    rustix::fs::OFlags::NONBLOCK.bits() as i32
}

/// Run by `the_shim_survives_its_creator` in a child process: create and start a task, say
/// so, then wait to be killed.
#[test]
#[ignore = "a helper run in a child process"]
fn helper_create_and_get_killed() {
    let Ok(state) = std::env::var("BERTH_RT_HELPER_STATE") else {
        return;
    };
    let shim = std::env::var("BERTH_RT_HELPER_SHIM").unwrap();
    let task: serde_json::Value =
        serde_json::from_str(&std::env::var("BERTH_RT_HELPER_TASK").unwrap()).unwrap();
    let rt = Runtime::new(RuntimeConfig::new(state, shim));
    let s = |k: &str| task[k].as_str().unwrap().to_string();
    let args: Vec<String> = serde_json::from_value(task["args"].clone()).unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let created = rt
        .create(CreateTask {
            namespace: s("ns"),
            id: s("id"),
            spec: spec(&s("id"), &args, false),
            rootfs: vec![Mount {
                kind: "bind".into(),
                source: s("rootfs"),
                target: String::new(),
                options: vec!["rw".into(), "rbind".into()],
            }],
            stdio: Stdio {
                stdout: s("stdout"),
                ..Stdio::default()
            },
            runtime: None,
            runtime_root: None,
        })
        .unwrap();
    rt.start(&s("ns"), &s("id"), "").unwrap();
    println!("CREATED {}", created.pid);
    std::io::stdout().flush().unwrap();
    thread::sleep(Duration::from_secs(600));
}

fn create_from_a_child_that_dies(env: &Env, id: &str, args: &[&str], stdout: &Path) -> u32 {
    let task = serde_json::json!({
        "ns": env.ns, "id": id, "args": args,
        "rootfs": env.rootfs.to_str().unwrap(), "stdout": stdout.to_str().unwrap(),
    });
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_create_and_get_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BERTH_RT_HELPER_STATE", &env.rt.config().state)
        .env("BERTH_RT_HELPER_SHIM", &env.rt.config().shim)
        .env("BERTH_RT_HELPER_TASK", task.to_string())
        .stdout(ChildStdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let pid = loop {
        let line = lines
            .next()
            .expect("the helper ended without creating")
            .unwrap();
        // libtest prints "test NAME ... " before it, on the same line.
        if let Some(pid) = line.split("CREATED ").nth(1) {
            break pid.trim().parse().unwrap();
        }
    };
    child.kill().unwrap(); // SIGKILL: "berthd" dies without a word
    child.wait().unwrap();
    pid
}

#[test]
fn the_shim_survives_its_creator_and_recover_finds_the_task() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let out = env.fifo("ticks");
    let lines = read_lines(out.clone());
    let script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done";
    let pid = create_from_a_child_that_dies(&env, "survivor", &["sh", "-c", script], &out);
    let first = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(first.starts_with("tick "), "{first}");

    // A "restarted berthd": a fresh runtime on the same state finds the task running.
    let rt = Runtime::new(RuntimeConfig::new(
        env.rt.config().state.clone(),
        shim_binary(),
    ));
    let found = rt.recover().unwrap();
    assert!(found.broken.is_empty(), "{:?}", found.broken);
    assert_eq!(found.tasks.len(), 1);
    let t = &found.tasks[0];
    assert_eq!(
        (t.namespace.as_str(), t.id.as_str()),
        ("testing", "survivor")
    );
    assert_eq!((t.init.pid, t.init.status), (pid, Status::Running));
    let shim = t.shim_pid.expect("the shim is alive");
    // Its parent is not the dead creator: it was orphaned at birth.
    let stat = fs::read_to_string(format!("/proc/{shim}/stat")).unwrap();
    let ppid: u32 = stat
        .rsplit(") ")
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ppid == 1 || ppid != std::process::id(),
        "shim parent {ppid}"
    );

    // Output is still flowing after the creator's death.
    let mut after = Vec::new();
    for _ in 0..5 {
        after.push(lines.recv_timeout(Duration::from_secs(10)).unwrap());
    }
    assert!(after.iter().all(|l| l.starts_with("tick ")), "{after:?}");

    // The exit reaches the new runtime.
    rt.kill("testing", "survivor", "", 9, false).unwrap();
    let exit = rt.wait("testing", "survivor", "").unwrap();
    assert_eq!((exit.pid, exit.status), (pid, 137));
    rt.delete("testing", "survivor", false).unwrap();
}

#[test]
fn an_exit_while_no_one_is_connected_is_recorded_and_recovered() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let out = env.fifo("out");
    let reader = read_all(out.clone());
    let pid = create_from_a_child_that_dies(
        &env,
        "short",
        &["sh", "-c", "echo bye; sleep 0.3; exit 5"],
        &out,
    );
    // Nobody is connected: the creator is dead and no waiter exists. The shim records the exit
    // and, its work done, goes away.
    let bundle = env.rt.bundle(env.ns, "short");
    until("the shim to finish", Duration::from_secs(10), || {
        bundle.join("exit/init").exists() && !bundle.join("shim.sock").exists()
    });
    assert_eq!(reader.join().unwrap(), b"bye\n");
    // A bundle deleted just before a crash, renamed but not yet removed: recovery removes it
    // and does not take it for a task.
    let leftover = bundle.with_file_name(".deleted-gone-1-0");
    fs::create_dir_all(leftover.join("exit")).unwrap();
    fs::write(leftover.join("task.json"), b"{}").unwrap();
    let rt = Runtime::new(RuntimeConfig::new(
        env.rt.config().state.clone(),
        shim_binary(),
    ));
    let found = rt.recover().unwrap();
    assert!(!leftover.exists(), "a deleted bundle survived recovery");
    assert!(found.broken.is_empty(), "{:?}", found.broken);
    assert_eq!(found.tasks.len(), 1);
    let t = &found.tasks[0];
    assert_eq!(t.shim_pid, None);
    assert_eq!(t.init.status, Status::Stopped);
    let exit = t.init.exit.unwrap();
    assert_eq!((exit.pid, exit.status), (pid, 5));
    assert_eq!(rt.wait(env.ns, "short", "").unwrap(), exit);
    assert_eq!(rt.delete(env.ns, "short", false).unwrap(), Some(exit));
}

#[test]
fn shim_rss_stays_under_2_mib() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let out = env.fifo("out");
    let inp = env.fifo("in");
    let lines = read_lines(out.clone());
    let stdio = Stdio {
        stdin: inp.to_str().unwrap().into(),
        stdout: out.to_str().unwrap().into(),
        ..Stdio::default()
    };
    env.run("rss", &["sh", "-c", "echo up; exec sleep 600"], stdio);
    assert_eq!(lines.recv_timeout(Duration::from_secs(10)).unwrap(), "up");
    // Exercise it a little first: state, an exec, waits.
    env.rt
        .exec(
            env.ns,
            "rss",
            "e",
            &process_spec(&["true"]),
            Stdio::default(),
        )
        .unwrap();
    env.rt.start(env.ns, "rss", "e").unwrap();
    env.rt.wait(env.ns, "rss", "e").unwrap();
    let shim = shim_pid_of(&env, "rss");
    let rss = vm_rss_kib(shim);
    let status = fs::read_to_string(format!("/proc/{shim}/status")).unwrap();
    let detail: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("Rss") || l.starts_with("VmRSS"))
        .collect();
    println!("berth-shim VmRSS: {rss} KiB ({})", detail.join(", "));
    assert!(rss <= 2048, "shim RSS {rss} KiB > 2 MiB");
    env.rt.kill(env.ns, "rss", "", 9, false).unwrap();
    env.rt.wait(env.ns, "rss", "").unwrap();
}

#[test]
fn latency_of_true_against_runc_run() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    const N: usize = 15;
    // runc run directly: one bundle, rootfs given by path.
    let bundle = env.path("plain");
    fs::create_dir_all(&bundle).unwrap();
    let mut s: serde_json::Value =
        serde_json::from_slice(&spec("plain", &["/bin/true"], false)).unwrap();
    s["root"]["path"] = env.rootfs.to_str().unwrap().into();
    fs::write(bundle.join("config.json"), serde_json::to_vec(&s).unwrap()).unwrap();
    let root = env.path("plain-root");
    let mut runc = Vec::new();
    for i in 0..N {
        let t = Instant::now();
        let st = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("plain{i}"))
            .stdin(ChildStdio::null())
            .stdout(ChildStdio::null())
            .stderr(ChildStdio::null())
            .status()
            .unwrap();
        runc.push(t.elapsed());
        assert!(st.success());
    }
    let mut berth = Vec::new();
    let mut berth_del = Vec::new();
    let mut phases: [Vec<Duration>; 4] = Default::default();
    for i in 0..N {
        let id = format!("t{i}");
        let t = Instant::now();
        env.rt
            .create(env.task(&id, &["/bin/true"], Stdio::default()))
            .unwrap();
        let t1 = Instant::now();
        env.rt.start(env.ns, &id, "").unwrap();
        let t2 = Instant::now();
        assert_eq!(env.rt.wait(env.ns, &id, "").unwrap().status, 0);
        let t3 = Instant::now();
        berth.push(t.elapsed());
        env.rt.delete(env.ns, &id, false).unwrap();
        berth_del.push(t.elapsed());
        for (p, d) in phases
            .iter_mut()
            .zip([t1 - t, t2 - t1, t3 - t2, t3.elapsed()])
        {
            p.push(d);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (r, b, d) = (
        median(&mut runc),
        median(&mut berth),
        median(&mut berth_del),
    );
    let [c, st, w, del] = phases.map(|mut p| median(&mut p));
    println!("berth phases (medians): create {c:?}, start {st:?}, wait {w:?}, delete {del:?}");
    println!(
        "latency of /bin/true, median of {N}: runc run {r:?}; berth create+start+wait {b:?} \
         ({:+.1} ms); with delete {d:?} ({:+.1} ms)",
        (b.as_secs_f64() - r.as_secs_f64()) * 1e3,
        (d.as_secs_f64() - r.as_secs_f64()) * 1e3,
    );
}

#[test]
fn a_created_task_is_killed_by_delete_and_ids_are_unique() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    // Ids at containerd's 76-character limit: the bundle path is too long for a socket
    // address, so the driver reaches the shim through /proc/self/fd.
    let id = "x".repeat(76);
    let created = env
        .rt
        .create(env.task(&id, &["sleep", "600"], Stdio::default()))
        .unwrap();
    assert!(
        env.rt
            .bundle(env.ns, &id)
            .join("shim.sock")
            .as_os_str()
            .len()
            > 108
    );
    assert!(matches!(
        env.rt.create(env.task(&id, &["true"], Stdio::default())),
        Err(berth_drivers::runtime::RuntimeError::AlreadyExists { .. })
    ));
    let st = env.rt.state(env.ns, &id).unwrap();
    assert_eq!(
        (st.init.pid, st.init.status),
        (created.pid, Status::Created)
    );
    assert_eq!(env.runc_status(&id), "created");
    // Deleting a created task kills its init: 137.
    let exit = env.rt.delete(env.ns, &id, false).unwrap().unwrap();
    assert_eq!((exit.pid, exit.status), (created.pid, 137));
    assert_eq!(env.runc_status(&id), "");
    // A failed create leaves nothing behind.
    let err = env
        .rt
        .create(env.task("nope", &["/bin/does-not-exist"], Stdio::default()))
        .and_then(|_| env.rt.start(env.ns, "nope", ""));
    println!("a process that cannot be executed: {err:?}");
    if err.is_ok() {
        // runc reports a missing binary at create (1.1) or start (later): either way the
        // task must end, with a failure status.
        assert_ne!(env.rt.wait(env.ns, "nope", "").unwrap().status, 0);
        env.rt.delete(env.ns, "nope", false).unwrap();
    } else if env.rt.bundle(env.ns, "nope").exists() {
        env.rt.delete(env.ns, "nope", true).unwrap();
    }
    assert!(!env.rt.bundle(env.ns, "nope").exists());
}

#[test]
fn overlay_rootfs_with_a_deep_layer_chain() {
    if !usable() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    // 150 layers whose absolute lowerdir paths take far more than a page: berth mounts them
    // from their common directory with relative paths (through `berth-shim mount`).
    let snaps = env.path("io.containerd.snapshotter.v1.overlayfs/snapshots");
    let layer = |n: usize| snaps.join(n.to_string()).join("fs");
    for n in 1..=150 {
        fs::create_dir_all(layer(n)).unwrap();
    }
    // The bottom layer is the image; a middle one adds a file.
    fs::remove_dir(layer(1)).unwrap();
    Command::new("cp")
        .arg("-a")
        .arg(&env.rootfs)
        .arg(layer(1))
        .status()
        .unwrap();
    fs::write(layer(75).join("marker"), "from layer 75\n").unwrap();
    for dir in ["upper", "work"] {
        fs::create_dir_all(snaps.join("151").join(dir)).unwrap();
    }
    let lower: Vec<String> = (1..=150)
        .rev()
        .map(|n| layer(n).to_str().unwrap().to_string())
        .collect();
    let deep = Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: vec![
            "index=off".into(),
            format!("workdir={}", snaps.join("151/work").display()),
            format!("upperdir={}", snaps.join("151/upper").display()),
            format!("lowerdir={}", lower.join(":")),
        ],
    };
    assert!(deep.data().len() > 4096);
    // And a short overlay, mounted in-process.
    for dir in ["s-upper", "s-work"] {
        fs::create_dir_all(env.path(dir)).unwrap();
    }
    let short = Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: vec![
            format!("workdir={}", env.path("s-work").display()),
            format!("upperdir={}", env.path("s-upper").display()),
            format!("lowerdir={}:{}", layer(75).display(), layer(1).display()),
        ],
    };
    for (id, mount) in [("deep", deep), ("short", short)] {
        let out = env.fifo(&format!("{id}-out"));
        let reader = read_all(out.clone());
        let mut task = env.task(
            id,
            &["sh", "-c", "cat /marker; echo written > /new"],
            Stdio {
                stdout: out.to_str().unwrap().into(),
                ..Stdio::default()
            },
        );
        task.rootfs = vec![mount];
        env.rt.create(task).unwrap();
        env.rt.start(env.ns, id, "").unwrap();
        assert_eq!(env.rt.wait(env.ns, id, "").unwrap().status, 0, "{id}");
        assert_eq!(reader.join().unwrap(), b"from layer 75\n", "{id}");
        env.rt.delete(env.ns, id, false).unwrap();
    }
    // The writes went to the upper directories; the layers are untouched and unmounted.
    assert_eq!(
        fs::read_to_string(snaps.join("151/upper/new")).unwrap(),
        "written\n"
    );
    assert_eq!(
        fs::read_to_string(env.path("s-upper/new")).unwrap(),
        "written\n"
    );
    assert!(!layer(1).join("new").exists());
}
