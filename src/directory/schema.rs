//! Reading facts from a directory's subschema (RFC 4512 definitions).

use std::collections::{HashMap, HashSet};

/// Names an RFC 4512 definition declares: `NAME 'cn'` or `NAME ( 'cn' 'commonName' )`.
pub fn definition_names(def: &str) -> Vec<String> {
    let Some(pos) = def.find(" NAME ") else {
        return vec![];
    };
    let rest = def[pos + 6..].trim_start();
    let part = if let Some(inner) = rest.strip_prefix('(') {
        inner.split(')').next().unwrap_or("")
    } else {
        rest.split_whitespace().next().unwrap_or("")
    };
    part.split('\'')
        .enumerate()
        .filter(|(i, s)| i % 2 == 1 && !s.is_empty())
        .map(|(_, s)| s.to_ascii_lowercase())
        .collect()
}

/// The word after `keyword` in a definition (`SUP name`), lowercased.
fn field(def: &str, keyword: &str) -> Option<String> {
    let pos = def.find(&format!(" {keyword} "))?;
    def[pos + keyword.len() + 2..]
        .split_whitespace()
        .next()
        .map(|w| w.trim_matches('\'').to_ascii_lowercase())
}

/// Attribute types (all their names, lowercased) that have an ORDERING matching rule, directly or
/// through their SUP chain; only those can take `>=` and `<=` assertions.
pub fn orderable_attributes(attribute_types: &[String]) -> HashSet<String> {
    struct Def {
        names: Vec<String>,
        sup: Option<String>,
        ordered: bool,
    }
    let defs: Vec<Def> = attribute_types
        .iter()
        .map(|d| Def {
            names: definition_names(d),
            sup: field(d, "SUP"),
            ordered: d.contains(" ORDERING "),
        })
        .collect();
    let by_name: HashMap<&str, &Def> = defs
        .iter()
        .flat_map(|d| d.names.iter().map(move |n| (n.as_str(), d)))
        .collect();
    let mut out = HashSet::new();
    for d in &defs {
        let mut cur = Some(d);
        let mut hops = 0;
        while let Some(c) = cur {
            if c.ordered {
                out.extend(d.names.iter().cloned());
                break;
            }
            hops += 1;
            cur = c
                .sup
                .as_deref()
                .and_then(|s| by_name.get(s).copied())
                .filter(|_| hops < 16);
        }
    }
    out
}

/// The attributes an LDAP filter asserts with `>=` or `<=`, lowercased. Escaped values cannot
/// contain an unescaped `(`, so every `(attr>=` found is structure.
pub fn ordering_assertions(filter: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Most filters have no `>=` or `<=` anywhere: those need no closer look.
    let ordering = |w: &[u8]| w[1] == b'=' && (w[0] == b'>' || w[0] == b'<');
    if !filter.as_bytes().windows(2).any(ordering) {
        return out;
    }
    for (i, _) in filter.match_indices('(') {
        let rest = &filter[i + 1..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ';' || c == '.'))
            .unwrap_or(rest.len());
        let after = &rest[name_len..];
        if name_len > 0 && (after.starts_with(">=") || after.starts_with("<=")) {
            out.push(rest[..name_len].to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_definitions() {
        assert_eq!(
            definition_names("( 2.5.4.3 NAME ( 'cn' 'commonName' ) DESC 'x' SUP name )"),
            vec!["cn", "commonname"]
        );
        assert_eq!(
            definition_names("( 0.9.2342.19200300.100.1.1 NAME 'uid' EQUALITY caseIgnoreMatch )"),
            vec!["uid"]
        );
        assert!(definition_names("( 1.2.3 DESC 'no name' )").is_empty());
    }

    #[test]
    fn ordering_follows_the_sup_chain() {
        let defs = vec![
            "( 2.5.18.1 NAME 'createTimestamp' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 )".to_string(),
            "( 2.5.4.41 NAME 'name' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch )".to_string(),
            "( 2.5.4.4 NAME ( 'sn' 'surname' ) SUP name )".to_string(),
            "( 1.1 NAME 'ordered' ORDERING caseIgnoreOrderingMatch )".to_string(),
            "( 1.2 NAME 'child' SUP ordered )".to_string(),
            "( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) EQUALITY caseIgnoreMatch )".to_string(),
        ];
        let o = orderable_attributes(&defs);
        assert!(o.contains("createtimestamp"));
        assert!(o.contains("ordered") && o.contains("child"));
        assert!(!o.contains("sn") && !o.contains("name") && !o.contains("uid"));
    }

    #[test]
    fn finds_ordering_assertions_but_not_values() {
        assert_eq!(
            ordering_assertions("(&(objectClass=x)(&(uid>=b)(!(uid=b)))(createTimestamp<=2026Z))"),
            vec!["uid", "createtimestamp"]
        );
        assert!(ordering_assertions("(cn=a>=b)").is_empty());
        assert!(ordering_assertions("(cn=\\28x>=y)").is_empty());
    }
}
