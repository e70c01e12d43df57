//! Passwords against a real slapd: SCIM `password` is set with the Password Modify extended
//! operation, slapd hashes it under its password policy (the demo policy needs 8 characters),
//! the user can bind with it, and it is never stored in clear, returned or echoed.

use crate::gateway::{first, people_dn, TestGateway};
use crate::slapd::Slapd;
use reqwest::Method;
use serde_json::json;

/// Whether `dn` can bind with `password` (a fresh connection to slapd).
async fn can_bind(slapd: &Slapd, dn: &str, password: &str) -> bool {
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&slapd.url).await.unwrap();
    ldap3::drive!(conn);
    let ok = ldap
        .simple_bind(dn, password)
        .await
        .map(|r| r.rc == 0)
        .unwrap_or(false);
    let _ = ldap.unbind().await;
    ok
}

const FIRST: &str = "Okta-Initial-Pa55word";
const SECOND: &str = "Rotated-Pa55word-2026";

#[tokio::test]
async fn okta_create_with_password_then_rotation() {
    let gw = TestGateway::start().await;
    let dn = people_dn("isaac.brock@example.com");
    let r = gw
        .post(
            "/Users",
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "isaac.brock@example.com",
                "name": {"givenName": "Isaac", "familyName": "Brock"},
                "emails": [{"primary": true, "value": "isaac.brock@example.com", "type": "work"}],
                "displayName": "Isaac Brock",
                "groups": [],
                "password": FIRST,
                "active": true
            }),
        )
        .await
        .expect(201);
    assert!(r.body.get("password").is_none(), "never returned");
    assert!(!r.body.to_string().contains(FIRST));
    let id = r.body["id"].as_str().unwrap().to_string();

    // Stored hashed by slapd, and usable.
    let e = gw.slapd.entry(&dn).await.unwrap();
    let stored = first(&e, "userPassword").expect("a password was set");
    assert!(
        stored.starts_with('{') && !stored.contains(FIRST),
        "{stored}"
    );
    assert!(can_bind(&gw.slapd, &dn, FIRST).await);

    // GET never shows it.
    let got = gw.get(&format!("/Users/{id}")).await.expect(200);
    assert!(got.body.get("password").is_none());

    // Okta's path-less PATCH rotates it.
    gw.patch(
        &format!("/Users/{id}"),
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"password": SECOND}}]}),
    )
    .await
    .expect(200);
    assert!(can_bind(&gw.slapd, &dn, SECOND).await);
    assert!(
        !can_bind(&gw.slapd, &dn, FIRST).await,
        "the old one is gone"
    );

    // Entra's shape: a PATCH with a path.
    gw.patch(
        &format!("/Users/{id}"),
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "password", "value": FIRST}]}),
    )
    .await
    .expect(200);
    assert!(can_bind(&gw.slapd, &dn, FIRST).await);
}

#[tokio::test]
async fn a_password_the_policy_refuses_is_400_and_changes_nothing() {
    let gw = TestGateway::start().await;
    let short = "Sh0rt!";
    // A create with a refused password leaves no account behind.
    let r = gw
        .post(
            "/Users",
            &json!({"userName": "weak", "password": short, "active": true}),
        )
        .await
        .expect_error(400, Some("invalidValue"));
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("password policy"), "{detail}");
    assert!(!detail.contains(short), "{detail}");
    assert!(gw.slapd.entry(&people_dn("weak")).await.is_none());

    // An update with a refused password leaves the other changes unapplied too.
    let alice = gw.seeded_id("alice").await;
    let before = gw.slapd.entry(&people_dn("alice")).await.unwrap();
    gw.send(
        Method::PATCH,
        &format!("/Users/{alice}"),
        Some(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "replace", "path": "title", "value": "Changed Title"},
                {"op": "replace", "path": "password", "value": short}]}),
        ),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    let after = gw.slapd.entry(&people_dn("alice")).await.unwrap();
    assert_eq!(first(&after, "title"), first(&before, "title"));
    assert_eq!(
        first(&after, "userPassword"),
        first(&before, "userPassword")
    );
}
