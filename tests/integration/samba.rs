//! Throwaway Samba Active Directory domain controllers for the integration tests.
//!
//! [`SambaDc::start`] gives a test a fresh domain `GW.TEST` (base DN
//! `DC=gw,DC=test`) served over LDAPS on `127.0.0.1:636` with a certificate
//! for `127.0.0.1`/`localhost` signed by a CA made for that one instance.
//!
//! Provisioning a domain (`samba-tool domain provision`) takes 7 s or more, so
//! it happens once per test process, into a template directory; every
//! `start()` copies the template (`cp -a`, which keeps the sysvol ACL xattrs),
//! writes its own `smb.conf` and TLS files, and runs `samba` in the foreground
//! with nothing but the LDAP service. No path of the configuration points
//! outside the instance directory, so a DC writes no files elsewhere.
//!
//! Samba cannot be told to use another LDAP port, so only one DC can run on
//! the machine at a time. `start()` therefore waits for a lock inside this
//! process (a condition variable) and then for an exclusive `flock` on
//! [`MACHINE_LOCK`] shared with every other process; a [`SambaDc`] holds both
//! until it is dropped. Tests that use it run one after another.
//!
//! Clean-up: dropping a [`SambaDc`] stops samba (its stdin closes, and it gets
//! SIGTERM; SIGKILL after 10 s), waits for it, releases the locks and removes
//! the instance directory. The template and all instance directories live
//! in one per-process directory that a small janitor process (`sh`, waiting
//! for EOF on a pipe from this process) removes when the test process exits,
//! however it exits. samba itself terminates on EOF on its stdin, which is
//! a pipe from the test process, so it does not outlive a killed test binary.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

const SAMBA: &str = "/usr/sbin/samba";
const SAMBA_TOOL: &str = "/usr/bin/samba-tool";

/// The file every process locks (`flock`, exclusive) while it runs a DC.
pub const MACHINE_LOCK: &str = "/tmp/scim-ldap-gateway-samba.lock";

const REALM: &str = "GW.TEST";
const DNS_DOMAIN: &str = "gw.test";
const NETBIOS_DOMAIN: &str = "GW";
/// The DC's host name. Fixed, so that provisioning does not depend on the
/// machine's host name (a NetBIOS name has at most 15 characters).
const HOST_NAME: &str = "gwdc";
const BASE_DN: &str = "DC=gw,DC=test";
const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=gw,DC=test";
const LDAPS_URL: &str = "ldaps://127.0.0.1:636";

/// Every port samba's LDAP service listens on (LDAP, LDAPS, global catalog
/// and global catalog over TLS). None of them can be changed.
const LDAP_PORTS: [u16; 4] = [389, 636, 3268, 3269];

/// The provisioned `[global]` settings a copy keeps; all others are ours.
const IDENTITY_KEYS: [&str; 5] = [
    "netbios name",
    "realm",
    "workgroup",
    "server role",
    "idmap_ldb:use rfc2307",
];

/// How long `samba-tool domain provision` may take (7 s on an idle machine).
const PROVISION_TIMEOUT: Duration = Duration::from_secs(180);
/// How long samba may take to answer an admin bind over LDAPS.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the drop waits for samba to exit before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `start()` waits for another process to release [`MACHINE_LOCK`].
const MACHINE_LOCK_TIMEOUT: Duration = Duration::from_secs(900);
/// How long `start()` waits for the LDAP ports to become free once it holds
/// the locks: a DC of a test process that was killed may still be exiting.
const PORT_FREE_TIMEOUT: Duration = Duration::from_secs(15);

/// A running domain controller of a fresh domain. Stopped, unlocked and
/// removed on drop.
pub struct SambaDc {
    process: SambaProcess,
    admin_password: String,
    ca_pem_path: PathBuf,
    ca_pem: Vec<u8>,
    client_tls: Arc<rustls::ClientConfig>,
    // Dropped in this order, after `process` has stopped samba (see Drop).
    dir: tempfile::TempDir,
    _machine_lock: MachineLock,
    _process_lock: ProcessLock,
}

impl SambaDc {
    /// Copies the provisioned template into a new instance directory, takes
    /// the locks and starts samba; returns once LDAPS answers an admin bind.
    /// Provisions the template first if this process has none yet. Blocking
    /// (fine in `#[tokio::test]`). Panics with samba's output if it fails.
    pub fn start() -> SambaDc {
        for bin in [SAMBA, SAMBA_TOOL] {
            if !Path::new(bin).exists() {
                panic!(
                    "{bin} not found: the Samba AD tests need the Debian packages samba-ad-dc, \
                     samba-ad-provision and samba-common-bin. Run ./deploy/test.sh, which \
                     installs them, and re-run."
                );
            }
        }
        let template = template();

        let dir = tempfile::Builder::new()
            .prefix("dc-")
            .tempdir_in(&template.root)
            .unwrap_or_else(|e| panic!("cannot create a directory for samba: {e}"));
        copy_tree(&template.dir, dir.path());
        for sub in ["cache", "log", "run"] {
            let path = dir.path().join(sub);
            fs::create_dir_all(&path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        }
        let tls = write_tls_material(dir.path());
        let conf = dir.path().join("etc").join("smb.conf");
        fs::write(&conf, instance_config(dir.path(), &template.identity, &tls))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));

        let waiting = Instant::now();
        let process_lock = ProcessLock::acquire();
        let machine_lock = MachineLock::acquire();
        if let Err(why) = ensure_ports_free(PORT_FREE_TIMEOUT) {
            panic!("{why}");
        }

        let starting = Instant::now();
        let log = dir.path().join("samba.log");
        let mut process = SambaProcess::spawn(&conf, &log, dir.path());
        if let Err(why) = wait_ready(&mut process, &template.admin_password, &tls.client) {
            drop(process);
            panic!(
                "samba did not start: {why}\n--- samba output ({}) ---\n{}",
                log.display(),
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        eprintln!(
            "samba: DC ready in {:.1?}, after {:.1?} waiting for the locks",
            starting.elapsed(),
            starting.duration_since(waiting)
        );
        SambaDc {
            process,
            admin_password: template.admin_password.clone(),
            ca_pem_path: tls.ca_file,
            ca_pem: tls.ca_pem,
            client_tls: tls.client,
            dir,
            _machine_lock: machine_lock,
            _process_lock: process_lock,
        }
    }

    /// `ldaps://127.0.0.1:636`
    pub fn ldaps_url(&self) -> String {
        LDAPS_URL.to_string()
    }

    /// PEM file of the CA that signed the DC's certificate.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// The CA certificate of [`SambaDc::ca_pem_path`], PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca_pem.clone()
    }

