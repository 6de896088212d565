//! Seeded swarm runs: one seed picks a cluster size, a configuration and
//! fault rates, runs a phase of faults with clients proposing throughout,
//! then heals everything and demands that the cluster converges in a
//! bounded number of ticks.
//!
//! Everything a run does is drawn from generators seeded by the run's seed:
//! nothing here may depend on the order of a hash map, the clock or the
//! machine, or a seed would stop replaying its run.

use super::checker::Violation;
use super::cluster::{
    mix, Cluster, ClusterBuilder, CrashPoint, DriverBug, IoFaults, NetFaults, Stats,
};
use crate::membership::Membership;
use crate::message::{ConfChange, ConfChangeStep};
use crate::raft::ProposeError;
use crate::rng::Rng;
use crate::types::{LogIndex, NodeId, Role, Term};
use bytes::Bytes;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// How hostile a run is. [`Faults::random`] picks one per seed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Message loss, duplication, delay and reordering.
    pub net: NetFaults,
    /// Slow disk writes.
    pub io: IoFaults,
    /// Per tick: probability that the network takes a new shape (full
    /// cut, majority/minority, one-way links, a bridge, random links, one
    /// node isolated).
    pub partition: f64,
    /// Per tick: probability that a partition heals.
    pub heal: f64,
    /// Per tick: probability that a running node crashes.
    pub crash: f64,
    /// Of those crashes, the share that happens in the middle of handling
    /// a `Ready` (between sending and persisting, and so on).
    pub crash_mid_ready: f64,
    /// Per tick: probability that every node crashes at once.
    pub crash_all: f64,
    /// Per tick, per crashed node: probability that it restarts.
    pub restart: f64,
    /// Per tick: probability that a client proposes (1 to 3 entries).
    pub propose: f64,
    /// Per tick: probability that a client asks for a linearizable read.
    pub read: f64,
    /// Per tick: probability that the leader is asked to transfer
    /// leadership.
    pub transfer: f64,
    /// Per tick: probability that a node is told to campaign at once.
    pub campaign: f64,
    /// Probability, after a `Ready`, that a node snapshots and compacts
    /// (once 4 entries past its last snapshot); 0 disables compaction.
    pub compact: f64,
    /// Probability that a node misses a tick (a slow clock).
    pub clock_skip: f64,
    /// Drivers report messages lost to cuts and crashed peers to their
    /// core ([`crate::Raft::report_unreachable`]).
    pub report_unreachable: bool,
    /// Per tick: probability that the leader is asked for the next
    /// membership change of [`Faults::conf_plan`]. Nodes that join get
    /// fresh ids; removed nodes keep running (and, if they missed their
    /// removal, keep campaigning).
    pub membership: f64,
    /// Which membership changes the run makes.
    pub conf_plan: ConfPlan,
}

/// The membership changes of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfPlan {
    /// Random ones: add a voter or a learner, promote a learner, remove a
    /// voter or a learner, or replace a voter through a joint
    /// configuration; always at least 3 voters and at most 7 members.
    #[default]
    Random,
    /// Replace the original voters one by one, each through a joint
    /// configuration, until none is left; then random changes.
    ReplaceAll,
    /// Grow by two voters at once and shrink by two at once, through joint
    /// configurations (3 -> 5 -> 3 on three nodes), again and again.
    GrowShrink,
}

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.range(0, xs.len() as u64) as usize]
}

impl Faults {
    /// No faults at all: clients only.
    pub fn none() -> Faults {
        Faults {
            propose: 0.3,
            ..Faults::default()
        }
    }

