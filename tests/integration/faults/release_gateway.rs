//! The release build of `scim-ldap-gateway serve`, run as a child process from the demo config in
//! a folder of its own: its addresses, its logs, its `/metrics` and its memory as the kernel
//! counts it. These tests measure time and memory, so they run the optimised binary, not the
//! debug one cargo builds for `cargo test`.

use crate::gateway::{demo_config_text, TOKEN};
use crate::slapd::Slapd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// How long the binary may take to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts at a pair of free ports (another process may take one before the binary binds it).
const START_ATTEMPTS: u32 = 3;

/// The release binary: the one cargo built for this test run under `cargo test --release`, else
/// `<target dir>/release/scim-ldap-gateway`, which must exist and be newer than the sources.
/// (Examples, such as the benchmark, get no `CARGO_BIN_EXE_*` from cargo: they always take the
/// second path.)
pub fn release_binary() -> PathBuf {
    let built = option_env!("CARGO_BIN_EXE_scim-ldap-gateway");
    if let (Some(built), false) = (built, cfg!(debug_assertions)) {
        return PathBuf::from(built);
    }
    // This executable is `<target dir>/<profile>/deps/<test>` or `<target dir>/<profile>/examples/<example>`.
    let me = std::env::current_exe().unwrap();
    let target_dir = me
        .ancestors()
        .nth(3)
        .unwrap_or_else(|| panic!("unexpected executable path {}", me.display()));
    let release = target_dir.join("release").join("scim-ldap-gateway");
    let built_at = std::fs::metadata(&release)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "the fault and load tests and the benchmark run the release binary, and {} is missing ({e}).\n\
                 Build it first with `cargo build --release --locked` (deploy/test.sh does), \
                 or run the tests with `cargo test --release`.",
                release.display()
            )
        });
    if let Some((source, changed)) = newest_source() {
        assert!(
            changed <= built_at,
            "{} is older than {}: it would test stale code. Rebuild it with \
             `cargo build --release --locked` (deploy/test.sh does), or run the tests with \
             `cargo test --release`.",
            release.display(),
            source.display()
        );
    }
    release
}

/// The most recently modified file among those the binary is built from.
fn newest_source() -> Option<(PathBuf, SystemTime)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pending = vec![root.join("src")];
    let mut files = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .filter_map(|f| {
            let changed = std::fs::metadata(&f).and_then(|m| m.modified()).ok()?;
            Some((f, changed))
        })
        .max_by_key(|(_, changed)| *changed)
}

