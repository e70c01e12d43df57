//! Translation of a parsed SCIM filter into one LDAP filter string.
//!
//! Pure functions: the only directory knowledge needed (the DNs of referenced
//! users) is passed in. Every value is escaped with `ldap3::ldap_escape`.

use super::{Slot, Target, UserMapping, ValueKind, CORE_USER};
use crate::scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use crate::scim::ScimError;
use std::collections::HashMap;

/// A translated filter, with constant parts folded away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lf {
    True,
    False,
    F(String),
}

pub(crate) fn and(a: Lf, b: Lf) -> Lf {
    match (a, b) {
        (Lf::False, _) | (_, Lf::False) => Lf::False,
        (Lf::True, x) | (x, Lf::True) => x,
        (Lf::F(a), Lf::F(b)) => Lf::F(format!("(&{a}{b})")),
    }
}

pub(crate) fn or(a: Lf, b: Lf) -> Lf {
    match (a, b) {
        (Lf::True, _) | (_, Lf::True) => Lf::True,
        (Lf::False, x) | (x, Lf::False) => x,
        (Lf::F(a), Lf::F(b)) => Lf::F(format!("(|{a}{b})")),
    }
}

pub(crate) fn not(a: Lf) -> Lf {
    match a {
        Lf::True => Lf::False,
        Lf::False => Lf::True,
        Lf::F(a) => Lf::F(format!("(!{a})")),
    }
}

fn any(items: impl IntoIterator<Item = Lf>) -> Lf {
    items.into_iter().fold(Lf::False, or)
}

/// Translate `filter` for the users subtree, combined with the mapping's object filter.
/// `references` maps SCIM ids used in reference comparisons (manager) to DNs; ids missing from it match nothing.
pub fn translate_filter(
    mapping: &UserMapping,
    filter: &Filter,
    references: &HashMap<String, String>,
) -> Result<String, ScimError> {
    let t = Translator {
        mapping,
        references,
    };
    Ok(finish(&mapping.object_filter, t.filter(filter)?))
}

/// The SCIM ids a filter compares reference attributes (manager) with, to resolve before translating.
pub fn referenced_ids(mapping: &UserMapping, filter: &Filter) -> Vec<String> {
    let mut out = Vec::new();
    collect_refs(mapping, filter, &mut out);
    out
}

fn collect_refs(mapping: &UserMapping, filter: &Filter, out: &mut Vec<String>) {
    match filter {
        Filter::And(a, b) | Filter::Or(a, b) => {
            collect_refs(mapping, a, out);
            collect_refs(mapping, b, out);
        }
        Filter::Not(a) => collect_refs(mapping, a, out),
        Filter::Compare {
            path,
            value: CompValue::Str(v),
            ..
        } if reference_slot(mapping, path).is_some() && !out.contains(v) => out.push(v.clone()),
        Filter::ValuePath { attr, filter } => {
            if let Filter::Compare {
                value: CompValue::Str(v),
                ..
            } = filter.as_ref()
            {
                if reference_slot(mapping, attr).is_some() && !out.contains(v) {
                    out.push(v.clone());
                }
            }
        }
        _ => {}
    }
}

fn reference_slot<'a>(mapping: &'a UserMapping, path: &AttrPath) -> Option<&'a Slot> {
    let schema = mapping.schema_of(path.urn.as_deref(), &path.name)?;
    mapping
        .slots_of(schema, &path.name)
        .into_iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == ValueKind::Reference)
}

struct Translator<'a> {
    mapping: &'a UserMapping,
    references: &'a HashMap<String, String>,
}

/// What an attribute inside a value filter (`emails[...]`) means for one element type.
struct Element<'a> {
    type_value: &'a str,
    primary: bool,
    slots: Vec<&'a Slot>,
}

