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

#[tokio::test]
async fn search_endpoints() {
    let gw = TestGateway::start().await;
    let body = |f: &str| {
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
               "filter": f, "attributes": ["displayName", "userName"], "startIndex": 1, "count": 10})
    };
    let r = gw
        .post("/Users/.search", &body("userName eq \"alice\""))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 1);
    let keys: Vec<&str> = r.body["Resources"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, vec!["schemas", "id", "userName", "displayName"]);
    let r = gw
        .post("/Groups/.search", &body("displayName sw \"e\""))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 1);
    assert!(r.body["Resources"][0].get("members").is_none());
    // Across resource types: 3 users and 3 groups, paged as one list.
    let all = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "startIndex": 2, "count": 3,
                     "excludedAttributes": ["members"]});
    let r = gw.post("/.search", &all).await.expect(200);
    assert_eq!(r.body["totalResults"], 6);
    assert_eq!(r.body["itemsPerPage"], 3);
    let types: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["meta"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["User", "User", "Group"]);
    // A filter on a user-only attribute matches only users.
    let r = gw
        .post("/.search", &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName eq \"bob\""}))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 1);
    // An attribute neither type has is an error, not an empty list.
    gw.post(
        "/.search",
        &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "nickName eq \"x\""}),
    )
    .await
    .expect_error(400, Some("invalidFilter"));
    gw.post(
        "/Users/.search",
        &json!({"schemas":["urn:x"], "filter":"userName pr"}),
    )
    .await
    .expect_error(400, Some("invalidSyntax"));
    gw.post("/Users/.search", &json!({"filter":"userName eq"}))
        .await
        .expect_error(400, Some("invalidFilter"));
}
