//! Directory lookups behind group memberships, shared by the group and user services.
//!
//! Everything is batched: ids and member values are resolved with one search per subtree per
//! chunk of values, never one search per member.

use super::ScimError;
use crate::directory::{dn, Entry, EntryReader, EntryWriter, Modification, SearchRequest};
use crate::mapping::groups::{GroupMapping, MemberValue};
use crate::mapping::UserMapping;
use std::collections::HashMap;

/// How many values one OR filter carries: OpenLDAP resolves an OR of entryDN values through its
/// DN index, fastest per value at around a hundred alternatives.
const CHUNK: usize = 100;
/// Upper bound on the members one group read resolves.
const MAX_MEMBERS: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    User,
    Group,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::User => "User",
            MemberKind::Group => "Group",
        }
    }
}

/// A member as SCIM and the directory each name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// The value stored in the group's member attribute (a DN or a user name).
    pub value: String,
    pub kind: MemberKind,
}

/// A group a user belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
}

pub struct Members<'a, D> {
    pub dir: &'a D,
    pub users: &'a UserMapping,
    pub groups: &'a GroupMapping,
}

fn or_filter(attr: &str, values: &[&str]) -> String {
    let alternatives: String = values
        .iter()
        .map(|v| format!("({attr}={})", ldap3::ldap_escape(*v)))
        .collect();
    format!("(|{alternatives})")
}

impl<D> Members<'_, D> {
    /// The guard of a write that adds or removes exactly the members `changed` of the group
    /// that `group_guard` selects, as one assertion that directory-kept memberships survive:
    /// slapd's memberof overlay applies the write's assertion to its own updates of the changed
    /// members' `memberOf` (see `overlay_safe_guard`), so the filter admits those members too,
    /// each by its object filter and id, and no other entry. At the group's DN it holds only
    /// for that group: a user is never a group, and a group member's id names another group
    /// (or this one, when it is made a member of itself).
    pub fn member_tolerant_guard(&self, group_guard: &str, changed: &[&Member]) -> String {
        // One term per entry: two spellings of one id resolve to the same member.
        let mut entries: Vec<&Member> = Vec::new();
        for m in changed {
            if !entries.iter().any(|e| e.value == m.value) {
                entries.push(m);
            }
        }
        let branch = |kind: MemberKind, object_filter: &str, id_attribute: &str| {
            let ids: Vec<&str> = entries
                .iter()
                .filter(|m| m.kind == kind)
                .map(|m| m.id.as_str())
                .collect();
            if ids.is_empty() {
                String::new()
            } else {
                format!("(&{object_filter}{})", or_filter(id_attribute, &ids))
            }
        };
        format!(
            "(|{group_guard}{}{})",
            branch(
                MemberKind::User,
                &self.users.object_filter,
                &self.users.id_attribute
            ),
            branch(
                MemberKind::Group,
                &self.groups.object_filter,
                &self.groups.id_attribute
            ),
        )
    }
}

