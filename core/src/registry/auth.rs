//! Registry authentication: `WWW-Authenticate` challenges (RFC 7235), Basic credentials, the
//! Bearer token exchange of the distribution token spec, and the per-host memory of what
//! worked ([`AuthCache`]).
//!
//! ```
//! use berth_core::registry::{parse_challenges, AuthScheme, Scope, Url};
//!
//! let header = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a,b:pull""#;
//! let challenges = parse_challenges(header).unwrap();
//! assert_eq!(challenges[0].scheme, AuthScheme::Bearer);
//! assert_eq!(challenges[0].param("scope"), Some("repository:a,b:pull"));
//!
//! let request = Url::parse("http://registry.example/v2/x/manifests/latest").unwrap();
//! let bearer = challenges[0].bearer(&request).unwrap();
//! let url = bearer.token_url(&[Scope::pull("x")]);
//! assert_eq!(
//!     url.to_string(),
//!     "https://auth.example/token?service=registry.example&scope=repository%3Ax%3Apull\
//!      &scope=repository%3Aa%2Cb%3Apull"
//! );
//! ```

use core::fmt;

use super::url::{Url, UrlError};
use crate::Instant;

/// How many characters of a header an error keeps.
const SHOWN: usize = 200;

fn shown(s: &str) -> String {
    s.chars().take(SHOWN).collect()
}

/// Why a `WWW-Authenticate` header does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The header holds no challenge at all.
    #[error("WWW-Authenticate header is empty")]
    Empty,
    /// A challenge or parameter name was expected at byte `at`.
    #[error("WWW-Authenticate {header:?}: expected a name at byte {at}")]
    ExpectedToken {
        /// The header (first 200 characters).
        header: String,
        /// Byte offset.
        at: usize,
    },
    /// A parameter has `=` but no value.
    #[error("WWW-Authenticate {header:?}: parameter {param:?} has no value")]
    MissingValue {
        /// The header (first 200 characters).
        header: String,
        /// The parameter name.
        param: String,
    },
    /// A quoted string is not closed.
    #[error("WWW-Authenticate {header:?}: unterminated quoted string at byte {at}")]
    UnterminatedQuote {
        /// The header (first 200 characters).
        header: String,
        /// Byte offset of the opening quote.
        at: usize,
    },
    /// Something other than `,` follows a parameter.
    #[error("WWW-Authenticate {header:?}: unexpected {found:?} at byte {at}, expected ','")]
    Unexpected {
        /// The header (first 200 characters).
        header: String,
        /// The character found.
        found: char,
        /// Byte offset.
        at: usize,
    },
    /// A Bearer challenge without a `realm`.
    #[error("Bearer challenge without a realm: {header:?}")]
    MissingRealm {
        /// The challenge as printed (first 200 characters).
        header: String,
    },
    /// The Bearer realm is not an http(s) URL.
    #[error("Bearer realm {realm:?} is not a usable URL: {source}")]
    Realm {
        /// The realm (first 200 characters).
        realm: String,
        /// Why.
        source: UrlError,
    },
}

/// An authentication scheme, compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthScheme {
    /// `Basic` (RFC 7617).
    Basic,
    /// `Bearer` (RFC 6750, the distribution token spec).
    Bearer,
    /// Any other scheme, as written.
    Other(String),
}

impl AuthScheme {
    fn from_token(t: &str) -> AuthScheme {
        if t.eq_ignore_ascii_case("basic") {
            AuthScheme::Basic
        } else if t.eq_ignore_ascii_case("bearer") {
            AuthScheme::Bearer
        } else {
            AuthScheme::Other(t.to_owned())
        }
    }

    /// The canonical name (`Basic`, `Bearer`, or the other scheme as written).
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            AuthScheme::Basic => "Basic",
            AuthScheme::Bearer => "Bearer",
            AuthScheme::Other(s) => s,
        }
    }
}

/// One challenge of a `WWW-Authenticate` header: a scheme and its parameters (names
/// lowercased, values unquoted), or a `token68`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme.
    pub scheme: AuthScheme,
    /// The parameters in order, names lowercased. A repeated name keeps every occurrence;
    /// [`Challenge::param`] returns the first.
    pub params: Vec<(String, String)>,
    /// The `token68` form (`Negotiate YII…`), when the challenge uses it instead of parameters.
    pub token68: Option<String>,
}

