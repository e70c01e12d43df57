//! Unit tests of configuration loading: shipped configs, unknown keys, collected problems, secrets.
#![allow(clippy::unwrap_used)]

use super::file::FileConfig;
use super::*;
use crate::directory::Scope;
use crate::mapping::{DeletePolicy, DisableStrategy};

/// 32-character secrets, distinctive enough to search for in printed output.
const TOKEN: &str = "scim-token-0123456789abcdef-XYZ1";
const BIND_PW: &str = "bind-password-0123456789abcd-XY2";

fn env_with(vars: &[(&str, &str)], files: &[(&str, &str)]) -> FixedEnv {
    FixedEnv {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        files: files
            .iter()
            .map(|(k, v)| (PathBuf::from(k), v.to_string()))
            .collect(),
    }
}

fn demo_env() -> FixedEnv {
    env_with(
        &[("SCIM_TOKEN", TOKEN), ("LDAP_ADMIN_PASSWORD", BIND_PW)],
        &[],
    )
}

/// A FixedEnv that answers every env var and secret file a config file names.
fn env_for(path: &Path) -> FixedEnv {
    let text = std::fs::read_to_string(path).unwrap();
    let file: FileConfig =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
    let dir = path.parent().unwrap();
    let mut env = FixedEnv::default();
    // Tokens and the bind password get different values so leaks are attributable.
    let mut secrets: Vec<(&file::SecretFile, &str)> =
        file.tokens.iter().map(|t| (&t.secret, TOKEN)).collect();
    secrets.push((&file.directory.bind_password, BIND_PW));
    for (s, value) in secrets {
        if let Some(var) = &s.env {
            env.vars.insert(var.clone(), value.to_string());
        }
        if let Some(p) = &s.file {
            env.files.insert(dir.join(p), format!("{value}\n"));
        }
    }
    env
}

/// The presets under `config/`, then the configs of the container and Kubernetes deployments.
fn shipped_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<PathBuf> = std::fs::read_dir(root.join("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    out.sort();
    out.push(root.join("deploy/docker/gateway.toml"));
    out.push(root.join("deploy/kubernetes/gateway.toml"));
    out
}

const BASE: &str = r#"
[[listeners]]
address = "127.0.0.1:8080"
protocol = "http"

[[tokens]]
name = "entra"
secret = { env = "SCIM_TOKEN" }

[directory]
url = "ldap://127.0.0.1:3389"
bind_dn = "cn=admin,dc=example,dc=org"
bind_password = { env = "LDAP_ADMIN_PASSWORD" }

[mapping.users]
base = "ou=people,dc=example,dc=org"
object_classes = ["inetOrgPerson"]

[[mapping.users.attributes]]
scim = "userName"
ldap = "uid"

[[mapping.users.attributes]]
scim = "displayName"
ldap = "displayName"
"#;

fn load_str(text: &str, env: &FixedEnv) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/etc/gw"), env)
}

/// The problems of an invalid config, as (key, message) pairs.
fn problems(text: &str, env: &FixedEnv) -> Vec<ConfigProblem> {
    match load_str(text, env) {
        Err(ConfigError::Invalid(p)) => p,
        Err(other) => panic!("expected validation problems, got {other}"),
        Ok(_) => panic!("expected validation problems, the config loaded"),
    }
}

fn keys(p: &[ConfigProblem]) -> Vec<&str> {
    p.iter().map(|p| p.key.as_str()).collect()
}

fn problem<'a>(p: &'a [ConfigProblem], key: &str) -> &'a ConfigProblem {
    p.iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("no problem with key {key}; got {p:?}"))
}

fn parse_error(text: &str) -> String {
    match load_str(text, &demo_env()) {
        Err(e @ ConfigError::Parse { .. }) => e.to_string(),
        Err(other) => panic!("expected a parse error, got {other}"),
        Ok(_) => panic!("expected a parse error, the config loaded"),
    }
}

// ---------------------------------------------------------------------------
// Shipped configs

#[test]
fn every_shipped_config_validates() {
    let configs = shipped_configs();
    assert!(
        configs.len() >= 2,
        "expected at least gateway.toml and openldap.toml, found {configs:?}"
    );
    for path in &configs {
        let env = env_for(path);
        let config = Config::load(path, &env)
            .unwrap_or_else(|e| panic!("{} does not validate: {e}", path.display()));
        assert!(!config.tokens.is_empty(), "{}", path.display());
        assert!(config.tokens.iter().all(|t| t.secret.expose() == TOKEN));
        assert_eq!(config.directory.bind_password.expose(), BIND_PW);
        let printed = format!("{config:?}");
        assert!(
            !printed.contains(TOKEN),
            "{} leaks the token",
            path.display()
        );
        assert!(
            !printed.contains(BIND_PW),
            "{} leaks the bind password",
            path.display()
        );
    }
}

#[test]
fn shipped_configs_include_gateway_and_openldap() {
    let names: Vec<String> = shipped_configs()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"gateway.toml".to_string()), "{names:?}");
    assert!(names.contains(&"openldap.toml".to_string()), "{names:?}");
}

