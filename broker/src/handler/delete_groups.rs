//! DeleteGroups: groups without members, with their committed offsets.

use lmq_wire::protocol::messages::delete_groups_response::DeletableGroupResult;
use lmq_wire::protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{group_error_code, storage_error_code};
use crate::broker::Broker;
use crate::group::CommitError;

pub fn handle(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for group_id in request.groups_names {
        let mut result = DeletableGroupResult::default();
        result.group_id = group_id.clone();
        result.error_code = match broker.groups.delete_group(&group_id.0, broker.now_ms()) {
            Ok(()) => 0,
            Err(CommitError::Group(error)) => group_error_code(error),
            Err(CommitError::Storage(error)) => storage_error_code(&error),
            Err(CommitError::MetadataTooLarge(_)) => {
                lmq_wire::protocol::ResponseError::UnknownServerError.code()
            }
        };
        response.results.push(result);
    }
    response
}
