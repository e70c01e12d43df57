//! The directory traits implemented over ldap3 and a pool of service-account connections.

pub mod ad;
mod ber;
mod filter_ber;
pub mod pool;
pub mod sort;
mod wire;

use super::{
    dn, DirectoryError, Entry, EntryReader, EntryWriter, Modification, Page, Scope, SearchRequest,
    SortKey,
};
use crate::audit::{AuditChange, AuditWrite, Auditor};
use crate::config::DirectorySettings;
use crate::directory::capabilities::{self, Capabilities};
use crate::metrics::DirectoryMetrics;
use ldap3::controls::{Control, ControlType, MatchedValues, PagedResults, RawControl};
use ldap3::{Ldap, LdapError, LdapResult, Mod, SearchEntry, SearchOptions, SearchResult};
use pool::{Pool, PooledConn};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Page size of the id-only walk over a large result set.
const WALK_PAGE_SIZE: i32 = 1000;
/// Windows ending at or before this index are fetched with one request carrying all attributes.
const SMALL_WINDOW: usize = 200;

/// The LDAP implementation of the directory traits.
pub struct LdapDirectory {
    /// Connections to `urls`, first healthy server first: writes, and reads without replicas.
    pool: Pool,
    /// Connections spread over `read_urls`, when configured.
    read_pool: Option<Pool>,
    /// LDAP requests sent (searches, pages, adds, modifies, renames, deletes).
    operations: AtomicU64,
    /// Subtrees the gateway may touch; any other DN is refused before it reaches the wire.
    /// Replaced on reload when the mapping's bases change.
    allowed_bases: RwLock<Vec<String>>,
    op_timeout: Duration,
    max_search_entries: usize,
    max_sort_entries: usize,
    /// Back-pressure: one permit per operation in flight.
    slots: Semaphore,
    /// Operations waiting for a permit.
    queued: AtomicUsize,
    max_queued: usize,
    queue_timeout: Duration,
    metrics: DirectoryMetrics,
    audit: Arc<Auditor>,
    /// Whether every connection is encrypted (ldaps:// or StartTLS).
    encrypted: bool,
    /// What the server announces in its root DSE, read once.
    capabilities: tokio::sync::OnceCell<Capabilities>,
}

/// The LDAP result code carried by a successful ldap3 call (which may still be an LDAP error).
trait ResultCode {
    fn rc(&self) -> u32;
}

impl ResultCode for LdapResult {
    fn rc(&self) -> u32 {
        self.rc
    }
}

impl ResultCode for ldap3::result::ExopResult {
    fn rc(&self) -> u32 {
        self.1.rc
    }
}

impl ResultCode for SearchResult {
    fn rc(&self) -> u32 {
        self.1.rc
    }
}

/// The metric and audit label of a failed ldap3 call.
fn error_label(e: &LdapError) -> &'static str {
    match e {
        LdapError::LdapResult { result } => result_code_name(result.rc),
        LdapError::Timeout { .. } => "timeout",
        _ => "connection_error",
    }
}

/// The name of an LDAP result code, from a fixed set (safe as a metric label).
pub fn result_code_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        80 => "other",
        122 => "assertionFailed",
        _ => "unknown",
    }
}

impl ResultCode for (Vec<Entry>, wire::Outcome) {
    fn rc(&self) -> u32 {
        self.1.rc
    }
}

/// Classify an ldap3 error into the directory layer's error.
pub fn classify(e: LdapError, timeout: Duration) -> DirectoryError {
    match e {
        LdapError::LdapResult { result } => {
            let code = result_code_name(result.rc);
            match result.rc {
                68 => DirectoryError::AlreadyExists,
                32 => DirectoryError::NoSuchObject,
                122 => DirectoryError::Conflict,
                4 | 11 => DirectoryError::SizeLimit,
                3 => DirectoryError::Timeout(timeout),
                51 | 52 => DirectoryError::Unavailable(format!("directory answered {code}")),
                16 | 17 | 18 | 19 | 20 | 21 | 34 | 64 | 65 | 67 | 69 => DirectoryError::Rejected {
                    code,
                    message: result.text,
                },
                _ => DirectoryError::Other {
                    code,
                    message: result.text,
                },
            }
        }
        LdapError::Timeout { .. } => DirectoryError::Timeout(timeout),
        other => DirectoryError::Unavailable(other.to_string()),
    }
}

/// The scope's code in a search request (RFC 4511 section 4.5.1.2).
fn scope_code(s: Scope) -> u8 {
    match s {
        Scope::Base => 0,
        Scope::OneLevel => 1,
        Scope::Subtree => 2,
    }
}

fn scope(s: Scope) -> ldap3::Scope {
    match s {
        Scope::Base => ldap3::Scope::Base,
        Scope::OneLevel => ldap3::Scope::OneLevel,
        Scope::Subtree => ldap3::Scope::Subtree,
    }
}

/// An entry from the attributes of an encoded SearchResultEntry (a search connection's answer,
/// a post-read control), kept as a search's entries are (`push_values`): each value copied once,
/// and checked as text once. `None` when an attribute is malformed.
fn entry_from_raw(dn: String, attributes: ber::Elements<'_>) -> Option<Entry> {
    let mut out = BTreeMap::new();
    for attribute in attributes {
        let (name, values) = ber::attribute(attribute?)?;
        // Sized once: most attributes have one value, and a first push would allocate for four.
        let mut text = Vec::with_capacity(values.clone().count());
        let mut binary = false;
        for value in values.clone() {
            match std::str::from_utf8(value?) {
                Ok(t) if !binary => text.push(t.to_string()),
                Ok(_) => {}
                Err(_) => binary = true,
            }
        }
        if binary {
            let values = values.collect::<Option<Vec<&[u8]>>>()?;
            push_binary(&mut out, name, values);
        } else {
            push_text(&mut out, name.to_string(), text);
        }
    }
    Some(Entry { dn, attrs: out })
}

/// The values of attribute `name` into `out`: as text when every value is UTF-8, as ldap3's
/// `SearchEntry` keeps them (GUID attributes as GUID text); otherwise as binary
/// (`push_binary`).
fn push_values(out: &mut BTreeMap<String, Vec<String>>, name: String, values: Vec<Vec<u8>>) {
    match texts(values) {
        Ok(text) => push_text(out, name, text),
        Err(bytes) => push_binary(out, &name, bytes.iter().map(Vec::as_slice)),
    }
}

/// The values as text when every one is UTF-8 (each checked once, none copied), else as bytes.
fn texts(values: Vec<Vec<u8>>) -> Result<Vec<String>, Vec<Vec<u8>>> {
    let mut text = Vec::with_capacity(values.len());
    let mut rest = values.into_iter();
    while let Some(v) = rest.next() {
        match String::from_utf8(v) {
            Ok(t) => text.push(t),
            Err(e) => {
                let mut bytes: Vec<Vec<u8>> = text.into_iter().map(String::into_bytes).collect();
                bytes.push(e.into_bytes());
                bytes.extend(rest);
                return Err(bytes);
            }
        }
    }
    Ok(text)
}

