//! Tests for the rate limiter, with time driven by hand through `FakeRelativeClock`.

use super::*;
use governor::clock::FakeRelativeClock;
use std::net::{Ipv4Addr, Ipv6Addr};

fn quota(per_second: u32, burst: u32) -> Option<RateQuota> {
    Some(RateQuota {
        per_second: NonZeroU32::new(per_second).unwrap(),
        burst: NonZeroU32::new(burst).unwrap(),
    })
}

/// Settings with no limits at all, for tests to switch on only the quota they exercise.
fn unlimited() -> RateLimitSettings {
    RateLimitSettings {
        global_read: None,
        global_write: None,
        token_read: None,
        token_write: None,
        unauthenticated_per_ip: None,
        trusted_proxies: Vec::new(),
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn limiter(settings: &RateLimitSettings) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    let limiter = RateLimiter::with_clock(settings, &names(&["entra", "okta"]), clock.clone());
    (limiter, clock)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Exactly `n` requests pass, and the next is refused.
fn assert_passes_exactly(
    limiter: &RateLimiter<FakeRelativeClock>,
    token: &str,
    access: Access,
    n: u32,
) -> Limited {
    for i in 0..n {
        assert_eq!(limiter.check(token, access), Ok(()), "request {i} of {n}");
    }
    match limiter.check(token, access) {
        Err(limited) => limited,
        Ok(()) => panic!("request {n} passed beyond the burst of {n}"),
    }
}

// ---- token and global quotas ----

#[test]
fn burst_then_refusal_names_the_quota_and_the_wait() {
    let (limiter, _) = limiter(&RateLimitSettings {
        token_read: quota(10, 3),
        ..unlimited()
    });
    let refused = assert_passes_exactly(&limiter, "entra", Access::Read, 3);
    assert_eq!(refused.quota, QuotaKind::TokenRead);
    // No time has passed: the wait is exactly one emission interval, 1/10 s.
    assert_eq!(refused.retry_after, ms(100));
    assert_eq!(refused.retry_after_secs(), 1);
}

#[test]
fn retry_after_shrinks_as_time_passes() {
    let (limiter, clock) = limiter(&RateLimitSettings {
        token_write: quota(4, 1),
        ..unlimited()
    });
    assert_eq!(limiter.check("entra", Access::Write), Ok(()));
    clock.advance(ms(100));
    let refused = limiter.check("entra", Access::Write).unwrap_err();
    assert_eq!(refused.quota, QuotaKind::TokenWrite);
    assert_eq!(refused.retry_after, ms(150));
}

#[test]
fn bucket_refills_with_time() {
    let (limiter, clock) = limiter(&RateLimitSettings {
        token_read: quota(10, 3),
        ..unlimited()
    });
    assert_passes_exactly(&limiter, "entra", Access::Read, 3);
    clock.advance(ms(99));
    assert!(limiter.check("entra", Access::Read).is_err());
    clock.advance(ms(1));
    // One interval refills one request, not the burst.
    assert_passes_exactly(&limiter, "entra", Access::Read, 1);
    // A quiet spell of a whole burst's worth refills the burst, and no more.
    clock.advance(Duration::from_secs(10));
    assert_passes_exactly(&limiter, "entra", Access::Read, 3);
}

#[test]
fn tokens_have_independent_buckets() {
    let (limiter, _) = limiter(&RateLimitSettings {
        token_read: quota(10, 2),
        ..unlimited()
    });
    assert_passes_exactly(&limiter, "entra", Access::Read, 2);
    assert_passes_exactly(&limiter, "okta", Access::Read, 2);
    assert!(limiter.check("entra", Access::Read).is_err());
}

#[test]
fn reads_and_writes_have_independent_buckets() {
    let (limiter, _) = limiter(&RateLimitSettings {
        token_read: quota(10, 2),
        token_write: quota(10, 1),
        ..unlimited()
    });
    let refused = assert_passes_exactly(&limiter, "entra", Access::Write, 1);
    assert_eq!(refused.quota, QuotaKind::TokenWrite);
    let refused = assert_passes_exactly(&limiter, "entra", Access::Read, 2);
    assert_eq!(refused.quota, QuotaKind::TokenRead);
}

#[test]
fn global_quota_is_shared_across_tokens() {
    let (limiter, _) = limiter(&RateLimitSettings {
        global_read: quota(10, 5),
        global_write: quota(10, 1),
        token_read: quota(100, 100),
        ..unlimited()
    });
    for _ in 0..3 {
        assert_eq!(limiter.check("entra", Access::Read), Ok(()));
    }
    for _ in 0..2 {
        assert_eq!(limiter.check("okta", Access::Read), Ok(()));
    }
    let refused = limiter.check("okta", Access::Read).unwrap_err();
    assert_eq!(refused.quota, QuotaKind::GlobalRead);
    assert_eq!(refused.retry_after, ms(100));
    assert_eq!(
        limiter.check("entra", Access::Read).unwrap_err().quota,
        QuotaKind::GlobalRead
    );
    // Writes have their own global bucket.
    assert_eq!(limiter.check("entra", Access::Write), Ok(()));
    assert_eq!(
        limiter.check("okta", Access::Write).unwrap_err().quota,
        QuotaKind::GlobalWrite
    );
}

#[test]
fn token_refusals_do_not_spend_the_global_quota() {
    let (limiter, _) = limiter(&RateLimitSettings {
        global_read: quota(10, 2),
        token_read: quota(10, 1),
        ..unlimited()
    });
    assert_eq!(limiter.check("entra", Access::Read), Ok(()));
    for _ in 0..10 {
        assert_eq!(
            limiter.check("entra", Access::Read).unwrap_err().quota,
            QuotaKind::TokenRead
        );
    }
    // The global bucket still holds the second request of its burst.
    assert_eq!(limiter.check("okta", Access::Read), Ok(()));
    assert_eq!(
        limiter.check("okta", Access::Read).unwrap_err().quota,
        QuotaKind::TokenRead
    );
}

#[test]
fn unknown_token_is_held_to_the_global_quota_only() {
    let (limiter, _) = limiter(&RateLimitSettings {
        global_read: quota(10, 5),
        token_read: quota(10, 1),
        ..unlimited()
    });
    let refused = assert_passes_exactly(&limiter, "not-configured", Access::Read, 5);
    assert_eq!(refused.quota, QuotaKind::GlobalRead);
}

#[test]
fn no_quotas_never_refuse() {
    let (limiter, clock) = limiter(&unlimited());
    let addr = ip("192.0.2.1");
    for _ in 0..10_000 {
        assert_eq!(limiter.check("entra", Access::Read), Ok(()));
        assert_eq!(limiter.check("entra", Access::Write), Ok(()));
        assert_eq!(limiter.check("unknown", Access::Write), Ok(()));
        assert_eq!(limiter.record_failed_auth(addr), Ok(()));
        assert_eq!(limiter.check_blocked(addr), Ok(()));
    }
    clock.advance(Duration::from_secs(1));
    limiter.purge();
    assert_eq!(limiter.check_blocked(addr), Ok(()));
}

// ---- failed authentications per address ----

#[test]
fn failed_auth_blocks_the_address_until_the_wait_is_over() {
    let (limiter, clock) = limiter(&RateLimitSettings {
        unauthenticated_per_ip: quota(5, 2),
        ..unlimited()
    });
    let attacker = ip("203.0.113.9");
    let neighbour = ip("203.0.113.10");
    for _ in 0..2 {
        assert_eq!(limiter.check_blocked(attacker), Ok(()));
        assert_eq!(limiter.record_failed_auth(attacker), Ok(()));
    }
    assert_eq!(limiter.check_blocked(attacker), Ok(()));
    let over = limiter.record_failed_auth(attacker).unwrap_err();
    assert_eq!(over.quota, QuotaKind::UnauthenticatedIp);
    assert_eq!(over.retry_after, ms(200));

    // Now refused before any token check, and only this address.
    assert_eq!(
        limiter.check_blocked(attacker),
        Err(Limited {
            quota: QuotaKind::UnauthenticatedIp,
            retry_after: ms(200),
        })
    );
    assert_eq!(limiter.check_blocked(neighbour), Ok(()));

    clock.advance(ms(150));
    assert_eq!(
        limiter.check_blocked(attacker).unwrap_err().retry_after,
        ms(50)
    );
    clock.advance(ms(50));
    assert_eq!(limiter.check_blocked(attacker), Ok(()));
    // The quota has refilled one failure, and only one.
    assert_eq!(limiter.record_failed_auth(attacker), Ok(()));
    assert!(limiter.record_failed_auth(attacker).is_err());
}

#[test]
fn failed_auth_quota_is_per_address() {
    let (limiter, _) = limiter(&RateLimitSettings {
        unauthenticated_per_ip: quota(5, 1),
        ..unlimited()
    });
    assert_eq!(limiter.record_failed_auth(ip("192.0.2.1")), Ok(()));
    assert!(limiter.record_failed_auth(ip("192.0.2.1")).is_err());
    assert_eq!(limiter.record_failed_auth(ip("192.0.2.2")), Ok(()));
    assert_eq!(limiter.record_failed_auth(ip("2001:db8::1")), Ok(()));
    assert_eq!(limiter.check_blocked(ip("192.0.2.2")), Ok(()));
    assert!(limiter.check_blocked(ip("192.0.2.1")).is_err());
}

#[test]
fn ipv4_mapped_addresses_share_the_ipv4_bucket() {
    let (limiter, _) = limiter(&RateLimitSettings {
        unauthenticated_per_ip: quota(5, 1),
        ..unlimited()
    });
    let v4 = Ipv4Addr::new(192, 0, 2, 1);
    assert_eq!(
        limiter.record_failed_auth(IpAddr::V6(v4.to_ipv6_mapped())),
        Ok(())
    );
    assert!(limiter.record_failed_auth(IpAddr::V4(v4)).is_err());
    assert!(limiter
        .check_blocked(IpAddr::V6(v4.to_ipv6_mapped()))
        .is_err());
    assert!(limiter.check_blocked(IpAddr::V4(v4)).is_err());
}

#[test]
fn successful_checks_do_not_touch_the_address_quota() {
    let (limiter, _) = limiter(&RateLimitSettings {
        unauthenticated_per_ip: quota(5, 1),
        token_read: quota(1000, 1000),
        ..unlimited()
    });
    let addr = ip("192.0.2.1");
    for _ in 0..100 {
        assert_eq!(limiter.check_blocked(addr), Ok(()));
        assert_eq!(limiter.check("entra", Access::Read), Ok(()));
    }
    assert_eq!(limiter.record_failed_auth(addr), Ok(()));
}

#[test]
fn expired_blocks_are_removed_lazily() {
    let (limiter, clock) = limiter(&RateLimitSettings {
        unauthenticated_per_ip: quota(5, 1),
        ..unlimited()
    });
    let addr = ip("192.0.2.1");
    limiter.record_failed_auth(addr).unwrap();
    assert!(limiter.record_failed_auth(addr).is_err());
    assert_eq!(limiter.lock_blocked().until.len(), 1);
    clock.advance(Duration::from_secs(1));
    assert_eq!(limiter.check_blocked(addr), Ok(()));
    assert!(limiter.lock_blocked().until.is_empty());
}

#[test]
fn purge_keeps_memory_bounded_after_a_flood() {
    let (limiter, clock) = limiter(&RateLimitSettings {
        unauthenticated_per_ip: quota(5, 1),
        ..unlimited()
    });
    let failed_auth = limiter.failed_auth.as_ref().unwrap();
    let addrs: Vec<IpAddr> = (0..10_000u32)
        .map(|i| {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                (i >> 16) as u16,
                i as u16,
            ))
        })
        .collect();
    for &addr in &addrs {
        assert_eq!(limiter.record_failed_auth(addr), Ok(()));
        assert!(limiter.record_failed_auth(addr).is_err());
    }
    assert_eq!(limiter.lock_blocked().until.len(), 10_000);
    assert_eq!(failed_auth.len(), 10_000);

    // Too early: every address is still blocked and remembered.
    limiter.purge();
    assert_eq!(limiter.lock_blocked().until.len(), 10_000);
    assert_eq!(failed_auth.len(), 10_000);

    clock.advance(Duration::from_secs(60));
    limiter.purge();
    assert!(limiter.lock_blocked().until.is_empty());
    assert!(limiter.lock_blocked().until.capacity() < 10_000);
    assert!(failed_auth.is_empty());
    for &addr in &addrs[..10] {
        assert_eq!(limiter.check_blocked(addr), Ok(()));
    }
}

