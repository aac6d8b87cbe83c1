//! AlterConfigs (v0-2), the pre-KIP-339 call some clients (kafkajs) still use: the request's
//! entries become the topic's whole set of overrides (what it leaves out returns to the
//! default). Checked and applied as IncrementalAlterConfigs is (`config_changes`).

use lmq_wire::protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use lmq_wire::protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::config_changes::{self, Change, Mode, Operation, Resource};
use crate::broker::Broker;
use crate::cluster::ClusterNode;

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let resources: Vec<Resource<'_>> = request
        .resources
        .iter()
        .map(|resource| Resource {
            resource_type: resource.resource_type,
            name: resource.resource_name.as_str(),
            changes: resource
                .configs
                .iter()
                .map(|config| Change {
                    name: config.name.as_str(),
                    operation: Operation::Set,
                    value: config.value.as_ref().map(|value| value.as_str()),
                })
                .collect(),
        })
        .collect();
    let outcomes = config_changes::alter(
        broker,
        cluster,
        &resources,
        Mode::Replace,
        request.validate_only,
    )
    .await;
    let mut response = AlterConfigsResponse::default();
    for (resource, outcome) in request.resources.iter().zip(outcomes) {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        (result.error_code, result.error_message) = config_changes::answer(outcome);
        response.responses.push(result);
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::AlterConfigsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.responses.iter().map(|item| item.error_code));
    }
}
