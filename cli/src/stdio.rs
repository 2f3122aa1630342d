//! A container process's stdio as `berth run` and `berth task exec` see it: the FIFOs the
//! client makes for berthd's supervisor (as ctr does), the threads that copy them to and from
//! this process's own stdio, and the terminal's raw mode while a TTY is attached.
//!
//! Opening order matters with FIFOs. The supervisor opens its ends when the task is created;
//! a read end opened before any writer sees end-of-file at once, so each output thread opens
//! its FIFO with a *blocking* open, which returns once the supervisor has opened the write end,
//! and then reads until the supervisor closes it after the process exits. stdin is opened
//! read-write, which never blocks; closing it (at end of our stdin) plus `CloseIO` (which
//! drops the supervisor's spare writer) gives the process end-of-file.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{FileType, Mode};
use rustix::termios::{self, OptionalActions, Termios};

use crate::error::{Error, Result};

/// The client's own runtime directory (FIFOs, temporary mounts).
pub const RUN_DIR: &str = "/run/berth";
/// Where the FIFO directories are made (ctr uses `/run/containerd/fifo`).
pub const FIFO_ROOT: &str = "/run/berth/fifo";

/// The FIFOs of one process, in their own directory, removed on drop.
#[derive(Debug)]
pub struct Fifos {
    dir: PathBuf,
    /// The stdin FIFO, if stdin is attached.
    pub stdin: Option<PathBuf>,
    /// The stdout FIFO (with a TTY: the terminal's output).
    pub stdout: PathBuf,
    /// The stderr FIFO; none with a TTY (the terminal carries both).
    pub stderr: Option<PathBuf>,
}

fn mkfifo(path: &Path) -> Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .map_err(|e| Error::io(format!("making the FIFO {}", path.display()), &e.into()))
}

impl Fifos {
    /// Makes the FIFOs of process `name` (a container or exec id): stdin if `stdin`, stderr
    /// unless `tty`.
    pub fn create(name: &str, stdin: bool, tty: bool) -> Result<Fifos> {
        let root = Path::new(FIFO_ROOT);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::io(format!("making {}", root.display()), &e))?;
        let dir = root.join(format!("{name}-{:016x}", fastrand::u64(..)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("making {}", dir.display()), &e))?;
        let fifos = Fifos {
            stdin: stdin.then(|| dir.join("stdin")),
            stdout: dir.join("stdout"),
            stderr: (!tty).then(|| dir.join("stderr")),
            dir,
        };
        for p in [&fifos.stdin, &Some(fifos.stdout.clone()), &fifos.stderr]
            .into_iter()
            .flatten()
        {
            mkfifo(p)?;
        }
        Ok(fifos)
    }

    /// The three paths as the Tasks API takes them (empty: not attached).
    pub fn paths(&self) -> (String, String, String) {
        let s = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        (
            s(&self.stdin),
            self.stdout.display().to_string(),
            s(&self.stderr),
        )
    }

    /// Starts copying: stdout/stderr FIFOs to ours, our stdin to the stdin FIFO. Call before
    /// the task is created or right after; the output threads wait for the supervisor.
    pub fn attach(&self) -> Result<Attached> {
        let (done_tx, outputs_done) = std::sync::mpsc::channel();
        let mut outputs = 1;
        copy_out(self.stdout.clone(), false, done_tx.clone());
        if let Some(p) = &self.stderr {
            copy_out(p.clone(), true, done_tx);
            outputs += 1;
        }
        let stdin = match &self.stdin {
            Some(p) => Some(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(p)
                    .map_err(|e| Error::io(format!("opening {}", p.display()), &e))?,
            ),
            None => None,
        };
        let (stdin_done_tx, stdin_done) = async_channel::bounded(1);
        Ok(Attached {
            outputs,
            outputs_done,
            stdin,
            stdin_done_tx,
            stdin_done,
        })
    }
}

impl Drop for Fifos {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One output thread: opens `fifo` (blocking until the supervisor's writer is there) and copies
/// it to our stdout or stderr until end-of-file, then reports on `done`.
fn copy_out(fifo: PathBuf, to_stderr: bool, done: std::sync::mpsc::Sender<()>) {
    std::thread::spawn(move || {
        copy_fifo(&fifo, to_stderr);
        let _ = done.send(());
    });
}

fn copy_fifo(fifo: &Path, to_stderr: bool) {
    let Ok(mut f) = File::open(fifo) else {
        return;
    };
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let w = if to_stderr {
            let mut e = io::stderr().lock();
            e.write_all(&buf[..n]).and_then(|()| e.flush())
        } else {
            let mut o = io::stdout().lock();
            o.write_all(&buf[..n]).and_then(|()| o.flush())
        };
        if w.is_err() {
            break;
        }
    }
}

/// Copying in progress.
pub struct Attached {
    /// How many output threads run.
    outputs: usize,
    /// One message per output thread that reached end-of-file.
    outputs_done: std::sync::mpsc::Receiver<()>,
    /// Our end of the stdin FIFO until [`Attached::start_stdin`].
    stdin: Option<File>,
    stdin_done_tx: async_channel::Sender<()>,
    /// Receives once when our stdin reached its end (the caller then sends `CloseIO`).
    pub stdin_done: async_channel::Receiver<()>,
}

impl Attached {
    /// Starts copying our stdin to the process. Call once the supervisor has opened the FIFO
    /// (the task or exec was created): a FIFO's buffered bytes are dropped when its last open
    /// end closes, so an input shorter than the pipe must not be written and closed before.
    pub fn start_stdin(&mut self) {
        let Some(mut f) = self.stdin.take() else {
            return;
        };
        let done = self.stdin_done_tx.clone();
        std::thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = [0u8; 8192];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if f.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            drop(f);
            let _ = done.send_blocking(());
        });
    }

    /// Waits (up to `limit`) for the output to drain: the supervisor closes its writers when
    /// the process has exited, so this returns as soon as the last bytes are out.
    pub fn drain(self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        for _ in 0..self.outputs {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.outputs_done.recv_timeout(left).is_err() {
                return;
            }
        }
    }
}

/// The terminal in raw mode while a TTY is attached; restored on drop.
pub struct RawTerminal {
    saved: Option<Termios>,
}

impl RawTerminal {
    /// Puts our stdin's terminal in raw mode (keys go to the container's terminal unchanged:
    /// Ctrl-C reaches its process as a byte, not us as a signal). A no-op if stdin is not a
    /// terminal.
    pub fn enter() -> RawTerminal {
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return RawTerminal { saved: None };
        }
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawTerminal { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        if termios::tcsetattr(&stdin, OptionalActions::Now, &raw).is_err() {
            return RawTerminal { saved: None };
        }
        RawTerminal { saved: Some(saved) }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(io::stdin(), OptionalActions::Now, t);
        }
    }
}

/// Our terminal's size as (columns, rows), if stdout or stdin is a terminal.
pub fn window_size() -> Option<(u32, u32)> {
    let try_fd = |f: &dyn std::os::fd::AsFd| {
        termios::tcgetwinsize(f)
            .ok()
            .filter(|w| w.ws_col > 0 && w.ws_row > 0)
            .map(|w| (u32::from(w.ws_col), u32::from(w.ws_row)))
    };
    try_fd(&io::stdout()).or_else(|| try_fd(&io::stdin()))
}
