//! The benchmark of issue 8: the release gateway (SCIM over HTTPS) against the same work sent
//! straight to slapd with ldap3, interleaved in one run, on a directory of its own.
//!
//! Run it with `./deploy/bench.sh [OPTIONS]` (which installs slapd and builds the release binary
//! first), or `cargo run --release --example bench -- [OPTIONS]` after
//! `cargo build --release --bin scim-ldap-gateway`. `--help` lists the options. It prints a
//! markdown table with the targets checked, writes the same as JSON, and exits non-zero when a
//! request fails (not when a target is missed).

#[allow(unused_imports)]
#[path = "../../tests/integration/slapd.rs"]
mod slapd;

#[allow(dead_code, unused_imports)]
#[path = "../../tests/integration/gateway.rs"]
mod gateway;

#[allow(dead_code)]
#[path = "../../tests/integration/faults/release_gateway.rs"]
mod release_gateway;

mod bare;
mod cells;
mod controls;
mod cycle;
mod entra;
mod idle;
mod lean;
mod mirror;
mod process;
mod proxy;
mod relay;
mod report;
mod runner;
mod scenarios;
mod setup;

use bare::BareResponder;
use clap::Parser;
use controls::Https;
use cycle::CycleSettings;
use process::{clock_ticks_per_second, RssWatch};
use release_gateway::ReleaseGateway;
use runner::{Conn, Http, Side};
use scenarios::{Directory, Scenario};
use serde_json::json;
use setup::Edit;
use slapd::Slapd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rootdn connections that undo what a run changed.
const ADMIN_CONNECTIONS: usize = 8;

/// Gateway (SCIM over HTTPS) against direct ldap3, on a slapd of its own.
#[derive(Parser)]
#[command(name = "bench")]
struct Args {
    /// A small smoke run: a 1,000-user directory, a 500-user Entra cycle, short cells.
    #[arg(long)]
    quick: bool,
    /// What to run, comma-separated: match, create, update, disable, membership, controls,
    /// idle, entra-cycle. Default: all. `controls` measures the shapes of the scenarios
    /// listed with it (all six when none is).
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// Concurrencies of the scenario cells. Default: 1,8,64.
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// Seconds of one measured run of one side. Default: 3 (quick: 0.5).
    #[arg(long)]
    seconds: Option<f64>,
    /// Measured rounds per cell; each round runs both sides, alternating which goes first.
    /// Default: 3 (quick: 2).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds of the unmeasured warm-up of each side of a cell. Default: 1 (quick: 0.2).
    #[arg(long)]
    warmup: Option<f64>,
    /// Users in the directory, all in the big group. Default: 100000 (quick: 1000).
    #[arg(long)]
    users: Option<usize>,
    /// Users of the Entra cycle. Default: 10000 (quick: 500).
    #[arg(long)]
    cycle_users: Option<usize>,
    /// Groups of the Entra cycle. Default: 100 (quick: 10).
    #[arg(long)]
    cycle_groups: Option<usize>,
    /// Workers of the Entra cycle, on each side. Default: 8.
    #[arg(long)]
    cycle_concurrency: Option<usize>,
    /// Rounds of the Entra cycle (each runs both sides, alternating which goes first).
    /// Default: 2 (quick: 1).
    #[arg(long)]
    cycle_rounds: Option<usize>,
    /// Untimed rounds of the Entra cycle before the measured ones (both sides each), so that
    /// the measured rounds find the directory past its first online growth. Default: 1
    /// (quick: 0).
    #[arg(long)]
    cycle_warmup_rounds: Option<usize>,
    /// Members per member PATCH (and per LDAP modify) in the Entra cycle. Default: 10.
    #[arg(long)]
    members_per_patch: Option<usize>,
    /// Idle keep-alive TLS connections for the memory measurement. Default: 1000.
    #[arg(long)]
    idle_connections: Option<usize>,
    /// The gateway's `[directory] pool_size`. Default: 4, as in the demo config.
    #[arg(long)]
    pool_size: Option<u32>,
    /// The gateway's runtime worker threads (set through tokio's `TOKIO_WORKER_THREADS` in the
    /// gateway's environment only). Default: tokio's, one per core.
    #[arg(long)]
    gateway_worker_threads: Option<usize>,
    /// The gateway's `[log] level`. Default: "warn,audit=info" (audit records, no access log).
    #[arg(long)]
    log_level: Option<String>,
    /// Where the JSON report goes. Default: target/bench/bench.json in the repository.
    #[arg(long)]
    output: Option<PathBuf>,
}

