//! Walking the batches of a segment file: positioned header reads for lookups, and the
//! sequential validating scan that recovery and index rebuilds use.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::batch::{BATCH_HEADER_BYTES, BatchView, EMPTY_BATCH_LENGTH, batch_total_bytes};
use crate::error::{Result, StorageError};
use crate::producers::ProducerBatch;

/// The facts about one stored batch that the log layer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub position: u64,
    pub total_bytes: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub partition_leader_epoch: i32,
    pub max_timestamp_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: u32,
    pub attributes: i16,
}

impl BatchHeader {
    pub fn from_view(position: u64, view: &BatchView<'_>) -> Self {
        BatchHeader {
            position,
            total_bytes: view.total_bytes() as u64,
            base_offset: view.base_offset(),
            last_offset: view.last_offset(),
            partition_leader_epoch: view.partition_leader_epoch(),
            max_timestamp_ms: view.max_timestamp(),
            producer_id: view.producer_id(),
            producer_epoch: view.producer_epoch(),
            base_sequence: view.base_sequence(),
            records_count: u32::try_from(view.records_count()).unwrap_or(0),
            attributes: view.attributes(),
        }
    }

    pub fn is_control(&self) -> bool {
        self.attributes & crate::batch::ATTRIBUTE_CONTROL != 0
    }

    /// The idempotence fields, for data batches written by an idempotent producer (control
    /// batches are markers: [`crate::control::decode_control`]).
    pub fn producer_batch(&self) -> Option<ProducerBatch> {
        (self.producer_id >= 0 && !self.is_control()).then(|| ProducerBatch {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            last_offset_delta: i32::try_from(self.last_offset - self.base_offset)
                .unwrap_or(i32::MAX),
            max_timestamp_ms: self.max_timestamp_ms,
            is_transactional: self.attributes & crate::batch::ATTRIBUTE_TRANSACTIONAL != 0,
        })
    }

    pub fn end_position(&self) -> u64 {
        self.position + self.total_bytes
    }
}

/// Why a scan stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub position: u64,
    pub reason: String,
}

/// What a scan checks of every batch beyond framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Whole batch read and CRC-checked: data not known to be on disk intact.
    Crc,
    /// Headers only: data already validated, e.g. rebuilding indexes after a truncation.
    HeaderOnly,
}

/// Reads the header of the batch at `position` of a file that is `file_bytes` long.
/// `None` when the bytes there cannot be a batch that fits in the file.
pub(crate) fn read_header_at(
    file: &File,
    path: &Path,
    position: u64,
    file_bytes: u64,
) -> Result<Option<BatchHeader>> {
    if position + BATCH_HEADER_BYTES as u64 > file_bytes {
        return Ok(None);
    }
    let mut header = [0u8; BATCH_HEADER_BYTES];
    file.read_exact_at(&mut header, position)
        .map_err(|error| StorageError::io("read", path, error))?;
    Ok(header_from_prefix(&header, position, file_bytes))
}

fn header_from_prefix(
    header: &[u8; BATCH_HEADER_BYTES],
    position: u64,
    file_bytes: u64,
) -> Option<BatchHeader> {
    let total_bytes = batch_total_bytes(header)?;
    if total_bytes < BATCH_HEADER_BYTES as u64 || position + total_bytes > file_bytes {
        return None;
    }
    // Check magic and the signed fields through the view over the header alone.
    let mut probe = *header;
    probe[8..12].copy_from_slice(&EMPTY_BATCH_LENGTH.to_be_bytes());
    let view = BatchView::new(&probe).ok()?;
    let mut batch = BatchHeader::from_view(position, &view);
    batch.total_bytes = total_bytes;
    Some(batch)
}

/// Scans the batches of `file` from `start_position`, calling `accept` on each batch that is
/// whole and valid by `verify`; `accept` may refuse one (offset or epoch out of order).
/// Returns where the valid prefix ends and, if it ends before the file does, why.
pub(crate) fn scan_segment(
    file: &File,
    path: &Path,
    file_bytes: u64,
    start_position: u64,
    verify: Verify,
    mut accept: impl FnMut(&BatchHeader) -> Result<(), String>,
) -> Result<(u64, Option<Damage>)> {
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    reader
        .seek(SeekFrom::Start(start_position))
        .map_err(|error| StorageError::io("seek", path, error))?;
    let mut position = start_position;
    let mut body = Vec::new();
    while position < file_bytes {
        let damage = |reason: String| Ok((position, Some(Damage { position, reason })));
        if file_bytes - position < BATCH_HEADER_BYTES as u64 {
            return damage(format!("torn header: {} bytes left", file_bytes - position));
        }
        let mut header = [0u8; BATCH_HEADER_BYTES];
        reader
            .read_exact(&mut header)
            .map_err(|error| StorageError::io("read", path, error))?;
        let Some(batch) = header_from_prefix(&header, position, file_bytes) else {
            let declared = batch_total_bytes(&header).unwrap_or(0);
            return damage(format!(
                "invalid batch header (declared {declared} bytes, {} left)",
                file_bytes - position
            ));
        };
        let Ok(total_bytes) = usize::try_from(batch.total_bytes) else {
            return damage(format!("batch of {} bytes", batch.total_bytes));
        };
        match verify {
            Verify::Crc => {
                body.clear();
                body.extend_from_slice(&header);
                body.resize(total_bytes, 0);
                reader
                    .read_exact(&mut body[BATCH_HEADER_BYTES..])
                    .map_err(|error| StorageError::io("read", path, error))?;
                if let Err(error) = BatchView::validated(&body) {
                    return damage(error.to_string());
                }
            }
            Verify::HeaderOnly => reader
                .seek_relative((batch.total_bytes - BATCH_HEADER_BYTES as u64) as i64)
                .map_err(|error| StorageError::io("seek", path, error))?,
        }
        if let Err(reason) = accept(&batch) {
            return damage(reason);
        }
        position = batch.end_position();
    }
    Ok((position, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::set_base_offset;
    use crate::builder::BatchBuilder;
    use std::io::Write;

    fn batch(base_offset: i64) -> Vec<u8> {
        let mut builder = BatchBuilder::new(0);
        builder.push(None, Some(b"value"), 0);
        let mut bytes = builder.build();
        set_base_offset(&mut bytes, base_offset);
        bytes
    }

    #[test]
    fn scan_stops_at_a_torn_tail_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut file = File::create(&path).unwrap();
        let (first, second) = (batch(0), batch(1));
        file.write_all(&first).unwrap();
        file.write_all(&second[..30]).unwrap();
        let file = File::open(&path).unwrap();
        let size = file.metadata().unwrap().len();
        let mut seen = Vec::new();
        let (valid, damage) = scan_segment(&file, &path, size, 0, Verify::Crc, |header| {
            seen.push(header.base_offset);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [0]);
        assert_eq!(valid, first.len() as u64);
        assert_eq!(damage.unwrap().position, first.len() as u64);
        let header = read_header_at(&file, &path, 0, size).unwrap().unwrap();
        assert_eq!(header.total_bytes, first.len() as u64);
        assert_eq!(
            read_header_at(&file, &path, first.len() as u64, size).unwrap(),
            None
        );
    }
}
