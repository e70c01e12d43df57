//! `/ServiceProviderConfig`, `/Schemas` and `/ResourceTypes`, generated from the mapping so that
//! clients see exactly the attributes that persist.

use crate::mapping::groups::{GroupMapping, MemberValue, CORE_GROUP};
use crate::mapping::{DisableStrategy, Target, UserMapping, ValueKind, CORE_USER, ENTERPRISE_USER};
use serde_json::{json, Map, Value};

const SPC: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

pub fn service_provider_config(
    base_url: &str,
    max_page_size: usize,
    etag: bool,
    max_bulk_operations: usize,
    max_payload_bytes: usize,
) -> Value {
    json!({
        "schemas": [SPC],
        "documentationUri": "https://www.rfc-editor.org/rfc/rfc7644",
        "patch": {"supported": true},
        "bulk": {"supported": true, "maxOperations": max_bulk_operations, "maxPayloadSize": max_payload_bytes},
        "filter": {"supported": true, "maxResults": max_page_size},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": etag},
        "pagination": {"cursor": false, "index": true, "defaultPaginationMethod": "index", "maxPageSize": max_page_size},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token configured on the gateway",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base_url}/ServiceProviderConfig")}
    })
}

pub fn resource_types(mapping: &UserMapping, groups: bool, base_url: &str) -> Vec<Value> {
    let extensions: Vec<Value> = mapping
        .schemas()
        .into_iter()
        .filter(|s| *s != CORE_USER)
        .map(|s| json!({"schema": s, "required": false}))
        .collect();
    let mut out = vec![json!({
        "schemas": [RESOURCE_TYPE],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "User accounts in the directory",
        "schema": CORE_USER,
        "schemaExtensions": extensions,
        "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/User")}
    })];
    if groups {
        out.push(json!({
            "schemas": [RESOURCE_TYPE],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Groups in the directory",
            "schema": CORE_GROUP,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/Group")}
        }));
    }
    out
}

fn attribute(
    name: &str,
    kind: &str,
    multi: bool,
    required: bool,
    unique: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), Value::from(name));
    m.insert("type".into(), Value::from(kind));
    m.insert("multiValued".into(), Value::Bool(multi));
    m.insert("description".into(), Value::from(name.to_string()));
    m.insert("required".into(), Value::Bool(required));
    if kind == "string" || kind == "reference" {
        m.insert("caseExact".into(), Value::Bool(false));
    }
    m.insert("mutability".into(), Value::from("readWrite"));
    m.insert("returned".into(), Value::from("default"));
    m.insert("uniqueness".into(), Value::from(unique));
    m
}

