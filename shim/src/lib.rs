//! # berth-shim: the per-container supervisor
//!
//! One small process per container, started by berthd and independent of it: berthd can be
//! killed and restarted while the containers keep running, their IO keeps flowing and their
//! exits are recorded.
//!
//! ## How it outlives berthd
//!
//! berthd runs `berth-shim start <bundle>` and waits for it. That *launcher* forks the daemon
//! (no second binary is executed: the fork carries on as the daemon and closes every
//! descriptor it inherited beyond stdio) and exits at once, so the daemon is orphaned right
//! away and adopted by init (or the nearest child subreaper): berthd is never its parent for
//! more than the launcher's few hundred microseconds, never has to reap it, and its death
//! sends it nothing. (`berth-shim serve <bundle>` runs the daemon in the foreground.) The
//! daemon calls `setsid` (no controlling terminal, out of berthd's process group) and makes
//! itself a child subreaper, so the container's processes become its children once the
//! runtime's own process exits.
//!
//! The daemon then runs `<runtime> create` (see [`protocol`] for the bundle's files), reports
//! the init's pid on the stdout berthd gave the launcher, and serves requests on
//! `<bundle>/shim.sock` until the init and every exec have exited, their exits are recorded in
//! `<bundle>/exit/`, and their IO is closed; then it removes the socket and exits.
//!
//! ## Cost
//!
//! No async runtime and no threads: one `poll` loop over the listening socket, the
//! connections, a pidfd per process and the terminal copies. Build it statically for the
//! smallest footprint (glibc's shared pages otherwise count in its RSS):
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_PANIC=abort \
//!     cargo build --release -p berth-shim --target x86_64-unknown-linux-gnu
//! ```
//!
//! ## Other commands
//!
//! `berth-shim mount <fstype> <source> <target> <flags> <data>` performs one `mount(2)` from
//! its working directory: berthd runs it with the directory of an overlay's relative
//! `lowerdir=` paths (a deep layer chain whose absolute paths do not fit in a page), which a
//! multi-threaded daemon cannot `chdir` into itself.
// No unsafe code, except in `sys` (one borrow of an inherited descriptor, documented there).
#![deny(unsafe_code)]
#![deny(missing_docs)]

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::Path;

mod daemon;
pub mod protocol;
mod stdio;
mod sys;
mod tty;

use protocol::{ErrorCode, Reply};

/// The shim's entry point: dispatches on the first argument and returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    let arg = |i: usize| args.get(i).map(OsString::as_os_str);
    match (arg(1).and_then(OsStr::to_str), arg(2)) {
        (Some("start"), Some(bundle)) => launch(bundle),
        (Some("serve"), Some(bundle)) => daemon::serve(Path::new(bundle)),
        (Some("mount"), _) if args.len() == 7 => mount(&args[2..]),
        _ => {
            eprintln!(
                "usage: berth-shim start BUNDLE\n       \
                 berth-shim mount FSTYPE SOURCE TARGET FLAGS DATA"
            );
            2
        }
    }
}

/// The launcher: forks the daemon and exits without waiting for it.
fn launch(bundle: &OsStr) -> i32 {
    match sys::fork() {
        Ok(sys::Forked::Parent) => 0,
        Ok(sys::Forked::Child) => {
            // stdin from /dev/null; stdout stays berthd's pipe until the handshake
            if let Ok(null) = rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                let _ = rustix::stdio::dup2_stdin(&null);
            }
            sys::close_inherited_fds();
            daemon::serve(Path::new(bundle))
        }
        Err(e) => {
            let reply = Reply::error(
                ErrorCode::Internal,
                format!("cannot start the shim daemon: {e}"),
            );
            let mut line = serde_json::to_vec(&reply).unwrap_or_default();
            line.push(b'\n');
            let _ = std::io::stdout().write_all(&line);
            1
        }
    }
}

/// `mount FSTYPE SOURCE TARGET FLAGS DATA`, relative paths taken from the working directory.
fn mount(args: &[OsString]) -> i32 {
    let Some(flags) = args[3].to_str().and_then(|f| f.parse::<u32>().ok()) else {
        eprintln!("berth-shim mount: FLAGS must be a number");
        return 2;
    };
    let Ok(data) = std::ffi::CString::new(args[4].as_encoded_bytes()) else {
        eprintln!("berth-shim mount: DATA contains a NUL byte");
        return 2;
    };
    let data = (!data.is_empty()).then_some(data.as_c_str());
    match rustix::mount::mount(
        args[1].as_os_str(),
        args[2].as_os_str(),
        args[0].as_os_str(),
        rustix::mount::MountFlags::from_bits_retain(flags),
        data,
    ) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "berth-shim mount: {} on {}: {e}",
                args[0].to_string_lossy(),
                args[2].to_string_lossy()
            );
            1
        }
    }
}
