//! The LDAP relay: the least any gateway does for the match, run inside the bare HTTPS
//! responder's process (`bare.rs`) beside the thin proxy.
//!
//! For `GET /relay/…/Users?filter=userName eq "<name>"` it sends the match's own search (the
//! direct side's base, scope, filter and attributes) on a bound LDAP connection of its own,
//! lent to one request at a time as the gateway's search connections are. When slapd returns one
//! entry it answers with the bytes of the gateway's own answer to a match (captured once, so the
//! load generator reads as much as from the gateway), else with `{"totalResults":N}`. The
//! search's bytes are written by hand and slapd's answer is only framed (each message's length
//! and operation), never decoded.
//!
//! No token check, routing, filter parsing, mapping, decoding of the entry, rendering or
//! metrics: what remains is what no gateway can leave out, its HTTPS exchange and one LDAP
//! round trip from its own process, with slapd's answer waking it. Its rate against the direct
//! search bounds what any gateway can reach on this machine (one that answers the match from the
//! directory, that is: not from a cache of its own).

use crate::entra::PEOPLE;
use crate::proxy::ProxySettings;
use crate::slapd::SERVICE_DN;
use bytes::Bytes;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The relay's part of a responder.
pub struct Relay {
    address: String,
    password: String,
    /// The user filter's equality (`(objectClass=inetOrgPerson)`: attribute, value).
    class: (String, String),
    attributes: Vec<String>,
    /// The answer when slapd returns one entry.
    found: Bytes,
    idle: Mutex<Vec<Connection>>,
}

struct Connection {
    tcp: TcpStream,
    buffer: Vec<u8>,
    next_id: i32,
}

/// The path prefix the relay answers under.
pub const PREFIX: &str = "/relay";

impl Relay {
    pub fn new(settings: &ProxySettings) -> Result<Relay, String> {
        let address = settings
            .url
            .strip_prefix("ldap://")
            .ok_or_else(|| format!("relay: not an ldap:// URL: {}", settings.url))?
            .trim_end_matches('/')
            .to_string();
        let class = settings
            .user_filter
            .strip_prefix('(')
            .and_then(|f| f.strip_suffix(')'))
            .and_then(|f| f.split_once('='))
            .filter(|(a, v)| !a.contains(['(', '&', '|', '!']) && !v.contains(['(', '*']))
            .map(|(a, v)| (a.to_string(), v.to_string()))
            .ok_or_else(|| {
                format!(
                    "relay: the user filter {} is not one equality",
                    settings.user_filter
                )
            })?;
        Ok(Relay {
            address,
            password: settings.password.clone(),
            class,
            attributes: settings.user_read_attrs.clone(),
            found: Bytes::from(settings.match_answer.clone()),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The answer to `GET /relay/…/Users?<query>`.
    pub async fn find(&self, name: &str) -> (u16, Bytes) {
        let idle = self.idle.lock().expect("not poisoned").pop();
        let mut conn = match idle {
            Some(c) => c,
            None => match self.open().await {
                Ok(c) => c,
                Err(e) => return (503, Bytes::from(e)),
            },
        };
        match conn.search(&self.search(conn.next_id, name)).await {
            Ok(n) => {
                conn.next_id = conn.next_id.checked_add(1).unwrap_or(1);
                self.idle.lock().expect("not poisoned").push(conn);
                match n {
                    1 => (200, self.found.clone()),
                    n => (200, Bytes::from(format!("{{\"totalResults\":{n}}}"))),
                }
            }
            Err(e) => (503, Bytes::from(e)),
        }
    }

    async fn open(&self) -> Result<Connection, String> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("relay: connect {}: {e}", self.address))?;
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            tcp,
            buffer: Vec::with_capacity(4096),
            next_id: 2,
        };
        let mut bind = Vec::new();
        tlv(&mut bind, 0x02, &[3]);
        tlv(&mut bind, 0x04, SERVICE_DN.as_bytes());
        tlv(&mut bind, 0x80, self.password.as_bytes());
        let message = envelope(1, 0x60, &bind);
        conn.send(&message).await?;
        let (op, code) = conn.next().await?;
        if op != 0x61 || code != Some(0) {
            return Err(format!("relay: bind answered op {op:#x}, code {code:?}"));
        }
        Ok(conn)
    }

    /// The match's search for `name`, as message `id`.
    fn search(&self, id: i32, name: &str) -> Vec<u8> {
        let mut filter = Vec::new();
        equality(&mut filter, &self.class.0, &self.class.1);
        equality(&mut filter, "uid", name);
        let mut attributes = Vec::new();
        for a in &self.attributes {
            tlv(&mut attributes, 0x04, a.as_bytes());
        }
        let mut request = Vec::new();
        tlv(&mut request, 0x04, PEOPLE.as_bytes());
        tlv(&mut request, 0x0a, &[1]); // singleLevel
        tlv(&mut request, 0x0a, &[0]); // neverDerefAliases
        tlv(&mut request, 0x02, &[0]); // no size limit
        tlv(&mut request, 0x02, &[0]); // no time limit
        tlv(&mut request, 0x01, &[0]); // typesOnly FALSE
        tlv(&mut request, 0xa0, &filter); // and
        tlv(&mut request, 0x30, &attributes);
        envelope(id, 0x63, &request)
    }
}

