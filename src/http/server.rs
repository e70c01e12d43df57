//! Listeners: TLS termination (with `tls`), HTTP serving with
//! connection limits, hot reload of everything but the sockets and the directory connection, and
//! graceful shutdown.

use super::ratelimit::RateLimiter;
use super::{router, AppState, PeerAddr};
use crate::audit::Auditor;
use crate::config::{Config, Environment, LimitSettings};
use crate::directory::ldap::LdapDirectory;
use crate::metrics::Metrics;
use crate::scim::groups::GroupService;
use crate::scim::users::{UserService, UserServiceSettings};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read TLS file {path}: {message}")]
    TlsFile { path: String, message: String },
    #[error("invalid TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the directory pool: {0}")]
    Directory(#[from] crate::directory::ldap::pool::ConnectError),
    #[error("cannot open the audit output: {0}")]
    Audit(std::io::Error),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// What a reload can change: per-listener routers (tokens, mapping, quotas, request limits), the
/// TLS certificate, and the connection limits. Requests pick up the current one as they arrive.
struct Live {
    routers: Vec<axum::Router>,
    tls: Option<TlsAcceptor>,
    /// The served certificate's notAfter (Unix seconds), when a listener speaks TLS.
    certificate_not_after: Option<i64>,
    limits: LimitSettings,
    limiter: Option<Arc<RateLimiter>>,
    config: Config,
}

/// State shared by the accept loops, the connections and the `Gateway` handle.
struct Server {
    live: RwLock<Arc<Live>>,
    directory: Arc<LdapDirectory>,
    metrics: Metrics,
    audit: Arc<Auditor>,
    open_connections: AtomicUsize,
    connection_closed: Notify,
    draining: Arc<AtomicBool>,
    /// Local addresses of the SCIM listeners, in config order.
    addresses: Vec<SocketAddr>,
}

/// The served certificate's expiry, set when a config is put in force (at start and on reload).
fn export_certificate_expiry(metrics: &Metrics, live: &Live) {
    if let Some(not_after) = live.certificate_not_after {
        // Seconds since 1970 are exact in an f64 for the next 285 million years.
        #[allow(clippy::cast_precision_loss)]
        metrics.http.tls_certificate_expiry.set(not_after as f64);
    }
}

impl Server {
    /// Serve `live` from now on: new requests and handshakes use it.
    fn install(&self, live: Live) {
        export_certificate_expiry(&self.metrics, &live);
        let live = Arc::new(live);
        match self.live.write() {
            Ok(mut l) => *l = live,
            Err(poisoned) => *poisoned.into_inner() = live,
        }
    }

    fn live(&self) -> Arc<Live> {
        match self.live.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The subtrees the gateway may touch under a config.
fn allowed_bases(config: &Config) -> Vec<String> {
    let mut allowed = vec![config.users.base.clone()];
    if let crate::mapping::DeletePolicy::Soft { move_to: Some(m) } = &config.users.delete {
        allowed.push(m.clone());
    }
    if let Some(g) = &config.groups {
        allowed.push(g.base.clone());
    }
    allowed
}

/// Build everything a config determines above the sockets and the directory pool.
fn build_live(
    config: Config,
    server_directory: &Arc<LdapDirectory>,
    metrics: &Metrics,
    addresses: &[SocketAddr],
    previous: Option<&Live>,
) -> Result<Live, ServeError> {
    let (tls, certificate_not_after) = match &config.tls {
        Some(t) if config.listeners.iter().any(|l| l.tls) => {
            let loaded = super::tls::load(t)?;
            (
                Some(TlsAcceptor::from(loaded.config)),
                Some(loaded.not_after),
            )
        }
        _ => (None, None),
    };
    let token_names: Vec<String> = config.tokens.iter().map(|t| t.name.clone()).collect();
    // Keep the buckets (and their state) when the quotas and tokens did not change.
    let limiter = match (&config.rate_limits, previous) {
        (None, _) => None,
        (Some(r), Some(p))
            if p.config.rate_limits.as_ref() == Some(r)
                && p.config
                    .tokens
                    .iter()
                    .map(|t| &t.name)
                    .eq(token_names.iter()) =>
        {
            p.limiter.clone()
        }
        (Some(r), _) => Some(Arc::new(RateLimiter::new(r, &token_names))),
    };
    let settings = UserServiceSettings {
        default_page_size: config.scim.default_page_size,
        max_page_size: config.scim.max_page_size,
        version_attribute: config.directory.version_attribute.clone(),
        max_patch_operations: config.scim.max_patch_operations,
    };
    let users_mapping = Arc::new(config.users.clone());
    let groups_mapping = config.groups.clone().map(Arc::new);
    let users = UserService::new(
        server_directory.clone(),
        users_mapping.clone(),
        settings.clone(),
    )
    .with_groups(groups_mapping.clone());
    let groups = groups_mapping.map(|g| {
        GroupService::new(
            server_directory.clone(),
            users_mapping.clone(),
            g,
            settings.clone(),
        )
    });
    let concurrency = Arc::new(tokio::sync::Semaphore::new(
        config.limits.max_concurrent_requests,
    ));
    let routers = config
        .listeners
        .iter()
        .zip(addresses)
        .map(|(l, local)| {
            router(Arc::new(AppState {
                users: users.clone(),
                groups: groups.clone(),
                tokens: super::auth::TokenSet::new(&config.tokens),
                base_path: config.scim.base_path.clone(),
                max_body_bytes: config.scim.max_body_bytes,
                max_page_size: config.scim.max_page_size,
                max_bulk_operations: config.scim.max_bulk_operations,
                retry_after: config.directory.retry_after,
                limiter: limiter.clone(),
                concurrency: concurrency.clone(),
                request_timeout: config.limits.request_timeout,
                metrics: metrics.http.clone(),
                scheme: if l.tls { "https" } else { "http" },
                fallback_authority: local.to_string(),
            }))
        })
        .collect();
    Ok(Live {
        routers,
        tls,
        certificate_not_after,
        limits: config.limits.clone(),
        limiter,
        config,
    })
}

/// A running gateway. Dropping it does not stop it; call `shutdown`.
pub struct Gateway {
    /// The bound SCIM addresses, in listener order (useful when the config asks for port 0).
    pub addresses: Vec<SocketAddr>,
    /// The bound admin address, when the config has `[admin]`.
    pub admin_address: Option<SocketAddr>,
    server: Arc<Server>,
    stop: watch::Sender<bool>,
    /// Closes the connections still open when the grace period ends.
    force: watch::Sender<bool>,
    accept_tasks: Vec<JoinHandle<()>>,
    admin_task: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Bind every listener and start serving; metrics are registered on `registry`.
    pub async fn start(
        config: Config,
        registry: prometheus::Registry,
    ) -> Result<Gateway, ServeError> {
        let metrics = Metrics::register(&registry)?;
        let audit = Arc::new(
            Auditor::new(&config.audit, Some(metrics.process.clone()))
                .map_err(ServeError::Audit)?,
        );
        let directory = Arc::new(LdapDirectory::start(
            &config.directory,
            allowed_bases(&config),
            metrics.directory.clone(),
            audit.clone(),
        )?);
        let mut listeners = Vec::new();
        let mut addresses = Vec::new();
        for l in &config.listeners {
            let (listener, local) = bind(l.address).await?;
            addresses.push(local);
            listeners.push((listener, l.tls));
        }
        let admin = match &config.admin {
            Some(a) => {
                let (listener, local) = bind(a.address).await?;
                Some((listener, local, a.readiness_timeout))
            }
            None => None,
        };
        // Learn what the directory supports now, not on the first request.
        let warm = directory.clone();
        tokio::spawn(async move {
            if let Err(e) = warm.capabilities().await {
                tracing::warn!(error = %e, "cannot read the directory's capabilities yet");
            }
        });
        let live = build_live(config, &directory, &metrics, &addresses, None)?;
        metrics.process.last_reload_success.set(unix_now());
        export_certificate_expiry(&metrics, &live);
        let draining = Arc::new(AtomicBool::new(false));
        let server = Arc::new(Server {
            live: RwLock::new(Arc::new(live)),
            directory: directory.clone(),
            metrics,
            audit,
            open_connections: AtomicUsize::new(0),
            connection_closed: Notify::new(),
            draining: draining.clone(),
            addresses: addresses.clone(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let (force, force_rx) = watch::channel(false);
        let mut accept_tasks = Vec::new();
        for (index, (listener, tls)) in listeners.into_iter().enumerate() {
            if tls {
                tracing::info!(address = %addresses[index], "HTTPS listener ready");
            } else {
                tracing::warn!(address = %addresses[index], "plaintext HTTP listener: tokens and identity data cross the network unencrypted");
            }
            accept_tasks.push(tokio::spawn(accept_loop(
                server.clone(),
                index,
                listener,
                tls,
                stop_rx.clone(),
                force_rx.clone(),
            )));
        }
        let (admin_address, admin_task) = match admin {
            Some((listener, local, readiness_timeout)) => {
                let app = super::admin::router(Arc::new(super::admin::AdminState {
                    registry,
                    directory,
                    readiness_timeout,
                    draining,
                }));
                tracing::info!(address = %local, "admin listener ready (/metrics, /healthz, /readyz)");
                let task = tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!(error = %e, "admin listener failed");
                    }
                });
                (Some(local), Some(task))
            }
            None => (None, None),
        };
        // Forget per-IP rate-limit state that no longer matters, so floods from many addresses
        // cannot grow memory without bound.
        let purger = {
            let server = server.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                loop {
                    tick.tick().await;
                    if let Some(l) = &server.live().limiter {
                        l.purge();
                    }
                }
            })
        };
        Ok(Gateway {
            addresses,
            admin_address,
            server,
            stop,
            force,
            accept_tasks,
            admin_task,
            background: vec![purger],
        })
    }

    /// How many LDAP requests the gateway has sent so far (for tests and diagnostics).
    pub fn directory_operations(&self) -> u64 {
        self.server.directory.operations()
    }

    /// The files the running config was read from (config, TLS, secret files), for change polling.
    pub fn config_sources(&self) -> Vec<std::path::PathBuf> {
        self.server.live().config.sources.clone()
    }

    /// Apply a new config without dropping connections. Listener addresses, the admin listener
    /// and the directory connection settings need a restart; a change to them is logged and ignored.
    pub fn reload(&self, config: Config) -> Result<(), ServeError> {
        let s = &self.server;
        let current = s.live();
        let old = &current.config;
        if config.listeners != old.listeners {
            tracing::warn!("listener changes need a restart; keeping the current listeners");
        }
        if config.admin.as_ref().map(|a| a.address) != old.admin.as_ref().map(|a| a.address) {
            tracing::warn!("admin listener changes need a restart; keeping the current one");
        }
        if directory_fingerprint(&config) != directory_fingerprint(old) {
            tracing::warn!(
                "directory connection changes need a restart; keeping the current connections"
            );
        }
        let mut config = config;
        config.listeners = old.listeners.clone();
        config.directory = old.directory.clone();
        config.admin = old.admin.clone();
        let live = build_live(
            config,
            &s.directory,
            &s.metrics,
            &s.addresses,
            Some(&current),
        )?;
        s.audit
            .reconfigure(&live.config.audit)
            .map_err(ServeError::Audit)?;
        s.directory.set_allowed_bases(allowed_bases(&live.config));
        s.install(live);
        Ok(())
    }

    /// Load `path` again and apply it. A config that does not load or apply is refused with a log
    /// line and a metric, and the running config stays in force. Returns whether it was applied.
    pub fn reload_from_file(&self, path: &Path, env: &dyn Environment) -> bool {
        let result = Config::load(path, env)
            .map_err(|e| e.to_string())
            .and_then(|c| self.reload(c).map_err(|e| e.to_string()));
        let m = &self.server.metrics.process;
        match result {
            Ok(()) => {
                m.reloads.with_label_values(&["success"]).inc();
                m.last_reload_success.set(unix_now());
                tracing::info!(path = %path.display(), "configuration reloaded");
                true
            }
            Err(e) => {
                m.reloads.with_label_values(&["failure"]).inc();
                tracing::error!(path = %path.display(), error = %e, "configuration reload refused; the running configuration stays in force");
                false
            }
        }
    }

    /// Stop accepting connections, let in-flight requests finish within the grace period, close
    /// what is left, then close the directory pool.
    pub async fn shutdown(self) {
        let grace = self.server.live().limits.shutdown_grace;
        self.server.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        for t in self.accept_tasks {
            let _ = t.await;
        }
        let deadline = Instant::now() + grace;
        loop {
            let closed = self.server.connection_closed.notified();
            let open = self.server.open_connections.load(Ordering::Acquire);
            if open == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                tracing::warn!(open, "grace period over; closing the remaining connections");
                let _ = self.force.send(true);
                break;
            }
        }
        // Connections closed by force end at their next poll; give them a moment.
        let settle = Instant::now() + Duration::from_secs(1);
        while self.server.open_connections.load(Ordering::Acquire) > 0 && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for t in self.background {
            t.abort();
        }
        if let Some(t) = self.admin_task {
            t.abort();
        }
        self.server.directory.close().await;
    }
}

