//! containerd's `ctr` 1.6 running containers on berthd through runc: `run --rm` (exit codes
//! propagate), `run -d`, `tasks ls|ps|exec|pause|resume|metrics|kill|rm`, the task events, and
//! supervision that survives `kill -9` of berthd; `run`'s options checked from inside the
//! container or on its cgroup (`--mount`, `--read-only`, `--null-io`, `--net-host`, `--cap-add`,
//! `--privileged`, `--memory-limit`, `--cpus`, `-t`, `--runc-binary` with crun).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cap_eff, cgroup_dir, host_cap_bnd, interfaces, wait_for};

fn walk_for(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir() {
            if let Some(f) = walk_for(&p, name) {
                return Some(f);
            }
        }
    }
    None
}

#[test]
fn ctr_run_and_tasks() {
    let (_reg, d, img) = common::busybox_berthd(true);
    let img = img.as_str();
    let events = d.ctr_events();

    // run --rm: output reaches the client, exit codes propagate
    let out = d.ctr_ok(&[
        "run",
        "--rm",
        img,
        "r1",
        "/bin/sh",
        "-c",
        "echo hello from berth",
    ]);
    assert_eq!(out.trim(), "hello from berth");
    let o = d.ctr(&["run", "--rm", img, "r2", "/bin/sh", "-c", "exit 3"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    d.ctr_ok(&["run", "--rm", img, "r3", "/bin/true"]);
    let out = d.ctr_ok(&[
        "run",
        "--rm",
        "--env",
        "GREETING=hi",
        "--cwd",
        "/etc",
        img,
        "r4",
        "/bin/sh",
        "-c",
        "echo $GREETING $(pwd)",
    ]);
    assert_eq!(out.trim(), "hi /etc");
    assert_eq!(
        d.ctr_ok(&["containers", "ls", "-q"]).trim(),
        "",
        "--rm removed them"
    );

    // run -d, then the tasks commands
    d.ctr_ok(&["run", "-d", img, "s1", "/bin/sh", "-c", "sleep 600"]);
    let ls = d.ctr_ok(&["tasks", "ls"]);
    assert!(ls.contains("s1") && ls.contains("RUNNING"), "{ls}");
    let ps = d.ctr_ok(&["tasks", "ps", "s1"]);
    assert!(ps.lines().count() >= 2, "{ps}");
    let o = d.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        "s1",
        "/bin/sh",
        "-c",
        "echo in the container; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4), "the exec's exit code propagates");
    assert!(String::from_utf8_lossy(&o.stdout).contains("in the container"));
    d.ctr_ok(&["tasks", "pause", "s1"]);
    assert!(d.ctr_ok(&["tasks", "ls"]).contains("PAUSED"));
    d.ctr_ok(&["tasks", "resume", "s1"]);
    assert!(d.ctr_ok(&["tasks", "ls"]).contains("RUNNING"));
    let m = d.ctr(&["tasks", "metrics", "s1"]);
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let e = d.ctr_err(&["tasks", "checkpoint", "s1"]);
    assert!(e.contains("CRIU") && e.contains("not implemented"), "{e}");
    assert!(
        d.ctr_ok(&["tasks", "ls"]).contains("RUNNING"),
        "a refused checkpoint changes nothing"
    );
    let e = d.ctr_err(&["tasks", "rm", "s1"]);
    assert!(e.contains("running") || e.contains("precondition"), "{e}");
    d.ctr_ok(&["tasks", "kill", "-a", "-s", "SIGKILL", "s1"]);
    wait_for("s1 to stop", || {
        d.ctr_ok(&["tasks", "ls"]).contains("STOPPED")
    });
    d.ctr_ok(&["tasks", "rm", "s1"]);
    d.ctr_ok(&["containers", "rm", "s1"]);

    let ev = common::events_output(events);
    for topic in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exec-added",
        "/tasks/exec-started",
    ] {
        assert!(ev.contains(topic), "event {topic} missing:\n{ev}");
    }
}

#[test]
fn tasks_survive_kill_9_of_berthd() {
    let (_reg, mut d, img) = common::busybox_berthd(true);
    let img = img.as_str();

    // five containers; c0 prints a line every 100 ms to its stdout FIFO; c4 exits while
    // berthd is down. ctr (the FIFOs' creator) ends when berthd dies; a second reader on c0's
    // stdout FIFO, opened here, stands for the client that keeps reading.
    let fifo_dir = tempfile::tempdir().unwrap();
    let mut follower = d
        .ctr_cmd(&[
            "run",
            "--fifo-dir",
            fifo_dir.path().to_str().unwrap(),
            img,
            "c0",
            "/bin/sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut fifo = None;
    wait_for("c0's stdout FIFO", || {
        fifo = walk_for(fifo_dir.path(), "c0-stdout");
        fifo.is_some()
    });
    let reader = std::fs::File::open(fifo.unwrap()).unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Instant, String)>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(reader).lines() {
            let Ok(l) = l else { break };
            sink.lock().unwrap().push((Instant::now(), l));
        }
    });
    for i in 1..4 {
        d.ctr_ok(&[
            "run",
            "-d",
            img,
            &format!("c{i}"),
            "/bin/sh",
            "-c",
            "sleep 600",
        ]);
    }
    d.ctr_ok(&["run", "-d", img, "c4", "/bin/sh", "-c", "sleep 1; exit 7"]);
    wait_for("five running tasks", || {
        d.ctr_ok(&["tasks", "ls"]).matches("RUNNING").count() == 5
    });

    d.kill9();
    std::thread::sleep(Duration::from_millis(1500)); // c4 exits meanwhile
    d.restart();

    let ls = d.ctr_ok(&["tasks", "ls"]);
    for i in 0..4 {
        assert!(
            ls.lines()
                .any(|l| l.starts_with(&format!("c{i} ")) && l.contains("RUNNING")),
            "c{i} still runs after the restart:\n{ls}\n{}",
            d.log()
        );
    }
    assert!(
        ls.lines()
            .any(|l| l.starts_with("c4 ") && l.contains("STOPPED")),
        "{ls}"
    );
    let e = d.ctr(&["tasks", "delete", "c4"]);
    let msg = String::from_utf8_lossy(&e.stdout).to_string() + &String::from_utf8_lossy(&e.stderr);
    assert!(
        msg.contains('7'),
        "c4's exit status 7, recorded while berthd was down: {msg}"
    );

    // c0's output still reaches its reader after the restart
    let restarted = Instant::now();
    std::thread::sleep(Duration::from_millis(800));
    let after = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| *t > restarted)
        .count();
    assert!(
        after >= 3,
        "c0's output kept flowing after the restart ({after} lines)"
    );
    d.ctr_ok(&["tasks", "kill", "-s", "SIGKILL", "c0"]);
    let _ = follower.kill();
    let _ = follower.wait();

    for i in 1..4 {
        d.ctr_ok(&["tasks", "kill", "-s", "SIGKILL", &format!("c{i}")]);
    }
    for i in 0..4 {
        let id = format!("c{i}");
        wait_for("the kill", || {
            !d.ctr_ok(&["tasks", "ls"])
                .lines()
                .any(|l| l.starts_with(&format!("{id} ")) && l.contains("RUNNING"))
        });
        let _ = d.ctr(&["tasks", "rm", &id]);
    }
    for i in 0..5 {
        let _ = d.ctr(&["containers", "rm", &format!("c{i}")]);
    }
}

