//! HTTP/1.1 connections to registries: hyper's client over smol's `TcpStream`, kept alive and
//! reused per host.
//!
//! A connection goes back to the pool only once its last response body has been read to the
//! end; one whose body was abandoned is dropped (and closed). A request that fails on a reused
//! connection before any response (the server closed it while idle) is sent once more on a
//! fresh one; bodies can be re-created from the request, so this is always possible.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::registry::{Method, Request, RequestBody, Url};
use bytes::Bytes;
use futures_lite::{future, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use smol_hyper::rt::FuturesIo;

use super::BlobSource;

/// The request body type every pooled connection carries.
pub(super) type ReqBody = UnsyncBoxBody<Bytes, io::Error>;

/// Why a request got no response.
#[derive(Debug)]
pub(super) enum SendError {
    /// Connecting or exchanging failed: the machine may retry.
    Transport(String),
    /// Reading the blob to upload failed.
    Source(io::Error),
    /// A request body refers to a blob but none was given (a bug in the caller).
    NoSource,
}

/// One HTTP/1.1 connection.
pub(super) struct Conn {
    sender: SendRequest<ReqBody>,
    key: String,
    reused: bool,
}

/// Idle connections by `host:port`.
pub(super) struct Pool {
    idle: Mutex<HashMap<String, Vec<SendRequest<ReqBody>>>>,
    max_idle_per_host: usize,
    connect_timeout: Duration,
    user_agent: String,
}

impl Pool {
    pub(super) fn new(
        max_idle_per_host: usize,
        connect_timeout: Duration,
        user_agent: String,
    ) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            max_idle_per_host,
            connect_timeout,
            user_agent,
        }
    }

    /// Returns a connection whose last response has been read to the end.
    pub(super) fn checkin(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(conn.key).or_default();
        if list.len() < self.max_idle_per_host {
            list.push(conn.sender);
        }
    }

    /// How many idle connections the pool holds for `host:port` (for tests and metrics).
    pub(super) fn idle_count(&self, key: &str) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get(key).map_or(0, Vec::len)
    }

    async fn checkout(&self, url: &Url, fresh: bool) -> Result<Conn, SendError> {
        let key = pool_key(url);
        if !fresh {
            loop {
                let candidate = {
                    let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                    idle.get_mut(&key).and_then(Vec::pop)
                };
                let Some(mut sender) = candidate else {
                    break;
                };
                if sender.is_closed() {
                    continue;
                }
                if sender.ready().await.is_ok() {
                    return Ok(Conn {
                        sender,
                        key,
                        reused: true,
                    });
                }
            }
        }
        self.connect(url, key).await
    }

    async fn connect(&self, url: &Url, key: String) -> Result<Conn, SendError> {
        let host = url.host().trim_start_matches('[').trim_end_matches(']');
        let port = url.port();
        let timeout = self.connect_timeout;
        let tcp = future::or(
            async {
                smol::net::TcpStream::connect((host, port))
                    .await
                    .map_err(|e| SendError::Transport(format!("connect to {key}: {e}")))
            },
            async {
                smol::Timer::after(timeout).await;
                Err(SendError::Transport(format!(
                    "connect to {key}: timed out after {timeout:?}"
                )))
            },
        )
        .await?;
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(FuturesIo::new(tcp))
            .await
            .map_err(|e| SendError::Transport(format!("HTTP handshake with {key}: {e}")))?;
        let name = key.clone();
        smol::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("registry connection to {name} ended: {e}");
            }
        })
        .detach();
        Ok(Conn {
            sender,
            key,
            reused: false,
        })
    }

    /// Sends `req`, reading `RequestBody::Blob` bodies from `source`. Returns the response
    /// head (its body unread) and the connection it came on.
    pub(super) async fn send(
        &self,
        req: &Request,
        source: Option<&Arc<dyn BlobSource>>,
    ) -> Result<(http::Response<Incoming>, Conn), SendError> {
        for attempt in 0..2 {
            let mut conn = self.checkout(&req.url, attempt > 0).await?;
            let failed_read = Arc::new(Mutex::new(None));
            let request = self.build(req, source, &failed_read)?;
            match conn.sender.send_request(request).await {
                Ok(resp) => return Ok((resp, conn)),
                Err(e) => {
                    if let Some(e) = failed_read.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        return Err(SendError::Source(e));
                    }
                    if conn.reused && attempt == 0 {
                        log::debug!(
                            "{} {}: reused connection failed ({e}), retrying on a new one",
                            req.method,
                            req.url.authority()
                        );
                        continue;
                    }
                    return Err(SendError::Transport(describe(&e)));
                }
            }
        }
        Err(SendError::Transport(
            "unreachable: two attempts made".into(),
        ))
    }

    fn build(
        &self,
        req: &Request,
        source: Option<&Arc<dyn BlobSource>>,
        failed_read: &Arc<Mutex<Option<io::Error>>>,
    ) -> Result<http::Request<ReqBody>, SendError> {
        let method = match req.method {
            Method::Get => http::Method::GET,
            Method::Head => http::Method::HEAD,
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
            Method::Patch => http::Method::PATCH,
            other => {
                return Err(SendError::Transport(format!(
                    "method {other} is not supported"
                )))
            }
        };
        let mut b = http::Request::builder()
            .method(method)
            .uri(req.url.path_and_query())
            .header(http::header::HOST, req.url.authority())
            .header(http::header::USER_AGENT, &self.user_agent);
        for (k, v) in &req.headers {
            b = b.header(*k, v.as_str());
        }
        let body: ReqBody = match &req.body {
            RequestBody::Empty => Empty::new().map_err(|n| match n {}).boxed_unsync(),
            RequestBody::Bytes(bytes) => Full::new(bytes.clone())
                .map_err(|n| match n {})
                .boxed_unsync(),
            RequestBody::Blob { offset, len } => {
                let source = source.ok_or(SendError::NoSource)?;
                let slot = failed_read.clone();
                let stream = source.read(*offset, *len).map(move |r| match r {
                    Ok(b) => Ok(Frame::data(b)),
                    Err(e) => {
                        let copy = io::Error::new(e.kind(), e.to_string());
                        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        Err(copy)
                    }
                });
                StreamBody::new(stream).boxed_unsync()
            }
        };
        b.body(body)
            .map_err(|e| SendError::Transport(format!("invalid request: {e}")))
    }
}

/// `host:port` of a URL: the pool key and the name in messages.
pub(super) fn pool_key(url: &Url) -> String {
    format!("{}:{}", url.host().to_ascii_lowercase(), url.port())
}

/// An error with its causes: hyper's own messages are terse ("connection error").
pub(super) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Reads a body to its end (at most `limit` bytes), for connection reuse. True if it ended.
pub(super) async fn drain(body: &mut Incoming, limit: u64) -> bool {
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    seen += d.len() as u64;
                    if seen > limit {
                        return false;
                    }
                }
            }
            Err(_) => return false,
        }
    }
    true
}
