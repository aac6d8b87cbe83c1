//! The background tasks of a cluster broker: watches on the coordinator (metadata, live
//! brokers, controller), ISR persistence, leader ticks and the leadership lease. Each runs until
//! shutdown and survives coordinator errors by retrying.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lmq_coord::BrokerInfo;
use tokio::sync::watch;

use super::{CONTROLLER_ROLE, ClusterNode, store};
use crate::broker::Broker;
use crate::partition::{IsrProposal, Partition};

pub(super) fn by_id(brokers: Vec<BrokerInfo>) -> BTreeMap<i32, BrokerInfo> {
    brokers
        .into_iter()
        .filter_map(|info| Some((i32::try_from(info.broker_id).ok()?, info)))
        .collect()
}

/// Runs `body` for each state of a watch until shutdown; a watch that ends (the coordinator
/// closed or failing) is opened again after a pause.
async fn follow<T, Open, Fut>(
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
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
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
        tokio::time::sleep(Duration::from_millis(200)).await;
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
            broker.appended.notify_waiters();
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
    let period = Duration::from_millis(
        u64::try_from(broker.config.cluster.replica_lag_time_max_ms / 4)
            .unwrap_or(250)
            .clamp(50, 1_000),
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

/// Renews the leadership lease: a cheap coordinator round trip every 500 ms. After a gap
/// longer than the lease (cut off, or the process stood still) the metadata is read again and
/// applied before the lease counts again, since other leaders may have been elected meanwhile.
pub(super) async fn keep_contact(
    broker: Arc<Broker>,
    node: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reported = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let sent = node.monotonic_ms();
        let probe = tokio::time::timeout(
            Duration::from_millis(node.lease_ms),
            node.coordinator.brokers(),
        )
        .await;
        if !matches!(probe, Ok(Ok(_))) {
            if !reported {
                tracing::warn!(
                    "the coordinator does not answer; leader writes stop when the lease ends"
                );
                reported = true;
            }
            continue;
        }
        let silent = sent.saturating_sub(node.contact_ms.load(Ordering::Acquire));
        if silent > node.lease_ms {
            match store::read(&*node.coordinator).await {
                Ok((metadata, version)) => {
                    node.apply_metadata(&broker, metadata, version);
                    tracing::info!(
                        silent_ms = silent,
                        "in contact with the coordinator again; metadata re-read"
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot re-read the cluster metadata yet");
                    continue;
                }
            }
        }
        node.contact_ms.store(sent, Ordering::Release);
        reported = false;
    }
}
