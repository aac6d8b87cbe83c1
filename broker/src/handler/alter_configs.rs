//! AlterConfigs (v0-2), the pre-KIP-339 call some clients (kafkajs) still use: the request's
//! entries become the topic's whole set of overrides (what it leaves out returns to the
//! default), validated as a whole before anything changes.

use std::collections::BTreeMap;

use lmq_wire::protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use lmq_wire::protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::RESOURCE_TOPIC;
use super::incremental_alter_configs::{broker_configs_refused, replace_topic_configs};
use super::{NONE, str_bytes};
use crate::broker::Broker;
use crate::cluster::ClusterNode;

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let outcome = if resource.resource_type == RESOURCE_TOPIC {
            // A null value sets nothing: the config keeps its default.
            let configs: BTreeMap<String, String> = resource
                .configs
                .iter()
                .filter_map(|config| {
                    let value = config.value.as_ref()?;
                    Some((config.name.to_string(), value.to_string()))
                })
                .collect();
            let name = resource.resource_name.to_string();
            replace_topic_configs(broker, cluster, &name, configs, request.validate_only).await
        } else {
            Err(broker_configs_refused())
        };
        match outcome {
            Ok(()) => {
                result.error_code = NONE;
                result.error_message = None;
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(message));
            }
        }
        response.responses.push(result);
    }
    response
}
