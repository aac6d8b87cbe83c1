//! The log a coordinator keeps its state in: the partitions of an internal compacted topic
//! (`__consumer_offsets` for the group coordinator, `__transaction_state` for the
//! transaction coordinator). A key (group id, transactional id) belongs to one partition by
//! Kafka's hash rule; this broker coordinates the key while it leads that partition and has
//! loaded it at the current leader epoch. Records are appended as the partition's leader and
//! count only once durable (fsync when the flush policy asks, then the ISR): a replay by the
//! next leader must find everything a client was told.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use lmq_storage::batch::{BatchView, RecordView, parse_records};
use lmq_storage::builder::BatchBuilder;
use lmq_storage::{FirstBatch, ReadBound, ReadLimits, StorageError};
use lmq_wire::Acks;
use tokio::sync::oneshot;

use crate::partition::{Partition, ReplicaError};
use crate::replication::AckError;

/// Why a coordinator record could not be written or did not become durable.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("this broker does not lead the coordinator's partition (it moved)")]
    NotCoordinator,
}

impl From<ReplicaError> for LogError {
    fn from(error: ReplicaError) -> Self {
        match error {
            ReplicaError::Storage(error) => LogError::Storage(error),
            ReplicaError::NotLeader
            | ReplicaError::NotEnoughReplicas
            | ReplicaError::FencedLeaderEpoch(_)
            | ReplicaError::UnknownLeaderEpoch(_) => LogError::NotCoordinator,
        }
    }
}

/// Whether this broker coordinates a key now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// It leads the key's partition and has loaded it at the current leader epoch.
    Owned,
    /// It leads the partition at an epoch it has not loaded yet (COORDINATOR_LOAD_IN_PROGRESS).
    Loading,
    /// Another broker leads the partition (NOT_COORDINATOR).
    Elsewhere,
    /// The internal topic does not exist here yet (COORDINATOR_NOT_AVAILABLE).
    NoTopic,
}

/// What [`CoordinatorLog::adopt`] replaced: what the owner held for those partitions is void.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// The partition count changed: keys map to other partitions now.
    All,
    /// These partitions are new objects (the topic was recreated or a replica remade).
    Some(Vec<usize>),
}

impl Replaced {
    pub fn contains(&self, index: usize) -> bool {
        match self {
            Replaced::All => true,
            Replaced::Some(indexes) => indexes.contains(&index),
        }
    }
}

#[derive(Debug)]
pub struct CoordinatorLog {
    /// The internal topic's name, for errors and logs.
    topic: &'static str,
    /// Its partitions (replaced when a cluster (re)creates the topic).
    partitions: RwLock<Vec<Arc<Partition>>>,
    /// The leader epoch at which each partition was last loaded by the owner. Lock order:
    /// `partitions` first.
    loaded_epochs: Mutex<HashMap<usize, i32>>,
}

impl CoordinatorLog {
    /// A log whose `partitions` count as loaded at their current epochs (the owner loaded
    /// them before).
    pub fn new(topic: &'static str, partitions: Vec<Arc<Partition>>) -> Self {
        let loaded_epochs = partitions
            .iter()
            .enumerate()
            .map(|(index, partition)| (index, partition.leader_epoch()))
            .collect();
        CoordinatorLog {
            topic,
            partitions: RwLock::new(partitions),
            loaded_epochs: Mutex::new(loaded_epochs),
        }
    }

