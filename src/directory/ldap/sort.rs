//! The Server Side Sorting request control (RFC 2891), which ldap3 does not provide.

use crate::directory::SortKey;
use bytes::BytesMut;
use ldap3::asn1::{write, ASNTag, Boolean, OctetString, Sequence, Tag, TagClass};
use ldap3::controls::RawControl;

pub const SORT_REQUEST_OID: &str = "1.2.840.113556.1.4.473";

/// `SortKeyList ::= SEQUENCE OF SEQUENCE { attributeType, reverseOrder [1] BOOLEAN DEFAULT FALSE }`,
/// critical, so a server that cannot sort refuses instead of returning unsorted pages.
pub fn sort_control(key: &SortKey) -> RawControl {
    let mut inner = vec![Tag::OctetString(OctetString {
        inner: key.attr.as_bytes().to_vec(),
        ..Default::default()
    })];
    if key.reverse {
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
    let mut buf = BytesMut::new();
    // Encoding into memory cannot fail.
    let _ = write::encode_into(&mut buf, list.into_structure());
    RawControl {
        ctype: SORT_REQUEST_OID.to_string(),
        crit: true,
        val: Some(buf.to_vec()),
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
    }
}
