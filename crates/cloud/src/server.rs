//! The accept loop every listener runs: TCP with `TCP_NODELAY` and keepalive, TLS when
//! configured, HTTP/1.1 (and HTTP/2 with prior knowledge) through hyper with a header read
//! timeout and a body read timeout, WebSocket upgrades, the peer address as `ConnectInfo`, and
//! graceful shutdown.
//!
//! No connection waits on its client without a bound:
//!
//! | state | bound |
//! |---|---|
//! | TLS handshake | `header_read_timeout` |
//! | from accept (or the end of the handshake) to the first complete request header, whatever the client sends or does not send (nothing, part of the HTTP/2 preface, a preface without a request) | `header_read_timeout` ([`http`]) |
//! | HTTP/1 keep-alive, between two requests | `header_read_timeout` (hyper restarts its header timer when the connection goes idle) |
//! | HTTP/2, no frame from the client | pinged after `header_read_timeout`, closed when the ping is not answered within `header_read_timeout` |
//! | a request body that stops arriving | `body_read_timeout` |
//! | a peer gone without FIN or RST | TCP keepalive, about two minutes ([`TCP_KEEPALIVE_IDLE`]) |
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
    /// Longest time for a client to send a complete request header, from the connection's
    /// start and between keep-alive requests (and, with TLS, to finish the handshake): slow-loris
    /// and silent clients are disconnected after it. Also the HTTP/2 ping interval and timeout.
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

/// TCP keepalive of accepted sockets: a peer that vanished without a FIN or RST (power cut, a NAT
/// or firewall that dropped the flow) is found after about IDLE + INTERVAL x RETRIES (two
/// minutes) and its socket closed. Linux leaves keepalive off, and its default idle time is two
/// hours, so such sockets otherwise stay until a write fails, and an idle one never writes.
pub const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between two keepalive probes once the first is unanswered.
pub const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes after which the kernel drops the connection.
pub const TCP_KEEPALIVE_RETRIES: u32 = 6;

/// Sets the options every accepted socket gets: `TCP_NODELAY` and keepalive. Failures are
/// logged and ignored: the connection works without them.
fn configure_socket(tcp: &TcpStream) {
    // Small request/response frames: with Nagle's algorithm a frame written while the previous
    // one is unacknowledged waits for the peer's delayed ACK.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE_IDLE);
    // The probe interval and count are per-socket options on these systems only; elsewhere
    // the system's own values apply.
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "macos"
    ))]
    let keepalive = keepalive
        .with_interval(TCP_KEEPALIVE_INTERVAL)
        .with_retries(TCP_KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "could not set TCP keepalive");
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
                    configure_socket(&tcp);
                    // The slot travels with the socket, also into an upgraded WebSocket, and is
                    // given back when the socket is dropped.
                    let tcp = Counted { io: tcp, _slot: slot };
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

/// HTTP on one connection until the peer, an error or shutdown ends it.
///
/// The first request must be complete (its header read) within `header_read_timeout` of the
/// connection being ready. hyper's own header timeout cannot see to that: hyper-util's
/// auto builder first reads until it can tell HTTP/1 from HTTP/2's preface, with no timeout,
/// so a client that sends nothing, or a part of the preface, would be held forever; and HTTP/2
/// has no header timeout at all.
async fn http<I, S>(io: I, peer: SocketAddr, app: S, settings: &ServeSettings, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let body_timeout = settings.body_read_timeout;
    // Cancelled when the first request reaches the service, which ends the deadline below.
    let first_request = CancellationToken::new();
    let served = first_request.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        // An atomic load on every later request; the lock inside `cancel` is taken once.
        if !served.is_cancelled() {
            served.cancel();
        }
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
    // HTTP/2 cannot close an idle connection the way HTTP/1 does: a long-lived stream (a long
    // poll, a WebSocket over extended CONNECT) leaves the connection quiet with work in
    // flight. A quiet one is pinged instead, and closed when its peer does not answer.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.header_read_timeout)
        .keep_alive_timeout(settings.header_read_timeout)
        .enable_connect_protocol();
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    let conn = watcher.watch(conn);
    tokio::pin!(conn);
    let ended = tokio::select! {
        biased;
        ended = &mut conn => ended,
        _ = first_request.cancelled() => conn.await,
        _ = tokio::time::sleep(settings.header_read_timeout) => {
            // Dropping the connection closes the socket. Debug only, as for the header timeout.
            tracing::debug!(%peer, "no complete request within the header read timeout; closed");
            return;
        }
    };
    if let Err(e) = ended {
        // Resets, header timeouts, malformed requests: the peer's problem, not ours.
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_get_nodelay_and_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (_client, (server, _)) = (client.unwrap(), accepted.unwrap());
        configure_socket(&server);
        let sock = socket2::SockRef::from(&server);
        assert!(server.nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        #[cfg(target_os = "linux")]
        {
            assert_eq!(sock.tcp_keepalive_time().unwrap(), TCP_KEEPALIVE_IDLE);
            assert_eq!(
                sock.tcp_keepalive_interval().unwrap(),
                TCP_KEEPALIVE_INTERVAL
            );
            assert_eq!(sock.tcp_keepalive_retries().unwrap(), TCP_KEEPALIVE_RETRIES);
        }
    }
}
