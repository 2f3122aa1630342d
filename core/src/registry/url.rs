//! Registry URLs: absolute `http`/`https` URLs, parsed strictly, joined with a `Location`
//! header (RFC 3986 §5.2 reference resolution), and percent-encoded query parameters.
//!
//! Only what the distribution API needs: a scheme, an authority (`host[:port]`, no user info),
//! an absolute path and an optional query. Fragments are dropped. Every character must be
//! visible ASCII: registries send nothing else, and refusing the rest keeps the printed form
//! unambiguous (`Url::parse(&url.to_string()) == url` for every `Url`).

use core::fmt;

/// A URL scheme the registry client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port used when the authority names none.
    #[must_use]
    pub const fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a URL the registry client accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The string is empty (or only whitespace).
    #[error("empty URL")]
    Empty,
    /// A character outside visible ASCII (a space, a control or a non-ASCII character).
    #[error("URL {url:?} holds the character {ch:?}: only visible ASCII is accepted")]
    Character {
        /// The URL (first 200 characters).
        url: String,
        /// The offending character.
        ch: char,
    },
    /// An absolute URL with a scheme other than `http` or `https`.
    #[error("URL {url:?} has the scheme {scheme:?}: only http and https are supported")]
    Scheme {
        /// The URL (first 200 characters).
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// A relative reference was given where an absolute URL is needed.
    #[error("{url:?} is not an absolute http(s) URL")]
    NotAbsolute {
        /// The string (first 200 characters).
        url: String,
    },
    /// The authority is empty, holds user info, or is not `host[:port]`.
    #[error(
        "URL {url:?} has the authority {authority:?}: expected host[:port] \
         (no user info, a port of digits)"
    )]
    Authority {
        /// The URL (first 200 characters).
        url: String,
        /// The authority found.
        authority: String,
    },
}

fn shown(s: &str) -> String {
    s.chars().take(200).collect()
}

