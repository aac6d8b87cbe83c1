//! Field-level comparison of two brokers' recordings of the same cell (one client family
//! running one scenario): exchanges are paired by API, version and request (after
//! normalisation), then the paired responses are compared field by field.
//!
//! Normalisation, applied to both sides alike:
//! - names the scenario made (`compat-<family>-<scenario>-<random suffix>`, per the
//!   contract) become `<name N>` in order of first appearance, also inside other values;
//!   names of other cells become `<other>`, and list elements named `<other>` are left out
//!   (a broker lists every topic and group; the cells that made them compare them);
//! - fields of the ignore list are removed (each listed with its reason);
//! - list elements are matched by their identity field (name, partition index, node id,
//!   API key ...) rather than position, so ordering is not a difference.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A field left out of the comparison: `api` (or `*`) and a dotted path suffix without
/// list positions (`partitions.leader_id` matches `topics[..].partitions[..].leader_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignore {
    pub api: String,
    pub path: Vec<String>,
    pub reason: String,
}

/// Lines `API PATH REASON...`; `#` starts a comment. A rule without a reason is an error:
/// every ignored field must say why.
pub fn parse_ignores(text: &str) -> Result<Vec<Ignore>, String> {
    let mut rules = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(api), Some(path)) = (words.next(), words.next()) else {
            return Err(format!("line {}: expected `API PATH REASON`", number + 1));
        };
        let reason = words.collect::<Vec<_>>().join(" ");
        if reason.is_empty() {
            return Err(format!(
                "line {}: `{api} {path}` gives no reason",
                number + 1
            ));
        }
        rules.push(Ignore {
            api: api.to_string(),
            path: path.split('.').map(str::to_string).collect(),
            reason,
        });
    }
    Ok(rules)
}

/// One request and its response as recorded by the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub api: String,
    pub version: i64,
    pub request: Value,
    pub response: Value,
}

/// Exchanges of a recording (JSON lines); unreadable lines are skipped and counted.
pub fn read_exchanges(text: &str) -> (Vec<Exchange>, usize) {
    let mut out = Vec::new();
    let mut unreadable = 0;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            unreadable += 1;
            continue;
        };
        out.push(Exchange {
            api: value["api"].as_str().unwrap_or("?").to_string(),
            version: value["version"].as_i64().unwrap_or(-1),
            request: value["request"].clone(),
            response: value["response"].clone(),
        });
    }
    (out, unreadable)
}

/// A field whose value differs: `None` where one side lacks it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Difference {
    pub api: String,
    pub path: String,
    pub lmq: Option<String>,
    pub kafka: Option<String>,
}

/// What comparing one cell found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellReport {
    pub paired: usize,
    /// Exchanges with no counterpart on the other broker, by API (timing: polls, retries).
    pub only_lmq: BTreeMap<String, usize>,
    pub only_kafka: BTreeMap<String, usize>,
    pub differences: BTreeSet<Difference>,
}

/// Compares the recordings of one cell.
pub fn compare_cell(
    scenario: &str,
    lmq: &[Exchange],
    kafka: &[Exchange],
    ignores: &[Ignore],
) -> CellReport {
    let lmq = normalise(scenario, lmq, ignores);
    let kafka = normalise(scenario, kafka, ignores);
    let mut report = CellReport::default();
    let mut taken = vec![false; kafka.len()];
    for ours in &lmq {
        let partner = kafka.iter().enumerate().position(|(index, theirs)| {
            !taken[index]
                && theirs.api == ours.api
                && theirs.version == ours.version
                && theirs.request == ours.request
        });
        let Some(index) = partner else {
            *report.only_lmq.entry(ours.api.clone()).or_default() += 1;
            continue;
        };
        taken[index] = true;
        report.paired += 1;
        let mut found = Vec::new();
        diff(&ours.response, &kafka[index].response, "", &mut found);
        for (path, lmq_value, kafka_value) in found {
            report.differences.insert(Difference {
                api: ours.api.clone(),
                path,
                lmq: lmq_value,
                kafka: kafka_value,
            });
        }
    }
    for (index, theirs) in kafka.iter().enumerate() {
        if !taken[index] {
            *report.only_kafka.entry(theirs.api.clone()).or_default() += 1;
        }
    }
    report
}

