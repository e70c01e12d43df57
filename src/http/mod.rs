//! The HTTP front: routing, authentication, body handling and SCIM responses.
//!
//! Handlers stay thin: extract, call the service, map the error.

pub mod admin;
pub mod auth;
pub mod bulk;
pub mod client_ip;
pub mod error;
mod inplace;
pub mod json;
pub mod ratelimit;
mod ready_body;
pub mod server;
pub mod tls;

use crate::directory::{EntryReader, EntryWriter};
use crate::mapping::groups::CORE_GROUP;
use crate::mapping::CORE_USER;
use crate::scim::groups::GroupService;
use crate::scim::projection::Projection;
use crate::scim::users::{ListPage, ListQuery, UserService};
use crate::scim::{discovery, IfMatch, ScimError, LIST_RESPONSE, SEARCH_REQUEST};
use auth::TokenSet;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use error::{ApiError, SCIM_JSON};
use ratelimit::RateLimiter;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the handlers share.
pub struct AppState<D> {
    pub users: UserService<D>,
    /// Present when the config maps groups.
    pub groups: Option<GroupService<D>>,
    pub tokens: TokenSet,
    pub base_path: String,
    pub max_body_bytes: usize,
    pub max_page_size: usize,
    /// Largest number of operations one Bulk request may carry.
    pub max_bulk_operations: usize,
    pub retry_after: Duration,
    /// Request quotas; `None` when rate limiting is off.
    pub limiter: Option<Arc<RateLimiter>>,
    /// Permits for `limits.max_concurrent_requests`.
    pub concurrency: Arc<tokio::sync::Semaphore>,
    pub request_timeout: Duration,
    pub metrics: crate::metrics::HttpMetrics,
    /// Scheme for `Location` and `meta.location`: `https` on TLS listeners.
    pub scheme: &'static str,
    /// Authority used when a request carries no usable Host.
    pub fallback_authority: String,
}

type Shared<D> = Arc<AppState<D>>;
type ApiResult = Result<Response, ApiError>;

/// Build the router for one listener: the SCIM routes under the base path, and one middleware
/// (`observe`, which admits the requests below the base path) in front of them all. The routes
/// carry the base path themselves rather than sit in a nested router: nesting rebuilt each
/// request's URI without the prefix and added a router and a middleware layer per request.
pub fn router<D: EntryReader + EntryWriter + 'static>(state: Shared<D>) -> Router {
    let at = |path: &str| format!("{}{path}", state.base_path);
    Router::new()
        .route(&at("/Users"), get(list_users::<D>).post(create_user::<D>))
        .route(
            &at("/Users/{id}"),
            get(get_user::<D>)
                .put(replace_user::<D>)
                .patch(patch_user::<D>)
                .delete(delete_user::<D>),
        )
        .route(
            &at("/Groups"),
            get(list_groups::<D>).post(create_group::<D>),
        )
        .route(
            &at("/Groups/{id}"),
            get(get_group::<D>)
                .put(replace_group::<D>)
                .patch(patch_group::<D>)
                .delete(delete_group::<D>),
        )
        .route(&at("/Users/.search"), post(search_users::<D>))
        .route(&at("/Groups/.search"), post(search_groups::<D>))
        .route(&at("/.search"), post(search_all::<D>))
        .route(&at("/Bulk"), post(bulk_request::<D>))
        .route(&at("/Me"), any(me))
        .route(
            &at("/ServiceProviderConfig"),
            any(service_provider_config::<D>),
        )
        .route(&at("/Schemas"), any(schemas::<D>))
        .route(&at("/Schemas/{id}"), any(schema::<D>))
        .route(&at("/ResourceTypes"), any(resource_types::<D>))
        .route(&at("/ResourceTypes/{id}"), any(resource_type::<D>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe::<D>))
        .with_state(state)
}

/// The part of `path` below `base` (`""` for `base` itself), or `None` when `path` is not
/// under `base`. An empty base holds every path.
fn below_base<'a>(base: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The TCP peer of a connection, attached to each of its requests by the server.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The request id of a request, attached by `observe`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub const REQUEST_ID: &str = "x-request-id";

