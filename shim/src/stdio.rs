//! Opening a process's IO without ever blocking, the way containerd's shim opens FIFOs.
//!
//! * stdin FIFO: a reader opened `O_NONBLOCK` (it never blocks), then a spare writer, which
//!   succeeds because a reader now exists. The spare writer keeps the process from seeing EOF
//!   when the client closes its end; only `close_stdin` drops it.
//! * stdout/stderr FIFO: a read-write hold (`O_RDWR` never blocks on Linux and makes the FIFO
//!   have a reader), then a plain write-only end for the process. The hold keeps the process's
//!   writes from failing with `EPIPE` before the client's reader arrives; it is dropped when
//!   the process exits, so that the client sees EOF once the process's own ends are closed.
//! * Without a terminal the process gets these FIFO ends directly: no copy loop. With one, the
//!   shim copies between the FIFOs and the terminal's master (see [`crate::tty`]).
//! * A path that does not exist is created as a FIFO (as containerd's `fifo.OpenFifo` with
//!   `O_CREAT` does); a regular file, or `file://PATH`, is read (stdin) or appended to.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio as ChildStdio};

use rustix::fs::{fcntl_setfl, mkfifoat, open, stat, FileType, Mode, OFlags, CWD};

use crate::protocol::Stdio;

/// The opened IO of one process.
#[derive(Default)]
pub(crate) struct ProcIo {
    /// What the runtime, and so the process, gets as fds 0, 1 and 2 (`None`: `/dev/null`).
    pub child: [Option<OwnedFd>; 3],
    /// The spare writer on the stdin FIFO.
    pub stdin_keep: Option<OwnedFd>,
    /// Read-write holds on the stdout/stderr FIFOs.
    pub out_keep: Vec<OwnedFd>,
    /// Terminal mode: the stdin FIFO's reader (non-blocking), copied to the terminal.
    pub tty_in: Option<OwnedFd>,
    /// Terminal mode: the stdout FIFO (read-write, non-blocking) the terminal is copied to.
    pub tty_out: Option<OwnedFd>,
}

impl ProcIo {
    /// Gives the process's ends to `cmd` as its stdin, stdout and stderr; they are closed in
    /// the shim when `cmd` is dropped.
    pub fn attach(&mut self, cmd: &mut Command) {
        let mut take = |i: usize| match self.child[i].take() {
            Some(fd) => ChildStdio::from(fd),
            None => ChildStdio::null(),
        };
        cmd.stdin(take(0)).stdout(take(1)).stderr(take(2));
    }
}

/// What a path names.
enum Target<'a> {
    Fifo(&'a str),
    File(&'a str),
}

fn classify(path: &str) -> io::Result<Target<'_>> {
    if let Some(file) = path.strip_prefix("file://") {
        return Ok(Target::File(file));
    }
    if path.contains("://") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("unsupported IO URI {path:?}: only FIFO paths and file:// are supported"),
        ));
    }
    match stat(path) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Fifo => Ok(Target::Fifo(path)),
        Ok(_) => Ok(Target::File(path)),
        Err(rustix::io::Errno::NOENT) => {
            mkfifoat(CWD, path, Mode::from_raw_mode(0o700))?;
            Ok(Target::Fifo(path))
        }
        Err(e) => Err(e.into()),
    }
}

fn with_path(path: &str, e: impl Into<io::Error>) -> io::Error {
    let e: io::Error = e.into();
    io::Error::new(e.kind(), format!("{path}: {e}"))
}

