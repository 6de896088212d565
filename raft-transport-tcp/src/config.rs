//! The settings of a [`crate::TcpTransport`].

use crate::frame::DEFAULT_MAX_FRAME;
use raft_core::NodeId;
use rustls::pki_types::CertificateDer;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Checks that a peer's certificate is bound to the node id it claims.
/// Returns a reason fit for a log line when it is not.
pub type PeerCertCheck =
    Arc<dyn Fn(&CertificateDer<'_>, NodeId) -> Result<(), String> + Send + Sync>;

/// The TLS server name under which a peer's certificate is verified when
/// dialing it (for example `node-<id>`).
pub type PeerServerName = Arc<dyn Fn(NodeId) -> String + Send + Sync>;

/// Mutual TLS for the TCP transport.
///
/// This crate holds no certificate logic of its own: the caller supplies
/// rustls configurations and the rule that binds a certificate to a node id
/// (raft-transport-quic's `certs` module provides all four, so both
/// transports share one PKI).
///
/// - `server` must require and verify client certificates (for example with
///   `rustls::server::WebPkiClientVerifier`); otherwise any holder of a
///   certificate, or none, could connect.
/// - `client` must present this node's certificate and trust the cluster CA.
/// - `server_name` names the certificate expected from a peer being dialed;
///   the TLS handshake verifies it.
/// - `check_peer` is applied on both sides after the TLS handshake to the
///   peer's end-entity certificate and the node id its raft handshake
///   claims; a mismatch refuses the connection.
#[derive(Clone)]
pub struct TcpTls {
    /// Configuration for accepted connections.
    pub server: Arc<rustls::ServerConfig>,
    /// Configuration for dialed connections.
    pub client: Arc<rustls::ClientConfig>,
    /// The server name to verify when dialing a peer.
    pub server_name: PeerServerName,
    /// Binds a certificate to a node id.
    pub check_peer: PeerCertCheck,
}

impl fmt::Debug for TcpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTls").finish_non_exhaustive()
    }
}

/// Everything a [`crate::TcpTransport`] needs. Build it with
/// [`TcpConfig::new`] and adjust the public fields.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// This node's id, sent in every handshake.
    pub node_id: NodeId,
    /// The cluster's id; peers that present another are refused.
    pub cluster_id: u64,
    /// Where to accept connections (port 0 picks a free port; see
    /// [`crate::TcpTransport::local_addr`]).
    pub listen_addr: SocketAddr,
    /// Hard upper bound on a frame's length in bytes, both directions.
    /// Default 16 MiB; at most `u32::MAX`.
    pub max_frame_size: usize,
    /// Messages that may wait for one peer before `send` drops. Default 4096.
    pub queue_capacity: usize,
    /// Bytes that may wait for one peer before `send` drops (a single message
    /// larger than this is still accepted into an empty queue). Default 64 MiB.
    pub queue_bytes: usize,
    /// Bytes of received messages that may wait for `recv` across all peers;
    /// past it, readers stop reading and TCP flow control pushes back.
    /// Default 64 MiB.
    pub inbound_buffer_bytes: usize,
    /// Limit on establishing a TCP connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Limit on the TLS and raft handshakes. Default 5 s.
    pub handshake_timeout: Duration,
    /// An idle connection sends a keepalive frame this often. Default 1 s.
    pub keepalive_interval: Duration,
    /// A connection that receives nothing, or cannot write anything, for
    /// this long is considered dead and dropped. Default 10 s.
    pub idle_timeout: Duration,
    /// First redial delay after a failure. Default 50 ms.
    pub backoff_initial: Duration,
    /// Redial delays double up to this cap. Default 5 s.
    pub backoff_max: Duration,
    /// Mutual TLS; `None` means plaintext, which is for loopback and trusted
    /// networks only.
    pub tls: Option<TcpTls>,
}

impl TcpConfig {
    /// Defaults for a node: plaintext, limits as documented on each field.
    pub fn new(node_id: NodeId, cluster_id: u64, listen_addr: SocketAddr) -> Self {
        TcpConfig {
            node_id,
            cluster_id,
            listen_addr,
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
            tls: None,
        }
    }

    /// Sets mutual TLS.
    pub fn with_tls(mut self, tls: TcpTls) -> Self {
        self.tls = Some(tls);
        self
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
