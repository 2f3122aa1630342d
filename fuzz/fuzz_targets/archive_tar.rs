//! The push tar parser on arbitrary bytes in arbitrary chunkings: never panics, its events are
//! well formed (entry, data summing to the entry's size, entry end; nothing after the end
//! marker), and the result — every event, every data byte, or the error — does not depend on
//! how the input was chunked. Every entry path also goes through the layer path classifier.
//!
//! Chunk sizes come from the input's last byte (which stays part of the tar), so real tar files
//! are valid seeds as they are.
#![no_main]

use berth_core::archive::{classify, normalize, TarError, TarEvent, TarParser};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Ev {
    Entry(Box<berth_core::archive::Entry>),
    Data(Vec<u8>),
    EntryEnd,
    End,
}

fn run(data: &[u8], chunks: impl Iterator<Item = usize>) -> Result<Vec<Ev>, TarError> {
    let blob = data;
    let mut p = TarParser::new();
    let mut evs: Vec<Ev> = Vec::new();
    let mut pos = 0;
    let mut open: Option<(u64, u64)> = None; // (size, seen)
    let mut ended = false;
    for n in chunks {
        if pos >= blob.len() {
            break;
        }
        let n = n.clamp(1, blob.len() - pos);
        p.push_slice(&blob[pos..pos + n])?;
        pos += n;
        while let Some(ev) = p.poll()? {
            assert!(!ended, "event after the end marker");
            match ev {
                TarEvent::Entry(e) => {
                    assert!(open.is_none(), "entry inside an entry");
                    open = Some((e.size, 0));
                    let _ = classify(&e.path);
                    if let Some(t) = &e.link_target {
                        let _ = normalize(t);
                    }
                    evs.push(Ev::Entry(Box::new(e)));
                }
                TarEvent::Data(d) => {
                    assert!(!d.is_empty(), "empty data event");
                    let (size, seen) = open.as_mut().expect("data outside an entry");
                    *seen += d.len() as u64;
                    assert!(*seen <= *size, "more data than the entry's size");
                    // Adjacent data events are merged: chunking must not matter.
                    match evs.last_mut() {
                        Some(Ev::Data(v)) => v.extend_from_slice(&d),
                        _ => evs.push(Ev::Data(d.to_vec())),
                    }
                }
                TarEvent::EntryEnd => {
                    let (size, seen) = open.take().expect("entry end outside an entry");
                    assert_eq!(size, seen, "entry ended early");
                    evs.push(Ev::EntryEnd);
                }
                TarEvent::End => {
                    assert!(open.is_none(), "end marker inside an entry");
                    ended = true;
                    evs.push(Ev::End);
                }
            }
        }
    }
    assert_eq!(pos, blob.len());
    let s = p.finish()?;
    assert!(ended && open.is_none());
    assert_eq!(s.end_offset + s.trailing, data.len() as u64);
    Ok(evs)
}

/// A deterministic chunking derived from `seed`: sizes from 1 byte to 70 KB.
fn chunking(seed: u8) -> impl Iterator<Item = usize> {
    let mut x = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 4 {
            0 => (x >> 8) as usize % 16 + 1,
            1 => (x >> 8) as usize % 1024 + 1,
            2 => 512,
            _ => (x >> 8) as usize % 70_000 + 1,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let seed = data.last().copied().unwrap_or(0);
    let whole = run(data, std::iter::once(data.len()));
    let chunked = run(data, chunking(seed));
    assert_eq!(whole, chunked, "chunking changed the result");
    if let Err(e) = &whole {
        let _ = e.to_string();
    }
});
