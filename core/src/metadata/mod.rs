//! Metadata rules: namespace names, labels and their update masks, lease expiry, and list filters.
//!
//! The durable store lives in the driver; these are the pure rules it applies.

pub mod filter;
pub mod gc;
mod labels;
mod rfc3339;

pub use filter::{Filter, FilterError};
pub use labels::{apply_label_mask, validate_labels, LabelError, Labels};
pub use rfc3339::{format_rfc3339, parse_rfc3339};

/// Longest namespace name (and container ID) containerd accepts.
pub const MAX_NAME_LEN: usize = 76;

/// The lease label holding its expiry, an RFC 3339 time.
pub const LABEL_GC_EXPIRE: &str = "containerd.io/gc.expire";

/// Why a name is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("identifier must not be empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("identifier {name:?} is {len} characters long; the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// The name (first 100 characters).
        name: String,
        /// Its length.
        len: usize,
    },
    /// Not `^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*$`.
    #[error("identifier {name:?} must be letters and digits, separated by single '.', '_' or '-'")]
    Invalid {
        /// The name.
        name: String,
    },
}

/// Checks a namespace name (or container ID) against containerd's identifier rule.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            name: name.chars().take(100).collect(),
            len: name.len(),
        });
    }
    let mut prev_sep = true; // the first character must be alphanumeric
    for b in name.bytes() {
        let sep = matches!(b, b'.' | b'_' | b'-');
        if sep && prev_sep || !sep && !b.is_ascii_alphanumeric() {
            return Err(NameError::Invalid { name: name.into() });
        }
        prev_sep = sep;
    }
    if prev_sep {
        return Err(NameError::Invalid { name: name.into() });
    }
    Ok(())
}

/// The expiry of a lease from its labels, if it has a well-formed `containerd.io/gc.expire`.
#[must_use]
pub fn lease_expiry(labels: &Labels) -> Option<crate::Instant> {
    labels.get(LABEL_GC_EXPIRE).and_then(|v| parse_rfc3339(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_containerds_rule() {
        for ok in ["default", "k8s.io", "a-b_c.d", "A1", &"x".repeat(76)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert!(matches!(
            validate_name(&"x".repeat(77)),
            Err(NameError::TooLong { len: 77, .. })
        ));
        for bad in ["-a", "a-", "a--b", "a b", "a/b", "é", ".", "a..b"] {
            assert!(
                matches!(validate_name(bad), Err(NameError::Invalid { .. })),
                "{bad}"
            );
        }
    }
}
