//! The supervisor proper: one process per container, one thread, one `poll` loop.
//!
//! It creates the container with the runtime, reaps every child (it is a child subreaper, so
//! the container's init and every exec process become its children once the runtime's own
//! process has exited), records each exit in `exit/` before it tells anyone, serves requests on
//! `shim.sock`, copies terminal IO, and exits once nothing is left to supervise.
//!
//! Exits are noticed through pidfds (one per supervised process, polled with everything else),
//! so no signal handler is needed; other children (orphans the kernel reparents to the
//! subreaper) are reaped by the same `waitpid(-1, WNOHANG)` sweep, at the latest every
//! [`SWEEP_INTERVAL`]. The runtime's processes are waited for by pid (`Command::status`)
//! while the loop is not running, so the sweep never takes their status.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{open, Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{
    getpid, pidfd_open, pidfd_send_signal, set_child_subreaper, setsid, wait, waitid, Pid,
    PidfdFlags, Signal, WaitId, WaitIdOptions, WaitOptions,
};

use crate::protocol::{
    exit_key, valid_id, ErrorCode, ExitRecord, ProcessState, ProcessStatus, Reply, Request, Stdio,
    TaskConfig, EXECS_DIR, EXIT_DIR, INIT_KEY, INIT_PID_FILE, RUNTIME_LOG_FILE, SHIM_PID_FILE,
    SOCKET_FILE, TASK_FILE,
};
use crate::stdio::{open_io, ProcIo};
use crate::tty::{receive_master, Tty, TtyFd};

/// How often orphaned children are reaped when nothing else wakes the loop.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// How long `start` waits for runc's init to reach its exec FIFO.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of unanswered requests one connection may buffer.
const MAX_REQUEST: usize = 1 << 20;

/// Runs the daemon for the bundle `bundle`: never returns until the shim is done.
pub(crate) fn serve(bundle: &Path) -> i32 {
    // A session of its own (no terminal, no signals meant for berthd's process group), and the
    // adoptive parent of every orphan below it.
    let _ = setsid();
    let me = getpid();
    let mut shim = match Shim::new(bundle, me) {
        Ok(s) => s,
        Err(e) => {
            handshake(&Reply::error(ErrorCode::Internal, e));
            return 1;
        }
    };
    match shim.create_init() {
        Ok(pid) => handshake(&Reply::Started { pid }),
        Err(e) => {
            shim.cleanup();
            handshake(&Reply::error(ErrorCode::Internal, e));
            return 1;
        }
    }
    shim.run();
    shim.cleanup();
    0
}

