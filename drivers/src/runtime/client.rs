//! The client side of the shim's socket: one connection per call, one JSON line each way.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use berth_shim::protocol::{Reply, Request, SOCKET_FILE};

/// The longest path `connect(2)` takes in a `sockaddr_un` (108 bytes with the NUL).
const SUN_PATH_MAX: usize = 107;

/// Why a call got no reply.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No shim is listening, or it went away before replying (it exits when its task is
    /// over): the bundle's files are the truth now.
    Gone,
    /// Something else failed (a timeout, a malformed reply).
    Io(io::Error),
}

/// Connects to `<bundle>/shim.sock`, through `/proc/self/fd/N/` when the path is too long for
/// a socket address.
fn connect(bundle: &Path) -> io::Result<UnixStream> {
    let path = bundle.join(SOCKET_FILE);
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return UnixStream::connect(&path);
    }
    let dir = File::open(bundle)?;
    UnixStream::connect(format!("/proc/self/fd/{}/{SOCKET_FILE}", dir.as_raw_fd()))
}

fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// Sends `request` to the shim of `bundle` and reads its reply, waiting at most `timeout` for
/// it (`None`: as long as it takes, for a wait).
pub(crate) fn call(
    bundle: &Path,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Reply, CallError> {
    let classify = |e: io::Error| {
        if gone(&e) {
            CallError::Gone
        } else {
            CallError::Io(e)
        }
    };
    let mut stream = connect(bundle).map_err(classify)?;
    stream.set_read_timeout(timeout).map_err(CallError::Io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| CallError::Io(e.into()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(classify)?;
    let mut reply = String::new();
    let n = BufReader::new(&stream)
        .read_line(&mut reply)
        .map_err(classify)?;
    if n == 0 || !reply.ends_with('\n') {
        return Err(CallError::Gone);
    }
    serde_json::from_str(&reply).map_err(|e| {
        CallError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed reply from the shim: {e}: {reply:?}"),
        ))
    })
}
