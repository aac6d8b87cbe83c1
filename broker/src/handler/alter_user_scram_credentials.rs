//! AlterUserScramCredentials: SCRAM credentials set and removed in the coordinator (what
//! `kafka-configs.sh --entity-type users --alter --add-config 'SCRAM-SHA-256=[...]'` sends:
//! the client salts and hashes the password, the broker keeps StoredKey and ServerKey).
//! Checked as Kafka checks them: a known mechanism, 4096..=16384 iterations, a non-empty user,
//! salt and salted password, each user and mechanism once per request; deleting what does
//! not exist is RESOURCE_NOT_FOUND. One result per user, in request order.

use std::collections::{BTreeMap, BTreeSet};

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use lmq_wire::protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};

use super::str_bytes;
use crate::cluster::ClusterNode;
use crate::cluster::credentials::{self, CredentialError};
use crate::security::scram::{ITERATIONS_MAX, ITERATIONS_MIN, ScramCredential, ScramMechanism};

type Refusal = (ResponseError, String);

/// One change: a user's credential for a mechanism set or removed.
struct Change {
    user: String,
    mechanism: i8,
    set: Option<(i32, Vec<u8>, Vec<u8>)>,
}

pub async fn handle(
    cluster: &ClusterNode,
    context: &super::RequestContext,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // As Kafka: ALTER on the cluster, else every user refused.
    if let Err(code) = context.check_cluster(crate::security::acl::AclOperation::Alter) {
        // Each user once, in first-seen order (a set, not a search per user).
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let deleted = request
            .deletions
            .iter()
            .map(|deletion| deletion.name.as_str());
        let upserted = request
            .upsertions
            .iter()
            .map(|upsertion| upsertion.name.as_str());
        let users: Vec<&str> = deleted
            .chain(upserted)
            .filter(|user| seen.insert(user))
            .collect();
        let mut response = AlterUserScramCredentialsResponse::default();
        response.results = users
            .into_iter()
            .map(|user| {
                let mut result = AlterUserScramCredentialsResult::default();
                result.user = str_bytes(user);
                result.error_code = code;
                result.error_message = Some(str_bytes("Cluster authorization failed."));
                result
            })
            .collect();
        return response;
    }
    let mut changes: Vec<Change> = request
        .deletions
        .iter()
        .map(|deletion| Change {
            user: deletion.name.to_string(),
            mechanism: deletion.mechanism,
            set: None,
        })
        .collect();
    changes.extend(request.upsertions.iter().map(|upsertion| Change {
        user: upsertion.name.to_string(),
        mechanism: upsertion.mechanism,
        set: Some((
            upsertion.iterations,
            upsertion.salt.to_vec(),
            upsertion.salted_password.to_vec(),
        )),
    }));
    // Users in first-seen order, each with its first refusal (if any).
    let mut order: Vec<String> = Vec::new();
    let mut outcome: BTreeMap<String, Result<(), Refusal>> = BTreeMap::new();
    let mut seen: BTreeSet<(String, i8)> = BTreeSet::new();
    let mut duplicated: BTreeSet<String> = BTreeSet::new();
    for change in &changes {
        if !outcome.contains_key(&change.user) {
            order.push(change.user.clone());
            outcome.insert(change.user.clone(), Ok(()));
        }
        if !seen.insert((change.user.clone(), change.mechanism)) {
            duplicated.insert(change.user.clone());
        }
    }
    for user in &duplicated {
        outcome.insert(
            user.clone(),
            Err((
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".to_string(),
            )),
        );
    }
    for change in &changes {
        if outcome.get(&change.user).is_some_and(Result::is_err) {
            continue;
        }
        let result = apply(cluster, change).await;
        if let Err(refusal) = result {
            outcome.insert(change.user.clone(), Err(refusal));
        }
    }
    let mut response = AlterUserScramCredentialsResponse::default();
    response.results = order
        .into_iter()
        .map(|user| {
            let mut result = AlterUserScramCredentialsResult::default();
            if let Some(Err((error, message))) = outcome.remove(&user) {
                result.error_code = error.code();
                result.error_message = Some(str_bytes(message));
            }
            result.user = str_bytes(user);
            result
        })
        .collect();
    response
}

/// Checks one change and writes it.
async fn apply(cluster: &ClusterNode, change: &Change) -> Result<(), Refusal> {
    let unacceptable = |message: &str| (ResponseError::UnacceptableCredential, message.to_string());
    if change.user.is_empty() {
        return Err(unacceptable("Username must not be empty"));
    }
    let mechanism = ScramMechanism::from_code(change.mechanism).ok_or_else(|| {
        (
            ResponseError::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism".to_string(),
        )
    })?;
    let credential = match &change.set {
        None => None,
        Some((iterations, salt, salted_password)) => {
            if *iterations < ITERATIONS_MIN {
                return Err(unacceptable("Too few iterations"));
            }
            if *iterations > ITERATIONS_MAX {
                return Err(unacceptable("Too many iterations"));
            }
            if salt.is_empty() {
                return Err(unacceptable("Credential salt must not be empty"));
            }
            if salted_password.is_empty() {
                return Err(unacceptable("Credential saltedPassword must not be empty"));
            }
            Some(ScramCredential::from_salted(
                mechanism,
                salt.clone(),
                *iterations,
                salted_password,
            ))
        }
    };
    credentials::change(&*cluster.coordinator, &change.user, mechanism, credential)
        .await
        .map_err(|error| match error {
            CredentialError::NotFound { .. } => (
                ResponseError::ResourceNotFound,
                "Attempt to delete a user credential that does not exist".to_string(),
            ),
            other => (ResponseError::UnknownServerError, other.to_string()),
        })
}

impl super::ErrorCodes for AlterUserScramCredentialsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.results.iter().map(|item| item.error_code));
    }
}
