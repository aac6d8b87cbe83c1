//! The transaction coordinator's marker channel (Kafka's `TransactionMarkerChannelManager`):
//! writes each ended transaction's COMMIT or ABORT marker to the leader of every partition
//! of the transaction with WriteTxnMarkers, over the inter-broker listener as a broker (this
//! broker too, through its own listener: one path for every leader), and retries a
//! partition until its leader wrote the marker. What it hears back goes to the coordinator
//! through [`MarkerOutcome`]s; it never decides anything about a transaction itself. Its
//! queue is `txn::markers::MarkerChannel`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use lmq_wire::protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use lmq_wire::protocol::protocol::StrBytes;
use tokio::sync::watch;

use super::ClusterNode;
use crate::broker::Broker;
pub use crate::txn::markers::{MarkerChannel, MarkerJob, MarkerOutcome};

/// Wait before a partition whose marker failed is tried again (Kafka's markers are retried
/// after `retry.backoff.ms`, 100 ms).
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Partitions one WriteTxnMarkers request carries at most.
const PARTITIONS_PER_REQUEST_MAX: usize = 1_000;

/// The sending task: writes the queued jobs until the broker stops; `report` gets every
/// partition's outcome.
pub async fn run(
    broker: Arc<Broker>,
    node: Arc<ClusterNode>,
    channel: Arc<MarkerChannel>,
    report: impl Fn(MarkerOutcome) + Send + Sync + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let wake = channel.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let jobs = channel.take_all();
        let idle = jobs.is_empty();
        let left = if idle {
            Vec::new()
        } else {
            send_round(&broker, &node, jobs, &report).await
        };
        let retry = !left.is_empty();
        channel.put_back(left);
        tokio::select! {
            () = &mut wake, if !retry => {}
            () = tokio::time::sleep(RETRY_PAUSE), if retry => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// One pass over every job: each partition's marker goes to its current leader. Returns
/// the jobs with partitions still to write.
async fn send_round(
    broker: &Broker,
    node: &ClusterNode,
    mut jobs: Vec<MarkerJob>,
    report: &impl Fn(MarkerOutcome),
) -> Vec<MarkerJob> {
    // leader → (job index → its partitions there)
    let mut by_leader: BTreeMap<i32, BTreeMap<usize, Vec<(String, i32)>>> = BTreeMap::new();
    {
        let view = node.view();
        for (index, job) in jobs.iter_mut().enumerate() {
            job.partitions.retain(|(topic, partition)| {
                let leader = view.metadata.topics.get(topic).map(|state| {
                    usize::try_from(*partition)
                        .ok()
                        .and_then(|index| state.partitions.get(index))
                        .map_or(-1, |state| state.leader)
                });
                match leader {
                    // The topic is gone: nothing left to mark.
                    None => {
                        report(MarkerOutcome::Written {
                            transactional_id: job.transactional_id.clone(),
                            producer_id: job.producer_id,
                            producer_epoch: job.producer_epoch,
                            topic: topic.clone(),
                            partition: *partition,
                        });
                        false
                    }
                    Some(leader) => {
                        by_leader
                            .entry(leader)
                            .or_default()
                            .entry(index)
                            .or_default()
                            .push((topic.clone(), *partition));
                        true
                    }
                }
            });
        }
    }
    for (leader, wanted) in by_leader {
        if leader < 0 {
            continue; // no leader yet: the next round
        }
        let connection = match node.peers.get(broker, node, leader).await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!(leader, %error, "cannot reach a partition leader for markers");
                continue;
            }
        };
        let mut batch: Vec<(usize, Vec<(String, i32)>)> = Vec::new();
        let mut count = 0usize;
        let mut batches = Vec::new();
        for (index, partitions) in wanted {
            count += partitions.len();
            batch.push((index, partitions));
            if count >= PARTITIONS_PER_REQUEST_MAX {
                batches.push(std::mem::take(&mut batch));
                count = 0;
            }
        }
        batches.push(batch);
        for batch in batches.into_iter().filter(|batch| !batch.is_empty()) {
            let request = request_for(&jobs, &batch);
            match connection.call(request).await {
                Ok(response) => {
                    for result in response.markers {
                        for topic in result.topics {
                            for answered in topic.partitions {
                                let Some(index) = batch.iter().find_map(|(index, _)| {
                                    (jobs[*index].producer_id == result.producer_id.0)
                                        .then_some(*index)
                                }) else {
                                    continue;
                                };
                                settle(
                                    &mut jobs[index],
                                    topic.name.0.as_str(),
                                    answered.partition_index,
                                    answered.error_code,
                                    report,
                                );
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(leader, %error, "writing transaction markers failed; retrying");
                    node.peers.broken(leader).await;
                    break;
                }
            }
        }
    }
    jobs.retain(|job| !job.partitions.is_empty());
    jobs
}

/// Applies a leader's answer for one partition of `job`.
fn settle(
    job: &mut MarkerJob,
    topic: &str,
    partition: i32,
    error_code: i16,
    report: &impl Fn(MarkerOutcome),
) {
    let done = match ResponseError::try_from_code(error_code) {
        None => {
            report(MarkerOutcome::Written {
                transactional_id: job.transactional_id.clone(),
                producer_id: job.producer_id,
                producer_epoch: job.producer_epoch,
                topic: topic.to_string(),
                partition,
            });
            true
        }
        // Deleted meanwhile: nothing left to mark.
        Some(ResponseError::UnknownTopicOrPartition) => {
            report(MarkerOutcome::Written {
                transactional_id: job.transactional_id.clone(),
                producer_id: job.producer_id,
                producer_epoch: job.producer_epoch,
                topic: topic.to_string(),
                partition,
            });
            true
        }
        Some(ResponseError::TransactionCoordinatorFenced | ResponseError::InvalidProducerEpoch) => {
            tracing::warn!(
                transactional_id = job.transactional_id,
                topic,
                partition,
                error_code,
                "a partition leader refused the transaction marker for good"
            );
            report(MarkerOutcome::Refused {
                transactional_id: job.transactional_id.clone(),
                topic: topic.to_string(),
                partition,
                error_code,
            });
            true
        }
        // Leadership moving, not enough replicas, a storage error: the next round.
        Some(error) => {
            tracing::debug!(
                transactional_id = job.transactional_id,
                topic,
                partition,
                ?error,
                "transaction marker not written yet"
            );
            false
        }
    };
    if done {
        job.partitions
            .retain(|(name, index)| !(name == topic && *index == partition));
    }
}

/// WriteTxnMarkers for the given parts of `jobs`.
fn request_for(
    jobs: &[MarkerJob],
    batch: &[(usize, Vec<(String, i32)>)],
) -> WriteTxnMarkersRequest {
    let mut request = WriteTxnMarkersRequest::default();
    request.markers = batch
        .iter()
        .map(|(index, partitions)| {
            let job = &jobs[*index];
            let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in partitions {
                topics.entry(topic).or_default().push(*partition);
            }
            let mut marker = WritableTxnMarker::default();
            marker.producer_id = ProducerId(job.producer_id);
            marker.producer_epoch = job.producer_epoch;
            marker.transaction_result = job.commit;
            marker.coordinator_epoch = job.coordinator_epoch;
            marker.topics = topics
                .into_iter()
                .map(|(name, partition_indexes)| {
                    let mut topic = WritableTxnMarkerTopic::default();
                    topic.name = TopicName(StrBytes::from_string(name.to_string()));
                    topic.partition_indexes = partition_indexes;
                    topic
                })
                .collect();
            marker
        })
        .collect();
    request
}
