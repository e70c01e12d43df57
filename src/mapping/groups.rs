//! The config-driven mapping of SCIM Groups onto directory groups, and translation of group filters.
//!
//! Groups have a fixed shape in SCIM (`displayName`, `externalId`, `members`), so the mapping names
//! the LDAP attributes for them and how members are stored: as DNs (groupOfNames, groupOfUniqueNames,
//! AD groups) or as user names (posixGroup's memberUid).

use super::translate::{
    and, compare, compare_id, finish, meta_filter, not, not_filterable, or, Lf,
};
use crate::config::file::GroupMappingFile;
use crate::config::Problems;
use crate::directory::{dn, Scope};
use crate::scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use crate::scim::ScimError;
use std::collections::HashMap;

pub const CORE_GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Entra ID adds this schema URI to the groups it creates.
pub const ENTRA_GROUP: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";

/// What a member value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberValue {
    /// The member's DN.
    Dn,
    /// The member's user name (the users' userName attribute), as posixGroup's memberUid.
    UserName,
}

/// Who keeps group memberships right when a user is deleted or renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipIntegrity {
    /// The gateway updates every group that lists the user.
    Gateway,
    /// The directory does it (OpenLDAP refint overlay, Active Directory).
    Directory,
}

#[derive(Debug, Clone)]
pub struct GroupMapping {
    pub base: String,
    pub scope: Scope,
    pub object_filter: String,
    pub object_classes: Vec<String>,
    pub id_attribute: String,
    pub rdn_attribute: String,
    pub name_attribute: String,
    pub external_id_attribute: Option<String>,
    pub member_attribute: String,
    pub member_value: MemberValue,
    pub placeholder_member: Option<String>,
    pub member_of_attribute: Option<String>,
    /// Read `member_attribute` in ranges of this many values (AD range retrieval).
    pub member_range_size: Option<usize>,
    pub dn_attribute: String,
    pub integrity: MembershipIntegrity,
    pub created_attribute: String,
    pub modified_attribute: String,
    pub constants: Vec<(String, Vec<String>)>,
    /// The directory's version attribute (`directory.version_attribute`), read for ETags.
    pub version_attribute: Option<String>,
}

impl GroupMapping {
    /// Validate the file type; `users_base` is needed to keep the placeholder out of both subtrees.
    pub fn build(
        f: &GroupMappingFile,
        key: &str,
        users_base: &str,
        problems: &mut Problems,
    ) -> Option<GroupMapping> {
        let before = problems.0.len();
        let (scope, object_filter) = super::validate_subtree(
            key,
            &f.base,
            f.scope.as_deref(),
            f.filter.as_deref(),
            "(objectClass=groupOfNames)",
            problems,
        );
        let member_value = match f.member_value.as_deref().unwrap_or("dn") {
            "dn" => MemberValue::Dn,
            "user_name" => MemberValue::UserName,
            other => {
                problems.push(
                    format!("{key}.member_value"),
                    format!("{other:?} is not a member value; use \"dn\" or \"user_name\""),
                );
                MemberValue::Dn
            }
        };
        let integrity = match f.membership_integrity.as_deref().unwrap_or("gateway") {
            "gateway" => MembershipIntegrity::Gateway,
            "directory" => MembershipIntegrity::Directory,
            other => {
                problems.push(
                    format!("{key}.membership_integrity"),
                    format!("{other:?} is not an option; use \"gateway\" or \"directory\""),
                );
                MembershipIntegrity::Gateway
            }
        };
        if let Some(p) = &f.placeholder_member {
            if member_value == MemberValue::UserName {
                problems.push(
                    format!("{key}.placeholder_member"),
                    "applies only to member_value = \"dn\"",
                );
            }
            if dn::split_rdns(p).is_empty() {
                problems.push(
                    format!("{key}.placeholder_member"),
                    format!("{p:?} is not a DN"),
                );
            }
            for (what, base) in [("users", users_base), ("groups", f.base.as_str())] {
                if dn::is_within(p, base) {
                    problems.push(
                        format!("{key}.placeholder_member"),
                        format!("{p:?} lies inside the {what} base; choose a DN outside it so it can never be a real member"),
                    );
                }
            }
        }
        if dn::is_within(&f.base, users_base) || dn::is_within(users_base, &f.base) {
            problems.push(
                format!("{key}.base"),
                "the groups base and mapping.users.base must not contain one another",
            );
        }
        if problems.0.len() > before {
            return None;
        }
        let cn = || "cn".to_string();
        Some(GroupMapping {
            base: f.base.clone(),
            scope,
            object_filter,
            object_classes: f
                .object_classes
                .clone()
                .unwrap_or_else(|| vec!["top".into(), "groupOfNames".into()]),
            id_attribute: f.id_attribute.clone().unwrap_or_else(|| "entryUUID".into()),
            rdn_attribute: f.rdn_attribute.clone().unwrap_or_else(cn),
            name_attribute: f.name_attribute.clone().unwrap_or_else(cn),
            external_id_attribute: f.external_id_attribute.clone(),
            member_attribute: f
                .member_attribute
                .clone()
                .unwrap_or_else(|| "member".into()),
            member_value,
            placeholder_member: f.placeholder_member.clone(),
            member_of_attribute: f.member_of_attribute.clone(),
            member_range_size: match f.member_range_size {
                Some(0) => {
                    problems.push(format!("{key}.member_range_size"), "must be at least 1");
                    None
                }
                other => other,
            },
            dn_attribute: f.dn_attribute.clone().unwrap_or_else(|| "entryDN".into()),
            integrity,
            created_attribute: f
                .created_attribute
                .clone()
                .unwrap_or_else(|| "createTimestamp".into()),
            modified_attribute: f
                .modified_attribute
                .clone()
                .unwrap_or_else(|| "modifyTimestamp".into()),
            constants: f
                .constants
                .iter()
                .map(|c| (c.ldap.clone(), c.values.clone()))
                .collect(),
            version_attribute: None,
        })
    }

