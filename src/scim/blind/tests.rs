//! Which PATCHes go without a read, what they write, and that it is what the general path writes.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::directory::fake::FakeDir;
use crate::directory::{Entry, EntryReader, Scope, SearchRequest};
use crate::mapping::tests::demo_mapping;
use crate::mapping::{ENTERPRISE_USER, PPOLICY_LOCKED_FOREVER};
use crate::scim::users::{UserService, UserServiceSettings};
use crate::scim::{IfMatch, PATCH_OP};
use serde_json::json;
use std::sync::Arc;

fn ops(v: Value) -> Vec<PatchOperation> {
    patch::parse_request(&json!({"schemas": [PATCH_OP], "Operations": v})).unwrap()
}

fn plan_of(v: Value) -> Option<BlindPatch> {
    plan(&demo_mapping(), &ops(v))
}

fn replace(attr: &str, vals: &[&str]) -> Modification {
    Modification::Replace(attr.into(), vals.iter().map(|v| v.to_string()).collect())
}

#[test]
fn entra_default_update_is_one_modify() {
    let p = plan_of(json!([
        {"op":"Replace","path":"emails[type eq \"work\"].value","value":"new@contoso.com"},
        {"op":"Replace","path":"name.familyName","value":"Updated"},
        {"op":"Replace","path":format!("{ENTERPRISE_USER}:department"),"value":"Sales"},
        {"op":"Add","path":"phoneNumbers[type eq \"mobile\"].value","value":"+1 555 0100"}
    ]))
    .unwrap();
    let mut mods = p.mods.clone();
    mods.sort_by(|a, b| a.attribute().cmp(b.attribute()));
    assert_eq!(
        mods,
        vec![
            replace("departmentNumber", &["Sales"]),
            replace("mail", &["new@contoso.com"]),
            replace("mobile", &["+1 555 0100"]),
            replace("sn", &["Updated"]),
        ]
    );
    // cn would be filled from userName by the general path if it were empty.
    assert_eq!(p.present, vec!["cn".to_string()]);
}

#[test]
fn disable_in_every_client_shape() {
    let locked = vec![replace("pwdAccountLockedTime", &[PPOLICY_LOCKED_FOREVER])];
    for shape in [
        json!([{"op":"Replace","path":"active","value":"False"}]),
        json!([{"op":"replace","path":"active","value":false}]),
        json!([{"op":"replace","value":{"active":false}}]),
        json!([{"op":"replace","value":{"id":"x","active":"false"}}]),
    ] {
        assert_eq!(
            plan_of(shape.clone()).map(|p| p.mods),
            Some(locked.clone()),
            "{shape}"
        );
    }
    // Okta's dotted path-less shape mixes values and the state.
    let p = plan_of(
        json!([{"op":"replace","value":{"active":false,"name.givenName":"Y","title":"T"}}]),
    )
    .unwrap();
    assert_eq!(p.mods.len(), 3);
}

#[test]
fn a_manager_is_one_replace_of_an_id_to_resolve() {
    let manager = format!("{ENTERPRISE_USER}:manager");
    for shape in [
        // Entra's plain string, and the object the resource carries
        json!([{"op":"Add","path":manager,"value":"boss-uuid"}]),
        json!([{"op":"replace","path":manager,"value":{"value":"boss-uuid"}}]),
        json!([{"op":"replace","value":{ENTERPRISE_USER:{"manager":"boss-uuid"}}}]),
    ] {
        let Some(p) = plan_of(shape.clone()) else {
            // an extension object in a path-less op stays on the general path
            assert!(shape[0].get("path").is_none(), "{shape}");
            continue;
        };
        assert_eq!(p.mods, vec![replace("manager", &["boss-uuid"])], "{shape}");
        assert_eq!(p.references, vec![0], "{shape}");
    }
    // Beside other values, the index names the reference's modification.
    let p = plan_of(json!([
        {"op":"Replace","path":"title","value":"T"},
        {"op":"Add","path":manager,"value":"boss-uuid"},
        {"op":"Replace","path":"active","value":"False"}
    ]))
    .unwrap();
    assert_eq!(p.mods.len(), 3);
    assert_eq!(p.references.len(), 1);
    assert_eq!(p.mods[p.references[0]], replace("manager", &["boss-uuid"]));
    // Nothing else is a reference.
    let p = plan_of(json!([{"op":"Replace","path":"title","value":"T"}])).unwrap();
    assert!(p.references.is_empty());
}

