//! Producer ids: handed out from blocks each broker reserves in the coordinator (so they are
//! unique cluster-wide), and the end of what the cluster handed out, which produce checks
//! idempotent batches against: an id at or past it was made up by the client.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use lmq_coord::Coordinator;

use super::store::{self, StoreError};

/// Producer ids a broker reserves at once.
const BLOCK: i64 = 1_000;

#[derive(Debug, Default)]
pub struct ProducerIds {
    /// This broker's current block: next, end.
    block: tokio::sync::Mutex<(i64, i64)>,
    /// The coordinator's counter as this broker last saw it (its own reservations and its
    /// reads): every id below it was handed out by some broker.
    end: AtomicI64,
    /// Reads of the counter started so far.
    reads_started: AtomicU64,
    /// One read at a time; holds the number (of `reads_started`) of the last successful one.
    last_read: tokio::sync::Mutex<u64>,
}

impl ProducerIds {
    /// A producer id unique in the cluster.
    pub async fn allocate(&self, coordinator: &dyn Coordinator) -> Result<i64, StoreError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let first = store::reserve_producer_ids(coordinator, BLOCK).await?;
            *block = (first, first.saturating_add(BLOCK));
            self.end.fetch_max(block.1, Ordering::AcqRel);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// This broker's copy of the counter.
    pub fn end_known(&self) -> i64 {
        self.end.load(Ordering::Acquire)
    }

    /// The end of the producer ids the cluster handed out, fresh enough to judge `id`: when
    /// `id` is not below this broker's copy, which lags other brokers' reservations, the
    /// counter is read again first. Calls that wait meanwhile share the next read, so a flood
    /// of made-up ids costs one coordinator read at a time.
    pub async fn end_covering(
        &self,
        coordinator: &dyn Coordinator,
        id: i64,
    ) -> Result<i64, StoreError> {
        let end = self.end.load(Ordering::Acquire);
        if id < end {
            return Ok(end);
        }
        let arrived = self.reads_started.load(Ordering::Acquire);
        let mut last_read = self.last_read.lock().await;
        // A read that started after this call arrived saw every id handed out before it.
        if *last_read > arrived {
            return Ok(self.end.load(Ordering::Acquire));
        }
        let read = self.reads_started.fetch_add(1, Ordering::AcqRel) + 1;
        let counter = store::producer_ids_end(coordinator).await?;
        *last_read = read;
        Ok(self.end.fetch_max(counter, Ordering::AcqRel).max(counter))
    }
}