/// Listen on `address`; returns the listener and the address it got (port 0 picks one).
async fn bind(address: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let fail = |source| ServeError::Bind { address, source };
    let listener = TcpListener::bind(address).await.map_err(fail)?;
    let local = listener.local_addr().map_err(fail)?;
    Ok((listener, local))
}

/// The directory settings that only a restart can change.
fn directory_fingerprint(c: &Config) -> String {
    let d = &c.directory;
    format!(
        "{}|{}|{:?}|{}|{}|{}|{}|{}",
        d.url,
        d.starttls,
        d.ca_file,
        d.danger_skip_tls_verify,
        d.bind_dn,
        d.pool_size,
        d.search_connections,
        d.max_in_flight
    )
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Counts a connection as open for as long as it lives.
struct OpenConnection(Arc<Server>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.http.connections.dec();
        self.0.connection_closed.notify_waiters();
    }
}

async fn accept_loop(
    server: Arc<Server>,
    index: usize,
    listener: TcpListener,
    tls: bool,
    mut stop: watch::Receiver<bool>,
    force: watch::Receiver<bool>,
) {
    loop {
        // At the connection limit, leave new clients in the kernel's backlog until one closes.
        loop {
            let closed = server.connection_closed.notified();
            let max = server.live().limits.max_connections;
            if server.open_connections.load(Ordering::Acquire) < max {
                break;
            }
            tokio::select! {
                _ = closed => {}
                _ = stop.changed() => return,
            }
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        server.open_connections.fetch_add(1, Ordering::AcqRel);
        server.metrics.http.connections.inc();
        let guard = OpenConnection(server.clone());
        let server = server.clone();
        let stop = stop.clone();
        let force = force.clone();
        // In place: the connection's task takes each request's body (see `drive`) and hyper's
        // body channel wakes it while it runs; that wake-up must not hand it to another thread.
        tokio::spawn(super::inplace::in_place(async move {
            let _guard = guard;
            serve_connection(server, index, tls, tcp, peer, stop, force).await;
        }));
    }
}

/// Per-connection activity, for the keep-alive idle timeout and the per-connection request cap.
///
/// Requests only record their start and end; nothing is signalled per request. The idle timer
/// looks at the record when it fires (a wake-up per request would wake the connection's own task
/// in the middle of every request and, on a small host, hand its next step to another thread).
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicU64,
    /// On tokio's clock, which the tests can pause.
    last_active: Mutex<Instant>,
    /// Signalled once the connection has served its maximum number of requests.
    exhausted: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            last_active: Mutex::new(Instant::now()),
            exhausted: Notify::new(),
        }
    }

    fn begin(&self, max_requests: Option<u64>) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let served = self.served.fetch_add(1, Ordering::AcqRel) + 1;
        if max_requests.is_some_and(|m| served >= m) {
            self.exhausted.notify_one();
        }
        self.touch();
    }

    fn end(&self) {
        self.touch();
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_active.lock() {
            *t = Instant::now();
        }
    }

    /// How long until the connection has had no request in flight for `idle`, if it were to stay
    /// so; zero once it has.
    fn idle_left(&self, idle: Duration) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return idle;
        }
        let since = self
            .last_active
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        idle.saturating_sub(since)
    }

    /// Resolves once the connection has had no request in flight for `idle`: a request in
    /// flight when the timer fires puts it off by `idle` again, and the end of the last request
    /// is the start of the idle time.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let left = self.idle_left(idle);
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left).await;
        }
    }
}

