//! The cluster metadata document in the coordinator: one key, JSON, changed only by
//! read-modify-compare-and-set so concurrent writers (the controller, leaders changing their
//! ISR, brokers creating topics) never lose each other's updates. The controller's writes
//! also carry its fencing token, so a deposed controller cannot write at all.

use lmq_coord::{CoordError, Coordinator, FencingToken, Version, WriteCondition};
use thiserror::Error;

use super::metadata::{ClusterMetadata, MetadataError};

/// The key of the metadata document, under the coordinator's own prefix.
pub const METADATA_KEY: &str = "cluster/metadata";

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
