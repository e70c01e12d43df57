//! A pool of LDAP connections bound as the service account.
//!
//! Each slot is owned by a supervisor task with an explicit state machine:
//! connect → bind → serve (until the connection's driver ends) → back off → connect.
//! ldap3 multiplexes operations on one connection, so a request takes a clone
//! of any live handle; there is no checkout and nothing to return.
//!
//! Beside the slots, the pool keeps the gateway's own search connections (`wire`), lent to one
//! request at a time: opened in the background on the servers the slots are connected to, up to
//! `directory.search_connections`, and dropped once no slot uses their server.

use super::wire::{SearchConn, Transport};
use crate::config::DirectorySettings;
use crate::metrics::DirectoryMetrics;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Exponential backoff between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            current: min,
        }
    }

    /// The delay before the next attempt; each call doubles the following one up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

/// Why a connection attempt failed; logged, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Connect(#[source] ldap3::LdapError),
    #[error("bind as the service account failed: {0}")]
    Bind(#[source] ldap3::LdapError),
    #[error("cannot read directory.ca_file {path}: {message}")]
    CaFile { path: String, message: String },
}

struct Shared {
    settings: DirectorySettings,
    conn_settings: LdapConnSettings,
    /// The servers this pool connects to, in order of preference.
    urls: Vec<String>,
    /// Spread slots over the servers (replicas for reads) instead of all on the first healthy one.
    spread: bool,
    handles: Vec<Mutex<Option<Ldap>>>,
    /// Handles of each slot currently lent to a request (0 means the connection is idle).
    busy: Vec<AtomicUsize>,
    next: AtomicUsize,
    metrics: DirectoryMetrics,
    /// Signalled when a slot's state changes: a live connection, or a failed attempt.
    ready: Notify,
    /// Signalled by requests that found no live connection: supervisors in backoff retry at once.
    wake: Notify,
    /// Set when the latest connection attempt failed: requests then fail fast instead of waiting.
    down: AtomicBool,
    /// The server (index into `urls`) each slot is connected to; `NO_SERVER` while it is not.
    servers: Vec<AtomicUsize>,
    searches: Searches,
}

const NO_SERVER: usize = usize::MAX;

/// Where a search connection to one server goes.
struct Target {
    /// `host:port`.
    address: String,
    host: String,
    transport: Transport,
}

/// The pool's search connections (`wire`).
struct Searches {
    /// Per server (index into `urls`); `None` where searches go through ldap3 only.
    targets: Vec<Option<Target>>,
    /// Idle connections, each with the instant it became idle; the last one is the most recent.
    idle: Mutex<Vec<(SearchConn, Instant)>>,
    /// Open connections, idle or lent.
    open: AtomicUsize,
    /// Set while one is being opened (one at a time).
    opening: AtomicBool,
    cap: usize,
    /// After a failed opening, none is tried again before this instant.
    not_before: Mutex<Option<Instant>>,
}

/// How long the pool waits after a search connection failed to open before it tries again.
const SEARCH_RETRY: Duration = Duration::from_secs(1);

/// A search connection idle longer is closed instead of used: directories close idle
/// connections themselves (Active Directory after 900 s by default, `MaxConnIdleTime`), and a
/// search sent on one they closed would fail and be sent again. Connections opened for a burst
/// of traffic are closed as it ends, and reopened when it comes back.
const SEARCH_IDLE_LIMIT: Duration = Duration::from_secs(60);

impl Shared {
    /// Whether some slot is connected to server `server`.
    fn serving(&self, server: usize) -> bool {
        self.servers
            .iter()
            .any(|s| s.load(Ordering::Relaxed) == server)
    }
}

/// A search connection lent to one request. Dropped without `keep`, it is closed; kept, it goes
/// back to the idle ones while its server is still in use.
pub struct PooledSearch {
    conn: Option<SearchConn>,
    shared: Arc<Shared>,
    keep: bool,
}