#[test]
fn slots_with_create_defaults_are_asserted_present() {
    // The general path fills an empty sn (from userName) or cn (from displayName or userName)
    // on any write: the blind write asserts both present.
    let p = plan_of(json!([{"op":"Replace","path":"displayName","value":"X"}])).unwrap();
    assert_eq!(p.mods, vec![replace("displayName", &["X"])]);
    assert_eq!(p.present, vec!["sn".to_string(), "cn".to_string()]);
    // Writing one of them needs no assertion on it.
    let p = plan_of(json!([
        {"op":"Replace","path":"displayName","value":"X"},
        {"op":"Replace","path":"name.formatted","value":"X Y"}
    ]))
    .unwrap();
    assert_eq!(p.present, vec!["sn".to_string()]);
}

#[test]
fn what_needs_the_entry_goes_the_general_way() {
    for shape in [
        // enabling must not lift a lockout ppolicy set on its own
        json!([{"op":"Replace","path":"active","value":"True"}]),
        json!([{"op":"remove","path":"title"}]),
        json!([{"op":"Replace","path":"title","value":null}]),
        json!([{"op":"Replace","path":"title","value":""}]),
        // rename and uniqueness
        json!([{"op":"Replace","path":"userName","value":"bob"}]),
        // removing a reference, or an empty one
        json!([{"op":"remove","path":"manager[value eq \"boss-uuid\"]"}]),
        json!([{"op":"Replace","path":format!("{ENTERPRISE_USER}:manager"),"value":""}]),
        json!([{"op":"Replace","path":format!("{ENTERPRISE_USER}:manager"),"value":{"value":null}}]),
        json!([{"op":"replace","path":"password","value":"Secret123!"}]),
        // whole multi-valued attributes and other filters
        json!([{"op":"Add","path":"emails","value":[{"type":"work","value":"a@b"}]}]),
        json!([{"op":"Replace","path":"emails[value eq \"a@b\"].value","value":"c@d"}]),
        json!([{"op":"Replace","path":"emails[type eq \"home\"].value","value":"c@d"}]),
        json!([{"op":"Replace","path":"emails[type eq \"work\"]","value":{"value":"c@d"}}]),
        json!([{"op":"Replace","path":"name","value":{"givenName":"A"}}]),
        // one blind op does not make a PATCH blind
        json!([{"op":"Replace","path":"title","value":"T"},{"op":"remove","path":"displayName"}]),
        // unmapped, and extension objects in a path-less op
        json!([{"op":"Replace","path":"nickName","value":"x"}]),
        json!([{"op":"replace","value":{ENTERPRISE_USER:{"department":"x"}}}]),
        // values the mapping refuses: the general path says why
        json!([{"op":"Replace","path":"title","value":["a","b"]}]),
        json!([{"op":"Replace","path":"active","value":"maybe"}]),
    ] {
        assert_eq!(plan_of(shape.clone()), None, "{shape}");
    }
}

#[test]
fn strategies_that_read_the_old_state_go_the_general_way() {
    let mut m = demo_mapping();
    m.disable = DisableStrategy::AdUserAccountControl;
    let disable = ops(json!([{"op":"Replace","path":"active","value":"False"}]));
    assert_eq!(plan(&m, &disable), None);
    m.disable = DisableStrategy::None;
    assert_eq!(plan(&m, &disable), None);
    m.disable = DisableStrategy::NsAccountLock;
    assert_eq!(
        plan(&m, &disable).map(|p| p.mods),
        Some(vec![replace("nsAccountLock", &["TRUE"])])
    );
}

// ---------------------------------------------------------------------------
// Equivalence: the blind write leaves the entry exactly as the general path does.

const PEOPLE: &str = "ou=people,dc=example,dc=org";

