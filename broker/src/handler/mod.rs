//! One file per Kafka API. This is the only place Kafka error codes are chosen.

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod alter_partition_reassignments;
mod alter_user_scram_credentials;
mod api_versions;
mod config_changes;
mod create_acls;
mod create_partitions;
mod create_topics;
mod delete_acls;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_acls;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_transactions;
mod describe_user_scram_credentials;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sasl_authenticate;
mod sasl_handshake;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use lmq_storage::StorageError;
use lmq_storage::batch::BatchError;
use lmq_storage::producers::{MarkerError, SequenceError};
use lmq_wire::DecodedRequest;
use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use lmq_wire::protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::cluster::metadata::MetadataError;
use crate::cluster::store::StoreError;
use crate::group::CommitError;
use crate::group::state::GroupError;
use crate::partition::ReplicaError;
use crate::security::acl::{AclOperation, CLUSTER_NAME, ResourceType};
use crate::security::{Authorizer, Principal};
use crate::topics::TopicError;
use crate::txn::state::TxnError;
use crate::zero_copy::Splice;

pub use api_versions::unsupported_version_response;

/// Who sent a request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub peer: std::net::SocketAddr,
    /// The name of the listener the request came in on (Metadata answers with the brokers'
    /// addresses on it).
    pub listener: Arc<str>,
    pub client_id: String,
    /// What the connection proved so far.
    pub session: Arc<Session>,
    /// The broker's ACL checks (`RequestContext::authorize`).
    pub authorizer: Arc<Authorizer>,
}

impl RequestContext {
    /// The client's address as ACL hosts name it: as Java's `InetAddress.getHostAddress`
    /// prints it, which Kafka compares ACL hosts with (IPv6 uncompressed, `0:0:0:0:0:0:0:1`),
    /// an IPv4 client of a dual-stack listener as IPv4.
    fn host(&self) -> String {
        match self.peer.ip().to_canonical() {
            std::net::IpAddr::V4(address) => address.to_string(),
            std::net::IpAddr::V6(address) => address
                .segments()
                .iter()
                .map(|segment| format!("{segment:x}"))
                .collect::<Vec<_>>()
                .join(":"),
        }
    }

    /// Whether this connection may do `operation` on the resource: every handler's one
    /// check. A broker of the cluster (proved with the replication secret) is a super user.
    pub(crate) fn authorize(
        &self,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if !self.authorizer.enabled() || self.session.replica().is_some() {
            return true;
        }
        let principal = self.session.principal();
        let host = self.host();
        let allowed = self
            .authorizer
            .authorize(&principal, &host, operation, resource_type, name);
        if !allowed {
            // Kafka's authorizer logs its denials (kafka.authorizer.logger) the same way.
            tracing::debug!(%principal, host, %operation, %resource_type, resource = name, "denied");
        }
        allowed
    }

    pub(crate) fn authorize_topic(&self, operation: AclOperation, topic: &str) -> bool {
        self.authorize(operation, ResourceType::Topic, topic)
    }

    pub(crate) fn authorize_group(&self, operation: AclOperation, group: &str) -> bool {
        self.authorize(operation, ResourceType::Group, group)
    }

    pub(crate) fn authorize_cluster(&self, operation: AclOperation) -> bool {
        self.authorize(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// The topic check, as the error code of a refusal: TOPIC_AUTHORIZATION_FAILED.
    pub(crate) fn check_topic(&self, operation: AclOperation, topic: &str) -> Result<(), i16> {
        if self.authorize_topic(operation, topic) {
            Ok(())
        } else {
            Err(TOPIC_AUTHORIZATION_FAILED)
        }
    }

    /// The group check, as the error code of a refusal: GROUP_AUTHORIZATION_FAILED.
    pub(crate) fn check_group(&self, operation: AclOperation, group: &str) -> Result<(), i16> {
        if self.authorize_group(operation, group) {
            Ok(())
        } else {
            Err(GROUP_AUTHORIZATION_FAILED)
        }
    }

    /// The cluster check, as the error code of a refusal: CLUSTER_AUTHORIZATION_FAILED.
    pub(crate) fn check_cluster(&self, operation: AclOperation) -> Result<(), i16> {
        if self.authorize_cluster(operation) {
            Ok(())
        } else {
            Err(CLUSTER_AUTHORIZATION_FAILED)
        }
    }

    /// The refusal of DESCRIBE_CONFIGS or ALTER_CONFIGS on a config resource (its
    /// `ConfigResource` type code), as Kafka: a topic's by the topic
    /// (TOPIC_AUTHORIZATION_FAILED), a group's by the group, the others' (broker, broker
    /// logger, client metrics) by the cluster.
    pub(crate) fn config_refusal(
        &self,
        operation: AclOperation,
        resource_type: i8,
        name: &str,
    ) -> Option<(i16, String)> {
        const TOPIC: i8 = 2;
        const GROUP: i8 = 32;
        let checked = match resource_type {
            TOPIC => self.check_topic(operation, name),
            GROUP => self.check_group(operation, name),
            _ => self.check_cluster(operation),
        };
        checked
            .err()
            .map(|code| (code, "Authorization failed.".to_string()))
    }

    /// Whether this connection may do `operation` on some resource of the type (Kafka's
    /// `authorizeByResourceType`: an idempotent producer's WRITE on any topic).
    pub(crate) fn authorize_any(
        &self,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        if !self.authorizer.enabled() || self.session.replica().is_some() {
            return true;
        }
        self.authorizer.authorize_any(
            &self.session.principal(),
            &self.host(),
            operation,
            resource_type,
        )
    }

    /// The authorized-operations bit field of a resource for this connection.
    pub(crate) fn authorized_operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        if self.session.replica().is_some() {
            return crate::security::acl::operations_bit_field(
                resource_type.supported_operations().iter().copied(),
            );
        }
        self.authorizer.authorized_operations(
            &self.session.principal(),
            &self.host(),
            resource_type,
            name,
        )
    }
}

/// A context of a plain client connection from 127.0.0.1 (`User:ANONYMOUS`).
#[cfg(test)]
pub(crate) fn test_context(broker: &Broker) -> RequestContext {
    RequestContext {
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)),
        listener: Arc::from("PLAINTEXT"),
        client_id: "test".to_string(),
        session: Arc::default(),
        authorizer: Arc::clone(&broker.authorizer),
    }
}