#[test]
fn full_blocked_map_sweeps_expired_entries_or_skips_the_insert() {
    let clock = FakeRelativeClock::default();
    let settings = RateLimitSettings {
        unauthenticated_per_ip: quota(5, 1),
        ..unlimited()
    };
    let limiter = RateLimiter::with_blocked_capacity(&settings, &[], clock.clone(), 3);
    let flood = |addr: IpAddr| {
        limiter.record_failed_auth(addr).unwrap();
        limiter.record_failed_auth(addr).unwrap_err()
    };
    for i in 1..=3 {
        flood(IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)));
    }
    assert_eq!(limiter.lock_blocked().until.len(), 3);

    // Full of live entries: the fourth address is refused by the keyed limiter but not
    // remembered for the early check.
    let fourth = ip("192.0.2.4");
    assert_eq!(flood(fourth).quota, QuotaKind::UnauthenticatedIp);
    assert_eq!(limiter.lock_blocked().until.len(), 3);
    assert_eq!(limiter.check_blocked(fourth), Ok(()));
    assert!(limiter.record_failed_auth(fourth).is_err());
    // The addresses already remembered stay blocked.
    assert!(limiter.check_blocked(ip("192.0.2.1")).is_err());

    // Once the old entries expire, a new address makes room by sweeping them.
    clock.advance(Duration::from_secs(2));
    let fifth = ip("192.0.2.5");
    flood(fifth);
    assert_eq!(limiter.lock_blocked().until.len(), 1);
    assert!(limiter.check_blocked(fifth).is_err());
}

