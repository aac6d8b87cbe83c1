//! The native client's column of the compatibility matrix (compat-tests/clients/CONTRACT.md):
//! prints one `PASS s`, `FAIL s: reason` or `N/A s: reason` line per scenario on stdout,
//! diagnostics on stderr. Every scenario is bounded (85 s here, 90 s by the contract) and
//! works on its own topics and groups, `compat-lmq-native-<scenario>-<unique suffix>`.
//! Where the client has no API for a scenario it is N/A: consume-timestamp (no
//! offsets-for-times) and delete-records (no DeleteRecords).
//!
//! `cargo run -p lmq-client --example compat_matrix -- 127.0.0.1:9092 [SCENARIO...]`

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lmq::admin::GroupDescription;
use lmq::{
    Acks, Admin, ClientConfig, ClientError, Codec, ConsumedRecord, Consumer, ConsumerConfig,
    Delivery, GroupConfig, GroupConsumer, OffsetSpec, Producer, ProducerConfig, Record, StopHandle,
};
use tokio::task::JoinHandle;

const SCENARIOS: &[&str] = &[
    "metadata",
    "produce-acks-0",
    "produce-acks-1",
    "produce-acks-all",
    "compression-gzip",
    "compression-snappy",
    "compression-lz4",
    "compression-zstd",
    "keys-headers-nulls",
    "large-message",
    "consume-beginning",
    "consume-offset",
    "consume-timestamp",
    "consume-end",
    "idempotent",
    "group-rebalance",
    "commit-resume",
    "admin-topics",
    "admin-configs",
    "delete-records",
    "error-unknown-topic",
    "error-invalid-topic",
    "error-too-large",
    "error-out-of-range",
];

/// One scenario's bound; the contract allows 90 s.
const BUDGET: Duration = Duration::from_secs(85);

// Kafka error codes the error scenarios expect.
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;

/// Why a scenario did not pass.
enum Stop {
    Fail(String),
    NotApplicable(String),
}

type Check<T = ()> = Result<T, Stop>;

impl From<ClientError> for Stop {
    fn from(error: ClientError) -> Self {
        Stop::Fail(error.to_string())
    }
}

fn fail<T>(reason: impl Into<String>) -> Check<T> {
    Err(Stop::Fail(reason.into()))
}

fn log(message: &str) {
    eprintln!("[lmq-native] {message}");
}

fn one_line(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 400 {
        format!("{}...", text.chars().take(397).collect::<String>())
    } else {
        text
    }
}

fn bytes(text: String) -> Option<Bytes> {
    Some(Bytes::from(text))
}

fn show(value: Option<&Bytes>) -> String {
    match value {
        None => "null".to_string(),
        Some(value) if value.len() > 40 => format!("{} bytes", value.len()),
        Some(value) => format!("{:?}", String::from_utf8_lossy(value)),
    }
}