    /// A random mix, from gentle to brutal.
    pub fn random(rng: &mut Rng) -> Faults {
        Faults {
            net: NetFaults {
                drop: pick(rng, &[0.0, 0.01, 0.05, 0.2]),
                duplicate: pick(rng, &[0.0, 0.02, 0.1]),
                max_delay: pick(rng, &[0, 1, 2, 4]),
                reorder: rng.chance(0.7),
            },
            io: IoFaults {
                slow_write: pick(rng, &[0.0, 0.3, 0.8]),
                max_write_ticks: pick(rng, &[0, 1, 3]),
            },
            partition: pick(rng, &[0.0, 0.01, 0.03, 0.08]),
            heal: pick(rng, &[0.02, 0.05, 0.15]),
            crash: pick(rng, &[0.0, 0.005, 0.02, 0.05]),
            crash_mid_ready: pick(rng, &[0.3, 0.7]),
            crash_all: pick(rng, &[0.0, 0.0, 0.003]),
            restart: pick(rng, &[0.05, 0.2, 0.5]),
            propose: pick(rng, &[0.1, 0.3, 0.7]),
            read: pick(rng, &[0.0, 0.05, 0.2]),
            transfer: pick(rng, &[0.0, 0.0, 0.01]),
            campaign: pick(rng, &[0.0, 0.0, 0.005]),
            compact: pick(rng, &[0.0, 0.05, 0.3]),
            clock_skip: pick(rng, &[0.0, 0.0, 0.05]),
            report_unreachable: rng.chance(0.5),
            // Drawn by the swarm from its own generator (see
            // `Swarm::new`), so that adding it left every other draw of a
            // seed, and so the runs of seeds without membership changes,
            // as they were.
            membership: 0.0,
            conf_plan: ConfPlan::Random,
        }
    }
}

/// What one run does. [`SimOptions::default`] is what CI and the long run
/// use; a seed alone then replays a run.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Cluster size; `None` lets the seed pick 3, 5 or 7.
    pub nodes: Option<usize>,
    /// Ticks of the fault phase.
    pub fault_ticks: u64,
    /// Ticks allowed, after healing, for one leader to emerge that every
    /// node follows; and for proposals made to it to commit and every node
    /// to apply everything, with on top of it time to ship the backlog at
    /// the configured replication capacity (see [`SimReport::heal_bound`]).
    pub heal_ticks: u64,
    /// Fault rates; `None` lets the seed pick ([`Faults::random`]).
    pub faults: Option<Faults>,
    /// Keep every event of the run (in [`SimReport::trace`], or in
    /// [`SimFailure::recent`] on failure) for the caller to print.
    pub trace: bool,
    /// Drive the nodes with a deliberately wrong driver (tests of the
    /// checkers only).
    pub driver_bug: DriverBug,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: None,
            fault_ticks: 300,
            heal_ticks: 500,
            faults: None,
            trace: false,
            driver_bug: DriverBug::None,
        }
    }
}

/// The configuration a seed picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Cluster size.
    pub nodes: usize,
    /// Base election timeout in ticks.
    pub election_ticks: u32,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u32,
    /// Pre-vote on.
    pub pre_vote: bool,
    /// Check-quorum on.
    pub check_quorum: bool,
    /// Entries per AppendEntries.
    pub max_entries_per_msg: usize,
    /// AppendEntries in flight per follower.
    pub max_inflight_msgs: usize,
    /// Bytes of committed entries per `Ready`.
    pub max_apply_bytes: u64,
    /// Entries kept behind a snapshot.
    pub compaction_lag: u64,
    /// Snapshot chunk size.
    pub snapshot_chunk_bytes: u64,
    /// Lease reads (only with check-quorum and clocks that never skip: a
    /// lease assumes bounded clock drift).
    pub lease_read: bool,
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// The configuration it picked.
    pub setup: Setup,
    /// The fault rates it picked.
    pub faults: Faults,
    /// Ticks run in all.
    pub ticks: u64,
    /// Ticks from healing until one leader was followed by every node.
    pub leader_after: u64,
    /// Ticks from healing to convergence.
    pub converged_after: u64,
    /// The bound it had to converge within: [`SimOptions::heal_ticks`],
    /// plus two election timeouts (clients write only once a leader has
    /// held that long), plus one replication round trip ([`ROUND_TRIP_TICKS`]) for every
    /// `max_entries_per_msg * max_inflight_msgs` entries of backlog at
    /// healing time (the last index furthest ahead minus the commit index
    /// furthest behind) and for every snapshot chunk a lagging node may
    /// need.
    pub heal_bound: u64,
    /// Terms that had a leader.
    pub elections: usize,
    /// The highest term reached.
    pub max_term: Term,
    /// Entries committed.
    pub committed: usize,
    /// The voters of the final leader's configuration.
    pub final_voters: Vec<u64>,
    /// With [`SimOptions::trace`]: every event of the run, oldest first.
    pub trace: Vec<String>,
    /// Counters.
    pub stats: Stats,
    /// Hash of the whole event history: equal for two runs of one seed.
    pub fingerprint: u64,
}