/// Text values of attribute `name` into `out` (GUID attributes as GUID text): the name
/// lowercased in place, and the values kept as they are when the name is new.
fn push_text(out: &mut BTreeMap<String, Vec<String>>, mut name: String, values: Vec<String>) {
    name.make_ascii_lowercase();
    let values = if ad::GUID_ATTRIBUTES.contains(&name.as_str()) {
        values
            .iter()
            .filter_map(|s| ad::guid_to_string(s.as_bytes()))
            .collect()
    } else {
        values
    };
    match out.entry(name) {
        std::collections::btree_map::Entry::Vacant(slot) => {
            slot.insert(values);
        }
        std::collections::btree_map::Entry::Occupied(mut slot) => slot.get_mut().extend(values),
    }
}

/// Binary values of attribute `name` into `out`: GUIDs as GUID text, anything else dropped.
fn push_binary<'a>(
    out: &mut BTreeMap<String, Vec<String>>,
    name: &str,
    values: impl IntoIterator<Item = &'a [u8]>,
) {
    let k = name.to_ascii_lowercase();
    if ad::GUID_ATTRIBUTES.contains(&k.as_str()) {
        out.entry(k)
            .or_default()
            .extend(values.into_iter().filter_map(ad::guid_to_string));
    }
}

/// The assertion control's value (RFC 4528) for the filter `text`: the gateway's own writer for
/// the filters it builds, ldap3's parser and encoder for anything else; `None` if the text is no
/// filter. The same bytes as ldap3's `Assertion::new`, which would parse the text on every call.
fn assertion_value(text: &str) -> Option<Vec<u8>> {
    use ldap3::asn1::ASNTag;
    if let Some(value) = filter_ber::encode(text) {
        return Some(value);
    }
    let filter = ldap3::parse_filter(text).ok()?;
    let mut value = bytes::BytesMut::new();
    // Encoding into memory cannot fail.
    ldap3::asn1::write::encode_into(&mut value, filter.into_structure()).ok()?;
    Some(value.to_vec())
}

/// The assertion control (RFC 4528) that makes a write apply only while its entry matches
/// `guard`. A guard that is no filter refuses the write: dropping the control would write
/// without the check the caller asked for.
fn assertion_control(guard: &str) -> Result<RawControl, DirectoryError> {
    let value = assertion_value(&ad::binary_guid_filter(guard))
        .ok_or_else(|| DirectoryError::InvalidGuard(guard.to_string()))?;
    Ok(RawControl {
        ctype: capabilities::ASSERTION.to_string(),
        crit: false,
        val: Some(value),
    })
}

/// The post-read request control (RFC 4527) for `attrs`, as ldap3's `PostRead::new` builds it
/// but without its general tag tree (one of the larger costs of a write in a callgrind profile).
fn post_read_control(attrs: &[String]) -> RawControl {
    RawControl {
        ctype: capabilities::POST_READ.to_string(),
        crit: false,
        val: Some(ber::attribute_selection(attrs)),
    }
}

/// One request waiting in the directory's queue, for as long as this lives.
struct Queued<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether `entry` holds an attribute in ranges (`complete_ranges`).
fn has_ranges(entry: &Entry) -> bool {
    entry.attrs.keys().any(|k| ad::parse_range(k).is_some())
}

/// The entries of a search result (referrals and intermediate messages left out).
fn entries_of(found: Vec<ldap3::ResultEntry>) -> Result<Vec<Entry>, DirectoryError> {
    found
        .into_iter()
        .filter(|e| !e.is_ref() && !e.is_intermediate())
        .map(|e| {
            entry_of_result(e).ok_or_else(|| DirectoryError::Other {
                code: "malformedEntry",
                message: "the directory sent a search result entry that is not one".into(),
            })
        })
        .collect()
}

/// An entry straight from ldap3's tag tree of a SearchResultEntry (RFC 4511 §4.5.2), its values
/// moved out rather than copied, kept as ldap3's `SearchEntry` keeps them (`push_values`);
/// `None` when the tree is no such entry (where
/// `SearchEntry::construct` would panic).
fn entry_of_result(e: ldap3::ResultEntry) -> Option<Entry> {
    let mut parts = e.0.match_id(4)?.expect_constructed()?.into_iter();
    let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
    let mut out = BTreeMap::new();
    for attribute in parts.next()?.expect_constructed()? {
        let mut attribute = attribute.expect_constructed()?.into_iter();
        let name = String::from_utf8(attribute.next()?.expect_primitive()?).ok()?;
        let values = attribute
            .next()?
            .expect_constructed()?
            .into_iter()
            .map(ldap3::asn1::StructureTag::expect_primitive)
            .collect::<Option<Vec<Vec<u8>>>>()?;
        push_values(&mut out, name, values);
    }
    Some(Entry { dn, attrs: out })
}

/// A value as sent on the wire: `unicodePwd` in AD's encoding, everything else as is.
fn wire_value(attr: &str, v: String) -> Vec<u8> {
    if attr.eq_ignore_ascii_case(ad::UNICODE_PWD) {
        ad::unicode_pwd(&v)
    } else {
        v.into_bytes()
    }
}

fn wire_values(attr: &str, v: Vec<String>) -> HashSet<Vec<u8>> {
    v.into_iter().map(|v| wire_value(attr, v)).collect()
}

fn mods(list: Vec<Modification>) -> Vec<Mod<Vec<u8>>> {
    list.into_iter()
        // An add of nothing is a protocol error; it changes nothing anyway.
        .filter(|m| !matches!(m, Modification::Add(_, v) if v.is_empty()))
        .flat_map(|m| -> Vec<Mod<Vec<u8>>> {
            vec![match m {
                Modification::Add(a, v) => {
                    let v = wire_values(&a, v);
                    Mod::Add(a.into_bytes(), v)
                }
                Modification::Delete(a, v) => {
                    let v = wire_values(&a, v);
                    Mod::Delete(a.into_bytes(), v)
                }
                Modification::Replace(a, v) => {
                    let v = wire_values(&a, v);
                    Mod::Replace(a.into_bytes(), v)
                }
                Modification::Swap(a, old, new) => {
                    let old = wire_values(&a, vec![old]);
                    let new = wire_values(&a, vec![new]);
                    return vec![
                        Mod::Delete(a.clone().into_bytes(), old),
                        Mod::Add(a.into_bytes(), new),
                    ];
                }
            }]
        })
        .collect()
}

/// A modify refused only because some value adds or deletes would change nothing: OpenLDAP says
/// so with attributeOrValueExists / noSuchAttribute; Active Directory (and Samba) answer
/// entryAlreadyExists / unwillingToPerform for `member`, even with permissive modify.
fn is_no_op_refusal(e: &DirectoryError, list: &[Modification]) -> bool {
    let adds = list.iter().any(|m| matches!(m, Modification::Add(..)));
    let any_delete = list.iter().any(|m| matches!(m, Modification::Delete(..)));
    let deletes = list
        .iter()
        .any(|m| matches!(m, Modification::Delete(_, v) if !v.is_empty()));
    match e {
        DirectoryError::Rejected { code, .. } => {
            (*code == "attributeOrValueExists" && adds)
                || (*code == "noSuchAttribute" && any_delete)
        }
        DirectoryError::AlreadyExists => adds,
        DirectoryError::Other { code, .. } => *code == "unwillingToPerform" && deletes,
        _ => false,
    }
}