/// xorshift64*: random bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> usize {
        usize::try_from(self.next() % bound.max(1)).unwrap_or(0)
    }

    fn fill(&mut self, length: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(length + 8);
        while out.len() < length {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(length);
        out
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
}

/// A spawned task that is aborted when dropped, so a scenario that times out or fails leaves
/// no group member running.
struct Task<T>(JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What group members consumed: (member, partition, offset, value).
type Seen = Arc<Mutex<Vec<(String, i32, i64, String)>>>;

fn seen_now(seen: &Seen) -> Vec<(String, i32, i64, String)> {
    seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Polls `probe` every 200 ms until it yields a value or `timeout` passes (then the last
/// reason it gave).
async fn eventually<T, F, Fut>(timeout: Duration, probe: F) -> Check<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Check<Result<T, String>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let reason = match probe().await? {
            Ok(value) => return Ok(value),
            Err(reason) => reason,
        };
        if Instant::now() >= deadline {
            return fail(format!("after {} s: {reason}", timeout.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Ctx {
    bootstrap: String,
    scenario: String,
    suffix: String,
}

impl Ctx {
    fn name(&self, tag: &str) -> String {
        format!("compat-lmq-native-{}-{}{tag}", self.scenario, self.suffix)
    }

    fn client(&self, id: &str) -> ClientConfig {
        ClientConfig {
            brokers: vec![self.bootstrap.clone()],
            client_id: format!("compat-lmq-native-{id}"),
            ..ClientConfig::default()
        }
    }

    async fn admin(&self) -> Check<Admin> {
        Ok(Admin::connect(self.client("admin")).await?)
    }

    /// Creates a topic (replication factor 1) and waits until every partition has a leader.
    async fn create_topic(
        &self,
        admin: &Admin,
        topic: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Check {
        admin
            .create_topic(topic, partitions, 1, configs)
            .await
            .map_err(|error| Stop::Fail(format!("creating {topic}: {error}")))?;
        let wanted = usize::try_from(partitions).unwrap_or(0);
        eventually(Duration::from_secs(15), || async {
            Ok(match admin.describe_topic(topic).await {
                Ok(info)
                    if info.partitions.len() == wanted
                        && info.partitions.iter().all(|p| p.leader >= 0) =>
                {
                    Ok(())
                }
                Ok(info) => Err(format!("{topic} is described as {info:?}")),
                Err(error) => Err(format!("describing {topic}: {error}")),
            })
        })
        .await
    }

    async fn producer(&self, acks: Acks, codec: Codec, idempotent: bool) -> Check<Producer> {
        Ok(Producer::connect(ProducerConfig {
            client: self.client("producer"),
            acks,
            codec,
            idempotent,
            ..ProducerConfig::default()
        })
        .await?)
    }

    /// Queues every record, then waits for each acknowledgement, in send order.
    async fn send_all(
        &self,
        producer: &Producer,
        topic: &str,
        records: &[Record],
    ) -> Check<Vec<Delivery>> {
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            pending.push(producer.enqueue(topic, record.clone()).await?);
        }
        producer.flush().await;
        let mut deliveries = Vec::with_capacity(pending.len());
        for (index, receiver) in pending.into_iter().enumerate() {
            match receiver.await {
                Ok(Ok(delivery)) => deliveries.push(delivery),
                Ok(Err(error)) => return fail(format!("record #{index} failed: {error}")),
                Err(_) => return fail(format!("record #{index}: the producer dropped it")),
            }
        }
        Ok(deliveries)
    }

    /// A plain consumer from `starts`, polled until it holds at least `expected` records and
    /// has reached the log end of every partition, or `timeout` passes.
    async fn read(
        &self,
        topic: &str,
        starts: &[(i32, OffsetSpec)],
        expected: usize,
        timeout: Duration,
    ) -> Check<Vec<ConsumedRecord>> {
        let mut consumer = Consumer::connect(ConsumerConfig {
            client: self.client("consumer"),
            max_wait: Duration::from_millis(100),
            ..ConsumerConfig::default()
        })
        .await?;
        for (partition, start) in starts {
            consumer.assign(topic, *partition, *start).await?;
        }
        let admin = self.admin().await?;
        let deadline = Instant::now() + timeout;
        let mut records = Vec::new();
        loop {
            records.extend(consumer.poll().await?);
            if records.len() >= expected {
                let ends: HashMap<i32, i64> = admin
                    .list_offsets(topic, OffsetSpec::Latest)
                    .await?
                    .into_iter()
                    .collect();
                if consumer.positions().iter().all(|(_, partition, position)| {
                    ends.get(partition).is_none_or(|end| position >= end)
                }) {
                    return Ok(records);
                }
            }
            if Instant::now() >= deadline {
                log(&format!(
                    "read {} of {expected} records of {topic} in {} s",
                    records.len(),
                    timeout.as_secs()
                ));
                return Ok(records);
            }
        }
    }

    async fn read_all(
        &self,
        topic: &str,
        partitions: i32,
        expected: usize,
    ) -> Check<Vec<ConsumedRecord>> {
        let starts: Vec<(i32, OffsetSpec)> = (0..partitions)
            .map(|partition| (partition, OffsetSpec::Earliest))
            .collect();
        self.read(topic, &starts, expected, Duration::from_secs(30))
            .await
    }
}

/// Records `k-<i>` / `<prefix>-<i>`, to `partition` (None: by key), with `headers`.
fn numbered(
    prefix: &str,
    range: std::ops::Range<usize>,
    partition: Option<i32>,
    headers: &[(String, Option<Bytes>)],
) -> Vec<Record> {
    range
        .map(|index| Record {
            key: bytes(format!("k-{index}")),
            value: bytes(format!("{prefix}-{index}")),
            headers: headers.to_vec(),
            partition,
            timestamp: None,
        })
        .collect()
}

/// The full round trip: every record read back once, at the partition and offset its
/// acknowledgement gave, with its key, value and headers, in send order per partition, and
/// nothing else.
fn round_trip(sent: &[Record], deliveries: &[Delivery], consumed: &[ConsumedRecord]) -> Check {
    let mut placed: HashMap<(i32, i64), usize> = HashMap::new();
    let mut last: HashMap<i32, i64> = HashMap::new();
    for (index, (record, delivery)) in sent.iter().zip(deliveries).enumerate() {
        if delivery.offset < 0 {
            return fail(format!("record #{index} acknowledged without an offset"));
        }
        if record
            .partition
            .is_some_and(|wanted| wanted != delivery.partition)
        {
            return fail(format!(
                "record #{index} sent to partition {:?}, acknowledged on {}",
                record.partition, delivery.partition
            ));
        }
        if last
            .insert(delivery.partition, delivery.offset)
            .is_some_and(|previous| previous >= delivery.offset)
        {
            return fail(format!(
                "partition {}: acknowledged offsets not increasing in send order at #{index}",
                delivery.partition
            ));
        }
        placed.insert((delivery.partition, delivery.offset), index);
    }
    let mut seen = BTreeSet::new();
    let mut read_last: HashMap<i32, i64> = HashMap::new();
    for record in consumed {
        let at = format!("{}[{}]@{}", record.topic, record.partition, record.offset);
        let Some(&index) = placed.get(&(record.partition, record.offset)) else {
            return fail(format!("read {at}, which was never acknowledged"));
        };
        if !seen.insert(index) {
            return fail(format!("read {at} twice"));
        }
        if read_last
            .insert(record.partition, record.offset)
            .is_some_and(|previous| previous >= record.offset)
        {
            return fail(format!("{at} read out of order"));
        }
        let wanted = &sent[index];
        if record.key != wanted.key {
            return fail(format!(
                "{at}: key {}, sent {}",
                show(record.key.as_ref()),
                show(wanted.key.as_ref())
            ));
        }
        if record.value != wanted.value {
            return fail(format!(
                "{at}: value {}, sent {}",
                show(record.value.as_ref()),
                show(wanted.value.as_ref())
            ));
        }
        if record.headers != wanted.headers {
            return fail(format!(
                "{at}: headers {:?}, sent {:?}",
                record.headers, wanted.headers
            ));
        }
    }
    if seen.len() != sent.len() {
        let missing: Vec<usize> = (0..sent.len())
            .filter(|index| !seen.contains(index))
            .take(3)
            .collect();
        return fail(format!(
            "read {} of {} acknowledged records; first missing #{missing:?}",
            seen.len(),
            sent.len()
        ));
    }
    Ok(())
}

/// Exactly `offsets` of partition 0 with the values of `sent`, in order.
fn exactly(consumed: &[ConsumedRecord], offsets: std::ops::Range<i64>, sent: &[Record]) -> Check {
    let got: Vec<(i32, i64)> = consumed.iter().map(|r| (r.partition, r.offset)).collect();
    let want: Vec<(i32, i64)> = offsets.map(|offset| (0, offset)).collect();
    if got != want {
        return fail(format!(
            "read {} records {:?}..{:?}, expected {} {:?}..{:?}",
            got.len(),
            got.first(),
            got.last(),
            want.len(),
            want.first(),
            want.last()
        ));
    }
    for (record, wanted) in consumed.iter().zip(sent) {
        if record.key != wanted.key || record.value != wanted.value {
            return fail(format!(
                "offset {}: read {}/{}, sent {}/{}",
                record.offset,
                show(record.key.as_ref()),
                show(record.value.as_ref()),
                show(wanted.key.as_ref()),
                show(wanted.value.as_ref())
            ));
        }
    }
    Ok(())
}

fn index_of(value: Option<&Bytes>) -> Option<usize> {
    let text = std::str::from_utf8(value?).ok()?;
    text.rsplit('-').next()?.parse().ok()
}

async fn produce_acks(ctx: &Ctx, acks: Acks) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    let header = vec![("acks".to_string(), bytes(format!("{acks:?}")))];
    let sent = numbered("v", 0..200, None, &header);
    // Idempotence off: this scenario is about acks alone (see `idempotent`).
    let producer = ctx.producer(acks, Codec::None, false).await?;
    let deliveries = ctx.send_all(&producer, &topic, &sent).await?;
    producer.close().await;
    let consumed = ctx.read_all(&topic, 3, sent.len()).await?;
    if acks != Acks::None {
        return round_trip(&sent, &deliveries, &consumed);
    }
    // acks=0: no acknowledgement to compare with, only the values and their order.
    let mut values: Vec<Option<Bytes>> = consumed.iter().map(|r| r.value.clone()).collect();
    values.sort();
    let mut wanted: Vec<Option<Bytes>> = sent.iter().map(|r| r.value.clone()).collect();
    wanted.sort();
    if values != wanted {
        let distinct: BTreeSet<&Option<Bytes>> = values.iter().collect();
        return fail(format!(
            "read {} records ({} distinct values), sent {}",
            values.len(),
            distinct.len(),
            wanted.len()
        ));
    }
    let mut last: HashMap<i32, usize> = HashMap::new();
    for record in &consumed {
        let index = index_of(record.value.as_ref()).unwrap_or(usize::MAX);
        if last
            .insert(record.partition, index)
            .is_some_and(|previous| previous >= index)
        {
            return fail(format!(
                "partition {}: v-{index} read after an earlier-sent record",
                record.partition
            ));
        }
    }
    Ok(())
}

async fn compression(ctx: &Ctx, codec: Codec) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    let mut rng = Rng::new(match codec {
        Codec::None => 1,
        Codec::Gzip => 2,
        Codec::Snappy => 3,
        Codec::Lz4 => 4,
        Codec::Zstd => 5,
    });
    let header = vec![("codec".to_string(), bytes(format!("{codec:?}")))];
    let sent: Vec<Record> = (0..200)
        .map(|index| {
            let mut value = format!("record {index} compressed with {codec:?}; ")
                .repeat(1 + rng.below(40))
                .into_bytes();
            let noise = rng.below(64);
            value.extend(rng.fill(noise));
            Record {
                key: bytes(format!("k-{index}")),
                value: Some(Bytes::from(value)),
                headers: header.clone(),
                partition: None,
                timestamp: None,
            }
        })
        .collect();
    let producer = ctx.producer(Acks::All, codec, true).await?;
    let deliveries = ctx.send_all(&producer, &topic, &sent).await?;
    producer.close().await;
    let consumed = ctx.read_all(&topic, 3, sent.len()).await?;
    round_trip(&sent, &deliveries, &consumed)
}

async fn keys_headers_nulls(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    let mut rng = Rng::new(60);
    let mut keyed = 0usize;
    let mut sent = Vec::new();
    for index in 0..60usize {
        let key = if index % 10 == 3 {
            None
        } else {
            let key: Vec<u8> = (0..5)
                .map(|j| u8::try_from((keyed * 5 + j) % 256).unwrap_or(0))
                .collect();
            keyed += 1;
            Some(Bytes::from(key))
        };
        let value = if index % 7 == 5 {
            None
        } else {
            let length = 1 + rng.below(300);
            Some(Bytes::from(rng.fill(length)))
        };
        // Two headers each, the second with an empty (not null) value; the same two header
        // keys on every record. One record cannot repeat a header key with this client:
        // `Record::headers` is encoded through the wire crate's IndexMap, which keeps one
        // value per key.
        let headers = vec![
            ("h1".to_string(), bytes(format!("header of #{index}"))),
            ("h2".to_string(), Some(Bytes::new())),
        ];
        sent.push(Record {
            key,
            value,
            headers,
            partition: Some(i32::try_from(index % 3).unwrap_or(0)),
            timestamp: None,
        });
    }
    let covered: BTreeSet<u8> = sent
        .iter()
        .filter_map(|record| record.key.as_ref())
        .flat_map(|key| key.iter().copied())
        .collect();
    if covered.len() != 256 {
        return fail(format!(
            "test bug: the keys cover {} byte values",
            covered.len()
        ));
    }
    let producer = ctx.producer(Acks::All, Codec::None, true).await?;
    let deliveries = ctx.send_all(&producer, &topic, &sent).await?;
    producer.close().await;
    let consumed = ctx.read_all(&topic, 3, sent.len()).await?;
    round_trip(&sent, &deliveries, &consumed)
}

async fn large_message(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    let nanos = u64::try_from(now_nanos() % u128::from(u64::MAX)).unwrap_or(1);
    let value = Bytes::from(Rng::new(nanos).fill(900_000));
    let sent = vec![Record {
        key: None,
        value: Some(value),
        headers: Vec::new(),
        partition: Some(0),
        timestamp: None,
    }];
    let producer = ctx.producer(Acks::All, Codec::None, true).await?;
    let deliveries = ctx.send_all(&producer, &topic, &sent).await?;
    producer.close().await;
    let consumed = ctx
        .read(
            &topic,
            &[(0, OffsetSpec::Earliest)],
            1,
            Duration::from_secs(30),
        )
        .await?;
    round_trip(&sent, &deliveries, &consumed)
}

/// Records `k-<i>` / `<prefix>-<i>` for i in `range` to partition 0 (acks=all, idempotent),
/// acknowledged at contiguous offsets; returns them.
async fn produce_to_zero(
    ctx: &Ctx,
    topic: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> Check<Vec<Record>> {
    let sent = numbered(prefix, range, Some(0), &[]);
    let producer = ctx.producer(Acks::All, Codec::None, true).await?;
    let deliveries = ctx.send_all(&producer, topic, &sent).await?;
    producer.close().await;
    let offsets: Vec<i64> = deliveries.iter().map(|d| d.offset).collect();
    if offsets.windows(2).any(|pair| pair[1] != pair[0] + 1) {
        return fail(format!("acknowledged offsets not contiguous: {offsets:?}"));
    }
    Ok(sent)
}

async fn consume_from(ctx: &Ctx, count: usize, start: i64) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    let sent = produce_to_zero(ctx, &topic, "v", 0..count).await?;
    let spec = if start == 0 {
        OffsetSpec::Earliest
    } else {
        OffsetSpec::Offset(start)
    };
    let skip = usize::try_from(start).unwrap_or(0);
    let consumed = ctx
        .read(&topic, &[(0, spec)], count - skip, Duration::from_secs(30))
        .await?;
    let end = i64::try_from(count).unwrap_or(0);
    exactly(&consumed, start..end, &sent[skip..])
}

async fn consume_end(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    produce_to_zero(ctx, &topic, "old", 0..20).await?;
    let mut consumer = Consumer::connect(ConsumerConfig {
        client: ctx.client("consumer"),
        max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    })
    .await?;
    // `assign` resolves the latest offset at once: the consumer is positioned when it returns.
    consumer.assign(&topic, 0, OffsetSpec::Latest).await?;
    let position = consumer
        .positions()
        .first()
        .map(|(_, _, position)| *position);
    if position != Some(20) {
        return fail(format!("positioned at {position:?}, expected the end, 20"));
    }
    let sent = produce_to_zero(ctx, &topic, "new", 20..30).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut consumed = Vec::new();
    while consumed.len() < 10 && Instant::now() < deadline {
        consumed.extend(consumer.poll().await?);
    }
    // One more poll: nothing else may come.
    consumed.extend(consumer.poll().await?);
    exactly(&consumed, 20..30, &sent)
}

async fn idempotent(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    let sent = numbered("v", 0..300, None, &[]);
    let producer = ctx.producer(Acks::All, Codec::None, true).await?;
    let deliveries = ctx.send_all(&producer, &topic, &sent).await?;
    producer.close().await;
    let consumed = ctx.read_all(&topic, 3, sent.len()).await?;
    round_trip(&sent, &deliveries, &consumed)
}

/// A group member consuming `topic`, recording what it handled in `seen` as `name`.
async fn member(
    ctx: &Ctx,
    group: &str,
    topic: &str,
    name: &str,
    seen: &Seen,
) -> Check<(StopHandle, Task<Result<(), ClientError>>)> {
    let mut consumer = GroupConsumer::connect(GroupConfig {
        client: ctx.client(name),
        group: group.to_string(),
        session_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(500),
        attempts: 1,
        dead_letter_topic: Some(ctx.name("-dlq")),
        start: OffsetSpec::Earliest,
        ..GroupConfig::default()
    })
    .await?;
    let seen = Arc::clone(seen);
    let who = name.to_string();
    consumer.subscribe(topic, move |record| {
        let value = record
            .value
            .as_deref()
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default();
        seen.lock().unwrap_or_else(PoisonError::into_inner).push((
            who.clone(),
            record.partition,
            record.offset,
            value,
        ));
        Ok(())
    });
    let stop = consumer.stop_handle();
    let task = tokio::spawn(async move { consumer.run().await });
    Ok((stop, Task(task)))
}

/// Partitions of each member (by client id) once the group is stable.
fn holdings(group: &GroupDescription) -> BTreeMap<String, BTreeSet<i32>> {
    group
        .members
        .iter()
        .map(|member| {
            let partitions = member
                .assignment
                .iter()
                .flat_map(|(_, partitions)| partitions.iter().copied())
                .collect();
            (member.client_id.clone(), partitions)
        })
        .collect()
}

async fn stopped(name: &str, stop: &StopHandle, task: &mut Task<Result<(), ClientError>>) -> Check {
    stop.stop();
    let started = Instant::now();
    let outcome = match tokio::time::timeout(Duration::from_secs(20), &mut task.0).await {
        Err(_) => fail(format!("member {name} did not stop within 20 s")),
        Ok(Err(error)) => fail(format!("member {name} crashed: {error}")),
        Ok(Ok(Err(error))) => fail(format!("member {name} failed: {error}")),
        Ok(Ok(Ok(()))) => Ok(()),
    };
    log(&format!(
        "member {name} stopped in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    outcome
}

async fn group_rebalance(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    let group = ctx.name("");
    ctx.create_topic(&admin, &topic, 4, &BTreeMap::new())
        .await?;
    let all: BTreeSet<i32> = (0..4).collect();
    let (a_id, b_id) = ("compat-lmq-native-a", "compat-lmq-native-b");
    let seen: Seen = Arc::default();
    let (stop_a, mut task_a) = member(ctx, &group, &topic, "a", &seen).await?;
    let (stop_b, mut task_b) = member(ctx, &group, &topic, "b", &seen).await?;
    let shared = eventually(Duration::from_secs(30), || async {
        let described = admin.describe_group(&group).await?;
        let held = holdings(&described);
        let (a, b) = (held.get(a_id), held.get(b_id));
        Ok(match (a, b) {
            (Some(a), Some(b))
                if described.state == "Stable"
                    && held.len() == 2
                    && !a.is_empty()
                    && !b.is_empty()
                    && a.is_disjoint(b)
                    && a | b == all =>
            {
                Ok((a.clone(), b.clone()))
            }
            _ => Err(format!(
                "group {} holds {held:?}; expected a and b non-empty, disjoint, covering 0..3",
                described.state
            )),
        })
    })
    .await?;
    let (owned_a, owned_b) = shared;
    log(&format!("a holds {owned_a:?}, b holds {owned_b:?}"));

    let producer = ctx.producer(Acks::All, Codec::None, true).await?;
    let spread = |prefix: &str, count: usize| -> Vec<Record> {
        (0..count)
            .map(|index| Record {
                key: bytes(format!("k-{prefix}-{index}")),
                value: bytes(format!("{prefix}-{index}")),
                headers: Vec::new(),
                partition: Some(i32::try_from(index % 4).unwrap_or(0)),
                timestamp: None,
            })
            .collect()
    };
    ctx.send_all(&producer, &topic, &spread("one", 200)).await?;
    let of = |prefix: &str| -> Vec<(String, i32, i64, String)> {
        seen_now(&seen)
            .into_iter()
            .filter(|(_, _, _, value)| value.starts_with(&format!("{prefix}-")))
            .collect()
    };
    let distinct = |rows: &[(String, i32, i64, String)]| -> usize {
        rows.iter()
            .map(|(_, _, _, value)| value)
            .collect::<BTreeSet<_>>()
            .len()
    };
    let _ = eventually(Duration::from_secs(30), || async {
        let got = distinct(&of("one"));
        Ok(if got >= 200 {
            Ok(())
        } else {
            Err(format!("{got} of 200"))
        })
    })
    .await;
    let one = of("one");
    if one.len() != 200 || distinct(&one) != 200 {
        return fail(format!(
            "the 200 records were consumed {} times, {} distinct, within 30 s",
            one.len(),
            distinct(&one)
        ));
    }
    let wrong: Vec<_> = one
        .iter()
        .filter(|(who, partition, _, _)| {
            let owned = if who == "a" { &owned_a } else { &owned_b };
            !owned.contains(partition)
        })
        .take(2)
        .collect();
    if !wrong.is_empty() {
        return fail(format!(
            "records consumed by a member not owning their partition: {wrong:?}"
        ));
    }

    stopped("b", &stop_b, &mut task_b).await?;
    let left = Instant::now();
    eventually(Duration::from_secs(30), || async {
        let described = admin.describe_group(&group).await?;
        let held = holdings(&described);
        Ok(
            if described.state == "Stable" && held.len() == 1 && held.get(a_id) == Some(&all) {
                Ok(())
            } else {
                Err(format!(
                    "after b left, group {} holds {held:?}; expected a alone with 0..3",
                    described.state
                ))
            },
        )
    })
    .await?;
    let moved = left.elapsed().as_secs_f64();
    log(&format!(
        "b's partitions moved to a {moved:.1} s after b stopped"
    ));
    if moved >= 8.0 {
        // Not a failure of the scenario (it asks for the hand-over, not its speed).
        log("that is the session timeout (10 s): b's LeaveGroup did not take effect");
    }
    ctx.send_all(&producer, &topic, &spread("two", 100)).await?;
    producer.close().await;
    let _ = eventually(Duration::from_secs(30), || async {
        let got = distinct(&of("two"));
        Ok(if got >= 100 {
            Ok(())
        } else {
            Err(format!("{got} of 100"))
        })
    })
    .await;
    let two = of("two");
    let by_a = two.iter().filter(|(who, _, _, _)| who == "a").count();
    if two.len() != 100 || distinct(&two) != 100 || by_a != 100 {
        return fail(format!(
            "after b left, the 100 new records were consumed {} times ({} distinct, {by_a} by a)",
            two.len(),
            distinct(&two)
        ));
    }
    let again = of("one").len();
    if again != 200 {
        return fail(format!(
            "{} of the first 200 records were consumed again after b left (b's commit lost?)",
            again - 200
        ));
    }
    stopped("a", &stop_a, &mut task_a).await
}

async fn commit_resume(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    let group = ctx.name("");
    ctx.create_topic(&admin, &topic, 1, &BTreeMap::new())
        .await?;
    // The group consumer commits after every batch its handler finished, and has no manual
    // commit: so the first 100 records are produced alone, the member stops after the 100th
    // (committing offset 100 before it leaves), and the last 50 come after.
    produce_to_zero(ctx, &topic, "v", 0..100).await?;
    let seen: Seen = Arc::default();
    let (stop, mut task) = member(ctx, &group, &topic, "first", &seen).await?;
    let _ = eventually(Duration::from_secs(30), || async {
        let got = seen_now(&seen).len();
        Ok(if got >= 100 {
            Ok(())
        } else {
            Err(format!("{got} of 100"))
        })
    })
    .await;
    stopped("first", &stop, &mut task).await?;
    let offsets: Vec<i64> = seen_now(&seen).iter().map(|row| row.2).collect();
    if offsets != (0..100).collect::<Vec<i64>>() {
        return fail(format!(
            "the first member processed {} records, offsets {:?}..{:?}; expected 0..99",
            offsets.len(),
            offsets.first(),
            offsets.last()
        ));
    }
    let committed = admin
        .group_lag(&group)
        .await?
        .into_iter()
        .find(|lag| lag.topic == topic && lag.partition == 0)
        .and_then(|lag| lag.committed);
    if committed != Some(100) {
        return fail(format!(
            "committed offset after the first member closed: {committed:?}, expected 100"
        ));
    }
    let last = produce_to_zero(ctx, &topic, "v", 100..150).await?;
    let resumed: Seen = Arc::default();
    let (stop, mut task) = member(ctx, &group, &topic, "second", &resumed).await?;
    let started = Instant::now();
    let _ = eventually(Duration::from_secs(30), || async {
        let got = seen_now(&resumed).len();
        Ok(if got >= 50 {
            Ok(())
        } else {
            Err(format!("{got} of 50"))
        })
    })
    .await;
    let waited = started.elapsed().as_secs_f64();
    log(&format!(
        "the second member read {} records in {waited:.1} s",
        seen_now(&resumed).len()
    ));
    if waited >= 8.0 {
        // The coordinator waited for the first member's session to expire before it let the
        // second one in: the first member's LeaveGroup did not take effect.
        log(
            "that is the first member's session timeout (10 s): its LeaveGroup did not take effect",
        );
    }
    // A moment more, for anything that should not come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stopped("second", &stop, &mut task).await?;
    let rows = seen_now(&resumed);
    let offsets: Vec<i64> = rows.iter().map(|row| row.2).collect();
    if offsets != (100..150).collect::<Vec<i64>>() {
        return fail(format!(
            "the new member processed {} records, offsets {:?}..{:?}; expected 100..149",
            offsets.len(),
            offsets.first(),
            offsets.last()
        ));
    }
    for (row, record) in rows.iter().zip(&last) {
        if record.value.as_deref() != Some(row.3.as_bytes()) {
            return fail(format!("offset {}: value {:?}", row.2, row.3));
        }
    }
    Ok(())
}

async fn admin_topics(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    let listed = |wanted: bool| {
        let admin = &admin;
        let topic = &topic;
        move || async move {
            let names: BTreeSet<String> = admin
                .list_topics(false)
                .await?
                .into_iter()
                .map(|info| info.name)
                .collect();
            Ok(if names.contains(topic) == wanted {
                Ok(())
            } else {
                Err(format!(
                    "{topic} {} the listing",
                    if wanted { "is not in" } else { "is still in" }
                ))
            })
        }
    };
    eventually(Duration::from_secs(10), listed(true)).await?;
    admin.create_partitions(&topic, 5).await?;
    eventually(Duration::from_secs(10), || async {
        let count = admin.describe_topic(&topic).await?.partitions.len();
        Ok(if count == 5 {
            Ok(())
        } else {
            Err(format!(
                "{topic} is described with {count} partitions, expected 5"
            ))
        })
    })
    .await?;
    admin.delete_topic(&topic).await?;
    eventually(Duration::from_secs(10), listed(false)).await
}

async fn admin_configs(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    let configs = BTreeMap::from([("retention.ms".to_string(), "3600000".to_string())]);
    ctx.create_topic(&admin, &topic, 3, &configs).await?;
    let shows = |wanted: &'static str| {
        let admin = &admin;
        let topic = &topic;
        move || async move {
            let value = admin
                .describe_configs(topic)
                .await?
                .into_iter()
                .find(|entry| entry.name == "retention.ms")
                .and_then(|entry| entry.value);
            Ok(if value.as_deref() == Some(wanted) {
                Ok(())
            } else {
                Err(format!("retention.ms is {value:?}, expected {wanted}"))
            })
        }
    };
    eventually(Duration::from_secs(10), shows("3600000")).await?;
    let altered = BTreeMap::from([("retention.ms".to_string(), "7200000".to_string())]);
    admin.alter_configs(&topic, &altered, &[]).await?;
    eventually(Duration::from_secs(10), shows("7200000")).await
}

fn kafka_code(error: &ClientError) -> Option<i16> {
    match error {
        ClientError::Kafka { code, .. } => Some(*code),
        _ => None,
    }
}

async fn error_unknown_topic(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    match admin.describe_topic(&topic).await {
        Err(error) if kafka_code(&error) == Some(UNKNOWN_TOPIC_OR_PARTITION) => Ok(()),
        Err(error) => fail(format!("expected UNKNOWN_TOPIC_OR_PARTITION, got: {error}")),
        Ok(info) => fail(format!("the missing topic was described: {info:?}")),
    }
}

async fn error_invalid_topic(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    match admin.create_topic("bad/name", 3, 1, &BTreeMap::new()).await {
        Err(error) if kafka_code(&error) == Some(INVALID_TOPIC_EXCEPTION) => Ok(()),
        Err(error) => fail(format!("expected INVALID_TOPIC_EXCEPTION, got: {error}")),
        Ok(()) => fail("creating bad/name succeeded"),
    }
}

async fn error_too_large(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    // The native producer has no max request size to raise: it sends whatever it is given.
    let producer = ctx.producer(Acks::All, Codec::None, true).await?;
    let record = Record {
        key: None,
        value: Some(Bytes::from(Rng::new(2).fill(2_000_000))),
        headers: Vec::new(),
        partition: Some(0),
        timestamp: None,
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(40),
        producer.send_record(&topic, record),
    )
    .await;
    drop(producer);
    match outcome {
        Err(_) => return fail("the 2,000,000-byte record got no answer within 40 s"),
        Ok(Ok(delivery)) => {
            return fail(format!(
                "the 2,000,000-byte record was accepted at {delivery:?}"
            ));
        }
        Ok(Err(error)) => {
            // The producer reports a batch's broker error inside its delivery error's text.
            let text = error.to_string();
            if !text.contains("MESSAGE_TOO_LARGE") {
                return fail(format!("expected MESSAGE_TOO_LARGE, got: {text}"));
            }
        }
    }
    let ends = admin.list_offsets(&topic, OffsetSpec::Latest).await?;
    if ends.iter().any(|(_, end)| *end != 0) {
        return fail(format!("the topic is not empty: log ends {ends:?}"));
    }
    Ok(())
}

async fn error_out_of_range(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    produce_to_zero(ctx, &topic, "v", 0..10).await?;
    // The plain consumer has no offset reset policy: a fetch error reaches the caller.
    let mut consumer = Consumer::connect(ConsumerConfig {
        client: ctx.client("consumer"),
        max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    })
    .await?;
    consumer.assign(&topic, 0, OffsetSpec::Offset(1000)).await?;
    match consumer.poll().await {
        Err(error) if kafka_code(&error) == Some(OFFSET_OUT_OF_RANGE) => Ok(()),
        Err(error) => fail(format!("expected OFFSET_OUT_OF_RANGE, got: {error}")),
        Ok(records) => fail(format!(
            "fetching offset 1000 of 10 returned {} records and no error",
            records.len()
        )),
    }
}

async fn scenario(ctx: &Ctx) -> Check {
    match ctx.scenario.as_str() {
        "metadata" => metadata(ctx).await,
        "produce-acks-0" => produce_acks(ctx, Acks::None).await,
        "produce-acks-1" => produce_acks(ctx, Acks::Leader).await,
        "produce-acks-all" => produce_acks(ctx, Acks::All).await,
        "compression-gzip" => compression(ctx, Codec::Gzip).await,
        "compression-snappy" => compression(ctx, Codec::Snappy).await,
        "compression-lz4" => compression(ctx, Codec::Lz4).await,
        "compression-zstd" => compression(ctx, Codec::Zstd).await,
        "keys-headers-nulls" => keys_headers_nulls(ctx).await,
        "large-message" => large_message(ctx).await,
        "consume-beginning" => consume_from(ctx, 50, 0).await,
        "consume-offset" => consume_from(ctx, 100, 40).await,
        "consume-timestamp" => Err(Stop::NotApplicable(
            "the native client has no offsets-for-times (Admin::list_offsets and \
             Consumer::assign take OffsetSpec::Earliest/Latest/Offset only)"
                .to_string(),
        )),
        "consume-end" => consume_end(ctx).await,
        "idempotent" => idempotent(ctx).await,
        "group-rebalance" => group_rebalance(ctx).await,
        "commit-resume" => commit_resume(ctx).await,
        "admin-topics" => admin_topics(ctx).await,
        "admin-configs" => admin_configs(ctx).await,
        "delete-records" => Err(Stop::NotApplicable(
            "the native client has no DeleteRecords API".to_string(),
        )),
        "error-unknown-topic" => error_unknown_topic(ctx).await,
        "error-invalid-topic" => error_invalid_topic(ctx).await,
        "error-too-large" => error_too_large(ctx).await,
        "error-out-of-range" => error_out_of_range(ctx).await,
        _ => fail("unknown scenario"),
    }
}

async fn metadata(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let brokers = admin.cluster().brokers().await;
    if brokers.is_empty() {
        return fail("the metadata lists no brokers");
    }
    for (node, address) in &brokers {
        let (host, port) = address.rsplit_once(':').unwrap_or(("", ""));
        if host.is_empty() || port.parse::<u16>().is_err() {
            return fail(format!("broker {node} has no host:port: {address:?}"));
        }
    }
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    let info = admin.describe_topic(&topic).await?;
    let partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
    if partitions != [0, 1, 2] || info.partitions.iter().any(|p| p.leader < 0) {
        return fail(format!("{topic} is described as {info:?}"));
    }
    log(&format!(
        "brokers {brokers:?}; {topic}: 3 partitions with leaders"
    ));
    Ok(())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(bootstrap) = args.next() else {
        eprintln!("usage: compat_matrix BOOTSTRAP [SCENARIO...]");
        std::process::exit(2);
    };
    let mut chosen: Vec<String> = args.collect();
    if chosen.is_empty() {
        chosen = SCENARIOS.iter().map(ToString::to_string).collect();
    }
    for name in chosen {
        let ctx = Ctx {
            bootstrap: bootstrap.clone(),
            suffix: format!("{:x}-{:x}", now_nanos() % (1 << 40), std::process::id()),
            scenario: name.clone(),
        };
        let started = Instant::now();
        let line = match tokio::time::timeout(BUDGET, scenario(&ctx)).await {
            Ok(Ok(())) => format!("PASS {name}"),
            Ok(Err(Stop::NotApplicable(reason))) => format!("N/A {name}: {}", one_line(&reason)),
            Ok(Err(Stop::Fail(reason))) => format!("FAIL {name}: {}", one_line(&reason)),
            Err(_) => format!("FAIL {name}: did not finish within {} s", BUDGET.as_secs()),
        };
        log(&format!("{name}: {:.1} s", started.elapsed().as_secs_f64()));
        println!("{line}");
    }
}