    /// `DC=gw,DC=test`
    pub fn base_dn(&self) -> &str {
        BASE_DN
    }

    /// `CN=Administrator,CN=Users,DC=gw,DC=test`
    pub fn admin_dn(&self) -> String {
        ADMIN_DN.to_string()
    }

    /// Distinct per test process; not a secret.
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// `gw.test`, the suffix of userPrincipalName values.
    pub fn realm(&self) -> &str {
        DNS_DOMAIN
    }

    /// A new LDAPS connection bound as Administrator, trusting only
    /// [`SambaDc::ca_pem`]. Its driver runs on the current tokio runtime.
    pub async fn admin(&self) -> Ldap {
        let (conn, mut ldap) = LdapConnAsync::with_settings(
            client_settings(&self.client_tls, Duration::from_secs(10)),
            LDAPS_URL,
        )
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {LDAPS_URL}: {e}"));
        ldap3::drive!(conn);
        let res = ldap
            .simple_bind(ADMIN_DN, &self.admin_password)
            .await
            .unwrap_or_else(|e| panic!("admin bind to {LDAPS_URL} failed: {e}"));
        if res.rc != 0 {
            panic!("admin bind to {LDAPS_URL} failed: {res}");
        }
        ldap
    }

    /// The entry at `dn` with the attributes `*` and `+` ask for, or `None` if
    /// it does not exist. Samba ignores `+`: `*` already has `whenCreated`,
    /// `uSNChanged`, `objectGUID`, `memberOf` and the like, while constructed
    /// attributes (`tokenGroups`, `msDS-User-Account-Control-Computed`,
    /// `nTSecurityDescriptor`) come only when asked for by name.
    pub async fn entry(&self, dn: &str) -> Option<SearchEntry> {
        let mut entries = self.search(dn, Scope::Base, "(objectClass=*)").await;
        match entries.len() {
            0 | 1 => entries.pop(),
            n => panic!("base search of {dn} returned {n} entries"),
        }
    }

    /// Subtree search below `base`, with the attributes of [`SambaDc::entry`].
    /// Paged, so that it returns every match, however many. A missing base
    /// yields an empty result.
    pub async fn find(&self, base: &str, filter: &str) -> Vec<SearchEntry> {
        self.search(base, Scope::Subtree, filter).await
    }

    /// The instance directory (`etc/smb.conf`, `private/`, `tls/`, `samba.log`, ...).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Pid of the samba process.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// What samba has printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("samba.log")).unwrap_or_default()
    }

    async fn search(&self, base: &str, scope: Scope, filter: &str) -> Vec<SearchEntry> {
        let mut ldap = self.admin().await;
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(500)),
        ];
        let mut stream = ldap
            .streaming_search_with(adapters, base, scope, filter, vec!["*", "+"])
            .await
            .unwrap_or_else(|e| panic!("search base={base} filter={filter} failed: {e}"));
        let mut entries = Vec::new();
        loop {
            match stream.next().await {
                Ok(Some(entry)) => entries.push(SearchEntry::construct(entry)),
                Ok(None) => break,
                Err(e) => panic!("search base={base} filter={filter} failed: {e}"),
            }
        }
        let res = stream.finish().await;
        let _ = ldap.unbind().await;
        match res.rc {
            0 => entries,
            32 => Vec::new(), // noSuchObject: the base does not exist
            _ => panic!("search base={base} filter={filter} failed: {res}"),
        }
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        // Samba must be gone before the directory is removed and the locks
        // are released; the fields are dropped after this, in order.
        self.process.stop();
    }
}

/// The provisioned domain every instance starts from.
struct Template {
    /// The per-process directory that holds the template and every instance
    /// directory; the janitor removes it when the process exits.
    root: PathBuf,
    /// The provisioned tree (`etc/`, `private/`, `state/`, ...).
    dir: PathBuf,
    admin_password: String,
    /// The `[global]` lines of [`IDENTITY_KEYS`] from the provisioned smb.conf.
    identity: Vec<String>,
}

/// The template of this process, provisioned by the first caller. A failed
/// provisioning is remembered, so later tests fail at once with its output.
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Result<Template, String>> = OnceLock::new();
    match TEMPLATE.get_or_init(provision) {
        Ok(template) => template,
        Err(why) => panic!("{why}"),
    }
}

fn provision() -> Result<Template, String> {
    let root = tempfile::Builder::new()
        .prefix("scim-gw-samba-")
        .tempdir()
        .map_err(|e| format!("cannot create a directory for the Samba template: {e}"))?
        .keep();
    start_janitor(&root)?;

    let dir = root.join("template");
    let admin_password = admin_password();
    let started = Instant::now();
    let mut child = Command::new(SAMBA_TOOL)
        .args(["domain", "provision"])
        .arg(format!("--realm={REALM}"))
        .arg(format!("--domain={NETBIOS_DOMAIN}"))
        .arg(format!("--host-name={HOST_NAME}"))
        .args(["--server-role=dc", "--dns-backend=NONE", "--use-rfc2307"])
        .arg(format!("--adminpass={admin_password}"))
        .arg(format!("--targetdir={}", dir.display()))
        .args([
            "--option=interfaces=lo",
            "--option=bind interfaces only=yes",
        ])
        .arg(format!("--option=log file={}/provision.%m", root.display()))
        .arg("--option=ldb:nosync=true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {SAMBA_TOOL}: {e}"))?;
    // Read both pipes on helper threads so that neither can fill up and stall it.
    let stdout = child.stdout.take().map(read_to_end_in_background);
    let stderr = child.stderr.take().map(read_to_end_in_background);
    let status = wait_with_timeout(&mut child, PROVISION_TIMEOUT);
    let output = [stdout, stderr]
        .into_iter()
        .flatten()
        .map(|reader| reader.join().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("");
    match status {
        Some(status) if status.success() => {}
        Some(status) => {
            return Err(format!(
                "samba-tool domain provision failed ({status}):\n{output}"
            ))
        }
        None => {
            return Err(format!(
                "samba-tool domain provision took longer than {PROVISION_TIMEOUT:?}:\n{output}"
            ))
        }
    }
    let provisioned = dir.join("etc").join("smb.conf");
    let conf = fs::read_to_string(&provisioned)
        .map_err(|e| format!("cannot read {}: {e}", provisioned.display()))?;
    let identity = identity_lines(&conf)
        .map_err(|missing| format!("{} has no `{missing}`:\n{conf}", provisioned.display()))?;
    eprintln!(
        "samba: provisioned the template domain in {:.1?}",
        started.elapsed()
    );
    Ok(Template {
        root,
        dir,
        admin_password,
        identity,
    })
}

