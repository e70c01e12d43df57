//! Every Users flow of SCIM-CLIENTS.md against a real slapd: the HTTP answer and what the directory holds.

use crate::gateway::{first, people_dn, values, TestGateway};
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn entra_create_body(user_name: &str) -> Value {
    json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
     "externalId":"0a21f0f2","userName":user_name,"active":true,
     "emails":[{"primary":true,"type":"work","value":user_name}],
     "meta":{"resourceType":"User"},
     "name":{"formatted":"givenName familyName","familyName":"familyName","givenName":"givenName"},"roles":[],
     "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"701984","department":"R&D"}})
}

#[tokio::test]
async fn test_connection_probe_returns_an_empty_list() {
    let gw = TestGateway::start().await;
    let r = gw
        .filter("userName eq \"0b4b9e4e-6f5a-4d39-a3a5-0e0c3a4f1d2c\"")
        .await
        .expect(200);
    assert_eq!(
        r.body,
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"startIndex":1,"itemsPerPage":0,"Resources":[]})
    );
    assert_eq!(r.headers["content-type"], "application/scim+json");
    // `+` for spaces and unknown parameters such as aadOptscim062020 are accepted.
    let r = gw
        .get("/Users?aadOptscim062020&filter=userName+eq+%22alice%22")
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 1);
}

