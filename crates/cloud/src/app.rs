//! Builds the whole cloud from a [`Config`] and runs it until shutdown.

use crate::bus::connections::Connections;
use crate::bus::{Bus, LocalBus, NatsBus};
use crate::config::Config;
use crate::device_gateway::{self, Gateway};
use crate::engine::queries::Unready;
use crate::engine::Engine;
use crate::health::{Health, PROBE_INTERVAL};
use crate::metrics::{self, Metrics};
use crate::pos_api::callbacks::Dispatcher;
use crate::pos_api::{self, error::not_found, ApiSettings, ApiState};
use crate::server::{self, ServeSettings};
use crate::store::{self, StoreError};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Uri;
use axum::routing::{get, post, put};

use axum::{Json, Router};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Callbacks(#[from] crate::pos_api::callbacks::DispatcherError),
    #[error(transparent)]
    Webhooks(#[from] crate::pos_api::webhook_delivery::DispatcherError),
    #[error(transparent)]
    Receipts(#[from] crate::receipts::ReceiptConfigError),
}

/// Which parts of the cloud a listener serves (`/healthz` and `/readyz` are on every one).
#[derive(Debug, Clone, Copy)]
struct Serves {
    /// The POS API, `/openapi.json`, the web pages and (without its own listener) `/metrics`.
    pos: bool,
    /// The device gateway, `/device/v1`.
    devices: bool,
}

/// A bound port and what it serves.
struct Listener {
    tcp: TcpListener,
    serves: Serves,
}

/// The listeners the configuration asks for: `listen` alone serves everything; `--pos-listen`
/// or `--device-listen` moves that part to its own port, and `listen` keeps what is left (it is
/// not opened when both parts have their own).
fn listener_plan(config: &Config) -> Vec<(SocketAddr, Serves)> {
    let both = Serves {
        pos: true,
        devices: true,
    };
    let pos = Serves {
        pos: true,
        devices: false,
    };
    let devices = Serves {
        pos: false,
        devices: true,
    };
    match (config.listeners.pos, config.listeners.device) {
        (None, None) => vec![(config.listen, both)],
        (Some(p), None) => vec![(p, pos), (config.listen, devices)],
        (None, Some(d)) => vec![(config.listen, pos), (d, devices)],
        (Some(p), Some(d)) => vec![(p, pos), (d, devices)],
    }
}

/// A built cloud, bound to its port, not yet serving.
pub struct Application {
    /// The POS and device listeners (one, or two when they are apart), with their routers.
    listeners: Vec<(Listener, Router)>,
    local_addr: SocketAddr,
    device_addr: SocketAddr,
    /// TLS, header and body timeouts of the POS and device listeners.
    serving: ServeSettings,
    /// The generated certificate clients should trust (`--tls-self-signed`).
    dev_cert: Option<PathBuf>,
    public_url: Url,
    engine: Engine,
    connections: Arc<Connections>,
    callbacks: Dispatcher,
    /// Delivers the event log to webhook endpoints.
    webhooks: crate::pos_api::webhook_delivery::Dispatcher,
    /// Sends receipts by email and SMS from their outbox.
    receipts: crate::receipts::ReceiptWorker,
    nats: Option<Arc<NatsBus>>,
    /// The separate `/metrics` listener, when one is configured.
    metrics_listener: Option<TcpListener>,
    metrics: Arc<Metrics>,
    /// Whether the store commits; `/readyz` and the store probe use it.
    health: Arc<Health>,
    /// The store, for the probe that writes while it is unavailable (all else goes through
    /// the engine).
    store: Arc<dyn store::Store>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// The first owner's one-time setup link, while nobody has an account.
    setup_url: Option<Url>,
}

impl Application {
    /// Opens the store, binds the port (0 picks one) and wires the parts together.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(metrics.store_availability()));
        let store: Arc<dyn store::Store> = Arc::new(metrics::metered(
            store::open_with_faults(&config.database_url, config.store_faults.clone()).await?,
            metrics.clone(),
            health.clone(),
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
        let engine =
            Engine::with_metrics(store.clone(), bus, config.engine.clone(), metrics.clone());

        // Certificates first: a bad one should stop the start before any port is taken.
        let (tls, dev_cert) = match &config.listeners.tls {
            Some(source) => {
                let (server_config, dev_cert) = crate::tls::server_config(source)?;
                (
                    Some(tokio_rustls::TlsAcceptor::from(server_config)),
                    dev_cert,
                )
            }
            None => (None, None),
        };
        let mut bound = Vec::new();
        for (addr, serves) in listener_plan(&config) {
            let bind_err = |source| BuildError::Bind { addr, source };
            let tcp = TcpListener::bind(addr).await.map_err(bind_err)?;
            let local = tcp.local_addr().map_err(bind_err)?;
            bound.push((Listener { tcp, serves }, local));
        }
        let addr_of = |want: fn(&Serves) -> bool| {
            bound
                .iter()
                .find(|(l, _)| want(&l.serves))
                .map(|(_, a)| *a)
                .unwrap_or(config.listen)
        };
        let local_addr = addr_of(|s| s.pos);
        let device_addr = addr_of(|s| s.devices);
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
            .unwrap_or_else(|| default_public_url(local_addr, tls.is_some()));

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let api = ApiState::new(
            engine.clone(),
            ApiSettings {
                public_url: public_url.clone(),
                poll_interval_min: config.poll_interval_min,
                sync_timeout: config.sync_timeout,
                limits: config.api_limits.clone(),
                auth: pos_api::credentials::PosAuth {
                    keys: config.pos_api_keys.clone(),
                    keyless: config.require_pos_keys.clone(),
                },
            },
            shutdown.clone(),
        );
        let gateway = Gateway::new(
            engine.clone(),
            connections.clone(),
            config.gateway.clone(),
            config.api_limits.pairing.trust_forwarded_for,
            shutdown.clone(),
            tasks.clone(),
        );
        let enrollment = config.self_enrollment();
        let by_default = crate::config::VirtualTerminals::Auto
            .decide(config.has_credentials(), &config.listen_addrs());
        match (enrollment, by_default) {
            (Ok(()), Err(why)) => tracing::warn!(
                %why,
                "--virtual-terminals: anyone who reaches /virtual-terminal may enroll a device"
            ),
            (Ok(()), Ok(())) => tracing::info!(
                ttl = ?config.engine.virtual_terminal_ttl,
                "the virtual terminal page may enroll devices (removed once unused for the ttl)"
            ),
            (Err(why), _) => tracing::debug!(%why, "virtual terminal self-enrollment is off"),
        }
        // A new installation greets its first owner with a one-time link (not in production,
        // where `eftcloud user add --role owner` does it).
        let setup = if config.first_run_setup && !engine.has_users().await? {
            let token = crate::engine::devices::random_hex(32);
            let link = crate::web::sign_in::SetupLink::new(&token, engine.now() + SETUP_LINK_TTL);
            let mut url = public_url.clone();
            url.set_path("/dashboard/setup");
            url.set_query(Some(&format!("token={token}")));
            Some((Arc::new(link), url))
        } else {
            None
        };
        let secure_cookies = tls.is_some() || public_url.scheme() == "https";
        let web = crate::web::WebState::with_people(
            engine.clone(),
            enrollment,
            config.admin_token.as_deref(),
            &config.api_limits,
            shutdown.clone(),
            setup.as_ref().map(|(link, _)| link.clone()),
            secure_cookies,
        );
        // Without its own listener, /metrics is one more route of the main one.
        let metrics_here = config.metrics_listen.is_none().then(|| metrics.clone());
        let listeners = bound
            .into_iter()
            .map(|(listener, _)| {
                let router = routes(
                    api.clone(),
                    gateway.clone(),
                    web.clone(),
                    (metrics.clone(), health.clone()),
                    metrics_here.clone(),
                    listener.serves,
                );
                (listener, router)
            })
            .collect();
        let serving = ServeSettings {
            tls,
            header_read_timeout: config.listeners.header_read_timeout,
            body_read_timeout: config.listeners.body_read_timeout,
            max_connections_per_source: config.listeners.max_connections_per_source,
            grace: SHUTDOWN_GRACE,
        };
        let callbacks =
            Dispatcher::new(engine.clone(), config.callbacks.clone(), public_url.clone()).await?;
        let webhooks = crate::pos_api::webhook_delivery::Dispatcher::new(
            engine.clone(),
            config.webhooks.clone(),
            &config.gateway.node,
        )?;
        let receipts = crate::receipts::ReceiptWorker::new(engine.clone(), &config.receipts)?;
        Ok(Self {
            webhooks,
            listeners,
            local_addr,
            device_addr,
            serving,
            dev_cert,
            public_url,
            engine,
            connections,
            callbacks,
            receipts,
            nats,
            metrics_listener,
            metrics,
            health,
            store,
            shutdown,
            tasks,
            setup_url: setup.map(|(_, url)| url),
        })
    }

    /// The first owner's one-time setup link, when the installation has nobody yet (and
    /// first-run setup is on): `serve` prints it.
    pub fn setup_url(&self) -> Option<&Url> {
        self.setup_url.as_ref()
    }

    /// Whether the store and the bus are available (what `/readyz` answers).
    pub fn health(&self) -> &Arc<Health> {
        &self.health
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

    /// The address actually bound for the POS API (the only one without separate listeners).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address actually bound for the device gateway (`local_addr` on a single port).
    pub fn device_addr(&self) -> SocketAddr {
        self.device_addr
    }

    /// Whether the POS and device listeners speak TLS.
    pub fn is_tls(&self) -> bool {
        self.serving.tls.is_some()
    }

    /// The generated certificate for terminals and POS tools to trust (`--tls-self-signed`).
    pub fn dev_cert(&self) -> Option<&Path> {
        self.dev_cert.as_deref()
    }

    /// Where devices connect: `ws(s)://.../device/v1` on the public URL, or on the device
    /// listener when it is apart.
    pub fn device_url(&self) -> Url {
        let mut url = if self.device_addr == self.local_addr {
            self.public_url.clone()
        } else {
            default_public_url(self.device_addr, self.is_tls())
        };
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        // http(s) to ws(s) is always allowed.
        let _ = url.set_scheme(scheme);
        let path = format!(
            "{}{}",
            url.path().trim_end_matches('/'),
            protocol::device::PATH
        );
        url.set_path(&path);
        url
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
            listeners,
            serving,
            engine,
            shutdown,
            tasks,
            connections,
            callbacks,
            webhooks,
            receipts,
            nats,
            metrics_listener,
            metrics,
            health,
            store,
            ..
        } = self;
        tasks.spawn(health.run_probe(store, PROBE_INTERVAL, shutdown.clone()));
        if let Some(listener) = metrics_listener {
            let app = Router::new()
                .route("/metrics", get(metrics::serve))
                .with_state(metrics);
            // Scraped from inside the operator's network: plain HTTP.
            let plain = ServeSettings {
                tls: None,
                ..serving.clone()
            };
            tasks.spawn(server::serve(listener, app, plain, shutdown.clone()));
        }
        if let Some(nats) = nats {
            tasks.spawn(nats.run_completions(Arc::new(engine.clone()), shutdown.clone()));
        }
        tasks.spawn(callbacks.run(shutdown.clone()));
        tasks.spawn(webhooks.run(shutdown.clone()));
        tasks.spawn(receipts.run(shutdown.clone()));
        tasks.spawn(engine.clone().run_deadlines(shutdown.clone()));
        tasks.spawn(engine.clone().run_campaigns(
            connections.clone(),
            engine.settings().update_tick,
            shutdown.clone(),
        ));
        tasks.spawn(engine.run_retention(shutdown.clone()));
        let servers = listeners.into_iter().map(|(listener, router)| {
            // Paths are matched case-insensitively (`/POS/Transaction` and `/pos/transaction`),
            // so the path is folded before routing: this layer wraps the router, not its routes.
            let app = axum::middleware::map_request(fold_path).layer(router);
            server::serve(listener.tcp, app, serving.clone(), shutdown.clone())
        });
        // Stopping cancels `shutdown` first: held requests are released and device sockets
        // closed ("going away"), then the listeners drain their connections.
        let stopping = async {
            stop.cancelled().await;
            shutdown.cancel();
        };
        tokio::join!(futures_util::future::join_all(servers), stopping);
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
        Ok(())
    }
}

/// How long the first owner's setup link works.
const SETUP_LINK_TTL: chrono::Duration = chrono::Duration::hours(24);

fn default_public_url(addr: SocketAddr, tls: bool) -> Url {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let scheme = if tls { "https" } else { "http" };
    // A socket address always forms a valid http(s) URL.
    Url::parse(&format!("{scheme}://{host}")).unwrap_or_else(|_| {
        #[allow(clippy::expect_used)]
        Url::parse("http://127.0.0.1").expect("literal URL is valid")
    })
}

/// `/readyz`: ready when the store answers reads and commits writes (as of the last write or
/// probe) and, in a cluster, the bus is connected; 503 with the reason otherwise, so a load
/// balancer moves traffic to another node.
async fn readyz(
    axum::extract::State((engine, health)): axum::extract::State<(Engine, Arc<Health>)>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use pos_api::error::{ApiError, ServiceError};
    if let Some(problem) = health.store_problem() {
        return ApiError::from(ServiceError::StorageUnavailableBecause(problem)).into_response();
    }
    match engine.ready().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(Unready::Store(e)) => {
            ApiError::from(ServiceError::StorageUnavailableBecause(e.to_string())).into_response()
        }
        Err(e @ Unready::Bus(_)) => {
            ApiError::from(ServiceError::Unavailable(e.to_string())).into_response()
        }
    }
}

fn routes(
    api: ApiState,
    gateway: Gateway,
    web: crate::web::WebState,
    (metrics, health): (Arc<Metrics>, Arc<Health>),
    metrics_route: Option<Arc<Metrics>>,
    serves: Serves,
) -> Router {
    use crate::domain::accounts::Scope;
    let max_body = api.settings.limits.max_body_bytes;
    let ready = (api.engine.clone(), health);
    // Every POS route authenticates its request and requires one scope; the API description
    // stays public.
    let guarded = |route: axum::routing::MethodRouter<ApiState>, scope: Scope| {
        route
            .route_layer(axum::middleware::from_fn_with_state(
                (api.clone(), scope),
                pos_api::credentials::authenticate,
            ))
            .fallback(not_found)
    };
    let pos = Router::new()
        .route(
            "/pos/pairing/{code}",
            guarded(put(pos_api::pairing::pair), Scope::PosTransact),
        )
        .route(
            "/pos/transaction",
            guarded(post(pos_api::transaction::create), Scope::PosTransact),
        )
        .route(
            "/pos/transaction/{id}",
            guarded(get(pos_api::polling::poll), Scope::PosRead),
        )
        .route(
            "/pos/transaction/{id}/cancel",
            guarded(post(pos_api::cancel::cancel), Scope::PosTransact),
        )
        .route(
            "/pos/transaction/{id}/refund",
            guarded(post(pos_api::follow_ups::refund), Scope::PosRefund),
        )
        .route(
            "/pos/transaction/{id}/void",
            guarded(post(pos_api::follow_ups::void), Scope::PosRefund),
        )
        .route(
            "/pos/transaction/{id}/adjust",
            guarded(post(pos_api::follow_ups::adjust), Scope::PosTransact),
        )
        .route(
            "/pos/transaction/{id}/increment",
            guarded(post(pos_api::follow_ups::increment), Scope::PosTransact),
        )
        .route(
            "/pos/transaction/{id}/capture",
            guarded(post(pos_api::follow_ups::capture), Scope::PosTransact),
        )
        .route(
            "/pos/transaction/{id}/release",
            guarded(post(pos_api::follow_ups::release), Scope::PosTransact),
        )
        .route(
            "/pos/transaction/{id}/payment",
            guarded(get(pos_api::follow_ups::payment), Scope::PosRead),
        )
        .route("/pos/transaction/{id}/receipt", {
            // Reading needs `pos:read`, sending `pos:transact`: one path, a scope per method.
            let auth = |scope| {
                axum::middleware::from_fn_with_state(
                    (api.clone(), scope),
                    pos_api::credentials::authenticate,
                )
            };
            get(pos_api::receipts::show)
                .route_layer(auth(Scope::PosRead))
                .merge(post(pos_api::receipts::send).route_layer(auth(Scope::PosTransact)))
                .fallback(not_found)
        })
        .route(
            "/pos/orders",
            guarded(post(pos_api::orders::create), Scope::PosTransact),
        )
        .route(
            "/pos/orders/{id}",
            guarded(get(pos_api::orders::get_order), Scope::PosRead),
        )
        .route(
            "/pos/orders/{id}/cancel",
            guarded(post(pos_api::orders::cancel), Scope::PosTransact),
        )
        .route(
            "/pos/transaction/{id}/events",
            guarded(get(pos_api::timeline::events), Scope::PosRead),
        )
        .route(
            "/pos/lookup",
            guarded(get(pos_api::lookup::lookup), Scope::PosRead),
        )
        .route(
            "/pos/register",
            guarded(get(pos_api::register_status::status), Scope::PosRead),
        )
        .route(
            "/pos/register/display",
            guarded(post(pos_api::actions::display), Scope::PosTransact),
        )
        .route(
            "/pos/register/input",
            guarded(post(pos_api::actions::input), Scope::PosTransact),
        )
        .route(
            "/pos/register/print",
            guarded(post(pos_api::actions::print), Scope::PosTransact),
        )
        .route(
            "/pos/register/qr",
            guarded(post(pos_api::actions::qr), Scope::PosTransact),
        )
        .route(
            "/v1/events",
            guarded(get(pos_api::events::list), Scope::PosRead),
        )
        .route(
            "/v1/events/{id}",
            guarded(get(pos_api::events::one), Scope::PosRead),
        )
        .route(
            "/v1/webhook-endpoints",
            guarded(
                post(pos_api::webhooks::create).get(pos_api::webhooks::list),
                Scope::WebhooksManage,
            ),
        )
        .route(
            "/v1/webhook-endpoints/{id}",
            guarded(
                get(pos_api::webhooks::get_one)
                    .patch(pos_api::webhooks::change)
                    .delete(pos_api::webhooks::delete),
                Scope::WebhooksManage,
            ),
        )
        .route(
            "/v1/webhook-endpoints/{id}/rotate-secret",
            guarded(post(pos_api::webhooks::rotate), Scope::WebhooksManage),
        )
        .route(
            "/v1/webhook-endpoints/{id}/deliveries",
            guarded(get(pos_api::webhooks::deliveries), Scope::WebhooksManage),
        )
        .route(
            "/v1/webhook-endpoints/{id}/redeliver",
            guarded(post(pos_api::webhooks::redeliver), Scope::WebhooksManage),
        )
        .route(
            "/openapi.json",
            get(pos_api::openapi::serve).fallback(not_found),
        )
        .route(
            "/openapi/{file}",
            get(pos_api::openapi::serve_version).fallback(not_found),
        )
        // Every API answer names its version; an unknown one asked for is refused.
        .route_layer(axum::middleware::from_fn(pos_api::versioning::negotiate))
        .with_state(api);
    let devices = Router::new()
        .route(protocol::device::PATH, get(device_gateway::upgrade))
        .route(
            "/device/v1/artifacts/{id}",
            get(device_gateway::artifacts::download),
        )
        .with_state(gateway);
    let mut router = Router::new();
    if serves.pos {
        if let Some(m) = metrics_route {
            router = router.route("/metrics", get(metrics::serve).with_state(m));
        }
        router = router.merge(pos).merge(crate::web::routes(web));
    }
    if serves.devices {
        router = router.merge(devices);
    }
    router
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz).with_state(ready))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::Extension(pos_api::fields::BodyLimit(max_body)))
        // A declared length over the limit is refused before the body is read.
        .layer(axum::middleware::from_fn_with_state(
            pos_api::fields::BodyLimit(max_body),
            pos_api::fields::refuse_declared_oversize,
        ))
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
