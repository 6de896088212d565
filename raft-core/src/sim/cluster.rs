//! A cluster of [`Raft`] nodes driven in virtual time, with simulated disks,
//! a network that can drop, duplicate, delay, reorder and cut, and the
//! invariant [`Checker`] run after every step.
//!
//! Each node's `Ready` is handled exactly as its contract prescribes (send
//! `messages`, persist, send `persisted_messages`, apply, serve reads,
//! `advance`), optionally with the write completing on a later tick (a slow
//! fsync, during which the node keeps receiving messages) and optionally
//! crashing the node between any two of those steps. A crash loses
//! everything not yet written to the node's [`Disk`]; a restart rebuilds the
//! node with [`Raft::restore`] from that disk alone.
//!
//! The cluster never reaches into a node other than through the public
//! `Raft` API, and never uses randomness other than its own seeded
//! generator: a run is a pure function of the seed and the calls made.

use super::checker::{Checker, Violation};
use super::disk::{App, Disk};
use crate::config::Config;
use crate::message::{Body, ConfChange, ConfChangeStep, EntryKind, Message, Snapshot};
use crate::raft::{ProposeError, Raft, TransferError};
use crate::ready::{InitialState, Ready};
use crate::rng::Rng;
use crate::types::{LogIndex, NodeId, Role, Term};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// Where in the handling of a `Ready` a node crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// `messages` sent; nothing persisted.
    AfterSend,
    /// Persisted; `persisted_messages` not sent.
    AfterPersist,
    /// `persisted_messages` sent; committed entries not applied.
    AfterPersistedSend,
    /// Applied; `advance` not called.
    AfterApply,
}

impl CrashPoint {
    /// Every crash point, in the order of the contract.
    pub const ALL: [CrashPoint; 4] = [
        CrashPoint::AfterSend,
        CrashPoint::AfterPersist,
        CrashPoint::AfterPersistedSend,
        CrashPoint::AfterApply,
    ];
}

/// How the simulated network misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NetFaults {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Most ticks a message may be delayed (half of them arrive in the tick
    /// they were sent).
    pub max_delay: u64,
    /// Deliver the messages due in one tick in a random order rather than
    /// in the order they were sent.
    pub reorder: bool,
}

/// How the simulated disks behave.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct IoFaults {
    /// Probability that a `Ready`'s write completes on a later tick (the
    /// node keeps receiving messages meanwhile).
    pub slow_write: f64,
    /// Most ticks a slow write takes.
    pub max_write_ticks: u64,
}

/// A deliberately wrong driver, to show that the checkers catch what such
/// a driver causes. Never use outside tests of the simulator itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverBug {
    /// A correct driver.
    #[default]
    None,
    /// Sends `persisted_messages` before writing (acknowledges entries and
    /// votes that a crash then loses).
    AckBeforePersist,
    /// Never makes the vote durable.
    ForgetVote,
}

/// A one-line summary of a message, kept in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Brief {
    /// Sender.
    pub from: NodeId,
    /// Addressee.
    pub to: NodeId,
    /// The message's term.
    pub term: Term,
    /// The message kind ([`Body::name`]).
    pub kind: &'static str,
    /// The index it names (prev index, acknowledged index, snapshot
    /// index, last log index of a vote request), if any.
    pub index: LogIndex,
    /// Entries carried, or the commit index of a heartbeat.
    pub n: u64,
    /// Success / granted / ok.
    pub ok: bool,
}

impl Brief {
    /// Summarizes `m`.
    pub fn of(m: &Message) -> Brief {
        let (index, n, ok) = match &m.body {
            Body::RequestVote { last_log_index, .. } => (*last_log_index, 0, true),
            Body::RequestVoteResponse { granted, .. } => (0, 0, *granted),
            Body::AppendEntries {
                prev_log_index,
                entries,
                leader_commit,
                ..
            } => (
                *prev_log_index,
                entries.len() as u64 * 1_000_000 + leader_commit,
                true,
            ),
            Body::AppendEntriesResponse { success, index, .. } => (*index, 0, *success),
            Body::Heartbeat { leader_commit, .. } => (0, *leader_commit, true),
            Body::InstallSnapshot { meta, offset, .. } => (meta.index, *offset, true),
            Body::InstallSnapshotResponse {
                index,
                next_offset,
                reject,
            } => (*index, *next_offset, !reject),
            Body::ReadIndexResponse { index, ok, .. } => (*index, 0, *ok),
            _ => (0, 0, true),
        };
        Brief {
            from: m.from,
            to: m.to,
            term: m.term,
            kind: m.body.name(),
            index,
            n,
            ok,
        }
    }
}

impl fmt::Display for Brief {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{} {} t{}", self.from, self.to, self.kind, self.term)?;
        match self.kind {
            "append_entries" => write!(
                f,
                " prev={} entries={} commit={}",
                self.index,
                self.n / 1_000_000,
                self.n % 1_000_000
            ),
            "append_entries_response" => write!(
                f,
                " {} index={}",
                if self.ok { "ok" } else { "reject" },
                self.index
            ),
            "request_vote" | "pre_vote" => write!(f, " last={}", self.index),
            "request_vote_response" | "pre_vote_response" => {
                write!(f, " {}", if self.ok { "granted" } else { "rejected" })
            }
            "heartbeat" => write!(f, " commit={}", self.n),
            "install_snapshot" => write!(f, " index={} offset={}", self.index, self.n),
            "install_snapshot_response" => {
                write!(f, " index={} next={} ok={}", self.index, self.n, self.ok)
            }
            _ => Ok(()),
        }
    }
}

