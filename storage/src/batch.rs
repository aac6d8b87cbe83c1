//! A view over Kafka RecordBatch v2 bytes, the unit the log stores.
//!
//! Layout (big-endian), from the Kafka protocol guide:
//!
//! ```text
//! 0  base_offset i64            | not covered by the CRC: the log
//! 8  batch_length i32           | rewrites base offset and leader epoch
//! 12 partition_leader_epoch i32 | in place without re-computing it
//! 16 magic i8 (= 2)
//! 17 crc u32 (CRC-32C of bytes 21..end)
//! 21 attributes i16
//! 23 last_offset_delta i32
//! 27 base_timestamp i64
//! 35 max_timestamp i64
//! 43 producer_id i64
//! 51 producer_epoch i16
//! 53 base_sequence i32
//! 57 records_count i32
//! 61 records
//! ```

use thiserror::Error;

/// Bytes before the records of a v2 batch.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes covered by the base offset and length fields; `batch_length` counts the rest.
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;
/// The `batch_length` of a batch with no records: the header after the length field.
pub const EMPTY_BATCH_LENGTH: i32 = 49;
/// The only record batch format LMQ stores.
pub const MAGIC_V2: i8 = 2;

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_LENGTH: usize = 8;
const OFFSET_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORDS_COUNT: usize = 57;

/// Attribute bits (Kafka `DefaultRecordBatch`).
const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
const ATTRIBUTE_TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
pub(crate) const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
pub(crate) const ATTRIBUTE_CONTROL: i16 = 0x20;
/// A control batch larger than this is not a transaction marker (one record of 10 bytes):
/// reads of one are bounded by it.
pub(crate) const CONTROL_BATCH_BYTES_MAX: usize = 4096;
/// KIP-534: the base timestamp holds the batch's delete horizon (set by the cleaner).
pub(crate) const ATTRIBUTE_DELETE_HORIZON: i16 = 0x40;

/// Why bytes are not a valid v2 record batch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error(
        "record batch of {available} bytes is shorter than the {BATCH_HEADER_BYTES}-byte header"
    )]
    TooShort { available: usize },
    #[error("record batch declares {declared} bytes but {available} are present")]
    LengthMismatch { declared: i64, available: usize },
    #[error("record batch magic {magic} is not supported (only v2)")]
    UnsupportedMagic { magic: i8 },
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch last offset delta {last_offset_delta} is negative")]
    NegativeLastOffsetDelta { last_offset_delta: i32 },
    #[error("record batch has {records_count} records")]
    InvalidRecordsCount { records_count: i32 },
}

/// Compression codec named by a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// A codec id Kafka does not define; the log stores it as received.
    Unknown(u8),
}

/// Read-only view over one complete, length-checked record batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

/// Total size of the batch starting at `bytes`, read from its length field, or `None` when
/// fewer than 12 bytes are present or the length is negative.
pub fn batch_total_bytes(bytes: &[u8]) -> Option<u64> {
    let length = read_i32(bytes, OFFSET_LENGTH)?;
    u64::try_from(length)
        .ok()
        .map(|length| length + BATCH_LENGTH_PREFIX_BYTES as u64)
}

