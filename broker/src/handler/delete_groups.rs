//! DeleteGroups: groups without members, with their committed offsets.

use lmq_wire::protocol::messages::delete_groups_response::DeletableGroupResult;
use lmq_wire::protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{check_coordinator, commit_error_code, commit_outcome};
use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for group_id in request.groups_names {
        let mut result = DeletableGroupResult::default();
        result.group_id = group_id.clone();
        result.error_code = match check_coordinator(broker, &group_id.0) {
            Err(code) => code,
            Ok(()) => {
                let deleted = broker.groups.delete_group(&group_id.0, broker.now_ms());
                commit_outcome(broker, deleted)
                    .await
                    .map_or_else(|error| commit_error_code(&error), |()| 0)
            }
        };
        response.results.push(result);
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::DeleteGroupsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.results.iter().map(|item| item.error_code));
    }
}
