//! DescribeAcls: the ACLs a filter selects, grouped by resource pattern (DESCRIBE on the
//! cluster).

use std::collections::BTreeMap;

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use lmq_wire::protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};

use super::{RequestContext, str_bytes};
use crate::security::acl::{AccessControlEntry, AclFilter, AclOperation, ResourcePattern};

pub fn handle(context: &RequestContext, request: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut response = DescribeAclsResponse::default();
    let refuse = |response: &mut DescribeAclsResponse, error: ResponseError, message: &str| {
        response.error_code = error.code();
        response.error_message = Some(str_bytes(message));
    };
    if !context.authorizer.enabled() {
        refuse(
            &mut response,
            ResponseError::SecurityDisabled,
            "No Authorizer is configured.",
        );
        return response;
    }
    if !context.authorize_cluster(AclOperation::Describe) {
        refuse(
            &mut response,
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        );
        return response;
    }
    let Some(filter) = AclFilter::from_wire(
        request.resource_type_filter,
        request.resource_name_filter.as_deref(),
        request.pattern_type_filter,
        request.principal_filter.as_deref(),
        request.host_filter.as_deref(),
        request.operation,
        request.permission_type,
    ) else {
        refuse(
            &mut response,
            ResponseError::InvalidRequest,
            "The filter contains UNKNOWN elements",
        );
        return response;
    };
    let acls = context.authorizer.acls();
    let mut by_pattern: BTreeMap<&ResourcePattern, Vec<&AccessControlEntry>> = BTreeMap::new();
    for binding in acls.bindings() {
        if filter.matches(binding) {
            by_pattern
                .entry(&binding.pattern)
                .or_default()
                .push(&binding.entry);
        }
    }
    response.resources = by_pattern
        .into_iter()
        .map(|(pattern, entries)| {
            let mut resource = DescribeAclsResource::default();
            resource.resource_type = pattern.resource_type.code();
            resource.resource_name = str_bytes(pattern.name.clone());
            resource.pattern_type = pattern.pattern_type.code();
            resource.acls = entries
                .into_iter()
                .map(|entry| {
                    let mut acl = AclDescription::default();
                    acl.principal = str_bytes(entry.principal.clone());
                    acl.host = str_bytes(entry.host.clone());
                    acl.operation = entry.operation.code();
                    acl.permission_type = entry.permission.code();
                    acl
                })
                .collect();
            resource
        })
        .collect();
    response
}

impl super::ErrorCodes for DescribeAclsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
