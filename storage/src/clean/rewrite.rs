//! Filtering one batch as Kafka's cleaner does (`MemoryRecords.filterTo` with the
//! `Cleaner`'s filter), and re-encoding what it keeps into a valid v2 batch.

use super::OffsetMap;
use super::RecordsCodec;
use super::transactions::TxnVerdict;
use crate::batch::{
    ATTRIBUTE_DELETE_HORIZON, BATCH_HEADER_BYTES, BatchView, Compression, MAGIC_V2, RecordView,
    parse_records,
};
use crate::builder::{put_bytes, put_varlong};

/// Attribute bits an empty batch keeps (no codec, no delete horizon).
const ATTRIBUTES_OF_EMPTY: i16 = 0x08 | 0x10 | 0x20;
const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;

/// What the pass knows when it judges a batch.
#[derive(Debug)]
pub(crate) struct Rules<'a> {
    pub map: &'a OffsetMap,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    pub codec: &'a dyn RecordsCodec,
    pub decompressed_bytes_max: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Written as it is.
    Keep,
    Drop,
    Rewritten(Vec<u8>),
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub records_read: u64,
    pub records_kept: u64,
    /// The delete horizon of the written batch when it still holds tombstones.
    pub tombstone_horizon_ms: Option<i64>,
}

/// Decompressed records of a batch.
pub(crate) fn records_of(
    view: &BatchView<'_>,
    codec: &dyn RecordsCodec,
    decompressed_bytes_max: usize,
) -> Result<Vec<u8>, String> {
    match view.compression() {
        Compression::None => Ok(view.records_bytes().to_vec()),
        compression => codec.decompress(compression, view.records_bytes(), decompressed_bytes_max),
    }
}

/// Judges one batch. `retain_empty`: keep the batch's header even when no record stays
/// (the last batch of an active producer, of the round, or of a segment group). `txn`: what
/// the pass's transactions say of it ([`TxnVerdict`]).
pub(crate) fn filter_batch(
    view: &BatchView<'_>,
    retain_empty: bool,
    txn: TxnVerdict,
    rules: &Rules<'_>,
) -> Result<(Outcome, Counts), String> {
    let count = u64::try_from(view.records_count()).unwrap_or(0);
    let emptied = |counts: Counts| {
        let outcome = if retain_empty {
            Outcome::Rewritten(empty_header(view))
        } else {
            Outcome::Drop
        };
        (outcome, counts)
    };
    if txn == TxnVerdict::Aborted {
        // Kafka's cleaner: an aborted transaction's records go whatever their keys.
        return Ok(emptied(Counts {
            records_read: count,
            ..Counts::default()
        }));
    }
    if view.is_control() {
        let kept = Counts {
            records_read: count,
            records_kept: count,
            tombstone_horizon_ms: None,
        };
        if txn != TxnVerdict::MarkerOfEmptyTransaction || count == 0 {
            return Ok((Outcome::Keep, kept));
        }
        // A marker whose transaction left no batch: it goes a delete horizon after the
        // first pass that found it so (KIP-534, as a tombstone), so a reader that saw the
        // transaction's records also sees its end.
        return Ok(match view.delete_horizon_ms() {
            Some(horizon_ms) if rules.now_ms >= horizon_ms => emptied(Counts {
                records_read: count,
                ..Counts::default()
            }),
            Some(horizon_ms) => (
                Outcome::Keep,
                Counts {
                    tombstone_horizon_ms: Some(horizon_ms),
                    ..kept
                },
            ),
            None => {
                let horizon_ms = rules.now_ms.saturating_add(rules.delete_retention_ms);
                let plain = records_of(view, rules.codec, rules.decompressed_bytes_max)?;
                let records = parse_records(view, &plain)
                    .ok_or_else(|| format!("malformed marker at offset {}", view.base_offset()))?;
                let all: Vec<&RecordView<'_>> = records.iter().collect();
                (
                    Outcome::Rewritten(rebuild(view, &all, Some(horizon_ms), rules.codec)?),
                    Counts {
                        tombstone_horizon_ms: Some(horizon_ms),
                        ..kept
                    },
                )
            }
        });
    }
    let plain = records_of(view, rules.codec, rules.decompressed_bytes_max)?;
    let records = parse_records(view, &plain).ok_or_else(|| {
        format!(
            "malformed records in the batch at offset {}",
            view.base_offset()
        )
    })?;
    if records.is_empty() {
        // A header kept for a producer or a group earlier: it goes once no rule keeps it.
        let outcome = if retain_empty {
            Outcome::Keep
        } else {
            Outcome::Drop
        };
        return Ok((outcome, Counts::default()));
    }
    let horizon = view.delete_horizon_ms();
    let retained: Vec<&RecordView<'_>> = records
        .iter()
        .filter(|record| retain_record(record, horizon, rules))
        .collect();
    let has_tombstones = retained.iter().any(|record| record.value.is_none());
    let new_horizon = match horizon {
        None if has_tombstones => Some(rules.now_ms.saturating_add(rules.delete_retention_ms)),
        other => other,
    };
    let counts = Counts {
        records_read: records.len() as u64,
        records_kept: retained.len() as u64,
        tombstone_horizon_ms: if has_tombstones { new_horizon } else { None },
    };
    if retained.len() == records.len() && (horizon.is_some() || !has_tombstones) {
        return Ok((Outcome::Keep, counts));
    }
    if !retained.is_empty() {
        let bytes = rebuild(view, &retained, new_horizon, rules.codec)?;
        return Ok((Outcome::Rewritten(bytes), counts));
    }
    if retain_empty {
        return Ok((Outcome::Rewritten(empty_header(view)), counts));
    }
    Ok((Outcome::Drop, counts))
}

