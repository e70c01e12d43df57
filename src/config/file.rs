//! The configuration file as written: TOML shapes only, no validation.
//!
//! Every struct denies unknown keys so a typo is reported with its name
//! instead of being silently ignored. Defaults are stated on each field.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the gateway listens. At least one listener is required.
    pub listeners: Vec<ListenerFile>,
    /// Server certificate for HTTPS listeners. Required when any listener uses https.
    pub tls: Option<TlsFile>,
    /// SCIM protocol settings. Default: base path `/scim/v2`, 1 MiB bodies, pages of at most 200.
    #[serde(default)]
    pub scim: ScimFile,
    /// Bearer tokens accepted from clients. At least one is required.
    pub tokens: Vec<TokenFile>,
    /// How the gateway reaches the LDAP directory.
    pub directory: DirectoryFile,
    /// How SCIM resources map onto directory entries.
    pub mapping: MappingFile,
    /// Connection and request limits of the HTTP front. Every key has a default.
    #[serde(default)]
    pub limits: LimitsFile,
    /// Request quotas. On by default, with defaults above what Entra ID needs (25 requests/s).
    #[serde(default)]
    pub rate_limits: RateLimitsFile,
    /// The admin listener serving `/metrics`, `/healthz` and `/readyz`. Without it, none is served.
    pub admin: Option<AdminFile>,
    /// Log format and level.
    #[serde(default)]
    pub log: LogFile,
    /// Where the audit trail of directory writes goes. Default: the main log.
    #[serde(default)]
    pub audit: AuditFile,
    /// Hot reload. SIGHUP always reloads; this adds polling of the files for changes.
    #[serde(default)]
    pub reload: ReloadFile,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Largest number of open client connections; further ones wait in the kernel's backlog. Default 1024.
    pub max_connections: Option<usize>,
    /// Largest number of requests handled at once; more get 503 before their body is read. Default 256.
    pub max_concurrent_requests: Option<usize>,
    /// Time a client has to send a request's headers (for a connection's first request counted from
    /// the TLS handshake, HTTP/1 or HTTP/2); a slower client is disconnected. Default 10.
    pub header_read_timeout_secs: Option<u64>,
    /// Time a client has to finish the TLS handshake. Default 10.
    pub tls_handshake_timeout_secs: Option<u64>,
    /// Longest a request may take from its headers to its response; beyond it 504. Default 60.
    pub request_timeout_secs: Option<u64>,
    /// An idle keep-alive connection is closed after this long. Default 120. (An HTTP/1.1 connection
    /// waiting for its next request is also bound by `header_read_timeout_secs`, whichever is shorter.)
    pub keep_alive_idle_secs: Option<u64>,
    /// Requests served on one connection before it is closed gracefully; 0 for no limit. Default 10000.
    pub max_requests_per_connection: Option<u64>,
    /// Concurrent HTTP/2 streams per connection. Default 64.
    pub http2_max_concurrent_streams: Option<u32>,
    /// On SIGTERM, how long in-flight requests may take to finish before connections are closed. Default 30.
    pub shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsFile {
    /// `false` turns every quota off. Default true.
    pub enabled: Option<bool>,
    /// Networks of reverse proxies whose `Forwarded` / `X-Forwarded-For` headers are believed.
    /// Default: none (the TCP peer is the client).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Reads (GET, POST .search) by all clients together. Default 1000/s, burst 2000.
    pub global_read: Option<QuotaFile>,
    /// Writes by all clients together; writes are the directory's scarce resource. Default 200/s, burst 400.
    pub global_write: Option<QuotaFile>,
    /// Reads per token. Default 100/s, burst 200.
    pub token_read: Option<QuotaFile>,
    /// Writes per token. Default 50/s, burst 100.
    pub token_write: Option<QuotaFile>,
    /// Failed authentications per client IP, checked before the token. Default 5/s, burst 20.
    pub unauthenticated_per_ip: Option<QuotaFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaFile {
    /// Sustained requests per second; 0 turns this quota off.
    pub per_second: u32,
    /// Requests allowed at once on top of an empty bucket. Default 2 × `per_second`.
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Socket address of the plaintext admin listener, for example `127.0.0.1:9464`.
    pub address: String,
    /// How long `/readyz` waits for the directory's answer. Default 2.
    pub readiness_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// `human` (default) or `json` (one object per line).
    pub format: Option<String>,
    /// A tracing filter such as `info` or `scim_ldap_gateway=debug`. Default `info`; `RUST_LOG` overrides it.
    pub level: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// `log` (default: events with target `audit` in the main log), `stdout`, `stderr` or `file`.
    pub output: Option<String>,
    /// For `file`: the JSON-lines file records are appended to; reopened on reload (log rotation).
    pub file: Option<PathBuf>,
    /// Attributes whose values are never written to the audit trail, on top of the built-in
    /// `userPassword`, `unicodePwd` and `authPassword`. Default: none.
    #[serde(default)]
    pub redact_attributes: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadFile {
    /// Poll the config file, the TLS files and secret files for changes and reload when one changes. Default false.
    #[serde(default)]
    pub watch: bool,
    /// Polling interval. Default 5.
    pub watch_interval_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    /// Socket address, for example `0.0.0.0:8443`.
    pub address: String,
    /// `https` (default) or `http`. Plain `http` must be chosen explicitly and logs a warning.
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM certificate chain, leaf first. Relative paths are resolved against the config file's folder.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimFile {
    /// URL path prefix of the SCIM endpoints. Default `/scim/v2`.
    pub base_path: Option<String>,
    /// Largest accepted request body. Default 1048576.
    pub max_body_bytes: Option<usize>,
    /// Largest page a list request returns, whatever `count` asks for. Default 200.
    pub max_page_size: Option<usize>,
    /// Page size when a list request sends no `count`. Default 100.
    pub default_page_size: Option<usize>,
    /// Largest number of operations in one `POST /Bulk`. Default 1000; more is 413.
    /// (Its maxPayloadSize is `max_body_bytes`.)
    pub max_bulk_operations: Option<usize>,
    /// Largest number of operations in one PATCH. Default 1000; more is 400 tooMany.
    pub max_patch_operations: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// A label for logs (never the token itself), for example `entra`.
    pub name: String,
    /// Where the token's value comes from.
    pub secret: SecretFile,
}

/// A secret is read from an environment variable or a file, never written inline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    /// Name of an environment variable holding the secret.
    pub env: Option<String>,
    /// Path of a file holding the secret; one trailing newline is stripped.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    /// `ldap://host:port`, `ldaps://host:port` or `ldapi://` (a local socket). Use `urls` instead
    /// for several servers.
    pub url: Option<String>,
    /// Several servers, in order of preference: writes go to the first healthy one, and a
    /// connection that drops moves to the next. Exactly one of `url` or `urls`.
    pub urls: Option<Vec<String>>,
    /// Replicas that serve reads (searches); writes never go there. Default: the `urls` servers.
    #[serde(default)]
    pub read_urls: Vec<String>,
    /// Upgrade an `ldap://` connection with StartTLS. Default false.
    #[serde(default)]
    pub starttls: bool,
    /// PEM file of CA certificates trusted for ldaps/StartTLS. Default: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification of the directory. Default false. Logs a warning; for labs only.
    #[serde(default)]
    pub danger_skip_tls_verify: bool,
    /// DN of the service account the gateway binds as.
    pub bind_dn: String,
    /// The service account's password.
    pub bind_password: SecretFile,
    /// Number of pooled connections, each with its own driver task. Default 4.
    pub pool_size: Option<usize>,
    /// Connections the gateway keeps for plain searches, each lent to one request at a time and
    /// opened as the searches need them; 0 sends every search through the pool. Default 64.
    pub search_connections: Option<usize>,
    /// Timeout for TCP connect, TLS and bind. Default 5.
    pub connect_timeout_secs: Option<u64>,
    /// Timeout for one directory operation. Default 10.
    pub operation_timeout_secs: Option<u64>,
    /// `Retry-After` sent with 503 while the directory is unreachable. Default 5.
    pub retry_after_secs: Option<u64>,
    /// Largest number of entries one search may walk through. Default 100000.
    pub max_search_entries: Option<usize>,
    /// Largest result the gateway sorts itself when the directory cannot sort (no server-side
    /// sort control, or no ordering rule for the attribute). Default 10000; beyond it 400 tooMany.
    pub max_sort_entries: Option<usize>,
    /// Largest number of directory operations in flight at once. Default 8 × `pool_size`.
    pub max_in_flight: Option<usize>,
    /// Largest number of operations waiting for a slot; beyond it 503 at once. Default 256.
    pub max_queued: Option<usize>,
    /// How long an operation may wait for a slot before the request gets 503. Default 1000.
    pub queue_timeout_ms: Option<u64>,
    /// Which server-maintained attribute changes on every write, used to guard read-modify-write.
    /// Default `entryCSN` (OpenLDAP); `uSNChanged` on Active Directory; empty string disables the guard.
    pub version_attribute: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// How SCIM Users map onto directory entries.
    pub users: UserMappingFile,
    /// How SCIM Groups map onto directory entries. Without it, /Groups is not served.
    pub groups: Option<GroupMappingFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMappingFile {
    /// The subtree that holds groups. The gateway never reads or writes groups outside it.
    pub base: String,
    /// `one` or `sub` (default) below `base`.
    pub scope: Option<String>,
    /// LDAP filter selecting group entries. Default `(objectClass=groupOfNames)`.
    pub filter: Option<String>,
    /// Object classes of new groups. Default `["top", "groupOfNames"]`.
    pub object_classes: Option<Vec<String>>,
    /// Immutable unique id attribute that becomes the SCIM `id`. Default `entryUUID`.
    pub id_attribute: Option<String>,
    /// RDN attribute of new groups. Default `cn`.
    pub rdn_attribute: Option<String>,
    /// Attribute holding `displayName`. Default `cn`. When it is the RDN attribute, a rename is a modrdn.
    pub name_attribute: Option<String>,
    /// Attribute holding `externalId`. Default: none (externalId is then not stored and refused).
    pub external_id_attribute: Option<String>,
    /// Attribute listing the members. Default `member`.
    pub member_attribute: Option<String>,
    /// `dn` (default: members are DNs, as in groupOfNames, groupOfUniqueNames and AD groups) or
    /// `user_name` (members are user names, as in posixGroup's memberUid; groups cannot nest).
    pub member_value: Option<String>,
    /// A DN kept in every group so classes that require a member (groupOfNames, groupOfUniqueNames)
    /// can be empty. Never shown in SCIM. Must lie outside the user and group bases. Default: none.
    pub placeholder_member: Option<String>,
    /// Read the member attribute in windows of this many values (Active Directory's range
    /// retrieval, `member;range=0-1499`); AD's MaxValRange is 1500. Default: in one piece.
    pub member_range_size: Option<usize>,
    /// Operational attribute on members that lists their groups (`memberOf`), used for a user's
    /// `groups`. Default: none, in which case groups are found with a reverse search.
    pub member_of_attribute: Option<String>,
    /// Attribute whose equality filter finds an entry by DN: `entryDN` (OpenLDAP, default) or
    /// `distinguishedName` (Active Directory). Used to resolve member DNs to ids in batches.
    pub dn_attribute: Option<String>,
    /// Who keeps memberships consistent when a user is deleted or renamed: `gateway` (default: the
    /// gateway updates the groups) or `directory` (refint/memberOf overlays or AD do it).
    pub membership_integrity: Option<String>,
    /// Creation time attribute for `meta.created`. Default `createTimestamp`.
    pub created_attribute: Option<String>,
    /// Modification time attribute for `meta.lastModified`. Default `modifyTimestamp`.
    pub modified_attribute: Option<String>,
    /// Attributes written with fixed values on every new group (e.g. posixGroup's gidNumber).
    #[serde(default)]
    pub constants: Vec<ConstantFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserMappingFile {
    /// The subtree that holds users. The gateway never reads or writes outside it.
    pub base: String,
    /// `one` or `sub` (default) below `base`.
    pub scope: Option<String>,
    /// LDAP filter selecting user entries. Default `(objectClass=inetOrgPerson)`.
    pub filter: Option<String>,
    /// Object classes of new entries.
    pub object_classes: Vec<String>,
    /// Immutable unique id attribute that becomes the SCIM `id`. Default `entryUUID`.
    pub id_attribute: Option<String>,
    /// RDN attribute of new entries; its value comes from the SCIM attribute mapped to it. Default `uid`.
    pub rdn_attribute: Option<String>,
    /// Creation time attribute for `meta.created`. Default `createTimestamp`.
    pub created_attribute: Option<String>,
    /// Modification time attribute for `meta.lastModified`. Default `modifyTimestamp`.
    pub modified_attribute: Option<String>,
    /// How `active=false` is written. Default: `type = "ppolicy"`.
    pub disable: Option<DisableFile>,
    /// What DELETE does. Default: `type = "hard"`.
    pub delete: Option<DeleteFile>,
    /// How SCIM `password` (write-only, never returned) is written. Default: `type = "none"`.
    pub password: Option<PasswordFile>,
    /// SCIM attribute ↔ LDAP attribute pairs.
    pub attributes: Vec<AttributeFile>,
    /// Attributes written with fixed values on every new entry.
    #[serde(default)]
    pub constants: Vec<ConstantFile>,
    /// Attributes computed from a mapped SCIM attribute when an entry is created (for example
    /// Active Directory's `sAMAccountName` from `userName`). Never shown in SCIM.
    #[serde(default)]
    pub derived: Vec<DerivedFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedFile {
    /// LDAP attribute written on create.
    pub ldap: String,
    /// The mapped SCIM attribute it is computed from, for example `userName`.
    pub from: String,
    /// `copy` (default), `local_part` (before the `@`), or `sam_account_name` (AD's rules: the
    /// part before `@`, without `"/\[]:;|=,+*?<>`, at most 20 characters).
    pub rule: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisableFile {
    /// `ppolicy`, `ns_account_lock`, `ad_user_account_control`, `attribute` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `attribute`: the attribute to set.
    pub attribute: Option<String>,
    /// For `attribute`: the value that means disabled.
    pub value: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordFile {
    /// `none` (a password in a request is refused), `password_modify` (the LDAP Password Modify
    /// extended operation, RFC 3062: the server hashes it under its own policy; OpenLDAP, 389-DS)
    /// or `unicode_pwd` (Active Directory's `unicodePwd`; only over ldaps:// or StartTLS).
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteFile {
    /// `hard` (remove the entry) or `soft` (disable it, and move it when `move_to` is set).
    #[serde(rename = "type")]
    pub kind: String,
    /// For `soft`: the OU that receives deleted users. Must lie outside the users base so later GETs give 404.
    pub move_to: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeFile {
    /// SCIM attribute path, for example `name.givenName`, `emails[type eq "work"].value`,
    /// or `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`.
    pub scim: String,
    /// LDAP attribute that stores it.
    pub ldap: String,
    /// `string` (default) or `reference`: the SCIM value is another user's id, stored as that user's DN.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// For typed multi-valued attributes: mark the element `primary: true` in responses. Default false.
    #[serde(default)]
    pub primary: bool,
    /// SCIM attributes whose value fills this LDAP attribute on create when the client sent none
    /// (for attributes the schema requires, such as `cn` and `sn`). Default: none.
    #[serde(default)]
    pub create_default_from: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantFile {
    /// LDAP attribute written on create.
    pub ldap: String,
    /// Its values.
    pub values: Vec<String>,
}
