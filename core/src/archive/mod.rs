//! Archives: push decoders for gzip and zstd, a push tar parser, and layer paths; the layer
//! `Apply` and `Diff` machines will be built on them.
//!
//! Everything here is push-style and IO-free: the driver hands in bytes as they arrive (from the
//! network or the content store), in chunks of any size, and drains what is ready.
//!
//! * [`decompress`]: [`Decoder`], compressed chunks in, bounded uncompressed chunks out, for
//!   [`Compression::None`], [`Compression::Gzip`] (multi-member) and [`Compression::Zstd`]
//!   (multi-frame); it computes the diff ID and the compressed digest on the fly.
//! * [`tar`]: [`TarParser`], uncompressed chunks in, [`TarEvent`]s out: each entry's header
//!   (ustar, GNU and PAX extensions applied), its data as zero-copy slices, its end.
//! * [`path`]: [`classify`] and [`normalize`], which turn an entry's raw path into a canonical
//!   relative path or a typed refusal, and recognise OCI whiteouts.
//!
//! ## The pipeline
//!
//! ```
//! use berth_core::archive::{classify, Compression, Decoder, LayerPath, TarEvent, TarParser};
//! use bytes::Bytes;
//!
//! # fn layer() -> Vec<u8> {
//! #     let mut b = tar::Builder::new(Vec::new());
//! #     let mut h = tar::Header::new_ustar();
//! #     h.set_size(5);
//! #     h.set_mode(0o644);
//! #     b.append_data(&mut h, "etc/motd", &b"hello"[..]).unwrap();
//! #     let mut h = tar::Header::new_ustar();
//! #     h.set_size(0);
//! #     b.append_data(&mut h, "etc/.wh.old", &b""[..]).unwrap();
//! #     let tar = b.into_inner().unwrap();
//! #     let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
//! #     std::io::Write::write_all(&mut e, &tar).unwrap();
//! #     e.finish().unwrap()
//! # }
//! let blob = layer(); // a gzip layer, as it arrives from a registry
//! let mut decoder = Decoder::new(Compression::sniff(&blob).unwrap());
//! let mut parser = TarParser::new();
//! let mut seen = Vec::new();
//! for piece in blob.chunks(1000) {
//!     decoder.push(Bytes::copy_from_slice(piece)).unwrap();
//!     while let Some(tar_bytes) = decoder.poll().unwrap() {
//!         parser.push(tar_bytes).unwrap();
//!         while let Some(event) = parser.poll().unwrap() {
//!             match event {
//!                 TarEvent::Entry(e) => seen.push(classify(&e.path).unwrap()),
//!                 TarEvent::Data(_bytes) => {} // a Write Op's payload, uncopied
//!                 TarEvent::EntryEnd | TarEvent::End => {}
//!             }
//!         }
//!     }
//! }
//! let decoded = decoder.finish().unwrap(); // diff ID, blob digest, lengths
//! parser.finish().unwrap(); // the end-of-archive marker was there
//! assert_eq!(seen, [
//!     LayerPath::Plain("etc/motd".into()),
//!     LayerPath::Whiteout { target: "etc/old".into() },
//! ]);
//! # let _ = decoded;
//! ```
//!
//! ## Codec choices, measured
//!
//! Measured on this project's machine kind (2-core AMD EPYC, SHA-NI; a shared machine, so the
//! figures are per CPU-second of the decoding thread, which stayed stable within 2 % across
//! runs while wall-clock figures did not) on a layer-like tar of `/usr/include`,
//! `/usr/share/man`, `/usr/libexec` and `/usr/sbin`: 243.2 MB, 32,933 entries; `gzip -6`
//! 85.8 MB, `zstd -3` 77.9 MB. Throughput is of uncompressed output.
//!
//! | gzip: flate2 1.1 backend, `MultiGzDecoder`, 64 KiB reads | MB/s |
//! |---|---|
//! | miniz_oxide | 475 |
//! | miniz_oxide + `runtime_detection` | 523 |
//! | zlib-rs (no `runtime_detection`: no AVX2/PCLMUL paths) | 584 |
//! | zlib-ng 2.x (C; needs `cmake`, absent from the machine image) | 663 |
//! | **zlib-rs + `runtime_detection`** (chosen) | **778** |
//!
//! | zstd | MB/s |
//! |---|---|
//! | **`zstd` 0.14 crate (libzstd 1.5.7, C)** (chosen) | **1722** |
//! | `ruzstd` 0.9 (pure Rust; also needs Rust 1.87, above the workspace's 1.85) | 506 |
//!
//! So gzip runs on flate2's pure-Rust zlib-rs backend with CPU feature detection (which uses
//! `std` only for `is_x86_feature_detected!`), 1.5x miniz_oxide and 1.2x zlib-ng without a C
//! toolchain dependency; zstd runs on libzstd through the `zstd` crate's safe streaming API
//! (3.4x ruzstd). Neither does IO: berth-core hands them byte slices. libzstd is linked
//! statically with its `ZSTD_*` symbols exported: a C program embedding berth-ffi that also
//! links its own libzstd would see the two clash.
//!
//! ## The pipeline, measured
//!
//! `cargo run --release -p berth-core --example inflate_bench -- LAYER`, the same layer fed
//! in 64 KiB chunks, per CPU-second of the thread (wall-clock figures were up to 1.4x lower
//! while other builds shared the machine):
//!
//! | stage | gzip | zstd | none |
//! |---|---|---|---|
//! | [`Decoder`] with diff ID and compressed digest (MB/s out) | 488 | 746 | 1821 |
//! | [`Decoder`], diff ID only | 537 | 853 | — |
//! | [`TarParser`] alone, 32,933 entries (MB/s of tar) | 11,200 | 12,200 | 12,157 |
//! | decode + diff ID + parse (MB/s out) | 518 | 810 | 1606 |
//!
//! The tar parser copies no data (entries' bytes are `Bytes` slices of the decoder's output),
//! so it costs about 0.6 µs per entry and next to nothing per byte: the pipeline is bound by
//! inflate and by sha256 for the diff ID (about 1.8 GB/s with SHA-NI), which no layer
//! application can skip. Hashing the compressed stream again is optional
//! ([`Decoder::hash_compressed`]): the content store verifies the blob digest on commit.

pub mod apply;
pub mod decompress;
pub mod diff;
pub mod path;
pub mod tar;

pub use decompress::{Compression, DecodeError, Decoded, Decoder};
pub use path::{classify, normalize, LayerPath, PathError};
pub use tar::{Device, Entry, EntryKind, Mtime, TarError, TarEvent, TarParser, TarSummary, Xattr};

#[cfg(test)]
mod cross_tests;
