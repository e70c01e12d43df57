//! What the directory itself charges for the SCIM answer: the create, update and disable writes
//! sent directly with ldap3, plain and with the controls the gateway's write carries (an
//! assertion that the entry is still that user, a post-read returning the entry for the
//! `200 OK` / `201 Created` body), in alternating rounds; the member adds plain and as the
//! gateway sends them (a search resolving the member's id, then the group's modify asserted on
//! the group or that member). No gateway runs here; the ratio of the gateway's shape of the
//! write to the plain one bounds what any gateway that writes as this one does can reach
//! against the plain write on this directory.
//!
//! Two more variants run in the same rounds: each worker's write with the answer's controls
//! follows a `GET /ServiceProviderConfig` through the gateway (TLS, HTTP,
//! token check, no directory work) on its own keep-alive connection. That is a gateway reduced
//! to its HTTPS exchange, on the same 2 cores as slapd; its throughput over the plain write's
//! bounds what a gateway that also parses the request and builds the answer can reach. A third
//! variant sends the same request to the bare HTTPS responder (`bare.rs`) instead: what any
//! HTTPS server, whatever its code, leaves of slapd's throughput on these cores. At concurrency
//! 1 the same variant's p50 over the plain write's is the floor of the added latency measured
//! as one (printed beside the floor summed from its parts; the match's only floor): a gateway
//! that did no work of its own would still have its HTTPS exchange, each side idle while the
//! other works (which on this machine costs a wake-up), and the directory's answer to pay. The
//! match's search (no controls) is measured the same way, plain and after each round trip.
//!
//! A member add as the gateway sends it is also timed in its two parts, the member-id search
//! and the asserted modify.
//!
//! The match and the create have one more variant: the gateway's own request sent to the thin
//! proxy (`proxy.rs`), the least a gateway on ldap3's pool can do for it, measured whole against
//! the plain operation. The match has a last one: the same request sent to the LDAP relay
//! (`relay.rs`), the least any gateway answering from the directory can do.
//!
//! Each variant also records the CPU per operation of slapd, of the load generator and of the
//! process that answered the HTTPS request (the gateway or the bare responder's).

use crate::cells::Snapshot;
use crate::process::cpu_ticks;
use crate::report::{quantile_ms, AfterHttps, ControlsReport, FloorReport, ResolvedParts};
use crate::runner::{run_pool, Conn, Http, Side};
use crate::scenarios::{Answer, Scenario, ScenarioRun};
use crate::Bench;
use std::sync::Arc;
use std::time::Duration;

/// The server of an HTTPS round trip that does no directory work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Https {
    /// `GET /ServiceProviderConfig` through the gateway.
    Gateway,
    /// The same request to the bare HTTPS responder.
    Bare,
}

/// How one variant of a shape reaches the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The load generator's own ldap3 connection.
    Direct,
    /// The same, each operation after an HTTPS round trip with no directory work.
    After(Https),
    /// The gateway's request, sent to the thin proxy in the bare responder's process
    /// (`proxy.rs`).
    ThinProxy,
    /// The same request to the LDAP relay in that process (`relay.rs`).
    Relay,
}

/// Each direct connection with an HTTPS client beside it: one worker of a paired variant.
fn paired(direct: &[Conn], https: Vec<Http>) -> Result<Vec<Conn>, String> {
    let mut out = Vec::with_capacity(direct.len());
    for (mut d, h) in direct.iter().cloned().zip(https) {
        out.push(Conn::Paired(d.ldap()?.clone(), h));
    }
    Ok(out)
}

