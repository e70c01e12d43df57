//! PATCH parsing and application on a user document, for every client shape in SCIM-CLIENTS.md.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::mapping::resource::UserValues;
use crate::mapping::tests::{demo_mapping, slot, values};
use crate::mapping::{CORE_USER, ENTERPRISE_USER};
use crate::scim::filter::parse_filter;
use crate::scim::PATCH_OP;
use serde_json::json;

/// A user as the service renders it before applying a PATCH.
fn user_doc() -> Value {
    json!({
        "schemas": [CORE_USER, ENTERPRISE_USER],
        "id": "u-1",
        "userName": "alice@contoso.com",
        "externalId": "alice",
        "displayName": "Alice Liddell",
        "name": {"givenName": "Alice", "familyName": "Liddell", "formatted": "Alice Liddell"},
        "emails": [{"type": "work", "value": "alice@contoso.com", "primary": true}],
        "phoneNumbers": [{"type": "work", "value": "+1 555 0001"}],
        ENTERPRISE_USER: {"employeeNumber": "42", "department": "R&D", "manager": {"value": "mgr-1"}},
        "active": true,
        "meta": {"resourceType": "User", "location": "https://gw.example/scim/v2/Users/u-1"}
    })
}

/// The mapped values of `user_doc()`, with the listed LDAP attributes replaced.
fn doc_values(changes: &[(&str, &[&str])], active: Option<bool>) -> UserValues {
    let m = demo_mapping();
    let base: &[(&str, &[&str])] = &[
        ("uid", &["alice@contoso.com"]),
        ("scimExternalId", &["alice"]),
        ("displayName", &["Alice Liddell"]),
        ("givenName", &["Alice"]),
        ("sn", &["Liddell"]),
        ("cn", &["Alice Liddell"]),
        ("mail", &["alice@contoso.com"]),
        ("telephoneNumber", &["+1 555 0001"]),
        ("employeeNumber", &["42"]),
        ("departmentNumber", &["R&D"]),
        ("manager", &["mgr-1"]),
    ];
    let mut v = values(&m, base, active);
    for (ldap, vals) in changes {
        v.slots[slot(&m, ldap)] = vals.iter().map(|s| s.to_string()).collect();
    }
    v
}

fn body(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn apply_ops(doc: &mut Value, ops: Value) -> Result<(), ScimError> {
    let ops = parse_request(&body(ops))?;
    apply(doc, &ops, &demo_mapping())
}

/// `user_doc()` after the operations, which must succeed.
fn patched(ops: Value) -> Value {
    let mut doc = user_doc();
    apply_ops(&mut doc, ops.clone()).unwrap_or_else(|e| panic!("{ops}: {e:?}"));
    doc
}

fn mapped(doc: &Value) -> UserValues {
    demo_mapping().values_from_json(doc).unwrap()
}

fn parse_err(b: Value) -> ScimError {
    parse_request(&b).expect_err("expected the request to be refused")
}

// ---------------------------------------------------------------------------
// parse_request

#[test]
fn parse_request_accepts_capitalised_ops() {
    let ops = parse_request(&body(json!([
        {"op": "Replace", "path": "displayName", "value": "X"},
        {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@b.c"},
        {"op": "Remove", "path": "title"},
        {"op": "REPLACE", "value": {"active": false}}
    ])))
    .unwrap();
    assert_eq!(
        ops,
        vec![
            PatchOperation {
                op: OpKind::Replace,
                path: Some(parse_path("displayName").unwrap()),
                value: Some(json!("X")),
            },
            PatchOperation {
                op: OpKind::Add,
                path: Some(parse_path("emails[type eq \"work\"].value").unwrap()),
                value: Some(json!("a@b.c")),
            },
            PatchOperation {
                op: OpKind::Remove,
                path: Some(parse_path("title").unwrap()),
                value: None,
            },
            PatchOperation {
                op: OpKind::Replace,
                path: None,
                value: Some(json!({"active": false})),
            },
        ]
    );
}

#[test]
fn parse_request_is_lenient_about_key_case_and_missing_schemas() {
    let ops = parse_request(&json!({"operations": [{"OP": "add", "PATH": "title", "VALUE": "x"}]}))
        .unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].op, OpKind::Add);
    assert_eq!(ops[0].value, Some(json!("x")));
    // An empty or null path is path-less.
    let ops = parse_request(&body(
        json!([{"op": "replace", "path": " ", "value": {"title": "y"}}]),
    ))
    .unwrap();
    assert_eq!(ops[0].path, None);
}

