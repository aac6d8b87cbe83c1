//! CreateAcls: new ACLs into the cluster's ACL document (ALTER on the cluster).

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::create_acls_response::AclCreationResult;
use lmq_wire::protocol::messages::{CreateAclsRequest, CreateAclsResponse};

use super::{RequestContext, store_error_code, str_bytes};
use crate::cluster::ClusterNode;
use crate::cluster::acls;
use crate::security::acl::{AclBinding, AclOperation, CLUSTER_NAME, ResourceType};

pub async fn handle(
    cluster: &ClusterNode,
    context: &RequestContext,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let refusal = if !context.authorizer.enabled() {
        Some((
            ResponseError::SecurityDisabled,
            "No Authorizer is configured.",
        ))
    } else if !context.authorize_cluster(AclOperation::Alter) {
        Some((
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        ))
    } else {
        None
    };
    let mut response = CreateAclsResponse::default();
    if let Some((error, message)) = refusal {
        response.results = request
            .creations
            .iter()
            .map(|_| result(error.code(), Some(message.to_string())))
            .collect();
        return response;
    }
    // Each creation valid or refused on its own (INVALID_REQUEST); the valid ones in one
    // write.
    let validated: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|creation| {
            let binding = AclBinding::from_wire(
                creation.resource_type,
                &creation.resource_name,
                creation.resource_pattern_type,
                &creation.principal,
                &creation.host,
                creation.operation,
                creation.permission_type,
            )
            .map_err(|error| error.to_string())?;
            if binding.pattern.resource_type == ResourceType::Cluster
                && binding.pattern.name != CLUSTER_NAME
            {
                return Err(format!(
                    "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
                ));
            }
            Ok(binding)
        })
        .collect();
    let valid: Vec<AclBinding> = validated
        .iter()
        .filter_map(|outcome| outcome.as_ref().ok().cloned())
        .collect();
    let written = if valid.is_empty() {
        Ok(())
    } else {
        acls::create(&*cluster.coordinator, &context.authorizer, &valid).await
    };
    response.results = validated
        .into_iter()
        .map(|outcome| match (&outcome, &written) {
            (Err(message), _) => {
                result(ResponseError::InvalidRequest.code(), Some(message.clone()))
            }
            (Ok(_), Err(error)) => {
                let code = match error {
                    acls::CreateError::Store(error) => store_error_code(error),
                    // LMQ's bound, as its other limits: POLICY_VIOLATION.
                    acls::CreateError::TooMany => ResponseError::PolicyViolation.code(),
                };
                result(code, Some(error.to_string()))
            }
            (Ok(_), Ok(())) => result(0, None),
        })
        .collect();
    response
}

fn result(error_code: i16, message: Option<String>) -> AclCreationResult {
    let mut result = AclCreationResult::default();
    result.error_code = error_code;
    result.error_message = message.map(str_bytes);
    result
}

impl super::ErrorCodes for CreateAclsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.results.iter().map(|item| item.error_code));
    }
}
