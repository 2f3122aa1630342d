//! The machine contract shared by every state machine in the core.

use crate::op::{Completion, Op};
use crate::Instant;

/// What a machine asks of its driver, drained with [`Machine::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Output<Ev, R> {
    /// Perform this Op and return its outcome as a [`Completion`].
    Op(Op),
    /// Publish this event.
    Event(Ev),
    /// Call [`Machine::handle`] with a timeout input no later than this instant.
    Wait(Instant),
    /// The request in progress has finished with this result.
    Done(R),
}

/// A sans-IO state machine: inputs in through [`Machine::handle`], outputs out through
/// [`Machine::poll`].
///
/// **The drain rule.** After every call to `handle`, the driver calls `poll` until it returns
/// `None`, performing each [`Output::Op`], and feeds each Op's outcome back with
/// `handle(now, Completion.into())`. A machine only changes state inside `handle`; `poll` only
/// hands out what the last `handle` queued.
pub trait Machine {
    /// The machine's input type. Op outcomes arrive as `Completion` through `From`.
    type Input: From<Completion>;
    /// Events it publishes.
    type Event;
    /// The result of a finished request.
    type Done;
    /// The error `handle` returns for an input that is illegal right now. Such an input changes
    /// nothing.
    type Error;

    /// Feeds one input at time `now`.
    fn handle(&mut self, now: Instant, input: Self::Input) -> Result<(), Self::Error>;

    /// The next output, or `None` when the machine has nothing more to say until its next input.
    fn poll(&mut self) -> Option<Output<Self::Event, Self::Done>>;
}