#[test]
fn gateway_toml_facts() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.toml");
    let config = Config::load(&path, &demo_env()).unwrap();
    assert_eq!(
        config.listeners,
        vec![Listener {
            address: "127.0.0.1:8443".parse().unwrap(),
            tls: true
        }]
    );
    let tls = config.tls.as_ref().unwrap();
    let dir = path.parent().unwrap();
    assert_eq!(tls.cert_file, dir.join("../.run/tls/gateway.crt"));
    assert_eq!(tls.key_file, dir.join("../.run/tls/gateway.key"));
    assert_eq!(config.scim.base_path, "/scim/v2");
    assert_eq!(config.scim.max_body_bytes, 1_048_576);
    assert_eq!(config.scim.max_page_size, 200);
    assert_eq!(config.scim.default_page_size, 100);
    assert_eq!(config.tokens.len(), 1);
    assert_eq!(config.tokens[0].name, "entra");
    assert_eq!(config.directory.url, "ldap://127.0.0.1:3389");
    assert_eq!(
        config.directory.bind_dn,
        "cn=scim-gateway,dc=example,dc=org"
    );
    assert_eq!(
        config.users.password,
        crate::mapping::PasswordMethod::PasswordModify
    );
    assert_eq!(config.directory.pool_size, 4);
    assert_eq!(config.directory.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.directory.operation_timeout, Duration::from_secs(10));
    assert_eq!(config.directory.retry_after, Duration::from_secs(5));
    assert_eq!(
        config.directory.version_attribute.as_deref(),
        Some("entryCSN")
    );
    let users = &config.users;
    assert_eq!(users.base, "ou=people,dc=example,dc=org");
    assert_eq!(users.scope, Scope::OneLevel);
    assert_eq!(users.object_filter, "(objectClass=inetOrgPerson)");
    assert_eq!(
        users.object_classes,
        [
            "top",
            "person",
            "organizationalPerson",
            "inetOrgPerson",
            "scimUser"
        ]
    );
    assert_eq!(users.id_attribute, "entryUUID");
    assert_eq!(users.rdn_attribute, "uid");
    assert_eq!(users.slots.len(), 21);
    assert_eq!(users.slots[users.rdn_slot].ldap, "uid");
    assert_eq!(users.slots[users.user_name_slot].path, "userName");
    assert_eq!(users.disable, DisableStrategy::PPolicy);
    assert_eq!(users.delete, DeletePolicy::Hard);
}

#[test]
fn openldap_toml_reads_secrets_from_absolute_files() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/openldap.toml");
    let env = env_with(
        &[],
        &[
            (
                "/etc/scim-ldap-gateway/secrets/entra-token",
                &format!("{TOKEN}\n"),
            ),
            ("/etc/scim-ldap-gateway/secrets/bind-password", BIND_PW),
        ],
    );
    let config = Config::load(&path, &env).unwrap();
    assert_eq!(config.tokens[0].secret.expose(), TOKEN);
    assert_eq!(config.directory.bind_password.expose(), BIND_PW);
    assert_eq!(
        config.directory.ca_file.as_deref(),
        Some(Path::new("/etc/scim-ldap-gateway/tls/directory-ca.pem"))
    );
    assert_eq!(config.listeners[0].address, "0.0.0.0:8443".parse().unwrap());
}

#[test]
fn load_reports_unreadable_file() {
    let err = Config::load(Path::new("/nonexistent/gw.toml"), &demo_env()).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/gw.toml"), "{err}");
}

#[test]
fn load_names_the_file_in_parse_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, format!("{BASE}\nbogus = 1\n")).unwrap();
    let err = Config::load(&path, &demo_env()).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(&path.display().to_string()), "{text}");
    assert!(text.contains("unknown field `bogus`"), "{text}");
}

// ---------------------------------------------------------------------------
// Defaults of a minimal config

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = load_str(BASE, &demo_env()).unwrap();
    assert_eq!(
        c.listeners,
        vec![Listener {
            address: "127.0.0.1:8080".parse().unwrap(),
            tls: false
        }]
    );
    assert!(c.tls.is_none());
    assert_eq!(c.scim.base_path, "/scim/v2");
    assert_eq!(c.scim.max_body_bytes, 1024 * 1024);
    assert_eq!(c.scim.max_page_size, 200);
    assert_eq!(c.scim.default_page_size, 100);
    assert_eq!(c.directory.pool_size, 4);
    assert!(!c.directory.starttls);
    assert!(!c.directory.danger_skip_tls_verify);
    assert_eq!(c.directory.max_search_entries, 100_000);
    assert_eq!(c.directory.version_attribute.as_deref(), Some("entryCSN"));
    assert_eq!(c.users.scope, Scope::Subtree);
    assert_eq!(c.users.object_filter, "(objectClass=inetOrgPerson)");
    assert_eq!(c.users.id_attribute, "entryUUID");
    assert_eq!(c.users.rdn_attribute, "uid");
    assert_eq!(c.users.created_attribute, "createTimestamp");
    assert_eq!(c.users.modified_attribute, "modifyTimestamp");
    assert_eq!(c.users.disable, DisableStrategy::PPolicy);
    assert_eq!(c.users.delete, DeletePolicy::Hard);
    assert!(c.users.constants.is_empty());
}

#[test]
fn small_page_limit_lowers_the_default_page_size() {
    let text = format!("{BASE}\n[scim]\nmax_page_size = 50\n");
    let c = load_str(&text, &demo_env()).unwrap();
    assert_eq!((c.scim.max_page_size, c.scim.default_page_size), (50, 50));
}

#[test]
fn base_path_loses_trailing_slash_and_empty_version_attribute_disables_guard() {
    let text = BASE
        .replace(
            "[directory]\n",
            "[directory]\nversion_attribute = \"\"\nconnect_timeout_secs = 0\n",
        )
        .replace(
            "[mapping.users]\n",
            "[scim]\nbase_path = \"/scim/v2/\"\n\n[mapping.users]\n",
        );
    let c = load_str(&text, &demo_env()).unwrap();
    assert_eq!(c.scim.base_path, "/scim/v2");
    assert_eq!(c.directory.version_attribute, None);
    // A zero timeout would fail every operation; it is raised to one second.
    assert_eq!(c.directory.connect_timeout, Duration::from_secs(1));
}

