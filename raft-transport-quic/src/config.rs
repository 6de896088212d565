//! The settings of a [`crate::QuicTransport`].

use crate::certs::NodeTls;
use crate::frame::DEFAULT_MAX_FRAME;
use raft_core::NodeId;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything a [`crate::QuicTransport`] needs. Build it with
/// [`QuicConfig::new`] and adjust the public fields.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    /// This node's id, sent in every handshake; its certificate must be
    /// bound to it (see [`crate::certs`]).
    pub node_id: NodeId,
    /// The cluster's id; peers that present another are refused.
    pub cluster_id: u64,
    /// The UDP address to bind (port 0 picks a free port; see
    /// [`crate::QuicTransport::local_addr`]).
    pub listen_addr: SocketAddr,
    /// This node's TLS configurations (mutual authentication, TLS 1.3).
    pub tls: NodeTls,
    /// Hard upper bound on a frame's length in bytes. Default 16 MiB; at
    /// most `u32::MAX`.
    pub max_frame_size: usize,
    /// Messages that may wait in each lane (replication, bulk) of one peer
    /// before `send` drops. Default 4096.
    pub queue_capacity: usize,
    /// Bytes that may wait in each lane of one peer before `send` drops (a
    /// single larger message still enters an empty lane). Default 64 MiB.
    pub queue_bytes: usize,
    /// Bytes of received messages that may wait for `recv` across all peers;
    /// past it, readers stop and QUIC flow control pushes back. Default 64 MiB.
    pub inbound_buffer_bytes: usize,
    /// Limit on establishing a connection, TLS and raft handshakes included.
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// Limit on the raft handshake of an accepted connection. Default 5 s.
    pub handshake_timeout: Duration,
    /// QUIC keep-alive interval. Default 1 s.
    pub keepalive_interval: Duration,
    /// A connection that hears nothing for this long, or whose peer accepts
    /// no data for this long, is dropped. Default 10 s.
    pub idle_timeout: Duration,
    /// First redial delay after a failure. Default 50 ms.
    pub backoff_initial: Duration,
    /// Redial delays double up to this cap. Default 5 s.
    pub backoff_max: Duration,
}

impl QuicConfig {
    /// Defaults for a node, limits as documented on each field.
    pub fn new(node_id: NodeId, cluster_id: u64, listen_addr: SocketAddr, tls: NodeTls) -> Self {
        QuicConfig {
            node_id,
            cluster_id,
            listen_addr,
            tls,
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

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.node_id.is_none() {
            return Err("node id 0 is reserved".into());
        }
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