#[tokio::test]
async fn entra_create_round_trips_and_lands_in_the_directory() {
    let gw = TestGateway::start().await;
    let r = gw
        .post(
            "/Users",
            &entra_create_body("Test_User_ab6490ee@testuser.com"),
        )
        .await
        .expect(201);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        r.body["meta"]["location"].as_str().unwrap()
    );
    assert!(r.body["meta"]["location"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/scim/v2/Users/{id}")));
    assert_eq!(r.body["meta"]["resourceType"], "User");
    assert!(r.body["meta"]["created"].as_str().unwrap().ends_with('Z'));
    assert!(r.body["meta"]["lastModified"].is_string());

    let e = gw
        .slapd
        .entry(&people_dn("Test_User_ab6490ee@testuser.com"))
        .await
        .expect("entry in ou=people");
    assert_eq!(
        first(&e, "entryUUID").unwrap(),
        id,
        "the SCIM id is the entryUUID"
    );
    assert_eq!(first(&e, "uid").unwrap(), "Test_User_ab6490ee@testuser.com");
    assert_eq!(
        first(&e, "mail").unwrap(),
        "Test_User_ab6490ee@testuser.com"
    );
    assert_eq!(first(&e, "givenName").unwrap(), "givenName");
    assert_eq!(first(&e, "sn").unwrap(), "familyName");
    assert_eq!(first(&e, "cn").unwrap(), "givenName familyName");
    assert_eq!(first(&e, "employeeNumber").unwrap(), "701984");
    assert_eq!(first(&e, "departmentNumber").unwrap(), "R&D");
    assert_eq!(first(&e, "scimExternalId").unwrap(), "0a21f0f2");
    assert!(values(&e, "objectClass").iter().any(|c| c == "scimUser"));
    assert!(first(&e, "pwdAccountLockedTime").is_none());

    // Entra reads the user back and diffs it: every value as sent.
    let g = gw.get(&format!("/Users/{id}")).await.expect(200);
    let u = &g.body;
    assert_eq!(u["userName"], "Test_User_ab6490ee@testuser.com");
    assert_eq!(u["externalId"], "0a21f0f2");
    assert_eq!(u["active"], true);
    assert_eq!(
        u["emails"],
        json!([{"type":"work","value":"Test_User_ab6490ee@testuser.com","primary":true}])
    );
    assert_eq!(
        u["name"],
        json!({"formatted":"givenName familyName","familyName":"familyName","givenName":"givenName"})
    );
    assert_eq!(
        u[ENTERPRISE],
        json!({"employeeNumber":"701984","department":"R&D"})
    );
    assert_eq!(
        u["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE])
    );
    assert_eq!(u["id"], id);

    // Entra's match lists the same user: written straight from the entry when no attribute
    // selection asks for trimming, and through the trimmed path when one does.
    let listed = gw
        .filter("userName eq \"Test_User_ab6490ee@testuser.com\"")
        .await
        .expect(200);
    assert_eq!(listed.body["Resources"], json!([g.body]));
    let trimmed = gw
        .get("/Users?filter=userName%20eq%20%22Test_User_ab6490ee%40testuser.com%22&excludedAttributes=groups")
        .await
        .expect(200);
    assert_eq!(trimmed.body, listed.body);
}

#[tokio::test]
async fn duplicate_user_name_is_409_uniqueness_in_any_case() {
    let gw = TestGateway::start().await;
    gw.post("/Users", &entra_create_body("dup@contoso.com"))
        .await
        .expect(201);
    gw.post("/Users", &entra_create_body("dup@contoso.com"))
        .await
        .expect_error(409, Some("uniqueness"));
    gw.post("/Users", &entra_create_body("DUP@Contoso.com"))
        .await
        .expect_error(409, Some("uniqueness"));
    gw.post("/Users", &json!({"userName": "alice"}))
        .await
        .expect_error(409, Some("uniqueness"));
    assert_eq!(
        gw.slapd
            .find("ou=people,dc=example,dc=org", "(uid=dup@contoso.com)")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn match_filters_on_mapped_attributes() {
    let gw = TestGateway::start().await;
    let id = gw.create_user("matcher@contoso.com").await;
    gw.patch(
        &format!("/Users/{id}"),
        &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
            {"op":"add","path":"externalId","value":"ext-42"},
            {"op":"replace","path":"emails[type eq \"work\"].value","value":"m.atcher@contoso.com"}]}),
    )
    .await
    .expect(200);
    for (filter, expect) in [
        ("userName eq \"MATCHER@contoso.com\"", 1),
        ("externalId eq \"ext-42\"", 1),
        ("externalId eq \"EXT-42\"", 0), // externalId is case-exact
        (
            "emails[type eq \"work\"].value eq \"m.atcher@contoso.com\"",
            1,
        ),
        (
            "emails[type eq \"home\"].value eq \"m.atcher@contoso.com\"",
            0,
        ),
        (
            "userName eq \"matcher@contoso.com\" and externalId eq \"ext-42\"",
            1,
        ),
        (
            "userName eq \"matcher@contoso.com\" and externalId eq \"nope\"",
            0,
        ),
        (
            "userName eq \"matcher@contoso.com\" or userName eq \"alice\"",
            2,
        ),
        ("userName eq \"nobody\"", 0),
    ] {
        let r = gw.filter(filter).await.expect(200);
        assert_eq!(
            r.body["totalResults"], expect,
            "filter {filter}: {}",
            r.body
        );
        assert_eq!(
            r.body["Resources"].as_array().unwrap().len(),
            expect,
            "filter {filter}"
        );
    }
    let r = gw.filter("externalId eq \"ext-42\"").await;
    assert_eq!(r.body["Resources"][0]["id"], id);
    // Okta's existence check carries paging parameters. It costs one LDAP request.
    let before = gw.directory_operations();
    let r = gw
        .get("/Users?filter=userName%20eq%20%22matcher%40contoso.com%22&startIndex=1&count=100")
        .await
        .expect(200);
    assert_eq!(gw.directory_operations() - before, 1);
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.body["Resources"][0]["id"], id);
}