#[test]
fn parse_request_refuses_malformed_bodies() {
    let syntax = |b: Value, want: &str| match parse_err(b.clone()) {
        ScimError::InvalidSyntax(m) => assert!(m.contains(want), "{b}: {m}"),
        other => panic!("{b}: expected InvalidSyntax, got {other:?}"),
    };
    syntax(json!({"schemas": [PATCH_OP]}), "needs an Operations array");
    syntax(
        json!({"schemas": [PATCH_OP], "Operations": {"op": "add"}}),
        "needs an Operations array",
    );
    syntax(
        json!({"schemas": [PATCH_OP], "Operations": []}),
        "Operations is empty",
    );
    syntax(
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "Operations": [{"op": "remove", "path": "title"}]}),
        "schemas must contain urn:ietf:params:scim:api:messages:2.0:PatchOp",
    );
    syntax(json!([{"op": "add"}]), "must be a JSON object");
    syntax(body(json!(["add"])), "Operations[0] must be an object");
    syntax(
        body(json!([{"path": "title", "value": "x"}])),
        "Operations[0].op None",
    );
    syntax(
        body(json!([{"op": "copy", "path": "title", "value": "x"}])),
        "Operations[0].op Some(\"copy\")",
    );
    syntax(
        body(json!([{"op": "remove", "path": "title"}, {"op": "add", "path": "title"}])),
        "Operations[1] (Add) needs a value",
    );
}

#[test]
fn remove_without_path_is_no_target() {
    for op in [
        json!({"op": "remove"}),
        json!({"op": "Remove", "path": ""}),
        json!({"op": "remove", "path": null, "value": [{"value": "x"}]}),
    ] {
        match parse_err(body(json!([op]))) {
            ScimError::NoTarget(m) => assert!(m.contains("remove needs a path"), "{m}"),
            other => panic!("{op}: expected NoTarget, got {other:?}"),
        }
    }
}

#[test]
fn bad_paths_are_invalid_path() {
    for (path, want) in [
        (
            json!("emails[type eq \"work\""),
            "Operations[0].path \"emails[type eq \\\"work\\\"\"",
        ),
        (json!("name..givenName"), "Operations[0].path"),
        (json!(5), "Operations[0].path must be a string"),
    ] {
        match parse_err(body(json!([{"op": "replace", "path": path, "value": "x"}]))) {
            ScimError::InvalidPath(m) => assert!(m.contains(want), "{m}"),
            other => panic!("{path}: expected InvalidPath, got {other:?}"),
        }
    }
}

#[test]
fn too_many_operations() {
    let ops: Vec<Value> = (0..=MAX_OPERATIONS)
        .map(|_| json!({"op": "remove", "path": "title"}))
        .collect();
    assert!(matches!(
        parse_err(body(Value::Array(ops))),
        ScimError::TooMany(_)
    ));
}

// ---------------------------------------------------------------------------
// Entra shapes

