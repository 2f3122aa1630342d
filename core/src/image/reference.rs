//! Image references (`busybox`, `127.0.0.1:5000/x/y:tag`, `name@sha256:…`), parsed and
//! normalised exactly as docker's `reference.ParseNormalizedNamed` does, then given the default
//! tag as `reference.TagNameOnly` does.
//!
//! The grammar (distribution's `reference` package):
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain "/"] path-component ["/" path-component]*
//! domain           := host [":" port-number]
//! host             := domain-component ["." domain-component]* | "[" ipv6 "]"
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! port-number      := [0-9]+
//! path-component   := [a-z0-9]+ (separator [a-z0-9]+)*
//! separator        := "." | "_" | "__" | "-"+
//! tag              := [\w][\w.-]{0,127}
//! ```
//!
//! The first `/`-separated element is a domain when it contains `.` or `:`, is `localhost`, or
//! has an uppercase letter; otherwise the domain is `docker.io`, and a single-element docker.io
//! path gets the `library/` prefix. `index.docker.io` is rewritten to `docker.io`. The whole
//! name (domain, `/`, path) is at most 255 bytes.
//!
//! Two deliberate differences from the Go code, both refusing what it would accept:
//!
//! * A first element that looks like a domain but is not a valid one (`foo_bar.com/x`) is an
//!   error here. Go's regular expression silently reparses it as a path with an *empty* domain,
//!   a reference no registry can serve.
//! * Digests are berth's: `sha256` or `sha512`, lowercase hex of the exact length. go-digest
//!   also accepts `sha384`.

use core::fmt;
use core::str::FromStr;

use crate::{Digest, DigestError};

/// The registry a familiar name (`busybox`, `user/app`) refers to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The old name of Docker Hub's registry, normalised to [`DEFAULT_DOMAIN`].
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The host serving the distribution API for [`DEFAULT_DOMAIN`].
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The repository prefix of Docker Hub's official images.
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag a reference without tag and digest gets.
pub const DEFAULT_TAG: &str = "latest";
/// Longest name (domain, `/` and path) in bytes.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest tag in bytes.
pub const TAG_MAX_LEN: usize = 128;

/// How many characters of an offending value an error keeps.
const SHOWN: usize = 100;

fn shown(s: &str) -> String {
    s.chars().take(SHOWN).collect()
}

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The reference is the empty string.
    #[error("invalid reference format: the image reference is empty")]
    Empty,
    /// The reference is 64 lowercase hex digits: an image ID, not a name.
    #[error(
        "invalid repository name ({input}), cannot specify 64-byte hexadecimal strings \
         (that is an image ID, not a name)"
    )]
    HexIdentifier {
        /// The input.
        input: String,
    },
    /// The repository path holds an uppercase letter.
    #[error("invalid reference format: repository name ({repository}) must be lowercase")]
    Uppercase {
        /// The repository path as written (first 100 characters).
        repository: String,
    },
    /// The first element was taken as a registry host, and it is not a valid one.
    #[error(
        "invalid reference format: {domain:?} is not a valid registry host \
         (expected host[:port] such as registry.example.com:5000, localhost or [::1]:5000)"
    )]
    Domain {
        /// The domain as written (first 100 characters).
        domain: String,
    },
    /// A `/`-separated element of the repository path breaks the path grammar.
    #[error(
        "invalid reference format: path component {component:?} of {path:?} must be lowercase \
         letters and digits, separated by '.', '_', '__' or dashes"
    )]
    PathComponent {
        /// The whole repository path (first 100 characters).
        path: String,
        /// The offending component (first 100 characters; empty for `a//b`).
        component: String,
    },
    /// The tag holds a character outside `[A-Za-z0-9_.-]`, starts with `.` or `-`, or is empty.
    #[error(
        "invalid reference format: tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
    )]
    Tag {
        /// The tag (first 100 characters).
        tag: String,
    },
    /// The tag is longer than [`TAG_MAX_LEN`].
    #[error(
        "invalid reference format: tag is {len} bytes long, at most {TAG_MAX_LEN} are allowed"
    )]
    TagTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The part after `@` is not a digest berth accepts.
    #[error("invalid reference format: {digest:?} after '@' is not a valid digest: {source}")]
    Digest {
        /// The digest as written (first 100 characters).
        digest: String,
        /// Why it does not parse.
        source: DigestError,
    },
    /// The name (domain, `/`, path) is longer than [`NAME_TOTAL_LENGTH_MAX`].
    #[error(
        "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} bytes; \
         {name:?} is {len}"
    )]
    NameTooLong {
        /// The name (first 100 characters).
        name: String,
        /// Its length in bytes.
        len: usize,
    },
}

