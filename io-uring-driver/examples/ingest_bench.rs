//! A quick measurement, not a test: the ingest write pattern through the io_uring driver and
//! the smol driver.
//!
//! One ingest writes a 1 GiB file in 1 MiB `Write` Ops, one in flight, each followed by a
//! 512-byte `Write` to a second "state" file (the checkpoint), then `Fsync`s the data file.
//! A second pattern isolates the per-Op cost: 100 000 sequential 512-byte `Write`s.
//! Each is run 5 times per driver (alternating, and alternating which goes first), on tmpfs (`/dev/shm`) and on disk (`/tmp`);
//! the medians and the io-uring/smol ratio are printed.
//!
//! `cargo run --release -p berth-uring --example ingest_bench [-- TOTAL_MIB [RUNS [DIR,DIR… [io-uring|smol]]]]`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::op::{Handle, OpKind, OpOutput, OpenOptions};
use berth_drivers::Executor;
use berth_smol::SmolExecutor;
use berth_uring::UringExecutor;
use bytes::Bytes;

const CHUNK: usize = 1 << 20;
const STATE: usize = 512;
const SMALL_OPS: usize = 100_000;

async fn open(e: &dyn Executor, path: &str) -> Handle {
    match e
        .execute(OpKind::Open {
            path: path.into(),
            options: OpenOptions::create_truncate(0o644),
        })
        .await
    {
        Ok(OpOutput::Opened { handle, .. }) => handle,
        other => panic!("open {path}: {other:?}"),
    }
}

/// Writes all of `data` at `offset`, as the ingest machine does (short writes continue).
async fn write_all(e: &dyn Executor, handle: Handle, mut offset: u64, mut data: Bytes) {
    while !data.is_empty() {
        match e
            .execute(OpKind::Write {
                handle,
                offset,
                data: data.clone(),
            })
            .await
        {
            Ok(OpOutput::Written(n)) if n > 0 => {
                offset += n;
                data = data.slice(n as usize..);
            }
            other => panic!("write: {other:?}"),
        }
    }
}

/// One ingest: (time of the writes, time of the final fsync).
async fn ingest(e: &dyn Executor, chunks: usize) -> (Duration, Duration) {
    let data = open(e, "data").await;
    let state = open(e, "state").await;
    let chunk = Bytes::from((0..CHUNK).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let slot = Bytes::from(vec![0x5a; STATE]);
    let t = Instant::now();
    for i in 0..chunks {
        write_all(e, data, (i * CHUNK) as u64, chunk.clone()).await;
        write_all(e, state, ((i % 2) * STATE) as u64, slot.clone()).await;
    }
    let writes = t.elapsed();
    let t = Instant::now();
    e.execute(OpKind::Fsync { handle: data }).await.unwrap();
    let fsync = t.elapsed();
    e.close_now(data);
    e.close_now(state);
    (writes, fsync)
}

async fn small_writes(e: &dyn Executor) -> Duration {
    let h = open(e, "small").await;
    let slot = Bytes::from(vec![0x5a; STATE]);
    let t = Instant::now();
    for i in 0..SMALL_OPS {
        write_all(e, h, ((i % 8) * STATE) as u64, slot.clone()).await;
    }
    let d = t.elapsed();
    e.close_now(h);
    d
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn make(which: &str, root: &Path) -> Arc<dyn Executor> {
    match which {
        "io-uring" => {
            let e = UringExecutor::open(root).unwrap();
            assert!(e.uses_ring_for("write"), "no ring on this kernel");
            Arc::new(e)
        }
        _ => Arc::new(SmolExecutor::open(root).unwrap()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total_mib: usize = args.get(1).map_or(1024, |a| a.parse().unwrap());
    let runs: usize = args.get(2).map_or(5, |a| a.parse().unwrap());
    let drivers: Vec<&str> = match args.get(4).map(String::as_str) {
        Some("io-uring") => vec!["io-uring"],
        Some("smol") => vec!["smol"],
        _ => vec!["io-uring", "smol"],
    };
    println!(
        "ingest: {total_mib} MiB in 1 MiB writes + 512 B state write each, one in flight; \
         {runs} runs, medians"
    );
    let bases: Vec<String> = match args.get(3) {
        Some(b) => b.split(',').map(String::from).collect(),
        None => vec!["/dev/shm".into(), "/tmp".into()],
    };
    for base in &bases {
        let mut writes = vec![Vec::new(); drivers.len()];
        let mut fsyncs = vec![Vec::new(); drivers.len()];
        let mut small = vec![Vec::new(); drivers.len()];
        for run in 0..runs {
            // Alternate which driver goes first: the first run after a file system's
            // previous (deleted) gigabyte can pay for it.
            let mut order: Vec<usize> = (0..drivers.len()).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for d in order {
                let which = drivers[d];
                let dir = tempfile::tempdir_in(base).unwrap();
                let e = make(which, dir.path());
                let (w, f) = smol::block_on(ingest(&*e, total_mib));
                writes[d].push(w);
                fsyncs[d].push(f);
                small[d].push(smol::block_on(small_writes(&*e)));
                drop(e);
                drop(dir);
            }
        }
        let gib = total_mib as f64 / 1024.0;
        println!("{base}:");
        let mut meds = Vec::new();
        for (d, which) in drivers.iter().enumerate() {
            let w = median(writes[d].clone());
            let f = median(fsyncs[d].clone());
            let s = median(small[d].clone());
            println!(
                "  {which:9} writes {:8.1} ms ({:5.2} GiB/s)  final fsync {:7.1} ms  \
                 {SMALL_OPS} x 512 B writes {:7.1} ms ({:4.1} us/op)",
                w.as_secs_f64() * 1e3,
                gib / w.as_secs_f64(),
                f.as_secs_f64() * 1e3,
                s.as_secs_f64() * 1e3,
                s.as_secs_f64() * 1e6 / SMALL_OPS as f64,
            );
            let ms = |v: &[Duration]| {
                v.iter()
                    .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "            runs (ms): writes [{}]  fsync [{}]  small [{}]",
                ms(&writes[d]),
                ms(&fsyncs[d]),
                ms(&small[d])
            );
            meds.push((w, f, s));
        }
        if meds.len() < 2 {
            continue;
        }
        let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "  io-uring/smol time: writes {:.2}  writes+fsync {:.2}  small writes {:.2}",
            r(meds[0].0, meds[1].0),
            r(meds[0].0 + meds[0].1, meds[1].0 + meds[1].1),
            r(meds[0].2, meds[1].2),
        );
    }
}
