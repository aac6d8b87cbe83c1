//! Records of the internal `__transaction_state` topic, in Kafka's own layout, so a
//! coordinator rebuilds every transactional id by replaying its partition (and Kafka's
//! `DumpLogSegments`/`TransactionLogMessageFormatter` read LMQ's records).
//!
//! The layout follows Kafka 4.x's message schemas
//! `transaction-coordinator/src/main/resources/common/message/TransactionLogKey.json` and
//! `TransactionLogValue.json`, each record prefixed with its version as an int16
//! (`MessageUtil.toVersionPrefixedBytes`):
//!
//! ```text
//! key   v0: version 0, TransactionalId string (int16 length)
//! value v0: version 0, ProducerId int64, ProducerEpoch int16, TransactionTimeoutMs int32,
//!           TransactionStatus int8, TransactionPartitions nullable array (int32 count, -1
//!           null) of { Topic string (int16 length), PartitionIds array (int32 count) of
//!           int32 }, TransactionLastUpdateTimestampMs int64, TransactionStartTimestampMs int64
//! value v1: the same fields in flexible form (arrays and strings with unsigned-varint
//!           length + 1, 0 for a null array; an empty tag buffer after each partition
//!           entry), then the tag buffer: tag 0 PreviousProducerId int64 (default -1),
//!           tag 1 NextProducerId int64 (default -1), tag 2 ClientTransactionVersion int16
//!           (default 0); a tag is written only when its value is not the default, in tag
//!           order (Kafka's generated code).
//! ```
//!
//! Kafka writes v1 once the cluster's `transaction.version` is 1 or more, v0 before. An
//! Empty transaction's partitions are written as a null array; a record's partitions are
//! ignored on read when its state is Empty (as `TransactionLog.read`). An expired id is
//! deleted by a tombstone (a null value) under its key. Kafka groups the partitions by topic
//! in hash order; LMQ writes topics and partitions sorted, which any reader accepts.
//! Unknown tags are skipped (a newer Kafka adds tag 3, NextProducerEpoch, KIP-939).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{TopicPartition, TxnState};

/// The only key version Kafka defines (it doubles as the coordinator record type).
const KEY_VERSION: i16 = 0;
/// Bytes of one tagged int64 / int16.
const TAG_INT64_BYTES: usize = 8;
const TAG_INT16_BYTES: usize = 2;

/// What a `__transaction_state` record holds for one transactional id (Kafka's
/// `TransactionLogValue`). `last_producer_epoch` is not stored, as in Kafka: a loaded
/// transaction has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: i64,
    /// Tag 0 (v1): the producer id before this transition (-1 unknown).
    pub previous_producer_id: i64,
    /// Tag 1 (v1): the producer id that replaces `producer_id` when an epoch overflowed
    /// (transaction version 2), -1 otherwise.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub last_update_ms: i64,
    /// -1 when no transaction started.
    pub start_ms: i64,
    /// Tag 2 (v1): the `transaction.version` the client used for the transition.
    pub client_transaction_version: i16,
}

/// One replayed record: an id's latest value, or its deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnLogRecord {
    Value(String, TxnLogValue),
    Tombstone(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnLogError {
    #[error("unknown transaction log key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown transaction log value version {0}")]
    UnknownValueVersion(i16),
    #[error("unknown transaction state {0}")]
    UnknownState(i8),
    #[error("transaction log record truncated or malformed")]
    Malformed,
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + transactional_id.len());
    out.put_i16(KEY_VERSION);
    put_string(&mut out, transactional_id);
    out.freeze()
}

