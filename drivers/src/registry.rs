//! The registry client: drives [`berth_core::registry::Operation`]s over real HTTP/1.1
//! connections (hyper's client on smol), for berthd's pulls and pushes.
//!
//! * [`RegistryClient`]: `resolve`, `fetch` (a [`BlobStream`] of the content from an offset),
//!   `push_blob` (from any [`BlobSource`]) and `push_manifest`. Cheap to clone and shared
//!   between tasks; concurrent operations use separate connections, and finished ones give
//!   their connection back to a per-host keep-alive pool.
//! * [`ClientConfig`]: plain-HTTP hosts, credentials per registry, the upload chunk size,
//!   retry policy and timeouts.
//!
//! What the machine decides (URLs, redirects, authentication, retries, the meaning of each
//! status) is in core; this module only moves bytes and sleeps when told.
//!
//! Plain HTTP only, for now: an `https` endpoint (or a redirect to one) ends the operation
//! with [`ClientError::HttpsUnsupported`] rather than pretending. Loopback registries are
//! plain HTTP by default, others need [`Hosts::plain_http`] or [`Hosts::insecure`].
//!
//! ```no_run
//! use berth_core::image::Reference;
//! use berth_drivers::registry::{ClientConfig, RegistryClient};
//! use futures_lite::StreamExt;
//!
//! smol::block_on(async {
//!     let client = RegistryClient::new(ClientConfig::default());
//!     let reference = Reference::parse("127.0.0.1:5000/library/busybox:latest").unwrap();
//!     let root = client.resolve(&reference).await?;
//!     let mut body = client.fetch(&reference, &root, 0).await?;
//!     while let Some(chunk) = body.next().await {
//!         let _bytes = chunk?;
//!     }
//!     Ok::<_, berth_drivers::registry::ClientError>(())
//! })
//! .unwrap();
//! ```

mod conn;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use berth_core::image::{Descriptor, Reference};
use berth_core::registry::{
    AuthCache, Context, Credentials, Hosts, Input, InputError, Method, Operation, Outcome, Output,
    Policy, Pushed, RegistryError, Response, Scheme, UrlError,
};
use berth_core::Instant;
use bytes::Bytes;
use futures_lite::Stream;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};

use crate::exec::{Clock, SystemClock};
use conn::{drain, Conn, Pool, SendError};

/// A stream of byte chunks, as a [`BlobSource`] produces them.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>;

/// Where the bytes of a blob being pushed come from. Uploads may need any range more than once
/// (a chunk is re-sent after a redirect, an upload is retried), so a source reads ranges.
pub trait BlobSource: Send + Sync {
    /// The `len` bytes from `offset`, in chunks. Yielding fewer bytes fails the upload.
    fn read(&self, offset: u64, len: u64) -> ByteStream;
}

/// Chunks of at most this many bytes are handed to the connection.
const CHUNK: u64 = 1 << 20;

impl BlobSource for Bytes {
    fn read(&self, offset: u64, len: u64) -> ByteStream {
        let size = self.len() as u64;
        let start = offset.min(size);
        let end = offset.saturating_add(len).min(size);
        let data = self.slice(start as usize..end as usize);
        let chunks: Vec<io::Result<Bytes>> = (0..data.len())
            .step_by(CHUNK as usize)
            .map(|i| Ok(data.slice(i..(i + CHUNK as usize).min(data.len()))))
            .collect();
        Box::pin(futures_lite::stream::iter(chunks))
    }
}

/// A blob in a file, read on the blocking pool in 1 MiB chunks.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// The blob stored at `path`.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        FileSource { path: path.into() }
    }
}

struct FileRead {
    path: PathBuf,
    file: Option<std::fs::File>,
    offset: u64,
    left: u64,
}

impl BlobSource for FileSource {
    fn read(&self, offset: u64, len: u64) -> ByteStream {
        let state = FileRead {
            path: self.path.clone(),
            file: None,
            offset,
            left: len,
        };
        Box::pin(futures_lite::stream::unfold(state, |st| async move {
            if st.left == 0 {
                return None;
            }
            let path = st.path.clone();
            match smol::unblock(move || read_chunk(st)).await {
                Ok((st, b)) => Some((Ok(b), st)),
                Err(e) => {
                    let done = FileRead {
                        path,
                        file: None,
                        offset: 0,
                        left: 0,
                    };
                    Some((Err(e), done))
                }
            }
        }))
    }
}