impl PooledSearch {
    /// Hand the connection back for the next request: its last search was answered in full.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl std::ops::Deref for PooledSearch {
    type Target = SearchConn;
    fn deref(&self) -> &SearchConn {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for PooledSearch {
    fn deref_mut(&mut self) -> &mut SearchConn {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledSearch {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let searches = &self.shared.searches;
        if self.keep && self.shared.serving(conn.server) {
            if let Ok(mut idle) = searches.idle.lock() {
                idle.push((conn, Instant::now()));
                return;
            }
        }
        searches.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Backoff between reconnect attempts; short, because a request arriving while the directory is
/// down wakes the supervisors anyway, and recovery must follow the directory within a second.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// How long a request waits for a woken supervisor when the directory was last seen down.
const DOWN_GRACE: Duration = Duration::from_millis(200);

/// A connection lent to one request; counts as busy until dropped.
pub struct PooledConn {
    ldap: Ldap,
    shared: Arc<Shared>,
    slot: usize,
}

impl std::ops::Deref for PooledConn {
    type Target = Ldap;
    fn deref(&self) -> &Ldap {
        &self.ldap
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Ldap {
        &mut self.ldap
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        self.shared.busy[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection pool. Dropping it stops the supervisors and closes the connections.
pub struct Pool {
    shared: Arc<Shared>,
    supervisors: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        for s in &self.supervisors {
            s.abort();
        }
    }
}

/// Connection settings (TLS trust, StartTLS, timeouts) from the directory config.
pub fn conn_settings(s: &DirectorySettings) -> Result<LdapConnSettings, ConnectError> {
    Ok(tls_settings(s)?.0)
}

/// `conn_settings`, and the TLS client config in it when the gateway built one (its own
/// search connections use the same); `None` without TLS, and with
/// `danger_skip_tls_verify`, where ldap3 is left to skip the check.
fn tls_settings(
    s: &DirectorySettings,
) -> Result<(LdapConnSettings, Option<Arc<rustls::ClientConfig>>), ConnectError> {
    let cs = LdapConnSettings::new()
        .set_conn_timeout(s.connect_timeout)
        .set_starttls(s.starttls);
    if s.danger_skip_tls_verify {
        tracing::warn!(
            "directory.danger_skip_tls_verify is set: the directory's certificate is not checked"
        );
        return Ok((cs.set_no_tls_verify(true), None));
    }
    let uses_tls = s.starttls
        || s.urls
            .iter()
            .chain(&s.read_urls)
            .any(|u| u.starts_with("ldaps://"));
    if !uses_tls {
        return Ok((cs, None));
    }
    // Always our own rustls config with the ring provider: ldap3's default would depend on the
    // process-wide provider and drop every system root if one of them failed to load.
    let (roots, source) = match &s.ca_file {
        Some(path) => (ca_file_roots(path)?, path.display().to_string()),
        None => (system_roots(), "the system trust store".to_string()),
    };
    if roots.is_empty() {
        return Err(ConnectError::CaFile {
            path: source,
            message: "no usable CA certificate found".into(),
        });
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ConnectError::CaFile {
        path: source,
        message: e.to_string(),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let config = Arc::new(config);
    Ok((cs.set_config(config.clone()), Some(config)))
}

/// Where the gateway's own search connections to `url` go; `None` where searches to it go
/// through ldap3 only: `ldapi://`, and TLS without a config of the gateway's
/// (`danger_skip_tls_verify`).
fn search_target(
    url: &str,
    starttls: bool,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Option<Target> {
    let u = url::Url::parse(url).ok()?;
    let address = tcp_address(url)?;
    let host = match u.host() {
        Some(url::Host::Domain("")) | None => "localhost".to_string(),
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
    };
    let transport = match (u.scheme(), starttls) {
        ("ldaps", _) => Transport::Tls(tls?.clone()),
        ("ldap", true) => Transport::StartTls(tls?.clone()),
        ("ldap", false) => Transport::Plain,
        _ => return None,
    };
    Some(Target {
        address,
        host,
        transport,
    })
}

fn ca_file_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, ConnectError> {
    let ca_err = |message: String| ConnectError::CaFile {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| ca_err(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
    }
    Ok(roots)
}

/// The system's CA certificates; ones that fail to parse are skipped, not fatal.
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for err in &loaded.errors {
        tracing::warn!(error = %err, "skipping an unreadable system CA certificate");
    }
    let (added, skipped) = roots.add_parsable_certificates(loaded.certs);
    if skipped > 0 {
        tracing::warn!(
            added,
            skipped,
            "some system CA certificates could not be used"
        );
    }
    roots
}

/// Open one connection, start its driver and bind as the service account.
pub async fn connect(
    settings: &DirectorySettings,
    cs: LdapConnSettings,
    url: &str,
) -> Result<(Ldap, JoinHandle<()>), ConnectError> {
    let timeout = settings.connect_timeout;
    let (conn, mut ldap) = tokio::time::timeout(timeout, async {
        let cs = match tcp_address(url) {
            Some(address) => cs.set_std_stream(no_delay_stream(&address).await?),
            None => cs,
        };
        LdapConnAsync::with_settings(cs, url).await
    })
    .await
    .map_err(|_| ConnectError::Timeout(timeout))?
    .map_err(ConnectError::Connect)?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(error = %e, "directory connection ended with an error");
        }
    });
    let bind = tokio::time::timeout(
        timeout,
        ldap.simple_bind(&settings.bind_dn, settings.bind_password.expose()),
    )
    .await;
    let result = match bind {
        Err(_) => Err(ConnectError::Timeout(timeout)),
        Ok(Err(e)) => Err(ConnectError::Bind(e)),
        Ok(Ok(res)) => res.success().map(|_| ()).map_err(ConnectError::Bind),
    };
    match result {
        Ok(()) => Ok((ldap, driver)),
        Err(e) => {
            driver.abort();
            Err(e)
        }
    }
}

/// `host:port` of an `ldap://` or `ldaps://` URL (default ports 389 and 636); None for `ldapi://`
/// and anything ldap3 should judge itself.
fn tcp_address(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let default_port = match u.scheme() {
        "ldap" => 389,
        "ldaps" => 636,
        _ => return None,
    };
    let host = match u.host_str().unwrap_or("") {
        "" => "localhost",
        h => h,
    };
    Some(format!("{host}:{}", u.port().unwrap_or(default_port)))
}

/// A TCP connection with Nagle's algorithm off. Requests are multiplexed on a pooled connection:
/// with Nagle on, a request written while an earlier one's bytes are unacknowledged waits for
/// that acknowledgement, which the directory sends with its answer to the earlier request, so
/// a search would wait for a slow write queued before it. ldap3 leaves the option alone.
async fn no_delay_stream(address: &str) -> Result<ldap3::StdStream, ldap3::LdapError> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(ldap3::StdStream::Tcp(stream.into_std()?))
}

impl Pool {
    /// Start one supervisor per slot. Connections come up in the background; `get` waits for them.
    /// `urls` in order of preference; with `spread`, slot i prefers `urls[i % n]` (replicas).
    pub fn start(
        settings: DirectorySettings,
        urls: Vec<String>,
        spread: bool,
        metrics: DirectoryMetrics,
    ) -> Result<Pool, ConnectError> {
        let (conn_settings, tls) = tls_settings(&settings)?;
        let n = settings.pool_size;
        let searches = Searches {
            targets: urls
                .iter()
                .map(|u| search_target(u, settings.starttls, tls.as_ref()))
                .collect(),
            idle: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            opening: AtomicBool::new(false),
            cap: settings.search_connections,
            not_before: Mutex::new(None),
        };
        let shared = Arc::new(Shared {
            settings,
            conn_settings,
            urls,
            spread,
            handles: (0..n).map(|_| Mutex::new(None)).collect(),
            busy: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            next: AtomicUsize::new(0),
            metrics,
            ready: Notify::new(),
            wake: Notify::new(),
            down: AtomicBool::new(false),
            servers: (0..n).map(|_| AtomicUsize::new(NO_SERVER)).collect(),
            searches,
        });
        let supervisors = (0..n)
            .map(|i| tokio::spawn(supervise(shared.clone(), i)))
            .collect();
        Ok(Pool {
            shared,
            supervisors,
        })
    }

    fn try_get(&self) -> Option<PooledConn> {
        let n = self.shared.handles.len();
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let slot = (start + k) % n;
            let handle = self.shared.handles[slot]
                .lock()
                .ok()
                .and_then(|g| g.clone());
            if let Some(mut h) = handle {
                if !h.is_closed() {
                    self.shared.busy[slot].fetch_add(1, Ordering::Relaxed);
                    return Some(PooledConn {
                        ldap: h,
                        shared: self.shared.clone(),
                        slot,
                    });
                }
            }
        }
        None
    }

    /// An idle search connection to a server a slot is connected to; `None` when there is
    /// none, and then one more is opened in the background (up to the configured number).
    pub fn take_search(&self) -> Option<PooledSearch> {
        let shared = &self.shared;
        let searches = &shared.searches;
        if searches.cap == 0 {
            return None;
        }
        let now = Instant::now();
        let usable = |(conn, since): &(SearchConn, Instant)| {
            // Not on a server the slots no longer use (failover or failback), nor idle too long.
            shared.serving(conn.server) && now.duration_since(*since) <= SEARCH_IDLE_LIMIT
        };
        loop {
            let (conn, stale) = {
                let mut idle = searches.idle.lock().ok()?;
                let conn = idle.pop();
                // The longest idle one, at the bottom, is checked on every take too, so that
                // the ones a past burst left are closed without a sweep of their own.
                let stale = match idle.first() {
                    Some(oldest) if !usable(oldest) => Some(idle.remove(0)),
                    _ => None,
                };
                (conn, stale)
            };
            if stale.is_some() {
                searches.open.fetch_sub(1, Ordering::Relaxed);
            }
            match conn {
                Some(c) if usable(&c) => {
                    return Some(PooledSearch {
                        conn: Some(c.0),
                        shared: shared.clone(),
                        keep: false,
                    })
                }
                Some(_) => {
                    searches.open.fetch_sub(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        self.open_search();
        None
    }

    /// Open one more search connection in the background, unless enough are open, one is
    /// being opened, the last attempt failed less than `SEARCH_RETRY` ago, or no slot is up.
    fn open_search(&self) {
        let shared = &self.shared;
        let searches = &shared.searches;
        if searches.open.load(Ordering::Relaxed) >= searches.cap
            || shared.down.load(Ordering::Relaxed)
        {
            return;
        }
        if let Ok(g) = searches.not_before.lock() {
            if g.is_some_and(|t| Instant::now() < t) {
                return;
            }
        }
        // Spread over the servers the slots use (replicas): the slot after the last opened.
        let n = shared.servers.len();
        let first = searches.open.load(Ordering::Relaxed);
        let Some(server) = (0..n)
            .map(|k| shared.servers[(first + k) % n].load(Ordering::Relaxed))
            .find(|&s| s != NO_SERVER)
        else {
            return;
        };
        if searches
            .targets
            .get(server)
            .and_then(Option::as_ref)
            .is_none()
        {
            return;
        }
        if searches.opening.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let searches = &shared.searches;
            let Some(target) = searches.targets[server].as_ref() else {
                return;
            };
            let s = &shared.settings;
            let opened = tokio::time::timeout(
                s.connect_timeout,
                SearchConn::open(
                    &target.address,
                    &target.host,
                    &target.transport,
                    &s.bind_dn,
                    s.bind_password.expose(),
                    server,
                ),
            )
            .await;
            match opened {
                Ok(Ok(conn)) => {
                    if let Ok(mut idle) = searches.idle.lock() {
                        searches.open.fetch_add(1, Ordering::Relaxed);
                        idle.push((conn, Instant::now()));
                    }
                    shared
                        .metrics
                        .operations
                        .with_label_values(&["bind", "success"])
                        .inc();
                }
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {:?}", s.connect_timeout),
                    };
                    tracing::debug!(server = %shared.urls[server], %error, "a search connection did not open; searches go through the pool");
                    if let Ok(mut g) = searches.not_before.lock() {
                        *g = Some(Instant::now() + SEARCH_RETRY);
                    }
                }
            }
            searches.opening.store(false, Ordering::Release);
        });
    }

    /// Stop reconnecting and unbind every connection (at shutdown, after requests have drained).
    pub async fn close(&self) {
        for s in &self.supervisors {
            s.abort();
        }
        for slot in &self.shared.handles {
            let handle = slot.lock().ok().and_then(|mut g| g.take());
            if let Some(mut h) = handle {
                let _ = tokio::time::timeout(Duration::from_secs(1), h.unbind()).await;
            }
        }
        for server in &self.shared.servers {
            server.store(NO_SERVER, Ordering::Relaxed);
        }
        if let Ok(mut idle) = self.shared.searches.idle.lock() {
            self.shared
                .searches
                .open
                .fetch_sub(idle.len(), Ordering::Relaxed);
            idle.clear();
        }
        self.shared.down.store(true, Ordering::Relaxed);
        self.shared.metrics.up.set(0);
    }

    /// Open connections, and those of them no request is using.
    pub fn stats(&self) -> (usize, usize) {
        let mut open = 0;
        let mut idle = 0;
        for (slot, h) in self.shared.handles.iter().enumerate() {
            let live = h
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .is_some_and(|mut l| !l.is_closed());
            if live {
                open += 1;
                if self.shared.busy[slot].load(Ordering::Relaxed) == 0 {
                    idle += 1;
                }
            }
        }
        (open, idle)
    }

    /// Publish the pool's state on its gauges (called before each scrape).
    /// The gauges count this pool and `also` (the read replicas' pool) together.
    pub fn refresh_metrics(&self, also: Option<&Pool>) {
        let (mut open, mut idle) = self.stats();
        if let Some(other) = also {
            let (o, i) = other.stats();
            open += o;
            idle += i;
        }
        let m = &self.shared.metrics;
        m.connections.with_label_values(&["open"]).set(open as i64);
        m.connections.with_label_values(&["idle"]).set(idle as i64);
        let up = open > 0 && !self.shared.down.load(Ordering::Relaxed);
        m.up.set(i64::from(up));
        let (mut open, mut idle) = self.search_stats();
        if let Some(other) = also {
            let (o, i) = other.search_stats();
            open += o;
            idle += i;
        }
        let m = &m.search_connections;
        m.with_label_values(&["open"]).set(open as i64);
        m.with_label_values(&["idle"]).set(idle as i64);
    }

    /// Open search connections, and those of them no request is using.
    pub fn search_stats(&self) -> (usize, usize) {
        let searches = &self.shared.searches;
        let idle = searches.idle.lock().map(|g| g.len()).unwrap_or(0);
        (searches.open.load(Ordering::Relaxed), idle)
    }

    /// A live handle. Without one, the supervisors are woken and the request waits up to the
    /// connect timeout while connections are coming up, or briefly when the directory was last seen down.
    pub async fn get(&self) -> Option<PooledConn> {
        if let Some(h) = self.try_get() {
            return Some(h);
        }
        self.shared.wake.notify_waiters();
        let started = tokio::time::Instant::now();
        let full = started + self.shared.settings.connect_timeout;
        let short = started + DOWN_GRACE.min(self.shared.settings.connect_timeout);
        loop {
            let notified = self.shared.ready.notified();
            if let Some(h) = self.try_get() {
                return Some(h);
            }
            // Re-evaluated on every state change: a failed attempt during the wait cuts it short.
            let deadline = if self.shared.down.load(Ordering::Relaxed) {
                short
            } else {
                full
            };
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.try_get();
            }
        }
    }
}

/// How often a connection to a less preferred server looks whether a better one is back.
const FAILBACK_INTERVAL: Duration = Duration::from_secs(5);

impl Shared {
    /// The order in which `slot` tries the servers.
    fn order(&self, slot: usize) -> Vec<usize> {
        let n = self.urls.len();
        let first = if self.spread { slot % n } else { 0 };
        (0..n).map(|k| (first + k) % n).collect()
    }

    /// Connect to the first server in `order[..upto]` that accepts; counts each bind.
    async fn connect_first(
        &self,
        order: &[usize],
        upto: usize,
    ) -> Result<(usize, Ldap, JoinHandle<()>), ConnectError> {
        let mut last = None;
        for (rank, &i) in order.iter().enumerate().take(upto) {
            let attempt = connect(&self.settings, self.conn_settings.clone(), &self.urls[i]).await;
            let bind_result = match &attempt {
                Ok(_) => Some("success"),
                Err(ConnectError::Bind(ldap3::LdapError::LdapResult { result })) => {
                    Some(super::result_code_name(result.rc))
                }
                Err(ConnectError::Bind(_)) => Some("connection_error"),
                Err(_) => None,
            };
            if let Some(r) = bind_result {
                self.metrics
                    .operations
                    .with_label_values(&["bind", r])
                    .inc();
            }
            match attempt {
                Ok((ldap, driver)) => return Ok((rank, ldap, driver)),
                Err(e) => {
                    tracing::debug!(server = %self.urls[i], error = %e, "directory server not available");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(ConnectError::Timeout(self.settings.connect_timeout)))
    }

    /// Put `ldap`, connected to server `server`, in `slot` (or empty it with `None`).
    fn install(&self, slot: usize, ldap: Option<(Ldap, usize)>) {
        let (ldap, server) = match ldap {
            Some((l, server)) => (Some(l), server),
            None => (None, NO_SERVER),
        };
        if let Ok(mut g) = self.handles[slot].lock() {
            *g = ldap;
        }
        self.servers[slot].store(server, Ordering::Relaxed);
    }
}

async fn supervise(shared: Arc<Shared>, slot: usize) {
    let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
    let order = shared.order(slot);
    // Log state changes, not every attempt of an outage.
    let mut failing = false;
    // Every connection after this slot's first is a reconnect.
    let mut first = true;
    loop {
        match shared.connect_first(&order, order.len()).await {
            Ok((mut rank, ldap, mut driver)) => {
                backoff.reset();
                shared.down.store(false, Ordering::Relaxed);
                shared.metrics.up.set(1);
                if !first {
                    shared.metrics.reconnects.inc();
                }
                first = false;
                shared.install(slot, Some((ldap, order[rank])));
                shared.ready.notify_waiters();
                let server = &shared.urls[order[rank]];
                if failing || rank > 0 {
                    tracing::info!(slot, %server, "directory connection up");
                } else {
                    tracing::debug!(slot, %server, "directory connection ready");
                }
                failing = false;
                // Serve until the connection drops; on a less preferred server, move back as
                // soon as a better one accepts (the old connection finishes its requests and closes).
                loop {
                    if rank == 0 {
                        let _ = (&mut driver).await;
                        break;
                    }
                    tokio::select! {
                        _ = &mut driver => break,
                        _ = tokio::time::sleep(FAILBACK_INTERVAL) => {
                            if let Ok((better, ldap, d)) = shared.connect_first(&order, rank).await {
                                shared.install(slot, Some((ldap, order[better])));
                                driver = d;
                                rank = better;
                                tracing::info!(slot, server = %shared.urls[order[rank]], "moved back to a preferred directory server");
                            }
                        }
                    }
                }
                shared.install(slot, None);
                tracing::warn!(slot, server = %shared.urls[order[rank]], "directory connection lost; reconnecting");
            }
            Err(e) => {
                shared.down.store(true, Ordering::Relaxed);
                shared.metrics.up.set(0);
                first = false;
                shared.ready.notify_waiters();
                if failing {
                    tracing::debug!(slot, error = %e, "cannot connect to any directory server");
                } else {
                    tracing::warn!(slot, error = %e, "cannot connect to any directory server; retrying");
                    failing = true;
                }
            }
        }
        // Never retry faster than RECONNECT_MIN, even when requests keep waking us.
        let delay = backoff.next_delay();
        tokio::time::sleep(RECONNECT_MIN).await;
        tokio::select! {
            _ = tokio::time::sleep(delay.saturating_sub(RECONNECT_MIN)) => {}
            _ = shared.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let seq: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seq, vec![100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }

    #[test]
    fn tcp_addresses_of_directory_urls() {
        let cases = [
            (
                "ldap://ldap.example.com:1389",
                Some("ldap.example.com:1389"),
            ),
            ("ldap://ldap.example.com", Some("ldap.example.com:389")),
            ("ldaps://ldap.example.com", Some("ldap.example.com:636")),
            (
                "ldaps://ldap.example.com:10636",
                Some("ldap.example.com:10636"),
            ),
            ("ldap://[::1]:10389", Some("[::1]:10389")),
            ("ldap:///", Some("localhost:389")),
            ("ldapi://%2Fvar%2Frun%2Fslapd%2Fldapi", None),
            ("not a url", None),
        ];
        for (url, want) in cases {
            assert_eq!(tcp_address(url).as_deref(), want, "{url}");
        }
    }

    /// A directory that accepts every connection and answers every message with a successful
    /// BindResponse of the same message id (all a pool and its search connections send here).
    async fn binding_directory() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // SEQUENCE, short length, then INTEGER id: the messages here are short.
                    let mut header = [0u8; 2];
                    while s.read_exact(&mut header).await.is_ok() {
                        let mut body = vec![0u8; usize::from(header[1])];
                        if s.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let id = &body[..2 + usize::from(body[1])];
                        let mut answer = vec![0x30, (id.len() + 9) as u8];
                        answer.extend_from_slice(id);
                        answer.extend_from_slice(&[
                            0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
                        ]);
                        if s.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("ldap://{address}")
    }

    fn settings(url: &str, search_connections: usize) -> DirectorySettings {
        DirectorySettings {
            url: url.to_string(),
            urls: vec![url.to_string()],
            read_urls: vec![],
            starttls: false,
            ca_file: None,
            danger_skip_tls_verify: false,
            bind_dn: "cn=svc".into(),
            bind_password: crate::config::Secret::new("pw"),
            pool_size: 2,
            search_connections,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
            max_search_entries: 10,
            max_sort_entries: 10,
            version_attribute: None,
            max_in_flight: 8,
            max_queued: 8,
            queue_timeout: Duration::from_secs(1),
        }
    }

    /// A pool of 2 connections to a `binding_directory`, up, keeping at most
    /// `search_connections` of its own.
    async fn started_pool(search_connections: usize) -> Pool {
        let url = binding_directory().await;
        let registry = prometheus::Registry::new();
        let metrics = crate::metrics::Metrics::register(&registry)
            .unwrap()
            .directory;
        let pool = Pool::start(
            settings(&url, search_connections),
            vec![url.clone()],
            false,
            metrics,
        )
        .unwrap();
        until("the pool is up", || pool.stats().0 == 2).await;
        pool
    }

    /// Waits (in real time) until `f` holds.
    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within 5 s");
    }

    #[tokio::test]
    async fn search_connections_open_on_demand_and_close_after_idling() {
        let pool = started_pool(2).await;

        // None idle: the first take opens one in the background.
        assert!(pool.take_search().is_none());
        until("a search connection is open", || {
            pool.search_stats() == (1, 1)
        })
        .await;
        let mut first = pool.take_search().expect("the idle one");
        assert_eq!(pool.search_stats(), (1, 0));
        // Lent: the next take opens a second one, and no more than the 2 configured.
        assert!(pool.take_search().is_none());
        until("a second one is open", || pool.search_stats() == (2, 1)).await;
        let second = pool.take_search().expect("the second");
        assert!(pool.take_search().is_none());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.search_stats(), (2, 0), "more than search_connections");

        // Given back after a whole answer, kept; dropped without one, closed.
        first.keep();
        drop(first);
        drop(second);
        assert_eq!(pool.search_stats(), (1, 1));

        // Idle past the limit: closed instead of lent, and another is opened.
        tokio::time::pause();
        tokio::time::advance(SEARCH_IDLE_LIMIT + Duration::from_secs(1)).await;
        tokio::time::resume();
        assert!(pool.take_search().is_none());
        assert_eq!(pool.search_stats().0, 0, "the idle one is closed");
        until("a fresh one is open", || pool.search_stats() == (1, 1)).await;
        assert!(pool.take_search().is_some());
    }

    #[tokio::test]
    async fn no_search_connections_when_none_are_configured() {
        let pool = started_pool(0).await;
        assert!(pool.take_search().is_none());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.search_stats(), (0, 0));
    }

    #[tokio::test]
    async fn pooled_connections_turn_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let stream = no_delay_stream(&address).await.unwrap();
        match stream {
            ldap3::StdStream::Tcp(s) => assert!(s.nodelay().unwrap()),
            _ => panic!("not a TCP stream"),
        }
    }
}