impl Translator<'_> {
    fn filter(&self, f: &Filter) -> Result<Lf, ScimError> {
        Ok(match f {
            Filter::And(a, b) => and(self.filter(a)?, self.filter(b)?),
            Filter::Or(a, b) => or(self.filter(a)?, self.filter(b)?),
            Filter::Not(a) => not(self.filter(a)?),
            Filter::Present(path) => self.attribute(path, CompareOp::Eq, None)?,
            Filter::Compare { path, op, value } => self.attribute(path, *op, Some(value))?,
            Filter::ValuePath { attr, filter } => self.value_path(attr, filter)?,
        })
    }

    /// A comparison (`value` set) or presence test (`value` None) on a top-level path.
    fn attribute(
        &self,
        path: &AttrPath,
        op: CompareOp,
        value: Option<&CompValue>,
    ) -> Result<Lf, ScimError> {
        let name = path.name.as_str();
        let is_core = path
            .urn
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(CORE_USER));
        if is_core && name.eq_ignore_ascii_case("id") && path.sub.is_none() {
            return compare_id(&self.mapping.id_attribute, op, value, &path.to_string());
        }
        if is_core && name.eq_ignore_ascii_case("active") && path.sub.is_none() {
            return self.active(op, value);
        }
        if is_core && name.eq_ignore_ascii_case("meta") {
            let m = self.mapping;
            return meta_filter(
                &m.created_attribute,
                &m.modified_attribute,
                "User",
                path,
                op,
                value,
            );
        }
        let schema = self
            .mapping
            .schema_of(path.urn.as_deref(), name)
            .ok_or_else(|| not_filterable(path))?;
        let slots: Vec<&Slot> = self
            .mapping
            .slots_of(schema, name)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let first = slots.first().ok_or_else(|| not_filterable(path))?;
        match &first.target {
            Target::Simple { .. } => {
                let sub_ok = match (first.kind, path.sub.as_deref()) {
                    (_, None) => true,
                    (ValueKind::Reference, Some(s)) => s.eq_ignore_ascii_case("value"),
                    _ => false,
                };
                if !sub_ok {
                    return Err(not_filterable(path));
                }
                if first.kind == ValueKind::Reference {
                    return self.reference(first, op, value, path);
                }
                compare(&first.ldap, op, value, &path.to_string())
            }
            Target::Sub { .. } => {
                let sub = path.sub.as_deref().ok_or_else(|| {
                    ScimError::InvalidFilter(format!(
                        "{path} is complex; name a sub-attribute such as {path}.{}",
                        sub_of(first)
                    ))
                })?;
                let slot = slots
                    .iter()
                    .find(|s| sub_of(s).eq_ignore_ascii_case(sub))
                    .ok_or_else(|| not_filterable(path))?;
                compare(&slot.ldap, op, value, &path.to_string())
            }
            Target::Typed { .. } => {
                // `emails.value eq x` (or plain `emails eq x`) matches any element of any type.
                let sub = path.sub.clone().unwrap_or_else(|| "value".to_string());
                let inner = match value {
                    Some(v) => Filter::Compare {
                        path: AttrPath {
                            urn: None,
                            name: sub,
                            sub: None,
                        },
                        op,
                        value: v.clone(),
                    },
                    None => Filter::Present(AttrPath {
                        urn: None,
                        name: sub,
                        sub: None,
                    }),
                };
                self.elements_matching(&slots, &inner, path)
            }
        }
    }

    fn value_path(&self, attr: &AttrPath, inner: &Filter) -> Result<Lf, ScimError> {
        let schema = self
            .mapping
            .schema_of(attr.urn.as_deref(), &attr.name)
            .ok_or_else(|| not_filterable(attr))?;
        let slots: Vec<&Slot> = self
            .mapping
            .slots_of(schema, &attr.name)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        match slots.first().map(|s| (&s.target, s.kind)) {
            Some((Target::Typed { .. }, _)) => self.elements_matching(&slots, inner, attr),
            // `manager[value eq "id"]`
            Some((Target::Simple { .. }, ValueKind::Reference)) => match inner {
                Filter::Compare { path, op, value }
                    if path.name.eq_ignore_ascii_case("value") && path.sub.is_none() =>
                {
                    self.reference(slots[0], *op, Some(value), attr)
                }
                Filter::Present(path) if path.name.eq_ignore_ascii_case("value") => {
                    self.reference(slots[0], CompareOp::Eq, None, attr)
                }
                _ => Err(ScimError::InvalidFilter(format!(
                    "{attr}[...] supports only value eq \"<id>\" and value pr"
                ))),
            },
            _ => Err(not_filterable(attr)),
        }
    }

    /// OR over the element types of a typed attribute of (element exists AND inner filter holds for it).
    fn elements_matching(
        &self,
        slots: &[&Slot],
        inner: &Filter,
        attr: &AttrPath,
    ) -> Result<Lf, ScimError> {
        let mut groups: Vec<Element<'_>> = Vec::new();
        for s in slots {
            if let Target::Typed { type_value, .. } = &s.target {
                match groups
                    .iter_mut()
                    .find(|g| g.type_value.eq_ignore_ascii_case(type_value))
                {
                    Some(g) => {
                        g.slots.push(s);
                        g.primary |= s.primary;
                    }
                    None => groups.push(Element {
                        type_value,
                        primary: s.primary,
                        slots: vec![s],
                    }),
                }
            }
        }
        let mut out = Vec::new();
        for g in &groups {
            let exists = any(g.slots.iter().map(|s| Lf::F(format!("({}=*)", s.ldap))));
            out.push(and(exists, self.element(g, inner, attr)?));
        }
        Ok(any(out))
    }

    fn element(&self, g: &Element<'_>, f: &Filter, attr: &AttrPath) -> Result<Lf, ScimError> {
        Ok(match f {
            Filter::And(a, b) => and(self.element(g, a, attr)?, self.element(g, b, attr)?),
            Filter::Or(a, b) => or(self.element(g, a, attr)?, self.element(g, b, attr)?),
            Filter::Not(a) => not(self.element(g, a, attr)?),
            Filter::ValuePath { .. } => {
                return Err(ScimError::InvalidFilter(format!(
                    "value filters cannot nest inside {attr}[...]"
                )))
            }
            Filter::Present(p) => self.element_attr(g, p, CompareOp::Eq, None, attr)?,
            Filter::Compare { path, op, value } => {
                self.element_attr(g, path, *op, Some(value), attr)?
            }
        })
    }

    fn element_attr(
        &self,
        g: &Element<'_>,
        p: &AttrPath,
        op: CompareOp,
        value: Option<&CompValue>,
        attr: &AttrPath,
    ) -> Result<Lf, ScimError> {
        let full = format!("{attr}.{}", p.name);
        if p.name.eq_ignore_ascii_case("type") {
            return constant_string(g.type_value, op, value, &full);
        }
        if p.name.eq_ignore_ascii_case("primary") {
            return match value {
                None => Ok(if g.primary { Lf::True } else { Lf::False }),
                Some(CompValue::Bool(b)) if matches!(op, CompareOp::Eq | CompareOp::Ne) => {
                    Ok(if (g.primary == *b) == (op == CompareOp::Eq) {
                        Lf::True
                    } else {
                        Lf::False
                    })
                }
                _ => Err(ScimError::InvalidFilter(format!(
                    "{full} compares only with eq/ne true or false"
                ))),
            };
        }
        match g
            .slots
            .iter()
            .find(|s| sub_of(s).eq_ignore_ascii_case(&p.name))
        {
            Some(s) => compare(&s.ldap, op, value, &full),
            // A sub-attribute this type does not store is absent, so only negations can hold.
            None if self.mapping.slots.iter().any(|s| {
                s.target.attr().eq_ignore_ascii_case(&attr.name)
                    && sub_of(s).eq_ignore_ascii_case(&p.name)
            }) =>
            {
                Ok(if op == CompareOp::Ne && value.is_some() {
                    Lf::True
                } else {
                    Lf::False
                })
            }
            None => Err(not_filterable(&AttrPath {
                urn: attr.urn.clone(),
                name: attr.name.clone(),
                sub: Some(p.name.clone()),
            })),
        }
    }

    fn reference(
        &self,
        slot: &Slot,
        op: CompareOp,
        value: Option<&CompValue>,
        path: &AttrPath,
    ) -> Result<Lf, ScimError> {
        match (op, value) {
            (_, None) => Ok(Lf::F(format!("({}=*)", slot.ldap))),
            (CompareOp::Eq | CompareOp::Ne, Some(CompValue::Str(id))) => {
                let eq = match self.references.get(id) {
                    Some(dn) => Lf::F(format!(
                        "({}={})",
                        slot.ldap,
                        ldap3::ldap_escape(dn.as_str())
                    )),
                    None => Lf::False,
                };
                Ok(if op == CompareOp::Ne { not(eq) } else { eq })
            }
            _ => Err(ScimError::InvalidFilter(format!(
                "{path} supports only eq, ne and pr with an id string"
            ))),
        }
    }

    fn active(&self, op: CompareOp, value: Option<&CompValue>) -> Result<Lf, ScimError> {
        let want = match (op, value) {
            (_, None) => return Ok(Lf::True),
            (CompareOp::Eq, Some(CompValue::Bool(b))) => *b,
            (CompareOp::Ne, Some(CompValue::Bool(b))) => !*b,
            (CompareOp::Eq, Some(CompValue::Str(s)))
                if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
            {
                s.eq_ignore_ascii_case("true")
            }
            _ => {
                return Err(ScimError::InvalidFilter(
                    "active compares only with eq/ne true or false".into(),
                ))
            }
        };
        Ok(match self.mapping.disable.filter(want) {
            Some(f) => Lf::F(f),
            None if want => Lf::True,
            None => Lf::False,
        })
    }
}