fn read_chunk(mut st: FileRead) -> io::Result<(FileRead, Bytes)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match st.file.take() {
        Some(f) => f,
        None => {
            let mut f = std::fs::File::open(&st.path)?;
            f.seek(SeekFrom::Start(st.offset))?;
            f
        }
    };
    let want = st.left.min(CHUNK) as usize;
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{} ends at byte {}, {} bytes short of the blob",
                st.path.display(),
                st.offset,
                st.left
            ),
        ));
    }
    buf.truncate(got);
    st.offset += got as u64;
    st.left -= got as u64;
    st.file = Some(f);
    Ok((st, Bytes::from(buf)))
}

/// How the client reaches registries.
#[derive(Clone)]
pub struct ClientConfig {
    /// Which hosts are spoken to over plain HTTP (loopback ones always are).
    pub hosts: Hosts,
    /// Credentials by registry: the reference domain (`docker.io`, `127.0.0.1:5000`) or the
    /// API host (`registry-1.docker.io`).
    pub credentials: HashMap<String, Credentials>,
    /// Blobs larger than this are uploaded in `PATCH` chunks of this size; `None` uploads every
    /// blob in one `PUT`.
    pub chunk_size: Option<u64>,
    /// Redirect, retry and body limits.
    pub policy: Policy,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host.
    pub max_idle_per_host: usize,
}

impl Default for ClientConfig {
    /// Loopback registries over plain HTTP, no credentials, monolithic uploads, the default
    /// [`Policy`], a 30 s connect timeout, up to 8 idle connections per host.
    fn default() -> Self {
        ClientConfig {
            hosts: Hosts::default(),
            credentials: HashMap::new(),
            chunk_size: None,
            policy: Policy::default(),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_owned(),
            connect_timeout: Duration::from_secs(30),
            max_idle_per_host: 8,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("hosts", &self.hosts)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("chunk_size", &self.chunk_size)
            .field("policy", &self.policy)
            .field("user_agent", &self.user_agent)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_idle_per_host", &self.max_idle_per_host)
            .finish()
    }
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The registry refused or answered nonsense, or the connection failed on every attempt.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The endpoint (or a redirect) is `https`, which this client does not speak yet.
    #[error(
        "https not supported yet: {url} (berth's registry client speaks plain HTTP only; \
         mark the registry as a plain-http host to use it without TLS)"
    )]
    HttpsUnsupported {
        /// The URL (query stripped).
        url: String,
    },
    /// The reference's domain is not a usable host.
    #[error("registry {domain:?}: {source}")]
    Endpoint {
        /// The domain.
        domain: String,
        /// Why.
        source: UrlError,
    },
    /// Reading the blob being pushed failed.
    #[error("reading the blob to push: {0}")]
    Source(#[source] io::Error),
    /// A content body broke off while streaming.
    #[error("{url}: the body broke off after {received} bytes: {message}")]
    Body {
        /// The URL (query stripped).
        url: String,
        /// Bytes received before the failure.
        received: u64,
        /// What happened.
        message: String,
    },
    /// A content body ended before the descriptor's size.
    #[error("{url}: the body ended {missing} bytes short of the descriptor's size")]
    Truncated {
        /// The URL (query stripped).
        url: String,
        /// Bytes missing.
        missing: u64,
    },
    /// A content body went on past the descriptor's size.
    #[error("{url}: the body is longer than the descriptor's {size} bytes")]
    TooLong {
        /// The URL (query stripped).
        url: String,
        /// The descriptor's size.
        size: u64,
    },
    /// The machine refused an input: a bug in this driver.
    #[error("registry driver bug: {0}")]
    Machine(#[from] InputError),
}

impl ClientError {
    /// True if the registry said the thing does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Registry(e) if e.is_not_found())
    }

    /// True if the registry refused our credentials (or their absence).
    #[must_use]
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            ClientError::Registry(RegistryError::Unauthorized { .. })
        )
    }
}

