//! The BER of an LDAP filter's text (RFC 4515 text, RFC 4511 section 4.5.1 encoding), for the
//! filter of the assertion control every guarded write carries.
//!
//! ldap3 reaches the same bytes through a general parser and tag tree that cost about as much as
//! the rest of the write's LDAP encoding. This writer covers the filters the gateway builds
//! (`&`, `|`, `!`, equality, presence, substrings, `>=`, `<=`, `~=`) and answers `None` for
//! anything else (an extensible match, an empty `&` or `|`, an item without parentheses, text
//! that is not a filter), which the caller then hands to ldap3. Where it answers, its bytes are
//! ldap3's (the tests compare them on a corpus and on generated filters).

use super::ber::{put, OCTET_STRING, SEQUENCE};

const AND: u8 = 0xa0;
const OR: u8 = 0xa1;
const NOT: u8 = 0xa2;
const EQUALITY: u8 = 0xa3;
const SUBSTRINGS: u8 = 0xa4;
const GREATER_OR_EQUAL: u8 = 0xa5;
const LESS_OR_EQUAL: u8 = 0xa6;
const PRESENT: u8 = 0x87;
const APPROX: u8 = 0xa8;
const SUB_INITIAL: u8 = 0x80;
const SUB_ANY: u8 = 0x81;
const SUB_FINAL: u8 = 0x82;

/// How deep `&`, `|` and `!` may nest; deeper text goes to ldap3.
const MAX_DEPTH: usize = 32;

/// The BER of the filter `text`, or `None` where ldap3 should decide (see the module notes).
pub fn encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + 16);
    let rest = filter(text.as_bytes(), &mut out, 0)?;
    rest.is_empty().then_some(out)
}

/// One parenthesized filter at the start of `input`, appended to `out`; what follows it.
fn filter<'a>(input: &'a [u8], out: &mut Vec<u8>, depth: usize) -> Option<&'a [u8]> {
    let input = input.strip_prefix(b"(")?;
    let rest = match input.first()? {
        b'&' | b'|' if depth < MAX_DEPTH => {
            let tag = if input[0] == b'&' { AND } else { OR };
            let mut list = Vec::new();
            let mut rest = &input[1..];
            while rest.first() == Some(&b'(') {
                rest = filter(rest, &mut list, depth + 1)?;
            }
            if list.is_empty() {
                return None;
            }
            put(out, tag, &list);
            rest
        }
        b'!' if depth < MAX_DEPTH => {
            let mut inner = Vec::new();
            let rest = filter(&input[1..], &mut inner, depth + 1)?;
            put(out, NOT, &inner);
            rest
        }
        b'&' | b'|' | b'!' => return None,
        _ => item(input, out)?,
    };
    rest.strip_prefix(b")")
}

/// A simple, presence or substrings item (no parentheses), appended to `out`; what follows it.
fn item<'a>(input: &'a [u8], out: &mut Vec<u8>) -> Option<&'a [u8]> {
    let (attr, rest) = attribute_description(input)?;
    let (op, rest) = match rest {
        [b'>', b'=', rest @ ..] => (GREATER_OR_EQUAL, rest),
        [b'<', b'=', rest @ ..] => (LESS_OR_EQUAL, rest),
        [b'~', b'=', rest @ ..] => (APPROX, rest),
        [b'=', rest @ ..] => (EQUALITY, rest),
        // `:` starts an extensible match: ldap3's.
        _ => return None,
    };
    // The value runs to the closing parenthesis; `(` and NUL may not appear in it unescaped.
    let end = rest.iter().position(|&c| c == b')')?;
    let (value, rest) = rest.split_at(end);
    if value.iter().any(|&c| c == b'(' || c == 0) {
        return None;
    }
    if op != EQUALITY {
        // Only an equality's value is split at `*`; elsewhere ldap3 refuses it.
        if value.contains(&b'*') {
            return None;
        }
        let mut body = Vec::with_capacity(attr.len() + value.len() + 4);
        put(&mut body, OCTET_STRING, attr);
        put(&mut body, OCTET_STRING, &unescape(value)?);
        put(out, op, &body);
        return Some(rest);
    }
    let mut pieces = value.split(|&c| c == b'*');
    let initial = unescape(pieces.next()?)?;
    let more: Vec<Vec<u8>> = pieces.map(unescape).collect::<Option<_>>()?;
    if more.is_empty() {
        let mut body = Vec::with_capacity(attr.len() + initial.len() + 4);
        put(&mut body, OCTET_STRING, attr);
        put(&mut body, OCTET_STRING, &initial);
        put(out, EQUALITY, &body);
    } else if initial.is_empty() && more.len() == 1 && more[0].is_empty() {
        put(out, PRESENT, attr);
    } else {
        // Only the last piece may be empty (`a*`); `a**b` is no filter.
        let last = more.len() - 1;
        if more[..last].iter().any(Vec::is_empty) {
            return None;
        }
        let mut subs = Vec::new();
        if !initial.is_empty() {
            put(&mut subs, SUB_INITIAL, &initial);
        }
        for (i, piece) in more.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            put(
                &mut subs,
                if i == last { SUB_FINAL } else { SUB_ANY },
                piece,
            );
        }
        let mut body = Vec::with_capacity(attr.len() + subs.len() + 8);
        put(&mut body, OCTET_STRING, attr);
        put(&mut body, SEQUENCE, &subs);
        put(out, SUBSTRINGS, &body);
    }
    Some(rest)
}

