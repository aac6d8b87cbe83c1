//! Decoded Kafka messages as JSON trees, read from their pretty `Debug` text: every
//! `kafka-protocol` message derives `Debug`, so this needs no per-message code and sees
//! every field, tagged ones included. Structs become objects (type names dropped), lists
//! and tuples arrays, `Some(x)` and one-field tuples are their content, and every leaf is its `Debug` text (`"name"`,
//! `b"bytes"`, `-1`, `None`), so two brokers' answers compare as text.

use serde_json::{Map, Value};

/// Leaves longer than this are stored as their length and a hash: record batches and
/// large configs stay comparable without bloating the recording.
const LEAF_CHARS_MAX: usize = 2_000;

/// The tree of a value's `{:#?}` text. Lines that do not parse end the tree early rather
/// than fail: a recording is evidence, never a reason to drop traffic.
pub fn from_debug(text: &str) -> Value {
    let mut lines = text.lines().peekable();
    let Some(first) = lines.next() else {
        return Value::Null;
    };
    match opener(first.trim()) {
        Some(kind) => parse_container(kind, &mut lines),
        None => leaf(first.trim()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Struct,
    List,
    Some,
    Tuple,
}

/// What a line opens, if it ends with `{`, `[` or `(`.
fn opener(line: &str) -> Option<Kind> {
    if line.ends_with('{') {
        Some(Kind::Struct)
    } else if line.ends_with('[') {
        Some(Kind::List)
    } else if line.ends_with("Some(") {
        Some(Kind::Some)
    } else if line.ends_with('(') {
        Some(Kind::Tuple)
    } else {
        None
    }
}

fn parse_container<'a>(kind: Kind, lines: &mut impl Iterator<Item = &'a str>) -> Value {
    let mut fields = Map::new();
    let mut items = Vec::new();
    while let Some(raw) = lines.next() {
        let line = raw.trim();
        let line = line.strip_suffix(',').unwrap_or(line);
        if matches!(line, "}" | "]" | ")") {
            break;
        }
        let (name, rest) = match kind {
            Kind::Struct => match split_field(line) {
                Some((name, rest)) => (Some(name), rest),
                None => (None, line),
            },
            _ => (None, line),
        };
        let value = match opener(rest) {
            Some(inner) => parse_container(inner, lines),
            None => leaf(rest),
        };
        match name {
            Some(name) => {
                fields.insert(name.to_string(), value);
            }
            None => items.push(value),
        }
    }
    match kind {
        Kind::Struct => Value::Object(fields),
        // `Some(x)` is `x`; so is a one-field tuple such as `Metadata(MetadataResponse {..})`,
        // the request and response enums' variants.
        Kind::Some | Kind::Tuple if items.len() == 1 => items.pop().unwrap_or(Value::Null),
        _ => Value::Array(items),
    }
}

/// `name: rest` of a struct field or map entry. Field names are identifiers; map keys
/// (tagged fields) are numbers.
fn split_field(line: &str) -> Option<(&str, &str)> {
    let (name, rest) = line.split_once(": ")?;
    let is_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_name.then_some((name, rest))
}

fn leaf(text: &str) -> Value {
    Value::String(shorten(text))
}

/// `text`, or its length and hash when it is too long to keep.
pub fn shorten(text: &str) -> String {
    if text.len() <= LEAF_CHARS_MAX {
        return text.to_string();
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    format!("<{} chars #{:016x}>", text.len(), hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmq_wire::protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponseTopic,
    };
    use lmq_wire::protocol::messages::{BrokerId, MetadataResponse, TopicName};
    use lmq_wire::protocol::protocol::StrBytes;

    #[test]
    fn a_response_becomes_a_tree_of_its_fields() {
        let mut response = MetadataResponse::default();
        let mut broker = MetadataResponseBroker::default();
        broker.node_id = BrokerId(1);
        broker.host = StrBytes::from_static_str("127.0.0.1");
        response.brokers.push(broker);
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(TopicName(StrBytes::from_static_str("orders, {east}")));
        response.topics.push(topic);
        let kind = lmq_wire::protocol::messages::ResponseKind::Metadata(response);
        let tree = from_debug(&format!("{kind:#?}"));
        assert_eq!(tree["brokers"][0]["node_id"], "1");
        assert_eq!(tree["brokers"][0]["host"], "\"127.0.0.1\"");
        assert_eq!(tree["brokers"][0]["rack"], "None");
        assert_eq!(
            tree["topics"][0]["name"], "\"orders, {east}\"",
            "Some(x) is x"
        );
        assert_eq!(tree["topics"][0]["partitions"], serde_json::json!("[]"));
        assert_eq!(tree["controller_id"], "-1");
        assert_eq!(tree["unknown_tagged_fields"], "{}");
    }

    #[test]
    fn long_leaves_keep_a_length_and_hash() {
        let long = "x".repeat(LEAF_CHARS_MAX + 1);
        let shortened = shorten(&long);
        assert!(shortened.starts_with("<2001 chars #"), "{shortened}");
        assert_eq!(shortened, shorten(&long), "deterministic");
        assert_ne!(shortened, shorten(&"y".repeat(LEAF_CHARS_MAX + 1)));
    }
}
