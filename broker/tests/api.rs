//! Every API the broker serves, over a real socket on port 0, including the error paths.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::requests::*;
use common::{TestBroker, batch, gzip_batch};
use lmq_storage::builder::BatchBuilder;
use lmq_wire::SUPPORTED_APIS;
use lmq_wire::protocol::messages::{
    ApiKey, ApiVersionsRequest, InitProducerIdRequest, ProduceResponse, RequestKind, ResponseKind,
};

#[tokio::test]
async fn api_versions_advertises_the_table_and_answers_unknown_versions_with_v0() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    for version in 0..=4 {
        let ResponseKind::ApiVersions(response) = client
            .call(
                ApiKey::ApiVersions,
                version,
                RequestKind::ApiVersions(ApiVersionsRequest::default()),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(response.error_code, 0);
        let produce = response
            .api_keys
            .iter()
            .find(|key| key.api_key == 0)
            .unwrap();
        assert_eq!(produce.min_version, 0, "librdkafka needs Produce from v0");
        assert_eq!(response.api_keys.len(), SUPPORTED_APIS.len());
    }
    // A newer ApiVersions than we know: v0 body with UNSUPPORTED_VERSION (35).
    let frame = lmq_wire::encode_request(
        &RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::ApiVersions,
        3,
        77,
        "x",
    )
    .unwrap();
    let mut bytes = frame.to_vec();
    bytes[6..8].copy_from_slice(&9i16.to_be_bytes());
    use tokio::io::AsyncWriteExt;
    client.stream.write_all(&bytes).await.unwrap();
    let (correlation_id, response) =
        lmq_wire::decode_response(client.read_frame().await.unwrap(), ApiKey::ApiVersions, 0)
            .unwrap();
    let ResponseKind::ApiVersions(response) = response else {
        panic!()
    };
    assert_eq!((correlation_id, response.error_code), (77, 35));
    assert!(!response.api_keys.is_empty());
    broker.stop().await;
}

#[tokio::test]
async fn every_supported_version_of_every_api_round_trips() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    let (low, high) = version(ApiKey::Metadata);
    for version in low..=high {
        let response = client
            .call(
                ApiKey::Metadata,
                version,
                metadata_request(&["all-versions"]),
            )
            .await;
        let ResponseKind::Metadata(response) = response else {
            panic!()
        };
        assert_eq!(response.topics[0].error_code, 0, "metadata v{version}");
        assert_eq!(
            response.topics[0].partitions.len(),
            3,
            "auto-created with 3 partitions"
        );
    }
    let (low, high) = version(ApiKey::Produce);
    for version in low..=high {
        let response = client
            .call(
                ApiKey::Produce,
                version,
                produce_request("all-versions", 0, batch(&["v"], 1_000), 1),
            )
            .await;
        let ResponseKind::Produce(response) = response else {
            panic!()
        };
        assert_eq!(
            response.responses[0].partition_responses[0].error_code, 0,
            "produce v{version}"
        );
    }
    let (low, high) = version(ApiKey::Fetch);
    for version in low..=high {
        let response = fetch(&mut client, version, "all-versions", 0, 0).await;
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "fetch v{version}");
        assert!(!partition.records.as_ref().unwrap().is_empty());
    }
    let (low, high) = version(ApiKey::ListOffsets);
    for version in low..=high {
        let response = client
            .call(
                ApiKey::ListOffsets,
                version,
                list_offsets_request("all-versions", 0, -1),
            )
            .await;
        let ResponseKind::ListOffsets(response) = response else {
            panic!()
        };
        assert_eq!(
            response.topics[0].partitions[0].error_code, 0,
            "list offsets v{version}"
        );
    }
    let (low, high) = version(ApiKey::CreateTopics);
    for version in low..=high {
        let topic = format!("created-v{version}");
        let response = client
            .call(
                ApiKey::CreateTopics,
                version,
                create_topic_request(&topic, 2, -1, &[]),
            )
            .await;
        let ResponseKind::CreateTopics(response) = response else {
            panic!()
        };
        assert_eq!(response.topics[0].error_code, 0, "create topics v{version}");
    }
    let (low, high) = version(ApiKey::InitProducerId);
    for version in low..=high {
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = None;
        request.transaction_timeout_ms = 60_000;
        let response = client
            .call(
                ApiKey::InitProducerId,
                version,
                RequestKind::InitProducerId(request),
            )
            .await;
        let ResponseKind::InitProducerId(response) = response else {
            panic!()
        };
        assert_eq!(response.error_code, 0, "init producer id v{version}");
        assert!(response.producer_id.0 >= 0);
    }
    broker.stop().await;
}

