//! The `serve` binary as an operator runs it: every metric family moves and promtool accepts
//! the exposition; SIGHUP rotates tokens and certificates over live connections and refuses bad
//! files; SIGTERM drains in-flight requests within a bounded time; and no secret reaches stdout,
//! stderr or the audit file.

use crate::gateway::{demo_config_text, first, people_dn, url_encode, TOKEN};
use crate::slapd::Slapd;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const POLL: Duration = Duration::from_millis(50);

/// A self-signed certificate for 127.0.0.1, written where the demo config expects it.
struct ServerCert {
    pem: String,
    der: Vec<u8>,
}

/// notAfter of the certificate `ServeProcess::start` writes (2096-10-02T07:06:40Z).
const FIRST_NOT_AFTER: u64 = 4_000_000_000;

/// Write a certificate valid until `not_after` (Unix seconds) and its key.
fn write_server_cert(dir: &Path, not_after: u64) -> ServerCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(not_after);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("gw.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("gw.key"), key.serialize_pem()).unwrap();
    ServerCert {
        pem: cert.pem(),
        der: cert.der().to_vec(),
    }
}

/// `text` with the one line starting with `prefix` replaced by `new`: a drifted demo config
/// fails here instead of silently running the test with other settings.
fn replace_line(text: &str, prefix: &str, new: &str) -> String {
    let mut hits = 0;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with(prefix) {
            hits += 1;
            out.push_str(new);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert_eq!(
        hits, 1,
        "expected one line starting with {prefix:?} in:\n{text}"
    );
    out
}

/// Two distinct free loopback ports: bound together so they differ, then released for the binary.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// The `[[listeners]]` and `[admin]` addresses set to the given ports; no other line changes.
fn set_ports(text: &str, scim: u16, admin: u16) -> String {
    const ANY_PORT: &str = r#"address = "127.0.0.1:0""#;
    assert_eq!(text.matches(ANY_PORT).count(), 2, "{text}");
    let mut section = "";
    let mut replaced = Vec::new();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            section = line.trim();
        }
        if line == ANY_PORT {
            let port = match section {
                "[[listeners]]" => scim,
                "[admin]" => admin,
                other => panic!("unexpected address line in section {other}"),
            };
            replaced.push(section);
            out.push_str(&format!(r#"address = "127.0.0.1:{port}""#));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert_eq!(replaced, ["[[listeners]]", "[admin]"]);
    out
}

/// `scim-ldap-gateway serve` in a folder of its own (config, certificate, logs). It is killed
/// with SIGKILL when dropped, so a failing test leaves nothing running.
struct ServeProcess {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    scim: SocketAddr,
    /// `https://127.0.0.1:<port>/scim/v2`
    base: String,
    /// `http://127.0.0.1:<port>` of the admin listener.
    admin: String,
    cert: ServerCert,
    admin_client: reqwest::Client,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeProcess {
    /// Start the binary from the demo config pointed at `slapd`, after `edit`, with `SCIM_TOKEN`
    /// and `LDAP_ADMIN_PASSWORD` set and `env` on top; returns once `/healthz` answers.
    async fn start(
        slapd: &Slapd,
        dir: tempfile::TempDir,
        edit: impl FnOnce(String) -> String,
        env: &[(&str, &str)],
    ) -> ServeProcess {
        let cert = write_server_cert(dir.path(), FIRST_NOT_AFTER);
        let (scim_port, admin_port) = free_ports();
        let text = edit(set_ports(
            &demo_config_text(slapd, dir.path()),
            scim_port,
            admin_port,
        ));
        let config = dir.path().join("gateway.toml");
        std::fs::write(&config, text).unwrap();
        let log = |name: &str| Stdio::from(std::fs::File::create(dir.path().join(name)).unwrap());
        let child = Command::new(env!("CARGO_BIN_EXE_scim-ldap-gateway"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .env("SCIM_TOKEN", TOKEN)
            .env("LDAP_ADMIN_PASSWORD", &slapd.admin_password)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log("stdout.log"))
            .stderr(log("stderr.log"))
            .spawn()
            .expect("cannot run the gateway binary");
        let scim: SocketAddr = format!("127.0.0.1:{scim_port}").parse().unwrap();
        let mut gw = ServeProcess {
            child,
            dir,
            config,
            scim,
            base: format!("https://{scim}/scim/v2"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            cert,
            admin_client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        gw.wait_healthy().await;
        gw
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the gateway exited ({status}) before serving\n{}",
                    self.output()
                );
            }
            let health = self
                .admin_client
                .get(format!("{}/healthz", self.admin))
                .send()
                .await;
            if health.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz did not answer within 20 s\n{}",
                self.output()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The binary's stdout and stderr so far, for assertion messages.
    fn output(&self) -> String {
        format!(
            "--- gateway stdout ---\n{}\n--- gateway stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// The stdout log once it contains `needle` (or after 5 s). The reload metric moves before
    /// the log line is written, so a test that saw the metric polls for the line.
    async fn stdout_containing(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.stdout();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Send a signal (`HUP`, `TERM`) to the process.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name} failed: {status}");
    }

    /// Waits for the process to exit; its status and how long it took.
    async fn wait_exit(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < within,
                "the gateway did not exit within {within:?}\n{}",
                self.output()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// A client for the SCIM listener that trusts the gateway's first certificate.
    fn scim_client(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.cert.pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
    }

    async fn metrics(&self) -> Exposition {
        let r = self
            .admin_client
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap_or_else(|e| panic!("cannot scrape /metrics: {e}\n{}", self.output()));
        assert_eq!(r.status(), 200);
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        Exposition::parse(r.text().await.unwrap())
    }

    /// Scrapes until `done` holds; panics after `within` with the last scrape and the logs.
    async fn metrics_until(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&Exposition) -> bool,
    ) -> Exposition {
        let started = Instant::now();
        loop {
            let m = self.metrics().await;
            if done(&m) {
                return m;
            }
            assert!(
                started.elapsed() < within,
                "not within {within:?}: {what}\n--- last scrape ---\n{}\n{}",
                m.text,
                self.output()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// One sample of the text exposition.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A `/metrics` scrape, parsed.
struct Exposition {
    text: String,
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: String) -> Exposition {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).unwrap_or_else(|| panic!("malformed sample line {l:?}")))
            .collect();
        Exposition { text, samples }
    }

    /// The value of the sample named `name` with exactly these labels (in any order).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<(&str, &str)> = labels.to_vec();
        want.sort();
        self.samples
            .iter()
            .find(|s| {
                let mut have: Vec<(&str, &str)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                have.sort();
                s.name == name && have == want
            })
            .map(|s| s.value)
    }

    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{}", self.text))
    }

    /// The `# TYPE` of a family.
    fn kind(&self, family: &str) -> Option<&str> {
        let prefix = format!("# TYPE {family} ");
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }
}

/// `name{a="x",b="y"} value [timestamp]`, with the exposition's escapes in label values.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        loop {
            let (start, c) = chars.next()?;
            if c == '}' {
                rest = &inner[start + 1..];
                break;
            }
            if c == ',' {
                continue;
            }
            let eq = start + inner[start..].find('=')?;
            let key = inner[start..eq].to_string();
            while chars.next()?.0 < eq {}
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.push((key, value));
        }
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `promtool check metrics` on an exposition; the test fails if promtool is missing or objects.
fn promtool_accepts(exposition: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}); this test needs it: install the Debian package \
                 `prometheus` (it provides /usr/bin/promtool)"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- exposition ---\n{exposition}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The SCIM requests a test sent, keyed by the labels the gateway must count them under
/// (resource, method, status class).
#[derive(Default)]
struct Tally(BTreeMap<(&'static str, &'static str, String), u64>);

impl Tally {
    fn record(&mut self, resource: &'static str, method: &'static str, status: u16) {
        *self
            .0
            .entry((resource, method, format!("{}xx", status / 100)))
            .or_default() += 1;
    }

    /// Requests per (resource, method), whatever their status.
    fn per_route(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        let mut out = BTreeMap::new();
        for ((resource, method, _), n) in &self.0 {
            *out.entry((*resource, *method)).or_default() += n;
        }
        out
    }
}

/// A SCIM client that tallies what it sends.
struct Scim {
    client: reqwest::Client,
    base: String,
    tally: Tally,
}

impl Scim {
    /// Send one request with the right token; status, headers and JSON body (Null when empty).
    async fn send(
        &mut self,
        resource: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let label = match method.as_str() {
            "GET" => "GET",
            "POST" => "POST",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            other => panic!("the tally does not know {other}"),
        };
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let (status, headers, body) = response(req.send().await.unwrap()).await;
        self.tally.record(resource, label, status);
        (status, headers, body)
    }
}

async fn response(r: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("non-JSON body ({e}): {}", String::from_utf8_lossy(&bytes)))
    };
    (status, headers, body)
}

fn user(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Opal", "familyName": "Operator"},
        "emails": [{"type": "work", "value": format!("{user_name}@example.org"), "primary": true}],
        "active": true
    })
}

