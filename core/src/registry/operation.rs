//! One registry operation as a machine: the steps of resolve, fetch and push, and the handling
//! every request shares (redirects, authentication, retries, error bodies).
//!
//! Each step is one *logical request*. Sending it may take several HTTP exchanges: redirects
//! (each hop a new request to the `Location`), a 401 answered by authenticating and sending it
//! once more, 5xx/429/connection failures answered by sleeping and sending it again. Only the
//! final answer reaches the step, which decides the next step or the outcome.

use std::collections::VecDeque;

use bytes::Bytes;
use core::time::Duration;

use super::auth::{parse_challenges, AuthCache, AuthScheme, Credentials, Scope, TokenResponse};
use super::endpoint::{finish_upload_url, Endpoint, MANIFEST_ACCEPT};
use super::error::{display_url, parse_error_body, RegistryError, StatusError, Unauthorized};
use super::{
    descriptor, is_manifest_type, Input, Method, Output, Request, RequestBody, Response, Url,
};
use crate::digest::Hasher;
use crate::image::{media, Descriptor, Reference};
use crate::{Digest, Instant};

/// Limits and retry pacing of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Redirects followed for one logical request.
    pub max_redirects: u32,
    /// Times a logical request is re-sent after a 5xx, a 429 or a connection failure.
    pub max_retries: u32,
    /// The first backoff; each further retry doubles it.
    pub backoff_base: Duration,
    /// The longest backoff (also caps a `Retry-After`).
    pub backoff_max: Duration,
    /// The largest manifest read into memory (containerd: 4 MiB).
    pub manifest_limit: u64,
    /// The most of an error or token body read.
    pub small_body_limit: u64,
}

impl Default for Policy {
    /// 10 redirects; 4 retries backing off 250 ms, 500 ms, 1 s, 2 s (at most 10 s); manifests
    /// up to 4 MiB; error and token bodies up to 1 MiB.
    fn default() -> Self {
        Policy {
            max_redirects: 10,
            max_retries: 4,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            manifest_limit: 4 << 20,
            small_body_limit: 1 << 20,
        }
    }
}

/// What an operation starts from: where the registry is, who we are there, what we already
/// know about its authentication, and the time.
#[derive(Debug, Clone)]
pub struct Context {
    /// The registry endpoint (from [`Hosts::endpoint`](super::Hosts::endpoint) for the
    /// reference's domain).
    pub endpoint: Endpoint,
    /// Credentials for this registry, if configured.
    pub credentials: Option<Credentials>,
    /// What earlier operations learnt about this host's authentication.
    pub auth: AuthCache,
    /// The time the operation starts (tokens obtained during it are dated from here, which
    /// only makes them expire early, never late).
    pub now: Instant,
    /// Limits and retry pacing.
    pub policy: Policy,
}

impl Context {
    /// A context with no credentials, an empty auth cache and the default policy.
    #[must_use]
    pub fn new(endpoint: Endpoint, now: Instant) -> Context {
        Context {
            endpoint,
            credentials: None,
            auth: AuthCache::default(),
            now,
            policy: Policy::default(),
        }
    }
}

/// How a blob push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pushed {
    /// The repository already had the blob (HEAD answered 200).
    Exists,
    /// The registry mounted it from the other repository.
    Mounted,
    /// It was uploaded.
    Uploaded,
}

/// What a successful operation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The root descriptor of the resolved reference.
    Resolved(Box<Descriptor>),
    /// The last response's body is the content asked for; its first byte is byte `start` of
    /// the content (0 when the registry ignored the range: the driver skips up to the
    /// offset). `length` is the body's `Content-Length`, if sent.
    Body {
        /// The offset of the body's first byte within the content.
        start: u64,
        /// The body length, if the response gave it.
        length: Option<u64>,
    },
    /// Nothing to fetch: the offset asked for is the content's end.
    Empty,
    /// The blob is in the repository.
    BlobPushed(Pushed),
    /// The manifest was stored; `digest` is what the registry computed (the descriptor's).
    ManifestPushed {
        /// The manifest's digest.
        digest: Digest,
    },
}

/// An input the operation cannot take in its current state. The input is ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registry operation: input {input} is not expected while {state}")]
pub struct InputError {
    /// The input's kind.
    pub input: &'static str,
    /// What the operation was doing.
    pub state: &'static str,
}

/// Why the operation is reading a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// An error response: fail with this kind once it is read.
    Error(ErrorKind),
    /// The token endpoint's answer.
    Token,
    /// The manifest of a GET resolve.
    Manifest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    NotFound,
    Unauthorized(Unauthorized),
    Denied,
    Status,
}

