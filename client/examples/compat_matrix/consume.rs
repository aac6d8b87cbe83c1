//! Consume scenarios: from an offset, from the end.

use super::*;

pub(crate) async fn consume_from(ctx: &Ctx, count: usize, start: i64) -> Check {
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

pub(crate) async fn consume_end(ctx: &Ctx) -> Check {
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

/// 50 records at T0.., 50 at T1 = T0 + 1 hour..; offsets-for-times at T1 is 50 and reading
/// from there gives exactly the second 50.
pub(crate) async fn consume_timestamp(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(0))
        - 2 * 3_600_000;
    let t1 = t0 + 3_600_000;
    let mut sent = numbered("early", 0..50, Some(0), &[]);
    sent.extend(numbered("late", 50..100, Some(0), &[]));
    for (index, record) in sent.iter_mut().enumerate() {
        let step = i64::try_from(index % 50).unwrap_or(0);
        record.timestamp = Some(if index < 50 { t0 } else { t1 } + step);
    }
    let producer = ctx.producer(Acks::All, Codec::None, true).await?;
    ctx.send_all(&producer, &topic, &sent).await?;
    producer.close().await;
    let listed = admin
        .list_offsets(&topic, OffsetSpec::Timestamp(t1))
        .await?;
    let at = listed.iter().find(|(partition, _)| *partition == 0);
    if at != Some(&(0, 50)) {
        return fail(format!(
            "offsets-for-times at T1 gave {listed:?}, expected 50 on partition 0"
        ));
    }
    let consumed = ctx
        .read(
            &topic,
            &[(0, OffsetSpec::Timestamp(t1))],
            50,
            Duration::from_secs(30),
        )
        .await?;
    exactly(&consumed, 50..100, &sent[50..])
}
