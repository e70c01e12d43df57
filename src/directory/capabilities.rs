//! What a directory server is and which LDAP controls and extensions it supports, read from its
//! root DSE. The LDAP layer only sends what the server announces; `check` reports it.

use super::Entry;

pub const PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";
pub const SERVER_SIDE_SORT: &str = "1.2.840.113556.1.4.473";
pub const ASSERTION: &str = "1.3.6.1.1.12";
pub const POST_READ: &str = "1.3.6.1.1.13.2";
pub const PERMISSIVE_MODIFY: &str = "1.2.840.113556.1.4.1413";
pub const MATCHED_VALUES: &str = "1.2.826.0.1.3344810.2.3";
pub const PASSWORD_MODIFY: &str = "1.3.6.1.4.1.4203.1.11.1";

/// The root DSE attributes to read.
pub const ROOT_DSE_ATTRIBUTES: &[&str] = &[
    "supportedControl",
    "supportedExtension",
    "supportedLDAPVersion",
    "vendorName",
    "vendorVersion",
    "objectClass",
    "forestFunctionality",
    "domainControllerFunctionality",
    "namingContexts",
    "subschemaSubentry",
];

/// The kind of server, as far as the root DSE tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerKind {
    OpenLdap,
    Samba,
    ActiveDirectory,
    Ds389,
    Other(String),
}

impl std::fmt::Display for ServerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerKind::OpenLdap => f.write_str("OpenLDAP"),
            ServerKind::Samba => f.write_str("Samba Active Directory"),
            ServerKind::ActiveDirectory => f.write_str("Microsoft Active Directory"),
            ServerKind::Ds389 => f.write_str("389 Directory Server"),
            ServerKind::Other(v) if v.is_empty() => f.write_str("an unidentified LDAP server"),
            ServerKind::Other(v) => write!(f, "{v}"),
        }
    }
}

/// The controls and extensions the gateway cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub kind: ServerKind,
    /// `vendorVersion`, when the server tells.
    pub version: Option<String>,
    pub paged_results: bool,
    pub server_side_sort: bool,
    pub assertion: bool,
    pub post_read: bool,
    pub permissive_modify: bool,
    pub matched_values: bool,
    pub password_modify: bool,
    /// The DN of the subschema entry (`subschemaSubentry`), when the root DSE names it.
    pub subschema: Option<String>,
}

impl Capabilities {
    /// Everything assumed: what the gateway did before it read the root DSE (and what a fake has).
    pub fn all() -> Capabilities {
        Capabilities {
            kind: ServerKind::Other(String::new()),
            version: None,
            paged_results: true,
            server_side_sort: true,
            assertion: true,
            post_read: true,
            permissive_modify: true,
            matched_values: true,
            password_modify: true,
            subschema: None,
        }
    }

    /// Read from a root DSE entry.
    pub fn from_root_dse(e: &Entry) -> Capabilities {
        let control = |oid: &str| e.values("supportedControl").iter().any(|v| v == oid);
        let vendor = e.first("vendorName").unwrap_or_default().to_string();
        let ad_like = e.first("forestFunctionality").is_some()
            || e.first("domainControllerFunctionality").is_some();
        let kind = if vendor.to_ascii_lowercase().contains("samba") {
            ServerKind::Samba
        } else if ad_like {
            ServerKind::ActiveDirectory
        } else if vendor.contains("389") || vendor.to_ascii_lowercase().contains("fedora") {
            ServerKind::Ds389
        } else if e
            .values("objectClass")
            .iter()
            .any(|c| c.eq_ignore_ascii_case("OpenLDAProotDSE"))
        {
            ServerKind::OpenLdap
        } else {
            ServerKind::Other(vendor)
        };
        Capabilities {
            kind,
            version: e.first("vendorVersion").map(str::to_string),
            paged_results: control(PAGED_RESULTS),
            server_side_sort: control(SERVER_SIDE_SORT),
            assertion: control(ASSERTION),
            post_read: control(POST_READ),
            permissive_modify: control(PERMISSIVE_MODIFY),
            matched_values: control(MATCHED_VALUES),
            password_modify: e
                .values("supportedExtension")
                .iter()
                .any(|v| v == PASSWORD_MODIFY),
            subschema: e.first("subschemaSubentry").map(str::to_string),
        }
    }

