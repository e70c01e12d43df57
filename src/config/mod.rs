//! Configuration: the TOML file type (`file`) and the validated runtime type built from it.
//!
//! `Config::load` collects every problem before failing, and each message names the key path.

pub mod file;
pub mod secret;

use crate::http::client_ip::Cidr;
use crate::http::ratelimit::{RateLimitSettings, RateQuota};
use crate::mapping::groups::GroupMapping;
use crate::mapping::UserMapping;
use file::{FileConfig, QuotaFile, SecretFile};
pub use secret::{Environment, FixedEnv, ProcessEnv, Secret};
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem in a config file, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Collects problems so that validation reports all of them at once.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<ConfigProblem>);

impl Problems {
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigProblem>),
}

/// A listening socket and whether it speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    pub tls: bool,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ScimSettings {
    pub base_path: String,
    pub max_body_bytes: usize,
    pub max_page_size: usize,
    pub default_page_size: usize,
    pub max_bulk_operations: usize,
    pub max_patch_operations: usize,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub name: String,
    pub secret: Secret,
}

#[derive(Debug, Clone)]
pub struct DirectorySettings {
    /// The first of `urls` (the preferred server).
    pub url: String,
    /// Servers in order of preference, for writes (and reads unless `read_urls` is set).
    pub urls: Vec<String>,
    /// Replicas for reads; empty: reads go to `urls` too.
    pub read_urls: Vec<String>,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub danger_skip_tls_verify: bool,
    pub bind_dn: String,
    pub bind_password: Secret,
    pub pool_size: usize,
    /// The gateway's own search connections at most (0: none).
    pub search_connections: usize,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub retry_after: Duration,
    pub max_search_entries: usize,
    pub max_sort_entries: usize,
    pub version_attribute: Option<String>,
    /// Back-pressure: directory operations in flight at once, waiting at most, and how long.
    pub max_in_flight: usize,
    pub max_queued: usize,
    pub queue_timeout: Duration,
}

