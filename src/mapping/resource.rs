//! Converting between SCIM JSON, the mapped values of a user, and LDAP attributes.
//!
//! `UserValues` holds one list of strings per slot plus `active`. Reference
//! slots hold SCIM ids here; the service turns DNs into ids on read and ids into
//! DNs on write, because that needs the directory.

use super::node::{Node, Obj};
use super::{Slot, Target, UserMapping, ValueKind, CORE_USER};
use crate::directory::{Entry, Modification};
use crate::scim::ScimError;
use serde_json::{Map, Value};

/// The mapped values of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserValues {
    /// One list per slot, in slot order.
    pub slots: Vec<Vec<String>>,
    /// `None` when the client did not say (POST defaults to active; PATCH keeps the old state).
    pub active: Option<bool>,
    /// A new password (write-only: never read from the directory, never rendered).
    pub password: Option<crate::config::Secret>,
}

/// Server-side facts rendered into `id` and `meta`.
#[derive(Debug, Clone)]
pub struct UserMeta {
    pub id: String,
    pub created: Option<String>,
    pub last_modified: Option<String>,
    pub location: String,
    /// The entity tag of this version (`W/"<entryCSN>"`), when the directory has a version attribute.
    pub version: Option<String>,
}

/// Look up a key case-insensitively, as SCIM attribute names are case-insensitive.
pub fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Null, "", [] and {} carry nothing; clients send them for attributes they do not use.
pub fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(is_empty_value),
        Value::Object(o) => o.values().all(is_empty_value),
        _ => false,
    }
}

/// Parse SCIM's boolean, which Entra sometimes sends as the string "True"/"False".
pub fn parse_bool(v: &Value, what: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(ScimError::InvalidValue(format!(
            "{what} must be a boolean, got {other}"
        ))),
    }
}

fn scalar_string(v: &Value, path: &str) -> Result<Option<String>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        // A NUL ends strings in the C tools that read directories; refuse it rather than store it.
        Value::String(s) if s.contains('\0') => Err(ScimError::InvalidValue(format!(
            "{path} contains a NUL character"
        ))),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(ScimError::InvalidValue(format!(
            "{path} must be a string, got {other}"
        ))),
    }
}

/// Read a reference value: a plain id string, or `{"value": id}`.
fn reference_id(v: &Value, path: &str) -> Result<Option<String>, ScimError> {
    match v {
        Value::Object(o) => match get_ci(o, "value") {
            Some(inner) => scalar_string(inner, path),
            None => Ok(None),
        },
        other => scalar_string(other, path),
    }
}

impl UserMapping {
    /// Values of an entry as read from the directory. Reference slots still hold DNs.
    pub fn values_from_entry(&self, entry: &Entry) -> UserValues {
        UserValues {
            slots: self
                .slots
                .iter()
                .map(|s| entry.values(&s.ldap).to_vec())
                .collect(),
            active: self.active_in(entry),
            password: None,
        }
    }

    /// Whether the entry's user is active, by the disable strategy (always, without one).
    fn active_in(&self, entry: &Entry) -> Option<bool> {
        Some(match self.disable.attribute() {
            Some(attr) => self.disable.is_active(entry.values(attr)),
            None => true,
        })
    }

    /// `values_from_entry`, with the values moved out of `entry` instead of copied. A slot that
    /// stores the same attribute as an earlier slot gets a copy of what that slot took.
    pub fn values_taken_from(&self, mut entry: Entry) -> UserValues {
        let active = self.active_in(&entry);
        let mut slots: Vec<Vec<String>> = Vec::with_capacity(self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            let taken = match entry.values_mut(&s.ldap) {
                // An attribute an entry holds has values: empty, an earlier slot took them.
                Some(v) if v.is_empty() => self.slots[..i]
                    .iter()
                    .position(|e| e.ldap.eq_ignore_ascii_case(&s.ldap))
                    .map(|j| slots[j].clone())
                    .unwrap_or_default(),
                Some(v) => std::mem::take(v),
                None => Vec::new(),
            };
            slots.push(taken);
        }
        UserValues {
            slots,
            active,
            password: None,
        }
    }

    /// Render a user as SCIM JSON. Reference slots must hold ids.
    pub fn to_json(&self, values: &UserValues, meta: &UserMeta) -> Value {
        self.tree(values, meta).to_value()
    }

    /// Render a user as compact SCIM JSON appended to `out`: the bytes of `to_json`'s value.
    pub fn write_json(&self, values: &UserValues, meta: &UserMeta, out: &mut Vec<u8>) {
        self.tree(values, meta).write_to(out);
    }