/// Opens the IO named by `stdio`.
pub(crate) fn open_io(stdio: &Stdio) -> io::Result<ProcIo> {
    let mut io = ProcIo::default();
    let cloexec = OFlags::CLOEXEC;
    if !stdio.stdin.is_empty() {
        let p = stdio.stdin.as_str();
        match classify(p).map_err(|e| with_path(p, e))? {
            Target::Fifo(p) => {
                let reader = open(
                    p,
                    OFlags::RDONLY | OFlags::NONBLOCK | cloexec,
                    Mode::empty(),
                )
                .map_err(|e| with_path(p, e))?;
                let keep = open(
                    p,
                    OFlags::WRONLY | OFlags::NONBLOCK | cloexec,
                    Mode::empty(),
                )
                .map_err(|e| with_path(p, e))?;
                io.stdin_keep = Some(keep);
                if stdio.terminal {
                    io.tty_in = Some(reader);
                } else {
                    // The process reads it blocking (the spare writer keeps it from EOF).
                    fcntl_setfl(reader.as_fd(), OFlags::empty())?;
                    io.child[0] = Some(reader);
                }
            }
            Target::File(p) => {
                let f = open(p, OFlags::RDONLY | cloexec, Mode::empty())
                    .map_err(|e| with_path(p, e))?;
                if stdio.terminal {
                    // A file never blocks; the copy loop reads it to its end.
                    fcntl_setfl(f.as_fd(), OFlags::NONBLOCK)?;
                    io.tty_in = Some(f);
                } else {
                    io.child[0] = Some(f);
                }
            }
        }
    }
    let outs: &[(usize, &str)] = if stdio.terminal {
        &[(1, stdio.stdout.as_str())]
    } else {
        &[(1, stdio.stdout.as_str()), (2, stdio.stderr.as_str())]
    };
    for &(fd, p) in outs {
        if p.is_empty() {
            continue;
        }
        let (hold, end) = match classify(p).map_err(|e| with_path(p, e))? {
            Target::Fifo(p) => {
                let hold = open(p, OFlags::RDWR | OFlags::NONBLOCK | cloexec, Mode::empty())
                    .map_err(|e| with_path(p, e))?;
                if stdio.terminal {
                    (None, hold)
                } else {
                    // Cannot block: the hold is a reader.
                    let end = open(p, OFlags::WRONLY | cloexec, Mode::empty())
                        .map_err(|e| with_path(p, e))?;
                    (Some(hold), end)
                }
            }
            Target::File(p) => {
                let f = open(
                    p,
                    OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | cloexec,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| with_path(p, e))?;
                (None, f)
            }
        };
        if stdio.terminal {
            fcntl_setfl(end.as_fd(), OFlags::NONBLOCK)?;
            io.tty_out = Some(end);
        } else {
            io.out_keep.extend(hold);
            io.child[fd] = Some(end);
        }
    }
    Ok(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn tmp(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("berth-shim-stdio-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn fifos_open_without_a_client_and_stdout_reaches_a_late_reader() {
        let d = tmp("late");
        let out = d.join("out");
        let stdio = Stdio {
            stdin: d.join("in").to_str().unwrap().into(),
            stdout: out.to_str().unwrap().into(),
            stderr: String::new(),
            terminal: false,
        };
        // Neither FIFO exists nor has a client: nothing blocks, both are created.
        let mut io = open_io(&stdio).unwrap();
        assert!(io.stdin_keep.is_some() && io.out_keep.len() == 1);
        assert!(io.child[0].is_some() && io.child[1].is_some() && io.child[2].is_none());
        // The process writes before any client reads; then a client comes and reads it.
        let mut w = std::fs::File::from(io.child[1].take().unwrap());
        w.write_all(b"early\n").unwrap();
        let mut r = std::fs::File::open(&out).unwrap();
        drop(w);
        io.out_keep.clear();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "early\n");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn stdin_reaches_eof_only_without_the_spare_writer() {
        let d = tmp("stdin");
        let p = d.join("in");
        let stdio = Stdio {
            stdin: p.to_str().unwrap().into(),
            ..Stdio::default()
        };
        let mut io = open_io(&stdio).unwrap();
        let mut reader = std::fs::File::from(io.child[0].take().unwrap());
        let mut client = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        client.write_all(b"abc").unwrap();
        drop(client);
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).unwrap(), 3);
        // The client is gone but the spare writer holds: a read would block. Drop it: EOF.
        io.stdin_keep = None;
        assert_eq!(reader.read(&mut buf).unwrap(), 0);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn uris_other_than_file_are_refused() {
        let stdio = Stdio {
            stdout: "binary:///bin/logger".into(),
            ..Stdio::default()
        };
        let err = open_io(&stdio).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    }
}
