//! The `Coordinator` contract: membership, leader election with fencing, metadata with
//! compare-and-set, locks and watches. Every implementation passes the one contract suite in
//! `tests/contract/`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::{CoordResult, LossReason};
use crate::types::{
    BrokerInfo, BrokerRegistration, FencingToken, HoldKind, KvEntry, LeaderInfo, Version,
};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The expected state of a key for a compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The key must not exist.
    Absent,
    /// The key must be at exactly this version.
    Version(Version),
}

impl From<Option<Version>> for Expected {
    fn from(version: Option<Version>) -> Self {
        version.map_or(Expected::Absent, Expected::Version)
    }
}

/// Conditions of a write; all must hold or nothing is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteCondition<'a> {
    /// Compare-and-set: fails with `CasConflict` otherwise.
    pub expected: Option<Expected>,
    /// Fencing: fails with `Fenced` unless the token's holder still holds.
    pub fence: Option<&'a FencingToken>,
}

/// Cluster coordination in broker terms. Object safe: brokers hold an
/// `Arc<dyn Coordinator>` chosen at start (embedded or Consul).
///
/// Waits are bounded: operations that wait for others (`campaign`, `lock`) take a
/// `wait_max`; every remote call has a timeout; watches block on the server (Consul blocking
/// queries) or on in-process notifications, never by polling.
#[async_trait]
pub trait Coordinator: Send + Sync + std::fmt::Debug {
    // ---- membership and health

    /// Announces a broker, healthy at once; it stays listed while its health check passes.
    /// Registering the same id again replaces the registration.
    async fn register_broker(&self, registration: &BrokerRegistration) -> CoordResult<()>;
    async fn deregister_broker(&self, broker_id: u32) -> CoordResult<()>;
    /// Passes the TTL check of broker `broker_id`, registered through this client, now
    /// (besides the client's own passes every TTL/3): its registration stays healthy at least
    /// a TTL after this call was sent. Consul: `PUT /v1/agent/check/pass/<check>`, answered
    /// within TTL/4; embedded: the registration is alive. `NotRegistered` when this client
    /// holds no TTL-checked registration of that broker.
    async fn pass_ttl_check(&self, broker_id: u32) -> CoordResult<()>;
    /// The brokers whose health checks pass, sorted by id.
    async fn brokers(&self) -> CoordResult<Vec<BrokerInfo>>;
    /// The healthy brokers now, then again after every change.
    async fn watch_brokers(&self) -> CoordResult<Watch<Vec<BrokerInfo>>>;

    // ---- leadership

    /// Waits (at most `wait_max`, else `NotAcquired`) until this client leads `role`.
    /// `candidate` is published to `leader`/`watch_leader` (e.g. the broker id).
    async fn campaign(
        &self,
        role: &str,
        candidate: &[u8],
        wait_max: Duration,
    ) -> CoordResult<Leadership>;
    async fn leader(&self, role: &str) -> CoordResult<Option<LeaderInfo>>;
    /// The leader now, then after every change (`None` while nobody leads).
    async fn watch_leader(&self, role: &str) -> CoordResult<Watch<Option<LeaderInfo>>>;

    // ---- keys (cluster metadata, topic configs, partition assignments)

    async fn get(&self, key: &str) -> CoordResult<Option<KvEntry>>;
    /// Keys starting with `prefix` (`""` for all), sorted.
    async fn list(&self, prefix: &str) -> CoordResult<Vec<KvEntry>>;
    /// Writes under `condition`; returns the new version. Conflicts are reported, never
    /// retried here.
    async fn write(
        &self,
        key: &str,
        value: &[u8],
        condition: WriteCondition<'_>,
    ) -> CoordResult<Version>;
    async fn delete(&self, key: &str) -> CoordResult<()>;
    /// The key's state now (`None`: absent), then each later state in version order. States
    /// are never repeated nor reordered; a state superseded before the watcher could observe
    /// it may be skipped (Consul keeps no history), the latest never is.
    async fn watch(&self, key: &str) -> CoordResult<Watch<Option<KvEntry>>>;

    async fn put(&self, key: &str, value: &[u8]) -> CoordResult<Version> {
        self.write(key, value, WriteCondition::default()).await
    }
    /// `expected`: `None` = the key must not exist.
    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<Version>,
        value: &[u8],
    ) -> CoordResult<Version> {
        let condition = WriteCondition {
            expected: Some(expected.into()),
            fence: None,
        };
        self.write(key, value, condition).await
    }
    async fn put_fenced(
        &self,
        key: &str,
        value: &[u8],
        fence: &FencingToken,
    ) -> CoordResult<Version> {
        let condition = WriteCondition {
            expected: None,
            fence: Some(fence),
        };
        self.write(key, value, condition).await
    }
    async fn compare_and_set_fenced(
        &self,
        key: &str,
        expected: Option<Version>,
        value: &[u8],
        fence: &FencingToken,
    ) -> CoordResult<Version> {
        let condition = WriteCondition {
            expected: Some(expected.into()),
            fence: Some(fence),
        };
        self.write(key, value, condition).await
    }

    // ---- locks

    /// Waits (at most `wait_max`, else `NotAcquired`) for the exclusive lock `name`.
    async fn lock(&self, name: &str, wait_max: Duration) -> CoordResult<LockGuard>;

    /// Releases everything this client holds (leaderships, locks, registrations it keeps
    /// alive) and stops its background work. Later calls fail with `Closed`.
    async fn close(&self) -> CoordResult<()>;
}

