//! What the directory itself charges for the SCIM answer: the create, update and disable writes
//! sent directly with ldap3, plain and with the controls the gateway's write carries (an
//! assertion that the entry is still that user, a post-read returning the entry for the
//! `200 OK` / `201 Created` body), in alternating rounds; the member adds plain and as the
//! gateway sends them (a search resolving the member's id, then the group's modify asserted on
//! the group or that member). No gateway runs here; the ratio of the gateway's shape of the
//! write to the plain one bounds what any gateway that writes as this one does can reach
//! against the plain write on this directory, and its extra p50 plus the gateway's HTTPS round
//! trip is the floor of its added latency.
//!
//! Above concurrency 1 one more variant runs in the same rounds: each worker's write with the
//! answer's controls follows a `GET /ServiceProviderConfig` through the gateway (TLS, HTTP,
//! token check, no directory work) on its own keep-alive connection. That is a gateway reduced
//! to its HTTPS exchange, on the same 2 cores as slapd; its throughput over the plain write's
//! bounds what a gateway that also parses the request and builds the answer can reach. The
//! match's search (no controls) is measured the same way, plain and after the round trip.

use crate::cells::Snapshot;
use crate::report::{quantile_ms, AfterHttps, ControlsReport, FloorReport};
use crate::runner::{run_pool, Conn, Side};
use crate::scenarios::{Answer, Scenario, ScenarioRun};
use crate::Bench;
use std::sync::Arc;
use std::time::Duration;

