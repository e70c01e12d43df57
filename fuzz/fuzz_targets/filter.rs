//! SCIM filter text → AST → LDAP filter: never a panic; every translated filter is valid LDAP
//! filter syntax; a parsed filter prints back to text that parses to the same AST.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scim_ldap_gateway::mapping::translate::translate_filter;
use scim_ldap_gateway::scim::filter::parse_filter;
use std::sync::OnceLock;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    static MAPPING: OnceLock<scim_ldap_gateway::mapping::UserMapping> = OnceLock::new();
    let mapping = MAPPING.get_or_init(common::demo_mapping);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = parse_filter(text) else {
        return;
    };
    let printed = filter.to_string();
    assert_eq!(
        parse_filter(&printed).ok().as_ref(),
        Some(&filter),
        "{printed}"
    );
    if let Ok(ldap) = translate_filter(mapping, &filter, &Default::default()) {
        assert!(ldap3::parse_filter(&ldap).is_ok(), "invalid LDAP filter {ldap:?}");
    }
});