/// A parsed, normalised image reference: registry domain, repository path, and a tag, a digest
/// or both.
///
/// ```
/// use berth_core::image::Reference;
///
/// let r = Reference::parse("busybox").unwrap();
/// assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
/// assert_eq!(r.familiar(), "busybox:latest");
/// assert_eq!(r.registry_host(), "registry-1.docker.io");
///
/// let r = Reference::parse("127.0.0.1:5000/x/y:tag").unwrap();
/// assert_eq!((r.domain(), r.path(), r.tag()), ("127.0.0.1:5000", "x/y", Some("tag")));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `s` as `ParseNormalizedNamed`, then adds the tag `latest` when
    /// there is neither a tag nor a digest (`TagNameOnly`).
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let mut r = Self::parse_named(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(r)
    }

    /// Parses and normalises `s` as `ParseNormalizedNamed`, without adding a default tag.
    pub fn parse_named(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ReferenceError::HexIdentifier {
                input: s.to_owned(),
            });
        }
        let (domain, remainder) = split_docker_domain(s);
        // Upstream checks the text before the first ':' (which may run into "@algo").
        let remote_name = remainder.split(':').next().unwrap_or_default();
        if has_upper(remote_name) {
            return Err(ReferenceError::Uppercase {
                repository: shown(remote_name),
            });
        }

        // A path holds no ':' or '@' and a tag no '@', so the first '@' starts the digest and
        // the first ':' before it starts the tag.
        let (named, digest) = match remainder.split_once('@') {
            Some((named, digest)) => (named, Some(digest)),
            None => (remainder.as_str(), None),
        };
        let (path, tag) = match named.split_once(':') {
            Some((path, tag)) => (path, Some(tag)),
            None => (named, None),
        };

        if !valid_domain(domain) {
            return Err(ReferenceError::Domain {
                domain: shown(domain),
            });
        }
        if let Some(component) = path.split('/').find(|c| !valid_path_component(c)) {
            return Err(ReferenceError::PathComponent {
                path: shown(path),
                component: shown(component),
            });
        }
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        let digest = match digest {
            Some(d) => Some(Digest::parse(d).map_err(|source| ReferenceError::Digest {
                digest: shown(d),
                source,
            })?),
            None => None,
        };
        let len = domain.len() + 1 + path.len();
        if len > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong {
                name: shown(&format!("{domain}/{path}")),
                len,
            });
        }
        Ok(Reference {
            domain: domain.to_owned(),
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The registry domain, with its port if it has one: `docker.io`, `127.0.0.1:5000`.
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry: `library/busybox`, `x/y`.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full name without tag or digest: `docker.io/library/busybox`.
    #[must_use]
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if any.
    #[must_use]
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    #[must_use]
    pub fn digest(&self) -> Option<Digest> {
        self.digest
    }

    /// The host that serves the distribution API for this reference's domain
    /// (see [`registry_api_host`]).
    #[must_use]
    pub fn registry_host(&self) -> &str {
        registry_api_host(&self.domain)
    }

    /// The registry host without port or IPv6 brackets, as containerd names it in the
    /// `containerd.io/distribution.source.<host>` label (Go's `url.Hostname()`).
    #[must_use]
    pub fn source_host(&self) -> &str {
        let d = self.domain.as_str();
        if let Some(rest) = d.strip_prefix('[') {
            return rest.split(']').next().unwrap_or_default();
        }
        d.split(':').next().unwrap_or_default()
    }

    /// The docker-style short name without tag or digest: `busybox`, `user/app`,
    /// `localhost:5000/x` (`reference.FamiliarName`).
    #[must_use]
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The docker-style short form with tag and digest: `busybox:latest`
    /// (`reference.FamiliarString`).
    ///
    /// Parsing it gives this reference back, except for Docker Hub paths whose first element
    /// looks like a domain (`docker.io/foo.com/bar` is familiar `foo.com/bar`), as upstream.
    #[must_use]
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// This reference with `tag` in place of its tag (the digest is kept).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        check_tag(tag)?;
        Ok(Reference {
            tag: Some(tag.to_owned()),
            ..self.clone()
        })
    }

    /// This reference with `digest` in place of its digest (the tag is kept).
    #[must_use]
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The form containerd's `ParseDockerRef` returns: when both a tag and a digest are given,
    /// only the digest is kept (it is what gets pulled).
    #[must_use]
    pub fn docker_ref(&self) -> Reference {
        let mut r = self.clone();
        if r.digest.is_some() {
            r.tag = None;
        }
        r
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

/// The host serving the distribution API for a reference domain: Docker Hub's `docker.io` is
/// served by `registry-1.docker.io`; every other domain serves itself (containerd's
/// `docker.DefaultHost`).
#[must_use]
pub fn registry_api_host(domain: &str) -> &str {
    if domain == DEFAULT_DOMAIN {
        DOCKER_HUB_API_HOST
    } else {
        domain
    }
}

impl fmt::Display for Reference {
    /// The full normalised form: `domain/path[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// True if lowercasing changes `s` (Go's `strings.ToLower(s) != s`).
fn has_upper(s: &str) -> bool {
    s.to_lowercase() != s
}

/// Splits `name` into a domain and the rest, as distribution's `splitDockerDomain`.
fn split_docker_domain(name: &str) -> (&str, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || has_upper(first) =>
        {
            (first, rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN, name.to_owned()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN;
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder.insert_str(0, OFFICIAL_REPO_PREFIX);
    }
    (domain, remainder)
}

/// `host[:port]` where host is dot-separated domain components or a bracketed IPv6 address.
fn valid_domain(domain: &str) -> bool {
    let (host_ok, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        let ok = !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        match after {
            "" => (ok, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (ok, Some(port)),
                None => return false,
            },
        }
    } else {
        let (host, port) = match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        };
        (host.split('.').all(valid_domain_component), port)
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        }
        _ => false,
    }
}

/// `[a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let b = c.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) if alnum(first) && alnum(last) => {}
        _ => return false,
    }
    // Every run of non-alphanumerics lies between alphanumerics and must be one separator.
    b.split(|&x| alnum(x)).all(|sep| {
        sep.is_empty()
            || sep == b"."
            || sep == b"_"
            || sep == b"__"
            || sep.iter().all(|&x| x == b'-')
    })
}

