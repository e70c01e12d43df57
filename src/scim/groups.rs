//! The `/Groups` resource. Membership changes are LDAP add/delete of just the named values, with the
//! Permissive Modify control, so they never read the member list and cost the same for any group size.

use super::filter::{parse_path, CompValue, CompareOp, Filter, PatchPath};
use super::id_cache::{IdCache, Subtree};
use super::members::{Member, Members};
use super::patch::{parse_request_limited, OpKind, PatchOperation};
use super::time::generalized_to_rfc3339;
use super::users::{ListPage, ListQuery, UserServiceSettings};
use super::{etag, IfMatch, ScimError};
use crate::directory::{
    dn, DirectoryError, Entry, EntryReader, EntryWriter, Modification, Scope, SearchRequest,
    SortKey,
};
use crate::mapping::groups::{
    referenced_member_ids, translate_group_filter, GroupMapping, CORE_GROUP, ENTRA_GROUP,
};
use crate::mapping::resource::{get_ci, is_empty_value};
use crate::mapping::UserMapping;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub struct GroupService<D> {
    dir: Arc<D>,
    users: Arc<UserMapping>,
    groups: Arc<GroupMapping>,
    settings: UserServiceSettings,
    /// Attributes with an ordering rule, read from the subschema on first need.
    orderable: Arc<tokio::sync::OnceCell<Option<std::collections::HashSet<String>>>>,
    /// Where each group id was last seen (a hint checked by every use; see `id_cache`).
    ids: Arc<IdCache>,
}

impl<D> Clone for GroupService<D> {
    fn clone(&self) -> Self {
        GroupService {
            dir: self.dir.clone(),
            users: self.users.clone(),
            groups: self.groups.clone(),
            settings: self.settings.clone(),
            orderable: self.orderable.clone(),
            ids: self.ids.clone(),
        }
    }
}

/// One membership change, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MemberChange {
    Add(Vec<String>),
    Remove(Vec<String>),
    RemoveAll,
    ReplaceAll(Vec<String>),
}

/// Everything a PATCH or PUT asks for, before any directory access.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct GroupChanges {
    display_name: Option<String>,
    /// `Some(None)` removes the externalId.
    external_id: Option<Option<String>>,
    members: Vec<MemberChange>,
}

fn text(v: &Value, what: &str) -> Result<Option<String>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) if s.contains('\0') => Err(ScimError::InvalidValue(format!(
            "{what} contains a NUL character"
        ))),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(ScimError::InvalidValue(format!(
            "{what} must be a string, got {other}"
        ))),
    }
}

/// Member ids from a `members` value: `[{"value": id}, ...]`, one object, or a list of id strings.
fn member_ids(v: Option<&Value>) -> Result<Vec<String>, ScimError> {
    let items: Vec<&Value> = match v {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        Some(other) => {
            return Err(ScimError::InvalidValue(format!(
                "members must be an array, got {other}"
            )))
        }
    };
    let mut ids = Vec::new();
    for item in items {
        let id = match item {
            Value::Object(o) => get_ci(o, "value").and_then(Value::as_str),
            Value::String(s) => Some(s.as_str()),
            _ => None,
        };
        match id {
            Some(id) if !id.is_empty() => {
                if !ids.iter().any(|i: &String| i == id) {
                    ids.push(id.to_string());
                }
            }
            _ => {
                return Err(ScimError::InvalidValue(format!(
                    "each member needs a value (the member's id), got {item}"
                )))
            }
        }
    }
    Ok(ids)
}

/// Ids named by `members[value eq "a" or value eq "b"]`; other filters cannot be applied without
/// reading the member list, so they are refused.
fn ids_in_member_filter(f: &Filter, out: &mut Vec<String>) -> Result<(), ScimError> {
    match f {
        Filter::Or(a, b) => {
            ids_in_member_filter(a, out)?;
            ids_in_member_filter(b, out)
        }
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(id),
        } if path.name.eq_ignore_ascii_case("value") && path.sub.is_none() => {
            out.push(id.clone());
            Ok(())
        }
        _ => Err(ScimError::InvalidPath(
            "members[...] supports value eq \"<id>\" (optionally joined with or)".into(),
        )),
    }
}

