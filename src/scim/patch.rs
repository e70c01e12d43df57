//! RFC 7644 §3.5.2 PATCH, applied to a resource's JSON document.
//!
//! The engine is schema-agnostic: it edits the JSON the way the RFC describes
//! (plus the client quirks in SCIM-CLIENTS.md) and the mapping then reads the
//! result back, refusing anything it cannot store. That keeps the whole PATCH
//! one read, one in-memory edit and one LDAP modify, so it is atomic.

use super::filter::{parse_path, AttrPath, CompValue, CompareOp, Filter, PatchPath};
use super::ScimError;
use crate::mapping::resource::get_ci;
use serde_json::{Map, Value};

/// Upper bound on operations per request; a client needing more is misbehaving.
/// Default of `[scim] max_patch_operations`.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// Schema facts the engine needs: which URNs are schemas, and where an un-prefixed attribute lives.
pub trait SchemaLookup {
    /// The canonical URN when `key` names a schema this resource has (core or extension).
    fn schema_urn(&self, key: &str) -> Option<String>;
    /// The schema of an attribute written without URN, or with the given one.
    fn schema_of(&self, urn: Option<&str>, attr: &str) -> Option<String>;
    /// The core schema URN, whose attributes sit at the top level of the document.
    fn core(&self) -> &str;
}

/// Parse a PatchOp request body: `{"schemas":[...PatchOp], "Operations":[...]}`.
pub fn parse_request(body: &Value) -> Result<Vec<PatchOperation>, ScimError> {
    parse_request_limited(body, MAX_OPERATIONS)
}

/// `parse_request` with at most `max` operations (`[scim] max_patch_operations`); more is 400 tooMany.
pub fn parse_request_limited(body: &Value, max: usize) -> Result<Vec<PatchOperation>, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::InvalidSyntax("a PATCH body must be a JSON object".into()))?;
    if let Some(schemas) = get_ci(obj, "schemas") {
        let ok = schemas.as_array().is_some_and(|a| {
            a.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(super::PATCH_OP))
            })
        });
        if !ok {
            return Err(ScimError::InvalidSyntax(format!(
                "schemas must contain {}",
                super::PATCH_OP
            )));
        }
    }
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::InvalidSyntax("a PATCH body needs an Operations array".into()))?;
    if ops.is_empty() {
        return Err(ScimError::InvalidSyntax("Operations is empty".into()));
    }
    if ops.len() > max {
        return Err(ScimError::TooMany(format!(
            "{} operations; at most {max} are accepted per PATCH ([scim] max_patch_operations)",
            ops.len()
        )));
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            let o = op.as_object().ok_or_else(|| {
                ScimError::InvalidSyntax(format!("Operations[{i}] must be an object"))
            })?;
            let kind = match get_ci(o, "op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("add") => OpKind::Add,
                Some("replace") => OpKind::Replace,
                Some("remove") => OpKind::Remove,
                other => {
                    return Err(ScimError::InvalidSyntax(format!(
                        "Operations[{i}].op {other:?} must be add, replace or remove"
                    )))
                }
            };
            let path = match get_ci(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.trim().is_empty() => None,
                Some(Value::String(p)) => Some(parse_path(p).map_err(|e| {
                    ScimError::InvalidPath(format!("Operations[{i}].path {p:?}: {e}"))
                })?),
                Some(_) => {
                    return Err(ScimError::InvalidPath(format!(
                        "Operations[{i}].path must be a string"
                    )))
                }
            };
            let value = get_ci(o, "value").cloned();
            if kind != OpKind::Remove && value.is_none() {
                return Err(ScimError::InvalidSyntax(format!(
                    "Operations[{i}] ({kind:?}) needs a value"
                )));
            }
            if kind == OpKind::Remove && path.is_none() {
                return Err(ScimError::NoTarget(format!(
                    "Operations[{i}]: remove needs a path"
                )));
            }
            Ok(PatchOperation {
                op: kind,
                path,
                value,
            })
        })
        .collect()
}

/// Apply all operations to `doc` in order. Any error leaves the caller free to discard `doc`.
pub fn apply(
    doc: &mut Value,
    ops: &[PatchOperation],
    schema: &dyn SchemaLookup,
) -> Result<(), ScimError> {
    for op in ops {
        match &op.path {
            Some(path) => apply_path(doc, op.op, path, op.value.as_ref(), schema)?,
            None => apply_pathless(doc, op.op, op.value.as_ref(), schema)?,
        }
    }
    Ok(())
}