impl<D: EntryReader + EntryWriter> Members<'_, D> {
    /// The guard a group write may carry as an assertion. slapd's memberof overlay updates the
    /// members' memberOf with internal operations that inherit the group write's assertion,
    /// which then fails on those entries and the update is silently skipped (a user delete's
    /// assertion does not reach the overlays' updates of the groups: tested). So when the
    /// directory keeps memberships:
    /// - a write that changes only the members `changed` names (adds and removes, no rename,
    ///   no whole-list replace) carries `member_tolerant_guard`, which those updates pass;
    /// - any other write (`changed` is `None`: a rename, a delete, a whole-list replace touch
    ///   members the request does not name) has its guard checked by a base search just before
    ///   the write instead (not atomic; the one way that leaves memberships right), and carries
    ///   none. A failed check is `Conflict`, as a failed assertion is.
    pub async fn overlay_safe_guard(
        &self,
        target: &str,
        guard: Option<String>,
        changed: Option<&[&Member]>,
    ) -> Result<Option<String>, ScimError> {
        let Some(g) = guard else {
            return Ok(None);
        };
        if self.groups.integrity != crate::mapping::groups::MembershipIntegrity::Directory {
            return Ok(Some(g));
        }
        if let Some(changed) = changed {
            return Ok(Some(self.member_tolerant_guard(&g, changed)));
        }
        let found = self
            .dir
            .search(SearchRequest {
                base: target.to_string(),
                scope: crate::directory::Scope::Base,
                filter: g,
                attrs: vec!["1.1".into()].into(),
            })
            .await;
        match found {
            Ok(found) if !found.is_empty() => Ok(None),
            Ok(_) | Err(crate::directory::DirectoryError::NoSuchObject) => {
                Err(crate::directory::DirectoryError::Conflict.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn search(
        &self,
        base: &str,
        scope: crate::directory::Scope,
        filter: String,
        attrs: Vec<String>,
    ) -> Result<Vec<Entry>, ScimError> {
        Ok(self
            .dir
            .search(SearchRequest {
                base: base.to_string(),
                scope,
                filter,
                attrs: attrs.into(),
            })
            .await?)
    }

    /// Resolve SCIM ids to members: one search of the users subtree, and one of the groups subtree
    /// for ids not found among users (when groups can nest). Unknown ids are simply absent.
    pub async fn resolve_ids(&self, ids: &[String]) -> Result<HashMap<String, Member>, ScimError> {
        let mut out = HashMap::new();
        let (u, g) = (self.users, self.groups);
        let user_name_attr = &u.slots[u.user_name_slot].ldap;
        for chunk in ids.chunks(CHUNK) {
            let wanted: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let found = self
                .search(
                    &u.base,
                    u.scope,
                    format!(
                        "(&{}{})",
                        u.object_filter,
                        or_filter(&u.id_attribute, &wanted)
                    ),
                    vec![u.id_attribute.clone(), user_name_attr.clone()],
                )
                .await?;
            for e in found {
                let value = match g.member_value {
                    MemberValue::Dn => Some(e.dn.clone()),
                    MemberValue::UserName => e.first(user_name_attr).map(str::to_string),
                };
                if let (Some(id), Some(value)) = (e.first(&u.id_attribute), value) {
                    // Ids match case-insensitively: every spelling the client used names this member.
                    for asked in chunk.iter().filter(|i| i.eq_ignore_ascii_case(id)) {
                        out.insert(
                            asked.clone(),
                            Member {
                                id: asked.clone(),
                                value: value.clone(),
                                kind: MemberKind::User,
                            },
                        );
                    }
                }
            }
            if g.member_value == MemberValue::UserName {
                continue; // posixGroup members are user names: groups cannot nest
            }
            let rest: Vec<&str> = wanted
                .into_iter()
                .filter(|i| !out.contains_key(*i))
                .collect();
            if rest.is_empty() {
                continue;
            }
            let found = self
                .search(
                    &g.base,
                    g.scope,
                    format!(
                        "(&{}{})",
                        g.object_filter,
                        or_filter(&g.id_attribute, &rest)
                    ),
                    vec![g.id_attribute.clone()],
                )
                .await?;
            for e in found {
                if let Some(id) = e.first(&g.id_attribute) {
                    for asked in rest.iter().filter(|i| i.eq_ignore_ascii_case(id)) {
                        out.insert(
                            asked.to_string(),
                            Member {
                                id: asked.to_string(),
                                value: e.dn.clone(),
                                kind: MemberKind::Group,
                            },
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    /// Resolve stored member values to members, in their stored order. The placeholder, values
    /// outside the subtrees and values that name no entry are left out. Works chunk by chunk, so
    /// beyond the result only one chunk's lookups are held at a time.
    pub async fn resolve_values(&self, values: &[String]) -> Result<Vec<Member>, ScimError> {
        let (u, g) = (self.users, self.groups);
        let key = |v: &str| match g.member_value {
            MemberValue::Dn => dn::normalize(v).join(","),
            MemberValue::UserName => v.to_lowercase(),
        };
        let user_name_attr = &u.slots[u.user_name_slot].ldap;
        let mut out = Vec::new();
        for chunk in values.chunks(CHUNK) {
            let chunk: Vec<&str> = chunk
                .iter()
                .map(String::as_str)
                .filter(|v| !g.is_placeholder(v))
                .collect();
            let mut found: HashMap<String, Member> = HashMap::new();
            // Users first; for DN members, then groups (nesting) among those not found.
            let lookups: Vec<(&str, crate::directory::Scope, &str, &str, &str, MemberKind)> =
                match g.member_value {
                    MemberValue::UserName => vec![(
                        &u.base,
                        u.scope,
                        &u.object_filter,
                        &u.id_attribute,
                        user_name_attr,
                        MemberKind::User,
                    )],
                    MemberValue::Dn => vec![
                        (
                            &u.base,
                            u.scope,
                            &u.object_filter,
                            &u.id_attribute,
                            &g.dn_attribute,
                            MemberKind::User,
                        ),
                        (
                            &g.base,
                            g.scope,
                            &g.object_filter,
                            &g.id_attribute,
                            &g.dn_attribute,
                            MemberKind::Group,
                        ),
                    ],
                };
            for (base, scope, filter, id_attr, match_attr, kind) in lookups {
                let wanted: Vec<&str> = chunk
                    .iter()
                    .copied()
                    .filter(|v| !found.contains_key(&key(v)))
                    .filter(|v| g.member_value == MemberValue::UserName || dn::is_within(v, base))
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                let entries = self
                    .search(
                        base,
                        scope,
                        format!("(&{filter}{})", or_filter(match_attr, &wanted)),
                        match g.member_value {
                            MemberValue::Dn => vec![id_attr.to_string()],
                            MemberValue::UserName => {
                                vec![id_attr.to_string(), match_attr.to_string()]
                            }
                        },
                    )
                    .await?;
                for e in entries {
                    let stored = match g.member_value {
                        MemberValue::Dn => Some(e.dn.as_str()),
                        MemberValue::UserName => e.first(match_attr),
                    };
                    if let (Some(id), Some(stored)) = (e.first(id_attr), stored) {
                        found.insert(
                            key(stored),
                            Member {
                                id: id.to_string(),
                                value: stored.to_string(),
                                kind,
                            },
                        );
                    }
                }
            }
            out.extend(chunk.iter().filter_map(|v| found.remove(&key(v))));
        }
        Ok(out)
    }

    /// Members of the group at `group_dn` found through the members' `memberOf` (maintained by
    /// the directory): a paged search per subtree, never reading the group's member attribute.
    pub async fn members_by_member_of(
        &self,
        member_of: &str,
        group_dn: &str,
    ) -> Result<Vec<Member>, ScimError> {
        let (u, g) = (self.users, self.groups);
        let mut out = Vec::new();
        for (base, scope, filter, id_attr, kind) in [
            (
                &u.base,
                u.scope,
                &u.object_filter,
                &u.id_attribute,
                MemberKind::User,
            ),
            (
                &g.base,
                g.scope,
                &g.object_filter,
                &g.id_attribute,
                MemberKind::Group,
            ),
        ] {
            let entries = self
                .dir
                .search_all(
                    SearchRequest {
                        base: base.clone(),
                        scope,
                        filter: format!(
                            "(&{filter}({member_of}={}))",
                            ldap3::ldap_escape(group_dn)
                        ),
                        attrs: vec![id_attr.clone()].into(),
                    },
                    MAX_MEMBERS,
                )
                .await?;
            out.extend(entries.into_iter().filter_map(|e| {
                Some(Member {
                    id: e.first(id_attr)?.to_string(),
                    value: e.dn,
                    kind,
                })
            }));
        }
        Ok(out)
    }

    /// The groups that list `value` (a member DN or user name) directly.
    pub async fn groups_listing(&self, value: &str) -> Result<Vec<(Entry, GroupRef)>, ScimError> {
        let g = self.groups;
        let entries = self
            .search(
                &g.base,
                g.scope,
                format!(
                    "(&{}({}={}))",
                    g.object_filter,
                    g.member_attribute,
                    ldap3::ldap_escape(value)
                ),
                vec![g.id_attribute.clone(), g.name_attribute.clone()],
            )
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let r = GroupRef {
                    id: e.first(&g.id_attribute)?.to_string(),
                    name: e.first(&g.name_attribute).unwrap_or_default().to_string(),
                };
                Some((e, r))
            })
            .collect())
    }

    /// Groups named by `memberOf` DNs, inside the groups subtree.
    pub async fn groups_by_dn(&self, dns: &[String]) -> Result<Vec<GroupRef>, ScimError> {
        let g = self.groups;
        let inside: Vec<&str> = dns
            .iter()
            .filter(|d| dn::is_within(d, &g.base))
            .map(String::as_str)
            .collect();
        let mut out = Vec::new();
        for chunk in inside.chunks(CHUNK) {
            let entries = self
                .search(
                    &g.base,
                    g.scope,
                    format!(
                        "(&{}{})",
                        g.object_filter,
                        or_filter(&g.dn_attribute, chunk)
                    ),
                    vec![g.id_attribute.clone(), g.name_attribute.clone()],
                )
                .await?;
            out.extend(entries.into_iter().filter_map(|e| {
                Some(GroupRef {
                    id: e.first(&g.id_attribute)?.to_string(),
                    name: e.first(&g.name_attribute).unwrap_or_default().to_string(),
                })
            }));
        }
        Ok(out)
    }

    /// Replace `old` by `new` (or remove it when `new` is None) in every group that lists it.
    /// Each group is one permissive modify, so a group already updated is no error.
    pub async fn rewrite_memberships(&self, old: &str, new: Option<&str>) -> Result<(), ScimError> {
        let attr = &self.groups.member_attribute;
        for (entry, _) in self.groups_listing(old).await? {
            let mut mods = vec![Modification::Delete(attr.clone(), vec![old.to_string()])];
            if let Some(n) = new {
                mods.push(Modification::Add(attr.clone(), vec![n.to_string()]));
            }
            self.dir.modify(&entry.dn, mods, None, &[]).await?;
        }
        Ok(())
    }
}