#[tokio::test]
async fn produced_batches_are_fetched_back_byte_identical_at_their_offsets() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    client
        .call(ApiKey::Metadata, 12, metadata_request(&["orders"]))
        .await;
    let sent = [
        batch(&["a", "b", "c"], 1_000),
        batch(&["d"], 2_000),
        batch(&["e", "f"], 3_000),
    ];
    let mut offsets = Vec::new();
    for records in &sent {
        let (error, base_offset) = produce(&mut client, "orders", 1, records.clone()).await;
        assert_eq!(error, 0);
        offsets.push(base_offset);
    }
    assert_eq!(offsets, [0, 3, 4]);
    let response = fetch(&mut client, 12, "orders", 1, 0).await;
    let partition = &response.responses[0].partitions[0];
    assert_eq!(
        (partition.high_watermark, partition.log_start_offset),
        (6, 0)
    );
    let records = partition.records.clone().unwrap();
    let mut position = 0;
    for (records_sent, offset) in sent.iter().zip(&offsets) {
        let stored = &records[position..position + records_sent.len()];
        let mut expected = records_sent.to_vec();
        lmq_storage::batch::set_base_offset(&mut expected, *offset);
        lmq_storage::batch::set_partition_leader_epoch(&mut expected, 0);
        assert_eq!(stored, &expected[..]);
        position += records_sent.len();
    }
    assert_eq!(position, records.len());
    // From the middle of a batch: the batch holding the offset comes back.
    let response = fetch(&mut client, 12, "orders", 1, 5).await;
    let records = response.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(records.len(), sent[2].len());
    broker.stop().await;
}

/// A long poll that cannot be served (unknown partition, not the leader) is answered at once
/// with the error, as Kafka's delayed fetch completes on an error reading data: the client
/// refreshes its metadata instead of waiting out `max_wait_ms`. It used to wait it out.
#[tokio::test]
async fn a_long_poll_on_a_partition_in_error_is_answered_at_once() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut consumer = broker.client().await;
    consumer
        .call(ApiKey::Metadata, 12, metadata_request(&["poll"]))
        .await;
    let started = Instant::now();
    let response = consumer
        .call(ApiKey::Fetch, 12, fetch_request("poll", 7, 0, 10_000, 1))
        .await;
    let ResponseKind::Fetch(response) = response else {
        panic!()
    };
    assert_eq!(
        response.responses[0].partitions[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the fetch waited {:?} for a partition in error",
        started.elapsed()
    );
}

#[tokio::test]
async fn fetch_long_polls_until_data_arrives_or_max_wait_passes() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut consumer = broker.client().await;
    let mut producer = broker.client().await;
    consumer
        .call(ApiKey::Metadata, 12, metadata_request(&["poll"]))
        .await;

    let started = Instant::now();
    let response = consumer
        .call(ApiKey::Fetch, 12, fetch_request("poll", 0, 0, 300, 1))
        .await;
    let ResponseKind::Fetch(response) = response else {
        panic!()
    };
    assert!(
        response.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap()
            .is_empty()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "waited for max_wait_ms"
    );

    let correlation = consumer
        .send(ApiKey::Fetch, 12, fetch_request("poll", 0, 0, 10_000, 1))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    produce(&mut producer, "poll", 0, batch(&["wake"], 0)).await;
    let frame = consumer.read_frame().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the append woke the fetch"
    );
    let (received, response) = lmq_wire::decode_response(frame, ApiKey::Fetch, 12).unwrap();
    assert_eq!(received, correlation);
    let ResponseKind::Fetch(response) = response else {
        panic!()
    };
    assert!(
        !response.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap()
            .is_empty()
    );
    broker.stop().await;
}