/// A client-supplied request id is kept when it is short and plain; otherwise one is generated.
fn request_id(headers: &HeaderMap) -> String {
    if let Some(v) = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        if !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
        {
            return v.to_string();
        }
    }
    generated_request_id()
}

/// 8 random bytes drawn once per process, then a counter: unique across processes and within
/// one, without a system call per request (an id ties log lines together; it is no secret).
fn generated_request_id() -> String {
    static PREFIX: std::sync::OnceLock<[u8; 8]> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
            // Without randomness, the start time still tells processes apart.
            time_based_prefix(&mut bytes);
        }
        bytes
    });
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(prefix);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    hex(&bytes)
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn time_based_prefix(bytes: &mut [u8; 8]) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    bytes.copy_from_slice(&(t as u64).to_be_bytes());
}

/// The one layer in front of the routes: a request id on the request, its log lines and its
/// response; metrics; the access log (never headers or bodies, so never a token); `Retry-After`
/// on every 503; and, for the requests below the base path, admission (`admit`).
async fn observe<D: Send + Sync + 'static>(
    State(state): State<Shared<D>>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let below = below_base(&state.base_path, &path);
    let resource = crate::metrics::resource_label(below.unwrap_or(""));
    let method_label = crate::metrics::method_label(&method);
    let rid = request_id(req.headers());
    req.extensions_mut().insert(RequestId(rid.clone()));
    let span = tracing::info_span!("request", request_id = %rid);
    let m = &state.metrics;
    let in_flight = crate::metrics::Held::enter(&m.in_flight);
    let mut counted = Counted {
        metrics: m,
        resource,
        method: method_label,
        started: Instant::now(),
        done: false,
    };
    // Paths outside the base path get their 404 without admission, as from any other server.
    let handled = async {
        if below.is_some() {
            admit(&state, resource, req, next).await
        } else {
            next.run(req).await
        }
    };
    let mut resp = tracing::Instrument::instrument(handled, span.clone()).await;
    drop(in_flight);
    let status = resp.status();
    let elapsed = counted.count(status.as_u16());
    if status == StatusCode::SERVICE_UNAVAILABLE
        && !resp.headers().contains_key(header::RETRY_AFTER)
    {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(state.retry_after.as_secs()),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    span.in_scope(|| {
        tracing::info!(
            %method,
            path,
            status = status.as_u16(),
            ms = elapsed.as_millis() as u64,
            "request"
        )
    });
    resp
}

/// The status a request is counted with when its client hung up before the answer (nginx's
/// "client closed request"): a read is dropped then (it runs in its connection's task), and
/// still counted.
const CLIENT_CLOSED: u16 = 499;

/// Counts a request and its duration: with its answer's status (`count`), or, when the request
/// is dropped before it had one, as `CLIENT_CLOSED`.
struct Counted<'a> {
    metrics: &'a crate::metrics::HttpMetrics,
    resource: &'static str,
    method: &'static str,
    started: Instant,
    done: bool,
}

impl Counted<'_> {
    /// Counts the request with `status`; its duration, which the access log shows too.
    fn count(&mut self, status: u16) -> std::time::Duration {
        self.done = true;
        let elapsed = self.started.elapsed();
        let class = crate::metrics::status_class(status);
        self.metrics
            .requests
            .with_label_values(&[self.resource, self.method, class])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[self.resource, self.method])
            .observe(elapsed.as_secs_f64());
        elapsed
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.count(CLIENT_CLOSED);
        }
    }
}

/// GET and searches read; everything else writes.
fn access(method: &Method, path: &str) -> ratelimit::Access {
    if method == Method::GET || method == Method::HEAD || path.ends_with("/.search") {
        ratelimit::Access::Read
    } else {
        ratelimit::Access::Write
    }
}

