//! One table cell: a scenario at one concurrency, measured on both sides in alternating rounds
//! (direct first in even rounds, gateway first in odd ones) after a warm-up of each, so that a
//! drift of the machine weighs on both sides alike.

use crate::process::{cpu_ticks, difference, directory_operations, histogram_seconds, status_kib};
use crate::report::{CellReport, SideTotals};
use crate::runner::{run_pool, Conn, Run, Side};
use crate::scenarios::{Answer, ReadUsers, Scenario, ScenarioRun};
use crate::Bench;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Counters read before and after a run.
pub struct Snapshot {
    gateway_ticks: u64,
    slapd_ticks: u64,
    client_ticks: u64,
    /// The gateway's LDAP operations so far, by operation (gateway runs only).
    directory_ops: BTreeMap<String, f64>,
    /// Seconds the gateway spent in requests (its own HTTP histogram) and in LDAP operations
    /// (its directory histogram), so far (gateway runs only).
    request_seconds: f64,
    directory_seconds: f64,
}

impl Snapshot {
    pub fn slapd_ticks(&self) -> u64 {
        self.slapd_ticks
    }

    pub fn client_ticks(&self) -> u64 {
        self.client_ticks
    }

    pub async fn take(b: &Bench, side: Side) -> Result<Snapshot, String> {
        let exposition = match side {
            Side::Gateway => b.gw.metrics().await.0,
            Side::Direct => String::new(),
        };
        Ok(Snapshot {
            gateway_ticks: cpu_ticks(b.gw.pid())?,
            slapd_ticks: cpu_ticks(b.slapd.pid())?,
            client_ticks: cpu_ticks(std::process::id())?,
            directory_ops: directory_operations(&exposition),
            request_seconds: histogram_seconds(
                &exposition,
                "scim_gateway_http_request_duration_seconds",
            ),
            directory_seconds: histogram_seconds(
                &exposition,
                "scim_gateway_directory_operation_duration_seconds",
            ),
        })
    }
}

impl SideTotals {
    /// Adds one measured run, with the counters around it.
    pub fn add(&mut self, run: &Run, before: &Snapshot, after: &Snapshot, rss_max_kib: u64) {
        self.ops += run.latencies.len();
        self.seconds += run.elapsed.as_secs_f64();
        self.round_rates
            .push(run.latencies.len() as f64 / run.elapsed.as_secs_f64());
        self.latencies.extend(&run.latencies);
        self.gateway_ticks += after.gateway_ticks - before.gateway_ticks;
        self.slapd_ticks += after.slapd_ticks - before.slapd_ticks;
        self.client_ticks += after.client_ticks - before.client_ticks;
        for (op, n) in difference(&after.directory_ops, &before.directory_ops) {
            *self.directory_ops.entry(op).or_insert(0.0) += n;
        }
        self.rss_max_kib = self.rss_max_kib.max(rss_max_kib);
        self.request_seconds += after.request_seconds - before.request_seconds;
        self.directory_seconds += after.directory_seconds - before.directory_seconds;
    }
}

pub async fn run_cell(
    b: &Bench,
    scenario: Scenario,
    concurrency: usize,
) -> Result<CellReport, String> {
    let s = &b.settings;
    let direct = b.connections(Side::Direct, concurrency).await?;
    let gateway = b.connections(Side::Gateway, concurrency).await?;
    let conns = |side| match side {
        Side::Direct => &direct,
        Side::Gateway => &gateway,
    };
    let label = scenario.label(&b.dir);
    eprintln!("  {label} at concurrency {concurrency}");
    let mut warm_ops = 0;
    for side in [Side::Direct, Side::Gateway] {
        warm_ops = measured(b, scenario, side, conns(side), s.warmup, None).await?;
    }
    if scenario.patches_users() {
        read_users(b, scenario, &gateway, warm_ops).await?;
    }
    let mut totals = [SideTotals::default(), SideTotals::default()];
    for round in 0..s.rounds {
        for side in Side::order(round) {
            let t = &mut totals[side as usize];
            measured(b, scenario, side, conns(side), s.seconds, Some(t)).await?;
        }
    }
    let [direct, gateway] = totals;
    let hwm = status_kib(b.gw.pid(), "VmHWM").unwrap_or(0);
    Ok(CellReport::new(
        label,
        scenario.is_read(),
        concurrency,
        &direct,
        &gateway,
        hwm,
        b.ticks_per_second,
    ))
}

/// One run of `scenario` on `side`, added to `totals` when it counts (not for a warm-up); then
/// what it changed is undone, untimed. Returns how many operations it did.
async fn measured(
    b: &Bench,
    scenario: Scenario,
    side: Side,
    conns: &[Conn],
    limit: Duration,
    totals: Option<&mut SideTotals>,
) -> Result<usize, String> {
    let work = Arc::new(ScenarioRun::new(
        scenario,
        side,
        b.next_run(),
        b.dir.clone(),
        Answer::Plain,
    ));
    let before = Snapshot::take(b, side).await?;
    b.rss.take_max();
    let run = run_pool(conns, work.clone(), scenario.capacity(&b.dir), Some(limit))
        .await
        .map_err(|e| {
            format!(
                "{} {side:?} at concurrency {}: {e}",
                scenario.label(&b.dir),
                conns.len()
            )
        })?;
    let rss = b.rss.take_max();
    let after = Snapshot::take(b, side).await?;
    if let Some(t) = totals {
        t.add(
            &run,
            &before,
            &after,
            if side == Side::Gateway { rss } else { 0 },
        );
    }
    work.undo(&b.admins, run.latencies.len()).await?;
    Ok(run.latencies.len())
}

/// Untimed, the gateway reads the users that the measured runs of a cell of `scenario` will
/// patch (see [`Scenario::patches_users`]): those of half as many operations again as a run of
/// the cell's length would do at the warm-up's rate (`warm_ops` in the warm-up), so that the
/// rounds' drift stays inside. Twice over: the gateway's id memory starts over when it is full,
/// and a first pass that filled it would have lost its beginning; the second then finds it all.
/// The searches per request in the table show what still missed.
async fn read_users(
    b: &Bench,
    scenario: Scenario,
    conns: &[Conn],
    warm_ops: usize,
) -> Result<(), String> {
    let s = &b.settings;
    let per_run = warm_ops as f64 * s.seconds.as_secs_f64() / s.warmup.as_secs_f64().max(1e-3);
    let count = ((per_run * 1.5).ceil() as usize).min(scenario.capacity(&b.dir));
    let reads = Arc::new(ReadUsers::new(scenario, &b.dir, count));
    for _ in 0..2 {
        run_pool(conns, reads.clone(), reads.len(), None)
            .await
            .map_err(|e| format!("reading the users to patch: {e}"))?;
    }
    Ok(())
}
