//! The generic run loop: drives any machine on any executor.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_core::op::{Completion, Handle, OpKind, OpOutput};
use berth_core::{Machine, Output};
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::exec::{Clock, Executor};

/// Why driving a machine stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum DriveError<E> {
    /// The machine refused an input.
    #[error(transparent)]
    Refused(E),
    /// The machine fell silent with no Op in flight and no result.
    #[error("machine stalled without a result")]
    Stalled,
}

/// A machine bound to an executor and a clock, with the file handles it holds.
///
/// Handles the machine opened and has not closed are closed when the `Driven` is dropped, so a
/// machine abandoned mid-flight (a client that hangs up) never leaks descriptors.
pub struct Driven<M> {
    machine: M,
    exec: Arc<dyn Executor>,
    clock: Arc<dyn Clock>,
    handles: BTreeSet<Handle>,
}

impl<M: Machine> Driven<M>
where
    M::Event: Send,
{
    /// Binds `machine` (whose initial outputs have not been drained yet) to an executor.
    pub fn new(machine: M, exec: Arc<dyn Executor>, clock: Arc<dyn Clock>) -> Self {
        Driven {
            machine,
            exec,
            clock,
            handles: BTreeSet::new(),
        }
    }

    /// The machine, for getters.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Drains outputs queued at construction and runs until the first `Done`.
    pub async fn start(
        &mut self,
        events: &mut (dyn FnMut(M::Event) + Send),
    ) -> Result<M::Done, DriveError<M::Error>> {
        self.run(events).await
    }

    /// Feeds one request input and runs the machine until it reports `Done`.
    pub async fn request(
        &mut self,
        input: M::Input,
        events: &mut (dyn FnMut(M::Event) + Send),
    ) -> Result<M::Done, DriveError<M::Error>> {
        let now = self.clock.now();
        self.machine
            .handle(now, input)
            .map_err(DriveError::Refused)?;
        self.run(events).await
    }

    async fn run(
        &mut self,
        events: &mut (dyn FnMut(M::Event) + Send),
    ) -> Result<M::Done, DriveError<M::Error>> {
        let mut in_flight = FuturesUnordered::new();
        let mut done = None;
        loop {
            while let Some(out) = self.machine.poll() {
                match out {
                    Output::Op(op) => {
                        if let OpKind::Close { handle } = &op.kind {
                            self.handles.remove(handle);
                        }
                        let fut = self.exec.execute(op.kind);
                        let id = op.id;
                        in_flight.push(async move {
                            Completion {
                                id,
                                result: fut.await,
                            }
                        });
                    }
                    Output::Event(ev) => events(ev),
                    // No machine driven here waits on time yet; a deadline is a no-op.
                    Output::Wait(_) => {}
                    Output::Done(d) => done = Some(d),
                }
            }
            let Some(completion) = in_flight.next().await else {
                return done.ok_or(DriveError::Stalled);
            };
            if let Ok(OpOutput::Opened { handle, .. }) = &completion.result {
                self.handles.insert(*handle);
            }
            let now = self.clock.now();
            self.machine
                .handle(now, completion.into())
                .map_err(DriveError::Refused)?;
        }
    }
}

impl<M> Drop for Driven<M> {
    fn drop(&mut self) {
        for h in std::mem::take(&mut self.handles) {
            self.exec.close_now(h);
        }
    }
}
