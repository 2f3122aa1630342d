//! The hash checkpoint decoder on arbitrary bytes: never panics.
//!
//! Input: 8 bytes of data-file length (little endian), then a state file.
//! * `checkpoint::best` and `checkpoint::decode` on the state file as it is.
//! * The first slot's body with its checksum recomputed, so the fuzzer gets past the checksum
//!   into the length fields and the hash midstate; whatever decodes must be self-consistent and
//!   survive re-encoding.
//! * `Hasher::import` on the raw bytes: whatever imports exports and re-imports to the same
//!   hash.
//! * Every hasher that decodes or imports has a midstate covering exactly its length (the fix
//!   of `midstate-length-unchecked`, see `proptests/tests/regressions.rs`: an inconsistent one
//!   once imported, and `digest()` on an absurd one overflowed and panicked).
#![no_main]

use berth_core::content::checkpoint::{self, SLOT_LEN};
use berth_core::digest::Hasher;
use berth_core::Digest;
use libfuzzer_sys::fuzz_target;

const SUM_AT: usize = SLOT_LEN - 32;

/// True if the exported midstate covers exactly `len` bytes: block count × block size +
/// buffered bytes. Reads sha2 0.11's layout: `[version, algorithm, chaining state, block
/// count (u64 LE for sha256, u128 LE for sha512), buffered length, buffer]`.
fn midstate_covers(export: &[u8], len: u64) -> bool {
    let (state, count, block) = match export.get(1) {
        Some(1) => (32, 8, 64u128),
        Some(2) => (64, 16, 128u128),
        _ => return false,
    };
    assert_eq!(
        export.len(),
        2 + state + count + 1 + (block as usize - 1),
        "sha2's midstate layout changed: update midstate_covers"
    );
    let at = 2 + state;
    let mut raw = [0u8; 16];
    raw[..count].copy_from_slice(&export[at..at + count]);
    let blocks = u128::from_le_bytes(raw);
    let pos = u128::from(export[at + count]);
    blocks.checked_mul(block).and_then(|b| b.checked_add(pos)) == Some(u128::from(len))
}

/// Asserts that `Hasher::import` refused every midstate that does not cover its length.
fn assert_covers(h: &Hasher) {
    assert!(
        midstate_covers(&h.export(), h.len()),
        "Hasher::import accepted a midstate that does not cover its {} bytes \
         (midstate-length-unchecked)",
        h.len()
    );
}

fn check(cp: &checkpoint::Checkpoint) {
    assert_eq!(cp.hasher.len(), cp.offset);
    assert_covers(&cp.hasher);
    let slot = checkpoint::encode(cp.seq, cp.total, cp.updated_at, &cp.hasher);
    let again = checkpoint::decode(&slot).expect("an encoded slot decodes");
    assert_eq!(
        (again.seq, again.offset, again.total, again.updated_at),
        (cp.seq, cp.offset, cp.total, cp.updated_at)
    );
    assert_eq!(again.hasher.digest(), cp.hasher.digest());
    let mut file = vec![0u8; 2 * SLOT_LEN];
    let at = checkpoint::slot_offset(cp.seq) as usize;
    file[at..at + SLOT_LEN].copy_from_slice(&slot);
    let best = checkpoint::best(&file, cp.offset).expect("a covered slot is found");
    assert_eq!(best.seq, cp.seq);
    assert!(checkpoint::best(&file, cp.offset.wrapping_sub(1)).is_none() || cp.offset == 0);
}

fuzz_target!(|data: &[u8]| {
    let Some((len, state)) = data.split_first_chunk::<8>() else {
        return;
    };
    let data_len = u64::from_le_bytes(*len);

    if let Some(cp) = checkpoint::best(state, data_len) {
        assert!(cp.offset <= data_len);
        check(&cp);
    }
    for slot in state.chunks(SLOT_LEN) {
        if let Ok(cp) = checkpoint::decode(slot) {
            check(&cp);
        }
    }

    let mut slot = vec![0u8; SLOT_LEN];
    let body = &state[..state.len().min(SUM_AT)];
    slot[..body.len()].copy_from_slice(body);
    let sum = Digest::sha256(&slot[..SUM_AT]);
    slot[SUM_AT..].copy_from_slice(sum.raw());
    if let Ok(cp) = checkpoint::decode(&slot) {
        check(&cp);
    }

    if let Ok(h) = Hasher::import(state, data_len) {
        assert_covers(&h);
        let again = Hasher::import(&h.export(), h.len()).expect("an export imports");
        assert_eq!(again.digest(), h.digest());
        assert_eq!(again.algorithm(), h.algorithm());
    }
});
