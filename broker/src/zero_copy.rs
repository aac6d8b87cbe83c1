//! Zero-copy Fetch responses: record data goes from segment files to the socket with
//! `sendfile`, never through user space.
//!
//! The Fetch handler puts a unique 16-byte marker where a partition's records belong and
//! keeps the file region beside it. The response is encoded as usual (it is small without
//! the records); then each marker and its length prefix are cut out and replaced by the
//! region's length prefix and the region itself. Nothing else in a Fetch response covers
//! the records with a size, so only the frame length changes.
//!
//! On a TLS connection the bytes must pass through the cipher: a region is read (on the
//! blocking pool, in bounded chunks) and written like any bytes.

use std::hash::{BuildHasher, Hasher};
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use lmq_storage::FileRegion;
use std::future::Future;
use thiserror::Error;

use tokio::io::Interest;
use tokio::io::{AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

const MARKER_BYTES: usize = 16;

/// The first Fetch version whose records field is COMPACT_RECORDS (varint length + 1).
const FLEXIBLE_FETCH_VERSION: i16 = 12;

/// A partition's records to send from a file, and the marker standing in for them.
#[derive(Debug, Clone)]
pub struct Splice {
    pub marker: Bytes,
    pub region: FileRegion,
}

impl Splice {
    /// A splice with a marker no other in this process has: a random per-process half and
    /// a counter, so it cannot occur in the rest of the (record-free) response by chance.
    pub fn new(region: FileRegion) -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let seed = *SEED.get_or_init(|| {
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        });
        let mut marker = BytesMut::with_capacity(MARKER_BYTES);
        marker.put_u64(seed);
        marker.put_u64(NEXT.fetch_add(1, Ordering::Relaxed));
        Splice {
            marker: marker.freeze(),
            region,
        }
    }
}

/// A response frame in pieces: bytes in memory and file regions.
#[derive(Debug, Clone)]
pub enum Part {
    Bytes(Bytes),
    File(FileRegion),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpliceError {
    #[error("marker {index} not found in the encoded response")]
    MarkerMissing { index: usize },
    #[error("the response would exceed the 2 GiB frame limit")]
    TooLarge,
}

/// Replaces each splice's marker (and its length prefix) in `frame`, an encoded response
/// with its 4-byte length prefix, by the region, and fixes the frame length.
pub fn splice(frame: BytesMut, version: i16, splices: &[Splice]) -> Result<Vec<Part>, SpliceError> {
    let frame = frame.freeze();
    let prefix_bytes = if version >= FLEXIBLE_FETCH_VERSION {
        1 // varint(16 + 1)
    } else {
        4
    };
    let mut parts = Vec::with_capacity(splices.len() * 3 + 2);
    let mut from = 4; // after the frame length, rewritten below
    let mut total = frame.len() - 4;
    for (index, splice) in splices.iter().enumerate() {
        let found = frame[from..]
            .windows(MARKER_BYTES)
            .position(|window| window == splice.marker.as_ref())
            .map(|at| from + at)
            .filter(|at| *at >= from + prefix_bytes)
            .ok_or(SpliceError::MarkerMissing { index })?;
        let prefix_at = found - prefix_bytes;
        let length = usize::try_from(splice.region.length).map_err(|_| SpliceError::TooLarge)?;
        let mut prefix = BytesMut::with_capacity(5);
        if version >= FLEXIBLE_FETCH_VERSION {
            put_unsigned_varint(&mut prefix, length as u64 + 1);
        } else {
            prefix.put_i32(i32::try_from(length).map_err(|_| SpliceError::TooLarge)?);
        }
        total = total + (prefix_at - from) + prefix.len() + length - (found + MARKER_BYTES - from);
        parts.push(Part::Bytes(frame.slice(from..prefix_at)));
        parts.push(Part::Bytes(prefix.freeze()));
        parts.push(Part::File(splice.region.clone()));
        from = found + MARKER_BYTES;
    }
    parts.push(Part::Bytes(frame.slice(from..)));
    let total = i32::try_from(total).map_err(|_| SpliceError::TooLarge)?;
    parts.insert(0, Part::Bytes(Bytes::copy_from_slice(&total.to_be_bytes())));
    Ok(parts)
}

fn put_unsigned_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8(value.to_le_bytes()[0] | 0x80);
        value >>= 7;
    }
    out.put_u8(value.to_le_bytes()[0]);
}