/// `meta.created`, `meta.lastModified` and `meta.resourceType` of a resource type.
pub(crate) fn meta_filter(
    created: &str,
    modified: &str,
    resource_type: &str,
    path: &AttrPath,
    op: CompareOp,
    value: Option<&CompValue>,
) -> Result<Lf, ScimError> {
    let sub = path.sub.as_deref().unwrap_or("");
    let attr = if sub.eq_ignore_ascii_case("created") {
        created
    } else if sub.eq_ignore_ascii_case("lastModified") {
        modified
    } else if sub.eq_ignore_ascii_case("resourceType") {
        return constant_string(resource_type, op, value, &path.to_string());
    } else {
        return Err(not_filterable(path));
    };
    match value {
        None => Ok(Lf::F(format!("({attr}=*)"))),
        Some(CompValue::Str(s)) => {
            let gt = crate::scim::time::rfc3339_to_generalized(s).ok_or_else(|| {
                ScimError::InvalidFilter(format!(
                    "{path}: {s:?} is not a dateTime such as 2026-01-31T12:00:00Z"
                ))
            })?;
            if matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
                return Err(ScimError::InvalidFilter(format!(
                    "{path} does not support {op}"
                )));
            }
            compare(attr, op, Some(&CompValue::Str(gt)), &path.to_string())
        }
        Some(_) => Err(ScimError::InvalidFilter(format!(
            "{path} compares with a dateTime string"
        ))),
    }
}

