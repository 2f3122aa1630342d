//! Chain IDs: the names of the snapshots an image's layers unpack into.
//!
//! As containerd's `identity.ChainIDs`: `chain_0 = diff_0` and
//! `chain_i = sha256(chain_{i-1} + " " + diff_i)`, hashing the string forms
//! (`sha256:<hex> sha256:<hex>`). The result is always sha256, whatever the diff IDs are.

use crate::Digest;

/// The chain ID of every prefix of `diff_ids`: element `i` names the snapshot holding layers
/// `0..=i` applied in order.
#[must_use]
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => *diff,
            Some(parent) => next_chain_id(parent, diff),
        };
        out.push(next);
    }
    out
}

/// The chain ID of all of `diff_ids` (the top snapshot), or `None` if there are none.
#[must_use]
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    let (first, rest) = diff_ids.split_first()?;
    Some(
        rest.iter()
            .fold(*first, |parent, diff| next_chain_id(&parent, diff)),
    )
}

/// The chain ID of `diff` applied on top of the chain `parent`.
#[must_use]
pub fn next_chain_id(parent: &Digest, diff: &Digest) -> Digest {
    Digest::sha256(format!("{parent} {diff}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn d(s: &str) -> Digest {
        Digest::parse(s).unwrap()
    }

    fn sha256_of(s: &str) -> String {
        let raw = sha2::Sha256::digest(s.as_bytes());
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    #[test]
    fn matches_the_definition_and_known_vectors() {
        let diffs: Vec<Digest> = ["1", "2", "3"]
            .iter()
            .map(|c| d(&format!("sha256:{}", c.repeat(64))))
            .collect();
        // by hand: the string form, a space, the string form, hashed
        let c1 = sha256_of(&format!("{} {}", diffs[0], diffs[1]));
        let c2 = sha256_of(&format!("{c1} {}", diffs[2]));
        // and the same vectors computed outside Rust (python hashlib)
        assert_eq!(
            c1,
            "sha256:9932074217c35353d2e03a3f5a86549f7c67bfeb0ba53e23d69f4d4c8f7958f5"
        );
        assert_eq!(
            c2,
            "sha256:50127c0d6b338be78246434b4bce23ecf75e505158ea0bbd15effeb162fbf3ec"
        );
        let chain = chain_ids(&diffs);
        assert_eq!(chain, [diffs[0], d(&c1), d(&c2)]);
        assert_eq!(chain_id(&diffs), Some(d(&c2)));
        assert_eq!(chain_id(&diffs[..1]), Some(diffs[0]));
        assert_eq!(chain_id(&[]), None);
        assert!(chain_ids(&[]).is_empty());

        // two empty layers
        let empty = Digest::sha256(b"");
        assert_eq!(
            chain_id(&[empty, empty]).unwrap().to_string(),
            "sha256:de9d9016b852e46e9f3973e20d3a6d17e120f7144931d50cd6e2a8ad53e81960"
        );
    }

    #[test]
    fn sha512_diff_ids_give_sha256_chains() {
        let a = d(&format!("sha512:{}", "a".repeat(128)));
        let b = d(&format!("sha512:{}", "b".repeat(128)));
        let top = chain_id(&[a, b]).unwrap();
        assert_eq!(top.to_string(), sha256_of(&format!("{a} {b}")));
        assert_eq!(chain_ids(&[a, b])[0], a);
    }
}
