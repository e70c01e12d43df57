//! A bare HTTPS responder: the least an HTTPS server can do for a request. It is this tool run
//! again as a process of its own (as the gateway is one), with the gateway's own TLS set-up
//! (`http::tls::load`: TLS 1.3 and 1.2 with ring, its session cache) and hyper's HTTP/1.1 with
//! keep-alive and no Nagle, as the gateway's listener serves its clients, and
//! it answers every request with the same bytes as the gateway's `GET /ServiceProviderConfig`,
//! without reading the token, routing, metrics or logging anything.
//!
//! Its round trip bounds what any HTTPS gateway can reach on this machine, whatever its code:
//! the load generator's HTTPS client, TLS both ways, the loopback and one more process to wake
//! are the same for every gateway. The gateway's own round trip with no directory work (its
//! `GET /ServiceProviderConfig`) is that plus what its HTTP layer adds.

use crate::proxy::{user_name_of, Proxy, ProxySettings};
use crate::relay::{self, Relay};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use scim_ldap_gateway::config::TlsSettings;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Set in the child's environment to the directory holding its certificate, key and body.
pub const ENV: &str = "SCIM_BENCH_BARE_HTTPS_DIR";

/// A running responder; killed when dropped.
pub struct BareResponder {
    child: Child,
    _dir: tempfile::TempDir,
    /// Its base URL: any path below it gets the same answer.
    pub base: String,
    /// Its certificate (self-signed, for 127.0.0.1), PEM.
    pub cert_pem: String,
}

impl BareResponder {
    /// Starts the responder answering `body`, with `worker_threads` runtime threads (tokio's
    /// default, one per core, when `None`: as the gateway is started), and with the thin
    /// proxy's routes (`proxy.rs`) when `proxy` is given.
    pub fn start(
        body: &[u8],
        worker_threads: Option<usize>,
        proxy: Option<&ProxySettings>,
    ) -> Result<BareResponder, String> {
        let err = |what: &str, e: &dyn std::fmt::Display| format!("bare responder: {what}: {e}");
        let dir = tempfile::tempdir().map_err(|e| err("temporary directory", &e))?;
        let cert_pem = write_files(dir.path(), body).map_err(|e| err("set-up", &e))?;
        if let Some(p) = proxy {
            p.write(dir.path()).map_err(|e| err("proxy set-up", &e))?;
        }
        let exe = std::env::current_exe().map_err(|e| err("own executable", &e))?;
        let mut command = Command::new(exe);
        command
            .env(ENV, dir.path())
            .env_remove("TOKIO_WORKER_THREADS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(n) = worker_threads {
            command.env("TOKIO_WORKER_THREADS", n.to_string());
        }
        let mut child = command.spawn().map_err(|e| err("spawn", &e))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("a piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| err("reading its port", &e))?;
        let Some(port) = line
            .trim()
            .strip_prefix("listening on port ")
            .and_then(|p| p.parse::<u16>().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "bare responder: it said {line:?} instead of its port"
            ));
        };
        Ok(BareResponder {
            child,
            _dir: dir,
            base: format!("https://127.0.0.1:{port}/scim/v2"),
            cert_pem,
        })
    }
}

/// Writes what the responder reads from `dir`: a fresh self-signed certificate for 127.0.0.1,
/// its key, and the body to answer. Returns the certificate.
pub fn write_files(dir: &Path, body: &[u8]) -> Result<String, String> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .map_err(|e| format!("certificate: {e}"))?;
    let write = |name: &str, data: &[u8]| {
        std::fs::write(dir.join(name), data).map_err(|e| format!("{name}: {e}"))
    };
    write("cert.pem", cert.cert.pem().as_bytes())?;
    write("key.pem", cert.key_pair.serialize_pem().as_bytes())?;
    write("body", body)?;
    Ok(cert.cert.pem())
}

