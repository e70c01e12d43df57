//! Groups and memberships against a real slapd: every PATCH shape of SCIM-CLIENTS.md, the group
//! shapes, empty groups, nesting, membership upkeep on user delete and rename.

use crate::gateway::{first, people_dn, values, TestGateway};
use crate::slapd::SUFFIX;
use serde_json::{json, Value};

const PLACEHOLDER: &str = "cn=empty-membership,dc=example,dc=org";
const ENTRA_GROUP: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";

fn group_dn(cn: &str) -> String {
    format!("cn={cn},ou=groups,{SUFFIX}")
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

/// Member values of a group as the directory holds them, lowercased and sorted.
async fn stored_members(gw: &TestGateway, cn: &str, attr: &str) -> Vec<String> {
    let e = gw
        .slapd
        .entry(&group_dn(cn))
        .await
        .unwrap_or_else(|| panic!("group {cn} missing"));
    let mut v: Vec<String> = values(&e, attr)
        .into_iter()
        .map(|s| s.to_lowercase())
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.iter_mut().for_each(|s| *s = s.to_lowercase());
    v.sort();
    v
}

/// Member ids of a group as SCIM shows them, sorted.
async fn scim_members(gw: &TestGateway, id: &str) -> Vec<String> {
    let r = gw.get(&format!("/Groups/{id}")).await.expect(200);
    let mut ids: Vec<String> = r.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn create_group(gw: &TestGateway, name: &str) -> String {
    let r = gw
        .post(
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", ENTRA_GROUP], "displayName": name}),
        )
        .await
        .expect(201);
    r.body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn entra_group_lifecycle() {
    let gw = TestGateway::start().await;
    let alice = gw.seeded_id("alice").await;
    let bob = gw.seeded_id("bob").await;

    // Entra creates groups empty, with its own extra schema URI and an externalId.
    let r = gw
        .post(
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", ENTRA_GROUP],
                    "displayName": "Sales EMEA", "externalId": "8f2a", "members": []}),
        )
        .await
        .expect(201);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["members"], json!([]));
    assert_eq!(r.body["displayName"], "Sales EMEA");
    assert_eq!(r.body["externalId"], "8f2a");
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        r.body["meta"]["location"].as_str().unwrap()
    );
    assert_eq!(r.body["meta"]["resourceType"], "Group");
    let e = gw.slapd.entry(&group_dn("Sales EMEA")).await.unwrap();
    assert_eq!(first(&e, "entryUUID").unwrap(), id);
    assert_eq!(
        values(&e, "member"),
        vec![PLACEHOLDER],
        "an empty group holds only the placeholder"
    );
    assert_eq!(values(&e, "scimExternalId"), vec!["8f2a"]);

    // Lookup as Entra does it.
    let r = gw
        .get("/Groups?excludedAttributes=members&filter=displayName%20eq%20%22Sales%20EMEA%22")
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.body["Resources"][0]["id"], id.as_str());
    assert!(
        r.body["Resources"][0].get("members").is_none(),
        "{}",
        r.body
    );
    let r = gw
        .get(&format!("/Groups/{id}?excludedAttributes=members"))
        .await
        .expect(200);
    assert!(r.body.get("members").is_none());

    // Add two members in one operation.
    let r = gw
        .patch(
            &format!("/Groups/{id}"),
            &patch(json!([{"op":"Add","path":"members","value":[{"$ref":null,"value":alice},{"$ref":null,"value":bob}]}])),
        )
        .await
        .expect(204);
    assert_eq!(r.body, Value::Null);
    assert_eq!(
        stored_members(&gw, "Sales EMEA", "member").await,
        sorted(vec![
            people_dn("alice"),
            people_dn("bob"),
            PLACEHOLDER.into()
        ])
    );
    assert_eq!(
        scim_members(&gw, &id).await,
        sorted(vec![alice.clone(), bob.clone()])
    );
    let r = gw.get(&format!("/Groups/{id}")).await;
    for m in r.body["members"].as_array().unwrap() {
        assert_eq!(m["type"], "User");
        assert!(m["$ref"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Users/{}", m["value"].as_str().unwrap())));
    }

    // Remove with a value list removes only the listed member.
    gw.patch(
        &format!("/Groups/{id}"),
        &patch(json!([{"op":"Remove","path":"members","value":[{"$ref":null,"value":alice}]}])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "Sales EMEA", "member").await,
        sorted(vec![people_dn("bob"), PLACEHOLDER.into()])
    );

    // Rename: a modrdn; the id stays.
    gw.patch(
        &format!("/Groups/{id}"),
        &patch(json!([{"op":"Replace","path":"displayName","value":"Sales Europe"}])),
    )
    .await
    .expect(204);
    assert!(gw.slapd.entry(&group_dn("Sales EMEA")).await.is_none());
    let e = gw.slapd.entry(&group_dn("Sales Europe")).await.unwrap();
    assert_eq!(first(&e, "entryUUID").unwrap(), id);
    assert_eq!(values(&e, "cn"), vec!["Sales Europe"]);
    let r = gw.get(&format!("/Groups/{id}")).await.expect(200);
    assert_eq!(r.body["displayName"], "Sales Europe");
    assert_eq!(r.body["members"].as_array().unwrap().len(), 1);

    // Delete.
    gw.delete(&format!("/Groups/{id}")).await.expect(204);
    assert!(gw.slapd.entry(&group_dn("Sales Europe")).await.is_none());
    gw.get(&format!("/Groups/{id}"))
        .await
        .expect_error(404, None);
    gw.delete(&format!("/Groups/{id}"))
        .await
        .expect_error(404, None);
}

#[tokio::test]
async fn every_patch_shape() {
    let gw = TestGateway::start().await;
    let (alice, bob, carol) = (
        gw.seeded_id("alice").await,
        gw.seeded_id("bob").await,
        gw.seeded_id("carol").await,
    );
    let id = create_group(&gw, "shapes").await;
    let path = format!("/Groups/{id}");
    let all = |v: Vec<&str>| {
        sorted(
            v.into_iter()
                .map(|u| {
                    if u == PLACEHOLDER {
                        u.to_string()
                    } else {
                        people_dn(u)
                    }
                })
                .collect(),
        )
    };

    gw.patch(&path, &patch(json!([{"op":"add","path":"members","value":[{"value":alice},{"value":bob},{"value":carol}]}])))
        .await
        .expect(204);
    // Remove by filter.
    gw.patch(
        &path,
        &patch(json!([{"op":"remove","path":format!("members[value eq \"{bob}\"]")}])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "shapes", "member").await,
        all(vec!["alice", "carol", PLACEHOLDER])
    );
    // Okta: one PATCH mixes remove by filter and add.
    gw.patch(
        &path,
        &patch(json!([
            {"op":"remove","path":format!("members[value eq \"{alice}\"]")},
            {"op":"add","path":"members","value":[{"value":bob,"display":"bob"}]}
        ])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "shapes", "member").await,
        all(vec!["bob", "carol", PLACEHOLDER])
    );
    // Adding a present member and removing an absent one are successes that change nothing.
    gw.patch(
        &path,
        &patch(json!([
            {"op":"add","path":"members","value":[{"value":bob}]},
            {"op":"remove","path":"members","value":[{"value":alice}]}
        ])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "shapes", "member").await,
        all(vec!["bob", "carol", PLACEHOLDER])
    );
    // Replace the whole list.
    gw.patch(
        &path,
        &patch(json!([{"op":"replace","path":"members","value":[{"value":alice}]}])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "shapes", "member").await,
        all(vec!["alice", PLACEHOLDER])
    );
    assert_eq!(scim_members(&gw, &id).await, vec![alice.clone()]);
    // Okta rename: path-less replace with the id.
    gw.patch(
        &path,
        &patch(json!([{"op":"replace","value":{"id":id,"displayName":"shapes renamed"}}])),
    )
    .await
    .expect(204);
    assert!(gw.slapd.entry(&group_dn("shapes renamed")).await.is_some());
    assert_eq!(
        gw.get(&path).await.expect(200).body["displayName"],
        "shapes renamed"
    );
    // An unknown member id is refused, naming it, and nothing of the PATCH is applied.
    let r = gw
        .patch(
            &path,
            &patch(json!([
                {"op":"replace","path":"displayName","value":"must not happen"},
                {"op":"add","path":"members","value":[{"value":bob},{"value":"6c1f0f1e-0000-0000-0000-00000000dead"}]}
            ])),
        )
        .await
        .expect_error(400, Some("invalidValue"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("6c1f0f1e-0000-0000-0000-00000000dead"),
        "{}",
        r.body
    );
    assert_eq!(
        stored_members(&gw, "shapes renamed", "member").await,
        all(vec!["alice", PLACEHOLDER])
    );
    assert!(gw.slapd.entry(&group_dn("must not happen")).await.is_none());
    // Unsupported shapes are clear 400s.
    gw.patch(
        &path,
        &patch(json!([{"op":"remove","path":"members[display eq \"x\"]"}])),
    )
    .await
    .expect_error(400, Some("invalidPath"));
    gw.patch(&path, &patch(json!([{"op":"remove","path":"displayName"}])))
        .await
        .expect_error(400, Some("invalidValue"));
    gw.patch(
        &path,
        &patch(json!([{"op":"add","path":"owners","value":[{"value":alice}]}])),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    // Removing every member keeps the group, empty.
    gw.patch(&path, &patch(json!([{"op":"remove","path":"members"}])))
        .await
        .expect(204);
    assert_eq!(
        stored_members(&gw, "shapes renamed", "member").await,
        vec![PLACEHOLDER]
    );
    assert_eq!(scim_members(&gw, &id).await, Vec::<String>::new());
}

#[tokio::test]
async fn empty_groups_never_show_or_lose_the_placeholder() {
    let gw = TestGateway::start().await;
    let alice = gw.seeded_id("alice").await;
    let id = create_group(&gw, "empty").await;
    let path = format!("/Groups/{id}");
    gw.patch(
        &path,
        &patch(json!([{"op":"add","path":"members","value":[{"value":alice}]}])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "empty", "member").await,
        sorted(vec![people_dn("alice"), PLACEHOLDER.into()])
    );
    gw.patch(
        &path,
        &patch(json!([{"op":"remove","path":format!("members[value eq \"{alice}\"]")}])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "empty", "member").await,
        vec![PLACEHOLDER]
    );
    assert_eq!(gw.get(&path).await.body["members"], json!([]));
    // Replace with an empty list, then add to the empty group again.
    gw.patch(
        &path,
        &patch(json!([{"op":"replace","path":"members","value":[]}])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "empty", "member").await,
        vec![PLACEHOLDER]
    );
    gw.patch(
        &path,
        &patch(json!([{"op":"add","path":"members","value":[{"value":alice}]}])),
    )
    .await
    .expect(204);
    assert_eq!(scim_members(&gw, &id).await, vec![alice]);
    // A group created with members via PUT semantics.
    let r = gw
        .put(&path, &json!({"displayName":"empty","members":[]}))
        .await
        .expect(200);
    assert_eq!(r.body["members"], json!([]));
    assert_eq!(
        stored_members(&gw, "empty", "member").await,
        vec![PLACEHOLDER]
    );
}

#[tokio::test]
async fn duplicate_display_name_and_filters() {
    let gw = TestGateway::start().await;
    let alice = gw.seeded_id("alice").await;
    let bob = gw.seeded_id("bob").await;
    gw.post("/Groups", &json!({"displayName": "engineering"}))
        .await
        .expect_error(409, Some("uniqueness"));
    gw.post("/Groups", &json!({"displayName": "ENGINEERING"}))
        .await
        .expect_error(409, Some("uniqueness"));
    let r = gw
        .post(
            "/Groups",
            &json!({"displayName": "filters", "externalId": "ext-f", "members": [{"value": bob}]}),
        )
        .await
        .expect(201);
    let id = r.body["id"].as_str().unwrap().to_string();
    let eng = first(
        &gw.slapd.entry(&group_dn("engineering")).await.unwrap(),
        "entryUUID",
    )
    .unwrap();
    let found = |r: &crate::gateway::Resp| {
        let mut ids: Vec<String> = r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let q = |f: &str| {
        format!(
            "/Groups?excludedAttributes=members&filter={}",
            crate::gateway::url_encode(f)
        )
    };
    assert_eq!(
        found(&gw.get(&q("displayName eq \"Filters\"")).await.expect(200)),
        vec![id.clone()]
    );
    assert_eq!(
        found(&gw.get(&q("externalId eq \"ext-f\"")).await.expect(200)),
        vec![id.clone()]
    );
    assert_eq!(
        found(
            &gw.get(&q(&format!("members[value eq \"{alice}\"]")))
                .await
                .expect(200)
        ),
        vec![eng.clone()]
    );
    assert_eq!(
        found(
            &gw.get(&q(&format!("members.value eq \"{bob}\"")))
                .await
                .expect(200)
        ),
        sorted(vec![eng.clone(), id.clone()])
    );
    assert_eq!(
        found(
            &gw.get(&q(
                "members.value eq \"00000000-0000-0000-0000-000000000000\""
            ))
            .await
            .expect(200)
        ),
        Vec::<String>::new()
    );
    gw.get(&q("owner eq \"x\""))
        .await
        .expect_error(400, Some("invalidFilter"));
    // Paging over groups: 3 seeded + 1.
    let r = gw
        .get("/Groups?excludedAttributes=members&startIndex=1&count=2")
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 4);
    assert_eq!(r.body["itemsPerPage"], 2);
}

#[tokio::test]
async fn nested_groups_are_type_group() {
    let gw = TestGateway::start().await;
    let outer = create_group(&gw, "outer").await;
    let inner = create_group(&gw, "inner").await;
    gw.patch(
        &format!("/Groups/{outer}"),
        &patch(json!([{"op":"add","path":"members","value":[{"value":inner}]}])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "outer", "member").await,
        sorted(vec![group_dn("inner"), PLACEHOLDER.into()])
    );
    let r = gw.get(&format!("/Groups/{outer}")).await.expect(200);
    assert_eq!(r.body["members"][0]["value"], inner.as_str());
    assert_eq!(r.body["members"][0]["type"], "Group");
    assert!(r.body["members"][0]["$ref"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/Groups/{inner}")));
}

#[tokio::test]
async fn users_show_their_groups_read_only() {
    let gw = TestGateway::start().await;
    let alice = gw.seeded_id("alice").await;
    let id = create_group(&gw, "readers").await;
    gw.patch(
        &format!("/Groups/{id}"),
        &patch(json!([{"op":"add","path":"members","value":[{"value":alice}]}])),
    )
    .await
    .expect(204);
    let r = gw.get(&format!("/Users/{alice}")).await.expect(200);
    let mut names: Vec<&str> = r.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["display"].as_str().unwrap())
        .collect();
    names.sort();
    assert!(names.contains(&"readers"), "{names:?}");
    let g = r.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["display"] == "readers")
        .unwrap();
    assert_eq!(g["value"], id.as_str());
    // groups is read-only: sent in a PUT or PATCH it is ignored, memberships stay as they are.
    let mut put = r.body.clone();
    put["groups"] = json!([]);
    put["title"] = json!("Lead");
    gw.put(&format!("/Users/{alice}"), &put).await.expect(200);
    gw.patch(
        &format!("/Users/{alice}"),
        &patch(json!([{"op":"replace","value":{"groups":[], "displayName":"Alice A."}}])),
    )
    .await
    .expect(200);
    let e = gw.slapd.entry(&people_dn("alice")).await.unwrap();
    assert_eq!(values(&e, "title"), vec!["Lead"]);
    assert_eq!(values(&e, "displayName"), vec!["Alice A."]);
    for group in ["readers", "engineering"] {
        let members = stored_members(&gw, group, "member").await;
        assert!(
            members.contains(&people_dn("alice").to_lowercase()),
            "{group}: {members:?}"
        );
    }
    let r = gw.get(&format!("/Users/{alice}")).await.expect(200);
    assert_eq!(r.body["groups"].as_array().unwrap().len(), 2);
}

/// The stored members of group `cn` equal `want`, at once or within 5 s: refint, when the
/// directory keeps the groups, updates them in a background task after answering the delete or
/// rename.
async fn members_settle_to(gw: &TestGateway, cn: &str, attr: &str, want: Vec<String>) {
    let settled = crate::gateway::eventually(std::time::Duration::from_secs(5), || async {
        stored_members(gw, cn, attr).await == want
    });
    if !settled.await {
        assert_eq!(stored_members(gw, cn, attr).await, want, "{cn}");
    }
}

/// Delete and rename a user; the group must follow, whoever keeps it consistent.
async fn membership_follows_user_changes(gw: &TestGateway) {
    let dave = gw.create_user("dave@contoso.com").await;
    let erin = gw.create_user("erin@contoso.com").await;
    let id = create_group(gw, "followers").await;
    gw.patch(
        &format!("/Groups/{id}"),
        &patch(json!([{"op":"add","path":"members","value":[{"value":dave},{"value":erin}]}])),
    )
    .await
    .expect(204);
    // Rename dave: the group now lists the new DN.
    gw.patch(
        &format!("/Users/{dave}"),
        &patch(json!([{"op":"replace","path":"userName","value":"david@contoso.com"}])),
    )
    .await
    .expect(200);
    members_settle_to(
        gw,
        "followers",
        "member",
        sorted(vec![
            people_dn("david@contoso.com"),
            people_dn("erin@contoso.com"),
            PLACEHOLDER.into(),
        ]),
    )
    .await;
    assert_eq!(
        scim_members(gw, &id).await,
        sorted(vec![dave.clone(), erin.clone()])
    );
    // Delete erin: the group drops her.
    gw.delete(&format!("/Users/{erin}")).await.expect(204);
    members_settle_to(
        gw,
        "followers",
        "member",
        sorted(vec![people_dn("david@contoso.com"), PLACEHOLDER.into()]),
    )
    .await;
    assert_eq!(scim_members(gw, &id).await, vec![dave]);
}

#[tokio::test]
async fn membership_follows_users_with_directory_overlays() {
    let gw = TestGateway::start().await;
    membership_follows_user_changes(&gw).await;
}

#[tokio::test]
async fn membership_follows_users_with_gateway_upkeep() {
    // The same directory, but the gateway is told to keep memberships itself, without memberOf.
    let gw = TestGateway::start_with(|t| {
        t.replace(
            "membership_integrity = \"directory\"",
            "membership_integrity = \"gateway\"",
        )
        .replace("member_of_attribute = \"memberOf\"\n", "")
    })
    .await;
    membership_follows_user_changes(&gw).await;
    // Reverse search for a user's groups.
    let alice = gw.seeded_id("alice").await;
    let r = gw.get(&format!("/Users/{alice}")).await.expect(200);
    assert!(
        r.body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["display"] == "engineering"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn group_of_unique_names() {
    let gw = TestGateway::start_with(|t| {
        t.replace(
            "filter = \"(objectClass=groupOfNames)\"",
            "filter = \"(objectClass=groupOfUniqueNames)\"",
        )
        .replace(
            "object_classes = [\"top\", \"groupOfNames\", \"scimGroup\"]",
            "object_classes = [\"top\", \"groupOfUniqueNames\", \"scimGroup\"]",
        )
        .replace(
            "member_attribute = \"member\"",
            "member_attribute = \"uniqueMember\"",
        )
        .replace(
            "membership_integrity = \"directory\"",
            "membership_integrity = \"gateway\"",
        )
        .replace("member_of_attribute = \"memberOf\"\n", "")
    })
    .await;
    let alice = gw.seeded_id("alice").await;
    let bob = gw.seeded_id("bob").await;
    let id = create_group(&gw, "unique").await;
    let e = gw.slapd.entry(&group_dn("unique")).await.unwrap();
    assert!(values(&e, "objectClass")
        .iter()
        .any(|c| c == "groupOfUniqueNames"));
    assert_eq!(values(&e, "uniqueMember"), vec![PLACEHOLDER]);
    let path = format!("/Groups/{id}");
    gw.patch(
        &path,
        &patch(json!([{"op":"add","path":"members","value":[{"value":alice},{"value":bob}]}])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "unique", "uniqueMember").await,
        sorted(vec![
            people_dn("alice"),
            people_dn("bob"),
            PLACEHOLDER.into()
        ])
    );
    gw.patch(
        &path,
        &patch(json!([{"op":"remove","path":"members","value":[{"value":alice},{"value":bob}]}])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "unique", "uniqueMember").await,
        vec![PLACEHOLDER]
    );
    assert_eq!(scim_members(&gw, &id).await, Vec::<String>::new());
}

#[tokio::test]
async fn posix_groups_hold_user_names() {
    let gw = TestGateway::start_with(|t| {
        t.replace(
            "filter = \"(objectClass=groupOfNames)\"",
            "filter = \"(objectClass=posixGroup)\"",
        )
        .replace(
            "object_classes = [\"top\", \"groupOfNames\", \"scimGroup\"]",
            "object_classes = [\"top\", \"posixGroup\", \"scimGroup\"]",
        )
        .replace(
            "member_attribute = \"member\"",
            "member_attribute = \"memberUid\"",
        )
        .replace("member_value = \"dn\"", "member_value = \"user_name\"")
        .replace(
            "placeholder_member = \"cn=empty-membership,dc=example,dc=org\"\n",
            "",
        )
        .replace(
            "membership_integrity = \"directory\"",
            "membership_integrity = \"gateway\"",
        )
        .replace("member_of_attribute = \"memberOf\"\n", "")
            + "\n[[mapping.groups.constants]]\nldap = \"gidNumber\"\nvalues = [\"5000\"]\n"
    })
    .await;
    let alice = gw.seeded_id("alice").await;
    let frank = gw.create_user("frank").await;
    let r = gw
        .post(
            "/Groups",
            &json!({"displayName": "posix", "members": [{"value": alice}, {"value": frank}]}),
        )
        .await
        .expect(201);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        scim_members(&gw, &id).await,
        sorted(vec![alice.clone(), frank.clone()])
    );
    let e = gw.slapd.entry(&group_dn("posix")).await.unwrap();
    assert_eq!(values(&e, "gidNumber"), vec!["5000"]);
    assert_eq!(
        stored_members(&gw, "posix", "memberUid").await,
        vec!["alice", "frank"]
    );
    // Renaming the user renames the memberUid; deleting it removes it.
    gw.patch(
        &format!("/Users/{frank}"),
        &patch(json!([{"op":"replace","path":"userName","value":"franky"}])),
    )
    .await
    .expect(200);
    assert_eq!(
        stored_members(&gw, "posix", "memberUid").await,
        vec!["alice", "franky"]
    );
    gw.delete(&format!("/Users/{frank}")).await.expect(204);
    assert_eq!(
        stored_members(&gw, "posix", "memberUid").await,
        vec!["alice"]
    );
    // Remove the last member: posixGroup needs no placeholder.
    gw.patch(
        &format!("/Groups/{id}"),
        &patch(json!([{"op":"remove","path":"members"}])),
    )
    .await
    .expect(204);
    assert!(first(
        &gw.slapd.entry(&group_dn("posix")).await.unwrap(),
        "memberUid"
    )
    .is_none());
    // A group cannot be a member of a posixGroup.
    let other = gw
        .post("/Groups", &json!({"displayName": "other"}))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    gw.patch(
        &format!("/Groups/{id}"),
        &patch(json!([{"op":"add","path":"members","value":[{"value":other}]}])),
    )
    .await
    .expect_error(400, Some("invalidValue"));
}

#[tokio::test]
async fn members_outside_the_bases_are_refused() {
    let gw = TestGateway::start().await;
    let outsider = first(
        &gw.slapd
            .entry(&format!("uid=outsider,ou=other,{SUFFIX}"))
            .await
            .unwrap(),
        "entryUUID",
    )
    .unwrap();
    let id = create_group(&gw, "confined").await;
    gw.patch(
        &format!("/Groups/{id}"),
        &patch(json!([{"op":"add","path":"members","value":[{"value":outsider}]}])),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    assert_eq!(
        stored_members(&gw, "confined", "member").await,
        vec![PLACEHOLDER]
    );
}

/// `memberOf` of user `uid` as slapd holds it, lowercased.
async fn member_of(gw: &TestGateway, uid: &str) -> Vec<String> {
    let e = gw.slapd.entry(&people_dn(uid)).await.unwrap();
    values(&e, "memberOf")
        .into_iter()
        .map(|s| s.to_lowercase())
        .collect()
}

#[tokio::test]
async fn member_changes_without_a_group_read_keep_member_of_and_follow_a_moved_group() {
    // A member PATCH writes without reading the group: one modify asserted on the group and on
    // the members it changes. slapd's memberof overlay applies that assertion to its own updates
    // of the members, which must still happen.
    let gw = TestGateway::start().await;
    let alice = gw.seeded_id("alice").await;
    let bob = gw.seeded_id("bob").await;
    let id = create_group(&gw, "blind").await;
    let dn = group_dn("blind").to_lowercase();
    let url = format!("/Groups/{id}");
    gw.patch(
        &url,
        &patch(json!([{"op":"Add","path":"members","value":[{"value":alice},{"value":bob}]}])),
    )
    .await
    .expect(204);
    assert!(member_of(&gw, "alice").await.contains(&dn));
    assert!(member_of(&gw, "bob").await.contains(&dn));
    gw.patch(
        &url,
        &patch(json!([{"op":"remove","path":format!("members[value eq \"{bob}\"]")}])),
    )
    .await
    .expect(204);
    assert!(member_of(&gw, "alice").await.contains(&dn));
    assert!(!member_of(&gw, "bob").await.contains(&dn));
    assert_eq!(
        stored_members(&gw, "blind", "member").await,
        sorted(vec![PLACEHOLDER.into(), people_dn("alice")])
    );

    // Behind the gateway's back the group moves, and another group takes its DN: the remembered
    // DN now holds the wrong group. The asserted write there fails, changes nothing, and the
    // gateway finds the group where it is now.
    let mut admin = gw.slapd.admin().await;
    admin
        .modifydn(&group_dn("blind"), "cn=blind-moved", true, None)
        .await
        .unwrap()
        .success()
        .unwrap();
    let impostor = create_group(&gw, "blind").await;
    assert_ne!(impostor, id);
    gw.patch(
        &url,
        &patch(json!([{"op":"add","path":"members","value":[{"value":bob}]}])),
    )
    .await
    .expect(204);
    assert_eq!(
        stored_members(&gw, "blind", "member").await,
        vec![PLACEHOLDER.to_lowercase()],
        "the group now at the remembered DN is untouched"
    );
    assert_eq!(
        stored_members(&gw, "blind-moved", "member").await,
        sorted(vec![
            PLACEHOLDER.into(),
            people_dn("alice"),
            people_dn("bob")
        ])
    );
    let moved = group_dn("blind-moved").to_lowercase();
    assert!(member_of(&gw, "bob").await.contains(&moved));
    assert!(!member_of(&gw, "bob").await.contains(&dn));
}
