//! Decompression of record batch payloads, for the paths that must look inside a batch
//! (timestamp lookups; later filtering and compaction). Produce and fetch never decompress:
//! batches are stored and served as the producer compressed them.
//!
//! Every decoder is bounded: output beyond `output_bytes_max` is an error, so a small
//! compressed batch cannot expand into unbounded memory.

use std::io::Read;

use bytes::Bytes;
use lmq_storage::batch::{BATCH_HEADER_BYTES, BatchView, batch_total_bytes, parse_records};
use lmq_storage::builder::{BatchBuilder, RecordHeader};

use crate::error::WireError;

/// Kafka's codec ids (the low three bits of a batch's attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    pub fn from_attributes(attributes: i16) -> Result<Self, WireError> {
        match attributes & 0x07 {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            other => Err(WireError::malformed(
                "record batch",
                format!("unknown compression codec {other}"),
            )),
        }
    }
}

/// Compresses a batch payload (the records section) with `codec` at its default level.
/// Snappy uses the xerial framing the Java client writes, which every client reads.
pub fn compress(codec: Codec, plain: &[u8]) -> Result<Vec<u8>, WireError> {
    compress_at(codec, None, plain)
}

/// Kafka's default zstd level (`compression.zstd.level`).
const ZSTD_LEVEL_DEFAULT: i32 = 3;

/// [`compress`] at `level` (Kafka's `compression.<codec>.level`; `None` or gzip's -1: the
/// codec's default). lz4 has one level here: `lz4_flex` writes its fast mode only.
pub fn compress_at(codec: Codec, level: Option<i32>, plain: &[u8]) -> Result<Vec<u8>, WireError> {
    use std::io::Write;
    let failed = |error: std::io::Error| WireError::malformed("compressing records", error);
    match codec {
        Codec::None => Ok(plain.to_vec()),
        Codec::Gzip => {
            let level = match level.and_then(|level| u32::try_from(level).ok()) {
                Some(level @ 1..=9) => flate2::Compression::new(level),
                _ => flate2::Compression::default(),
            };
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
            encoder.write_all(plain).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Codec::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(plain).map_err(failed)?;
            encoder
                .finish()
                .map_err(|error| WireError::malformed("compressing records", error))
        }
        Codec::Zstd => zstd::encode_all(plain, level.unwrap_or(ZSTD_LEVEL_DEFAULT)).map_err(failed),
        Codec::Snappy => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
            for block in plain.chunks(32 * 1024) {
                let compressed = snap::raw::Encoder::new()
                    .compress_vec(block)
                    .map_err(|error| WireError::malformed("compressing records", error))?;
                let length = u32::try_from(compressed.len())
                    .map_err(|error| WireError::malformed("compressing records", error))?;
                out.extend_from_slice(&length.to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
    }
}

/// The records section of a (validated) batch, uncompressed: borrowed when the batch is not
/// compressed, else decompressed within `output_bytes_max`.
pub fn plain_records<'a>(
    view: &BatchView<'a>,
    output_bytes_max: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, WireError> {
    match Codec::from_attributes(view.attributes())? {
        Codec::None => Ok(std::borrow::Cow::Borrowed(view.records_bytes())),
        codec => Ok(std::borrow::Cow::Owned(decompress(
            codec,
            view.records_bytes(),
            output_bytes_max,
        )?)),
    }
}

/// A record as a client produces it. Headers are a list: Kafka allows a key to repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp_ms: i64,
}

/// The idempotent producer a batch comes from; `None` in [`encode_batch`] writes -1s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// The batch belongs to the producer's ongoing transaction.
    pub transactional: bool,
}

/// Encodes `records` as one v2 batch (base offset 0, the broker assigns offsets) compressed
/// with `codec`.
pub fn encode_batch(
    records: &[OutRecord],
    codec: Codec,
    producer: Option<ProducerStamp>,
) -> Result<Bytes, WireError> {
    let base_timestamp = records.first().map_or(0, |record| record.timestamp_ms);
    let mut builder = BatchBuilder::new(base_timestamp);
    if let Some(stamp) = producer {
        builder = builder.producer(stamp.producer_id, stamp.producer_epoch, stamp.base_sequence);
        if stamp.transactional {
            builder = builder.transactional();
        }
    }
    for record in records {
        let headers: Vec<RecordHeader<'_>> = record
            .headers
            .iter()
            .map(|(key, value)| RecordHeader {
                key,
                value: value.as_deref(),
            })
            .collect();
        builder.push_with_headers(
            record.key.as_deref(),
            record.value.as_deref(),
            record.timestamp_ms,
            &headers,
        );
    }
    let batch = builder.build_compressed(codec as i16, |plain| compress(codec, plain))?;
    Ok(Bytes::from(batch))
}

