//! What the directory itself charges for the SCIM answer: the update and disable writes sent
//! directly with ldap3, plain and with the controls the gateway's one-operation PATCH carries
//! (an assertion that the entry is still that user, a post-read returning the entry for the
//! `200 OK` body), in alternating rounds. No gateway runs here; the ratio of the write with
//! both controls to the plain one bounds what any gateway that answers with the resource can
//! reach against the plain write on this directory.

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
    for scenario in [Scenario::Update, Scenario::Disable] {
        eprintln!(
            "  {} written directly at concurrency {concurrency}, with and without the answer's controls",
            scenario.option()
        );
        let mut ops = [0usize; 4];
        let mut seconds = [0f64; 4];
        let mut slapd_ticks = [0u64; 4];
        let mut latencies: [Vec<Duration>; 4] = Default::default();
        for round in 0..=s.rounds {
            let warmup = round == 0;
            for n in 0..Answer::ALL.len() {
                // A different variant first in each round.
                let v = (n + round) % Answer::ALL.len();
                let work = Arc::new(ScenarioRun {
                    scenario,
                    side: Side::Direct,
                    run: b.next_run(),
                    dir: b.dir.clone(),
                    answer: Answer::ALL[v],
                });
                let limit = if warmup { s.warmup } else { s.seconds };
                let before = Snapshot::take(b, Side::Direct).await?;
                let run = run_pool(&conns, work.clone(), scenario.capacity(&b.dir), Some(limit))
                    .await
                    .map_err(|e| format!("{:?} {}: {e}", Answer::ALL[v], scenario.option()))?;
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
        out.push(ControlsReport {
            scenario: scenario.option().to_string(),
            concurrency,
            ops_per_sec: Answer::ALL
                .iter()
                .enumerate()
                .map(|(v, a)| (*a, rate(v)))
                .collect(),
            slapd_cpu_ms_per_op: Answer::ALL
                .iter()
                .enumerate()
                .map(|(v, a)| (*a, cpu(v)))
                .collect(),
            p50_ms: Answer::ALL
                .iter()
                .enumerate()
                .map(|(v, a)| {
                    latencies[v].sort();
                    (*a, quantile_ms(&latencies[v], 0.5))
                })
                .collect(),
            both_over_plain: rate(3) / rate(0),
        });
    }
    Ok(out)
}

/// `GET /ServiceProviderConfig` one at a time on one keep-alive HTTPS connection for the
/// measured time: the gateway's round trip without any directory work.
pub async fn https_floor(b: &Bench) -> Result<FloorReport, String> {
    let conns = b.connections(Side::Gateway, 1).await?;
    let http = conns[0].http()?;
    let mut latencies = Vec::new();
    for measured in [false, true] {
        let limit = if measured {
            b.settings.seconds * b.settings.rounds as u32
        } else {
            b.settings.warmup
        };
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            let t = std::time::Instant::now();
            http.get("/ServiceProviderConfig", 200).await?;
            if measured {
                latencies.push(t.elapsed());
            }
        }
    }
    latencies.sort();
    Ok(FloorReport {
        requests: latencies.len(),
        p50_ms: quantile_ms(&latencies, 0.5),
        p99_ms: quantile_ms(&latencies, 0.99),
    })
}