/// Whether a write carries `unicodePwd`, which must never cross an unencrypted connection.
fn writes_unicode_pwd<'a>(mut attrs: impl Iterator<Item = &'a str>) -> bool {
    attrs.any(|a| a.eq_ignore_ascii_case(ad::UNICODE_PWD))
}

/// The read connection of one directory call, taken from the pool on first use: a search
/// answered on one of the gateway's own search connections needs none.
struct Reader<'a> {
    dir: &'a LdapDirectory,
    conn: Option<PooledConn>,
}

impl<'a> Reader<'a> {
    fn new(dir: &'a LdapDirectory) -> Self {
        Reader { dir, conn: None }
    }

    /// The pool's connection for this call (`read_handle`), taken now if not yet.
    async fn ldap(&mut self) -> Result<&mut Ldap, DirectoryError> {
        if self.conn.is_none() {
            self.conn = Some(self.dir.read_handle().await?);
        }
        Ok(self.conn.as_deref_mut().expect("taken above"))
    }
}

impl LdapDirectory {
    /// Start the pool; `allowed_bases` are the subtrees writes may touch.
    pub fn start(
        settings: &DirectorySettings,
        allowed_bases: Vec<String>,
        metrics: DirectoryMetrics,
        audit: Arc<Auditor>,
    ) -> Result<Self, pool::ConnectError> {
        Ok(LdapDirectory {
            pool: Pool::start(
                settings.clone(),
                settings.urls.clone(),
                false,
                metrics.clone(),
            )?,
            read_pool: if settings.read_urls.is_empty() {
                None
            } else {
                Some(Pool::start(
                    settings.clone(),
                    settings.read_urls.clone(),
                    true,
                    metrics.clone(),
                )?)
            },
            operations: AtomicU64::new(0),
            allowed_bases: RwLock::new(allowed_bases),
            op_timeout: settings.operation_timeout,
            max_search_entries: settings.max_search_entries,
            max_sort_entries: settings.max_sort_entries,
            slots: Semaphore::new(settings.max_in_flight),
            queued: AtomicUsize::new(0),
            max_queued: settings.max_queued,
            queue_timeout: settings.queue_timeout,
            metrics,
            audit,
            encrypted: settings.urls.iter().chain(&settings.read_urls).all(|u| {
                u.starts_with("ldaps://") || u.starts_with("ldapi://") || settings.starttls
            }),
            capabilities: tokio::sync::OnceCell::new(),
        })
    }

    /// The server's kind, controls and extensions, from its root DSE (read once, on first use).
    pub async fn capabilities(&self) -> Result<&Capabilities, DirectoryError> {
        self.capabilities
            .get_or_try_init(|| async {
                let mut ldap = self.handle().await?;
                let res = self
                    .timed(
                        "search",
                        ldap.search(
                            "",
                            ldap3::Scope::Base,
                            "(objectClass=*)",
                            capabilities::ROOT_DSE_ATTRIBUTES.to_vec(),
                        ),
                    )
                    .await?;
                let (entries, _) = res.success().map_err(|e| classify(e, self.op_timeout))?;
                let dse = entries_of(entries)?.into_iter().next().unwrap_or_default();
                let caps = Capabilities::from_root_dse(&dse);
                tracing::info!(server = %caps.kind, version = ?caps.version, assertion = caps.assertion, permissive_modify = caps.permissive_modify, post_read = caps.post_read, "directory capabilities read");
                Ok(caps)
            })
            .await
    }

