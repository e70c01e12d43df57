//! The load generator's HTTPS client: one HTTP/1.1 keep-alive connection over rustls, driven by
//! hyper's connection-level client, which is what a request needs and no more. The direct side's
//! client is ldap3, a protocol client with a connection of its own and a task that drives it;
//! this is the same for HTTPS. A general client (reqwest, which the tool used before) adds its
//! pool, URL parsing, redirect policy and per-request timer on every request, on the cores the
//! gateway and slapd share.

use crate::release_gateway::tls_connector_trusting;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A request that takes longer than this fails, so that a server that hangs fails the run.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One keep-alive HTTPS connection to `https://<addr><prefix>`, opened on the first request and
/// again after the server closed it; one request at a time.
pub struct LeanHttps {
    tls: TlsConnector,
    addr: SocketAddr,
    host: HeaderValue,
    prefix: String,
    authorization: HeaderValue,
    sender: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

/// A status and a body.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl LeanHttps {
    /// A client of `base` (`https://127.0.0.1:<port>[/prefix]`) that trusts only the certificate
    /// `cert_pem` (TLS 1.3 and 1.2, ALPN http/1.1) and sends `Authorization: Bearer <token>` with every request.
    pub fn new(base: &str, cert_pem: &str, token: &str) -> Result<LeanHttps, String> {
        let rest = base
            .strip_prefix("https://")
            .ok_or_else(|| format!("{base}: not an https:// URL"))?;
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr: SocketAddr = authority
            .parse()
            .map_err(|e| format!("{base}: the lean client takes an IP and a port ({e})"))?;
        Ok(LeanHttps {
            tls: tls_connector_trusting(cert_pem.as_bytes(), rustls::DEFAULT_VERSIONS, b"http/1.1"),
            addr,
            host: HeaderValue::from_str(authority).map_err(|e| e.to_string())?,
            prefix: prefix.to_string(),
            authorization: HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| e.to_string())?,
            sender: tokio::sync::Mutex::new(None),
        })
    }

    /// Sends `method <prefix><path>` with `body` (as `application/scim+json`) and reads the whole
    /// answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, String> {
        tokio::time::timeout(TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| format!("no answer within {} s", TIMEOUT.as_secs()))?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.authorization.clone());
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/scim+json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| e.to_string())?;
        let mut slot = self.sender.lock().await;
        let sender = match slot.as_mut() {
            Some(s) if !s.is_closed() => s,
            _ => slot.insert(self.connect().await?),
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("the connection: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        Ok(Answer { status, body })
    }

    /// A new connection: TCP without Nagle, the TLS handshake, HTTP/1.1; its driver runs in a
    /// task of its own, as ldap3's does.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.addr))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let name = ServerName::from(self.addr.ip());
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", self.addr))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/1.1 with {}: {e}", self.addr))?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bare;
    use hyper::service::service_fn;
    use std::convert::Infallible;
    use std::sync::Arc;

    /// A TLS server (the bare responder's set-up) that answers each request with what it got:
    /// the method, the target, the `Host`, `Authorization` and `Content-Type` headers and the body.
    /// Each connection closes after `per_connection` requests. Returns its port and certificate.
    async fn echo(per_connection: usize) -> (u16, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cert_pem = bare::write_files(dir.path(), b"").unwrap();
        let (listener, acceptor, _) = bare::bind(dir.path()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let tls = acceptor.accept(tcp).await.unwrap();
                    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let n = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        async move {
                            let header = |name| {
                                request
                                    .headers()
                                    .get(name)
                                    .map_or("-".to_string(), |v| v.to_str().unwrap().to_string())
                            };
                            let head = format!(
                                "{} {} {} {} {} ",
                                request.method(),
                                request.uri(),
                                header(HOST),
                                header(AUTHORIZATION),
                                header(CONTENT_TYPE)
                            );
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let mut echoed = head.into_bytes();
                            echoed.extend_from_slice(&body);
                            let mut response = hyper::Response::new(Full::new(Bytes::from(echoed)));
                            *response.status_mut() = hyper::StatusCode::CREATED;
                            if n == per_connection {
                                response.headers_mut().insert(
                                    hyper::header::CONNECTION,
                                    HeaderValue::from_static("close"),
                                );
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (port, cert_pem, dir)
    }

    #[tokio::test]
    async fn sends_the_request_with_the_token_below_the_prefix_and_reads_the_whole_answer() {
        let (port, cert_pem, _dir) = echo(usize::MAX).await;
        let client = LeanHttps::new(
            &format!("https://127.0.0.1:{port}/scim/v2"),
            &cert_pem,
            "t0k",
        )
        .unwrap();
        let got = client
            .send(
                Method::PATCH,
                "/Users/42",
                Some(Bytes::from_static(b"{\"a\":1}")),
            )
            .await
            .unwrap();
        assert_eq!(got.status, 201);
        assert_eq!(
            &got.body[..],
            format!(
                "PATCH /scim/v2/Users/42 127.0.0.1:{port} Bearer t0k application/scim+json {{\"a\":1}}"
            )
            .as_bytes()
        );
        let got = client
            .send(Method::GET, "/Users?filter=x", None)
            .await
            .unwrap();
        assert_eq!(
            &got.body[..],
            format!("GET /scim/v2/Users?filter=x 127.0.0.1:{port} Bearer t0k - ").as_bytes()
        );
    }

    #[tokio::test]
    async fn opens_a_new_connection_after_the_server_closed_one() {
        let (port, cert_pem, _dir) = echo(1).await;
        let client = LeanHttps::new(&format!("https://127.0.0.1:{port}"), &cert_pem, "t").unwrap();
        for _ in 0..3 {
            let got = client.send(Method::GET, "/x", None).await.unwrap();
            assert_eq!(got.status, 201);
        }
    }

    #[tokio::test]
    async fn trusts_no_other_certificate() {
        let (port, _, _dir) = echo(usize::MAX).await;
        let other = bare::write_files(tempfile::tempdir().unwrap().path(), b"").unwrap();
        let client = LeanHttps::new(&format!("https://127.0.0.1:{port}"), &other, "t").unwrap();
        let err = client.send(Method::GET, "/", None).await.err().unwrap();
        assert!(err.starts_with("TLS with 127.0.0.1:"), "{err}");
    }
}
