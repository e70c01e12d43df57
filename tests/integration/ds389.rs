//! Throwaway 389 Directory Server instances for the integration tests, and
//! tests that pin down how 389 behaves where the gateway cares.
//!
//! 389 is normally installed with `dscreate` under `/etc/dirsrv`,
//! `/var/lib/dirsrv`, ... and run by systemd. Here nothing leaves a temporary
//! directory and systemd is not needed:
//!
//! - Once per test process, `dscreate` builds a *template* instance as a
//!   "prefix install": `$PREFIX/share/dirsrv/inf/defaults.inf` is a copy of
//!   the system one with every path moved below the template directory,
//!   `with_systemd = 0` (so lib389 starts and stops ns-slapd itself) and the
//!   server running as root. The template keeps only configuration: its
//!   database, logs and runtime files are deleted, and a few settings are
//!   changed for tests (see [`TEMPLATE_SETTINGS`]). This takes about 7 s.
//! - Every [`Ds389::start`] copies the template into a fresh temporary
//!   directory, rewrites the template's paths in `dse.ldif` and `pkcs11.txt`
//!   (and checks that no file names the template any more), sets a free
//!   loopback port and a new Directory Manager password, and runs
//!   `ns-slapd -d <level>`, which keeps it in the foreground as our child.
//!   ns-slapd creates the empty database files itself, and the harness adds
//!   the suffix entry as `dscreate` would have. No database file is ever
//!   copied: Berkeley DB's files hold absolute paths.
//! - Dropping a [`Ds389`] sends SIGTERM (SIGKILL after [`STOP_TIMEOUT`]) and
//!   removes the directory. A janitor process per directory (template and
//!   instances) covers a test process that dies without running destructors:
//!   once the pipe from the test process closes without a "done" line, it
//!   stops every process whose command line names the directory and
//!   removes the directory.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::future::Future;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchResult};

/// The only naming context of every instance.
pub const SUFFIX: &str = "dc=example,dc=org";
/// 389's root DN.
pub const MANAGER_DN: &str = "cn=Directory Manager";

const DSCREATE: &str = "/usr/sbin/dscreate";
const NS_SLAPD: &str = "/usr/sbin/ns-slapd";
const PWDHASH: &str = "/usr/bin/pwdhash";
/// lib389's path defaults, which the template's own defaults.inf overrides.
const SYSTEM_DEFAULTS: &str = "/usr/share/dirsrv/inf/defaults.inf";
/// `dscreate` copies `schema/` and `config/` from `<sysconf_dir>/dirsrv`.
const SYSTEM_SYSCONF: &str = "/etc/dirsrv";

/// Instance name; all instances may share it since each has its own paths.
const INSTANCE: &str = "gw";
// The layout below an instance (or template) directory.
const CONFIG_DIR: &str = "etc/dirsrv/slapd-gw";
const DB_DIR: &str = "var/lib/dirsrv/slapd-gw/db";
const LOG_DIR: &str = "var/log/dirsrv/slapd-gw";
const PID_FILE: &str = "run/dirsrv/slapd-gw.pid";
const LDAPI_SOCKET: &str = "run/slapd-gw.socket";
/// ns-slapd's stdout and stderr (startup failures before the error log opens).
const CONSOLE_LOG: &str = "console.log";

/// Value of `ns-slapd -d`: SLAPD_DEFAULT_ERRORLOG_LEVEL (what `dscontainer`
/// passes). Any `-d` keeps ns-slapd in the foreground; `-d 0` would also
/// silence the error log.
const ERRORLOG_LEVEL: &str = "266354688";

/// What [`Ds389::entry`] and [`Ds389::find`] ask for: user and operational
/// attributes, and by name the 389 ones the gateway reads. All three are
/// operational in 389's schema, so `*` alone would miss them.
const ENTRY_ATTRS: [&str; 5] = ["*", "+", "nsUniqueId", "nsAccountLock", "nsRoleDN"];

/// Changes to the `dse.ldif` that `dscreate` wrote, as (entry, attribute,
/// value), applied once to the template.
const TEMPLATE_SETTINGS: &[(&str, &str, &str)] = &[
    // Listen on loopback only, not on every interface.
    ("cn=config", "nsslapd-listenhost", "127.0.0.1"),
    // Show operations in the access log at once (for `log()`).
    ("cn=config", "nsslapd-accesslog-logbuffering", "off"),
    // Cache autosizing takes a quarter of the RAM, and Berkeley DB backs the
    // cache with ~100 MB of region files per instance.
    (BDB_CONFIG, "nsslapd-cache-autosize", "0"),
    (BDB_CONFIG, "nsslapd-dbcachesize", "8388608"),
    (USERROOT_CONFIG, "nsslapd-cachememsize", "16777216"),
    (USERROOT_CONFIG, "nsslapd-dncachememsize", "16777216"),
    // No fsync per write: the data is thrown away.
    (BDB_CONFIG, "nsslapd-db-durable-transaction", "off"),
    // This legacy scheme benchmarks the CPU for ~1.5 s at every start. The
    // default scheme (PBKDF2-SHA512) is another plugin.
    (
        "cn=PBKDF2_SHA256,cn=Password Storage Schemes,cn=plugins,cn=config",
        "nsslapd-pluginEnabled",
        "off",
    ),
];
const BDB_CONFIG: &str = "cn=bdb,cn=config,cn=ldbm database,cn=plugins,cn=config";
const USERROOT_CONFIG: &str = "cn=userroot,cn=ldbm database,cn=plugins,cn=config";

/// Free ports to try before giving up (another process may take the port
/// between our probe and ns-slapd's bind).
const START_ATTEMPTS: u32 = 5;
/// How long ns-slapd may take to accept a bind after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits after SIGTERM before SIGKILL (a clean stop takes ~2 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `restart` waits for its port to become free again.
const RESTART_PORT_WAIT: Duration = Duration::from_secs(10);

/// Shell script run as `sh -c JANITOR ds389-janitor DIR`, stdin a pipe from
/// the test process. A "done" line means the test process cleaned up and
/// the janitor just exits. End of input without it means the test process
/// died: then every process whose command line contains `DIR/` (ns-slapd
/// via `-D DIR/etc/...`, a running dscreate) gets SIGTERM, SIGKILL after
/// 10 s, and DIR is removed. Command lines are matched in the shell, so
/// that no helper process carries `DIR/` in its own arguments.
const JANITOR: &str = r#"
dir=$1
while read -r line; do
    [ "$line" = done ] && exit 0