fn filter_path(user_name: &str) -> String {
    format!(
        "/Users?filter={}",
        url_encode(&format!("userName eq \"{user_name}\""))
    )
}

#[tokio::test]
async fn metrics_families_move_and_promtool_accepts_them() {
    const HTTP_REQUESTS: &str = "scim_gateway_http_requests_total";
    const HTTP_DURATION: &str = "scim_gateway_http_request_duration_seconds";
    const IN_FLIGHT: &str = "scim_gateway_http_requests_in_flight";
    const CONNECTIONS: &str = "scim_gateway_http_connections_open";
    const RATE_LIMITED: &str = "scim_gateway_rate_limited_requests_total";
    const DIR_OPS: &str = "scim_gateway_directory_operations_total";
    const DIR_DURATION: &str = "scim_gateway_directory_operation_duration_seconds";
    const POOL: &str = "scim_gateway_directory_pool_connections";
    const RECONNECTS: &str = "scim_gateway_directory_reconnects_total";
    const SEARCH_CONNS: &str = "scim_gateway_directory_search_connections";
    const UP: &str = "scim_gateway_directory_up";
    const TLS_FAILURES: &str = "scim_gateway_tls_handshake_failures_total";
    const RELOADS: &str = "scim_gateway_config_reloads_total";
    const BUILD: &str = "scim_gateway_build_info";
    const USER_NAME: &str = "metrics-probe-4711";

    let mut slapd = Slapd::start();
    let gw = ServeProcess::start(
        &slapd,
        tempfile::tempdir().unwrap(),
        |t| {
            replace_line(
                &t,
                "token_write = ",
                "token_write = { per_second = 1, burst = 2 }",
            )
        },
        &[],
    )
    .await;
    let pool_of_4 = |m: &Exposition| {
        m.get(POOL, &[("state", "open")]) == Some(4.0)
            && m.get(POOL, &[("state", "idle")]) == Some(4.0)
    };
    let m = gw
        .metrics_until(
            "the 4 pooled connections are open",
            Duration::from_secs(10),
            pool_of_4,
        )
        .await;
    assert_eq!(m.value(RECONNECTS, &[]), 0.0);
    assert_eq!(m.value(TLS_FAILURES, &[("reason", "error")]), 0.0);
    assert_eq!(m.value(RELOADS, &[("outcome", "success")]), 0.0);
    assert_eq!(m.value(RELOADS, &[("outcome", "failure")]), 0.0);
    assert_eq!(m.value(RATE_LIMITED, &[("quota", "token_write")]), 0.0);

    // HTTP/1.1 only, so the client keeps exactly one connection that the gauge can be held to.
    let mut scim = Scim {
        client: gw.scim_client().http1_only().build().unwrap(),
        base: gw.base.clone(),
        tally: Tally::default(),
    };

    // Writes: one add that succeeds, one the directory refuses (the RDN exists already).
    let (status, _, body) = scim
        .send("Users", Method::POST, "/Users", Some(user(USER_NAME)))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let entry = slapd.entry(&people_dn(USER_NAME)).await.unwrap();
    assert_eq!(first(&entry, "entryUUID").as_deref(), Some(id.as_str()));
    let (status, _, body) = scim
        .send("Users", Method::POST, "/Users", Some(user(USER_NAME)))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["scimType"], "uniqueness");

    // Reads, two of them with an id and a DN in the path: neither may become a label value.
    let (status, _, body) = scim
        .send("Users", Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userName"], USER_NAME);
    let dn = people_dn(USER_NAME);
    let (status, _, _) = scim
        .send("Users", Method::GET, &format!("/Users/{dn}"), None)
        .await;
    assert!(
        (400..500).contains(&status),
        "GET /Users/<dn> gave {status}"
    );
    let (status, _, _) = scim
        .send("other", Method::GET, &format!("/{dn}"), None)
        .await;
    assert_eq!(status, 404);

    // The write quota (1/s, burst 2) is spent: quick POSTs are refused with 429. Their bodies
    // lack a userName, so one the refill lets through is a 400 that never reaches the directory.
    let mut limited = 0;
    for _ in 0..4 {
        let (status, headers, body) = scim
            .send(
                "Users",
                Method::POST,
                "/Users",
                Some(json!({"schemas": []})),
            )
            .await;
        match status {
            429 => {
                limited += 1;
                assert!(headers.contains_key("retry-after"), "{headers:?}");
            }
            400 => {}
            other => panic!("unexpected {other} from a quick POST: {body}"),
        }
    }
    assert!(limited >= 2, "only {limited} of 4 quick POSTs were refused");

    // A request held by a frozen directory is in flight, then is not.
    slapd.pause();
    let in_flight = {
        let client = scim.client.clone();
        let url = format!("{}{}", gw.base, filter_path(USER_NAME));
        tokio::spawn(async move {
            response(client.get(url).bearer_auth(TOKEN).send().await.unwrap()).await
        })
    };
    // The request is counted as it arrives, its directory operation a moment later.
    gw.metrics_until(
        "one request and its directory operation in flight",
        Duration::from_secs(5),
        |m| {
            m.get(IN_FLIGHT, &[]) == Some(1.0)
                && m.get("scim_gateway_directory_operations_in_flight", &[]) == Some(1.0)
        },
    )
    .await;
    slapd.resume();
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the held request did not complete after SIGCONT")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totalResults"], 1);
    scim.tally.record("Users", "GET", status);

    // A directory outage: the pool empties and the directory is down, then it reconnects.
    slapd.kill();
    let outage = gw
        .metrics_until("the directory is seen down", Duration::from_secs(5), |m| {
            m.get(UP, &[]) == Some(0.0) && m.get(POOL, &[("state", "open")]) == Some(0.0)
        })
        .await;
    assert_eq!(outage.value(RECONNECTS, &[]), 0.0);
    let (status, headers, body) = scim
        .send("Users", Method::GET, &filter_path(USER_NAME), None)
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    slapd.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = scim
            .send("Users", Method::GET, &filter_path(USER_NAME), None)
            .await;
        if status == 200 {
            assert_eq!(body["totalResults"], 1, "{body}");
            break;
        }
        assert_eq!(status, 503, "while the directory comes back: {body}");
        assert!(
            Instant::now() < deadline,
            "not served within 10 s of the restart\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.metrics_until(
        "the directory is up with 4 connections again",
        Duration::from_secs(10),
        |m| m.get(UP, &[]) == Some(1.0) && pool_of_4(m),
    )
    .await;

    // Plain text to the TLS port: a failed handshake, and the gateway hangs up.
    let mut plain = TcpStream::connect(gw.scim).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
        .await
        .expect("the gateway kept a plain-text connection to its TLS port open")
        .ok();
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered on the TLS port"
    );
    gw.metrics_until(
        "the TLS handshake failure is counted",
        Duration::from_secs(5),
        |m| m.get(TLS_FAILURES, &[("reason", "error")]) == Some(1.0),
    )
    .await;

    // One reload of the unchanged file, one of a file that is not TOML.
    gw.signal("HUP");
    gw.metrics_until("a successful reload", Duration::from_secs(5), |m| {
        m.get(RELOADS, &[("outcome", "success")]) == Some(1.0)
    })
    .await;
    let valid = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(&gw.config, format!("{valid}\nthis is not toml\n")).unwrap();
    gw.signal("HUP");
    gw.metrics_until("a refused reload", Duration::from_secs(5), |m| {
        m.get(RELOADS, &[("outcome", "failure")]) == Some(1.0)
    })
    .await;

    let m = gw.metrics().await;
    for (family, kind) in [
        (HTTP_REQUESTS, "counter"),
        (HTTP_DURATION, "histogram"),
        (IN_FLIGHT, "gauge"),
        (CONNECTIONS, "gauge"),
        (RATE_LIMITED, "counter"),
        (DIR_OPS, "counter"),
        (DIR_DURATION, "histogram"),
        (POOL, "gauge"),
        (RECONNECTS, "counter"),
        (UP, "gauge"),
        (TLS_FAILURES, "counter"),
        (RELOADS, "counter"),
        (BUILD, "gauge"),
    ] {
        assert_eq!(m.kind(family), Some(kind), "{family} in:\n{}", m.text);
    }

    // Every request is counted once under its labels, and timed once.
    let sent: u64 = scim.tally.0.values().sum();
    for ((resource, method, class), n) in &scim.tally.0 {
        let labels = [
            ("resource", *resource),
            ("method", *method),
            ("status_class", class.as_str()),
        ];
        assert_eq!(m.value(HTTP_REQUESTS, &labels), *n as f64, "{labels:?}");
    }
    let counted: f64 = m
        .samples
        .iter()
        .filter(|s| s.name == HTTP_REQUESTS)
        .map(|s| s.value)
        .sum();
    assert_eq!(counted, sent as f64, "requests counted that were not sent");
    assert_eq!(
        m.value(
            HTTP_REQUESTS,
            &[
                ("resource", "Users"),
                ("method", "POST"),
                ("status_class", "2xx")
            ]
        ),
        1.0
    );
    for ((resource, method), n) in scim.tally.per_route() {
        let route = [("resource", resource), ("method", method)];
        let count = format!("{HTTP_DURATION}_count");
        assert_eq!(m.value(&count, &route), n as f64, "{route:?}");
        let inf = [("resource", resource), ("method", method), ("le", "+Inf")];
        assert_eq!(m.value(&format!("{HTTP_DURATION}_bucket"), &inf), n as f64);
        assert!(m.value(&format!("{HTTP_DURATION}_sum"), &route) > 0.0);
    }
    assert_eq!(m.value(IN_FLIGHT, &[]), 0.0);
    assert_eq!(
        m.value(CONNECTIONS, &[]),
        1.0,
        "the one HTTP/1.1 connection"
    );
    assert_eq!(
        m.value(RATE_LIMITED, &[("quota", "token_write")]),
        limited as f64
    );
    for quota in [
        "global_read",
        "global_write",
        "token_read",
        "unauthenticated_ip",
    ] {
        assert_eq!(m.value(RATE_LIMITED, &[("quota", quota)]), 0.0, "{quota}");
    }

    assert_eq!(
        m.value(DIR_OPS, &[("operation", "add"), ("result", "success")]),
        1.0
    );
    assert_eq!(
        m.value(
            DIR_OPS,
            &[("operation", "add"), ("result", "entryAlreadyExists")]
        ),
        1.0
    );
    assert!(m.value(DIR_OPS, &[("operation", "search"), ("result", "success")]) >= 3.0);
    let reconnects = m.value(RECONNECTS, &[]);
    assert!(reconnects > 0.0, "no reconnect counted after the restart");
    // Every bind after a slot's first is a reconnect or opens one of the gateway's own search
    // connections. Each of those is open now or was closed (found broken by a search, or no
    // longer on a server the slots use after the outage), and each was opened for a search that
    // found none idle: at most one per search sent.
    let binds = m.value(DIR_OPS, &[("operation", "bind"), ("result", "success")]);
    let opened = binds - 4.0 - reconnects;
    let searching = m.value(SEARCH_CONNS, &[("state", "open")]);
    let searches: f64 = m
        .samples
        .iter()
        .filter(|s| {
            s.name == DIR_OPS
                && s.labels
                    .iter()
                    .any(|(k, v)| k == "operation" && v == "search")
        })
        .map(|s| s.value)
        .sum();
    assert!(
        opened >= searching && opened <= searches,
        "{binds} binds, {reconnects} reconnects: {opened} search connections opened, {searching} \
         open, {searches} searches\n{}",
        m.text
    );
    assert!(
        m.value(SEARCH_CONNS, &[("state", "idle")]) <= searching,
        "{}",
        m.text
    );
    assert_eq!(
        m.value(&format!("{DIR_DURATION}_count"), &[("operation", "add")]),
        2.0
    );
    assert_eq!(
        m.value(
            &format!("{DIR_DURATION}_bucket"),
            &[("operation", "add"), ("le", "+Inf")]
        ),
        2.0
    );
    assert!(pool_of_4(&m), "{}", m.text);
    assert_eq!(m.value(UP, &[]), 1.0);
    assert_eq!(m.value(TLS_FAILURES, &[("reason", "error")]), 1.0);
    assert_eq!(m.value(TLS_FAILURES, &[("reason", "timeout")]), 0.0);
    assert_eq!(m.value(RELOADS, &[("outcome", "success")]), 1.0);
    assert_eq!(m.value(RELOADS, &[("outcome", "failure")]), 1.0);
    assert_eq!(
        m.value(BUILD, &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );

    // No user name, id or DN anywhere: label values come from fixed sets.
    for s in &m.samples {
        for (k, v) in &s.labels {
            assert!(
                !v.contains('=') && !v.contains(',') && !v.contains('@'),
                "{}{{{k}={v:?}}} looks like a DN or a user name",
                s.name
            );
        }
    }
    for leak in [USER_NAME, id.as_str(), "ou=people", "dc=example"] {
        assert!(
            !m.text.contains(leak),
            "{leak:?} in the exposition:\n{}",
            m.text
        );
    }

    promtool_accepts(&m.text);
    eprintln!("{sent} requests, {limited} of them limited; {reconnects} reconnects");
}

