//! The default spec as exact JSON, and each option.

use serde_json::{json, Value};

use super::*;

fn busybox() -> ExecConfig {
    ExecConfig {
        env: vec![DEFAULT_PATH_ENV.into()],
        cmd: vec!["/bin/sh".into()],
        ..ExecConfig::default()
    }
}

fn spec_with(opts: &SpecOptions) -> Spec {
    generate("default", "c1", &busybox(), &ImageFiles::default(), opts).unwrap()
}

fn json_of(spec: &Spec) -> Value {
    serde_json::from_slice(&spec.to_json()).unwrap()
}

fn process(spec: &Spec) -> &Process {
    spec.process.as_ref().unwrap()
}

fn linux(spec: &Spec) -> &Linux {
    spec.linux.as_ref().unwrap()
}

const CAPS: [&str; 14] = DEFAULT_CAPABILITIES;

/// The whole default spec, every field spelled out.
#[test]
fn default_busybox_spec_exact_json() {
    let spec = spec_with(&SpecOptions::default());
    let dev = |major: i64, minor: i64| json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"});
    let expected = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 0, "gid": 0, "additionalGids": [0]},
            "args": ["/bin/sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
        ],
        "linux": {
            "resources": {
                "devices": [
                    {"allow": false, "access": "rwm"},
                    dev(1, 3), dev(1, 8), dev(1, 7), dev(5, 0), dev(1, 5), dev(1, 9), dev(5, 1),
                    {"allow": true, "type": "c", "major": 136, "access": "rwm"},
                    dev(5, 2)
                ],
                "cpu": {"shares": 1024}
            },
            "cgroupsPath": "/default/c1",
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                           {"type": "network"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"]
        }
    });
    assert_eq!(json_of(&spec), expected);
    // Field order as Go's structs: what containerd writes.
    let text = String::from_utf8(spec.to_json()).unwrap();
    let order = [
        "\"ociVersion\"",
        "\"process\"",
        "\"root\"",
        "\"mounts\"",
        "\"linux\"",
    ];
    let at: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    // Deterministic and round-tripping.
    assert_eq!(spec_with(&SpecOptions::default()).to_json(), spec.to_json());
    assert_eq!(Spec::from_json(&spec.to_json()).unwrap(), spec);
}

#[test]
fn args_from_entrypoint_and_cmd() {
    let image = ExecConfig {
        entrypoint: vec!["/ep".into(), "-x".into()],
        cmd: vec!["c1".into()],
        ..ExecConfig::default()
    };
    let gen = |opts: &SpecOptions| {
        let spec = generate("default", "c1", &image, &ImageFiles::default(), opts)?;
        Ok::<_, SpecError>(spec.process.unwrap().args)
    };
    assert_eq!(gen(&SpecOptions::default()).unwrap(), ["/ep", "-x", "c1"]);
    // User args replace Cmd only (Docker, WithImageConfigArgs).
    let args = SpecOptions {
        args: Some(vec!["a".into(), "b".into()]),
        ..SpecOptions::default()
    };
    assert_eq!(gen(&args).unwrap(), ["/ep", "-x", "a", "b"]);
    // Entrypoint override; empty clears it (ctr's `run IMAGE ID ARGS…`).
    let ep = SpecOptions {
        entrypoint: Some(vec![]),
        ..args.clone()
    };
    assert_eq!(gen(&ep).unwrap(), ["a", "b"]);
    let ep_only = SpecOptions {
        entrypoint: Some(vec!["/other".into()]),
        ..SpecOptions::default()
    };
    // A new Entrypoint drops the image's Cmd (Docker, Kubernetes).
    assert_eq!(gen(&ep_only).unwrap(), ["/other"]);
    // An explicit empty args list runs the Entrypoint alone.
    let empty = SpecOptions {
        args: Some(vec![]),
        ..SpecOptions::default()
    };
    assert_eq!(gen(&empty).unwrap(), ["/ep", "-x"]);

    // Nothing to run.
    let none = ExecConfig::default();
    assert_eq!(
        generate(
            "default",
            "c1",
            &none,
            &ImageFiles::default(),
            &SpecOptions::default()
        ),
        Err(SpecError::NoCommand)
    );
    assert_eq!(
        gen(&SpecOptions {
            entrypoint: Some(vec![]),
            args: Some(vec![]),
            ..SpecOptions::default()
        }),
        Err(SpecError::NoCommand)
    );
    assert_eq!(
        SpecError::NoCommand.to_string(),
        "no command specified: the image has no Entrypoint or Cmd; give the command to run"
    );
}