impl GroupChanges {
    fn apply_op(
        &mut self,
        op: OpKind,
        path: &PatchPath,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        let name = path.attr.name.as_str();
        if path
            .attr
            .urn
            .as_deref()
            .is_some_and(|u| !u.eq_ignore_ascii_case(CORE_GROUP))
        {
            return Err(ScimError::InvalidPath(format!(
                "{} is not a Group attribute",
                path.attr
            )));
        }
        if name.eq_ignore_ascii_case("members") {
            if path.attr.sub.is_some() || path.sub.is_some() {
                return Err(ScimError::InvalidPath(
                    "address members as a whole or as members[value eq \"<id>\"]".into(),
                ));
            }
            let change = match (op, &path.filter) {
                (OpKind::Add, None) => MemberChange::Add(member_ids(value)?),
                (OpKind::Replace, None) => MemberChange::ReplaceAll(member_ids(value)?),
                // Entra: remove with a value list removes only the listed members.
                (OpKind::Remove, None) => match value {
                    Some(v) if !is_empty_value(v) => MemberChange::Remove(member_ids(Some(v))?),
                    _ => MemberChange::RemoveAll,
                },
                (OpKind::Remove, Some(f)) => {
                    let mut ids = Vec::new();
                    ids_in_member_filter(f, &mut ids)?;
                    MemberChange::Remove(ids)
                }
                (_, Some(_)) => {
                    return Err(ScimError::InvalidPath(
                        "add and replace take members without a filter".into(),
                    ))
                }
            };
            self.members.push(change);
            return Ok(());
        }
        if path.filter.is_some() || path.attr.sub.is_some() || path.sub.is_some() {
            return Err(ScimError::InvalidPath(format!(
                "{} has no sub-attributes",
                path.attr.name
            )));
        }
        if name.eq_ignore_ascii_case("displayName") {
            match (
                op,
                value.map(|v| text(v, "displayName")).transpose()?.flatten(),
            ) {
                (OpKind::Remove, _) | (_, None) => {
                    return Err(ScimError::InvalidValue(
                        "displayName is required and cannot be removed".into(),
                    ))
                }
                (_, Some(n)) => self.display_name = Some(n),
            }
        } else if name.eq_ignore_ascii_case("externalId") {
            self.external_id = Some(match op {
                OpKind::Remove => None,
                _ => value.map(|v| text(v, "externalId")).transpose()?.flatten(),
            });
        } else if name.eq_ignore_ascii_case("id") {
            return Err(ScimError::Mutability("id is read-only".into()));
        } else if ["meta", "schemas"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(name))
        {
            // read-only, ignored
        } else if op == OpKind::Remove || value.is_none_or(is_empty_value) {
            // nothing stored, nothing to change
        } else {
            return Err(ScimError::InvalidValue(format!(
                "attribute {name} is not stored for groups by this gateway"
            )));
        }
        Ok(())
    }

    fn from_patch(ops: &[PatchOperation]) -> Result<GroupChanges, ScimError> {
        let mut c = GroupChanges::default();
        for op in ops {
            match &op.path {
                Some(p) => c.apply_op(op.op, p, op.value.as_ref())?,
                None => {
                    let Some(Value::Object(values)) = &op.value else {
                        return Err(ScimError::InvalidValue(
                            "an operation without path needs an object value".into(),
                        ));
                    };
                    for (k, v) in values {
                        // Okta renames with {"id": .., "displayName": ..}: the id is read-only and ignored.
                        if k.eq_ignore_ascii_case("id") {
                            continue;
                        }
                        let p = parse_path(k)
                            .map_err(|e| ScimError::InvalidPath(format!("{k:?}: {e}")))?;
                        c.apply_op(op.op, &p, Some(v))?;
                    }
                }
            }
        }
        Ok(c)
    }

