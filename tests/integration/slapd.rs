//! Throwaway OpenLDAP servers for the integration tests.
//!
//! Every call to [`Slapd::start`] builds a private instance in a fresh
//! temporary directory from the same files the quickstart uses
//! (`deploy/ldap/slapd.conf.in`, `scim-gateway.schema`, `seed.ldif`), loads
//! the seed with `slapadd`, and starts `/usr/sbin/slapd` on a free loopback
//! port. Tests therefore never share directory state and may run in parallel.
//!
//! Process hygiene: slapd runs in the foreground (`-d none`) under a tiny
//! `sh` supervisor whose stdin is a pipe held by this process. Dropping the
//! [`Slapd`] closes the pipe, the supervisor sends SIGTERM to slapd and both
//! exit; the drop waits for that (and escalates to SIGKILL after a timeout).
//! Because the trigger is "the pipe's write end went away", slapd is also
//! stopped when the test binary dies without running destructors (a panic
//! with `panic = "abort"`, SIGKILL from a CI timeout, ...).

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchResult};

/// Naming context of the test directory (fixed in `slapd.conf.in`).
pub const SUFFIX: &str = "dc=example,dc=org";
/// The rootdn of the test directory.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const SLAPPASSWD: &str = "/usr/sbin/slappasswd";

