//! The admin listener: `/metrics` (Prometheus text format), `/healthz` and `/readyz`.
//!
//! It is plain HTTP and meant for loopback or a cluster-internal port; it serves no SCIM data.

use crate::directory::ldap::LdapDirectory;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the admin endpoints look at.
pub struct AdminState {
    pub registry: Registry,
    pub directory: Arc<LdapDirectory>,
    pub readiness_timeout: Duration,
    /// Set when shutdown begins, so load balancers stop sending traffic while requests drain.
    pub draining: Arc<AtomicBool>,
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    s.directory.refresh_metrics();
    let mut resp = crate::metrics::encode(&s.registry).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The process is alive and serving its admin listener.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when not draining and the directory answers a base search within the timeout.
async fn readyz(State(s): State<Arc<AdminState>>) -> Response {
    if s.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match s.directory.probe(s.readiness_timeout).await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::debug!(error = %e, "readiness probe failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("directory not ready: {}\n", e.result_label()),
            )
                .into_response()
        }
    }
}
