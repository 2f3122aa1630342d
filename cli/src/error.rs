//! Errors the user sees: every failure becomes one sentence that says what went wrong and, where
//! there is one, what to do about it, plus the process exit code scripts can branch on.
//!
//! | exit code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the operation failed (not found, already exists, bad digest, …) |
//! | 2 | usage error (bad flags or arguments; clap exits with 2 itself) |
//! | 3 | berthd cannot be reached (no socket, refused, permission, lost connection) |

use std::fmt;
use std::io;
use std::path::Path;

use tonic::{Code, Status};

/// Exit code: the operation failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: the command line was wrong.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: berthd could not be reached.
pub const EXIT_CONNECT: i32 = 3;

/// A failure, ready to print: a human message and an exit code.
#[derive(Debug)]
pub struct Error {
    message: String,
    code: i32,
}

/// Shorthand for the CLI's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The operation failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            code: EXIT_FAILED,
        }
    }

    /// The command line is wrong in a way clap could not see (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            code: EXIT_USAGE,
        }
    }

    /// Ends the command with `code` and prints nothing (a container's exit code passed on).
    pub fn silent(code: i32) -> Self {
        Error {
            message: String::new(),
            code,
        }
    }

    /// The same error with another exit code.
    #[must_use]
    pub fn with_code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }

    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        self.code
    }

    /// The message.
    #[cfg(test)]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Connecting to the socket at `address` failed.
    pub fn connect(address: &Path, e: &io::Error) -> Self {
        let sock = address.display();
        let hint =
            "is berthd running? (start it with `berthd`, or pass --address / set BERTH_ADDRESS)";
        let message = match e.kind() {
            io::ErrorKind::NotFound => {
                format!("cannot reach berthd at {sock}: no such socket — {hint}")
            }
            io::ErrorKind::ConnectionRefused => format!(
                "cannot reach berthd at {sock}: connection refused (the socket exists but nothing \
                 listens on it; a stale socket from a daemon that stopped?) — {hint}"
            ),
            io::ErrorKind::PermissionDenied => format!(
                "cannot reach berthd at {sock}: permission denied — run berth as root, or as a user \
                 allowed to open the socket (it is mode 0660)"
            ),
            _ => format!("cannot reach berthd at {sock}: {e} — {hint}"),
        };
        Error {
            message,
            code: EXIT_CONNECT,
        }
    }

    /// The command did not finish within `--timeout`.
    pub fn timeout(after: std::time::Duration) -> Self {
        Error::failed(format!(
            "timed out after {} (--timeout); berthd may be overloaded, or the operation needs longer",
            crate::parse::format_duration(after)
        ))
    }

    /// A local file operation failed.
    pub fn io(what: impl fmt::Display, e: &io::Error) -> Self {
        Error::failed(format!("{what}: {e}"))
    }
}

/// What a call was about, to word its errors: `what` names the object (`content sha256:…`,
/// `namespace "x"`, `lease "y"`), `namespace` the namespace it was looked up in, if any.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The object of the call, as the user would name it.
    pub what: &'a str,
    /// The namespace the object lives in (None for namespaces themselves).
    pub namespace: Option<&'a str>,
    /// The berthd socket (for connection errors).
    pub address: &'a Path,
}

impl Ctx<'_> {
    fn in_ns(&self) -> String {
        match self.namespace {
            Some(ns) => format!(" in namespace {ns:?}"),
            None => String::new(),
        }
    }
}

