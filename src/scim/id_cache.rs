//! Where a SCIM id was last seen: id → DN, so a request by id can go straight to the entry.
//!
//! The cache is a hint, never the truth. Every use of a remembered DN carries the id in the
//! same directory operation, so a stale DN can only make that operation find nothing:
//! - a read is a base search at the DN whose filter is the object filter *and* the id;
//! - a write carries an assertion (or its pre-write check) on the object filter and the id.
//!
//! When that finds nothing the entry is forgotten and the caller does what it did without the
//! cache (a search of the whole subtree). A DN that another entry took over after a delete or a
//! rename holds another id, so it never matches. Remembered DNs come from searches and writes
//! below the configured base; the directory layer refuses any DN outside the subtrees anyway.

use crate::directory::{DirectoryError, Entry, EntryReader, Scope, SearchRequest};
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries remembered before the cache starts over: about 10 MB of ids and DNs at most.
pub const CAPACITY: usize = 65_536;

#[derive(Debug)]
pub struct IdCache {
    dns: Mutex<HashMap<String, String>>,
    capacity: usize,
}

impl Default for IdCache {
    fn default() -> Self {
        IdCache::with_capacity(CAPACITY)
    }
}

impl IdCache {
    pub fn with_capacity(capacity: usize) -> IdCache {
        IdCache {
            dns: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The DN where `id` was last seen, if remembered.
    pub fn get(&self, id: &str) -> Option<String> {
        self.lock().get(id).cloned()
    }

    /// Remember `dn` for `id`. When full, the cache starts over: bounded memory matters more
    /// than the hit rate, and a miss costs only the search the gateway did before it had one.
    pub fn insert(&self, id: &str, dn: &str) {
        let mut dns = self.lock();
        if dns.get(id).is_some_and(|d| d == dn) {
            return;
        }
        if dns.len() >= self.capacity && !dns.contains_key(id) {
            dns.clear();
        }
        dns.insert(id.to_string(), dn.to_string());
    }

    /// Forget `id` (its entry was deleted, renamed, or the remembered DN no longer holds it).
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters: every entry is only a hint.
        self.dns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the entries of one resource type live and how they are told apart.
#[derive(Debug, Clone, Copy)]
pub struct Subtree<'a> {
    pub base: &'a str,
    pub scope: Scope,
    /// The resource type's LDAP filter, parenthesised.
    pub object_filter: &'a str,
    pub id_attribute: &'a str,
}

impl Subtree<'_> {
    /// `(<id attribute>=<id>)`, the value escaped.
    fn id_term(&self, id: &str) -> String {
        format!("({}={})", self.id_attribute, ldap3::ldap_escape(id))
    }

    /// `(&<object filter>(<id attribute>=<id>)<extra>)`: this entry and nothing else.
    pub fn id_filter(&self, id: &str, extra: &str) -> String {
        format!("(&{}{}{extra})", self.object_filter, self.id_term(id))
    }

    /// The entry with this id: a base search at the remembered DN (its filter names the id, so
    /// a stale DN finds nothing and is forgotten), else a search of the subtree, whose find is
    /// remembered.
    pub async fn find<D: EntryReader>(
        &self,
        dir: &D,
        ids: &IdCache,
        id: &str,
        attrs: std::sync::Arc<[String]>,
    ) -> Result<Option<Entry>, DirectoryError> {
        let filter = self.id_filter(id, "");
        if let Some(dn) = ids.get(id) {
            let found = dir
                .search(SearchRequest {
                    base: dn,
                    scope: Scope::Base,
                    filter: filter.clone(),
                    attrs: attrs.clone(),
                })
                .await;
            match found {
                Ok(mut found) if found.len() == 1 => return Ok(found.pop()),
                Ok(_) | Err(DirectoryError::NoSuchObject) => ids.remove(id),
                Err(e) => return Err(e),
            }
        }
        let mut found = dir
            .search(SearchRequest {
                base: self.base.to_string(),
                scope: self.scope,
                filter,
                attrs,
            })
            .await?;
        if found.len() != 1 {
            return Ok(None);
        }
        ids.remember(self.id_attribute, &found);
        Ok(found.pop())
    }

    /// The DN for an id, for a write that asserts the rest: the remembered one, else a search
    /// for the id alone (the object filter is left to the write's assertion, where it costs
    /// nothing, instead of an index walk).
    pub async fn locate<D: EntryReader>(
        &self,
        dir: &D,
        ids: &IdCache,
        id: &str,
    ) -> Result<Option<String>, DirectoryError> {
        if let Some(dn) = ids.get(id) {
            return Ok(Some(dn));
        }
        let found = dir
            .search(SearchRequest {
                base: self.base.to_string(),
                scope: self.scope,
                filter: self.id_term(id),
                attrs: vec!["1.1".into()].into(),
            })
            .await?;
        Ok(match &found[..] {
            [e] => Some(e.dn.clone()),
            _ => None,
        })
    }
}

impl IdCache {
    /// Remember where these entries are, keyed by their `id_attribute`.
    pub fn remember(&self, id_attribute: &str, entries: &[Entry]) {
        for e in entries {
            if let Some(id) = e.first(id_attribute) {
                self.insert(id, &e.dn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_replaces_and_forgets() {
        let c = IdCache::default();
        assert_eq!(c.get("a"), None);
        c.insert("a", "uid=a,ou=people");
        assert_eq!(c.get("a").as_deref(), Some("uid=a,ou=people"));
        c.insert("a", "uid=b,ou=people");
        assert_eq!(c.get("a").as_deref(), Some("uid=b,ou=people"));
        c.remove("a");
        assert_eq!(c.get("a"), None);
        assert!(c.is_empty());
    }

    #[test]
    fn never_grows_past_its_capacity() {
        let c = IdCache::with_capacity(3);
        for i in 0..10 {
            c.insert(&format!("id{i}"), &format!("uid={i}"));
            assert!(c.len() <= 3, "{} entries after {} inserts", c.len(), i + 1);
            assert_eq!(c.get(&format!("id{i}")), Some(format!("uid={i}")));
        }
        // Updating a remembered id when full keeps the others.
        c.insert("id9", "uid=nine");
        assert_eq!(c.get("id9").as_deref(), Some("uid=nine"));
        assert!(!c.is_empty() && c.len() <= 3);
    }
}
