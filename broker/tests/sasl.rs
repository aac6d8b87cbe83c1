//! SASL listeners: nothing but ApiVersions and the exchange before authentication, SCRAM
//! credentials managed with Alter/DescribeUserScramCredentials and checked by a SCRAM
//! exchange (RFC 5802, computed here as a client computes it), PLAIN against the users file,
//! and failures that close the connection.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use common::TestClient;
use common::requests::metadata_request;
use hmac::{Hmac, Mac};
use lmq_broker::BrokerConfig;
use lmq_broker::clock::SystemClock;
use lmq_broker::node::Node;
use lmq_broker::security::SaslMechanism;
use lmq_broker::security::scram::ScramMechanism;
use lmq_wire::protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use lmq_wire::protocol::messages::describe_user_scram_credentials_request::UserName;
use lmq_wire::protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, ApiVersionsRequest,
    DescribeUserScramCredentialsRequest, RequestKind, ResponseKind, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use lmq_wire::protocol::protocol::StrBytes;
use sha2::{Digest, Sha512};
use tokio::net::{TcpListener, TcpStream};

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

struct SaslBroker {
    node: Node,
    plain: std::net::SocketAddr,
    sasl: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

async fn start() -> SaslBroker {
    start_with(|_| {}).await
}

/// As [`start`], the config changed by `adjust` first.
async fn start_with(adjust: impl FnOnce(&mut BrokerConfig)) -> SaslBroker {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, "[users]\nbob = \"bob-secret\"\n").unwrap();
    let plain_socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sasl_socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain, sasl) = (
        plain_socket.local_addr().unwrap(),
        sasl_socket.local_addr().unwrap(),
    );
    let mut config = BrokerConfig {
        data_dir: dir.path().join("data"),
        listeners: vec![
            format!("PLAINTEXT://{plain}"),
            format!("SASL_PLAINTEXT://{sasl}"),
        ],
        admin_listen: None,
        ..BrokerConfig::default()
    };
    config.sasl.enabled_mechanisms = vec![
        SaslMechanism::ScramSha512,
        SaslMechanism::ScramSha256,
        SaslMechanism::Plain,
    ];
    config.sasl.plain_users_file = Some(users);
    adjust(&mut config);
    let node = Node::start(
        config,
        Arc::new(SystemClock),
        vec![plain_socket, sasl_socket],
        None,
    )
    .await
    .unwrap();
    SaslBroker {
        node,
        plain,
        sasl,
        _dir: dir,
    }
}

async fn client(address: std::net::SocketAddr) -> TestClient {
    TestClient::new(TcpStream::connect(address).await.unwrap())
}

async fn handshake(client: &mut TestClient, mechanism: &str) -> (i16, Vec<String>) {
    let mut request = SaslHandshakeRequest::default();
    request.mechanism = text(mechanism);
    let ResponseKind::SaslHandshake(response) = client
        .call(
            ApiKey::SaslHandshake,
            1,
            RequestKind::SaslHandshake(request),
        )
        .await
    else {
        panic!()
    };
    (
        response.error_code,
        response.mechanisms.iter().map(|m| m.to_string()).collect(),
    )
}

/// One SaslAuthenticate: (error code, server bytes).
async fn authenticate(client: &mut TestClient, bytes: &[u8]) -> (i16, Vec<u8>) {
    let (code, bytes, _) = authenticate_answer(client, bytes).await;
    (code, bytes)
}

/// One SaslAuthenticate: (error code, server bytes, error message).
async fn authenticate_answer(
    client: &mut TestClient,
    bytes: &[u8],
) -> (i16, Vec<u8>, Option<String>) {
    let mut request = SaslAuthenticateRequest::default();
    request.auth_bytes = Bytes::copy_from_slice(bytes);
    let ResponseKind::SaslAuthenticate(response) = client
        .call(
            ApiKey::SaslAuthenticate,
            2,
            RequestKind::SaslAuthenticate(request),
        )
        .await
    else {
        panic!()
    };
    (
        response.error_code,
        response.auth_bytes.to_vec(),
        response.error_message.map(|message| message.to_string()),
    )
}

