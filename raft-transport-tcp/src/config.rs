//! The settings of a [`crate::TcpTransport`].

use raft_core::transport::LinkLimits;
use raft_core::NodeId;
use rustls::pki_types::CertificateDer;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

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
    /// Frame size, queue and buffer bounds, timeouts and redial backoff.
    /// Here a peer has one outgoing queue (both lanes count against
    /// `queue_capacity` and `queue_bytes`), `connect_timeout` covers the TCP
    /// connection, `handshake_timeout` the TLS and raft handshakes, and
    /// idle connections send a keepalive frame every `keepalive_interval`.
    pub limits: LinkLimits,
    /// Mutual TLS; `None` means plaintext, which is for loopback and trusted
    /// networks only.
    pub tls: Option<TcpTls>,
}

impl TcpConfig {
    /// Defaults for a node: plaintext, [`LinkLimits::default`].
    pub fn new(node_id: NodeId, cluster_id: u64, listen_addr: SocketAddr) -> Self {
        TcpConfig {
            node_id,
            cluster_id,
            listen_addr,
            limits: LinkLimits::default(),
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
        self.limits.validate()
    }
}