pub struct Settings {
    quick: bool,
    scenarios: Vec<Scenario>,
    idle: bool,
    /// The direct writes with and without the answer's controls (`controls`).
    controls: bool,
    entra_cycle: bool,
    concurrency: Vec<usize>,
    pub seconds: Duration,
    pub rounds: usize,
    pub warmup: Duration,
    users: usize,
    /// Users in no group, to add to the big group.
    pool: usize,
    cycle: CycleSettings,
    idle_connections: usize,
    pool_size: u32,
    gateway_worker_threads: Option<usize>,
    log_level: String,
    output: PathBuf,
}

impl Settings {
    fn from_args(a: Args) -> Result<Settings, String> {
        let q = a.quick;
        let pick = |full: f64, quick: f64| if q { quick } else { full };
        let known = [
            "match",
            "create",
            "update",
            "disable",
            "membership",
            "controls",
            "idle",
            "entra-cycle",
        ];
        let wanted = a.scenarios.unwrap_or(known.map(String::from).to_vec());
        if let Some(bad) = wanted.iter().find(|w| !known.contains(&w.as_str())) {
            return Err(format!(
                "unknown scenario {bad:?}; known: {}",
                known.join(", ")
            ));
        }
        let users = a.users.unwrap_or(if q { 1_000 } else { 100_000 });
        if users < 100 {
            return Err("--users must be at least 100".into());
        }
        if a.gateway_worker_threads == Some(0) {
            return Err("--gateway-worker-threads must be at least 1".into());
        }
        let cycle = CycleSettings {
            users: a.cycle_users.unwrap_or(if q { 500 } else { 10_000 }),
            groups: a.cycle_groups.unwrap_or(if q { 10 } else { 100 }).max(1),
            concurrency: a.cycle_concurrency.unwrap_or(8).max(1),
            rounds: a.cycle_rounds.unwrap_or(if q { 1 } else { 2 }).max(1),
            warmup_rounds: a.cycle_warmup_rounds.unwrap_or(if q { 0 } else { 1 }),
            members_per_patch: a.members_per_patch.unwrap_or(10).max(1),
        };
        Ok(Settings {
            quick: q,
            scenarios: Scenario::ALL
                .into_iter()
                .filter(|s| wanted.iter().any(|w| w == s.option()))
                .collect(),
            idle: wanted.iter().any(|w| w == "idle"),
            controls: wanted.iter().any(|w| w == "controls"),
            entra_cycle: wanted.iter().any(|w| w == "entra-cycle"),
            concurrency: a.concurrency.unwrap_or(vec![1, 8, 64]),
            seconds: Duration::from_secs_f64(a.seconds.unwrap_or(pick(3.0, 0.5))),
            rounds: a.rounds.unwrap_or(if q { 2 } else { 3 }).max(1),
            warmup: Duration::from_secs_f64(a.warmup.unwrap_or(pick(1.0, 0.2))),
            users,
            pool: (users / 10).clamp(10, 2_000),
            cycle,
            idle_connections: a.idle_connections.unwrap_or(1_000),
            pool_size: a.pool_size.unwrap_or(4),
            gateway_worker_threads: a.gateway_worker_threads,
            log_level: a.log_level.unwrap_or("warn,audit=info".into()),
            output: a
                .output
                .unwrap_or_else(|| gateway::repo_file("target/bench/bench.json")),
        })
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "quick": self.quick,
            "scenarios": self.scenarios.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>(),
            "idle": self.idle,
            "controls": self.controls,
            "entra_cycle": self.entra_cycle,
            "concurrency": self.concurrency,
            "seconds_per_run": self.seconds.as_secs_f64(),
            "rounds": self.rounds,
            "warmup_seconds": self.warmup.as_secs_f64(),
            "directory_users": self.users,
            "users_in_no_group": self.pool,
            "cycle": {
                "users": self.cycle.users,
                "groups": self.cycle.groups,
                "concurrency": self.cycle.concurrency,
                "rounds": self.cycle.rounds,
                "members_per_patch": self.cycle.members_per_patch,
            },
            "idle_connections": self.idle_connections,
            "gateway_pool_size": self.pool_size,
            "gateway_worker_threads": self.gateway_worker_threads,
            "gateway_log_level": self.log_level,
        })
    }
}

