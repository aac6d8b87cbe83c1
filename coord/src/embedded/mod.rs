//! The in-process coordinator: the single-node default of `lmq serve`, and the reference the
//! contract suite holds Consul to.
//!
//! One `EmbeddedStore` per data dir and process (an exclusive `flock` on the directory keeps
//! other processes out); any number of `EmbeddedCoordinator` clients share it, e.g. several
//! brokers in one test. Keys and the write counter (which also issues fencing tokens) are
//! persisted by rename after every change, before the change is visible or acknowledged.
//! Leaderships, locks and broker registrations belong to a client and end with it: a dropped
//! or closed client is a dead one, noticed at once (there is no TTL to wait for in-process).
//!
//! Writes are small and rare (cluster metadata, not records), so they are written and fsynced
//! synchronously under the state lock: the order of changes on disk is the order callers and
//! watchers see, with no task in between.

mod persist;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use nix::fcntl::{Flock, FlockArg};
use tokio::sync::{Notify, watch};

use crate::coordinator::{
    AbortOnDrop, Coordinator, Expected, Hold, HoldState, Leadership, LockGuard, Release, Watch,
    WriteCondition,
};
use crate::error::{CoordError, CoordResult, LossReason};
use crate::types::{
    BrokerInfo, BrokerRegistration, FencingToken, HealthCheck, HoldKind, KvEntry, LeaderInfo,
    Version, validate_name, validate_prefix, validate_value,
};
use persist::{Durable, StoredEntry};

const LOCK_FILE: &str = "coord.lock";

/// The shared in-process state of one data dir. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// Woken whenever a leadership or lock is released.
    released: Notify,
    next_client: AtomicU64,
    _dir_lock: Flock<File>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HoldKey {
    kind: HoldKind,
    name: String,
}

#[derive(Debug)]
struct HoldRecord {
    client: u64,
    token: u64,
    candidate: Vec<u8>,
    state: watch::Sender<HoldState>,
}

#[derive(Debug)]
struct BrokerRecord {
    info: BrokerInfo,
    client: u64,
    /// Whether its health check is a TTL check (which a live client keeps passing).
    ttl_checked: bool,
    healthy: bool,
    /// Distinguishes re-registrations, so a stale probe cannot flip a newer one.
    generation: u64,
    _probe: Option<AbortOnDrop>,
}

type StateSender<T> = watch::Sender<Option<T>>;

