//! ETags: `meta.version` from entryCSN, `If-None-Match` → 304, `If-Match` → 412, atomic in the
//! directory through the assertion control so two racing writers cannot both win.

use crate::gateway::{first, values, TestGateway};
use reqwest::Method;
use serde_json::{json, Value};

fn title(v: &str) -> Value {
    json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
           "Operations":[{"op":"replace","path":"title","value":v}]})
}

#[tokio::test]
async fn user_versions_and_preconditions() {
    let gw = TestGateway::start().await;
    let id = gw.create_user("etag@contoso.com").await;
    let path = format!("/Users/{id}");
    let r = gw.get(&path).await.expect(200);
    let tag = r.headers["etag"].to_str().unwrap().to_string();
    assert_eq!(r.body["meta"]["version"], tag.as_str());
    let csn = first(&gw.entry_by_id(&id).await.unwrap(), "entryCSN").unwrap();
    assert_eq!(tag, format!("W/\"{csn}\""), "the version is the entryCSN");

    // If-None-Match with the current version: 304, no body.
    let url = format!("{}{path}", gw.base);
    let r = gw
        .send_with(gw.client.get(&url).header("if-none-match", &tag), None)
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.body, Value::Null);
    let r = gw
        .send_with(
            gw.client.get(&url).header("if-none-match", "W/\"old\""),
            None,
        )
        .await
        .expect(200);
    assert_eq!(r.body["id"], id.as_str());

    // A stale If-Match is 412 and writes nothing.
    let stale = gw
        .send_with(
            gw.client
                .patch(&url)
                .header("if-match", "W/\"stale\"")
                .header("content-type", "application/scim+json")
                .body(title("Stale").to_string()),
            None,
        )
        .await;
    let stale = stale.expect_error(412, None);
    assert!(
        stale.body["detail"].as_str().unwrap().contains(&tag),
        "{}",
        stale.body
    );
    assert!(first(&gw.entry_by_id(&id).await.unwrap(), "title").is_none());

    // The current version passes; the answer carries the new version.
    let r = gw
        .send_with(
            gw.client
                .patch(&url)
                .header("if-match", &tag)
                .header("content-type", "application/scim+json")
                .body(title("Fresh").to_string()),
            None,
        )
        .await
        .expect(200);
    let new_tag = r.headers["etag"].to_str().unwrap().to_string();
    assert_ne!(new_tag, tag);
    assert_eq!(
        values(&gw.entry_by_id(&id).await.unwrap(), "title"),
        vec!["Fresh"]
    );

    // PUT with the old version is refused; DELETE likewise; `*` matches any version.
    let put = json!({"userName": "etag@contoso.com", "title": "Put"});
    gw.send_with(
        gw.client
            .put(&url)
            .header("if-match", &tag)
            .header("content-type", "application/scim+json")
            .body(put.to_string()),
        None,
    )
    .await
    .expect_error(412, None);
    gw.send_with(gw.client.delete(&url).header("if-match", &tag), None)
        .await
        .expect_error(412, None);
    assert!(gw.entry_by_id(&id).await.is_some());
    gw.send_with(
        gw.client
            .put(&url)
            .header("if-match", "*")
            .header("content-type", "application/scim+json")
            .body(put.to_string()),
        None,
    )
    .await
    .expect(200);
    let current = gw.get(&path).await.headers["etag"]
        .to_str()
        .unwrap()
        .to_string();
    gw.send_with(gw.client.delete(&url).header("if-match", &current), None)
        .await
        .expect(204);
    assert!(gw.entry_by_id(&id).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_racing_writers_with_the_same_version_cannot_both_win() {
    let gw = TestGateway::start().await;
    for round in 0..5 {
        let id = gw.create_user(&format!("race{round}@contoso.com")).await;
        let url = format!("{}/Users/{id}", gw.base);
        let tag = gw.get(&format!("/Users/{id}")).await.headers["etag"]
            .to_str()
            .unwrap()
            .to_string();
        let send = |v: &'static str| {
            gw.send_with(
                gw.client
                    .request(Method::PATCH, &url)
                    .header("if-match", &tag)
                    .header("content-type", "application/scim+json")
                    .body(title(v).to_string()),
                None,
            )
        };
        let (a, b) = tokio::join!(send("A"), send("B"));
        let mut statuses = vec![a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(
            statuses,
            vec![200, 412],
            "round {round}: exactly one writer wins"
        );
        let winner = if a.status == 200 { "A" } else { "B" };
        assert_eq!(
            values(&gw.entry_by_id(&id).await.unwrap(), "title"),
            vec![winner]
        );
    }
}

#[tokio::test]
async fn group_versions_and_preconditions() {
    let gw = TestGateway::start().await;
    let alice = gw.seeded_id("alice").await;
    let r = gw
        .post("/Groups", &json!({"displayName": "versioned"}))
        .await
        .expect(201);
    let id = r.body["id"].as_str().unwrap().to_string();
    let url = format!("{}/Groups/{id}", gw.base);
    let tag = r.headers["etag"].to_str().unwrap().to_string();
    let g = gw.get(&format!("/Groups/{id}")).await.expect(200);
    assert_eq!(g.headers["etag"].to_str().unwrap(), tag);
    let add = json!({"Operations":[{"op":"add","path":"members","value":[{"value": alice}]}]})
        .to_string();
    gw.send_with(
        gw.client
            .patch(&url)
            .header("if-match", "W/\"stale\"")
            .header("content-type", "application/scim+json")
            .body(add.clone()),
        None,
    )
    .await
    .expect_error(412, None);
    let e = gw
        .slapd
        .entry("cn=versioned,ou=groups,dc=example,dc=org")
        .await
        .unwrap();
    assert_eq!(
        values(&e, "member").len(),
        1,
        "only the placeholder: nothing was added"
    );
    gw.send_with(
        gw.client
            .patch(&url)
            .header("if-match", &tag)
            .header("content-type", "application/scim+json")
            .body(add),
        None,
    )
    .await
    .expect(204);
    let e = gw
        .slapd
        .entry("cn=versioned,ou=groups,dc=example,dc=org")
        .await
        .unwrap();
    assert_eq!(values(&e, "member").len(), 2);
    gw.send_with(gw.client.delete(&url).header("if-match", &tag), None)
        .await
        .expect_error(412, None);
    let spc = gw.get("/ServiceProviderConfig").await.expect(200).body;
    assert_eq!(spc["etag"]["supported"], true);
}

#[tokio::test]
async fn a_conditional_member_change_keeps_member_of_right() {
    // The assertion of an If-Match applies to the group; the memberof overlay's own updates of
    // the members' memberOf must still happen.
    let gw = TestGateway::start().await;
    let alice = gw.seeded_id("alice").await;
    let r = gw
        .post(
            "/Groups",
            &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Etagged"}),
        )
        .await
        .expect(201);
    let id = r.body["id"].as_str().unwrap().to_string();
    let url = format!("{}/Groups/{id}", gw.base);
    let tag = etag_of(&gw, &format!("/Groups/{id}")).await;
    let add = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations":[{"op":"Add","path":"members","value":[{"value": alice}]}]});
    let patch = gw
        .client
        .patch(&url)
        .header("content-type", "application/scim+json");
    gw.send_with(patch.header("if-match", &tag).body(add.to_string()), None)
        .await
        .expect(204);
    let group_dn = "cn=Etagged,ou=groups,dc=example,dc=org";
    assert!(alice_is_member_of(&gw, group_dn).await);
    let r = gw.get(&format!("/Groups/{id}")).await.expect(200);
    assert_eq!(r.body["members"][0]["value"], alice.as_str(), "{}", r.body);

    // A conditional DELETE of a member user: the overlays take it out of the group (their update
    // of the group does not carry the user's assertion, so the delete keeps its assertion).
    let bob = gw.create_user("etag-member@contoso.com").await;
    gw.patch(
        &format!("/Groups/{id}"),
        &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations":[{"op":"Add","path":"members","value":[{"value": bob}]}]}),
    )
    .await
    .expect(204);
    let bob_dn = crate::gateway::people_dn("etag-member@contoso.com");
    let members = |e: &ldap3::SearchEntry| values(e, "member");
    assert!(members(&gw.slapd.entry(group_dn).await.unwrap()).contains(&bob_dn));
    let bob_url = format!("{}/Users/{bob}", gw.base);
    let bob_tag = etag_of(&gw, &format!("/Users/{bob}")).await;
    gw.send_with(
        gw.client.delete(&bob_url).header("if-match", &bob_tag),
        None,
    )
    .await
    .expect(204);
    // refint updates the groups in a background task after answering the delete: shortly after,
    // not at once.
    let gone = crate::gateway::eventually(std::time::Duration::from_secs(5), || async {
        !members(&gw.slapd.entry(group_dn).await.unwrap()).contains(&bob_dn)
    });
    assert!(
        gone.await,
        "refint did not take the deleted user out of the group"
    );

    // A conditional DELETE of the group: the memberof overlay clears alice's memberOf.
    let tag = etag_of(&gw, &format!("/Groups/{id}")).await;
    gw.send_with(gw.client.delete(&url).header("if-match", &tag), None)
        .await
        .expect(204);
    assert!(!alice_is_member_of(&gw, group_dn).await);
}

async fn etag_of(gw: &TestGateway, path: &str) -> String {
    gw.get(path).await.expect(200).headers["etag"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Whether alice's `memberOf`, as slapd holds it, names `group_dn`.
async fn alice_is_member_of(gw: &TestGateway, group_dn: &str) -> bool {
    let alice = gw.slapd.entry(&crate::gateway::people_dn("alice")).await;
    values(&alice.unwrap(), "memberOf")
        .iter()
        .any(|m| m.eq_ignore_ascii_case(group_dn))
}
