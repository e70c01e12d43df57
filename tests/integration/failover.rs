//! Several directory servers: writes go to the first healthy one, a dead server is left within
//! the reconnect backoff, the preferred one is used again once it is back, and read replicas
//! serve searches. Two independent slapd instances stand in for a provider and a consumer.

use crate::gateway::{people_dn, RunningGateway};
use crate::slapd::Slapd;
use serde_json::json;
use std::time::{Duration, Instant};

/// Give `other`'s service account the password of `slapd`'s, so one config binds to both.
async fn same_service_password(slapd: &Slapd, other: &Slapd) {
    let mut ldap = other.admin().await;
    ldap.modify(
        crate::slapd::SERVICE_DN,
        vec![ldap3::Mod::Replace(
            "userPassword",
            std::collections::HashSet::from([slapd.admin_password.as_str()]),
        )],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
}

fn user(name: &str) -> serde_json::Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name})
}

/// `url = "<first>"` → `urls = [<first>, <second>]`.
fn two_servers(text: String, first: &Slapd, second: &Slapd) -> String {
    text.replace(
        &format!("url = \"{}\"", first.url),
        &format!("urls = [\"{}\", \"{}\"]", first.url, second.url),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_over_to_the_next_server_and_come_back() {
    let mut primary = Slapd::start();
    let secondary = Slapd::start();
    same_service_password(&primary, &secondary).await;
    let gw = RunningGateway::from_config(
        |dir| {
            two_servers(
                crate::gateway::demo_config_text(&primary, dir),
                &primary,
                &secondary,
            )
        },
        &crate::gateway::env_for(&primary),
    )
    .await;
    gw.post("/Users", &user("before@contoso.com"))
        .await
        .expect(201);
    assert!(primary
        .entry(&people_dn("before@contoso.com"))
        .await
        .is_some());
    assert!(secondary
        .entry(&people_dn("before@contoso.com"))
        .await
        .is_none());

    // The primary dies: within the reconnect backoff, writes land on the secondary.
    primary.kill();
    let started = Instant::now();
    let during = loop {
        let r = gw.post("/Users", &user("during@contoso.com")).await;
        if r.status == 201 {
            break started.elapsed();
        }
        assert_eq!(r.status, 503, "only 503 while failing over: {}", r.body);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no failover within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("failover took {during:?}");
    assert!(secondary
        .entry(&people_dn("during@contoso.com"))
        .await
        .is_some());
    gw.get("/Users?filter=userName%20eq%20%22during%40contoso.com%22")
        .await
        .expect(200);

    // The primary is back: writes return to it within the fail-back interval.
    primary.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    loop {
        n += 1;
        let name = format!("after{n}@contoso.com");
        gw.post("/Users", &user(&name)).await.expect(201);
        if primary.entry(&people_dn(&name)).await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not move back to the primary"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn read_replicas_serve_searches_and_never_writes() {
    let writer = Slapd::start();
    let replica = Slapd::start();
    same_service_password(&writer, &replica).await;
    let replica_url = replica.url.clone();
    let gw = RunningGateway::from_config(
        |dir| {
            crate::gateway::demo_config_text(&writer, dir).replace(
                &format!("url = \"{}\"", writer.url),
                &format!("url = \"{}\"\nread_urls = [\"{replica_url}\"]", writer.url),
            )
        },
        &crate::gateway::env_for(&writer),
    )
    .await;
    // The replica has its own seed; a user only it holds shows that searches go there.
    let mut ldap = replica.admin().await;
    ldap.add(
        &people_dn("replica-only"),
        vec![
            (
                "objectClass",
                std::collections::HashSet::from(["inetOrgPerson"]),
            ),
            ("uid", std::collections::HashSet::from(["replica-only"])),
            ("cn", std::collections::HashSet::from(["r"])),
            ("sn", std::collections::HashSet::from(["r"])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let r = gw
        .get("/Users?filter=userName%20eq%20%22replica-only%22")
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 1, "searched on the replica");
    // A create goes to the writer, and its response is read back from the writer.
    let r = gw
        .post("/Users", &user("new@contoso.com"))
        .await
        .expect(201);
    assert_eq!(r.body["userName"], "new@contoso.com");
    assert!(writer.entry(&people_dn("new@contoso.com")).await.is_some());
    assert!(replica.entry(&people_dn("new@contoso.com")).await.is_none());
}
