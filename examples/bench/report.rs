//! Figures from the raw measurements, the targets of issue 8 checked against them, and the
//! markdown table and JSON document that carry both.

use crate::controls::Https;
use crate::process::mib;
use crate::scenarios::Answer;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything one side did in the measured rounds of a cell (or in an Entra cycle).
#[derive(Default)]
pub struct SideTotals {
    pub latencies: Vec<Duration>,
    pub ops: usize,
    pub seconds: f64,
    /// Operations per second of each round.
    pub round_rates: Vec<f64>,
    pub gateway_ticks: u64,
    pub slapd_ticks: u64,
    /// This process: the load generator.
    pub client_ticks: u64,
    pub directory_ops: BTreeMap<String, f64>,
    /// Largest sampled `VmRSS` of the gateway (gateway side only).
    pub rss_max_kib: u64,
    /// Seconds inside the gateway's request handling, and inside its LDAP operations, by its
    /// own histograms (gateway side only).
    pub request_seconds: f64,
    pub directory_seconds: f64,
}

/// The `q` quantile (0..=1) of `sorted`, nearest rank, in milliseconds.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// Gateway throughput over direct throughput round by round (rounds paired in order).
pub fn round_ratios(direct: &[f64], gateway: &[f64]) -> Vec<f64> {
    direct
        .iter()
        .zip(gateway)
        .map(|(d, g)| if *d > 0.0 { g / d } else { 0.0 })
        .collect()
}

/// CPU seconds per 1,000 operations.
fn per_thousand(ticks: u64, ticks_per_second: f64, ops: usize) -> f64 {
    ticks as f64 / ticks_per_second / ops as f64 * 1000.0
}

#[derive(Serialize)]
pub struct SideSummary {
    pub operations: usize,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub round_ops_per_sec: Vec<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub slapd_cpu_s_per_1k: f64,
    pub load_generator_cpu_s_per_1k: f64,
}

impl SideSummary {
    fn new(t: &SideTotals, ticks_per_second: f64) -> SideSummary {
        let mut sorted = t.latencies.clone();
        sorted.sort_unstable();
        let total: Duration = sorted.iter().sum();
        SideSummary {
            operations: t.ops,
            seconds: t.seconds,
            ops_per_sec: t.ops as f64 / t.seconds,
            round_ops_per_sec: t.round_rates.clone(),
            p50_ms: quantile_ms(&sorted, 0.5),
            p99_ms: quantile_ms(&sorted, 0.99),
            mean_ms: total.as_secs_f64() * 1000.0 / sorted.len().max(1) as f64,
            slapd_cpu_s_per_1k: per_thousand(t.slapd_ticks, ticks_per_second, t.ops),
            load_generator_cpu_s_per_1k: per_thousand(t.client_ticks, ticks_per_second, t.ops),
        }
    }
}

#[derive(Serialize)]
pub struct CellReport {
    pub scenario: String,
    pub kind: &'static str,
    pub concurrency: usize,
    pub direct: SideSummary,
    pub gateway: SideSummary,
    /// Gateway throughput / direct throughput.
    pub ratio: f64,
    /// The same ratio in each round (a direct run and a gateway run next to each other): how far
    /// the machine moved it within the cell.
    pub round_ratios: Vec<f64>,
    /// Gateway p50 − direct p50.
    pub added_p50_ms: f64,
    pub gateway_cpu_s_per_1k: f64,
    /// The gateway's CPU use while the direct side ran (its background work), in % of a core:
    /// part of `gateway_cpu_s_per_1k` when requests are few.
    pub gateway_idle_cpu_percent: f64,
    /// Largest `VmRSS` sampled during the cell's gateway rounds.
    pub gateway_rss_max_mib: f64,
    /// `VmHWM` at the end of the cell: the peak since the gateway started.
    pub gateway_vmhwm_mib: f64,
    /// LDAP operations the gateway sent per request, by operation.
    pub gateway_ldap_ops_per_request: BTreeMap<String, f64>,
    /// Mean time per request inside the gateway's request handling (its HTTP histogram: from
    /// the parsed request to the response handed to hyper), in ms.
    pub gateway_inside_ms: f64,
    /// Mean time per request waiting for LDAP operations (its directory histogram), in ms.
    pub gateway_ldap_ms: f64,
}

impl CellReport {
    pub fn new(
        scenario: String,
        read: bool,
        concurrency: usize,
        direct: &SideTotals,
        gateway: &SideTotals,
        vmhwm_kib: u64,
        ticks_per_second: f64,
    ) -> CellReport {
        let d = SideSummary::new(direct, ticks_per_second);
        let g = SideSummary::new(gateway, ticks_per_second);
        CellReport {
            scenario,
            kind: if read { "read" } else { "write" },
            concurrency,
            ratio: g.ops_per_sec / d.ops_per_sec,
            round_ratios: round_ratios(&d.round_ops_per_sec, &g.round_ops_per_sec),
            added_p50_ms: g.p50_ms - d.p50_ms,
            gateway_idle_cpu_percent: idle_percent(direct, ticks_per_second),
            gateway_cpu_s_per_1k: per_thousand(
                gateway.gateway_ticks,
                ticks_per_second,
                gateway.ops,
            ),
            gateway_rss_max_mib: mib(gateway.rss_max_kib),
            gateway_vmhwm_mib: mib(vmhwm_kib),
            gateway_ldap_ops_per_request: per_request(&gateway.directory_ops, gateway.ops),
            gateway_inside_ms: gateway.request_seconds * 1000.0 / gateway.ops.max(1) as f64,
            gateway_ldap_ms: gateway.directory_seconds * 1000.0 / gateway.ops.max(1) as f64,
            direct: d,
            gateway: g,
        }
    }
}

/// The gateway's CPU use while `direct` ran, in % of a core.
pub fn idle_percent(direct: &SideTotals, ticks_per_second: f64) -> f64 {
    round2(direct.gateway_ticks as f64 / ticks_per_second / direct.seconds * 100.0)
}

