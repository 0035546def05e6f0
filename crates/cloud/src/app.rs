//! Builds the whole cloud from a [`Config`] and runs it until shutdown.

use crate::bus::{Bus, LocalBus, NatsBus};
use crate::config::Config;
use crate::device_gateway::connections::Connections;
use crate::device_gateway::{self, Gateway};
use crate::engine::Engine;
use crate::metrics::{self, MeteredStore, Metrics};
use crate::pos_api::callbacks::Dispatcher;
use crate::pos_api::{self, error::not_found, ApiSettings, ApiState};
use crate::store::{self, StoreError};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Uri;
use axum::routing::{get, post, put};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer;
use tower_http::cors::CorsLayer;
use url::Url;

/// How long shutdown waits for connection tasks to finish closing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the cloud could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Nats(#[from] crate::bus::nats::NatsError),
}

/// A built cloud, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    public_url: Url,
    engine: Engine,
    connections: Arc<Connections>,
    router: Router,
    callbacks: Dispatcher,
    nats: Option<Arc<NatsBus>>,
    /// The separate `/metrics` listener, when one is configured.
    metrics_listener: Option<TcpListener>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Application {
    /// Opens the store, binds the port (0 picks one) and wires the parts together.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn store::Store> = Arc::new(MeteredStore::new(
            store::open(&config.database_url).await?,
            metrics.clone(),
        ));
        // Connections recorded by a previous run of this node died with it.
        store.clear_connections(&config.gateway.node).await?;
        let connections = Arc::new(Connections::default());
        {
            let connections = connections.clone();
            metrics.count_devices_with(Arc::new(move || connections.count()));
        }
        // One node: frames go straight to this process's connections. A cluster: NATS routes
        // them to the node holding the device.
        let (bus, nats): (Arc<dyn Bus>, Option<Arc<NatsBus>>) = match &config.nats_url {
            Some(url) => {
                let nats = Arc::new(
                    NatsBus::connect(url, &config.gateway.node, connections.clone()).await?,
                );
                (nats.clone(), Some(nats))
            }
            None => (Arc::new(LocalBus::new(connections.clone())), None),
        };
        let engine = Engine::with_metrics(store, bus, config.engine.clone(), metrics.clone());

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| BuildError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| BuildError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| BuildError::Bind { addr, source })?,
            ),
            None => None,
        };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| default_public_url(local_addr));

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let api = ApiState::new(
            engine.clone(),
            ApiSettings {
                public_url: public_url.clone(),
                poll_interval_min: config.poll_interval_min,
                sync_timeout: config.sync_timeout,
                limits: config.api_limits.clone(),
            },
            shutdown.clone(),
        );
        let gateway = Gateway {
            engine: engine.clone(),
            connections: connections.clone(),
            settings: config.gateway.clone(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        };
        let web = crate::web::WebState::new(
            engine.clone(),
            config.virtual_terminals,
            config.admin_token.as_deref(),
            shutdown.clone(),
        );
        // Without its own listener, /metrics is one more route of the main one.
        let metrics_here = config.metrics_listen.is_none().then(|| metrics.clone());
        let keys = Arc::new(config.pos_api_keys.clone());
        let router = routes(api, gateway, web, metrics.clone(), metrics_here, keys);
        let callbacks =
            Dispatcher::new(engine.clone(), config.callbacks.clone(), public_url.clone()).await?;
        Ok(Self {
            listener,
            local_addr,
            public_url,
            engine,
            connections,
            router,
            callbacks,
            nats,
            metrics_listener,
            metrics,
            shutdown,
            tasks,
        })
    }

    /// The address of the separate `/metrics` listener, when one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The metrics of this cloud.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base written into polling URLs.
    pub fn public_url(&self) -> &Url {
        &self.public_url
    }

    /// The engine (for admin commands and tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until `stop` is cancelled, then closes device connections ("going away"),
    /// releases held requests and waits for every task to end.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> std::io::Result<()> {
        let Self {
            listener,
            engine,
            router,
            shutdown,
            tasks,
            connections,
            callbacks,
            nats,
            metrics_listener,
            metrics,
            ..
        } = self;
        if let Some(listener) = metrics_listener {
            let app = Router::new()
                .route("/metrics", get(metrics::serve))
                .with_state(metrics);
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let stopped = shutdown.clone();
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stopped.cancelled().await })
                    .await
                {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
        }
        if let Some(nats) = nats {
            tasks.spawn(nats.run_completions(engine.clone(), shutdown.clone()));
        }
        tasks.spawn(callbacks.run(shutdown.clone()));
        tasks.spawn(engine.clone().run_deadlines(shutdown.clone()));
        tasks.spawn(engine.run_retention(shutdown.clone()));
        // Paths are matched case-insensitively (`/POS/Transaction` and `/pos/transaction`), so
        // the path is folded before routing: this layer wraps the router, not its routes.
        let app = axum::middleware::map_request(fold_path).layer(router);
        let serve_shutdown = {
            let shutdown = shutdown.clone();
            async move {
                stop.cancelled().await;
                shutdown.cancel();
            }
        };
        // Small request/response frames: with Nagle's algorithm a frame written while the
        // previous one is unacknowledged waits for the peer's delayed ACK (~40 ms on Linux).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let result = axum::serve(
            listener,
            // The peer address feeds the pairing brute-force guard (`ConnectInfo`).
            axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app),
        )
        .with_graceful_shutdown(serve_shutdown)
        .await;
        shutdown.cancel();
        tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = connections.count(),
                "shutdown grace period over with tasks still running"
            );
        }
        result
    }
}

