//! The executor trait: the one thing a driver must implement.

use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_core::op::{Handle, OpKind, OpResult};
use berth_core::Instant;

/// The future an executor returns for one Op.
pub type OpFuture = Pin<Box<dyn Future<Output = OpResult> + Send + 'static>>;

/// Performs Ops on a host. Paths in Ops are relative to the executor's root and never leave it.
///
/// An executor may run many Ops at once; Ops of one machine are submitted in the order the
/// machine emits them and a machine never has two Ops on the same handle in flight.
pub trait Executor: Send + Sync + 'static {
    /// Starts one Op; the future resolves with its outcome.
    fn execute(&self, op: OpKind) -> OpFuture;

    /// Closes a handle synchronously. Used to release handles a machine left open when it is
    /// dropped, where no future can be awaited.
    fn close_now(&self, handle: Handle);

    /// A short name for logs ("smol", "io-uring", "fake").
    fn name(&self) -> &'static str;
}

/// A source of time for machines.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> Instant;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Instant::from_secs_nanos(d.as_secs(), d.subsec_nanos())
    }
}
