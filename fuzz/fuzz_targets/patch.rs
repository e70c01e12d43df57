//! A PATCH request body applied to a user: never a panic; what it yields either fails to map
//! or maps to values whose LDAP changes can be computed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scim_ldap_gateway::scim::patch::{apply, parse_request};
use serde_json::{json, Value};
use std::sync::OnceLock;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    static MAPPING: OnceLock<scim_ldap_gateway::mapping::UserMapping> = OnceLock::new();
    let m = MAPPING.get_or_init(common::demo_mapping);
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(ops) = parse_request(&body) else {
        return;
    };
    let mut doc = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice",
        "displayName": "Alice",
        "name": {"givenName": "Alice", "familyName": "Anderson"},
        "emails": [{"type": "work", "value": "alice@example.org", "primary": true}],
        "active": true
    });
    let old = m.values_from_json(&doc).expect("the start document maps");
    if apply(&mut doc, &ops, m).is_err() {
        return;
    }
    if let Ok(new) = m.values_from_json(&doc) {
        let _ = m.diff(&old, &new, &[]);
    }
});
