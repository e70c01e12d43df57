//! The release binary against a directory that fails under load: slapd killed and restarted
//! while clients write, slapd frozen (SIGSTOP), the connection to it reset or black-holed by a
//! relay, and 1,000 TLS connections of mixed traffic (for as long as `SCIM_GATEWAY_SOAK_SECS`
//! asks, in soak mode). Each test records every request and its response, then checks the
//! responses against the error contract (503 with `Retry-After` while the directory is down, 504
//! while it does not answer, never a 500) and the directory against the acknowledged writes.

mod load;
mod relay;
pub(crate) mod release_gateway;

use crate::gateway::{first, people_dn, url_encode, TOKEN};
use crate::slapd::Slapd;
use relay::TcpRelay;
use release_gateway::{set_key, ReleaseGateway};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PEOPLE: &str = "ou=people,dc=example,dc=org";

/// What one request got, or why it got nothing.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: bytes::Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when empty or not JSON).
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// 503 with `Retry-After`, or 504: how the gateway says the directory is down or not answering.
    fn is_directory_failure(&self) -> bool {
        (self.status == 503 && self.retry_after.is_some()) || self.status == 504
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(r) = &self.retry_after {
            write!(f, " (Retry-After: {r})")?;
        }
        write!(f, " {}", String::from_utf8_lossy(&self.body))
    }
}

/// Sends `req` with the test token (and `body` as SCIM JSON); a transport failure is the error
/// with its causes.
async fn send(req: reqwest::RequestBuilder, body: Option<&Value>) -> Result<Reply, String> {
    let mut req = req.bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let resp = req.send().await.map_err(|e| causes(&e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = resp.bytes().await.map_err(|e| causes(&e))?;
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

/// An error and its sources on one line.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `GET /Users?filter=userName eq "<user_name>"`
fn filter_url(base: &str, user_name: &str) -> String {
    format!(
        "{base}/Users?filter={}",
        url_encode(&format!("userName eq \"{user_name}\""))
    )
}

fn user_body(user_name: &str, title: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "displayName": format!("Display {user_name}"),
        "title": title,
        "name": {"givenName": "Given", "familyName": format!("Family {user_name}")},
        "emails": [{"type": "work", "value": format!("{user_name}@example.org"), "primary": true}],
        "active": true
    })
}

fn title_patch(title: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": title}]
    })
}

/// Asserts that `entry` holds what [`user_body`] sent for `user_name` (the title aside).
#[track_caller]
fn assert_user_attributes(entry: &ldap3::SearchEntry, user_name: &str) {
    let expected = [
        ("uid", user_name.to_string()),
        ("mail", format!("{user_name}@example.org")),
        ("givenName", "Given".to_string()),
        ("sn", format!("Family {user_name}")),
        ("displayName", format!("Display {user_name}")),
    ];
    for (attribute, value) in expected {
        assert_eq!(
            first(entry, attribute).as_deref(),
            Some(value.as_str()),
            "{attribute} of {}: {:?}",
            entry.dn,
            entry.attrs
        );
    }
}

/// The entries below ou=people whose uid starts with `prefix`, by uid (several if duplicated).
async fn entries_by_uid(slapd: &Slapd, prefix: &str) -> BTreeMap<String, Vec<ldap3::SearchEntry>> {
    let mut found: BTreeMap<String, Vec<ldap3::SearchEntry>> = BTreeMap::new();
    let filter = format!("(uid={}*)", ldap3::ldap_escape(prefix));
    for entry in slapd.find(PEOPLE, &filter).await {
        let uid = first(&entry, "uid").unwrap_or_default();
        found.entry(uid).or_default().push(entry);
    }
    found
}

