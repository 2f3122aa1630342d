//! End-to-end tests of the `berth` CLI against a real `berthd` from this workspace.
//!
//! Each test starts its own berthd (see `common/mod.rs`: where the daemon binary comes from,
//! and why to build the workspace before running these tests on their own) and kills it when
//! done.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_core::digest::Hasher;
use berth_core::{Algorithm, Digest};
use common::{stderr, Daemon, CLI};
use serde_json::Value;

/// Deterministic pseudo-random bytes (xorshift64*), so files do not compress or repeat.
fn write_random_file(path: &Path, len: usize, seed: u64) -> Digest {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        for chunk in buf[..n].chunks_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        h.update(&buf[..n]);
        f.write_all(&buf[..n]).expect("write");
        left -= n;
    }
    f.flush().expect("flush");
    h.digest()
}

fn poll_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ingest with `reference` in `berth content active --json`, if any.
fn active(d: &Daemon, reference: &str) -> Option<Value> {
    d.json(&["content", "active"])
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["ref"] == reference)
        .cloned()
}

#[test]
fn version_reports_client_and_server() {
    let d = Daemon::start();
    let text = d.ok(&["version"]);
    assert!(
        text.contains("Client:") && text.contains("Server:"),
        "{text}"
    );
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    let v = d.json(&["version"]);
    assert_eq!(v["client"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(!v["server"]["version"].as_str().unwrap().is_empty());
    let uuid = v["server"]["uuid"].as_str().unwrap();
    assert_eq!(uuid.len(), 36, "uuid {uuid}");
    assert!(text.contains(uuid), "{text}");
}

#[test]
fn namespaces_create_label_list_remove() {
    let d = Daemon::start();
    assert_eq!(
        d.ok(&["ns", "create", "team-a", "owner=me", "tier=gold"]),
        "team-a\n"
    );
    let ls = d.ok(&["ns", "ls"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("LABELS"),
        "{ls}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("team-a") && l.ends_with("owner=me,tier=gold")),
        "{ls}"
    );

    // set one label, delete another (empty value)
    d.ok(&["ns", "label", "team-a", "tier=", "zone=eu"]);
    let list = d.json(&["ns", "ls"]);
    let ns = list
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "team-a")
        .expect("team-a listed");
    assert_eq!(
        ns["labels"],
        serde_json::json!({"owner": "me", "zone": "eu"})
    );

    // duplicates and bad names are errors with exit code 1
    let dup = d.run(&["ns", "create", "team-a"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));
    let bad = d.run(&["ns", "create", "bad..name"]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));

    // a namespace that holds content cannot be removed
    let f = d.path("small");
    std::fs::write(&f, b"hello").unwrap();
    d.ok(&["-n", "team-a", "content", "ingest", f.to_str().unwrap()]);
    let busy = d.run(&["ns", "rm", "team-a"]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(stderr(&busy).contains("not empty"), "{}", stderr(&busy));
    d.ok(&[
        "-n",
        "team-a",
        "content",
        "rm",
        &Digest::sha256(b"hello").to_string(),
    ]);

    assert_eq!(d.ok(&["ns", "rm", "team-a"]), "team-a\n");
    let list = d.json(&["ns", "ls"]);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["name"] != "team-a"));
    let missing = d.run(&["ns", "rm", "team-a"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn content_ingest_list_get_label_remove() {
    let d = Daemon::start();
    let file = d.path("blob5m");
    let want = write_random_file(&file, 5 << 20, 7);
    let digest = d.ok(&[
        "content",
        "ingest",
        file.to_str().unwrap(),
        "--label",
        "k=v",
    ]);
    assert_eq!(digest.trim(), want.to_string());
    let ds = want.to_string();

    let ls = d.ok(&["content", "ls"]);
    assert!(ls.lines().next().unwrap().starts_with("DIGEST"), "{ls}");
    let row = ls.lines().find(|l| l.starts_with(&ds)).expect("listed");
    assert!(row.contains("5.0 MiB") && row.contains("k=v"), "{row}");
    let infos = d.json(&["content", "ls"]);
    assert_eq!(infos[0]["digest"], ds.as_str());
    assert_eq!(infos[0]["size"], 5 << 20);
    assert_eq!(infos[0]["labels"]["k"], "v");
    assert!(infos[0]["created_at"].as_str().unwrap().ends_with('Z'));

    // get reproduces the bytes exactly, to stdout and to a file
    let got = d.run(&["content", "get", &ds]);
    assert!(got.status.success(), "{}", stderr(&got));
    assert!(
        got.stdout == std::fs::read(&file).unwrap(),
        "get differs from the file"
    );
    let out = d.path("copy");
    d.ok(&["content", "get", &ds, "-o", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&file).unwrap());

    // the same content again: already present, exit 0 (with and without --expected)
    let again = d.run(&[
        "content",
        "ingest",
        file.to_str().unwrap(),
        "--expected",
        &ds,
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already present"),
        "{}",
        stderr(&again)
    );
    let again = d.json(&["content", "ingest", file.to_str().unwrap()]);
    assert_eq!(again["status"], "already present");
    assert_eq!(again["digest"], ds.as_str());

    // labels: set one, delete one
    d.ok(&["content", "label", &ds, "k=", "role=test"]);
    let infos = d.json(&["content", "ls"]);
    assert_eq!(infos[0]["labels"], serde_json::json!({"role": "test"}));

    // a blob damaged on disk fails verification, and -o leaves no file behind
    let blob = d
        .path("root/content/blobs/sha256")
        .join(ds.trim_start_matches("sha256:"));
    if blob.exists() {
        let mut bytes = std::fs::read(&blob).unwrap();
        bytes[1000] ^= 0xff;
        std::fs::write(&blob, bytes).unwrap();
        let bad_out = d.path("bad-copy");
        let bad = d.run(&["content", "get", &ds, "-o", bad_out.to_str().unwrap()]);
        assert_eq!(bad.status.code(), Some(1));
        assert!(
            stderr(&bad).contains("failed verification"),
            "{}",
            stderr(&bad)
        );
        assert!(!bad_out.exists());
    }

    // remove: then the list is empty, and a second rm says not found
    assert_eq!(d.ok(&["content", "rm", &ds]).trim(), ds);
    assert_eq!(d.json(&["content", "ls"]), serde_json::json!([]));
    let again = d.run(&["content", "rm", &ds]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("not found"), "{}", stderr(&again));
    let missing = d.run(&["content", "get", &ds]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn content_active_shows_a_suspended_stdin_ingest() {
    let d = Daemon::start();
    let mut child = d
        .cmd(&["content", "ingest", "-", "--ref", "from-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth");
    let data: Vec<u8> = (0..(2u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data[..1 << 20]).unwrap();
    stdin.flush().unwrap();

    // the first MiB is with berthd while the client waits for more input
    let st = poll_until(
        "the ingest to show in content active",
        Duration::from_secs(20),
        || active(&d, "from-stdin").filter(|s| s["offset"].as_i64().unwrap_or(0) > 0),
    );
    assert_eq!(st["offset"], 1 << 20);
    assert!(st["started_at"].is_string() && st["updated_at"].is_string());
    let table = d.ok(&["content", "active"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("from-stdin") && l.contains("1.0 MiB")),
        "{table}"
    );

    stdin.write_all(&data[1 << 20..]).unwrap();
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), Digest::sha256(&data).to_string());
    assert!(
        active(&d, "from-stdin").is_none(),
        "the ingest is gone once committed"
    );
    let got = d.run(&["content", "get", out.trim()]);
    assert!(got.stdout == data);
}

#[test]
fn ingest_resumes_after_the_client_is_killed() {
    let d = Daemon::start();
    let file = d.path("big");
    let want = write_random_file(&file, 300 << 20, 42);
    let path = file.to_str().unwrap();

    let mut first = d
        .cmd(&["content", "ingest", path])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn berth");
    let st = poll_until("the ingest to start", Duration::from_secs(60), || {
        let list = d.json(&["content", "active"]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["offset"].as_i64().unwrap_or(0) > 0)
            .cloned()
    });
    first.kill().expect("kill berth");
    first.wait().unwrap();
    let reference = st["ref"].as_str().unwrap().to_string();
    assert!(reference.starts_with("ingest-"), "{reference}");
    assert_eq!(st["total"], 300 << 20);

    // the same command again finds the same ref and continues where berthd stopped
    let out = d.run(&["--json", "content", "ingest", path]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), d.log());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["digest"], want.to_string().as_str());
    assert_eq!(v["ref"], reference.as_str());
    assert_eq!(v["status"], "committed");
    let resumed = v["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0 && resumed < 300 << 20, "resumed from {resumed}");
    assert!(
        stderr(&out).contains(&format!("resuming {reference} at offset {resumed}")),
        "{}",
        stderr(&out)
    );
    assert!(active(&d, &reference).is_none());
    let infos = d.json(&["content", "ls", &format!("digest=={want}")]);
    assert_eq!(infos[0]["size"], 300 << 20);
}

#[test]
fn resume_with_different_bytes_starts_over() {
    let d = Daemon::start();
    let a = d.path("a");
    let b = d.path("b");
    write_random_file(&a, 3 << 20, 1);
    let want_b = write_random_file(&b, 3 << 20, 2);
    // leave 1 MiB of `a` under ref r (stdin, killed mid-way)
    let mut child = d
        .cmd(&["content", "ingest", "-", "--ref", "r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(&std::fs::read(&a).unwrap()[..1 << 20])
        .unwrap();
    poll_until("1 MiB under ref r", Duration::from_secs(20), || {
        active(&d, "r").filter(|s| s["offset"] == 1 << 20)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // `b` under the same ref: the held prefix does not match, so it starts over
    let out = d.run(&["content", "ingest", b.to_str().unwrap(), "--ref", "r"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("starting over"), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        want_b.to_string()
    );
}

#[test]
fn expected_digest_mismatch_is_refused() {
    let d = Daemon::start();
    let f = d.path("f");
    std::fs::write(&f, b"some bytes").unwrap();
    let wrong = Digest::sha256(b"other bytes").to_string();
    let out = d.run(&[
        "content",
        "ingest",
        f.to_str().unwrap(),
        "--expected",
        &wrong,
    ]);
    assert_eq!(out.status.code(), Some(1));
    // berthd hashes what it received and refuses the commit, naming both digests
    let err = stderr(&out);
    assert!(
        err.contains(&wrong) && err.contains(&Digest::sha256(b"some bytes").to_string()),
        "{err}"
    );
    assert!(!err.contains("resume"), "nothing is left to resume: {err}");
    assert_eq!(d.json(&["content", "ls"]), serde_json::json!([]));
}

#[test]
fn leases_create_list_remove() {
    let d = Daemon::start();
    assert_eq!(
        d.ok(&["lease", "create", "build-1", "--expire", "24h", "--label", "by=test"]),
        "build-1\n"
    );
    let generated = d.ok(&["lease", "create"]);
    let generated = generated.trim();
    assert!(!generated.is_empty());

    let list = d.json(&["lease", "ls"]);
    let l = list
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "build-1")
        .expect("listed");
    assert_eq!(l["labels"]["by"], "test");
    let expire = l["labels"]["containerd.io/gc.expire"].as_str().unwrap();
    let at = berth_core::metadata::parse_rfc3339(expire).expect("RFC 3339 expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let in_secs = at.secs() as i64 - now as i64;
    assert!(
        (86_000..=86_400).contains(&in_secs),
        "expires in {in_secs}s"
    );
    assert_eq!(l["expires_at"], expire);
    let table = d.ok(&["lease", "ls"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("build-1") && l.contains("in 23 hours")
                || l.starts_with("build-1") && l.contains("in 1 day")),
        "{table}"
    );

    let dup = d.run(&["lease", "create", "build-1"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));

    d.ok(&["lease", "rm", "build-1", generated]);
    assert_eq!(d.json(&["lease", "ls"]), serde_json::json!([]));
    let missing = d.run(&["lease", "rm", "build-1"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn missing_socket_is_exit_3_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nothing.sock");
    let out = Command::new(CLI)
        .arg("--address")
        .arg(&sock)
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains(&sock.display().to_string()), "{err}");
    assert!(err.contains("is berthd running?"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_errors_are_exit_2() {
    let d = Daemon::start();
    for args in [
        &["content", "get", "sha256:nothex"][..],
        &["ns", "label", "default", "novalue"],
        &["lease", "create", "--expire", "soon"],
        &["content", "frobnicate"],
    ] {
        let out = d.run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "berth {args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).is_empty());
    }
}