    /// Refuse to send a password attribute over a plaintext connection.
    fn check_confidential<'a>(
        &self,
        attrs: impl Iterator<Item = &'a str>,
    ) -> Result<(), DirectoryError> {
        if !self.encrypted && writes_unicode_pwd(attrs) {
            return Err(DirectoryError::Rejected {
                code: "confidentialityRequired",
                message:
                    "unicodePwd is only sent over an encrypted connection (ldaps:// or StartTLS)"
                        .into(),
            });
        }
        Ok(())
    }

    /// How many LDAP requests this directory has sent so far.
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }

    /// Replace the subtrees the gateway may touch (on reload).
    pub fn set_allowed_bases(&self, bases: Vec<String>) {
        if let Ok(mut b) = self.allowed_bases.write() {
            *b = bases;
        }
    }

    /// Close the pools: unbind every connection and stop reconnecting.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(p) = &self.read_pool {
            p.close().await;
        }
    }

    /// Publish the pool's state on its gauges (called before each scrape).
    pub fn refresh_metrics(&self) {
        self.pool.refresh_metrics(self.read_pool.as_ref());
    }

    /// Readiness: a base-scope search of the first configured subtree, answered within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> Result<(), DirectoryError> {
        let base = self
            .allowed_bases
            .read()
            .ok()
            .and_then(|b| b.first().cloned())
            .unwrap_or_default();
        let probe = self.search(SearchRequest {
            base,
            scope: Scope::Base,
            filter: "(objectClass=*)".into(),
            attrs: vec!["1.1".into()].into(),
        });
        match tokio::time::timeout(timeout, probe).await {
            Err(_) => Err(DirectoryError::Timeout(timeout)),
            Ok(r) => r.map(|_| ()),
        }
    }

    /// A slot for one operation: at once, or after waiting in a bounded queue for a bounded time.
    /// (`Queued` takes a waiting request off the count however its wait ends.)
    async fn admit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, DirectoryError> {
        if let Ok(p) = self.slots.try_acquire() {
            return Ok(p);
        }
        let reject = |reason: &'static str| {
            self.metrics.rejected.with_label_values(&[reason]).inc();
            DirectoryError::Overloaded
        };
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(reject("queue_full"));
        }
        let waited = {
            // Out of the queue again however the wait ends, a dropped request's included.
            let _gauge = crate::metrics::Held::enter(&self.metrics.queued);
            let _counted = Queued(&self.queued);
            tokio::time::timeout(self.queue_timeout, self.slots.acquire()).await
        };
        match waited {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(DirectoryError::Unavailable(
                "the directory is closing".into(),
            )),
            Err(_) => Err(reject("queue_timeout")),
        }
    }

    /// A connection for reads: a replica when `read_urls` are configured.
    async fn read_handle(&self) -> Result<PooledConn, DirectoryError> {
        let Some(pool) = &self.read_pool else {
            return self.handle().await;
        };
        let mut h = pool.get().await.ok_or_else(|| {
            DirectoryError::Unavailable("no connection to a read replica is up".into())
        })?;
        h.with_timeout(self.op_timeout);
        Ok(h)
    }

    /// A connection to the preferred healthy server (writes, and reads that must see them).
    async fn handle(&self) -> Result<PooledConn, DirectoryError> {
        let mut h =
            self.pool.get().await.ok_or_else(|| {
                DirectoryError::Unavailable("no directory connection is up".into())
            })?;
        h.with_timeout(self.op_timeout);
        Ok(h)
    }

    fn check_within(&self, target: &str) -> Result<(), DirectoryError> {
        let within = self
            .allowed_bases
            .read()
            .map(|b| b.iter().any(|b| dn::is_within(target, b)))
            .unwrap_or(false);
        if within {
            Ok(())
        } else {
            tracing::error!("refused a DN outside the configured subtrees");
            Err(DirectoryError::OutsideSubtree)
        }
    }

    /// Like `check_within`, for writes: a refusal is also audited.
    fn check_write(&self, operation: &'static str, target: &str) -> Result<(), DirectoryError> {
        self.check_within(target)
            .inspect_err(|e| self.audit_refusal(operation, target, e))
    }

    /// The audit record of a write refused before it was sent, its result the refusal's label.
    fn audit_refusal(&self, operation: &'static str, target: &str, refusal: &DirectoryError) {
        self.audit.record(&AuditWrite {
            operation,
            dn: target,
            new_dn: None,
            changes: vec![],
            result: refusal.result_label(),
        })
    }

    fn check_search_base(&self, base: &str) -> Result<(), DirectoryError> {
        self.check_within(base)
    }

    /// Run `f` with a bounded time; ldap3's own timeout covers the request, this covers the rest.
    /// Also the one place where back-pressure is applied and operations are counted and timed.
    async fn timed<T, F>(&self, operation: &'static str, f: F) -> Result<T, DirectoryError>
    where
        T: ResultCode,
        F: std::future::Future<Output = Result<T, LdapError>>,
    {
        let _slot = self.admit().await?;
        let in_flight = crate::metrics::Held::enter(&self.metrics.in_flight);
        self.operations.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.op_timeout + Duration::from_millis(250), f).await;
        drop(in_flight);
        let result = match &outcome {
            Err(_) => "timeout",
            Ok(Ok(t)) => result_code_name(t.rc()),
            Ok(Err(e)) => error_label(e),
        };
        self.metrics
            .operations
            .with_label_values(&[operation, result])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Err(_) => Err(DirectoryError::Timeout(self.op_timeout)),
            Ok(r) => r.map_err(|e| classify(e, self.op_timeout)),
        }
    }

    /// Record one write in the audit trail, with the result the directory gave.
    fn audit_write<T: ResultCode>(
        &self,
        operation: &'static str,
        dn: &str,
        new_dn: Option<&str>,
        changes: Vec<AuditChange<'_>>,
        outcome: &Result<T, DirectoryError>,
    ) {
        let result = match outcome {
            Ok(t) => result_code_name(t.rc()),
            Err(DirectoryError::Timeout(_)) => "timeout",
            Err(DirectoryError::Overloaded) => return, // never sent
            Err(DirectoryError::Unavailable(_)) => "connection_error",
            Err(e) => e.result_label(),
        };
        self.audit.record(&AuditWrite {
            operation,
            dn,
            new_dn,
            changes,
            result,
        });
    }

    /// `req`'s search for `attrs` on `ldap`, timed and counted, with whatever controls and
    /// options were set on `ldap` for it; the answer's result code is the caller's to read.
    async fn send_search(
        &self,
        ldap: &mut Ldap,
        req: &SearchRequest,
        attrs: &[String],
    ) -> Result<SearchResult, DirectoryError> {
        self.timed(
            "search",
            ldap.search(
                &req.base,
                scope(req.scope),
                &ad::binary_guid_filter(&req.filter),
                attrs,
            ),
        )
        .await
    }

    /// `req`'s plain search for its attributes, with `size` as its size limit (0: none), sent on
    /// one of the gateway's own search connections (`wire`), timed and counted as
    /// `send_search` is: its entries and result. `None` where it goes through ldap3 instead:
    /// the gateway's filter writer leaves the filter to ldap3, no search connection is idle, or
    /// the connection failed before the answer was in (a search changes nothing, so the caller
    /// sends it again).
    async fn wire_search(
        &self,
        req: &SearchRequest,
        size: i32,
    ) -> Option<Result<(Vec<Entry>, LdapResult), DirectoryError>> {
        let search = wire::Search::new(
            &req.base,
            scope_code(req.scope),
            &ad::binary_guid_filter(&req.filter),
            &req.attrs,
            size,
        )?;
        let pool = self.read_pool.as_ref().unwrap_or(&self.pool);
        let mut conn = pool.take_search()?;
        let answer = self
            .timed("search", async {
                conn.search(&search).await.map_err(|e| match e {
                    wire::WireError::Io(source) => LdapError::Io { source },
                    other => LdapError::Io {
                        source: std::io::Error::other(other.to_string()),
                    },
                })
            })
            .await;
        match answer {
            Ok((entries, outcome)) => {
                conn.keep();
                let result = LdapResult {
                    rc: outcome.rc,
                    matched: outcome.matched,
                    text: outcome.text,
                    refs: Vec::new(),
                    ctrls: Vec::new(),
                };
                Some(Ok((entries, result)))
            }
            Err(DirectoryError::Unavailable(error)) => {
                tracing::debug!(%error, "a search connection failed; the search goes through the pool");
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// One page of a paged search on `ldap` (the cookie binds it to that connection).
    async fn page(
        &self,
        ldap: &mut Ldap,
        req: &SearchRequest,
        attrs: &[String],
        size: i32,
        cookie: Vec<u8>,
        sort: Option<&SortKey>,
    ) -> Result<(Vec<Entry>, Vec<u8>), DirectoryError> {
        ldap.with_timeout(self.op_timeout);
        let mut controls = vec![RawControl::from(PagedResults { size, cookie })];
        controls.extend(sort.map(sort::sort_control));
        ldap.with_controls(controls);
        let res = self.send_search(ldap, req, attrs).await?;
        let (entries, result) = match res.success() {
            Ok(ok) => ok,
            Err(e) => return Err(classify(e, self.op_timeout)),
        };
        let next = result
            .ctrls
            .iter()
            .find_map(|Control(t, raw)| match t {
                Some(ControlType::PagedResults) if raw.val.is_some() => {
                    Some(raw.parse::<PagedResults>().cookie)
                }
                _ => None,
            })
            .unwrap_or_default();
        let entries = entries_of(entries)?;
        let entries = self.complete_ranges(ldap, entries).await?;
        Ok((entries, next))
    }

    /// The entries of `req` in one plain search with a size limit of `size`, or `None` when the
    /// directory has more (it answers `sizeLimitExceeded`; the entries sent are dropped).
    /// A size of 0 leaves the limit to the directory.
    async fn at_most(
        &self,
        reader: &mut Reader<'_>,
        req: &SearchRequest,
        size: i32,
    ) -> Result<Option<Vec<Entry>>, DirectoryError> {
        let (entries, result) = match self.wire_search(req, size).await {
            Some(answer) => answer?,
            None => {
                let ldap = reader.ldap().await?;
                ldap.with_timeout(self.op_timeout);
                ldap.with_search_options(SearchOptions::new().sizelimit(size));
                let SearchResult(entries, result) = self.send_search(ldap, req, &req.attrs).await?;
                (entries_of(entries)?, result)
            }
        };
        match result.rc {
            0 => {}
            4 => return Ok(None),
            _ => return Err(classify(LdapError::LdapResult { result }, self.op_timeout)),
        }
        if !entries.iter().any(has_ranges) {
            return Ok(Some(entries));
        }
        let entries = self.complete_ranges(reader.ldap().await?, entries).await?;
        Ok(Some(entries))
    }

    /// Active Directory returns a large multi-valued attribute in ranges (`member;range=0-1499`):
    /// fetch the rest with base searches and merge the values under the plain name.
    /// (`has_ranges` tells whether an entry needs this.)
    async fn complete_ranges(
        &self,
        ldap: &mut Ldap,
        mut entries: Vec<Entry>,
    ) -> Result<Vec<Entry>, DirectoryError> {
        for entry in &mut entries {
            let ranged: Vec<String> = entry
                .attrs
                .keys()
                .filter(|k| ad::parse_range(k).is_some())
                .cloned()
                .collect();
            for key in ranged {
                let values = entry.attrs.remove(&key).unwrap_or_default();
                let Some((name, _, mut hi)) = ad::parse_range(&key) else {
                    continue;
                };
                let name = name.to_string();
                let mut all = values;
                while let Some(h) = hi {
                    let want = format!("{name};range={}-*", h + 1);
                    let res = self
                        .timed(
                            "search",
                            ldap.search(
                                &entry.dn,
                                ldap3::Scope::Base,
                                "(objectClass=*)",
                                vec![want],
                            ),
                        )
                        .await?;
                    let (found, _) = res.success().map_err(|e| classify(e, self.op_timeout))?;
                    hi = None;
                    for e in found {
                        let se = SearchEntry::construct(e);
                        for (k, v) in se.attrs {
                            if let Some((n, _, next)) = ad::parse_range(&k) {
                                if n.eq_ignore_ascii_case(&name) {
                                    all.extend(v);
                                    hi = next;
                                }
                            }
                        }
                    }
                }
                entry.attrs.entry(name).or_default().extend(all);
            }
        }
        Ok(entries)
    }

    /// Tell the server to drop a paged search's state.
    /// With `sort` when the search was sorted: the cookie then belongs to the sort overlay.
    async fn abandon_paging(
        &self,
        ldap: &mut Ldap,
        req: &SearchRequest,
        cookie: Vec<u8>,
        sort: Option<&SortKey>,
    ) {
        if cookie.is_empty() {
            return;
        }
        let _ = self
            .page(ldap, req, &["1.1".to_string()], 0, cookie, sort)
            .await;
    }

    /// Walk the whole result set with paged results, keeping only `attrs`.
    async fn walk(
        &self,
        ldap: &mut Ldap,
        req: &SearchRequest,
        attrs: &[String],
        limit: usize,
        sort: Option<&SortKey>,
    ) -> Result<Vec<Entry>, DirectoryError> {
        let mut all = Vec::new();
        let mut cookie = Vec::new();
        loop {
            let (entries, next) = self
                .page(ldap, req, attrs, WALK_PAGE_SIZE, cookie, sort)
                .await?;
            all.extend(entries);
            if all.len() > limit {
                self.abandon_paging(ldap, req, next, sort).await;
                return Err(DirectoryError::SizeLimit);
            }
            if next.is_empty() {
                return Ok(all);
            }
            cookie = next;
        }
    }

    /// Attributes of the entry as the server now holds them: from the PostRead control when the server sent it.
    async fn read_back(
        &self,
        target: &str,
        ctrls: &[Control],
        attrs: &[String],
    ) -> Result<Entry, DirectoryError> {
        if attrs.is_empty() {
            return Ok(Entry {
                dn: target.to_string(),
                ..Entry::default()
            });
        }
        let post_read = ctrls.iter().find_map(|Control(t, raw)| {
            matches!(t, Some(ControlType::PostReadResp))
                .then_some(raw.val.as_deref())
                .flatten()
        });
        if let Some(value) = post_read {
            if let Some(entry) = ber::search_result_entry(value)
                .and_then(|(_, attrs)| entry_from_raw(target.to_string(), attrs))
            {
                return Ok(entry);
            }
            tracing::warn!("the server's post-read control holds no entry; reading the entry back");
        }
        // From the server just written, never a replica that may lag.
        let mut ldap = self.handle().await?;
        let res = self
            .timed(
                "search",
                ldap.search(
                    target,
                    ldap3::Scope::Base,
                    "(objectClass=*)",
                    attrs.to_vec(),
                ),
            )
            .await?;
        let (entries, _) = res.success().map_err(|e| classify(e, self.op_timeout))?;
        let entries = entries_of(entries)?;
        let entries = self.complete_ranges(&mut ldap, entries).await?;
        entries
            .into_iter()
            .next()
            .ok_or(DirectoryError::NoSuchObject)
    }
}

impl EntryReader for LdapDirectory {
    async fn search(&self, req: SearchRequest) -> Result<Vec<Entry>, DirectoryError> {
        self.check_search_base(&req.base)?;
        // Without a limit of the gateway's: more than the directory's own is sizeLimitExceeded.
        self.at_most(&mut Reader::new(self), &req, 0)
            .await?
            .ok_or(DirectoryError::SizeLimit)
    }

    async fn orderable_attributes(
        &self,
    ) -> Result<Option<std::collections::HashSet<String>>, DirectoryError> {
        // The root DSE, read once, names the subschema entry.
        let subschema = self.capabilities().await?.subschema.clone();
        let Some(subschema) = subschema else {
            return Ok(None);
        };
        // The subschema is public and outside the data subtrees: read it without the base check.
        let mut ldap = self.read_handle().await?;
        ldap.with_timeout(self.op_timeout);
        let res = self
            .timed(
                "search",
                ldap.search(
                    &subschema,
                    ldap3::Scope::Base,
                    "(objectClass=*)",
                    vec!["attributeTypes"],
                ),
            )
            .await?;
        let types: Vec<String> = match res.success() {
            Ok((entries, _)) => entries
                .into_iter()
                .next()
                .map(SearchEntry::construct)
                .and_then(|e| {
                    e.attrs
                        .into_iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("attributeTypes"))
                })
                .map(|(_, v)| v)
                .unwrap_or_default(),
            Err(_) => return Ok(None),
        };
        Ok((!types.is_empty()).then(|| super::schema::orderable_attributes(&types)))
    }

    async fn search_all(
        &self,
        req: SearchRequest,
        limit: usize,
    ) -> Result<Vec<Entry>, DirectoryError> {
        self.check_search_base(&req.base)?;
        let mut ldap = self.read_handle().await?;
        let attrs = req.attrs.clone();
        self.walk(&mut ldap, &req, &attrs, limit, None).await
    }

    async fn search_page(
        &self,
        req: SearchRequest,
        id_attr: &str,
        offset: usize,
        limit: usize,
        sort: Option<SortKey>,
    ) -> Result<Page, DirectoryError> {
        self.check_search_base(&req.base)?;
        let mut reader = Reader::new(self);
        let Some(key) = sort else {
            return self
                .paged_window(&mut reader, &req, id_attr, offset, limit, None)
                .await;
        };
        match self
            .paged_window(&mut reader, &req, id_attr, offset, limit, Some(&key))
            .await
        {
            // The directory cannot sort by this attribute (no sssvlv, or no ordering rule).
            Err(DirectoryError::Other { code, .. } | DirectoryError::Rejected { code, .. })
                if [
                    "unavailableCriticalExtension",
                    "unwillingToPerform",
                    "inappropriateMatching",
                    "other",
                ]
                .contains(&code) =>
            {
                self.gateway_sorted_window(&mut reader, &req, id_attr, offset, limit, &key)
                    .await
            }
            other => other,
        }
    }
}

impl LdapDirectory {
    /// Entries `offset .. offset+limit` in the directory's order (sorted by `sort` through the
    /// server-side sort control when given).
    async fn paged_window(
        &self,
        reader: &mut Reader<'_>,
        req: &SearchRequest,
        id_attr: &str,
        offset: usize,
        limit: usize,
        sort: Option<&SortKey>,
    ) -> Result<Page, DirectoryError> {
        let end = offset.saturating_add(limit);
        if end <= SMALL_WINDOW {
            // Entra's match and Test Connection: one round trip carries everything.
            let size = end.max(1) as i32;
            let found = match sort {
                // From the first entry on, a plain search with a size limit: no control for the
                // server to parse and answer, no paging state for it to keep. It answers in an
                // order of its own (slapd's one-level search without paging does), so only
                // where the window is the whole result set: later windows come in the paged
                // order, as the walk's do.
                None if offset == 0 => self.at_most(reader, req, size).await?,
                _ => {
                    let ldap = reader.ldap().await?;
                    let (entries, next) = self
                        .page(ldap, req, &req.attrs, size, Vec::new(), sort)
                        .await?;
                    if next.is_empty() {
                        Some(entries)
                    } else {
                        self.abandon_paging(ldap, req, next, sort).await;
                        None
                    }
                }
            };
            if let Some(entries) = found {
                let total = entries.len();
                let entries = entries.into_iter().skip(offset).take(limit).collect();
                return Ok(Page { total, entries });
            }
        }
        // Large result sets: walk ids only, then fetch the window's entries in one search.
        let ids = self
            .walk(
                reader.ldap().await?,
                req,
                &[id_attr.to_string()],
                self.max_search_entries,
                sort,
            )
            .await?;
        let total = ids.len();
        let window: Vec<&str> = ids
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|e| e.first(id_attr))
            .collect();
        if window.is_empty() {
            return Ok(Page {
                total,
                entries: vec![],
            });
        }
        let entries = self.fetch_window(req, id_attr, &window).await?;
        Ok(Page { total, entries })
    }

    /// The entries with these ids, in this order, fetched with one search.
    async fn fetch_window(
        &self,
        req: &SearchRequest,
        id_attr: &str,
        window: &[&str],
    ) -> Result<Vec<Entry>, DirectoryError> {
        if window.is_empty() {
            return Ok(vec![]);
        }
        let alternatives: String = window
            .iter()
            .map(|id| format!("({id_attr}={})", ldap3::ldap_escape(*id)))
            .collect();
        let fetched = self
            .search(SearchRequest {
                filter: format!("(&{}(|{alternatives}))", req.filter),
                ..req.clone()
            })
            .await?;
        let mut by_id: HashMap<String, Entry> = fetched
            .into_iter()
            .filter_map(|e| {
                e.first(id_attr)
                    .map(|id| (id.to_ascii_lowercase(), e.clone()))
            })
            .collect();
        // Keep the given order; an entry deleted in between simply drops out of the window.
        Ok(window
            .iter()
            .filter_map(|id| by_id.remove(&id.to_ascii_lowercase()))
            .collect())
    }

    /// Sorting in the gateway, for directories that cannot: walk ids and sort values, order them,
    /// then fetch the window. Refused beyond `max_sort_entries`.
    async fn gateway_sorted_window(
        &self,
        reader: &mut Reader<'_>,
        req: &SearchRequest,
        id_attr: &str,
        offset: usize,
        limit: usize,
        key: &SortKey,
    ) -> Result<Page, DirectoryError> {
        let attrs = [id_attr.to_string(), key.attr.clone()];
        let mut all = match self
            .walk(
                reader.ldap().await?,
                req,
                &attrs,
                self.max_sort_entries,
                None,
            )
            .await
        {
            Err(DirectoryError::SizeLimit) => {
                return Err(DirectoryError::SortLimit(self.max_sort_entries))
            }
            other => other?,
        };
        let sort_value = |e: &Entry| e.first(&key.attr).map(str::to_lowercase);
        // Entries without a value sort last when ascending; ids break ties, so pages are stable.
        all.sort_by(|a, b| {
            let (va, vb) = (sort_value(a), sort_value(b));
            let by_value = match (&va, &vb) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            let by_value = if key.reverse {
                by_value.reverse()
            } else {
                by_value
            };
            by_value.then_with(|| a.first(id_attr).cmp(&b.first(id_attr)))
        });
        let total = all.len();
        let window: Vec<&str> = all
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|e| e.first(id_attr))
            .collect();
        let entries = self.fetch_window(req, id_attr, &window).await?;
        Ok(Page { total, entries })
    }

    async fn modify_once(
        &self,
        target: &str,
        list: Vec<Modification>,
        guard: Option<&str>,
        read_back: &[String],
    ) -> Result<Entry, DirectoryError> {
        self.check_confidential(list.iter().map(Modification::attribute))?;
        let caps = self.capabilities().await?;
        let swap = list.iter().any(|m| matches!(m, Modification::Swap(..)));
        let mut controls: Vec<RawControl> = Vec::new();
        // Never with a swap: it would turn the delete of a vanished old value into success.
        // Only where it changes something: a replace never fails on present or absent values.
        let adds_or_deletes = list
            .iter()
            .any(|m| matches!(m, Modification::Add(..) | Modification::Delete(..)));
        if caps.permissive_modify && !swap && adds_or_deletes {
            controls.push(RawControl {
                ctype: capabilities::PERMISSIVE_MODIFY.to_string(),
                crit: false,
                val: None,
            });
        }
        controls.extend(self.guard_control("modify", target, guard, caps).await?);
        if !read_back.is_empty() && caps.post_read {
            controls.push(post_read_control(read_back));
        }
        let mut ldap = self.handle().await?;
        ldap.with_controls(controls);
        let ldap_mods = mods(list.clone());
        let res = self.timed("modify", ldap.modify(target, ldap_mods)).await;
        let mut changes = Vec::new();
        for m in &list {
            match m {
                Modification::Add(a, v) => changes.push(AuditChange {
                    op: "add",
                    attribute: a,
                    values: v.as_slice(),
                }),
                Modification::Delete(a, v) => changes.push(AuditChange {
                    op: "delete",
                    attribute: a,
                    values: v.as_slice(),
                }),
                Modification::Replace(a, v) => changes.push(AuditChange {
                    op: "replace",
                    attribute: a,
                    values: v.as_slice(),
                }),
                Modification::Swap(a, old, new) => {
                    changes.push(AuditChange {
                        op: "delete",
                        attribute: a,
                        values: std::slice::from_ref(old),
                    });
                    changes.push(AuditChange {
                        op: "add",
                        attribute: a,
                        values: std::slice::from_ref(new),
                    });
                }
            }
        }
        self.audit_write("modify", target, None, changes, &res);
        let res = match res?.success() {
            Ok(r) => r,
            // The old value of a swap is gone: someone else changed the attribute first.
            Err(LdapError::LdapResult { result }) if swap && result.rc == 16 => {
                return Err(DirectoryError::Conflict)
            }
            Err(e) => return Err(classify(e, self.op_timeout)),
        };
        self.read_back(target, &res.ctrls, read_back).await
    }

    /// The assertion control for `guard`, when the server supports it. Otherwise the guard is
    /// checked with a base search just before the write: not atomic, but it still refuses a write
    /// based on a version that is already stale (Samba announces no assertion control, and a
    /// non-critical one would be silently ignored).
    /// A guard that is no filter refuses the write, and the refusal is audited as
    /// `operation` on `target`, as a write refused outside the subtrees is.
    async fn guard_control(
        &self,
        operation: &'static str,
        target: &str,
        guard: Option<&str>,
        caps: &Capabilities,
    ) -> Result<Option<RawControl>, DirectoryError> {
        let Some(g) = guard else {
            return Ok(None);
        };
        if caps.assertion {
            return assertion_control(g)
                .map(Some)
                .inspect_err(|e| self.audit_refusal(operation, target, e));
        }
        self.guard_holds(target, g).await?;
        Ok(None)
    }

    /// `Conflict` unless the entry at `target` matches the guard filter `guard` (a base search).
    async fn guard_holds(&self, target: &str, guard: &str) -> Result<(), DirectoryError> {
        let filter = ad::binary_guid_filter(guard);
        let mut ldap = self.handle().await?;
        let res = self
            .timed(
                "search",
                ldap.search(target, ldap3::Scope::Base, &filter, vec!["1.1"]),
            )
            .await?;
        let (entries, _) = res.success().map_err(|e| classify(e, self.op_timeout))?;
        if entries.is_empty() {
            return Err(DirectoryError::Conflict);
        }
        Ok(())
    }

    /// The modifications without the values that would change nothing: adds of present values and
    /// deletes of absent ones, judged by one base search whose matched-values control (RFC 3876)
    /// returns only the named values, never the whole (possibly huge) attribute.
    async fn without_no_ops(
        &self,
        target: &str,
        list: &[Modification],
    ) -> Result<Vec<Modification>, DirectoryError> {
        let mut items = Vec::new();
        let mut attrs: Vec<String> = Vec::new();
        for m in list {
            let (attr, values) = match m {
                Modification::Add(a, v) | Modification::Delete(a, v) => (a, v),
                Modification::Replace(..) | Modification::Swap(..) => continue,
            };
            if !attrs.iter().any(|x| x.eq_ignore_ascii_case(attr)) {
                attrs.push(attr.clone());
            }
            if values.is_empty() {
                items.push(format!("({attr}=*)"));
            }
            items.extend(
                values
                    .iter()
                    .map(|v| format!("({attr}={})", ldap3::ldap_escape(v.as_str()))),
            );
        }
        let key = |v: &str| dn::normalize(v).join(",");
        let mut present: std::collections::HashSet<(String, String)> = Default::default();
        if !items.is_empty() && !self.capabilities().await?.matched_values {
            // Without matched values, one base search per value: does the entry hold it?
            for m in list {
                let (attr, values) = match m {
                    Modification::Add(a, v) | Modification::Delete(a, v) => (a, v),
                    Modification::Replace(..) | Modification::Swap(..) => continue,
                };
                let probes: Vec<Option<&String>> = if values.is_empty() {
                    vec![None]
                } else {
                    values.iter().map(Some).collect()
                };
                for v in probes {
                    let filter = match v {
                        Some(v) => format!("({attr}={})", ldap3::ldap_escape(v.as_str())),
                        None => format!("({attr}=*)"),
                    };
                    let mut ldap = self.handle().await?;
                    let res = self
                        .timed(
                            "search",
                            ldap.search(target, ldap3::Scope::Base, &filter, vec!["1.1"]),
                        )
                        .await?;
                    let (found, _) = res.success().map_err(|e| classify(e, self.op_timeout))?;
                    if !found.is_empty() {
                        let value = v.map(|v| key(v)).unwrap_or_default();
                        present.insert((attr.to_ascii_lowercase(), value));
                    }
                }
            }
        } else if !items.is_empty() {
            let mut ldap = self.handle().await?;
            let mut control = MatchedValues::new(format!("({})", items.concat()));
            // Critical: a server ignoring it would send every value of a 100,000-member group.
            control.crit = true;
            ldap.with_controls(control);
            let res = self
                .timed(
                    "search",
                    ldap.search(target, ldap3::Scope::Base, "(objectClass=*)", attrs.clone()),
                )
                .await?;
            let (entries, _) = res.success().map_err(|e| classify(e, self.op_timeout))?;
            for e in entries {
                for (a, vals) in SearchEntry::construct(e).attrs {
                    for v in vals {
                        present.insert((a.to_ascii_lowercase(), key(&v)));
                    }
                }
            }
        }
        // Walk the modifications in order, tracking what each one leaves behind.
        let mut out = Vec::new();
        for m in list {
            match m {
                Modification::Add(a, vals) => {
                    let la = a.to_ascii_lowercase();
                    let keep: Vec<String> = vals
                        .iter()
                        .filter(|v| present.insert((la.clone(), key(v))))
                        .cloned()
                        .collect();
                    if !keep.is_empty() {
                        out.push(Modification::Add(a.clone(), keep));
                    }
                }
                Modification::Delete(a, vals) if vals.is_empty() => {
                    let la = a.to_ascii_lowercase();
                    if present.iter().any(|(x, _)| *x == la) {
                        present.retain(|(x, _)| *x != la);
                        out.push(m.clone());
                    }
                }
                Modification::Delete(a, vals) => {
                    let la = a.to_ascii_lowercase();
                    let keep: Vec<String> = vals
                        .iter()
                        .filter(|v| present.remove(&(la.clone(), key(v))))
                        .cloned()
                        .collect();
                    if !keep.is_empty() {
                        out.push(Modification::Delete(a.clone(), keep));
                    }
                }
                Modification::Replace(..) | Modification::Swap(..) => out.push(m.clone()),
            }
        }
        Ok(out)
    }
}