#[test]
fn env() {
    // No image env: the default PATH.
    let bare = ExecConfig {
        cmd: vec!["x".into()],
        ..ExecConfig::default()
    };
    let spec = generate(
        "default",
        "c1",
        &bare,
        &ImageFiles::default(),
        &SpecOptions::default(),
    )
    .unwrap();
    assert_eq!(process(&spec).env, [DEFAULT_PATH_ENV]);
    // Image env without PATH: kept as is (containerd adds PATH only to an empty env).
    let image = ExecConfig {
        env: vec!["A=1".into(), "B=2".into(), "C=3".into()],
        ..bare
    };
    let opts = SpecOptions {
        env: vec![
            "B=two".into(),
            "D=4".into(),
            "C".into(),
            "D=four".into(),
            "E".into(),
        ],
        ..SpecOptions::default()
    };
    let spec = generate("default", "c1", &image, &ImageFiles::default(), &opts).unwrap();
    // Replaced in place, appended once, removed; a bare unknown key is ignored.
    assert_eq!(process(&spec).env, ["A=1", "B=two", "D=four"]);
}

#[test]
fn merge_env_rules() {
    let s = |v: &[&str]| v.iter().map(|&e| e.to_owned()).collect::<Vec<_>>();
    assert_eq!(
        merge_env(&s(&["A=1"]), &s(&["A=", "B=x=y"])),
        ["A=", "B=x=y"]
    );
    assert_eq!(merge_env(&s(&["A=1", "A=2"]), &s(&["A=3"])), ["A=1", "A=3"]);
    assert_eq!(merge_env(&s(&["A=1"]), &s(&["A", "A=5"])), ["A=5"]);
    assert_eq!(merge_env(&s(&["", "X"]), &s(&[])), ["X"]);
}

#[test]
fn cwd() {
    let image = ExecConfig {
        working_dir: "/app".into(),
        ..busybox()
    };
    let gen = |image: &ExecConfig, opts: &SpecOptions| {
        generate("default", "c1", image, &ImageFiles::default(), opts)
            .map(|s| s.process.unwrap().cwd)
    };
    assert_eq!(gen(&image, &SpecOptions::default()).unwrap(), "/app");
    let opts = SpecOptions {
        cwd: Some("/tmp".into()),
        ..SpecOptions::default()
    };
    assert_eq!(gen(&image, &opts).unwrap(), "/tmp");
    let relative = ExecConfig {
        working_dir: "app".into(),
        ..busybox()
    };
    assert_eq!(
        gen(&relative, &SpecOptions::default()),
        Err(SpecError::RelativeCwd { cwd: "app".into() })
    );
}

#[test]
fn user_from_image_and_override() {
    let files = ImageFiles {
        passwd: Some(b"root:x:0:0::/:/bin/sh\nwww:x:33:33::/:/bin/false\n"),
        group: Some(b"root:x:0:\nwww:x:33:\nlog:x:4:www\n"),
    };
    let image = ExecConfig {
        user: "www".into(),
        ..busybox()
    };
    let spec = generate("default", "c1", &image, &files, &SpecOptions::default()).unwrap();
    assert_eq!(
        json_of(&spec)["process"]["user"],
        json!({"uid": 33, "gid": 33, "additionalGids": [33, 4]})
    );
    let opts = SpecOptions {
        user: Some("0:4".into()),
        ..SpecOptions::default()
    };
    let spec = generate("default", "c1", &image, &files, &opts).unwrap();
    assert_eq!(
        json_of(&spec)["process"]["user"],
        json!({"uid": 0, "gid": 4, "additionalGids": [4]})
    );
    let opts = SpecOptions {
        user: Some("ghost".into()),
        ..SpecOptions::default()
    };
    assert_eq!(
        generate("default", "c1", &image, &files, &opts),
        Err(SpecError::UnknownUser {
            user: "ghost".into()
        })
    );
}

