//! What the directory itself charges for the SCIM answer: the create, update and disable writes
//! sent directly with ldap3, plain and with the controls the gateway's write carries (an
//! assertion that the entry is still that user, a post-read returning the entry for the
//! `200 OK` / `201 Created` body), in alternating rounds. No gateway runs here; the ratio of the write with the answer's
//! controls to the plain one bounds what any gateway that answers with the resource can reach
//! against the plain write on this directory, and these costs plus the gateway's HTTPS round
//! trip are the floor of its added latency.

use crate::cells::Snapshot;
use crate::report::{quantile_ms, ControlsReport, FloorReport};
use crate::runner::{run_pool, Side};
use crate::scenarios::{Answer, Scenario, ScenarioRun};
use crate::Bench;
use std::sync::Arc;
use std::time::Duration;

pub async fn measure(b: &Bench, concurrency: usize) -> Result<Vec<ControlsReport>, String> {
    let s = &b.settings;
    let conns = b.connections(Side::Direct, concurrency).await?;
    let mut out = Vec::new();
    for (scenario, answers) in [
        (Scenario::Create, &[Answer::Plain, Answer::PostRead][..]),
        (Scenario::Update, &Answer::ALL[..]),
        (Scenario::Disable, &Answer::ALL[..]),
    ] {
        eprintln!(
            "  {} written directly at concurrency {concurrency}, with and without the answer's controls",
            scenario.option()
        );
        let n_answers = answers.len();
        let mut ops = vec![0usize; n_answers];
        let mut seconds = vec![0f64; n_answers];
        let mut slapd_ticks = vec![0u64; n_answers];
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); n_answers];
        for round in 0..=s.rounds {
            let warmup = round == 0;
            for n in 0..n_answers {
                // A different variant first in each round.
                let v = (n + round) % n_answers;
                let work = Arc::new(ScenarioRun {
                    scenario,
                    side: Side::Direct,
                    run: b.next_run(),
                    dir: b.dir.clone(),
                    answer: answers[v],
                });
                let limit = if warmup { s.warmup } else { s.seconds };
                let before = Snapshot::take(b, Side::Direct).await?;
                let run = run_pool(&conns, work.clone(), scenario.capacity(&b.dir), Some(limit))
                    .await
                    .map_err(|e| format!("{:?} {}: {e}", answers[v], scenario.option()))?;
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
        // The gateway's write carries the last variant: both controls, or a create's post-read.
        let answer = n_answers - 1;
        out.push(ControlsReport {
            scenario: scenario.option().to_string(),
            concurrency,
            ops_per_sec: answers
                .iter()
                .enumerate()
                .map(|(v, a)| (*a, rate(v)))
                .collect(),
            slapd_cpu_ms_per_op: answers
                .iter()
                .enumerate()
                .map(|(v, a)| (*a, cpu(v)))
                .collect(),
            p50_ms: answers
                .iter()
                .enumerate()
                .map(|(v, a)| {
                    latencies[v].sort();
                    (*a, quantile_ms(&latencies[v], 0.5))
                })
                .collect(),
            answer: answers[answer],
            answer_over_plain: rate(answer) / rate(0),
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