/// `text` (a TOML config) with the line `key = …` of `section` replaced by `key = value`.
/// Exactly one such line must exist: a drifted demo config fails here instead of silently
/// running a test with other settings.
pub fn set_key(text: &str, section: &str, key: &str, value: &str) -> String {
    let mut current = "";
    let mut hits = 0;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            current = trimmed;
        }
        let is_key = trimmed
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if current == section && is_key {
            hits += 1;
            out.push_str(&format!("{key} = {value}"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert_eq!(
        hits, 1,
        "expected one `{key} =` line in section {section} of:\n{text}"
    );
    out
}

/// `scim-ldap-gateway serve` (release build) on free loopback ports. Killed with SIGKILL when
/// dropped, so a failing test leaves nothing running.
pub struct ReleaseGateway {
    child: Child,
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:<port>/scim/v2`
    pub base: String,
    /// `http://127.0.0.1:<port>` of the admin listener.
    pub admin: String,
    cert_pem: String,
    admin_client: reqwest::Client,
}

impl Drop for ReleaseGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that trusts the server certificate `cert_pem` and nothing else, with a timeout so that
/// a server that hangs fails the request instead of the run.
pub fn client_trusting(cert_pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
}

/// A TLS client that trusts the server certificate `cert_pem` and nothing else, offering
/// `versions` and only `alpn`, with the ring provider. One connector is one client: its
/// connections share a session store.
pub fn tls_connector_trusting(
    cert_pem: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[u8],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &cert_pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

impl ReleaseGateway {
    /// The certificate the gateway serves (self-signed), PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Starts the binary from the demo config pointed at `slapd` and changed by `edit`, with
    /// `SCIM_TOKEN` and `LDAP_ADMIN_PASSWORD` set; returns once `/healthz` answers.
    pub async fn start(slapd: &Slapd, edit: impl Fn(String) -> String) -> ReleaseGateway {
        Self::start_with_env(slapd, edit, &[]).await
    }

    /// As [`ReleaseGateway::start`], with `env` added to the binary's environment.
    pub async fn start_with_env(
        slapd: &Slapd,
        edit: impl Fn(String) -> String,
        env: &[(&str, String)],
    ) -> ReleaseGateway {
        let binary = release_binary();
        let admin_client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        for attempt in 1..=START_ATTEMPTS {
            let dir = tempfile::tempdir().unwrap();
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
            std::fs::write(dir.path().join("gw.crt"), cert.cert.pem()).unwrap();
            std::fs::write(dir.path().join("gw.key"), cert.key_pair.serialize_pem()).unwrap();
            let (scim_port, admin_port) = free_ports();
            let text = edit(demo_config_text(slapd, dir.path()));
            let text = set_key(
                &text,
                "[[listeners]]",
                "address",
                &format!("\"127.0.0.1:{scim_port}\""),
            );
            let text = set_key(
                &text,
                "[admin]",
                "address",
                &format!("\"127.0.0.1:{admin_port}\""),
            );
            let config = dir.path().join("gateway.toml");
            std::fs::write(&config, text).unwrap();
            let log =
                |name: &str| Stdio::from(std::fs::File::create(dir.path().join(name)).unwrap());
            let child = Command::new(&binary)
                .args(["serve", "--config"])
                .arg(&config)
                .env_remove("RUST_LOG")
                .env("SCIM_TOKEN", TOKEN)
                .env("LDAP_ADMIN_PASSWORD", &slapd.admin_password)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log("stdout.log"))
                .stderr(log("stderr.log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
            let mut gw = ReleaseGateway {
                child,
                dir,
                base: format!("https://127.0.0.1:{scim_port}/scim/v2"),
                admin: format!("http://127.0.0.1:{admin_port}"),
                cert_pem: cert.cert.pem(),
                admin_client: admin_client.clone(),
            };
            match gw.wait_healthy().await {
                Ok(()) => return gw,
                // Another process took a port between our probe and the binary's bind: try others.
                Err(output)
                    if attempt < START_ATTEMPTS && output.contains("Address already in use") => {}
                Err(output) => panic!("{output}"),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    async fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!(
                    "the gateway exited ({status}) before serving\n{}",
                    self.output()
                ));
            }
            let health = self
                .admin_client
                .get(format!("{}/healthz", self.admin))
                .send()
                .await;
            if health.is_ok_and(|r| r.status() == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "/healthz did not answer within {START_TIMEOUT:?}\n{}",
                    self.output()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The binary's stdout and stderr so far, for assertion messages. A long log (one line per
    /// request) is shortened to its start, its warnings and errors, and its end.
    pub fn output(&self) -> String {
        let read = |name: &str| {
            shorten(&std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default())
        };
        format!(
            "--- gateway stdout ---\n{}\n--- gateway stderr ---\n{}",
            read("stdout.log"),
            read("stderr.log")
        )
    }

    /// A client for the SCIM listener that trusts the gateway's certificate (and nothing else).
    pub fn client(&self) -> reqwest::ClientBuilder {
        client_trusting(self.cert_pem())
    }

    /// The `/metrics` exposition.
    pub async fn metrics(&self) -> Exposition {
        let r = self
            .admin_client
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap_or_else(|e| panic!("cannot scrape /metrics: {e}\n{}", self.output()));
        assert_eq!(r.status(), 200, "{}", self.output());
        Exposition(r.text().await.unwrap())
    }

    /// `VmRSS` of the process: the memory resident right now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// `VmHWM` of the process: the peak resident memory since it started, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {path}: {e}\n{}", self.output()));
        status_field_kib(&status, field)
            .unwrap_or_else(|| panic!("no {field} in {path}:\n{status}"))
    }
}

/// The value in KiB of a `Field:   1234 kB` line of a `/proc/<pid>/status` text.
pub fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// `log` if short; else its first and last lines, and the WARN and ERROR lines in between.
fn shorten(log: &str) -> String {
    const HEAD: usize = 30;
    const TAIL: usize = 100;
    const NOTABLE: usize = 100;
    let lines: Vec<&str> = log.lines().collect();
    if lines.len() <= HEAD + TAIL + NOTABLE {
        return log.to_string();
    }
    let middle = &lines[HEAD..lines.len() - TAIL];
    let notable: Vec<&str> = middle
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .take(NOTABLE)
        .copied()
        .collect();
    format!(
        "{}\n[... {} lines, of which these WARN/ERROR (at most {NOTABLE}):]\n{}\n[...]\n{}",
        lines[..HEAD].join("\n"),
        middle.len(),
        notable.join("\n"),
        lines[lines.len() - TAIL..].join("\n")
    )
}

/// Two distinct free loopback ports, bound together so they differ, then released for the binary.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// A `/metrics` scrape.
pub struct Exposition(pub String);

impl Exposition {
    /// The value of the sample `name`, written as in the exposition: `family` or
    /// `family{label="value"}`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (sample, value) = l.split_once(' ')?;
                (sample == name).then(|| value.trim().parse().ok())?
            })
    }

    #[track_caller]
    pub fn value(&self, name: &str) -> f64 {
        self.get(name)
            .unwrap_or_else(|| panic!("no sample {name} in:\n{}", self.0))
    }
}

/// The soft limit on open files of this process (inherited by the gateway and slapd it starts).
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next())
        .map(|soft| soft.parse().unwrap_or(u64::MAX)) // "unlimited"
        .unwrap_or_else(|| panic!("no open-files limit in /proc/self/limits:\n{limits}"))
}

/// Makes sure this process (and so the gateway it starts) may open `needed` files, raising the
/// soft limit towards the hard one with `prlimit(1)` if needed (the crate forbids unsafe code, so
/// no setrlimit call).
pub fn ensure_open_files(needed: u64) {
    if open_files_limit() >= needed {
        return;
    }
    let raised = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={needed}:"))
        .status();
    let limit = open_files_limit();
    assert!(
        limit >= needed,
        "this test opens about {needed} files per process but the soft limit is {limit}, and \
         raising it with prlimit failed ({raised:?}). Run `ulimit -n {needed}` (the hard limit \
         must allow it) before the tests."
    );
}
