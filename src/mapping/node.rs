//! A rendered resource before it is JSON: borrowed strings, and objects that keep their keys in
//! insertion order, as serde_json's maps do with `preserve_order`.
//!
//! A render builds one of these and then either turns it into a `Value` (for a response that is
//! trimmed or inspected further) or serializes it straight into bytes (a list page with no
//! attribute selection), with no hashed map and no copy of a string on the way. The bytes are
//! the ones serde_json writes for the `Value` (the tests hold them equal).

use serde_json::{Map, Value};

/// One JSON value of a rendered resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Str(&'a str),
    Bool(bool),
    Arr(Vec<Node<'a>>),
    Obj(Obj<'a>),
}

/// A JSON object: keys in the order first inserted; inserting a key again replaces its value in
/// place (what `serde_json::Map::insert` does with `preserve_order`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Obj<'a>(Vec<(&'a str, Node<'a>)>);

impl<'a> Obj<'a> {
    pub fn new() -> Self {
        Obj(Vec::new())
    }

    /// Room for `n` members before the first reallocation.
    pub fn with_capacity(n: usize) -> Self {
        Obj(Vec::with_capacity(n))
    }

    pub fn insert(&mut self, key: &'a str, value: Node<'a>) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    /// The value under `key`, inserted from `default` first when the key is absent
    /// (`serde_json::Map::entry(key).or_insert_with(default)`).
    pub fn entry_or(&mut self, key: &'a str, default: impl FnOnce() -> Node<'a>) -> &mut Node<'a> {
        let i = match self.0.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.0.push((key, default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl Node<'_> {
    pub fn to_value(&self) -> Value {
        match self {
            Node::Str(s) => Value::String((*s).to_string()),
            Node::Bool(b) => Value::Bool(*b),
            Node::Arr(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Obj(obj) => Value::Object(
                obj.0
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), v.to_value()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }

    /// Compact JSON, appended to `out`: the bytes serde_json writes for `to_value`'s value,
    /// written here without its serializer's per-call machinery (a list page renders every
    /// string of every user through this).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Node::Str(s) => write_str(out, s),
            Node::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Node::Arr(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write_to(out);
                }
                out.push(b']');
            }
            Node::Obj(obj) => {
                out.push(b'{');
                for (i, (k, v)) in obj.0.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, k);
                    out.push(b':');
                    v.write_to(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// `s` as a JSON string (RFC 8259 section 7), escaped as serde_json escapes: `"` and `\`, the
/// control characters with their short escapes where JSON has one and as `\u00xx` otherwise;
/// everything else, non-ASCII included, as it is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut rest = bytes;
    while let Some(at) = first_escaped(rest) {
        out.extend_from_slice(&rest[..at]);
        let b = rest[at];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
            }
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Where the first byte that `write_str` escapes is in `bytes`. Eight bytes are looked at in
/// one step while none of them is one (most strings have none at all); the step's test can
/// err only towards looking closer, which the byte-by-byte scan then does.
fn first_escaped(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `v` is below `n` (n <= 0x80): a byte below `n` borrows into its own
    // high bit, and `!v` drops the bytes whose high bit was set already.
    let any_below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH != 0;
    let mut start = 0;
    for chunk in bytes.chunks_exact(8) {
        let v = u64::from_ne_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        if any_below(v, 0x20)
            || any_below(v ^ (ONES * u64::from(b'"')), 1)
            || any_below(v ^ (ONES * u64::from(b'\\')), 1)
        {
            break;
        }
        start += 8;
    }
    bytes[start..]
        .iter()
        .position(|&b| ESCAPED[usize::from(b)])
        .map(|i| start + i)
}

/// The bytes `write_str` escapes: the control characters, `"` and `\`.
const ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_keep_first_insertion_order_and_replace_in_place() {
        let mut o = Obj::new();
        o.insert("b", Node::Str("1"));
        o.insert("a", Node::Bool(true));
        o.insert("b", Node::Str("2"));
        if let Node::Arr(items) = o.entry_or("c", || Node::Arr(vec![])) {
            items.push(Node::Str("x"));
        }
        if let Node::Arr(items) = o.entry_or("c", || Node::Arr(vec![])) {
            items.push(Node::Str("y"));
        }
        assert_eq!(o.get("b"), Some(&Node::Str("2")));
        let node = Node::Obj(o);
        assert_eq!(
            node.to_value(),
            json!({"b": "2", "a": true, "c": ["x", "y"]})
        );
        let keys: Vec<String> = node
            .to_value()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["b", "a", "c"]);
    }

    #[test]
    fn bytes_are_the_values_bytes() {
        let mut inner = Obj::new();
        inner.insert(
            "value",
            Node::Str("quote \" backslash \\ newline \n é \u{1}"),
        );
        inner.insert("primary", Node::Bool(false));
        let mut o = Obj::new();
        o.insert("zeta", Node::Arr(vec![Node::Obj(inner), Node::Str("")]));
        o.insert("alpha", Node::Obj(Obj::new()));
        o.insert("list", Node::Arr(vec![]));
        let node = Node::Obj(o);
        let mut bytes = b"prefix".to_vec();
        node.write_to(&mut bytes);
        let expected = format!("prefix{}", node.to_value());
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn escaped_bytes_are_found_at_every_position_of_long_strings() {
        for c in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
            for at in 0..40 {
                let mut s = "\u{e9}x\u{7f}".repeat(8);
                s.insert(s.char_indices().nth(at).map_or(s.len(), |(i, _)| i), c);
                let mut ours = Vec::new();
                write_str(&mut ours, &s);
                assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{c:?} at {at}");
            }
        }
        assert_eq!(first_escaped(b"abcdefghijklmnop"), None);
        assert_eq!(first_escaped(b"abcdefghijklmno\""), Some(15));
        assert_eq!(first_escaped(&[0xff; 20]), None);
    }

    #[test]
    fn every_control_character_is_escaped_as_serde_json_escapes_it() {
        for c in (0u8..0x80)
            .map(char::from)
            .chain(['\u{7f}', '\u{80}', '\u{2028}', '\u{fffd}'])
        {
            let s = format!("a{c}b");
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{c:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn strings_are_written_as_serde_json_writes_them(s in proptest::prelude::any::<String>()) {
            let mut ours = b"[".to_vec();
            Node::Arr(vec![Node::Str(&s), Node::Bool(true)]).write_to(&mut ours);
            let theirs = format!("[{}", serde_json::json!([s, true]));
            proptest::prop_assert_eq!(String::from_utf8(ours).unwrap(), theirs);
        }
    }
}
