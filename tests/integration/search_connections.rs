//! The gateway's own search connections (`directory.search_connections`): Entra's match rides
//! them once one is open, over the same TLS as the pool, with the answers the directory holds;
//! a connection the directory dropped sends its search through the pool instead of failing it;
//! and `search_connections = 0` keeps every search on the pool.

use crate::gateway::{eventually, first, RunningGateway};
use crate::slapd::{Slapd, SERVICE_DN, SUFFIX};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const OPEN: &str = "scim_gateway_directory_search_connections{state=\"open\"}";
const BROKEN: &str =
    "scim_gateway_directory_operations_total{operation=\"search\",result=\"connection_error\"}";

/// `text` with `key = value` added under `[directory]`.
fn directory_key(text: &str, key: &str) -> String {
    assert_eq!(text.matches("\n[directory]\n").count(), 1);
    text.replace("\n[directory]\n", &format!("\n[directory]\n{key}\n"))
}

/// POST a user named `name`; its id.
async fn create(gw: &RunningGateway, name: &str) -> String {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Wire", "familyName": "Probe"},
        "emails": [{"type": "work", "value": format!("{name}@example.org"), "primary": true}],
        "active": true
    });
    let r = gw.post("/Users", &body).await.expect(201);
    r.body["id"].as_str().unwrap().to_string()
}

/// Entra's match for `name`, checked against what slapd holds for `uid=name`.
async fn assert_match(gw: &RunningGateway, slapd: &Slapd, name: &str) {
    let r = gw
        .filter(&format!("userName eq \"{name}\""))
        .await
        .expect(200);
    let held = slapd.find(SUFFIX, &format!("(uid={name})")).await;
    assert_eq!(held.len(), 1, "{name} in the directory");
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);
    let user = &r.body["Resources"][0];
    assert_eq!(
        user["id"].as_str(),
        first(&held[0], "entryUUID").as_deref(),
        "{}",
        r.body
    );
    assert_eq!(user["userName"], name);
    assert_eq!(
        user["emails"][0]["value"].as_str(),
        first(&held[0], "mail").as_deref()
    );
}

/// Matches `name` (each answer checked) until the gateway has a search connection open.
async fn until_a_search_connection(gw: &RunningGateway, slapd: &Slapd, name: &str) {
    assert_match(gw, slapd, name).await;
    gw.until_search_connection().await;
    assert_match(gw, slapd, name).await;
}

/// The connections slapd logged a bind of the service account on: the gateways', not the
/// harness's.
fn service_connections(slapd: &Slapd) -> BTreeSet<u64> {
    slapd
        .binds()
        .iter()
        .filter(|b| b.dn.eq_ignore_ascii_case(SERVICE_DN))
        .map(|b| b.conn)
        .collect()
}

/// The connections bound as the service account (the gateway's, not the harness's) on which
/// slapd logged a search whose filter names `uid=name`.
async fn search_connections_of(slapd: &Slapd, name: &str, expected: usize) -> Vec<u64> {
    let needle = format!("(uid={name})");
    let mut found = Vec::new();
    let logged = eventually(Duration::from_secs(2), || {
        let gateways = service_connections(slapd);
        found = slapd
            .searches()
            .into_iter()
            .filter(|(conn, filter)| filter.contains(&needle) && gateways.contains(conn))
            .map(|(conn, _)| conn)
            .collect();
        let n = found.len();
        async move { n >= expected }
    })
    .await;
    assert!(
        logged,
        "{} of {expected} searches for {name} logged: {:?}",
        found.len(),
        slapd
            .searches()
            .into_iter()
            .filter(|(_, f)| f.contains(name))
            .collect::<Vec<_>>()
    );
    found
}

/// Creates a user for each of `names`, then matches each (answers checked against slapd), one
/// request at a time; the connections the matches ran on.
async fn matched_on(gw: &RunningGateway, slapd: &Slapd, names: &[String]) -> BTreeSet<u64> {
    for name in names {
        create(gw, name).await;
    }
    for name in names {
        assert_match(gw, slapd, name).await;
    }
    let mut conns = BTreeSet::new();
    for name in names {
        conns.insert(*search_connections_of(slapd, name, 1).await.last().unwrap());
    }
    conns
}

