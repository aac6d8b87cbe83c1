//! The APIs LMQ serves and their version ranges: one table for ApiVersions and dispatch.

use kafka_protocol::messages::ApiKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub api_key: ApiKey,
    /// Advertised minimum. Produce advertises 0 because librdkafka refuses to produce
    /// (compressed) without it, as Apache Kafka 4 also does; versions below what the codec
    /// decodes are still refused as unsupported.
    pub min_version: i16,
    pub max_version: i16,
}

const fn api(api_key: ApiKey, min_version: i16, max_version: i16) -> SupportedApi {
    SupportedApi {
        api_key,
        min_version,
        max_version,
    }
}

/// What the broker advertises. Maximums are what the codec decodes and the handlers
/// implement; a handler file exists for every line.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    api(ApiKey::Produce, 0, 11),
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 8),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::FindCoordinator, 0, 5),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 8),
    api(ApiKey::OffsetFetch, 1, 8),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    // Kafka 4 serves v1-3 (KIP-896 removed v0).
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    // Clients' mechanisms on SASL listeners, and LMQ's inter-broker one
    // (broker/src/cluster/identity.rs).
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    // Transactions as before KIP-890 part 2 (LMQ does not advertise `transaction.version`
    // 2): EndTxn and TxnOffsetCommit stop below their version-2 forms; AddPartitionsToTxn
    // v4-5 is the brokers' batched and verifying form.
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 4),
    api(ApiKey::TxnOffsetCommit, 0, 4),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 2),
    // Transactions, the partition side: markers from the transaction coordinator (Kafka 4
    // serves v1+; KIP-896 removed v0) and the producer state of led partitions.
    api(ApiKey::WriteTxnMarkers, 1, 1),
    api(ApiKey::DescribeProducers, 0, 0),
];

/// The advertised range of `api_key`, or `None` when LMQ does not serve it.
pub fn supported_range(api_key: ApiKey) -> Option<SupportedApi> {
    SUPPORTED_APIS
        .iter()
        .copied()
        .find(|api| api.api_key == api_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_maximum_is_decodable() {
        for api in SUPPORTED_APIS {
            let valid = api.api_key.valid_versions();
            assert!(api.max_version <= valid.max, "{:?}", api.api_key);
            assert!(api.min_version <= api.max_version, "{:?}", api.api_key);
        }
    }
}
