//! Kafka frames: a big-endian i32 length, then that many bytes.

use crate::error::WireError;

pub const FRAME_PREFIX_BYTES: usize = 4;
/// Kafka's `socket.request.max.bytes` default (100 MiB).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// The body length a frame prefix announces, checked against `frame_bytes_max` before anyone
/// allocates for it.
pub fn frame_length(
    prefix: [u8; FRAME_PREFIX_BYTES],
    frame_bytes_max: usize,
) -> Result<usize, WireError> {
    let length = i32::from_be_bytes(prefix);
    let Ok(length) = usize::try_from(length) else {
        return Err(WireError::NegativeLength { length });
    };
    if length > frame_bytes_max {
        return Err(WireError::FrameTooLarge {
            length: length as i64,
            frame_bytes_max,
        });
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_bounded_before_allocation() {
        assert_eq!(frame_length(10i32.to_be_bytes(), 10).unwrap(), 10);
        assert!(matches!(
            frame_length(11i32.to_be_bytes(), 10),
            Err(WireError::FrameTooLarge { length: 11, .. })
        ));
        assert!(matches!(
            frame_length((-1i32).to_be_bytes(), 10),
            Err(WireError::NegativeLength { length: -1 })
        ));
    }
}
