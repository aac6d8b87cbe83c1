//! ACLs end to end (issue 21): CreateAcls / DescribeAcls / DeleteAcls against a broker with
//! the standard authorizer, and the checks the APIs make. Every connection is
//! `User:ANONYMOUS` until TLS/SASL exist, so the tests tell an administrator from a consumer
//! by host: the administrator connects from 127.0.0.1, the consumer from 127.0.0.2.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::requests::{create_topic_request, fetch, metadata_request, produce, temp, version};
use common::{TestBroker, TestClient, batch, now_ms};
use lmq_broker::security::acl::AuthorizerKind;
use lmq_wire::protocol::messages::create_acls_request::AclCreation;
use lmq_wire::protocol::messages::delete_acls_request::DeleteAclsFilter;
use lmq_wire::protocol::messages::{
    ApiKey, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, DescribeAclsResponse,
    MetadataRequest, MetadataResponse, RequestKind, ResponseKind,
};
use lmq_wire::protocol::protocol::StrBytes;
use tokio::net::{TcpSocket, TcpStream};

const TOPIC: i8 = 2;
const CLUSTER: i8 = 4;
const ANY: i8 = 1;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ALL: i8 = 2;
const READ: i8 = 3;
const DESCRIBE: i8 = 8;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const SECURITY_DISABLED: i16 = 54;
const INVALID_REQUEST: i16 = 42;

const ADMIN_HOST: [u8; 4] = [127, 0, 0, 1];
const CONSUMER_HOST: [u8; 4] = [127, 0, 0, 2];

async fn connect_from(from: [u8; 4], broker: SocketAddr) -> TestClient {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("binding a 127.0.0.0/8 address");
    let stream: TcpStream = socket.connect(broker).await.unwrap();
    TestClient::new(stream)
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

struct Acl<'a> {
    resource_type: i8,
    name: &'a str,
    pattern: i8,
    principal: &'a str,
    host: &'a str,
    operation: i8,
    permission: i8,
}

