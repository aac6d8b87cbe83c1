//! The record sets the scenarios send and the checks of what comes back.

use super::*;

/// Records `k-<i>` / `<prefix>-<i>`, to `partition` (None: by key), with `headers`.
pub(crate) fn numbered(
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
pub(crate) fn round_trip(
    sent: &[Record],
    deliveries: &[Delivery],
    consumed: &[ConsumedRecord],
) -> Check {
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
pub(crate) fn exactly(
    consumed: &[ConsumedRecord],
    offsets: std::ops::Range<i64>,
    sent: &[Record],
) -> Check {
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

pub(crate) fn index_of(value: Option<&Bytes>) -> Option<usize> {
    let text = std::str::from_utf8(value?).ok()?;
    text.rsplit('-').next()?.parse().ok()
}
