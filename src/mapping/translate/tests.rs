//! Exact LDAP filters produced from SCIM filters over the demo mapping.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::mapping::tests::demo_mapping;
use crate::mapping::DisableStrategy;
use crate::scim::filter::parse_filter;
use ldap3::asn1::{ExplicitTag, OctetString, Sequence, Tag, TagClass};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

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
        tr(r#"userName eq "a*b(c)d\\ef""#),
        with_oc(r"(uid=a\2ab\28c\29d\5cef)")
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
    assert_eq!(tr(r#"ID eq "*""#), "(!(objectClass=*))");
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

/// An LDAP filter's parse tree (from `ldap3::parse_filter`) without its assertion values:
/// what no value may change.
#[derive(Debug, PartialEq)]
enum Shape {
    And(Vec<Shape>),
    Or(Vec<Shape>),
    Not(Box<Shape>),
    Equal(String),
    /// The attribute and the kinds (initial 0, any 1, final 2) of the substrings, in order.
    Substrings(String, Vec<u64>),
    GreaterOrEqual(String),
    LessOrEqual(String),
    Present(String),
    Unexpected(String),
}

/// The shape of an LDAP filter's parse tree (RFC 4511 §4.5.1 `Filter` choices); its assertion
/// values are appended to `values` in order.
fn shape(tag: &Tag, values: &mut Vec<Vec<u8>>) -> Shape {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match tag {
        Tag::Sequence(Sequence {
            class: TagClass::Context,
            id,
            inner,
        }) => match (*id, inner.as_slice()) {
            (0, items) => Shape::And(items.iter().map(|t| shape(t, values)).collect()),
            (1, items) => Shape::Or(items.iter().map(|t| shape(t, values)).collect()),
            (3 | 5 | 6, [Tag::OctetString(attr), Tag::OctetString(value)]) => {
                values.push(value.inner.clone());
                let attr = text(&attr.inner);
                match id {
                    3 => Shape::Equal(attr),
                    5 => Shape::GreaterOrEqual(attr),
                    _ => Shape::LessOrEqual(attr),
                }
            }
            (4, [Tag::OctetString(attr), Tag::Sequence(subs)]) => {
                let mut kinds = Vec::new();
                for sub in &subs.inner {
                    match sub {
                        Tag::OctetString(s) => {
                            kinds.push(s.id);
                            values.push(s.inner.clone());
                        }
                        other => return Shape::Unexpected(format!("{other:?}")),
                    }
                }
                Shape::Substrings(text(&attr.inner), kinds)
            }
            _ => Shape::Unexpected(format!("{tag:?}")),
        },
        Tag::ExplicitTag(ExplicitTag {
            class: TagClass::Context,
            id: 2,
            inner,
        }) => Shape::Not(Box::new(shape(inner, values))),
        Tag::OctetString(OctetString {
            class: TagClass::Context,
            id: 7,
            inner,
        }) => Shape::Present(text(inner)),
        other => Shape::Unexpected(format!("{other:?}")),
    }
}

/// The shape of `ldap` and its assertion values; `ldap3` must accept it.
fn parsed(ldap: &str) -> Result<(Shape, Vec<Vec<u8>>), TestCaseError> {
    let tag = ldap3::parse_filter(ldap)
        .map_err(|()| TestCaseError::fail(format!("ldap3 refuses {ldap:?}")))?;
    let mut values = Vec::new();
    let shape = shape(&tag, &mut values);
    Ok((shape, values))
}

/// Strings rich in what LDAP filters and JSON treat specially: RFC 4515's `*()\` and NUL,
/// quotes, control characters, filter operators, and any Unicode scalar value.
fn hostile_text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '*',
        '(',
        ')',
        '\\',
        '\0',
        '"',
        '\n',
        '\u{1f}',
        '\u{7f}',
        '=',
        '&',
        '|',
        '!',
        '~',
        '<',
        '>',
        ':',
        ',',
        '#',
        ' ',
        'é',
        '日',
        '\u{10ffff}',
    ]);
    prop::collection::vec(
        prop_oneof![special, proptest::arbitrary::any::<char>()],
        len,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// SCIM filters with `{v}` where a client's value goes; each translates to LDAP value assertions.
const TEMPLATES: &[&str] = &[
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

/// The value every template is first translated with; it appears nowhere else in the translations.
const BENIGN: &str = "x";

/// Runs `test` on 256 values drawn from `strategy` (the mapping is built once, not per case);
/// a failure panics with the shrunk input.
fn check<S>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 256,
        // A failure prints its shrunk input; found cases become named unit tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// Whatever the value, `userName eq <value>` is one equality on `uid` beside the object
/// filter, and the escaped value unescapes, and parses, back to exactly the value.
#[test]
fn escaped_user_name_keeps_the_filter_and_round_trips() {
    let mapping = demo_mapping();
    check(hostile_text(0..16), |value| {
        let literal = CompValue::Str(value.clone()).to_string();
        let ast = parse_filter(&format!("userName eq {literal}"))
            .map_err(|e| TestCaseError::fail(format!("{literal} does not parse: {e}")))?;
        let translated = translate_filter(&mapping, &ast, &HashMap::new());
        if value.contains('\0') {
            prop_assert!(
                matches!(translated, Err(ScimError::InvalidFilter(_))),
                "{:?} with NUL: {:?}",
                value,
                translated
            );
            return Ok(());
        }
        let ldap = translated
            .map_err(|e| TestCaseError::fail(format!("{literal} does not translate: {e:?}")))?;
        let (shape, values) = parsed(&ldap)?;
        prop_assert_eq!(
            shape,
            Shape::And(vec![
                Shape::Equal("objectClass".into()),
                Shape::Equal("uid".into())
            ])
        );
        prop_assert_eq!(
            values,
            vec![b"inetOrgPerson".to_vec(), value.clone().into_bytes()]
        );
        let escaped = ldap
            .strip_prefix("(&(objectClass=inetOrgPerson)(uid=")
            .and_then(|rest| rest.strip_suffix("))"))
            .ok_or_else(|| TestCaseError::fail(format!("unexpected translation {ldap}")))?;
        prop_assert!(
            !escaped.contains(['*', '(', ')', '\0']),
            "{:?} leaves a special unescaped",
            escaped
        );
        let unescaped = ldap3::ldap_unescape(escaped)
            .map_err(|e| TestCaseError::fail(format!("{escaped:?} does not unescape: {e}")))?;
        prop_assert_eq!(unescaped.as_ref(), value.as_str());
        Ok(())
    });
}

/// No value, however hostile, changes the structure of a translated filter: the parse tree
/// has the same operators, components and attributes as with a plain value, and each
/// assertion value is exactly the client's value.
#[test]
fn no_value_changes_the_filter_structure() {
    let mapping = demo_mapping();
    let translate = |filter: &str| -> Result<(Shape, Vec<Vec<u8>>), TestCaseError> {
        let ast = parse_filter(filter)
            .map_err(|e| TestCaseError::fail(format!("{filter} does not parse: {e}")))?;
        let ldap = translate_filter(&mapping, &ast, &HashMap::new())
            .map_err(|e| TestCaseError::fail(format!("{filter} does not translate: {e:?}")))?;
        parsed(&ldap)
    };
    // Not empty: `co ""`, `sw ""` and `ew ""` mean "has a value", a presence test by design.
    let cases = (prop::sample::select(TEMPLATES), hostile_text(1..16));
    check(cases, |(template, value)| {
        let (benign_shape, benign_values) =
            translate(&template.replace("{v}", &format!("\"{BENIGN}\"")))?;
        let literal = CompValue::Str(value.clone()).to_string();
        if value.contains('\0') {
            let ast = parse_filter(&template.replace("{v}", &literal))
                .map_err(|e| TestCaseError::fail(format!("{template} does not parse: {e}")))?;
            let translated = translate_filter(&mapping, &ast, &HashMap::new());
            prop_assert!(
                matches!(translated, Err(ScimError::InvalidFilter(_))),
                "{} with NUL {:?}: {:?}",
                template,
                value,
                translated
            );
            return Ok(());
        }
        let (shape, values) = translate(&template.replace("{v}", &literal))?;
        prop_assert_eq!(&shape, &benign_shape, "{} with {:?}", template, value);
        let expected: Vec<Vec<u8>> = benign_values
            .into_iter()
            .map(|v| {
                if v == BENIGN.as_bytes() {
                    value.clone().into_bytes()
                } else {
                    v
                }
            })
            .collect();
        prop_assert_eq!(values, expected, "{} with {:?}", template, value);
        Ok(())
    });
}

/// slapd ends a substring assertion at a NUL, so `co "\u0000"` would match every value.
#[test]
fn nul_in_a_filter_value_is_an_invalid_filter() {
    let mapping = demo_mapping();
    for filter in [
        r#"emails[type eq "work"].value co "\u0000""#,
        r#"userName eq "alice\u0000""#,
        r#"displayName sw "a\u0000)(uid=*""#,
        r#"title ne "\u0000""#,
    ] {
        let ast = parse_filter(filter).unwrap();
        let err = translate_filter(&mapping, &ast, &HashMap::new()).unwrap_err();
        assert!(
            matches!(&err, ScimError::InvalidFilter(m) if m.contains("NUL")),
            "{filter}: {err:?}"
        );
    }
}

/// entryUUID refuses other syntaxes, so `(!(entryUUID=*))` would be Undefined and match nothing.
#[test]
fn ids_that_cannot_be_ids_match_nothing_and_their_negation_everything() {
    assert_eq!(tr(r#"id eq "*""#), "(!(objectClass=*))");
    assert_eq!(tr(r#"id ne "x)(uid=*""#), OC);
    assert_eq!(tr(r#"not (id eq "../")"#), OC);
    let uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    assert_eq!(
        tr(&format!(r#"id eq "{uuid}""#)),
        with_oc(&format!("(entryUUID={uuid})"))
    );
    let ns_unique_id = "0f1e2d3c-4b5a6978-8796a5b4-c3d2e1f0";
    assert_eq!(
        tr(&format!(r#"id ne "{ns_unique_id}""#)),
        with_oc(&format!("(!(entryUUID={ns_unique_id}))"))
    );
}
