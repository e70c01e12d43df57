//! An in-memory directory for unit tests of the SCIM services.
//!
//! `FakeDir` implements `EntryReader` and `EntryWriter` over a list of entries. It records every
//! search, every paged search and every write, evaluates the LDAP filters the services send
//! (`&`, `|`, `!`, equality, presence and substrings) and stamps the operational attributes
//! OpenLDAP maintains (`entryUUID`, `entryCSN`, `createTimestamp`, `modifyTimestamp`).
//!
//! Values compare by their attribute's equality rule, in filters and in modifications alike:
//! DN-valued attributes (`member`, `manager`, ... and the operational `entryDN`) by DN rules,
//! a few case-exact attributes (`memberUid`, `userPassword`) exactly, everything else ignoring case.
//!
//! Failures can be scripted: errors for the next modify or rename calls, and concurrent changes
//! that alter `entryCSN` just before a modify is applied, so its assertion guard fails.
#![allow(clippy::unwrap_used)]

use super::{
    dn, DirectoryError, Entry, EntryReader, EntryWriter, Modification, Page, Scope, SearchRequest,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A write the service sent, recorded before the fake decides its outcome.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Write {
    Add {
        dn: String,
        attrs: Vec<(String, Vec<String>)>,
    },
    Modify {
        dn: String,
        mods: Vec<Modification>,
        guard: Option<String>,
    },
    Rename {
        dn: String,
        new_rdn: String,
        new_parent: Option<String>,
    },
    Delete {
        dn: String,
    },
    /// A Password Modify extended operation (the password itself is not recorded).
    SetPassword {
        dn: String,
    },
}

/// A `search_page` call the service made.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PageCall {
    pub req: SearchRequest,
    pub id_attr: String,
    pub offset: usize,
    pub limit: usize,
}

/// Entries in memory; every call recorded.
#[derive(Default)]
pub(crate) struct FakeDir {
    entries: Mutex<Vec<Entry>>,
    writes: Mutex<Vec<Write>>,
    searches: Mutex<Vec<SearchRequest>>,
    pages: Mutex<Vec<PageCall>>,
    /// Errors returned by the next modify / rename / set_password calls, in order.
    modify_errors: Mutex<VecDeque<DirectoryError>>,
    password_errors: Mutex<VecDeque<DirectoryError>>,
    rename_errors: Mutex<VecDeque<DirectoryError>>,
    /// How many of the next modifies find the entry changed by someone else first.
    concurrent_changes: AtomicUsize,
    /// Numbers new entryUUID and entryCSN values.
    counter: AtomicUsize,
    /// When set, every search waits until as many searches as the barrier counts are in flight.
    search_rendezvous: Mutex<Option<Arc<tokio::sync::Barrier>>>,
}

impl FakeDir {
    /// `DirectoryError::Conflict` when the entry at `target` does not satisfy the assertion `guard`.
    fn check_guard(&self, target: &str, guard: Option<&str>) -> Result<(), DirectoryError> {
        let Some(g) = guard else {
            return Ok(());
        };
        match self.entry(target) {
            Some(e) if eval(&parse_ldap_filter(g), &e) => Ok(()),
            Some(_) => Err(DirectoryError::Conflict),
            None => Err(DirectoryError::NoSuchObject),
        }
    }

    pub(crate) fn with(entries: Vec<Entry>) -> Arc<FakeDir> {
        Arc::new(FakeDir {
            entries: Mutex::new(entries),
            ..FakeDir::default()
        })
    }

    /// Every add, modify, rename and delete, in order (also the failed ones).
    pub(crate) fn writes(&self) -> Vec<Write> {
        self.writes.lock().unwrap().clone()
    }

    /// Every `search` (and `search_all`) request, in order.
    pub(crate) fn searches(&self) -> Vec<SearchRequest> {
        self.searches.lock().unwrap().clone()
    }

    /// Every `search_page` call, in order.
    pub(crate) fn pages(&self) -> Vec<PageCall> {
        self.pages.lock().unwrap().clone()
    }

    /// The entry now stored under `target` (compared by DN rules).
    pub(crate) fn entry(&self, target: &str) -> Option<Entry> {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .find(|e| same_dn(&e.dn, target))
            .cloned()
    }

    /// From now on a search waits (up to a second, then fails as unreachable) until `n` searches
    /// are in flight at once: reads meant to go side by side pass, reads made one after the
    /// other fail.
    pub(crate) fn searches_meet_in(&self, n: usize) {
        *self.search_rendezvous.lock().unwrap() = Some(Arc::new(tokio::sync::Barrier::new(n)));
    }

