//! Active Directory's wire encodings, kept inside the LDAP layer so that everything above it sees
//! plain strings: `objectGUID` as its canonical GUID text, `unicodePwd` as a cleartext value, and
//! `member` as one complete attribute however AD splits it into ranges.

use std::borrow::Cow;

/// Binary GUID attributes rendered as GUID text (lower-case names).
pub const GUID_ATTRIBUTES: &[&str] = &["objectguid"];

/// The password attribute AD accepts only as a quoted UTF-16LE value over an encrypted connection.
pub const UNICODE_PWD: &str = "unicodepwd";

/// `objectGUID`'s 16 bytes as Microsoft's canonical text: the first three groups are stored
/// little-endian, the last two in order. `None` unless exactly 16 bytes.
pub fn guid_to_string(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    ))
}

/// The 16 bytes of a GUID in canonical text; `None` when `s` is not one.
pub fn guid_from_string(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
    let shape = s.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-')
        && hex.len() == 32
        && hex.iter().all(u8::is_ascii_hexdigit);
    if !shape {
        return None;
    }
    let mut text = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        text[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut out = [0u8; 16];
    for (i, &j) in order.iter().enumerate() {
        out[i] = text[j];
    }
    Some(out)
}

/// A filter with every equality assertion on a GUID attribute whose value is GUID text rewritten
/// to the escaped binary AD compares (`(objectGUID=\xx\xx…)`). Other assertions stay as they are:
/// a value that is not a GUID can match no entry anyway.
pub fn binary_guid_filter(filter: &str) -> Cow<'_, str> {
    // Every guarded write passes here; most filters name no GUID attribute at all.
    let names_a_guid = filter
        .as_bytes()
        .windows(5)
        .any(|w| w.eq_ignore_ascii_case(b"guid="));
    if !names_a_guid {
        return Cow::Borrowed(filter);
    }
    let lower = filter.to_ascii_lowercase();
    let mut out = String::new();
    let mut copied = 0;
    for attr in GUID_ATTRIBUTES {
        let needle = format!("({attr}=");
        let mut from = 0;
        while let Some(at) = lower[from..].find(&needle) {
            let start = from + at + needle.len();
            from = start;
            let Some(len) = filter[start..].find(')') else {
                break;
            };
            let Some(bytes) = guid_from_string(&filter[start..start + len]) else {
                continue;
            };
            if start < copied {
                continue;
            }
            out.push_str(&filter[copied..start]);
            for b in bytes {
                out.push_str(&format!("\\{b:02x}"));
            }
            copied = start + len;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(filter);
    }
    out.push_str(&filter[copied..]);
    Cow::Owned(out)
}

/// A password as AD's `unicodePwd` wants it: the value in double quotes, encoded UTF-16LE.
pub fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// `member;range=0-1499` → (`member`, 0, Some(1499)); `member;range=1500-*` → (`member`, 1500, None).
pub fn parse_range(attr: &str) -> Option<(&str, usize, Option<usize>)> {
    // Most names have no option at all: a plain byte scan passes them over (cheaper, on names
    // this short, than the general search `split_once` starts).
    let semicolon = attr.bytes().position(|b| b == b';')?;
    let (name, opts) = (&attr[..semicolon], &attr[semicolon + 1..]);
    let range = opts.split(';').find_map(|o| {
        o.get(..6)
            .filter(|p| p.eq_ignore_ascii_case("range="))
            .map(|_| &o[6..])
    })?;
    let (lo, hi) = range.split_once('-')?;
    let lo = lo.parse().ok()?;
    let hi = if hi == "*" {
        None
    } else {
        Some(hi.parse().ok()?)
    };
    Some((name, lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_round_trips_in_microsoft_byte_order() {
        let bytes = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        let text = guid_to_string(&bytes).unwrap();
        assert_eq!(text, "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(guid_from_string(&text), Some(bytes));
        assert_eq!(
            guid_from_string("00112233-4455-6677-8899-AABBCCDDEEFF"),
            Some(bytes)
        );
        assert_eq!(guid_to_string(&bytes[..15]), None);
        for bad in [
            "",
            "00112233445566778899aabbccddeeff",
            "00112233-4455-6677-8899-aabbccddeefg",
            "0011223-34455-6677-8899-aabbccddeeff",
            "00112233-4455-6677-8899-aabbccddeeff0",
        ] {
            assert_eq!(guid_from_string(bad), None, "{bad}");
        }
    }

    #[test]
    fn guid_assertions_become_escaped_binary_and_nothing_else_changes() {
        let id = "00112233-4455-6677-8899-aabbccddeeff";
        let bin = r"\33\22\11\00\55\44\77\66\88\99\aa\bb\cc\dd\ee\ff";
        // The shortcut for filters without "guid=" holds for every GUID attribute.
        assert!(GUID_ATTRIBUTES.iter().all(|a| a.ends_with("guid")));
        assert_eq!(
            binary_guid_filter(&format!("(OBJECTGUID={id})")),
            format!("(OBJECTGUID={bin})")
        );
        assert_eq!(
            binary_guid_filter(&format!("(&(objectClass=user)(objectGUID={id}))")),
            format!("(&(objectClass=user)(objectGUID={bin}))")
        );
        assert_eq!(
            binary_guid_filter(&format!("(|(objectguid={id})(OBJECTGUID={id}))")),
            format!("(|(objectguid={bin})(OBJECTGUID={bin}))")
        );
        // Not a GUID, or not objectGUID: untouched (and borrowed).
        for f in [
            "(objectGUID=not-a-guid)",
            "(uid=00112233-4455-6677-8899-aabbccddeeff)",
            "(objectGUID=*)",
            "(objectClass=*)",
        ] {
            assert!(matches!(binary_guid_filter(f), Cow::Borrowed(_)), "{f}");
        }
    }

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        assert_eq!(
            unicode_pwd("Ab1"),
            vec![b'"', 0, b'A', 0, b'b', 0, b'1', 0, b'"', 0]
        );
        assert_eq!(unicode_pwd("é"), vec![b'"', 0, 0xe9, 0, b'"', 0]);
    }

    #[test]
    fn ranges_are_parsed() {
        assert_eq!(
            parse_range("member;range=0-1499"),
            Some(("member", 0, Some(1499)))
        );
        assert_eq!(
            parse_range("member;Range=1500-*"),
            Some(("member", 1500, None))
        );
        assert_eq!(parse_range("member"), None);
        assert_eq!(parse_range("member;binary"), None);
        assert_eq!(parse_range("member;range=x-1"), None);
    }
}
