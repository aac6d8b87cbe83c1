//! Shared by every scenario: outcomes, limits, naming, the client configs, random bytes, polling.

use super::*;

/// One scenario's bound; the contract allows 90 s.
pub(crate) const BUDGET: Duration = Duration::from_secs(85);

// Kafka error codes the error scenarios expect.
pub(crate) const OFFSET_OUT_OF_RANGE: i16 = 1;
pub(crate) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub(crate) const INVALID_TOPIC_EXCEPTION: i16 = 17;

/// Why a scenario did not pass.
pub(crate) enum Stop {
    Fail(String),
}

pub(crate) type Check<T = ()> = Result<T, Stop>;

impl From<ClientError> for Stop {
    fn from(error: ClientError) -> Self {
        Stop::Fail(error.to_string())
    }
}

pub(crate) fn fail<T>(reason: impl Into<String>) -> Check<T> {
    Err(Stop::Fail(reason.into()))
}

pub(crate) fn log(message: &str) {
    eprintln!("[lmq-native] {message}");
}

pub(crate) fn one_line(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 400 {
        format!("{}...", text.chars().take(397).collect::<String>())
    } else {
        text
    }
}

pub(crate) fn bytes(text: String) -> Option<Bytes> {
    Some(Bytes::from(text))
}

pub(crate) fn show(value: Option<&Bytes>) -> String {
    match value {
        None => "null".to_string(),
        Some(value) if value.len() > 40 => format!("{} bytes", value.len()),
        Some(value) => format!("{:?}", String::from_utf8_lossy(value)),
    }
}

/// xorshift64*: random bytes without a dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, bound: u64) -> usize {
        usize::try_from(self.next() % bound.max(1)).unwrap_or(0)
    }

    pub(crate) fn fill(&mut self, length: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(length + 8);
        while out.len() < length {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(length);
        out
    }
}

pub(crate) fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
}

/// A spawned task that is aborted when dropped, so a scenario that times out or fails leaves
/// no group member running.
pub(crate) struct Task<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What group members consumed: (member, partition, offset, value).
pub(crate) type Seen = Arc<Mutex<Vec<(String, i32, i64, String)>>>;

pub(crate) fn seen_now(seen: &Seen) -> Vec<(String, i32, i64, String)> {
    seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Polls `probe` every 200 ms until it yields a value or `timeout` passes (then the last
/// reason it gave).
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, probe: F) -> Check<T>
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

pub(crate) struct Ctx {
    pub(crate) bootstrap: String,
    pub(crate) scenario: String,
    pub(crate) suffix: String,
}

impl Ctx {
    pub(crate) fn name(&self, tag: &str) -> String {
        format!("compat-lmq-native-{}-{}{tag}", self.scenario, self.suffix)
    }

    pub(crate) fn client(&self, id: &str) -> ClientConfig {
        ClientConfig {
            brokers: vec![self.bootstrap.clone()],
            client_id: format!("compat-lmq-native-{id}"),
            ..ClientConfig::default()
        }
    }

    pub(crate) async fn admin(&self) -> Check<Admin> {
        Ok(Admin::connect(self.client("admin")).await?)
    }

    /// Creates a topic (replication factor 1) and waits until every partition has a leader.
    pub(crate) async fn create_topic(
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

    pub(crate) async fn producer(
        &self,
        acks: Acks,
        codec: Codec,
        idempotent: bool,
    ) -> Check<Producer> {
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
    pub(crate) async fn send_all(
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
    pub(crate) async fn read(
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

    pub(crate) async fn read_all(
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
