//! Exact LDAP filters produced from SCIM filters over the demo mapping.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::mapping::tests::demo_mapping;
use crate::mapping::DisableStrategy;
use crate::scim::filter::parse_filter;

const OC: &str = "(objectClass=inetOrgPerson)";
const NOTHING: &str = "(!(objectClass=*))";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const BOSS_DN: &str = "uid=boss,ou=people,dc=example,dc=org";

fn translate_with(
    mapping: &UserMapping,
    filter: &str,
    refs: &[(&str, &str)],
) -> Result<String, ScimError> {
    let refs: HashMap<String, String> = refs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ast = parse_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    translate_filter(mapping, &ast, &refs)
}

fn tr(filter: &str) -> String {
    translate_with(&demo_mapping(), filter, &[]).unwrap_or_else(|e| panic!("{filter}: {e:?}"))
}

/// The translation of `filter` ANDed with the object filter.
fn with_oc(inner: &str) -> String {
    format!("(&{OC}{inner})")
}

fn invalid(filter: &str) -> String {
    match translate_with(&demo_mapping(), filter, &[]) {
        Err(ScimError::InvalidFilter(m) | ScimError::UnknownFilterAttribute(m)) => m,
        other => panic!("{filter}: expected InvalidFilter, got {other:?}"),
    }
}