#[derive(Debug)]
enum Phase {
    /// A request has been queued or sent; waiting for its response.
    Awaiting,
    /// Reading the last response's body.
    Reading {
        purpose: Purpose,
        buf: Vec<u8>,
        limit: u64,
        status: u16,
    },
    /// Backing off before re-sending the current request.
    Sleeping,
    /// Finished: `Done` has been queued.
    Done,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Awaiting => "awaiting a response",
            Phase::Reading { .. } => "reading a body",
            Phase::Sleeping => "sleeping before a retry",
            Phase::Done => "done",
        }
    }
}

/// The step a logical request serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    ResolveHead,
    ResolveGet,
    Fetch,
    BlobExists,
    Mount,
    StartUpload,
    Patch {
        offset: u64,
        len: u64,
    },
    Commit,
    PutManifest,
    /// The Bearer token request made for the parked logical request.
    Token,
}

/// A logical request and what it has been through.
#[derive(Debug, Clone)]
struct Current {
    step: Step,
    request: Request,
    /// Where the logical request was first sent (before any redirect).
    origin: Url,
    /// Redirects followed.
    hops: u32,
    /// Times sent since the last success or redirect (retries + 1).
    attempts: u32,
    /// A challenge was answered for it already.
    authenticated: bool,
}

#[derive(Debug)]
enum Job {
    Resolve {
        /// The tag or digest in the URL.
        reference: String,
        /// The digest the reference pins, if any.
        pinned: Option<Digest>,
        /// From the GET fallback's response: Content-Type and Docker-Content-Digest.
        content_type: Option<String>,
        header_digest: Option<Digest>,
    },
    Fetch {
        offset: u64,
    },
    PushBlob {
        desc: Descriptor,
        mount_from: Option<String>,
        chunk_size: Option<u64>,
    },
    PushManifest {
        desc: Descriptor,
    },
}

/// One registry operation: resolve, fetch, push a blob or push a manifest. See the
/// [module docs](super) for the exchange and a complete run loop.
///
/// Methods, in the order a driver uses them: a constructor; then [`poll`](Operation::poll)
/// until `None`, performing each output and feeding its answer with
/// [`handle`](Operation::handle); finally [`auth`](Operation::auth) to keep what was learnt.
#[derive(Debug)]
pub struct Operation {
    endpoint: Endpoint,
    credentials: Option<Credentials>,
    auth: AuthCache,
    now: Instant,
    policy: Policy,
    repository: String,
    scopes: Vec<Scope>,
    job: Job,
    current: Option<Current>,
    /// The logical request waiting for the token being fetched, and the scope key the token
    /// will be remembered under.
    parked: Option<(Current, String)>,
    phase: Phase,
    out: VecDeque<Output>,
}

const OCTET_STREAM: &str = "application/octet-stream";

impl Operation {
    fn new(ctx: Context, repository: &str, scopes: Vec<Scope>, job: Job) -> Operation {
        Operation {
            endpoint: ctx.endpoint,
            credentials: ctx.credentials,
            auth: ctx.auth,
            now: ctx.now,
            policy: ctx.policy,
            repository: repository.to_owned(),
            scopes,
            job,
            current: None,
            parked: None,
            phase: Phase::Awaiting,
            out: VecDeque::new(),
        }
    }

    /// Resolves `reference` to its root descriptor, as containerd does: HEAD the manifest by
    /// tag (or digest) with [`MANIFEST_ACCEPT`]; the descriptor comes from `Content-Type`,
    /// `Docker-Content-Digest` and `Content-Length`. When the HEAD lacks one of them (or the
    /// registry refuses HEAD with 405/501), GET the manifest and compute what is missing from
    /// the body. A digest in the reference must match what the registry serves.
    pub fn resolve(ctx: Context, reference: &Reference) -> Operation {
        let pinned = reference.digest();
        let tag_or_digest = match (pinned, reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_owned(),
            (None, None) => "latest".to_owned(),
        };
        let repo = reference.path();
        let url = ctx.endpoint.manifest_url(repo, &tag_or_digest);
        let mut op = Operation::new(
            ctx,
            repo,
            vec![Scope::pull(repo)],
            Job::Resolve {
                reference: tag_or_digest,
                pinned,
                content_type: None,
                header_digest: None,
            },
        );
        op.start(
            Step::ResolveHead,
            Method::Head,
            url,
            vec![("Accept", MANIFEST_ACCEPT.to_owned())],
            RequestBody::Empty,
        );
        op
    }