/// The most byte parts gathered for one `writev` (Linux allows 1024).
const GATHERED_PARTS_MAX: usize = 512;
/// Gathered bytes past which they go out before more are added.
const GATHERED_BYTES_MAX: usize = 256 * 1024;

/// Writes response frames to a socket: byte parts are gathered, not copied, and go out with
/// one `writev`; a file region goes with `sendfile` right after the bytes before it.
pub struct ResponseWriter<W> {
    socket: W,
    gathered: Vec<Bytes>,
    gathered_bytes: usize,
}

/// A connection's write side: bytes, and the file regions of Fetch answers.
pub trait RegionWrite: AsyncWrite + Unpin + Send {
    fn send_region(&mut self, region: &FileRegion) -> impl Future<Output = io::Result<()>> + Send;
}

impl RegionWrite for OwnedWriteHalf {
    async fn send_region(&mut self, region: &FileRegion) -> io::Result<()> {
        send_region(self.as_ref(), region).await
    }
}

/// Bytes of a region read into memory at a time for a TLS connection.
const REGION_CHUNK_BYTES: u64 = 1024 * 1024;

impl<T: AsyncWrite + Send> RegionWrite for WriteHalf<T> {
    async fn send_region(&mut self, region: &FileRegion) -> io::Result<()> {
        let mut position = region.position;
        let end = region.position + region.length;
        while position < end {
            let chunk = FileRegion {
                file: std::sync::Arc::clone(&region.file),
                position,
                length: REGION_CHUNK_BYTES.min(end - position),
            };
            let length = chunk.length;
            // A file read, off the runtime's workers.
            let bytes = tokio::task::spawn_blocking(move || chunk.read_to_vec())
                .await
                .map_err(io::Error::other)??;
            self.write_all(&bytes).await?;
            position += length;
        }
        Ok(())
    }
}

impl<W: RegionWrite> ResponseWriter<W> {
    pub fn new(socket: W) -> Self {
        ResponseWriter {
            socket,
            gathered: Vec::new(),
            gathered_bytes: 0,
        }
    }

    /// Writes `parts` in order. Bytes after the last region may stay gathered: the caller
    /// flushes once no other answer is ready, so pipelined answers share a write.
    pub async fn write_parts(&mut self, parts: Vec<Part>) -> io::Result<()> {
        for part in parts {
            match part {
                Part::Bytes(bytes) => {
                    if bytes.is_empty() {
                        continue;
                    }
                    self.gathered_bytes += bytes.len();
                    self.gathered.push(bytes);
                    if self.gathered.len() >= GATHERED_PARTS_MAX
                        || self.gathered_bytes >= GATHERED_BYTES_MAX
                    {
                        self.flush().await?;
                    }
                }
                Part::File(region) => {
                    self.flush().await?;
                    self.socket.send_region(&region).await?;
                }
            }
        }
        Ok(())
    }

    /// Sends everything gathered.
    pub async fn flush(&mut self) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = self
            .gathered
            .iter()
            .map(|bytes| IoSlice::new(bytes))
            .collect();
        let mut unsent: &mut [IoSlice<'_>] = &mut slices;
        while !unsent.is_empty() {
            let written = self.socket.write_vectored(unsent).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut unsent, written);
        }
        drop(slices);
        self.gathered.clear();
        self.gathered_bytes = 0;
        Ok(())
    }
}

