//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on topic configs, checked and
//! applied as AlterConfigs is (`config_changes`), validated as a whole before anything
//! changes.

use lmq_wire::protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use lmq_wire::protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::config_changes::{self, Change, Mode, Operation, Resource};
use crate::broker::Broker;
use crate::cluster::ClusterNode;

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let resources: Vec<Resource<'_>> = request
        .resources
        .iter()
        .map(|resource| Resource {
            resource_type: resource.resource_type,
            name: resource.resource_name.as_str(),
            changes: resource
                .configs
                .iter()
                .map(|change| Change {
                    name: change.name.as_str(),
                    operation: Operation::from_code(change.config_operation),
                    value: change.value.as_ref().map(|value| value.as_str()),
                })
                .collect(),
        })
        .collect();
    let outcomes = config_changes::alter(
        broker,
        cluster,
        &resources,
        Mode::Incremental,
        request.validate_only,
    )
    .await;
    let mut response = IncrementalAlterConfigsResponse::default();
    for (resource, outcome) in request.resources.iter().zip(outcomes) {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        (result.error_code, result.error_message) = config_changes::answer(outcome);
        response.responses.push(result);
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::IncrementalAlterConfigsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.responses.iter().map(|item| item.error_code));
    }
}
