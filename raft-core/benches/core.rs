//! Speed of the protocol core alone: three nodes in one thread, messages
//! handed from node to node in memory (no serialization, no fault
//! injection, no disk), plus membership change latency in the simulator.
//! What it must never do is report a figure for a run that went wrong:
//! every case checks its outcome and panics instead.
//!
//! Commit throughput, 64-byte proposals, in committed entries per second
//! (entries of the clients, counted when the leader commits them) and in
//! heap allocations per committed entry (a counting global allocator wraps
//! the system one):
//!
//! - batched: the leader takes 64 proposals, then every node handles its
//!   `Ready` and every message in flight is delivered; repeat. Replication
//!   is pipelined across rounds, as a busy leader's would be.
//! - unbatched: one proposal, then rounds until the leader has committed
//!   it (one replication round trip per entry).
//!
//! ReadIndex reads per second (reads served / wall seconds): the leader,
//! or a follower (which asks the leader), is asked for 1, 64 or 1024 reads
//! at once; rounds run until every one is served; repeat. Reads asked
//! together share one heartbeat round (default config: no lease). Each
//! read must come back exactly once, through `Ready::read_states`, at an
//! index at or above the leader's commit index when it was asked, after a
//! follower answered a read round, and is served only once its node has
//! applied up to that index.
//!
//! Snapshot transfer in MB/s (10^6 bytes): node 3 is cut off while the
//! leader commits 4096 entries and compacts with a 64 MiB snapshot (8 MiB
//! in quick runs); the clock runs from reconnecting until node 3 has
//! persisted and restored the snapshot from its `Ready`, in chunks of the
//! default `Config::snapshot_chunk_bytes`. The installed data must equal
//! the leader's, and node 3 must then catch up. These runs use a driver
//! that keeps the whole `Ready` contract (snapshot replaces the stored
//! log, reads wait for the state machine).
//!
//! Membership change latency in ticks, on `raft_core::sim::Cluster` with a
//! quiet network (each message delayed 0 or 1 tick), default election and
//! heartbeat ticks, a fixed seed: ticks from proposing a change until the
//! leader commits it, for adding a learner, promoting it to voter, and
//! replacing a voter through a joint configuration (until the entry that
//! leaves it commits); 20 of each, mean and max. Deterministic: the same
//! every run.
//!
//! `cargo bench -p raft-core` prints tables and `BENCH` lines (see the
//! workspace's benchmark format); `RAFT_BENCH_QUICK=1` runs each timed
//! figure for about a second; `cargo test --benches` runs all of it once,
//! briefly, as a smoke test.

use bytes::Bytes;
use raft_core::sim::{Cluster, NetFaults};
use raft_core::{
    Body, ConfChange, ConfChangeStep, Config, Entry, EntryKind, LogIndex, Message, NodeId, Raft,
    ReadState, Role, Snapshot, Term,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const PAYLOAD: [u8; 64] = [0x5a; 64];
/// Applied entries between two snapshots (keeps memory bounded).
const COMPACT_EVERY: u64 = 16_384;

struct Trio {
    nodes: Vec<Raft>,
    wire: Vec<Message>,
    next: Vec<Message>,
    applied: [u64; 3],
    last_compaction: [u64; 3],
}

impl Trio {
    fn new() -> Trio {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let nodes = ids
            .iter()
            .map(|&id| Raft::new(Config::new(id, ids)).expect("valid config"))
            .collect();
        let mut t = Trio {
            nodes,
            wire: Vec::with_capacity(64),
            next: Vec::with_capacity(64),
            applied: [0; 3],
            last_compaction: [0; 3],
        };
        t.nodes[0].campaign();
        for _ in 0..10 {
            t.round();
        }
        assert_eq!(t.nodes[0].role(), Role::Leader, "node 1 leads");
        t
    }

    /// Every node handles one `Ready` (persisting is free here), then every
    /// message in flight is delivered. Returns whether anything happened.
    fn round(&mut self) -> bool {
        let mut busy = false;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if !node.has_ready() {
                continue;
            }
            busy = true;
            let mut rd = node.ready();
            self.wire.append(&mut rd.messages);
            // (The entries and hard state would be written here.)
            self.wire.append(&mut rd.persisted_messages);
            for e in &rd.committed_entries {
                if e.kind == EntryKind::Normal {
                    self.applied[i] += 1;
                }
            }
            node.advance();
            let applied = node.applied_index();
            if applied >= self.last_compaction[i] + COMPACT_EVERY {
                node.compact(applied, Bytes::new())
                    .expect("compacting at the applied index");
                self.last_compaction[i] = applied;
            }
        }
        std::mem::swap(&mut self.wire, &mut self.next);
        for m in self.next.drain(..) {
            busy = true;
            let to = (m.to.0 - 1) as usize;
            self.nodes[to].step(m).expect("addressed to a member");
        }
        busy
    }

    fn commit(&self) -> u64 {
        self.nodes[0].commit_index()
    }
}

