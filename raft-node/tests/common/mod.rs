//! Cluster-building helpers for the `cluster_*` tests: in-process clusters
//! of [`RaftNode`]s on any transport (through [`TransportFactory`]), with
//! [`MemStore`]s that survive restarts and a state machine that records
//! what it applied.
//!
//! Every wait here is bounded and polls once per tick, so the same helpers
//! work under tokio's paused clock (where waiting costs no real time) and
//! over real sockets.

// Test code: a failed unwrap is a failed test.
#![allow(dead_code, async_fn_in_trait, clippy::unwrap_used)]

use bytes::Bytes;
use raft_core::{LogIndex, NodeId, Role, Transport};
use raft_node::mem_store::MemStore;
use raft_node::runtime::{Committed, Error, NodeConfig, NodeStatus, RaftHandle, RaftNode};
use raft_node::state_machine::{Command, StateMachine, StateMachineError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Sends tracing output to the test's captured output, filtered by
/// `RUST_LOG` (nothing by default).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// Makes the transports of one cluster.
pub trait TransportFactory {
    /// The transport made.
    type T: Transport;
    /// Creates node `id`'s transport (again, after a restart) and returns
    /// it with the address its peers should use.
    async fn create(&mut self, id: NodeId) -> (Self::T, String);
}

/// Timing and limits of a test cluster.
#[derive(Debug, Clone)]
pub struct Opts {
    pub tick: Duration,
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    pub snapshot_every: u64,
    pub compaction_lag: u64,
    pub proposal_queue: usize,
    pub max_pending: usize,
    pub request_timeout: Duration,
    pub seed: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            tick: Duration::from_millis(10),
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_every: 0,
            compaction_lag: 1024,
            proposal_queue: 1024,
            max_pending: 65_536,
            request_timeout: Duration::from_secs(5),
            seed: 1,
        }
    }
}

impl Opts {
    /// The base election timeout.
    pub fn election_timeout(&self) -> Duration {
        self.tick * self.election_ticks
    }
}

/// What a [`Recorder`] state machine has seen.
#[derive(Debug, Default)]
pub struct Record {
    /// Every applied command, in order.
    pub applied: Vec<(LogIndex, Bytes)>,
    /// How many snapshots were restored.
    pub restores: u64,
}

/// A state machine that records the commands it applies; its state is the
/// list itself. Its response to a command is the number of commands
/// applied so far (big-endian u64).
#[derive(Debug, Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Record>>);

impl Recorder {
    pub fn applied(&self) -> Vec<(LogIndex, Bytes)> {
        self.0.lock().unwrap().applied.clone()
    }
    pub fn data(&self) -> Vec<Bytes> {
        self.applied().into_iter().map(|(_, d)| d).collect()
    }
    pub fn restores(&self) -> u64 {
        self.0.lock().unwrap().restores
    }
    pub fn contains(&self, data: &[u8]) -> bool {
        self.0
            .lock()
            .unwrap()
            .applied
            .iter()
            .any(|(_, d)| d == data)
    }
}