/// True if a status comes from the transport (the connection broke) rather than from berthd.
fn is_transport_failure(s: &Status) -> bool {
    if s.code() != Code::Unknown && s.code() != Code::Unavailable && s.code() != Code::Internal {
        return false;
    }
    let m = s.message().to_ascii_lowercase();
    [
        "connection",
        "broken pipe",
        "h2 protocol",
        "service was not ready",
        "error trying to connect",
        "operation was canceled",
        "transport",
        "stream closed",
        "reset",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// Maps a gRPC status from berthd to a message for the user.
pub fn from_status(s: &Status, ctx: Ctx<'_>) -> Error {
    let msg = s.message();
    let what = ctx.what;
    if is_transport_failure(s) {
        return Error {
            message: format!(
                "lost the connection to berthd at {} while working on {what}: {msg} — did berthd \
                 stop or restart? Check its log, then retry",
                ctx.address.display()
            ),
            code: EXIT_CONNECT,
        };
    }
    let text = match s.code() {
        Code::NotFound => format!("{what} not found{}", ctx.in_ns()),
        Code::AlreadyExists => format!("{what} already exists{}", ctx.in_ns()),
        Code::InvalidArgument if msg.starts_with("namespace") => format!(
            "invalid namespace{}: {} — pass a valid -n NAME (or BERTH_NAMESPACE)",
            ctx.namespace.map(|n| format!(" {n:?}")).unwrap_or_default(),
            msg.trim_start_matches("namespace: ")
        ),
        Code::InvalidArgument if msg.starts_with("filter") => format!(
            "invalid {msg} — filters look like digest==sha256:…, size==N or labels.\"key\"==value; \
             several filters are OR-ed, a comma inside one means AND"
        ),
        Code::InvalidArgument => format!("invalid request for {what}: {msg}"),
        Code::FailedPrecondition if msg.contains("namespace is required") => {
            "berthd needs a namespace: pass -n NAME or set BERTH_NAMESPACE".to_string()
        }
        Code::FailedPrecondition if msg.contains("must be empty") => format!(
            "cannot remove {what}: it is not empty ({msg}) — delete what it still holds first \
             (`berth -n NAME content ls`, `berth -n NAME lease ls`)"
        ),
        Code::FailedPrecondition => format!("cannot do that to {what}: {msg}"),
        Code::Unavailable => format!("{what} is busy: {msg} — retry in a moment"),
        Code::DeadlineExceeded => {
            format!("berthd did not answer in time for {what} (--timeout): {msg}")
        }
        Code::Unimplemented => format!(
            "berthd does not implement this call ({msg}); is it older than this client ({})?",
            env!("CARGO_PKG_VERSION")
        ),
        Code::PermissionDenied | Code::Unauthenticated => {
            format!("berthd refused access to {what}: {msg}")
        }
        Code::ResourceExhausted => {
            format!("berthd ran out of resources on {what}: {msg} — is its disk (--root) full?")
        }
        Code::OutOfRange => format!("{what}: out of range: {msg}"),
        Code::DataLoss => format!("{what}: data loss on berthd: {msg}"),
        Code::Cancelled => format!("{what}: the call was cancelled: {msg}"),
        _ => format!("berthd failed on {what}: {msg} ({:?})", s.code()),
    };
    Error::failed(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx<'static> {
        Ctx {
            what: "content sha256:ab",
            namespace: Some("default"),
            address: Path::new("/run/berth/berth.sock"),
        }
    }

    #[test]
    fn not_found_names_object_and_namespace() {
        let e = from_status(&Status::not_found("x"), ctx());
        assert_eq!(e.exit_code(), EXIT_FAILED);
        assert_eq!(
            e.message(),
            "content sha256:ab not found in namespace \"default\""
        );
    }

    #[test]
    fn missing_socket_is_exit_3_with_hint() {
        let e = Error::connect(
            Path::new("/nope.sock"),
            &io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(e.exit_code(), EXIT_CONNECT);
        assert!(
            e.message().contains("is berthd running?"),
            "{}",
            e.message()
        );
        assert!(e.message().contains("/nope.sock"));
    }

    #[test]
    fn broken_connection_is_exit_3() {
        let e = from_status(
            &Status::unknown("error reading a body from connection"),
            ctx(),
        );
        assert_eq!(e.exit_code(), EXIT_CONNECT);
    }
}