pub fn per_request(ops: &BTreeMap<String, f64>, requests: usize) -> BTreeMap<String, f64> {
    ops.iter()
        .map(|(op, n)| (op.clone(), round2(n / requests as f64)))
        .collect()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One side of the Entra initial cycle, summed over its rounds.
#[derive(Serialize)]
pub struct CycleSide {
    /// Wall time of each round.
    pub round_seconds: Vec<f64>,
    pub seconds: f64,
    /// Requests (gateway) or LDAP operations (direct) of one round.
    pub requests_per_round: usize,
    /// Seconds of each phase, summed over the rounds.
    pub phase_seconds: BTreeMap<String, f64>,
    /// slapd's CPU seconds in each phase, summed over the rounds.
    pub phase_slapd_cpu_s: BTreeMap<String, f64>,
    /// The gateway's CPU seconds in each phase, summed over the rounds (the direct side's: what
    /// it used while idle).
    pub phase_gateway_cpu_s: BTreeMap<String, f64>,
    pub slapd_cpu_s: f64,
    pub load_generator_cpu_s: f64,
}

/// Wall times of the untimed warm-up rounds, per side.
#[derive(Serialize)]
pub struct WarmupSeconds {
    pub direct: Vec<f64>,
    pub gateway: Vec<f64>,
}

#[derive(Serialize)]
pub struct CycleReport {
    pub warmup_round_seconds: WarmupSeconds,
    pub users: usize,
    pub groups: usize,
    pub concurrency: usize,
    pub members_per_patch: usize,
    pub managers: usize,
    pub direct: CycleSide,
    pub gateway: CycleSide,
    /// Gateway wall time / direct wall time.
    pub ratio: f64,
    pub gateway_cpu_s: f64,
    pub gateway_cpu_s_per_1k: f64,
    /// The gateway's CPU use while the direct side ran, in % of a core.
    pub gateway_idle_cpu_percent: f64,
    /// Largest `VmRSS` sampled during the gateway's cycles (a gateway started for the cycle).
    pub gateway_rss_max_mib: f64,
    pub gateway_vmhwm_mib: f64,
    pub gateway_ldap_ops_per_request: BTreeMap<String, f64>,
}

#[derive(Serialize)]
pub struct IdleReport {
    pub connections: usize,
    /// The gateway's `scim_gateway_http_connections_open` while they idled.
    pub connections_open: f64,
    pub rss_before_mib: f64,
    /// Largest `VmRSS` sampled while they idled.
    pub rss_idle_mib: f64,
    pub seconds_to_open: f64,
}

/// One write shape sent directly, plain and as the gateway sends it (`controls`).
#[derive(Serialize, Clone)]
pub struct ControlsReport {
    pub scenario: String,
    pub concurrency: usize,
    pub ops_per_sec: Vec<(Answer, f64)>,
    pub slapd_cpu_ms_per_op: Vec<(Answer, f64)>,
    /// The load generator's CPU per operation (ms), by controls.
    pub client_cpu_ms_per_op: Vec<(Answer, f64)>,
    pub p50_ms: Vec<(Answer, f64)>,
    /// The gateway's shape of the write: both controls, a create's post-read, or a member
    /// add's `Resolved`.
    pub answer: Answer,
    /// Throughput as the gateway sends it / plain: the bound for a gateway answering with
    /// the resource, against the plain write.
    pub answer_over_plain: f64,
    /// A member add as the gateway sends it, in its two parts timed apart (p50 of each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts_p50_ms: Option<ResolvedParts>,
    /// The answer's write, each after an HTTPS round trip through the gateway that does no
    /// directory work (measured above concurrency 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_https: Option<AfterHttps>,
    /// The same after a round trip to the bare HTTPS responder instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_bare_https: Option<AfterHttps>,
    /// The gateway's request (match, create) sent to the thin proxy instead (`proxy.rs`): the
    /// least a gateway on ldap3's pool can do for it, measured whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thin_proxy: Option<AfterHttps>,
    /// The match sent to the LDAP relay (`relay.rs`): an HTTPS exchange and one LDAP round trip
    /// from the responder's process, nothing else.
    pub relay: Option<AfterHttps>,
}

/// A member add as the gateway sends it, part by part: the search resolving the member's id,
/// then the group's modify with its assertion.
#[derive(Serialize, Clone, Copy)]
pub struct ResolvedParts {
    pub search: f64,
    pub asserted_modify: f64,
}

/// The write as the gateway sends it, each after a `GET /ServiceProviderConfig` through the
/// gateway on the same worker: a gateway that costs nothing but its HTTPS exchange.
#[derive(Serialize, Clone, Copy)]
pub struct AfterHttps {
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    /// Its throughput over the plain write's, in the same rounds: the most a gateway that
    /// also does the rest of its work can reach against the direct write.
    pub over_plain: f64,
    /// slapd's CPU per operation (ms).
    pub slapd_cpu_ms_per_op: f64,
    /// CPU per operation (ms) of the process that answered the HTTPS request (the gateway, or
    /// the bare responder's process, thin proxy included) and of the load generator.
    pub server_cpu_ms_per_op: f64,
    pub client_cpu_ms_per_op: f64,
}

impl ControlsReport {
    fn of(values: &[(Answer, f64)], a: Answer) -> Option<f64> {
        values.iter().find(|(v, _)| *v == a).map(|(_, x)| *x)
    }

    /// What the directory adds to the plain write's p50 for the gateway's shape of it, never
    /// below 0 (the answer's controls never make slapd's work less: a negative difference is
    /// noise). For a member add timed in parts, its search's own p50 plus what the assertion
    /// adds to the modify: the difference of two whole p50s of modifies taking milliseconds
    /// would drown a search of a tenth of a millisecond in their noise.
    pub fn answer_p50_extra_ms(&self) -> Option<f64> {
        let plain = Self::of(&self.p50_ms, Answer::Plain)?;
        Some(match self.parts_p50_ms {
            Some(p) => p.search + (p.asserted_modify - plain).max(0.0),
            None => (Self::of(&self.p50_ms, self.answer)? - plain).max(0.0),
        })
    }

    /// The bound's measurement: after the bare responder's round trip when measured (what any
    /// HTTPS server would reach), else after the gateway's.
    pub fn bound(&self) -> Option<&AfterHttps> {
        self.after_bare_https.as_ref().or(self.after_https.as_ref())
    }
}

/// An HTTPS round trip with no directory work (`GET /ServiceProviderConfig` on a keep-alive
/// connection, one at a time) through the gateway or to the bare responder: the floor of any
/// request's added latency; after a pause as long as a write cell's direct p50, the floor of
/// that write's.
#[derive(Serialize)]
pub struct FloorReport {
    pub server: Https,
    /// The concurrency-1 write cell whose direct p50 is the pause before each request.
    pub after: Option<String>,
    pub idle_ms: f64,
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A target of issue 8 and whether this run meets it.
#[derive(Serialize)]
pub struct Target {
    pub target: String,
    pub measured: f64,
    /// `>=` or `<=`
    pub comparison: &'static str,
    pub limit: f64,
    pub pass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The best this run shows any gateway of this design could measure: the floor of an
    /// at-most target (added latency), the bound of an at-least one (throughput ratio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_possible: Option<f64>,
}

impl Target {
    fn at_least(target: String, measured: f64, limit: f64) -> Target {
        Target::new(target, measured, ">=", limit, measured >= limit)
    }

    fn at_most(target: String, measured: f64, limit: f64) -> Target {
        Target::new(target, measured, "<=", limit, measured <= limit)
    }

    fn new(
        target: String,
        measured: f64,
        comparison: &'static str,
        limit: f64,
        pass: bool,
    ) -> Target {
        Target {
            target,
            measured,
            comparison,
            limit,
            pass,
            note: None,
            best_possible: None,
        }
    }

    fn noting(mut self, note: String) -> Target {
        self.note = Some(note);
        self
    }

    /// The floor of an at-most target, and what it is made of.
    fn with_floor(mut self, floor: Floor) -> Target {
        self.note = Some(format!("floor {:.2} = {}", floor.total_ms, floor.made_of));
        self.best_possible = Some(floor.total_ms);
        self
    }

    /// The bound of an at-least throughput target: the answer's write after an HTTPS round
    /// trip, over the plain write, measured directly in the same rounds; after the bare
    /// responder's when measured, with the gateway's beside it.
    fn with_bound(mut self, c: &ControlsReport, kind: &str) -> Target {
        let Some(bound) = c.bound() else {
            return self;
        };
        let what = match kind {
            "read" => "search",
            // Its controls; a member add's id search before it.
            _ => "write as the gateway sends it",
        };
        let (server, gateway) = match (&c.after_bare_https, &c.after_https) {
            (Some(_), Some(g)) => (
                "to a bare HTTPS responder",
                format!(
                    "; through the gateway with no directory work: {:.2}",
                    g.over_plain
                ),
            ),
            (Some(_), None) => ("to a bare HTTPS responder", String::new()),
            _ => ("with no directory work", String::new()),
        };
        let direct = format!(
            "the direct {what}, each after an HTTPS round trip {server} ({:.0} ops/s), over the plain one{gateway}",
            bound.ops_per_sec
        );
        // The relay does the least any gateway answering from the directory does: when it ran,
        // it is the bound. Else the thin proxy, a whole gateway on ldap3's pool doing less than
        // any such gateway can, is a bound of its own.
        if let Some(r) = &c.relay {
            let proxy = c
                .thin_proxy
                .map(|p| format!("; the thin proxy {:.2}", p.over_plain))
                .unwrap_or_default();
            self.note = Some(format!(
                "bound {:.2} = the relay (the gateway's request answered with one LDAP round trip from the responder's process and nothing decoded or rendered: what any gateway answering from the directory does at least, {:.0} ops/s) over the plain one; {:.2} = {direct}{proxy}",
                r.over_plain, r.ops_per_sec, bound.over_plain
            ));
            self.best_possible = Some(r.over_plain);
            return self;
        }
        let best = match &c.thin_proxy {
            None => {
                self.note = Some(format!("bound {:.2} = {direct}", bound.over_plain));
                bound.over_plain
            }
            Some(p) => {
                let best = bound.over_plain.min(p.over_plain);
                self.note = Some(format!(
                    "bound {best:.2}, the lower of {:.2} = {direct}, and {:.2} = the thin proxy (the gateway's request answered by the least a gateway on ldap3's pool can do, {:.0} ops/s) over the plain one",
                    bound.over_plain, p.over_plain, p.ops_per_sec
                ));
                best
            }
        };
        self.best_possible = Some(best);
        self
    }

    /// Missed, and the run's own floor or bound is already past the limit. A value measured
    /// better than its floor or bound shows that one off by more than the run's noise: then it
    /// shows nothing.
    pub fn out_of_reach(&self) -> bool {
        let Some(best) = self.best_possible else {
            return false;
        };
        !self.pass
            && match self.comparison {
                "<=" => best > self.limit && self.measured >= best,
                _ => best < self.limit && self.measured <= best,
            }
    }
}

/// The match's ways to the directory side by side, each with the CPU it cost per search in
/// each process: the one that answered the HTTPS request (the gateway, or the bare responder's
/// process with the thin proxy and the relay), slapd, and the load generator. On 2 shared cores
/// the throughput follows the total.
fn cpu_of_the_match(
    cells: &[CellReport],
    controls: &[ControlsReport],
    line: &mut impl FnMut(String),
) {
    let matches: Vec<&ControlsReport> = controls
        .iter()
        .filter(|c| c.scenario == "match" && c.relay.is_some())
        .collect();
    if matches.is_empty() {
        return;
    }
    line("The match's CPU per search (ms) in each process, by the way it reaches slapd: directly (the load generator's ldap3); after an HTTPS round trip through the gateway or to the bare responder; through the thin proxy; through the relay (the least any gateway does: its HTTPS exchange and one LDAP round trip from its own process, the search written by hand, slapd's answer framed but not decoded, the gateway's own answer bytes sent back); through the gateway (its cell, measured in other rounds against a direct side of its own):".into());
    line(String::new());
    line("| concurrency | way | ops/s | / plain | p50 ms | HTTPS server | slapd | load generator | total |".into());
    line("|---:|---|---:|---:|---:|---:|---:|---:|---:|".into());
    for c in matches {
        let plain_rate = ControlsReport::of(&c.ops_per_sec, Answer::Plain).unwrap_or(f64::NAN);
        let plain_slapd =
            ControlsReport::of(&c.slapd_cpu_ms_per_op, Answer::Plain).unwrap_or(f64::NAN);
        let plain_client =
            ControlsReport::of(&c.client_cpu_ms_per_op, Answer::Plain).unwrap_or(f64::NAN);
        let plain_p50 = ControlsReport::of(&c.p50_ms, Answer::Plain).unwrap_or(f64::NAN);
        let row = |way: &str,
                   rate: f64,
                   ratio: f64,
                   p50: f64,
                   server: Option<f64>,
                   slapd: f64,
                   client: f64| {
            let server_text = server
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "–".into());
            format!(
                "| {} | {way} | {rate:.0} | {ratio:.2} | {p50:.2} | {server_text} | {slapd:.4} | {client:.4} | {:.4} |",
                c.concurrency,
                server.unwrap_or(0.0) + slapd + client
            )
        };
        line(row(
            "directly",
            plain_rate,
            1.0,
            plain_p50,
            None,
            plain_slapd,
            plain_client,
        ));
        let ways = [
            ("after the gateway's HTTPS round trip", &c.after_https),
            ("after the bare responder's round trip", &c.after_bare_https),
            ("thin proxy (ldap3)", &c.thin_proxy),
            ("relay", &c.relay),
        ];
        for (way, a) in ways {
            if let Some(a) = a {
                line(row(
                    way,
                    a.ops_per_sec,
                    a.over_plain,
                    a.p50_ms,
                    Some(a.server_cpu_ms_per_op),
                    a.slapd_cpu_ms_per_op,
                    a.client_cpu_ms_per_op,
                ));
            }
        }
        let cell = cells
            .iter()
            .find(|g| g.scenario == c.scenario && g.concurrency == c.concurrency);
        if let Some(g) = cell {
            line(row(
                "the gateway (its cell)",
                g.gateway.ops_per_sec,
                g.ratio,
                g.gateway.p50_ms,
                Some(g.gateway_cpu_s_per_1k),
                g.gateway.slapd_cpu_s_per_1k,
                g.gateway.load_generator_cpu_s_per_1k,
            ));
        }
    }
    line(String::new());
}

/// The least added latency at concurrency 1 that a gateway answering as this one does can
/// have, from this run's own measurements, and what it is made of.
struct Floor {
    total_ms: f64,
    made_of: String,
}

/// The floor of the concurrency-1 cell `scenario`: summed from its parts when this run measured
/// them, with the same measured as one beside it (the direct operation as the gateway sends it,
/// each after a round trip to the bare responder, against the plain one, at p50); else measured
/// as one. A search has no parts to sum, and its p50 moves little between runs; a write of
/// milliseconds moves by a tenth of a millisecond and more between the runs of one cell, which
/// the difference of two whole p50s takes in full (in 302007a's full run that difference came
/// out at 0.12 ms for the disable, less than the round trip alone, and at 0 for the add to the
/// 100,000-member group), while the parts are each measured where they are small.
fn floor_of(scenario: &str, measured: &Directly) -> Option<Floor> {
    let parts = parts_floor_of(scenario, measured);
    let as_one = measured
        .controls
        .iter()
        .find(|c| c.concurrency == 1 && c.scenario == scenario)
        .and_then(|c| {
            let plain = ControlsReport::of(&c.p50_ms, Answer::Plain)?;
            let after = c.after_bare_https?;
            let what = match c.answer {
                Answer::Plain => "search",
                _ => "write as the gateway sends it",
            };
            let gateway = c
                .after_https
                .map(|g| {
                    format!(
                        "; through the gateway with no directory work {:+.2}",
                        g.p50_ms - plain
                    )
                })
                .unwrap_or_default();
            // The thin proxy's added p50, beside it (a difference of two whole p50s as well).
            let proxy = c
                .thin_proxy
                .map(|p| {
                    format!(
                        "; the thin proxy (the request answered by the least a gateway on ldap3's pool can do) {:+.2} at p50",
                        p.p50_ms - plain
                    )
                })
                .unwrap_or_default();
            // Faster than the plain operation (noise) gives 0, never less.
            let total = (after.p50_ms - plain).max(0.0);
            let made_of = format!(
                "p50 of the direct {what}, each after a round trip to a bare HTTPS responder, {:.2} over the plain one's {plain:.2}{gateway}{proxy}",
                after.p50_ms
            );
            Some((total, made_of))
        });
    match (parts, as_one) {
        (Some(p), Some((total, made_of))) => Some(Floor {
            total_ms: p.total(),
            made_of: format!("{}; measured as one {total:.2}: {made_of}", p.describe()),
        }),
        (Some(p), None) => Some(Floor {
            total_ms: p.total(),
            made_of: p.describe(),
        }),
        (None, Some((total_ms, made_of))) => Some(Floor { total_ms, made_of }),
        (None, None) => None,
    }
}

/// A floor summed from its parts: the HTTPS round trip with no directory work after as long an
/// idle pause as the direct write takes (while a gateway waits for slapd it is one more idle
/// process to wake), plus what the directory itself charges for the request beyond the direct
/// write (the answer's controls; a member add's id search), all at p50.
struct FloorParts {
    /// The pause before the HTTPS round trip (0: back to back).
    idle_ms: f64,
    /// The server of the round trip: the bare responder when measured, else the gateway.
    server: Https,
    https_ms: f64,
    /// The gateway's own round trip after the same pause, beside the bare responder's.
    gateway_https_ms: Option<f64>,
    what: &'static str,
    directory_ms: f64,
}

impl FloorParts {
    fn total(&self) -> f64 {
        self.https_ms + self.directory_ms
    }

    fn describe(&self) -> String {
        let gateway = match self.gateway_https_ms {
            Some(g) if self.server == Https::Bare => format!(" (the gateway's {g:.2})"),
            _ => String::new(),
        };
        format!(
            "{} round trip p50 {:.2} after {:.2} ms idle{gateway} + {} {:+.2}",
            match self.server {
                Https::Bare => "bare HTTPS",
                Https::Gateway => "HTTPS",
            },
            self.https_ms,
            self.idle_ms,
            self.what,
            self.directory_ms
        )
    }
}

/// The HTTPS round trip of `server` before the concurrency-1 write cell `scenario`: after the
/// write's own pause when measured; else back to back (lower: the floor only gets less strict).
fn https_of<'m>(scenario: &str, server: Https, measured: &'m Directly) -> Option<&'m FloorReport> {
    let of_server = |f: &&FloorReport| f.server == server;
    measured
        .https_after_idle
        .iter()
        .filter(of_server)
        .find(|f| f.after.as_deref() == Some(scenario))
        .or_else(|| measured.https.iter().find(of_server))
}

