//! Throwaway OpenLDAP servers for the integration tests.
//!
//! Every call to [`Slapd::start`] builds a private instance in a fresh
//! temporary directory from the same files the quickstart uses
//! (`deploy/ldap/slapd.conf.in`, `scim-gateway.schema`, `seed.ldif`), loads
//! the seed with `slapadd`, and starts `/usr/sbin/slapd` on a free loopback
//! port. Tests therefore never share directory state and may run in parallel.
//! [`Slapd::start_tls`] does the same with a freshly generated CA and server
//! certificate, listening for StartTLS on `ldap://` and for `ldaps://`.
//! [`Slapd::start_with_ldif`] loads an extra LDIF after the seed, e.g. one
//! made by [`write_big_group_ldif`] (many users in one group).
//!
//! Fault injection: [`Slapd::stop`], [`Slapd::kill`], [`Slapd::restart`]
//! (same port, same data), [`Slapd::pause`] and [`Slapd::resume`]
//! (SIGSTOP/SIGCONT, a hung server whose sockets stay open).
//!
//! Process hygiene: slapd runs in the foreground (`-d none`) under a tiny
//! `sh` supervisor whose stdin is a pipe held by this process. Dropping the
//! [`Slapd`] closes the pipe, the supervisor sends SIGTERM to slapd and both
//! exit; the drop waits for that (and escalates to SIGKILL after a timeout).
//! A paused slapd gets SIGCONT first. Because the trigger is "the pipe's
//! write end went away", slapd is also stopped when the test binary dies
//! without running destructors (a panic with `panic = "abort"`, SIGKILL from
//! a CI timeout, ...) -- unless it is paused at that moment: a stopped
//! process only acts on SIGTERM once continued.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchResult};

/// Naming context of the test directory (fixed in `slapd.conf.in`).
pub const SUFFIX: &str = "dc=example,dc=org";
/// The rootdn of the test directory.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
/// The gateway's service account (deploy/ldap/service-account.ldif.in), same password as the admin.
pub const SERVICE_DN: &str = "cn=scim-gateway,dc=example,dc=org";
/// The placeholder member every groupOfNames keeps so that it may have no
/// real members (see seed.ldif). Not an entry; `refint_nothing` in slapd.conf.
pub const EMPTY_MEMBER_DN: &str = "cn=empty-membership,dc=example,dc=org";
/// The group of all users of [`write_big_group_ldif`].
pub const BIG_GROUP_DN: &str = "cn=big,ou=groups,dc=example,dc=org";
/// The group of the first 10 users of [`write_big_group_ldif`].
pub const SMALL_GROUP_DN: &str = "cn=small,ou=groups,dc=example,dc=org";

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
/// How long `restart` keeps trying while its fixed port is still taken.
const RESTART_PORT_WAIT: Duration = Duration::from_secs(5);

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
    /// TCP port on 127.0.0.1 (plain LDAP; StartTLS for [`Slapd::start_tls`]).
    /// Unchanged by [`Slapd::restart`].
    pub port: u16,
    /// `ldap://127.0.0.1:<port>`
    pub url: String,
    /// Always [`ADMIN_DN`].
    pub admin_dn: String,
    /// Unique per instance, so a client that reached the wrong server fails to bind.
    pub admin_password: String,
    pid: u32,
    /// The `ldaps://` port of a TLS instance.
    ldaps_port: Option<u16>,
    /// Trust for the harness's own connections to a TLS instance (which always use StartTLS).
    client_tls: Option<Arc<rustls::ClientConfig>>,
    process: Option<Supervised>,
    // Declared last: removed only after the process is gone.
    dir: tempfile::TempDir,
}

/// The certificate material of a [`Slapd::start_tls`] instance. The files
/// live in the instance directory and disappear with the [`Slapd`].
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// PEM file of the CA that signed slapd's certificate (absolute path).
    pub ca_file: PathBuf,
    /// The same CA certificate, PEM.
    pub ca_pem: String,
    /// Port of the `ldaps://` listener.
    pub ldaps_port: u16,
    /// `ldaps://127.0.0.1:<ldaps_port>`
    pub ldaps_url: String,
}

