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
//!
//! Files: `config` the settings; `kv` the KV wire types, key reads and `/v1/txn`; `members`
//! broker registration, TTL check passes and the health query; `session` the session; `lock`
//! acquiring and following held keys; `http` the raw HTTP calls.

mod config;
mod http;
mod kv;
mod lock;
mod members;
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
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::coordinator::{
    AbortOnDrop, Coordinator, Hold, HoldState, Leadership, LockGuard, Release, Watch,
    WriteCondition,
};
use crate::error::{CoordError, CoordResult, LossReason};
use crate::types::{
    BrokerInfo, BrokerRegistration, FencingToken, HoldKind, KvEntry, LeaderInfo, Version,
    validate_name, validate_prefix, validate_value,
};
use http::Http;
use kv::{TxnOutcome, entry_from, leader_from, malformed, read_key};
use session::{Session, SessionState, next_index};

pub use config::ConsulConfig;

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
    registrations: Mutex<HashMap<u32, members::Registered>>,
    closed: watch::Sender<bool>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock_map<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ConsulCoordinator {
    /// Checks the configuration and that the agent answers with a raft leader.
    pub async fn connect(config: ConsulConfig) -> CoordResult<ConsulCoordinator> {
        config.validate()?;
        let client = http::build_client(&config)?;
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
}

#[async_trait]
impl Coordinator for ConsulCoordinator {
    async fn register_broker(&self, registration: &BrokerRegistration) -> CoordResult<()> {
        registration.validate()?;
        let inner = &self.inner;
        inner.ensure_open()?;
        inner.register(registration).await
    }

    async fn deregister_broker(&self, broker_id: u32) -> CoordResult<()> {
        let inner = &self.inner;
        inner.ensure_open()?;
        lock_map(&inner.registrations).remove(&broker_id);
        inner.deregister_service(broker_id).await
    }

    async fn pass_ttl_check(&self, broker_id: u32) -> CoordResult<()> {
        self.inner.ensure_open()?;
        self.inner.pass_ttl_check(broker_id).await
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
        inner.list_kv(prefix).await
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
        inner.write_kv(key, value, condition).await
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
        .map_err(|source| {
            http::consul_error("delete key", "DELETE", &format!("/v1/kv/{path}"), source)
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
            if let Err(error) = inner.deregister_service(broker_id).await {
                tracing::warn!(broker_id, %error, "deregistering a broker at close failed");
            }
        }
        Ok(())
    }
}