fn default_public_url(addr: SocketAddr) -> Url {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    // A socket address always forms a valid http URL.
    Url::parse(&format!("http://{host}")).unwrap_or_else(|_| {
        #[allow(clippy::expect_used)]
        Url::parse("http://127.0.0.1").expect("literal URL is valid")
    })
}

/// `/readyz`: ready when the store answers (migrations ran at start-up, or the node would not
/// be serving); 503 with the reason otherwise, so a load balancer stops sending traffic.
async fn readyz(
    axum::extract::State(engine): axum::extract::State<Engine>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match engine.store().ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => {
            pos_api::error::ApiError::unavailable(format!("store unavailable: {e}")).into_response()
        }
    }
}

fn routes(
    api: ApiState,
    gateway: Gateway,
    web: crate::web::WebState,
    metrics: Arc<Metrics>,
    metrics_route: Option<Arc<Metrics>>,
    api_keys: Arc<pos_api::api_keys::ApiKeys>,
) -> Router {
    let max_body = api.settings.limits.max_body_bytes;
    let ready = api.engine.clone();
    let pos = Router::new()
        .route(
            "/pos/pairing/{code}",
            put(pos_api::pairing::pair).fallback(not_found),
        )
        .route(
            "/pos/transaction",
            post(pos_api::transaction::create).fallback(not_found),
        )
        .route(
            "/pos/transaction/{id}",
            get(pos_api::polling::poll).fallback(not_found),
        )
        .route(
            "/pos/transaction/{id}/cancel",
            post(pos_api::cancel::cancel).fallback(not_found),
        )
        .route(
            "/pos/transaction/{id}/events",
            get(pos_api::timeline::events).fallback(not_found),
        )
        .route(
            "/pos/lookup",
            get(pos_api::lookup::lookup).fallback(not_found),
        )
        .route(
            "/pos/register",
            get(pos_api::register_status::status).fallback(not_found),
        )
        // POS API keys (when configured) guard the routes above; the API description stays public.
        .route_layer(axum::middleware::from_fn_with_state(
            api_keys,
            pos_api::api_keys::require_key,
        ))
        .route(
            "/openapi.json",
            get(pos_api::openapi::serve).fallback(not_found),
        )
        .with_state(api);
    let devices = Router::new()
        .route(protocol::device::PATH, get(device_gateway::upgrade))
        .with_state(gateway);
    let mut router = Router::new();
    if let Some(m) = metrics_route {
        router = router.route("/metrics", get(metrics::serve).with_state(m));
    }
    router
        .merge(pos)
        .merge(devices)
        .merge(crate::web::routes(web))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz).with_state(ready))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::Extension(pos_api::fields::BodyLimit(max_body)))
        // Browser-based POS software calls the API cross-origin; preflights are answered here.
        .layer(CorsLayer::permissive())
        // Outermost, so every error answer is counted, whichever layer or handler made it.
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::count_rejections,
        ))
}

/// Lower-cases the path (not the query: the token is case-sensitive) and drops a trailing slash.
async fn fold_path(mut req: Request) -> Request {
    let uri = req.uri();
    let path = uri.path();
    let folded = path.to_ascii_lowercase();
    let folded = match folded.strip_suffix('/') {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => folded,
    };
    if folded != path {
        let pq = match uri.query() {
            Some(q) => format!("{folded}?{q}"),
            None => folded,
        };
        let mut parts = uri.clone().into_parts();
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(new) = Uri::from_parts(parts) {
                *req.uri_mut() = new;
            }
        }
    }
    req
}
