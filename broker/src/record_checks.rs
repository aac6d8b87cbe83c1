//! What a topic's configs ask of a produced batch before it is appended, as Kafka's
//! `LogValidator` does: a compacted topic refuses records without a key, CreateTime records
//! must lie within `message.timestamp.before.max.ms` / `after.max.ms` of the broker's clock,
//! and `compression.type` re-encodes a batch the producer compressed with another codec.
//! Pure functions over the batch bytes; the produce handler chooses the error codes.
//!
//! The common case costs nothing: with `compression.type=producer`, no compaction and the
//! default `before` bound, the batch is only checked by its header's max timestamp and goes
//! to the log as received. Records are read (decompressed if need be, within
//! `max.decompressed.message.bytes`) only when a rule needs them.

use std::borrow::Cow;

use lmq_storage::TimestampType;
use lmq_storage::batch::{BatchView, parse_records, with_records};
use lmq_wire::records::{Codec, compress_at, plain_records};

use crate::topic_config::TopicSettings;

/// Which rule records broke (Kafka: INVALID_RECORD, INVALID_TIMESTAMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordRule {
    KeyRequired,
    Timestamp,
}

/// One refused record: its index in the batch and why (Kafka's `RecordError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchRefusal {
    /// Records broke a rule of the topic; `rule` is the one the answer names (a timestamp
    /// error wins, as in Kafka).
    #[error("{}", records_message(*rule, errors))]
    Records {
        rule: RecordRule,
        errors: Vec<RecordError>,
    },
    /// The records could not be read or re-encoded (malformed, or larger than
    /// `max.decompressed.message.bytes` once decompressed).
    #[error("{0}")]
    Unreadable(String),
}

/// Kafka's `LogValidator.processRecordErrors` message.
fn records_message(rule: RecordRule, errors: &[RecordError]) -> String {
    match rule {
        RecordRule::Timestamp => {
            "One or more records have been rejected due to invalid timestamp".to_string()
        }
        RecordRule::KeyRequired => {
            let shown: Vec<String> = errors
                .iter()
                .take(3)
                .map(|error| {
                    format!(
                        "RecordError(batchIndex={}, message='{}')",
                        error.batch_index, error.message
                    )
                })
                .collect();
            format!(
                "One or more records have been rejected due to {} record errors in total, and \
                 only showing the first three errors at most: [{}]",
                errors.len(),
                shown.join(", ")
            )
        }
    }
}

/// The batch as the topic stores it: `batch` itself (no copy) when every rule holds and no
/// recompression is due, else the re-encoded batch; or why it is refused. A batch whose
/// header does not parse, or whose CRC does not match, is passed on unchanged for the log
/// to refuse.
pub fn prepare(
    settings: &TopicSettings,
    topic_partition: &str,
    batch: Vec<u8>,
    now_ms: i64,
) -> Result<Vec<u8>, BatchRefusal> {
    // The header only: the log checks the CRC of every batch it appends, so a batch no
    // rule touches is not read twice.
    let Ok(view) = BatchView::new(&batch) else {
        return Ok(batch);
    };
    let Ok(codec) = Codec::from_attributes(view.attributes()) else {
        return Ok(batch);
    };
    let check_keys = settings.log.cleanup_policy.compact && !view.is_control();
    let check_timestamps = timestamps_need_records(settings, &view, now_ms);
    let recompression = settings.recompression(codec);
    // A corrupt batch goes to the log as it came, to be refused there: its records are not
    // read, and never re-encoded under a fresh CRC.
    if (!check_keys && !check_timestamps && recompression.is_none()) || view.verify_crc().is_err() {
        return Ok(batch);
    }
    let plain = plain_records(&view, settings.decompressed_bytes_max)
        .map_err(|error| BatchRefusal::Unreadable(error.to_string()))?;
    if check_keys || check_timestamps {
        check_records(
            settings,
            &view,
            &plain,
            topic_partition,
            now_ms,
            check_keys,
            check_timestamps,
        )?;
    }
    let Some((target, level)) = recompression else {
        return Ok(batch);
    };
    let encoded = match target {
        Codec::None => plain,
        _ => Cow::Owned(
            compress_at(target, level, &plain)
                .map_err(|error| BatchRefusal::Unreadable(error.to_string()))?,
        ),
    };
    with_records(&view, target as i16, &encoded).ok_or_else(|| {
        BatchRefusal::Unreadable("the recompressed batch is larger than a batch can be".into())
    })
}

/// Whether the timestamp bounds need the records read: under CreateTime, when the `before`
/// bound is set (the header has no minimum timestamp) or the header's max timestamp is past
/// the `after` bound (to name the records that are).
fn timestamps_need_records(settings: &TopicSettings, view: &BatchView<'_>, now_ms: i64) -> bool {
    if settings.log.timestamp_type != TimestampType::CreateTime || view.is_log_append_time() {
        return false;
    }
    settings.timestamp_before_max_ms != i64::MAX
        || out_of_bounds(settings, view.max_timestamp(), now_ms)
}

