//! `lmq-perf idle-fetch`: what parked long-polling fetches cost the broker while one partition
//! is written. Many consumers long-poll partitions that get no data while a producer writes to
//! partition 0 of the same topic; the broker's CPU time (utime + stime from `/proc/PID/stat`)
//! is read around an idle window and around the produce window, and reported per produced MB.
//! A broker that wakes every parked fetch on every append pays for each consumer on every
//! produce; one that wakes only a partition's own waiters pays nothing for them.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use lmq::cluster::Cluster;
use lmq::{Acks, Producer, ProducerConfig, Record};
use lmq_wire::protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use lmq_wire::protocol::messages::{BrokerId, FetchRequest, TopicName};
use lmq_wire::protocol::protocol::StrBytes;
use serde_json::json;
use tokio::task::JoinSet;

use crate::probe::{self, client_config};

/// Linux reports `/proc/PID/stat` times in USER_HZ, which is 100 on every architecture
/// (`sysconf(_SC_CLK_TCK)`).
const CLOCK_TICKS_PER_S: f64 = 100.0;
/// How often the producer enqueues the records due meanwhile.
const PRODUCE_TICK: Duration = Duration::from_millis(1);

#[derive(Debug, clap::Args)]
pub struct IdleFetchArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// The broker whose CPU time is measured.
    #[arg(long)]
    pub broker_pid: u32,
    /// The topic to create (it must not exist yet).
    #[arg(long)]
    pub topic: String,
    #[arg(long, default_value_t = 1000)]
    pub partitions: i32,
    /// Consumers, each long-polling its own `partitions_per_consumer` partitions out of
    /// 1..partitions (partition 0 is the one written).
    #[arg(long, default_value_t = 100)]
    pub consumers: usize,
    #[arg(long, default_value_t = 10)]
    pub partitions_per_consumer: usize,
    /// The consumers' fetch max wait.
    #[arg(long, default_value_t = 500)]
    pub max_wait_ms: u64,
    /// Records per second written to partition 0.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// The producer's linger: 0 sends small produce requests as fast as they are acknowledged,
    /// the case where a wake-up per append costs most.
    #[arg(long, default_value_t = 0)]
    pub linger_ms: u64,
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// How long the consumers park before the idle window (connections, first fetches).
    #[arg(long, default_value_t = 2.0)]
    pub warm_up_s: f64,
    /// The idle window: consumers only, to know their own cost.
    #[arg(long, default_value_t = 5.0)]
    pub idle_s: f64,
    /// The produce window.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
}

/// The broker's user + system CPU time so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: fields are counted after its ')'.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' in /proc/PID/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `fields[0]` is field 3.
    let ticks = |index: usize| -> Result<f64> {
        let field = fields.get(index).context("/proc/PID/stat is too short")?;
        Ok(field.parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_S)
}

/// Long-polls `partitions` (empty) in one Fetch request at a time, as a consumer assigned
/// them does, until aborted.
async fn park(
    bootstrap: String,
    topic: String,
    partitions: Vec<i32>,
    max_wait: Duration,
) -> Result<()> {
    let cluster = Cluster::connect(client_config(&bootstrap)).await?;
    let first = *partitions.first().context("no partitions to poll")?;
    // One broker: every partition has the same leader.
    let connection = cluster.leader(&topic, first).await?;
    loop {
        let mut fetch_topic = FetchTopic::default();
        fetch_topic.topic = TopicName(StrBytes::from_string(topic.clone()));
        fetch_topic.partitions = partitions
            .iter()
            .map(|partition| {
                let mut fetch_partition = FetchPartition::default();
                fetch_partition.partition = *partition;
                fetch_partition.fetch_offset = 0;
                fetch_partition.partition_max_bytes = 1 << 20;
                fetch_partition
            })
            .collect();
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(-1);
        request.max_wait_ms = i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX);
        request.min_bytes = 1;
        request.max_bytes = 50 << 20;
        request.topics = vec![fetch_topic];
        let response = connection.call(request).await?;
        for partition in response
            .responses
            .iter()
            .flat_map(|topic| &topic.partitions)
        {
            if partition.error_code != 0 {
                bail!(
                    "partition {}: error {}",
                    partition.partition_index,
                    partition.error_code
                );
            }
            if partition
                .records
                .as_ref()
                .is_some_and(|records| !records.is_empty())
            {
                bail!("idle partition {} got records", partition.partition_index);
            }
        }
    }
}

