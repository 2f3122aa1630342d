//! The OCI distribution API client, as a sans-IO machine: it decides which HTTP requests to
//! make and what their answers mean; a driver performs them.
//!
//! * [`Operation`]: one registry operation — [resolve](Operation::resolve) a reference to its
//!   root descriptor, [fetch](Operation::fetch) a manifest or blob (from an offset),
//!   [push a blob](Operation::push_blob) (exists check, cross-repository mount, monolithic or
//!   chunked upload), [push a manifest](Operation::push_manifest). Redirects, authentication
//!   (Basic, and the Bearer token exchange), retries with backoff and the registry's error
//!   JSON are handled inside, the same way for every request.
//! * [`Hosts`] / [`Endpoint`]: which base URL serves a reference's domain (`docker.io` →
//!   `https://registry-1.docker.io`, loopback and `--plain-http` hosts → `http`), and the API
//!   URLs under it.
//! * [`auth`]: `WWW-Authenticate` parsing, Basic credentials, token responses, and the
//!   per-host [`AuthCache`] a driver keeps between operations.
//! * [`Url`]: absolute http(s) URLs and `Location` resolution.
//!
//! ## The exchange
//!
//! An `Operation` speaks in [`Output`]s and listens to [`Input`]s. After every
//! [`handle`](Operation::handle) (and after construction) the driver drains
//! [`poll`](Operation::poll) until it returns `None`:
//!
//! ```text
//!  Output::Request(r) ──► send r (adding Host, User-Agent) ──► Input::Response{status, headers}
//!                                     │ connection failed ──► Input::Failed{message}
//!  Output::ReadBody{limit} ──► read the last response's body ──► Input::Body(chunk)… Input::BodyEnd
//!  Output::Sleep(delay) ──► wait that long (a retry backoff) ──► Input::Wake
//!  Output::Done(result) ──► finished; Outcome::Body means "the last response's body is the content"
//! ```
//!
//! A response whose body the machine does not ask for (its next output is not `ReadBody`) is
//! the driver's to discard. Time never enters the machine except as [`Context::now`] (for
//! token lifetimes); the backoff is a duration the driver sleeps.
//!
//! ## A complete run loop
//!
//! The driver in miniature, against a toy registry in a closure:
//!
//! ```
//! use berth_core::image::Reference;
//! use berth_core::registry::{
//!     Context, Endpoint, Input, Method, Operation, Outcome, Output, Request, Response, Scheme,
//! };
//! use berth_core::{Digest, Instant};
//!
//! let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
//! // The registry: HEAD asks for a token first, then answers without a digest header, so the
//! // machine falls back to GET and hashes the body.
//! let serve = |r: &Request| -> (Response, Vec<u8>) {
//!     let authorised = r.headers.iter().any(|(k, v)| *k == "Authorization" && v == "Bearer t0k");
//!     let resp = |status: u16, headers: &[(&str, &str)]| Response {
//!         status,
//!         headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
//!     };
//!     match (r.method, r.url.path()) {
//!         (Method::Get, "/token") => (resp(200, &[]), br#"{"token":"t0k"}"#.to_vec()),
//!         _ if !authorised => (
//!             resp(401, &[("WWW-Authenticate", r#"Bearer realm="http://reg.test/token",service="reg""#)]),
//!             Vec::new(),
//!         ),
//!         (Method::Head, _) => (resp(200, &[("Content-Type", "application/vnd.oci.image.index.v1+json")]), Vec::new()),
//!         (Method::Get, _) => (resp(200, &[("Content-Type", "application/vnd.oci.image.index.v1+json")]), manifest.to_vec()),
//!         _ => (resp(405, &[]), Vec::new()),
//!     }
//! };
//!
//! let reference = Reference::parse("reg.test/app:1").unwrap();
//! let ctx = Context::new(Endpoint::new(Scheme::Http, "reg.test").unwrap(), Instant(0));
//! let mut op = Operation::resolve(ctx, &reference);
//! let mut body = Vec::new(); // the last response's body
//! let result = loop {
//!     let input = match op.poll() {
//!         Some(Output::Request(r)) => {
//!             let (head, b) = serve(&r);
//!             body = b;
//!             Input::Response(head)
//!         }
//!         Some(Output::ReadBody { .. }) => {
//!             op.handle(Input::Body(std::mem::take(&mut body).into())).unwrap();
//!             Input::BodyEnd
//!         }
//!         Some(Output::Sleep(_)) => Input::Wake,
//!         Some(Output::Done(result)) => break result,
//!         None => unreachable!("the machine always has something to say until Done"),
//!     };
//!     op.handle(input).unwrap();
//! };
//! let Ok(Outcome::Resolved(desc)) = result else { panic!("{result:?}") };
//! assert_eq!(desc.digest, Digest::sha256(manifest));
//! assert_eq!(desc.size, manifest.len() as u64);
//! assert_eq!(desc.media_type, "application/vnd.oci.image.index.v1+json");
//! // The token is remembered for the next operation on this host.
//! assert_eq!(op.auth().tokens.len(), 1);
//! ```