impl BareResponder {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BareResponder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's side: serves until its stdin closes (the benchmark ended or died) or it is killed.
pub async fn serve(dir: PathBuf) -> Result<(), String> {
    let (listener, acceptor, body) = bind(&dir).await?;
    let proxy = Proxy::open(&dir).await?.map(Arc::new);
    let relay = match &proxy {
        Some(p) => Some(Arc::new(Relay::new(p.settings())?)),
        None => None,
    };
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on port {port}")
        .and_then(|_| stdout.flush())
        .map_err(|e| e.to_string())?;
    // The benchmark holds the other end of stdin: end with it.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    answer(listener, acceptor, body, proxy, relay).await
}

/// A listener on a free loopback port, with the TLS set-up and the body read from `dir`. The
/// TLS configuration is the gateway's own listener's (`http::tls::load`): the same versions,
/// provider, ALPN and session cache.
pub async fn bind(dir: &Path) -> Result<(TcpListener, TlsAcceptor, Bytes), String> {
    let body = std::fs::read(dir.join("body")).map_err(|e| format!("body: {e}"))?;
    let tls = scim_ldap_gateway::http::tls::load(&TlsSettings {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
    })
    .map_err(|e| e.to_string())?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    Ok((listener, TlsAcceptor::from(tls.config), Bytes::from(body)))
}

/// Answers every request on every connection with `body`, but the thin proxy's (`proxy.rs`)
/// when it runs: `GET …/Users?…` and `POST …/Users`.
async fn answer(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    body: Bytes,
    proxy: Option<Arc<Proxy>>,
    relay: Option<Arc<Relay>>,
) -> Result<(), String> {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, say: give the machine a moment rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, body, proxy, relay) =
            (acceptor.clone(), body.clone(), proxy.clone(), relay.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let (body, proxy, relay) = (body.clone(), proxy.clone(), relay.clone());
                async move {
                    let path = request.uri().path();
                    let (status, body) = match (proxy, relay) {
                        (_, Some(relay)) if path.starts_with(relay::PREFIX) => {
                            relayed(&relay, &request).await
                        }
                        (Some(proxy), _) if path.ends_with("/Users") => {
                            proxied(&proxy, request).await
                        }
                        _ => (200, body),
                    };
                    let mut response = hyper::Response::new(Full::new(body));
                    *response.status_mut() =
                        hyper::StatusCode::from_u16(status).expect("a valid status");
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/scim+json"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// The thin proxy's answer to a request for `…/Users`.
async fn proxied(proxy: &Proxy, request: hyper::Request<Incoming>) -> (u16, Bytes) {
    if request.method() == hyper::Method::GET {
        return proxy.find(request.uri().query().unwrap_or("")).await;
    }
    match request.into_body().collect().await {
        Ok(body) => proxy.create(&body.to_bytes()).await,
        Err(e) => (400, Bytes::from(e.to_string())),
    }
}

/// The relay's answer to a request under [`relay::PREFIX`]: only the match's.
async fn relayed(relay: &Relay, request: &hyper::Request<Incoming>) -> (u16, Bytes) {
    let name = request.uri().query().and_then(user_name_of);
    match name {
        Some(name) if request.method() == hyper::Method::GET => relay.find(&name).await,
        _ => (
            404,
            Bytes::from_static(b"{\"detail\":\"the relay answers the match only\"}"),
        ),
    }
}

/// The directory named by [`ENV`], when this process is a responder.
pub fn responder_dir() -> Option<PathBuf> {
    std::env::var_os(ENV).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release_gateway::client_trusting;

    #[tokio::test]
    async fn answers_every_request_with_the_body_over_tls() {
        let dir = tempfile::tempdir().unwrap();
        let body =
            br#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]}"#;
        let cert_pem = write_files(dir.path(), body).unwrap();
        let (listener, acceptor, bytes) = bind(dir.path()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(answer(listener, acceptor, bytes, None, None));
        let client = client_trusting(&cert_pem).http1_only().build().unwrap();
        // Any path, twice on one keep-alive connection.
        for path in ["/scim/v2/ServiceProviderConfig", "/anything"] {
            let resp = client
                .get(format!("https://127.0.0.1:{port}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.version(), reqwest::Version::HTTP_11);
            assert_eq!(resp.headers()["content-type"], "application/scim+json");
            assert_eq!(&resp.bytes().await.unwrap()[..], &body[..]);
        }
        // A client that does not trust its certificate gets no answer.
        let stranger = reqwest::Client::builder().build().unwrap();
        assert!(stranger
            .get(format!("https://127.0.0.1:{port}/"))
            .send()
            .await
            .is_err());
    }
}