/// An absolute `http`/`https` URL.
///
/// ```
/// use berth_core::registry::Url;
///
/// let base = Url::parse("http://127.0.0.1:5000/v2/x/blobs/uploads/").unwrap();
/// let next = base.join("/v2/x/blobs/uploads/abc?_state=s").unwrap();
/// assert_eq!(next.to_string(), "http://127.0.0.1:5000/v2/x/blobs/uploads/abc?_state=s");
/// assert_eq!(base.join("abc").unwrap().path(), "/v2/x/blobs/uploads/abc");
/// assert_eq!(base.join("https://s3.example/b?sig=1").unwrap().authority(), "s3.example");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    scheme: Scheme,
    authority: String,
    path: String,
    query: Option<String>,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL.
    pub fn parse(s: &str) -> Result<Url, UrlError> {
        let s = s.trim_matches(|c: char| c == ' ' || c == '\t');
        check_chars(s)?;
        match split_scheme(s) {
            Some((scheme, rest)) => {
                let scheme = parse_scheme(s, scheme)?;
                match rest.strip_prefix("//") {
                    Some(rest) => Url::from_network_path(s, scheme, rest),
                    None => Err(UrlError::NotAbsolute { url: shown(s) }),
                }
            }
            None => Err(UrlError::NotAbsolute { url: shown(s) }),
        }
    }

    /// Builds a URL from its parts. `path` must start with `/` (a `/` is prepended if not);
    /// `authority` is checked as in [`Url::parse`].
    pub fn from_parts(
        scheme: Scheme,
        authority: &str,
        path: &str,
        query: Option<&str>,
    ) -> Result<Url, UrlError> {
        let mut s = format!("{scheme}://{authority}");
        if !path.starts_with('/') {
            s.push('/');
        }
        s.push_str(path);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        Url::parse(&s)
    }

    fn from_network_path(whole: &str, scheme: Scheme, rest: &str) -> Result<Url, UrlError> {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if !valid_authority(authority) {
            return Err(UrlError::Authority {
                url: shown(whole),
                authority: shown(authority),
            });
        }
        let (path, query) = split_path_query(&rest[end..]);
        Ok(Url {
            scheme,
            authority: authority.to_owned(),
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                remove_dot_segments(path)
            },
            query: query.map(str::to_owned),
        })
    }

    /// The scheme.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The authority as written: `host` or `host:port`.
    #[must_use]
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The host without port (IPv6 addresses keep their brackets).
    #[must_use]
    pub fn host(&self) -> &str {
        split_port(&self.authority).0
    }

    /// The port: the authority's, or the scheme's default.
    #[must_use]
    pub fn port(&self) -> u16 {
        split_port(&self.authority)
            .1
            .and_then(|p| p.parse().ok())
            .unwrap_or(self.scheme.default_port())
    }

    /// The path, always starting with `/`.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query without its `?`, if any.
    #[must_use]
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The request target of an HTTP/1.1 request: path and query.
    #[must_use]
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// True if both URLs have the same origin (scheme, host and port; the host compared
    /// case-insensitively). Credentials are only ever sent to the origin they were meant for.
    #[must_use]
    pub fn same_origin(&self, other: &Url) -> bool {
        self.scheme == other.scheme
            && self.host().eq_ignore_ascii_case(other.host())
            && self.port() == other.port()
    }

    /// This URL's origin with `path` (made absolute, dot segments removed) and no query.
    /// Characters a path cannot hold as such (`?`, `#`, `%`, anything outside visible ASCII)
    /// are percent-encoded.
    #[must_use]
    pub fn with_path(&self, path: &str) -> Url {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut p = String::with_capacity(path.len() + 1);
        if !path.starts_with('/') {
            p.push('/');
        }
        for &b in path.as_bytes() {
            if b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%') {
                p.push(b as char);
            } else {
                p.push('%');
                p.push(HEX[usize::from(b >> 4)] as char);
                p.push(HEX[usize::from(b & 15)] as char);
            }
        }
        Url {
            scheme: self.scheme,
            authority: self.authority.clone(),
            path: remove_dot_segments(&p),
            query: None,
        }
    }

    /// This URL with `name=value` appended to the query, both percent-encoded.
    #[must_use]
    pub fn with_query_param(&self, name: &str, value: &str) -> Url {
        let pair = format!("{}={}", encode_component(name), encode_component(value));
        let query = match &self.query {
            Some(q) if !q.is_empty() => format!("{q}&{pair}"),
            _ => pair,
        };
        Url {
            query: Some(query),
            ..self.clone()
        }
    }

    /// Resolves `reference` (a `Location` header: absolute, `//host/…`, `/path`, `path`,
    /// `?query`) against this URL, as RFC 3986 §5.2 does. The fragment is dropped.
    pub fn join(&self, reference: &str) -> Result<Url, UrlError> {
        let r = reference.trim_matches(|c: char| c == ' ' || c == '\t');
        if r.is_empty() {
            return Err(UrlError::Empty);
        }
        check_chars(r)?;
        if let Some((scheme, rest)) = split_scheme(r) {
            let scheme = parse_scheme(r, scheme)?;
            return match rest.strip_prefix("//") {
                Some(rest) => Url::from_network_path(r, scheme, rest),
                // "http:path" (RFC 3986 §5.2.2, strict): a path relative to the base.
                None => self.join_path(rest),
            };
        }
        if let Some(rest) = r.strip_prefix("//") {
            return Url::from_network_path(r, self.scheme, rest);
        }
        self.join_path(r)
    }

    /// Resolves a reference without scheme and authority.
    fn join_path(&self, r: &str) -> Result<Url, UrlError> {
        let r = r.split('#').next().unwrap_or_default();
        let (path, query) = split_path_query(r);
        let (path, query) = if path.is_empty() {
            let query = query.map(str::to_owned).or_else(|| self.query.clone());
            (self.path.clone(), query)
        } else if path.starts_with('/') {
            (remove_dot_segments(path), query.map(str::to_owned))
        } else {
            let dir = match self.path.rfind('/') {
                Some(i) => &self.path[..=i],
                None => "/",
            };
            (
                remove_dot_segments(&format!("{dir}{path}")),
                query.map(str::to_owned),
            )
        };
        Ok(Url {
            scheme: self.scheme,
            authority: self.authority.clone(),
            path,
            query,
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

impl core::str::FromStr for Url {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Url::parse(s)
    }
}

fn check_chars(s: &str) -> Result<(), UrlError> {
    match s.chars().find(|c| !c.is_ascii_graphic()) {
        Some(ch) => Err(UrlError::Character { url: shown(s), ch }),
        None => Ok(()),
    }
}

/// `scheme ":" rest` when `s` starts with `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"`.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then(|| (scheme, &s[colon + 1..]))
}

fn parse_scheme(whole: &str, scheme: &str) -> Result<Scheme, UrlError> {
    if scheme.eq_ignore_ascii_case("http") {
        Ok(Scheme::Http)
    } else if scheme.eq_ignore_ascii_case("https") {
        Ok(Scheme::Https)
    } else {
        Err(UrlError::Scheme {
            url: shown(whole),
            scheme: shown(scheme),
        })
    }
}

/// Splits `path?query#fragment` into path and query, dropping the fragment.
fn split_path_query(s: &str) -> (&str, Option<&str>) {
    let s = s.split('#').next().unwrap_or_default();
    match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    }
}

/// Splits `host[:port]` (or `[v6]:port`) into host and port text.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        match authority.find(']') {
            Some(i) => {
                let (host, rest) = authority.split_at(i + 1);
                (host, rest.strip_prefix(':'))
            }
            None => (authority, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    }
}

