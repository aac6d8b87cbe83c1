//! The one table of what this client asks brokers: each request type, its response type, the
//! API key and the versions the client speaks (the request bodies it builds are valid at
//! every version of the range, or pick their shape by [`Connection::version`]).
//! [`Connection::connect`] negotiates every entry against the broker's ApiVersions once;
//! [`Connection::call`] sends at the negotiated version and returns the typed response.
//!
//! [`Connection::connect`]: crate::connection::Connection::connect
//! [`Connection::call`]: crate::connection::Connection::call
//! [`Connection::version`]: crate::connection::Connection::version

use std::ops::RangeInclusive;

use lmq_wire::protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use lmq_wire::protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey,
    ApiVersionsRequest, ApiVersionsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, InitProducerIdRequest,
    InitProducerIdResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest,
    ListOffsetsResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse, RequestKind,
    ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse, SyncGroupRequest, SyncGroupResponse,
};
use lmq_wire::protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

/// A request this client sends: its entry in the table and the response it gets back.
pub trait Request: Into<RequestKind> + Send + 'static {
    /// What the broker answers.
    type Response: Send + 'static;
    /// The table entry: API key and the versions this client speaks.
    const API: Api;
    /// The typed answer, or `None` when the decoded response is of another kind.
    fn response(response: ResponseKind) -> Option<Self::Response>;
}

/// A Fetch of the broker's replica fetcher (`broker/src/cluster/fetcher.rs`): version 12
/// only, the version that carries both topic names and `last_fetched_epoch`, without which
/// the leader could not detect a follower's diverging log. Consumers send [`FetchRequest`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaFetch(pub FetchRequest);

impl From<ReplicaFetch> for RequestKind {
    fn from(fetch: ReplicaFetch) -> RequestKind {
        RequestKind::Fetch(fetch.0)
    }
}

/// AddPartitionsToTxn in the form brokers send each other (v4+: batched transactions,
/// `verify_only`): a partition leader asks a transaction coordinator whether a producer
/// added partitions to its transaction (KIP-890, `broker/src/cluster/txn_verify.rs`).
/// Producers send [`AddPartitionsToTxnRequest`] (v0-3).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerAddPartitionsToTxn(pub AddPartitionsToTxnRequest);

impl From<BrokerAddPartitionsToTxn> for RequestKind {
    fn from(request: BrokerAddPartitionsToTxn) -> RequestKind {
        RequestKind::AddPartitionsToTxn(request.0)
    }
}

/// Declares [`Api`] and the [`Request`] impls from one table: entry, request type, API key
/// (also the `RequestKind`/`ResponseKind` variant), response type, versions.
macro_rules! client_apis {
    ($($(#[$doc:meta])* $entry:ident: $request:ty => $key:ident($response:ty), $min:literal..=$max:literal;)*) => {
        /// An entry of the client's API table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Api {
            $(
                #[doc = concat!("`", stringify!($request), "` answered by `", stringify!($response), "`.")]
                $(#[$doc])*
                $entry,
            )*
        }

        impl Api {
            /// Every entry, in table order (`entry as usize` is its index).
            pub const ALL: &'static [Api] = &[$(Api::$entry,)*];

            /// The Kafka API key it sends.
            pub fn key(self) -> ApiKey {
                match self {
                    $(Api::$entry => ApiKey::$key,)*
                }
            }

            /// The versions this client speaks.
            pub fn versions(self) -> RangeInclusive<i16> {
                match self {
                    $(Api::$entry => $min..=$max,)*
                }
            }

            /// Its name in errors (`Metadata`, `ReplicaFetch`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $(Api::$entry => stringify!($entry),)*
                }
            }
        }

        $(
            impl Request for $request {
                type Response = $response;
                const API: Api = Api::$entry;
                fn response(response: ResponseKind) -> Option<$response> {
                    match response {
                        ResponseKind::$key(response) => Some(response),
                        _ => None,
                    }
                }
            }
        )*
    };
}