#[async_trait::async_trait]
impl StateMachine for Recorder {
    async fn apply(&mut self, commands: &[Command<'_>]) -> Result<Vec<Bytes>, StateMachineError> {
        let mut r = self.0.lock().unwrap();
        let mut out = Vec::with_capacity(commands.len());
        for c in commands {
            if let Some((last, _)) = r.applied.last() {
                assert!(c.index > *last, "applied {} after {}", c.index, last);
            }
            r.applied.push((c.index, c.data.clone()));
            out.push(Bytes::copy_from_slice(
                &(r.applied.len() as u64).to_be_bytes(),
            ));
        }
        Ok(out)
    }

    async fn snapshot(&mut self) -> Result<Bytes, StateMachineError> {
        let r = self.0.lock().unwrap();
        let v: Vec<(u64, Vec<u8>)> = r.applied.iter().map(|(i, d)| (*i, d.to_vec())).collect();
        Ok(Bytes::from(postcard::to_allocvec(&v).unwrap()))
    }

    async fn restore(&mut self, snapshot: Bytes) -> Result<(), StateMachineError> {
        let v: Vec<(u64, Vec<u8>)> =
            postcard::from_bytes(&snapshot).map_err(|e| StateMachineError::new(e.to_string()))?;
        let mut r = self.0.lock().unwrap();
        r.applied = v.into_iter().map(|(i, d)| (i, Bytes::from(d))).collect();
        r.restores += 1;
        Ok(())
    }
}

/// One member of a test cluster.
#[derive(Debug)]
pub struct Member {
    /// None while stopped.
    pub handle: Option<RaftHandle>,
    pub store: MemStore,
    pub sm: Recorder,
    pub addr: String,
    /// The voters it was bootstrapped with.
    pub bootstrap: Vec<NodeId>,
    /// The learners it was bootstrapped with.
    pub learners: Vec<NodeId>,
}

/// An in-process cluster.
pub struct Cluster<F: TransportFactory> {
    pub factory: F,
    pub opts: Opts,
    pub members: BTreeMap<NodeId, Member>,
}

impl<F: TransportFactory> Cluster<F> {
    /// Starts nodes `1..=n` as the voters of a new cluster.
    pub async fn start(factory: F, n: u64, opts: Opts) -> Self {
        init_tracing();
        let mut c = Cluster {
            factory,
            opts,
            members: BTreeMap::new(),
        };
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let mut transports = Vec::new();
        for id in &ids {
            let (t, addr) = c.factory.create(*id).await;
            c.members.insert(
                *id,
                Member {
                    handle: None,
                    store: MemStore::new(),
                    sm: Recorder::default(),
                    addr,
                    bootstrap: ids.clone(),
                    learners: Vec::new(),
                },
            );
            transports.push((*id, t));
        }
        for (id, t) in transports {
            c.launch(id, t).await;
        }
        c
    }

    /// The node configuration `id` runs with.
    pub fn config(&self, id: NodeId) -> NodeConfig {
        let m = &self.members[&id];
        let mut raft = raft_core::Config::new(id, m.bootstrap.clone());
        raft.learners = m.learners.clone();
        raft.election_ticks = self.opts.election_ticks;
        raft.heartbeat_ticks = self.opts.heartbeat_ticks;
        raft.compaction_lag = self.opts.compaction_lag;
        raft.seed = self.opts.seed.wrapping_mul(1000).wrapping_add(id.0);
        let mut cfg = NodeConfig::new(raft);
        cfg.tick_interval = self.opts.tick;
        cfg.snapshot_every = self.opts.snapshot_every;
        cfg.proposal_queue = self.opts.proposal_queue;
        cfg.max_pending = self.opts.max_pending;
        cfg.request_timeout = self.opts.request_timeout;
        cfg.peers = self
            .members
            .iter()
            .filter(|(p, _)| **p != id)
            .map(|(p, m)| (*p, m.addr.clone()))
            .collect();
        cfg
    }

    async fn launch(&mut self, id: NodeId, transport: F::T) {
        let cfg = self.config(id);
        let m = self.members.get_mut(&id).unwrap();
        let handle = RaftNode::start(cfg, transport, m.store.clone(), m.sm.clone())
            .await
            .expect("node starts");
        m.handle = Some(handle);
    }

    /// Starts a node that is not a member yet, with an empty
    /// configuration: it learns the membership from the leader's log once
    /// the leader adds it.
    pub async fn add_joining(&mut self, id: NodeId) -> String {
        let (t, addr) = self.factory.create(id).await;
        self.members.insert(
            id,
            Member {
                handle: None,
                store: MemStore::new(),
                sm: Recorder::default(),
                addr: addr.clone(),
                bootstrap: Vec::new(),
                learners: Vec::new(),
            },
        );
        self.launch(id, t).await;
        addr
    }

    /// Stops a node; its store is kept.
    pub async fn stop(&mut self, id: NodeId) {
        if let Some(h) = self.members.get_mut(&id).unwrap().handle.take() {
            h.shutdown().await;
        }
    }