    /// Attributes needed to render a group; the member attribute only when members are wanted.
    pub fn read_attributes(&self, with_members: bool) -> Vec<String> {
        let mut attrs = vec![
            self.id_attribute.clone(),
            self.name_attribute.clone(),
            self.created_attribute.clone(),
            self.modified_attribute.clone(),
        ];
        if self.rdn_attribute != self.name_attribute {
            attrs.push(self.rdn_attribute.clone());
        }
        attrs.extend(self.external_id_attribute.clone());
        attrs.extend(self.version_attribute.clone());
        if with_members && !self.members_from_member_of() {
            // The LDAP layer fetches the remaining ranges and merges them under the plain name.
            attrs.push(match self.member_range_size {
                Some(n) => format!("{};range=0-{}", self.member_attribute, n - 1),
                None => self.member_attribute.clone(),
            });
        }
        attrs
    }

    /// Whether members are listed through their memberOf (one paged search per subtree) instead
    /// of reading the group's member attribute and resolving each value.
    pub fn members_from_member_of(&self) -> bool {
        self.member_of_attribute.is_some() && self.member_value == MemberValue::Dn
    }

    /// Whether the display name is the RDN, so a rename is a modrdn.
    pub fn renames_by_modrdn(&self) -> bool {
        self.rdn_attribute
            .eq_ignore_ascii_case(&self.name_attribute)
    }

    /// Whether `value` is the placeholder member.
    pub fn is_placeholder(&self, value: &str) -> bool {
        self.placeholder_member
            .as_deref()
            .is_some_and(|p| dn::normalize(p) == dn::normalize(value))
    }
}

/// Member ids a filter compares `members` with, to resolve before translating.
pub fn referenced_member_ids(filter: &Filter) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(f: &Filter, inside_members: bool, out: &mut Vec<String>) {
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                walk(a, inside_members, out);
                walk(b, inside_members, out);
            }
            Filter::Not(a) => walk(a, inside_members, out),
            Filter::ValuePath { attr, filter } => {
                walk(filter, attr.name.eq_ignore_ascii_case("members"), out)
            }
            Filter::Compare {
                path,
                value: CompValue::Str(v),
                ..
            } => {
                let top = path.name.eq_ignore_ascii_case("members");
                let inner = inside_members && path.name.eq_ignore_ascii_case("value");
                if (top || inner) && !out.contains(v) {
                    out.push(v.clone());
                }
            }
            _ => {}
        }
    }
    walk(filter, false, &mut out);
    out
}