/// Kafka's `recordHasInvalidTimestamp`, in its (wrapping) long arithmetic.
fn out_of_bounds(settings: &TopicSettings, timestamp_ms: i64, now_ms: i64) -> bool {
    let behind = now_ms.wrapping_sub(timestamp_ms);
    behind > settings.timestamp_before_max_ms
        || behind.wrapping_neg() > settings.timestamp_after_max_ms
}

fn check_records(
    settings: &TopicSettings,
    view: &BatchView<'_>,
    plain: &[u8],
    topic_partition: &str,
    now_ms: i64,
    check_keys: bool,
    check_timestamps: bool,
) -> Result<(), BatchRefusal> {
    let records = parse_records(view, plain)
        .ok_or_else(|| BatchRefusal::Unreadable("the batch's records do not parse".into()))?;
    let mut errors = Vec::new();
    let mut timestamp_error = false;
    for (index, record) in records.iter().enumerate() {
        let batch_index = i32::try_from(index).unwrap_or(i32::MAX);
        // As Kafka: the key first, then the timestamp; one error per record.
        if check_keys && record.key.is_none() {
            errors.push(RecordError {
                batch_index,
                message: format!(
                    "Compacted topic cannot accept message without key in topic partition \
                     {topic_partition}"
                ),
            });
        } else if check_timestamps && out_of_bounds(settings, record.timestamp_ms, now_ms) {
            timestamp_error = true;
            errors.push(RecordError {
                batch_index,
                message: format!(
                    "Timestamp {} of message with offset {} is out of range. The timestamp \
                     should be within [{}, {}]",
                    record.timestamp_ms,
                    record.offset,
                    now_ms.wrapping_sub(settings.timestamp_before_max_ms),
                    now_ms.wrapping_add(settings.timestamp_after_max_ms)
                ),
            });
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let rule = if timestamp_error {
        RecordRule::Timestamp
    } else {
        RecordRule::KeyRequired
    };
    Err(BatchRefusal::Records { rule, errors })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use lmq_storage::LogConfig;
    use lmq_wire::records::{OutRecord, decode_batches, encode_batch};

    use super::*;
    use crate::topic_config::Checks;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn settings(configs: &[(&str, &str)]) -> TopicSettings {
        let configs: BTreeMap<String, String> = configs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        TopicSettings::parse(&LogConfig::default(), &configs, Checks::Kafka).unwrap()
    }

    fn record(key: Option<&str>, timestamp_ms: i64) -> OutRecord {
        OutRecord {
            key: key.map(|key| Bytes::from(key.to_string())),
            value: Some(Bytes::from_static(b"value")),
            headers: Vec::new(),
            timestamp_ms,
        }
    }

    fn batch(records: &[OutRecord], codec: Codec) -> Vec<u8> {
        encode_batch(records, codec, None).unwrap().to_vec()
    }

    #[test]
    fn a_batch_every_rule_passes_is_kept_as_sent() {
        let sent = batch(&[record(Some("k"), NOW_MS)], Codec::Lz4);
        let kept = prepare(&settings(&[]), "t-0", sent.clone(), NOW_MS).unwrap();
        assert_eq!(kept, sent);
        let compacted = settings(&[("cleanup.policy", "compact"), ("compression.type", "lz4")]);
        assert_eq!(
            prepare(&compacted, "t-0", sent.clone(), NOW_MS).unwrap(),
            sent
        );
    }

    #[test]
    fn a_compacted_topic_refuses_records_without_a_key() {
        for codec in [Codec::None, Codec::Gzip] {
            let sent = batch(&[record(Some("k"), NOW_MS), record(None, NOW_MS)], codec);
            let refusal = prepare(
                &settings(&[("cleanup.policy", "compact,delete")]),
                "t-0",
                sent.clone(),
                NOW_MS,
            )
            .unwrap_err();
            let message = "Compacted topic cannot accept message without key in topic \
                           partition t-0";
            assert_eq!(
                refusal,
                BatchRefusal::Records {
                    rule: RecordRule::KeyRequired,
                    errors: vec![RecordError {
                        batch_index: 1,
                        message: message.to_string()
                    }],
                },
                "{codec:?}"
            );
            assert_eq!(
                refusal.to_string(),
                format!(
                    "One or more records have been rejected due to 1 record errors in total, \
                     and only showing the first three errors at most: \
                     [RecordError(batchIndex=1, message='{message}')]"
                )
            );
            // A delete-only topic takes it.
            assert!(prepare(&settings(&[]), "t-0", sent, NOW_MS).is_ok());
        }
    }

    #[test]
    fn records_outside_the_timestamp_bounds_are_refused() {
        let bounded = settings(&[
            ("message.timestamp.before.max.ms", "1000"),
            ("message.timestamp.after.max.ms", "500"),
        ]);
        let sent = batch(
            &[
                record(None, NOW_MS),
                record(None, NOW_MS - 1001),
                record(None, NOW_MS + 501),
                record(None, NOW_MS - 1000),
            ],
            Codec::Snappy,
        );
        let Err(BatchRefusal::Records { rule, errors }) = prepare(&bounded, "t-0", sent, NOW_MS)
        else {
            panic!("accepted");
        };
        assert_eq!(rule, RecordRule::Timestamp);
        assert_eq!(
            errors
                .iter()
                .map(|error| error.batch_index)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(
            errors[0].message,
            format!(
                "Timestamp {} of message with offset 1 is out of range. The timestamp should be \
                 within [{}, {}]",
                NOW_MS - 1001,
                NOW_MS - 1000,
                NOW_MS + 500
            )
        );
        // Kafka 4's default refuses a record more than an hour ahead, and nothing behind.
        let ahead = batch(&[record(None, NOW_MS + 3_600_001)], Codec::None);
        assert!(prepare(&settings(&[]), "t-0", ahead, NOW_MS).is_err());
        let old = batch(&[record(None, 0)], Codec::None);
        assert!(prepare(&settings(&[]), "t-0", old.clone(), NOW_MS).is_ok());
        // LogAppendTime replaces the timestamps: nothing to check.
        let append_time = settings(&[
            ("message.timestamp.type", "LogAppendTime"),
            ("message.timestamp.before.max.ms", "0"),
        ]);
        assert!(prepare(&append_time, "t-0", old, NOW_MS).is_ok());
    }

    #[test]
    fn a_batch_in_another_codec_is_recompressed_keeping_its_records_and_header() {
        let records = [record(Some("a"), NOW_MS), record(None, NOW_MS + 1)];
        for (from, to, name) in [
            (Codec::None, Codec::Gzip, "gzip"),
            (Codec::Gzip, Codec::None, "uncompressed"),
            (Codec::Snappy, Codec::Zstd, "zstd"),
            (Codec::Zstd, Codec::Lz4, "lz4"),
            (Codec::Lz4, Codec::Snappy, "snappy"),
        ] {
            let sent = batch(&records, from);
            let stored = prepare(
                &settings(&[("compression.type", name)]),
                "t-0",
                sent.clone(),
                NOW_MS,
            )
            .unwrap();
            let view = BatchView::validated(&stored).unwrap();
            assert_eq!(Codec::from_attributes(view.attributes()).unwrap(), to);
            let original = BatchView::new(&sent).unwrap();
            assert_eq!(
                (
                    view.max_timestamp(),
                    view.records_count(),
                    view.last_offset_delta()
                ),
                (
                    original.max_timestamp(),
                    original.records_count(),
                    original.last_offset_delta()
                )
            );
            let decoded = decode_batches(Bytes::from(stored), 1 << 20).unwrap();
            assert_eq!(
                decoded
                    .iter()
                    .map(|record| (record.key.clone(), record.timestamp_ms))
                    .collect::<Vec<_>>(),
                records
                    .iter()
                    .map(|record| (record.key.clone(), record.timestamp_ms))
                    .collect::<Vec<_>>(),
                "{from:?} -> {to:?}"
            );
        }
    }

    /// A batch whose CRC does not match is left for the log to refuse (CORRUPT_MESSAGE):
    /// recompressing it would give damaged records a valid CRC.
    #[test]
    fn a_corrupt_batch_is_passed_on_unchanged_never_recompressed() {
        let mut sent = batch(&[record(Some("k"), NOW_MS)], Codec::None);
        let last = sent.len() - 1;
        sent[last] ^= 0xff;
        let gzip = settings(&[("compression.type", "gzip")]);
        assert_eq!(prepare(&gzip, "t-0", sent.clone(), NOW_MS).unwrap(), sent);
    }

    #[test]
    fn decompression_is_bounded_by_max_decompressed_message_bytes() {
        let big = OutRecord {
            value: Some(Bytes::from(vec![b'x'; 10_000])),
            ..record(Some("k"), NOW_MS)
        };
        let sent = batch(&[big], Codec::Gzip);
        let bounded = settings(&[
            ("compression.type", "uncompressed"),
            ("max.decompressed.message.bytes", "1000"),
        ]);
        assert!(matches!(
            prepare(&bounded, "t-0", sent, NOW_MS),
            Err(BatchRefusal::Unreadable(_))
        ));
    }
}
