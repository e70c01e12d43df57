//! Entra ID's request shapes (shared/SCIM-CLIENTS.md) and, beside each, the LDAP write that
//! gives the directory the same result: what the gateway writes for that body with the demo
//! mapping (config/gateway.toml). `mirror::check` verifies at start-up that both sides really
//! leave the same entries behind, so the direct side measures the same work.

use crate::gateway::url_encode;
use crate::slapd::EMPTY_MEMBER_DN;
use ldap3::Mod;
use serde_json::{json, Value};
use std::collections::HashSet;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";
/// What ppolicy reads as "locked for good": the gateway's disable strategy in the demo config.
pub const LOCKED: &str = "000001010000Z";

/// `[mapping.users] object_classes` of the demo config.
const CLASSES: &[&str] = &[
    "top",
    "person",
    "organizationalPerson",
    "inetOrgPerson",
    "scimUser",
];
const GIVEN: &str = "Given";
const FAMILY: &str = "Family";
const DEPARTMENT: &str = "R&D";

/// An (attribute, values) list as ldap3 adds it.
pub type Attrs = Vec<(String, HashSet<String>)>;

fn attrs(list: &[(&str, &[&str])]) -> Attrs {
    list.iter()
        .map(|(a, vs)| (a.to_string(), vs.iter().map(|v| v.to_string()).collect()))
        .collect()
}

fn one(attr: &str, value: &str) -> (String, HashSet<String>) {
    (attr.to_string(), HashSet::from([value.to_string()]))
}

pub fn user_dn(user_name: &str) -> String {
    format!("uid={},{PEOPLE}", ldap3::dn_escape(user_name))
}

pub fn group_dn(name: &str) -> String {
    format!("cn={},{GROUPS}", ldap3::dn_escape(name))
}

/// `GET /Users?filter=userName eq "<name>"`: Entra's match, and its Test Connection probe.
pub fn user_filter_path(user_name: &str) -> String {
    format!(
        "/Users?filter={}",
        url_encode(&format!("userName eq \"{user_name}\""))
    )
}

/// `GET /Groups?excludedAttributes=members&filter=displayName eq "<name>"`: Entra's group lookup.
pub fn group_filter_path(name: &str) -> String {
    format!(
        "/Groups?excludedAttributes=members&filter={}",
        url_encode(&format!("displayName eq \"{name}\""))
    )
}

/// A user as Entra's default mapping sends it on create.
pub struct EntraUser {
    pub user_name: String,
    /// Entra's employeeId.
    pub number: usize,
}

impl EntraUser {
    pub fn new(user_name: impl Into<String>, number: usize) -> EntraUser {
        EntraUser {
            user_name: user_name.into(),
            number,
        }
    }

    fn mail(&self) -> String {
        format!("{}@contoso.example", self.user_name)
    }

    /// `POST /Users`, in the shape of SCIM-CLIENTS.md ("Create").
    pub fn body(&self) -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "externalId": self.user_name,
            "userName": self.user_name,
            "active": true,
            "emails": [{"primary": true, "type": "work", "value": self.mail()}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": format!("{GIVEN} {FAMILY}"), "familyName": FAMILY, "givenName": GIVEN},
            "roles": [],
            ENTERPRISE: {"employeeNumber": self.number.to_string(), "department": DEPARTMENT}
        })
    }

    /// The entry the gateway adds for [`EntraUser::body`].
    pub fn entry(&self) -> Attrs {
        let mut out = attrs(&[
            ("objectClass", CLASSES),
            ("cn", &[&format!("{GIVEN} {FAMILY}")]),
            ("sn", &[FAMILY]),
        ]);
        out.extend(self.extra_attrs());
        out
    }

    /// What [`EntraUser::entry`] has beyond an inetOrgPerson's uid, cn and sn.
    fn extra_attrs(&self) -> Attrs {
        vec![
            one("uid", &self.user_name),
            one("scimExternalId", &self.user_name),
            one("givenName", GIVEN),
            one("mail", &self.mail()),
            one("employeeNumber", &self.number.to_string()),
            one("departmentNumber", DEPARTMENT),
        ]
    }

    /// LDIF lines that give an existing `bulk…` user of `slapd::write_big_group_ldif_with` the
    /// rest of an Entra-created user's attributes (its uid, cn and sn are already there).
    pub fn ldif_extra(&self) -> String {
        let mut out = String::from("objectClass: scimUser\n");
        for (attr, values) in self.extra_attrs() {
            if attr != "uid" {
                for v in values {
                    out.push_str(&format!("{attr}: {v}\n"));
                }
            }
        }
        out
    }
}