    /// The rendered user, borrowing its strings from `values`, `meta` and the mapping.
    fn tree<'a>(&'a self, values: &'a UserValues, meta: &'a UserMeta) -> Node<'a> {
        // schemas, id, the attributes, active, meta: sized so that a user with a dozen mapped
        // attributes is built without growing it.
        let mut root = Obj::with_capacity(16);
        let schemas: Vec<Node<'a>> = self
            .schemas()
            .into_iter()
            .filter(|urn| {
                *urn == CORE_USER
                    || self
                        .slots
                        .iter()
                        .zip(&values.slots)
                        .any(|(s, v)| !v.is_empty() && s.schema.eq_ignore_ascii_case(urn))
            })
            .map(Node::Str)
            .collect();
        root.insert("schemas", Node::Arr(schemas));
        root.insert("id", Node::Str(&meta.id));

        for (slot, vals) in self.slots.iter().zip(&values.slots) {
            if vals.is_empty() {
                continue;
            }
            let container = if slot.schema == CORE_USER {
                &mut root
            } else {
                match root.entry_or(&slot.schema, || Node::Obj(Obj::with_capacity(4))) {
                    Node::Obj(m) => m,
                    _ => continue,
                }
            };
            render_slot(container, slot, vals);
        }
        if self.disable != super::DisableStrategy::None {
            root.insert("active", Node::Bool(values.active.unwrap_or(true)));
        }
        let mut m = Obj::with_capacity(5);
        m.insert("resourceType", Node::Str("User"));
        if let Some(c) = &meta.created {
            m.insert("created", Node::Str(c));
        }
        if let Some(c) = meta.last_modified.as_ref().or(meta.created.as_ref()) {
            m.insert("lastModified", Node::Str(c));
        }
        m.insert("location", Node::Str(&meta.location));
        if let Some(v) = &meta.version {
            m.insert("version", Node::Str(v));
        }
        root.insert("meta", Node::Obj(m));
        Node::Obj(root)
    }

    /// Read a full SCIM User (POST or PUT body, or the result of a PATCH) into values.
    /// Attributes the mapping does not store are refused unless they carry nothing.
    pub fn values_from_json(&self, body: &Value) -> Result<UserValues, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::InvalidSyntax("the resource must be a JSON object".into()))?;
        let mut out = UserValues {
            slots: vec![Vec::new(); self.slots.len()],
            active: None,
            password: None,
        };
        for (key, value) in obj {
            if ["schemas", "id", "meta", "groups"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(key))
            {
                continue; // read-only or server-managed: ignored on input (RFC 7644 §3.5.1)
            }
            if key.eq_ignore_ascii_case("active") {
                if !value.is_null() {
                    out.active = Some(parse_bool(value, "active")?);
                }
                continue;
            }
            if key.eq_ignore_ascii_case("password") {
                out.password = self.password_value(value)?;
                continue;
            }
            if key.len() > 4 && key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
                match self
                    .schemas()
                    .into_iter()
                    .find(|s| s.eq_ignore_ascii_case(key))
                {
                    Some(urn) if urn != CORE_USER => match value {
                        Value::Object(ext) => {
                            for (k, v) in ext {
                                self.read_attribute(urn, k, v, &mut out)?;
                            }
                        }
                        Value::Null => {}
                        _ => {
                            return Err(ScimError::InvalidValue(format!("{key} must be an object")))
                        }
                    },
                    Some(_) => match value {
                        Value::Object(core) => {
                            for (k, v) in core {
                                self.read_attribute(CORE_USER, k, v, &mut out)?;
                            }
                        }
                        _ => {
                            return Err(ScimError::InvalidValue(format!("{key} must be an object")))
                        }
                    },
                    None if is_empty_value(value) => {}
                    None => {
                        return Err(ScimError::InvalidValue(format!(
                            "schema extension {key} is not mapped by this gateway"
                        )))
                    }
                }
                continue;
            }
            self.read_attribute(CORE_USER, key, value, &mut out)?;
        }
        Ok(out)
    }

    /// A `password` from a request: a non-empty string, accepted only with a password method.
    /// The value never appears in an error.
    fn password_value(&self, value: &Value) -> Result<Option<crate::config::Secret>, ScimError> {
        let pw = match value {
            Value::Null => return Ok(None),
            Value::String(s) if s.is_empty() => return Ok(None),
            Value::String(s) => s,
            _ => return Err(ScimError::InvalidValue("password must be a string".into())),
        };
        if self.password == super::PasswordMethod::None {
            return Err(ScimError::InvalidValue(
                "this gateway does not set passwords ([mapping.users.password] is not configured)"
                    .into(),
            ));
        }
        if pw.chars().any(char::is_control) {
            return Err(ScimError::InvalidValue(
                "password must not contain control characters".into(),
            ));
        }
        Ok(Some(crate::config::Secret::new(pw.clone())))
    }

    fn read_attribute(
        &self,
        schema: &str,
        key: &str,
        value: &Value,
        out: &mut UserValues,
    ) -> Result<(), ScimError> {
        let slots: Vec<(usize, &Slot)> = self.slots_of(schema, key);
        if slots.is_empty() {
            if is_empty_value(value) {
                return Ok(());
            }
            return Err(unmapped(key));
        }
        match &slots[0].1.target {
            Target::Simple { .. } => {
                let (idx, slot) = slots[0];
                let v = match slot.kind {
                    ValueKind::Reference => reference_id(value, &slot.path)?,
                    ValueKind::String => scalar_string(value, &slot.path)?,
                };
                out.slots[idx] = v.into_iter().collect();
            }
            Target::Sub { .. } => match value {
                Value::Null => {}
                Value::Object(o) => {
                    for (sub, v) in o {
                        let found = slots
                            .iter()
                            .find(|(_, s)| matches!(&s.target, Target::Sub { sub: t, .. } if t.eq_ignore_ascii_case(sub)));
                        match found {
                            Some((idx, s)) => {
                                out.slots[*idx] = scalar_string(v, &s.path)?.into_iter().collect()
                            }
                            None if is_empty_value(v) => {}
                            None => return Err(unmapped(&format!("{key}.{sub}"))),
                        }
                    }
                }
                other => {
                    return Err(ScimError::InvalidValue(format!(
                        "{key} must be an object, got {other}"
                    )))
                }
            },
            Target::Typed { .. } => {
                let elements: Vec<&Value> = match value {
                    Value::Null => vec![],
                    Value::Array(a) => a.iter().collect(),
                    Value::Object(_) => vec![value],
                    other => {
                        return Err(ScimError::InvalidValue(format!(
                            "{key} must be an array, got {other}"
                        )))
                    }
                };
                for el in elements {
                    self.read_element(key, &slots, el, out)?;
                }
            }
        }
        Ok(())
    }

    /// One element of a typed multi-valued attribute, such as `{"type":"work","value":"a@b"}`.
    fn read_element(
        &self,
        key: &str,
        slots: &[(usize, &Slot)],
        el: &Value,
        out: &mut UserValues,
    ) -> Result<(), ScimError> {
        let Value::Object(o) = el else {
            if is_empty_value(el) {
                return Ok(());
            }
            return Err(ScimError::InvalidValue(format!(
                "each {key} element must be an object, got {el}"
            )));
        };
        let type_value = match get_ci(o, "type") {
            Some(Value::String(t)) => Some(t.as_str()),
            Some(Value::Null) | None => None,
            Some(other) => {
                return Err(ScimError::InvalidValue(format!(
                    "{key}.type must be a string, got {other}"
                )))
            }
        };
        // An element without a type goes to the slot marked primary, or the only type mapped.
        let slot_type = |s: &Slot| match &s.target {
            Target::Typed { type_value, .. } => Some(type_value.clone()),
            _ => None,
        };
        let chosen_type = match type_value {
            Some(t) => t.to_string(),
            None => {
                let mut types: Vec<String> =
                    slots.iter().filter_map(|(_, s)| slot_type(s)).collect();
                types.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
                match slots
                    .iter()
                    .find(|(_, s)| s.primary)
                    .and_then(|(_, s)| slot_type(s))
                {
                    Some(t) => t,
                    None if types.len() == 1 => types.remove(0),
                    None if is_empty_value(el) => return Ok(()),
                    None => {
                        return Err(ScimError::InvalidValue(format!(
                            "{key} element {el} has no type; this gateway stores the types {}",
                            types.join(", ")
                        )))
                    }
                }
            }
        };
        for (sub, v) in o {
            if ["type", "primary", "display"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(sub))
            {
                continue;
            }
            let found = slots.iter().find(|(_, s)| {
                matches!(&s.target, Target::Typed { type_value: t, sub: u, .. }
                    if t.eq_ignore_ascii_case(&chosen_type) && u.eq_ignore_ascii_case(sub))
            });
            match found {
                Some((idx, s)) => {
                    if let Some(v) = scalar_string(v, &s.path)? {
                        out.slots[*idx].push(v);
                    }
                }
                None if is_empty_value(v) => {}
                None => {
                    return Err(unmapped(&format!("{key}[type eq \"{chosen_type}\"].{sub}")));
                }
            }
        }
        Ok(())
    }

    /// LDAP attributes of a new entry: object classes, constants, mapped values, defaults and the disable state.
    /// Reference slots must already hold DNs.
    pub fn create_attributes(
        &self,
        values: &UserValues,
    ) -> Result<Vec<(String, Vec<String>)>, ScimError> {
        let mut attrs = vec![("objectClass".to_string(), self.object_classes.clone())];
        attrs.extend(self.constants.iter().cloned());
        for (i, slot) in self.slots.iter().enumerate() {
            let vals = self.effective_values(values, i);
            if !vals.is_empty() {
                attrs.push((slot.ldap.clone(), vals));
            }
        }
        for d in &self.derived {
            if let Some(source) = self.effective_values(values, d.from_slot).first() {
                let v = d.rule.apply(source).ok_or_else(|| {
                    ScimError::InvalidValue(format!(
                        "{} {source:?} leaves no valid {}",
                        self.slots[d.from_slot].path, d.ldap
                    ))
                })?;
                attrs.push((d.ldap.clone(), vec![v]));
            }
        }
        if values.active == Some(false) {
            match self.disable.transition(&[], false) {
                Some(Modification::Replace(attr, vals)) if !vals.is_empty() => attrs.push((attr, vals)),
                _ => return Err(ScimError::InvalidValue("this gateway is configured without a disable strategy, so active cannot be false".into())),
            }
        }
        Ok(attrs)
    }

    /// The modifications that turn `old` into `new`, one per changed LDAP attribute, excluding the RDN
    /// attribute (renames are separate). Reference slots must hold DNs in both.
    pub fn diff(
        &self,
        old: &UserValues,
        new: &UserValues,
        disable_values: &[String],
    ) -> Result<Vec<Modification>, ScimError> {
        let mut mods = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if i == self.rdn_slot {
                continue;
            }
            let want = self.effective_values(new, i);
            if !same_values(&old.slots[i], &want) {
                mods.push(Modification::Replace(slot.ldap.clone(), want));
            }
        }
        if let Some(active) = new.active {
            if self.disable == super::DisableStrategy::None && !active {
                return Err(ScimError::InvalidValue(
                    "this gateway is configured without a disable strategy, so active cannot be false".into(),
                ));
            }
            mods.extend(self.disable.transition(disable_values, active));
        }
        Ok(mods)
    }
}

