//! containerd's list filters: `field==value`, `field!=value`, `field` (present), joined by `,`
//! (all must hold); a list of filters matches if any one does; the empty filter matches all.
//!
//! Field paths are dot-separated; a component may be quoted (`labels."a.b"==x`). Values may be
//! quoted. The `~=` (regular expression) operator is refused with a typed error.

/// Why a filter string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// Syntax error at a byte position.
    #[error("filter {input:?}: {what} at position {position}")]
    Syntax {
        /// The filter.
        input: String,
        /// What was wrong.
        what: &'static str,
        /// Byte position.
        position: usize,
    },
    /// The `~=` operator.
    #[error("filter {input:?}: regular-expression matching (~=) is not supported")]
    RegexUnsupported {
        /// The filter.
        input: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Present,
    Eq(String),
    Ne(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

/// A parsed list of filters (OR of ANDs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    any: Vec<Vec<Selector>>,
}

impl Filter {
    /// Parses a list of filter strings. No strings, or an empty string, matches everything.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Self, FilterError> {
        let mut any = Vec::new();
        for f in filters {
            let f = f.as_ref().trim();
            if f.is_empty() {
                return Ok(Filter::default());
            }
            any.push(parse_one(f)?);
        }
        Ok(Filter { any })
    }

    /// True if the object whose fields `field` looks up matches.
    pub fn matches(&self, field: impl Fn(&[String]) -> Option<String>) -> bool {
        self.any.is_empty()
            || self.any.iter().any(|all| {
                all.iter().all(|s| {
                    let v = field(&s.path);
                    match &s.op {
                        Op::Present => v.is_some(),
                        Op::Eq(x) => v.as_deref() == Some(x.as_str()),
                        Op::Ne(x) => v.as_deref() != Some(x.as_str()),
                    }
                })
            })
    }
}

fn parse_one(input: &str) -> Result<Vec<Selector>, FilterError> {
    let b = input.as_bytes();
    let err = |what, position| FilterError::Syntax {
        input: input.into(),
        what,
        position,
    };
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        // field path
        let mut path = Vec::new();
        loop {
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let comp = if i < b.len() && b[i] == b'"' {
                let (s, next) = quoted(input, i).ok_or_else(|| err("unterminated quote", i))?;
                i = next;
                s
            } else {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_-/:@".contains(&b[i])) {
                    i += 1;
                }
                if start == i {
                    return Err(err("expected a field name", i));
                }
                input[start..i].to_string()
            };
            path.push(comp);
            if i < b.len() && b[i] == b'.' {
                i += 1;
                continue;
            }
            break;
        }
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let op = if input[i..].starts_with("==") || input[i..].starts_with("!=") {
            let eq = b[i] == b'=';
            i += 2;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let value = if i < b.len() && b[i] == b'"' {
                let (s, next) = quoted(input, i).ok_or_else(|| err("unterminated quote", i))?;
                i = next;
                s
            } else {
                let start = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                input[start..i].trim_end().to_string()
            };
            if eq {
                Op::Eq(value)
            } else {
                Op::Ne(value)
            }
        } else if input[i..].starts_with("~=") {
            return Err(FilterError::RegexUnsupported {
                input: input.into(),
            });
        } else {
            Op::Present
        };
        out.push(Selector { path, op });
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i == b.len() {
            return Ok(out);
        }
        if b[i] != b',' {
            return Err(err("expected ','", i));
        }
        i += 1;
    }
}

/// Reads a `"…"` string with `\"` and `\\` escapes starting at `start`; returns it and the index
/// after the closing quote.
fn quoted(input: &str, start: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = input[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            '"' => return Some((out, start + 1 + off + 1)),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(path: &[String]) -> Option<String> {
        match path
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["digest"] => Some("sha256:abc".into()),
            ["size"] => Some("12".into()),
            ["labels", "a.b"] => Some("x y".into()),
            ["labels", "k"] => Some("v".into()),
            _ => None,
        }
    }

    #[test]
    fn matches_like_containerd() {
        let m = |f: &[&str]| Filter::parse(f).unwrap().matches(obj);
        assert!(m(&[]));
        assert!(m(&[""]));
        assert!(m(&["digest==sha256:abc"]));
        assert!(!m(&["digest==sha256:abd"]));
        assert!(m(&["size==12,labels.k==v"]));
        assert!(!m(&["size==12,labels.k==w"]));
        assert!(m(&["size==13", "labels.k"]));
        assert!(m(&[r#"labels."a.b"=="x y""#]));
        assert!(m(&["labels.k!=w"]));
        assert!(!m(&["labels.missing"]));
    }

    #[test]
    fn bad_filters_are_typed_errors() {
        assert!(matches!(
            Filter::parse(&["==x"]),
            Err(FilterError::Syntax { .. })
        ));
        assert!(matches!(
            Filter::parse(&["a~=x"]),
            Err(FilterError::RegexUnsupported { .. })
        ));
        assert!(matches!(
            Filter::parse(&[r#"labels."a"#]),
            Err(FilterError::Syntax { .. })
        ));
        assert!(matches!(
            Filter::parse(&["a b"]),
            Err(FilterError::Syntax { .. })
        ));
    }
}