/// Translate a group filter. `members` maps member ids to their stored member values; ids missing
/// from it match nothing.
pub fn translate_group_filter(
    m: &GroupMapping,
    filter: &Filter,
    members: &HashMap<String, String>,
) -> Result<String, ScimError> {
    Ok(finish(
        &m.object_filter,
        group_filter(m, filter, members, false)?,
    ))
}

fn group_filter(
    m: &GroupMapping,
    f: &Filter,
    members: &HashMap<String, String>,
    in_members: bool,
) -> Result<Lf, ScimError> {
    Ok(match f {
        Filter::And(a, b) => and(
            group_filter(m, a, members, in_members)?,
            group_filter(m, b, members, in_members)?,
        ),
        Filter::Or(a, b) => or(
            group_filter(m, a, members, in_members)?,
            group_filter(m, b, members, in_members)?,
        ),
        Filter::Not(a) => not(group_filter(m, a, members, in_members)?),
        Filter::ValuePath { attr, filter }
            if !in_members && attr.name.eq_ignore_ascii_case("members") && is_core(attr) =>
        {
            group_filter(m, filter, members, true)?
        }
        Filter::ValuePath { attr, .. } => return Err(not_filterable(attr)),
        Filter::Present(path) => attribute(m, path, CompareOp::Eq, None, members, in_members)?,
        Filter::Compare { path, op, value } => {
            attribute(m, path, *op, Some(value), members, in_members)?
        }
    })
}

fn is_core(p: &AttrPath) -> bool {
    p.urn
        .as_deref()
        .is_none_or(|u| u.eq_ignore_ascii_case(CORE_GROUP))
}

fn attribute(
    m: &GroupMapping,
    path: &AttrPath,
    op: CompareOp,
    value: Option<&CompValue>,
    members: &HashMap<String, String>,
    in_members: bool,
) -> Result<Lf, ScimError> {
    let name = path.name.as_str();
    let text = path.to_string();
    if in_members {
        // Inside members[...]: only `value` can be expressed without reading the member list.
        if !name.eq_ignore_ascii_case("value") {
            return Err(ScimError::InvalidFilter(format!(
                "members[...] supports value eq \"<id>\"; {name} is not filterable"
            )));
        }
        return member_compare(m, op, value, members, &text);
    }
    if !is_core(path) {
        return Err(not_filterable(path));
    }
    let sub = path.sub.as_deref();
    if name.eq_ignore_ascii_case("id") && sub.is_none() {
        compare_id(&m.id_attribute, op, value, &text)
    } else if name.eq_ignore_ascii_case("displayName") && sub.is_none() {
        compare(&m.name_attribute, op, value, &text)
    } else if name.eq_ignore_ascii_case("externalId") && sub.is_none() {
        match &m.external_id_attribute {
            Some(a) => compare(a, op, value, &text),
            None => Err(not_filterable(path)),
        }
    } else if name.eq_ignore_ascii_case("members")
        && sub.is_none_or(|s| s.eq_ignore_ascii_case("value"))
    {
        member_compare(m, op, value, members, &text)
    } else if name.eq_ignore_ascii_case("meta") {
        meta_filter(
            &m.created_attribute,
            &m.modified_attribute,
            "Group",
            path,
            op,
            value,
        )
    } else {
        Err(not_filterable(path))
    }
}

fn member_compare(
    m: &GroupMapping,
    op: CompareOp,
    value: Option<&CompValue>,
    members: &HashMap<String, String>,
    text: &str,
) -> Result<Lf, ScimError> {
    let eq = match (op, value) {
        (CompareOp::Eq | CompareOp::Ne, Some(CompValue::Str(id))) => match members.get(id) {
            Some(v) => Lf::F(format!(
                "({}={})",
                m.member_attribute,
                ldap3::ldap_escape(v.as_str())
            )),
            None => Lf::False,
        },
        _ => {
            return Err(ScimError::InvalidFilter(format!(
                "{text} supports only eq and ne with a member id"
            )))
        }
    };
    Ok(if op == CompareOp::Ne { not(eq) } else { eq })
}

#[cfg(test)]
mod tests;
