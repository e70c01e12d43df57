//! LDAP filter and DN injection, exhaustively: every RFC 4515 special in every filterable
//! attribute of the demo mapping, and every RFC 4514 special (plus `#`, spaces, NUL and
//! multi-byte UTF-8) in every RDN source. The expected answers come from a model evaluated on
//! what the directory really holds, so a widened (or narrowed) result set fails the test.

use crate::gateway::{first, repo_file, url_encode, values, TestGateway};
use crate::slapd::SUFFIX;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// RFC 4515 section 3: the characters a filter value must escape.
const FILTER_SPECIALS: [&str; 5] = ["*", "(", ")", "\\", "\u{0}"];

/// Attributes OpenLDAP's core schema gives no matching rule, so every assertion on them is
/// Undefined and matches nothing: they can be stored and read, not searched.
const NO_MATCHING_RULES: [&str; 1] = ["facsimileTelephoneNumber"];

/// The demo mapping's user attributes that hold strings (every one is filterable), as
/// (SCIM path, LDAP attribute), read from the shipped config so a new mapping line is covered.
fn string_attributes() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_file("config/gateway.toml")).unwrap();
    let config: toml::Value = toml::from_str(&text).unwrap();
    let attributes = config["mapping"]["users"]["attributes"].as_array().unwrap();
    let out: Vec<(String, String)> = attributes
        .iter()
        .filter(|a| a.get("type").and_then(|t| t.as_str()) != Some("reference"))
        .map(|a| {
            (
                a["scim"].as_str().unwrap().to_string(),
                a["ldap"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(out.len() >= 20, "the demo mapping shrank: {out:?}");
    out
}

/// A SCIM filter string literal holding exactly `value` (JSON string escapes).
fn literal(value: &str) -> String {
    serde_json::to_string(value).unwrap()
}

/// The values tried as filter operands: each special alone, leading, trailing and inside, and
/// classic injection payloads built from them.
fn operands() -> Vec<String> {
    let mut out = Vec::new();
    for s in FILTER_SPECIALS {
        out.extend([
            s.to_string(),
            format!("a{s}"),
            format!("{s}b"),
            format!("a{s}b"),
        ]);
    }
    out.extend(
        [
            "*)(uid=*",
            "a)(|(objectClass=*",
            "*))(|(uid=*",
            "\\2a",
            "a\\",
            "\\5c",
            "a\\2ab",
            "a\u{0})(uid=*",
        ]
        .map(String::from),
    );
    out
}

/// Whether a stored value satisfies `op operand` as SCIM defines it for caseExact=false strings.
fn model(op: &str, stored: &str, operand: &str) -> bool {
    let (v, p) = (stored.to_lowercase(), operand.to_lowercase());
    match op {
        "eq" => v == p,
        "co" => v.contains(&p),
        "sw" => v.starts_with(&p),
        "ew" => v.ends_with(&p),
        _ => unreachable!("{op}"),
    }
}

/// Runs `attr op operand` on `collection` and returns the ids found, or None when the gateway
/// refused the filter with 400 invalidFilter (which cannot widen anything either).
async fn search(gw: &TestGateway, collection: &str, filter: &str) -> Option<BTreeSet<String>> {
    let r = gw
        .get(&format!(
            "/{collection}?filter={}&count=200",
            url_encode(filter)
        ))
        .await;
    if r.status.as_u16() == 400 {
        assert_eq!(r.body["scimType"], "invalidFilter", "{filter}: {}", r.body);
        return None;
    }
    let r = r.expect(200);
    Some(r.resource_ids().into_iter().collect())
}

/// Sets the attribute on each user by PATCH; the directory may refuse a value its syntax does
/// not allow (telephoneNumber has no `*`), which must be a 400 that changes nothing.
async fn set_everywhere(gw: &TestGateway, users: &[(String, String)], path: &str) {
    for (id, value) in users {
        let before = gw.entry_by_id(id).await.unwrap();
        let r = gw
            .patch(
                &format!("/Users/{id}"),
                &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations":[{"op":"replace","path":path,"value":value}]}),
            )
            .await;
        match r.status.as_u16() {
            200 | 204 => {}
            400 => {
                let after = gw.entry_by_id(id).await.unwrap();
                assert_eq!(before.attrs, after.attrs, "a refused PATCH of {path} wrote");
            }
            other => panic!("PATCH {path} = {value:?}: {other} {}", r.body),
        }
    }
}

/// The demo gateway without quotas: these tests send thousands of requests.
async fn unthrottled() -> TestGateway {
    TestGateway::start_with(|t| {
        crate::faults::release_gateway::set_key(&t, "[rate_limits]", "enabled", "false")
    })
    .await
}

#[tokio::test]
async fn filter_specials_in_every_filterable_attribute_never_widen() {
    let gw = unthrottled().await;
    // One user per special holding a{s}b, one decoy holding axb that a wildcard would match.
    let mut stored_values: Vec<String> = FILTER_SPECIALS[..4]
        .iter()
        .map(|s| format!("a{s}b"))
        .collect();
    stored_values.push("axb".to_string());
    let mut users = Vec::new();
    for (k, value) in stored_values.iter().enumerate() {
        users.push((gw.create_user(&format!("inj{k}")).await, value.clone()));
    }
    let attributes = string_attributes();
    let mut checked = 0usize;
    let mut refused_filters = 0usize;
    for (path, ldap) in &attributes {
        set_everywhere(&gw, &users, path).await;
        // The ground truth: what the directory holds now for these users.
        let mut holding = Vec::new();
        for (id, _) in &users {
            let e = gw.entry_by_id(id).await.unwrap();
            holding.push((id.clone(), values(&e, ldap)));
        }
        let stored = holding.iter().filter(|(_, v)| !v.is_empty()).count();
        if !matches!(
            ldap.as_str(),
            "telephoneNumber" | "mobile" | "facsimileTelephoneNumber"
        ) {
            assert!(stored >= 4, "{path} ({ldap}) stored only {stored} of 5");
        }
        for operand in operands() {
            for op in ["eq", "co", "sw", "ew"] {
                let filter = format!("{path} {op} {}", literal(&operand));
                let Some(got) = search(&gw, "Users", &filter).await else {
                    // Only NUL, which no LDAP value holds, is refused.
                    assert!(operand.contains('\0'), "{filter} refused");
                    refused_filters += 1;
                    continue;
                };
                let expected: BTreeSet<String> = holding
                    .iter()
                    .filter(|(_, vs)| vs.iter().any(|v| model(op, v, &operand)))
                    .map(|(id, _)| id.clone())
                    .collect();
                // Users outside the five (the seeded ones) never match these operands.
                if NO_MATCHING_RULES.contains(&ldap.as_str()) {
                    assert!(got.is_empty(), "{filter} ({ldap}): {got:?}");
                } else {
                    assert_eq!(got, expected, "{filter} ({ldap})");
                }
                checked += 1;
            }
        }
    }
    // Ids are entryUUIDs: no operand names one, and none may widen into a match.
    for operand in operands() {
        for op in ["eq", "ne"] {
            let filter = format!("id {op} {}", literal(&operand));
            if let Some(got) = search(&gw, "Users", &filter).await {
                let all = search(&gw, "Users", "id pr").await.unwrap();
                let expected = if op == "eq" { BTreeSet::new() } else { all };
                assert_eq!(got, expected, "{filter}");
            }
        }
    }
    eprintln!(
        "{} attributes, {checked} filters compared with the model, {refused_filters} refused as invalid",
        attributes.len()
    );
    let plain = operands().iter().filter(|o| !o.contains('\0')).count();
    assert_eq!(
        checked,
        attributes.len() * plain * 4,
        "every filter without NUL answered"
    );
}

#[tokio::test]
async fn filter_specials_in_group_attributes_never_widen() {
    let gw = unthrottled().await;
    let mut groups = Vec::new();
    let mut names: Vec<String> = FILTER_SPECIALS[..4]
        .iter()
        .map(|s| format!("a{s}b"))
        .collect();
    names.push("axb".to_string());
    for name in &names {
        let r = gw
            .post(
                "/Groups",
                &json!({"displayName": name, "externalId": name, "members": []}),
            )
            .await
            .expect(201);
        groups.push(r.body["id"].as_str().unwrap().to_string());
    }
    let mut checked = 0usize;
    for path in ["displayName", "externalId"] {
        for operand in operands() {
            for op in ["eq", "co", "sw", "ew"] {
                let filter = format!("{path} {op} {}", literal(&operand));
                let Some(got) = search(&gw, "Groups", &filter).await else {
                    assert!(operand.contains('\0'), "{filter} refused");
                    continue;
                };
                let expected: BTreeSet<String> = names
                    .iter()
                    .zip(&groups)
                    .filter(|(name, _)| model(op, name, &operand))
                    .map(|(_, id)| id.clone())
                    .collect();
                assert_eq!(got, expected, "{filter}");
                checked += 1;
            }
        }
    }
    for operand in operands() {
        let filter = format!("members.value eq {}", literal(&operand));
        if let Some(got) = search(&gw, "Groups", &filter).await {
            assert!(got.is_empty(), "{filter}: {got:?}");
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
}

/// RFC 4514 section 2.4's specials, a leading `#` and space, a trailing space, NUL and
/// multi-byte UTF-8, alone and surrounded.
fn rdn_sources() -> Vec<String> {
    let mut out = Vec::new();
    for s in [",", "+", "\"", "\\", "<", ">", ";", "=", "\u{0}"] {
        out.extend([format!("n{s}m"), format!("{s}lead"), format!("trail{s}")]);
    }
    out.extend(
        [
            "#hash",
            "in#side",
            " leading space",
            "trailing space ",
            "  two  ",
            "Zoë Ångström",
            "山田太郎",
            "emoji 😀",
            "x,ou=admins",
            "x,ou=admins,dc=example,dc=org",
            "x+uid=admin",
            "\\2c",
            "\\,",
            "a\u{0}b",
        ]
        .map(String::from),
    );
    out
}

/// The entries directly below `base` as DNs.
async fn children(gw: &TestGateway, base: &str) -> BTreeSet<String> {
    gw.slapd
        .find(base, "(objectClass=*)")
        .await
        .into_iter()
        .map(|e| e.dn)
        .filter(|dn| dn != base)
        .collect()
}

/// Creates (or renames) each source and checks the outcome: a 201/200 whose entry sits directly
/// below `base` with the RDN value equal to the source, or a 400 that wrote nothing.
async fn assert_rdn_confined(gw: &TestGateway, collection: &str, base: &str, rdn_attr: &str) {
    let mut created = 0usize;
    let mut refused = Vec::new();
    let renamed = {
        let body = if collection == "Users" {
            json!({"userName": "to-rename"})
        } else {
            json!({"displayName": "to-rename"})
        };
        let r = gw.post(&format!("/{collection}"), &body).await.expect(201);
        r.body["id"].as_str().unwrap().to_string()
    };
    let name_path = if collection == "Users" {
        "userName"
    } else {
        "displayName"
    };
    for source in rdn_sources() {
        for via in ["create", "rename"] {
            let before_all = children(gw, SUFFIX).await;
            let before = children(gw, base).await;
            let r = if via == "create" {
                gw.post(&format!("/{collection}"), &json!({ name_path: source }))
                    .await
            } else {
                gw.patch(
                    &format!("/{collection}/{renamed}"),
                    &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations":[{"op":"replace","path":name_path,"value":source}]}),
                )
                .await
            };
            let after = children(gw, base).await;
            let after_all = children(gw, SUFFIX).await;
            let outside_before: BTreeSet<_> = before_all.difference(&before).collect();
            let outside_after: BTreeSet<_> = after_all.difference(&after).collect();
            assert_eq!(
                outside_before, outside_after,
                "{via} {source:?} changed entries outside {base}"
            );
            match r.status.as_u16() {
                200 | 201 | 204 => {
                    let id = if via == "create" {
                        r.body["id"].as_str().unwrap().to_string()
                    } else {
                        renamed.clone()
                    };
                    if r.status.as_u16() != 204 {
                        assert_eq!(r.body[name_path], Value::from(source.as_str()));
                    }
                    let read = gw.get(&format!("/{collection}/{id}")).await.expect(200);
                    assert_eq!(read.body[name_path], Value::from(source.as_str()));
                    let e = gw.entry_by_id(&id).await.unwrap();
                    assert_eq!(
                        scim_ldap_gateway::directory::dn::parent(&e.dn).unwrap(),
                        base,
                        "{via} {source:?} landed at {}",
                        e.dn
                    );
                    assert_eq!(first(&e, rdn_attr).as_deref(), Some(source.as_str()));
                    let dn = &e.dn;
                    // The DN is the escaped source: it names exactly this entry.
                    let again = gw.slapd.entry(dn).await.expect("the DN reads back");
                    assert_eq!(first(&again, rdn_attr).as_deref(), Some(source.as_str()));
                    if via == "create" {
                        assert_eq!(after.len(), before.len() + 1, "{source:?}");
                        created += 1;
                        // Free the name for the rename that follows.
                        gw.delete(&format!("/{collection}/{id}")).await.expect(204);
                        assert!(gw.slapd.entry(dn).await.is_none(), "{dn} survived DELETE");
                    } else {
                        assert_eq!(after.len(), before.len(), "{source:?}");
                    }
                }
                400 => {
                    assert_eq!(before, after, "a refused {via} of {source:?} wrote");
                    refused.push(source.clone());
                }
                other => panic!("{via} {source:?}: {other} {}", r.body),
            }
        }
    }
    // Only NUL is refused; everything else is a legal name.
    assert!(
        refused.iter().all(|s| s.contains('\u{0}')),
        "refused legal names: {refused:?}"
    );
    assert!(created >= rdn_sources().len() - 5, "{created}");
}

#[tokio::test]
async fn rdn_specials_in_user_names_stay_below_people() {
    let gw = unthrottled().await;
    assert_rdn_confined(&gw, "Users", &format!("ou=people,{SUFFIX}"), "uid").await;
}

#[tokio::test]
async fn rdn_specials_in_group_names_stay_below_groups() {
    let gw = unthrottled().await;
    assert_rdn_confined(&gw, "Groups", &format!("ou=groups,{SUFFIX}"), "cn").await;
}
