//! `POST /Bulk` (RFC 7644 §3.7): operations on users and groups in dependency order, `bulkId`
//! cross-references, `failOnErrors`, and the advertised limits.

use super::error::classify;
use super::AppState;
use crate::directory::{EntryReader, EntryWriter};
use crate::scim::{IfMatch, ScimError, ERROR};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// One operation of a BulkRequest, validated.
#[derive(Debug, Clone)]
struct Operation {
    method: String,
    path: String,
    bulk_id: Option<String>,
    version: Option<String>,
    data: Option<Value>,
}

fn parse(
    body: &Value,
    max_operations: usize,
) -> Result<(Vec<Operation>, Option<usize>), ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::InvalidSyntax("a BulkRequest must be a JSON object".into()))?;
    let get = |k: &str| crate::mapping::resource::get_ci(obj, k);
    let schemas_ok = get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(BULK_REQUEST)));
    if !schemas_ok {
        return Err(ScimError::InvalidSyntax(format!(
            "schemas must contain {BULK_REQUEST}"
        )));
    }
    let fail_on_errors = match get("failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            ScimError::InvalidValue("failOnErrors must be a positive integer".into())
        })? as usize),
    };
    let ops = get("Operations").and_then(Value::as_array).ok_or_else(|| {
        ScimError::InvalidSyntax("a BulkRequest needs an Operations array".into())
    })?;
    if ops.len() > max_operations {
        return Err(ScimError::PayloadTooLarge(format!(
            "{} operations exceed maxOperations ({max_operations})",
            ops.len()
        )));
    }
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let o = op.as_object().ok_or_else(|| {
            ScimError::InvalidSyntax(format!("Operations[{i}] must be an object"))
        })?;
        let text = |k: &str| {
            crate::mapping::resource::get_ci(o, k)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let method = text("method")
            .map(|m| m.to_ascii_uppercase())
            .filter(|m| ["POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()))
            .ok_or_else(|| {
                ScimError::InvalidSyntax(format!(
                    "Operations[{i}].method must be POST, PUT, PATCH or DELETE"
                ))
            })?;
        let path = text("path")
            .ok_or_else(|| ScimError::InvalidSyntax(format!("Operations[{i}] needs a path")))?;
        let bulk_id = text("bulkId");
        if method == "POST" && bulk_id.is_none() {
            return Err(ScimError::InvalidSyntax(format!(
                "Operations[{i}]: POST needs a bulkId"
            )));
        }
        out.push(Operation {
            method,
            path,
            bulk_id,
            version: text("version"),
            data: crate::mapping::resource::get_ci(o, "data").cloned(),
        });
    }
    Ok((out, fail_on_errors))
}

/// `bulkId:X` references in a value.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:") {
                out.push(id.to_string());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        Value::Object(o) => o.values().for_each(|x| references(x, out)),
        _ => {}
    }
}

fn substitute(v: &mut Value, ids: &HashMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:").and_then(|b| ids.get(b)) {
                *s = id.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, ids)),
        Value::Object(o) => o.values_mut().for_each(|x| substitute(x, ids)),
        _ => {}
    }
}

/// The result of one operation: its status and, on success, the resource it returned.
type Outcome = Result<(u16, Option<Value>), ScimError>;

async fn run<D: EntryReader + EntryWriter + 'static>(
    state: &AppState<D>,
    base: &str,
    op: &Operation,
) -> Outcome {
    let mut segments = op.path.trim_start_matches('/').splitn(2, '/');
    let endpoint = segments.next().unwrap_or_default();
    let id = segments
        .next()
        .filter(|s| !s.is_empty() && !s.contains('/'));
    let if_match = op.version.as_deref().map(IfMatch::parse);
    let data = || {
        op.data.clone().ok_or_else(|| {
            ScimError::InvalidSyntax(format!("{} {} needs data", op.method, op.path))
        })
    };
    let groups = || {
        state
            .groups
            .as_ref()
            .ok_or_else(|| ScimError::NotFound("groups are not configured on this gateway".into()))
    };
    match (endpoint, op.method.as_str(), id) {
        ("Users", "POST", None) => Ok((201, Some(state.users.create(&data()?, base).await?))),
        ("Users", "PUT", Some(id)) => Ok((
            200,
            Some(
                state
                    .users
                    .replace_if(id, &data()?, base, if_match.as_ref())
                    .await?,
            ),
        )),
        ("Users", "PATCH", Some(id)) => Ok((
            200,
            Some(
                state
                    .users
                    .patch_if(id, &data()?, base, if_match.as_ref())
                    .await?,
            ),
        )),
        ("Users", "DELETE", Some(id)) => state
            .users
            .delete_if(id, if_match.as_ref())
            .await
            .map(|_| (204, None)),
        ("Groups", "POST", None) => Ok((201, Some(groups()?.create(&data()?, base).await?))),
        ("Groups", "PUT", Some(id)) => Ok((
            200,
            Some(
                groups()?
                    .replace_if(id, &data()?, base, if_match.as_ref())
                    .await?,
            ),
        )),
        ("Groups", "PATCH", Some(id)) => groups()?
            .patch_if(id, &data()?, if_match.as_ref())
            .await
            .map(|_| (204, None)),
        ("Groups", "DELETE", Some(id)) => groups()?
            .delete_if(id, if_match.as_ref())
            .await
            .map(|_| (204, None)),
        _ => Err(ScimError::InvalidPath(format!(
            "{} {} is not a bulk operation this gateway runs",
            op.method, op.path
        ))),
    }
}