struct Figure {
    entries: u64,
    secs: f64,
    allocs: usize,
}

impl Figure {
    fn per_sec(&self) -> f64 {
        self.entries as f64 / self.secs
    }
    fn allocs_per_entry(&self) -> f64 {
        self.allocs as f64 / self.entries as f64
    }
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn now() -> Instant {
    Instant::now()
}

fn batched(run_for: Duration) -> Figure {
    let mut t = Trio::new();
    let payload = Bytes::from_static(&PAYLOAD);
    let start_commit = t.commit();
    let region = Region::new(GLOBAL);
    let began = now();
    let mut rounds = 0u64;
    loop {
        for _ in 0..64 {
            t.nodes[0]
                .propose(payload.clone())
                .expect("node 1 stays leader");
        }
        t.round();
        rounds += 1;
        if rounds % 256 == 0 && began.elapsed() >= run_for {
            break;
        }
    }
    // Drain what is in flight so every proposal counted is committed.
    while t.round() {}
    let secs = began.elapsed().as_secs_f64();
    let allocs = region.change().allocations;
    let entries = t.commit() - start_commit;
    assert_eq!(entries, rounds * 64, "every proposal committed");
    assert!(t.applied.iter().all(|a| *a == t.applied[0]), "all applied");
    Figure {
        entries,
        secs,
        allocs,
    }
}

fn unbatched(run_for: Duration) -> Figure {
    let mut t = Trio::new();
    let payload = Bytes::from_static(&PAYLOAD);
    let start_commit = t.commit();
    let region = Region::new(GLOBAL);
    let began = now();
    let mut proposals = 0u64;
    loop {
        let (_, index) = t.nodes[0]
            .propose(payload.clone())
            .expect("node 1 stays leader");
        while t.commit() < index {
            assert!(t.round(), "the proposal is stuck");
        }
        proposals += 1;
        if proposals % 1024 == 0 && began.elapsed() >= run_for {
            break;
        }
    }
    while t.round() {}
    let secs = began.elapsed().as_secs_f64();
    let allocs = region.change().allocations;
    let entries = t.commit() - start_commit;
    assert_eq!(entries, proposals, "every proposal committed");
    Figure {
        entries,
        secs,
        allocs,
    }
}

// ----------------------------------------------------------------------
// A driver that keeps the whole `Ready` contract, for the read and
// snapshot figures: a minimal disk (entry positions and the snapshot), a
// state machine (what it was restored from and how far it has applied),
// reads served only once applied up to their index, links that can be cut.
// ----------------------------------------------------------------------

/// One node's disk and state machine, as its driver keeps them.
#[derive(Default)]
struct Host {
    /// (index, term) of the stored entries after the stored snapshot,
    /// contiguous.
    log: Vec<(LogIndex, Term)>,
    /// The stored snapshot.
    snapshot: Option<Snapshot>,
    /// The snapshot data the state machine was last restored from.
    restored: Bytes,
    /// The state machine's applied index.
    applied: LogIndex,
    /// Reads whose index is known, waiting for the state machine.
    waiting: Vec<ReadState>,
    /// Reads served to their callers, for the bench to check and count.
    served: Vec<ReadState>,
    /// Reads the core gave up on.
    failed: Vec<u64>,
    /// Snapshots restored from a `Ready`.
    installs: u64,
}

impl Host {
    /// Step 2 for a snapshot: it replaces the stored log up to its index;
    /// what follows survives only if the log extends the snapshot.
    fn persist_snapshot(&mut self, s: &Snapshot) {
        let extends = self
            .log
            .iter()
            .any(|&(i, t)| i == s.meta.index && t == s.meta.term);
        if extends {
            self.log.retain(|&(i, _)| i > s.meta.index);
        } else {
            self.log.clear();
        }
        self.snapshot = Some(s.clone());
    }