#[test]
fn tty_and_readonly_and_hostname() {
    let spec = spec_with(&SpecOptions {
        tty: true,
        readonly_rootfs: true,
        hostname: Some("c1".into()),
        ..SpecOptions::default()
    });
    let v = json_of(&spec);
    assert_eq!(v["process"]["terminal"], json!(true));
    assert_eq!(v["process"]["env"], json!([DEFAULT_PATH_ENV, "TERM=xterm"]));
    assert_eq!(v["root"], json!({"path": "rootfs", "readonly": true}));
    assert_eq!(v["hostname"], json!("c1"));
    // TERM is not added twice.
    let spec = spec_with(&SpecOptions {
        tty: true,
        env: vec!["TERM=vt100".into()],
        ..SpecOptions::default()
    });
    assert_eq!(process(&spec).env, [DEFAULT_PATH_ENV, "TERM=vt100"]);
    // No hostname by default (containerd sets none).
    assert!(json_of(&spec_with(&SpecOptions::default()))
        .get("hostname")
        .is_none());
}

#[test]
fn privileged() {
    let host_dev = Device {
        path: "/dev/kvm".into(),
        kind: "c".into(),
        major: 10,
        minor: 232,
        file_mode: Some(0o660),
        uid: Some(0),
        gid: Some(0),
    };
    let spec = spec_with(&SpecOptions {
        privileged: true,
        host_devices: vec![host_dev.clone()],
        ..SpecOptions::default()
    });
    let v = json_of(&spec);
    assert_eq!(
        v["process"]["capabilities"]["bounding"],
        json!(ALL_CAPABILITIES.as_slice())
    );
    assert!(v["linux"].get("maskedPaths").is_none());
    assert!(v["linux"].get("readonlyPaths").is_none());
    assert_eq!(
        v["linux"]["resources"]["devices"],
        json!([{"allow": true, "access": "rwm"}])
    );
    assert_eq!(
        v["linux"]["devices"],
        json!([{"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232, "fileMode": 432,
                "uid": 0, "gid": 0}])
    );
    let sys = spec
        .mounts
        .iter()
        .find(|m| m.destination == "/sys")
        .unwrap();
    assert_eq!(sys.options, ["nosuid", "noexec", "nodev", "rw"]);
    // Host devices are for privileged containers only.
    let spec = spec_with(&SpecOptions {
        host_devices: vec![host_dev],
        ..SpecOptions::default()
    });
    assert!(linux(&spec).devices.is_empty());
}

#[test]
fn devices() {
    let spec = spec_with(&SpecOptions {
        devices: vec![Device {
            path: "/dev/fuse".into(),
            kind: "c".into(),
            major: 10,
            minor: 229,
            ..Device::default()
        }],
        ..SpecOptions::default()
    });
    let v = json_of(&spec);
    assert_eq!(
        v["linux"]["devices"],
        json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])
    );
    let rules = v["linux"]["resources"]["devices"].as_array().unwrap();
    assert_eq!(rules.len(), 11);
    assert_eq!(
        rules[10],
        json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"})
    );
}

