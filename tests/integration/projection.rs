//! `attributes` and `excludedAttributes` on every response, and only the needed LDAP reads.

use crate::gateway::TestGateway;
use serde_json::json;

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[tokio::test]
async fn attribute_selection_on_reads_and_writes() {
    let gw = TestGateway::start().await;
    let alice = gw.seeded_id("alice").await;
    let id = gw.create_user("proj@contoso.com").await;
    gw.patch(
        &format!("/Users/{id}"),
        &json!({"Operations":[{"op":"add","path":format!("{ENT}:manager"),"value":alice},
                              {"op":"add","path":format!("{ENT}:department"),"value":"Ops"}]}),
    )
    .await
    .expect(200);

    // attributes: only those, plus id and schemas; the manager is not even resolved.
    let before = gw.directory_operations();
    let r = gw
        .get(&format!("/Users/{id}?attributes=userName,name.givenName"))
        .await
        .expect(200);
    assert_eq!(
        gw.directory_operations() - before,
        1,
        "one search, no manager lookup, no groups"
    );
    let keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, vec!["schemas", "id", "userName", "name"]);
    assert_eq!(r.body["name"], json!({"givenName": "Given"}));
    // Without a selection the same user costs the manager lookup and the groups search too.
    let before = gw.directory_operations();
    let r = gw.get(&format!("/Users/{id}")).await.expect(200);
    assert!(gw.directory_operations() - before >= 2);
    assert_eq!(r.body[ENT]["manager"]["value"], alice.as_str());

    // excludedAttributes on a list.
    let r = gw
        .get(&format!(
            "/Users?filter=userName%20eq%20%22proj%40contoso.com%22&excludedAttributes=emails,{ENT}:manager,meta"
        ))
        .await
        .expect(200);
    let u = &r.body["Resources"][0];
    assert!(u.get("emails").is_none() && u.get("meta").is_none());
    assert_eq!(u[ENT], json!({"department": "Ops"}));
    assert_eq!(u["userName"], "proj@contoso.com");

    // On writes.
    let r = gw
        .post(
            "/Users?attributes=userName",
            &json!({"userName": "posted@contoso.com", "title": "T"}),
        )
        .await
        .expect(201);
    let keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, vec!["schemas", "id", "userName"]);
    assert!(r.headers["location"]
        .to_str()
        .unwrap()
        .ends_with(r.body["id"].as_str().unwrap()));
    let r = gw
        .patch(
            &format!("/Users/{id}?excludedAttributes=name,emails"),
            &json!({"Operations":[{"op":"replace","path":"title","value":"New"}]}),
        )
        .await
        .expect(200);
    assert!(r.body.get("name").is_none() && r.body.get("emails").is_none());
    assert_eq!(r.body["title"], "New");

    // Groups: attributes=displayName leaves members out and never reads them.
    let r = gw
        .get("/Groups?attributes=displayName&filter=displayName%20eq%20%22engineering%22")
        .await
        .expect(200);
    let g = &r.body["Resources"][0];
    assert!(g.get("members").is_none());
    assert_eq!(g["displayName"], "engineering");

    // A selection with a filter is a bad path.
    gw.get("/Users?attributes=emails[type%20eq%20%22work%22]")
        .await
        .expect_error(400, Some("invalidPath"));
}

#[tokio::test]
async fn me_is_not_implemented() {
    let gw = TestGateway::start().await;
    let r = gw.get("/Me").await;
    assert_eq!(r.status, 501);
    assert_eq!(r.body["status"], "501");
}
