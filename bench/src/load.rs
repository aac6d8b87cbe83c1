//! The load: an open-loop producer thread, an acknowledgement collector and one consumer per
//! partition, all in one process so the consumer can time records against their due times.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use lmq::{
    Acks, Admin, Codec, Consumer, ConsumerConfig, Delivery, OffsetSpec, Producer, ProducerConfig,
    Record,
};
use serde_json::{Value, json};
use tokio::sync::{Barrier, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::probe::{self, client_config};

/// Random bytes that record bodies are cut from (at a moving offset, so no two neighbours match).
const POOL_BYTES: usize = 4 << 20;
/// Largest latency the histograms hold, in microseconds (larger values are clamped).
const LATENCY_US_MAX: u64 = 600_000_000;
/// Fetch errors of a partition that is not served yet (unknown topic or partition, leader not
/// available, not leader), retried every 20 ms up to `FETCH_REFUSALS_MAX` times in a row.
const NOT_SERVING_YET: [i16; 3] = [3, 5, 6];
const FETCH_REFUSALS_MAX: u32 = 500;
/// How long the tail of a run (flush, consumer catching up) may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Deliveries handed to the acknowledgement collector and not yet taken by it. The collector
/// only pushes each into a set it polls, so it keeps up; a generator that got this far ahead
/// waits, and the wait shows as lateness (`behind_schedule_ms_max`).
const ACKS_QUEUED_MAX: usize = 65_536;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AcksArg {
    #[value(name = "1")]
    Leader,
    All,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CodecArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The topic to create (it must not exist yet), its partitions and configs.
    #[command(flatten)]
    pub create: probe::CreateArgs,
    /// Bytes per record value (the first 8 carry its due time).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Records per second; 0: as fast as the producer takes them (its buffer pushes back).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds of producing.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Seconds at the start whose records stay out of the latency histograms.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_s: f64,
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    #[arg(long, default_value_t = 16384)]
    pub batch_bytes: usize,
    #[arg(long, value_enum, default_value = "1")]
    pub acks: AcksArg,
    #[arg(long, value_enum, default_value = "none")]
    pub codec: CodecArg,
    /// Produce only: no consumer, no end-to-end latency.
    #[arg(long)]
    pub no_consume: bool,
    /// Records carry keys `key-0` .. `key-(N-1)` in turn (what a compacted topic needs);
    /// 0: no keys.
    #[arg(long, default_value_t = 0)]
    pub keys: u64,
    /// Records per transaction: a transactional producer (acks=all, idempotent) commits
    /// every N records, and the consumers read read_committed; 0: no transactions.
    #[arg(long, default_value_t = 0)]
    pub transaction_records: u64,
}

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub topic: probe::TopicArgs,
    /// Read read_committed (what a transactional topic's consumers do).
    #[arg(long)]
    pub read_committed: bool,
}

/// Counters the consumers share with the main task.
#[derive(Debug)]
struct Progress {
    /// The instant every time of the run counts from.
    base: Instant,
    records: AtomicU64,
    bytes: AtomicU64,
    /// Nanoseconds since the run's base instant of the last record consumed.
    last_ns: AtomicU64,
    /// Records due before this (nanoseconds since the base instant) are warm-up: not timed.
    timed_from_ns: AtomicU64,
    stop: AtomicBool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            base: crate::now(),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            timed_from_ns: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }
}

#[derive(Debug)]
struct Acked {
    latency: Histogram<u64>,
    acked: u64,
    failed: u64,
    first_error: Option<String>,
    last_ns: u64,
}

#[derive(Debug)]
struct Generated {
    sent: u64,
    finished_ns: u64,
    /// The furthest the generator fell behind its schedule.
    behind_ns_max: u64,
}

type Pending = (u64, oneshot::Receiver<lmq::Result<Delivery>>);

fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)?)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn summary(histogram: &Histogram<u64>) -> Value {
    json!({
        "count": histogram.len(),
        "p50": histogram.value_at_quantile(0.50),
        "p99": histogram.value_at_quantile(0.99),
        "p999": histogram.value_at_quantile(0.999),
        "max": histogram.max(),
        "mean": histogram.mean(),
    })
}

