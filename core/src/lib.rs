//! # berth-core: the pure core of berth
//!
//! This crate decides; drivers do. It holds berth's state machines and data model and performs
//! no IO: no files, sockets, processes, threads, environment, clock or randomness. Everything
//! the host must do is asked for as an [`Op`](op::Op), and every outcome comes back as an input.
//!
//! ## The machine contract
//!
//! Every machine implements [`Machine`]:
//!
//! * **One input type, one output type.** `handle(now, input)` feeds an input;
//!   `poll()` returns the next [`Output`]: an `Op` to perform, an `Event` to publish, a
//!   deadline (`Wait(Instant)`) or `Done(result)` for the request in progress.
//! * **The drain rule.** After *every* `handle`, the driver calls `poll` until it returns `None`.
//!   A machine changes state only inside `handle`; `poll` hands out what that call queued.
//! * **Op outcomes are inputs.** The driver performs each Op and returns its outcome as a
//!   [`Completion`](op::Completion) `{ id, result }` through `handle`. Ids are the machine's.
//! * **Time is an input.** `now` is an [`Instant`] (nanoseconds since the Unix epoch) that the
//!   driver reads from its clock; the core never reads one.
//! * **Illegal input changes nothing.** `handle` refuses it with the machine's typed error
//!   (e.g. a write at the wrong offset), leaving the machine as it was.
//! * **One `Done` per request.** Every request input ends with exactly one `Done`.
//! * **Deterministic.** The same inputs give the same outputs, byte for byte.
//!
//! ## A complete run loop
//!
//! A driver in miniature: an in-memory "host" that executes the file Ops of an
//! [`Ingest`](content::Ingest), drained exactly as the rule says.
//!
//! ```
//! use std::collections::HashMap;
//! use berth_core::content::{Ingest, IngestPaths, Input, OpenRequest, Reply};
//! use berth_core::op::{Completion, Handle, OpKind, OpOutput, OpResult};
//! use berth_core::{Digest, Instant, Machine, Output};
//!
//! /// A toy host: files in a map, handles index a list of paths.
//! #[derive(Default)]
//! struct Host { files: HashMap<String, Vec<u8>>, handles: Vec<String> }
//!
//! impl Host {
//!     fn perform(&mut self, kind: OpKind) -> OpResult {
//!         Ok(match kind {
//!             OpKind::Mkdir { .. } | OpKind::Fsync { .. } | OpKind::FsyncDir { .. }
//!             | OpKind::Close { .. } => OpOutput::Done,
//!             OpKind::ReadFile { path } => match self.files.get(&path) {
//!                 Some(d) => OpOutput::Data(d.clone().into()),
//!                 None => return Err(berth_core::op::OpError { op: "readfile", errno: 2 }),
//!             },
//!             OpKind::WriteFile { path, data, .. } => { self.files.insert(path, data.to_vec()); OpOutput::Done }
//!             OpKind::Open { path, options } => {
//!                 let f = self.files.entry(path.clone()).or_default();
//!                 if options.truncate { f.clear(); }
//!                 let size = f.len() as u64;
//!                 self.handles.push(path);
//!                 OpOutput::Opened { handle: Handle(self.handles.len() as u64 - 1), size }
//!             }
//!             OpKind::Write { handle, offset, data } => {
//!                 let f = self.files.get_mut(&self.handles[handle.0 as usize]).unwrap();
//!                 let end = offset as usize + data.len();
//!                 if f.len() < end { f.resize(end, 0); }
//!                 f[offset as usize..end].copy_from_slice(&data);
//!                 OpOutput::Written(data.len() as u64)
//!             }
//!             OpKind::Truncate { handle, len } => {
//!                 self.files.get_mut(&self.handles[handle.0 as usize]).unwrap().truncate(len as usize);
//!                 OpOutput::Done
//!             }
//!             OpKind::Stat { .. } => return Err(berth_core::op::OpError { op: "stat", errno: 2 }),
//!             OpKind::Rename { from, to } => {
//!                 let d = self.files.remove(&from).unwrap();
//!                 self.files.insert(to, d);
//!                 OpOutput::Done
//!             }
//!             OpKind::RemoveAll { path } => {
//!                 self.files.retain(|k, _| !k.starts_with(&format!("{path}/")));
//!                 OpOutput::Done
//!             }
//!             other => unimplemented!("{}", other.name()),
//!         })
//!     }
//! }
//!
//! /// Drain the machine, performing Ops, until it reports `Done`.
//! fn run(host: &mut Host, m: &mut Ingest, now: Instant) -> <Ingest as Machine>::Done {
//!     loop {
//!         match m.poll() {
//!             Some(Output::Op(op)) => {
//!                 let result = host.perform(op.kind);
//!                 m.handle(now, Completion { id: op.id, result }.into()).unwrap();
//!             }
//!             Some(Output::Done(result)) => return result,
//!             Some(Output::Event(())) | Some(Output::Wait(_)) => {}
//!             None => panic!("machine went quiet without finishing"),
//!         }
//!     }
//! }
//!
//! let mut host = Host::default();
//! let now = Instant(1_700_000_000_000_000_000);
//! let paths = IngestPaths { dir: "content/ingest/x".into(), blobs: "content/blobs".into() };
//! let req = OpenRequest {
//!     namespace: "default".into(), reference: "my-ref".into(),
//!     expected: None, total: 11, paths,
//! };
//! let mut ingest = Ingest::open(now, req);
//! assert!(matches!(run(&mut host, &mut ingest, now), Ok(Reply::Opened { .. })));
//!
//! ingest.handle(now, Input::Write { offset: 0, data: "hello world".into() }).unwrap();
//! run(&mut host, &mut ingest, now).unwrap();
//!
//! let expected = Digest::sha256(b"hello world");
//! ingest.handle(now, Input::Commit { size: 11, expected: Some(expected) }).unwrap();
//! assert!(matches!(run(&mut host, &mut ingest, now), Ok(Reply::Committed { .. })));
//! assert_eq!(host.files[&format!("content/blobs/sha256/{}", expected.hex())], b"hello world");
//! ```
//!
//! ## Modules
//!
//! * [`digest`]: digests and the resumable hasher.
//! * [`op`]: the Op vocabulary, the seam every driver implements.
//! * [`content`]: the `Ingest` machine.
//! * [`metadata`]: namespace, label and lease rules.
//! * [`events`]: event topics.
//! * [`image`]: references, media types, manifests, platforms, chain IDs.
//! * [`archive`]: gzip/zstd decoding, tar parsing, layer application.
//! * [`snapshot`]: the snapshot tree and its mounts.
//! * [`registry`]: the OCI distribution API client machine.
//! * [`spec`]: the OCI runtime spec of a container, from its image config.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod content;
pub mod digest;
pub mod events;
pub mod image;
pub mod machine;
pub mod metadata;
pub mod op;
pub mod registry;
pub mod snapshot;
pub mod spec;
pub mod task;
mod time;

pub use digest::{Algorithm, Digest, DigestError};
pub use machine::{Machine, Output};
pub use time::Instant;
