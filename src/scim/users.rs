//! The `/Users` resource: every RFC 7644 operation over the directory traits.

use super::blind;
use super::filter::{parse_filter, parse_path, AttrPath, Filter};
use super::id_cache::{IdCache, Subtree};
use super::members::Members;
use super::patch::{self, SchemaLookup};
use super::projection::Projection;
use super::time::generalized_to_rfc3339;
use super::{etag, IfMatch, ScimError};
use crate::config::Secret;
use crate::directory::{
    dn, DirectoryError, Entry, EntryReader, EntryWriter, Modification, Page, Scope, SearchRequest,
    SortKey,
};
use crate::mapping::groups::{GroupMapping, MemberValue, MembershipIntegrity};
use crate::mapping::resource::{UserMeta, UserValues};
use crate::mapping::translate::{referenced_ids, translate_filter};
use crate::mapping::{DisableStrategy, PasswordMethod, UserMapping, ValueKind, CORE_USER};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest filter accepted; Entra's longest real filters are a few hundred bytes.
const MAX_FILTER_BYTES: usize = 8192;
/// How often a PATCH is retried when the entry changed between its read and its write.
const CONFLICT_RETRIES: usize = 3;
/// How many numbered names ("Name (2)" … ) a create tries when its RDN value is taken.
const RDN_SUFFIXES: usize = 9;
/// `userAccountControl` of an enabled normal account.
const AD_NORMAL_ACCOUNT: &str = "512";

/// A password nobody knows, for AD accounts created without one: 32 random letters and digits
/// after a prefix that satisfies AD's complexity rule (three character classes).
fn random_password() -> Secret {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 32];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        tracing::error!("no randomness for a generated password");
    }
    let tail: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    Secret::new(format!("Gw-7{tail}"))
}

/// A create refused as existing although its DN is free: a value the directory keeps unique
/// elsewhere (AD's sAMAccountName, userPrincipalName) is taken.
fn taken_elsewhere(m: &UserMapping, attrs: &[(String, Vec<String>)]) -> ScimError {
    let named: Vec<String> = m
        .derived
        .iter()
        .map(|d| d.ldap.as_str())
        .chain(std::iter::once(m.slots[m.user_name_slot].ldap.as_str()))
        .filter_map(|a| {
            attrs
                .iter()
                .find(|(x, _)| x.eq_ignore_ascii_case(a))
                .and_then(|(_, v)| v.first())
                .map(|v| format!("{a} {v:?}"))
        })
        .collect();
    ScimError::Uniqueness(format!(
        "the directory already has an account with {}",
        named.join(" or ")
    ))
}

/// A directory refusal of a password as a client error that says which policy failed, with the
/// password itself scrubbed from whatever the server said.
fn password_refused(e: DirectoryError, password: &Secret) -> ScimError {
    match e {
        DirectoryError::Rejected { code, message } | DirectoryError::Other { code, message }
            if matches!(
                code,
                "constraintViolation" | "unwillingToPerform" | "invalidAttributeSyntax"
            ) =>
        {
            let said = message.replace(password.expose(), "***");
            let said = said.trim();
            ScimError::InvalidValue(if said.is_empty() {
                format!("the directory's password policy refused the password ({code})")
            } else {
                format!("the directory's password policy refused the password ({code}): {said}")
            })
        }
        other => other.into(),
    }
}

/// Paging and versioning settings the user service needs.
#[derive(Debug, Clone)]
pub struct UserServiceSettings {
    pub default_page_size: usize,
    pub max_page_size: usize,
    /// Attribute that changes on every write, used to guard read-modify-write; None disables the guard.
    pub version_attribute: Option<String>,
    /// Largest number of operations in one PATCH.
    pub max_patch_operations: usize,
}

/// Query parameters of a list request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<String>,
    /// `attributes` / `excludedAttributes`: also limits what is read from the directory.
    pub projection: Projection,
    /// `sortBy`: an attribute path.
    pub sort_by: Option<String>,
    /// `sortOrder=descending`.
    pub descending: bool,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
}

impl ListQuery {
    /// The 1-based start index and page size, with RFC 7644's edge cases: `startIndex < 1` means 1,
    /// a negative `count` means 0, and `count` never exceeds the configured maximum.
    pub fn window(&self, settings: &UserServiceSettings) -> (usize, usize) {
        let start_index = self.start_index.unwrap_or(1).max(1) as usize;
        let count = self
            .count
            .unwrap_or(settings.default_page_size as i64)
            .clamp(0, settings.max_page_size as i64) as usize;
        (start_index, count)
    }

    /// The `sortBy` path, parsed; `None` when the request does not sort.
    pub fn sort_path(&self) -> Result<Option<AttrPath>, ScimError> {
        let Some(text) = self
            .sort_by
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(None);
        };
        let p = parse_path(text)
            .map_err(|e| ScimError::InvalidValue(format!("sortBy {text:?}: {e}")))?;
        if p.filter.is_some() || p.sub.is_some() {
            return Err(ScimError::InvalidValue(format!(
                "sortBy {text:?} cannot carry a filter"
            )));
        }
        Ok(Some(p.attr))
    }

    /// The parsed `filter`, if one was given; malformed or oversized filters are `invalidFilter`.
    pub fn parsed_filter(&self) -> Result<Option<Filter>, ScimError> {
        match self.filter.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) if text.len() > MAX_FILTER_BYTES => Err(ScimError::InvalidFilter(format!(
                "filter longer than {MAX_FILTER_BYTES} bytes"
            ))),
            Some(text) => parse_filter(text)
                .map(Some)
                .map_err(|e| ScimError::InvalidFilter(format!("{e} in filter {text:?}"))),
        }
    }
}

#[cfg(test)]
impl UserServiceSettings {
    /// The settings the unit tests use: pages of 100 (at most 200), 1,000 PATCH operations.
    pub(crate) fn for_tests(version_attribute: Option<&str>) -> Self {
        UserServiceSettings {
            default_page_size: 100,
            max_page_size: 200,
            version_attribute: version_attribute.map(str::to_string),
            max_patch_operations: 1000,
        }
    }
}

