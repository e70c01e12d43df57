//! Benchmark: PATCH add-one-member latency through the gateway on a 10-member and on a
//! 100,000-member group, next to the same change sent directly to slapd with ldap3.
//!
//! Run: `cargo run --release --example membership_bench [-- ITERATIONS]` (default 300).
//! It starts its own slapd (the demo directory plus 100,000 bulk users) and the gateway with TLS,
//! interleaves the measurements, prints a markdown table and writes
//! `target/bench/membership.json`.
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
#[path = "../tests/integration/slapd.rs"]
mod slapd;

#[allow(dead_code, unused_imports)]
#[path = "../tests/integration/gateway.rs"]
mod gateway;

use gateway::{first, people_dn, TestGateway};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const SMALL: &str = "cn=small,ou=groups,dc=example,dc=org";
const BIG: &str = "cn=big,ou=groups,dc=example,dc=org";

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn quantile(&self, q: f64) -> f64 {
        let mut v: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i]
    }
    fn mean(&self) -> f64 {
        self.0.iter().map(|d| d.as_secs_f64() * 1000.0).sum::<f64>() / self.0.len() as f64
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("big.ldif");
    eprintln!("building the directory (100,000 users, groups of 10 and 100,000 members)...");
    slapd::write_big_group_ldif(&ldif, 100_000);
    let gw = TestGateway::start_on(slapd::Slapd::start_with_ldif(&ldif), |t| t).await;
    let alice = gw.seeded_id("alice").await;
    let alice_dn = people_dn("alice");
    let mut direct = gw.slapd.admin().await;

    let mut results = Vec::new();
    let groups = [("10 members", SMALL), ("100,000 members", BIG)];
    let mut ids = Vec::new();
    for (_, dn) in groups {
        ids.push(first(&gw.slapd.entry(dn).await.unwrap(), "entryUUID").unwrap());
    }
    let mut via_gateway = [Samples::default(), Samples::default()];
    let mut via_ldap3 = [Samples::default(), Samples::default()];
    let add = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations":[{"op":"Add","path":"members","value":[{"value": alice}]}]});
    let remove = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations":[{"op":"Remove","path":"members","value":[{"value": alice}]}]});
    let member: HashSet<&str> = [alice_dn.as_str()].into_iter().collect();
    // Warm-up, then interleave: gateway small, gateway big, ldap3 small, ldap3 big.
    for round in 0..iterations + 20 {
        for (i, id) in ids.iter().enumerate() {
            let started = Instant::now();
            gw.patch(&format!("/Groups/{id}"), &add).await.expect(204);
            let took = started.elapsed();
            gw.patch(&format!("/Groups/{id}"), &remove)
                .await
                .expect(204);
            if round >= 20 {
                via_gateway[i].0.push(took);
            }
        }
        for (i, (_, dn)) in groups.iter().enumerate() {
            let started = Instant::now();
            direct
                .modify(dn, vec![ldap3::Mod::Add("member", member.clone())])
                .await
                .unwrap()
                .success()
                .unwrap();
            let took = started.elapsed();
            direct
                .modify(dn, vec![ldap3::Mod::Delete("member", member.clone())])
                .await
                .unwrap()
                .success()
                .unwrap();
            if round >= 20 {
                via_ldap3[i].0.push(took);
            }
        }
    }

    println!("| group | gateway p50 (ms) | gateway p99 (ms) | gateway mean (ms) | ldap3 p50 (ms) | ldap3 p99 (ms) |");
    println!("|---|---|---|---|---|---|");
    for (i, (name, _)) in groups.iter().enumerate() {
        let (g, d) = (&via_gateway[i], &via_ldap3[i]);
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            g.quantile(0.5),
            g.quantile(0.99),
            g.mean(),
            d.quantile(0.5),
            d.quantile(0.99)
        );
        results.push(json!({
            "group": name,
            "iterations": iterations,
            "gateway_ms": {"p50": g.quantile(0.5), "p99": g.quantile(0.99), "mean": g.mean()},
            "ldap3_ms": {"p50": d.quantile(0.5), "p99": d.quantile(0.99), "mean": d.mean()},
        }));
    }
    let ratio_p50 = via_gateway[1].quantile(0.5) / via_gateway[0].quantile(0.5);
    let ratio_mean = via_gateway[1].mean() / via_gateway[0].mean();
    println!();
    println!("100,000-member / 10-member gateway latency: p50 ratio {ratio_p50:.2}, mean ratio {ratio_mean:.2} (target <= 1.5)");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let report = json!({"scenario": "membership add-one-member", "results": results,
        "ratio_p50": ratio_p50, "ratio_mean": ratio_mean, "machine": "2 cores"});
    std::fs::write(
        out.join("membership.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
}
