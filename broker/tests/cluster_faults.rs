//! Fault tests of the replicated cluster: 3 Consul servers + 3 brokers (scripts/cluster.sh),
//! idempotent acks=all producers writing sequential values while partition leaders are
//! killed with SIGKILL, paused past their session and restarted on their data dirs, and the
//! Consul leader server is killed and restarted. A checker
//! then reads everything back: no acknowledged record may be missing, duplicated or out of
//! order. Needs Consul (scripts/consul.sh builds it), so each test runs only with
//! `LMQ_CLUSTER_TESTS=1` (scripts/test.sh sets it); without it a plain `cargo test` prints why
//! it skipped and passes at once. `LMQ_FAULT_ROUNDS` (default 2)
//! makes the run longer; `LMQ_FAULT_ACKS=1` shows what acks=1 loses (scripts/fault-test.sh).

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lmq::{
    Acks, Admin, ClientConfig, Consumer, ConsumerConfig, OffsetSpec, Producer, ProducerConfig,
};
use tokio::sync::watch;

/// An acknowledged record: partition, offset, value.
type Acked = (i32, i64, String);

/// An acknowledgement as the producer saw it: topic, record, when the send started, when the
/// acknowledgement came.
type Ack = (String, Acked, Instant, Instant);

struct Cluster {
    dir: tempfile::TempDir,
    bootstrap: String,
    /// scripts/cluster.sh (loopback addresses) or scripts/netns-cluster.sh (a network
    /// namespace per host, so links can be cut).
    script: &'static str,
}

/// The variable scripts/test.sh sets to run these tests.
const CLUSTER_TESTS_VAR: &str = "LMQ_CLUSTER_TESTS";

/// Whether the cluster tests run here; when they do not, says so on the real stderr (not
/// captured by the harness: a test that skips silently reads as a pass). An environment
/// variable rather than `#[ignore]`, so that one command runs them all where they can.
fn cluster_tests_enabled(test: &str) -> bool {
    let enabled = std::env::var(CLUSTER_TESTS_VAR).is_ok_and(|value| value == "1");
    if !enabled {
        let _ = writeln!(
            std::io::stderr(),
            "cluster test {test} NOT RUN: {CLUSTER_TESTS_VAR} is not 1 (it needs the Consul \
             servers and brokers of scripts/cluster.sh; scripts/test.sh sets it)"
        );
    }
    enabled
}

