//! The queue between the transaction coordinator and the marker channel's sending task
//! (`cluster/markers.rs`): each prepared transaction's markers as a [`MarkerJob`], and what
//! became of each partition's marker as a [`MarkerOutcome`].
//!
//! Bounded by the coordinator: it hands over at most one job per transactional id at a time
//! (an id's next transition waits for its markers), so the queue holds at most as many jobs
//! as the coordinator holds ids.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// One transaction's markers to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The coordinator's epoch (its `__transaction_state` partition's leader epoch): a
    /// leader refuses markers of an older coordinator (TRANSACTION_COORDINATOR_FENCED).
    pub coordinator_epoch: i32,
    pub commit: bool,
    /// Partitions whose marker is not written yet.
    pub partitions: Vec<(String, i32)>,
}

impl From<super::state::Markers> for MarkerJob {
    fn from(markers: crate::txn::state::Markers) -> Self {
        MarkerJob {
            transactional_id: markers.transactional_id,
            producer_id: markers.producer_id,
            producer_epoch: markers.producer_epoch,
            coordinator_epoch: markers.coordinator_epoch,
            commit: markers.result == super::state::TxnResult::Commit,
            partitions: markers
                .partitions
                .into_iter()
                .map(|partition| (partition.topic, partition.partition))
                .collect(),
        }
    }
}

/// What became of one partition's marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerOutcome {
    /// Written by the partition's leader, or the topic is gone (nothing left to mark, as
    /// Kafka drops such markers).
    Written {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        topic: String,
        partition: i32,
    },
    /// The leader refused it for good: this coordinator is fenced by a newer one
    /// (TRANSACTION_COORDINATOR_FENCED) or the producer moved past the marker's epoch
    /// (INVALID_PRODUCER_EPOCH). The coordinator stops completing the transaction; its new
    /// owner (after a reload) writes the markers again.
    Refused {
        transactional_id: String,
        topic: String,
        partition: i32,
        error_code: i16,
    },
}

/// Hands marker jobs to the sending task.
#[derive(Debug, Default)]
pub struct MarkerChannel {
    queue: Mutex<VecDeque<MarkerJob>>,
    wake: Notify,
}

impl MarkerChannel {
    /// Queues `job`; its outcomes come back through the sender's callback.
    pub fn send(&self, job: MarkerJob) {
        if job.partitions.is_empty() {
            return;
        }
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(job);
        self.wake.notify_one();
    }

    /// Woken when a job is queued.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Every queued job, for a sending round.
    pub fn take_all(&self) -> Vec<MarkerJob> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect()
    }

    /// Jobs a round left unfinished, first in line again.
    pub fn put_back(&self, jobs: Vec<MarkerJob>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        for job in jobs.into_iter().rev() {
            queue.push_front(job);
        }
    }
}