impl EntryWriter for LdapDirectory {
    async fn atomic_writes(&self) -> bool {
        self.capabilities()
            .await
            .is_ok_and(|c| c.assertion && c.post_read)
    }

    async fn add(
        &self,
        target: &str,
        attrs: Vec<(String, Vec<String>)>,
        read_back: &[String],
    ) -> Result<Entry, DirectoryError> {
        self.check_write("add", target)?;
        let mut ldap = self.handle().await?;
        if !read_back.is_empty() {
            ldap.with_controls(post_read_control(read_back));
        }
        self.check_confidential(attrs.iter().map(|(a, _)| a.as_str()))?;
        let sets: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = attrs
            .iter()
            .map(|(a, v)| (a.clone().into_bytes(), wire_values(a, v.clone())))
            .collect();
        let res = self.timed("add", ldap.add(target, sets)).await;
        let changes = attrs
            .iter()
            .map(|(a, v)| AuditChange {
                op: "add",
                attribute: a,
                values: v,
            })
            .collect();
        self.audit_write("add", target, None, changes, &res);
        let res = res?.success().map_err(|e| classify(e, self.op_timeout))?;
        self.read_back(target, &res.ctrls, read_back).await
    }

    async fn modify(
        &self,
        target: &str,
        list: Vec<Modification>,
        guard: Option<String>,
        read_back: &[String],
    ) -> Result<Entry, DirectoryError> {
        self.check_write("modify", target)?;
        let mut list = list;
        // Servers without Permissive Modify (OpenLDAP) refuse adding a present value (20) or
        // deleting an absent one (16). Then the no-op values are found with one matched-values
        // read and the modify is sent again without them; bounded, as the entry may keep changing.
        for attempt in 0..3 {
            match self
                .modify_once(target, list.clone(), guard.as_deref(), read_back)
                .await
            {
                Err(e) if attempt < 2 && is_no_op_refusal(&e, &list) => {
                    let reduced = self.without_no_ops(target, &list).await?;
                    if reduced.is_empty() {
                        // Nothing to write, but a guarded write still answers for its guard:
                        // the entry there may no longer be the one the caller meant.
                        if let Some(g) = guard.as_deref() {
                            self.guard_holds(target, g).await?;
                        }
                        return self.read_back(target, &[], read_back).await;
                    }
                    if reduced == list {
                        // Nothing was a no-op: the refusal has another cause.
                        return Err(e);
                    }
                    list = reduced;
                }
                other => return other,
            }
        }
        Err(DirectoryError::Conflict)
    }

