//! DescribeUserScramCredentials: the mechanisms and iterations of users' SCRAM credentials
//! (never salts or keys). No user list: every user; a user asked twice is
//! DUPLICATE_RESOURCE, an unknown one RESOURCE_NOT_FOUND, as Kafka answers.

use std::collections::BTreeSet;

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use lmq_wire::protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::str_bytes;
use crate::cluster::ClusterNode;
use crate::cluster::credentials::{self, UserCredentials};
use crate::security::scram::ScramMechanism;

pub async fn handle(
    cluster: &ClusterNode,
    context: &super::RequestContext,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let mut response = DescribeUserScramCredentialsResponse::default();
    // As Kafka: DESCRIBE on the cluster.
    if let Err(code) = context.check_cluster(crate::security::acl::AclOperation::Describe) {
        response.error_code = code;
        response.error_message = Some(str_bytes("Cluster authorization failed."));
        return response;
    }
    let coordinator = &*cluster.coordinator;
    let Some(users) = request.users else {
        match credentials::all(coordinator).await {
            Ok(all) => response.results = all.iter().map(described).collect(),
            Err(error) => {
                response.error_code = ResponseError::UnknownServerError.code();
                response.error_message = Some(str_bytes(error.to_string()));
            }
        }
        return response;
    };
    let names: Vec<String> = users.iter().map(|user| user.name.to_string()).collect();
    let mut seen = BTreeSet::new();
    let duplicated: BTreeSet<&String> = names.iter().filter(|name| !seen.insert(*name)).collect();
    let mut answered = BTreeSet::new();
    for name in &names {
        if !answered.insert(name) {
            continue;
        }
        let mut result = DescribeUserScramCredentialsResult::default();
        result.user = str_bytes(name.clone());
        if duplicated.contains(name) {
            result.error_code = ResponseError::DuplicateResource.code();
            result.error_message = Some(str_bytes(
                "Cannot describe SCRAM credentials for the same user twice in a single request",
            ));
            response.results.push(result);
            continue;
        }
        match credentials::of_user(coordinator, name).await {
            Ok(Some(found)) => result = described(&found),
            Ok(None) => {
                result.error_code = ResponseError::ResourceNotFound.code();
                result.error_message = Some(str_bytes(
                    "Attempt to describe a user credential that does not exist",
                ));
            }
            Err(error) => {
                result.error_code = ResponseError::UnknownServerError.code();
                result.error_message = Some(str_bytes(error.to_string()));
            }
        }
        response.results.push(result);
    }
    response
}

fn described(user: &UserCredentials) -> DescribeUserScramCredentialsResult {
    let mut result = DescribeUserScramCredentialsResult::default();
    result.user = str_bytes(user.user.clone());
    result.credential_infos = user
        .credentials
        .iter()
        .filter_map(|(mechanism, credential)| {
            let mut info = CredentialInfo::default();
            info.mechanism = ScramMechanism::from_name(mechanism)?.code();
            info.iterations = credential.iterations;
            Some(info)
        })
        .collect();
    result
}

impl super::ErrorCodes for DescribeUserScramCredentialsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
        codes.extend(self.results.iter().map(|item| item.error_code));
    }
}