    /// Fetches the manifest or blob `desc` of `reference`'s repository from byte `offset`
    /// (a `Range: bytes=<offset>-` request when non-zero). Manifests and indexes come from
    /// `/manifests/<digest>`, everything else from `/blobs/<digest>`. On success the last
    /// response's body is the content ([`Outcome::Body`]); the caller verifies its digest.
    pub fn fetch(ctx: Context, reference: &Reference, desc: &Descriptor, offset: u64) -> Operation {
        let repo = reference.path();
        let url = if is_manifest_type(&desc.media_type) {
            ctx.endpoint.manifest_url(repo, &desc.digest.to_string())
        } else {
            ctx.endpoint.blob_url(repo, &desc.digest)
        };
        let mut op = Operation::new(ctx, repo, vec![Scope::pull(repo)], Job::Fetch { offset });
        if offset > desc.size {
            op.finish(Err(RegistryError::OffsetPastEnd {
                offset,
                size: desc.size,
                digest: desc.digest,
            }));
            return op;
        }
        if offset == desc.size {
            op.finish(Ok(Outcome::Empty));
            return op;
        }
        let accept = if desc.media_type.is_empty() {
            "*/*".to_owned()
        } else {
            format!("{}, */*", desc.media_type)
        };
        let mut headers = vec![("Accept", accept)];
        if offset > 0 {
            headers.push(("Range", format!("bytes={offset}-")));
        }
        op.start(Step::Fetch, Method::Get, url, headers, RequestBody::Empty);
        op
    }

    /// Pushes the blob `desc` to `reference`'s repository: HEAD it (already there →
    /// [`Pushed::Exists`]); if `mount_from` names another repository of the same registry, try
    /// a cross-repository mount (201 → [`Pushed::Mounted`]; 202 → the registry opened an
    /// upload instead); otherwise POST to open an upload. Then upload the bytes
    /// ([`RequestBody::Blob`]): in one `PUT ?digest=` when `chunk_size` is `None` or the blob
    /// fits in one chunk, else in `PATCH`es of `chunk_size` bytes with `Content-Range`,
    /// following each returned `Location` and resuming from its `Range`, then an empty
    /// `PUT ?digest=`.
    pub fn push_blob(
        ctx: Context,
        reference: &Reference,
        desc: &Descriptor,
        mount_from: Option<&str>,
        chunk_size: Option<u64>,
    ) -> Operation {
        let repo = reference.path();
        let mount_from = mount_from.filter(|m| !m.is_empty() && *m != repo);
        let mut scopes = vec![Scope::push(repo)];
        if let Some(from) = mount_from {
            scopes.push(Scope::pull(from));
        }
        let url = ctx.endpoint.blob_url(repo, &desc.digest);
        let mut op = Operation::new(
            ctx,
            repo,
            scopes,
            Job::PushBlob {
                desc: desc.clone(),
                mount_from: mount_from.map(str::to_owned),
                chunk_size: chunk_size.filter(|&c| c > 0),
            },
        );
        op.start(
            Step::BlobExists,
            Method::Head,
            url,
            Vec::new(),
            RequestBody::Empty,
        );
        op
    }

    /// Pushes the manifest `body` (described by `desc`) under `reference`'s tag, or its digest
    /// when the reference has no tag: one `PUT` with `Content-Type: desc.media_type`. The body
    /// is checked against `desc` (size and digest) before anything is sent.
    pub fn push_manifest(
        ctx: Context,
        reference: &Reference,
        desc: &Descriptor,
        body: Bytes,
    ) -> Operation {
        let repo = reference.path();
        let tag_or_digest = match reference.tag() {
            Some(t) => t.to_owned(),
            None => desc.digest.to_string(),
        };
        let url = ctx.endpoint.manifest_url(repo, &tag_or_digest);
        let mut op = Operation::new(
            ctx,
            repo,
            vec![Scope::push(repo)],
            Job::PushManifest { desc: desc.clone() },
        );
        if body.len() as u64 != desc.size {
            op.finish(Err(RegistryError::SizeMismatch {
                expected: desc.size,
                actual: body.len() as u64,
            }));
            return op;
        }
        let actual = digest_with(desc.digest, &body);
        if actual != desc.digest {
            op.finish(Err(RegistryError::DigestMismatch {
                what: "manifest body",
                expected: desc.digest,
                actual,
            }));
            return op;
        }
        op.start(
            Step::PutManifest,
            Method::Put,
            url,
            vec![
                ("Content-Type", desc.media_type.clone()),
                ("Content-Length", body.len().to_string()),
            ],
            RequestBody::Bytes(body),
        );
        op
    }

    /// What this operation knows about the host's authentication now (the context's cache
    /// plus anything learnt). Store it back with [`AuthCache::merge`].
    #[must_use]
    pub fn auth(&self) -> &AuthCache {
        &self.auth
    }