fn rate(count: u64, nanoseconds: u64) -> f64 {
    if nanoseconds == 0 {
        return 0.0;
    }
    // Counts stay far below 2^52, where f64 is exact.
    #[allow(clippy::cast_precision_loss)]
    let per_second = count as f64 * 1e9 / nanoseconds as f64;
    per_second
}

/// Incompressible bytes (splitmix64), the same every run.
fn random_pool(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut pool = Vec::with_capacity(len + 8);
    while pool.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        pool.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    pool.truncate(len);
    pool
}

/// When records are due, in nanoseconds since the run's base instant.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    from_ns: u64,
    until_ns: u64,
    /// Records per second; 0: each record is due when the previous one was taken.
    rate: u64,
}

/// What each record is like.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Bytes of its value.
    record_size: usize,
    /// Distinct keys taken in turn; 0: keyless.
    keys: u64,
    /// Records per transaction; 0: no transactions.
    transaction_records: u64,
}

/// Produces on the calling (blocking) thread: record `i` is due at `from + i / rate`, sent
/// then (or at once when late) and timed from then, however late it went out.
fn generate(
    runtime: &tokio::runtime::Handle,
    producer: &Producer,
    topic: &str,
    shape: Shape,
    schedule: Schedule,
    base: Instant,
    acks: &mpsc::Sender<Pending>,
) -> Result<Generated> {
    let record_size = shape.record_size;
    let pool = random_pool(POOL_BYTES.max(record_size * 2));
    let body = record_size - 8;
    let span = pool.len() - body;
    let mut offset = 0usize;
    let mut sent = 0u64;
    let mut behind_ns_max = 0u64;
    loop {
        let due_ns = if schedule.rate == 0 {
            nanos(base.elapsed())
        } else {
            let since = u128::from(sent) * 1_000_000_000 / u128::from(schedule.rate);
            schedule
                .from_ns
                .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
        };
        if due_ns >= schedule.until_ns {
            break;
        }
        if shape.transaction_records > 0 && sent % shape.transaction_records == 0 {
            if sent > 0 {
                runtime
                    .block_on(producer.commit())
                    .context("committing a transaction")?;
            }
            producer.begin().context("beginning a transaction")?;
        }
        let now_ns = nanos(base.elapsed());
        if due_ns > now_ns {
            std::thread::sleep(Duration::from_nanos(due_ns - now_ns));
        }
        let mut value = BytesMut::with_capacity(record_size);
        value.put_u64(due_ns);
        value.put_slice(&pool[offset..offset + body]);
        offset = (offset + 4099) % span;
        let record = Record {
            key: (shape.keys > 0).then(|| format!("key-{}", sent % shape.keys).into()),
            value: Some(value.freeze()),
            ..Record::default()
        };
        let delivery = runtime
            .block_on(producer.enqueue(topic, record))
            .context("enqueueing a record")?;
        behind_ns_max = behind_ns_max.max(nanos(base.elapsed()).saturating_sub(due_ns));
        acks.blocking_send((due_ns, delivery))
            .context("the acknowledgement collector stopped")?;
        sent += 1;
    }
    if shape.transaction_records > 0 && sent > 0 {
        runtime
            .block_on(producer.commit())
            .context("committing the last transaction")?;
    }
    Ok(Generated {
        sent,
        finished_ns: nanos(base.elapsed()),
        behind_ns_max,
    })
}

