//! The on-disk hash checkpoint of an ingest: two fixed-size slots written alternately.
//!
//! After each write the ingest stores `{seq, offset, total, updated_at, hash midstate}` in slot
//! `seq % 2` with one positioned write, no rename and no fsync. A torn or lost slot write leaves
//! the other slot intact, and each slot carries a sha256 of itself, so resume always finds the
//! newest checkpoint that is both whole and covered by the data file.

use crate::digest::{Digest, Hasher, MidstateError};
use crate::Instant;

/// Size of one slot in bytes. The state file is `2 * SLOT_LEN` long.
pub const SLOT_LEN: usize = 512;
const MAGIC: &[u8; 8] = b"BRTHCKP1";
const SUM_AT: usize = SLOT_LEN - 32;
const STATE_AT: usize = 42;

/// One decoded checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Monotonic sequence number; the slot is `seq % 2`.
    pub seq: u64,
    /// Bytes of data the hash covers.
    pub offset: u64,
    /// Expected total size (0 if unknown).
    pub total: u64,
    /// Time of the write that produced this checkpoint.
    pub updated_at: Instant,
    /// The restored hasher.
    pub hasher: Hasher,
}

/// Encodes a checkpoint into one slot.
#[must_use]
pub fn encode(seq: u64, total: u64, updated_at: Instant, hasher: &Hasher) -> Vec<u8> {
    let mut slot = vec![0u8; SLOT_LEN];
    slot[..8].copy_from_slice(MAGIC);
    slot[8..16].copy_from_slice(&seq.to_le_bytes());
    slot[16..24].copy_from_slice(&hasher.len().to_le_bytes());
    slot[24..32].copy_from_slice(&total.to_le_bytes());
    slot[32..40].copy_from_slice(&updated_at.0.to_le_bytes());
    let state = hasher.export();
    debug_assert!(STATE_AT + state.len() <= SUM_AT);
    slot[40..42].copy_from_slice(&(state.len() as u16).to_le_bytes());
    slot[STATE_AT..STATE_AT + state.len()].copy_from_slice(&state);
    let sum = Digest::sha256(&slot[..SUM_AT]);
    slot[SUM_AT..].copy_from_slice(sum.raw());
    slot
}

/// Byte offset of the slot for `seq` in the state file.
#[must_use]
pub fn slot_offset(seq: u64) -> u64 {
    (seq % 2) * SLOT_LEN as u64
}

/// Why a slot did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlotError {
    /// Shorter than a slot, or all zero (never written).
    #[error("checkpoint slot is empty")]
    Empty,
    /// Magic or checksum wrong: a torn or foreign write.
    #[error("checkpoint slot fails its checksum")]
    Checksum,
    /// The midstate inside does not restore.
    #[error("checkpoint slot holds a bad hash midstate: {0}")]
    Midstate(#[from] MidstateError),
}

/// Decodes one slot.
pub fn decode(slot: &[u8]) -> Result<Checkpoint, SlotError> {
    if slot.len() < SLOT_LEN || slot[..8].iter().all(|b| *b == 0) {
        return Err(SlotError::Empty);
    }
    let slot = &slot[..SLOT_LEN];
    if &slot[..8] != MAGIC || Digest::sha256(&slot[..SUM_AT]).raw() != &slot[SUM_AT..] {
        return Err(SlotError::Checksum);
    }
    let u64_at = |i: usize| u64::from_le_bytes(slot[i..i + 8].try_into().expect("8 bytes"));
    let state_len = u16::from_le_bytes([slot[40], slot[41]]) as usize;
    if STATE_AT + state_len > SUM_AT {
        return Err(SlotError::Checksum);
    }
    let offset = u64_at(16);
    let hasher = Hasher::import(&slot[STATE_AT..STATE_AT + state_len], offset)?;
    Ok(Checkpoint {
        seq: u64_at(8),
        offset,
        total: u64_at(24),
        updated_at: Instant(u64_at(32)),
        hasher,
    })
}

/// Picks the newest whole checkpoint whose offset the data file (of `data_len` bytes) covers.
#[must_use]
pub fn best(state_file: &[u8], data_len: u64) -> Option<Checkpoint> {
    let mut found: Option<Checkpoint> = None;
    for slot in state_file.chunks(SLOT_LEN).take(2) {
        if let Ok(cp) = decode(slot) {
            if cp.offset <= data_len && found.as_ref().is_none_or(|f| cp.seq > f.seq) {
                found = Some(cp);
            }
        }
    }
    found
}

/// The highest sequence number of any whole slot, covered by the data or not (0 if none).
#[must_use]
pub fn max_seq(state_file: &[u8]) -> u64 {
    state_file
        .chunks(SLOT_LEN)
        .take(2)
        .filter_map(|s| decode(s).ok())
        .map(|c| c.seq)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn hasher(data: &[u8]) -> Hasher {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h
    }

    #[test]
    fn newest_covered_slot_wins() {
        let mut file = vec![0u8; 2 * SLOT_LEN];
        let a = encode(4, 0, Instant(1), &hasher(b"abc"));
        let b = encode(5, 0, Instant(2), &hasher(b"abcdef"));
        file[..SLOT_LEN].copy_from_slice(&a);
        file[SLOT_LEN..].copy_from_slice(&b);
        assert_eq!(best(&file, 6).unwrap().seq, 5);
        // the data file is shorter than the newest checkpoint: fall back to the older slot
        assert_eq!(best(&file, 4).unwrap().seq, 4);
        assert!(best(&file, 2).is_none());
    }

    #[test]
    fn torn_slot_is_ignored() {
        let mut file = vec![0u8; 2 * SLOT_LEN];
        file[..SLOT_LEN].copy_from_slice(&encode(2, 0, Instant(1), &hasher(b"ab")));
        let mut torn = encode(3, 0, Instant(2), &hasher(b"abcd"));
        torn[100] ^= 1;
        file[SLOT_LEN..].copy_from_slice(&torn);
        let cp = best(&file, 10).unwrap();
        assert_eq!((cp.seq, cp.offset), (2, 2));
        assert_eq!(decode(&torn).unwrap_err(), SlotError::Checksum);
        assert_eq!(decode(&[0u8; SLOT_LEN]).unwrap_err(), SlotError::Empty);
    }

    #[test]
    fn restored_hasher_continues_the_stream() {
        let slot = encode(1, 9, Instant(7), &hasher(b"hello"));
        let mut cp = decode(&slot).unwrap();
        assert_eq!((cp.offset, cp.total, cp.updated_at), (5, 9, Instant(7)));
        cp.hasher.update(b" you");
        assert_eq!(cp.hasher.digest(), Digest::sha256(b"hello you"));
    }
}