/// Starts `sh`, which removes `root` once its stdin (a pipe whose write end
/// this process keeps open forever) reaches EOF, that is, once this process
/// has exited, by any means. It ignores the terminal's signals so that a
/// Ctrl-C, which also reaches it, does not stop it before it has cleaned up.
fn start_janitor(root: &Path) -> Result<(), String> {
    const JANITOR: &str = r#"trap '' INT TERM HUP QUIT; read -r _; rm -rf -- "$1""#;
    static LIFELINES: Mutex<Vec<ChildStdin>> = Mutex::new(Vec::new());
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(JANITOR)
        .arg("samba-template-janitor")
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start the clean-up process for {}: {e}",
                root.display()
            )
        })?;
    let lifeline = child
        .stdin
        .take()
        .ok_or_else(|| "the clean-up process has no stdin".to_string())?;
    // Never closed, never waited for: it must outlive every test.
    LIFELINES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(lifeline);
    Ok(())
}

/// The lines of [`IDENTITY_KEYS`] in the `[global]` section of a provisioned
/// smb.conf, or the first key that is missing.
fn identity_lines(conf: &str) -> Result<Vec<String>, &'static str> {
    let global: Vec<(String, &str)> = conf
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.eq_ignore_ascii_case("[global]"))
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| {
            let (key, _) = line.split_once('=')?;
            Some((key.trim().to_ascii_lowercase(), line))
        })
        .collect();
    IDENTITY_KEYS
        .iter()
        .map(|&wanted| {
            global
                .iter()
                .find(|(key, _)| key == wanted)
                .map(|(_, line)| line.to_string())
                .ok_or(wanted)
        })
        .collect()
}

/// The smb.conf of one instance: the provisioned identity, every path inside
/// `dir`, only the LDAP service, and our TLS files.
fn instance_config(dir: &Path, identity: &[String], tls: &TlsFiles) -> String {
    let d = dir.display();
    let mut conf = String::from("# Written by tests/integration/samba.rs\n[global]\n");
    for line in identity {
        conf.push('\t');
        conf.push_str(line);
        conf.push('\n');
    }
    conf.push_str(&format!(
        "\tserver services = ldap\n\
         \tinterfaces = lo\n\
         \tbind interfaces only = yes\n\
         \tprivate dir = {d}/private\n\
         \tbinddns dir = {d}/bind-dns\n\
         \tstate directory = {d}/state\n\
         \tcache directory = {d}/cache\n\
         \tlock directory = {d}\n\
         \tpid directory = {d}/run\n\
         \tncalrpc dir = {d}/run/ncalrpc\n\
         \twinbindd socket directory = {d}/run/winbindd\n\
         \tntp signd socket directory = {d}/run/ntp_signd\n\
         \tusershare path = {d}/usershares\n\
         \tsmb passwd file = {d}/private/smbpasswd\n\
         \tlog file = {d}/log/log.%m\n\
         \tlog level = 1\n\
         \tldb:nosync = true\n\
         \tpanic action =\n\
         \tunix password sync = no\n\
         \ttls enabled = yes\n\
         \ttls keyfile = {}\n\
         \ttls certfile = {}\n\
         \ttls cafile = {}\n",
        tls.key_file.display(),
        tls.cert_file.display(),
        tls.ca_file.display(),
    ));
    conf
}