#[derive(Debug)]
struct State {
    durable: Durable,
    poisoned: bool,
    closed_clients: HashSet<u64>,
    holds: HashMap<HoldKey, HoldRecord>,
    brokers: BTreeMap<u32, BrokerRecord>,
    broker_generation: u64,
    kv_watch: HashMap<String, StateSender<Option<KvEntry>>>,
    leader_watch: HashMap<String, StateSender<Option<LeaderInfo>>>,
    brokers_watch: StateSender<Vec<BrokerInfo>>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the coordinator state under `dir`. Fails with `DirLocked`
    /// while another process has it open.
    pub fn open(dir: &Path) -> CoordResult<EmbeddedStore> {
        fs::create_dir_all(dir).map_err(|source| CoordError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| CoordError::Io {
                path: lock_path.clone(),
                source,
            })?;
        let dir_lock =
            Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
                match errno {
                    nix::errno::Errno::EWOULDBLOCK => CoordError::DirLocked {
                        dir: dir.to_path_buf(),
                    },
                    other => CoordError::Io {
                        path: lock_path.clone(),
                        source: other.into(),
                    },
                }
            })?;
        let durable = persist::load(dir)?;
        let (brokers_watch, _) = watch::channel(Some(Vec::new()));
        let state = State {
            durable,
            poisoned: false,
            closed_clients: HashSet::new(),
            holds: HashMap::new(),
            brokers: BTreeMap::new(),
            broker_generation: 0,
            kv_watch: HashMap::new(),
            leader_watch: HashMap::new(),
            brokers_watch,
        };
        Ok(EmbeddedStore {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                state: Mutex::new(state),
                released: Notify::new(),
                next_client: AtomicU64::new(1),
                _dir_lock: dir_lock,
            }),
        })
    }

    /// A new client with its own leaderships, locks and registrations.
    pub fn client(&self) -> EmbeddedCoordinator {
        EmbeddedCoordinator {
            shared: Arc::clone(&self.shared),
            client: self.shared.next_client.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

/// One client of an `EmbeddedStore`. Dropping it is closing it.
#[derive(Debug)]
pub struct EmbeddedCoordinator {
    shared: Arc<Shared>,
    client: u64,
}

impl Drop for EmbeddedCoordinator {
    fn drop(&mut self) {
        self.shared.close_client(self.client);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written: every change
        // is computed on a copy and swapped in after it is durable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_state(&self, client: u64) -> CoordResult<MutexGuard<'_, State>> {
        let state = self.lock();
        if state.closed_clients.contains(&client) {
            return Err(CoordError::Closed);
        }
        Ok(state)
    }

    /// Applies `change` to a copy of the durable state with the next index, persists the copy,
    /// and only then makes it current. Returns the index used.
    fn commit(
        &self,
        state: &mut State,
        change: impl FnOnce(&mut Durable, u64),
    ) -> CoordResult<u64> {
        if state.poisoned {
            return Err(CoordError::Poisoned);
        }
        let mut next = state.durable.clone();
        next.index += 1;
        let index = next.index;
        change(&mut next, index);
        if let Err(error) = persist::store(&self.dir, &next) {
            state.poisoned = true;
            return Err(error);
        }
        state.durable = next;
        Ok(index)
    }

    fn close_client(&self, client: u64) {
        let mut state = self.lock();
        if !state.closed_clients.insert(client) {
            return;
        }
        let lost: Vec<HoldKey> = state
            .holds
            .iter()
            .filter(|(_, record)| record.client == client)
            .map(|(key, _)| key.clone())
            .collect();
        for key in lost {
            if let Some(record) = state.holds.remove(&key) {
                record
                    .state
                    .send_replace(HoldState::Lost(LossReason::ClientClosed));
                publish_leader(&mut state, &key);
            }
        }
        state.brokers.retain(|_, record| record.client != client);
        publish_brokers(&state);
        drop(state);
        self.released.notify_waiters();
    }

    fn release(&self, key: &HoldKey, token: u64) {
        let mut state = self.lock();
        if state
            .holds
            .get(key)
            .is_some_and(|record| record.token == token)
        {
            if let Some(record) = state.holds.remove(key) {
                record
                    .state
                    .send_replace(HoldState::Lost(LossReason::Released));
            }
            publish_leader(&mut state, key);
            drop(state);
            self.released.notify_waiters();
        }
    }

    /// One acquisition attempt: `Ok(None)` while someone else holds the key.
    fn try_acquire(
        self: &Arc<Self>,
        client: u64,
        key: &HoldKey,
        candidate: &[u8],
    ) -> CoordResult<Option<Hold>> {
        let mut state = self.open_state(client)?;
        match state.holds.get(key) {
            Some(record) if record.client == client => Err(CoordError::AlreadyHeld {
                name: key.name.clone(),
            }),
            Some(_) => Ok(None),
            None => {
                // The token is durable before anyone sees it.
                let token = self.commit(&mut state, |_, _| {})?;
                let (sender, receiver) = watch::channel(HoldState::Held);
                state.holds.insert(
                    key.clone(),
                    HoldRecord {
                        client,
                        token,
                        candidate: candidate.to_vec(),
                        state: sender,
                    },
                );
                publish_leader(&mut state, key);
                let weak: Weak<Shared> = Arc::downgrade(self);
                let release_key = key.clone();
                let release: Release = Box::new(move || {
                    if let Some(shared) = weak.upgrade() {
                        shared.release(&release_key, token);
                    }
                    Box::pin(async { Ok(()) })
                });
                let fencing = match key.kind {
                    HoldKind::Leadership => FencingToken::leadership(key.name.clone(), token),
                    HoldKind::Lock => FencingToken::lock(key.name.clone(), token),
                };
                Ok(Some(Hold::new(fencing, receiver, release)))
            }
        }
    }

    async fn acquire(
        self: &Arc<Self>,
        client: u64,
        key: HoldKey,
        candidate: &[u8],
        wait_max: Duration,
    ) -> CoordResult<Hold> {
        validate_name(&key.name)?;
        validate_value(candidate)?;
        let deadline = tokio::time::Instant::now() + wait_max;
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            // Registered before the attempt, so a release in between is not missed.
            notified.as_mut().enable();
            if let Some(hold) = self.try_acquire(client, &key, candidate)? {
                return Ok(hold);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(CoordError::NotAcquired { what: key.name, waited: wait_max });
                }
            }
        }
    }

    async fn probe(weak: Weak<Shared>, broker_id: u32, generation: u64, check: HealthCheck) {
        let HealthCheck::Tcp {
            address,
            interval,
            timeout,
        } = check
        else {
            return;
        };
        loop {
            tokio::time::sleep(interval).await;
            let healthy = matches!(
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await,
                Ok(Ok(_))
            );
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let mut state = shared.lock();
            match state.brokers.get_mut(&broker_id) {
                Some(record) if record.generation == generation => {
                    if record.healthy != healthy {
                        record.healthy = healthy;
                        publish_brokers(&state);
                    }
                }
                _ => return,
            }
        }
    }
}

