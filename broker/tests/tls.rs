//! TLS listeners: Kafka requests over TLS beside a PLAINTEXT listener, Metadata answering
//! with the addresses of the listener asked, mutual TLS, and certificate reload.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::requests::{fetch_request, metadata_request, produce_request};
use common::{TestClient, batch};
use lmq_broker::BrokerConfig;
use lmq_broker::clock::SystemClock;
use lmq_broker::node::Node;
use lmq_broker::security::tls::ClientAuth;
use lmq_wire::protocol::messages::{ApiKey, RequestKind, ResponseKind, SaslHandshakeRequest};
use lmq_wire::protocol::protocol::StrBytes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A CA and certificates it signs, written as PEM files.
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "LMQ test CA");
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca_der: ca.der().clone(),
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn write_ca(&self, path: &Path) {
        std::fs::write(path, &self.ca_pem).unwrap();
    }

    /// A leaf certificate for 127.0.0.1 with subject CN=`name`: (cert PEM, key PEM, DER, key).
    fn leaf(
        &self,
        name: &str,
    ) -> (
        String,
        String,
        CertificateDer<'static>,
        PrivateKeyDer<'static>,
    ) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "LMQ");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (
            certificate.pem(),
            key.serialize_pem(),
            certificate.der().clone(),
            key_der,
        )
    }
}

struct TlsBroker {
    node: Node,
    plain: std::net::SocketAddr,
    ssl: std::net::SocketAddr,
    _dir: tempfile::TempDir,
    files: std::path::PathBuf,
}

/// A broker with PLAINTEXT and SSL listeners, its certificate signed by `pki`.
async fn start(pki: &Pki, adjust: impl FnOnce(&mut BrokerConfig)) -> TlsBroker {
    start_with(pki, Vec::new(), adjust).await
}

/// As `start`, with more listeners' sockets (in the order `adjust` adds their listeners).
async fn start_with(
    pki: &Pki,
    more_sockets: Vec<TcpListener>,
    adjust: impl FnOnce(&mut BrokerConfig),
) -> TlsBroker {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("tls");
    std::fs::create_dir_all(&files).unwrap();
    let (cert, key, _, _) = pki.leaf("broker");
    std::fs::write(files.join("broker.pem"), cert).unwrap();
    std::fs::write(files.join("broker.key"), key).unwrap();
    pki.write_ca(&files.join("ca.pem"));
    let plain_socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ssl_socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain, ssl) = (
        plain_socket.local_addr().unwrap(),
        ssl_socket.local_addr().unwrap(),
    );
    let mut config = BrokerConfig {
        data_dir: dir.path().join("data"),
        listeners: vec![format!("PLAINTEXT://{plain}"), format!("SSL://{ssl}")],
        admin_listen: None,
        ..BrokerConfig::default()
    };
    config.tls.cert_file = Some(files.join("broker.pem"));
    config.tls.key_file = Some(files.join("broker.key"));
    adjust(&mut config);
    config.validate().unwrap();
    let mut sockets = vec![plain_socket, ssl_socket];
    sockets.extend(more_sockets);
    let node = Node::start(config, Arc::new(SystemClock), sockets, None)
        .await
        .unwrap();
    TlsBroker {
        node,
        plain,
        ssl,
        _dir: dir,
        files,
    }
}

/// `ssl.client.auth=required`, trusting the test CA beside the broker's certificate.
fn require_client_certificates(config: &mut BrokerConfig) {
    config.tls.client_auth = ClientAuth::Required;
    config.tls.ca_file = config
        .tls
        .cert_file
        .as_ref()
        .map(|cert| cert.with_file_name("ca.pem"));
}

/// A TLS connection trusting `pki`'s CA, with a client certificate when given.
async fn connect(
    pki: &Pki,
    address: std::net::SocketAddr,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((certificate, key)) => builder
            .with_client_auth_cert(vec![certificate], key)
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = TlsConnector::from(Arc::new(config));
    let socket = TcpStream::connect(address).await?;
    connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), socket)
        .await
}

