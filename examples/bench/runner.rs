//! The load generator: C workers, each with a connection of its own (an ldap3 connection bound
//! as the gateway's service account, or an HTTP/1.1 keep-alive client of the gateway), take
//! operation numbers from one counter and time each operation, until a count or a time is up.
//! The first failure stops every worker and is returned: a broken side never makes a table.

use crate::gateway::TOKEN;
use crate::lean::LeanHttps;
use crate::release_gateway::ReleaseGateway;
use crate::slapd::SERVICE_DN;
use bytes::Bytes;
use hyper::Method;
use ldap3::{Ldap, LdapConnAsync, Scope, SearchEntry};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Which way an operation reaches the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// ldap3 straight to slapd.
    Direct,
    /// SCIM over HTTPS through the gateway.
    Gateway,
}

impl Side {
    /// The order of the sides in round `round`: direct first in even rounds, gateway first in
    /// odd ones, so that a drift of the machine weighs on both alike.
    pub fn order(round: usize) -> [Side; 2] {
        if round % 2 == 0 {
            [Side::Direct, Side::Gateway]
        } else {
            [Side::Gateway, Side::Direct]
        }
    }

    pub fn letter(self) -> char {
        match self {
            Side::Direct => 'd',
            Side::Gateway => 'g',
        }
    }
}

/// One worker's connection.
#[derive(Clone)]
pub enum Conn {
    Ldap(Ldap),
    Http(Http),
    /// A direct LDAP connection whose every operation follows a round trip through the gateway
    /// that does no directory work (`controls`: the HTTPS work any gateway carries, done beside
    /// the direct write on the same cores).
    Paired(Ldap, Http),
}

/// A keep-alive HTTPS client of the gateway's SCIM base URL; its clones share the connection.
#[derive(Clone)]
pub struct Http {
    client: Arc<LeanHttps>,
}

pub type OpFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Operations numbered 0, 1, 2, …: operation `k` on a worker's connection.
pub trait Workload: Send + Sync {
    fn op<'a>(&'a self, conn: &'a mut Conn, k: usize) -> OpFuture<'a>;
}

/// What a pool of workers did.
pub struct Run {
    pub latencies: Vec<Duration>,
    /// From the first operation's start to the last one's end.
    pub elapsed: Duration,
}

/// Runs operations 0, 1, … of `work`, one worker per connection, until `count` operations have
/// started or `limit` has passed, whichever comes first; every started operation finishes.
pub async fn run_pool(
    conns: &[Conn],
    work: Arc<dyn Workload>,
    count: usize,
    limit: Option<Duration>,
) -> Result<Run, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let first_error = Arc::new(OnceLock::new());
    let started = Instant::now();
    let workers: Vec<_> = conns
        .iter()
        .cloned()
        .map(|mut conn| {
            let (next, stop, first_error, work) = (
                next.clone(),
                stop.clone(),
                first_error.clone(),
                work.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| started.elapsed() < l) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count {
                        break;
                    }
                    let t = Instant::now();
                    if let Err(e) = work.op(&mut conn, k).await {
                        let _ = first_error.set(format!("operation {k}: {e}"));
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.map_err(|e| format!("a worker panicked: {e}"))?);
    }
    let elapsed = started.elapsed();
    match first_error.get() {
        Some(e) => Err(e.clone()),
        None => Ok(Run { latencies, elapsed }),
    }
}

/// A new connection bound as the gateway's service account: the direct side runs under the same
/// ACLs, limits and password policy as the gateway.
pub async fn service_connection(url: &str, password: &str) -> Result<Ldap, String> {
    let (conn, mut ldap) = LdapConnAsync::new(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    ldap3::drive!(conn);
    ldap.simple_bind(SERVICE_DN, password)
        .await
        .and_then(|r| r.success())
        .map_err(|e| format!("bind as {SERVICE_DN} failed: {e}"))?;
    Ok(ldap)
}

/// `n` connections of one side. Gateway clients have sent one request each, so the TLS
/// handshake is behind them.
pub async fn connections(
    side: Side,
    n: usize,
    slapd_url: &str,
    password: &str,
    gw: &ReleaseGateway,
) -> Result<Vec<Conn>, String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(match side {
            Side::Direct => Conn::Ldap(service_connection(slapd_url, password).await?),
            Side::Gateway => Conn::Http(Http::new(gw)),
        });
    }
    if side == Side::Gateway {
        let warm = out.iter().map(|c| {
            let c = c.clone();
            tokio::spawn(async move { c.http()?.get("/ServiceProviderConfig", 200).await })
        });
        for w in warm.collect::<Vec<_>>() {
            w.await.map_err(|e| e.to_string())??;
        }
    }
    Ok(out)
}

