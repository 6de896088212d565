//! Starting and stopping the service: storage, transport, runtime and HTTP
//! server for one node (or, with the in-memory transport, for a whole
//! cluster in one process), and the graceful shutdown on SIGTERM/ctrl-c.
//!
//! Startup failures are returned as one-line [`StartError`]s naming what
//! failed (the port in use, the damaged file...); the binary prints them
//! and exits with status 2. Nothing here may exit the process itself.

use super::cli::{Cli, PeerSpec, TransportKind};
use super::conn_limit::LimitedListener;
use super::faults::{FaultControl, FaultFilter};
use super::http::{self, ApiState};
use super::kv::{KvStore, PeerAddrs, DEFAULT_DEDUP_CAPACITY};
use crate::runtime::{NodeConfig, RaftHandle, RaftNode};
use crate::wal::{FileStore, RecoveryReport, WalOptions};
use raft_core::{NodeId, Transport};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Why the service could not start: one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

fn fail(msg: impl Into<String>) -> StartError {
    StartError(msg.into())
}

/// One running node: its runtime and its HTTP server task.
#[derive(Debug)]
pub struct RunningNode {
    /// The node's id.
    pub id: NodeId,
    /// The runtime handle.
    pub handle: RaftHandle,
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    state: Arc<ApiState>,
    server: tokio::task::JoinHandle<()>,
    stop_http: tokio::sync::watch::Sender<bool>,
}

impl RunningNode {
    /// The HTTP layer's shared state.
    pub fn api(&self) -> &Arc<ApiState> {
        &self.state
    }
}

fn log_recovery(id: NodeId, dir: &Path, r: &RecoveryReport) {
    if r.created {
        info!(node = %id, dir = %dir.display(), "initialised a new data directory");
    } else {
        info!(
            node = %id,
            dir = %dir.display(),
            term = r.hard_state.term,
            commit = r.hard_state.commit,
            first_index = r.first_index,
            last_index = r.last_index,
            entries = r.entries,
            segments = r.segments,
            snapshot = ?r.snapshot,
            elapsed_ms = r.elapsed.as_millis() as u64,
            "recovered storage"
        );
    }
    if let Some(t) = &r.torn_tail {
        warn!(
            node = %id,
            file = %t.file.display(),
            offset = t.offset,
            bytes_cut = t.bytes_cut,
            reason = %t.reason,
            "cut a torn record off the end of the log"
        );
    }
    if r.completed_snapshot_install {
        warn!(node = %id, "completed an interrupted snapshot installation");
    }
}

async fn open_store(id: NodeId, dir: &Path) -> Result<FileStore, StartError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        fail(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    let d = dir.to_path_buf();
    let (store, report) =
        tokio::task::spawn_blocking(move || FileStore::open(&d, WalOptions::default()))
            .await
            .map_err(|e| fail(format!("storage recovery task failed: {e}")))?
            .map_err(|e| fail(format!("cannot open storage in {}: {e}", dir.display())))?;
    log_recovery(id, dir, &report);
    Ok(store)
}

async fn bind_http(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            fail(format!(
                "cannot listen for HTTP on {addr}: the port is already in use"
            ))
        } else {
            fail(format!("cannot listen for HTTP on {addr}: {e}"))
        }
    })
}

/// What every node of one invocation shares.
struct Common {
    cli: Cli,
    local_peers: BTreeMap<u64, PeerAddrs>,
}

fn node_config(
    cli: &Cli,
    id: NodeId,
    (voters, learners): (Vec<NodeId>, Vec<NodeId>),
    peers: BTreeMap<NodeId, String>,
) -> NodeConfig {
    let mut raft = raft_core::Config::new(id, voters);
    raft.learners = learners;
    raft.election_ticks = cli.election_ticks;
    raft.heartbeat_ticks = cli.heartbeat_ticks;
    // Different timeouts on every start, so two nodes that restart together
    // do not keep splitting the vote.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    raft.seed = id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ nanos;
    // Keep fewer entries behind a snapshot than the snapshot interval, so
    // that a small --snapshot-every really bounds the log.
    raft.compaction_lag = raft.compaction_lag.min((cli.snapshot_every / 2).max(1));
    let mut cfg = NodeConfig::new(raft);
    cfg.tick_interval = Duration::from_millis(cli.tick_ms);
    cfg.request_timeout = Duration::from_millis(cli.request_timeout_ms);
    cfg.snapshot_every = cli.snapshot_every;
    // The key, the request id and the encoding add at most a few KiB.
    cfg.max_proposal_bytes = cli.max_value_bytes + 8 * 1024;
    cfg.peers = peers;
    cfg
}