/// What happened, for the event log.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// A message was stepped into its addressee.
    Deliver(Brief),
    /// A message was lost: `"drop"` (fault), `"cut"` (partition) or
    /// `"down"` (addressee crashed).
    Lost(Brief, &'static str),
    /// A message was duplicated.
    Duplicated(Brief),
    /// The node ticked.
    Tick,
    /// The node's role, leader or term changed.
    Role {
        /// New role.
        role: Role,
        /// New term.
        term: Term,
        /// Known leader.
        leader: Option<NodeId>,
    },
    /// A `Ready` was written to disk.
    Persisted {
        /// Last stored index.
        last_index: LogIndex,
        /// Stored term.
        term: Term,
        /// Stored commit.
        commit: LogIndex,
    },
    /// A write was left in flight (completes later).
    SlowWrite,
    /// Entries were applied up to `index`.
    Applied(LogIndex),
    /// A proposal was accepted.
    Proposed {
        /// Its term.
        term: Term,
        /// Its index.
        index: LogIndex,
    },
    /// The node crashed (at a point of a `Ready`, or while idle).
    Crash(Option<CrashPoint>),
    /// The node restarted from its disk.
    Restart,
    /// The node compacted its log behind a snapshot at this index.
    Compacted(LogIndex),
    /// The network changed shape.
    Network(&'static str),
    /// The node's configuration changed (appended, truncated, or from a
    /// snapshot). Bit `i` of each mask is node `i`; ids from 128 on are
    /// not shown.
    Config {
        /// Voters (the incoming half of a joint configuration).
        voters: u128,
        /// The outgoing half of a joint configuration.
        outgoing: u128,
        /// Learners.
        learners: u128,
    },
    /// A read index was asked for (ctx) or served.
    Read {
        /// The read's tag.
        ctx: u64,
        /// The read index (0 when asked).
        index: LogIndex,
    },
}

/// One entry of the event log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// The tick it happened in.
    pub tick: u64,
    /// The node concerned (0 for network-wide events).
    pub node: NodeId,
    /// What happened.
    pub kind: EventKind,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[t{:>5}] ", self.tick)?;
        match &self.kind {
            EventKind::Deliver(b) => write!(f, "deliver {b}"),
            EventKind::Lost(b, why) => write!(f, "lost ({why}) {b}"),
            EventKind::Duplicated(b) => write!(f, "duplicated {b}"),
            EventKind::Tick => write!(f, "node {} tick", self.node),
            EventKind::Role { role, term, leader } => write!(
                f,
                "node {} is {role} at term {term}, leader {}",
                self.node,
                leader.map_or("none".to_string(), |l| l.to_string())
            ),
            EventKind::Persisted {
                last_index,
                term,
                commit,
            } => write!(
                f,
                "node {} persisted: last index {last_index}, term {term}, commit {commit}",
                self.node
            ),
            EventKind::SlowWrite => write!(f, "node {} write in flight", self.node),
            EventKind::Applied(i) => write!(f, "node {} applied up to {i}", self.node),
            EventKind::Proposed { term, index } => {
                write!(
                    f,
                    "node {} accepted a proposal at ({term}, {index})",
                    self.node
                )
            }
            EventKind::Crash(p) => match p {
                Some(p) => write!(f, "node {} CRASH during Ready ({p:?})", self.node),
                None => write!(f, "node {} CRASH", self.node),
            },
            EventKind::Restart => write!(f, "node {} RESTART from disk", self.node),
            EventKind::Compacted(i) => write!(f, "node {} snapshot at {i}", self.node),
            EventKind::Network(what) => write!(f, "network: {what}"),
            EventKind::Read { ctx, index } => {
                write!(f, "node {} read {ctx} at index {index}", self.node)
            }
            EventKind::Config {
                voters,
                outgoing,
                learners,
            } => {
                let ids = |m: u128| -> Vec<u32> { (0..128).filter(|i| m >> i & 1 == 1).collect() };
                write!(
                    f,
                    "node {} configuration: voters {:?}",
                    self.node,
                    ids(*voters)
                )?;
                if *outgoing != 0 {
                    write!(f, " joint with {:?}", ids(*outgoing))?;
                }
                if *learners != 0 {
                    write!(f, ", learners {:?}", ids(*learners))?;
                }
                Ok(())
            }
        }
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages stepped into a node.
    pub delivered: u64,
    /// Messages lost to faults, partitions or crashed addressees.
    pub lost: u64,
    /// Messages duplicated.
    pub duplicated: u64,
    /// Crashes.
    pub crashes: u64,
    /// Restarts.
    pub restarts: u64,
    /// Proposals accepted.
    pub proposals: u64,
    /// Membership changes accepted (counted in `proposals` too).
    pub conf_changes: u64,
    /// Reads served.
    pub reads: u64,
    /// Snapshots taken locally.
    pub compactions: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Snapshot chunks (InstallSnapshot messages) delivered.
    pub snapshot_chunks: u64,
    /// `Ready` batches handled.
    pub readies: u64,
}

#[derive(Debug)]
struct SimNode {
    cfg: Config,
    raft: Option<Raft>,
    disk: Disk,
    app: App,
    /// A `Ready` whose messages are sent and whose write completes at the
    /// given tick.
    io: Option<(u64, Ready)>,
    crash_at: Option<CrashPoint>,
    lives: u64,
    /// The configuration last recorded in the event log, as masks.
    conf: (u128, u128, u128),
}

fn conf_masks(m: &crate::membership::Membership) -> (u128, u128, u128) {
    let mask = |s: &std::collections::BTreeSet<NodeId>| {
        s.iter()
            .filter(|id| id.0 < 128)
            .fold(0u128, |acc, id| acc | 1 << id.0)
    };
    (mask(&m.voters), mask(&m.outgoing), mask(&m.learners))
}

/// Builds a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    ids: Vec<NodeId>,
    template: Config,
    states: BTreeMap<NodeId, InitialState>,
    seed: u64,
    net: NetFaults,
    io: IoFaults,
    bug: DriverBug,
    compaction: Option<(u64, f64)>,
    report_unreachable: bool,
    panic_on_violation: bool,
    trace: bool,
    log_capacity: usize,
}

impl ClusterBuilder {
    /// Nodes 1 to `n`, all voters, with [`Config::new`]'s defaults.
    pub fn new(n: usize) -> ClusterBuilder {
        Self::with_ids(&(1..=n as u64).collect::<Vec<_>>())
    }

    /// The given node ids, all voters.
    pub fn with_ids(ids: &[u64]) -> ClusterBuilder {
        let ids: Vec<NodeId> = ids.iter().map(|i| NodeId(*i)).collect();
        let first = ids.first().copied().unwrap_or(NodeId(1));
        ClusterBuilder {
            template: Config::new(first, ids.iter().copied()),
            ids,
            states: BTreeMap::new(),
            seed: 0,
            net: NetFaults::default(),
            io: IoFaults::default(),
            bug: DriverBug::None,
            compaction: None,
            report_unreachable: false,
            panic_on_violation: true,
            trace: false,
            log_capacity: 256,
        }
    }