/// Limits of the HTTP front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    pub max_connections: usize,
    pub max_concurrent_requests: usize,
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub request_timeout: Duration,
    pub keep_alive_idle: Duration,
    /// `None`: no limit.
    pub max_requests_per_connection: Option<u64>,
    pub http2_max_concurrent_streams: u32,
    pub shutdown_grace: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_connections: 1024,
            max_concurrent_requests: 256,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            keep_alive_idle: Duration::from_secs(120),
            max_requests_per_connection: Some(10_000),
            http2_max_concurrent_streams: 64,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The admin listener (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub address: SocketAddr,
    pub readiness_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// Where audit records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditOutput {
    Log,
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub output: AuditOutput,
    /// Lower-case names of attributes whose values are redacted.
    pub redact_attributes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSettings {
    /// `Some(interval)`: poll the files for changes.
    pub watch: Option<Duration>,
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: Vec<Listener>,
    pub tls: Option<TlsSettings>,
    pub scim: ScimSettings,
    pub tokens: Vec<Token>,
    pub directory: DirectorySettings,
    pub users: UserMapping,
    /// Present when the config has `[mapping.groups]`.
    pub groups: Option<GroupMapping>,
    pub limits: LimitSettings,
    pub rate_limits: Option<RateLimitSettings>,
    pub admin: Option<AdminSettings>,
    pub log: LogSettings,
    pub audit: AuditSettings,
    pub reload: ReloadSettings,
    /// Files the config was built from (config, TLS, secret files), watched for hot reload.
    pub sources: Vec<PathBuf>,
}

impl Config {
    /// Read, parse and validate a config file; relative paths resolve against its folder.
    pub fn load(path: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut config = Self::from_toml(&text, dir, env).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })?;
        config.sources.insert(0, path.to_path_buf());
        Ok(config)
    }

    /// Parse and validate TOML text; `dir` anchors relative paths.
    pub fn from_toml(text: &str, dir: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::new(),
            source: Box::new(source),
        })?;
        Self::validate(file, dir, env)
    }

    /// Turn the file type into the runtime type, collecting every problem.
    pub fn validate(
        file: FileConfig,
        dir: &Path,
        env: &dyn Environment,
    ) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();

        let mut listeners = Vec::new();
        if file.listeners.is_empty() {
            problems.push("listeners", "at least one [[listeners]] entry is required");
        }
        for (i, l) in file.listeners.iter().enumerate() {
            let key = format!("listeners[{i}]");
            let address = match l.address.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    problems.push(
                        format!("{key}.address"),
                        format!(
                            "{:?} is not a socket address; write it like \"127.0.0.1:8443\"",
                            l.address
                        ),
                    );
                    None
                }
            };
            let tls = match l.protocol.as_deref().unwrap_or("https") {
                "https" => true,
                "http" => false,
                other => {
                    problems.push(
                        format!("{key}.protocol"),
                        format!("{other:?} is not a protocol; use \"https\" or \"http\""),
                    );
                    true
                }
            };
            if let Some(address) = address {
                listeners.push(Listener { address, tls });
            }
        }

        let tls = file.tls.as_ref().map(|t| TlsSettings {
            cert_file: dir.join(&t.cert_file),
            key_file: dir.join(&t.key_file),
        });
        if listeners.iter().any(|l| l.tls) && tls.is_none() {
            problems.push(
                "tls",
                "an https listener needs a [tls] section with cert_file and key_file",
            );
        }

        let base_path = file
            .scim
            .base_path
            .clone()
            .unwrap_or_else(|| "/scim/v2".into());
        let base_path = base_path.trim_end_matches('/').to_string();
        if !base_path.starts_with('/') && !base_path.is_empty() {
            problems.push(
                "scim.base_path",
                format!("{base_path:?} must start with '/'"),
            );
        }
        let max_page_size = file.scim.max_page_size.unwrap_or(200);
        let default_page_size = file
            .scim
            .default_page_size
            .unwrap_or(100.min(max_page_size));
        if max_page_size == 0 {
            problems.push("scim.max_page_size", "must be at least 1");
        }
        if default_page_size > max_page_size {
            problems.push(
                "scim.default_page_size",
                format!("{default_page_size} exceeds scim.max_page_size ({max_page_size})"),
            );
        }
        let scim = ScimSettings {
            base_path,
            max_body_bytes: file.scim.max_body_bytes.unwrap_or(1024 * 1024),
            max_page_size,
            default_page_size,
            max_bulk_operations: file.scim.max_bulk_operations.unwrap_or(1000),
            max_patch_operations: file
                .scim
                .max_patch_operations
                .unwrap_or(crate::scim::patch::MAX_OPERATIONS)
                .max(1),
        };

        let mut tokens = Vec::new();
        if file.tokens.is_empty() {
            problems.push("tokens", "at least one [[tokens]] entry is required");
        }
        for (i, t) in file.tokens.iter().enumerate() {
            let key = format!("tokens[{i}].secret");
            if let Some(secret) = resolve_secret(&t.secret, &key, dir, env, &mut problems) {
                if secret.expose().len() < 16 {
                    problems.push(
                        key,
                        "the token is shorter than 16 characters; use a long random token",
                    );
                } else {
                    tokens.push(Token {
                        name: t.name.clone(),
                        secret,
                    });
                }
            }
        }

        let d = &file.directory;
        let urls: Vec<String> = match (&d.url, &d.urls) {
            (Some(u), None) => vec![u.clone()],
            (None, Some(list)) if !list.is_empty() => list.clone(),
            (None, Some(_)) => {
                problems.push("directory.urls", "list at least one server");
                vec![]
            }
            (None, None) => {
                problems.push(
                    "directory.url",
                    "set `url` (one server) or `urls` (several)",
                );
                vec![]
            }
            (Some(_), Some(_)) => {
                problems.push("directory.urls", "set either `url` or `urls`, not both");
                vec![]
            }
        };
        let url_key = if d.urls.is_some() {
            "directory.urls"
        } else {
            "directory.url"
        };
        for (key, list) in [(url_key, &urls), ("directory.read_urls", &d.read_urls)] {
            for (i, u) in list.iter().enumerate() {
                let key = if d.urls.is_some() || key == "directory.read_urls" {
                    format!("{key}[{i}]")
                } else {
                    key.to_string()
                };
                if !(u.starts_with("ldap://")
                    || u.starts_with("ldaps://")
                    || u.starts_with("ldapi://"))
                {
                    problems.push(
                        key.clone(),
                        format!("{u:?} must start with ldap://, ldaps:// or ldapi://"),
                    );
                }
            }
        }
        if d.starttls
            && urls
                .iter()
                .chain(&d.read_urls)
                .any(|u| !u.starts_with("ldap://"))
        {
            problems.push(
                "directory.starttls",
                "StartTLS applies to ldap:// URLs only",
            );
        }
        let encrypted = urls
            .iter()
            .chain(&d.read_urls)
            .all(|u| u.starts_with("ldaps://") || u.starts_with("ldapi://") || d.starttls);
        let bind_password = resolve_secret(
            &d.bind_password,
            "directory.bind_password",
            dir,
            env,
            &mut problems,
        );
        let pool_size = d.pool_size.unwrap_or(4);
        if pool_size == 0 || pool_size > 256 {
            problems.push(
                "directory.pool_size",
                format!("{pool_size} must be between 1 and 256"),
            );
        }
        let search_connections = d.search_connections.unwrap_or(64);
        if search_connections > 1024 {
            problems.push(
                "directory.search_connections",
                format!("{search_connections} must be at most 1024"),
            );
        }
        let max_in_flight = match d.max_in_flight {
            Some(0) => {
                problems.push("directory.max_in_flight", "must be at least 1");
                1
            }
            Some(n) => n,
            None => pool_size.saturating_mul(8).max(1),
        };
        let directory = DirectorySettings {
            url: urls.first().cloned().unwrap_or_default(),
            urls: urls.clone(),
            read_urls: d.read_urls.clone(),
            starttls: d.starttls,
            ca_file: d.ca_file.as_ref().map(|p| dir.join(p)),
            danger_skip_tls_verify: d.danger_skip_tls_verify,
            bind_dn: d.bind_dn.clone(),
            bind_password: bind_password.unwrap_or_else(|| Secret::new("")),
            pool_size,
            search_connections,
            connect_timeout: Duration::from_secs(d.connect_timeout_secs.unwrap_or(5).max(1)),
            operation_timeout: Duration::from_secs(d.operation_timeout_secs.unwrap_or(10).max(1)),
            retry_after: Duration::from_secs(d.retry_after_secs.unwrap_or(5).max(1)),
            max_search_entries: d.max_search_entries.unwrap_or(100_000),
            max_sort_entries: d.max_sort_entries.unwrap_or(10_000),
            version_attribute: match d.version_attribute.as_deref() {
                None => Some("entryCSN".to_string()),
                Some("") => None,
                Some(a) => Some(a.to_string()),
            },
            max_in_flight,
            max_queued: d.max_queued.unwrap_or(256),
            queue_timeout: Duration::from_millis(d.queue_timeout_ms.unwrap_or(1000)),
        };
        let limits = limit_settings(&file.limits, &mut problems);
        let rate_limits = rate_limit_settings(&file.rate_limits, &mut problems);
        let admin = file
            .admin
            .as_ref()
            .and_then(|a| match a.address.parse::<SocketAddr>() {
                Ok(address) => Some(AdminSettings {
                    address,
                    readiness_timeout: Duration::from_secs(
                        a.readiness_timeout_secs.unwrap_or(2).max(1),
                    ),
                }),
                Err(_) => {
                    problems.push(
                        "admin.address",
                        format!(
                            "{:?} is not a socket address; write it like \"127.0.0.1:9464\"",
                            a.address
                        ),
                    );
                    None
                }
            });
        if let Some(a) = &admin {
            if a.address.port() != 0 && listeners.iter().any(|l| l.address == a.address) {
                problems.push(
                    "admin.address",
                    format!("{} is also a SCIM listener's address", a.address),
                );
            }
        }
        let log = LogSettings {
            format: match file.log.format.as_deref().unwrap_or("human") {
                "human" => LogFormat::Human,
                "json" => LogFormat::Json,
                other => {
                    problems.push(
                        "log.format",
                        format!("{other:?} is not a log format; use \"human\" or \"json\""),
                    );
                    LogFormat::Human
                }
            },
            level: file.log.level.clone().unwrap_or_else(|| "info".into()),
        };
        let audit_output = match (
            file.audit.output.as_deref().unwrap_or("log"),
            &file.audit.file,
        ) {
            ("log", None) => AuditOutput::Log,
            ("stdout", None) => AuditOutput::Stdout,
            ("stderr", None) => AuditOutput::Stderr,
            ("file", Some(f)) => AuditOutput::File(dir.join(f)),
            ("file", None) => {
                problems.push("audit.file", "output = \"file\" needs the file's path");
                AuditOutput::Log
            }
            (o @ ("log" | "stdout" | "stderr"), Some(_)) => {
                problems.push(
                    "audit.file",
                    format!("only used with output = \"file\", not {o:?}"),
                );
                AuditOutput::Log
            }
            (other, _) => {
                problems.push("audit.output", format!("{other:?} is not an audit output; use \"log\", \"stdout\", \"stderr\" or \"file\""));
                AuditOutput::Log
            }
        };
        let audit = AuditSettings {
            output: audit_output,
            redact_attributes: file
                .audit
                .redact_attributes
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
        };
        let reload = ReloadSettings {
            watch: file
                .reload
                .watch
                .then(|| Duration::from_secs(file.reload.watch_interval_secs.unwrap_or(5).max(1))),
        };
        let mut sources: Vec<PathBuf> = Vec::new();
        if let Some(t) = &tls {
            sources.push(t.cert_file.clone());
            sources.push(t.key_file.clone());
        }
        for s in file
            .tokens
            .iter()
            .map(|t| &t.secret)
            .chain([&d.bind_password])
        {
            if let Some(f) = &s.file {
                sources.push(dir.join(f));
            }
        }

        let users = UserMapping::build(&file.mapping.users, "mapping.users", &mut problems);
        // Password Modify over plain ldap:// would carry the cleartext password: allowed only to
        // a directory on this machine (the demo's loopback slapd), never across a network.
        let local_or_encrypted = urls.iter().chain(&d.read_urls).all(|u| {
            u.starts_with("ldaps://")
                || u.starts_with("ldapi://")
                || d.starttls
                || is_loopback_url(u)
        });
        if !local_or_encrypted
            && users
                .as_ref()
                .is_some_and(|u| u.password == crate::mapping::PasswordMethod::PasswordModify)
        {
            problems.push(
                "mapping.users.password.type",
                "\"password_modify\" over ldap:// to another host would send passwords in clear; use ldaps://, StartTLS or ldapi://",
            );
        }
        if !encrypted
            && users
                .as_ref()
                .is_some_and(|u| u.password == crate::mapping::PasswordMethod::UnicodePwd)
        {
            problems.push(
                "mapping.users.password.type",
                "\"unicode_pwd\" needs an encrypted directory connection (directory.url = \"ldaps://…\" or directory.starttls = true); passwords never cross plaintext",
            );
        }
        let groups = file.mapping.groups.as_ref().map(|g| {
            GroupMapping::build(g, "mapping.groups", &file.mapping.users.base, &mut problems)
        });

        if !problems.0.is_empty() {
            return Err(ConfigError::Invalid(problems.0));
        }
        let users = users.ok_or_else(|| ConfigError::Invalid(vec![]))?;
        let groups = match groups {
            Some(g) => {
                let mut g = g.ok_or_else(|| ConfigError::Invalid(vec![]))?;
                g.version_attribute = directory.version_attribute.clone();
                Some(g)
            }
            None => None,
        };
        Ok(Config {
            listeners,
            tls,
            scim,
            tokens,
            directory,
            users,
            groups,
            limits,
            rate_limits,
            admin,
            log,
            audit,
            reload,
            sources,
        })
    }
}