/// A failed run: the broken invariant, where, and how to replay it.
#[derive(Debug, Clone)]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// The tick the invariant broke in.
    pub tick: u64,
    /// `"faults"` or `"heal"`.
    pub phase: &'static str,
    /// What broke.
    pub violation: Violation,
    /// The configuration the seed picked.
    pub setup: Option<Setup>,
    /// The fault rates the seed picked.
    pub faults: Option<Faults>,
    /// The last events before the failure, oldest first.
    pub recent: Vec<String>,
    /// A command that replays this run with a full event trace.
    pub replay: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation seed {} failed at tick {} ({} phase): {}",
            self.seed, self.tick, self.phase, self.violation
        )?;
        if let Some(s) = &self.setup {
            writeln!(f, "setup: {s:?}")?;
        }
        if let Some(x) = &self.faults {
            writeln!(f, "faults: {x:?}")?;
        }
        writeln!(f, "last {} events:", self.recent.len())?;
        for line in &self.recent {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay: {}", self.replay)
    }
}

impl std::error::Error for SimFailure {}

/// Ticks one replication round trip may take after healing: a message
/// delay of at most one tick each way, a slow write of at most one tick on
/// each side, and the tick in which the leader gets to send.
pub const ROUND_TRIP_TICKS: u64 = 6;

/// Election timeouts a converged cluster must then hold its leader and
/// term for (see `Swarm::hold_steady`).
const STEADY_TIMEOUTS: u64 = 5;

/// The command that replays `seed` with the default options, printing every
/// event.
pub fn replay_command(seed: u64) -> String {
    format!("RAFT_SIM_SEED={seed} cargo test -p raft-core --test sim -- --nocapture")
}

/// Runs one seed: faults, then healing and convergence, with every
/// invariant checked after every step. A failure says how to replay it.
pub fn run_seed(seed: u64, opts: &SimOptions) -> Result<SimReport, Box<SimFailure>> {
    let mut swarm = Swarm::new(seed, opts);
    match catch_unwind(AssertUnwindSafe(|| swarm.run())) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic payload".into());
            Err(swarm.failure(Violation::Panic { message }))
        }
    }
}

struct Swarm {
    seed: u64,
    opts: SimOptions,
    rng: Rng,
    setup: Setup,
    faults: Faults,
    c: Cluster,
    payloads: u64,
    phase: &'static str,
    /// The generator of membership changes, apart from `rng` so that runs
    /// without them draw exactly as before they existed.
    conf_rng: Rng,
    /// The id the next joining node gets.
    next_id: u64,
}