/// A record read back from a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// In the order the producer wrote them, repeated keys kept. A key that is not UTF-8
    /// is read lossily, as the Java client reads it.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// A transaction marker, never application data.
    pub control: bool,
    /// The producer of its batch (-1 for a producer without an id).
    pub producer_id: i64,
    /// Its batch belongs to a transaction (aborted ones are left out by read_committed
    /// consumers).
    pub transactional: bool,
}

/// Decodes every whole batch in `bytes` (a fetch may end with a partial batch, which is
/// skipped), checking each batch's CRC and decompressing with the bounded decoders below.
/// Uncompressed keys and values share `bytes` rather than being copied.
pub fn decode_batches(
    mut bytes: Bytes,
    output_bytes_max: usize,
) -> Result<Vec<InRecord>, WireError> {
    let mut out = Vec::new();
    while let Some(total) = batch_total_bytes(&bytes) {
        let Ok(total) = usize::try_from(total) else {
            break;
        };
        if bytes.len() < total {
            break;
        }
        let batch = bytes.split_to(total);
        let view = BatchView::validated(&batch)
            .map_err(|error| WireError::malformed("record batch", error))?;
        let codec = Codec::from_attributes(view.attributes())?;
        let payload = match codec {
            Codec::None => batch.slice(BATCH_HEADER_BYTES..),
            _ => Bytes::from(decompress(codec, view.records_bytes(), output_bytes_max)?),
        };
        let records = parse_records(&view, &payload)
            .ok_or_else(|| WireError::malformed("record batch", "records do not parse"))?;
        for record in records {
            let headers = record
                .headers()
                .ok_or_else(|| WireError::malformed("record batch", "headers do not parse"))?;
            out.push(InRecord {
                offset: record.offset,
                timestamp_ms: record.timestamp_ms,
                key: record.key.map(|key| payload.slice_ref(key)),
                value: record.value.map(|value| payload.slice_ref(value)),
                headers: headers
                    .into_iter()
                    .map(|header| {
                        let key = String::from_utf8_lossy(header.key).into_owned();
                        (key, header.value.map(|value| payload.slice_ref(value)))
                    })
                    .collect(),
                control: view.is_control(),
                producer_id: view.producer_id(),
                transactional: view.is_transactional(),
            });
        }
    }
    Ok(out)
}

/// The Java client's (xerial) snappy framing, which librdkafka also reads and writes.
const XERIAL_MAGIC: &[u8] = &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_BYTES: usize = 16;

/// The uncompressed records of a batch payload compressed with `codec`.
pub fn decompress(
    codec: Codec,
    compressed: &[u8],
    output_bytes_max: usize,
) -> Result<Vec<u8>, WireError> {
    match codec {
        Codec::None => Ok(compressed.to_vec()),
        Codec::Gzip => read_bounded(flate2::read::GzDecoder::new(compressed), output_bytes_max),
        Codec::Lz4 => read_bounded(
            lz4_flex::frame::FrameDecoder::new(compressed),
            output_bytes_max,
        ),
        Codec::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(compressed)
                .map_err(|error| WireError::malformed("zstd records", error))?;
            read_bounded(decoder, output_bytes_max)
        }
        Codec::Snappy if compressed.starts_with(XERIAL_MAGIC) => {
            let mut out = Vec::new();
            let mut rest = compressed.get(XERIAL_HEADER_BYTES..).unwrap_or_default();
            while !rest.is_empty() {
                let (length, block) = rest
                    .split_at_checked(4)
                    .ok_or_else(|| truncated("snappy"))?;
                let length =
                    u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
                let (block, after) = block
                    .split_at_checked(length)
                    .ok_or_else(|| truncated("snappy"))?;
                out.extend(snappy_block(
                    block,
                    output_bytes_max.saturating_sub(out.len()),
                )?);
                rest = after;
            }
            Ok(out)
        }
        Codec::Snappy => snappy_block(compressed, output_bytes_max),
    }
}

fn snappy_block(block: &[u8], output_bytes_max: usize) -> Result<Vec<u8>, WireError> {
    let length = snap::raw::decompress_len(block)
        .map_err(|error| WireError::malformed("snappy records", error))?;
    if length > output_bytes_max {
        return Err(too_large(output_bytes_max));
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(|error| WireError::malformed("snappy records", error))
}

fn read_bounded(reader: impl Read, output_bytes_max: usize) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    let limit = u64::try_from(output_bytes_max)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|error| WireError::malformed("compressed records", error))?;
    if out.len() > output_bytes_max {
        return Err(too_large(output_bytes_max));
    }
    Ok(out)
}

