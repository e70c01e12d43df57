//! The config-driven mapping between SCIM User attributes and LDAP attributes.
//!
//! A mapping is a list of *slots*: each slot is one place in a SCIM resource
//! (`displayName`, `name.givenName`, `emails[type eq "work"].value`, an
//! extension attribute) stored in one LDAP attribute. Everything the gateway
//! reads, writes, filters on or advertises is derived from these slots.

pub mod groups;
pub mod node;
pub mod resource;
pub mod translate;

use crate::config::file::{AttributeFile, UserMappingFile};
use crate::config::Problems;
use crate::directory::Scope;
use crate::scim::filter::{parse_path, CompValue, CompareOp, Filter};

pub const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The attribute value that means "locked for good" to OpenLDAP's ppolicy overlay.
pub const PPOLICY_LOCKED_FOREVER: &str = "000001010000Z";
const AD_ACCOUNTDISABLE: u32 = 0x2;

/// Where a slot sits inside a SCIM resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A single-valued top-level attribute: `displayName`, `externalId`, an extension's `department`.
    Simple { attr: String },
    /// A sub-attribute of a single-valued complex attribute: `name.givenName`.
    Sub { attr: String, sub: String },
    /// A sub-attribute of the elements of a multi-valued attribute that carry one `type`:
    /// `emails[type eq "work"].value`. Every LDAP value becomes one element.
    Typed {
        attr: String,
        type_value: String,
        sub: String,
    },
}

impl Target {
    pub fn attr(&self) -> &str {
        match self {
            Target::Simple { attr } | Target::Sub { attr, .. } | Target::Typed { attr, .. } => attr,
        }
    }
}

/// How a slot's values are encoded in LDAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Stored as sent.
    String,
    /// A SCIM id of another user, stored as that user's DN (`manager`).
    Reference,
}

/// One SCIM location stored in one LDAP attribute.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Schema URN that owns the attribute.
    pub schema: String,
    pub target: Target,
    pub ldap: String,
    pub kind: ValueKind,
    pub primary: bool,
    /// Slots whose value fills this one on create when the client sent none.
    pub create_default_from: Vec<usize>,
    /// The path as written in the config, for messages.
    pub path: String,
}

/// How `active` is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisableStrategy {
    /// `active` is not supported: always true, writes of `false` are refused.
    None,
    /// OpenLDAP ppolicy: `pwdAccountLockedTime: 000001010000Z`.
    PPolicy,
    /// 389-DS / FreeIPA: `nsAccountLock: TRUE`.
    NsAccountLock,
    /// Active Directory: bit 0x2 of `userAccountControl`, set or cleared, never toggled.
    AdUserAccountControl,
    /// A configured attribute holding a configured value while disabled.
    Attribute { attribute: String, value: String },
}

impl DisableStrategy {
    /// The LDAP attribute that carries the state, if any.
    pub fn attribute(&self) -> Option<&str> {
        match self {
            DisableStrategy::None => None,
            DisableStrategy::PPolicy => Some("pwdAccountLockedTime"),
            DisableStrategy::NsAccountLock => Some("nsAccountLock"),
            DisableStrategy::AdUserAccountControl => Some("userAccountControl"),
            DisableStrategy::Attribute { attribute, .. } => Some(attribute),
        }
    }

    /// Whether an entry's values of `attribute()` mean the account is active.
    pub fn is_active(&self, values: &[String]) -> bool {
        match self {
            DisableStrategy::None => true,
            DisableStrategy::PPolicy => !values.iter().any(|v| v == PPOLICY_LOCKED_FOREVER),
            DisableStrategy::NsAccountLock => {
                !values.iter().any(|v| v.eq_ignore_ascii_case("true"))
            }
            DisableStrategy::AdUserAccountControl => values
                .first()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map(|uac| (uac as u32) & AD_ACCOUNTDISABLE == 0)
                .unwrap_or(true),
            DisableStrategy::Attribute { value, .. } => !values.iter().any(|v| v == value),
        }
    }

