//! Command line: `serve` runs the gateway, `check` validates a config against the directory,
//! `probe` is a health check for container images without curl.

use clap::{Parser, Subcommand};
use scim_ldap_gateway::config::{Config, LogFormat, LogSettings, ProcessEnv};
use scim_ldap_gateway::http::server::Gateway;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// mimalloc instead of glibc's malloc: allocation was a quarter of the gateway's CPU per request
/// under `perf` (see README, "Benchmark").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "SCIM 2.0 gateway that provisions users into an LDAP directory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the config, bind to the directory and check the mapping against its schema.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// GET a URL of the admin listener (e.g. http://127.0.0.1:9464/healthz); exit 0 on a 2xx answer.
    Probe {
        url: String,
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
}

/// Logging as the config asks; `RUST_LOG` overrides the level.
fn init_logging(log: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log.format {
        // One JSON object per line; the request's span (with its request id) on every line.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        // Colours only on a terminal: journald and log files get plain text.
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => serve(config).await,
            Command::Check { config } => check(config).await,
            Command::Probe { url, timeout_secs } => probe(&url, timeout_secs).await,
        }
    })
}

async fn serve(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.log);
    let watch = config.reload.watch;
    let gateway = match Gateway::start(config, prometheus::Registry::new()).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addresses = ?gateway.addresses, admin = ?gateway.admin_address, "scim-ldap-gateway is serving");
    let (mut term, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(h)) => (t, h),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut tick = tokio::time::interval(watch.unwrap_or(Duration::from_secs(3600)));
    let mut seen = fingerprint(&gateway.config_sources());
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                gateway.reload_from_file(&path, &ProcessEnv);
                seen = fingerprint(&gateway.config_sources());
            }
            _ = tick.tick(), if watch.is_some() => {
                let now = fingerprint(&gateway.config_sources());
                if now != seen {
                    tracing::info!("a configuration file changed: reloading");
                    gateway.reload_from_file(&path, &ProcessEnv);
                    // Whatever the outcome, wait for the next change rather than retrying each tick.
                    seen = fingerprint(&gateway.config_sources());
                }
            }
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    gateway.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Modification time and size of each file, to notice edits (and replaced symlinks, as Kubernetes
/// does with mounted ConfigMaps and Secrets).
fn fingerprint(paths: &[PathBuf]) -> Vec<Option<(std::time::SystemTime, u64)>> {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

async fn probe(url: &str, timeout_secs: u64) -> ExitCode {
    match scim_ldap_gateway::probe::probe(url, Duration::from_secs(timeout_secs)).await {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("{url}: HTTP {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn check(path: PathBuf) -> ExitCode {
    init_logging(&LogSettings {
        format: LogFormat::Human,
        level: "warn".into(),
    });
    let config = match Config::load(&path, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let report = scim_ldap_gateway::check::check_directory(&config).await;
    for server in &report.servers {
        let c = &server.capabilities;
        println!(
            "{}: {}{}",
            server.url,
            c.kind,
            c.version
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default()
        );
        for (ok, line) in c.report() {
            println!("  {} {line}", if ok { "ok:  " } else { "note:" });
        }
    }
    match report.member_of {
        Some(true) => println!(
            "  ok:   memberOf: the schema has it (set member_of_attribute = \"memberOf\" if the directory maintains it)"
        ),
        Some(false) => println!(
            "  note: no memberOf in the schema: groups are found with reverse searches and membership_integrity must be \"gateway\""
        ),
        None => {}
    }
    if report.problems.is_empty() {
        println!(
            "{}: configuration valid; directory reachable; mapping matches the schema",
            path.display()
        );
        ExitCode::SUCCESS
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        eprintln!("{} problem(s) found", report.problems.len());
        ExitCode::FAILURE
    }
}