#[tokio::test]
async fn entra_default_update_shape_is_one_atomic_modify() {
    let gw = TestGateway::start().await;
    let r = gw
        .post("/Users", &entra_create_body("upd@contoso.com"))
        .await
        .expect(201);
    let id = r.body["id"].as_str().unwrap();
    let r = gw
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
             {"op":"Replace","path":"emails[type eq \"work\"].value","value":"new@contoso.com"},
             {"op":"Replace","path":"name.familyName","value":"Updated"},
             {"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Sales"},
             {"op":"Add","path":"phoneNumbers[type eq \"mobile\"].value","value":"+1 555 0100"}]}),
        )
        .await
        .expect(200);
    assert_eq!(
        r.body["phoneNumbers"],
        json!([{"type":"mobile","value":"+1 555 0100"}])
    );
    let e = gw.entry_by_id(id).await.unwrap();
    assert_eq!(values(&e, "mail"), vec!["new@contoso.com"]);
    assert_eq!(values(&e, "sn"), vec!["Updated"]);
    assert_eq!(values(&e, "departmentNumber"), vec!["Sales"]);
    assert_eq!(values(&e, "mobile"), vec!["+1 555 0100"]);
    assert_eq!(
        values(&e, "employeeNumber"),
        vec!["701984"],
        "untouched attributes stay"
    );
}

#[tokio::test]
async fn pathless_replace_with_dotted_and_urn_keys() {
    let gw = TestGateway::start().await;
    let id = gw.create_user("dotted@contoso.com").await;
    gw.patch(
        &format!("/Users/{id}"),
        &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
          {"op":"replace","value":{"displayName":"X","name.givenName":"Y",
           "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"Z"}}]}),
    )
    .await
    .expect(200);
    let e = gw.entry_by_id(&id).await.unwrap();
    assert_eq!(values(&e, "displayName"), vec!["X"]);
    assert_eq!(values(&e, "givenName"), vec!["Y"]);
    assert_eq!(values(&e, "employeeNumber"), vec!["Z"]);
    assert_eq!(values(&e, "sn"), vec!["Family"]);
}

#[tokio::test]
async fn disable_and_enable_are_idempotent_and_visible() {
    let gw = TestGateway::start().await;
    let id = gw.create_user("dis@contoso.com").await;
    let path = format!("/Users/{id}");
    let disable = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations":[{"op":"Replace","path":"active","value":"False"}]});
    for _ in 0..2 {
        let r = gw.patch(&path, &disable).await.expect(200);
        assert_eq!(r.body["active"], false);
        let e = gw.entry_by_id(&id).await.unwrap();
        assert_eq!(
            values(&e, "pwdAccountLockedTime"),
            vec!["000001010000Z"],
            "disabling twice stays disabled"
        );
    }
    // Still returned by GET and by filters.
    assert_eq!(gw.get(&path).await.expect(200).body["active"], false);
    let r = gw
        .filter("userName eq \"dis@contoso.com\"")
        .await
        .expect(200);
    assert_eq!(r.body["Resources"][0]["active"], false);
    let r = gw.filter("active eq false").await.expect(200);
    assert_eq!(r.body["totalResults"], 1);

    let enable = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations":[{"op":"replace","path":"active","value":true}]});
    for _ in 0..2 {
        gw.patch(&path, &enable).await.expect(200);
        let e = gw.entry_by_id(&id).await.unwrap();
        assert!(first(&e, "pwdAccountLockedTime").is_none());
    }
    // Okta: path-less {"active": false}
    let okta = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations":[{"op":"replace","value":{"active":false}}]});
    assert_eq!(
        gw.patch(&path, &okta).await.expect(200).body["active"],
        false
    );
    let e = gw.entry_by_id(&id).await.unwrap();
    assert_eq!(values(&e, "pwdAccountLockedTime"), vec!["000001010000Z"]);
}

#[tokio::test]
async fn manager_is_a_plain_string_in_an_object_out_and_a_dn_inside() {
    let gw = TestGateway::start().await;
    let alice = gw.seeded_id("alice").await;
    let id = gw.create_user("report@contoso.com").await;
    let path = format!("/Users/{id}");
    let before = gw.directory_operations();
    let r = gw
        .patch(
            &path,
            &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
          {"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":alice}]}),
        )
        .await
        .expect(200);
    // The gateway remembers where the user it created is: the manager's id resolved and one
    // modify asserting the entry is still that user (which reads the result back), no read of
    // the user; the response's manager id is known from the resolution, not looked up again.
    assert_eq!(gw.directory_operations() - before, 2);
    assert_eq!(r.body[ENTERPRISE]["manager"], json!({"value": alice}));
    let e = gw.entry_by_id(&id).await.unwrap();
    assert_eq!(values(&e, "manager"), vec![people_dn("alice")]);
    assert_eq!(
        gw.get(&path).await.body[ENTERPRISE]["manager"]["value"],
        alice
    );

    // An unknown manager id is refused and nothing changes.
    gw.patch(
        &path,
        &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
          {"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"00000000-0000-0000-0000-000000000000"}]}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    assert_eq!(
        values(&gw.entry_by_id(&id).await.unwrap(), "manager"),
        vec![people_dn("alice")]
    );

    gw.patch(
        &path,
        &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
          {"op":"remove","path":format!("manager[value eq \"{alice}\"]")}]}),
    )
    .await
    .expect(200);
    assert!(first(&gw.entry_by_id(&id).await.unwrap(), "manager").is_none());
}