/// Client TLS settings that trust one certificate only and offer HTTP/1.1 only.
fn trusting(der: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One HTTP/1.1 connection over TLS, owned by the test: "the same connection" is then a fact,
/// not a connection pool's choice. If the gateway closes it, the next request fails.
struct KeptConnection {
    tls: tokio_rustls::client::TlsStream<TcpStream>,
}

impl KeptConnection {
    /// Connect and complete a handshake that accepts only the certificate `trusted_der`.
    async fn open(addr: SocketAddr, trusted_der: &[u8]) -> std::io::Result<KeptConnection> {
        let tcp = TcpStream::connect(addr).await?;
        let tls = tokio_rustls::TlsConnector::from(trusting(trusted_der))
            .connect(rustls::pki_types::ServerName::from(addr.ip()), tcp)
            .await?;
        Ok(KeptConnection { tls })
    }

    /// The end-entity certificate the gateway presented on this connection.
    fn peer_certificate(&self) -> Vec<u8> {
        self.tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    /// `GET path` with a bearer token; the status and the body.
    async fn get(&mut self, path: &str, token: &str) -> (u16, String) {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Accept: application/scim+json\r\n\r\n"
        );
        self.tls
            .write_all(request.as_bytes())
            .await
            .expect("cannot write on the kept connection");
        self.tls.flush().await.unwrap();
        let mut buf = Vec::new();
        let head_len = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.read_more(&mut buf).await;
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
        assert!(!head.contains("transfer-encoding"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        while buf.len() < head_len + length {
            self.read_more(&mut buf).await;
        }
        let body = String::from_utf8_lossy(&buf[head_len..head_len + length]).into_owned();
        (status, body)
    }

    async fn read_more(&mut self, buf: &mut Vec<u8>) {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), self.tls.read(&mut chunk))
            .await
            .expect("no response on the kept connection within 10 s")
            .expect("reading the kept connection failed");
        assert!(n > 0, "the gateway closed the kept connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn reload_rotates_tokens_and_certificates_without_dropping_connections() {
    const OLD_TOKEN: &str = "rotation-old-token-0123456789abcdef";
    const NEW_TOKEN: &str = "rotation-new-token-fedcba9876543210";
    const RELOADS: &str = "scim_gateway_config_reloads_total";
    const USERS: &str = "/scim/v2/Users?count=1";
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{OLD_TOKEN}\n")).unwrap();
    let gw = ServeProcess::start(
        &slapd,
        dir,
        |t| {
            replace_line(
                &t,
                r#"secret = { env = "SCIM_TOKEN" }"#,
                r#"secret = { file = "token" }"#,
            )
        },
        &[],
    )
    .await;
    let reloads = |outcome: &'static str, n: f64| {
        move |m: &Exposition| m.get(RELOADS, &[("outcome", outcome)]) == Some(n)
    };

    let first_cert = gw.cert.der.clone();
    let mut kept = KeptConnection::open(gw.scim, &first_cert)
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}\n{}", gw.output()));
    let (status, body) = kept.get(USERS, OLD_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(kept.get(USERS, TOKEN).await.0, 401, "only the file's token");
    let m = gw.metrics().await;
    assert_eq!(m.value("scim_gateway_http_connections_open", &[]), 1.0);

    // Token rotation: a new file, SIGHUP.
    std::fs::write(&token_file, format!("{NEW_TOKEN}\n")).unwrap();
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match kept.get(USERS, NEW_TOKEN).await.0 {
            200 => break,
            401 => assert!(
                Instant::now() < deadline,
                "the new token was not accepted within 5 s\n{}",
                gw.output()
            ),
            other => panic!("{other} while waiting for the new token"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kept.get(USERS, OLD_TOKEN).await.0, 401, "the old token");
    let (status, body) = kept.get(USERS, NEW_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    let m = gw
        .metrics_until(
            "one reload",
            Duration::from_secs(5),
            reloads("success", 1.0),
        )
        .await;
    // The kept connection is the only one, and it survived: every request above used it.
    assert_eq!(m.value("scim_gateway_http_connections_open", &[]), 1.0);

    // Certificate rotation: a new pair in the same files, SIGHUP.
    const EXPIRY: &str = "scim_gateway_tls_certificate_expiry_timestamp_seconds";
    assert_eq!(m.value(EXPIRY, &[]), FIRST_NOT_AFTER as f64);
    let second_not_after = FIRST_NOT_AFTER + 86_400;
    let second = write_server_cert(gw.dir.path(), second_not_after);
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut fresh = loop {
        // Trusting only the new certificate: the handshake succeeds once it is served.
        match KeptConnection::open(gw.scim, &second.der).await {
            Ok(c) => break c,
            Err(e) => assert!(
                Instant::now() < deadline,
                "new connections did not get the new certificate within 5 s: {e}\n{}",
                gw.output()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(fresh.peer_certificate(), second.der);
    assert_ne!(second.der, first_cert);
    let (status, body) = fresh.get(USERS, NEW_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        KeptConnection::open(gw.scim, &first_cert).await.is_err(),
        "a new connection still got the old certificate"
    );
    // The connection opened before the rotation keeps its session and keeps working.
    let (status, body) = kept.get(USERS, NEW_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    let m = gw
        .metrics_until(
            "two reloads",
            Duration::from_secs(5),
            reloads("success", 2.0),
        )
        .await;
    // The expiry alert follows the certificate now served.
    assert_eq!(m.value(EXPIRY, &[]), second_not_after as f64);

    // Files that must be refused: the running config stays in force.
    let valid = std::fs::read_to_string(&gw.config).unwrap();
    let not_toml = valid.replacen("[limits]", "[limits", 1);
    assert_ne!(not_toml, valid);
    std::fs::write(&gw.config, not_toml).unwrap();
    gw.signal("HUP");
    gw.metrics_until(
        "a refused reload",
        Duration::from_secs(5),
        reloads("failure", 1.0),
    )
    .await;
    // The error's last line: stdout is line-buffered, so the message arrives line by line.
    let log = gw.stdout_containing("expected `.`, `]`").await;
    assert!(log.contains("configuration reload refused"), "{log}");
    assert!(log.contains("TOML parse error"), "{log}");
    assert!(
        log.contains("| [limits\n"),
        "the refusal quotes the bad line: {log}"
    );
    assert_eq!(kept.get(USERS, NEW_TOKEN).await.0, 200);
    assert_eq!(kept.get(USERS, OLD_TOKEN).await.0, 401);

    // An unknown key, in a file that would also switch the token back to SCIM_TOKEN if applied.
    let unknown_key = replace_line(
        &replace_line(
            &valid,
            r#"secret = { file = "token" }"#,
            r#"secret = { env = "SCIM_TOKEN" }"#,
        ),
        "shutdown_grace_secs = ",
        "shutdown_grace_seconds = 5",
    );
    std::fs::write(&gw.config, unknown_key).unwrap();
    gw.signal("HUP");
    gw.metrics_until(
        "a second refused reload",
        Duration::from_secs(5),
        reloads("failure", 2.0),
    )
    .await;
    let log = gw
        .stdout_containing("unknown field `shutdown_grace_seconds`")
        .await;
    assert!(
        log.contains("unknown field `shutdown_grace_seconds`"),
        "{log}"
    );
    assert_eq!(
        kept.get(USERS, TOKEN).await.0,
        401,
        "the refused file applied"
    );
    assert_eq!(kept.get(USERS, NEW_TOKEN).await.0, 200);

    // The valid file again: reloads still work, and the same connection still serves.
    std::fs::write(&gw.config, &valid).unwrap();
    gw.signal("HUP");
    let m = gw
        .metrics_until(
            "a third reload",
            Duration::from_secs(5),
            reloads("success", 3.0),
        )
        .await;
    assert_eq!(m.value(RELOADS, &[("outcome", "failure")]), 2.0);
    assert_eq!(kept.get(USERS, NEW_TOKEN).await.0, 200);
    assert_eq!(fresh.get(USERS, NEW_TOKEN).await.0, 200);
}

/// A client with one answered request behind it (its connection is open); returns the HTTP
/// version that request used.
async fn warmed_up(gw: &ServeProcess) -> (reqwest::Client, reqwest::Version) {
    let client = gw.scim_client().build().unwrap();
    let warm = client
        .get(format!("{}{}", gw.base, filter_path("alice")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    (client, warm.version())
}

/// Starts a filtered GET that a frozen directory holds, and waits until it is in flight.
async fn hold_a_request(
    gw: &ServeProcess,
    slapd: &Slapd,
    client: &reqwest::Client,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    slapd.pause();
    let request = client
        .get(format!("{}{}", gw.base, filter_path("alice")))
        .bearer_auth(TOKEN)
        .send();
    let mut held = tokio::spawn(request);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = gw.metrics().await;
        // Counted as it arrives, and as its directory operation starts a moment later.
        if m.get("scim_gateway_http_requests_in_flight", &[]) == Some(1.0)
            && m.get("scim_gateway_directory_operations_in_flight", &[]) == Some(1.0)
        {
            return held;
        }
        if held.is_finished() {
            let outcome = (&mut held).await.unwrap().map(|r| r.status());
            panic!(
                "the request to a frozen directory ended: {outcome:?}\n{}",
                gw.output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the request was not in flight within 5 s\n--- last scrape ---\n{}\n{}",
            m.text,
            gw.output()
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn graceful_shutdown_completes_in_flight_requests() {
    let slapd = Slapd::start();
    let mut gw = ServeProcess::start(
        &slapd,
        tempfile::tempdir().unwrap(),
        |t| {
            replace_line(
                &t,
                "operation_timeout_secs = ",
                "operation_timeout_secs = 30",
            )
        },
        &[],
    )
    .await;
    // The default client negotiates HTTP/2: the in-flight request is a stream, and shutdown
    // sends GOAWAY on its connection.
    let (client, warm) = warmed_up(&gw).await;
    assert_eq!(warm, reqwest::Version::HTTP_2);

    let held = hold_a_request(&gw, &slapd, &client).await;
    gw.signal("TERM");

    // Draining: not ready, and no new connection is accepted.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = gw
            .admin_client
            .get(format!("{}/readyz", gw.admin))
            .send()
            .await
            .unwrap_or_else(|e| panic!("the admin listener is gone while draining: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap();
        // Before SIGTERM is handled, the frozen directory also makes /readyz 503, but not this one.
        if status == 503 && text == "shutting down\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {status} {text:?} 5 s after SIGTERM\n{}",
            gw.output()
        );
        tokio::time::sleep(POLL).await;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match TcpStream::connect(gw.scim).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => assert!(
                Instant::now() < deadline,
                "new connections still accepted 2 s into draining: {other:?}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
    assert!(
        gw.is_running(),
        "the gateway exited with a request in flight\n{}",
        gw.output()
    );
    assert!(
        !held.is_finished(),
        "the held request ended before the directory answered\n{}",
        gw.output()
    );

    slapd.resume();
    let resp = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the in-flight request did not complete")
        .unwrap()
        .unwrap_or_else(|e| panic!("the in-flight request failed: {e}\n{}", gw.output()));
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["totalResults"], 1, "{body}");
    assert_eq!(body["Resources"][0]["userName"], "alice");
    let (status, took) = gw.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "{status}\n{}", gw.output());
    eprintln!("exited {took:?} after the in-flight request completed");
    let log = gw.stdout();
    assert!(log.contains("draining in-flight requests"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    const GRACE: Duration = Duration::from_secs(1);
    let slapd = Slapd::start();
    let mut gw = ServeProcess::start(
        &slapd,
        tempfile::tempdir().unwrap(),
        |t| {
            let t = replace_line(
                &t,
                "operation_timeout_secs = ",
                "operation_timeout_secs = 30",
            );
            replace_line(&t, "shutdown_grace_secs = ", "shutdown_grace_secs = 1")
        },
        &[],
    )
    .await;
    let (client, _) = warmed_up(&gw).await;

    let held = hold_a_request(&gw, &slapd, &client).await;
    let signalled = Instant::now();
    gw.signal("TERM");
    // The directory stays frozen: only the grace period can end the wait.
    let (status, _) = gw.wait_exit(GRACE + Duration::from_secs(5)).await;
    let took = signalled.elapsed();
    slapd.resume();
    let outcome = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("the cut-off request neither failed nor completed")
        .unwrap()
        .map(|r| r.status());
    assert!(status.success(), "{status}\n{}", gw.output());
    assert!(
        took >= GRACE && took < GRACE + Duration::from_secs(5),
        "exited {took:?} after SIGTERM with a {GRACE:?} grace period; held request: {outcome:?}\n{}",
        gw.output()
    );
    assert!(
        outcome.is_err(),
        "the held request got an answer although the gateway closed it: {outcome:?}"
    );
    eprintln!("exited {took:?} after SIGTERM with a request held past the {GRACE:?} grace period");
    let log = gw.stdout();
    assert!(log.contains("grace period over"), "{log}");
}

#[tokio::test]
async fn no_secret_reaches_any_output() {
    const WRONG: &str = "wrong-token-9f8e7d6c5b4a39281706";
    const USER_PASSWORD: &str = "Pl41n-S3cret-Value!";
    const AUDITED: &str = "audited-user";
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut gw = ServeProcess::start(
        &slapd,
        dir,
        |t| {
            let t = replace_line(&t, r#"format = "human""#, r#"format = "json""#);
            replace_line(
                &t,
                r#"output = "log""#,
                &format!(
                    "output = \"file\"\nfile = {:?}",
                    audit.display().to_string()
                ),
            )
        },
        &[("RUST_LOG", "trace")],
    )
    .await;
    let h2 = gw.scim_client().build().unwrap();
    let h1 = gw.scim_client().http1_only().build().unwrap();
    let users = format!("{}/Users?count=1", gw.base);
    for client in [&h2, &h1] {
        let r = client.get(&users).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = client.get(&users).bearer_auth(WRONG).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }

    let r = h2
        .post(format!("{}/Users", gw.base))
        .bearer_auth(TOKEN)
        .header("x-request-id", "test-req-42")
        .header("content-type", "application/scim+json")
        .body(user(AUDITED).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "test-req-42");
    let (status, _, body) = response(r).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();

    let mut with_password = user("with-password");
    with_password["password"] = json!(USER_PASSWORD);
    let r = h1
        .post(format!("{}/Users", gw.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        .body(with_password.to_string())
        .send()
        .await
        .unwrap();
    let password_status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(USER_PASSWORD),
        "the response echoes the password"
    );
    eprintln!("POST /Users with a password: {password_status}");

    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Audited Person"}]
    });
    let r = h2
        .patch(format!("{}/Users/{id}", gw.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let entry = slapd.entry(&people_dn(AUDITED)).await.unwrap();
    assert_eq!(
        first(&entry, "displayName").as_deref(),
        Some("Audited Person")
    );
    let r = h1
        .delete(format!("{}/Users/{id}", gw.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(slapd.entry(&people_dn(AUDITED)).await.is_none());

    drop((h1, h2));
    gw.signal("TERM");
    let (status, _) = gw.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}\n{}", gw.output());

    let outputs = [
        ("stdout", gw.stdout()),
        ("stderr", gw.stderr()),
        ("the audit file", std::fs::read_to_string(&audit).unwrap()),
    ];
    for (secret, what) in [
        (TOKEN, "the token"),
        (WRONG, "the wrong token"),
        (slapd.admin_password.as_str(), "the bind password"),
        (USER_PASSWORD, "the user's password"),
    ] {
        for (output, text) in &outputs {
            assert!(!text.contains(secret), "{what} reached {output}");
        }
    }

    // JSON logs: every line an object; the request id on the lines of its request.
    let (_, stdout) = &outputs[0];
    assert!(stdout.lines().count() > 10, "{stdout}");
    let lines: Vec<Value> = stdout
        .lines()
        .chain(outputs[1].1.lines())
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}"))
        })
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "TRACE"),
        "RUST_LOG=trace did not take effect:\n{stdout}"
    );
    // One access line per request (4 GETs, 2 POSTs, a PATCH, a DELETE), each in its request's span.
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "scim_ldap_gateway::http" && l["fields"]["message"] == "request")
        .collect();
    assert_eq!(access.len(), 8, "{access:?}");
    let ids: std::collections::BTreeSet<&str> = access
        .iter()
        .map(|l| l["span"]["request_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids.len(), 8, "a request id missing or repeated: {access:?}");
    assert!(!ids.contains(""), "{access:?}");
    let access = access
        .iter()
        .find(|l| l["span"]["request_id"] == "test-req-42")
        .unwrap_or_else(|| panic!("no access log line with the request id:\n{stdout}"));
    assert_eq!(access["fields"]["status"], 201, "{access}");
    assert_eq!(access["fields"]["path"], "/scim/v2/Users", "{access}");

    // The audit trail: one JSON record per write, tied to the request.
    let records: Vec<Value> = outputs[2]
        .1
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line ({e}): {l}")))
        .collect();
    let dn = people_dn(AUDITED);
    let add = records
        .iter()
        .find(|r| r["request_id"] == "test-req-42")
        .unwrap_or_else(|| panic!("no audit record of test-req-42: {records:?}"));
    assert_eq!(add["token"], "entra", "{add}");
    assert_eq!(add["scim_operation"], "POST Users", "{add}");
    assert_eq!(add["ldap_operation"], "add", "{add}");
    assert_eq!(add["dn"], dn.as_str(), "{add}");
    assert_eq!(add["result"], "success", "{add}");
    for operation in ["modify", "delete"] {
        let r = records
            .iter()
            .find(|r| r["ldap_operation"] == operation && r["dn"] == dn.as_str())
            .unwrap_or_else(|| panic!("no audit record of the {operation}: {records:?}"));
        assert_eq!(r["result"], "success", "{r}");
        assert_eq!(r["token"], "entra", "{r}");
        assert_ne!(r["request_id"], "test-req-42");
    }
}

/// With `[reload] watch = true`, editing a watched file (here the token file) is enough: no
/// signal, and the new token is in force within a couple of polling intervals.
#[tokio::test]
async fn a_watched_token_file_is_reloaded_without_a_signal() {
    const OLD_TOKEN: &str = "watched-old-token-0123456789abcdef";
    const NEW_TOKEN: &str = "watched-new-token-fedcba9876543210";
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{OLD_TOKEN}\n")).unwrap();
    let gw = ServeProcess::start(
        &slapd,
        dir,
        |t| {
            let t = replace_line(
                &t,
                r#"secret = { env = "SCIM_TOKEN" }"#,
                r#"secret = { file = "token" }"#,
            );
            let t = replace_line(&t, "watch = false", "watch = true");
            replace_line(&t, "watch_interval_secs = 5", "watch_interval_secs = 1")
        },
        &[],
    )
    .await;
    let client = gw.scim_client().build().unwrap();
    let status = |token: &'static str| {
        let req = client
            .get(format!("{}/Users?count=1", gw.base))
            .bearer_auth(token)
            .send();
        async move { req.await.unwrap().status().as_u16() }
    };
    assert_eq!(status(OLD_TOKEN).await, 200);
    assert_eq!(status(NEW_TOKEN).await, 401);
    // A different length, so the change shows even within the file system's timestamp granularity.
    std::fs::write(&token_file, format!("{NEW_TOKEN}-rotated\n")).unwrap();
    const ROTATED: &str = "watched-new-token-fedcba9876543210-rotated";
    let deadline = Instant::now() + Duration::from_secs(6);
    while status(ROTATED).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the watched token file was not reloaded within 6 s\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(OLD_TOKEN).await, 401, "the old token is gone");
    let m = gw.metrics().await;
    assert_eq!(
        m.value(
            "scim_gateway_config_reloads_total",
            &[("outcome", "success")]
        ),
        1.0
    );
    assert!(
        gw.output().contains("a configuration file changed"),
        "{}",
        gw.output()
    );
}