client_apis! {
    /// Sent first on every connection, before anything is negotiated.
    ApiVersions: ApiVersionsRequest => ApiVersions(ApiVersionsResponse), 3..=3;
    Metadata: MetadataRequest => Metadata(MetadataResponse), 1..=12;
    /// The body's shape depends on the version (the single key before v4).
    FindCoordinator: FindCoordinatorRequest => FindCoordinator(FindCoordinatorResponse), 0..=4;
    Produce: ProduceRequest => Produce(ProduceResponse), 3..=11;
    InitProducerId: InitProducerIdRequest => InitProducerId(InitProducerIdResponse), 0..=4;
    /// Transactions as before KIP-890 part 2 (the client adds each partition; an EndTxn does
    /// not bump the epoch): what every Kafka 4.x broker still serves.
    AddPartitionsToTxn: AddPartitionsToTxnRequest
        => AddPartitionsToTxn(AddPartitionsToTxnResponse), 0..=3;
    BrokerAddPartitionsToTxn: BrokerAddPartitionsToTxn
        => AddPartitionsToTxn(AddPartitionsToTxnResponse), 4..=5;
    AddOffsetsToTxn: AddOffsetsToTxnRequest => AddOffsetsToTxn(AddOffsetsToTxnResponse), 0..=4;
    TxnOffsetCommit: TxnOffsetCommitRequest => TxnOffsetCommit(TxnOffsetCommitResponse), 0..=4;
    EndTxn: EndTxnRequest => EndTxn(EndTxnResponse), 0..=4;
    /// A transaction coordinator's markers to partition leaders (`broker/src/cluster/markers.rs`).
    WriteTxnMarkers: WriteTxnMarkersRequest => WriteTxnMarkers(WriteTxnMarkersResponse), 1..=1;
    Fetch: FetchRequest => Fetch(FetchResponse), 4..=12;
    ReplicaFetch: ReplicaFetch => Fetch(FetchResponse), 12..=12;
    ListOffsets: ListOffsetsRequest => ListOffsets(ListOffsetsResponse), 1..=8;
    DeleteRecords: DeleteRecordsRequest => DeleteRecords(DeleteRecordsResponse), 0..=2;
    CreateTopics: CreateTopicsRequest => CreateTopics(CreateTopicsResponse), 2..=7;
    DeleteTopics: DeleteTopicsRequest => DeleteTopics(DeleteTopicsResponse), 1..=5;
    CreatePartitions: CreatePartitionsRequest => CreatePartitions(CreatePartitionsResponse), 0..=3;
    DescribeConfigs: DescribeConfigsRequest => DescribeConfigs(DescribeConfigsResponse), 1..=4;
    IncrementalAlterConfigs: IncrementalAlterConfigsRequest
        => IncrementalAlterConfigs(IncrementalAlterConfigsResponse), 0..=1;
    AlterPartitionReassignments: AlterPartitionReassignmentsRequest
        => AlterPartitionReassignments(AlterPartitionReassignmentsResponse), 0..=1;
    ListPartitionReassignments: ListPartitionReassignmentsRequest
        => ListPartitionReassignments(ListPartitionReassignmentsResponse), 0..=0;
    ListGroups: ListGroupsRequest => ListGroups(ListGroupsResponse), 0..=4;
    DescribeUserScramCredentials: DescribeUserScramCredentialsRequest
        => DescribeUserScramCredentials(DescribeUserScramCredentialsResponse), 0..=0;
    AlterUserScramCredentials: AlterUserScramCredentialsRequest
        => AlterUserScramCredentials(AlterUserScramCredentialsResponse), 0..=0;
    DescribeGroups: DescribeGroupsRequest => DescribeGroups(DescribeGroupsResponse), 0..=5;
    JoinGroup: JoinGroupRequest => JoinGroup(JoinGroupResponse), 4..=9;
    SyncGroup: SyncGroupRequest => SyncGroup(SyncGroupResponse), 0..=5;
    Heartbeat: HeartbeatRequest => Heartbeat(HeartbeatResponse), 0..=4;
    /// The body's shape depends on the version (a member list from v3).
    LeaveGroup: LeaveGroupRequest => LeaveGroup(LeaveGroupResponse), 0..=5;
    OffsetCommit: OffsetCommitRequest => OffsetCommit(OffsetCommitResponse), 2..=8;
    OffsetFetch: OffsetFetchRequest => OffsetFetch(OffsetFetchResponse), 1..=7;
    /// The broker's inter-broker identity (`broker/src/cluster/identity.rs`).
    SaslHandshake: SaslHandshakeRequest => SaslHandshake(SaslHandshakeResponse), 1..=1;
    SaslAuthenticate: SaslAuthenticateRequest => SaslAuthenticate(SaslAuthenticateResponse), 0..=2;
}

/// The version of every entry both sides speak, worked out once per connection from the
/// broker's ApiVersions answer: `None` where the ranges do not meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Negotiated {
    versions: Vec<Option<i16>>,
}

impl Negotiated {
    /// `broker` is the ApiVersions answer's (key, min, max) list.
    pub(crate) fn new(broker: impl IntoIterator<Item = (i16, i16, i16)>) -> Negotiated {
        let broker: std::collections::HashMap<i16, (i16, i16)> = broker
            .into_iter()
            .map(|(key, min, max)| (key, (min, max)))
            .collect();
        let versions = Api::ALL
            .iter()
            .map(|api| {
                let (broker_min, broker_max) = *broker.get(&(api.key() as i16))?;
                // What the codec (kafka-protocol) decodes bounds both ends too.
                let decodable = api.key().valid_versions();
                let wanted = api.versions();
                let version = broker_max.min(*wanted.end()).min(decodable.max);
                (version >= broker_min.max(*wanted.start()).max(decodable.min)).then_some(version)
            })
            .collect();
        Negotiated { versions }
    }

    /// The negotiated version of `api`.
    pub(crate) fn version(&self, api: Api) -> Option<i16> {
        self.versions.get(api as usize).copied().flatten()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_order_and_every_range_is_decodable() {
        for (index, api) in Api::ALL.iter().enumerate() {
            assert_eq!(*api as usize, index);
            let versions = api.versions();
            let decodable = api.key().valid_versions();
            assert!(versions.start() <= versions.end(), "{}", api.name());
            assert!(
                decodable.min <= *versions.start() && *versions.end() <= decodable.max,
                "{} {versions:?} is not all decodable ({decodable:?})",
                api.name()
            );
        }
    }

    #[test]
    fn each_entry_gets_the_highest_common_version_or_none() {
        let negotiated = Negotiated::new([
            (ApiKey::Metadata as i16, 0, 9),
            (ApiKey::Fetch as i16, 4, 11),
            (ApiKey::JoinGroup as i16, 0, 3),
        ]);
        assert_eq!(negotiated.version(Api::Metadata), Some(9));
        assert_eq!(negotiated.version(Api::Fetch), Some(11));
        // The replica fetcher needs exactly 12; a consumer takes 11.
        assert_eq!(negotiated.version(Api::ReplicaFetch), None);
        // The broker's 0..=3 and the client's 4..=9 do not meet.
        assert_eq!(negotiated.version(Api::JoinGroup), None);
        // Not advertised at all.
        assert_eq!(negotiated.version(Api::Produce), None);
    }
}