fn hmac512(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A SCRAM-SHA-512 exchange as a client runs it: the error code of the last step.
async fn scram_login(client: &mut TestClient, user: &str, password: &str) -> i16 {
    scram_exchange(client, user, password).await.0
}

/// A SCRAM-SHA-512 exchange: the error code and message of the last step.
async fn scram_exchange(
    client: &mut TestClient,
    user: &str,
    password: &str,
) -> (i16, Option<String>) {
    let (code, _) = handshake(client, "SCRAM-SHA-512").await;
    assert_eq!(code, 0);
    let client_nonce = "fyko+d2lbbFgONRv9qkxdawL";
    let first_bare = format!("n={user},r={client_nonce}");
    let (code, server_first, message) =
        authenticate_answer(client, format!("n,,{first_bare}").as_bytes()).await;
    if code != 0 {
        return (code, message);
    }
    let server_first = String::from_utf8(server_first).unwrap();
    let mut nonce = "";
    let mut salt = Vec::new();
    let mut iterations = 0;
    for attribute in server_first.split(',') {
        if let Some(value) = attribute.strip_prefix("r=") {
            nonce = value;
        } else if let Some(value) = attribute.strip_prefix("s=") {
            salt = BASE64.decode(value).unwrap();
        } else if let Some(value) = attribute.strip_prefix("i=") {
            iterations = value.parse().unwrap();
        }
    }
    assert!(nonce.starts_with(client_nonce));
    let salted = ScramMechanism::Sha512.salted_password(password.as_bytes(), &salt, iterations);
    let client_key = hmac512(&salted, b"Client Key");
    let stored_key = Sha512::digest(&client_key).to_vec();
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let signature = hmac512(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let final_message = format!("{without_proof},p={}", BASE64.encode(proof));
    let (code, server_final, message) = authenticate_answer(client, final_message.as_bytes()).await;
    if code == 0 {
        // The server proves it knows the credential too.
        let server_key = hmac512(&salted, b"Server Key");
        let expected = format!(
            "v={}",
            BASE64.encode(hmac512(&server_key, auth_message.as_bytes()))
        );
        assert_eq!(String::from_utf8(server_final).unwrap(), expected);
    }
    (code, message)
}

/// AlterUserScramCredentials setting `user`'s SCRAM-SHA-512 password, as kafka-configs.sh
/// sends it (the client salts and hashes).
async fn set_password(client: &mut TestClient, user: &str, password: &str, iterations: i32) -> i16 {
    let salt = b"a-random-salt".to_vec();
    let salted = ScramMechanism::Sha512.salted_password(
        password.as_bytes(),
        &salt,
        u32::try_from(iterations).unwrap(),
    );
    let mut upsertion = ScramCredentialUpsertion::default();
    upsertion.name = text(user);
    upsertion.mechanism = 2;
    upsertion.iterations = iterations;
    upsertion.salt = salt.into();
    upsertion.salted_password = salted.into();
    let mut request = AlterUserScramCredentialsRequest::default();
    request.upsertions = vec![upsertion];
    alter(client, request).await
}

/// One AlterUserScramCredentials of one user: its result's error code.
async fn alter(client: &mut TestClient, request: AlterUserScramCredentialsRequest) -> i16 {
    let ResponseKind::AlterUserScramCredentials(response) = client
        .call(
            ApiKey::AlterUserScramCredentials,
            0,
            RequestKind::AlterUserScramCredentials(request),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(response.results.len(), 1);
    response.results[0].error_code
}

#[tokio::test]
async fn a_sasl_listener_serves_only_after_authentication() {
    let broker = start().await;
    // ApiVersions is allowed first (clients ask before the handshake).
    let mut early = client(broker.sasl).await;
    let ResponseKind::ApiVersions(versions) = early
        .call(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(versions.error_code, 0);
    // Anything else before authentication closes the connection.
    early
        .send(ApiKey::Metadata, 12, metadata_request(&[]))
        .await;
    assert!(
        early.read_frame().await.is_none(),
        "served before authentication"
    );
    // The PLAINTEXT listener beside it needs none.
    let mut open = client(broker.plain).await;
    let ResponseKind::Metadata(_) = open.call(ApiKey::Metadata, 12, metadata_request(&[])).await
    else {
        panic!()
    };
    // An unknown mechanism: the enabled ones are named.
    let mut unknown = client(broker.sasl).await;
    let (code, mechanisms) = handshake(&mut unknown, "GSSAPI").await;
    assert_eq!(code, 33, "UNSUPPORTED_SASL_MECHANISM");
    assert_eq!(mechanisms, ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]);
    broker.node.stop().await;
}

#[tokio::test]
async fn scram_credentials_set_through_the_api_authenticate_and_wrong_ones_close_the_connection() {
    let broker = start().await;
    let mut admin = client(broker.plain).await;
    assert_eq!(
        set_password(&mut admin, "alice", "alice-secret", 4096).await,
        0
    );
    assert_eq!(
        set_password(&mut admin, "alice", "x", 100).await,
        93,
        "UNACCEPTABLE_CREDENTIAL: too few iterations"
    );
    // Described: mechanism and iterations, never the keys.
    let mut describe = DescribeUserScramCredentialsRequest::default();
    let mut alice = UserName::default();
    alice.name = text("alice");
    let mut nobody = UserName::default();
    nobody.name = text("nobody");
    describe.users = Some(vec![alice, nobody]);
    let ResponseKind::DescribeUserScramCredentials(described) = admin
        .call(
            ApiKey::DescribeUserScramCredentials,
            0,
            RequestKind::DescribeUserScramCredentials(describe),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(described.results[0].error_code, 0);
    assert_eq!(described.results[0].credential_infos[0].mechanism, 2);
    assert_eq!(described.results[0].credential_infos[0].iterations, 4096);
    assert_eq!(described.results[1].error_code, 91, "RESOURCE_NOT_FOUND");

    let mut good = client(broker.sasl).await;
    assert_eq!(scram_login(&mut good, "alice", "alice-secret").await, 0);
    let ResponseKind::Metadata(metadata) =
        good.call(ApiKey::Metadata, 12, metadata_request(&[])).await
    else {
        panic!()
    };
    assert_eq!(metadata.brokers[0].port, i32::from(broker.sasl.port()));

    let mut wrong = client(broker.sasl).await;
    // Kafka's words, which say nothing of why (a user without credentials reads the same).
    let refusal = Some(
        "Authentication failed during authentication due to invalid credentials with SASL \
         mechanism SCRAM-SHA-512"
            .to_string(),
    );
    assert_eq!(
        scram_exchange(&mut wrong, "alice", "guess").await,
        (58, refusal.clone()),
        "SASL_AUTHENTICATION_FAILED"
    );
    assert!(
        wrong.is_closed().await,
        "a failed authentication leaves the connection open"
    );
    let mut stranger = client(broker.sasl).await;
    assert_eq!(
        scram_exchange(&mut stranger, "mallory", "x").await,
        (58, refusal)
    );

    // A deleted credential no longer authenticates.
    let mut deletion = ScramCredentialDeletion::default();
    deletion.name = text("alice");
    deletion.mechanism = 2;
    let mut request = AlterUserScramCredentialsRequest::default();
    request.deletions = vec![deletion.clone()];
    assert_eq!(alter(&mut admin, request).await, 0);
    // Deleting it again: RESOURCE_NOT_FOUND, as Kafka.
    let mut request = AlterUserScramCredentialsRequest::default();
    request.deletions = vec![deletion];
    assert_eq!(alter(&mut admin, request).await, 91);
    let mut again = client(broker.sasl).await;
    assert_eq!(scram_login(&mut again, "alice", "alice-secret").await, 58);
    broker.node.stop().await;
}

#[tokio::test]
async fn plain_checks_the_users_file() {
    let broker = start().await;
    let mut good = client(broker.sasl).await;
    assert_eq!(handshake(&mut good, "PLAIN").await.0, 0);
    assert_eq!(authenticate(&mut good, b"\0bob\0bob-secret").await.0, 0);
    let ResponseKind::Metadata(_) = good.call(ApiKey::Metadata, 12, metadata_request(&[])).await
    else {
        panic!()
    };
    let mut wrong = client(broker.sasl).await;
    assert_eq!(handshake(&mut wrong, "PLAIN").await.0, 0);
    assert_eq!(authenticate(&mut wrong, b"\0bob\0nope").await.0, 58);
    assert!(wrong.is_closed().await);
    broker.node.stop().await;
}

/// ACLs apply to the principal SASL proves (issue 21): bob, authenticated with PLAIN, is
/// `User:bob`; with the standard authorizer he may write the topic an ACL names him for, and
/// neither read it nor see other topics. ANONYMOUS on the PLAINTEXT listener is the super
/// user that grants it.
#[tokio::test]
async fn acls_apply_to_the_principal_sasl_proves() {
    use common::requests::{create_topic_request, fetch_request, produce_request};
    use lmq_wire::protocol::messages::CreateAclsRequest;
    use lmq_wire::protocol::messages::create_acls_request::AclCreation;
    const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    let broker = start_with(|config| {
        config.authorizer = lmq_broker::security::acl::AuthorizerKind::Standard;
        config.super_users = vec!["User:ANONYMOUS".to_string()];
    })
    .await;
    let mut admin = client(broker.plain).await;
    for topic in ["ledger", "secrets"] {
        let ResponseKind::CreateTopics(created) = admin
            .call(
                ApiKey::CreateTopics,
                7,
                create_topic_request(topic, 1, 1, &[]),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(created.topics[0].error_code, 0);
    }
    let mut bob = client(broker.sasl).await;
    assert_eq!(handshake(&mut bob, "PLAIN").await.0, 0);
    assert_eq!(authenticate(&mut bob, b"\0bob\0bob-secret").await.0, 0);
    let produce_code = |response: ResponseKind| match response {
        ResponseKind::Produce(produced) => produced.responses[0].partition_responses[0].error_code,
        other => panic!("{other:?}"),
    };
    let records = common::batch(&["entry"], 1_700_000_000_000);
    let refused = bob
        .call(
            ApiKey::Produce,
            9,
            produce_request("ledger", 0, records.clone(), -1),
        )
        .await;
    assert_eq!(produce_code(refused), TOPIC_AUTHORIZATION_FAILED);

    let mut creation = AclCreation::default();
    creation.resource_type = 2;
    creation.resource_name = text("ledger");
    creation.resource_pattern_type = 3;
    creation.principal = text("User:bob");
    creation.host = text("*");
    creation.operation = 4; // WRITE
    creation.permission_type = 3;
    let mut request = CreateAclsRequest::default();
    request.creations = vec![creation];
    let ResponseKind::CreateAcls(created) = admin
        .call(ApiKey::CreateAcls, 3, RequestKind::CreateAcls(request))
        .await
    else {
        panic!()
    };
    assert_eq!(created.results[0].error_code, 0);
    let written = bob
        .call(
            ApiKey::Produce,
            9,
            produce_request("ledger", 0, records, -1),
        )
        .await;
    assert_eq!(produce_code(written), 0);
    // WRITE gives DESCRIBE, not READ; the other topic stays out of sight.
    let ResponseKind::Fetch(fetched) = bob
        .call(ApiKey::Fetch, 12, fetch_request("ledger", 0, 0, 0, 0))
        .await
    else {
        panic!()
    };
    assert_eq!(
        fetched.responses[0].partitions[0].error_code,
        TOPIC_AUTHORIZATION_FAILED
    );
    let mut all_topics = lmq_wire::protocol::messages::MetadataRequest::default();
    all_topics.topics = None;
    let ResponseKind::Metadata(metadata) = bob
        .call(ApiKey::Metadata, 12, RequestKind::Metadata(all_topics))
        .await
    else {
        panic!()
    };
    let names: Vec<String> = metadata
        .topics
        .iter()
        .filter_map(|topic| topic.name.as_ref().map(|name| name.0.to_string()))
        .collect();
    assert_eq!(names, vec!["ledger".to_string()]);
    broker.node.stop().await;
}

/// The native client (and so every `lmq` verb) authenticates with SCRAM and PLAIN; a wrong
/// password is an authentication error, not a retry.
#[tokio::test]
async fn the_native_client_authenticates_with_scram_and_plain() {
    let broker = start().await;
    let mut admin = client(broker.plain).await;
    assert_eq!(
        set_password(&mut admin, "carol", "carol-secret", 4096).await,
        0
    );
    let config = |mechanism: &str, user: &str, password: &str| lmq::ClientConfig {
        brokers: vec![broker.sasl.to_string()],
        request_timeout: std::time::Duration::from_secs(5),
        security: lmq::Security {
            tls: None,
            sasl: Some(lmq::SaslSettings {
                mechanism: lmq::SaslMechanism::from_name(mechanism).unwrap(),
                username: user.to_string(),
                password: password.to_string(),
            }),
        },
        ..lmq::ClientConfig::default()
    };
    let admin = lmq::Admin::connect(config("SCRAM-SHA-512", "carol", "carol-secret"))
        .await
        .unwrap();
    admin
        .create_topic("secured", 1, -1, &std::collections::BTreeMap::new())
        .await
        .unwrap();
    let plain = lmq::Admin::connect(config("PLAIN", "bob", "bob-secret"))
        .await
        .unwrap();
    assert!(
        plain
            .list_topics(false)
            .await
            .unwrap()
            .iter()
            .any(|topic| topic.name == "secured")
    );
    let refused = lmq::Admin::connect(config("SCRAM-SHA-512", "carol", "wrong")).await;
    assert!(
        matches!(
            refused,
            Err(lmq::ClientError::Authentication { .. }) | Err(lmq::ClientError::NoBrokers { .. })
        ),
        "{refused:?}"
    );
    broker.node.stop().await;
}

/// KIP-368: with `connections_max_reauth_ms`, the session's lifetime is in the answer; past it
/// only a re-authentication is served (anything else closes the connection); a
/// re-authentication as the same user extends it, one as another user is refused.
#[tokio::test]
async fn sessions_expire_unless_the_client_reauthenticates_as_the_same_user() {
    let broker = start_with(|config| config.connections_max_reauth_ms = 1_000).await;
    let mut admin = client(broker.plain).await;
    assert_eq!(
        set_password(&mut admin, "dave", "dave-secret", 4096).await,
        0
    );
    assert_eq!(
        set_password(&mut admin, "erin", "erin-secret", 4096).await,
        0
    );

    // Expires: the next request closes the connection.
    let mut lapsing = client(broker.sasl).await;
    assert_eq!(
        plain_login(&mut lapsing, "bob", "bob-secret").await,
        (0, 1_000)
    );
    assert!(metadata_served(&mut lapsing).await);
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert!(
        !metadata_served(&mut lapsing).await,
        "served after the session expired"
    );

    // Re-authenticated in time: served past the first lifetime.
    let mut renewing = client(broker.sasl).await;
    assert_eq!(scram_login(&mut renewing, "dave", "dave-secret").await, 0);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(scram_login(&mut renewing, "dave", "dave-secret").await, 0);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(
        metadata_served(&mut renewing).await,
        "a re-authenticated session expired"
    );

    // Another principal on the same connection: refused, and the connection closes.
    assert_eq!(scram_login(&mut renewing, "erin", "erin-secret").await, 58);
    assert!(renewing.is_closed().await);
    broker.node.stop().await;
}

/// A PLAIN login: the error code and the session lifetime the broker granted.
async fn plain_login(client: &mut TestClient, user: &str, password: &str) -> (i16, i64) {
    assert_eq!(handshake(client, "PLAIN").await.0, 0);
    login_token(client, format!("\0{user}\0{password}")).await
}

/// Whether a Metadata request is answered (false: the connection closed).
async fn metadata_served(client: &mut TestClient) -> bool {
    client
        .send(ApiKey::Metadata, 12, metadata_request(&[]))
        .await;
    client.read_frame().await.is_some()
}

/// An ES256 signing key and its JWKS (kid "k1").
fn signing_key() -> (jsonwebtoken::EncodingKey, String) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = rcgen::KeyPair::generate().unwrap();
    let point = key.public_key_raw();
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    }]});
    let encoding = jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der());
    (encoding, jwks.to_string())
}