#[tokio::test]
async fn an_ssl_listener_serves_produce_and_fetch_and_metadata_names_its_own_addresses() {
    let pki = Pki::new();
    let broker = start(&pki, |_| {}).await;
    let mut client = TestClient::new(connect(&pki, broker.ssl, None).await.unwrap());
    let ResponseKind::Metadata(metadata) = client
        .call(ApiKey::Metadata, 12, metadata_request(&["secure"]))
        .await
    else {
        panic!()
    };
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].port, i32::from(broker.ssl.port()));
    // The PLAINTEXT listener answers with its own address.
    let mut plain = TestClient::new(TcpStream::connect(broker.plain).await.unwrap());
    let ResponseKind::Metadata(metadata) = plain
        .call(ApiKey::Metadata, 12, metadata_request(&["secure"]))
        .await
    else {
        panic!()
    };
    assert_eq!(metadata.brokers[0].port, i32::from(broker.plain.port()));

    // Records larger than one read chunk go through the cipher intact (a Fetch's file
    // regions are copied, not sent with sendfile).
    let big = "x".repeat(300_000);
    let values: Vec<&str> = vec![big.as_str(), "second", big.as_str()];
    let sent = batch(&values, 1_700_000_000_000);
    let ResponseKind::Produce(produced) = client
        .call(
            ApiKey::Produce,
            9,
            produce_request("secure", 0, sent.clone(), -1),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    let ResponseKind::Fetch(fetched) = client
        .call(ApiKey::Fetch, 12, fetch_request("secure", 0, 0, 1_000, 1))
        .await
    else {
        panic!()
    };
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    // As stored: the same batch but for the partition leader epoch the leader sets (bytes
    // 12..16, outside the CRC).
    let records = partition.records.as_ref().unwrap();
    assert_eq!(records.len(), sent.len());
    assert!(
        records[..12] == sent[..12] && records[16..] == sent[16..],
        "the fetched batch differs from the produced one"
    );
    broker.node.stop().await;
}