/// The value in `version` (0 or 1, [`super::TransactionVersion::log_value_version`]).
pub fn encode_value(value: &TxnLogValue, version: i16) -> Bytes {
    let by_topic = group_by_topic(value);
    let mut out = BytesMut::with_capacity(encoded_value_bytes(value, version));
    out.put_i16(version);
    out.put_i64(value.producer_id);
    out.put_i16(value.producer_epoch);
    out.put_i32(value.timeout_ms);
    out.put_i8(value.state.id());
    let flexible = version >= 1;
    match &by_topic {
        None if flexible => put_unsigned_varint(&mut out, 0),
        None => out.put_i32(-1),
        Some(topics) => {
            put_length(&mut out, topics.len(), flexible);
            for (topic, partitions) in topics {
                if flexible {
                    put_length(&mut out, topic.len(), true);
                    out.put_slice(topic.as_bytes());
                } else {
                    put_string(&mut out, topic);
                }
                put_length(&mut out, partitions.len(), flexible);
                for partition in partitions {
                    out.put_i32(*partition);
                }
                if flexible {
                    put_unsigned_varint(&mut out, 0);
                }
            }
        }
    }
    out.put_i64(value.last_update_ms);
    out.put_i64(value.start_ms);
    if flexible {
        let previous = value.previous_producer_id != -1;
        let next = value.next_producer_id != -1;
        let client_version = value.client_transaction_version != 0;
        put_unsigned_varint(
            &mut out,
            [previous, next, client_version]
                .iter()
                .filter(|tag| **tag)
                .count(),
        );
        if previous {
            put_unsigned_varint(&mut out, 0);
            put_unsigned_varint(&mut out, TAG_INT64_BYTES);
            out.put_i64(value.previous_producer_id);
        }
        if next {
            put_unsigned_varint(&mut out, 1);
            put_unsigned_varint(&mut out, TAG_INT64_BYTES);
            out.put_i64(value.next_producer_id);
        }
        if client_version {
            put_unsigned_varint(&mut out, 2);
            put_unsigned_varint(&mut out, TAG_INT16_BYTES);
            out.put_i16(value.client_transaction_version);
        }
    }
    out.freeze()
}

/// Bytes [`encode_value`] writes (an upper bound for v1's varints): what the coordinator
/// checks against the state topic's record size limit before it stores a transition.
pub fn encoded_value_bytes(value: &TxnLogValue, version: i16) -> usize {
    const FIXED: usize = 2 + 8 + 2 + 4 + 1 + 8 + 8;
    const LENGTH: usize = 5;
    let topics = group_by_topic(value).unwrap_or_default();
    let partitions: usize = topics
        .iter()
        .map(|(topic, partitions)| LENGTH + topic.len() + LENGTH + 4 * partitions.len() + 1)
        .sum();
    let tags = if version >= 1 { 1 + 3 * (2 + 8) } else { 0 };
    FIXED + LENGTH + partitions + tags
}

fn group_by_topic(value: &TxnLogValue) -> Option<BTreeMap<&str, Vec<i32>>> {
    if value.state == TxnState::Empty {
        return None;
    }
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for partition in &value.partitions {
        topics
            .entry(partition.topic.as_str())
            .or_default()
            .push(partition.partition);
    }
    Some(topics)
}

/// The transactional id of a key.
pub fn decode_key(mut bytes: &[u8]) -> Result<String, TxnLogError> {
    let version = get_i16(&mut bytes)?;
    if version != KEY_VERSION {
        return Err(TxnLogError::UnknownKeyVersion(version));
    }
    get_string(&mut bytes)
}

pub fn decode_value(mut bytes: &[u8]) -> Result<TxnLogValue, TxnLogError> {
    let version = get_i16(&mut bytes)?;
    if !(0..=1).contains(&version) {
        return Err(TxnLogError::UnknownValueVersion(version));
    }
    let flexible = version >= 1;
    let producer_id = get_i64(&mut bytes)?;
    let producer_epoch = get_i16(&mut bytes)?;
    let timeout_ms = get_i32(&mut bytes)?;
    let state_id = get_i8(&mut bytes)?;
    let state = TxnState::from_id(state_id).ok_or(TxnLogError::UnknownState(state_id))?;
    let mut partitions = BTreeSet::new();
    if let Some(topics) = get_length(&mut bytes, flexible)? {
        for _ in 0..topics {
            let topic = if flexible {
                let length = get_length(&mut bytes, true)?.ok_or(TxnLogError::Malformed)?;
                take_utf8(&mut bytes, length)?
            } else {
                get_string(&mut bytes)?
            };
            let count = get_length(&mut bytes, flexible)?.ok_or(TxnLogError::Malformed)?;
            for _ in 0..count {
                partitions.insert(TopicPartition::new(&topic, get_i32(&mut bytes)?));
            }
            if flexible {
                skip_tags(&mut bytes)?;
            }
        }
    }
    let last_update_ms = get_i64(&mut bytes)?;
    let start_ms = get_i64(&mut bytes)?;
    let mut value = TxnLogValue {
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        timeout_ms,
        state,
        partitions: if state == TxnState::Empty {
            BTreeSet::new()
        } else {
            partitions
        },
        last_update_ms,
        start_ms,
        client_transaction_version: 0,
    };
    if flexible {
        let tags = get_unsigned_varint(&mut bytes)?;
        for _ in 0..tags {
            let tag = get_unsigned_varint(&mut bytes)?;
            let size = usize::try_from(get_unsigned_varint(&mut bytes)?)
                .map_err(|_| TxnLogError::Malformed)?;
            let mut field = bytes.get(..size).ok_or(TxnLogError::Malformed)?;
            match tag {
                0 => value.previous_producer_id = get_i64(&mut field)?,
                1 => value.next_producer_id = get_i64(&mut field)?,
                2 => value.client_transaction_version = get_i16(&mut field)?,
                _ => {}
            }
            bytes.advance(size);
        }
    }
    Ok(value)
}