#[test]
fn filter_without_parentheses_is_wrapped() {
    let text = BASE.replace(
        "object_classes",
        "filter = \"objectClass=person\"\nobject_classes",
    );
    let c = load_str(&text, &demo_env()).unwrap();
    assert_eq!(c.users.object_filter, "(objectClass=person)");
}

// ---------------------------------------------------------------------------
// Unknown keys

#[test]
fn unknown_top_level_key_is_named() {
    let text = parse_error(&format!("bogus = 1\n{BASE}"));
    assert!(text.contains("unknown field `bogus`"), "{text}");
}

#[test]
fn unknown_key_in_directory_is_named() {
    let text = parse_error(&BASE.replace("[directory]\n", "[directory]\nbind_pw = \"x\"\n"));
    assert!(text.contains("unknown field `bind_pw`"), "{text}");
}

#[test]
fn unknown_key_in_mapping_attribute_is_named() {
    let text = parse_error(&BASE.replace(
        "ldap = \"displayName\"",
        "ldap = \"displayName\"\nmulti_valued = true",
    ));
    assert!(text.contains("unknown field `multi_valued`"), "{text}");
}

#[test]
fn inline_secret_value_is_an_unknown_key() {
    let text = parse_error(&BASE.replace(
        "secret = { env = \"SCIM_TOKEN\" }",
        "secret = { value = \"inline-secret-inline-secret\" }",
    ));
    assert!(text.contains("unknown field `value`"), "{text}");
    assert!(text.contains("expected `env` or `file`"), "{text}");
}

