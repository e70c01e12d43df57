//! Unit tests of the group mapping: building it from config, and translating group filters.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::file::GroupMappingFile;
use crate::config::{Config, ConfigError, FixedEnv};
use crate::scim::filter::parse_filter;
use std::path::Path;

const GATEWAY_TOML: &str = include_str!("../../../config/gateway.toml");
const USERS_BASE: &str = "ou=people,dc=example,dc=org";
const GROUPS_BASE: &str = "ou=groups,dc=example,dc=org";
const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
const BOB_DN: &str = "uid=bob,ou=people,dc=example,dc=org";

fn env() -> FixedEnv {
    FixedEnv {
        vars: [
            ("SCIM_TOKEN", "0123456789abcdef0123456789abcdef"),
            ("LDAP_ADMIN_PASSWORD", "0123456789abcdef0123456789abcdef"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        files: Default::default(),
    }
}

/// The `[mapping.groups]` of `config/gateway.toml`.
pub(crate) fn demo_groups() -> GroupMapping {
    Config::from_toml(GATEWAY_TOML, Path::new("/etc/scim-ldap-gateway"), &env())
        .unwrap()
        .groups
        .unwrap()
}

fn file(toml_text: &str) -> GroupMappingFile {
    toml::from_str(toml_text).unwrap()
}

/// Build from a `[mapping.groups]` body; returns the mapping and the problems as `key: message`.
fn build(toml_text: &str) -> (Option<GroupMapping>, Vec<String>) {
    let mut problems = Problems::default();
    let m = GroupMapping::build(
        &file(toml_text),
        "mapping.groups",
        USERS_BASE,
        &mut problems,
    );
    let keys = problems.0.iter().map(|p| p.key.clone()).collect();
    (m, keys)
}

fn problems_of(toml_text: &str) -> Vec<(String, String)> {
    let mut problems = Problems::default();
    let m = GroupMapping::build(
        &file(toml_text),
        "mapping.groups",
        USERS_BASE,
        &mut problems,
    );
    assert!(m.is_none(), "expected the mapping to be refused");
    problems.0.into_iter().map(|p| (p.key, p.message)).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn members_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn translate(m: &GroupMapping, filter: &str, members: &HashMap<String, String>) -> String {
    translate_group_filter(m, &parse_filter(filter).unwrap(), members).unwrap()
}

fn translate_err(m: &GroupMapping, filter: &str) -> String {
    match translate_group_filter(m, &parse_filter(filter).unwrap(), &HashMap::new()) {
        Err(ScimError::InvalidFilter(msg) | ScimError::UnknownFilterAttribute(msg)) => msg,
        other => panic!("expected InvalidFilter for {filter}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Building

#[test]
fn demo_config_builds_the_documented_group_mapping() {
    let g = demo_groups();
    assert_eq!(g.base, GROUPS_BASE);
    assert_eq!(g.scope, Scope::OneLevel);
    assert_eq!(g.object_filter, "(objectClass=groupOfNames)");
    assert_eq!(
        g.object_classes,
        strings(&["top", "groupOfNames", "scimGroup"])
    );
    assert_eq!(g.id_attribute, "entryUUID");
    assert_eq!(g.rdn_attribute, "cn");
    assert_eq!(g.name_attribute, "cn");
    assert_eq!(g.external_id_attribute.as_deref(), Some("scimExternalId"));
    assert_eq!(g.member_attribute, "member");
    assert_eq!(g.member_value, MemberValue::Dn);
    assert_eq!(
        g.placeholder_member.as_deref(),
        Some("cn=empty-membership,dc=example,dc=org")
    );
    assert_eq!(g.member_of_attribute.as_deref(), Some("memberOf"));
    assert_eq!(g.dn_attribute, "entryDN");
    assert_eq!(g.integrity, MembershipIntegrity::Directory);
    assert_eq!(g.created_attribute, "createTimestamp");
    assert_eq!(g.modified_attribute, "modifyTimestamp");
    assert!(g.constants.is_empty());
    assert!(g.renames_by_modrdn());
}

#[test]
fn omitted_keys_take_their_defaults() {
    let (m, problems) = build(&format!("base = \"{GROUPS_BASE}\""));
    assert_eq!(problems, Vec::<String>::new());
    let g = m.unwrap();
    assert_eq!(g.scope, Scope::Subtree);
    assert_eq!(g.object_filter, "(objectClass=groupOfNames)");
    assert_eq!(g.object_classes, strings(&["top", "groupOfNames"]));
    assert_eq!(g.id_attribute, "entryUUID");
    assert_eq!(g.rdn_attribute, "cn");
    assert_eq!(g.name_attribute, "cn");
    assert_eq!(g.external_id_attribute, None);
    assert_eq!(g.member_attribute, "member");
    assert_eq!(g.member_value, MemberValue::Dn);
    assert_eq!(g.placeholder_member, None);
    assert_eq!(g.member_of_attribute, None);
    assert_eq!(g.dn_attribute, "entryDN");
    assert_eq!(g.integrity, MembershipIntegrity::Gateway);
    assert_eq!(g.created_attribute, "createTimestamp");
    assert_eq!(g.modified_attribute, "modifyTimestamp");
}

#[test]
fn posix_group_mapping_builds_with_constants() {
    let (m, problems) = build(&format!(
        r#"base = "{GROUPS_BASE}"
filter = "objectClass=posixGroup"
object_classes = ["top", "posixGroup"]
member_attribute = "memberUid"
member_value = "user_name"
membership_integrity = "directory"
constants = [{{ ldap = "gidNumber", values = ["5000"] }}]"#
    ));
    assert_eq!(problems, Vec::<String>::new());
    let g = m.unwrap();
    // A filter written without parentheses gets them.
    assert_eq!(g.object_filter, "(objectClass=posixGroup)");
    assert_eq!(g.member_attribute, "memberUid");
    assert_eq!(g.member_value, MemberValue::UserName);
    assert_eq!(g.integrity, MembershipIntegrity::Directory);
    assert_eq!(
        g.constants,
        vec![("gidNumber".to_string(), strings(&["5000"]))]
    );
}

#[test]
fn bad_scope_is_reported_with_its_key() {
    let p = problems_of(&format!("base = \"{GROUPS_BASE}\"\nscope = \"base\""));
    assert_eq!(
        p,
        vec![(
            "mapping.groups.scope".to_string(),
            "\"base\" is not a scope; use \"one\" or \"sub\"".to_string()
        )]
    );
}

#[test]
fn bad_member_value_is_reported_with_its_key() {
    let p = problems_of(&format!("base = \"{GROUPS_BASE}\"\nmember_value = \"uid\""));
    assert_eq!(
        p,
        vec![(
            "mapping.groups.member_value".to_string(),
            "\"uid\" is not a member value; use \"dn\" or \"user_name\"".to_string()
        )]
    );
}

#[test]
fn bad_membership_integrity_is_reported_with_its_key() {
    let p = problems_of(&format!(
        "base = \"{GROUPS_BASE}\"\nmembership_integrity = \"refint\""
    ));
    assert_eq!(
        p,
        vec![(
            "mapping.groups.membership_integrity".to_string(),
            "\"refint\" is not an option; use \"gateway\" or \"directory\"".to_string()
        )]
    );
}

#[test]
fn bad_filter_and_empty_base_are_reported() {
    let (m, keys) = build("base = \"\"\nfilter = \"(objectClass=groupOfNames\"");
    assert!(m.is_none());
    assert_eq!(
        keys,
        strings(&["mapping.groups.base", "mapping.groups.filter"])
    );
}

#[test]
fn placeholder_inside_the_users_base_is_refused() {
    let p = problems_of(&format!(
        "base = \"{GROUPS_BASE}\"\nplaceholder_member = \"cn=empty,{USERS_BASE}\""
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "mapping.groups.placeholder_member");
    assert!(p[0].1.contains("inside the users base"), "{}", p[0].1);
}

#[test]
fn placeholder_inside_the_groups_base_is_refused() {
    let p = problems_of(&format!(
        "base = \"{GROUPS_BASE}\"\nplaceholder_member = \"cn=Empty, OU=Groups,dc=example,dc=org\""
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "mapping.groups.placeholder_member");
    assert!(p[0].1.contains("inside the groups base"), "{}", p[0].1);
}

#[test]
fn placeholder_that_is_not_a_dn_is_refused() {
    let (m, keys) = build(&format!(
        "base = \"{GROUPS_BASE}\"\nplaceholder_member = \"\""
    ));
    assert!(m.is_none());
    assert_eq!(keys, strings(&["mapping.groups.placeholder_member"]));
}

#[test]
fn placeholder_with_user_name_members_is_refused() {
    let p = problems_of(&format!(
        "base = \"{GROUPS_BASE}\"\nmember_value = \"user_name\"\nplaceholder_member = \"cn=empty,dc=example,dc=org\""
    ));
    assert_eq!(
        p,
        vec![(
            "mapping.groups.placeholder_member".to_string(),
            "applies only to member_value = \"dn\"".to_string()
        )]
    );
}

#[test]
fn groups_base_inside_the_users_base_is_refused() {
    let (m, keys) = build(&format!("base = \"ou=groups,{USERS_BASE}\""));
    assert!(m.is_none());
    assert_eq!(keys, strings(&["mapping.groups.base"]));
}

#[test]
fn users_base_inside_the_groups_base_is_refused() {
    let (m, keys) = build("base = \"dc=example,dc=org\"");
    assert!(m.is_none());
    assert_eq!(keys, strings(&["mapping.groups.base"]));
    let (m, keys) = build(&format!("base = \"{USERS_BASE}\""));
    assert!(m.is_none());
    assert_eq!(keys, strings(&["mapping.groups.base"]));
}

#[test]
fn every_problem_is_reported_at_once() {
    let (m, keys) = build(&format!(
        "base = \"{GROUPS_BASE}\"\nscope = \"all\"\nmember_value = \"x\"\nmembership_integrity = \"y\""
    ));
    assert!(m.is_none());
    assert_eq!(
        keys,
        strings(&[
            "mapping.groups.scope",
            "mapping.groups.member_value",
            "mapping.groups.membership_integrity"
        ])
    );
}

#[test]
fn config_load_reports_group_problems_with_the_full_key_path() {
    let text = GATEWAY_TOML.replace(
        "scope = \"one\"\nfilter = \"(objectClass=groupOfNames)\"",
        "scope = \"tree\"\nfilter = \"(objectClass=groupOfNames)\"",
    );
    assert_ne!(
        text, GATEWAY_TOML,
        "the replaced text must exist in the demo config"
    );
    match Config::from_toml(&text, Path::new("/etc/scim-ldap-gateway"), &env()) {
        Err(ConfigError::Invalid(problems)) => {
            let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, vec!["mapping.groups.scope"]);
        }
        other => panic!("expected Invalid, got {:?}", other.map(|_| ())),
    }
}

// ---------------------------------------------------------------------------
// Attributes and helpers

#[test]
fn read_attributes_include_the_member_attribute_only_when_asked() {
    let mut g = demo_groups();
    // With memberOf, members come from a reverse search: the member attribute is never read.
    assert!(g.members_from_member_of());
    assert!(!g.read_attributes(true).iter().any(|a| a == "member"));
    g.member_of_attribute = None;
    let without = g.read_attributes(false);
    assert_eq!(
        without,
        strings(&[
            "entryUUID",
            "cn",
            "createTimestamp",
            "modifyTimestamp",
            "scimExternalId",
            "entryCSN"
        ])
    );
    assert!(!without.iter().any(|a| a.eq_ignore_ascii_case("member")));
    let with = g.read_attributes(true);
    assert_eq!(
        with,
        strings(&[
            "entryUUID",
            "cn",
            "createTimestamp",
            "modifyTimestamp",
            "scimExternalId",
            "entryCSN",
            "member"
        ])
    );
}

#[test]
fn read_attributes_include_a_distinct_rdn_attribute() {
    let mut g = demo_groups();
    g.name_attribute = "description".into();
    g.external_id_attribute = None;
    assert_eq!(
        g.read_attributes(false),
        strings(&[
            "entryUUID",
            "description",
            "createTimestamp",
            "modifyTimestamp",
            "cn",
            "entryCSN"
        ])
    );
    assert!(!g.renames_by_modrdn());
}

#[test]
fn placeholder_is_recognised_whatever_the_dn_spelling() {
    let g = demo_groups();
    assert!(g.is_placeholder("cn=empty-membership,dc=example,dc=org"));
    assert!(g.is_placeholder("CN=Empty-Membership, DC=example, DC=org"));
    assert!(!g.is_placeholder(ALICE_DN));
    let mut g = g;
    g.placeholder_member = None;
    assert!(!g.is_placeholder("cn=empty-membership,dc=example,dc=org"));
}

// ---------------------------------------------------------------------------
// Filters

#[test]
fn display_name_eq_is_the_cn() {
    let g = demo_groups();
    assert_eq!(
        translate(&g, "displayName eq \"Sales\"", &HashMap::new()),
        "(&(objectClass=groupOfNames)(cn=Sales))"
    );
}

#[test]
fn external_id_and_id_map_to_their_attributes() {
    let g = demo_groups();
    assert_eq!(
        translate(&g, "externalId eq \"x\"", &HashMap::new()),
        "(&(objectClass=groupOfNames)(scimExternalId=x))"
    );
    assert_eq!(
        translate(
            &g,
            "id eq \"0f1e2d3c-aaaa-bbbb-cccc-000000000001\"",
            &HashMap::new()
        ),
        "(&(objectClass=groupOfNames)(entryUUID=0f1e2d3c-aaaa-bbbb-cccc-000000000001))"
    );
    assert_eq!(
        translate(
            &g,
            "urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq \"Sales\"",
            &HashMap::new()
        ),
        "(&(objectClass=groupOfNames)(cn=Sales))"
    );
}

#[test]
fn external_id_without_an_attribute_is_not_filterable() {
    let mut g = demo_groups();
    g.external_id_attribute = None;
    translate_err(&g, "externalId eq \"x\"");
}

#[test]
fn member_value_filters_use_the_resolved_member_value() {
    let g = demo_groups();
    let members = members_map(&[("alice-uuid", ALICE_DN)]);
    let want = format!("(&(objectClass=groupOfNames)(member={ALICE_DN}))");
    assert_eq!(
        translate(&g, "members[value eq \"alice-uuid\"]", &members),
        want
    );
    assert_eq!(
        translate(&g, "members.value eq \"alice-uuid\"", &members),
        want
    );
    assert_eq!(translate(&g, "members eq \"alice-uuid\"", &members), want);
}

#[test]
fn member_dns_are_escaped_in_the_filter() {
    let g = demo_groups();
    let members = members_map(&[("odd", "uid=a(b)*\\2c,ou=people,dc=example,dc=org")]);
    assert_eq!(
        translate(&g, "members[value eq \"odd\"]", &members),
        "(&(objectClass=groupOfNames)(member=uid=a\\28b\\29\\2a\\5c2c,ou=people,dc=example,dc=org))"
    );
}

#[test]
fn unknown_member_id_matches_nothing() {
    let g = demo_groups();
    let members = members_map(&[("alice-uuid", ALICE_DN)]);
    assert_eq!(
        translate(&g, "members[value eq \"nobody\"]", &members),
        "(!(objectClass=*))"
    );
    // ... but an or with a known id keeps the known part.
    assert_eq!(
        translate(
            &g,
            "members[value eq \"nobody\" or value eq \"alice-uuid\"]",
            &members
        ),
        format!("(&(objectClass=groupOfNames)(member={ALICE_DN}))")
    );
    // ... and "not a member" of an unknown id holds for every group.
    assert_eq!(
        translate(&g, "not (members[value eq \"nobody\"])", &members),
        "(objectClass=groupOfNames)"
    );
}

#[test]
fn member_or_inside_brackets_is_an_ldap_or() {
    let g = demo_groups();
    let members = members_map(&[("a", ALICE_DN), ("b", BOB_DN)]);
    assert_eq!(
        translate(&g, "members[value eq \"a\" or value eq \"b\"]", &members),
        format!("(&(objectClass=groupOfNames)(|(member={ALICE_DN})(member={BOB_DN})))")
    );
}

#[test]
fn member_ne_is_negated() {
    let g = demo_groups();
    let members = members_map(&[("a", ALICE_DN)]);
    assert_eq!(
        translate(&g, "members[value ne \"a\"]", &members),
        format!("(&(objectClass=groupOfNames)(!(member={ALICE_DN})))")
    );
}

#[test]
fn member_filters_combine_with_display_name() {
    let g = demo_groups();
    let members = members_map(&[("a", ALICE_DN)]);
    assert_eq!(
        translate(
            &g,
            "displayName sw \"Sa\" and members[value eq \"a\"]",
            &members
        ),
        format!("(&(objectClass=groupOfNames)(&(cn=Sa*)(member={ALICE_DN})))")
    );
}

#[test]
fn contains_escapes_the_asterisk() {
    let g = demo_groups();
    assert_eq!(
        translate(&g, "displayName co \"a*b\"", &HashMap::new()),
        "(&(objectClass=groupOfNames)(cn=*a\\2ab*))"
    );
    assert_eq!(
        translate(&g, "displayName eq \"R&D (EMEA)\"", &HashMap::new()),
        "(&(objectClass=groupOfNames)(cn=R&D \\28EMEA\\29))"
    );
}

#[test]
fn meta_last_modified_is_a_timestamp_range() {
    let g = demo_groups();
    assert_eq!(
        translate(
            &g,
            "meta.lastModified gt \"2026-01-01T00:00:00Z\"",
            &HashMap::new()
        ),
        "(&(objectClass=groupOfNames)(&(modifyTimestamp>=20260101000000Z)(!(modifyTimestamp=20260101000000Z))))"
    );
    assert_eq!(
        translate(
            &g,
            "meta.created ge \"2026-01-01T00:00:00Z\"",
            &HashMap::new()
        ),
        "(&(objectClass=groupOfNames)(createTimestamp>=20260101000000Z))"
    );
    assert_eq!(
        translate(&g, "meta.resourceType eq \"Group\"", &HashMap::new()),
        "(objectClass=groupOfNames)"
    );
    assert_eq!(
        translate(&g, "meta.resourceType eq \"User\"", &HashMap::new()),
        "(!(objectClass=*))"
    );
}

#[test]
fn unfilterable_attributes_are_invalid_filters() {
    let g = demo_groups();
    translate_err(&g, "owner eq \"x\"");
    let msg = translate_err(&g, "members[display eq \"x\"]");
    assert!(msg.contains("display"), "{msg}");
    translate_err(&g, "members.display eq \"x\"");
    translate_err(&g, "members[type eq \"User\"]");
    translate_err(&g, "members co \"a\"");
    translate_err(&g, "members pr");
    translate_err(&g, "emails[value eq \"x\"]");
    translate_err(
        &g,
        "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"x\"",
    );
    translate_err(&g, "meta.lastModified gt \"yesterday\"");
}

#[test]
fn referenced_member_ids_lists_each_id_once_in_order() {
    let ids = |f: &str| referenced_member_ids(&parse_filter(f).unwrap());
    assert_eq!(ids("displayName eq \"Sales\""), Vec::<String>::new());
    assert_eq!(ids("members[value eq \"a\"]"), strings(&["a"]));
    assert_eq!(ids("members.value eq \"a\""), strings(&["a"]));
    assert_eq!(
        ids("members[value eq \"b\" or value eq \"a\"] or members.value eq \"b\""),
        strings(&["b", "a"])
    );
    assert_eq!(
        ids("not (members[value eq \"c\"]) and displayName eq \"c2\""),
        strings(&["c"])
    );
    // `value` outside members and ids of other attributes are not member ids.
    assert_eq!(
        ids("id eq \"x\" or externalId eq \"y\""),
        Vec::<String>::new()
    );
    assert_eq!(ids("emails[value eq \"z\"]"), Vec::<String>::new());
}
