//! `berth run` and `berth task exec` against a real berthd, runc and registry: the image is
//! pulled when missing, output and exit codes pass through, and each option reaches the
//! container (checked from inside it: environment, user, mounts, read-only root, host
//! network, cgroup limits, capabilities, terminal, stdin).

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{berth_bin, Berthd};

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs berth expecting success; its stdout.
fn ok(d: &Berthd, args: &[&str]) -> String {
    let o = d.berth(args);
    assert!(o.status.success(), "berth {args:?} failed: {}", err(&o));
    out(&o)
}

/// `CapEff` of the process `sh` runs as in the container, as a bit mask.
fn cap_eff(d: &Berthd, opts: &[&str], img: &str) -> u64 {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[img, "grep", "CapEff", "/proc/self/status"]);
    common::cap_eff(&ok(d, &args))
}

#[test]
fn berth_run_options_reach_the_container() {
    let (_reg, d, img) = common::busybox_berthd(false);
    let img = img.as_str();

    // Not pulled yet: run pulls it; output reaches stdout; the exit code passes through.
    let o = d.berth(&["run", "--rm", img, "/bin/sh", "-c", "echo hello from berth"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "hello from berth");
    let o = d.berth(&[
        "run",
        "--rm",
        img,
        "/bin/sh",
        "-c",
        "echo to-stderr >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert_eq!(
        err(&o).trim(),
        "to-stderr",
        "nothing but the container's stderr"
    );
    assert!(ok(&d, &["image", "ls", "-q"]).contains(img));

    // Environment, working directory, user and groups from the image's /etc/passwd, /etc/group.
    let o = ok(
        &d,
        &[
            "run",
            "--rm",
            "-e",
            "A=1",
            "-w",
            "/etc",
            "-u",
            "app",
            img,
            "/bin/sh",
            "-c",
            "echo $A $PWD $(id -u) $(id -G)",
        ],
    );
    assert_eq!(o.trim(), "1 /etc 1000 1000 50");
    assert_eq!(ok(&d, &["run", "--rm", img, "id", "-u"]).trim(), "0");

    // Bind mounts, read-write and read-only.
    let host = tempfile::tempdir().unwrap();
    let rw = format!(
        "type=bind,src={},dst=/data,options=rbind:rw",
        host.path().display()
    );
    ok(
        &d,
        &[
            "run",
            "--rm",
            "--mount",
            &rw,
            img,
            "/bin/sh",
            "-c",
            "echo written > /data/f",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("f")).unwrap(),
        "written\n"
    );
    let ro = format!(
        "type=bind,src={},dst=/data,options=rbind:ro",
        host.path().display()
    );
    let o = d.berth(&[
        "run",
        "--rm",
        "--mount",
        &ro,
        img,
        "/bin/sh",
        "-c",
        "cat /data/f; echo x > /data/g",
    ]);
    assert_eq!(o.status.code(), Some(1), "a read-only mount refuses writes");
    assert_eq!(out(&o).trim(), "written");
    assert!(!host.path().join("g").exists());

    // Read-only root.
    assert!(d
        .berth(&["run", "--rm", img, "touch", "/x"])
        .status
        .success());
    let o = d.berth(&["run", "--rm", "--read-only", img, "touch", "/x"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));

    // Host network: the host's interfaces; otherwise only lo.
    let names = common::interfaces;
    let host_ifs = names(&std::fs::read_to_string("/proc/net/dev").unwrap());
    let inside = names(&ok(
        &d,
        &["run", "--rm", "--net", "host", img, "cat", "/proc/net/dev"],
    ));
    assert_eq!(inside, host_ifs);
    let private = names(&ok(&d, &["run", "--rm", img, "cat", "/proc/net/dev"]));
    assert_eq!(private, vec!["lo".to_string()]);
    let e = d.berth(&["run", "--rm", "--net", "bridge", img, "true"]);
    assert_eq!(e.status.code(), Some(2), "{}", err(&e));

    // cgroup limits: the container's own cgroup (named in its /proc/self/cgroup) on the host.
    ok(
        &d,
        &[
            "run", "-d", "--name", "lim", "--memory", "64m", "--cpus", "0.5", img, "sleep", "600",
        ],
    );
    let cgroups = ok(&d, &["task", "exec", "lim", "cat", "/proc/self/cgroup"]);
    let mem = std::fs::read_to_string(format!(
        "{}/memory.limit_in_bytes",
        common::cgroup_dir(&cgroups, "memory")
    ))
    .unwrap();
    assert_eq!(mem.trim(), (64u64 << 20).to_string());
    let quota = std::fs::read_to_string(format!(
        "{}/cpu.cfs_quota_us",
        common::cgroup_dir(&cgroups, "cpu")
    ))
    .unwrap();
    assert_eq!(quota.trim(), "50000");
    d.ctr_ok(&["tasks", "kill", "-s", "SIGKILL", "lim"]);
    d.wait_stopped("lim");
    d.ctr_ok(&["tasks", "rm", "lim"]);
    d.ctr_ok(&["containers", "rm", "lim"]);
    let e = d.berth(&["run", "--rm", "--cpus", "lots", img, "true"]);
    assert_eq!(e.status.code(), Some(2), "{}", err(&e));

    // Capabilities: the default set lacks NET_ADMIN (12); --cap-add adds it; --privileged
    // gives the bounding set this test runs with.
    let default = cap_eff(&d, &[], img);
    assert_eq!(default & (1 << 12), 0);
    let added = cap_eff(&d, &["--cap-add", "NET_ADMIN"], img);
    assert_eq!(added, default | (1 << 12));
    assert_eq!(cap_eff(&d, &["--privileged"], img), common::host_cap_bnd());

    // A terminal; stdin.
    let o = ok(
        &d,
        &[
            "run",
            "--rm",
            "-t",
            img,
            "/bin/sh",
            "-c",
            "[ -t 1 ] && echo is-a-tty",
        ],
    );
    assert_eq!(o.trim(), "is-a-tty");
    let o = ok(
        &d,
        &[
            "run",
            "--rm",
            img,
            "/bin/sh",
            "-c",
            "[ -t 1 ] || echo no-tty",
        ],
    );
    assert_eq!(o.trim(), "no-tty");
    let mut child = Command::new(berth_bin())
        .arg("--address")
        .arg(&d.sock)
        .args(["run", "--rm", "-i", img, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped through\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(out(&o), "piped through\n");

    // Everything run with --rm is gone: containers and their snapshots.
    assert_eq!(d.ctr_ok(&["containers", "ls", "-q"]).trim(), "");
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    assert!(!snaps.contains("Active"), "{snaps}");

    // -d, then exec into it.
    let id = ok(&d, &["run", "-d", "--name", "s1", img, "sleep", "600"]);
    assert_eq!(id.trim(), "s1");
    assert!(d.ctr_ok(&["tasks", "ls"]).contains("RUNNING"));
    let o = d.berth(&["task", "exec", "s1", "/bin/sh", "-c", "echo inside; exit 4"]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert_eq!(out(&o).trim(), "inside");
    assert_eq!(
        ok(&d, &["task", "exec", "-u", "app", "s1", "id", "-u"]).trim(),
        "1000"
    );
    let e = d.berth(&["run", "-d", "--name", "s1", img, "true"]);
    assert_eq!(e.status.code(), Some(1));
    assert!(err(&e).contains("already exists"), "{}", err(&e));
    d.ctr_ok(&["tasks", "kill", "-s", "SIGKILL", "s1"]);
    d.wait_stopped("s1");
    d.ctr_ok(&["tasks", "rm", "s1"]);
    d.ctr_ok(&["containers", "rm", "s1"]);

    // Without --rm the container stays (its task does not).
    ok(&d, &["run", "--name", "kept", img, "true"]);
    assert_eq!(d.ctr_ok(&["containers", "ls", "-q"]).trim(), "kept");
    assert!(!d.ctr_ok(&["tasks", "ls"]).contains("kept"));

    // An image that cannot be pulled: a clear failure, nothing left behind.
    let e = d.berth(&["run", "--rm", "127.0.0.1:1/nothing:here", "true"]);
    assert_eq!(e.status.code(), Some(1), "{}", err(&e));
    assert_eq!(d.ctr_ok(&["containers", "ls", "-q"]).trim(), "kept");
}
