//! Request rate limits: global and per-token quotas for reads and writes, and a per-address
//! quota on failed authentications, kept by `governor`.
//!
//! The limiter is generic over `governor`'s clock so that tests drive time by hand; nothing here
//! reads the system clock directly.

use crate::http::client_ip::Cidr;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Most addresses remembered as blocked at once; beyond that a flood from many addresses is
/// still refused by the keyed limiter, just without the cheap early answer.
const BLOCKED_CAPACITY: usize = 100_000;

/// Least time between two sweeps of a full blocked map, so that a flood of new addresses
/// cannot make every failed authentication pay for a scan of the whole map.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One quota: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    /// Requests per second allowed indefinitely.
    pub per_second: NonZeroU32,
    /// Requests allowed at once after a quiet spell.
    pub burst: NonZeroU32,
}

impl RateQuota {
    /// For the built-in defaults, evaluated in `const` blocks so that a zero fails the build
    /// rather than panicking at run time.
    const fn constant(per_second: u32, burst: u32) -> Self {
        match (NonZeroU32::new(per_second), NonZeroU32::new(burst)) {
            (Some(per_second), Some(burst)) => RateQuota { per_second, burst },
            _ => panic!("a built-in quota is zero"),
        }
    }

    fn governor_quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// The rate limits the gateway enforces. `None` means no limit of that kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Reads by all clients together.
    pub global_read: Option<RateQuota>,
    /// Writes by all clients together.
    pub global_write: Option<RateQuota>,
    /// Reads per bearer token (each token has its own bucket).
    pub token_read: Option<RateQuota>,
    /// Writes per bearer token (each token has its own bucket).
    pub token_write: Option<RateQuota>,
    /// Failed authentications per client address.
    pub unauthenticated_per_ip: Option<RateQuota>,
    /// Proxies whose forwarding headers name the client address.
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for RateLimitSettings {
    /// Per-token quotas sit well above the 25 requests per second Entra ID sends per tenant, so
    /// a default gateway never throttles a well-behaved provisioning client.
    fn default() -> Self {
        RateLimitSettings {
            global_read: Some(const { RateQuota::constant(1000, 2000) }),
            global_write: Some(const { RateQuota::constant(200, 400) }),
            token_read: Some(const { RateQuota::constant(100, 200) }),
            token_write: Some(const { RateQuota::constant(50, 100) }),
            unauthenticated_per_ip: Some(const { RateQuota::constant(5, 20) }),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Whether a request reads or changes the directory; each has its own quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Which quota refused a request; `label()` gives the fixed metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    GlobalRead,
    GlobalWrite,
    TokenRead,
    TokenWrite,
    UnauthenticatedIp,
}

impl QuotaKind {
    /// Every kind, for registering metric label values up front.
    pub const ALL: [QuotaKind; 5] = [
        QuotaKind::GlobalRead,
        QuotaKind::GlobalWrite,
        QuotaKind::TokenRead,
        QuotaKind::TokenWrite,
        QuotaKind::UnauthenticatedIp,
    ];

    /// The metric label value for this quota.
    pub fn label(self) -> &'static str {
        match self {
            QuotaKind::GlobalRead => "global_read",
            QuotaKind::GlobalWrite => "global_write",
            QuotaKind::TokenRead => "token_read",
            QuotaKind::TokenWrite => "token_write",
            QuotaKind::UnauthenticatedIp => "unauthenticated_ip",
        }
    }
}

/// A refused request: the quota, and how long until it would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub quota: QuotaKind,
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for the Retry-After header, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        // Rounding down would send clients back before their quota refills, earning them
        // another 429; 0 would invite an immediate retry.
        let partial = u64::from(self.retry_after.subsec_nanos() > 0);
        self.retry_after.as_secs().saturating_add(partial).max(1)
    }
}

/// An un-keyed `governor` limiter on clock `C`.
type Bucket<C> =
    governor::RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A `governor` limiter with one bucket per client address.
type PerAddress<C> = governor::RateLimiter<
    IpAddr,
    DashMapStateStore<IpAddr>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// One token's buckets.
struct TokenBuckets<C: Clock> {
    read: Option<Bucket<C>>,
    write: Option<Bucket<C>>,
}

/// Addresses refused until a given instant, so that `check_blocked` can answer before the
/// token is hashed.
struct Blocked<I> {
    until: HashMap<IpAddr, I>,
    /// Before this instant a full map is not swept again.
    next_sweep: Option<I>,
}

/// The gateway's rate limits, checked per request.
pub struct RateLimiter<C: Clock + Clone = DefaultClock> {
    clock: C,
    global_read: Option<Bucket<C>>,
    global_write: Option<Bucket<C>>,
    /// Built once: the configured token names are a fixed set, so this map cannot grow.
    tokens: HashMap<String, TokenBuckets<C>>,
    failed_auth: Option<PerAddress<C>>,
    blocked: Mutex<Blocked<C::Instant>>,
    blocked_capacity: usize,
    trusted_proxies: Vec<Cidr>,
}