#[test]
fn capabilities() {
    let caps = |add: &[&str], drop: &[&str]| {
        let spec = generate(
            "default",
            "c1",
            &busybox(),
            &ImageFiles::default(),
            &SpecOptions {
                cap_add: add.iter().map(|&c| c.to_owned()).collect(),
                cap_drop: drop.iter().map(|&c| c.to_owned()).collect(),
                ..SpecOptions::default()
            },
        )?;
        let c = spec.process.unwrap().capabilities.unwrap();
        assert_eq!(c.bounding, c.effective);
        assert_eq!(c.bounding, c.permitted);
        assert!(c.inheritable.is_empty() && c.ambient.is_empty());
        Ok::<_, SpecError>(c.bounding)
    };
    let added = caps(&["net_admin", "CAP_CHOWN"], &[]).unwrap();
    assert_eq!(added.len(), 15);
    assert_eq!(added.last().unwrap(), "CAP_NET_ADMIN");
    let dropped = caps(&[], &["CAP_MKNOD", "net_raw"]).unwrap();
    assert_eq!(dropped.len(), 12);
    assert!(!dropped
        .iter()
        .any(|c| c == "CAP_MKNOD" || c == "CAP_NET_RAW"));
    // Drops come after adds.
    assert!(caps(&["SYS_ADMIN"], &["SYS_ADMIN"])
        .unwrap()
        .iter()
        .all(|c| c != "CAP_SYS_ADMIN"));
    assert_eq!(caps(&["ALL"], &[]).unwrap().len(), 41);
    assert_eq!(caps(&[], &["ALL"]).unwrap(), Vec::<String>::new());
    assert_eq!(caps(&["all"], &["all"]).unwrap(), Vec::<String>::new());
    assert_eq!(
        caps(&["CAP_BOGUS"], &[]),
        Err(SpecError::UnknownCapability {
            name: "CAP_BOGUS".into()
        })
    );
    assert!(caps(&[], &["nope"]).is_err());
}

#[test]
fn mounts_option() {
    let spec = spec_with(&SpecOptions {
        mounts: vec![
            Mount::parse_flag("type=bind,src=/data,dst=/data,options=rbind:rw").unwrap(),
            Mount::new("/cache", "tmpfs", "tmpfs", &["size=1m"]),
        ],
        ..SpecOptions::default()
    });
    let dests: Vec<&str> = spec.mounts.iter().map(|m| m.destination.as_str()).collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/run",
            "/data",
            "/cache"
        ]
    );
    assert_eq!(
        json_of(&spec)["mounts"][7],
        json!({"destination": "/data", "type": "bind", "source": "/data",
               "options": ["rbind", "rw"]})
    );
    let relative = SpecOptions {
        mounts: vec![Mount::new("data", "bind", "/d", &[])],
        ..SpecOptions::default()
    };
    assert_eq!(
        generate(
            "default",
            "c1",
            &busybox(),
            &ImageFiles::default(),
            &relative
        ),
        Err(SpecError::MountDestination {
            destination: "data".into()
        })
    );
}

#[test]
fn network() {
    let spec = spec_with(&SpecOptions {
        network: Network::Host { hostname: None },
        ..SpecOptions::default()
    });
    let kinds: Vec<&str> = linux(&spec)
        .namespaces
        .iter()
        .map(|n| n.kind.as_str())
        .collect();
    assert_eq!(kinds, ["pid", "ipc", "uts", "mount"]);
    let v = json_of(&spec);
    assert_eq!(
        v["mounts"][7],
        json!({"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts",
               "options": ["rbind", "ro"]})
    );
    assert_eq!(v["mounts"][8]["destination"], json!("/etc/resolv.conf"));
    assert_eq!(process(&spec).env, [DEFAULT_PATH_ENV]);

    let spec = spec_with(&SpecOptions {
        network: Network::Join {
            path: "/var/run/netns/n1".into(),
        },
        ..SpecOptions::default()
    });
    assert_eq!(
        json_of(&spec)["linux"]["namespaces"][4],
        json!({"type": "network", "path": "/var/run/netns/n1"})
    );
    assert_eq!(spec.mounts.len(), 7);
}

