//! The `berth` CLI's container, task and events commands against a real berthd running real
//! containers (started with containerd's `ctr run -d`, run by runc under berth-shim): what
//! berth shows agrees with what ctr shows, its changes are visible to ctr, its failures have
//! the documented exit codes and messages, and `berth events` sees the changes happen.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_for, Berthd};

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs berth, expecting success; returns stdout.
fn ok(d: &Berthd, args: &[&str]) -> String {
    let o = d.berth(args);
    assert!(
        o.status.success(),
        "berth {args:?} failed: {}\n--- berthd log ---\n{}",
        show(&o),
        d.log()
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs berth, expecting exit code `code`; returns stderr.
fn fails(d: &Berthd, code: i32, args: &[&str]) -> String {
    let o = d.berth(args);
    assert_eq!(o.status.code(), Some(code), "berth {args:?}: {}", show(&o));
    String::from_utf8(o.stderr).unwrap()
}

fn json(d: &Berthd, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(d, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("berth {all:?}: {e}:\n{out}"))
}

/// The STATUS column of task `id` in `berth task ls`.
fn task_status(d: &Berthd, id: &str) -> Option<String> {
    ok(d, &["task", "ls"]).lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.first() == Some(&id)).then(|| cols[2].to_string())
    })
}

/// The pids (first column after the header) of a `… ps` table.
fn pids(table: &str) -> Vec<u32> {
    let mut v: Vec<u32> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// `berth events` in the background, its output lines collected by a thread.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    fn start(d: &Berthd, args: &[&str]) -> Follower {
        let mut child = Command::new(common::berth_bin())
            .arg("--address")
            .arg(&d.sock)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                sink.lock().unwrap().push(l);
            }
        });
        Follower { child, lines }
    }

    fn seen(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Stops the follower; returns what it printed.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100)); // the reader drains the pipe
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every follower is subscribed: changes a namespace label until each has seen
/// the `/namespaces/update` event.
fn subscribed(d: &Berthd, followers: &[&Follower]) {
    let mut i = 0;
    wait_for("berth events to subscribe", || {
        i += 1;
        d.ctr_ok(&["namespaces", "label", "default", &format!("probe={i}")]);
        std::thread::sleep(Duration::from_millis(50));
        followers.iter().all(|f| f.seen("/namespaces/update"))
    });
}

