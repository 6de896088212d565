//! Peer addresses as they travel through the replicated log, and the
//! envelope the runtime wraps around application snapshots.
//!
//! Addresses ride in [`raft_core::ConfChange::context`], so every node
//! learns a new member's address from the same log entry that makes it a
//! member. Snapshots carry the address book too: a node restored from a
//! snapshot no longer has the entries that announced its peers.
//!
//! Both formats are read from the log and from peers' snapshots, so
//! decoding never trusts them: bad input is an error, never a panic.

use bytes::Bytes;
use raft_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest address accepted from the log; longer ones are ignored.
pub const MAX_ADDR_LEN: usize = 1024;

/// Encodes `(node, address)` pairs for a [`raft_core::ConfChange`]'s
/// `context`.
pub fn encode_peer_addresses(addrs: &[(NodeId, String)]) -> Bytes {
    if addrs.is_empty() {
        return Bytes::new();
    }
    Bytes::from(postcard::to_allocvec(addrs).expect("encoding a list of strings cannot fail"))
}

/// Decodes a [`raft_core::ConfChange`]'s `context` written by
/// [`encode_peer_addresses`]. An empty context holds no addresses.
pub fn decode_peer_addresses(ctx: &[u8]) -> Result<Vec<(NodeId, String)>, postcard::Error> {
    if ctx.is_empty() {
        return Ok(Vec::new());
    }
    let v: Vec<(NodeId, String)> = postcard::from_bytes(ctx)?;
    Ok(v.into_iter()
        .filter(|(id, a)| !id.is_none() && a.len() <= MAX_ADDR_LEN)
        .collect())
}

const ENVELOPE_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    version: u32,
    peers: Vec<(NodeId, String)>,
    app: Bytes,
}

/// Wraps an application snapshot with the address book.
pub(crate) fn wrap_snapshot(peers: &BTreeMap<NodeId, String>, app: Bytes) -> Bytes {
    let env = Envelope {
        version: ENVELOPE_VERSION,
        peers: peers.iter().map(|(k, v)| (*k, v.clone())).collect(),
        app,
    };
    Bytes::from(postcard::to_allocvec(&env).expect("encoding a snapshot envelope cannot fail"))
}

/// Unwraps what [`wrap_snapshot`] produced.
pub(crate) fn unwrap_snapshot(data: &[u8]) -> Result<(BTreeMap<NodeId, String>, Bytes), String> {
    let env: Envelope =
        postcard::from_bytes(data).map_err(|e| format!("undecodable snapshot envelope: {e}"))?;
    if env.version != ENVELOPE_VERSION {
        return Err(format!(
            "snapshot envelope version {} is not supported (expected {ENVELOPE_VERSION})",
            env.version
        ));
    }
    let peers = env
        .peers
        .into_iter()
        .filter(|(id, a)| !id.is_none() && a.len() <= MAX_ADDR_LEN)
        .collect();
    Ok((peers, env.app))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_garbage_is_an_error() {
        let a = vec![(NodeId(4), "10.0.0.4:7000".to_string())];
        assert_eq!(
            decode_peer_addresses(&encode_peer_addresses(&a)).unwrap(),
            a
        );
        assert!(decode_peer_addresses(&[]).unwrap().is_empty());
        assert!(decode_peer_addresses(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn envelope_round_trips_and_refuses_garbage() {
        let mut peers = BTreeMap::new();
        peers.insert(NodeId(2), "b".to_string());
        let w = wrap_snapshot(&peers, Bytes::from_static(b"app"));
        let (p, app) = unwrap_snapshot(&w).unwrap();
        assert_eq!(p, peers);
        assert_eq!(&app[..], b"app");
        assert!(unwrap_snapshot(b"\x07garbage").is_err());
    }
}
