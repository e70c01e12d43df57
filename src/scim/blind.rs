//! PATCHes that need no read of the current entry ("blind" writes).
//!
//! Entra's default update and its disable replace single values: `name.familyName`,
//! `emails[type eq "work"].value`, an extension's `department`, `active` false. What such a
//! PATCH leaves in the directory does not depend on what the entry held before, so it can go
//! to the directory as one modify, without the read that a general PATCH applies its operations
//! to. This module decides, as a pure function of the mapping and the operations, whether a
//! PATCH is of that kind, and which modifications it makes.
//!
//! A PATCH qualifies only when every operation is an `add` or `replace` of
//! - a single-valued, non-reference attribute (`displayName`, `name.givenName`, an extension's
//!   `department`), or a typed element's sub-attribute that one slot stores
//!   (`emails[type eq "work"].value`): the engine sets the value on the matching elements or
//!   creates the element, so the slot ends up holding exactly the new value either way;
//! - or `active` set to false with a strategy that disables with a fixed value (not AD's
//!   `userAccountControl`, which is a bit field, and not enabling, which must leave a lockout
//!   ppolicy set on its own alone).
//!
//! - or a reference (`manager`) set to a user's id: the plan names the modification whose value
//!   is that id, and the write puts the DN in its place, resolved by the same search of the
//!   users' subtree the general path makes (an id that resolves to nothing falls back to the
//!   general path, which refuses it).
//!
//! Anything else is left to the general path: removals, the RDN and `userName` (a rename and a
//! uniqueness check), empty values, attributes that share their LDAP attribute with another
//! slot, passwords. The general path also gives the errors, so this module never needs to.
//!
//! One dependency on the current entry remains: the general path fills a slot with create
//! defaults (`cn` from `displayName` or `userName`) whenever it finds it empty. The plan names
//! those attributes in `present`; the write asserts them present (they are mandatory in the
//! usual object classes), and if one is not, the assertion fails, nothing is written and the
//! general path takes over.

use super::filter::{parse_path, CompValue, CompareOp, Filter, PatchPath};
use super::patch::{self, OpKind, PatchOperation};
use crate::directory::Modification;
use crate::mapping::{DisableStrategy, Target, UserMapping, ValueKind, CORE_USER};
use serde_json::{Map, Value};

/// A PATCH that needs no read of the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlindPatch {
    /// One modify's modifications.
    pub mods: Vec<Modification>,
    /// LDAP attributes that must be present for `mods` to be what the general path would write.
    pub present: Vec<String>,
    /// Indexes into `mods` of references: each is a `Replace` of one user id, which must be
    /// resolved to that user's DN before the write.
    pub references: Vec<usize>,
}

/// The plan of a PATCH that needs no read, or `None` when it needs one.
pub fn plan(m: &UserMapping, ops: &[PatchOperation]) -> Option<BlindPatch> {
    let mut slots = Vec::new();
    let mut disable = false;
    for op in ops {
        if op.op == OpKind::Remove {
            return None;
        }
        match &op.path {
            Some(path) => target(m, path, op.value.as_ref()?, &mut slots, &mut disable)?,
            None => {
                let Value::Object(values) = op.value.as_ref()? else {
                    return None;
                };
                for (key, v) in values {
                    if ["id", "meta", "schemas"]
                        .iter()
                        .any(|k| k.eq_ignore_ascii_case(key))
                    {
                        continue; // ignored by the engine as well
                    }
                    // Extension objects (`{"urn:...": {...}}`) are left to the general path.
                    let path = parse_path(key).ok()?;
                    target(m, &path, v, &mut slots, &mut disable)?;
                }
            }
        }
    }
    slots.sort_unstable();
    slots.dedup();
    // The values: the operations applied by the engine to an empty resource, read by the
    // mapping, exactly as the general path reads the patched resource.
    let mut doc = Value::Object(Map::from_iter([(
        "schemas".to_string(),
        Value::from(vec![CORE_USER]),
    )]));
    patch::apply(&mut doc, ops, m).ok()?;
    let values = m.values_from_json(&doc).ok()?;
    if values.password.is_some() {
        return None;
    }
    let mut mods = Vec::new();
    let mut references = Vec::new();
    for &i in &slots {
        // The client's own value: an empty one would take a create default from slots the
        // general path reads from the entry.
        if values.slots[i].is_empty() {
            return None;
        }
        if m.slots[i].kind == ValueKind::Reference {
            references.push(mods.len());
        }
        let vals = m.effective_values(&values, i);
        mods.push(Modification::Replace(m.slots[i].ldap.clone(), vals));
    }
    if disable {
        if values.active != Some(false) {
            return None;
        }
        match m.disable.transition(&[], false)? {
            Modification::Replace(attr, vals)
                if !vals.is_empty()
                    && !mods
                        .iter()
                        .any(|md| md.attribute().eq_ignore_ascii_case(&attr)) =>
            {
                mods.push(Modification::Replace(attr, vals))
            }
            _ => return None,
        }
    }
    if mods.is_empty() {
        return None;
    }
    // Slots with create defaults: the general path fills any that is empty on every write
    // (from the defaults' current values). Those touched here get a value now.
    let mut present: Vec<String> = Vec::new();
    for (j, s) in m.slots.iter().enumerate() {
        if slots.contains(&j) || s.create_default_from.is_empty() {
            continue;
        }
        if !present.iter().any(|p| p.eq_ignore_ascii_case(&s.ldap)) {
            present.push(s.ldap.clone());
        }
    }
    Some(BlindPatch {
        mods,
        present,
        references,
    })
}