done
signal_owners() {
    found=1
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        [ "$pid" = "$$" ] && continue
        cmdline=$(tr '\0' ' ' < "$proc/cmdline" 2>/dev/null) || continue
        case $cmdline in
            *"$dir/"*) kill "-$1" "$pid" 2>/dev/null && found=0 ;;
        esac
    done
    return $found
}
signal_owners TERM
waited=0
while [ "$waited" -lt 100 ] && signal_owners 0; do
    sleep 0.1
    waited=$((waited + 1))
done
signal_owners KILL
rm -rf -- "$dir"
"#;

/// A running 389 Directory Server with an empty `dc=example,dc=org`.
/// Stopped, and its files removed, on drop.
pub struct Ds389 {
    port: u16,
    url: String,
    manager_password: String,
    /// ns-slapd; `None` while stopped.
    server: Option<Child>,
    janitor: Janitor,
    dir: tempfile::TempDir,
}

impl Ds389 {
    /// Starts a fresh instance on a free loopback port in a new temporary
    /// directory and returns once a bind as `cn=Directory Manager` works.
    /// The first call in a test process also builds the template (~7 s);
    /// later ones take under a second. Blocking; fine to call from
    /// `#[tokio::test]`. Panics with the server's logs if it cannot start.
    pub fn start() -> Ds389 {
        let template = Template::get();
        let dir = tempfile::Builder::new()
            .prefix("scim-gw-ds389-")
            .tempdir()
            .expect("cannot create a temporary directory for 389-ds");
        let janitor = Janitor::watch(dir.path());
        template.copy_to(dir.path());
        let manager_password = unique_password("manager");
        let manager_hash = pwdhash(dir.path(), &manager_password);

        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let dse = dir.path().join(CONFIG_DIR).join("dse.ldif");
            edit_ldif(&dse, |lines| {
                set_attr(lines, "cn=config", "nsslapd-port", &port.to_string());
                set_attr(lines, "cn=config", "nsslapd-rootpw", &manager_hash);
            });
            let url = format!("ldap://127.0.0.1:{port}");
            match launch(dir.path(), &url, &manager_password) {
                Ok(server) => {
                    let ds = Ds389 {
                        port,
                        url,
                        manager_password,
                        server: Some(server),
                        janitor,
                        dir,
                    };
                    ds.create_suffix_entry();
                    return ds;
                }
                Err(failure) if failure.port_taken => {
                    failures.push(format!("attempt {attempt} on port {port}: {}", failure.why));
                }
                Err(failure) => panic!(
                    "389-ds did not start ({}).\n{}",
                    failure.why,
                    server_output(dir.path())
                ),
            }
        }
        panic!(
            "389-ds did not start after {START_ATTEMPTS} attempts, every port was taken: {}",
            failures.join("; ")
        );
    }

    /// `ldap://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ldapi://` URL of the instance's Unix socket. 389 counts LDAPI as a
    /// secure connection, as it does TLS; plain `ldap://` is not.
    pub fn ldapi_url(&self) -> String {
        let socket = self.dir.path().join(LDAPI_SOCKET);
        let encoded: String =
            percent_encoding::utf8_percent_encode(&socket.to_string_lossy(), PATH_SEGMENT)
                .collect();
        format!("ldapi://{encoded}")
    }

    pub fn suffix(&self) -> &str {
        SUFFIX
    }

    pub fn manager_dn(&self) -> &str {
        MANAGER_DN
    }

    /// Unique per instance, so a client that reached the wrong server fails to bind.
    pub fn manager_password(&self) -> &str {
        &self.manager_password
    }

    /// The instance directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new plain-LDAP connection bound as Directory Manager. Its driver
    /// runs on the current tokio runtime.
    pub async fn admin(&self) -> Ldap {
        self.bound_admin(&self.url).await
    }

    /// Like [`Ds389::admin`], over LDAPI ([`Ds389::ldapi_url`]): for
    /// operations that 389 refuses on an insecure connection, such as
    /// Password Modify.
    pub async fn admin_ldapi(&self) -> Ldap {
        self.bound_admin(&self.ldapi_url()).await
    }

    /// The entry at `dn` with user and operational attributes (see
    /// [`ENTRY_ATTRS`]), or `None` if it does not exist. `""` is the root DSE.
    pub async fn entry(&self, dn: &str) -> Option<SearchEntry> {
        let mut entries = self.search(dn, Scope::Base, "(objectClass=*)").await;
        match entries.len() {
            0 | 1 => entries.pop(),
            n => panic!("base search of {dn} returned {n} entries"),
        }
    }

    /// Subtree search below `base`, attributes as for [`Ds389::entry`]. A
    /// missing base yields an empty result.
    pub async fn find(&self, base: &str, filter: &str) -> Vec<SearchEntry> {
        self.search(base, Scope::Subtree, filter).await
    }

    /// The error log and the access log, in that order.
    pub fn log(&self) -> String {
        let read = |name: &str| {
            fs::read_to_string(self.dir.path().join(LOG_DIR).join(name)).unwrap_or_default()
        };
        format!(
            "--- errors ---\n{}--- access ---\n{}",
            read("errors"),
            read("access")
        )
    }

    /// Stops ns-slapd gracefully and starts it again on the same port with the
    /// same data, e.g. after enabling a plugin. Returns once Directory Manager
    /// can bind; panics with the logs otherwise.
    pub fn restart(&mut self) {
        if let Some(mut server) = self.server.take() {
            stop(&mut server);
        }
        let deadline = Instant::now() + RESTART_PORT_WAIT;
        loop {
            match launch(self.dir.path(), &self.url, &self.manager_password) {
                Ok(server) => {
                    self.server = Some(server);
                    return;
                }
                // The port must stay the same: wait for whoever holds it.
                Err(failure) if failure.port_taken && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(failure) => panic!(
                    "389-ds did not restart on port {} ({}).\n{}",
                    self.port,
                    failure.why,
                    server_output(self.dir.path())
                ),
            }
        }
    }

    async fn bound_admin(&self, url: &str) -> Ldap {
        let (conn, mut ldap) = LdapConnAsync::with_settings(client_settings(), url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        ldap3::drive!(conn);
        let res = ldap
            .simple_bind(MANAGER_DN, &self.manager_password)
            .await
            .unwrap_or_else(|e| panic!("Directory Manager bind to {url} failed: {e}"));
        if res.rc != 0 {
            panic!("Directory Manager bind to {url} failed: {res}");
        }
        ldap
    }

    async fn search(&self, base: &str, scope: Scope, filter: &str) -> Vec<SearchEntry> {
        let mut ldap = self.admin().await;
        let SearchResult(entries, res) = ldap
            .search(base, scope, filter, ENTRY_ATTRS.to_vec())
            .await
            .unwrap_or_else(|e| panic!("search base={base} filter={filter} failed: {e}"));
        let _ = ldap.unbind().await;
        match res.rc {
            0 => entries.into_iter().map(SearchEntry::construct).collect(),
            32 => Vec::new(), // noSuchObject: the base does not exist
            _ => panic!("search base={base} filter={filter} failed: {res}"),
        }
    }

    /// Adds the suffix entry that `dscreate` makes with
    /// `create_suffix_entry = True`, anonymous-read ACI included.
    fn create_suffix_entry(&self) {
        let added = on_private_runtime(|| async {
            let (conn, mut ldap) = LdapConnAsync::with_settings(client_settings(), &self.url)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            ldap3::drive!(conn);
            ldap.simple_bind(MANAGER_DN, &self.manager_password)
                .await
                .and_then(|r| r.success())
                .map_err(|e| format!("bind: {e}"))?;
            let one = |value: &'static str| HashSet::from([value]);
            ldap.add(
                SUFFIX,
                vec![
                    ("objectClass", HashSet::from(["top", "domain"])),
                    ("dc", one("example")),
                    ("description", one(SUFFIX)),
                    ("aci", one(SUFFIX_ACI)),
                ],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("add {SUFFIX}: {e}"))?;
            let _ = ldap.unbind().await;
            Ok::<(), String>(())
        });
        if let Err(why) = added {
            panic!(
                "cannot create the suffix entry: {why}\n{}",
                server_output(self.dir.path())
            );
        }
    }
}