impl Swarm {
    fn new(seed: u64, opts: &SimOptions) -> Swarm {
        let mut rng = Rng::new(mix(seed, 0x5EED));
        let nodes = opts.nodes.unwrap_or_else(|| pick(&mut rng, &[3, 5, 7]));
        let election_ticks = rng.range(6, 16) as u32;
        let heartbeat_ticks = rng.range(1, u64::from(election_ticks / 3).clamp(2, 4)) as u32;
        let setup = Setup {
            nodes,
            election_ticks,
            heartbeat_ticks,
            pre_vote: rng.chance(0.85),
            check_quorum: rng.chance(0.85),
            max_entries_per_msg: pick(&mut rng, &[1, 3, 16, 1024]),
            max_inflight_msgs: pick(&mut rng, &[1, 2, 8, 256]),
            max_apply_bytes: pick(&mut rng, &[1, 100, 1 << 20]),
            compaction_lag: pick(&mut rng, &[0, 3, 16]),
            snapshot_chunk_bytes: pick(&mut rng, &[256, 4096, 1 << 20]),
            lease_read: false,
        };
        let mut conf_rng = Rng::new(mix(seed, 0xC0F));
        let faults = opts.faults.unwrap_or_else(|| {
            let mut f = Faults::random(&mut rng);
            f.membership = pick(&mut conf_rng, &[0.0, 0.0, 0.05, 0.1]);
            f.conf_plan = pick(
                &mut conf_rng,
                &[ConfPlan::Random, ConfPlan::ReplaceAll, ConfPlan::GrowShrink],
            );
            f
        });
        let mut setup = setup;
        setup.lease_read = setup.check_quorum && faults.clock_skip == 0.0 && rng.chance(0.3);
        let mut b = ClusterBuilder::new(nodes)
            .seed(mix(seed, 0xC1u64))
            .configure(|c| {
                c.election_ticks = setup.election_ticks;
                c.heartbeat_ticks = setup.heartbeat_ticks;
                c.pre_vote = setup.pre_vote;
                c.check_quorum = setup.check_quorum;
                c.max_entries_per_msg = setup.max_entries_per_msg;
                c.max_inflight_msgs = setup.max_inflight_msgs;
                c.max_apply_bytes = setup.max_apply_bytes;
                c.compaction_lag = setup.compaction_lag;
                c.snapshot_chunk_bytes = setup.snapshot_chunk_bytes;
                c.lease_read = setup.lease_read;
            })
            .report_unreachable(faults.report_unreachable)
            .net_faults(faults.net)
            .io_faults(faults.io)
            .driver_bug(opts.driver_bug)
            .panic_on_violation(false)
            .trace(opts.trace)
            .log_capacity(120);
        if faults.compact > 0.0 {
            b = b.compaction(4, faults.compact);
        }
        Swarm {
            seed,
            opts: opts.clone(),
            rng,
            setup,
            faults,
            c: b.build(),
            payloads: 0,
            phase: "faults",
            conf_rng,
            next_id: nodes as u64 + 1,
        }
    }

    fn failure(&self, violation: Violation) -> Box<SimFailure> {
        Box::new(SimFailure {
            seed: self.seed,
            tick: self.c.now(),
            phase: self.phase,
            violation,
            setup: Some(self.setup),
            faults: Some(self.faults),
            recent: self.c.recent_events().map(|e| e.to_string()).collect(),
            replay: if self.opts == SimOptions::default() {
                replay_command(self.seed)
            } else {
                format!(
                    "sim::run_seed({}, &{:?}) (non-default options)",
                    self.seed, self.opts
                )
            },
        })
    }

    fn check(&self) -> Result<(), Box<SimFailure>> {
        match self.c.violation() {
            Some(v) => Err(self.failure(v.clone())),
            None => Ok(()),
        }
    }

    fn run(&mut self) -> Result<SimReport, Box<SimFailure>> {
        self.check()?;
        for _ in 0..self.opts.fault_ticks {
            self.perturb();
            self.clients();
            self.c.run_tick(self.faults.clock_skip);
            self.check()?;
        }
        self.phase = "heal";
        let healed_at = self.c.now();
        let (leader, leader_after, converged_after, heal_bound) = self.heal_and_converge()?;
        self.c.check_all_durable();
        self.check()?;
        self.phase = "steady";
        self.hold_steady(leader)?;
        let max_term = self
            .c
            .ids()
            .iter()
            .filter_map(|id| self.c.try_node(id.0))
            .map(|r| r.term())
            .max()
            .unwrap_or(0);
        Ok(SimReport {
            trace: if self.opts.trace {
                self.c.recent_events().map(|e| e.to_string()).collect()
            } else {
                Vec::new()
            },
            seed: self.seed,
            setup: self.setup,
            faults: self.faults,
            ticks: healed_at + converged_after,
            leader_after,
            converged_after,
            heal_bound,
            elections: self.c.checker().leaders().len(),
            max_term,
            committed: self.c.checker().committed_count(),
            final_voters: self
                .c
                .try_node(leader)
                .map(|r| r.membership().all_voters().iter().map(|v| v.0).collect())
                .unwrap_or_default(),
            stats: self.c.stats(),
            fingerprint: self.c.fingerprint(),
        })
    }

