//! KIP-890 part 1 on the partition leader: before a producer's first transactional batch
//! starts a transaction on a partition, the transaction coordinator confirms the producer
//! added the partition to its ongoing transaction (Kafka's `AddPartitionsToTxn` with
//! `verify_only`). The coordinator on this broker is asked directly; one on another broker
//! through AddPartitionsToTxn v4 over the inter-broker listener, as a broker.

use std::collections::{BTreeSet, HashMap};

use lmq::api::BrokerAddPartitionsToTxn;
use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use lmq_wire::protocol::messages::{
    AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId,
};
use lmq_wire::protocol::protocol::StrBytes;

use super::ClusterNode;
use crate::broker::Broker;
use crate::coordinator_log::partition_for;
use crate::topics::TRANSACTION_STATE_TOPIC;
use crate::txn::TopicPartition;
use crate::txn::state::{ProducerIdAndEpoch, TxnError};
use crate::txn_hooks::{Verification, VerifyRequest};

/// Each partition's verification, in the request's order.
pub async fn verify(
    broker: &Broker,
    node: &ClusterNode,
    request: &VerifyRequest,
) -> Vec<Verification> {
    let all = |verification| vec![verification; request.partitions.len()];
    let Some(coordinator) = coordinator_of(node, &request.transactional_id) else {
        return all(Verification::Unavailable);
    };
    if coordinator == node.node_id {
        return verify_here(broker, request);
    }
    match verify_remote(broker, node, coordinator, request).await {
        Ok(answers) => answers,
        Err(error) => {
            tracing::debug!(coordinator, %error, "verifying a transaction with its coordinator failed");
            node.peers.broken(coordinator).await;
            all(Verification::Unavailable)
        }
    }
}

/// The broker leading the id's `__transaction_state` partition.
fn coordinator_of(node: &ClusterNode, transactional_id: &str) -> Option<i32> {
    let view = node.view();
    let topic = view.metadata.topics.get(TRANSACTION_STATE_TOPIC)?;
    let index = partition_for(transactional_id, topic.partitions.len());
    topic
        .partitions
        .get(index)
        .map(|state| state.leader)
        .filter(|leader| *leader >= 0)
}

fn verify_here(broker: &Broker, request: &VerifyRequest) -> Vec<Verification> {
    let partitions: BTreeSet<TopicPartition> = request
        .partitions
        .iter()
        .map(|(topic, partition)| TopicPartition::new(topic, *partition))
        .collect();
    let producer = ProducerIdAndEpoch {
        producer_id: request.producer_id,
        producer_epoch: request.producer_epoch,
    };
    match broker
        .transactions
        .verify_partitions(&request.transactional_id, producer, &partitions)
    {
        Ok(verdicts) => request
            .partitions
            .iter()
            .map(
                |(topic, partition)| match verdicts.get(&TopicPartition::new(topic, *partition)) {
                    Some(Ok(())) => Verification::Added,
                    Some(Err(error)) => from_error(*error),
                    None => Verification::NotAdded,
                },
            )
            .collect(),
        Err(error) => vec![from_error(error); request.partitions.len()],
    }
}

fn from_error(error: TxnError) -> Verification {
    match error {
        TxnError::ProducerFenced => Verification::Fenced,
        TxnError::TransactionAbortable
        | TxnError::InvalidTxnState
        | TxnError::InvalidProducerIdMapping => Verification::NotAdded,
        _ => Verification::Unavailable,
    }
}

fn from_code(code: i16) -> Verification {
    match ResponseError::try_from_code(code) {
        None => Verification::Added,
        Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch) => {
            Verification::Fenced
        }
        Some(
            ResponseError::TransactionAbortable
            | ResponseError::InvalidTxnState
            | ResponseError::InvalidProducerIdMapping,
        ) => Verification::NotAdded,
        Some(_) => Verification::Unavailable,
    }
}

async fn verify_remote(
    broker: &Broker,
    node: &ClusterNode,
    coordinator: i32,
    request: &VerifyRequest,
) -> Result<Vec<Verification>, lmq::ClientError> {
    let connection = node.peers.get(broker, node, coordinator).await?;
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, partition) in &request.partitions {
        match topics.iter_mut().find(|item| item.name.0.as_str() == topic) {
            Some(item) => item.partitions.push(*partition),
            None => {
                let mut item = AddPartitionsToTxnTopic::default();
                item.name = TopicName(StrBytes::from_string(topic.clone()));
                item.partitions = vec![*partition];
                topics.push(item);
            }
        }
    }
    let mut transaction = AddPartitionsToTxnTransaction::default();
    transaction.transactional_id =
        TransactionalId(StrBytes::from_string(request.transactional_id.clone()));
    transaction.producer_id = ProducerId(request.producer_id);
    transaction.producer_epoch = request.producer_epoch;
    transaction.verify_only = true;
    transaction.topics = topics;
    let mut ask = AddPartitionsToTxnRequest::default();
    ask.transactions = vec![transaction];
    let response = connection.call(BrokerAddPartitionsToTxn(ask)).await?;
    if response.error_code != 0 {
        return Ok(vec![
            from_code(response.error_code);
            request.partitions.len()
        ]);
    }
    let answered: HashMap<(String, i32), i16> = response
        .results_by_transaction
        .iter()
        .flat_map(|result| &result.topic_results)
        .flat_map(|topic| {
            topic.results_by_partition.iter().map(|partition| {
                (
                    (topic.name.0.to_string(), partition.partition_index),
                    partition.partition_error_code,
                )
            })
        })
        .collect();
    Ok(request
        .partitions
        .iter()
        .map(|key| {
            answered
                .get(key)
                .map_or(Verification::Unavailable, |code| from_code(*code))
        })
        .collect())
}
