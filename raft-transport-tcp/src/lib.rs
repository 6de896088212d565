//! A Raft [`Transport`](raft_core::Transport) over TCP.
//!
//! # What it is for, and when to choose it
//!
//! The simplest network transport: one TCP connection per peer and
//! direction, frames of a 4-byte big-endian length followed by a message in
//! the wire form of [`raft_core::codec`]. Choose it on a trusted network or
//! with TLS enabled when you want the fewest moving parts and the highest
//! throughput for small messages. Choose raft-transport-quic instead when
//! large snapshot transfers must never delay heartbeats (QUIC gives them
//! separate streams; here they share one connection, see below) or when you
//! want TLS 1.3 with no plaintext option at all.
//!
//! # Constructing one
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use raft_core::{NodeId, Transport};
//! use raft_transport_tcp::{TcpConfig, TcpTransport};
//!
//! let cfg = TcpConfig::new(NodeId(1), 0x5eed, "127.0.0.1:7001".parse()?);
//! let mut t = TcpTransport::bind(cfg).await?;
//! t.add_peer(NodeId(2), "127.0.0.1:7002".into());
//! # Ok(()) }
//! ```
//!
//! [`TcpConfig`] holds the limits (frame size, default 16 MiB; per-peer
//! queue in messages and bytes; inbound buffer; connect, handshake, idle and
//! keepalive timeouts; redial backoff) and the optional [`TcpTls`].
//!
//! # How it behaves
//!
//! - **Sending** never waits: [`Transport::send`](raft_core::Transport::send)
//!   encodes the frame and pushes it on the peer's bounded queue, or drops it
//!   and counts the drop. A peer's writer task dials it lazily when the first
//!   message is queued, writes everything queued in as few system calls as it
//!   can (`TCP_NODELAY` is set; a TLS layer is flushed when the queue
//!   drains) and redials after a failure with capped exponential backoff and
//!   jitter. A slow or dead peer only ever fills its own queue.
//! - **Snapshot chunks** ([`Body::is_bulk`](raft_core::Body::is_bulk)) wait in
//!   a lane of their own that the writer serves one chunk per round, so
//!   messages queued after a chunk overtake the chunks still queued. A chunk
//!   already being written still occupies the connection until it is out;
//!   order is kept within each lane, not between them.
//! - **Receiving**: every connection starts with a [`Handshake`] in both
//!   directions. The acceptor refuses a wrong protocol version, a wrong
//!   cluster id, a node id that is not a known peer and (with TLS) a
//!   certificate not bound to the claimed id, with one `connection refused`
//!   warning naming the remote address, the claimed id and the reason. Frames
//!   larger than the limit (rejected from the length prefix alone), truncated
//!   or undecodable, and messages whose `from`/`to` do not match the
//!   connection, close that connection with the same kind of warning.
//! - **Liveness**: idle connections exchange zero-length keepalive frames; a
//!   connection that receives nothing, or cannot write anything, for
//!   `idle_timeout` is dropped.
//! - **Events** (`tracing`): `connection established`, `connection lost`,
//!   `connection refused` (with `reason`), `cannot connect to peer` and
//!   `redial backoff`, with `peer`/`remote`/`addr` fields.
//!
//! # Security stance
//!
//! Without [`TcpTls`], traffic is plaintext and the handshake's node id is
//! taken on trust: anyone who can reach the port can claim to be a peer.
//! **Plaintext is for loopback and trusted networks only.** With [`TcpTls`]
//! both sides authenticate with certificates issued by the cluster CA and
//! each side checks that the other's certificate is bound to the node id it
//! claims. This crate deliberately holds no certificate logic: the caller
//! supplies the rustls configurations and the binding check (the `certs`
//! module of raft-transport-quic provides them, so a cluster has one PKI for
//! both transports).
//!
//! The frame format is [`raft_core::codec::frame`] (re-exported here as
//! [`frame`]), shared with raft-transport-quic; its decoder is a pure
//! function over a byte buffer, property-tested on arbitrary input there.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod queue;
mod transport;

pub use raft_core::codec::frame;

pub use config::{PeerCertCheck, PeerServerName, TcpConfig, TcpTls};
pub use raft_core::codec::Handshake;
pub use transport::{TcpError, TcpTransport};
