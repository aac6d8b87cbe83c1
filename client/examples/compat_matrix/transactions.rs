//! The transactions scenario: a transactional producer commits, aborts, commits consumed
//! offsets with its records, and is fenced by a newer instance; read_committed and
//! read_uncommitted consumers see what each should.

use super::*;

/// Kafka's codes of a fenced producer.
const INVALID_PRODUCER_EPOCH: i16 = 47;
const PRODUCER_FENCED: i16 = 90;

async fn txn_producer(ctx: &Ctx, transactional_id: &str) -> Check<Producer> {
    Producer::connect(ProducerConfig {
        client: ctx.client("txn-producer"),
        transactional_id: Some(transactional_id.to_string()),
        transaction_timeout: Duration::from_secs(30),
        ..ProducerConfig::default()
    })
    .await
    .map_err(|error| Stop::Fail(format!("connecting a transactional producer: {error}")))
}

fn step<T>(what: &str, outcome: Result<T, ClientError>) -> Check<T> {
    outcome.map_err(|error| Stop::Fail(format!("{what}: {error}")))
}

/// The values, in order, a consumer assigned to partition 0 from the beginning reads: until
/// `expected` came or 30 s passed, then one poll more for anything that should not be there.
async fn values(
    ctx: &Ctx,
    topic: &str,
    read_committed: bool,
    expected: usize,
) -> Check<Vec<String>> {
    let mut consumer = Consumer::connect(ConsumerConfig {
        client: ctx.client("consumer"),
        max_wait: Duration::from_millis(100),
        read_committed,
        ..ConsumerConfig::default()
    })
    .await?;
    consumer.assign(topic, 0, OffsetSpec::Earliest).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut records = Vec::new();
    while records.len() < expected && Instant::now() < deadline {
        records.extend(consumer.poll().await?);
    }
    records.extend(consumer.poll().await?);
    Ok(records
        .iter()
        .map(|record| {
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
        })
        .collect())
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("{prefix}-{index}"))
        .collect()
}

fn records(values: &[String]) -> Vec<Record> {
    values
        .iter()
        .map(|value| Record {
            key: bytes(value.clone()),
            value: bytes(value.clone()),
            partition: Some(0),
            ..Record::default()
        })
        .collect()
}

/// The native group consumer commits by itself after each batch its handler finished, so the
/// input is read by an assigned consumer and its offsets go to the group with the
/// transaction (no member: TxnOffsetCommit's generation -1, as for a group nobody joined).
pub(crate) async fn transactions(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let output = ctx.name("-out");
    let input = ctx.name("-in");
    let group = ctx.name("-group");
    let transactional_id = ctx.name("-txn");
    for topic in [&output, &input] {
        ctx.create_topic(&admin, topic, 1, &BTreeMap::new()).await?;
    }
    let (inputs, t1, t2, t3) = (
        names("in", 3),
        names("t1", 10),
        names("t2", 5),
        names("t3", 3),
    );
    let plain = ctx.producer(Acks::All, Codec::None, true).await?;
    ctx.send_all(&plain, &input, &records(&inputs)).await?;
    plain.close().await;

    let first = txn_producer(ctx, &transactional_id).await?;
    step("begin 1", first.begin())?;
    ctx.send_all(&first, &output, &records(&t1)).await?;
    step("commit 1", first.commit().await)?;
    step("begin 2", first.begin())?;
    ctx.send_all(&first, &output, &records(&t2)).await?;
    step("abort 2", first.abort().await)?;

    // Transaction 3: read the input, send its transform and the input's offset for the group.
    let read = values(ctx, &input, true, inputs.len()).await?;
    if read != inputs {
        return fail(format!(
            "the input consumer read {read:?}, expected {inputs:?}"
        ));
    }
    step("begin 3", first.begin())?;
    ctx.send_all(&first, &output, &records(&t3)).await?;
    let offsets = [(input.clone(), 0, 3_i64)];
    step(
        "send_offsets",
        first.send_offsets(&group, &offsets, None).await,
    )?;
    step("commit 3", first.commit().await)?;
    // The offsets count once the coordinator wrote the commit marker to the group's
    // partition, which EndTxn does not wait for: OffsetFetch is retried for a while.
    eventually(Duration::from_secs(10), || async {
        let committed = admin
            .group_lag(&group)
            .await?
            .into_iter()
            .find(|lag| lag.topic == input && lag.partition == 0)
            .and_then(|lag| lag.committed);
        Ok(if committed == Some(3) {
            Ok(())
        } else {
            Err(format!(
                "group {group} committed offset of the input is {committed:?}, expected 3"
            ))
        })
    })
    .await?;

    // A second producer with the same transactional id (connecting initialises it) fences
    // the first.
    let second = txn_producer(ctx, &transactional_id).await?;
    second.close().await;
    let fenced = match first.begin() {
        Err(error) => Some(error),
        Ok(()) => {
            let fenced = Record {
                key: bytes("fenced".to_string()),
                value: bytes("fenced".to_string()),
                partition: Some(0),
                ..Record::default()
            };
            // The record fails with the coordinator's answer to AddPartitionsToTxn; a commit
            // after it fails with that error too.
            match first.send_record(&output, fenced).await {
                Err(error) => Some(error),
                Ok(_) => first.commit().await.err(),
            }
        }
    };
    match fenced {
        None => {
            return fail(
                "the fenced producer committed a transaction after a second producer with its \
                 transactional id connected",
            );
        }
        Some(ClientError::Kafka { code, .. })
            if code == PRODUCER_FENCED || code == INVALID_PRODUCER_EPOCH =>
        {
            log("transactions: the first producer is fenced");
        }
        Some(error) => {
            return fail(format!(
                "the fenced producer failed with {error}, expected PRODUCER_FENCED or \
                 INVALID_PRODUCER_EPOCH"
            ));
        }
    }
    first.close().await;

    let committed_view = values(ctx, &output, true, t1.len() + t3.len()).await?;
    let want: Vec<String> = t1.iter().chain(&t3).cloned().collect();
    if committed_view != want {
        return fail(format!(
            "read_committed read {committed_view:?}, expected {want:?}"
        ));
    }
    let everything = values(ctx, &output, false, t1.len() + t2.len() + t3.len()).await?;
    let want: Vec<String> = t1.iter().chain(&t2).chain(&t3).cloned().collect();
    if everything != want {
        return fail(format!(
            "read_uncommitted read {everything:?}, expected {want:?}"
        ));
    }
    Ok(())
}