#[tokio::test]
async fn okta_put_replaces_the_profile() {
    let gw = TestGateway::start().await;
    let r = gw
        .post("/Users", &entra_create_body("okta@contoso.com"))
        .await
        .expect(201);
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = gw
        .put(
            &format!("/Users/{id}"),
            &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":id,"userName":"okta@contoso.com",
                "name":{"givenName":"Olga","familyName":"Okta"},"emails":[{"primary":true,"value":"olga@contoso.com","type":"work"}],
                "displayName":"Olga Okta","active":true,"groups":[]}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["displayName"], "Olga Okta");
    let e = gw.entry_by_id(&id).await.unwrap();
    assert_eq!(values(&e, "givenName"), vec!["Olga"]);
    assert_eq!(values(&e, "mail"), vec!["olga@contoso.com"]);
    assert_eq!(values(&e, "displayName"), vec!["Olga Okta"]);
    assert!(
        first(&e, "employeeNumber").is_none(),
        "PUT removes what it leaves out"
    );
    assert!(first(&e, "scimExternalId").is_none());
    assert_eq!(
        values(&e, "cn"),
        vec!["Olga Okta"],
        "cn (required) falls back to displayName"
    );
    // Changing the id in the body is refused.
    gw.put(
        &format!("/Users/{id}"),
        &json!({"id":"other","userName":"okta@contoso.com"}),
    )
    .await
    .expect_error(400, Some("mutability"));
    gw.put(
        "/Users/3f0a0e55-0000-0000-0000-000000000000",
        &json!({"userName":"x"}),
    )
    .await
    .expect_error(404, None);
}

#[tokio::test]
async fn delete_removes_the_entry_and_later_requests_are_404() {
    let gw = TestGateway::start().await;
    let id = gw.create_user("gone@contoso.com").await;
    gw.delete(&format!("/Users/{id}")).await.expect(204);
    assert!(gw.entry_by_id(&id).await.is_none());
    gw.get(&format!("/Users/{id}"))
        .await
        .expect_error(404, None);
    gw.delete(&format!("/Users/{id}"))
        .await
        .expect_error(404, None);
    gw.patch(
        &format!("/Users/{id}"),
        &json!({"Operations":[{"op":"replace","path":"title","value":"x"}]}),
    )
    .await
    .expect_error(404, None);
}

#[tokio::test]
async fn soft_delete_disables_and_moves_out_of_the_subtree() {
    let gw = TestGateway::start_with(|t| {
        t.replace(
            "[mapping.users.delete]\ntype = \"hard\"",
            "[mapping.users.delete]\ntype = \"soft\"\nmove_to = \"ou=deleted,dc=example,dc=org\"",
        )
    })
    .await;
    let id = gw.create_user("soft@contoso.com").await;
    gw.delete(&format!("/Users/{id}")).await.expect(204);
    let e = gw
        .entry_by_id(&id)
        .await
        .expect("soft-deleted entry still exists");
    assert_eq!(e.dn, "uid=soft@contoso.com,ou=deleted,dc=example,dc=org");
    assert_eq!(values(&e, "pwdAccountLockedTime"), vec!["000001010000Z"]);
    gw.get(&format!("/Users/{id}"))
        .await
        .expect_error(404, None);
}

