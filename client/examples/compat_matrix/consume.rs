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
