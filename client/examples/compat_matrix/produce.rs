//! Produce scenarios: acks, codecs, keys/headers/nulls, a large record, idempotence.

use super::*;

pub(crate) async fn produce_acks(ctx: &Ctx, acks: Acks) -> Check {
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

pub(crate) async fn compression(ctx: &Ctx, codec: Codec) -> Check {
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

pub(crate) async fn keys_headers_nulls(ctx: &Ctx) -> Check {
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
        // Two headers each, the second with an empty (not null) value; every tenth record
        // repeats the first key instead (Kafka keeps both, in order).
        let second = if index % 10 == 0 { "h1" } else { "h2" };
        let headers = vec![
            ("h1".to_string(), bytes(format!("header of #{index}"))),
            (second.to_string(), Some(Bytes::new())),
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

pub(crate) async fn large_message(ctx: &Ctx) -> Check {
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
pub(crate) async fn produce_to_zero(
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

pub(crate) async fn idempotent(ctx: &Ctx) -> Check {
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
