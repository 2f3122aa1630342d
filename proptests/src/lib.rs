//! Property and state-machine tests of `berth-core`.
//!
//! The library holds the test infrastructure; the properties live in `tests/`:
//!
//! * [`host`]: an in-memory host that executes core's file Ops, with fault rules (errno on the
//!   n-th matching Op, crash, torn write), short writes, and `kill -9` crashes that keep file
//!   contents and may lose the last unsynced write.
//! * [`model`]: the reference model of an `Ingest` and the commands that drive it.
//! * [`harness`]: a real `Ingest` on the host, performing those commands and checking replies
//!   and invariants against the model.
//! * [`strategy`]: proptest strategies for commands, and the `proptest-state-machine` glue.
//!
//! `host`, `model` and `harness` use only `berth-core` and `std`: the fuzz targets in `fuzz/`
//! include these very files with `#[path]`, so both kinds of test drive the same host and hold
//! the same invariants while `fuzz/` depends on `berth-core` alone.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod harness;
pub mod host;
pub mod model;
pub mod strategy;
