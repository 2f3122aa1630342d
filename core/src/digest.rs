//! Content digests (`sha256:<hex>`, `sha512:<hex>`): strict parsing, hashing, and a hash
//! midstate that can be saved and restored so an interrupted ingest never re-hashes its prefix.

use core::fmt;
use core::str::FromStr;

use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm berth accepts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256, the canonical algorithm of OCI content.
    Sha256 = 1,
    /// SHA-512.
    Sha512 = 2,
}

impl Algorithm {
    /// The name as written before the `:` of a digest.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the raw hash in bytes.
    #[must_use]
    pub const fn output_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// Looks an algorithm up by its name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not a valid digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The string has no `algorithm:` prefix.
    #[error(
        "digest {input:?} has no \"algorithm:\" prefix (expected e.g. sha256:<64 hex digits>)"
    )]
    MissingAlgorithm {
        /// The offending input (truncated to 100 characters).
        input: String,
    },
    /// The algorithm is not sha256 or sha512.
    #[error("unsupported digest algorithm {algorithm:?} (berth accepts sha256 and sha512)")]
    UnsupportedAlgorithm {
        /// The algorithm name found.
        algorithm: String,
    },
    /// The hex part has the wrong length for the algorithm.
    #[error("{algorithm} digest must have {expected} hex digits, found {actual}")]
    BadLength {
        /// The algorithm.
        algorithm: Algorithm,
        /// Hex digits required.
        expected: usize,
        /// Hex digits found.
        actual: usize,
    },
    /// A character of the hex part is not a lowercase hex digit.
    #[error("digest has {found:?} at hex position {position}; only lowercase 0-9a-f are allowed")]
    BadHex {
        /// Zero-based index in the hex part.
        position: usize,
        /// The character found.
        found: char,
    },
}

/// A content digest: an algorithm and the raw hash bytes.
///
/// Parsing is strict, as in the OCI image spec: lowercase hex only, exact length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    bytes: [u8; 64],
}

