//! `ConsulCoordinator`: the contract on a real Consul agent.
//!
//! Layout under `key_prefix` (default `lmq`): `kv/<key>` for metadata, `leader/<role>` and
//! `lock/<name>` for held keys; brokers are the service `service_name` (default
//! `lmq-broker`), one instance `<service_name>-<broker_id>` per broker with tags
//! `broker_id=<id>` and `rack=<rack>`.
//!
//! What goes through rs-consul and what is called directly (see `http`):
//! - rs-consul: the health query with its passing-only filter (`brokers`, `watch_brokers`,
//!   blocking), releasing a held key (`?release=`), deleting a key.
//! - Direct, because rs-consul 0.15 has no such call: sessions (create, renew, destroy,
//!   info), agent service registration with TTL/TCP checks and check passes, `/v1/txn`,
//!   `/v1/status/leader`.
//! - Direct although rs-consul has a call: KV reads (its `read_key` turns a 404 into an
//!   error without the `X-Consul-Index`, so a watch on an absent key could not block, and it
//!   rejects values that are not UTF-8), and KV writes (its PUT answers only true/false, but
//!   a write must return the new `ModifyIndex`, and a fenced write needs a transaction that
//!   checks the leader key's index; `/v1/txn` does both atomically).

mod http;
mod lock;
mod session;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::Method;
use serde::Deserialize;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::coordinator::{
    AbortOnDrop, Coordinator, Expected, Hold, HoldState, Leadership, LockGuard, Release, Watch,
    WriteCondition,
};
use crate::error::{CoordError, CoordResult, LossReason};
use crate::types::{
    BrokerInfo, BrokerRegistration, FencingToken, HealthCheck, HoldKind, KvEntry, LeaderInfo,
    Version, validate_name, validate_prefix, validate_value,
};
use http::{Http, blocking_params, blocking_timeout, go_duration};
use session::{Session, SessionState, next_index};

/// Settings of a `ConsulCoordinator`. Durations are bounded by Consul's own limits.
#[derive(Debug, Clone)]
pub struct ConsulConfig {
    /// The agent's HTTP address, e.g. `http://127.0.0.1:8500`.
    pub address: String,
    /// ACL token, if the agent requires one.
    pub token: Option<String>,
    /// Root of every key this coordinator reads or writes.
    pub key_prefix: String,
    /// Consul service name of the brokers.
    pub service_name: String,
    /// Session (and session health check) TTL: 10 s to 24 h, as Consul allows.
    pub session_ttl: Duration,
    /// After a session is invalidated, its keys cannot be acquired for this long (≤ 60 s).
    pub lock_delay: Duration,
    /// The holder steps down this long before its session can expire on the servers.
    pub step_down_margin: Duration,
    /// How long one blocking query waits for a change (≥ 1 s, ≤ 10 min).
    pub watch_wait: Duration,
    /// Timeout of every non-blocking request.
    pub request_timeout: Duration,
    /// Longest pause between retries of a failing watch.
    pub retry_backoff_max: Duration,
}

impl ConsulConfig {
    pub fn new(address: impl Into<String>) -> Self {
        ConsulConfig {
            address: address.into(),
            token: None,
            key_prefix: "lmq".into(),
            service_name: "lmq-broker".into(),
            session_ttl: Duration::from_secs(10),
            lock_delay: Duration::from_secs(5),
            step_down_margin: Duration::from_secs(1),
            watch_wait: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            retry_backoff_max: Duration::from_secs(2),
        }
    }