impl Challenge {
    /// The value of the first parameter named `name` (case-insensitive).
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// This Bearer challenge's token endpoint. The realm is resolved against `request` (the
    /// URL that was challenged), so a relative realm works too.
    pub fn bearer(&self, request: &Url) -> Result<BearerChallenge, ChallengeError> {
        let realm = self
            .param("realm")
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ChallengeError::MissingRealm {
                header: shown(&self.to_string()),
            })?;
        let realm_url = request
            .join(realm)
            .map_err(|source| ChallengeError::Realm {
                realm: shown(realm),
                source,
            })?;
        let scopes = self
            .params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' '))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(BearerChallenge {
            realm: realm_url,
            service: self.param("service").map(str::to_owned),
            scopes,
        })
    }
}

impl fmt::Display for Challenge {
    /// The challenge as a header value: `Scheme name="value", …` (values always quoted), or
    /// `Scheme token68`. It parses back to an equal challenge.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme.as_str())?;
        if let Some(t) = &self.token68 {
            return write!(f, " {t}");
        }
        for (i, (k, v)) in self.params.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            write!(f, "{k}=\"")?;
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        Ok(())
    }
}

/// `tchar` of RFC 7230.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// `token68` characters (without the trailing `=`s).
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn skip_ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t') {
            self.i += 1;
        }
    }

    fn skip_ws_commas(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b',') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn token(&mut self) -> &'a str {
        let start = self.i;
        while self.i < self.b.len() && is_tchar(self.b[self.i]) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn header(&self) -> String {
        shown(self.s)
    }

    fn found(&self) -> char {
        self.s[self.i..].chars().next().unwrap_or('\0')
    }

    /// A quoted string starting at the current `"`.
    fn quoted(&mut self) -> Result<String, ChallengeError> {
        let open = self.i;
        self.i += 1;
        let mut out = String::new();
        let mut chars = self.s[self.i..].char_indices();
        while let Some((off, c)) = chars.next() {
            match c {
                '"' => {
                    self.i += off + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(ChallengeError::UnterminatedQuote {
            header: self.header(),
            at: open,
        })
    }

    /// After a scheme: a token68, if what follows is one (and not an auth-param): token68
    /// characters, then only `=`s, then whitespace up to the end or a `,`.
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        let mut j = self.i;
        while j < self.b.len() && is_token68_char(self.b[j]) {
            j += 1;
        }
        if j == start {
            return None;
        }
        while j < self.b.len() && self.b[j] == b'=' {
            j += 1;
        }
        let mut k = j;
        while k < self.b.len() && matches!(self.b[k], b' ' | b'\t') {
            k += 1;
        }
        if k < self.b.len() && self.b[k] != b',' {
            return None; // "name=value": an auth-param
        }
        self.i = j;
        Some(self.s[start..j].to_owned())
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges.
///
/// Follows RFC 7235 §4.1: several comma-separated challenges, each a case-insensitive scheme
/// then either a `token68` or comma-separated `name=value` parameters whose values are tokens
/// or quoted strings (with `\` escapes, commas allowed inside). Empty list elements are
/// skipped. Several `WWW-Authenticate` headers are parsed one by one (or joined with `,`).
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut p = Parser {
        s: header,
        b: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_ws_commas();
        if p.peek().is_none() {
            break;
        }
        let scheme = p.token();
        if scheme.is_empty() {
            return Err(ChallengeError::ExpectedToken {
                header: p.header(),
                at: p.i,
            });
        }
        let mut challenge = Challenge {
            scheme: AuthScheme::from_token(scheme),
            params: Vec::new(),
            token68: None,
        };
        // The scheme must be followed by whitespace, a ',' or the end.
        match p.peek() {
            None | Some(b',') => {
                out.push(challenge);
                continue;
            }
            Some(b' ' | b'\t') => p.skip_ws(),
            Some(_) => {
                return Err(ChallengeError::Unexpected {
                    header: p.header(),
                    found: p.found(),
                    at: p.i,
                })
            }
        }
        if let Some(t) = p.token68() {
            challenge.token68 = Some(t);
            out.push(challenge);
            continue;
        }
        // auth-params until the next challenge (a token not followed by '=') or the end.
        loop {
            p.skip_ws_commas();
            let before = p.i;
            if p.peek().is_none() {
                break;
            }
            let name = p.token();
            if name.is_empty() {
                return Err(ChallengeError::ExpectedToken {
                    header: p.header(),
                    at: p.i,
                });
            }
            p.skip_ws();
            if p.peek() != Some(b'=') {
                // The next challenge's scheme.
                p.i = before;
                break;
            }
            p.i += 1;
            p.skip_ws();
            let value = match p.peek() {
                Some(b'"') => p.quoted()?,
                _ => {
                    let v = p.token();
                    if v.is_empty() {
                        return Err(ChallengeError::MissingValue {
                            header: p.header(),
                            param: shown(name),
                        });
                    }
                    v.to_owned()
                }
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
            p.skip_ws();
            match p.peek() {
                None | Some(b',') => {}
                Some(_) => {
                    return Err(ChallengeError::Unexpected {
                        header: p.header(),
                        found: p.found(),
                        at: p.i,
                    })
                }
            }
        }
        out.push(challenge);
    }
    if out.is_empty() {
        return Err(ChallengeError::Empty);
    }
    Ok(out)
}

/// A Bearer challenge, ready for the token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    /// The token endpoint.
    pub realm: Url,
    /// The `service` parameter, if any.
    pub service: Option<String>,
    /// The scopes the registry asked for (its `scope` parameter, split on spaces).
    pub scopes: Vec<String>,
}

impl BearerChallenge {
    /// The token request URL: the realm with `service=…` and one `scope=…` per scope: first
    /// `scopes` (what the operation needs), then the challenge's own scopes not already listed.
    #[must_use]
    pub fn token_url(&self, scopes: &[Scope]) -> Url {
        let mut url = self.realm.clone();
        if let Some(s) = self.service.as_deref().filter(|s| !s.is_empty()) {
            url = url.with_query_param("service", s);
        }
        for s in merged_scopes(scopes, &self.scopes) {
            url = url.with_query_param("scope", &s);
        }
        url
    }

    /// The key under which a token for these scopes is remembered.
    #[must_use]
    pub fn cache_key(&self, scopes: &[Scope]) -> String {
        merged_scopes(scopes, &self.scopes).join(" ")
    }
}

fn merged_scopes(ours: &[Scope], theirs: &[String]) -> Vec<String> {
    let mut all: Vec<String> = ours.iter().map(Scope::to_string).collect();
    for s in theirs {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    all
}

/// A token scope: `repository:<name>:<actions>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The repository path (`library/busybox`).
    pub repository: String,
    /// Push access too (`pull,push`), or only `pull`.
    pub push: bool,
}

impl Scope {
    /// `repository:<repo>:pull`.
    #[must_use]
    pub fn pull(repository: &str) -> Scope {
        Scope {
            repository: repository.to_owned(),
            push: false,
        }
    }

    /// `repository:<repo>:pull,push`.
    #[must_use]
    pub fn push(repository: &str) -> Scope {
        Scope {
            repository: repository.to_owned(),
            push: true,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions = if self.push { "pull,push" } else { "pull" };
        write!(f, "repository:{}:{actions}", self.repository)
    }
}

/// A user name and a secret (password or identity token) for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Credentials from a user name and a secret.
    #[must_use]
    pub fn new(username: &str, secret: &str) -> Credentials {
        Credentials {
            username: username.to_owned(),
            secret: secret.to_owned(),
        }
    }

    /// The `Authorization` header value for Basic: `Basic base64(user:secret)`.
    #[must_use]
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.secret);
        format!("Basic {}", base64(raw.as_bytes()))
    }
}

