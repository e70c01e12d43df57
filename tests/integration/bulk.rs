//! POST /Bulk against a real slapd: bulkId references in dependency order, failOnErrors, limits.

use crate::gateway::{first, people_dn, values, TestGateway};
use serde_json::{json, Value};

const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

fn statuses(r: &Value) -> Vec<(String, String)> {
    r["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["bulkId"].as_str().unwrap_or("-").to_string(),
                o["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_group_and_the_users_it_references_in_one_request() {
    let gw = TestGateway::start().await;
    // The group comes first but references users created later in the request.
    let req = json!({"schemas": [BULK], "Operations": [
        {"method": "POST", "path": "/Groups", "bulkId": "g1",
         "data": {"displayName": "bulk team", "members": [{"value": "bulkId:u1"}, {"value": "bulkId:u2"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "u1", "data": {"userName": "bulk1@contoso.com"}},
        {"method": "POST", "path": "/Users", "bulkId": "u2", "data": {"userName": "bulk2@contoso.com"}},
        {"method": "PATCH", "path": "/Users/bulkId:u1",
         "data": {"Operations": [{"op": "replace", "path": "title", "value": "Bulk"}]}}
    ]});
    let r = gw.post("/Bulk", &req).await.expect(200);
    assert_eq!(
        r.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
    );
    assert_eq!(
        statuses(&r.body),
        vec![
            ("g1".into(), "201".into()),
            ("u1".into(), "201".into()),
            ("u2".into(), "201".into()),
            ("-".into(), "200".into())
        ]
    );
    let ops = r.body["Operations"].as_array().unwrap();
    assert!(ops[1]["location"].as_str().unwrap().contains("/Users/"));
    assert!(ops[1]["version"].as_str().unwrap().starts_with("W/\""));
    let g = gw
        .slapd
        .entry("cn=bulk team,ou=groups,dc=example,dc=org")
        .await
        .unwrap();
    let mut members: Vec<String> = values(&g, "member")
        .into_iter()
        .map(|m| m.to_lowercase())
        .collect();
    members.sort();
    assert_eq!(
        members,
        vec![
            "cn=empty-membership,dc=example,dc=org".to_string(),
            people_dn("bulk1@contoso.com"),
            people_dn("bulk2@contoso.com")
        ]
    );
    let u1 = gw
        .slapd
        .entry(&people_dn("bulk1@contoso.com"))
        .await
        .unwrap();
    assert_eq!(values(&u1, "title"), vec!["Bulk"]);
    assert_eq!(
        ops[1]["location"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap(),
        first(&u1, "entryUUID").unwrap()
    );
}

#[tokio::test]
async fn fail_on_errors_cycles_and_limits() {
    let gw = TestGateway::start_with(|t| {
        t.replace(
            "default_page_size = 100",
            "default_page_size = 100\nmax_bulk_operations = 4",
        )
    })
    .await;
    // failOnErrors = 1: processing stops after the first failure.
    let r = gw
        .post(
            "/Bulk",
            &json!({"schemas": [BULK], "failOnErrors": 1, "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "alice"}},
                {"method": "POST", "path": "/Users", "bulkId": "never", "data": {"userName": "never@contoso.com"}}
            ]}),
        )
        .await
        .expect(200);
    assert_eq!(statuses(&r.body), vec![("dup".into(), "409".into())]);
    assert_eq!(
        r.body["Operations"][0]["response"]["scimType"],
        "uniqueness"
    );
    assert!(gw
        .slapd
        .entry(&people_dn("never@contoso.com"))
        .await
        .is_none());
    // Without failOnErrors every operation runs; a cycle and an unknown bulkId fail alone.
    let r = gw
        .post(
            "/Bulk",
            &json!({"schemas": [BULK], "Operations": [
                {"method": "POST", "path": "/Groups", "bulkId": "a", "data": {"displayName": "A", "members": [{"value": "bulkId:b"}]}},
                {"method": "POST", "path": "/Groups", "bulkId": "b", "data": {"displayName": "B", "members": [{"value": "bulkId:a"}]}},
                {"method": "POST", "path": "/Groups", "bulkId": "c", "data": {"displayName": "C", "members": [{"value": "bulkId:zzz"}]}},
                {"method": "POST", "path": "/Users", "bulkId": "ok", "data": {"userName": "ok@contoso.com"}}
            ]}),
        )
        .await
        .expect(200);
    assert_eq!(
        statuses(&r.body),
        vec![
            ("a".into(), "400".into()),
            ("b".into(), "400".into()),
            ("c".into(), "400".into()),
            ("ok".into(), "201".into())
        ]
    );
    assert!(r.body["Operations"][2]["response"]["detail"]
        .as_str()
        .unwrap()
        .contains("zzz"));
    assert!(gw
        .slapd
        .entry("cn=A,ou=groups,dc=example,dc=org")
        .await
        .is_none());
    assert!(gw.slapd.entry(&people_dn("ok@contoso.com")).await.is_some());
    // Beyond maxOperations: 413, nothing runs.
    let five: Vec<Value> = (0..5)
        .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("x{i}"), "data": {"userName": format!("x{i}")}}))
        .collect();
    gw.post("/Bulk", &json!({"schemas": [BULK], "Operations": five}))
        .await
        .expect_error(413, None);
    assert!(gw.slapd.entry(&people_dn("x0")).await.is_none());
    // The limits are advertised.
    let spc = gw.get("/ServiceProviderConfig").await.expect(200).body;
    assert_eq!(
        spc["bulk"],
        json!({"supported": true, "maxOperations": 4, "maxPayloadSize": 1048576})
    );
    // Malformed requests.
    gw.post("/Bulk", &json!({"Operations": []}))
        .await
        .expect_error(400, Some("invalidSyntax"));
    gw.post("/Bulk", &json!({"schemas": [BULK], "Operations": [{"method": "POST", "path": "/Users", "data": {"userName": "nobulkid"}}]}))
        .await
        .expect_error(400, Some("invalidSyntax"));
}
