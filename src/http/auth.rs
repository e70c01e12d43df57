//! Bearer-token authentication with constant-time comparison.
//!
//! Each configured token is kept zero-padded to a common length (`PAD`, a multiple of 512 bytes).
//! A presented token is compared with `subtle` against the first as many bytes of each padded
//! token as it has itself, and its length against the token's in constant time: the time taken
//! depends on the presented token's length only, so neither the content nor the length of a
//! configured token leaks through timing. A presented token longer than the padding is refused
//! before any comparison, which tells only that it is longer than every configured token.

use crate::config::Token;
use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

/// The padding's granularity: the common length is the longest token's rounded up to it.
const PAD: usize = 512;

/// The configured tokens, each zero-padded to the same length.
pub struct TokenSet {
    tokens: Vec<(String, Padded)>,
}

struct Padded {
    bytes: Box<[u8]>,
    len: u64,
}

impl TokenSet {
    pub fn new(tokens: &[Token]) -> Self {
        let longest = tokens.iter().map(|t| t.secret.expose().len()).max();
        let padded = longest.unwrap_or(0).div_ceil(PAD).max(1) * PAD;
        TokenSet {
            tokens: tokens
                .iter()
                .map(|t| {
                    let secret = t.secret.expose().as_bytes();
                    let mut bytes = vec![0u8; padded].into_boxed_slice();
                    bytes[..secret.len()].copy_from_slice(secret);
                    let len = secret.len() as u64;
                    (t.name.clone(), Padded { bytes, len })
                })
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
        let presented = token.as_bytes();
        let mut found: Option<&str> = None;
        for (name, t) in &self.tokens {
            // Every token has the same padded length: past it, none can match.
            let prefix = t.bytes.get(..presented.len())?;
            let same = prefix.ct_eq(presented) & t.len.ct_eq(&(presented.len() as u64));
            if bool::from(same) {
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

    #[test]
    fn tokens_of_any_length_pass_and_only_they() {
        let long = "x".repeat(700);
        let s = TokenSet::new(&[
            Token {
                name: "short".into(),
                secret: Secret::new("0123456789abcdef"),
            },
            Token {
                name: "long".into(),
                secret: Secret::new(&long),
            },
        ]);
        let bearer = |t: &str| with(&[&format!("Bearer {t}")]);
        assert_eq!(s.authenticate(&bearer("0123456789abcdef")), Some("short"));
        assert_eq!(s.authenticate(&bearer(&long)), Some("long"));
        // Neither a prefix of a token nor an extension passes.
        assert_eq!(s.authenticate(&bearer(&long[..699])), None);
        assert_eq!(s.authenticate(&bearer(&format!("{long}x"))), None);
        // Longer than the padding (1,024 bytes here): refused before any comparison.
        assert_eq!(s.authenticate(&bearer(&"x".repeat(1025))), None);
        assert_eq!(s.authenticate(&bearer(&"x".repeat(1024))), None);
        // No token configured: nothing passes.
        assert_eq!(
            TokenSet::new(&[]).authenticate(&bearer("0123456789abcdef")),
            None
        );
    }
}