impl Conn {
    pub fn ldap(&mut self) -> Result<&mut Ldap, String> {
        match self {
            Conn::Ldap(l) | Conn::Paired(l, _) => Ok(l),
            Conn::Http(_) => Err("an LDAP operation on an HTTP connection".into()),
        }
    }

    pub fn http(&self) -> Result<&Http, String> {
        match self {
            Conn::Http(h) | Conn::Paired(_, h) => Ok(h),
            Conn::Ldap(_) => Err("an HTTP request on an LDAP connection".into()),
        }
    }
}

impl Http {
    /// A client with one HTTP/1.1 connection (it sends one request at a time), trusting only the
    /// gateway's certificate.
    pub fn new(gw: &ReleaseGateway) -> Http {
        Http::to(&gw.base, gw.cert_pem())
    }

    /// The same for another server: `base` is its base URL, `cert_pem` its certificate.
    pub fn to(base: &str, cert_pem: &str) -> Http {
        Http {
            client: Arc::new(LeanHttps::new(base, cert_pem, TOKEN).expect("an HTTPS client")),
        }
    }

    /// Sends a request to `<base><path>` with the token; any status but `expect` is an error
    /// naming the request and quoting the answer. Returns the body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expect: &[u16],
    ) -> Result<Bytes, String> {
        let what = || format!("{method} {path}");
        let body = body.map(|b| Bytes::from(b.to_string()));
        let answer = self
            .client
            .send(method.clone(), path, body)
            .await
            .map_err(|e| format!("{}: {e}", what()))?;
        if !expect.contains(&answer.status) {
            return Err(format!(
                "{} answered {} (expected {expect:?}): {}",
                what(),
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
        Ok(answer.body)
    }

    pub async fn get(&self, path: &str, expect: u16) -> Result<Bytes, String> {
        self.send(Method::GET, path, None, &[expect]).await
    }

    /// A list request that must find exactly `expected` resources; returns the first one's id.
    pub async fn find(&self, path: &str, expected: u64) -> Result<Option<String>, String> {
        let body = json_of(&self.get(path, 200).await?)?;
        if body["totalResults"] != expected {
            return Err(format!("GET {path} found {body} (expected {expected})"));
        }
        Ok(body["Resources"][0]["id"].as_str().map(str::to_string))
    }

    /// POST that must create (201); returns the new resource's id.
    pub async fn create(&self, path: &str, body: &Value) -> Result<String, String> {
        let created = json_of(&self.send(Method::POST, path, Some(body), &[201]).await?)?;
        created["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("POST {path} answered 201 without an id: {created}"))
    }

    /// What Entra does for a new resource: look it up with `lookup` (nothing may be found), then
    /// create it; returns its id.
    pub async fn create_absent(
        &self,
        lookup: &str,
        path: &str,
        body: &Value,
    ) -> Result<String, String> {
        self.find(lookup, 0).await?;
        self.create(path, body).await
    }

    /// PATCH that must succeed (200 with the resource, or 204).
    pub async fn patch(&self, path: &str, body: &Value) -> Result<(), String> {
        self.send(Method::PATCH, path, Some(body), &[200, 204])
            .await
            .map(drop)
    }
}

fn json_of(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes)
        .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// ldap3 results as this tool's errors, naming what was asked.
pub trait LdapOutcome<T> {
    fn named(self, what: impl FnOnce() -> String) -> Result<T, String>;
}

impl LdapOutcome<()> for ldap3::result::Result<ldap3::LdapResult> {
    fn named(self, what: impl FnOnce() -> String) -> Result<(), String> {
        self.and_then(|r| r.success())
            .map(drop)
            .map_err(|e| format!("{}: {e}", what()))
    }
}

/// The entries a search finds; a failed search is an error naming it.
pub async fn search<S: AsRef<str> + Send + Sync>(
    ldap: &mut Ldap,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[S],
) -> Result<Vec<SearchEntry>, String> {
    let (entries, _) = ldap
        .search(base, scope, filter, attrs)
        .await
        .and_then(|r| r.success())
        .map_err(|e| format!("search {filter} at {base}: {e}"))?;
    Ok(entries.into_iter().map(SearchEntry::construct).collect())
}

/// A one-level search below `base` that must find exactly `expected` entries.
pub async fn search_expecting(
    ldap: &mut Ldap,
    base: &str,
    filter: &str,
    attrs: &[String],
    expected: usize,
) -> Result<Vec<SearchEntry>, String> {
    let entries = search(ldap, base, Scope::OneLevel, filter, attrs).await?;
    if entries.len() != expected {
        return Err(format!(
            "search {filter} below {base} found {} entries (expected {expected})",
            entries.len()
        ));
    }
    Ok(entries)
}