/// One record of the topic: a value, or a tombstone (`value` is `None`).
pub fn decode_record(key: &[u8], value: Option<&[u8]>) -> Result<TxnLogRecord, TxnLogError> {
    let transactional_id = decode_key(key)?;
    Ok(match value {
        None => TxnLogRecord::Tombstone(transactional_id),
        Some(value) => TxnLogRecord::Value(transactional_id, decode_value(value)?),
    })
}

/// What replaying a `__transaction_state` partition rebuilds: each id's latest value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    pub transactions: BTreeMap<String, TxnLogValue>,
}

impl Replayed {
    /// Applies one record, in log order. An unreadable record is skipped with a warning:
    /// Kafka fails the whole load instead, which would leave every id of the partition
    /// without a coordinator; the id's older value (if any) stays.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        match decode_record(key, value) {
            Ok(TxnLogRecord::Value(transactional_id, value)) => {
                self.transactions.insert(transactional_id, value);
            }
            Ok(TxnLogRecord::Tombstone(transactional_id)) => {
                self.transactions.remove(&transactional_id);
            }
            Err(error) => {
                tracing::warn!(%error, "skipped an unreadable transaction state record");
            }
        }
    }
}

fn put_string(out: &mut BytesMut, text: &str) {
    // Transactional ids and topic names are bounded far below i16::MAX by the handlers.
    let length = text.len().min(i16::MAX as usize);
    out.put_i16(i16::try_from(length).unwrap_or(i16::MAX));
    out.put_slice(&text.as_bytes()[..length]);
}

fn put_length(out: &mut BytesMut, length: usize, flexible: bool) {
    if flexible {
        put_unsigned_varint(out, length + 1);
    } else {
        out.put_i32(i32::try_from(length).unwrap_or(i32::MAX));
    }
}

fn put_unsigned_varint(out: &mut BytesMut, value: usize) {
    let mut value = u64::try_from(value).unwrap_or(u64::MAX);
    while value >= 0x80 {
        out.put_u8(u8::try_from(value & 0x7f).unwrap_or(0) | 0x80);
        value >>= 7;
    }
    out.put_u8(u8::try_from(value).unwrap_or(0));
}

