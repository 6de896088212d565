//! The interface every transport crate implements.
//!
//! This is an interface, not I/O: raft-core never calls it. The runtime in
//! raft-node owns one `Transport` per node and drives it from a single task,
//! which is why receiving takes `&mut self`.
//!
//! The contract, checked by the conformance suite in raft-node:
//! - [`Transport::send`] never blocks and never waits for the network: each
//!   peer has a bounded queue; when it is full the message is dropped and
//!   counted (Raft retransmits what matters).
//! - Messages to one peer arrive in the order they were sent, or not at all.
//! - A misbehaving peer (garbage, oversized frames, wrong cluster) is cut off
//!   with a log line naming it and the reason; other peers are unaffected.
//! - [`Transport::recv`] is cancel-safe: dropping its future loses nothing.

use crate::message::Message;
use crate::types::NodeId;

/// Counters a transport keeps per peer, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages dropped because the peer's queue was full or it was
    /// unreachable.
    pub dropped: u64,
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The addressee is not a known peer.
    #[error("unknown peer {0}")]
    UnknownPeer(NodeId),
    /// The peer's queue is full; the message was dropped.
    #[error("queue to peer {0} is full; message dropped")]
    QueueFull(NodeId),
    /// The message is larger than the transport's frame limit.
    #[error("message of {size} bytes exceeds the frame limit of {limit} bytes")]
    TooLarge {
        /// The message's encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The transport has shut down.
    #[error("transport is shut down")]
    Shutdown,
}

/// A way to exchange [`Message`]s with the other members of a cluster.
#[async_trait::async_trait]
pub trait Transport: Send + 'static {
    /// Queues `msg` for `msg.to` without waiting. Errors are informational:
    /// the message is dropped either way and Raft recovers.
    fn send(&self, msg: Message) -> Result<(), SendError>;

    /// Waits for the next message from any peer. Returns `None` once the
    /// transport has shut down. Must be cancel-safe.
    async fn recv(&mut self) -> Option<(NodeId, Message)>;

    /// Learns of a peer (or a new address for it), e.g. after a membership
    /// change. `addr` is transport-specific (a socket address for TCP and
    /// QUIC; ignored by the in-memory transport).
    fn add_peer(&mut self, id: NodeId, addr: String);

    /// Forgets a peer and closes its connections.
    fn remove_peer(&mut self, id: NodeId);

    /// Per-peer counters.
    fn stats(&self, peer: NodeId) -> PeerStats;

    /// Closes every connection and listener, releasing ports. Messages still
    /// queued may be lost.
    async fn shutdown(&mut self);
}
