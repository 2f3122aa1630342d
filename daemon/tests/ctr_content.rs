//! containerd's real `ctr` 1.6 against berthd, on both drivers: version, plugins, namespaces,
//! leases and the content store, with blobs fetched from a real docker-registry.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{push_busybox, Berthd, Registry};

fn ctr_suite(driver: &str) {
    let reg = Registry::start();
    let image = push_busybox(&reg, "test/busybox", "latest", 0);
    let d = Berthd::start(driver);

    // events: subscribe first, then check the topics arrive with decodable payloads
    let mut events = d
        .ctr_cmd(&["events"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // version and plugins
    let v = d.ctr_ok(&["version"]);
    assert!(v.contains("Server:") && v.contains("UUID:"), "{v}");
    let p = d.ctr_ok(&["plugins", "ls"]);
    assert!(
        p.contains("io.containerd.content.v1") && p.contains("ok"),
        "{p}"
    );
    let p = d.ctr_ok(&["plugins", "ls", "type==io.containerd.grpc.v1"]);
    assert!(
        p.contains("content") && !p.contains("io.containerd.content.v1"),
        "filters apply: {p}"
    );

    // namespaces
    d.ctr_ok(&["namespaces", "create", "team-a", "owner=ops"]);
    let e = d.ctr_err(&["namespaces", "create", "team-a"]);
    assert!(e.contains("already exists"), "{e}");
    d.ctr_ok(&["namespaces", "label", "team-a", "tier=gold"]);
    let ls = d.ctr_ok(&["namespaces", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("team-a") && l.contains("owner=ops,tier=gold")),
        "{ls}"
    );
    d.ctr_ok(&["namespaces", "label", "team-a", "tier="]);
    let ls = d.ctr_ok(&["namespaces", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("team-a") && !l.contains("tier")),
        "empty value deletes: {ls}"
    );
    d.ctr_ok(&["namespaces", "rm", "team-a"]);
    assert!(!d.ctr_ok(&["namespaces", "ls", "-q"]).contains("team-a"));
    let e = d.ctr_err(&["namespaces", "create", "bad name!"]);
    assert!(e.contains("invalid argument"), "{e}");

    // leases
    let id = d.ctr_ok(&["leases", "create", "--id", "my-lease", "purpose=test"]);
    assert_eq!(id.trim(), "my-lease");
    let ls = d.ctr_ok(&["leases", "ls"]);
    let line = ls
        .lines()
        .find(|l| l.starts_with("my-lease"))
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(
        line.contains("containerd.io/gc.expire=") && line.contains("purpose=test"),
        "{ls}"
    );
    let e = d.ctr_err(&["leases", "create", "--id", "my-lease"]);
    assert!(e.contains("already exists"), "{e}");
    let generated = d.ctr_ok(&["leases", "create"]);
    assert!(!generated.trim().is_empty());
    d.ctr_ok(&["leases", "rm", "my-lease", generated.trim()]);
    assert!(!d.ctr_ok(&["leases", "ls"]).contains("my-lease"));
    let e = d.ctr_err(&["leases", "rm", "my-lease"]);
    assert!(e.contains("not found"), "{e}");

    // content fetch from the registry
    d.ctr_ok(&["content", "fetch", "--plain-http", &image.reference]);
    let ls = d.ctr_ok(&["content", "ls"]);
    for digest in [&image.manifest, &image.config, &image.layers[0]] {
        assert!(ls.contains(digest.as_str()), "{digest} missing from:\n{ls}");
    }
    assert!(
        ls.contains("containerd.io/distribution.source."),
        "ctr labels the fetched blobs: {ls}"
    );
    let layer = &image.layers[0];
    let got = d.ctr_cmd(&["content", "get", layer]).output().unwrap();
    assert!(got.status.success());
    assert!(
        got.stdout == reg.blob("test/busybox", layer),
        "content get is byte-identical to the registry's blob"
    );
    // namespaces see only their own records of the shared blobs
    let other = d.ctr_err(&["-n", "other", "content", "get", layer]);
    assert!(other.contains("not found"), "{other}");

    // labels
    d.ctr_ok(&["content", "label", layer, "team=berth"]);
    let ls = d.ctr_ok(&["content", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with(layer.as_str()) && l.contains("team=berth")),
        "{ls}"
    );

    // content active while an ingest is in flight. `ctr content ingest` holds no lease: like
    // containerd, berthd's next collection removes such an unreferenced blob. Collections
    // follow deletes (the fetch's lease removal above) by 100 ms: let them pass first.
    std::thread::sleep(Duration::from_millis(400));
    let mut ingest = d
        .ctr_cmd(&["content", "ingest", "in-flight"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = ingest.stdin.take().unwrap();
    stdin.write_all(&common::pseudo_random(3 << 20, 1)).unwrap();
    stdin.flush().unwrap();
    let t0 = Instant::now();
    loop {
        let active = d.ctr_ok(&["content", "active"]);
        if active
            .lines()
            .any(|l| l.starts_with("in-flight") && !l.contains(" 0B/"))
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "in-flight ingest never showed in `content active`: {active}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stdin.write_all(b"tail").unwrap();
    drop(stdin);
    let out = ingest.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut body = common::pseudo_random(3 << 20, 1);
    body.extend_from_slice(b"tail");
    let digest = format!("sha256:{}", common::sha256_hex(&body));
    assert!(d.ctr_ok(&["content", "ls", "-q"]).contains(&digest));
    assert!(
        !d.ctr_ok(&["content", "active"]).contains("in-flight"),
        "a committed ingest is no longer active"
    );

    // content rm
    d.ctr_ok(&["content", "rm", layer]);
    assert!(!d.ctr_ok(&["content", "ls", "-q"]).contains(layer.as_str()));
    let e = d.ctr_err(&["content", "get", layer]);
    assert!(e.contains("not found"), "{e}");
    let blob = d
        .root()
        .join("content/blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    assert!(!blob.exists(), "the unreferenced blob is removed from disk");
    let absent = format!("sha256:{}", "0".repeat(64));
    let e = d.ctr_err(&["content", "get", &absent]);
    assert!(e.contains("not found"), "{e}");

    // the events seen so far: namespace and content topics, payloads decoded by ctr
    events.kill().unwrap();
    let out = events.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    for topic in [
        "/namespaces/create",
        "/namespaces/update",
        "/namespaces/delete",
        "/content/delete",
        "/images/create",
    ] {
        assert!(
            seen.contains(topic),
            "ctr events missed {topic}:\n{seen}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        seen.contains("\"name\":\"team-a\""),
        "event payloads decode: {seen}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("cannot unmarshal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // a non-empty namespace cannot be removed
    let e = d.ctr_err(&["namespaces", "rm", "default"]);
    assert!(e.contains("must be empty"), "{e}");
}

#[test]
fn ctr_content_on_smol() {
    ctr_suite("smol");
}

#[test]
fn ctr_content_on_io_uring() {
    ctr_suite("io-uring");
}