fn check_tag(tag: &str) -> Result<(), ReferenceError> {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = tag.as_bytes();
    let ok =
        b.first().is_some_and(|&x| word(x)) && b.iter().all(|&x| word(x) || x == b'.' || x == b'-');
    if !ok {
        return Err(ReferenceError::Tag { tag: shown(tag) });
    }
    if b.len() > TAG_MAX_LEN {
        return Err(ReferenceError::TagTooLong { len: b.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn dg() -> String {
        format!("sha256:{HEX}")
    }

    #[test]
    fn normalises_like_parse_normalized_named_plus_tag_name_only() {
        let d = dg();
        // (input, Display, domain, path, tag, familiar)
        type Case<'a> = (String, String, &'a str, &'a str, Option<&'a str>, String);
        let cases: Vec<Case<'_>> = vec![
            (
                "busybox".into(),
                "docker.io/library/busybox:latest".into(),
                "docker.io",
                "library/busybox",
                Some("latest"),
                "busybox:latest".into(),
            ),
            (
                "busybox:1.36".into(),
                "docker.io/library/busybox:1.36".into(),
                "docker.io",
                "library/busybox",
                Some("1.36"),
                "busybox:1.36".into(),
            ),
            (
                "user/app".into(),
                "docker.io/user/app:latest".into(),
                "docker.io",
                "user/app",
                Some("latest"),
                "user/app:latest".into(),
            ),
            (
                "docker.io/busybox".into(),
                "docker.io/library/busybox:latest".into(),
                "docker.io",
                "library/busybox",
                Some("latest"),
                "busybox:latest".into(),
            ),
            (
                "index.docker.io/user/app:v1".into(),
                "docker.io/user/app:v1".into(),
                "docker.io",
                "user/app",
                Some("v1"),
                "user/app:v1".into(),
            ),
            (
                "docker.io/library/a/b".into(),
                "docker.io/library/a/b:latest".into(),
                "docker.io",
                "library/a/b",
                Some("latest"),
                "library/a/b:latest".into(),
            ),
            (
                "127.0.0.1:5000/x/y:tag".into(),
                "127.0.0.1:5000/x/y:tag".into(),
                "127.0.0.1:5000",
                "x/y",
                Some("tag"),
                "127.0.0.1:5000/x/y:tag".into(),
            ),
            (
                "localhost/x".into(),
                "localhost/x:latest".into(),
                "localhost",
                "x",
                Some("latest"),
                "localhost/x:latest".into(),
            ),
            (
                "localhost:5000/x".into(),
                "localhost:5000/x:latest".into(),
                "localhost:5000",
                "x",
                Some("latest"),
                "localhost:5000/x:latest".into(),
            ),
            (
                // no slash: "localhost:5000" is the image "localhost" with the tag "5000"
                "localhost:5000".into(),
                "docker.io/library/localhost:5000".into(),
                "docker.io",
                "library/localhost",
                Some("5000"),
                "localhost:5000".into(),
            ),
            (
                "registry:5000/app".into(),
                "registry:5000/app:latest".into(),
                "registry:5000",
                "app",
                Some("latest"),
                "registry:5000/app:latest".into(),
            ),
            (
                // an uppercase first element is a domain
                "Foo/bar".into(),
                "Foo/bar:latest".into(),
                "Foo",
                "bar",
                Some("latest"),
                "Foo/bar:latest".into(),
            ),
            (
                "[::1]:5000/x".into(),
                "[::1]:5000/x:latest".into(),
                "[::1]:5000",
                "x",
                Some("latest"),
                "[::1]:5000/x:latest".into(),
            ),
            (
                format!("busybox@{d}"),
                format!("docker.io/library/busybox@{d}"),
                "docker.io",
                "library/busybox",
                None,
                format!("busybox@{d}"),
            ),
            (
                format!("ghcr.io/o/r:v1@{d}"),
                format!("ghcr.io/o/r:v1@{d}"),
                "ghcr.io",
                "o/r",
                Some("v1"),
                format!("ghcr.io/o/r:v1@{d}"),
            ),
            (
                "a.b/c__d-e---f.g_h/0:_T.-x".into(),
                "a.b/c__d-e---f.g_h/0:_T.-x".into(),
                "a.b",
                "c__d-e---f.g_h/0",
                Some("_T.-x"),
                "a.b/c__d-e---f.g_h/0:_T.-x".into(),
            ),
        ];
        for (input, display, domain, path, tag, familiar) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), display, "{input}");
            assert_eq!(r.domain(), domain, "{input}");
            assert_eq!(r.path(), path, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(Reference::parse(&display).unwrap(), r, "{input} round trip");
            assert_eq!(Reference::parse(&familiar).unwrap(), r, "{input} familiar");
        }
    }

    #[test]
    fn parse_named_adds_no_tag_and_docker_ref_prefers_the_digest() {
        let r = Reference::parse_named("busybox").unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        let both = Reference::parse(&format!("busybox:1@{}", dg())).unwrap();
        assert_eq!(both.tag(), Some("1"));
        assert_eq!(both.digest(), Some(Digest::parse(&dg()).unwrap()));
        let pinned = both.docker_ref();
        assert_eq!(pinned.tag(), None);
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/library/busybox@{}", dg())
        );
        let tagged = Reference::parse("busybox:1").unwrap();
        assert_eq!(tagged.docker_ref(), tagged);
        assert_eq!(tagged.with_tag("2").unwrap().tag(), Some("2"));
        assert!(tagged.with_tag("-x").is_err());
        let d = Digest::sha256(b"x");
        assert_eq!(tagged.with_digest(d).digest(), Some(d));
        assert_eq!(
            "busybox".parse::<Reference>().unwrap().name(),
            "docker.io/library/busybox"
        );
    }

    #[test]
    fn hosts_for_the_api_and_the_source_label() {
        let cases = [
            ("busybox", "registry-1.docker.io", "docker.io"),
            ("localhost:5000/x", "localhost:5000", "localhost"),
            ("127.0.0.1:5000/x/y", "127.0.0.1:5000", "127.0.0.1"),
            ("[::1]:5000/x", "[::1]:5000", "::1"),
            ("[fe80::1]/x", "[fe80::1]", "fe80::1"),
            ("ghcr.io/o/r", "ghcr.io", "ghcr.io"),
        ];
        for (input, api, source) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.registry_host(), api, "{input}");
            assert_eq!(r.source_host(), source, "{input}");
        }
        assert_eq!(registry_api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(registry_api_host("quay.io"), "quay.io");
    }

    #[test]
    fn rejects_each_violation_with_its_error() {
        let long_tag = "a".repeat(129);
        let long_name = format!("x/{}", "a".repeat(300));
        let cases: Vec<(String, ReferenceError)> = vec![
            ("".into(), ReferenceError::Empty),
            (
                HEX.into(),
                ReferenceError::HexIdentifier { input: HEX.into() },
            ),
            (
                "Busybox".into(),
                ReferenceError::Uppercase {
                    repository: "library/Busybox".into(),
                },
            ),
            (
                "localhost:5000/Foo:tag".into(),
                ReferenceError::Uppercase {
                    repository: "Foo".into(),
                },
            ),
            (
                "foo_bar.com/x".into(),
                ReferenceError::Domain {
                    domain: "foo_bar.com".into(),
                },
            ),
            (
                "-a.com/x".into(),
                ReferenceError::Domain {
                    domain: "-a.com".into(),
                },
            ),
            (
                "a..com/x".into(),
                ReferenceError::Domain {
                    domain: "a..com".into(),
                },
            ),
            (
                "host:port/x".into(),
                ReferenceError::Domain {
                    domain: "host:port".into(),
                },
            ),
            (
                "host:/x".into(),
                ReferenceError::Domain {
                    domain: "host:".into(),
                },
            ),
            (
                "[::g]/x".into(),
                ReferenceError::Domain {
                    domain: "[::g]".into(),
                },
            ),
            (
                "[::1]x/y".into(),
                ReferenceError::Domain {
                    domain: "[::1]x".into(),
                },
            ),
            (
                "a//b".into(),
                ReferenceError::PathComponent {
                    path: "a//b".into(),
                    component: "".into(),
                },
            ),
            (
                "a/b/".into(),
                ReferenceError::PathComponent {
                    path: "a/b/".into(),
                    component: "".into(),
                },
            ),
            (
                "a/b_.c".into(),
                ReferenceError::PathComponent {
                    path: "a/b_.c".into(),
                    component: "b_.c".into(),
                },
            ),
            (
                "a/b___c".into(),
                ReferenceError::PathComponent {
                    path: "a/b___c".into(),
                    component: "b___c".into(),
                },
            ),
            (
                "a/b..c".into(),
                ReferenceError::PathComponent {
                    path: "a/b..c".into(),
                    component: "b..c".into(),
                },
            ),
            (
                "a/-b".into(),
                ReferenceError::PathComponent {
                    path: "a/-b".into(),
                    component: "-b".into(),
                },
            ),
            (
                "a/b c".into(),
                ReferenceError::PathComponent {
                    path: "a/b c".into(),
                    component: "b c".into(),
                },
            ),
            (
                format!("@{}", dg()),
                ReferenceError::PathComponent {
                    path: "library/".into(),
                    component: "".into(),
                },
            ),
            ("busybox:".into(), ReferenceError::Tag { tag: "".into() }),
            (
                "busybox:.x".into(),
                ReferenceError::Tag { tag: ".x".into() },
            ),
            (
                "busybox:a:b".into(),
                ReferenceError::Tag { tag: "a:b".into() },
            ),
            (
                "busybox:a+b".into(),
                ReferenceError::Tag { tag: "a+b".into() },
            ),
            (
                format!("busybox:{long_tag}"),
                ReferenceError::TagTooLong { len: 129 },
            ),
            (
                "busybox@sha256:abc".into(),
                ReferenceError::Digest {
                    digest: "sha256:abc".into(),
                    source: DigestError::BadLength {
                        algorithm: crate::Algorithm::Sha256,
                        expected: 64,
                        actual: 3,
                    },
                },
            ),
            (
                format!("busybox@md5:{HEX}"),
                ReferenceError::Digest {
                    digest: format!("md5:{HEX}"),
                    source: DigestError::UnsupportedAlgorithm {
                        algorithm: "md5".into(),
                    },
                },
            ),
            (
                long_name.clone(),
                ReferenceError::NameTooLong {
                    name: format!("docker.io/{long_name}").chars().take(100).collect(),
                    len: 10 + long_name.len(),
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Reference::parse(&input), Err(want), "{input:?}");
        }
        // messages render without panicking, even for odd input
        for bad in ["", "é/x", "a/é", "a:é", "a@é", "\u{0}", "UPPER/é:é@é"] {
            if let Err(e) = Reference::parse(bad) {
                assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn name_length_counts_the_domain_and_is_inclusive() {
        // docker.io/ is 10 bytes: a path of 245 makes exactly 255
        let ok = format!("u/{}", "a".repeat(243));
        assert!(Reference::parse(&ok).is_ok());
        let over = format!("u/{}", "a".repeat(244));
        assert!(matches!(
            Reference::parse(&over),
            Err(ReferenceError::NameTooLong { len: 256, .. })
        ));
        // a 128-byte tag is allowed
        assert!(Reference::parse(&format!("a:{}", "t".repeat(128))).is_ok());
    }
}