/// Standard base64 with padding (RFC 4648 §4).
#[must_use]
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why a token endpoint's answer is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The body is not the JSON object of the token spec.
    #[error("token response is not valid JSON: {reason}")]
    Json {
        /// serde_json's message.
        reason: String,
    },
    /// Neither `token` nor `access_token` is set.
    #[error("token response holds neither \"token\" nor \"access_token\"")]
    Missing,
    /// The token holds characters an HTTP header cannot carry.
    #[error("token holds characters outside visible ASCII")]
    Invalid,
}

/// A token endpoint's answer (distribution token spec, and OAuth2's `access_token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenResponse {
    /// The bearer token (`token`, else `access_token`).
    pub token: String,
    /// Its lifetime in seconds; at least [`MIN_TOKEN_SECONDS`].
    pub expires_in: u64,
}

/// The lifetime assumed for a token without `expires_in`, and the least one accepted (the
/// spec's default).
pub const MIN_TOKEN_SECONDS: u64 = 60;

impl TokenResponse {
    /// Parses the JSON body of a token response.
    pub fn parse(body: &[u8]) -> Result<TokenResponse, TokenError> {
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<i64>,
        }
        let raw: Raw = serde_json::from_slice(body).map_err(|e| TokenError::Json {
            reason: e.to_string(),
        })?;
        let token = raw
            .token
            .filter(|t| !t.is_empty())
            .or(raw.access_token.filter(|t| !t.is_empty()))
            .ok_or(TokenError::Missing)?;
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Invalid);
        }
        let expires_in = raw
            .expires_in
            .map_or(MIN_TOKEN_SECONDS, |s| u64::try_from(s).unwrap_or(0))
            .max(MIN_TOKEN_SECONDS);
        Ok(TokenResponse { token, expires_in })
    }
}

