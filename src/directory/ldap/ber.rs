//! The BER the gateway reads and writes itself, where ldap3's general tag tree costs more than
//! the structure is worth on every write: the entry in a post-read response control (RFC 4527:
//! the control value is a `SearchResultEntry`, RFC 4511 section 4.5.2), and the attribute list
//! of a post-read request control.
//!
//! ldap3 decodes the entry through its general tag tree and panics on a malformed value; this
//! reader walks the bytes once, borrows every string from them, and answers `None` for anything
//! that is not a well-formed entry, so the caller can read the entry back with a search instead.
//! LDAP allows only the definite length form (RFC 4511 section 5.1), and every tag here has a
//! number below 31, so both are all this module reads and writes.

/// `[APPLICATION 4]`, constructed: a SearchResultEntry.
const SEARCH_RESULT_ENTRY: u8 = 0x64;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// The DN of the SearchResultEntry encoded in `value`, and its attributes (each a
/// `PartialAttribute` SEQUENCE, read with `attribute`). Only the entry's outer structure is
/// checked here; each attribute is checked as it is read.
pub fn search_result_entry(value: &[u8]) -> Option<(&str, Elements<'_>)> {
    let entry = whole(value, SEARCH_RESULT_ENTRY)?;
    let (dn, rest) = element(entry, OCTET_STRING)?;
    let attributes = Elements::new(whole(rest, SEQUENCE)?, SEQUENCE);
    Some((std::str::from_utf8(dn).ok()?, attributes))
}

/// The name and the values of one `PartialAttribute` (the contents of its SEQUENCE).
pub fn attribute(contents: &[u8]) -> Option<(&str, Elements<'_>)> {
    let (name, rest) = element(contents, OCTET_STRING)?;
    let values = Elements::new(whole(rest, SET)?, OCTET_STRING);
    Some((std::str::from_utf8(name).ok()?, values))
}

/// The elements, each tagged `tag`, that fill some contents, read one at a time and borrowed:
/// each is `Some(contents)`, or `None` where the bytes are no such element (and nothing follows).
#[derive(Clone)]
pub struct Elements<'a> {
    rest: &'a [u8],
    tag: u8,
}

impl<'a> Elements<'a> {
    fn new(contents: &'a [u8], tag: u8) -> Self {
        Elements {
            rest: contents,
            tag,
        }
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let read = element(self.rest, self.tag);
        self.rest = read.map_or(&[], |(_, rest)| rest);
        Some(read.map(|(contents, _)| contents))
    }
}

/// The contents of the one element, tagged `tag`, that `input` holds with nothing after it.
fn whole(input: &[u8], tag: u8) -> Option<&[u8]> {
    let (contents, rest) = element(input, tag)?;
    rest.is_empty().then_some(contents)
}

/// The value of a pre- or post-read request control (RFC 4527 section 3.1): `AttributeSelection
/// ::= SEQUENCE OF selector LDAPString`, the same bytes as ldap3's `PostRead::new` writes.
pub fn attribute_selection(attrs: &[String]) -> Vec<u8> {
    let mut list = Vec::with_capacity(attrs.iter().map(|a| a.len() + 4).sum());
    for a in attrs {
        put(&mut list, OCTET_STRING, a.as_bytes());
    }
    let mut out = Vec::with_capacity(list.len() + 6);
    put(&mut out, SEQUENCE, &list);
    out
}

/// Appends the element tagged `tag` holding `contents`, its length in the shortest definite form.
pub(super) fn put(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let digits = len.to_be_bytes();
        let skip = digits.iter().take_while(|&&d| d == 0).count();
        out.push(0x80 | (digits.len() - skip) as u8);
        out.extend_from_slice(&digits[skip..]);
    }
    out.extend_from_slice(contents);
}