/// The exchanges with names canonicalised and ignored fields removed.
fn normalise(scenario: &str, exchanges: &[Exchange], ignores: &[Ignore]) -> Vec<Exchange> {
    let mut names = Names::new(scenario);
    for exchange in exchanges {
        names.collect(&exchange.request);
        names.collect(&exchange.response);
    }
    exchanges
        .iter()
        .map(|exchange| {
            let rules: Vec<&Ignore> = ignores
                .iter()
                .filter(|rule| rule.api == "*" || rule.api == exchange.api)
                .collect();
            let clean = |value: &Value| {
                let mut value = names.replace(value);
                strip(&mut value, &mut Vec::new(), &rules);
                drop_others(&mut value);
                value
            };
            Exchange {
                api: exchange.api.clone(),
                version: exchange.version,
                request: clean(&exchange.request),
                response: clean(&exchange.response),
            }
        })
        .collect()
}

/// The scenario's names in order of first appearance.
struct Names {
    marker: String,
    ours: Vec<String>,
    others: BTreeSet<String>,
}

impl Names {
    fn new(scenario: &str) -> Self {
        Names {
            marker: format!("-{scenario}-"),
            ours: Vec::new(),
            others: BTreeSet::new(),
        }
    }

    /// Leaves that are a quoted `"compat-..."` string are names.
    fn collect(&mut self, value: &Value) {
        match value {
            Value::String(text) => {
                let Some(name) = text
                    .strip_prefix('"')
                    .and_then(|rest| rest.strip_suffix('"'))
                    .filter(|name| name.starts_with("compat-"))
                else {
                    return;
                };
                if !name.contains(&self.marker) {
                    self.others.insert(name.to_string());
                } else if !self.ours.iter().any(|known| known == name) {
                    self.ours.push(name.to_string());
                }
            }
            Value::Array(items) => items.iter().for_each(|item| self.collect(item)),
            Value::Object(fields) => fields.values().for_each(|field| self.collect(field)),
            _ => {}
        }
    }

    fn replace(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.replace_text(text)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| self.replace(item)).collect())
            }
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(key, field)| (key.clone(), self.replace(field)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Longest names first, so a name that extends another is replaced whole.
    fn replace_text(&self, text: &str) -> String {
        if !text.contains("compat-") {
            return text.to_string();
        }
        let mut replacements: Vec<(&str, String)> = self
            .ours
            .iter()
            .enumerate()
            .map(|(index, name)| (name.as_str(), format!("<name {}>", index + 1)))
            .chain(
                self.others
                    .iter()
                    .map(|name| (name.as_str(), "<other>".to_string())),
            )
            .collect();
        replacements.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
        let mut out = text.to_string();
        for (name, token) in replacements {
            out = out.replace(name, &token);
        }
        out
    }
}

