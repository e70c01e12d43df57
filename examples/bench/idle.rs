//! The gateway's memory with many idle keep-alive connections: open them over TLS, send one
//! request on each, leave them open, and sample the gateway's resident memory.

use crate::entra::user_filter_path;
use crate::process::{mib, status_kib};
use crate::report::IdleReport;
use crate::runner::Http;
use crate::scenarios::bulk_name;
use crate::Bench;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// TLS handshakes in progress at once while opening.
const OPENING: usize = 32;
/// Samples of the resident memory, one every 100 ms, once all connections idle.
const SAMPLES: usize = 20;

pub async fn idle_connections(b: &Bench, n: usize) -> Result<IdleReport, String> {
    let pid = b.gw.pid();
    let rss_before = status_kib(pid, "VmRSS").unwrap_or(0);
    let opening = Arc::new(Semaphore::new(OPENING));
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let http = Http::new(&b.gw);
            let opening = opening.clone();
            tokio::spawn(async move {
                let _permit = opening.acquire().await.map_err(|e| e.to_string())?;
                http.find(&user_filter_path(&bulk_name(0)), 1)
                    .await
                    .map_err(|e| format!("idle connection {i}: {e}"))?;
                Ok::<_, String>(http)
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for t in tasks {
        clients.push(t.await.map_err(|e| e.to_string())??);
    }
    let seconds_to_open = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut rss_idle = 0;
    for _ in 0..SAMPLES {
        rss_idle = rss_idle.max(status_kib(pid, "VmRSS").unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connections_open =
        b.gw.metrics()
            .await
            .get("scim_gateway_http_connections_open")
            .unwrap_or(f64::NAN);
    if connections_open < n as f64 {
        return Err(format!(
            "{n} idle connections were opened, but the gateway counts {connections_open} open"
        ));
    }
    drop(clients);
    Ok(IdleReport {
        connections: n,
        connections_open,
        rss_before_mib: mib(rss_before),
        rss_idle_mib: mib(rss_idle),
        seconds_to_open,
    })
}
