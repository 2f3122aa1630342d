//! The runtime spec from an arbitrary image config, `/etc/passwd`, `/etc/group`, user string and
//! options: never panics, and whatever it builds is sound:
//!
//! * the spec serialises, parses back to itself, and is the same bytes when built again;
//! * args are non-empty, the cwd and every mount destination are absolute;
//! * the primary gid is among the supplementary ones; the three capability sets agree;
//! * the exec process of the same user resolves to the same ids.
//!
//! Input: NUL-separated sections: image config JSON, passwd, group (a missing section is a
//! missing file), the user override (empty: none), then option lines (`env=`, `mount=`,
//! `cap-add=`, `cap-drop=`, `cpus=`, `cwd=`, `args=` space-separated, `entrypoint=`, `tty`,
//! `privileged`, `net-host`, `read-only`).
#![no_main]

use berth_core::image::ImageConfig;
use berth_core::spec::{
    exec_process, generate, CpuLimit, ExecOptions, ImageFiles, Mount, Network, Spec, SpecOptions,
};
use libfuzzer_sys::fuzz_target;

fn options(lines: &str) -> SpecOptions {
    let mut o = SpecOptions::default();
    let words = |v: &str| {
        v.split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    for line in lines.lines() {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        match key {
            "env" => o.env.push(value.into()),
            "mount" => {
                if let Ok(m) = Mount::parse_flag(value) {
                    o.mounts.push(m);
                }
            }
            "cap-add" => o.cap_add.push(value.into()),
            "cap-drop" => o.cap_drop.push(value.into()),
            "cpus" => o.cpu_limit = CpuLimit::from_cpus(value).ok(),
            "cwd" => o.cwd = Some(value.into()),
            "args" => o.args = Some(words(value)),
            "entrypoint" => o.entrypoint = Some(words(value)),
            "tty" => o.tty = true,
            "privileged" => o.privileged = true,
            "net-host" => {
                o.network = Network::Host {
                    hostname: Some(value.into()),
                }
            }
            "read-only" => o.readonly_rootfs = true,
            _ => {}
        }
    }
    o
}

fuzz_target!(|data: &[u8]| {
    let mut sections = data.split(|&b| b == 0);
    let Some(config) = sections.next() else {
        return;
    };
    let Ok(image) = ImageConfig::parse(config) else {
        return;
    };
    let files = ImageFiles {
        passwd: sections.next(),
        group: sections.next(),
    };
    let user = sections
        .next()
        .map(String::from_utf8_lossy)
        .filter(|u| !u.is_empty());
    let rest: Vec<u8> = sections
        .flat_map(|s| s.iter().copied().chain([b'\n']))
        .collect();
    let mut opts = options(&String::from_utf8_lossy(&rest));
    opts.user = user.map(|u| u.into_owned());

    let spec = match generate("fuzz", "c1", &image.config, &files, &opts) {
        Ok(spec) => spec,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let json = spec.to_json();
    assert_eq!(Spec::from_json(&json).as_ref(), Ok(&spec), "round trip");
    let again = generate("fuzz", "c1", &image.config, &files, &opts).unwrap();
    assert_eq!(again.to_json(), json, "deterministic");

    let process = spec.process.as_ref().unwrap();
    assert!(!process.args.is_empty());
    assert!(process.cwd.starts_with('/'));
    assert!(process.user.additional_gids.contains(&process.user.gid));
    let caps = process.capabilities.as_ref().unwrap();
    assert_eq!(caps.bounding, caps.effective);
    assert_eq!(caps.bounding, caps.permitted);
    assert!(spec.mounts.iter().all(|m| m.destination.starts_with('/')));

    let user = opts
        .user
        .clone()
        .unwrap_or_else(|| image.config.user.clone());
    let exec = ExecOptions {
        args: vec!["sh".into()],
        user: (!user.is_empty()).then_some(user),
        ..ExecOptions::default()
    };
    let p = exec_process(process, &exec, &files).expect("the container's user resolves again");
    assert_eq!(p.user, process.user);
    assert_eq!(p.args, ["sh"]);
});