    fn ids(&self) -> Vec<u64> {
        self.c.ids().iter().map(|i| i.0).collect()
    }

    fn random_node(&mut self) -> u64 {
        let ids = self.ids();
        pick(&mut self.rng, &ids)
    }

    fn perturb(&mut self) {
        let f = self.faults;
        if self.rng.chance(f.partition) {
            self.reshape_network();
        } else if self.rng.chance(f.heal) {
            self.c.heal();
        }
        if self.rng.chance(f.crash) {
            let id = self.random_node();
            if self.rng.chance(f.crash_mid_ready) {
                let p = pick(&mut self.rng, &CrashPoint::ALL);
                self.c.crash_during_next_ready(id, p);
            } else {
                self.c.crash(id);
            }
        }
        if self.rng.chance(f.crash_all) {
            for id in self.ids() {
                self.c.crash(id);
            }
        }
        for id in self.ids() {
            if !self.c.is_up(id) && self.rng.chance(f.restart) {
                self.c.restart(id);
            }
        }
        if self.rng.chance(f.transfer) {
            if let Some(l) = self.c.leader() {
                let to = self.random_node();
                // Refusals (not a voter, already leader) are part of the API.
                let _ = self.c.transfer_leadership(l.0, to);
            }
        }
        if self.rng.chance(f.campaign) {
            let id = self.random_node();
            self.c.campaign(id);
        }
        if f.membership > 0.0 && self.conf_rng.chance(f.membership) {
            self.change_membership();
        }
    }

    /// Asks the leader for the next membership change of the run's plan.
    /// Refusals (a change in flight, not leader any more) are part of the
    /// API; a node that was to join is then kept for the next attempt.
    fn change_membership(&mut self) {
        let Some(l) = self.c.leader() else { return };
        let Some(m) = self.c.try_node(l.0).map(|r| r.membership().clone()) else {
            return;
        };
        if m.is_joint() {
            return;
        }
        let voters: Vec<NodeId> = m.voters.iter().copied().collect();
        let fresh = [NodeId(self.next_id), NodeId(self.next_id + 1)];
        let original = |v: &NodeId| v.0 <= self.setup.nodes as u64;
        let steps = match self.faults.conf_plan {
            ConfPlan::ReplaceAll if voters.iter().any(original) => {
                let old: Vec<NodeId> = voters.iter().copied().filter(original).collect();
                let gone = pick(&mut self.conf_rng, &old);
                vec![
                    ConfChangeStep::Remove(gone),
                    ConfChangeStep::AddVoter(fresh[0]),
                ]
            }
            ConfPlan::GrowShrink if voters.len() + 2 <= 7 && voters.len() <= self.setup.nodes => {
                vec![
                    ConfChangeStep::AddVoter(fresh[0]),
                    ConfChangeStep::AddVoter(fresh[1]),
                ]
            }
            ConfPlan::GrowShrink if voters.len() > self.setup.nodes => {
                let mut vs = voters.clone();
                let a = vs.remove(self.conf_rng.range(0, vs.len() as u64) as usize);
                let b = pick(&mut self.conf_rng, &vs);
                vec![ConfChangeStep::Remove(a), ConfChangeStep::Remove(b)]
            }
            _ => match self.random_change(&m, fresh[0]) {
                Some(steps) => steps,
                None => return,
            },
        };
        let joining: Vec<NodeId> = fresh
            .into_iter()
            .filter(|f| {
                steps.contains(&ConfChangeStep::AddVoter(*f))
                    || steps.contains(&ConfChangeStep::AddLearner(*f))
            })
            .collect();
        for f in &joining {
            self.c.add_node(f.0);
        }
        let cc = ConfChange {
            steps,
            context: Bytes::new(),
        };
        if self.c.propose_conf_change(l.0, cc).is_ok() {
            self.next_id += joining.len() as u64;
        }
    }

