//! Framing of messages on a QUIC stream: a 4-byte big-endian length, then
//! that many bytes of a message in the wire form of [`raft_core::codec`].
//!
//! This is the same format, with the same limit semantics, as the frames of
//! raft-transport-tcp (whose decoder is property-tested); transport crates
//! may not depend on each other, so the few lines live in both. Decoding is
//! a pure function that never panics and rejects an oversized length prefix
//! before any of the body is buffered.

use raft_core::codec::{self, CodecError};
use raft_core::Message;

/// The size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// The default hard upper bound on a frame's length: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// What [`decode_frame`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// No complete frame yet; `needed` bytes must be buffered in total.
    Incomplete {
        /// Bytes required, counting those present (at most the limit plus
        /// [`HEADER_LEN`]).
        needed: usize,
    },
    /// A zero-length frame, which carries nothing.
    Empty {
        /// Bytes to remove from the front of the buffer.
        consumed: usize,
    },
    /// A message and the size of its frame.
    Message {
        /// The decoded message.
        msg: Message,
        /// Bytes to remove from the front of the buffer.
        consumed: usize,
    },
}

/// Why a stream was rejected. Each of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the frame limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The frame's bytes are not a message this node understands.
    #[error("undecodable frame: {0}")]
    Codec(#[from] CodecError),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes of an incomplete frame)")]
    Truncated {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
}

/// Decodes the first frame of `buf`, if complete. Never panics.
pub fn decode_frame(buf: &[u8], max_frame: usize) -> Result<Decoded, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(Decoded::Incomplete { needed: HEADER_LEN });
    };
    let mut len_bytes = [0u8; HEADER_LEN];
    len_bytes.copy_from_slice(header);
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > max_frame {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame,
        });
    }
    let total = HEADER_LEN + len;
    let Some(body) = buf.get(HEADER_LEN..total) else {
        return Ok(Decoded::Incomplete { needed: total });
    };
    if len == 0 {
        return Ok(Decoded::Empty { consumed: total });
    }
    Ok(Decoded::Message {
        msg: codec::decode(body)?,
        consumed: total,
    })
}

/// The frame of `msg`, or [`FrameError::TooLarge`] past `max_frame`
/// (itself capped at `u32::MAX`).
pub fn encode_frame(msg: &Message, max_frame: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(msg.size_hint() as usize + 16);
    out.extend_from_slice(&[0; HEADER_LEN]);
    codec::encode_into(msg, &mut out);
    let len = out.len() - HEADER_LEN;
    let max = max_frame.min(u32::MAX as usize);
    match u32::try_from(len) {
        Ok(len32) if len <= max => {
            out[..HEADER_LEN].copy_from_slice(&len32.to_be_bytes());
            Ok(out)
        }
        _ => Err(FrameError::TooLarge { len, max }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Body, NodeId};

    #[test]
    fn round_trip_limits_and_garbage() {
        let m = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: 1,
            body: Body::TimeoutNow,
        };
        let f = encode_frame(&m, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(
            decode_frame(&f, DEFAULT_MAX_FRAME),
            Ok(Decoded::Message {
                msg: m.clone(),
                consumed: f.len()
            })
        );
        for cut in 0..f.len() {
            assert!(matches!(
                decode_frame(&f[..cut], DEFAULT_MAX_FRAME),
                Ok(Decoded::Incomplete { .. })
            ));
        }
        assert!(encode_frame(&m, f.len() - HEADER_LEN - 1).is_err());
        assert_eq!(
            decode_frame(&[0, 0, 0, 9], 8),
            Err(FrameError::TooLarge { len: 9, max: 8 })
        );
        assert!(matches!(
            decode_frame(&[0, 0, 0, 2, 0xff, 0xff], 8),
            Err(FrameError::Codec(_))
        ));
        assert_eq!(
            decode_frame(&[0, 0, 0, 0], 8),
            Ok(Decoded::Empty { consumed: 4 })
        );
    }
}