fn settings() -> UserServiceSettings {
    UserServiceSettings::for_tests(Some("entryCSN"))
}

fn alice(extra: &[(&str, &[&str])]) -> Entry {
    let mut e = Entry {
        dn: format!("uid=alice,{PEOPLE}"),
        ..Entry::default()
    };
    let base: &[(&str, &[&str])] = &[
        (
            "objectClass",
            &["top", "person", "organizationalPerson", "inetOrgPerson"],
        ),
        ("uid", &["alice"]),
        ("sn", &["Liddell"]),
        ("entryUUID", &["alice-uuid"]),
        ("entryCSN", &["csn-0"]),
        ("createTimestamp", &["20260101000000Z"]),
        ("modifyTimestamp", &["20260102030405Z"]),
    ];
    for (k, v) in base.iter().chain(extra) {
        e.attrs.insert(
            k.to_ascii_lowercase(),
            v.iter().map(|s| s.to_string()).collect(),
        );
    }
    e
}

/// Alice's manager-to-be.
fn boss() -> Entry {
    let mut e = alice(&[]);
    e.dn = format!("uid=boss,{PEOPLE}");
    for (k, v) in [("uid", "boss"), ("entryuuid", "boss-uuid")] {
        e.attrs.insert(k.into(), vec![v.into()]);
    }
    e
}

/// The entry as it ends up, without what changes on every write.
async fn stored(dir: &FakeDir) -> Entry {
    let mut e = dir
        .search(SearchRequest {
            base: PEOPLE.into(),
            scope: Scope::OneLevel,
            filter: "(uid=alice)".into(),
            attrs: vec![].into(),
        })
        .await
        .unwrap()
        .pop()
        .unwrap();
    e.attrs.remove("entrycsn");
    e.attrs.remove("modifytimestamp");
    e
}

#[tokio::test]
async fn blind_and_general_paths_leave_the_same_entry() {
    let starts = [
        alice(&[]),
        alice(&[("cn", &["Alice"])]),
        alice(&[
            ("cn", &["Alice L"]),
            ("displayName", &["Alice"]),
            ("mail", &["a@x.org", "a2@x.org"]),
            ("mobile", &["+1 1"]),
            ("pwdAccountLockedTime", &["20260101000000Z"]),
        ]),
        alice(&[("pwdAccountLockedTime", &[PPOLICY_LOCKED_FOREVER])]),
        alice(&[("manager", &[&format!("uid=carol,{PEOPLE}")])]),
    ];
    let patches = [
        json!([
            {"op":"Replace","path":"emails[type eq \"work\"].value","value":"new@contoso.com"},
            {"op":"Replace","path":"name.familyName","value":"Updated"},
            {"op":"Replace","path":format!("{ENTERPRISE_USER}:department"),"value":"Sales"},
            {"op":"Add","path":"phoneNumbers[type eq \"mobile\"].value","value":"+1 555 0100"}
        ]),
        json!([{"op":"Replace","path":"active","value":"False"}]),
        json!([{"op":"replace","value":{"active":false,"title":"T","name.givenName":"G"}}]),
        json!([{"op":"Replace","path":"displayName","value":"New Name"}]),
        json!([{"op":"Add","path":format!("{ENTERPRISE_USER}:manager"),"value":"boss-uuid"}]),
        json!([
            {"op":"Replace","path":format!("{ENTERPRISE_USER}:manager"),"value":{"value":"BOSS-UUID"}},
            {"op":"Replace","path":"active","value":"False"}
        ]),
        json!([
            {"op":"Replace","path":"title","value":"A"},
            {"op":"Add","path":"title","value":"B"},
            {"op":"Replace","path":"EMAILS[TYPE eq \"Work\"].VALUE","value":"w@x.org"}
        ]),
    ];
    for start in &starts {
        for p in &patches {
            let body = json!({"schemas": [PATCH_OP], "Operations": p});
            let mut results = Vec::new();
            let mut answers = Vec::new();
            for general in [false, true] {
                let dir = FakeDir::with(vec![start.clone(), boss()]);
                let svc = UserService::new(dir.clone(), Arc::new(demo_mapping()), settings());
                let if_match = general.then_some(IfMatch::Any);
                let mut answer = svc
                    .patch_if("alice-uuid", &body, "https://gw", if_match.as_ref())
                    .await
                    .unwrap();
                answer["meta"].as_object_mut().unwrap().remove("version");
                answer["meta"]
                    .as_object_mut()
                    .unwrap()
                    .remove("lastModified");
                answers.push(answer);
                let searches = dir.searches().len();
                let plan = plan(&demo_mapping(), &ops(p.clone())).expect("a blind PATCH");
                let blind = plan.present.iter().all(|a| !start.values(a).is_empty());
                if !general && blind {
                    // One search for the DN (nothing remembered yet) and one for a referenced
                    // user's, no read of the entry.
                    let expected = 1 + usize::from(!plan.references.is_empty());
                    assert_eq!(searches, expected, "{p}");
                }
                results.push(stored(&dir).await);
            }
            assert_eq!(results[0], results[1], "start {start:?}, patch {p}");
            assert_eq!(answers[0], answers[1], "start {start:?}, patch {p}");
        }
    }
}