/// Removes the fields `rules` name from `value`; `path` is the field names down to it.
fn strip(value: &mut Value, path: &mut Vec<String>, rules: &[&Ignore]) {
    match value {
        Value::Object(fields) => {
            let names: Vec<String> = fields.keys().cloned().collect();
            for name in names {
                path.push(name.clone());
                if rules.iter().any(|rule| path.ends_with(&rule.path)) {
                    fields.remove(&name);
                } else if let Some(field) = fields.get_mut(&name) {
                    strip(field, path, rules);
                }
                path.pop();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| strip(item, path, rules)),
        _ => {}
    }
}

/// Removes list elements that are, or are named, another cell's name.
fn drop_others(value: &mut Value) {
    const OTHER: &str = "\"<other>\"";
    match value {
        Value::Array(items) => {
            items.retain(|item| match item {
                Value::String(text) => text != OTHER,
                Value::Object(fields) => !IDENTITIES
                    .iter()
                    .any(|field| fields.get(*field).and_then(Value::as_str) == Some(OTHER)),
                _ => true,
            });
            items.iter_mut().for_each(drop_others);
        }
        Value::Object(fields) => fields.values_mut().for_each(drop_others),
        _ => {}
    }
}

/// Fields that identify a list element, in order of preference.
const IDENTITIES: &[&str] = &[
    "api_key",
    "name",
    "topic",
    "topic_name",
    "resource_name",
    "group_id",
    "partition_index",
    "partition",
    "node_id",
    "broker_id",
    "key",
];

/// An element's identity: its first identity field, or its whole text.
fn identity(value: &Value) -> String {
    if let Value::Object(fields) = value {
        for field in IDENTITIES {
            if let Some(found) = fields.get(*field) {
                return format!("{field}={}", text(found));
            }
        }
    }
    text(value)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Collects `(path, lmq, kafka)` for every leaf that differs.
fn diff(
    lmq: &Value,
    kafka: &Value,
    path: &str,
    out: &mut Vec<(String, Option<String>, Option<String>)>,
) {
    match (lmq, kafka) {
        (Value::Object(ours), Value::Object(theirs)) => {
            let keys: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
            for key in keys {
                let inner = join(path, key);
                match (ours.get(key), theirs.get(key)) {
                    (Some(a), Some(b)) => diff(a, b, &inner, out),
                    (a, b) => out.push((inner, a.map(text), b.map(text))),
                }
            }
        }
        (Value::Array(ours), Value::Array(theirs)) => {
            let ours = by_identity(ours);
            let theirs = by_identity(theirs);
            let keys: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
            for key in keys {
                let inner = format!("{path}[{key}]");
                match (ours.get(key), theirs.get(key)) {
                    (Some(a), Some(b)) => diff(a, b, &inner, out),
                    (a, b) => out.push((
                        inner,
                        a.map(|_| "present".into()),
                        b.map(|_| "present".into()),
                    )),
                }
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push((path.to_string(), Some(text(a)), Some(text(b)))),
    }
}

/// Elements by identity; repeated identities get `#2`, `#3` ... in order.
fn by_identity(items: &[Value]) -> BTreeMap<String, &Value> {
    let mut out = BTreeMap::new();
    for item in items {
        let base = identity(item);
        let mut key = base.clone();
        let mut count = 1;
        while out.contains_key(&key) {
            count += 1;
            key = format!("{base}#{count}");
        }
        out.insert(key, item);
    }
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn object(fields: &[(&str, Value)]) -> Value {
        let mut map = Map::new();
        for (key, value) in fields {
            map.insert((*key).to_string(), value.clone());
        }
        Value::Object(map)
    }

    fn exchange(api: &str, request: Value, response: Value) -> Exchange {
        Exchange {
            api: api.to_string(),
            version: 1,
            request,
            response,
        }
    }

    #[test]
    fn ignore_rules_need_a_reason() {
        let rules = parse_ignores("# c\n* cluster_id each broker makes its own\n").unwrap();
        assert_eq!(rules[0].path, ["cluster_id"]);
        assert_eq!(rules[0].reason, "each broker makes its own");
        assert!(parse_ignores("* cluster_id\n").is_err());
    }

    #[test]
    fn names_order_and_ignored_fields_are_not_differences() {
        let ignores = parse_ignores("Metadata cluster_id random per cluster\n").unwrap();
        let ours = [exchange(
            "Metadata",
            json!({"topics": [{"name": "\"compat-x-metadata-aa\""}]}),
            json!({"cluster_id": "\"a\"", "topics": [
                {"name": "\"compat-x-other-zz\"", "error_code": "0"},
                {"name": "\"compat-x-other-zy\"", "error_code": "3"},
                {"name": "\"compat-x-metadata-aa\"", "error_code": "0"}
            ]}),
        )];
        let theirs = [exchange(
            "Metadata",
            json!({"topics": [{"name": "\"compat-x-metadata-bbbb\""}]}),
            json!({"cluster_id": "\"b\"", "topics": [
                {"name": "\"compat-x-metadata-bbbb\"", "error_code": "0"},
                {"name": "\"compat-x-other-yy\"", "error_code": "0"}
            ]}),
        )];
        let report = compare_cell("metadata", &ours, &theirs, &ignores);
        assert_eq!(report.paired, 1);
        assert!(report.differences.is_empty(), "{:?}", report.differences);
    }

    #[test]
    fn a_differing_field_is_reported_with_its_path() {
        let ours = [exchange(
            "Fetch",
            json!({"offset": "5"}),
            object(&[(
                "responses",
                json!([{"partition_index": "0", "error_code": "0"}]),
            )]),
        )];
        let theirs = [
            exchange("Fetch", json!({"offset": "4"}), json!({})),
            exchange(
                "Fetch",
                json!({"offset": "5"}),
                json!({"responses": [{"partition_index": "0", "error_code": "1"}, {"partition_index": "1"}]}),
            ),
        ];
        let report = compare_cell("s", &ours, &theirs, &[]);
        assert_eq!(report.paired, 1);
        assert_eq!(report.only_kafka.get("Fetch"), Some(&1));
        let found: Vec<_> = report.differences.iter().cloned().collect();
        assert_eq!(
            found,
            [
                Difference {
                    api: "Fetch".into(),
                    path: "responses[partition_index=0].error_code".into(),
                    lmq: Some("0".into()),
                    kafka: Some("1".into()),
                },
                Difference {
                    api: "Fetch".into(),
                    path: "responses[partition_index=1]".into(),
                    lmq: None,
                    kafka: Some("present".into()),
                },
            ]
        );
    }

    #[test]
    fn names_inside_other_values_are_replaced_too() {
        let names = {
            let mut names = Names::new("s");
            names.collect(&json!(["\"compat-f-s-1\"", "\"compat-f-s-12\""]));
            names
        };
        assert_eq!(
            names.replace_text("b\"\\0\\x0ccompat-f-s-12 and compat-f-s-1\""),
            "b\"\\0\\x0c<name 2> and <name 1>\""
        );
    }
}