impl RateLimiter<DefaultClock> {
    /// A limiter on the monotonic system clock.
    pub fn new(settings: &RateLimitSettings, tokens: &[String]) -> Self {
        Self::with_clock(settings, tokens, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// `tokens` are the names of the configured bearer tokens; each gets its own read and write
    /// bucket.
    pub fn with_clock(settings: &RateLimitSettings, tokens: &[String], clock: C) -> Self {
        Self::with_blocked_capacity(settings, tokens, clock, BLOCKED_CAPACITY)
    }

    fn with_blocked_capacity(
        settings: &RateLimitSettings,
        tokens: &[String],
        clock: C,
        blocked_capacity: usize,
    ) -> Self {
        let bucket = |quota: Option<RateQuota>| {
            quota.map(|q| Bucket::direct_with_clock(q.governor_quota(), clock.clone()))
        };
        RateLimiter {
            global_read: bucket(settings.global_read),
            global_write: bucket(settings.global_write),
            tokens: tokens
                .iter()
                .map(|name| {
                    let buckets = TokenBuckets {
                        read: bucket(settings.token_read),
                        write: bucket(settings.token_write),
                    };
                    (name.clone(), buckets)
                })
                .collect(),
            failed_auth: settings
                .unauthenticated_per_ip
                .map(|q| PerAddress::dashmap_with_clock(q.governor_quota(), clock.clone())),
            blocked: Mutex::new(Blocked {
                until: HashMap::new(),
                next_sweep: None,
            }),
            blocked_capacity,
            trusted_proxies: settings.trusted_proxies.clone(),
            clock,
        }
    }

    /// Before the token is checked: refuse at once an IP that recently exceeded its
    /// failed-authentication quota (cheap: no hashing).
    pub fn check_blocked(&self, ip: IpAddr) -> Result<(), Limited> {
        if self.failed_auth.is_none() {
            return Ok(());
        }
        let ip = ip.to_canonical();
        let now = self.clock.now();
        let mut blocked = self.lock_blocked();
        match blocked.until.get(&ip).copied() {
            Some(until) if until > now => Err(Limited {
                quota: QuotaKind::UnauthenticatedIp,
                retry_after: until.duration_since(now).into(),
            }),
            Some(_) => {
                blocked.until.remove(&ip);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// After a failed token check: count it against the IP's quota. `Err` means the IP is now
    /// over quota (answer 429, not 401) and is blocked until the quota would pass again.
    pub fn record_failed_auth(&self, ip: IpAddr) -> Result<(), Limited> {
        let Some(limiter) = &self.failed_auth else {
            return Ok(());
        };
        let ip = ip.to_canonical();
        limiter.check_key(&ip).map_err(|not_until| {
            self.block(ip, not_until.earliest_possible());
            self.limited(QuotaKind::UnauthenticatedIp, &not_until)
        })
    }

    /// After a successful token check: the token's quota for this access kind, then the global
    /// one.
    ///
    /// An unknown token name is held to the global quota only.
    pub fn check(&self, token: &str, access: Access) -> Result<(), Limited> {
        // The token's own quota goes first, so a client over it is refused without spending
        // the global budget the other clients share.
        if let Some(buckets) = self.tokens.get(token) {
            let (bucket, kind) = match access {
                Access::Read => (&buckets.read, QuotaKind::TokenRead),
                Access::Write => (&buckets.write, QuotaKind::TokenWrite),
            };
            self.take(bucket.as_ref(), kind)?;
        }
        let (bucket, kind) = match access {
            Access::Read => (&self.global_read, QuotaKind::GlobalRead),
            Access::Write => (&self.global_write, QuotaKind::GlobalWrite),
        };
        self.take(bucket.as_ref(), kind)
    }

    /// Forget per-IP state that no longer matters (called periodically, so memory stays
    /// bounded under floods from many addresses).
    pub fn purge(&self) {
        if let Some(limiter) = &self.failed_auth {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = self.clock.now();
        let mut blocked = self.lock_blocked();
        blocked.until.retain(|_, until| *until > now);
        blocked.until.shrink_to_fit();
    }

    /// The trusted proxy networks (for `client_ip`).
    pub fn trusted_proxies(&self) -> &[Cidr] {
        &self.trusted_proxies
    }

    fn take(&self, bucket: Option<&Bucket<C>>, quota: QuotaKind) -> Result<(), Limited> {
        match bucket {
            None => Ok(()),
            Some(bucket) => bucket
                .check()
                .map_err(|not_until| self.limited(quota, &not_until)),
        }
    }

    fn limited(&self, quota: QuotaKind, not_until: &NotUntil<C::Instant>) -> Limited {
        Limited {
            quota,
            retry_after: not_until.wait_time_from(self.clock.now()),
        }
    }

    /// Remember that `ip` is refused until `until`, within the map's capacity.
    fn block(&self, ip: IpAddr, until: C::Instant) {
        let mut blocked = self.lock_blocked();
        if !blocked.until.contains_key(&ip) && blocked.until.len() >= self.blocked_capacity {
            let now = self.clock.now();
            if blocked.next_sweep.is_none_or(|next| now >= next) {
                blocked.until.retain(|_, u| *u > now);
                blocked.next_sweep = Some(now + Nanos::from(SWEEP_INTERVAL));
            }
            if blocked.until.len() >= self.blocked_capacity {
                // The keyed limiter still answers 429 on this address's next failure.
                return;
            }
        }
        let entry = blocked.until.entry(ip).or_insert(until);
        *entry = (*entry).max(until);
    }

    fn lock_blocked(&self) -> MutexGuard<'_, Blocked<C::Instant>> {
        // Every critical section leaves the map consistent, so a panic elsewhere while holding
        // the lock must not switch rate limiting off.
        self.blocked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