#[test]
fn ctr_run_options() {
    let (_reg, d, img) = common::busybox_berthd(true);
    let img = img.as_str();

    // --mount: a bind mount, written through, then read-only
    let host = tempfile::tempdir().unwrap();
    let rw = format!(
        "type=bind,src={},dst=/data,options=rbind:rw",
        host.path().display()
    );
    d.ctr_ok(&[
        "run",
        "--rm",
        "--mount",
        &rw,
        img,
        "m1",
        "/bin/sh",
        "-c",
        "echo hi > /data/f",
    ]);
    assert_eq!(
        std::fs::read_to_string(host.path().join("f")).unwrap(),
        "hi\n"
    );
    let ro = format!(
        "type=bind,src={},dst=/data,options=rbind:ro",
        host.path().display()
    );
    let o = d.ctr(&["run", "--rm", "--mount", &ro, img, "m2", "touch", "/data/g"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!host.path().join("g").exists());

    // --read-only root
    d.ctr_ok(&["run", "--rm", img, "w1", "touch", "/x"]);
    let o = d.ctr(&["run", "--rm", "--read-only", img, "w2", "touch", "/x"]);
    assert_eq!(o.status.code(), Some(1));

    // --null-io: the output goes nowhere
    let o = d.ctr_ok(&["run", "--rm", "--null-io", img, "n1", "echo", "lost"]);
    assert_eq!(o, "");

    // --net-host: the host's interfaces; by default only lo
    let host_ifs = interfaces(&std::fs::read_to_string("/proc/net/dev").unwrap());
    let inside = d.ctr_ok(&[
        "run",
        "--rm",
        "--net-host",
        img,
        "h1",
        "cat",
        "/proc/net/dev",
    ]);
    assert_eq!(interfaces(&inside), host_ifs);
    let inside = d.ctr_ok(&["run", "--rm", img, "h2", "cat", "/proc/net/dev"]);
    assert_eq!(interfaces(&inside), vec!["lo".to_string()]);

    // --cap-add, --privileged
    let grep = ["grep", "CapEff", "/proc/self/status"];
    let default = cap_eff(&d.ctr_ok(&[&["run", "--rm", img, "c1"][..], &grep].concat()));
    assert_eq!(default & (1 << 12), 0, "no CAP_NET_ADMIN by default");
    let added = cap_eff(
        &d.ctr_ok(
            &[
                &["run", "--rm", "--cap-add", "CAP_NET_ADMIN", img, "c2"][..],
                &grep,
            ]
            .concat(),
        ),
    );
    assert_eq!(added, default | (1 << 12));
    let bnd = host_cap_bnd();
    let privileged =
        cap_eff(&d.ctr_ok(&[&["run", "--rm", "--privileged", img, "c3"][..], &grep].concat()));
    assert_eq!(privileged, bnd);

    // --memory-limit, --cpus: the container's cgroup on the host
    d.ctr_ok(&[
        "run",
        "-d",
        "--memory-limit",
        "67108864",
        "--cpus",
        "0.5",
        img,
        "lim",
        "sleep",
        "600",
    ]);
    let cg = d.ctr_ok(&[
        "tasks",
        "exec",
        "--exec-id",
        "cg",
        "lim",
        "cat",
        "/proc/self/cgroup",
    ]);
    let mem = std::fs::read_to_string(format!(
        "{}/memory.limit_in_bytes",
        cgroup_dir(&cg, "memory")
    ))
    .unwrap();
    assert_eq!(mem.trim(), "67108864");
    let quota =
        std::fs::read_to_string(format!("{}/cpu.cfs_quota_us", cgroup_dir(&cg, "cpu"))).unwrap();
    assert_eq!(quota.trim(), "50000");
    d.ctr_ok(&["tasks", "kill", "-s", "SIGKILL", "lim"]);
    d.wait_stopped("lim");
    d.ctr_ok(&["tasks", "rm", "lim"]);
    d.ctr_ok(&["containers", "rm", "lim"]);

    // a process killed by the OOM killer: /tasks/oom, then the exit
    let events = d.ctr_events();
    let o = d.ctr(&[
        "run",
        "--rm",
        "--memory-limit",
        "16777216",
        img,
        "oom1",
        "/bin/sh",
        "-c",
        "head -c 64m /dev/zero | sort > /dev/null",
    ]);
    assert_eq!(o.status.code(), Some(137), "sort was OOM-killed");
    std::thread::sleep(Duration::from_millis(300));
    let ev = common::events_output(events);
    let oom = ev
        .lines()
        .position(|l| l.contains("/tasks/oom") && l.contains("oom1"));
    let exit = ev
        .lines()
        .position(|l| l.contains("/tasks/exit") && l.contains("oom1"));
    assert!(
        oom.is_some() && oom < exit,
        "no /tasks/oom before the exit:\n{ev}"
    );
    let reported = ev
        .lines()
        .filter(|l| l.contains("/tasks/oom") && l.contains("oom1"))
        .count();
    assert_eq!(reported, 1, "one OOM, reported once:\n{ev}");

    // an OOM that the task survives (a child of its init is killed): /tasks/oom at once, not at
    // the task's exit, as containerd reports it
    let mut events = d.ctr_events();
    let lines = {
        let (tx, rx) = std::sync::mpsc::channel();
        let out = events.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        rx
    };
    d.ctr_ok(&[
        "run",
        "-d",
        "--memory-limit",
        "16777216",
        img,
        "oom2",
        "/bin/sh",
        "-c",
        "head -c 64m /dev/zero | sort > /dev/null; sleep 600",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("/tasks/oom") && l.contains("oom2"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!(
                "no /tasks/oom for oom2 within 30 s:\n{}\n{}\n{}",
                seen.join("\n"),
                d.ctr_ok(&["tasks", "ls"]),
                d.log()
            ),
        }
    }
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("/tasks/exit") && l.contains("oom2")),
        "{seen:?}"
    );
    let ls = d.ctr_ok(&["tasks", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("oom2 ") && l.contains("RUNNING")),
        "the task survives its child's OOM:\n{ls}"
    );
    d.ctr_ok(&["tasks", "kill", "-s", "SIGKILL", "oom2"]);
    d.wait_stopped("oom2");
    d.ctr_ok(&["tasks", "rm", "oom2"]);
    d.ctr_ok(&["containers", "rm", "oom2"]);
    let _ = events.kill();
    let _ = events.wait();

    // -t: ctr needs a terminal of its own, which script(1) gives it
    common::require("script", "bsdutils");
    let ctr_line = format!(
        "ctr --address {} run --rm -t {img} t1 /bin/sh -c '[ -t 1 ] && echo is-a-tty'",
        d.sock.display()
    );
    let o = Command::new("script")
        .args(["-qec", &ctr_line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("is-a-tty"));

    // --runc-binary: crun, through a wrapper that hides cgroup v2's hybrid mount from it
    // (crun 1.8 refuses this machine's hybrid layout) and leaves a trace that it ran.
    common::require("crun", "crun");
    let bin = tempfile::tempdir().unwrap();
    let trace = bin.path().join("trace");
    let wrapper = bin.path().join("crun-v1");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec unshare --mount --propagation private sh -c \
             'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec crun \"$@\"' crun \"$@\"\n",
            trace.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&wrapper)
        .status()
        .unwrap();
    let o = d.ctr_ok(&[
        "run",
        "--rm",
        "--runc-binary",
        wrapper.to_str().unwrap(),
        img,
        "cr1",
        "/bin/sh",
        "-c",
        "echo via crun; exit 0",
    ]);
    assert_eq!(o.trim(), "via crun");
    let o = d.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        wrapper.to_str().unwrap(),
        img,
        "cr2",
        "/bin/sh",
        "-c",
        "exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5));
    let calls = std::fs::read_to_string(&trace).unwrap();
    assert!(
        calls.lines().any(|l| l.contains(" create ")),
        "crun was not used: {calls:?}"
    );
    assert_eq!(d.ctr_ok(&["containers", "ls", "-q"]).trim(), "");
}