/// Long-polling fetches wait on the partitions they asked for (as Kafka's delayed-fetch
/// purgatory keys its watchers by partition): appends elsewhere do not wake them.
#[tokio::test]
async fn a_parked_fetch_is_woken_only_by_appends_to_its_own_partitions() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut consumer = broker.client().await;
    let mut producer = broker.client().await;
    let ResponseKind::CreateTopics(created) = producer
        .call(
            ApiKey::CreateTopics,
            5,
            create_topic_request("wake", 2, -1, &[]),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(created.topics[0].error_code, 0);
    let wakeups = || broker.node.broker.metrics.fetch_wakeups.get();

    let correlation = consumer
        .send(ApiKey::Fetch, 12, fetch_request("wake", 0, 0, 20_000, 1))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for index in 0..5 {
        let value = format!("elsewhere-{index}");
        let (code, _) = produce(&mut producer, "wake", 1, batch(&[&value], 0)).await;
        assert_eq!(code, 0);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        wakeups(),
        0,
        "appends to partition 1 woke the fetch parked on partition 0"
    );

    let started = Instant::now();
    let (code, _) = produce(&mut producer, "wake", 0, batch(&["mine"], 0)).await;
    assert_eq!(code, 0);
    let frame = tokio::time::timeout(Duration::from_secs(5), consumer.read_frame())
        .await
        .expect("the append to partition 0 woke the fetch")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(wakeups() >= 1, "the answer came from a wake-up");
    let (received, response) = lmq_wire::decode_response(frame, ApiKey::Fetch, 12).unwrap();
    assert_eq!(received, correlation);
    let ResponseKind::Fetch(response) = response else {
        panic!()
    };
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert!(!partition.records.as_ref().unwrap().is_empty());
    broker.stop().await;
}

#[tokio::test]
async fn acks_zero_gets_no_response_and_responses_stay_in_request_order() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    client
        .call(ApiKey::Metadata, 12, metadata_request(&["fire"]))
        .await;
    client
        .send(
            ApiKey::Produce,
            9,
            produce_request("fire", 0, batch(&["x"], 0), 0),
        )
        .await;
    let second = client
        .send(
            ApiKey::Produce,
            9,
            produce_request("fire", 0, batch(&["y"], 0), 1),
        )
        .await;
    let third = client
        .send(ApiKey::ListOffsets, 8, list_offsets_request("fire", 0, -1))
        .await;
    let (received, response) =
        lmq_wire::decode_response(client.read_frame().await.unwrap(), ApiKey::Produce, 9).unwrap();
    assert_eq!(received, second, "no response for acks=0");
    let ResponseKind::Produce(ProduceResponse { .. }) = response else {
        panic!()
    };
    let (received, response) =
        lmq_wire::decode_response(client.read_frame().await.unwrap(), ApiKey::ListOffsets, 8)
            .unwrap();
    assert_eq!(received, third);
    let ResponseKind::ListOffsets(response) = response else {
        panic!()
    };
    assert_eq!(
        response.topics[0].partitions[0].offset, 2,
        "the acks=0 record was stored"
    );
    broker.stop().await;
}

#[tokio::test]
async fn idempotent_retries_return_the_original_offset_and_gaps_are_refused() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    client
        .call(ApiKey::Metadata, 12, metadata_request(&["exactly-once"]))
        .await;
    let ResponseKind::InitProducerId(init) = client
        .call(ApiKey::InitProducerId, 4, init_producer_id_request())
        .await
    else {
        panic!()
    };
    let producer_id = init.producer_id.0;
    let producer_batch = |sequence: i32| {
        let mut builder = BatchBuilder::new(0).producer(producer_id, init.producer_epoch, sequence);
        builder.push(None, Some(b"once"), 0);
        builder.push(None, Some(b"twice"), 0);
        Bytes::from(builder.build())
    };
    assert_eq!(
        produce(&mut client, "exactly-once", 0, producer_batch(0)).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut client, "exactly-once", 0, producer_batch(2)).await,
        (0, 2)
    );
    assert_eq!(
        produce(&mut client, "exactly-once", 0, producer_batch(2)).await,
        (0, 2),
        "retry"
    );
    assert_eq!(
        produce(&mut client, "exactly-once", 0, producer_batch(9))
            .await
            .0,
        45,
        "gap"
    );
    let ResponseKind::ListOffsets(response) = client
        .call(
            ApiKey::ListOffsets,
            8,
            list_offsets_request("exactly-once", 0, -1),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(response.topics[0].partitions[0].offset, 4, "stored once");
    broker.stop().await;

    // Producer state and producer ids survive a restart.
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    assert_eq!(
        produce(&mut client, "exactly-once", 0, producer_batch(2)).await,
        (0, 2),
        "retry after restart"
    );
    let ResponseKind::InitProducerId(again) = client
        .call(ApiKey::InitProducerId, 4, init_producer_id_request())
        .await
    else {
        panic!()
    };
    assert_ne!(again.producer_id.0, producer_id);
    broker.stop().await;
}

