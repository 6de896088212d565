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
//!
//! It also holds the pure pieces the network transports share: their common
//! limits ([`LinkLimits`]), the bookkeeping of a peer's bounded outgoing
//! queue ([`FrameQueue`]) and its counters ([`PeerCounters`]). Waiting, locking
//! and the network stay in the transport crates.

use crate::codec::frame::DEFAULT_MAX_FRAME;
use crate::message::Message;
use crate::types::NodeId;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// The limits a network transport enforces on its links to peers: frame
/// size, queue and buffer bounds, timeouts and redial backoff. Embedded in
/// each network transport's configuration; [`LinkLimits::default`] gives the
/// documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkLimits {
    /// Hard upper bound on a frame's length in bytes, both directions.
    /// Default 16 MiB; at most `u32::MAX`.
    pub max_frame_size: usize,
    /// Messages that may wait in one outgoing queue before `send` drops.
    /// Default 4096. (A transport with separate lanes per peer bounds each
    /// lane by it.)
    pub queue_capacity: usize,
    /// Bytes that may wait in one outgoing queue before `send` drops (a
    /// single message larger than this is still accepted into an empty
    /// queue). Default 64 MiB.
    pub queue_bytes: usize,
    /// Bytes of received messages that may wait for `recv` across all peers;
    /// past it, readers stop reading and the protocol's flow control pushes
    /// back. Default 64 MiB.
    pub inbound_buffer_bytes: usize,
    /// Limit on establishing a connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Limit on the handshakes of a connection. Default 5 s.
    pub handshake_timeout: Duration,
    /// An idle connection proves it is alive this often. Default 1 s.
    pub keepalive_interval: Duration,
    /// A connection that receives nothing, or whose peer accepts no data,
    /// for this long is considered dead and dropped. Default 10 s.
    pub idle_timeout: Duration,
    /// First redial delay after a failure. Default 50 ms.
    pub backoff_initial: Duration,
    /// Redial delays double up to this cap. Default 5 s.
    pub backoff_max: Duration,
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits {
            max_frame_size: DEFAULT_MAX_FRAME,
            queue_capacity: 4096,
            queue_bytes: 64 * 1024 * 1024,
            inbound_buffer_bytes: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
        }
    }
}

impl LinkLimits {
    /// Checks the limits, returning a reason fit for an error message when
    /// a transport cannot run with them.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_frame_size == 0 || self.max_frame_size > u32::MAX as usize {
            return Err(format!(
                "max_frame_size must be between 1 and {} bytes",
                u32::MAX
            ));
        }
        if self.queue_capacity == 0 || self.queue_bytes == 0 || self.inbound_buffer_bytes == 0 {
            return Err(
                "queue_capacity, queue_bytes and inbound_buffer_bytes must be positive".into(),
            );
        }
        if self.keepalive_interval.is_zero() || self.idle_timeout <= self.keepalive_interval {
            return Err("idle_timeout must exceed a positive keepalive_interval".into());
        }
        if self.connect_timeout.is_zero() || self.handshake_timeout.is_zero() {
            return Err("connect_timeout and handshake_timeout must be positive".into());
        }
        Ok(())
    }
}

