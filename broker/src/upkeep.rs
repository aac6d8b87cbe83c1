//! The broker's own periodic work, as tasks in the [`JoinSet`] of whoever serves the broker
//! (`server::run`): group timers, flushes, reopening poisoned logs, retention and
//! checkpoints, offset expiry. Disk work runs on the blocking pool, never on a runtime worker; each task
//! ends on the shutdown signal, and [`join_within`] bounds how long a stop waits for them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::broker::Broker;
use crate::cluster::ClusterNode;

/// Session expiry and join deadlines of the groups.
pub const GROUPS_TICK_MS: u64 = 100;
/// Interval flushes, rolled segments' fsyncs, and the search for poisoned logs.
pub const FLUSH_TICK_MS: u64 = 1_000;
/// Retention, idle producer expiry and checkpoints.
pub const RETENTION_TICK_MS: u64 = 60_000;
/// How long a stop waits for background tasks before it aborts them.
pub const STOP_TASKS_MS_MAX: u64 = 10_000;

/// Starts the periodic tasks into `tasks`.
pub fn spawn(
    broker: &Arc<Broker>,
    cluster: &Arc<ClusterNode>,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) {
    let groups = Arc::clone(broker);
    tasks.spawn(every(GROUPS_TICK_MS, 0, shutdown.clone(), move || {
        let groups = Arc::clone(&groups);
        async move { groups.groups.tick(groups.now_ms()) }
    }));
    let flusher = Arc::clone(broker);
    let cluster = Arc::clone(cluster);
    tasks.spawn(every(FLUSH_TICK_MS, 0, shutdown.clone(), move || {
        flush(Arc::clone(&flusher), Arc::clone(&cluster))
    }));
    let retention = Arc::clone(broker);
    // Like Kafka's `log.initial.task.delay.ms`, the first pass waits: a broker that just
    // started serves before it deletes anything.
    tasks.spawn(every(
        RETENTION_TICK_MS,
        RETENTION_TICK_MS,
        shutdown.clone(),
        move || {
            let broker = Arc::clone(&retention);
            async move {
                if let Err(error) = tokio::task::spawn_blocking(move || broker.maintain()).await {
                    tracing::error!(%error, "the retention pass failed");
                }
            }
        },
    ));
    let expiry = Arc::clone(broker);
    let check_ms = broker
        .config
        .group
        .offsets_retention_check_interval_ms
        .max(1);
    tasks.spawn(every(check_ms, check_ms, shutdown.clone(), move || {
        expire_offsets(Arc::clone(&expiry))
    }));
    let settings = &broker.config.transactions;
    let aborting = Arc::clone(broker);
    let abort_ms = settings.abort_timed_out_transaction_cleanup_interval_ms;
    tasks.spawn(every(abort_ms, abort_ms, shutdown.clone(), move || {
        let broker = Arc::clone(&aborting);
        async move { broker.transactions.abort_timed_out(broker.now_ms()) }
    }));
    let expiring = Arc::clone(broker);
    let expire_ms = settings.remove_expired_transaction_cleanup_interval_ms;
    tasks.spawn(every(expire_ms, expire_ms, shutdown.clone(), move || {
        let broker = Arc::clone(&expiring);
        async move { broker.transactions.expire_ids(broker.now_ms()) }
    }));
}

/// One offset expiry pass: the tombstones are appended on the blocking pool, then waited
/// for (each shows in OffsetFetch once durable).
async fn expire_offsets(broker: Arc<Broker>) {
    let expiring = Arc::clone(&broker);
    let written = match tokio::task::spawn_blocking(move || {
        expiring.groups.expire_offsets(expiring.now_ms())
    })
    .await
    {
        Ok(written) => written,
        Err(error) => {
            tracing::error!(%error, "the offset expiry pass failed");
            return;
        }
    };
    for durable in written {
        if let Err(error) = broker
            .groups
            .wait_durable(durable, crate::group::OFFSETS_COMMIT_TIMEOUT)
            .await
        {
            tracing::warn!(%error, "expired offsets' tombstones did not become durable");
        }
    }
}

/// Runs `pass` every `period_ms`, the first after `delay_ms`, until `shutdown`; a pass that
/// outlasts the period delays the next rather than bunching them.
async fn every<F, Fut>(
    period_ms: u64,
    delay_ms: u64,
    mut shutdown: watch::Receiver<bool>,
    mut pass: F,
) where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    let mut interval = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_millis(delay_ms),
        Duration::from_millis(period_ms),
    );
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = interval.tick() => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        if stopping {
            break;
        }
        pass().await;
    }
}

/// One flush pass: interval flushes on the blocking pool, then the fsyncs of rolled segments
/// (and every-batch tails nobody waits for) through each partition's group commit, all at
/// once; then poisoned logs get their reopening task.
async fn flush(broker: Arc<Broker>, cluster: Arc<ClusterNode>) {
    let scanning = Arc::clone(&broker);
    let targets = match tokio::task::spawn_blocking(move || scanning.flush_due()).await {
        Ok(targets) => targets,
        Err(error) => {
            tracing::error!(%error, "the flush pass failed");
            Vec::new()
        }
    };
    join_all(targets.into_iter().map(|(partition, end_offset)| async move {
        if let Err(error) = partition.flush_to(end_offset).await {
            tracing::error!(partition = partition.index, %error, "flushing rolled segments failed");
        }
    }))
    .await;
    crate::reopen::reopen_poisoned(&broker, &cluster);
}

/// Waits for `tasks` to end (they were told to stop), aborting those still running after
/// `deadline`.
pub async fn join_within(mut tasks: JoinSet<()>, deadline: Duration) {
    let drained = tokio::time::timeout(deadline, async {
        while let Some(outcome) = tasks.join_next().await {
            if let Err(error) = outcome
                && error.is_panic()
            {
                tracing::error!(%error, "a background task panicked");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            running = tasks.len(),
            "background tasks outlasted the stop deadline; aborting them"
        );
        tasks.shutdown().await;
    }
}