#[tokio::test]
async fn produce_errors_carry_kafka_codes() {
    let dir = temp();
    let broker =
        TestBroker::start_in(dir.path(), |config| config.log.max_message_bytes = 1_000).await;
    let mut client = broker.client().await;
    client
        .call(ApiKey::Metadata, 12, metadata_request(&["strict"]))
        .await;
    assert_eq!(
        produce(&mut client, "no-such-topic", 0, batch(&["x"], 0))
            .await
            .0,
        3
    );
    assert_eq!(
        produce(&mut client, "strict", 7, batch(&["x"], 0)).await.0,
        3
    );
    let mut corrupt = batch(&["x"], 0).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert_eq!(
        produce(&mut client, "strict", 0, Bytes::from(corrupt))
            .await
            .0,
        2,
        "CORRUPT_MESSAGE"
    );
    let big = "x".repeat(2_000);
    assert_eq!(
        produce(&mut client, "strict", 0, batch(&[&big], 0)).await.0,
        10,
        "MESSAGE_TOO_LARGE"
    );
    let mut two = batch(&["a"], 0).to_vec();
    two.extend_from_slice(&batch(&["b"], 0));
    assert_eq!(
        produce(&mut client, "strict", 0, Bytes::from(two)).await.0,
        87,
        "one batch per partition"
    );
    assert_eq!(
        produce(&mut client, "strict", 0, Bytes::from_static(b"garbage"))
            .await
            .0,
        87
    );
    let response = fetch(&mut client, 12, "strict", 0, 0).await;
    assert_eq!(
        response.responses[0].partitions[0].high_watermark, 0,
        "nothing stored"
    );
    let response = fetch(&mut client, 12, "strict", 0, 5).await;
    assert_eq!(
        response.responses[0].partitions[0].error_code, 1,
        "OFFSET_OUT_OF_RANGE"
    );
    broker.stop().await;
}