    fn validate(&self) -> CoordResult<()> {
        let invalid = |text: String| Err(CoordError::InvalidConfig(text));
        validate_name(&self.key_prefix)?;
        validate_name(&self.service_name)?;
        if self.service_name.contains('/') {
            return invalid(format!("service name {:?} contains '/'", self.service_name));
        }
        if !(self.address.starts_with("http://") || self.address.starts_with("https://")) {
            return invalid(format!("address {:?} is not http(s)://", self.address));
        }
        if self.session_ttl < Duration::from_secs(10)
            || self.session_ttl > Duration::from_secs(86_400)
        {
            return invalid(format!(
                "session_ttl {:?} outside 10 s..=24 h",
                self.session_ttl
            ));
        }
        if self.lock_delay > Duration::from_secs(60) {
            return invalid(format!("lock_delay {:?} above 60 s", self.lock_delay));
        }
        if self.step_down_margin.is_zero() || self.step_down_margin >= self.session_ttl / 2 {
            return invalid(format!(
                "step_down_margin {:?} must be above 0 and below half the session TTL",
                self.step_down_margin
            ));
        }
        if self.watch_wait < Duration::from_secs(1) || self.watch_wait > Duration::from_secs(600) {
            return invalid(format!(
                "watch_wait {:?} outside 1 s..=10 min",
                self.watch_wait
            ));
        }
        if self.request_timeout.is_zero() || self.retry_backoff_max.is_zero() {
            return invalid("request_timeout and retry_backoff_max must be above 0".into());
        }
        Ok(())
    }
}

/// A client of a Consul agent: one session (created on first need) for its leaderships and
/// locks, the brokers it registered, its watches. `close` ends them cleanly; dropping it is
/// like a crash (the session lapses after its TTL).
#[derive(Debug)]
pub struct ConsulCoordinator {
    inner: Arc<Inner>,
}