#[test]
fn full_blocked_map_is_not_swept_on_every_failure() {
    let clock = FakeRelativeClock::default();
    let settings = RateLimitSettings {
        unauthenticated_per_ip: quota(5, 1),
        ..unlimited()
    };
    let limiter = RateLimiter::with_blocked_capacity(&settings, &[], clock.clone(), 1);
    let flood = |addr: IpAddr| {
        limiter.record_failed_auth(addr).unwrap();
        limiter.record_failed_auth(addr).unwrap_err()
    };
    flood(ip("192.0.2.1"));
    flood(ip("192.0.2.2")); // full: sweeps (nothing expired) and skips
    clock.advance(ms(500)); // the first block has expired, but the sweep interval has not passed
    flood(ip("192.0.2.3"));
    assert_eq!(limiter.lock_blocked().until.len(), 1);
    assert!(limiter.check_blocked(ip("192.0.2.3")).is_ok());
    clock.advance(ms(500));
    flood(ip("192.0.2.4"));
    assert!(limiter.check_blocked(ip("192.0.2.4")).is_err());
}

// ---- Retry-After, defaults, labels ----

#[test]
fn retry_after_secs_rounds_up_to_at_least_one() {
    let secs = |d: Duration| {
        Limited {
            quota: QuotaKind::GlobalRead,
            retry_after: d,
        }
        .retry_after_secs()
    };
    assert_eq!(secs(ms(200)), 1);
    assert_eq!(secs(ms(1000)), 1);
    assert_eq!(secs(ms(1200)), 2);
    assert_eq!(secs(Duration::ZERO), 1);
    assert_eq!(secs(Duration::from_nanos(1)), 1);
    assert_eq!(secs(Duration::new(2, 1)), 3);
    assert_eq!(secs(Duration::MAX), u64::MAX);
}

