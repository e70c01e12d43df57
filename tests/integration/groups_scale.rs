//! A 100,000-member group: a one-member PATCH is correct and costs a fixed number of LDAP
//! operations, whatever the group's size; excludedAttributes=members never reads the members.

use crate::gateway::{first, people_dn, values, TestGateway};
use crate::slapd::{write_big_group_ldif, Slapd};
use serde_json::json;

const BIG: &str = "cn=big,ou=groups,dc=example,dc=org";
const SMALL: &str = "cn=small,ou=groups,dc=example,dc=org";

async fn is_member(gw: &TestGateway, group: &str, member: &str) -> bool {
    let filter = format!("(member={})", ldap3::ldap_escape(member));
    let found = gw.slapd.find(group, &filter).await;
    found.iter().any(|e| e.dn == group)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_cost_the_same_on_10_and_100000_members() {
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("big.ldif");
    let bulk = write_big_group_ldif(&ldif, 100_000);
    let gw = TestGateway::start_on(Slapd::start_with_ldif(&ldif), |t| t).await;
    let alice = gw.seeded_id("alice").await;
    let alice_dn = people_dn("alice");

    let mut costs = Vec::new();
    for group in [SMALL, BIG] {
        let id = first(&gw.slapd.entry(group).await.unwrap(), "entryUUID").unwrap();
        let path = format!("/Groups/{id}");
        let add = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations":[{"op":"Add","path":"members","value":[{"value": alice}]}]});
        let remove = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations":[{"op":"Remove","path":"members","value":[{"value": alice}]}]});

        // The group's DN (an id search: the gateway has not seen it yet) beside the member id's
        // search, then one modify asserted on the group and the member: no read of the group.
        let before = gw.directory_operations();
        gw.patch(&path, &add).await.expect(204);
        assert_eq!(
            gw.directory_operations() - before,
            3,
            "{group}: add one member"
        );
        assert!(is_member(&gw, group, &alice_dn).await);

        // Adding again is a success that changes nothing.
        let before = gw.directory_operations();
        gw.patch(&path, &add).await.expect(204);
        let again = gw.directory_operations() - before;
        assert!(is_member(&gw, group, &alice_dn).await);

        // Now the group's DN is remembered: the member id's search and the modify.
        let before = gw.directory_operations();
        gw.patch(&path, &remove).await.expect(204);
        assert_eq!(
            gw.directory_operations() - before,
            2,
            "{group}: remove one member"
        );
        assert!(!is_member(&gw, group, &alice_dn).await);

        // Removing an absent member is a success too. OpenLDAP refuses the delete (it has no
        // Permissive Modify); one matched-values read of just that value drops it, and with
        // nothing left to write, one read checks the write's guard (it is still that group).
        let before = gw.directory_operations();
        gw.patch(&path, &remove).await.expect(204);
        assert_eq!(
            gw.directory_operations() - before,
            4,
            "{group}: remove an absent member"
        );
        costs.push((group, again));

        // Entra's lookup never requests the member attribute: one search, no members.
        let before = gw.directory_operations();
        let r = gw
            .get(&format!("{path}?excludedAttributes=members"))
            .await
            .expect(200);
        assert!(r.body.get("members").is_none());
        assert_eq!(gw.directory_operations() - before, 1);
    }

    // The idempotent add costs the same on both groups (2 when the server takes the duplicate
    // as a no-op, 4 when it refuses it and the matched-values and guard reads run).
    assert_eq!(costs[0].1, costs[1].1, "{costs:?}");
    assert!([2, 4].contains(&costs[0].1), "{costs:?}");

    // The big group still holds every bulk member (plus the placeholder), and a member of it is
    // still found by filter.
    let e = gw.slapd.entry(BIG).await.unwrap();
    assert_eq!(values(&e, "member").len(), 100_001);
    let last = gw.slapd.entry(&bulk[99_999]).await.unwrap();
    let last_id = first(&last, "entryUUID").unwrap();
    let r = gw
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            crate::gateway::url_encode(&format!("members[value eq \"{last_id}\"]"))
        ))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.body["Resources"][0]["displayName"], "big");

    // Reading the whole group resolves every member, in batches.
    let big_id = first(&gw.slapd.entry(BIG).await.unwrap(), "entryUUID").unwrap();
    let started = std::time::Instant::now();
    let r = gw.get(&format!("/Groups/{big_id}")).await.expect(200);
    let members = r.body["members"].as_array().unwrap();
    assert_eq!(members.len(), 100_000, "the placeholder is not a member");
    assert_eq!(members[99_999]["value"], last_id.as_str());
    eprintln!(
        "GET of the 100,000-member group took {:?}",
        started.elapsed()
    );
}