struct Inner {
    config: ConsulConfig,
    http: Arc<Http>,
    consul: rs_consul::Consul,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// Keys held (or being acquired) through this client, with the id of that claim: a
    /// lost hold's late release must not touch a newer claim of the same key.
    held: Mutex<HashMap<String, u64>>,
    next_claim: AtomicU64,
    /// Registered brokers, with the task passing a TTL check.
    registrations: Mutex<HashMap<u32, Option<AbortOnDrop>>>,
    closed: watch::Sender<bool>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KvPair {
    key: String,
    value: Option<String>,
    modify_index: u64,
    #[serde(default)]
    session: Option<String>,
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

enum TxnOutcome {
    /// The `ModifyIndex` of the last operation.
    Committed(u64),
    /// Operation `op_index` failed its condition.
    Rejected { op_index: usize, what: String },
}

fn lock_map<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

fn malformed(path: &str, detail: impl std::fmt::Display) -> CoordError {
    CoordError::Malformed {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

impl ConsulCoordinator {
    /// Checks the configuration and that the agent answers with a raft leader.
    pub async fn connect(config: ConsulConfig) -> CoordResult<ConsulCoordinator> {
        config.validate()?;
        let client = http::build_client();
        let http = Arc::new(Http::new(
            client.clone(),
            &config.address,
            config.token.clone(),
        ));
        let rs_config = rs_consul::Config {
            address: config.address.trim_end_matches('/').to_owned(),
            token: config.token.clone(),
            ..rs_consul::Config::default()
        };
        let consul = rs_consul::Consul::new_with_client(rs_config, client);
        let (closed, _) = watch::channel(false);
        let coordinator = ConsulCoordinator {
            inner: Arc::new(Inner {
                config,
                http,
                consul,
                session: tokio::sync::Mutex::new(None),
                held: Mutex::new(HashMap::new()),
                next_claim: AtomicU64::new(1),
                registrations: Mutex::new(HashMap::new()),
                closed,
            }),
        };
        let leader = coordinator.raft_leader().await?;
        if leader.is_empty() {
            return Err(CoordError::Status {
                method: "GET",
                path: "/v1/status/leader".into(),
                status: 200,
                body: "no raft leader".into(),
            });
        }
        Ok(coordinator)
    }

    pub fn config(&self) -> &ConsulConfig {
        &self.inner.config
    }

    /// The raft leader's address as this agent sees it (empty while there is none).
    pub async fn raft_leader(&self) -> CoordResult<String> {
        let path = "/v1/status/leader";
        let reply = self
            .inner
            .http
            .call_ok(Method::GET, path, None, self.inner.config.request_timeout)
            .await?;
        serde_json::from_slice::<String>(&reply.body).map_err(|error| malformed(path, error))
    }

    /// HTTP requests sent so far (direct and through rs-consul): watches must not poll.
    pub fn requests_sent(&self) -> u64 {
        self.inner.http.requests_sent()
    }

    /// The current session's id, if one is alive.
    pub async fn session_id(&self) -> Option<String> {
        let slot = self.inner.session.lock().await;
        slot.as_ref()
            .filter(|session| session.is_alive())
            .map(|session| session.id.clone())
    }
}

impl Inner {
    fn ensure_open(&self) -> CoordResult<()> {
        if *self.closed.borrow() {
            return Err(CoordError::Closed);
        }
        Ok(())
    }

    fn kv_path(&self, key: &str) -> String {
        format!("{}/kv/{key}", self.config.key_prefix)
    }

    fn hold_path(&self, kind: HoldKind, name: &str) -> String {
        match kind {
            HoldKind::Leadership => format!("{}/leader/{name}", self.config.key_prefix),
            HoldKind::Lock => format!("{}/lock/{name}", self.config.key_prefix),
        }
    }

    /// The alive session, created if there is none.
    async fn session(&self) -> CoordResult<Arc<Session>> {
        self.ensure_open()?;
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_ref() {
            if session.is_alive() {
                return Ok(Arc::clone(session));
            }
            // Given up locally (stepped down) or gone: make sure the servers drop it too.
            let old = Arc::clone(session);
            tokio::spawn(async move { old.destroy(LossReason::LeaseExpired).await });
        }
        let session = Arc::new(Session::create(Arc::clone(&self.http), &self.config).await?);
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }

    async fn txn(&self, ops: Vec<serde_json::Value>) -> CoordResult<TxnOutcome> {
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
                let error = parsed
                    .errors
                    .and_then(|errors| errors.into_iter().next())
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
    async fn read(
        &self,
        path: &str,
        blocking: Option<(u64, Duration)>,
    ) -> CoordResult<(Option<KvPair>, Option<u64>)> {
        read_key(&self.http, path, blocking, self.config.request_timeout).await
    }

    /// A watch fed by a blocking-query loop: `fetch(index)` returns the state and the index
    /// for the next query. Errors are retried with backoff (and logged); the watch ends when
    /// the client is closed.
    fn spawn_watch<T, F, Fut>(&self, fetch: F) -> Watch<T>
    where
        T: Clone + PartialEq + Send + Sync + 'static,
        F: Fn(u64) -> Fut + Send + 'static,
        Fut: Future<Output = CoordResult<(T, Option<u64>)>> + Send,
    {
        let (sender, receiver) = watch::channel(None);
        let mut closed = self.closed.subscribe();
        let backoff_max = self.config.retry_backoff_max;
        let task = tokio::spawn(async move {
            let initial_backoff = Duration::from_millis(100);
            let mut backoff = initial_backoff;
            let mut index = 0;
            loop {
                let result = tokio::select! {
                    result = fetch(index) => result,
                    _ = closed.wait_for(|closed| *closed) => return,
                };
                match result {
                    Ok((state, returned)) => {
                        backoff = initial_backoff;
                        sender.send_if_modified(|current| {
                            if current.as_ref() == Some(&state) {
                                false
                            } else {
                                *current = Some(state);
                                true
                            }
                        });
                        index = next_index(index, returned);
                        if index == 0 {
                            tokio::time::sleep(backoff).await;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%error, "watch query failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(backoff_max);
                    }
                }
                if sender.is_closed() {
                    return;
                }
            }
        });
        Watch::new(receiver, Some(task))
    }

    async fn healthy_brokers(
        &self,
        blocking: Option<(u64, Duration)>,
    ) -> CoordResult<(Vec<BrokerInfo>, Option<u64>)> {
        healthy_brokers(
            &self.consul,
            &self.http,
            &self.config.service_name,
            blocking,
            self.config.request_timeout,
        )
        .await
    }
}

async fn read_key(
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

fn leader_from(role: &str, path: &str, pair: Option<KvPair>) -> CoordResult<Option<LeaderInfo>> {
    match pair {
        Some(pair) if pair.session.is_some() => Ok(Some(LeaderInfo {
            role: role.to_owned(),
            candidate: decode_value(path, &pair)?,
            token: FencingToken::leadership(role, pair.modify_index),
        })),
        _ => Ok(None),
    }
}

async fn healthy_brokers(
    consul: &rs_consul::Consul,
    http: &Http,
    service: &str,
    blocking: Option<(u64, Duration)>,
    request_timeout: Duration,
) -> CoordResult<(Vec<BrokerInfo>, Option<u64>)> {
    let request = rs_consul::GetServiceNodesRequest {
        service,
        passing: true,
        ..Default::default()
    };
    let (index, wait, timeout) = match blocking {
        Some((index, wait)) => (
            Some(index),
            Some(wait),
            blocking_timeout(wait, request_timeout),
        ),
        None => (None, None, request_timeout),
    };
    let options = rs_consul::QueryOptions {
        index,
        wait,
        timeout: Some(timeout),
        ..Default::default()
    };
    http.count_request();
    // rs-consul applies `timeout` itself; the outer one also bounds reading the body.
    let nodes = tokio::time::timeout(timeout, consul.get_service_nodes(request, Some(options)))
        .await
        .map_err(|_| CoordError::RequestTimeout {
            method: "GET",
            path: format!("/v1/health/service/{service}"),
            timeout,
        })?
        .map_err(|source| CoordError::Consul {
            op: "health query",
            source,
        })?;
    let mut brokers: Vec<BrokerInfo> = nodes
        .response
        .into_iter()
        .filter_map(|node| {
            let tag = |name: &str| {
                node.service
                    .tags
                    .iter()
                    .find_map(|tag| tag.strip_prefix(name).map(str::to_owned))
            };
            let Some(broker_id) = tag("broker_id=").and_then(|id| id.parse::<u32>().ok()) else {
                tracing::warn!(id = %node.service.id, "service instance without broker_id tag");
                return None;
            };
            let host = if node.service.address.is_empty() {
                node.node.address.clone()
            } else {
                node.service.address.clone()
            };
            Some(BrokerInfo {
                broker_id,
                host,
                port: node.service.port,
                rack: tag("rack="),
            })
        })
        .collect();
    brokers.sort();
    brokers.dedup_by_key(|broker| broker.broker_id);
    Ok((brokers, Some(nodes.index).filter(|index| *index > 0)))
}

/// Keeps a broker's TTL check passing. An agent that forgot the check (restarted without
/// its data, e.g. a dev agent) answers 404: the broker is registered again.
async fn pass_ttl_check(
    http: Arc<Http>,
    check_id: String,
    registration: Vec<u8>,
    ttl: Duration,
    timeout: Duration,
) {
    let path = format!("/v1/agent/check/pass/{check_id}");
    loop {
        tokio::time::sleep(ttl / 3).await;
        match http.call(Method::PUT, &path, None, timeout).await {
            Ok(reply) if reply.status == 200 => {}
            Ok(reply) if reply.status == 404 => {
                tracing::warn!(%check_id, "the agent lost the broker's check: registering again");
                let register = http
                    .call_ok(
                        Method::PUT,
                        "/v1/agent/service/register",
                        Some(registration.clone()),
                        timeout,
                    )
                    .await;
                if let Err(error) = register {
                    tracing::warn!(%check_id, %error, "registering the broker again failed");
                }
            }
            Ok(reply) => tracing::warn!(
                %check_id,
                status = reply.status,
                body = %reply.body_text(),
                "passing the broker's TTL check failed"
            ),
            Err(error) => {
                tracing::warn!(%check_id, %error, "passing the broker's TTL check failed");
            }
        }
    }
}

#[async_trait]
impl Coordinator for ConsulCoordinator {
    async fn register_broker(&self, registration: &BrokerRegistration) -> CoordResult<()> {
        registration.validate()?;
        let inner = &self.inner;
        inner.ensure_open()?;
        let service_id = format!("{}-{}", inner.config.service_name, registration.broker_id);
        let check_id = format!("{service_id}-health");
        let mut tags = vec![format!("broker_id={}", registration.broker_id)];
        if let Some(rack) = &registration.rack {
            tags.push(format!("rack={rack}"));
        }
        let check = match &registration.health {
            HealthCheck::Ttl { ttl } => serde_json::json!({
                "CheckID": check_id,
                "Name": "LMQ broker TTL",
                "TTL": go_duration(*ttl),
                "Status": "passing",
                "DeregisterCriticalServiceAfter": "1m",
            }),
            HealthCheck::Tcp {
                address,
                interval,
                timeout,
            } => serde_json::json!({
                "CheckID": check_id,
                "Name": "LMQ broker TCP",
                "TCP": address,
                "Interval": go_duration(*interval),
                "Timeout": go_duration(*timeout),
                "Status": "passing",
                "DeregisterCriticalServiceAfter": "1m",
            }),
        };
        let body = serde_json::json!({
            "ID": service_id,
            "Name": inner.config.service_name,
            "Address": registration.host,
            "Port": registration.port,
            "Tags": tags,
            "Check": check,
        });
        let body = body.to_string().into_bytes();
        inner
            .http
            .call_ok(
                Method::PUT,
                "/v1/agent/service/register",
                Some(body.clone()),
                inner.config.request_timeout,
            )
            .await?;
        let passer = match &registration.health {
            HealthCheck::Ttl { ttl } => Some(AbortOnDrop(tokio::spawn(pass_ttl_check(
                Arc::clone(&inner.http),
                check_id,
                body,
                *ttl,
                inner.config.request_timeout,
            )))),
            HealthCheck::Tcp { .. } => None,
        };
        lock_map(&inner.registrations).insert(registration.broker_id, passer);
        Ok(())
    }

    async fn deregister_broker(&self, broker_id: u32) -> CoordResult<()> {
        let inner = &self.inner;
        inner.ensure_open()?;
        lock_map(&inner.registrations).remove(&broker_id);
        let path = format!(
            "/v1/agent/service/deregister/{}-{broker_id}",
            inner.config.service_name
        );
        inner
            .http
            .call_ok(Method::PUT, &path, None, inner.config.request_timeout)
            .await?;
        Ok(())
    }

    async fn brokers(&self) -> CoordResult<Vec<BrokerInfo>> {
        self.inner.ensure_open()?;
        Ok(self.inner.healthy_brokers(None).await?.0)
    }

    async fn watch_brokers(&self) -> CoordResult<Watch<Vec<BrokerInfo>>> {
        let inner = &self.inner;
        inner.ensure_open()?;
        let wait = inner.config.watch_wait;
        let shared = Arc::clone(inner);
        Ok(inner.spawn_watch(move |index| {
            let shared = Arc::clone(&shared);
            async move { shared.healthy_brokers(Some((index, wait))).await }
        }))
    }

    async fn campaign(
        &self,
        role: &str,
        candidate: &[u8],
        wait_max: Duration,
    ) -> CoordResult<Leadership> {
        let hold = self
            .inner
            .acquire(HoldKind::Leadership, role, candidate, wait_max)
            .await?;
        Ok(Leadership::new(hold))
    }

    async fn leader(&self, role: &str) -> CoordResult<Option<LeaderInfo>> {
        validate_name(role)?;
        let inner = &self.inner;
        inner.ensure_open()?;
        let path = inner.hold_path(HoldKind::Leadership, role);
        let (pair, _) = inner.read(&path, None).await?;
        leader_from(role, &path, pair)
    }

    async fn watch_leader(&self, role: &str) -> CoordResult<Watch<Option<LeaderInfo>>> {
        validate_name(role)?;
        let inner = &self.inner;
        inner.ensure_open()?;
        let path = inner.hold_path(HoldKind::Leadership, role);
        let (http, wait, timeout) = (
            Arc::clone(&inner.http),
            inner.config.watch_wait,
            inner.config.request_timeout,
        );
        let role = role.to_owned();
        Ok(inner.spawn_watch(move |index| {
            let (http, path, role) = (Arc::clone(&http), path.clone(), role.clone());
            async move {
                let (pair, returned) = read_key(&http, &path, Some((index, wait)), timeout).await?;
                Ok((leader_from(&role, &path, pair)?, returned))
            }
        }))
    }

    async fn get(&self, key: &str) -> CoordResult<Option<KvEntry>> {
        validate_name(key)?;
        let inner = &self.inner;
        inner.ensure_open()?;
        let path = inner.kv_path(key);
        let (pair, _) = inner.read(&path, None).await?;
        pair.map(|pair| entry_from(key, &path, &pair)).transpose()
    }

    async fn list(&self, prefix: &str) -> CoordResult<Vec<KvEntry>> {
        validate_prefix(prefix)?;
        let inner = &self.inner;
        inner.ensure_open()?;
        let root = inner.kv_path("");
        let url = format!("/v1/kv/{root}{prefix}?recurse=true");
        let reply = inner
            .http
            .call(Method::GET, &url, None, inner.config.request_timeout)
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

    async fn write(
        &self,
        key: &str,
        value: &[u8],
        condition: WriteCondition<'_>,
    ) -> CoordResult<Version> {
        validate_name(key)?;
        validate_value(value)?;
        let inner = &self.inner;
        inner.ensure_open()?;
        let path = inner.kv_path(key);
        let mut ops = Vec::with_capacity(2);
        if let Some(fence) = condition.fence {
            validate_name(fence.name())?;
            ops.push(serde_json::json!({"KV": {
                "Verb": "check-index",
                "Key": inner.hold_path(fence.kind(), fence.name()),
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
        match inner.txn(ops).await? {
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

    async fn delete(&self, key: &str) -> CoordResult<()> {
        validate_name(key)?;
        let inner = &self.inner;
        inner.ensure_open()?;
        let path = inner.kv_path(key);
        let request = rs_consul::DeleteKeyRequest {
            key: &path,
            ..Default::default()
        };
        inner.http.count_request();
        tokio::time::timeout(
            inner.config.request_timeout,
            inner.consul.delete_key(request),
        )
        .await
        .map_err(|_| CoordError::RequestTimeout {
            method: "DELETE",
            path: format!("/v1/kv/{path}"),
            timeout: inner.config.request_timeout,
        })?
        .map_err(|source| CoordError::Consul {
            op: "delete key",
            source,
        })?;
        Ok(())
    }

    async fn watch(&self, key: &str) -> CoordResult<Watch<Option<KvEntry>>> {
        validate_name(key)?;
        let inner = &self.inner;
        inner.ensure_open()?;
        let path = inner.kv_path(key);
        let (http, wait, timeout) = (
            Arc::clone(&inner.http),
            inner.config.watch_wait,
            inner.config.request_timeout,
        );
        let key = key.to_owned();
        Ok(inner.spawn_watch(move |index| {
            let (http, path, key) = (Arc::clone(&http), path.clone(), key.clone());
            async move {
                let (pair, returned) = read_key(&http, &path, Some((index, wait)), timeout).await?;
                let entry = pair
                    .map(|pair| entry_from(&key, &path, &pair))
                    .transpose()?;
                Ok((entry, returned))
            }
        }))
    }

    async fn lock(&self, name: &str, wait_max: Duration) -> CoordResult<LockGuard> {
        let hold = self
            .inner
            .acquire(HoldKind::Lock, name, &[], wait_max)
            .await?;
        Ok(LockGuard::new(hold))
    }

    async fn close(&self) -> CoordResult<()> {
        let inner = &self.inner;
        if inner.closed.send_replace(true) {
            return Ok(());
        }
        if let Some(session) = inner.session.lock().await.take() {
            // Release first: a released key is free at once, while the keys of a destroyed
            // session stay blocked for the lock-delay.
            session.mark_lost(LossReason::ClientClosed);
            let held: Vec<String> = lock_map(&inner.held)
                .drain()
                .map(|(path, _)| path)
                .collect();
            for path in held {
                inner.release_key(&path, &session.id).await;
            }
            session.destroy(LossReason::ClientClosed).await;
        }
        let registered: Vec<u32> = lock_map(&inner.registrations)
            .drain()
            .map(|(broker_id, _)| broker_id)
            .collect();
        for broker_id in registered {
            let path = format!(
                "/v1/agent/service/deregister/{}-{broker_id}",
                inner.config.service_name
            );
            if let Err(error) = inner
                .http
                .call_ok(Method::PUT, &path, None, inner.config.request_timeout)
                .await
            {
                tracing::warn!(broker_id, %error, "deregistering a broker at close failed");
            }
        }
        Ok(())
    }
}

fn entry_from(key: &str, path: &str, pair: &KvPair) -> CoordResult<KvEntry> {
    Ok(KvEntry {
        key: key.to_owned(),
        value: decode_value(path, pair)?,
        version: Version(pair.modify_index),
    })
}
