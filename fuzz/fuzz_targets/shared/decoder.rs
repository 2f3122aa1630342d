//! The decoder checks shared by the `archive_gzip` and `archive_zstd` targets: never panics,
//! never hands out a chunk above its chunk size, and the result (output bytes, digests and
//! member count, or the kind of error) does not depend on how the input was chunked.
//!
//! Chunk sizes come from the input's last byte (which stays part of the stream), so real
//! compressed files are valid seeds as they are.

use berth_core::archive::{Compression, DecodeError, Decoded, Decoder};

/// Output beyond this ends a run early (a bomb costs time, not correctness).
const MAX_OUT: usize = 16 << 20;

#[derive(Debug, PartialEq)]
enum Outcome {
    Done(Vec<u8>, Decoded),
    TooBig,
    Failed(DecodeError),
}

fn run(codec: Compression, data: &[u8], chunks: impl Iterator<Item = usize>) -> Outcome {
    let mut d = Decoder::new(codec).with_chunk_size(4096);
    let mut out = Vec::new();
    let mut pos = 0;
    for n in chunks {
        if pos >= data.len() {
            break;
        }
        let n = n.clamp(1, data.len() - pos);
        if let Err(e) = d.push_slice(&data[pos..pos + n]) {
            return Outcome::Failed(e);
        }
        pos += n;
        loop {
            match d.poll() {
                Ok(Some(c)) => {
                    assert!(!c.is_empty() && c.len() <= 4096);
                    out.extend_from_slice(&c);
                    if out.len() > MAX_OUT {
                        return Outcome::TooBig;
                    }
                }
                Ok(None) => break,
                Err(e) => return Outcome::Failed(e),
            }
        }
    }
    match d.finish() {
        Ok(s) => {
            assert_eq!(s.uncompressed_len, out.len() as u64);
            assert_eq!(s.compressed_len, data.len() as u64);
            assert_eq!(s.diff_id, berth_core::Digest::sha256(&out));
            assert_eq!(s.compressed_digest, Some(berth_core::Digest::sha256(data)));
            Outcome::Done(out, s)
        }
        Err(e) => Outcome::Failed(e),
    }
}

fn chunking(seed: u8) -> impl Iterator<Item = usize> {
    let mut x = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 3 {
            0 => (x >> 8) as usize % 16 + 1,
            1 => (x >> 8) as usize % 1024 + 1,
            _ => (x >> 8) as usize % 70_000 + 1,
        }
    })
}

/// Runs every check on `data` decoded as `codec`.
pub fn check(codec: Compression, data: &[u8]) {
    let seed = data.last().copied().unwrap_or(0);
    let whole = run(codec, data, std::iter::once(data.len()));
    let chunked = run(codec, data, chunking(seed));
    match (&whole, &chunked) {
        (Outcome::TooBig, _) | (_, Outcome::TooBig) => {}
        (Outcome::Done(..), Outcome::Done(..)) => {
            assert!(whole == chunked, "chunking changed the output")
        }
        // Corrupt-data offsets are approximate (the codec reads ahead within its window), so
        // only the kind of error must agree — except that a streaming codec may still hold a
        // corrupt tail unread when its input ends: fed whole it says Corrupt, fed in pieces
        // Truncated. Either way the stream is refused, which is what matters.
        (Outcome::Failed(a), Outcome::Failed(b)) => {
            let corrupt_or_truncated = |e: &DecodeError| {
                matches!(
                    e,
                    DecodeError::Corrupt { .. } | DecodeError::Truncated { .. }
                )
            };
            assert!(
                std::mem::discriminant(a) == std::mem::discriminant(b)
                    || corrupt_or_truncated(a) && corrupt_or_truncated(b),
                "{a:?} vs {b:?}"
            );
            let _ = a.to_string();
        }
        _ => panic!("chunking changed success: {whole:?} vs {chunked:?}"),
    }
}