pub async fn measure(b: &Bench, concurrency: usize) -> Result<Vec<ControlsReport>, String> {
    let s = &b.settings;
    let conns = b.connections(Side::Direct, concurrency).await?;
    // Above concurrency 1 the answer's write also runs after an HTTPS round trip through the
    // gateway that does no directory work, per operation on the same worker: what a gateway
    // that cost nothing but its HTTPS exchange would reach, on the cores slapd shares with it.
    let paired = if concurrency > 1 {
        let https = b.connections(Side::Gateway, concurrency).await?;
        let mut out = Vec::with_capacity(concurrency);
        for (mut direct, gateway) in conns.iter().cloned().zip(https) {
            out.push(Conn::Paired(
                direct.ldap()?.clone(),
                gateway.http()?.clone(),
            ));
        }
        out
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    let member = &[Answer::Plain, Answer::Resolved][..];
    let mut shapes = vec![
        (Scenario::Create, &[Answer::Plain, Answer::PostRead][..]),
        (Scenario::Update, &Answer::ALL[..]),
        (Scenario::Disable, &Answer::ALL[..]),
        (Scenario::MemberSmall, member),
        (Scenario::MemberBig, member),
    ];
    if !paired.is_empty() {
        // A search carries no controls: only its bound is measured.
        shapes.insert(0, (Scenario::Match, &[Answer::Plain][..]));
    }
    for (scenario, answers) in shapes {
        let with_controls = match answers.last() {
            Some(Answer::Resolved) => {
                "plain and as the gateway sends it (member-id search, asserted)"
            }
            _ if answers.len() > 1 => "with and without the answer's controls",
            _ => "plain",
        };
        let after = if paired.is_empty() {
            ""
        } else {
            ", and after an HTTPS round trip"
        };
        let label = scenario.label(&b.dir);
        eprintln!("  {label} sent directly at concurrency {concurrency}, {with_controls}{after}");
        // The gateway's write carries the last variant: both controls, a create's post-read, or
        // a member add's search and assertion.
        let answer = answers.len() - 1;
        // (controls, after an HTTPS round trip)
        let mut variants: Vec<(Answer, bool)> = answers.iter().map(|a| (*a, false)).collect();
        if !paired.is_empty() {
            variants.push((answers[answer], true));
        }
        let n_variants = variants.len();
        let mut ops = vec![0usize; n_variants];
        let mut seconds = vec![0f64; n_variants];
        let mut slapd_ticks = vec![0u64; n_variants];
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); n_variants];
        for round in 0..=s.rounds {
            let warmup = round == 0;
            for n in 0..n_variants {
                // A different variant first in each round.
                let v = (n + round) % n_variants;
                let (controls, after_https) = variants[v];
                let work = Arc::new(ScenarioRun {
                    scenario,
                    side: Side::Direct,
                    run: b.next_run(),
                    dir: b.dir.clone(),
                    answer: controls,
                });
                let limit = if warmup { s.warmup } else { s.seconds };
                let workers = if after_https { &paired } else { &conns };
                let before = Snapshot::take(b, Side::Direct).await?;
                let run = run_pool(
                    workers,
                    work.clone(),
                    scenario.capacity(&b.dir),
                    Some(limit),
                )
                .await
                .map_err(|e| format!("{:?} {label}: {e}", variants[v]))?;
                let after = Snapshot::take(b, Side::Direct).await?;
                if !warmup {
                    ops[v] += run.latencies.len();
                    seconds[v] += run.elapsed.as_secs_f64();
                    slapd_ticks[v] += after.slapd_ticks() - before.slapd_ticks();
                    latencies[v].extend(&run.latencies);
                }
                work.undo(&b.admins, run.latencies.len()).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let rate = |v: usize| ops[v] as f64 / seconds[v];
        let cpu = |v: usize| slapd_ticks[v] as f64 / b.ticks_per_second * 1000.0 / ops[v] as f64;
        let by_controls = |value: &dyn Fn(usize) -> f64| -> Vec<(Answer, f64)> {
            (0..answers.len()).map(|v| (answers[v], value(v))).collect()
        };
        let p50: Vec<f64> = latencies
            .iter_mut()
            .map(|l| {
                l.sort();
                quantile_ms(l, 0.5)
            })
            .collect();
        out.push(ControlsReport {
            scenario: label,
            concurrency,
            ops_per_sec: by_controls(&rate),
            slapd_cpu_ms_per_op: by_controls(&cpu),
            p50_ms: by_controls(&|v| p50[v]),
            answer: answers[answer],
            answer_over_plain: rate(answer) / rate(0),
            after_https: (n_variants > answers.len()).then(|| {
                let v = n_variants - 1;
                AfterHttps {
                    ops_per_sec: rate(v),
                    p50_ms: p50[v],
                    over_plain: rate(v) / rate(0),
                }
            }),
        });
    }
    Ok(out)
}

/// `GET /ServiceProviderConfig` one at a time on one keep-alive HTTPS connection for `limit`:
/// the gateway's round trip without any directory work. With `after` (a concurrency-1 write
/// cell and its direct p50), each request follows that long a pause in which the gateway has
/// nothing to do, as it has nothing to do while its own write waits for slapd: on this machine
/// a process idle for milliseconds answers later than a busy one, and a gateway is one more
/// process to wake. The pause is spun by the load generator, not slept (a timer would round
/// it up to the millisecond and the load generator's own wake-up is not the gateway's).
pub async fn https_floor(
    b: &Bench,
    limit: Duration,
    after: Option<(String, Duration)>,
) -> Result<FloorReport, String> {
    let conns = b.connections(Side::Gateway, 1).await?;
    let http = conns[0].http()?;
    let idle = after.as_ref().map(|(_, d)| *d).unwrap_or_default();
    let mut latencies = Vec::new();
    for measured in [false, true] {
        let limit = if measured { limit } else { b.settings.warmup };
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            let pause = std::time::Instant::now();
            while pause.elapsed() < idle {
                std::hint::spin_loop();
            }
            let t = std::time::Instant::now();
            http.get("/ServiceProviderConfig", 200).await?;
            if measured {
                latencies.push(t.elapsed());
            }
        }
    }
    latencies.sort();
    Ok(FloorReport {
        after: after.map(|(scenario, _)| scenario),
        idle_ms: idle.as_secs_f64() * 1000.0,
        requests: latencies.len(),
        p50_ms: quantile_ms(&latencies, 0.5),
        p99_ms: quantile_ms(&latencies, 0.99),
    })
}