/// One page of users.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub total: usize,
    pub start_index: usize,
    pub resources: Vec<Value>,
}

pub struct UserService<D> {
    dir: Arc<D>,
    mapping: Arc<UserMapping>,
    settings: UserServiceSettings,
    /// When groups are configured: for the read-only `groups` attribute and membership upkeep.
    groups: Option<Arc<GroupMapping>>,
    /// Attributes with an ordering rule, read from the subschema on first need.
    orderable: Arc<tokio::sync::OnceCell<Option<std::collections::HashSet<String>>>>,
    /// Where each id was last seen (a hint checked by every use; see `id_cache`).
    ids: Arc<IdCache>,
    /// PATCHes that need no read go as one modify (`blind`); off only to test the general path.
    blind: bool,
    /// Every attribute a whole user is read from (`read_attributes`), listed once: lent to
    /// each search and post-read that reads the whole user.
    read_all: Arc<[String]>,
}

impl<D> Clone for UserService<D> {
    fn clone(&self) -> Self {
        UserService {
            dir: self.dir.clone(),
            mapping: self.mapping.clone(),
            settings: self.settings.clone(),
            groups: self.groups.clone(),
            orderable: self.orderable.clone(),
            ids: self.ids.clone(),
            blind: self.blind,
            read_all: self.read_all.clone(),
        }
    }
}

impl SchemaLookup for UserMapping {
    fn schema_urn(&self, key: &str) -> Option<String> {
        UserMapping::schema_urn(self, key).map(str::to_string)
    }
    fn schema_of(&self, urn: Option<&str>, attr: &str) -> Option<String> {
        UserMapping::schema_of(self, urn, attr).map(str::to_string)
    }
    fn core(&self) -> &str {
        CORE_USER
    }
}

impl<D: EntryReader + EntryWriter> UserService<D> {
    pub fn new(dir: Arc<D>, mapping: Arc<UserMapping>, settings: UserServiceSettings) -> Self {
        let mut read_all = mapping.read_attributes();
        read_all.extend(settings.version_attribute.clone());
        UserService {
            read_all: read_all.into(),
            dir,
            mapping,
            settings,
            groups: None,
            orderable: Arc::default(),
            ids: Arc::default(),
            blind: true,
        }
    }

    /// Every PATCH through the read-apply-write path, for tests of that path.
    #[cfg(test)]
    pub(crate) fn general_path_only(mut self) -> Self {
        self.blind = false;
        self
    }

    /// Serve `groups` on users and keep memberships right on delete and rename.
    pub fn with_groups(mut self, groups: Option<Arc<GroupMapping>>) -> Self {
        self.groups = groups;
        self
    }