#[tokio::test]
async fn paging_is_stable_and_complete() {
    let gw = TestGateway::start().await;
    for i in 0..7 {
        gw.create_user(&format!("page{i}@contoso.com")).await;
    }
    // 3 seeded users + 7 created.
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let r = gw
            .get(&format!("/Users?startIndex={start}&count=3"))
            .await
            .expect(200);
        assert_eq!(r.body["totalResults"], 10);
        assert_eq!(r.body["startIndex"], start);
        let page = r.resource_ids();
        assert_eq!(r.body["itemsPerPage"], page.len());
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        seen.extend(page);
        start += 3;
    }
    assert_eq!(seen.len(), 10);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "no user twice across pages");
    // The same walk again gives the same order.
    let mut again = Vec::new();
    for start in [1, 4, 7, 10] {
        let r = gw.get(&format!("/Users?startIndex={start}&count=3")).await;
        again.extend(r.resource_ids());
    }
    assert_eq!(again, seen);
    // RFC edge cases.
    let r = gw.get("/Users?startIndex=0&count=2").await.expect(200);
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(r.body["Resources"][0]["id"], seen[0].as_str());
    let r = gw.get("/Users?count=0").await.expect(200);
    assert_eq!(r.body["totalResults"], 10);
    assert_eq!(r.body["itemsPerPage"], 0);
    let r = gw.get("/Users?count=-5").await.expect(200);
    assert_eq!(r.body["itemsPerPage"], 0);
    let r = gw.get("/Users?startIndex=1&count=100").await.expect(200);
    assert_eq!(r.body["itemsPerPage"], 10);
    // A first window that ends exactly at the last user holds them all (one search with a size
    // limit: the directory's own order, which need not be the paged one); one short of it sends
    // the gateway walking the ids, and so does any later window, in the order of the pages above.
    // LDAP requests per window: the whole result in one; one short of it, the limited search,
    // one page of ids and the window's fetch (no abandon of a paged search in between).
    let sent = |before: u64| gw.directory_operations() - before;
    let before = gw.directory_operations();
    let r = gw.get("/Users?startIndex=1&count=10").await.expect(200);
    assert_eq!(sent(before), 1, "a first window holding every user");
    assert_eq!(r.body["totalResults"], 10);
    let mut all = r.resource_ids();
    all.sort();
    assert_eq!(all, unique);
    let before = gw.directory_operations();
    let r = gw.get("/Users?startIndex=1&count=9").await.expect(200);
    assert_eq!(sent(before), 3, "a first window one short of every user");
    assert_eq!(r.body["totalResults"], 10);
    assert_eq!(r.resource_ids(), seen[..9]);
    let r = gw.get("/Users?startIndex=2&count=10").await.expect(200);
    assert_eq!(r.body["totalResults"], 10);
    assert_eq!(r.resource_ids(), seen[1..]);
    gw.get("/Users?count=abc")
        .await
        .expect_error(400, Some("invalidValue"));
}