#[test]
fn unknown_key_in_scim_and_disable_sections_is_named() {
    let text = parse_error(&format!("{BASE}\n[scim]\nmax_page = 5\n"));
    assert!(text.contains("unknown field `max_page`"), "{text}");
    let text = parse_error(&format!(
        "{BASE}\n[mapping.users.disable]\ntype = \"ppolicy\"\nvalue_when_disabled = \"x\"\n"
    ));
    assert!(
        text.contains("unknown field `value_when_disabled`"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Collected problems

#[test]
fn validation_collects_every_problem_with_its_key() {
    let text = r#"
[[listeners]]
address = "localhost-8443"

[[listeners]]
address = "0.0.0.0:8443"

[[tokens]]
name = "entra"
secret = { env = "MISSING_VAR" }

[[tokens]]
name = "okta"
secret = { env = "SCIM_TOKEN", file = "okta-token" }

[[tokens]]
name = "short"
secret = { env = "SHORT_TOKEN" }

[directory]
url = "ldap://127.0.0.1:3389"
bind_dn = "cn=admin,dc=example,dc=org"
bind_password = { env = "LDAP_ADMIN_PASSWORD" }

[mapping.users]
base = "ou=people,dc=example,dc=org"
scope = "deep"
object_classes = ["inetOrgPerson"]

[mapping.users.disable]
type = "lock"

[mapping.users.delete]
type = "soft"
move_to = "ou=deleted,ou=people,dc=example,dc=org"

[[mapping.users.attributes]]
scim = "displayName"
ldap = "displayName"

[[mapping.users.attributes]]
scim = "emails[type eq"
ldap = "mail"

[[mapping.users.attributes]]
scim = "title"
ldap = "displayName"
"#;
    let env = env_with(
        &[
            ("SCIM_TOKEN", TOKEN),
            ("LDAP_ADMIN_PASSWORD", BIND_PW),
            ("SHORT_TOKEN", "too-short"),
        ],
        &[],
    );
    let p = problems(text, &env);
    assert_eq!(
        keys(&p),
        vec![
            "listeners[0].address",
            "tls",
            "tokens[0].secret.env",
            "tokens[1].secret",
            "tokens[2].secret",
            "mapping.users.scope",
            "mapping.users.attributes[1].scim",
            "mapping.users.attributes[2].ldap",
            "mapping.users.attributes",
            "mapping.users.rdn_attribute",
            "mapping.users.disable.type",
            "mapping.users.delete.move_to",
            "mapping.users.delete",
        ],
        "{p:#?}"
    );
    assert!(problem(&p, "listeners[0].address")
        .message
        .contains("\"localhost-8443\" is not a socket address"));
    assert!(problem(&p, "tls").message.contains("[tls]"));
    assert_eq!(
        problem(&p, "tokens[0].secret.env").message,
        "environment variable MISSING_VAR is not set or empty"
    );
    assert_eq!(
        problem(&p, "tokens[1].secret").message,
        "set exactly one of `env` or `file`"
    );
    assert!(problem(&p, "tokens[2].secret")
        .message
        .contains("shorter than 16 characters"));
    assert!(problem(&p, "mapping.users.scope")
        .message
        .contains("\"deep\""));
    assert!(problem(&p, "mapping.users.attributes[1].scim")
        .message
        .contains("\"emails[type eq\" is not a SCIM attribute path"));
    assert!(problem(&p, "mapping.users.attributes[2].ldap")
        .message
        .contains("displayName is already mapped from displayName"));
    assert!(problem(&p, "mapping.users.attributes")
        .message
        .contains("userName must be mapped"));
    assert!(problem(&p, "mapping.users.disable.type")
        .message
        .contains("\"lock\""));
    assert!(problem(&p, "mapping.users.delete.move_to")
        .message
        .contains("lies inside mapping.users.base"));
    // The whole report names each problem on its own line.
    let report = ConfigError::Invalid(p).to_string();
    assert!(
        report.starts_with("invalid configuration:\n  - listeners[0].address: "),
        "{report}"
    );
    assert_eq!(report.lines().count(), 14, "{report}");
}

#[test]
fn bad_listener_protocol_and_missing_sections() {
    let text = BASE.replace("protocol = \"http\"", "protocol = \"ftp\"");
    let p = problems(&text, &demo_env());
    // The listener falls back to https, which then lacks [tls].
    assert_eq!(keys(&p), vec!["listeners[0].protocol", "tls"]);
    assert!(p[0].message.contains("\"ftp\" is not a protocol"));

    let text = BASE
        .replace(
            "[[listeners]]\naddress = \"127.0.0.1:8080\"\nprotocol = \"http\"\n",
            "listeners = []\n",
        )
        .replace(
            "[[tokens]]\nname = \"entra\"\nsecret = { env = \"SCIM_TOKEN\" }\n",
            "tokens = []\n",
        );
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["listeners", "tokens"]);
}

#[test]
fn a_listener_without_protocol_is_https() {
    let text = BASE.replace("protocol = \"http\"\n", "");
    // Plaintext only when written out: without `protocol` the listener needs [tls].
    assert_eq!(keys(&problems(&text, &demo_env())), vec!["tls"]);
    let text = text + "\n[tls]\ncert_file = \"gw.crt\"\nkey_file = \"gw.key\"\n";
    let c = load_str(&text, &demo_env()).unwrap();
    assert!(c.listeners[0].tls);
}

#[test]
fn https_listener_with_tls_section_is_valid() {
    let text = BASE.replace("protocol = \"http\"", "protocol = \"https\"")
        + "\n[tls]\ncert_file = \"tls/gw.crt\"\nkey_file = \"/abs/gw.key\"\n";
    let c = load_str(&text, &demo_env()).unwrap();
    assert!(c.listeners[0].tls);
    let tls = c.tls.unwrap();
    assert_eq!(tls.cert_file, PathBuf::from("/etc/gw/tls/gw.crt"));
    assert_eq!(tls.key_file, PathBuf::from("/abs/gw.key"));
}

#[test]
fn empty_env_var_counts_as_missing() {
    let env = env_with(&[("SCIM_TOKEN", ""), ("LDAP_ADMIN_PASSWORD", BIND_PW)], &[]);
    let p = problems(BASE, &env);
    assert_eq!(keys(&p), vec!["tokens[0].secret.env"]);
}

#[test]
fn secret_with_neither_env_nor_file_is_a_problem() {
    let text = BASE.replace("secret = { env = \"SCIM_TOKEN\" }", "secret = {}");
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["tokens[0].secret"]);
    assert_eq!(p[0].message, "set exactly one of `env` or `file`");
}

#[test]
fn missing_bind_password_env_is_named() {
    let env = env_with(&[("SCIM_TOKEN", TOKEN)], &[]);
    let p = problems(BASE, &env);
    assert_eq!(keys(&p), vec!["directory.bind_password.env"]);
    assert_eq!(
        p[0].message,
        "environment variable LDAP_ADMIN_PASSWORD is not set or empty"
    );
}

#[test]
fn secret_files_resolve_relative_to_the_config_folder() {
    let text = BASE
        .replace(
            "secret = { env = \"SCIM_TOKEN\" }",
            "secret = { file = \"secrets/token\" }",
        )
        .replace(
            "bind_password = { env = \"LDAP_ADMIN_PASSWORD\" }",
            "bind_password = { file = \"/run/secrets/bind\" }",
        );
    let env = env_with(
        &[],
        &[
            ("/etc/gw/secrets/token", &format!("{TOKEN}\r\n")),
            ("/run/secrets/bind", &format!("{BIND_PW}\n")),
        ],
    );
    let c = load_str(&text, &env).unwrap();
    // Exactly one trailing newline (CRLF included) is stripped.
    assert_eq!(c.tokens[0].secret.expose(), TOKEN);
    assert_eq!(c.directory.bind_password.expose(), BIND_PW);
}

#[test]
fn secret_file_only_one_trailing_newline_is_stripped() {
    let text = BASE.replace(
        "secret = { env = \"SCIM_TOKEN\" }",
        "secret = { file = \"token\" }",
    );
    let env = env_with(
        &[("LDAP_ADMIN_PASSWORD", BIND_PW)],
        &[("/etc/gw/token", &format!("{TOKEN}\n\n"))],
    );
    let c = load_str(&text, &env).unwrap();
    assert_eq!(c.tokens[0].secret.expose(), format!("{TOKEN}\n"));
}

#[test]
fn unreadable_or_empty_secret_files_are_problems() {
    let text = BASE.replace(
        "secret = { env = \"SCIM_TOKEN\" }",
        "secret = { file = \"token\" }",
    );
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["tokens[0].secret.file"]);
    assert!(
        p[0].message.starts_with("cannot read /etc/gw/token"),
        "{}",
        p[0].message
    );

    let env = env_with(
        &[("LDAP_ADMIN_PASSWORD", BIND_PW)],
        &[("/etc/gw/token", "\n")],
    );
    let p = problems(&text, &env);
    assert_eq!(keys(&p), vec!["tokens[0].secret.file"]);
    assert_eq!(p[0].message, "/etc/gw/token is empty");
}

#[test]
fn short_token_is_a_problem_that_does_not_print_the_token() {
    let env = env_with(
        &[
            ("SCIM_TOKEN", "abc123-secret"),
            ("LDAP_ADMIN_PASSWORD", BIND_PW),
        ],
        &[],
    );
    let p = problems(BASE, &env);
    assert_eq!(keys(&p), vec!["tokens[0].secret"]);
    let report = ConfigError::Invalid(p).to_string();
    assert!(report.contains("shorter than 16 characters"), "{report}");
    assert!(!report.contains("abc123-secret"), "{report}");
}