/// The contents of the element at the start of `input` if its tag is `tag`, and what follows it.
pub(super) fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, input) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len, mut input) = input.split_first()?;
    let len = if len < 0x80 {
        usize::from(len)
    } else {
        // Long form: the low bits say how many length octets follow (0x80 alone would be the
        // indefinite form, which LDAP forbids).
        let octets = usize::from(len & 0x7f);
        if octets == 0 || octets > std::mem::size_of::<u32>() || input.len() < octets {
            return None;
        }
        let (digits, rest) = input.split_at(octets);
        input = rest;
        digits
            .iter()
            .fold(0usize, |n, &d| (n << 8) | usize::from(d))
    };
    if input.len() < len {
        return None;
    }
    Some(input.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::{write, ASNTag, OctetString, Sequence, Set, Tag, TagClass};

    fn octets(b: &[u8]) -> Tag {
        Tag::OctetString(OctetString {
            inner: b.to_vec(),
            ..Default::default()
        })
    }

    /// The BER of a SearchResultEntry, written by ldap3's own encoder.
    fn encoded(dn: &str, attrs: &[(&str, &[&[u8]])]) -> Vec<u8> {
        let list = attrs
            .iter()
            .map(|(name, values)| {
                Tag::Sequence(Sequence {
                    inner: vec![
                        octets(name.as_bytes()),
                        Tag::Set(Set {
                            inner: values.iter().map(|v| octets(v)).collect(),
                            ..Default::default()
                        }),
                    ],
                    ..Default::default()
                })
            })
            .collect();
        let entry = Tag::Sequence(Sequence {
            id: 4,
            class: TagClass::Application,
            inner: vec![
                octets(dn.as_bytes()),
                Tag::Sequence(Sequence {
                    inner: list,
                    ..Default::default()
                }),
            ],
        });
        let mut buf = bytes::BytesMut::new();
        write::encode_into(&mut buf, entry.into_structure()).unwrap();
        buf.to_vec()
    }

    #[test]
    fn decodes_what_ldap3_encodes() {
        let long = vec![b'x'; 70_000];
        let guid: &[u8] = &[
            0xff, 0xfe, 0x00, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let bytes = encoded(
            "uid=a\\2cb,ou=people,dc=example,dc=org",
            &[
                ("uid", &[b"a,b"]),
                ("mail", &[b"a@example.org", b"b@example.org"]),
                ("description", &[&long]),
                ("objectGUID", &[guid]),
                ("empty", &[]),
            ],
        );
        let (dn, attrs) = search_result_entry(&bytes).unwrap();
        assert_eq!(dn, "uid=a\\2cb,ou=people,dc=example,dc=org");
        let attrs: Vec<(&str, Vec<&[u8]>)> = attrs
            .map(|a| {
                let (name, values) = attribute(a.unwrap()).unwrap();
                (name, values.collect::<Option<_>>().unwrap())
            })
            .collect();
        let names: Vec<&str> = attrs.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["uid", "mail", "description", "objectGUID", "empty"]);
        assert_eq!(attrs[1].1, [&b"a@example.org"[..], &b"b@example.org"[..]]);
        assert_eq!(attrs[2].1, [&long[..]]);
        assert_eq!(attrs[3].1, [guid]);
        assert!(attrs[4].1.is_empty());
    }

    #[test]
    fn attribute_selection_equals_ldap3s() {
        use ldap3::controls::PostRead;
        let long = "x".repeat(300);
        let many: Vec<String> = (0..40).map(|i| format!("attribute{i}")).collect();
        let cases: Vec<Vec<String>> = vec![
            vec![],
            vec!["uid".into()],
            vec![
                "uid".into(),
                "cn".into(),
                "entryUUID".into(),
                "modifyTimestamp".into(),
            ],
            vec![long.clone()],
            vec![long.clone(); 300],
            many,
        ];
        for attrs in cases {
            let theirs = PostRead::new(attrs.clone()).val.unwrap();
            assert_eq!(
                attribute_selection(&attrs),
                theirs,
                "{} attributes",
                attrs.len()
            );
            // And it reads back as what was written.
            let (list, rest) = element(&theirs, SEQUENCE).unwrap();
            assert!(rest.is_empty());
            let names: Vec<&[u8]> = Elements::new(list, OCTET_STRING)
                .collect::<Option<_>>()
                .unwrap();
            assert_eq!(
                names,
                attrs.iter().map(|a| a.as_bytes()).collect::<Vec<_>>()
            );
        }
    }

    /// The entry in `value` as the gateway keeps it, or `None` where any part is malformed.
    fn decoded(value: &[u8]) -> Option<crate::directory::Entry> {
        let (dn, attributes) = search_result_entry(value)?;
        crate::directory::ldap::entry_from_raw(dn.to_string(), attributes)
    }

    #[test]
    fn refuses_malformed_values_without_panicking() {
        let good = encoded("uid=a,dc=org", &[("cn", &[b"A"])]);
        assert!(decoded(&good).is_some());
        // Every truncation, and every single-byte change of a tag or length, is refused or
        // decoded within bounds; none panics.
        for cut in 0..good.len() {
            assert!(decoded(&good[..cut]).is_none(), "cut at {cut}");
        }
        for at in 0..good.len() {
            for b in [0x00, 0x7f, 0x80, 0x81, 0x84, 0x85, 0xff] {
                let mut bad = good.clone();
                bad[at] = b;
                let _ = decoded(&bad);
            }
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decoded(&trailing).is_none());
        // The indefinite length form and a length beyond the input.
        assert!(decoded(&[0x64, 0x80, 0, 0]).is_none());
        assert!(decoded(&[0x64, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        // An attribute whose values are not a SET, inside a well-framed entry.
        let mut not_a_set = good.clone();
        let at = not_a_set.iter().rposition(|&b| b == SET).unwrap();
        not_a_set[at] = SEQUENCE;
        assert!(search_result_entry(&not_a_set).is_some());
        assert!(decoded(&not_a_set).is_none());
        // Not a SearchResultEntry at all.
        assert!(decoded(&[0x30, 0x00]).is_none());
        assert!(decoded(&[]).is_none());
    }

    /// The entry the gateway made of ldap3's text and binary attributes before it decoded entries
    /// itself, the reference the tests below compare with: binary GUIDs become GUID text
    /// (wherever ldap3 put them: a GUID's bytes are sometimes valid UTF-8), other binary values
    /// are dropped.
    fn entry_from(
        dn: String,
        attrs: std::collections::HashMap<String, Vec<String>>,
        bin_attrs: std::collections::HashMap<String, Vec<Vec<u8>>>,
    ) -> crate::directory::Entry {
        use crate::directory::ldap::{push_binary, push_text};
        let mut out = std::collections::BTreeMap::new();
        for (k, v) in attrs {
            push_text(&mut out, k, v);
        }
        for (k, v) in bin_attrs {
            push_binary(&mut out, &k, v.iter().map(Vec::as_slice));
        }
        crate::directory::Entry { dn, attrs: out }
    }

    /// An attribute's name and values, as a test writes them.
    type Attribute = (&'static str, Vec<&'static [u8]>);

    /// Entries' attributes for comparing the gateway's decoding with ldap3's: text, GUIDs in
    /// either form, binary values, an empty value list, names in mixed case.
    fn entry_cases() -> Vec<Vec<Attribute>> {
        let guid: &[u8] = &[
            0xff, 0xfe, 0x00, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let utf8_guid: &[u8] = b"0123456789abcdef";
        vec![
            vec![],
            vec![("uid", vec![b"alice"]), ("cn", vec![b"Alice Liddell"])],
            vec![
                ("mail", vec![b"a@example.org", b"b@example.org"]),
                ("empty", vec![]),
            ],
            vec![("objectGUID", vec![guid]), ("entryUUID", vec![b"u-1"])],
            vec![("objectGUID", vec![utf8_guid]), ("objectSid", vec![guid])],
            vec![("jpegPhoto", vec![&[0xff, 0xd8, 0xff]]), ("sn", vec![b"L"])],
            vec![("description", vec![b"text", &[0xc3, 0x28]])],
            vec![
                ("Mail", vec![b"x@example.org"]),
                ("uid", vec!["\u{e9}l\u{e8}ve".as_bytes()]),
            ],
        ]
    }

    /// The gateway's entry from this reader equals the one from ldap3's decoding (which the
    /// gateway used before): text, GUIDs in either form, binary values dropped, names folded.
    #[test]
    fn entry_equals_ldap3s_decoding() {
        use crate::directory::ldap::entry_from_raw;
        use ldap3::controls::{PostReadResp, RawControl};
        for attrs in entry_cases() {
            let pairs: Vec<(&str, &[&[u8]])> =
                attrs.iter().map(|(n, v)| (*n, v.as_slice())).collect();
            let bytes = encoded("uid=a,ou=people,dc=example,dc=org", &pairs);
            let theirs: PostReadResp = RawControl {
                ctype: "1.3.6.1.1.13.2".into(),
                crit: false,
                val: Some(bytes.clone()),
            }
            .parse();
            let expected = entry_from("t".into(), theirs.attrs, theirs.bin_attrs);
            let (_, raw) = search_result_entry(&bytes).unwrap();
            assert_eq!(entry_from_raw("t".into(), raw), Some(expected), "{attrs:?}");
        }
    }

    /// A search's entries, read from ldap3's tag tree, equal ldap3's `SearchEntry` kept as the
    /// gateway kept it before; a tree that is no entry is refused instead of panicking.
    #[test]
    fn search_entries_equal_ldap3s_search_entries() {
        use crate::directory::ldap::entry_of_result;
        use ldap3::{ResultEntry, SearchEntry};
        let tree = |bytes: &[u8]| ldap3::asn1::parse_tag(bytes).unwrap().1;
        for attrs in entry_cases() {
            let pairs: Vec<(&str, &[&[u8]])> =
                attrs.iter().map(|(n, v)| (*n, v.as_slice())).collect();
            let bytes = encoded("uid=a,ou=people,dc=example,dc=org", &pairs);
            let theirs = SearchEntry::construct(ResultEntry::new(tree(&bytes)));
            let expected = entry_from(theirs.dn, theirs.attrs, theirs.bin_attrs);
            let ours = entry_of_result(ResultEntry::new(tree(&bytes)));
            assert_eq!(ours, Some(expected), "{attrs:?}");
        }
        // An octet string where the entry should be, and an entry without its attribute list.
        let not_entry = ldap3::asn1::StructureTag {
            class: ldap3::asn1::TagClass::Application,
            id: 4,
            payload: ldap3::asn1::PL::P(b"x".to_vec()),
        };
        assert_eq!(entry_of_result(ResultEntry::new(not_entry)), None);
        let mut short = tree(&encoded("uid=a", &[]));
        if let ldap3::asn1::PL::C(parts) = &mut short.payload {
            parts.truncate(1);
        }
        assert_eq!(entry_of_result(ResultEntry::new(short)), None);
    }
}