/// Awaits every delivery as it completes (in any order) and times it from its due instant.
async fn collect_acks(
    mut incoming: mpsc::Receiver<Pending>,
    base: Instant,
    warmup_ns: u64,
) -> Result<Acked> {
    let mut pending = FuturesUnordered::new();
    let mut acked = Acked {
        latency: histogram()?,
        acked: 0,
        failed: 0,
        first_error: None,
        last_ns: 0,
    };
    let mut open = true;
    loop {
        tokio::select! {
            next = incoming.recv(), if open => match next {
                Some((due_ns, delivery)) => pending.push(async move { (due_ns, delivery.await) }),
                None => open = false,
            },
            Some((due_ns, outcome)) = pending.next(), if !pending.is_empty() => {
                let now_ns = nanos(base.elapsed());
                match outcome {
                    Ok(Ok(_)) => {
                        acked.acked += 1;
                        acked.last_ns = now_ns;
                        if due_ns >= warmup_ns {
                            acked.latency.saturating_record(now_ns.saturating_sub(due_ns) / 1000);
                        }
                    }
                    Ok(Err(error)) => {
                        acked.failed += 1;
                        acked.first_error.get_or_insert_with(|| error.to_string());
                    }
                    Err(_) => {
                        acked.failed += 1;
                        acked.first_error.get_or_insert_with(|| "producer dropped a record".into());
                    }
                }
            },
            else => break,
        }
    }
    Ok(acked)
}

/// How the consumers read: with end-to-end latencies (`timed`), and at which isolation.
#[derive(Debug, Clone, Copy)]
struct Reading {
    timed: bool,
    read_committed: bool,
}