/// The final LDAP filter: the object filter ANDed with the translation.
pub(crate) fn finish(object_filter: &str, f: Lf) -> String {
    match f {
        Lf::True => object_filter.to_string(),
        Lf::False => "(!(objectClass=*))".to_string(),
        Lf::F(f) => ["(&", object_filter, &f, ")"].concat(),
    }
}

fn sub_of(s: &Slot) -> &str {
    match &s.target {
        Target::Sub { sub, .. } | Target::Typed { sub, .. } => sub,
        Target::Simple { .. } => "",
    }
}

pub(crate) fn not_filterable(path: &AttrPath) -> ScimError {
    ScimError::UnknownFilterAttribute(format!(
        "attribute {path} is not in this gateway's schema, so it cannot be filtered on"
    ))
}

/// Whether `value` can be an id: entryUUID and objectGUID text (8-4-4-4-12) and 389-DS's
/// nsUniqueId (8-8-8-8) are 32 hex digits with dashes.
fn plausible_id(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && value.bytes().filter(u8::is_ascii_hexdigit).count() == 32
}

/// `id` compared with `value`. The directory's id attributes refuse other syntaxes, which would
/// make `eq` and, wrongly, `ne` Undefined: a value that cannot be an id equals no id.
pub(crate) fn compare_id(
    attr: &str,
    op: CompareOp,
    value: Option<&CompValue>,
    path: &str,
) -> Result<Lf, ScimError> {
    match (op, value) {
        (CompareOp::Eq, Some(CompValue::Str(v))) if !plausible_id(v) => Ok(Lf::False),
        (CompareOp::Ne, Some(CompValue::Str(v))) if !plausible_id(v) => Ok(Lf::True),
        _ => compare(attr, op, value, path),
    }
}