#[test]
fn search_connections_from_none_to_1024() {
    let with = |n: &str| {
        BASE.replace(
            "[directory]\n",
            &format!("[directory]\nsearch_connections = {n}\n"),
        )
    };
    let c = load_str(&with("0"), &demo_env()).unwrap();
    assert_eq!(c.directory.search_connections, 0);
    let c = load_str(&with("1024"), &demo_env()).unwrap();
    assert_eq!(c.directory.search_connections, 1024);
    let p = problems(&with("1025"), &demo_env());
    assert_eq!(keys(&p), vec!["directory.search_connections"]);
    assert_eq!(p[0].message, "1025 must be at most 1024");
}

#[test]
fn directory_problems() {
    let text = BASE
        .replace("url = \"ldap://127.0.0.1:3389\"", "url = \"ldaps://127.0.0.1:636\"\nstarttls = true\npool_size = 0")
        .replace("[mapping.users]", "[scim]\nbase_path = \"scim\"\nmax_page_size = 10\ndefault_page_size = 20\n\n[mapping.users]");
    let p = problems(&text, &demo_env());
    assert_eq!(
        keys(&p),
        vec![
            "scim.base_path",
            "scim.default_page_size",
            "directory.starttls",
            "directory.pool_size"
        ]
    );
    assert_eq!(p[1].message, "20 exceeds scim.max_page_size (10)");

    let text = BASE.replace("ldap://127.0.0.1:3389", "http://127.0.0.1:3389");
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["directory.url"]);
    assert!(p[0]
        .message
        .contains("must start with ldap://, ldaps:// or ldapi://"));

    let text = BASE.replace(
        "[mapping.users]",
        "[scim]\nmax_page_size = 0\n\n[mapping.users]",
    );
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["scim.max_page_size"]);
}

// ---------------------------------------------------------------------------
// Mapping problems, with the key path of the attribute at fault