    /// Restarts a stopped node from its store, with a fresh state machine
    /// (as a restarted process would have) and a new transport.
    pub async fn restart(&mut self, id: NodeId) {
        self.stop(id).await;
        let (t, addr) = self.factory.create(id).await;
        let m = self.members.get_mut(&id).unwrap();
        m.sm = Recorder::default();
        m.addr = addr;
        self.launch(id, t).await;
    }

    pub fn h(&self, id: NodeId) -> &RaftHandle {
        self.members[&id].handle.as_ref().expect("node is running")
    }

    pub fn sm(&self, id: NodeId) -> &Recorder {
        &self.members[&id].sm
    }

    pub fn store(&self, id: NodeId) -> &MemStore {
        &self.members[&id].store
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    /// Statuses of the running nodes.
    pub fn statuses(&self) -> Vec<NodeStatus> {
        self.members
            .values()
            .filter_map(|m| m.handle.as_ref())
            .filter(|h| h.is_running())
            .map(RaftHandle::status)
            .collect()
    }

    /// Polls `f` once per tick until it returns `Some`, for at most
    /// `within`.
    pub async fn wait_for<R>(
        &self,
        within: Duration,
        what: &str,
        mut f: impl FnMut(&Self) -> Option<R>,
    ) -> R {
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

    /// Waits until the nodes in `among` agree on one leader (among them) in
    /// one term, and returns it.
    pub async fn wait_leader_among(&self, among: &[NodeId], within: Duration) -> NodeId {
        self.wait_for(within, "a leader", |c| {
            let sts: Vec<NodeStatus> = among
                .iter()
                .filter_map(|id| c.members[id].handle.as_ref().map(RaftHandle::status))
                .collect();
            let leaders: Vec<&NodeStatus> = sts.iter().filter(|s| s.role == Role::Leader).collect();
            if leaders.len() != 1 {
                return None;
            }
            let l = leaders[0];
            let agree = sts
                .iter()
                .filter(|s| s.membership.is_voter(s.id))
                .all(|s| s.term == l.term && s.leader == Some(l.id));
            agree.then_some(l.id)
        })
        .await
    }

    /// Waits until every running node agrees on one leader.
    pub async fn wait_leader(&self, within: Duration) -> NodeId {
        let running: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| m.handle.as_ref().is_some_and(RaftHandle::is_running))
            .map(|(id, _)| *id)
            .collect();
        self.wait_leader_among(&running, within).await
    }

    /// Waits until node `id` has applied `index`.
    pub async fn wait_applied(&self, id: NodeId, index: LogIndex, within: Duration) {
        self.wait_for(within, &format!("node {id} to apply {index}"), |c| {
            (c.h(id).status().applied_index >= index).then_some(())
        })
        .await
    }

    /// Waits until every running node has applied `index`.
    pub async fn wait_all_applied(&self, index: LogIndex, within: Duration) {
        for id in self.ids() {
            if self.members[&id].handle.is_some() {
                self.wait_applied(id, index, within).await;
            }
        }
    }

    /// Proposes on whichever node leads, retrying while there is none.
    pub async fn write(&self, data: impl Into<Bytes>, within: Duration) -> Committed {
        let data = data.into();
        let deadline = Instant::now() + within;
        loop {
            let leader = self
                .statuses()
                .into_iter()
                .find(|s| s.role == Role::Leader)
                .map(|s| s.id);
            if let Some(l) = leader {
                match self.h(l).propose(data.clone()).await {
                    Ok(c) => return c,
                    Err(Error::NotLeader { .. }) | Err(Error::Unavailable(_)) => {}
                    Err(e) => panic!("write on leader {l} failed: {e}"),
                }
            }
            assert!(
                Instant::now() < deadline,
                "no write committed within {within:?}"
            );
            tokio::time::sleep(self.opts.tick).await;
        }
    }

    /// Stops every node.
    pub async fn shutdown(&mut self) {
        for id in self.ids() {
            self.stop(id).await;
        }
    }
}

/// Binds a socket-backed transport on `addr` again after a restart,
/// retrying (bounded, real time) while the previous incarnation's socket is
/// still being released.
pub async fn rebind<T, E: std::fmt::Display, Fut>(what: &str, mut bind: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match bind().await {
            Ok(t) => return t,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "cannot bind {what} again: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Bound for anything that needs an election or two over real sockets on a
/// loaded machine.
pub fn real_time_bound(o: &Opts) -> Duration {
    o.election_timeout() * 30
}

/// Three nodes agree on exactly one leader in one term.
pub async fn check_elects_one_leader<F: TransportFactory>(c: &Cluster<F>) -> NodeId {
    let leader = c.wait_leader(real_time_bound(&c.opts)).await;
    let sts = c.statuses();
    assert_eq!(sts.len(), c.members.len(), "a node stopped");
    assert_eq!(sts.iter().filter(|s| s.role == Role::Leader).count(), 1);
    let term = sts[0].term;
    assert!(term >= 1);
    assert!(sts
        .iter()
        .all(|s| s.term == term && s.leader == Some(leader)));
    leader
}

/// Sequential writes on the leader apply in order, and the same sequence
/// applies on every node.
pub async fn check_writes_apply_in_order<F: TransportFactory>(c: &Cluster<F>) {
    let within = real_time_bound(&c.opts);
    let leader = c.wait_leader(within).await;
    let h = c.h(leader).clone();
    let mut last = 0;
    for i in 0..20u32 {
        let r = h.propose(format!("seq-{i}")).await.unwrap();
        assert!(r.index > last, "index {} after {last}", r.index);
        last = r.index;
    }
    // Concurrent writes too, so replication carries batches.
    let tasks: Vec<_> = (0..50u32)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.propose(format!("par-{i}")).await })
        })
        .collect();
    for t in tasks {
        last = last.max(t.await.unwrap().unwrap().index);
    }
    c.wait_all_applied(last, within).await;
    let reference = c.sm(leader).data();
    assert_eq!(reference.len(), 70);
    let expect: Vec<Bytes> = (0..20).map(|i| Bytes::from(format!("seq-{i}"))).collect();
    assert_eq!(
        reference[..20],
        expect[..],
        "sequential writes applied out of order"
    );
    for id in c.ids() {
        assert_eq!(
            c.sm(id).applied(),
            c.sm(leader).applied(),
            "node {id} applied a different sequence"
        );
    }
}