async fn create_acls(client: &mut TestClient, acls: &[Acl<'_>]) -> Vec<i16> {
    let mut request = CreateAclsRequest::default();
    request.creations = acls
        .iter()
        .map(|acl| {
            let mut creation = AclCreation::default();
            creation.resource_type = acl.resource_type;
            creation.resource_name = text(acl.name);
            creation.resource_pattern_type = acl.pattern;
            creation.principal = text(acl.principal);
            creation.host = text(acl.host);
            creation.operation = acl.operation;
            creation.permission_type = acl.permission;
            creation
        })
        .collect();
    let (_, max) = version(ApiKey::CreateAcls);
    match client
        .call(ApiKey::CreateAcls, max, RequestKind::CreateAcls(request))
        .await
    {
        ResponseKind::CreateAcls(response) => response
            .results
            .iter()
            .map(|result| result.error_code)
            .collect(),
        other => panic!("{other:?}"),
    }
}

async fn describe_acls(
    client: &mut TestClient,
    resource_type: i8,
    name: Option<&str>,
    pattern: i8,
) -> DescribeAclsResponse {
    let mut request = DescribeAclsRequest::default();
    request.resource_type_filter = resource_type;
    request.resource_name_filter = name.map(text);
    request.pattern_type_filter = pattern;
    request.principal_filter = None;
    request.host_filter = None;
    request.operation = ANY;
    request.permission_type = ANY;
    let (_, max) = version(ApiKey::DescribeAcls);
    match client
        .call(
            ApiKey::DescribeAcls,
            max,
            RequestKind::DescribeAcls(request),
        )
        .await
    {
        ResponseKind::DescribeAcls(response) => response,
        other => panic!("{other:?}"),
    }
}

/// `(error code, ACLs removed)` per filter.
async fn delete_acls(client: &mut TestClient, filters: Vec<DeleteAclsFilter>) -> Vec<(i16, usize)> {
    let mut request = DeleteAclsRequest::default();
    request.filters = filters;
    let (_, max) = version(ApiKey::DeleteAcls);
    match client
        .call(ApiKey::DeleteAcls, max, RequestKind::DeleteAcls(request))
        .await
    {
        ResponseKind::DeleteAcls(response) => response
            .filter_results
            .iter()
            .map(|result| (result.error_code, result.matching_acls.len()))
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn delete_filter(
    resource_type: i8,
    name: Option<&str>,
    pattern: i8,
    permission: i8,
) -> DeleteAclsFilter {
    let mut filter = DeleteAclsFilter::default();
    filter.resource_type_filter = resource_type;
    filter.resource_name_filter = name.map(text);
    filter.pattern_type_filter = pattern;
    filter.principal_filter = None;
    filter.host_filter = None;
    filter.operation = ANY;
    filter.permission_type = permission;
    filter
}

async fn metadata(client: &mut TestClient, topics: Option<&[&str]>) -> MetadataResponse {
    let body = match topics {
        Some(topics) => metadata_request(topics),
        None => {
            let mut request = MetadataRequest::default();
            request.topics = None;
            RequestKind::Metadata(request)
        }
    };
    let RequestKind::Metadata(mut request) = body else {
        unreachable!()
    };
    request.allow_auto_topic_creation = false;
    request.include_topic_authorized_operations = true;
    match client
        .call(ApiKey::Metadata, 12, RequestKind::Metadata(request))
        .await
    {
        ResponseKind::Metadata(response) => response,
        other => panic!("{other:?}"),
    }
}

async fn fetch_error(client: &mut TestClient, topic: &str) -> i16 {
    fetch(client, 12, topic, 0, 0).await.responses[0].partitions[0].error_code
}

/// A broker with the standard authorizer over `dir`: ANONYMOUS from 127.0.0.1 is the
/// administrator through an ACL made while it was a super user (and kept in the
/// coordinator across the restart).
async fn secured_broker(dir: &std::path::Path) -> TestBroker {
    let setup = TestBroker::start_in(dir, |config| {
        config.authorizer = AuthorizerKind::Standard;
        config.super_users = vec!["User:ANONYMOUS".to_string()];
    })
    .await;
    let mut admin = setup.client().await;
    let created = create_acls(
        &mut admin,
        &[
            Acl {
                resource_type: CLUSTER,
                name: "kafka-cluster",
                pattern: LITERAL,
                principal: "User:ANONYMOUS",
                host: "127.0.0.1",
                operation: ALL,
                permission: ALLOW,
            },
            Acl {
                resource_type: TOPIC,
                name: "*",
                pattern: LITERAL,
                principal: "User:ANONYMOUS",
                host: "127.0.0.1",
                operation: ALL,
                permission: ALLOW,
            },
        ],
    )
    .await;
    assert_eq!(created, vec![0, 0]);
    let ResponseKind::CreateTopics(created) = admin
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("orders", 1, 1, &[]),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    let (code, _) = produce(&mut admin, "orders", 0, batch(&["one"], now_ms())).await;
    assert_eq!(code, 0);
    setup.stop().await;
    TestBroker::start_in(dir, |config| {
        config.authorizer = AuthorizerKind::Standard;
    })
    .await
}

#[tokio::test]
async fn acl_apis_answer_security_disabled_without_an_authorizer() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    let created = create_acls(
        &mut client,
        &[Acl {
            resource_type: TOPIC,
            name: "orders",
            pattern: LITERAL,
            principal: "User:alice",
            host: "*",
            operation: READ,
            permission: ALLOW,
        }],
    )
    .await;
    assert_eq!(created, vec![SECURITY_DISABLED]);
    let described = describe_acls(&mut client, ANY, None, ANY).await;
    assert_eq!(described.error_code, SECURITY_DISABLED);
    broker.stop().await;
}

#[tokio::test]
async fn acls_are_created_described_and_deleted_with_kafkas_filters() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |config| {
        config.authorizer = AuthorizerKind::Standard;
        config.super_users = vec!["User:ANONYMOUS".to_string()];
    })
    .await;
    let mut admin = broker.client().await;
    let alice_reads = |name, pattern| Acl {
        resource_type: TOPIC,
        name,
        pattern,
        principal: "User:alice",
        host: "*",
        operation: READ,
        permission: ALLOW,
    };
    let created = create_acls(
        &mut admin,
        &[
            alice_reads("orders", LITERAL),
            alice_reads("ord", PREFIXED),
            alice_reads("payments", LITERAL),
            // Invalid: a filter-only pattern type, a principal without a type.
            alice_reads("orders", MATCH),
            Acl {
                principal: "alice",
                ..alice_reads("orders", LITERAL)
            },
        ],
    )
    .await;
    assert_eq!(created, vec![0, 0, 0, INVALID_REQUEST, INVALID_REQUEST]);
    // An existing binding again is a success, not a duplicate.
    assert_eq!(
        create_acls(&mut admin, &[alice_reads("orders", LITERAL)]).await,
        vec![0]
    );

    let all = describe_acls(&mut admin, ANY, None, ANY).await;
    assert_eq!(all.error_code, 0);
    assert_eq!(all.resources.len(), 3, "{all:?}");
    let literal = describe_acls(&mut admin, TOPIC, Some("orders"), LITERAL).await;
    assert_eq!(literal.resources.len(), 1);
    // MATCH: every pattern that applies to the topic "orders".
    let matching = describe_acls(&mut admin, TOPIC, Some("orders"), MATCH).await;
    let mut names: Vec<String> = matching
        .resources
        .iter()
        .map(|resource| resource.resource_name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["ord", "orders"]);

    // DeleteAcls with MATCH removes what applies to "orders"; an UNKNOWN filter is refused.
    let deleted = delete_acls(
        &mut admin,
        vec![
            delete_filter(TOPIC, Some("orders"), MATCH, ANY),
            delete_filter(TOPIC, None, 0, ANY),
        ],
    )
    .await;
    assert_eq!(deleted, vec![(0, 2), (INVALID_REQUEST, 0)]);
    let left = describe_acls(&mut admin, ANY, None, ANY).await;
    assert_eq!(left.resources.len(), 1);
    assert_eq!(left.resources[0].resource_name.as_str(), "payments");
    let deleted = delete_acls(&mut admin, vec![delete_filter(ANY, None, ANY, ANY)]).await;
    assert_eq!(deleted, vec![(0, 1)]);
    broker.stop().await;
}

