//! The log cleaner's state as operators see it: `/v1/topics/{topic}`, `/v1/status`,
//! `/metrics` and `lmq topics describe`, after real passes over a compacted topic with many
//! rolled segments, and after passes that fail.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "tests wait in real time for the cleaner threads"
)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestBroker;
use lmq::{Admin, ClientConfig, Producer, ProducerConfig, Record};
use lmq_broker::config::CleanerSettings;
use serde_json::Value;

const LMQ: &str = env!("CARGO_BIN_EXE_lmq");
/// The smallest `segment.bytes` topic configs take: 1 KiB values roll a segment every ~1,000.
const SEGMENT_BYTES: &str = "1048576";

fn client(broker: &TestBroker) -> ClientConfig {
    ClientConfig {
        brokers: vec![broker.addr.to_string()],
        ..ClientConfig::default()
    }
}

async fn create_compacted(broker: &TestBroker, topic: &str) {
    let admin = Admin::connect(client(broker)).await.unwrap();
    let configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), SEGMENT_BYTES.to_string()),
        ("min.cleanable.dirty.ratio".to_string(), "0.01".to_string()),
    ]);
    admin.create_topic(topic, 1, 1, &configs).await.unwrap();
}

/// `count` records of 1 KiB values, the key of record `i` being `key(i)`; waits for every
/// acknowledgement.
async fn produce(broker: &TestBroker, topic: &str, count: usize, key: impl Fn(usize) -> String) {
    let producer = Producer::connect(ProducerConfig {
        client: client(broker),
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    let mut deliveries = Vec::new();
    for index in 0..count {
        let record = Record {
            key: Some(Bytes::from(key(index))),
            value: Some(Bytes::from(vec![b'v'; 1024])),
            partition: Some(0),
            ..Record::default()
        };
        deliveries.push(producer.enqueue(topic, record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().unwrap();
    }
    producer.close().await;
}

async fn get_json(broker: &TestBroker, path: &str) -> Value {
    let (status, body) = broker.http_get(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `/v1/topics/{topic}` until partition 0's cleaner state satisfies `done`.
async fn wait_for_cleaner(
    broker: &TestBroker,
    topic: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state =
            get_json(broker, &format!("/v1/topics/{topic}")).await["partitions"][0]["cleaner"]
                .clone();
        if done(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "the cleaner never got there: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lmq(args: Vec<String>) -> String {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(LMQ)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The value of the sample line that starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topics_cleaner_state_shows_in_the_admin_endpoint_and_in_describe() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |config| {
        config.cleaner = CleanerSettings {
            backoff_ms: 50,
            ..CleanerSettings::default()
        };
    })
    .await;
    create_compacted(&broker, "table").await;
    // ~4 MB over 50 keys: four rolled segments, each holding every key many times.
    produce(&broker, "table", 4000, |index| {
        format!("key-{}", index % 50)
    })
    .await;

    let state = wait_for_cleaner(&broker, "table", |state| {
        state["passes"].as_u64() >= Some(1) && state["first_dirty_offset"].as_i64() > Some(0)
    })
    .await;
    assert_eq!(state["cleanup_policy"], "compact");
    assert_eq!(state["failed_passes"], 0);
    assert!(state["last_error"].is_null(), "{state}");
    let pass = &state["last_pass"];
    assert_eq!(pass["result"], "committed", "{state}");
    let (read, written) = (
        pass["bytes_read"].as_u64().unwrap(),
        pass["bytes_written"].as_u64().unwrap(),
    );
    // One live record per key is left of each cleaned range: far less than was read.
    assert!(read >= 1024 * 1024 && written * 4 < read, "{state}");
    assert!(pass["finished_at_ms"].as_i64().unwrap() > common::now_ms() - 60_000);
    assert!(pass["log_locked_ms"].as_u64().unwrap() <= pass["duration_ms"].as_u64().unwrap());
    assert!((0.0..=1.0).contains(&state["dirty_ratio"].as_f64().unwrap()));
    // The cleaned-up-to point is on a segment boundary below the active segment.
    let first_dirty = state["first_dirty_offset"].as_i64().unwrap();
    assert!((900..4000).contains(&first_dirty), "{state}");

    let status = get_json(&broker, "/v1/status").await;
    assert_eq!(status["cleaner"]["enabled"], true);
    assert!(status["cleaner"]["passes"].as_u64() >= Some(1), "{status}");
    assert_eq!(status["cleaner"]["failed_passes"], 0);
    assert!(status["cleaner"]["last_error"].is_null());
    let topic = status["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|topic| topic["name"] == "table")
        .unwrap();
    assert_eq!(
        topic["partitions"][0]["cleaner"]["cleanup_policy"],
        "compact"
    );
    assert_eq!(broker.http_get("/v1/topics/missing").await.0, 404);

    // The CLI: Kafka protocol for the partitions and configs, the admin endpoint for the
    // cleaner state.
    let common_args = |output: &str| {
        vec![
            "topics".to_string(),
            "describe".to_string(),
            "table".to_string(),
            "-b".to_string(),
            broker.addr.to_string(),
            "--admin".to_string(),
            broker.admin_addr.to_string(),
            "-o".to_string(),
            output.to_string(),
        ]
    };
    let described: Value = serde_json::from_str(&lmq(common_args("json")).await).unwrap();
    let cleaner = &described["cleaner"][0];
    assert_eq!(cleaner["admin"], broker.admin_addr.to_string());
    assert_eq!(cleaner["node_id"], status["node_id"]);
    let partition = &cleaner["partitions"][0];
    assert_eq!(partition["partition"], 0);
    assert!(
        partition["cleaner"]["passes"].as_u64() >= Some(1),
        "{described}"
    );
    assert!(partition["cleaner"]["first_dirty_offset"].as_i64() >= Some(first_dirty));
    let table = lmq(common_args("table")).await;
    let heading = format!(
        "Cleaner on broker {} ({})",
        status["node_id"], broker.admin_addr
    );
    assert!(table.contains(&heading), "{table}");
    assert!(
        table.contains("CLEANED_TO") && table.contains("committed"),
        "{table}"
    );

    // A topic that is not compacted has no cleaner state, and describe does not ask for it.
    let admin = Admin::connect(client(&broker)).await.unwrap();
    admin
        .create_topic("plain", 1, 1, &BTreeMap::new())
        .await
        .unwrap();
    let topic = get_json(&broker, "/v1/topics/plain").await;
    assert!(topic["partitions"][0]["cleaner"].is_null(), "{topic}");
    let mut args = common_args("json");
    args[2] = "plain".to_string();
    args[6] = "127.0.0.1:1".to_string();
    let described: Value = serde_json::from_str(&lmq(args).await).unwrap();
    assert_eq!(described["cleaner"], serde_json::json!([]));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pass_is_the_last_error_in_status_metrics_and_describe() {
    let dir = tempfile::tempdir().unwrap();
    // A dedupe buffer of 4 slots (3 keys at 90% load) cannot map even one batch of distinct
    // keys: the storage cleaner fails the pass (Kafka's cleaner fails the same way when one
    // segment's keys do not fit).
    let broker = TestBroker::start_in(dir.path(), |config| {
        config.cleaner = CleanerSettings {
            backoff_ms: 50,
            dedupe_buffer_bytes: 4 * lmq_storage::clean::SLOT_BYTES,
            ..CleanerSettings::default()
        };
    })
    .await;
    create_compacted(&broker, "unmappable").await;
    produce(&broker, "unmappable", 2500, |index| format!("key-{index}")).await;

    let state = wait_for_cleaner(&broker, "unmappable", |state| {
        state["failed_passes"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(state["passes"], 0, "{state}");
    assert_eq!(state["last_pass"]["result"], "failed", "{state}");
    let message = state["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("dedupe buffer"), "{state}");
    assert_eq!(state["last_pass"]["error"], message);
    // Nothing was cleaned.
    assert_eq!(state["first_dirty_offset"], 0);

    let status = get_json(&broker, "/v1/status").await;
    let last_error = &status["cleaner"]["last_error"];
    assert_eq!(last_error["topic"], "unmappable", "{status}");
    assert_eq!(last_error["partition"], 0);
    assert!(
        last_error["message"]
            .as_str()
            .unwrap()
            .contains("dedupe buffer")
    );
    let at_ms = last_error["at_ms"].as_i64().unwrap();
    assert!((common::now_ms() - 60_000..=common::now_ms()).contains(&at_ms));
    assert!(status["cleaner"]["failed_passes"].as_u64() >= Some(1));

    let (_, metrics) = broker.http_get("/metrics").await;
    assert!(sample(&metrics, "lmq_cleaner_errors_total") >= 1.0);
    let last_error_s = sample(&metrics, "lmq_cleaner_last_error_timestamp_seconds");
    assert!(
        (last_error_s - (at_ms / 1000) as f64).abs() < 120.0,
        "{last_error_s} vs {at_ms}"
    );
    assert_eq!(sample(&metrics, "lmq_cleaner_passes_total"), 0.0);

    let table = lmq(vec![
        "topics".to_string(),
        "describe".to_string(),
        "unmappable".to_string(),
        "-b".to_string(),
        broker.addr.to_string(),
        "--admin".to_string(),
        broker.admin_addr.to_string(),
    ])
    .await;
    assert!(table.contains("failed"), "{table}");
    assert!(table.contains("partition 0: last error at"), "{table}");
    broker.stop().await;
}