    /// A random change keeping at least 3 voters and at most 7 members.
    fn random_change(&mut self, m: &Membership, fresh: NodeId) -> Option<Vec<ConfChangeStep>> {
        let voters: Vec<NodeId> = m.voters.iter().copied().collect();
        let learners: Vec<NodeId> = m.learners.iter().copied().collect();
        let members = m.members().len();
        let r = &mut self.conf_rng;
        Some(match r.range(0, 6) {
            0 if members < 7 => vec![ConfChangeStep::AddLearner(fresh)],
            1 if members < 7 => vec![ConfChangeStep::AddVoter(fresh)],
            2 if !learners.is_empty() => vec![ConfChangeStep::AddVoter(pick(r, &learners))],
            3 if voters.len() > 3 => vec![ConfChangeStep::Remove(pick(r, &voters))],
            4 if !learners.is_empty() => vec![ConfChangeStep::Remove(pick(r, &learners))],
            // Replace a voter by a fresh one: two voters change, so through
            // a joint configuration.
            5 => vec![
                ConfChangeStep::Remove(pick(r, &voters)),
                ConfChangeStep::AddVoter(fresh),
            ],
            _ => return None,
        })
    }

    /// The members of the configuration node `leader` holds (every node
    /// while membership never changes).
    fn members_of(&self, leader: u64) -> Vec<u64> {
        match self.c.try_node(leader) {
            Some(r) if self.faults.membership > 0.0 => {
                r.membership().members().iter().map(|i| i.0).collect()
            }
            _ => self.ids(),
        }
    }

    fn reshape_network(&mut self) {
        let mut ids = self.ids();
        for i in (1..ids.len()).rev() {
            let j = self.rng.range(0, i as u64 + 1) as usize;
            ids.swap(i, j);
        }
        let n = ids.len();
        match self.rng.range(0, 6) {
            0 => {
                // Every node alone: the seed story's three-way cut.
                self.c.partition(&[]);
                self.c.note("full cut: every node alone");
            }
            1 => {
                let minority = self.rng.range(1, (n / 2) as u64 + 1) as usize;
                let (a, b) = ids.split_at(minority);
                self.c.partition(&[a, b]);
                self.c.note("majority / minority");
            }
            2 => {
                let k = self.rng.range(1, n as u64) as usize;
                for _ in 0..k {
                    let a = self.random_node();
                    let b = self.random_node();
                    self.c.cut_one_way(a, b);
                }
                self.c.note("one-way links cut");
            }
            3 => {
                // A bridge: one node sees both sides, the sides not each
                // other.
                let bridge = ids[0];
                let half = 1 + (n - 1) / 2;
                let mut a: Vec<u64> = ids[1..half].to_vec();
                let mut b: Vec<u64> = ids[half..].to_vec();
                a.push(bridge);
                b.push(bridge);
                self.c.partition(&[&a, &b]);
                self.c.note("bridge");
            }
            4 => {
                self.c.heal();
                for a in self.ids() {
                    for b in self.ids() {
                        if a != b && self.rng.chance(0.3) {
                            self.c.cut_one_way(a, b);
                        }
                    }
                }
                self.c.note("random links cut");
            }
            _ => {
                self.c.isolate(ids[0]);
                self.c.note("one node isolated");
            }
        }
    }

    fn next_payload(&mut self) -> Bytes {
        self.payloads += 1;
        Bytes::from(format!("s{:x}-p{:06}", self.seed, self.payloads))
    }