/// A follower stopped (node and transport) misses writes, is restarted on
/// the same address from its store, and catches up to the same sequence.
pub async fn check_restarted_follower_catches_up<F: TransportFactory>(c: &mut Cluster<F>) {
    let within = real_time_bound(&c.opts);
    let leader = c.wait_leader(within).await;
    for i in 0..5 {
        c.write(format!("a{i}"), within).await;
    }
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let w = c.write("a-last", within).await;
    c.wait_applied(follower, w.index, within).await;
    let addr = c.members[&follower].addr.clone();
    c.stop(follower).await;
    let kept = c.store(follower).last_index();
    assert!(kept >= w.index);
    // The other two still form a quorum.
    let mut last = w.index;
    for i in 0..20 {
        last = c.write(format!("b{i}"), within).await.index;
    }
    c.restart(follower).await;
    assert_eq!(
        c.members[&follower].addr, addr,
        "restarted on another address"
    );
    let st = c.h(follower).status();
    assert!(
        st.last_log_index >= kept,
        "restarted with {} of {kept} entries",
        st.last_log_index
    );
    c.wait_applied(follower, last, within).await;
    // And it takes part in new writes.
    let w = c.write("after-restart", within).await;
    c.wait_all_applied(w.index, within).await;
    for id in c.ids() {
        assert_eq!(
            c.sm(id).applied(),
            c.sm(leader).applied(),
            "node {id} applied a different sequence"
        );
    }
    assert!(c.sm(follower).contains(b"b19"));
}

/// Stops every running node at once: a network transport's shutdown may
/// wait (bounded) on peers that are already gone, and one node at a time
/// would add those waits up.
pub async fn shutdown_concurrently<F: TransportFactory>(c: &mut Cluster<F>) {
    let tasks: Vec<_> = c
        .members
        .values_mut()
        .filter_map(|m| m.handle.take())
        .map(|h| tokio::spawn(async move { h.shutdown().await }))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}