#[test]
fn entra_default_shape() {
    let doc = patched(json!([
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@contoso.com"},
        {"op": "Replace", "path": "name.familyName", "value": "Updated"},
        {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"},
        {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"}
    ]));
    assert_eq!(
        doc["emails"],
        json!([{"type": "work", "value": "new@contoso.com", "primary": true}])
    );
    assert_eq!(
        doc["name"],
        json!({"givenName": "Alice", "familyName": "Updated", "formatted": "Alice Liddell"})
    );
    assert_eq!(doc[ENTERPRISE_USER]["department"], json!("Sales"));
    assert_eq!(
        doc["phoneNumbers"],
        json!([
            {"type": "work", "value": "+1 555 0001"},
            {"type": "mobile", "value": "+1 555 0100"}
        ])
    );
    assert_eq!(
        mapped(&doc),
        doc_values(
            &[
                ("mail", &["new@contoso.com"]),
                ("sn", &["Updated"]),
                ("departmentNumber", &["Sales"]),
                ("mobile", &["+1 555 0100"])
            ],
            Some(true)
        )
    );
}

#[test]
fn filtered_add_on_a_missing_attribute_creates_it_from_the_filter() {
    let mut doc = user_doc();
    doc.as_object_mut().unwrap().remove("emails");
    apply_ops(
        &mut doc,
        json!([{"op": "Add", "path": "emails[type eq \"work\" and primary eq true].value", "value": "a@b.c"}]),
    )
    .unwrap();
    assert_eq!(
        doc["emails"],
        json!([{"type": "work", "primary": true, "value": "a@b.c"}])
    );
}

#[test]
fn filtered_replace_that_matches_nothing_and_describes_nothing_is_no_target() {
    let mut doc = user_doc();
    let err = apply_ops(
        &mut doc,
        json!([{"op": "replace", "path": "phoneNumbers[value co \"9\"].value", "value": "+1 999"}]),
    )
    .unwrap_err();
    assert!(matches!(err, ScimError::NoTarget(_)), "{err:?}");
}

#[test]
fn entra_pathless_replace_with_dotted_and_urn_keys() {
    let doc = patched(json!([{
        "op": "replace",
        "value": {
            "displayName": "X",
            "name.givenName": "Y",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Z"
        }
    }]));
    assert_eq!(doc["displayName"], json!("X"));
    assert_eq!(doc["name"]["givenName"], json!("Y"));
    assert_eq!(doc["name"]["familyName"], json!("Liddell"));
    assert_eq!(doc[ENTERPRISE_USER]["employeeNumber"], json!("Z"));
    assert_eq!(
        mapped(&doc),
        doc_values(
            &[
                ("displayName", &["X"]),
                ("givenName", &["Y"]),
                ("employeeNumber", &["Z"])
            ],
            Some(true)
        )
    );
}

#[test]
fn pathless_replace_with_nested_extension_object() {
    let doc = patched(json!([{
        "op": "replace",
        "value": {ENTERPRISE_USER: {"department": "Ops", "manager": "mgr-2"}}
    }]));
    assert_eq!(
        doc[ENTERPRISE_USER],
        json!({"employeeNumber": "42", "department": "Ops", "manager": "mgr-2"})
    );
    assert_eq!(
        mapped(&doc),
        doc_values(
            &[("departmentNumber", &["Ops"]), ("manager", &["mgr-2"])],
            Some(true)
        )
    );
}

#[test]
fn pathless_extension_object_creates_a_missing_extension() {
    let mut doc = user_doc();
    doc.as_object_mut().unwrap().remove(ENTERPRISE_USER);
    apply_ops(
        &mut doc,
        json!([{"op": "add", "value": {ENTERPRISE_USER: {"department": "Ops"}}}]),
    )
    .unwrap();
    assert_eq!(doc[ENTERPRISE_USER], json!({"department": "Ops"}));
}

#[test]
fn okta_pathless_deactivate() {
    let doc = patched(json!([{"op": "replace", "value": {"active": false}}]));
    assert_eq!(doc["active"], json!(false));
    assert_eq!(mapped(&doc), doc_values(&[], Some(false)));
}

#[test]
fn entra_disable_with_string_false() {
    let doc = patched(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    assert_eq!(doc["active"], json!("False"));
    assert_eq!(mapped(&doc).active, Some(false));
    let doc = patched(json!([{"op": "Replace", "path": "active", "value": "True"}]));
    assert_eq!(mapped(&doc).active, Some(true));
}

#[test]
fn manager_add_with_plain_string() {
    let doc = patched(json!([{
        "op": "Add",
        "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "value": "mgr-9"
    }]));
    assert_eq!(doc[ENTERPRISE_USER]["manager"], json!("mgr-9"));
    assert_eq!(
        mapped(&doc),
        doc_values(&[("manager", &["mgr-9"])], Some(true))
    );
}

#[test]
fn manager_add_with_value_object_merges() {
    let doc = patched(json!([{
        "op": "add",
        "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "value": {"value": "mgr-7"}
    }]));
    assert_eq!(doc[ENTERPRISE_USER]["manager"], json!({"value": "mgr-7"}));
}

#[test]
fn manager_remove_by_value_filter() {
    let doc = patched(json!([{"op": "remove", "path": "manager[value eq \"mgr-1\"]"}]));
    assert_eq!(
        doc[ENTERPRISE_USER],
        json!({"employeeNumber": "42", "department": "R&D"})
    );
    assert_eq!(mapped(&doc), doc_values(&[("manager", &[])], Some(true)));
    // A filter naming another manager leaves it in place, still as an object.
    let doc = patched(json!([{"op": "remove", "path": "manager[value eq \"someone-else\"]"}]));
    assert_eq!(doc[ENTERPRISE_USER]["manager"], json!({"value": "mgr-1"}));
}

#[test]
fn manager_remove_by_full_path() {
    let doc = patched(json!([{
        "op": "Remove",
        "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "value": [{"value": "mgr-1"}]
    }]));
    assert!(doc[ENTERPRISE_USER].get("manager").is_none(), "{doc}");
}

// ---------------------------------------------------------------------------
// Multi-valued attributes

#[test]
fn remove_emails_by_type() {
    let doc = patched(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]));
    assert!(doc.get("emails").is_none(), "{doc}");
    assert_eq!(mapped(&doc), doc_values(&[("mail", &[])], Some(true)));
}

#[test]
fn remove_email_value_drops_the_bare_element() {
    let doc = patched(json!([{"op": "remove", "path": "emails[type eq \"work\"].value"}]));
    assert!(doc.get("emails").is_none(), "{doc}");
    assert_eq!(mapped(&doc), doc_values(&[("mail", &[])], Some(true)));
}

#[test]
fn remove_one_type_keeps_the_others() {
    let doc = patched(json!([
        {"op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"},
        {"op": "remove", "path": "phoneNumbers[type eq \"work\"]"}
    ]));
    assert_eq!(
        doc["phoneNumbers"],
        json!([{"type": "mobile", "value": "+1 555 0100"}])
    );
    assert_eq!(
        mapped(&doc),
        doc_values(
            &[("telephoneNumber", &[]), ("mobile", &["+1 555 0100"])],
            Some(true)
        )
    );
}

#[test]
fn remove_listed_elements_only() {
    let doc = patched(json!([
        {"op": "add", "path": "emails", "value": [{"type": "work", "value": "second@contoso.com"}]},
        {"op": "Remove", "path": "emails", "value": [{"value": "alice@contoso.com"}]}
    ]));
    assert_eq!(
        doc["emails"],
        json!([{"type": "work", "value": "second@contoso.com"}])
    );
}

#[test]
fn replace_whole_emails_list() {
    let doc = patched(json!([{
        "op": "replace",
        "path": "emails",
        "value": [{"type": "work", "value": "x@y.z"}, {"type": "work", "value": "w@y.z"}]
    }]));
    assert_eq!(
        doc["emails"],
        json!([{"type": "work", "value": "x@y.z"}, {"type": "work", "value": "w@y.z"}])
    );
    assert_eq!(
        mapped(&doc),
        doc_values(&[("mail", &["x@y.z", "w@y.z"])], Some(true))
    );
}

#[test]
fn add_to_existing_array_appends_without_duplicates() {
    let doc = patched(json!([{
        "op": "add",
        "path": "emails",
        "value": [
            {"type": "work", "value": "alice@contoso.com"},
            {"type": "work", "value": "second@contoso.com"}
        ]
    }]));
    assert_eq!(
        doc["emails"],
        json!([
            {"type": "work", "value": "alice@contoso.com", "primary": true},
            {"type": "work", "value": "second@contoso.com"}
        ])
    );
    assert_eq!(
        mapped(&doc),
        doc_values(
            &[("mail", &["alice@contoso.com", "second@contoso.com"])],
            Some(true)
        )
    );
    // A single object is appended the same way.
    let doc = patched(
        json!([{"op": "add", "path": "phoneNumbers", "value": {"type": "fax", "value": "+1 2"}}]),
    );
    assert_eq!(
        doc["phoneNumbers"],
        json!([{"type": "work", "value": "+1 555 0001"}, {"type": "fax", "value": "+1 2"}])
    );
}

#[test]
fn filtered_path_without_sub_attribute_merges_object_values() {
    let doc = patched(
        json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": {"value": "z@z.z"}}]),
    );
    assert_eq!(
        doc["emails"],
        json!([{"type": "work", "value": "z@z.z", "primary": true}])
    );
    let mut doc = user_doc();
    let err = apply_ops(
        &mut doc,
        json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": "h@h.h"}]),
    )
    .unwrap_err();
    assert!(matches!(err, ScimError::InvalidValue(_)), "{err:?}");
}

#[test]
fn sub_attribute_of_a_multi_valued_attribute_needs_a_filter() {
    let mut doc = user_doc();
    let err = apply_ops(
        &mut doc,
        json!([{"op": "replace", "path": "emails.value", "value": "x"}]),
    )
    .unwrap_err();
    match err {
        ScimError::InvalidPath(m) => assert!(m.contains("emails[type eq \"work\"].value"), "{m}"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Complex and read-only attributes, names

#[test]
fn complex_replace_keeps_unnamed_sub_attributes() {
    let doc = patched(json!([{"op": "replace", "path": "name", "value": {"givenName": "Al"}}]));
    assert_eq!(
        doc["name"],
        json!({"givenName": "Al", "familyName": "Liddell", "formatted": "Alice Liddell"})
    );
    assert_eq!(
        mapped(&doc),
        doc_values(&[("givenName", &["Al"])], Some(true))
    );
}

#[test]
fn remove_one_sub_attribute() {
    let doc = patched(json!([{"op": "remove", "path": "name.givenName"}]));
    assert_eq!(
        doc["name"],
        json!({"familyName": "Liddell", "formatted": "Alice Liddell"})
    );
    assert_eq!(mapped(&doc), doc_values(&[("givenName", &[])], Some(true)));
}

#[test]
fn sub_attribute_add_creates_the_complex_attribute() {
    let mut doc = user_doc();
    doc.as_object_mut().unwrap().remove("name");
    apply_ops(
        &mut doc,
        json!([{"op": "add", "path": "name.givenName", "value": "G"}]),
    )
    .unwrap();
    assert_eq!(doc["name"], json!({"givenName": "G"}));
}

#[test]
fn pathless_read_only_attributes_are_ignored() {
    let doc = patched(json!([{
        "op": "replace",
        "value": {"id": "other", "meta": {"created": "x"}, "schemas": [], "displayName": "Z"}
    }]));
    assert_eq!(doc["id"], json!("u-1"));
    assert_eq!(doc["meta"], user_doc()["meta"]);
    assert_eq!(doc["schemas"], user_doc()["schemas"]);
    assert_eq!(doc["displayName"], json!("Z"));
}

#[test]
fn explicit_read_only_paths_are_mutability_errors() {
    for path in ["id", "ID", "meta.lastModified", "schemas"] {
        let mut doc = user_doc();
        let err = apply_ops(
            &mut doc,
            json!([{"op": "replace", "path": path, "value": "x"}]),
        )
        .unwrap_err();
        assert!(matches!(err, ScimError::Mutability(_)), "{path}: {err:?}");
    }
    let mut doc = user_doc();
    let err = apply_ops(&mut doc, json!([{"op": "remove", "path": "id"}])).unwrap_err();
    assert!(matches!(err, ScimError::Mutability(_)), "{err:?}");
}

#[test]
fn attribute_names_are_case_insensitive() {
    let doc = patched(json!([
        {"op": "replace", "path": "USERNAME", "value": "bob"},
        {"op": "replace", "path": "NAME.GIVENNAME", "value": "Bob"},
        {"op": "replace", "path": "EMAILS[TYPE eq \"WORK\"].VALUE", "value": "bob@x"}
    ]));
    assert_eq!(doc["userName"], json!("bob"));
    assert!(doc.get("USERNAME").is_none(), "{doc}");
    assert_eq!(doc["name"]["givenName"], json!("Bob"));
    assert!(doc["name"].get("GIVENNAME").is_none(), "{doc}");
    assert_eq!(
        doc["emails"],
        json!([{"type": "work", "value": "bob@x", "primary": true}])
    );
    assert_eq!(
        mapped(&doc),
        doc_values(
            &[
                ("uid", &["bob"]),
                ("givenName", &["Bob"]),
                ("mail", &["bob@x"])
            ],
            Some(true)
        )
    );
}

#[test]
fn a_later_failing_operation_fails_the_whole_patch() {
    let mut doc = user_doc();
    let err = apply_ops(
        &mut doc,
        json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "id", "value": "other"}
        ]),
    )
    .unwrap_err();
    assert!(matches!(err, ScimError::Mutability(_)), "{err:?}");
    let mut doc = user_doc();
    let err = apply_ops(
        &mut doc,
        json!([
            {"op": "replace", "value": {"active": false}},
            {"op": "add", "path": "phoneNumbers[value co \"9\"].value", "value": "x"}
        ]),
    )
    .unwrap_err();
    assert!(matches!(err, ScimError::NoTarget(_)), "{err:?}");
}

#[test]
fn pathless_values_must_be_objects() {
    let mut doc = user_doc();
    let err = apply_ops(&mut doc, json!([{"op": "replace", "value": "x"}])).unwrap_err();
    assert!(matches!(err, ScimError::InvalidValue(_)), "{err:?}");
    let err = apply_ops(
        &mut doc,
        json!([{"op": "replace", "value": {ENTERPRISE_USER: "x"}}]),
    )
    .unwrap_err();
    assert!(matches!(err, ScimError::InvalidValue(_)), "{err:?}");
    let err = apply_ops(
        &mut doc,
        json!([{"op": "replace", "value": {"bad path[": "x"}}]),
    )
    .unwrap_err();
    assert!(matches!(err, ScimError::InvalidPath(_)), "{err:?}");
}

#[test]
fn removing_from_an_absent_extension_is_a_no_op() {
    let mut doc = user_doc();
    doc.as_object_mut().unwrap().remove(ENTERPRISE_USER);
    let before = doc.clone();
    apply_ops(
        &mut doc,
        json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}]),
    )
    .unwrap();
    assert_eq!(doc, before);
}

