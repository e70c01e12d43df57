//! The Server Side Sorting request control (RFC 2891), which ldap3 does not provide.

use super::ber::{put, OCTET_STRING, SEQUENCE};
use crate::directory::capabilities::SERVER_SIDE_SORT;
use crate::directory::SortKey;
use ldap3::controls::RawControl;

/// `reverseOrder [1] BOOLEAN`: context-specific, primitive, tag number 1.
const REVERSE_ORDER: u8 = 0x81;

/// `SortKeyList ::= SEQUENCE OF SEQUENCE { attributeType, reverseOrder [1] BOOLEAN DEFAULT FALSE }`,
/// critical, so a server that cannot sort refuses instead of returning unsorted pages. The
/// default (ascending) is left out, as DER requires.
pub fn sort_control(key: &SortKey) -> RawControl {
    let mut one = Vec::with_capacity(key.attr.len() + 8);
    put(&mut one, OCTET_STRING, key.attr.as_bytes());
    if key.reverse {
        put(&mut one, REVERSE_ORDER, &[0xff]);
    }
    let mut keys = Vec::with_capacity(one.len() + 4);
    put(&mut keys, SEQUENCE, &one);
    let mut list = Vec::with_capacity(keys.len() + 4);
    put(&mut list, SEQUENCE, &keys);
    RawControl {
        ctype: SERVER_SIDE_SORT.to_string(),
        crit: true,
        val: Some(list),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_rfc_2891_sort_keys() {
        let c = sort_control(&SortKey {
            attr: "cn".into(),
            reverse: false,
        });
        assert_eq!(
            c.val.unwrap(),
            vec![0x30, 0x06, 0x30, 0x04, 0x04, 0x02, b'c', b'n']
        );
        let c = sort_control(&SortKey {
            attr: "cn".into(),
            reverse: true,
        });
        assert_eq!(
            c.val.unwrap(),
            vec![0x30, 0x09, 0x30, 0x07, 0x04, 0x02, b'c', b'n', 0x81, 0x01, 0xff]
        );
        assert!(c.crit);
        assert_eq!(c.ctype, SERVER_SIDE_SORT);
    }

    /// The same bytes as ldap3's general encoder gives for the same structure, also for names
    /// long enough to need the long form of a length.
    #[test]
    fn equals_ldap3s_encoding() {
        use ldap3::asn1::{write, ASNTag, Boolean, OctetString, Sequence, Tag, TagClass};
        for (attr, reverse) in [
            ("cn", false),
            ("displayName", true),
            (&"x".repeat(126)[..], true),
            (&"y".repeat(300)[..], false),
            (&"z".repeat(70_000)[..], true),
        ] {
            let mut inner = vec![Tag::OctetString(OctetString {
                inner: attr.as_bytes().to_vec(),
                ..Default::default()
            })];
            if reverse {
                inner.push(Tag::Boolean(Boolean {
                    class: TagClass::Context,
                    id: 1,
                    inner: true,
                }));
            }
            let list = Tag::Sequence(Sequence {
                inner: vec![Tag::Sequence(Sequence {
                    inner,
                    ..Default::default()
                })],
                ..Default::default()
            });
            let mut theirs = bytes::BytesMut::new();
            write::encode_into(&mut theirs, list.into_structure()).unwrap();
            let ours = sort_control(&SortKey {
                attr: attr.into(),
                reverse,
            });
            assert_eq!(
                ours.val.unwrap(),
                theirs.to_vec(),
                "{} {reverse}",
                attr.len()
            );
        }
    }
}