/// `{"op":"replace","value":{"displayName":"X","name.givenName":"Y","urn:...:User:department":"Z"}}`
fn apply_pathless(
    doc: &mut Value,
    op: OpKind,
    value: Option<&Value>,
    schema: &dyn SchemaLookup,
) -> Result<(), ScimError> {
    let Some(Value::Object(values)) = value else {
        return Err(ScimError::InvalidValue(
            "an operation without path needs an object value".into(),
        ));
    };
    for (key, v) in values {
        if is_read_only(key) {
            continue; // Okta sends the id alongside a rename; read-only attributes are ignored
        }
        if let Some(urn) = schema.schema_urn(key) {
            let Value::Object(inner) = v else {
                return Err(ScimError::InvalidValue(format!("{key} must be an object")));
            };
            for (k, v2) in inner {
                let mut path =
                    parse_path(k).map_err(|e| ScimError::InvalidPath(format!("{k:?}: {e}")))?;
                if path.attr.urn.is_none() {
                    path.attr.urn = Some(urn.clone());
                }
                apply_path(doc, op, &path, Some(v2), schema)?;
            }
            continue;
        }
        let path = parse_path(key).map_err(|e| ScimError::InvalidPath(format!("{key:?}: {e}")))?;
        apply_path(doc, op, &path, Some(v), schema)?;
    }
    Ok(())
}

fn is_read_only(key: &str) -> bool {
    ["id", "meta", "schemas"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(key))
}

/// The object holding an attribute: the document for core attributes, or the extension's object.
fn container<'a>(
    doc: &'a mut Value,
    attr: &AttrPath,
    schema: &dyn SchemaLookup,
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>, ScimError> {
    let Value::Object(root) = doc else {
        return Err(ScimError::InvalidSyntax("resource is not an object".into()));
    };
    let urn = schema
        .schema_of(attr.urn.as_deref(), &attr.name)
        .or_else(|| attr.urn.clone())
        .unwrap_or_else(|| schema.core().to_string());
    if urn.eq_ignore_ascii_case(schema.core()) {
        return Ok(Some(root));
    }
    let key = match root.keys().find(|k| k.eq_ignore_ascii_case(&urn)) {
        Some(k) => k.clone(),
        None if create => {
            root.insert(urn.clone(), Value::Object(Map::new()));
            urn
        }
        None => return Ok(None),
    };
    match root.get_mut(&key) {
        Some(Value::Object(m)) => Ok(Some(m)),
        _ => Err(ScimError::InvalidValue(format!("{key} must be an object"))),
    }
}