struct Inner {
    config: ClientConfig,
    pool: Arc<Pool>,
    auth: Mutex<HashMap<String, AuthCache>>,
    clock: Box<dyn Clock>,
}

/// An async OCI distribution client. Clone it freely: clones share connections and what was
/// learnt about each host's authentication.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The response whose body the machine has not asked for yet.
struct Last {
    response: http::Response<Incoming>,
    conn: Conn,
    method: Method,
}

/// A manifest's or blob's content, streamed from the registry: `Bytes` chunks from the offset
/// asked for to the end, checked against the descriptor's size. Reading it to the end returns
/// the connection to the pool; dropping it early closes the connection.
pub struct BlobStream {
    body: Option<Incoming>,
    conn: Option<Conn>,
    pool: Arc<Pool>,
    /// Bytes at the start of the body that precede the offset asked for.
    skip: u64,
    /// Bytes still expected.
    remaining: u64,
    size: u64,
    received: u64,
    url: String,
}

impl fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStream")
            .field("url", &self.url)
            .field("remaining", &self.remaining)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    fn empty(pool: Arc<Pool>) -> BlobStream {
        BlobStream {
            body: None,
            conn: None,
            pool,
            skip: 0,
            remaining: 0,
            size: 0,
            received: 0,
            url: String::new(),
        }
    }

    /// Bytes this stream will still yield.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next chunk, or `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        futures_lite::StreamExt::next(self).await.transpose()
    }

    /// Reads the rest into memory.
    pub async fn bytes(mut self) -> Result<Bytes, ClientError> {
        let mut out = Vec::with_capacity(self.remaining.min(64 << 20) as usize);
        while let Some(chunk) = self.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out.into())
    }

    fn end(&mut self) -> Option<Result<Bytes, ClientError>> {
        self.body = None;
        if self.remaining > 0 {
            let missing = self.remaining;
            self.remaining = 0;
            self.conn = None;
            return Some(Err(ClientError::Truncated {
                url: self.url.clone(),
                missing,
            }));
        }
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(conn);
        }
        None
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(None);
            };
            let frame = match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(this.end()),
                Poll::Ready(Some(Err(e))) => {
                    this.body = None;
                    this.conn = None;
                    this.remaining = 0;
                    return Poll::Ready(Some(Err(ClientError::Body {
                        url: this.url.clone(),
                        received: this.received,
                        message: conn::describe(&e),
                    })));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let Ok(mut data) = frame.into_data() else {
                continue; // trailers
            };
            if this.skip > 0 {
                let n = this.skip.min(data.len() as u64);
                this.skip -= n;
                data = data.slice(n as usize..);
            }
            if data.is_empty() {
                continue;
            }
            let n = data.len() as u64;
            if n > this.remaining {
                this.body = None;
                this.conn = None;
                this.remaining = 0;
                return Poll::Ready(Some(Err(ClientError::TooLong {
                    url: this.url.clone(),
                    size: this.size,
                })));
            }
            this.remaining -= n;
            this.received += n;
            return Poll::Ready(Some(Ok(data)));
        }
    }
}

impl RegistryClient {
    /// A client with this configuration, on the system clock.
    #[must_use]
    pub fn new(config: ClientConfig) -> RegistryClient {
        RegistryClient::with_clock(config, Box::new(SystemClock))
    }