pub mod auth;
mod endpoint;
mod error;
mod operation;
mod url;

use core::fmt;
use core::time::Duration;

use bytes::Bytes;

pub use auth::{
    parse_challenges, AuthCache, AuthScheme, BearerChallenge, CachedToken, Challenge,
    ChallengeError, Credentials, Scope, TokenError, TokenResponse,
};
pub use endpoint::{finish_upload_url, is_loopback, Endpoint, Hosts, MANIFEST_ACCEPT};
pub use error::{parse_error_body, ErrorDetail, RegistryError, StatusError, Unauthorized};
pub use operation::{Context, InputError, Operation, Outcome, Policy, Pushed};
pub use url::{encode_component, Scheme, Url, UrlError};

use crate::image::Descriptor;

/// An HTTP method the distribution API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// GET.
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
}

impl Method {
    /// The method as sent: `GET`, `HEAD`, …
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to send as a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    /// No body.
    Empty,
    /// These bytes (a manifest).
    Bytes(Bytes),
    /// `len` bytes of the blob being pushed, from byte `offset`: the driver reads them from
    /// its source. The request carries a matching `Content-Length`.
    Blob {
        /// First byte.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

/// An HTTP request for the driver to send. The driver adds `Host` (from the URL's authority)
/// and may add `User-Agent`; every other header is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: Url,
    /// Header names and values, all visible ASCII.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: RequestBody,
}

impl Request {
    /// The value of the first header named `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The status and headers of a response, as the driver received them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Header names and values in order (names any case; repeated headers repeated).
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The value of the first header named `name` (case-insensitive), trimmed.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// Every value of the headers named `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, if present and a number.
    #[must_use]
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.parse().ok()
    }
}

/// An input to an [`Operation`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// The response to the last [`Output::Request`]: status and headers.
    Response(Response),
    /// The request could not be completed: connection refused or reset, timeout, a response
    /// that is not HTTP. Also for a body read that breaks off during [`Output::ReadBody`].
    Failed {
        /// What happened, for the error message.
        message: String,
    },
    /// A chunk of the body asked for with [`Output::ReadBody`].
    Body(Bytes),
    /// The body asked for has ended.
    BodyEnd,
    /// The [`Output::Sleep`] is over.
    Wake,
}

/// What an [`Operation`] asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Send this request; answer with [`Input::Response`] or [`Input::Failed`].
    Request(Request),
    /// Read the last response's body and feed it as [`Input::Body`] chunks, then
    /// [`Input::BodyEnd`]. More than `limit` bytes fail the operation (the driver may stop
    /// reading there).
    ReadBody {
        /// The most bytes the machine accepts.
        limit: u64,
    },
    /// Wait this long before retrying, then feed [`Input::Wake`].
    Sleep(Duration),
    /// The operation has finished.
    Done(Result<Outcome, RegistryError>),
}

/// Checks that `desc` looks like a manifest or index the registry serves from `/manifests/`.
fn is_manifest_type(media_type: &str) -> bool {
    crate::image::media::is_manifest(media_type) || crate::image::media::is_index(media_type)
}

/// A descriptor for the given media type, digest and size.
fn descriptor(media_type: &str, digest: crate::Digest, size: u64) -> Descriptor {
    Descriptor::new(media_type, digest, size)
}