/// 429 with `Retry-After`, counted by quota.
fn limited<D>(state: &AppState<D>, l: ratelimit::Limited) -> Response {
    state
        .metrics
        .rate_limited
        .with_label_values(&[l.quota.label()])
        .inc();
    let mut resp = ApiError(ScimError::TooManyRequests(format!(
        "rate limit {} exceeded; retry after {} s",
        l.quota.label(),
        l.retry_after_secs()
    )))
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(l.retry_after_secs()));
    resp
}

/// Admission in the order that keeps abuse cheap: a client IP over its failed-authentication
/// quota is refused before any token is hashed; then the token; then the token's and the global
/// quotas; then the cap on concurrent requests, before any body is read. The request then runs
/// within the total request timeout, with its audit context set.
async fn admit<D: Send + Sync + 'static>(
    state: &AppState<D>,
    resource: &'static str,
    req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<PeerAddr>()
        .map(|p| p.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let limiter = state.limiter.as_deref();
    let ip = match limiter {
        Some(l) => client_ip::client_ip(peer, req.headers(), l.trusted_proxies()),
        None => peer,
    };
    if let Some(Err(l)) = limiter.map(|l| l.check_blocked(ip)) {
        return limited(state, l);
    }
    let token = match state.tokens.authenticate(req.headers()) {
        Some(t) => t.to_string(),
        None => {
            if let Some(Err(l)) = limiter.map(|l| l.record_failed_auth(ip)) {
                return limited(state, l);
            }
            tracing::info!(client = %ip, "authentication failed");
            return ApiError(ScimError::Unauthorized(
                "a valid bearer token is required (Authorization: Bearer <token>)".into(),
            ))
            .into_response();
        }
    };
    if let Some(Err(l)) = limiter.map(|l| l.check(&token, access(req.method(), req.uri().path()))) {
        return limited(state, l);
    }
    let Ok(_permit) = state.concurrency.clone().try_acquire_owned() else {
        state.metrics.overloaded.inc();
        return ApiError(ScimError::Overloaded(
            "the gateway is handling its maximum number of requests; retry later".into(),
        ))
        .into_response();
    };
    let context = crate::audit::RequestContext {
        request_id: req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        token,
        operation: [crate::metrics::method_label(req.method()), " ", resource].concat(),
    };
    let run = crate::audit::with_context(context, next.run(req));
    match tokio::time::timeout(state.request_timeout, run).await {
        Ok(resp) => resp,
        Err(_) => ApiError(ScimError::RequestTimeout(format!(
            "the request did not complete within {} s",
            state.request_timeout.as_secs()
        )))
        .into_response(),
    }
}

/// `POST /Bulk`; the body limit is the advertised maxPayloadSize.
async fn bulk_request<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> ApiResult {
    let body = json_body(&state, &headers, body).await?;
    let base = base_url(&state, &headers, &uri);
    let response = bulk::bulk(&state, &base, &body, state.max_bulk_operations).await?;
    Ok(scim_json(StatusCode::OK, &response))
}

/// `/Me` needs a user behind the bearer token; the gateway's tokens belong to provisioning clients.
async fn me() -> Response {
    let body = json!({"schemas": [crate::scim::ERROR], "status": "501",
        "detail": "/Me is not implemented: tokens identify provisioning clients, not users"});
    let mut resp = (StatusCode::NOT_IMPLEMENTED, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    resp
}

async fn not_found() -> ApiError {
    ApiError(ScimError::NotFound("no such endpoint".into()))
}

async fn method_not_allowed() -> ApiError {
    ApiError(ScimError::MethodNotAllowed(
        "method not allowed on this endpoint".into(),
    ))
}

/// `base_url` of a request, for the handlers that read no other header: axum's `HeaderMap`
/// extractor copies every header of the request, this reads the one it needs in place.
struct BaseUrl(String);

impl<D: Send + Sync + 'static> FromRequestParts<Shared<D>> for BaseUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Shared<D>,
    ) -> Result<Self, Self::Rejection> {
        Ok(BaseUrl(base_url(state, &parts.headers, &parts.uri)))
    }
}

/// `https://host:port/scim/v2`, from the request's Host (or HTTP/2 authority) when it is well-formed.
fn base_url<D>(state: &AppState<D>, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
        })
        .unwrap_or_else(|| state.fallback_authority.clone());
    [state.scheme, "://", &host, &state.base_path].concat()
}