/// The processes under test and what the benchmark knows about them.
pub struct Bench {
    pub slapd: Slapd,
    pub gw: ReleaseGateway,
    pub dir: Arc<Directory>,
    /// Rootdn connections that undo what a run changed.
    pub admins: Vec<Conn>,
    pub rss: Arc<RssWatch>,
    pub settings: Settings,
    pub ticks_per_second: f64,
    runs: AtomicUsize,
    /// The bare HTTPS responder (`controls` only).
    bare: Option<BareResponder>,
}

impl Bench {
    /// A number no earlier run got: names and values written by a run carry it.
    pub fn next_run(&self) -> usize {
        self.runs.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh gateway process, so that what one part of the benchmark left in its memory does
    /// not count in the next part's figures.
    async fn restart_gateway(&mut self, edits: &[Edit]) {
        self.gw =
            setup::start_gateway(&self.slapd, edits, self.settings.gateway_worker_threads).await;
        self.rss.follow(self.gw.pid());
    }

    /// `n` keep-alive HTTPS clients of `server`, each past its handshake.
    pub async fn https_connections(&self, server: Https, n: usize) -> Result<Vec<Http>, String> {
        match server {
            Https::Gateway => self
                .connections(Side::Gateway, n)
                .await?
                .iter()
                .map(|c| c.http().cloned())
                .collect(),
            Https::Bare => {
                let out = self.bare_clients(n, "")?;
                for http in &out {
                    http.get("/ServiceProviderConfig", 200).await?;
                }
                Ok(out)
            }
        }
    }

    /// `n` keep-alive HTTPS clients of the LDAP relay in the bare responder's process, each
    /// past its handshake.
    pub async fn relay_connections(&self, n: usize) -> Result<Vec<Http>, String> {
        let out = self.bare_clients(n, relay::PREFIX)?;
        for http in &out {
            http.find(&entra::user_filter_path("no-such-user"), 0)
                .await?;
        }
        Ok(out)
    }

    /// `n` clients of the bare responder's process, its paths under `prefix` (its own at "",
    /// the relay's at [`relay::PREFIX`]); no request sent yet.
    fn bare_clients(&self, n: usize, prefix: &str) -> Result<Vec<Http>, String> {
        let bare = self
            .bare
            .as_ref()
            .ok_or("the bare HTTPS responder is not running")?;
        let base = bare.base.replacen("/scim/", &format!("{prefix}/scim/"), 1);
        Ok((0..n).map(|_| Http::to(&base, &bare.cert_pem)).collect())
    }

    pub async fn connections(&self, side: Side, n: usize) -> Result<Vec<Conn>, String> {
        runner::connections(
            side,
            n,
            &self.slapd.url,
            &self.slapd.admin_password,
            &self.gw,
        )
        .await
    }
}

#[tokio::main]
async fn main() {
    if let Some(dir) = bare::responder_dir() {
        if let Err(e) = bare::serve(dir).await {
            eprintln!("bare responder failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    let settings = match Settings::from_args(Args::parse()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(settings).await {
        eprintln!("\nbench FAILED: {e}");
        std::process::exit(1);
    }
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

async fn run(settings: Settings) -> Result<(), String> {
    let started = Instant::now();
    let load_at_start = load_average();
    release_gateway::ensure_open_files(settings.idle_connections as u64 + 1024);
    step(&format!(
        "building the directory: {} users in a group of all of them (the first 10 also in a group of 10), {} users in no group",
        settings.users, settings.pool
    ));
    let ldif_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ldif = ldif_dir.path().join("bench.ldif");
    setup::write_ldif(&ldif, settings.users, settings.pool)?;
    let slapd = Slapd::start_with_ldif(&ldif);
    drop(ldif_dir);
    let setup_seconds = started.elapsed().as_secs_f64();
    let edits = setup::config_edits(settings.pool_size, &settings.log_level);
    step("starting the release gateway with TLS");
    let gw = setup::start_gateway(&slapd, &edits, settings.gateway_worker_threads).await;
    let dir = Arc::new(setup::directory(&slapd, settings.users, settings.pool).await?);
    let mut admins = Vec::new();
    for _ in 0..ADMIN_CONNECTIONS {
        admins.push(Conn::Ldap(slapd.admin().await));
    }
    let rss = RssWatch::start(gw.pid());
    let mut b = Bench {
        slapd,
        gw,
        dir,
        admins,
        rss,
        settings,
        ticks_per_second: clock_ticks_per_second(),
        runs: AtomicUsize::new(0),
        bare: None,
    };
    step("checking that the direct side writes what the gateway writes");
    mirror::check(&b).await?;

    let idle = if b.settings.idle {
        let n = b.settings.idle_connections;
        step(&format!("{n} idle keep-alive TLS connections"));
        Some(idle::idle_connections(&b, n).await?)
    } else {
        None
    };

    let mut cells = Vec::new();
    if !b.settings.scenarios.is_empty() {
        step("scenarios, on a gateway started for them");
        b.restart_gateway(&edits).await;
    }
    for scenario in b.settings.scenarios.clone() {
        for c in b.settings.concurrency.clone() {
            cells.push(cells::run_cell(&b, scenario, c).await?);
        }
    }

    let mut directly = report::Directly::default();
    if b.settings.controls {
        step("the writes' controls and the HTTPS bounds, directly (no gateway request in the directory), and the HTTPS floors of the gateway and of a bare responder");
        // The bare responder answers with the gateway's own bytes.
        let gateway = b.https_connections(Https::Gateway, 1).await?.remove(0);
        let body = gateway.get("/ServiceProviderConfig", 200).await?;
        // The relay answers a match that found its user with the gateway's own bytes.
        let match_answer = gateway
            .get(&entra::user_filter_path(&scenarios::bulk_name(0)), 200)
            .await?;
        let match_answer = String::from_utf8(match_answer.to_vec())
            .map_err(|e| format!("the gateway's answer to a match: {e}"))?;
        // With the thin proxy's routes, on as many LDAP connections as the gateway's pool.
        let proxy = proxy::ProxySettings {
            url: b.slapd.url.clone(),
            password: b.slapd.admin_password.clone(),
            pool: b.settings.pool_size as usize,
            user_filter: b.dir.user_filter.clone(),
            user_read_attrs: b.dir.user_read_attrs.clone(),
            match_answer,
        };
        b.bare = Some(BareResponder::start(
            &body,
            b.settings.gateway_worker_threads,
            Some(&proxy),
        )?);
        let thin_proxy = b.https_connections(Https::Bare, 1).await?.remove(0);
        mirror::check_thin_proxy(&b, &thin_proxy).await?;
        for c in b.settings.concurrency.clone() {
            directly.controls.extend(controls::measure(&b, c).await?);
        }
        // Back to back, then after each concurrency-1 write's pause; the two servers one after
        // the other each time, so that a drift of the machine weighs on both alike.
        let s = &b.settings;
        let pauses = cells
            .iter()
            .filter(|c| c.concurrency == 1 && c.kind == "write")
            .map(|c| {
                let idle = Duration::from_secs_f64(c.direct.p50_ms / 1000.0);
                Some((c.scenario.clone(), idle))
            });
        for after in std::iter::once(None).chain(pauses) {
            for server in [Https::Gateway, Https::Bare] {
                let limit = match after {
                    None => s.seconds * s.rounds as u32,
                    Some(_) => s.seconds,
                };
                let floor = controls::https_floor(&b, server, limit, after.clone()).await?;
                match floor.after {
                    None => directly.https.push(floor),
                    Some(_) => directly.https_after_idle.push(floor),
                }
            }
        }
        b.bare = None;
    }

    let cycle = if b.settings.entra_cycle {
        step("Entra initial cycle, on a gateway started for it");
        b.restart_gateway(&edits).await;
        Some(cycle::run_cycle(&b, &b.settings.cycle).await?)
    } else {
        None
    };

    let targets = report::targets(&cells, &directly, cycle.as_ref(), idle.as_ref());
    let wall = started.elapsed().as_secs_f64();
    let table = report::markdown(&cells, &directly, cycle.as_ref(), idle.as_ref(), &targets);
    println!();
    println!("{table}");
    for e in &edits {
        println!(
            "- gateway config edit: {} {} = {} ({})",
            e.section, e.key, e.value, e.why
        );
    }
    let missed = targets.iter().filter(|t| !t.pass).count();
    let beyond = targets.iter().filter(|t| t.out_of_reach()).count();
    println!(
        "\n{} of {} targets met ({beyond} missed with this run's own floor or bound beyond the limit); wall time {:.0} s (setup {:.0} s).",
        targets.len() - missed,
        targets.len(),
        wall,
        setup_seconds
    );
    let document = json!({
        "metadata": metadata(&b, &edits, load_at_start, wall, setup_seconds),
        "settings": b.settings.to_json(),
        "cells": cells,
        "controls": directly.controls,
        "https_floor": directly.https,
        "https_after_idle": directly.https_after_idle,
        "entra_cycle": cycle,
        "idle": idle,
        "targets": targets,
        "markdown": table,
    });
    let out = &b.settings.output;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
    std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("JSON report: {}", out.display());
    Ok(())
}

fn load_average() -> String {
    read_trimmed("/proc/loadavg").unwrap_or_default()
}

/// A file's text without surrounding whitespace, if it can be read.
fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// How the machine's idle CPUs wait, which sets what waking an idle process costs: the cpuidle
/// driver and governor, and on a guest with `haltpoll` how long an idle virtual CPU polls before it
/// halts (0: it halts at once, and waking it takes a VM exit).
fn cpuidle() -> serde_json::Value {
    json!({
        "driver": read_trimmed("/sys/devices/system/cpu/cpuidle/current_driver"),
        "governor": read_trimmed("/sys/devices/system/cpu/cpuidle/current_governor"),
        "guest_halt_poll_ns": read_trimmed("/sys/module/haltpoll/parameters/guest_halt_poll_ns"),
    })
}

/// The first line a command prints (on stdout, else on stderr), if it runs.
fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let text = String::from_utf8_lossy(&text);
    text.lines().next().map(|l| l.trim().to_string())
}

fn metadata(
    b: &Bench,
    edits: &[Edit],
    load_at_start: String,
    wall: f64,
    setup: f64,
) -> serde_json::Value {
    let repo = gateway::repo_file("");
    let repo = repo.to_string_lossy();
    let dirty = command_line("git", &["-C", &repo, "status", "--porcelain"]).is_some();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            Some(
                l.strip_prefix("model name")?
                    .trim_start_matches([' ', '\t', ':'])
                    .to_string(),
            )
        });
    json!({
        "date": command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "git_commit": command_line("git", &["-C", &repo, "rev-parse", "HEAD"]),
        "git_dirty": dirty,
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": command_line("uname", &["-r"]),
        "slapd": command_line("/usr/sbin/slapd", &["-VV"]),
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_average(),
        "clock_ticks_per_second": b.ticks_per_second,
        "cpuidle": cpuidle(),
        "gateway_binary": release_gateway::release_binary(),
        "gateway_config": "config/gateway.toml with the edits below, TLS with a self-signed rcgen certificate, HTTP/1.1 keep-alive clients",
        "config_edits": edits,
        "audit": "[audit] output = \"log\" (the demo config's): one audit record per directory write in the gateway's log file",
        "wall_seconds": wall,
        "setup_seconds": setup,
    })
}