    /// The modification that brings `current` values to the wanted state; `None` when already there.
    /// For AD, `current` is the old `userAccountControl`; the caller guards the write with an
    /// assertion on that old value, so a concurrent change of other bits is never lost.
    pub fn transition(
        &self,
        current: &[String],
        active: bool,
    ) -> Option<crate::directory::Modification> {
        use crate::directory::Modification;
        if self.is_active(current) == active {
            return None;
        }
        match self {
            DisableStrategy::None => None,
            DisableStrategy::PPolicy | DisableStrategy::NsAccountLock if active => {
                Some(Modification::Replace(self.attribute()?.to_string(), vec![]))
            }
            DisableStrategy::PPolicy => Some(Modification::Replace(
                "pwdAccountLockedTime".into(),
                vec![PPOLICY_LOCKED_FOREVER.into()],
            )),
            DisableStrategy::NsAccountLock => Some(Modification::Replace(
                "nsAccountLock".into(),
                vec!["TRUE".into()],
            )),
            DisableStrategy::AdUserAccountControl => {
                let old = current.first();
                let uac = old
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .unwrap_or(0x200) as u32;
                let new = if active {
                    uac & !AD_ACCOUNTDISABLE
                } else {
                    uac | AD_ACCOUNTDISABLE
                };
                let new = (new as i32).to_string();
                // A swap of the exact old value: if another writer changed any bit in between,
                // the old value is gone, the write fails, and the caller re-reads and retries.
                Some(match old {
                    Some(old) => Modification::Swap("userAccountControl".into(), old.clone(), new),
                    None => Modification::Replace("userAccountControl".into(), vec![new]),
                })
            }
            DisableStrategy::Attribute { attribute, .. } if active => {
                Some(Modification::Replace(attribute.clone(), vec![]))
            }
            DisableStrategy::Attribute { attribute, value } => Some(Modification::Replace(
                attribute.clone(),
                vec![value.clone()],
            )),
        }
    }

    /// LDAP filter matching active (`true`) or disabled (`false`) accounts.
    pub fn filter(&self, active: bool) -> Option<String> {
        let disabled = match self {
            DisableStrategy::None => return None,
            DisableStrategy::PPolicy => format!("(pwdAccountLockedTime={PPOLICY_LOCKED_FOREVER})"),
            DisableStrategy::NsAccountLock => "(nsAccountLock=TRUE)".to_string(),
            DisableStrategy::AdUserAccountControl => {
                "(userAccountControl:1.2.840.113556.1.4.803:=2)".to_string()
            }
            DisableStrategy::Attribute { attribute, value } => {
                format!("({attribute}={})", ldap3::ldap_escape(value.as_str()))
            }
        };
        Some(if active {
            format!("(!{disabled})")
        } else {
            disabled
        })
    }
}

/// How a derived attribute is computed from its source value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeriveRule {
    Copy,
    LocalPart,
    SamAccountName,
}

impl DeriveRule {
    /// The derived value; `None` when nothing valid is left.
    pub fn apply(self, source: &str) -> Option<String> {
        let local = source.split('@').next().unwrap_or(source);
        let out: String = match self {
            DeriveRule::Copy => source.to_string(),
            DeriveRule::LocalPart => local.to_string(),
            DeriveRule::SamAccountName => {
                let kept: String = local
                    .chars()
                    .filter(|c| !c.is_control() && !"\"/\\[]:;|=,+*?<>".contains(*c))
                    .collect();
                // AD also refuses a name ending in a period; 20 characters at most.
                let kept: String = kept.trim().chars().take(20).collect();
                kept.trim_end_matches(['.', ' ']).to_string()
            }
        };
        (!out.is_empty()).then_some(out)
    }
}

/// An attribute computed on create from a mapped slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub ldap: String,
    pub from_slot: usize,
    pub rule: DeriveRule,
}

/// How a SCIM `password` reaches the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordMethod {
    /// Passwords are refused.
    None,
    /// The LDAP Password Modify extended operation (RFC 3062); the server hashes the password.
    PasswordModify,
    /// Active Directory's `unicodePwd`, written in the same add or modify as the other changes.
    UnicodePwd,
}

/// What DELETE does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletePolicy {
    Hard,
    /// Disable, and move below `move_to` when set.
    Soft {
        move_to: Option<String>,
    },
}

/// The validated mapping of SCIM Users onto directory entries.
#[derive(Debug, Clone)]
pub struct UserMapping {
    pub base: String,
    pub scope: Scope,
    /// LDAP filter that selects user entries, always parenthesised.
    pub object_filter: String,
    pub object_classes: Vec<String>,
    pub id_attribute: String,
    pub rdn_attribute: String,
    /// The slot whose value names new entries (the slot stored in `rdn_attribute`).
    pub rdn_slot: usize,
    /// The slot holding `userName`.
    pub user_name_slot: usize,
    pub created_attribute: String,
    pub modified_attribute: String,
    pub disable: DisableStrategy,
    pub delete: DeletePolicy,
    pub password: PasswordMethod,
    pub slots: Vec<Slot>,
    pub derived: Vec<Derived>,
    pub constants: Vec<(String, Vec<String>)>,
}