/// The floor of the concurrency-1 write cell `scenario` summed from its parts, when this run
/// measured them: with the bare responder's round trip when measured (what any HTTPS server
/// would cost), else the gateway's.
fn parts_floor_of(scenario: &str, measured: &Directly) -> Option<FloorParts> {
    let gateway = https_of(scenario, Https::Gateway, measured);
    let https = https_of(scenario, Https::Bare, measured).or(gateway)?;
    let (https_ms, idle_ms) = (https.p50_ms, https.idle_ms);
    let c = measured
        .controls
        .iter()
        .find(|c| c.concurrency == 1 && c.scenario == scenario)
        // A search has no answer's controls: no parts beyond the round trip to sum.
        .filter(|c| c.answer != Answer::Plain)?;
    Some(FloorParts {
        idle_ms,
        server: https.server,
        https_ms,
        gateway_https_ms: gateway.map(|g| g.p50_ms),
        what: match (c.answer, c.parts_p50_ms) {
            (Answer::PostRead, _) => "the post-read's p50",
            (Answer::Resolved, Some(_)) => {
                "the member-id search's p50 and the assertion's on the group write"
            }
            (Answer::Resolved, None) => {
                "the member-id search's and the group write's assertion's p50"
            }
            _ => "the assertion's and post-read's p50",
        },
        directory_ms: c.answer_p50_extra_ms()?,
    })
}

