//! DescribeCluster: this node is the whole cluster and its controller.

use lmq_wire::protocol::messages::describe_cluster_response::DescribeClusterBroker;
use lmq_wire::protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;

pub fn handle(broker: &Broker, _request: DescribeClusterRequest) -> DescribeClusterResponse {
    let (host, port) = broker.config.advertised();
    let mut node = DescribeClusterBroker::default();
    node.broker_id = BrokerId(broker.config.node_id);
    node.host = str_bytes(host);
    node.port = port;
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = str_bytes(broker.cluster_id.clone());
    response.controller_id = BrokerId(broker.config.node_id);
    response.brokers = vec![node];
    response
}