/// A stream of states: the current one first, then changes. `next` returns `None` once the
/// source is gone (the client was closed).
#[derive(Debug)]
pub struct Watch<T> {
    receiver: watch::Receiver<Option<T>>,
    _task: Option<AbortOnDrop>,
}

impl<T: Clone> Watch<T> {
    /// A watch over a channel whose `Some` values are states; `None` means "not known yet".
    pub(crate) fn new(
        mut receiver: watch::Receiver<Option<T>>,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        receiver.mark_changed();
        Watch {
            receiver,
            _task: task.map(AbortOnDrop),
        }
    }

    /// The next state (the current one on the first call).
    pub async fn next(&mut self) -> Option<T> {
        loop {
            if self.receiver.changed().await.is_err() {
                return None;
            }
            if let Some(state) = self.receiver.borrow_and_update().clone() {
                return Some(state);
            }
        }
    }

    /// `next`, or `None` after `wait_max`.
    pub async fn next_within(&mut self, wait_max: Duration) -> Option<T> {
        tokio::time::timeout(wait_max, self.next())
            .await
            .ok()
            .flatten()
    }
}

/// Stops a background task when its owner goes away.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether a leadership or lock is still held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    Held,
    Lost(LossReason),
}

/// Gives a hold back. Called at most once; the synchronous part runs at the call (so a drop
/// releases at once where the backend can), the returned future finishes the job.
pub(crate) type Release = Box<dyn FnOnce() -> BoxFuture<CoordResult<()>> + Send>;

/// A held key: what leaderships and locks have in common.
pub(crate) struct Hold {
    token: FencingToken,
    state: watch::Receiver<HoldState>,
    release: Option<Release>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("token", &self.token)
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Hold {
    pub(crate) fn new(
        token: FencingToken,
        state: watch::Receiver<HoldState>,
        release: Release,
    ) -> Self {
        Hold {
            token,
            state,
            release: Some(release),
        }
    }

    fn is_held(&self) -> bool {
        *self.state.borrow() == HoldState::Held
    }

    async fn lost(&mut self) -> LossReason {
        loop {
            if let HoldState::Lost(reason) = *self.state.borrow_and_update() {
                return reason;
            }
            if self.state.changed().await.is_err() {
                // The backend is gone without a word: it cannot be holding for us.
                return LossReason::ClientClosed;
            }
        }
    }

    async fn release(mut self) -> CoordResult<()> {
        match self.release.take() {
            Some(release) => release().await,
            None => Ok(()),
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let finish = release();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let token = self.token.clone();
                runtime.spawn(async move {
                    if let Err(error) = finish.await {
                        tracing::warn!(?token, %error, "releasing a dropped hold failed");
                    }
                });
            }
        }
    }
}

/// Leading a role. Leadership is a state that can be lost at any moment (session expiry,
/// deposition): watch it with `lost` / `status` rather than reading it once. Dropping it
/// resigns.
#[derive(Debug)]
pub struct Leadership {
    hold: Hold,
}

impl Leadership {
    pub(crate) fn new(hold: Hold) -> Self {
        debug_assert_eq!(hold.token.kind(), HoldKind::Leadership);
        Leadership { hold }
    }
    pub fn role(&self) -> &str {
        self.hold.token.name()
    }
    /// Pass with writes (`put_fenced`) and to peers, so a deposed leader's acts are refused.
    pub fn token(&self) -> &FencingToken {
        &self.hold.token
    }
    /// Still leading right now (a leader checks before acting, and fences its writes).
    pub fn is_leader(&self) -> bool {
        self.hold.is_held()
    }
    /// Resolves when leadership is lost, with the reason.
    pub async fn lost(&mut self) -> LossReason {
        self.hold.lost().await
    }
    /// A receiver of the state, for tasks that must stop acting when it flips.
    pub fn status(&self) -> watch::Receiver<HoldState> {
        self.hold.state.clone()
    }
    pub async fn resign(self) -> CoordResult<()> {
        self.hold.release().await
    }
}

/// An exclusive lock; dropping it releases it.
#[derive(Debug)]
pub struct LockGuard {
    hold: Hold,
}

impl LockGuard {
    pub(crate) fn new(hold: Hold) -> Self {
        debug_assert_eq!(hold.token.kind(), HoldKind::Lock);
        LockGuard { hold }
    }
    pub fn name(&self) -> &str {
        self.hold.token.name()
    }
    pub fn token(&self) -> &FencingToken {
        &self.hold.token
    }
    pub fn is_held(&self) -> bool {
        self.hold.is_held()
    }
    pub async fn lost(&mut self) -> LossReason {
        self.hold.lost().await
    }
    pub fn status(&self) -> watch::Receiver<HoldState> {
        self.hold.state.clone()
    }
    pub async fn release(self) -> CoordResult<()> {
        self.hold.release().await
    }
}
