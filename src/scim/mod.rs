//! The SCIM 2.0 protocol layer: resources, PATCH, filters, discovery and the user service.
//!
//! Nothing here knows HTTP; handlers in `http` call the services and map `ScimError`.

pub mod blind;
pub mod discovery;
pub mod filter;
pub mod groups;
pub mod id_cache;
pub mod members;
pub mod patch;
pub mod projection;
pub mod time;
pub mod users;

use crate::directory::DirectoryError;

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A ListResponse's bytes around `items`, each written by `write` (the keys in the order lists
/// have always had): no `Value` of the whole page is built.
pub fn list_json<T>(
    total: usize,
    start_index: usize,
    items: &[T],
    mut write: impl FnMut(&T, &mut Vec<u8>),
) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(256 + 1024 * items.len());
    // Writing to a `Vec` cannot fail.
    let _ = write!(
        out,
        "{{\"schemas\":[\"{LIST_RESPONSE}\"],\"totalResults\":{total},\"startIndex\":{start_index},\"itemsPerPage\":{},\"Resources\":[",
        items.len()
    );
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, &mut out);
    }
    out.extend_from_slice(b"]}");
    out
}
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// Errors of the SCIM layer; `http::error` is the one place that turns them into responses.
#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    #[error("{0}")]
    InvalidSyntax(String),
    #[error("{0}")]
    InvalidFilter(String),
    /// A filter names an attribute this resource type does not store (still 400 invalidFilter;
    /// a search across resource types skips the types it does not apply to).
    #[error("{0}")]
    UnknownFilterAttribute(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    NoTarget(String),
    #[error("{0}")]
    Mutability(String),
    #[error("{0}")]
    Uniqueness(String),
    #[error("{0}")]
    TooMany(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PreconditionFailed(String),
    /// A rate-limit quota is exhausted (429).
    #[error("{0}")]
    TooManyRequests(String),
    /// The gateway is at `limits.max_concurrent_requests` (503).
    #[error("{0}")]
    Overloaded(String),
    /// The request ran past `limits.request_timeout_secs` (504).
    #[error("{0}")]
    RequestTimeout(String),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// Refuses a translated LDAP filter whose `>=`/`<=` assertions name attributes without an ordering
/// rule (the directory would silently match nothing); `orderable` is loaded once from the
/// subschema, and when it cannot be read the filter is passed through.
pub async fn check_ordering<D: crate::directory::EntryReader>(
    dir: &D,
    cache: &tokio::sync::OnceCell<Option<std::collections::HashSet<String>>>,
    ldap_filter: &str,
    scim_name: impl Fn(&str) -> String,
) -> Result<(), ScimError> {
    let asserted = crate::directory::schema::ordering_assertions(ldap_filter);
    if asserted.is_empty() {
        return Ok(());
    }
    let orderable = cache.get_or_try_init(|| dir.orderable_attributes()).await?;
    let Some(orderable) = orderable else {
        return Ok(());
    };
    match asserted.iter().find(|a| !orderable.contains(*a)) {
        Some(a) => Err(ScimError::InvalidFilter(format!(
            "{} cannot be compared with gt, ge, lt or le: the directory has no ordering rule for {a}",
            scim_name(a)
        ))),
        None => Ok(()),
    }
}

/// A PUT body may repeat the resource's id, but not change it (`id` is immutable).
pub fn ensure_same_id(body: &serde_json::Value, id: &str) -> Result<(), ScimError> {
    match body.get("id").and_then(serde_json::Value::as_str) {
        Some(sent) if sent != id => Err(ScimError::Mutability(format!(
            "id {sent:?} does not match the URL's {id:?}"
        ))),
        _ => Ok(()),
    }
}

/// An `If-Match` precondition: `*`, or the entity tags the client last saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Versions(Vec<String>),
}

impl IfMatch {
    /// Parse an `If-Match` header: `*` or a list of (weak or strong) entity tags.
    pub fn parse(header: &str) -> IfMatch {
        if header.trim() == "*" {
            return IfMatch::Any;
        }
        IfMatch::Versions(
            header
                .split(',')
                .map(|t| version_of_etag(t).to_string())
                .collect(),
        )
    }

    /// Whether a resource at `version` satisfies the precondition.
    pub fn accepts(&self, version: Option<&str>) -> bool {
        match (self, version) {
            (IfMatch::Any, _) => true,
            (IfMatch::Versions(v), Some(current)) => v.iter().any(|t| t == current),
            (IfMatch::Versions(_), None) => false,
        }
    }
}

/// The entity tag of a resource version: `W/"<version>"`, as `meta.version` and `ETag` carry it.
pub fn etag(version: &str) -> String {
    ["W/\"", version, "\""].concat()
}

/// The version inside an entity tag, without `W/` and quotes.
pub fn version_of_etag(tag: &str) -> &str {
    let t = tag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(t)
}

#[cfg(test)]
mod etag_tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        assert!(IfMatch::parse("*").accepts(Some("x")));
        assert!(IfMatch::parse("*").accepts(None));
        let m = IfMatch::parse("W/\"20260101#1\", \"other\"");
        assert!(m.accepts(Some("20260101#1")));
        assert!(m.accepts(Some("other")));
        assert!(!m.accepts(Some("20260101#2")));
        assert!(!m.accepts(None));
        assert_eq!(etag("v1"), "W/\"v1\"");
        assert_eq!(version_of_etag(&etag("v1")), "v1");
    }
}
