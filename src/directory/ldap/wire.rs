//! Search connections the gateway speaks itself: a bound LDAP connection that one request at a
//! time uses for one plain search (no controls), writing the request and reading the answer in
//! its own task.
//!
//! ldap3 sends every request through its connection's task, as a tag tree it encodes there, and
//! decodes every answer into a tag tree it hands back through a channel; for Entra's match, a
//! one-entry search repeated for every user, that machinery costs more CPU than the rest of the
//! request's directory work. Here the search is written straight into a buffer (the filter by
//! `filter_ber`), the answer is read in place (`ber`), and no other task is woken.
//!
//! These connections are an optimisation, never a requirement: a search the gateway cannot
//! encode, or that finds no idle connection, or whose connection fails before its answer, goes
//! through ldap3's pool instead (a search changes nothing, so sending it again is safe). The
//! protocol is RFC 4511's: a simple bind (section 4.2), StartTLS (section 4.14), a search
//! (section 4.5) and its entries, references and result.

use super::ber::{self, put, OCTET_STRING, SEQUENCE};
use crate::directory::Entry;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INTEGER: u8 = 0x02;
const BOOLEAN: u8 = 0x01;
const ENUMERATED: u8 = 0x0a;
const BIND_REQUEST: u8 = 0x60;
const BIND_RESPONSE: u8 = 0x61;
const SEARCH_REQUEST: u8 = 0x63;
const SEARCH_RESULT_ENTRY: u8 = 0x64;
const SEARCH_RESULT_DONE: u8 = 0x65;
const SEARCH_RESULT_REFERENCE: u8 = 0x73;
const EXTENDED_REQUEST: u8 = 0x77;
const EXTENDED_RESPONSE: u8 = 0x78;
const INTERMEDIATE_RESPONSE: u8 = 0x79;
/// `[0]` primitive: the simple bind's password, and the extended request's name.
const CONTEXT_0: u8 = 0x80;
const STARTTLS_OID: &[u8] = b"1.3.6.1.4.1.1466.20037";

/// The largest answer message read: an entry with a 100,000-value attribute fits many times.
const MAX_MESSAGE: usize = 64 << 20;

/// What an idle connection keeps of its read buffer: after a larger answer (a big group) the
/// buffer is given back, so that up to `search_connections` idle ones do not each hold the
/// largest answer they ever read.
const KEPT_BUFFER: usize = 64 << 10;

/// How a search connection reaches its server.
#[derive(Clone)]
pub enum Transport {
    Plain,
    /// `ldaps://`: TLS from the first byte.
    Tls(Arc<rustls::ClientConfig>),
    /// `ldap://` upgraded with StartTLS before the bind.
    StartTls(Arc<rustls::ClientConfig>),
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// While the TCP stream is being wrapped in TLS, and after that failed.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection's TLS set-up failed",
    )
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Stream::Gone => Err(gone()),
        }
    }

    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read_buf(buf).await,
            Stream::Tls(s) => s.read_buf(buf).await,
            Stream::Gone => Err(gone()),
        }
    }
}

/// An LDAP result: its code and texts (RFC 4511 section 4.1.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub rc: u32,
    pub matched: String,
    pub text: String,
}

/// What a search connection failed on. Any of these leaves the connection unusable.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the directory sent a message that is not LDAP: {0}")]
    Protocol(&'static str),
    #[error("the directory answered {0:?}")]
    Refused(Outcome),
}

/// One bound connection for plain searches.
pub struct SearchConn {
    stream: Stream,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// Where the unread bytes start in `buf`.
    start: usize,
    next_id: i32,
    /// The index of the server (in the pool's list) this connection reaches.
    pub server: usize,
}

/// A search, ready to send: everything but the message id, encoded once.
pub struct Search {
    op: Vec<u8>,
}

impl Search {
    /// The search for `filter` (RFC 4515 text) under `base` with `scope` (0 base, 1 one level,
    /// 2 subtree), returning `attrs`, at most `size_limit` entries (0: the server's limit);
    /// `None` where the gateway's filter writer leaves the filter to ldap3.
    pub fn new(
        base: &str,
        scope: u8,
        filter: &str,
        attrs: &[String],
        size_limit: i32,
    ) -> Option<Search> {
        let filter = super::filter_ber::encode(filter)?;
        let mut body = Vec::with_capacity(base.len() + filter.len() + attrs.len() * 16 + 32);
        put(&mut body, OCTET_STRING, base.as_bytes());
        put(&mut body, ENUMERATED, &[scope]);
        // derefAliases: neverDerefAliases, as ldap3 sends it.
        put(&mut body, ENUMERATED, &[0]);
        put_integer(&mut body, INTEGER, size_limit);
        put_integer(&mut body, INTEGER, 0);
        put(&mut body, BOOLEAN, &[0]);
        body.extend_from_slice(&filter);
        let mut list = Vec::with_capacity(attrs.iter().map(|a| a.len() + 2).sum());
        for a in attrs {
            put(&mut list, OCTET_STRING, a.as_bytes());
        }
        put(&mut body, SEQUENCE, &list);
        let mut op = Vec::with_capacity(body.len() + 6);
        put(&mut op, SEARCH_REQUEST, &body);
        Some(Search { op })
    }
}