fn get_unsigned_varint(bytes: &mut &[u8]) -> Result<u64, TxnLogError> {
    let mut value = 0u64;
    // Kafka's unsigned varints are at most 5 bytes (u32).
    for shift in (0..35).step_by(7) {
        let byte = get_u8(bytes)?;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(TxnLogError::Malformed)
}

/// An array or string length: `None` for a null array.
fn get_length(bytes: &mut &[u8], flexible: bool) -> Result<Option<usize>, TxnLogError> {
    let length = if flexible {
        i64::try_from(get_unsigned_varint(bytes)?).map_err(|_| TxnLogError::Malformed)? - 1
    } else {
        i64::from(get_i32(bytes)?)
    };
    if length < 0 {
        return Ok(None);
    }
    let length = usize::try_from(length).map_err(|_| TxnLogError::Malformed)?;
    // Every element takes at least one byte: a length beyond the bytes left is damage, and
    // must not size anything.
    if length > bytes.len() {
        return Err(TxnLogError::Malformed);
    }
    Ok(Some(length))
}

fn skip_tags(bytes: &mut &[u8]) -> Result<(), TxnLogError> {
    let tags = get_unsigned_varint(bytes)?;
    for _ in 0..tags {
        get_unsigned_varint(bytes)?;
        let size =
            usize::try_from(get_unsigned_varint(bytes)?).map_err(|_| TxnLogError::Malformed)?;
        if bytes.len() < size {
            return Err(TxnLogError::Malformed);
        }
        bytes.advance(size);
    }
    Ok(())
}

fn get_string(bytes: &mut &[u8]) -> Result<String, TxnLogError> {
    let length = usize::try_from(get_i16(bytes)?).map_err(|_| TxnLogError::Malformed)?;
    take_utf8(bytes, length)
}

fn take_utf8(bytes: &mut &[u8], length: usize) -> Result<String, TxnLogError> {
    let text = bytes.get(..length).ok_or(TxnLogError::Malformed)?;
    let text = String::from_utf8(text.to_vec()).map_err(|_| TxnLogError::Malformed)?;
    bytes.advance(length);
    Ok(text)
}

fn get_u8(bytes: &mut &[u8]) -> Result<u8, TxnLogError> {
    if bytes.remaining() < 1 {
        return Err(TxnLogError::Malformed);
    }
    Ok(bytes.get_u8())
}

fn get_i8(bytes: &mut &[u8]) -> Result<i8, TxnLogError> {
    if bytes.remaining() < 1 {
        return Err(TxnLogError::Malformed);
    }
    Ok(bytes.get_i8())
}

fn get_i16(bytes: &mut &[u8]) -> Result<i16, TxnLogError> {
    if bytes.remaining() < 2 {
        return Err(TxnLogError::Malformed);
    }
    Ok(bytes.get_i16())
}

fn get_i32(bytes: &mut &[u8]) -> Result<i32, TxnLogError> {
    if bytes.remaining() < 4 {
        return Err(TxnLogError::Malformed);
    }
    Ok(bytes.get_i32())
}

fn get_i64(bytes: &mut &[u8]) -> Result<i64, TxnLogError> {
    if bytes.remaining() < 8 {
        return Err(TxnLogError::Malformed);
    }
    Ok(bytes.get_i64())
}

#[cfg(test)]
mod tests {
    //! Byte vectors derived by hand from Kafka 4.x's `TransactionLogKey.json` and
    //! `TransactionLogValue.json` (field order and types as the schema lists them; v1 is the
    //! flexible form of Kafka's generated `TransactionLogValue.write`: compact arrays and
    //! strings, a tag buffer after each struct, tagged fields only when not default).

    use super::*;

    fn ongoing() -> TxnLogValue {
        TxnLogValue {
            producer_id: 1000,
            previous_producer_id: 999,
            next_producer_id: -1,
            producer_epoch: 5,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [TopicPartition::new("t", 0), TopicPartition::new("t", 1)]
                .into_iter()
                .collect(),
            last_update_ms: 2000,
            start_ms: 1500,
            client_transaction_version: 2,
        }
    }

    #[test]
    fn the_key_is_version_0_and_the_id_as_an_int16_string() {
        assert_eq!(
            encode_key("txn").as_ref(),
            &[0x00, 0x00, 0x00, 0x03, b't', b'x', b'n']
        );
        assert_eq!(decode_key(&encode_key("txn")), Ok("txn".to_string()));
        assert_eq!(
            decode_key(&[0x00, 0x01, 0x00, 0x00]),
            Err(TxnLogError::UnknownKeyVersion(1))
        );
    }

    #[test]
    fn value_v0_matches_kafkas_layout() {
        let expected: Vec<u8> = [
            &[0x00, 0x00][..],                     // version 0
            &[0, 0, 0, 0, 0, 0, 0x03, 0xe8],       // producer id 1000
            &[0x00, 0x05],                         // epoch 5
            &[0x00, 0x00, 0xea, 0x60],             // timeout 60000
            &[0x01],                               // Ongoing
            &[0, 0, 0, 1],                         // one topic
            &[0x00, 0x01, b't'],                   // "t"
            &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1], // partitions [0, 1]
            &[0, 0, 0, 0, 0, 0, 0x07, 0xd0],       // last update 2000
            &[0, 0, 0, 0, 0, 0, 0x05, 0xdc],       // start 1500
        ]
        .concat();
        let bytes = encode_value(&ongoing(), 0);
        assert_eq!(bytes.as_ref(), expected.as_slice());
        // v0 has no tagged fields: they read as their defaults.
        let decoded = decode_value(&bytes).unwrap();
        assert_eq!(
            decoded,
            TxnLogValue {
                previous_producer_id: -1,
                client_transaction_version: 0,
                ..ongoing()
            }
        );
        assert!(encoded_value_bytes(&ongoing(), 0) >= bytes.len());
    }

    #[test]
    fn value_v1_matches_kafkas_flexible_layout_with_tags() {
        let expected: Vec<u8> = [
            &[0x00, 0x01][..],                           // version 1
            &[0, 0, 0, 0, 0, 0, 0x03, 0xe8],             // producer id 1000
            &[0x00, 0x05],                               // epoch 5
            &[0x00, 0x00, 0xea, 0x60],                   // timeout 60000
            &[0x01],                                     // Ongoing
            &[0x02],                                     // compact array: one topic
            &[0x02, b't'],                               // compact string "t"
            &[0x03, 0, 0, 0, 0, 0, 0, 0, 1],             // compact array [0, 1]
            &[0x00],                                     // the entry's empty tag buffer
            &[0, 0, 0, 0, 0, 0, 0x07, 0xd0],             // last update 2000
            &[0, 0, 0, 0, 0, 0, 0x05, 0xdc],             // start 1500
            &[0x02],                                     // two tagged fields
            &[0x00, 0x08, 0, 0, 0, 0, 0, 0, 0x03, 0xe7], // tag 0: previous producer id 999
            &[0x02, 0x02, 0x00, 0x02],                   // tag 2: client transaction version 2
        ]
        .concat();
        let bytes = encode_value(&ongoing(), 1);
        assert_eq!(bytes.as_ref(), expected.as_slice());
        assert_eq!(decode_value(&bytes), Ok(ongoing()));
        assert!(encoded_value_bytes(&ongoing(), 1) >= bytes.len());
    }

    #[test]
    fn an_empty_transaction_has_null_partitions() {
        let empty = TxnLogValue {
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            next_producer_id: 7,
            previous_producer_id: -1,
            client_transaction_version: 0,
            ..ongoing()
        };
        let v0 = encode_value(&empty, 0);
        // After version, id, epoch, timeout and state: a null array (-1).
        assert_eq!(&v0[17..21], &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            decode_value(&v0).map(|value| value.state),
            Ok(TxnState::Empty)
        );
        let v1 = encode_value(&empty, 1);
        assert_eq!(v1[17], 0x00, "a null compact array");
        // Only tag 1 (next producer id 7) differs from its default.
        assert_eq!(
            &v1[v1.len() - 11..],
            &[0x01, 0x01, 0x08, 0, 0, 0, 0, 0, 0, 0, 7]
        );
        assert_eq!(decode_value(&v1), Ok(empty));
    }

    #[test]
    fn unknown_tags_are_skipped_and_damage_is_an_error() {
        let mut bytes = encode_value(&ongoing(), 1).to_vec();
        // Replace the tag buffer's count 2 by 3 and add tag 3 (NextProducerEpoch, KIP-939).
        let tags_at = bytes.len() - 15;
        assert_eq!(bytes[tags_at], 0x02);
        bytes[tags_at] = 0x03;
        bytes.extend_from_slice(&[0x03, 0x02, 0x00, 0x09]);
        assert_eq!(decode_value(&bytes), Ok(ongoing()));
        for cut in 0..bytes.len() - 4 {
            assert!(decode_value(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_state = encode_value(&ongoing(), 0).to_vec();
        bad_state[16] = 9;
        assert_eq!(decode_value(&bad_state), Err(TxnLogError::UnknownState(9)));
        assert_eq!(
            decode_value(&[0x00, 0x02]),
            Err(TxnLogError::UnknownValueVersion(2))
        );
        // A huge declared array length is refused before anything is sized by it.
        let mut huge = encode_value(&ongoing(), 0).to_vec();
        huge[17..21].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(decode_value(&huge), Err(TxnLogError::Malformed));
    }

    #[test]
    fn a_replay_keeps_the_latest_value_and_drops_tombstoned_ids() {
        let mut replayed = Replayed::default();
        let key = encode_key("a");
        replayed.apply(&key, Some(&encode_value(&ongoing(), 1)));
        let later = TxnLogValue {
            state: TxnState::PrepareCommit,
            ..ongoing()
        };
        replayed.apply(&key, Some(&encode_value(&later, 0)));
        replayed.apply(&encode_key("b"), Some(&encode_value(&ongoing(), 1)));
        replayed.apply(&encode_key("b"), None);
        replayed.apply(&[0x00], Some(&[0x00]));
        let expected = TxnLogValue {
            previous_producer_id: -1,
            client_transaction_version: 0,
            ..later
        };
        assert_eq!(replayed.transactions.len(), 1);
        assert_eq!(replayed.transactions.get("a"), Some(&expected));
    }
}