    /// The next modify call fails with `err` (after being recorded); queued errors are used in order.
    pub(crate) fn fail_next_modify(&self, err: DirectoryError) {
        self.modify_errors.lock().unwrap().push_back(err);
    }

    /// The next set_password call fails with `err` (after being recorded).
    pub(crate) fn fail_next_password(&self, err: DirectoryError) {
        self.password_errors.lock().unwrap().push_back(err);
    }

    /// The next rename call fails with `err` (after being recorded); queued errors are used in order.
    pub(crate) fn fail_next_rename(&self, err: DirectoryError) {
        self.rename_errors.lock().unwrap().push_back(err);
    }

    /// The next `n` modifies find the entry's `entryCSN` changed by someone else just before
    /// they apply, so an assertion guard on the old value fails with `DirectoryError::Conflict`.
    pub(crate) fn change_concurrently(&self, n: usize) {
        self.concurrent_changes.store(n, Ordering::SeqCst);
    }

    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn matching(&self, req: &SearchRequest) -> Vec<Entry> {
        let filter = parse_ldap_filter(&req.filter);
        let base = dn::normalize(&req.base);
        self.entries
            .lock()
            .unwrap()
            .iter()
            .filter(|e| match req.scope {
                Scope::Base => dn::normalize(&e.dn) == base,
                Scope::OneLevel => dn::parent(&e.dn).is_some_and(|p| dn::normalize(&p) == base),
                Scope::Subtree => dn::is_within(&e.dn, &req.base),
            })
            .filter(|e| eval(&filter, e))
            .cloned()
            .collect()
    }
}

impl EntryReader for FakeDir {
    async fn search(&self, req: SearchRequest) -> Result<Vec<Entry>, DirectoryError> {
        self.searches.lock().unwrap().push(req.clone());
        let rendezvous = self.search_rendezvous.lock().unwrap().clone();
        if let Some(barrier) = rendezvous {
            let wait = std::time::Duration::from_secs(1);
            if tokio::time::timeout(wait, barrier.wait()).await.is_err() {
                return Err(DirectoryError::Unavailable(
                    "no other search came alongside this one".into(),
                ));
            }
        }
        Ok(self.matching(&req))
    }

    async fn search_page(
        &self,
        req: SearchRequest,
        id_attr: &str,
        offset: usize,
        limit: usize,
        _sort: Option<crate::directory::SortKey>,
    ) -> Result<Page, DirectoryError> {
        self.pages.lock().unwrap().push(PageCall {
            req: req.clone(),
            id_attr: id_attr.to_string(),
            offset,
            limit,
        });
        let all = self.matching(&req);
        Ok(Page {
            total: all.len(),
            entries: all.into_iter().skip(offset).take(limit).collect(),
        })
    }
}

impl EntryWriter for FakeDir {
    async fn add(
        &self,
        target: &str,
        attrs: Vec<(String, Vec<String>)>,
        _read_back: &[String],
    ) -> Result<Entry, DirectoryError> {
        self.writes.lock().unwrap().push(Write::Add {
            dn: target.to_string(),
            attrs: attrs.clone(),
        });
        if self.entry(target).is_some() {
            return Err(DirectoryError::AlreadyExists);
        }
        let n = self.next();
        let mut e = Entry {
            dn: target.to_string(),
            ..Entry::default()
        };
        for (a, v) in attrs {
            e.attrs.insert(a.to_ascii_lowercase(), v);
        }
        e.attrs
            .insert("entryuuid".into(), vec![format!("uuid-{n}")]);
        e.attrs.insert("entrycsn".into(), vec![format!("csn-{n}")]);
        e.attrs
            .insert("createtimestamp".into(), vec!["20260101000000Z".into()]);
        e.attrs
            .insert("modifytimestamp".into(), vec!["20260101000000Z".into()]);
        self.entries.lock().unwrap().push(e.clone());
        Ok(e)
    }

