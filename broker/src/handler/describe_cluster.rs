//! DescribeCluster: this node alone, or the live brokers and controller of the cluster.

use lmq_wire::protocol::messages::describe_cluster_response::DescribeClusterBroker;
use lmq_wire::protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;

pub fn handle(broker: &Broker, _request: DescribeClusterRequest) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = str_bytes(broker.cluster_id());
    if let Some(cluster) = broker.cluster() {
        let view = cluster.view();
        response.controller_id = BrokerId(view.controller);
        response.brokers = view
            .brokers
            .iter()
            .map(|(&id, info)| {
                let mut node = DescribeClusterBroker::default();
                node.broker_id = BrokerId(id);
                node.host = str_bytes(info.host.clone());
                node.port = i32::from(info.port);
                node.rack = info.rack.clone().map(str_bytes);
                node
            })
            .collect();
        return response;
    }
    let (host, port) = broker.config.advertised();
    let mut node = DescribeClusterBroker::default();
    node.broker_id = BrokerId(broker.config.node_id);
    node.host = str_bytes(host);
    node.port = port;
    response.controller_id = BrokerId(broker.config.node_id);
    response.brokers = vec![node];
    response
}
