//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5): which attributes a response carries.

use super::filter::{parse_path, AttrPath};
use super::ScimError;
use serde_json::{Map, Value};

/// The attribute selection of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    /// `attributes`: only these (plus `id` and `schemas`, which are always returned).
    include: Option<Vec<AttrPath>>,
    /// `excludedAttributes`: everything but these.
    exclude: Vec<AttrPath>,
}

fn parse_list(list: &str, what: &str) -> Result<Vec<AttrPath>, ScimError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let p =
                parse_path(s).map_err(|e| ScimError::InvalidPath(format!("{what}: {s:?}: {e}")))?;
            if p.filter.is_some() || p.sub.is_some() {
                return Err(ScimError::InvalidPath(format!(
                    "{what}: {s:?} cannot carry a filter"
                )));
            }
            Ok(p.attr)
        })
        .collect()
}

fn is_urn(key: &str) -> bool {
    key.len() > 4 && key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl Projection {
    pub fn parse(
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<Projection, ScimError> {
        Ok(Projection {
            include: attributes
                .map(|a| parse_list(a, "attributes"))
                .transpose()?,
            exclude: excluded
                .map(|e| parse_list(e, "excludedAttributes"))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// No `attributes` and no `excludedAttributes`: the whole resource.
    pub fn is_everything(&self) -> bool {
        self.include.is_none() && self.exclude.is_empty()
    }

    /// Whether the response may contain `attr` (of the resource's `schema`) at all; used to skip
    /// reading LDAP attributes and resolving references nobody will see.
    pub fn wants(&self, schema: &str, core: &str, attr: &str) -> bool {
        // No selection at all (most requests): everything, without comparing names.
        if self.is_everything() {
            return true;
        }
        let names = |p: &AttrPath| {
            same(&p.name, attr) && p.urn.as_deref().is_none_or(|u| same(u, schema))
                || p.urn.is_none() && same(&p.name, schema) && !same(schema, core)
                // a bare schema URN names the whole extension
                || p.urn.as_deref().is_some_and(|u| same(&format!("{u}:{}", p.name), schema))
        };
        if ["id", "schemas"].iter().any(|a| same(a, attr)) && same(schema, core) {
            return true;
        }
        if self.exclude.iter().any(|p| names(p) && p.sub.is_none()) {
            return false;
        }
        match &self.include {
            None => true,
            Some(list) => list.iter().any(names),
        }
    }

    /// Whether the extension object keyed `urn` may appear: some selected path lies in it, or it
    /// is not excluded as a whole.
    fn wants_extension(&self, urn: &str) -> bool {
        let whole = |p: &AttrPath| {
            p.urn
                .as_deref()
                .is_some_and(|u| same(&format!("{u}:{}", p.name), urn))
        };
        if self.exclude.iter().any(|p| whole(p) && p.sub.is_none()) {
            return false;
        }
        match &self.include {
            None => true,
            Some(list) => list
                .iter()
                .any(|p| whole(p) || p.urn.as_deref().is_some_and(|u| same(u, urn))),
        }
    }

    /// Remove from `resource` what the selection leaves out. `core` is the resource's core schema
    /// URN; extension attributes live in objects keyed by their schema URN.
    pub fn apply(&self, resource: &mut Value, core: &str) {
        let Value::Object(root) = resource else {
            return;
        };
        self.trim(root, core, core);
        let extensions: Vec<String> = root.keys().filter(|k| is_urn(k)).cloned().collect();
        for key in extensions {
            if !self.wants_extension(&key) {
                root.remove(&key);
                continue;
            }
            if let Some(Value::Object(ext)) = root.get_mut(&key) {
                self.trim(ext, &key, core);
                if ext.is_empty() {
                    root.remove(&key);
                }
            }
        }
    }

    /// Trim the attributes of one schema held in `obj`.
    fn trim(&self, obj: &mut Map<String, Value>, schema: &str, core: &str) {
        // Extension objects (keys that are schema URNs) are trimmed by `apply`, not here.
        let keys: Vec<String> = obj.keys().filter(|k| !is_urn(k)).cloned().collect();
        for key in keys {
            if !self.wants(schema, core, &key) {
                obj.remove(&key);
                continue;
            }
            let in_schema = |p: &AttrPath| {
                same(&p.name, &key) && p.urn.as_deref().is_none_or(|u| same(u, schema))
            };
            // Sub-attribute selection: `name.givenName`, or excluding `emails.primary`.
            let wanted_subs: Option<Vec<&str>> = self.include.as_ref().and_then(|list| {
                let whole = list.iter().any(|p| in_schema(p) && p.sub.is_none());
                let subs: Vec<&str> = list
                    .iter()
                    .filter(|p| in_schema(p))
                    .filter_map(|p| p.sub.as_deref())
                    .collect();
                (!whole && !subs.is_empty()).then_some(subs)
            });
            let dropped: Vec<&str> = self
                .exclude
                .iter()
                .filter(|p| in_schema(p))
                .filter_map(|p| p.sub.as_deref())
                .collect();
            if wanted_subs.is_none() && dropped.is_empty() {
                continue;
            }
            let keep = |sub: &str| {
                wanted_subs
                    .as_ref()
                    .is_none_or(|w| w.iter().any(|s| same(s, sub)))
                    && !dropped.iter().any(|d| same(d, sub))
            };
            match obj.get_mut(&key) {
                Some(Value::Object(inner)) => inner.retain(|k, _| keep(k)),
                Some(Value::Array(items)) => {
                    for item in items.iter_mut() {
                        if let Value::Object(inner) = item {
                            inner.retain(|k, _| keep(k));
                        }
                    }
                    items.retain(|i| !matches!(i, Value::Object(o) if o.is_empty()));
                }
                _ => {}
            }
            if matches!(obj.get(&key), Some(Value::Object(o)) if o.is_empty())
                || matches!(obj.get(&key), Some(Value::Array(a)) if a.is_empty())
            {
                obj.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn user() -> Value {
        json!({"schemas":[CORE, ENT], "id":"1", "userName":"a", "displayName":"A",
            "name":{"givenName":"G","familyName":"F"},
            "emails":[{"type":"work","value":"a@x","primary":true}],
            ENT: {"department":"D","employeeNumber":"7"},
            "meta":{"resourceType":"User"}})
    }

    fn apply(attrs: Option<&str>, excluded: Option<&str>) -> Value {
        let mut u = user();
        Projection::parse(attrs, excluded)
            .unwrap()
            .apply(&mut u, CORE);
        u
    }

    #[test]
    fn attributes_keep_id_schemas_and_the_named() {
        assert_eq!(
            apply(Some("userName,name.givenName"), None),
            json!({"schemas":[CORE, ENT], "id":"1", "userName":"a", "name":{"givenName":"G"}})
        );
        assert_eq!(
            apply(Some(&format!("{ENT}:department")), None),
            json!({"schemas":[CORE, ENT], "id":"1", ENT: {"department":"D"}})
        );
        assert_eq!(
            apply(Some(ENT), None),
            json!({"schemas":[CORE, ENT], "id":"1", ENT: {"department":"D","employeeNumber":"7"}})
        );
        assert_eq!(apply(Some("USERNAME"), None)["userName"], "a");
        assert_eq!(
            apply(Some("emails.value"), None)["emails"],
            json!([{"value":"a@x"}])
        );
    }

    #[test]
    fn excluded_attributes_drop_the_named_only() {
        let u = apply(None, Some("emails,meta"));
        assert!(u.get("emails").is_none() && u.get("meta").is_none());
        assert_eq!(u["displayName"], "A");
        let u = apply(None, Some(&format!("{ENT}:department,name.familyName,id")));
        assert_eq!(u[ENT], json!({"employeeNumber":"7"}));
        assert_eq!(u["name"], json!({"givenName":"G"}));
        assert_eq!(u["id"], "1", "id is always returned");
        let u = apply(None, Some(ENT));
        assert!(u.get(ENT).is_none());
    }

    #[test]
    fn wants_names_schemas_and_attributes() {
        let p = Projection::parse(Some("userName"), None).unwrap();
        assert!(p.wants(CORE, CORE, "userName"));
        assert!(p.wants(CORE, CORE, "id"));
        assert!(!p.wants(CORE, CORE, "emails"));
        assert!(!p.wants(ENT, CORE, "department"));
        let p = Projection::parse(None, Some("members")).unwrap();
        assert!(!p.wants(
            "urn:ietf:params:scim:schemas:core:2.0:Group",
            "urn:ietf:params:scim:schemas:core:2.0:Group",
            "members"
        ));
        assert!(Projection::parse(Some("emails[type eq \"work\"]"), None).is_err());
    }
}