fn truncated(what: &'static str) -> WireError {
    WireError::malformed(what, "truncated block")
}

fn too_large(output_bytes_max: usize) -> WireError {
    WireError::malformed(
        "compressed records",
        format!("expand past {output_bytes_max} bytes"),
    )
}

/// The codecs for the storage crate's cleaner, which decompresses, filters and recompresses
/// batches with their own codec.
#[derive(Debug, Default, Clone, Copy)]
pub struct CleanerCodecs;

impl CleanerCodecs {
    fn codec(compression: lmq_storage::batch::Compression) -> Result<Codec, String> {
        use lmq_storage::batch::Compression;
        match compression {
            Compression::None => Ok(Codec::None),
            Compression::Gzip => Ok(Codec::Gzip),
            Compression::Snappy => Ok(Codec::Snappy),
            Compression::Lz4 => Ok(Codec::Lz4),
            Compression::Zstd => Ok(Codec::Zstd),
            Compression::Unknown(id) => Err(format!("unknown compression codec {id}")),
        }
    }
}

impl lmq_storage::clean::RecordsCodec for CleanerCodecs {
    fn decompress(
        &self,
        compression: lmq_storage::batch::Compression,
        payload: &[u8],
        output_bytes_max: usize,
    ) -> Result<Vec<u8>, String> {
        decompress(Self::codec(compression)?, payload, output_bytes_max)
            .map_err(|error| error.to_string())
    }

    fn compress(
        &self,
        compression: lmq_storage::batch::Compression,
        plain: &[u8],
    ) -> Result<Vec<u8>, String> {
        compress(Self::codec(compression)?, plain).map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const PLAIN: &[u8] = b"records records records records records records records";

    #[test]
    fn every_codec_round_trips_through_a_real_encoder() {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(PLAIN).unwrap();
        let gzip = gzip.finish().unwrap();
        let mut lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz4.write_all(PLAIN).unwrap();
        let lz4 = lz4.finish().unwrap();
        let zstd = zstd::encode_all(PLAIN, 3).unwrap();
        let snappy = snap::raw::Encoder::new().compress_vec(PLAIN).unwrap();
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        xerial.extend_from_slice(&u32::try_from(snappy.len()).unwrap().to_be_bytes());
        xerial.extend_from_slice(&snappy);
        for (codec, bytes) in [
            (Codec::None, PLAIN.to_vec()),
            (Codec::Gzip, gzip),
            (Codec::Lz4, lz4),
            (Codec::Zstd, zstd),
            (Codec::Snappy, snappy),
            (Codec::Snappy, xerial),
        ] {
            assert_eq!(decompress(codec, &bytes, 1024).unwrap(), PLAIN, "{codec:?}");
            assert!(
                decompress(codec, &bytes, 10).is_err() || codec == Codec::None,
                "{codec:?} bound"
            );
        }
    }

    #[test]
    fn batches_round_trip_through_every_codec() {
        let record = |index: i64| OutRecord {
            key: (index != 1).then(|| Bytes::from(format!("key-{index}"))),
            value: (index != 2).then(|| Bytes::from(vec![b'v'; 300])),
            headers: vec![
                ("trace".to_string(), Some(Bytes::from("a"))),
                ("trace".to_string(), None),
                ("n".to_string(), Some(Bytes::from(index.to_string()))),
            ],
            // Out of order on purpose: deltas may be negative.
            timestamp_ms: 1_000 - index,
        };
        let records = [record(0), record(1), record(2)];
        let stamp = ProducerStamp {
            producer_id: 9,
            producer_epoch: 2,
            base_sequence: 30,
            transactional: true,
        };
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let batch = encode_batch(&records, codec, Some(stamp)).unwrap();
            let view = BatchView::validated(&batch).unwrap();
            assert_eq!(Codec::from_attributes(view.attributes()).unwrap(), codec);
            assert!(view.is_transactional() && !view.is_control());
            assert_eq!(
                (
                    view.producer_id(),
                    view.producer_epoch(),
                    view.base_sequence()
                ),
                (9, 2, 30)
            );
            assert_eq!(
                (view.base_timestamp(), view.max_timestamp()),
                (1_000, 1_000)
            );
            let decoded = decode_batches(batch.clone(), 1 << 20).unwrap();
            assert_eq!(decoded.len(), 3, "{codec:?}");
            for (index, (sent, got)) in records.iter().zip(&decoded).enumerate() {
                assert_eq!(got.offset, i64::try_from(index).unwrap());
                assert_eq!(
                    (&got.key, &got.value, &got.headers, got.timestamp_ms),
                    (&sent.key, &sent.value, &sent.headers, sent.timestamp_ms),
                    "{codec:?} record {index}"
                );
                assert!(!got.control);
            }
            assert_eq!(
                decode_batches(batch.slice(..batch.len() - 1), 1 << 20)
                    .unwrap()
                    .len(),
                0,
                "partial batch skipped"
            );
            let mut corrupt = batch.to_vec();
            let last = corrupt.len() - 1;
            corrupt[last] ^= 0xff;
            assert!(
                decode_batches(Bytes::from(corrupt), 1 << 20).is_err(),
                "{codec:?}: a CRC mismatch is an error"
            );
        }
        let plain = encode_batch(&records, Codec::None, None).unwrap();
        let view = BatchView::validated(&plain).unwrap();
        assert_eq!((view.producer_id(), view.base_sequence()), (-1, -1));
    }