    /// A client reading time (for token lifetimes) from `clock`.
    #[must_use]
    pub fn with_clock(config: ClientConfig, clock: Box<dyn Clock>) -> RegistryClient {
        let pool = Arc::new(Pool::new(
            config.max_idle_per_host,
            config.connect_timeout,
            config.user_agent.clone(),
        ));
        RegistryClient {
            inner: Arc::new(Inner {
                config,
                pool,
                auth: Mutex::new(HashMap::new()),
                clock,
            }),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Idle keep-alive connections held for `host:port` (`127.0.0.1:5000`).
    #[must_use]
    pub fn idle_connections(&self, host_port: &str) -> usize {
        self.inner.pool.idle_count(host_port)
    }

    /// Resolves `reference` to its root descriptor (index or manifest): media type, digest
    /// and size, as the registry serves them for its tag (or digest).
    pub async fn resolve(&self, reference: &Reference) -> Result<Descriptor, ClientError> {
        let ctx = self.context(reference)?;
        match self.run(Operation::resolve(ctx, reference), None).await? {
            (Outcome::Resolved(desc), _) => Ok(*desc),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Streams the content of `desc` (a manifest, index, config or layer of `reference`'s
    /// repository) from byte `offset` to its end. The caller checks the digest of what it
    /// assembles; the stream checks the size.
    pub async fn fetch(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        offset: u64,
    ) -> Result<BlobStream, ClientError> {
        let ctx = self.context(reference)?;
        let op = Operation::fetch(ctx, reference, desc, offset);
        let pool = self.inner.pool.clone();
        match self.run(op, None).await? {
            (Outcome::Empty, _) => Ok(BlobStream::empty(pool)),
            (Outcome::Body { start, .. }, Some(last)) => Ok(BlobStream {
                body: Some(last.response.into_body()),
                conn: Some(last.conn),
                pool,
                skip: offset.saturating_sub(start),
                remaining: desc.size - offset,
                size: desc.size,
                received: 0,
                url: format!("{}@{}", reference.name(), desc.digest),
            }),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Pushes the blob `desc` to `reference`'s repository, reading its bytes from `source`.
    /// Nothing is uploaded if the repository has it already; with `mount_from` (another
    /// repository of the same registry holding it) a cross-repository mount is tried first.
    /// Blobs larger than [`ClientConfig::chunk_size`] go up in chunks.
    pub async fn push_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        source: Arc<dyn BlobSource>,
        mount_from: Option<&str>,
    ) -> Result<Pushed, ClientError> {
        let ctx = self.context(reference)?;
        let op = Operation::push_blob(
            ctx,
            reference,
            desc,
            mount_from,
            self.inner.config.chunk_size,
        );
        match self.run(op, Some(&source)).await? {
            (Outcome::BlobPushed(p), _) => Ok(p),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Pushes the manifest or index `bytes` (described by `desc`) under `reference`'s tag, or
    /// under its digest when the reference has no tag. Every blob it refers to must be in the
    /// repository already.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        bytes: Bytes,
    ) -> Result<(), ClientError> {
        let ctx = self.context(reference)?;
        match self
            .run(Operation::push_manifest(ctx, reference, desc, bytes), None)
            .await?
        {
            (Outcome::ManifestPushed { .. }, _) => Ok(()),
            (other, _) => Err(unexpected(other)),
        }
    }

    fn context(&self, reference: &Reference) -> Result<Context, ClientError> {
        let config = &self.inner.config;
        let endpoint = config
            .hosts
            .endpoint(reference.domain())
            .map_err(|source| ClientError::Endpoint {
                domain: reference.domain().to_owned(),
                source,
            })?;
        if endpoint.scheme() == Scheme::Https {
            return Err(ClientError::HttpsUnsupported {
                url: endpoint.base().to_string(),
            });
        }
        let credentials = config
            .credentials
            .get(reference.domain())
            .or_else(|| config.credentials.get(endpoint.host()))
            .cloned();
        let auth = self
            .inner
            .auth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(endpoint.host())
            .cloned()
            .unwrap_or_default();
        Ok(Context {
            endpoint,
            credentials,
            auth,
            now: self.now(),
            policy: config.policy.clone(),
        })
    }

    fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    /// Drives `op` to its end. Returns the outcome and, for `Outcome::Body`, the response
    /// whose body is the content.
    async fn run(
        &self,
        mut op: Operation,
        source: Option<&Arc<dyn BlobSource>>,
    ) -> Result<(Outcome, Option<Last>), ClientError> {
        let host = op_host(&op);
        let mut last: Option<Last> = None;
        loop {
            let Some(output) = op.poll() else {
                return Err(ClientError::Machine(InputError {
                    input: "poll",
                    state: "went quiet before Done",
                }));
            };
            match output {
                Output::Request(req) => {
                    if let Some(l) = last.take() {
                        self.discard(l).await;
                    }
                    if req.url.scheme() == Scheme::Https {
                        self.keep_auth(&host, &op);
                        return Err(ClientError::HttpsUnsupported {
                            url: format!("https://{}{}", req.url.authority(), req.url.path()),
                        });
                    }
                    match self.inner.pool.send(&req, source).await {
                        Ok((response, conn)) => {
                            let head = Response {
                                status: response.status().as_u16(),
                                headers: response
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.as_str().to_owned(),
                                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                        )
                                    })
                                    .collect(),
                            };
                            log::debug!("{} {} → {}", req.method, req.url.authority(), head.status);
                            last = Some(Last {
                                response,
                                conn,
                                method: req.method,
                            });
                            op.handle(Input::Response(head))?;
                        }
                        Err(SendError::Transport(message)) => {
                            log::debug!("{} {}: {message}", req.method, req.url.authority());
                            op.handle(Input::Failed { message })?;
                        }
                        Err(SendError::Source(e)) => {
                            self.keep_auth(&host, &op);
                            return Err(ClientError::Source(e));
                        }
                        Err(SendError::NoSource) => {
                            self.keep_auth(&host, &op);
                            return Err(ClientError::Source(io::Error::new(
                                io::ErrorKind::InvalidInput,
                                "the upload needs blob bytes but no source was given",
                            )));
                        }
                    }
                }
                Output::ReadBody { .. } => {
                    let Some(l) = last.take() else {
                        return Err(ClientError::Machine(InputError {
                            input: "ReadBody",
                            state: "no response to read",
                        }));
                    };
                    let Last { response, conn, .. } = l;
                    let mut body = response.into_body();
                    loop {
                        match body.frame().await {
                            Some(Ok(frame)) => {
                                if let Ok(data) = frame.into_data() {
                                    op.handle(Input::Body(data))?;
                                    if op.is_done() {
                                        break; // over the limit: the connection is dropped
                                    }
                                }
                            }
                            Some(Err(e)) => {
                                op.handle(Input::Failed {
                                    message: conn::describe(&e),
                                })?;
                                break;
                            }
                            None => {
                                self.inner.pool.checkin(conn);
                                op.handle(Input::BodyEnd)?;
                                break;
                            }
                        }
                    }
                }
                Output::Sleep(delay) => {
                    if let Some(l) = last.take() {
                        self.discard(l).await;
                    }
                    smol::Timer::after(delay).await;
                    op.handle(Input::Wake)?;
                }
                Output::Done(result) => {
                    self.keep_auth(&host, &op);
                    return match result {
                        Ok(outcome @ Outcome::Body { .. }) => Ok((outcome, last)),
                        Ok(outcome) => {
                            if let Some(l) = last.take() {
                                self.discard(l).await;
                            }
                            Ok((outcome, None))
                        }
                        Err(e) => Err(e.into()),
                    };
                }
            }
        }
    }

    /// Stores what the operation learnt about the host's authentication.
    fn keep_auth(&self, host: &str, op: &Operation) {
        let now = self.now();
        let mut all = self.inner.auth.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(host.to_owned())
            .or_default()
            .merge(op.auth(), now);
    }

    /// Reads a small unread body to its end so the connection can be reused; drops the
    /// connection when the body is large or broken.
    async fn discard(&self, l: Last) {
        let Last {
            response,
            conn,
            method,
        } = l;
        let status = response.status().as_u16();
        let no_body = method == Method::Head
            || matches!(status, 204 | 304)
            || response.body().is_end_stream();
        if no_body {
            self.inner.pool.checkin(conn);
            return;
        }
        let small = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n <= 64 << 10);
        if small && drain(&mut response.into_body(), 64 << 10).await {
            self.inner.pool.checkin(conn);
        }
    }
}

/// The host key of an operation's auth cache: its endpoint's `host[:port]`.
fn op_host(op: &Operation) -> String {
    op.endpoint().host().to_owned()
}

fn unexpected(outcome: Outcome) -> ClientError {
    ClientError::Machine(InputError {
        input: match outcome {
            Outcome::Resolved(_) => "Resolved",
            Outcome::Body { .. } => "Body",
            Outcome::Empty => "Empty",
            Outcome::BlobPushed(_) => "BlobPushed",
            Outcome::ManifestPushed { .. } => "ManifestPushed",
            _ => "outcome",
        },
        state: "an outcome another operation gives",
    })
}
