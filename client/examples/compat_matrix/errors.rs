//! Error scenarios: the Kafka error codes the client reports.

use super::*;

pub(crate) fn kafka_code(error: &ClientError) -> Option<i16> {
    match error {
        ClientError::Kafka { code, .. } => Some(*code),
        _ => None,
    }
}

pub(crate) async fn error_unknown_topic(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    match admin.describe_topic(&topic).await {
        Err(error) if kafka_code(&error) == Some(UNKNOWN_TOPIC_OR_PARTITION) => Ok(()),
        Err(error) => fail(format!("expected UNKNOWN_TOPIC_OR_PARTITION, got: {error}")),
        Ok(info) => fail(format!("the missing topic was described: {info:?}")),
    }
}

pub(crate) async fn error_invalid_topic(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    match admin.create_topic("bad/name", 3, 1, &BTreeMap::new()).await {
        Err(error) if kafka_code(&error) == Some(INVALID_TOPIC_EXCEPTION) => Ok(()),
        Err(error) => fail(format!("expected INVALID_TOPIC_EXCEPTION, got: {error}")),
        Ok(()) => fail("creating bad/name succeeded"),
    }
}

pub(crate) async fn error_too_large(ctx: &Ctx) -> Check {
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

pub(crate) async fn error_out_of_range(ctx: &Ctx) -> Check {
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
