//! A thin SCIM-to-LDAP proxy: the least a gateway on ldap3's pool can do for the match and the
//! create, run inside the bare HTTPS responder's process (`bare.rs`). It answers
//!
//! - `GET …/Users?filter=userName eq "<name>"` with one search by uid (the match's own search:
//!   the same base, scope, filter and attributes as the direct side's), on a pool of ldap3
//!   connections as big as the gateway's, taken in turn, and a list holding each entry's first
//!   values, written straight into the body;
//! - `POST …/Users` with the add of the entry the direct side adds for that body (the body
//!   parsed, its `userName` and `employeeNumber` read; the rest of the entry is the load
//!   generator's own, with no mapping to apply), carrying the post-read, and `201 Created`
//!   with the id the post-read returned.
//!
//! No token check, schema, mapping, validation, routing, metrics or logs. Any gateway that
//! answers these requests from the directory over ldap3's pool does at least this, so what this
//! proxy reaches against the direct operation (throughput at concurrency 8 and 64, added p50 at
//! concurrency 1) bounds what such a gateway can reach on this machine; the gateway's own
//! search connections (since b38dc97) do less per match than ldap3 and may pass it. It measures
//! as one what the bounds and floors sum from parts, with a proxy process between client and
//! slapd, idle while slapd works and woken by its answer, as the gateway is.

use crate::entra::{user_dn, EntraUser, ENTERPRISE, PEOPLE, USER_SCHEMA};
use crate::runner::service_connection;
use bytes::Bytes;
use ldap3::controls::{ControlType, PostRead, PostReadResp};
use ldap3::{Ldap, Scope, SearchEntry};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The file in the responder's directory that turns the proxy on.
const FILE: &str = "proxy.json";

/// What the proxy needs from the benchmark: its directory and what the gateway's config reads.
#[derive(Serialize, Deserialize)]
pub struct ProxySettings {
    pub url: String,
    /// The service account's password (the direct side's binding).
    pub password: String,
    /// LDAP connections: the gateway's `pool_size`.
    pub pool: usize,
    /// The demo config's `[mapping.users] filter`.
    pub user_filter: String,
    /// The attributes the gateway reads for a user.
    pub user_read_attrs: Vec<String>,
    /// The gateway's own answer to a match that found one user: what the LDAP relay
    /// (`relay.rs`) answers when slapd returns one entry.
    pub match_answer: String,
}

impl ProxySettings {
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let text = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        std::fs::write(dir.join(FILE), text).map_err(|e| format!("{FILE}: {e}"))
    }
}

/// The proxy's side of a responder: its settings and its LDAP connections.
pub struct Proxy {
    settings: ProxySettings,
    pool: Vec<Ldap>,
    next: AtomicUsize,
}

/// An answer: status and body.
pub type Answer = (u16, Bytes);

impl Proxy {
    /// The proxy configured in `dir`, bound and ready; `None` when the benchmark asked for none.
    pub async fn open(dir: &Path) -> Result<Option<Proxy>, String> {
        let text = match std::fs::read(dir.join(FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{FILE}: {e}")),
        };
        let settings: ProxySettings =
            serde_json::from_slice(&text).map_err(|e| format!("{FILE}: {e}"))?;
        let mut pool = Vec::with_capacity(settings.pool);
        for _ in 0..settings.pool.max(1) {
            pool.push(service_connection(&settings.url, &settings.password).await?);
        }
        Ok(Some(Proxy {
            settings,
            pool,
            next: AtomicUsize::new(0),
        }))
    }

    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// The next pooled connection, in turn.
    fn ldap(&self) -> Ldap {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.pool[n % self.pool.len()].clone()
    }

    /// The answer to `GET …/Users?<query>` whose filter is `userName eq "<name>"`.
    pub async fn find(&self, query: &str) -> Answer {
        let Some(name) = user_name_of(query) else {
            return (
                400,
                Bytes::from_static(b"{\"detail\":\"no userName eq filter\"}"),
            );
        };
        let filter = format!(
            "(&{}(uid={}))",
            self.settings.user_filter,
            ldap3::ldap_escape(&name)
        );
        let found = self
            .ldap()
            .search(
                PEOPLE,
                Scope::OneLevel,
                &filter,
                &self.settings.user_read_attrs,
            )
            .await
            .and_then(|r| r.success());
        match found {
            Ok((entries, _)) => {
                let entries: Vec<SearchEntry> =
                    entries.into_iter().map(SearchEntry::construct).collect();
                (200, list_body(&entries))
            }
            Err(e) => (503, error_body(&e.to_string())),
        }
    }

    /// The answer to `POST …/Users` with `body`.
    pub async fn create(&self, body: &[u8]) -> Answer {
        let user: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return (400, error_body(&e.to_string())),
        };
        let (Some(name), Some(number)) = (
            user["userName"].as_str(),
            user[ENTERPRISE]["employeeNumber"]
                .as_str()
                .and_then(|n| n.parse::<usize>().ok()),
        ) else {
            return (400, error_body("no userName or employeeNumber"));
        };
        let user = EntraUser::new(name, number);
        let mut ldap = self.ldap();
        let added = ldap
            .with_controls(PostRead::new(self.settings.user_read_attrs.clone()))
            .add(&user_dn(name), user.entry())
            .await
            .and_then(|r| r.success());
        let result = match added {
            Ok(r) => r,
            Err(e) => return (409, error_body(&e.to_string())),
        };
        let id = result.ctrls.iter().find_map(|c| match c.0 {
            Some(ControlType::PostReadResp) => {
                let read: PostReadResp = c.1.parse();
                read.attrs.get("entryUUID").and_then(|v| v.first()).cloned()
            }
            _ => None,
        });
        let Some(id) = id else {
            return (502, error_body("the add's post-read returned no entryUUID"));
        };
        let mut out = format!("{{\"schemas\":[\"{USER_SCHEMA}\"],\"id\":");
        push_json_string(&mut out, &id);
        out.push_str(",\"userName\":");
        push_json_string(&mut out, name);
        out.push('}');
        (201, Bytes::from(out))
    }
}