    /// Step 2 for entries: a conflicting stored suffix goes first.
    fn persist_entries(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        if let Some(&(start, _)) = self.log.first() {
            let keep = first.index.saturating_sub(start) as usize;
            self.log.truncate(keep);
        }
        self.log.extend(entries.iter().map(|e| (e.index, e.term)));
    }
}

struct Driver {
    nodes: Vec<Raft>,
    hosts: Vec<Host>,
    wire: Vec<Message>,
    next: Vec<Message>,
    /// A node (by position) whose links are cut both ways.
    cut: Option<usize>,
    /// Read-round heartbeats the leader's followers answered (delivered
    /// `HeartbeatResponse`s carrying a round number).
    read_acks: u64,
    /// Heartbeats delivered to followers.
    heartbeats: u64,
    /// `InstallSnapshot` chunks delivered.
    chunks: u64,
}

impl Driver {
    /// Three nodes, node 1 elected, everything applied.
    fn new() -> Driver {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let nodes: Vec<Raft> = ids
            .iter()
            .map(|&id| Raft::new(Config::new(id, ids)).expect("valid config"))
            .collect();
        let hosts = nodes
            .iter()
            .map(|n| Host {
                applied: n.applied_index(),
                ..Host::default()
            })
            .collect();
        let mut d = Driver {
            nodes,
            hosts,
            wire: Vec::with_capacity(64),
            next: Vec::with_capacity(64),
            cut: None,
            read_acks: 0,
            heartbeats: 0,
            chunks: 0,
        };
        d.nodes[0].campaign();
        d.settle();
        assert_eq!(d.nodes[0].role(), Role::Leader, "node 1 leads");
        d
    }

    /// Rounds until nothing moves.
    fn settle(&mut self) {
        let mut rounds = 0;
        while self.round() {
            rounds += 1;
            assert!(rounds < 1_000_000, "the cluster does not quiesce");
        }
    }

    /// Every node handles one `Ready` in the contract's order, then every
    /// message in flight is delivered (or lost to a cut link, which the
    /// sender's core is told of, as a transport that knows would).
    /// Returns whether anything happened.
    fn round(&mut self) -> bool {
        let mut busy = false;
        for (node, host) in self.nodes.iter_mut().zip(self.hosts.iter_mut()) {
            if !node.has_ready() {
                continue;
            }
            busy = true;
            let mut rd = node.ready();
            // 1. May leave at once.
            self.wire.append(&mut rd.messages);
            // 2. Persist (the hard state would be written here too).
            if let Some(s) = &rd.snapshot {
                host.persist_snapshot(s);
            }
            host.persist_entries(&rd.entries);
            // 3. Durable now.
            self.wire.append(&mut rd.persisted_messages);
            // 4. Restore, then apply in order.
            if let Some(s) = rd.snapshot.take() {
                host.restored = s.data;
                host.applied = s.meta.index;
                host.installs += 1;
            }
            for e in &rd.committed_entries {
                assert_eq!(e.index, host.applied + 1, "committed entries in order");
                host.applied = e.index;
            }
            // 5. Serve the reads the state machine has caught up with.
            host.waiting.append(&mut rd.read_states);
            let applied = host.applied;
            let served = &mut host.served;
            host.waiting.retain(|r| {
                if r.index <= applied {
                    served.push(*r);
                    false
                } else {
                    true
                }
            });
            host.failed.append(&mut rd.failed_reads);
            // 6.
            node.advance();
        }
        std::mem::swap(&mut self.wire, &mut self.next);
        for m in self.next.drain(..) {
            busy = true;
            let from = (m.from.0 - 1) as usize;
            let to = (m.to.0 - 1) as usize;
            if self.cut == Some(from) || self.cut == Some(to) {
                self.nodes[from].report_unreachable(m.to);
                continue;
            }
            match &m.body {
                Body::HeartbeatResponse { ctx } if *ctx > 0 => self.read_acks += 1,
                Body::Heartbeat { .. } => self.heartbeats += 1,
                Body::InstallSnapshot { .. } => self.chunks += 1,
                _ => {}
            }
            self.nodes[to].step(m).expect("addressed to a member");
        }
        busy
    }