/// Entra's default-shape update of three attributes (the first three operations of
/// SCIM-CLIENTS.md's "Update (default shape)"). `tag` makes every value new, so each PATCH
/// really changes the entry.
pub struct UserUpdate {
    mail: String,
    family: String,
    department: String,
}

impl UserUpdate {
    pub fn new(user_name: &str, tag: &str) -> UserUpdate {
        UserUpdate {
            mail: format!("{user_name}.{tag}@contoso.example"),
            family: format!("Updated {tag}"),
            department: format!("Sales {tag}"),
        }
    }

    pub fn body(&self) -> Value {
        json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": self.mail},
            {"op": "Replace", "path": "name.familyName", "value": self.family},
            {"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": self.department}
        ]})
    }

    pub fn mods(&self) -> Vec<Mod<String>> {
        vec![
            replace("mail", &self.mail),
            replace("sn", &self.family),
            replace("departmentNumber", &self.department),
        ]
    }
}

fn replace(attr: &str, value: &str) -> Mod<String> {
    Mod::Replace(attr.to_string(), HashSet::from([value.to_string()]))
}

/// `{"op":"Replace","path":"active","value":"False"}`: Entra's disable.
pub fn disable_body() -> Value {
    json!({"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})
}

pub fn disable_mods() -> Vec<Mod<String>> {
    vec![replace("pwdAccountLockedTime", LOCKED)]
}

/// Entra's manager update: the manager's id as a plain string.
pub fn manager_body(manager_id: &str) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": manager_id}
    ]})
}

pub fn manager_mods(manager_dn: &str) -> Vec<Mod<String>> {
    vec![replace("manager", manager_dn)]
}

/// A group as Entra creates it: empty, with its extra schema URI.
pub struct EntraGroup {
    pub name: String,
}

impl EntraGroup {
    pub fn body(&self) -> Value {
        json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:Group",
                "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
            ],
            "externalId": self.name,
            "displayName": self.name,
            "members": []
        })
    }

    /// The entry the gateway adds for [`EntraGroup::body`]: groupOfNames keeps the placeholder
    /// member so that it may be empty.
    pub fn entry(&self) -> Attrs {
        attrs(&[
            ("objectClass", &["top", "groupOfNames", "scimGroup"]),
            ("cn", &[&self.name]),
            ("scimExternalId", &[&self.name]),
            ("member", &[EMPTY_MEMBER_DN]),
        ])
    }
}

/// Entra's member add: `{"op":"Add","path":"members","value":[{"$ref":null,"value":id}, …]}`.
pub fn add_members_body<'a>(ids: impl IntoIterator<Item = &'a str>) -> Value {
    let value: Vec<Value> = ids
        .into_iter()
        .map(|id| json!({"$ref": null, "value": id}))
        .collect();
    json!({"schemas": [PATCH_OP], "Operations": [{"op": "Add", "path": "members", "value": value}]})
}

pub fn add_members_mods(dns: impl IntoIterator<Item = String>) -> Vec<Mod<String>> {
    vec![Mod::Add("member".to_string(), dns.into_iter().collect())]
}

/// An Entra-like random GUID for the Test Connection probe (no entry has it as userName).
pub fn probe_guid(seed: u64) -> String {
    let a = mix(seed);
    let b = mix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

/// A cheap, well-spread hash (splitmix64's finaliser): the same pseudo-random sequence for both
/// sides, without a random-number crate.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
