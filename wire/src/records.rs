//! Decompression of record batch payloads, for the paths that must look inside a batch
//! (timestamp lookups; later filtering and compaction). Produce and fetch never decompress:
//! batches are stored and served as the producer compressed them.
//!
//! Every decoder is bounded: output beyond `output_bytes_max` is an error, so a small
//! compressed batch cannot expand into unbounded memory.

use std::io::Read;

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

/// Compresses a batch payload (the records section) with `codec`. Snappy uses the xerial
/// framing the Java client writes, which every client reads.
pub fn compress(codec: Codec, plain: &[u8]) -> Result<Vec<u8>, WireError> {
    use std::io::Write;
    let failed = |error: std::io::Error| WireError::malformed("compressing records", error);
    match codec {
        Codec::None => Ok(plain.to_vec()),
        Codec::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
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
        Codec::Zstd => zstd::encode_all(plain, 3).map_err(failed),
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

fn codec_of(compression: kafka_protocol::records::Compression) -> Codec {
    use kafka_protocol::records::Compression;
    match compression {
        Compression::None => Codec::None,
        Compression::Gzip => Codec::Gzip,
        Compression::Snappy => Codec::Snappy,
        Compression::Lz4 => Codec::Lz4,
        Compression::Zstd => Codec::Zstd,
    }
}

fn compression_of(codec: Codec) -> kafka_protocol::records::Compression {
    use kafka_protocol::records::Compression;
    match codec {
        Codec::None => Compression::None,
        Codec::Gzip => Compression::Gzip,
        Codec::Snappy => Compression::Snappy,
        Codec::Lz4 => Compression::Lz4,
        Codec::Zstd => Compression::Zstd,
    }
}

/// Encodes records as one v2 batch compressed with `codec` (clients). Records must keep
/// `offset - sequence` constant or the encoder splits them into several batches; without a
/// producer id use `sequence = offset - 1`, so the batch's base sequence is -1.
pub fn encode_batch(
    records: &[kafka_protocol::records::Record],
    codec: Codec,
) -> Result<bytes::Bytes, WireError> {
    use bytes::BufMut;
    let options = kafka_protocol::records::RecordEncodeOptions {
        version: 2,
        compression: compression_of(codec),
    };
    let mut out = bytes::BytesMut::new();
    kafka_protocol::records::RecordBatchEncoder::encode_with_custom_compression(
        &mut out,
        records,
        &options,
        Some(
            |plain: &mut bytes::BytesMut, output: &mut bytes::BytesMut, compression| {
                let compressed = compress(codec_of(compression), plain)
                    .map_err(|error| anyhow::anyhow!(error.to_string()))?;
                output.put_slice(&compressed);
                Ok(())
            },
        ),
    )
    .map_err(|error| WireError::malformed("record batch", error))?;
    Ok(out.freeze())
}

/// Decodes every whole batch in `bytes` (a fetch may end with a partial batch, which is
/// skipped), decompressing with the bounded decoders above.
pub fn decode_batches(
    mut bytes: bytes::Bytes,
    output_bytes_max: usize,
) -> Result<Vec<kafka_protocol::records::Record>, WireError> {
    use bytes::Buf;
    let mut out = Vec::new();
    while bytes.remaining() >= 12 {
        let declared = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let Ok(declared) = usize::try_from(declared) else {
            break;
        };
        if bytes.remaining() < declared.saturating_add(12) {
            break;
        }
        let mut batch = bytes.split_to(declared + 12);
        let decoded = kafka_protocol::records::RecordBatchDecoder::decode_with_custom_compression(
            &mut batch,
            Some(|compressed: &mut bytes::Bytes, compression| {
                decompress(codec_of(compression), compressed, output_bytes_max)
                    .map(bytes::Bytes::from)
                    .map_err(|error| anyhow::anyhow!(error.to_string()))
            }),
        )
        .map_err(|error| WireError::malformed("record batch", error))?;
        out.extend(decoded.records);
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
        use kafka_protocol::records::{Record, TimestampType};
        let record = |offset: i64| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: i32::try_from(offset).unwrap() - 1,
            timestamp: 1_000 + offset,
            key: Some(bytes::Bytes::from(format!("key-{offset}"))),
            value: Some(bytes::Bytes::from(vec![b'v'; 300])),
            headers: Default::default(),
        };
        let records = [record(0), record(1), record(2)];
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let batch = encode_batch(&records, codec).unwrap();
            assert_eq!(
                Codec::from_attributes(i16::from_be_bytes([batch[21], batch[22]])).unwrap(),
                codec
            );
            let decoded = decode_batches(batch.clone(), 1 << 20).unwrap();
            assert_eq!(decoded.len(), 3, "{codec:?}");
            assert_eq!(decoded[2].value, records[2].value);
            assert_eq!(
                decode_batches(batch.slice(..batch.len() - 1), 1 << 20)
                    .unwrap()
                    .len(),
                0,
                "partial batch skipped"
            );
        }
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
}