    /// One tick of every node.
    fn tick(&mut self) {
        for n in &mut self.nodes {
            n.tick();
        }
    }
}

// ----------------------------------------------------------------------
// Reads through ReadIndex
// ----------------------------------------------------------------------

struct ReadFigure {
    reads: u64,
    batches: u64,
    secs: f64,
    heartbeats: u64,
}

impl ReadFigure {
    fn per_sec(&self) -> f64 {
        self.reads as f64 / self.secs
    }
    /// Heartbeat rounds per batch of reads (2 followers per round).
    fn rounds_per_batch(&self) -> f64 {
        self.heartbeats as f64 / 2.0 / self.batches as f64
    }
}

/// Node `at` (0 = the leader) asks for `per_round` reads at once, then the
/// cluster runs until every one is served; repeat. No writes meanwhile,
/// and no ticks: every heartbeat is one a read asked for.
fn reads(at: usize, per_round: u64, run_for: Duration) -> ReadFigure {
    let mut d = Driver::new();
    let mut seen = vec![false; per_round as usize];
    let check_every = (1024 / per_round).max(1);
    let mut ctx = 0u64;
    let mut batches = 0u64;
    let heartbeats_before = d.heartbeats;
    let began = now();
    loop {
        let base = ctx + 1;
        let commit_at_ask = d.nodes[0].commit_index();
        let acks_at_ask = d.read_acks;
        for _ in 0..per_round {
            ctx += 1;
            d.nodes[at].read_index(ctx);
        }
        seen.fill(false);
        let mut got = 0;
        while got < per_round {
            assert!(d.round(), "reads stuck: {got} of {per_round} served");
            assert!(
                d.hosts[at].failed.is_empty(),
                "reads failed: {:?}",
                d.hosts[at].failed
            );
            for r in d.hosts[at].served.drain(..) {
                let k = r
                    .ctx
                    .checked_sub(base)
                    .filter(|k| *k < per_round)
                    .unwrap_or_else(|| panic!("read {} served but not asked now", r.ctx));
                assert!(!seen[k as usize], "read {} served twice", r.ctx);
                seen[k as usize] = true;
                assert!(
                    r.index >= commit_at_ask,
                    "read {} at index {} below the commit index {commit_at_ask} when asked",
                    r.ctx,
                    r.index
                );
                assert!(
                    r.index <= d.nodes[0].commit_index(),
                    "read index beyond the commit index"
                );
                assert!(
                    d.read_acks > acks_at_ask,
                    "read {} served before any follower confirmed the leader",
                    r.ctx
                );
                got += 1;
            }
        }
        batches += 1;
        if batches % check_every == 0 && began.elapsed() >= run_for {
            break;
        }
    }
    let secs = began.elapsed().as_secs_f64();
    d.settle();
    assert!(d.hosts[at].served.is_empty(), "a read was served again");
    assert!(d.hosts[at].failed.is_empty(), "a read failed late");
    ReadFigure {
        reads: batches * per_round,
        batches,
        secs,
        heartbeats: d.heartbeats - heartbeats_before,
    }
}

// ----------------------------------------------------------------------
// Snapshot transfer
// ----------------------------------------------------------------------

/// Entries committed while node 3 is cut off: well past the compaction
/// lag, so the leader no longer holds what node 3 lacks.
const BEHIND_BY: u64 = 4096;

/// Snapshot data that a misplaced or repeated chunk would change.
fn snapshot_data(len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for w in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
    }
    Bytes::from(v)
}

struct SnapFigure {
    bytes: u64,
    secs: f64,
    transfers: u64,
    chunks: u64,
    chunk_bytes: u64,
}

impl SnapFigure {
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs
    }
}

