//! Strict JSON for request bodies: a key repeated in one object is refused, because clients and
//! the gateway would otherwise disagree on which value counts (serde_json keeps the last one).

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Builds the document's value, as serde_json's own `Value` does, and fails on the first object
/// with a repeated key: one pass over the body (a separate check pass cost as much again).
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // As serde_json's `Value` keeps it (a JSON text has no NaN or infinity).
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match out.entry(key) {
                serde_json::map::Entry::Occupied(o) => {
                    return Err(de::Error::custom(format!(
                        "key {:?} appears twice in one object",
                        o.key()
                    )));
                }
                serde_json::map::Entry::Vacant(v) => {
                    v.insert(map.next_value_seed(Strict)?);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Parse a body, refusing repeated keys; the error text is safe to show the client.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
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

    /// Without repeated keys the value is serde_json's own, key order and numbers included.
    #[test]
    fn the_value_is_serde_jsons() {
        for text in [
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}"#,
            r#"{"z":1,"a":{"y":[true,false,null],"b":-7},"m":"\u00e9\"\n","n":18446744073709551615}"#,
            r#"[1.5,-0.0,1e300,2.5e-8,123456789012345678901234567890,-9223372036854775808]"#,
            r#"{"emails":[{"value":"a@example.org","type":"work","primary":true}],"name":{}}"#,
            r#""just text""#,
            "  {\"spaced\" : [ ] }  ",
            "null",
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            let got = parse_strict(text.as_bytes()).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), want.to_string(), "{text}");
        }
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
