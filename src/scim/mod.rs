//! The SCIM 2.0 protocol layer: resources, PATCH, filters, discovery and the user service.
//!
//! Nothing here knows HTTP; handlers in `http` call the services and map `ScimError`.

pub mod discovery;
pub mod filter;
pub mod groups;
pub mod members;
pub mod patch;
pub mod time;
pub mod users;

use crate::directory::DirectoryError;

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Errors of the SCIM layer; `http::error` is the one place that turns them into responses.
#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    #[error("{0}")]
    InvalidSyntax(String),
    #[error("{0}")]
    InvalidFilter(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    NoTarget(String),
    #[error("{0}")]
    Mutability(String),
    #[error("{0}")]
    Uniqueness(String),
    #[error("{0}")]
    TooMany(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}