async fn serve_connection(
    server: Arc<Server>,
    index: usize,
    tls: bool,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
    force: watch::Receiver<bool>,
) {
    let live = server.live();
    let limits = live.limits.clone();
    if tls {
        let Some(acceptor) = live.tls.clone() else {
            return;
        };
        drop(live);
        let failures = &server.metrics.http.tls_handshake_failures;
        let stream =
            match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    failures.with_label_values(&["error"]).inc();
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    failures.with_label_values(&["timeout"]).inc();
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
        drive(
            server,
            index,
            TokioIo::new(stream),
            peer,
            limits,
            stop,
            force,
        )
        .await;
    } else {
        drop(live);
        drive(server, index, TokioIo::new(tcp), peer, limits, stop, force).await;
    }
}

/// A request in flight on a connection, for as long as its future lives.
struct Active(Arc<Activity>);

impl Active {
    fn begin(activity: &Arc<Activity>, max_requests: Option<u64>) -> Active {
        activity.begin(max_requests);
        Active(activity.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// `future`'s output, or the message of the panic that ended it (what a task's `JoinError`
/// says), for a request run in the connection's own task.
async fn caught<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::task::Poll;
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        // The future is not polled again after a panic, so no broken state of it is seen.
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string()))),
        }
    })
    .await
}