#[allow(clippy::too_many_arguments)]
async fn start_one<T: Transport>(
    common: &Common,
    id: NodeId,
    transport: T,
    faults: FaultControl,
    listener: TcpListener,
    store: FileStore,
    members: (Vec<NodeId>, Vec<NodeId>),
    peers: BTreeMap<NodeId, String>,
) -> Result<RunningNode, StartError> {
    let cli = &common.cli;
    let wal = store.metrics();
    let kv = KvStore::new(DEFAULT_DEDUP_CAPACITY);
    let reader = kv.reader();
    let kv_events = kv.events();
    let kv_counters = kv.counters();
    let cfg = node_config(cli, id, members, peers);
    let transport = FaultFilter::new(transport, faults.clone());
    let handle = RaftNode::start(cfg, transport, store, kv)
        .await
        .map_err(|e| fail(format!("node {id} cannot start: {e}")))?;
    let http_addr = listener
        .local_addr()
        .map_err(|e| fail(format!("HTTP listener: {e}")))?;
    let state = Arc::new(ApiState {
        id,
        handle: handle.clone(),
        kv: reader,
        kv_events,
        kv_counters,
        faults,
        fault_injection: cli.enable_fault_injection,
        local_peers: common.local_peers.clone(),
        wal: Some(wal),
        metrics: Default::default(),
        request_timeout: Duration::from_millis(cli.request_timeout_ms),
        max_value_bytes: cli.max_value_bytes,
        transport: cli.transport.as_str(),
        snapshots_taken: Default::default(),
        snapshots_installed: Default::default(),
        closing: tokio::sync::watch::channel(false).0,
    });
    tokio::spawn(state.clone().count_snapshots());
    let (stop_http, mut stop_rx) = tokio::sync::watch::channel(false);
    let app = http::router(state.clone());
    let max_connections = cli.max_http_connections;
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        let listener = LimitedListener::new(listener, max_connections);
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            warn!(node = %id, error = %e, "HTTP server failed");
        }
    });
    info!(node = %id, http = %http_addr, "serving the HTTP API");
    Ok(RunningNode {
        id,
        handle,
        http_addr,
        state,
        server,
        stop_http,
    })
}

fn peer_book(peers: &[PeerSpec]) -> BTreeMap<u64, PeerAddrs> {
    peers
        .iter()
        .map(|p| {
            (
                p.id,
                PeerAddrs {
                    id: p.id,
                    raft_addr: p.raft_addr.clone(),
                    http_addr: p.http_addr.clone(),
                },
            )
        })
        .collect()
}

/// Starts what `cli` describes: one node over TCP or QUIC, or `--nodes`
/// nodes over the in-memory transport.
pub async fn start(cli: Cli) -> Result<Vec<RunningNode>, StartError> {
    match cli.transport {
        TransportKind::Mem => start_mem(cli).await,
        TransportKind::Tcp | TransportKind::Quic => start_networked(cli).await.map(|n| vec![n]),
    }
}

