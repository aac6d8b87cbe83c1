//! The admin HTTP listener: Prometheus `/metrics`, `/health` (the process is up), `/ready`
//! (logs recovered and the Kafka listener serving), a JSON `/v1/status` and one topic of it,
//! `/v1/topics/{topic}` (what `lmq topics describe` reads for the cleaner state). With
//! `admin_token_file`, `/metrics` and `/v1/*` answer only requests carrying
//! `Authorization: Bearer <token>` (the probes stay open).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::metrics::{GroupLabels, GroupPartitionLabels, PartitionLabels};

/// What the admin endpoints read: the broker and the cluster it serves in.
#[derive(Clone)]
struct Served {
    broker: Arc<Broker>,
    cluster: Arc<ClusterNode>,
}

/// The bearer token the protected endpoints need: none configured, the token, or a file
/// that could not be read (then they refuse every request: fail closed).
#[derive(Clone)]
enum Token {
    Open,
    Required(Arc<String>),
    Unreadable,
}

/// `token`: what `admin_token_file` holds (`None`: no token required).
fn router(broker: Arc<Broker>, cluster: Arc<ClusterNode>, token: Token) -> Router {
    let state = Served { broker, cluster };
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status_handler))
        .route("/v1/topics/{topic}", get(topic_handler))
        .route_layer(middleware::from_fn_with_state(token, require_token))
        .with_state(state.clone());
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state)
        .merge(protected)
}

/// Lets a request through when the token matches (compared in constant time).
async fn require_token(State(token): State<Token>, request: Request, next: Next) -> Response {
    let expected = match &token {
        Token::Open => return next.run(request).await,
        Token::Required(expected) => expected,
        Token::Unreadable => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "admin_token_file cannot be read; see the broker log",
            )
                .into_response();
        }
    };
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(offered.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required (Authorization: Bearer <admin_token_file's token>)",
        )
            .into_response()
    }
}

/// The token of `admin_token_file`, its first line.
async fn load_token(broker: &Broker) -> Token {
    let Some(path) = &broker.config.admin_token_file else {
        return Token::Open;
    };
    match tokio::fs::read_to_string(path).await {
        Ok(text) => match text.lines().next().map(str::trim) {
            Some(token) if !token.is_empty() => Token::Required(Arc::new(token.to_string())),
            _ => {
                tracing::error!(path = %path.display(), "admin_token_file is empty: the protected admin endpoints refuse every request");
                Token::Unreadable
            }
        },
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "cannot read admin_token_file: the protected admin endpoints refuse every request");
            Token::Unreadable
        }
    }
}

/// Serves the admin endpoints until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    cluster: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let address = listener.local_addr().ok();
    let token = load_token(&broker).await;
    let served = axum::serve(listener, router(broker, cluster, token))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(error) = served {
        tracing::error!(?address, %error, "admin listener failed");
    }
}