/// A ListResponse for one page of resources, each trimmed to the request's attribute selection.
fn list_response(mut page: ListPage, p: &Projection, core: &str) -> Response {
    for r in &mut page.resources {
        p.apply(r, core);
    }
    json_bytes(list_body(&page))
}

/// `200 OK` with SCIM JSON already serialized.
fn json_bytes(body: Vec<u8>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    resp
}

/// The bytes of a ListResponse: each resource serialized as it is into the envelope (a `json!`
/// envelope would first copy every resource into a new `Value`).
fn list_body(page: &ListPage) -> Vec<u8> {
    crate::scim::list_json(page.total, page.start_index, &page.resources, |r, out| {
        // A `Value` always serializes: its keys are strings and its numbers finite.
        let _ = serde_json::to_writer(out, r);
    })
}

/// A SCIM JSON response; a single resource also carries its version as `ETag`.
fn scim_json(status: StatusCode, body: &Value) -> Response {
    // Straight into bytes: `to_string` would go through the formatting machinery.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| body.to_string().into_bytes());
    let mut resp = (status, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    if let Some(tag) = body["meta"]["version"]
        .as_str()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}

/// The `If-Match` precondition of a write, if the client sent one.
fn if_match(headers: &HeaderMap) -> Option<IfMatch> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(IfMatch::parse)
}

/// A read: 304 when `If-None-Match` names the resource's current version, else 200 with it.
fn read_response(headers: &HeaderMap, resource: &Value) -> Response {
    let version = resource["meta"]["version"]
        .as_str()
        .map(crate::scim::version_of_etag);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(IfMatch::parse)
        .is_some_and(|tags| version.is_some() && tags.accepts(version));
    if unchanged {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Some(tag) = resource["meta"]["version"]
            .as_str()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            resp.headers_mut().insert(header::ETAG, tag);
        }
        return resp;
    }
    scim_json(StatusCode::OK, resource)
}

/// Read and parse a JSON body within the size limit.
async fn json_body<D>(
    state: &AppState<D>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        if !ct.contains("json") {
            return Err(ScimError::UnsupportedMediaType(format!(
                "send {SCIM_JSON} or application/json, not {ct:?}"
            ))
            .into());
        }
    }
    let too_large =
        || ScimError::PayloadTooLarge(format!("the body exceeds {} bytes", state.max_body_bytes));
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return Err(too_large().into());
    }
    let bytes = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| too_large())?;
    json::parse_strict(&bytes)
        .map_err(|e| ScimError::InvalidSyntax(format!("malformed JSON: {e}")).into())
}

/// The `attributes` / `excludedAttributes` parameters of a query, gathered while it is read.
#[derive(Default)]
struct Selection<'a> {
    attributes: Option<std::borrow::Cow<'a, str>>,
    excluded: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Selection<'a> {
    /// Keeps the parameter `k` = `v` when it is one of the two; any other comes back.
    fn take(&mut self, k: &str, v: std::borrow::Cow<'a, str>) -> Option<std::borrow::Cow<'a, str>> {
        if k.eq_ignore_ascii_case("attributes") {
            self.attributes = Some(v);
        } else if k.eq_ignore_ascii_case("excludedAttributes") {
            self.excluded = Some(v);
        } else {
            return Some(v);
        }
        None
    }

    fn projection(&self) -> Result<Projection, ApiError> {
        Ok(Projection::parse(
            self.attributes.as_deref(),
            self.excluded.as_deref(),
        )?)
    }
}

/// The `attributes` / `excludedAttributes` of a request.
fn projection(raw: Option<&str>) -> Result<Projection, ApiError> {
    let mut selection = Selection::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        selection.take(&k, v);
    }
    selection.projection()
}