    /// A full resource (POST or PUT body).
    fn from_resource(body: &Value) -> Result<GroupChanges, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::InvalidSyntax("the resource must be a JSON object".into()))?;
        // A full resource replaces everything: what it leaves out is removed.
        let mut c = GroupChanges {
            external_id: Some(None),
            ..Default::default()
        };
        for (k, v) in obj {
            if ["schemas", "id", "meta"]
                .iter()
                .any(|r| r.eq_ignore_ascii_case(k))
            {
                continue;
            }
            if k.eq_ignore_ascii_case(ENTRA_GROUP) || k.eq_ignore_ascii_case(CORE_GROUP) {
                if is_empty_value(v) {
                    continue;
                }
                return Err(ScimError::InvalidValue(format!(
                    "{k} carries no attributes this gateway stores"
                )));
            }
            let p = parse_path(k).map_err(|e| ScimError::InvalidPath(format!("{k:?}: {e}")))?;
            c.apply_op(OpKind::Replace, &p, Some(v))?;
        }
        if c.display_name.is_none() {
            return Err(ScimError::InvalidValue("displayName is required".into()));
        }
        if c.members.is_empty() {
            c.members.push(MemberChange::ReplaceAll(vec![]));
        }
        Ok(c)
    }

    /// Whether the changes only add or remove the members they name (nothing else a memberof
    /// overlay follows: no whole-list replace).
    fn names_its_members(&self) -> bool {
        !self.members.is_empty()
            && self
                .members
                .iter()
                .all(|m| matches!(m, MemberChange::Add(_) | MemberChange::Remove(_)))
    }

    /// The members these changes name that the directory holds, from `resolved`.
    fn changed<'a>(&self, resolved: &'a HashMap<String, Member>) -> Vec<&'a Member> {
        self.ids().iter().filter_map(|i| resolved.get(i)).collect()
    }

    fn ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in &self.members {
            if let MemberChange::Add(ids)
            | MemberChange::Remove(ids)
            | MemberChange::ReplaceAll(ids) = m
            {
                for id in ids {
                    if !out.contains(id) {
                        out.push(id.clone());
                    }
                }
            }
        }
        out
    }
}

impl<D: EntryReader + EntryWriter> GroupService<D> {
    pub fn new(
        dir: Arc<D>,
        users: Arc<UserMapping>,
        groups: Arc<GroupMapping>,
        settings: UserServiceSettings,
    ) -> Self {
        GroupService {
            dir,
            users,
            groups,
            settings,
            orderable: Arc::default(),
            ids: Arc::default(),
        }
    }

