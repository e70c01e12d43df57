//! Entra's initial provisioning cycle, and the hand-written sync that gets the directory to the
//! same state with the fewest LDAP operations.
//!
//! Gateway side, as Entra sends it: the Test Connection probe; per user a `GET /Users?filter=
//! userName eq …` (nothing found) and a `POST /Users`; a manager PATCH per user that has a
//! manager; per group a lookup `GET /Groups?…filter=displayName eq …` and a `POST /Groups`; then
//! member PATCHes of a few members each. Direct side: per user a search by uid (the existence
//! check) and an add; a modify per manager; per group a search by cn and an add; a modify per
//! member batch. Phases run one after the other, each with the same number of workers on both
//! sides; users are managed in a tree of ten reports per manager, and each user is in one group.

use crate::cells::Snapshot;
use crate::entra::{
    add_members_body, add_members_mods, group_dn, group_filter_path, manager_body, manager_mods,
    probe_guid, user_dn, user_filter_path, Attrs, EntraGroup, EntraUser, GROUPS, PEOPLE,
};
use crate::process::{cpu_ticks, status_kib};
use crate::report::{idle_percent, per_request, CycleReport, CycleSide, SideTotals, WarmupSeconds};
use crate::runner::{run_pool, search_expecting, Conn, LdapOutcome, OpFuture, Side, Workload};
use crate::Bench;
use ldap3::Ldap;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Direct reports per manager.
const REPORTS: usize = 10;

pub struct CycleSettings {
    pub users: usize,
    pub groups: usize,
    pub concurrency: usize,
    pub rounds: usize,
    /// Untimed rounds before `rounds`.
    pub warmup_rounds: usize,
    pub members_per_patch: usize,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Users,
    Managers,
    Groups,
    Members,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Users, Phase::Managers, Phase::Groups, Phase::Members];

    fn name(self) -> &'static str {
        match self {
            Phase::Users => "users",
            Phase::Managers => "managers",
            Phase::Groups => "groups",
            Phase::Members => "members",
        }
    }
}

/// One side's cycle: its names, and the ids the gateway gave what it created.
struct Cycle {
    side: Side,
    prefix: String,
    user_ids: Vec<OnceLock<String>>,
    group_ids: Vec<OnceLock<String>>,
    /// (group, its members) of each member PATCH or modify.
    batches: Vec<(usize, Vec<usize>)>,
}