/// OpenMetrics for scrapers that ask for it, the classic text format otherwise.
async fn metrics(State(served): State<Served>, headers: HeaderMap) -> Response {
    let broker = &served.broker;
    refresh_metrics(broker, &served.cluster);
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    match broker.metrics.encode() {
        Ok(text) if wants_openmetrics => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            crate::metrics::to_prometheus_text(&text),
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(Served { broker, .. }): State<Served>) -> Response {
    if broker.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn status_handler(State(served): State<Served>) -> Response {
    axum::Json(status(&served.broker, &served.cluster)).into_response()
}

async fn topic_handler(State(served): State<Served>, Path(name): Path<String>) -> Response {
    let Some(topic) = served.broker.topics.get(&name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no topic {name} on this broker\n"),
        )
            .into_response();
    };
    let mut status = topic_status(&served.broker, &served.cluster.view(), &topic);
    status["node_id"] = json!(served.broker.config.node_id);
    axum::Json(status).into_response()
}

/// `/v1/status`: this broker, the cluster as it sees it (controller, live brokers, each
/// partition's leader, replicas and ISR from the cluster metadata), its local logs with
/// their cleaner state, and the cleaner's last error.
pub fn status(broker: &Broker, cluster: &ClusterNode) -> serde_json::Value {
    let node_id = broker.config.node_id;
    let view = cluster.view();
    let topics: Vec<serde_json::Value> = broker
        .topics
        .list()
        .iter()
        .map(|topic| topic_status(broker, &view, topic))
        .collect();
    let brokers: Vec<serde_json::Value> = view
        .brokers
        .iter()
        .map(|(id, info)| json!({ "node_id": id, "address": format!("{}:{}", info.host, info.port) }))
        .collect();
    let cleaner = &broker.config.cleaner;
    json!({
        "node_id": node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "cluster_id": cluster.cluster_id,
        "uptime_seconds": broker.metrics.uptime().as_secs(),
        "ready": broker.ready.load(Ordering::Acquire),
        "controller": view.controller,
        "brokers": brokers,
        "topics": topics,
        "groups": broker.groups.list().into_iter().map(|(group, protocol_type, state)| json!({
            "group": group, "protocol_type": protocol_type, "state": state,
        })).collect::<Vec<_>>(),
        "cleaner": {
            "enabled": cleaner.enable,
            "threads": if cleaner.enable { cleaner.threads } else { 0 },
            "passes": broker.metrics.cleaner_passes.get(),
            "failed_passes": broker.metrics.cleaner_errors.get(),
            "last_error": broker.cleaner.last_error(),
        },
    })
}

/// One topic of `/v1/status`: its configs and its local partitions.
fn topic_status(
    broker: &Broker,
    view: &crate::cluster::ClusterView,
    topic: &crate::topics::Topic,
) -> serde_json::Value {
    let partitions: Vec<serde_json::Value> = topic
        .partitions
        .iter()
        .map(|partition| {
            let offsets = partition.offsets().ok();
            let stats = partition.log_stats().ok();
            let placement = view
                .metadata
                .topics
                .get(&topic.name)
                .and_then(|placed| {
                    placed
                        .partitions
                        .get(usize::try_from(partition.index).ok()?)
                })
                .cloned();
            json!({
                "partition": partition.index,
                "leader": placement.as_ref().map(|placement| placement.leader),
                "leader_epoch": placement.as_ref().map(|placement| placement.leader_epoch),
                "replicas": placement.as_ref().map(|placement| placement.replicas.clone()),
                "isr": placement.as_ref().map(|placement| placement.isr.clone()),
                "log_start_offset": offsets.map(|offsets| offsets.log_start_offset),
                "high_watermark": offsets.map(|offsets| offsets.high_watermark),
                "log_end_offset": offsets.map(|offsets| offsets.log_end_offset),
                "size_bytes": stats.map(|stats| stats.0),
                "segments": stats.map(|stats| stats.1),
                "cleaner": cleaner_status(broker, topic, partition),
            })
        })
        .collect();
    json!({
        "name": topic.name,
        "id": topic.id.to_string(),
        "configs": topic.configs,
        "partitions": partitions,
    })
}

/// The cleaner state of a compacted log (`null` for others): its policy and cleaned-up-to
/// point read from the log now, the rest as the cleaner threads last left it.
fn cleaner_status(
    broker: &Broker,
    topic: &crate::topics::Topic,
    partition: &crate::partition::Partition,
) -> serde_json::Value {
    let Ok(Some((policy, first_dirty_offset))) = partition.with_log(|log| {
        let policy = log.config().cleanup_policy;
        Ok(policy
            .compacts()
            .then(|| (policy, log.first_dirty_offset())))
    }) else {
        return serde_json::Value::Null;
    };
    let policy = if policy.deletes() {
        "compact,delete"
    } else {
        "compact"
    };
    let state = broker.cleaner.log(topic.id, partition.index);
    json!({
        "cleanup_policy": policy,
        "first_dirty_offset": first_dirty_offset,
        "dirty_ratio": state.as_ref().map(|state| state.dirty_ratio),
        "dirty_ratio_at_ms": state.as_ref().map(|state| state.looked_at_ms),
        "passes": state.as_ref().map_or(0, |state| state.passes),
        "failed_passes": state.as_ref().map_or(0, |state| state.failed_passes),
        "last_pass": state.as_ref().and_then(|state| state.last_pass.clone()),
        "last_error": state.and_then(|state| state.last_error),
    })
}

/// Brings the state gauges up to date; the admin endpoint calls it before each scrape.
pub fn refresh_metrics(broker: &Broker, cluster: &ClusterNode) {
    let metrics = &broker.metrics;
    metrics.refresh_process(&broker.config.data_dir);
    metrics.log_size.clear();
    metrics.log_segments.clear();
    metrics.log_end_offset.clear();
    let mut partitions = 0i64;
    let mut high_watermarks = std::collections::HashMap::new();
    for topic in broker.topics.list() {
        for partition in &topic.partitions {
            partitions += 1;
            let labels = PartitionLabels {
                topic: topic.name.clone(),
                partition: partition.index.to_string(),
            };
            if let Ok((size_bytes, segments, log_end_offset)) = partition.log_stats() {
                metrics
                    .log_size
                    .get_or_create(&labels)
                    .set(i64::try_from(size_bytes).unwrap_or(i64::MAX));
                metrics
                    .log_segments
                    .get_or_create(&labels)
                    .set(i64::try_from(segments).unwrap_or(i64::MAX));
                metrics
                    .log_end_offset
                    .get_or_create(&labels)
                    .set(log_end_offset);
            }
            if let Ok(offsets) = partition.offsets() {
                high_watermarks.insert(
                    (topic.name.clone(), partition.index),
                    offsets.high_watermark,
                );
            }
        }
    }
    metrics.partitions.set(partitions);
    let (led, under_replicated, offline) = replication_counts(broker, cluster);
    metrics.leader_partitions.set(led);
    metrics.under_replicated_partitions.set(under_replicated);
    metrics.offline_partitions.set(offline);
    metrics.group_members.clear();
    metrics.group_generation.clear();
    metrics.consumer_lag.clear();
    let groups = broker.groups.list();
    metrics
        .groups
        .set(i64::try_from(groups.len()).unwrap_or(i64::MAX));
    for (group_id, _, _) in groups {
        let Some(group) = broker.groups.describe(&group_id) else {
            continue;
        };
        let labels = GroupLabels {
            group: group_id.clone(),
        };
        metrics
            .group_members
            .get_or_create(&labels)
            .set(i64::try_from(group.members.len()).unwrap_or(i64::MAX));
        metrics
            .group_generation
            .get_or_create(&labels)
            .set(i64::from(group.generation_id));
        for (topic, partition, committed) in broker.groups.fetch_offsets(&group_id, None) {
            let (Some(committed), Some(high_watermark)) =
                (committed, high_watermarks.get(&(topic.clone(), partition)))
            else {
                continue;
            };
            let labels = GroupPartitionLabels {
                group: group_id.clone(),
                topic,
                partition: partition.to_string(),
            };
            metrics
                .consumer_lag
                .get_or_create(&labels)
                .set((high_watermark - committed.offset).max(0));
        }
    }
}

/// From the cluster metadata, as Kafka counts them: the partitions this broker leads,
/// those of them whose ISR is smaller than their replica set, and (on the controller
/// only, like Kafka's OfflinePartitionsCount) the partitions of the cluster without a
/// leader.
fn replication_counts(broker: &Broker, cluster: &ClusterNode) -> (i64, i64, i64) {
    let view = cluster.view();
    let node_id = broker.config.node_id;
    let partitions = view
        .metadata
        .topics
        .values()
        .flat_map(|topic| topic.partitions.iter());
    let (mut led, mut under_replicated, mut offline) = (0i64, 0i64, 0i64);
    for partition in partitions {
        if partition.leader == node_id {
            led += 1;
            if partition.isr.len() < partition.replicas.len() {
                under_replicated += 1;
            }
        }
        if partition.leader < 0 {
            offline += 1;
        }
    }
    if view.controller != node_id {
        offline = 0;
    }
    (led, under_replicated, offline)
}