impl<'a> BatchView<'a> {
    /// Checks the framing of exactly one batch: header present, declared length equal to
    /// `bytes.len()`, magic 2. The CRC is checked separately by [`BatchView::verify_crc`].
    pub fn new(bytes: &'a [u8]) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::TooShort {
                available: bytes.len(),
            });
        }
        let declared = batch_total_bytes(bytes).map_or(-1, |total| total as i64);
        if declared != bytes.len() as i64 {
            return Err(BatchError::LengthMismatch {
                declared,
                available: bytes.len(),
            });
        }
        let view = BatchView { bytes };
        if view.magic() != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic {
                magic: view.magic(),
            });
        }
        if view.last_offset_delta() < 0 {
            return Err(BatchError::NegativeLastOffsetDelta {
                last_offset_delta: view.last_offset_delta(),
            });
        }
        if view.records_count() < 0 {
            return Err(BatchError::InvalidRecordsCount {
                records_count: view.records_count(),
            });
        }
        Ok(view)
    }

    /// [`BatchView::new`] plus the CRC check: what the log requires of every batch it stores.
    pub fn validated(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let view = Self::new(bytes)?;
        view.verify_crc()?;
        Ok(view)
    }

    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let stored = self.crc();
        let computed = crc32c::crc32c(&self.bytes[OFFSET_ATTRIBUTES..]);
        if stored != computed {
            return Err(BatchError::CrcMismatch { stored, computed });
        }
        Ok(())
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    pub fn total_bytes(&self) -> usize {
        self.bytes.len()
    }
    pub fn base_offset(&self) -> i64 {
        self.i64_at(OFFSET_BASE_OFFSET)
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        self.i32_at(OFFSET_LEADER_EPOCH)
    }
    pub fn magic(&self) -> i8 {
        i8::from_be_bytes([self.bytes[OFFSET_MAGIC]])
    }
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(self.array_at(OFFSET_CRC))
    }
    pub fn attributes(&self) -> i16 {
        i16::from_be_bytes(self.array_at(OFFSET_ATTRIBUTES))
    }
    pub fn compression(&self) -> Compression {
        match (self.attributes() & ATTRIBUTE_COMPRESSION_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & ATTRIBUTE_TIMESTAMP_TYPE_LOG_APPEND != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTRIBUTE_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTRIBUTE_CONTROL != 0
    }
    /// When the cleaner may drop this batch's tombstones (KIP-534): the base timestamp, when
    /// the delete-horizon attribute is set.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes() & ATTRIBUTE_DELETE_HORIZON != 0).then(|| self.base_timestamp())
    }
    pub fn last_offset_delta(&self) -> i32 {
        self.i32_at(OFFSET_LAST_OFFSET_DELTA)
    }
    pub fn base_timestamp(&self) -> i64 {
        self.i64_at(OFFSET_BASE_TIMESTAMP)
    }
    pub fn max_timestamp(&self) -> i64 {
        self.i64_at(OFFSET_MAX_TIMESTAMP)
    }
    pub fn producer_id(&self) -> i64 {
        self.i64_at(OFFSET_PRODUCER_ID)
    }
    pub fn producer_epoch(&self) -> i16 {
        i16::from_be_bytes(self.array_at(OFFSET_PRODUCER_EPOCH))
    }
    pub fn base_sequence(&self) -> i32 {
        self.i32_at(OFFSET_BASE_SEQUENCE)
    }
    pub fn records_count(&self) -> i32 {
        self.i32_at(OFFSET_RECORDS_COUNT)
    }
    /// Record bytes after the header, compressed when [`BatchView::compression`] says so.
    pub fn records_bytes(&self) -> &'a [u8] {
        &self.bytes[BATCH_HEADER_BYTES..]
    }

    fn array_at<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[at..at + N]);
        out
    }
    fn i32_at(&self, at: usize) -> i32 {
        i32::from_be_bytes(self.array_at(at))
    }
    fn i64_at(&self, at: usize) -> i64 {
        i64::from_be_bytes(self.array_at(at))
    }
}