    #[test]
    fn a_kafka_protocol_batch_decodes_the_same() {
        // An independent encoder (kafka-protocol's) as the reference for the layout.
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let mut headers = kafka_protocol::indexmap::IndexMap::new();
        headers.insert(
            kafka_protocol::protocol::StrBytes::from_static_str("h"),
            Some(Bytes::from("x")),
        );
        let records: Vec<Record> = (0..3)
            .map(|offset| Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: 5,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset,
                sequence: 7 + i32::try_from(offset).unwrap(),
                timestamp: 2_000 + offset,
                key: Some(Bytes::from(format!("k{offset}"))),
                value: None,
                headers: headers.clone(),
            })
            .collect();
        let mut reference = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut reference, &records, &options).unwrap();
        let ours: Vec<OutRecord> = records
            .iter()
            .map(|record| OutRecord {
                key: record.key.clone(),
                value: None,
                headers: vec![("h".to_string(), Some(Bytes::from("x")))],
                timestamp_ms: record.timestamp,
            })
            .collect();
        let stamp = ProducerStamp {
            producer_id: 5,
            producer_epoch: 0,
            base_sequence: 7,
            transactional: true,
        };
        assert_eq!(
            encode_batch(&ours, Codec::None, Some(stamp)).unwrap(),
            reference.freeze(),
            "byte for byte"
        );
    }

    /// The broker's recompression levels (`compression.gzip.level`, `compression.zstd.level`)
    /// reach the encoders, and every level decodes back.
    #[test]
    fn levels_change_the_encoding_and_still_round_trip() {
        let plain: Vec<u8> = (0..20_000u32)
            .flat_map(|n| (n % 251).to_be_bytes())
            .collect();
        for (codec, low, high) in [(Codec::Gzip, 1, 9), (Codec::Zstd, 1, 19)] {
            let fast = compress_at(codec, Some(low), &plain).unwrap();
            let small = compress_at(codec, Some(high), &plain).unwrap();
            assert_ne!(fast, small, "{codec:?}");
            for encoded in [fast, small] {
                assert_eq!(decompress(codec, &encoded, 1 << 20).unwrap(), plain);
            }
        }
        // gzip's -1 is the codec's default level.
        assert_eq!(
            compress_at(Codec::Gzip, Some(-1), &plain).unwrap(),
            compress(Codec::Gzip, &plain).unwrap()
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [Codec::Gzip, Codec::Lz4, Codec::Zstd, Codec::Snappy] {
            assert!(
                decompress(codec, b"\x82SNAPPY\x00garbage-garbage", 1024).is_err(),
                "{codec:?}"
            );
            assert!(decompress(codec, &[0xff; 40], 1024).is_err(), "{codec:?}");
        }
        assert!(Codec::from_attributes(7).is_err());
        assert_eq!(Codec::from_attributes(0x14).unwrap(), Codec::Zstd);
    }

    #[test]
    fn the_cleaner_codecs_round_trip_every_codec() {
        use lmq_storage::batch::Compression;
        use lmq_storage::clean::RecordsCodec;
        let plain: Vec<u8> = (0..10_000u32)
            .flat_map(|n| (n % 251).to_be_bytes())
            .collect();
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = CleanerCodecs.compress(compression, &plain).unwrap();
            assert_eq!(
                CleanerCodecs
                    .decompress(compression, &packed, plain.len())
                    .unwrap(),
                plain,
                "{compression:?}"
            );
            if compression != Compression::None {
                assert!(
                    CleanerCodecs
                        .decompress(compression, &packed, plain.len() - 1)
                        .is_err(),
                    "{compression:?} is bounded"
                );
            }
        }
        assert!(
            CleanerCodecs
                .compress(Compression::Unknown(6), &plain)
                .is_err()
        );
    }
}