    /// Where groups live and how they are told apart, for `id_cache`.
    fn subtree(&self) -> Subtree<'_> {
        let g = &self.groups;
        Subtree {
            base: &g.base,
            scope: g.scope,
            object_filter: &g.object_filter,
            id_attribute: &g.id_attribute,
        }
    }

    /// Remember where these groups are, for requests by id that follow.
    fn remember(&self, entries: &[Entry]) {
        self.ids.remember(&self.groups.id_attribute, entries);
    }

    pub fn mapping(&self) -> &GroupMapping {
        &self.groups
    }

    fn members(&self) -> Members<'_, D> {
        Members {
            dir: self.dir.as_ref(),
            users: &self.users,
            groups: &self.groups,
        }
    }

    fn not_found(id: &str) -> ScimError {
        ScimError::NotFound(format!("Group {id} not found"))
    }

    /// The LDAP attribute a `sortBy` names, or 400 when it names nothing groups store.
    fn sort_key(&self, q: &ListQuery) -> Result<Option<SortKey>, ScimError> {
        let Some(p) = q.sort_path()? else {
            return Ok(None);
        };
        let g = &self.groups;
        let core = p
            .urn
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(CORE_GROUP));
        let sub = p.sub.as_deref().map(str::to_ascii_lowercase);
        let attr = match (core, p.name.to_ascii_lowercase().as_str(), sub.as_deref()) {
            (true, "id", None) => Some(g.id_attribute.clone()),
            (true, "displayname", None) => Some(g.name_attribute.clone()),
            (true, "externalid", None) => g.external_id_attribute.clone(),
            (true, "meta", Some("created")) => Some(g.created_attribute.clone()),
            (true, "meta", Some("lastmodified")) => Some(g.modified_attribute.clone()),
            _ => None,
        };
        let attr = attr.ok_or_else(|| {
            ScimError::InvalidValue(format!(
                "sortBy {p} is not a group attribute this gateway can sort by"
            ))
        })?;
        Ok(Some(SortKey {
            attr,
            reverse: q.descending,
        }))
    }

    /// With `If-Match`: 412 unless it names the group's current version, else the assertion
    /// that makes the write atomic with that check.
    fn precondition(
        &self,
        entry: &Entry,
        if_match: Option<&IfMatch>,
    ) -> Result<Option<String>, ScimError> {
        let Some(pre) = if_match else {
            return Ok(None);
        };
        let attr = self.groups.version_attribute.as_deref();
        let version = attr.and_then(|a| entry.first(a));
        if !pre.accepts(version) {
            return Err(ScimError::PreconditionFailed(format!(
                "the group is at version {}, not the one in If-Match",
                version.map(etag).unwrap_or_else(|| "(none)".into())
            )));
        }
        Ok(match (attr, version) {
            (Some(a), Some(v)) => Some(format!("({a}={})", ldap3::ldap_escape(v))),
            _ => None,
        })
    }

    async fn find(&self, id: &str, with_members: bool) -> Result<Option<Entry>, ScimError> {
        let attrs = self.groups.read_attributes(with_members).into();
        Ok(self
            .subtree()
            .find(self.dir.as_ref(), &self.ids, id, attrs)
            .await?)
    }

    pub async fn get(
        &self,
        id: &str,
        base_url: &str,
        with_members: bool,
    ) -> Result<Value, ScimError> {
        let entry = self
            .find(id, with_members)
            .await?
            .ok_or_else(|| Self::not_found(id))?;
        self.render(&entry, base_url, with_members).await
    }

    pub async fn list(
        &self,
        q: &ListQuery,
        base_url: &str,
        with_members: bool,
    ) -> Result<ListPage, ScimError> {
        let g = &self.groups;
        let filter = match q.parsed_filter()? {
            None => g.object_filter.clone(),
            Some(ast) => {
                let ids = referenced_member_ids(&ast);
                let resolved: HashMap<String, String> = self
                    .members()
                    .resolve_ids(&ids)
                    .await?
                    .into_iter()
                    .map(|(id, m)| (id, m.value))
                    .collect();
                let ldap = translate_group_filter(g, &ast, &resolved)?;
                super::check_ordering(self.dir.as_ref(), &self.orderable, &ldap, |attr| {
                    if attr.eq_ignore_ascii_case(&g.name_attribute) {
                        "displayName".to_string()
                    } else {
                        attr.to_string()
                    }
                })
                .await?;
                ldap
            }
        };
        let (start_index, count) = q.window(&self.settings);
        let page = self
            .dir
            .search_page(
                SearchRequest {
                    base: g.base.clone(),
                    scope: g.scope,
                    filter,
                    attrs: g.read_attributes(with_members).into(),
                },
                &g.id_attribute,
                start_index - 1,
                count,
                self.sort_key(q)?,
            )
            .await?;
        self.remember(&page.entries);
        let mut resources = Vec::with_capacity(page.entries.len());
        for e in &page.entries {
            resources.push(self.render(e, base_url, with_members).await?);
        }
        Ok(ListPage {
            total: page.total,
            start_index,
            resources,
        })
    }

    pub async fn create(&self, body: &Value, base_url: &str) -> Result<Value, ScimError> {
        let g = &self.groups;
        let changes = GroupChanges::from_resource(body)?;
        let name = changes.display_name.clone().unwrap_or_default();
        self.ensure_unique_name(&name, None).await?;
        let resolved = self.resolve(&changes).await?;
        let mut attrs: Vec<(String, Vec<String>)> =
            vec![("objectClass".into(), g.object_classes.clone())];
        attrs.extend(g.constants.iter().cloned());
        attrs.push((g.rdn_attribute.clone(), vec![name.clone()]));
        if !g.renames_by_modrdn() {
            attrs.push((g.name_attribute.clone(), vec![name.clone()]));
        }
        if let (Some(attr), Some(Some(ext))) = (&g.external_id_attribute, &changes.external_id) {
            attrs.push((attr.clone(), vec![ext.clone()]));
        } else if let (None, Some(Some(_))) = (&g.external_id_attribute, &changes.external_id) {
            return Err(ScimError::InvalidValue(
                "externalId is not stored for groups by this gateway".into(),
            ));
        }
        let mut values = Vec::new();
        if let Some(MemberChange::ReplaceAll(ids)) = changes.members.last() {
            values.extend(
                ids.iter()
                    .filter_map(|id| resolved.get(id))
                    .map(|m| m.value.clone()),
            );
        }
        values.extend(g.placeholder_member.clone());
        dedup(&mut values);
        if !values.is_empty() {
            attrs.push((g.member_attribute.clone(), values));
        }
        let new_dn = format!("{},{}", dn::rdn(&g.rdn_attribute, &name), g.base);
        let entry = match self.dir.add(&new_dn, attrs, &g.read_attributes(true)).await {
            Err(DirectoryError::AlreadyExists) => {
                return Err(ScimError::Uniqueness(format!(
                    "a group named {name:?} already exists"
                )))
            }
            other => other?,
        };
        self.remember(std::slice::from_ref(&entry));
        self.render(&entry, base_url, true).await
    }

    pub async fn replace(
        &self,
        id: &str,
        body: &Value,
        base_url: &str,
    ) -> Result<Value, ScimError> {
        self.replace_if(id, body, base_url, None).await
    }

    /// PUT under an optional `If-Match` precondition (412 when it fails).
    pub async fn replace_if(
        &self,
        id: &str,
        body: &Value,
        base_url: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<Value, ScimError> {
        super::ensure_same_id(body, id)?;
        let changes = GroupChanges::from_resource(body)?;
        self.write(id, &changes, if_match).await?;
        self.get(id, base_url, true).await
    }

    /// PATCH. Adding or removing named members (directory-kept memberships, no If-Match): the
    /// group's DN (remembered, or an id search) and one batched search for the member ids, side
    /// by side, then one asserted modify, without a read of the group. Anything else: a read of
    /// the group (without its members) beside the member ids' search, then one modify (and a
    /// modrdn for a rename). Answers 204.
    pub async fn patch(&self, id: &str, body: &Value) -> Result<(), ScimError> {
        self.patch_if(id, body, None).await
    }

    /// PATCH under an optional `If-Match` precondition (412 when it fails).
    pub async fn patch_if(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&IfMatch>,
    ) -> Result<(), ScimError> {
        let ops = parse_request_limited(body, self.settings.max_patch_operations)?;
        let changes = GroupChanges::from_patch(&ops)?;
        self.write(id, &changes, if_match).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), ScimError> {
        self.delete_if(id, None).await
    }

    /// DELETE under an optional `If-Match` precondition (412 when it fails).
    pub async fn delete_if(&self, id: &str, if_match: Option<&IfMatch>) -> Result<(), ScimError> {
        let entry = self
            .find(id, false)
            .await?
            .ok_or_else(|| Self::not_found(id))?;
        let guard = self.precondition(&entry, if_match)?;
        let guard = match self
            .members()
            .overlay_safe_guard(&entry.dn, guard, None)
            .await
        {
            Err(ScimError::Directory(DirectoryError::Conflict)) => return Err(precondition_lost()),
            other => other?,
        };
        self.ids.remove(id);
        match self.dir.delete(&entry.dn, guard).await {
            Err(DirectoryError::NoSuchObject) => return Err(Self::not_found(id)),
            Err(DirectoryError::Conflict) => return Err(precondition_lost()),
            other => other?,
        }
        if self.groups.integrity == crate::mapping::groups::MembershipIntegrity::Gateway
            && self.groups.member_value == crate::mapping::groups::MemberValue::Dn
        {
            self.members().rewrite_memberships(&entry.dn, None).await?;
        }
        Ok(())
    }

    /// Resolve every member id the changes name, in one batched search; unknown ids that would be
    /// added are refused, unknown ids that would be removed cannot be members and are skipped.
    async fn resolve(&self, c: &GroupChanges) -> Result<HashMap<String, Member>, ScimError> {
        let ids = c.ids();
        let resolved = self.members().resolve_ids(&ids).await?;
        let adds = c.members.iter().filter_map(|m| match m {
            MemberChange::Add(ids) | MemberChange::ReplaceAll(ids) => Some(ids),
            _ => None,
        });
        let unknown: Vec<&String> = adds
            .flatten()
            .filter(|id| !resolved.contains_key(*id))
            .collect();
        if !unknown.is_empty() {
            let list: Vec<String> = unknown.iter().map(|s| format!("{s:?}")).collect();
            return Err(ScimError::InvalidValue(format!(
                "no user or group has the id {}; nothing was changed",
                list.join(", ")
            )));
        }
        Ok(resolved)
    }

    /// Apply changes to group `id`. A change of named members only goes without a read of the
    /// group (`write_members_blind`); otherwise, or when that finds the group moved, the group
    /// and the member ids the changes name are read side by side (two searches in flight, one
    /// round trip of latency), then one modify for members and attributes, then a modrdn for a
    /// rename (reverted if the modrdn fails). An `If-Match` makes the first write conditional
    /// on the version read.
    async fn write(
        &self,
        id: &str,
        c: &GroupChanges,
        if_match: Option<&IfMatch>,
    ) -> Result<(), ScimError> {
        // The member ids' resolution (or its refusal) from a try without a read that fell back
        // to the general path: resolved once either way.
        let mut known = None;
        if if_match.is_none() && self.members_only(c) {
            let subtree = self.subtree();
            let (dn, resolved) = tokio::join!(
                subtree.locate(self.dir.as_ref(), &self.ids, id),
                self.resolve(c)
            );
            // An unknown group or member: the general path reads and answers in its order.
            known = Some(match (dn?, resolved) {
                (Some(dn), Ok(resolved)) => {
                    if self.write_members_blind(id, &dn, c, &resolved).await? {
                        return Ok(());
                    }
                    Ok(resolved)
                }
                (_, resolved) => resolved,
            });
        }
        let (entry, resolved) = tokio::join!(self.find(id, false), async {
            match known {
                Some(r) => r,
                None => self.resolve(c).await,
            }
        });
        // In the order of a sequential read: the group, its precondition, then the members.
        let entry = entry?.ok_or_else(|| Self::not_found(id))?;
        let guard = self.precondition(&entry, if_match)?;
        let resolved = resolved?;
        let conditional = guard.is_some();
        self.write_guarded(&entry, c, &resolved, guard)
            .await
            .map_err(|e| match e {
                ScimError::Directory(DirectoryError::Conflict) if conditional => {
                    precondition_lost()
                }
                e => e,
            })
    }

    /// Whether `c` only adds or removes named members of a group whose memberships the directory
    /// keeps: then the write needs no read of the group (`write_members_blind`). A rename, an
    /// externalId, or a whole-list replace (which changes members the request does not name)
    /// take the general path, as do memberships the gateway keeps itself.
    fn members_only(&self, c: &GroupChanges) -> bool {
        self.groups.integrity == crate::mapping::groups::MembershipIntegrity::Directory
            && c.display_name.is_none()
            && c.external_id.is_none()
            && c.names_its_members()
    }

    /// A member change written without reading the group: one modify at the group's DN (from
    /// the id cache, or an id search), guarded by one assertion that holds on that group and on
    /// the members being changed (`Members::overlay_safe_guard`). `false` when the general
    /// path must do it: the entry at the DN is not that group any more, or is gone (nothing was
    /// written then, and the DN is forgotten), or the change names no one the directory holds.
    async fn write_members_blind(
        &self,
        id: &str,
        dn: &str,
        c: &GroupChanges,
        resolved: &HashMap<String, Member>,
    ) -> Result<bool, ScimError> {
        let mods = self.modifications(c, resolved)?;
        if mods.is_empty() {
            return Ok(false);
        }
        let guard = self
            .members()
            .overlay_safe_guard(
                dn,
                Some(self.subtree().id_filter(id, "")),
                Some(&c.changed(resolved)),
            )
            .await?;
        match self.dir.modify(dn, mods, guard, &[]).await {
            Ok(_) => {
                self.ids.insert(id, dn);
                Ok(true)
            }
            Err(DirectoryError::Conflict | DirectoryError::NoSuchObject) => {
                self.ids.remove(id);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The member and externalId modifications of `c` (a rename is the caller's).
    fn modifications(
        &self,
        c: &GroupChanges,
        resolved: &HashMap<String, Member>,
    ) -> Result<Vec<Modification>, ScimError> {
        let g = &self.groups;
        let value_of = |ids: &Vec<String>| -> Vec<String> {
            let mut v: Vec<String> = ids
                .iter()
                .filter_map(|id| resolved.get(id))
                .map(|m| m.value.clone())
                .collect();
            dedup(&mut v);
            v
        };
        let mut mods = Vec::new();
        for m in &c.members {
            match m {
                MemberChange::Add(ids) => {
                    mods.push(Modification::Add(g.member_attribute.clone(), value_of(ids)))
                }
                MemberChange::Remove(ids) => {
                    let v = value_of(ids);
                    if !v.is_empty() {
                        mods.push(Modification::Delete(g.member_attribute.clone(), v));
                    }
                }
                MemberChange::RemoveAll => mods.push(Modification::Replace(
                    g.member_attribute.clone(),
                    g.placeholder_member.iter().cloned().collect(),
                )),
                MemberChange::ReplaceAll(ids) => {
                    let mut v = value_of(ids);
                    v.extend(g.placeholder_member.clone());
                    dedup(&mut v);
                    mods.push(Modification::Replace(g.member_attribute.clone(), v));
                }
            }
        }
        if let Some(ext) = &c.external_id {
            match (&g.external_id_attribute, ext) {
                (Some(attr), v) => mods.push(Modification::Replace(
                    attr.clone(),
                    v.iter().cloned().collect(),
                )),
                (None, Some(_)) => {
                    return Err(ScimError::InvalidValue(
                        "externalId is not stored for groups by this gateway".into(),
                    ))
                }
                (None, None) => {}
            }
        }
        mods.retain(|m| !matches!(m, Modification::Add(_, v) if v.is_empty()));
        Ok(mods)
    }

    async fn write_guarded(
        &self,
        entry: &Entry,
        c: &GroupChanges,
        resolved: &HashMap<String, Member>,
        guard: Option<String>,
    ) -> Result<(), ScimError> {
        let g = &self.groups;
        let mut mods = self.modifications(c, resolved)?;
        let old_name = entry
            .first(&g.name_attribute)
            .unwrap_or_default()
            .to_string();
        let rename = match &c.display_name {
            Some(n) if *n != old_name => Some(n.clone()),
            _ => None,
        };
        // Without a rename, a change of named members only is guarded atomically.
        let changed = c.changed(resolved);
        let only_named = (rename.is_none() && c.names_its_members()).then_some(&changed[..]);
        let guard = self
            .members()
            .overlay_safe_guard(&entry.dn, guard, only_named)
            .await?;
        if let Some(n) = &rename {
            self.ensure_unique_name(n, Some(&entry.dn)).await?;
            if !g.renames_by_modrdn() {
                mods.push(Modification::Replace(
                    g.name_attribute.clone(),
                    vec![n.clone()],
                ));
            }
        }
        if rename.is_some() {
            if let Some(id) = entry.first(&g.id_attribute) {
                self.ids.remove(id);
            }
        }
        // Rename first: a modrdn is cleanly reversible, a permissive member change is not
        // (re-deleting an added value could drop a membership that existed before).
        let mut target = entry.dn.clone();
        let modrdn = rename.as_ref().filter(|_| g.renames_by_modrdn());
        if let Some(n) = modrdn {
            let old_rdn = dn::split_rdns(&entry.dn)
                .into_iter()
                .next()
                .unwrap_or_default();
            target = match self
                .dir
                .rename(&entry.dn, &dn::rdn(&g.rdn_attribute, n), None, guard)
                .await
            {
                Ok(new_dn) => new_dn,
                Err(DirectoryError::AlreadyExists) => {
                    return Err(ScimError::Uniqueness(format!(
                        "a group named {n:?} already exists"
                    )))
                }
                Err(e) => return Err(e.into()),
            };
            if !mods.is_empty() {
                if let Err(e) = self.dir.modify(&target, mods, None, &[]).await {
                    if let Err(undo) = self.dir.rename(&target, &old_rdn, None, None).await {
                        tracing::error!(error = %undo, "could not revert a group rename after a failed modify");
                    }
                    return Err(e.into());
                }
            }
            if g.integrity == crate::mapping::groups::MembershipIntegrity::Gateway
                && g.member_value == crate::mapping::groups::MemberValue::Dn
            {
                self.members()
                    .rewrite_memberships(&entry.dn, Some(&target))
                    .await?;
            }
        } else if !mods.is_empty() {
            self.dir.modify(&target, mods, guard, &[]).await?;
        }
        Ok(())
    }

    /// displayName must be unique among groups. With one-level scope and the name as RDN the
    /// directory enforces it itself.
    async fn ensure_unique_name(
        &self,
        name: &str,
        except_dn: Option<&str>,
    ) -> Result<(), ScimError> {
        let g = &self.groups;
        if g.scope == Scope::OneLevel && g.renames_by_modrdn() {
            return Ok(());
        }
        let found = self
            .dir
            .search(SearchRequest {
                base: g.base.clone(),
                scope: g.scope,
                filter: format!(
                    "(&{}({}={}))",
                    g.object_filter,
                    g.name_attribute,
                    ldap3::ldap_escape(name)
                ),
                attrs: vec!["1.1".into()].into(),
            })
            .await?;
        if found
            .iter()
            .any(|e| except_dn.is_none_or(|d| dn::normalize(d) != dn::normalize(&e.dn)))
        {
            return Err(ScimError::Uniqueness(format!(
                "a group named {name:?} already exists"
            )));
        }
        Ok(())
    }

    async fn render(
        &self,
        entry: &Entry,
        base_url: &str,
        with_members: bool,
    ) -> Result<Value, ScimError> {
        let g = &self.groups;
        let id = entry
            .first(&g.id_attribute)
            .ok_or_else(|| DirectoryError::Other {
                code: "missingId",
                message: format!("group has no {} attribute", g.id_attribute),
            })?
            .to_string();
        let mut out = Map::new();
        out.insert("schemas".into(), json!([CORE_GROUP]));
        out.insert("id".into(), json!(id));
        if let Some(n) = entry.first(&g.name_attribute) {
            out.insert("displayName".into(), json!(n));
        }
        if let Some(ext) = g
            .external_id_attribute
            .as_deref()
            .and_then(|a| entry.first(a))
        {
            out.insert("externalId".into(), json!(ext));
        }
        if with_members {
            let members = match &g.member_of_attribute {
                Some(member_of) if g.members_from_member_of() => {
                    self.members()
                        .members_by_member_of(member_of, &entry.dn)
                        .await?
                }
                _ => {
                    self.members()
                        .resolve_values(entry.values(&g.member_attribute))
                        .await?
                }
            };
            let list: Vec<Value> = members
                .into_iter()
                .map(|m| {
                    let endpoint = match m.kind {
                        super::members::MemberKind::User => "Users",
                        super::members::MemberKind::Group => "Groups",
                    };
                    json!({"value": m.id, "$ref": format!("{base_url}/{endpoint}/{}", m.id), "type": m.kind.as_str()})
                })
                .collect();
            out.insert("members".into(), Value::Array(list));
        }
        let mut meta = Map::new();
        meta.insert("resourceType".into(), json!("Group"));
        let created = entry
            .first(&g.created_attribute)
            .and_then(generalized_to_rfc3339);
        let modified = entry
            .first(&g.modified_attribute)
            .and_then(generalized_to_rfc3339);
        if let Some(c) = &created {
            meta.insert("created".into(), json!(c));
        }
        if let Some(m) = modified.or(created) {
            meta.insert("lastModified".into(), json!(m));
        }
        meta.insert("location".into(), json!(format!("{base_url}/Groups/{id}")));
        if let Some(v) = g.version_attribute.as_deref().and_then(|a| entry.first(a)) {
            meta.insert("version".into(), json!(etag(v)));
        }
        out.insert("meta".into(), Value::Object(meta));
        Ok(Value::Object(out))
    }
}

fn precondition_lost() -> ScimError {
    ScimError::PreconditionFailed(
        "the group changed concurrently; read it again for its current version".into(),
    )
}

fn dedup(v: &mut Vec<String>) {
    let mut seen: Vec<String> = Vec::new();
    v.retain(|x| {
        let k = x.to_lowercase();
        if seen.contains(&k) {
            false
        } else {
            seen.push(k);
            true
        }
    });
}

#[cfg(test)]
mod tests;
