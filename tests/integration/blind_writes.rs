//! PATCHes that need no read of the entry go to slapd as one asserted modify; a DN the gateway
//! remembered for an id is only ever used under an assertion on that id.

use crate::gateway::{first, people_dn, values, TestGateway};
use serde_json::{json, Value};
use std::collections::HashSet;

fn ops(operations: Value) -> Value {
    json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations": operations})
}

fn entra_update(mail: &str) -> Value {
    ops(json!([
        {"op":"Replace","path":"emails[type eq \"work\"].value","value": mail},
        {"op":"Replace","path":"name.familyName","value":"Updated"},
        {"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Sales"},
        {"op":"Add","path":"phoneNumbers[type eq \"mobile\"].value","value":"+1 555 0100"}
    ]))
}

fn disable() -> Value {
    ops(json!([{"op":"Replace","path":"active","value":"False"}]))
}

#[tokio::test]
async fn entra_update_and_disable_are_one_ldap_operation_each() {
    let gw = TestGateway::start().await;
    // Created through the gateway: its DN is known from the add.
    let id = gw.create_user("blind@contoso.com").await;
    let path = format!("/Users/{id}");
    let before = gw.directory_operations();
    let r = gw
        .patch(&path, &entra_update("new@contoso.com"))
        .await
        .expect(200);
    assert_eq!(
        gw.directory_operations() - before,
        1,
        "one modify, nothing read before it"
    );
    assert_eq!(r.body["name"]["familyName"], "Updated");
    assert_eq!(r.body["emails"][0]["value"], "new@contoso.com");
    let e = gw.entry_by_id(&id).await.unwrap();
    assert_eq!(values(&e, "mail"), vec!["new@contoso.com"]);
    assert_eq!(values(&e, "sn"), vec!["Updated"]);
    assert_eq!(values(&e, "departmentNumber"), vec!["Sales"]);
    assert_eq!(values(&e, "mobile"), vec!["+1 555 0100"]);
    assert_eq!(
        values(&e, "givenName"),
        vec!["Given"],
        "untouched attributes stay"
    );
    // The answer is what slapd holds now, version included.
    assert_eq!(
        r.body["meta"]["version"],
        json!(format!("W/\"{}\"", first(&e, "entryCSN").unwrap()))
    );

    let before = gw.directory_operations();
    for _ in 0..2 {
        let r = gw.patch(&path, &disable()).await.expect(200);
        assert_eq!(r.body["active"], false);
        let e = gw.entry_by_id(&id).await.unwrap();
        assert_eq!(values(&e, "pwdAccountLockedTime"), vec!["000001010000Z"]);
    }
    assert_eq!(
        gw.directory_operations() - before,
        2,
        "one modify per disable"
    );

    // A user the gateway has never seen: one search for its DN (by id alone), then the modify;
    // the next PATCH goes straight to the modify.
    let bob = gw.seeded_id("bob").await;
    let before = gw.directory_operations();
    gw.patch(&format!("/Users/{bob}"), &disable())
        .await
        .expect(200);
    assert_eq!(gw.directory_operations() - before, 2);
    let before = gw.directory_operations();
    gw.patch(&format!("/Users/{bob}"), &entra_update("bob@contoso.com"))
        .await
        .expect(200);
    assert_eq!(gw.directory_operations() - before, 1);
    let e = gw.slapd.entry(&people_dn("bob")).await.unwrap();
    assert_eq!(values(&e, "pwdAccountLockedTime"), vec!["000001010000Z"]);
    assert_eq!(values(&e, "mail"), vec!["bob@contoso.com"]);
}

