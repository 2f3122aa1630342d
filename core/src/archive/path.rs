//! Entry paths for layer application: normalisation of hostile names and OCI whiteouts.
//!
//! A tar says whatever it likes. [`normalize`] turns an entry's raw path into a canonical
//! relative Op path (as [`crate::op::is_canonical_path`] defines it) or refuses it:
//!
//! * a leading `/` is dropped (absolute names become relative to the layer root);
//! * empty and `.` components are dropped, a trailing `/` too;
//! * `..` removes the previous component, and a `..` that would climb above the root is
//!   [`PathError::Escapes`] (containerd clamps it to the root instead; berth refuses the layer);
//! * a name that is empty, not UTF-8, or contains NUL is refused;
//! * the root itself (`.`, `./`, `/`) is [`LayerPath::Root`].
//!
//! Lexical cleaning cannot see symlinks: a path through a symlink that points out of the root
//! is the driver's to stop (paths resolve beneath the snapshot root, e.g. `openat2` with
//! `RESOLVE_IN_ROOT`), as the design requires.
//!
//! [`classify`] adds the OCI whiteout rules on the last component:
//! `.wh..wh..opq` marks its directory opaque, `.wh.<name>` deletes `<name>` from lower layers,
//! and any other `.wh..wh.*` name is whiteout metadata, which containerd skips.

use std::fmt;

/// Prefix of an OCI whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Prefix of whiteout metadata names (never applied).
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// Name of the opaque-directory marker.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";

/// Why an entry path cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is empty.
    #[error("empty entry path")]
    Empty,
    /// The path is not valid UTF-8.
    #[error("entry path {path:?} is not UTF-8")]
    NotUtf8 {
        /// The path, with invalid bytes replaced.
        path: String,
    },
    /// The path contains a NUL byte.
    #[error("entry path {path:?} contains NUL")]
    Nul {
        /// The path (lossy).
        path: String,
    },
    /// `..` components climb above the layer root.
    #[error("entry path {path:?} escapes the layer root")]
    Escapes {
        /// The path as given (lossy).
        path: String,
    },
    /// A whiteout names nothing (`.wh.`) or names `.` or `..`.
    #[error("whiteout {path:?} names no valid entry")]
    BadWhiteout {
        /// The path as given.
        path: String,
    },
}

/// An entry path, normalised and classified for layer application.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LayerPath {
    /// The layer root itself (`.`, `./`, `/`).
    Root,
    /// An ordinary path: canonical, relative, non-empty.
    Plain(String),
    /// `<dir>/.wh.<name>`: delete `<dir>/<name>` from lower layers.
    Whiteout {
        /// The canonical path being deleted (`<dir>/<name>`).
        target: String,
    },
    /// `<dir>/.wh..wh..opq`: hide everything below `dir` from lower layers.
    Opaque {
        /// The directory made opaque, canonical; `None` for the layer root.
        dir: Option<String>,
    },
    /// Other `.wh..wh.*` names (aufs metadata such as `.wh..wh.plnk`): skip.
    WhiteoutMeta(String),
}

impl fmt::Display for LayerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerPath::Root => f.write_str("."),
            LayerPath::Plain(p) | LayerPath::WhiteoutMeta(p) => f.write_str(p),
            LayerPath::Whiteout { target } => write!(f, "whiteout of {target}"),
            LayerPath::Opaque { dir: None } => f.write_str("opaque ."),
            LayerPath::Opaque { dir: Some(d) } => write!(f, "opaque {d}"),
        }
    }
}

/// Normalises a raw entry path (see the module docs). Returns `None` for the root itself,
/// else a canonical relative path.
pub fn normalize(raw: &[u8]) -> Result<Option<String>, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    let s = std::str::from_utf8(raw).map_err(|_| PathError::NotUtf8 {
        path: String::from_utf8_lossy(raw).into_owned(),
    })?;
    if s.contains('\0') {
        return Err(PathError::Nul { path: s.into() });
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes { path: s.into() });
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(parts.join("/")))
}

