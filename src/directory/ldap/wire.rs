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
                    let (dn, attrs) = ber::search_result_entry(whole)
                        .ok_or(WireError::Protocol("a malformed search result entry"))?;
                    entries.push(super::entry_from_raw(dn.to_string(), attrs));
                }
                Some(&SEARCH_RESULT_REFERENCE | &INTERMEDIATE_RESPONSE) => {}
                Some(&SEARCH_RESULT_DONE) => {
                    let (contents, _) = ber::element(op, SEARCH_RESULT_DONE)
                        .ok_or(WireError::Protocol("a malformed search result"))?;
                    let done =
                        outcome(contents).ok_or(WireError::Protocol("a malformed result"))?;
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