#[tokio::test]
async fn a_consumer_without_acls_is_refused_until_allowed_and_deny_wins() {
    let dir = temp();
    let broker = secured_broker(dir.path()).await;
    let mut admin = connect_from(ADMIN_HOST, broker.addr).await;
    let mut consumer = connect_from(CONSUMER_HOST, broker.addr).await;

    // No ACL for the consumer: Fetch refused, the topic hidden from Metadata (not listed
    // among all topics, TOPIC_AUTHORIZATION_FAILED when named), no ACL administration.
    assert_eq!(
        fetch_error(&mut consumer, "orders").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    let listed = metadata(&mut consumer, None).await;
    assert!(listed.topics.is_empty(), "{listed:?}");
    let named = metadata(&mut consumer, Some(&["orders"])).await;
    assert_eq!(named.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    assert!(named.topics[0].partitions.is_empty());
    let refused = describe_acls(&mut consumer, ANY, None, ANY).await;
    assert_eq!(refused.error_code, CLUSTER_AUTHORIZATION_FAILED);
    let read_for_consumer = Acl {
        resource_type: TOPIC,
        name: "ord",
        pattern: PREFIXED,
        principal: "User:ANONYMOUS",
        host: "127.0.0.2",
        operation: READ,
        permission: ALLOW,
    };
    assert_eq!(
        create_acls(&mut consumer, &[read_for_consumer]).await,
        vec![CLUSTER_AUTHORIZATION_FAILED]
    );
    // The administrator sees and reads everything (its ACLs survived the restart).
    assert_eq!(fetch_error(&mut admin, "orders").await, 0);

    // A prefixed ALLOW READ (which implies DESCRIBE) for the consumer's host: applied at
    // once, without a restart.
    let read_for_consumer = Acl {
        resource_type: TOPIC,
        name: "ord",
        pattern: PREFIXED,
        principal: "User:ANONYMOUS",
        host: "127.0.0.2",
        operation: READ,
        permission: ALLOW,
    };
    assert_eq!(create_acls(&mut admin, &[read_for_consumer]).await, vec![0]);
    let fetched = fetch(&mut consumer, 12, "orders", 0, 0).await;
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert!(
        partition
            .records
            .as_ref()
            .is_some_and(|records| !records.is_empty())
    );
    let listed = metadata(&mut consumer, None).await;
    assert_eq!(listed.topics.len(), 1);
    assert_eq!(listed.topics[0].error_code, 0);
    // READ and the DESCRIBE it implies, as bits of the operation codes.
    assert_eq!(
        listed.topics[0].topic_authorized_operations,
        (1 << READ) | (1 << DESCRIBE)
    );
    // Reading is not writing.
    let (code, _) = produce(&mut consumer, "orders", 0, batch(&["two"], now_ms())).await;
    assert_eq!(code, TOPIC_AUTHORIZATION_FAILED);

    // A DENY for everyone on the topic beats the ALLOW.
    let deny_all = Acl {
        resource_type: TOPIC,
        name: "orders",
        pattern: LITERAL,
        principal: "User:*",
        host: "127.0.0.2",
        operation: READ,
        permission: DENY,
    };
    assert_eq!(create_acls(&mut admin, &[deny_all]).await, vec![0]);
    assert_eq!(
        fetch_error(&mut consumer, "orders").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    // DESCRIBE stays allowed: a DENY of READ does not deny what READ implies.
    let named = metadata(&mut consumer, Some(&["orders"])).await;
    assert_eq!(named.topics[0].error_code, 0);
    // Removing the DENY restores reading.
    let deleted = delete_acls(
        &mut admin,
        vec![delete_filter(TOPIC, Some("orders"), LITERAL, DENY)],
    )
    .await;
    assert_eq!(deleted, vec![(0, 1)]);
    assert_eq!(fetch_error(&mut consumer, "orders").await, 0);
    broker.stop().await;
}

#[tokio::test]
async fn allow_everyone_if_no_acl_found_opens_only_resources_without_acls() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |config| {
        config.authorizer = AuthorizerKind::Standard;
        config.allow_everyone_if_no_acl_found = true;
    })
    .await;
    let mut client = broker.client().await;
    let ResponseKind::CreateTopics(created) = client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("open", 1, 1, &[]),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(fetch_error(&mut client, "open").await, 0);
    // An ACL on the topic for someone else closes it to ANONYMOUS.
    let for_bob = Acl {
        resource_type: TOPIC,
        name: "open",
        pattern: LITERAL,
        principal: "User:bob",
        host: "*",
        operation: READ,
        permission: ALLOW,
    };
    assert_eq!(create_acls(&mut client, &[for_bob]).await, vec![0]);
    assert_eq!(
        fetch_error(&mut client, "open").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    broker.stop().await;
}

/// Two brokers on one coordinator: ANONYMOUS is a super user on broker 0 only. An ACL made
/// through broker 0 applies on broker 1 without a restart (the coordinator watch), and the
/// followers' replica fetches (proven brokers) need no ACL: acks=all produces complete.
#[tokio::test]
async fn an_acl_made_on_one_broker_applies_on_the_other() {
    let cluster = common::cluster::TestCluster::start_with(2, |node_id, mut config| {
        config.authorizer = AuthorizerKind::Standard;
        if node_id == 0 {
            config.super_users = vec!["User:ANONYMOUS".to_string()];
        }
        config
    })
    .await;
    cluster.wait_for_brokers().await;
    let mut admin = cluster.brokers[0].client().await;
    let mut other = cluster.brokers[1].client().await;
    let ResponseKind::CreateTopics(created) = admin
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("t", 1, 2, &[]),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    assert_eq!(
        fetch_error(&mut other, "t").await,
        TOPIC_AUTHORIZATION_FAILED
    );

    let for_anonymous = |operation| Acl {
        resource_type: TOPIC,
        name: "t",
        pattern: LITERAL,
        principal: "User:ANONYMOUS",
        host: "*",
        operation,
        permission: ALLOW,
    };
    const WRITE: i8 = 4;
    assert_eq!(
        create_acls(&mut admin, &[for_anonymous(WRITE)]).await,
        vec![0]
    );
    // acks=all on the leader, whichever broker it is: the follower's fetches replicate it.
    let (leader, _) = cluster.leader_and_follower("t", 0).await;
    let mut to_leader = cluster.brokers[leader].client().await;
    let mut produced = None;
    for _ in 0..100 {
        let (code, offset) = produce(&mut to_leader, "t", 0, batch(&["a"], now_ms())).await;
        if code == 0 {
            produced = Some(offset);
            break;
        }
        assert_eq!(
            code, TOPIC_AUTHORIZATION_FAILED,
            "only until the ACL arrives"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(produced, Some(0), "acks=all produce with WRITE");
    // WRITE does not give READ on broker 1; READ, once made on broker 0, does.
    assert_eq!(
        fetch_error(&mut other, "t").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(
        create_acls(&mut admin, &[for_anonymous(READ)]).await,
        vec![0]
    );
    let mut code = TOPIC_AUTHORIZATION_FAILED;
    for _ in 0..100 {
        code = fetch_error(&mut other, "t").await;
        if code != TOPIC_AUTHORIZATION_FAILED {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Broker 1 answers as the leader (0) or as a follower (NOT_LEADER_OR_FOLLOWER): no
    // longer a refusal.
    assert!(code == 0 || code == 6, "{code}");
    drop((admin, other, to_leader));
    cluster.stop().await;
}

/// The cluster holds at most 2,000 ACLs (one coordinator value): a CreateAcls past it is
/// refused as a whole with POLICY_VIOLATION, and nothing of it is kept.
#[tokio::test]
async fn creating_more_acls_than_the_cluster_holds_is_refused_whole() {
    const POLICY_VIOLATION: i16 = 44;
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |config| {
        config.authorizer = AuthorizerKind::Standard;
        config.super_users = vec!["User:ANONYMOUS".to_string()];
    })
    .await;
    let mut admin = broker.client().await;
    let names: Vec<String> = (0..2_001).map(|n| format!("topic-{n}")).collect();
    let acls: Vec<Acl<'_>> = names
        .iter()
        .map(|name| Acl {
            resource_type: TOPIC,
            name,
            pattern: LITERAL,
            principal: "User:alice",
            host: "*",
            operation: READ,
            permission: ALLOW,
        })
        .collect();
    let created = create_acls(&mut admin, &acls).await;
    assert!(
        created.iter().all(|&code| code == POLICY_VIOLATION),
        "{:?}",
        &created[..3]
    );
    assert!(
        describe_acls(&mut admin, ANY, None, ANY)
            .await
            .resources
            .is_empty()
    );
    assert!(
        create_acls(&mut admin, &acls[..2_000])
            .await
            .iter()
            .all(|&code| code == 0)
    );
    broker.stop().await;
}

/// Authorized operations as Kafka fills them: DescribeCluster's only with DESCRIBE on the
/// cluster (else 0), DescribeGroups' for a group it may describe, every bit an operation code.
#[tokio::test]
async fn authorized_operations_in_describe_cluster_and_describe_groups() {
    use lmq_wire::protocol::messages::{DescribeClusterRequest, DescribeGroupsRequest, GroupId};
    const GROUP: i8 = 3;
    const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    let dir = temp();
    let broker = secured_broker(dir.path()).await;
    let mut admin = connect_from(ADMIN_HOST, broker.addr).await;
    let mut consumer = connect_from(CONSUMER_HOST, broker.addr).await;
    let cluster_operations = |response: ResponseKind| match response {
        ResponseKind::DescribeCluster(described) => {
            assert_eq!(described.error_code, 0);
            described.cluster_authorized_operations
        }
        other => panic!("{other:?}"),
    };
    let mut request = DescribeClusterRequest::default();
    request.include_cluster_authorized_operations = true;
    let body = || RequestKind::DescribeCluster(request.clone());
    // ALL on the cluster: CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
    // IDEMPOTENT_WRITE, ALTER, DESCRIBE.
    let all = [5, 9, 10, 11, 12, 7, 8]
        .iter()
        .fold(0, |bits, code| bits | (1 << code));
    assert_eq!(
        cluster_operations(admin.call(ApiKey::DescribeCluster, 1, body()).await),
        all
    );
    assert_eq!(
        cluster_operations(consumer.call(ApiKey::DescribeCluster, 1, body()).await),
        0
    );

    // The consumer may READ group g: DescribeGroups answers its operations (READ and the
    // DESCRIBE it implies); group h it may not describe.
    let read_group = Acl {
        resource_type: GROUP,
        name: "g",
        pattern: LITERAL,
        principal: "User:ANONYMOUS",
        host: "127.0.0.2",
        operation: READ,
        permission: ALLOW,
    };
    assert_eq!(create_acls(&mut admin, &[read_group]).await, vec![0]);
    // As every client first: FindCoordinator (DESCRIBE on the group; it creates the
    // offsets topic).
    let mut find = lmq_wire::protocol::messages::FindCoordinatorRequest::default();
    find.coordinator_keys = vec![text("g")];
    let ResponseKind::FindCoordinator(found) = consumer
        .call(
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(find),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(found.coordinators[0].error_code, 0, "{found:?}");
    let mut request = DescribeGroupsRequest::default();
    request.groups = vec![GroupId(text("g")), GroupId(text("h"))];
    request.include_authorized_operations = true;
    let ResponseKind::DescribeGroups(described) = consumer
        .call(
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups(request),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(described.groups[0].error_code, 0, "{described:?}");
    assert_eq!(
        described.groups[0].authorized_operations,
        (1 << READ) | (1 << DESCRIBE)
    );
    assert_eq!(described.groups[1].error_code, GROUP_AUTHORIZATION_FAILED);
    broker.stop().await;
}

/// As Kafka: a FindCoordinator for a group the client may not describe is refused
/// (GROUP_AUTHORIZATION_FAILED) before anything is created: no offsets topic appears.
#[tokio::test]
async fn an_unauthorized_find_coordinator_creates_no_offsets_topic() {
    const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    let dir = temp();
    let broker = secured_broker(dir.path()).await;
    let mut admin = connect_from(ADMIN_HOST, broker.addr).await;
    let mut consumer = connect_from(CONSUMER_HOST, broker.addr).await;
    let mut find = lmq_wire::protocol::messages::FindCoordinatorRequest::default();
    find.coordinator_keys = vec![text("g")];
    let ResponseKind::FindCoordinator(found) = consumer
        .call(
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(find),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(found.coordinators[0].error_code, GROUP_AUTHORIZATION_FAILED);
    let listed = metadata(&mut admin, None).await;
    let names: Vec<String> = listed
        .topics
        .iter()
        .filter_map(|topic| topic.name.as_ref().map(|name| name.0.to_string()))
        .collect();
    assert_eq!(names, vec!["orders".to_string()]);
    broker.stop().await;
}