#[test]
fn berth_containers_tasks_and_events() {
    // berth_bin() rebuilds the CLI once per test binary, so the commands under test are current
    common::berth_bin();
    let (_reg, d, img) = common::busybox_berthd(true);
    let img = img.as_str();

    let events = Follower::start(&d, &["events"]);
    let paused_json = Follower::start(
        &d,
        &[
            "--json",
            "events",
            "topic==\"/tasks/paused\"",
            "topic==\"/namespaces/update\"",
        ],
    );
    subscribed(&d, &[&events, &paused_json]);

    d.ctr_ok(&["run", "-d", img, "s1", "/bin/sh", "-c", "sleep 600"]);

    // containers: ls (and its aliases), -q, --json
    let ls = ok(&d, &["container", "ls"]);
    let header: Vec<&str> = ls.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "IMAGE", "RUNTIME"], "{ls}");
    let row: Vec<&str> = ls.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["s1", img, "io.containerd.runc.v2"], "{ls}");
    assert_eq!(ok(&d, &["containers", "ls", "-q"]), "s1\n");
    assert_eq!(ok(&d, &["c", "ls", "-q"]), "s1\n");
    let v = json(&d, &["container", "ls"]);
    assert_eq!(v[0]["id"], "s1");
    assert_eq!(v[0]["image"], img);

    // tasks: ls shows the running init with the pid ctr reports
    let ctr_ls = d.ctr_ok(&["tasks", "ls"]);
    let ctr_pid = ctr_ls
        .lines()
        .find(|l| l.starts_with("s1 "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_string();
    let ls = ok(&d, &["task", "ls"]);
    let header: Vec<&str> = ls.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["TASK", "PID", "STATUS"], "{ls}");
    let row: Vec<&str> = ls.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["s1", ctr_pid.as_str(), "RUNNING"], "{ls}");
    assert_eq!(ok(&d, &["tasks", "ls", "-q"]), "s1\n");
    assert_eq!(ok(&d, &["t", "ls", "-q"]), "s1\n");
    let v = json(&d, &["task", "ls"]);
    assert_eq!(v[0]["status"], "running");
    assert_eq!(v[0]["pid"].to_string(), ctr_pid);

    // ps: the pids ctr lists
    let ps = ok(&d, &["task", "ps", "s1"]);
    assert_eq!(
        ps.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["PID", "INFO"]
    );
    assert!(!pids(&ps).is_empty(), "{ps}");
    assert_eq!(pids(&ps), pids(&d.ctr_ok(&["tasks", "ps", "s1"])), "{ps}");
    assert!(pids(&ps).contains(&ctr_pid.parse().unwrap()), "{ps}");

    // pause and resume
    ok(&d, &["task", "pause", "s1"]);
    assert_eq!(task_status(&d, "s1").as_deref(), Some("PAUSED"));
    assert!(d.ctr_ok(&["tasks", "ls"]).contains("PAUSED"));
    ok(&d, &["task", "resume", "s1"]);
    assert_eq!(task_status(&d, "s1").as_deref(), Some("RUNNING"));

    // metrics: a table for people, the decoded cgroup metrics with --json
    let m = ok(&d, &["task", "metrics", "s1"]);
    for row in ["memory usage", "cpu usage total", "pids current"] {
        assert!(m.contains(row), "{row} missing:\n{m}");
    }
    let v = json(&d, &["task", "metrics", "s1"]);
    assert_eq!(v["id"], "s1");
    let usage = v["metrics"]["memory"]["usage"]["usage"]
        .as_u64()
        .unwrap_or(0);
    assert!(usage > 0, "memory usage is zero: {v}");
    assert!(
        v["metrics"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{v}"
    );

    // removing a running task or its container is refused, naming why
    let e = fails(&d, 1, &["task", "rm", "s1"]);
    assert!(e.contains("running") && e.contains("-f"), "{e}");
    let e = fails(&d, 1, &["container", "rm", "s1"]);
    assert!(e.contains("running"), "{e}");
    assert!(d.ctr_ok(&["containers", "ls", "-q"]).contains("s1"));

    // labels: set, shown by info (with the spec decoded), removed with key=
    let out = ok(&d, &["container", "label", "s1", "team=infra", "tier=web"]);
    assert!(out.contains("team=infra,tier=web"), "{out}");
    let info = json(&d, &["container", "info", "s1"]);
    assert_eq!(info["labels"]["team"], "infra", "{info}");
    assert_eq!(info["runtime"]["name"], "io.containerd.runc.v2");
    assert!(
        info["spec"]["process"]["args"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "sleep 600")),
        "the spec is decoded: {info}"
    );
    ok(&d, &["container", "label", "s1", "tier="]);
    let info = json(&d, &["container", "info", "s1"]);
    assert_eq!(info["labels"]["team"], "infra");
    assert!(info["labels"].get("tier").is_none(), "{info}");
    let snapshotter = info["snapshotter"].as_str().unwrap().to_string();
    let snapshot_key = info["snapshot_key"].as_str().unwrap().to_string();
    assert!(!snapshot_key.is_empty(), "{info}");
    assert!(d
        .ctr_ok(&["snapshots", "--snapshotter", &snapshotter, "ls"])
        .contains(&snapshot_key));

    // usage errors exit 2
    fails(&d, 2, &["task", "kill"]);
    fails(&d, 2, &["task", "kill", "-s", "SIGNOPE", "s1"]);
    fails(&d, 2, &["task", "kill", "-a", "--exec-id", "e1", "s1"]);
    fails(&d, 2, &["container", "label", "s1"]);
    let e = fails(&d, 2, &["container", "label", "s1", "novalue"]);
    assert!(e.contains("key=value"), "{e}");
    fails(&d, 2, &["task", "frobnicate"]);

    // unknown ids exit 1 and say "not found"
    for args in [
        &["task", "pause", "nope"][..],
        &["task", "kill", "nope"],
        &["task", "ps", "nope"],
        &["task", "metrics", "nope"],
        &["task", "rm", "nope"],
        &["container", "info", "nope"],
        &["container", "rm", "nope"],
    ] {
        let e = fails(&d, 1, args);
        assert!(
            e.contains("not found") && e.contains("\"nope\""),
            "{args:?}: {e}"
        );
    }

    // kill -s SIGKILL stops it; rm then removes the task
    ok(&d, &["task", "kill", "-s", "SIGKILL", "s1"]);
    wait_for("s1 to stop", || {
        task_status(&d, "s1").as_deref() == Some("STOPPED")
    });
    let v = json(&d, &["task", "ls"]);
    assert_eq!(v[0]["status"], "stopped");
    assert_eq!(v[0]["exit_status"], 137, "{v}");
    assert_eq!(ok(&d, &["task", "rm", "s1"]), "s1\n");
    assert_eq!(ok(&d, &["task", "ls", "-q"]), "");

    // container rm removes the record and its rootfs snapshot
    assert_eq!(ok(&d, &["container", "rm", "s1"]), "s1\n");
    assert!(!d.ctr_ok(&["containers", "ls", "-q"]).contains("s1"));
    assert!(
        !d.ctr_ok(&["snapshots", "--snapshotter", &snapshotter, "ls"])
            .contains(&snapshot_key),
        "the container's snapshot {snapshot_key} is gone"
    );

    // rm -f of a running (here: paused) task kills it, waits and removes it
    d.ctr_ok(&["run", "-d", img, "s2", "/bin/sh", "-c", "sleep 600"]);
    ok(&d, &["task", "pause", "s2"]);
    let v = json(&d, &["task", "rm", "-f", "s2"]);
    assert_eq!(v[0]["id"], "s2");
    assert_eq!(v[0]["exit_status"], 137, "{v}");
    assert_eq!(ok(&d, &["task", "ls", "-q"]), "");
    // a container whose task has stopped goes with its task, as with ctr
    d.ctr_ok(&["run", "-d", img, "s3", "/bin/sh", "-c", "exit 0"]);
    wait_for("s3 to stop", || {
        task_status(&d, "s3").as_deref() == Some("STOPPED")
    });
    assert_eq!(
        ok(&d, &["--json", "container", "rm", "s2", "s3"])
            .split_whitespace()
            .collect::<String>(),
        r#"["s2","s3"]"#
    );
    assert_eq!(d.ctr_ok(&["containers", "ls", "-q"]).trim(), "");
    assert_eq!(d.ctr_ok(&["tasks", "ls", "-q"]).trim(), "");

    // the events, as berth events showed them
    wait_for("the last events", || {
        events.seen(r#"/containers/delete {"id":"s3"}"#)
    });
    let lines = events.stop();
    let all = lines.join("\n");
    for (topic, payload) in [
        ("/containers/create", r#""id":"s1""#),
        ("/tasks/create", r#""container_id":"s1""#),
        ("/tasks/start", r#""container_id":"s1""#),
        ("/tasks/paused", r#"{"container_id":"s1"}"#),
        ("/tasks/resumed", r#"{"container_id":"s1"}"#),
        ("/containers/update", r#""team":"infra""#),
        ("/tasks/exit", r#""exit_status":137"#),
        ("/tasks/delete", r#""container_id":"s1""#),
        ("/containers/delete", r#"{"id":"s1"}"#),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.split_whitespace().nth(2) == Some(topic) && l.contains(payload)),
            "event {topic} with {payload} missing:\n{all}"
        );
    }
    for l in &lines {
        let cols: Vec<&str> = l.splitn(4, ' ').collect();
        assert_eq!(cols.len(), 4, "TIMESTAMP NAMESPACE TOPIC EVENT: {l}");
        assert!(cols[0].ends_with('Z') && cols[0].contains('T'), "{l}");
        assert_eq!(cols[1], "default", "{l}");
    }

    // --json with filters: one object per line, only the topics asked for
    let lines = paused_json.stop();
    let mut paused = Vec::new();
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let topic = v["topic"].as_str().unwrap();
        assert!(
            topic == "/tasks/paused" || topic == "/namespaces/update",
            "{l}"
        );
        if topic == "/tasks/paused" {
            assert_eq!(v["type_url"], "containerd.events.TaskPaused", "{l}");
            paused.push(v["event"]["container_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(paused, ["s1", "s2"], "{lines:?}");
}
