//! Write throughput and latency of a 3-node cluster in one process: the
//! runtime with `MemStore`, 64-byte writes from closed-loop clients (each
//! waits for its write to be applied before sending the next), over each
//! transport: the in-memory one, TCP and QUIC (TLS 1.3 with development
//! certificates) on 127.0.0.1 with OS-assigned ports.
//!
//! Run with `cargo bench -p raft-node --bench cluster`. Each client count
//! is measured in several fresh clusters and the median is printed, as a
//! table and as `BENCH` lines for `cargo xtask bench`
//! (`cluster.<transport>.writes.c<clients>`, `.p50.`, `.p99.`). The issue
//! names reference figures (openraft), not targets, so the lines carry
//! none.
//!
//! `CLUSTER_BENCH_TRANSPORTS` (default "mem,tcp,quic") picks the
//! transports, `CLUSTER_BENCH_SECS` (default 3) the measured seconds per
//! run, `CLUSTER_BENCH_RUNS` (default 3) the runs, `CLUSTER_BENCH_CLIENTS`
//! (default "1,16,64,256") the client counts, `CLUSTER_BENCH_WORKERS`
//! (default: the number of CPUs) the tokio worker threads.
//! `RAFT_BENCH_QUICK=1` makes the defaults one run of half a second (rough
//! figures); the variables above still win.

use bytes::Bytes;
use raft_core::{Config, NodeId, Role};
use raft_node::mem_store::MemStore;
use raft_node::runtime::{NodeConfig, RaftHandle, RaftNode};
use raft_node::state_machine::{Command, StateMachine, StateMachineError};
use raft_transport_mem::MemNetwork;
use raft_transport_quic::certs::DevCa;
use raft_transport_quic::{QuicConfig, QuicTransport};
use raft_transport_tcp::{TcpConfig, TcpTransport};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts writes and bytes; its snapshot is those two numbers.
#[derive(Debug, Default)]
struct Tally {
    writes: u64,
    bytes: u64,
}