pub async fn measure(b: &Bench, concurrency: usize) -> Result<Vec<ControlsReport>, String> {
    let s = &b.settings;
    let conns = b.connections(Side::Direct, concurrency).await?;
    // The answer's write also runs after an HTTPS round trip that does no directory work, per
    // operation on the same worker: through the gateway (what a gateway that cost nothing but
    // its HTTPS exchange would reach, on the cores slapd shares with it) and to the bare
    // responder (what any HTTPS server would).
    let through_gateway = paired(
        &conns,
        b.https_connections(Https::Gateway, concurrency).await?,
    )?;
    let through_bare = paired(&conns, b.https_connections(Https::Bare, concurrency).await?)?;
    // The thin proxy's clients: the match and the create as the gateway gets them, answered
    // from the directory by the least a gateway on ldap3's pool can do (`proxy.rs`).
    let to_proxy: Vec<Conn> = b
        .https_connections(Https::Bare, concurrency)
        .await?
        .into_iter()
        .map(Conn::Http)
        .collect();
    // The shapes of the scenarios this run measures; all of them when it measures none.
    let wanted = |s: Scenario| b.settings.scenarios.is_empty() || b.settings.scenarios.contains(&s);
    // The relay's clients: the match as the gateway gets it (`relay.rs`).
    let mut to_relay = Vec::new();
    if wanted(Scenario::Match) {
        to_relay.extend(
            b.relay_connections(concurrency)
                .await?
                .into_iter()
                .map(Conn::Http),
        );
    }
    let mut out = Vec::new();
    let member = &[Answer::Plain, Answer::Resolved][..];
    let shapes = [
        // A search carries no controls: only its bounds and floor are measured.
        (Scenario::Match, &[Answer::Plain][..]),
        (Scenario::Create, &[Answer::Plain, Answer::PostRead][..]),
        (Scenario::Update, &Answer::ALL[..]),
        (Scenario::Disable, &Answer::ALL[..]),
        (Scenario::MemberSmall, member),
        (Scenario::MemberBig, member),
    ];
    for (scenario, answers) in shapes.into_iter().filter(|(s, _)| wanted(*s)) {
        let with_controls = match answers.last() {
            Some(Answer::Resolved) => {
                "plain and as the gateway sends it (member-id search, asserted)"
            }
            _ if answers.len() > 1 => "with and without the answer's controls",
            _ => "plain",
        };
        let after = ", and after an HTTPS round trip (through the gateway, to the bare responder)";
        let label = scenario.label(&b.dir);
        let proxied = matches!(scenario, Scenario::Match | Scenario::Create);
        let thin = match scenario {
            Scenario::Match => "; the gateway's request to the thin proxy and to the relay",
            _ if proxied => "; the gateway's request to the thin proxy",
            _ => "",
        };
        eprintln!(
            "  {label} sent directly at concurrency {concurrency}, {with_controls}{after}{thin}"
        );
        // The gateway's write carries the last variant: both controls, a create's post-read, or
        // a member add's search and assertion.
        let answer = answers.len() - 1;
        let mut variants: Vec<(Answer, Via)> = answers.iter().map(|a| (*a, Via::Direct)).collect();
        variants.push((answers[answer], Via::After(Https::Gateway)));
        variants.push((answers[answer], Via::After(Https::Bare)));
        // The thin proxy, for the match and the create: no controls of the load generator's
        // own (the proxy's add carries the post-read) and no round trip before.
        if proxied {
            variants.push((Answer::Plain, Via::ThinProxy));
        }
        if scenario == Scenario::Match {
            variants.push((Answer::Plain, Via::Relay));
        }
        let n_variants = variants.len();
        let mut ops = vec![0usize; n_variants];
        let mut seconds = vec![0f64; n_variants];
        let mut slapd_ticks = vec![0u64; n_variants];
        // The CPU of the process answering the HTTPS request, and of the load generator.
        let mut server_ticks = vec![0u64; n_variants];
        let mut client_ticks = vec![0u64; n_variants];
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); n_variants];
        let (mut searches, mut modifies) = (Vec::new(), Vec::new());
        for round in 0..=s.rounds {
            let warmup = round == 0;
            for n in 0..n_variants {
                // A different variant first in each round.
                let v = (n + round) % n_variants;
                let (controls, via) = variants[v];
                // The proxy gets the gateway's requests.
                let side = match via {
                    Via::ThinProxy | Via::Relay => Side::Gateway,
                    _ => Side::Direct,
                };
                let work = Arc::new(ScenarioRun::new(
                    scenario,
                    side,
                    b.next_run(),
                    b.dir.clone(),
                    controls,
                ));
                let limit = if warmup { s.warmup } else { s.seconds };
                let workers = match via {
                    Via::Direct => &conns,
                    Via::After(Https::Gateway) => &through_gateway,
                    Via::After(Https::Bare) => &through_bare,
                    Via::ThinProxy => &to_proxy,
                    Via::Relay => &to_relay,
                };
                let server = match via {
                    Via::Direct => None,
                    Via::After(Https::Gateway) => Some(b.gw.pid()),
                    Via::After(Https::Bare) | Via::ThinProxy | Via::Relay => {
                        b.bare.as_ref().map(|r| r.pid())
                    }
                };
                let server_before = server.map(cpu_ticks).transpose()?;
                let before_run = Snapshot::take(b, Side::Direct).await?;
                let run = run_pool(
                    workers,
                    work.clone(),
                    scenario.capacity(&b.dir),
                    Some(limit),
                )
                .await
                .map_err(|e| format!("{:?} {label}: {e}", variants[v]))?;
                let after_run = Snapshot::take(b, Side::Direct).await?;
                let server_after = server.map(cpu_ticks).transpose()?;
                if !warmup {
                    ops[v] += run.latencies.len();
                    seconds[v] += run.elapsed.as_secs_f64();
                    slapd_ticks[v] += after_run.slapd_ticks() - before_run.slapd_ticks();
                    client_ticks[v] += after_run.client_ticks() - before_run.client_ticks();
                    if let (Some(a), Some(z)) = (server_before, server_after) {
                        server_ticks[v] += z - a;
                    }
                    latencies[v].extend(&run.latencies);
                    if via == Via::Direct {
                        for (search, modify) in work.parts.lock().expect("not poisoned").iter() {
                            searches.push(*search);
                            modifies.push(*modify);
                        }
                    }
                }
                work.undo(&b.admins, run.latencies.len()).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let rate = |v: usize| ops[v] as f64 / seconds[v];
        let per_op =
            |ticks: &[u64], v: usize| ticks[v] as f64 / b.ticks_per_second * 1000.0 / ops[v] as f64;
        let cpu = |v: usize| per_op(&slapd_ticks, v);
        let by_controls = |value: &dyn Fn(usize) -> f64| -> Vec<(Answer, f64)> {
            (0..answers.len()).map(|v| (answers[v], value(v))).collect()
        };
        let p50: Vec<f64> = latencies.iter_mut().map(|l| p50_ms(l)).collect();
        let after = |via: Via| {
            let v = variants.iter().position(|x| x.1 == via)?;
            Some(AfterHttps {
                ops_per_sec: rate(v),
                p50_ms: p50[v],
                over_plain: rate(v) / rate(0),
                slapd_cpu_ms_per_op: cpu(v),
                server_cpu_ms_per_op: per_op(&server_ticks, v),
                client_cpu_ms_per_op: per_op(&client_ticks, v),
            })
        };
        out.push(ControlsReport {
            scenario: label,
            concurrency,
            ops_per_sec: by_controls(&rate),
            slapd_cpu_ms_per_op: by_controls(&cpu),
            client_cpu_ms_per_op: by_controls(&|v| per_op(&client_ticks, v)),
            p50_ms: by_controls(&|v| p50[v]),
            answer: answers[answer],
            answer_over_plain: rate(answer) / rate(0),
            parts_p50_ms: (!searches.is_empty()).then(|| ResolvedParts {
                search: p50_ms(&mut searches),
                asserted_modify: p50_ms(&mut modifies),
            }),
            after_https: after(Via::After(Https::Gateway)),
            after_bare_https: after(Via::After(Https::Bare)),
            thin_proxy: after(Via::ThinProxy),
            relay: after(Via::Relay),
        });
    }
    Ok(out)
}