#[tokio::test]
async fn a_missing_default_slot_falls_back_to_the_general_path() {
    // No cn: the general path fills it from the new displayName; the blind write's assertion
    // on cn fails, nothing is written, and the general path runs.
    let dir = FakeDir::with(vec![alice(&[])]);
    let svc = UserService::new(dir.clone(), Arc::new(demo_mapping()), settings());
    let body = json!({"schemas": [PATCH_OP], "Operations": [
        {"op":"Replace","path":"displayName","value":"New Name"}]});
    svc.patch("alice-uuid", &body, "https://gw").await.unwrap();
    let e = stored(&dir).await;
    assert_eq!(e.values("cn"), ["New Name".to_string()]);
    assert_eq!(e.values("displayName"), ["New Name".to_string()]);
}

#[tokio::test]
async fn a_manager_naming_no_user_in_the_subtree_is_refused_and_nothing_is_written() {
    let mut outsider = boss();
    outsider.dn = "uid=boss,ou=other,dc=example,dc=org".into();
    for (manager, dir) in [
        ("nobody-uuid", FakeDir::with(vec![alice(&[]), boss()])),
        ("boss-uuid", FakeDir::with(vec![alice(&[]), outsider])),
    ] {
        let svc = UserService::new(dir.clone(), Arc::new(demo_mapping()), settings());
        let body = json!({"schemas": [PATCH_OP], "Operations": [
            {"op":"Add","path":format!("{ENTERPRISE_USER}:manager"),"value":manager},
            {"op":"Replace","path":"title","value":"T"}]});
        let err = svc
            .patch("alice-uuid", &body, "https://gw")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, crate::scim::ScimError::InvalidValue(m) if m.contains(manager)),
            "{err:?}"
        );
        assert!(dir.writes().is_empty(), "{:?}", dir.writes());
        assert!(stored(&dir).await.values("title").is_empty());
        // Looked up once: the general path that refuses it uses the try's look-up.
        assert_eq!(lookups_of(&dir, manager), 1, "{manager}");
    }
    // An unknown user is still 404 first, whatever its manager.
    let dir = FakeDir::with(vec![alice(&[]), boss()]);
    let svc = UserService::new(dir.clone(), Arc::new(demo_mapping()), settings());
    let body = json!({"schemas": [PATCH_OP], "Operations": [
        {"op":"Add","path":format!("{ENTERPRISE_USER}:manager"),"value":"nobody-uuid"}]});
    let err = svc
        .patch("ghost-uuid", &body, "https://gw")
        .await
        .unwrap_err();
    assert!(
        matches!(err, crate::scim::ScimError::NotFound(_)),
        "{err:?}"
    );
    assert_eq!(lookups_of(&dir, "nobody-uuid"), 1);
}

/// Searches whose filter names `id`.
fn lookups_of(dir: &FakeDir, id: &str) -> usize {
    dir.searches()
        .iter()
        .filter(|r| r.filter.contains(id))
        .count()
}
