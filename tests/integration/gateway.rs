//! Fixture: a real slapd, the gateway configured from config/gateway.toml in front of it on a
//! free port with a fresh self-signed certificate, and an HTTPS client that trusts it.

use crate::slapd::{Slapd, SUFFIX};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use scim_ldap_gateway::config::{Config, FixedEnv};
use scim_ldap_gateway::http::server::Gateway;
use serde_json::Value;
use std::path::PathBuf;

pub const TOKEN: &str = "test-token-0123456789abcdef-0123456789";

/// A slapd of its own with a gateway in front of it. Derefs to the gateway's client.
pub struct TestGateway {
    pub slapd: Slapd,
    gateway: RunningGateway,
}

impl std::ops::Deref for TestGateway {
    type Target = RunningGateway;
    fn deref(&self) -> &RunningGateway {
        &self.gateway
    }
}

/// The gateway (demo config pointed at some slapd) and an HTTPS client that trusts its certificate.
pub struct RunningGateway {
    /// `https://127.0.0.1:<port>/scim/v2`
    pub base: String,
    pub client: reqwest::Client,
    pub ca_pem: Vec<u8>,
    /// `http://127.0.0.1:<port>` of the admin listener (/metrics, /healthz, /readyz).
    pub admin: String,
    /// Kept so the gateway lives as long as the fixture; its tasks end with the test's runtime.
    _gateway: Gateway,
    _dir: tempfile::TempDir,
}

/// A response: status, headers, parsed JSON body (Null when empty).
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub version: reqwest::Version,
}

impl Resp {
    /// The ids of a ListResponse's `Resources`, in the order answered.
    #[track_caller]
    pub fn resource_ids(&self) -> Vec<String> {
        self.body["Resources"]
            .as_array()
            .unwrap_or_else(|| panic!("no Resources: {}", self.body))
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Assert the status, printing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Assert the status is one of `allowed` (e.g. a PATCH answered 200 or 204).
    #[track_caller]
    pub fn expect_status_in(self, allowed: &[u16]) -> Resp {
        assert!(
            allowed.contains(&self.status.as_u16()),
            "unexpected status {}; body: {}",
            self.status,
            self.body
        );
        self
    }

    /// The SCIM error checks every error response must pass.
    #[track_caller]
    pub fn expect_error(self, status: u16, scim_type: Option<&str>) -> Resp {
        let r = self.expect(status);
        assert_eq!(
            r.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "not a SCIM error: {}",
            r.body
        );
        assert_eq!(
            r.body["status"],
            Value::from(status.to_string()),
            "status must be a string"
        );
        assert_eq!(
            r.body["scimType"].as_str(),
            scim_type,
            "scimType in {}",
            r.body
        );
        r
    }
}

pub fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The demo config pointed at `slapd`, listening on a free port, with cert/key in `dir`.
pub fn demo_config_text(slapd: &Slapd, dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(repo_file("config/gateway.toml")).unwrap();
    text.replace("127.0.0.1:8443", "127.0.0.1:0")
        .replace("127.0.0.1:9464", "127.0.0.1:0")
        .replace("ldap://127.0.0.1:3389", &slapd.url)
        .replace(
            "../.run/tls/gateway.crt",
            &dir.join("gw.crt").display().to_string(),
        )
        .replace(
            "../.run/tls/gateway.key",
            &dir.join("gw.key").display().to_string(),
        )
}

/// A production preset (`config/<name>`) made runnable in a test: free loopback ports, the
/// certificate pair in `dir`, the token from `SCIM_TOKEN`, the bind password from
/// `password_env`, audit records to the log. Every replaced line must be in the preset.
pub fn localized_preset(name: &str, dir: &std::path::Path, password_env: &str) -> String {
    let mut text = std::fs::read_to_string(repo_file(&format!("config/{name}"))).unwrap();
    for (from, to) in [
        ("0.0.0.0:8443", "127.0.0.1:0".to_string()),
        ("127.0.0.1:9464", "127.0.0.1:0".to_string()),
        (
            "/etc/scim-ldap-gateway/tls/gateway.crt",
            dir.join("gw.crt").display().to_string(),
        ),
        (
            "/etc/scim-ldap-gateway/tls/gateway.key",
            dir.join("gw.key").display().to_string(),
        ),
        (
            r#"secret = { file = "/etc/scim-ldap-gateway/secrets/entra-token" }"#,
            r#"secret = { env = "SCIM_TOKEN" }"#.to_string(),
        ),
        (
            r#"bind_password = { file = "/etc/scim-ldap-gateway/secrets/bind-password" }"#,
            format!(r#"bind_password = {{ env = "{password_env}" }}"#),
        ),
        (
            "output = \"file\"\nfile = \"/var/log/scim-ldap-gateway/audit.jsonl\"",
            "output = \"log\"".to_string(),
        ),
    ] {
        assert!(text.contains(from), "config/{name} no longer has {from:?}");
        text = text.replace(from, &to);
    }
    text
}

/// `SCIM_TOKEN` and the bind password in `password_env`, for a localized preset.
pub fn preset_env(password_env: &str, password: &str) -> FixedEnv {
    let mut env = FixedEnv::default();
    env.vars.insert("SCIM_TOKEN".into(), TOKEN.into());
    env.vars.insert(password_env.into(), password.into());
    env
}

pub fn env_for(slapd: &Slapd) -> FixedEnv {
    let mut env = FixedEnv::default();
    env.vars.insert("SCIM_TOKEN".into(), TOKEN.into());
    env.vars
        .insert("LDAP_ADMIN_PASSWORD".into(), slapd.admin_password.clone());
    env
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        Self::start_with(|t| t).await
    }

    /// Start with the demo config after `edit` has changed its text.
    pub async fn start_with(edit: impl FnOnce(String) -> String) -> TestGateway {
        Self::start_on(Slapd::start(), edit).await
    }

    /// The gateway in front of a slapd the test prepared.
    pub async fn start_on(slapd: Slapd, edit: impl FnOnce(String) -> String) -> TestGateway {
        let gateway = RunningGateway::start(&slapd, edit).await;
        TestGateway { slapd, gateway }
    }

    /// The directory entry for a SCIM id, read directly from slapd (None if absent).
    pub async fn entry_by_id(&self, id: &str) -> Option<ldap3::SearchEntry> {
        let found = self
            .slapd
            .find(SUFFIX, &format!("(entryUUID={})", ldap3::ldap_escape(id)))
            .await;
        assert!(found.len() <= 1);
        found.into_iter().next()
    }

    /// The id of a seeded user.
    pub async fn seeded_id(&self, uid: &str) -> String {
        let e = self.slapd.entry(&people_dn(uid)).await.unwrap();
        first(&e, "entryUUID").unwrap()
    }
}

impl RunningGateway {
    /// LDAP requests the gateway has sent so far.
    pub fn directory_operations(&self) -> u64 {
        self._gateway.directory_operations()
    }