/// The median of `latencies` (sorted in place), in ms.
fn p50_ms(latencies: &mut [Duration]) -> f64 {
    latencies.sort();
    quantile_ms(latencies, 0.5)
}

/// `GET /ServiceProviderConfig` one at a time on one keep-alive HTTPS connection to `server`
/// for `limit`: the gateway's (or the bare responder's) round trip without any directory work.
/// With `after` (a concurrency-1 write cell and its direct p50), each request follows that long
/// a pause in which the server has nothing to do, as the gateway has nothing to do while its own
/// write waits for slapd: on this machine a process idle for milliseconds answers later than a
/// busy one, and a gateway is one more process to wake. The pause is spun by the load
/// generator, not slept (a timer would round it up to the millisecond and the load generator's
/// own wake-up is not the gateway's).
pub async fn https_floor(
    b: &Bench,
    server: Https,
    limit: Duration,
    after: Option<(String, Duration)>,
) -> Result<FloorReport, String> {
    let http = b.https_connections(server, 1).await?.remove(0);
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
        server,
        after: after.map(|(scenario, _)| scenario),
        idle_ms: idle.as_secs_f64() * 1000.0,
        requests: latencies.len(),
        p50_ms: quantile_ms(&latencies, 0.5),
        p99_ms: quantile_ms(&latencies, 0.99),
    })
}