fn token(key: &jsonwebtoken::EncodingKey, claims: serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".to_string());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

async fn oauth_login(client: &mut TestClient, token: &str) -> (i16, i64) {
    assert_eq!(handshake(client, "OAUTHBEARER").await.0, 0);
    login_token(client, format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}")).await
}

/// OAUTHBEARER: a token signed by a key of the JWKS, for the expected issuer and audience and
/// not expired, authenticates its subject; the session ends with the token (with
/// re-authentication on); a wrong signature, issuer, audience or an expired token is refused
/// as Kafka refuses it (RFC 7628 3.2.2): the answer is the error `{"status":"invalid_token"}`,
/// the client acknowledges it with %x01, and the exchange fails with that message.
#[tokio::test]
async fn oauthbearer_tokens_are_checked_against_the_jwks() {
    let (key, jwks) = signing_key();
    let jwks_dir = tempfile::tempdir().unwrap();
    let jwks_file = jwks_dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks).unwrap();
    let broker = start_with(|config| {
        config
            .sasl
            .enabled_mechanisms
            .push(SaslMechanism::OauthBearer);
        config.sasl.oauthbearer_jwks_file = Some(jwks_file.clone());
        config.sasl.oauthbearer_expected_issuer = Some("https://issuer.example".into());
        config.sasl.oauthbearer_expected_audience = vec!["kafka".into()];
        config.connections_max_reauth_ms = 3_600_000;
    })
    .await;
    let now_s = common::now_ms() / 1000;
    let claims = |sub: &str, iss: &str, aud: &str, exp: i64| serde_json::json!({"sub": sub, "iss": iss, "aud": aud, "exp": exp, "iat": now_s});
    let good = token(
        &key,
        claims("frank", "https://issuer.example", "kafka", now_s + 120),
    );
    let mut client_ok = client(broker.sasl).await;
    let (code, lifetime) = oauth_login(&mut client_ok, &good).await;
    assert_eq!(code, 0);
    assert!(
        (100_000..=120_000).contains(&lifetime),
        "the session ends with the token: {lifetime}"
    );
    assert!(metadata_served(&mut client_ok).await);

    let (other_key, _) = signing_key();
    let refused = [
        (
            "another key",
            token(
                &other_key,
                claims("frank", "https://issuer.example", "kafka", now_s + 120),
            ),
        ),
        (
            "another issuer",
            token(
                &key,
                claims("frank", "https://evil.example", "kafka", now_s + 120),
            ),
        ),
        (
            "another audience",
            token(
                &key,
                claims("frank", "https://issuer.example", "web", now_s + 120),
            ),
        ),
        (
            "expired",
            token(
                &key,
                claims("frank", "https://issuer.example", "kafka", now_s - 600),
            ),
        ),
        ("not a token", "abc".to_string()),
    ];
    let invalid = r#"{"status":"invalid_token"}"#;
    for (what, token) in refused {
        let mut refused_client = client(broker.sasl).await;
        assert_eq!(handshake(&mut refused_client, "OAUTHBEARER").await.0, 0);
        let initial = format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}");
        let (code, challenge, _) =
            authenticate_answer(&mut refused_client, initial.as_bytes()).await;
        assert_eq!(
            (code, challenge.as_slice()),
            (0, invalid.as_bytes()),
            "{what}"
        );
        assert_eq!(
            authenticate_answer(&mut refused_client, b"\x01").await,
            (58, Vec::new(), Some(invalid.to_string())),
            "{what}"
        );
        assert!(
            refused_client.is_closed().await,
            "{what}: the connection stays open"
        );
    }
    // A message that is no client initial response fails at once, as Kafka's SaslException.
    let mut malformed = client(broker.sasl).await;
    assert_eq!(handshake(&mut malformed, "OAUTHBEARER").await.0, 0);
    assert_eq!(
        authenticate_answer(&mut malformed, b"n,,\x01auth=Basic abc\x01\x01").await,
        (
            58,
            Vec::new(),
            Some(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism OAUTHBEARER"
                    .to_string()
            )
        )
    );
    assert!(malformed.is_closed().await);
    broker.node.stop().await;
}