/// 201 with `Location` (taken before the attribute selection may drop `meta`).
fn created(resource: Value, p: &Projection, core: &str) -> Response {
    let location = resource["meta"]["location"]
        .as_str()
        .and_then(|l| HeaderValue::from_str(l).ok());
    let mut resp = projected(StatusCode::CREATED, resource, p, core);
    if let Some(loc) = location {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

/// A single resource response with the request's attribute selection applied.
fn projected(status: StatusCode, mut resource: Value, p: &Projection, core: &str) -> Response {
    p.apply(&mut resource, core);
    scim_json(status, &resource)
}

fn list_query(raw: Option<String>, max_page_size: usize) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery::default();
    let int = |k: &str, v: &str| {
        v.trim().parse::<i64>().map_err(|_| {
            ApiError(ScimError::InvalidValue(format!(
                "{k} must be an integer, got {v:?}"
            )))
        })
    };
    // One pass over the query: the attribute selection is read with the rest.
    let mut selection = Selection::default();
    let raw = raw.unwrap_or_default();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let Some(v) = selection.take(&k, v) else {
            continue;
        };
        if k.eq_ignore_ascii_case("filter") {
            q.filter = Some(v.into_owned());
        } else if k.eq_ignore_ascii_case("startIndex") {
            q.start_index = Some(int("startIndex", &v)?);
        } else if k.eq_ignore_ascii_case("count") {
            q.count = Some(int("count", &v)?.min(max_page_size as i64));
        } else if k.eq_ignore_ascii_case("sortBy") {
            q.sort_by = Some(v.into_owned());
        } else if k.eq_ignore_ascii_case("sortOrder") {
            q.descending = descending(&v)?;
        }
        // Other parameters (aadOptscim062020, ...) are ignored, as clients expect.
    }
    q.projection = selection.projection()?;
    Ok(q)
}

/// `sortOrder`: `ascending` (the default) or `descending`.
fn descending(order: &str) -> Result<bool, ApiError> {
    match order.to_ascii_lowercase().as_str() {
        "ascending" => Ok(false),
        "descending" => Ok(true),
        _ => Err(ScimError::InvalidValue(format!(
            "sortOrder {order:?} must be ascending or descending"
        ))
        .into()),
    }
}

/// The query of a `POST .../.search` body (RFC 7644 §3.4.3).
fn search_query(body: &Value, max_page_size: usize) -> Result<ListQuery, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::InvalidSyntax("a SearchRequest must be a JSON object".into()))?;
    let get = |k: &str| crate::mapping::resource::get_ci(obj, k);
    if let Some(schemas) = get("schemas") {
        let ok = schemas
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(SEARCH_REQUEST)));
        if !ok {
            return Err(
                ScimError::InvalidSyntax(format!("schemas must contain {SEARCH_REQUEST}")).into(),
            );
        }
    }
    let list = |k: &str| -> Result<Option<String>, ApiError> {
        match get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(|v| Some(v.join(",")))
                .ok_or_else(|| {
                    ScimError::InvalidValue(format!("{k} must list attribute names")).into()
                }),
            Some(_) => {
                Err(ScimError::InvalidValue(format!("{k} must list attribute names")).into())
            }
        }
    };
    let int = |k: &str| -> Result<Option<i64>, ApiError> {
        match get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::InvalidValue(format!("{k} must be an integer")).into()),
        }
    };
    let filter = match get("filter") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) => Some(f.clone()),
        Some(_) => return Err(ScimError::InvalidFilter("filter must be a string".into()).into()),
    };
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ScimError::InvalidValue(format!("{k} must be a string")).into()),
        }
    };
    Ok(ListQuery {
        filter,
        projection: Projection::parse(
            list("attributes")?.as_deref(),
            list("excludedAttributes")?.as_deref(),
        )?,
        start_index: int("startIndex")?,
        count: int("count")?.map(|c| c.min(max_page_size as i64)),
        sort_by: text("sortBy")?,
        descending: text("sortOrder")?
            .map(|o| descending(&o))
            .transpose()?
            .unwrap_or(false),
    })
}

async fn search_users<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> ApiResult {
    let body = json_body(&state, &headers, body).await?;
    let q = search_query(&body, state.max_page_size)?;
    let base = base_url(&state, &headers, &uri);
    let page = state.users.list(&q, &base).await?;
    Ok(list_response(page, &q.projection, CORE_USER))
}