/// The schemas for users, listing only mapped attributes.
pub fn schemas(mapping: &UserMapping, groups: Option<&GroupMapping>, base_url: &str) -> Vec<Value> {
    let mut out: Vec<Value> = mapping
        .schemas()
        .into_iter()
        .map(|urn| {
            let mut attrs: Vec<Map<String, Value>> = Vec::new();
            if urn == CORE_USER && mapping.disable != DisableStrategy::None {
                attrs.push(attribute("active", "boolean", false, false, "none"));
            }
            for slot in mapping
                .slots
                .iter()
                .filter(|s| s.schema.eq_ignore_ascii_case(urn))
            {
                let name = slot.target.attr();
                let existing = attrs.iter().position(|a| {
                    a.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                });
                match &slot.target {
                    Target::Simple { attr } => {
                        let is_user_name =
                            urn == CORE_USER && attr.eq_ignore_ascii_case("userName");
                        let mut a = if slot.kind == ValueKind::Reference {
                            let mut a = attribute(attr, "complex", false, false, "none");
                            let mut v = attribute("value", "string", false, false, "none");
                            v.insert(
                                "description".into(),
                                Value::from("The id of the referenced user"),
                            );
                            a.insert("subAttributes".into(), Value::Array(vec![Value::Object(v)]));
                            a
                        } else {
                            attribute(
                                attr,
                                "string",
                                false,
                                is_user_name,
                                if is_user_name { "server" } else { "none" },
                            )
                        };
                        a.insert(
                            "description".into(),
                            Value::from(format!("Stored in LDAP attribute {}", slot.ldap)),
                        );
                        attrs.push(a);
                    }
                    Target::Sub { attr, sub } | Target::Typed { attr, sub, .. } => {
                        let multi = matches!(slot.target, Target::Typed { .. });
                        let idx = existing.unwrap_or_else(|| {
                            let mut a = attribute(attr, "complex", multi, false, "none");
                            a.insert("subAttributes".into(), Value::Array(vec![]));
                            if multi {
                                let mut t = attribute("type", "string", false, false, "none");
                                t.insert("canonicalValues".into(), Value::Array(vec![]));
                                t.insert(
                                    "description".into(),
                                    Value::from("Element type; only the listed values are stored"),
                                );
                                let mut p = attribute("primary", "boolean", false, false, "none");
                                p.insert(
                                    "description".into(),
                                    Value::from("Returned for the configured primary type"),
                                );
                                a.insert(
                                    "subAttributes".into(),
                                    Value::Array(vec![Value::Object(t), Value::Object(p)]),
                                );
                            }
                            attrs.push(a);
                            attrs.len() - 1
                        });
                        let Some(Value::Array(subs)) = attrs[idx].get_mut("subAttributes") else {
                            continue;
                        };
                        if let Target::Typed { type_value, .. } = &slot.target {
                            if let Some(Value::Array(canon)) =
                                subs.first_mut().and_then(|t| t.get_mut("canonicalValues"))
                            {
                                if !canon.iter().any(|c| c.as_str() == Some(type_value)) {
                                    canon.push(Value::from(type_value.clone()));
                                }
                            }
                        }
                        if !subs
                            .iter()
                            .any(|s| s.get("name").and_then(Value::as_str) == Some(sub.as_str()))
                        {
                            let mut s = attribute(sub, "string", false, false, "none");
                            s.insert(
                                "description".into(),
                                Value::from(format!("Stored in LDAP attribute {}", slot.ldap)),
                            );
                            subs.push(Value::Object(s));
                        }
                    }
                }
            }
            let name = if urn == CORE_USER {
                "User"
            } else if urn == ENTERPRISE_USER {
                "EnterpriseUser"
            } else {
                urn.rsplit(':').next().unwrap_or(urn)
            };
            json!({
                "schemas": [SCHEMA],
                "id": urn,
                "name": name,
                "description": format!("{name} attributes this gateway stores in the directory"),
                "attributes": attrs.into_iter().map(Value::Object).collect::<Vec<_>>(),
                "meta": {"resourceType": "Schema", "location": format!("{base_url}/Schemas/{urn}")}
            })
        })
        .collect();
    if let Some(g) = groups {
        if let Some(Value::Array(attrs)) =
            out.first_mut().and_then(|core| core.get_mut("attributes"))
        {
            let mut a = attribute("groups", "complex", true, false, "none");
            a.insert("mutability".into(), Value::from("readOnly"));
            a.insert(
                "description".into(),
                Value::from("Groups the user is a direct member of"),
            );
            a.insert("subAttributes".into(), json!([
                {"name": "value", "type": "string", "multiValued": false, "required": false, "caseExact": false, "mutability": "readOnly", "returned": "default", "uniqueness": "none", "description": "The group's id"},
                {"name": "display", "type": "string", "multiValued": false, "required": false, "caseExact": false, "mutability": "readOnly", "returned": "default", "uniqueness": "none", "description": "The group's displayName"},
                {"name": "$ref", "type": "reference", "referenceTypes": ["Group"], "multiValued": false, "required": false, "caseExact": false, "mutability": "readOnly", "returned": "default", "uniqueness": "none", "description": "The group's URI"}
            ]));
            attrs.push(Value::Object(a));
        }
        out.push(group_schema(g, base_url));
    }
    out
}

fn group_schema(g: &GroupMapping, base_url: &str) -> Value {
    let mut attrs = vec![json!({
        "name": "displayName", "type": "string", "multiValued": false, "required": true, "caseExact": false,
        "mutability": "readWrite", "returned": "default", "uniqueness": "server",
        "description": format!("Stored in LDAP attribute {}", g.name_attribute)
    })];
    if let Some(ext) = &g.external_id_attribute {
        attrs.push(json!({
            "name": "externalId", "type": "string", "multiValued": false, "required": false, "caseExact": true,
            "mutability": "readWrite", "returned": "default", "uniqueness": "none",
            "description": format!("Stored in LDAP attribute {ext}")
        }));
    }
    let member_types = match g.member_value {
        MemberValue::Dn => json!(["User", "Group"]),
        MemberValue::UserName => json!(["User"]),
    };
    attrs.push(json!({
        "name": "members", "type": "complex", "multiValued": true, "required": false,
        "mutability": "readWrite", "returned": "default", "uniqueness": "none",
        "description": format!("Stored in LDAP attribute {}", g.member_attribute),
        "subAttributes": [
            {"name": "value", "type": "string", "multiValued": false, "required": false, "caseExact": false, "mutability": "immutable", "returned": "default", "uniqueness": "none", "description": "The member's id"},
            {"name": "$ref", "type": "reference", "referenceTypes": member_types.clone(), "multiValued": false, "required": false, "caseExact": false, "mutability": "immutable", "returned": "default", "uniqueness": "none", "description": "The member's URI"},
            {"name": "type", "type": "string", "canonicalValues": member_types, "multiValued": false, "required": false, "caseExact": false, "mutability": "immutable", "returned": "default", "uniqueness": "none", "description": "User or Group"}
        ]
    }));
    json!({
        "schemas": [SCHEMA],
        "id": CORE_GROUP,
        "name": "Group",
        "description": "Group attributes this gateway stores in the directory",
        "attributes": attrs,
        "meta": {"resourceType": "Schema", "location": format!("{base_url}/Schemas/{CORE_GROUP}")}
    })
}
