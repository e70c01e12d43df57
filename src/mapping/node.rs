//! A rendered resource before it is JSON: borrowed strings, and objects that keep their keys in
//! insertion order, as serde_json's maps do with `preserve_order`.
//!
//! A render builds one of these and then either turns it into a `Value` (for a response that is
//! trimmed or inspected further) or serializes it straight into bytes (a list page with no
//! attribute selection), with no hashed map and no copy of a string on the way. Both outputs
//! go through the same `Serialize` calls a `Value` of the same shape makes, so the bytes are the
//! same as the `Value`'s.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
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

    /// Compact JSON, appended to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Writing to a `Vec` cannot fail, and every node is serializable.
        let _ = serde_json::to_writer(out, self);
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Str(s) => serializer.serialize_str(s),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::Arr(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Obj(obj) => {
                let mut map = serializer.serialize_map(Some(obj.0.len()))?;
                for (k, v) in &obj.0 {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

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
}