    fn members(&self) -> Option<Members<'_, D>> {
        Some(Members {
            dir: self.dir.as_ref(),
            users: &self.mapping,
            groups: self.groups.as_deref()?,
        })
    }

    /// The value groups store for this user: its DN, or its user name for posixGroup.
    fn member_value(&self, entry_dn: &str, values: &UserValues) -> Option<String> {
        match self.groups.as_ref()?.member_value {
            MemberValue::Dn => Some(entry_dn.to_string()),
            MemberValue::UserName => values.slots[self.mapping.user_name_slot].first().cloned(),
        }
    }

    /// After a user's DN or name changed (`new` Some) or it was deleted (`new` None): update the
    /// groups that list it, unless the directory does that itself.
    async fn keep_memberships(
        &self,
        old: Option<String>,
        new: Option<String>,
    ) -> Result<(), ScimError> {
        let (Some(members), Some(g)) = (self.members(), self.groups.as_ref()) else {
            return Ok(());
        };
        if g.integrity != MembershipIntegrity::Gateway {
            return Ok(());
        }
        match (old, new) {
            (Some(o), n) if Some(&o) != n.as_ref() => {
                members.rewrite_memberships(&o, n.as_deref()).await
            }
            _ => Ok(()),
        }
    }

    /// The read-only `groups` of a user: from memberOf when configured, else a reverse search.
    async fn groups_of(&self, entry: &Entry, base_url: &str) -> Result<Option<Value>, ScimError> {
        let (Some(members), Some(g)) = (self.members(), self.groups.as_ref()) else {
            return Ok(None);
        };
        let refs = match &g.member_of_attribute {
            Some(attr) => members.groups_by_dn(entry.values(attr)).await?,
            None => {
                let values = self.mapping.values_from_entry(entry);
                match self.member_value(&entry.dn, &values) {
                    Some(v) => members
                        .groups_listing(&v)
                        .await?
                        .into_iter()
                        .map(|(_, r)| r)
                        .collect(),
                    None => vec![],
                }
            }
        };
        Ok(Some(Value::Array(
            refs.into_iter()
                .map(|r| {
                    serde_json::json!({"value": r.id, "display": r.name, "$ref": format!("{base_url}/Groups/{}", r.id), "type": "direct"})
                })
                .collect(),
        )))
    }

    pub fn mapping(&self) -> &UserMapping {
        &self.mapping
    }

    /// The 1-based start index and page size a list request gets.
    pub fn window(&self, q: &ListQuery) -> (usize, usize) {
        q.window(&self.settings)
    }

    /// Whether resources carry versions (ETags), i.e. the directory has a version attribute.
    pub fn versioned(&self) -> bool {
        self.settings.version_attribute.is_some()
    }

    fn read_attributes(&self) -> Arc<[String]> {
        self.read_all.clone()
    }

    /// The LDAP attribute a `sortBy` names, or 400 when it names nothing this gateway stores.
    fn sort_key(&self, q: &ListQuery) -> Result<Option<SortKey>, ScimError> {
        let Some(p) = q.sort_path()? else {
            return Ok(None);
        };
        let m = &self.mapping;
        let core = p
            .urn
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(CORE_USER));
        let sub = p.sub.as_deref();
        let attr = if core && p.name.eq_ignore_ascii_case("id") {
            Some(m.id_attribute.clone())
        } else if core
            && p.name.eq_ignore_ascii_case("meta")
            && sub.is_some_and(|s| s.eq_ignore_ascii_case("created"))
        {
            Some(m.created_attribute.clone())
        } else if core
            && p.name.eq_ignore_ascii_case("meta")
            && sub.is_some_and(|s| s.eq_ignore_ascii_case("lastModified"))
        {
            Some(m.modified_attribute.clone())
        } else {
            m.schema_of(p.urn.as_deref(), &p.name).and_then(|schema| {
                let slots = m.slots_of(schema, &p.name);
                // A multi-valued attribute sorts by its primary (else first) element's value.
                let want = sub.unwrap_or("value");
                slots
                    .iter()
                    .map(|(_, s)| *s)
                    .filter(|s| match &s.target {
                        crate::mapping::Target::Simple { .. } => sub.is_none(),
                        crate::mapping::Target::Sub { sub: t, .. } => {
                            sub.is_some_and(|x| t.eq_ignore_ascii_case(x))
                        }
                        crate::mapping::Target::Typed { sub: t, .. } => {
                            t.eq_ignore_ascii_case(want)
                        }
                    })
                    .max_by_key(|s| s.primary)
                    .map(|s| s.ldap.clone())
            })
        };
        let attr = attr.ok_or_else(|| {
            ScimError::InvalidValue(format!(
                "sortBy {p} is not an attribute this gateway stores"
            ))
        })?;
        Ok(Some(SortKey {
            attr,
            reverse: q.descending,
        }))
    }

    /// Only the LDAP attributes a response with this projection can show.
    fn read_attributes_for(&self, p: &Projection) -> Arc<[String]> {
        if p.is_everything() {
            return self.read_attributes();
        }
        self.selected_attributes(p).into()
    }

    /// `read_attributes_for` worked out; with no selection it lists `read_attributes` (tested).
    fn selected_attributes(&self, p: &Projection) -> Vec<String> {
        let m = &self.mapping;
        let meta = p.wants(CORE_USER, CORE_USER, "meta");
        let mut attrs = Vec::with_capacity(m.slots.len() + 5);
        attrs.push(m.id_attribute.clone());
        if meta {
            attrs.push(m.created_attribute.clone());
            attrs.push(m.modified_attribute.clone());
        }
        attrs.extend(
            m.slots
                .iter()
                .filter(|s| p.wants(&s.schema, CORE_USER, s.target.attr()))
                .map(|s| s.ldap.clone()),
        );
        if p.wants(CORE_USER, CORE_USER, "active") {
            attrs.extend(m.disable.attribute().map(str::to_string));
        }
        if meta {
            attrs.extend(self.settings.version_attribute.clone());
        }
        attrs
    }

    fn not_found(id: &str) -> ScimError {
        ScimError::NotFound(format!("User {id} not found"))
    }

    /// The entry with this SCIM id, searched only inside the users subtree.
    async fn find(&self, id: &str) -> Result<Option<Entry>, ScimError> {
        self.find_reading(id, self.read_attributes()).await
    }

    async fn find_reading(
        &self,
        id: &str,
        attrs: Arc<[String]>,
    ) -> Result<Option<Entry>, ScimError> {
        Ok(self
            .subtree()
            .find(self.dir.as_ref(), &self.ids, id, attrs)
            .await?)
    }

    /// Where users live and how they are told apart, for `id_cache`.
    fn subtree(&self) -> Subtree<'_> {
        let m = &self.mapping;
        Subtree {
            base: &m.base,
            scope: m.scope,
            object_filter: &m.object_filter,
            id_attribute: &m.id_attribute,
        }
    }

    /// Remember where the rendered entries are, for requests by id that follow (Entra looks a
    /// user up by userName, then patches it by id).
    fn remember(&self, entries: &[Entry]) {
        self.ids.remember(&self.mapping.id_attribute, entries);
    }

    /// One user, with its read-only `groups` when groups are configured.
    pub async fn get(&self, id: &str, base_url: &str) -> Result<Value, ScimError> {
        self.get_projected(id, base_url, &Projection::default())
            .await
    }

    /// One user, reading only what `projection` lets the response show.
    pub async fn get_projected(
        &self,
        id: &str,
        base_url: &str,
        projection: &Projection,
    ) -> Result<Value, ScimError> {
        let with_groups = projection.wants(CORE_USER, CORE_USER, "groups");
        let attrs = self.read_attributes_for(projection);
        let member_of = self
            .groups
            .as_ref()
            .and_then(|g| g.member_of_attribute.as_ref())
            .filter(|_| with_groups);
        let attrs = match member_of {
            Some(a) => attrs.iter().chain([a]).cloned().collect(),
            None => attrs,
        };
        let entry = self
            .find_reading(id, attrs)
            .await?
            .ok_or_else(|| Self::not_found(id))?;
        let mut cache = HashMap::new();
        let mut user = self.render(&entry, base_url, &mut cache).await?;
        let groups = if with_groups {
            self.groups_of(&entry, base_url).await?
        } else {
            None
        };
        if let (Some(groups), Value::Object(obj)) = (groups, &mut user) {
            if groups.as_array().is_some_and(|a| !a.is_empty()) {
                obj.insert("groups".into(), groups);
            }
        }
        Ok(user)
    }

    pub async fn list(&self, q: &ListQuery, base_url: &str) -> Result<ListPage, ScimError> {
        let (total, start_index, users) = self.rendered_page(q, base_url).await?;
        Ok(ListPage {
            total,
            start_index,
            resources: users
                .iter()
                .map(|(values, meta)| self.mapping.to_json(values, meta))
                .collect(),
        })
    }

    /// `list`'s page as the bytes of its ListResponse, each user written straight from its
    /// values: for a request with no attribute selection, which has nothing to trim from them.
    pub async fn list_json(&self, q: &ListQuery, base_url: &str) -> Result<Vec<u8>, ScimError> {
        let (total, start_index, users) = self.rendered_page(q, base_url).await?;
        Ok(super::list_json(
            total,
            start_index,
            &users,
            |(values, meta), out| self.mapping.write_json(values, meta, out),
        ))
    }

    /// `list`'s page before it is JSON: the total, the start index and each user's values and
    /// meta (references looked up once for the whole page).
    async fn rendered_page(
        &self,
        q: &ListQuery,
        base_url: &str,
    ) -> Result<(usize, usize, Vec<(UserValues, UserMeta)>), ScimError> {
        let (page, start_index) = self.list_entries(q).await?;
        let mut cache = HashMap::new();
        let mut users = Vec::with_capacity(page.entries.len());
        for e in page.entries {
            users.push(self.rendered_owned(e, base_url, &mut cache).await?);
        }
        Ok((page.total, start_index, users))
    }

    /// The entries of `list`'s page, remembered in the id cache, and the page's start index.
    async fn list_entries(&self, q: &ListQuery) -> Result<(Page, usize), ScimError> {
        let m = &self.mapping;
        let filter = match q.parsed_filter()? {
            None => m.object_filter.clone(),
            Some(ast) => {
                let refs = self.ids_to_dns(&referenced_ids(m, &ast)).await?;
                let ldap = translate_filter(m, &ast, &refs)?;
                super::check_ordering(self.dir.as_ref(), &self.orderable, &ldap, |attr| {
                    m.slots
                        .iter()
                        .find(|s| s.ldap.eq_ignore_ascii_case(attr))
                        .map(|s| s.path.clone())
                        .unwrap_or_else(|| attr.to_string())
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
                    base: m.base.clone(),
                    scope: m.scope,
                    filter,
                    attrs: self.read_attributes_for(&q.projection),
                },
                &m.id_attribute,
                start_index - 1,
                count,
                self.sort_key(q)?,
            )
            .await?;
        self.remember(&page.entries);
        Ok((page, start_index))
    }

    pub async fn create(&self, body: &Value, base_url: &str) -> Result<Value, ScimError> {
        let m = &self.mapping;
        let mut values = m.values_from_json(body)?;
        let user_name = values.slots[m.user_name_slot]
            .first()
            .cloned()
            .ok_or_else(|| ScimError::InvalidValue("userName is required".into()))?;
        let rdn_value = m
            .effective_values(&values, m.rdn_slot)
            .first()
            .cloned()
            .ok_or_else(|| {
                ScimError::InvalidValue(format!(
                    "{} is required to name the new entry",
                    m.slots[m.rdn_slot].path
                ))
            })?;
        if values.slots[m.user_name_slot].len() > 1 {
            return Err(ScimError::InvalidValue("userName is single-valued".into()));
        }
        self.ensure_unique_user_name(&user_name, None).await?;
        let mut cache = HashMap::new();
        self.references_to_dns(&mut values, &mut cache, &HashMap::new())
            .await?;
        let mut attrs = m.create_attributes(&values)?;
        let password = values.password.clone();
        // Active Directory takes the password in the add itself: the account never exists
        // without one. Without a SCIM password it gets a random one nobody knows, so that it can
        // be enabled now and used once a password is provisioned.
        let unicode_pwd = match m.password {
            PasswordMethod::UnicodePwd => {
                let pw = password.clone().unwrap_or_else(random_password);
                attrs.push(("unicodePwd".into(), vec![pw.expose().to_string()]));
                if m.disable == DisableStrategy::AdUserAccountControl
                    && values.active != Some(false)
                {
                    attrs.push(("userAccountControl".into(), vec![AD_NORMAL_ACCOUNT.into()]));
                }
                Some(pw)
            }
            _ => None,
        };
        // When the RDN is not userName (AD's CN from a display name), two people may share a
        // name: userName was checked unique above, so a clash is the RDN's, and the entry is
        // named "Name (2)", "Name (3)", … instead.
        let suffixes = m.rdn_slot != m.user_name_slot;
        let mut attempt = 1;
        let (new_dn, entry) = loop {
            let value = if attempt == 1 {
                rdn_value.clone()
            } else {
                format!("{rdn_value} ({attempt})")
            };
            for (a, v) in attrs.iter_mut() {
                if a.eq_ignore_ascii_case(&m.rdn_attribute) {
                    *v = vec![value.clone()];
                }
            }
            let new_dn = format!("{},{}", dn::rdn(&m.rdn_attribute, &value), m.base);
            match self
                .dir
                .add(&new_dn, attrs.clone(), &self.read_attributes())
                .await
            {
                Err(DirectoryError::AlreadyExists) if suffixes && attempt < RDN_SUFFIXES => {
                    // Active Directory also answers entryAlreadyExists for a taken
                    // sAMAccountName or userPrincipalName: only a taken DN is worth renaming.
                    if !self.dn_exists(&new_dn).await? {
                        return Err(taken_elsewhere(m, &attrs));
                    }
                    attempt += 1;
                    // The clash may also be a racing create of the same userName.
                    self.ensure_unique_user_name(&user_name, None).await?;
                }
                Err(DirectoryError::AlreadyExists) => {
                    return Err(ScimError::Uniqueness(if suffixes {
                        format!(
                            "{} {rdn_value:?} and its numbered variants up to \"({RDN_SUFFIXES})\" are all taken in {}",
                            m.rdn_attribute, m.base
                        )
                    } else {
                        format!("a user with userName {user_name:?} already exists")
                    }))
                }
                Err(e) => {
                    return Err(match &unicode_pwd {
                        Some(pw) => password_refused(e, pw),
                        None => e.into(),
                    })
                }
                Ok(entry) => break (new_dn, entry),
            }
        };
        self.remember(std::slice::from_ref(&entry));
        if let (PasswordMethod::PasswordModify, Some(pw)) = (m.password, &password) {
            if let Err(e) = self.dir.set_password(&new_dn, pw).await {
                // Nothing half-done: the account goes again, and the client learns why.
                if let Err(undo) = self.dir.delete(&new_dn, None).await {
                    tracing::error!(error = %undo, "could not remove a new user whose password was refused");
                }
                return Err(password_refused(e, pw));
            }
        }
        self.render(&entry, base_url, &mut cache).await
    }

    /// PUT: the body replaces every mapped attribute; `active` left out keeps its state.
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
        let mut attempt = 0;
        loop {
            let entry = self.find(id).await?.ok_or_else(|| Self::not_found(id))?;
            self.check_precondition(&entry, if_match)?;
            let old = self.mapping.values_from_entry(&entry);
            let mut new = self.mapping.values_from_json(body)?;
            if new.active.is_none() {
                new.active = old.active;
            }
            let mut cache = HashMap::new();
            self.references_to_dns(&mut new, &mut cache, &HashMap::new())
                .await?;
            match self.write(&entry, &old, &new, base_url, &mut cache).await {
                Err(ScimError::Directory(DirectoryError::Conflict))
                    if attempt < CONFLICT_RETRIES && if_match.is_none() =>
                {
                    attempt += 1
                }
                other => return other.map_err(|e| lost_race(e, if_match)),
            }
        }
    }

    /// PATCH: all operations are applied to the current resource in memory, then written in one modify.
    pub async fn patch(&self, id: &str, body: &Value, base_url: &str) -> Result<Value, ScimError> {
        self.patch_if(id, body, base_url, None).await
    }

    /// PATCH under an optional `If-Match` precondition (412 when it fails).
    pub async fn patch_if(
        &self,
        id: &str,
        body: &Value,
        base_url: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<Value, ScimError> {
        let ops = patch::parse_request_limited(body, self.settings.max_patch_operations)?;
        // Reference ids a try without a read looked up: the first general attempt uses them
        // instead of searching again (a retry after a lost race looks up afresh).
        let mut looked_up = HashMap::new();
        if self.blind && if_match.is_none() {
            match self.patch_blind(id, &ops, base_url).await? {
                Blind::Written(done) => return Ok(done),
                Blind::NotWritten(ids) => looked_up = ids,
            }
        }
        let mut attempt = 0;
        loop {
            let entry = self.find(id).await?.ok_or_else(|| Self::not_found(id))?;
            self.check_precondition(&entry, if_match)?;
            let old = self.mapping.values_from_entry(&entry);
            let mut cache = HashMap::new();
            let mut doc = self.render(&entry, base_url, &mut cache).await?;
            let seen = self.mapping.values_from_json(&doc)?;
            patch::apply(&mut doc, &ops, self.mapping.as_ref())?;
            let mut new = self.mapping.values_from_json(&doc)?;
            // Slots the operations did not change keep what the directory holds, including
            // values SCIM cannot show (extra values, references outside the subtree).
            let untouched: Vec<bool> = (0..new.slots.len())
                .map(|i| new.slots[i] == seen.slots[i])
                .collect();
            self.references_to_dns(&mut new, &mut cache, &std::mem::take(&mut looked_up))
                .await?;
            for (i, keep) in untouched.into_iter().enumerate() {
                if keep {
                    new.slots[i] = old.slots[i].clone();
                }
            }
            match self.write(&entry, &old, &new, base_url, &mut cache).await {
                Err(ScimError::Directory(DirectoryError::Conflict))
                    if attempt < CONFLICT_RETRIES && if_match.is_none() =>
                {
                    attempt += 1
                }
                other => return other.map_err(|e| lost_race(e, if_match)),
            }
        }
    }

    /// A PATCH whose result does not depend on the entry (`blind`): one modify at the id's DN,
    /// asserting that the entry there is still this user, and reading the result back in the
    /// same operation. `NotWritten` when the PATCH needs the general path: it needs a read, the
    /// directory cannot assert atomically, the id or a referenced id is unknown, or the
    /// assertion failed (the entry moved, or an attribute the plan needs present is not);
    /// nothing was written then, and the referenced ids looked up go with it.
    async fn patch_blind(
        &self,
        id: &str,
        ops: &[patch::PatchOperation],
        base_url: &str,
    ) -> Result<Blind, ScimError> {
        let Some(mut plan) = blind::plan(&self.mapping, ops) else {
            return Ok(Blind::NotWritten(HashMap::new()));
        };
        if !self.dir.atomic_writes().await {
            return Ok(Blind::NotWritten(HashMap::new()));
        }
        // The referenced users' ids, resolved beside the look-up of the entry's DN.
        let referenced: Vec<String> = plan
            .references
            .iter()
            .filter_map(|&k| match &plan.mods[k] {
                Modification::Replace(_, ids) => Some(ids.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect();
        let subtree = self.subtree();
        let (dn, resolved) = tokio::join!(
            subtree.locate(self.dir.as_ref(), &self.ids, id),
            self.ids_to_dns(&referenced)
        );
        let (dn, resolved) = (dn?, resolved?);
        let looked_up: HashMap<String, Option<String>> = referenced
            .iter()
            .map(|i| (i.clone(), resolved.get(i).cloned()))
            .collect();
        let Some(dn) = dn else {
            return Ok(Blind::NotWritten(looked_up));
        };
        let mut cache = HashMap::new();
        for &k in &plan.references {
            let Modification::Replace(_, vals) = &mut plan.mods[k] else {
                return Ok(Blind::NotWritten(looked_up));
            };
            for v in vals.iter_mut() {
                // An id that names no user in the subtree: the general path refuses it.
                let Some(target) = resolved.get(v.as_str()) else {
                    return Ok(Blind::NotWritten(looked_up));
                };
                cache.insert(target.clone(), Some(std::mem::replace(v, target.clone())));
            }
        }
        let present: String = plan.present.iter().map(|a| format!("({a}=*)")).collect();
        let guard = subtree.id_filter(id, &present);
        match self
            .dir
            .modify(&dn, plan.mods, Some(guard), &self.read_attributes())
            .await
        {
            Ok(entry) => {
                self.ids.insert(id, &entry.dn);
                Ok(Blind::Written(
                    self.render(&entry, base_url, &mut cache).await?,
                ))
            }
            Err(DirectoryError::Conflict | DirectoryError::NoSuchObject) => {
                self.ids.remove(id);
                Ok(Blind::NotWritten(looked_up))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The resource's version (the value of the version attribute), if the directory keeps one.
    fn version_of<'e>(&self, entry: &'e Entry) -> Option<&'e str> {
        entry.first(self.settings.version_attribute.as_deref()?)
    }

    /// 412 when an `If-Match` does not name the entry's current version.
    fn check_precondition(
        &self,
        entry: &Entry,
        if_match: Option<&IfMatch>,
    ) -> Result<(), ScimError> {
        match if_match {
            Some(pre) if !pre.accepts(self.version_of(entry)) => {
                Err(ScimError::PreconditionFailed(format!(
                    "the resource is at version {}, not the one in If-Match",
                    self.version_of(entry)
                        .map(etag)
                        .unwrap_or_else(|| "(none)".into())
                )))
            }
            _ => Ok(()),
        }
    }

    /// Delete (or soft-delete) a user; the groups that list it drop it afterwards.
    pub async fn delete(&self, id: &str) -> Result<(), ScimError> {
        self.delete_if(id, None).await
    }

    /// DELETE under an optional `If-Match` precondition (412 when it fails).
    pub async fn delete_if(&self, id: &str, if_match: Option<&IfMatch>) -> Result<(), ScimError> {
        let entry = self.find(id).await?.ok_or_else(|| Self::not_found(id))?;
        self.check_precondition(&entry, if_match)?;
        let member_value = self.member_value(&entry.dn, &self.mapping.values_from_entry(&entry));
        let guard = if_match.and_then(|_| self.guard(&entry));
        self.ids.remove(id);
        self.delete_entry(id, &entry, guard)
            .await
            .map_err(|e| lost_race(e, if_match))?;
        self.keep_memberships(member_value, None).await
    }

    async fn delete_entry(
        &self,
        id: &str,
        entry: &Entry,
        guard: Option<String>,
    ) -> Result<(), ScimError> {
        match &self.mapping.delete {
            crate::mapping::DeletePolicy::Hard => match self.dir.delete(&entry.dn, guard).await {
                Err(DirectoryError::NoSuchObject) => Err(Self::not_found(id)),
                other => Ok(other?),
            },
            crate::mapping::DeletePolicy::Soft { move_to } => {
                let disable_attr = self.mapping.disable.attribute().unwrap_or_default();
                if let Some(m) = self
                    .mapping
                    .disable
                    .transition(entry.values(disable_attr), false)
                {
                    self.dir
                        .modify(&entry.dn, vec![m], self.guard(entry), &[])
                        .await?;
                }
                if let Some(parent) = move_to {
                    let rdn = dn::split_rdns(&entry.dn)
                        .into_iter()
                        .next()
                        .unwrap_or_default();
                    self.dir.rename(&entry.dn, &rdn, Some(parent), None).await?;
                }
                Ok(())
            }
        }
    }

    /// Write the difference between `old` and `new` to `entry`: one guarded modify, and a rename
    /// when the RDN value changed. If the rename fails, the modify is reverted so nothing stays half-applied.
    async fn write(
        &self,
        entry: &Entry,
        old: &UserValues,
        new: &UserValues,
        base_url: &str,
        cache: &mut HashMap<String, Option<String>>,
    ) -> Result<Value, ScimError> {
        let m = &self.mapping;
        let disable_values = m
            .disable
            .attribute()
            .map(|a| entry.values(a))
            .unwrap_or(&[]);
        let mods = m.diff(old, new, disable_values)?;
        let new_rdn_value = m
            .effective_values(new, m.rdn_slot)
            .first()
            .cloned()
            .ok_or_else(|| {
                ScimError::InvalidValue(format!("{} cannot be removed", m.slots[m.rdn_slot].path))
            })?;
        if new.slots[m.rdn_slot].len() > 1 {
            return Err(ScimError::InvalidValue(format!(
                "{} is single-valued",
                m.slots[m.rdn_slot].path
            )));
        }
        let rename = old.slots[m.rdn_slot].first() != Some(&new_rdn_value);
        let user_name_changed =
            old.slots[m.user_name_slot].first() != new.slots[m.user_name_slot].first();
        if rename || user_name_changed {
            if let Some(user_name) = new.slots[m.user_name_slot].first() {
                self.ensure_unique_user_name(user_name, Some(&entry.dn))
                    .await?;
            }
        }
        let mut mods = mods;
        if let (PasswordMethod::UnicodePwd, Some(pw)) = (m.password, &new.password) {
            // In the same modify as everything else: all of it applies, or none.
            mods.push(Modification::Replace(
                "unicodePwd".into(),
                vec![pw.expose().to_string()],
            ));
        }
        let mut current = entry.clone();
        if !mods.is_empty() {
            let written = self
                .dir
                .modify(
                    &entry.dn,
                    mods.clone(),
                    self.guard(entry),
                    &self.read_attributes(),
                )
                .await;
            current = match (written, &new.password) {
                (Ok(e), _) => e,
                (Err(e), Some(pw)) if m.password == PasswordMethod::UnicodePwd => {
                    return Err(password_refused(e, pw))
                }
                (Err(e), _) => return Err(e.into()),
            };
        }
        if let (PasswordMethod::PasswordModify, Some(pw)) = (m.password, &new.password) {
            if let Err(e) = self.dir.set_password(&entry.dn, pw).await {
                self.revert(entry, &mods).await;
                return Err(password_refused(e, pw));
            }
        }
        if rename {
            let new_rdn = dn::rdn(&m.rdn_attribute, &new_rdn_value);
            let parent = dn::parent(&entry.dn);
            if let Err(e) = self.dir.rename(&entry.dn, &new_rdn, None, None).await {
                self.revert(entry, &mods).await;
                return Err(match e {
                    DirectoryError::AlreadyExists => ScimError::Uniqueness(format!(
                        "a user named {new_rdn_value:?} already exists"
                    )),
                    other => other.into(),
                });
            }
            let id = entry.first(&m.id_attribute).unwrap_or_default().to_string();
            self.ids.remove(&id);
            let new_dn = parent
                .clone()
                .map(|p| format!("{new_rdn},{p}"))
                .unwrap_or_else(|| new_rdn.clone());
            if self
                .groups
                .as_ref()
                .is_some_and(|g| g.member_value == MemberValue::Dn)
            {
                self.keep_memberships(Some(entry.dn.clone()), Some(new_dn))
                    .await?;
            }
            current = match self.find(&id).await? {
                Some(e) => e,
                None => {
                    let new_dn = parent.map(|p| format!("{new_rdn},{p}")).unwrap_or(new_rdn);
                    Entry {
                        dn: new_dn,
                        ..current
                    }
                }
            };
        }
        if user_name_changed
            && self
                .groups
                .as_ref()
                .is_some_and(|g| g.member_value == MemberValue::UserName)
        {
            let name = |v: &UserValues| v.slots[m.user_name_slot].first().cloned();
            self.keep_memberships(name(old), name(new)).await?;
        }
        self.render(&current, base_url, cache).await
    }

    /// Whether an entry exists at `dn` (a base search for nothing but its existence).
    async fn dn_exists(&self, dn: &str) -> Result<bool, ScimError> {
        match self
            .dir
            .search(SearchRequest {
                base: dn.to_string(),
                scope: Scope::Base,
                filter: "(objectClass=*)".into(),
                attrs: vec!["1.1".into()].into(),
            })
            .await
        {
            Ok(found) => Ok(!found.is_empty()),
            Err(DirectoryError::NoSuchObject) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Put back the attributes `mods` changed, as `entry` held them (after a later step failed).
    /// A password cannot be put back; it is left out.
    async fn revert(&self, entry: &Entry, mods: &[Modification]) {
        let undo: Vec<Modification> = mods
            .iter()
            .filter(|md| !md.attribute().eq_ignore_ascii_case("unicodePwd"))
            .map(|md| {
                Modification::Replace(
                    md.attribute().to_string(),
                    entry.values(md.attribute()).to_vec(),
                )
            })
            .collect();
        if undo.is_empty() {
            return;
        }
        if let Err(e) = self.dir.modify(&entry.dn, undo, None, &[]).await {
            tracing::error!(error = %e, "could not revert a modify after a later step failed");
        }
    }

    fn guard(&self, entry: &Entry) -> Option<String> {
        let attr = self.settings.version_attribute.as_deref()?;
        let v = entry.first(attr)?;
        Some(format!("({attr}={})", ldap3::ldap_escape(v)))
    }

    /// userName must be unique in the subtree. With one-level scope and userName as the RDN the
    /// directory enforces it by itself (entryAlreadyExists), so the extra search is skipped.
    async fn ensure_unique_user_name(
        &self,
        user_name: &str,
        except_dn: Option<&str>,
    ) -> Result<(), ScimError> {
        let m = &self.mapping;
        if m.scope == Scope::OneLevel && m.rdn_slot == m.user_name_slot {
            return Ok(());
        }
        let attr = &m.slots[m.user_name_slot].ldap;
        let found = self
            .dir
            .search(SearchRequest {
                base: m.base.clone(),
                scope: m.scope,
                filter: format!(
                    "(&{}({attr}={}))",
                    m.object_filter,
                    ldap3::ldap_escape(user_name)
                ),
                attrs: vec!["1.1".into()].into(),
            })
            .await?;
        let clash = found
            .iter()
            .any(|e| except_dn.is_none_or(|d| dn::normalize(d) != dn::normalize(&e.dn)));
        if clash {
            return Err(ScimError::Uniqueness(format!(
                "a user with userName {user_name:?} already exists"
            )));
        }
        Ok(())
    }

    /// Replace ids in reference slots by DNs.
    /// `cache` maps DNs to ids (as `render` fills it): ids found there need no search, and ids
    /// resolved here are added, so rendering the written user needs none either.
    /// `looked_up` maps ids a moment ago looked up to their DN, or to none when no user has
    /// them: those need no search either.
    async fn references_to_dns(
        &self,
        values: &mut UserValues,
        cache: &mut HashMap<String, Option<String>>,
        looked_up: &HashMap<String, Option<String>>,
    ) -> Result<(), ScimError> {
        let m = &self.mapping;
        cache.extend(
            looked_up
                .iter()
                .filter_map(|(id, dn)| dn.as_ref().map(|dn| (dn.clone(), Some(id.clone())))),
        );
        let known: HashMap<String, String> = cache
            .iter()
            .filter_map(|(dn, id)| id.as_ref().map(|id| (id.clone(), dn.clone())))
            .collect();
        let mut wanted = Vec::new();
        for (i, s) in m.slots.iter().enumerate() {
            if s.kind == ValueKind::Reference {
                wanted.extend(
                    values.slots[i]
                        .iter()
                        .filter(|id| !known.contains_key(*id) && !looked_up.contains_key(*id))
                        .cloned(),
                );
            }
        }
        let mut resolved = self.ids_to_dns(&wanted).await?;
        cache.extend(
            resolved
                .iter()
                .map(|(id, dn)| (dn.clone(), Some(id.clone()))),
        );
        resolved.extend(known);
        for (i, s) in m.slots.iter().enumerate() {
            if s.kind != ValueKind::Reference {
                continue;
            }
            let mut dns = Vec::new();
            for id in &values.slots[i] {
                match resolved.get(id) {
                    Some(dn) => dns.push(dn.clone()),
                    None => {
                        return Err(ScimError::InvalidValue(format!(
                            "{}: no user has id {id:?}",
                            s.path
                        )))
                    }
                }
            }
            values.slots[i] = dns;
        }
        Ok(())
    }

    /// Resolve SCIM ids to DNs in one search.
    async fn ids_to_dns(&self, ids: &[String]) -> Result<HashMap<String, String>, ScimError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let m = &self.mapping;
        let alternatives: String = ids
            .iter()
            .map(|id| format!("({}={})", m.id_attribute, ldap3::ldap_escape(id.as_str())))
            .collect();
        let found = self
            .dir
            .search(SearchRequest {
                base: m.base.clone(),
                scope: m.scope,
                filter: format!("(&{}(|{alternatives}))", m.object_filter),
                attrs: vec![m.id_attribute.clone()].into(),
            })
            .await?;
        let mut out = HashMap::new();
        for e in found {
            if let Some(id) = e.first(&m.id_attribute) {
                // The directory matches ids by its own rule; key by the id as the client wrote it.
                if let Some(asked) = ids.iter().find(|i| i.eq_ignore_ascii_case(id)) {
                    out.insert(asked.clone(), e.dn.clone());
                }
            }
        }
        Ok(out)
    }

    /// The SCIM id of the user at `dn`, if it is a user inside the subtree.
    async fn dn_to_id(&self, target: &str) -> Result<Option<String>, ScimError> {
        let m = &self.mapping;
        if !dn::is_within(target, &m.base) {
            return Ok(None);
        }
        let found = self
            .dir
            .search(SearchRequest {
                base: target.to_string(),
                scope: Scope::Base,
                filter: m.object_filter.clone(),
                attrs: vec![m.id_attribute.clone()].into(),
            })
            .await;
        match found {
            Ok(entries) => Ok(entries
                .first()
                .and_then(|e| e.first(&m.id_attribute))
                .map(str::to_string)),
            Err(DirectoryError::NoSuchObject) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// SCIM JSON for an entry. `cache` maps reference DNs to ids (None: not a user in scope).
    async fn render(
        &self,
        entry: &Entry,
        base_url: &str,
        cache: &mut HashMap<String, Option<String>>,
    ) -> Result<Value, ScimError> {
        let (values, meta) = self.rendered(entry, base_url, cache).await?;
        Ok(self.mapping.to_json(&values, &meta))
    }

    /// What a render shows of `entry`: its values, references turned into ids (looked up once
    /// per render pass through `cache`), and its id and meta.
    async fn rendered(
        &self,
        entry: &Entry,
        base_url: &str,
        cache: &mut HashMap<String, Option<String>>,
    ) -> Result<(UserValues, UserMeta), ScimError> {
        let values = self.mapping.values_from_entry(entry);
        let values = self.with_reference_ids(values, cache).await?;
        Ok((values, self.meta_of(entry, base_url)?))
    }

    /// `rendered` for an entry no longer needed: its values are moved, not copied.
    async fn rendered_owned(
        &self,
        entry: Entry,
        base_url: &str,
        cache: &mut HashMap<String, Option<String>>,
    ) -> Result<(UserValues, UserMeta), ScimError> {
        let meta = self.meta_of(&entry, base_url)?;
        let values = self.mapping.values_taken_from(entry);
        Ok((self.with_reference_ids(values, cache).await?, meta))
    }

    /// `values` with the DNs in reference slots turned into ids (each looked up once per render
    /// pass through `cache`); DNs of no user in scope are left out.
    async fn with_reference_ids(
        &self,
        mut values: UserValues,
        cache: &mut HashMap<String, Option<String>>,
    ) -> Result<UserValues, ScimError> {
        for (i, s) in self.mapping.slots.iter().enumerate() {
            if s.kind != ValueKind::Reference {
                continue;
            }
            let mut ids = Vec::new();
            for target in &values.slots[i] {
                if !cache.contains_key(target) {
                    let id = self.dn_to_id(target).await?;
                    cache.insert(target.clone(), id);
                }
                if let Some(Some(id)) = cache.get(target) {
                    ids.push(id.clone());
                }
            }
            values.slots[i] = ids;
        }
        Ok(values)
    }

    /// A user's id and meta, read from its entry.
    fn meta_of(&self, entry: &Entry, base_url: &str) -> Result<UserMeta, ScimError> {
        let m = &self.mapping;
        let id = entry
            .first(&m.id_attribute)
            .ok_or_else(|| DirectoryError::Other {
                code: "missingId",
                message: format!("entry has no {} attribute", m.id_attribute),
            })?
            .to_string();
        Ok(UserMeta {
            location: [base_url, "/Users/", &id].concat(),
            created: entry
                .first(&m.created_attribute)
                .and_then(generalized_to_rfc3339),
            last_modified: entry
                .first(&m.modified_attribute)
                .and_then(generalized_to_rfc3339),
            version: self.version_of(entry).map(etag),
            id,
        })
    }
}

/// The outcome of a PATCH tried without a read of the entry.
enum Blind {
    /// Written; the answer.
    Written(Value),
    /// Not written: the general path does it. The referenced ids looked up on the way, each
    /// with its user's DN or none, so the general path need not search for them again.
    NotWritten(HashMap<String, Option<String>>),
}

/// With `If-Match`, losing the directory's assertion race means the precondition failed: another
/// writer changed the resource between our read and our write.
fn lost_race(e: ScimError, if_match: Option<&IfMatch>) -> ScimError {
    match (e, if_match) {
        (ScimError::Directory(DirectoryError::Conflict), Some(_)) => ScimError::PreconditionFailed(
            "the resource changed concurrently; read it again for its current version".into(),
        ),
        (e, _) => e,
    }
}

#[cfg(test)]
mod tests;
