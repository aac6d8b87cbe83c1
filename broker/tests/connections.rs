//! Connection abuse over real sockets: idle and half-sent connections, one address holding
//! many connections. A client from another address must still be served. The tests about
//! deadlines run on paused tokio time (`tokio::time::Instant`, as the broker's network
//! shell): the runtime moves the clock on whenever every task waits, sockets included, so
//! they wait for no real second and do not depend on the machine's speed.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use common::requests::*;
use common::{TestBroker, TestClient, batch, now_ms};
use lmq_wire::protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, ResponseKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A connection to `broker` from the local address `from` (any 127.0.0.0/8 address works on
/// the loopback interface).
async fn connect_from(from: [u8; 4], broker: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("binding a 127.0.0.0/8 address");
    socket.connect(broker).await.unwrap()
}

async fn api_versions(client: &mut TestClient) {
    let ResponseKind::ApiVersions(response) = client
        .call(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(response.error_code, 0);
}

/// Whether the peer closed `stream` within `wait` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn half_sent_connections_from_one_address_do_not_lock_out_another() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |config| {
        config.connections_max = 200;
        config.connections_per_ip_max = 100;
    })
    .await;
    // 250 connections from 127.0.0.1, each with 2 bytes of a frame prefix and then silence:
    // more than every slot of the broker.
    let mut attackers = Vec::new();
    for _ in 0..250 {
        let mut stream = connect_from([127, 0, 0, 1], broker.addr).await;
        stream.write_all(&[0, 0]).await.unwrap();
        attackers.push(stream);
    }
    // A client from another address is answered at once.
    let stream = connect_from([127, 0, 0, 2], broker.addr).await;
    let mut client = TestClient::new(stream);
    tokio::time::timeout(Duration::from_secs(5), api_versions(&mut client))
        .await
        .expect("a client from 127.0.0.2 is answered while 127.0.0.1 holds 250 connections");
    tokio::time::timeout(
        Duration::from_secs(5),
        client.call(ApiKey::Metadata, 12, metadata_request(&[])),
    )
    .await
    .expect("Metadata answered");
    // The connections over the per-address cap were closed at once; those under it stay.
    let mut checks = tokio::task::JoinSet::new();
    for mut stream in attackers {
        checks.spawn(async move { closed_within(&mut stream, Duration::from_secs(2)).await });
    }
    let mut closed = 0;
    while let Some(was_closed) = checks.join_next().await {
        closed += usize::from(was_closed.unwrap());
    }
    assert_eq!(closed, 150, "connections over connections_per_ip_max");
    broker.stop().await;
}

#[tokio::test]
async fn slow_partial_requests_do_not_starve_a_small_request_on_another_connection() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |config| {
        config.frame_bytes_max = 1024 * 1024;
        config.requests_in_flight_bytes_max = 1536 * 1024;
        config.frame_receive_ms_max = 60_000;
    })
    .await;
    // Two clients declare 1 MiB requests and send 900 KiB of each: together more than the
    // budget, none of them complete.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut stream = broker.client().await.stream;
        let mut bytes = (1024 * 1024i32).to_be_bytes().to_vec();
        bytes.resize(4 + 900 * 1024, 0);
        slow.push(tokio::spawn(async move {
            let _ = stream.write_all(&bytes).await;
            stream
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A small request on a third connection is answered at once, not after the slow ones
    // are closed at frame_receive_ms_max.
    let mut client = broker.client().await;
    tokio::time::timeout(Duration::from_secs(5), api_versions(&mut client))
        .await
        .expect("ApiVersions waits for budget that unfinished requests hold");
    broker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let dir = temp();
    let broker =
        TestBroker::start_in(dir.path(), |config| config.connections_idle_ms_max = 500).await;
    // A connection that keeps asking stays open well past the idle timeout.
    let mut busy = broker.client().await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1_500) {
        api_versions(&mut busy).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One that goes quiet after a request is closed, once the idle time has passed.
    api_versions(&mut busy).await;
    let quiet = Instant::now();
    assert!(
        closed_within(&mut busy.stream, Duration::from_secs(5)).await,
        "an idle connection stays open"
    );
    assert!(
        quiet.elapsed() >= Duration::from_millis(400),
        "closed {:?} after its last answer",
        quiet.elapsed()
    );
    // So is one that never sent anything.
    let mut silent = broker.client().await;
    assert!(closed_within(&mut silent.stream, Duration::from_secs(5)).await);
    broker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stalled_half_frame_is_closed_after_the_frame_deadline() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |config| {
        config.frame_receive_ms_max = 500;
    })
    .await;
    let mut client = broker.client().await;
    // A 100-byte frame sent one byte every 100 ms: never idle, never finished.
    client
        .stream
        .write_all(&100i32.to_be_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..50 {
        if client.stream.write_all(&[0]).await.is_err() {
            closed = true;
            break;
        }
        if closed_within(&mut client.stream, Duration::from_millis(100)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "a half-sent frame trickling in is never closed");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
    // The broker still serves.
    let mut client = broker.client().await;
    api_versions(&mut client).await;
    broker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_its_answers_is_closed_after_the_idle_timeout() {
    let dir = temp();
    let broker =
        TestBroker::start_in(dir.path(), |config| config.connections_idle_ms_max = 500).await;
    let mut client = broker.client().await;
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("big", 1, 1, &[]),
        )
        .await;
    let value = "x".repeat(900_000);
    assert_eq!(
        produce(&mut client, "big", 0, batch(&[&value], now_ms()))
            .await
            .0,
        0
    );
    // 40 fetches of that batch (36 MB of answers, more than the socket buffers hold),
    // none of them read.
    for _ in 0..40 {
        client
            .send(ApiKey::Fetch, 12, fetch_request("big", 0, 0, 0, 0))
            .await;
    }
    // Well past the idle timeout: the broker's writes have stalled and it gave up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // What the broker had sent is there to read; then the connection ends, short of all
    // the answers.
    let mut received = 0usize;
    let mut buffer = vec![0u8; 1 << 20];
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), client.stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(read)) => received += read,
            Err(_) => break false,
        }
    };
    assert!(ended, "still open after {received} bytes");
    assert!(
        received < 40 * 900_000,
        "{received} bytes: every answer came"
    );
    broker.stop().await;
}
