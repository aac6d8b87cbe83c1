//! The KV layer: the wire types of `/v1/kv` and `/v1/txn`, reading a key (also as a blocking
//! query), transactions, and the KV operations of `Coordinator` (list, write) once their
//! arguments are checked.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::Method;
use serde::Deserialize;

use super::Inner;
use super::http::{Http, blocking_params, blocking_timeout};
use crate::coordinator::{Expected, WriteCondition};
use crate::error::{CoordError, CoordResult};
use crate::types::{FencingToken, KvEntry, LeaderInfo, Version, validate_name};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct KvPair {
    pub(super) key: String,
    pub(super) value: Option<String>,
    pub(super) modify_index: u64,
    #[serde(default)]
    pub(super) session: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnReply {
    results: Option<Vec<TxnResult>>,
    errors: Option<Vec<TxnError>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnResult {
    #[serde(rename = "KV")]
    kv: Option<KvPair>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnError {
    op_index: usize,
    what: String,
}

pub(super) enum TxnOutcome {
    /// The `ModifyIndex` of the last operation.
    Committed(u64),
    /// Operation `op_index` failed its condition.
    Rejected { op_index: usize, what: String },
}

fn decode_value(path: &str, pair: &KvPair) -> CoordResult<Vec<u8>> {
    match &pair.value {
        None => Ok(Vec::new()),
        Some(text) => BASE64
            .decode(text.as_bytes())
            .map_err(|error| CoordError::Malformed {
                path: path.to_owned(),
                detail: format!("value of {}: {error}", pair.key),
            }),
    }
}

pub(super) fn malformed(path: &str, detail: impl std::fmt::Display) -> CoordError {
    CoordError::Malformed {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

pub(super) fn entry_from(key: &str, path: &str, pair: &KvPair) -> CoordResult<KvEntry> {
    Ok(KvEntry {
        key: key.to_owned(),
        value: decode_value(path, pair)?,
        version: Version(pair.modify_index),
    })
}

pub(super) fn leader_from(
    role: &str,
    path: &str,
    pair: Option<KvPair>,
) -> CoordResult<Option<LeaderInfo>> {
    match pair {
        Some(pair) if pair.session.is_some() => Ok(Some(LeaderInfo {
            role: role.to_owned(),
            candidate: decode_value(path, &pair)?,
            token: FencingToken::leadership(role, pair.modify_index),
        })),
        _ => Ok(None),
    }
}

pub(super) async fn read_key(
    http: &Http,
    path: &str,
    blocking: Option<(u64, Duration)>,
    request_timeout: Duration,
) -> CoordResult<(Option<KvPair>, Option<u64>)> {
    let (url, timeout) = match blocking {
        Some((index, wait)) => (
            format!("/v1/kv/{path}?{}", blocking_params(index, wait)),
            blocking_timeout(wait, request_timeout),
        ),
        None => (format!("/v1/kv/{path}"), request_timeout),
    };
    let reply = http.call(Method::GET, &url, None, timeout).await?;
    match reply.status {
        200 => {
            let pairs: Vec<KvPair> =
                serde_json::from_slice(&reply.body).map_err(|error| malformed(&url, error))?;
            Ok((pairs.into_iter().find(|pair| pair.key == path), reply.index))
        }
        404 => Ok((None, reply.index)),
        status => Err(CoordError::Status {
            method: "GET",
            path: url,
            status,
            body: reply.body_text(),
        }),
    }
}

/// Consul's text for an operation its ACLs refused ("Permission denied: token with
/// AccessorID … lacks permission 'key:write' on …"; "ACL not found" for an unknown token).
fn is_acl_refusal(what: &str) -> bool {
    what.starts_with("Permission denied") || what.contains("ACL not found")
}

impl Inner {
    pub(super) async fn txn(&self, ops: Vec<serde_json::Value>) -> CoordResult<TxnOutcome> {
        let path = "/v1/txn";
        let body = serde_json::Value::Array(ops).to_string().into_bytes();
        let reply = self
            .http
            .call(Method::PUT, path, Some(body), self.config.request_timeout)
            .await?;
        match reply.status {
            200 => {
                let parsed: TxnReply =
                    serde_json::from_slice(&reply.body).map_err(|error| malformed(path, error))?;
                let index = parsed
                    .results
                    .and_then(|results| results.into_iter().last())
                    .and_then(|result| result.kv)
                    .map(|kv| kv.modify_index)
                    .ok_or_else(|| malformed(path, "no KV result"))?;
                Ok(TxnOutcome::Committed(index))
            }
            409 => {
                let parsed: TxnReply =
                    serde_json::from_slice(&reply.body).map_err(|error| malformed(path, error))?;
                let errors = parsed.errors.unwrap_or_default();
                // The ACLs refuse an operation inside the transaction with a 409 too: that
                // is no failed check (a CAS conflict, a stale fencing token, a held lock).
                if let Some(denied) = errors.iter().find(|error| is_acl_refusal(&error.what)) {
                    return Err(CoordError::AclDenied {
                        method: "PUT",
                        path: path.into(),
                        detail: denied.what.clone(),
                    });
                }
                let error = errors
                    .into_iter()
                    .next()
                    .ok_or_else(|| malformed(path, "409 without errors"))?;
                Ok(TxnOutcome::Rejected {
                    op_index: error.op_index,
                    what: error.what,
                })
            }
            status => Err(CoordError::Status {
                method: "PUT",
                path: path.into(),
                status,
                body: reply.body_text(),
            }),
        }
    }

    /// Reads one key (consul path); with `blocking`, waits for a change after that index.
    pub(super) async fn read(
        &self,
        path: &str,
        blocking: Option<(u64, Duration)>,
    ) -> CoordResult<(Option<KvPair>, Option<u64>)> {
        read_key(&self.http, path, blocking, self.config.request_timeout).await
    }

    /// `Coordinator::list` once the prefix is checked: one recursive read, sorted by key.
    pub(super) async fn list_kv(&self, prefix: &str) -> CoordResult<Vec<KvEntry>> {
        let root = self.kv_path("");
        let url = format!("/v1/kv/{root}{prefix}?recurse=true");
        let reply = self
            .http
            .call(Method::GET, &url, None, self.config.request_timeout)
            .await?;
        let pairs: Vec<KvPair> = match reply.status {
            200 => serde_json::from_slice(&reply.body).map_err(|error| malformed(&url, error))?,
            404 => Vec::new(),
            status => {
                return Err(CoordError::Status {
                    method: "GET",
                    path: url,
                    status,
                    body: reply.body_text(),
                });
            }
        };
        let mut entries = pairs
            .iter()
            .filter_map(|pair| {
                let key = pair.key.strip_prefix(&root)?;
                Some(entry_from(key, &url, pair))
            })
            .collect::<CoordResult<Vec<_>>>()?;
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }

    /// `Coordinator::write` once the key and value are checked: one transaction, the fence's
    /// `check-index` on its held key first if there is one.
    pub(super) async fn write_kv(
        &self,
        key: &str,
        value: &[u8],
        condition: WriteCondition<'_>,
    ) -> CoordResult<Version> {
        let path = self.kv_path(key);
        let mut ops = Vec::with_capacity(2);
        if let Some(fence) = condition.fence {
            validate_name(fence.name())?;
            ops.push(serde_json::json!({"KV": {
                "Verb": "check-index",
                "Key": self.hold_path(fence.kind(), fence.name()),
                "Index": fence.value(),
            }}));
        }
        let value = BASE64.encode(value);
        ops.push(match condition.expected {
            None => serde_json::json!({"KV": {"Verb": "set", "Key": path, "Value": value}}),
            Some(expected) => {
                let index = match expected {
                    Expected::Absent => 0,
                    Expected::Version(Version(version)) => version,
                };
                serde_json::json!({"KV": {"Verb": "cas", "Key": path, "Value": value, "Index": index}})
            }
        });
        let fenced_ops = usize::from(condition.fence.is_some());
        match self.txn(ops).await? {
            TxnOutcome::Committed(index) => Ok(Version(index)),
            TxnOutcome::Rejected { op_index, what } => {
                match (condition.fence, condition.expected) {
                    (Some(fence), _) if op_index == 0 => Err(CoordError::Fenced {
                        role: fence.name().to_owned(),
                        token: fence.value(),
                    }),
                    (_, Some(expected)) if op_index == fenced_ops => Err(CoordError::CasConflict {
                        key: key.to_owned(),
                        expected: match expected {
                            Expected::Absent => None,
                            Expected::Version(version) => Some(version),
                        },
                    }),
                    _ => Err(CoordError::Status {
                        method: "PUT",
                        path: "/v1/txn".into(),
                        status: 409,
                        body: what,
                    }),
                }
            }
        }
    }
}