    /// The running gateway (for in-process reloads).
    pub fn server(&self) -> &Gateway {
        &self._gateway
    }

    /// The folder holding the fixture's certificate and key.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The admin listener's `/metrics` exposition.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one series in `/metrics`, written as exposed (`name{label="v"}`); 0 when
    /// absent.
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits up to 5 s until the gateway has one of its own search connections open (one is
    /// opened in the background when a search finds none idle).
    pub async fn until_search_connection(&self) {
        let open = "scim_gateway_directory_search_connections{state=\"open\"}";
        let opened = eventually(std::time::Duration::from_secs(5), || async {
            self.metric(open).await >= 1.0
        })
        .await;
        assert!(
            opened,
            "no search connection opened:\n{}",
            self.metrics().await
        );
    }

    /// The demo config pointed at `slapd`, edited by `edit`, on a free port with a fresh certificate.
    pub async fn start(slapd: &Slapd, edit: impl FnOnce(String) -> String) -> RunningGateway {
        Self::from_config(|dir| edit(demo_config_text(slapd, dir)), &env_for(slapd)).await
    }

    /// A gateway from the config text `make` returns; it gets the folder where the fixture's
    /// certificate (`gw.crt`, `gw.key`) lies.
    pub async fn from_config(
        make: impl FnOnce(&std::path::Path) -> String,
        env: &FixedEnv,
    ) -> RunningGateway {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        let ca_pem = ck.cert.pem().into_bytes();
        std::fs::write(dir.path().join("gw.crt"), &ca_pem).unwrap();
        std::fs::write(dir.path().join("gw.key"), ck.key_pair.serialize_pem()).unwrap();
        let text = make(dir.path());
        let config = Config::from_toml(&text, dir.path(), env).unwrap_or_else(|e| panic!("{e}"));
        let scheme = if config.listeners[0].tls {
            "https"
        } else {
            "http"
        };
        let gateway = Gateway::start(config, prometheus::Registry::new())
            .await
            .unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        RunningGateway {
            base: format!("{scheme}://{}/scim/v2", gateway.addresses[0]),
            client,
            ca_pem,
            admin: gateway
                .admin_address
                .map(|a| format!("http://{a}"))
                .unwrap_or_default(),
            _gateway: gateway,
            _dir: dir,
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Resp {
        self.send_with(
            self.client.request(method, format!("{}{path}", self.base)),
            body,
        )
        .await
    }

    pub async fn send_with(&self, req: reqwest::RequestBuilder, body: Option<&Value>) -> Resp {
        let mut req = req.bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let version = resp.version();
        let bytes = resp.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!("non-JSON body ({e}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        Resp {
            status,
            headers,
            body,
            version,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None).await
    }

    /// GET /Users with a filter, URL-encoded the way Entra does (spaces as %20).
    pub async fn filter(&self, filter: &str) -> Resp {
        let q: String = url_encode(filter);
        self.get(&format!("/Users?filter={q}")).await
    }

    /// Create a user with a minimal body and return its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        let r = self
            .post(
                "/Users",
                &serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "name": {"givenName": "Given", "familyName": "Family"},
                    "emails": [{"type": "work", "value": format!("{}@example.org", user_name.len()), "primary": true}],
                    "active": true
                }),
            )
            .await
            .expect(201);
        r.body["id"].as_str().unwrap().to_string()
    }
}

pub fn people_dn(uid: &str) -> String {
    format!("uid={uid},ou=people,{SUFFIX}")
}

/// First value of an attribute of an entry, attribute name case-insensitive.
pub fn first(e: &ldap3::SearchEntry, attr: &str) -> Option<String> {
    values(e, attr).into_iter().next()
}

pub fn values(e: &ldap3::SearchEntry, attr: &str) -> Vec<String> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Polls `check` every 20 ms until it holds or `within` has passed; whether it held. For what
/// the directory does after answering (refint updates groups in a background task).
pub async fn eventually<F, Fut>(within: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
