//! Producer state of one partition: per producer id, its epoch and its last few batches, so
//! a retried batch is recognised (and answered with its original offsets) and a gap in
//! sequence numbers is refused; and its transaction (Kafka's `ProducerStateManager`): the
//! first offset of the one ongoing, ended by a marker, which the last stable offset waits
//! for. Pure logic; the log feeds it appends and replays.

use std::collections::{BTreeMap, BTreeSet};

use crate::control::{MarkerKind, TxnMarker};

/// Batches remembered per producer for duplicate detection: Kafka's
/// `max.in.flight.requests.per.connection` limit for idempotence is 5.
pub const BATCHES_REMEMBERED: usize = 5;

/// Idempotent producers remembered per partition: past it, the one whose last append is
/// oldest is forgotten (Kafka bounds the table only by `producer.id.expiration.ms`, so a
/// flood of producer ids could grow it without limit). A forgotten producer's next batch is
/// refused as an unknown producer's unless it starts a sequence.
pub const PRODUCERS_MAX: usize = 4_096;

/// What a producer batch carries that idempotence checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub last_offset_delta: i32,
    pub max_timestamp_ms: i64,
    /// Part of a transaction (attribute 0x10): starts one when none is ongoing.
    pub is_transactional: bool,
}

impl ProducerBatch {
    pub fn last_sequence(&self) -> i32 {
        // Sequences wrap at i32::MAX, as in Kafka.
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        i32::try_from(last % (i64::from(i32::MAX) + 1)).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub base_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first, at most [`BATCHES_REMEMBERED`].
    pub batches: Vec<BatchMetadata>,
    /// Broker time of the last append, for expiry.
    pub last_append_ms: i64,
    /// The coordinator epoch of the last marker (-1 before any): an older one is fenced.
    pub coordinator_epoch: i32,
    /// The first offset of the producer's ongoing transaction.
    pub current_txn_first_offset: Option<i64>,
    /// Offset of the last marker written for it (-1 before any).
    pub last_marker_offset: i64,
    /// Timestamp of the last batch or marker (-1 before any), as DescribeProducers shows it.
    pub last_timestamp_ms: i64,
    /// The last few ended transactions `(first offset, marker offset)`, oldest first, at most
    /// [`BATCHES_REMEMBERED`]: a truncation that cuts a marker reopens its transaction.
    pub ended_transactions: Vec<(i64, i64)>,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: Vec::new(),
            last_append_ms: 0,
            coordinator_epoch: -1,
            current_txn_first_offset: None,
            last_marker_offset: -1,
            last_timestamp_ms: -1,
            ended_transactions: Vec::new(),
        }
    }
}

impl ProducerEntry {
    /// Sequence of the last remembered batch, -1 when none.
    pub fn last_sequence(&self) -> i32 {
        self.batches.last().map_or(-1, |batch| batch.last_sequence)
    }
}

/// Who writes a batch (Kafka's `AppendOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A client's produce: sequences are checked.
    Client,
    /// A coordinator of this broker writing its own records.
    Coordinator,
}

/// Why a producer batch is refused; the broker maps each to its Kafka error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceError {
    /// An older epoch than the producer's current one: a zombie (INVALID_PRODUCER_EPOCH).
    FencedEpoch { current: i16, received: i16 },
    /// Not the next sequence (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder { expected: i32, received: i32 },
    /// No state for this producer and not its first batch (UNKNOWN_PRODUCER_ID).
    UnknownProducer { producer_id: i64 },
    /// A non-transactional batch while the producer's transaction is ongoing
    /// (INVALID_TXN_STATE).
    TransactionOngoing { producer_id: i64 },
    /// A control batch from a producer: only the coordinator writes markers.
    ControlBatch,
    /// A transactional batch that would start a transaction after a marker the transaction
    /// coordinator's verification did not see (KIP-890's verification guard): the
    /// transaction it verified has ended since (INVALID_TXN_STATE).
    StaleVerification { producer_id: i64 },
}