    /// Adjusts the configuration every node starts from. Each node's `id`,
    /// `voters` and `seed` are set afterwards (the seed from
    /// [`ClusterBuilder::seed`] and the node id).
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.template);
        self
    }

    /// Starts node `id` from this persisted state instead of an empty disk.
    pub fn state(mut self, id: u64, state: InitialState) -> Self {
        self.states.insert(NodeId(id), state);
        self
    }

    /// The seed of the simulation's own choices (delays, faults) and of the
    /// nodes' election timers.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Network faults.
    pub fn net_faults(mut self, f: NetFaults) -> Self {
        self.net = f;
        self
    }

    /// Disk behaviour.
    pub fn io_faults(mut self, f: IoFaults) -> Self {
        self.io = f;
        self
    }

    /// After a `Ready`, with probability `prob`, a node whose applied index
    /// is at least `threshold` past its snapshot takes a new snapshot and
    /// compacts its log.
    pub fn compaction(mut self, threshold: u64, prob: f64) -> Self {
        self.compaction = Some((threshold.max(1), prob));
        self
    }

    /// Tell a node's core ([`Raft::report_unreachable`]) when a message it
    /// sent was lost to a cut link or a crashed addressee, as a transport
    /// that knows does.
    pub fn report_unreachable(mut self, yes: bool) -> Self {
        self.report_unreachable = yes;
        self
    }

    /// Drive the nodes with a deliberately wrong driver.
    pub fn driver_bug(mut self, bug: DriverBug) -> Self {
        self.bug = bug;
        self
    }

    /// Whether a broken invariant panics (the default, for tests) or is
    /// only recorded (see [`Cluster::violation`]).
    pub fn panic_on_violation(mut self, yes: bool) -> Self {
        self.panic_on_violation = yes;
        self
    }

    /// Keep every event, not only the last `log_capacity`, so the caller
    /// can print the whole run ([`Cluster::recent_events`]). The simulator
    /// itself never prints.
    pub fn trace(mut self, yes: bool) -> Self {
        self.trace = yes;
        self
    }

    /// How many recent events to keep for failure reports.
    pub fn log_capacity(mut self, n: usize) -> Self {
        self.log_capacity = n;
        self
    }

    /// Starts the nodes.
    ///
    /// # Panics
    ///
    /// If the configuration is invalid or a given state is refused by
    /// [`Raft::restore`].
    pub fn build(self) -> Cluster {
        let mut nodes = BTreeMap::new();
        for id in &self.ids {
            let mut cfg = self.template.clone();
            cfg.id = *id;
            cfg.voters = self.ids.clone();
            cfg.seed = mix(self.seed ^ self.template.seed, id.0);
            let state = self.states.get(id).cloned().unwrap_or_default();
            let disk = Disk {
                hard_state: state.hard_state,
                snapshot: None,
                entries: state.entries,
            };
            assert!(
                state.snapshot.is_none(),
                "a starting state with a snapshot needs its data: not supported by the builder"
            );
            nodes.insert(
                *id,
                SimNode {
                    cfg,
                    raft: None,
                    disk,
                    app: App::default(),
                    io: None,
                    crash_at: None,
                    lives: 0,
                    conf: (0, 0, 0),
                },
            );
        }
        let mut c = Cluster {
            checker: Checker::new(self.ids.iter().copied()),
            template: self.template.clone(),
            seed_base: self.seed ^ self.template.seed,
            ids: self.ids,
            nodes,
            queue: BTreeMap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            net: self.net,
            io: self.io,
            bug: self.bug,
            compaction: self.compaction,
            report_unreachable: self.report_unreachable,
            rng: Rng::new(mix(self.seed, 0x5151)),
            now: 0,
            failure: None,
            panic_on_violation: self.panic_on_violation,
            log: VecDeque::with_capacity(self.log_capacity),
            log_capacity: self.log_capacity,
            trace: self.trace,
            stats: Stats::default(),
            fingerprint: 0,
            next_ctx: 1,
            reads_served: BTreeMap::new(),
        };
        for id in c.ids.clone() {
            c.start(id);
        }
        c
    }
}

/// A simulated cluster. See the module docs.
#[derive(Debug)]
pub struct Cluster {
    ids: Vec<NodeId>,
    /// What a node that joins later is configured from.
    template: Config,
    /// Nodes' election-timer seeds derive from this and their id.
    seed_base: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    /// In-flight messages by (due tick, order key, send sequence).
    queue: BTreeMap<(u64, u64, u64), Message>,
    seq: u64,
    /// Directed links that are cut.
    cut: BTreeSet<(NodeId, NodeId)>,
    net: NetFaults,
    io: IoFaults,
    bug: DriverBug,
    compaction: Option<(u64, f64)>,
    report_unreachable: bool,
    rng: Rng,
    now: u64,
    checker: Checker,
    failure: Option<Violation>,
    panic_on_violation: bool,
    log: VecDeque<Event>,
    log_capacity: usize,
    trace: bool,
    stats: Stats,
    fingerprint: u64,
    next_ctx: u64,
    /// Every read served: its tag, the node and the read index.
    reads_served: BTreeMap<u64, (NodeId, LogIndex)>,
}

/// A membership change of these steps and no context.
fn conf_change(steps: Vec<ConfChangeStep>) -> ConfChange {
    ConfChange {
        steps,
        context: Bytes::new(),
    }
}