    async fn modify(
        &self,
        target: &str,
        mods: Vec<Modification>,
        guard: Option<String>,
        _read_back: &[String],
    ) -> Result<Entry, DirectoryError> {
        self.writes.lock().unwrap().push(Write::Modify {
            dn: target.to_string(),
            mods: mods.clone(),
            guard: guard.clone(),
        });
        if let Some(e) = self.modify_errors.lock().unwrap().pop_front() {
            return Err(e);
        }
        let n = self.next();
        let mut entries = self.entries.lock().unwrap();
        let e = entries
            .iter_mut()
            .find(|e| same_dn(&e.dn, target))
            .ok_or(DirectoryError::NoSuchObject)?;
        if self
            .concurrent_changes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
            .is_ok()
        {
            e.attrs
                .insert("entrycsn".into(), vec![format!("csn-other-{n}")]);
        }
        if let Some(g) = &guard {
            if !eval(&parse_ldap_filter(g), e) {
                return Err(DirectoryError::Conflict);
            }
        }
        for m in mods {
            let attr = m.attribute().to_ascii_lowercase();
            match m {
                Modification::Swap(_, old, new) => {
                    let cur = e.attrs.entry(attr.clone()).or_default();
                    match cur.iter().position(|c| same_value(&attr, c, &old)) {
                        Some(i) => cur[i] = new,
                        None => return Err(DirectoryError::Conflict),
                    }
                }
                Modification::Replace(_, v) | Modification::Delete(_, v) if v.is_empty() => {
                    e.attrs.remove(&attr);
                }
                Modification::Replace(_, v) => {
                    e.attrs.insert(attr.clone(), v);
                }
                Modification::Add(_, v) => {
                    let cur = e.attrs.entry(attr.clone()).or_default();
                    for x in v {
                        if !cur.iter().any(|c| same_value(&attr, c, &x)) {
                            cur.push(x);
                        }
                    }
                }
                Modification::Delete(_, v) => {
                    if let Some(cur) = e.attrs.get_mut(&attr) {
                        cur.retain(|x| !v.iter().any(|d| same_value(&attr, d, x)));
                    }
                }
            }
            // An attribute without values does not exist.
            if e.attrs.get(&attr).is_some_and(Vec::is_empty) {
                e.attrs.remove(&attr);
            }
        }
        e.attrs.insert("entrycsn".into(), vec![format!("csn-{n}")]);
        e.attrs
            .insert("modifytimestamp".into(), vec!["20260301000000Z".into()]);
        Ok(e.clone())
    }

    async fn rename(
        &self,
        target: &str,
        new_rdn: &str,
        new_parent: Option<&str>,
        guard: Option<String>,
    ) -> Result<String, DirectoryError> {
        self.writes.lock().unwrap().push(Write::Rename {
            dn: target.to_string(),
            new_rdn: new_rdn.to_string(),
            new_parent: new_parent.map(str::to_string),
        });
        self.check_guard(target, guard.as_deref())?;
        if let Some(e) = self.rename_errors.lock().unwrap().pop_front() {
            return Err(e);
        }
        let parent = new_parent
            .map(str::to_string)
            .or_else(|| dn::parent(target))
            .unwrap();
        let new_dn = format!("{new_rdn},{parent}");
        if self.entry(&new_dn).is_some() {
            return Err(DirectoryError::AlreadyExists);
        }
        let mut entries = self.entries.lock().unwrap();
        let e = entries
            .iter_mut()
            .find(|e| same_dn(&e.dn, target))
            .ok_or(DirectoryError::NoSuchObject)?;
        // deleteoldrdn: the naming attribute now holds the new value only.
        let (attr, value) = new_rdn.split_once('=').unwrap();
        e.attrs
            .insert(attr.to_ascii_lowercase(), vec![unescape(value)]);
        e.dn = new_dn.clone();
        Ok(new_dn)
    }

    async fn delete(&self, target: &str, guard: Option<String>) -> Result<(), DirectoryError> {
        self.writes.lock().unwrap().push(Write::Delete {
            dn: target.to_string(),
        });
        self.check_guard(target, guard.as_deref())?;
        let mut entries = self.entries.lock().unwrap();
        let before = entries.len();
        entries.retain(|e| !same_dn(&e.dn, target));
        if entries.len() == before {
            return Err(DirectoryError::NoSuchObject);
        }
        Ok(())
    }

    /// Stores `{FAKE}<password reversed>` in userPassword: visibly not the cleartext.
    async fn set_password(
        &self,
        target: &str,
        password: &crate::config::Secret,
    ) -> Result<(), DirectoryError> {
        self.writes.lock().unwrap().push(Write::SetPassword {
            dn: target.to_string(),
        });
        if let Some(e) = self.password_errors.lock().unwrap().pop_front() {
            return Err(e);
        }
        let mut entries = self.entries.lock().unwrap();
        let e = entries
            .iter_mut()
            .find(|e| same_dn(&e.dn, target))
            .ok_or(DirectoryError::NoSuchObject)?;
        let stored: String = password.expose().chars().rev().collect();
        e.attrs
            .insert("userpassword".into(), vec![format!("{{FAKE}}{stored}")]);
        Ok(())
    }
}