#[test]
fn defaults_are_as_documented() {
    let d = RateLimitSettings::default();
    assert_eq!(d.global_read, quota(1000, 2000));
    assert_eq!(d.global_write, quota(200, 400));
    assert_eq!(d.token_read, quota(100, 200));
    assert_eq!(d.token_write, quota(50, 100));
    assert_eq!(d.unauthenticated_per_ip, quota(5, 20));
    assert!(d.trusted_proxies.is_empty());
}

/// Entra ID provisions at up to 25 requests per second per tenant, in bursts.
const ENTRA_PER_SECOND: u32 = 25;

#[test]
fn default_token_quotas_leave_room_for_entra() {
    let d = RateLimitSettings::default();
    for (name, token, global) in [
        ("read", d.token_read, d.global_read),
        ("write", d.token_write, d.global_write),
    ] {
        let token = token.unwrap();
        let global = global.unwrap();
        assert!(token.per_second.get() >= ENTRA_PER_SECOND, "token {name}");
        assert!(
            token.burst.get() > token.per_second.get(),
            "token {name} burst"
        );
        assert!(global.per_second >= token.per_second, "global {name}");
        assert!(global.burst >= token.burst, "global {name} burst");
    }
}

#[test]
fn default_limiter_passes_entra_sustained_load_with_a_burst() {
    let clock = FakeRelativeClock::default();
    let limiter = RateLimiter::with_clock(
        &RateLimitSettings::default(),
        &names(&["entra"]),
        clock.clone(),
    );
    // A burst of 2 s worth of requests at once, then 25/s for a minute, all writes.
    for _ in 0..2 * ENTRA_PER_SECOND {
        assert_eq!(limiter.check("entra", Access::Write), Ok(()));
    }
    for _ in 0..60 * ENTRA_PER_SECOND {
        clock.advance(ms(1000 / u64::from(ENTRA_PER_SECOND)));
        assert_eq!(limiter.check("entra", Access::Write), Ok(()));
        assert_eq!(limiter.check("entra", Access::Read), Ok(()));
    }
}