/// A comparison of an LDAP attribute with a string value (`None` for presence).
pub(crate) fn compare(
    attr: &str,
    op: CompareOp,
    value: Option<&CompValue>,
    path: &str,
) -> Result<Lf, ScimError> {
    let Some(value) = value else {
        return Ok(Lf::F(format!("({attr}=*)")));
    };
    let raw = match value {
        CompValue::Str(s) => s.clone(),
        CompValue::Number(n) => n.to_string(),
        // `eq null` holds where the attribute has no value, `ne null` where it has one.
        CompValue::Null => {
            return match op {
                CompareOp::Eq => Ok(Lf::F(format!("(!({attr}=*))"))),
                CompareOp::Ne => Ok(Lf::F(format!("({attr}=*)"))),
                _ => Err(ScimError::InvalidFilter(format!(
                    "{path}: null compares only with eq and ne"
                ))),
            }
        }
        CompValue::Bool(_) => {
            return Err(ScimError::InvalidFilter(format!(
                "{path} is a string attribute; compare it with a string"
            )))
        }
    };
    // No LDAP value holds NUL, and slapd reads a NUL in a substring assertion as the end of the
    // value, so `co "\u0000"` would turn into a presence test: refuse it instead.
    if raw.contains('\0') {
        return Err(ScimError::InvalidFilter(format!(
            "{path}: a filter value cannot contain NUL (U+0000)"
        )));
    }
    let v = ldap3::ldap_escape(raw.as_str());
    Ok(match op {
        CompareOp::Eq => Lf::F(["(", attr, "=", &v, ")"].concat()),
        CompareOp::Ne => Lf::F(format!("(!({attr}={v}))")),
        CompareOp::Co if raw.is_empty() => Lf::F(format!("({attr}=*)")),
        CompareOp::Co => Lf::F(format!("({attr}=*{v}*)")),
        CompareOp::Sw if raw.is_empty() => Lf::F(format!("({attr}=*)")),
        CompareOp::Sw => Lf::F(format!("({attr}={v}*)")),
        CompareOp::Ew if raw.is_empty() => Lf::F(format!("({attr}=*)")),
        CompareOp::Ew => Lf::F(format!("({attr}=*{v})")),
        CompareOp::Ge => Lf::F(format!("({attr}>={v})")),
        CompareOp::Le => Lf::F(format!("({attr}<={v})")),
        CompareOp::Gt => Lf::F(format!("(&({attr}>={v})(!({attr}={v})))")),
        CompareOp::Lt => Lf::F(format!("(&({attr}<={v})(!({attr}={v})))")),
    })
}

/// Evaluate a comparison against a value the gateway knows statically (an element's `type`).
pub(crate) fn constant_string(
    actual: &str,
    op: CompareOp,
    value: Option<&CompValue>,
    path: &str,
) -> Result<Lf, ScimError> {
    let Some(value) = value else {
        return Ok(Lf::True);
    };
    let CompValue::Str(want) = value else {
        return Err(ScimError::InvalidFilter(format!(
            "{path} compares with a string"
        )));
    };
    let hit = op.holds_ignoring_case(actual, want);
    Ok(if hit { Lf::True } else { Lf::False })
}

#[cfg(test)]
mod tests;