/// One transfer: node 3 is cut off while the leader commits and compacts
/// with `data` as its snapshot, then reconnected. Returns the seconds from
/// reconnecting to node 3 having restored the snapshot, and the chunks
/// delivered.
fn snapshot_transfer(data: &Bytes) -> (f64, u64) {
    let mut d = Driver::new();
    d.cut = Some(2);
    let payload = Bytes::from_static(&PAYLOAD);
    let target = d.nodes[0].commit_index() + BEHIND_BY;
    while d.nodes[0].commit_index() < target {
        for _ in 0..64 {
            d.nodes[0].propose(payload.clone()).expect("node 1 leads");
        }
        d.round();
    }
    d.settle();
    let applied = d.nodes[0].applied_index();
    let meta = d.nodes[0]
        .compact(applied, data.clone())
        .expect("compacting at the applied index");
    d.hosts[0].snapshot = Some(Snapshot {
        meta: meta.clone(),
        data: data.clone(),
    });
    assert!(
        d.nodes[0].snapshot_index() > d.nodes[2].last_index(),
        "node 3 could still catch up from the log"
    );

    d.cut = None;
    let chunks_before = d.chunks;
    let began = now();
    let mut idle = 0;
    while d.hosts[2].installs == 0 {
        if !d.round() {
            // Nothing in flight: time passes (a heartbeat brings node 3
            // back to the leader's attention).
            d.tick();
            idle += 1;
            assert!(idle < 1000, "node 3 never gets the snapshot");
        }
    }
    let secs = began.elapsed().as_secs_f64();
    let chunks = d.chunks - chunks_before;

    let h = &d.hosts[2];
    let s = h.snapshot.as_ref().expect("persisted before restoring");
    assert_eq!(s.meta, meta, "installed snapshot's description");
    assert!(s.data == *data, "installed snapshot's data differs");
    assert!(h.restored == *data, "restored from different data");
    assert_eq!(h.applied, meta.index);
    // And node 3 is a full member again.
    let mut rounds = 0;
    while d.hosts[2].applied < d.nodes[0].commit_index() || d.round() {
        if !d.round() {
            d.tick();
        }
        rounds += 1;
        assert!(
            rounds < 100_000,
            "node 3 does not catch up after the snapshot"
        );
    }
    assert_eq!(d.hosts[2].installs, 1, "one snapshot installed");
    (secs, chunks)
}

fn snapshots(len: usize, budget: Duration, min_transfers: u64) -> SnapFigure {
    let data = snapshot_data(len);
    let began = now();
    let mut f = SnapFigure {
        bytes: 0,
        secs: 0.0,
        transfers: 0,
        chunks: 0,
        chunk_bytes: Config::new(NodeId(1), [NodeId(1)]).snapshot_chunk_bytes,
    };
    while f.transfers < min_transfers || began.elapsed() < budget {
        let (secs, chunks) = snapshot_transfer(&data);
        f.bytes += len as u64;
        f.secs += secs;
        f.transfers += 1;
        f.chunks += chunks;
    }
    f
}

// ----------------------------------------------------------------------
// Membership change latency, in the simulator
// ----------------------------------------------------------------------

/// The simulator's per-message delay: each message arrives in the tick it
/// is sent or the next, with even odds.
const SIM_MAX_DELAY: u64 = 1;
const SIM_SEED: u64 = 42;

#[derive(Default)]
struct Latency {
    ticks: Vec<u64>,
}

impl Latency {
    fn mean(&self) -> f64 {
        self.ticks.iter().sum::<u64>() as f64 / self.ticks.len() as f64
    }
    fn max(&self) -> u64 {
        self.ticks.iter().copied().max().unwrap_or(0)
    }
    fn min(&self) -> u64 {
        self.ticks.iter().copied().min().unwrap_or(0)
    }
}

struct MembershipFigure {
    learner: Latency,
    promote: Latency,
    replace: Latency,
    election_ticks: u32,
    heartbeat_ticks: u32,
}

fn sim_leader(c: &Cluster) -> u64 {
    c.leader().expect("a leader on a quiet network").0
}

/// Ticks until a leader holds a settled configuration (not joint, its whole
/// log committed) and every running member has applied all of it.
fn sim_settle(c: &mut Cluster) -> u64 {
    for _ in 0..1000 {
        c.run_tick(0.0);
        let Some(l) = c.leader() else { continue };
        let r = c.node(l.0);
        if r.membership().is_joint() || r.commit_index() < r.last_index() {
            continue;
        }
        let last = r.last_index();
        let members = r.membership().members();
        if members
            .iter()
            .all(|m| c.try_node(m.0).is_some_and(|n| n.applied_index() >= last))
        {
            return l.0;
        }
    }
    panic!("no settled configuration within 1000 ticks");
}