    /// The registry endpoint this operation talks to.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// True once `Done` has been queued.
    #[must_use]
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The next output, or `None` until the next input.
    #[must_use]
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Feeds one input. An input that does not fit the operation's state is refused with
    /// [`InputError`] and changes nothing.
    pub fn handle(&mut self, input: Input) -> Result<(), InputError> {
        let refuse = |input: &'static str, phase: &Phase| {
            Err(InputError {
                input,
                state: phase.name(),
            })
        };
        match input {
            Input::Response(r) => match self.phase {
                Phase::Awaiting => {
                    self.on_response(r);
                    Ok(())
                }
                ref p => refuse("Response", p),
            },
            Input::Failed { message } => match self.phase {
                Phase::Awaiting | Phase::Reading { .. } => {
                    self.on_failure(message);
                    Ok(())
                }
                ref p => refuse("Failed", p),
            },
            Input::Body(chunk) => match &mut self.phase {
                Phase::Reading { buf, limit, .. } => {
                    if (buf.len() + chunk.len()) as u64 > *limit {
                        let limit = *limit;
                        let url = self.url_shown();
                        self.finish(Err(RegistryError::BodyTooLarge { url, limit }));
                    } else {
                        buf.extend_from_slice(&chunk);
                    }
                    Ok(())
                }
                p => refuse("Body", p),
            },
            Input::BodyEnd => match std::mem::replace(&mut self.phase, Phase::Awaiting) {
                Phase::Reading {
                    purpose,
                    buf,
                    status,
                    ..
                } => {
                    self.on_body(purpose, status, buf);
                    Ok(())
                }
                p => {
                    self.phase = p;
                    refuse("BodyEnd", &self.phase)
                }
            },
            Input::Wake => match self.phase {
                Phase::Sleeping => {
                    self.send();
                    Ok(())
                }
                ref p => refuse("Wake", p),
            },
        }
    }

    // ---- sending ----

    fn start(
        &mut self,
        step: Step,
        method: Method,
        url: Url,
        headers: Vec<(&'static str, String)>,
        body: RequestBody,
    ) {
        self.current = Some(Current {
            step,
            origin: url.clone(),
            request: Request {
                method,
                url,
                headers,
                body,
            },
            hops: 0,
            attempts: 0,
            authenticated: false,
        });
        self.send();
    }

    /// Queues the current logical request, with the Authorization it should carry now.
    fn send(&mut self) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        cur.attempts += 1;
        let mut request = cur.request.clone();
        request.headers.retain(|(k, _)| *k != "Authorization");
        let authorization = if cur.step == Step::Token {
            // The token server gets the credentials for the registry whose token it issues;
            // whoever it redirects to does not.
            if request.url.same_origin(&cur.origin) {
                self.credentials.as_ref().map(Credentials::basic_header)
            } else {
                None
            }
        } else if request.url.same_origin(self.endpoint.base()) {
            match self.auth.token_for(&self.scopes, self.now) {
                Some(t) => Some(format!("Bearer {t}")),
                None if self.auth.basic => self.credentials.as_ref().map(Credentials::basic_header),
                None => None,
            }
        } else {
            // A redirect to another origin (a storage backend) never gets our credentials.
            None
        };
        if let Some(a) = authorization {
            request.headers.push(("Authorization", a));
        }
        self.phase = Phase::Awaiting;
        self.out.push_back(Output::Request(request));
    }

    fn finish(&mut self, result: Result<Outcome, RegistryError>) {
        self.phase = Phase::Done;
        self.current = None;
        self.parked = None;
        self.out.push_back(Output::Done(result));
    }

    fn fail(&mut self, e: RegistryError) {
        self.finish(Err(e));
    }

    fn url_shown(&self) -> String {
        self.current
            .as_ref()
            .map(|c| display_url(&c.request.url))
            .unwrap_or_default()
    }

    fn method(&self) -> Method {
        self.current
            .as_ref()
            .map_or(Method::Get, |c| c.request.method)
    }

    fn retryable(&self) -> bool {
        self.current.as_ref().is_some_and(|c| {
            c.request.method != Method::Patch && c.attempts <= self.policy.max_retries
        })
    }

    /// Backs off before the current request's next attempt.
    fn retry_after(&mut self, hint: Option<Duration>) {
        let attempts = self.current.as_ref().map_or(1, |c| c.attempts);
        let shift = attempts.saturating_sub(1).min(20);
        let backoff = self
            .policy
            .backoff_base
            .saturating_mul(1u32 << shift)
            .max(hint.unwrap_or_default())
            .min(self.policy.backoff_max);
        self.phase = Phase::Sleeping;
        self.out.push_back(Output::Sleep(backoff));
    }

    fn read(&mut self, purpose: Purpose, status: u16, limit: u64) {
        self.phase = Phase::Reading {
            purpose,
            buf: Vec::new(),
            limit,
            status,
        };
        self.out.push_back(Output::ReadBody { limit });
    }

    /// Ends the operation with a status error, reading the error body first when there is one.
    fn fail_status(&mut self, kind: ErrorKind, status: u16) {
        if self.method() == Method::Head {
            self.fail(self.status_error(kind, status, &[]));
        } else {
            let limit = self.policy.small_body_limit;
            self.read(Purpose::Error(kind), status, limit);
        }
    }

    fn fail_unexpected(&mut self, status: u16) {
        let kind = match status {
            404 => ErrorKind::NotFound,
            403 => ErrorKind::Denied,
            401 => ErrorKind::Unauthorized(Unauthorized::Rejected),
            _ => ErrorKind::Status,
        };
        self.fail_status(kind, status);
    }

    fn status_error(&self, kind: ErrorKind, status: u16, body: &[u8]) -> RegistryError {
        let errors = parse_error_body(body);
        let text = if errors.is_empty() {
            String::from_utf8_lossy(body)
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_owned()
        } else {
            String::new()
        };
        let error = StatusError {
            method: self.method(),
            url: self.url_shown(),
            status,
            errors,
            body: text,
        };
        match kind {
            ErrorKind::NotFound => RegistryError::NotFound(error),
            ErrorKind::Denied => RegistryError::Denied(error),
            ErrorKind::Unauthorized(reason) => RegistryError::Unauthorized { reason, error },
            ErrorKind::Status => RegistryError::Status(error),
        }
    }

    // ---- what every response goes through ----

    fn on_failure(&mut self, message: String) {
        if self.retryable() {
            self.retry_after(None);
        } else {
            let attempts = self.current.as_ref().map_or(1, |c| c.attempts);
            self.fail(RegistryError::Transport {
                method: self.method(),
                url: self.url_shown(),
                attempts,
                message,
            });
        }
    }

    fn on_response(&mut self, r: Response) {
        let status = r.status;
        if matches!(status, 301 | 302 | 303 | 307 | 308) {
            return self.redirect(&r);
        }
        if status == 401 {
            return self.authenticate(&r);
        }
        if matches!(status, 429 | 500 | 502 | 503 | 504) && self.retryable() {
            let hint = r
                .header("retry-after")
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs);
            return self.retry_after(hint);
        }
        let Some(step) = self.current.as_ref().map(|c| c.step) else {
            return;
        };
        match step {
            Step::Token => self.on_token_response(status),
            Step::ResolveHead => self.on_resolve_head(&r),
            Step::ResolveGet => self.on_resolve_get(&r),
            Step::Fetch => self.on_fetch(&r),
            Step::BlobExists => self.on_blob_exists(status),
            Step::Mount => self.on_mount(&r),
            Step::StartUpload => self.on_upload_started(&r),
            Step::Patch { offset, len } => self.on_patched(&r, offset, len),
            Step::Commit => self.on_committed(&r),
            Step::PutManifest => self.on_manifest_put(&r),
        }
    }

    fn redirect(&mut self, r: &Response) {
        let status = r.status;
        let max = self.policy.max_redirects;
        let (method, url_shown) = (self.method(), self.url_shown());
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let Some(location) = r.header("location") else {
            return self.fail(RegistryError::MissingLocation {
                method,
                url: url_shown,
                status,
            });
        };
        if cur.hops >= max {
            return self.fail(RegistryError::TooManyRedirects {
                method,
                url: url_shown,
                limit: max,
            });
        }
        let next = match cur.request.url.join(location) {
            Ok(u) => u,
            Err(source) => {
                return self.fail(RegistryError::Location {
                    method,
                    url: url_shown,
                    location: location.chars().take(200).collect(),
                    source,
                })
            }
        };
        cur.hops += 1;
        cur.attempts = 0;
        cur.request.url = next;
        // 303 turns anything but HEAD into a GET; so do 301 and 302 for a POST (what every
        // HTTP client does). 307 and 308 keep the method and the body.
        let to_get = match status {
            303 => cur.request.method != Method::Head,
            301 | 302 => cur.request.method == Method::Post,
            _ => false,
        };
        if to_get {
            cur.request.method = Method::Get;
            cur.request.body = RequestBody::Empty;
            cur.request.headers.retain(|(k, _)| {
                !matches!(*k, "Content-Type" | "Content-Length" | "Content-Range")
            });
        }
        self.send();
    }

    fn authenticate(&mut self, r: &Response) {
        let Some(cur) = self.current.as_ref() else {
            return;
        };
        if cur.step == Step::Token {
            return self.fail_status(ErrorKind::Unauthorized(Unauthorized::TokenRefused), 401);
        }
        if cur.authenticated {
            return self.fail_status(ErrorKind::Unauthorized(Unauthorized::Rejected), 401);
        }
        let mut challenges = Vec::new();
        for h in r.headers_named("www-authenticate") {
            match parse_challenges(h) {
                Ok(c) => challenges.extend(c),
                Err(source) => {
                    let url = self.url_shown();
                    return self.fail(RegistryError::Challenge { url, source });
                }
            }
        }
        let bearer = challenges.iter().find(|c| c.scheme == AuthScheme::Bearer);
        let basic = challenges.iter().any(|c| c.scheme == AuthScheme::Basic);
        if let Some(challenge) = bearer {
            let bearer = match challenge.bearer(&cur.request.url) {
                Ok(b) => b,
                Err(source) => {
                    let url = self.url_shown();
                    return self.fail(RegistryError::Challenge { url, source });
                }
            };
            let url = bearer.token_url(&self.scopes);
            let key = bearer.cache_key(&self.scopes);
            let mut parked = cur.clone();
            parked.authenticated = true;
            self.parked = Some((parked, key));
            self.start(
                Step::Token,
                Method::Get,
                url,
                Vec::new(),
                RequestBody::Empty,
            );
        } else if basic {
            if self.credentials.is_none() {
                return self.fail_status(ErrorKind::Unauthorized(Unauthorized::NoCredentials), 401);
            }
            self.auth.basic = true;
            if let Some(cur) = self.current.as_mut() {
                cur.authenticated = true;
                cur.attempts = 0;
            }
            self.send();
        } else {
            self.fail_status(
                ErrorKind::Unauthorized(Unauthorized::NoUsableChallenge),
                401,
            );
        }
    }

    fn on_token_response(&mut self, status: u16) {
        match status {
            200 => {
                let limit = self.policy.small_body_limit;
                self.read(Purpose::Token, status, limit);
            }
            403 => self.fail_status(ErrorKind::Unauthorized(Unauthorized::TokenRefused), status),
            s => self.fail_unexpected(s),
        }
    }

    fn on_body(&mut self, purpose: Purpose, status: u16, body: Vec<u8>) {
        match purpose {
            Purpose::Error(kind) => {
                let e = self.status_error(kind, status, &body);
                self.fail(e);
            }
            Purpose::Token => self.on_token(&body),
            Purpose::Manifest => self.on_manifest_body(&body),
        }
    }

    fn on_token(&mut self, body: &[u8]) {
        let token = match TokenResponse::parse(body) {
            Ok(t) => t,
            Err(source) => {
                let url = self.url_shown();
                return self.fail(RegistryError::Token { url, source });
            }
        };
        let Some((mut parked, key)) = self.parked.take() else {
            return;
        };
        self.auth.insert(key, &token, self.now);
        parked.attempts = 0;
        self.current = Some(parked);
        self.send();
    }

    // ---- resolve ----

    fn on_resolve_head(&mut self, r: &Response) {
        match r.status {
            200 => {
                let header_digest = match header_digest(r) {
                    Ok(d) => d,
                    Err(value) => {
                        let url = self.url_shown();
                        return self.fail(RegistryError::DigestHeader { url, value });
                    }
                };
                let Job::Resolve { pinned, .. } = &self.job else {
                    return;
                };
                let pinned = *pinned;
                if let (Some(p), Some(h)) = (pinned, header_digest) {
                    if p != h {
                        return self.fail(RegistryError::DigestMismatch {
                            what: "Docker-Content-Digest header",
                            expected: p,
                            actual: h,
                        });
                    }
                }
                let media_type = manifest_content_type(r);
                match (media_type, header_digest.or(pinned), r.content_length()) {
                    (Some(m), Some(d), Some(size)) => {
                        self.finish(Ok(Outcome::Resolved(Box::new(descriptor(&m, d, size)))));
                    }
                    _ => self.resolve_by_get(),
                }
            }
            405 | 501 => self.resolve_by_get(),
            s => self.fail_unexpected(s),
        }
    }

    fn resolve_by_get(&mut self) {
        let Job::Resolve { reference, .. } = &self.job else {
            return;
        };
        let url = self.endpoint.manifest_url(&self.repository, reference);
        self.start(
            Step::ResolveGet,
            Method::Get,
            url,
            vec![("Accept", MANIFEST_ACCEPT.to_owned())],
            RequestBody::Empty,
        );
    }

    fn on_resolve_get(&mut self, r: &Response) {
        if r.status != 200 {
            return self.fail_unexpected(r.status);
        }
        let digest = match header_digest(r) {
            Ok(d) => d,
            Err(value) => {
                let url = self.url_shown();
                return self.fail(RegistryError::DigestHeader { url, value });
            }
        };
        if let Job::Resolve {
            content_type,
            header_digest,
            ..
        } = &mut self.job
        {
            *content_type = manifest_content_type(r);
            *header_digest = digest;
        }
        let limit = self.policy.manifest_limit;
        self.read(Purpose::Manifest, r.status, limit);
    }

    fn on_manifest_body(&mut self, body: &[u8]) {
        let Job::Resolve {
            pinned,
            content_type,
            header_digest,
            ..
        } = &self.job
        else {
            return;
        };
        let (pinned, header) = (*pinned, *header_digest);
        let content_type = content_type.clone();
        for (what, expected) in [
            ("manifest body (pinned digest)", pinned),
            ("manifest body (Docker-Content-Digest header)", header),
        ] {
            if let Some(expected) = expected {
                let actual = digest_with(expected, body);
                if actual != expected {
                    return self.fail(RegistryError::DigestMismatch {
                        what,
                        expected,
                        actual,
                    });
                }
            }
        }
        let digest = pinned.or(header).unwrap_or_else(|| Digest::sha256(body));
        let Some(media_type) = content_type.or_else(|| sniff_media_type(body)) else {
            let url = self.url_shown();
            return self.fail(RegistryError::MissingMediaType { url });
        };
        self.finish(Ok(Outcome::Resolved(Box::new(descriptor(
            &media_type,
            digest,
            body.len() as u64,
        )))));
    }

    // ---- fetch ----

    fn on_fetch(&mut self, r: &Response) {
        let Job::Fetch { offset, .. } = self.job else {
            return;
        };
        match r.status {
            200 => self.finish(Ok(Outcome::Body {
                start: 0,
                length: r.content_length(),
            })),
            206 => {
                let value = r.header("content-range").unwrap_or_default();
                match parse_content_range(value) {
                    Some(start) if start == offset => self.finish(Ok(Outcome::Body {
                        start,
                        length: r.content_length(),
                    })),
                    _ => {
                        let url = self.url_shown();
                        self.fail(RegistryError::Range {
                            url,
                            value: value.chars().take(200).collect(),
                            offset,
                        });
                    }
                }
            }
            s => self.fail_unexpected(s),
        }
    }

    // ---- push blob ----

    fn on_blob_exists(&mut self, status: u16) {
        let Job::PushBlob {
            desc, mount_from, ..
        } = &self.job
        else {
            return;
        };
        match status {
            200 => self.finish(Ok(Outcome::BlobPushed(Pushed::Exists))),
            404 => {
                let (step, url) = match mount_from {
                    Some(from) => (
                        Step::Mount,
                        self.endpoint
                            .mount_url(&self.repository, &desc.digest, from),
                    ),
                    None => (
                        Step::StartUpload,
                        self.endpoint.upload_url(&self.repository),
                    ),
                };
                self.start(
                    step,
                    Method::Post,
                    url,
                    vec![("Content-Length", "0".to_owned())],
                    RequestBody::Empty,
                );
            }
            s => self.fail_unexpected(s),
        }
    }

    fn on_mount(&mut self, r: &Response) {
        match r.status {
            201 => self.finish(Ok(Outcome::BlobPushed(Pushed::Mounted))),
            202 => self.on_upload_started(r),
            s => self.fail_unexpected(s),
        }
    }

    /// The `Location` of an upload step, resolved against the request URL.
    fn upload_location(&mut self, r: &Response) -> Option<Url> {
        let method = self.method();
        let url = self.url_shown();
        let base = self.current.as_ref()?.request.url.clone();
        let Some(location) = r.header("location") else {
            self.fail(RegistryError::MissingLocation {
                method,
                url,
                status: r.status,
            });
            return None;
        };
        match base.join(location) {
            Ok(u) => Some(u),
            Err(source) => {
                self.fail(RegistryError::Location {
                    method,
                    url,
                    location: location.chars().take(200).collect(),
                    source,
                });
                None
            }
        }
    }

    fn on_upload_started(&mut self, r: &Response) {
        if r.status != 202 {
            return self.fail_unexpected(r.status);
        }
        if let Some(location) = self.upload_location(r) {
            self.upload_from(location, 0);
        }
    }

    /// Sends the blob's bytes from `offset` to the upload session at `location`.
    fn upload_from(&mut self, location: Url, offset: u64) {
        let Job::PushBlob {
            desc, chunk_size, ..
        } = &self.job
        else {
            return;
        };
        let (size, digest) = (desc.size, desc.digest);
        let monolithic = offset == 0 && chunk_size.is_none_or(|c| size <= c);
        if monolithic || offset == size {
            let body = if offset == size {
                RequestBody::Empty
            } else {
                RequestBody::Blob {
                    offset: 0,
                    len: size,
                }
            };
            let len = if offset == size { 0 } else { size };
            self.start(
                Step::Commit,
                Method::Put,
                finish_upload_url(&location, &digest),
                vec![
                    ("Content-Type", OCTET_STREAM.to_owned()),
                    ("Content-Length", len.to_string()),
                ],
                body,
            );
            return;
        }
        let len = chunk_size.unwrap_or(size).min(size - offset);
        self.start(
            Step::Patch { offset, len },
            Method::Patch,
            location,
            vec![
                ("Content-Type", OCTET_STREAM.to_owned()),
                ("Content-Length", len.to_string()),
                ("Content-Range", format!("{offset}-{}", offset + len - 1)),
            ],
            RequestBody::Blob { offset, len },
        );
    }

    fn on_patched(&mut self, r: &Response, offset: u64, len: u64) {
        if r.status != 202 {
            return self.fail_unexpected(r.status);
        }
        let size = match &self.job {
            Job::PushBlob { desc, .. } => desc.size,
            _ => return,
        };
        // The registry says how much it holds ("0-<last byte>"); trust it over our count.
        let next = match r.header("range") {
            None => Some(offset + len),
            Some(v) => parse_upload_range(v).filter(|&n| n > offset && n <= size),
        };
        let Some(next) = next else {
            let url = self.url_shown();
            let value = r
                .header("range")
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            return self.fail(RegistryError::Range { url, value, offset });
        };
        let location = if r.header("location").is_some() {
            match self.upload_location(r) {
                Some(l) => l,
                None => return,
            }
        } else {
            match &self.current {
                Some(c) => c.request.url.clone(),
                None => return,
            }
        };
        self.upload_from(location, next);
    }

    fn on_committed(&mut self, r: &Response) {
        if !matches!(r.status, 201 | 204) {
            return self.fail_unexpected(r.status);
        }
        let Job::PushBlob { desc, .. } = &self.job else {
            return;
        };
        let expected = desc.digest;
        match header_digest(r) {
            Ok(Some(d)) if d != expected => self.fail(RegistryError::DigestMismatch {
                what: "Docker-Content-Digest of the committed upload",
                expected,
                actual: d,
            }),
            _ => self.finish(Ok(Outcome::BlobPushed(Pushed::Uploaded))),
        }
    }

    // ---- push manifest ----

    fn on_manifest_put(&mut self, r: &Response) {
        if !matches!(r.status, 200 | 201 | 204) {
            return self.fail_unexpected(r.status);
        }
        let Job::PushManifest { desc, .. } = &self.job else {
            return;
        };
        let expected = desc.digest;
        match header_digest(r) {
            Ok(Some(d)) if d != expected => self.fail(RegistryError::DigestMismatch {
                what: "Docker-Content-Digest of the pushed manifest",
                expected,
                actual: d,
            }),
            _ => self.finish(Ok(Outcome::ManifestPushed { digest: expected })),
        }
    }
}

