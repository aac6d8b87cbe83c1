//! DescribeCluster: the live brokers and the controller of the cluster.

use lmq_wire::protocol::messages::describe_cluster_response::DescribeClusterBroker;
use lmq_wire::protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::cluster::ClusterNode;
use crate::security::acl::{AclOperation, CLUSTER_NAME, ResourceType};

pub fn handle(
    cluster: &ClusterNode,
    context: &super::RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let listener: &str = &context.listener;
    let mut response = DescribeClusterResponse::default();
    // As Kafka: the cluster's operations when asked, none without DESCRIBE on it.
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations =
            if context.authorize_cluster(AclOperation::Describe) {
                context.authorized_operations(ResourceType::Cluster, CLUSTER_NAME)
            } else {
                0
            };
    }
    response.cluster_id = str_bytes(cluster.cluster_id.clone());
    let view = cluster.view();
    response.controller_id = BrokerId(view.controller);
    response.brokers = view
        .brokers
        .iter()
        .filter_map(|(&id, info)| {
            let (host, port) = info.endpoint(listener)?;
            let mut node = DescribeClusterBroker::default();
            node.broker_id = BrokerId(id);
            node.host = str_bytes(host.to_string());
            node.port = i32::from(port);
            node.rack = info.rack.clone().map(str_bytes);
            Some(node)
        })
        .collect();
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::DescribeClusterResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