/// Record what one `add`/`replace` of `value` at `path` touches; `None` when it needs a read.
fn target(
    m: &UserMapping,
    path: &PatchPath,
    value: &Value,
    slots: &mut Vec<usize>,
    disable: &mut bool,
) -> Option<()> {
    let attr = &path.attr;
    let core = attr
        .urn
        .as_deref()
        .is_none_or(|u| u.eq_ignore_ascii_case(CORE_USER));
    if core && attr.name.eq_ignore_ascii_case("active") {
        if path.filter.is_some() || attr.sub.is_some() || path.sub.is_some() {
            return None;
        }
        let active = crate::mapping::resource::parse_bool(value, "active").ok()?;
        if active || !disables_with_a_fixed_value(&m.disable) {
            return None;
        }
        *disable = true;
        return Some(());
    }
    if value.is_null() {
        return None;
    }
    let schema = m.schema_of(attr.urn.as_deref(), &attr.name)?;
    let candidates = m.slots_of(schema, &attr.name);
    let found: Vec<usize> = match (&path.filter, &attr.sub, &path.sub) {
        (None, None, None) => candidates
            .iter()
            .filter(|(_, s)| matches!(s.target, Target::Simple { .. }))
            .map(|(i, _)| *i)
            .collect(),
        (None, Some(sub), None) => candidates
            .iter()
            .filter(|(_, s)| matches!(&s.target, Target::Sub { sub: t, .. } if t.eq_ignore_ascii_case(sub)))
            .map(|(i, _)| *i)
            .collect(),
        (Some(filter), None, Some(sub)) => {
            let type_value = type_eq(filter)?;
            candidates
                .iter()
                .filter(|(_, s)| {
                    matches!(&s.target, Target::Typed { type_value: t, sub: u, .. }
                        if t.eq_ignore_ascii_case(type_value) && u.eq_ignore_ascii_case(sub))
                })
                .map(|(i, _)| *i)
                .collect()
        }
        _ => return None,
    };
    let [i] = found[..] else {
        return None;
    };
    let slot = &m.slots[i];
    let shared = m
        .slots
        .iter()
        .enumerate()
        .any(|(j, s)| j != i && s.ldap.eq_ignore_ascii_case(&slot.ldap));
    let disable_attr = m
        .disable
        .attribute()
        .is_some_and(|a| a.eq_ignore_ascii_case(&slot.ldap));
    if i == m.rdn_slot || i == m.user_name_slot || shared || disable_attr {
        return None;
    }
    slots.push(i);
    Some(())
}

/// `type eq "work"`: the only filter whose matching element the engine creates as one slot.
fn type_eq(filter: &Filter) -> Option<&str> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(t),
        } if path.urn.is_none() && path.sub.is_none() && path.name.eq_ignore_ascii_case("type") => {
            Some(t)
        }
        _ => None,
    }
}

/// Disabling writes the same value whatever the entry held: ppolicy's permanent lock,
/// `nsAccountLock: TRUE`, a configured attribute's value. AD's is a bit of a number.
fn disables_with_a_fixed_value(d: &DisableStrategy) -> bool {
    matches!(
        d,
        DisableStrategy::PPolicy
            | DisableStrategy::NsAccountLock
            | DisableStrategy::Attribute { .. }
    )
}

#[cfg(test)]
mod tests;