    /// A client asks a random node, and follows one redirect.
    fn propose_somewhere(&mut self, data: Bytes) -> Option<(u64, Term, LogIndex)> {
        let mut target = self.random_node();
        for _ in 0..2 {
            match self.c.propose(target, data.clone()) {
                Ok((t, i)) => return Some((target, t, i)),
                Err(ProposeError::NotLeader { leader: Some(l) }) if l.0 != target => {
                    target = l.0;
                }
                Err(_) => return None,
            }
        }
        None
    }

    fn clients(&mut self) {
        if self.rng.chance(self.faults.propose) {
            let k = self.rng.range(1, 4);
            for _ in 0..k {
                let data = self.next_payload();
                self.propose_somewhere(data);
            }
        }
        if self.rng.chance(self.faults.read) {
            let id = self.random_node();
            self.c.read_index(id);
        }
    }

    /// The leader every node is up and following, if there is one.
    fn stable_leader(&self) -> Option<u64> {
        let l = self.c.leader()?;
        let term = self.c.try_node(l.0)?.term();
        let all = self.members_of(l.0).iter().all(|id| {
            self.c
                .try_node(*id)
                .is_some_and(|r| r.term() == term && r.leader() == Some(l))
        });
        all.then_some(l.0)
    }

    /// The heal-phase bound for the state the cluster is in now.
    fn heal_bound(&self) -> u64 {
        let nodes: Vec<_> = self
            .c
            .ids()
            .iter()
            .filter_map(|id| self.c.try_node(id.0))
            .collect();
        let last = nodes.iter().map(|r| r.last_index()).max().unwrap_or(0);
        let commit = nodes.iter().map(|r| r.commit_index()).min().unwrap_or(0);
        let backlog = last.saturating_sub(commit);
        let per_round_trip = (self.setup.max_entries_per_msg * self.setup.max_inflight_msgs) as u64;
        // A snapshot carries every payload applied so far (under 32 bytes
        // each here), shipped one chunk per round trip.
        let snapshot_bytes = 32 * last + 64;
        let chunks = snapshot_bytes.div_ceil(self.setup.snapshot_chunk_bytes);
        self.opts.heal_ticks + (backlog.div_ceil(per_round_trip.max(1)) + chunks) * ROUND_TRIP_TICKS
    }

