//! # berth-ffi: a C ABI over berth's pure core
//!
//! This crate exposes five things of `berth-core` to C: content digests ([`berth_digest`]),
//! image references and platforms ([`berth_reference`], [`berth_platform`]), the resumable,
//! digest-verified blob write ([`berth_ingest`]), the overlayfs/native snapshot tree
//! (`berth_snapshot_tree`: containerd's snapshot rules, mounts and directory actions, for a host
//! that carries them out itself) and the task lifecycle table (`berth_task_table`: what each
//! Tasks request means and which runtime call it needs), as a `cdylib`, a `staticlib` and the
//! generated header `include/berth.h`.
//!
//! ## Conventions
//!
//! * Every exported name starts with `berth_` (constants with `BERTH_`).
//! * Fallible functions return a [`berth_result`]; `BERTH_OK` is 0. Objects come back through an
//!   out-pointer and are freed with their `_free` function (which accepts NULL).
//! * A NULL where a pointer is required gives `BERTH_ERR_NULL`; a string that is not UTF-8, or a
//!   bad digest, reference or platform string, gives `BERTH_ERR_INVALID`.
//! * **Panics never cross into C.** Every exported function runs its body inside
//!   `ffi_panic_boundary`; a panic becomes `BERTH_ERR_PANIC` (or the function's documented
//!   fallback value), and an ingest whose call panicked refuses further calls with
//!   `BERTH_ERR_PANIC` (free it).
//! * Strings handed to C are NUL-terminated and also come with their length. Strings returned
//!   into a caller's buffer follow one rule: the buffer gets the text and a NUL, `*written` the
//!   text's length without the NUL; if the buffer is too small nothing is copied,
//!   `BERTH_ERR_BUFFER_TOO_SMALL` is returned and `*written` says how long the text is.
//! * Objects are not thread-safe: call into one object from one thread at a time (moving it to
//!   another thread between calls is fine).
//!
//! ## Driving an ingest from C
//!
//! A [`berth_ingest`] is the core's `Ingest` machine and follows its contract exactly:
//! every call that feeds it an input (`berth_ingest_open`, `_write`, `_set_total`, `_commit`,
//! `_abort`, `_close`, `_complete`) must be followed by `berth_ingest_poll` until it reports
//! `BERTH_OUTPUT_NONE`. Each `BERTH_OUTPUT_OP` is a file operation for the host to perform; its
//! outcome goes back with `berth_ingest_complete`. Each request ends with exactly one
//! `BERTH_OUTPUT_DONE`. A request the machine refuses right now (a write at the wrong offset,
//! a request while busy) returns its error directly and changes nothing.
//!
//! ```c
//! berth_ingest *ing;
//! berth_ingest_open(now, "default", "my-ref", NULL, 0, "ingest/x", "blobs", &ing);
//! for (;;) {
//!     berth_output out;
//!     berth_ingest_poll(ing, &out);
//!     if (out.kind == BERTH_OUTPUT_OP) {
//!         berth_op_output res = {0};
//!         int err = host_perform(&out.op, &res);  /* 0 or an errno */
//!         berth_ingest_complete(ing, now, out.op.id, err, &res);
//!     } else if (out.kind == BERTH_OUTPUT_DONE) {
//!         /* out.done.result, out.done.reply, out.done.status ... */
//!     } else if (out.kind == BERTH_OUTPUT_NONE) {
//!         break;
//!     }
//! }
//! ```
//!
//! Pointers inside a polled [`berth_output`] borrow from the ingest and stay valid until the
//! next call that takes the ingest as a non-`const` pointer. The host owns every file handle it
//! hands out: when an ingest is freed with handles still open, the host closes them.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(clippy::missing_safety_doc)]
// The exported types and constants use C's names (`berth_digest`, `BERTH_OK`): they are the
// header's names, spelled once.
#![allow(non_camel_case_types)]

mod panic;
#[macro_use]
mod arg;
mod digest;
mod handle;
mod image;
mod ingest;
mod result;
mod snapshot;
mod task;

pub use digest::{
    berth_algorithm, berth_digest, berth_digest_algorithm, berth_digest_equal, berth_digest_free,
    berth_digest_parse, berth_digest_sha256, berth_digest_to_string, BERTH_DIGEST_STRING_MAX,
};
pub use image::{
    berth_platform, berth_platform_free, berth_platform_matches, berth_platform_parse,
    berth_platform_to_string, berth_reference, berth_reference_digest, berth_reference_domain,
    berth_reference_familiar, berth_reference_free, berth_reference_parse, berth_reference_path,
    berth_reference_tag, berth_reference_to_string,
};
pub use ingest::{
    berth_done, berth_ingest, berth_ingest_abort, berth_ingest_close, berth_ingest_commit,
    berth_ingest_complete, berth_ingest_free, berth_ingest_last_error, berth_ingest_open,
    berth_ingest_poll, berth_ingest_set_total, berth_ingest_status, berth_ingest_write, berth_op,
    berth_op_kind, berth_op_output, berth_op_output_kind, berth_output, berth_output_kind,
    berth_recovery, berth_reply_kind, berth_status, BERTH_OPEN_CREATE, BERTH_OPEN_EXCLUSIVE,
    BERTH_OPEN_TRUNCATE, BERTH_OPEN_WRITE,
};
pub use result::{berth_result, berth_result_name};
