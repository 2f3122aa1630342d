//! Labels: size limits and containerd's field-mask updates.

use std::collections::BTreeMap;

/// Labels of an object, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// Most bytes a label key plus value may take.
pub const MAX_LABEL_LEN: usize = 4096;

/// Why labels or an update mask were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// A label key is empty.
    #[error("label key must not be empty")]
    EmptyKey,
    /// Key plus value is longer than [`MAX_LABEL_LEN`].
    #[error("label {key:?} is {len} bytes with its value; the limit is {MAX_LABEL_LEN}")]
    TooLong {
        /// The key (first 100 characters).
        key: String,
        /// Key plus value length.
        len: usize,
    },
    /// The update mask names a field that cannot be updated this way.
    #[error("cannot update {path:?}: only \"labels\" and \"labels.<key>\" may be given")]
    BadMaskPath {
        /// The offending path.
        path: String,
    },
}

/// Checks every label against containerd's limits.
pub fn validate_labels(labels: &Labels) -> Result<(), LabelError> {
    for (k, v) in labels {
        if k.is_empty() {
            return Err(LabelError::EmptyKey);
        }
        if k.len() + v.len() > MAX_LABEL_LEN {
            return Err(LabelError::TooLong {
                key: k.chars().take(100).collect(),
                len: k.len() + v.len(),
            });
        }
    }
    Ok(())
}

/// Applies an update to `current` as containerd does: with no mask paths, `new` replaces all
/// labels; `labels` replaces all; `labels.<key>` sets that key from `new`, and an empty or
/// missing value deletes it. Paths not starting with `labels` are passed to `other`, which
/// returns false to refuse them.
pub fn apply_label_mask(
    current: &Labels,
    new: &Labels,
    paths: &[String],
    mut other: impl FnMut(&str) -> bool,
) -> Result<Labels, LabelError> {
    validate_labels(new)?;
    if paths.is_empty() {
        return Ok(new.clone());
    }
    let mut out = current.clone();
    for path in paths {
        if path == "labels" {
            out = new.clone();
        } else if let Some(key) = path.strip_prefix("labels.") {
            match new.get(key).filter(|v| !v.is_empty()) {
                Some(v) => {
                    out.insert(key.to_string(), v.clone());
                }
                None => {
                    out.remove(key);
                }
            }
        } else if !other(path) {
            return Err(LabelError::BadMaskPath { path: path.clone() });
        }
    }
    validate_labels(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn masks_set_replace_and_delete() {
        let cur = l(&[("a", "1"), ("b", "2")]);
        let upd = l(&[("b", "3"), ("c", "4")]);
        assert_eq!(apply_label_mask(&cur, &upd, &[], |_| false).unwrap(), upd);
        assert_eq!(
            apply_label_mask(&cur, &upd, &["labels".into()], |_| false).unwrap(),
            upd
        );
        assert_eq!(
            apply_label_mask(&cur, &upd, &["labels.b".into()], |_| false).unwrap(),
            l(&[("a", "1"), ("b", "3")])
        );
        assert_eq!(
            apply_label_mask(&cur, &l(&[("a", "")]), &["labels.a".into()], |_| false).unwrap(),
            l(&[("b", "2")])
        );
        assert!(matches!(
            apply_label_mask(&cur, &upd, &["size".into()], |_| false),
            Err(LabelError::BadMaskPath { .. })
        ));
    }

    #[test]
    fn oversized_labels_are_refused() {
        let big = l(&[("k", &"v".repeat(MAX_LABEL_LEN))]);
        assert!(matches!(
            validate_labels(&big),
            Err(LabelError::TooLong { len: 4097, .. })
        ));
        assert_eq!(validate_labels(&l(&[("", "x")])), Err(LabelError::EmptyKey));
    }
}
