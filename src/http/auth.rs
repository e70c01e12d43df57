//! Bearer-token authentication with constant-time comparison.
//!
//! Tokens are compared as SHA-256 digests with `subtle`, so neither the content
//! nor the length of a configured token leaks through timing.

use crate::config::Token;
use axum::http::{header, HeaderMap};
use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

/// The configured tokens, kept only as digests.
pub struct TokenSet {
    tokens: Vec<(String, [u8; 32])>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest(&SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl TokenSet {
    pub fn new(tokens: &[Token]) -> Self {
        TokenSet {
            tokens: tokens
                .iter()
                .map(|t| (t.name.clone(), sha256(t.secret.expose().as_bytes())))
                .collect(),
        }
    }

    /// The name of the token the request carries, or `None`. Every token is compared, whatever matches.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<&str> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None; // two Authorization headers: ambiguous, refuse
        }
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        // The scheme is case-insensitive (RFC 7235 §2.1); the token is compared exactly.
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return None;
        }
        let presented = sha256(token.as_bytes());
        let mut found: Option<&str> = None;
        for (name, d) in &self.tokens {
            if bool::from(d.ct_eq(&presented)) {
                found = Some(name);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::http::HeaderValue;

    fn set() -> TokenSet {
        TokenSet::new(&[
            Token {
                name: "entra".into(),
                secret: Secret::new("0123456789abcdef0123"),
            },
            Token {
                name: "okta".into(),
                secret: Secret::new("fedcba9876543210fedc"),
            },
        ])
    }

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_exact_tokens_pass() {
        let s = set();
        assert_eq!(
            s.authenticate(&with(&["Bearer 0123456789abcdef0123"])),
            Some("entra")
        );
        assert_eq!(
            s.authenticate(&with(&["bearer fedcba9876543210fedc"])),
            Some("okta")
        );
        assert_eq!(s.authenticate(&with(&[])), None);
        assert_eq!(s.authenticate(&with(&["Basic 0123456789abcdef0123"])), None);
        assert_eq!(s.authenticate(&with(&["Bearer "])), None);
        assert_eq!(s.authenticate(&with(&["Bearer"])), None);
        assert_eq!(s.authenticate(&with(&["Bearer 0123456789abcdef012"])), None);
        assert_eq!(
            s.authenticate(&with(&["Bearer 0123456789abcdef01234"])),
            None
        );
        assert_eq!(
            s.authenticate(&with(&["Bearer  0123456789abcdef0123"])),
            None
        );
        assert_eq!(
            s.authenticate(&with(&["Bearer 0123456789abcdef0123 "])),
            None
        );
        assert_eq!(
            s.authenticate(&with(&[
                "Bearer 0123456789abcdef0123",
                "Bearer 0123456789abcdef0123"
            ])),
            None
        );
    }
}
