//! The shim's only `unsafe` code, kept here: closing descriptors it inherited by number, and
//! the launcher's `fork`.
#![allow(unsafe_code)]

/// Closes every descriptor above stderr, so that the daemon the launcher becomes holds none of
/// the descriptors leaked to berthd by whoever started it. A shim outlives its creator, and
/// must not hold its creator's pipes open (a `berthd | tee log` would never see EOF, a test
/// harness would wait for the shim).
///
/// Called by the forked daemon only, while it is single-threaded.
pub(crate) fn close_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect(); // the directory's own descriptor is closed here
    for fd in fds {
        // SAFETY: `fd` was listed as open a moment ago (or was the listing's own descriptor,
        // closed since) and nothing in this single-threaded process owns it: the daemon has
        // opened nothing yet, and std's stdio (0–2) is left alone. Closing it cannot pull a
        // descriptor from under other code; a number no longer open only gives EBADF, which
        // is ignored. (Not through `OwnedFd`: its drop treats EBADF as an IO-safety bug.)
        unsafe { libc::close(fd) };
    }
}

/// What [`fork`] returned in this process.
pub(crate) enum Forked {
    /// The original process.
    Parent,
    /// The new process.
    Child,
}

/// `fork(2)`, for the launcher to become the daemon without executing a second binary.
///
/// Called by the launcher only, while it is single-threaded.
pub(crate) fn fork() -> std::io::Result<Forked> {
    // SAFETY: the launcher has started no thread (it is called first thing in `main`), so the
    // child is a complete copy of a single-threaded process: no lock can be held by a thread
    // that does not exist in the child, and the child may run any code, not only
    // async-signal-safe calls. glibc's `fork` runs its own at-fork handlers.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        _ => Ok(Forked::Parent),
    }
}