/// Whether a connection with `identity` is refused: in the handshake, or (TLS 1.3, where the
/// server checks the client's certificate after the client finished) at the first request.
async fn refused(
    pki: &Pki,
    address: std::net::SocketAddr,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> bool {
    let Ok(stream) = connect(pki, address, identity).await else {
        return true;
    };
    let mut client = TestClient::new(stream);
    client
        .send(ApiKey::Metadata, 12, metadata_request(&[]))
        .await;
    client.read_frame().await.is_none()
}

#[tokio::test]
async fn required_client_auth_refuses_a_client_without_a_trusted_certificate() {
    let pki = Pki::new();
    let broker = start(&pki, |config| {
        require_client_certificates(config);
    })
    .await;
    // Without a certificate: the handshake (or, in TLS 1.3, the first exchange) fails.
    assert!(
        refused(&pki, broker.ssl, None).await,
        "a client without a certificate was served"
    );
    // A certificate from another CA: refused too.
    let stranger = Pki::new();
    let (_, _, der, key) = stranger.leaf("mallory");
    assert!(
        refused(&pki, broker.ssl, Some((der, key))).await,
        "a certificate of another CA was accepted"
    );
    // The CA's own client certificate is served.
    let (_, _, der, key) = pki.leaf("alice");
    let mut client = TestClient::new(connect(&pki, broker.ssl, Some((der, key))).await.unwrap());
    let ResponseKind::Metadata(metadata) = client
        .call(ApiKey::Metadata, 12, metadata_request(&[]))
        .await
    else {
        panic!()
    };
    assert_eq!(metadata.brokers.len(), 1);
    broker.node.stop().await;
}

/// Kafka applies `ssl.client.auth` to SSL listeners only (KIP-684: a SASL_SSL listener asks
/// for a certificate only when the setting is prefixed with its name): there the client proves
/// itself with SASL. With `client_auth = "required"`, a client without a certificate is
/// refused by the SSL listener and served by the SASL_SSL one, which then asks for SASL.
#[tokio::test]
async fn required_client_auth_applies_to_ssl_listeners_not_to_sasl_ssl_ones() {
    let pki = Pki::new();
    let sasl_socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sasl_ssl = sasl_socket.local_addr().unwrap();
    let broker = start_with(&pki, vec![sasl_socket], |config| {
        require_client_certificates(config);
        config.listeners.push(format!("SASL_SSL://{sasl_ssl}"));
    })
    .await;
    assert!(
        refused(&pki, broker.ssl, None).await,
        "the SSL listener served a client without a certificate"
    );
    let mut client = TestClient::new(connect(&pki, sasl_ssl, None).await.unwrap());
    let mut request = SaslHandshakeRequest::default();
    request.mechanism = StrBytes::from_static_str("SCRAM-SHA-512");
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
    assert_eq!(response.error_code, 0, "{response:?}");
    broker.node.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_used_by_new_connections_without_a_restart() {
    let pki = Pki::new();
    let broker = start(&pki, |config| config.tls.reload_check_ms = 100).await;
    let first = connect(&pki, broker.ssl, None).await.unwrap();
    let served =
        |stream: &TlsStream<TcpStream>| stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let before = served(&first);
    let (cert, key, renewed, _) = pki.leaf("broker");
    // The key first, then the certificate: a reload between the two writes fails and keeps
    // the old pair, the next one takes the new pair.
    std::fs::write(broker.files.join("broker.key"), key).unwrap();
    std::fs::write(broker.files.join("broker.pem"), cert).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stream = connect(&pki, broker.ssl, None).await.unwrap();
        if served(&stream) == renewed {
            break;
        }
        assert_eq!(served(&stream), before);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate was not used within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.node.stop().await;
}

/// ACLs apply to the principal a client certificate proves (issue 21): alice's mutual-TLS
/// connection is `User:O=LMQ,CN=alice` (the test certificates carry their CN first); with
/// the standard authorizer she reads a topic only once an ACL names her, while ANONYMOUS on
/// the PLAINTEXT listener is the super user that grants it.
#[tokio::test]
async fn acls_apply_to_the_principal_of_a_client_certificate() {
    use lmq_wire::protocol::messages::CreateAclsRequest;
    use lmq_wire::protocol::messages::create_acls_request::AclCreation;
    const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    let pki = Pki::new();
    let broker = start(&pki, |config| {
        require_client_certificates(config);
        config.authorizer = lmq_broker::security::acl::AuthorizerKind::Standard;
        config.super_users = vec!["User:ANONYMOUS".to_string()];
    })
    .await;
    let mut admin = TestClient::new(TcpStream::connect(broker.plain).await.unwrap());
    let ResponseKind::Produce(produced) = admin
        .call(
            ApiKey::Produce,
            9,
            produce_request("payroll", 0, batch(&["salary"], 1_700_000_000_000), -1),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(
        produced.responses[0].partition_responses[0].error_code, 3,
        "no auto-create by produce"
    );
    admin
        .call(ApiKey::Metadata, 12, metadata_request(&["payroll"]))
        .await;
    let (_, _, der, key) = pki.leaf("alice");
    let mut alice = TestClient::new(connect(&pki, broker.ssl, Some((der, key))).await.unwrap());
    let fetch_error = |response: ResponseKind| match response {
        ResponseKind::Fetch(fetched) => fetched.responses[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    };
    let refused = alice
        .call(ApiKey::Fetch, 12, fetch_request("payroll", 0, 0, 0, 0))
        .await;
    assert_eq!(fetch_error(refused), TOPIC_AUTHORIZATION_FAILED);
    let mut creation = AclCreation::default();
    creation.resource_type = 2;
    creation.resource_name = StrBytes::from_static_str("payroll");
    creation.resource_pattern_type = 3;
    creation.principal = StrBytes::from_static_str("User:O=LMQ,CN=alice");
    creation.host = StrBytes::from_static_str("*");
    creation.operation = 3;
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
    let allowed = alice
        .call(ApiKey::Fetch, 12, fetch_request("payroll", 0, 0, 0, 0))
        .await;
    assert_eq!(fetch_error(allowed), 0);
    broker.node.stop().await;
}

/// The native client (and so every `lmq` verb) speaks TLS, with a client certificate for a
/// listener that requires one; a broker certificate from another CA is refused.
#[tokio::test]
async fn the_native_client_connects_over_mutual_tls() {
    let pki = Pki::new();
    let broker = start(&pki, |config| {
        require_client_certificates(config);
    })
    .await;
    let (cert, key, _, _) = pki.leaf("alice");
    std::fs::write(broker.files.join("alice.pem"), cert).unwrap();
    std::fs::write(broker.files.join("alice.key"), key).unwrap();
    let config = |ca: &str| lmq::ClientConfig {
        brokers: vec![broker.ssl.to_string()],
        request_timeout: Duration::from_secs(5),
        security: lmq::Security {
            tls: Some(lmq::TlsSettings {
                ca_file: Some(broker.files.join(ca)),
                cert_file: Some(broker.files.join("alice.pem")),
                key_file: Some(broker.files.join("alice.key")),
            }),
            sasl: None,
        },
        ..lmq::ClientConfig::default()
    };
    let producer = lmq::Producer::connect(lmq::ProducerConfig {
        client: config("ca.pem"),
        ..lmq::ProducerConfig::default()
    })
    .await
    .unwrap();
    let delivery = producer.send("over-tls", "hello").await.unwrap();
    assert_eq!(delivery.offset, 0);
    // A CA that did not sign the broker's certificate: the client refuses the broker.
    Pki::new().write_ca(&broker.files.join("other-ca.pem"));
    let refused = lmq::Admin::connect(config("other-ca.pem")).await;
    assert!(refused.is_err(), "a broker of another CA was trusted");
    broker.node.stop().await;
}

/// Brokers replicate over an SSL inter-broker listener that requires client certificates:
/// each follower's fetcher presents its broker certificate, so acks=all produces complete
/// (both replicas have the records) with no PLAINTEXT port anywhere.
#[tokio::test]
async fn brokers_replicate_over_mutual_tls() {
    let pki = Pki::new();
    let files = tempfile::tempdir().unwrap();
    let (cert, key, _, _) = pki.leaf("broker");
    std::fs::write(files.path().join("broker.pem"), cert).unwrap();
    std::fs::write(files.path().join("broker.key"), key).unwrap();
    pki.write_ca(&files.path().join("ca.pem"));
    let dir = files.path().to_path_buf();
    let cluster = common::cluster::TestCluster::start_with(2, move |_, mut config| {
        config.listeners = vec![format!("SSL://{}", config.listen)];
        config.tls.cert_file = Some(dir.join("broker.pem"));
        config.tls.key_file = Some(dir.join("broker.key"));
        config.tls.ca_file = Some(dir.join("ca.pem"));
        config.tls.client_auth = ClientAuth::Required;
        config
    })
    .await;
    cluster.wait_for_brokers().await;
    let (cert, key, _, _) = pki.leaf("producer");
    std::fs::write(files.path().join("producer.pem"), cert).unwrap();
    std::fs::write(files.path().join("producer.key"), key).unwrap();
    let producer = lmq::Producer::connect(lmq::ProducerConfig {
        client: tls_client(&cluster, 0, files.path()),
        acks: lmq::Acks::All,
        ..lmq::ProducerConfig::default()
    })
    .await
    .unwrap();
    let admin = lmq::Admin::connect(tls_client(&cluster, 1, files.path()))
        .await
        .unwrap();
    admin
        .create_topic("replicated-tls", 1, 2, &std::collections::BTreeMap::new())
        .await
        .unwrap();
    for value in ["a", "b", "c"] {
        producer.send("replicated-tls", value).await.unwrap();
    }
    let (_, follower) = cluster.leader_and_follower("replicated-tls", 0).await;
    let offsets = cluster.brokers[follower]
        .broker
        .topics
        .get("replicated-tls")
        .unwrap()
        .partitions[0]
        .offsets()
        .unwrap();
    assert_eq!(
        offsets.log_end_offset, 3,
        "the follower has every acknowledged record"
    );
    cluster.stop().await;
}

/// A native client of broker `index` with the producer's certificate.
fn tls_client(
    cluster: &common::cluster::TestCluster,
    index: usize,
    files: &std::path::Path,
) -> lmq::ClientConfig {
    lmq::ClientConfig {
        brokers: vec![cluster.brokers[index].addr.to_string()],
        request_timeout: Duration::from_secs(10),
        security: lmq::Security {
            tls: Some(lmq::TlsSettings {
                ca_file: Some(files.join("ca.pem")),
                cert_file: Some(files.join("producer.pem")),
                key_file: Some(files.join("producer.key")),
            }),
            sasl: None,
        },
        ..lmq::ClientConfig::default()
    }
}