/// An attribute description at the start of `input` (RFC 4512: a numeric OID or a name, then
/// `;option`s), as ldap3 reads it; what follows it.
fn attribute_description(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let alnum_hyphen = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-';
    let mut at = match input.first()? {
        c if c.is_ascii_alphabetic() => {
            1 + input[1..].iter().take_while(|c| alnum_hyphen(c)).count()
        }
        c if c.is_ascii_digit() => numeric_oid(input)?,
        _ => return None,
    };
    while input.get(at) == Some(&b';') {
        let option = input[at + 1..]
            .iter()
            .take_while(|c| alnum_hyphen(c))
            .count();
        if option == 0 {
            return None;
        }
        at += 1 + option;
    }
    Some(input.split_at(at))
}

/// The length of the numeric OID at the start of `input` (numbers without leading zeros,
/// separated by dots).
fn numeric_oid(input: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let digits = input[at..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 || (digits > 1 && input[at] == b'0') {
            return None;
        }
        at += digits;
        let more =
            input.get(at) == Some(&b'.') && input.get(at + 1).is_some_and(u8::is_ascii_digit);
        if !more {
            return Some(at);
        }
        at += 1;
    }
}

/// The bytes of an assertion value with its `\XX` escapes resolved; `None` for a broken escape.
fn unescape(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'\\' {
            let hi = hex_digit(*value.get(i + 1)?)?;
            let lo = hex_digit(*value.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ldap3's bytes for `text`, or `None` where it refuses the text.
    fn ldap3s(text: &str) -> Option<Vec<u8>> {
        use ldap3::asn1::ASNTag;
        let tag = ldap3::parse_filter(text).ok()?;
        let mut buf = bytes::BytesMut::new();
        ldap3::asn1::write::encode_into(&mut buf, tag.into_structure()).unwrap();
        Some(buf.to_vec())
    }

    /// Where this writer answers, ldap3 answers the same bytes.
    fn agrees(text: &str) -> Option<Vec<u8>> {
        let ours = encode(text);
        if let Some(bytes) = &ours {
            assert_eq!(Some(bytes), ldap3s(text).as_ref(), "{text:?}");
        }
        ours
    }

    #[test]
    fn the_gateways_filters_are_written_as_ldap3_writes_them() {
        for text in [
            "(entryUUID=0b6e4c5a-1f0e-4a43-9d1c-2b2f6f0e9a11)",
            "(&(objectClass=inetOrgPerson)(entryUUID=0b6e4c5a-1f0e-4a43)(sn=*)(cn=*))",
            "(&(objectClass=person)(!(objectClass=computer))(objectGUID=\\5a\\4c\\01\\ff)(cn=*))",
            "(&(objectClass=groupOfNames)(|(entryUUID=a)(member=uid=x\\2a\\28y\\29,dc=org)))",
            "(|(uid=a)(!(cn=b*c)))",
            "(cn=*a*b*)",
            "(cn=a*)",
            "(cn=*a)",
            "(cn=a*b*c)",
            "(cn=\\2a)",
            "(cn=)",
            "(cn=a=b)",
            "(modifyTimestamp>=20261122144200Z)",
            "(uidNumber<=1000)",
            "(cn~=alise)",
            "(cn;lang-de=Stra\u{df}e)",
            "(2.5.4.3=x)",
            "(0=x)",
            "(uid=\u{e9}l\u{e8}ve \u{6771}\u{4eac})",
            "(description=\\5C\\5c)",
        ] {
            assert!(agrees(text).is_some(), "not written by the gateway: {text}");
        }
        // Long values take the long length form at every level.
        let long = format!("(&(description={})(cn=*))", "x".repeat(70_000));
        assert!(agrees(&long).is_some());
        let many = format!("(|{})", "(uid=a)".repeat(400));
        assert!(agrees(&many).is_some());
    }

    #[test]
    fn leaves_to_ldap3_what_it_does_not_write() {
        for text in [
            "uid=a",
            "(uid:dn:=a)",
            "(:caseExactMatch:=a)",
            "(uid:2.5.13.5:=a)",
            "(&)",
            "(|)",
            "(uid=a",
            "uid=a)",
            "(uid=a))",
            "(uid=a)(cn=b)",
            "(uid=a\\2)",
            "(uid=a\\zz)",
            "(uid=a(b)",
            "(cn=a**b)",
            "(cn>=a*)",
            "(01=x)",
            "(-cn=x)",
            "(cn;=x)",
            "(=x)",
            "(!(uid=a)(uid=b))",
            "",
            "()",
        ] {
            assert_eq!(agrees(text), None, "{text:?}");
        }
        let deep = format!("{}(uid=a){}", "(!".repeat(40), ")".repeat(40));
        assert_eq!(encode(&deep), None);
        let ok = format!("{}(uid=a){}", "(!".repeat(20), ")".repeat(20));
        assert!(agrees(&ok).is_some());
    }

    /// Generated filters from pieces that exercise every branch, valid and not: wherever this
    /// writer answers, its bytes are ldap3's, and it answers every one that ldap3 accepts and
    /// that has no extensible match and no empty `&` or `|`.
    #[test]
    fn agrees_with_ldap3_on_generated_filters() {
        const ATTRS: &[&str] = &["cn", "uid", "2.5.4.3", "cn;x-1", "a-b", "1.", "c;", "9z"];
        const OPS: &[&str] = &["=", ">=", "<=", "~=", ":=", ":dn:=", "=*", "=="];
        const VALUES: &[&str] = &[
            "", "a", "*", "a*", "*a", "*a*", "a*b*c", "**", "a**b", "\\2a", "\\", "\\4", "\\4g",
            "x\u{e9}", "(", "a=b", "\0",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        fn build(next: &mut dyn FnMut(usize) -> usize, depth: usize) -> String {
            match if depth > 3 { 3 } else { next(6) } {
                0 | 1 => {
                    let op = if next(2) == 0 { "&" } else { "|" };
                    let n = next(4);
                    let inner: String = (0..n).map(|_| build(next, depth + 1)).collect();
                    format!("({op}{inner})")
                }
                2 => format!("(!{})", build(next, depth + 1)),
                _ => format!(
                    "({}{}{})",
                    ATTRS[next(ATTRS.len())],
                    OPS[next(OPS.len())],
                    VALUES[next(VALUES.len())]
                ),
            }
        }
        let (mut written, mut in_scope) = (0, 0);
        for _ in 0..20_000 {
            let text = build(&mut next, 0);
            let ours = agrees(&text);
            written += usize::from(ours.is_some());
            // What the module covers, ldap3 accepting it: this writer must answer every one.
            let covered = !text.contains(':') && !text.contains("(&)") && !text.contains("(|)");
            if covered && ldap3s(&text).is_some() {
                in_scope += 1;
                assert!(ours.is_some(), "{text:?}");
            }
        }
        assert!(
            in_scope > 2_000 && written >= in_scope,
            "{written}, {in_scope}"
        );
    }
}