#[async_trait::async_trait]
impl StateMachine for Tally {
    async fn apply(&mut self, cmds: &[Command<'_>]) -> Result<Vec<Bytes>, StateMachineError> {
        for c in cmds {
            self.writes += 1;
            self.bytes += c.data.len() as u64;
        }
        Ok(vec![Bytes::new(); cmds.len()])
    }
    async fn snapshot(&mut self) -> Result<Bytes, StateMachineError> {
        let mut v = self.writes.to_be_bytes().to_vec();
        v.extend_from_slice(&self.bytes.to_be_bytes());
        Ok(Bytes::from(v))
    }
    async fn restore(&mut self, s: Bytes) -> Result<(), StateMachineError> {
        if s.len() != 16 {
            return Err(StateMachineError::new("bad snapshot"));
        }
        let (a, b) = s.split_at(8);
        self.writes = u64::from_be_bytes(a.try_into().expect("8 bytes"));
        self.bytes = u64::from_be_bytes(b.try_into().expect("8 bytes"));
        Ok(())
    }
}

struct RunResult {
    writes_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

/// The transport a benchmark cluster runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Net {
    Mem,
    Tcp,
    Quic,
}

impl Net {
    fn parse(s: &str) -> Option<Net> {
        match s.trim() {
            "mem" => Some(Net::Mem),
            "tcp" => Some(Net::Tcp),
            "quic" => Some(Net::Quic),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Net::Mem => "mem",
            Net::Tcp => "tcp",
            Net::Quic => "quic",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Net::Mem => "in-memory transport",
            Net::Tcp => "TCP on 127.0.0.1",
            Net::Quic => "QUIC (TLS 1.3, mutual auth) on 127.0.0.1",
        }
    }
}

const CLUSTER_ID: u64 = 7;
const IDS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

fn node_config(id: NodeId, peers: &BTreeMap<NodeId, String>) -> NodeConfig {
    let mut raft = Config::new(id, IDS.to_vec());
    raft.election_ticks = 10;
    raft.heartbeat_ticks = 2;
    let mut cfg = NodeConfig::new(raft);
    cfg.tick_interval = Duration::from_millis(20);
    cfg.proposal_queue = 8192;
    cfg.peers = peers
        .iter()
        .filter(|(p, _)| **p != id)
        .map(|(p, a)| (*p, a.clone()))
        .collect();
    cfg
}

async fn start_node<T: raft_core::Transport>(
    id: NodeId,
    peers: &BTreeMap<NodeId, String>,
    transport: T,
) -> RaftHandle {
    RaftNode::start(
        node_config(id, peers),
        transport,
        MemStore::new(),
        Tally::default(),
    )
    .await
    .expect("node starts")
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("a socket address")
}

async fn start_cluster(net: Net) -> Vec<RaftHandle> {
    let mut nodes = Vec::new();
    match net {
        Net::Mem => {
            let mem = MemNetwork::new(7);
            for id in IDS {
                nodes.push(start_node(id, &BTreeMap::new(), mem.transport(id)).await);
            }
        }
        Net::Tcp => {
            // Bind every node first, so each starts knowing its peers'
            // OS-assigned ports.
            let mut transports = Vec::new();
            let mut peers = BTreeMap::new();
            for id in IDS {
                let t = TcpTransport::bind(TcpConfig::new(id, CLUSTER_ID, loopback()))
                    .await
                    .expect("bind TCP on loopback");
                peers.insert(id, t.local_addr().to_string());
                transports.push((id, t));
            }
            for (id, t) in transports {
                nodes.push(start_node(id, &peers, t).await);
            }
        }
        Net::Quic => {
            let ca = DevCa::generate().expect("development CA");
            let mut transports = Vec::new();
            let mut peers = BTreeMap::new();
            for id in IDS {
                let tls = ca.node_tls(id).expect("node certificate");
                let t = QuicTransport::bind(QuicConfig::new(id, CLUSTER_ID, loopback(), tls))
                    .await
                    .expect("bind UDP on loopback");
                peers.insert(id, t.local_addr().to_string());
                transports.push((id, t));
            }
            for (id, t) in transports {
                nodes.push(start_node(id, &peers, t).await);
            }
        }
    }
    nodes
}

async fn leader(nodes: &[RaftHandle]) -> RaftHandle {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(h) = nodes.iter().find(|h| h.status().role == Role::Leader) {
            // Wait for the leader's first entry to commit so proposals do
            // not race the election's aftermath.
            if h.propose(Bytes::from_static(&[0u8; 64])).await.is_ok() {
                return h.clone();
            }
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(net: Net, clients: usize, secs: f64, warmup: Duration) -> RunResult {
    let nodes = start_cluster(net).await;
    let leader = leader(&nodes).await;
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (h, stop, measuring) = (leader.clone(), stop.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut body = [0u8; 64];
            body[..8].copy_from_slice(&(client as u64).to_be_bytes());
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Every write carries its own bytes, as requests arriving
                // from a network would.
                seq += 1;
                body[8..16].copy_from_slice(&seq.to_be_bytes());
                let t0 = Instant::now();
                match h.propose(Bytes::copy_from_slice(&body)).await {
                    Ok(_) => {
                        if measuring.load(Ordering::Relaxed) {
                            lat.push(t0.elapsed().as_nanos() as u64);
                        }
                    }
                    Err(e) => panic!("write failed: {e} (leader status {:?})", h.status()),
                }
            }
            lat
        }));
    }
    // Warm up, then measure.
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client task"));
    }
    for h in &nodes {
        h.shutdown().await;
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i] as f64 / 1000.0
    };
    RunResult {
        writes_per_sec: lat.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let quick = std::env::var_os("RAFT_BENCH_QUICK").is_some_and(|v| v == "1");
    let secs: f64 = env("CLUSTER_BENCH_SECS", if quick { 0.5 } else { 3.0 });
    let runs: usize = env("CLUSTER_BENCH_RUNS", if quick { 1 } else { 3usize }).max(1);
    let warmup = Duration::from_millis(if quick { 200 } else { 500 });
    let clients: Vec<usize> = std::env::var("CLUSTER_BENCH_CLIENTS")
        .unwrap_or_else(|_| "1,16,64,256".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let nets_spec =
        std::env::var("CLUSTER_BENCH_TRANSPORTS").unwrap_or_else(|_| "mem,tcp,quic".into());
    let mut nets = Vec::new();
    for s in nets_spec.split(',').filter(|s| !s.trim().is_empty()) {
        match Net::parse(s) {
            Some(n) => nets.push(n),
            None => {
                eprintln!("CLUSTER_BENCH_TRANSPORTS: unknown transport {s:?} (mem, tcp, quic)");
                std::process::exit(2);
            }
        }
    }
    let workers: usize = env(
        "CLUSTER_BENCH_WORKERS",
        std::thread::available_parallelism().map_or(2, usize::from),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    for net in nets {
        println!(
            "3-node cluster, {}, in-memory store, 64-byte writes; median of {runs} runs of {secs}s{}",
            net.describe(),
            if quick { " (quick: rough figures)" } else { "" }
        );
        println!(
            "{:>8} {:>14} {:>10} {:>10}",
            "clients", "writes/s", "p50 us", "p99 us"
        );
        for &c in &clients {
            let mut w = Vec::new();
            let mut p50 = Vec::new();
            let mut p99 = Vec::new();
            for _ in 0..runs {
                let r = rt.block_on(run(net, c, secs, warmup));
                w.push(r.writes_per_sec);
                p50.push(r.p50_us);
                p99.push(r.p99_us);
            }
            let (w, p50, p99) = (median(w), median(p50), median(p99));
            println!("{c:>8} {w:>14.0} {p50:>10.1} {p99:>10.1}");
            let n = net.name();
            println!("BENCH cluster.{n}.writes.c{c}={w:.0} writes/s");
            // With no write measured there is no latency to report (and a
            // NaN is not a figure).
            if p50.is_finite() && p99.is_finite() {
                println!("BENCH cluster.{n}.p50.c{c}={p50:.1} us");
                println!("BENCH cluster.{n}.p99.c{c}={p99:.1} us");
            }
        }
        println!();
    }
}
