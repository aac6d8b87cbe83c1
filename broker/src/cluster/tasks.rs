//! The background tasks of a cluster broker: watches on the coordinator (metadata, live
//! brokers, controller), ISR persistence, leader ticks and the leadership lease. Each runs until
//! shutdown and survives coordinator errors by retrying.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lmq_coord::BrokerInfo;
use tokio::sync::watch;

use super::{CONTACT_INTERVAL, CONTROLLER_ROLE, ClusterNode, store};
use crate::broker::Broker;
use crate::partition::{IsrProposal, Partition};

pub(super) fn by_id(brokers: Vec<BrokerInfo>) -> BTreeMap<i32, BrokerInfo> {
    brokers
        .into_iter()
        .filter_map(|info| Some((i32::try_from(info.broker_id).ok()?, info)))
        .collect()
}

/// After a watch failed to open, before it is opened again.
const WATCH_OPEN_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// After a watch ended, before it is opened again.
const WATCH_REOPEN_PAUSE: Duration = Duration::from_millis(200);
/// Bounds of the period of leader ticks.
const LEADER_TICK_MS_MIN: u64 = 50;
const LEADER_TICK_MS_MAX: u64 = 1_000;

/// Runs `body` for each state of a watch until shutdown; a watch that ends (the coordinator
/// closed or failing) is opened again after a pause.
pub(super) async fn follow<T, Open, Fut>(
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    open: Open,
    mut body: impl FnMut(T),
) where
    T: Clone,
    Open: Fn() -> Fut,
    Fut: std::future::Future<Output = lmq_coord::CoordResult<lmq_coord::Watch<T>>>,
{
    loop {
        let mut watch = match open().await {
            Ok(watch) => watch,
            Err(error) => {
                tracing::warn!(what, %error, "cannot watch the coordinator; retrying");
                tokio::select! {
                    () = tokio::time::sleep(WATCH_OPEN_RETRY_PAUSE) => continue,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        };
        loop {
            tokio::select! {
                state = watch.next() => match state {
                    Some(state) => body(state),
                    None => break,
                },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
        tokio::time::sleep(WATCH_REOPEN_PAUSE).await;
    }
}

pub(super) async fn watch_metadata(
    broker: Arc<Broker>,
    node: Arc<ClusterNode>,
    shutdown: watch::Receiver<bool>,
) {
    let coordinator = Arc::clone(&node.coordinator);
    follow(
        shutdown,
        "metadata",
        || coordinator.watch(store::METADATA_KEY),
        |entry| {
            let Some(entry) = entry else { return };
            match store::decode(&entry.value) {
                Ok(metadata) => node.apply_metadata(&broker, metadata, Some(entry.version)),
                Err(error) => tracing::error!(%error, "ignoring cluster metadata"),
            }
        },
    )
    .await;
}

pub(super) async fn watch_brokers(node: Arc<ClusterNode>, shutdown: watch::Receiver<bool>) {
    let coordinator = Arc::clone(&node.coordinator);
    follow(
        shutdown,
        "brokers",
        || coordinator.watch_brokers(),
        |brokers| {
            tracing::info!(brokers = ?brokers.iter().map(|b| b.broker_id).collect::<Vec<_>>(), "live brokers");
            node.update_view(|view| view.brokers = by_id(brokers));
        },
    )
    .await;
}

pub(super) async fn watch_controller(node: Arc<ClusterNode>, shutdown: watch::Receiver<bool>) {
    let coordinator = Arc::clone(&node.coordinator);
    follow(
        shutdown,
        "controller",
        || coordinator.watch_leader(CONTROLLER_ROLE),
        |leader| {
            let id = leader
                .and_then(|leader| String::from_utf8(leader.candidate).ok())
                .and_then(|id| id.parse().ok())
                .unwrap_or(-1);
            node.update_view(|view| view.controller = id);
        },
    )
    .await;
}

/// Persists local leaders' ISR changes one at a time, each a compare-and-set accepted only
/// while the proposer still leads in the epoch it proposed from.
pub(super) async fn persist_isr_changes(
    broker: Arc<Broker>,
    node: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let wakeup = Arc::clone(&broker.topics.isr_wakeup);
    loop {
        tokio::select! {
            () = wakeup.notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        // Every proposal waits in its partition's state: look at all of them, one
        // compare-and-set at a time (a success may lead to the next proposal, which wakes
        // this task again).
        for topic in broker.topics.list() {
            for partition in &topic.partitions {
                if let Some(proposal) = partition.pending_isr_proposal() {
                    persist_isr_change(&broker, &node, &topic.name, partition, proposal).await;
                }
            }
        }
    }
}

/// Persists one leader's ISR proposal with the metadata's compare-and-set and reports the
/// outcome to the partition.
async fn persist_isr_change(
    broker: &Broker,
    node: &ClusterNode,
    topic: &str,
    partition: &Partition,
    proposal: IsrProposal,
) {
    let live = node.view().live_ids();
    let outcome = store::update(&*node.coordinator, None, |metadata| {
        metadata.alter_isr(
            topic,
            partition.index,
            node.node_id,
            proposal.leader_epoch,
            &proposal.isr,
            &live,
        )
    })
    .await;
    match outcome {
        Ok((metadata, version)) => {
            tracing::info!(topic, partition = partition.index, isr = ?proposal.isr, "ISR changed");
            partition.isr_persisted(
                proposal.leader_epoch,
                Some(proposal.isr.clone()),
                broker.now_ms(),
            );
            node.apply_metadata(broker, metadata, version);
        }
        Err(error) => {
            tracing::warn!(topic, partition = partition.index, %error, "ISR change not persisted");
            partition.isr_persisted(proposal.leader_epoch, None, broker.now_ms());
        }
    }
}

/// Lets time pass for every partition this broker leads, so followers that stopped fetching
/// leave the ISR even when no request arrives.
pub(super) async fn tick_leaders(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    // A quarter of the lag limit, so a follower leaves the ISR at most 25% late.
    let period = Duration::from_millis(
        u64::try_from(broker.config.cluster.replica_lag_time_max_ms / 4)
            .unwrap_or(LEADER_TICK_MS_MAX)
            .clamp(LEADER_TICK_MS_MIN, LEADER_TICK_MS_MAX),
    );
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let now_ms = broker.now_ms();
        for topic in broker.topics.list() {
            for partition in &topic.partitions {
                partition.tick(now_ms);
            }
        }
    }
}

/// Renews the leadership lease every [`CONTACT_INTERVAL`]: sent = now, pass this broker's
/// TTL check, then the health query must list this broker as healthy; only then does the
/// lease run from `sent`. A successful query alone proves nothing about this broker's own
/// registration (its check may be failing or about to expire). The whole round must finish
/// within a quarter TTL. After the lease lapsed (cut off, or the process stood still) the
/// metadata is read again and applied before the lease counts again, since other leaders may
/// have been elected meanwhile.
pub(super) async fn keep_contact(
    broker: Arc<Broker>,
    node: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reported = false;
    let broker_id = u32::try_from(node.node_id).unwrap_or(0);
    loop {
        tokio::select! {
            () = tokio::time::sleep(CONTACT_INTERVAL) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let sent = node.lease_now();
        let round = tokio::time::timeout(node.contact_timeout(), async {
            node.coordinator.pass_ttl_check(broker_id).await?;
            node.coordinator.brokers().await
        })
        .await;
        let failure = match round {
            Ok(Ok(brokers)) if brokers.iter().any(|info| info.broker_id == broker_id) => None,
            Ok(Ok(_)) => Some("this broker is not listed healthy".to_string()),
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("no answer within a quarter TTL".to_string()),
        };
        if let Some(failure) = failure {
            if !reported {
                tracing::warn!(
                    %failure,
                    "the lease is not renewed; leader writes stop when it ends"
                );
                reported = true;
            }
            continue;
        }
        if !node.renew_lease(sent) {
            match store::read(&*node.coordinator).await {
                Ok((metadata, version)) => {
                    node.apply_metadata(&broker, metadata, version);
                    tracing::info!("in contact with the coordinator again; metadata re-read");
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot re-read the cluster metadata yet");
                    continue;
                }
            }
            node.restart_lease(sent);
        }
        reported = false;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use lmq_coord::{
        BrokerRegistration, CoordResult, Coordinator, KvEntry, LeaderInfo, Leadership, LockGuard,
        Version, Watch, WriteCondition,
    };

    use super::super::testing;
    use super::*;

    /// A coordinator whose health query leaves this broker out while `hidden` is set (as
    /// Consul does once the broker's TTL check is critical), everything else passed through.
    #[derive(Debug)]
    struct Unlisted {
        inner: Arc<dyn Coordinator>,
        hidden: Arc<AtomicBool>,
    }

    #[async_trait]
    impl Coordinator for Unlisted {
        async fn register_broker(&self, registration: &BrokerRegistration) -> CoordResult<()> {
            self.inner.register_broker(registration).await
        }
        async fn deregister_broker(&self, broker_id: u32) -> CoordResult<()> {
            self.inner.deregister_broker(broker_id).await
        }
        async fn pass_ttl_check(&self, broker_id: u32) -> CoordResult<()> {
            self.inner.pass_ttl_check(broker_id).await
        }
        async fn brokers(&self) -> CoordResult<Vec<BrokerInfo>> {
            let mut brokers = self.inner.brokers().await?;
            if self.hidden.load(Ordering::SeqCst) {
                brokers.retain(|broker| broker.broker_id != 0);
            }
            Ok(brokers)
        }
        async fn watch_brokers(&self) -> CoordResult<Watch<Vec<BrokerInfo>>> {
            self.inner.watch_brokers().await
        }
        async fn campaign(
            &self,
            role: &str,
            candidate: &[u8],
            wait_max: Duration,
        ) -> CoordResult<Leadership> {
            self.inner.campaign(role, candidate, wait_max).await
        }
        async fn leader(&self, role: &str) -> CoordResult<Option<LeaderInfo>> {
            self.inner.leader(role).await
        }
        async fn watch_leader(&self, role: &str) -> CoordResult<Watch<Option<LeaderInfo>>> {
            self.inner.watch_leader(role).await
        }
        async fn get(&self, key: &str) -> CoordResult<Option<KvEntry>> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str) -> CoordResult<Vec<KvEntry>> {
            self.inner.list(prefix).await
        }
        async fn write(
            &self,
            key: &str,
            value: &[u8],
            condition: WriteCondition<'_>,
        ) -> CoordResult<Version> {
            self.inner.write(key, value, condition).await
        }
        async fn delete(&self, key: &str) -> CoordResult<()> {
            self.inner.delete(key).await
        }
        async fn watch(&self, key: &str) -> CoordResult<Watch<Option<KvEntry>>> {
            self.inner.watch(key).await
        }
        async fn lock(&self, name: &str, wait_max: Duration) -> CoordResult<LockGuard> {
            self.inner.lock(name, wait_max).await
        }
        async fn close(&self) -> CoordResult<()> {
            self.inner.close().await
        }
    }

    /// Moves the manual clock by `by_ms`, then gives keep_contact (every 500 ms of real
    /// time) the chance of a round or two.
    async fn let_time_pass(test: &testing::TestNode, by_ms: i64) {
        test.clock.advance(by_ms);
        tokio::time::sleep(Duration::from_millis(1_200)).await;
    }

    /// The lease is renewed only by rounds in which this broker's TTL pass succeeds and the
    /// health query then lists it as healthy: a query that answers without it (its TTL check
    /// failing), or a pass that fails (deregistered), does not renew, so the lease lapses
    /// half a TTL after the last round that did.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_contact_renews_only_while_this_broker_is_listed_healthy() {
        let hidden = Arc::new(AtomicBool::new(false));
        let test = testing::start(|config| config.cluster.broker_ttl_ms = 2_000, {
            let hidden = Arc::clone(&hidden);
            move |inner| Arc::new(Unlisted { inner, hidden })
        })
        .await;
        // Listed: renewed round after round, on the manual clock (lease 1 s).
        for _ in 0..3 {
            let_time_pass(&test, 600).await;
            assert!(test.node.may_lead(), "renewed while listed");
        }
        // The query answers, but without this broker.
        hidden.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let_time_pass(&test, 1_100).await;
        assert!(!test.node.may_lead(), "renewed while not listed healthy");
        // Listed again: the lease comes back.
        hidden.store(false, Ordering::SeqCst);
        let_time_pass(&test, 100).await;
        assert!(test.node.may_lead(), "renewed once listed again");
        // Deregistered: the TTL pass itself fails.
        test.node.coordinator.deregister_broker(0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let_time_pass(&test, 1_100).await;
        assert!(!test.node.may_lead(), "renewed after deregistering");
    }
}
