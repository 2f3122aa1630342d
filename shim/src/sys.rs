//! The shim's only `unsafe` code, kept here: borrowing descriptors it inherited by number.
#![allow(unsafe_code)]

use std::os::fd::BorrowedFd;

use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};

/// Marks every descriptor above stderr close-on-exec, so that the daemon the launcher spawns
/// inherits none of the descriptors leaked to berthd by whoever started it. A shim outlives
/// its creator, and must not hold its creator's pipes open (a `berthd | tee log` would never
/// see EOF, a test harness would wait for the shim).
///
/// Called by the launcher only, while it is single-threaded.
pub(crate) fn cloexec_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect(); // the directory's own descriptor is closed here
    for fd in fds {
        // SAFETY: `fd` was listed as open a moment ago, and the launcher is single-threaded
        // here: nothing can close the descriptor (or reuse its number) while it is borrowed
        // for these two calls. A number that is no longer open only makes fcntl fail with
        // EBADF, which is ignored.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = fcntl_getfd(borrowed) {
            let _ = fcntl_setfd(borrowed, flags | FdFlags::CLOEXEC);
        }
    }
}