/// The ACI `dscreate` puts on a `dc=` suffix entry.
const SUFFIX_ACI: &str = "(targetattr=\"dc || description || objectClass\")\
    (targetfilter=\"(objectClass=domain)\")(version 3.0; acl \"Enable anyone domain read\"; \
    allow (read, search, compare)(userdn=\"ldap:///anyone\");)";

/// Characters to percent-encode in an `ldapi://` host part (the socket path).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.');

impl Drop for Ds389 {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            stop(&mut server);
        }
        // Removed here rather than by TempDir's drop, so that the janitor is
        // dismissed only once nothing is left.
        let _ = fs::remove_dir_all(self.dir.path());
        self.janitor.dismiss();
    }
}

/// The configured, stopped instance that every [`Ds389`] copies.
struct Template {
    dir: PathBuf,
    /// Never dismissed: removes `dir` when the test process exits.
    _janitor: Janitor,
}

impl Template {
    /// The template of this test process, built on first use. Panics (in
    /// every caller) if it cannot be built.
    fn get() -> &'static Template {
        static TEMPLATE: OnceLock<Result<Template, String>> = OnceLock::new();
        match TEMPLATE.get_or_init(Template::build) {
            Ok(template) => template,
            Err(why) => panic!("cannot build the 389-ds template instance: {why}"),
        }
    }

    fn build() -> Result<Template, String> {
        for bin in [DSCREATE, NS_SLAPD, PWDHASH, SYSTEM_DEFAULTS] {
            if !Path::new(bin).exists() {
                panic!(
                    "{bin} not found: the 389-ds integration tests need 389 Directory Server. \
                     Run ./deploy/test.sh, which installs the Debian package `389-ds-base`."
                );
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("scim-gw-ds389-template-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?
            .keep();
        let janitor = Janitor::watch(&dir);
        let template = Template {
            dir,
            _janitor: janitor,
        };
        template.prepare_prefix()?;
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            match template.dscreate() {
                Ok(()) => {
                    template.strip()?;
                    return Ok(template);
                }
                // lib389 checks the port itself; anything else is final.
                Err(output) if output.contains("is already in use") => {
                    failures.push(format!("attempt {attempt}: port taken"));
                    let _ = fs::remove_dir_all(template.dir.join("etc/dirsrv").join("slapd-gw"));
                }
                Err(output) => return Err(format!("dscreate failed:\n{output}")),
            }
        }
        Err(format!(
            "dscreate found no free port: {}",
            failures.join("; ")
        ))
    }

    /// Writes `share/dirsrv/inf/defaults.inf`, which lib389 reads instead of
    /// the system one when `PREFIX` is set, and the system files `dscreate`
    /// copies from `<sysconf_dir>/dirsrv`.
    fn prepare_prefix(&self) -> Result<(), String> {
        let system = fs::read_to_string(SYSTEM_DEFAULTS)
            .map_err(|e| format!("cannot read {SYSTEM_DEFAULTS}: {e}"))?;
        let overrides = self.default_overrides();
        let mut seen = Vec::new();
        let mut defaults = String::new();
        for line in system.lines() {
            let key = line.split_once('=').map(|(k, _)| k.trim());
            match overrides.iter().find(|(k, _)| Some(*k) == key) {
                Some((key, value)) => {
                    seen.push(*key);
                    defaults.push_str(&format!("{key} = {value}\n"));
                }
                None => {
                    defaults.push_str(line);
                    defaults.push('\n');
                }
            }
        }
        let missing: Vec<&str> = overrides
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !seen.contains(k))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{SYSTEM_DEFAULTS} lacks {missing:?}: this harness does not know this 389-ds-base"
            ));
        }
        let inf_dir = self.dir.join("share/dirsrv/inf");
        fs::create_dir_all(&inf_dir).map_err(|e| format!("cannot create {inf_dir:?}: {e}"))?;
        fs::write(inf_dir.join("defaults.inf"), defaults)
            .map_err(|e| format!("cannot write defaults.inf: {e}"))?;
        for sub in ["schema", "config"] {
            copy_tree(
                &Path::new(SYSTEM_SYSCONF).join(sub),
                &self.dir.join("etc/dirsrv").join(sub),
            );
        }
        Ok(())
    }

    /// The defaults.inf keys that would point outside the template directory,
    /// plus systemd and the user to run as.
    fn default_overrides(&self) -> Vec<(&'static str, String)> {
        let at = |relative: &str| self.dir.join(relative).to_string_lossy().into_owned();
        let log = |name: &str| at(&format!("{LOG_DIR}/{name}"));
        vec![
            ("with_systemd", "0".to_string()),
            // The temporary directory is root's; the dirsrv user could not enter it.
            ("user", "root".to_string()),
            ("group", "root".to_string()),
            ("tmp_dir", at("tmp")),
            ("sysconf_dir", at("etc")),
            ("initconfig_dir", at("etc/default")),
            ("tmpfiles_d", at("etc/tmpfiles.d")),
            ("config_dir", at(CONFIG_DIR)),
            ("schema_dir", at(&format!("{CONFIG_DIR}/schema"))),
            ("cert_dir", at(CONFIG_DIR)),
            ("local_state_dir", at("var")),
            ("run_dir", at("run/dirsrv")),
            ("pid_file", at(PID_FILE)),
            ("ldapi", at(LDAPI_SOCKET)),
            ("lock_dir", at("run/lock/dirsrv/slapd-gw")),
            ("log_dir", at(LOG_DIR)),
            ("access_log", log("access")),
            ("audit_log", log("audit")),
            ("error_log", log("errors")),
            ("security_log", log("security")),
            ("db_dir", at(DB_DIR)),
            // Default /dev/shm/slapd-<name>; in a container dscreate uses db_dir anyway.
            ("db_home_dir", at(DB_DIR)),
            ("backup_dir", at("var/lib/dirsrv/slapd-gw/bak")),
            ("ldif_dir", at("var/lib/dirsrv/slapd-gw/ldif")),
            ("inst_dir", at("lib/dirsrv/slapd-gw")),
        ]
    }

    /// Runs `dscreate from-file`. It starts ns-slapd (daemonized) to apply the
    /// configuration over LDAP and stops it again before returning.
    /// Returns its output on failure.
    fn dscreate(&self) -> Result<(), String> {
        let inf = self.dir.join("instance.inf");
        let settings = format!(
            "[general]\n\
             full_machine_name = localhost\n\
             start = False\n\
             systemd = False\n\
             selinux = False\n\
             strict_host_checking = False\n\
             \n\
             [slapd]\n\
             instance_name = {INSTANCE}\n\
             port = {port}\n\
             secure_port = 0\n\
             self_sign_cert = False\n\
             root_password = {password}\n\
             \n\
             [backend-userroot]\n\
             suffix = {SUFFIX}\n\
             sample_entries = no\n\
             create_suffix_entry = False\n",
            port = free_port(),
            // Replaced in every copy.
            password = unique_password("template"),
        );
        fs::write(&inf, settings).map_err(|e| format!("cannot write {inf:?}: {e}"))?;
        let out = Command::new(DSCREATE)
            .arg("from-file")
            .arg(&inf)
            .env("PREFIX", &self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {DSCREATE}: {e}"))?;
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && self.dir.join(CONFIG_DIR).join("dse.ldif").is_file() {
            Ok(())
        } else {
            Err(format!("{} ({}):\n{output}", DSCREATE, out.status))
        }
    }

    /// Leaves only configuration: no database, logs, runtime or dscreate
    /// files. Applies [`TEMPLATE_SETTINGS`].
    fn strip(&self) -> Result<(), String> {
        for gone in [
            DB_DIR,
            LOG_DIR,
            "run",
            "share",
            "instance.inf",
            "etc/dirsrv/schema",
            "etc/dirsrv/config",
            &format!("{CONFIG_DIR}/dse.ldif.bak"),
            &format!("{CONFIG_DIR}/dse.ldif.startOK"),
        ] {
            let path = self.dir.join(gone);
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove {path:?}: {e}")),
            }
        }
        for dir in [
            DB_DIR,
            LOG_DIR,
            "run/dirsrv",
            "run/lock/dirsrv/slapd-gw",
            "tmp",
        ] {
            let path = self.dir.join(dir);
            fs::create_dir_all(&path).map_err(|e| format!("cannot create {path:?}: {e}"))?;
        }
        edit_ldif(&self.dir.join(CONFIG_DIR).join("dse.ldif"), |lines| {
            for (dn, attr, value) in TEMPLATE_SETTINGS {
                set_attr(lines, dn, attr, value);
            }
        });
        Ok(())
    }

    /// Copies the template into `root` and points every path at `root`.
    /// Panics if any copied file still names the template directory.
    fn copy_to(&self, root: &Path) {
        copy_tree(&self.dir, root);
        let from = self.dir.to_string_lossy().into_owned();
        let to = root.to_string_lossy().into_owned();
        edit_ldif(&root.join(CONFIG_DIR).join("dse.ldif"), |lines| {
            for line in lines.iter_mut() {
                if line.contains(&from) {
                    *line = line.replace(&from, &to);
                }
            }
        });
        // NSS's module database names the certificate directory.
        let pkcs11 = root.join(CONFIG_DIR).join("pkcs11.txt");
        if let Ok(text) = fs::read_to_string(&pkcs11) {
            fs::write(&pkcs11, text.replace(&from, &to))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", pkcs11.display()));
        }
        let stale = files_mentioning(root, from.as_bytes());
        assert!(
            stale.is_empty(),
            "these files of the copy still name the template {from}: {stale:?}"
        );
    }
}