/// Mixes two words into one (SplitMix64 finalizer): derives seeds.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Cluster {
    /// Nodes 1 to `n` with default configurations, a perfect network and
    /// synchronous disks; panics on the first broken invariant.
    pub fn new(n: usize) -> Cluster {
        ClusterBuilder::new(n).build()
    }

    /// A builder for anything else.
    pub fn builder(n: usize) -> ClusterBuilder {
        ClusterBuilder::new(n)
    }

    // ------------------------------------------------------------------
    // Inspection
    // ------------------------------------------------------------------

    /// The node ids.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// Whether node `id` is running.
    pub fn is_up(&self, id: u64) -> bool {
        self.try_node(id).is_some()
    }

    /// Node `id`'s state machine, if it is running.
    pub fn try_node(&self, id: u64) -> Option<&Raft> {
        self.nodes.get(&NodeId(id)).and_then(|n| n.raft.as_ref())
    }

    /// Node `id`'s state machine.
    ///
    /// # Panics
    ///
    /// If the node is down or unknown.
    pub fn node(&self, id: u64) -> &Raft {
        self.try_node(id)
            .unwrap_or_else(|| panic!("node {id} is down or unknown"))
    }

    /// Node `id`'s disk.
    ///
    /// # Panics
    ///
    /// If the node is unknown.
    pub fn disk(&self, id: u64) -> &Disk {
        &self.sim_node(NodeId(id)).disk
    }

    /// Node `id`'s replicated state machine.
    ///
    /// # Panics
    ///
    /// If the node is unknown.
    pub fn app(&self, id: u64) -> &App {
        &self.sim_node(NodeId(id)).app
    }

    fn sim_node(&self, id: NodeId) -> &SimNode {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("unknown node {id}"))
    }

    /// The running leader of the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|n| n.raft.as_ref())
            .filter(|r| r.role() == Role::Leader)
            .max_by_key(|r| r.term())
            .map(|r| r.id())
    }

    /// Every running node that believes it is leader, with its term.
    pub fn leaders(&self) -> Vec<(NodeId, Term)> {
        self.nodes
            .values()
            .filter_map(|n| n.raft.as_ref())
            .filter(|r| r.role() == Role::Leader)
            .map(|r| (r.id(), r.term()))
            .collect()
    }

    /// The current tick.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The invariant checker and what it has recorded.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// The first broken invariant, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.failure.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// A hash of every event so far: two runs with equal fingerprints took
    /// the same course.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The most recent events, oldest first.
    pub fn recent_events(&self) -> impl Iterator<Item = &Event> {
        self.log.iter()
    }

    /// Messages in flight, in delivery order.
    pub fn in_flight(&self) -> impl Iterator<Item = &Message> {
        self.queue.values()
    }

    /// Whether the link `from -> to` is cut.
    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.cut.contains(&(NodeId(from), NodeId(to)))
    }

    /// Whether node `id` has a write in flight.
    pub fn write_pending(&self, id: u64) -> bool {
        self.sim_node(NodeId(id)).io.is_some()
    }

    // ------------------------------------------------------------------
    // Time and delivery
    // ------------------------------------------------------------------

    /// Ticks node `id` once.
    pub fn tick(&mut self, id: u64) {
        let id = NodeId(id);
        let Some(r) = self.raft_mut(id) else { return };
        r.tick();
        self.record(id, EventKind::Tick);
        self.after_input(id);
    }

    /// Ticks every running node once, in id order.
    pub fn tick_all(&mut self) {
        for id in self.ids.clone() {
            self.tick(id.0);
        }
    }

    /// One tick of the whole simulation: deliver the messages due, finish
    /// the writes due, tick every running node (in a random order when the
    /// network reorders; a node misses its tick with probability
    /// `clock_skip`), then move the clock on.
    pub fn run_tick(&mut self, clock_skip: f64) {
        self.deliver_due(100_000);
        self.complete_due_writes();
        let mut order = self.ids.clone();
        if self.net.reorder {
            for i in (1..order.len()).rev() {
                let j = self.rng.range(0, i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        for id in order {
            if clock_skip > 0.0 && self.rng.chance(clock_skip) {
                continue;
            }
            self.tick(id.0);
        }
        self.now += 1;
    }

    /// Delivers up to `max` messages whose time has come. Returns how many
    /// were taken off the network.
    pub fn deliver_due(&mut self, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(entry) = self.queue.first_entry() else {
                break;
            };
            if entry.key().0 > self.now {
                break;
            }
            let m = entry.remove();
            n += 1;
            self.deliver(m);
        }
        n
    }

    /// Takes the next due message off the network and delivers it (unless
    /// its link is cut or its addressee is down). Returns it, or `None` if
    /// nothing is due.
    pub fn deliver_next(&mut self) -> Option<Message> {
        let entry = self.queue.first_entry()?;
        if entry.key().0 > self.now {
            return None;
        }
        let m = entry.remove();
        self.deliver(m.clone());
        Some(m)
    }

    /// Delivers messages and finishes writes until nothing is left to do
    /// now (the clock does not move). Returns how many messages were taken
    /// off the network.
    ///
    /// # Panics
    ///
    /// If the cluster does not quiesce within a million messages.
    pub fn stabilize(&mut self) -> usize {
        let mut total = 0;
        loop {
            let n = self.deliver_due(1_000_000);
            total += n;
            let wrote = self.complete_writes_now();
            if n == 0 && !wrote {
                return total;
            }
            assert!(total < 1_000_000, "the cluster does not quiesce");
        }
    }

    /// `n` times: tick every node, then [`Cluster::stabilize`].
    pub fn tick_and_settle(&mut self, n: usize) {
        for _ in 0..n {
            self.tick_all();
            self.stabilize();
        }
    }

    /// Removes every message in flight and returns them (to inspect,
    /// reorder or drop them; [`Cluster::send`] puts one back).
    pub fn take_in_flight(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.queue).into_values().collect()
    }

    /// Puts a message on the network (subject to cuts and faults).
    pub fn send(&mut self, m: Message) {
        self.net_send(m);
    }

    /// Steps a message straight into its addressee, bypassing the network.
    pub fn step(&mut self, m: Message) {
        self.deliver_direct(m);
    }

    // ------------------------------------------------------------------
    // Commands
    // ------------------------------------------------------------------

    /// Proposes `data` at node `id`.
    pub fn propose(
        &mut self,
        id: u64,
        data: impl Into<Bytes>,
    ) -> Result<(Term, LogIndex), ProposeError> {
        let nid = NodeId(id);
        let data = data.into();
        let Some(r) = self.raft_mut(nid) else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let res = r.propose(data.clone());
        if let Ok((term, index)) = res {
            self.stats.proposals += 1;
            self.record(nid, EventKind::Proposed { term, index });
            let check = self.checker.on_proposal(term, index, data);
            self.fail_on(check);
        }
        self.after_input(nid);
        res
    }

    /// Proposes the membership change `cc` at node `id`.
    ///
    /// Nodes the change adds must already be hosted (see
    /// [`Cluster::add_node`]); the `add_*` conveniences do that.
    pub fn propose_conf_change(
        &mut self,
        id: u64,
        cc: ConfChange,
    ) -> Result<(Term, LogIndex), ProposeError> {
        let nid = NodeId(id);
        let Some(r) = self.raft_mut(nid) else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let res = r.propose_conf_change(cc);
        if let Ok((term, index)) = res {
            // The checker holds conf changes to their payload like any
            // other proposal.
            let data = r
                .entry(index)
                .filter(|e| e.kind == EntryKind::ConfChange)
                .map(|e| e.data.clone());
            self.stats.proposals += 1;
            self.stats.conf_changes += 1;
            self.record(nid, EventKind::Proposed { term, index });
            match data {
                Some(data) => {
                    let check = self.checker.on_proposal(term, index, data);
                    self.fail_on(check);
                }
                None => self.contract(
                    nid,
                    format!("accepted conf change at index {index} is not in its log"),
                ),
            }
        }
        self.after_input(nid);
        res
    }

    /// Hosts node `to` (if it is not already) and proposes at `id` to add it
    /// as a voter.
    pub fn add_voter(&mut self, id: u64, to: u64) -> Result<(Term, LogIndex), ProposeError> {
        self.add_node(to);
        self.propose_conf_change(id, conf_change(vec![ConfChangeStep::AddVoter(NodeId(to))]))
    }

    /// Hosts node `to` (if it is not already) and proposes at `id` to add it
    /// as a learner (or to demote it, if it is a voter).
    pub fn add_learner(&mut self, id: u64, to: u64) -> Result<(Term, LogIndex), ProposeError> {
        self.add_node(to);
        self.propose_conf_change(
            id,
            conf_change(vec![ConfChangeStep::AddLearner(NodeId(to))]),
        )
    }

    /// Proposes at `id` to remove node `gone` from the cluster. The removed
    /// node keeps running (crash it to stop it).
    pub fn remove_node(&mut self, id: u64, gone: u64) -> Result<(Term, LogIndex), ProposeError> {
        self.propose_conf_change(id, conf_change(vec![ConfChangeStep::Remove(NodeId(gone))]))
    }

    /// Starts hosting node `id` with an empty disk and no configured
    /// voters: it is no member until a leader's log makes it one, and
    /// learns the membership from that log (whose entry 1 is the bootstrap
    /// configuration). No link to or from it is cut. Returns whether the
    /// node is new (false if `id` was already hosted, or is 0).
    pub fn add_node(&mut self, id: u64) -> bool {
        let nid = NodeId(id);
        if nid.is_none() || self.nodes.contains_key(&nid) {
            return false;
        }
        let mut cfg = self.template.clone();
        cfg.id = nid;
        cfg.voters = Vec::new();
        cfg.learners = Vec::new();
        cfg.seed = mix(self.seed_base, id);
        self.nodes.insert(
            nid,
            SimNode {
                cfg,
                raft: None,
                disk: Disk::default(),
                app: App::default(),
                io: None,
                crash_at: None,
                lives: 0,
                conf: (0, 0, 0),
            },
        );
        self.ids.push(nid);
        self.note("node added");
        self.start(nid);
        true
    }

    /// Makes node `id` campaign now (skipping pre-vote).
    pub fn campaign(&mut self, id: u64) {
        let nid = NodeId(id);
        if let Some(r) = self.raft_mut(nid) {
            r.campaign();
            self.after_input(nid);
        }
    }

    /// Node `id` campaigns, the cluster settles, and it must have won.
    ///
    /// # Panics
    ///
    /// If it did not become leader.
    pub fn elect(&mut self, id: u64) {
        // A forced campaign does not override leader stickiness (it must not
        // break a leader's read lease), so take over from a live leader the
        // way an operator would: by a leadership transfer.
        let live_leaders: Vec<NodeId> = self
            .leaders()
            .into_iter()
            .map(|(l, _)| l)
            .filter(|l| l.0 != id)
            .collect();
        for l in live_leaders {
            if self.transfer_leadership(l.0, id).is_ok() {
                self.stabilize();
            }
        }
        if self.try_node(id).map(Raft::role) != Some(Role::Leader) {
            self.campaign(id);
        }
        self.stabilize();
        assert_eq!(
            self.try_node(id).map(Raft::role),
            Some(Role::Leader),
            "node {id} did not win its election"
        );
    }

    /// Asks node `id` for a linearizable read; returns the read's tag.
    pub fn read_index(&mut self, id: u64) -> u64 {
        let nid = NodeId(id);
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        if self.ask_read(nid, ctx) {
            self.after_input(nid);
        }
        ctx
    }

    /// Asks node `id` for `n` linearizable reads at once, as a runtime does
    /// when several clients read between two `Ready`s; returns their tags
    /// (none if the node is down).
    pub fn read_index_batch(&mut self, id: u64, n: usize) -> Vec<u64> {
        let nid = NodeId(id);
        let mut ctxs = Vec::with_capacity(n);
        for _ in 0..n {
            let ctx = self.next_ctx;
            if !self.ask_read(nid, ctx) {
                break;
            }
            self.next_ctx += 1;
            ctxs.push(ctx);
        }
        if !ctxs.is_empty() {
            self.after_input(nid);
        }
        ctxs
    }

    /// Hands read `ctx` to node `id`'s core, if it runs, without driving it.
    fn ask_read(&mut self, nid: NodeId, ctx: u64) -> bool {
        let Some(r) = self.raft_mut(nid) else {
            return false;
        };
        r.read_index(ctx);
        self.checker.on_read_request(ctx);
        self.record(nid, EventKind::Read { ctx, index: 0 });
        true
    }

    /// The node that served read `ctx` and the read index it gave, once
    /// served.
    pub fn read_served(&self, ctx: u64) -> Option<(u64, LogIndex)> {
        self.reads_served.get(&ctx).map(|(n, i)| (n.0, *i))
    }

    /// Asks leader `id` to hand leadership to `to`.
    pub fn transfer_leadership(&mut self, id: u64, to: u64) -> Result<(), TransferError> {
        let nid = NodeId(id);
        let Some(r) = self.raft_mut(nid) else {
            return Err(TransferError::NotLeader { leader: None });
        };
        let res = r.transfer_leadership(NodeId(to));
        self.after_input(nid);
        res
    }

    /// Node `id` snapshots its state machine at its applied index and
    /// compacts its log. Returns whether it did.
    pub fn compact(&mut self, id: u64) -> bool {
        let nid = NodeId(id);
        let done = self.compact_node(nid);
        self.observe(nid);
        done
    }

    // ------------------------------------------------------------------
    // Faults
    // ------------------------------------------------------------------

    /// Crashes node `id` now: its in-memory state and any write in flight
    /// are lost; its disk stays.
    pub fn crash(&mut self, id: u64) {
        self.crash_node(NodeId(id), None);
    }

    /// Arms node `id` to crash at `point` of its next `Ready`.
    pub fn crash_during_next_ready(&mut self, id: u64, point: CrashPoint) {
        if let Some(n) = self.nodes.get_mut(&NodeId(id)) {
            n.crash_at = Some(point);
        }
    }

    /// Disarms every armed crash.
    pub fn disarm_crashes(&mut self) {
        for n in self.nodes.values_mut() {
            n.crash_at = None;
        }
    }

    /// Restarts node `id` from its disk (no-op if it is running).
    pub fn restart(&mut self, id: u64) {
        let nid = NodeId(id);
        if self.is_up(id) {
            return;
        }
        if let Some(n) = self.nodes.get_mut(&nid) {
            n.lives += 1;
        }
        self.start(nid);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&mut self, a: u64, b: u64) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Cuts the link `from -> to` only.
    pub fn cut_one_way(&mut self, from: u64, to: u64) {
        if from != to {
            self.cut.insert((NodeId(from), NodeId(to)));
        }
    }

    /// Cuts node `id` off from every other node.
    pub fn isolate(&mut self, id: u64) {
        for other in self.ids.clone() {
            self.cut(id, other.0);
        }
    }

    /// Splits the cluster into `groups`: links between different groups
    /// are cut, links within a group are kept. A node listed in several
    /// groups bridges them. Nodes listed nowhere are isolated.
    pub fn partition(&mut self, groups: &[&[u64]]) {
        self.cut.clear();
        for a in self.ids.clone() {
            for b in self.ids.clone() {
                if a == b {
                    continue;
                }
                let together = groups.iter().any(|g| g.contains(&a.0) && g.contains(&b.0));
                if !together {
                    self.cut.insert((a, b));
                }
            }
        }
        self.record(NodeId::NONE, EventKind::Network("partition"));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.record(NodeId::NONE, EventKind::Network("healed"));
    }

    /// Changes the network's faults.
    pub fn set_net_faults(&mut self, f: NetFaults) {
        self.net = f;
    }

    /// Changes the disks' behaviour.
    pub fn set_io_faults(&mut self, f: IoFaults) {
        self.io = f;
    }

    /// Logs a network-wide event (for drivers that shape the network).
    pub fn note(&mut self, what: &'static str) {
        self.record(NodeId::NONE, EventKind::Network(what));
    }

    /// The seeded generator the cluster draws its own choices from, for
    /// drivers that want theirs to be part of the same run.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Runs the durability check over every committed entry seen so far.
    pub fn check_all_durable(&mut self) {
        let nodes = &self.nodes;
        let r = self
            .checker
            .check_durable(|id| nodes.get(&id).map(|n| &n.disk));
        self.fail_on(r);
    }

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    fn raft_mut(&mut self, id: NodeId) -> Option<&mut Raft> {
        self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut())
    }

    fn record(&mut self, node: NodeId, kind: EventKind) {
        let ev = Event {
            tick: self.now,
            node,
            kind,
        };
        self.fingerprint = mix(self.fingerprint, event_word(&ev));
        if self.trace {
            self.log.push_back(ev);
            return;
        }
        if self.log_capacity == 0 {
            return;
        }
        if self.log.len() == self.log_capacity {
            self.log.pop_front();
        }
        self.log.push_back(ev);
    }

    fn fail_on(&mut self, r: Result<(), Violation>) {
        if let Err(v) = r {
            self.fail(v);
        }
    }

    fn fail(&mut self, v: Violation) {
        if self.failure.is_some() {
            return;
        }
        if self.panic_on_violation {
            let recent: Vec<String> = self.log.iter().map(|e| e.to_string()).collect();
            panic!(
                "invariant broken at tick {}: {v}\nrecent events:\n{}",
                self.now,
                recent.join("\n")
            );
        }
        self.failure = Some(v);
    }

    fn contract(&mut self, node: NodeId, detail: String) {
        self.fail(Violation::Contract { node, detail });
    }

    fn start(&mut self, id: NodeId) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        let mut cfg = n.cfg.clone();
        cfg.seed = mix(cfg.seed, n.lives);
        let restarted = n.lives > 0;
        let disk = n.disk.clone();
        let check_promises = self.bug == DriverBug::None;
        let r = if check_promises {
            self.checker.on_restart(id, &disk)
        } else {
            // A driver known to break its promises: what they cause is for
            // the protocol-level checks to catch.
            self.checker.on_restart_unchecked(id, &disk)
        };
        self.fail_on(r);
        let raft = match Raft::restore(cfg, disk.initial_state()) {
            Ok(r) => r,
            Err(e) => {
                self.contract(id, format!("restore refused the node's own disk: {e}"));
                return;
            }
        };
        let app = match &disk.snapshot {
            Some(s) => match App::from_snapshot_data(&s.data) {
                Ok(a) => a,
                Err(e) => {
                    self.contract(id, format!("stored snapshot unreadable: {e}"));
                    return;
                }
            },
            None => App::default(),
        };
        let n = self.nodes.get_mut(&id).expect("looked up above");
        let mut raft = raft;
        if let Some(s) = &n.disk.snapshot {
            raft.set_local_snapshot(s.clone());
        }
        n.raft = Some(raft);
        n.app = app;
        n.io = None;
        if restarted {
            self.stats.restarts += 1;
            self.record(id, EventKind::Restart);
        }
        self.after_input(id);
    }

    fn crash_node(&mut self, id: NodeId, point: Option<CrashPoint>) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        if n.raft.is_none() {
            return;
        }
        n.raft = None;
        n.io = None;
        n.crash_at = None;
        self.checker.on_crash(id);
        self.stats.crashes += 1;
        self.record(id, EventKind::Crash(point));
    }

    /// Crashes `id` if it is armed for `point`.
    fn crash_if(&mut self, id: NodeId, point: CrashPoint) -> bool {
        let armed = self
            .nodes
            .get(&id)
            .is_some_and(|n| n.crash_at == Some(point));
        if armed {
            self.crash_node(id, Some(point));
        }
        armed
    }

    fn net_send(&mut self, m: Message) {
        let b = Brief::of(&m);
        let unreachable = self.cut.contains(&(m.from, m.to))
            || self.nodes.get(&m.to).is_some_and(|n| n.raft.is_none());
        if unreachable && self.report_unreachable {
            // The transport knows this one did not get through.
            if let Some(r) = self.raft_mut(m.from) {
                r.report_unreachable(m.to);
            }
        }
        if self.cut.contains(&(m.from, m.to)) {
            self.stats.lost += 1;
            self.record(m.from, EventKind::Lost(b, "cut"));
            return;
        }
        if self.net.drop > 0.0 && self.rng.chance(self.net.drop) {
            self.stats.lost += 1;
            self.record(m.from, EventKind::Lost(b, "drop"));
            return;
        }
        if self.net.duplicate > 0.0 && self.rng.chance(self.net.duplicate) {
            self.stats.duplicated += 1;
            self.record(m.from, EventKind::Duplicated(b));
            let copy = m.clone();
            self.enqueue(copy);
        }
        self.enqueue(m);
    }

    fn enqueue(&mut self, m: Message) {
        let delay = if self.net.max_delay > 0 && self.rng.chance(0.5) {
            self.rng.range(1, self.net.max_delay + 1)
        } else {
            0
        };
        let key = if self.net.reorder {
            self.rng.next_u64()
        } else {
            0
        };
        self.seq += 1;
        self.queue.insert((self.now + delay, key, self.seq), m);
    }

    fn deliver(&mut self, m: Message) {
        let b = Brief::of(&m);
        if self.cut.contains(&(m.from, m.to)) {
            self.stats.lost += 1;
            self.record(m.to, EventKind::Lost(b, "cut"));
            return;
        }
        self.deliver_direct(m);
    }

    fn deliver_direct(&mut self, m: Message) {
        let to = m.to;
        let b = Brief::of(&m);
        let Some(r) = self.raft_mut(to) else {
            self.stats.lost += 1;
            self.record(to, EventKind::Lost(b, "down"));
            return;
        };
        let chunk = m.body.is_bulk();
        let res = r.step(m);
        self.stats.delivered += 1;
        self.stats.snapshot_chunks += u64::from(chunk);
        self.record(to, EventKind::Deliver(b));
        if let Err(e) = res {
            self.contract(to, format!("step refused a well-formed message: {e}"));
        }
        self.after_input(to);
    }

    fn after_input(&mut self, id: NodeId) {
        self.observe(id);
        self.drive(id);
    }

    fn observe(&mut self, id: NodeId) {
        if self.failure.is_some() {
            return;
        }
        let Some(r) = self.nodes.get(&id).and_then(|n| n.raft.as_ref()) else {
            return;
        };
        let res = self.checker.observe(r);
        self.fail_on(res);
        let nodes = &self.nodes;
        let res = self
            .checker
            .check_durable(|id| nodes.get(&id).map(|n| &n.disk));
        self.fail_on(res);
    }

    /// Handles `Ready`s of node `id` until it has none, or its write is in
    /// flight, or it crashed.
    fn drive(&mut self, id: NodeId) {
        for _ in 0..10_000 {
            if self.failure.is_some() {
                return;
            }
            let slow = self.io.slow_write > 0.0 && self.rng.chance(self.io.slow_write);
            let write_ticks = self.rng.range(0, self.io.max_write_ticks + 1);
            let Some(n) = self.nodes.get_mut(&id) else {
                return;
            };
            let Some(r) = n.raft.as_mut() else { return };
            if n.io.is_some() || !r.has_ready() {
                return;
            }
            let conf = conf_masks(r.membership());
            let conf_changed = conf != n.conf;
            n.conf = conf;
            let mut rd = r.ready();
            self.stats.readies += 1;
            if conf_changed {
                self.record(
                    id,
                    EventKind::Config {
                        voters: conf.0,
                        outgoing: conf.1,
                        learners: conf.2,
                    },
                );
            }
            if let Some(ss) = rd.soft_state {
                self.record(
                    id,
                    EventKind::Role {
                        role: ss.role,
                        term: ss.term,
                        leader: ss.leader,
                    },
                );
            }
            // Step 1: these promise nothing about this node's disk.
            for m in std::mem::take(&mut rd.messages) {
                if m.from != id {
                    self.contract(id, format!("sent a message as node {}", m.from));
                    return;
                }
                self.net_send(m);
            }
            if self.bug == DriverBug::AckBeforePersist {
                // The bug: promises leave with everything else, before the
                // write.
                for m in std::mem::take(&mut rd.persisted_messages) {
                    let raft = self.nodes[&id].raft.as_ref().expect("running");
                    let r = self.checker.on_vote_sent(raft, &m);
                    self.fail_on(r);
                    self.net_send(m);
                }
            }
            if self.crash_if(id, CrashPoint::AfterSend) {
                return;
            }
            if slow && rd.must_persist() {
                let n = self.nodes.get_mut(&id).expect("checked above");
                n.io = Some((self.now + write_ticks, rd));
                self.record(id, EventKind::SlowWrite);
                return;
            }
            if !self.complete(id, rd) {
                return;
            }
        }
        self.contract(id, "more than 10000 consecutive Readies".into());
    }

    /// Steps 2 to 6 of a `Ready`. Returns false if the node crashed or an
    /// invariant broke.
    fn complete(&mut self, id: NodeId, mut rd: Ready) -> bool {
        // Step 2: one durable batch.
        let mut hs = rd.hard_state;
        let n = self.nodes.get_mut(&id).expect("driven node exists");
        if self.bug == DriverBug::ForgetVote {
            if let Some(h) = hs.as_mut() {
                h.vote = NodeId::NONE;
            }
        }
        match n.disk.write(rd.snapshot.as_ref(), &rd.entries, hs) {
            Ok(out) => {
                if let Some(t) = out.truncated_from {
                    self.checker.on_disk_truncated(t);
                }
            }
            Err(e) => {
                self.contract(id, format!("Ready cannot be persisted: {e}"));
                return false;
            }
        }
        let d = &n.disk;
        let (last_index, term, commit) = (d.last_index(), d.hard_state.term, d.hard_state.commit);
        if !rd.entries.is_empty() || rd.hard_state.is_some() || rd.snapshot.is_some() {
            self.record(
                id,
                EventKind::Persisted {
                    last_index,
                    term,
                    commit,
                },
            );
        }
        {
            let nodes = &self.nodes;
            let res = self
                .checker
                .check_durable(|id| nodes.get(&id).map(|n| &n.disk));
            self.fail_on(res);
        }
        if self.crash_if(id, CrashPoint::AfterPersist) {
            return false;
        }
        // Step 3: these promise durability.
        for m in std::mem::take(&mut rd.persisted_messages) {
            if m.from != id {
                self.contract(id, format!("sent a message as node {}", m.from));
                return false;
            }
            let n = &self.nodes[&id];
            let raft = n.raft.as_ref().expect("running");
            let mut r = self.checker.on_vote_sent(raft, &m);
            if r.is_ok() && self.bug == DriverBug::None {
                r = self.checker.on_persisted_send(raft, &m, &n.disk);
            }
            self.fail_on(r);
            self.net_send(m);
        }
        if self.failure.is_some() || self.crash_if(id, CrashPoint::AfterPersistedSend) {
            return false;
        }
        // Step 4: restore, then apply.
        let n = self.nodes.get_mut(&id).expect("driven node exists");
        if let Some(s) = &rd.snapshot {
            match App::from_snapshot_data(&s.data) {
                Ok(app) if app.applied == s.meta.index => {
                    let (applied, digest) = (app.applied, app.digest);
                    n.app = app;
                    self.stats.snapshots_installed += 1;
                    let r = self.checker.on_restore(id, applied, digest);
                    self.fail_on(r);
                }
                Ok(app) => {
                    let detail = format!(
                        "snapshot at {} carries a state applied to {}",
                        s.meta.index, app.applied
                    );
                    self.fail(Violation::StateMachineSafety {
                        node: id,
                        index: s.meta.index,
                        detail,
                    });
                    return false;
                }
                Err(e) => {
                    self.contract(id, format!("snapshot from leader is unreadable: {e}"));
                    return false;
                }
            }
        }
        let n = self.nodes.get_mut(&id).expect("driven node exists");
        let mut last_applied = None;
        for e in &rd.committed_entries {
            if !n.disk.holds(e.index, e.term) {
                let detail = format!("committed entry {} handed to apply is not on disk", e.index);
                self.contract(id, detail);
                return false;
            }
            let r = self.checker.on_apply(id, e);
            if let Err(v) = r {
                self.fail(v);
                return false;
            }
            n.app.apply(e);
            last_applied = Some(e.index);
        }
        if let Some(i) = last_applied {
            self.record(id, EventKind::Applied(i));
        }
        // Step 5: reads.
        for rs in &rd.read_states {
            self.stats.reads += 1;
            self.reads_served.insert(rs.ctx, (id, rs.index));
            self.record(
                id,
                EventKind::Read {
                    ctx: rs.ctx,
                    index: rs.index,
                },
            );
            let r = self.checker.on_read_state(id, rs.ctx, rs.index);
            self.fail_on(r);
        }
        if self.failure.is_some() || self.crash_if(id, CrashPoint::AfterApply) {
            return false;
        }
        // Step 6.
        let n = self.nodes.get_mut(&id).expect("driven node exists");
        n.raft.as_mut().expect("running").advance();
        self.observe(id);
        if let Some((threshold, prob)) = self.compaction {
            let n = &self.nodes[&id];
            let due = n.app.applied >= n.disk.snapshot_index() + threshold;
            if due && self.rng.chance(prob) {
                self.compact_node(id);
                self.observe(id);
            }
        }
        self.failure.is_none()
    }

    fn complete_due_writes(&mut self) {
        let due: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.io.as_ref().is_some_and(|(t, _)| *t <= self.now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.finish_write(id);
        }
    }

    /// Finishes every write in flight, whatever its due tick.
    fn complete_writes_now(&mut self) -> bool {
        let pending: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.io.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in &pending {
            self.finish_write(*id);
        }
        !pending.is_empty()
    }

    fn finish_write(&mut self, id: NodeId) {
        let Some(rd) = self
            .nodes
            .get_mut(&id)
            .and_then(|n| n.io.take())
            .map(|(_, rd)| rd)
        else {
            return;
        };
        if self.complete(id, rd) {
            self.drive(id);
        }
    }

    fn compact_node(&mut self, id: NodeId) -> bool {
        let Some(n) = self.nodes.get_mut(&id) else {
            return false;
        };
        let Some(r) = n.raft.as_mut() else {
            return false;
        };
        // The snapshot is of the state machine, so it is taken at the state
        // machine's applied index, which the core must not be behind.
        let applied = n.app.applied;
        if applied <= n.disk.snapshot_index() || n.io.is_some() {
            return false;
        }
        if r.applied_index() < applied {
            let detail = format!(
                "core says applied {}, the state machine has applied {applied}",
                r.applied_index()
            );
            self.contract(id, detail);
            return false;
        }
        if applied < r.snapshot_index() {
            // The core's log already starts after it (a snapshot from the
            // leader is on its way to the state machine): nothing to compact.
            return false;
        }
        let Some(term) = r.term_at(applied) else {
            self.contract(id, format!("applied entry {applied} has no term"));
            return false;
        };
        let data = n.app.snapshot_data();
        let meta = match r.compact(applied, data.clone()) {
            Ok(meta) => meta,
            Err(e) => {
                self.contract(id, format!("compaction at the applied index refused: {e}"));
                return false;
            }
        };
        if meta.index != applied || meta.term != term {
            let detail = format!(
                "compact({applied}) described its snapshot as ({}, term {}), the log says term {term}",
                meta.index, meta.term
            );
            self.contract(id, detail);
            return false;
        }
        // The application keeps its snapshot durably and drops the log
        // entries it covers.
        let snap = Snapshot { meta, data };
        let first = n.disk.snapshot_index() + 1;
        let drop = (applied + 1).saturating_sub(first) as usize;
        let len = n.disk.entries.len();
        n.disk.entries.drain(..drop.min(len));
        n.disk.snapshot = Some(snap);
        self.stats.compactions += 1;
        self.record(id, EventKind::Compacted(applied));
        true
    }
}