fn healthy_brokers(state: &State) -> Vec<BrokerInfo> {
    state
        .brokers
        .values()
        .filter(|record| record.healthy)
        .map(|record| record.info.clone())
        .collect()
}

fn publish_brokers(state: &State) {
    let brokers = healthy_brokers(state);
    state.brokers_watch.send_if_modified(|current| {
        if current.as_ref() == Some(&brokers) {
            false
        } else {
            *current = Some(brokers);
            true
        }
    });
}

fn leader_of(state: &State, role: &str) -> Option<LeaderInfo> {
    let key = HoldKey {
        kind: HoldKind::Leadership,
        name: role.to_owned(),
    };
    state.holds.get(&key).map(|record| LeaderInfo {
        role: role.to_owned(),
        candidate: record.candidate.clone(),
        token: FencingToken::leadership(role, record.token),
    })
}

fn publish_leader(state: &mut State, key: &HoldKey) {
    if key.kind != HoldKind::Leadership {
        return;
    }
    let leader = leader_of(state, &key.name);
    publish(&mut state.leader_watch, &key.name, leader);
}

fn entry_of(state: &State, key: &str) -> Option<KvEntry> {
    state.durable.kv.get(key).map(|stored| KvEntry {
        key: key.to_owned(),
        value: stored.value.clone(),
        version: Version(stored.version),
    })
}

/// Sends a new state to the watchers of `name` (dropping the channel once nobody watches).
fn publish<T: PartialEq>(watchers: &mut HashMap<String, StateSender<T>>, name: &str, value: T) {
    if let Some(sender) = watchers.get(name) {
        if sender.receiver_count() == 0 {
            watchers.remove(name);
            return;
        }
        sender.send_if_modified(|current| {
            if current.as_ref() == Some(&value) {
                false
            } else {
                *current = Some(value);
                true
            }
        });
    }
}

fn subscribe<T: Clone>(
    watchers: &mut HashMap<String, StateSender<T>>,
    name: &str,
    current: T,
) -> Watch<T> {
    let sender = watchers
        .entry(name.to_owned())
        .or_insert_with(|| watch::channel(Some(current)).0);
    Watch::new(sender.subscribe(), None)
}

#[async_trait]
impl Coordinator for EmbeddedCoordinator {
    async fn register_broker(&self, registration: &BrokerRegistration) -> CoordResult<()> {
        registration.validate()?;
        let mut state = self.shared.open_state(self.client)?;
        state.broker_generation += 1;
        let generation = state.broker_generation;
        let probe = match &registration.health {
            HealthCheck::Ttl { .. } => None,
            check @ HealthCheck::Tcp { .. } => Some(AbortOnDrop(tokio::spawn(Shared::probe(
                Arc::downgrade(&self.shared),
                registration.broker_id,
                generation,
                check.clone(),
            )))),
        };
        state.brokers.insert(
            registration.broker_id,
            BrokerRecord {
                info: registration.info(),
                client: self.client,
                ttl_checked: matches!(registration.health, HealthCheck::Ttl { .. }),
                healthy: true,
                generation,
                _probe: probe,
            },
        );
        publish_brokers(&state);
        Ok(())
    }

    async fn deregister_broker(&self, broker_id: u32) -> CoordResult<()> {
        let mut state = self.shared.open_state(self.client)?;
        state.brokers.remove(&broker_id);
        publish_brokers(&state);
        Ok(())
    }

    async fn pass_ttl_check(&self, broker_id: u32) -> CoordResult<()> {
        // In-process there is no TTL to reset: the registration passes while it exists.
        let state = self.shared.open_state(self.client)?;
        match state.brokers.get(&broker_id) {
            Some(record) if record.client == self.client && record.ttl_checked => Ok(()),
            _ => Err(CoordError::NotRegistered { broker_id }),
        }
    }

    async fn brokers(&self) -> CoordResult<Vec<BrokerInfo>> {
        let state = self.shared.open_state(self.client)?;
        Ok(healthy_brokers(&state))
    }

