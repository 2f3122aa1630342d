//! The operation machine against scripted registries: every test drives it with the same
//! small run loop and checks the requests it made and the outcome.

use super::*;
use crate::registry::{Hosts, Scheme};

const INDEX: &str = media::OCI_INDEX;

/// What the scripted registry answers to one request.
enum Reply {
    /// Status, headers, body.
    Http(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// The connection fails.
    Fail(&'static str),
}

fn http(status: u16, headers: &[(&'static str, &str)], body: &[u8]) -> Reply {
    Reply::Http(
        status,
        headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        body.to_vec(),
    )
}

/// One run: the requests made, the sleeps asked for, the body reads asked for, the result.
struct Run {
    requests: Vec<Request>,
    sleeps: Vec<Duration>,
    reads: usize,
    result: Result<Outcome, RegistryError>,
    auth: AuthCache,
}

impl Run {
    fn req(&self, i: usize) -> &Request {
        &self.requests[i]
    }

    fn lines(&self) -> Vec<String> {
        self.requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.url))
            .collect()
    }
}

/// Drives `op` against `serve`, following the drain rule, feeding bodies in 3-byte chunks.
fn drive(mut op: Operation, mut serve: impl FnMut(&Request) -> Reply) -> Run {
    let mut requests = Vec::new();
    let mut sleeps = Vec::new();
    let mut reads = 0;
    let mut body = Vec::new();
    loop {
        let Some(out) = op.poll() else {
            panic!("the machine went quiet without finishing");
        };
        match out {
            Output::Request(r) => {
                let reply = serve(&r);
                requests.push(r);
                assert!(requests.len() < 100, "runaway");
                match reply {
                    Reply::Http(status, headers, b) => {
                        body = b;
                        let headers = headers
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect();
                        op.handle(Input::Response(Response { status, headers }))
                            .unwrap();
                    }
                    Reply::Fail(m) => op
                        .handle(Input::Failed {
                            message: m.to_owned(),
                        })
                        .unwrap(),
                }
            }
            Output::ReadBody { .. } => {
                reads += 1;
                for c in std::mem::take(&mut body).chunks(3) {
                    op.handle(Input::Body(Bytes::copy_from_slice(c))).unwrap();
                    if op.is_done() {
                        break;
                    }
                }
                if !op.is_done() {
                    op.handle(Input::BodyEnd).unwrap();
                }
            }
            Output::Sleep(d) => {
                sleeps.push(d);
                op.handle(Input::Wake).unwrap();
            }
            Output::Done(result) => {
                assert!(op.poll().is_none(), "nothing after Done");
                return Run {
                    requests,
                    sleeps,
                    reads,
                    result,
                    auth: op.auth().clone(),
                };
            }
        }
    }
}

fn ctx() -> Context {
    Context::new(
        Hosts::default().endpoint("127.0.0.1:5000").unwrap(),
        Instant::from_secs_nanos(1_000, 0),
    )
}

fn with_creds(mut c: Context) -> Context {
    c.credentials = Some(Credentials::new("alice", "s3cret"));
    c
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn r() -> Reference {
    reference("127.0.0.1:5000/team/app:v1")
}

const BASE: &str = "http://127.0.0.1:5000/v2/team/app";

fn index_body() -> &'static [u8] {
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
}

fn index_digest() -> Digest {
    Digest::sha256(index_body())
}

// ---------------------------------------------------------------- resolve

#[test]
fn resolve_from_head_alone() {
    let d = index_digest().to_string();
    let run = drive(Operation::resolve(ctx(), &r()), |_| {
        http(
            200,
            &[
                ("Content-Type", INDEX),
                ("Docker-Content-Digest", &d),
                ("Content-Length", "88"),
            ],
            b"",
        )
    });
    assert_eq!(run.lines(), vec![format!("HEAD {BASE}/manifests/v1")]);
    assert_eq!(run.req(0).header("accept"), Some(MANIFEST_ACCEPT));
    assert_eq!(run.req(0).header("authorization"), None);
    assert_eq!(
        run.result,
        Ok(Outcome::Resolved(Box::new(Descriptor::new(
            INDEX,
            index_digest(),
            88
        ))))
    );
}

#[test]
fn resolve_falls_back_to_get_without_docker_content_digest() {
    let run = drive(Operation::resolve(ctx(), &r()), |req| match req.method {
        Method::Head => http(
            200,
            &[("Content-Type", INDEX), ("Content-Length", "88")],
            b"",
        ),
        _ => http(200, &[("Content-Type", INDEX)], index_body()),
    });
    assert_eq!(
        run.lines(),
        vec![
            format!("HEAD {BASE}/manifests/v1"),
            format!("GET {BASE}/manifests/v1")
        ]
    );
    assert_eq!(run.req(1).header("accept"), Some(MANIFEST_ACCEPT));
    assert_eq!(run.reads, 1);
    assert_eq!(
        run.result,
        Ok(Outcome::Resolved(Box::new(Descriptor::new(
            INDEX,
            index_digest(),
            index_body().len() as u64
        ))))
    );
}

#[test]
fn resolve_get_sniffs_the_media_type_and_checks_the_header_digest() {
    // HEAD refused; GET with a generic Content-Type and a charset: the body's mediaType wins.
    let run = drive(Operation::resolve(ctx(), &r()), |req| match req.method {
        Method::Head => http(405, &[], b""),
        _ => http(
            200,
            &[("Content-Type", "application/json; charset=utf-8")],
            index_body(),
        ),
    });
    let Ok(Outcome::Resolved(desc)) = run.result else {
        panic!("{:?}", run.result)
    };
    assert_eq!(desc.media_type, INDEX);

    // No mediaType: "config" means an OCI manifest.
    let body = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
    let run = drive(Operation::resolve(ctx(), &r()), |req| match req.method {
        Method::Head => http(501, &[], b""),
        _ => http(200, &[], body),
    });
    assert!(matches!(run.result, Ok(Outcome::Resolved(d)) if d.media_type == media::OCI_MANIFEST));

    // Nothing tells the type.
    let run = drive(Operation::resolve(ctx(), &r()), |req| match req.method {
        Method::Head => http(405, &[], b""),
        _ => http(200, &[], b"{}"),
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::MissingMediaType { .. })
    ));

    // A Docker-Content-Digest that lies about the body.
    let wrong = Digest::sha256(b"other").to_string();
    let run = drive(Operation::resolve(ctx(), &r()), |req| match req.method {
        Method::Head => http(200, &[("Content-Type", INDEX)], b""),
        _ => http(
            200,
            &[("Content-Type", INDEX), ("Docker-Content-Digest", &wrong)],
            index_body(),
        ),
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::DigestMismatch { expected, actual, .. })
            if expected.to_string() == wrong && actual == index_digest()
    ));

