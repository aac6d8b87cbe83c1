//! A full disk under load: a broker on a small tmpfs (mounted by the test; it needs root and
//! skips with a message where mounting is not permitted) is produced to with acks=all until
//! the filesystem is full. The broker must stay up, refuse writes with KAFKA_STORAGE_ERROR and
//! keep answering; once space returns the partition reopens itself and takes writes again,
//! and everything acknowledged reads back.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestBroker;
use common::requests::{fetch, list_offsets_request, metadata_request, produce};
use lmq_wire::protocol::messages::{ApiKey, ResponseKind};

/// Kafka's KAFKA_STORAGE_ERROR.
const KAFKA_STORAGE_ERROR: i16 = 56;
/// NOT_LEADER_OR_FOLLOWER: answered for the instant a reopened partition takes its role again.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// How long the partition may take to come back once space is free.
const RECOVERY_MS_MAX: u64 = 30_000;

/// A mounted tmpfs, unmounted when dropped (also when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Tmpfs { dir }),
            Ok(output) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(error) => {
                eprintln!("SKIPPED: cannot run mount: {error}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // Files still open (a broker task not yet gone): detach it instead.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

fn value(producer: usize, sequence: usize) -> String {
    // ~8 KiB per record, so the 8 MiB filesystem fills after a few hundred produces.
    format!("{producer}-{sequence}-{}", "x".repeat(8 * 1024))
}

/// Produces with acks=all until the broker refuses; returns what was acknowledged.
async fn produce_until_refused(
    broker: &TestBroker,
    topic: &'static str,
    producer: usize,
) -> (BTreeMap<i64, String>, i16) {
    let mut client = broker.client().await;
    let mut acknowledged = BTreeMap::new();
    for sequence in 0..10_000 {
        let text = value(producer, sequence);
        let records = common::batch(&[text.as_str()], common::now_ms());
        let (error, base_offset) = produce(&mut client, topic, 0, records).await;
        if error != 0 {
            return (acknowledged, error);
        }
        acknowledged.insert(base_offset, text);
    }
    panic!("an 8 MiB filesystem took 80 MiB of records");
}

async fn read_all(broker: &TestBroker, topic: &str) -> BTreeMap<i64, String> {
    let mut client = broker.client().await;
    let mut read = BTreeMap::new();
    // From the log start (retention may have moved it).
    let response = client
        .call(ApiKey::ListOffsets, 7, list_offsets_request(topic, 0, -2))
        .await;
    let ResponseKind::ListOffsets(earliest) = response else {
        panic!("{response:?}")
    };
    let earliest = &earliest.topics[0].partitions[0];
    assert_eq!(earliest.error_code, 0, "{earliest:?}");
    let mut offset = earliest.offset;
    loop {
        let response = fetch(&mut client, 12, topic, 0, offset).await;
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "{partition:?}");
        let records = partition.records.clone().unwrap_or_default();
        if records.is_empty() {
            return read;
        }
        for record in lmq_wire::records::decode_batches(records, 64 << 20).unwrap() {
            let text = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            read.insert(record.offset, text);
            offset = record.offset + 1;
        }
    }
}

/// How the full disk gets space back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Free {
    /// The test deletes a file it wrote before the broker started.
    DeleteFiller,
    /// Retention (`retention_bytes`) deletes old segments of the poisoned log.
    Retention,
}

