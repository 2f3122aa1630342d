//! A process with a terminal: receiving the pty master from the runtime over the console
//! socket, and copying between it and the client's FIFOs without blocking.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
use rustix::io::Errno;
use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::termios::{tcsetwinsize, Winsize};

/// The most bytes buffered in each direction.
const CHUNK: usize = 32 * 1024;
/// After its process exited, how long a copy that makes no progress (a client that does not
/// read) may hold the shim up.
pub(crate) const STALL_AFTER_EXIT: Duration = Duration::from_secs(5);
/// What the terminal turns into end-of-file for a reader in canonical mode (`^D`, VEOF).
const VEOF: u8 = 0x04;

/// Receives the pty master the runtime sent over the console socket `listener` (runc sends it
/// with `SCM_RIGHTS` before `create`/`exec` returns, so it is already queued).
pub(crate) fn receive_master(listener: &UnixListener) -> io::Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let (stream, _) = listener.accept().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("the runtime did not connect to the console socket: {e}"),
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 4096];
    recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                let flags = fcntl_getfl(&fd)?;
                fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
                return Ok(fd);
            }
        }
    }
    Err(io::Error::other(
        "the runtime sent no terminal on the console socket",
    ))
}

/// Which of a terminal's descriptors is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TtyFd {
    /// The stdin FIFO (readable).
    Stdin,
    /// The master (readable and/or writable).
    Master,
    /// The stdout FIFO (writable).
    Stdout,
}

/// The copy loop's state for one terminal.
pub(crate) struct Tty {
    master: OwnedFd,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    to_master: Vec<u8>,
    to_stdout: Vec<u8>,
    master_closed: bool,
    send_eof: bool,
    owner_exited: bool,
    last_progress: Instant,
}

fn readable(revents: PollFlags) -> bool {
    revents.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
}

impl Tty {
    /// A copy loop between `master` and the client's `stdin` (non-blocking reader) and
    /// `stdout` (non-blocking).
    pub fn new(master: OwnedFd, stdin: Option<OwnedFd>, stdout: Option<OwnedFd>) -> Self {
        Tty {
            master,
            stdin,
            stdout,
            to_master: Vec::new(),
            to_stdout: Vec::new(),
            master_closed: false,
            send_eof: false,
            owner_exited: false,
            last_progress: Instant::now(),
        }
    }

    /// The descriptors to poll, with the events wanted.
    pub fn interest(&self) -> Vec<(BorrowedFd<'_>, PollFlags, TtyFd)> {
        let mut v = Vec::with_capacity(3);
        if self.master_closed {
            if let (false, Some(out)) = (self.to_stdout.is_empty(), &self.stdout) {
                v.push((out.as_fd(), PollFlags::OUT, TtyFd::Stdout));
            }
            return v;
        }
        if let (true, Some(stdin)) = (self.to_master.is_empty(), &self.stdin) {
            v.push((stdin.as_fd(), PollFlags::IN, TtyFd::Stdin));
        }
        let mut m = PollFlags::empty();
        if self.to_stdout.is_empty() {
            m |= PollFlags::IN;
        }
        if !self.to_master.is_empty() || self.send_eof {
            m |= PollFlags::OUT;
        }
        if !m.is_empty() {
            v.push((self.master.as_fd(), m, TtyFd::Master));
        }
        if let (false, Some(out)) = (self.to_stdout.is_empty(), &self.stdout) {
            v.push((out.as_fd(), PollFlags::OUT, TtyFd::Stdout));
        }
        v
    }

    /// Handles readiness of one descriptor.
    pub fn handle(&mut self, which: TtyFd, revents: PollFlags) {
        match which {
            TtyFd::Stdin if readable(revents) => self.read_stdin(),
            TtyFd::Master => {
                if revents.contains(PollFlags::OUT) {
                    self.flush_master();
                }
                if readable(revents) {
                    self.read_master();
                }
            }
            TtyFd::Stdout => self.flush_stdout(),
            TtyFd::Stdin => {}
        }
    }