#[tokio::test]
async fn topic_errors_carry_kafka_codes() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |config| config.auto_create_topics = false).await;
    let mut client = broker.client().await;
    let ResponseKind::Metadata(response) = client
        .call(
            ApiKey::Metadata,
            12,
            metadata_request(&["missing", "bad name"]),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(response.topics[0].error_code, 3, "no auto-creation");
    assert_eq!(response.topics[1].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    type Case<'a> = (&'a str, i32, i16, &'a [(&'a str, &'a str)], i16);
    let cases: [Case; 5] = [
        ("bad/name", 1, 1, &[], 17),
        ("zero", 0, 1, &[], 37),
        ("replicated", 1, 3, &[], 38),
        ("bad-config", 1, 1, &[("retention.ms", "soon")], 40),
        ("unknown-config", 1, 1, &[("no.such.config", "1")], 40),
    ];
    for (topic, partitions, replication, configs, code) in cases {
        let ResponseKind::CreateTopics(response) = client
            .call(
                ApiKey::CreateTopics,
                7,
                create_topic_request(topic, partitions, replication, configs),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(response.topics[0].error_code, code, "{topic}");
        assert!(response.topics[0].error_message.is_some());
    }
    let mut validate_only = create_topic_request("dry-run", 4, 1, &[]);
    if let RequestKind::CreateTopics(request) = &mut validate_only {
        request.validate_only = true;
    }
    let ResponseKind::CreateTopics(response) =
        client.call(ApiKey::CreateTopics, 7, validate_only).await
    else {
        panic!()
    };
    assert_eq!(
        (
            response.topics[0].error_code,
            response.topics[0].num_partitions
        ),
        (0, 4)
    );
    let ResponseKind::Metadata(response) = client
        .call(ApiKey::Metadata, 12, metadata_request(&["dry-run"]))
        .await
    else {
        panic!()
    };
    assert_eq!(
        response.topics[0].error_code, 3,
        "validate_only created nothing"
    );
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("twice", 1, 1, &[]),
        )
        .await;
    let ResponseKind::CreateTopics(response) = client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("twice", 1, 1, &[]),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(response.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");
    // Kafka's text (ReplicationControlManager), which Kafka Connect logs at every worker start
    // on its existing internal topics.
    assert_eq!(
        response.topics[0].error_message.as_deref(),
        Some("Topic 'twice' already exists.")
    );
    broker.stop().await;
}

#[tokio::test]
async fn list_offsets_answers_earliest_latest_and_timestamps() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    client
        .call(ApiKey::Metadata, 12, metadata_request(&["times"]))
        .await;
    produce(&mut client, "times", 0, batch(&["a", "b", "c"], 1_000)).await; // 1000, 1001, 1002
    produce(&mut client, "times", 0, batch(&["d", "e"], 2_000)).await; // 2000, 2001
    produce(&mut client, "times", 0, gzip_batch(&["f", "g", "h"], 3_000)).await; // 3000-3002
    let answer = |response: ResponseKind| match response {
        ResponseKind::ListOffsets(response) => {
            let partition = &response.topics[0].partitions[0];
            (partition.error_code, partition.timestamp, partition.offset)
        }
        other => panic!("{other:?}"),
    };
    let mut ask = async |timestamp| {
        answer(
            client
                .call(
                    ApiKey::ListOffsets,
                    8,
                    list_offsets_request("times", 0, timestamp),
                )
                .await,
        )
    };
    assert_eq!(ask(-2).await, (0, -1, 0));
    assert_eq!(ask(-1).await, (0, -1, 8));
    assert_eq!(ask(-3).await, (0, 3_002, 7));
    assert_eq!(ask(3_001).await, (0, 3_001, 6), "inside a compressed batch");
    assert_eq!(ask(1_001).await, (0, 1_001, 1), "the exact record");
    assert_eq!(ask(1_500).await, (0, 2_000, 3));
    assert_eq!(ask(9_999).await, (0, -1, -1));
    broker.stop().await;
}

#[tokio::test]
async fn malformed_frames_close_the_connection_without_harming_the_broker() {
    use tokio::io::AsyncWriteExt;
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |config| config.frame_bytes_max = 1024).await;
    let attacks: [Vec<u8>; 7] = [
        2_000i32.to_be_bytes().to_vec(), // over frame_bytes_max
        (-5i32).to_be_bytes().to_vec(),  // negative length
        [&10i32.to_be_bytes()[..], &[0xff; 10]].concat(), // unknown API key
        [&6i32.to_be_bytes()[..], &[0, 3, 0, 1, 0, 0]].concat(), // truncated header
        [
            &20i32.to_be_bytes()[..],
            &[0, 3, 0, 12, 0, 0, 0, 1],
            &[0xff; 12],
        ]
        .concat(), // garbage body
        // Array counts of 2^31 and 2^32 (found by the fuzzer): the decoder must not try to
        // preallocate them (that aborted the process).
        [
            &14i32.to_be_bytes()[..],
            &[0, 0x13, 0, 4, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff],
        ]
        .concat(),
        [
            &16i32.to_be_bytes()[..],
            &[
                0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
            ],
        ]
        .concat(),
    ];
    for attack in attacks {
        let mut client = broker.client().await;
        client.stream.write_all(&attack).await.unwrap();
        assert!(client.is_closed().await, "{attack:?}");
    }
    // Still serving.
    let mut client = broker.client().await;
    let ResponseKind::Metadata(response) = client
        .call(ApiKey::Metadata, 12, metadata_request(&["alive"]))
        .await
    else {
        panic!()
    };
    assert_eq!(response.topics[0].error_code, 0);
    broker.stop().await;
}