#[test]
fn resources() {
    let spec = spec_with(&SpecOptions {
        memory_limit: Some(256 << 20),
        cpu_limit: Some(CpuLimit::from_cpus("2").unwrap()),
        cpu_shares: Some(512),
        ..SpecOptions::default()
    });
    let r = &json_of(&spec)["linux"]["resources"];
    assert_eq!(r["memory"], json!({"limit": 268_435_456}));
    assert_eq!(
        r["cpu"],
        json!({"shares": 512, "quota": 200_000, "period": 100_000})
    );
    // No shares and no quota: no cpu object.
    let spec = spec_with(&SpecOptions {
        cpu_shares: None,
        ..SpecOptions::default()
    });
    assert!(json_of(&spec)["linux"]["resources"].get("cpu").is_none());
    assert_eq!(
        generate(
            "default",
            "c1",
            &busybox(),
            &ImageFiles::default(),
            &SpecOptions {
                memory_limit: Some(u64::MAX),
                ..SpecOptions::default()
            }
        ),
        Err(SpecError::MemoryLimit { bytes: u64::MAX })
    );
}

#[test]
fn cpus_parsing() {
    let q = |s: &str| CpuLimit::from_cpus(s).map(|c| c.quota);
    assert_eq!(q("1.5"), Ok(150_000));
    assert_eq!(q("0.5"), Ok(50_000));
    assert_eq!(q(".25"), Ok(25_000));
    assert_eq!(q("3."), Ok(300_000));
    assert_eq!(q("0.00001"), Ok(1));
    assert_eq!(q("16"), Ok(1_600_000));
    for bad in [
        "", ".", "0", "0.0", "-1", "1e3", "1.000001", "abc", " 1", "+1", "1.5.5",
    ] {
        assert!(q(bad).is_err(), "{bad:?}");
    }
    assert!(q("99999999999999999999").is_err());
    assert!(q("92233720368548").is_err());
    assert_eq!(q("92233720368547"), Ok(9_223_372_036_854_700_000)); // overflows i64 microseconds
}

#[test]
fn cgroups_path_annotations_new_privs() {
    let spec = spec_with(&SpecOptions {
        cgroups_path: Some(String::new()),
        annotations: [("a".to_owned(), "1".to_owned())].into(),
        no_new_privileges: false,
        ..SpecOptions::default()
    });
    let v = json_of(&spec);
    assert!(v["linux"].get("cgroupsPath").is_none());
    assert_eq!(v["annotations"], json!({"a": "1"}));
    assert!(v["process"].get("noNewPrivileges").is_none());
}

#[test]
fn names_are_identifiers() {
    let gen = |ns: &str, id: &str| {
        generate(
            ns,
            id,
            &busybox(),
            &ImageFiles::default(),
            &SpecOptions::default(),
        )
    };
    assert!(matches!(
        gen("default", "../../x"),
        Err(SpecError::Name {
            what: "container id",
            ..
        })
    ));
    assert!(matches!(
        gen("", "c1"),
        Err(SpecError::Name {
            what: "namespace",
            ..
        })
    ));
}