/// The digest of `data` with `like`'s algorithm.
fn digest_with(like: Digest, data: &[u8]) -> Digest {
    let mut h = Hasher::new(like.algorithm());
    h.update(data);
    h.digest()
}

/// `Docker-Content-Digest`: `Ok(None)` when absent, `Err(value)` when not a digest.
fn header_digest(r: &Response) -> Result<Option<Digest>, String> {
    match r.header("docker-content-digest") {
        None | Some("") => Ok(None),
        Some(v) => Digest::parse(v)
            .map(Some)
            .map_err(|_| v.chars().take(200).collect()),
    }
}

/// The manifest media type from `Content-Type`, parameters stripped and lowercased; `None`
/// when absent or generic (`application/json`, `text/plain`, `application/octet-stream`).
fn manifest_content_type(r: &Response) -> Option<String> {
    let ct = r.header("content-type")?;
    let ct = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "" | "application/json" | "text/plain" | OCTET_STREAM => None,
        _ => Some(ct),
    }
}

/// A manifest's media type from its body: `mediaType`, else `manifests` (an OCI index) or
/// `config` (an OCI manifest), as containerd's `DetectManifestMediaType`.
fn sniff_media_type(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default, rename = "mediaType")]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(body).ok()?;
    match p.media_type.filter(|m| !m.is_empty()) {
        Some(m) => Some(m),
        None if p.manifests.is_some() => Some(media::OCI_INDEX.to_owned()),
        None if p.config.is_some() => Some(media::OCI_MANIFEST.to_owned()),
        None => None,
    }
}

/// The first byte of `Content-Range: bytes <first>-<last>/<total or *>`.
fn parse_content_range(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, _total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last) = (
        first.trim().parse::<u64>().ok()?,
        last.trim().parse::<u64>().ok()?,
    );
    (first <= last).then_some(first)
}

/// The next offset from an upload's `Range: 0-<last>` (or `bytes=0-<last>`): `last + 1`.
fn parse_upload_range(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (first, last) = v.split_once('-')?;
    if first.trim() != "0" {
        return None;
    }
    last.trim().parse::<u64>().ok()?.checked_add(1)
}

#[cfg(test)]
mod tests;
