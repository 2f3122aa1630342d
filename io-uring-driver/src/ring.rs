//! The ring thread: owns the `io_uring` instance, turns submissions into SQEs and completions
//! into [`OpResult`]s.
//!
//! This module holds every `unsafe` block of the crate. They all rest on one invariant: **the
//! memory an SQE points at (data buffers, path strings, `open_how` structs, the wake-up counter)
//! and the descriptor it names are owned by the ring thread until that SQE's CQE has been
//! reaped**, and the thread does not exit while any SQE is in flight (should it unwind, it leaks
//! that memory rather than free it).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_channel::{Receiver, Sender, TryRecvError};
use berth_core::op::{OpError, OpOutput, OpResult};
use berth_drivers::host::RealHost;
use bytes::Bytes;
use io_uring::{opcode, squeue, types, IoUring, Probe};
use slab::Slab;

/// `user_data` of the eventfd read that wakes the thread for new submissions.
const WAKE: u64 = u64::MAX;

/// The most bytes Linux transfers in one read or write (`MAX_RW_COUNT`).
pub(crate) const MAX_RW: usize = 0x7fff_f000;

/// Which Op kinds the ring performs (the rest go to the pool).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Routes {
    pub open: bool,
    pub write: bool,
    pub read: bool,
    pub fsync: bool,
}

/// One Op for the ring, with everything it needs. Validation (path checks, handle lookup) has
/// already happened on the submitting side.
pub(crate) enum Request {
    /// `openat2(root, path, how)`.
    Open {
        path: CString,
        flags: u64,
        mode: u64,
    },
    /// `pwrite(fd, data, offset)`, at most [`MAX_RW`] bytes.
    Write {
        fd: Arc<OwnedFd>,
        offset: u64,
        data: Bytes,
    },
    /// `pread` of `len` (> 0) bytes at `offset`, repeated until `len` bytes or end of file.
    Read {
        fd: Arc<OwnedFd>,
        offset: u64,
        len: u32,
    },
    /// `fsync(fd)`.
    Fsync { fd: Arc<OwnedFd> },
}

/// A request and where its outcome goes.
pub(crate) struct Submission {
    pub op: &'static str,
    pub req: Request,
    pub done: Sender<OpResult>,
}

/// What the thread keeps for an SQE in flight: the memory and descriptor the kernel may use.
enum Pending {
    Open {
        path: CString,
        how: Box<types::OpenHow>,
    },
    Write {
        fd: Arc<OwnedFd>,
        data: Bytes,
        offset: u64,
    },
    Read {
        fd: Arc<OwnedFd>,
        /// `buf.len()` bytes read so far; the kernel fills `buf[len..want]`.
        buf: Vec<u8>,
        want: usize,
        offset: u64,
    },
    Fsync {
        fd: Arc<OwnedFd>,
    },
}

struct InFlight {
    op: &'static str,
    pending: Pending,
    done: Sender<OpResult>,
}

/// State shared between the submitting side and the ring thread.
pub(crate) struct Shared {
    /// Set by the thread just before it blocks in the kernel; a submitter that clears it owes a
    /// wake-up through `wake`.
    sleeping: AtomicBool,
    /// An eventfd the thread always has a read SQE on while it accepts submissions.
    wake: OwnedFd,
}

impl Shared {
    fn wake(&self) {
        // A blocking eventfd: the write only blocks if the counter would overflow 2^64-2.
        if let Err(e) = rustix::io::write(&self.wake, &1u64.to_ne_bytes()) {
            log::error!("io-uring driver: waking the ring thread failed: {e}");
        }
    }
}

/// The submitting side's handle on the ring thread. Dropping it stops the thread after every
/// Op already submitted has completed.
pub(crate) struct RingHandle {
    tx: Sender<Submission>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    pub routes: Routes,
    pub flags: &'static str,
}

impl RingHandle {
    /// Hands `sub` to the ring thread; gives it back if the thread is gone.
    pub fn submit(&self, sub: Submission) -> Result<(), Submission> {
        self.tx.try_send(sub).map_err(|e| e.into_inner())?;
        // Pairs with the fence in `RingThread::run` (store `sleeping`, fence, re-check the
        // channel): either the thread sees this submission, or this swap sees `true` and wakes
        // it.
        fence(Ordering::SeqCst);
        if self.shared.sleeping.swap(false, Ordering::SeqCst) {
            self.shared.wake();
        }
        Ok(())
    }
}

