//! The settings of a [`crate::QuicTransport`].

use crate::certs::NodeTls;
use raft_core::transport::LinkLimits;
use raft_core::NodeId;
use std::net::SocketAddr;

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
    /// Frame size, queue and buffer bounds, timeouts and redial backoff.
    /// Here each lane of a peer (replication, bulk) has its own queue
    /// bounded by `queue_capacity` and `queue_bytes`; `connect_timeout`
    /// covers the connection with its TLS and raft handshakes,
    /// `handshake_timeout` the raft handshake of an accepted connection, and
    /// `keepalive_interval` is QUIC's keep-alive interval.
    pub limits: LinkLimits,
}

impl QuicConfig {
    /// Defaults for a node: [`LinkLimits::default`].
    pub fn new(node_id: NodeId, cluster_id: u64, listen_addr: SocketAddr, tls: NodeTls) -> Self {
        QuicConfig {
            node_id,
            cluster_id,
            listen_addr,
            tls,
            limits: LinkLimits::default(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.node_id.is_none() {
            return Err("node id 0 is reserved".into());
        }
        self.limits.validate()
    }
}
