//! AddPartitionsToTxn. v0-3, from producers: adds partitions to the producer's ongoing
//! transaction (Kafka's checks first: WRITE on the id and on each topic, known topics; any
//! refusal leaves the others OPERATION_NOT_ATTEMPTED). v4-5, from brokers (CLUSTER_ACTION),
//! several transactions at once: `verify_only` asks whether partitions are already in the
//! transaction (KIP-890 part 1: a partition leader checks a producer's first transactional
//! batch), otherwise adds them on the producer's behalf (KIP-890 part 2).

use std::collections::BTreeSet;

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use lmq_wire::protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use lmq_wire::protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TransactionalId,
};

use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::security::acl::{AclOperation, ResourceType};
use crate::txn::state::{AddPartitionsRequest, ProducerIdAndEpoch};
use crate::txn::{TopicPartition, TransactionVersion};

const OPERATION_NOT_ATTEMPTED: i16 = ResponseError::OperationNotAttempted.code();

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    context: &super::RequestContext,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let mut response = AddPartitionsToTxnResponse::default();
    if version <= 3 {
        let topics = request.v3_and_below_topics;
        let codes = add(
            broker,
            cluster,
            context,
            request.v3_and_below_transactional_id.0.as_str(),
            ProducerIdAndEpoch {
                producer_id: request.v3_and_below_producer_id.0,
                producer_epoch: request.v3_and_below_producer_epoch,
            },
            &topics,
            false,
            version,
        )
        .await;
        response.results_by_topic_v3_and_below = results(&topics, &codes);
        return response;
    }
    if let Err(code) = context.check_cluster(AclOperation::ClusterAction) {
        response.error_code = code;
        return response;
    }
    for transaction in request.transactions {
        let codes = add(
            broker,
            cluster,
            context,
            transaction.transactional_id.0.as_str(),
            ProducerIdAndEpoch {
                producer_id: transaction.producer_id.0,
                producer_epoch: transaction.producer_epoch,
            },
            &transaction.topics,
            transaction.verify_only,
            version,
        )
        .await;
        let mut result = AddPartitionsToTxnResult::default();
        result.transactional_id = TransactionalId(transaction.transactional_id.0.clone());
        result.topic_results = results(&transaction.topics, &codes);
        response.results_by_transaction.push(result);
    }
    response
}

/// Each partition's code, in the request's order.
#[allow(clippy::too_many_arguments)]
async fn add(
    broker: &Broker,
    cluster: &ClusterNode,
    context: &super::RequestContext,
    transactional_id: &str,
    producer: ProducerIdAndEpoch,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
    version: i16,
) -> Vec<i16> {
    let partitions: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|&partition| TopicPartition::new(topic.name.0.as_str(), partition))
        })
        .collect();
    let all = |code: i16| vec![code; partitions.len()];
    // A broker verifying for a producer acts with the cluster's rights; a producer needs
    // WRITE on its id and on every topic.
    let from_broker = version >= 4;
    if !from_broker
        && !context.authorize(
            AclOperation::Write,
            ResourceType::TransactionalId,
            transactional_id,
        )
    {
        return all(super::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    let view = cluster.view();
    let refusals: Vec<Option<i16>> = partitions
        .iter()
        .map(|partition| {
            if !from_broker && !context.authorize_topic(AclOperation::Write, &partition.topic) {
                return Some(super::TOPIC_AUTHORIZATION_FAILED);
            }
            let known = view
                .metadata
                .topics
                .get(&partition.topic)
                .is_some_and(|topic| {
                    usize::try_from(partition.partition)
                        .is_ok_and(|index| index < topic.partitions.len())
                });
            (!known).then_some(super::UNKNOWN_TOPIC_OR_PARTITION)
        })
        .collect();
    drop(view);
    if refusals.iter().any(Option::is_some) {
        return refusals
            .into_iter()
            .map(|refusal| refusal.unwrap_or(OPERATION_NOT_ATTEMPTED))
            .collect();
    }
    let wanted: BTreeSet<TopicPartition> = partitions.iter().cloned().collect();
    let coordinator = &broker.transactions;
    if verify_only {
        return match coordinator.verify_partitions(transactional_id, producer, &wanted) {
            Ok(verdicts) => partitions
                .iter()
                .map(|partition| match verdicts.get(partition) {
                    Some(Ok(())) => super::NONE,
                    Some(Err(error)) => super::txn_error_code(*error, true),
                    None => ResponseError::TransactionAbortable.code(),
                })
                .collect(),
            Err(error) => all(super::txn_error_code(error, true)),
        };
    }
    let added = coordinator
        .add_partitions(
            AddPartitionsRequest {
                transactional_id: transactional_id.to_string(),
                producer_id: producer.producer_id,
                producer_epoch: producer.producer_epoch,
                partitions: wanted,
                client_version: TransactionVersion::for_add_partitions(version),
            },
            broker.now_ms(),
        )
        .await;
    match added {
        Ok(()) => all(super::NONE),
        Err(error) => all(super::txn_error_code(error, version >= 2)),
    }
}

/// The per-topic results of `topics` with `codes` in their order.
fn results(
    topics: &[AddPartitionsToTxnTopic],
    codes: &[i16],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut codes = codes.iter().copied();
    topics
        .iter()
        .map(|topic| {
            let mut result = AddPartitionsToTxnTopicResult::default();
            result.name = topic.name.clone();
            result.results_by_partition = topic
                .partitions
                .iter()
                .map(|&partition| {
                    let mut answered = AddPartitionsToTxnPartitionResult::default();
                    answered.partition_index = partition;
                    answered.partition_error_code = codes.next().unwrap_or(super::NONE);
                    answered
                })
                .collect();
            result
        })
        .collect()
}

impl super::ErrorCodes for AddPartitionsToTxnResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
        let partitions = self
            .results_by_topic_v3_and_below
            .iter()
            .chain(
                self.results_by_transaction
                    .iter()
                    .flat_map(|result| &result.topic_results),
            )
            .flat_map(|topic| &topic.results_by_partition);
        codes.extend(partitions.map(|partition| partition.partition_error_code));
    }
}