/// What one registry host has taught about authentication, kept by the driver between
/// operations so that later requests authorise up front instead of taking a 401 first.
///
/// An operation starts from a copy and updates it; the driver stores it back with
/// [`AuthCache::merge`] when the operation ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthCache {
    /// The host asked for Basic credentials.
    pub basic: bool,
    /// Bearer tokens by scope key ([`BearerChallenge::cache_key`]).
    pub tokens: Vec<CachedToken>,
}

/// A bearer token remembered for a set of scopes.
#[derive(Clone, PartialEq, Eq)]
pub struct CachedToken {
    /// The scopes it was issued for, space-separated.
    pub scopes: String,
    /// The token.
    pub token: String,
    /// When it stops being used (a little before it expires).
    pub expires: Instant,
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("scopes", &self.scopes)
            .field("token", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// Tokens are dropped this long before they expire, so one is never sent stale.
const TOKEN_MARGIN_NANOS: u64 = 10_000_000_000;

impl AuthCache {
    /// A token remembered under exactly this scope key that is still valid at `now`.
    #[must_use]
    pub fn token(&self, scopes: &str, now: Instant) -> Option<&str> {
        self.tokens
            .iter()
            .find(|t| t.scopes == scopes && t.expires > now)
            .map(|t| t.token.as_str())
    }

    /// A still valid token whose scopes include every scope in `scopes` (a token for
    /// `repository:x:pull,push` also serves `repository:x:pull`).
    #[must_use]
    pub fn token_for(&self, scopes: &[Scope], now: Instant) -> Option<&str> {
        // The newest first: a token just fetched wins over an older one the registry refused.
        self.tokens
            .iter()
            .rev()
            .filter(|t| t.expires > now)
            .find(|t| {
                let held: Vec<&str> = t.scopes.split(' ').collect();
                scopes.iter().all(|s| {
                    held.contains(&s.to_string().as_str())
                        || (!s.push
                            && held.contains(&Scope::push(&s.repository).to_string().as_str()))
                })
            })
            .map(|t| t.token.as_str())
    }

    /// Remembers `token` for `scopes` from `now` on, replacing any token for the same scopes.
    pub fn insert(&mut self, scopes: String, token: &TokenResponse, now: Instant) {
        let life = token.expires_in.saturating_mul(1_000_000_000);
        let expires = now.add_nanos(life.saturating_sub(TOKEN_MARGIN_NANOS).max(life / 2));
        self.tokens.retain(|t| t.scopes != scopes);
        self.tokens.push(CachedToken {
            scopes,
            token: token.token.clone(),
            expires,
        });
    }

    /// Folds what another operation learnt into this cache: Basic sticks, tokens are added or
    /// replaced by later-expiring ones, and tokens expired at `now` are dropped.
    pub fn merge(&mut self, other: &AuthCache, now: Instant) {
        self.basic |= other.basic;
        for t in &other.tokens {
            match self.tokens.iter_mut().find(|x| x.scopes == t.scopes) {
                Some(x) if x.expires >= t.expires => {}
                Some(x) => *x = t.clone(),
                None => self.tokens.push(t.clone()),
            }
        }
        self.tokens.retain(|t| t.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(h: &str) -> Challenge {
        let mut v = parse_challenges(h).unwrap_or_else(|e| panic!("{h}: {e}"));
        assert_eq!(v.len(), 1, "{h}");
        v.remove(0)
    }

    #[test]
    fn parses_docker_hub_bearer() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.scheme, AuthScheme::Bearer);
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("SERVICE"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn scheme_is_case_insensitive_and_params_are_lowercased() {
        let c = one(r#"bEaReR Realm="r", SERVICE=svc"#);
        assert_eq!(c.scheme, AuthScheme::Bearer);
        assert_eq!(
            c.params,
            vec![
                ("realm".into(), "r".into()),
                ("service".into(), "svc".into())
            ]
        );
        assert_eq!(one("BASIC realm=x").scheme, AuthScheme::Basic);
        assert_eq!(
            one("Digest realm=x").scheme,
            AuthScheme::Other("Digest".into())
        );
    }

    #[test]
    fn commas_and_escapes_inside_quotes() {
        let c = one(
            r#"Bearer realm="http://a/t?x=1,2", scope="repository:a:pull,push repository:b:pull", error="say \"hi\" \\ ok""#,
        );
        assert_eq!(c.param("realm"), Some("http://a/t?x=1,2"));
        assert_eq!(
            c.param("scope"),
            Some("repository:a:pull,push repository:b:pull")
        );
        assert_eq!(c.param("error"), Some(r#"say "hi" \ ok"#));
    }

    #[test]
    fn several_challenges_in_one_header() {
        let v = parse_challenges(
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple", Bearer realm="http://t/""#,
        )
        .unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].scheme, AuthScheme::Other("Newauth".into()));
        assert_eq!(v[0].param("title"), Some(r#"Login to "apps""#));
        assert_eq!(v[0].param("type"), Some("1"));
        assert_eq!(v[1].scheme, AuthScheme::Basic);
        assert_eq!(v[1].param("realm"), Some("simple"));
        assert_eq!(v[2].scheme, AuthScheme::Bearer);
    }

    #[test]
    fn token68_and_bare_schemes() {
        let v = parse_challenges("Negotiate, Basic realm=x").unwrap();
        assert_eq!(v[0].scheme, AuthScheme::Other("Negotiate".into()));
        assert!(v[0].params.is_empty() && v[0].token68.is_none());
        let c = one("Negotiate YIIabc+/==");
        assert_eq!(c.token68.as_deref(), Some("YIIabc+/=="));
        let v = parse_challenges("Negotiate abc=, Basic realm=x").unwrap();
        assert_eq!(v[0].token68.as_deref(), Some("abc="));
        assert_eq!(v[1].param("realm"), Some("x"));
        assert_eq!(one("Basic").scheme, AuthScheme::Basic);
        // empty list elements are skipped
        assert_eq!(parse_challenges(" , ,Basic realm=x ,, ").unwrap().len(), 1);
    }

    #[test]
    fn malformed_challenges_are_typed_errors() {
        assert_eq!(parse_challenges(""), Err(ChallengeError::Empty));
        assert_eq!(parse_challenges(" , "), Err(ChallengeError::Empty));
        assert!(matches!(
            parse_challenges(r#"Bearer realm="unterminated"#),
            Err(ChallengeError::UnterminatedQuote { at: 13, .. })
        ));
        assert!(matches!(
            parse_challenges("Bearer service=x, realm="),
            Err(ChallengeError::MissingValue { param, .. }) if param == "realm"
        ));
        // "realm=" alone after the scheme is a token68 by the grammar, not an error
        assert_eq!(one("Bearer realm=").token68.as_deref(), Some("realm="));
        assert!(matches!(
            parse_challenges(r#"Bearer realm="a" junk"#),
            Err(ChallengeError::Unexpected { found: 'j', .. })
        ));
        assert!(matches!(
            parse_challenges("=x"),
            Err(ChallengeError::ExpectedToken { at: 0, .. })
        ));
        assert!(matches!(
            parse_challenges("Bearer\"x\""),
            Err(ChallengeError::Unexpected { found: '"', .. })
        ));
        assert!(matches!(
            parse_challenges(r#"Bearer realm="a", ="b""#),
            Err(ChallengeError::ExpectedToken { .. })
        ));
    }

    #[test]
    fn display_round_trips() {
        for h in [
            r#"Bearer realm="http://a/t?x=1,2", scope="a \"b\" \\""#,
            "Basic realm=x",
            "Negotiate abc==",
            "Basic",
        ] {
            for c in parse_challenges(h).unwrap() {
                assert_eq!(one(&c.to_string()), c, "{h}");
            }
        }
    }

    #[test]
    fn bearer_token_url() {
        let req = Url::parse("http://reg:5000/v2/a/b/blobs/uploads/").unwrap();
        let c =
            one(r#"Bearer realm="/token?x=y", service="reg:5000", scope="repository:a/b:pull""#);
        let b = c.bearer(&req).unwrap();
        assert_eq!(b.realm.to_string(), "http://reg:5000/token?x=y");
        let url = b.token_url(&[Scope::push("a/b"), Scope::pull("c")]);
        assert_eq!(
            url.query(),
            Some(
                "x=y&service=reg%3A5000&scope=repository%3Aa%2Fb%3Apull%2Cpush\
                 &scope=repository%3Ac%3Apull&scope=repository%3Aa%2Fb%3Apull"
            )
        );
        assert_eq!(b.cache_key(&[Scope::pull("a/b")]), "repository:a/b:pull");
        assert!(matches!(
            one("Bearer service=x").bearer(&req),
            Err(ChallengeError::MissingRealm { .. })
        ));
        assert!(matches!(
            one(r#"Bearer realm="ftp://x/""#).bearer(&req),
            Err(ChallengeError::Realm { .. })
        ));
    }

    #[test]
    fn basic_header_and_base64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(
            Credentials::new("Aladdin", "open sesame").basic_header(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert!(!format!("{:?}", Credentials::new("u", "hunter2")).contains("hunter2"));
    }

    #[test]
    fn token_responses() {
        let t =
            TokenResponse::parse(br#"{"token":"abc","expires_in":300,"issued_at":"x"}"#).unwrap();
        assert_eq!((t.token.as_str(), t.expires_in), ("abc", 300));
        let t = TokenResponse::parse(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!((t.token.as_str(), t.expires_in), ("xyz", 60));
        let t = TokenResponse::parse(br#"{"token":"","access_token":"x","expires_in":5}"#).unwrap();
        assert_eq!((t.token.as_str(), t.expires_in), ("x", 60));
        assert_eq!(TokenResponse::parse(br#"{}"#), Err(TokenError::Missing));
        assert_eq!(
            TokenResponse::parse(br#"{"token":"a b"}"#),
            Err(TokenError::Invalid)
        );
        assert!(matches!(
            TokenResponse::parse(b"<html>"),
            Err(TokenError::Json { .. })
        ));
        assert!(TokenResponse::parse(br#"{"token":"a","expires_in":-5}"#).is_ok());
    }

    #[test]
    fn cache_expiry_and_merge() {
        let t0 = Instant::from_secs_nanos(1000, 0);
        let mut c = AuthCache::default();
        let tok = TokenResponse {
            token: "T".into(),
            expires_in: 300,
        };
        c.insert("repository:a:pull,push".into(), &tok, t0);
        assert_eq!(c.token("repository:a:pull,push", t0), Some("T"));
        assert_eq!(c.token_for(&[Scope::pull("a")], t0), Some("T"));
        assert_eq!(c.token_for(&[Scope::push("a")], t0), Some("T"));
        assert_eq!(c.token_for(&[Scope::pull("b")], t0), None);
        let late = Instant::from_secs_nanos(1000 + 295, 0);
        assert_eq!(c.token("repository:a:pull,push", late), None, "margin");

        let mut d = AuthCache::default();
        d.merge(&c, t0);
        assert_eq!(d, c);
        d.merge(
            &AuthCache {
                basic: true,
                tokens: vec![],
            },
            late,
        );
        assert!(d.basic);
        assert!(d.tokens.is_empty(), "expired tokens are dropped");
    }
}