#[tokio::test]
async fn rename_keeps_the_id() {
    let gw = TestGateway::start().await;
    let id = gw.create_user("before@contoso.com").await;
    let r = gw
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
              {"op":"replace","path":"userName","value":"after@contoso.com"},
              {"op":"replace","path":"title","value":"Renamed"}]}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["userName"], "after@contoso.com");
    let e = gw.entry_by_id(&id).await.unwrap();
    assert_eq!(e.dn, people_dn("after@contoso.com"));
    assert_eq!(values(&e, "uid"), vec!["after@contoso.com"]);
    assert_eq!(values(&e, "title"), vec!["Renamed"]);

    // Renaming onto an existing user is 409 and nothing of the PATCH stays.
    gw.patch(
        &format!("/Users/{id}"),
        &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
          {"op":"replace","path":"title","value":"Should not stay"},
          {"op":"replace","path":"userName","value":"alice"}]}),
    )
    .await
    .expect_error(409, Some("uniqueness"));
    let e = gw.entry_by_id(&id).await.unwrap();
    assert_eq!(e.dn, people_dn("after@contoso.com"));
    assert_eq!(values(&e, "title"), vec!["Renamed"]);
}

#[tokio::test]
async fn unmapped_attributes_are_refused_not_dropped() {
    let gw = TestGateway::start().await;
    let r = gw
        .post(
            "/Users",
            &json!({"userName":"nick@contoso.com","nickName":"Nicky"}),
        )
        .await
        .expect_error(400, Some("invalidValue"));
    assert!(
        r.body["detail"].as_str().unwrap().contains("nickName"),
        "{}",
        r.body
    );
    assert!(gw
        .slapd
        .entry(&people_dn("nick@contoso.com"))
        .await
        .is_none());
    // Okta's password is not mapped in the demo config either.
    gw.post(
        "/Users",
        &json!({"userName":"pw@contoso.com","password":"S3cret!"}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    // Empty values of unmapped attributes are fine (Entra sends roles: []).
    gw.post(
        "/Users",
        &json!({"userName":"roles@contoso.com","roles":[],"nickName":null,"groups":[]}),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn patch_is_all_or_nothing() {
    let gw = TestGateway::start().await;
    let id = gw.create_user("atomic@contoso.com").await;
    let path = format!("/Users/{id}");
    // Second operation targets an unmapped attribute.
    gw.patch(
        &path,
        &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
          {"op":"replace","path":"displayName","value":"Half"},
          {"op":"replace","path":"nickName","value":"nope"}]}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    // A value the directory's schema refuses (telephoneNumber is a PrintableString) fails the whole modify.
    let r = gw
        .patch(
            &path,
            &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
              {"op":"replace","path":"displayName","value":"Half"},
              {"op":"replace","path":"phoneNumbers[type eq \"work\"].value","value":"call_me#maybe"}]}),
        )
        .await
        .expect_error(400, Some("invalidValue"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("telephoneNumber"),
        "{}",
        r.body
    );
    // Removing a required attribute is refused by the schema.
    let e = gw.entry_by_id(&id).await.unwrap();
    assert!(
        first(&e, "displayName").is_none(),
        "nothing of a failed PATCH is written"
    );
    assert!(first(&e, "telephoneNumber").is_none());
}

#[tokio::test]
async fn every_attribute_of_entra_default_mapping_round_trips() {
    let gw = TestGateway::start().await;
    let alice = gw.seeded_id("alice").await;
    let sent = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": "Full.Mapping@contoso.com",
        "externalId": "FullMapping",
        "active": true,
        "displayName": "Full Mapping",
        "title": "Chief Round-Tripper",
        "preferredLanguage": "de-CH",
        "name": {"givenName": "Fülla", "familyName": "Mäpping", "formatted": "Fülla Mäpping"},
        "emails": [{"type": "work", "value": "Full.Mapping@contoso.com", "primary": true}],
        "phoneNumbers": [
            {"type": "work", "value": "+41 44 555 01 00"},
            {"type": "mobile", "value": "+41 79 555 01 01"},
            {"type": "fax", "value": "+41 44 555 01 02"}
        ],
        "addresses": [{
            "type": "work",
            "formatted": "Bahnhofstrasse 1\n8001 Zürich\nSwitzerland",
            "streetAddress": "Bahnhofstrasse 1",
            "locality": "Zürich",
            "region": "ZH",
            "postalCode": "8001",
            "country": "CH"
        }],
        ENTERPRISE: {"employeeNumber": "000123", "department": "Provisioning", "manager": {"value": alice}}
    });
    let created = gw.post("/Users", &sent).await.expect(201).body;
    let id = created["id"].as_str().unwrap().to_string();
    let got = gw.get(&format!("/Users/{id}")).await.expect(200).body;
    for key in [
        "userName",
        "externalId",
        "active",
        "displayName",
        "title",
        "preferredLanguage",
        "name",
        "emails",
        "addresses",
    ] {
        assert_eq!(got[key], sent[key], "{key} must come back exactly as sent");
    }
    let mut phones = got["phoneNumbers"].as_array().unwrap().clone();
    phones.sort_by_key(|p| p["type"].as_str().unwrap().to_string());
    let mut want = sent["phoneNumbers"].as_array().unwrap().clone();
    want.sort_by_key(|p| p["type"].as_str().unwrap().to_string());
    assert_eq!(phones, want);
    assert_eq!(got[ENTERPRISE], sent[ENTERPRISE]);
    assert_eq!(created, got, "the POST response is the stored resource");

    let e = gw.entry_by_id(&id).await.unwrap();
    for (attr, want) in [
        ("uid", "Full.Mapping@contoso.com"),
        ("scimExternalId", "FullMapping"),
        ("displayName", "Full Mapping"),
        ("title", "Chief Round-Tripper"),
        ("preferredLanguage", "de-CH"),
        ("givenName", "Fülla"),
        ("sn", "Mäpping"),
        ("cn", "Fülla Mäpping"),
        ("mail", "Full.Mapping@contoso.com"),
        ("telephoneNumber", "+41 44 555 01 00"),
        ("mobile", "+41 79 555 01 01"),
        ("facsimileTelephoneNumber", "+41 44 555 01 02"),
        (
            "postalAddress",
            "Bahnhofstrasse 1\n8001 Zürich\nSwitzerland",
        ),
        ("street", "Bahnhofstrasse 1"),
        ("l", "Zürich"),
        ("st", "ZH"),
        ("postalCode", "8001"),
        ("scimAddressCountry", "CH"),
        ("employeeNumber", "000123"),
        ("departmentNumber", "Provisioning"),
    ] {
        assert_eq!(
            values(&e, attr),
            vec![want.to_string()],
            "LDAP attribute {attr}"
        );
    }
    assert_eq!(values(&e, "manager"), vec![people_dn("alice")]);

    // A second identical PUT changes nothing: Entra's diff converges.
    let before = first(&e, "modifyTimestamp");
    let mut again = sent.clone();
    again["id"] = json!(id);
    let put = gw
        .put(&format!("/Users/{id}"), &again)
        .await
        .expect(200)
        .body;
    assert_eq!(put, got);
    let after = gw.entry_by_id(&id).await.unwrap();
    assert_eq!(first(&after, "modifyTimestamp"), before);
    assert_eq!(
        first(&after, "entryCSN"),
        first(&e, "entryCSN"),
        "no write for an unchanged resource"
    );
}