/// `sendfile` until the region is sent. A file shorter than the region (truncated since the
/// read) is an error: the connection closes rather than send bytes the client did not ask for.
async fn send_region(socket: &TcpStream, region: &FileRegion) -> io::Result<()> {
    let mut offset = i64::try_from(region.position).map_err(io::Error::other)?;
    let mut remaining = usize::try_from(region.length).map_err(io::Error::other)?;
    while remaining > 0 {
        socket.writable().await?;
        let sent = socket.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile64(
                socket.as_fd(),
                region.file.as_fd(),
                Some(&mut offset),
                remaining,
            )
            .map_err(io::Error::from)
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment file ends before the region it was read as",
                ));
            }
            Ok(sent) => remaining -= sent,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    fn region(bytes: &[u8]) -> FileRegion {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"xx").unwrap();
        file.write_all(bytes).unwrap();
        FileRegion {
            file: Arc::new(file),
            position: 2,
            length: bytes.len() as u64,
        }
    }

    /// The frame as the client receives it.
    fn flatten(parts: &[Part]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            match part {
                Part::Bytes(bytes) => out.extend_from_slice(bytes),
                Part::File(region) => out.extend(region.read_to_vec().unwrap()),
            }
        }
        out
    }

    /// A Fetch response with `records` per partition, encoded by the codec.
    fn encoded(version: i16, records: &[Bytes]) -> BytesMut {
        use lmq_wire::protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        use lmq_wire::protocol::messages::{ApiKey, FetchResponse, ResponseKind, TopicName};
        let mut topic = FetchableTopicResponse::default();
        topic.topic = TopicName(lmq_wire::protocol::protocol::StrBytes::from_static_str("t"));
        for (index, bytes) in records.iter().enumerate() {
            let mut partition = PartitionData::default();
            partition.partition_index = i32::try_from(index).unwrap();
            partition.records = Some(bytes.clone());
            topic.partitions.push(partition);
        }
        let mut response = FetchResponse::default();
        response.responses.push(topic);
        lmq_wire::encode_response(&ResponseKind::Fetch(response), ApiKey::Fetch, version, 7)
            .unwrap()
    }

    #[test]
    fn a_spliced_frame_is_byte_for_byte_the_copied_one() {
        let data = [
            Bytes::from(vec![1u8; 300]),
            Bytes::from_static(b""),
            Bytes::from(vec![2u8; 70_000]),
        ];
        for version in [4, 11, 12] {
            let splices: Vec<Splice> = [&data[0], &data[2]]
                .iter()
                .map(|bytes| Splice::new(region(bytes)))
                .collect();
            let with_markers = encoded(
                version,
                &[
                    splices[0].marker.clone(),
                    data[1].clone(),
                    splices[1].marker.clone(),
                ],
            );
            let parts = splice(with_markers, version, &splices).unwrap();
            assert_eq!(
                flatten(&parts),
                encoded(version, &data).to_vec(),
                "version {version}"
            );
        }
    }

    #[test]
    fn a_missing_marker_is_an_error() {
        let splices = [Splice::new(region(b"abc"))];
        let frame = encoded(12, &[Bytes::from_static(b"no marker here, sixteen+")]);
        assert_eq!(
            splice(frame, 12, &splices).unwrap_err(),
            SpliceError::MarkerMissing { index: 0 }
        );
    }

    #[test]
    fn markers_differ() {
        let file = region(b"a");
        assert_ne!(Splice::new(file.clone()).marker, Splice::new(file).marker);
    }

    /// What a client reads from a socket `parts` are written to, reading after `pause`.
    async fn through_a_socket(parts: Vec<Part>, pause: std::time::Duration) -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let sender = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (_read, write) = socket.into_split();
            let mut writer = ResponseWriter::new(write);
            writer.write_parts(parts).await.unwrap();
            writer.flush().await.unwrap();
        });
        let mut client = TcpStream::connect(address).await.unwrap();
        tokio::time::sleep(pause).await;
        let mut received = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut received)
            .await
            .unwrap();
        sender.await.unwrap();
        received
    }

    #[tokio::test]
    async fn regions_go_through_the_socket() {
        let payload = vec![9u8; 3 * 1024 * 1024];
        let parts = vec![
            Part::Bytes(Bytes::from_static(b"head")),
            Part::File(region(&payload)),
            Part::Bytes(Bytes::from_static(b"tail")),
        ];
        let received = through_a_socket(parts, std::time::Duration::ZERO).await;
        assert_eq!(received.len(), 4 + payload.len() + 4);
        assert_eq!(&received[..4], b"head");
        assert!(received[4..4 + payload.len()].iter().all(|byte| *byte == 9));
        assert_eq!(&received[4 + payload.len()..], b"tail");
    }

    /// More parts than one `writev` takes and more bytes than the socket buffers hold (the
    /// reader starts late), so writes are partial: every byte still arrives once, in order.
    #[tokio::test]
    async fn gathered_bytes_arrive_in_order_through_partial_writes() {
        let mut parts = Vec::new();
        for index in 0..3000usize {
            let length = if index % 1000 == 999 {
                8 << 20
            } else {
                index % 37
            };
            let bytes: Vec<u8> = (0..length)
                .map(|at| (at ^ index).to_le_bytes()[0])
                .collect();
            parts.push(Part::Bytes(Bytes::from(bytes)));
        }
        parts.insert(1500, Part::File(region(&[5u8; 100_000])));
        let expected = flatten(&parts);
        let received = through_a_socket(parts, std::time::Duration::from_millis(50)).await;
        assert_eq!(received.len(), expected.len());
        assert!(received == expected);
    }
}