async fn search_groups<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> ApiResult {
    let groups = group_service(&state)?;
    let body = json_body(&state, &headers, body).await?;
    let q = search_query(&body, state.max_page_size)?;
    let base = base_url(&state, &headers, &uri);
    let with_members = q.projection.wants(CORE_GROUP, CORE_GROUP, "members");
    let page = groups.list(&q, &base, with_members).await?;
    Ok(list_response(page, &q.projection, CORE_GROUP))
}

/// `POST /.search`: users, then groups, paged as one list. A filter naming an attribute one
/// resource type lacks matches nothing of that type.
async fn search_all<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> ApiResult {
    let body = json_body(&state, &headers, body).await?;
    let q = search_query(&body, state.max_page_size)?;
    let base = base_url(&state, &headers, &uri);
    let (start_index, count) = state.users.window(&q);
    let (start_index, count) = (start_index as i64, count as i64);
    let q = ListQuery {
        start_index: Some(start_index),
        count: Some(count),
        ..q
    };
    // A type whose schema lacks an attribute the filter names contributes nothing; only when
    // no type can take the filter is it an error.
    let mut unknown = None;
    let mut skip_unknown = |r: Result<ListPage, ScimError>| match r {
        Ok(p) => Ok(Some(p)),
        Err(e @ ScimError::UnknownFilterAttribute(_)) => {
            unknown.get_or_insert(e);
            Ok(None)
        }
        Err(e) => Err(e),
    };
    let users = skip_unknown(state.users.list(&q, &base).await)?;
    let mut applied = users.is_some();
    let users_total = users.as_ref().map_or(0, |p| p.total) as i64;
    let mut resources: Vec<Value> = users.map(|p| p.resources).unwrap_or_default();
    resources
        .iter_mut()
        .for_each(|r| q.projection.apply(r, CORE_USER));
    let mut total = users_total;
    if let Some(groups) = &state.groups {
        // The groups' part of the window: what is left of it after the users.
        let gq = ListQuery {
            start_index: Some((start_index - 1 - users_total).max(0) + 1),
            count: Some((count - resources.len() as i64).max(0)),
            ..q.clone()
        };
        let with_members = q.projection.wants(CORE_GROUP, CORE_GROUP, "members");
        if let Some(mut p) = skip_unknown(groups.list(&gq, &base, with_members).await)? {
            applied = true;
            total += p.total as i64;
            p.resources
                .iter_mut()
                .for_each(|r| q.projection.apply(r, CORE_GROUP));
            resources.extend(p.resources);
        }
    }
    if let (false, Some(e)) = (applied, unknown) {
        return Err(e.into());
    }
    let body = json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    Ok(scim_json(StatusCode::OK, &body))
}

async fn list_users<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    BaseUrl(base): BaseUrl,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = list_query(raw, state.max_page_size)?;
    if q.projection == Projection::default() {
        // Nothing to trim: each user is written straight into the body.
        return Ok(json_bytes(state.users.list_json(&q, &base).await?));
    }
    let page = state.users.list(&q, &base).await?;
    Ok(list_response(page, &q.projection, CORE_USER))
}

async fn get_user<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
) -> ApiResult {
    let base = base_url(&state, &headers, &uri);
    let p = projection(raw.as_deref())?;
    let mut user = state.users.get_projected(&id, &base, &p).await?;
    p.apply(&mut user, CORE_USER);
    Ok(read_response(&headers, &user))
}

async fn create_user<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    body: Body,
) -> ApiResult {
    let p = projection(raw.as_deref())?;
    let body = json_body(&state, &headers, body).await?;
    let base = base_url(&state, &headers, &uri);
    Ok(created(
        state.users.create(&body, &base).await?,
        &p,
        CORE_USER,
    ))
}

