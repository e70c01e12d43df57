//! Prometheus metrics, registered on a registry the caller passes in (never a global one).
//!
//! Every label value comes from a fixed set: a resource name, a method, a status class, a quota,
//! a directory operation or an LDAP result-code name. Never an id, a DN, a user name or an error text.

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// One unit of a gauge, held for as long as this lives: given back also when the future that
/// holds it is dropped half-way (a read whose client hung up).
pub struct Held<'a>(&'a IntGauge);

impl<'a> Held<'a> {
    pub fn enter(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Held(gauge)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Buckets for request and directory latencies, in seconds: 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Metrics of the HTTP front.
#[derive(Clone)]
pub struct HttpMetrics {
    /// Requests by resource, method and status class.
    pub requests: IntCounterVec,
    /// Request duration by resource and method.
    pub duration: HistogramVec,
    pub in_flight: IntGauge,
    /// Open client connections.
    pub connections: IntGauge,
    /// Requests refused by a quota, by quota.
    pub rate_limited: IntCounterVec,
    /// Requests refused because `limits.max_concurrent_requests` were already running.
    pub overloaded: IntCounter,
    /// Failed TLS handshakes by reason (`timeout`, `error`).
    pub tls_handshake_failures: IntCounterVec,
    /// The served certificate's notAfter (Unix seconds); 0 when no listener speaks TLS.
    pub tls_certificate_expiry: Gauge,
}

/// Metrics of the directory side.
#[derive(Clone)]
pub struct DirectoryMetrics {
    /// LDAP operations by operation and result-code name.
    pub operations: IntCounterVec,
    /// LDAP operation latency by operation.
    pub duration: HistogramVec,
    /// Operations holding a back-pressure slot.
    pub in_flight: IntGauge,
    /// Operations waiting for a slot.
    pub queued: IntGauge,
    /// Operations refused by back-pressure, by reason (`queue_full`, `queue_timeout`).
    pub rejected: IntCounterVec,
    /// Pool connections by state (`open`, `idle`).
    pub connections: IntGaugeVec,
    /// The gateway's own search connections by state (`open`, `idle`).
    pub search_connections: IntGaugeVec,
    /// Connections re-established after one was lost or failed.
    pub reconnects: IntCounter,
    /// 1 when the directory answers, 0 while it is unreachable.
    pub up: IntGauge,
}

/// Metrics of the process: config reloads, audit records and build information.
#[derive(Clone)]
pub struct ProcessMetrics {
    /// Config reloads by outcome (`success`, `failure`).
    pub reloads: IntCounterVec,
    /// Unix time of the last successful (re)load of the config.
    pub last_reload_success: Gauge,
    /// Audit records written, by outcome (`written`, `failed`).
    pub audit_records: IntCounterVec,
}

/// All of the gateway's metrics.
#[derive(Clone)]
pub struct Metrics {
    pub http: HttpMetrics,
    pub directory: DirectoryMetrics,
    pub process: ProcessMetrics,
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn float_gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<Gauge> {
    let g = Gauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

/// The resource label of a request path below the SCIM base path: a fixed set.
pub fn resource_label(path_below_base: &str) -> &'static str {
    let first = path_below_base
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let second = path_below_base.trim_start_matches('/').split('/').nth(1);
    match (first, second) {
        ("Users", Some(".search")) | ("Groups", Some(".search")) | (".search", _) => "search",
        ("Users", _) => "Users",
        ("Groups", _) => "Groups",
        ("Bulk", _) => "Bulk",
        ("Me", _) => "Me",
        ("ServiceProviderConfig", _) | ("Schemas", _) | ("ResourceTypes", _) => "discovery",
        _ => "other",
    }
}

/// The method label: the five SCIM methods, everything else `other`.
pub fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        _ => "other",
    }
}

/// `2xx` … `5xx`.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

impl Metrics {
    /// Create every family on `registry`. Fails only when a name is already registered there.
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let r = registry;
        let http = HttpMetrics {
            requests: counter_vec(
                r,
                "scim_gateway_http_requests_total",
                "SCIM requests answered, by resource, method and status class.",
                &["resource", "method", "status_class"],
            )?,
            duration: histogram_vec(
                r,
                "scim_gateway_http_request_duration_seconds",
                "Time from a request's headers to its response, by resource and method.",
                &["resource", "method"],
            )?,
            in_flight: gauge(
                r,
                "scim_gateway_http_requests_in_flight",
                "SCIM requests being handled.",
            )?,
            connections: gauge(
                r,
                "scim_gateway_http_connections_open",
                "Open client connections on the SCIM listeners.",
            )?,
            rate_limited: counter_vec(
                r,
                "scim_gateway_rate_limited_requests_total",
                "Requests answered 429 because a quota was exhausted, by quota.",
                &["quota"],
            )?,
            overloaded: counter(
                r,
                "scim_gateway_http_overload_rejections_total",
                "Requests answered 503 because limits.max_concurrent_requests were running.",
            )?,
            tls_handshake_failures: counter_vec(
                r,
                "scim_gateway_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out, by reason.",
                &["reason"],
            )?,
            tls_certificate_expiry: float_gauge(
                r,
                "scim_gateway_tls_certificate_expiry_timestamp_seconds",
                "Unix time at which the served TLS certificate expires (its notAfter); 0 without TLS.",
            )?,
        };
        let directory = DirectoryMetrics {
            operations: counter_vec(
                r,
                "scim_gateway_directory_operations_total",
                "LDAP operations sent to the directory, by operation and LDAP result-code name.",
                &["operation", "result"],
            )?,
            duration: histogram_vec(
                r,
                "scim_gateway_directory_operation_duration_seconds",
                "LDAP operation latency, by operation.",
                &["operation"],
            )?,
            in_flight: gauge(
                r,
                "scim_gateway_directory_operations_in_flight",
                "Directory operations running (bounded by directory.max_in_flight).",
            )?,
            queued: gauge(
                r,
                "scim_gateway_directory_operations_queued",
                "Directory operations waiting for a slot (bounded by directory.max_queued).",
            )?,
            rejected: counter_vec(
                r,
                "scim_gateway_directory_backpressure_rejections_total",
                "Directory operations refused with 503 by back-pressure, by reason.",
                &["reason"],
            )?,
            connections: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "scim_gateway_directory_pool_connections",
                        "Pooled directory connections, by state (open, idle).",
                    ),
                    &["state"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            search_connections: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "scim_gateway_directory_search_connections",
                        "The gateway's own connections for plain searches, by state (open, idle).",
                    ),
                    &["state"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            reconnects: counter(
                r,
                "scim_gateway_directory_reconnects_total",
                "Directory connections re-established after a loss or a failed attempt.",
            )?,
            up: gauge(
                r,
                "scim_gateway_directory_up",
                "1 when the directory answers, 0 while it is unreachable.",
            )?,
        };
        let process = ProcessMetrics {
            reloads: counter_vec(
                r,
                "scim_gateway_config_reloads_total",
                "Config reloads, by outcome.",
                &["outcome"],
            )?,
            last_reload_success: float_gauge(
                r,
                "scim_gateway_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful config load or reload.",
            )?,
            audit_records: counter_vec(
                r,
                "scim_gateway_audit_records_total",
                "Audit records of directory writes, by outcome (written, failed).",
                &["outcome"],
            )?,
        };
        let build = IntGaugeVec::new(
            Opts::new(
                "scim_gateway_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )?;
        r.register(Box::new(build.clone()))?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

        // Series that exist from the start, so dashboards and alerts see zeros rather than gaps.
        for reason in ["timeout", "error"] {
            http.tls_handshake_failures.with_label_values(&[reason]);
        }
        for outcome in ["success", "failure"] {
            process.reloads.with_label_values(&[outcome]);
        }
        for outcome in ["written", "failed"] {
            process.audit_records.with_label_values(&[outcome]);
        }
        for reason in ["queue_full", "queue_timeout"] {
            directory.rejected.with_label_values(&[reason]);
        }
        for state in ["open", "idle"] {
            directory.connections.with_label_values(&[state]);
            directory.search_connections.with_label_values(&[state]);
        }
        for q in crate::http::ratelimit::QuotaKind::ALL {
            http.rate_limited.with_label_values(&[q.label()]);
        }
        Ok(Metrics {
            http,
            directory,
            process,
        })
    }
}

/// The registry's families in the Prometheus text exposition format.
pub fn encode(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut out) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_registered_once_and_named_for_the_gateway() {
        let r = Registry::new();
        let m = Metrics::register(&r).unwrap();
        m.http
            .requests
            .with_label_values(&["Users", "GET", "2xx"])
            .inc();
        m.directory
            .operations
            .with_label_values(&["search", "success"])
            .inc();
        m.directory
            .duration
            .with_label_values(&["search"])
            .observe(0.002);
        m.http
            .duration
            .with_label_values(&["Users", "GET"])
            .observe(0.004);
        let text = encode(&r);
        for family in [
            "scim_gateway_http_requests_total",
            "scim_gateway_http_request_duration_seconds",
            "scim_gateway_http_requests_in_flight",
            "scim_gateway_rate_limited_requests_total",
            "scim_gateway_directory_operations_total",
            "scim_gateway_directory_operation_duration_seconds",
            "scim_gateway_directory_pool_connections",
            "scim_gateway_directory_search_connections",
            "scim_gateway_directory_reconnects_total",
            "scim_gateway_directory_up",
            "scim_gateway_tls_handshake_failures_total",
            "scim_gateway_tls_certificate_expiry_timestamp_seconds",
            "scim_gateway_config_reloads_total",
            "scim_gateway_build_info",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family} missing"
            );
        }
        // A second registration on the same registry is refused, not silently shared.
        assert!(Metrics::register(&r).is_err());
        // A fresh registry is independent.
        assert!(Metrics::register(&Registry::new()).is_ok());
    }

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(resource_label("/Users"), "Users");
        assert_eq!(resource_label("/Users/2819c223-7f76"), "Users");
        assert_eq!(resource_label("/Users/.search"), "search");
        assert_eq!(resource_label("/.search"), "search");
        assert_eq!(resource_label("/Groups/abc"), "Groups");
        assert_eq!(resource_label("/Bulk"), "Bulk");
        assert_eq!(resource_label("/Schemas/urn:x"), "discovery");
        assert_eq!(resource_label("/ServiceProviderConfig"), "discovery");
        assert_eq!(resource_label("/uid=alice,ou=people"), "other");
        assert_eq!(resource_label(""), "other");
        assert_eq!(method_label(&axum::http::Method::PATCH), "PATCH");
        assert_eq!(
            method_label(&axum::http::Method::from_bytes(b"BREW").unwrap()),
            "other"
        );
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(999), "5xx");
    }
}
