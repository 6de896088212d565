//! Whole clusters of the runtime, in process, on the in-memory transport
//! with the durable [`FileStore`] in temporary directories: a restarted
//! node, and a whole restarted cluster, recover from what is on disk.
//!
//! The store does real file I/O on tokio's blocking pool, so these tests
//! run in real time with bounded waits rather than under the paused clock.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{Opts, Recorder};
use raft_core::{LogIndex, NodeId, Role};
use raft_node::runtime::{Committed, Error, NodeConfig, RaftHandle, RaftNode};
use raft_node::wal::{FileStore, RecoveryReport, WalOptions};
use raft_transport_mem::MemNetwork;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tempfile::TempDir;

struct Node {
    dir: TempDir,
    handle: Option<RaftHandle>,
    sm: Recorder,
}

/// Three voters, each with its own WAL directory.
struct WalCluster {
    net: MemNetwork,
    opts: Opts,
    nodes: BTreeMap<NodeId, Node>,
}

fn within(o: &Opts) -> Duration {
    common::real_time_bound(o)
}

async fn open_store(dir: PathBuf) -> (FileStore, RecoveryReport) {
    // Recovery reads the whole log and blocks while doing so.
    tokio::task::spawn_blocking(move || FileStore::open(&dir, WalOptions::default()))
        .await
        .unwrap()
        .expect("store opens")
}

impl WalCluster {
    async fn start(n: u64) -> WalCluster {
        common::init_tracing();
        let opts = Opts::default();
        let mut c = WalCluster {
            net: MemNetwork::new(opts.seed),
            opts,
            nodes: BTreeMap::new(),
        };
        for i in 1..=n {
            c.nodes.insert(
                NodeId(i),
                Node {
                    dir: tempfile::tempdir().unwrap(),
                    handle: None,
                    sm: Recorder::default(),
                },
            );
        }
        for id in c.ids() {
            let report = c.launch(id).await;
            assert!(report.created, "node {id} found an old store");
        }
        c
    }

    fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    fn config(&self, id: NodeId) -> NodeConfig {
        let o = &self.opts;
        let mut raft = raft_core::Config::new(id, self.ids());
        raft.election_ticks = o.election_ticks;
        raft.heartbeat_ticks = o.heartbeat_ticks;
        raft.compaction_lag = o.compaction_lag;
        raft.seed = o.seed.wrapping_mul(1000).wrapping_add(id.0);
        let mut cfg = NodeConfig::new(raft);
        cfg.tick_interval = o.tick;
        cfg.request_timeout = o.request_timeout;
        cfg.peers = self
            .ids()
            .into_iter()
            .filter(|p| *p != id)
            .map(|p| (p, format!("mem:{p}")))
            .collect();
        cfg
    }

    /// Starts `id` from its directory with a fresh state machine, as a
    /// restarted process would.
    async fn launch(&mut self, id: NodeId) -> RecoveryReport {
        let cfg = self.config(id);
        let (store, report) = open_store(self.nodes[&id].dir.path().to_path_buf()).await;
        let transport = self.net.transport(id);
        let node = self.nodes.get_mut(&id).unwrap();
        node.sm = Recorder::default();
        let handle = RaftNode::start(cfg, transport, store, node.sm.clone())
            .await
            .expect("node starts");
        node.handle = Some(handle);
        report
    }

    async fn stop(&mut self, id: NodeId) {
        if let Some(h) = self.nodes.get_mut(&id).unwrap().handle.take() {
            h.shutdown().await;
        }
    }

    async fn stop_all(&mut self) {
        for id in self.ids() {
            self.stop(id).await;
        }
    }

    fn h(&self, id: NodeId) -> &RaftHandle {
        self.nodes[&id].handle.as_ref().expect("node is running")
    }

    fn sm(&self, id: NodeId) -> &Recorder {
        &self.nodes[&id].sm
    }

    fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.handle.as_ref().is_some_and(RaftHandle::is_running))
            .map(|(id, _)| *id)
            .collect()
    }

    async fn wait_for<R>(&self, what: &str, mut f: impl FnMut(&Self) -> Option<R>) -> R {
        let within = within(&self.opts);
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = f(self) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}"
            );
            tokio::time::sleep(self.opts.tick).await;
        }
    }

    /// Waits until every running node agrees on one leader in one term.
    async fn wait_leader(&self) -> NodeId {
        self.wait_for("a leader", |c| {
            let sts: Vec<_> = c.running().iter().map(|id| c.h(*id).status()).collect();
            let leaders: Vec<_> = sts.iter().filter(|s| s.role == Role::Leader).collect();
            if leaders.len() != 1 {
                return None;
            }
            let l = leaders[0];
            sts.iter()
                .all(|s| s.term == l.term && s.leader == Some(l.id))
                .then_some(l.id)
        })
        .await
    }

    async fn wait_applied(&self, id: NodeId, index: LogIndex) {
        self.wait_for(&format!("node {id} to apply {index}"), |c| {
            (c.h(id).status().applied_index >= index).then_some(())
        })
        .await
    }

    async fn wait_all_applied(&self, index: LogIndex) {
        for id in self.running() {
            self.wait_applied(id, index).await;
        }
    }

    /// Proposes on whichever node leads, retrying while there is none.
    async fn write(&self, data: impl Into<Bytes>) -> Committed {
        let data = data.into();
        let deadline = Instant::now() + within(&self.opts);
        loop {
            let leader = self
                .running()
                .into_iter()
                .find(|id| self.h(*id).status().role == Role::Leader);
            if let Some(l) = leader {
                match self.h(l).propose(data.clone()).await {
                    Ok(c) => return c,
                    Err(Error::NotLeader { .. }) | Err(Error::Unavailable(_)) => {}
                    Err(e) => panic!("write on leader {l} failed: {e}"),
                }
            }
            assert!(Instant::now() < deadline, "no write committed in time");
            tokio::time::sleep(self.opts.tick).await;
        }
    }

    /// Every node applied the same sequence as `reference`.
    fn assert_same_sequence(&self, reference: NodeId) {
        let expect = self.sm(reference).applied();
        for id in self.ids() {
            assert_eq!(
                self.sm(id).applied(),
                expect,
                "node {id} applied a different sequence than node {reference}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_three_nodes_elect_one_leader() {
    let mut c = WalCluster::start(3).await;
    let leader = c.wait_leader().await;
    let sts: Vec<_> = c.ids().iter().map(|id| c.h(*id).status()).collect();
    assert_eq!(sts.iter().filter(|s| s.role == Role::Leader).count(), 1);
    assert!(sts
        .iter()
        .all(|s| s.term >= 1 && s.term == sts[0].term && s.leader == Some(leader)));
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_writes_apply_in_order_on_every_node() {
    let mut c = WalCluster::start(3).await;
    let leader = c.wait_leader().await;
    let h = c.h(leader).clone();
    let mut last = 0;
    for i in 0..20u32 {
        let r = h.propose(format!("seq-{i}")).await.unwrap();
        assert!(r.index > last, "index {} after {last}", r.index);
        last = r.index;
    }
    let tasks: Vec<_> = (0..50u32)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.propose(format!("par-{i}")).await })
        })
        .collect();
    for t in tasks {
        last = last.max(t.await.unwrap().unwrap().index);
    }
    c.wait_all_applied(last).await;
    let data = c.sm(leader).data();
    assert_eq!(data.len(), 70);
    let expect: Vec<Bytes> = (0..20).map(|i| Bytes::from(format!("seq-{i}"))).collect();
    assert_eq!(
        data[..20],
        expect[..],
        "sequential writes applied out of order"
    );
    c.assert_same_sequence(leader);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_restarted_follower_reopens_its_store_and_catches_up() {
    let mut c = WalCluster::start(3).await;
    let leader = c.wait_leader().await;
    for i in 0..5 {
        c.write(format!("a{i}")).await;
    }
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let w = c.write("a-last").await;
    c.wait_applied(follower, w.index).await;
    c.stop(follower).await;
    let mut last = w.index;
    for i in 0..20 {
        last = c.write(format!("b{i}")).await.index;
    }
    let report = c.launch(follower).await;
    assert!(!report.created, "the restarted node found no store");
    assert!(
        report.last_index >= w.index,
        "recovered up to {} from disk, but had applied {}",
        report.last_index,
        w.index
    );
    assert!(c.h(follower).status().last_log_index >= w.index);
    c.wait_applied(follower, last).await;
    let w = c.write("after-restart").await;
    c.wait_all_applied(w.index).await;
    assert!(c.sm(follower).contains(b"b19"));
    c.assert_same_sequence(leader);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_whole_cluster_restart_keeps_every_acknowledged_write() {
    let mut c = WalCluster::start(3).await;
    c.wait_leader().await;
    let mut acked: Vec<(LogIndex, Bytes)> = Vec::new();
    for i in 0..30u32 {
        let data = Bytes::from(format!("w{i}"));
        let r = c.write(data.clone()).await;
        acked.push((r.index, data));
    }
    let last = acked.last().unwrap().0;
    c.stop_all().await;

    for id in c.ids() {
        let report = c.launch(id).await;
        assert!(!report.created, "node {id} found no store");
    }
    c.wait_leader().await;
    // The new leader commits an entry of its own term, which commits
    // everything before it; every node then replays the log from disk.
    c.wait_all_applied(last).await;
    for id in c.ids() {
        let applied: BTreeMap<LogIndex, Bytes> = c.sm(id).applied().into_iter().collect();
        for (index, data) in &acked {
            assert_eq!(
                applied.get(index),
                Some(data),
                "node {id} lost acknowledged write at {index}"
            );
        }
    }
    // And the cluster still takes writes after them.
    let w = c.write("after-restart").await;
    assert!(w.index > last);
    c.wait_all_applied(w.index).await;
    let leader = c.wait_leader().await;
    c.assert_same_sequence(leader);
    c.stop_all().await;
}
