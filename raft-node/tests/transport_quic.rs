//! The transport conformance suite against raft-transport-quic.

// Test code: a setup step that fails should fail the test, loudly.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod conformance;

use conformance::{Cred, Harness, Opts, RawConn, WireHarness, CLUSTER};
use quinn::crypto::rustls::QuicClientConfig;
use raft_core::NodeId;
use raft_transport_quic::certs::{node_server_name, DevCa, NodeTls};
use raft_transport_quic::{QuicConfig, QuicTransport};
use std::io;
use std::sync::Arc;
use std::time::Duration;

struct Quic {
    opts: Opts,
    ca: DevCa,
    rogue: DevCa,
}

impl Harness for Quic {
    type T = QuicTransport;

    async fn create(opts: Opts) -> Self {
        Quic {
            opts,
            ca: DevCa::generate().unwrap(),
            rogue: DevCa::generate().unwrap(),
        }
    }

    async fn start(&self, id: NodeId, at: Option<&str>) -> (QuicTransport, String) {
        let addr = at.unwrap_or("127.0.0.1:0").parse().unwrap();
        let mut cfg = QuicConfig::new(id, CLUSTER, addr, self.ca.node_tls(id).unwrap());
        cfg.limits.backoff_initial = Duration::from_millis(10);
        cfg.limits.backoff_max = Duration::from_millis(200);
        if self.opts.small_buffers {
            cfg.limits.queue_capacity = 64;
            cfg.limits.queue_bytes = 1 << 20;
            cfg.limits.inbound_buffer_bytes = 1 << 20;
        }
        let t = QuicTransport::bind(cfg).await.unwrap();
        let addr = t.local_addr().to_string();
        (t, addr)
    }

    async fn port_free(&self, addr: &str) -> bool {
        std::net::UdpSocket::bind(addr).is_ok()
    }
}

struct RawQuic {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl RawConn for RawQuic {
    async fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.send.write_all(b).await.map_err(other)
    }

    async fn finish(&mut self) -> io::Result<()> {
        self.send.finish().map_err(other)
    }

    async fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut b = vec![0; n];
        self.recv.read_exact(&mut b).await.map_err(other)?;
        Ok(b)
    }

    async fn closed(&mut self) {
        self.conn.closed().await;
    }
}

impl WireHarness for Quic {
    type Raw = RawQuic;

    fn tls(&self) -> bool {
        true
    }

    async fn raw(&self, addr: &str, target: NodeId, cred: Cred) -> io::Result<RawQuic> {
        let tls = match cred {
            Cred::Trusted(id) => self.ca.node_tls(id).unwrap(),
            // Trusts the cluster CA, presents a certificate it does not trust.
            Cred::Untrusted(id) => {
                let pem = self.rogue.issue(id).unwrap();
                NodeTls::from_pem(
                    id,
                    self.ca.cert_pem().as_bytes(),
                    pem.cert_pem.as_bytes(),
                    pem.key_pem.as_bytes(),
                )
                .unwrap()
            }
        };
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap())?;
        let crypto = QuicClientConfig::try_from(tls.client).map_err(other)?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = endpoint
            .connect(addr.parse().map_err(other)?, &node_server_name(target))
            .map_err(other)?
            .await
            .map_err(other)?;
        let (send, recv) = conn.open_bi().await.map_err(other)?;
        Ok(RawQuic {
            _endpoint: endpoint,
            conn,
            send,
            recv,
        })
    }
}

conformance_tests!(Quic);
wire_conformance_tests!(Quic);
tls_conformance_tests!(Quic);
