//! The accept loop every listener runs: TCP with `TCP_NODELAY`, TLS when configured, HTTP/1.1
//! (and HTTP/2 with prior knowledge) through hyper with a header read timeout and a body read
//! timeout, WebSocket upgrades, the peer address as `ConnectInfo`, and graceful shutdown.
//!
//! axum's own `serve` cannot do TLS and configures hyper without a timer, so no header timeout
//! applies there; this is its equivalent with both.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};
use tower_http::timeout::TimeoutBody;

/// How one listener serves its connections.
#[derive(Clone)]
pub struct ServeSettings {
    /// TLS on every connection; none: plain HTTP.
    pub tls: Option<TlsAcceptor>,
    /// Longest time for a client to send a complete request header (and, with TLS, to finish
    /// the handshake): slow-loris clients are disconnected after it.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body; the read fails after it.
    pub body_read_timeout: Duration,
    /// After shutdown begins, how long open connections get to finish their requests.
    pub grace: Duration,
    /// Most connections open at once from one IP address; 0: no limit. Over it, a new
    /// connection is closed at once (before TLS or HTTP), so one source cannot exhaust the
    /// node's file descriptors.
    pub max_connections_per_source: usize,
}

/// Open connections per source address, for one listener.
#[derive(Default)]
struct PerSource {
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl PerSource {
    /// Takes a slot for `ip`, or `None` when it already has `max` connections open.
    fn acquire(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<SourceSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if max != 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            owner: self.clone(),
            ip,
        })
    }
}

/// A socket holding its source's slot, so the count follows the socket wherever it goes.
struct Counted {
    io: TcpStream,
    _slot: SourceSlot,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A connection's slot; given back when its socket is dropped, however the connection ends.
struct SourceSlot {
    owner: Arc<PerSource>,
    ip: std::net::IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// After `accept` fails for lack of resources (file descriptors), wait before trying again
/// instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` is cancelled; then stops accepting, lets open
/// connections finish within the grace period, and closes what is left. Every connection task
/// is owned here and ended before this returns.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    settings: ServeSettings,
    shutdown: CancellationToken,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let settings = Arc::new(settings);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let per_source = Arc::new(PerSource::default());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reap finished connections so the set stays as large as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Some(slot) = per_source.acquire(peer.ip(), settings.max_connections_per_source) else {
                        // Debug only: under a flood, a line per refusal would be its own attack.
                        tracing::debug!(%peer, "too many connections from this address; refused");
                        drop(tcp);
                        continue;
                    };
                    // The slot travels with the socket, also into an upgraded WebSocket, and is
                    // given back when the socket is dropped.
                    let tcp = Counted { io: tcp, _slot: slot };
                    // Small request/response frames: with Nagle's algorithm a frame written while
                    // the previous one is unacknowledged waits for the peer's delayed ACK.
                    if let Err(e) = tcp.io.set_nodelay(true) {
                        tracing::debug!(error = %e, "could not set TCP_NODELAY");
                    }
                    connections.spawn(connection(
                        tcp,
                        peer,
                        app.clone(),
                        settings.clone(),
                        graceful.watcher(),
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    // Per-connection errors (reset before accept) are nothing; others are
                    // resource exhaustion that passes.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    if tokio::time::timeout(settings.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
    connections.shutdown().await;
}

/// One connection: the TLS handshake if any, then HTTP until the peer or shutdown ends it.
async fn connection<S>(
    tcp: Counted,
    peer: SocketAddr,
    app: S,
    settings: Arc<ServeSettings>,
    watcher: Watcher,
    shutdown: CancellationToken,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    match &settings.tls {
        None => http(tcp, peer, app, &settings, watcher).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(settings.header_read_timeout, acceptor.accept(tcp));
            let tls = tokio::select! {
                _ = shutdown.cancelled() => return,
                done = handshake => done,
            };
            match tls {
                Ok(Ok(tls)) => http(tls, peer, app, &settings, watcher).await,
                // Port scanners and clients that do not trust the certificate end up here.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn http<I, S>(io: I, peer: SocketAddr, app: S, settings: &ServeSettings, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let body_timeout = settings.body_read_timeout;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut req = req.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
        // The peer address feeds the pairing brute-force guard.
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        // Resets, header timeouts, malformed requests: the peer's problem, not ours.
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