/// Whether `entry` matches the LDAP filter `filter`, as the fake directory evaluates it.
/// Panics on filter syntax the fake does not evaluate (`>=`, `<=`, `~=`, extensible matches).
pub(crate) fn matches(filter: &str, entry: &Entry) -> bool {
    eval(&parse_ldap_filter(filter), entry)
}

// ---------------------------------------------------------------------------
// Equality rules

/// Attributes with DN syntax: their values compare by DN rules, and have no substring rule.
const DN_VALUED: &[&str] = &[
    "entrydn",
    "manager",
    "member",
    "memberof",
    "owner",
    "roleoccupant",
    "secretary",
    "seealso",
    "uniquemember",
];

/// Attributes whose equality rule is case-exact.
const CASE_EXACT: &[&str] = &["memberuid", "userpassword"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Equality {
    Dn,
    CaseExact,
    CaseIgnore,
}

fn equality(attr: &str) -> Equality {
    let attr = attr.to_ascii_lowercase();
    if DN_VALUED.contains(&attr.as_str()) {
        Equality::Dn
    } else if CASE_EXACT.contains(&attr.as_str()) {
        Equality::CaseExact
    } else {
        Equality::CaseIgnore
    }
}

fn same_dn(a: &str, b: &str) -> bool {
    dn::normalize(a) == dn::normalize(b)
}

/// Whether two values of `attr` are equal by the attribute's equality rule.
fn same_value(attr: &str, a: &str, b: &str) -> bool {
    match equality(attr) {
        Equality::Dn => same_dn(a, b),
        Equality::CaseExact => a == b,
        Equality::CaseIgnore => a.to_lowercase() == b.to_lowercase(),
    }
}

// ---------------------------------------------------------------------------
// Filters

/// The filters the services send: `&`, `|`, `!`, equality, presence and substrings.
#[derive(Debug)]
enum LdapFilter {
    And(Vec<LdapFilter>),
    Or(Vec<LdapFilter>),
    Not(Box<LdapFilter>),
    /// An attribute and the unescaped pieces between `*`; one piece is an equality match.
    Match(String, Vec<String>),
}

fn parse_ldap_filter(s: &str) -> LdapFilter {
    let (f, end) = parse_filter_at(s.as_bytes(), 0);
    assert_eq!(end, s.len(), "trailing text in {s}");
    f
}

fn parse_filter_at(b: &[u8], start: usize) -> (LdapFilter, usize) {
    assert_eq!(b[start], b'(', "expected '(' at {start}");
    let mut i = start + 1;
    match b[i] {
        op @ (b'&' | b'|') => {
            i += 1;
            let mut items = Vec::new();
            while b[i] != b')' {
                let (f, next) = parse_filter_at(b, i);
                items.push(f);
                i = next;
            }
            let f = if op == b'&' {
                LdapFilter::And(items)
            } else {
                LdapFilter::Or(items)
            };
            (f, i + 1)
        }
        b'!' => {
            let (f, next) = parse_filter_at(b, i + 1);
            assert_eq!(b[next], b')');
            (LdapFilter::Not(Box::new(f)), next + 1)
        }
        _ => {
            let end = i + b[i..].iter().position(|&c| c == b')').unwrap();
            let item = std::str::from_utf8(&b[i..end]).unwrap();
            let (attr, value) = item.split_once('=').unwrap();
            assert!(
                !attr.ends_with(['>', '<', ':', '~']),
                "the fake directory does not evaluate ({item})"
            );
            let pieces = value.split('*').map(unescape).collect();
            (LdapFilter::Match(attr.to_string(), pieces), end + 1)
        }
    }
}

/// `\xx` hex escapes, as ldap3 writes them in filters and DNs.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn eval(f: &LdapFilter, e: &Entry) -> bool {
    match f {
        LdapFilter::And(v) => v.iter().all(|f| eval(f, e)),
        LdapFilter::Or(v) => v.iter().any(|f| eval(f, e)),
        LdapFilter::Not(f) => !eval(f, e),
        LdapFilter::Match(attr, pieces) => {
            // entryDN is operational: its one value is the entry's own DN.
            let own_dn = [e.dn.clone()];
            let values = if attr.eq_ignore_ascii_case("entryDN") {
                &own_dn[..]
            } else {
                e.values(attr)
            };
            match equality(attr) {
                // DN syntax has equality and presence, but no substring matching.
                Equality::Dn if pieces.len() == 1 => values.iter().any(|v| same_dn(v, &pieces[0])),
                Equality::Dn => !values.is_empty() && pieces.iter().all(String::is_empty),
                Equality::CaseExact => values.iter().any(|v| glob(v, pieces)),
                Equality::CaseIgnore => {
                    let pieces: Vec<String> = pieces.iter().map(|p| p.to_lowercase()).collect();
                    values.iter().any(|v| glob(&v.to_lowercase(), &pieces))
                }
            }
        }
    }
}