impl Drop for RingHandle {
    fn drop(&mut self) {
        self.tx.close();
        // After the close, the thread re-arms no wake read; this write completes the last one.
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("io-uring driver: the ring thread panicked");
            }
        }
    }
}

/// Ring set-ups to try, best first. `DEFER_TASKRUN` (6.1) runs completion work only when the
/// thread waits, which suits one thread that both submits and reaps.
fn build_ring(entries: u32) -> io::Result<(IoUring, &'static str)> {
    type Setup = fn(&mut io_uring::Builder);
    let tries: [(&'static str, Setup); 3] = [
        ("single_issuer|defer_taskrun", |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
        ("coop_taskrun", |b| {
            b.setup_coop_taskrun();
        }),
        ("plain", |_| {}),
    ];
    let mut last = io::Error::from_raw_os_error(libc::ENOSYS);
    for (name, setup) in tries {
        let mut b = IoUring::builder();
        setup(&mut b);
        match b.build(entries) {
            Ok(r) => return Ok((r, name)),
            // EINVAL: a flag this kernel does not know; anything else will not get better.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn probe(ring: &IoUring) -> io::Result<Routes> {
    let mut p = Probe::new();
    ring.submitter().register_probe(&mut p)?;
    Ok(Routes {
        open: p.is_supported(opcode::OpenAt2::CODE),
        write: p.is_supported(opcode::Write::CODE),
        read: p.is_supported(opcode::Read::CODE),
        fsync: p.is_supported(opcode::Fsync::CODE),
    })
}

/// Starts the ring thread. Fails if the kernel has no usable ring (no io_uring, forbidden by
/// seccomp or `kernel.io_uring_disabled`, or no `IORING_OP_READ`, which the wake-up needs).
pub(crate) fn start(entries: u32, root: OwnedFd, host: Arc<RealHost>) -> io::Result<RingHandle> {
    let wake = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?;
    let shared = Arc::new(Shared {
        sleeping: AtomicBool::new(false),
        wake,
    });
    let (tx, rx) = async_channel::unbounded();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread_shared = shared.clone();
    // The ring is created on its own thread: with SINGLE_ISSUER only the creating thread may
    // submit.
    let thread = std::thread::Builder::new()
        .name("berth-uring".into())
        .spawn(move || {
            let setup = build_ring(entries).and_then(|(ring, flags)| {
                let routes = probe(&ring)?;
                if !routes.read {
                    return Err(io::Error::from_raw_os_error(libc::ENOSYS));
                }
                Ok((ring, flags, routes))
            });
            let (ring, flags, routes) = match setup {
                Ok(x) => x,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok((routes, flags)));
            let cap = (ring.params().sq_entries() as usize)
                .saturating_sub(1)
                .max(1);
            RingThread {
                ring,
                rx,
                shared: thread_shared,
                host,
                root,
                slab: Slab::with_capacity(cap),
                cap,
                wake_buf: Box::new(0),
                wake_armed: false,
                cqes: Vec::with_capacity(cap + 1),
            }
            .run();
        })?;
    match ready_rx.recv() {
        Ok(Ok((routes, flags))) => Ok(RingHandle {
            tx,
            shared,
            thread: Some(thread),
            routes,
            flags,
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(io::Error::other(
                "io-uring driver: ring thread died at start",
            ))
        }
    }
}

struct RingThread {
    ring: IoUring,
    rx: Receiver<Submission>,
    shared: Arc<Shared>,
    host: Arc<RealHost>,
    root: OwnedFd,
    /// Every SQE in flight (except the wake read), keyed by its `user_data`.
    slab: Slab<InFlight>,
    /// Most SQEs in flight; keeps the completion queue (twice the submission queue) from
    /// overflowing.
    cap: usize,
    /// The eventfd read's target. Boxed so its address is stable while the read is in flight.
    wake_buf: Box<u64>,
    wake_armed: bool,
    cqes: Vec<(u64, i32)>,
}

impl Drop for RingThread {
    fn drop(&mut self) {
        // Only reached with SQEs in flight if `run` unwound: the kernel may still use their
        // memory after the ring closes, so leak it rather than free it.
        if !self.slab.is_empty() || self.wake_armed {
            log::error!(
                "io-uring driver: ring thread stopped with {} Ops in flight; leaking their buffers",
                self.slab.len()
            );
            std::mem::forget(std::mem::take(&mut self.slab));
            Box::leak(std::mem::replace(&mut self.wake_buf, Box::new(0)));
        }
    }
}

fn op_err(op: &'static str, errno: i32) -> OpError {
    OpError { op, errno }
}

impl RingThread {
    fn run(mut self) {
        loop {
            self.drain();
            // `is_closed` (not "closed and empty") decides re-arming: once the channel is
            // closed, the final wake-up from `RingHandle::drop` completes the last wake read.
            if !self.wake_armed && !self.rx.is_closed() {
                self.arm_wake();
            }
            if self.rx.is_closed() && self.rx.is_empty() && self.slab.is_empty() && !self.wake_armed
            {
                break;
            }
            self.shared.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.slab.len() < self.cap && !self.rx.is_empty() {
                // A submission raced in after the drain; take it before sleeping.
                self.shared.sleeping.store(false, Ordering::SeqCst);
                continue;
            }
            self.enter(1);
            self.shared.sleeping.store(false, Ordering::SeqCst);
            self.reap();
        }
        debug_assert!(self.slab.is_empty());
    }

    /// Submits pushed SQEs and waits for `want` completions.
    fn enter(&mut self, want: usize) {
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // Out of resources or completions pending: reap, then come back.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY)) => {
                    return
                }
                Err(e) => {
                    // Nothing can be freed while the kernel may hold our buffers; retry.
                    log::error!("io-uring driver: io_uring_enter failed: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    return;
                }
            }
        }
    }

    /// Takes submissions from the channel (up to the in-flight cap) and pushes their SQEs.
    fn drain(&mut self) {
        while self.slab.len() < self.cap {
            match self.rx.try_recv() {
                Ok(sub) => self.start(sub),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            }
        }
    }

    fn start(&mut self, sub: Submission) {
        let pending = match sub.req {
            Request::Open { path, flags, mode } => Pending::Open {
                path,
                how: Box::new(
                    types::OpenHow::new()
                        .flags(flags)
                        .mode(mode)
                        .resolve(libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS),
                ),
            },
            Request::Write { fd, offset, data } => Pending::Write { fd, data, offset },
            Request::Read { fd, offset, len } => Pending::Read {
                fd,
                buf: Vec::with_capacity(len as usize),
                want: len as usize,
                offset,
            },
            Request::Fsync { fd } => Pending::Fsync { fd },
        };
        self.launch(InFlight {
            op: sub.op,
            pending,
            done: sub.done,
        });
    }

    /// Moves `f` into the slab and pushes its SQE, which points into memory `f` owns.
    fn launch(&mut self, f: InFlight) {
        let entry = self.slab.vacant_entry();
        let key = entry.key() as u64;
        let f = entry.insert(f);
        // Every pointer below is into a heap allocation owned by `f` (a `CString`, a `Box`, a
        // `Bytes` or `Vec` buffer): moving `f` within the slab does not move it.
        let sqe = match &mut f.pending {
            Pending::Open { path, how } => {
                opcode::OpenAt2::new(types::Fd(self.root.as_raw_fd()), path.as_ptr(), &**how)
                    .build()
            }
            Pending::Write { fd, data, offset } => opcode::Write::new(
                types::Fd(fd.as_raw_fd()),
                data.as_ptr(),
                data.len().min(MAX_RW) as u32,
            )
            .offset(*offset)
            .build(),
            Pending::Read {
                fd,
                buf,
                want,
                offset,
            } => {
                let got = buf.len();
                let rest = buf.spare_capacity_mut();
                opcode::Read::new(
                    types::Fd(fd.as_raw_fd()),
                    rest.as_mut_ptr().cast::<u8>(),
                    (*want - got).min(MAX_RW) as u32,
                )
                .offset(*offset + got as u64)
                .build()
            }
            Pending::Fsync { fd } => opcode::Fsync::new(types::Fd(fd.as_raw_fd())).build(),
        };
        // SAFETY: the SQE's buffer, path, `open_how` and descriptor are owned by the slab entry
        // `key` (the descriptor through an `Arc<OwnedFd>`, so a concurrent Close cannot close or
        // reuse it). The entry leaves the slab only in `reap`, after the kernel has posted this
        // SQE's CQE, and `run` does not return while the slab is non-empty.
        unsafe { self.push(&sqe.user_data(key)) };
    }

    /// Arms the read of the wake-up eventfd.
    fn arm_wake(&mut self) {
        let sqe = opcode::Read::new(
            types::Fd(self.shared.wake.as_raw_fd()),
            (&mut *self.wake_buf as *mut u64).cast::<u8>(),
            8,
        )
        .build()
        .user_data(WAKE);
        // SAFETY: `wake_buf` is a heap allocation owned by this thread that is neither touched
        // nor freed while `wake_armed` is set; the eventfd is owned by `shared`, which this
        // thread keeps alive. `run` does not return while `wake_armed` is set.
        unsafe { self.push(&sqe) };
        self.wake_armed = true;
    }

    /// Pushes one SQE, submitting first if the submission queue is full.
    ///
    /// # Safety
    ///
    /// Whatever `sqe` points at must stay valid until its CQE is reaped.
    unsafe fn push(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: forwarded from this function's contract.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return;
            }
            // Full: hand the queued SQEs to the kernel to make room.
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EINTR) {
                    log::warn!("io-uring driver: submit with a full queue: {e}");
                }
            }
        }
    }

    /// Takes every available CQE and completes its Op.
    fn reap(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        for &(key, res) in &cqes {
            if key == WAKE {
                self.wake_armed = false;
                if res < 0 && res != -libc::EINTR && res != -libc::EAGAIN {
                    log::warn!("io-uring driver: wake read failed: errno {}", -res);
                }
                continue;
            }
            match self.slab.try_remove(key as usize) {
                Some(f) => self.complete(f, res),
                None => log::error!("io-uring driver: CQE for unknown user_data {key}"),
            }
        }
        cqes.clear();
        self.cqes = cqes;
    }

    /// Turns the CQE result `res` of `f` into an outcome (or a follow-up SQE).
    fn complete(&mut self, f: InFlight, res: i32) {
        let InFlight { op, pending, done } = f;
        if res < 0 {
            let _ = done.try_send(Err(op_err(op, -res)));
            return;
        }
        let out = match pending {
            Pending::Open { .. } => {
                // SAFETY: a successful OPENAT2 CQE carries a new descriptor that nothing else
                // owns; ownership passes to this `OwnedFd`.
                let fd = unsafe { OwnedFd::from_raw_fd(res) };
                if done.is_closed() {
                    // Nobody waits for the handle: close the file rather than leak it.
                    return;
                }
                match rustix::fs::fstat(&fd) {
                    Ok(st) => Ok(OpOutput::Opened {
                        handle: self.host.handles().insert(fd),
                        size: st.st_size as u64,
                    }),
                    Err(e) => Err(op_err(op, e.raw_os_error())),
                }
            }
            Pending::Write { .. } => Ok(OpOutput::Written(res as u64)),
            Pending::Fsync { .. } => Ok(OpOutput::Done),
            Pending::Read {
                fd,
                mut buf,
                want,
                offset,
            } => {
                let n = res as usize;
                debug_assert!(buf.len() + n <= want);
                // SAFETY: the kernel reports it initialised `n` bytes from `buf.len()` on, and
                // the SQE asked for at most `want - buf.len()` bytes, within the capacity.
                unsafe { buf.set_len(buf.len() + n) };
                if n > 0 && buf.len() < want {
                    // A short read before the end of the file: read the rest, like `RealHost`.
                    self.launch(InFlight {
                        op,
                        pending: Pending::Read {
                            fd,
                            buf,
                            want,
                            offset,
                        },
                        done,
                    });
                    return;
                }
                Ok(OpOutput::Data(Bytes::from(buf)))
            }
        };
        let _ = done.try_send(out);
    }
}