impl Cluster {
    fn script(&self, args: &[&str]) -> String {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let output = Command::new(root.join(self.script))
            .args(args)
            .arg("--dir")
            .arg(self.dir.path())
            .env("LMQ_BIN", env!("CARGO_BIN_EXE_lmq"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{} {args:?}: {}",
            self.script,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn up() -> Cluster {
        Cluster::start("scripts/cluster.sh")
    }

    fn start(script: &'static str) -> Cluster {
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            bootstrap: String::new(),
            script,
        };
        cluster.bootstrap = cluster
            .script(&["up", "3"])
            .lines()
            .last()
            .unwrap()
            .to_string();
        cluster
    }

    fn client(&self) -> ClientConfig {
        ClientConfig {
            brokers: self.bootstrap.split(',').map(str::to_string).collect(),
            // Longer than a failover, so admin calls retry through one.
            request_timeout: Duration::from_secs(20),
            ..ClientConfig::default()
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.script(&["down"]));
    }
}

/// What the checker found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    acked: usize,
    lost: Vec<Acked>,
    duplicates: usize,
    reordered: usize,
}

/// Compares what was acknowledged with what the partitions hold. Values are
/// `<partition>:<sequence>` written in sequence order, one producer per partition.
fn check(acked: &[Acked], logs: &BTreeMap<i32, Vec<(i64, String)>>) -> Report {
    let mut report = Report {
        acked: acked.len(),
        ..Report::default()
    };
    let mut at: HashMap<(i32, i64), &str> = HashMap::new();
    for (partition, records) in logs {
        let mut seen = HashMap::new();
        let mut last_sequence = -1i64;
        for (offset, value) in records {
            at.insert((*partition, *offset), value);
            if seen.insert(value.as_str(), *offset).is_some() {
                report.duplicates += 1;
            }
            let sequence = value
                .rsplit_once(':')
                .and_then(|(_, sequence)| sequence.parse::<i64>().ok())
                .unwrap_or(-1);
            if sequence <= last_sequence {
                report.reordered += 1;
            }
            last_sequence = last_sequence.max(sequence);
        }
    }
    for record in acked {
        if at.get(&(record.0, record.1)) != Some(&record.2.as_str()) {
            report.lost.push(record.clone());
        }
    }
    report
}

#[test]
fn the_checker_finds_losses_duplicates_and_reordering() {
    let acked = vec![
        (0, 0, "0:0".to_string()),
        (0, 1, "0:1".to_string()),
        (0, 2, "0:2".to_string()),
    ];
    let intact = BTreeMap::from([(
        0,
        vec![(0, "0:0".into()), (1, "0:1".into()), (2, "0:2".into())],
    )]);
    assert_eq!(check(&acked, &intact).lost, Vec::<Acked>::new());
    // A new leader without the last record, which another value then replaced.
    let truncated = BTreeMap::from([(
        0,
        vec![(0, "0:0".into()), (1, "0:1".into()), (2, "0:3".into())],
    )]);
    assert_eq!(check(&acked, &truncated).lost, vec![acked[2].clone()]);
    let doubled = BTreeMap::from([(
        0,
        vec![
            (0, "0:0".into()),
            (1, "0:1".into()),
            (2, "0:1".into()),
            (3, "0:2".into()),
        ],
    )]);
    let report = check(&acked, &doubled);
    assert_eq!((report.duplicates, report.reordered), (1, 1));
}

/// The cluster metadata document in Consul.
fn cluster_metadata(cluster: &Cluster) -> serde_json::Value {
    use std::io::{Read, Write};
    let address = if cluster.script.contains("netns") {
        format!("{}:8500", cluster.script(&["ip", "c1"]))
    } else {
        let consul = std::fs::read_to_string(cluster.dir.path().join("consul-http")).unwrap();
        consul
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("http://")
            .to_string()
    };
    let address = address.as_str();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET /v1/kv/lmq/kv/cluster/metadata?raw&consistent HTTP/1.0\r\nHost: {address}\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap()
}

/// Partitions of `__consumer_offsets` in the cluster metadata.
fn offsets_partitions(cluster: &Cluster) -> usize {
    cluster_metadata(cluster)["topics"]["__consumer_offsets"]["partitions"]
        .as_array()
        .map_or(0, Vec::len)
}

/// The partition's leader as the cluster metadata in Consul has it (a broker that was just
/// paused may still answer Metadata from an older view).
fn leader_of(cluster: &Cluster, topic: &str, partition: i32) -> i32 {
    let metadata = cluster_metadata(cluster);
    metadata["topics"][topic]["partitions"][usize::try_from(partition).unwrap()]["leader"]
        .as_i64()
        .and_then(|leader| i32::try_from(leader).ok())
        .unwrap_or(-1)
}

/// Writes `<partition>:<n>` for n = 0, 1, ... to one partition, one record at a time, until
/// told to stop; records every acknowledgement with its time.
async fn produce(
    client: ClientConfig,
    topic: String,
    partition: i32,
    acked: Arc<Mutex<Vec<Ack>>>,
    mut stop: watch::Receiver<bool>,
) {
    let producer = Producer::connect(ProducerConfig {
        client,
        acks: if acks_all() { Acks::All } else { Acks::Leader },
        idempotent: acks_all(),
        retries: 40,
        retry_backoff: Duration::from_millis(100),
        linger: Duration::ZERO,
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    let mut sequence = 0u64;
    while !*stop.borrow() {
        let value = format!("{partition}:{sequence}");
        sequence += 1;
        let record = lmq::Record {
            partition: Some(partition),
            value: Some(Bytes::from(value.clone())),
            ..lmq::Record::default()
        };
        let started = Instant::now();
        tokio::select! {
            sent = producer.send_record(&topic, record) => match sent {
                Ok(delivery) => acked.lock().unwrap().push((
                    topic.clone(),
                    (partition, delivery.offset, value),
                    started,
                    Instant::now(),
                )),
                Err(error) => eprintln!("{topic}-{partition} {value}: not acknowledged: {error}"),
            },
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    producer.close().await;
}

async fn read_back(
    client: ClientConfig,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<(i64, String)>> {
    let admin = Admin::connect(client.clone()).await.unwrap();
    let ends = admin.list_offsets(topic, OffsetSpec::Latest).await.unwrap();
    let mut logs = BTreeMap::new();
    for partition in 0..partitions {
        let end = ends
            .iter()
            .find(|(index, _)| *index == partition)
            .map_or(0, |(_, end)| *end);
        let mut consumer = Consumer::connect(ConsumerConfig {
            client: client.clone(),
            ..ConsumerConfig::default()
        })
        .await
        .unwrap();
        consumer
            .assign(topic, partition, OffsetSpec::Earliest)
            .await
            .unwrap();
        let mut records = Vec::new();
        while records.last().is_none_or(|(offset, _)| offset + 1 < end) && end > 0 {
            for record in consumer.poll().await.unwrap() {
                let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                    .into_owned();
                records.push((record.offset, value));
            }
        }
        logs.insert(partition, records);
    }
    logs
}

/// `LMQ_FAULT_ACKS=1` runs the producers with acks=1 and no idempotence: then losses are
/// expected (a leader acknowledges before its followers have the record) and reported, which
/// shows the checker can find them.
fn acks_all() -> bool {
    std::env::var("LMQ_FAULT_ACKS").map_or(true, |acks| acks != "1")
}

/// Reads `topic` back and asserts that every acknowledged record is there, once, in order.
async fn verify(client: &ClientConfig, topic: &str, partitions: i32, acked: &[Ack]) {
    let mine: Vec<Acked> = acked
        .iter()
        .filter(|(name, _, _, _)| name == topic)
        .map(|(_, record, _, _)| record.clone())
        .collect();
    let report = check(&mine, &read_back(client.clone(), topic, partitions).await);
    eprintln!(
        "{topic}: {} acknowledged, {} lost, {} duplicated, {} out of order",
        report.acked,
        report.lost.len(),
        report.duplicates,
        report.reordered
    );
    assert!(report.acked > 100, "{topic}: the producers made progress");
    if !acks_all() {
        eprintln!(
            "{topic}: acks=1, lost for example {:?}",
            report.lost.first()
        );
        return;
    }
    assert_eq!(
        report.lost,
        Vec::<Acked>::new(),
        "{topic}: acknowledged records lost"
    );
    assert_eq!(
        report.duplicates, 0,
        "{topic}: duplicates despite idempotence"
    );
    assert_eq!(report.reordered, 0, "{topic}: order within a partition");
}

/// Waits (60 s at most) until no replica move is in progress.
async fn wait_for_reassignments(admin: &Admin) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = admin.list_reassignments().await.unwrap();
        if running.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reassignments still running: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The partition's replicas as the cluster metadata in Consul has them.
async fn replicas_of(admin: &Admin, topic: &str, partition: i32) -> Vec<i32> {
    admin.cluster().invalidate(topic).await;
    let info = admin.describe_topic(topic).await.unwrap();
    info.partitions
        .iter()
        .find(|known| known.partition == partition)
        .map(|known| known.replicas.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_partition_increase_broker_addition_replica_moves_and_broker_removal() {
    if !cluster_tests_enabled(
        "online_partition_increase_broker_addition_replica_moves_and_broker_removal",
    ) {
        return;
    }
    let cluster = Cluster::up();
    let client = cluster.client();
    let admin = Admin::connect(client.clone()).await.unwrap();
    admin
        .create_topic("online", 3, 2, &BTreeMap::new())
        .await
        .unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = watch::channel(false);
    let spawn = |partition: i32| {
        tokio::spawn(produce(
            client.clone(),
            "online".to_string(),
            partition,
            Arc::clone(&acked),
            stopped.clone(),
        ))
    };
    let mut producers: Vec<_> = (0..3).map(spawn).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A fourth partition on the live topic, written at once.
    admin.create_partitions("online", 4).await.unwrap();
    producers.push(spawn(3));

    // A fourth broker joins; a replica of partition 0 moves to it while producers run.
    cluster.script(&["start", "4"]);
    let original = replicas_of(&admin, "online", 0).await;
    let target = vec![4, original[1]];
    admin
        .reassign_partition("online", 0, Some(&target))
        .await
        .unwrap();
    wait_for_reassignments(&admin).await;
    assert_eq!(replicas_of(&admin, "online", 0).await, target);
    eprintln!("partition 0 moved from {original:?} to {target:?}");

    // Broker 1 is emptied, then stopped: nothing it held is lost.
    for partition in 0..4 {
        let replicas = replicas_of(&admin, "online", partition).await;
        if !replicas.contains(&1) {
            continue;
        }
        let spare = (2..=4).find(|id| !replicas.contains(id)).unwrap();
        let moved: Vec<i32> = replicas
            .iter()
            .map(|&id| if id == 1 { spare } else { id })
            .collect();
        admin
            .reassign_partition("online", partition, Some(&moved))
            .await
            .unwrap();
    }
    wait_for_reassignments(&admin).await;
    for partition in 0..4 {
        assert!(!replicas_of(&admin, "online", partition).await.contains(&1));
    }
    cluster.script(&["stop", "1"]);
    eprintln!("broker 1 emptied and stopped");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send(true).unwrap();
    for producer in producers {
        producer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    verify(&client, "online", 4, &acked).await;
}

/// Cuts `host` off from `peers` for `seconds` while the producers run, then heals it.
async fn cut_for(cluster: &Cluster, host: &str, peers: &[String], seconds: u64) {
    let mut args = vec!["cut", host];
    args.extend(peers.iter().map(String::as_str));
    cluster.script(&args);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    cluster.script(&["heal", host]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_a_leader_cut_off_from_followers_or_from_consul() {
    if !cluster_tests_enabled(
        "acknowledged_records_survive_a_leader_cut_off_from_followers_or_from_consul",
    ) {
        return;
    }
    let cluster = Cluster::start("scripts/netns-cluster.sh");
    let client = cluster.client();
    let admin = Admin::connect(client.clone()).await.unwrap();
    let min_insync = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
    admin.create_topic("cut", 3, 3, &min_insync).await.unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = watch::channel(false);
    let producers: Vec<_> = (0..3)
        .map(|partition| {
            tokio::spawn(produce(
                client.clone(),
                "cut".to_string(),
                partition,
                Arc::clone(&acked),
                stopped.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The leader of partition 0 loses its followers (it still reaches Consul and clients):
    // the ISR shrinks to the leader alone, so acks=all writes are refused, never acknowledged
    // on the leader alone; after healing the followers catch up and writes go on.
    let leader = leader_of(&cluster, "cut", 0);
    let followers: Vec<String> = (1..=3)
        .filter(|id| *id != leader)
        .map(|id| format!("b{id}"))
        .collect();
    cut_for(&cluster, &format!("b{leader}"), &followers, 15).await;
    eprintln!("broker {leader} (leader of cut-0) was cut off from its followers for 15 s");
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The leader of partition 1 loses Consul (it still reaches followers and clients): the
    // controller elects another leader; the old one cannot get acks=all writes acknowledged.
    let leader = leader_of(&cluster, "cut", 1);
    let consul: Vec<String> = (1..=3).map(|id| format!("c{id}")).collect();
    let mut args = vec!["cut".to_string(), format!("b{leader}")];
    args.extend(consul);
    cluster.script(&args.iter().map(String::as_str).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Its lease ended before its registration could expire: it no longer takes writes, even
    // acks=1 ones from a client that only knows it.
    let alone = ClientConfig {
        brokers: vec![format!(
            "{}:9092",
            cluster.script(&["ip", &format!("b{leader}")])
        )],
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let refused = Producer::connect(ProducerConfig {
        client: alone,
        acks: Acks::Leader,
        idempotent: false,
        retries: 0,
        ..ProducerConfig::default()
    })
    .await
    .unwrap()
    .send_record(
        "cut",
        lmq::Record {
            partition: Some(1),
            value: Some(Bytes::from("to a leader without its lease")),
            ..lmq::Record::default()
        },
    )
    .await;
    assert!(
        refused.is_err(),
        "a broker cut off from Consul acknowledged a write: {refused:?}"
    );
    tokio::time::sleep(Duration::from_secs(15)).await;
    cluster.script(&["heal", &format!("b{leader}")]);
    let after = leader_of(&cluster, "cut", 1);
    eprintln!(
        "broker {leader} (leader of cut-1) was cut off from Consul for 20 s; leader now {after}"
    );
    assert_ne!(after, leader, "the controller moved the leadership");
    tokio::time::sleep(Duration::from_secs(5)).await;

    stop.send(true).unwrap();
    for producer in producers {
        producer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    verify(&client, "cut", 3, &acked).await;
}

/// The broker coordinating `group`: the leader of its `__consumer_offsets` partition (Kafka's
/// hash of the group id modulo the topic's partition count).
fn group_coordinator(cluster: &Cluster, group: &str) -> i32 {
    let partitions = offsets_partitions(cluster);
    let index = lmq_broker::group::offsets::partition_for(group, partitions);
    leader_of(cluster, "__consumer_offsets", i32::try_from(index).unwrap())
}

/// A group's committed offsets, replicated in `__consumer_offsets`, are still there after
/// the broker coordinating the group is killed (another replica takes the group over).
async fn committed_offsets_survive_coordinator_failover(cluster: &Cluster, admin: &Admin) {
    let committed = admin
        .reset_offsets("faults-group", "faults-rf3", OffsetSpec::Latest)
        .await
        .unwrap();
    // Only its coordinator knows the group: listing from any one broker still finds it.
    for address in cluster.bootstrap.split(',') {
        let one = Admin::connect(ClientConfig {
            brokers: vec![address.to_string()],
            ..cluster.client()
        })
        .await
        .unwrap();
        let groups = one.list_groups().await.unwrap();
        assert!(
            groups.iter().any(|listed| listed.group == "faults-group"),
            "groups listed through {address}: {groups:?}"
        );
    }
    let coordinator = group_coordinator(cluster, "faults-group");
    cluster.script(&["kill", &coordinator.to_string()]);
    let mut after: Vec<(i32, i64)> = admin
        .group_lag("faults-group")
        .await
        .unwrap()
        .into_iter()
        .map(|lag| (lag.partition, lag.committed.unwrap_or(-1)))
        .collect();
    after.sort_unstable();
    let mut expected = committed.clone();
    expected.sort_unstable();
    assert_eq!(
        after, expected,
        "committed offsets after the coordinator {coordinator} died"
    );
    eprintln!("group offsets survived the loss of coordinator {coordinator}: {after:?}");
    cluster.script(&["start", &coordinator.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_leader_kills_pauses_and_restarts() {
    if !cluster_tests_enabled("acknowledged_records_survive_leader_kills_pauses_and_restarts") {
        return;
    }
    let rounds: usize = std::env::var("LMQ_FAULT_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(2);
    let cluster = Cluster::up();
    let client = cluster.client();
    let admin = Admin::connect(client.clone()).await.unwrap();
    let min_insync = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
    let topics = [("faults-rf3", 3i16), ("faults-rf2", 2i16)];
    for (topic, factor) in topics {
        admin
            .create_topic(topic, 3, factor, &min_insync)
            .await
            .unwrap();
    }
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = watch::channel(false);
    let mut producers = Vec::new();
    for (topic, _) in topics {
        for partition in 0..3 {
            producers.push(tokio::spawn(produce(
                client.clone(),
                topic.to_string(),
                partition,
                Arc::clone(&acked),
                stopped.clone(),
            )));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut failovers = Vec::new();
    for round in 0..rounds {
        let partition = i32::try_from(round % 3).unwrap();
        // SIGKILL the leader, measure until that partition acknowledges again, restart it.
        let victim = leader_of(&cluster, "faults-rf3", partition);
        assert!(victim > 0, "partition {partition} has a leader");
        cluster.script(&["kill", &victim.to_string()]);
        // After the script returned: the process is gone, sends from now on need a new leader.
        let killed = Instant::now();
        let deadline = killed + Duration::from_secs(60);
        let failover = loop {
            let first = acked
                .lock()
                .unwrap()
                .iter()
                // Sent after the kill: an answer already on its way does not count.
                .find(|(topic, (p, _, _), sent, _)| {
                    topic == "faults-rf3" && *p == partition && *sent > killed
                })
                .map(|(_, _, _, at)| at.duration_since(killed));
            if let Some(first) = first {
                break first;
            }
            assert!(Instant::now() < deadline, "no failover within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!(
            "round {round}: killed broker {victim}, partition {partition} acknowledged again after {failover:?}"
        );
        failovers.push(failover);
        cluster.script(&["start", &victim.to_string()]);
        // Pause another broker past its registration's TTL, then let it go on.
        let paused = leader_of(&cluster, "faults-rf3", (partition + 1) % 3);
        if paused > 0 {
            cluster.script(&["pause", &paused.to_string()]);
            tokio::time::sleep(Duration::from_secs(8)).await;
            cluster.script(&["resume", &paused.to_string()]);
            eprintln!("round {round}: paused broker {paused} for 8 s");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // The Consul leader dies (and with it the agent some brokers talk to), then returns.
    let server = cluster.script(&["consul-kill-leader"]);
    assert!(!server.is_empty(), "a Consul leader was killed");
    tokio::time::sleep(Duration::from_secs(10)).await;
    cluster.script(&["consul-start", &server]);
    eprintln!("killed Consul server {server} (the leader) for 10 s");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.send(true).unwrap();
    for producer in producers {
        producer.await.unwrap();
    }
    // Every broker back and in sync before reading, so any replica may be asked.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = acked.lock().unwrap().clone();
    for (topic, _) in topics {
        verify(&client, topic, 3, &acked).await;
    }
    committed_offsets_survive_coordinator_failover(&cluster, &admin).await;
    failovers.sort();
    eprintln!(
        "failover (leader killed -> partition acknowledges again): p50 {:?}, max {:?}",
        failovers[failovers.len() / 2],
        failovers.last().unwrap()
    );
}

/// A Fetch carrying a follower's replica id from a client that is no broker of the cluster
/// (CVE-2018-1288's class): with both followers paused, an acks=all produce waits; a forged
/// follower fetch with a huge offset must neither move the high watermark nor get the
/// produce acknowledged. It is answered as a consumer's fetch (bounded by the high watermark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_replica_fetch_does_not_acknowledge_acks_all_writes() {
    if !cluster_tests_enabled("a_forged_replica_fetch_does_not_acknowledge_acks_all_writes") {
        return;
    }
    use lmq::connection::Connection;
    use lmq_wire::protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use lmq_wire::protocol::messages::{BrokerId, FetchRequest, TopicName};

    let cluster = Cluster::up();
    let client = cluster.client();
    let admin = Admin::connect(client.clone()).await.unwrap();
    let configs = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
    admin.create_topic("forged", 1, 3, &configs).await.unwrap();
    let producer = Producer::connect(ProducerConfig {
        client: client.clone(),
        acks: Acks::All,
        retries: 0,
        linger: Duration::ZERO,
        ..ProducerConfig::default()
    })
    .await
    .map(Arc::new)
    .unwrap();
    // Every replica in the ISR: a first write is acknowledged by all three.
    let first = producer.send("forged", "before").await.unwrap();
    let leader = leader_of(&cluster, "forged", 0);
    assert!(leader > 0, "the partition has a leader");
    let followers: Vec<i32> = (1..=3).filter(|id| *id != leader).collect();
    for follower in &followers {
        cluster.script(&["pause", &follower.to_string()]);
    }
    // Well inside the registration TTL (6 s) and the replica lag time (10 s): the ISR still
    // has both paused followers, so the produce waits for them.
    let waiting = tokio::spawn({
        let producer = Arc::clone(&producer);
        async move { producer.send("forged", "while paused").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "acks=all waits for the paused followers"
    );

    let address = format!("127.0.0.{}:9092", 10 + leader);
    let forger = Connection::connect(&address, "forger", Duration::from_secs(5))
        .await
        .unwrap();
    let mut partition = FetchPartition::default();
    partition.partition = 0;
    partition.fetch_offset = i64::MAX / 2;
    partition.partition_max_bytes = 1 << 20;
    let mut topic = FetchTopic::default();
    topic.topic = TopicName(lmq_wire::protocol::protocol::StrBytes::from_static_str(
        "forged",
    ));
    topic.partitions = vec![partition];
    for follower in &followers {
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(*follower);
        request.max_wait_ms = 0;
        request.max_bytes = 1 << 20;
        request.topics = vec![topic.clone()];
        let answer = forger.call(request).await.unwrap();
        let data = &answer.responses[0].partitions[0];
        assert!(
            data.high_watermark <= first.offset + 1,
            "a forged follower fetch moved the high watermark to {}",
            data.high_watermark
        );
    }
    let answered = tokio::time::timeout(Duration::from_secs(2), waiting).await;
    for follower in &followers {
        cluster.script(&["resume", &follower.to_string()]);
    }
    if let Ok(sent) = answered {
        assert!(
            sent.unwrap().is_err(),
            "an acks=all write was acknowledged while both followers were paused"
        );
    }
}

/// The address of the broker coordinating `group`, asked of `through` (FindCoordinator v4),
/// retried while the group has no coordinator (its offsets partition is being taken over).
async fn find_coordinator(through: &lmq::connection::Connection, group: &str) -> (i32, String) {
    use lmq_wire::protocol::messages::FindCoordinatorRequest;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut find = FindCoordinatorRequest::default();
        find.key_type = 0;
        find.coordinator_keys = vec![lmq_wire::protocol::protocol::StrBytes::from_string(
            group.to_string(),
        )];
        if let Ok(found) = through.call(find).await
            && let Some(coordinator) = found.coordinators.first()
            && coordinator.error_code == 0
        {
            return (
                coordinator.node_id.0,
                format!("{}:{}", coordinator.host.as_str(), coordinator.port),
            );
        }
        assert!(Instant::now() < deadline, "no coordinator for {group}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 19: the group's metadata record, replicated in `__consumer_offsets`, lets the next
/// leader of the group's offsets partition load the group Stable with its members: when the
/// coordinator is killed, the member keeps its id and generation (its Heartbeat to the new
/// coordinator answers NONE, no rebalance caused by the move) and the committed offsets stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_failover_keeps_the_group_s_generation_and_offsets() {
    if !cluster_tests_enabled("a_coordinator_failover_keeps_the_group_s_generation_and_offsets") {
        return;
    }
    use lmq::connection::Connection;
    use lmq_wire::protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use lmq_wire::protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use lmq_wire::protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use lmq_wire::protocol::messages::{
        GroupId, HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
        SyncGroupRequest, TopicName,
    };
    use lmq_wire::protocol::protocol::StrBytes;
    let text = |value: &str| StrBytes::from_string(value.to_string());
    let group = "failover-group";

    let cluster = Cluster::up();
    let admin = Admin::connect(cluster.client()).await.unwrap();
    admin
        .create_topic("failover", 1, 3, &BTreeMap::new())
        .await
        .unwrap();
    let any = Connection::connect(
        cluster.bootstrap.split(',').next().unwrap(),
        "failover-test",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let (coordinator, address) = find_coordinator(&any, group).await;
    assert_eq!(coordinator, group_coordinator(&cluster, group));
    let member = Connection::connect(&address, "failover-test", Duration::from_secs(20))
        .await
        .unwrap();
    let join = |member_id: &str| {
        let mut protocol = JoinGroupRequestProtocol::default();
        protocol.name = text("range");
        protocol.metadata = Bytes::from_static(b"subscription");
        let mut request = JoinGroupRequest::default();
        request.group_id = GroupId(text(group));
        // Longer than the failover: the session must not be what ends the membership.
        request.session_timeout_ms = 60_000;
        request.rebalance_timeout_ms = 60_000;
        request.member_id = text(member_id);
        request.protocol_type = text("consumer");
        request.protocols = vec![protocol];
        request
    };
    // A coordinator that is still taking the offsets partition over answers
    // COORDINATOR_NOT_AVAILABLE (15) or COORDINATOR_LOAD_IN_PROGRESS (14) for a moment (50
    // offsets partitions settle their leaders after the topic is made); clients retry them.
    let mut first = member.call(join("")).await.unwrap();
    for _ in 0..100 {
        if first.error_code != 14 && first.error_code != 15 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        first = member.call(join("")).await.unwrap();
    }
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let member_id = first.member_id.to_string();
    let joined = member.call(join(&member_id)).await.unwrap();
    assert_eq!(joined.error_code, 0);
    let generation = joined.generation_id;
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(text(group));
    sync.generation_id = generation;
    sync.member_id = text(&member_id);
    sync.protocol_type = Some(text("consumer"));
    sync.protocol_name = Some(text("range"));
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = text(&member_id);
    assignment.assignment = Bytes::from_static(b"failover-0");
    sync.assignments = vec![assignment];
    assert_eq!(member.call(sync).await.unwrap().error_code, 0);
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = 0;
    partition.committed_offset = 42;
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(text("failover"));
    topic.partitions = vec![partition];
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = GroupId(text(group));
    commit.generation_id_or_member_epoch = generation;
    commit.member_id = text(&member_id);
    commit.topics = vec![topic];
    let committed = member.call(commit).await.unwrap();
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);

    cluster.script(&["kill", &coordinator.to_string()]);
    let survivor = (1..=3).find(|id| *id != coordinator).unwrap();
    let through = Connection::connect(
        &format!("127.0.0.{}:9092", 10 + survivor),
        "failover-test",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (next, address) = loop {
        let found = find_coordinator(&through, group).await;
        if found.0 != coordinator {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the group's coordinator never moved"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let member = Connection::connect(&address, "failover-test", Duration::from_secs(20))
        .await
        .unwrap();
    // The new coordinator may still be taking the partition over: NOT_COORDINATOR (16) and
    // COORDINATOR_NOT_AVAILABLE (15) are retried, anything else is the answer.
    let answered = loop {
        let mut heartbeat = HeartbeatRequest::default();
        heartbeat.group_id = GroupId(text(group));
        heartbeat.generation_id = generation;
        heartbeat.member_id = text(&member_id);
        let code = member.call(heartbeat).await.unwrap().error_code;
        if !matches!(code, 14..=16) || Instant::now() > deadline {
            break code;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        answered, 0,
        "the member's Heartbeat with generation {generation} after coordinator {coordinator} \
         died (new coordinator {next}): NONE, not REBALANCE_IN_PROGRESS (27) or \
         UNKNOWN_MEMBER_ID (25)"
    );
    // The client speaks OffsetFetch up to v7: one group, its topics listed.
    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = GroupId(text(group));
    let mut topic =
        lmq_wire::protocol::messages::offset_fetch_request::OffsetFetchRequestTopic::default();
    topic.name = TopicName(text("failover"));
    topic.partition_indexes = vec![0];
    fetch.topics = Some(vec![topic]);
    let fetched = member.call(fetch).await.unwrap();
    let offset = fetched.topics[0].partitions[0].committed_offset;
    assert_eq!(offset, 42, "the committed offset after the failover");
    eprintln!(
        "coordinator {coordinator} killed: group {group} kept generation {generation} on {next}"
    );
    cluster.script(&["start", &coordinator.to_string()]);
}