/// Removes a directory tree when the test process dies without cleaning up;
/// see [`JANITOR`].
struct Janitor {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Janitor {
    fn watch(dir: &Path) -> Janitor {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(JANITOR)
            .arg("ds389-janitor")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn /bin/sh for the 389-ds janitor: {e}"));
        let pipe = child.stdin.take();
        Janitor { child, pipe }
    }

    /// Tells the janitor that everything is cleaned up, and waits for it to exit.
    fn dismiss(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"done\n");
        }
        let _ = self.child.wait();
    }
}

/// Why [`launch`] failed.
struct LaunchFailure {
    why: String,
    /// ns-slapd said its port was in use: worth another try.
    port_taken: bool,
}

/// Runs ns-slapd for the instance in `root` until Directory Manager can bind
/// at `url`. On failure ns-slapd is stopped again.
fn launch(root: &Path, url: &str, password: &str) -> Result<Child, LaunchFailure> {
    let console = root.join(CONSOLE_LOG);
    let said_before = fs::metadata(&console).map_or(0, |m| m.len());
    // A stale pid file would not name the new process, but remove any doubt.
    let _ = fs::remove_file(root.join(PID_FILE));
    let mut server = spawn_ns_slapd(root);
    match wait_ready(&mut server, root, url, password) {
        Ok(()) => Ok(server),
        Err(why) => {
            stop(&mut server);
            let said = fs::read(&console).unwrap_or_default();
            let said = String::from_utf8_lossy(said.get(said_before as usize..).unwrap_or(&[]));
            Err(LaunchFailure {
                port_taken: said.contains("address is in use"),
                why,
            })
        }
    }
}