/// Writes the start-up reply to the stdout the launcher inherited (berthd's pipe), then points
/// stdout at `/dev/null` so that berthd's read sees EOF and nothing else ever goes there.
fn handshake(reply: &Reply) {
    let mut out = io::stdout().lock();
    let mut line = serde_json::to_vec(reply).unwrap_or_default();
    line.push(b'\n');
    let _ = out.write_all(&line);
    let _ = out.flush();
    drop(out);
    if let Ok(null) = open("/dev/null", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()) {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn read_pid(path: &Path) -> Result<u32, String> {
    let s = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    s.trim()
        .parse()
        .map_err(|_| format!("{}: not a pid: {s:?}", path.display()))
}

/// One supervised process.
struct Proc {
    exec_id: String,
    stdio: Stdio,
    pid: u32,
    pidfd: Option<OwnedFd>,
    status: ProcessStatus,
    exit: Option<ExitRecord>,
    /// The spare writer on the stdin FIFO (non-terminal IO).
    stdin_keep: Option<OwnedFd>,
    /// Read-write holds on the stdout/stderr FIFOs (non-terminal IO).
    out_keep: Vec<OwnedFd>,
    tty: Option<Tty>,
}

impl Proc {
    fn new(exec_id: String, stdio: Stdio) -> Self {
        Proc {
            exec_id,
            stdio,
            pid: 0,
            pidfd: None,
            status: ProcessStatus::Created,
            exit: None,
            stdin_keep: None,
            out_keep: Vec::new(),
            tty: None,
        }
    }

    fn state(&self) -> ProcessState {
        ProcessState {
            exec_id: self.exec_id.clone(),
            pid: self.pid,
            status: self.status,
            exit: self.exit,
            stdio: self.stdio.clone(),
        }
    }

    /// Takes over the IO the runtime did not take: the holds and the terminal copy.
    fn adopt_io(&mut self, io: ProcIo, master: Option<OwnedFd>) {
        self.stdin_keep = io.stdin_keep;
        self.out_keep = io.out_keep;
        self.tty = master.map(|m| Tty::new(m, io.tty_in, io.tty_out));
    }
}

/// A client connection.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    /// The process whose exit this connection waits for.
    waiting: Option<String>,
    closed: bool,
}

/// What a ready descriptor belongs to.
#[derive(Debug, Clone, Copy)]
enum Token {
    Listener,
    Pidfd,
    Tty(usize, TtyFd),
    Conn(usize),
}

struct Shim {
    cfg: TaskConfig,
    bundle: PathBuf,
    me: Pid,
    /// `[0]` is the init; then the exec processes in the order they were added.
    procs: Vec<Proc>,
    conns: Vec<Conn>,
    listener: Option<UnixListener>,
    consoles: u32,
    shutdown: bool,
}

impl Shim {
    fn new(bundle: &Path, me: Pid) -> Result<Self, String> {
        set_child_subreaper(Some(me)).map_err(|e| format!("cannot become a subreaper: {e}"))?;
        std::env::set_current_dir(bundle)
            .map_err(|e| format!("cannot enter the bundle {}: {e}", bundle.display()))?;
        let bundle = std::env::current_dir().unwrap_or_else(|_| bundle.to_path_buf());
        let task = fs::read(TASK_FILE).map_err(|e| format!("{TASK_FILE}: {e}"))?;
        let cfg: TaskConfig =
            serde_json::from_slice(&task).map_err(|e| format!("{TASK_FILE}: {e}"))?;
        fs::write(SHIM_PID_FILE, me.as_raw_nonzero().to_string())
            .map_err(|e| format!("{SHIM_PID_FILE}: {e}"))?;
        fs::create_dir_all(EXIT_DIR).map_err(|e| format!("{EXIT_DIR}: {e}"))?;
        let init = Proc::new(String::new(), cfg.stdio.clone());
        Ok(Shim {
            cfg,
            bundle,
            me,
            procs: vec![init],
            conns: Vec::new(),
            listener: None,
            consoles: 0,
            shutdown: false,
        })
    }

    /// `<runtime> --root R --log log.json --log-format json`.
    fn runtime(&self) -> Command {
        let mut c = Command::new(&self.cfg.runtime);
        c.arg("--root")
            .arg(&self.cfg.runtime_root)
            .arg("--log")
            .arg(self.bundle.join(RUNTIME_LOG_FILE))
            .arg("--log-format")
            .arg("json");
        c
    }

    /// Runs a runtime command to its end (its stdio already set) and explains a failure with
    /// the last error the runtime logged.
    fn run_runtime(&self, mut cmd: Command, what: &str) -> Result<(), String> {
        let log = self.bundle.join(RUNTIME_LOG_FILE);
        let seen = fs::metadata(&log).map_or(0, |m| m.len());
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {}: {e}", self.cfg.runtime));
        drop(cmd); // closes the process's IO ends in the shim
        let status = status?;
        if status.success() {
            return Ok(());
        }
        Err(format!(
            "{} {what} failed ({status}): {}",
            self.cfg.runtime,
            last_logged_error(&log, seen)
        ))
    }

    /// A fresh console socket in the bundle (given to the runtime by its relative name: the
    /// shim's working directory is the bundle, and runc's too, so length limits never bite).
    fn console(&mut self) -> Result<(String, UnixListener), String> {
        self.consoles += 1;
        let name = format!("console-{}.sock", self.consoles);
        let _ = fs::remove_file(&name);
        let l = UnixListener::bind(&name).map_err(|e| format!("console socket {name}: {e}"))?;
        Ok((name, l))
    }

    /// `runc create`: the init exists, stopped before its exec, when this returns its pid.
    fn create_init(&mut self) -> Result<u32, String> {
        let _ = fs::remove_file(INIT_PID_FILE);
        let stdio = self.cfg.stdio.clone();
        let mut io = open_io(&stdio).map_err(|e| format!("opening the init's IO: {e}"))?;
        let console = if stdio.terminal {
            Some(self.console()?)
        } else {
            None
        };
        let mut cmd = self.runtime();
        cmd.arg("create")
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--pid-file")
            .arg(self.bundle.join(INIT_PID_FILE));
        if let Some((name, _)) = &console {
            cmd.arg("--console-socket").arg(name);
        }
        cmd.arg(&self.cfg.id);
        io.attach(&mut cmd);
        let created = self.run_runtime(cmd, "create");
        let master = match (&created, &console) {
            (Ok(()), Some((name, l))) => {
                let m = receive_master(l);
                let _ = fs::remove_file(name);
                Some(m.map_err(|e| format!("receiving the init's terminal: {e}"))?)
            }
            (_, Some((name, _))) => {
                let _ = fs::remove_file(name);
                None
            }
            _ => None,
        };
        created?;
        let pid = read_pid(&self.bundle.join(INIT_PID_FILE))?;
        let pidfd = pidfd_open(pid_of(pid)?, PidfdFlags::empty())
            .map_err(|e| format!("pidfd of the init {pid}: {e}"))?;
        let init = &mut self.procs[0];
        init.pid = pid;
        init.pidfd = Some(pidfd);
        init.adopt_io(io, master);
        let _ = fs::remove_file(SOCKET_FILE);
        let l = UnixListener::bind(SOCKET_FILE).map_err(|e| format!("{SOCKET_FILE}: {e}"))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        self.listener = Some(l);
        Ok(pid)
    }

    // ---------------------------------------------------------------------------------------
    // The loop
    // ---------------------------------------------------------------------------------------

    fn run(&mut self) {
        while !self.finished() {
            if let Err(e) = self.turn() {
                eprintln!("berth-shim: poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if !self.shutdown {
            self.last_call();
        }
    }

    /// Before exiting, answers the requests already queued (clients that connected while the
    /// last exit was being handled); anyone later finds the socket gone and reads the records.
    fn last_call(&mut self) {
        self.accept();
        for i in 0..self.conns.len() {
            self.read_conn(i);
        }
    }

    /// Whether the shim's work is over: told to stop, or the init and every exec have exited,
    /// their exits are recorded, and every terminal copy is over.
    fn finished(&self) -> bool {
        self.shutdown
            || (self.procs[0].status == ProcessStatus::Stopped
                && self
                    .procs
                    .iter()
                    .all(|p| p.status != ProcessStatus::Running && p.tty.is_none()))
    }

    /// One wait for readiness and its handling.
    fn turn(&mut self) -> io::Result<()> {
        let draining = self
            .procs
            .iter()
            .any(|p| p.tty.as_ref().is_some_and(Tty::draining));
        let timeout = if draining {
            Duration::from_millis(500)
        } else {
            SWEEP_INTERVAL
        };
        let ready = self.wait_ready(timeout)?;
        let mut sweep = ready.is_empty();
        for &(token, revents) in &ready {
            match token {
                Token::Pidfd => sweep = true,
                Token::Tty(i, which) => {
                    if let Some(t) = self.procs.get_mut(i).and_then(|p| p.tty.as_mut()) {
                        t.handle(which, revents);
                    }
                }
                Token::Listener | Token::Conn(_) => {}
            }
        }
        if sweep {
            self.reap();
            self.lost_children();
        }
        self.close_finished_ttys();
        // Connections last: they may add and remove processes.
        for &(token, _) in &ready {
            match token {
                Token::Listener => self.accept(),
                Token::Conn(i) => self.read_conn(i),
                _ => {}
            }
        }
        self.conns.retain(|c| !c.closed);
        Ok(())
    }

    fn wait_ready(&self, timeout: Duration) -> io::Result<Vec<(Token, PollFlags)>> {
        let mut fds: Vec<PollFd<'_>> = Vec::new();
        let mut tokens = Vec::new();
        if let Some(l) = &self.listener {
            fds.push(PollFd::new(l, PollFlags::IN));
            tokens.push(Token::Listener);
        }
        for (i, p) in self.procs.iter().enumerate() {
            if let Some(fd) = &p.pidfd {
                fds.push(PollFd::new(fd, PollFlags::IN));
                tokens.push(Token::Pidfd);
            }
            if let Some(t) = &p.tty {
                for (fd, flags, which) in t.interest() {
                    fds.push(PollFd::from_borrowed_fd(fd, flags));
                    tokens.push(Token::Tty(i, which));
                }
            }
        }
        for (i, c) in self.conns.iter().enumerate() {
            fds.push(PollFd::new(&c.stream, PollFlags::IN));
            tokens.push(Token::Conn(i));
        }
        let ts = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(fds
            .iter()
            .zip(tokens)
            .filter(|(f, _)| !f.revents().is_empty())
            .map(|(f, t)| (t, f.revents()))
            .collect())
    }

    // ---------------------------------------------------------------------------------------
    // Exits
    // ---------------------------------------------------------------------------------------

    /// Reaps every child that has exited (`waitpid(-1, WNOHANG)`), recording those supervised.
    fn reap(&mut self) {
        loop {
            match wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    let code = match (status.exit_status(), status.terminating_signal()) {
                        (Some(c), _) => c as u32,
                        (None, Some(sig)) => 128 + sig as u32,
                        _ => continue,
                    };
                    self.exited(pid.as_raw_nonzero().get() as u32, code);
                }
                Ok(None) | Err(Errno::CHILD) => return,
                Err(Errno::INTR) => {}
                Err(e) => {
                    eprintln!("berth-shim: waitpid: {e}");
                    return;
                }
            }
        }
    }

    /// A supervised process whose pidfd says it exited but which is not our child (someone
    /// else reaped it, so its status is lost): recorded with status 255, as containerd does
    /// for a process whose exit it cannot learn, rather than polled forever.
    fn lost_children(&mut self) {
        let lost: Vec<u32> = self
            .procs
            .iter()
            .filter(|p| {
                p.pidfd.as_ref().is_some_and(|fd| {
                    let opts =
                        WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
                    matches!(waitid(WaitId::PidFd(fd.as_fd()), opts), Err(Errno::CHILD))
                        && exited_pidfd(fd)
                })
            })
            .map(|p| p.pid)
            .collect();
        for pid in lost {
            eprintln!("berth-shim: {pid} exited but is not our child; its status is lost");
            self.exited(pid, 255);
        }
    }

    /// A supervised process exited: write its record, release its IO, then answer its waiters.
    fn exited(&mut self, pid: u32, status: u32) {
        let Some(i) = self
            .procs
            .iter()
            .position(|p| p.pid == pid && p.status != ProcessStatus::Stopped)
        else {
            return; // an orphan reparented to us
        };
        let p = &mut self.procs[i];
        let record = ExitRecord {
            pid,
            status,
            exited_at: now_ns(),
        };
        if let Some(t) = p.tty.as_mut() {
            t.owner_exited();
        }
        if let Err(e) = write_exit(Path::new(EXIT_DIR), exit_key(&p.exec_id), &record) {
            eprintln!("berth-shim: recording the exit of {pid}: {e}");
        }
        p.status = ProcessStatus::Stopped;
        p.exit = Some(record);
        p.pidfd = None;
        p.stdin_keep = None;
        p.out_keep.clear();
        let key = p.exec_id.clone();
        self.answer_waiters(&key, &Reply::Exited(record));
    }

    fn answer_waiters(&mut self, exec_id: &str, reply: &Reply) {
        for i in 0..self.conns.len() {
            if self.conns[i].waiting.as_deref() == Some(exec_id) {
                self.conns[i].waiting = None;
                self.send(i, reply);
                self.process_requests(i);
            }
        }
    }

    fn close_finished_ttys(&mut self) {
        for p in &mut self.procs {
            if p.tty.as_ref().is_some_and(Tty::done) {
                p.tty = None;
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Connections
    // ---------------------------------------------------------------------------------------

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        loop {
            match l.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.conns.push(Conn {
                            stream,
                            buf: Vec::new(),
                            waiting: None,
                            closed: false,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn read_conn(&mut self, i: usize) {
        let mut chunk = [0u8; 4096];
        loop {
            let c = &mut self.conns[i];
            match c.stream.read(&mut chunk) {
                Ok(0) => {
                    c.closed = true;
                    break;
                }
                Ok(n) => {
                    c.buf.extend_from_slice(&chunk[..n]);
                    if c.buf.len() > MAX_REQUEST {
                        c.closed = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    c.closed = true;
                    break;
                }
            }
        }
        self.process_requests(i);
    }

    /// Handles the complete request lines of connection `i`, one at a time (a wait holds the
    /// rest back until it is answered).
    fn process_requests(&mut self, i: usize) {
        while !self.shutdown {
            let c = &mut self.conns[i];
            if c.waiting.is_some() {
                return;
            }
            let Some(end) = c.buf.iter().position(|b| *b == b'\n') else {
                return;
            };
            let line: Vec<u8> = c.buf.drain(..=end).collect();
            let reply = match serde_json::from_slice::<Request>(&line[..end]) {
                Ok(req) => self.handle(i, req),
                Err(e) => Some(Reply::error(
                    ErrorCode::InvalidArgument,
                    format!("malformed request: {e}"),
                )),
            };
            if let Some(r) = reply {
                self.send(i, &r);
            }
        }
    }

    fn send(&mut self, i: usize, reply: &Reply) {
        let mut line = serde_json::to_vec(reply).unwrap_or_default();
        line.push(b'\n');
        let c = &mut self.conns[i];
        // Replies are small and the client reads them: a full socket buffer means a client
        // that is not listening, which loses its connection.
        if c.stream.write_all(&line).is_err() {
            c.closed = true;
        }
    }

    // ---------------------------------------------------------------------------------------
    // Requests
    // ---------------------------------------------------------------------------------------

    fn find(&self, exec_id: &str) -> Result<usize, Reply> {
        self.procs
            .iter()
            .position(|p| p.exec_id == exec_id)
            .ok_or_else(|| {
                Reply::error(
                    ErrorCode::NotFound,
                    format!("process {exec_id:?} of task {:?} not found", self.cfg.id),
                )
            })
    }

    /// Handles one request; `None` when the reply comes later (a wait).
    fn handle(&mut self, conn: usize, req: Request) -> Option<Reply> {
        let r = match req {
            Request::Start { exec_id } => self.start(&exec_id),
            Request::Exec { exec_id, stdio } => self.add_exec(exec_id, stdio),
            Request::Wait { exec_id } => match self.find(&exec_id) {
                Ok(i) => match self.procs[i].exit {
                    Some(rec) => Ok(Reply::Exited(rec)),
                    None => {
                        self.conns[conn].waiting = Some(exec_id);
                        return None;
                    }
                },
                Err(e) => Err(e),
            },
            Request::State => Ok(Reply::State {
                shim_pid: self.me.as_raw_nonzero().get() as u32,
                init: self.procs[0].state(),
                execs: self.procs[1..].iter().map(Proc::state).collect(),
            }),
            Request::Kill { exec_id, signal } => self.kill(&exec_id, signal),
            Request::ResizePty {
                exec_id,
                width,
                height,
            } => self.find(&exec_id).and_then(|i| match &self.procs[i].tty {
                Some(t) => t
                    .resize(width, height)
                    .map(|()| Reply::Ok)
                    .map_err(|e| Reply::error(ErrorCode::Internal, format!("resize: {e}"))),
                None => Ok(Reply::Ok), // no terminal (or it is closed): nothing to resize
            }),
            Request::CloseStdin { exec_id } => self.find(&exec_id).map(|i| {
                let p = &mut self.procs[i];
                p.stdin_keep = None;
                if let Some(t) = p.tty.as_mut() {
                    t.close_stdin();
                }
                Reply::Ok
            }),
            Request::DeleteExec { exec_id } => self.delete_exec(&exec_id),
            Request::Shutdown => {
                self.shutdown = true;
                Ok(Reply::Ok)
            }
        };
        Some(r.unwrap_or_else(|e| e))
    }

    fn start(&mut self, exec_id: &str) -> Result<Reply, Reply> {
        let i = self.find(exec_id)?;
        match self.procs[i].status {
            ProcessStatus::Created => {}
            ProcessStatus::Running => {
                return Err(Reply::error(
                    ErrorCode::FailedPrecondition,
                    format!("process {exec_id:?} is already started"),
                ))
            }
            ProcessStatus::Stopped => {
                return Err(Reply::error(
                    ErrorCode::FailedPrecondition,
                    format!("process {exec_id:?} has already exited"),
                ))
            }
        }
        let started = if i == 0 {
            self.start_init()
        } else {
            self.start_exec(i)
        };
        started
            .map(|pid| Reply::Started { pid })
            .map_err(|e| Reply::error(ErrorCode::Internal, e))
    }

    fn start_init(&mut self) -> Result<u32, String> {
        if self.cfg.starts_through_exec_fifo() {
            self.open_exec_fifo()?;
        } else {
            let mut cmd = self.runtime();
            cmd.arg("start").arg(&self.cfg.id);
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            self.run_runtime(cmd, "start")?;
        }
        let init = &mut self.procs[0];
        if init.status == ProcessStatus::Created {
            init.status = ProcessStatus::Running;
        }
        Ok(init.pid)
    }

    /// What `runc start` does: read the byte runc's init writes into `exec.fifo` right before
    /// it executes the process, then remove the FIFO (runc reports "running" once it is gone).
    fn open_exec_fifo(&mut self) -> Result<(), String> {
        let path = Path::new(&self.cfg.runtime_root)
            .join(&self.cfg.id)
            .join("exec.fifo");
        let fifo = open(
            &path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot start: {}: {e}", path.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut byte = [0u8; 16];
        loop {
            // Before the init opens its end, a read finds no writer and returns 0: only data
            // counts. The init's death ends the wait (its pidfd becomes readable).
            match rustix::io::read(&fifo, &mut byte) {
                Ok(n) if n > 0 => break,
                Ok(_) | Err(Errno::AGAIN | Errno::INTR) => {}
                Err(e) => return Err(format!("cannot start: {}: {e}", path.display())),
            }
            let init_dead = {
                let Some(pidfd) = &self.procs[0].pidfd else {
                    return Err("cannot start: the init has exited".into());
                };
                let mut fds = [
                    PollFd::new(&fifo, PollFlags::IN),
                    PollFd::new(pidfd, PollFlags::IN),
                ];
                let ts = Timespec {
                    tv_sec: 0,
                    tv_nsec: 50_000_000,
                };
                let _ = poll(&mut fds, Some(&ts));
                !fds[1].revents().is_empty()
            };
            if init_dead && !matches!(rustix::io::read(&fifo, &mut byte), Ok(n) if n > 0) {
                self.reap();
                return Err("cannot start: the container's init died before it started".into());
            }
            if init_dead {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "cannot start: the init did not reach {} within {START_TIMEOUT:?}",
                    path.display()
                ));
            }
        }
        let _ = fs::remove_file(&path);
        Ok(())
    }

    fn add_exec(&mut self, exec_id: String, stdio: Stdio) -> Result<Reply, Reply> {
        if !valid_id(&exec_id) || exec_id == INIT_KEY {
            return Err(Reply::error(
                ErrorCode::InvalidArgument,
                format!("invalid exec id {exec_id:?}"),
            ));
        }
        if self.procs.iter().any(|p| p.exec_id == exec_id) {
            return Err(Reply::error(
                ErrorCode::AlreadyExists,
                format!("exec {exec_id:?} of task {:?} already exists", self.cfg.id),
            ));
        }
        if self.procs[0].status == ProcessStatus::Stopped {
            return Err(Reply::error(
                ErrorCode::FailedPrecondition,
                format!("task {:?} has exited: cannot exec in it", self.cfg.id),
            ));
        }
        let spec = exec_file(&exec_id, "process.json");
        if !Path::new(&spec).exists() {
            return Err(Reply::error(
                ErrorCode::InvalidArgument,
                format!("no process spec at {spec}"),
            ));
        }
        let _ = fs::remove_file(format!("{EXIT_DIR}/{exec_id}"));
        self.procs.push(Proc::new(exec_id, stdio));
        Ok(Reply::Ok)
    }

    /// `runc exec --detach`: the process runs when this returns its pid.
    fn start_exec(&mut self, i: usize) -> Result<u32, String> {
        if self.procs[0].status == ProcessStatus::Stopped {
            return Err(format!("task {:?} has exited", self.cfg.id));
        }
        let exec_id = self.procs[i].exec_id.clone();
        let stdio = self.procs[i].stdio.clone();
        let mut io = open_io(&stdio).map_err(|e| format!("opening the IO of {exec_id:?}: {e}"))?;
        let console = if stdio.terminal {
            Some(self.console()?)
        } else {
            None
        };
        let pid_file = self.bundle.join(exec_file(&exec_id, "pid"));
        let _ = fs::remove_file(&pid_file);
        let mut cmd = self.runtime();
        cmd.arg("exec")
            .arg("--detach")
            .arg("--process")
            .arg(self.bundle.join(exec_file(&exec_id, "process.json")))
            .arg("--pid-file")
            .arg(&pid_file);
        if let Some((name, _)) = &console {
            cmd.arg("--console-socket").arg(name);
        }
        cmd.arg(&self.cfg.id);
        io.attach(&mut cmd);
        let ran = self.run_runtime(cmd, "exec");
        let master = match (&ran, &console) {
            (Ok(()), Some((name, l))) => {
                let m = receive_master(l);
                let _ = fs::remove_file(name);
                Some(m.map_err(|e| format!("receiving the terminal of {exec_id:?}: {e}"))?)
            }
            (_, Some((name, _))) => {
                let _ = fs::remove_file(name);
                None
            }
            _ => None,
        };
        ran?;
        let pid = read_pid(&pid_file)?;
        // The process is our child (reparented when runc exited); a zombie already if it was
        // quick, which its pidfd reports at once. Gone entirely only if the runtime (a wrapper
        // script, say) reaped it: it ran, but its status is lost.
        let pidfd = match pidfd_open(pid_of(pid)?, PidfdFlags::empty()) {
            Ok(fd) => Some(fd),
            Err(Errno::SRCH) => None,
            Err(e) => return Err(format!("pidfd of {pid}: {e}")),
        };
        let lost = pidfd.is_none();
        let p = &mut self.procs[i];
        p.pid = pid;
        p.pidfd = pidfd;
        p.status = ProcessStatus::Running;
        p.adopt_io(io, master);
        if lost {
            eprintln!("berth-shim: {pid} was reaped by the runtime; its status is lost");
            self.exited(pid, 255);
        }
        Ok(pid)
    }

    fn kill(&mut self, exec_id: &str, signal: i32) -> Result<Reply, Reply> {
        let i = self.find(exec_id)?;
        let p = &self.procs[i];
        let Some(pidfd) = &p.pidfd else {
            return Err(Reply::error(
                if p.status == ProcessStatus::Stopped {
                    ErrorCode::NotFound
                } else {
                    ErrorCode::FailedPrecondition
                },
                if p.status == ProcessStatus::Stopped {
                    format!("process {exec_id:?}: process already finished")
                } else {
                    format!("process {exec_id:?} is not started")
                },
            ));
        };
        let Some(sig) = Signal::from_named_raw(signal) else {
            return Err(Reply::error(
                ErrorCode::InvalidArgument,
                format!("signal {signal} cannot be sent by the shim"),
            ));
        };
        match pidfd_send_signal(pidfd, sig) {
            Ok(()) => Ok(Reply::Ok),
            Err(Errno::SRCH) => Err(Reply::error(
                ErrorCode::NotFound,
                format!("process {exec_id:?}: process already finished"),
            )),
            Err(e) => Err(Reply::error(ErrorCode::Internal, format!("kill: {e}"))),
        }
    }

    fn delete_exec(&mut self, exec_id: &str) -> Result<Reply, Reply> {
        if exec_id.is_empty() {
            return Err(Reply::error(
                ErrorCode::InvalidArgument,
                "the init is deleted with its task, not as an exec",
            ));
        }
        let i = self.find(exec_id)?;
        if self.procs[i].status == ProcessStatus::Running {
            return Err(Reply::error(
                ErrorCode::FailedPrecondition,
                format!("process {exec_id:?} is running"),
            ));
        }
        let p = self.procs.remove(i);
        let record = p.exit.unwrap_or(ExitRecord {
            pid: 0,
            status: 0,
            exited_at: 0,
        });
        for f in [
            format!("{EXIT_DIR}/{exec_id}"),
            exec_file(exec_id, "process.json"),
            exec_file(exec_id, "json"),
            exec_file(exec_id, "pid"),
        ] {
            let _ = fs::remove_file(f);
        }
        self.answer_waiters(
            exec_id,
            &Reply::error(
                ErrorCode::NotFound,
                format!("process {exec_id:?} was deleted"),
            ),
        );
        Ok(Reply::Exited(record))
    }

    /// Leaves nothing behind but the records: the socket goes, and the pid file.
    fn cleanup(&mut self) {
        if self.listener.take().is_some() {
            let _ = fs::remove_file(SOCKET_FILE);
        }
        let _ = fs::remove_file(SHIM_PID_FILE);
    }
}

/// Whether a pidfd reports its process gone (readable).
fn exited_pidfd(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

fn pid_of(pid: u32) -> Result<Pid, String> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("invalid pid {pid}"))
}

/// `execs/<id>.<ext>`.
fn exec_file(exec_id: &str, ext: &str) -> String {
    format!("{EXECS_DIR}/{exec_id}.{ext}")
}

/// Writes `<dir>/<key>` atomically (a temporary file renamed over it).
fn write_exit(dir: &Path, key: &str, record: &ExitRecord) -> io::Result<()> {
    let tmp = dir.join(format!(".{key}.tmp"));
    fs::write(&tmp, serde_json::to_vec(record)?)?;
    fs::rename(&tmp, dir.join(key))
}

/// The last error the runtime logged after byte `from` of its JSON log (runc and crun write
/// `{"level":"error","msg":…}` lines).
fn last_logged_error(log: &Path, from: u64) -> String {
    #[derive(serde::Deserialize)]
    struct Line {
        level: String,
        msg: String,
    }
    let Ok(text) = fs::read(log) else {
        return "(no runtime log)".into();
    };
    let text = &text[usize::try_from(from).unwrap_or(0).min(text.len())..];
    text.split(|b| *b == b'\n')
        .rev()
        .filter_map(|l| serde_json::from_slice::<Line>(l).ok())
        .find(|l| l.level == "error" || l.level == "fatal")
        .map_or_else(|| "(nothing in the runtime log)".into(), |l| l.msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_come_from_the_new_part_of_its_log() {
        let d = std::env::temp_dir().join(format!("berth-shim-log-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let log = d.join("log.json");
        let old = "{\"level\":\"error\",\"msg\":\"old\",\"time\":\"t\"}\n";
        fs::write(&log, old).unwrap();
        let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(
            b"{\"level\":\"warning\",\"msg\":\"w\"}\n{\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": not found\"}\n{\"level\":\"info\",\"msg\":\"i\"}\n",
        )
        .unwrap();
        assert_eq!(
            last_logged_error(&log, old.len() as u64),
            "exec: \"nope\": not found"
        );
        assert_eq!(
            last_logged_error(&log, fs::metadata(&log).unwrap().len()),
            "(nothing in the runtime log)"
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn exit_records_are_replaced_atomically() {
        let d = std::env::temp_dir().join(format!("berth-shim-exit-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let r = ExitRecord {
            pid: 9,
            status: 3,
            exited_at: 5,
        };
        write_exit(&d, "init", &r).unwrap();
        write_exit(&d, "init", &r).unwrap();
        let back: ExitRecord = serde_json::from_slice(&fs::read(d.join("init")).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1); // no temporary left
        fs::remove_dir_all(d).unwrap();
    }
}
