//! The gateway against a directory that fails: killed and restarted, hung, and
//! reached over TLS (ldaps and StartTLS) with and without a trusted CA.
//! Every test checks both the HTTP responses and what the directory holds.

use crate::gateway::{first, RunningGateway, TestGateway};
use crate::slapd::{Slapd, TlsMaterial, ADMIN_DN, SERVICE_DN, SUFFIX};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ALICE: &str = "userName eq \"alice\"";
/// How long the gateway may take to serve again once the directory is back.
const RECOVERY_BOUND: Duration = Duration::from_secs(2);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// `text` with the one occurrence of `from` replaced: a drifted demo config
/// must fail here instead of silently running the test with other settings.
fn replace_one(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected exactly one {from:?} in the config"
    );
    text.replace(from, to)
}

/// `text` with the `[directory]` url replaced by `url` and `extra` keys
/// inserted right after it.
fn directory_url(text: &str, url: &str, extra: &[String]) -> String {
    let mut out = String::new();
    let mut replaced = 0;
    for line in text.lines() {
        if line.starts_with("url = \"ldap://127.0.0.1:") {
            replaced += 1;
            out.push_str(&format!("url = {url:?}\n"));
            for key in extra {
                out.push_str(key);
                out.push('\n');
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(replaced, 1, "expected one directory url line in:\n{text}");
    out
}

fn user_body(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Fault", "familyName": "Tolerant"},
        "emails": [{"type": "work", "value": format!("{user_name}@example.org"), "primary": true}],
        "active": true
    })
}

/// POST /Users with [`user_body`]; the new id.
async fn create(gw: &RunningGateway, user_name: &str) -> String {
    let r = gw.post("/Users", &user_body(user_name)).await.expect(201);
    r.body["id"].as_str().unwrap().to_string()
}

/// Asserts the directory holds exactly one entry with `uid`, whose entryUUID is `id`.
async fn assert_stored(slapd: &Slapd, uid: &str, id: &str) {
    let found = slapd.find(SUFFIX, &format!("(uid={uid})")).await;
    assert_eq!(found.len(), 1, "{uid} should be in the directory once");
    assert_eq!(first(&found[0], "entryUUID").as_deref(), Some(id));
    assert_eq!(
        first(&found[0], "mail").as_deref(),
        Some(format!("{uid}@example.org").as_str())
    );
}

async fn assert_absent(slapd: &Slapd, uid: &str) {
    let found = slapd.find(SUFFIX, &format!("(uid={uid})")).await;
    assert!(found.is_empty(), "{uid} must not be in the directory");
}

/// Repeats `GET /Users?filter=userName eq "alice"` every 100 ms until it
/// answers 200 (and returns how long that took) or `bound` has passed.
/// Meanwhile only `allowed` statuses are acceptable.
async fn wait_until_served(gw: &TestGateway, bound: Duration, allowed: &[u16]) -> Duration {
    let started = Instant::now();
    loop {
        let r = gw.filter(ALICE).await;
        if r.status == 200 {
            assert_eq!(r.body["totalResults"], 1, "{}", r.body);
            return started.elapsed();
        }
        assert!(
            allowed.contains(&r.status.as_u16()),
            "unexpected {} while waiting for the directory: {}",
            r.status,
            r.body
        );
        assert!(
            started.elapsed() < bound,
            "still {} after {:?}: {}",
            r.status,
            started.elapsed(),
            r.body
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[tokio::test]
async fn recovers_after_the_directory_restarts() {
    // The default connect timeout: a directory known to be down must not make requests wait for it.
    let mut gw = TestGateway::start().await;
    let r = gw.filter(ALICE).await.expect(200);
    assert_eq!(r.body["totalResults"], 1);
    let port = gw.slapd.port;
    let old_pid = gw.slapd.pid();

    gw.slapd.kill();
    assert!(!gw.slapd.is_running());
    let started = Instant::now();
    let r = gw.filter(ALICE).await.expect_error(503, None);
    let read_took = started.elapsed();
    assert_eq!(r.headers["retry-after"], "5");
    assert!(read_took < Duration::from_secs(1), "503 took {read_took:?}");
    let started = Instant::now();
    let r = gw
        .post("/Users", &user_body("during-outage"))
        .await
        .expect_error(503, None);
    let write_took = started.elapsed();
    assert_eq!(r.headers["retry-after"], "5");
    assert!(
        write_took < Duration::from_secs(1),
        "503 took {write_took:?}"
    );

    gw.slapd.restart();
    assert_eq!(gw.slapd.port, port, "restart must keep the port");
    assert_ne!(gw.slapd.pid(), old_pid);
    let recovery = wait_until_served(&gw, RECOVERY_BOUND, &[503]).await;
    eprintln!(
        "outage: read 503 after {read_took:?}, write 503 after {write_took:?}; \
         served again {recovery:?} after the restart"
    );

    let id = create(&gw, "after-restart").await;
    let r = gw.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(r.body["userName"], "after-restart");
    assert_stored(&gw.slapd, "after-restart", &id).await;
    // The write refused during the outage was not applied later.
    assert_absent(&gw.slapd, "during-outage").await;
}

#[tokio::test]
async fn a_hung_directory_gives_504_within_the_operation_timeout() {
    let gw = TestGateway::start_with(|t| {
        replace_one(
            &t,
            "operation_timeout_secs = 10",
            "operation_timeout_secs = 1",
        )
    })
    .await;
    gw.filter(ALICE).await.expect(200);

    gw.slapd.pause();
    let started = Instant::now();
    let r = gw.filter(ALICE).await;
    let took = started.elapsed();
    // Continue slapd before asserting, so that a failure does not leave it frozen for long.
    gw.slapd.resume();
    r.expect_error(504, None);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "504 after {took:?}, expected about the 1 s operation timeout"
    );

    let recovery = wait_until_served(&gw, RECOVERY_BOUND, &[503, 504]).await;
    eprintln!("hung directory: 504 after {took:?}; served again {recovery:?} after SIGCONT");
    let id = create(&gw, "after-hang").await;
    assert_stored(&gw.slapd, "after-hang", &id).await;
}

/// GET /Users?filter=userName eq "<user_name>": the number of matches.
async fn count_named(gw: &RunningGateway, user_name: &str) -> u64 {
    let filter = crate::gateway::url_encode(&format!("userName eq \"{user_name}\""));
    let r = gw.get(&format!("/Users?filter={filter}")).await.expect(200);
    r.body["totalResults"].as_u64().unwrap()
}

fn ca_key(tls: &TlsMaterial) -> String {
    assert!(tls.ca_file.is_absolute());
    format!("ca_file = {:?}", tls.ca_file.display().to_string())
}

/// Binds slapd logged for the service account (the harness binds as the same DN).
/// Binds of the harness's admin and of the gateway's service account.
fn admin_binds(slapd: &Slapd) -> Vec<crate::slapd::LoggedBind> {
    slapd
        .binds()
        .into_iter()
        .filter(|b| b.dn.eq_ignore_ascii_case(ADMIN_DN) || b.dn.eq_ignore_ascii_case(SERVICE_DN))
        .collect()
}

#[tokio::test]
async fn starttls_and_ldaps_with_a_configured_ca() {
    let (slapd, tls) = Slapd::start_tls();
    let ldaps_port = tls.ldaps_port;
    assert_eq!(slapd.ldaps_url().as_deref(), Some(tls.ldaps_url.as_str()));

    // ldaps:// trusting the test CA.
    let via_ldaps = RunningGateway::start(&slapd, |t| {
        directory_url(&t, &tls.ldaps_url, &[ca_key(&tls)])
    })
    .await;
    let ldaps_id = create(&via_ldaps, "via-ldaps").await;
    assert_stored(&slapd, "via-ldaps", &ldaps_id).await;

    // ldap:// upgraded with StartTLS, trusting the test CA.
    let via_starttls = RunningGateway::start(&slapd, |t| {
        directory_url(&t, &slapd.url, &["starttls = true".into(), ca_key(&tls)])
    })
    .await;
    let starttls_id = create(&via_starttls, "via-starttls").await;
    assert_stored(&slapd, "via-starttls", &starttls_id).await;
    // Same directory behind both.
    assert_eq!(count_named(&via_ldaps, "via-starttls").await, 1);
    assert_eq!(count_named(&via_starttls, "via-ldaps").await, 1);

    // The searches opened a search connection on each gateway, in the background: once both
    // are open and logged, no bind of the trusted gateways is still to come.
    via_ldaps.until_search_connection().await;
    via_starttls.until_search_connection().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // slapd's own account of the binds: every one was encrypted (the search connections' too),
    // and both listeners saw the service account (the harness uses StartTLS too).
    let binds = admin_binds(&slapd);
    assert!(binds.iter().all(|b| b.ssf > 0), "plaintext bind: {binds:?}");
    assert!(
        binds.iter().any(|b| b.server_port == Some(ldaps_port)),
        "no bind over ldaps: {binds:?}"
    );
    assert!(
        binds.iter().any(|b| b.server_port == Some(slapd.port)),
        "no bind over StartTLS: {binds:?}"
    );
    eprintln!("binds over TLS: {binds:?}");
    let binds_before = binds.len();

    // Without ca_file the system roots apply, which do not know the test CA:
    // the gateway must refuse to talk, not fall back to plaintext.
    let short = |t: String| replace_one(&t, "connect_timeout_secs = 5", "connect_timeout_secs = 1");
    let untrusted_ldaps =
        RunningGateway::start(&slapd, |t| short(directory_url(&t, &tls.ldaps_url, &[]))).await;
    let untrusted_starttls = RunningGateway::start(&slapd, |t| {
        short(directory_url(&t, &slapd.url, &["starttls = true".into()]))
    })
    .await;
    for (gw, name) in [
        (&untrusted_ldaps, "untrusted-ldaps"),
        (&untrusted_starttls, "untrusted-starttls"),
    ] {
        let started = Instant::now();
        let filter = crate::gateway::url_encode(ALICE);
        let r = gw
            .send(Method::GET, &format!("/Users?filter={filter}"), None)
            .await
            .expect_error(503, None);
        assert_eq!(r.headers["retry-after"], "5");
        gw.send(Method::POST, "/Users", Some(&user_body(name)))
            .await
            .expect_error(503, None);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: {:?}",
            started.elapsed()
        );
    }
    // Give slapd's log a moment, then check nobody bound in the meantime.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let binds = admin_binds(&slapd);
    assert_eq!(
        binds.len(),
        binds_before,
        "the untrusted gateways must not bind at all: {binds:?}"
    );
    assert_absent(&slapd, "untrusted-ldaps").await;
    assert_absent(&slapd, "untrusted-starttls").await;

    // The ldap:// port does accept plaintext, and the log shows it as ssf=0:
    // the "every bind was encrypted" check above could have failed.
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&slapd.url).await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(ADMIN_DN, &slapd.admin_password)
        .await
        .unwrap()
        .success()
        .unwrap();
    let _ = ldap.unbind().await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !admin_binds(&slapd).iter().any(|b| b.ssf == 0) {
        assert!(Instant::now() < deadline, "plaintext bind not logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // StartTLS against a server without TLS: refused, not downgraded.
    let plain = Slapd::start();
    let no_tls_server = RunningGateway::start(&plain, |t| {
        short(directory_url(
            &t,
            &plain.url,
            &["starttls = true".into(), ca_key(&tls)],
        ))
    })
    .await;
    no_tls_server
        .send(Method::POST, "/Users", Some(&user_body("no-starttls")))
        .await
        .expect_error(503, None);
    assert_absent(&plain, "no-starttls").await;
}

/// Whether a process with `pid` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !matches!(stat.rsplit(") ").next(), Some(s) if s.starts_with('Z')))
}

/// The fault controls of the harness itself: data and port survive stop,
/// kill and restart, and a paused instance is still cleaned up on drop.
#[tokio::test]
async fn the_harness_faults_keep_data_and_clean_up() {
    let mut slapd = Slapd::start();
    let port = slapd.port;
    let mut ldap = slapd.admin().await;
    ldap.add(
        &format!("uid=survivor,ou=people,{SUFFIX}"),
        vec![
            ("objectClass", ["inetOrgPerson"].into()),
            ("uid", ["survivor"].into()),
            ("cn", ["Survivor"].into()),
            ("sn", ["Survivor"].into()),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let _ = ldap.unbind().await;

    let first_pid = slapd.pid();
    slapd.stop();
    assert!(!slapd.is_running() && !process_alive(first_pid));
    slapd.restart();
    let second_pid = slapd.pid();
    assert!(slapd.is_running() && process_alive(second_pid));
    slapd.kill();
    assert!(!process_alive(second_pid));
    slapd.restart();
    assert_eq!(slapd.port, port);
    assert_eq!(slapd.find(SUFFIX, "(uid=survivor)").await.len(), 1);

    // Paused: connections are accepted but not answered.
    slapd.pause();
    let probe = ldap3::LdapConnSettings::new().set_conn_timeout(Duration::from_millis(500));
    let hung = tokio::time::timeout(Duration::from_millis(700), async {
        let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(probe, &slapd.url)
            .await
            .map_err(|e| e.to_string())?;
        ldap3::drive!(conn);
        ldap.simple_bind(ADMIN_DN, &slapd.admin_password)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert!(hung.is_err(), "a paused slapd answered: {hung:?}");
    slapd.resume();
    assert_eq!(slapd.find(SUFFIX, "(uid=survivor)").await.len(), 1);

    // Dropped while paused: continued, stopped, gone.
    slapd.pause();
    let pid = slapd.pid();
    let dir = slapd.dir().to_path_buf();
    let started = Instant::now();
    drop(slapd);
    assert!(!process_alive(pid), "slapd {pid} outlived its harness");
    assert!(!dir.exists());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