    /// One plain-language line per feature: what works, and what the gateway does instead.
    pub fn report(&self) -> Vec<(bool, String)> {
        vec![
            (
                self.paged_results,
                if self.paged_results {
                    "paged results: large lists are read in pages".into()
                } else {
                    "no paged results: lists are limited by the server's size limit".into()
                },
            ),
            (
                self.server_side_sort,
                if self.server_side_sort {
                    "server-side sort: sortBy is sorted by the directory".into()
                } else {
                    "no server-side sort: the gateway sorts up to directory.max_sort_entries itself"
                        .into()
                },
            ),
            (
                self.assertion,
                if self.assertion {
                    "assertion control: If-Match and read-modify-write are checked atomically by the directory".into()
                } else {
                    "no assertion control: If-Match is checked by the gateway just before each write (not atomic); disabling accounts stays atomic through value swaps".into()
                },
            ),
            (
                self.post_read,
                if self.post_read {
                    "post-read control: a write returns the new entry in the same round trip".into()
                } else {
                    "no post-read control: the entry is read back after each write (one more search)"
                        .into()
                },
            ),
            (
                self.permissive_modify,
                if self.permissive_modify {
                    "permissive modify: adding a present member or removing an absent one is not an error".into()
                } else {
                    "no permissive modify: repeated member adds and removes are filtered by the gateway".into()
                },
            ),
            (
                self.matched_values,
                if self.matched_values {
                    "matched values: membership checks read only the members named".into()
                } else {
                    "no matched values: membership checks use one search per member named".into()
                },
            ),
            (
                self.password_modify,
                if self.password_modify {
                    "Password Modify extended operation: password = \"password_modify\" works"
                        .into()
                } else {
                    "no Password Modify extended operation: password = \"password_modify\" will fail (on Active Directory use \"unicode_pwd\")".into()
                },
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn dse(pairs: &[(&str, &[&str])]) -> Entry {
        let mut attrs = BTreeMap::new();
        for (k, v) in pairs {
            attrs.insert(
                k.to_ascii_lowercase(),
                v.iter().map(|s| s.to_string()).collect(),
            );
        }
        Entry {
            dn: String::new(),
            attrs,
        }
    }

    #[test]
    fn openldap_is_recognised_with_its_controls() {
        let c = Capabilities::from_root_dse(&dse(&[
            ("objectClass", &["top", "OpenLDAProotDSE"]),
            (
                "supportedControl",
                &[
                    PAGED_RESULTS,
                    ASSERTION,
                    POST_READ,
                    MATCHED_VALUES,
                    SERVER_SIDE_SORT,
                ],
            ),
            ("supportedExtension", &[PASSWORD_MODIFY]),
            ("subschemaSubentry", &["cn=Subschema"]),
        ]));
        assert_eq!(c.kind, ServerKind::OpenLdap);
        assert_eq!(c.subschema.as_deref(), Some("cn=Subschema"));
        assert!(c.paged_results && c.assertion && c.post_read && c.matched_values);
        assert!(c.password_modify && c.server_side_sort);
        assert!(!c.permissive_modify);
        assert!(c
            .report()
            .iter()
            .any(|(ok, l)| !ok && l.contains("permissive")));
    }

    #[test]
    fn samba_and_active_directory_are_told_apart() {
        let samba = Capabilities::from_root_dse(&dse(&[
            ("vendorName", &["Samba Team (https://www.samba.org)"]),
            ("forestFunctionality", &["4"]),
            (
                "supportedControl",
                &[PAGED_RESULTS, PERMISSIVE_MODIFY, SERVER_SIDE_SORT],
            ),
        ]));
        assert_eq!(samba.kind, ServerKind::Samba);
        assert_eq!(
            samba.subschema, None,
            "not named: the schema checks fall back"
        );
        assert!(!samba.assertion && !samba.post_read && !samba.password_modify);
        let ad = Capabilities::from_root_dse(&dse(&[
            ("forestFunctionality", &["7"]),
            ("supportedControl", &[PAGED_RESULTS]),
        ]));
        assert_eq!(ad.kind, ServerKind::ActiveDirectory);
        let ds = Capabilities::from_root_dse(&dse(&[("vendorName", &["389 Project"])]));
        assert_eq!(ds.kind, ServerKind::Ds389);
        let other = Capabilities::from_root_dse(&dse(&[("vendorName", &["Acme LDAP"])]));
        assert_eq!(other.kind.to_string(), "Acme LDAP");
        assert_eq!(
            Capabilities::from_root_dse(&dse(&[])).kind.to_string(),
            "an unidentified LDAP server"
        );
    }
}