/// A loopback HTTP server answering every GET with the JWKS `document` holds at the time;
/// over TLS with `tls` (then the URL is https).
async fn serve_jwks(
    document: Arc<std::sync::Mutex<String>>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let body = document.lock().unwrap().clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        if let Ok(stream) = acceptor.accept(socket).await {
                            answer_get(stream, &body).await;
                        }
                    }
                    None => answer_get(socket, &body).await,
                }
            });
        }
    });
    url
}

/// Reads a request head (a GET has no body), answers `body` as JSON and closes.
async fn answer_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    body: &str,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A CA's certificate (PEM) and a server configuration for 127.0.0.1 it signed.
fn https_identity() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "identity provider CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    (ca.pem(), Arc::new(config))
}

/// Whether an OAUTHBEARER login with `token` succeeds on a new connection.
async fn oauth_accepted(address: std::net::SocketAddr, token: &str) -> bool {
    let mut client = client(address).await;
    if oauth_login(&mut client, token).await.0 != 0 {
        return false;
    }
    // A refused token is answered with the error as a challenge, not with a failure yet.
    metadata_served(&mut client).await
}

/// Polls (every 50 ms, 10 s at most) until a login with `token` is accepted or refused as
/// `accepted` says.
async fn until_oauth(address: std::net::SocketAddr, token: &str, accepted: bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while oauth_accepted(address, token).await != accepted {
        assert!(
            std::time::Instant::now() < deadline,
            "a login was still {} after 10 s",
            if accepted { "refused" } else { "accepted" }
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// OAUTHBEARER keys from a URL (Kafka's `sasl.oauthbearer.jwks.endpoint.url`), served here by
/// a loopback HTTP server: fetched at start, then again every `oauthbearer_jwks_refresh_ms`,
/// so a rotated key set applies without a restart: the new key's tokens authenticate, the old
/// key's no longer do.
#[tokio::test]
async fn oauthbearer_keys_come_from_a_jwks_url_and_follow_its_rotation() {
    let (old_key, old_jwks) = signing_key();
    let (new_key, new_jwks) = signing_key();
    let document = Arc::new(std::sync::Mutex::new(old_jwks));
    let url = serve_jwks(Arc::clone(&document), None).await;
    let broker = start_with(|config| {
        config
            .sasl
            .enabled_mechanisms
            .push(SaslMechanism::OauthBearer);
        config.sasl.oauthbearer_jwks_url = Some(url);
        config.sasl.oauthbearer_jwks_refresh_ms = 200;
    })
    .await;
    let now_s = common::now_ms() / 1000;
    let claims = serde_json::json!({"sub": "frank", "exp": now_s + 120, "iat": now_s});
    let old_token = token(&old_key, claims.clone());
    let new_token = token(&new_key, claims);
    until_oauth(broker.sasl, &old_token, true).await;
    assert!(!oauth_accepted(broker.sasl, &new_token).await);

    *document.lock().unwrap() = new_jwks;
    until_oauth(broker.sasl, &new_token, true).await;
    assert!(!oauth_accepted(broker.sasl, &old_token).await);
    broker.node.stop().await;
}

/// An https JWKS URL of an identity provider with a private CA: with
/// `oauthbearer_jwks_ca_file` its keys are fetched and tokens authenticate; trusting only the
/// public web roots, the fetch fails and every token is refused.
#[tokio::test]
async fn an_https_jwks_url_is_trusted_through_its_ca_file() {
    let (key, jwks) = signing_key();
    let (ca_pem, server) = https_identity();
    let url = serve_jwks(Arc::new(std::sync::Mutex::new(jwks)), Some(server)).await;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("idp-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let now_s = common::now_ms() / 1000;
    let token = token(
        &key,
        serde_json::json!({"sub": "frank", "exp": now_s + 120, "iat": now_s}),
    );
    let oauth = |config: &mut BrokerConfig, ca: Option<std::path::PathBuf>| {
        config
            .sasl
            .enabled_mechanisms
            .push(SaslMechanism::OauthBearer);
        config.sasl.oauthbearer_jwks_url = Some(url.clone());
        config.sasl.oauthbearer_jwks_ca_file = ca;
    };
    let trusting = start_with(|config| oauth(config, Some(ca_file.clone()))).await;
    until_oauth(trusting.sasl, &token, true).await;
    trusting.node.stop().await;

    let web_roots_only = start_with(|config| oauth(config, None)).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!oauth_accepted(web_roots_only.sasl, &token).await);
    web_roots_only.node.stop().await;
}

/// One SaslAuthenticate that ends an exchange: the error code and the session lifetime.
async fn login_token(client: &mut TestClient, token: String) -> (i16, i64) {
    let mut request = SaslAuthenticateRequest::default();
    request.auth_bytes = Bytes::from(token);
    let ResponseKind::SaslAuthenticate(response) = client
        .call(
            ApiKey::SaslAuthenticate,
            2,
            RequestKind::SaslAuthenticate(request),
        )
        .await
    else {
        panic!()
    };
    (response.error_code, response.session_lifetime_ms)
}