/// Whether `v` matches the pieces of a substring filter; one piece is an equality match.
fn glob(v: &str, pieces: &[String]) -> bool {
    if pieces.len() == 1 {
        return v == pieces[0];
    }
    let (first, last) = (&pieces[0], &pieces[pieces.len() - 1]);
    if !v.starts_with(first.as_str()) {
        return false;
    }
    let mut pos = first.len();
    for mid in &pieces[1..pieces.len() - 1] {
        match v[pos..].find(mid.as_str()) {
            Some(k) => pos += k + mid.len(),
            None => return false,
        }
    }
    v.len() >= pos + last.len() && v.ends_with(last.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Entry {
        let mut e = Entry {
            dn: "cn=g,ou=groups,dc=example,dc=org".into(),
            ..Entry::default()
        };
        e.attrs.insert("cn".into(), vec!["G".into()]);
        e.attrs.insert(
            "member".into(),
            vec!["uid=a,ou=people,dc=example,dc=org".into()],
        );
        e.attrs.insert("memberuid".into(), vec!["a".into()]);
        e
    }

    #[test]
    fn filters_use_the_attribute_equality_rule() {
        let e = group();
        assert!(matches("(member=UID=a, ou=people,dc=example,dc=org)", &e));
        assert!(!matches("(member=uid=a*)", &e));
        assert!(matches("(member=*)", &e));
        assert!(matches("(entryDN=*)", &e));
        assert!(matches("(cn=g)", &e));
        assert!(matches("(memberUid=a)", &e));
        assert!(!matches("(memberUid=A)", &e));
    }

    #[tokio::test]
    async fn modify_values_compare_by_the_attribute_equality_rule() {
        let dir = FakeDir::with(vec![group()]);
        let target = "cn=g,ou=groups,dc=example,dc=org";
        let add = |a: &str, v: &str| Modification::Add(a.into(), vec![v.into()]);
        let del = |a: &str, v: &str| Modification::Delete(a.into(), vec![v.into()]);
        let e = dir
            .modify(
                target,
                vec![
                    add("member", "UID=a,ou=people,dc=example,dc=org"),
                    add("cn", "g"),
                    add("memberUid", "A"),
                ],
                None,
                &[],
            )
            .await
            .unwrap();
        assert_eq!(e.values("member").len(), 1);
        assert_eq!(e.values("cn"), ["G"]);
        assert_eq!(e.values("memberUid"), ["a", "A"]);
        let e = dir
            .modify(
                target,
                vec![
                    del("member", "uid=A, ou=people,dc=example,dc=org"),
                    del("memberUid", "A"),
                ],
                None,
                &[],
            )
            .await
            .unwrap();
        assert!(!e.attrs.contains_key("member"));
        assert_eq!(e.values("memberUid"), ["a"]);
        assert_eq!(e.first("entryCSN"), Some("csn-2"));
    }

    #[tokio::test]
    async fn scripted_failures_are_recorded_and_used_in_order() {
        let dir = FakeDir::with(vec![group()]);
        let target = "cn=g,ou=groups,dc=example,dc=org";
        dir.change_concurrently(1);
        let guard = Some("(entryCSN=csn-0)".to_string());
        let r = dir.modify(target, vec![], guard, &[]).await;
        assert!(matches!(r, Err(DirectoryError::Conflict)), "{r:?}");
        assert_eq!(
            dir.entry(target).unwrap().first("entryCSN"),
            Some("csn-other-1")
        );
        dir.fail_next_rename(DirectoryError::AlreadyExists);
        let r = dir.rename(target, "cn=h", None, None).await;
        assert!(matches!(r, Err(DirectoryError::AlreadyExists)), "{r:?}");
        assert_eq!(
            dir.rename(target, "cn=h", None, None).await.unwrap(),
            "cn=h,ou=groups,dc=example,dc=org"
        );
        assert_eq!(dir.writes().len(), 3);
    }
}