#[test]
fn exec() {
    let files = ImageFiles {
        passwd: Some(b"root:x:0:0::/:/bin/sh\nbob:x:1001:100::/:/bin/sh\n"),
        group: Some(b"users:x:100:bob\naudio:x:29:bob\n"),
    };
    let mut base = process(&spec_with(&SpecOptions::default())).clone();
    base.user.umask = Some(0o22);
    base.extra
        .insert("apparmorProfile".into(), json!("cri-containerd.apparmor.d"));
    let opts = ExecOptions {
        args: vec!["ps".into(), "aux".into()],
        tty: true,
        cwd: Some("/tmp".into()),
        user: Some("bob".into()),
        env: vec!["X=1".into()],
    };
    let p = exec_process(&base, &opts, &files).unwrap();
    assert_eq!(p.args, ["ps", "aux"]);
    assert!(p.terminal);
    assert_eq!(p.cwd, "/tmp");
    assert_eq!(
        (
            p.user.uid,
            p.user.gid,
            &p.user.additional_gids,
            p.user.umask
        ),
        (1001, 100, &vec![100, 29], Some(0o22))
    );
    assert_eq!(p.env, [DEFAULT_PATH_ENV, "X=1"]);
    assert_eq!(p.capabilities, base.capabilities);
    assert_eq!(p.rlimits, base.rlimits);
    assert!(p.no_new_privileges);
    let v: Value = serde_json::from_slice(&p.to_json()).unwrap();
    assert_eq!(v["apparmorProfile"], json!("cri-containerd.apparmor.d"));
    assert_eq!(Process::from_json(&p.to_json()).unwrap(), p);

    // Only args and terminal change by default.
    let p = exec_process(
        &base,
        &ExecOptions {
            args: vec!["sh".into()],
            ..ExecOptions::default()
        },
        &ImageFiles::default(),
    )
    .unwrap();
    assert_eq!(
        Process {
            args: base.args.clone(),
            ..p
        },
        base
    );

    assert_eq!(
        exec_process(&base, &ExecOptions::default(), &files),
        Err(SpecError::NoCommand)
    );
    let bad = ExecOptions {
        args: vec!["x".into()],
        user: Some("nobody".into()),
        ..ExecOptions::default()
    };
    assert_eq!(
        exec_process(&base, &bad, &files),
        Err(SpecError::UnknownUser {
            user: "nobody".into()
        })
    );
    let bad = ExecOptions {
        args: vec!["x".into()],
        cwd: Some("rel".into()),
        ..ExecOptions::default()
    };
    assert!(matches!(
        exec_process(&base, &bad, &files),
        Err(SpecError::RelativeCwd { .. })
    ));
}

#[test]
fn foreign_fields_survive() {
    // A spec from another client: fields berth does not model are kept, `null` is absent.
    let doc = br#"{"ociVersion":"1.1.0","process":{"user":{"uid":1,"gid":2},"args":["a"],
        "cwd":"/","consoleSize":{"height":24,"width":80},"oomScoreAdj":-5,"env":null},
        "root":{"path":"/r"},"hooks":{"prestart":[{"path":"/h"}]},"mounts":null,
        "linux":{"sysctl":{"net.ipv4.ip_forward":"1"},"seccomp":{"defaultAction":"SCMP_ACT_ERRNO"},
        "resources":{"pids":{"limit":10},"cpu":{"cpus":"0-1","shares":2},"memory":{"swappiness":0}}}}"#;
    let spec = Spec::from_json(doc).unwrap();
    assert_eq!(spec.oci_version, "1.1.0");
    assert!(spec.extra.contains_key("hooks"));
    assert!(spec.mounts.is_empty());
    let p = spec.process.as_ref().unwrap();
    assert_eq!(p.extra["oomScoreAdj"], json!(-5));
    assert!(p.env.is_empty());
    let r = spec.linux.as_ref().unwrap().resources.as_ref().unwrap();
    assert_eq!(r.extra["pids"], json!({"limit": 10}));
    assert_eq!(r.cpu.as_ref().unwrap().extra["cpus"], json!("0-1"));
    let again = Spec::from_json(&spec.to_json()).unwrap();
    assert_eq!(again, spec);
    let v: Value = serde_json::from_slice(&spec.to_json()).unwrap();
    let original: Value = serde_json::from_slice(doc).unwrap();
    assert_eq!(v["linux"], original["linux"]);
    assert_eq!(v["hooks"], original["hooks"]);

    let err = Spec::from_json(b"{\"process\": 5}").unwrap_err();
    assert!(matches!(
        err,
        SpecError::Json {
            document: "spec",
            line: 1,
            ..
        }
    ));
    assert!(Process::from_json(b"[]").is_err());
}