impl UserMapping {
    /// Validate the file type; problems are pushed with key paths under `key`.
    pub fn build(f: &UserMappingFile, key: &str, problems: &mut Problems) -> Option<UserMapping> {
        let before = problems.0.len();
        let (scope, object_filter) = validate_subtree(
            key,
            &f.base,
            f.scope.as_deref(),
            f.filter.as_deref(),
            "(objectClass=inetOrgPerson)",
            problems,
        );
        if f.object_classes.is_empty() {
            problems.push(
                format!("{key}.object_classes"),
                "list the object classes of new entries, e.g. [\"top\", \"inetOrgPerson\"]",
            );
        }

        let mut slots: Vec<Slot> = Vec::new();
        let mut defaults: Vec<(usize, usize, &AttributeFile)> = Vec::new();
        for (i, a) in f.attributes.iter().enumerate() {
            let akey = format!("{key}.attributes[{i}]");
            match slot_from_file(a) {
                Ok(slot) => {
                    if let Some(other) = slots
                        .iter()
                        .find(|s| s.ldap.eq_ignore_ascii_case(&slot.ldap))
                    {
                        problems.push(
                            format!("{akey}.ldap"),
                            format!(
                                "{} is already mapped from {}; map each LDAP attribute once",
                                slot.ldap, other.path
                            ),
                        );
                    } else if let Some(other) = slots.iter().find(|s| s.same_location(&slot)) {
                        problems.push(
                            format!("{akey}.scim"),
                            format!("{} is mapped twice (also {})", slot.path, other.path),
                        );
                    } else {
                        defaults.push((slots.len(), i, a));
                        slots.push(slot);
                    }
                }
                Err((field, msg)) => problems.push(format!("{akey}.{field}"), msg),
            }
        }
        for (idx, i, a) in defaults {
            for (j, from) in a.create_default_from.iter().enumerate() {
                match slots.iter().position(|s| s.path.eq_ignore_ascii_case(from)) {
                    Some(src) => slots[idx].create_default_from.push(src),
                    None => problems.push(
                        format!("{key}.attributes[{i}].create_default_from[{j}]"),
                        format!("{from:?} is not a mapped SCIM attribute"),
                    ),
                }
            }
        }

        let user_name_slot = slots.iter().position(|s| {
            s.schema == CORE_USER && matches!(&s.target, Target::Simple { attr } if attr.eq_ignore_ascii_case("userName"))
        });
        if user_name_slot.is_none() {
            problems.push(
                format!("{key}.attributes"),
                "userName must be mapped (it is SCIM's required matching attribute)",
            );
        }
        let rdn_attribute = f.rdn_attribute.clone().unwrap_or_else(|| "uid".into());
        let rdn_slot = slots
            .iter()
            .position(|s| s.ldap.eq_ignore_ascii_case(&rdn_attribute));
        match rdn_slot {
            None => problems.push(
                format!("{key}.rdn_attribute"),
                format!("{rdn_attribute} is not the ldap side of any mapped attribute; new entries could not be named"),
            ),
            Some(i) if slots[i].kind != ValueKind::String || matches!(slots[i].target, Target::Typed { .. }) => problems.push(
                format!("{key}.rdn_attribute"),
                format!("{rdn_attribute} must come from a single-valued string attribute"),
            ),
            _ => {}
        }

        let disable = match &f.disable {
            None => DisableStrategy::PPolicy,
            Some(d) => match (d.kind.as_str(), &d.attribute, &d.value) {
                ("ppolicy", None, None) => DisableStrategy::PPolicy,
                ("ns_account_lock", None, None) => DisableStrategy::NsAccountLock,
                ("ad_user_account_control", None, None) => DisableStrategy::AdUserAccountControl,
                ("none", None, None) => DisableStrategy::None,
                ("attribute", Some(attribute), Some(value)) => DisableStrategy::Attribute {
                    attribute: attribute.clone(),
                    value: value.clone(),
                },
                ("attribute", _, _) => {
                    problems.push(
                        format!("{key}.disable"),
                        "type \"attribute\" needs both `attribute` and `value`",
                    );
                    DisableStrategy::None
                }
                ("ppolicy" | "ns_account_lock" | "ad_user_account_control" | "none", _, _) => {
                    problems.push(
                        format!("{key}.disable"),
                        "`attribute` and `value` apply only to type \"attribute\"",
                    );
                    DisableStrategy::None
                }
                (other, _, _) => {
                    problems.push(
                        format!("{key}.disable.type"),
                        format!("{other:?} is not a strategy; use ppolicy, ns_account_lock, ad_user_account_control, attribute or none"),
                    );
                    DisableStrategy::None
                }
            },
        };
        if let Some(attr) = disable.attribute() {
            if slots.iter().any(|s| s.ldap.eq_ignore_ascii_case(attr)) {
                problems.push(
                    format!("{key}.disable"),
                    format!("{attr} is both mapped and used to disable accounts"),
                );
            }
        }

        let delete = match &f.delete {
            None => DeletePolicy::Hard,
            Some(d) => match (d.kind.as_str(), &d.move_to) {
                ("hard", None) => DeletePolicy::Hard,
                ("hard", Some(_)) => {
                    problems.push(
                        format!("{key}.delete.move_to"),
                        "applies only to type \"soft\"",
                    );
                    DeletePolicy::Hard
                }
                ("soft", move_to) => {
                    if let Some(m) = move_to {
                        if crate::directory::dn::is_within(m, &f.base) {
                            problems.push(
                                format!("{key}.delete.move_to"),
                                format!("{m:?} lies inside {key}.base, so deleted users would stay visible; choose an OU outside it"),
                            );
                        }
                    }
                    if disable == DisableStrategy::None {
                        problems.push(
                            format!("{key}.delete"),
                            "soft delete needs a disable strategy other than \"none\"",
                        );
                    }
                    DeletePolicy::Soft {
                        move_to: move_to.clone(),
                    }
                }
                (other, _) => {
                    problems.push(
                        format!("{key}.delete.type"),
                        format!("{other:?} is not a delete policy; use \"hard\" or \"soft\""),
                    );
                    DeletePolicy::Hard
                }
            },
        };

        let password = match f.password.as_ref().map(|p| p.kind.as_str()) {
            None | Some("none") => PasswordMethod::None,
            Some("password_modify") => PasswordMethod::PasswordModify,
            Some("unicode_pwd") => PasswordMethod::UnicodePwd,
            Some(other) => {
                problems.push(
                    format!("{key}.password.type"),
                    format!("{other:?} is not a password method; use \"none\", \"password_modify\" or \"unicode_pwd\""),
                );
                PasswordMethod::None
            }
        };
        for (i, s) in slots.iter().enumerate() {
            if ["userpassword", "unicodepwd", "authpassword"]
                .contains(&s.ldap.to_ascii_lowercase().as_str())
            {
                problems.push(
                    format!("{key}.attributes[{i}].ldap"),
                    format!("{} holds passwords; use [{key}.password] so the value is hashed by the server and never returned", s.ldap),
                );
            }
        }

        let mut derived = Vec::new();
        for (i, d) in f.derived.iter().enumerate() {
            let dkey = format!("{key}.derived[{i}]");
            let rule = match d.rule.as_deref().unwrap_or("copy") {
                "copy" => DeriveRule::Copy,
                "local_part" => DeriveRule::LocalPart,
                "sam_account_name" => DeriveRule::SamAccountName,
                other => {
                    problems.push(
                        format!("{dkey}.rule"),
                        format!("{other:?} is not a rule; use \"copy\", \"local_part\" or \"sam_account_name\""),
                    );
                    continue;
                }
            };
            if slots.iter().any(|s| s.ldap.eq_ignore_ascii_case(&d.ldap)) {
                problems.push(format!("{dkey}.ldap"), format!("{} is also mapped", d.ldap));
                continue;
            }
            match slots
                .iter()
                .position(|s| s.path.eq_ignore_ascii_case(&d.from))
            {
                Some(from_slot) => derived.push(Derived {
                    ldap: d.ldap.clone(),
                    from_slot,
                    rule,
                }),
                None => problems.push(
                    format!("{dkey}.from"),
                    format!("{:?} is not a mapped SCIM attribute", d.from),
                ),
            }
        }

        let constants = f
            .constants
            .iter()
            .map(|c| (c.ldap.clone(), c.values.clone()))
            .collect::<Vec<_>>();
        for (i, (attr, _)) in constants.iter().enumerate() {
            if slots.iter().any(|s| s.ldap.eq_ignore_ascii_case(attr))
                || attr.eq_ignore_ascii_case("objectClass")
            {
                problems.push(
                    format!("{key}.constants[{i}].ldap"),
                    format!("{attr} is also mapped or is objectClass; set object classes in object_classes"),
                );
            }
        }

        if problems.0.len() > before {
            return None;
        }
        Some(UserMapping {
            base: f.base.clone(),
            scope,
            object_filter,
            object_classes: f.object_classes.clone(),
            id_attribute: f.id_attribute.clone().unwrap_or_else(|| "entryUUID".into()),
            rdn_attribute,
            rdn_slot: rdn_slot?,
            user_name_slot: user_name_slot?,
            created_attribute: f
                .created_attribute
                .clone()
                .unwrap_or_else(|| "createTimestamp".into()),
            modified_attribute: f
                .modified_attribute
                .clone()
                .unwrap_or_else(|| "modifyTimestamp".into()),
            disable,
            delete,
            password,
            slots,
            derived,
            constants,
        })
    }