/// Copies the template with `cp -a` (modes, times and the xattrs that hold
/// sysvol's NT ACLs); `std::fs::copy` would lose the xattrs.
fn copy_tree(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cp: {e}"));
    if !out.status.success() {
        panic!(
            "cp -a {} {} failed ({}): {}",
            from.display(),
            to.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The certificate files of one instance and a client config trusting its CA.
struct TlsFiles {
    ca_file: PathBuf,
    ca_pem: Vec<u8>,
    cert_file: PathBuf,
    key_file: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

/// A new CA and a server certificate for 127.0.0.1 and localhost signed by
/// it, written to `dir/tls`. samba refuses a key file others can read, so
/// the key is created with mode 0600.
fn write_tls_material(dir: &Path) -> TlsFiles {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let subject = |cn: &str| {
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, cn);
        name
    };

    let ca_key = KeyPair::generate().expect("cannot generate a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.distinguished_name = subject("scim-ldap-gateway Samba test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params
        .self_signed(&ca_key)
        .expect("cannot self-sign the CA");

    let server_key = KeyPair::generate().expect("cannot generate the server key");
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server certificate parameters");
    server_params.distinguished_name = subject("127.0.0.1");
    server_params.is_ca = IsCa::ExplicitNoCa;
    server_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("cannot sign the server certificate");

    let tls_dir = dir.join("tls");
    fs::create_dir(&tls_dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", tls_dir.display()));
    let files = TlsFiles {
        ca_file: tls_dir.join("ca.pem"),
        ca_pem: ca.pem().into_bytes(),
        cert_file: tls_dir.join("server.pem"),
        key_file: tls_dir.join("server.key"),
        client: client_config(ca.der().clone()),
    };
    for (path, pem, mode) in [
        (&files.ca_file, files.ca_pem.clone(), 0o644),
        (&files.cert_file, server.pem().into_bytes(), 0o644),
        (
            &files.key_file,
            server_key.serialize_pem().into_bytes(),
            0o600,
        ),
    ] {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut file| file.write_all(&pem))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    files
}

/// rustls with the ring provider, trusting only `ca`.
fn client_config(ca: rustls::pki_types::CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca)
        .expect("the test CA is not a valid trust anchor");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("rustls protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

fn client_settings(tls: &Arc<rustls::ClientConfig>, timeout: Duration) -> LdapConnSettings {
    LdapConnSettings::new()
        .set_config(tls.clone())
        .set_conn_timeout(timeout)
}

/// This process's turn to run a DC: one [`SambaDc`] at a time.
struct ProcessLock;

/// The thread that started the DC now running, if one runs.
static DC_OWNER: Mutex<Option<ThreadId>> = Mutex::new(None);
static DC_STOPPED: Condvar = Condvar::new();

impl ProcessLock {
    fn acquire() -> ProcessLock {
        let me = std::thread::current().id();
        let mut owner = DC_OWNER.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(holder) = *owner {
            // Waiting for ourselves would never end.
            assert_ne!(
                holder, me,
                "this thread already runs a SambaDc; only one can run at a time, drop it first"
            );
            owner = DC_STOPPED
                .wait(owner)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *owner = Some(me);
        ProcessLock
    }
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        *DC_OWNER.lock().unwrap_or_else(PoisonError::into_inner) = None;
        DC_STOPPED.notify_one();
    }
}

/// An exclusive `flock` on [`MACHINE_LOCK`], released when the file is
/// closed (on drop, or by the kernel when the process dies).
struct MachineLock {
    _file: fs::File,
}

impl MachineLock {
    fn acquire() -> MachineLock {
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(MACHINE_LOCK)
            .unwrap_or_else(|e| panic!("cannot open {MACHINE_LOCK}: {e}"));
        let deadline = Instant::now() + MACHINE_LOCK_TIMEOUT;
        let mut announced = false;
        loop {
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => break,
                Err(fs4::TryLockError::WouldBlock) => {}
                Err(fs4::TryLockError::Error(e)) => panic!("cannot lock {MACHINE_LOCK}: {e}"),
            }
            let holder = fs::read_to_string(MACHINE_LOCK).unwrap_or_default();
            if Instant::now() >= deadline {
                panic!(
                    "another process ({}) has held {MACHINE_LOCK} for more than \
                     {MACHINE_LOCK_TIMEOUT:?}: only one Samba DC can run on this machine",
                    holder.trim()
                );
            }
            if !announced {
                eprintln!(
                    "samba: waiting for {MACHINE_LOCK}, held by {}",
                    holder.trim()
                );
                announced = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Who holds it, for the message above in other processes.
        let _ = file.set_len(0);
        let _ = writeln!(
            file,
            "pid {} ({})",
            std::process::id(),
            std::env::args().next().unwrap_or_default()
        );
        MachineLock { _file: file }
    }
}

/// Fails, naming the culprit, if something else listens on one of samba's
/// LDAP ports on 127.0.0.1 for longer than `patience` (a DC of a test process
/// that was killed may still be on its way out).
fn ensure_ports_free(patience: Duration) -> Result<(), String> {
    let deadline = Instant::now() + patience;
    loop {
        let taken: Vec<u16> = LDAP_PORTS
            .into_iter()
            .filter(|&port| {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            })
            .collect();
        if taken.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "cannot start Samba: another program listens on 127.0.0.1 port(s) {taken:?}, \
                 and samba's LDAP ports cannot be moved. Stop it (a system-wide samba or slapd?) \
                 and re-run.\n{}",
                listeners(&taken)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ss`'s lines for the listening sockets on `ports` (with their processes), if it can tell.
fn listeners(ports: &[u16]) -> String {
    let Ok(out) = Command::new("ss")
        .arg("-Hltnp")
        .stdin(Stdio::null())
        .output()
    else {
        return String::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| ports.iter().any(|port| line.contains(&format!(":{port} "))))
        .collect::<Vec<_>>()
        .join("\n")
}

/// samba in the foreground. Its stdin is a pipe from this process: samba
/// exits on EOF there, so it dies with the test process.
struct SambaProcess {
    child: Child,
    lifeline: Option<ChildStdin>,
}

impl SambaProcess {
    fn spawn(conf: &Path, log: &Path, dir: &Path) -> SambaProcess {
        let out = fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate the log file handle: {e}"));
        let mut child = Command::new(SAMBA)
            .arg("-s")
            .arg(conf)
            .args(["--interactive", "--model=single", "--debug-stdout"])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SAMBA}: {e}"));
        let lifeline = child.stdin.take();
        SambaProcess { child, lifeline }
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Closes samba's stdin and sends SIGTERM (either makes it exit); after
    /// [`STOP_TIMEOUT`] SIGKILL. Returns once it is gone. Idempotent.
    fn stop(&mut self) {
        self.lifeline.take();
        if self.exited() {
            return;
        }
        signal(self.child.id(), "TERM");
        if wait_with_timeout(&mut self.child, STOP_TIMEOUT).is_some() {
            return;
        }
        eprintln!(
            "samba (pid {}) did not exit within {STOP_TIMEOUT:?} of SIGTERM; sending SIGKILL",
            self.child.id()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SambaProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `SIG<name>` to `pid` with the shell's `kill`.
fn signal(pid: u32, name: &str) -> bool {
    Command::new("/bin/sh")
        .args(["-c", r#"kill -s "$1" "$2" 2>/dev/null"#, "kill", name])
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Waits up to `timeout` for `child`; `None` if it is still running then.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => return None,
        }
    }
}

fn read_to_end_in_background(
    mut from: impl std::io::Read + Send + 'static,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Polls until samba answers an admin bind over LDAPS with a certificate
/// of our CA (so it is our samba, not a stranger on the port), until samba
/// exits, or until [`READY_TIMEOUT`].
fn wait_ready(
    process: &mut SambaProcess,
    password: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_error = String::from("not tried yet");
    loop {
        if process.exited() {
            return Err(format!("samba exited (last bind attempt: {last_error})"));
        }
        match admin_bind_blocking(password, tls) {
            Ok(()) => return Ok(()),
            Err(e) => last_error = e,
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no successful admin bind within {READY_TIMEOUT:?} (last error: {last_error})"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One LDAPS admin bind on a private runtime in a helper thread, since
/// `start()` may run inside a tokio runtime, which must not be blocked on
/// another one in the same thread.
fn admin_bind_blocking(password: &str, tls: &Arc<rustls::ClientConfig>) -> Result<(), String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
                runtime.block_on(async {
                    let settings = client_settings(tls, Duration::from_secs(2));
                    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, LDAPS_URL)
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    ldap3::drive!(conn);
                    let bind = tokio::time::timeout(
                        Duration::from_secs(5),
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
            .unwrap_or_else(|_| Err("the bind attempt panicked".to_string()))
    })
}

/// Distinct per process; meets AD's default complexity rules (upper and
/// lower case, digits, symbols; not the account name). Not a secret.
fn admin_password() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("Gw-Admin-{}-{nanos:08x}!", std::process::id())
}

/// What this Samba version does that the gateway depends on, asserted so that
/// an upgrade that changes it fails here first; and the harness itself.
mod tests {
    use super::*;
    use ldap3::controls::{
        Assertion, Control, ControlType, PagedResults as PagedControl, PostRead, RawControl,
    };
    use ldap3::exop::PasswordModify;
    use ldap3::{LdapResult, Mod, SearchResult};
    use scim_ldap_gateway::directory::ldap::sort::sort_control;
    use scim_ldap_gateway::directory::SortKey;
    use std::collections::HashSet;

    const OU: &str = "OU=scim,DC=gw,DC=test";
    const PERMISSIVE_MODIFY_OID: &str = "1.2.840.113556.1.4.1413";
    const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";
    const SERVER_SORT_OID: &str = "1.2.840.113556.1.4.473";
    const POST_READ_OID: &str = "1.3.6.1.1.13.2";
    const ASSERTION_OID: &str = "1.3.6.1.1.12";
    const PASSWORD_MODIFY_OID: &str = "1.3.6.1.4.1.4203.1.11.1";
    /// More than MaxValRange (1500 values) and MaxPageSize (1000 entries).
    const BULK_USERS: usize = 1600;

    fn user_dn(cn: &str) -> String {
        format!("CN={},{OU}", ldap3::dn_escape(cn))
    }

    /// All values of `name` (any case), whether ldap3 filed them as text or binary.
    fn values(entry: &SearchEntry, name: &str) -> Vec<Vec<u8>> {
        let text = entry
            .attrs
            .iter()
            .filter(|(attr, _)| attr.eq_ignore_ascii_case(name))
            .flat_map(|(_, values)| values.iter().map(|v| v.as_bytes().to_vec()));
        let binary = entry
            .bin_attrs
            .iter()
            .filter(|(attr, _)| attr.eq_ignore_ascii_case(name))
            .flat_map(|(_, values)| values.iter().cloned());
        text.chain(binary).collect()
    }

    /// The single text value of `name`.
    fn text(entry: &SearchEntry, name: &str) -> String {
        match values(entry, name).as_slice() {
            [value] => String::from_utf8(value.clone())
                .unwrap_or_else(|_| panic!("{name} of {} is not text", entry.dn)),
            other => panic!(
                "{} has {} values of {name}: {entry:?}",
                entry.dn,
                other.len()
            ),
        }
    }

    /// Attribute names (as the server spelled them) and their value counts.
    fn shape(entry: &SearchEntry) -> Vec<(String, usize)> {
        let mut shape: Vec<(String, usize)> = entry
            .attrs
            .iter()
            .map(|(name, values)| (name.clone(), values.len()))
            .chain(
                entry
                    .bin_attrs
                    .iter()
                    .map(|(name, values)| (name.clone(), values.len())),
            )
            .collect();
        shape.sort();
        shape
    }

    fn set<'a>(values: &[&'a str]) -> HashSet<&'a str> {
        values.iter().copied().collect()
    }

    /// A `unicodePwd` value: the password in double quotes, UTF-16LE.
    fn unicode_pwd(password: &str) -> Vec<u8> {
        format!("\"{password}\"")
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    /// `(attr=\xx\xx...)` with every byte escaped (`ldap3::ldap_escape`
    /// takes text, and a GUID is bytes).
    fn binary_filter(attr: &str, value: &[u8]) -> String {
        let escaped: String = value.iter().map(|b| format!("\\{b:02x}")).collect();
        format!("({attr}={escaped})")
    }

    /// `YYYYMMDDHHMMSS.0Z`, AD's GeneralizedTime.
    fn is_ad_time(value: &str) -> bool {
        value.len() == 17
            && value[..14].bytes().all(|b| b.is_ascii_digit())
            && value.ends_with(".0Z")
    }

    async fn add_ou(ldap: &mut Ldap) {
        ldap.add(
            OU,
            vec![
                ("objectClass", set(&["top", "organizationalUnit"])),
                ("ou", set(&["scim"])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    }

    async fn add_user(ldap: &mut Ldap, name: &str) -> LdapResult {
        let upn = format!("{name}@{DNS_DOMAIN}");
        ldap.add(
            &user_dn(name),
            vec![
                (
                    "objectClass",
                    set(&["top", "person", "organizationalPerson", "user"]),
                ),
                ("cn", set(&[name])),
                ("sAMAccountName", set(&[name])),
                ("userPrincipalName", set(&[&upn])),
            ],
        )
        .await
        .unwrap()
    }

    async fn set_password(ldap: &mut Ldap, dn: &str, password: &str) -> LdapResult {
        let value = HashSet::from([unicode_pwd(password)]);
        ldap.modify(dn, vec![Mod::Replace(b"unicodePwd".to_vec(), value)])
            .await
            .unwrap()
    }

    async fn replace(ldap: &mut Ldap, dn: &str, attr: &str, value: &str) -> LdapResult {
        ldap.modify(dn, vec![Mod::Replace(attr, set(&[value]))])
            .await
            .unwrap()
    }

    async fn root_dse(ldap: &mut Ldap) -> SearchEntry {
        let SearchResult(mut entries, res) = ldap
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                vec!["*", "+", "supportedExtension", "vendorVersion"],
            )
            .await
            .unwrap();
        assert_eq!(res.rc, 0, "rootDSE search: {res}");
        assert_eq!(entries.len(), 1, "rootDSE search: {res}");
        SearchEntry::construct(entries.remove(0))
    }

    /// Facts 1-4 and 8 of the Samba brief: creating, enabling and finding users.
    #[tokio::test]
    async fn users_are_created_disabled_then_get_a_password_and_are_enabled() {
        let dc = SambaDc::start();
        let mut ldap = dc.admin().await;
        add_ou(&mut ldap).await;
        let dn = user_dn("jdoe");
        add_user(&mut ldap, "jdoe").await.success().unwrap();

        // A new user: ACCOUNTDISABLE | PASSWD_NOTREQD | NORMAL_ACCOUNT = 2 + 32 + 512.
        let created = dc.entry(&dn).await.expect("the new user");
        assert_eq!(text(&created, "userAccountControl"), "546", "{created:?}");
        assert_eq!(text(&created, "pwdLastSet"), "0");
        assert_eq!(text(&created, "userPrincipalName"), "jdoe@gw.test");
        assert_eq!(created.dn, dn, "the DN comes back as it was written");
        let guid = values(&created, "objectGUID");
        assert_eq!(guid.len(), 1, "{created:?}");
        let guid = guid[0].clone();
        assert_eq!(guid.len(), 16, "objectGUID is 16 raw bytes: {guid:?}");
        // ldap3 files an attribute as binary only when some value is not UTF-8;
        // 16 random bytes are almost never UTF-8, but the gateway must not assume so.
        assert_eq!(
            created.bin_attrs.contains_key("objectGUID"),
            std::str::from_utf8(&guid).is_err(),
            "{created:?}"
        );
        for stamp in ["whenCreated", "whenChanged"] {
            let value = text(&created, stamp);
            assert!(is_ad_time(&value), "{stamp}: {value}");
        }
        let usn_created: u64 = text(&created, "uSNChanged").parse().unwrap();

        // Samba lets an account without a password be enabled: the DC does
        // not stop the gateway from enabling a user before setting one.
        let bare = user_dn("nopass");
        add_user(&mut ldap, "nopass").await.success().unwrap();
        replace(&mut ldap, &bare, "userAccountControl", "512")
            .await
            .success()
            .unwrap();
        let bare = dc.entry(&bare).await.unwrap();
        assert_eq!(text(&bare, "userAccountControl"), "512");
        assert_eq!(text(&bare, "pwdLastSet"), "0");

        // Passwords that break the default policy: constraintViolation with AD's text.
        let short = set_password(&mut ldap, &dn, "abc").await;
        assert_eq!(
            (short.rc, short.text.as_str()),
            (
                19,
                "0000052D: Constraint violation - check_password_restrictions: \
                 the password is too short. It should be equal or longer than 7 characters!"
            ),
            "{short}"
        );
        let simple = set_password(&mut ldap, &dn, "password").await;
        assert_eq!(
            (simple.rc, simple.text.as_str()),
            (
                19,
                "0000052D: Constraint violation - check_password_restrictions: \
                 the password does not meet the complexity criteria!"
            ),
            "{simple}"
        );
        set_password(&mut ldap, &dn, "Passw0rd-Value!1")
            .await
            .success()
            .unwrap();
        replace(&mut ldap, &dn, "userAccountControl", "512")
            .await
            .success()
            .unwrap();
        let enabled = dc.entry(&dn).await.unwrap();
        assert_eq!(text(&enabled, "userAccountControl"), "512");
        assert_ne!(text(&enabled, "pwdLastSet"), "0");
        assert!(values(&enabled, "unicodePwd").is_empty(), "never readable");
        let usn_enabled: u64 = text(&enabled, "uSNChanged").parse().unwrap();
        assert!(usn_enabled > usn_created, "{usn_created} -> {usn_enabled}");
        assert_eq!(text(&enabled, "uSNCreated"), text(&created, "uSNCreated"));
        assert!(is_ad_time(&text(&enabled, "whenChanged")));

        // The Assertion control is not supported: ignored when non-critical
        // (the modify happens although the assertion is false), refused with
        // unavailableCriticalExtension when critical.
        let ignored = ldap
            .with_controls(Assertion::new("(userAccountControl=514)"))
            .modify(&dn, vec![Mod::Replace("description", set(&["ignored"]))])
            .await
            .unwrap();
        assert_eq!(ignored.rc, 0, "{ignored}");
        assert_eq!(
            text(&dc.entry(&dn).await.unwrap(), "description"),
            "ignored"
        );
        let critical = RawControl {
            crit: true,
            ..Assertion::new("(userAccountControl=512)")
        };
        let refused = ldap
            .with_controls(critical)
            .modify(&dn, vec![Mod::Replace("description", set(&["refused"]))])
            .await
            .unwrap();
        assert_eq!(refused.rc, 12, "{refused}");
        assert_eq!(
            text(&dc.entry(&dn).await.unwrap(), "description"),
            "ignored"
        );
        // Nor is PostRead.
        let post_read = ldap
            .with_controls(RawControl {
                crit: true,
                ..PostRead::new(vec!["uSNChanged"])
            })
            .modify(&dn, vec![Mod::Replace("description", set(&["read"]))])
            .await
            .unwrap();
        assert_eq!(post_read.rc, 12, "{post_read}");

        // objectGUID as an escaped binary filter value.
        let found = dc
            .find(dc.base_dn(), &binary_filter("objectGUID", &guid))
            .await;
        let found: Vec<&str> = found.iter().map(|e| e.dn.as_str()).collect();
        assert_eq!(found, vec![dn.as_str()]);
        let _ = ldap.unbind().await;
    }

    /// Permissive Modify (advertised, see the rootDSE test) turns "value
    /// exists" and "no such value" into success for plain attributes, but
    /// not for `member`, a linked attribute: there the errors stay.
    #[tokio::test]
    async fn permissive_modify_covers_plain_attributes_but_not_member() {
        let dc = SambaDc::start();
        let mut ldap = dc.admin().await;
        add_ou(&mut ldap).await;
        let (member, other) = (user_dn("member"), user_dn("other"));
        add_user(&mut ldap, "member").await.success().unwrap();
        add_user(&mut ldap, "other").await.success().unwrap();
        let group = format!("CN=team,{OU}");
        ldap.add(
            &group,
            vec![
                ("objectClass", set(&["top", "group"])),
                ("sAMAccountName", set(&["team"])),
                ("member", set(&[&member])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        ldap.modify(
            &member,
            vec![Mod::Add("otherTelephone", set(&["+1 555 0100"]))],
        )
        .await
        .unwrap()
        .success()
        .unwrap();

        // Non-critical, as the gateway sends it.
        let permissive = || RawControl {
            ctype: PERMISSIVE_MODIFY_OID.to_string(),
            crit: false,
            val: None,
        };
        let cases = [
            (
                &member,
                Mod::Add("otherTelephone", set(&["+1 555 0100"])),
                20,
                0,
            ),
            (
                &member,
                Mod::Delete("otherTelephone", set(&["+1 555 0199"])),
                16,
                0,
            ),
            (&group, Mod::Add("member", set(&[&member])), 68, 68),
            (&group, Mod::Delete("member", set(&[&other])), 53, 53),
        ];
        let mut seen = Vec::new();
        for (dn, change, plain_rc, permissive_rc) in cases {
            let plain = ldap.modify(dn, vec![change.clone()]).await.unwrap();
            let lenient = ldap
                .with_controls(permissive())
                .modify(dn, vec![change.clone()])
                .await
                .unwrap();
            seen.push(format!("{change:?}: {plain} / {lenient}"));
            assert_eq!(
                (plain.rc, lenient.rc),
                (plain_rc, permissive_rc),
                "{seen:#?}"
            );
        }
        eprintln!("samba: permissive modify: {seen:#?}");
        let entry = dc.entry(&group).await.unwrap();
        assert_eq!(values(&entry, "member"), vec![member.as_bytes().to_vec()]);
        let _ = ldap.unbind().await;
    }

    /// Fact 5: what the rootDSE advertises (printed whole when an assertion fails).
    #[tokio::test]
    async fn root_dse_advertises_paging_sorting_and_permissive_modify_only() {
        let dc = SambaDc::start();
        let mut ldap = dc.admin().await;
        let root = root_dse(&mut ldap).await;
        let controls: HashSet<String> = values(&root, "supportedControl")
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap())
            .collect();
        for oid in [PERMISSIVE_MODIFY_OID, PAGED_RESULTS_OID, SERVER_SORT_OID] {
            assert!(controls.contains(oid), "{oid} missing: {root:#?}");
        }
        for oid in [POST_READ_OID, ASSERTION_OID] {
            assert!(!controls.contains(oid), "{oid} present: {root:#?}");
        }
        assert_eq!(
            text(&root, "vendorName"),
            "Samba Team (https://www.samba.org)",
            "{root:#?}"
        );
        assert!(text(&root, "vendorVersion").starts_with("4."), "{root:#?}");
        // No extended operation at all, not even when asked for by name.
        assert!(values(&root, "supportedExtension").is_empty(), "{root:#?}");
        // Windows Server 2008 R2 functional levels.
        for level in [
            "forestFunctionality",
            "domainFunctionality",
            "domainControllerFunctionality",
        ] {
            assert_eq!(text(&root, level), "4", "{level}: {root:#?}");
        }
        assert_eq!(text(&root, "isGlobalCatalogReady"), "TRUE", "{root:#?}");
        assert_eq!(text(&root, "isSynchronized"), "TRUE", "{root:#?}");
        assert_eq!(text(&root, "defaultNamingContext"), BASE_DN, "{root:#?}");
        assert_eq!(text(&root, "dnsHostName"), "gwdc.gw.test", "{root:#?}");
        assert!(is_ad_time(&text(&root, "currentTime")), "{root:#?}");

        // So the Password Modify extended operation is refused.
        let exop = ldap
            .extended(PasswordModify {
                user_id: Some(ADMIN_DN),
                old_pass: None,
                new_pass: Some("Another-Passw0rd!"),
            })
            .await
            .unwrap();
        assert_eq!(
            (exop.1.rc, exop.1.text.as_str()),
            (
                2,
                format!("Extended Operation({PASSWORD_MODIFY_OID}) not supported").as_str()
            ),
            "{:?}",
            exop.1
        );
        let _ = ldap.unbind().await;
    }

    /// Facts 6 and 7: a group of more than 1500 members, a search of more
    /// than 1000 entries.
    #[tokio::test]
    async fn big_groups_and_results_need_no_range_retrieval_or_paging() {
        let dc = SambaDc::start();
        let mut ldap = dc.admin().await;
        add_ou(&mut ldap).await;

        // Four connections adding users side by side.
        const CONNECTIONS: usize = 4;
        let started = Instant::now();
        let mut adders = tokio::task::JoinSet::new();
        for first in 0..CONNECTIONS {
            let mut conn = dc.admin().await;
            adders.spawn(async move {
                for i in (first..BULK_USERS).step_by(CONNECTIONS) {
                    add_user(&mut conn, &format!("bulk{i:04}"))
                        .await
                        .success()
                        .unwrap();
                }
                let _ = conn.unbind().await;
            });
        }
        while let Some(done) = adders.join_next().await {
            done.unwrap();
        }
        eprintln!(
            "samba: added {BULK_USERS} users in {:.1?}",
            started.elapsed()
        );

        let group = format!("CN=everyone,{OU}");
        let members: Vec<String> = (0..BULK_USERS)
            .map(|i| user_dn(&format!("bulk{i:04}")))
            .collect();
        let started = Instant::now();
        ldap.add(
            &group,
            vec![
                ("objectClass", set(&["top", "group"])),
                ("sAMAccountName", set(&["everyone"])),
                ("member", members.iter().map(String::as_str).collect()),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        eprintln!(
            "samba: added a group of {BULK_USERS} members in {:.1?}",
            started.elapsed()
        );

        let read = |attr: &'static str| {
            let mut ldap = ldap.clone();
            let group = group.clone();
            async move {
                let SearchResult(mut entries, res) = ldap
                    .search(&group, Scope::Base, "(objectClass=*)", vec![attr])
                    .await
                    .unwrap();
                assert_eq!((res.rc, entries.len()), (0, 1), "{attr}: {res}");
                SearchEntry::construct(entries.remove(0))
            }
        };
        let policy = dc
            .entry(&format!(
                "CN=Default Query Policy,CN=Query-Policies,CN=Directory Service,\
                 CN=Windows NT,CN=Services,CN=Configuration,{BASE_DN}"
            ))
            .await
            .expect("the Default Query Policy");
        let limits = values(&policy, "lDAPAdminLimits");
        for limit in ["MaxValRange=1500", "MaxPageSize=1000"] {
            assert!(limits.contains(&limit.as_bytes().to_vec()), "{policy:?}");
        }
        // The Default Query Policy says MaxValRange=1500, as on Windows, but
        // Samba does not apply it and sends every value at once...
        let whole = read("member").await;
        assert_eq!(
            shape(&whole),
            vec![("member".to_string(), BULK_USERS)],
            "{:?}",
            shape(&whole)
        );
        // ... but does answer ranged requests, naming the range it sends;
        // the last one ends in `*`.
        let first = read("member;range=0-1499").await;
        assert_eq!(
            shape(&first),
            vec![("member;range=0-1499".to_string(), 1500)]
        );
        let rest = read("member;range=1500-*").await;
        assert_eq!(shape(&rest), vec![("member;range=1500-*".to_string(), 100)]);
        let beyond = read("member;range=1000-1999").await;
        assert_eq!(
            shape(&beyond),
            vec![("member;range=1000-*".to_string(), 600)]
        );
        let past_end = read("member;range=1600-*").await;
        assert_eq!(
            shape(&past_end),
            vec![("member;range=1600-*".to_string(), 0)]
        );
        let mut ranged: Vec<&String> = first.attrs["member;range=0-1499"]
            .iter()
            .chain(&rest.attrs["member;range=1500-*"])
            .collect();
        ranged.sort();
        ranged.dedup();
        assert_eq!(ranged.len(), BULK_USERS);
        // The ldb dn index does not keep insertion order, so compare as sets.
        let whole: HashSet<&String> = whole.attrs["member"].iter().collect();
        assert!(ranged.iter().all(|m| whole.contains(m)));

        // Nor MaxPageSize=1000: an unpaged search returns all
        // 1600 entries, not sizeLimitExceeded.
        let filter = "(&(objectClass=user)(sAMAccountName=bulk*))";
        let SearchResult(all, res) = ldap
            .search(OU, Scope::Subtree, filter, vec!["cn"])
            .await
            .unwrap();
        assert_eq!((res.rc, all.len()), (0, BULK_USERS), "{res}");

        // Paged results of 500: four pages; of 2000 (over MaxPageSize): one
        // page. With the gateway's own (critical) sort control as well: sorted
        // across the pages.
        let by_cn_descending = SortKey {
            attr: "cn".to_string(),
            reverse: true,
        };
        let mut names: Vec<String> = (0..BULK_USERS).map(|i| format!("bulk{i:04}")).collect();
        let cases = [
            (500, None, vec![500, 500, 500, 100]),
            (2000, None, vec![1600]),
            (500, Some(&by_cn_descending), vec![500, 500, 500, 100]),
        ];
        for (size, sort, pages) in cases {
            let mut cookie = Vec::new();
            let mut seen = Vec::new();
            let mut cns = Vec::new();
            loop {
                let mut controls = vec![RawControl::from(PagedControl {
                    size,
                    cookie: cookie.clone(),
                })];
                controls.extend(sort.map(sort_control));
                let SearchResult(page, res) = ldap
                    .with_controls(controls)
                    .search(OU, Scope::Subtree, filter, vec!["cn"])
                    .await
                    .unwrap();
                assert_eq!(res.rc, 0, "{res}");
                seen.push(page.len());
                cns.extend(
                    page.into_iter()
                        .map(|e| text(&SearchEntry::construct(e), "cn")),
                );
                cookie = res
                    .ctrls
                    .iter()
                    .find_map(|Control(kind, raw)| {
                        matches!(kind, Some(ControlType::PagedResults))
                            .then(|| raw.parse::<PagedControl>().cookie)
                    })
                    .expect("a paged results response control");
                if cookie.is_empty() {
                    break;
                }
            }
            assert_eq!(seen, pages, "page size {size}, sorted: {}", sort.is_some());
            if sort.is_some() {
                names.sort_by(|a, b| b.cmp(a));
                assert_eq!(cns, names, "sorted by cn, descending");
            }
        }
        assert_eq!(dc.find(OU, filter).await.len(), BULK_USERS);
        let _ = ldap.unbind().await;
    }

    /// The harness: fresh state per DC, our certificate, nothing left behind.
    #[tokio::test]
    async fn every_start_is_a_fresh_domain_and_drop_leaves_nothing() {
        let dc = SambaDc::start();
        let dir = dc.dir().to_path_buf();
        let pid = dc.pid();
        let mut ldap = dc.admin().await;
        add_ou(&mut ldap).await;
        let _ = ldap.unbind().await;
        assert!(dc.entry(OU).await.is_some());
        assert!(dc.log().contains("samba version"), "{}", dc.log());
        assert_eq!(dc.ldaps_url(), "ldaps://127.0.0.1:636");
        assert_eq!(dc.base_dn(), "DC=gw,DC=test");
        assert_eq!(dc.admin_dn(), "CN=Administrator,CN=Users,DC=gw,DC=test");
        assert_eq!(dc.realm(), "gw.test");
        assert_eq!(fs::read(dc.ca_pem_path()).unwrap(), dc.ca_pem());
        let key = fs::metadata(dir.join("tls").join("server.key")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
            0o600
        );

        // The certificate names localhost as well as 127.0.0.1.
        let (conn, mut by_name) = LdapConnAsync::with_settings(
            client_settings(&dc.client_tls, Duration::from_secs(5)),
            "ldaps://localhost:636",
        )
        .await
        .unwrap();
        ldap3::drive!(conn);
        by_name
            .simple_bind(&dc.admin_dn(), dc.admin_password())
            .await
            .unwrap()
            .success()
            .unwrap();
        let _ = by_name.unbind().await;

        // Every path samba would write to is inside the instance directory.
        let testparm = Command::new("testparm")
            .args(["-s", "-v"])
            .arg(dir.join("etc").join("smb.conf"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let effective = String::from_utf8_lossy(&testparm.stdout);
        let outside: Vec<&str> = effective
            .lines()
            .filter_map(|line| line.trim().split_once(" = "))
            .filter(|(_, value)| value.starts_with('/'))
            .filter(|(_, value)| !value.starts_with(dir.to_str().unwrap()))
            // Programs samba might run (none with only the LDAP service).
            .filter(|(_, value)| !value.starts_with("/usr/"))
            // What winbind gives users; nothing samba writes.
            .filter(|(key, _)| !["template homedir", "template shell"].contains(key))
            .map(|(key, _)| key)
            .collect();
        assert!(testparm.status.success(), "{testparm:?}");
        assert!(
            outside.is_empty(),
            "paths outside {}: {outside:?}",
            dir.display()
        );

        drop(dc);
        assert!(!dir.exists(), "{} is still there", dir.display());
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "samba (pid {pid}) is still running"
        );
        assert_eq!(ensure_ports_free(Duration::ZERO), Ok(()));

        let again = SambaDc::start();
        assert_ne!(again.dir(), dir);
        assert!(again.entry(OU).await.is_none(), "the OU of the last DC");
        assert!(again.entry(again.base_dn()).await.is_some());
    }

    /// Another program on one of samba's ports is named, not waited for forever.
    #[test]
    fn a_taken_port_is_reported() {
        // Holding both locks, no DC of ours (in any process) has the port.
        let _process = ProcessLock::acquire();
        let _machine = MachineLock::acquire();
        let _squatter = std::net::TcpListener::bind("127.0.0.1:3269").unwrap();
        let why = ensure_ports_free(Duration::ZERO).unwrap_err();
        assert!(why.contains("127.0.0.1 port(s) [3269]"), "{why}");
    }
}
