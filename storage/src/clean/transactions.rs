//! What the cleaner does with transactions (Kafka's `CleanedTransactionMetadata`): the
//! batches of aborted transactions are discarded (and never mapped as a key's latest
//! record), a marker may go once no batch of its transaction is left (and its delete horizon
//! passed), and the cleaned segments' aborted-transactions index keeps only the aborted
//! transactions whose marker stays with batches of theirs still in the log.
//!
//! One tracker walks the batches of a pass in offset order; the aborted transactions come
//! from the log's index (every one overlapping the cleaned range, by first offset).

use std::collections::{HashMap, HashSet, VecDeque};

use crate::batch::BatchView;
use crate::control::{ControlContent, MarkerKind, decode_control};
use crate::txn_index::AbortedTxn;

/// The tracker's verdict on one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnVerdict {
    /// Transactions ask nothing: the usual rules judge its records.
    Judge,
    /// A batch of an aborted transaction: every record goes.
    Aborted,
    /// A marker whose transaction has no batch left in the log: it may go once its delete
    /// horizon passed.
    MarkerOfEmptyTransaction,
    /// A marker whose transaction still has batches here: it stays.
    MarkerInUse,
}

#[derive(Debug)]
pub(crate) struct TxnTracker {
    /// Aborted transactions not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Producer → its aborted transaction being walked, and whether a batch of it was seen.
    ongoing_aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Producers whose committed (or undecided-in-range) transaction had a batch walked.
    ongoing_committed: HashSet<i64>,
    /// Aborted transactions whose marker stays with batches of theirs: the cleaned index.
    kept: Vec<AbortedTxn>,
}

impl TxnTracker {
    /// `aborted`: the log's aborted transactions overlapping the walked range.
    pub(crate) fn new(aborted: &[AbortedTxn]) -> Self {
        let mut pending: Vec<AbortedTxn> = aborted.to_vec();
        pending.sort_by_key(|txn| txn.first_offset);
        TxnTracker {
            pending: pending.into(),
            ongoing_aborted: HashMap::new(),
            ongoing_committed: HashSet::new(),
            kept: Vec::new(),
        }
    }

    fn reach(&mut self, last_offset: i64) {
        while self
            .pending
            .front()
            .is_some_and(|txn| txn.first_offset <= last_offset)
        {
            if let Some(txn) = self.pending.pop_front() {
                self.ongoing_aborted.insert(txn.producer_id, (txn, false));
            }
        }
    }

    /// Judges the next batch (in offset order).
    pub(crate) fn on_batch(&mut self, view: &BatchView<'_>) -> TxnVerdict {
        self.reach(view.last_offset());
        let producer_id = view.producer_id();
        if view.is_control() {
            let Ok(ControlContent::Marker(marker)) = decode_control(view) else {
                return TxnVerdict::Judge;
            };
            let in_use = match marker.kind {
                MarkerKind::Abort => match self.ongoing_aborted.remove(&producer_id) {
                    Some((txn, true)) => {
                        self.kept.push(txn);
                        true
                    }
                    _ => false,
                },
                MarkerKind::Commit => self.ongoing_committed.remove(&producer_id),
            };
            return if in_use {
                TxnVerdict::MarkerInUse
            } else {
                TxnVerdict::MarkerOfEmptyTransaction
            };
        }
        if !view.is_transactional() || producer_id < 0 {
            return TxnVerdict::Judge;
        }
        if let Some((_, seen)) = self.ongoing_aborted.get_mut(&producer_id) {
            *seen = true;
            return TxnVerdict::Aborted;
        }
        self.ongoing_committed.insert(producer_id);
        TxnVerdict::Judge
    }

    /// The aborted transactions the cleaned segment's index keeps (whose markers were
    /// walked since the last call), by marker offset.
    pub(crate) fn take_kept(&mut self) -> Vec<AbortedTxn> {
        std::mem::take(&mut self.kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::set_base_offset;
    use crate::builder::BatchBuilder;

    fn data(producer_id: i64, offset: i64) -> Vec<u8> {
        let mut builder = BatchBuilder::new(0)
            .producer(producer_id, 0, 0)
            .transactional();
        builder.push(Some(b"k"), Some(b"v"), 0);
        let mut bytes = builder.build();
        set_base_offset(&mut bytes, offset);
        bytes
    }

    fn marker(producer_id: i64, kind: MarkerKind, offset: i64) -> Vec<u8> {
        let mut bytes = BatchBuilder::marker(producer_id, 0, 0, kind, 0);
        set_base_offset(&mut bytes, offset);
        bytes
    }

    #[test]
    fn aborted_batches_go_and_markers_stay_while_their_batches_do() {
        let aborted = AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 2,
            last_stable_offset: 3,
        };
        let mut tracker = TxnTracker::new(&[aborted]);
        let verdict = |tracker: &mut TxnTracker, bytes: Vec<u8>| {
            tracker.on_batch(&BatchView::new(&bytes).unwrap())
        };
        assert_eq!(verdict(&mut tracker, data(1, 0)), TxnVerdict::Aborted);
        assert_eq!(verdict(&mut tracker, data(2, 1)), TxnVerdict::Judge);
        assert_eq!(
            verdict(&mut tracker, marker(1, MarkerKind::Abort, 2)),
            TxnVerdict::MarkerInUse
        );
        assert_eq!(
            verdict(&mut tracker, marker(2, MarkerKind::Commit, 3)),
            TxnVerdict::MarkerInUse
        );
        assert_eq!(
            verdict(&mut tracker, marker(2, MarkerKind::Commit, 4)),
            TxnVerdict::MarkerOfEmptyTransaction,
            "no batch of it left"
        );
        assert_eq!(tracker.take_kept(), [aborted]);
        // The next pass: the aborted batches are gone, so is the need for the marker.
        let mut tracker = TxnTracker::new(&[aborted]);
        assert_eq!(
            verdict(&mut tracker, marker(1, MarkerKind::Abort, 2)),
            TxnVerdict::MarkerOfEmptyTransaction
        );
        assert!(tracker.take_kept().is_empty());
    }
}
