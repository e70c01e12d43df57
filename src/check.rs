//! `scim-ldap-gateway check`: validate a config against the live directory's subschema.

use crate::config::{Config, ConfigProblem, DirectorySettings};
use crate::directory::capabilities::Capabilities;
use crate::directory::ldap::pool;
use crate::mapping::groups::GroupMapping;
use crate::mapping::PasswordMethod;
use crate::mapping::UserMapping;
use std::collections::HashSet;

pub use crate::directory::schema::definition_names;

/// The object classes and attribute types a directory's subschema defines.
#[derive(Debug, Default)]
pub struct Subschema {
    pub object_classes: HashSet<String>,
    pub attribute_types: HashSet<String>,
}

impl Subschema {
    pub fn from_definitions(object_classes: &[String], attribute_types: &[String]) -> Self {
        Subschema {
            object_classes: object_classes
                .iter()
                .flat_map(|d| definition_names(d))
                .collect(),
            attribute_types: attribute_types
                .iter()
                .flat_map(|d| definition_names(d))
                .collect(),
        }
    }

    fn has_attribute(&self, name: &str) -> bool {
        // `member;range=0-1499` style options do not change the type.
        let base = name.split(';').next().unwrap_or(name);
        base == "1.1" || self.attribute_types.contains(&base.to_ascii_lowercase())
    }
}

/// Every objectClass and attribute the user mapping uses that the subschema lacks.
pub fn mapping_problems(m: &UserMapping, schema: &Subschema, key: &str) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    let mut push = |k: String, msg: String| {
        out.push(ConfigProblem {
            key: k,
            message: msg,
        })
    };
    for (i, oc) in m.object_classes.iter().enumerate() {
        if !schema.object_classes.contains(&oc.to_ascii_lowercase()) {
            push(
                format!("{key}.object_classes[{i}]"),
                format!("object class {oc} is not in the directory's schema"),
            );
        }
    }
    for (i, s) in m.slots.iter().enumerate() {
        if !schema.has_attribute(&s.ldap) {
            push(
                format!("{key}.attributes[{i}].ldap"),
                format!("attribute {} is not in the directory's schema", s.ldap),
            );
        }
    }
    for (i, (a, _)) in m.constants.iter().enumerate() {
        if !schema.has_attribute(a) {
            push(
                format!("{key}.constants[{i}].ldap"),
                format!("attribute {a} is not in the directory's schema"),
            );
        }
    }
    for (k, a) in [
        ("id_attribute", &m.id_attribute),
        ("rdn_attribute", &m.rdn_attribute),
        ("created_attribute", &m.created_attribute),
        ("modified_attribute", &m.modified_attribute),
    ] {
        if !schema.has_attribute(a) {
            push(
                format!("{key}.{k}"),
                format!("attribute {a} is not in the directory's schema"),
            );
        }
    }
    if let Some(a) = m.disable.attribute() {
        if !schema.has_attribute(a) {
            push(
                format!("{key}.disable"),
                format!("attribute {a} is not in the directory's schema (is the overlay or schema for this strategy loaded?)"),
            );
        }
    }
    out
}

/// Every objectClass and attribute the group mapping uses that the subschema lacks.
pub fn group_mapping_problems(
    g: &GroupMapping,
    schema: &Subschema,
    key: &str,
) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    for (i, oc) in g.object_classes.iter().enumerate() {
        if !schema.object_classes.contains(&oc.to_ascii_lowercase()) {
            out.push(ConfigProblem {
                key: format!("{key}.object_classes[{i}]"),
                message: format!("object class {oc} is not in the directory's schema"),
            });
        }
    }
    let attrs = [
        ("id_attribute", Some(&g.id_attribute)),
        ("rdn_attribute", Some(&g.rdn_attribute)),
        ("name_attribute", Some(&g.name_attribute)),
        ("external_id_attribute", g.external_id_attribute.as_ref()),
        ("member_attribute", Some(&g.member_attribute)),
        ("member_of_attribute", g.member_of_attribute.as_ref()),
        ("dn_attribute", Some(&g.dn_attribute)),
        ("created_attribute", Some(&g.created_attribute)),
        ("modified_attribute", Some(&g.modified_attribute)),
    ];
    for (k, a) in attrs {
        if let Some(a) = a {
            if !schema.has_attribute(a) {
                out.push(ConfigProblem {
                    key: format!("{key}.{k}"),
                    message: format!("attribute {a} is not in the directory's schema"),
                });
            }
        }
    }
    out
}

/// What one directory server is and supports.
#[derive(Debug)]
pub struct ServerReport {
    pub url: String,
    pub capabilities: Capabilities,
}

/// Everything `check` found: problems (each with its key) and, per reachable server, its kind
/// and capabilities.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub problems: Vec<ConfigProblem>,
    pub servers: Vec<ServerReport>,
    /// Whether the first server's schema has a `memberOf` attribute type (None: schema unread).
    pub member_of: Option<bool>,
}