fn limit_settings(f: &file::LimitsFile, problems: &mut Problems) -> LimitSettings {
    let d = LimitSettings::default();
    let secs = |v: Option<u64>, default: Duration, key: &str, problems: &mut Problems| match v {
        Some(0) => {
            problems.push(format!("limits.{key}"), "must be at least 1");
            default
        }
        Some(s) => Duration::from_secs(s),
        None => default,
    };
    let count = |v: Option<usize>, default: usize, key: &str, problems: &mut Problems| match v {
        Some(0) => {
            problems.push(format!("limits.{key}"), "must be at least 1");
            default
        }
        Some(n) => n,
        None => default,
    };
    LimitSettings {
        max_connections: count(
            f.max_connections,
            d.max_connections,
            "max_connections",
            problems,
        ),
        max_concurrent_requests: count(
            f.max_concurrent_requests,
            d.max_concurrent_requests,
            "max_concurrent_requests",
            problems,
        ),
        header_read_timeout: secs(
            f.header_read_timeout_secs,
            d.header_read_timeout,
            "header_read_timeout_secs",
            problems,
        ),
        tls_handshake_timeout: secs(
            f.tls_handshake_timeout_secs,
            d.tls_handshake_timeout,
            "tls_handshake_timeout_secs",
            problems,
        ),
        request_timeout: secs(
            f.request_timeout_secs,
            d.request_timeout,
            "request_timeout_secs",
            problems,
        ),
        keep_alive_idle: secs(
            f.keep_alive_idle_secs,
            d.keep_alive_idle,
            "keep_alive_idle_secs",
            problems,
        ),
        max_requests_per_connection: match f.max_requests_per_connection {
            Some(0) => None,
            Some(n) => Some(n),
            None => d.max_requests_per_connection,
        },
        http2_max_concurrent_streams: match f.http2_max_concurrent_streams {
            Some(0) => {
                problems.push("limits.http2_max_concurrent_streams", "must be at least 1");
                d.http2_max_concurrent_streams
            }
            Some(n) => n,
            None => d.http2_max_concurrent_streams,
        },
        // A zero grace period is allowed: stop at once.
        shutdown_grace: f
            .shutdown_grace_secs
            .map(Duration::from_secs)
            .unwrap_or(d.shutdown_grace),
    }
}

