//! berth's specs against what containerd 1.6.20 generated on the peer harness
//! (`../shared/peer/`), byte for byte.
//!
//! The fixtures in `testdata/` are `ctr -n specgolden containers info <id> | jq .Spec` of:
//!
//! * `ctr-run-busybox.json`: `ctr run 127.0.0.1:5000/busybox:latest t1 true`;
//! * `ctr-run-cpus-1.5-resources.json`: `.linux.resources` of `ctr run --cpus 1.5 … t2 true`;
//! * `ctr-create-privileged.json`: `ctr containers create --privileged … gpriv`, without
//!   `linux.devices` (the host's 102 device nodes; the driver lists them);
//! * `ctr-create-net-host.json`: `ctr containers create --net-host … gnet` on host `vm`;
//! * `ctr-create-options.json`: `ctr containers create --tty --read-only --cwd /tmp --env
//!   FOO=bar --env PATH=/x --memory-limit 67108864 --cap-add CAP_SYS_ADMIN --cap-drop
//!   CAP_NET_RAW --mount type=bind,src=/tmp,dst=/host,options=rbind:ro --allow-new-privs …
//!   gopts echo hi there`;
//! * `ctr-create-users.json`: the `process.user` of images whose `User` is each case, over
//!   `users.passwd` and `users.group` (see `user.rs`).
//!
//! The busybox image (`images.sh`): `{"Env":["PATH=…"],"Cmd":["/bin/sh"]}`, with an
//! `/etc/passwd` of root and nobody, an `/etc/group` of root and nogroup. `ctr containers
//! create` sets no CPU shares; `ctr run` sets 1024.

use super::*;

const BUSYBOX_PASSWD: &[u8] =
    b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n";
const BUSYBOX_GROUP: &[u8] = b"root:x:0:\nnogroup:x:65534:\n";

fn busybox() -> ExecConfig {
    ExecConfig {
        env: vec![DEFAULT_PATH_ENV.into()],
        cmd: vec!["/bin/sh".into()],
        ..ExecConfig::default()
    }
}

fn files() -> ImageFiles<'static> {
    ImageFiles {
        passwd: Some(BUSYBOX_PASSWD),
        group: Some(BUSYBOX_GROUP),
    }
}

/// ctr's `run IMAGE ID ARGS…`: the args replace Entrypoint and Cmd.
fn ctr_args(args: &[&str]) -> SpecOptions {
    SpecOptions {
        args: Some(args.iter().map(|&a| a.to_owned()).collect()),
        entrypoint: Some(Vec::new()),
        ..SpecOptions::default()
    }
}

/// `ctr containers create` options: like `ctr run` but no CPU shares.
fn create() -> SpecOptions {
    SpecOptions {
        cpu_shares: None,
        ..SpecOptions::default()
    }
}

/// The fixture without the whitespace `jq` added: Go's `json.Marshal` output.
fn compact(pretty: &[u8]) -> String {
    let mut out = String::new();
    let (mut in_string, mut escaped) = (false, false);
    for c in std::str::from_utf8(pretty).unwrap().chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

fn assert_same(spec: &Spec, fixture: &[u8]) {
    let ours = String::from_utf8(spec.to_json()).unwrap();
    let theirs = compact(fixture);
    if ours != theirs {
        // Show the first difference as values, then fail on the bytes.
        let a: serde_json::Value = serde_json::from_str(&ours).unwrap();
        let b: serde_json::Value = serde_json::from_str(&theirs).unwrap();
        assert_eq!(a, b, "values differ");
        assert_eq!(ours, theirs, "same values, different field order");
    }
    // And the fixture parses back to the same spec.
    assert_eq!(&Spec::from_json(fixture).unwrap(), spec);
}

#[test]
fn ctr_run_busybox_true() {
    let spec = generate(
        "specgolden",
        "t1",
        &busybox(),
        &files(),
        &ctr_args(&["true"]),
    )
    .unwrap();
    assert_same(&spec, include_bytes!("testdata/ctr-run-busybox.json"));
}

#[test]
fn ctr_run_cpus() {
    let opts = SpecOptions {
        cpu_limit: Some(CpuLimit::from_cpus("1.5").unwrap()),
        ..ctr_args(&["true"])
    };
    let spec = generate("specgolden", "t2", &busybox(), &files(), &opts).unwrap();
    let resources = spec.linux.unwrap().resources.unwrap();
    let theirs = include_bytes!("testdata/ctr-run-cpus-1.5-resources.json");
    assert_eq!(
        String::from_utf8(serde_json::to_vec(&resources).unwrap()).unwrap(),
        compact(theirs)
    );
}

#[test]
fn ctr_create_privileged() {
    let fixture = include_bytes!("testdata/ctr-create-privileged.json");
    // The capabilities of the `ctr` that made the fixture: this VM's bounding set lacks
    // CAP_SYS_RESOURCE. containerd gives what its caller holds; so does berth, via the driver.
    let host_caps: Vec<String> = ALL_CAPABILITIES
        .iter()
        .filter(|&&c| c != "CAP_SYS_RESOURCE")
        .map(|&c| c.to_owned())
        .collect();
    let opts = SpecOptions {
        privileged: true,
        host_capabilities: Some(host_caps),
        ..create()
    };
    let spec = generate("specgolden", "gpriv", &busybox(), &files(), &opts).unwrap();
    assert_same(&spec, fixture);

    // Without the caller's set: every capability.
    let opts = SpecOptions {
        privileged: true,
        ..create()
    };
    let spec = generate("specgolden", "gpriv", &busybox(), &files(), &opts).unwrap();
    let caps = spec.process.unwrap().capabilities.unwrap();
    assert_eq!(caps.bounding, ALL_CAPABILITIES);
    assert_eq!(caps.permitted, ALL_CAPABILITIES);
}

#[test]
fn ctr_create_net_host() {
    let opts = SpecOptions {
        network: Network::Host {
            hostname: Some("vm".into()),
        },
        ..create()
    };
    let spec = generate("specgolden", "gnet", &busybox(), &files(), &opts).unwrap();
    assert_same(&spec, include_bytes!("testdata/ctr-create-net-host.json"));
}

#[test]
fn ctr_create_options() {
    let opts = SpecOptions {
        tty: true,
        readonly_rootfs: true,
        cwd: Some("/tmp".into()),
        env: vec!["FOO=bar".into(), "PATH=/x".into()],
        memory_limit: Some(67_108_864),
        cap_add: vec!["CAP_SYS_ADMIN".into()],
        cap_drop: vec!["CAP_NET_RAW".into()],
        mounts: vec![Mount::parse_flag("type=bind,src=/tmp,dst=/host,options=rbind:ro").unwrap()],
        no_new_privileges: false,
        ..SpecOptions {
            cpu_shares: None,
            ..ctr_args(&["echo", "hi", "there"])
        }
    };
    let spec = generate("specgolden", "gopts", &busybox(), &files(), &opts).unwrap();
    assert_same(&spec, include_bytes!("testdata/ctr-create-options.json"));
}
