//! Operations: quotas, directory back-pressure, readiness, the audit trail, request ids and the
//! connection limits of the HTTP front. Each test checks what the wire, the metrics and the
//! directory really show, not only the status codes.

use crate::gateway::{
    demo_config_text, env_for, people_dn, values, Resp, RunningGateway, TestGateway, TOKEN,
};
use crate::slapd::{Slapd, SUFFIX};
use scim_ldap_gateway::config::Config;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const SCIM_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const POLL: Duration = Duration::from_millis(50);

/// `text` with `from` (which must occur exactly once) replaced by `to`, so that a drift of the
/// demo config fails here instead of silently testing other settings.
fn set(text: String, from: &str, to: &str) -> String {
    let n = text.matches(from).count();
    assert_eq!(
        n, 1,
        "expected {from:?} exactly once in the demo config, found {n}"
    );
    text.replacen(from, to, 1)
}

fn user(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Op", "familyName": "Erations"},
        "emails": [{"type": "work", "value": format!("{user_name}@example.org"), "primary": true}],
        "active": true
    })
}

/// The value of one series (`name{labels}` exactly as exposed) in a Prometheus text exposition.
/// Every series the tests read is registered up front, so a missing one is a failure.
#[track_caller]
fn metric(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            Some(value.trim().parse().unwrap_or_else(|e| {
                panic!("series {series} has a non-numeric value in {line:?}: {e}")
            }))
        })
        .unwrap_or_else(|| panic!("{series} is not exposed; /metrics:\n{exposition}"))
}

/// `Retry-After` in whole seconds; panics when it is missing or not a number.
#[track_caller]
fn retry_after(r: &Resp) -> u64 {
    let v = r
        .headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("{} without Retry-After: {}", r.status, r.body));
    v.to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After is not a number of seconds: {v:?}"))
}

/// Continues a slapd frozen with [`Slapd::pause`] when dropped, so that a failing assertion
/// does not leave the directory stopped while the test unwinds.
struct Paused<'a>(&'a Slapd);