/// Kafka's `Cleaner.shouldRetainRecord`: records past the map are untouched; a keyed record
/// stays when it is the latest for its key and has a value or its tombstone's horizon has
/// not passed; a record without a key is dropped (Kafka counts it as invalid).
fn retain_record(record: &RecordView<'_>, horizon: Option<i64>, rules: &Rules<'_>) -> bool {
    if record.offset > rules.map.latest_offset() {
        return true;
    }
    let Some(key) = record.key else {
        return false;
    };
    let latest = rules
        .map
        .get(key)
        .is_none_or(|found| record.offset >= found);
    let keep_tombstone = horizon.is_none_or(|horizon_ms| rules.now_ms < horizon_ms);
    latest && (record.value.is_some() || keep_tombstone)
}

/// The batch with only `retained`: same base offset, last offset delta, producer fields,
/// leader epoch and codec; timestamps relative to the delete horizon when it has one.
fn rebuild(
    view: &BatchView<'_>,
    retained: &[&RecordView<'_>],
    horizon: Option<i64>,
    codec: &dyn RecordsCodec,
) -> Result<Vec<u8>, String> {
    let base_offset = view.base_offset();
    let base_timestamp_ms =
        horizon.unwrap_or_else(|| retained.first().map_or(0, |record| record.timestamp_ms));
    let mut plain = Vec::new();
    let mut max_timestamp_ms = i64::MIN;
    let mut body = Vec::new();
    for record in retained {
        body.clear();
        body.push(0); // record attributes, unused in v2
        put_varlong(
            &mut body,
            record.timestamp_ms.wrapping_sub(base_timestamp_ms),
        );
        put_varlong(&mut body, record.offset - base_offset);
        put_bytes(&mut body, record.key);
        put_bytes(&mut body, record.value);
        body.extend_from_slice(record.headers_bytes());
        put_varlong(&mut plain, body.len() as i64);
        plain.extend_from_slice(&body);
        max_timestamp_ms = max_timestamp_ms.max(record.timestamp_ms);
    }
    if view.is_log_append_time() {
        max_timestamp_ms = view.max_timestamp();
    }
    let payload = match view.compression() {
        Compression::None => plain,
        compression => codec.compress(compression, &plain)?,
    };
    let mut attributes = view.attributes();
    if horizon.is_some() {
        attributes |= ATTRIBUTE_DELETE_HORIZON;
    }
    Ok(assemble(
        view,
        attributes,
        base_timestamp_ms,
        max_timestamp_ms,
        i32::try_from(retained.len()).unwrap_or(i32::MAX),
        &payload,
    ))
}

/// A batch without records standing for `view` (Kafka's `writeEmptyHeader`): it keeps the
/// offsets and the producer's sequence state.
fn empty_header(view: &BatchView<'_>) -> Vec<u8> {
    let attributes = view.attributes() & ATTRIBUTES_OF_EMPTY & !ATTRIBUTE_COMPRESSION_MASK;
    assemble(
        view,
        attributes,
        view.max_timestamp(),
        view.max_timestamp(),
        0,
        &[],
    )
}

fn assemble(
    view: &BatchView<'_>,
    attributes: i16,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
    records_count: i32,
    payload: &[u8],
) -> Vec<u8> {
    let total = BATCH_HEADER_BYTES + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&view.base_offset().to_be_bytes());
    out.extend_from_slice(&i32::try_from(total - 12).unwrap_or(i32::MAX).to_be_bytes());
    out.extend_from_slice(&view.partition_leader_epoch().to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&view.last_offset_delta().to_be_bytes());
    out.extend_from_slice(&base_timestamp_ms.to_be_bytes());
    out.extend_from_slice(&max_timestamp_ms.to_be_bytes());
    out.extend_from_slice(&view.producer_id().to_be_bytes());
    out.extend_from_slice(&view.producer_epoch().to_be_bytes());
    out.extend_from_slice(&view.base_sequence().to_be_bytes());
    out.extend_from_slice(&records_count.to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}