/// The quotas; `None` when `enabled = false`.
fn rate_limit_settings(
    f: &file::RateLimitsFile,
    problems: &mut Problems,
) -> Option<RateLimitSettings> {
    let d = RateLimitSettings::default();
    let quota =
        |q: &Option<QuotaFile>, default: Option<RateQuota>, key: &str, problems: &mut Problems| {
            let Some(q) = q else { return default };
            let per_second = NonZeroU32::new(q.per_second)?;
            match NonZeroU32::new(q.burst.unwrap_or(q.per_second.saturating_mul(2))) {
                Some(burst) => Some(RateQuota { per_second, burst }),
                None => {
                    problems.push(
                        format!("rate_limits.{key}.burst"),
                        "must be at least 1 (set per_second = 0 to turn the quota off)",
                    );
                    default
                }
            }
        };
    let mut trusted_proxies = Vec::new();
    for (i, c) in f.trusted_proxies.iter().enumerate() {
        match c.parse::<Cidr>() {
            Ok(c) => trusted_proxies.push(c),
            Err(e) => problems.push(
                format!("rate_limits.trusted_proxies[{i}]"),
                format!("{c:?}: {e}"),
            ),
        }
    }
    let settings = RateLimitSettings {
        global_read: quota(&f.global_read, d.global_read, "global_read", problems),
        global_write: quota(&f.global_write, d.global_write, "global_write", problems),
        token_read: quota(&f.token_read, d.token_read, "token_read", problems),
        token_write: quota(&f.token_write, d.token_write, "token_write", problems),
        unauthenticated_per_ip: quota(
            &f.unauthenticated_per_ip,
            d.unauthenticated_per_ip,
            "unauthenticated_per_ip",
            problems,
        ),
        trusted_proxies,
    };
    f.enabled.unwrap_or(true).then_some(settings)
}