    /// Copies everything the master has now (used when the process exits, before its waiters
    /// are answered).
    pub fn pump(&mut self) {
        self.flush_stdout();
        while self.to_stdout.is_empty() && self.read_master() > 0 {}
    }

    /// The process that owns the terminal has exited.
    pub fn owner_exited(&mut self) {
        self.owner_exited = true;
        self.pump();
    }

    /// Whether the copy is over: the master is closed (every holder of the terminal is gone)
    /// and the output is delivered, or the process has exited and the client has not read
    /// for [`STALL_AFTER_EXIT`].
    pub fn done(&self) -> bool {
        (self.master_closed && (self.to_stdout.is_empty() || self.stdout.is_none()))
            || (self.owner_exited && self.last_progress.elapsed() > STALL_AFTER_EXIT)
    }

    /// Whether the process has exited but the copy is not over (the loop then wakes up to
    /// check [`Tty::done`]).
    pub fn draining(&self) -> bool {
        self.owner_exited
    }

    /// Closes the process's input: stop copying from the stdin FIFO and send `^D` once what was
    /// read is delivered.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
        self.send_eof = true;
        self.flush_master();
    }

    /// Sets the terminal's size.
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        tcsetwinsize(
            &self.master,
            Winsize {
                ws_row: height,
                ws_col: width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )?;
        Ok(())
    }

    fn read_stdin(&mut self) {
        let Some(stdin) = &self.stdin else { return };
        let mut buf = vec![0u8; CHUNK];
        match rustix::io::read(stdin, &mut buf) {
            Ok(0) => self.stdin = None, // a file at its end (a FIFO keeps its spare writer)
            Ok(n) => {
                self.to_master.extend_from_slice(&buf[..n]);
                self.last_progress = Instant::now();
                self.flush_master();
            }
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(_) => self.stdin = None,
        }
    }

    fn flush_master(&mut self) {
        if self.master_closed {
            self.to_master.clear();
            return;
        }
        while !self.to_master.is_empty() {
            match rustix::io::write(&self.master, &self.to_master) {
                Ok(n) => {
                    self.to_master.drain(..n);
                    self.last_progress = Instant::now();
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return,
                Err(_) => {
                    self.to_master.clear();
                    return;
                }
            }
        }
        if self.send_eof {
            match rustix::io::write(&self.master, &[VEOF]) {
                Err(Errno::AGAIN | Errno::INTR) => {}
                _ => self.send_eof = false,
            }
        }
    }

    /// Reads what the master has (up to a chunk) and forwards it; returns the bytes read.
    fn read_master(&mut self) -> usize {
        if self.master_closed {
            return 0;
        }
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0;
        loop {
            match rustix::io::read(&self.master, &mut buf) {
                // EIO: every holder of the terminal's slave side has closed it.
                Ok(0) | Err(Errno::IO) => {
                    self.master_closed = true;
                    self.to_master.clear();
                    self.send_eof = false;
                    break;
                }
                Ok(n) => {
                    total += n;
                    self.last_progress = Instant::now();
                    if self.stdout.is_some() {
                        self.to_stdout.extend_from_slice(&buf[..n]);
                    }
                    if self.to_stdout.len() >= CHUNK {
                        break;
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => break,
                Err(_) => {
                    self.master_closed = true;
                    break;
                }
            }
        }
        self.flush_stdout();
        total
    }

    fn flush_stdout(&mut self) {
        let Some(out) = &self.stdout else {
            self.to_stdout.clear();
            return;
        };
        while !self.to_stdout.is_empty() {
            match rustix::io::write(out, &self.to_stdout) {
                Ok(n) => {
                    self.to_stdout.drain(..n);
                    self.last_progress = Instant::now();
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return,
                Err(_) => {
                    self.stdout = None;
                    self.to_stdout.clear();
                    return;
                }
            }
        }
    }
}