/// Spawns ns-slapd in the foreground for the instance in `root`, output to
/// [`CONSOLE_LOG`].
fn spawn_ns_slapd(root: &Path) -> Child {
    let console = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join(CONSOLE_LOG))
        .unwrap_or_else(|e| panic!("cannot open {CONSOLE_LOG}: {e}"));
    let console_err = console
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot duplicate {CONSOLE_LOG}: {e}"));
    Command::new(NS_SLAPD)
        .arg("-D")
        .arg(root.join(CONFIG_DIR))
        .arg("-i")
        .arg(root.join(PID_FILE))
        .arg("-d")
        .arg(ERRORLOG_LEVEL)
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console_err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {NS_SLAPD}: {e}"))
}

/// SIGTERM, then SIGKILL if ns-slapd is still there after [`STOP_TIMEOUT`].
fn stop(server: &mut Child) {
    if matches!(server.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("/bin/sh")
        .arg("-c")
        .arg("kill -TERM \"$1\"")
        .arg("kill")
        .arg(server.id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        match server.try_wait() {
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            _ => return,
        }
    }
    eprintln!(
        "ns-slapd (pid {}) ignored SIGTERM for {STOP_TIMEOUT:?}; sending SIGKILL",
        server.id()
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// Polls until Directory Manager can bind, ns-slapd exits, or
/// [`READY_TIMEOUT`] passes. Binds are tried only once the pid file names
/// our process: ns-slapd writes it after binding its port, and until then
/// the port might still be someone else's.
fn wait_ready(server: &mut Child, root: &Path, url: &str, password: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let pid_file = root.join(PID_FILE);
    let mut last_error = String::from("pid file not written yet");
    loop {
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!("ns-slapd exited with {status} ({last_error})"));
        }
        let ours = fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == server.id().to_string());
        if ours {
            match on_private_runtime(|| manager_bind(url, password)) {
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

async fn manager_bind(url: &str, password: &str) -> Result<(), String> {
    let settings = client_settings().set_conn_timeout(Duration::from_secs(2));
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    ldap3::drive!(conn);
    let bind = tokio::time::timeout(
        Duration::from_secs(2),
        ldap.simple_bind(MANAGER_DN, password),
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
}

/// Runs the future that `work` makes on a private runtime in a helper
/// thread: `start()` and `restart()` are synchronous but may be called from
/// inside a tokio runtime, which must not block on another one.
fn on_private_runtime<T, F>(work: impl FnOnce() -> F + Send) -> T
where
    T: Send,
    F: Future<Output = T>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cannot build a tokio runtime")
                    .block_on(work())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn client_settings() -> LdapConnSettings {
    LdapConnSettings::new().set_conn_timeout(Duration::from_secs(5))
}

/// Everything the server said: console output, error log, access log.
fn server_output(root: &Path) -> String {
    let read = |relative: &str| fs::read_to_string(root.join(relative)).unwrap_or_default();
    format!(
        "--- ns-slapd console ({}) ---\n{}--- errors ---\n{}--- access ---\n{}",
        root.display(),
        read(CONSOLE_LOG),
        read(&format!("{LOG_DIR}/errors")),
        read(&format!("{LOG_DIR}/access")),
    )
}

/// The storage form of `password` under the instance's root password scheme.
fn pwdhash(root: &Path, password: &str) -> String {
    let out = Command::new(PWDHASH)
        .arg("-D")
        .arg(root.join(CONFIG_DIR))
        .arg(password)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PWDHASH}: {e}"));
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !hash.starts_with('{') {
        panic!(
            "{PWDHASH} failed ({}): {hash}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    hash
}

/// Rewrites an LDIF file as unfolded lines (RFC 2849 continuation lines
/// joined), so that `edit` sees whole values. ns-slapd reads unfolded LDIF.
fn edit_ldif(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        match (line.strip_prefix(' '), lines.last_mut()) {
            (Some(continued), Some(last)) if !last.is_empty() => last.push_str(continued),
            _ => lines.push(line.to_string()),
        }
    }
    edit(&mut lines);
    let mut out = lines.join("\n");
    out.push('\n');
    fs::write(path, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Gives `attr` the single value `value` in the entry `dn` of unfolded LDIF
/// lines. Panics if there is no such entry.
fn set_attr(lines: &mut Vec<String>, dn: &str, attr: &str, value: &str) {
    let start = lines
        .iter()
        .position(|l| {
            l.strip_prefix("dn: ")
                .is_some_and(|d| d.eq_ignore_ascii_case(dn))
        })
        .unwrap_or_else(|| panic!("dse.ldif has no entry {dn}"));
    let end = lines[start..]
        .iter()
        .position(|l| l.is_empty())
        .map_or(lines.len(), |n| start + n);
    let is_attr = |line: &String| {
        line.split_once(':')
            .is_some_and(|(name, _)| name.eq_ignore_ascii_case(attr))
    };
    let kept: Vec<String> = lines[start + 1..end]
        .iter()
        .filter(|l| !is_attr(l))
        .cloned()
        .chain(std::iter::once(format!("{attr}: {value}")))
        .collect();
    lines.splice(start + 1..end, kept);
}

/// Copies the directory tree `from` to `to` (regular files and directories).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries =
        fs::read_dir(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", source.display()));
        if kind.is_dir() {
            copy_tree(&source, &target);
        } else if kind.is_file() {
            fs::copy(&source, &target).unwrap_or_else(|e| {
                panic!(
                    "cannot copy {} to {}: {e}",
                    source.display(),
                    target.display()
                )
            });
        }
    }
}

/// Files below `root` whose content contains `needle`.
fn files_mentioning(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// Distinct for every call in every test process; not a secret.
fn unique_password(purpose: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{purpose}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// What 389 does where the gateway depends on it, each on its own instance.
mod tests {
    use super::*;
    use ldap3::controls::{Assertion, MakeCritical, RawControl};
    use ldap3::exop::PasswordModify;
    use ldap3::{ldap_escape, LdapResult, Mod};

    /// Password policy request/response control (draft-behera-ldap-password-policy).
    const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";
    const MEMBEROF_PLUGIN: &str = "cn=MemberOf Plugin,cn=plugins,cn=config";
    const USN_PLUGIN: &str = "cn=USN,cn=plugins,cn=config";

    fn set<'a>(values: &[&'a str]) -> HashSet<&'a str> {
        values.iter().copied().collect()
    }

    /// The values of `attr`, whatever the case of its name in the response.
    fn values(entry: &SearchEntry, attr: &str) -> Vec<String> {
        entry
            .attrs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(attr))
            .map(|(_, values)| values.clone())
            .unwrap_or_default()
    }

    fn single(entry: &SearchEntry, attr: &str) -> String {
        match values(entry, attr).as_slice() {
            [value] => value.clone(),
            other => panic!("{}: expected one {attr}, got {other:?}", entry.dn),
        }
    }

    async fn entry(ds: &Ds389, dn: &str) -> SearchEntry {
        ds.entry(dn)
            .await
            .unwrap_or_else(|| panic!("{dn} does not exist"))
    }

    async fn add_ou(ldap: &mut Ldap, ou: &str) {
        ldap.add(
            &format!("ou={ou},{SUFFIX}"),
            vec![
                ("objectClass", set(&["top", "organizationalUnit"])),
                ("ou", set(&[ou])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    }

    /// Adds the inetOrgPerson `uid=<uid>,ou=people,...` and returns its DN.
    async fn add_person(ldap: &mut Ldap, uid: &str) -> String {
        let dn = format!("uid={uid},ou=people,{SUFFIX}");
        ldap.add(
            &dn,
            vec![
                (
                    "objectClass",
                    set(&["top", "person", "organizationalPerson", "inetOrgPerson"]),
                ),
                ("uid", set(&[uid])),
                ("cn", set(&[uid])),
                ("sn", set(&[uid])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        dn
    }

    /// Adds the groupOfNames `cn=<cn>,ou=groups,...` with one member and returns its DN.
    async fn add_group(ldap: &mut Ldap, cn: &str, member: &str) -> String {
        let dn = format!("cn={cn},ou=groups,{SUFFIX}");
        ldap.add(
            &dn,
            vec![
                ("objectClass", set(&["top", "groupOfNames"])),
                ("cn", set(&[cn])),
                ("member", set(&[member])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        dn
    }

    async fn replace(ldap: &mut Ldap, dn: &str, attr: &str, values: &[&str]) {
        ldap.modify(dn, vec![Mod::Replace(attr, set(values))])
            .await
            .unwrap()
            .success()
            .unwrap_or_else(|e| panic!("replace {attr} of {dn}: {e}"));
    }

    /// The result of a simple bind on a new plain-LDAP connection.
    async fn bind(ds: &Ds389, dn: &str, password: &str) -> LdapResult {
        let (conn, mut ldap) = LdapConnAsync::new(&ds.url()).await.unwrap();
        ldap3::drive!(conn);
        let res = ldap.simple_bind(dn, password).await.unwrap();
        let _ = ldap.unbind().await;
        res
    }

    /// Whether `value` is dash-separated groups of lowercase hex digits of these lengths.
    fn is_hex_groups(value: &str, lengths: &[usize]) -> bool {
        let groups: Vec<&str> = value.split('-').collect();
        groups.len() == lengths.len()
            && groups.iter().zip(lengths).all(|(group, &len)| {
                group.len() == len
                    && group
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
    }

    /// 389 reads `nsslapd-pluginEnabled` only at start.
    async fn enable_plugin_and_restart(ds: &mut Ds389, plugin: &str) {
        let mut ldap = ds.admin().await;
        replace(&mut ldap, plugin, "nsslapd-pluginEnabled", &["on"]).await;
        let _ = ldap.unbind().await;
        ds.restart();
        assert_eq!(
            values(&entry(ds, plugin).await, "nsslapd-pluginEnabled"),
            ["on"]
        );
    }

    #[tokio::test]
    async fn a_new_user_gets_an_nsuniqueid_that_finds_it() {
        let ds = Ds389::start();
        let mut ldap = ds.admin().await;
        add_ou(&mut ldap, "people").await;
        let dn = add_person(&mut ldap, "alice").await;

        let alice = entry(&ds, &dn).await;
        // Like 642b2917-e69d11f1-aa00ecd1-e79d4995: not RFC 4122's 8-4-4-4-12.
        let id = single(&alice, "nsUniqueId");
        assert!(is_hex_groups(&id, &[8, 8, 8, 8]), "nsUniqueId {id}");
        // The entryuuid plugin, on by default, adds an RFC 4122 entryUUID too.
        let uuid = single(&alice, "entryUUID");
        assert!(is_hex_groups(&uuid, &[8, 4, 4, 4, 12]), "entryUUID {uuid}");
        for filter in [
            format!("(nsUniqueId={})", ldap_escape(&id)),
            format!("(entryUUID={})", ldap_escape(&uuid)),
        ] {
            let found: Vec<String> = ds
                .find(SUFFIX, &filter)
                .await
                .into_iter()
                .map(|e| e.dn)
                .collect();
            assert_eq!(found, std::slice::from_ref(&dn), "{filter}");
        }
        let _ = ldap.unbind().await;
    }

    #[tokio::test]
    async fn nsaccountlock_refuses_binds_until_it_is_removed() {
        let ds = Ds389::start();
        let mut ldap = ds.admin().await;
        add_ou(&mut ldap, "people").await;
        let dn = add_person(&mut ldap, "bob").await;
        let password = "Bob-password-1";
        replace(&mut ldap, &dn, "userPassword", &[password]).await;
        assert_eq!(bind(&ds, &dn, password).await.rc, 0);

        replace(&mut ldap, &dn, "nsAccountLock", &["TRUE"]).await;
        assert_eq!(values(&entry(&ds, &dn).await, "nsAccountLock"), ["TRUE"]);
        // Operational: a search for "*" alone does not return it.
        let SearchResult(plain, _) = ldap
            .search(&dn, Scope::Base, "(objectClass=*)", vec!["*"])
            .await
            .unwrap();
        let plain = SearchEntry::construct(plain.into_iter().next().unwrap());
        assert!(values(&plain, "nsAccountLock").is_empty(), "{plain:?}");
        // The same answer with a wrong password: the lock is checked first.
        for attempt in [password, "wrong-password"] {
            let res = bind(&ds, &dn, attempt).await;
            assert_eq!(
                (res.rc, res.text.trim()),
                (53, "Account inactivated. Contact system administrator."),
                "bind with {attempt}"
            );
        }

        // A replace with no values removes it (and works when it is absent).
        for _ in 0..2 {
            ldap.modify(&dn, vec![Mod::Replace("nsAccountLock", HashSet::new())])
                .await
                .unwrap()
                .success()
                .unwrap();
        }
        assert!(values(&entry(&ds, &dn).await, "nsAccountLock").is_empty());
        assert_eq!(bind(&ds, &dn, password).await.rc, 0);
        assert_eq!(bind(&ds, &dn, "wrong-password").await.rc, 49);
        let _ = ldap.unbind().await;
    }

    #[tokio::test]
    async fn password_modify_needs_a_secure_connection_and_stores_a_hash() {
        let ds = Ds389::start();
        let mut ldap = ds.admin().await;
        add_ou(&mut ldap, "people").await;
        let dn = add_person(&mut ldap, "carol").await;
        let change = |new_pass| PasswordModify {
            user_id: Some(&dn),
            old_pass: None,
            new_pass: Some(new_pass),
        };
        let first = "Carol-password-1";

        // Plain LDAP, even as Directory Manager: confidentialityRequired.
        let res = ldap.extended(change(first)).await.unwrap().1;
        assert_eq!(
            (res.rc, res.text.trim()),
            (13, "Operation requires a secure connection."),
            "{res}"
        );
        assert!(values(&entry(&ds, &dn).await, "userPassword").is_empty());

        let mut secure = ds.admin_ldapi().await;
        secure
            .extended(change(first))
            .await
            .unwrap()
            .success()
            .unwrap();
        let stored = single(&entry(&ds, &dn).await, "userPassword");
        assert!(stored.starts_with("{PBKDF2-SHA512}10000$"), "{stored}");
        assert_eq!(bind(&ds, &dn, first).await.rc, 0);
        assert_eq!(bind(&ds, &dn, "Carol-password-0").await.rc, 49);

        // The global policy lives in cn=config; nsslapd-pwpolicy-local is
        // only about per-subtree and per-user policies.
        ldap.modify(
            "cn=config",
            vec![
                Mod::Replace("passwordMinLength", set(&["12"])),
                Mod::Replace("passwordCheckSyntax", set(&["on"])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        let res = secure.extended(change("Short-pw-1")).await.unwrap().1;
        assert_eq!(
            (res.rc, res.text.trim()),
            (19, "Failed to update password"),
            "{res}"
        );
        // Only the password policy response control says why.
        let res = secure
            .with_controls(RawControl {
                ctype: PPOLICY_OID.to_string(),
                crit: false,
                val: None,
            })
            .extended(change("Short-pw-1"))
            .await
            .unwrap()
            .1;
        assert_eq!(res.rc, 19, "{res}");
        let response = res
            .ctrls
            .iter()
            .find(|c| c.1.ctype == PPOLICY_OID)
            .unwrap_or_else(|| panic!("no password policy control in {res:?}"));
        // SEQUENCE { error [1] ENUMERATED 5 }: insufficientPasswordQuality.
        let value = response.1.val.clone().unwrap_or_default();
        assert!(value.ends_with(&[0x81, 0x01, 0x05]), "{value:02x?}");
        assert_eq!(bind(&ds, &dn, first).await.rc, 0);

        // Syntax checking also refuses values of the entry's own attributes
        // (uid, cn, ... from 3 characters on: passwordMinTokenLength).
        let res = secure.extended(change("Carol-password-2")).await.unwrap().1;
        assert_eq!(res.rc, 19, "{res}");
        let second = "Long-enough-secret-2";
        secure
            .extended(change(second))
            .await
            .unwrap()
            .success()
            .unwrap();
        assert_eq!(bind(&ds, &dn, second).await.rc, 0);
        // A plain modify by Directory Manager is not checked against the policy.
        replace(&mut ldap, &dn, "userPassword", &["Short-pw-2"]).await;
        assert_eq!(bind(&ds, &dn, "Short-pw-2").await.rc, 0);
        let _ = ldap.unbind().await;
        let _ = secure.unbind().await;
    }

    #[tokio::test]
    async fn root_dse_names_the_vendor_controls_and_extensions() {
        let ds = Ds389::start();
        let root = entry(&ds, "").await;
        assert_eq!(values(&root, "vendorName"), ["389 Project"]);
        let version = single(&root, "vendorVersion");
        assert!(version.starts_with("389-Directory/2."), "{version}");

        let controls = values(&root, "supportedControl");
        for (oid, name, supported) in [
            ("1.2.840.113556.1.4.319", "paged results", true),
            ("1.2.840.113556.1.4.473", "server-side sort", true),
            ("2.16.840.1.113730.3.4.9", "virtual list view", true),
            ("1.3.6.1.1.13.1", "pre-read", true),
            ("1.3.6.1.1.13.2", "post-read", true),
            (PPOLICY_OID, "password policy", true),
            ("1.2.840.113556.1.4.1413", "permissive modify", false),
            ("1.3.6.1.1.12", "assertion", false),
            ("1.2.826.0.1.3344810.2.3", "matched values", false),
        ] {
            assert_eq!(
                controls.iter().any(|c| c == oid),
                supported,
                "{name} control {oid}; advertised: {controls:?}"
            );
        }
        let extensions = values(&root, "supportedExtension");
        for (oid, name) in [
            ("1.3.6.1.4.1.4203.1.11.1", "password modify"),
            ("1.3.6.1.4.1.4203.1.11.3", "who am I"),
        ] {
            assert!(
                extensions.iter().any(|e| e == oid),
                "{name} extension {oid}; advertised: {extensions:?}"
            );
        }

        // So a write guarded by a critical assertion fails, even a true one.
        let mut ldap = ds.admin().await;
        let res = ldap
            .with_controls(
                Assertion {
                    filter: "(dc=example)",
                }
                .critical(),
            )
            .modify(SUFFIX, vec![Mod::Replace("description", set(&["guarded"]))])
            .await
            .unwrap();
        assert_eq!(res.rc, 12, "{res}");
        assert_eq!(values(&entry(&ds, SUFFIX).await, "description"), [SUFFIX]);
        let _ = ldap.unbind().await;
    }

    #[tokio::test]
    async fn memberof_needs_the_plugin_enabled_and_a_restart() {
        let mut ds = Ds389::start();
        assert_eq!(
            values(&entry(&ds, MEMBEROF_PLUGIN).await, "nsslapd-pluginEnabled"),
            ["off"]
        );
        let mut ldap = ds.admin().await;
        add_ou(&mut ldap, "people").await;
        add_ou(&mut ldap, "groups").await;
        let dave = add_person(&mut ldap, "dave").await;
        let before = add_group(&mut ldap, "before", &dave).await;
        assert!(values(&entry(&ds, &dave).await, "memberOf").is_empty());
        let _ = ldap.unbind().await;

        enable_plugin_and_restart(&mut ds, MEMBEROF_PLUGIN).await;
        // Enabling does not backfill existing memberships (a fixup task would) ...
        assert!(values(&entry(&ds, &dave).await, "memberOf").is_empty());
        // ... but the next change to any of dave's groups recomputes all of them.
        let mut ldap = ds.admin().await;
        let after = add_group(&mut ldap, "after", &dave).await;
        let dave_now = entry(&ds, &dave).await;
        let mut member_of = values(&dave_now, "memberOf");
        member_of.sort();
        let mut expected = vec![after, before];
        expected.sort();
        assert_eq!(member_of, expected);
        // memberOf needs an objectClass allowing it; the plugin adds one.
        assert!(
            values(&dave_now, "objectClass")
                .iter()
                .any(|c| c.eq_ignore_ascii_case("nsMemberOf")),
            "{dave_now:?}"
        );
        let _ = ldap.unbind().await;
    }

    #[tokio::test]
    async fn only_entryusn_changes_with_every_write_and_it_needs_the_usn_plugin() {
        let mut ds = Ds389::start();
        let mut ldap = ds.admin().await;
        add_ou(&mut ldap, "people").await;
        let dn = add_person(&mut ldap, "erin").await;
        let created = entry(&ds, &dn).await;
        let ids = |e: &SearchEntry| (single(e, "nsUniqueId"), single(e, "entryUUID"));
        let created_ids = ids(&created);
        // Whole seconds, like 20261122175305Z.
        let stamp = single(&created, "modifyTimestamp");
        assert!(
            stamp.len() == 15
                && stamp.ends_with('Z')
                && stamp[..14].bytes().all(|b| b.is_ascii_digit()),
            "{stamp}"
        );
        // No USN plugin and no replication by default.
        for attr in ["entryUSN", "entryCSN"] {
            assert!(values(&created, attr).is_empty(), "{attr} in {created:?}");
        }

        // So two writes within one second look the same to a client.
        let mut same_second = None;
        for attempt in 0..5 {
            replace(&mut ldap, &dn, "description", &[&format!("a{attempt}")]).await;
            let first = entry(&ds, &dn).await;
            replace(&mut ldap, &dn, "description", &[&format!("b{attempt}")]).await;
            let second = entry(&ds, &dn).await;
            let stamps = (
                single(&first, "modifyTimestamp"),
                single(&second, "modifyTimestamp"),
            );
            if stamps.0 == stamps.1 {
                same_second = Some(stamps.0);
                break;
            }
        }
        assert!(same_second.is_some(), "no two writes in the same second");
        assert_eq!(ids(&entry(&ds, &dn).await), created_ids);

        drop(ldap);
        enable_plugin_and_restart(&mut ds, USN_PLUGIN).await;
        let mut ldap = ds.admin().await;
        let mut usns = Vec::new();
        for n in 0..3 {
            replace(&mut ldap, &dn, "description", &[&format!("c{n}")]).await;
            let now = entry(&ds, &dn).await;
            usns.push(single(&now, "entryUSN").parse::<u64>().unwrap());
            assert_eq!(ids(&now), created_ids);
            assert!(values(&now, "entryCSN").is_empty(), "{now:?}");
        }
        assert!(usns.windows(2).all(|w| w[0] < w[1]), "{usns:?}");
        let _ = ldap.unbind().await;
    }

    #[tokio::test]
    async fn drop_stops_ns_slapd_and_leaves_no_files() {
        let ds = Ds389::start();
        let dir = ds.dir().to_path_buf();
        let pid = fs::read_to_string(dir.join(PID_FILE)).unwrap();
        let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
        let cmdline = fs::read(proc.join("cmdline")).unwrap();
        assert!(
            String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()),
            "pid {pid} is not this instance's ns-slapd"
        );
        drop(ds);
        assert!(!proc.exists(), "ns-slapd {pid} is still there");
        assert!(!dir.exists(), "{} is still there", dir.display());
        // Nothing was ever written where a packaged instance lives.
        for system in [
            "/etc/dirsrv/slapd-gw",
            "/var/lib/dirsrv/slapd-gw",
            "/var/log/dirsrv/slapd-gw",
            "/run/dirsrv",
            "/run/lock/dirsrv",
            "/run/slapd-gw.socket",
            "/dev/shm/slapd-gw",
        ] {
            assert!(!Path::new(system).exists(), "{system} exists");
        }
    }
}
