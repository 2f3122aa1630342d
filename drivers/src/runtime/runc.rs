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
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_shim::protocol::TaskConfig;
use serde_json::Value;

/// A stopped runc container in the simple case, as read from its `state.json`: what
/// [`Stopped::delete`] removes.
pub(crate) struct Stopped {
    dir: PathBuf,
    cgroups: Vec<String>,
}

/// The stopped runc container of `cfg` if it is in the simple case (see the module docs);
/// `None` otherwise (run `runc delete` then). Nothing of it runs any more: its init is gone and,
/// in its own pid namespace, took every other process of it along.
pub(crate) fn stopped(cfg: &TaskConfig) -> Option<Stopped> {
    if !cfg.starts_through_exec_fifo() {
        return None;
    }
    let dir = Path::new(&cfg.runtime_root).join(&cfg.id);
    let state = serde_json::from_slice::<Value>(&fs::read(dir.join("state.json")).ok()?).ok()?;
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
        return None;
    }
    let mut cgroups: Vec<String> = state["cgroup_paths"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    cgroups.sort_unstable();
    cgroups.dedup();
    Some(Stopped { dir, cgroups })
}

impl Stopped {
    /// Removes the container's cgroups and state as `runc delete` would; `false` if a step
    /// failed (run `runc delete` then).
    pub(crate) fn delete(&self) -> bool {
        self.cgroups.iter().all(|p| remove_cgroup(Path::new(p)))
            && fs::remove_dir_all(&self.dir).is_ok()
    }
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