impl Digest {
    /// Builds a digest from an algorithm and its raw hash. Returns `None` if the length is wrong.
    #[must_use]
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Option<Self> {
        if raw.len() != algorithm.output_len() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Digest { algorithm, bytes })
    }

    /// The sha256 digest of `data`.
    #[must_use]
    pub fn sha256(data: &[u8]) -> Self {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.digest()
    }

    /// The algorithm.
    #[must_use]
    pub const fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The raw hash bytes.
    #[must_use]
    pub fn raw(&self) -> &[u8] {
        &self.bytes[..self.algorithm.output_len()]
    }

    /// The hex-encoded hash (without the algorithm prefix).
    #[must_use]
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(self.algorithm.output_len() * 2);
        for b in self.raw() {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }

    /// Parses `algorithm:hex` strictly.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::MissingAlgorithm {
                input: s.chars().take(100).collect(),
            });
        };
        let algorithm =
            Algorithm::from_name(alg).ok_or_else(|| DigestError::UnsupportedAlgorithm {
                algorithm: alg.chars().take(100).collect(),
            })?;
        let expected = algorithm.output_len() * 2;
        if hex.len() != expected {
            return Err(DigestError::BadLength {
                algorithm,
                expected,
                actual: hex.chars().count(),
            });
        }
        let mut bytes = [0u8; 64];
        let raw = hex.as_bytes();
        for (i, pair) in raw.chunks_exact(2).enumerate() {
            let hi = nibble(pair[0]).ok_or_else(|| bad_hex(hex, 2 * i))?;
            let lo = nibble(pair[1]).ok_or_else(|| bad_hex(hex, 2 * i + 1))?;
            bytes[i] = (hi << 4) | lo;
        }
        Ok(Digest { algorithm, bytes })
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn bad_hex(hex: &str, byte_pos: usize) -> DigestError {
    // `hex` has the right byte length but may hold multi-byte characters: report the character.
    let (position, found) = hex
        .char_indices()
        .enumerate()
        .find(|(_, (off, _))| *off >= byte_pos)
        .map(|(i, (_, c))| (i, c))
        .unwrap_or((byte_pos, '?'));
    DigestError::BadHex { position, found }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a saved hash midstate could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MidstateError {
    /// The saved state has a version tag this build does not know.
    #[error("hash midstate has version {found}, this build reads version {supported}")]
    Version {
        /// Version found.
        found: u8,
        /// Version supported.
        supported: u8,
    },
    /// The algorithm byte is unknown.
    #[error("hash midstate names unknown algorithm {0}")]
    Algorithm(u8),
    /// The state bytes do not decode.
    #[error("hash midstate is corrupt ({len} bytes)")]
    Corrupt {
        /// Length of the state seen.
        len: usize,
    },
}

#[derive(Clone)]
enum Inner {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// An incremental hasher whose midstate can be exported and restored.
///
/// The exported form is `[version, algorithm, state…]`. The state bytes are sha2's hazmat
/// serialisation, which is not a stable format across sha2 versions, hence the version tag.
#[derive(Clone)]
pub struct Hasher {
    inner: Inner,
    len: u64,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("algorithm", &self.algorithm())
            .field("len", &self.len)
            .finish()
    }
}

/// Version tag of the exported midstate format (sha2 0.11 hazmat serialisation).
pub const MIDSTATE_VERSION: u8 = 1;

impl Hasher {
    /// A fresh hasher.
    #[must_use]
    pub fn new(algorithm: Algorithm) -> Self {
        let inner = match algorithm {
            Algorithm::Sha256 => Inner::Sha256(Sha256::new()),
            Algorithm::Sha512 => Inner::Sha512(Sha512::new()),
        };
        Hasher { inner, len: 0 }
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Sha256(_) => Algorithm::Sha256,
            Inner::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Bytes hashed so far.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if nothing has been hashed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Absorbs `data`.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.inner {
            Inner::Sha256(h) => h.update(data),
            Inner::Sha512(h) => h.update(data),
        }
        self.len += data.len() as u64;
    }

    /// The digest of everything absorbed so far (the hasher is left untouched).
    #[must_use]
    pub fn digest(&self) -> Digest {
        match &self.inner {
            Inner::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.clone().finalize()),
            Inner::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.clone().finalize()),
        }
        .expect("hash output length matches the algorithm")
    }

    /// Exports the midstate: `[version, algorithm, sha2 state…]`.
    #[must_use]
    pub fn export(&self) -> Vec<u8> {
        let mut out = vec![MIDSTATE_VERSION, self.algorithm() as u8];
        match &self.inner {
            Inner::Sha256(h) => out.extend_from_slice(&h.serialize()),
            Inner::Sha512(h) => out.extend_from_slice(&h.serialize()),
        }
        out
    }

    /// Restores a hasher from [`Hasher::export`] output; `len` is the number of bytes it covers.
    pub fn import(bytes: &[u8], len: u64) -> Result<Self, MidstateError> {
        let [version, alg, state @ ..] = bytes else {
            return Err(MidstateError::Corrupt { len: bytes.len() });
        };
        if *version != MIDSTATE_VERSION {
            return Err(MidstateError::Version {
                found: *version,
                supported: MIDSTATE_VERSION,
            });
        }
        let corrupt = || MidstateError::Corrupt { len: bytes.len() };
        // The state must describe exactly `len` bytes: sha2 0.11 lays it out as the chaining
        // value, the count of compressed blocks (u64 for sha256, u128 for sha512, little endian)
        // and the buffered byte count, then the buffer. A state that disagrees would make the
        // hash overflow or silently describe other data.
        let (words, counter, block) = match *alg {
            1 => (32, 8, 64u128),
            2 => (64, 16, 128u128),
            other => return Err(MidstateError::Algorithm(other)),
        };
        if state.len() < words + counter + 1 {
            return Err(corrupt());
        }
        let mut blocks = [0u8; 16];
        blocks[..counter].copy_from_slice(&state[words..words + counter]);
        let blocks = u128::from_le_bytes(blocks);
        let buffered = u128::from(state[words + counter]);
        let covered = blocks
            .checked_mul(block)
            .and_then(|b| b.checked_add(buffered));
        if buffered >= block || covered != Some(u128::from(len)) {
            return Err(corrupt());
        }
        let inner = match *alg {
            1 => {
                let s = SerializedState::<Sha256>::try_from(state).map_err(|_| corrupt())?;
                Inner::Sha256(Sha256::deserialize(&s).map_err(|_| corrupt())?)
            }
            2 => {
                let s = SerializedState::<Sha512>::try_from(state).map_err(|_| corrupt())?;
                Inner::Sha512(Sha512::deserialize(&s).map_err(|_| corrupt())?)
            }
            other => return Err(MidstateError::Algorithm(other)),
        };
        Ok(Hasher { inner, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_round_trip() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d, Digest::sha256(b""));
        let long = format!("sha512:{}", "ab".repeat(64));
        assert_eq!(Digest::parse(&long).unwrap().to_string(), long);
    }

    #[test]
    fn rejects_bad_strings_with_typed_errors() {
        assert!(matches!(
            Digest::parse("e3b0"),
            Err(DigestError::MissingAlgorithm { .. })
        ));
        assert!(matches!(
            Digest::parse("md5:abcd"),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
        assert_eq!(
            Digest::parse("sha256:abcd"),
            Err(DigestError::BadLength {
                algorithm: Algorithm::Sha256,
                expected: 64,
                actual: 4
            })
        );
        let upper = EMPTY.replace('e', "E");
        assert_eq!(
            Digest::parse(&upper),
            Err(DigestError::BadHex {
                position: 0,
                found: 'E'
            })
        );
        // a multi-byte character of the right byte length is reported, not panicked on
        let weird = format!("sha256:{}é", "a".repeat(62));
        assert!(matches!(
            Digest::parse(&weird),
            Err(DigestError::BadHex {
                position: 62,
                found: 'é'
            })
        ));
    }

    #[test]
    fn midstate_round_trips_and_continues() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut whole = Hasher::new(alg);
            whole.update(b"hello, world");
            let mut part = Hasher::new(alg);
            part.update(b"hello");
            let saved = part.export();
            let mut restored = Hasher::import(&saved, 5).unwrap();
            restored.update(b", world");
            assert_eq!(restored.digest(), whole.digest());
            assert_eq!(restored.len(), 12);
        }
    }

    #[test]
    fn midstate_must_cover_exactly_len_bytes() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            for n in [0usize, 5, 63, 64, 65, 127, 128, 129, 1000] {
                let mut h = Hasher::new(alg);
                h.update(&vec![7u8; n]);
                let saved = h.export();
                assert!(Hasher::import(&saved, n as u64).is_ok(), "{alg} {n}");
                assert!(Hasher::import(&saved, n as u64 + 1).is_err(), "{alg} {n}+1");
            }
            // an absurd block count is refused, not overflowed
            let mut saved = Hasher::new(alg).export();
            let at = 2 + if alg == Algorithm::Sha256 { 32 } else { 64 };
            saved[at..at + 8].fill(0xff);
            assert!(matches!(
                Hasher::import(&saved, 0),
                Err(MidstateError::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn midstate_rejects_garbage() {
        assert!(matches!(
            Hasher::import(&[], 0),
            Err(MidstateError::Corrupt { .. })
        ));
        assert!(matches!(
            Hasher::import(&[9, 1, 0], 0),
            Err(MidstateError::Version { found: 9, .. })
        ));
        assert!(matches!(
            Hasher::import(&[1, 7, 0], 0),
            Err(MidstateError::Algorithm(7))
        ));
        assert!(matches!(
            Hasher::import(&[1, 1, 0, 0], 0),
            Err(MidstateError::Corrupt { .. })
        ));
    }
}