    pub fn topic(&self) -> &'static str {
        self.topic
    }

    /// Takes the cluster's partitions of the topic; every metadata change hands the same
    /// ones over again, so only really replaced partitions lose their loaded state.
    pub fn adopt(&self, partitions: Vec<Arc<Partition>>) -> Replaced {
        let mut current = self
            .partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut loaded = self
            .loaded_epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let replaced = if partitions.len() != current.len() {
            loaded.clear();
            Replaced::All
        } else {
            let replaced: Vec<usize> = current
                .iter()
                .zip(&partitions)
                .enumerate()
                .filter(|(_, (old, new))| !Arc::ptr_eq(old, new))
                .map(|(index, _)| index)
                .collect();
            loaded.retain(|index, _| !replaced.contains(index));
            Replaced::Some(replaced)
        };
        *current = partitions;
        replaced
    }

    pub fn partition_count(&self) -> usize {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn partition(&self, index: usize) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
            .cloned()
    }

    /// The partition holding `key`'s records, with its index.
    pub fn partition_of(&self, key: &str) -> Option<(usize, Arc<Partition>)> {
        let partitions = self
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if partitions.is_empty() {
            return None;
        }
        let index = partition_for(key, partitions.len());
        Some((index, Arc::clone(&partitions[index])))
    }

    /// Whether this broker coordinates `key` now.
    pub fn ownership(&self, key: &str) -> Ownership {
        match self.partition_of(key) {
            Some((index, partition)) => self.ownership_of(index, &partition),
            None => Ownership::NoTopic,
        }
    }

    /// Whether this broker coordinates the keys of partition `index`.
    pub fn ownership_of(&self, index: usize, partition: &Partition) -> Ownership {
        if !partition.is_leader() {
            return Ownership::Elsewhere;
        }
        let loaded = self
            .loaded_epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&index)
            .copied();
        if loaded == Some(partition.leader_epoch()) {
            Ownership::Owned
        } else {
            Ownership::Loading
        }
    }

    /// Records that partition `index` was loaded for leader epoch `epoch` (read before the
    /// replay: a later leadership loads again).
    pub fn mark_loaded(&self, index: usize, epoch: i32) {
        self.loaded_epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(index, epoch);
    }

    /// Appends `records` (key, value; `None` a tombstone) to partition `index` as its leader,
    /// in one batch; the returned [`Durable`] says when they count.
    pub fn append(
        &self,
        index: usize,
        records: &[(Bytes, Option<Bytes>)],
        now_ms: i64,
    ) -> Result<Durable, LogError> {
        self.append_batch(index, records, None, now_ms)
    }

    /// [`CoordinatorLog::append`] as part of a producer's transaction (`producer`: its id
    /// and epoch): a transactional batch without sequence numbers, as Kafka's coordinators
    /// write transactional offset commits; the transaction's marker settles it.
    pub fn append_transactional(
        &self,
        index: usize,
        records: &[(Bytes, Option<Bytes>)],
        producer: (i64, i16),
        now_ms: i64,
    ) -> Result<Durable, LogError> {
        self.append_batch(index, records, Some(producer), now_ms)
    }

    fn append_batch(
        &self,
        index: usize,
        records: &[(Bytes, Option<Bytes>)],
        producer: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<Durable, LogError> {
        if records.is_empty() {
            return Ok(Durable::default());
        }
        let partition = self.partition(index).ok_or(LogError::NotCoordinator)?;
        let mut builder = BatchBuilder::new(now_ms);
        if let Some((producer_id, producer_epoch)) = producer {
            builder = builder
                .producer(producer_id, producer_epoch, -1)
                .transactional();
        }
        for (key, value) in records {
            builder.push(Some(key), value.as_deref(), now_ms);
        }
        let appended = partition.append_as_coordinator(&mut builder.build(), Acks::All, now_ms)?;
        let info = appended.info;
        Ok(Durable {
            flush: info
                .durability
                .is_flush_pending()
                .then(|| (Arc::clone(&partition), info.last_offset + 1)),
            committed: appended.committed,
            position: Some((index, info.last_offset)),
        })
    }

    /// Reads every batch of partition `partition` (to its log end: a new leader's log is
    /// the truth) and hands each record to `visit` with its batch; returns how many records
    /// it read.
    pub fn replay(
        &self,
        partition: &Partition,
        mut visit: impl FnMut(&BatchView<'_>, RecordView<'_>),
    ) -> Result<usize, StorageError> {
        let mut replayed = 0usize;
        let offsets = partition.offsets()?;
        let mut offset = offsets.log_start_offset;
        while offset < offsets.log_end_offset {
            let limits = ReadLimits {
                max_bytes: REPLAY_READ_BYTES_MAX,
                bound: ReadBound::LogEnd,
                first_batch: FirstBatch::Whole,
            };
            let Some(region) = partition.read(offset, limits)?.region else {
                break;
            };
            let bytes = region.read_to_vec().map_err(|error| StorageError::Io {
                operation: "read",
                path: self.topic.into(),
                source: error,
            })?;
            let mut rest = &bytes[..];
            while let Some(total) = lmq_storage::batch::batch_total_bytes(rest)
                .and_then(|total| usize::try_from(total).ok())
            {
                let Some(batch) = rest.get(..total) else {
                    break;
                };
                rest = &rest[total..];
                let Ok(view) = BatchView::new(batch) else {
                    break;
                };
                offset = view.last_offset() + 1;
                for record in parse_records(&view, view.records_bytes()).unwrap_or_default() {
                    visit(&view, record);
                    replayed += 1;
                }
            }
        }
        Ok(replayed)
    }
}

/// Bytes of a coordinator topic one replay read takes.
const REPLAY_READ_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// A change written to a coordinator log, to wait on before it counts: its fsync (with
/// `flush = "every-batch"`), then (in a cluster) the moment the ISR has it.
#[derive(Debug, Default)]
pub struct Durable {
    flush: Option<(Arc<Partition>, i64)>,
    committed: Option<oneshot::Receiver<Result<(), AckError>>>,
    /// The partition and last offset of the batch written.
    pub position: Option<(usize, i64)>,
}

impl Durable {
    /// The outcome when it is known without waiting.
    pub fn settled(&mut self) -> Option<Result<(), LogError>> {
        if self.flush.is_some() {
            return None;
        }
        let Some(committed) = self.committed.as_mut() else {
            return Some(Ok(()));
        };
        match committed.try_recv() {
            Ok(Ok(())) => Some(Ok(())),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {
                Some(Err(LogError::NotCoordinator))
            }
        }
    }

    /// Waits until the change is on disk and replicated (or `timeout` passes).
    pub async fn wait(self, timeout: std::time::Duration) -> Result<(), LogError> {
        if let Some((partition, end_offset)) = self.flush {
            partition.flush_to(end_offset).await?;
        }
        let Some(committed) = self.committed else {
            return Ok(());
        };
        match tokio::time::timeout(timeout, committed).await {
            Ok(Ok(Ok(()))) => Ok(()),
            _ => Err(LogError::NotCoordinator),
        }
    }
}

/// The coordinator partition that holds a key's records (Kafka's rule for groups and
/// transactional ids: Java's `String.hashCode` of the key, `Utils.abs`, modulo the partition
/// count, so the layout matches Kafka's).
pub fn partition_for(key: &str, partitions: usize) -> usize {
    let hash = key.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    // Kafka's Utils.abs maps i32::MIN to 0.
    let positive = if hash == i32::MIN {
        0
    } else {
        hash.unsigned_abs()
    };
    usize::try_from(positive).unwrap_or(0) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_partitions_as_in_kafka() {
        // Java: "test-group".hashCode() == 627841412, % 50 == 12.
        assert_eq!(partition_for("test-group", 50), 12);
        assert_eq!(partition_for("anything", 1), 0);
        assert_eq!(partition_for("", 50), 0);
    }
}
