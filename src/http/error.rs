//! The one place where errors become HTTP responses (RFC 7644 §3.12 error bodies).

use crate::directory::DirectoryError;
use crate::scim::{ScimError, ERROR};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub const SCIM_JSON: &str = "application/scim+json";

/// Status, `scimType` and client-facing detail for an error.
pub fn classify(err: &ScimError) -> (StatusCode, Option<&'static str>, String) {
    use StatusCode as S;
    match err {
        ScimError::InvalidSyntax(d) => (S::BAD_REQUEST, Some("invalidSyntax"), d.clone()),
        ScimError::InvalidFilter(d) | ScimError::UnknownFilterAttribute(d) => {
            (S::BAD_REQUEST, Some("invalidFilter"), d.clone())
        }
        ScimError::InvalidValue(d) => (S::BAD_REQUEST, Some("invalidValue"), d.clone()),
        ScimError::InvalidPath(d) => (S::BAD_REQUEST, Some("invalidPath"), d.clone()),
        ScimError::NoTarget(d) => (S::BAD_REQUEST, Some("noTarget"), d.clone()),
        ScimError::Mutability(d) => (S::BAD_REQUEST, Some("mutability"), d.clone()),
        ScimError::TooMany(d) => (S::BAD_REQUEST, Some("tooMany"), d.clone()),
        ScimError::Uniqueness(d) => (S::CONFLICT, Some("uniqueness"), d.clone()),
        ScimError::NotFound(d) => (S::NOT_FOUND, None, d.clone()),
        ScimError::Unauthorized(d) => (S::UNAUTHORIZED, None, d.clone()),
        ScimError::MethodNotAllowed(d) => (S::METHOD_NOT_ALLOWED, None, d.clone()),
        ScimError::PayloadTooLarge(d) => (S::PAYLOAD_TOO_LARGE, None, d.clone()),
        ScimError::UnsupportedMediaType(d) => (S::UNSUPPORTED_MEDIA_TYPE, None, d.clone()),
        ScimError::PreconditionFailed(d) => (S::PRECONDITION_FAILED, None, d.clone()),
        ScimError::TooManyRequests(d) => (S::TOO_MANY_REQUESTS, None, d.clone()),
        ScimError::Overloaded(d) => (S::SERVICE_UNAVAILABLE, None, d.clone()),
        ScimError::RequestTimeout(d) => (S::GATEWAY_TIMEOUT, None, d.clone()),
        ScimError::Directory(d) => match d {
            DirectoryError::Unavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                None,
                "the directory is unreachable; retry later".into(),
            ),
            DirectoryError::Timeout(t) => (
                S::GATEWAY_TIMEOUT,
                None,
                format!("the directory did not answer within {} s", t.as_secs()),
            ),
            DirectoryError::AlreadyExists => (
                S::CONFLICT,
                Some("uniqueness"),
                "the entry already exists".into(),
            ),
            DirectoryError::NoSuchObject => (S::NOT_FOUND, None, "resource not found".into()),
            DirectoryError::Rejected { code, message } => (
                S::BAD_REQUEST,
                Some("invalidValue"),
                format!("the directory rejected the change ({code}): {message}"),
            ),
            DirectoryError::Conflict => (
                S::CONFLICT,
                None,
                "the resource kept changing while it was being updated; retry".into(),
            ),
            DirectoryError::SizeLimit => (
                S::BAD_REQUEST,
                Some("tooMany"),
                "the filter matches more entries than the gateway walks; narrow it".into(),
            ),
            DirectoryError::SortLimit(n) => (
                S::BAD_REQUEST,
                Some("tooMany"),
                format!("the directory cannot sort by this attribute and the gateway sorts at most {n} results; narrow the filter"),
            ),
            DirectoryError::OutsideSubtree => (
                S::INTERNAL_SERVER_ERROR,
                None,
                "internal error: refused to touch an entry outside the configured subtrees".into(),
            ),
            DirectoryError::InvalidGuard(_) => (
                S::INTERNAL_SERVER_ERROR,
                None,
                "internal error: the write's check of its entry could not be built; nothing was written".into(),
            ),
            DirectoryError::Overloaded => (
                S::SERVICE_UNAVAILABLE,
                None,
                "the gateway is at its limit of concurrent directory operations; retry later".into(),
            ),
            DirectoryError::Other { code, .. } => (
                S::BAD_GATEWAY,
                None,
                format!("the directory refused the operation ({code})"),
            ),
        },
    }
}

/// A SCIM error as a response. `Retry-After` on 503 is added by `http::retry_after`.
pub struct ApiError(pub ScimError);