/// An idempotent produce whose producer id the cluster never handed out (at or above the
/// coordinator's counter of reserved ids) is refused with UNKNOWN_PRODUCER_ID, so a client
/// cannot make up ids (and fill the producer tables, or collide with a later real producer).
/// An id from a block another broker reserved after this one last looked is accepted: the
/// broker re-reads the counter before refusing. A KIP-360 epoch bump of a made-up id gets a
/// new id, as Kafka's InitProducerId without a transactional id always does.
#[tokio::test]
async fn producer_ids_the_cluster_never_handed_out_are_refused() {
    const UNKNOWN_PRODUCER_ID: i16 = 59;
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    client
        .call(ApiKey::Metadata, 12, metadata_request(&["made-up-ids"]))
        .await;
    let ResponseKind::InitProducerId(init) = client
        .call(ApiKey::InitProducerId, 4, init_producer_id_request())
        .await
    else {
        panic!()
    };
    assert_eq!(init.error_code, 0);
    let producer_batch = |producer_id: i64, sequence: i32| {
        let mut builder = BatchBuilder::new(0).producer(producer_id, 0, sequence);
        builder.push(None, Some(b"value"), 0);
        Bytes::from(builder.build())
    };
    let made_up = init.producer_id.0 + 1_000_000;
    assert_eq!(
        produce(&mut client, "made-up-ids", 0, producer_batch(made_up, 0))
            .await
            .0,
        UNKNOWN_PRODUCER_ID,
        "an id nobody handed out"
    );
    assert_eq!(
        produce(&mut client, "made-up-ids", 0, producer_batch(i64::MAX, 0))
            .await
            .0,
        UNKNOWN_PRODUCER_ID
    );
    assert_eq!(
        produce(
            &mut client,
            "made-up-ids",
            0,
            producer_batch(init.producer_id.0, 0)
        )
        .await,
        (0, 0),
        "the id it was given"
    );
    // Another broker reserves the next block and hands out an id from it: this broker's view
    // of the counter is stale, and it must look again before refusing.
    let first = lmq_broker::cluster::store::reserve_producer_ids(&*broker.node.coordinator, 1_000)
        .await
        .unwrap();
    assert_eq!(
        produce(&mut client, "made-up-ids", 0, producer_batch(first + 7, 0)).await,
        (0, 1),
        "an id from another broker's block"
    );
    assert_eq!(
        produce(
            &mut client,
            "made-up-ids",
            0,
            producer_batch(first + 1_000, 0)
        )
        .await
        .0,
        UNKNOWN_PRODUCER_ID,
        "just past the counter"
    );
    // The epoch bump a client asks for after UNKNOWN_PRODUCER_ID.
    let mut bump = InitProducerIdRequest::default();
    bump.transactional_id = None;
    bump.producer_id = lmq_wire::protocol::messages::ProducerId(made_up);
    bump.producer_epoch = 0;
    let ResponseKind::InitProducerId(bumped) = client
        .call(ApiKey::InitProducerId, 4, RequestKind::InitProducerId(bump))
        .await
    else {
        panic!()
    };
    assert_eq!(bumped.error_code, 0);
    assert_ne!(bumped.producer_id.0, made_up, "{bumped:?}");
    assert_eq!(bumped.producer_epoch, 0);
    assert_eq!(
        produce(
            &mut client,
            "made-up-ids",
            0,
            producer_batch(bumped.producer_id.0, 0)
        )
        .await,
        (0, 2)
    );
    broker.stop().await;
}

mod sasl {
    use super::*;
    use common::TestClient;
    use lmq_wire::protocol::messages::{
        SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
        SaslHandshakeResponse,
    };
    use lmq_wire::protocol::protocol::StrBytes;

    async fn handshake(client: &mut TestClient, mechanism: &'static str) -> SaslHandshakeResponse {
        let mut request = SaslHandshakeRequest::default();
        request.mechanism = StrBytes::from_static_str(mechanism);
        let ResponseKind::SaslHandshake(answer) = client
            .call(
                ApiKey::SaslHandshake,
                1,
                RequestKind::SaslHandshake(request),
            )
            .await
        else {
            panic!()
        };
        answer
    }

