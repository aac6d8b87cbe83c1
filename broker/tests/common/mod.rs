//! An in-process broker on port 0 and a minimal Kafka client for the API tests.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(dead_code)]

pub mod cluster;
pub mod requests;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use lmq_broker::BrokerConfig;
use lmq_broker::clock::SystemClock;
use lmq_broker::node::Node;
use lmq_storage::builder::BatchBuilder;
use lmq_wire::protocol::messages::{ApiKey, FindCoordinatorRequest, RequestKind, ResponseKind};
use lmq_wire::protocol::protocol::StrBytes;
use lmq_wire::{decode_response, encode_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct TestBroker {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub data_dir: std::path::PathBuf,
    pub node: Node,
}

impl TestBroker {
    /// A broker on a fresh port over `data_dir`, configured by `adjust`.
    pub async fn start_in(
        data_dir: &std::path::Path,
        adjust: impl FnOnce(&mut BrokerConfig),
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let mut config = BrokerConfig {
            data_dir: data_dir.to_path_buf(),
            listen: addr,
            ..BrokerConfig::default()
        };
        adjust(&mut config);
        let node = Node::start(config, Arc::new(SystemClock), vec![listener], Some(admin))
            .await
            .unwrap();
        TestBroker {
            addr,
            admin_addr,
            data_dir: data_dir.to_path_buf(),
            node,
        }
    }

    /// GET `path` from the admin listener: status code and body.
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        self.http_get_with(path, "").await
    }

    /// GET `path` with extra header lines (each ending in CRLF).
    pub async fn http_get_with(&self, path: &str, headers: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.admin_addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: lmq\r\n{headers}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// Finds the coordinator of `group`, as every client does before its first group call;
    /// the first one creates the offsets topic (as in Kafka).
    pub async fn find_coordinator(&self, group: &str) {
        let mut find = FindCoordinatorRequest::default();
        find.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
        let response = self
            .client()
            .await
            .call(
                ApiKey::FindCoordinator,
                4,
                RequestKind::FindCoordinator(find),
            )
            .await;
        let ResponseKind::FindCoordinator(found) = response else {
            panic!("{response:?}")
        };
        assert_eq!(found.coordinators[0].error_code, 0, "{found:?}");
    }

    pub async fn client(&self) -> TestClient {
        TestClient::new(TcpStream::connect(self.addr).await.unwrap())
    }

    /// A crash: the server task is dropped mid-flight, no log is closed or checkpointed.
    pub async fn crash(self) {
        self.node.crash().await;
    }

    /// Graceful shutdown: waits until every log is closed.
    pub async fn stop(self) {
        self.node.stop().await;
    }
}

/// A minimal Kafka client over a TCP stream, or over any other (TLS in `tls.rs`).
pub struct TestClient<S = TcpStream> {
    pub stream: S,
    next_correlation: i32,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> TestClient<S> {
    /// A client over a stream connected elsewhere (e.g. from another local address).
    pub fn new(stream: S) -> Self {
        TestClient {
            stream,
            next_correlation: 1,
        }
    }

    pub async fn send(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> i32 {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let frame = encode_request(&body, api_key, version, correlation_id, "lmq-test").unwrap();
        self.stream.write_all(&frame).await.unwrap();
        correlation_id
    }

    /// The next response frame body, or `None` when the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).await.ok()?;
        let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(prefix)).unwrap()];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    pub async fn call(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let correlation_id = self.send(api_key, version, body).await;
        let frame = self.read_frame().await.expect("a response");
        let (received, response) = decode_response(frame, api_key, version).unwrap();
        assert_eq!(received, correlation_id);
        response
    }

    /// True when the broker closed the connection (reads EOF within a second).
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                self.stream.read(&mut byte)
            )
            .await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// A gzip-compressed batch of `values` (as Java and librdkafka producers send them),
/// timestamps from `timestamp_ms` on.
pub fn gzip_batch(values: &[&str], timestamp_ms: i64) -> Bytes {
    use std::io::Write;
    let plain = batch(values, timestamp_ms);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&plain[61..]).unwrap();
    let compressed = encoder.finish().unwrap();
    let mut out = plain[..61].to_vec();
    out.extend_from_slice(&compressed);
    let length = i32::try_from(out.len() - 12).unwrap();
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out[22] |= 1; // attributes: gzip
    let crc = crc32c_of(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

fn crc32c_of(bytes: &[u8]) -> u32 {
    // CRC-32C (Castagnoli), bitwise: test code, no dependency needed.
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An uncompressed batch of `values`, timestamps from `timestamp_ms` on.
/// The wall clock: records stamped with it outlive the restarted broker's first retention
/// pass (ones from 1970 are past the 7-day default and may be deleted before a read).
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

pub fn batch(values: &[&str], timestamp_ms: i64) -> Bytes {
    let mut builder = BatchBuilder::new(timestamp_ms);
    for (index, value) in values.iter().enumerate() {
        let key = format!("key-{index}");
        builder.push(
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            timestamp_ms + index as i64,
        );
    }
    Bytes::from(builder.build())
}
