//! SCRAM credentials in the coordinator, so every broker authenticates a user the same way
//! and a change applies everywhere at once: one key per user (`security/scram/<hex name>`)
//! holding its credential per mechanism (salt, iterations, StoredKey, ServerKey; never the
//! password). Changed by compare-and-set, so concurrent changes of one user do not lose
//! each other.

use std::collections::BTreeMap;

use lmq_coord::{CoordError, Coordinator};
use serde::{Deserialize, Serialize};

use crate::security::scram::{ScramCredential, ScramMechanism};

/// The coordinator prefix of the credential keys.
pub const PREFIX: &str = "security/scram/";

/// Compare-and-set attempts of one change before giving up.
const CAS_ATTEMPTS: usize = 16;

/// What the coordinator holds for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCredentials {
    pub user: String,
    /// By mechanism name (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub credentials: BTreeMap<String, ScramCredential>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Coordinator(#[from] CoordError),
    #[error("the credentials of {user} in the coordinator are not valid: {reason}")]
    Corrupt { user: String, reason: String },
    #[error("the credentials of {0} kept changing; try again")]
    Contended(String),
    #[error("{user} has no {mechanism} credential")]
    NotFound {
        user: String,
        mechanism: &'static str,
    },
}

/// A user name as a key segment: hex of its UTF-8 bytes (any name, no `/` or escapes).
fn key(user: &str) -> String {
    let hex: String = user.bytes().map(|byte| format!("{byte:02x}")).collect();
    format!("{PREFIX}{hex}")
}

fn decode(user: &str, bytes: &[u8]) -> Result<UserCredentials, CredentialError> {
    serde_json::from_slice(bytes).map_err(|error| CredentialError::Corrupt {
        user: user.to_string(),
        reason: error.to_string(),
    })
}

/// The credential `user` has for `mechanism`, if any.
pub async fn credential(
    coordinator: &dyn Coordinator,
    user: &str,
    mechanism: ScramMechanism,
) -> Result<Option<ScramCredential>, CredentialError> {
    let Some(entry) = coordinator.get(&key(user)).await? else {
        return Ok(None);
    };
    Ok(decode(user, &entry.value)?
        .credentials
        .remove(mechanism.name()))
}

/// Every user with a credential, by name.
pub async fn all(coordinator: &dyn Coordinator) -> Result<Vec<UserCredentials>, CredentialError> {
    let mut users = Vec::new();
    for entry in coordinator.list(PREFIX).await? {
        let user = entry.key.trim_start_matches(PREFIX).to_string();
        let credentials = decode(&user, &entry.value)?;
        if !credentials.credentials.is_empty() {
            users.push(credentials);
        }
    }
    users.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(users)
}

/// `user`'s credentials (`None`: none).
pub async fn of_user(
    coordinator: &dyn Coordinator,
    user: &str,
) -> Result<Option<UserCredentials>, CredentialError> {
    match coordinator.get(&key(user)).await? {
        Some(entry) => {
            Ok(Some(decode(user, &entry.value)?).filter(|found| !found.credentials.is_empty()))
        }
        None => Ok(None),
    }
}

/// Sets (`Some`) or removes (`None`) `user`'s credential for `mechanism`. Removing one that
/// does not exist is [`CredentialError::NotFound`] (Kafka's RESOURCE_NOT_FOUND).
pub async fn change(
    coordinator: &dyn Coordinator,
    user: &str,
    mechanism: ScramMechanism,
    credential: Option<ScramCredential>,
) -> Result<(), CredentialError> {
    let key = key(user);
    for _ in 0..CAS_ATTEMPTS {
        let current = coordinator.get(&key).await?;
        let mut credentials = match &current {
            Some(entry) => decode(user, &entry.value)?,
            None => UserCredentials {
                user: user.to_string(),
                credentials: BTreeMap::new(),
            },
        };
        match &credential {
            Some(credential) => {
                credentials
                    .credentials
                    .insert(mechanism.name().to_string(), credential.clone());
            }
            None => {
                if credentials.credentials.remove(mechanism.name()).is_none() {
                    return Err(CredentialError::NotFound {
                        user: user.to_string(),
                        mechanism: mechanism.name(),
                    });
                }
            }
        }
        let expected = current.as_ref().map(|entry| entry.version);
        // A user whose last credential went stays as an empty entry: a conditional write,
        // where a delete could not be.
        let value = serde_json::to_vec(&credentials).map_err(|error| CredentialError::Corrupt {
            user: user.to_string(),
            reason: error.to_string(),
        })?;
        let written = coordinator.compare_and_set(&key, expected, &value).await;
        match written {
            Ok(_) => return Ok(()),
            Err(CoordError::CasConflict { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(CredentialError::Contended(user.to_string()))
}