/// Ticks from now until the leader has committed `index`.
fn sim_ticks_to_commit(c: &mut Cluster, index: LogIndex) -> u64 {
    let t0 = c.now();
    while c.node(sim_leader(c)).commit_index() < index {
        c.run_tick(0.0);
        assert!(c.now() - t0 < 1000, "change at {index} not committed");
    }
    c.now() - t0
}

/// On a three-voter cluster, `changes` times: (a) add a learner, (b)
/// promote it (3 -> 4 voters), remove an original voter (4 -> 3, not
/// measured), add a second learner (not measured), (c) replace another
/// voter by that learner through a joint configuration, measured until
/// the entry that leaves the joint configuration commits. The cluster
/// settles (everyone applied everything) before every change, and removed
/// nodes are stopped.
fn membership(changes: usize) -> MembershipFigure {
    let mut c = Cluster::builder(3)
        .seed(SIM_SEED)
        .net_faults(NetFaults {
            max_delay: SIM_MAX_DELAY,
            ..NetFaults::default()
        })
        .build();
    let mut l = sim_settle(&mut c);
    let mut f = MembershipFigure {
        learner: Latency::default(),
        promote: Latency::default(),
        replace: Latency::default(),
        election_ticks: Config::new(NodeId(1), [NodeId(1)]).election_ticks,
        heartbeat_ticks: Config::new(NodeId(1), [NodeId(1)]).heartbeat_ticks,
    };
    let mut next_id = 4;
    let other_voter = |c: &Cluster, l: u64| -> u64 {
        c.node(l)
            .membership()
            .voters
            .iter()
            .map(|v| v.0)
            .find(|v| *v != l)
            .expect("another voter")
    };
    for _ in 0..changes {
        // (a) A learner joins.
        let n = next_id;
        next_id += 1;
        let (_, i) = c.add_learner(l, n).expect("leader accepts a learner");
        f.learner.ticks.push(sim_ticks_to_commit(&mut c, i));
        l = sim_settle(&mut c);
        assert!(c.node(l).membership().is_learner(NodeId(n)));

        // (b) It becomes a voter.
        let (_, i) = c.add_voter(l, n).expect("leader accepts a promotion");
        f.promote.ticks.push(sim_ticks_to_commit(&mut c, i));
        l = sim_settle(&mut c);
        assert!(c.node(l).membership().is_voter(NodeId(n)));
        assert_eq!(c.node(l).membership().voters.len(), 4);

        // Back to three voters.
        let gone = other_voter(&c, l);
        c.remove_node(l, gone).expect("leader accepts a removal");
        l = sim_settle(&mut c);
        c.crash(gone);
        let m = next_id;
        next_id += 1;
        c.add_learner(l, m).expect("leader accepts a learner");
        l = sim_settle(&mut c);

        // (c) Replace a voter by the learner: joint, then out of it.
        let gone = other_voter(&c, l);
        let (_, joint) = c
            .propose_conf_change(
                l,
                ConfChange {
                    steps: vec![
                        ConfChangeStep::AddVoter(NodeId(m)),
                        ConfChangeStep::Remove(NodeId(gone)),
                    ],
                    context: Bytes::new(),
                },
            )
            .expect("leader accepts a replacement");
        assert!(
            c.node(l).membership().is_joint(),
            "a replacement goes joint"
        );
        let t0 = c.now();
        loop {
            c.run_tick(0.0);
            assert!(c.now() - t0 < 1000, "the joint configuration is not left");
            let r = c.node(sim_leader(&c));
            if r.membership().is_joint() {
                continue;
            }
            let leave = r
                .entries()
                .find(|e| e.index > joint && e.kind == EntryKind::ConfChange)
                .expect("the entry that left the joint configuration")
                .index;
            if r.commit_index() >= leave {
                break;
            }
        }
        let ticks = c.now() - t0;
        f.replace.ticks.push(ticks);
        l = sim_settle(&mut c);
        let ms = c.node(l).membership();
        assert!(!ms.is_joint());
        assert!(ms.is_voter(NodeId(m)) && !ms.contains(NodeId(gone)));
        assert_eq!(ms.voters.len(), 3);
        c.crash(gone);
    }
    assert_eq!(c.violation(), None);
    f
}

