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