/// Appends an INTEGER (or ENUMERATED) element in the fewest two's-complement octets.
fn put_integer(out: &mut Vec<u8>, tag: u8, n: i32) {
    let bytes = n.to_be_bytes();
    let mut skip = 0;
    while skip < 3 {
        let (b, next) = (bytes[skip], bytes[skip + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            skip += 1;
        } else {
            break;
        }
    }
    put(out, tag, &bytes[skip..]);
}

/// The value of an INTEGER's contents, if it fits an `i64`.
fn integer(contents: &[u8]) -> Option<i64> {
    if contents.is_empty() || contents.len() > 8 {
        return None;
    }
    let first = i64::from(contents[0] as i8);
    Some(
        contents[1..]
            .iter()
            .fold(first, |n, &b| (n << 8) | i64::from(b)),
    )
}

/// An LDAPMessage envelope around `op` with message id `id`.
fn message(id: i32, op: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(op.len() + 6);
    put_integer(&mut body, INTEGER, id);
    body.extend_from_slice(op);
    let mut out = Vec::with_capacity(body.len() + 6);
    put(&mut out, SEQUENCE, &body);
    out
}

/// The contents of the LDAPResult that `contents` starts with.
fn outcome(contents: &[u8]) -> Option<Outcome> {
    let (rc, rest) = ber::element(contents, ENUMERATED)?;
    let (matched, rest) = ber::element(rest, OCTET_STRING)?;
    let (text, _) = ber::element(rest, OCTET_STRING)?;
    Some(Outcome {
        rc: u32::try_from(integer(rc)?).ok()?,
        matched: String::from_utf8_lossy(matched).into_owned(),
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

/// The length of the complete element at the start of `input`, header included; `Ok(None)`
/// while more bytes are needed.
fn frame_length(input: &[u8]) -> Result<Option<usize>, WireError> {
    if input.len() < 2 {
        return Ok(None);
    }
    if input[0] != SEQUENCE {
        return Err(WireError::Protocol("a message is not a SEQUENCE"));
    }
    let len = input[1];
    let (header, len) = if len < 0x80 {
        (2, usize::from(len))
    } else {
        let octets = usize::from(len & 0x7f);
        if octets == 0 || octets > 4 {
            return Err(WireError::Protocol("a message length is not definite"));
        }
        if input.len() < 2 + octets {
            return Ok(None);
        }
        let n = input[2..2 + octets]
            .iter()
            .fold(0usize, |n, &d| (n << 8) | usize::from(d));
        (2 + octets, n)
    };
    if len > MAX_MESSAGE {
        return Err(WireError::Protocol("a message is larger than 64 MiB"));
    }
    Ok((input.len() >= header + len).then_some(header + len))
}

impl SearchConn {
    /// Connect to `address` (`host:port`) for the server at index `server`, by `transport`, and
    /// bind as `bind_dn`. The caller bounds the time.
    pub async fn open(
        address: &str,
        host: &str,
        transport: &Transport,
        bind_dn: &str,
        password: &str,
        server: usize,
    ) -> Result<SearchConn, WireError> {
        let tcp = TcpStream::connect(address).await?;
        tcp.set_nodelay(true)?;
        let mut conn = SearchConn {
            stream: Stream::Plain(tcp),
            buf: Vec::with_capacity(4096),
            start: 0,
            next_id: 1,
            server,
        };
        match transport {
            Transport::Plain => {}
            Transport::Tls(config) => conn.upgrade(config, host).await?,
            Transport::StartTls(config) => {
                let mut op = Vec::new();
                put(&mut op, CONTEXT_0, STARTTLS_OID);
                let mut request = Vec::new();
                put(&mut request, EXTENDED_REQUEST, &op);
                let id = conn.send(&request).await?;
                let answer = conn.result(id, EXTENDED_RESPONSE).await?;
                if answer.rc != 0 {
                    return Err(WireError::Refused(answer));
                }
                // Nothing may follow the answer in plaintext (RFC 4511 section 4.14.2): bytes
                // here would be read as if they had come through TLS.
                if conn.start != conn.buf.len() {
                    return Err(WireError::Protocol("plaintext after the StartTLS answer"));
                }
                conn.upgrade(config, host).await?;
            }
        }
        let mut bind = Vec::with_capacity(bind_dn.len() + password.len() + 16);
        put_integer(&mut bind, INTEGER, 3);
        put(&mut bind, OCTET_STRING, bind_dn.as_bytes());
        put(&mut bind, CONTEXT_0, password.as_bytes());
        let mut request = Vec::with_capacity(bind.len() + 6);
        put(&mut request, BIND_REQUEST, &bind);
        let id = conn.send(&request).await?;
        let answer = conn.result(id, BIND_RESPONSE).await?;
        if answer.rc != 0 {
            return Err(WireError::Refused(answer));
        }
        Ok(conn)
    }

    /// Wrap the TCP stream in TLS, checking the certificate against `host`.
    async fn upgrade(
        &mut self,
        config: &Arc<rustls::ClientConfig>,
        host: &str,
    ) -> Result<(), WireError> {
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| WireError::Protocol("the server's host name is no TLS server name"))?;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(WireError::Protocol("TLS started twice"));
        };
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Drop the bytes read (there are none after a whole answer, unless the server sent more
    /// unasked) and give back a buffer grown beyond `KEPT_BUFFER`.
    fn release_buffer(&mut self) {
        self.buf.drain(..self.start);
        self.start = 0;
        if self.buf.capacity() > KEPT_BUFFER {
            self.buf.shrink_to(KEPT_BUFFER.max(self.buf.len()));
        }
    }

    /// Send `op` in a new message; its id.
    async fn send(&mut self, op: &[u8]) -> Result<i32, WireError> {
        let id = self.next_id;
        self.next_id = if id == i32::MAX { 1 } else { id + 1 };
        self.stream.write_all(&message(id, op)).await?;
        Ok(id)
    }

    /// The next whole message's bytes (its range in `buf`), reading as needed.
    async fn next_message(&mut self) -> Result<std::ops::Range<usize>, WireError> {
        loop {
            if let Some(len) = frame_length(&self.buf[self.start..])? {
                let range = self.start..self.start + len;
                self.start += len;
                return Ok(range);
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        }
    }

    /// The result of the next message, which must answer `id` with a `tag` result.
    async fn result(&mut self, id: i32, tag: u8) -> Result<Outcome, WireError> {
        let range = self.next_message().await?;
        let (msg_id, op) = envelope(&self.buf[range])?;
        if msg_id != i64::from(id) {
            return Err(WireError::Protocol("an answer to another message"));
        }
        let (contents, _) =
            ber::element(op, tag).ok_or(WireError::Protocol("an unexpected answer"))?;
        outcome(contents).ok_or(WireError::Protocol("a malformed result"))
    }

    /// Send `search` and read its entries (references and intermediate answers left out) and
    /// result. An entry that does not decode fails the search as malformed.
    pub async fn search(&mut self, search: &Search) -> Result<(Vec<Entry>, Outcome), WireError> {
        let id = self.send(&search.op).await?;
        let mut entries = Vec::new();
        loop {
            let range = self.next_message().await?;
            let (msg_id, op) = envelope(&self.buf[range])?;
            if msg_id != i64::from(id) {
                return Err(WireError::Protocol("an answer to another message"));
            }
            match op.first() {
                Some(&SEARCH_RESULT_ENTRY) => {
                    let (whole, _) = split_element(op)?;
                    let entry = ber::search_result_entry(whole)
                        .and_then(|(dn, attrs)| super::entry_from_raw(dn.to_string(), attrs))
                        .ok_or(WireError::Protocol("a malformed search result entry"))?;
                    entries.push(entry);
                }
                Some(&SEARCH_RESULT_REFERENCE | &INTERMEDIATE_RESPONSE) => {}
                Some(&SEARCH_RESULT_DONE) => {
                    let (contents, _) = ber::element(op, SEARCH_RESULT_DONE)
                        .ok_or(WireError::Protocol("a malformed search result"))?;
                    let done =
                        outcome(contents).ok_or(WireError::Protocol("a malformed result"))?;
                    self.release_buffer();
                    return Ok((entries, done));
                }
                _ => return Err(WireError::Protocol("an unexpected answer to a search")),
            }
        }
    }
}

/// The element at the start of `input` (header included) and what follows it.
fn split_element(input: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let tag = *input
        .first()
        .ok_or(WireError::Protocol("an empty message"))?;
    let (contents, rest) =
        ber::element(input, tag).ok_or(WireError::Protocol("a malformed element"))?;
    let end = input.len() - rest.len();
    debug_assert!(end >= contents.len());
    Ok(input.split_at(end))
}

/// The message id and the protocol operation (with anything after it) of a whole LDAPMessage.
/// A notice of disconnection (message id 0) ends the connection.
fn envelope(message: &[u8]) -> Result<(i64, &[u8]), WireError> {
    let (body, _) =
        ber::element(message, SEQUENCE).ok_or(WireError::Protocol("a malformed message"))?;
    let (id, op) =
        ber::element(body, INTEGER).ok_or(WireError::Protocol("a message without an id"))?;
    let id = integer(id).ok_or(WireError::Protocol("a message id out of range"))?;
    if id == 0 {
        return Err(WireError::Protocol("an unsolicited notification"));
    }
    Ok((id, op))
}

#[cfg(test)]
mod tests {
    //! The bytes the gateway writes are compared with ldap3's own encoder (the requests ldap3
    //! would have sent), and the reader runs against a scripted directory on a loopback socket:
    //! answers in tiny pieces and all at once, over plain TCP and TLS, and every way an answer
    //! can be wrong.

    use super::*;
    use ldap3::asn1::{
        write, ASNTag, Boolean, Enumerated, Integer, OctetString, Sequence, Set, StructureTag, Tag,
        TagClass, PL,
    };
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::time::Duration;
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::net::TcpListener;

    const BIND_DN: &str = "cn=gateway,ou=services,dc=example,dc=org";
    /// Not ASCII: the password goes out as its UTF-8 bytes.
    const PASSWORD: &str = "s3cr\u{e9}t p\u{e4}ss";
    /// An `objectGUID` that is not UTF-8, and its GUID text (first three groups little-endian).
    const GUID: &[u8] = &[
        0xff, 0xfe, 0x00, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    const GUID_TEXT: &str = "8000feff-0201-0403-0506-0708090a0b0c";
    /// An `objectGUID` whose bytes happen to be UTF-8, and its GUID text.
    const UTF8_GUID: &[u8] = b"0123456789abcdef";
    const UTF8_GUID_TEXT: &str = "33323130-3534-3736-3839-616263646566";

    // ---- ldap3's encoder: the reference bytes ----

    /// ldap3's BER of `tag`.
    fn ldap3_bytes(tag: Tag) -> Vec<u8> {
        let mut buf = bytes::BytesMut::new();
        write::encode_into(&mut buf, tag.into_structure()).unwrap();
        buf.to_vec()
    }

    fn octets(b: &[u8]) -> Tag {
        Tag::OctetString(OctetString {
            inner: b.to_vec(),
            ..Default::default()
        })
    }

    fn int(n: i64) -> Tag {
        Tag::Integer(Integer {
            inner: n,
            ..Default::default()
        })
    }

    fn enumerated(n: i64) -> Tag {
        Tag::Enumerated(Enumerated {
            inner: n,
            ..Default::default()
        })
    }

    /// A constructed `[APPLICATION id]` element: a protocol operation.
    fn app(id: u64, inner: Vec<Tag>) -> Tag {
        Tag::Sequence(Sequence {
            id,
            class: TagClass::Application,
            inner,
        })
    }

    fn seq(inner: Vec<Tag>) -> Tag {
        Tag::Sequence(Sequence {
            inner,
            ..Default::default()
        })
    }

    /// An LDAPMessage as ldap3's codec writes it: the id, then the operation.
    fn ldap3_message(id: i64, op: Tag) -> Vec<u8> {
        ldap3_bytes(seq(vec![int(id), op]))
    }

    /// An LDAPMessage with a `[0] Controls` list after its operation (one paged-results control).
    fn ldap3_message_with_control(id: i64, op: Tag) -> Vec<u8> {
        let control = seq(vec![
            octets(b"1.2.840.113556.1.4.319"),
            octets(&ldap3_bytes(seq(vec![int(0), octets(b"")]))),
        ]);
        let controls = Tag::StructureTag(StructureTag {
            id: 0,
            class: TagClass::Context,
            payload: PL::C(vec![control.into_structure()]),
        });
        ldap3_bytes(seq(vec![int(id), op, controls]))
    }

    /// The SearchRequest ldap3's `Ldap::search` sends with default options (no aliases
    /// dereferenced, no time limit, values wanted).
    fn ldap3_search(base: &str, scope: i64, filter: &str, attrs: &[&str], size: i32) -> Tag {
        app(
            3,
            vec![
                octets(base.as_bytes()),
                enumerated(scope),
                enumerated(0),
                int(size.into()),
                int(0),
                Tag::Boolean(Boolean {
                    inner: false,
                    ..Default::default()
                }),
                ldap3::parse_filter(filter).unwrap(),
                seq(attrs.iter().map(|a| octets(a.as_bytes())).collect()),
            ],
        )
    }

    /// The simple BindRequest ldap3's `Ldap::simple_bind` sends.
    fn ldap3_bind(dn: &str, password: &str) -> Tag {
        app(
            0,
            vec![
                int(3),
                octets(dn.as_bytes()),
                Tag::OctetString(OctetString {
                    id: 0,
                    class: TagClass::Context,
                    inner: password.as_bytes().to_vec(),
                }),
            ],
        )
    }

    /// The StartTLS ExtendedRequest ldap3 sends (`[0]` requestName, no value).
    fn ldap3_starttls() -> Tag {
        app(
            23,
            vec![Tag::OctetString(OctetString {
                id: 0,
                class: TagClass::Context,
                inner: STARTTLS_OID.to_vec(),
            })],
        )
    }

    /// An operation made of an LDAPResult alone, `[APPLICATION id]`: 1 bind, 5 search done,
    /// 7 modify, 24 extended.
    fn result_op(id: u64, rc: i64, matched: &str, text: &str) -> Tag {
        app(
            id,
            vec![
                enumerated(rc),
                octets(matched.as_bytes()),
                octets(text.as_bytes()),
            ],
        )
    }

    fn bind_ok(id: i64) -> Vec<u8> {
        ldap3_message(id, result_op(1, 0, "", ""))
    }

    fn done(id: i64, rc: i64, matched: &str, text: &str) -> Vec<u8> {
        ldap3_message(id, result_op(5, rc, matched, text))
    }

    /// A SearchResultEntry: `[APPLICATION 4] { objectName, attributes }`.
    fn entry_op(dn: &str, attrs: &[(&str, &[&[u8]])]) -> Tag {
        let list = attrs
            .iter()
            .map(|(name, values)| {
                seq(vec![
                    octets(name.as_bytes()),
                    Tag::Set(Set {
                        inner: values.iter().map(|v| octets(v)).collect(),
                        ..Default::default()
                    }),
                ])
            })
            .collect();
        app(4, vec![octets(dn.as_bytes()), seq(list)])
    }

    /// A SearchResultReference: `[APPLICATION 19] SEQUENCE OF URI`.
    fn reference_op(uris: &[&str]) -> Tag {
        app(19, uris.iter().map(|u| octets(u.as_bytes())).collect())
    }

    /// An IntermediateResponse (`[APPLICATION 25]`) with a `[0]` responseName.
    fn intermediate_op() -> Tag {
        app(
            25,
            vec![Tag::OctetString(OctetString {
                id: 0,
                class: TagClass::Context,
                inner: b"1.3.6.1.4.1.4203.1.9.1.4".to_vec(),
            })],
        )
    }

    /// A notice of disconnection (RFC 4511 section 4.4.1): message id 0, an ExtendedResponse
    /// (`0x78`) with rc unavailable and the notice's `[10]` responseName.
    fn notice_of_disconnection() -> Vec<u8> {
        let mut op = match result_op(24, 52, "", "the server is shutting down") {
            Tag::Sequence(s) => s,
            _ => unreachable!(),
        };
        op.inner.push(Tag::OctetString(OctetString {
            id: 10,
            class: TagClass::Context,
            inner: b"1.3.6.1.4.1.1466.20036".to_vec(),
        }));
        let bytes = ldap3_message(0, Tag::Sequence(op));
        assert_eq!(bytes[5], EXTENDED_RESPONSE);
        bytes
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> Entry {
        Entry {
            dn: dn.to_string(),
            attrs: attrs
                .iter()
                .map(|(name, values)| (name.to_string(), strings(values)))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    // ---- INTEGER ----

    /// `put_integer`'s contents for `n`.
    fn integer_contents(n: i32) -> Vec<u8> {
        let mut out = Vec::new();
        put_integer(&mut out, INTEGER, n);
        assert_eq!(out[0], INTEGER, "{n}");
        assert_eq!(usize::from(out[1]), out.len() - 2, "{n}");
        out[2..].to_vec()
    }

    /// The values at the edges of every octet count, with their contents as X.690 section 8.3
    /// writes them (two's complement, no redundant leading 0x00 or 0xff octet).
    const INTEGERS: &[(i32, &[u8])] = &[
        (0, &[0x00]),
        (1, &[0x01]),
        (127, &[0x7f]),
        (128, &[0x00, 0x80]),
        (255, &[0x00, 0xff]),
        (256, &[0x01, 0x00]),
        (32767, &[0x7f, 0xff]),
        (32768, &[0x00, 0x80, 0x00]),
        (65535, &[0x00, 0xff, 0xff]),
        (65536, &[0x01, 0x00, 0x00]),
        (8_388_607, &[0x7f, 0xff, 0xff]),
        (8_388_608, &[0x00, 0x80, 0x00, 0x00]),
        (-1, &[0xff]),
        (-128, &[0x80]),
        (-129, &[0xff, 0x7f]),
        (-255, &[0xff, 0x01]),
        (-256, &[0xff, 0x00]),
        (-32768, &[0x80, 0x00]),
        (-32769, &[0xff, 0x7f, 0xff]),
        (-8_388_608, &[0x80, 0x00, 0x00]),
        (-8_388_609, &[0xff, 0x7f, 0xff, 0xff]),
        (i32::MAX, &[0x7f, 0xff, 0xff, 0xff]),
        (i32::MIN, &[0x80, 0x00, 0x00, 0x00]),
    ];

    /// Negative values lber 0.5.1 (ldap3's encoder) writes one octet short, sizing them by
    /// their magnitude: -129 as `7f` (127), -255 as `01`, -32769 as `7f ff`. The gateway never
    /// sends a negative INTEGER, so for these the X.690 bytes above are the reference.
    fn ldap3_miswrites(n: i32) -> bool {
        let magnitude = n.unsigned_abs();
        n < 0 && !magnitude.is_power_of_two() && magnitude.leading_zeros() % 8 == 0
    }

    #[test]
    fn put_integer_writes_x690s_shortest_form_as_ldap3_does() {
        for &(n, contents) in INTEGERS {
            assert_eq!(integer_contents(n), contents, "{n}");
            let mut ours = Vec::new();
            put_integer(&mut ours, INTEGER, n);
            let theirs = ldap3_bytes(int(n.into()));
            if ldap3_miswrites(n) {
                assert_ne!(ours, theirs, "lber writes {n} correctly now: compare it");
            } else {
                assert_eq!(ours, theirs, "{n}");
            }
            // As ENUMERATED, the same contents under the other tag.
            let mut e = Vec::new();
            put_integer(&mut e, ENUMERATED, n);
            assert_eq!(e[0], ENUMERATED);
            assert_eq!(e[1..], ours[1..], "{n}");
        }
        // -129 and -32769 are among the ones lber gets wrong (the reason for the exception).
        assert!(ldap3_miswrites(-129) && ldap3_miswrites(-32769));
        assert!(!ldap3_miswrites(-128) && !ldap3_miswrites(-32768) && !ldap3_miswrites(i32::MIN));
    }

    /// Around every power of two, the contents are the value's last octets, as many as the
    /// smallest two's-complement width that holds it (an oracle independent of the
    /// implementation's loop), and read back as the value.
    #[test]
    fn put_integer_is_shortest_and_reads_back_around_every_power_of_two() {
        let mut values = vec![0i64, i64::from(i32::MAX), i64::from(i32::MIN)];
        for k in 0..32 {
            for d in [-1, 0, 1] {
                values.push((1i64 << k) + d);
                values.push(-(1i64 << k) + d);
            }
        }
        for n in values {
            let Ok(n) = i32::try_from(n) else { continue };
            let width = (1..=4)
                .find(|&w| {
                    let half = 1i64 << (8 * w - 1);
                    (-half..half).contains(&i64::from(n))
                })
                .unwrap();
            let contents = integer_contents(n);
            assert_eq!(contents, n.to_be_bytes()[4 - width..], "{n}");
            assert_eq!(integer(&contents), Some(i64::from(n)), "{n}");
        }
    }

    #[test]
    fn integer_reads_two_complement_values_up_to_eight_octets() {
        for &(n, contents) in INTEGERS {
            assert_eq!(integer(contents), Some(i64::from(n)), "{n}");
        }
        // Redundant leading octets are read, not refused.
        assert_eq!(integer(&[0x00, 0x00, 0x01]), Some(1));
        assert_eq!(integer(&[0xff, 0xff]), Some(-1));
        assert_eq!(
            integer(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Some(i64::MAX)
        );
        assert_eq!(integer(&[0x80, 0, 0, 0, 0, 0, 0, 0]), Some(i64::MIN));
        assert_eq!(integer(&[0x01, 0, 0, 0, 0]), Some(1 << 32));
        assert_eq!(integer(&[]), None);
        assert_eq!(integer(&[0; 9]), None);
        assert_eq!(integer(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    // ---- the search request ----

    /// `Search::new` wrapped by `message` against ldap3's LDAPMessage for the same search.
    fn assert_search_is_ldap3s(
        id: i32,
        base: &str,
        scope: u8,
        filter: &str,
        attrs: &[&str],
        size: i32,
    ) {
        let search = Search::new(base, scope, filter, &strings(attrs), size)
            .unwrap_or_else(|| panic!("not written by the gateway: {filter}"));
        let expected = ldap3_message(
            id.into(),
            ldap3_search(base, scope.into(), filter, attrs, size),
        );
        assert_eq!(
            message(id, &search.op),
            expected,
            "id {id}, {filter}, size limit {size}"
        );
    }

    #[test]
    fn search_messages_are_ldap3s() {
        let five = ["uid", "cn", "mail", "objectGUID", "memberOf"];
        for id in [1, 127, 128, 200, 255, 256, 65535, 65536, 70_000, i32::MAX] {
            assert_search_is_ldap3s(
                id,
                "ou=people,dc=example,dc=org",
                1,
                "(&(objectClass=inetOrgPerson)(uid=alice))",
                &five,
                1,
            );
            assert_search_is_ldap3s(
                id,
                "uid=alice,ou=people,dc=example,dc=org",
                0,
                "(objectClass=*)",
                &[],
                0,
            );
            assert_search_is_ldap3s(id, "dc=example,dc=org", 2, "(cn=a\\2ab)", &["cn"], 200);
        }
        // Size limits that take two, three and four octets; the root DSE's empty base.
        for size in [127, 128, 1000, 65536, i32::MAX] {
            assert_search_is_ldap3s(2, "", 2, "(uid=*)", &["uid"], size);
        }
        // Lengths in the long form at every level: a long base, a long filter value, many
        // attributes.
        let base = format!("ou={},dc=example,dc=org", "x".repeat(300));
        let filter = format!(
            "(&(objectClass=person)(description={}))",
            "y".repeat(70_000)
        );
        let many: Vec<String> = (0..300).map(|i| format!("attribute{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_search_is_ldap3s(9, &base, 2, &filter, &many, 500);
    }

    #[test]
    fn search_escapes_are_resolved_into_the_filter_bytes() {
        // `\2a` is the byte `*`, inside an equality value: no substrings filter.
        let search = Search::new("dc=org", 2, "(cn=a\\2ab)", &[], 0).unwrap();
        let equality = [
            0xa3, 0x09, 0x04, 0x02, b'c', b'n', 0x04, 0x03, b'a', b'*', b'b',
        ];
        assert!(
            search.op.windows(equality.len()).any(|w| w == equality),
            "{:02x?}",
            search.op
        );
        assert_eq!(search.op[0], SEARCH_REQUEST);
    }

    /// Filters the gateway's writer leaves to ldap3 (filter_ber's module notes: an extensible
    /// match, an empty `&` or `|`, an item without parentheses, text that is no filter): no
    /// `Search`, so the search goes through ldap3.
    #[test]
    fn search_new_is_none_where_the_filter_is_left_to_ldap3() {
        for filter in ["(cn:dn:=x)", "(:caseExactMatch:=x)", "(&)", "(|)"] {
            assert!(
                ldap3::parse_filter(filter).is_ok(),
                "ldap3 refuses {filter}"
            );
            assert!(
                Search::new("dc=org", 2, filter, &[], 0).is_none(),
                "{filter}"
            );
        }
        for filter in ["cn=x", "(cn=x", "(cn=a\\zz)", ""] {
            assert!(
                Search::new("dc=org", 2, filter, &[], 0).is_none(),
                "{filter}"
            );
        }
    }

    // ---- framing and decoding ----

    #[test]
    fn frame_length_waits_for_whole_messages() {
        assert!(matches!(frame_length(&[]), Ok(None)));
        assert!(matches!(frame_length(&[0x30]), Ok(None)));
        // Short form: a header and one of three content bytes.
        assert!(matches!(frame_length(&[0x30, 0x03, 0x02]), Ok(None)));
        // Long form: the length octets incomplete, then the contents.
        assert!(matches!(frame_length(&[0x30, 0x82, 0x01]), Ok(None)));
        let mut long = vec![0x30, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(0x04, 256));
        for cut in 2..long.len() {
            assert!(
                matches!(frame_length(&long[..cut]), Ok(None)),
                "cut at {cut}"
            );
        }
        assert!(matches!(frame_length(&long), Ok(Some(260))));
        // Only the first message counts; what follows it waits for the next call.
        long.extend_from_slice(&[0x30, 0x03, 0x02, 0x01]);
        assert!(matches!(frame_length(&long), Ok(Some(260))));
        assert!(matches!(
            frame_length(&[0x30, 0x03, 0x02, 0x01, 0x05, 0x30, 0x05, 0x02]),
            Ok(Some(5))
        ));
        assert!(matches!(frame_length(&[0x30, 0x00]), Ok(Some(2))));
        // A redundant long form is still definite.
        assert!(matches!(
            frame_length(&[0x30, 0x81, 0x01, 0x00]),
            Ok(Some(4))
        ));
        // The largest message allowed waits for its bytes.
        let max = u32::try_from(MAX_MESSAGE).unwrap().to_be_bytes();
        let header = [0x30, 0x84, max[0], max[1], max[2], max[3]];
        assert!(matches!(frame_length(&header), Ok(None)));
    }

    #[test]
    fn frame_length_refuses_what_is_no_ldap_message() {
        let refused = |input: &[u8]| match frame_length(input) {
            Err(WireError::Protocol(why)) => why,
            other => panic!("{input:02x?}: {other:?}"),
        };
        assert_eq!(refused(&[0x31, 0x00]), "a message is not a SEQUENCE");
        assert_eq!(refused(&[0x04, 0x01, 0x00]), "a message is not a SEQUENCE");
        assert_eq!(refused(&[0x30, 0x80]), "a message length is not definite");
        assert_eq!(
            refused(&[0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00]),
            "a message length is not definite"
        );
        assert_eq!(
            refused(&[0x30, 0x85, 0, 0, 0, 0, 1]),
            "a message length is not definite"
        );
        assert_eq!(refused(&[0x30, 0xff]), "a message length is not definite");
        let over = u32::try_from(MAX_MESSAGE + 1).unwrap().to_be_bytes();
        assert_eq!(
            refused(&[0x30, 0x84, over[0], over[1], over[2], over[3]]),
            "a message is larger than 64 MiB"
        );
        assert_eq!(
            refused(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            "a message is larger than 64 MiB"
        );
    }

    #[test]
    fn envelope_splits_id_and_operation() {
        let op = ldap3_bytes(result_op(5, 0, "", ""));
        for id in [1, 127, 128, 65536, i32::MAX] {
            let msg = message(id, &op);
            let (got, rest) = envelope(&msg).unwrap();
            assert_eq!(got, i64::from(id));
            assert_eq!(rest, op);
        }
        // Controls after the operation stay with it.
        let msg = ldap3_message_with_control(7, result_op(5, 0, "", ""));
        let (id, rest) = envelope(&msg).unwrap();
        assert_eq!(id, 7);
        assert_eq!(&rest[..op.len()], op);
        assert_eq!(rest[op.len()], 0xa0);
    }

    #[test]
    fn envelope_refuses_notices_and_malformed_messages() {
        let refused = |msg: &[u8]| match envelope(msg) {
            Err(WireError::Protocol(why)) => why,
            Err(other) => panic!("{msg:02x?}: {other:?}"),
            Ok(ok) => panic!("{msg:02x?}: {ok:?}"),
        };
        assert_eq!(
            refused(&notice_of_disconnection()),
            "an unsolicited notification"
        );
        assert_eq!(
            refused(&ldap3_message(0, result_op(5, 0, "", ""))),
            "an unsolicited notification"
        );
        assert_eq!(
            refused(&[0x31, 0x03, 0x02, 0x01, 0x01]),
            "a malformed message"
        );
        assert_eq!(
            refused(&[0x30, 0x05, 0x02, 0x01, 0x01]),
            "a malformed message"
        );
        assert_eq!(refused(&[]), "a malformed message");
        assert_eq!(
            refused(&[0x30, 0x03, 0x04, 0x01, 0x01]),
            "a message without an id"
        );
        assert_eq!(refused(&[0x30, 0x00]), "a message without an id");
        assert_eq!(
            refused(&[0x30, 0x04, 0x02, 0x00, 0x42, 0x00]),
            "a message id out of range"
        );
        let mut nine = vec![0x30, 0x0b, 0x02, 0x09];
        nine.extend([0x01; 9]);
        assert_eq!(refused(&nine), "a message id out of range");
    }

    #[test]
    fn outcome_reads_code_and_texts() {
        let contents = |op: Tag| {
            let bytes = ldap3_bytes(op);
            let (contents, rest) = ber::element(&bytes, bytes[0]).unwrap();
            assert!(rest.is_empty());
            contents.to_vec()
        };
        let ok = contents(result_op(5, 0, "", ""));
        assert_eq!(
            outcome(&ok),
            Some(Outcome {
                rc: 0,
                matched: String::new(),
                text: String::new(),
            })
        );
        let missing = contents(result_op(
            5,
            32,
            "ou=people,dc=example,dc=org",
            "no such object: uid=z\u{fc}",
        ));
        assert_eq!(
            outcome(&missing),
            Some(Outcome {
                rc: 32,
                matched: "ou=people,dc=example,dc=org".into(),
                text: "no such object: uid=z\u{fc}".into(),
            })
        );
        // A code in two octets; a referral after the texts is left unread.
        let mut referral = contents(result_op(1, 4096, "", "x"));
        referral.extend(ldap3_bytes(Tag::Sequence(Sequence {
            id: 3,
            class: TagClass::Context,
            inner: vec![octets(b"ldap://other.example.org/")],
        })));
        assert_eq!(
            outcome(&referral).map(|o| (o.rc, o.text)),
            Some((4096, "x".into()))
        );
        // Text that is not UTF-8 (Latin-1 here) is kept with a replacement character.
        let latin1 = [
            0x0a, 0x01, 0x01, 0x04, 0x00, 0x04, 0x04, b'c', b'a', b'f', 0xe9,
        ];
        assert_eq!(
            outcome(&latin1),
            Some(Outcome {
                rc: 1,
                matched: String::new(),
                text: "caf\u{fffd}".into(),
            })
        );
        // Every truncation, a negative code and an INTEGER code are refused.
        for cut in 0..missing.len() {
            assert_eq!(outcome(&missing[..cut]), None, "cut at {cut}");
        }
        assert_eq!(outcome(&contents(result_op(5, -1, "", ""))), None);
        let integer_rc = contents(app(5, vec![int(0), octets(b""), octets(b"")]));
        assert_eq!(outcome(&integer_rc), None);
    }

    #[test]
    fn split_element_splits_after_the_first_element() {
        let msg = ldap3_message_with_control(2, entry_op("uid=a", &[("cn", &[b"A"])]));
        let (_, op) = envelope(&msg).unwrap();
        let (whole, rest) = split_element(op).unwrap();
        assert_eq!(whole, ldap3_bytes(entry_op("uid=a", &[("cn", &[b"A"])])));
        assert_eq!(rest[0], 0xa0);
        assert_eq!(whole.len() + rest.len(), op.len());
        assert!(matches!(
            split_element(&[]),
            Err(WireError::Protocol("an empty message"))
        ));
        assert!(matches!(
            split_element(&[0x64, 0x05, 0x04, 0x01]),
            Err(WireError::Protocol("a malformed element"))
        ));
    }

    // ---- a scripted directory ----

    /// A directory at 127.0.0.1 that accepts one connection and runs `script` on it; its
    /// address and the script's task (which fails the test if the script panicked).
    async fn fake_directory<T, F, Fut>(script: F) -> (String, tokio::task::JoinHandle<T>)
    where
        T: Send + 'static,
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            // Every piece written goes out in its own segment.
            stream.set_nodelay(true).unwrap();
            script(stream).await
        });
        (address, task)
    }

    /// `f`, or a panic after ten seconds: a client waiting for an answer the script never
    /// sends fails the test instead of hanging it.
    async fn within<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("no answer within 10 s")
    }

    /// The next whole request, framed by its BER header alone (not by the code under test).
    async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
        let mut msg = vec![0; 2];
        s.read_exact(&mut msg).await.unwrap();
        assert_eq!(msg[0], SEQUENCE, "{msg:02x?}");
        let len = if msg[1] < 0x80 {
            usize::from(msg[1])
        } else {
            let mut digits = vec![0; usize::from(msg[1] & 0x7f)];
            s.read_exact(&mut digits).await.unwrap();
            msg.extend_from_slice(&digits);
            digits.iter().fold(0, |n, &d| (n << 8) | usize::from(d))
        };
        let at = msg.len();
        msg.resize(at + len, 0);
        s.read_exact(&mut msg[at..]).await.unwrap();
        msg
    }

    /// A request's message id, read with ldap3's parser.
    fn request_id(msg: &[u8]) -> u64 {
        let (_, tag) = ldap3::asn1::parse_tag(msg).unwrap();
        let parts = tag.expect_constructed().unwrap();
        let id = parts[0].clone().expect_primitive().unwrap();
        ldap3::asn1::parse_uint(&id).unwrap().1
    }

    /// How the script writes an answer.
    #[derive(Clone, Copy, Debug)]
    enum Delivery {
        /// 1, 2, 3, 1, ... bytes at a time, each flushed and followed by a pause, so that the
        /// client reads parts of messages and messages split across reads.
        Pieces,
        /// One write: several messages arrive in one read.
        Whole,
    }

    async fn deliver<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8], how: Delivery) {
        match how {
            Delivery::Whole => s.write_all(bytes).await.unwrap(),
            Delivery::Pieces => {
                let mut rest = bytes;
                let mut size = 0;
                while !rest.is_empty() {
                    size = size % 3 + 1;
                    let (piece, after) = rest.split_at(size.min(rest.len()));
                    s.write_all(piece).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    rest = after;
                }
            }
        }
        s.flush().await.unwrap();
    }

    /// Reads until the client closes (or resets) the connection.
    async fn until_closed<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        rest
    }

    async fn open_plain(address: &str) -> Result<SearchConn, WireError> {
        open_with(address, "127.0.0.1", &Transport::Plain, 3).await
    }

    /// `SearchConn::open` to `address` as `host` by `transport`, bound as the test account,
    /// bounded in time.
    async fn open_with(
        address: &str,
        host: &str,
        transport: &Transport,
        server: usize,
    ) -> Result<SearchConn, WireError> {
        within(SearchConn::open(
            address, host, transport, BIND_DN, PASSWORD, server,
        ))
        .await
    }

    const PEOPLE: &str = "ou=people,dc=example,dc=org";
    const ALICE: &str = "uid=alice,ou=people,dc=example,dc=org";
    const ZOE: &str = "cn=Zo\u{eb},ou=people,dc=example,dc=org";
    const FIRST_FILTER: &str = "(&(objectClass=inetOrgPerson)(|(uid=alice)(cn=Zo\u{eb})))";
    const FIRST_ATTRS: &[&str] = &[
        "uid",
        "cn",
        "mail",
        "objectClass",
        "objectGUID",
        "jpegPhoto",
        "description",
        "memberOf",
    ];

    /// The first search's answer: two entries with a reference and an intermediate response
    /// between them, then success. Alice has a multi-valued attribute, a binary photo and a
    /// binary GUID; Zoë a description with one value that is not UTF-8, a GUID that happens
    /// to be UTF-8, and an attribute without values.
    fn first_answer(id: i64) -> Vec<u8> {
        [
            ldap3_message(
                id,
                entry_op(
                    ALICE,
                    &[
                        ("objectClass", &[b"top", b"person", b"inetOrgPerson"]),
                        ("uid", &[b"alice"]),
                        ("mail", &[b"alice@example.org", b"a.liddell@example.org"]),
                        ("jpegPhoto", &[&[0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]]),
                        ("objectGUID", &[GUID]),
                    ],
                ),
            ),
            ldap3_message(
                id,
                reference_op(&["ldap://other.example.org/ou=people,dc=example,dc=org??one"]),
            ),
            ldap3_message(id, intermediate_op()),
            ldap3_message(
                id,
                entry_op(
                    ZOE,
                    &[
                        ("cn", &["Zo\u{eb}".as_bytes()]),
                        ("description", &[b"text", &[0xc3, 0x28]]),
                        ("objectGUID", &[UTF8_GUID]),
                        ("memberOf", &[]),
                    ],
                ),
            ),
            done(id, 0, "", ""),
        ]
        .concat()
    }

    /// The entries of `first_answer` as the gateway keeps them: names lowercased, GUIDs as GUID
    /// text, attributes with a value that is not UTF-8 (and not a GUID) left out.
    fn first_entries() -> Vec<Entry> {
        vec![
            entry(
                ALICE,
                &[
                    ("objectclass", &["top", "person", "inetOrgPerson"]),
                    ("uid", &["alice"]),
                    ("mail", &["alice@example.org", "a.liddell@example.org"]),
                    ("objectguid", &[GUID_TEXT]),
                ],
            ),
            entry(
                ZOE,
                &[
                    ("cn", &["Zo\u{eb}"]),
                    ("objectguid", &[UTF8_GUID_TEXT]),
                    ("memberof", &[]),
                ],
            ),
        ]
    }

    /// The second search's answer: one entry, then sizeLimitExceeded; both messages carry a
    /// control after their operation.
    fn second_answer(id: i64) -> Vec<u8> {
        [
            ldap3_message_with_control(id, entry_op(ALICE, &[("mail", &[b"alice@example.org"])])),
            ldap3_message_with_control(id, result_op(5, 4, "", "Size limit exceeded")),
        ]
        .concat()
    }

    /// A bind and two searches on one connection, every answer delivered `how`; the message
    /// ids the directory saw.
    async fn two_searches(how: Delivery) {
        let (address, server) = fake_directory(move |mut s| async move {
            let mut ids = Vec::new();
            let bind = read_request(&mut s).await;
            assert_eq!(bind, ldap3_message(1, ldap3_bind(BIND_DN, PASSWORD)));
            ids.push(request_id(&bind));
            deliver(&mut s, &bind_ok(1), how).await;

            let first = read_request(&mut s).await;
            assert_eq!(
                first,
                ldap3_message(2, ldap3_search(PEOPLE, 1, FIRST_FILTER, FIRST_ATTRS, 0))
            );
            ids.push(request_id(&first));
            deliver(&mut s, &first_answer(2), how).await;

            let second = read_request(&mut s).await;
            assert_eq!(
                second,
                ldap3_message(
                    3,
                    ldap3_search("dc=example,dc=org", 2, "(mail=*@example.org)", &["mail"], 1)
                )
            );
            ids.push(request_id(&second));
            deliver(&mut s, &second_answer(3), how).await;
            // Nothing else: the client closes.
            assert_eq!(until_closed(&mut s).await, b"");
            ids
        })
        .await;

        let mut conn = open_plain(&address).await.unwrap();
        assert_eq!(conn.server, 3);
        let first = Search::new(PEOPLE, 1, FIRST_FILTER, &strings(FIRST_ATTRS), 0).unwrap();
        let (entries, done) = within(conn.search(&first)).await.unwrap();
        assert_eq!(entries, first_entries());
        assert_eq!(
            done,
            Outcome {
                rc: 0,
                matched: String::new(),
                text: String::new(),
            }
        );

        let second = Search::new(
            "dc=example,dc=org",
            2,
            "(mail=*@example.org)",
            &strings(&["mail"]),
            1,
        )
        .unwrap();
        let (entries, done) = within(conn.search(&second)).await.unwrap();
        assert_eq!(entries, [entry(ALICE, &[("mail", &["alice@example.org"])])]);
        assert_eq!(
            done,
            Outcome {
                rc: 4,
                matched: String::new(),
                text: "Size limit exceeded".into(),
            }
        );
        // Everything read was consumed.
        assert_eq!(conn.start, conn.buf.len());
        drop(conn);
        assert_eq!(within(server).await.unwrap(), [1, 2, 3]);
    }

    #[tokio::test]
    async fn searches_read_answers_arriving_a_few_bytes_at_a_time() {
        two_searches(Delivery::Pieces).await;
    }

    #[tokio::test]
    async fn searches_read_answers_arriving_in_one_write() {
        two_searches(Delivery::Whole).await;
    }

    /// Entries far larger than the connection's first buffer, with lengths in the three-octet
    /// long form, arriving in pieces of uneven sizes that split headers and values.
    #[tokio::test]
    async fn searches_read_entries_larger_than_the_buffer() {
        let long = "d".repeat(100_000);
        let many: Vec<String> = (0..3000)
            .map(|i| format!("group{i},ou=groups,dc=example,dc=org"))
            .collect();
        let answer = {
            let many: Vec<&[u8]> = many.iter().map(|m| m.as_bytes()).collect();
            [
                ldap3_message(2, entry_op(ALICE, &[("description", &[long.as_bytes()])])),
                ldap3_message(2, entry_op(ZOE, &[("memberOf", &many)])),
                done(2, 0, "", ""),
            ]
            .concat()
        };
        assert!(answer.len() > 200_000);
        let (address, server) = fake_directory(move |mut s| async move {
            read_request(&mut s).await;
            s.write_all(&bind_ok(1)).await.unwrap();
            read_request(&mut s).await;
            let mut rest = &answer[..];
            for size in [1, 2, 3, 5000, 1, 70_000, 7, 4096, 65_536]
                .into_iter()
                .cycle()
            {
                if rest.is_empty() {
                    break;
                }
                let (piece, after) = rest.split_at(size.min(rest.len()));
                s.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                rest = after;
            }
            until_closed(&mut s).await;
        })
        .await;
        let mut conn = open_plain(&address).await.unwrap();
        let search = Search::new(PEOPLE, 1, "(objectClass=*)", &[], 0).unwrap();
        let (entries, done) = within(conn.search(&search)).await.unwrap();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            entries,
            [
                entry(ALICE, &[("description", &[long.as_str()])]),
                entry(ZOE, &[("memberof", &many)]),
            ]
        );
        assert_eq!(done.rc, 0);
        // The buffer that held the 200 KB answer is given back once the answer is read.
        assert!(
            conn.buf.capacity() <= KEPT_BUFFER,
            "{} bytes kept",
            conn.buf.capacity()
        );
        assert_eq!((conn.start, conn.buf.len()), (0, 0));
        drop(conn);
        within(server).await.unwrap();
    }

    /// After `i32::MAX` the message ids start again at 1 (0 is reserved for notices).
    #[tokio::test]
    async fn message_ids_wrap_after_i32_max() {
        let (address, server) = fake_directory(|mut s| async move {
            let mut ids = Vec::new();
            read_request(&mut s).await;
            s.write_all(&bind_ok(1)).await.unwrap();
            for id in [i32::MAX, 1] {
                let request = read_request(&mut s).await;
                assert_eq!(
                    request,
                    ldap3_message(
                        id.into(),
                        ldap3_search("dc=org", 0, "(objectClass=*)", &[], 0)
                    )
                );
                ids.push(request_id(&request));
                s.write_all(&done(id.into(), 0, "", "")).await.unwrap();
            }
            until_closed(&mut s).await;
            ids
        })
        .await;
        let mut conn = open_plain(&address).await.unwrap();
        conn.next_id = i32::MAX;
        let search = Search::new("dc=org", 0, "(objectClass=*)", &[], 0).unwrap();
        for _ in 0..2 {
            let (entries, done) = within(conn.search(&search)).await.unwrap();
            assert!(entries.is_empty());
            assert_eq!(done.rc, 0);
        }
        assert_eq!(conn.next_id, 2);
        drop(conn);
        assert_eq!(within(server).await.unwrap(), [i32::MAX as u64, 1]);
    }

    // ---- failures ----

    /// What `SearchConn::open` fails with when the directory answers the bind with `answer`
    /// and then waits for the client to close.
    async fn bind_error(answer: Vec<u8>) -> WireError {
        let (address, server) = fake_directory(move |mut s| async move {
            read_request(&mut s).await;
            s.write_all(&answer).await.unwrap();
            until_closed(&mut s).await;
        })
        .await;
        let Err(error) = open_plain(&address).await else {
            panic!("the bind succeeded");
        };
        within(server).await.unwrap();
        error
    }

    /// What a search fails with when the directory answers it (message id 2) with `answer`,
    /// and then hangs up (`hang_up`) or waits for the client to close.
    async fn search_error(answer: Vec<u8>, hang_up: bool) -> WireError {
        let (address, server) = fake_directory(move |mut s| async move {
            read_request(&mut s).await;
            s.write_all(&bind_ok(1)).await.unwrap();
            assert_eq!(request_id(&read_request(&mut s).await), 2);
            deliver(&mut s, &answer, Delivery::Whole).await;
            if !hang_up {
                until_closed(&mut s).await;
            }
        })
        .await;
        let mut conn = open_plain(&address).await.unwrap();
        let search = Search::new(PEOPLE, 1, "(uid=alice)", &strings(&["uid"]), 0).unwrap();
        let Err(error) = within(conn.search(&search)).await else {
            panic!("the search succeeded");
        };
        drop(conn);
        within(server).await.unwrap();
        error
    }

    fn protocol(error: WireError) -> &'static str {
        match error {
            WireError::Protocol(why) => why,
            other => panic!("not a protocol error: {other:?}"),
        }
    }

    fn unexpected_eof(error: WireError) {
        match error {
            WireError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            other => panic!("not an unexpected end: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_refused_bind_is_refused_with_its_result() {
        let error = bind_error(ldap3_message(
            1,
            result_op(1, 49, "", "invalid credentials"),
        ))
        .await;
        match error {
            WireError::Refused(outcome) => assert_eq!(
                outcome,
                Outcome {
                    rc: 49,
                    matched: String::new(),
                    text: "invalid credentials".into(),
                }
            ),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_bind_fails_on_a_wrong_answer() {
        assert_eq!(
            protocol(bind_error(bind_ok(2)).await),
            "an answer to another message"
        );
        assert_eq!(
            protocol(bind_error(notice_of_disconnection()).await),
            "an unsolicited notification"
        );
        assert_eq!(
            protocol(bind_error(done(1, 0, "", "")).await),
            "an unexpected answer"
        );
        assert_eq!(
            protocol(bind_error(ldap3_message(1, app(1, vec![octets(b"")]))).await),
            "a malformed result"
        );
        assert_eq!(
            protocol(bind_error(vec![0x04, 0x00]).await),
            "a message is not a SEQUENCE"
        );
    }

    #[tokio::test]
    async fn a_bind_fails_when_the_directory_hangs_up_or_is_not_there() {
        let (address, server) = fake_directory(|mut s| async move {
            read_request(&mut s).await;
            // Half of the answer, then the end of the connection.
            s.write_all(&bind_ok(1)[..5]).await.unwrap();
        })
        .await;
        let Err(error) = open_plain(&address).await else {
            panic!("the bind succeeded");
        };
        unexpected_eof(error);
        within(server).await.unwrap();

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap().to_string();
        drop(closed);
        match open_plain(&address).await {
            Err(WireError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("connected to a closed port"),
        }
    }

    #[tokio::test]
    async fn a_search_fails_when_the_directory_hangs_up() {
        let entry = ldap3_message(2, entry_op(ALICE, &[("uid", &[b"alice"])]));
        // In the middle of a message, between two messages, and before any answer.
        unexpected_eof(search_error(entry[..entry.len() - 3].to_vec(), true).await);
        unexpected_eof(search_error(entry.clone(), true).await);
        unexpected_eof(search_error(Vec::new(), true).await);
    }

    #[tokio::test]
    async fn a_search_fails_on_an_answer_to_another_message() {
        let entry = |id| ldap3_message(id, entry_op(ALICE, &[("uid", &[b"alice"])]));
        for answer in [entry(3), entry(1), [entry(2), done(3, 0, "", "")].concat()] {
            assert_eq!(
                protocol(search_error(answer, false).await),
                "an answer to another message"
            );
        }
    }

    #[tokio::test]
    async fn a_search_fails_on_a_notice_of_disconnection() {
        let answer = [
            ldap3_message(2, entry_op(ALICE, &[("uid", &[b"alice"])])),
            notice_of_disconnection(),
        ]
        .concat();
        assert_eq!(
            protocol(search_error(answer, false).await),
            "an unsolicited notification"
        );
    }

    #[tokio::test]
    async fn a_search_fails_on_an_unexpected_operation() {
        let modify = ldap3_message(2, result_op(7, 0, "", ""));
        assert_eq!(modify[5], 0x67);
        let bind = bind_ok(2);
        // A message with an id and no operation.
        let empty = vec![0x30, 0x03, 0x02, 0x01, 0x02];
        for answer in [modify, bind, empty] {
            assert_eq!(
                protocol(search_error(answer, false).await),
                "an unexpected answer to a search"
            );
        }
    }

    #[tokio::test]
    async fn a_search_fails_on_a_malformed_entry() {
        let malformed = [
            // The attribute list is an OCTET STRING.
            app(4, vec![octets(ALICE.as_bytes()), octets(b"uid")]),
            // The values are a SEQUENCE, not a SET.
            app(
                4,
                vec![
                    octets(ALICE.as_bytes()),
                    seq(vec![seq(vec![octets(b"uid"), seq(vec![octets(b"alice")])])]),
                ],
            ),
            // The DN is not UTF-8.
            app(4, vec![octets(&[0x75, 0x3d, 0xff]), seq(vec![])]),
            // No attribute list.
            app(4, vec![octets(ALICE.as_bytes())]),
            // Something after the attribute list.
            app(4, vec![octets(ALICE.as_bytes()), seq(vec![]), octets(b"")]),
        ];
        for op in malformed {
            let answer = [ldap3_message(2, op), done(2, 0, "", "")].concat();
            assert_eq!(
                protocol(search_error(answer, false).await),
                "a malformed search result entry"
            );
        }
        // The entry's own length runs past the end of its message.
        let overrun = vec![
            0x30, 0x09, 0x02, 0x01, 0x02, 0x64, 0x07, 0x04, 0x01, b'x', 0x30,
        ];
        assert_eq!(
            protocol(search_error(overrun, false).await),
            "a malformed element"
        );
    }

    #[tokio::test]
    async fn a_search_fails_on_a_malformed_result_or_message() {
        let integer_rc = ldap3_message(2, app(5, vec![int(0), octets(b""), octets(b"")]));
        assert_eq!(
            protocol(search_error(integer_rc, false).await),
            "a malformed result"
        );
        let truncated_done = vec![0x30, 0x06, 0x02, 0x01, 0x02, 0x65, 0x07, 0x0a];
        assert_eq!(
            protocol(search_error(truncated_done, false).await),
            "a malformed search result"
        );
        let not_ldap = b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec();
        assert_eq!(
            protocol(search_error(not_ldap, false).await),
            "a message is not a SEQUENCE"
        );
        let indefinite = vec![0x30, 0x80, 0x02, 0x01, 0x02, 0x00, 0x00];
        assert_eq!(
            protocol(search_error(indefinite, false).await),
            "a message length is not definite"
        );
        let huge = vec![0x30, 0x84, 0x7f, 0xff, 0xff, 0xff];
        assert_eq!(
            protocol(search_error(huge, false).await),
            "a message is larger than 64 MiB"
        );
        let id_out_of_range = vec![0x30, 0x04, 0x02, 0x00, 0x42, 0x00];
        assert_eq!(
            protocol(search_error(id_out_of_range, false).await),
            "a message id out of range"
        );
    }

    // ---- TLS ----

    /// A server config presenting a fresh certificate for `localhost`, and a client config
    /// that trusts only that certificate.
    fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let provider = || Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// The ExtendedResponse that accepts StartTLS for message `id`.
    fn starttls_ok(id: i64) -> Vec<u8> {
        let mut op = match result_op(24, 0, "", "") {
            Tag::Sequence(s) => s,
            _ => unreachable!(),
        };
        op.inner.push(Tag::OctetString(OctetString {
            id: 10,
            class: TagClass::Context,
            inner: STARTTLS_OID.to_vec(),
        }));
        ldap3_message(id, Tag::Sequence(op))
    }

    /// A bind and a search over TLS, the answer arriving in pieces: with StartTLS (its request
    /// is message 1, so the bind is 2) or from the first byte.
    async fn search_over_tls(starttls: bool) {
        let (server_config, client_config) = tls_configs();
        let (address, server) = fake_directory(move |mut tcp| async move {
            let first = if starttls {
                assert_eq!(
                    read_request(&mut tcp).await,
                    ldap3_message(1, ldap3_starttls())
                );
                tcp.write_all(&starttls_ok(1)).await.unwrap();
                2
            } else {
                1
            };
            let mut s = tokio_rustls::TlsAcceptor::from(server_config)
                .accept(tcp)
                .await
                .unwrap();
            assert_eq!(
                read_request(&mut s).await,
                ldap3_message(first, ldap3_bind(BIND_DN, PASSWORD))
            );
            deliver(&mut s, &bind_ok(first), Delivery::Pieces).await;
            let search = read_request(&mut s).await;
            assert_eq!(
                search,
                ldap3_message(
                    first + 1,
                    ldap3_search(PEOPLE, 1, FIRST_FILTER, FIRST_ATTRS, 0)
                )
            );
            deliver(&mut s, &first_answer(first + 1), Delivery::Pieces).await;
            until_closed(&mut s).await;
        })
        .await;
        let transport = if starttls {
            Transport::StartTls(client_config)
        } else {
            Transport::Tls(client_config)
        };
        let Ok(mut conn) = open_with(&address, "localhost", &transport, 0).await else {
            panic!("no TLS connection");
        };
        let search = Search::new(PEOPLE, 1, FIRST_FILTER, &strings(FIRST_ATTRS), 0).unwrap();
        let (entries, done) = within(conn.search(&search)).await.unwrap();
        assert_eq!(entries, first_entries());
        assert_eq!(done.rc, 0);
        drop(conn);
        within(server).await.unwrap();
    }

    #[tokio::test]
    async fn searches_over_starttls() {
        search_over_tls(true).await;
    }

    #[tokio::test]
    async fn searches_over_ldaps() {
        search_over_tls(false).await;
    }

    /// `SearchConn::open` by StartTLS against a server that checks the request is StartTLS
    /// (ldap3's bytes) and answers `answer`; what the connection came to, and what the server
    /// read after the answer until the client closed.
    async fn starttls_answered(answer: Vec<u8>) -> (Result<(), WireError>, Vec<u8>) {
        let (_, client_config) = tls_configs();
        let (address, server) = fake_directory(|mut s| async move {
            assert_eq!(
                read_request(&mut s).await,
                ldap3_message(1, ldap3_starttls())
            );
            s.write_all(&answer).await.unwrap();
            until_closed(&mut s).await
        })
        .await;
        let transport = Transport::StartTls(client_config);
        let opened = open_with(&address, "localhost", &transport, 0).await;
        // Closed before the server is asked what it read: it reads until the client closes.
        let opened = opened.map(drop);
        (opened, within(server).await.unwrap())
    }

    #[tokio::test]
    async fn a_refused_starttls_is_refused_before_the_bind() {
        let refusal = ldap3_message(1, result_op(24, 2, "", "unsupported extended operation"));
        let (opened, after) = starttls_answered(refusal).await;
        match opened {
            Err(WireError::Refused(outcome)) => {
                assert_eq!(outcome.rc, 2);
                assert_eq!(outcome.text, "unsupported extended operation");
            }
            other => panic!("{other:?}"),
        }
        // No bind follows.
        assert_eq!(after, b"");
    }

    /// Bytes after the StartTLS answer, before the handshake, fail the connection: they would
    /// otherwise be read as if TLS had protected them.
    #[tokio::test]
    async fn plaintext_after_the_starttls_answer_fails_the_connection() {
        let mut answer = ldap3_message(1, result_op(24, 0, "", ""));
        answer.extend(done(7, 0, "", ""));
        let (opened, after) = starttls_answered(answer).await;
        match opened {
            Err(WireError::Protocol(m)) => assert_eq!(m, "plaintext after the StartTLS answer"),
            other => panic!("{other:?}"),
        }
        assert_eq!(after, b"", "no handshake and no bind");
    }

    /// A certificate for another name fails the connection before the bind; so does a host
    /// that is no TLS server name.
    #[tokio::test]
    async fn tls_checks_the_servers_name() {
        let (server_config, client_config) = tls_configs();
        let (address, server) = fake_directory(move |tcp| async move {
            assert!(tokio_rustls::TlsAcceptor::from(server_config)
                .accept(tcp)
                .await
                .is_err());
        })
        .await;
        let transport = Transport::Tls(client_config.clone());
        match open_with(&address, "example.org", &transport, 0).await {
            Err(WireError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("accepted a certificate for localhost as example.org"),
        }
        within(server).await.unwrap();

        let (address, server) =
            fake_directory(|mut s| async move { until_closed(&mut s).await }).await;
        match open_with(&address, "not a host", &transport, 0).await {
            Err(WireError::Protocol(why)) => {
                assert_eq!(why, "the server's host name is no TLS server name");
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("connected to no name"),
        }
        // Nothing was sent in the clear.
        assert_eq!(within(server).await.unwrap(), b"");
    }
}
