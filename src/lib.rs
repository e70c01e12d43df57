//! scim-ldap-gateway: a SCIM 2.0 reverse proxy that provisions users from Entra ID and Okta
//! into an existing LDAP directory.
//!
//! Layers: `http` → `scim` (with `mapping`) → `directory` traits ← `directory::ldap`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod audit;
pub mod check;
pub mod config;
pub mod directory;
pub mod http;
pub mod mapping;
pub mod metrics;
pub mod probe;
pub mod scim;
