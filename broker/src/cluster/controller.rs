//! The controller: one broker, elected through the coordinator, that reacts to brokers
//! coming and going by electing partition leaders from the persisted ISR (epoch bumped on
//! every change), and completes replica reassignments once their new replicas are in sync. Its writes carry its leadership's fencing token, so once the coordinator
//! has handed leadership to another broker, a deposed controller can no longer write.

use std::sync::Arc;
use std::time::Duration;

use lmq_coord::{CoordError, Leadership};
use tokio::sync::watch;

use super::{CONTROLLER_ROLE, ClusterNode, store};
use crate::broker::Broker;

/// How often a controller re-checks even without a change (a missed watch event is never
/// permanent).
const RESYNC: Duration = Duration::from_secs(5);

/// How long one campaign call waits for the role before it is made again.
const CAMPAIGN_WAIT: Duration = Duration::from_secs(10);
/// After a failed campaign call, before the next.
const CAMPAIGN_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Campaigns for the controller role until shutdown; leads while elected.
pub async fn campaign(
    broker: Arc<Broker>,
    node: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let candidate = node.node_id.to_string();
    loop {
        let outcome = tokio::select! {
            outcome = node.coordinator.campaign(CONTROLLER_ROLE, candidate.as_bytes(), CAMPAIGN_WAIT) => outcome,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match outcome {
            Ok(leadership) => {
                tracing::info!(token = leadership.token().value(), "elected controller");
                lead(&broker, &node, leadership, shutdown.clone()).await;
            }
            Err(CoordError::NotAcquired { .. }) => {}
            Err(error) => {
                tracing::warn!(%error, "controller campaign failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(CAMPAIGN_RETRY_PAUSE) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

async fn lead(
    broker: &Broker,
    node: &ClusterNode,
    mut leadership: Leadership,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = node.changes.subscribe();
    loop {
        if !leadership.is_leader() {
            break;
        }
        let live = node.view().live_ids();
        let token = leadership.token().clone();
        match store::update(&*node.coordinator, Some(&token), |metadata| {
            let elected = metadata.elect_leaders(&live);
            Ok(metadata.complete_reassignments(&live) | elected)
        })
        .await
        {
            Ok((metadata, version)) => node.apply_metadata(broker, metadata, version),
            Err(store::StoreError::Coordinator(CoordError::Fenced { .. })) => {
                tracing::warn!("controller leadership was taken over; stepping down");
                break;
            }
            Err(error) => tracing::warn!(%error, "controller could not update the metadata"),
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            reason = leadership.lost() => {
                tracing::warn!(?reason, "controller leadership lost");
                return;
            }
            () = tokio::time::sleep(RESYNC) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    let _ = leadership.resign().await;
}
