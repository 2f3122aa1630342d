//! gRPC over hyper's HTTP/2 on smol: a router for the daemon and a channel for clients, on a
//! UNIX socket. No tokio runtime runs; tonic provides only codegen and the codec.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::Incoming;
use smol::Async;
use smol_hyper::rt::SmolTimer;
use tonic::body::Body;
use tonic::server::NamedService;
use tower_service::Service;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type Handler =
    Box<dyn Fn(http::Request<Incoming>) -> BoxFuture<http::Response<Body>> + Send + Sync>;

/// Spawns hyper's background tasks on smol's global executor.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalExecutor;

impl<F> hyper::rt::Executor<F> for GlobalExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        smol::spawn(fut).detach();
    }
}

thread_local! {
    /// The executor of [`block_on_local`]: tasks spawned on it run on the thread that drives it.
    static LOCAL: smol::LocalExecutor<'static> = const { smol::LocalExecutor::new() };
}

/// Spawns hyper's background tasks on the current thread's local executor, which
/// [`block_on_local`] drives: a short-lived client (a CLI) then moves every request and reply
/// without waking another thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalExecutor;

impl<F> hyper::rt::Executor<F> for LocalExecutor
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        LOCAL.with(|ex| ex.spawn(fut).detach());
    }
}

/// Runs `fut` to completion on this thread together with the tasks spawned by
/// [`LocalExecutor`] (the connections made with [`connect_local`]).
pub fn block_on_local<T>(fut: impl Future<Output = T>) -> T {
    LOCAL.with(|ex| smol::block_on(ex.run(fut)))
}

/// HTTP/2 flow-control window per stream: large enough for 1 MiB content writes in flight.
pub const STREAM_WINDOW: u32 = 1 << 20;
/// HTTP/2 flow-control window per connection.
pub const CONNECTION_WINDOW: u32 = 4 << 20;

/// Routes `/<service>/<method>` to the generated tonic servers.
#[derive(Default)]
pub struct Router {
    services: HashMap<&'static str, Handler>,
    done: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a generated server (e.g. `ContentServer::new(svc)`).
    #[must_use]
    pub fn service<S>(mut self, svc: S) -> Self
    where
        S: Service<http::Request<Incoming>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let handler: Handler = Box::new(move |req| {
            let mut svc = svc.clone();
            Box::pin(async move {
                match svc.call(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            })
        });
        self.services.insert(S::NAME, handler);
        self
    }

    /// Calls `f` each time a request has been answered (its response headers are ready; a
    /// streamed body may still be flowing) and each time a client's connection has ended: the
    /// moments after which the server may have freed what a request used.
    #[must_use]
    pub fn on_done(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.done = Some(Arc::new(f));
        self
    }

    /// Dispatches one request; an unknown service answers `Unimplemented`.
    pub fn call(&self, req: http::Request<Incoming>) -> BoxFuture<http::Response<Body>> {
        let fut = self.dispatch(req);
        match &self.done {
            None => fut,
            Some(f) => {
                let f = f.clone();
                Box::pin(async move {
                    let resp = fut.await;
                    f();
                    resp
                })
            }
        }
    }

    fn dispatch(&self, req: http::Request<Incoming>) -> BoxFuture<http::Response<Body>> {
        let service = req
            .uri()
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        match self.services.get(service) {
            Some(h) if log::log_enabled!(log::Level::Trace) => {
                let (path, started) = (req.uri().path().to_string(), std::time::Instant::now());
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let fut = h(req);
                Box::pin(async move {
                    let resp = fut.await;
                    log::trace!(
                        "{path}: at {}.{:06} answered in {:?}",
                        at.as_secs(),
                        at.subsec_micros(),
                        started.elapsed()
                    );
                    resp
                })
            }
            Some(h) => h(req),
            None => {
                let status = tonic::Status::unimplemented(format!("unknown service {service}"));
                Box::pin(std::future::ready(status.into_http()))
            }
        }
    }
}