async fn replace_user<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let p = projection(raw.as_deref())?;
    let body = json_body(&state, &headers, body).await?;
    let base = base_url(&state, &headers, &uri);
    let user = state
        .users
        .replace_if(&id, &body, &base, if_match(&headers).as_ref())
        .await?;
    Ok(projected(StatusCode::OK, user, &p, CORE_USER))
}

async fn patch_user<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let p = projection(raw.as_deref())?;
    let body = json_body(&state, &headers, body).await?;
    let base = base_url(&state, &headers, &uri);
    let user = state
        .users
        .patch_if(&id, &body, &base, if_match(&headers).as_ref())
        .await?;
    Ok(projected(StatusCode::OK, user, &p, CORE_USER))
}

async fn delete_user<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    state
        .users
        .delete_if(&id, if_match(&headers).as_ref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn group_service<D>(state: &AppState<D>) -> Result<&GroupService<D>, ApiError> {
    state.groups.as_ref().ok_or_else(|| {
        ScimError::NotFound("groups are not configured on this gateway".into()).into()
    })
}

async fn list_groups<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    BaseUrl(base): BaseUrl,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let groups = group_service(&state)?;
    let q = list_query(raw, state.max_page_size)?;
    let with_members = q.projection.wants(CORE_GROUP, CORE_GROUP, "members");
    let page = groups.list(&q, &base, with_members).await?;
    Ok(list_response(page, &q.projection, CORE_GROUP))
}

async fn get_group<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
) -> ApiResult {
    let groups = group_service(&state)?;
    let base = base_url(&state, &headers, &uri);
    let p = projection(raw.as_deref())?;
    let with_members = p.wants(CORE_GROUP, CORE_GROUP, "members");
    let mut group = groups.get(&id, &base, with_members).await?;
    p.apply(&mut group, CORE_GROUP);
    Ok(read_response(&headers, &group))
}

async fn create_group<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    body: Body,
) -> ApiResult {
    let groups = group_service(&state)?;
    let p = projection(raw.as_deref())?;
    let body = json_body(&state, &headers, body).await?;
    let base = base_url(&state, &headers, &uri);
    Ok(created(groups.create(&body, &base).await?, &p, CORE_GROUP))
}

async fn replace_group<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let groups = group_service(&state)?;
    let p = projection(raw.as_deref())?;
    let body = json_body(&state, &headers, body).await?;
    let base = base_url(&state, &headers, &uri);
    let group = groups
        .replace_if(&id, &body, &base, if_match(&headers).as_ref())
        .await?;
    Ok(projected(StatusCode::OK, group, &p, CORE_GROUP))
}

/// Group PATCH answers 204: echoing a large member list would cost what the PATCH saved.
async fn patch_group<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let groups = group_service(&state)?;
    let body = json_body(&state, &headers, body).await?;
    groups
        .patch_if(&id, &body, if_match(&headers).as_ref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_group<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    group_service(&state)?
        .delete_if(&id, if_match(&headers).as_ref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Discovery endpoints are read-only: anything but GET is 405.
fn read_only(method: &Method) -> Result<(), ApiError> {
    if method == Method::GET || method == Method::HEAD {
        Ok(())
    } else {
        Err(ScimError::MethodNotAllowed("discovery endpoints are read-only".into()).into())
    }
}

fn list_of(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

fn all_schemas<D: EntryReader + EntryWriter>(state: &AppState<D>, base: &str) -> Vec<Value> {
    discovery::schemas(
        state.users.mapping(),
        state.groups.as_ref().map(|g| g.mapping()),
        base,
    )
}

fn all_resource_types<D: EntryReader + EntryWriter>(state: &AppState<D>, base: &str) -> Vec<Value> {
    discovery::resource_types(state.users.mapping(), state.groups.is_some(), base)
}

/// The discovery resource whose `id` is `id` (case-insensitive), or 404.
fn one_by_id(resources: Vec<Value>, id: &str, what: &str) -> ApiResult {
    resources
        .into_iter()
        .find(|r| r["id"].as_str().is_some_and(|u| u.eq_ignore_ascii_case(id)))
        .map(|r| scim_json(StatusCode::OK, &r))
        .ok_or_else(|| ScimError::NotFound(format!("no {what} {id}")).into())
}

async fn service_provider_config<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    method: Method,
    BaseUrl(base): BaseUrl,
) -> ApiResult {
    read_only(&method)?;
    Ok(scim_json(
        StatusCode::OK,
        &discovery::service_provider_config(
            &base,
            state.max_page_size,
            state.users.versioned(),
            state.max_bulk_operations,
            state.max_body_bytes,
        ),
    ))
}

async fn schemas<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    method: Method,
    BaseUrl(base): BaseUrl,
) -> ApiResult {
    read_only(&method)?;
    Ok(scim_json(
        StatusCode::OK,
        &list_of(all_schemas(&state, &base)),
    ))
}

async fn schema<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    method: Method,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> ApiResult {
    read_only(&method)?;
    one_by_id(all_schemas(&state, &base), &id, "schema")
}

async fn resource_types<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    method: Method,
    BaseUrl(base): BaseUrl,
) -> ApiResult {
    read_only(&method)?;
    Ok(scim_json(
        StatusCode::OK,
        &list_of(all_resource_types(&state, &base)),
    ))
}