/// `ldap://127.0.0.1…`, `ldap://[::1]…` or `ldap://localhost…`.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.strip_prefix("ldap://").unwrap_or("");
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        rest.split([':', '/']).next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn resolve_secret(
    s: &SecretFile,
    key: &str,
    dir: &Path,
    env: &dyn Environment,
    problems: &mut Problems,
) -> Option<Secret> {
    match (&s.env, &s.file) {
        (Some(var), None) => match env.var(var) {
            Some(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                problems.push(
                    format!("{key}.env"),
                    format!("environment variable {var} is not set or empty"),
                );
                None
            }
        },
        (None, Some(path)) => {
            let path = dir.join(path);
            match env.read_file(&path) {
                Ok(v) => {
                    let v = v.strip_suffix('\n').unwrap_or(&v);
                    let v = v.strip_suffix('\r').unwrap_or(v);
                    if v.is_empty() {
                        problems.push(
                            format!("{key}.file"),
                            format!("{} is empty", path.display()),
                        );
                        None
                    } else {
                        Some(Secret::new(v))
                    }
                }
                Err(e) => {
                    problems.push(
                        format!("{key}.file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
        _ => {
            problems.push(key, "set exactly one of `env` or `file`");
            None
        }
    }
}

#[cfg(test)]
mod tests;