/// Serve HTTP/1.1 or HTTP/2 on one connection until it ends, is idle too long, has served its
/// maximum of requests, or the server stops.
async fn drive<I>(
    server: Arc<Server>,
    index: usize,
    io: I,
    peer: SocketAddr,
    limits: LimitSettings,
    mut stop: watch::Receiver<bool>,
    mut force: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let max_requests = limits.max_requests_per_connection;
    let service = {
        let activity = activity.clone();
        let server = server.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            // In flight from here until the request's future is dropped, also unpolled.
            let active = Active::begin(&activity, max_requests);
            req.extensions_mut().insert(PeerAddr(peer));
            let router = server.live().routers[index].clone();
            async move {
                let _active = active;
                // The body's first frame is taken here, in the connection's task, if the
                // connection has already read it (see `ready_body`); nothing waits for it.
                let req = super::ready_body::take_ready(req)
                    .await
                    .map(axum::body::Body::new);
                // A write runs in its own task: when a client hangs up, hyper drops this
                // future, but a write already sent to the directory still completes, is audited
                // and counted. A read changes nothing, so it runs here, in the connection's
                // task, without a task of its own and the wake-up that hands its answer back;
                // a read cut short leaves nothing behind (its gauges and permits are guards).
                let read = matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD);
                let answer = if read {
                    caught(router.oneshot(req)).await
                } else {
                    tokio::spawn(router.oneshot(req))
                        .await
                        .map_err(|e| e.to_string())
                };
                let resp = match answer {
                    Ok(r) => r,
                    // A panic in a handler is a bug: 500, and the connection carries on.
                    Err(e) => {
                        tracing::error!(error = %e, "request task failed");
                        let body = serde_json::json!({"schemas": [crate::scim::ERROR],
                            "status": "500", "detail": "internal error"});
                        Ok((
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            [(axum::http::header::CONTENT_TYPE, super::error::SCIM_JSON)],
                            body.to_string(),
                        )
                            .into_response())
                    }
                };
                resp
            }
        })
    };
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(64 * 1024);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = *stop.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    // hyper's HTTP/1 header timer starts only once the first bytes have shown the connection is
    // HTTP/1: a client sending nothing (or part of the HTTP/2 preface) after the handshake would
    // hold its connection until the idle timeout. So the first request's headers must arrive
    // within the header read timeout whatever the protocol.
    let first_request = tokio::time::sleep(limits.header_read_timeout);
    tokio::pin!(first_request);
    let mut first_request_seen = false;
    loop {
        tokio::select! {
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = &mut first_request, if !first_request_seen => {
                if activity.served.load(Ordering::Acquire) == 0 {
                    tracing::debug!(%peer, "no request within the header read timeout");
                    return;
                }
                first_request_seen = true;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.idle_for(limits.keep_alive_idle), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.exhausted.notified(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            // Closing, and nothing in flight for a moment: don't wait on a client that never
            // acknowledges the HTTP/2 GOAWAY; the grace period is for requests, not idle sockets.
            _ = activity.idle_for(CLOSE_IDLE), if closing => return,
            _ = force.changed() => return,
        }
    }
}

/// How long a closing connection with nothing in flight is kept for the client to hang up itself.
const CLOSE_IDLE: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_that_panics_in_the_connections_task_is_caught_with_its_message() {
        assert_eq!(caught(async { 7 }).await, Ok(7));
        let yields_then_panics = async {
            tokio::task::yield_now().await;
            panic!("handler bug {}", 42);
        };
        assert_eq!(
            caught(yields_then_panics).await,
            Err::<(), _>("handler bug 42".to_string())
        );
        assert_eq!(
            caught(async { panic!("plain") }).await,
            Err::<(), _>("plain".to_string())
        );
    }

    #[tokio::test]
    async fn a_request_dropped_half_way_is_no_longer_in_flight() {
        let a = activity();
        let request = |active: Active| async move {
            let _active = active;
            std::future::pending::<()>().await;
        };
        let mut started = Box::pin(request(Active::begin(&a, None)));
        assert!(poll_once(started.as_mut()).is_pending());
        assert_eq!(a.in_flight.load(Ordering::Acquire), 1);
        drop(started);
        assert_eq!(a.in_flight.load(Ordering::Acquire), 0);
        // Also a request dropped before its first poll.
        let unpolled = request(Active::begin(&a, None));
        assert_eq!(a.in_flight.load(Ordering::Acquire), 1);
        drop(unpolled);
        assert_eq!(a.in_flight.load(Ordering::Acquire), 0);
        assert_eq!(a.served.load(Ordering::Acquire), 2);
    }

    /// Polls `f` once with a waker that does nothing.
    fn poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        f.poll(&mut cx)
    }

    fn activity() -> Arc<Activity> {
        Arc::new(Activity::new())
    }

    fn wait_idle(a: &Arc<Activity>, idle: Duration) -> JoinHandle<Instant> {
        let a = a.clone();
        tokio::spawn(async move {
            a.idle_for(idle).await;
            Instant::now()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_counts_from_the_end_of_the_last_request() {
        let a = activity();
        a.begin(None);
        tokio::time::sleep(Duration::from_secs(5)).await;
        a.end();
        let ended = Instant::now();
        let idle = wait_idle(&a, Duration::from_secs(2)).await.unwrap();
        assert_eq!(idle - ended, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_idle_however_long_it_takes() {
        let a = activity();
        a.begin(None);
        let waiting = wait_idle(&a, Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        assert!(!waiting.is_finished(), "idle while a request was in flight");
        a.end();
        let ended = Instant::now();
        let idle = waiting.await.unwrap();
        assert_eq!(idle - ended, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_during_the_wait_starts_it_over_from_its_end() {
        let a = activity();
        let start = Instant::now();
        let waiting = wait_idle(&a, Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        a.begin(None);
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.end();
        let idle = waiting.await.unwrap();
        assert_eq!(idle - start, Duration::from_millis(3_700));
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::directory_fingerprint;
    use crate::mapping::tests::demo_config;

    /// A reload that changes how many search connections the pool keeps is told it needs a
    /// restart, as one that changes the pool's size.
    #[test]
    fn search_connections_and_pool_size_need_a_restart() {
        let base = directory_fingerprint(&demo_config(str::to_string));
        for (from, to) in [
            ("search_connections = 64", "search_connections = 8"),
            ("pool_size = 4", "pool_size = 2"),
        ] {
            let changed = demo_config(|t| {
                assert_eq!(t.matches(from).count(), 1, "{from}");
                t.replace(from, to)
            });
            assert_ne!(directory_fingerprint(&changed), base, "{to}");
        }
        assert_eq!(directory_fingerprint(&demo_config(str::to_string)), base);
    }
}