impl From<ScimError> for ApiError {
    fn from(e: ScimError) -> Self {
        ApiError(e)
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        ApiError(ScimError::Directory(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, scim_type, detail) = classify(&self.0);
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self.0, "request failed");
        }
        let mut body =
            json!({"schemas": [ERROR], "status": status.as_u16().to_string(), "detail": detail});
        if let Some(t) = scim_type {
            body["scimType"] = json!(t);
        }
        let mut resp = (status, body.to_string()).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scim\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn status(e: ScimError) -> (u16, Option<&'static str>) {
        let (s, t, _) = classify(&e);
        (s.as_u16(), t)
    }

    #[test]
    fn every_arm() {
        assert_eq!(
            status(ScimError::InvalidSyntax("x".into())),
            (400, Some("invalidSyntax"))
        );
        assert_eq!(
            status(ScimError::UnknownFilterAttribute("x".into())),
            (400, Some("invalidFilter"))
        );
        assert_eq!(
            status(ScimError::InvalidFilter("x".into())),
            (400, Some("invalidFilter"))
        );
        assert_eq!(
            status(ScimError::InvalidValue("x".into())),
            (400, Some("invalidValue"))
        );
        assert_eq!(
            status(ScimError::InvalidPath("x".into())),
            (400, Some("invalidPath"))
        );
        assert_eq!(
            status(ScimError::NoTarget("x".into())),
            (400, Some("noTarget"))
        );
        assert_eq!(
            status(ScimError::Mutability("x".into())),
            (400, Some("mutability"))
        );
        assert_eq!(
            status(ScimError::TooMany("x".into())),
            (400, Some("tooMany"))
        );
        assert_eq!(
            status(ScimError::Uniqueness("x".into())),
            (409, Some("uniqueness"))
        );
        assert_eq!(status(ScimError::NotFound("x".into())), (404, None));
        assert_eq!(status(ScimError::Unauthorized("x".into())), (401, None));
        assert_eq!(status(ScimError::MethodNotAllowed("x".into())), (405, None));
        assert_eq!(status(ScimError::PayloadTooLarge("x".into())), (413, None));
        assert_eq!(
            status(ScimError::UnsupportedMediaType("x".into())),
            (415, None)
        );
        assert_eq!(
            status(ScimError::PreconditionFailed("x".into())),
            (412, None)
        );
        assert_eq!(status(ScimError::TooManyRequests("x".into())), (429, None));
        assert_eq!(status(ScimError::Overloaded("x".into())), (503, None));
        assert_eq!(status(ScimError::RequestTimeout("x".into())), (504, None));
        let d = |e| status(ScimError::Directory(e));
        assert_eq!(d(DirectoryError::Unavailable("down".into())), (503, None));
        assert_eq!(
            d(DirectoryError::Timeout(Duration::from_secs(3))),
            (504, None)
        );
        assert_eq!(d(DirectoryError::AlreadyExists), (409, Some("uniqueness")));
        assert_eq!(d(DirectoryError::NoSuchObject), (404, None));
        assert_eq!(
            d(DirectoryError::Rejected {
                code: "objectClassViolation",
                message: "attribute 'c' not allowed".into()
            }),
            (400, Some("invalidValue"))
        );
        assert_eq!(d(DirectoryError::Conflict), (409, None));
        assert_eq!(d(DirectoryError::Overloaded), (503, None));
        assert_eq!(d(DirectoryError::SizeLimit), (400, Some("tooMany")));
        assert_eq!(d(DirectoryError::SortLimit(10)), (400, Some("tooMany")));
        assert_eq!(d(DirectoryError::OutsideSubtree), (500, None));
        assert_eq!(
            d(DirectoryError::InvalidGuard("(uid=a".into())),
            (500, None)
        );
        assert_eq!(
            d(DirectoryError::Other {
                code: "insufficientAccessRights",
                message: String::new()
            }),
            (502, None)
        );
    }

    #[test]
    fn rejected_detail_names_the_attribute() {
        let (_, _, detail) = classify(&ScimError::Directory(DirectoryError::Rejected {
            code: "invalidAttributeSyntax",
            message: "telephoneNumber: value #0 invalid per syntax".into(),
        }));
        assert!(detail.contains("telephoneNumber"), "{detail}");
    }

    #[test]
    fn body_shape() {
        let resp = ApiError(ScimError::Unauthorized("no".into())).into_response();
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"scim\""
        );
        assert_eq!(resp.headers()[header::CONTENT_TYPE], SCIM_JSON);
    }
}