/// How many ports to try before giving up (another process may grab the
/// port between our probe and slapd's bind).
const START_ATTEMPTS: u32 = 5;
/// How long slapd may take to answer a bind after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the drop waits for a graceful shutdown before using SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Supervisor run as `sh -c SUPERVISOR slapd-supervisor LOG SLAPD ARGS...`.
/// Prints slapd's pid on stdout, then waits for slapd. A background watcher
/// blocks reading the supervisor's stdin (a pipe from the test process) and
/// sends SIGTERM to slapd as soon as that pipe reaches EOF. Async lists of a
/// non-interactive shell get /dev/null as stdin, hence the explicit fd 3.
const SUPERVISOR: &str = r#"
log=$1; shift
exec 3<&0
"$@" </dev/null >>"$log" 2>&1 3<&- &
pid=$!
echo "$pid"
( read -r _ <&3; kill -TERM "$pid" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
watcher=$!
exec 3<&-
wait "$pid"
rc=$?
kill "$watcher" 2>/dev/null
wait "$watcher" 2>/dev/null
exit "$rc"
"#;

/// A running, seeded OpenLDAP instance. Stopped (and its files removed) on drop.
pub struct Slapd {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// `ldap://127.0.0.1:<port>`
    pub url: String,
    /// Always [`ADMIN_DN`].
    pub admin_dn: String,
    /// Unique per instance, so a client that reached the wrong server fails to bind.
    pub admin_password: String,
    pid: u32,
    process: Option<Supervised>,
    // Declared last: removed only after the process is gone.
    dir: tempfile::TempDir,
}

impl Slapd {
    /// Starts a fresh seeded slapd on a free loopback port in a new temp
    /// directory. Blocking (std::process); fine to call from `#[tokio::test]`.
    /// Panics with slapd's output if the server cannot be started.
    pub fn start() -> Slapd {
        for bin in [SLAPD, SLAPADD, SLAPPASSWD] {
            if !Path::new(bin).exists() {
                panic!(
                    "{bin} not found: the integration tests need a local OpenLDAP server. \
                     Install the Debian packages `slapd` and `ldap-utils` \
                     (./deploy/test.sh does this) and re-run."
                );
            }
        }

        let dir = tempfile::Builder::new()
            .prefix("scim-gw-slapd-")
            .tempdir()
            .expect("cannot create a temporary directory for slapd");
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("cannot create slapd data directory");

        let admin_password = unique_password();
        let conf = dir.path().join("slapd.conf");
        render_config(dir.path(), &conf, &admin_password);

        // Load the seed offline: faster than ldapadd and no race with startup.
        let seed = deploy_file("seed.ldif");
        let out = Command::new(SLAPADD)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&seed)
            .arg("-q")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {SLAPADD}: {e}"));
        if !out.status.success() {
            panic!(
                "slapadd of {} failed ({}):\n{}{}",
                seed.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let log = dir.path().join("slapd.log");
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let url = format!("ldap://127.0.0.1:{port}");
            let mut process = Supervised::spawn(&log, &conf, port);
            let pidfile = dir.path().join("slapd.pid");
            match wait_ready(&mut process, &pidfile, port, &url, &admin_password) {
                Ok(()) => {
                    return Slapd {
                        port,
                        url,
                        admin_dn: ADMIN_DN.to_string(),
                        admin_password,
                        pid: process.slapd_pid,
                        process: Some(process),
                        dir,
                    };
                }
                Err(why) => {
                    // Dropping `process` stops whatever is left of slapd.
                    drop(process);
                    let output = fs::read_to_string(&log).unwrap_or_default();
                    let port_taken = output.contains("Address already in use");
                    failures.push(format!("attempt {attempt} on port {port}: {why}"));
                    if !port_taken {
                        panic!(
                            "slapd did not start ({}).\n--- slapd output ({}) ---\n{}",
                            failures.join("; "),
                            log.display(),
                            output
                        );
                    }
                    // Keep the log short and unambiguous for the next attempt.
                    let _ = fs::remove_file(&log);
                    let _ = fs::remove_file(dir.path().join("slapd.pid"));
                }
            }
        }
        panic!(
            "slapd did not start after {START_ATTEMPTS} attempts, every port was taken: {}",
            failures.join("; ")
        );
    }

    /// A new connection bound as the rootdn. Its driver runs on the current
    /// tokio runtime.
    pub async fn admin(&self) -> Ldap {
        let (conn, mut ldap) = LdapConnAsync::new(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url));
        ldap3::drive!(conn);
        let res = ldap
            .simple_bind(&self.admin_dn, &self.admin_password)
            .await
            .unwrap_or_else(|e| panic!("admin bind to {} failed: {e}", self.url));
        if res.rc != 0 {
            panic!("admin bind to {} failed: {res}", self.url);
        }
        ldap
    }

    /// The entry at `dn` with all user and operational attributes
    /// (`*` and `+`), or `None` if it does not exist.
    pub async fn entry(&self, dn: &str) -> Option<SearchEntry> {
        let mut entries = self.search(dn, Scope::Base, "(objectClass=*)").await;
        match entries.len() {
            0 | 1 => entries.pop(),
            n => panic!("base search of {dn} returned {n} entries"),
        }
    }

    /// Subtree search below `base` with all user and operational attributes.
    /// A missing base yields an empty result.
    pub async fn find(&self, base: &str, filter: &str) -> Vec<SearchEntry> {
        self.search(base, Scope::Subtree, filter).await
    }

    /// Pid of the slapd process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The instance directory (slapd.conf, data/, slapd.log, slapd.pid).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What slapd has printed so far (startup messages and errors).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    async fn search(&self, base: &str, scope: Scope, filter: &str) -> Vec<SearchEntry> {
        let mut ldap = self.admin().await;
        let SearchResult(entries, res) = ldap
            .search(base, scope, filter, vec!["*", "+"])
            .await
            .unwrap_or_else(|e| panic!("search base={base} filter={filter} failed: {e}"));
        let _ = ldap.unbind().await;
        match res.rc {
            0 => entries.into_iter().map(SearchEntry::construct).collect(),
            32 => Vec::new(), // noSuchObject: the base does not exist
            _ => panic!("search base={base} filter={filter} failed: {res}"),
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // Stop slapd first; `dir` is removed when the fields are dropped, after this.
        drop(self.process.take());
    }
}

/// The supervisor process and the pipe that keeps slapd alive.
struct Supervised {
    child: Child,
    lifeline: Option<ChildStdin>,
    slapd_pid: u32,
}