fn with_attributes(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

#[test]
fn unknown_disable_type_is_named() {
    let text = format!("{BASE}\n[mapping.users.disable]\ntype = \"toggle\"\n");
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.disable.type"]);
    assert!(p[0].message.contains("\"toggle\" is not a strategy"));
}

#[test]
fn attribute_disable_needs_attribute_and_value() {
    let text = format!(
        "{BASE}\n[mapping.users.disable]\ntype = \"attribute\"\nattribute = \"description\"\n"
    );
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.disable"]);

    let text = format!("{BASE}\n[mapping.users.disable]\ntype = \"ppolicy\"\nvalue = \"x\"\n");
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.disable"]);

    let text = format!(
        "{BASE}\n[mapping.users.disable]\ntype = \"attribute\"\nattribute = \"employeeType\"\nvalue = \"disabled\"\n"
    );
    let c = load_str(&text, &demo_env()).unwrap();
    assert_eq!(
        c.users.disable,
        DisableStrategy::Attribute {
            attribute: "employeeType".into(),
            value: "disabled".into()
        }
    );
}

#[test]
fn disable_attribute_that_is_also_mapped_is_a_problem() {
    let text = with_attributes(
        "[[mapping.users.attributes]]\nscim = \"nickName\"\nldap = \"pwdAccountLockedTime\"\n",
    );
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.disable"]);
    assert!(p[0]
        .message
        .contains("pwdAccountLockedTime is both mapped and used to disable"));
}

#[test]
fn soft_delete_rules() {
    let soft = |move_to: &str, disable: &str| {
        format!(
            "{BASE}\n[mapping.users.disable]\ntype = \"{disable}\"\n\n[mapping.users.delete]\ntype = \"soft\"\n{move_to}"
        )
    };
    // Moving deleted users inside the base would leave them visible.
    let p = problems(
        &soft(
            "move_to = \"ou=deleted,ou=people,dc=example,dc=org\"\n",
            "ppolicy",
        ),
        &demo_env(),
    );
    assert_eq!(keys(&p), vec!["mapping.users.delete.move_to"]);
    let p = problems(
        &soft("move_to = \"OU=People, DC=Example,DC=org\"\n", "ppolicy"),
        &demo_env(),
    );
    assert_eq!(keys(&p), vec!["mapping.users.delete.move_to"]);
    // Soft delete needs a way to disable.
    let p = problems(&soft("", "none"), &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.delete"]);
    // Valid: outside the base.
    let c = load_str(
        &soft("move_to = \"ou=deleted,dc=example,dc=org\"\n", "ppolicy"),
        &demo_env(),
    )
    .unwrap();
    assert_eq!(
        c.users.delete,
        DeletePolicy::Soft {
            move_to: Some("ou=deleted,dc=example,dc=org".into())
        }
    );
    // Hard delete takes no move_to; unknown types are named.
    let text =
        format!("{BASE}\n[mapping.users.delete]\ntype = \"hard\"\nmove_to = \"ou=x,dc=org\"\n");
    assert_eq!(
        keys(&problems(&text, &demo_env())),
        vec!["mapping.users.delete.move_to"]
    );
    let text = format!("{BASE}\n[mapping.users.delete]\ntype = \"purge\"\n");
    assert_eq!(
        keys(&problems(&text, &demo_env())),
        vec!["mapping.users.delete.type"]
    );
}

#[test]
fn bad_scim_paths_are_named_by_attribute_index() {
    let text = with_attributes(
        "[[mapping.users.attributes]]\nscim = \"emails[value eq \\\"x\\\"].value\"\nldap = \"mail\"\n\n\
         [[mapping.users.attributes]]\nscim = \"name\"\nldap = \"cn\"\n\n\
         [[mapping.users.attributes]]\nscim = \"password\"\nldap = \"userPassword\"\n\n\
         [[mapping.users.attributes]]\nscim = \"emails[type eq \\\"work\\\"]\"\nldap = \"mail\"\n",
    );
    let p = problems(&text, &demo_env());
    // "name" alone is a valid single-valued path, so only three of the four are wrong.
    assert_eq!(
        keys(&p),
        vec![
            "mapping.users.attributes[2].scim",
            "mapping.users.attributes[4].scim",
            "mapping.users.attributes[5].scim",
        ],
        "{p:#?}"
    );
    assert!(
        p[0].message.contains("only filters of the form [type eq"),
        "{}",
        p[0].message
    );
    assert!(p[1]
        .message
        .contains("password is handled by the gateway itself"));
    assert!(p[2].message.contains("write a typed path like"));
}

#[test]
fn same_scim_location_mapped_twice_is_a_problem() {
    let text =
        with_attributes("[[mapping.users.attributes]]\nscim = \"DISPLAYNAME\"\nldap = \"cn\"\n");
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.attributes[2].scim"]);
    assert!(p[0]
        .message
        .contains("DISPLAYNAME is mapped twice (also displayName)"));
}

#[test]
fn same_ldap_attribute_mapped_twice_is_a_problem_case_insensitively() {
    let text =
        with_attributes("[[mapping.users.attributes]]\nscim = \"title\"\nldap = \"DisplayName\"\n");
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.attributes[2].ldap"]);
}

#[test]
fn user_name_must_be_mapped() {
    let text = BASE.replace("scim = \"userName\"", "scim = \"nickName\"");
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.attributes"]);
    assert_eq!(
        p[0].message,
        "userName must be mapped (it is SCIM's required matching attribute)"
    );
}

#[test]
fn rdn_attribute_must_be_a_mapped_single_valued_string() {
    let text = BASE.replace("object_classes", "rdn_attribute = \"cn\"\nobject_classes");
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.rdn_attribute"]);

    let text = BASE.replace("object_classes", "rdn_attribute = \"mail\"\nobject_classes")
        + "\n[[mapping.users.attributes]]\nscim = 'emails[type eq \"work\"].value'\nldap = \"mail\"\n";
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.rdn_attribute"]);
    assert!(p[0].message.contains("single-valued string attribute"));
}

#[test]
fn reference_and_primary_only_where_they_apply() {
    let text = with_attributes(
        "[[mapping.users.attributes]]\nscim = \"name.givenName\"\nldap = \"givenName\"\ntype = \"reference\"\n\n\
         [[mapping.users.attributes]]\nscim = \"title\"\nldap = \"title\"\nprimary = true\n",
    );
    let p = problems(&text, &demo_env());
    assert_eq!(
        keys(&p),
        vec![
            "mapping.users.attributes[2].scim",
            "mapping.users.attributes[3].scim"
        ]
    );
    assert!(p[0]
        .message
        .contains("a reference must be a top-level attribute"));
    assert!(p[1].message.contains("`primary` applies only to typed"));
}

#[test]
fn bad_ldap_attribute_name_is_reported_under_its_own_key() {
    let text =
        with_attributes("[[mapping.users.attributes]]\nscim = \"title\"\nldap = \"job title\"\n");
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.attributes[2].ldap"], "{p:#?}");
    assert!(p[0]
        .message
        .contains("\"job title\" is not an attribute name"));
}

#[test]
fn bad_value_type_is_reported_under_its_own_key() {
    let text = with_attributes(
        "[[mapping.users.attributes]]\nscim = \"title\"\nldap = \"title\"\ntype = \"number\"\n",
    );
    let p = problems(&text, &demo_env());
    assert_eq!(keys(&p), vec!["mapping.users.attributes[2].type"], "{p:#?}");
    assert!(p[0].message.contains("\"number\" is not a value type"));
}

#[test]
fn create_default_from_must_name_a_mapped_attribute() {
    let text = with_attributes(
        "[[mapping.users.attributes]]\nscim = \"name.familyName\"\nldap = \"sn\"\ncreate_default_from = [\"userName\", \"nickName\"]\n",
    );
    let p = problems(&text, &demo_env());
    assert_eq!(
        keys(&p),
        vec!["mapping.users.attributes[2].create_default_from[1]"]
    );
    assert_eq!(p[0].message, "\"nickName\" is not a mapped SCIM attribute");
}

#[test]
fn create_default_from_problem_names_the_config_index_after_a_rejected_attribute() {
    // attributes[2] is rejected (duplicate ldap), so attributes[3] becomes slot 2; the key must
    // still name the entry as written in the file.
    let text = with_attributes(
        "[[mapping.users.attributes]]\nscim = \"title\"\nldap = \"uid\"\n\n\
         [[mapping.users.attributes]]\nscim = \"name.familyName\"\nldap = \"sn\"\ncreate_default_from = [\"nickName\"]\n",
    );
    let p = problems(&text, &demo_env());
    assert_eq!(
        keys(&p),
        vec![
            "mapping.users.attributes[2].ldap",
            "mapping.users.attributes[3].create_default_from[0]"
        ],
        "{p:#?}"
    );
}

#[test]
fn mapping_shape_problems() {
    let text = BASE
        .replace(
            "base = \"ou=people,dc=example,dc=org\"",
            "base = \"\"\nfilter = \"(objectClass=\"",
        )
        .replace(
            "object_classes = [\"inetOrgPerson\"]",
            "object_classes = []",
        );
    let p = problems(&text, &demo_env());
    assert_eq!(
        keys(&p),
        vec![
            "mapping.users.base",
            "mapping.users.filter",
            "mapping.users.object_classes"
        ]
    );
}

#[test]
fn constants_may_not_overlap_mapped_attributes_or_object_class() {
    let text = format!(
        "{BASE}\n[[mapping.users.constants]]\nldap = \"objectClass\"\nvalues = [\"x\"]\n\n\
         [[mapping.users.constants]]\nldap = \"employeeType\"\nvalues = [\"staff\"]\n\n\
         [[mapping.users.constants]]\nldap = \"UID\"\nvalues = [\"x\"]\n"
    );
    let p = problems(&text, &demo_env());
    assert_eq!(
        keys(&p),
        vec![
            "mapping.users.constants[0].ldap",
            "mapping.users.constants[2].ldap"
        ]
    );

    let text = format!(
        "{BASE}\n[[mapping.users.constants]]\nldap = \"employeeType\"\nvalues = [\"staff\"]\n"
    );
    let c = load_str(&text, &demo_env()).unwrap();
    assert_eq!(
        c.users.constants,
        vec![("employeeType".to_string(), vec!["staff".to_string()])]
    );
}

// ---------------------------------------------------------------------------
// Secrets never print

#[test]
fn secret_debug_and_display_hide_the_value() {
    let s = Secret::new(TOKEN);
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{s:#?}"), "***");
    assert_eq!(s.expose(), TOKEN);
    let t = Token {
        name: "entra".into(),
        secret: s,
    };
    let printed = format!("{t:?}");
    assert!(
        printed.contains("***") && !printed.contains(TOKEN),
        "{printed}"
    );
}

#[test]
fn debug_printed_config_reveals_no_secret() {
    let c = load_str(BASE, &demo_env()).unwrap();
    for printed in [format!("{c:?}"), format!("{c:#?}")] {
        assert!(!printed.contains(TOKEN), "token leaked: {printed}");
        assert!(
            !printed.contains(BIND_PW),
            "bind password leaked: {printed}"
        );
        assert!(printed.contains("bind_password: ***"), "{printed}");
    }
    // The values are still there for their consumers.
    assert_eq!(c.tokens[0].secret.expose(), TOKEN);
    assert_eq!(c.directory.bind_password.expose(), BIND_PW);
}

#[test]
fn fixed_env_answers_only_what_it_holds() {
    let env = env_with(&[("A", "1")], &[("/x", "file")]);
    assert_eq!(env.var("A").as_deref(), Some("1"));
    assert_eq!(env.var("B"), None);
    assert_eq!(env.read_file(Path::new("/x")).unwrap(), "file");
    assert_eq!(
        env.read_file(Path::new("/y")).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
}

// ---------------------------------------------------------------------------
// Operations: limits, quotas, admin, logs, audit, reload

#[test]
fn operations_sections_have_documented_defaults() {
    let c = load_str(BASE, &demo_env()).unwrap();
    assert_eq!(c.limits, LimitSettings::default());
    assert_eq!(c.limits.max_connections, 1024);
    assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.max_requests_per_connection, Some(10_000));
    assert_eq!(c.limits.http2_max_concurrent_streams, 64);
    assert_eq!(c.directory.max_in_flight, 32, "8 × pool_size");
    assert_eq!(c.directory.search_connections, 64);
    assert_eq!(c.directory.max_queued, 256);
    assert_eq!(c.directory.queue_timeout, Duration::from_millis(1000));
    let r = c.rate_limits.expect("quotas are on by default");
    assert_eq!(r, RateLimitSettings::default());
    // Entra ID sends up to 25 requests/s per tenant: the per-token defaults stay above it.
    for q in [r.token_read, r.token_write] {
        let q = q.unwrap();
        assert!(q.per_second.get() >= 25 && q.burst > q.per_second, "{q:?}");
    }
    assert!(c.admin.is_none());
    assert_eq!(c.log.format, LogFormat::Human);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.audit.output, AuditOutput::Log);
    assert_eq!(c.reload.watch, None);
}

#[test]
fn operations_sections_are_read() {
    let text = format!(
        r#"{BASE}
[limits]
max_connections = 10
max_requests_per_connection = 0
shutdown_grace_secs = 0

[rate_limits]
trusted_proxies = ["10.0.0.0/8", "::1"]
token_write = {{ per_second = 30 }}
global_read = {{ per_second = 0 }}

[admin]
address = "127.0.0.1:9464"

[log]
format = "json"
level = "debug"

[audit]
output = "file"
file = "audit.jsonl"
redact_attributes = ["employeeNumber"]

[reload]
watch = true
"#
    );
    let c = load_str(&text, &demo_env()).unwrap();
    assert_eq!(c.limits.max_connections, 10);
    assert_eq!(
        c.limits.max_requests_per_connection, None,
        "0 means no limit"
    );
    assert_eq!(c.limits.shutdown_grace, Duration::ZERO);
    let r = c.rate_limits.unwrap();
    assert_eq!(r.trusted_proxies.len(), 2);
    let w = r.token_write.unwrap();
    assert_eq!(
        (w.per_second.get(), w.burst.get()),
        (30, 60),
        "burst defaults to 2×"
    );
    assert_eq!(r.global_read, None, "per_second = 0 turns the quota off");
    assert_eq!(
        c.admin.unwrap().address,
        "127.0.0.1:9464".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(
        c.audit.output,
        AuditOutput::File(PathBuf::from("/etc/gw/audit.jsonl"))
    );
    assert_eq!(c.audit.redact_attributes, vec!["employeenumber"]);
    assert_eq!(c.reload.watch, Some(Duration::from_secs(5)));
}

#[test]
fn rate_limits_can_be_turned_off() {
    let c = load_str(
        &format!("{BASE}\n[rate_limits]\nenabled = false\n"),
        &demo_env(),
    )
    .unwrap();
    assert!(c.rate_limits.is_none());
}

#[test]
fn operations_problems_name_their_keys() {
    let text = format!(
        r#"{BASE}
[limits]
max_connections = 0
header_read_timeout_secs = 0
http2_max_concurrent_streams = 0

[rate_limits]
trusted_proxies = ["10.0.0.1/8", "not-an-address"]
token_read = {{ per_second = 10, burst = 0 }}

[admin]
address = "localhost"

[log]
format = "xml"

[audit]
output = "file"
"#
    );
    let p = problems(&text, &demo_env());
    for key in [
        "limits.max_connections",
        "limits.header_read_timeout_secs",
        "limits.http2_max_concurrent_streams",
        "rate_limits.trusted_proxies[0]",
        "rate_limits.trusted_proxies[1]",
        "rate_limits.token_read.burst",
        "admin.address",
        "log.format",
        "audit.file",
    ] {
        problem(&p, key);
    }
    assert!(
        problem(&p, "rate_limits.trusted_proxies[0]")
            .message
            .contains("10.0.0.0/8"),
        "host bits set: the fix is suggested"
    );
    assert!(problem(&p, "log.format").message.contains("json"));
}

#[test]
fn admin_listener_cannot_share_the_scim_address() {
    let text = format!("{BASE}\n[admin]\naddress = \"127.0.0.1:8080\"\n");
    let p = problems(&text, &demo_env());
    assert!(problem(&p, "admin.address")
        .message
        .contains("SCIM listener"));
}

#[test]
fn audit_output_names_must_be_known() {
    let text = format!("{BASE}\n[audit]\noutput = \"syslog\"\n");
    let p = problems(&text, &demo_env());
    assert!(problem(&p, "audit.output").message.contains("stderr"));
    let text = format!("{BASE}\n[audit]\noutput = \"stdout\"\nfile = \"x\"\n");
    problem(&problems(&text, &demo_env()), "audit.file");
}

#[test]
fn reload_sources_name_the_tls_and_secret_files() {
    let text = BASE.replace(
        r#"secret = { env = "SCIM_TOKEN" }"#,
        r#"secret = { file = "token" }"#,
    );
    let env = env_with(
        &[("LDAP_ADMIN_PASSWORD", BIND_PW)],
        &[("/etc/gw/token", TOKEN)],
    );
    let c = load_str(&text, &env).unwrap();
    assert_eq!(c.sources, vec![PathBuf::from("/etc/gw/token")]);
}

#[test]
fn password_methods_are_read_and_unicode_pwd_needs_tls() {
    let with = |method: &str| {
        BASE.replace(
            "[mapping.users]",
            &format!("[mapping.users.password]\ntype = \"{method}\"\n\n[mapping.users]"),
        )
    };
    let c = load_str(&with("password_modify"), &demo_env()).unwrap();
    assert_eq!(
        c.users.password,
        crate::mapping::PasswordMethod::PasswordModify
    );
    let p = problems(&with("unicode_pwd"), &demo_env());
    assert!(problem(&p, "mapping.users.password.type")
        .message
        .contains("ldaps://"));
    let tls = with("unicode_pwd").replace("ldap://127.0.0.1:3389", "ldaps://127.0.0.1:636");
    assert_eq!(
        load_str(&tls, &demo_env()).unwrap().users.password,
        crate::mapping::PasswordMethod::UnicodePwd
    );
    let p = problems(&with("cleartext"), &demo_env());
    assert!(problem(&p, "mapping.users.password.type")
        .message
        .contains("password_modify"));
    // A password attribute cannot be mapped like any other.
    let mapped = format!(
        "{BASE}\n[[mapping.users.attributes]]\nscim = \"title\"\nldap = \"userPassword\"\n"
    );
    let p = problems(&mapped, &demo_env());
    assert!(
        p.iter().any(|p| p.message.contains("holds passwords")),
        "{p:?}"
    );
}

#[test]
fn several_directory_servers() {
    let text = BASE.replace(
        "url = \"ldap://127.0.0.1:3389\"",
        "urls = [\"ldaps://dc1:636\", \"ldaps://dc2:636\"]\nread_urls = [\"ldaps://replica:636\"]",
    );
    let c = load_str(&text, &demo_env()).unwrap();
    assert_eq!(c.directory.urls, ["ldaps://dc1:636", "ldaps://dc2:636"]);
    assert_eq!(c.directory.url, "ldaps://dc1:636");
    assert_eq!(c.directory.read_urls, ["ldaps://replica:636"]);
    let both = BASE.replace(
        "url = \"ldap://127.0.0.1:3389\"",
        "url = \"ldap://a:389\"\nurls = [\"ldap://b:389\"]",
    );
    assert!(problem(&problems(&both, &demo_env()), "directory.urls")
        .message
        .contains("not both"));
    let bad = BASE.replace(
        "url = \"ldap://127.0.0.1:3389\"",
        "urls = [\"ldap://a:389\", \"http://b\"]",
    );
    problem(&problems(&bad, &demo_env()), "directory.urls[1]");
    let none = BASE.replace("url = \"ldap://127.0.0.1:3389\"", "");
    problem(&problems(&none, &demo_env()), "directory.url");
    let local = BASE.replace("ldap://127.0.0.1:3389", "ldapi://%2Frun%2Fslapd.sock");
    assert!(load_str(&local, &demo_env()).is_ok());
}

#[test]
fn password_modify_never_crosses_a_network_in_clear() {
    let with = |url: &str| {
        BASE.replace("ldap://127.0.0.1:3389", url).replace(
            "[mapping.users]",
            "[mapping.users.password]\ntype = \"password_modify\"\n\n[mapping.users]",
        )
    };
    for ok in [
        "ldap://127.0.0.1:3389",
        "ldap://localhost:389",
        "ldap://[::1]:389",
        "ldaps://ldap.example.org:636",
        "ldapi://%2Frun%2Fslapd%2Fldapi",
    ] {
        assert!(load_str(&with(ok), &demo_env()).is_ok(), "{ok}");
    }
    let p = problems(&with("ldap://ldap.example.org:389"), &demo_env());
    assert!(problem(&p, "mapping.users.password.type")
        .message
        .contains("in clear"));
}