fn error_response(e: &ScimError) -> (u16, Value) {
    let (status, scim_type, detail) = classify(e);
    let mut body =
        json!({"schemas": [ERROR], "status": status.as_u16().to_string(), "detail": detail});
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    (status.as_u16(), body)
}

/// Run a BulkRequest. Operations run one at a time, each as soon as the bulkIds it references
/// are known; a cycle or an unknown bulkId fails the operations caught in it.
pub async fn bulk<D: EntryReader + EntryWriter + 'static>(
    state: &AppState<D>,
    base: &str,
    body: &Value,
    max_operations: usize,
) -> Result<Value, ScimError> {
    let (ops, fail_on_errors) = parse(body, max_operations)?;
    let defined: Vec<&str> = ops.iter().filter_map(|o| o.bulk_id.as_deref()).collect();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut results: Vec<Option<Map<String, Value>>> = vec![None; ops.len()];
    let mut errors = 0;
    let mut pending: Vec<usize> = (0..ops.len()).collect();
    while !pending.is_empty() {
        if fail_on_errors.is_some_and(|n| errors >= n) {
            break;
        }
        let refs = |i: usize| {
            let mut r = Vec::new();
            if let Some(d) = &ops[i].data {
                references(d, &mut r);
            }
            r.extend(
                ops[i]
                    .path
                    .split('/')
                    .filter_map(|seg| seg.strip_prefix("bulkId:"))
                    .map(str::to_string),
            );
            r
        };
        // The first pending operation whose references are all resolved, or that names an
        // unknown bulkId (it fails), else the first one caught in a cycle (it fails).
        let ready = pending.iter().position(|&i| {
            refs(i)
                .iter()
                .all(|b| ids.contains_key(b) || !defined.contains(&b.as_str()))
        });
        let (pos, blocked) = match ready {
            Some(p) => (p, None),
            None => (0, Some("its bulkId references form a cycle")),
        };
        let i = pending.remove(pos);
        let op = &ops[i];
        let unknown: Vec<String> = refs(i)
            .into_iter()
            .filter(|b| !defined.contains(&b.as_str()))
            .collect();
        let mut location_path = op.path.clone();
        let outcome: Outcome = if let Some(why) = blocked {
            Err(ScimError::InvalidValue(format!(
                "operation {} {}: {why}",
                op.method, op.path
            )))
        } else if !unknown.is_empty() {
            Err(ScimError::InvalidValue(format!(
                "bulkId {} is not defined in this request",
                unknown.join(", ")
            )))
        } else {
            let mut resolved = op.clone();
            if let Some(d) = &mut resolved.data {
                substitute(d, &ids);
            }
            // `/Users/bulkId:u1` names the resource an earlier operation created.
            resolved.path = resolved
                .path
                .split('/')
                .map(
                    |seg| match seg.strip_prefix("bulkId:").and_then(|b| ids.get(b)) {
                        Some(id) => id.as_str(),
                        None => seg,
                    },
                )
                .collect::<Vec<_>>()
                .join("/");
            location_path = resolved.path.clone();
            run(state, base, &resolved).await
        };
        let mut entry = Map::new();
        entry.insert("method".into(), json!(op.method));
        if let Some(b) = &op.bulk_id {
            entry.insert("bulkId".into(), json!(b));
        }
        match outcome {
            Ok((status, resource)) => {
                if let Some(r) = &resource {
                    if let (Some(b), Some(id)) = (&op.bulk_id, r["id"].as_str()) {
                        ids.insert(b.clone(), id.to_string());
                    }
                    if let Some(loc) = r["meta"]["location"].as_str() {
                        entry.insert("location".into(), json!(loc));
                    }
                    if let Some(v) = r["meta"]["version"].as_str() {
                        entry.insert("version".into(), json!(v));
                    }
                } else if op.method != "POST" {
                    entry.insert("location".into(), json!(format!("{base}{location_path}")));
                }
                entry.insert("status".into(), json!(status.to_string()));
            }
            Err(e) => {
                errors += 1;
                let (status, body) = error_response(&e);
                entry.insert("status".into(), json!(status.to_string()));
                entry.insert("response".into(), body);
            }
        }
        results[i] = Some(entry);
    }
    let operations: Vec<Value> = results.into_iter().flatten().map(Value::Object).collect();
    Ok(json!({"schemas": [BULK_RESPONSE], "Operations": operations}))
}