async fn start_networked(cli: Cli) -> Result<RunningNode, StartError> {
    let id = NodeId(cli.id.ok_or_else(|| fail("--id is required"))?);
    let raft_addr = cli.own_raft_addr().map_err(fail)?;
    let http_addr = cli.own_http_addr().map_err(fail)?;
    let mut local_peers = peer_book(&cli.peers);
    local_peers.insert(
        id.0,
        PeerAddrs {
            id: id.0,
            raft_addr: raft_addr.to_string(),
            http_addr: http_addr.to_string(),
        },
    );
    // A joining node starts with no members at all: it learns the
    // membership from the log (the bootstrap configuration is entry 1) or a
    // snapshot, and must not write a bootstrap entry of its own, which
    // would differ from the cluster's entry 1.
    let members: (Vec<NodeId>, Vec<NodeId>) = if cli.join {
        (Vec::new(), Vec::new())
    } else {
        (local_peers.keys().map(|i| NodeId(*i)).collect(), Vec::new())
    };
    let peers: BTreeMap<NodeId, String> = cli
        .peers
        .iter()
        .filter(|p| p.id != id.0)
        .map(|p| (NodeId(p.id), p.raft_addr.clone()))
        .collect();
    let listener = bind_http(http_addr).await?;
    let store = open_store(id, &cli.data_dir).await?;
    let faults = FaultControl::default();
    let common = Common {
        cli: cli.clone(),
        local_peers,
    };
    info!(
        node = %id,
        transport = cli.transport.as_str(),
        raft = %raft_addr,
        http = %http_addr,
        voters = ?members.0,
        join = cli.join,
        "starting"
    );
    match cli.transport {
        TransportKind::Tcp => {
            let t = super::tls::tcp_transport(&cli, id, raft_addr).await?;
            start_one(&common, id, t, faults, listener, store, members, peers).await
        }
        TransportKind::Quic => {
            let t = super::tls::quic_transport(&cli, id, raft_addr).await?;
            start_one(&common, id, t, faults, listener, store, members, peers).await
        }
        TransportKind::Mem => Err(fail("internal: mem is started elsewhere")),
    }
}

async fn start_mem(cli: Cli) -> Result<Vec<RunningNode>, StartError> {
    let base = cli
        .http_addr
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8001)));
    let n = cli.nodes;
    if base.port() != 0 && u64::from(base.port()) + n - 1 > u64::from(u16::MAX) {
        return Err(fail(format!(
            "--http-addr port {} leaves no room for {n} nodes",
            base.port()
        )));
    }
    // Bind every port first so a port in use is reported before anything
    // starts.
    let mut listeners = Vec::new();
    for i in 0..n {
        let mut a = base;
        if base.port() != 0 {
            a.set_port(base.port() + i as u16);
        }
        listeners.push(bind_http(a).await?);
    }
    let mut book = BTreeMap::new();
    for (i, l) in listeners.iter().enumerate() {
        let id = i as u64 + 1;
        let addr = l
            .local_addr()
            .map_err(|e| fail(format!("HTTP listener: {e}")))?;
        book.insert(
            id,
            PeerAddrs {
                id,
                raft_addr: format!("mem:{id}"),
                http_addr: addr.to_string(),
            },
        );
    }
    let common = Common {
        cli: cli.clone(),
        local_peers: book.clone(),
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let net = raft_transport_mem::MemNetwork::new(seed);
    let voters: Vec<NodeId> = book.keys().map(|i| NodeId(*i)).collect();
    info!(
        nodes = n,
        "starting an in-process cluster over the mem transport"
    );
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let store = open_store(id, &cli.data_dir.join(format!("node-{}", id.0))).await?;
        let peers: BTreeMap<NodeId, String> = voters
            .iter()
            .filter(|p| **p != id)
            .map(|p| (*p, format!("mem:{p}")))
            .collect();
        let t = net.transport(id);
        nodes.push(
            start_one(
                &common,
                id,
                t,
                FaultControl::default(),
                listener,
                store,
                (voters.clone(), Vec::new()),
                peers,
            )
            .await?,
        );
    }
    Ok(nodes)
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!(signal = "interrupt", "shutting down"),
        _ = term => info!(signal = "terminate", "shutting down"),
    }
}

/// Stops taking requests, lets in-flight ones finish (each is bounded by
/// the request timeout; stragglers are cut after `grace`), then stops the
/// runtimes, which flush their storage.
pub async fn stop(nodes: Vec<RunningNode>, grace: Duration) {
    for n in &nodes {
        let _ = n.stop_http.send(true);
        n.state.begin_shutdown();
    }
    for n in &nodes {
        // In-flight requests finish first; a server still draining after
        // the grace period is aborted.
        let abort = n.server.abort_handle();
        if tokio::time::timeout(grace, async {
            while !n.server.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .is_err()
        {
            warn!(node = %n.id, "HTTP requests still running after the grace period; closing them");
            abort.abort();
        }
    }
    for n in &nodes {
        n.handle.shutdown().await;
        info!(node = %n.id, "stopped");
    }
}