/// One successful simple bind, as slapd logged it (TLS instances only, see [`Slapd::binds`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedBind {
    /// slapd's connection number.
    pub conn: u64,
    /// The port the client connected to (the `ldap://` or the `ldaps://` one).
    pub server_port: Option<u16>,
    /// The bind DN.
    pub dn: String,
    /// Security strength factor of the connection at bind time: 0 means plaintext.
    pub ssf: u32,
}

/// What a TLS instance needs besides the plain one.
struct TlsSetup {
    material: TlsMaterial,
    /// Lines for slapd.conf's global section.
    directives: String,
    client: Arc<rustls::ClientConfig>,
}

impl Slapd {
    /// Starts a fresh seeded slapd on a free loopback port in a new temp
    /// directory. Blocking (std::process); fine to call from `#[tokio::test]`.
    /// Panics with slapd's output if the server cannot be started.
    pub fn start() -> Slapd {
        Self::launch(false, None).0
    }

    /// Like [`Slapd::start`], and loads `extra_ldif` (with `slapadd`, right
    /// after the seed and before slapd starts) as well. Entries must come
    /// parent-first and may not repeat seeded ones. slapadd runs no overlay:
    /// memberOf values must be in the LDIF, as [`write_big_group_ldif`] does.
    pub fn start_with_ldif(extra_ldif: &Path) -> Slapd {
        Self::launch(false, Some(extra_ldif)).0
    }

    /// Like [`Slapd::start`], with a server certificate for `127.0.0.1` and
    /// `localhost` signed by a fresh test CA. slapd listens on
    /// `ldap://127.0.0.1:<port>` (StartTLS offered, plaintext still allowed)
    /// and `ldaps://127.0.0.1:<ldaps_port>`, and logs connections and binds
    /// (`-d stats`) so tests can check how clients connected ([`Slapd::binds`]).
    /// The harness's own connections ([`Slapd::admin`], [`Slapd::find`], ...)
    /// use StartTLS with the test CA.
    pub fn start_tls() -> (Slapd, TlsMaterial) {
        let (slapd, material) = Self::launch(true, None);
        (slapd, material.expect("a TLS instance has TLS material"))
    }