    // A header that is not a digest at all.
    let run = drive(Operation::resolve(ctx(), &r()), |_| {
        http(200, &[("Docker-Content-Digest", "md5:xyz")], b"")
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::DigestHeader { value, .. }) if value == "md5:xyz"
    ));
}

#[test]
fn resolve_by_digest_checks_what_the_registry_serves() {
    let pinned = r().with_digest(index_digest()).docker_ref();
    // HEAD without a digest header: the pinned digest is the answer.
    let run = drive(Operation::resolve(ctx(), &pinned), |_| {
        http(
            200,
            &[("Content-Type", INDEX), ("Content-Length", "88")],
            b"",
        )
    });
    assert_eq!(
        run.lines(),
        vec![format!("HEAD {BASE}/manifests/{}", index_digest())]
    );
    assert_eq!(
        run.result,
        Ok(Outcome::Resolved(Box::new(Descriptor::new(
            INDEX,
            index_digest(),
            88
        ))))
    );
    // HEAD with another digest.
    let other = Digest::sha256(b"x").to_string();
    let run = drive(Operation::resolve(ctx(), &pinned), |_| {
        http(200, &[("Docker-Content-Digest", &other)], b"")
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::DigestMismatch { expected, .. }) if expected == index_digest()
    ));
    // GET whose body is not the pinned content.
    let run = drive(Operation::resolve(ctx(), &pinned), |req| match req.method {
        Method::Head => http(405, &[], b""),
        _ => http(200, &[("Content-Type", INDEX)], b"{\"mediaType\":\"x\"}"),
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::DigestMismatch { what, .. }) if what.contains("pinned")
    ));
}

#[test]
fn not_found_is_typed_with_the_registry_errors() {
    // HEAD 404: no body to read.
    let run = drive(Operation::resolve(ctx(), &r()), |_| http(404, &[], b""));
    assert_eq!(run.reads, 0);
    let Err(RegistryError::NotFound(e)) = &run.result else {
        panic!("{:?}", run.result)
    };
    assert_eq!((e.status, e.method), (404, Method::Head));
    assert_eq!(e.url, format!("{BASE}/manifests/v1"));

    // GET 404 with the registry's error JSON.
    let d = Descriptor::new(INDEX, index_digest(), 88);
    let run = drive(Operation::fetch(ctx(), &r(), &d, 0), |_| {
        http(
            404,
            &[("Content-Type", "application/json")],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":"x"}]}"#,
        )
    });
    let Err(RegistryError::NotFound(e)) = &run.result else {
        panic!("{:?}", run.result)
    };
    assert_eq!(e.code(), Some("MANIFEST_UNKNOWN"));
    assert_eq!(e.errors[0].message, "manifest unknown");
    assert!(run.result.as_ref().unwrap_err().is_not_found());

    // Other statuses keep the body text when it is not JSON.
    let run = drive(Operation::fetch(ctx(), &r(), &d, 0), |_| {
        http(418, &[], b"  <html>teapot</html>\n")
    });
    let Err(RegistryError::Status(e)) = &run.result else {
        panic!("{:?}", run.result)
    };
    assert_eq!((e.status, e.body.as_str()), (418, "<html>teapot</html>"));
    assert_eq!(run.result.unwrap_err().status(), Some(418));

    let run = drive(Operation::fetch(ctx(), &r(), &d, 0), |_| {
        http(
            403,
            &[],
            br#"{"errors":[{"code":"DENIED","message":"no"}]}"#,
        )
    });
    assert!(matches!(run.result, Err(RegistryError::Denied(e)) if e.code() == Some("DENIED")));
}

// ---------------------------------------------------------------- authentication

