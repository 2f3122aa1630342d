//! # berth-drivers: the host seam
//!
//! What every driver shares:
//!
//! * [`Executor`]: performs one [`Op`](berth_core::op::Op) and returns its outcome. The smol
//!   driver (`berth-smol`) and the io_uring driver (`berth-uring`) implement it; so does the
//!   [`fake::FakeHost`], which records Ops and injects faults.
//! * [`run`]: the generic run loop that drives any [`Machine`](berth_core::Machine) on any
//!   executor, following the drain rule, and owns the file handles a machine leaves open.
//! * [`host::RealHost`]: the blocking implementation of the file Ops on a real directory, with
//!   every path resolved beneath the root (`openat2(RESOLVE_BENEATH)`).
//! * [`layout`]: where things live under the root directory.
//! * [`store`]: the durable metadata store on redb (namespaces, content records, leases).
//! * [`snapfs`]: the snapshotters' directory actions and usage measurement.
//! * [`conformance`]: one list of behaviours every executor must show.
#![deny(missing_docs)]

pub mod apply;
pub mod conformance;
pub mod diff;
pub mod exec;
pub mod fake;
pub mod host;
pub mod layout;
pub mod registry;
pub mod run;
pub mod runtime;
pub mod snapfs;
pub mod store;

pub use exec::{Clock, Executor, OpFuture, SystemClock};
pub use layout::Layout;
pub use run::{DriveError, Driven};
