//! The wire format shared by every network transport.
//!
//! A message travels as one version byte followed by its postcard encoding.
//! Transports frame it (a length prefix, a QUIC stream) and cap its size;
//! this module only turns values into bytes and back. Decoding never panics
//! and never allocates more than the input justifies: a hostile peer gets a
//! [`CodecError`], never a crash.
//!
//! Every connection opens with a fixed-size [`Handshake`] so that a node
//! from another cluster, another protocol version or an unknown id is turned
//! away before any message is read.

use crate::message::Message;
use crate::types::NodeId;

pub mod frame;

/// The version of the message encoding. Bumped on any incompatible change.
pub const WIRE_VERSION: u8 = 1;

/// The bytes every connection starts with.
pub const HANDSHAKE_MAGIC: [u8; 4] = *b"RAFT";

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input was empty.
    #[error("empty frame")]
    Empty,
    /// The frame was written by an incompatible protocol version.
    #[error("unsupported wire version {found} (this node speaks {WIRE_VERSION})")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// The body does not decode as a message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The body decoded but bytes were left over.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// A handshake had the wrong length or magic bytes.
    #[error("not a raft handshake (bad magic bytes or length)")]
    BadMagic,
}

/// Encodes a message as its wire form: version byte, then postcard.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.size_hint() as usize + 16);
    encode_into(msg, &mut out);
    out
}

/// Appends the wire form of `msg` to `out`.
pub fn encode_into(msg: &Message, out: &mut Vec<u8>) {
    out.push(WIRE_VERSION);
    // Serializing into a Vec cannot fail for these types: every field is a
    // plain integer, byte string, sequence or enum.
    postcard::serialize_with_flavor(msg, VecFlavor(out))
        .expect("postcard encoding of a Message into a Vec cannot fail");
}

/// A postcard output that appends to a `Vec` and copies byte strings (entry
/// payloads, snapshot chunks) in one `extend_from_slice`, not byte by byte.
struct VecFlavor<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes one message from exactly `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Message, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != WIRE_VERSION {
        return Err(CodecError::Version { found: version });
    }
    let (msg, rest) = postcard::take_from_bytes::<Message>(body)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Trailing(rest.len()));
    }
    Ok(msg)
}

/// The first bytes on every connection, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The protocol version the sender speaks.
    pub version: u8,
    /// The cluster the sender belongs to; peers of other clusters are refused.
    pub cluster_id: u64,
    /// The sender's node id.
    pub node_id: NodeId,
}

impl Handshake {
    /// The encoded size: magic (4), version (1), cluster id (8), node id (8).
    pub const LEN: usize = 21;

    /// A handshake for this node at the current protocol version.
    pub fn new(cluster_id: u64, node_id: NodeId) -> Self {
        Handshake {
            version: WIRE_VERSION,
            cluster_id,
            node_id,
        }
    }

    /// The fixed-size encoding.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..4].copy_from_slice(&HANDSHAKE_MAGIC);
        b[4] = self.version;
        b[5..13].copy_from_slice(&self.cluster_id.to_be_bytes());
        b[13..21].copy_from_slice(&self.node_id.0.to_be_bytes());
        b
    }

    /// Decodes a handshake; checks only the magic bytes and length. The
    /// caller compares version, cluster and node id and logs what differs.
    pub fn decode(b: &[u8]) -> Result<Self, CodecError> {
        if b.len() != Self::LEN || b[..4] != HANDSHAKE_MAGIC {
            return Err(CodecError::BadMagic);
        }
        let mut cluster = [0u8; 8];
        cluster.copy_from_slice(&b[5..13]);
        let mut node = [0u8; 8];
        node.copy_from_slice(&b[13..21]);
        Ok(Handshake {
            version: b[4],
            cluster_id: u64::from_be_bytes(cluster),
            node_id: NodeId(u64::from_be_bytes(node)),
        })
    }

    /// Checks a peer's handshake against what this node expects, returning
    /// a reason fit for a log line when it must be refused.
    pub fn check(&self, expected_cluster: u64) -> Result<(), String> {
        if self.version != WIRE_VERSION {
            return Err(format!(
                "protocol version {} (this node speaks {})",
                self.version, WIRE_VERSION
            ));
        }
        if self.cluster_id != expected_cluster {
            return Err(format!(
                "cluster id {:#x} (this node belongs to {:#x})",
                self.cluster_id, expected_cluster
            ));
        }
        if self.node_id.is_none() {
            return Err("node id 0 is reserved".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Body, Entry, EntryKind};
    use proptest::prelude::*;

    fn sample() -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: 7,
            body: Body::AppendEntries {
                prev_log_index: 3,
                prev_log_term: 2,
                entries: vec![Entry {
                    term: 7,
                    index: 4,
                    kind: EntryKind::Normal,
                    data: bytes::Bytes::from_static(b"hello"),
                }],
                leader_commit: 3,
            },
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let b = encode(&m);
        assert_eq!(b[0], WIRE_VERSION);
        assert_eq!(decode(&b).unwrap(), m);
    }

    #[test]
    fn wrong_version_and_trailing_bytes_are_refused() {
        let mut b = encode(&sample());
        b[0] = 99;
        assert_eq!(decode(&b), Err(CodecError::Version { found: 99 }));
        let mut b = encode(&sample());
        b.push(0);
        assert_eq!(decode(&b), Err(CodecError::Trailing(1)));
        assert_eq!(decode(&[]), Err(CodecError::Empty));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = encode(&sample());
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "prefix of {cut} bytes decoded");
        }
    }

    #[test]
    fn handshake_round_trip_and_checks() {
        let h = Handshake::new(0xabc, NodeId(3));
        let b = h.encode();
        let d = Handshake::decode(&b).unwrap();
        assert_eq!(d, h);
        assert!(d.check(0xabc).is_ok());
        assert!(d.check(0xabd).unwrap_err().contains("cluster id"));
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(Handshake::decode(&bad), Err(CodecError::BadMagic));
        assert_eq!(Handshake::decode(&b[..20]), Err(CodecError::BadMagic));
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let mut v = vec![WIRE_VERSION];
            v.extend_from_slice(&bytes);
            let _ = decode(&v);
        }

        #[test]
        fn decoding_mutated_messages_never_panics(pos in 0usize..64, val in any::<u8>()) {
            let mut b = encode(&sample());
            let i = pos % b.len();
            b[i] = val;
            let _ = decode(&b);
        }
    }
}