    async fn rename(
        &self,
        target: &str,
        new_rdn: &str,
        new_parent: Option<&str>,
        guard: Option<String>,
    ) -> Result<String, DirectoryError> {
        self.check_write("modrdn", target)?;
        let parent = match new_parent {
            Some(p) => p.to_string(),
            None => dn::parent(target).ok_or(DirectoryError::OutsideSubtree)?,
        };
        let new_dn = format!("{new_rdn},{parent}");
        self.check_write("modrdn", &new_dn)?;
        let caps = self.capabilities().await?;
        let control = self
            .guard_control("modrdn", target, guard.as_deref(), caps)
            .await?;
        let mut ldap = self.handle().await?;
        if let Some(c) = control {
            ldap.with_controls(c);
        }
        let res = self
            .timed("modrdn", ldap.modifydn(target, new_rdn, true, new_parent))
            .await;
        self.audit_write("modrdn", target, Some(&new_dn), vec![], &res);
        res?.success().map_err(|e| classify(e, self.op_timeout))?;
        Ok(new_dn)
    }

    async fn delete(&self, target: &str, guard: Option<String>) -> Result<(), DirectoryError> {
        self.check_write("delete", target)?;
        let caps = self.capabilities().await?;
        let control = self
            .guard_control("delete", target, guard.as_deref(), caps)
            .await?;
        let mut ldap = self.handle().await?;
        if let Some(c) = control {
            ldap.with_controls(c);
        }
        let res = self.timed("delete", ldap.delete(target)).await;
        self.audit_write("delete", target, None, vec![], &res);
        res?.success().map_err(|e| classify(e, self.op_timeout))?;
        Ok(())
    }