impl<'a> Paused<'a> {
    fn pause(slapd: &'a Slapd) -> Self {
        slapd.pause();
        Paused(slapd)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

/// A request sent on its own task: the response and how long it took.
struct Timed {
    resp: Resp,
    took: Duration,
}

async fn send_timed(req: reqwest::RequestBuilder) -> Timed {
    let started = Instant::now();
    let resp = req.send().await.expect("the gateway answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let version = resp.version();
    let bytes = resp.bytes().await.expect("a complete body");
    let took = started.elapsed();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("non-JSON body ({e}): {}", String::from_utf8_lossy(&bytes)))
    };
    Timed {
        resp: Resp {
            status,
            headers,
            body,
            version,
        },
        took,
    }
}

/// GET on the admin listener: status and body text.
async fn admin_get(gw: &RunningGateway, path: &str) -> (u16, String) {
    let r = gw
        .client
        .get(format!("{}{path}", gw.admin))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("admin {path} did not answer: {e}"));
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Polls `path` on the admin listener until it answers `status`, for at most `bound`.
async fn wait_for_admin_status(gw: &RunningGateway, path: &str, status: u16, bound: Duration) {
    let started = Instant::now();
    loop {
        let (got, body) = admin_get(gw, path).await;
        if got == status {
            eprintln!("{path} answered {status} after {:?}", started.elapsed());
            return;
        }
        assert!(
            started.elapsed() < bound,
            "{path} still answers {got} ({body:?}) after {:?}, expected {status}",
            started.elapsed()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls a metric series until it reaches `at_least`, for at most `bound`.
async fn wait_for_metric(gw: &RunningGateway, series: &str, at_least: f64, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let m = gw.metrics().await;
        if metric(&m, series) >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} did not reach {at_least} within {bound:?}; /metrics:\n{m}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// `GET /Users?filter=userName eq "alice"`: needs one directory search.
fn alice_url(gw: &RunningGateway) -> String {
    format!(
        "{}/Users?filter={}",
        gw.base,
        crate::gateway::url_encode("userName eq \"alice\"")
    )
}

/// Repeats the alice lookup until it answers 200, for at most `bound`; meanwhile only 503/504.
async fn wait_until_served(gw: &RunningGateway, bound: Duration) {
    let started = Instant::now();
    loop {
        let r = send_timed(gw.client.get(alice_url(gw)).bearer_auth(TOKEN))
            .await
            .resp;
        if r.status == 200 {
            assert_eq!(r.body["totalResults"], 1, "{}", r.body);
            return;
        }
        assert!(
            [503, 504].contains(&r.status.as_u16()) && started.elapsed() < bound,
            "{} after {:?} while waiting for the directory: {}",
            r.status,
            started.elapsed(),
            r.body
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_gets_429_with_retry_after_and_never_reaches_the_directory() {
    let gw = TestGateway::start_with(|t| {
        set(
            t,
            "token_write = { per_second = 50, burst = 100 }",
            "token_write = { per_second = 1, burst = 3 }",
        )
    })
    .await;
    let url = format!("{}/Users", gw.base);
    // Establish the connection first, so that the burst below is admitted within milliseconds
    // (a refill takes a whole second).
    gw.get("/Users?count=1").await.expect(200);

    let ops_before = gw.directory_operations();
    let mut burst = JoinSet::new();
    for i in 0..6 {
        let name = format!("burst-{i}");
        let req = gw
            .client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(user(&name).to_string());
        burst.spawn(async move { (name, send_timed(req).await) });
    }
    let results = burst.join_all().await;
    let burst_ops = gw.directory_operations() - ops_before;

    let mut created: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for (name, t) in results {
        match t.resp.status.as_u16() {
            201 => {
                assert_eq!(t.resp.body["userName"], name.as_str());
                created.push(name);
            }
            429 => {
                let r = t.resp.expect_error(429, None);
                assert!(retry_after(&r) >= 1, "Retry-After must be at least 1 s");
                refused.push(name);
            }
            other => panic!("{name}: unexpected {other}: {}", t.resp.body),
        }
    }
    created.sort();
    refused.sort();
    assert_eq!(
        (created.len(), refused.len()),
        (3, 3),
        "a burst of 3 admits 3 of 6 writes: created {created:?}, refused {refused:?}"
    );

    // The directory holds exactly the admitted users.
    let mut stored: Vec<String> = gw
        .slapd
        .find(&format!("ou=people,{SUFFIX}"), "(uid=burst-*)")
        .await
        .iter()
        .flat_map(|e| values(e, "uid"))
        .collect();
    stored.sort();
    assert_eq!(
        stored, created,
        "the directory holds only the admitted users"
    );

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"scim_gateway_rate_limited_requests_total{quota="token_write"}"#
        ),
        3.0
    );

    // The write bucket is empty now, the read bucket is not.
    let r = gw.get("/Users?count=1").await.expect(200);
    assert!(r.body["totalResults"].as_u64().unwrap() >= 3, "{}", r.body);
    let before = gw.directory_operations();
    let r = gw
        .post("/Users", &user("burst-late"))
        .await
        .expect_error(429, None);
    assert!(retry_after(&r) >= 1);
    assert_eq!(
        gw.directory_operations(),
        before,
        "a refused write must not reach the directory"
    );
    assert!(gw.slapd.entry(&people_dn("burst-late")).await.is_none());
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"scim_gateway_rate_limited_requests_total{quota="token_write"}"#
        ),
        4.0
    );
    assert_eq!(
        metric(
            &m,
            r#"scim_gateway_rate_limited_requests_total{quota="token_read"}"#
        ),
        0.0
    );

    // Once the bucket has refilled, one more create goes through; it costs what each admitted
    // create of the burst cost, so the refused ones cost the directory nothing.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = gw.directory_operations();
    gw.post("/Users", &user("burst-after-refill"))
        .await
        .expect(201);
    let one_create = gw.directory_operations() - before;
    assert!(one_create > 0);
    assert_eq!(
        burst_ops,
        3 * one_create,
        "the burst sent {burst_ops} LDAP requests; 3 creates need {}",
        3 * one_create
    );
    assert!(gw
        .slapd
        .entry(&people_dn("burst-after-refill"))
        .await
        .is_some());
}

/// `GET /Users?count=1` with `token`, and `X-Forwarded-For` when given.
async fn get_as(gw: &RunningGateway, token: &str, forwarded_for: Option<&str>) -> Resp {
    let mut req = gw
        .client
        .get(format!("{}/Users?count=1", gw.base))
        .bearer_auth(token);
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    send_timed(req).await.resp
}

const WRONG: &str = "wrong-token-0123456789abcdef";

/// Three failed authentications from `ip` are 401, the fourth is 429, and the address is then
/// refused even with the right token: the block comes before the token check.
async fn exhaust_failed_auth(gw: &RunningGateway, ip: Option<&str>) {
    for i in 0..3 {
        let r = get_as(gw, WRONG, ip).await;
        assert_eq!(r.status, 401, "failure {i} from {ip:?}: {}", r.body);
    }
    let r = get_as(gw, WRONG, ip).await.expect_error(429, None);
    assert!(retry_after(&r) >= 1);
    let r = get_as(gw, TOKEN, ip).await.expect_error(429, None);
    assert!(retry_after(&r) >= 1);
}

fn failed_auth_quota(t: String, trusted: &str) -> String {
    let t = set(
        t,
        "unauthenticated_per_ip = { per_second = 5, burst = 20 }",
        "unauthenticated_per_ip = { per_second = 1, burst = 3 }",
    );
    set(
        t,
        "trusted_proxies = []",
        &format!("trusted_proxies = {trusted}"),
    )
}

#[tokio::test]
async fn failed_authentications_are_limited_per_client_address() {
    // The TCP peer is the client.
    let gw = TestGateway::start_with(|t| failed_auth_quota(t, "[]")).await;
    get_as(&gw, TOKEN, None).await.expect(200);
    exhaust_failed_auth(&gw, None).await;
    // Without trusted proxies, a forged X-Forwarded-For is the client's own word: ignored.
    get_as(&gw, TOKEN, Some("203.0.113.50"))
        .await
        .expect_error(429, None);
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"scim_gateway_rate_limited_requests_total{quota="unauthenticated_ip"}"#
        ),
        3.0
    );

    // Behind a trusted proxy (the loopback peer), each forwarded address has its own bucket.
    let proxied =
        RunningGateway::start(&gw.slapd, |t| failed_auth_quota(t, r#"["127.0.0.1/32"]"#)).await;
    exhaust_failed_auth(&proxied, Some("203.0.113.7")).await;
    let r = get_as(&proxied, WRONG, Some("203.0.113.8")).await;
    assert_eq!(r.status, 401, "another client is not blocked: {}", r.body);
    get_as(&proxied, TOKEN, Some("203.0.113.8"))
        .await
        .expect(200);
    // The proxy itself is not blocked either.
    get_as(&proxied, TOKEN, None).await.expect(200);
    // A client-supplied hop left of the proxy's does not change who is blocked.
    get_as(&proxied, TOKEN, Some("198.51.100.1, 203.0.113.7"))
        .await
        .expect_error(429, None);

    // Reloaded without trusted proxies, the same gateway counts the peer again: a forged
    // X-Forwarded-For does not buy a fresh bucket.
    let text = failed_auth_quota(demo_config_text(&gw.slapd, proxied.dir()), "[]");
    let config = Config::from_toml(&text, proxied.dir(), &env_for(&gw.slapd))
        .unwrap_or_else(|e| panic!("{e}"));
    proxied.server().reload(config).expect("reload");
    exhaust_failed_auth(&proxied, Some("203.0.113.9")).await;
    let r = get_as(&proxied, WRONG, Some("203.0.113.10"))
        .await
        .expect_error(429, None);
    assert!(retry_after(&r) >= 1);
    get_as(&proxied, TOKEN, None).await.expect_error(429, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_answers_503_instead_of_queueing_without_bound() {
    let gw = TestGateway::start_with(|t| {
        let t = set(t, "max_in_flight = 32", "max_in_flight = 1");
        let t = set(t, "max_queued = 256", "max_queued = 1");
        let t = set(t, "queue_timeout_ms = 1000", "queue_timeout_ms = 300");
        set(
            t,
            "operation_timeout_secs = 10",
            "operation_timeout_secs = 3",
        )
    })
    .await;
    wait_until_served(&gw, Duration::from_secs(5)).await;
    let full = r#"scim_gateway_directory_backpressure_rejections_total{reason="queue_full"}"#;
    let timeout = r#"scim_gateway_directory_backpressure_rejections_total{reason="queue_timeout"}"#;
    let m = gw.metrics().await;
    let (full_before, timeout_before) = (metric(&m, full), metric(&m, timeout));

    let paused = Paused::pause(&gw.slapd);
    let ops_before = gw.directory_operations();
    let mut requests = JoinSet::new();
    for _ in 0..8 {
        let req = gw.client.get(alice_url(&gw)).bearer_auth(TOKEN);
        requests.spawn(send_timed(req));
    }
    let results = requests.join_all().await;
    let ops = gw.directory_operations() - ops_before;
    drop(paused);

    let mut gateway_timeouts = 0;
    let mut rejected = 0;
    for t in &results {
        match t.resp.status.as_u16() {
            503 => {
                rejected += 1;
                assert_eq!(t.resp.body["schemas"][0], SCIM_ERROR, "{}", t.resp.body);
                assert!(retry_after(&t.resp) >= 1);
                assert!(
                    t.took < Duration::from_millis(1500),
                    "a 503 took {:?}; the queue timeout is 300 ms, the operation timeout 3 s",
                    t.took
                );
            }
            504 => {
                gateway_timeouts += 1;
                assert_eq!(t.resp.body["schemas"][0], SCIM_ERROR, "{}", t.resp.body);
                assert!(
                    t.took >= Duration::from_millis(2500),
                    "a 504 after {:?}, before the 3 s operation timeout",
                    t.took
                );
            }
            other => panic!(
                "{other} from a paused directory after {:?}: {}",
                t.took, t.resp.body
            ),
        }
    }
    let took: Vec<_> = results
        .iter()
        .map(|t| (t.resp.status.as_u16(), t.took))
        .collect();
    eprintln!("back-pressure answers: {took:?}");
    assert!(
        gateway_timeouts <= 1,
        "only the operation holding the one slot may wait for the directory: {took:?}"
    );
    assert!(
        ops <= 1,
        "{ops} LDAP requests were sent to a paused directory with one slot"
    );

    let m = gw.metrics().await;
    let full_delta = metric(&m, full) - full_before;
    let timeout_delta = metric(&m, timeout) - timeout_before;
    assert!(full_delta >= 1.0, "no queue_full rejection");
    assert!(timeout_delta >= 1.0, "no queue_timeout rejection");
    assert_eq!(
        full_delta + timeout_delta,
        rejected as f64,
        "every 503 is a back-pressure rejection"
    );

    wait_until_served(&gw, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_directory() {
    let mut gw = TestGateway::start().await;
    assert_eq!(admin_get(&gw, "/healthz").await.0, 200);
    wait_for_admin_status(&gw, "/readyz", 200, Duration::from_secs(5)).await;

    gw.slapd.stop();
    wait_for_admin_status(&gw, "/readyz", 503, Duration::from_secs(5)).await;
    let (status, body) = admin_get(&gw, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        admin_get(&gw, "/healthz").await.0,
        200,
        "alive while not ready"
    );
    gw.get("/Users?count=1").await.expect_error(503, None);

    gw.slapd.restart();
    wait_for_admin_status(&gw, "/readyz", 200, Duration::from_secs(5)).await;
    assert_eq!(admin_get(&gw, "/healthz").await.0, 200);
    gw.get("/Users?count=1").await.expect(200);
}

/// Every audit record in the file, parsed; panics on a line that is not one JSON object.
fn audit_records(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the audit file {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {line}"));
            assert!(v.is_object(), "audit line is not an object: {line}");
            v
        })
        .collect()
}

/// The changed attributes of a record, lower-cased, with their values.
fn changed(record: &Value) -> Vec<(String, Value)> {
    record["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes list: {record}"))
        .iter()
        .map(|c| {
            (
                c["attribute"].as_str().unwrap().to_ascii_lowercase(),
                c["values"].clone(),
            )
        })
        .collect()
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn audit_records_every_write_without_secret_values() {
    let gw = TestGateway::start_with(|t| {
        set(
            t,
            "[audit]\noutput = \"log\"\n",
            "[audit]\noutput = \"file\"\nfile = \"audit.jsonl\"\nredact_attributes = [\"telephoneNumber\"]\n",
        )
    })
    .await;
    let path = gw.dir().join("audit.jsonl");
    assert_eq!(audit_records(&path).len(), 0, "reads are not audited");
    let dn = people_dn("audited");
    const PHONE: &str = "+1 555 0142";
    const NEW_PHONE: &str = "+1 555 0199";
    const MAIL: &str = "audited@example.org";

    let mut body = user("audited");
    body["phoneNumbers"] = json!([{"type": "work", "value": PHONE}]);
    let r = gw
        .send_with(
            gw.client
                .post(format!("{}/Users", gw.base))
                .header("x-request-id", "audit-create-1"),
            Some(&body),
        )
        .await
        .expect(201);
    assert_eq!(r.headers["x-request-id"], "audit-create-1");
    let id = r.body["id"].as_str().unwrap().to_string();
    let stored = gw.slapd.entry(&dn).await.expect("created");
    assert_eq!(values(&stored, "telephoneNumber"), [PHONE]);

    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "path": "title", "value": "Auditor"},
            {"op": "replace", "path": "phoneNumbers[type eq \"work\"].value", "value": NEW_PHONE}]});
    let r = gw
        .send_with(
            gw.client
                .patch(format!("{}/Users/{id}", gw.base))
                .header("x-request-id", "audit-patch-1"),
            Some(&patch),
        )
        .await
        .expect(200);
    assert_eq!(r.headers["x-request-id"], "audit-patch-1");
    let stored = gw.slapd.entry(&dn).await.expect("still there");
    assert_eq!(values(&stored, "telephoneNumber"), [NEW_PHONE]);
    assert_eq!(values(&stored, "title"), ["Auditor"]);

    // With the demo mapping (one level, userName is the RDN) a duplicate is not searched for
    // first: the add reaches the directory, which refuses it, and that refusal is recorded.
    let r = gw
        .send_with(
            gw.client
                .post(format!("{}/Users", gw.base))
                .header("x-request-id", "audit-duplicate-1"),
            Some(&user("audited")),
        )
        .await
        .expect_error(409, Some("uniqueness"));
    assert_eq!(r.headers["x-request-id"], "audit-duplicate-1");

    // No request id, or one that is not plain: a generated one, echoed and recorded.
    let r = gw
        .send_with(
            gw.client
                .delete(format!("{}/Users/{id}", gw.base))
                .header("x-request-id", "not a plain id"),
            None,
        )
        .await
        .expect(204);
    let delete_id = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(is_generated_id(&delete_id), "{delete_id:?}");
    assert!(gw.slapd.entry(&dn).await.is_none());
    let r = gw.get("/Users?count=1").await.expect(200);
    let read_id = r.headers["x-request-id"].to_str().unwrap();
    assert!(is_generated_id(read_id), "{read_id:?}");
    assert_ne!(read_id, delete_id);

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(PHONE),
        "phone number in the audit trail:\n{text}"
    );
    assert!(
        !text.contains(NEW_PHONE),
        "phone number in the audit trail:\n{text}"
    );
    assert!(!text.contains(TOKEN), "token value in the audit trail");
    let records = audit_records(&path);
    let summary: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r["ldap_operation"].as_str().unwrap_or("?"),
                r["request_id"].as_str().unwrap_or("?"),
                r["result"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("add", "audit-create-1", "success"),
            ("modify", "audit-patch-1", "success"),
            ("add", "audit-duplicate-1", "entryAlreadyExists"),
            ("delete", delete_id.as_str(), "success"),
        ],
        "one record per write, in order:\n{text}"
    );
    for (r, operation) in
        records
            .iter()
            .zip(["POST Users", "PATCH Users", "POST Users", "DELETE Users"])
    {
        assert_eq!(r["dn"], dn.as_str(), "{r}");
        assert_eq!(r["token"], "entra", "{r}");
        assert_eq!(r["scim_operation"], operation, "{r}");
        assert!(r["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
    }

    let add = changed(&records[0]);
    let value_of = |changes: &[(String, Value)], attr: &str| {
        changes
            .iter()
            .find(|(a, _)| a == attr)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no change of {attr} in {changes:?}"))
    };
    assert_eq!(value_of(&add, "telephonenumber"), json!(["[redacted]"]));
    assert_eq!(value_of(&add, "mail"), json!([MAIL]));
    assert_eq!(value_of(&add, "uid"), json!(["audited"]));
    let modify = changed(&records[1]);
    let mut attrs: Vec<&str> = modify.iter().map(|(a, _)| a.as_str()).collect();
    attrs.sort();
    attrs.dedup();
    assert_eq!(attrs, ["telephonenumber", "title"], "{modify:?}");
    assert_eq!(value_of(&modify, "title"), json!(["Auditor"]));
    assert!(
        modify
            .iter()
            .filter(|(a, _)| a == "telephonenumber")
            .all(|(_, v)| v.is_null() || *v == json!(["[redacted]"])),
        "{modify:?}"
    );
    assert_eq!(value_of(&changed(&records[2]), "mail"), json!([MAIL]));
    assert!(changed(&records[3]).is_empty());
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, r#"scim_gateway_audit_records_total{outcome="written"}"#),
        4.0
    );
}

/// A TLS connection to the gateway's SCIM listener offering only `alpn`.
pub(crate) async fn open_tls(
    gw: &RunningGateway,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tls_connector(gw, rustls::DEFAULT_VERSIONS, alpn);
    let tls = connect_tls(gw, &connector).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(alpn),
        "the server did not agree to {:?}",
        String::from_utf8_lossy(alpn)
    );
    tls
}