/// Per-peer counters behind [`PeerStats`], updated by a transport's tasks
/// and read by [`Transport::stats`].
#[derive(Debug, Default)]
pub struct PeerCounters {
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl PeerCounters {
    /// Counts `n` messages handed to the network.
    pub fn add_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` messages dropped.
    pub fn add_dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> PeerStats {
        PeerStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Why [`FrameQueue::push`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The queue is at its message or byte bound.
    #[error("queue is full")]
    Full,
    /// The queue was closed.
    #[error("queue is closed")]
    Closed,
}

impl PushError {
    /// What a transport's `send` reports when the queue of `peer` refused a
    /// frame.
    pub fn to_send_error(self, peer: NodeId) -> SendError {
        match self {
            PushError::Full => SendError::QueueFull(peer),
            PushError::Closed => SendError::Shutdown,
        }
    }
}

/// The bounded outgoing queue of encoded frames for one peer (or one lane
/// of one peer), with two lanes.
///
/// Bulk frames (snapshot chunks) wait in a lane of their own and
/// [`FrameQueue::take`] hands out at most one of them per round, after every
/// normal frame, so replication and heartbeats queued after a chunk overtake
/// the chunks still waiting. Both lanes together are bounded in messages and
/// in bytes; the queue never grows past those bounds, except that one frame
/// larger than the byte bound may enter an empty queue so that any message
/// within the frame limit can pass.
#[derive(Debug)]
pub struct FrameQueue {
    normal: VecDeque<Vec<u8>>,
    bulk: VecDeque<Vec<u8>>,
    bytes: usize,
    closed: bool,
    max_messages: usize,
    max_bytes: usize,
}

impl FrameQueue {
    /// An empty queue holding at most `max_messages` frames and `max_bytes`
    /// bytes (each bound at least 1).
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        FrameQueue {
            normal: VecDeque::new(),
            bulk: VecDeque::new(),
            bytes: 0,
            closed: false,
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Queues a frame in the bulk lane or the normal one.
    pub fn push(&mut self, frame: Vec<u8>, bulk: bool) -> Result<(), PushError> {
        if self.closed {
            return Err(PushError::Closed);
        }
        let count = self.len();
        if count >= self.max_messages || (count > 0 && self.bytes + frame.len() > self.max_bytes) {
            return Err(PushError::Full);
        }
        self.bytes += frame.len();
        if bulk {
            self.bulk.push_back(frame);
        } else {
            self.normal.push_back(frame);
        }
        Ok(())
    }

    /// Moves every normal frame and then at most one bulk frame into `out`.
    /// Returns false once the queue is closed.
    pub fn take(&mut self, out: &mut Vec<Vec<u8>>) -> bool {
        let mut taken = 0;
        out.extend(self.normal.drain(..).inspect(|f| taken += f.len()));
        if let Some(f) = self.bulk.pop_front() {
            taken += f.len();
            out.push(f);
        }
        self.bytes -= taken;
        !self.closed
    }

    /// Frames waiting in both lanes.
    pub fn len(&self) -> usize {
        self.normal.len() + self.bulk.len()
    }

    /// True when no frame waits.
    pub fn is_empty(&self) -> bool {
        self.normal.is_empty() && self.bulk.is_empty()
    }

    /// True once [`FrameQueue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Rejects further pushes and discards what is queued, returning how
    /// many frames were discarded.
    pub fn close(&mut self) -> usize {
        self.closed = true;
        let n = self.len();
        self.normal.clear();
        self.bulk.clear();
        self.bytes = 0;
        n
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;

    #[test]
    fn frame_queue_is_bounded_by_count_and_bytes() {
        let mut q = FrameQueue::new(3, 10);
        assert_eq!(q.push(vec![0; 4], false), Ok(()));
        assert_eq!(q.push(vec![0; 4], false), Ok(()));
        assert_eq!(
            q.push(vec![0; 4], false),
            Err(PushError::Full),
            "byte bound"
        );
        assert_eq!(q.push(vec![0; 2], true), Ok(()));
        assert_eq!(
            q.push(vec![0; 0], false),
            Err(PushError::Full),
            "count bound"
        );
        let mut out = Vec::new();
        assert!(q.take(&mut out));
        assert_eq!(out.len(), 3);
        assert!(q.is_empty());
        // An oversized frame passes an empty queue, then blocks the rest.
        assert_eq!(q.push(vec![0; 50], false), Ok(()));
        assert_eq!(q.push(vec![0; 1], false), Err(PushError::Full));
        assert_eq!(q.close(), 1);
        assert!(q.is_closed());
        assert_eq!(q.push(vec![0; 1], false), Err(PushError::Closed));
        assert!(!q.take(&mut out));
    }

    #[test]
    fn normal_frames_overtake_waiting_bulk_frames() {
        let mut q = FrameQueue::new(100, 1000);
        q.push(vec![1], true).unwrap();
        q.push(vec![2], true).unwrap();
        q.push(vec![3], false).unwrap();
        let mut out = Vec::new();
        q.take(&mut out);
        assert_eq!(out, vec![vec![3], vec![1]]);
        q.push(vec![4], false).unwrap();
        out.clear();
        q.take(&mut out);
        assert_eq!(out, vec![vec![4], vec![2]]);
        out.clear();
        q.take(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn taking_frees_their_bytes() {
        let mut q = FrameQueue::new(10, 8);
        q.push(vec![0; 8], false).unwrap();
        assert_eq!(q.push(vec![0; 1], true), Err(PushError::Full));
        let mut out = Vec::new();
        q.take(&mut out);
        q.push(vec![0; 4], true).unwrap();
        q.push(vec![0; 4], true).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q.push(vec![0; 1], false), Err(PushError::Full));
    }

    #[test]
    fn push_errors_become_send_errors() {
        assert_eq!(
            PushError::Full.to_send_error(NodeId(4)),
            SendError::QueueFull(NodeId(4))
        );
        assert_eq!(
            PushError::Closed.to_send_error(NodeId(4)),
            SendError::Shutdown
        );
    }

    #[test]
    fn peer_counters_add_up() {
        let c = PeerCounters::default();
        c.add_sent(3);
        c.add_sent(2);
        c.add_dropped(1);
        assert_eq!(
            c.snapshot(),
            PeerStats {
                sent: 5,
                dropped: 1
            }
        );
    }

    #[test]
    fn default_link_limits_are_valid_and_bad_ones_are_refused() {
        let ok = LinkLimits::default();
        assert_eq!(ok.validate(), Ok(()));
        let mut l = ok.clone();
        l.max_frame_size = 0;
        assert!(l.validate().unwrap_err().contains("max_frame_size"));
        let mut l = ok.clone();
        l.queue_bytes = 0;
        assert!(l.validate().unwrap_err().contains("queue_bytes"));
        let mut l = ok.clone();
        l.idle_timeout = l.keepalive_interval;
        assert!(l.validate().unwrap_err().contains("idle_timeout"));
        let mut l = ok;
        l.handshake_timeout = Duration::ZERO;
        assert!(l.validate().unwrap_err().contains("handshake_timeout"));
    }
}
