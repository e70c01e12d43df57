//! Unit tests of the SCIM ↔ LDAP mapping, built from the shipped demo configuration.
#![allow(clippy::unwrap_used)]

use super::resource::{UserMeta, UserValues};
use super::*;
use crate::config::{Config, FixedEnv};
use crate::directory::{Entry, Modification};
use crate::scim::ScimError;
use serde_json::{json, Value};
use std::path::Path;

const GATEWAY_TOML: &str = include_str!("../../config/gateway.toml");

/// `config/gateway.toml` as `edit` changes it, loaded with its secrets set, for every test
/// module that needs the shipped configuration.
pub(crate) fn demo_config(edit: impl FnOnce(&str) -> String) -> Config {
    let env = FixedEnv {
        vars: [
            ("SCIM_TOKEN", "0123456789abcdef0123456789abcdef"),
            ("LDAP_ADMIN_PASSWORD", "0123456789abcdef0123456789abcdef"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        files: Default::default(),
    };
    Config::from_toml(
        &edit(GATEWAY_TOML),
        Path::new("/etc/scim-ldap-gateway"),
        &env,
    )
    .unwrap()
}

/// The `[mapping.users]` of `config/gateway.toml`, for every test module that needs a mapping.
pub(crate) fn demo_mapping() -> UserMapping {
    demo_config(str::to_string).users
}

/// Index of the slot stored in `ldap` (case-insensitive).
pub(crate) fn slot(m: &UserMapping, ldap: &str) -> usize {
    m.slots
        .iter()
        .position(|s| s.ldap.eq_ignore_ascii_case(ldap))
        .unwrap_or_else(|| panic!("no slot stores {ldap}"))
}

/// Values with the given LDAP attributes filled; every other slot empty.
pub(crate) fn values(
    m: &UserMapping,
    pairs: &[(&str, &[&str])],
    active: Option<bool>,
) -> UserValues {
    let mut v = UserValues {
        slots: vec![Vec::new(); m.slots.len()],
        active,
        password: None,
    };
    for (ldap, vals) in pairs {
        v.slots[slot(m, ldap)] = vals.iter().map(|s| s.to_string()).collect();
    }
    v
}

fn err_value(r: Result<UserValues, ScimError>) -> String {
    match r {
        Err(ScimError::InvalidValue(m)) => m,
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

fn meta() -> UserMeta {
    UserMeta {
        version: None,
        id: "2819c223-7f76-453a-919d-413861904646".into(),
        created: Some("2026-01-01T00:00:00Z".into()),
        last_modified: Some("2026-02-01T12:30:00Z".into()),
        location: "https://gw.example/scim/v2/Users/2819c223-7f76-453a-919d-413861904646".into(),
    }
}

const PPOLICY_ATTR: &str = "pwdAccountLockedTime";

fn entra_create_body() -> Value {
    json!({
        "schemas": [CORE_USER, ENTERPRISE_USER],
        "externalId": "0a21f0f2",
        "userName": "Test_User_ab6490ee@testuser.com",
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": "Test_User_ab6490ee@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        ENTERPRISE_USER: {"employeeNumber": "701984", "department": "R&D"}
    })
}

/// A user with every slot of the demo mapping filled.
fn rich_values(m: &UserMapping) -> UserValues {
    values(
        m,
        &[
            ("uid", &["alice"]),
            ("scimExternalId", &["ext-1"]),
            ("displayName", &["Alice Liddell"]),
            ("title", &["Engineer"]),
            ("preferredLanguage", &["en-GB"]),
            ("givenName", &["Alice"]),
            ("sn", &["Liddell"]),
            ("cn", &["Alice Liddell"]),
            ("mail", &["alice@example.org"]),
            ("telephoneNumber", &["+1 555 0001"]),
            ("mobile", &["+1 555 0002"]),
            ("facsimileTelephoneNumber", &["+1 555 0003"]),
            ("street", &["1 Main St"]),
            ("l", &["Springfield"]),
            ("st", &["IL"]),
            ("postalCode", &["62701"]),
            ("scimAddressCountry", &["US"]),
            ("postalAddress", &["1 Main St, Springfield, IL 62701"]),
            ("employeeNumber", &["42"]),
            ("departmentNumber", &["R&D"]),
            ("manager", &["26118915-6090-4610-87e4-49d8ca9f808d"]),
        ],
        Some(true),
    )
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// The demo mapping itself

#[test]
fn demo_mapping_shape() {
    let m = demo_mapping();
    assert_eq!(m.slots.len(), 21);
    assert_eq!(m.schemas(), vec![CORE_USER, ENTERPRISE_USER]);
    assert_eq!((m.rdn_slot, m.user_name_slot), (0, 0));
    assert_eq!(
        m.slots[slot(&m, "mail")].target,
        Target::Typed {
            attr: "emails".into(),
            type_value: "work".into(),
            sub: "value".into()
        }
    );
    assert!(m.slots[slot(&m, "mail")].primary);
    assert_eq!(m.slots[slot(&m, "manager")].kind, ValueKind::Reference);
    assert_eq!(m.slots[slot(&m, "manager")].schema, ENTERPRISE_USER);
    // sn falls back to userName; cn to displayName, then userName.
    assert_eq!(m.slots[slot(&m, "sn")].create_default_from, vec![0]);
    assert_eq!(
        m.slots[slot(&m, "cn")].create_default_from,
        vec![slot(&m, "displayName"), 0]
    );
    assert_eq!(
        m.read_attributes(),
        strings(&[
            "entryUUID",
            "createTimestamp",
            "modifyTimestamp",
            "uid",
            "scimExternalId",
            "displayName",
            "title",
            "preferredLanguage",
            "givenName",
            "sn",
            "cn",
            "mail",
            "telephoneNumber",
            "mobile",
            "facsimileTelephoneNumber",
            "street",
            "l",
            "st",
            "postalCode",
            "scimAddressCountry",
            "postalAddress",
            "employeeNumber",
            "departmentNumber",
            "manager",
            "pwdAccountLockedTime",
        ])
    );
}

#[test]
fn schema_of_and_slots_of() {
    let m = demo_mapping();
    assert_eq!(m.schema_of(None, "userName"), Some(CORE_USER));
    assert_eq!(m.schema_of(None, "ACTIVE"), Some(CORE_USER));
    assert_eq!(m.schema_of(None, "department"), Some(ENTERPRISE_USER));
    assert_eq!(m.schema_of(None, "nickName"), None);
    assert_eq!(
        m.schema_of(Some(&ENTERPRISE_USER.to_uppercase()), "anything"),
        Some(ENTERPRISE_USER)
    );
    assert_eq!(m.schema_of(Some("urn:example:unknown"), "department"), None);
    assert_eq!(
        m.schema_of(Some(&CORE_USER.to_uppercase()), "anything"),
        Some(CORE_USER)
    );
    assert_eq!(
        m.schema_urn(&ENTERPRISE_USER.to_uppercase()),
        Some(ENTERPRISE_USER)
    );
    assert_eq!(m.schema_urn(&CORE_USER.to_lowercase()), Some(CORE_USER));
    assert_eq!(m.schema_urn("urn:example:unknown"), None);
    assert_eq!(m.slots_of(&CORE_USER.to_uppercase(), "username").len(), 1);
    let phones: Vec<&str> = m
        .slots_of(CORE_USER, "PHONENUMBERS")
        .into_iter()
        .map(|(_, s)| s.ldap.as_str())
        .collect();
    assert_eq!(
        phones,
        ["telephoneNumber", "mobile", "facsimileTelephoneNumber"]
    );
    assert!(m.slots_of(CORE_USER, "department").is_empty());
}

// ---------------------------------------------------------------------------
// values_from_json and create_attributes

#[test]
fn entra_create_body_becomes_exact_ldap_attributes() {
    let m = demo_mapping();
    let v = m.values_from_json(&entra_create_body()).unwrap();
    assert_eq!(v.active, Some(true));
    let attrs = m.create_attributes(&v).unwrap();
    let expected: Vec<(String, Vec<String>)> = vec![
        (
            "objectClass",
            &[
                "top",
                "person",
                "organizationalPerson",
                "inetOrgPerson",
                "scimUser",
            ][..],
        ),
        ("uid", &["Test_User_ab6490ee@testuser.com"]),
        ("scimExternalId", &["0a21f0f2"]),
        ("givenName", &["givenName"]),
        ("sn", &["familyName"]),
        ("cn", &["givenName familyName"]),
        ("mail", &["Test_User_ab6490ee@testuser.com"]),
        ("employeeNumber", &["701984"]),
        ("departmentNumber", &["R&D"]),
    ]
    .into_iter()
    .map(|(a, v)| (a.to_string(), strings(v)))
    .collect();
    assert_eq!(attrs, expected);
}

#[test]
fn entra_create_body_round_trips_exactly() {
    let m = demo_mapping();
    let body = entra_create_body();
    let out = m.to_json(&m.values_from_json(&body).unwrap(), &meta());
    for (k, sent) in body.as_object().unwrap() {
        if ["schemas", "meta", "roles"].contains(&k.as_str()) {
            continue;
        }
        assert_eq!(&out[k], sent, "{k} did not come back as sent");
    }
    assert_eq!(out["schemas"], json!([CORE_USER, ENTERPRISE_USER]));
}

#[test]
fn okta_create_with_password_is_refused_without_echoing_it() {
    let mut m = demo_mapping();
    m.password = crate::mapping::PasswordMethod::None;
    let body = json!({
        "schemas": [CORE_USER],
        "userName": "isaac.brock@example.com",
        "name": {"givenName": "Isaac", "familyName": "Brock"},
        "emails": [{"primary": true, "value": "isaac.brock@example.com", "type": "work"}],
        "displayName": "Isaac Brock",
        "groups": [],
        "password": "t1meMa$heen",
        "active": true
    });
    let msg = err_value(m.values_from_json(&body));
    assert!(msg.contains("does not set passwords"), "{msg}");
    assert!(!msg.contains("t1meMa$heen"), "{msg}");
}

#[test]
fn a_password_is_kept_as_a_secret_when_a_method_is_configured() {
    let mut m = demo_mapping();
    m.password = crate::mapping::PasswordMethod::PasswordModify;
    let v = m
        .values_from_json(&json!({"userName": "a", "password": "t1meMa$heen"}))
        .unwrap();
    assert_eq!(v.password.as_ref().map(|p| p.expose()), Some("t1meMa$heen"));
    assert!(
        !format!("{v:?}").contains("t1meMa$heen"),
        "Debug never shows it"
    );
    // Empty and null mean "no new password"; other types and control characters are refused.
    for empty in [json!(""), Value::Null] {
        let v = m
            .values_from_json(&json!({"userName": "a", "password": empty}))
            .unwrap();
        assert!(v.password.is_none());
    }
    for bad in [json!(42), json!(["x"]), json!("line\nbreak")] {
        let msg = err_value(m.values_from_json(&json!({"userName": "a", "password": bad})));
        assert!(msg.contains("password"), "{msg}");
        assert!(!msg.contains("break"), "{msg}");
    }
    // Rendering never includes it.
    let with_password = m
        .values_from_json(&json!({"userName": "a", "password": "t1meMa$heen"}))
        .unwrap();
    let rendered = m.to_json(&with_password, &meta());
    assert!(rendered.get("password").is_none());
    assert!(!rendered.to_string().contains("t1meMa$heen"));
}

#[test]
fn okta_locale_is_refused_by_name_but_groups_are_ignored() {
    let m = demo_mapping();
    let body = json!({"userName": "a", "locale": "en-US"});
    assert!(err_value(m.values_from_json(&body)).contains("attribute locale is not mapped"));
    // groups is read-only on Users and ignored on input, even when not empty.
    let body = json!({"userName": "a", "groups": [{"value": "g1"}]});
    assert_eq!(
        m.values_from_json(&body).unwrap(),
        values(&m, &[("uid", &["a"])], None)
    );
}

#[test]
fn unmapped_non_empty_attributes_are_named() {
    let m = demo_mapping();
    let cases = [
        (json!({"nickName": "Al"}), "attribute nickName is not mapped"),
        (json!({"name": {"middleName": "Q"}}), "attribute name.middleName is not mapped"),
        (
            json!({"emails": [{"type": "home", "value": "a@home"}]}),
            "attribute emails[type eq \"home\"].value is not mapped",
        ),
        (
            json!({"addresses": [{"type": "work", "poBox": "7"}]}),
            "attribute addresses[type eq \"work\"].poBox is not mapped",
        ),
        (
            json!({ENTERPRISE_USER: {"costCenter": "4130"}}),
            "attribute costCenter is not mapped",
        ),
        (
            json!({"urn:example:params:scim:schemas:extension:acme:2.0:User": {"badge": "1"}}),
            "schema extension urn:example:params:scim:schemas:extension:acme:2.0:User is not mapped",
        ),
    ];
    for (body, want) in cases {
        let msg = err_value(m.values_from_json(&body));
        assert!(msg.contains(want), "{body}: {msg}");
    }
}

#[test]
fn empty_and_null_unmapped_attributes_are_accepted() {
    let m = demo_mapping();
    let body = json!({
        "userName": "a",
        "nickName": null,
        "profileUrl": "",
        "x509Certificates": [],
        "ims": [{"type": "", "value": null}],
        "name": {"middleName": null, "honorificPrefix": ""},
        "emails": [{"type": "home", "value": ""}],
        "roles": [],
        "urn:example:params:scim:schemas:extension:acme:2.0:User": {},
        ENTERPRISE_USER: {"costCenter": null, "organization": ""}
    });
    assert_eq!(
        m.values_from_json(&body).unwrap(),
        values(&m, &[("uid", &["a"])], None)
    );
}

#[test]
fn active_accepts_booleans_and_entra_strings() {
    let m = demo_mapping();
    let active = |v: Value| m.values_from_json(&json!({"active": v})).map(|u| u.active);
    assert_eq!(active(json!(false)).unwrap(), Some(false));
    assert_eq!(active(json!(true)).unwrap(), Some(true));
    assert_eq!(active(json!("False")).unwrap(), Some(false));
    assert_eq!(active(json!("TRUE")).unwrap(), Some(true));
    assert_eq!(active(json!(null)).unwrap(), None);
    assert_eq!(m.values_from_json(&json!({})).unwrap().active, None);
    for bad in [json!(0), json!("no"), json!(["true"])] {
        match active(bad.clone()) {
            Err(ScimError::InvalidValue(msg)) => {
                assert!(msg.starts_with("active must be a boolean"), "{msg}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn wrong_json_types_are_invalid_values() {
    let m = demo_mapping();
    let cases = [
        (
            json!({"displayName": {"a": 1}}),
            "displayName must be a string",
        ),
        (
            json!({"displayName": ["x"]}),
            "displayName must be a string",
        ),
        (json!({"name": "Alice"}), "name must be an object"),
        (json!({"emails": "a@b.c"}), "emails must be an array"),
        (
            json!({"emails": ["a@b.c"]}),
            "each emails element must be an object",
        ),
        (
            json!({"emails": [{"type": 1, "value": "a@b.c"}]}),
            "emails.type must be a string",
        ),
        (json!({ENTERPRISE_USER: "R&D"}), "must be an object"),
        (json!({CORE_USER: "x"}), "must be an object"),
        (
            json!({"displayName": "a\u{0}b"}),
            "displayName contains a NUL character",
        ),
    ];
    for (body, want) in cases {
        let msg = err_value(m.values_from_json(&body));
        assert!(msg.contains(want), "{body}: {msg}");
    }
    assert!(matches!(
        m.values_from_json(&json!(["not", "an", "object"])),
        Err(ScimError::InvalidSyntax(_))
    ));
}

#[test]
fn non_ascii_attribute_names_are_refused_not_panicking() {
    let m = demo_mapping();
    // "abcé" is five bytes; its fourth byte sits inside "é".
    let result = std::panic::catch_unwind(|| m.values_from_json(&json!({"abcé": "x"})));
    let result = result.expect("values_from_json panicked on a non-ASCII key");
    assert!(err_value(result).contains("attribute abcé is not mapped"));
}

#[test]
fn scalars_are_stored_as_strings() {
    let m = demo_mapping();
    let v = m
        .values_from_json(&json!({ENTERPRISE_USER: {"employeeNumber": 701984}, "title": true}))
        .unwrap();
    assert_eq!(
        v,
        values(
            &m,
            &[("employeeNumber", &["701984"]), ("title", &["true"])],
            None
        )
    );
}

#[test]
fn attribute_names_and_types_are_case_insensitive() {
    let m = demo_mapping();
    let v = m
        .values_from_json(&json!({
            "USERNAME": "a",
            "Emails": [{"TYPE": "Work", "Value": "a@b.c"}],
            "NAME": {"GIVENNAME": "A"},
            &ENTERPRISE_USER.to_uppercase(): {"DEPARTMENT": "R&D"}
        }))
        .unwrap();
    assert_eq!(
        v,
        values(
            &m,
            &[
                ("uid", &["a"]),
                ("mail", &["a@b.c"]),
                ("givenName", &["A"]),
                ("departmentNumber", &["R&D"])
            ],
            None
        )
    );
}

#[test]
fn core_urn_prefixed_object_is_read_as_core() {
    let m = demo_mapping();
    let v = m
        .values_from_json(&json!({CORE_USER: {"displayName": "X", "userName": "x"}}))
        .unwrap();
    assert_eq!(
        v,
        values(&m, &[("displayName", &["X"]), ("uid", &["x"])], None)
    );
}

#[test]
fn typed_elements_without_type_go_to_the_primary_or_only_type() {
    let m = demo_mapping();
    // emails: the primary slot is the work email.
    let v = m
        .values_from_json(
            &json!({"emails": [{"value": "a@b.c"}], "addresses": {"locality": "Paris"}}),
        )
        .unwrap();
    assert_eq!(
        v,
        values(&m, &[("mail", &["a@b.c"]), ("l", &["Paris"])], None)
    );
    // phoneNumbers has three types and no primary: the element is ambiguous.
    let msg = err_value(m.values_from_json(&json!({"phoneNumbers": [{"value": "+1"}]})));
    assert!(
        msg.contains("has no type; this gateway stores the types work, mobile, fax"),
        "{msg}"
    );
    // ...unless it carries nothing.
    let v = m
        .values_from_json(&json!({"phoneNumbers": [{"value": ""}, null]}))
        .unwrap();
    assert_eq!(v, values(&m, &[], None));
}

#[test]
fn several_elements_of_one_type_collect_in_order() {
    let m = demo_mapping();
    let v = m
        .values_from_json(&json!({
            "emails": [
                {"type": "work", "value": "b@x", "primary": true},
                {"type": "work", "value": "a@x", "display": "A"}
            ],
            "phoneNumbers": [
                {"type": "mobile", "value": "m1"},
                {"type": "fax", "value": "f1"},
                {"type": "mobile", "value": "m2"}
            ]
        }))
        .unwrap();
    assert_eq!(
        v,
        values(
            &m,
            &[
                ("mail", &["b@x", "a@x"]),
                ("mobile", &["m1", "m2"]),
                ("facsimileTelephoneNumber", &["f1"])
            ],
            None
        )
    );
}

#[test]
fn manager_reference_accepts_string_or_value_object() {
    let m = demo_mapping();
    let mgr = slot(&m, "manager");
    let read = |v: Value| {
        m.values_from_json(&json!({ENTERPRISE_USER: {"manager": v}}))
            .unwrap()
            .slots[mgr]
            .clone()
    };
    assert_eq!(read(json!("id-1")), strings(&["id-1"]));
    assert_eq!(
        read(json!({"value": "id-2", "displayName": "Boss"})),
        strings(&["id-2"])
    );
    assert_eq!(read(json!({"VALUE": "id-3"})), strings(&["id-3"]));
    assert_eq!(read(json!({"value": null})), Vec::<String>::new());
    assert_eq!(read(json!({"value": ""})), Vec::<String>::new());
    assert_eq!(read(json!(null)), Vec::<String>::new());
}

#[test]
fn create_fills_required_attributes_from_defaults() {
    let m = demo_mapping();
    let oc = ("objectClass".to_string(), m.object_classes.clone());
    let v = m.values_from_json(&json!({"userName": "bob"})).unwrap();
    assert_eq!(
        m.create_attributes(&v).unwrap(),
        vec![
            oc.clone(),
            ("uid".to_string(), strings(&["bob"])),
            ("sn".to_string(), strings(&["bob"])),
            ("cn".to_string(), strings(&["bob"])),
        ]
    );
    let v = m
        .values_from_json(&json!({"userName": "bob", "displayName": "Bob B"}))
        .unwrap();
    assert_eq!(
        m.create_attributes(&v).unwrap(),
        vec![
            oc,
            ("uid".to_string(), strings(&["bob"])),
            ("displayName".to_string(), strings(&["Bob B"])),
            ("sn".to_string(), strings(&["bob"])),
            ("cn".to_string(), strings(&["Bob B"])),
        ]
    );
}

#[test]
fn create_drops_duplicate_values_and_writes_constants() {
    let mut m = demo_mapping();
    m.constants = vec![("employeeType".into(), strings(&["staff"]))];
    let v = m
        .values_from_json(&json!({
            "userName": "bob",
            "emails": [{"type": "work", "value": "b@x"}, {"type": "work", "value": "b@x"}]
        }))
        .unwrap();
    let attrs = m.create_attributes(&v).unwrap();
    assert_eq!(attrs[1], ("employeeType".to_string(), strings(&["staff"])));
    assert!(
        attrs.contains(&("mail".to_string(), strings(&["b@x"]))),
        "{attrs:?}"
    );
}

#[test]
fn create_disabled_user_writes_the_disable_attribute() {
    let mut m = demo_mapping();
    let v = m
        .values_from_json(&json!({"userName": "bob", "active": "False"}))
        .unwrap();
    let attrs = m.create_attributes(&v).unwrap();
    assert_eq!(
        attrs.last().unwrap(),
        &(PPOLICY_ATTR.to_string(), strings(&[PPOLICY_LOCKED_FOREVER]))
    );
    m.disable = DisableStrategy::AdUserAccountControl;
    assert_eq!(
        m.create_attributes(&v).unwrap().last().unwrap(),
        &("userAccountControl".to_string(), strings(&["514"]))
    );
    m.disable = DisableStrategy::None;
    assert!(matches!(
        m.create_attributes(&v),
        Err(ScimError::InvalidValue(_))
    ));
    // An active user gets no disable attribute at all.
    let v = m
        .values_from_json(&json!({"userName": "bob", "active": true}))
        .unwrap();
    assert_eq!(m.create_attributes(&v).unwrap().len(), 4);
}

// ---------------------------------------------------------------------------
// to_json

#[test]
fn to_json_renders_a_rich_user_exactly() {
    let m = demo_mapping();
    let out = m.to_json(&rich_values(&m), &meta());
    let expected = json!({
        "schemas": [CORE_USER, ENTERPRISE_USER],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "alice",
        "externalId": "ext-1",
        "displayName": "Alice Liddell",
        "title": "Engineer",
        "preferredLanguage": "en-GB",
        "name": {"givenName": "Alice", "familyName": "Liddell", "formatted": "Alice Liddell"},
        "emails": [{"type": "work", "value": "alice@example.org", "primary": true}],
        "phoneNumbers": [
            {"type": "work", "value": "+1 555 0001"},
            {"type": "mobile", "value": "+1 555 0002"},
            {"type": "fax", "value": "+1 555 0003"}
        ],
        "addresses": [{
            "type": "work",
            "streetAddress": "1 Main St",
            "locality": "Springfield",
            "region": "IL",
            "postalCode": "62701",
            "country": "US",
            "formatted": "1 Main St, Springfield, IL 62701"
        }],
        ENTERPRISE_USER: {
            "employeeNumber": "42",
            "department": "R&D",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
        },
        "active": true,
        "meta": {
            "resourceType": "User",
            "created": "2026-01-01T00:00:00Z",
            "lastModified": "2026-02-01T12:30:00Z",
            "location": "https://gw.example/scim/v2/Users/2819c223-7f76-453a-919d-413861904646"
        }
    });
    assert_eq!(out, expected);
    // schemas and id lead, meta closes the resource.
    let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
    assert_eq!(keys[..2], ["schemas", "id"]);
    assert_eq!(keys.last().unwrap().as_str(), "meta");
}

#[test]
fn to_json_then_values_from_json_round_trips() {
    let m = demo_mapping();
    let mut v = rich_values(&m);
    assert_eq!(m.values_from_json(&m.to_json(&v, &meta())).unwrap(), v);
    // Several values of one type, and a disabled user.
    v.slots[slot(&m, "mail")] = strings(&["a@x", "b@x"]);
    v.slots[slot(&m, "mobile")] = strings(&["m1", "m2"]);
    v.slots[slot(&m, "street")] = strings(&["s1", "s2"]);
    v.active = Some(false);
    let out = m.to_json(&v, &meta());
    assert_eq!(
        out["emails"],
        json!([
            {"type": "work", "value": "a@x", "primary": true},
            {"type": "work", "value": "b@x"}
        ])
    );
    assert_eq!(out["active"], json!(false));
    assert_eq!(m.values_from_json(&out).unwrap(), v);
}

#[test]
fn to_json_omits_the_extension_urn_without_extension_values() {
    let m = demo_mapping();
    let v = values(&m, &[("uid", &["bob"])], None);
    let out = m.to_json(&v, &meta());
    assert_eq!(out["schemas"], json!([CORE_USER]));
    assert!(out.get(ENTERPRISE_USER).is_none(), "{out}");
    assert_eq!(out["active"], json!(true), "active defaults to true");
    let keys: Vec<&str> = out
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["schemas", "id", "userName", "active", "meta"]);
}

#[test]
fn to_json_without_disable_strategy_has_no_active() {
    let mut m = demo_mapping();
    m.disable = DisableStrategy::None;
    let out = m.to_json(&values(&m, &[("uid", &["bob"])], Some(true)), &meta());
    assert!(out.get("active").is_none(), "{out}");
}

#[test]
fn to_json_meta_falls_back_to_created() {
    let m = demo_mapping();
    let v = values(&m, &[("uid", &["bob"])], None);
    let mut meta = meta();
    meta.last_modified = None;
    assert_eq!(
        m.to_json(&v, &meta)["meta"],
        json!({
            "resourceType": "User",
            "created": "2026-01-01T00:00:00Z",
            "lastModified": "2026-01-01T00:00:00Z",
            "location": meta.location
        })
    );
    meta.created = None;
    assert_eq!(
        m.to_json(&v, &meta)["meta"],
        json!({"resourceType": "User", "location": meta.location})
    );
}

/// Alice's entry with these (lowercased) attributes.
fn alice(attrs: &[(&str, &[&str])]) -> Entry {
    Entry {
        dn: "uid=alice,ou=people,dc=example,dc=org".into(),
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), strings(v)))
            .collect(),
    }
}

#[test]
fn values_from_entry_reads_lowercased_attributes_and_state() {
    let m = demo_mapping();
    let mut entry = alice(&[
        ("uid", &["alice"]),
        ("cn", &["Alice Liddell", "Alice"]),
        ("manager", &["uid=boss,ou=people,dc=example,dc=org"]),
        ("pwdaccountlockedtime", &[PPOLICY_LOCKED_FOREVER]),
    ]);
    let v = m.values_from_entry(&entry);
    assert_eq!(
        v,
        values(
            &m,
            &[
                ("uid", &["alice"]),
                ("cn", &["Alice Liddell", "Alice"]),
                ("manager", &["uid=boss,ou=people,dc=example,dc=org"])
            ],
            Some(false)
        )
    );
    entry.attrs.remove("pwdaccountlockedtime");
    assert_eq!(m.values_from_entry(&entry).active, Some(true));
}

#[test]
fn values_taken_from_an_entry_are_the_values_read_from_it() {
    let demo = demo_mapping();
    // Two slots storing one attribute (displayName kept in cn, written in another case).
    let mut shared = demo_mapping();
    let display = slot(&shared, "displayName");
    shared.slots[display].ldap = "CN".into();
    let entry = alice(&[
        ("uid", &["alice"]),
        ("cn", &["Alice Liddell", "Alice"]),
        ("displayname", &["Alice L."]),
        ("mail", &["alice@example.org"]),
        ("manager", &["uid=boss,ou=people,dc=example,dc=org"]),
        ("pwdaccountlockedtime", &[PPOLICY_LOCKED_FOREVER]),
        ("objectclass", &["inetOrgPerson"]),
    ]);
    let empty = Entry::default();
    for m in [&demo, &shared] {
        for e in [&entry, &empty] {
            assert_eq!(m.values_taken_from(e.clone()), m.values_from_entry(e));
        }
    }
    let v = shared.values_taken_from(entry);
    assert_eq!(v.slots[display], strings(&["Alice Liddell", "Alice"]));
    assert_eq!(v.slots[slot(&demo, "cn")], v.slots[display]);
}

// ---------------------------------------------------------------------------
// diff

#[test]
fn diff_emits_exact_modifications() {
    let m = demo_mapping();
    let old = rich_values(&m);
    let mut new = old.clone();
    new.slots[slot(&m, "title")] = strings(&["Manager"]);
    new.slots[slot(&m, "mobile")] = vec![];
    new.slots[slot(&m, "departmentNumber")] = strings(&["Sales"]);
    new.slots[slot(&m, "uid")] = strings(&["alice2"]); // the RDN: renamed separately
    new.slots[slot(&m, "cn")] = vec![]; // falls back to displayName, which is unchanged
    assert_eq!(
        m.diff(&old, &new, &[]).unwrap(),
        vec![
            Modification::Replace("title".into(), strings(&["Manager"])),
            Modification::Replace("mobile".into(), vec![]),
            Modification::Replace("departmentNumber".into(), strings(&["Sales"])),
        ]
    );
}

#[test]
fn diff_of_equal_values_is_empty() {
    let m = demo_mapping();
    let old = rich_values(&m);
    assert_eq!(m.diff(&old, &old, &[]).unwrap(), vec![]);
    // LDAP values are sets: order and duplicates do not count as changes.
    let mut old = values(&m, &[("uid", &["a"]), ("mail", &["a@x", "b@x"])], None);
    old.slots[slot(&m, "cn")] = strings(&["a"]);
    old.slots[slot(&m, "sn")] = strings(&["a"]);
    let mut new = old.clone();
    new.slots[slot(&m, "mail")] = strings(&["b@x", "a@x", "b@x"]);
    assert_eq!(m.diff(&old, &new, &[]).unwrap(), vec![]);
}

#[test]
fn diff_never_empties_a_required_attribute_with_a_default() {
    let m = demo_mapping();
    let old = values(
        &m,
        &[
            ("uid", &["bob"]),
            ("displayName", &["Bob"]),
            ("cn", &["Bob"]),
            ("sn", &["Builder"]),
        ],
        None,
    );
    // The client drops name.formatted and name.familyName and renames displayName.
    let new = values(&m, &[("uid", &["bob"]), ("displayName", &["Robert"])], None);
    assert_eq!(
        m.diff(&old, &new, &[]).unwrap(),
        vec![
            Modification::Replace("displayName".into(), strings(&["Robert"])),
            Modification::Replace("sn".into(), strings(&["bob"])),
            Modification::Replace("cn".into(), strings(&["Robert"])),
        ]
    );
}

#[test]
fn diff_changes_the_disable_state_only_when_asked() {
    let m = demo_mapping();
    let old = values(
        &m,
        &[("uid", &["a"]), ("cn", &["a"]), ("sn", &["a"])],
        Some(true),
    );
    let mut new = old.clone();
    new.active = Some(false);
    assert_eq!(
        m.diff(&old, &new, &[]).unwrap(),
        vec![Modification::Replace(
            PPOLICY_ATTR.into(),
            strings(&[PPOLICY_LOCKED_FOREVER])
        )]
    );
    // Already disabled: nothing to write.
    assert_eq!(
        m.diff(&old, &new, &strings(&[PPOLICY_LOCKED_FOREVER]))
            .unwrap(),
        vec![]
    );
    new.active = Some(true);
    assert_eq!(
        m.diff(&old, &new, &strings(&[PPOLICY_LOCKED_FOREVER]))
            .unwrap(),
        vec![Modification::Replace(PPOLICY_ATTR.into(), vec![])]
    );
    // Not said: state kept.
    new.active = None;
    assert_eq!(
        m.diff(&old, &new, &strings(&[PPOLICY_LOCKED_FOREVER]))
            .unwrap(),
        vec![]
    );
}

#[test]
fn diff_without_disable_strategy_refuses_deactivation() {
    let mut m = demo_mapping();
    m.disable = DisableStrategy::None;
    let old = values(
        &m,
        &[("uid", &["a"]), ("cn", &["a"]), ("sn", &["a"])],
        Some(true),
    );
    let mut new = old.clone();
    new.active = Some(false);
    assert!(matches!(
        m.diff(&old, &new, &[]),
        Err(ScimError::InvalidValue(_))
    ));
    new.active = Some(true);
    assert_eq!(m.diff(&old, &new, &[]).unwrap(), vec![]);
}

// ---------------------------------------------------------------------------
// Disable strategies

fn replace(attr: &str, vals: &[&str]) -> Option<Modification> {
    Some(Modification::Replace(attr.to_string(), strings(vals)))
}

#[test]
fn ppolicy_transitions() {
    let s = DisableStrategy::PPolicy;
    let locked = strings(&[PPOLICY_LOCKED_FOREVER]);
    assert_eq!(s.attribute(), Some(PPOLICY_ATTR));
    assert_eq!(
        s.transition(&[], false),
        replace(PPOLICY_ATTR, &["000001010000Z"])
    );
    assert_eq!(s.transition(&locked, true), replace(PPOLICY_ATTR, &[]));
    assert_eq!(s.transition(&locked, false), None);
    assert_eq!(s.transition(&[], true), None);
    // A temporary lockout by ppolicy is not a disable; disabling makes it permanent.
    let temporary = strings(&["20260101000000Z"]);
    assert!(s.is_active(&temporary));
    assert_eq!(
        s.transition(&temporary, false),
        replace(PPOLICY_ATTR, &["000001010000Z"])
    );
}

#[test]
fn ns_account_lock_transitions() {
    let s = DisableStrategy::NsAccountLock;
    assert_eq!(
        s.transition(&[], false),
        replace("nsAccountLock", &["TRUE"])
    );
    assert_eq!(
        s.transition(&strings(&["true"]), true),
        replace("nsAccountLock", &[])
    );
    assert_eq!(s.transition(&strings(&["TRUE"]), false), None);
    assert_eq!(s.transition(&strings(&["FALSE"]), true), None);
    assert!(s.is_active(&strings(&["false"])));
}

#[test]
fn ad_user_account_control_sets_and_clears_never_toggles() {
    let s = DisableStrategy::AdUserAccountControl;
    let uac = |v: &str| strings(&[v]);
    let swap = |old: &str, new: &str| {
        Some(Modification::Swap(
            "userAccountControl".into(),
            old.into(),
            new.into(),
        ))
    };
    // A swap of the exact old value, so a concurrent change of another bit makes it fail.
    assert_eq!(s.transition(&uac("512"), false), swap("512", "514"));
    // Disabling a disabled account changes nothing (a toggle would enable it).
    assert_eq!(s.transition(&uac("514"), false), None);
    assert_eq!(s.transition(&uac("66050"), true), swap("66050", "66048"));
    assert_eq!(s.transition(&uac("66048"), true), None);
    assert_eq!(s.transition(&uac("66048"), false), swap("66048", "66050"));
    // Samba's fresh accounts: disabled + password not required.
    assert_eq!(s.transition(&uac("546"), true), swap("546", "544"));
    // No value yet: a normal account (0x200).
    assert_eq!(
        s.transition(&[], false),
        replace("userAccountControl", &["514"])
    );
    assert!(!s.is_active(&uac(" 514 ")));
    assert!(s.is_active(&uac("not a number")));
}

#[test]
fn attribute_strategy_transitions() {
    let s = DisableStrategy::Attribute {
        attribute: "employeeType".into(),
        value: "disabled".into(),
    };
    assert_eq!(s.attribute(), Some("employeeType"));
    assert_eq!(
        s.transition(&[], false),
        replace("employeeType", &["disabled"])
    );
    assert_eq!(
        s.transition(&strings(&["disabled"]), true),
        replace("employeeType", &[])
    );
    assert_eq!(s.transition(&strings(&["disabled"]), false), None);
    assert_eq!(s.transition(&strings(&["staff"]), true), None);
}

#[test]
fn none_strategy_never_writes() {
    let s = DisableStrategy::None;
    assert_eq!(s.attribute(), None);
    assert!(s.is_active(&strings(&[PPOLICY_LOCKED_FOREVER])));
    assert_eq!(s.transition(&[], false), None);
    assert_eq!(s.transition(&[], true), None);
    assert_eq!(s.filter(true), None);
    assert_eq!(s.filter(false), None);
}

#[test]
fn disable_strategy_filters() {
    let f = |s: DisableStrategy| (s.filter(true).unwrap(), s.filter(false).unwrap());
    assert_eq!(
        f(DisableStrategy::PPolicy),
        (
            "(!(pwdAccountLockedTime=000001010000Z))".to_string(),
            "(pwdAccountLockedTime=000001010000Z)".to_string()
        )
    );
    assert_eq!(
        f(DisableStrategy::NsAccountLock),
        (
            "(!(nsAccountLock=TRUE))".to_string(),
            "(nsAccountLock=TRUE)".to_string()
        )
    );
    assert_eq!(
        f(DisableStrategy::AdUserAccountControl),
        (
            "(!(userAccountControl:1.2.840.113556.1.4.803:=2))".to_string(),
            "(userAccountControl:1.2.840.113556.1.4.803:=2)".to_string()
        )
    );
    assert_eq!(
        f(DisableStrategy::Attribute {
            attribute: "description".into(),
            value: "off (*)\\".into()
        }),
        (
            "(!(description=off \\28\\2a\\29\\5c))".to_string(),
            "(description=off \\28\\2a\\29\\5c)".to_string()
        )
    );
}

#[test]
fn sam_account_name_follows_ad_rules() {
    let r = DeriveRule::SamAccountName;
    assert_eq!(r.apply("alice@contoso.com").as_deref(), Some("alice"));
    assert_eq!(
        r.apply("a\"b/c\\d[e]f:g;h|i=j,k+l*m?n<o>p@x").as_deref(),
        Some("abcdefghijklmnop")
    );
    assert_eq!(
        r.apply("a-very-long-user-name-indeed@x").as_deref(),
        Some("a-very-long-user-nam"),
        "20 characters"
    );
    assert_eq!(r.apply("trailing.@x").as_deref(), Some("trailing"));
    assert_eq!(r.apply("élodie@x").as_deref(), Some("élodie"));
    assert_eq!(r.apply("[]@x"), None);
    assert_eq!(DeriveRule::LocalPart.apply("a.b@c").as_deref(), Some("a.b"));
    assert_eq!(DeriveRule::Copy.apply("a.b@c").as_deref(), Some("a.b@c"));
}

#[test]
fn derived_attributes_are_written_on_create_only() {
    let mut m = demo_mapping();
    m.derived = vec![Derived {
        ldap: "sAMAccountName".into(),
        from_slot: m.user_name_slot,
        rule: DeriveRule::SamAccountName,
    }];
    let v = m
        .values_from_json(&json!({"userName": "isaac.brock@example.com"}))
        .unwrap();
    let attrs = m.create_attributes(&v).unwrap();
    assert!(attrs.contains(&(
        "sAMAccountName".to_string(),
        vec!["isaac.brock".to_string()]
    )));
    let bad = m.values_from_json(&json!({"userName": "[]@x"})).unwrap();
    let err = m.create_attributes(&bad).unwrap_err();
    assert!(err.to_string().contains("sAMAccountName"), "{err}");
    // Not a slot: never rendered, never part of a diff.
    assert!(!m.read_attributes().iter().any(|a| a == "sAMAccountName"));
}