impl Connection {
    async fn send(&mut self, message: &[u8]) -> Result<(), String> {
        self.tcp
            .write_all(message)
            .await
            .map_err(|e| format!("relay: write: {e}"))
    }

    /// Sends the search and reads its answer to the end: the number of entries.
    async fn search(&mut self, message: &[u8]) -> Result<usize, String> {
        self.send(message).await?;
        let mut entries = 0;
        loop {
            match self.next().await? {
                (0x64, _) => entries += 1,
                (0x65, Some(0)) => return Ok(entries),
                (op, code) => {
                    return Err(format!("relay: search answered op {op:#x}, code {code:?}"))
                }
            }
        }
    }

    /// The next message's operation tag and, for a result, its result code; the message is
    /// taken off the buffer.
    async fn next(&mut self) -> Result<(u8, Option<u8>), String> {
        loop {
            if let Some((end, op, code)) = frame(&self.buffer) {
                self.buffer.drain(..end);
                return Ok((op, code));
            }
            let read = self
                .tcp
                .read_buf(&mut self.buffer)
                .await
                .map_err(|e| format!("relay: read: {e}"))?;
            if read == 0 {
                return Err("relay: the directory closed the connection".into());
            }
        }
    }
}

/// A whole message at the start of `buffer`: its length, its operation's tag and, when the
/// operation is a result (its first element an ENUMERATED), the result code.
fn frame(buffer: &[u8]) -> Option<(usize, u8, Option<u8>)> {
    let (header, length) = length_at(buffer, 1)?;
    let end = 1 + header + length;
    if buffer.len() < end {
        return None;
    }
    let content = &buffer[1 + header..end];
    // The message id (an INTEGER), then the operation.
    let (id_header, id_length) = length_at(content, 1)?;
    let op_at = 1 + id_header + id_length;
    let op = *content.get(op_at)?;
    let (op_header, _) = length_at(content, op_at + 1)?;
    let first = content.get(op_at + 1 + op_header..)?;
    let code = match first {
        [0x0a, 0x01, code, ..] => Some(*code),
        _ => None,
    };
    Some((end, op, code))
}

/// The length at `at` in `bytes`: how many bytes it takes and its value.
fn length_at(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let first = *bytes.get(at)?;
    if first < 0x80 {
        return Some((1, first as usize));
    }
    let n = (first & 0x7f) as usize;
    let digits = bytes.get(at + 1..at + 1 + n)?;
    let value = digits.iter().fold(0usize, |v, d| (v << 8) | *d as usize);
    Some((1 + n, value))
}

fn tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let n = content.len();
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend([0x81, n as u8]),
        _ => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
}

fn equality(out: &mut Vec<u8>, attribute: &str, value: &str) {
    let mut content = Vec::new();
    tlv(&mut content, 0x04, attribute.as_bytes());
    tlv(&mut content, 0x04, value.as_bytes());
    tlv(out, 0xa3, &content);
}

