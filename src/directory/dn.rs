//! Distinguished-name helpers: building RDNs safely and checking subtree containment.

use std::borrow::Cow;

/// Build `attr=value` with the value escaped per RFC 4514, so no input can add RDN components.
pub fn rdn(attr: &str, value: &str) -> String {
    let escaped: Cow<'_, str> = ldap3::dn_escape(value);
    format!("{attr}={escaped}")
}

/// Split a DN into its RDN strings at unescaped commas, trimming blanks around them.
pub fn split_rdns(dn: &str) -> Vec<String> {
    rdn_slices(dn).into_iter().map(str::to_string).collect()
}

/// `split_rdns` without copying: the RDNs as slices of `dn`.
fn rdn_slices(dn: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (at, c) in dn.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            parts.push(dn[start..at].trim());
            start = at + 1;
        }
    }
    let last = dn[start..].trim();
    if !last.is_empty() || !parts.is_empty() {
        parts.push(last);
    }
    parts
}

/// A comparable form of a DN: RDNs trimmed, blanks around `=` removed, ASCII-lowercased.
/// Good enough for containment checks between DNs the directory and the config spell alike.
pub fn normalize(dn: &str) -> Vec<String> {
    rdn_slices(dn)
        .into_iter()
        .map(|r| match r.split_once('=') {
            Some((a, v)) => format!("{}={}", a.trim(), v.trim()).to_ascii_lowercase(),
            None => r.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether two RDNs from `rdn_slices` have the same `normalize` form, without building it.
fn same_rdn(a: &str, b: &str) -> bool {
    match (a.split_once('='), b.split_once('=')) {
        (Some((at, av)), Some((bt, bv))) => {
            at.trim().eq_ignore_ascii_case(bt.trim()) && av.trim().eq_ignore_ascii_case(bv.trim())
        }
        (None, None) => a.eq_ignore_ascii_case(b),
        // One normal form holds a `=` and the other none.
        _ => false,
    }
}

/// True when `dn` equals `base` or lies below it (compared as `normalize` forms; checked on
/// every directory operation, so it copies nothing).
pub fn is_within(dn: &str, base: &str) -> bool {
    // The common case, a search at the configured base itself, needs no splitting.
    if dn == base && !base.trim().is_empty() {
        return true;
    }
    let dn = rdn_slices(dn);
    let base = rdn_slices(base);
    if base.is_empty() || dn.len() < base.len() {
        return false;
    }
    dn[dn.len() - base.len()..]
        .iter()
        .zip(&base)
        .all(|(a, b)| same_rdn(a, b))
}

/// The parent DN of `dn`, if it has one.
pub fn parent(dn: &str) -> Option<String> {
    let rdns = split_rdns(dn);
    if rdns.len() < 2 {
        return None;
    }
    Some(rdns[1..].join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdn_escapes_specials() {
        assert_eq!(rdn("uid", "x,ou=admins"), "uid=x\\2cou\\3dadmins");
        assert_eq!(
            split_rdns(&format!(
                "{},ou=people,dc=example,dc=org",
                rdn("uid", "x,ou=admins")
            ))
            .len(),
            4
        );
        assert!(rdn("uid", "#a b ").starts_with("uid=\\"));
    }

    #[test]
    fn split_respects_escapes() {
        assert_eq!(
            split_rdns("uid=a\\,b, ou=people,dc=org"),
            vec!["uid=a\\,b", "ou=people", "dc=org"]
        );
        assert!(split_rdns("").is_empty());
    }

    #[test]
    fn containment() {
        let base = "ou=people,dc=example,dc=org";
        assert!(is_within("uid=a,ou=people,dc=example,dc=org", base));
        assert!(is_within("uid=a, OU=People, dc=Example,dc=org", base));
        assert!(is_within(base, base));
        assert!(!is_within("uid=a,ou=admins,dc=example,dc=org", base));
        assert!(!is_within(
            "uid=a\\,ou=people,dc=example,dc=org",
            "dc=other"
        ));
        assert!(!is_within("dc=org", base));
        // An escaped comma must not fake a boundary.
        assert!(!is_within(
            "uid=x\\,ou=people,ou=admins,dc=example,dc=org",
            base
        ));
        assert!(!is_within("uid=a,ou=people,dc=example,dc=org", ""));
    }

    #[test]
    fn parent_of() {
        assert_eq!(parent("uid=a,ou=p,dc=o").as_deref(), Some("ou=p,dc=o"));
        assert_eq!(parent("dc=o"), None);
    }

    /// `is_within` answers as comparing the `normalize` forms' tails does (its definition
    /// before it stopped copying), over DNs built from awkward pieces.
    #[test]
    fn containment_equals_comparing_normal_forms() {
        fn by_normal_forms(dn: &str, base: &str) -> bool {
            let dn = normalize(dn);
            let base = normalize(base);
            !base.is_empty() && dn.len() >= base.len() && dn[dn.len() - base.len()..] == base[..]
        }
        let pieces = [
            "ou=people",
            "OU = People ",
            "ou=people\\,x",
            "ou=people\\\\",
            "ou=peoplé",
            "OU=PEOPLÉ",
            "ou=a=b",
            "ou = a = b",
            "ou",
            "OU",
            "",
            " ",
            "dc=example",
            "dc=Example ",
            "\\,dc=example",
            "uid=a+cn=b",
        ];
        let mut dns = vec![String::new()];
        for a in pieces {
            dns.push(a.to_string());
            for b in pieces {
                dns.push(format!("{a},{b}"));
                for c in ["dc=org", " DC = ORG"] {
                    dns.push(format!("{a},{b},{c}"));
                }
            }
        }
        for dn in &dns {
            for base in &dns {
                assert_eq!(
                    is_within(dn, base),
                    by_normal_forms(dn, base),
                    "{dn:?} within {base:?}"
                );
            }
        }
    }
}