    fn launch(tls: bool, extra_ldif: Option<&Path>) -> (Slapd, Option<TlsMaterial>) {
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

        let tls = tls.then(|| tls_setup(dir.path()));
        let admin_password = unique_password();
        let conf = dir.path().join("slapd.conf");
        let service_account = render_config(
            dir.path(),
            &conf,
            &admin_password,
            tls.as_ref().map_or("", |t| t.directives.as_str()),
        );

        // Load the seed offline: faster than ldapadd and no race with startup.
        slapadd(&conf, &deploy_file("seed.ldif"));
        slapadd(&conf, &service_account);
        if let Some(extra) = extra_ldif {
            slapadd(&conf, extra);
        }

        let log = dir.path().join("slapd.log");
        let pidfile = dir.path().join("slapd.pid");
        let client_tls = tls.as_ref().map(|t| t.client.clone());
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let ldaps_port = tls.is_some().then(|| loop {
                let p = free_port();
                if p != port {
                    break p;
                }
            });
            let url = format!("ldap://127.0.0.1:{port}");
            let mut process = Supervised::spawn(
                &log,
                &conf,
                &listen_urls(port, ldaps_port),
                debug_level(tls.is_some()),
            );
            let ports: Vec<u16> = std::iter::once(port).chain(ldaps_port).collect();
            match wait_ready(
                &mut process,
                &pidfile,
                &ports,
                &url,
                &admin_password,
                client_tls.as_ref(),
            ) {
                Ok(()) => {
                    let material = tls.map(|t| {
                        let ldaps_port = ldaps_port.unwrap_or_default();
                        TlsMaterial {
                            ldaps_port,
                            ldaps_url: format!("ldaps://127.0.0.1:{ldaps_port}"),
                            ..t.material
                        }
                    });
                    let slapd = Slapd {
                        port,
                        url,
                        admin_dn: ADMIN_DN.to_string(),
                        admin_password,
                        pid: process.slapd_pid,
                        ldaps_port,
                        client_tls,
                        process: Some(process),
                        dir,
                    };
                    return (slapd, material);
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
                    let _ = fs::remove_file(&pidfile);
                }
            }
        }
        panic!(
            "slapd did not start after {START_ATTEMPTS} attempts, every port was taken: {}",
            failures.join("; ")
        );
    }

    /// Stops slapd gracefully (SIGTERM, waiting for it to exit; SIGKILL if it
    /// ignores that for 10 s). The data directory and the ports are kept for
    /// [`Slapd::restart`]. Does nothing if slapd is not running.
    pub fn stop(&mut self) {
        // Supervised's drop continues a paused slapd, then stops it.
        drop(self.process.take());
    }

    /// Kills slapd with SIGKILL (no shutdown, like a crash) and waits until it
    /// is gone. Data directory and ports are kept. Does nothing if slapd is
    /// not running.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            if !process.exited() {
                signal(process.slapd_pid, "KILL");
            }
            // slapd's death ends the supervisor; the drop then finds it exited
            // (and would still escalate if something went wrong).
            process.wait_exit(STOP_TIMEOUT);
        }
    }

    /// Starts slapd again on the same port(s) with the same configuration and
    /// data, after stopping it gracefully if it is still running. Returns once
    /// it answers an admin bind; panics with its log otherwise. [`Slapd::pid`]
    /// names the new process afterwards.
    pub fn restart(&mut self) {
        self.stop();
        let log = self.dir.path().join("slapd.log");
        let pidfile = self.dir.path().join("slapd.pid");
        let conf = self.dir.path().join("slapd.conf");
        let ports: Vec<u16> = std::iter::once(self.port).chain(self.ldaps_port).collect();
        let deadline = Instant::now() + RESTART_PORT_WAIT;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let log_offset = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            // A killed slapd leaves its pid file behind.
            let _ = fs::remove_file(&pidfile);
            let mut process = Supervised::spawn(
                &log,
                &conf,
                &listen_urls(self.port, self.ldaps_port),
                debug_level(self.client_tls.is_some()),
            );
            match wait_ready(
                &mut process,
                &pidfile,
                &ports,
                &self.url,
                &self.admin_password,
                self.client_tls.as_ref(),
            ) {
                Ok(()) => {
                    self.pid = process.slapd_pid;
                    self.process = Some(process);
                    return;
                }
                Err(why) => {
                    drop(process);
                    let output = fs::read(&log).unwrap_or_default();
                    let new_output =
                        String::from_utf8_lossy(output.get(log_offset as usize..).unwrap_or(&[]))
                            .into_owned();
                    if new_output.contains("Address already in use") && Instant::now() < deadline {
                        // The port must stay the same: wait for whoever holds it.
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    panic!(
                        "slapd did not restart on port(s) {ports:?} (attempt {attempt}: {why}).\n\
                         --- slapd output ({}) ---\n{}",
                        log.display(),
                        String::from_utf8_lossy(&output)
                    );
                }
            }
        }
    }

    /// Freezes slapd with SIGSTOP: connections stay open and the kernel still
    /// accepts new ones, but nothing is answered until [`Slapd::resume`].
    /// Don't use [`Slapd::admin`], [`Slapd::find`], ... while paused: they would hang.
    /// Returns once every slapd thread is stopped: SIGSTOP takes effect only when the
    /// process next gets CPU time, and a test must not race a slapd that still answers.
    pub fn pause(&self) {
        let process = self.running("pause");
        assert!(
            signal(process.slapd_pid, "STOP"),
            "cannot SIGSTOP slapd (pid {})",
            process.slapd_pid
        );
        let tasks = PathBuf::from(format!("/proc/{}/task", process.slapd_pid));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // `/proc/<pid>/task/<tid>/stat` is `tid (comm) S …`: the state follows the last parenthesis.
            let states: Vec<char> = fs::read_dir(&tasks)
                .map(|d| {
                    d.filter_map(|task| {
                        let stat = fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
                        stat.rsplit_once(") ")?.1.chars().next()
                    })
                    .collect()
                })
                .unwrap_or_default();
            if !states.is_empty() && states.iter().all(|&s| s == 'T') {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "slapd (pid {}) did not stop within 5 s; thread states {states:?}",
                process.slapd_pid
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Continues a slapd frozen by [`Slapd::pause`] (SIGCONT).
    pub fn resume(&self) {
        let process = self.running("resume");
        assert!(
            signal(process.slapd_pid, "CONT"),
            "cannot SIGCONT slapd (pid {})",
            process.slapd_pid
        );
    }

    /// Whether slapd was started and has neither been stopped nor killed
    /// (nor died on its own).
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| !p.exited())
    }

    fn running(&self, what: &str) -> &Supervised {
        self.process
            .as_ref()
            .unwrap_or_else(|| panic!("cannot {what} slapd: it is not running"))
    }

    /// A new connection bound as the rootdn (over StartTLS for a TLS
    /// instance). Its driver runs on the current tokio runtime.
    pub async fn admin(&self) -> Ldap {
        let settings = client_settings(self.client_tls.as_ref());
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
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

    /// Pid of the slapd process (the current one after a restart, the last
    /// one after stop/kill).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `ldaps://127.0.0.1:<port>` of a TLS instance, `None` for a plain one.
    pub fn ldaps_url(&self) -> Option<String> {
        self.ldaps_port.map(|p| format!("ldaps://127.0.0.1:{p}"))
    }

    /// The instance directory (slapd.conf, data/, slapd.log, slapd.pid).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What slapd has printed so far (startup messages and errors; for a TLS
    /// instance also one line per connection and operation). Output of all
    /// runs of the instance, restarts included.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Every successful simple bind slapd has logged, in order, with the
    /// connection's security strength factor at that moment (0: plaintext).
    /// Only TLS instances log operations; for a plain instance this is empty.
    /// slapd writes the log asynchronously: a bind that just completed may
    /// need a moment to show up.
    pub fn binds(&self) -> Vec<LoggedBind> {
        parse_binds(&self.log())
    }

    /// Every search slapd has logged, in order: the connection number and the filter as
    /// slapd normalised it. TLS instances only, with the same delay as [`Slapd::binds`].
    pub fn searches(&self) -> Vec<(u64, String)> {
        parse_searches(&self.log())
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

/// Value of `-h`: the listener URLs.
fn listen_urls(port: u16, ldaps_port: Option<u16>) -> String {
    match ldaps_port {
        None => format!("ldap://127.0.0.1:{port}/"),
        Some(tls) => format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls}/"),
    }
}

/// Value of `-d`. Any -d keeps slapd in the foreground; "none" still prints
/// startup errors (bad config, port in use) but no per-op noise; "stats"
/// adds a line per connection and operation (used by [`Slapd::binds`]).
fn debug_level(tls: bool) -> &'static str {
    if tls {
        "stats"
    } else {
        "none"
    }
}