fn event_word(e: &Event) -> u64 {
    let brief = |b: &Brief| {
        mix(
            mix(b.from.0 ^ (b.to.0 << 8) ^ (b.term << 16), b.index),
            b.n ^ u64::from(b.ok) ^ ((b.kind.len() as u64) << 56),
        )
    };
    let k = match &e.kind {
        EventKind::Deliver(b) => brief(b),
        EventKind::Lost(b, why) => brief(b) ^ why.len() as u64,
        EventKind::Duplicated(b) => brief(b) ^ 7,
        EventKind::Tick => 1,
        EventKind::Role { role, term, leader } => {
            mix(*term, leader.map_or(0, |l| l.0) ^ ((*role as u64) << 40))
        }
        EventKind::Persisted {
            last_index,
            term,
            commit,
        } => mix(*last_index, term ^ (commit << 20)),
        EventKind::SlowWrite => 3,
        EventKind::Applied(i) => mix(*i, 4),
        EventKind::Proposed { term, index } => mix(*term, index ^ 5),
        EventKind::Crash(p) => 6 ^ (p.map_or(0, |p| p as u64 + 1) << 8),
        EventKind::Restart => 9,
        EventKind::Compacted(i) => mix(*i, 10),
        EventKind::Network(w) => (w.len() as u64) ^ (11 << 8),
        EventKind::Read { ctx, index } => mix(*ctx, index ^ 12),
        EventKind::Config {
            voters,
            outgoing,
            learners,
        } => mix(
            (*voters as u64) ^ ((*outgoing as u64) << 21),
            (*learners as u64) ^ 13,
        ),
    };
    mix(e.tick ^ (e.node.0 << 48), k)
}