/// The direct measurements of the cell `scenario` at `concurrency` that bound it, when this run
/// measured them.
fn bound_of<'m>(
    scenario: &str,
    concurrency: usize,
    measured: &'m Directly,
) -> Option<&'m ControlsReport> {
    measured
        .controls
        .iter()
        .find(|m| m.scenario == scenario && m.concurrency == concurrency)
        .filter(|m| m.bound().is_some())
}

/// The targets this run can check, from what it measured.
pub fn targets(
    cells: &[CellReport],
    measured: &Directly,
    cycle: Option<&CycleReport>,
    idle: Option<&IdleReport>,
) -> Vec<Target> {
    let mut out = Vec::new();
    for c in cells
        .iter()
        .filter(|c| c.concurrency == 8 || c.concurrency == 64)
    {
        let (limit, what) = match c.kind {
            "read" => (0.75, "reads"),
            _ => (0.90, "writes"),
        };
        let target = Target::at_least(
            format!(
                "{what}: {} gateway/direct throughput at concurrency {}",
                c.scenario, c.concurrency
            ),
            c.ratio,
            limit,
        );
        out.push(match bound_of(&c.scenario, c.concurrency, measured) {
            Some(m) => target.with_bound(m, c.kind),
            None => target,
        });
    }
    for c in cells.iter().filter(|c| c.concurrency == 1) {
        let target = Target::at_most(
            format!("{}: added p50 latency at concurrency 1 (ms)", c.scenario),
            c.added_p50_ms,
            0.3,
        );
        out.push(match floor_of(&c.scenario, measured) {
            Some(f) => target.with_floor(f),
            None => target,
        });
    }
    let membership: Vec<&CellReport> = cells
        .iter()
        .filter(|c| c.concurrency == 1 && c.scenario.starts_with("membership"))
        .collect();
    if let [small, big] = membership[..] {
        out.push(
            Target::at_most(
                format!(
                    "{} / {} gateway p50 latency at concurrency 1",
                    big.scenario, small.scenario
                ),
                big.gateway.p50_ms / small.gateway.p50_ms,
                1.5,
            )
            .noting(format!(
                "slapd's own ratio (direct ldap3 p50): {:.2}",
                big.direct.p50_ms / small.direct.p50_ms
            )),
        );
    }
    if let Some(c) = cycle {
        out.push(Target::at_most(
            format!("entra-cycle of {} users: gateway/direct wall time", c.users),
            c.ratio,
            1.15,
        ));
        out.push(Target::at_most(
            "gateway RSS during entra-cycle (MiB)".to_string(),
            c.gateway_rss_max_mib,
            128.0,
        ));
    }
    if let Some(i) = idle {
        out.push(Target::at_most(
            format!(
                "gateway RSS with {} idle keep-alive TLS connections (MiB)",
                i.connections
            ),
            i.rss_idle_mib,
            64.0,
        ));
    }
    out
}

/// What the `controls` step measured without the gateway in the path.
#[derive(Default, Serialize)]
pub struct Directly {
    pub controls: Vec<ControlsReport>,
    /// The HTTPS round trips with no directory work, back to back (the gateway's, the bare
    /// responder's).
    pub https: Vec<FloorReport>,
    /// The same after a pause as long as each concurrency-1 write's direct p50.
    pub https_after_idle: Vec<FloorReport>,
}