/// ldap3 settings for the harness's own connections: plain, or StartTLS
/// trusting the test CA.
fn client_settings(tls: Option<&Arc<rustls::ClientConfig>>) -> LdapConnSettings {
    let settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(5));
    match tls {
        None => settings,
        Some(config) => settings.set_starttls(true).set_config(config.clone()),
    }
}

/// Sends `SIG<name>` to `pid`; false if that failed (no such process, ...).
fn signal(pid: u32, name: &str) -> bool {
    Command::new("/bin/sh")
        .arg("-c")
        .arg("kill -s \"$1\" \"$2\" 2>/dev/null")
        .arg("kill")
        .arg(name)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The supervisor process and the pipe that keeps slapd alive.
struct Supervised {
    child: Child,
    lifeline: Option<ChildStdin>,
    slapd_pid: u32,
}

impl Supervised {
    fn spawn(log: &Path, conf: &Path, listen: &str, debug: &str) -> Supervised {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("slapd-supervisor")
            .arg(log)
            .arg(SLAPD)
            .arg("-f")
            .arg(conf)
            .arg("-h")
            .arg(listen)
            .arg("-d")
            .arg(debug)
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

    /// Waits up to `timeout` for the supervisor (and so slapd) to exit.
    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return true,
                Ok(None) if Instant::now() >= deadline => return false,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Stops slapd: graceful via the lifeline, SIGKILL after STOP_TIMEOUT.
    fn stop(&mut self) {
        // A paused slapd would not act on SIGTERM; continuing a running one is harmless.
        if !self.exited() {
            signal(self.slapd_pid, "CONT");
        }
        // EOF on the lifeline makes the supervisor SIGTERM slapd.
        self.lifeline.take();
        if self.wait_exit(STOP_TIMEOUT) {
            return;
        }
        eprintln!(
            "slapd (pid {}) ignored SIGTERM for {STOP_TIMEOUT:?}; sending SIGKILL",
            self.slapd_pid
        );
        signal(self.slapd_pid, "KILL");
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
/// slapd binds its listening sockets before it writes the pid file, so bind
/// attempts start only once the pid file names our process: until then the
/// ports might still belong to someone else (who would never answer, or
/// would answer as a different server). `ports[0]` is the one `url` names.
fn wait_ready(
    process: &mut Supervised,
    pidfile: &Path,
    ports: &[u16],
    url: &str,
    password: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_error = String::from("not started");
    loop {
        if process.exited() {
            return Err(format!("slapd exited ({last_error})"));
        }
        let owns_port = fs::read_to_string(pidfile)
            .is_ok_and(|pid| pid.trim() == process.slapd_pid.to_string());
        let refused = ports.iter().find_map(|&port| {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                .err()
                .map(|e| format!("connect to port {port}: {e}"))
        });
        if !owns_port {
            last_error = String::from("pid file not written yet");
        } else if let Some(e) = refused {
            last_error = e;
        } else {
            match admin_bind_blocking(url, password, tls) {
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
fn admin_bind_blocking(
    url: &str,
    password: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(), String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
                rt.block_on(async {
                    let settings = client_settings(tls).set_conn_timeout(Duration::from_secs(2));
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

/// Loads `ldif` into the (stopped) instance configured by `conf`. `-q` skips
/// consistency checks, which makes big loads several times faster.
fn slapadd(conf: &Path, ldif: &Path) {
    let out = Command::new(SLAPADD)
        .arg("-f")
        .arg(conf)
        .arg("-l")
        .arg(ldif)
        .arg("-q")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {SLAPADD}: {e}"));
    if !out.status.success() {
        panic!(
            "slapadd of {} failed ({}):\n{}{}",
            ldif.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Writes an LDIF for [`Slapd::start_with_ldif`]: `members` users
/// `uid=bulkNNNNNN,ou=people,dc=example,dc=org` (inetOrgPerson with uid, cn,
/// sn; numbered from 000000), the groupOfNames [`BIG_GROUP_DN`] with all of
/// them and [`SMALL_GROUP_DN`] with the first 10 (both also scimGroup, both
/// with the placeholder [`EMPTY_MEMBER_DN`]). The users carry the memberOf
/// values the memberof overlay would have written, since slapadd runs no
/// overlays. Returns the users' DNs in order. 100,000 users make ~25 MB.
pub fn write_big_group_ldif(path: &Path, members: usize) -> Vec<String> {
    write_big_group_ldif_with(path, members, |_| String::new())
}

/// [`write_big_group_ldif`], with the LDIF lines `extra(i)` (each ending in a newline) added to
/// user `i` right after its object classes: more object classes first (slapadd wants the values
/// of an attribute together), then attributes other than uid, cn, sn and memberOf.
pub fn write_big_group_ldif_with(
    path: &Path,
    members: usize,
    extra: impl Fn(usize) -> String,
) -> Vec<String> {
    assert!(
        members <= 1_000_000,
        "uid=bulkNNNNNN has room for 10^6 users"
    );
    let dns: Vec<String> = (0..members)
        .map(|i| format!("uid=bulk{i:06},ou=people,{SUFFIX}"))
        .collect();
    let file =
        fs::File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let write = |out: &mut BufWriter<fs::File>| -> std::io::Result<()> {
        for (i, dn) in dns.iter().enumerate() {
            write!(
                out,
                "dn: {dn}\n\
                 objectClass: top\n\
                 objectClass: person\n\
                 objectClass: organizationalPerson\n\
                 objectClass: inetOrgPerson\n\
                 {}\
                 uid: bulk{i:06}\n\
                 cn: Bulk User {i:06}\n\
                 sn: User{i:06}\n\
                 memberOf: {BIG_GROUP_DN}\n",
                extra(i)
            )?;
            if i < 10 {
                writeln!(out, "memberOf: {SMALL_GROUP_DN}")?;
            }
            writeln!(out)?;
        }
        for (group, count) in [(BIG_GROUP_DN, members), (SMALL_GROUP_DN, members.min(10))] {
            let cn = group
                .strip_prefix("cn=")
                .and_then(|rest| rest.split(',').next())
                .unwrap_or_default();
            write!(
                out,
                "dn: {group}\n\
                 objectClass: top\n\
                 objectClass: groupOfNames\n\
                 objectClass: scimGroup\n\
                 cn: {cn}\n\
                 member: {EMPTY_MEMBER_DN}\n"
            )?;
            for dn in &dns[..count] {
                writeln!(out, "member: {dn}")?;
            }
            writeln!(out)?;
        }
        out.flush()
    };
    write(&mut out).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    dns
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

/// Writes `conf` from `deploy/ldap/slapd.conf.in`. `global` (extra
/// directives, possibly empty) goes into the global section, right before
/// the `database` line; the template itself stays as the deploy scripts use it.
/// Also writes `service-account.ldif` next to it (the gateway's bind account, with the same
/// password as the rootdn) and returns its path.
fn render_config(dir: &Path, conf: &Path, admin_password: &str, global: &str) -> PathBuf {
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
    let mut rendered = template
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
    if !global.is_empty() {
        let at = rendered
            .match_indices('\n')
            .map(|(i, _)| i + 1)
            .find(|&i| is_directive(&rendered[i..], "database"))
            .unwrap_or_else(|| panic!("no `database` line in {}", template_path.display()));
        rendered.insert_str(at, global);
    }
    fs::write(conf, rendered).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
    let service = deploy_file("service-account.ldif.in");
    let service = fs::read_to_string(&service)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", service.display()))
        .replace("@SUFFIX@", SUFFIX)
        .replace("@PASSWORD_HASH@", &hash);
    let service_path = dir.join("service-account.ldif");
    fs::write(&service_path, service).unwrap();
    service_path
}

/// Whether `text` starts with the slapd.conf directive `name` (followed by blanks).
fn is_directive(text: &str, name: &str) -> bool {
    text.strip_prefix(name)
        .is_some_and(|rest| rest.starts_with([' ', '\t']))
}

/// Generates a test CA and a server certificate for 127.0.0.1/localhost
/// signed by it, writes them to `dir`, and returns the slapd.conf lines and
/// a client config trusting the CA.
fn tls_setup(dir: &Path) -> TlsSetup {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let named = |cn: &str| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn
    };

    let ca_key = KeyPair::generate().expect("cannot generate the test CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.distinguished_name = named("scim-ldap-gateway test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params
        .self_signed(&ca_key)
        .expect("cannot self-sign the test CA");

    let server_key = KeyPair::generate().expect("cannot generate the slapd key");
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server certificate parameters");
    server_params.distinguished_name = named("127.0.0.1");
    server_params.is_ca = IsCa::ExplicitNoCa;
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("cannot sign the slapd certificate");

    let tls_dir = dir.join("tls");
    fs::create_dir(&tls_dir).expect("cannot create the TLS directory");
    let ca_file = tls_dir.join("ca.pem");
    let cert_file = tls_dir.join("slapd.crt");
    let key_file = tls_dir.join("slapd.key");
    let ca_pem = ca.pem();
    for (path, pem) in [
        (&ca_file, ca_pem.clone()),
        (&cert_file, server.pem()),
        // PKCS#8 PEM, which GnuTLS (Debian's slapd) reads.
        (&key_file, server_key.serialize_pem()),
    ] {
        fs::write(path, pem).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    let directives = format!(
        "# --- TLS (added by tests/integration/slapd.rs) ---\n\
         TLSCACertificateFile    {}\n\
         TLSCertificateFile      {}\n\
         TLSCertificateKeyFile   {}\n\n",
        ca_file.display(),
        cert_file.display(),
        key_file.display()
    );

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.der().clone())
        .expect("the test CA is not a valid trust anchor");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("rustls protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();

    TlsSetup {
        material: TlsMaterial {
            ca_file,
            ca_pem,
            ldaps_port: 0,
            ldaps_url: String::new(),
        },
        directives,
        client: Arc::new(client),
    }
}

/// Successful simple binds from a `-d stats` log. slapd 2.5 logs, per connection:
/// `conn=N fd=F ACCEPT from IP=client:port (IP=127.0.0.1:server_port)` and, once a
/// simple bind succeeded, `conn=N op=M BIND dn="..." mech=SIMPLE bind_ssf=0 ssf=S`.
fn parse_binds(log: &str) -> Vec<LoggedBind> {
    let mut server_ports = std::collections::HashMap::new();
    let mut binds = Vec::new();
    for line in log.lines() {
        let Some(at) = line.find("conn=") else {
            continue;
        };
        let rest = &line[at + "conn=".len()..];
        let Some((conn, rest)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(conn) = conn.parse::<u64>() else {
            continue;
        };
        if let Some(accept) = rest.find(" ACCEPT from ") {
            // The server side is the parenthesised address at the end.
            let port = rest[accept..]
                .rsplit_once(":")
                .and_then(|(_, p)| p.trim_end_matches(')').trim().parse::<u16>().ok());
            server_ports.insert(conn, port);
        } else if let (Some(dn_at), Some(ssf_at)) = (rest.find(" BIND dn=\""), rest.find(" ssf=")) {
            if !rest.contains(" mech=SIMPLE ") {
                continue;
            }
            let dn = &rest[dn_at + " BIND dn=\"".len()..];
            let Some((dn, _)) = dn.split_once('"') else {
                continue;
            };
            let ssf = rest[ssf_at + " ssf=".len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(ssf) = ssf {
                binds.push(LoggedBind {
                    conn,
                    server_port: server_ports.get(&conn).copied().flatten(),
                    dn: dn.to_string(),
                    ssf,
                });
            }
        }
    }
    binds
}

fn parse_searches(log: &str) -> Vec<(u64, String)> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("conn=")? + "conn=".len()..];
            let (conn, rest) = rest.split_once(' ')?;
            let conn = conn.parse::<u64>().ok()?;
            let filter = rest.split_once(" SRCH base=")?.1;
            let filter = filter.split_once(" filter=\"")?.1;
            let filter = filter.rsplit_once('"')?.0;
            Some((conn, filter.to_string()))
        })
        .collect()
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

/// The directory's own group bookkeeping (slapd.conf's memberof and refint
/// overlays, seed.ldif, [`write_big_group_ldif`]), without the gateway.
mod tests {
    use super::*;
    use ldap3::Mod;
    use std::collections::HashSet;

    fn people(uid: &str) -> String {
        format!("uid={uid},ou=people,{SUFFIX}")
    }

    fn group(cn: &str) -> String {
        format!("cn={cn},ou=groups,{SUFFIX}")
    }

    /// Sorted values of `attr` (operational ones included) of the entry at `dn`.
    async fn values(slapd: &Slapd, dn: &str, attr: &str) -> Vec<String> {
        let entry = slapd
            .entry(dn)
            .await
            .unwrap_or_else(|| panic!("{dn} does not exist"));
        let mut values = entry
            .attrs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(attr))
            .map(|(_, values)| values.clone())
            .unwrap_or_default();
        values.sort();
        values
    }

    fn sorted(values: &[&str]) -> Vec<String> {
        let mut values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        values.sort();
        values
    }

    fn set<'a>(values: &[&'a str]) -> HashSet<&'a str> {
        values.iter().copied().collect()
    }

    #[tokio::test]
    async fn overlays_maintain_memberof_and_references() {
        let dir = tempfile::tempdir().unwrap();
        let ldif = dir.path().join("bulk.ldif");
        let dns = write_big_group_ldif(&ldif, 20);
        assert_eq!(dns.len(), 20);
        assert_eq!(dns[0], people("bulk000000"));
        let slapd = Slapd::start_with_ldif(&ldif);

        // Loaded offline, memberOf comes from the LDIF files themselves.
        assert_eq!(
            values(&slapd, &people("alice"), "memberOf").await,
            vec![group("engineering")]
        );
        assert_eq!(
            values(&slapd, &group("all-hands"), "member").await,
            vec![EMPTY_MEMBER_DN]
        );
        assert_eq!(values(&slapd, BIG_GROUP_DN, "member").await.len(), 21);
        assert_eq!(values(&slapd, SMALL_GROUP_DN, "member").await.len(), 11);
        assert_eq!(
            values(&slapd, &dns[0], "memberOf").await,
            sorted(&[BIG_GROUP_DN, SMALL_GROUP_DN])
        );
        assert_eq!(
            values(&slapd, &dns[19], "memberOf").await,
            vec![BIG_GROUP_DN]
        );

        let mut ldap = slapd.admin().await;
        // memberof: adding a member sets memberOf on it.
        let alice = people("alice");
        ldap.modify(SMALL_GROUP_DN, vec![Mod::Add("member", set(&[&alice]))])
            .await
            .unwrap()
            .success()
            .unwrap();
        assert_eq!(
            values(&slapd, &alice, "memberOf").await,
            sorted(&[&group("engineering"), SMALL_GROUP_DN])
        );
        // A group of just the (nonexistent) placeholder is accepted.
        ldap.add(
            &group("nobody"),
            vec![
                ("objectClass", set(&["top", "groupOfNames", "scimGroup"])),
                ("cn", set(&["nobody"])),
                ("member", set(&[EMPTY_MEMBER_DN])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        // A rename shows up in the groups under the new DN, memberOf moves along.
        ldap.modifydn(&dns[1], "uid=renamed", true, None)
            .await
            .unwrap()
            .success()
            .unwrap();
        let renamed = people("renamed");
        let small = values(&slapd, SMALL_GROUP_DN, "member").await;
        assert!(
            small.contains(&renamed) && !small.contains(&dns[1]),
            "{small:?}"
        );
        assert_eq!(
            values(&slapd, &renamed, "memberOf").await,
            sorted(&[BIG_GROUP_DN, SMALL_GROUP_DN])
        );
        // A deleted member leaves its groups.
        ldap.delete(&dns[2]).await.unwrap().success().unwrap();
        for g in [BIG_GROUP_DN, SMALL_GROUP_DN] {
            let members = values(&slapd, g, "member").await;
            assert!(!members.contains(&dns[2]), "{g}: {members:?}");
            assert!(
                members.iter().any(|m| m == EMPTY_MEMBER_DN),
                "{g}: {members:?}"
            );
        }
        // Removing a group's last member leaves the placeholder (refint_nothing)...
        ldap.add(
            &group("solo"),
            vec![
                ("objectClass", set(&["top", "groupOfNames"])),
                ("cn", set(&["solo"])),
                ("member", set(&[&dns[3]])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        // ... but a user whose only manager goes simply loses the attribute.
        let managed = people("managed");
        ldap.add(
            &managed,
            vec![
                ("objectClass", set(&["top", "inetOrgPerson"])),
                ("uid", set(&["managed"])),
                ("cn", set(&["Managed"])),
                ("sn", set(&["Managed"])),
                ("manager", set(&[&dns[3]])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        ldap.delete(&dns[3]).await.unwrap().success().unwrap();
        // refint works in a background task after answering the delete, so
        // both changes show up shortly afterwards, not at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let solo = values(&slapd, &group("solo"), "member").await;
            let manager = values(&slapd, &managed, "manager").await;
            if solo == vec![EMPTY_MEMBER_DN] && manager.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "refint did not act: solo members {solo:?}, manager {manager:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Deleting a group removes it from its members' memberOf.
        ldap.delete(SMALL_GROUP_DN)
            .await
            .unwrap()
            .success()
            .unwrap();
        assert_eq!(
            values(&slapd, &dns[0], "memberOf").await,
            vec![BIG_GROUP_DN]
        );
        let _ = ldap.unbind().await;
    }
}