impl UserMapping {
    /// The values slot `i` is written with: the client's, or the first filled `create_default_from`
    /// source, so an attribute the schema requires is never emptied by a client that omits it.
    pub(crate) fn effective_values(&self, values: &UserValues, i: usize) -> Vec<String> {
        let mut vals = values.slots[i].clone();
        if vals.is_empty() {
            if let Some(v) = self.slots[i]
                .create_default_from
                .iter()
                .find_map(|&j| values.slots[j].first())
            {
                vals.push(v.clone());
            }
        }
        dedup_ci(&mut vals);
        vals
    }
}

/// Remove exact duplicates; LDAP refuses duplicate values in one request.
fn dedup_ci(vals: &mut Vec<String>) {
    let mut seen: Vec<String> = Vec::new();
    vals.retain(|v| {
        if seen.contains(v) {
            false
        } else {
            seen.push(v.clone());
            true
        }
    });
}

/// LDAP keeps no order of values, so compare as sets.
fn same_values(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|v| b.contains(v))
}

fn unmapped(path: &str) -> ScimError {
    ScimError::InvalidValue(format!(
        "attribute {path} is not mapped to the directory by this gateway, so it cannot be stored"
    ))
}

fn render_slot<'a>(container: &mut Obj<'a>, slot: &'a Slot, vals: &'a [String]) {
    match &slot.target {
        Target::Simple { attr } => {
            let v = match slot.kind {
                ValueKind::Reference => {
                    let mut m = Obj::new();
                    m.insert("value", Node::Str(&vals[0]));
                    Node::Obj(m)
                }
                ValueKind::String => Node::Str(&vals[0]),
            };
            container.insert(attr, v);
        }
        Target::Sub { attr, sub } => {
            if let Node::Obj(m) = container.entry_or(attr, || Node::Obj(Obj::with_capacity(4))) {
                m.insert(sub, Node::Str(&vals[0]));
            }
        }
        Target::Typed {
            attr,
            type_value,
            sub,
        } => {
            let Node::Arr(elements) = container.entry_or(attr, || Node::Arr(Vec::new())) else {
                return;
            };
            // The i-th value of every slot of one type shares the i-th element of that type.
            for (i, v) in vals.iter().enumerate() {
                let existing = elements
                    .iter_mut()
                    .filter(|e| match e {
                        Node::Obj(o) => o.get("type") == Some(&Node::Str(type_value)),
                        _ => false,
                    })
                    .nth(i);
                match existing {
                    Some(Node::Obj(e)) => e.insert(sub, Node::Str(v)),
                    _ => {
                        let mut e = Obj::with_capacity(3);
                        e.insert("type", Node::Str(type_value));
                        e.insert(sub, Node::Str(v));
                        if slot.primary && i == 0 {
                            e.insert("primary", Node::Bool(true));
                        }
                        elements.push(Node::Obj(e));
                    }
                }
            }
        }
    }
}