#[test]
fn unmapped_attributes_pass_the_engine_but_not_the_mapping() {
    let doc = patched(json!([{"op": "add", "path": "nickName", "value": "Al"}]));
    assert_eq!(doc["nickName"], json!("Al"));
    match demo_mapping().values_from_json(&doc) {
        Err(ScimError::InvalidValue(m)) => assert!(m.contains("nickName"), "{m}"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// matches

#[test]
fn value_filters_match_elements_case_insensitively() {
    let f = |s: &str| parse_filter(s).unwrap();
    let el = json!({"type": "Work", "value": "A@B.C", "primary": "True"});
    assert!(matches(&f(r#"type eq "work""#), &el));
    assert!(matches(&f(r#"value ew "b.c""#), &el));
    assert!(matches(&f("primary eq true"), &el));
    assert!(!matches(&f("primary eq false"), &el));
    assert!(matches(&f("value pr"), &el));
    assert!(!matches(&f("display pr"), &el));
    assert!(matches(&f(r#"display ne "x""#), &el));
    assert!(!matches(&f(r#"display eq "x""#), &el));
    assert!(matches(
        &f(r#"not (type eq "home") and (value co "@" or type eq "x")"#),
        &el
    ));
    // A plain string element is its own value.
    assert!(matches(&f(r#"value eq "mgr-1""#), &json!("MGR-1")));
    assert!(!matches(&f(r#"type eq "work""#), &json!("work")));
}