/// What the owner saw of a producer when the transaction coordinator verified (or the
/// partition showed) its transaction here: the offset of its last marker (-1: none). A
/// transactional batch of that producer starts a transaction only while this still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationGuard {
    pub producer_id: i64,
    pub last_marker_offset: i64,
}

/// How a marker's producer epoch is checked (Kafka's transaction versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerEpochRule {
    /// Transaction versions 0 and 1: the marker carries the transaction's epoch or a newer
    /// one (`epoch >= current`).
    SameOrNewer,
    /// Transaction version 2 (KIP-890 part 2): EndTxn bumped the epoch, so a marker's epoch
    /// is above the current one; an equal epoch is accepted only as the retry of a marker
    /// already written (no transaction ongoing).
    Bumped,
}

/// Why a marker is refused; the broker maps each to its Kafka error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerError {
    /// An older producer epoch (INVALID_PRODUCER_EPOCH).
    FencedEpoch { current: i16, received: i16 },
    /// An older coordinator epoch: a zombie coordinator (TRANSACTION_COORDINATOR_FENCED).
    CoordinatorFenced { current: i32, received: i32 },
}

/// A transaction a marker ended (only one that had records on this partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub kind: MarkerKind,
    /// The last stable offset once it ended: the first offset of the earliest other ongoing
    /// transaction, else the offset after the marker (Kafka's `AbortedTxn.lastStableOffset`,
    /// which lets a reader of the aborted index stop early).
    pub last_stable_offset: i64,
}

/// The verdict on one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Accept,
    /// Already in the log: answer with these offsets, append nothing.
    Duplicate(BatchMetadata),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
    /// (offset of its last remembered batch, producer id) per producer: the least recently
    /// appending producer first, for the cap ([`PRODUCERS_MAX`]). Derived from `producers`
    /// (log order, so a replay or a parsed snapshot orders them as the appends did).
    by_recency: BTreeSet<(i64, i64)>,
    /// (first offset, producer id) of every ongoing transaction: the earliest bounds the
    /// last stable offset. Derived from `producers`.
    ongoing: BTreeSet<(i64, i64)>,
    /// (first offset, marker offset) of ended transactions whose marker may still be at or
    /// above the high watermark (Kafka's `unreplicatedTxns`): until the marker is committed
    /// the transaction still holds the last stable offset back, or a leader change could
    /// lose a marker a read_committed reader already acted on. In memory only (after a
    /// restart the markers past the producer snapshot are replayed into it).
    unreplicated: BTreeSet<(i64, i64)>,
}