/// Reads one partition from offset 0 until `end` (or until told to stop), recording each
/// record's end-to-end latency when `timed` (records due after the warm-up only).
async fn consume_partition(
    bootstrap: String,
    topic: String,
    partition: i32,
    end: Option<i64>,
    how: Reading,
    progress: Arc<Progress>,
    start: Arc<Barrier>,
) -> Result<Histogram<u64>> {
    let Reading {
        timed,
        read_committed,
    } = how;
    let mut consumer = Consumer::connect(ConsumerConfig {
        client: client_config(&bootstrap),
        max_wait: Duration::from_millis(100),
        partition_max_bytes: 1 << 20,
        read_committed,
    })
    .await?;
    consumer
        .assign(&topic, partition, OffsetSpec::Offset(0))
        .await?;
    start.wait().await;
    let mut latency = histogram()?;
    let mut position = 0;
    let mut refusals = 0;
    while !progress.stop.load(Ordering::Acquire) && end.is_none_or(|end| position < end) {
        let records = match consumer.poll().await {
            Ok(records) => {
                refusals = 0;
                records
            }
            // Apache Kafka names a new partition's leader before that leader serves it.
            Err(lmq::ClientError::Kafka { code, .. })
                if NOT_SERVING_YET.contains(&code) && refusals < FETCH_REFUSALS_MAX =>
            {
                refusals += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(error) => {
                return Err(error).with_context(|| format!("fetching {topic}-{partition}"));
            }
        };
        let now_ns = nanos(progress.base.elapsed());
        let mut bytes = 0;
        // Past the records and what read_committed leaves out (markers, aborted records).
        position = consumer
            .positions()
            .first()
            .map_or(position, |(_, _, next)| *next);
        for record in &records {
            let Some(value) = &record.value else { continue };
            bytes += value.len();
            if let (true, Some(head)) = (timed, value.first_chunk::<8>()) {
                let due_ns = u64::from_be_bytes(*head);
                if due_ns >= progress.timed_from_ns.load(Ordering::Relaxed) {
                    latency.saturating_record(now_ns.saturating_sub(due_ns) / 1000);
                }
            }
        }
        if !records.is_empty() {
            progress
                .records
                .fetch_add(records.len() as u64, Ordering::AcqRel);
            progress.bytes.fetch_add(bytes as u64, Ordering::AcqRel);
            progress.last_ns.fetch_max(now_ns, Ordering::AcqRel);
        }
    }
    Ok(latency)
}

/// Starts one consumer per partition; returns once all are connected and assigned, which is
/// also the instant they start fetching.
async fn start_consumers(
    bootstrap: &str,
    topic: &str,
    ends: &[(i32, Option<i64>)],
    timed: bool,
    read_committed: bool,
    progress: &Arc<Progress>,
) -> JoinSet<Result<Histogram<u64>>> {
    let start = Arc::new(Barrier::new(ends.len() + 1));
    let mut consumers = JoinSet::new();
    for &(partition, end) in ends {
        consumers.spawn(consume_partition(
            bootstrap.to_string(),
            topic.to_string(),
            partition,
            end,
            Reading {
                timed,
                read_committed,
            },
            Arc::clone(progress),
            Arc::clone(&start),
        ));
    }
    start.wait().await;
    consumers
}

/// Waits until the consumers read `target` records or `DRAIN_TIMEOUT` passes, stops them and
/// merges their histograms.
async fn finish_consumers(
    mut consumers: JoinSet<Result<Histogram<u64>>>,
    progress: &Progress,
    target: u64,
) -> Result<Histogram<u64>> {
    let deadline = crate::now() + DRAIN_TIMEOUT;
    while progress.records.load(Ordering::Acquire) < target
        && crate::now() < deadline
        && !consumers.is_empty()
    {
        tokio::select! {
            Some(joined) = consumers.join_next() => { joined??; }
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    progress.stop.store(true, Ordering::Release);
    let mut merged = histogram()?;
    while let Some(joined) = consumers.join_next().await {
        merged.add(joined??)?;
    }
    Ok(merged)
}

pub async fn run(args: RunArgs) -> Result<String> {
    if args.record_size < 8 {
        bail!("--record-size must be at least 8 (the due time travels in the record)");
    }
    let bootstrap = args.create.topic.bootstrap.clone();
    let topic = args.create.topic.topic.clone();
    let mut configs = BTreeMap::new();
    for config in &args.create.configs {
        let (name, value) = config
            .split_once('=')
            .with_context(|| format!("--config {config}: expected NAME=VALUE"))?;
        configs.insert(name.to_string(), value.to_string());
    }
    probe::create_and_wait(&bootstrap, &topic, args.create.partitions, &configs).await?;

    // A transactional producer needs acks=all.
    let transactional = args.transaction_records > 0;
    let producer = Arc::new(
        Producer::connect(ProducerConfig {
            client: client_config(&bootstrap),
            acks: match args.acks {
                AcksArg::Leader if !transactional => Acks::Leader,
                _ => Acks::All,
            },
            codec: match args.codec {
                CodecArg::None => Codec::None,
                CodecArg::Gzip => Codec::Gzip,
                CodecArg::Snappy => Codec::Snappy,
                CodecArg::Lz4 => Codec::Lz4,
                CodecArg::Zstd => Codec::Zstd,
            },
            idempotent: matches!(args.acks, AcksArg::All) || transactional,
            transactional_id: transactional.then(|| format!("lmq-perf-{topic}")),
            linger: Duration::from_millis(args.linger_ms),
            batch_bytes: args.batch_bytes,
            ..ProducerConfig::default()
        })
        .await?,
    );
    let progress = Arc::new(Progress::new());
    let base = progress.base;
    let partitions: Vec<(i32, Option<i64>)> = (0..args.create.partitions)
        .map(|partition| (partition, None))
        .collect();
    let consumers = if args.no_consume {
        None
    } else {
        Some(
            start_consumers(
                &bootstrap,
                &topic,
                &partitions,
                true,
                transactional,
                &progress,
            )
            .await,
        )
    };
    // Producing starts now: everything is timed against `base`, warm-up records are not.
    let from_ns = nanos(base.elapsed());
    let timed_from_ns = from_ns + nanos(Duration::from_secs_f64(args.warmup_s));
    progress
        .timed_from_ns
        .store(timed_from_ns, Ordering::Release);
    let schedule = Schedule {
        from_ns,
        until_ns: from_ns + nanos(Duration::from_secs_f64(args.duration_s)),
        rate: args.rate,
    };
    let (acks_tx, acks_rx) = mpsc::channel(ACKS_QUEUED_MAX);
    let collector = tokio::spawn(collect_acks(acks_rx, base, timed_from_ns));
    let runtime = tokio::runtime::Handle::current();
    let generator = {
        let producer = Arc::clone(&producer);
        let topic = topic.clone();
        let shape = Shape {
            record_size: args.record_size,
            keys: args.keys,
            transaction_records: args.transaction_records,
        };
        tokio::task::spawn_blocking(move || {
            generate(&runtime, &producer, &topic, shape, schedule, base, &acks_tx)
        })
    };
    let generated = generator.await??;
    if tokio::time::timeout(DRAIN_TIMEOUT, producer.flush())
        .await
        .is_err()
    {
        bail!("the producer did not drain within {DRAIN_TIMEOUT:?}");
    }
    let acked = tokio::time::timeout(DRAIN_TIMEOUT, collector)
        .await
        .context("acknowledgements did not arrive")???;
    let e2e = match consumers {
        Some(consumers) => Some(finish_consumers(consumers, &progress, acked.acked).await?),
        None => None,
    };
    let stored = probe::log_end_total(&bootstrap, &topic).await?;
    let stored = u64::try_from(stored).unwrap_or(0);
    let consumed = progress.records.load(Ordering::Acquire);
    let produce_ns = acked.last_ns.saturating_sub(from_ns);
    let produce_rps = rate(acked.acked, produce_ns);
    let record_bytes = args.record_size as u64;
    // A transaction's markers take offsets too: the log holds more than the records.
    let stored_all = if transactional {
        stored >= acked.acked
    } else {
        stored == acked.acked
    };
    let verified = acked.failed == 0 && stored_all && (args.no_consume || consumed == acked.acked);
    Ok(json!({
        "tool": "lmq-perf",
        "topic": topic,
        "partitions": args.create.partitions,
        "record_size": args.record_size,
        "linger_ms": args.linger_ms,
        "transaction_records": args.transaction_records,
        "target_rate": args.rate,
        "sent": generated.sent,
        "acked": acked.acked,
        "failed": acked.failed,
        "first_error": acked.first_error,
        "stored": stored,
        "consumed": if args.no_consume { Value::Null } else { json!(consumed) },
        "verified": verified,
        "send_rate": rate(generated.sent, generated.finished_ns.saturating_sub(from_ns)),
        "behind_schedule_ms_max": generated.behind_ns_max / 1_000_000,
        "produce_records_per_s": produce_rps,
        "produce_mb_per_s": produce_rps * args.record_size as f64 / 1e6,
        "produce_bytes": acked.acked * record_bytes,
        "consume_bytes": progress.bytes.load(Ordering::Acquire),
        "produce_latency_us": summary(&acked.latency),
        "e2e_latency_us": e2e.as_ref().map(summary),
    })
    .to_string())
}

pub async fn consume(args: ConsumeArgs) -> Result<String> {
    let (bootstrap, topic) = (args.topic.bootstrap, args.topic.topic);
    let admin = Admin::connect(client_config(&bootstrap)).await?;
    let ends: Vec<(i32, Option<i64>)> = admin
        .list_offsets(&topic, OffsetSpec::Latest)
        .await?
        .into_iter()
        .map(|(partition, end)| (partition, Some(end)))
        .collect();
    let expected: i64 = ends.iter().filter_map(|(_, end)| *end).sum();
    let expected = u64::try_from(expected).unwrap_or(0);
    let progress = Arc::new(Progress::new());
    let consumers = start_consumers(
        &bootstrap,
        &topic,
        &ends,
        false,
        args.read_committed,
        &progress,
    )
    .await;
    let started_ns = nanos(progress.base.elapsed());
    finish_consumers(consumers, &progress, expected).await?;
    let consumed = progress.records.load(Ordering::Acquire);
    let bytes = progress.bytes.load(Ordering::Acquire);
    let elapsed_ns = progress
        .last_ns
        .load(Ordering::Acquire)
        .saturating_sub(started_ns);
    Ok(json!({
        "tool": "lmq-perf",
        "topic": topic,
        "partitions": ends.len(),
        "expected": expected,
        "consumed": consumed,
        // read_committed: transaction markers take offsets of their own, so fewer records
        // than offsets are read; every partition was read to its end.
        "verified": if args.read_committed {
            consumed > 0 && consumed <= expected
        } else {
            consumed == expected
        },
        "consume_records_per_s": rate(consumed, elapsed_ns),
        "consume_mb_per_s": rate(bytes, elapsed_ns) / 1e6,
        "consume_bytes": bytes,
    })
    .to_string())
}