/// `host[:port]`: host is reg-name characters or a bracketed IPv6 address; no user info.
fn valid_authority(a: &str) -> bool {
    let (host, port) = split_port(a);
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|v6| {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        })
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// RFC 3986 §5.2.4 for an absolute path; the result starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let n = segments.len();
    for (i, seg) in segments.into_iter().enumerate() {
        let last = i + 1 == n;
        match seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// Percent-encodes everything but the unreserved characters `A-Z a-z 0-9 - . _ ~`, as a query
/// component (Go's `url.QueryEscape` but with `%20` for a space).
#[must_use]
pub fn encode_component(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_and_prints_absolute_urls() {
        let x = u("http://127.0.0.1:5000/v2/x/manifests/latest?a=b#frag");
        assert_eq!(x.scheme(), Scheme::Http);
        assert_eq!(x.authority(), "127.0.0.1:5000");
        assert_eq!((x.host(), x.port()), ("127.0.0.1", 5000));
        assert_eq!(x.path(), "/v2/x/manifests/latest");
        assert_eq!(x.query(), Some("a=b"));
        assert_eq!(
            x.to_string(),
            "http://127.0.0.1:5000/v2/x/manifests/latest?a=b"
        );
        assert_eq!(
            u("HTTPS://Registry.Example").to_string(),
            "https://Registry.Example/"
        );
        assert_eq!(u("https://r.example").port(), 443);
        let v6 = u("http://[::1]:5000/v2/");
        assert_eq!((v6.host(), v6.port()), ("[::1]", 5000));
        assert_eq!(u("http://[::1]/").port(), 80);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(matches!(Url::parse(""), Err(UrlError::NotAbsolute { .. })));
        assert!(matches!(
            Url::parse("ftp://x/y"),
            Err(UrlError::Scheme { scheme, .. }) if scheme == "ftp"
        ));
        assert!(matches!(
            Url::parse("/v2/"),
            Err(UrlError::NotAbsolute { .. })
        ));
        assert!(matches!(
            Url::parse("http://user:pw@host/"),
            Err(UrlError::Authority { .. })
        ));
        assert!(matches!(
            Url::parse("http:///path"),
            Err(UrlError::Authority { .. })
        ));
        assert!(matches!(
            Url::parse("http://h:port/"),
            Err(UrlError::Authority { .. })
        ));
        assert!(matches!(
            Url::parse("http://h/a b"),
            Err(UrlError::Character { ch: ' ', .. })
        ));
        assert!(matches!(
            Url::parse("http://h/é"),
            Err(UrlError::Character { ch: 'é', .. })
        ));
        assert!(matches!(
            Url::parse("http://h/\r\nX: y"),
            Err(UrlError::Character { ch: '\r', .. })
        ));
    }

    #[test]
    fn joins_like_rfc_3986() {
        // RFC 3986 §5.4.1 examples that apply to http URLs (fragments dropped).
        let base = u("http://a/b/c/d;p?q");
        let cases = [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("http:g", "http://a/b/c/g"),
            (
                "https://s3.example:8443/bucket/k?X-Sig=a%2Fb",
                "https://s3.example:8443/bucket/k?X-Sig=a%2Fb",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(base.join(r).unwrap().to_string(), want, "{r}");
        }
        assert!(matches!(base.join(""), Err(UrlError::Empty)));
        assert!(matches!(base.join("  "), Err(UrlError::Empty)));
        assert!(matches!(
            base.join("javascript:alert(1)"),
            Err(UrlError::Scheme { .. })
        ));
    }

    #[test]
    fn upload_locations_relative_and_absolute() {
        let post = u("http://127.0.0.1:5000/v2/a/b/blobs/uploads/");
        let rel = post
            .join("/v2/a/b/blobs/uploads/6f1e?_state=AbC%3D%3D")
            .unwrap();
        assert_eq!(
            rel.to_string(),
            "http://127.0.0.1:5000/v2/a/b/blobs/uploads/6f1e?_state=AbC%3D%3D"
        );
        let fin = rel.with_query_param("digest", "sha256:00ff");
        assert_eq!(fin.query(), Some("_state=AbC%3D%3D&digest=sha256%3A00ff"));
        let bare = u("http://h/x").with_query_param("digest", "sha256:1");
        assert_eq!(bare.to_string(), "http://h/x?digest=sha256%3A1");
    }

    #[test]
    fn origins() {
        assert!(u("http://a:80/x").same_origin(&u("http://A/y")));
        assert!(!u("http://a/x").same_origin(&u("https://a/x")));
        assert!(!u("http://a:5000/x").same_origin(&u("http://a:5001/x")));
        assert!(!u("http://a/x").same_origin(&u("http://b/x")));
    }

    #[test]
    fn encodes_query_components() {
        assert_eq!(
            encode_component("repository:x/y:pull,push"),
            "repository%3Ax%2Fy%3Apull%2Cpush"
        );
        assert_eq!(encode_component("a-b._~ "), "a-b._~%20");
    }

    #[test]
    fn printed_urls_parse_back() {
        let base = u("http://h:1/a/b?c");
        for r in ["x/../../y?z", "//other/p", "?", "/", "..", "https://x"] {
            let j = base.join(r).unwrap();
            assert_eq!(Url::parse(&j.to_string()).unwrap(), j, "{r}");
        }
    }
}