impl Supervised {
    fn spawn(log: &Path, conf: &Path, port: u16) -> Supervised {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("slapd-supervisor")
            .arg(log)
            .arg(SLAPD)
            .arg("-f")
            .arg(conf)
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/"))
            // Any -d keeps slapd in the foreground; "none" still prints
            // startup errors (bad config, port in use) but no per-op noise.
            .arg("-d")
            .arg("none")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn /bin/sh to run slapd: {e}"));
        let lifeline = child.stdin.take();
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let slapd_pid = match (read, line.trim().parse::<u32>()) {
            (Some(Ok(_)), Ok(pid)) => pid,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("slapd supervisor did not report a pid (got {line:?})");
            }
        };
        Supervised {
            child,
            lifeline,
            slapd_pid,
        }
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Stops slapd: graceful via the lifeline, SIGKILL after STOP_TIMEOUT.
    fn stop(&mut self) {
        // EOF on the lifeline makes the supervisor SIGTERM slapd.
        self.lifeline.take();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        eprintln!(
            "slapd (pid {}) ignored SIGTERM for {STOP_TIMEOUT:?}; sending SIGKILL",
            self.slapd_pid
        );
        let _ = Command::new("/bin/sh")
            .arg("-c")
            .arg("kill -KILL \"$1\" 2>/dev/null")
            .arg("kill")
            .arg(self.slapd_pid.to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if self.lifeline.is_some() {
            self.stop();
        }
    }
}

/// Polls until slapd accepts an admin bind, slapd exits, or the timeout passes.
///
/// slapd binds its listening socket before it writes the pid file, so bind
/// attempts start only once the pid file names our process: until then the
/// port might still belong to someone else (who would never answer, or
/// would answer as a different server).
fn wait_ready(
    process: &mut Supervised,
    pidfile: &Path,
    port: u16,
    url: &str,
    password: &str,
) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_error = String::from("not started");
    loop {
        if process.exited() {
            return Err(format!("slapd exited ({last_error})"));
        }
        let owns_port = fs::read_to_string(pidfile)
            .is_ok_and(|pid| pid.trim() == process.slapd_pid.to_string());
        if !owns_port {
            last_error = String::from("pid file not written yet");
        } else if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            last_error = format!("connect: {e}");
        } else {
            match admin_bind_blocking(url, password) {
                Ok(()) => return Ok(()),
                Err(e) => last_error = e,
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no successful bind within {READY_TIMEOUT:?} (last error: {last_error})"
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// One bind attempt on a private runtime in a helper thread: `start()` is
/// synchronous and may be called from inside a tokio runtime, where blocking
/// on another runtime in the same thread is not allowed.
fn admin_bind_blocking(url: &str, password: &str) -> Result<(), String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
                rt.block_on(async {
                    let settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(2));
                    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    ldap3::drive!(conn);
                    let bind = tokio::time::timeout(
                        Duration::from_secs(2),
                        ldap.simple_bind(ADMIN_DN, password),
                    )
                    .await
                    .map_err(|_| "bind timed out".to_string())?
                    .map_err(|e| format!("bind: {e}"))?;
                    let _ = ldap.unbind().await;
                    if bind.rc == 0 {
                        Ok(())
                    } else {
                        Err(format!("bind: {bind}"))
                    }
                })
            })
            .join()
            .unwrap_or_else(|_| Err("bind attempt panicked".to_string()))
    })
}

/// Asks the kernel for a currently unused loopback port. It is released
/// again before slapd binds it, hence the retry loop in `start()`.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

fn deploy_file(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join("ldap")
        .join(name);
    if !path.is_file() {
        panic!("{} is missing", path.display());
    }
    path
}

/// Writes `conf` from `deploy/ldap/slapd.conf.in`.
fn render_config(dir: &Path, conf: &Path, admin_password: &str) {
    let out = Command::new(SLAPPASSWD)
        .arg("-s")
        .arg(admin_password)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {SLAPPASSWD}: {e}"));
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !hash.starts_with("{SSHA}") {
        panic!(
            "slappasswd failed ({}): {}{}",
            out.status,
            hash,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let template_path = deploy_file("slapd.conf.in");
    let template = fs::read_to_string(&template_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", template_path.display()));
    let schema = deploy_file("scim-gateway.schema");
    let rendered = template
        .replace("@DIR@", &dir.display().to_string())
        .replace("@SCHEMA@", &schema.display().to_string())
        .replace("@SUFFIX@", SUFFIX)
        .replace("@ROOTPW@", &hash);
    // Every placeholder must be gone from the directives (comments may mention them).
    if let Some(line) = rendered
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && l.contains('@'))
    {
        panic!("unreplaced placeholder in rendered slapd.conf: {line}");
    }
    fs::write(conf, rendered).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
}

/// Distinct for every instance of every test process; not a secret.
fn unique_password() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "admin-{}-{}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}