#[tokio::test]
async fn matches_ride_one_encrypted_search_connection() {
    let (slapd, tls) = Slapd::start_tls();
    let ca = format!("ca_file = {:?}", tls.ca_file.display().to_string());
    let ldaps = |t: String| {
        let url = t
            .lines()
            .find(|l| l.starts_with("url = \"ldap://"))
            .unwrap()
            .to_string();
        t.replace(&url, &format!("url = {:?}\n{ca}", tls.ldaps_url))
    };
    let starttls = |t: String| directory_key(&t, &format!("starttls = true\n{ca}"));
    type Edit<'a> = Box<dyn Fn(String) -> String + 'a>;
    let kinds: [(&str, Edit); 2] = [("ldaps", Box::new(ldaps)), ("starttls", Box::new(starttls))];
    for (kind, edit) in kinds {
        let binds_before: BTreeSet<u64> = slapd.binds().iter().map(|b| b.conn).collect();
        let gw = RunningGateway::start(&slapd, edit).await;
        let warm = format!("wire-warm-{kind}");
        create(&gw, &warm).await;
        until_a_search_connection(&gw, &slapd, &warm).await;

        // One request at a time: every match finds the idle search connection and takes it.
        let names: Vec<String> = (0..5).map(|n| format!("wire-{kind}-{n}")).collect();
        let conns = matched_on(&gw, &slapd, &names).await;
        assert_eq!(
            conns.len(),
            1,
            "{kind}: the 5 matches ran on connections {conns:?}, not on one search connection"
        );
        let conn = *conns.first().unwrap();
        // That connection is the gateway's: it bound as the service account, encrypted.
        let binds = slapd.binds();
        let bind = binds
            .iter()
            .find(|b| b.conn == conn)
            .unwrap_or_else(|| panic!("{kind}: conn={conn} never bound: {binds:?}"));
        assert!(!binds_before.contains(&conn));
        assert!(bind.dn.eq_ignore_ascii_case(SERVICE_DN), "{bind:?}");
        assert!(
            bind.ssf > 0,
            "{kind}: a search connection bound in plaintext: {bind:?}"
        );
        if kind == "ldaps" {
            assert_eq!(bind.server_port, Some(tls.ldaps_port), "{bind:?}");
        } else {
            assert_eq!(bind.server_port, Some(slapd.port), "{bind:?}");
        }
        // Every connection this gateway opened is encrypted: its pool's and its searches'.
        let mine: Vec<_> = binds
            .iter()
            .filter(|b| !binds_before.contains(&b.conn) && b.dn.eq_ignore_ascii_case(SERVICE_DN))
            .collect();
        assert!(mine.len() >= 5, "{kind}: {mine:?}");
        assert!(mine.iter().all(|b| b.ssf > 0), "{kind}: {mine:?}");
    }
}

#[tokio::test]
async fn without_search_connections_matches_spread_over_the_pool() {
    let (slapd, _tls) = Slapd::start_tls();
    let gw = RunningGateway::start(&slapd, |t| {
        assert_eq!(t.matches("\nsearch_connections = 64\n").count(), 1);
        t.replace("\nsearch_connections = 64\n", "\nsearch_connections = 0\n")
    })
    .await;
    let names: Vec<String> = (0..8).map(|n| format!("pooled-{n}")).collect();
    let conns = matched_on(&gw, &slapd, &names).await;
    // The pool lends its 4 connections in turn.
    assert!(conns.len() >= 2, "8 matches on {conns:?}");
    assert_eq!(gw.metric(OPEN).await, 0.0, "{}", gw.metrics().await);
    // 4 binds: the pool's, and nothing else.
    let binds = service_connections(&slapd);
    assert_eq!(binds.len(), 4, "{binds:?}");
}

#[tokio::test]
async fn a_dropped_search_connection_sends_its_search_through_the_pool() {
    let mut slapd = Slapd::start();
    let gw = RunningGateway::start(&slapd, |t| t).await;
    create(&gw, "wire-restart").await;
    until_a_search_connection(&gw, &slapd, "wire-restart").await;
    let broken_before = gw.metric(BROKEN).await;

    // The restart closes every connection, the idle search connection among them.
    slapd.restart();
    let back = eventually(Duration::from_secs(10), || async {
        let pool = "scim_gateway_directory_pool_connections{state=\"open\"}";
        gw.metric("scim_gateway_directory_up").await == 1.0 && gw.metric(pool).await == 4.0
    })
    .await;
    assert!(back, "the pool did not come back:\n{}", gw.metrics().await);

    // The first match takes the dropped connection, finds it closed, and is answered through
    // the pool: 200, not 503.
    assert_match(&gw, &slapd, "wire-restart").await;
    assert_eq!(
        gw.metric(BROKEN).await,
        broken_before + 1.0,
        "the dropped connection was not the one tried first:\n{}",
        gw.metrics().await
    );
    // And a new one is opened for the searches that follow.
    until_a_search_connection(&gw, &slapd, "wire-restart").await;
    assert_match(&gw, &slapd, "wire-restart").await;
}