fn verdict(t: &Target) -> &'static str {
    if t.pass {
        "PASS"
    } else if t.out_of_reach() && t.comparison == "<=" {
        "FAIL, floor beyond the limit"
    } else if t.out_of_reach() {
        "FAIL, bound below the limit"
    } else {
        "FAIL"
    }
}

/// The report as markdown.
pub fn markdown(
    cells: &[CellReport],
    measured: &Directly,
    cycle: Option<&CycleReport>,
    idle: Option<&IdleReport>,
    targets: &[Target],
) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    if !cells.is_empty() {
        line("| scenario | concurrency | direct ops/s | gateway ops/s | ratio (per round) | direct p50/p99 ms | gateway p50/p99 ms | gateway CPU-s/1k req | gateway peak RSS MiB | gateway LDAP ops/req |".into());
        line("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|".into());
        for c in cells {
            line(format!(
                "| {} | {} | {:.0} | {:.0} | {:.2} ({}) | {:.2} / {:.2} | {:.2} / {:.2} | {:.3} | {:.1} | {} |",
                c.scenario,
                c.concurrency,
                c.direct.ops_per_sec,
                c.gateway.ops_per_sec,
                c.ratio,
                listed(c.round_ratios.iter().map(|r| format!("{r:.2}"))),
                c.direct.p50_ms,
                c.direct.p99_ms,
                c.gateway.p50_ms,
                c.gateway.p99_ms,
                c.gateway_cpu_s_per_1k,
                c.gateway_rss_max_mib,
                ops_list(&c.gateway_ldap_ops_per_request),
            ));
        }
        let idle: Vec<f64> = cells.iter().map(|c| c.gateway_idle_cpu_percent).collect();
        line(format!(
            "Gateway CPU while idle (during the direct runs): {:.1}% of a core on average, {:.1}% at most; it is part of the CPU-s per 1k requests.",
            idle.iter().sum::<f64>() / idle.len() as f64,
            idle.iter().copied().fold(0.0, f64::max)
        ));
        line(String::new());
        let singles: Vec<&CellReport> = cells.iter().filter(|c| c.concurrency == 1).collect();
        if !singles.is_empty() {
            line("Where a request's time goes at concurrency 1 (means, ms): the gateway's own histograms split the client's time into the HTTPS transport (client, TLS, hyper), the gateway's handling, and its LDAP operations (the sum of their durations: a group PATCH that has to look up the group's DN does so beside the member ids' search, so there the sum can exceed the wall time and the handling come out negative by the overlap):".into());
            line(String::new());
            line("| scenario | direct mean | gateway mean | HTTPS transport | gateway handling | gateway LDAP | LDAP − direct |".into());
            line("|---|---:|---:|---:|---:|---:|---:|".into());
            for c in singles {
                line(format!(
                    "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:+.3} |",
                    c.scenario,
                    c.direct.mean_ms,
                    c.gateway.mean_ms,
                    c.gateway.mean_ms - c.gateway_inside_ms,
                    c.gateway_inside_ms - c.gateway_ldap_ms,
                    c.gateway_ldap_ms,
                    c.gateway_ldap_ms - c.direct.mean_ms,
                ));
            }
            line(String::new());
        }
    }
    if !measured.controls.is_empty() {
        line("What slapd charges for the answer: the same writes sent directly, plain, with the assertion, with the post-read, and with both (what the gateway's PATCH carries; its create carries the post-read); a member add plain and as the gateway sends it (the member's id resolved by a search first, then the group's modify asserted on the group or that member). At every concurrency also the answer's write (and the match's search) with each operation after an HTTPS round trip through the gateway that does no directory work (`GET /ServiceProviderConfig`): a gateway reduced to its HTTPS exchange, sharing the cores with slapd as the gateway does; and the same after a round trip to a bare HTTPS responder (rustls and hyper answering the same bytes, no token check, routing, metrics or logs: any HTTPS server does at least that). Their ratios to the plain operation bound the gateway's:".into());
        line(String::new());
        line("| operation | concurrency | plain ops/s | + assertion | + post-read | + both | + member search, asserted | answer / plain | answer after HTTPS ops/s | after HTTPS / plain | after bare HTTPS ops/s | after bare HTTPS / plain | thin proxy ops/s | thin proxy / plain | p50 ms plain → answer (thin proxy) | slapd CPU ms/op plain → answer (thin proxy) |".into());
        line(
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                .into(),
        );
        for c in &measured.controls {
            let rate = |a: Answer| {
                ControlsReport::of(&c.ops_per_sec, a)
                    .map(|r| format!("{r:.0}"))
                    .unwrap_or_else(|| "–".into())
            };
            let pair = |values: &[(Answer, f64)], digits: usize| {
                let at = |a| ControlsReport::of(values, a).unwrap_or(f64::NAN);
                format!("{:.digits$} → {:.digits$}", at(Answer::Plain), at(c.answer))
            };
            let after = |a: &Option<AfterHttps>| match a {
                Some(a) => format!("{:.0} | {:.2}", a.ops_per_sec, a.over_plain),
                None => "– | –".into(),
            };
            let (after_gateway, after_bare) = (after(&c.after_https), after(&c.after_bare_https));
            let proxy = after(&c.thin_proxy);
            let (proxy_p50, proxy_cpu) = match &c.thin_proxy {
                Some(p) => (
                    format!(" ({:.2})", p.p50_ms),
                    format!(" ({:.3})", p.slapd_cpu_ms_per_op),
                ),
                None => Default::default(),
            };
            line(format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {after_gateway} | {after_bare} | {proxy} | {}{proxy_p50} | {}{proxy_cpu} |",
                c.scenario,
                c.concurrency,
                rate(Answer::Plain),
                rate(Answer::Assertion),
                rate(Answer::PostRead),
                rate(Answer::Both),
                rate(Answer::Resolved),
                c.answer_over_plain,
                pair(&c.p50_ms, 2),
                pair(&c.slapd_cpu_ms_per_op, 3),
            ));
        }
        line(String::new());
        cpu_of_the_match(cells, &measured.controls, &mut line);
    }
    for server in [Https::Gateway, Https::Bare] {
        let name = match server {
            Https::Gateway => "The gateway's HTTPS round trip with no directory work",
            Https::Bare => "The bare HTTPS responder's round trip",
        };
        let of_server = |f: &&FloorReport| f.server == server;
        if let Some(f) = measured.https.iter().find(of_server) {
            line(format!(
                "{name} (`GET /ServiceProviderConfig`, one at a time, {} requests): p50 {:.2} ms, p99 {:.2} ms.",
                f.requests, f.p50_ms, f.p99_ms
            ));
            line(String::new());
        }
        let after_idle: Vec<&FloorReport> =
            measured.https_after_idle.iter().filter(of_server).collect();
        if !after_idle.is_empty() {
            line(format!(
                "{name} after an idle pause as long as each write's direct p50 (spun by the load generator; the server idles as the gateway does while its write waits for slapd): {}.",
                listed(after_idle.iter().map(|f| format!(
                    "{:.2} ms ({}) p50 {:.2} ms, p99 {:.2} ms",
                    f.idle_ms,
                    f.after.as_deref().unwrap_or("-"),
                    f.p50_ms,
                    f.p99_ms
                )))
            ));
            line(String::new());
        }
    }
    if let Some(c) = cycle {
        line(format!(
            "Entra initial cycle: {} users, {} groups, {} manager PATCHes, {} members per member PATCH, concurrency {}:",
            c.users, c.groups, c.managers, c.members_per_patch, c.concurrency
        ));
        if !c.warmup_round_seconds.direct.is_empty() {
            let w = &c.warmup_round_seconds;
            let list = |v: &[f64]| listed(v.iter().map(|r| format!("{r:.1}")));
            line(String::new());
            line(format!(
                "After {} untimed warm-up round(s) of both sides, not counted below (wall s: direct {}, gateway {}).",
                w.direct.len(),
                list(&w.direct),
                list(&w.gateway)
            ));
        }
        line(String::new());
        line("| side | wall s (per round) | requests or LDAP ops per round | phases s | slapd CPU-s (per phase) | gateway CPU-s per phase |".into());
        line("|---|---|---:|---|---:|---|".into());
        for (name, s) in [
            ("direct (ldap3)", &c.direct),
            ("gateway (SCIM)", &c.gateway),
        ] {
            line(format!(
                "| {name} | {:.1} ({}) | {} | {} | {:.1} ({}) | {} |",
                s.seconds,
                listed(s.round_seconds.iter().map(|r| format!("{r:.1}"))),
                s.requests_per_round,
                listed(s.phase_seconds.iter().map(|(p, v)| format!("{p} {v:.1}"))),
                s.slapd_cpu_s,
                listed(
                    s.phase_slapd_cpu_s
                        .iter()
                        .map(|(p, v)| format!("{p} {v:.1}"))
                ),
                listed(
                    s.phase_gateway_cpu_s
                        .iter()
                        .map(|(p, v)| format!("{p} {v:.1}"))
                ),
            ));
        }
        line(String::new());
        line(format!(
            "Gateway: {:.1} CPU-s ({:.3} per 1k requests), peak RSS {:.1} MiB (VmHWM {:.1} MiB), LDAP ops/request {}.",
            c.gateway_cpu_s,
            c.gateway_cpu_s_per_1k,
            c.gateway_rss_max_mib,
            c.gateway_vmhwm_mib,
            ops_list(&c.gateway_ldap_ops_per_request)
        ));
        line(String::new());
    }
    if let Some(i) = idle {
        line(format!(
            "Idle keep-alive: {} TLS connections opened in {:.1} s, {} open at the gateway; gateway VmRSS {:.1} MiB before, {:.1} MiB while they idle.",
            i.connections, i.seconds_to_open, i.connections_open, i.rss_before_mib, i.rss_idle_mib
        ));
        line(String::new());
    }
    line("| target | measured | limit | result |".into());
    line("|---|---:|---:|---|".into());
    for t in targets {
        let note = t
            .note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        line(format!(
            "| {}{note} | {:.2} | {} {} | {} |",
            t.target,
            t.measured,
            t.comparison,
            t.limit,
            verdict(t)
        ));
    }
    out
}

