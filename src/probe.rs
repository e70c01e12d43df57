//! The `probe` subcommand: one plain-HTTP GET against the admin listener, for container health
//! checks in images that ship no curl or shell (distroless).

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0:?} is not an http://host:port/path URL (the admin listener speaks plain HTTP)")]
    Url(String),
    #[error("cannot reach {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("no answer from {0} within the timeout")]
    Timeout(String),
    #[error("{address} did not answer with an HTTP status line")]
    NotHttp { address: String },
}

/// Where a probe URL points.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    /// `host:port`, as given.
    address: &'a str,
    path: &'a str,
}

fn parse(url: &str) -> Result<Target<'_>, ProbeError> {
    let bad = || ProbeError::Url(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (address, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    // The port is required: the admin listener has no standard one.
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() || path.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(Target { address, path })
}

/// GET `url` and return the response's status code; the whole exchange is bounded by `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let target = parse(url)?;
    tokio::time::timeout(timeout, get(&target))
        .await
        .map_err(|_| ProbeError::Timeout(target.address.to_string()))?
}

async fn get(target: &Target<'_>) -> Result<u16, ProbeError> {
    let connect = |source| ProbeError::Connect {
        address: target.address.to_string(),
        source,
    };
    let mut stream = TcpStream::connect(target.address).await.map_err(connect)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        target.path, target.address
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(connect)?;
    // The status line is all we need: "HTTP/1.1 200 OK".
    let mut head = Vec::new();
    let mut chunk = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut chunk).await.map_err(connect)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let not_http = || ProbeError::NotHttp {
        address: target.address.to_string(),
    };
    let line = head.split(|b| *b == b'\n').next().ok_or_else(not_http)?;
    let line = std::str::from_utf8(line).map_err(|_| not_http())?;
    let mut words = line.split_whitespace();
    match (words.next(), words.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(status))) if v.starts_with("HTTP/") => Ok(status),
        _ => Err(not_http()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot server that reads the request, answers `response` and returns the request.
    async fn answer_once(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (address, task)
    }

    #[tokio::test]
    async fn reports_the_status_and_sends_the_path() {
        let (address, server) =
            answer_once("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").await;
        let url = format!("http://{address}/healthz");
        assert_eq!(probe(&url, Duration::from_secs(5)).await.unwrap(), 200);
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("Host: {address}\r\n")),
            "{request}"
        );

        let (address, _server) = answer_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let url = format!("http://{address}/readyz");
        assert_eq!(probe(&url, Duration::from_secs(5)).await.unwrap(), 503);
    }

    #[tokio::test]
    async fn failures_are_errors_not_statuses() {
        let (address, _server) = answer_once("SSH-2.0-OpenSSH\r\n").await;
        let e = probe(&format!("http://{address}/"), Duration::from_secs(5)).await;
        assert!(matches!(e, Err(ProbeError::NotHttp { .. })), "{e:?}");

        // A port nobody listens on: bind one, then free it.
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = free.local_addr().unwrap();
        drop(free);
        let e = probe(&format!("http://{address}/healthz"), Duration::from_secs(5)).await;
        assert!(matches!(e, Err(ProbeError::Connect { .. })), "{e:?}");

        // A listener that accepts and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/healthz", silent.local_addr().unwrap());
        let e = probe(&url, Duration::from_millis(200)).await;
        assert!(matches!(e, Err(ProbeError::Timeout(_))), "{e:?}");
    }

    #[test]
    fn urls_need_http_a_host_and_a_port() {
        assert_eq!(
            parse("http://127.0.0.1:9464/healthz").unwrap(),
            Target {
                address: "127.0.0.1:9464",
                path: "/healthz"
            }
        );
        assert_eq!(parse("http://[::1]:9464").unwrap().path, "/");
        for bad in [
            "https://127.0.0.1:9464/healthz",
            "127.0.0.1:9464/healthz",
            "http://127.0.0.1/healthz",
            "http://:9464/healthz",
            "http://127.0.0.1:99999/",
            "http://127.0.0.1:9464/a b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