    async fn watch_brokers(&self) -> CoordResult<Watch<Vec<BrokerInfo>>> {
        let state = self.shared.open_state(self.client)?;
        Ok(Watch::new(state.brokers_watch.subscribe(), None))
    }

    async fn campaign(
        &self,
        role: &str,
        candidate: &[u8],
        wait_max: Duration,
    ) -> CoordResult<Leadership> {
        let key = HoldKey {
            kind: HoldKind::Leadership,
            name: role.to_owned(),
        };
        let hold = self
            .shared
            .acquire(self.client, key, candidate, wait_max)
            .await?;
        Ok(Leadership::new(hold))
    }

    async fn leader(&self, role: &str) -> CoordResult<Option<LeaderInfo>> {
        validate_name(role)?;
        let state = self.shared.open_state(self.client)?;
        Ok(leader_of(&state, role))
    }

    async fn watch_leader(&self, role: &str) -> CoordResult<Watch<Option<LeaderInfo>>> {
        validate_name(role)?;
        let mut state = self.shared.open_state(self.client)?;
        let current = leader_of(&state, role);
        Ok(subscribe(&mut state.leader_watch, role, current))
    }

    async fn get(&self, key: &str) -> CoordResult<Option<KvEntry>> {
        validate_name(key)?;
        let state = self.shared.open_state(self.client)?;
        Ok(entry_of(&state, key))
    }

    async fn list(&self, prefix: &str) -> CoordResult<Vec<KvEntry>> {
        validate_prefix(prefix)?;
        let state = self.shared.open_state(self.client)?;
        Ok(state
            .durable
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, stored)| KvEntry {
                key: key.clone(),
                value: stored.value.clone(),
                version: Version(stored.version),
            })
            .collect())
    }

    async fn write(
        &self,
        key: &str,
        value: &[u8],
        condition: WriteCondition<'_>,
    ) -> CoordResult<Version> {
        validate_name(key)?;
        validate_value(value)?;
        let mut state = self.shared.open_state(self.client)?;
        if let Some(fence) = condition.fence {
            let hold = HoldKey {
                kind: fence.kind(),
                name: fence.name().to_owned(),
            };
            if state
                .holds
                .get(&hold)
                .is_none_or(|record| record.token != fence.value())
            {
                return Err(CoordError::Fenced {
                    role: fence.name().to_owned(),
                    token: fence.value(),
                });
            }
        }
        if let Some(expected) = condition.expected {
            let current = state
                .durable
                .kv
                .get(key)
                .map(|stored| Version(stored.version));
            let matches = match expected {
                Expected::Absent => current.is_none(),
                Expected::Version(version) => current == Some(version),
            };
            if !matches {
                return Err(CoordError::CasConflict {
                    key: key.to_owned(),
                    expected: match expected {
                        Expected::Absent => None,
                        Expected::Version(version) => Some(version),
                    },
                });
            }
        }
        let index = self.shared.commit(&mut state, |durable, index| {
            durable.kv.insert(
                key.to_owned(),
                StoredEntry {
                    value: value.to_vec(),
                    version: index,
                },
            );
        })?;
        let entry = entry_of(&state, key);
        publish(&mut state.kv_watch, key, entry);
        Ok(Version(index))
    }

    async fn delete(&self, key: &str) -> CoordResult<()> {
        validate_name(key)?;
        let mut state = self.shared.open_state(self.client)?;
        if !state.durable.kv.contains_key(key) {
            return Ok(());
        }
        self.shared.commit(&mut state, |durable, _| {
            durable.kv.remove(key);
        })?;
        publish(&mut state.kv_watch, key, None);
        Ok(())
    }

    async fn watch(&self, key: &str) -> CoordResult<Watch<Option<KvEntry>>> {
        validate_name(key)?;
        let mut state = self.shared.open_state(self.client)?;
        let current = entry_of(&state, key);
        Ok(subscribe(&mut state.kv_watch, key, current))
    }

    async fn lock(&self, name: &str, wait_max: Duration) -> CoordResult<LockGuard> {
        let key = HoldKey {
            kind: HoldKind::Lock,
            name: name.to_owned(),
        };
        let hold = self.shared.acquire(self.client, key, &[], wait_max).await?;
        Ok(LockGuard::new(hold))
    }

    async fn close(&self) -> CoordResult<()> {
        self.shared.close_client(self.client);
        Ok(())
    }
}
