//! A JSON resource → mapped values → LDAP entry attributes and modifications: never a panic, and
//! no attribute is written without a value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    static MAPPING: OnceLock<scim_ldap_gateway::mapping::UserMapping> = OnceLock::new();
    let m = MAPPING.get_or_init(common::demo_mapping);
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(values) = m.values_from_json(&body) else {
        return;
    };
    if let Ok(attrs) = m.create_attributes(&values) {
        for (name, vals) in &attrs {
            assert!(!name.is_empty() && !vals.is_empty(), "{name}: {vals:?}");
        }
    }
    // (Not empty in general: defaults such as sn/cn and the disable state are filled in.)
    let _ = m.diff(&values, &values, &[]);
});
