//! DeleteAcls: every ACL each filter selects (ANY and MATCH as Kafka's filters), removed in
//! one write (ALTER on the cluster).

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use lmq_wire::protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};

use super::{RequestContext, store_error_code, str_bytes};
use crate::cluster::ClusterNode;
use crate::cluster::acls;
use crate::security::acl::{AclBinding, AclFilter, AclOperation};

pub async fn handle(
    cluster: &ClusterNode,
    context: &RequestContext,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
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
    let mut response = DeleteAclsResponse::default();
    if let Some((error, message)) = refusal {
        response.filter_results = request
            .filters
            .iter()
            .map(|_| filter_result(error.code(), Some(message.to_string()), Vec::new()))
            .collect();
        return response;
    }
    let filters: Vec<Option<AclFilter>> = request
        .filters
        .iter()
        .map(|filter| {
            AclFilter::from_wire(
                filter.resource_type_filter,
                filter.resource_name_filter.as_deref(),
                filter.pattern_type_filter,
                filter.principal_filter.as_deref(),
                filter.host_filter.as_deref(),
                filter.operation,
                filter.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = filters.iter().flatten().cloned().collect();
    let removed = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        acls::delete(&*cluster.coordinator, &context.authorizer, &valid).await
    };
    let mut removed_per_filter = match &removed {
        Ok(removed) => removed.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    response.filter_results = filters
        .iter()
        .map(|filter| match (filter, &removed) {
            (None, _) => filter_result(
                ResponseError::InvalidRequest.code(),
                Some("The filter contains UNKNOWN elements".to_string()),
                Vec::new(),
            ),
            (Some(_), Err(error)) => {
                filter_result(store_error_code(error), Some(error.to_string()), Vec::new())
            }
            (Some(_), Ok(_)) => filter_result(
                0,
                None,
                removed_per_filter
                    .next()
                    .unwrap_or_default()
                    .iter()
                    .map(matching_acl)
                    .collect(),
            ),
        })
        .collect();
    response
}

fn filter_result(
    error_code: i16,
    message: Option<String>,
    matching_acls: Vec<DeleteAclsMatchingAcl>,
) -> DeleteAclsFilterResult {
    let mut result = DeleteAclsFilterResult::default();
    result.error_code = error_code;
    result.error_message = message.map(str_bytes);
    result.matching_acls = matching_acls;
    result
}

fn matching_acl(binding: &AclBinding) -> DeleteAclsMatchingAcl {
    let mut acl = DeleteAclsMatchingAcl::default();
    acl.resource_type = binding.pattern.resource_type.code();
    acl.resource_name = str_bytes(binding.pattern.name.clone());
    acl.pattern_type = binding.pattern.pattern_type.code();
    acl.principal = str_bytes(binding.entry.principal.clone());
    acl.host = str_bytes(binding.entry.host.clone());
    acl.operation = binding.entry.operation.code();
    acl.permission_type = binding.entry.permission.code();
    acl
}

impl super::ErrorCodes for DeleteAclsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        for result in &self.filter_results {
            codes.push(result.error_code);
            codes.extend(result.matching_acls.iter().map(|acl| acl.error_code));
        }
    }
}
