//! `runc delete` of a stopped container without running runc.
//!
//! For a container whose init has exited, `runc delete` removes the container's cgroup
//! directories and its state directory, and runs the `poststop` hooks (libcontainer's
//! `destroy`). Starting runc for that costs about 6 ms — a quarter of a whole `runc run` of
//! `/bin/true` — on the path of every `ctr run --rm`. So when the container is plainly in the
//! simple case, berth does the same two things itself, reading runc's `state.json`:
//!
//! * the runtime is runc, the container has its own pid namespace (so nothing of it outlives
//!   its init), uses the cgroupfs driver, is not rootless, has no poststop hooks and no Intel
//!   RDT group;
//! * its init is gone (its pid is free or belongs to a process started at another time).
//!
//! Anything else, or any step that fails, leaves the job to `runc delete`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use berth_shim::protocol::TaskConfig;
use serde_json::Value;

/// Deletes the stopped runc container of `cfg` as `runc delete` would; `false` when it did
/// nothing because the case is not the simple one (run `runc delete` then).
pub(crate) fn delete_stopped(cfg: &TaskConfig) -> bool {
    if !cfg.starts_through_exec_fifo() {
        return false;
    }
    let dir = Path::new(&cfg.runtime_root).join(&cfg.id);
    let Some(state) = fs::read(dir.join("state.json"))
        .ok()
        .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
    else {
        return false;
    };
    let config = &state["config"];
    let own_pid_ns = config["namespaces"].as_array().is_some_and(|ns| {
        ns.iter()
            .any(|n| n["type"] == "NEWPID" && n["path"].as_str().unwrap_or("").is_empty())
    });
    let simple = own_pid_ns
        && config["cgroups"]["Systemd"] != Value::Bool(true)
        && config["cgroups"]["Rootless"] != Value::Bool(true)
        && state["rootless"] != Value::Bool(true)
        && state["intel_rdt_path"].as_str().unwrap_or("").is_empty()
        && config["Hooks"]["poststop"]
            .as_array()
            .is_none_or(|h| h.is_empty());
    if !simple || init_alive(&state) {
        return false;
    }
    let mut paths: Vec<&str> = state["cgroup_paths"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    paths.sort_unstable();
    paths.dedup();
    for p in paths {
        if !remove_cgroup(Path::new(p)) {
            return false;
        }
    }
    fs::remove_dir_all(&dir).is_ok()
}

/// Whether the init recorded in `state.json` still runs (same pid, same start time).
fn init_alive(state: &Value) -> bool {
    let (Some(pid), Some(start)) = (
        state["init_process_pid"].as_u64(),
        state["init_process_start"].as_u64(),
    ) else {
        return true; // cannot tell
    };
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 22 (starttime), counted after the parenthesised command name.
    let started = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.split(' ').nth(19))
        .and_then(|s| s.parse::<u64>().ok());
    started == Some(start)
}

/// Removes a cgroup directory (its children first, as libcontainer's `RemovePath` does),
/// retrying briefly while the kernel still counts an exiting task in it.
fn remove_cgroup(path: &Path) -> bool {
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) && !remove_cgroup(&e.path()) {
                return false;
            }
        }
    }
    for _ in 0..5 {
        match fs::remove_dir(path) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    false
}
