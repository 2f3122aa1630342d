//! containerd's `ctr` 1.6 against berthd: `containers create|ls|info|label|rm` and the
//! container events, with an image pulled from a real docker-registry.

mod common;

use std::time::Duration;

use common::{push_busybox, Berthd, Registry};

#[test]
fn ctr_containers() {
    let reg = Registry::start();
    let image = push_busybox(&reg, "t/busybox", "latest", 0);
    let d = Berthd::start("smol");
    let events = d.ctr_events();

    d.ctr_ok(&["images", "pull", "--plain-http", &image.reference]);
    d.ctr_ok(&[
        "containers",
        "create",
        "--label",
        "team=a",
        &image.reference,
        "c1",
        "sh",
    ]);
    d.ctr_ok(&["containers", "create", &image.reference, "c2", "true"]);
    let e = d.ctr_err(&["containers", "create", &image.reference, "c1", "sh"]);
    assert!(e.contains("already exists"), "{e}");
    let e = d.ctr_err(&["containers", "create", &image.reference, "bad/id", "sh"]);
    assert!(e.contains("invalid"), "{e}");

    let ls = d.ctr_ok(&["containers", "ls"]);
    assert!(
        ls.contains("c1") && ls.contains("c2") && ls.contains("io.containerd.runc.v2"),
        "{ls}"
    );
    let ls = d.ctr_ok(&["containers", "ls", "-q", "labels.team==a"]);
    assert_eq!(ls.trim(), "c1", "filters apply");

    d.ctr_ok(&["containers", "label", "c1", "tier=gold"]);
    let info = d.ctr_ok(&["containers", "info", "c1"]);
    assert!(
        info.contains("\"tier\": \"gold\"") && info.contains("\"team\": \"a\""),
        "{info}"
    );
    assert!(
        info.contains("\"SnapshotKey\": \"c1\"") && info.contains("\"ociVersion\""),
        "{info}"
    );
    assert!(
        info.contains("\"args\"") && info.contains("\"sh\""),
        "the spec is kept: {info}"
    );

    // the rootfs snapshot exists and is protected by the container (a GC root)
    assert!(d.ctr_ok(&["snapshots", "ls"]).contains("c1"));
    d.ctr_ok(&["images", "rm", "--sync", &image.reference]);
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    assert!(
        snaps.contains("c1") && snaps.contains("c2"),
        "containers keep their snapshots: {snaps}"
    );

    // a namespace with containers cannot be deleted
    let e = d.ctr_err(&["namespaces", "rm", "default"]);
    assert!(
        e.contains("containers") || e.contains("must be empty"),
        "{e}"
    );

    d.ctr_ok(&["containers", "rm", "c1", "c2"]);
    assert_eq!(d.ctr_ok(&["containers", "ls", "-q"]).trim(), "");
    let e = d.ctr_err(&["containers", "rm", "c1"]);
    assert!(e.contains("not found"), "{e}");
    // ctr removed the snapshots; the image's chain went with the image
    d.ctr_ok(&["leases", "ls"]);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(d.ctr_ok(&["snapshots", "ls"]).lines().count(), 1);

    let ev = common::events_output(events);
    for topic in [
        "/containers/create",
        "/containers/update",
        "/containers/delete",
    ] {
        assert!(ev.contains(topic), "event {topic} missing:\n{ev}");
    }
}
