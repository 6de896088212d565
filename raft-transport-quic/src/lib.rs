//! A Raft [`Transport`](raft_core::Transport) over QUIC (quinn), always
//! encrypted and mutually authenticated with TLS 1.3.
//!
//! # What it is for, and when to choose it
//!
//! Choose QUIC when the network between nodes is not trusted (there is no
//! plaintext mode) or when snapshots are large: replication traffic and
//! heartbeats travel on one long-lived ordered stream per peer, snapshot
//! chunks ([`Body::is_bulk`](raft_core::Body::is_bulk)) on a stream of their
//! own, so a heartbeat never waits behind a chunk. Order is kept within each
//! stream, not between them. raft-transport-tcp is simpler and faster for
//! small messages on a trusted network.
//!
//! # Constructing one
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use raft_core::{NodeId, Transport};
//! use raft_transport_quic::certs::{dev_pki_paths, NodeTls};
//! use raft_transport_quic::{QuicConfig, QuicTransport};
//! use std::path::Path;
//!
//! let (ca, cert, key) = dev_pki_paths(Path::new("pki"), NodeId(1));
//! let tls = NodeTls::load(NodeId(1), &ca, &cert, &key)?;
//! let cfg = QuicConfig::new(NodeId(1), 0x5eed, "0.0.0.0:7001".parse()?, tls);
//! let mut t = QuicTransport::bind(cfg).await?;
//! t.add_peer(NodeId(2), "10.0.0.2:7001".into());
//! # Ok(()) }
//! ```
//!
//! [`QuicConfig`] holds the TLS material ([`certs::NodeTls`]), the frame
//! limit (default 16 MiB), the per-lane queue bounds, the inbound buffer,
//! the connect/handshake/idle/keep-alive timeouts and the redial backoff.
//!
//! # How it behaves
//!
//! Each node has one UDP endpoint that dials and accepts. A peer is dialed
//! when the first message for it is sent, and redialed after a failure with
//! capped exponential backoff and jitter. The dialer opens a bidirectional
//! stream and both sides exchange the raft [`Handshake`](raft_core::codec::Handshake)
//! on it; the acceptor refuses a wrong version or cluster id, an id that is
//! not a known peer, and a certificate that is not bound to the claimed id.
//! Frames are a 4-byte big-endian length and the message's wire form, with a
//! hard limit; an oversized, truncated or undecodable frame, or a message
//! whose `from`/`to` does not match the connection, closes the connection.
//! Every refusal is one `connection refused` warning naming the remote
//! address, the claimed id and the reason. Other events: `connection
//! established`, `connection lost`, `cannot connect to peer`, `redial
//! backoff`. `send` never waits: each lane of each peer has a bounded queue,
//! and a full queue drops and counts.
//!
//! # Security stance, and using your own PKI
//!
//! Every connection is TLS 1.3 with both sides presenting a certificate
//! issued by the cluster CA; the only identity rule is that node `N`'s
//! certificate carries the DNS subject alternative name `node-N`
//! ([`certs::node_server_name`], checked by [`certs::check_node_id`]). A
//! peer whose certificate is untrusted, or bound to another id than its
//! handshake claims, is refused.
//!
//! For development, [`certs::write_dev_pki`] writes a CA and node
//! certificates into a directory (`ca.pem`, `ca.key`, `node-<id>.pem`,
//! `node-<id>.key`). With your own PKI:
//!
//! 1. Issue each node a certificate (ECDSA P-256/P-384, Ed25519 or RSA) with
//!    the DNS SAN `node-<id>` and the extended key usages serverAuth and
//!    clientAuth, signed by your CA (intermediates go in the certificate
//!    file after the node's certificate).
//! 2. Give each node its certificate, its private key (PKCS#8, PKCS#1 or
//!    SEC1 PEM) and the CA certificate(s) to trust, and load them with
//!    [`certs::NodeTls::load`], which refuses a certificate not bound to the
//!    node's id at startup.
//! 3. Trust only the cluster's CA: any certificate it issues with a
//!    `node-<id>` name can join as that id if the id is a known peer.
//!
//! The same [`certs::NodeTls`], [`certs::node_server_name`] and
//! [`certs::check_node_id`] configure mutual TLS for raft-transport-tcp.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod certs;
mod config;
mod queue;
mod transport;

pub use raft_core::codec::frame;

pub use config::QuicConfig;
pub use transport::{QuicError, QuicTransport};