/// Rewrites the base offset of the batch at the start of `bytes` (outside the CRC).
pub fn set_base_offset(bytes: &mut [u8], base_offset: i64) {
    bytes[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch of the batch at the start of `bytes` (outside the CRC).
pub fn set_partition_leader_epoch(bytes: &mut [u8], epoch: i32) {
    bytes[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps a batch with broker time (`message.timestamp.type=LogAppendTime`): sets the
/// timestamp-type bit and max timestamp, then recomputes the CRC those fields are under.
pub fn set_log_append_time(bytes: &mut [u8], timestamp_ms: i64) {
    let attributes = i16::from_be_bytes([bytes[OFFSET_ATTRIBUTES], bytes[OFFSET_ATTRIBUTES + 1]])
        | ATTRIBUTE_TIMESTAMP_TYPE_LOG_APPEND;
    bytes[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    bytes[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8]
        .copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..]);
    bytes[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The batch of `view` with its records section replaced by `records`, written under codec
/// id `codec` (the low three attribute bits): every other header field is kept, the length
/// and CRC are recomputed. `None` when the result would not fit a batch's i32 length. For
/// the broker's recompression (`compression.type`), which changes only how records are
/// encoded.
pub fn with_records(view: &BatchView<'_>, codec: i16, records: &[u8]) -> Option<Vec<u8>> {
    let total = BATCH_HEADER_BYTES.checked_add(records.len())?;
    let length = i32::try_from(total - BATCH_LENGTH_PREFIX_BYTES).ok()?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(view.bytes().get(..BATCH_HEADER_BYTES)?);
    out.extend_from_slice(records);
    out[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let attributes =
        (view.attributes() & !ATTRIBUTE_COMPRESSION_MASK) | (codec & ATTRIBUTE_COMPRESSION_MASK);
    out[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Some(out)
}

/// The first record of an uncompressed batch whose timestamp is at or after `target_ms`, as
/// `(timestamp, offset)`. `None` when the records are compressed (the caller must
/// decompress), malformed, or all older.
pub fn first_offset_at_or_after(view: &BatchView<'_>, target_ms: i64) -> Option<(i64, i64)> {
    if view.is_log_append_time() {
        // Every record carries the broker's append time, the batch's max timestamp.
        return (view.max_timestamp() >= target_ms)
            .then(|| (view.max_timestamp(), view.base_offset()));
    }
    if view.compression() != Compression::None {
        return None;
    }
    first_offset_in_records(view, view.records_bytes(), target_ms)
}

/// [`first_offset_at_or_after`] over `records`, the batch's records already decompressed.
pub fn first_offset_in_records(
    view: &BatchView<'_>,
    records: &[u8],
    target_ms: i64,
) -> Option<(i64, i64)> {
    if view.is_log_append_time() {
        return (view.max_timestamp() >= target_ms)
            .then(|| (view.max_timestamp(), view.base_offset()));
    }
    let mut rest = records;
    for _ in 0..view.records_count() {
        let (length, after_length) = read_varlong(rest)?;
        let length = usize::try_from(length).ok()?;
        let record = after_length.get(..length)?;
        let (timestamp_delta, after_timestamp) = read_varlong(record.get(1..)?)?;
        let (offset_delta, _) = read_varlong(after_timestamp)?;
        let timestamp = view.base_timestamp().checked_add(timestamp_delta)?;
        if timestamp >= target_ms {
            return Some((timestamp, view.base_offset().checked_add(offset_delta)?));
        }
        rest = after_length.get(length..)?;
    }
    None
}

/// One record of a batch, borrowed from its (uncompressed) records bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The record's encoded headers (count first); [`RecordView::headers`] parses them.
    headers: &'a [u8],
}

/// One header of a parsed record. Keys are UTF-8 by contract but stay bytes here: readers
/// decide how to treat a client that broke it. A key may repeat within a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl<'a> RecordView<'a> {
    /// The record's headers as encoded (count first), for re-encoding it unchanged.
    pub fn headers_bytes(&self) -> &'a [u8] {
        self.headers
    }

    /// The record's headers in order, duplicates kept; `None` when they are malformed.
    /// Parsed on demand so paths that never look at headers do not pay for them.
    pub fn headers(&self) -> Option<Vec<HeaderView<'a>>> {
        let (count, mut rest) = read_varlong(self.headers)?;
        let count = usize::try_from(count).ok()?;
        // Each header takes at least 2 bytes: never trust the count for the allocation.
        let mut out = Vec::with_capacity(count.min(rest.len() / 2));
        for _ in 0..count {
            let (key, after_key) = read_bytes(rest)?;
            let (value, after_value) = read_bytes(after_key)?;
            out.push(HeaderView { key: key?, value });
            rest = after_value;
        }
        Some(out)
    }
}

/// Parses every record of a batch from `records` (its payload, decompressed if it was
/// compressed). `None` when the bytes are malformed.
pub fn parse_records<'a>(view: &BatchView<'_>, records: &'a [u8]) -> Option<Vec<RecordView<'a>>> {
    let count = usize::try_from(view.records_count()).ok()?;
    // Each record takes at least 7 bytes: never trust the count for the allocation.
    let mut out = Vec::with_capacity(count.min(records.len() / 7));
    let mut rest = records;
    for _ in 0..count {
        let (length, after_length) = read_varlong(rest)?;
        let length = usize::try_from(length).ok()?;
        let record = after_length.get(..length)?;
        rest = after_length.get(length..)?;
        let (timestamp_delta, body) = read_varlong(record.get(1..)?)?;
        let (offset_delta, body) = read_varlong(body)?;
        let (key, body) = read_bytes(body)?;
        let (value, headers) = read_bytes(body)?;
        out.push(RecordView {
            offset: view.base_offset().checked_add(offset_delta)?,
            timestamp_ms: if view.is_log_append_time() {
                view.max_timestamp()
            } else {
                view.base_timestamp().checked_add(timestamp_delta)?
            },
            key,
            value,
            headers,
        });
    }
    Some(out)
}

fn read_bytes(bytes: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let (length, rest) = read_varlong(bytes)?;
    if length < 0 {
        return Some((None, rest));
    }
    let length = usize::try_from(length).ok()?;
    Some((Some(rest.get(..length)?), rest.get(length..)?))
}

/// A zig-zag varint of at most 10 bytes and what follows it.
fn read_varlong(bytes: &[u8]) -> Option<(i64, &[u8])> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((decoded, &bytes[index + 1..]));
        }
    }
    None
}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let field = bytes.get(at..at + 4)?;
    let mut out = [0u8; 4];
    out.copy_from_slice(field);
    Some(i32::from_be_bytes(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::BatchBuilder;

    /// The broker's recompression: a new records section under another codec, every other
    /// header field kept, length and CRC recomputed.
    #[test]
    fn with_records_replaces_the_records_and_keeps_the_header() {
        let mut builder = BatchBuilder::new(1_000).producer(7, 2, 40);
        builder.push(Some(b"k"), Some(b"v"), 1_005);
        builder.push(None, Some(b"w"), 1_009);
        let original = builder.build();
        let view = BatchView::validated(&original).unwrap();
        let records = b"opaque compressed bytes, longer than the original records";
        let rebuilt = with_records(&view, 4, records).unwrap();
        let new = BatchView::validated(&rebuilt).unwrap();
        assert_eq!(new.compression(), Compression::Zstd);
        assert_eq!(new.records_bytes(), records);
        assert_eq!(batch_total_bytes(&rebuilt), Some(rebuilt.len() as u64));
        assert_eq!(
            (
                new.producer_id(),
                new.producer_epoch(),
                new.base_sequence(),
                new.records_count(),
                new.last_offset_delta(),
                new.base_timestamp(),
                new.max_timestamp()
            ),
            (7, 2, 40, 2, 1, 1_000, 1_009)
        );
        let back = with_records(&new, 0, view.records_bytes()).unwrap();
        assert_eq!(back, original, "and back to the original bytes");
    }

    fn sample() -> Vec<u8> {
        let mut builder = BatchBuilder::new(1_000);
        builder.push(Some(b"k"), Some(b"v1"), 1_000);
        builder.push(None, Some(b"v2"), 1_005);
        builder.build()
    }

    #[test]
    fn reads_header_fields_of_a_built_batch() {
        let bytes = sample();
        let view = BatchView::validated(&bytes).unwrap();
        assert_eq!(view.base_offset(), 0);
        assert_eq!(view.last_offset_delta(), 1);
        assert_eq!(view.records_count(), 2);
        assert_eq!(view.base_timestamp(), 1_000);
        assert_eq!(view.max_timestamp(), 1_005);
        assert_eq!(view.compression(), Compression::None);
        assert_eq!(view.producer_id(), -1);
        assert!(!view.is_transactional() && !view.is_control() && !view.is_log_append_time());
    }

    #[test]
    fn offset_and_epoch_rewrites_keep_the_crc_valid() {
        let mut bytes = sample();
        set_base_offset(&mut bytes, 42);
        set_partition_leader_epoch(&mut bytes, 7);
        let view = BatchView::validated(&bytes).unwrap();
        assert_eq!(view.base_offset(), 42);
        assert_eq!(view.last_offset(), 43);
        assert_eq!(view.partition_leader_epoch(), 7);
    }

    #[test]
    fn log_append_time_rewrite_recomputes_the_crc() {
        let mut bytes = sample();
        set_log_append_time(&mut bytes, 99_999);
        let view = BatchView::validated(&bytes).unwrap();
        assert!(view.is_log_append_time());
        assert_eq!(view.max_timestamp(), 99_999);
    }

    #[test]
    fn rejects_bad_framing_magic_and_crc() {
        let bytes = sample();
        assert_eq!(
            BatchView::new(&bytes[..10]).unwrap_err(),
            BatchError::TooShort { available: 10 }
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            BatchView::new(&longer),
            Err(BatchError::LengthMismatch { .. })
        ));
        let mut magic = bytes.clone();
        magic[OFFSET_MAGIC] = 1;
        assert_eq!(
            BatchView::new(&magic).unwrap_err(),
            BatchError::UnsupportedMagic { magic: 1 }
        );
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(matches!(
            BatchView::validated(&flipped),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn empty_batch_length_is_the_header_after_the_length_field() {
        assert_eq!(
            EMPTY_BATCH_LENGTH as usize,
            BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES
        );
    }

    #[test]
    fn timestamp_search_finds_the_exact_record_of_an_uncompressed_batch() {
        let mut builder = BatchBuilder::new(1_000);
        for (index, timestamp) in [1_000, 1_010, 1_005, 1_020].into_iter().enumerate() {
            builder.push(None, Some(&[u8::try_from(index).unwrap(); 200]), timestamp);
        }
        let mut bytes = builder.build();
        set_base_offset(&mut bytes, 100);
        let view = BatchView::validated(&bytes).unwrap();
        assert_eq!(first_offset_at_or_after(&view, 0), Some((1_000, 100)));
        assert_eq!(first_offset_at_or_after(&view, 1_006), Some((1_010, 101)));
        assert_eq!(first_offset_at_or_after(&view, 1_011), Some((1_020, 103)));
        assert_eq!(first_offset_at_or_after(&view, 1_021), None);
        let mut truncated = bytes.clone();
        truncated.truncate(100);
        let length = i32::try_from(truncated.len() - 12).unwrap();
        truncated[8..12].copy_from_slice(&length.to_be_bytes());
        let view = BatchView::new(&truncated).unwrap();
        assert_eq!(
            first_offset_at_or_after(&view, 1_011),
            None,
            "malformed records: no answer"
        );
    }

    #[test]
    fn records_parse_back_to_what_was_built() {
        use crate::builder::RecordHeader;
        let mut builder = BatchBuilder::new(50);
        builder.push(Some(b"k1"), Some(b"v1"), 50);
        let repeated = [
            RecordHeader {
                key: "trace",
                value: Some(b"a"),
            },
            RecordHeader {
                key: "trace",
                value: None,
            },
            RecordHeader {
                key: "other",
                value: Some(b""),
            },
        ];
        builder.push_with_headers(None, None, 57, &repeated);
        let mut bytes = builder.build();
        set_base_offset(&mut bytes, 10);
        let view = BatchView::validated(&bytes).unwrap();
        let records = parse_records(&view, view.records_bytes()).unwrap();
        assert_eq!(records.len(), 2);
        type Summary<'a> = (i64, i64, Option<&'a [u8]>, Option<&'a [u8]>);
        fn summary<'a>(record: RecordView<'a>) -> Summary<'a> {
            (record.offset, record.timestamp_ms, record.key, record.value)
        }
        assert_eq!(
            summary(records[0]),
            (10, 50, Some(&b"k1"[..]), Some(&b"v1"[..]))
        );
        assert_eq!(summary(records[1]), (11, 57, None, None));
        assert_eq!(records[0].headers(), Some(vec![]));
        let headers = records[1].headers().unwrap();
        let pairs: Vec<_> = headers
            .iter()
            .map(|header| (header.key, header.value))
            .collect();
        assert_eq!(
            pairs,
            [
                (&b"trace"[..], Some(&b"a"[..])),
                (&b"trace"[..], None),
                (&b"other"[..], Some(&b""[..]))
            ],
            "order and repeated keys are kept"
        );
        assert_eq!(parse_records(&view, &view.records_bytes()[..5]), None);
    }

    #[test]
    fn malformed_headers_are_refused_not_misread() {
        let mut builder = BatchBuilder::new(0);
        builder.push_with_headers(
            None,
            Some(b"v"),
            0,
            &[crate::builder::RecordHeader {
                key: "k",
                value: Some(b"vv"),
            }],
        );
        let bytes = builder.build();
        let view = BatchView::validated(&bytes).unwrap();
        let record = parse_records(&view, view.records_bytes()).unwrap()[0];
        let cut = RecordView {
            headers: &record.headers[..record.headers.len() - 1],
            ..record
        };
        assert_eq!(cut.headers(), None, "a header value past the record's end");
        let null_key = RecordView {
            headers: &[2, 1, 0],
            ..record
        };
        assert_eq!(null_key.headers(), None, "a header without a key");
    }

    #[test]
    fn total_bytes_needs_the_length_field() {
        let bytes = sample();
        assert_eq!(batch_total_bytes(&bytes[..11]), None);
        assert_eq!(batch_total_bytes(&bytes), Some(bytes.len() as u64));
    }
}