#[tokio::test]
async fn a_remembered_dn_that_moved_or_was_taken_over_is_never_written() {
    let gw = TestGateway::start().await;
    let id = gw.create_user("moved@contoso.com").await;
    let mut admin = gw.slapd.admin().await;

    // Renamed behind the gateway's back: the PATCH lands on the entry at its new DN.
    admin
        .modifydn(&people_dn("moved@contoso.com"), "uid=moved2", true, None)
        .await
        .unwrap()
        .success()
        .unwrap();
    let r = gw
        .patch(&format!("/Users/{id}"), &entra_update("moved2@contoso.com"))
        .await
        .expect(200);
    assert_eq!(r.body["userName"], "moved2");
    let e = gw.slapd.entry(&people_dn("moved2")).await.unwrap();
    assert_eq!(first(&e, "entryUUID").unwrap(), id);
    assert_eq!(values(&e, "mail"), vec!["moved2@contoso.com"]);
    assert!(gw
        .slapd
        .entry(&people_dn("moved@contoso.com"))
        .await
        .is_none());

    // Deleted, and another entry created at the same DN: the old id is 404 and the new entry
    // is not touched.
    admin
        .delete(&people_dn("moved2"))
        .await
        .unwrap()
        .success()
        .unwrap();
    admin
        .add(
            &people_dn("moved2"),
            vec![
                ("objectClass", HashSet::from(["inetOrgPerson"])),
                ("uid", HashSet::from(["moved2"])),
                ("cn", HashSet::from(["Someone Else"])),
                ("sn", HashSet::from(["Else"])),
                ("mail", HashSet::from(["else@contoso.com"])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let before = gw.slapd.entry(&people_dn("moved2")).await.unwrap();
    for body in [entra_update("hijack@contoso.com"), disable()] {
        gw.patch(&format!("/Users/{id}"), &body).await.expect(404);
    }
    let after = gw.slapd.entry(&people_dn("moved2")).await.unwrap();
    assert_eq!(
        after.attrs, before.attrs,
        "the entry now at that DN is unchanged"
    );
    assert_ne!(first(&after, "entryUUID"), Some(id));
}

#[tokio::test]
async fn an_entry_that_is_not_a_user_is_404_and_untouched() {
    let gw = TestGateway::start().await;
    let mut admin = gw.slapd.admin().await;
    // Inside ou=people, but not matched by the users filter (objectClass=inetOrgPerson).
    let dn = "cn=printer,ou=people,dc=example,dc=org";
    admin
        .add(
            dn,
            vec![
                ("objectClass", HashSet::from(["device"])),
                ("cn", HashSet::from(["printer"])),
                ("description", HashSet::from(["untouched"])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let before = gw.slapd.entry(dn).await.unwrap();
    let id = first(&before, "entryUUID").unwrap();
    for body in [
        disable(),
        ops(json!([{"op":"Replace","path":"title","value":"x"}])),
        ops(json!([{"op":"replace","value":{"active":false,"displayName":"x"}}])),
    ] {
        gw.patch(&format!("/Users/{id}"), &body).await.expect(404);
    }
    let after = gw.slapd.entry(dn).await.unwrap();
    assert_eq!(after.attrs, before.attrs);
}

/// A write whose guard is no LDAP filter is refused before anything goes out: slapd keeps the
/// entry as it was, the pool sends nothing, and the audit trail records each refusal. (The
/// gateway builds its guards itself, so no SCIM request reaches this; the directory is driven
/// directly.)
#[tokio::test]
async fn a_guard_that_is_no_filter_sends_nothing_and_is_audited() {
    use crate::gateway::{demo_config_text, env_for};
    use crate::slapd::Slapd;
    use scim_ldap_gateway::audit::Auditor;
    use scim_ldap_gateway::config::{AuditOutput, Config};
    use scim_ldap_gateway::directory::ldap::LdapDirectory;
    use scim_ldap_gateway::directory::{DirectoryError, EntryWriter, Modification};
    use scim_ldap_gateway::metrics::Metrics;
    use std::sync::Arc;

    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(
        &demo_config_text(&slapd, dir.path()),
        dir.path(),
        &env_for(&slapd),
    )
    .unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    config.audit.output = AuditOutput::File(audit_file.clone());
    let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
    let ldap = LdapDirectory::start(
        &config.directory,
        vec![config.users.base.clone()],
        metrics.directory,
        Arc::new(Auditor::new(&config.audit, None).unwrap()),
    )
    .unwrap();
    assert!(ldap.capabilities().await.unwrap().assertion);
    let alice = people_dn("alice");
    let before = slapd.entry(&alice).await.unwrap();
    let sent = ldap.operations();

    fn refused<T>(r: &Result<T, DirectoryError>, guard: &str) -> bool {
        matches!(r, Err(DirectoryError::InvalidGuard(g)) if g == guard)
    }
    let guards = [
        "(entryUUID=0b6e4c5a-1f0e-4a43-9d1c-2b2f6f0e9a11",
        "uid=alice)",
    ];
    for guard in guards {
        let title = vec![Modification::Replace(
            "title".into(),
            vec!["Refused".into()],
        )];
        let r = ldap.modify(&alice, title, Some(guard.into()), &[]).await;
        assert!(refused(&r, guard), "{r:?}");
        let r = ldap
            .rename(&alice, "uid=alice-renamed", None, Some(guard.into()))
            .await;
        assert!(refused(&r, guard), "{r:?}");
        let r = ldap.delete(&alice, Some(guard.into())).await;
        assert!(refused(&r, guard), "{r:?}");
    }

    assert_eq!(ldap.operations(), sent, "no LDAP operation went out");
    let after = slapd.entry(&alice).await.expect("alice is still there");
    assert_eq!(after.attrs, before.attrs, "alice is unchanged");
    assert!(slapd.entry(&people_dn("alice-renamed")).await.is_none());

    let records: Vec<Value> = std::fs::read_to_string(&audit_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["ldap_operation"].as_str().unwrap(),
                r["dn"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    let one_guard = [
        ("modify", alice.as_str(), "refused_invalid_guard"),
        ("modrdn", alice.as_str(), "refused_invalid_guard"),
        ("delete", alice.as_str(), "refused_invalid_guard"),
    ];
    assert_eq!(seen, [one_guard, one_guard].concat());
    ldap.close().await;
}
