//! The cluster's ACLs in the coordinator: one JSON document (`cluster/acls`), changed by
//! read-modify-compare-and-set like the metadata document, and watched by every broker, which
//! hands each version to its authorizer: a change applies everywhere without a restart.

use std::sync::Arc;

use lmq_coord::{CoordError, Coordinator, Version, WriteCondition};
use tokio::sync::watch;

use super::store::StoreError;
use crate::broker::Broker;
use crate::security::Authorizer;
use crate::security::acl::{AclBinding, AclDocument, AclFilter};

/// The key of the ACL document, under the coordinator's own prefix.
pub const ACLS_KEY: &str = "cluster/acls";

/// Conflicting writers retry this often before the caller is told to try again later.
const CAS_ATTEMPTS: usize = 32;

/// At most this many ACLs in the cluster: each write carries the whole document, and
/// Consul refuses KV values over 512 KiB (a binding takes about 200 bytes of JSON). A
/// CreateAcls past it is refused as a whole.
pub const ACLS_MAX: usize = 2_000;

/// Why CreateAcls wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the cluster would hold more than {ACLS_MAX} ACLs")]
    TooMany,
}

pub fn decode(bytes: &[u8]) -> Result<AclDocument, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt(format!("ACLs: {error}")))
}

/// The ACLs as they are in the coordinator.
pub async fn read(
    coordinator: &dyn Coordinator,
) -> Result<(AclDocument, Option<Version>), StoreError> {
    match coordinator.get(ACLS_KEY).await? {
        Some(entry) => Ok((decode(&entry.value)?, Some(entry.version))),
        None => Ok((AclDocument::default(), None)),
    }
}

/// Applies `change` to the latest document and writes it when it changed something;
/// returns the document as written (or read) and its version.
async fn update(
    coordinator: &dyn Coordinator,
    mut change: impl FnMut(&mut AclDocument) -> bool + Send,
) -> Result<(AclDocument, u64), StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let (mut document, version) = read(coordinator).await?;
        if !change(&mut document) {
            return Ok((document, version.map_or(0, |version| version.0)));
        }
        let value = serde_json::to_vec(&document)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let condition = WriteCondition {
            expected: Some(version.into()),
            fence: None,
        };
        match coordinator.write(ACLS_KEY, &value, condition).await {
            Ok(written) => return Ok((document, written.0)),
            Err(CoordError::CasConflict { .. }) => {
                tracing::debug!("ACLs changed meanwhile; retrying");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(StoreError::Contended)
}

/// Adds the bindings not there yet (an existing one is a success, as in Kafka), in one
/// write. Refuses the whole request past [`ACLS_MAX`].
pub async fn create(
    coordinator: &dyn Coordinator,
    authorizer: &Authorizer,
    bindings: &[AclBinding],
) -> Result<(), CreateError> {
    let mut too_many = false;
    let (document, version) = update(coordinator, |document| {
        let before = document.acls.len();
        for binding in bindings {
            if !document.acls.contains(binding) {
                document.acls.push(binding.clone());
            }
        }
        too_many = document.acls.len() > ACLS_MAX;
        !too_many && document.acls.len() != before
    })
    .await?;
    if too_many {
        return Err(CreateError::TooMany);
    }
    authorizer.set_acls(version, document.acls);
    Ok(())
}

/// Removes every binding a filter matches, in one write; returns per filter the bindings it
/// removed (a binding two filters match counts for both, as Kafka answers).
pub async fn delete(
    coordinator: &dyn Coordinator,
    authorizer: &Authorizer,
    filters: &[AclFilter],
) -> Result<Vec<Vec<AclBinding>>, StoreError> {
    let mut removed: Vec<Vec<AclBinding>> = Vec::new();
    let (document, version) = update(coordinator, |document| {
        removed = filters
            .iter()
            .map(|filter| {
                document
                    .acls
                    .iter()
                    .filter(|binding| filter.matches(binding))
                    .cloned()
                    .collect()
            })
            .collect();
        let before = document.acls.len();
        document
            .acls
            .retain(|binding| !filters.iter().any(|filter| filter.matches(binding)));
        document.acls.len() != before
    })
    .await?;
    authorizer.set_acls(version, document.acls);
    Ok(removed)
}

/// Keeps the broker's authorizer on the coordinator's ACLs until shutdown.
pub(super) async fn watch(
    broker: Arc<Broker>,
    coordinator: Arc<dyn Coordinator>,
    shutdown: watch::Receiver<bool>,
) {
    let key_coordinator = Arc::clone(&coordinator);
    super::tasks::follow(
        shutdown,
        "acls",
        || key_coordinator.watch(ACLS_KEY),
        |entry| {
            let (document, version) = match entry {
                Some(entry) => match decode(&entry.value) {
                    Ok(document) => (document, entry.version.0),
                    Err(error) => {
                        tracing::error!(%error, "ignoring the cluster's ACLs");
                        return;
                    }
                },
                None => (AclDocument::default(), 0),
            };
            tracing::debug!(acls = document.acls.len(), "ACLs");
            broker.authorizer.set_acls(version, document.acls);
        },
    )
    .await;
}
