//! Directory capability traits and the LDAP-shaped types they exchange.
//!
//! The SCIM layer talks to the directory only through these traits, so the
//! LDAP implementation (`directory::ldap`) and the fakes used by unit tests are
//! interchangeable. Values are LDAP strings; filters arrive already built and
//! escaped by `mapping::translate`.

pub mod capabilities;
pub mod dn;
#[cfg(test)]
pub(crate) mod fake;
pub mod ldap;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One directory entry: its DN and its attributes, keyed by lowercased name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub attrs: BTreeMap<String, Vec<String>>,
}

/// Whether the key `k` (lowercase, as every entry's keys are) is `attr` lowercased. An entry is
/// searched by a scan with this: it has a few dozen attributes at most, the length tells most
/// apart, and a render looks up every mapped attribute, where a lowercased copy and a tree search
/// each cost more than the scan.
fn is_lowered(k: &str, attr: &str) -> bool {
    k.len() == attr.len()
        && k.bytes()
            .zip(attr.bytes())
            .all(|(k, a)| k == a.to_ascii_lowercase())
}

impl Entry {
    /// All values of an attribute (case-insensitive name); empty when absent.
    pub fn values(&self, attr: &str) -> &[String] {
        self.attrs
            .iter()
            .find(|(k, _)| is_lowered(k, attr))
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    /// The values of an attribute (case-insensitive name) to take or change; `None` when absent.
    pub fn values_mut(&mut self, attr: &str) -> Option<&mut Vec<String>> {
        self.attrs
            .iter_mut()
            .find(|(k, _)| is_lowered(k, attr))
            .map(|(_, v)| v)
    }

    /// The first value of an attribute, if any.
    pub fn first(&self, attr: &str) -> Option<&str> {
        self.values(attr).first().map(String::as_str)
    }
}

/// Search scope below a base DN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Base,
    OneLevel,
    Subtree,
}

/// A search, with the filter already escaped and complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    pub base: String,
    pub scope: Scope,
    pub filter: String,
    /// The attributes to return: shared, so that a list computed once (a projection's) is lent
    /// to every search instead of copied name by name.
    pub attrs: Arc<[String]>,
}

/// Sort a search by one attribute (ascending unless `reverse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub attr: String,
    pub reverse: bool,
}

/// One change to one attribute, as in an LDAP modify request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modification {
    /// Add values; with the permissive-modify semantics an existing value is not an error.
    Add(String, Vec<String>),
    /// Delete the given values, or the whole attribute when the list is empty.
    Delete(String, Vec<String>),
    /// Replace all values; an empty list removes the attribute if it is present.
    Replace(String, Vec<String>),
    /// Compare-and-swap of a single value: (attribute, old value, new value). Sent as a delete of
    /// the old value and an add of the new one, never with permissive modify, so it fails with
    /// `DirectoryError::Conflict` when the old value is no longer there. Atomic on every server.
    Swap(String, String, String),
}

impl Modification {
    pub fn attribute(&self) -> &str {
        match self {
            Modification::Add(a, _)
            | Modification::Delete(a, _)
            | Modification::Replace(a, _)
            | Modification::Swap(a, _, _) => a,
        }
    }
}

/// A window of search results in the directory's stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// How many entries matched in total.
    pub total: usize,
    /// The entries of the requested window, in order.
    pub entries: Vec<Entry>,
}

/// Errors from the directory layer. The HTTP mapping lives in `http::error`.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory unreachable: {0}")]
    Unavailable(String),
    #[error("directory operation timed out after {0:?}")]
    Timeout(Duration),
    #[error("entry already exists")]
    AlreadyExists,
    #[error("no such entry")]
    NoSuchObject,
    /// Schema, syntax or constraint violations: the client sent a value the directory refuses.
    #[error("directory rejected the value ({code}): {message}")]
    Rejected { code: &'static str, message: String },
    /// The entry changed between read and write (assertion control failed).
    #[error("entry changed concurrently")]
    Conflict,
    #[error("the directory returned more entries than the configured limit")]
    SizeLimit,
    /// The directory cannot sort, and the result is larger than the gateway sorts itself.
    #[error("sorting in the gateway is limited to {0} entries")]
    SortLimit(usize),
    /// The gateway refused to touch a DN outside its configured subtrees.
    #[error("DN is outside the configured subtree")]
    OutsideSubtree,
    /// A write's guard filter did not parse, so the write was not sent: without its assertion it
    /// could change an entry that is no longer the one the caller checked.
    #[error("the write's guard is not an LDAP filter: {0}")]
    InvalidGuard(String),
    /// Any other LDAP result: a misconfiguration or a directory-side problem.
    #[error("directory error ({code}): {message}")]
    Other { code: &'static str, message: String },
    /// Back-pressure: `directory.max_in_flight` operations were running and the queue was full
    /// or the wait for a slot ran out. Nothing was sent.
    #[error("too many directory operations in flight")]
    Overloaded,
}

impl DirectoryError {
    /// A fixed label naming the outcome (an LDAP result-code name where there is one).
    pub fn result_label(&self) -> &'static str {
        match self {
            DirectoryError::Unavailable(_) => "connection_error",
            DirectoryError::Timeout(_) => "timeout",
            DirectoryError::AlreadyExists => "entryAlreadyExists",
            DirectoryError::NoSuchObject => "noSuchObject",
            DirectoryError::Rejected { code, .. } | DirectoryError::Other { code, .. } => code,
            DirectoryError::Conflict => "assertionFailed",
            DirectoryError::SizeLimit => "sizeLimitExceeded",
            DirectoryError::SortLimit(_) => "sortLimit",
            DirectoryError::OutsideSubtree => "refused_outside_subtree",
            DirectoryError::InvalidGuard(_) => "refused_invalid_guard",
            DirectoryError::Overloaded => "overloaded",
        }
    }
}