fn main() {
    let quick = std::env::var_os("RAFT_BENCH_QUICK").is_some();
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // (or `--test` when asked): then this is a smoke run.
    let smoke =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    let run_for = if smoke {
        Duration::from_millis(50)
    } else if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    // Warm up caches and the allocator.
    let _ = batched(run_for / 5);
    let b = batched(run_for);
    let u = unbatched(run_for);
    println!(
        "raft-core, 3 nodes in one thread, 64-byte proposals{}",
        if quick || smoke {
            " (quick run: rough figures)"
        } else {
            ""
        }
    );
    println!(
        "{:<28} {:>16} {:>12} {:>18}",
        "case", "committed/s", "entries", "allocs/entry"
    );
    for (name, f) in [
        ("batched (64 per round)", &b),
        ("unbatched (1 per round trip)", &u),
    ] {
        println!(
            "{:<28} {:>16.0} {:>12} {:>18.2}",
            name,
            f.per_sec(),
            f.entries,
            f.allocs_per_entry()
        );
    }
    println!(
        "BENCH core.commit.batched64={:.0} entries/s target>=2000000",
        b.per_sec()
    );
    println!(
        "BENCH core.commit.unbatched={:.0} entries/s target>=200000",
        u.per_sec()
    );
    println!(
        "BENCH core.alloc.batched64={:.3} allocs/entry",
        b.allocs_per_entry()
    );
    println!(
        "BENCH core.alloc.unbatched={:.3} allocs/entry",
        u.allocs_per_entry()
    );

    let read_for = run_for * 2 / 5;
    let _ = reads(0, 64, read_for / 5);
    let mut read_figs = Vec::new();
    for (at, who) in [(0, "leader"), (1, "follower")] {
        for per_round in [1, 64, 1024] {
            read_figs.push((who, per_round, reads(at, per_round, read_for)));
        }
    }
    println!();
    println!("ReadIndex reads (heartbeat round per read batch, no lease, no writes)");
    println!(
        "{:<28} {:>16} {:>12} {:>18}",
        "case", "reads/s", "reads", "hb rounds/batch"
    );
    for (who, per_round, f) in &read_figs {
        println!(
            "{:<28} {:>16.0} {:>12} {:>18.2}",
            format!("{who}, {per_round} per round"),
            f.per_sec(),
            f.reads,
            f.rounds_per_batch()
        );
    }
    for (who, per_round, f) in &read_figs {
        println!(
            "BENCH core.read.{who}.c{per_round}={:.0} reads/s",
            f.per_sec()
        );
    }

    let (snap_len, snap_budget, min_transfers) = if smoke {
        (8 << 20, Duration::ZERO, 1)
    } else if quick {
        (8 << 20, Duration::from_secs(1), 1)
    } else {
        (64 << 20, Duration::from_secs(5), 3)
    };
    let s = snapshots(snap_len, snap_budget, min_transfers);
    println!();
    println!("Snapshot transfer to a follower cut off for {BEHIND_BY} entries");
    println!(
        "{:<28} {:>16} {:>12} {:>18}",
        "case", "MB/s", "transfers", "chunks/transfer"
    );
    println!(
        "{:<28} {:>16.0} {:>12} {:>18.1}",
        format!("{} MiB, {} KiB chunks", snap_len >> 20, s.chunk_bytes >> 10),
        s.mb_per_sec(),
        s.transfers,
        s.chunks as f64 / s.transfers as f64
    );
    println!("BENCH core.snapshot.transfer={:.0} MB/s", s.mb_per_sec());

    let m = membership(if smoke { 3 } else { 20 });
    println!();
    println!(
        "Membership change latency, simulator (seed {SIM_SEED}, election {} ticks, \
         heartbeat {} ticks, messages delayed 0..={SIM_MAX_DELAY} ticks)",
        m.election_ticks, m.heartbeat_ticks
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "change", "mean", "min", "max", "changes"
    );
    for (name, l) in [
        ("add learner", &m.learner),
        ("promote learner to voter", &m.promote),
        ("replace voter (joint)", &m.replace),
    ] {
        println!(
            "{:<28} {:>10.2} {:>10} {:>10} {:>10}",
            name,
            l.mean(),
            l.min(),
            l.max(),
            l.ticks.len()
        );
    }
    for (name, l) in [
        ("add_learner", &m.learner),
        ("promote", &m.promote),
        ("replace_joint", &m.replace),
    ] {
        println!("BENCH core.conf.{name}.mean={:.2} ticks", l.mean());
        println!("BENCH core.conf.{name}.max={} ticks", l.max());
    }
}