#[test]
fn user_name_eq() {
    assert_eq!(
        tr(r#"userName eq "alice""#),
        "(&(objectClass=inetOrgPerson)(uid=alice))"
    );
}

#[test]
fn entra_test_connection_probe() {
    assert_eq!(
        tr(r#"userName eq "8f3c1a52-6f0e-4d5b-9b1e-1d2f3a4b5c6d""#),
        with_oc("(uid=8f3c1a52-6f0e-4d5b-9b1e-1d2f3a4b5c6d)")
    );
}

#[test]
fn names_and_operators_are_case_insensitive() {
    assert_eq!(tr(r#"USERNAME EQ "Alice""#), with_oc("(uid=Alice)"));
    assert_eq!(
        tr(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a""#),
        with_oc("(uid=a)")
    );
}

#[test]
fn and_or_not_and_grouping() {
    assert_eq!(
        tr(r#"userName eq "a" and externalId eq "b""#),
        with_oc("(&(uid=a)(scimExternalId=b))")
    );
    assert_eq!(
        tr(r#"userName eq "a" or userName eq "b""#),
        with_oc("(|(uid=a)(uid=b))")
    );
    // and binds tighter than or.
    assert_eq!(
        tr(r#"userName eq "a" or userName eq "b" and title eq "c""#),
        with_oc("(|(uid=a)(&(uid=b)(title=c)))")
    );
    assert_eq!(
        tr(r#"(userName eq "a" or userName eq "b") and title eq "c""#),
        with_oc("(&(|(uid=a)(uid=b))(title=c))")
    );
    assert_eq!(tr(r#"not (userName eq "a")"#), with_oc("(!(uid=a))"));
    assert_eq!(
        tr(r#"not (title pr) and displayName sw "A""#),
        with_oc("(&(!(title=*))(displayName=A*))")
    );
}

#[test]
fn every_comparison_operator() {
    let cases = [
        ("eq", "(uid=ali)"),
        ("ne", "(!(uid=ali))"),
        ("co", "(uid=*ali*)"),
        ("sw", "(uid=ali*)"),
        ("ew", "(uid=*ali)"),
        ("ge", "(uid>=ali)"),
        ("le", "(uid<=ali)"),
        ("gt", "(&(uid>=ali)(!(uid=ali)))"),
        ("lt", "(&(uid<=ali)(!(uid=ali)))"),
    ];
    for (op, want) in cases {
        assert_eq!(tr(&format!("userName {op} \"ali\"")), with_oc(want), "{op}");
    }
    assert_eq!(tr("userName pr"), with_oc("(uid=*)"));
    // An empty substring matches any present value.
    assert_eq!(tr(r#"userName co """#), with_oc("(uid=*)"));
    assert_eq!(tr(r#"userName sw """#), with_oc("(uid=*)"));
    assert_eq!(tr(r#"userName ew """#), with_oc("(uid=*)"));
}

#[test]
fn every_rfc4515_special_is_escaped() {
    assert_eq!(
        tr(r#"userName eq "a*b(c)d\\e\u0000f""#),
        with_oc(r"(uid=a\2ab\28c\29d\5ce\00f)")
    );
    assert_eq!(
        tr(r#"displayName co "*)(uid=*""#),
        with_oc(r"(displayName=*\2a\29\28uid=\2a*)")
    );
    assert_eq!(tr(r#"userName sw "x*""#), with_oc(r"(uid=x\2a*)"));
    assert_eq!(tr(r#"title ew "(y)""#), with_oc(r"(title=*\28y\29)"));
    // Other characters pass through.
    assert_eq!(
        tr(r#"displayName eq "Zoë & Co, =\"x\"""#),
        with_oc(r#"(displayName=Zoë & Co, ="x")"#)
    );
}

#[test]
fn sub_attributes_of_complex_attributes() {
    assert_eq!(tr(r#"name.givenName eq "Al""#), with_oc("(givenName=Al)"));
    assert_eq!(tr(r#"name.FAMILYNAME sw "Li""#), with_oc("(sn=Li*)"));
    assert_eq!(tr("name.formatted pr"), with_oc("(cn=*)"));
}

#[test]
fn complex_attribute_without_sub_attribute_is_invalid() {
    let m = invalid(r#"name eq "x""#);
    assert!(m.contains("name is complex"), "{m}");
    assert!(m.contains("name.givenName"), "{m}");
}

#[test]
fn unknown_sub_attribute_is_invalid() {
    let m = invalid(r#"name.middleName eq "x""#);
    assert!(
        m.contains("attribute name.middleName is not in this gateway's schema"),
        "{m}"
    );
}

#[test]
fn unmapped_attribute_is_invalid_and_named() {
    let m = invalid(r#"nickName eq "x""#);
    assert_eq!(
        m,
        "attribute nickName is not in this gateway's schema, so it cannot be filtered on"
    );
    let m =
        invalid(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter eq "x""#);
    assert!(m.contains("costCenter"), "{m}");
    // A core attribute under the extension URN is not in that schema.
    let m =
        invalid(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:userName eq "x""#);
    assert!(m.contains("userName"), "{m}");
}

#[test]
fn non_string_values_for_string_attributes() {
    let m = invalid("displayName eq true");
    assert!(m.contains("displayName is a string attribute"), "{m}");
    // null: eq means no value, ne means a value; ordering against null is meaningless.
    assert_eq!(tr("title eq null"), with_oc("(!(title=*))"));
    assert_eq!(tr("title ne null"), with_oc("(title=*)"));
    let m = invalid("title gt null");
    assert!(m.contains("null compares only with eq and ne"), "{m}");
    // Numbers are written as their JSON text.
    assert_eq!(
        tr(&format!("{ENT}:employeeNumber eq 701984")),
        with_oc("(employeeNumber=701984)")
    );
}

#[test]
fn external_id_and_id() {
    assert_eq!(
        tr(r#"externalId eq "0a21f0f2""#),
        with_oc("(scimExternalId=0a21f0f2)")
    );
    assert_eq!(
        tr(r#"id eq "2819c223-7f76-453a-919d-413861904646""#),
        with_oc("(entryUUID=2819c223-7f76-453a-919d-413861904646)")
    );
    assert_eq!(tr(r#"ID eq "*""#), with_oc(r"(entryUUID=\2a)"));
    assert_eq!(tr("id pr"), with_oc("(entryUUID=*)"));
}

#[test]
fn typed_value_path_with_sub_attribute() {
    assert_eq!(
        tr(r#"emails[type eq "work"].value eq "a@b.c""#),
        with_oc("(&(mail=*)(mail=a@b.c))")
    );
    assert_eq!(
        tr(r#"emails[type eq "work" and value eq "a@b.c"]"#),
        with_oc("(&(mail=*)(mail=a@b.c))")
    );
}

#[test]
fn emails_value_without_filter_uses_the_only_type() {
    assert_eq!(
        tr(r#"emails.value eq "a@b.c""#),
        with_oc("(&(mail=*)(mail=a@b.c))")
    );
    assert_eq!(
        tr(r#"emails eq "a@b.c""#),
        with_oc("(&(mail=*)(mail=a@b.c))")
    );
    assert_eq!(
        tr(r#"emails co "@b.c""#),
        with_oc(r"(&(mail=*)(mail=*@b.c*))")
    );
    assert_eq!(tr("emails pr"), with_oc("(&(mail=*)(mail=*))"));
}

#[test]
fn phone_value_matches_any_mapped_type() {
    assert_eq!(
        tr(r#"phoneNumbers.value eq "x""#),
        with_oc(
            "(|(|(&(telephoneNumber=*)(telephoneNumber=x))(&(mobile=*)(mobile=x)))\
             (&(facsimileTelephoneNumber=*)(facsimileTelephoneNumber=x)))"
        )
    );
}

#[test]
fn phone_value_filter_selects_one_type() {
    assert_eq!(
        tr(r#"phoneNumbers[type eq "mobile" and value sw "+1"]"#),
        with_oc("(&(mobile=*)(mobile=+1*))")
    );
    assert_eq!(
        tr(r#"phoneNumbers[type eq "MOBILE"].value eq "+1 555 0100""#),
        with_oc("(&(mobile=*)(mobile=+1 555 0100))")
    );
    assert_eq!(
        tr(r#"phoneNumbers[type ne "work" and value eq "x"]"#),
        with_oc(
            "(|(&(mobile=*)(mobile=x))(&(facsimileTelephoneNumber=*)(facsimileTelephoneNumber=x)))"
        )
    );
    assert_eq!(
        tr(r#"phoneNumbers[type eq "work" or type eq "fax"]"#),
        with_oc("(|(telephoneNumber=*)(facsimileTelephoneNumber=*))")
    );
}

#[test]
fn unmapped_element_type_matches_nothing() {
    assert_eq!(tr(r#"emails[type eq "home"]"#), NOTHING);
    assert_eq!(tr(r#"emails[type eq "home"].value eq "a@b.c""#), NOTHING);
    assert_eq!(tr(r#"userName eq "a" and emails[type eq "home"]"#), NOTHING);
    // Constant parts fold away.
    assert_eq!(
        tr(r#"userName eq "a" or emails[type eq "home"]"#),
        with_oc("(uid=a)")
    );
    assert_eq!(tr(r#"not (emails[type eq "home"])"#), OC);
}

#[test]
fn primary_in_value_filters() {
    assert_eq!(tr("emails[primary eq true]"), with_oc("(mail=*)"));
    assert_eq!(tr("emails[primary pr]"), with_oc("(mail=*)"));
    assert_eq!(tr("phoneNumbers[primary eq true]"), NOTHING);
    let m = invalid(r#"emails[primary eq "yes"]"#);
    assert!(
        m.contains("emails.primary compares only with eq/ne true or false"),
        "{m}"
    );
}

#[test]
fn address_sub_attribute_in_value_filter() {
    assert_eq!(
        tr(r#"addresses[type eq "work"].country eq "US""#),
        with_oc(
            "(&(|(|(|(|(|(street=*)(l=*))(st=*))(postalCode=*))(scimAddressCountry=*))(postalAddress=*))\
             (scimAddressCountry=US))"
        )
    );
    let m = invalid(r#"addresses[type eq "work"].poBox eq "1""#);
    assert!(m.contains("addresses.poBox"), "{m}");
}

#[test]
fn active_uses_the_disable_strategy() {
    let disabled = "(pwdAccountLockedTime=000001010000Z)";
    assert_eq!(tr("active eq false"), with_oc(disabled));
    assert_eq!(tr("active eq true"), with_oc(&format!("(!{disabled})")));
    assert_eq!(tr(r#"active eq "False""#), with_oc(disabled));
    assert_eq!(
        tr(r#"active eq "true""#),
        with_oc(&format!("(!{disabled})"))
    );
    assert_eq!(tr("active ne true"), with_oc(disabled));
    assert_eq!(tr("active pr"), OC);
    assert!(invalid("active gt true").contains("active compares only with eq/ne true or false"));
    assert!(invalid(r#"active eq "maybe""#).contains("active compares only"));
}

#[test]
fn active_without_disable_strategy_is_always_true() {
    let mut m = demo_mapping();
    m.disable = DisableStrategy::None;
    assert_eq!(translate_with(&m, "active eq true", &[]).unwrap(), OC);
    assert_eq!(translate_with(&m, "active eq false", &[]).unwrap(), NOTHING);
    m.disable = DisableStrategy::AdUserAccountControl;
    assert_eq!(
        translate_with(&m, "active eq false", &[]).unwrap(),
        with_oc("(userAccountControl:1.2.840.113556.1.4.803:=2)")
    );
}

#[test]
fn meta_dates_become_generalized_time() {
    assert_eq!(
        tr(r#"meta.created gt "2026-01-01T00:00:00Z""#),
        with_oc("(&(createTimestamp>=20260101000000Z)(!(createTimestamp=20260101000000Z)))")
    );
    assert_eq!(
        tr(r#"meta.lastModified ge "2026-03-04T05:06:07.5Z""#),
        with_oc("(modifyTimestamp>=20260304050607.5Z)")
    );
    assert_eq!(
        tr(r#"meta.lastModified lt "2026-03-04T05:06:07Z""#),
        with_oc("(&(modifyTimestamp<=20260304050607Z)(!(modifyTimestamp=20260304050607Z)))")
    );
    assert_eq!(tr("meta.created pr"), with_oc("(createTimestamp=*)"));
    assert_eq!(tr(r#"meta.resourceType eq "User""#), OC);
    assert_eq!(tr(r#"meta.resourceType eq "Group""#), NOTHING);
    assert!(invalid(r#"meta.created gt "yesterday""#).contains("is not a dateTime"));
    assert!(invalid(r#"meta.created co "2026-01-01T00:00:00Z""#).contains("does not support co"));
    assert!(invalid("meta.created gt 5").contains("compares with a dateTime string"));
    assert!(invalid(r#"meta.version eq "W/1""#).contains("meta.version"));
}

#[test]
fn enterprise_extension_attributes() {
    assert_eq!(
        tr(&format!("{ENT}:department eq \"R&D\"")),
        with_oc("(departmentNumber=R&D)")
    );
    // Without the URN the only extension mapping the name owns it.
    assert_eq!(
        tr(r#"department eq "R&D""#),
        with_oc("(departmentNumber=R&D)")
    );
    assert_eq!(
        tr(&format!("{}:employeeNumber sw \"70\"", ENT.to_uppercase())),
        with_oc("(employeeNumber=70*)")
    );
}

#[test]
fn manager_reference_resolves_through_refs() {
    let m = demo_mapping();
    let refs = [("mgr-1", BOSS_DN)];
    for f in [
        format!("{ENT}:manager eq \"mgr-1\""),
        format!("{ENT}:manager.value eq \"mgr-1\""),
        "manager eq \"mgr-1\"".to_string(),
        "manager[value eq \"mgr-1\"]".to_string(),
    ] {
        assert_eq!(
            translate_with(&m, &f, &refs).unwrap(),
            with_oc(&format!("(manager={BOSS_DN})")),
            "{f}"
        );
    }
    assert_eq!(
        translate_with(&m, "manager ne \"mgr-1\"", &refs).unwrap(),
        with_oc(&format!("(!(manager={BOSS_DN}))"))
    );
    assert_eq!(
        translate_with(&m, "manager pr", &refs).unwrap(),
        with_oc("(manager=*)")
    );
    assert_eq!(
        translate_with(&m, "manager[value pr]", &refs).unwrap(),
        with_oc("(manager=*)")
    );
}

#[test]
fn manager_dn_is_escaped_in_the_filter() {
    let m = demo_mapping();
    let dn = r"uid=o\2cbrien (boss)*,ou=people,dc=example,dc=org";
    assert_eq!(
        translate_with(&m, r#"manager eq "mgr-2""#, &[("mgr-2", dn)]).unwrap(),
        with_oc(r"(manager=uid=o\5c2cbrien \28boss\29\2a,ou=people,dc=example,dc=org)")
    );
}

#[test]
fn unknown_manager_id_matches_nothing() {
    let m = demo_mapping();
    assert_eq!(
        translate_with(&m, r#"manager eq "nobody""#, &[]).unwrap(),
        NOTHING
    );
    assert_eq!(
        translate_with(&m, r#"manager[value eq "nobody"]"#, &[]).unwrap(),
        NOTHING
    );
    assert_eq!(
        translate_with(&m, r#"manager ne "nobody""#, &[]).unwrap(),
        OC
    );
    assert_eq!(
        translate_with(&m, r#"userName eq "a" or manager eq "nobody""#, &[]).unwrap(),
        with_oc("(uid=a)")
    );
}

#[test]
fn manager_supports_only_id_equality() {
    let m = demo_mapping();
    let err = translate_with(&m, r#"manager co "mgr""#, &[]).unwrap_err();
    assert!(
        matches!(&err, ScimError::InvalidFilter(msg) if msg.contains("supports only eq, ne and pr")),
        "{err:?}"
    );
    let err = translate_with(&m, r#"manager[displayName eq "Boss"]"#, &[]).unwrap_err();
    assert!(
        matches!(&err, ScimError::InvalidFilter(msg) if msg.contains("supports only value eq")),
        "{err:?}"
    );
    let err = translate_with(&m, r#"manager.displayName eq "Boss""#, &[]).unwrap_err();
    assert!(
        matches!(&err, ScimError::UnknownFilterAttribute(msg) if msg.contains("manager.displayName")),
        "{err:?}"
    );
}

#[test]
fn value_filter_on_a_simple_attribute_is_invalid() {
    let m = invalid(r#"userName[value eq "a"]"#);
    assert!(m.contains("userName"), "{m}");
    let m = invalid(r#"nickName[type eq "a"]"#);
    assert!(m.contains("nickName"), "{m}");
}

#[test]
fn referenced_ids_collects_each_manager_id_once() {
    let m = demo_mapping();
    let ids = |f: &str| referenced_ids(&m, &parse_filter(f).unwrap());
    assert_eq!(
        ids(r#"manager eq "a" or (userName eq "b" and manager[value eq "c"]) or manager eq "a""#),
        vec!["a".to_string(), "c".to_string()]
    );
    assert_eq!(
        ids(&format!("not ({ENT}:manager.value eq \"z\")")),
        vec!["z".to_string()]
    );
    assert!(ids(r#"userName eq "a" and externalId eq "b""#).is_empty());
    assert!(ids(r#"emails[value eq "a"]"#).is_empty());
    assert!(ids("manager pr").is_empty());
}

/// The LDAP filter's structure: its parentheses and wildcards, once escaped values are removed.
fn skeleton(ldap: &str) -> String {
    let mut out = String::new();
    let mut chars = ldap.chars().peekable();
    let mut after_open = false;
    while let Some(c) = chars.next() {
        if c == '\\' {
            // an escape is a backslash and two hex digits: value, not structure
            chars.next();
            chars.next();
            after_open = false;
            continue;
        }
        // `&`, `|` and `!` are operators only right after an opening parenthesis.
        if "()*".contains(c) || (after_open && "&|!".contains(c)) {
            out.push(c);
        }
        after_open = c == '(';
    }
    out
}

/// Property: no value, however hostile, changes the structure of the translated LDAP filter.
/// Values are drawn from RFC 4515's specials, NUL, JSON-escaped quotes and letters by a fixed PRNG.
#[test]
fn no_value_changes_the_filter_structure() {
    let mapping = demo_mapping();
    let alphabet: Vec<char> = vec![
        '*', '(', ')', '\\', '\0', 'a', 'Z', ' ', '"', 'é', '=', '&', '|', '!',
    ];
    let templates = [
        "userName eq {v}",
        "displayName co {v}",
        "name.familyName sw {v}",
        "externalId ew {v}",
        "title ne {v}",
        "emails[type eq \"work\" and value eq {v}]",
        "phoneNumbers.value gt {v}",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department le {v}",
        "not (userName eq {v}) or displayName co {v}",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for template in templates {
        let benign = translate_with(&mapping, &template.replace("{v}", "\"x\""), &[]).unwrap();
        for _ in 0..300 {
            let len = (next() % 12) as usize + 1;
            let value: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let literal = serde_json::to_string(&value).unwrap();
            let filter = template.replace("{v}", &literal);
            let ldap = translate_with(&mapping, &filter, &[]).unwrap();
            assert!(
                ldap3::parse_filter(&ldap).is_ok(),
                "{filter} gave an unparsable {ldap}"
            );
            assert_eq!(
                skeleton(&ldap),
                skeleton(&benign),
                "{filter:?} changed the structure: {ldap}"
            );
            assert!(!ldap.contains('\0'), "NUL must be escaped: {ldap:?}");
        }
    }
}
