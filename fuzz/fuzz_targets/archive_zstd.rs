//! The zstd push decoder on arbitrary bytes in arbitrary chunkings (checks in
//! `shared/decoder.rs`); real `.zst` files are valid seeds as they are.
#![no_main]

#[path = "shared/decoder.rs"]
mod decoder;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoder::check(
    berth_core::archive::Compression::Zstd,
    data
));
