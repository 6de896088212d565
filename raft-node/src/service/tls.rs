//! Building the network transports from the command line: plain or
//! mutual-TLS TCP, and QUIC (always mutual TLS), with one PKI for both (the
//! `certs` module of raft-transport-quic). Errors name the file or address
//! at fault, in one line.

use super::cli::Cli;
use super::node::StartError;
use raft_core::NodeId;
use raft_transport_quic::certs::{check_node_id, node_server_name, NodeTls};
use raft_transport_quic::{QuicConfig, QuicTransport};
use raft_transport_tcp::{TcpConfig, TcpError, TcpTls, TcpTransport};
use std::net::SocketAddr;
use std::sync::Arc;

fn load_tls(cli: &Cli, id: NodeId) -> Result<Option<NodeTls>, StartError> {
    match (&cli.tls_ca, &cli.tls_cert, &cli.tls_key) {
        (Some(ca), Some(cert), Some(key)) => NodeTls::load(id, ca, cert, key)
            .map(Some)
            .map_err(|e| StartError(format!("TLS: {e}"))),
        _ => Ok(None),
    }
}

fn in_use(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::AddrInUse
}

/// The TCP transport, with mutual TLS when certificates are given.
pub async fn tcp_transport(
    cli: &Cli,
    id: NodeId,
    addr: SocketAddr,
) -> Result<TcpTransport, StartError> {
    let mut cfg = TcpConfig::new(id, cli.cluster_id, addr);
    if let Some(tls) = load_tls(cli, id)? {
        cfg = cfg.with_tls(TcpTls {
            server: tls.server,
            client: tls.client,
            server_name: Arc::new(node_server_name),
            check_peer: Arc::new(check_node_id),
        });
    }
    TcpTransport::bind(cfg).await.map_err(|e| match e {
        TcpError::Bind { addr, source } if in_use(&source) => StartError(format!(
            "cannot listen for Raft (tcp) on {addr}: the port is already in use"
        )),
        other => StartError(other.to_string()),
    })
}

/// The QUIC transport.
pub async fn quic_transport(
    cli: &Cli,
    id: NodeId,
    addr: SocketAddr,
) -> Result<QuicTransport, StartError> {
    let tls = load_tls(cli, id)?.ok_or_else(|| {
        StartError("--transport quic needs --tls-cert, --tls-key and --tls-ca".into())
    })?;
    let cfg = QuicConfig::new(id, cli.cluster_id, addr, tls);
    QuicTransport::bind(cfg).await.map_err(|e| match e {
        raft_transport_quic::QuicError::Bind { addr, source } if in_use(&source) => StartError(
            format!("cannot listen for Raft (quic) on UDP {addr}: the port is already in use"),
        ),
        other => StartError(other.to_string()),
    })
}

/// `raft-node gen-certs`: writes a development CA and node certificates.
pub fn gen_certs(dir: &std::path::Path, ids: &[u64]) -> Result<(), String> {
    if ids.contains(&0) {
        return Err("node id 0 is reserved".into());
    }
    let ids: Vec<NodeId> = ids.iter().map(|i| NodeId(*i)).collect();
    raft_transport_quic::certs::write_dev_pki(dir, &ids)
        .map(|_| ())
        .map_err(|e| format!("cannot write certificates to {}: {e}", dir.display()))
}