/// An LDAPMessage: `id`, then the operation `op` holding `content`.
fn envelope(id: i32, op: u8, content: &[u8]) -> Vec<u8> {
    let bytes = id.to_be_bytes();
    // The shortest two's complement form of a positive id.
    let skip = bytes
        .windows(2)
        .take_while(|w| w[0] == 0 && w[1] < 0x80)
        .count();
    let mut message = Vec::new();
    tlv(&mut message, 0x02, &bytes[skip..]);
    tlv(&mut message, op, content);
    let mut out = Vec::new();
    tlv(&mut out, 0x30, &message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::{
        write, ASNTag, Boolean, Enumerated, Integer, OctetString, Sequence, Tag, TagClass,
    };

    /// ldap3's own encoding of a message, to hold the hand-written one against.
    fn ldap3_message(id: i64, op: Tag) -> Vec<u8> {
        let message = Tag::Sequence(Sequence {
            inner: vec![
                Tag::Integer(Integer {
                    inner: id,
                    ..Default::default()
                }),
                op,
            ],
            ..Default::default()
        });
        let mut out = bytes::BytesMut::new();
        write::encode_into(&mut out, message.into_structure()).unwrap();
        out.to_vec()
    }

    fn octets(b: &[u8]) -> Tag {
        Tag::OctetString(OctetString {
            inner: b.to_vec(),
            ..Default::default()
        })
    }

    #[test]
    fn the_search_is_the_one_ldap3_sends_for_the_direct_side() {
        let relay = Relay::new(&ProxySettings {
            url: "ldap://127.0.0.1:389".into(),
            password: String::new(),
            pool: 1,
            user_filter: "(objectClass=inetOrgPerson)".into(),
            user_read_attrs: vec!["uid".into(), "mail".into(), "entryUUID".into()],
            match_answer: String::new(),
        })
        .unwrap();
        let enumerated = |n| {
            Tag::Enumerated(Enumerated {
                inner: n,
                ..Default::default()
            })
        };
        let int = |n| {
            Tag::Integer(Integer {
                inner: n,
                ..Default::default()
            })
        };
        // What ldap3's `Ldap::search` sends: the direct side's base, one level, no aliases
        // dereferenced, no limits, values wanted, its filter and attributes.
        let search = Tag::Sequence(Sequence {
            id: 3,
            class: TagClass::Application,
            inner: vec![
                octets(PEOPLE.as_bytes()),
                enumerated(1),
                enumerated(0),
                int(0),
                int(0),
                Tag::Boolean(Boolean {
                    inner: false,
                    ..Default::default()
                }),
                ldap3::parse_filter("(&(objectClass=inetOrgPerson)(uid=bulk000042))").unwrap(),
                Tag::Sequence(Sequence {
                    inner: ["uid", "mail", "entryUUID"]
                        .iter()
                        .map(|a| octets(a.as_bytes()))
                        .collect(),
                    ..Default::default()
                }),
            ],
        });
        assert_eq!(relay.search(300, "bulk000042"), ldap3_message(300, search));
    }

    #[test]
    fn message_ids_are_encoded_as_ldap3_encodes_them() {
        for id in [1, 127, 128, 255, 256, 32_767, 32_768, 8_388_608, i32::MAX] {
            let op = Tag::OctetString(OctetString {
                class: ldap3::asn1::TagClass::Application,
                id: 10,
                inner: b"x".to_vec(),
            });
            assert_eq!(
                envelope(id, 0x4a, b"x"),
                ldap3_message(id as i64, op),
                "id {id}"
            );
        }
    }

    #[test]
    fn long_contents_take_long_form_lengths() {
        for n in [0usize, 127, 128, 255, 256, 1000] {
            let mut out = Vec::new();
            tlv(&mut out, 0x04, &vec![b'a'; n]);
            let (header, length) = length_at(&out, 1).unwrap();
            assert_eq!(length, n);
            assert_eq!(out.len(), 1 + header + n);
        }
    }

    #[test]
    fn frames_whole_messages_only() {
        // A searchResultDone with success, message id 300, and a referral-less result.
        let mut done = Vec::new();
        tlv(&mut done, 0x0a, &[0]);
        tlv(&mut done, 0x04, b"");
        tlv(&mut done, 0x04, b"");
        let message = envelope(300, 0x65, &done);
        assert_eq!(frame(&message), Some((message.len(), 0x65, Some(0))));
        for cut in 0..message.len() {
            assert_eq!(frame(&message[..cut]), None, "cut at {cut}");
        }
        // An entry is framed with no result code; what follows it is left alone.
        let mut entry = Vec::new();
        tlv(&mut entry, 0x04, b"uid=a,ou=people,dc=example,dc=org");
        tlv(&mut entry, 0x30, &[]);
        let mut two = envelope(300, 0x64, &entry);
        let first = two.len();
        two.extend(&message);
        assert_eq!(frame(&two), Some((first, 0x64, None)));
        // A failed result keeps its code.
        let mut refused = Vec::new();
        tlv(&mut refused, 0x0a, &[49]);
        assert_eq!(
            frame(&envelope(1, 0x61, &refused)).map(|f| f.2),
            Some(Some(49))
        );
    }

    #[test]
    fn reads_the_equality_of_the_user_filter_only() {
        let settings = |filter: &str| ProxySettings {
            url: "ldap://127.0.0.1:389".into(),
            password: String::new(),
            pool: 1,
            user_filter: filter.into(),
            user_read_attrs: vec!["uid".into()],
            match_answer: String::new(),
        };
        let relay = Relay::new(&settings("(objectClass=inetOrgPerson)")).unwrap();
        assert_eq!(relay.class, ("objectClass".into(), "inetOrgPerson".into()));
        assert_eq!(relay.address, "127.0.0.1:389");
        assert!(Relay::new(&settings("(&(objectClass=a)(b=c))")).is_err());
        assert!(Relay::new(&settings("(cn=a*)")).is_err());
        let mut ldaps = settings("(objectClass=a)");
        ldaps.url = "ldaps://127.0.0.1:636".into();
        assert!(Relay::new(&ldaps).is_err());
    }
}