/// Serves `router` on `listener` until an accept fails fatally. Each connection runs as its own
/// task on smol's global executor.
pub async fn serve(listener: Async<UnixListener>, router: Arc<Router>) -> io::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(24 /* EMFILE */) | Some(23 /* ENFILE */)
                ) =>
            {
                log::warn!("accept: {e}; retrying shortly");
                smol::Timer::after(std::time::Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let (router, done) = (router.clone(), router.done.clone());
        smol::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let fut = router.call(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let conn = hyper::server::conn::http2::Builder::new(GlobalExecutor)
                .timer(SmolTimer::new())
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_frame_size(1 << 20)
                .max_send_buf_size(1 << 20)
                .serve_connection(SocketIo::new(stream), svc);
            if let Err(e) = conn.await {
                // clients such as ctr hang up without GOAWAY: that is normal
                log::debug!("connection ended: {e}");
            }
            if let Some(f) = done {
                f();
            }
        })
        .detach();
    }
}

/// A gRPC channel over one HTTP/2 connection on a UNIX socket, usable with every generated
/// client (`XClient::with_origin(channel, origin())`).
#[derive(Clone)]
pub struct Channel {
    send: hyper::client::conn::http2::SendRequest<Body>,
}

/// The origin URI clients use (`http://localhost`, as grpc-go does for UNIX sockets).
pub fn origin() -> http::Uri {
    http::Uri::from_static("http://localhost")
}

/// Connects to the daemon socket at `path`; the connection runs on smol's global executor.
pub async fn connect(path: &Path) -> io::Result<Channel> {
    connect_on(path, GlobalExecutor).await
}

/// Connects to the daemon socket at `path`; the connection runs on this thread's
/// [`LocalExecutor`], so the caller must be inside [`block_on_local`] whenever it waits for a
/// reply. Fewest thread wake-ups per call; for clients whose calls are short.
pub async fn connect_local(path: &Path) -> io::Result<Channel> {
    connect_on(path, LocalExecutor).await
}

async fn connect_on<E>(path: &Path, exec: E) -> io::Result<Channel>
where
    E: hyper::rt::Executor<BoxFuture<()>>
        + hyper::rt::bounds::Http2ClientConnExec<Body, SocketIo>
        + Unpin
        + Clone
        + Send
        + Sync
        + 'static,
{
    let stream = Async::<UnixStream>::connect(path).await?;
    let (send, conn) = hyper::client::conn::http2::Builder::new(exec.clone())
        .timer(SmolTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(1 << 20)
        .handshake(SocketIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    exec.execute(Box::pin(async move {
        if let Err(e) = conn.await {
            log::debug!("client connection ended: {e}");
        }
    }));
    Ok(Channel { send })
}

impl Service<http::Request<Body>> for Channel {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let fut = self.send.send_request(req);
        Box::pin(fut)
    }
}

/// Bytes read from the socket per syscall.
const READ_CHUNK: usize = 256 << 10;

/// A UNIX socket as hyper IO. Reads land in an initialised buffer of [`READ_CHUNK`] bytes and
/// reach hyper through the safe `put_slice`: one `recv` per 256 KiB instead of one per 8 KiB
/// (hyper's read size), and no zeroing of hyper's uninitialised buffer on every read.
pub struct SocketIo {
    inner: Async<UnixStream>,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl SocketIo {
    /// Wraps a connected socket.
    pub fn new(inner: Async<UnixStream>) -> Self {
        SocketIo {
            inner,
            buf: vec![0u8; READ_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }
}

impl hyper::rt::Read for SocketIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut cursor: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        use futures_lite::AsyncRead;
        let this = self.get_mut();
        if this.start == this.end {
            match Pin::new(&mut this.inner).poll_read(cx, &mut this.buf) {
                Poll::Ready(Ok(n)) => {
                    this.start = 0;
                    this.end = n;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = cursor.remaining().min(this.end - this.start);
        cursor.put_slice(&this.buf[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for SocketIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        use futures_lite::AsyncWrite;
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        use futures_lite::AsyncWrite;
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        use futures_lite::AsyncWrite;
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        use futures_lite::AsyncWrite;
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