fn key_of(map: &Map<String, Value>, name: &str) -> String {
    map.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

fn apply_path(
    doc: &mut Value,
    op: OpKind,
    path: &PatchPath,
    value: Option<&Value>,
    schema: &dyn SchemaLookup,
) -> Result<(), ScimError> {
    if path.attr.urn.is_none() && is_read_only(&path.attr.name) {
        return Err(ScimError::Mutability(format!(
            "{} is read-only",
            path.attr.name
        )));
    }
    let Some(map) = container(doc, &path.attr, schema, op != OpKind::Remove)? else {
        return Ok(()); // removing from an extension the resource does not have
    };
    let key = key_of(map, &path.attr.name);
    match (&path.filter, &path.attr.sub) {
        (None, None) => plain(map, &key, op, value),
        (None, Some(sub)) => {
            match op {
                OpKind::Remove => {
                    if let Some(Value::Object(inner)) = map.get_mut(&key) {
                        let k = key_of(inner, sub);
                        inner.remove(&k);
                    }
                }
                _ => {
                    let v = value.cloned().unwrap_or(Value::Null);
                    match map.entry(key.clone()).or_insert_with(|| Value::Object(Map::new())) {
                        Value::Object(inner) => {
                            let k = key_of(inner, sub);
                            inner.insert(k, v);
                        }
                        Value::Null => {
                            let mut inner = Map::new();
                            inner.insert(sub.clone(), v);
                            map.insert(key, Value::Object(inner));
                        }
                        _ => {
                            return Err(ScimError::InvalidPath(format!(
                                "{} is multi-valued; select elements with a filter such as {}[type eq \"work\"].{sub}",
                                path.attr.name, path.attr.name
                            )))
                        }
                    }
                }
            }
            Ok(())
        }
        (Some(filter), _) => filtered(map, &key, filter, path.sub.as_deref(), op, value),
    }
}

/// An operation on a whole attribute: `emails`, `displayName`, `name`, `manager`.
fn plain(
    map: &mut Map<String, Value>,
    key: &str,
    op: OpKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    match op {
        OpKind::Remove => {
            // Entra: remove with a value list removes only the listed elements.
            match (map.get_mut(key), value) {
                (Some(Value::Array(existing)), Some(Value::Array(listed)))
                    if !listed.is_empty() =>
                {
                    existing.retain(|e| !listed.iter().any(|l| same_element(e, l)));
                }
                _ => {
                    map.remove(key);
                }
            }
        }
        OpKind::Add | OpKind::Replace => {
            let v = value.cloned().unwrap_or(Value::Null);
            match (map.get_mut(key), v) {
                (Some(Value::Array(existing)), Value::Array(new)) if op == OpKind::Add => {
                    for el in new {
                        if !existing.iter().any(|e| same_element(e, &el)) {
                            existing.push(el);
                        }
                    }
                }
                (Some(Value::Array(existing)), Value::Object(new)) if op == OpKind::Add => {
                    let el = Value::Object(new);
                    if !existing.iter().any(|e| same_element(e, &el)) {
                        existing.push(el);
                    }
                }
                // Complex single-valued: the given sub-attributes replace, the others stay (RFC 7644 §3.5.2.3).
                (Some(Value::Object(existing)), Value::Object(new)) => {
                    for (k, v) in new {
                        let k2 = key_of(existing, &k);
                        existing.insert(k2, v);
                    }
                }
                (_, v) => {
                    map.insert(key.to_string(), v);
                }
            }
        }
    }
    Ok(())
}

/// Elements are the same when their `value` sub-attributes are equal, or when they are equal as a whole.
fn same_element(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => match (get_ci(x, "value"), get_ci(y, "value")) {
            (Some(v), Some(w)) => v == w,
            _ => a == b,
        },
        _ => a == b,
    }
}

/// An operation on the elements selected by a value filter: `emails[type eq "work"].value`.
fn filtered(
    map: &mut Map<String, Value>,
    key: &str,
    filter: &Filter,
    sub: Option<&str>,
    op: OpKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    // A single-valued complex attribute (manager) is treated as a list of one.
    let single = matches!(map.get(key), Some(Value::Object(_)));
    let mut elements: Vec<Value> = match map.remove(key) {
        Some(Value::Array(a)) => a,
        Some(v @ Value::Object(_)) => vec![v],
        Some(Value::Null) | None => vec![],
        Some(other) => {
            map.insert(key.to_string(), other);
            return Err(ScimError::InvalidPath(format!(
                "{key} has no elements to filter"
            )));
        }
    };
    let matched: Vec<usize> = (0..elements.len())
        .filter(|&i| matches(filter, &elements[i]))
        .collect();
    match op {
        OpKind::Remove => {
            if let Some(sub) = sub {
                for &i in &matched {
                    if let Value::Object(e) = &mut elements[i] {
                        let k = key_of(e, sub);
                        e.remove(&k);
                    }
                }
                elements.retain(|e| !is_bare(e));
            } else {
                let mut i = 0;
                elements.retain(|_| {
                    let keep = !matched.contains(&i);
                    i += 1;
                    keep
                });
            }
        }
        OpKind::Add | OpKind::Replace => {
            let v = value.cloned().unwrap_or(Value::Null);
            if matched.is_empty() {
                // Entra: an add or replace on a filtered path that matches nothing creates the value.
                let mut el = seed_from_filter(filter).ok_or_else(|| {
                    ScimError::NoTarget(format!(
                        "{key}[...] matches no element and its filter does not describe a new one"
                    ))
                })?;
                set_in_element(&mut el, sub, v)?;
                elements.push(Value::Object(el));
            } else {
                for &i in &matched {
                    if let Value::Object(e) = &mut elements[i] {
                        set_in_element(e, sub, v.clone())?;
                    }
                }
            }
        }
    }
    if single && elements.len() <= 1 {
        if let Some(e) = elements.pop() {
            map.insert(key.to_string(), e);
        }
    } else if !elements.is_empty() {
        map.insert(key.to_string(), Value::Array(elements));
    }
    Ok(())
}

