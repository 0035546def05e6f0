//! A TCP proxy between a terminal agent and the cloud that breaks the link on command.
//!
//! * `cut` closes every current connection, both directions at once (new ones go through);
//! * `stall` stops forwarding bytes on every current connection but keeps both sockets open,
//!   a half-open link: even a close by one side is held back (new connections go through);
//! * `blackhole` accepts new connections and never forwards them (no upstream is dialled);
//! * `refuse` closes every new connection at once, as a server that is down or restarting;
//! * `resume` forwards stalled connections again and closes blackholed ones, so a client
//!   waiting on a handshake that will never finish retries at once.
//!
//! Every task is owned by the proxy and aborted when it is dropped; each direction of a
//! connection holds one fixed buffer, so a stalled link holds at most that much.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Bytes one direction of one connection may hold while stalled.
const BUFFER: usize = 16 * 1024;

/// Counters, for assertions and the soak's figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted from clients.
    pub accepted: u64,
    /// Connections accepted while blackholed (never forwarded).
    pub blackholed: u64,
    /// Connections closed by `cut` or `resume` (blackholed ones).
    pub cut: u64,
}

struct Conn {
    cut: CancellationToken,
    stall: watch::Sender<bool>,
    blackholed: bool,
}

#[derive(Default)]
struct Shared {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    blackhole: bool,
    refuse: bool,
    stats: ProxyStats,
}

/// Removes a connection from the table when its task ends, however it ends.
struct Registered {
    shared: Arc<Mutex<Shared>>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.shared).conns.remove(&self.id);
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running proxy.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// `http://<addr>`, the base URL to give a terminal agent.
    pub base: String,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let task = tokio::spawn(accept_loop(listener, upstream, shared.clone()));
        Proxy {
            addr,
            base: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// Closes every current connection, both directions at once. Returns how many.
    pub fn cut(&self) -> usize {
        let mut s = lock(&self.shared);
        let n = s.conns.len();
        for c in s.conns.values() {
            c.cut.cancel();
        }
        s.stats.cut += n as u64;
        n
    }

    /// Stops forwarding on every current connection, keeping the sockets open. Returns how many.
    pub fn stall(&self) -> usize {
        let s = lock(&self.shared);
        let mut n = 0;
        for c in s.conns.values().filter(|c| !c.blackholed) {
            c.stall.send_replace(true);
            n += 1;
        }
        n
    }

    /// New connections are accepted and held, never forwarded, until `resume` or `cut`.
    pub fn blackhole(&self) {
        lock(&self.shared).blackhole = true;
    }

    /// New connections are closed at once (the server is down), until `resume`.
    pub fn refuse(&self) {
        lock(&self.shared).refuse = true;
    }

    /// Back to normal: stalled connections flow again (with what they held back), blackholed
    /// ones are closed, new ones are forwarded.
    pub fn resume(&self) {
        let mut s = lock(&self.shared);
        s.blackhole = false;
        s.refuse = false;
        let mut closed = 0;
        for c in s.conns.values() {
            if c.blackholed {
                c.cut.cancel();
                closed += 1;
            } else {
                c.stall.send_replace(false);
            }
        }
        s.stats.cut += closed;
    }

    /// Connections currently open (forwarding, stalled or blackholed).
    pub fn open_connections(&self) -> usize {
        lock(&self.shared).conns.len()
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        lock(&self.shared).stats
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it ends them all.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Mutex<Shared>>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                if lock(&shared).refuse {
                    drop(client);
                    continue;
                }
                let _ = client.set_nodelay(true);
                let (cut, stall_rx, blackholed, reg) = {
                    let mut s = lock(&shared);
                    let id = s.next_id;
                    s.next_id += 1;
                    let blackholed = s.blackhole;
                    s.stats.accepted += 1;
                    if blackholed {
                        s.stats.blackholed += 1;
                    }
                    let cut = CancellationToken::new();
                    let (stall, stall_rx) = watch::channel(false);
                    s.conns.insert(id, Conn { cut: cut.clone(), stall, blackholed });
                    (cut, stall_rx, blackholed, Registered { shared: shared.clone(), id })
                };
                if blackholed {
                    conns.spawn(async move {
                        let _reg = reg;
                        cut.cancelled().await;
                        drop(client);
                    });
                } else {
                    conns.spawn(forward(client, upstream, cut, stall_rx, reg));
                }
            }
            // Reap finished connection tasks so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One proxied connection: dials upstream, then pumps both ways until either side closes
/// (held back while stalled) or the connection is cut. Returning drops both sockets at once.
async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    cut: CancellationToken,
    stall: watch::Receiver<bool>,
    _reg: Registered,
) {
    let server = tokio::select! {
        _ = cut.cancelled() => return,
        s = TcpStream::connect(upstream) => match s {
            Ok(s) => s,
            // The cloud is down: the client sees its connection closed, as without a proxy.
            Err(_) => return,
        },
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = pump(cr, sw, stall.clone()) => {}
        _ = pump(sr, cw, stall) => {}
    }
}

/// Copies one direction. Nothing is written while stalled, and an end of stream seen while
/// stalled is held back too (a half-open link does not carry FINs either).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut stall: watch::Receiver<bool>) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if stall.wait_for(|s| !*s).await.is_err() {
            // The proxy is gone.
            return;
        }
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
