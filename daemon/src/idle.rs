//! Giving memory back when berthd goes idle.
//!
//! A pull or an import allocates megabytes of buffers that are free again once it answers, but
//! glibc keeps freed memory for the next allocation. Once no request has been answered and no
//! connection has ended for [`IDLE_AFTER`], a background thread asks the allocator to return
//! its free memory, and once more after [`LATE_AFTER`] of further quiet for what was freed late
//! (worker threads that exit when idle, connections clients leave open). Trimming after every
//! request instead would hand back pages that the next request of a burst (a `ctr run` is a
//! dozen requests) faults in again.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// How long berthd waits without activity before it trims.
const IDLE_AFTER: Duration = Duration::from_millis(500);
/// How long after that first trim it trims again, if still quiet.
const LATE_AFTER: Duration = Duration::from_secs(5);

/// Starts the trimming thread; the returned function tells it a request was answered or a
/// connection ended.
pub(crate) fn spawn_trimmer() -> std::io::Result<impl Fn() + Send + Sync + 'static> {
    let (tx, rx) = channel::<()>();
    std::thread::Builder::new()
        .name("idle-trim".into())
        .stack_size(64 << 10)
        .spawn(move || trim_when_idle(&rx))?;
    Ok(move || {
        let _ = tx.send(());
    })
}

/// What ended a wait for quiet.
enum Wait {
    Quiet,
    Busy,
    Closed,
}

/// Waits for `quiet` with no message on `rx`.
fn quiet_for(rx: &Receiver<()>, quiet: Duration) -> Wait {
    match rx.recv_timeout(quiet) {
        Ok(()) => Wait::Busy,
        Err(RecvTimeoutError::Timeout) => Wait::Quiet,
        Err(RecvTimeoutError::Disconnected) => Wait::Closed,
    }
}

fn trim_when_idle(rx: &Receiver<()>) {
    // Blocks (no wake-ups) until there has been activity since the last trim.
    while rx.recv().is_ok() {
        loop {
            match quiet_for(rx, IDLE_AFTER) {
                Wait::Quiet => trim(IDLE_AFTER),
                Wait::Busy => continue,
                Wait::Closed => return,
            }
            match quiet_for(rx, LATE_AFTER) {
                Wait::Quiet => break,
                Wait::Busy => continue,
                Wait::Closed => return,
            }
        }
        trim(IDLE_AFTER + LATE_AFTER);
    }
}

fn trim(quiet: Duration) {
    let released = crate::sys::release_free_memory();
    log::trace!("idle for {quiet:?}: trimmed the heap (released memory: {released})");
}