    /// Every LDAP attribute needed to render a user.
    pub fn read_attributes(&self) -> Vec<String> {
        let mut attrs = vec![
            self.id_attribute.clone(),
            self.created_attribute.clone(),
            self.modified_attribute.clone(),
        ];
        attrs.extend(self.slots.iter().map(|s| s.ldap.clone()));
        attrs.extend(self.disable.attribute().map(str::to_string));
        attrs
    }

    /// Schema URNs that at least one slot uses, core first.
    pub fn schemas(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for urn in self.schema_urns() {
            // Most slots repeat a URN exactly: an exact comparison settles them quicker.
            if !out.iter().any(|u| *u == urn || u.eq_ignore_ascii_case(urn)) {
                out.push(urn);
            }
        }
        out
    }

    /// The core schema's URN, then each slot's, repeats included: what `schemas()` lists.
    fn schema_urns(&self) -> impl Iterator<Item = &str> {
        std::iter::once(CORE_USER).chain(self.slots.iter().map(|s| s.schema.as_str()))
    }

    /// The mapping's own spelling of the schema URN `key` names (case-insensitive), core or
    /// extension; `None` for a schema no slot uses.
    pub fn schema_urn(&self, key: &str) -> Option<&str> {
        self.schema_urns().find(|u| u.eq_ignore_ascii_case(key))
    }