    async fn authenticate(
        client: &mut TestClient,
        token: &'static [u8],
    ) -> SaslAuthenticateResponse {
        let mut request = SaslAuthenticateRequest::default();
        request.auth_bytes = Bytes::from_static(token);
        let ResponseKind::SaslAuthenticate(answer) = client
            .call(
                ApiKey::SaslAuthenticate,
                2,
                RequestKind::SaslAuthenticate(request),
            )
            .await
        else {
            panic!()
        };
        answer
    }

    /// Whether the broker closed the client's connection (end of stream within 5 s).
    async fn closed(client: &mut TestClient) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), client.read_frame()).await,
            Ok(None)
        )
    }

    /// A connection that began no SASL exchange is a PLAINTEXT listener's, as in Kafka: a
    /// SaslAuthenticate, or a SaslHandshake of a mechanism other than LMQ's inter-broker one,
    /// gets ILLEGAL_SASL_STATE with no mechanism offered, and the connection goes on.
    #[tokio::test]
    async fn without_a_handshake_sasl_requests_get_a_plaintext_listeners_answers() {
        let dir = temp();
        let broker = TestBroker::start_in(dir.path(), |_| {}).await;
        let mut client = broker.client().await;
        let answer = authenticate(&mut client, b"2\0not-the-secret").await;
        assert_eq!(
            answer.error_code, 34,
            "ILLEGAL_SASL_STATE before a handshake"
        );
        let answer = handshake(&mut client, "PLAIN").await;
        assert_eq!(
            answer.error_code, 34,
            "ILLEGAL_SASL_STATE, as Kafka's PLAINTEXT listener"
        );
        assert_eq!(answer.mechanisms, Vec::<StrBytes>::new());
        let ResponseKind::Metadata(_) = client
            .call(ApiKey::Metadata, 12, metadata_request(&[]))
            .await
        else {
            panic!()
        };
        broker.stop().await;
    }

    /// As Kafka's SASL listener: a failed SaslAuthenticate is answered, then the connection
    /// is closed, so a guess costs a new connection.
    #[tokio::test]
    async fn a_failed_authentication_is_answered_and_then_the_connection_closes() {
        let dir = temp();
        let broker = TestBroker::start_in(dir.path(), |_| {}).await;
        let mut client = broker.client().await;
        let answer = handshake(&mut client, "LMQ-BROKER").await;
        assert_eq!(answer.error_code, 0);
        assert_eq!(
            answer.mechanisms,
            vec![StrBytes::from_static_str("LMQ-BROKER")]
        );
        let answer = authenticate(&mut client, b"2\0not-the-secret").await;
        assert_eq!(answer.error_code, 58, "SASL_AUTHENTICATION_FAILED");
        assert!(answer.error_message.is_some());
        assert!(
            closed(&mut client).await,
            "the connection stays open after a failed proof"
        );
        broker.stop().await;
    }

    /// As Kafka's SASL listener: a second handshake before SaslAuthenticate is answered
    /// with ILLEGAL_SASL_STATE, then the connection closes.
    #[tokio::test]
    async fn a_second_handshake_before_authentication_is_refused_and_closes_the_connection() {
        let dir = temp();
        let broker = TestBroker::start_in(dir.path(), |_| {}).await;
        let mut client = broker.client().await;
        assert_eq!(handshake(&mut client, "LMQ-BROKER").await.error_code, 0);
        let answer = handshake(&mut client, "LMQ-BROKER").await;
        assert_eq!(
            answer.error_code, 34,
            "ILLEGAL_SASL_STATE for a second handshake"
        );
        assert!(closed(&mut client).await, "open after a second handshake");
        broker.stop().await;
    }

    /// As Kafka's SASL listener: between the handshake and SaslAuthenticate, any other
    /// request is an illegal state and closes the connection (Kafka answers it with the
    /// error first; LMQ closes without an answer).
    #[tokio::test]
    async fn other_requests_between_handshake_and_authentication_close_the_connection() {
        let dir = temp();
        let broker = TestBroker::start_in(dir.path(), |_| {}).await;
        let mut client = broker.client().await;
        assert_eq!(handshake(&mut client, "LMQ-BROKER").await.error_code, 0);
        client
            .send(ApiKey::Metadata, 12, metadata_request(&[]))
            .await;
        assert!(
            closed(&mut client).await,
            "Metadata served before authentication ended"
        );
        broker.stop().await;
    }
}