fn bearer_registry(req: &Request, expect_basic: Option<&str>) -> Reply {
    if req.url.path() == "/token" {
        if let Some(b) = expect_basic {
            if req.header("authorization") != Some(b) {
                return http(401, &[], b"");
            }
        }
        return http(200, &[], br#"{"token":"tok-1","expires_in":300}"#);
    }
    if req.header("authorization") == Some("Bearer tok-1") {
        let d = index_digest().to_string();
        return http(
            200,
            &[
                ("Content-Type", INDEX),
                ("Docker-Content-Digest", &d),
                ("Content-Length", "88"),
            ],
            b"",
        );
    }
    http(
        401,
        &[(
            "WWW-Authenticate",
            r#"Bearer realm="http://auth.test/token",service="reg, with comma",scope="repository:team/app:pull""#,
        )],
        br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )
}

#[test]
fn bearer_challenge_token_exchange_and_retry() {
    let run = drive(Operation::resolve(ctx(), &r()), |q| {
        bearer_registry(q, None)
    });
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(
        run.lines(),
        vec![
            format!("HEAD {BASE}/manifests/v1"),
            "GET http://auth.test/token?service=reg%2C%20with%20comma&scope=repository%3Ateam%2Fapp%3Apull"
                .to_owned(),
            format!("HEAD {BASE}/manifests/v1"),
        ]
    );
    // anonymous: no credentials to the token server
    assert_eq!(run.req(1).header("authorization"), None);
    assert_eq!(run.req(2).header("authorization"), Some("Bearer tok-1"));

    // The cache makes the next operation authorise up front, with one request.
    let mut c = ctx();
    c.auth = run.auth.clone();
    let again = drive(Operation::resolve(c, &r()), |q| bearer_registry(q, None));
    assert_eq!(again.requests.len(), 1);
    assert!(again.result.is_ok());
    // ... until the token has expired.
    let mut c = ctx();
    c.auth = run.auth;
    c.now = Instant::from_secs_nanos(1_000 + 300, 0);
    let later = drive(Operation::resolve(c, &r()), |q| bearer_registry(q, None));
    assert_eq!(later.requests.len(), 3);
}

#[test]
fn bearer_with_credentials_sends_them_to_the_token_server_only() {
    let basic = Credentials::new("alice", "s3cret").basic_header();
    let run = drive(Operation::resolve(with_creds(ctx()), &r()), |q| {
        bearer_registry(q, Some(&basic))
    });
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(run.req(0).header("authorization"), None);
    assert_eq!(run.req(1).header("authorization"), Some(basic.as_str()));
    assert_eq!(run.req(2).header("authorization"), Some("Bearer tok-1"));
}

#[test]
fn a_redirected_token_request_loses_the_credentials() {
    let basic = Credentials::new("alice", "s3cret").basic_header();
    let run = drive(Operation::resolve(with_creds(ctx()), &r()), |q| {
        match (q.url.authority(), q.url.path()) {
            ("auth.test", "/token") => http(307, &[("Location", "http://other.test/t")], b""),
            ("other.test", _) => http(200, &[], br#"{"token":"tok-1"}"#),
            _ => bearer_registry(q, None),
        }
    });
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(run.req(1).header("authorization"), Some(basic.as_str()));
    assert_eq!(run.req(2).url.authority(), "other.test");
    assert_eq!(run.req(2).header("authorization"), None);
}

#[test]
fn token_server_refusal_is_unauthorized() {
    let run = drive(Operation::resolve(with_creds(ctx()), &r()), |q| {
        bearer_registry(q, Some("Basic wrong"))
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::Unauthorized {
            reason: Unauthorized::TokenRefused,
            ..
        })
    ));
    // a token body that is not a token
    let run = drive(Operation::resolve(ctx(), &r()), |q| {
        if q.url.path() == "/token" {
            http(200, &[], b"{}")
        } else {
            bearer_registry(q, None)
        }
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::Token {
            source: crate::registry::TokenError::Missing,
            ..
        })
    ));
}

