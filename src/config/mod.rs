//! Configuration: the TOML file type (`file`) and the validated runtime type built from it.
//!
//! `Config::load` collects every problem before failing, and each message names the key path.

pub mod file;
pub mod secret;

use crate::mapping::groups::GroupMapping;
use crate::mapping::UserMapping;
use file::{FileConfig, SecretFile};
pub use secret::{Environment, FixedEnv, ProcessEnv, Secret};
use std::fmt;
use std::net::SocketAddr;
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
}

#[derive(Debug, Clone)]
pub struct Token {
    pub name: String,
    pub secret: Secret,
}

#[derive(Debug, Clone)]
pub struct DirectorySettings {
    pub url: String,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub danger_skip_tls_verify: bool,
    pub bind_dn: String,
    pub bind_password: Secret,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub retry_after: Duration,
    pub max_search_entries: usize,
    pub max_sort_entries: usize,
    pub version_attribute: Option<String>,
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
}

impl Config {
    /// Read, parse and validate a config file; relative paths resolve against its folder.
    pub fn load(path: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, dir, env).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
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
        if !(d.url.starts_with("ldap://") || d.url.starts_with("ldaps://")) {
            problems.push(
                "directory.url",
                format!("{:?} must start with ldap:// or ldaps://", d.url),
            );
        }
        if d.starttls && d.url.starts_with("ldaps://") {
            problems.push(
                "directory.starttls",
                "StartTLS applies to ldap:// URLs only",
            );
        }
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
        let directory = DirectorySettings {
            url: d.url.clone(),
            starttls: d.starttls,
            ca_file: d.ca_file.as_ref().map(|p| dir.join(p)),
            danger_skip_tls_verify: d.danger_skip_tls_verify,
            bind_dn: d.bind_dn.clone(),
            bind_password: bind_password.unwrap_or_else(|| Secret::new("")),
            pool_size,
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
        };

        let users = UserMapping::build(&file.mapping.users, "mapping.users", &mut problems);
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
        })
    }
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
