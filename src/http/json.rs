//! Strict JSON for request bodies: a key repeated in one object is refused, because clients and
//! the gateway would otherwise disagree on which value counts (serde_json keeps the last one).

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Walks a whole document and fails on the first object with a repeated key.
struct NoDuplicates;

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!(
                    "key {key:?} appears twice in one object"
                )));
            }
            map.next_value_seed(NoDuplicates)?;
        }
        Ok(())
    }
}

/// Parse a body, refusing repeated keys; the error text is safe to show the client.
pub fn parse_strict(bytes: &[u8]) -> Result<serde_json::Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    NoDuplicates
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        assert!(parse_strict(br#"{"a":1,"b":{"c":[1,{"d":2}]}}"#).is_ok());
        let e = parse_strict(br#"{"userName":"a","userName":"b"}"#).unwrap_err();
        assert!(e.contains("userName") && e.contains("twice"), "{e}");
        assert!(parse_strict(br#"{"x":[{"k":1,"k":2}]}"#).is_err());
        // The same key in two different objects is fine.
        assert!(parse_strict(br#"[{"k":1},{"k":2}]"#).is_ok());
    }

    #[test]
    fn malformed_deep_and_out_of_range_input_is_an_error_not_a_crash() {
        assert!(parse_strict(b"{\"a\":").is_err());
        assert!(parse_strict(b"\xff\xfe").is_err());
        assert!(parse_strict("[".repeat(10_000).as_bytes()).is_err());
        assert!(parse_strict(br#"{"n": 1e999}"#).is_err());
        assert!(parse_strict(br#"{"a":1} trailing"#).is_err());
        // A big integer that fits u64 is still a number.
        assert!(parse_strict(br#"{"n": 18446744073709551615}"#).is_ok());
    }
}