#[test]
fn labels_are_the_fixed_metric_values() {
    let labels: Vec<&str> = QuotaKind::ALL.iter().map(|k| k.label()).collect();
    assert_eq!(
        labels,
        [
            "global_read",
            "global_write",
            "token_read",
            "token_write",
            "unauthenticated_ip"
        ]
    );
}

// ---- construction ----

#[test]
fn trusted_proxies_come_from_the_settings() {
    let settings = RateLimitSettings {
        trusted_proxies: vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        ..unlimited()
    };
    let (limiter, _) = limiter(&settings);
    assert_eq!(
        limiter.trusted_proxies(),
        settings.trusted_proxies.as_slice()
    );
}

#[test]
fn real_clock_limiter_enforces_quotas() {
    let settings = RateLimitSettings {
        token_read: quota(1, 2),
        ..unlimited()
    };
    let limiter = RateLimiter::new(&settings, &names(&["entra"]));
    assert_eq!(limiter.check("entra", Access::Read), Ok(()));
    assert_eq!(limiter.check("entra", Access::Read), Ok(()));
    let refused = limiter.check("entra", Access::Read).unwrap_err();
    assert_eq!(refused.quota, QuotaKind::TokenRead);
    assert!(refused.retry_after <= Duration::from_secs(1));
}

#[test]
fn limiter_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RateLimiter>();
    assert_send_sync::<RateLimiter<FakeRelativeClock>>();
}