pub(crate) const TOPIC_AUTHORIZATION_FAILED: i16 = ResponseError::TopicAuthorizationFailed.code();
pub(crate) const GROUP_AUTHORIZATION_FAILED: i16 = ResponseError::GroupAuthorizationFailed.code();
pub(crate) const CLUSTER_AUTHORIZATION_FAILED: i16 =
    ResponseError::ClusterAuthorizationFailed.code();
pub(crate) const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 =
    ResponseError::TransactionalIdAuthorizationFailed.code();

/// What a connection proved about its peer, for the connection's life.
#[derive(Debug, Default)]
pub struct Session {
    sasl: Mutex<SaslState>,
    /// The connection came in on a SASL_PLAINTEXT or SASL_SSL listener: nothing but
    /// ApiVersions and the SASL exchange until it authenticated.
    sasl_listener: bool,
    /// A SCRAM exchange between its first and last message.
    scram: Mutex<Option<crate::security::scram::ServerExchange>>,
    /// The OAUTHBEARER error the client was sent (RFC 7628 3.2.2), until its %x01 ends the
    /// exchange with it.
    oauth_error: Mutex<Option<String>>,
    /// When the authenticated session ends (KIP-368, `connections_max_reauth_ms`): after it
    /// only a re-authentication is served.
    /// On the broker's clock, in milliseconds.
    session_expires_ms: Mutex<Option<i64>>,
    /// The principal a re-authentication in progress must prove again.
    reauthenticating: Mutex<Option<Principal>>,
    /// Who the listener's TLS or a SASL exchange proved the peer to be (`User:ANONYMOUS`
    /// until then).
    principal: Mutex<Principal>,
    /// The connection closes once the answer of the current request is sent (as Kafka does
    /// after a failed authentication).
    closing: AtomicBool,
}

/// The mechanism a SaslHandshake chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// LMQ's inter-broker proof (`cluster::identity`).
    Broker,
    Client(crate::security::SaslMechanism),
}

/// Where a connection is in its SASL exchange.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum SaslState {
    /// No exchange began (on a PLAINTEXT or SSL listener, none is needed).
    #[default]
    Plain,
    /// A SaslHandshake chose a mechanism: only SaslAuthenticate may follow.
    Authenticating(Method),
    /// The broker this connection authenticated as: only its Fetch requests count as a
    /// follower's.
    Broker(i32),
    /// A client proved its principal.
    Authenticated,
}

impl Session {
    /// A session on a listener that needs SASL authentication (`sasl_listener`) or not.
    pub fn new(sasl_listener: bool) -> Self {
        Self {
            sasl_listener,
            ..Self::default()
        }
    }

    /// The broker id this connection proved, if any.
    pub fn replica(&self) -> Option<i32> {
        match self.sasl_state() {
            SaslState::Broker(node_id) => Some(node_id),
            SaslState::Plain | SaslState::Authenticating(_) | SaslState::Authenticated => None,
        }
    }

    /// Whether a request of `api` may run now: on a SASL listener, only ApiVersions and the
    /// exchange itself before the connection authenticated (Kafka closes the connection on
    /// anything else); during an exchange, only the exchange.
    fn admits(&self, api: ApiKey, now_ms: i64) -> bool {
        let exchange = matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        match self.sasl_state() {
            SaslState::Authenticating(_) => exchange,
            SaslState::Plain if self.sasl_listener => exchange || api == ApiKey::ApiVersions,
            // KIP-368: a session past its lifetime serves nothing but a re-authentication
            // (Kafka closes the connection on anything else).
            SaslState::Authenticated if self.expired(now_ms) => api == ApiKey::SaslHandshake,
            SaslState::Plain | SaslState::Broker(_) | SaslState::Authenticated => true,
        }
    }