fn ops_list(ops: &BTreeMap<String, f64>) -> String {
    listed(ops.iter().map(|(op, n)| format!("{op} {n}")))
}

fn listed(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ratios_pair_the_rounds_in_order() {
        assert_eq!(
            round_ratios(&[100.0, 200.0, 50.0], &[90.0, 150.0, 50.0]),
            vec![0.9, 0.75, 1.0]
        );
        // A round without a direct rate cannot give a ratio; a missing round gives none.
        assert_eq!(round_ratios(&[0.0, 10.0], &[5.0]), vec![0.0]);
    }

    fn measured() -> Directly {
        let controls = |scenario: &str, concurrency, p50: Vec<(Answer, f64)>| ControlsReport {
            scenario: scenario.into(),
            concurrency,
            answer: p50.last().unwrap().0,
            ops_per_sec: p50.iter().map(|(a, _)| (*a, 1.0)).collect(),
            slapd_cpu_ms_per_op: p50.iter().map(|(a, _)| (*a, 1.0)).collect(),
            client_cpu_ms_per_op: Vec::new(),
            p50_ms: p50,
            answer_over_plain: 1.0,
            parts_p50_ms: None,
            after_https: (concurrency > 1).then_some(AfterHttps {
                ops_per_sec: 850.0,
                p50_ms: 10.0,
                over_plain: 0.85,
                slapd_cpu_ms_per_op: 1.0,
                server_cpu_ms_per_op: 0.0,
                client_cpu_ms_per_op: 0.0,
            }),
            after_bare_https: None,
            thin_proxy: None,
            relay: None,
        };
        Directly {
            controls: vec![
                controls(
                    "create",
                    1,
                    vec![(Answer::Plain, 4.0), (Answer::PostRead, 4.05)],
                ),
                controls("update", 1, vec![(Answer::Plain, 3.1), (Answer::Both, 2.9)]),
                controls(
                    "disable",
                    8,
                    vec![(Answer::Plain, 9.0), (Answer::Both, 12.0)],
                ),
                controls(
                    "disable",
                    1,
                    vec![
                        (Answer::Plain, 0.6),
                        (Answer::Assertion, 0.65),
                        (Answer::PostRead, 0.7),
                        (Answer::Both, 0.75),
                    ],
                ),
                controls(
                    "membership (10)",
                    1,
                    vec![(Answer::Plain, 0.5), (Answer::Resolved, 0.8)],
                ),
                controls(
                    "membership (100000)",
                    1,
                    vec![(Answer::Plain, 0.9), (Answer::Resolved, 1.3)],
                ),
            ],
            https: vec![FloorReport {
                server: Https::Gateway,
                after: None,
                idle_ms: 0.0,
                requests: 10,
                p50_ms: 0.2,
                p99_ms: 0.3,
            }],
            https_after_idle: vec![FloorReport {
                server: Https::Gateway,
                after: Some("membership (10)".into()),
                idle_ms: 1.5,
                requests: 10,
                p50_ms: 0.4,
                p99_ms: 0.5,
            }],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_write_floor_adds_what_its_answer_costs_the_directory_at_concurrency_1() {
        let m = measured();
        // Both controls against plain, from the concurrency-1 measurement (not the one at 8).
        let disable = parts_floor_of("disable", &m).unwrap();
        assert!(close(disable.total(), 0.2 + 0.15), "{}", disable.total());
        // A create carries the post-read only.
        let create = parts_floor_of("create", &m).unwrap();
        assert!(close(create.total(), 0.2 + 0.05), "{}", create.total());
        assert_eq!(create.what, "the post-read's p50");
        // A member add: its round trip after its own pause, plus its member-id search and
        // assertion against the plain modify, found by the cell's label (two group sizes).
        let member = parts_floor_of("membership (10)", &m).unwrap();
        assert!(close(member.total(), 0.4 + 0.3), "{}", member.total());
        assert!(close(member.idle_ms, 1.5));
        assert_eq!(
            member.what,
            "the member-id search's and the group write's assertion's p50"
        );
        // Without its own pause measured, the back-to-back round trip.
        let big = parts_floor_of("membership (100000)", &m).unwrap();
        assert!(close(big.total(), 0.2 + 0.4), "{}", big.total());
        // The controls measured faster than the plain write (noise) add nothing, never less.
        let update = parts_floor_of("update", &m).unwrap();
        assert!(close(update.total(), 0.2), "{}", update.total());
        // Parts this run did not measure give no floor.
        let without_https = Directly {
            https: Vec::new(),
            ..measured()
        };
        assert!(parts_floor_of("disable", &without_https).is_none());
    }

    #[test]
    fn only_a_missed_at_most_target_with_its_floor_beyond_the_limit_says_so() {
        let m = measured();
        let with = |measured_ms: f64, scenario: &str| {
            Target::at_most("t".into(), measured_ms, 0.3)
                .with_floor(floor_of(scenario, &m).unwrap())
        };
        let beyond = with(0.5, "disable"); // floor 0.35
        assert!(!beyond.pass && beyond.out_of_reach());
        assert_eq!(verdict(&beyond), "FAIL, floor beyond the limit");
        assert!(beyond
            .note
            .as_deref()
            .unwrap()
            .starts_with("floor 0.35 = HTTPS round trip p50 0.20 after 0.00 ms idle + the "));
        // Measured below its floor: the floor is off by the run's noise and shows nothing.
        let under_floor = with(0.32, "disable");
        assert!(!under_floor.pass && !under_floor.out_of_reach());
        assert_eq!(verdict(&under_floor), "FAIL");
        let below = with(0.5, "create"); // floor 0.25: missed, not shown impossible
        assert!(!below.out_of_reach());
        assert_eq!(verdict(&below), "FAIL");
        let met = with(0.25, "disable");
        assert!(met.pass && !met.out_of_reach());
        assert_eq!(verdict(&met), "PASS");
        let no_floor = Target::at_most("t".into(), 0.5, 0.3);
        assert!(!no_floor.out_of_reach());
    }

    #[test]
    fn a_missed_throughput_target_says_so_only_with_its_bound_below_the_limit() {
        let m = measured();
        // Measured above concurrency 1 only, and found by scenario and concurrency.
        assert!(bound_of("disable", 1, &m).is_none());
        assert!(bound_of("update", 8, &m).is_none());
        let bound = bound_of("disable", 8, &m).unwrap();
        assert!(close(bound.bound().unwrap().over_plain, 0.85));
        let with = |ratio: f64, limit: f64| {
            Target::at_least("t".into(), ratio, limit).with_bound(bound, "write")
        };
        let below = with(0.80, 0.90);
        assert!(!below.pass && below.out_of_reach());
        assert_eq!(verdict(&below), "FAIL, bound below the limit");
        assert!(below
            .note
            .as_deref()
            .unwrap()
            .starts_with("bound 0.85 = the direct write as the gateway sends it, each after"));
        let read = Target::at_least("t".into(), 0.5, 0.75).with_bound(bound, "read");
        assert!(read
            .note
            .unwrap()
            .starts_with("bound 0.85 = the direct search, each after"));
        // Measured above its bound: the bound is off by the run's noise and shows nothing.
        let above_bound = with(0.87, 0.90);
        assert!(!above_bound.pass && !above_bound.out_of_reach());
        assert_eq!(verdict(&above_bound), "FAIL");
        // A bound at or above the limit shows nothing: the miss is the gateway's.
        let reachable = with(0.70, 0.75);
        assert!(!reachable.out_of_reach());
        assert_eq!(verdict(&reachable), "FAIL");
        // Measured at or above the limit passes, whatever the bound.
        let met = with(0.91, 0.90);
        assert!(met.pass && !met.out_of_reach());
        assert_eq!(verdict(&met), "PASS");
        // A floor or bound on the passing side of the limit shows nothing.
        let mut at_most = Target::at_most("t".into(), 0.5, 0.3);
        at_most.best_possible = Some(0.1);
        assert!(!at_most.out_of_reach());
    }
    /// `measured()` with the bare responder's round trips (0.15 back to back, 0.3 after the
    /// 10-member add's pause) and the 10-member add timed in parts.
    fn measured_with_bare() -> Directly {
        let mut m = measured();
        let bare = |after: Option<&str>, idle_ms, p50_ms| FloorReport {
            server: Https::Bare,
            after: after.map(str::to_string),
            idle_ms,
            requests: 10,
            p50_ms,
            p99_ms: 1.0,
        };
        m.https.push(bare(None, 0.0, 0.15));
        m.https_after_idle
            .push(bare(Some("membership (10)"), 1.5, 0.3));
        for c in &mut m.controls {
            if c.scenario == "membership (10)" {
                // Plain 0.5; the search 0.12, the asserted modify 0.45 (faster than plain:
                // noise, counted as 0).
                c.parts_p50_ms = Some(ResolvedParts {
                    search: 0.12,
                    asserted_modify: 0.45,
                });
            }
            if c.scenario == "disable" && c.concurrency == 8 {
                c.after_bare_https = Some(AfterHttps {
                    ops_per_sec: 950.0,
                    p50_ms: 9.0,
                    over_plain: 0.95,
                    slapd_cpu_ms_per_op: 1.0,
                    server_cpu_ms_per_op: 0.0,
                    client_cpu_ms_per_op: 0.0,
                });
            }
        }
        m
    }

    #[test]
    fn a_floor_summed_from_parts_takes_the_bare_responders_round_trip_when_measured() {
        let m = measured_with_bare();
        // Back to back: 0.15 instead of the gateway's 0.2, plus both controls' 0.15.
        let disable = parts_floor_of("disable", &m).unwrap();
        assert_eq!(disable.server, Https::Bare);
        assert!(close(disable.total(), 0.15 + 0.15), "{}", disable.total());
        assert_eq!(disable.gateway_https_ms, Some(0.2));
        // After the write's own pause, the bare responder's after the same pause.
        let member = parts_floor_of("membership (10)", &m).unwrap();
        assert!(close(member.https_ms, 0.3) && close(member.idle_ms, 1.5));
        assert_eq!(member.gateway_https_ms, Some(0.4));
        assert!(disable.describe().starts_with(
            "bare HTTPS round trip p50 0.15 after 0.00 ms idle (the gateway's 0.20) + "
        ));
        // Without the bare responder's, the gateway's, as before.
        assert_eq!(
            parts_floor_of("disable", &measured()).unwrap().server,
            Https::Gateway
        );
    }

    #[test]
    fn a_member_add_timed_in_parts_adds_its_search_and_no_less() {
        let m = measured_with_bare();
        let member = parts_floor_of("membership (10)", &m).unwrap();
        // The search's own p50; the modify measured faster than plain adds nothing.
        assert!(close(member.directory_ms, 0.12), "{}", member.directory_ms);
        assert_eq!(
            member.what,
            "the member-id search's p50 and the assertion's on the group write"
        );
        // A slower asserted modify adds its difference to the search.
        let mut slower = m;
        for c in &mut slower.controls {
            if let Some(p) = &mut c.parts_p50_ms {
                p.asserted_modify = 0.55;
            }
        }
        let member = parts_floor_of("membership (10)", &slower).unwrap();
        assert!(
            close(member.directory_ms, 0.12 + 0.05),
            "{}",
            member.directory_ms
        );
        // Not timed in parts: the difference of the whole p50s, as before (0.8 - 0.5).
        let whole = parts_floor_of("membership (10)", &measured()).unwrap();
        assert!(close(whole.directory_ms, 0.3), "{}", whole.directory_ms);
    }

    #[test]
    fn a_bound_takes_the_bare_responders_round_trip_when_measured() {
        let m = measured_with_bare();
        let c = bound_of("disable", 8, &m).unwrap();
        let target = Target::at_least("t".into(), 0.80, 0.90).with_bound(c, "write");
        // 0.95 after the bare responder: the 0.90 target is not shown out of reach.
        assert_eq!(target.best_possible, Some(0.95));
        assert!(!target.out_of_reach());
        assert_eq!(verdict(&target), "FAIL");
        assert_eq!(
            target.note.as_deref().unwrap(),
            "bound 0.95 = the direct write as the gateway sends it, each after an HTTPS round \
             trip to a bare HTTPS responder (950 ops/s), over the plain one; through the \
             gateway with no directory work: 0.85"
        );
    }

    #[test]
    fn a_thin_proxy_below_the_bare_bound_is_the_bound() {
        let mut m = measured_with_bare();
        for c in &mut m.controls {
            if c.scenario == "disable" && c.concurrency == 8 {
                c.thin_proxy = Some(AfterHttps {
                    ops_per_sec: 700.0,
                    p50_ms: 11.0,
                    over_plain: 0.70,
                    slapd_cpu_ms_per_op: 1.0,
                    server_cpu_ms_per_op: 0.0,
                    client_cpu_ms_per_op: 0.0,
                });
            }
        }
        let c = bound_of("disable", 8, &m).unwrap();
        // Measured 0.68: below the proxy's 0.70, which is below the limit: out of reach.
        let target = Target::at_least("t".into(), 0.68, 0.90).with_bound(c, "write");
        assert_eq!(target.best_possible, Some(0.70));
        assert!(target.out_of_reach());
        assert!(target
            .note
            .as_deref()
            .unwrap()
            .starts_with("bound 0.70, the lower of 0.95 = the direct write"));
        // Measured above the proxy: the bound shows nothing, a plain FAIL.
        let target = Target::at_least("t".into(), 0.72, 0.90).with_bound(c, "write");
        assert!(!target.out_of_reach());
        // A proxy above the bare bound leaves the bare bound.
        let mut c = c.clone();
        c.thin_proxy.as_mut().unwrap().over_plain = 0.99;
        let target = Target::at_least("t".into(), 0.80, 0.90).with_bound(&c, "write");
        assert_eq!(target.best_possible, Some(0.95));
    }

    #[test]
    fn the_relay_when_measured_is_the_bound_whatever_the_others_say() {
        let mut m = measured_with_bare();
        let c = m
            .controls
            .iter_mut()
            .find(|c| c.scenario == "disable" && c.concurrency == 8)
            .unwrap();
        let after = |over_plain: f64| AfterHttps {
            ops_per_sec: 1000.0 * over_plain,
            p50_ms: 1.0,
            over_plain,
            slapd_cpu_ms_per_op: 0.09,
            server_cpu_ms_per_op: 0.02,
            client_cpu_ms_per_op: 0.03,
        };
        c.thin_proxy = Some(after(0.70));
        c.relay = Some(after(0.83));
        let c = bound_of("disable", 8, &m).unwrap();
        // The thin proxy (0.70) and the bare bound (0.95) give way to the relay's 0.83: a
        // measured 0.69 is a plain miss, not out of reach.
        let target = Target::at_least("t".into(), 0.69, 0.75).with_bound(c, "read");
        assert_eq!(target.best_possible, Some(0.83));
        assert!(!target.out_of_reach());
        let note = target.note.as_deref().unwrap();
        assert!(note.starts_with("bound 0.83 = the relay"), "{note}");
        assert!(note.contains("; 0.95 = the direct search"), "{note}");
        assert!(note.ends_with("; the thin proxy 0.70"), "{note}");
        // A relay below the limit shows the limit out of reach for a measured value below it.
        let mut c = c.clone();
        c.relay = Some(after(0.72));
        let target = Target::at_least("t".into(), 0.69, 0.75).with_bound(&c, "read");
        assert!(target.out_of_reach());
        // The match's CPU table: one row per way, the totals summed.
        let mut lines = Vec::new();
        c.scenario = "match".into();
        cpu_of_the_match(&[], &[c], &mut |l| lines.push(l));
        let relay = lines.iter().find(|l| l.contains("| relay |")).unwrap();
        assert!(
            relay.ends_with("| 0.0200 | 0.0900 | 0.0300 | 0.1400 |"),
            "{relay}"
        );
        assert!(lines.iter().any(|l| l.starts_with("| 8 | directly |")));
    }

    #[test]
    fn a_floor_is_summed_from_parts_with_the_same_measured_as_one_beside_it() {
        let mut m = measured_with_bare();
        for c in &mut m.controls {
            if c.concurrency == 1 && c.scenario == "disable" {
                // Plain 0.6: after the bare responder 0.92, through the gateway 0.97.
                c.after_bare_https = Some(AfterHttps {
                    ops_per_sec: 1.0,
                    p50_ms: 0.92,
                    over_plain: 0.6,
                    slapd_cpu_ms_per_op: 1.0,
                    server_cpu_ms_per_op: 0.0,
                    client_cpu_ms_per_op: 0.0,
                });
                c.after_https = Some(AfterHttps {
                    ops_per_sec: 1.0,
                    p50_ms: 0.97,
                    over_plain: 0.55,
                    slapd_cpu_ms_per_op: 1.0,
                    server_cpu_ms_per_op: 0.0,
                    client_cpu_ms_per_op: 0.0,
                });
            }
        }
        m.controls.push(ControlsReport {
            scenario: "match".into(),
            concurrency: 1,
            ops_per_sec: vec![(Answer::Plain, 1.0)],
            slapd_cpu_ms_per_op: vec![(Answer::Plain, 1.0)],
            client_cpu_ms_per_op: Vec::new(),
            p50_ms: vec![(Answer::Plain, 0.12)],
            answer: Answer::Plain,
            answer_over_plain: 1.0,
            parts_p50_ms: None,
            after_https: None,
            after_bare_https: Some(AfterHttps {
                ops_per_sec: 1.0,
                p50_ms: 0.35,
                over_plain: 0.4,
                slapd_cpu_ms_per_op: 1.0,
                server_cpu_ms_per_op: 0.0,
                client_cpu_ms_per_op: 0.0,
            }),
            thin_proxy: None,
            relay: None,
        });
        let disable = floor_of("disable", &m).unwrap();
        assert!(close(disable.total_ms, 0.30), "{}", disable.total_ms);
        assert_eq!(
            disable.made_of,
            "bare HTTPS round trip p50 0.15 after 0.00 ms idle (the gateway's 0.20) + the \
             assertion's and post-read's p50 +0.15; measured as one 0.32: p50 of the direct \
             write as the gateway sends it, each after a round trip to a bare HTTPS responder, \
             0.92 over the plain one's 0.60; through the gateway with no directory work +0.37"
        );
        // The floor is the sum (0.30), not the 0.32 measured as one.
        let target = Target::at_most("t".into(), 0.4, 0.31).with_floor(disable);
        assert!(close(target.best_possible.unwrap(), 0.30));
        assert_eq!(verdict(&target), "FAIL");
        // A search gets a floor only measured as one: it has no answer's controls to sum.
        let search = floor_of("match", &m).unwrap();
        assert!(close(search.total_ms, 0.23), "{}", search.total_ms);
        assert!(search
            .made_of
            .starts_with("p50 of the direct search, each after"));
        assert!(parts_floor_of("match", &m).is_none());
        // Without it measured as one, the sum of the parts alone.
        let summed = floor_of("create", &m).unwrap();
        assert!(close(summed.total_ms, 0.15 + 0.05), "{}", summed.total_ms);
        assert!(summed.made_of.starts_with("bare HTTPS round trip p50 0.15"));
    }
}