    /// Slots of one SCIM attribute (case-insensitive), in config order.
    pub fn slots_of(&self, schema: &str, attr: &str) -> Vec<(usize, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.maps(schema, attr))
            .collect()
    }

    /// The schema URN owning `attr` when the client wrote no URN: the core schema first,
    /// then the only extension that maps an attribute of that name.
    /// Borrowed from the mapping: a filter's translation asks for each attribute it names.
    pub fn schema_of(&self, urn: Option<&str>, attr: &str) -> Option<&str> {
        if let Some(urn) = urn {
            return self.schema_urn(urn);
        }
        if self.slots.iter().any(|s| s.maps(CORE_USER, attr)) || is_core_common(attr) {
            return Some(CORE_USER);
        }
        self.slots
            .iter()
            .find(|s| s.target.attr().eq_ignore_ascii_case(attr))
            .map(|s| s.schema.as_str())
    }
}

/// Check the `base`, `scope` and `filter` keys of a resource mapping: the scope, and the object
/// filter (parenthesised, with `default_filter` when absent).
pub(crate) fn validate_subtree(
    key: &str,
    base: &str,
    scope: Option<&str>,
    filter: Option<&str>,
    default_filter: &str,
    problems: &mut Problems,
) -> (Scope, String) {
    if crate::directory::dn::split_rdns(base).is_empty() {
        problems.push(
            format!("{key}.base"),
            format!("{base:?} is not a DN; write it like \"ou=people,dc=example,dc=org\""),
        );
    }
    let scope = match scope.unwrap_or("sub") {
        "sub" => Scope::Subtree,
        "one" => Scope::OneLevel,
        other => {
            problems.push(
                format!("{key}.scope"),
                format!("{other:?} is not a scope; use \"one\" or \"sub\""),
            );
            Scope::Subtree
        }
    };
    let filter = filter.unwrap_or(default_filter);
    let filter = if filter.starts_with('(') {
        filter.to_string()
    } else {
        format!("({filter})")
    };
    if ldap3::parse_filter(&filter).is_err() {
        problems.push(
            format!("{key}.filter"),
            format!("{filter:?} is not a valid LDAP filter"),
        );
    }
    (scope, filter)
}