async fn fill_the_disk_then_free_it(flush: &str, free: Free) {
    let Some(tmpfs) = Tmpfs::mount("8m") else {
        return;
    };
    // Space the test gives back later.
    let filler: PathBuf = tmpfs.path().join("filler");
    std::fs::write(&filler, vec![1u8; 3 << 20]).unwrap();
    let data_dir = tmpfs.path().join("data");
    let flush = flush.to_string();
    let broker = TestBroker::start_in(&data_dir, move |config| {
        config.default_partitions = 1;
        config.log.flush = flush;
        config.log.segment_bytes = 512 * 1024;
        if free == Free::Retention {
            config.log.retention_bytes = 2 << 20;
        }
    })
    .await;
    let topic = "full";
    let mut admin = broker.client().await;
    admin
        .call(ApiKey::Metadata, 12, metadata_request(&[topic]))
        .await;

    // Two producers at once until each is refused.
    let (first, second) = tokio::join!(
        produce_until_refused(&broker, topic, 0),
        produce_until_refused(&broker, topic, 1)
    );
    // The disk refuses one of them; the other may meet the instant the reopened partition
    // takes its role again (retention can free the space within the first upkeep pass).
    for (producer, refused) in [first.1, second.1].into_iter().enumerate() {
        assert!(
            matches!(refused, KAFKA_STORAGE_ERROR | NOT_LEADER_OR_FOLLOWER),
            "refusal of producer {producer}: {refused}"
        );
    }
    assert!(
        first.1 == KAFKA_STORAGE_ERROR || second.1 == KAFKA_STORAGE_ERROR,
        "the full disk refused a write"
    );
    let mut acknowledged = first.0;
    acknowledged.extend(second.0);
    assert!(
        acknowledged.len() > 100,
        "only {} acknowledged",
        acknowledged.len()
    );

    // Still refused, other requests still answered.
    let (error, _) = produce(
        &mut admin,
        topic,
        0,
        common::batch(&["more"], common::now_ms()),
    )
    .await;
    assert_eq!(error, KAFKA_STORAGE_ERROR);
    let response = admin
        .call(ApiKey::Metadata, 12, metadata_request(&[topic]))
        .await;
    let ResponseKind::Metadata(metadata) = response else {
        panic!("{response:?}")
    };
    assert_eq!(metadata.topics[0].error_code, 0);

    // The disk stays full for a while: the broker keeps trying to reopen the log (and the
    // reopened log fails again), keeps answering, and acknowledges only what it stored.
    let full_until = Instant::now() + Duration::from_millis(2_500);
    let mut sequence = 0;
    while Instant::now() < full_until {
        let text = value(2, sequence);
        sequence += 1;
        let (error, base_offset) = produce(
            &mut admin,
            topic,
            0,
            common::batch(&[text.as_str()], common::now_ms()),
        )
        .await;
        match error {
            0 => {
                acknowledged.insert(base_offset, text);
            }
            KAFKA_STORAGE_ERROR | NOT_LEADER_OR_FOLLOWER => {}
            other => panic!("produce on a full disk answered error {other}"),
        }
        let response = fetch(&mut admin, 12, topic, 0, 0).await;
        let code = response.responses[0].partitions[0].error_code;
        // OFFSET_OUT_OF_RANGE (1) once retention moved the log start past 0.
        assert!(
            code == 0 || code == KAFKA_STORAGE_ERROR || (free == Free::Retention && code == 1),
            "fetch answered {code}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Space returns: the partition must take writes again by itself.
    if free == Free::DeleteFiller {
        std::fs::remove_file(&filler).unwrap();
    }
    let started = Instant::now();
    let mut after = BTreeMap::new();
    loop {
        let text = format!("after-{}", after.len());
        let (error, base_offset) = produce(
            &mut admin,
            topic,
            0,
            common::batch(&[text.as_str()], common::now_ms()),
        )
        .await;
        if error == 0 {
            after.insert(base_offset, text);
            if after.len() == 5 {
                break;
            }
            continue;
        }
        assert!(
            matches!(error, KAFKA_STORAGE_ERROR | NOT_LEADER_OR_FOLLOWER),
            "produce while recovering answered {error}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(RECOVERY_MS_MAX),
            "the partition still refuses writes {RECOVERY_MS_MAX} ms after space was freed (or retention could free it)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acknowledged.extend(after);

    // Nothing acknowledged is lost: each acknowledged offset holds its value (retention
    // removed whole segments from the start only).
    let read = read_all(&broker, topic).await;
    let log_start = read.keys().next().copied().unwrap_or(0);
    if free == Free::DeleteFiller {
        assert_eq!(log_start, 0);
    }
    for (offset, text) in acknowledged.range(log_start..) {
        assert_eq!(
            read.get(offset).map(|read| &read[..20.min(read.len())]),
            Some(&text[..20.min(text.len())]),
            "offset {offset}"
        );
        assert_eq!(read.get(offset), Some(text), "offset {offset}");
    }
    broker.stop().await;
    drop(tmpfs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_recovers_when_space_returns_flush_every_batch() {
    fill_the_disk_then_free_it("every-batch", Free::DeleteFiller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_recovers_when_space_returns_flush_os() {
    fill_the_disk_then_free_it("os", Free::DeleteFiller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_recovers_when_retention_deletes_old_segments_of_the_poisoned_log() {
    fill_the_disk_then_free_it("every-batch", Free::Retention).await;
}

/// Fills `dir`'s filesystem to the last byte with a file it returns the path of.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![1u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    path
}

fn leading(cluster: &common::cluster::TestCluster, member: usize, topic: &str) -> bool {
    cluster.brokers[member]
        .broker
        .topics
        .get(topic)
        .and_then(|topic| topic.partitions.first().cloned())
        .is_some_and(|partition| partition.is_leader())
}

async fn read_all_from(client: &mut common::TestClient, topic: &str) -> BTreeMap<i64, String> {
    let mut read = BTreeMap::new();
    let mut offset = 0;
    loop {
        let response = fetch(client, 12, topic, 0, offset).await;
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "{partition:?}");
        let records = partition.records.clone().unwrap_or_default();
        if records.is_empty() {
            return read;
        }
        for record in lmq_wire::records::decode_batches(records, 64 << 20).unwrap() {
            let text = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            read.insert(record.offset, text);
            offset = record.offset + 1;
        }
    }
}

/// Three brokers in one process, each on its own tmpfs: the leader's disk fills under acks=all
/// load. It must give the partition to an in-sync follower (the others keep taking writes),
/// and once its space returns, reopen its log and rejoin the ISR as a follower; nothing
/// acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_fills_gives_up_leadership_and_rejoins_as_follower() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut mounts = Vec::new();
    for _ in 0..3 {
        let Some(tmpfs) = Tmpfs::mount("8m") else {
            return;
        };
        mounts.push(tmpfs);
    }
    let data_dirs: Vec<PathBuf> = mounts
        .iter()
        .map(|tmpfs| tmpfs.path().join("data"))
        .collect();
    let cluster = common::cluster::TestCluster::start_with(3, |node_id, mut config| {
        config.data_dir = data_dirs[usize::try_from(node_id).unwrap()].clone();
        config.default_partitions = 1;
        config.log.flush = "every-batch".to_string();
        config.log.segment_bytes = 512 * 1024;
        config
    })
    .await;
    cluster.wait_for_brokers().await;
    let topic = "replicated";
    let mut admin = cluster.brokers[0].client().await;
    admin
        .call(ApiKey::Metadata, 12, metadata_request(&[topic]))
        .await;
    let (old_leader, _) = cluster.leader_and_follower(topic, 0).await;
    let mut client = cluster.brokers[old_leader].client().await;
    let mut acknowledged = BTreeMap::new();
    for sequence in 0..20 {
        let text = value(0, sequence);
        let (error, base_offset) = produce(
            &mut client,
            topic,
            0,
            common::batch(&[text.as_str()], common::now_ms()),
        )
        .await;
        assert_eq!(error, 0);
        acknowledged.insert(base_offset, text);
    }

    // The leader's disk fills: its writes fail.
    let filler = fill(mounts[old_leader].path());
    let mut refused = None;
    for sequence in 20..2_000 {
        let text = value(0, sequence);
        let (error, base_offset) = produce(
            &mut client,
            topic,
            0,
            common::batch(&[text.as_str()], common::now_ms()),
        )
        .await;
        if error != 0 {
            refused = Some(error);
            break;
        }
        acknowledged.insert(base_offset, text);
    }
    // KAFKA_STORAGE_ERROR, or NOT_LEADER_OR_FOLLOWER once it gave the partition away.
    assert!(
        matches!(refused, Some(KAFKA_STORAGE_ERROR | NOT_LEADER_OR_FOLLOWER)),
        "refusal {refused:?}"
    );

    // Another in-sync replica leads within a bounded time and takes writes.
    let started = Instant::now();
    let new_leader = loop {
        if let Some(member) =
            (0..3).find(|&member| member != old_leader && leading(&cluster, member, topic))
        {
            break member;
        }
        assert!(
            started.elapsed() < Duration::from_millis(RECOVERY_MS_MAX),
            "leadership never moved off the broker whose disk is full"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut client = cluster.brokers[new_leader].client().await;
    for sequence in 0..20 {
        let text = value(1, sequence);
        let (error, base_offset) = produce(
            &mut client,
            topic,
            0,
            common::batch(&[text.as_str()], common::now_ms()),
        )
        .await;
        assert_eq!(error, 0, "produce to the new leader");
        acknowledged.insert(base_offset, text);
    }

    // Space returns: the old leader reopens its log and is back in the ISR as a follower.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    loop {
        let back_in_sync = cluster.brokers[new_leader]
            .cluster
            .view()
            .metadata
            .partition(topic, 0)
            .is_some_and(|state| state.isr.contains(&i32::try_from(old_leader).unwrap()));
        let follows = cluster.brokers[old_leader]
            .broker
            .topics
            .get(topic)
            .and_then(|topic| topic.partitions.first().cloned())
            .is_some_and(|partition| partition.role_name() == "follower");
        if back_in_sync && follows {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(RECOVERY_MS_MAX),
            "the old leader did not rejoin the ISR (in sync {back_in_sync}, follows {follows})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let read = read_all_from(&mut client, topic).await;
    for (offset, text) in &acknowledged {
        assert_eq!(read.get(offset), Some(text), "offset {offset}");
    }
    cluster.stop().await;
    drop(mounts);
}