/// A TLS client trusting the gateway's certificate, offering `versions` and only `alpn`. One
/// connector is one client: its connections share a session store.
pub(crate) fn tls_connector(
    gw: &RunningGateway,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[u8],
) -> tokio_rustls::TlsConnector {
    crate::faults::release_gateway::tls_connector_trusting(&gw.ca_pem, versions, alpn)
}

/// A new TCP connection to the gateway's SCIM listener, through the TLS handshake.
pub(crate) async fn connect_tls(
    gw: &RunningGateway,
    connector: &tokio_rustls::TlsConnector,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let address = gw
        .base
        .strip_prefix("https://")
        .and_then(|rest| rest.split('/').next())
        .expect("an https base URL");
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1".to_string()).unwrap();
    connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the gateway")
}

/// Reads until the peer closes the connection (EOF, with or without close_notify, or a reset);
/// returns what arrived before that. Panics if it stays open for `bound`.
async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S, bound: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "the server kept the connection open for {bound:?}; received {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One HTTP/1.1 response: the head (status line and headers, lower-cased) and the body.
pub(crate) struct H1Response {
    head: String,
    pub(crate) body: Vec<u8>,
}

impl H1Response {
    pub(crate) fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {:?}", self.head))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim())
        })
    }
}

/// Sends a GET on an HTTP/1.1 connection and reads its response (which must carry a
/// Content-Length), within 10 s.
async fn h1_get<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, path: &str) -> H1Response {
    h1_request(stream, "GET", path, None).await
}