/// Attributes every SCIM resource has, which the mapping does not list as slots.
pub fn is_core_common(attr: &str) -> bool {
    ["id", "meta", "schemas", "active"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(attr))
}

impl Slot {
    /// Whether this slot maps SCIM attribute `attr` of `schema` (both case-insensitive). The
    /// attribute name is compared first: it tells most slots apart at its first letter, where
    /// the schema URNs share their first 30.
    fn maps(&self, schema: &str, attr: &str) -> bool {
        self.target.attr().eq_ignore_ascii_case(attr) && self.schema.eq_ignore_ascii_case(schema)
    }

    fn same_location(&self, other: &Slot) -> bool {
        self.schema.eq_ignore_ascii_case(&other.schema)
            && match (&self.target, &other.target) {
                (Target::Simple { attr: a }, Target::Simple { attr: b }) => {
                    a.eq_ignore_ascii_case(b)
                }
                (Target::Sub { attr: a, sub: s }, Target::Sub { attr: b, sub: t }) => {
                    a.eq_ignore_ascii_case(b) && s.eq_ignore_ascii_case(t)
                }
                (
                    Target::Typed {
                        attr: a,
                        type_value: x,
                        sub: s,
                    },
                    Target::Typed {
                        attr: b,
                        type_value: y,
                        sub: t,
                    },
                ) => {
                    a.eq_ignore_ascii_case(b)
                        && x.eq_ignore_ascii_case(y)
                        && s.eq_ignore_ascii_case(t)
                }
                _ => false,
            }
    }
}

fn slot_from_file(a: &AttributeFile) -> Result<Slot, (&'static str, String)> {
    let path = parse_path(&a.scim).map_err(|e| {
        (
            "scim",
            format!("{:?} is not a SCIM attribute path: {e}", a.scim),
        )
    })?;
    let schema = match &path.attr.urn {
        Some(urn) => urn.clone(),
        None => CORE_USER.to_string(),
    };
    let name = path.attr.name.clone();
    if is_core_common(&name)
        || name.eq_ignore_ascii_case("password")
        || name.eq_ignore_ascii_case("groups")
    {
        return Err((
            "scim",
            format!("{name} is handled by the gateway itself and cannot be mapped"),
        ));
    }
    let target = match (&path.attr.sub, &path.filter, &path.sub) {
        (None, None, None) => Target::Simple { attr: name },
        (Some(sub), None, None) => Target::Sub {
            attr: name,
            sub: sub.clone(),
        },
        (None, Some(filter), Some(sub)) => match filter {
            Filter::Compare {
                path: fp,
                op: CompareOp::Eq,
                value: CompValue::Str(t),
            } if fp.urn.is_none() && fp.sub.is_none() && fp.name.eq_ignore_ascii_case("type") => {
                Target::Typed {
                    attr: name,
                    type_value: t.clone(),
                    sub: sub.clone(),
                }
            }
            _ => {
                return Err((
                    "scim",
                    format!(
                        "{:?}: only filters of the form [type eq \"...\"] can be mapped",
                        a.scim
                    ),
                ))
            }
        },
        _ => {
            return Err((
                "scim",
                format!(
                    "{:?}: write a typed path like emails[type eq \"work\"].value",
                    a.scim
                ),
            ))
        }
    };
    let kind = match a.kind.as_deref().unwrap_or("string") {
        "string" => ValueKind::String,
        "reference" => ValueKind::Reference,
        other => {
            return Err((
                "type",
                format!("{other:?} is not a value type; use \"string\" or \"reference\""),
            ))
        }
    };
    if kind == ValueKind::Reference && !matches!(target, Target::Simple { .. }) {
        return Err((
            "scim",
            format!(
                "{:?}: a reference must be a top-level attribute such as manager",
                a.scim
            ),
        ));
    }
    if a.primary && !matches!(target, Target::Typed { .. }) {
        return Err((
            "scim",
            format!(
                "{:?}: `primary` applies only to typed multi-valued attributes",
                a.scim
            ),
        ));
    }
    if a.ldap.is_empty()
        || !a
            .ldap
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';')
    {
        return Err((
            "ldap",
            format!("ldap attribute {:?} is not an attribute name", a.ldap),
        ));
    }
    Ok(Slot {
        schema,
        target,
        ldap: a.ldap.clone(),
        kind,
        primary: a.primary,
        create_default_from: vec![],
        path: a.scim.clone(),
    })
}

#[cfg(test)]
pub(crate) mod tests;