/// Where `entry` stands in [`ProducerStates::by_recency`].
fn recency(producer_id: i64, entry: &ProducerEntry) -> (i64, i64) {
    let last_offset = entry.batches.last().map_or(-1, |batch| batch.last_offset);
    (last_offset.max(entry.last_marker_offset), producer_id)
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }
    pub fn entries(&self) -> impl Iterator<Item = (&i64, &ProducerEntry)> {
        self.producers.iter()
    }

    /// The first offset of the earliest ongoing transaction.
    pub fn first_ongoing_offset(&self) -> Option<i64> {
        self.ongoing.first().map(|&(first_offset, _)| first_offset)
    }

    /// The first offset not yet stable under `high_watermark`: of the earliest ongoing
    /// transaction, or of an ended one whose marker the high watermark has not passed.
    pub fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        let unreplicated = self
            .unreplicated
            .iter()
            .find(|&&(_, marker_offset)| marker_offset >= high_watermark)
            .map(|&(first_offset, _)| first_offset);
        match (self.first_ongoing_offset(), unreplicated) {
            (Some(ongoing), Some(ended)) => Some(ongoing.min(ended)),
            (ongoing, ended) => ongoing.or(ended),
        }
    }

    /// The high watermark moved: ended transactions whose marker is below it are stable.
    pub fn on_high_watermark(&mut self, high_watermark: i64) {
        self.unreplicated
            .retain(|&(_, marker_offset)| marker_offset >= high_watermark);
    }

    /// Ongoing transactions as (first offset, producer id), earliest first.
    pub fn ongoing_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().copied()
    }

    /// The guard of `producer_id` as its state stands now.
    pub fn verification_guard(&self, producer_id: i64) -> VerificationGuard {
        VerificationGuard {
            producer_id,
            last_marker_offset: self
                .producers
                .get(&producer_id)
                .map_or(-1, |entry| entry.last_marker_offset),
        }
    }

    /// Whether `producer_id` has a transaction ongoing on this partition.
    pub fn has_ongoing_transaction(&self, producer_id: i64) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|entry| entry.current_txn_first_offset.is_some())
    }

    /// [`Self::check`] for a batch written by `origin`: a coordinator's own transactional
    /// batches (offset commits of a transaction, written without sequence numbers, Kafka's
    /// `AppendOrigin.COORDINATOR`) are checked for fencing only.
    pub fn check_from(
        &self,
        batch: &ProducerBatch,
        origin: AppendOrigin,
    ) -> Result<SequenceCheck, SequenceError> {
        if origin == AppendOrigin::Client {
            return self.check(batch);
        }
        if let Some(entry) = self.producers.get(&batch.producer_id) {
            if batch.producer_epoch < entry.epoch {
                return Err(SequenceError::FencedEpoch {
                    current: entry.epoch,
                    received: batch.producer_epoch,
                });
            }
            if batch.producer_epoch == entry.epoch {
                Self::check_transaction(batch, entry)?;
            }
        }
        Ok(SequenceCheck::Accept)
    }

    /// Checks `batch` against the producer's state without changing it.
    pub fn check(&self, batch: &ProducerBatch) -> Result<SequenceCheck, SequenceError> {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            return if batch.base_sequence == 0 {
                Ok(SequenceCheck::Accept)
            } else {
                Err(SequenceError::UnknownProducer {
                    producer_id: batch.producer_id,
                })
            };
        };
        if batch.producer_epoch < entry.epoch {
            return Err(SequenceError::FencedEpoch {
                current: entry.epoch,
                received: batch.producer_epoch,
            });
        }
        if batch.producer_epoch > entry.epoch {
            // A bumped epoch restarts the sequence.
            return if batch.base_sequence == 0 {
                Self::check_transaction(batch, entry)?;
                Ok(SequenceCheck::Accept)
            } else {
                Err(SequenceError::OutOfOrder {
                    expected: 0,
                    received: batch.base_sequence,
                })
            };
        }
        if let Some(duplicate) = entry.batches.iter().find(|cached| {
            cached.base_sequence == batch.base_sequence
                && cached.last_sequence == batch.last_sequence()
        }) {
            return Ok(SequenceCheck::Duplicate(*duplicate));
        }
        let expected = entry
            .batches
            .last()
            .map_or(0, |last| next_sequence(last.last_sequence));
        if batch.base_sequence != expected {
            return Err(SequenceError::OutOfOrder {
                expected,
                received: batch.base_sequence,
            });
        }
        Self::check_transaction(batch, entry)?;
        Ok(SequenceCheck::Accept)
    }

    /// A producer inside a transaction writes only transactional batches until its marker.
    fn check_transaction(
        batch: &ProducerBatch,
        entry: &ProducerEntry,
    ) -> Result<(), SequenceError> {
        if entry.current_txn_first_offset.is_some() && !batch.is_transactional {
            return Err(SequenceError::TransactionOngoing {
                producer_id: batch.producer_id,
            });
        }
        Ok(())
    }

    /// Checks a marker against the producer's state without changing it (Kafka's
    /// `appendEndTxnMarker` checks: producer epoch, then coordinator epoch).
    pub fn check_marker(
        &self,
        marker: &TxnMarker,
        rule: MarkerEpochRule,
    ) -> Result<(), MarkerError> {
        let Some(entry) = self.producers.get(&marker.producer_id) else {
            return Ok(());
        };
        let fenced = match rule {
            MarkerEpochRule::SameOrNewer => marker.producer_epoch < entry.epoch,
            MarkerEpochRule::Bumped => {
                marker.producer_epoch < entry.epoch
                    || (marker.producer_epoch == entry.epoch
                        && entry.current_txn_first_offset.is_some())
            }
        };
        if fenced {
            return Err(MarkerError::FencedEpoch {
                current: entry.epoch,
                received: marker.producer_epoch,
            });
        }
        if entry.coordinator_epoch > marker.coordinator_epoch {
            return Err(MarkerError::CoordinatorFenced {
                current: entry.coordinator_epoch,
                received: marker.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a marker written (or replayed) at `offset`: the producer's transaction ends,
    /// its epoch becomes the marker's (a bumped epoch restarts its sequences). Returns the
    /// transaction it ended, when it had records here.
    pub fn record_marker(
        &mut self,
        marker: &TxnMarker,
        offset: i64,
        now_ms: i64,
    ) -> Option<CompletedTxn> {
        let entry = self.producers.entry(marker.producer_id).or_default();
        self.by_recency.remove(&recency(marker.producer_id, entry));
        let ended = entry.current_txn_first_offset.take();
        if let Some(first_offset) = ended {
            self.ongoing.remove(&(first_offset, marker.producer_id));
            self.unreplicated.insert((first_offset, offset));
            entry.ended_transactions.push((first_offset, offset));
            if entry.ended_transactions.len() > BATCHES_REMEMBERED {
                entry.ended_transactions.remove(0);
            }
        }
        if marker.producer_epoch != entry.epoch {
            entry.epoch = marker.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = entry.coordinator_epoch.max(marker.coordinator_epoch);
        entry.last_marker_offset = offset;
        entry.last_timestamp_ms = marker.timestamp_ms;
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
        self.by_recency.insert(recency(marker.producer_id, entry));
        self.evict_over_cap();
        let first_offset = ended?;
        Some(CompletedTxn {
            producer_id: marker.producer_id,
            first_offset,
            last_offset: offset,
            kind: marker.kind,
            last_stable_offset: self.first_ongoing_offset().unwrap_or(offset + 1),
        })
    }

    /// Records an appended (or replayed) batch at its offsets. A new producer past
    /// [`PRODUCERS_MAX`] takes the place of the one whose last append is oldest.
    pub fn record(&mut self, batch: &ProducerBatch, base_offset: i64, now_ms: i64) {
        let entry = self.producers.entry(batch.producer_id).or_default();
        self.by_recency.remove(&recency(batch.producer_id, entry));
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push(BatchMetadata {
            base_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            base_offset,
            last_offset: base_offset + i64::from(batch.last_offset_delta),
            timestamp_ms: batch.max_timestamp_ms,
        });
        if entry.batches.len() > BATCHES_REMEMBERED {
            entry.batches.remove(0);
        }
        if batch.is_transactional && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(base_offset);
            self.ongoing.insert((base_offset, batch.producer_id));
        }
        entry.last_timestamp_ms = batch.max_timestamp_ms;
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
        self.by_recency.insert(recency(batch.producer_id, entry));
        self.evict_over_cap();
    }

    /// Past [`PRODUCERS_MAX`], forgets the producers whose last append is oldest, never one
    /// with an ongoing transaction (forgetting it would make its records stable before its
    /// marker): those are bounded by the coordinator's transaction timeout instead.
    fn evict_over_cap(&mut self) {
        if self.producers.len() <= PRODUCERS_MAX {
            return;
        }
        let excess = self.producers.len() - PRODUCERS_MAX;
        let evicted: Vec<(i64, i64)> = self
            .by_recency
            .iter()
            .filter(|(_, producer_id)| !self.has_ongoing_transaction(*producer_id))
            .take(excess)
            .copied()
            .collect();
        for key in evicted {
            self.by_recency.remove(&key);
            self.producers.remove(&key.1);
        }
    }

    /// Rebuilds the derived sets after producers were changed in bulk.
    fn reindex(&mut self) {
        self.by_recency = self
            .producers
            .iter()
            .map(|(&producer_id, entry)| recency(producer_id, entry))
            .collect();
        self.ongoing = self
            .producers
            .iter()
            .filter_map(|(&producer_id, entry)| {
                entry
                    .current_txn_first_offset
                    .map(|first_offset| (first_offset, producer_id))
            })
            .collect();
    }

    /// Forgets producers idle for longer than `expiration_ms` (`producer.id.expiration.ms`),
    /// so the table stays bounded. Returns how many were removed.
    /// A producer with an ongoing transaction is kept (as Kafka's `isProducerExpired`).
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, entry| {
            entry.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(entry.last_append_ms) <= expiration_ms
        });
        let removed = before - self.producers.len();
        if removed > 0 {
            self.reindex();
        }
        removed
    }

    /// Drops batches and markers at or after `offset` (the log was truncated there): a
    /// transaction that started there is gone, one whose marker was cut is ongoing again.
    /// Producers left with nothing are forgotten.
    pub fn truncate_from(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|batch| batch.last_offset < offset);
            if entry
                .current_txn_first_offset
                .is_some_and(|first_offset| first_offset >= offset)
            {
                entry.current_txn_first_offset = None;
            }
            while let Some(&(first_offset, marker_offset)) = entry.ended_transactions.last() {
                if marker_offset < offset {
                    break;
                }
                entry.ended_transactions.pop();
                if first_offset < offset {
                    entry.current_txn_first_offset = Some(first_offset);
                }
            }
            if entry.last_marker_offset >= offset {
                entry.last_marker_offset = entry
                    .ended_transactions
                    .last()
                    .map_or(-1, |&(_, marker_offset)| marker_offset);
            }
        }
        self.producers.retain(|_, entry| {
            !entry.batches.is_empty()
                || entry.current_txn_first_offset.is_some()
                || entry.last_marker_offset >= 0
        });
        self.unreplicated
            .retain(|&(_, marker_offset)| marker_offset < offset);
        self.reindex();
    }

    pub fn clear(&mut self) {
        self.producers.clear();
        self.by_recency.clear();
        self.ongoing.clear();
        self.unreplicated.clear();
    }

    /// A line-based rendering for the snapshot file.
    pub(crate) fn render(&self, out: &mut String) {
        for (producer_id, entry) in &self.producers {
            out.push_str(&format!(
                "producer {producer_id} {} {}\n",
                entry.epoch, entry.last_append_ms
            ));
            out.push_str(&format!(
                "txn {producer_id} {} {} {} {}\n",
                entry.coordinator_epoch,
                entry.current_txn_first_offset.unwrap_or(-1),
                entry.last_marker_offset,
                entry.last_timestamp_ms
            ));
            for (first_offset, marker_offset) in &entry.ended_transactions {
                out.push_str(&format!(
                    "ended {producer_id} {first_offset} {marker_offset}\n"
                ));
            }
            for batch in &entry.batches {
                out.push_str(&format!(
                    "batch {producer_id} {} {} {} {} {}\n",
                    batch.base_sequence,
                    batch.last_sequence,
                    batch.base_offset,
                    batch.last_offset,
                    batch.timestamp_ms
                ));
            }
        }
    }

    /// Parses one line of [`ProducerStates::render`]; `false` when it is not one.
    pub(crate) fn parse_line(&mut self, line: &str) -> Result<bool, String> {
        let fields: Vec<&str> = line.split(' ').collect();
        let number = |index: usize| -> Result<i64, String> {
            fields
                .get(index)
                .and_then(|field| field.parse().ok())
                .ok_or_else(|| format!("bad line {line:?}"))
        };
        let narrow = |value: i64| i32::try_from(value).map_err(|_| format!("bad line {line:?}"));
        match fields.first() {
            Some(&"producer") => {
                let producer_id = number(1)?;
                let epoch = i16::try_from(number(2)?).map_err(|_| format!("bad epoch {line:?}"))?;
                let last_append_ms = number(3)?;
                let entry = self.producers.entry(producer_id).or_default();
                self.by_recency.remove(&recency(producer_id, entry));
                entry.epoch = epoch;
                entry.last_append_ms = last_append_ms;
                self.by_recency.insert(recency(producer_id, entry));
                Ok(true)
            }
            Some(&"batch") => {
                let producer_id = number(1)?;
                let batch = BatchMetadata {
                    base_sequence: narrow(number(2)?)?,
                    last_sequence: narrow(number(3)?)?,
                    base_offset: number(4)?,
                    last_offset: number(5)?,
                    timestamp_ms: number(6)?,
                };
                let entry = self
                    .producers
                    .get_mut(&producer_id)
                    .ok_or_else(|| format!("batch before its producer {line:?}"))?;
                self.by_recency.remove(&recency(producer_id, entry));
                entry.batches.push(batch);
                self.by_recency.insert(recency(producer_id, entry));
                Ok(true)
            }
            Some(&"txn") => {
                let producer_id = number(1)?;
                let coordinator_epoch = narrow(number(2)?)?;
                let first_offset = number(3)?;
                let last_marker_offset = number(4)?;
                let last_timestamp_ms = number(5)?;
                let entry = self
                    .producers
                    .get_mut(&producer_id)
                    .ok_or_else(|| format!("txn before its producer {line:?}"))?;
                self.by_recency.remove(&recency(producer_id, entry));
                entry.coordinator_epoch = coordinator_epoch;
                entry.current_txn_first_offset = (first_offset >= 0).then_some(first_offset);
                entry.last_marker_offset = last_marker_offset;
                entry.last_timestamp_ms = last_timestamp_ms;
                self.by_recency.insert(recency(producer_id, entry));
                if first_offset >= 0 {
                    self.ongoing.insert((first_offset, producer_id));
                }
                Ok(true)
            }
            Some(&"ended") => {
                let producer_id = number(1)?;
                let ended = (number(2)?, number(3)?);
                let entry = self
                    .producers
                    .get_mut(&producer_id)
                    .ok_or_else(|| format!("ended before its producer {line:?}"))?;
                entry.ended_transactions.push(ended);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        records: i32,
    ) -> ProducerBatch {
        ProducerBatch {
            producer_id,
            producer_epoch,
            base_sequence,
            last_offset_delta: records - 1,
            max_timestamp_ms: 0,
            is_transactional: false,
        }
    }

    #[test]
    fn sequences_must_follow_on_and_retries_are_duplicates() {
        let mut states = ProducerStates::default();
        let first = batch(7, 0, 0, 3);
        assert_eq!(states.check(&first), Ok(SequenceCheck::Accept));
        states.record(&first, 100, 1);
        let retry = states.check(&first).unwrap();
        assert!(matches!(
            retry,
            SequenceCheck::Duplicate(BatchMetadata {
                base_offset: 100,
                last_offset: 102,
                ..
            })
        ));
        assert_eq!(
            states.check(&batch(7, 0, 4, 1)),
            Err(SequenceError::OutOfOrder {
                expected: 3,
                received: 4
            })
        );
        assert_eq!(states.check(&batch(7, 0, 3, 1)), Ok(SequenceCheck::Accept));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for index in 0..7 {
            states.record(&batch(1, 0, index, 1), i64::from(index), 0);
        }
        assert_eq!(states.get(1).unwrap().batches.len(), BATCHES_REMEMBERED);
        assert!(matches!(
            states.check(&batch(1, 0, 6, 1)),
            Ok(SequenceCheck::Duplicate(_))
        ));
        assert!(matches!(
            states.check(&batch(1, 0, 1, 1)),
            Err(SequenceError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn epochs_fence_zombies_and_restart_sequences() {
        let mut states = ProducerStates::default();
        states.record(&batch(1, 2, 0, 1), 0, 0);
        assert_eq!(
            states.check(&batch(1, 1, 1, 1)),
            Err(SequenceError::FencedEpoch {
                current: 2,
                received: 1
            })
        );
        assert_eq!(states.check(&batch(1, 3, 0, 1)), Ok(SequenceCheck::Accept));
        assert!(matches!(
            states.check(&batch(1, 3, 5, 1)),
            Err(SequenceError::OutOfOrder { .. })
        ));
        assert_eq!(
            states.check(&batch(9, 0, 5, 1)),
            Err(SequenceError::UnknownProducer { producer_id: 9 })
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut states = ProducerStates::default();
        let near_end = ProducerBatch {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: i32::MAX - 1,
            last_offset_delta: 1,
            max_timestamp_ms: 0,
            is_transactional: false,
        };
        assert_eq!(near_end.last_sequence(), i32::MAX);
        states.producers.insert(1, ProducerEntry::default());
        states.record(&near_end, 0, 0);
        assert_eq!(states.check(&batch(1, 0, 0, 1)), Ok(SequenceCheck::Accept));
    }

    #[test]
    fn expiry_and_truncation_forget_producers() {
        let mut states = ProducerStates::default();
        states.record(&batch(1, 0, 0, 1), 10, 1_000);
        states.record(&batch(2, 0, 0, 1), 20, 5_000);
        assert_eq!(states.expire(6_000, 2_000), 1);
        assert!(states.get(1).is_none());
        states.truncate_from(20);
        assert!(states.is_empty());
    }

    #[test]
    fn the_producer_that_appended_least_recently_is_forgotten_at_the_cap() {
        let mut states = ProducerStates::default();
        let cap = i64::try_from(PRODUCERS_MAX).unwrap();
        for producer_id in 0..cap {
            states.record(&batch(producer_id, 0, 0, 1), producer_id, 0);
        }
        assert_eq!(states.len(), PRODUCERS_MAX);
        // Producer 0 appends again, so producer 1 is now the one idle longest.
        states.record(&batch(0, 0, 1, 1), cap, 0);
        states.record(&batch(cap, 0, 0, 1), cap + 1, 0);
        assert_eq!(
            states.len(),
            PRODUCERS_MAX,
            "a new producer takes the oldest's place"
        );
        assert!(states.get(1).is_none());
        assert!(states.get(0).is_some() && states.get(cap).is_some());
        assert_eq!(
            states.check(&batch(1, 0, 1, 1)),
            Err(SequenceError::UnknownProducer { producer_id: 1 }),
            "the forgotten producer's next batch"
        );
        // The order survives the snapshot: producer 2 goes next.
        let mut text = String::new();
        states.render(&mut text);
        let mut parsed = ProducerStates::default();
        for line in text.lines() {
            assert!(parsed.parse_line(line).unwrap());
        }
        assert_eq!(parsed, states);
        parsed.record(&batch(cap + 1, 0, 0, 1), cap + 2, 0);
        assert!(parsed.get(2).is_none() && parsed.get(3).is_some());
        assert_eq!(parsed.len(), PRODUCERS_MAX);
    }

    #[test]
    fn render_and_parse_round_trip() {
        let mut states = ProducerStates::default();
        states.record(&batch(1, 3, 0, 2), 10, 7);
        states.record(&batch(1, 3, 2, 1), 12, 8);
        let mut text = String::new();
        states.render(&mut text);
        let mut parsed = ProducerStates::default();
        for line in text.lines() {
            assert!(parsed.parse_line(line).unwrap());
        }
        assert_eq!(parsed, states);
    }

    #[test]
    fn a_coordinator_s_own_batches_are_checked_for_fencing_not_sequences() {
        let mut states = ProducerStates::default();
        let mut offsets = batch(7, 2, -1, 1);
        offsets.is_transactional = true;
        // No sequence: a client's batch so is refused, the coordinator's accepted.
        assert!(states.check(&offsets).is_err());
        assert_eq!(
            states.check_from(&offsets, AppendOrigin::Coordinator),
            Ok(SequenceCheck::Accept)
        );
        states.record(&offsets, 0, 0);
        assert_eq!(
            states.check_from(&offsets, AppendOrigin::Coordinator),
            Ok(SequenceCheck::Accept),
            "another commit of the same transaction"
        );
        let mut zombie = batch(7, 1, -1, 1);
        zombie.is_transactional = true;
        assert_eq!(
            states.check_from(&zombie, AppendOrigin::Coordinator),
            Err(SequenceError::FencedEpoch {
                current: 2,
                received: 1
            })
        );
    }
}