    fn expired(&self, now_ms: i64) -> bool {
        self.session_expires_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|expires_ms| now_ms >= expires_ms)
    }

    /// The session ends at `expires_ms` on the broker's clock (none: with the connection).
    fn set_session_end(&self, expires_ms: Option<i64>) {
        *self
            .session_expires_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = expires_ms;
    }

    /// Starts (`Some`: the principal to prove again) or ends a re-authentication.
    fn set_reauthenticating(&self, principal: Option<Principal>) {
        *self
            .reauthenticating
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = principal;
    }

    fn reauthenticating(&self) -> Option<Principal> {
        self.reauthenticating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The SCRAM exchange in progress, taken out for its next step.
    fn take_scram(&self) -> Option<crate::security::scram::ServerExchange> {
        self.scram
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn keep_scram(&self, exchange: crate::security::scram::ServerExchange) {
        *self.scram.lock().unwrap_or_else(PoisonError::into_inner) = Some(exchange);
    }

    /// The OAUTHBEARER error sent to the client, taken out by its next message.
    fn take_oauth_error(&self) -> Option<String> {
        self.oauth_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn keep_oauth_error(&self, error: String) {
        *self
            .oauth_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// Who the connection proved to be.
    pub fn principal(&self) -> Principal {
        self.principal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records what an authentication proved.
    pub fn set_principal(&self, principal: Principal) {
        *self
            .principal
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = principal;
    }

    /// Whether the connection must close after the answer of the request just run.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn close_after_answer(&self) {
        self.closing.store(true, Ordering::Release);
    }

    fn sasl_state(&self) -> SaslState {
        *self.sasl.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_sasl_state(&self, state: SaslState) {
        *self.sasl.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }
}

/// A response and the file regions that go into it (Fetch records, sent with `sendfile`),
/// with the error codes it carries for the request error metrics. Built only by
/// [`Reply::of`], so every answer says its codes: a new API's handler does not compile until
/// its response implements [`ErrorCodes`].
#[derive(Debug)]
pub struct Reply {
    body: ResponseKind,
    splices: Vec<Splice>,
    errors: Vec<i16>,
}

/// Where a response type keeps its error codes; implemented beside the handler that builds
/// it (one Kafka API per file).
pub trait ErrorCodes {
    /// Pushes every error code the answer carries, top level and per item (zeros included;
    /// [`Reply::of`] keeps the others).
    fn error_codes(&self, codes: &mut Vec<i16>);
}

impl Reply {
    /// The answer `response`, wrapped into the response enum by `kind`.
    pub fn of<R: ErrorCodes>(response: R, kind: impl FnOnce(R) -> ResponseKind) -> Self {
        Self::with_splices(response, kind, Vec::new())
    }

    /// As [`Reply::of`], with file regions spliced into the encoded answer.
    pub fn with_splices<R: ErrorCodes>(
        response: R,
        kind: impl FnOnce(R) -> ResponseKind,
        splices: Vec<Splice>,
    ) -> Self {
        let mut errors = Vec::new();
        response.error_codes(&mut errors);
        errors.retain(|&code| code != 0);
        Self {
            body: kind(response),
            splices,
            errors,
        }
    }

    pub fn body(&self) -> &ResponseKind {
        &self.body
    }

    pub fn splices(&self) -> &[Splice] {
        &self.splices
    }

    /// The non-zero error codes of the answer.
    pub fn errors(&self) -> &[i16] {
        &self.errors
    }
}

/// A request's answer: ready, or (Produce) appended and waiting for its fsync or the ISR.
/// The connection reads and runs its next requests while a `Later` answer waits, and sends
/// the answers in request order. `None` means no response is sent (Produce with acks=0).
// Moved once, into the connection's bounded queue: boxing `Ready` would allocate per request.
#[allow(clippy::large_enum_variant)]
pub enum Dispatched {
    Ready(Option<Reply>),
    Later(Pin<Box<dyn Future<Output = Option<Reply>> + Send>>),
}

/// Runs one request.
pub async fn dispatch(
    broker: &Broker,
    cluster: &Arc<ClusterNode>,
    context: &RequestContext,
    request: DecodedRequest,
) -> Dispatched {
    let version = request.api_version();
    if !context
        .session
        .admits(request.api_key, broker.clock.now_ms())
    {
        // As Kafka's SASL listener: before and during the authentication any other request
        // is an illegal state and closes the connection.
        tracing::debug!(peer = %context.peer, api = ?request.api_key, "closing: a request before SASL authentication");
        context.session.close_after_answer();
        return Dispatched::Ready(None);
    }
    if let RequestKind::Fetch(body) = request.body {
        let (response, splices) = fetch::handle(broker, context, body, version).await;
        return Dispatched::Ready(Some(Reply::with_splices(
            response,
            ResponseKind::Fetch,
            splices,
        )));
    }
    if let RequestKind::Produce(body) = request.body {
        let producer_ids = produce::producer_ids_end(cluster, &body).await;
        let transactions = produce::verify_transactions(broker, cluster, &body).await;
        let appended = produce::append(
            broker,
            cluster,
            context,
            body,
            version,
            producer_ids,
            transactions,
        );
        return Dispatched::Later(Box::pin(async move {
            appended
                .finish()
                .await
                .map(|response| Reply::of(response, ResponseKind::Produce))
        }));
    }
    Dispatched::Ready(dispatch_body(broker, cluster, context, request).await)
}

/// Every request but Fetch and Produce: the response holds all its bytes.
async fn dispatch_body(
    broker: &Broker,
    cluster: &ClusterNode,
    context: &RequestContext,
    request: DecodedRequest,
) -> Option<Reply> {
    let version = request.api_version();
    match request.body {
        RequestKind::ApiVersions(body) => Some(Reply::of(
            api_versions::handle(&body, version),
            ResponseKind::ApiVersions,
        )),
        RequestKind::Metadata(body) => Some(Reply::of(
            metadata::handle(broker, cluster, context, body, version).await,
            ResponseKind::Metadata,
        )),
        RequestKind::ListOffsets(body) => Some(Reply::of(
            list_offsets::handle(broker, context, body, version),
            ResponseKind::ListOffsets,
        )),
        RequestKind::WriteTxnMarkers(body) => Some(Reply::of(
            write_txn_markers::handle(broker, cluster, context, body).await,
            ResponseKind::WriteTxnMarkers,
        )),
        RequestKind::DescribeProducers(body) => Some(Reply::of(
            describe_producers::handle(broker, context, body),
            ResponseKind::DescribeProducers,
        )),
        RequestKind::InitProducerId(body) => Some(Reply::of(
            init_producer_id::handle(broker, cluster, context, body, version).await,
            ResponseKind::InitProducerId,
        )),
        RequestKind::DeleteTopics(body) => Some(Reply::of(
            delete_topics::handle(broker, cluster, context, body, version).await,
            ResponseKind::DeleteTopics,
        )),
        RequestKind::CreatePartitions(body) => Some(Reply::of(
            create_partitions::handle(broker, cluster, context, body).await,
            ResponseKind::CreatePartitions,
        )),
        RequestKind::DescribeConfigs(body) => Some(Reply::of(
            describe_configs::handle(broker, context, body, version),
            ResponseKind::DescribeConfigs,
        )),
        RequestKind::AlterConfigs(body) => Some(Reply::of(
            alter_configs::handle(broker, cluster, context, body).await,
            ResponseKind::AlterConfigs,
        )),
        RequestKind::IncrementalAlterConfigs(body) => Some(Reply::of(
            incremental_alter_configs::handle(broker, cluster, context, body).await,
            ResponseKind::IncrementalAlterConfigs,
        )),
        RequestKind::DeleteRecords(body) => Some(Reply::of(
            delete_records::handle(broker, cluster, context, body),
            ResponseKind::DeleteRecords,
        )),
        RequestKind::DescribeCluster(body) => Some(Reply::of(
            describe_cluster::handle(cluster, context, body),
            ResponseKind::DescribeCluster,
        )),
        RequestKind::FindCoordinator(body) => Some(Reply::of(
            find_coordinator::handle(broker, cluster, context, body, version).await,
            ResponseKind::FindCoordinator,
        )),
        RequestKind::JoinGroup(body) => Some(Reply::of(
            join_group::handle(broker, context, body, version).await,
            ResponseKind::JoinGroup,
        )),
        RequestKind::SyncGroup(body) => Some(Reply::of(
            sync_group::handle(broker, context, body, version).await,
            ResponseKind::SyncGroup,
        )),
        RequestKind::Heartbeat(body) => Some(Reply::of(
            heartbeat::handle(broker, context, body),
            ResponseKind::Heartbeat,
        )),
        RequestKind::LeaveGroup(body) => Some(Reply::of(
            leave_group::handle(broker, context, body, version),
            ResponseKind::LeaveGroup,
        )),
        RequestKind::OffsetCommit(body) => Some(Reply::of(
            offset_commit::handle(broker, context, body).await,
            ResponseKind::OffsetCommit,
        )),
        RequestKind::OffsetFetch(body) => Some(Reply::of(
            offset_fetch::handle(broker, context, body, version),
            ResponseKind::OffsetFetch,
        )),
        RequestKind::OffsetDelete(body) => Some(Reply::of(
            offset_delete::handle(broker, context, body).await,
            ResponseKind::OffsetDelete,
        )),
        RequestKind::ListGroups(body) => Some(Reply::of(
            list_groups::handle(broker, context, body, version),
            ResponseKind::ListGroups,
        )),
        RequestKind::DescribeGroups(body) => Some(Reply::of(
            describe_groups::handle(broker, context, body),
            ResponseKind::DescribeGroups,
        )),
        RequestKind::DeleteGroups(body) => Some(Reply::of(
            delete_groups::handle(broker, context, body).await,
            ResponseKind::DeleteGroups,
        )),
        RequestKind::CreateTopics(body) => Some(Reply::of(
            create_topics::handle(broker, cluster, context, body, version).await,
            ResponseKind::CreateTopics,
        )),
        RequestKind::AlterPartitionReassignments(body) => Some(Reply::of(
            alter_partition_reassignments::handle(broker, cluster, context, body, version).await,
            ResponseKind::AlterPartitionReassignments,
        )),
        RequestKind::OffsetForLeaderEpoch(body) => Some(Reply::of(
            offset_for_leader_epoch::handle(broker, context, body),
            ResponseKind::OffsetForLeaderEpoch,
        )),
        RequestKind::DescribeLogDirs(body) => Some(Reply::of(
            describe_log_dirs::handle(broker, context, body),
            ResponseKind::DescribeLogDirs,
        )),
        RequestKind::SaslHandshake(body) => Some(Reply::of(
            sasl_handshake::handle(broker, context, body),
            ResponseKind::SaslHandshake,
        )),
        RequestKind::SaslAuthenticate(body) => Some(Reply::of(
            sasl_authenticate::handle(broker, cluster, context, body).await,
            ResponseKind::SaslAuthenticate,
        )),
        RequestKind::CreateAcls(body) => Some(Reply::of(
            create_acls::handle(cluster, context, body).await,
            ResponseKind::CreateAcls,
        )),
        RequestKind::DescribeAcls(body) => Some(Reply::of(
            describe_acls::handle(context, body),
            ResponseKind::DescribeAcls,
        )),
        RequestKind::DeleteAcls(body) => Some(Reply::of(
            delete_acls::handle(cluster, context, body).await,
            ResponseKind::DeleteAcls,
        )),
        RequestKind::ListPartitionReassignments(body) => Some(Reply::of(
            list_partition_reassignments::handle(cluster, context, body),
            ResponseKind::ListPartitionReassignments,
        )),
        RequestKind::DescribeUserScramCredentials(body) => Some(Reply::of(
            describe_user_scram_credentials::handle(cluster, context, body).await,
            ResponseKind::DescribeUserScramCredentials,
        )),
        RequestKind::AlterUserScramCredentials(body) => Some(Reply::of(
            alter_user_scram_credentials::handle(cluster, context, body).await,
            ResponseKind::AlterUserScramCredentials,
        )),
        RequestKind::AddPartitionsToTxn(body) => Some(Reply::of(
            add_partitions_to_txn::handle(broker, cluster, context, body, version).await,
            ResponseKind::AddPartitionsToTxn,
        )),
        RequestKind::AddOffsetsToTxn(body) => Some(Reply::of(
            add_offsets_to_txn::handle(broker, cluster, context, body, version).await,
            ResponseKind::AddOffsetsToTxn,
        )),
        RequestKind::EndTxn(body) => Some(Reply::of(
            end_txn::handle(broker, cluster, context, body, version).await,
            ResponseKind::EndTxn,
        )),
        RequestKind::TxnOffsetCommit(body) => Some(Reply::of(
            txn_offset_commit::handle(broker, context, body).await,
            ResponseKind::TxnOffsetCommit,
        )),
        RequestKind::DescribeTransactions(body) => Some(Reply::of(
            describe_transactions::handle(broker, context, body),
            ResponseKind::DescribeTransactions,
        )),
        RequestKind::ListTransactions(body) => Some(Reply::of(
            list_transactions::handle(broker, context, body),
            ResponseKind::ListTransactions,
        )),
        other => {
            // The wire crate only decodes what SUPPORTED_APIS lists; a new entry there without
            // a handler here is a bug, answered by closing the connection.
            tracing::error!(api = ?request.api_key, "no handler for a supported API");
            let _ = other;
            context.session.close_after_answer();
            None
        }
    }
}

/// The Kafka error code for a storage failure.
pub(crate) fn storage_error_code(error: &StorageError) -> i16 {
    let code = match error {
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::InvalidBatch {
            reason: BatchError::CrcMismatch { .. },
            ..
        }
        | StorageError::InvalidBatch { .. }
        | StorageError::EmptyAppend => ResponseError::CorruptMessage,
        StorageError::RecordsCountMismatch { .. } => ResponseError::InvalidRecord,
        StorageError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::StaleLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
        StorageError::InvalidLeaderEpoch { .. } | StorageError::NonMonotonicOffset { .. } => {
            ResponseError::InvalidRequest
        }
        StorageError::InvalidConfig(_) => ResponseError::InvalidConfig,
        StorageError::Sequence { reason, .. } => match reason {
            SequenceError::FencedEpoch { .. } => ResponseError::InvalidProducerEpoch,
            SequenceError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
            SequenceError::UnknownProducer { .. } => ResponseError::UnknownProducerId,
            SequenceError::TransactionOngoing { .. } | SequenceError::StaleVerification { .. } => {
                ResponseError::InvalidTxnState
            }
            // Kafka's ProduceRequest validation: clients never write control records.
            SequenceError::ControlBatch => ResponseError::InvalidRecord,
        },
        StorageError::Marker { reason } => match reason {
            MarkerError::FencedEpoch { .. } => ResponseError::InvalidProducerEpoch,
            MarkerError::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
        },
        StorageError::Io { .. }
        | StorageError::Poisoned { .. }
        | StorageError::CorruptCheckpoint { .. } => ResponseError::KafkaStorageError,
        // Only the cleaner's threads meet it; no request does.
        StorageError::Cleaning { .. } => ResponseError::UnknownServerError,
    };
    code.code()
}

/// The Kafka error code for a replicated partition's refusal.
pub(crate) fn replica_error_code(error: &ReplicaError) -> i16 {
    match error {
        ReplicaError::NotLeader => ResponseError::NotLeaderOrFollower.code(),
        ReplicaError::FencedLeaderEpoch(_) => ResponseError::FencedLeaderEpoch.code(),
        ReplicaError::UnknownLeaderEpoch(_) => ResponseError::UnknownLeaderEpoch.code(),
        ReplicaError::NotEnoughReplicas => ResponseError::NotEnoughReplicas.code(),
        ReplicaError::Storage(error) => storage_error_code(error),
    }
}

/// The Kafka error code for a cluster metadata change that failed.
pub(crate) fn store_error_code(error: &StoreError) -> i16 {
    let code = match error {
        StoreError::Metadata(error) => match error {
            MetadataError::ReplicationFactorTooLarge { .. }
            | MetadataError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            MetadataError::TopicExists(_) => ResponseError::TopicAlreadyExists,
            MetadataError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            MetadataError::CannotShrink { .. } => ResponseError::InvalidPartitions,
            MetadataError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            MetadataError::NoReassignmentInProgress { .. } => {
                ResponseError::NoReassignmentInProgress
            }
            MetadataError::StaleLeader { .. }
            | MetadataError::InvalidIsr
            | MetadataError::IneligibleReplica(_) => ResponseError::InvalidRequest,
        },
        // The coordinator is away or busy: retriable, as Kafka's controller timing out.
        StoreError::Coordinator(_) | StoreError::Contended | StoreError::Corrupt(_) => {
            ResponseError::RequestTimedOut
        }
        StoreError::Local(error) => return topic_error_code(error),
    };
    code.code()
}

/// The Kafka error code for a topic operation failure.
/// Each topic's outcome of one metadata write for `count` topics (CreateTopics,
/// DeleteTopics): its own refusal, or the write's failure for every one of them, as (code,
/// message).
pub(crate) fn topic_outcomes(
    written: Result<Vec<Result<(), MetadataError>>, StoreError>,
    count: usize,
) -> std::vec::IntoIter<Result<(), (i16, String)>> {
    match written {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|outcome| {
                outcome.map_err(|error| {
                    let error = StoreError::from(error);
                    (store_error_code(&error), error.to_string())
                })
            })
            .collect::<Vec<_>>()
            .into_iter(),
        Err(error) => {
            let refused = (store_error_code(&error), error.to_string());
            vec![Err(refused); count].into_iter()
        }
    }
}

pub(crate) fn topic_error_code(error: &TopicError) -> i16 {
    let code = match error {
        TopicError::InvalidName { .. } => ResponseError::InvalidTopicException,
        TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::InvalidPartitionCount { .. } => ResponseError::InvalidPartitions,
        TopicError::Storage(error) => return storage_error_code(error),
        TopicError::Metadata { .. } => ResponseError::KafkaStorageError,
    };
    code.code()
}

/// A client's change to an internal topic (`topics::is_internal_topic`), refused with
/// INVALID_REQUEST: what Kafka's controller answers a CreateTopics of its internal
/// `__cluster_metadata`. Kafka has no code meant for this (TOPIC_AUTHORIZATION_FAILED would
/// send an operator looking for a missing ACL, and no ACL grants it here).
pub(crate) fn refuse_internal_topic(name: &str, operation: &str) -> Result<(), (i16, String)> {
    if crate::topics::is_internal_topic(name) {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!(
                "{operation} of internal topic {name} is prohibited: its coordinator manages it"
            ),
        ));
    }
    Ok(())
}

/// Waits until a persisted offsets change is durable (it shows in OffsetFetch from then on).
pub(crate) async fn commit_outcome(
    broker: &Broker,
    outcome: Result<crate::coordinator_log::Durable, CommitError>,
) -> Result<(), CommitError> {
    broker
        .groups
        .wait_durable(outcome?, crate::group::OFFSETS_COMMIT_TIMEOUT)
        .await
}

/// One partition of an OffsetCommit or TxnOffsetCommit request.
pub(crate) trait CommitRequestPartition {
    fn commit(&self, topic: &str) -> crate::group::OffsetCommit;
}

impl CommitRequestPartition
    for lmq_wire::protocol::messages::offset_commit_request::OffsetCommitRequestPartition
{
    fn commit(&self, topic: &str) -> crate::group::OffsetCommit {
        crate::group::OffsetCommit {
            topic: topic.to_string(),
            partition: self.partition_index,
            offset: self.committed_offset,
            leader_epoch: self.committed_leader_epoch,
            metadata: self.committed_metadata.as_ref().map(ToString::to_string),
        }
    }
}

impl CommitRequestPartition
    for lmq_wire::protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestPartition
{
    fn commit(&self, topic: &str) -> crate::group::OffsetCommit {
        crate::group::OffsetCommit {
            topic: topic.to_string(),
            partition: self.partition_index,
            offset: self.committed_offset,
            leader_epoch: self.committed_leader_epoch,
            metadata: self.committed_metadata.as_ref().map(ToString::to_string),
        }
    }
}

/// The commits of a commit request's `topics` (name, partitions) and, per requested
/// partition in request order, its refusal: TOPIC_AUTHORIZATION_FAILED without READ on its
/// topic (as Kafka), UNKNOWN_TOPIC_OR_PARTITION when it does not exist; `None` commits with
/// the rest.
pub(crate) fn requested_commits<'a, P: CommitRequestPartition + 'a>(
    broker: &Broker,
    context: &RequestContext,
    topics: impl Iterator<Item = (&'a str, &'a [P])>,
) -> (Vec<crate::group::OffsetCommit>, Vec<Option<i16>>) {
    let mut commits = Vec::new();
    let mut refusals = Vec::new();
    for (topic, partitions) in topics {
        let refused = context.check_topic(AclOperation::Read, topic).err();
        let known = broker.topics.get(topic).filter(|_| refused.is_none());
        for partition in partitions {
            let commit = partition.commit(topic);
            let exists = known.as_ref().is_some_and(|known| {
                usize::try_from(commit.partition).is_ok_and(|index| index < known.partitions.len())
            });
            if exists {
                commits.push(commit);
                refusals.push(None);
            } else {
                refusals.push(Some(refused.unwrap_or(UNKNOWN_TOPIC_OR_PARTITION)));
            }
        }
    }
    (commits, refusals)
}

/// The Kafka error code for a group change that failed.
pub(crate) fn commit_error_code(error: &CommitError) -> i16 {
    match error {
        CommitError::Group(error) => group_error_code(*error),
        CommitError::MetadataTooLarge(_) => ResponseError::OffsetMetadataTooLarge.code(),
        CommitError::NotCoordinator => ResponseError::NotCoordinator.code(),
        // A disk problem: the client retries (elsewhere, once the partition moves).
        CommitError::Storage(error) => match storage_error_code(error) {
            code if code == ResponseError::KafkaStorageError.code() => {
                ResponseError::CoordinatorNotAvailable.code()
            }
            code => code,
        },
    }
}

/// NOT_COORDINATOR when another broker coordinates the group (its offsets partition is led
/// elsewhere).
pub(crate) fn check_coordinator(broker: &Broker, group_id: &str) -> Result<(), i16> {
    broker
        .groups
        .check_owner(group_id)
        .map_err(group_error_code)
}

/// The Kafka error code for a group coordinator refusal.
pub(crate) fn group_error_code(error: GroupError) -> i16 {
    let code = match error {
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::LimitExceeded => ResponseError::PolicyViolation,
        // Kafka answers an oversized group metadata record so (its append fails with
        // RECORD_LIST_TOO_LARGE / MESSAGE_TOO_LARGE, mapped to UNKNOWN_SERVER_ERROR).
        GroupError::GroupMetadataTooLarge => ResponseError::UnknownServerError,
    };
    code.code()
}

/// A transaction coordinator refusal as Kafka's code. `fenced_code` is false for the
/// request versions that predate PRODUCER_FENCED (Kafka's `KafkaApis` answers
/// INVALID_PRODUCER_EPOCH to them).
pub(crate) fn txn_error_code(error: TxnError, fenced_code: bool) -> i16 {
    let code = match error {
        TxnError::InvalidRequest => ResponseError::InvalidRequest,
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        TxnError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        TxnError::CoordinatorNotAvailable | TxnError::ProducerIdsUnavailable => {
            ResponseError::CoordinatorNotAvailable
        }
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::ProducerFenced if fenced_code => ResponseError::ProducerFenced,
        TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
        TxnError::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
        TxnError::TransactionAbortable => ResponseError::TransactionAbortable,
        TxnError::LimitExceeded => ResponseError::PolicyViolation,
        TxnError::RecordTooLarge | TxnError::UnknownServerError => {
            ResponseError::UnknownServerError
        }
    };
    code.code()
}

pub(crate) const NONE: i16 = 0;
pub(crate) const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();

pub(crate) fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

pub(crate) fn topic_name(text: impl Into<String>) -> TopicName {
    TopicName(str_bytes(text))
}

/// One request topic's partitions as this broker has them: where every per-partition
/// handler starts (Produce, Fetch, DeleteRecords, ListOffsets, OffsetForLeaderEpoch).
pub(crate) struct TopicLookup {
    name: String,
    topic: Option<Arc<crate::topics::Topic>>,
}

impl TopicLookup {
    pub(crate) fn new(broker: &Broker, name: &str) -> Self {
        TopicLookup {
            name: name.to_string(),
            topic: broker.topics.get(name),
        }
    }

    /// Whether the topic stamps appended batches with the broker's time
    /// (`message.timestamp.type=LogAppendTime`).
    pub(crate) fn uses_log_append_time(&self) -> bool {
        self.topic
            .as_ref()
            .is_some_and(|topic| topic.settings.uses_log_append_time())
    }

    /// The topic's parsed configs, when it exists.
    pub(crate) fn settings(&self) -> Option<&crate::topic_config::TopicSettings> {
        self.topic.as_ref().map(|topic| &topic.settings)
    }

    /// The partition, or UNKNOWN_TOPIC_OR_PARTITION.
    pub(crate) fn partition(&self, index: i32) -> Result<&Arc<crate::partition::Partition>, i16> {
        self.topic
            .as_ref()
            .and_then(|topic| topic.partitions.get(usize::try_from(index).ok()?))
            .ok_or(UNKNOWN_TOPIC_OR_PARTITION)
    }

    /// The partition if this broker leads it in `current_leader_epoch` (-1: any), or the
    /// code Kafka answers: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER,
    /// FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH.
    pub(crate) fn leader(
        &self,
        index: i32,
        current_leader_epoch: i32,
    ) -> Result<&Arc<crate::partition::Partition>, i16> {
        let partition = self.partition(index)?;
        partition
            .check_leader(current_leader_epoch)
            .map_err(|error| replica_error_code(&error))?;
        Ok(partition)
    }

    /// The partition a client may write (append, delete records): never an internal topic
    /// (INVALID_TOPIC_EXCEPTION: only its coordinator writes it, as in Kafka), and only
    /// while this broker's leadership lease holds (NOT_LEADER_OR_FOLLOWER). Whether it
    /// leads the partition is checked by the write itself, under the partition's lock.
    pub(crate) fn writable(
        &self,
        cluster: &ClusterNode,
        index: i32,
    ) -> Result<&Arc<crate::partition::Partition>, i16> {
        if crate::topics::is_internal_topic(&self.name) {
            return Err(ResponseError::InvalidTopicException.code());
        }
        let partition = self.partition(index)?;
        if !cluster.may_lead() {
            return Err(ResponseError::NotLeaderOrFollower.code());
        }
        Ok(partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::{AuthorizerConfig, AuthorizerKind};

    fn context(kind: AuthorizerKind) -> RequestContext {
        RequestContext {
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)),
            listener: Arc::from("PLAINTEXT"),
            client_id: "test".to_string(),
            session: Arc::default(),
            authorizer: Arc::new(Authorizer::new(AuthorizerConfig {
                kind,
                ..AuthorizerConfig::default()
            })),
        }
    }

    #[test]
    fn without_an_authorizer_every_check_passes_with_every_operation() {
        let context = context(AuthorizerKind::None);
        assert!(context.check_topic(AclOperation::Write, "t").is_ok());
        assert!(context.check_cluster(AclOperation::Alter).is_ok());
        assert!(context.authorize_any(AclOperation::Write, ResourceType::Topic));
        assert_eq!(
            context.authorized_operations(ResourceType::Group, "g"),
            // READ, DESCRIBE, DELETE, and since KIP-848's group configs DESCRIBE_CONFIGS
            // and ALTER_CONFIGS (Kafka 4's AclEntry.supportedOperations).
            (1 << 3) | (1 << 8) | (1 << 6) | (1 << 10) | (1 << 11)
        );
    }

    #[test]
    fn a_proven_broker_is_a_super_user_and_anonymous_is_not() {
        let context = context(AuthorizerKind::Standard);
        assert_eq!(
            context.check_topic(AclOperation::Read, "t"),
            Err(TOPIC_AUTHORIZATION_FAILED)
        );
        assert_eq!(
            context.check_group(AclOperation::Read, "g"),
            Err(GROUP_AUTHORIZATION_FAILED)
        );
        assert_eq!(
            context.check_cluster(AclOperation::ClusterAction),
            Err(CLUSTER_AUTHORIZATION_FAILED)
        );
        assert_eq!(context.authorized_operations(ResourceType::Topic, "t"), 0);
        // The session proves a broker (LMQ's inter-broker SASL mechanism).
        context.session.set_sasl_state(SaslState::Broker(1));
        context
            .session
            .set_principal(crate::security::Principal::broker(1));
        assert!(context.check_topic(AclOperation::Read, "t").is_ok());
        assert!(context.check_cluster(AclOperation::ClusterAction).is_ok());
        assert!(context.authorize_any(AclOperation::Write, ResourceType::Topic));
    }

    /// ACL hosts are compared with the address as Kafka (Java) prints it.
    #[test]
    fn hosts_are_named_as_kafka_names_them() {
        let mut context = context(AuthorizerKind::Standard);
        let allow_from = |host: &str| crate::security::acl::AclBinding {
            pattern: crate::security::acl::ResourcePattern {
                resource_type: ResourceType::Topic,
                name: "t".to_string(),
                pattern_type: crate::security::acl::PatternType::Literal,
            },
            entry: crate::security::acl::AccessControlEntry {
                principal: "User:ANONYMOUS".to_string(),
                host: host.to_string(),
                operation: AclOperation::Read,
                permission: crate::security::acl::AclPermissionType::Allow,
            },
        };
        context.authorizer.set_acls(
            1,
            vec![allow_from("0:0:0:0:0:0:0:1"), allow_from("10.1.2.3")],
        );
        context.peer = "[::1]:9092".parse().unwrap();
        assert!(context.check_topic(AclOperation::Read, "t").is_ok());
        // An IPv4 client seen through a dual-stack socket.
        context.peer = "[::ffff:10.1.2.3]:9092".parse().unwrap();
        assert!(context.check_topic(AclOperation::Read, "t").is_ok());
        context.peer = "[::2]:9092".parse().unwrap();
        assert!(context.check_topic(AclOperation::Read, "t").is_err());
    }

    #[test]
    fn config_resources_are_checked_on_their_own_resource() {
        let context = context(AuthorizerKind::Standard);
        let refused = |resource_type| {
            context
                .config_refusal(AclOperation::AlterConfigs, resource_type, "x")
                .map(|(code, _)| code)
        };
        assert_eq!(refused(2), Some(TOPIC_AUTHORIZATION_FAILED));
        assert_eq!(refused(4), Some(CLUSTER_AUTHORIZATION_FAILED));
        assert_eq!(refused(32), Some(GROUP_AUTHORIZATION_FAILED));
    }
}