pub async fn idle_fetch(args: IdleFetchArgs) -> Result<String> {
    if args.partitions < 2 {
        bail!("--partitions: at least 2 (partition 0 is written, the others are polled)");
    }
    let bootstrap = args.bootstrap.clone();
    probe::create_and_wait(
        &bootstrap,
        &args.topic,
        args.partitions,
        &Default::default(),
    )
    .await?;
    let idle_partitions = usize::try_from(args.partitions - 1)?;
    let mut consumers = JoinSet::new();
    for consumer in 0..args.consumers {
        let partitions = (0..args.partitions_per_consumer)
            .map(|slot| {
                let index = (consumer * args.partitions_per_consumer + slot) % idle_partitions;
                i32::try_from(index + 1)
            })
            .collect::<Result<Vec<_>, _>>()?;
        consumers.spawn(park(
            bootstrap.clone(),
            args.topic.clone(),
            partitions,
            Duration::from_millis(args.max_wait_ms),
        ));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warm_up_s)).await;
    if let Some(ended) = consumers.try_join_next() {
        ended??;
        bail!("a consumer stopped");
    }

    let idle_started = crate::now();
    let idle_cpu_before = cpu_seconds(args.broker_pid)?;
    tokio::time::sleep(Duration::from_secs_f64(args.idle_s)).await;
    let idle_cpu = cpu_seconds(args.broker_pid)? - idle_cpu_before;
    let idle_elapsed = idle_started.elapsed().as_secs_f64();

    let producer = Producer::connect(ProducerConfig {
        client: client_config(&bootstrap),
        acks: Acks::Leader,
        idempotent: false,
        linger: Duration::from_millis(args.linger_ms),
        ..ProducerConfig::default()
    })
    .await?;
    let value = Bytes::from(vec![b'x'; args.record_size]);
    let total = args.rate.saturating_mul(args.seconds);
    let produce_started = crate::now();
    let cpu_before = cpu_seconds(args.broker_pid)?;
    let mut deliveries = Vec::new();
    let mut enqueued = 0u64;
    while enqueued < total {
        let due_ms = produce_started.elapsed().as_millis() * u128::from(args.rate) / 1000;
        let due = u64::try_from(due_ms).unwrap_or(total).min(total);
        while enqueued < due {
            let record = Record {
                value: Some(value.clone()),
                partition: Some(0),
                ..Record::default()
            };
            deliveries.push(producer.enqueue(&args.topic, record).await?);
            enqueued += 1;
        }
        tokio::time::sleep(PRODUCE_TICK).await;
    }
    let mut produced_bytes = 0u64;
    for delivery in deliveries {
        delivery.await.context("the producer closed")??;
        produced_bytes += args.record_size as u64;
    }
    let cpu = cpu_seconds(args.broker_pid)? - cpu_before;
    let elapsed = produce_started.elapsed().as_secs_f64();
    if let Some(ended) = consumers.try_join_next() {
        ended??;
        bail!("a consumer stopped");
    }
    consumers.abort_all();
    let produced_mb = produced_bytes as f64 / 1e6;
    // What the produce window cost beyond the parked consumers' own polling.
    let idle_cpu_per_s = idle_cpu / idle_elapsed;
    Ok(json!({
        "partitions": args.partitions,
        "consumers": args.consumers,
        "partitions_per_consumer": args.partitions_per_consumer,
        "max_wait_ms": args.max_wait_ms,
        "linger_ms": args.linger_ms,
        "records": enqueued,
        "produced_mb": produced_mb,
        "produce_s": elapsed,
        "broker_cpu_s": cpu,
        "broker_cpu_ms_per_mb": cpu * 1000.0 / produced_mb,
        "idle_broker_cpu_ms_per_s": idle_cpu_per_s * 1000.0,
        "broker_cpu_ms_per_mb_above_idle": (cpu - idle_cpu_per_s * elapsed) * 1000.0 / produced_mb,
    })
    .to_string())
}