async fn resource_type<D: EntryReader + EntryWriter + 'static>(
    State(state): State<Shared<D>>,
    method: Method,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> ApiResult {
    read_only(&method)?;
    one_by_id(all_resource_types(&state, &base), &id, "resource type")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_base_takes_whole_segments_only() {
        assert_eq!(below_base("/scim/v2", "/scim/v2/Users"), Some("/Users"));
        assert_eq!(below_base("/scim/v2", "/scim/v2"), Some(""));
        assert_eq!(below_base("/scim/v2", "/scim/v2/"), Some("/"));
        assert_eq!(below_base("/scim/v2", "/scim/v2x/Users"), None);
        assert_eq!(below_base("/scim/v2", "/scim"), None);
        assert_eq!(below_base("/scim/v2", "/Users"), None);
        assert_eq!(below_base("", "/Users"), Some("/Users"));
        assert_eq!(below_base("", "/"), Some("/"));
    }

    #[test]
    fn generated_request_ids_are_32_lowercase_hex_digits_and_differ() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let a = request_id(&HeaderMap::new());
        let b = request_id(&HeaderMap::new());
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, b);
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert(REQUEST_ID, HeaderValue::from_static("no spaces"));
        assert_eq!(request_id(&headers).len(), 32);
        // One random prefix per process, then a counter: no two ids alike, from any thread.
        let ids: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..2500)
                            .map(|_| generated_request_id())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert!(ids.iter().all(|id| id[..16] == a[..16]));
    }

    #[tokio::test]
    async fn scim_json_answers_the_body_compactly_with_its_version_as_etag() {
        let body = serde_json::json!({"id": "é\"1", "meta": {"version": "W/\"3\""}, "n": [1, 2.5]});
        let resp = scim_json(StatusCode::OK, &body);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], SCIM_JSON);
        assert_eq!(resp.headers()[header::ETAG], "W/\"3\"");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(bytes, body.to_string().as_bytes());
    }

    #[test]
    fn list_body_is_the_list_response_envelope_around_the_resources_as_they_are() {
        let resources = [
            serde_json::json!({"schemas": [CORE_USER], "id": "a\"1", "userName": "zoë",
                "emails": [{"value": "z@example.org", "primary": true}], "n": 2.5,
                "meta": {"version": "W/\"3\""}}),
            serde_json::json!({"id": "b", "active": false, "x": null}),
        ];
        for n in 0..=resources.len() {
            let page = ListPage {
                total: 1234,
                start_index: 7,
                resources: resources[..n].to_vec(),
            };
            let expected = serde_json::json!({
                "schemas": [LIST_RESPONSE],
                "totalResults": 1234,
                "startIndex": 7,
                "itemsPerPage": n,
                "Resources": resources[..n],
            });
            let body = list_body(&page);
            assert_eq!(
                String::from_utf8(body).unwrap(),
                expected.to_string(),
                "{n} resources"
            );
        }
    }
}