#[tokio::test]
async fn generic_attribute_disable_strategy() {
    let gw = TestGateway::start_with(|t| {
        t.replace(
            "[mapping.users.disable]\ntype = \"ppolicy\"",
            "[mapping.users.disable]\ntype = \"attribute\"\nattribute = \"employeeType\"\nvalue = \"disabled\"",
        )
    })
    .await;
    let id = gw.create_user("generic@contoso.com").await;
    let path = format!("/Users/{id}");
    let off = json!({"Operations":[{"op":"replace","path":"active","value":false}]});
    for _ in 0..2 {
        assert_eq!(
            gw.patch(&path, &off).await.expect(200).body["active"],
            false
        );
        let e = gw.entry_by_id(&id).await.unwrap();
        assert_eq!(values(&e, "employeeType"), vec!["disabled"]);
        assert!(first(&e, "pwdAccountLockedTime").is_none());
    }
    assert_eq!(
        gw.filter("active eq false").await.expect(200).body["totalResults"],
        1
    );
    assert_eq!(
        gw.filter("active eq true").await.expect(200).body["totalResults"],
        3
    );
    let on = json!({"Operations":[{"op":"replace","path":"active","value":"True"}]});
    assert_eq!(gw.patch(&path, &on).await.expect(200).body["active"], true);
    assert!(first(&gw.entry_by_id(&id).await.unwrap(), "employeeType").is_none());
    // Created disabled.
    let r = gw
        .post(
            "/Users",
            &json!({"userName": "born-disabled", "active": false}),
        )
        .await
        .expect(201);
    assert_eq!(r.body["active"], false);
    let e = gw.slapd.entry(&people_dn("born-disabled")).await.unwrap();
    assert_eq!(values(&e, "employeeType"), vec!["disabled"]);
}