/// Reading entries of one kind (users now, groups later).
#[allow(async_fn_in_trait)]
pub trait EntryReader: Send + Sync {
    /// Run a search and return every matching entry (bounded by the directory's limits).
    fn search(
        &self,
        req: SearchRequest,
    ) -> impl std::future::Future<Output = Result<Vec<Entry>, DirectoryError>> + Send;

    /// Every entry a search matches, fetched in pages (so no server size limit applies);
    /// `DirectoryError::SizeLimit` past `limit` entries. Fakes may answer with `search`.
    fn search_all(
        &self,
        req: SearchRequest,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Vec<Entry>, DirectoryError>> + Send {
        let _ = limit;
        self.search(req)
    }

    /// Lowercased names of the attribute types that have an ordering rule, from the subschema;
    /// `None` when unknown (then ordering filters are passed through).
    fn orderable_attributes(
        &self,
    ) -> impl std::future::Future<
        Output = Result<Option<std::collections::HashSet<String>>, DirectoryError>,
    > + Send {
        async { Ok(None) }
    }

    /// Return entries `offset .. offset+limit` of a search in stable order (sorted by `sort` when
    /// given), and the total count. `id_attr` is the immutable id attribute used to fetch the
    /// window in a second step.
    fn search_page(
        &self,
        req: SearchRequest,
        id_attr: &str,
        offset: usize,
        limit: usize,
        sort: Option<SortKey>,
    ) -> impl std::future::Future<Output = Result<Page, DirectoryError>> + Send;
}

/// Writing entries; every DN passed in must lie inside a configured subtree.
pub trait EntryWriter: Send + Sync {
    /// Add an entry and read `read_back` attributes of the new entry.
    fn add(
        &self,
        dn: &str,
        attrs: Vec<(String, Vec<String>)>,
        read_back: &[String],
    ) -> impl std::future::Future<Output = Result<Entry, DirectoryError>> + Send;

    /// Apply all modifications in one LDAP modify. When `guard` is set it is an
    /// LDAP assertion filter that must still hold, or `DirectoryError::Conflict` is returned.
    fn modify(
        &self,
        dn: &str,
        mods: Vec<Modification>,
        guard: Option<String>,
        read_back: &[String],
    ) -> impl std::future::Future<Output = Result<Entry, DirectoryError>> + Send;

    /// Rename an entry (new RDN, optionally a new parent); returns the new DN. A `guard` is an
    /// assertion filter as for `modify`.
    fn rename(
        &self,
        dn: &str,
        new_rdn: &str,
        new_parent: Option<&str>,
        guard: Option<String>,
    ) -> impl std::future::Future<Output = Result<String, DirectoryError>> + Send;

    /// Delete an entry; a `guard` is an assertion filter as for `modify`.
    fn delete(
        &self,
        dn: &str,
        guard: Option<String>,
    ) -> impl std::future::Future<Output = Result<(), DirectoryError>> + Send;

    /// Whether a guarded `modify` is checked and read back inside the write itself (assertion
    /// and post-read controls), so a write that needs no earlier read is one atomic operation.
    fn atomic_writes(&self) -> impl std::future::Future<Output = bool> + Send {
        async { true }
    }

    /// Set an entry's password with the LDAP Password Modify extended operation (RFC 3062), so
    /// the server hashes it under its own policy. A policy refusal is `Rejected`.
    fn set_password(
        &self,
        dn: &str,
        password: &crate::config::Secret,
    ) -> impl std::future::Future<Output = Result<(), DirectoryError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_any_case_of_the_name() {
        let long = format!("x{}", "Y".repeat(80));
        let mut attrs = BTreeMap::new();
        attrs.insert("departmentnumber".to_string(), vec!["42".to_string()]);
        attrs.insert(long.to_ascii_lowercase(), vec!["long".to_string()]);
        attrs.insert("caf\u{c9}".to_string(), vec!["not ascii".to_string()]);
        let entry = Entry {
            dn: "uid=a".into(),
            attrs,
        };
        assert_eq!(entry.values("departmentNumber"), ["42"]);
        assert_eq!(entry.values("DEPARTMENTNUMBER"), ["42"]);
        assert_eq!(entry.first("departmentnumber"), Some("42"));
        assert_eq!(entry.values(&long), ["long"]);
        assert_eq!(entry.values(&long.to_ascii_uppercase()), ["long"]);
        // Only ASCII letters fold, as LDAP attribute names are ASCII.
        assert_eq!(entry.values("CAF\u{c9}"), ["not ascii"]);
        assert!(entry.values("caf\u{e9}").is_empty());
        assert!(entry.values("mail").is_empty());
        assert!(entry.values("").is_empty());
    }
}