    async fn set_password(
        &self,
        target: &str,
        password: &crate::config::Secret,
    ) -> Result<(), DirectoryError> {
        self.check_write("password_modify", target)?;
        let mut ldap = self.handle().await?;
        let exop = ldap3::exop::PasswordModify {
            user_id: Some(target),
            old_pass: None,
            new_pass: Some(password.expose()),
        };
        let res = self.timed("extended", ldap.extended(exop)).await;
        let redacted = ["[redacted]".to_string()];
        let changes = vec![AuditChange {
            op: "replace",
            attribute: "userPassword",
            values: &redacted,
        }];
        self.audit_write("password_modify", target, None, changes, &res);
        match res?.success() {
            Ok(_) => Ok(()),
            // Policy refusals (ppolicy, 389's password syntax checks) are the client's to fix.
            Err(LdapError::LdapResult { result }) if result.rc == 53 || result.rc == 19 => {
                Err(DirectoryError::Rejected {
                    code: result_code_name(result.rc),
                    message: result.text,
                })
            }
            Err(e) => Err(classify(e, self.op_timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::controls::Assertion;

    /// The assertion control's value, from the gateway's writer or from ldap3's parser for the
    /// filters that writer leaves to it, is the one ldap3's `Assertion` builds from the text.
    #[test]
    fn assertion_values_equal_ldap3s() {
        for text in [
            "(entryUUID=0b6e4c5a-1f0e-4a43-9d1c-2b2f6f0e9a11)",
            "(&(objectClass=inetOrgPerson)(entryUUID=x\\2a\\28y))",
            "(|(uid=a)(!(cn=b*c)))",
            "(uid:dn:=a)",
            "(&)",
            &ad::binary_guid_filter("(objectGUID=0b6e4c5a-1f0e-4a43-9d1c-2b2f6f0e9a11)"),
        ] {
            let theirs = Assertion::new(text);
            assert_eq!(
                (theirs.ctype.as_str(), theirs.crit),
                (capabilities::ASSERTION, false)
            );
            assert_eq!(assertion_value(text), theirs.val, "{text}");
        }
        assert_eq!(assertion_value("(uid=a"), None);
    }

    /// A guard becomes the assertion control with that filter; a guard that is no filter refuses
    /// the write instead of letting it go out without its check.
    #[test]
    fn a_guard_that_is_no_filter_refuses_the_write() {
        let guard = "(entryUUID=0b6e4c5a-1f0e-4a43-9d1c-2b2f6f0e9a11)";
        let control = assertion_control(guard).unwrap();
        assert_eq!(control.ctype, capabilities::ASSERTION);
        assert!(!control.crit);
        assert_eq!(control.val, Assertion::new(guard).val);
        for broken in ["(uid=a", "uid=a)", "", "(&(uid=a)"] {
            match assertion_control(broken) {
                Err(DirectoryError::InvalidGuard(g)) => assert_eq!(g, broken),
                other => panic!("{broken:?} gave {other:?}"),
            }
        }
    }
}