fn set_in_element(
    el: &mut Map<String, Value>,
    sub: Option<&str>,
    v: Value,
) -> Result<(), ScimError> {
    match (sub, v) {
        (Some(sub), v) => {
            let k = key_of(el, sub);
            el.insert(k, v);
        }
        (None, Value::Object(fields)) => {
            for (k, v) in fields {
                let k2 = key_of(el, &k);
                el.insert(k2, v);
            }
        }
        (None, other) => {
            return Err(ScimError::InvalidValue(format!(
                "a filtered path without sub-attribute needs an object value, got {other}"
            )))
        }
    }
    Ok(())
}

/// An element left with only `type`/`primary`/`display` carries no value any more.
fn is_bare(e: &Value) -> bool {
    match e {
        Value::Object(o) => o.keys().all(|k| {
            ["type", "primary", "display"]
                .iter()
                .any(|x| x.eq_ignore_ascii_case(k))
        }),
        _ => false,
    }
}

/// The element a filter such as `type eq "work"` (or `type eq "work" and primary eq true`) describes.
fn seed_from_filter(f: &Filter) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    fn walk(f: &Filter, out: &mut Map<String, Value>) -> bool {
        match f {
            Filter::And(a, b) => walk(a, out) && walk(b, out),
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } if path.sub.is_none() => {
                let v = match value {
                    CompValue::Str(s) => Value::from(s.clone()),
                    CompValue::Bool(b) => Value::Bool(*b),
                    CompValue::Number(n) => Value::Number(n.clone()),
                    CompValue::Null => return false,
                };
                out.insert(path.name.clone(), v);
                true
            }
            _ => false,
        }
    }
    walk(f, &mut out).then_some(out)
}

/// Evaluate a value filter against one element. Strings compare case-insensitively.
pub fn matches(f: &Filter, el: &Value) -> bool {
    match f {
        Filter::And(a, b) => matches(a, el) && matches(b, el),
        Filter::Or(a, b) => matches(a, el) || matches(b, el),
        Filter::Not(a) => !matches(a, el),
        Filter::ValuePath { .. } => false,
        Filter::Present(p) => {
            element_value(el, p).is_some_and(|v| !crate::mapping::resource::is_empty_value(v))
        }
        Filter::Compare { path, op, value } => {
            let Some(actual) = element_value(el, path) else {
                return *op == CompareOp::Ne;
            };
            compare_json(actual, *op, value)
        }
    }
}

fn element_value<'a>(el: &'a Value, p: &AttrPath) -> Option<&'a Value> {
    let Value::Object(o) = el else {
        // A plain string element (a simple multi-valued attribute) is its own `value`.
        return p.name.eq_ignore_ascii_case("value").then_some(el);
    };
    let v = get_ci(o, &p.name)?;
    match (&p.sub, v) {
        (Some(s), Value::Object(inner)) => get_ci(inner, s),
        (Some(_), _) => None,
        (None, v) => Some(v),
    }
}

fn compare_json(actual: &Value, op: CompareOp, want: &CompValue) -> bool {
    match (actual, want) {
        (Value::String(a), CompValue::Str(w)) => op.holds_ignoring_case(a, w),
        (Value::Bool(a), CompValue::Bool(w)) => match op {
            CompareOp::Eq => a == w,
            CompareOp::Ne => a != w,
            _ => false,
        },
        (Value::String(a), CompValue::Bool(w)) => match op {
            // Entra's "True"/"False" strings
            CompareOp::Eq => a.eq_ignore_ascii_case(&w.to_string()),
            CompareOp::Ne => !a.eq_ignore_ascii_case(&w.to_string()),
            _ => false,
        },
        (Value::Number(a), CompValue::Number(w)) => match (a.as_f64(), w.as_f64()) {
            (Some(a), Some(w)) => match op {
                CompareOp::Eq => a == w,
                CompareOp::Ne => a != w,
                CompareOp::Gt => a > w,
                CompareOp::Ge => a >= w,
                CompareOp::Lt => a < w,
                CompareOp::Le => a <= w,
                _ => false,
            },
            _ => false,
        },
        (_, CompValue::Null) => matches!(op, CompareOp::Eq) && actual.is_null(),
        _ => op == CompareOp::Ne,
    }
}

#[cfg(test)]
mod tests;
