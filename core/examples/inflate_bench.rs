//! Throughput of berth-core's archive pipeline on a real layer, in memory (no disk in the loop).
//!
//! ```text
//! cargo run --release -p berth-core --example inflate_bench -- LAYER [CHUNK_KIB] [ROUNDS]
//! ```
//!
//! `LAYER` is a `.tar`, `.tar.gz` or `.tar.zst` (compression sniffed from its first bytes). The
//! file is read into memory once and fed in `CHUNK_KIB` (default 64) KiB chunks, as a network
//! or disk reader would. Printed, best of `ROUNDS` (default 3):
//!
//! * `decode`: the push decoder alone, diff ID and compressed digest included;
//! * `decode, no digests`: the codec alone (the diff ID hasher still runs: it is not optional);
//! * `tar parse`: the push tar parser over the uncompressed bytes (zero copy: data is sliced);
//! * `decode + parse`: the whole pipeline the layer Apply machine will run.
//!
//! Each line gives wall-clock and on-CPU throughput (this thread's CPU time, from
//! `/proc/thread-self/schedstat`); on a shared machine the CPU figure is the stable one.

use std::time::Instant;

use berth_core::archive::{Compression, Decoder, TarEvent, TarParser};
use bytes::Bytes;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: inflate_bench LAYER [CHUNK_KIB] [ROUNDS]");
    let chunk = args.next().map_or(64, |s| s.parse().expect("CHUNK_KIB")) * 1024;
    let rounds: usize = args.next().map_or(3, |s| s.parse().expect("ROUNDS"));
    let blob = Bytes::from(std::fs::read(&path).expect("read layer"));
    let codec = Compression::sniff(&blob).unwrap_or(Compression::None);
    println!(
        "{path}: {} bytes, {codec}, fed in {} KiB chunks, best of {rounds}",
        blob.len(),
        chunk / 1024
    );

    let mut tar = Vec::new();
    let (secs, out) = best(rounds, || {
        let mut d = Decoder::new(codec);
        let mut n = 0u64;
        for piece in pieces(&blob, chunk) {
            d.push(piece).unwrap();
            while let Some(c) = d.poll().unwrap() {
                n += c.len() as u64;
            }
        }
        let s = d.finish().unwrap();
        assert_eq!(s.uncompressed_len, n);
        n
    });
    report("decode", blob.len() as u64, out, secs);
    if codec != Compression::None {
        let (secs, out) = best(rounds, || {
            let mut d = Decoder::new(codec).hash_compressed(false);
            let mut n = 0u64;
            for piece in pieces(&blob, chunk) {
                d.push(piece).unwrap();
                while let Some(c) = d.poll().unwrap() {
                    n += c.len() as u64;
                }
            }
            d.finish().unwrap();
            n
        });
        report("decode, no compressed digest", blob.len() as u64, out, secs);
    }

    // The uncompressed tar, for the parser alone.
    let mut d = Decoder::new(codec);
    for piece in pieces(&blob, chunk) {
        d.push(piece).unwrap();
        while let Some(c) = d.poll().unwrap() {
            tar.extend_from_slice(&c);
        }
    }
    d.finish().unwrap();
    let tar = Bytes::from(tar);
    let (secs, entries) = best(rounds, || {
        let mut p = TarParser::new();
        let mut entries = 0u64;
        for piece in pieces(&tar, chunk) {
            p.push(piece).unwrap();
            while let Some(ev) = p.poll().unwrap() {
                if let TarEvent::Entry(_) = ev {
                    entries += 1;
                }
            }
        }
        p.finish().unwrap();
        entries
    });
    report("tar parse", tar.len() as u64, tar.len() as u64, secs);
    println!("  ({entries} entries)");

    let (secs, _) = best(rounds, || {
        let mut d = Decoder::new(codec).hash_compressed(false);
        let mut p = TarParser::new();
        let mut data = 0u64;
        for piece in pieces(&blob, chunk) {
            d.push(piece).unwrap();
            while let Some(c) = d.poll().unwrap() {
                p.push(c).unwrap();
                while let Some(ev) = p.poll().unwrap() {
                    if let TarEvent::Data(b) = ev {
                        data += b.len() as u64;
                    }
                }
            }
        }
        d.finish().unwrap();
        p.finish().unwrap();
        data
    });
    report(
        "decode + diff ID + parse",
        blob.len() as u64,
        tar.len() as u64,
        secs,
    );
}

/// Zero-copy chunks of `b`.
fn pieces(b: &Bytes, chunk: usize) -> impl Iterator<Item = Bytes> + '_ {
    (0..b.len())
        .step_by(chunk)
        .map(move |i| b.slice(i..(i + chunk).min(b.len())))
}

/// This thread's CPU time in seconds (Linux), or 0 where unavailable.
fn cpu_time() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 * 1e-9)
}

/// Best (wall, cpu) seconds over `rounds` runs of `f`, and its last result.
fn best<T>(rounds: usize, mut f: impl FnMut() -> T) -> ((f64, f64), T) {
    let (mut wall, mut cpu) = (f64::MAX, f64::MAX);
    let mut out = None;
    for _ in 0..rounds.max(1) {
        let (t, c) = (Instant::now(), cpu_time());
        let r = f();
        wall = wall.min(t.elapsed().as_secs_f64());
        cpu = cpu.min(cpu_time() - c);
        out = Some(r);
    }
    ((wall, cpu), out.expect("at least one round"))
}

fn report(what: &str, input: u64, output: u64, (wall, cpu): (f64, f64)) {
    println!(
        "{what:>30}: wall {wall:.3} s: {:>5.0} MB/s in, {:>5.0} MB/s out | cpu {cpu:.3} s: \
         {:>5.0} MB/s in, {:>5.0} MB/s out",
        input as f64 / wall / 1e6,
        output as f64 / wall / 1e6,
        input as f64 / cpu / 1e6,
        output as f64 / cpu / 1e6,
    );
}
