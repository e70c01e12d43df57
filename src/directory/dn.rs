//! Distinguished-name helpers: building RDNs safely and checking subtree containment.

use std::borrow::Cow;

/// Build `attr=value` with the value escaped per RFC 4514, so no input can add RDN components.
pub fn rdn(attr: &str, value: &str) -> String {
    let escaped: Cow<'_, str> = ldap3::dn_escape(value);
    format!("{attr}={escaped}")
}

/// Split a DN into its RDN strings at unescaped commas, trimming blanks around them.
pub fn split_rdns(dn: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            current.push(c);
            escaped = true;
        } else if c == ',' {
            parts.push(current.trim().to_string());
            current.clear();
        } else {
            current.push(c);
        }
    }
    if !current.trim().is_empty() || !parts.is_empty() {
        parts.push(current.trim().to_string());
    }
    parts
}

/// A comparable form of a DN: RDNs trimmed, blanks around `=` removed, ASCII-lowercased.
/// Good enough for containment checks between DNs the directory and the config spell alike.
pub fn normalize(dn: &str) -> Vec<String> {
    split_rdns(dn)
        .into_iter()
        .map(|r| match r.split_once('=') {
            Some((a, v)) => format!("{}={}", a.trim(), v.trim()).to_ascii_lowercase(),
            None => r.to_ascii_lowercase(),
        })
        .collect()
}

/// True when `dn` equals `base` or lies below it.
pub fn is_within(dn: &str, base: &str) -> bool {
    let dn = normalize(dn);
    let base = normalize(base);
    if base.is_empty() || dn.len() < base.len() {
        return false;
    }
    dn[dn.len() - base.len()..] == base[..]
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
}