impl Cycle {
    fn new(side: Side, run: usize, s: &CycleSettings) -> Cycle {
        let batches = (0..s.groups)
            .flat_map(|g| {
                let members: Vec<usize> = (g..s.users).step_by(s.groups).collect();
                members
                    .chunks(s.members_per_patch)
                    .map(|c| (g, c.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        Cycle {
            side,
            prefix: format!("cycle{run}{}", side.letter()),
            user_ids: (0..s.users).map(|_| OnceLock::new()).collect(),
            group_ids: (0..s.groups).map(|_| OnceLock::new()).collect(),
            batches,
        }
    }

    fn user(&self, i: usize) -> EntraUser {
        EntraUser::new(format!("{}-u{i:05}", self.prefix), i)
    }

    fn group(&self, g: usize) -> EntraGroup {
        EntraGroup {
            name: format!("{}-g{g:03}", self.prefix),
        }
    }

    /// Operations in a phase.
    fn count(&self, phase: Phase) -> usize {
        match phase {
            Phase::Users => self.user_ids.len(),
            Phase::Managers => self.user_ids.len().saturating_sub(1),
            Phase::Groups => self.group_ids.len(),
            Phase::Members => self.batches.len(),
        }
    }

    /// Requests (gateway) or LDAP operations (direct) of the whole cycle.
    fn requests(&self) -> usize {
        let probe = usize::from(self.side == Side::Gateway);
        probe
            + 2 * self.count(Phase::Users)
            + self.count(Phase::Managers)
            + 2 * self.count(Phase::Groups)
            + self.count(Phase::Members)
    }

    fn id(ids: &[OnceLock<String>], i: usize) -> Result<&str, String> {
        ids[i]
            .get()
            .map(String::as_str)
            .ok_or_else(|| format!("no id for resource {i}: its create failed"))
    }

    async fn gateway(&self, phase: Phase, conn: &Conn, k: usize) -> Result<(), String> {
        let http = conn.http()?;
        match phase {
            Phase::Users => {
                let user = self.user(k);
                let lookup = user_filter_path(&user.user_name);
                let id = http.create_absent(&lookup, "/Users", &user.body()).await?;
                let _ = self.user_ids[k].set(id);
            }
            Phase::Managers => {
                let (i, manager) = (k + 1, k / REPORTS);
                let path = format!("/Users/{}", Self::id(&self.user_ids, i)?);
                let body = manager_body(Self::id(&self.user_ids, manager)?);
                http.patch(&path, &body).await?;
            }
            Phase::Groups => {
                let group = self.group(k);
                let lookup = group_filter_path(&group.name);
                let id = http
                    .create_absent(&lookup, "/Groups", &group.body())
                    .await?;
                let _ = self.group_ids[k].set(id);
            }
            Phase::Members => {
                let (g, members) = &self.batches[k];
                let ids = members
                    .iter()
                    .map(|&m| Self::id(&self.user_ids, m))
                    .collect::<Result<Vec<_>, _>>()?;
                let path = format!("/Groups/{}", Self::id(&self.group_ids, *g)?);
                http.patch(&path, &add_members_body(ids)).await?;
            }
        }
        Ok(())
    }

    async fn direct(&self, phase: Phase, conn: &mut Conn, k: usize) -> Result<(), String> {
        let ldap = conn.ldap()?;
        match phase {
            Phase::Users => {
                let user = self.user(k);
                let dn = user_dn(&user.user_name);
                add_absent(ldap, PEOPLE, ("uid", &user.user_name), &dn, user.entry()).await
            }
            Phase::Managers => {
                let (i, manager) = (k + 1, k / REPORTS);
                let dn = user_dn(&self.user(i).user_name);
                let mods = manager_mods(&user_dn(&self.user(manager).user_name));
                ldap.modify(&dn, mods)
                    .await
                    .named(|| format!("modify {dn}"))
            }
            Phase::Groups => {
                let group = self.group(k);
                let dn = group_dn(&group.name);
                add_absent(ldap, GROUPS, ("cn", &group.name), &dn, group.entry()).await
            }
            Phase::Members => {
                let (g, members) = &self.batches[k];
                let dn = group_dn(&self.group(*g).name);
                let dns = members.iter().map(|&m| user_dn(&self.user(m).user_name));
                ldap.modify(&dn, add_members_mods(dns))
                    .await
                    .named(|| format!("modify {dn}"))
            }
        }
    }
}

/// What a hand-written sync does for a new entry: check by its naming attribute that it is not
/// there yet (asking for no attributes), then add it.
async fn add_absent(
    ldap: &mut Ldap,
    base: &str,
    (attr, value): (&str, &str),
    dn: &str,
    entry: Attrs,
) -> Result<(), String> {
    let filter = format!("({attr}={})", ldap3::ldap_escape(value));
    search_expecting(ldap, base, &filter, &["1.1".to_string()], 0).await?;
    ldap.add(dn, entry).await.named(|| format!("add {dn}"))
}

struct PhaseRun {
    cycle: Arc<Cycle>,
    phase: Phase,
}

impl Workload for PhaseRun {
    fn op<'a>(&'a self, conn: &'a mut Conn, k: usize) -> OpFuture<'a> {
        Box::pin(async move {
            match self.cycle.side {
                Side::Direct => self.cycle.direct(self.phase, conn, k).await,
                Side::Gateway => self.cycle.gateway(self.phase, conn, k).await,
            }
        })
    }
}

/// What one side did over its rounds.
#[derive(Default)]
struct SideRecord {
    totals: SideTotals,
    round_seconds: Vec<f64>,
    phase_seconds: BTreeMap<String, f64>,
    phase_slapd_ticks: BTreeMap<String, u64>,
    phase_gateway_ticks: BTreeMap<String, u64>,
    requests_per_round: usize,
}

/// Runs the cycle on both sides, `rounds` times each, alternating which side goes first, after
/// `warmup_rounds` untimed rounds of both sides. A directory just loaded with slapadd gets
/// faster over its first tens of thousands of online adds (three rounds in a row on a fresh
/// one took 72.5, 78.0, 73.6, then 56.2, 60.6 and 53.7 s), which alternating alone does not
/// cancel. The warm-up takes the first, slowest runs out of the measurement (the drift can go on
/// after it); its wall times are reported, not counted.
pub async fn run_cycle(b: &Bench, s: &CycleSettings) -> Result<CycleReport, String> {
    let warmup = rounds(b, s, s.warmup_rounds, "warm-up ").await?;
    let record = rounds(b, s, s.rounds, "").await?;
    let managers = s.users.saturating_sub(1);
    let [direct, gateway] = record;
    let tps = b.ticks_per_second;
    let side = |r: &SideRecord| CycleSide {
        seconds: r.round_seconds.iter().sum(),
        round_seconds: r.round_seconds.clone(),
        requests_per_round: r.requests_per_round,
        phase_seconds: r.phase_seconds.clone(),
        phase_slapd_cpu_s: r
            .phase_slapd_ticks
            .iter()
            .map(|(p, t)| (p.clone(), *t as f64 / tps))
            .collect(),
        phase_gateway_cpu_s: r
            .phase_gateway_ticks
            .iter()
            .map(|(p, t)| (p.clone(), *t as f64 / tps))
            .collect(),
        slapd_cpu_s: r.totals.slapd_ticks as f64 / tps,
        load_generator_cpu_s: r.totals.client_ticks as f64 / tps,
    };
    let gateway_requests = gateway.requests_per_round * s.rounds;
    let gateway_cpu_s = gateway.totals.gateway_ticks as f64 / tps;
    let [warmup_direct, warmup_gateway] = warmup;
    Ok(CycleReport {
        warmup_round_seconds: WarmupSeconds {
            direct: warmup_direct.round_seconds,
            gateway: warmup_gateway.round_seconds,
        },
        users: s.users,
        groups: s.groups,
        concurrency: s.concurrency,
        members_per_patch: s.members_per_patch,
        managers,
        ratio: gateway.round_seconds.iter().sum::<f64>() / direct.round_seconds.iter().sum::<f64>(),
        gateway_cpu_s,
        gateway_cpu_s_per_1k: gateway_cpu_s / gateway_requests as f64 * 1000.0,
        gateway_idle_cpu_percent: idle_percent(&direct.totals, tps),
        gateway_rss_max_mib: crate::process::mib(gateway.totals.rss_max_kib),
        gateway_vmhwm_mib: crate::process::mib(status_kib(b.gw.pid(), "VmHWM").unwrap_or(0)),
        gateway_ldap_ops_per_request: per_request(&gateway.totals.directory_ops, gateway_requests),
        direct: side(&direct),
        gateway: side(&gateway),
    })
}

/// `count` rounds of both sides, alternating which side goes first; `label` names them in the
/// progress lines.
async fn rounds(
    b: &Bench,
    s: &CycleSettings,
    count: usize,
    label: &str,
) -> Result<[SideRecord; 2], String> {
    let mut record = [SideRecord::default(), SideRecord::default()];
    for round in 0..count {
        for side in Side::order(round) {
            eprintln!(
                "  entra-cycle {label}round {} of {count}: {side:?}",
                round + 1
            );
            one_side(b, s, side, &mut record[side as usize]).await?;
        }
    }
    Ok(record)
}

async fn one_side(
    b: &Bench,
    s: &CycleSettings,
    side: Side,
    record: &mut SideRecord,
) -> Result<(), String> {
    let conns = b.connections(side, s.concurrency).await?;
    let cycle = Arc::new(Cycle::new(side, b.next_run(), s));
    let before = Snapshot::take(b, side).await?;
    b.rss.take_max();
    let started = Instant::now();
    if let Conn::Http(http) = &conns[0] {
        // Test Connection, which also starts every cycle.
        http.find(&user_filter_path(&probe_guid(b.next_run() as u64)), 0)
            .await?;
    }
    for phase in Phase::ALL {
        let (slapd_before, gateway_before) = (cpu_ticks(b.slapd.pid())?, cpu_ticks(b.gw.pid())?);
        let work = Arc::new(PhaseRun {
            cycle: cycle.clone(),
            phase,
        });
        let run = run_pool(&conns, work, cycle.count(phase), None)
            .await
            .map_err(|e| format!("entra-cycle {side:?}, {} phase: {e}", phase.name()))?;
        *record
            .phase_seconds
            .entry(phase.name().to_string())
            .or_insert(0.0) += run.elapsed.as_secs_f64();
        *record
            .phase_slapd_ticks
            .entry(phase.name().to_string())
            .or_insert(0) += cpu_ticks(b.slapd.pid())? - slapd_before;
        *record
            .phase_gateway_ticks
            .entry(phase.name().to_string())
            .or_insert(0) += cpu_ticks(b.gw.pid())? - gateway_before;
    }
    let elapsed = started.elapsed();
    let rss = b.rss.take_max();
    let after = Snapshot::take(b, side).await?;
    let whole = crate::runner::Run {
        latencies: Vec::new(),
        elapsed,
    };
    let rss = if side == Side::Gateway { rss } else { 0 };
    record.totals.add(&whole, &before, &after, rss);
    record.round_seconds.push(elapsed.as_secs_f64());
    record.requests_per_round = cycle.requests();
    Ok(())
}
