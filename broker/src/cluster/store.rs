//! The cluster metadata document in the coordinator: one key, JSON, changed only by
//! read-modify-compare-and-set so concurrent writers (the controller, leaders changing their
//! ISR, brokers creating topics) never lose each other's updates. The controller's writes
//! also carry its fencing token, so a deposed controller cannot write at all.

use lmq_coord::{CoordError, Coordinator, FencingToken, Version, WriteCondition};
use thiserror::Error;

use super::metadata::{ClusterMetadata, MetadataError};

/// The key of the metadata document, under the coordinator's own prefix.
pub const METADATA_KEY: &str = "cluster/metadata";

/// The next producer id no broker has reserved yet (decimal text).
pub const PRODUCER_IDS_KEY: &str = "cluster/next-producer-id";

/// Conflicting writers retry this often before the caller is told to try again later.
const CAS_ATTEMPTS: usize = 32;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Coordinator(#[from] CoordError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("the cluster metadata in the coordinator is not valid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Local(#[from] crate::topics::TopicError),
    #[error("the cluster metadata kept changing under {CAS_ATTEMPTS} attempts to update it")]
    Contended,
}

pub fn decode(bytes: &[u8]) -> Result<ClusterMetadata, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt(error.to_string()))
}

pub async fn read(
    coordinator: &dyn Coordinator,
) -> Result<(ClusterMetadata, Option<Version>), StoreError> {
    match coordinator.get(METADATA_KEY).await? {
        Some(entry) => Ok((decode(&entry.value)?, Some(entry.version))),
        None => Ok((ClusterMetadata::default(), None)),
    }
}

/// Applies `change` to the latest document and writes it if it changed anything (`change`
/// returns whether it did). Returns the document as written (or as read, when unchanged).
pub async fn update<F>(
    coordinator: &dyn Coordinator,
    fence: Option<&FencingToken>,
    mut change: F,
) -> Result<(ClusterMetadata, Option<Version>), StoreError>
where
    F: FnMut(&mut ClusterMetadata) -> Result<bool, MetadataError> + Send,
{
    for _ in 0..CAS_ATTEMPTS {
        let (mut metadata, version) = read(coordinator).await?;
        if !change(&mut metadata)? {
            return Ok((metadata, version));
        }
        let value = serde_json::to_vec(&metadata)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let condition = WriteCondition {
            expected: Some(version.into()),
            fence,
        };
        match coordinator.write(METADATA_KEY, &value, condition).await {
            Ok(written) => return Ok((metadata, Some(written))),
            Err(CoordError::CasConflict { .. }) => {
                tracing::debug!("cluster metadata changed meanwhile; retrying");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(StoreError::Contended)
}

/// Reserves `count` producer ids for this broker: the shared counter moves by compare-and-set,
/// so no two brokers ever hand out the same id (Kafka's controller does this with
/// AllocateProducerIds). Returns the first id of the block.
pub async fn reserve_producer_ids(
    coordinator: &dyn Coordinator,
    count: i64,
) -> Result<i64, StoreError> {
    move_producer_ids(coordinator, |first| first.saturating_add(count)).await
}

/// Makes sure no id below `at_least` is handed out again (ids a node used before it had a
/// coordinator).
pub async fn raise_producer_ids(
    coordinator: &dyn Coordinator,
    at_least: i64,
) -> Result<(), StoreError> {
    move_producer_ids(coordinator, |current| current.max(at_least))
        .await
        .map(|_| ())
}

/// The shared counter of producer ids: every id below it was reserved by some broker.
pub async fn producer_ids_end(coordinator: &dyn Coordinator) -> Result<i64, StoreError> {
    let current = coordinator.get(PRODUCER_IDS_KEY).await?;
    current.map_or(Ok(0), |entry| producer_ids_counter(&entry.value))
}

fn producer_ids_counter(value: &[u8]) -> Result<i64, StoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{PRODUCER_IDS_KEY} is not a number")))
}

/// Moves the shared counter of producer ids from its value to `next(value)`; returns the value
/// it moved from.
async fn move_producer_ids(
    coordinator: &dyn Coordinator,
    next: impl Fn(i64) -> i64 + Send,
) -> Result<i64, StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let current = coordinator.get(PRODUCER_IDS_KEY).await?;
        let value = match &current {
            Some(entry) => producer_ids_counter(&entry.value)?,
            None => 0,
        };
        let moved = next(value);
        if moved == value && current.is_some() {
            return Ok(value);
        }
        let expected = current.map(|entry| entry.version);
        match coordinator
            .compare_and_set(PRODUCER_IDS_KEY, expected, moved.to_string().as_bytes())
            .await
        {
            Ok(_) => return Ok(value),
            Err(CoordError::CasConflict { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Err(StoreError::Contended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn brokers_reserve_disjoint_producer_id_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = lmq_coord::EmbeddedStore::open(dir.path()).unwrap();
        let (one, two) = (store.client(), store.client());
        let mut firsts = Vec::new();
        for _ in 0..3 {
            firsts.push(reserve_producer_ids(&one, 1_000).await.unwrap());
            firsts.push(reserve_producer_ids(&two, 1_000).await.unwrap());
        }
        assert_eq!(firsts, vec![0, 1_000, 2_000, 3_000, 4_000, 5_000]);
        raise_producer_ids(&one, 4_500).await.unwrap();
        assert_eq!(reserve_producer_ids(&two, 1).await.unwrap(), 6_000);
        raise_producer_ids(&one, 9_000).await.unwrap();
        assert_eq!(reserve_producer_ids(&two, 1).await.unwrap(), 9_000);
    }
}
