//! The registry client's parsers of what a registry sends, on arbitrary strings: the
//! `WWW-Authenticate` challenge parser, the `Location` joiner and URL parser, token responses
//! and error bodies. None panics, and:
//!
//! * a parsed challenge prints (`Display`) as a header that parses back to exactly itself;
//!   parameter names are lowercase tokens;
//! * a Bearer challenge's token URL is a URL that round-trips and carries the scope asked for;
//! * a URL that parses or comes out of a join round-trips through `Display`, has a path starting
//!   with `/`, no fragment and no whitespace, and joining its printed form to any base gives it
//!   back (an absolute reference resolves to itself);
//! * query parameters are percent-encoded to unreserved characters only;
//! * a parsed token is visible ASCII and lives at least the minimum time.
//!
//! The input is split at its first newline: the first line is also tried as a base URL for the
//! rest.
#![no_main]

use berth_core::registry::auth::MIN_TOKEN_SECONDS;
use berth_core::registry::{
    encode_component, parse_challenges, parse_error_body, Scope, TokenResponse, Url,
};
use libfuzzer_sys::fuzz_target;

fn check_url(u: &Url) {
    let printed = u.to_string();
    assert_eq!(Url::parse(&printed).as_ref(), Ok(u), "{printed:?}");
    assert!(u.path().starts_with('/'), "{printed:?}");
    assert!(!printed.contains('#'), "{printed:?}");
    assert!(printed.bytes().all(|b| b.is_ascii_graphic()), "{printed:?}");
    assert!(u.same_origin(u));
    assert!(!u.authority().is_empty());
    assert!(!u.authority().contains('@'));
    let _ = u.port();
    let _ = u.path_and_query();
    let fixed = Url::parse("http://base.test:1/a/b?q").unwrap();
    assert_eq!(fixed.join(&printed).as_ref(), Ok(u), "{printed:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    // challenges
    let request = Url::parse("http://registry.test:5000/v2/x/manifests/latest").unwrap();
    match parse_challenges(s) {
        Ok(challenges) => {
            assert!(!challenges.is_empty());
            for c in &challenges {
                assert!(c
                    .params
                    .iter()
                    .all(|(k, _)| !k.is_empty() && k.bytes().all(|b| !b.is_ascii_uppercase())));
                let printed = c.to_string();
                let again = parse_challenges(&printed)
                    .unwrap_or_else(|e| panic!("{c:?} printed as {printed:?}: {e}"));
                assert_eq!(again, vec![c.clone()], "{printed:?}");
                if let Ok(b) = c.bearer(&request) {
                    check_url(&b.realm);
                    let url = b.token_url(&[Scope::pull("x/y")]);
                    let printed = url.to_string();
                    assert_eq!(Url::parse(&printed), Ok(url.clone()));
                    assert!(url
                        .query()
                        .unwrap_or_default()
                        .contains("scope=repository%3Ax%2Fy%3Apull"));
                    assert!(b
                        .cache_key(&[Scope::push("x/y")])
                        .starts_with("repository:x/y:pull,push"));
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    // URLs and Location headers
    let (first, rest) = s.split_once('\n').unwrap_or((s, s));
    let bases: Vec<Url> = [
        Url::parse(first).ok(),
        Url::parse("http://127.0.0.1:5000/v2/a/blobs/uploads/").ok(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Ok(u) = Url::parse(s) {
        check_url(&u);
    }
    for base in &bases {
        check_url(base);
        match base.join(rest) {
            Ok(u) => {
                check_url(&u);
                let q = u.with_query_param(rest, first);
                check_url(&q);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        check_url(&base.with_path(rest));
    }
    let encoded = encode_component(s);
    assert!(encoded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));

    // bodies
    if let Ok(t) = TokenResponse::parse(data) {
        assert!(!t.token.is_empty() && t.token.bytes().all(|b| b.is_ascii_graphic()));
        assert!(t.expires_in >= MIN_TOKEN_SECONDS);
    }
    for e in parse_error_body(data) {
        let _ = (e.code, e.message, e.detail);
    }
});