#[tokio::test]
async fn a_case_only_user_name_change_is_stored() {
    let gw = TestGateway::start().await;
    let id = gw.create_user("case.change@contoso.com").await;
    let r = gw
        .patch(
            &format!("/Users/{id}"),
            &json!({"Operations":[{"op":"replace","path":"userName","value":"Case.Change@Contoso.com"}]}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["userName"], "Case.Change@Contoso.com");
    let e = gw.entry_by_id(&id).await.unwrap();
    assert_eq!(values(&e, "uid"), vec!["Case.Change@Contoso.com"]);
}

#[tokio::test]
async fn every_filter_operator_against_the_directory() {
    let gw = TestGateway::start().await;
    let id = gw.create_user("ops@contoso.com").await;
    gw.patch(
        &format!("/Users/{id}"),
        &json!({"Operations":[{"op":"add","path":"title","value":"Chief Operator"},
                              {"op":"add","path":"phoneNumbers[type eq \"mobile\"].value","value":"+1 555 0199"}]}),
    )
    .await
    .expect(200);
    let created = gw.get(&format!("/Users/{id}")).await.body["meta"]["created"]
        .as_str()
        .unwrap()
        .to_string();
    let names = |r: &crate::gateway::Resp| {
        let mut v: Vec<String> = r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    // Seeded: alice (Engineer), bob, carol; created: ops.
    for (filter, expect) in [
        ("title co \"operator\"", vec!["ops@contoso.com"]),
        ("title sw \"Chief\"", vec!["ops@contoso.com"]),
        ("title ew \"OPERATOR\"", vec!["ops@contoso.com"]),
        (
            "phoneNumbers[type eq \"mobile\"] and not (userName eq \"alice\")",
            vec!["ops@contoso.com"],
        ),
        ("phoneNumbers pr", vec!["ops@contoso.com"]),
        (
            "userName ne \"ops@contoso.com\" and userName sw \"a\"",
            vec!["alice"],
        ),
        (
            "(userName eq \"alice\" or userName eq \"bob\") and title pr",
            vec!["alice", "bob"],
        ),
        ("USERNAME EQ \"ALICE\"", vec!["alice"]),
        (
            "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"bob\"",
            vec!["bob"],
        ),
        ("phoneNumbers eq null and userName sw \"o\"", vec![]),
        ("phoneNumbers ne null", vec!["ops@contoso.com"]),
        (
            "emails[type eq \"work\" and value sw \"15@\"]",
            vec!["ops@contoso.com"],
        ),
    ] {
        let r = gw.filter(filter).await.expect(200);
        assert_eq!(names(&r), expect, "filter {filter}");
        assert_eq!(r.body["totalResults"], expect.len(), "filter {filter}");
    }
    // dateTime comparisons on meta.created.
    let r = gw
        .filter(&format!(
            "meta.created ge \"{created}\" and userName eq \"ops@contoso.com\""
        ))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 1);
    let r = gw
        .filter(&format!("meta.created gt \"{created}\""))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 0);
    let r = gw
        .filter("meta.lastModified lt \"2000-01-01T00:00:00Z\"")
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 0);
}