    /// Returns the leader, the ticks until it led, until convergence, and
    /// the bound.
    fn heal_and_converge(&mut self) -> Result<(u64, u64, u64, u64), Box<SimFailure>> {
        let f = self.faults;
        self.c.heal();
        self.c.set_net_faults(NetFaults {
            drop: 0.0,
            duplicate: 0.0,
            max_delay: f.net.max_delay.min(1),
            reorder: f.net.reorder,
        });
        self.c.set_io_faults(IoFaults {
            slow_write: f.io.slow_write,
            max_write_ticks: f.io.max_write_ticks.min(1),
        });
        self.c.disarm_crashes();
        for id in self.ids() {
            self.c.restart(id);
        }
        self.check()?;
        let start = self.c.now();
        let mut proposals: Vec<(Term, LogIndex, Bytes)> = Vec::new();
        const AFTER_HEAL: usize = 3;
        // A leader can lose its office right after healing (its
        // check-quorum window still remembers the partition): clients
        // write once one leader has held for two election timeouts.
        let settle = 2 * u64::from(self.setup.election_ticks);
        let mut held: Option<(u64, Term, u64)> = None;
        let bound = self.heal_bound() + settle;
        let mut first_leader: Option<u64> = None;
        for _ in 0..bound {
            self.c.run_tick(0.0);
            self.check()?;
            let Some(l) = self.stable_leader() else {
                held = None;
                if first_leader.is_none() && self.c.now() - start >= self.opts.heal_ticks {
                    return Err(self.failure(Violation::Liveness {
                        detail: format!(
                            "no leader followed by every node {} ticks after healing",
                            self.opts.heal_ticks
                        ),
                    }));
                }
                continue;
            };
            let leader_at = *first_leader.get_or_insert(self.c.now() - start);
            let term = self.c.try_node(l).map_or(0, |r| r.term());
            let since = match held {
                Some((who, t, since)) if who == l && t == term => since,
                _ => {
                    held = Some((l, term, self.c.now()));
                    self.c.now()
                }
            };
            if self.c.now() - since < settle {
                continue;
            }
            if proposals.len() < AFTER_HEAL {
                let data = self.next_payload();
                if let Ok((t, i)) = self.c.propose(l, data.clone()) {
                    proposals.push((t, i, data));
                }
                self.check()?;
                continue;
            }
            let checker = self.c.checker();
            for (t, i, data) in &proposals {
                // Lost for good once the committed entry at this index, or
                // the last committed one if the log is shorter, is of a
                // later term.
                let at = (*i).min(checker.max_committed());
                if let Some(e) = checker.committed_entry(at) {
                    let lost = e.term > *t || (at == *i && (e.term != *t || e.data != *data));
                    if lost {
                        return Err(self.failure(Violation::Liveness {
                            detail: format!(
                                "proposal accepted at ({t}, {i}) by a leader that had held for {settle} ticks after healing was lost: entry {at} committed with term {}",
                                e.term
                            ),
                        }));
                    }
                }
            }
            let all_committed = proposals
                .iter()
                .all(|(_, i, _)| checker.committed_entry(*i).is_some());
            if all_committed && self.converged(l) {
                return Ok((l, leader_at, self.c.now() - start, bound));
            }
        }
        let mut detail = format!(
            "not converged {bound} ticks after healing ({} of {AFTER_HEAL} proposals accepted); nodes:",
            proposals.len()
        );
        for id in self.ids() {
            match self.c.try_node(id) {
                Some(r) => detail.push_str(&format!(
                    " [{id}: {} term {} leader {:?} last {} commit {} applied {}]",
                    r.role(),
                    r.term(),
                    r.leader(),
                    r.last_index(),
                    r.commit_index(),
                    r.applied_index()
                )),
                None => detail.push_str(&format!(" [{id}: down]")),
            }
        }
        Err(self.failure(Violation::Liveness { detail }))
    }

    /// After convergence, with every node running (removed ones
    /// included, still timing out and campaigning if they missed their
    /// removal) and a quiet network, the leader keeps its office and its
    /// term for several election timeouts: nothing, removed nodes
    /// least of all, disrupts a healthy cluster.
    fn hold_steady(&mut self, leader: u64) -> Result<(), Box<SimFailure>> {
        let Some(term) = self.c.try_node(leader).map(|r| r.term()) else {
            return Ok(());
        };
        for _ in 0..STEADY_TIMEOUTS * u64::from(self.setup.election_ticks) {
            self.c.run_tick(0.0);
            self.check()?;
            let members = self.members_of(leader);
            for id in &members {
                let Some(r) = self.c.try_node(*id) else {
                    continue;
                };
                if r.term() != term || (*id == leader && r.role() != Role::Leader) {
                    let removed: Vec<u64> = self
                        .ids()
                        .into_iter()
                        .filter(|i| !members.contains(i))
                        .collect();
                    return Err(self.failure(Violation::Liveness {
                        detail: format!(
                            "a converged cluster was disrupted: node {id} is {} at term {} (leader {leader} held term {term}); nodes outside the configuration: {removed:?}",
                            r.role(),
                            r.term()
                        ),
                    }));
                }
            }
        }
        Ok(())
    }

    fn converged(&self, leader: u64) -> bool {
        let Some(l) = self.c.try_node(leader) else {
            return false;
        };
        if l.role() != Role::Leader || l.commit_index() != l.last_index() {
            return false;
        }
        let (commit, last) = (l.commit_index(), l.last_index());
        self.members_of(leader).iter().all(|id| {
            !self.c.write_pending(*id)
                && self.c.try_node(*id).is_some_and(|r| {
                    r.last_index() == last
                        && r.commit_index() == commit
                        && r.applied_index() == commit
                })
        })
    }
}