/// The quoted value of a `filter=userName eq "<value>"` query, decoded as the gateway decodes
/// its queries (`form_urlencoded`).
pub fn user_name_of(query: &str) -> Option<String> {
    let filter =
        form_urlencoded::parse(query.as_bytes()).find_map(|(k, v)| (k == "filter").then_some(v))?;
    let rest = filter.strip_prefix("userName eq \"")?;
    Some(rest.strip_suffix('"')?.to_string())
}

/// A list response of `entries`: each entry's id (`entryUUID`), then every attribute's first
/// value under the attribute's own name.
fn list_body(entries: &[SearchEntry]) -> Bytes {
    let mut out = format!(
        "{{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:ListResponse\"],\"totalResults\":{},\"Resources\":[",
        entries.len()
    );
    for (n, e) in entries.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        let id = e.attrs.get("entryUUID").and_then(|v| v.first());
        push_json_string(&mut out, id.map(String::as_str).unwrap_or(""));
        for (attr, values) in &e.attrs {
            let Some(value) = values.first() else {
                continue;
            };
            out.push(',');
            push_json_string(&mut out, attr);
            out.push(':');
            push_json_string(&mut out, value);
        }
        out.push('}');
    }
    out.push_str("]}");
    Bytes::from(out)
}

fn error_body(detail: &str) -> Bytes {
    let mut out = String::from("{\"detail\":");
    push_json_string(&mut out, detail);
    out.push('}');
    Bytes::from(out)
}

fn push_json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entra::user_filter_path;

    #[test]
    fn reads_the_user_name_of_the_match_path() {
        let path = user_filter_path("bulk000042");
        let query = path.split_once('?').unwrap().1;
        assert_eq!(user_name_of(query).as_deref(), Some("bulk000042"));
        assert_eq!(
            user_name_of("filter=userName+eq+%22a%22b%22").as_deref(),
            Some("a\"b")
        );
        assert_eq!(user_name_of("filter=displayName%20eq%20%22x%22"), None);
        assert_eq!(user_name_of("count=1"), None);
        assert_eq!(user_name_of("filter=%zz"), None);
    }

    #[test]
    fn a_list_body_is_json_with_each_entrys_id_and_first_values() {
        let entry = SearchEntry {
            dn: "uid=a,ou=people,dc=example,dc=org".into(),
            attrs: [
                ("entryUUID".to_string(), vec!["u-1".to_string()]),
                ("cn".to_string(), vec!["A \"quoted\" name".to_string()]),
                ("mail".to_string(), vec![]),
            ]
            .into_iter()
            .collect(),
            bin_attrs: Default::default(),
        };
        let body: serde_json::Value = serde_json::from_slice(&list_body(&[entry])).unwrap();
        assert_eq!(body["totalResults"], 1);
        assert_eq!(body["Resources"][0]["id"], "u-1");
        assert_eq!(body["Resources"][0]["cn"], "A \"quoted\" name");
        assert!(body["Resources"][0].get("mail").is_none());
        let empty: serde_json::Value = serde_json::from_slice(&list_body(&[])).unwrap();
        assert_eq!(empty["totalResults"], 0);
    }
}
