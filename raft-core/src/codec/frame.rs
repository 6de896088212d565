//! Framing of messages on a byte stream, shared by the stream transports
//! (TCP connections, QUIC streams).
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of a
//! message in the wire form of [`crate::codec`]. A frame of length zero is a
//! keepalive: it carries nothing and only proves the peer is alive.
//!
//! [`decode_frame`] is a pure function over a byte buffer so that it can be
//! tested on arbitrary input. It must never panic, and it must reject an
//! oversized length prefix as soon as the prefix is seen, so a hostile peer
//! can never make a reader buffer more than the frame limit. Reading and
//! writing the bytes is the transport's business, never this module's.

use crate::codec::{self, CodecError};
use crate::message::Message;
use crate::transport::SendError;
use crate::types::NodeId;

/// The size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// The default hard upper bound on a frame's length (the bytes after the
/// prefix): 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// A keepalive frame: a zero length prefix and nothing else.
pub const KEEPALIVE: [u8; HEADER_LEN] = [0; HEADER_LEN];

/// What [`decode_frame`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The buffer holds no complete frame yet. `needed` is the total number
    /// of buffered bytes required before decoding can make progress; it
    /// never exceeds the frame limit plus [`HEADER_LEN`].
    Incomplete {
        /// Bytes that must be buffered (counting those already present).
        needed: usize,
    },
    /// A keepalive frame of `consumed` bytes.
    Keepalive {
        /// Bytes to remove from the front of the buffer.
        consumed: usize,
    },
    /// A message, and the number of bytes its frame took.
    Message {
        /// The decoded message.
        msg: Message,
        /// Bytes to remove from the front of the buffer.
        consumed: usize,
    },
}

/// Why a byte stream was rejected. Each of these closes the connection.
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
    /// A message claims another sender than the node at the other end of
    /// the connection.
    #[error("message claims to come from node {claimed} on a connection from node {peer}")]
    WrongSender {
        /// The sender the message names.
        claimed: NodeId,
        /// The node the connection was authenticated as.
        peer: NodeId,
    },
    /// A message is addressed to another node than the one reading it.
    #[error("message addressed to node {to} arrived at node {me}")]
    WrongRecipient {
        /// The addressee the message names.
        to: NodeId,
        /// The node reading the connection.
        me: NodeId,
    },
}

/// Decodes the first frame of `buf`, if it is complete.
///
/// Never panics and never reports a `needed` size larger than
/// `max_frame + HEADER_LEN`: an oversized prefix is an error at once.
pub fn decode_frame(buf: &[u8], max_frame: usize) -> Result<Decoded, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(Decoded::Incomplete { needed: HEADER_LEN });
    };
    let mut len_bytes = [0u8; HEADER_LEN];
    len_bytes.copy_from_slice(header);
    // u32 always fits in usize on the platforms the transports support
    // (>= 32 bits).
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
        return Ok(Decoded::Keepalive { consumed: total });
    }
    let msg = codec::decode(body)?;
    Ok(Decoded::Message {
        msg,
        consumed: total,
    })
}

/// What [`decode_batch`] took from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Bytes of complete frames (keepalives included) to remove from the
    /// front of the buffer.
    pub consumed: usize,
    /// Bytes of the frames that carried messages.
    pub message_bytes: usize,
    /// Bytes that must be buffered, once `consumed` bytes are removed,
    /// before another frame can complete (as in [`Decoded::Incomplete`]).
    pub needed: usize,
}

/// Decodes every complete frame at the start of `buf` into `out`, skipping
/// keepalives and checking that each message comes from `peer` and is
/// addressed to `me`, the two ends of the connection being read.
///
/// Any error means the connection must close; messages already pushed to
/// `out` in this call should then be discarded.
pub fn decode_batch(
    buf: &[u8],
    max_frame: usize,
    peer: NodeId,
    me: NodeId,
    out: &mut Vec<Message>,
) -> Result<Drained, FrameError> {
    let mut consumed = 0;
    let mut message_bytes = 0;
    loop {
        let rest = buf.get(consumed..).unwrap_or_default();
        match decode_frame(rest, max_frame)? {
            Decoded::Incomplete { needed } => {
                return Ok(Drained {
                    consumed,
                    message_bytes,
                    needed,
                })
            }
            Decoded::Keepalive { consumed: n } => consumed += n,
            Decoded::Message { msg, consumed: n } => {
                if msg.from != peer {
                    return Err(FrameError::WrongSender {
                        claimed: msg.from,
                        peer,
                    });
                }
                if msg.to != me {
                    return Err(FrameError::WrongRecipient { to: msg.to, me });
                }
                consumed += n;
                message_bytes += n;
                out.push(msg);
            }
        }
    }
}

/// What a reader must check when its stream ends: leftover bytes mean the
/// peer stopped in the middle of a frame.
pub fn check_end_of_stream(buf: &[u8]) -> Result<(), FrameError> {
    if buf.is_empty() {
        Ok(())
    } else {
        Err(FrameError::Truncated {
            buffered: buf.len(),
        })
    }
}

/// Appends the frame of `msg` to `out`, or leaves `out` as it was and
/// returns [`FrameError::TooLarge`] if the message exceeds `max_frame`
/// (which is itself capped at `u32::MAX`).
pub fn encode_frame_into(
    msg: &Message,
    max_frame: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    codec::encode_into(msg, out);
    let len = out.len() - start - HEADER_LEN;
    let max = max_frame.min(u32::MAX as usize);
    match u32::try_from(len) {
        Ok(len32) if len <= max => {
            out[start..start + HEADER_LEN].copy_from_slice(&len32.to_be_bytes());
            Ok(())
        }
        _ => {
            out.truncate(start);
            Err(FrameError::TooLarge { len, max })
        }
    }
}

/// The frame of `msg` as a new buffer; see [`encode_frame_into`].
pub fn encode_frame(msg: &Message, max_frame: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(msg.size_hint() as usize + 16);
    encode_frame_into(msg, max_frame, &mut out)?;
    Ok(out)
}

/// The frame of `msg` for a transport's `send`: a message over `max_frame`
/// is the [`SendError::TooLarge`] that `send` reports.
pub fn encode_for_send(msg: &Message, max_frame: usize) -> Result<Vec<u8>, SendError> {
    encode_frame(msg, max_frame).map_err(|e| match e {
        FrameError::TooLarge { len, max } => SendError::TooLarge {
            size: len,
            limit: max,
        },
        // Encoding reports nothing else; name the message's estimated size.
        _ => SendError::TooLarge {
            size: msg.size_hint() as usize,
            limit: max_frame,
        },
    })
}

#[cfg(test)]
mod tests;