/// Sends `method path` exactly as given (no URL normalisation), with a JSON body if any, on an
/// HTTP/1.1 connection and reads its response (which must carry a Content-Length), within 10 s.
pub(crate) async fn h1_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> H1Response {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n");
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/scim+json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    h1_response(stream, &format!("{method} {path}")).await
}

/// Reads one HTTP/1.1 response (which must carry a Content-Length) to `what`, within 10 s.
pub(crate) async fn h1_response<S: AsyncRead + Unpin>(stream: &mut S, what: &str) -> H1Response {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut chunk).await.expect("reading a response");
            assert!(
                n > 0,
                "connection closed before a response to {what}: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec())
            .unwrap()
            .to_ascii_lowercase();
        let mut body = buf[head_end + 4..].to_vec();
        let response = H1Response { head, body: vec![] };
        let length: usize = response
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no content-length in {:?}", response.head));
        while body.len() < length {
            let n = stream.read(&mut chunk).await.expect("reading a body");
            assert!(n > 0, "connection closed inside a body");
            body.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(body.len(), length, "more bytes than the response announced");
        H1Response { body, ..response }
    })
    .await
    .unwrap_or_else(|_| panic!("no response to {what} within 10 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    // Headers dripping in one byte every 300 ms: cut off at the 1 s header timeout.
    let gw = TestGateway::start_with(|t| {
        set(
            t,
            "header_read_timeout_secs = 10",
            "header_read_timeout_secs = 1",
        )
    })
    .await;
    let tls = open_tls(&gw, b"http/1.1").await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    writer
        .write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    writer.flush().await.unwrap();
    let started = Instant::now();
    let closed = tokio::spawn(async move {
        let got = read_until_closed(&mut reader, Duration::from_secs(15)).await;
        (started.elapsed(), got)
    });
    let rest = format!("Authorization: Bearer {TOKEN}\r\nX-Slow: 1\r\n\r\n");
    let mut sent = 0;
    for byte in rest.bytes() {
        if closed.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if writer.write_all(&[byte]).await.is_err() || writer.flush().await.is_err() {
            break;
        }
        sent += 1;
    }
    let (after, got) = closed.await.unwrap();
    let got = String::from_utf8_lossy(&got);
    eprintln!(
        "slow headers: closed after {after:?}, {sent} of {} bytes sent; server sent {got:?}",
        rest.len()
    );
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(3),
        "closed after {after:?}; the header timeout is 1 s"
    );
    assert!(
        sent < rest.len() / 2,
        "{sent} of {} header bytes",
        rest.len()
    );
    assert!(!got.contains(" 200 "), "the request was served: {got}");
    // Nothing at all after the handshake, or a stalled HTTP/2 preface (before hyper knows the
    // protocol, so before its own header timer runs): cut off just the same.
    for (what, alpn, sent) in [
        ("silence", &b"http/1.1"[..], &b""[..]),
        (
            "part of the HTTP/2 preface",
            &b"h2"[..],
            &b"PRI * HTTP/2.0\r\n"[..],
        ),
    ] {
        let mut tls = open_tls(&gw, alpn).await;
        tls.write_all(sent).await.unwrap();
        tls.flush().await.unwrap();
        let started = Instant::now();
        let got = read_until_closed(&mut tls, Duration::from_secs(15)).await;
        let after = started.elapsed();
        eprintln!("{what}: closed after {after:?}");
        assert!(
            got.is_empty(),
            "{what}: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            after >= Duration::from_millis(800) && after < Duration::from_secs(3),
            "{what}: closed after {after:?}; the header timeout is 1 s"
        );
    }
    // A prompt client is served, also past the header timeout on a kept connection.
    let mut tls = open_tls(&gw, b"http/1.1").await;
    assert_eq!(
        h1_get(&mut tls, "/scim/v2/ServiceProviderConfig")
            .await
            .status(),
        200
    );
    gw.get("/Users?count=1").await.expect(200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = gw.get("/Users?count=1").await.expect(200);
    assert_eq!(r.version, reqwest::Version::HTTP_2);

    // An idle keep-alive connection is closed after keep_alive_idle_secs.
    let idle = RunningGateway::start(&gw.slapd, |t| {
        set(t, "keep_alive_idle_secs = 120", "keep_alive_idle_secs = 1")
    })
    .await;
    let mut tls = open_tls(&idle, b"http/1.1").await;
    let r = h1_get(&mut tls, "/scim/v2/Users?count=1").await;
    assert_eq!(r.status(), 200, "{}", String::from_utf8_lossy(&r.body));
    assert_ne!(r.header("connection"), Some("close"));
    let started = Instant::now();
    let got = read_until_closed(&mut tls, Duration::from_secs(10)).await;
    let after = started.elapsed();
    eprintln!("idle keep-alive connection closed after {after:?}");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(3),
        "idle connection closed after {after:?}; keep_alive_idle_secs is 1"
    );

    // The second request on a connection is its last.
    let capped = RunningGateway::start(&gw.slapd, |t| {
        set(
            t,
            "max_requests_per_connection = 10000",
            "max_requests_per_connection = 2",
        )
    })
    .await;
    let mut tls = open_tls(&capped, b"http/1.1").await;
    let first = h1_get(&mut tls, "/scim/v2/Users?count=1").await;
    assert_eq!(first.status(), 200);
    assert_ne!(
        first.header("connection"),
        Some("close"),
        "the first of two allowed requests must keep the connection"
    );
    let second = h1_get(&mut tls, "/scim/v2/Users?count=1").await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.header("connection"),
        Some("close"),
        "the last allowed response announces the close: {:?}",
        second.head
    );
    let _ = tls
        .write_all(
            format!("GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let _ = tls.flush().await;
    let got = read_until_closed(&mut tls, Duration::from_secs(3)).await;
    assert!(
        got.is_empty(),
        "a third response on a capped connection: {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits() {
    // One request at a time: a second one is refused at once while the first waits.
    let gw = TestGateway::start_with(|t| {
        set(
            t,
            "max_concurrent_requests = 256",
            "max_concurrent_requests = 1",
        )
    })
    .await;
    wait_until_served(&gw, Duration::from_secs(5)).await;
    let overloaded = "scim_gateway_http_overload_rejections_total";
    let dir_in_flight = "scim_gateway_directory_operations_in_flight";
    let before = metric(&gw.metrics().await, overloaded);
    let paused = Paused::pause(&gw.slapd);
    let hanging = tokio::spawn(send_timed(gw.client.get(alice_url(&gw)).bearer_auth(TOKEN)));
    wait_for_metric(&gw, dir_in_flight, 1.0, Duration::from_secs(5)).await;
    let second = send_timed(gw.client.get(alice_url(&gw)).bearer_auth(TOKEN)).await;
    let r = second.resp.expect_error(503, None);
    assert!(retry_after(&r) >= 1);
    assert!(
        second.took < Duration::from_millis(500),
        "the refusal took {:?}",
        second.took
    );
    assert_eq!(metric(&gw.metrics().await, overloaded), before + 1.0);
    assert!(
        !hanging.is_finished(),
        "the first request should still wait"
    );
    drop(paused);
    let first = tokio::time::timeout(Duration::from_secs(15), hanging)
        .await
        .expect("the first request completes once the directory answers")
        .unwrap();
    assert_eq!(first.resp.body["totalResults"], 1, "{}", first.resp.body);
    first.resp.expect(200);

    // The total request timeout cuts a request short of the operation timeout.
    let timed = RunningGateway::start(&gw.slapd, |t| {
        let t = set(t, "request_timeout_secs = 60", "request_timeout_secs = 1");
        set(
            t,
            "operation_timeout_secs = 10",
            "operation_timeout_secs = 5",
        )
    })
    .await;
    wait_until_served(&timed, Duration::from_secs(5)).await;
    let paused = Paused::pause(&gw.slapd);
    let t = send_timed(timed.client.get(alice_url(&timed)).bearer_auth(TOKEN)).await;
    drop(paused);
    eprintln!("request timeout: {} after {:?}", t.resp.status, t.took);
    t.resp.expect_error(504, None);
    assert!(
        t.took >= Duration::from_millis(900) && t.took < Duration::from_millis(2500),
        "504 after {:?}; request_timeout_secs is 1, operation_timeout_secs 5",
        t.took
    );
    wait_until_served(&timed, Duration::from_secs(5)).await;
    // Bodies over max_body_bytes (413) are covered by hostile::malformed_and_oversized_bodies.
}

#[tokio::test]
async fn http2_stream_limit_is_advertised() {
    let gw = TestGateway::start_with(|t| {
        set(
            t,
            "http2_max_concurrent_streams = 64",
            "http2_max_concurrent_streams = 7",
        )
    })
    .await;
    let mut tls = open_tls(&gw, b"h2").await;
    // Client connection preface, then an empty SETTINGS frame.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).await.unwrap();
    tls.flush().await.unwrap();
    let (kind, flags, stream, payload) = tokio::time::timeout(Duration::from_secs(10), async {
        let mut header = [0u8; 9];
        tls.read_exact(&mut header).await.unwrap();
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        tls.read_exact(&mut payload).await.unwrap();
        (header[3], header[4], stream, payload)
    })
    .await
    .expect("the server's first frame within 10 s");
    // RFC 9113 §3.4: the server's preface is a SETTINGS frame (type 4) on stream 0, not an ACK.
    assert_eq!((kind, flags & 0x1, stream), (0x4, 0, 0));
    assert_eq!(
        payload.len() % 6,
        0,
        "SETTINGS payload of {} bytes",
        payload.len()
    );
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    eprintln!("server SETTINGS: {settings:?}");
    let max_streams: Vec<u32> = settings
        .iter()
        .filter(|(id, _)| *id == 0x3)
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(
        max_streams,
        [7],
        "SETTINGS_MAX_CONCURRENT_STREAMS in {settings:?}"
    );
}

/// Sends `req` (from `impatient_client`), which must time out: the client gives up.
async fn gives_up(req: reqwest::RequestBuilder) {
    let sent = req.send().await;
    assert!(
        sent.as_ref().is_err_and(|e| e.is_timeout()),
        "the client gave up: {sent:?}"
    );
}

/// An HTTP/1.1 client trusting the gateway's CA that gives up on a request after 800 ms.
fn impatient_client(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .http1_only()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap()
}

/// A client that hangs up while its write waits on the directory does not cancel the write
/// half-way: the write completes, is audited, and every gauge comes back to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_does_not_lose_the_audit_of_its_write() {
    let gw = TestGateway::start_with(|t| {
        set(
            t,
            "[audit]\noutput = \"log\"\n",
            "[audit]\noutput = \"file\"\nfile = \"audit.jsonl\"\n",
        )
    })
    .await;
    let path = gw.dir().join("audit.jsonl");
    let impatient = impatient_client(&gw.ca_pem);
    gw.slapd.pause();
    gives_up(
        impatient
            .post(format!("{}/Users", gw.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .header("x-request-id", "hung-up-1")
            .body(user("hung-up").to_string()),
    )
    .await;
    drop(impatient);
    gw.slapd.resume();
    let deadline = Instant::now() + Duration::from_secs(5);
    let record = loop {
        if let Some(r) = audit_records(&path)
            .into_iter()
            .find(|r| r["request_id"] == "hung-up-1")
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no audit record of the abandoned write"
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(record["ldap_operation"], "add");
    assert_eq!(record["result"], "success");
    assert!(
        gw.slapd.entry(&people_dn("hung-up")).await.is_some(),
        "the audited write is in the directory"
    );
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "scim_gateway_http_requests_in_flight"), 0.0);
    assert_eq!(
        metric(&m, "scim_gateway_directory_operations_in_flight"),
        0.0
    );
    assert_eq!(
        metric(
            &m,
            "scim_gateway_http_requests_total{method=\"POST\",resource=\"Users\",status_class=\"2xx\"}"
        ),
        1.0,
        "the abandoned request is still counted"
    );
}

/// A client that hangs up while its read waits on the directory: the read, which runs in its
/// connection's task, is dropped with the connection and counted as 499 (a 4xx); every gauge
/// comes back to zero; and the search connection it held is not lent again with the late
/// answer in it: the next lookups each get their own user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_on_a_read_leaves_no_gauge_or_late_answer_behind() {
    let gw = TestGateway::start().await;
    let created = gw
        .client
        .post(format!("{}/Users", gw.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        .body(user("read-after-hang-up").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert!(gw
        .slapd
        .entry(&people_dn("read-after-hang-up"))
        .await
        .is_some());
    let impatient = impatient_client(&gw.ca_pem);
    gw.slapd.pause();
    gives_up(impatient.get(alice_url(&gw)).bearer_auth(TOKEN)).await;
    drop(impatient);
    let series =
        "scim_gateway_http_requests_total{method=\"GET\",resource=\"Users\",status_class=\"4xx\"}";
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&gw.metrics().await, series) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the abandoned read was not counted as 499 while the directory was paused"
        );
        tokio::time::sleep(POLL).await;
    }
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "scim_gateway_http_requests_in_flight"), 0.0);
    assert_eq!(
        metric(&m, "scim_gateway_directory_operations_in_flight"),
        0.0
    );
    assert_eq!(metric(&m, "scim_gateway_directory_operations_queued"), 0.0);
    gw.slapd.resume();
    for name in ["read-after-hang-up", "alice", "read-after-hang-up"] {
        let url = format!(
            "{}/Users?filter={}",
            gw.base,
            crate::gateway::url_encode(&format!("userName eq \"{name}\""))
        );
        let r = gw.client.get(url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["totalResults"], 1, "{body}");
        assert_eq!(body["Resources"][0]["userName"], name, "{body}");
    }
    let m = gw.metrics().await;
    assert_eq!(metric(&m, series), 1.0);
    assert_eq!(metric(&m, "scim_gateway_http_requests_in_flight"), 0.0);
}

/// At `max_connections`, a further client waits in the kernel's backlog (its TLS handshake does
/// not complete) until an open connection closes; it is then served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let gw =
        TestGateway::start_with(|t| set(t, "max_connections = 1024", "max_connections = 2")).await;
    let first = open_tls(&gw, b"http/1.1").await;
    let mut second = open_tls(&gw, b"http/1.1").await;
    let third = open_tls(&gw, b"http/1.1");
    tokio::pin!(third);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut third)
            .await
            .is_err(),
        "a third connection was served beyond max_connections = 2"
    );
    assert_eq!(
        metric(&gw.metrics().await, "scim_gateway_http_connections_open"),
        2.0
    );
    drop(first);
    let mut third = tokio::time::timeout(Duration::from_secs(3), third)
        .await
        .expect("the waiting connection was not accepted after one closed");
    for stream in [&mut second, &mut third] {
        let r = h1_get(stream, "/scim/v2/ServiceProviderConfig").await;
        assert_eq!(r.status(), 200, "{}", r.head);
    }
}