#[test]
fn unauthorized_twice_is_typed_unauthorized() {
    // The registry refuses even the fresh token.
    let run = drive(Operation::resolve(ctx(), &r()), |q| {
        if q.url.path() == "/token" {
            http(200, &[], br#"{"token":"useless"}"#)
        } else {
            bearer_registry(q, None)
        }
    });
    assert_eq!(
        run.requests.len(),
        3,
        "one token exchange, one retry, no loop"
    );
    let Err(RegistryError::Unauthorized { reason, error }) = &run.result else {
        panic!("{:?}", run.result)
    };
    assert_eq!(*reason, Unauthorized::Rejected);
    assert_eq!(error.status, 401);
    assert!(run.result.as_ref().unwrap_err().is_auth());

    // Same for a GET, whose error body is read.
    let d = Descriptor::new("application/octet-stream", index_digest(), 88);
    let run = drive(Operation::fetch(ctx(), &r(), &d, 0), |q| {
        if q.url.path() == "/token" {
            http(200, &[], br#"{"token":"useless"}"#)
        } else {
            bearer_registry(q, None)
        }
    });
    let Err(RegistryError::Unauthorized { error, .. }) = &run.result else {
        panic!("{:?}", run.result)
    };
    assert_eq!(error.code(), Some("UNAUTHORIZED"));
}

fn basic_registry(req: &Request) -> Reply {
    let good = Credentials::new("alice", "s3cret").basic_header();
    if req.header("authorization") == Some(good.as_str()) {
        let d = index_digest().to_string();
        http(
            200,
            &[
                ("Content-Type", INDEX),
                ("Docker-Content-Digest", &d),
                ("Content-Length", "88"),
            ],
            b"",
        )
    } else {
        http(
            401,
            &[("www-authenticate", r#"basic realm="Registry Realm""#)],
            b"",
        )
    }
}

#[test]
fn basic_auth() {
    let run = drive(Operation::resolve(ctx(), &r()), basic_registry);
    assert!(matches!(
        run.result,
        Err(RegistryError::Unauthorized {
            reason: Unauthorized::NoCredentials,
            ..
        })
    ));
    assert_eq!(run.requests.len(), 1);

    let run = drive(Operation::resolve(with_creds(ctx()), &r()), basic_registry);
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(run.requests.len(), 2);
    assert!(run.auth.basic);
    let mut c = with_creds(ctx());
    c.auth = run.auth;
    assert_eq!(
        drive(Operation::resolve(c, &r()), basic_registry)
            .requests
            .len(),
        1
    );

    let mut c = ctx();
    c.credentials = Some(Credentials::new("alice", "wrong"));
    let run = drive(Operation::resolve(c, &r()), basic_registry);
    assert!(matches!(
        run.result,
        Err(RegistryError::Unauthorized {
            reason: Unauthorized::Rejected,
            ..
        })
    ));
}

#[test]
fn unusable_and_malformed_challenges() {
    let run = drive(Operation::resolve(ctx(), &r()), |_| {
        http(401, &[("WWW-Authenticate", "Negotiate abc==")], b"")
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::Unauthorized {
            reason: Unauthorized::NoUsableChallenge,
            ..
        })
    ));
    let run = drive(Operation::resolve(ctx(), &r()), |_| http(401, &[], b""));
    assert!(matches!(
        run.result,
        Err(RegistryError::Unauthorized {
            reason: Unauthorized::NoUsableChallenge,
            ..
        })
    ));
    let run = drive(Operation::resolve(ctx(), &r()), |_| {
        http(401, &[("WWW-Authenticate", r#"Bearer realm="open"#)], b"")
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::Challenge {
            source: crate::registry::ChallengeError::UnterminatedQuote { .. },
            ..
        })
    ));
    let run = drive(Operation::resolve(ctx(), &r()), |_| {
        http(401, &[("WWW-Authenticate", "Bearer service=x")], b"")
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::Challenge {
            source: crate::registry::ChallengeError::MissingRealm { .. },
            ..
        })
    ));
}

// ---------------------------------------------------------------- redirects

#[test]
fn redirects_relative_absolute_and_credentials() {
    let blob = Descriptor::new("application/octet-stream", Digest::sha256(b"data"), 4);
    let mut c = with_creds(ctx());
    c.auth.basic = true;
    let run = drive(Operation::fetch(c, &r(), &blob, 0), |q| {
        match (q.url.authority(), q.url.path()) {
            ("127.0.0.1:5000", p) if p.contains("/blobs/") => {
                http(307, &[("Location", "../../../storage/x?sig=1")], b"")
            }
            ("127.0.0.1:5000", "/v2/storage/x") => {
                http(302, &[("Location", "http://cdn.test:8080/b/x?sig=2")], b"")
            }
            ("cdn.test:8080", _) => http(200, &[("Content-Length", "4")], b"data"),
            _ => http(500, &[], b""),
        }
    });
    assert_eq!(
        run.result,
        Ok(Outcome::Body {
            start: 0,
            length: Some(4)
        })
    );
    assert_eq!(
        run.lines(),
        vec![
            format!("GET {BASE}/blobs/{}", blob.digest),
            "GET http://127.0.0.1:5000/v2/storage/x?sig=1".to_owned(),
            "GET http://cdn.test:8080/b/x?sig=2".to_owned(),
        ]
    );
    assert!(run.req(0).header("authorization").is_some());
    assert!(run.req(1).header("authorization").is_some(), "same origin");
    assert_eq!(run.req(2).header("authorization"), None, "other origin");
}

#[test]
fn redirect_methods_limits_and_bad_locations() {
    // 303 after a POST: GET, without the body headers; 307 keeps PUT and its body.
    let blob = Descriptor::new("application/octet-stream", Digest::sha256(b"abc"), 3);
    let run = drive(
        Operation::push_blob(ctx(), &r(), &blob, None, None),
        |q| match (q.method, q.url.path()) {
            (Method::Head, _) => http(404, &[], b""),
            (Method::Post, _) => http(303, &[("Location", "/v2/team/app/blobs/uploads/go")], b""),
            (Method::Get, _) => http(202, &[("Location", "/v2/team/app/blobs/uploads/u1")], b""),
            (Method::Put, "/v2/team/app/blobs/uploads/u1") => {
                http(307, &[("Location", "/elsewhere/u1?x=1")], b"")
            }
            (Method::Put, "/elsewhere/u1") => http(201, &[], b""),
            _ => http(500, &[], b""),
        },
    );
    // (the GET that the 303 became is not an upload start the step understands: it answered
    // 202 with a Location, which is what the step wants)
    assert_eq!(run.result, Ok(Outcome::BlobPushed(Pushed::Uploaded)));
    assert_eq!(run.req(2).method, Method::Get);
    assert_eq!(run.req(2).header("content-length"), None);
    assert_eq!(run.req(4).method, Method::Put);
    assert_eq!(run.req(4).body, RequestBody::Blob { offset: 0, len: 3 });
    assert_eq!(
        run.req(4).url.query(),
        Some("x=1"),
        "a redirect's Location is taken as is"
    );

    // A loop: stops after max_redirects.
    let d = Descriptor::new(INDEX, index_digest(), 88);
    let run = drive(Operation::fetch(ctx(), &r(), &d, 0), |_| {
        http(302, &[("Location", "?again")], b"")
    });
    assert_eq!(run.requests.len(), 11);
    assert!(matches!(
        run.result,
        Err(RegistryError::TooManyRedirects { limit: 10, .. })
    ));

    let run = drive(Operation::fetch(ctx(), &r(), &d, 0), |_| {
        http(301, &[], b"")
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::MissingLocation { status: 301, .. })
    ));
    let run = drive(Operation::fetch(ctx(), &r(), &d, 0), |_| {
        http(308, &[("Location", "gopher://x/")], b"")
    });
    assert!(matches!(run.result, Err(RegistryError::Location { .. })));
}

// ---------------------------------------------------------------- retries

#[test]
fn retries_5xx_and_429_with_bounded_backoff() {
    let d = Descriptor::new(INDEX, index_digest(), 88);
    let mut n = 0;
    let run = drive(Operation::fetch(ctx(), &r(), &d, 0), |_| {
        n += 1;
        match n {
            1 => http(503, &[], b""),
            2 => http(429, &[("Retry-After", "3")], b""),
            3 => http(502, &[("Retry-After", "999")], b""),
            _ => http(200, &[], b""),
        }
    });
    assert!(run.result.is_ok());
    assert_eq!(
        run.sleeps,
        vec![
            Duration::from_millis(250),
            Duration::from_secs(3),
            Duration::from_secs(10)
        ]
    );

    // Always 500: the retries run out and the last answer is the error.
    let run = drive(Operation::fetch(ctx(), &r(), &d, 0), |_| {
        http(
            500,
            &[],
            br#"{"errors":[{"code":"UNKNOWN","message":"boom"}]}"#,
        )
    });
    assert_eq!(run.requests.len(), 5);
    assert_eq!(
        run.sleeps,
        [250, 500, 1000, 2000].map(Duration::from_millis).to_vec()
    );
    assert!(matches!(&run.result, Err(RegistryError::Status(e)) if e.code() == Some("UNKNOWN")));

    // Connection failures.
    let run = drive(Operation::fetch(ctx(), &r(), &d, 0), |_| {
        Reply::Fail("connection refused")
    });
    assert_eq!(run.requests.len(), 5);
    assert!(matches!(
        &run.result,
        Err(RegistryError::Transport { attempts: 5, message, .. }) if message == "connection refused"
    ));

    // A transient failure, then success.
    let mut n = 0;
    let run = drive(Operation::fetch(ctx(), &r(), &d, 0), |_| {
        n += 1;
        if n == 1 {
            Reply::Fail("reset")
        } else {
            http(200, &[], b"")
        }
    });
    assert!(run.result.is_ok());
    assert_eq!(run.sleeps.len(), 1);
}

#[test]
fn a_failed_body_read_is_retried_too() {
    let mut op = Operation::resolve(ctx(), &r());
    let Some(Output::Request(_)) = op.poll() else {
        panic!()
    };
    op.handle(Input::Response(Response {
        status: 405,
        headers: vec![],
    }))
    .unwrap();
    let Some(Output::Request(get)) = op.poll() else {
        panic!()
    };
    assert_eq!(get.method, Method::Get);
    op.handle(Input::Response(Response {
        status: 200,
        headers: vec![],
    }))
    .unwrap();
    assert!(matches!(op.poll(), Some(Output::ReadBody { .. })));
    op.handle(Input::Body(Bytes::from_static(b"{\"media")))
        .unwrap();
    op.handle(Input::Failed {
        message: "reset".into(),
    })
    .unwrap();
    assert!(matches!(op.poll(), Some(Output::Sleep(_))));
    op.handle(Input::Wake).unwrap();
    let Some(Output::Request(again)) = op.poll() else {
        panic!()
    };
    assert_eq!(again, get);
}

// ---------------------------------------------------------------- fetch

#[test]
fn ranged_fetch() {
    let blob = Descriptor::new(
        "application/vnd.oci.image.layer.v1.tar",
        Digest::sha256(b"0123456789"),
        10,
    );
    let run = drive(Operation::fetch(ctx(), &r(), &blob, 4), |_| {
        http(
            206,
            &[("Content-Range", "bytes 4-9/10"), ("Content-Length", "6")],
            b"456789",
        )
    });
    assert_eq!(run.req(0).header("range"), Some("bytes=4-"));
    assert_eq!(
        run.req(0).header("accept"),
        Some("application/vnd.oci.image.layer.v1.tar, */*")
    );
    assert_eq!(
        run.result,
        Ok(Outcome::Body {
            start: 4,
            length: Some(6)
        })
    );
    // The registry ignores the range: the body starts at 0.
    let run = drive(Operation::fetch(ctx(), &r(), &blob, 4), |_| {
        http(200, &[("Content-Length", "10")], b"")
    });
    assert_eq!(
        run.result,
        Ok(Outcome::Body {
            start: 0,
            length: Some(10)
        })
    );
    // ... or answers another range.
    let run = drive(Operation::fetch(ctx(), &r(), &blob, 4), |_| {
        http(206, &[("Content-Range", "bytes 0-9/10")], b"")
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::Range { offset: 4, .. })
    ));
    // Nothing left to fetch, and past the end.
    let run = drive(Operation::fetch(ctx(), &r(), &blob, 10), |_| unreachable!());
    assert_eq!((run.result, run.requests.len()), (Ok(Outcome::Empty), 0));
    let run = drive(Operation::fetch(ctx(), &r(), &blob, 11), |_| unreachable!());
    assert!(matches!(
        run.result,
        Err(RegistryError::OffsetPastEnd {
            offset: 11,
            size: 10,
            ..
        })
    ));
    // Offset 0: no Range header; a manifest comes from /manifests/.
    let m = Descriptor::new(media::DOCKER_MANIFEST, index_digest(), 88);
    let run = drive(Operation::fetch(ctx(), &r(), &m, 0), |_| {
        http(200, &[], b"")
    });
    assert_eq!(run.req(0).header("range"), None);
    assert_eq!(
        run.lines(),
        vec![format!("GET {BASE}/manifests/{}", index_digest())]
    );
}

// ---------------------------------------------------------------- push

fn layer(data: &[u8]) -> Descriptor {
    Descriptor::new(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        Digest::sha256(data),
        data.len() as u64,
    )
}

#[test]
fn push_blob_that_exists() {
    let b = layer(b"hello");
    let run = drive(Operation::push_blob(ctx(), &r(), &b, None, None), |_| {
        http(200, &[("Content-Length", "5")], b"")
    });
    assert_eq!(run.result, Ok(Outcome::BlobPushed(Pushed::Exists)));
    assert_eq!(run.lines(), vec![format!("HEAD {BASE}/blobs/{}", b.digest)]);
}

#[test]
fn push_blob_monolithic() {
    let b = layer(b"hello");
    let run = drive(
        Operation::push_blob(ctx(), &r(), &b, None, Some(1 << 20)),
        |q| match q.method {
            Method::Head => http(404, &[], b""),
            Method::Post => http(
                202,
                &[(
                    "Location",
                    "http://127.0.0.1:5000/v2/team/app/blobs/uploads/u1?_state=s%3D",
                )],
                b"",
            ),
            Method::Put => http(
                201,
                &[("Docker-Content-Digest", &b.digest.to_string())],
                b"",
            ),
            _ => http(500, &[], b""),
        },
    );
    assert_eq!(run.result, Ok(Outcome::BlobPushed(Pushed::Uploaded)));
    assert_eq!(
        run.lines(),
        vec![
            format!("HEAD {BASE}/blobs/{}", b.digest),
            format!("POST {BASE}/blobs/uploads/"),
            format!(
                "PUT {BASE}/blobs/uploads/u1?_state=s%3D&digest=sha256%3A{}",
                b.digest.hex()
            ),
        ]
    );
    assert_eq!(run.req(1).header("content-length"), Some("0"));
    let put = run.req(2);
    assert_eq!(put.body, RequestBody::Blob { offset: 0, len: 5 });
    assert_eq!(put.header("content-length"), Some("5"));
    assert_eq!(put.header("content-type"), Some("application/octet-stream"));

    // A registry that stores something else.
    let run = drive(
        Operation::push_blob(ctx(), &r(), &b, None, None),
        |q| match q.method {
            Method::Head => http(404, &[], b""),
            Method::Post => http(202, &[("Location", "/u")], b""),
            _ => http(
                201,
                &[("Docker-Content-Digest", &Digest::sha256(b"x").to_string())],
                b"",
            ),
        },
    );
    assert!(matches!(
        run.result,
        Err(RegistryError::DigestMismatch { .. })
    ));

    // POST without a Location.
    let run = drive(
        Operation::push_blob(ctx(), &r(), &b, None, None),
        |q| match q.method {
            Method::Head => http(404, &[], b""),
            _ => http(202, &[], b""),
        },
    );
    assert!(matches!(
        run.result,
        Err(RegistryError::MissingLocation {
            status: 202,
            method: Method::Post,
            ..
        })
    ));
}

#[test]
fn push_blob_chunked_follows_locations_and_ranges() {
    let data = b"0123456789abcdefghij"; // 20 bytes, chunks of 8
    let b = layer(data);
    let mut patches = 0;
    let run = drive(
        Operation::push_blob(ctx(), &r(), &b, None, Some(8)),
        |q| match q.method {
            Method::Head => http(404, &[], b""),
            Method::Post => http(202, &[("Location", "/v2/team/app/blobs/uploads/s0")], b""),
            Method::Patch => {
                patches += 1;
                let (loc, range) = match patches {
                    1 => ("/v2/team/app/blobs/uploads/s1", "0-7"),
                    // the registry kept only 12 bytes of the second chunk's 16: resume there
                    2 => ("s2", "0-11"),
                    3 => ("/v2/team/app/blobs/uploads/s3", "0-19"),
                    _ => ("x", "0-0"),
                };
                http(202, &[("Location", loc), ("Range", range)], b"")
            }
            Method::Put => http(201, &[], b""),
            _ => http(500, &[], b""),
        },
    );
    assert_eq!(run.result, Ok(Outcome::BlobPushed(Pushed::Uploaded)));
    let patches: Vec<(String, Option<&str>, &RequestBody)> = run
        .requests
        .iter()
        .filter(|q| q.method == Method::Patch)
        .map(|q| (q.url.path().to_owned(), q.header("content-range"), &q.body))
        .collect();
    assert_eq!(
        patches,
        vec![
            (
                "/v2/team/app/blobs/uploads/s0".to_owned(),
                Some("0-7"),
                &RequestBody::Blob { offset: 0, len: 8 }
            ),
            (
                "/v2/team/app/blobs/uploads/s1".to_owned(),
                Some("8-15"),
                &RequestBody::Blob { offset: 8, len: 8 }
            ),
            (
                "/v2/team/app/blobs/uploads/s2".to_owned(),
                Some("12-19"),
                &RequestBody::Blob { offset: 12, len: 8 }
            ),
        ]
    );
    let put = run.requests.last().unwrap();
    assert_eq!(put.method, Method::Put);
    assert_eq!(put.url.path(), "/v2/team/app/blobs/uploads/s3");
    assert_eq!(put.body, RequestBody::Empty);
    assert_eq!(put.header("content-length"), Some("0"));

    // A Range that goes backwards is refused.
    let run = drive(
        Operation::push_blob(ctx(), &r(), &b, None, Some(8)),
        |q| match q.method {
            Method::Head => http(404, &[], b""),
            Method::Post => http(202, &[("Location", "/s")], b""),
            _ => http(202, &[("Location", "/s"), ("Range", "0-99")], b""),
        },
    );
    assert!(matches!(run.result, Err(RegistryError::Range { .. })));

    // A PATCH is never retried (the registry may have taken part of it).
    let run = drive(
        Operation::push_blob(ctx(), &r(), &b, None, Some(8)),
        |q| match q.method {
            Method::Head => http(404, &[], b""),
            Method::Post => http(202, &[("Location", "/s")], b""),
            _ => Reply::Fail("reset"),
        },
    );
    assert!(matches!(
        run.result,
        Err(RegistryError::Transport {
            method: Method::Patch,
            attempts: 1,
            ..
        })
    ));
}

#[test]
fn push_empty_blob() {
    let b = layer(b"");
    let run = drive(
        Operation::push_blob(ctx(), &r(), &b, None, Some(8)),
        |q| match q.method {
            Method::Head => http(404, &[], b""),
            Method::Post => http(202, &[("Location", "/u")], b""),
            _ => http(201, &[], b""),
        },
    );
    assert_eq!(run.result, Ok(Outcome::BlobPushed(Pushed::Uploaded)));
    assert_eq!(run.req(2).body, RequestBody::Empty);
    assert_eq!(run.req(2).header("content-length"), Some("0"));
}

#[test]
fn cross_repository_mount() {
    let b = layer(b"shared");
    let run = drive(
        Operation::push_blob(ctx(), &r(), &b, Some("base/img"), None),
        |q| match q.method {
            Method::Head => http(404, &[], b""),
            Method::Post => http(201, &[], b""),
            _ => http(500, &[], b""),
        },
    );
    assert_eq!(run.result, Ok(Outcome::BlobPushed(Pushed::Mounted)));
    assert_eq!(
        run.req(1).url.to_string(),
        format!(
            "{BASE}/blobs/uploads/?mount=sha256%3A{}&from=base%2Fimg",
            b.digest.hex()
        )
    );
    // The registry cannot mount: it opened an upload instead.
    let run = drive(
        Operation::push_blob(ctx(), &r(), &b, Some("base/img"), None),
        |q| match q.method {
            Method::Head => http(404, &[], b""),
            Method::Post => http(202, &[("Location", "/v2/team/app/blobs/uploads/m")], b""),
            Method::Put => http(201, &[], b""),
            _ => http(500, &[], b""),
        },
    );
    assert_eq!(run.result, Ok(Outcome::BlobPushed(Pushed::Uploaded)));
    assert_eq!(run.requests.len(), 3);
    // Mounting from the same repository is just an upload.
    let run = drive(
        Operation::push_blob(ctx(), &r(), &b, Some("team/app"), None),
        |q| match q.method {
            Method::Head => http(404, &[], b""),
            Method::Post => http(202, &[("Location", "/u")], b""),
            _ => http(201, &[], b""),
        },
    );
    assert_eq!(run.req(1).url.query(), None);
}

#[test]
fn push_scopes_in_the_token_request() {
    let b = layer(b"shared");
    let run = drive(
        Operation::push_blob(ctx(), &r(), &b, Some("base/img"), None),
        |q| {
            if q.url.path() == "/token" {
                return http(200, &[], br#"{"access_token":"t"}"#);
            }
            if q.header("authorization") != Some("Bearer t") {
                return http(
                    401,
                    &[(
                        "WWW-Authenticate",
                        r#"Bearer realm="http://a/token",service="s""#,
                    )],
                    b"",
                );
            }
            match q.method {
                Method::Head => http(404, &[], b""),
                _ => http(201, &[], b""),
            }
        },
    );
    assert_eq!(run.result, Ok(Outcome::BlobPushed(Pushed::Mounted)));
    assert_eq!(
        run.req(1).url.query(),
        Some("service=s&scope=repository%3Ateam%2Fapp%3Apull%2Cpush&scope=repository%3Abase%2Fimg%3Apull")
    );
    // the token serves the mount POST too, with no second exchange
    assert_eq!(run.requests.len(), 4);
}

#[test]
fn push_manifest() {
    let body = Bytes::from_static(index_body());
    let desc = Descriptor::new(INDEX, index_digest(), body.len() as u64);
    let run = drive(
        Operation::push_manifest(ctx(), &r(), &desc, body.clone()),
        |_| {
            http(
                201,
                &[("Docker-Content-Digest", &index_digest().to_string())],
                b"",
            )
        },
    );
    assert_eq!(
        run.result,
        Ok(Outcome::ManifestPushed {
            digest: index_digest()
        })
    );
    assert_eq!(run.lines(), vec![format!("PUT {BASE}/manifests/v1")]);
    assert_eq!(run.req(0).header("content-type"), Some(INDEX));
    assert_eq!(run.req(0).body, RequestBody::Bytes(body.clone()));

    // By digest when the reference has no tag.
    let untagged = reference(&format!("127.0.0.1:5000/team/app@{}", index_digest()));
    let run = drive(
        Operation::push_manifest(ctx(), &untagged, &desc, body.clone()),
        |_| http(201, &[], b""),
    );
    assert_eq!(
        run.lines(),
        vec![format!("PUT {BASE}/manifests/{}", index_digest())]
    );

    // Checked before sending.
    let wrong = Descriptor::new(INDEX, Digest::sha256(b"x"), body.len() as u64);
    let run = drive(
        Operation::push_manifest(ctx(), &r(), &wrong, body.clone()),
        |_| unreachable!(),
    );
    assert!(matches!(
        run.result,
        Err(RegistryError::DigestMismatch { .. })
    ));
    let short = Descriptor::new(INDEX, index_digest(), 3);
    let run = drive(
        Operation::push_manifest(ctx(), &r(), &short, body),
        |_| unreachable!(),
    );
    assert!(matches!(
        run.result,
        Err(RegistryError::SizeMismatch { expected: 3, .. })
    ));
}

#[test]
fn manifest_invalid_is_a_status_error_with_the_code() {
    let body = Bytes::from_static(index_body());
    let desc = Descriptor::new(INDEX, index_digest(), body.len() as u64);
    let run = drive(Operation::push_manifest(ctx(), &r(), &desc, body), |_| {
        http(
            400,
            &[],
            br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:00"}]}"#,
        )
    });
    assert!(matches!(
        &run.result,
        Err(RegistryError::Status(e)) if e.status == 400 && e.code() == Some("MANIFEST_BLOB_UNKNOWN")
    ));
}

// ---------------------------------------------------------------- the contract

#[test]
fn body_limits() {
    let mut c = ctx();
    c.policy.manifest_limit = 10;
    let run = drive(Operation::resolve(c, &r()), |q| match q.method {
        Method::Head => http(405, &[], b""),
        _ => http(200, &[("Content-Type", INDEX)], index_body()),
    });
    assert!(matches!(
        run.result,
        Err(RegistryError::BodyTooLarge { limit: 10, .. })
    ));
}

#[test]
fn inputs_out_of_turn_are_refused_and_change_nothing() {
    let mut op = Operation::resolve(ctx(), &r());
    assert_eq!(
        op.handle(Input::Wake),
        Err(InputError {
            input: "Wake",
            state: "awaiting a response"
        })
    );
    assert!(op.handle(Input::Body(Bytes::new())).is_err());
    assert!(op.handle(Input::BodyEnd).is_err());
    let Some(Output::Request(head)) = op.poll() else {
        panic!()
    };
    assert_eq!(head.method, Method::Head);
    assert!(op.poll().is_none());
    op.handle(Input::Response(Response {
        status: 404,
        headers: vec![],
    }))
    .unwrap();
    assert!(matches!(op.poll(), Some(Output::Done(Err(_)))));
    assert!(op.is_done());
    for input in [
        Input::Response(Response::default()),
        Input::Wake,
        Input::BodyEnd,
        Input::Failed {
            message: String::new(),
        },
    ] {
        assert!(op.handle(input).is_err());
    }
    assert!(op.poll().is_none());
}

#[test]
fn deterministic() {
    let script = |q: &Request| -> Reply {
        if q.url.path() == "/token" {
            return http(200, &[], br#"{"token":"tok-1"}"#);
        }
        bearer_registry(q, None)
    };
    let a = drive(Operation::resolve(ctx(), &r()), script);
    let b = drive(Operation::resolve(ctx(), &r()), script);
    assert_eq!(a.requests, b.requests);
    assert_eq!(a.result, b.result);
    assert_eq!(a.auth, b.auth);
}

#[test]
fn docker_hub_endpoint() {
    let c = Context::new(
        Hosts::default().endpoint("docker.io").unwrap(),
        Instant::EPOCH,
    );
    let mut op = Operation::resolve(c, &reference("busybox"));
    let Some(Output::Request(q)) = op.poll() else {
        panic!()
    };
    assert_eq!(
        q.url.to_string(),
        "https://registry-1.docker.io/v2/library/busybox/manifests/latest"
    );
    assert_eq!(q.url.scheme(), Scheme::Https);
}

#[test]
fn range_header_parsers() {
    assert_eq!(parse_content_range("bytes 4-9/10"), Some(4));
    assert_eq!(parse_content_range("bytes 4-9/*"), Some(4));
    assert_eq!(parse_content_range("bytes 9-4/10"), None);
    assert_eq!(parse_content_range("4-9/10"), None);
    assert_eq!(parse_upload_range("0-7"), Some(8));
    assert_eq!(parse_upload_range("bytes=0-7"), Some(8));
    assert_eq!(parse_upload_range("1-7"), None);
    assert_eq!(parse_upload_range("0-18446744073709551615"), None);
}