/// Normalises a raw entry path and classifies it as plain, root, whiteout or opaque marker.
pub fn classify(raw: &[u8]) -> Result<LayerPath, PathError> {
    let Some(path) = normalize(raw)? else {
        return Ok(LayerPath::Root);
    };
    let (dir, base) = match path.rfind('/') {
        Some(i) => (Some(&path[..i]), &path[i + 1..]),
        None => (None, path.as_str()),
    };
    if !base.starts_with(WHITEOUT_PREFIX) {
        return Ok(LayerPath::Plain(path));
    }
    if base == WHITEOUT_OPAQUE {
        return Ok(LayerPath::Opaque {
            dir: dir.map(str::to_owned),
        });
    }
    if base.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(LayerPath::WhiteoutMeta(path));
    }
    let name = &base[WHITEOUT_PREFIX.len()..];
    if name.is_empty() || name == "." || name == ".." {
        return Err(PathError::BadWhiteout {
            path: String::from_utf8_lossy(raw).into_owned(),
        });
    }
    let target = match dir {
        Some(d) => format!("{d}/{name}"),
        None => name.to_owned(),
    };
    Ok(LayerPath::Whiteout { target })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::is_canonical_path;

    #[test]
    fn normalizes_and_refuses_escapes() {
        let ok = |raw: &str, want: Option<&str>| {
            let got = normalize(raw.as_bytes()).unwrap();
            assert_eq!(got.as_deref(), want, "{raw}");
            if let Some(g) = got {
                assert!(is_canonical_path(&g), "{g}");
            }
        };
        ok("a/b/c", Some("a/b/c"));
        ok("./a//b/./c/", Some("a/b/c"));
        ok("/etc/passwd", Some("etc/passwd"));
        ok("///etc", Some("etc"));
        ok("a/b/../c", Some("a/c"));
        ok("a/..", None);
        ok(".", None);
        ok("./", None);
        ok("/", None);
        ok("..a/b..", Some("..a/b.."));
        for bad in ["..", "../etc/passwd", "a/../../x", "/../x", "./.."] {
            assert!(
                matches!(normalize(bad.as_bytes()), Err(PathError::Escapes { .. })),
                "{bad}"
            );
        }
        assert_eq!(normalize(b""), Err(PathError::Empty));
        assert!(matches!(
            normalize(b"a\xff"),
            Err(PathError::NotUtf8 { .. })
        ));
        assert!(matches!(normalize(b"a\0b"), Err(PathError::Nul { .. })));
    }

    #[test]
    fn classifies_whiteouts() {
        let c = |s: &str| classify(s.as_bytes());
        assert_eq!(c("./"), Ok(LayerPath::Root));
        assert_eq!(c("usr/bin"), Ok(LayerPath::Plain("usr/bin".into())));
        assert_eq!(
            c("usr/.wh.bin"),
            Ok(LayerPath::Whiteout {
                target: "usr/bin".into()
            })
        );
        assert_eq!(
            c("/.wh.etc"),
            Ok(LayerPath::Whiteout {
                target: "etc".into()
            })
        );
        assert_eq!(
            c("a/b/.wh..wh..opq"),
            Ok(LayerPath::Opaque {
                dir: Some("a/b".into())
            })
        );
        assert_eq!(c(".wh..wh..opq"), Ok(LayerPath::Opaque { dir: None }));
        assert_eq!(
            c("a/.wh..wh.plnk"),
            Ok(LayerPath::WhiteoutMeta("a/.wh..wh.plnk".into()))
        );
        // a whiteout-looking directory component is just a name
        assert_eq!(c(".wh.x/y"), Ok(LayerPath::Plain(".wh.x/y".into())));
        for bad in ["a/.wh.", "a/.wh..", "a/.wh..."] {
            assert!(
                matches!(c(bad), Err(PathError::BadWhiteout { .. })),
                "{bad}"
            );
        }
        assert!(matches!(c("../.wh.x"), Err(PathError::Escapes { .. })));
    }
}