/// Check every configured server: bind, read its root DSE, and on the first one also the
/// subschema and the mapped subtrees.
pub async fn check_directory(config: &Config) -> CheckReport {
    let d: &DirectorySettings = &config.directory;
    let mut report = CheckReport::default();
    let cs = match pool::conn_settings(d) {
        Ok(cs) => cs,
        Err(e) => {
            report.problems.push(ConfigProblem {
                key: "directory.ca_file".into(),
                message: e.to_string(),
            });
            return report;
        }
    };
    let several = d.urls.len() > 1;
    let servers: Vec<(String, String)> = d
        .urls
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let key = if several {
                format!("directory.urls[{i}]")
            } else {
                "directory.url".to_string()
            };
            (key, u.clone())
        })
        .chain(
            d.read_urls
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("directory.read_urls[{i}]"), u.clone())),
        )
        .collect();
    for (n, (key, url)) in servers.iter().enumerate() {
        let (mut ldap, driver) = match pool::connect(d, cs.clone(), url).await {
            Ok(x) => x,
            Err(e) => {
                let key = match e {
                    pool::ConnectError::Bind(_) => "directory.bind_dn".to_string(),
                    _ => key.clone(),
                };
                report.problems.push(ConfigProblem {
                    key,
                    message: format!("{url}: {e}"),
                });
                continue;
            }
        };
        ldap.with_timeout(d.operation_timeout);
        let dse = ldap
            .search(
                "",
                ldap3::Scope::Base,
                "(objectClass=*)",
                crate::directory::capabilities::ROOT_DSE_ATTRIBUTES.to_vec(),
            )
            .await
            .and_then(|r| r.success())
            .ok()
            .and_then(|(entries, _)| entries.into_iter().next())
            .map(|e| {
                let se = ldap3::SearchEntry::construct(e);
                let mut entry = crate::directory::Entry {
                    dn: String::new(),
                    ..Default::default()
                };
                for (k, v) in se.attrs {
                    entry.attrs.insert(k.to_ascii_lowercase(), v);
                }
                entry
            })
            .unwrap_or_default();
        let caps = Capabilities::from_root_dse(&dse);
        if config.users.password == PasswordMethod::PasswordModify && !caps.password_modify {
            report.problems.push(ConfigProblem {
                key: "mapping.users.password.type".into(),
                message: format!("{url} does not announce the Password Modify extended operation"),
            });
        }
        let subschema = caps.subschema.clone();
        report.servers.push(ServerReport {
            url: url.clone(),
            capabilities: caps,
        });
        if n == 0 {
            let (problems, member_of) = check_schema_and_bases(config, &mut ldap, subschema).await;
            report.problems.extend(problems);
            report.member_of = member_of;
        }
        let _ = ldap.unbind().await;
        driver.abort();
    }
    report
}

/// The mapping against the subschema, and the mapped subtrees' readability.
async fn check_schema_and_bases(
    config: &Config,
    ldap: &mut ldap3::Ldap,
    subschema: Option<String>,
) -> (Vec<ConfigProblem>, Option<bool>) {
    let mut problems = Vec::new();
    let mut member_of = None;
    let d: &DirectorySettings = &config.directory;
    let subschema_dn = subschema.unwrap_or_else(|| "cn=Subschema".to_string());
    ldap.with_timeout(d.operation_timeout);
    let schema = ldap
        .search(
            &subschema_dn,
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["objectClasses", "attributeTypes"],
        )
        .await
        .and_then(|r| r.success());
    match schema {
        Ok((entries, _)) => {
            let e = entries
                .into_iter()
                .next()
                .map(ldap3::SearchEntry::construct);
            let get = |name: &str| {
                e.as_ref()
                    .and_then(|e| {
                        e.attrs
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.clone())
                    })
                    .unwrap_or_default()
            };
            let s = Subschema::from_definitions(&get("objectClasses"), &get("attributeTypes"));
            member_of = (!s.attribute_types.is_empty()).then(|| s.has_attribute("memberOf"));
            if s.object_classes.is_empty() {
                problems.push(ConfigProblem {
                    key: "directory.bind_dn".into(),
                    message: format!("could not read the subschema at {subschema_dn}; does the service account have read access?"),
                });
            } else {
                problems.extend(mapping_problems(&config.users, &s, "mapping.users"));
                if let Some(g) = &config.groups {
                    problems.extend(group_mapping_problems(g, &s, "mapping.groups"));
                }
            }
        }
        Err(e) => problems.push(ConfigProblem {
            key: "directory.bind_dn".into(),
            message: format!("could not read the subschema: {e}"),
        }),
    }
    ldap.with_timeout(d.operation_timeout);
    let base = ldap
        .search(
            &config.users.base,
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["1.1"],
        )
        .await
        .and_then(|r| r.success());
    if let Err(e) = base {
        problems.push(ConfigProblem {
            key: "mapping.users.base".into(),
            message: format!("{} cannot be read: {e}", config.users.base),
        });
    }
    if let Some(g) = &config.groups {
        ldap.with_timeout(d.operation_timeout);
        let base = ldap
            .search(&g.base, ldap3::Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
            .and_then(|r| r.success());
        if let Err(e) = base {
            problems.push(ConfigProblem {
                key: "mapping.groups.base".into(),
                message: format!("{} cannot be read: {e}", g.base),
            });
        }
    }
    (problems, member_of)
}
