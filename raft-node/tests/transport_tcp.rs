//! The transport conformance suite against raft-transport-tcp, plaintext
//! and with mutual TLS (certificates from raft-transport-quic's `certs`).

// Test code: a setup step that fails should fail the test, loudly.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod conformance;

use conformance::{Cred, Harness, Opts, RawConn, WireHarness, CLUSTER};
use raft_core::NodeId;
use raft_transport_quic::certs::{check_node_id, node_server_name, DevCa, NodeTls};
use raft_transport_tcp::{TcpConfig, TcpTls, TcpTransport};
use rustls::pki_types::ServerName;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Pki {
    ca: DevCa,
    rogue: DevCa,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            ca: DevCa::generate().unwrap(),
            rogue: DevCa::generate().unwrap(),
        }
    }

    fn tls_for(&self, cred: Cred) -> NodeTls {
        match cred {
            Cred::Trusted(id) => self.ca.node_tls(id).unwrap(),
            // Trusts the cluster CA (so it does not hang up first) but
            // presents a certificate the cluster does not trust.
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
        }
    }
}

fn tcp_tls(tls: &NodeTls) -> TcpTls {
    TcpTls {
        server: tls.server.clone(),
        client: tls.client.clone(),
        server_name: Arc::new(node_server_name),
        check_peer: Arc::new(check_node_id),
    }
}

struct Tcp<const TLS: bool> {
    opts: Opts,
    pki: Option<Pki>,
}

impl<const TLS: bool> Harness for Tcp<TLS> {
    type T = TcpTransport;

    async fn create(opts: Opts) -> Self {
        Tcp {
            opts,
            pki: TLS.then(Pki::new),
        }
    }

    async fn start(&self, id: NodeId, at: Option<&str>) -> (TcpTransport, String) {
        let addr = at.unwrap_or("127.0.0.1:0").parse().unwrap();
        let mut cfg = TcpConfig::new(id, CLUSTER, addr);
        cfg.limits.backoff_initial = Duration::from_millis(10);
        cfg.limits.backoff_max = Duration::from_millis(200);
        if self.opts.small_buffers {
            cfg.limits.queue_capacity = 64;
            cfg.limits.queue_bytes = 1 << 20;
            cfg.limits.inbound_buffer_bytes = 1 << 20;
        }
        if let Some(pki) = &self.pki {
            cfg.tls = Some(tcp_tls(&pki.ca.node_tls(id).unwrap()));
        }
        let t = TcpTransport::bind(cfg).await.unwrap();
        let addr = t.local_addr().to_string();
        (t, addr)
    }

    async fn port_free(&self, addr: &str) -> bool {
        std::net::TcpListener::bind(addr).is_ok()
    }
}

enum RawTcp {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl RawConn for RawTcp {
    async fn write(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            RawTcp::Plain(s) => s.write_all(b).await,
            RawTcp::Tls(s) => {
                s.write_all(b).await?;
                s.flush().await
            }
        }
    }

    async fn finish(&mut self) -> io::Result<()> {
        match self {
            RawTcp::Plain(s) => s.shutdown().await,
            RawTcp::Tls(s) => s.shutdown().await,
        }
    }

    async fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut b = vec![0; n];
        match self {
            RawTcp::Plain(s) => s.read_exact(&mut b).await?,
            RawTcp::Tls(s) => s.read_exact(&mut b).await?,
        };
        Ok(b)
    }

    async fn closed(&mut self) {
        // Keepalives may arrive first; the node hanging up ends the read
        // with end-of-stream or a reset.
        let mut b = [0u8; 1024];
        loop {
            let r = match self {
                RawTcp::Plain(s) => s.read(&mut b).await,
                RawTcp::Tls(s) => s.read(&mut b).await,
            };
            if !matches!(r, Ok(n) if n > 0) {
                return;
            }
        }
    }
}

impl<const TLS: bool> WireHarness for Tcp<TLS> {
    type Raw = RawTcp;

    fn tls(&self) -> bool {
        TLS
    }

    async fn raw(&self, addr: &str, target: NodeId, cred: Cred) -> io::Result<RawTcp> {
        let tcp = TcpStream::connect(addr).await?;
        match &self.pki {
            None => Ok(RawTcp::Plain(tcp)),
            Some(pki) => {
                let tls = pki.tls_for(cred);
                let name = ServerName::try_from(node_server_name(target)).unwrap();
                let s = tokio_rustls::TlsConnector::from(tls.client)
                    .connect(name, tcp)
                    .await?;
                Ok(RawTcp::Tls(Box::new(s)))
            }
        }
    }
}

mod plain {
    use super::*;
    type H = Tcp<false>;
    conformance_tests!(H);
    wire_conformance_tests!(H);
}

mod tls {
    use super::*;
    type H = Tcp<true>;
    conformance_tests!(H);
    wire_conformance_tests!(H);
    tls_conformance_tests!(H);
}