/// Runs a blocking fault injection (`kill`, `restart`) off the runtime's worker threads.
async fn with_slapd(slapd: Slapd, fault: impl FnOnce(&mut Slapd) + Send + 'static) -> Slapd {
    tokio::task::spawn_blocking(move || {
        let mut slapd = slapd;
        fault(&mut slapd);
        slapd
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. The directory crashes mid-load.

/// Concurrent clients writing while slapd is killed.
const CRASH_CLIENTS: usize = 8;
/// Load before the kill, outage length, load after the restart.
const BEFORE_CRASH: Duration = Duration::from_secs(2);
const OUTAGE: Duration = Duration::from_secs(2);
const AFTER_RESTART: Duration = Duration::from_secs(3);
/// How soon after slapd is back the gateway must serve again.
const RECOVERY_BOUND: Duration = Duration::from_secs(2);
/// A client's pause after a failure (a real client would honour Retry-After; a short pause keeps
/// the recovery measurable while not spinning).
const FAILURE_PAUSE: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
enum Write {
    Create {
        user_name: String,
        title: String,
    },
    Patch {
        user_name: String,
        id: String,
        title: String,
    },
}

impl Write {
    fn user_name(&self) -> &str {
        match self {
            Write::Create { user_name, .. } | Write::Patch { user_name, .. } => user_name,
        }
    }

    fn title(&self) -> &str {
        match self {
            Write::Create { title, .. } | Write::Patch { title, .. } => title,
        }
    }
}

/// One request of the crash test, as the client saw it.
#[derive(Debug)]
struct Attempt {
    client: usize,
    write: Write,
    started: Instant,
    ended: Instant,
    outcome: Result<Reply, String>,
}

impl Attempt {
    fn acknowledged(&self) -> bool {
        self.outcome.as_ref().is_ok_and(Reply::is_success)
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(reply) => write!(f, "client {} {:?} -> {reply}", self.client, self.write),
            Err(e) => write!(
                f,
                "client {} {:?} -> no response: {e}",
                self.client, self.write
            ),
        }
    }
}

async fn write_once(client: &reqwest::Client, base: &str, write: &Write) -> Result<Reply, String> {
    match write {
        Write::Create { user_name, title } => {
            send(
                client.post(format!("{base}/Users")),
                Some(&user_body(user_name, title)),
            )
            .await
        }
        Write::Patch { id, title, .. } => {
            send(
                client.patch(format!("{base}/Users/{id}")),
                Some(&title_patch(title)),
            )
            .await
        }
    }
}

/// One client: create a user, then update the newest user it has and an older one, until
/// `stop`. Every request is recorded in order.
async fn crash_client(
    index: usize,
    client: reqwest::Client,
    base: String,
    stop: Arc<AtomicBool>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    // Users whose creation was acknowledged: (userName, id).
    let mut created: Vec<(String, String)> = Vec::new();
    let mut sequence = 0usize;
    while !stop.load(Ordering::Relaxed) {
        sequence += 1;
        let user_name = format!("crash-{index}-{sequence}");
        let mut writes = vec![Write::Create {
            title: format!("{user_name} created"),
            user_name,
        }];
        if let Some(newest) = created.last() {
            let older = &created[(sequence * 7) % created.len()];
            for (user_name, id) in [newest, older] {
                sequence += 1;
                writes.push(Write::Patch {
                    user_name: user_name.clone(),
                    id: id.clone(),
                    title: format!("{user_name} patch {sequence}"),
                });
            }
        }
        for write in writes {
            let started = Instant::now();
            let outcome = write_once(&client, &base, &write).await;
            let attempt = Attempt {
                client: index,
                write,
                started,
                ended: Instant::now(),
                outcome,
            };
            if let (Write::Create { user_name, .. }, Ok(reply)) = (&attempt.write, &attempt.outcome)
            {
                if reply.status == 201 {
                    let id = reply.json()["id"].as_str().unwrap_or_default().to_string();
                    created.push((user_name.clone(), id));
                }
            }
            let failed = !attempt.acknowledged();
            attempts.push(attempt);
            if failed {
                tokio::time::sleep(FAILURE_PAUSE).await;
            }
        }
    }
    attempts
}

/// Every write to one user, in the order its client sent them.
#[derive(Default)]
struct UserHistory {
    /// From the 201, if the create was acknowledged.
    id: Option<String>,
    /// The title each write set, and whether it was acknowledged.
    writes: Vec<(String, bool)>,
}

impl UserHistory {
    /// The titles the directory may hold: the last acknowledged one, or one written after it
    /// by a request that failed (a write may be applied although its answer was lost).
    fn allowed_titles(&self) -> Vec<&str> {
        let last_ack = self.writes.iter().rposition(|(_, acked)| *acked);
        let from = last_ack.unwrap_or(0);
        self.writes[from..]
            .iter()
            .map(|(t, _)| t.as_str())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_when_the_directory_crashes_mid_load() {
    let slapd = Slapd::start();
    // Quotas off: this test is about the directory, and 8 clients writing flat out exceed the
    // demo's per-token write quota.
    let gw =
        ReleaseGateway::start(&slapd, |t| set_key(&t, "[rate_limits]", "enabled", "false")).await;
    let client = gw.client().build().unwrap();
    let warm = send(client.get(filter_url(&gw.base, "alice")), None).await;
    assert!(
        warm.as_ref().is_ok_and(|r| r.status == 200),
        "{warm:?}\n{}",
        gw.output()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CRASH_CLIENTS)
        .map(|i| {
            tokio::spawn(crash_client(
                i,
                client.clone(),
                gw.base.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(BEFORE_CRASH).await;
    let killed_at = Instant::now();
    let slapd = with_slapd(slapd, Slapd::kill).await;
    // From here on, no request can reach a directory.
    let dead_at = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let restart_called = Instant::now();
    let slapd = with_slapd(slapd, Slapd::restart).await;
    let restarted_at = Instant::now();
    tokio::time::sleep(AFTER_RESTART).await;
    stop.store(true, Ordering::Relaxed);
    let mut attempts = Vec::new();
    for c in clients {
        attempts.extend(c.await.unwrap());
    }

    // The responses: no transport failure, and nothing but success, 503 + Retry-After or 504.
    let mut unexpected = Vec::new();
    for a in &attempts {
        let fine = match (&a.write, &a.outcome) {
            (Write::Create { .. }, Ok(r)) => r.status == 201 || r.is_directory_failure(),
            (Write::Patch { .. }, Ok(r)) => r.status == 200 || r.is_directory_failure(),
            (_, Err(_)) => false,
        };
        if !fine {
            unexpected.push(a.to_string());
        }
    }
    assert!(
        unexpected.is_empty(),
        "{} of {} requests got an answer outside the contract:\n{}\n{}",
        unexpected.len(),
        attempts.len(),
        unexpected.join("\n"),
        gw.output()
    );
    let during_outage: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.ended > dead_at && a.ended < restarted_at)
        .collect();
    let refused = during_outage
        .iter()
        .filter(|a| a.outcome.as_ref().is_ok_and(|r| r.status == 503))
        .count();
    let timed_out = during_outage
        .iter()
        .filter(|a| a.outcome.as_ref().is_ok_and(|r| r.status == 504))
        .count();
    assert!(
        refused > 0,
        "no request was refused while slapd was down: the outage was not exercised\n{}",
        gw.output()
    );
    let first_success = attempts
        .iter()
        .filter(|a| a.started > dead_at && a.acknowledged())
        .map(|a| a.ended)
        .min()
        .unwrap_or_else(|| panic!("no request succeeded after the restart\n{}", gw.output()));
    let recovery = first_success.saturating_duration_since(restarted_at);
    assert!(
        recovery < RECOVERY_BOUND,
        "the first success came {recovery:?} after slapd was back\n{}",
        gw.output()
    );

    // The directory: every acknowledged write is there, and nothing is duplicated.
    let mut histories: BTreeMap<String, UserHistory> = BTreeMap::new();
    let mut failed_creates: Vec<&Attempt> = Vec::new();
    for a in &attempts {
        let history = histories
            .entry(a.write.user_name().to_string())
            .or_default();
        history
            .writes
            .push((a.write.title().to_string(), a.acknowledged()));
        if let (Write::Create { .. }, Ok(reply)) = (&a.write, &a.outcome) {
            if reply.status == 201 {
                history.id = reply.json()["id"].as_str().map(str::to_string);
            } else {
                failed_creates.push(a);
            }
        }
    }
    let stored = entries_by_uid(&slapd, "crash-").await;
    let mut acknowledged_users = 0;
    for (user_name, history) in &histories {
        let Some(id) = &history.id else { continue };
        acknowledged_users += 1;
        let entries = stored.get(user_name).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            entries.len(),
            1,
            "{user_name} was created (201, id {id}) and must be in the directory once: {entries:?}"
        );
        assert_eq!(
            first(&entries[0], "entryUUID").as_deref(),
            Some(id.as_str())
        );
        assert_user_attributes(&entries[0], user_name);
        let title = first(&entries[0], "title").unwrap_or_default();
        let allowed = history.allowed_titles();
        assert!(
            allowed.contains(&title.as_str()),
            "{user_name} holds title {title:?}; its writes (title, acknowledged) were {:?}, so it \
             must hold one of {allowed:?}",
            history.writes
        );
    }

    // A failed create was applied or not; retried once, it converges on one entry.
    let mut retried_created = 0;
    let mut retried_conflict = 0;
    for a in &failed_creates {
        let user_name = a.write.user_name();
        let retry = write_once(&client, &gw.base, &a.write).await;
        match &retry {
            Ok(r) if r.status == 201 => retried_created += 1,
            Ok(r) if r.status == 409 => retried_conflict += 1,
            other => panic!(
                "retrying the failed create of {user_name} got {other:?}, expected 201 or 409\n{}",
                gw.output()
            ),
        }
        let entries = slapd.find(PEOPLE, &format!("(uid={user_name})")).await;
        assert_eq!(
            entries.len(),
            1,
            "after the retry {user_name} must be in the directory once: {entries:?}"
        );
        assert_user_attributes(&entries[0], user_name);
        assert_eq!(
            first(&entries[0], "title"),
            Some(a.write.title().to_string())
        );
    }

    // A user whose last update failed: retried, the update takes.
    let mut retried_patches = 0;
    for (user_name, history) in &histories {
        let last = attempts
            .iter()
            .rev()
            .find(|a| a.write.user_name() == user_name)
            .unwrap();
        if history.id.is_none() || last.acknowledged() {
            continue;
        }
        retried_patches += 1;
        let retry = write_once(&client, &gw.base, &last.write).await;
        assert!(
            retry.as_ref().is_ok_and(|r| r.status == 200),
            "retrying {last} got {retry:?}\n{}",
            gw.output()
        );
        let entry = slapd.entry(&people_dn(user_name)).await.unwrap();
        assert_eq!(first(&entry, "title").as_deref(), Some(last.write.title()));
    }

    let acknowledged = attempts.iter().filter(|a| a.acknowledged()).count();
    assert!(
        acknowledged_users >= CRASH_CLIENTS * 5,
        "only {acknowledged_users} users were created: too little load to prove anything"
    );
    eprintln!(
        "crash mid-load: {} requests ({acknowledged} acknowledged) from {CRASH_CLIENTS} clients; \
         {acknowledged_users} users created and all found; kill took {:?}, outage {:?} (dead to \
         restart), {refused} answered 503 and {timed_out} 504 meanwhile; restart took {:?}; \
         first success {recovery:?} after slapd was back; {} failed creates retried \
         ({retried_created} created, {retried_conflict} already there), {retried_patches} failed \
         updates retried",
        attempts.len(),
        dead_at - killed_at,
        restart_called - dead_at,
        restarted_at - restart_called,
        failed_creates.len(),
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The directory hangs (SIGSTOP).

const HANG_OPERATION_TIMEOUT: Duration = Duration::from_secs(2);
const HANG_MAX_IN_FLIGHT: usize = 4;
const HANG_MAX_QUEUED: usize = 8;
const HANG_QUEUE_TIMEOUT: Duration = Duration::from_millis(500);
/// The gateway gives ldap3 this long beyond the operation timeout before it gives up itself.
const GATEWAY_TIMEOUT_SLACK: Duration = Duration::from_millis(250);
/// Scheduling on a shared machine.
const TIMING_MARGIN: Duration = Duration::from_millis(750);
const HANG_CLIENTS: usize = 16;
const HANG_STREAM: Duration = Duration::from_secs(8);
/// Allocator warm-up: RSS is compared from this point of the stream on.
const HANG_WARM_UP: Duration = Duration::from_secs(2);
/// How much the resident memory may grow over the stream.
const HANG_RSS_GROWTH_KIB: u64 = 4 * 1024;

/// One request sent while the directory hung.
struct Timed {
    took: Duration,
    what: &'static str,
    outcome: Result<Reply, String>,
}

/// Reads (a filtered GET) and every fourth a create, until `stop`.
async fn hang_client(
    index: usize,
    client: reqwest::Client,
    base: String,
    stop: Arc<AtomicBool>,
) -> Vec<Timed> {
    let mut sent = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let (what, outcome) = if n % 4 == 0 {
            let user_name = format!("hang-{index}-{n}");
            let body = user_body(&user_name, "hung");
            (
                "POST /Users",
                send(client.post(format!("{base}/Users")), Some(&body)).await,
            )
        } else {
            (
                "GET /Users?filter",
                send(client.get(filter_url(&base, "alice")), None).await,
            )
        };
        let refused = outcome.as_ref().is_ok_and(|r| r.status == 503);
        sent.push(Timed {
            took: started.elapsed(),
            what,
            outcome,
        });
        if refused {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_directory_bounds_time_queued_work_and_memory() {
    let slapd = Slapd::start();
    let gw = ReleaseGateway::start(&slapd, |t| {
        let t = set_key(
            &t,
            "[directory]",
            "operation_timeout_secs",
            &HANG_OPERATION_TIMEOUT.as_secs().to_string(),
        );
        let t = set_key(
            &t,
            "[directory]",
            "max_in_flight",
            &HANG_MAX_IN_FLIGHT.to_string(),
        );
        let t = set_key(
            &t,
            "[directory]",
            "max_queued",
            &HANG_MAX_QUEUED.to_string(),
        );
        let t = set_key(
            &t,
            "[directory]",
            "queue_timeout_ms",
            &HANG_QUEUE_TIMEOUT.as_millis().to_string(),
        );
        // Quotas off: the stream below is far beyond the demo's per-token quotas.
        set_key(&t, "[rate_limits]", "enabled", "false")
    })
    .await;
    let client = gw.client().build().unwrap();
    for _ in 0..20 {
        let r = send(client.get(filter_url(&gw.base, "alice")), None).await;
        assert!(
            r.as_ref().is_ok_and(|r| r.status == 200),
            "{r:?}\n{}",
            gw.output()
        );
    }

    slapd.pause();
    // Alone, a request ends with 504 once the operation timeout is over.
    let started = Instant::now();
    let alone = send(client.get(filter_url(&gw.base, "alice")), None).await;
    let alone_took = started.elapsed();
    let alone_bound = HANG_OPERATION_TIMEOUT + GATEWAY_TIMEOUT_SLACK + TIMING_MARGIN;
    if !(alone.as_ref().is_ok_and(|r| r.status == 504)
        && alone_took >= HANG_OPERATION_TIMEOUT
        && alone_took <= alone_bound)
    {
        slapd.resume();
        panic!(
            "a request to the hung directory got {alone:?} after {alone_took:?}; expected 504 \
             after {HANG_OPERATION_TIMEOUT:?} to {alone_bound:?}\n{}",
            gw.output()
        );
    }

    // A stream of requests: work stays bounded, and so does memory.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..HANG_CLIENTS)
        .map(|i| {
            tokio::spawn(hang_client(
                i,
                client.clone(),
                gw.base.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let stream_started = Instant::now();
    let (mut most_in_flight, mut most_queued) = (0.0f64, 0.0f64);
    let mut rss: Vec<(Duration, u64)> = Vec::new();
    while stream_started.elapsed() < HANG_STREAM {
        let m = gw.metrics().await;
        most_in_flight = most_in_flight.max(m.value("scim_gateway_directory_operations_in_flight"));
        most_queued = most_queued.max(m.value("scim_gateway_directory_operations_queued"));
        rss.push((stream_started.elapsed(), gw.rss_kib()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for c in clients {
        sent.extend(c.await.unwrap());
    }
    let rss_after_stream = gw.rss_kib();
    slapd.resume();

    let bound = HANG_QUEUE_TIMEOUT + HANG_OPERATION_TIMEOUT + GATEWAY_TIMEOUT_SLACK + TIMING_MARGIN;
    let late_or_wrong: Vec<String> = sent
        .iter()
        .filter(|t| !(t.outcome.as_ref().is_ok_and(Reply::is_directory_failure) && t.took <= bound))
        .map(|t| format!("{} after {:?}: {:?}", t.what, t.took, t.outcome))
        .collect();
    assert!(
        late_or_wrong.is_empty(),
        "{} of {} requests to the hung directory did not end with 503 + Retry-After or 504 \
         within {bound:?}:\n{}\n{}",
        late_or_wrong.len(),
        sent.len(),
        late_or_wrong.join("\n"),
        gw.output()
    );
    let count = |status: u16| {
        sent.iter()
            .filter(|t| t.outcome.as_ref().is_ok_and(|r| r.status == status))
            .count()
    };
    let (timed_out, refused) = (count(504), count(503));
    assert!(
        timed_out > 0 && refused > 0,
        "504: {timed_out}, 503: {refused}"
    );
    assert!(
        most_in_flight <= HANG_MAX_IN_FLIGHT as f64 && most_queued <= HANG_MAX_QUEUED as f64,
        "in flight {most_in_flight} (max {HANG_MAX_IN_FLIGHT}), queued {most_queued} (max \
         {HANG_MAX_QUEUED})"
    );
    // The limits were reached, so the bounds above were tested.
    assert_eq!(most_in_flight, HANG_MAX_IN_FLIGHT as f64);
    assert!(most_queued >= 1.0, "nothing was ever queued");
    let warmed: Vec<u64> = rss
        .iter()
        .filter(|(at, _)| *at >= HANG_WARM_UP)
        .map(|(_, kib)| *kib)
        .collect();
    let rss_warm = warmed[0];
    let rss_peak = warmed
        .iter()
        .copied()
        .max()
        .unwrap_or(rss_warm)
        .max(rss_after_stream);
    assert!(
        rss_peak <= rss_warm + HANG_RSS_GROWTH_KIB,
        "the gateway's RSS grew from {rss_warm} KiB to {rss_peak} KiB over {} requests to a \
         hung directory; samples: {rss:?}",
        sent.len()
    );

    // SIGCONT: served again, and the timed-out operations are gone from the gauges.
    let resumed = Instant::now();
    loop {
        let r = send(client.get(filter_url(&gw.base, "alice")), None).await;
        if r.as_ref().is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            resumed.elapsed() < RECOVERY_BOUND,
            "still {r:?} {:?} after SIGCONT\n{}",
            resumed.elapsed(),
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovery = resumed.elapsed();
    loop {
        let m = gw.metrics().await;
        let busy = m.value("scim_gateway_directory_operations_in_flight")
            + m.value("scim_gateway_directory_operations_queued");
        if busy == 0.0 {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(5),
            "directory work still in flight or queued 5 s after SIGCONT:\n{}",
            m.0
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = user_body("after-the-hang", "back");
    let created = send(client.post(format!("{}/Users", gw.base)), Some(&body)).await;
    assert!(
        created.as_ref().is_ok_and(|r| r.status == 201),
        "{created:?}"
    );
    let entry = slapd.entry(&people_dn("after-the-hang")).await;
    assert!(entry.is_some_and(|e| first(&e, "title").as_deref() == Some("back")));
    eprintln!(
        "hung directory: alone 504 after {alone_took:?}; stream of {} requests ({timed_out} \
         504, {refused} 503), slowest {:?}; at most {most_in_flight} in flight and {most_queued} \
         queued; RSS {rss_warm} KiB after warm-up, at most {rss_peak} KiB; served again \
         {recovery:?} after SIGCONT",
        sent.len(),
        sent.iter().map(|t| t.took).max().unwrap_or_default(),
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The connection to the directory is cut (reset) or black-holed.

const CUT_OPERATION_TIMEOUT: Duration = Duration::from_secs(2);
const CUT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How soon after a reset requests must succeed again.
const RESET_RECOVERY_BOUND: Duration = Duration::from_secs(1);

/// GET requests every 20 ms until one answers 200; how long that took. Meanwhile only 503 with
/// Retry-After and 504 are acceptable, and each request must end within `per_request`.
async fn until_served(
    gw: &ReleaseGateway,
    client: &reqwest::Client,
    bound: Duration,
    per_request: Duration,
    what: &str,
) -> Duration {
    let started = Instant::now();
    loop {
        let sent = Instant::now();
        let r = send(client.get(filter_url(&gw.base, "alice")), None).await;
        let took = sent.elapsed();
        match &r {
            Ok(reply) if reply.status == 200 => return started.elapsed(),
            Ok(reply) if reply.is_directory_failure() && took <= per_request => {}
            other => panic!(
                "{what}: a request got {other:?} after {took:?}\n{}",
                gw.output()
            ),
        }
        assert!(
            started.elapsed() < bound,
            "{what}: not served within {bound:?}; last answer {r:?}\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_or_black_holed_directory_connection_fails_in_bounded_time_and_recovers() {
    let slapd = Slapd::start();
    let relay = TcpRelay::start(format!("127.0.0.1:{}", slapd.port).parse().unwrap()).await;
    let gw = ReleaseGateway::start(&slapd, |t| {
        // Quotas off: the readers below send as fast as they can.
        let t = set_key(&t, "[rate_limits]", "enabled", "false");
        let t = set_key(&t, "[directory]", "url", &format!("{:?}", relay.url()));
        let t = set_key(
            &t,
            "[directory]",
            "operation_timeout_secs",
            &CUT_OPERATION_TIMEOUT.as_secs().to_string(),
        );
        set_key(
            &t,
            "[directory]",
            "connect_timeout_secs",
            &CUT_CONNECT_TIMEOUT.as_secs().to_string(),
        )
    })
    .await;
    let client = gw.client().build().unwrap();
    let op_bound = CUT_OPERATION_TIMEOUT + GATEWAY_TIMEOUT_SLACK + TIMING_MARGIN;
    until_served(&gw, &client, Duration::from_secs(5), op_bound, "start").await;
    let pool_size = 4.0;
    let open = r#"scim_gateway_directory_pool_connections{state="open"}"#;
    let before = wait_for_metric(&gw, open, pool_size).await;
    let reconnects_before = before.value("scim_gateway_directory_reconnects_total");
    let relayed_before = relay.accepted();

    // Reset under load: cut requests fail fast with 503, and the pool reconnects at once.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, stop) = (client.clone(), filter_url(&gw.base, "alice"), stop.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let outcome = send(client.get(&url), None).await;
                    sent.push((started, started.elapsed(), outcome));
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reset_at = Instant::now();
    relay.reset_all();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for r in readers {
        sent.extend(r.await.unwrap());
    }
    let wrong: Vec<String> = sent
        .iter()
        .filter(|(_, took, o)| {
            !o.as_ref()
                .is_ok_and(|r| r.status == 200 || (r.is_directory_failure() && *took <= op_bound))
        })
        .map(|(_, took, o)| format!("after {took:?}: {o:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "requests around the reset:\n{}\n{}",
        wrong.join("\n"),
        gw.output()
    );
    let cut = sent
        .iter()
        .filter(|(_, _, o)| o.as_ref().is_ok_and(|r| r.status != 200))
        .count();
    let reset_recovery = sent
        .iter()
        .filter(|(started, _, o)| *started >= reset_at && o.as_ref().is_ok_and(|r| r.status == 200))
        .map(|(started, took, _)| (*started + *took).saturating_duration_since(reset_at))
        .min()
        .unwrap_or_else(|| panic!("no request succeeded after the reset\n{}", gw.output()));
    assert!(
        reset_recovery <= RESET_RECOVERY_BOUND,
        "the first success came {reset_recovery:?} after the reset\n{}",
        gw.output()
    );
    let after = wait_for_metric(&gw, open, pool_size).await;
    let reconnects = after.value("scim_gateway_directory_reconnects_total") - reconnects_before;
    assert!(
        reconnects >= pool_size,
        "{reconnects} reconnects after resetting all {pool_size} connections"
    );
    assert!(
        relay.accepted() >= relayed_before + 4,
        "{}",
        relay.accepted()
    );
    let body = user_body("after-the-reset", "reset");
    let created = send(client.post(format!("{}/Users", gw.base)), Some(&body)).await;
    assert!(
        created.as_ref().is_ok_and(|r| r.status == 201),
        "{created:?}\n{}",
        gw.output()
    );
    assert!(slapd.entry(&people_dn("after-the-reset")).await.is_some());

    // Black hole: the sockets stay open and nothing comes back; every request still ends.
    relay.blackhole(true);
    let mut held = Vec::new();
    for i in 0..6 {
        let client = client.clone();
        let base = gw.base.clone();
        held.push(tokio::spawn(async move {
            let started = Instant::now();
            let outcome = if i % 3 == 0 {
                let body = user_body(&format!("black-holed-{i}"), "lost");
                send(client.post(format!("{base}/Users")), Some(&body)).await
            } else {
                send(client.get(filter_url(&base, "alice")), None).await
            };
            (started.elapsed(), outcome)
        }));
    }
    let mut blackhole_slowest = Duration::ZERO;
    for h in held {
        let (took, outcome) = tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .unwrap_or_else(|_| panic!("a request hung for 30 s on a black hole\n{}", gw.output()))
            .unwrap();
        assert!(
            outcome.as_ref().is_ok_and(|r| r.status == 504) && took <= op_bound,
            "black hole: {outcome:?} after {took:?}, expected 504 within {op_bound:?}\n{}",
            gw.output()
        );
        blackhole_slowest = blackhole_slowest.max(took);
    }
    relay.blackhole(false);
    let unblackholed = until_served(
        &gw,
        &client,
        RECOVERY_BOUND,
        op_bound,
        "after the black hole",
    )
    .await;

    // Reset into a black hole: new connections are accepted and never answered. A request
    // waits at most the connect timeout for a connection, then gets 503.
    relay.blackhole(true);
    relay.reset_all();
    let connect_bound = CUT_CONNECT_TIMEOUT + TIMING_MARGIN;
    let started = Instant::now();
    let mut partitioned = 0;
    let mut partition_slowest = Duration::ZERO;
    while started.elapsed() < CUT_CONNECT_TIMEOUT + Duration::from_secs(2) {
        let sent = Instant::now();
        let r = send(client.get(filter_url(&gw.base, "alice")), None).await;
        let took = sent.elapsed();
        assert!(
            r.as_ref()
                .is_ok_and(|r| r.status == 503 && r.retry_after.is_some())
                && took <= connect_bound,
            "partitioned: {r:?} after {took:?}, expected 503 + Retry-After within \
             {connect_bound:?}\n{}",
            gw.output()
        );
        partitioned += 1;
        partition_slowest = partition_slowest.max(took);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.blackhole(false);
    let healed = until_served(
        &gw,
        &client,
        RECOVERY_BOUND,
        connect_bound,
        "after the partition",
    )
    .await;
    let body = user_body("after-the-partition", "healed");
    let created = send(client.post(format!("{}/Users", gw.base)), Some(&body)).await;
    assert!(
        created.as_ref().is_ok_and(|r| r.status == 201),
        "{created:?}\n{}",
        gw.output()
    );
    assert!(slapd
        .entry(&people_dn("after-the-partition"))
        .await
        .is_some());
    eprintln!(
        "connection cut: reset -> {cut} requests cut with 503, first success {reset_recovery:?} \
         after the reset, {reconnects} reconnects; black hole -> 504 within {blackhole_slowest:?}, \
         served {unblackholed:?} after it lifted; partition -> {partitioned} requests, 503 within \
         {partition_slowest:?}, served {healed:?} after it healed"
    );
}

/// Scrapes until the sample `name` equals `value`; panics after 5 s.
async fn wait_for_metric(
    gw: &ReleaseGateway,
    name: &str,
    value: f64,
) -> release_gateway::Exposition {
    let started = Instant::now();
    loop {
        let m = gw.metrics().await;
        if m.value(name) == value {
            return m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name} is not {value} after 5 s:\n{}\n{}",
            m.0,
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4 and 5. 1,000 TLS connections of mixed traffic; in soak mode for as long as asked.

const LOAD_CONNECTIONS: usize = 1000;
/// The load's length in CI; `SCIM_GATEWAY_SOAK_SECS` replaces it.
const LOAD_DURATION: Duration = Duration::from_secs(12);
const SOAK_VARIABLE: &str = "SCIM_GATEWAY_SOAK_SECS";
/// RSS sampling: every second in CI, every 30 s in soak mode (more often in a soak shorter than
/// 10 minutes, so that the trend has 20 samples).
const LOAD_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
const SOAK_SAMPLE_INTERVAL: Duration = Duration::from_secs(30);
/// Each connection pauses this long after each request: about 180 requests/s from all of them,
/// below what slapd writes on a small shared machine (the gateway's own limits are not what is
/// measured). Under the 10 s in which the gateway closes an idle HTTP/1.1 connection.
const THINK: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(8));
/// Bounds that catch a gateway gone wrong, far above what it measures (see the README).
const LOAD_PEAK_RSS_MIB: u64 = 256;
const LOAD_P99: Duration = Duration::from_secs(2);
/// TLS handshakes in progress at once while the connections open.
const OPENING_CONCURRENCY: usize = 50;
/// The quotas for the load: far above what it sends, so that the quota code runs on every
/// request without refusing any (the demo's 100 reads/s and 50 writes/s per token would refuse
/// most of it, and that is tested elsewhere).
const LOAD_QUOTA: &str = "{ per_second = 100000, burst = 100000 }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tls_connections_of_mixed_traffic_keep_memory_flat() {
    let (duration, interval) = match std::env::var(SOAK_VARIABLE) {
        Ok(secs) => {
            let secs: u64 = secs.parse().unwrap_or_else(|e| {
                panic!("{SOAK_VARIABLE}={secs:?} is not a number of seconds: {e}")
            });
            let duration = Duration::from_secs(secs);
            let interval = (duration / 20).clamp(LOAD_SAMPLE_INTERVAL, SOAK_SAMPLE_INTERVAL);
            (duration, interval)
        }
        Err(_) => (LOAD_DURATION, LOAD_SAMPLE_INTERVAL),
    };
    // Each process holds a socket per connection, plus its own files.
    release_gateway::ensure_open_files(LOAD_CONNECTIONS as u64 + 512);
    let seed = tempfile::tempdir().unwrap();
    let users = seed.path().join("load-users.ldif");
    load::write_users_ldif(&users, LOAD_CONNECTIONS);
    let slapd = Slapd::start_with_ldif(&users);
    let gw = ReleaseGateway::start(&slapd, |t| {
        ["global_read", "global_write", "token_read", "token_write"]
            .into_iter()
            .fold(t, |t, quota| {
                set_key(&t, "[rate_limits]", quota, LOAD_QUOTA)
            })
    })
    .await;

    let opening = Arc::new(tokio::sync::Semaphore::new(OPENING_CONCURRENCY));
    let (opened, mut opened_rx) = tokio::sync::mpsc::channel(LOAD_CONNECTIONS);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let opening_started = Instant::now();
    let connections: Vec<_> = (0..LOAD_CONNECTIONS)
        .map(|index| {
            let connection = load::Connection {
                index,
                client: gw
                    .client()
                    .http1_only()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap(),
                base: gw.base.clone(),
                think: THINK,
            };
            tokio::spawn(connection.run(opening.clone(), opened.clone(), stopping.clone()))
        })
        .collect();
    for n in 0..LOAD_CONNECTIONS {
        tokio::time::timeout(Duration::from_secs(60), opened_rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {n} of {LOAD_CONNECTIONS} connections opened within 60 s\n{}",
                    gw.output()
                )
            });
    }
    // Connections opened first are already sending: the load is on from here.
    let opening_took = opening_started.elapsed();
    let load_started = Instant::now();
    let rss_at_start = gw.rss_kib();

    let mut rss: Vec<u64> = Vec::new();
    let mut fewest_open = f64::INFINITY;
    let mut next_sample = load_started + interval;
    while next_sample <= load_started + duration {
        tokio::time::sleep_until(next_sample.into()).await;
        next_sample += interval;
        let open = gw
            .metrics()
            .await
            .value("scim_gateway_http_connections_open");
        fewest_open = fewest_open.min(open);
        let kib = gw.rss_kib();
        rss.push(kib);
        eprintln!(
            "load: {:>7.1} s  RSS {:>7.1} MiB  {open} connections open",
            load_started.elapsed().as_secs_f64(),
            kib as f64 / 1024.0
        );
    }
    stop.send_replace(true);
    let mut samples = Vec::new();
    let mut violations = Vec::new();
    for c in connections {
        let report = c.await.unwrap();
        samples.extend(report.samples);
        violations.extend(report.violations);
    }
    let load_took = load_started.elapsed();
    let peak_rss = gw.peak_rss_kib();
    let end = gw.metrics().await;
    let overload = end
        .get("scim_gateway_http_overload_rejections_total")
        .unwrap_or(0.0);
    let backpressure = ["queue_full", "queue_timeout"]
        .into_iter()
        .filter_map(|reason| {
            end.get(&format!(
                "scim_gateway_directory_backpressure_rejections_total{{reason=\"{reason}\"}}"
            ))
        })
        .sum::<f64>();

    assert!(
        violations.is_empty(),
        "{} answers outside the contract (the first 20):\n{}\n{}",
        violations.len(),
        violations
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        gw.output()
    );
    assert!(
        fewest_open >= LOAD_CONNECTIONS as f64,
        "only {fewest_open} client connections were open at one point of the load"
    );
    let succeeded: Vec<Duration> = {
        let mut d: Vec<Duration> = samples
            .iter()
            .filter(|s| s.outcome.as_ref().is_ok_and(|st| (200..300).contains(st)))
            .map(|s| s.took)
            .collect();
        d.sort();
        d
    };
    let mut all: Vec<Duration> = samples.iter().map(|s| s.took).collect();
    all.sort();
    let status_count = |status: u16| {
        samples
            .iter()
            .filter(|s| s.outcome.as_ref().is_ok_and(|st| *st == status))
            .count()
    };
    let (throttled, overloaded) = (status_count(429), status_count(503));
    let reads = samples.iter().filter(|s| s.step.is_read()).count();
    let p99 = load::quantile(&all, 0.99);
    eprintln!(
        "load: {LOAD_CONNECTIONS} connections opened in {opening_took:?}; {} requests in \
         {load_took:?} ({:.0}/s; {reads} reads, {} writes): {} succeeded, {throttled} 429, \
         {overloaded} 503 ({overload} over max_concurrent_requests, {backpressure} by directory \
         back-pressure); latency p50 {:?}, p99 {p99:?}, max {:?} (successes: p50 {:?}, p99 \
         {:?}); gateway RSS {:.1} MiB at the start of the load, peak {:.1} MiB",
        samples.len(),
        samples.len() as f64 / load_took.as_secs_f64(),
        samples.len() - reads,
        succeeded.len(),
        load::quantile(&all, 0.5),
        all.last().copied().unwrap_or_default(),
        load::quantile(&succeeded, 0.5),
        load::quantile(&succeeded, 0.99),
        rss_at_start as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
    );
    // The load stays below capacity: refusals are the exception, not what was measured.
    assert!(
        succeeded.len() * 10 >= samples.len() * 9,
        "only {} of {} requests succeeded\n{}",
        succeeded.len(),
        samples.len(),
        gw.output()
    );
    assert!(
        p99 <= LOAD_P99,
        "p99 latency {p99:?} over {LOAD_P99:?}\n{}",
        gw.output()
    );
    assert!(
        peak_rss <= LOAD_PEAK_RSS_MIB * 1024,
        "the gateway's peak RSS was {peak_rss} KiB with {LOAD_CONNECTIONS} connections"
    );

    // Flat memory: the last quarter of the run holds no more than the second (the first is
    // warm-up) plus 10 %.
    assert!(rss.len() >= 4, "too few RSS samples: {rss:?}");
    let quarter = |q: usize| {
        let part = &rss[q * rss.len() / 4..(q + 1) * rss.len() / 4];
        part.iter().sum::<u64>() as f64 / part.len() as f64
    };
    let (second, last) = (quarter(1), quarter(3));
    eprintln!(
        "load: RSS trend: second quarter {:.1} MiB, last quarter {:.1} MiB ({:+.1} %)",
        second / 1024.0,
        last / 1024.0,
        (last / second - 1.0) * 100.0
    );
    assert!(
        last <= second * 1.10,
        "the gateway's memory grew under steady load: second quarter {second:.0} KiB, last \
         quarter {last:.0} KiB; samples (KiB, every {interval:?}): {rss:?}"
    );
}
