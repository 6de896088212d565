//! The protocol state machine.
//!
//! # Method groups
//!
//! - **Inputs:** [`Raft::step`] (a message from a peer) and [`Raft::tick`]
//!   (one unit of logical time).
//! - **Commands:** [`Raft::propose`], [`Raft::propose_conf_change`],
//!   [`Raft::read_index`], [`Raft::transfer_leadership`],
//!   [`Raft::campaign`], [`Raft::compact`].
//! - **Output:** [`Raft::ready`] hands out one [`Ready`] batch; the driver
//!   handles it as its documentation prescribes, then calls
//!   [`Raft::advance`]. Inputs and commands may be given between `ready`
//!   and `advance`; `ready` may not be called again before `advance`.
//! - **Inspection:** [`Raft::status`] and the accessors.
//!
//! All input goes through [`Raft::step`], which settles terms once and then
//! dispatches by role. A message from a peer is never trusted to be
//! well-formed: nonsense is dropped with a log line. A broken *internal*
//! invariant (say, truncating a committed entry) panics.

use crate::config::{Config, ConfigError};
use crate::log::RaftLog;
use crate::membership::{Membership, MembershipError};
use crate::message::{
    Body, ConfChange, ConfChangeStep, Entry, EntryKind, Message, Snapshot, SnapshotMeta,
};
use crate::ready::{InitialState, ReadState, Ready};
use crate::rng::Rng;
use crate::types::{HardState, LogIndex, NodeId, Role, SoftState, Term};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use tracing::{debug, info, warn};

/// Why a proposal was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// Only the leader takes proposals. `leader` is who to ask instead.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// A leadership transfer is under way; retry once it ends.
    #[error("leadership transfer to {0} in progress")]
    TransferInProgress(NodeId),
    /// Another membership change has not committed yet.
    #[error("a membership change is already in progress (at index {0})")]
    ConfChangeInProgress(LogIndex),
    /// The membership change is invalid.
    #[error("invalid membership change: {0}")]
    Membership(#[from] MembershipError),
}

/// Why a leadership transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Only the leader can transfer leadership.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// The target is not a voter.
    #[error("node {0} is not a voter")]
    NotAVoter(NodeId),
    /// The target is this node.
    #[error("node {0} is already the leader")]
    AlreadyLeader(NodeId),
}

/// Why a message was refused by [`Raft::step`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The message is addressed to another node.
    #[error("message for node {to} delivered to node {me}")]
    Misaddressed {
        /// The addressee.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
    /// The sender claims the reserved id 0.
    #[error("message from the reserved node id 0")]
    ZeroSender,
}

/// Why a compaction request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompactError {
    /// Only applied entries may be compacted.
    #[error("index {index} is not applied yet (applied: {applied})")]
    NotApplied {
        /// The requested index.
        index: LogIndex,
        /// The applied index.
        applied: LogIndex,
    },
    /// A snapshot at or beyond this index already exists.
    #[error("index {index} is not newer than the latest snapshot at {newest}")]
    Stale {
        /// The requested index.
        index: LogIndex,
        /// The newest snapshot's index.
        newest: LogIndex,
    },
}

/// Where a follower's replication stands, as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Probing for the match point: one AppendEntries at a time.
    Probe,
    /// Streaming: AppendEntries pipelined up to the in-flight window.
    Replicate,
    /// Receiving a snapshot.
    Snapshot,
}

#[derive(Debug, Clone)]
struct Progress {
    matched: LogIndex,
    next: LogIndex,
    state: ProgressState,
    /// In Probe: an AppendEntries is outstanding; wait for an answer or a
    /// heartbeat response before the next.
    probe_sent: bool,
    /// In Replicate: the last index and byte size of each message in
    /// flight.
    inflight: VecDeque<(LogIndex, u64)>,
    inflight_bytes: u64,
    /// Heard from since the last check-quorum round.
    recent_active: bool,
    /// Leader ticks in Replicate without the match index advancing.
    stall_ticks: u32,
    /// The node's tick count when this peer last answered.
    last_heard: u64,
    /// In Snapshot: the transfer under way.
    snap: Option<SnapshotTransfer>,
}

#[derive(Debug, Clone)]
struct SnapshotTransfer {
    index: LogIndex,
    /// The next byte offset the follower asked for.
    offset: u64,
    /// Ticks since the last chunk was sent or acknowledged.
    idle_ticks: u32,
}

impl Progress {
    fn new(next: LogIndex, now: u64) -> Self {
        Progress {
            last_heard: now,
            matched: 0,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            recent_active: false,
            stall_ticks: 0,
            snap: None,
        }
    }

    fn become_probe(&mut self, next: LogIndex) {
        self.state = ProgressState::Probe;
        self.next = next.max(self.matched + 1);
        self.probe_sent = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
        self.snap = None;
    }

    fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched + 1;
        self.probe_sent = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
        self.snap = None;
    }

    fn is_paused(&self, cfg: &Config) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => {
                self.inflight.len() >= cfg.max_inflight_msgs
                    || self.inflight_bytes >= cfg.max_inflight_bytes
            }
            ProgressState::Snapshot => true,
        }
    }

    fn ack(&mut self, index: LogIndex) {
        while let Some(&(last, bytes)) = self.inflight.front() {
            if last > index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
    }
}

/// The leader's view of one peer, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerProgress {
    /// The highest index known to be replicated there.
    pub matched: LogIndex,
    /// The next index to send.
    pub next: LogIndex,
    /// How replication to it proceeds.
    pub state: ProgressState,
    /// Whether it answered since the last check-quorum round.
    pub recent_active: bool,
    /// Whether it is a learner.
    pub learner: bool,
}

/// A node's view of itself and, on a leader, of its followers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// Whom it voted for in `term`.
    pub vote: NodeId,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The commit index.
    pub commit: LogIndex,
    /// The applied index.
    pub applied: LogIndex,
    /// The last log index.
    pub last_index: LogIndex,
    /// The index of the snapshot the log starts after.
    pub snapshot_index: LogIndex,
    /// The membership in force (the latest appended).
    pub membership: Membership,
    /// On a leader: every other member's replication progress.
    pub progress: BTreeMap<NodeId, PeerProgress>,
    /// On a leader: the target of a leadership transfer under way.
    pub transferee: Option<NodeId>,
}

#[derive(Debug, Clone)]
struct PendingRead {
    /// The caller's tag (local) or the follower's tag (remote).
    ctx: u64,
    /// Who asked: this node or a follower.
    from: NodeId,
    /// The commit index when the read arrived.
    index: LogIndex,
    /// The heartbeat round that confirms it.
    round: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Handed {
    last_index: LogIndex,
    last_term: Term,
    applied: LogIndex,
}

/// One node's Raft protocol state machine. See the module docs for how to
/// drive it.
#[derive(Debug)]
pub struct Raft {
    cfg: Config,
    id: NodeId,
    term: Term,
    vote: NodeId,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,

    /// The configuration at the log's offset (the snapshot's, or the
    /// bootstrap one).
    base_membership: Membership,
    /// Configurations appended after the offset, in log order.
    conf_history: Vec<(LogIndex, Membership)>,
    /// The configuration in force: the latest appended.
    membership: Membership,

    progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    /// Ticks since this node started: its own monotonic clock, for
    /// check-quorum and leases.
    now: u64,
    /// Started from persisted state (not a brand-new member).
    restarted: bool,
    /// When each recent heartbeat round was sent (round, tick), oldest
    /// first: a quorum's acknowledgement of a round proves every follower in
    /// it restarted its election timer after that tick.
    round_sent_at: VecDeque<(u64, u64)>,
    randomized_timeout: u32,
    rng: Rng,

    msgs: Vec<Message>,
    persisted_msgs: Vec<Message>,
    /// Proposals were appended since the last `ready`: replicate them then,
    /// so one message per follower carries the whole batch.
    pending_bcast: bool,
    /// The commit index moved: tell followers even if nothing else is new.
    pending_commit_bcast: bool,

    prev_soft: SoftState,
    prev_hard: HardState,
    handed: Option<Handed>,

    /// Index of the last membership change appended by this leader.
    pending_conf_index: LogIndex,
    lead_transferee: Option<NodeId>,

    read_round: u64,
    /// A read round opened since the last `ready`; its heartbeats go out
    /// then, so every read of one batch shares one round.
    pending_read_round: Option<u64>,
    pending_reads: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term.
    reads_awaiting_commit: Vec<(u64, NodeId)>,
    /// Acknowledgements of the latest read round, per peer: the highest
    /// round each peer echoed in this term.
    read_acks: BTreeMap<NodeId, u64>,
    read_states: Vec<ReadState>,
    failed_reads: Vec<u64>,

    /// A snapshot being received from the leader, and bytes so far.
    incoming_snapshot: Option<(SnapshotMeta, Vec<u8>, u64)>,
    /// A received snapshot to hand to the driver.
    pending_snapshot: Option<Snapshot>,
    /// The application's latest snapshot, for sending to followers.
    local_snapshot: Option<Snapshot>,
}

impl Raft {
    /// A node of a brand-new cluster (or a node joining one, with empty
    /// `voters`), with an empty log.
    pub fn new(cfg: Config) -> Result<Raft, ConfigError> {
        Self::restore(cfg, InitialState::default())
    }

    /// A node restarted from what it had persisted. The membership comes
    /// from the snapshot and the log if they hold one, else from the
    /// config's bootstrap voters.
    pub fn restore(cfg: Config, state: InitialState) -> Result<Raft, ConfigError> {
        cfg.validate()?;
        let (offset, offset_term, base_membership) = match &state.snapshot {
            Some(meta) => (meta.index, meta.term, meta.membership.clone()),
            None => {
                let mut m = Membership::new(cfg.voters.iter().copied());
                m.learners = cfg.learners.iter().copied().collect();
                (0, 0, m)
            }
        };
        let mut log = RaftLog::new(offset, offset_term);
        for e in state.entries {
            if e.index != log.last_index() + 1 {
                return Err(ConfigError::InconsistentState(format!(
                    "log entry {} follows {}: the stored log has a gap",
                    e.index,
                    log.last_index()
                )));
            }
            if e.term < log.last_term() {
                return Err(ConfigError::InconsistentState(format!(
                    "log entry {} has term {} below its predecessor's {}",
                    e.index,
                    e.term,
                    log.last_term()
                )));
            }
            log.append(e);
        }
        let fresh = state.hard_state == HardState::default()
            && state.snapshot.is_none()
            && log.last_index() == 0;
        let mut hs = state.hard_state;
        let mut bootstrap = false;
        if fresh && !cfg.voters.is_empty() {
            // A brand-new cluster member writes the initial configuration as
            // entry 1 (term 1), identical on every initial member; the first
            // leader commits it with its own first entry. Nodes that join
            // later learn the membership from it like any other change,
            // instead of from their own config.
            let cc = ConfChange {
                steps: cfg
                    .voters
                    .iter()
                    .map(|v| ConfChangeStep::AddVoter(*v))
                    .chain(cfg.learners.iter().map(|l| ConfChangeStep::AddLearner(*l)))
                    .collect(),
                context: Bytes::new(),
            };
            log.append(Entry {
                term: 1,
                index: 1,
                kind: EntryKind::ConfChange,
                data: Bytes::from(
                    postcard::to_allocvec(&cc).expect("encoding a ConfChange cannot fail"),
                ),
            });
            hs = HardState {
                term: 1,
                vote: NodeId::NONE,
                commit: 0,
            };
            bootstrap = true;
        }
        let commit = hs.commit.max(offset);
        if commit > log.last_index() {
            return Err(ConfigError::InconsistentState(format!(
                "commit index {} is beyond the last stored entry {}",
                hs.commit,
                log.last_index()
            )));
        }
        log.committed = commit;
        if !bootstrap {
            log.handed = log.last_index();
            log.persisted = log.last_index();
        }
        let id = cfg.id;
        let mut rng = Rng::new(cfg.seed ^ id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let randomized_timeout = rng.range(
            u64::from(cfg.election_ticks),
            2 * u64::from(cfg.election_ticks),
        ) as u32;
        let mut raft = Raft {
            id,
            term: hs.term,
            vote: hs.vote,
            role: Role::Follower,
            leader: None,
            log,
            membership: base_membership.clone(),
            base_membership,
            conf_history: Vec::new(),
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            now: 0,
            restarted: !fresh,
            round_sent_at: VecDeque::new(),
            randomized_timeout,
            rng,
            msgs: Vec::new(),
            persisted_msgs: Vec::new(),
            pending_bcast: false,
            pending_commit_bcast: false,
            prev_soft: SoftState {
                role: Role::Follower,
                leader: None,
                term: hs.term,
            },
            prev_hard: if bootstrap {
                HardState::default()
            } else {
                HardState {
                    term: hs.term,
                    vote: hs.vote,
                    commit,
                }
            },
            handed: None,
            pending_conf_index: 0,
            lead_transferee: None,
            read_round: 0,
            pending_read_round: None,
            pending_reads: VecDeque::new(),
            reads_awaiting_commit: Vec::new(),
            read_acks: BTreeMap::new(),
            read_states: Vec::new(),
            failed_reads: Vec::new(),
            incoming_snapshot: None,
            pending_snapshot: None,
            local_snapshot: None,
            cfg,
        };
        raft.rebuild_membership();
        raft.role = raft.follower_role();
        raft.prev_soft.role = raft.role;
        info!(
            node = %raft.id, term = raft.term, commit = raft.log.committed,
            last_index = raft.log.last_index(), voters = ?raft.membership.voters,
            "raft node started"
        );
        Ok(raft)
    }

    // ------------------------------------------------------------------
    // Inspection
    // ------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader this node knows of in the current term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The commit index.
    pub fn commit_index(&self) -> LogIndex {
        self.log.committed
    }

    /// The applied index (advanced past).
    pub fn applied_index(&self) -> LogIndex {
        self.log.applied
    }

    /// The last log index.
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// The term of the last log entry.
    pub fn last_term(&self) -> Term {
        self.log.last_term()
    }

    /// The index the in-memory log starts after (the latest snapshot or
    /// compaction point).
    pub fn snapshot_index(&self) -> LogIndex {
        self.log.offset
    }

    /// The highest index known durable on this node.
    pub fn persisted_index(&self) -> LogIndex {
        self.log.persisted
    }

    /// The term of the entry at `index`, if the in-memory log holds it.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// The entry at `index`, if the in-memory log holds it.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The entries held in memory, in order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.log.iter()
    }

    /// The membership in force (the latest appended configuration).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The hard state as it stands now (possibly not yet persisted).
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    /// A snapshot of this node's view, for operators.
    pub fn status(&self) -> Status {
        let progress = if self.role == Role::Leader {
            self.progress
                .iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, p)| {
                    (
                        *id,
                        PeerProgress {
                            matched: p.matched,
                            next: p.next,
                            state: p.state,
                            recent_active: p.recent_active,
                            learner: self.membership.is_learner(*id),
                        },
                    )
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            commit: self.log.committed,
            applied: self.log.applied,
            last_index: self.log.last_index(),
            snapshot_index: self.log.offset,
            membership: self.membership.clone(),
            progress,
            transferee: self.lead_transferee,
        }
    }

    // ------------------------------------------------------------------
    // Output
    // ------------------------------------------------------------------

    /// Whether [`Raft::ready`] would return anything.
    pub fn has_ready(&self) -> bool {
        if self.handed.is_some() {
            return false;
        }
        self.pending_bcast
            || self.pending_commit_bcast
            || !self.msgs.is_empty()
            || !self.persisted_msgs.is_empty()
            || self.soft_state() != self.prev_soft
            || self.hard_state() != self.prev_hard
            || self.log.handed < self.log.last_index()
            || self.pending_snapshot.is_some()
            || self.log.applied < self.log.committed
            || self.pending_read_round.is_some()
            || !self.read_states.is_empty()
            || !self.failed_reads.is_empty()
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            leader: self.leader,
            term: self.term,
        }
    }

    /// Takes everything the driver must do now. See [`Ready`] for the order
    /// in which to do it. Call [`Raft::advance`] when done.
    ///
    /// # Panics
    ///
    /// If the previous `Ready` has not been advanced.
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.handed.is_none(),
            "Raft::ready called twice without Raft::advance"
        );
        if self.role == Role::Leader && (self.pending_bcast || self.pending_commit_bcast) {
            let empty_ok = self.pending_commit_bcast;
            self.bcast_append(empty_ok);
        }
        self.pending_bcast = false;
        self.pending_commit_bcast = false;
        if let Some(round) = self.pending_read_round.take() {
            if self.role == Role::Leader {
                self.bcast_heartbeat(round);
            }
        }

        let mut rd = Ready::default();
        let soft = self.soft_state();
        if soft != self.prev_soft {
            rd.soft_state = Some(soft);
            self.prev_soft = soft;
        }
        let hard = self.hard_state();
        if hard != self.prev_hard {
            rd.hard_state = Some(hard);
            self.prev_hard = hard;
        }
        rd.snapshot = self.pending_snapshot.take();
        let last = self.log.last_index();
        if self.log.handed < last {
            rd.entries = self.log.range(self.log.handed + 1, last, u64::MAX);
            self.log.handed = last;
        }
        rd.messages = std::mem::take(&mut self.msgs);
        rd.persisted_messages = std::mem::take(&mut self.persisted_msgs);
        let apply_to = self.log.committed.min(self.log.handed);
        let mut applied = self.log.applied;
        if let Some(s) = &rd.snapshot {
            // The driver restores the state machine from it before applying.
            applied = applied.max(s.meta.index);
        }
        if apply_to > applied {
            rd.committed_entries = self
                .log
                .range(applied + 1, apply_to, self.cfg.max_apply_bytes);
            if let Some(e) = rd.committed_entries.last() {
                applied = e.index;
            }
        }
        rd.read_states = std::mem::take(&mut self.read_states);
        rd.failed_reads = std::mem::take(&mut self.failed_reads);
        self.handed = Some(Handed {
            last_index: self.log.handed,
            last_term: self.log.term(self.log.handed).unwrap_or(0),
            applied,
        });
        rd
    }

    /// Acknowledges the last [`Ready`]: its writes are durable, its messages
    /// sent and its committed entries applied.
    ///
    /// # Panics
    ///
    /// If there is no outstanding `Ready`.
    pub fn advance(&mut self) {
        let h = self
            .handed
            .take()
            .expect("Raft::advance called without an outstanding Ready");
        // Entries handed then may have been truncated since (a new leader's
        // log won); only what still matches is durable as handed.
        if h.last_index > self.log.persisted && self.log.matches(h.last_index, h.last_term) {
            self.log.persisted = h.last_index;
        } else if h.last_index > self.log.persisted {
            self.log.persisted = self.log.persisted.max(self.log.handed.min(h.last_index));
        }
        if h.applied > self.log.applied {
            self.log.applied = h.applied;
        }
        if self.role == Role::Leader {
            let persisted = self.log.persisted;
            if let Some(pr) = self.progress.get_mut(&self.id) {
                if persisted > pr.matched {
                    pr.matched = persisted;
                    pr.next = pr.next.max(persisted + 1);
                }
            }
            if self.maybe_commit() {
                self.pending_commit_bcast = true;
            }
        }
    }

    // ------------------------------------------------------------------
    // Inputs
    // ------------------------------------------------------------------

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.now += 1;
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.role == Role::Leader {
            self.tick_leader();
        } else if self.election_elapsed >= self.randomized_timeout && self.promotable() {
            self.election_elapsed = 0;
            debug!(node = %self.id, term = self.term, "election timeout");
            self.campaign_inner(false, false);
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.tick_snapshot_transfers();
        self.tick_stalled_replication();
        if self.cfg.check_quorum {
            // A sliding window: step down as soon as fewer than a quorum
            // have answered within the last election timeout, so a cut-off
            // leader lasts at most one timeout, not two.
            let me = self.id;
            let now = self.now;
            let window = u64::from(self.cfg.election_ticks);
            let active = {
                let progress = &self.progress;
                self.membership.is_quorum(|id| {
                    id == me
                        || progress
                            .get(&id)
                            .is_some_and(|p| now.saturating_sub(p.last_heard) < window)
                })
            };
            if !active {
                warn!(
                    node = %self.id, term = self.term,
                    "leader lost contact with a quorum; stepping down (check-quorum)"
                );
                let term = self.term;
                self.become_follower(term, None);
                return;
            }
        }
        if self.election_elapsed >= self.cfg.election_ticks {
            self.election_elapsed = 0;
            let me = self.id;
            for (id, pr) in self.progress.iter_mut() {
                if *id != me {
                    pr.recent_active = false;
                }
            }
            if let Some(t) = self.lead_transferee.take() {
                warn!(node = %self.id, term = self.term, target = %t,
                    "leadership transfer timed out; resuming as leader");
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat(0);
        }
    }

    /// Feeds one message from a peer.
    pub fn step(&mut self, m: Message) -> Result<(), StepError> {
        if m.to != self.id {
            return Err(StepError::Misaddressed {
                to: m.to,
                me: self.id,
            });
        }
        if m.from.is_none() {
            return Err(StepError::ZeroSender);
        }
        if m.term > self.term {
            match &m.body {
                Body::RequestVote {
                    transfer,
                    last_log_index,
                    last_log_term,
                    ..
                } => {
                    // A candidate that is not a voter here and whose log is
                    // behind ours was removed and missed it (the usual case).
                    // We would refuse its vote anyway; what we skip is
                    // adopting its term, which is always safe to skip (as if
                    // the message were lost). Otherwise a removed node timing
                    // out again and again would depose leader after leader
                    // (thesis section 4.2.3); stickiness below does the same
                    // only with check-quorum on and while a leader is heard.
                    // A candidate whose log is up to date is heard as usual:
                    // it may know a configuration that adds it, which this
                    // node has not seen yet.
                    if !self.membership.voters.is_empty()
                        && !self.membership.is_voter(m.from)
                        && !self.log.is_up_to_date(*last_log_index, *last_log_term)
                    {
                        debug!(node = %self.id, from = %m.from, term = self.term, msg_term = m.term,
                            "ignoring vote request from {}, which is not a voter here and is behind", m.from);
                        return Ok(());
                    }
                    // Leader stickiness: while this node hears from a leader,
                    // it ignores candidates (unless the leader itself asked for
                    // the election by a transfer). This is what keeps a node
                    // returning from a partition from deposing a healthy
                    // leader.
                    // With lease reads, a freshly (re)started node also waits
                    // one election timeout before voting: it may have
                    // acknowledged a leader's heartbeat just before it
                    // crashed, and that leader may be serving lease reads.
                    let booting = self.cfg.lease_read
                        && self.restarted
                        && self.now < u64::from(self.cfg.election_ticks);
                    let in_lease = self.cfg.check_quorum
                        && (self.leader.is_some() || booting)
                        && self.election_elapsed < self.cfg.election_ticks;
                    if in_lease && !transfer {
                        debug!(node = %self.id, from = %m.from, term = self.term,
                            "ignoring vote request from {} while a leader is active", m.from);
                        return Ok(());
                    }
                    if let Body::RequestVote { pre_vote: true, .. } = m.body {
                        // A pre-vote probe never changes our term.
                    } else {
                        self.become_follower(m.term, None);
                    }
                }
                Body::RequestVoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {
                    // Granted pre-votes carry the term we would campaign in.
                }
                Body::AppendEntries { .. }
                | Body::Heartbeat { .. }
                | Body::InstallSnapshot { .. } => {
                    self.become_follower(m.term, Some(m.from));
                }
                _ => {
                    self.become_follower(m.term, None);
                }
            }
        } else if m.term < self.term {
            match &m.body {
                Body::AppendEntries { .. } | Body::Heartbeat { .. } => {
                    // A stale leader learns the new term from the answer and
                    // steps down (the paper's rule for every request from an
                    // older term). Without it, a node whose term was raised
                    // while the leader went on (back from a partition under
                    // pre-vote or check-quorum, or lagging behind a removal
                    // and courted by removed nodes) could wait forever: the
                    // leader keeps sending, the node keeps dropping, and the
                    // node may never time out itself to tell the leader.
                    self.send(
                        m.from,
                        Body::AppendEntriesResponse {
                            success: false,
                            index: 0,
                            hint_term: 0,
                            hint_index: 0,
                        },
                    );
                }
                Body::RequestVote { pre_vote: true, .. } => {
                    self.send(
                        m.from,
                        Body::RequestVoteResponse {
                            pre_vote: true,
                            granted: false,
                        },
                    );
                }
                _ => {
                    debug!(node = %self.id, from = %m.from, msg_term = m.term, term = self.term,
                        kind = m.body.name(), "dropping message from an older term");
                }
            }
            return Ok(());
        }

        match m.body {
            Body::RequestVote {
                pre_vote,
                last_log_index,
                last_log_term,
                ..
            } => self.handle_vote_request(m.from, m.term, pre_vote, last_log_index, last_log_term),
            Body::RequestVoteResponse { pre_vote, granted } => {
                self.handle_vote_response(m.from, m.term, pre_vote, granted)
            }
            _ => match self.role {
                Role::Leader => self.step_leader(m),
                Role::Candidate | Role::PreCandidate => self.step_candidate(m),
                Role::Follower | Role::Learner => self.step_follower(m),
            },
        }
        Ok(())
    }

    // ------------------------------------------------------------------
    // Commands
    // ------------------------------------------------------------------

    /// Appends `data` to the log if this node is the leader, returning the
    /// term and index it was given. The entry is replicated at the next
    /// [`Raft::ready`], batched with every other proposal made before it.
    ///
    /// An accepted proposal is committed at that (term, index), or the
    /// caller learns it was superseded: a different entry (a different
    /// term) is committed at that index.
    pub fn propose(&mut self, data: Bytes) -> Result<(Term, LogIndex), ProposeError> {
        self.check_can_propose()?;
        Ok(self.append_new(EntryKind::Normal, data))
    }

    /// Proposes a membership change. One change may be in flight at a time;
    /// it takes effect on every node as soon as it is appended there.
    pub fn propose_conf_change(
        &mut self,
        cc: ConfChange,
    ) -> Result<(Term, LogIndex), ProposeError> {
        self.check_can_propose()?;
        if self.pending_conf_index > self.log.committed {
            return Err(ProposeError::ConfChangeInProgress(self.pending_conf_index));
        }
        // Validate before appending: a refused change never enters the log.
        self.membership.apply_change(&cc)?;
        let data =
            Bytes::from(postcard::to_allocvec(&cc).expect("encoding a ConfChange cannot fail"));
        let (term, index) = self.append_new(EntryKind::ConfChange, data);
        Ok((term, index))
    }

    /// Starts an election now (if this node may), skipping pre-vote. For
    /// tests and for operators forcing a leader. Unlike a leadership
    /// transfer it does not override leader stickiness: nodes that hear
    /// from a live leader ignore it, so it cannot break a leader's lease.
    pub fn campaign(&mut self) {
        if self.promotable() && self.role != Role::Leader {
            self.campaign_inner(true, false);
        }
    }

    /// Asks for a linearizable read. Once its read index is known it shows
    /// up in [`Ready::read_states`] tagged with `ctx`; the caller serves the
    /// read after applying up to that index. If it cannot be served it shows
    /// up in [`Ready::failed_reads`].
    pub fn read_index(&mut self, ctx: u64) {
        match self.role {
            Role::Leader => self.leader_read(ctx, self.id),
            Role::Follower | Role::Learner => match self.leader {
                Some(l) => self.send(l, Body::ReadIndex { ctx }),
                None => self.failed_reads.push(ctx),
            },
            Role::Candidate | Role::PreCandidate => self.failed_reads.push(ctx),
        }
    }

    /// Hands leadership to `to` (thesis section 3.10): proposals are refused
    /// meanwhile; once `to` is up to date it is told to campaign at once. The
    /// transfer is abandoned after an election timeout.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.id {
            return Err(TransferError::AlreadyLeader(to));
        }
        if !self.membership.is_voter(to) {
            return Err(TransferError::NotAVoter(to));
        }
        if self.lead_transferee == Some(to) {
            return Ok(());
        }
        info!(node = %self.id, term = self.term, target = %to, "leadership transfer started");
        self.lead_transferee = Some(to);
        // The transfer has one election timeout to complete.
        self.election_elapsed = 0;
        let up_to_date = self
            .progress
            .get(&to)
            .is_some_and(|p| p.matched == self.log.last_index());
        if up_to_date {
            self.send_timeout_now(to);
        } else {
            self.send_append(to, true);
        }
        Ok(())
    }

    /// Tells the core that the application holds a snapshot of its state as
    /// of `index` (which must be applied), with `data` its serialized form.
    /// The log is compacted up to `index - compaction_lag`; the snapshot is
    /// kept to send to followers that fall behind the compacted log.
    ///
    /// Returns the snapshot's description (index, term, and the membership
    /// as of `index`), which the driver stores beside the data so that a
    /// restart can hand it to [`Raft::restore`].
    pub fn compact(&mut self, index: LogIndex, data: Bytes) -> Result<SnapshotMeta, CompactError> {
        if index > self.log.applied {
            return Err(CompactError::NotApplied {
                index,
                applied: self.log.applied,
            });
        }
        let newest = self.local_snapshot.as_ref().map_or(0, |s| s.meta.index);
        if index <= newest || index < self.log.offset {
            return Err(CompactError::Stale { index, newest });
        }
        let term = self
            .log
            .term(index)
            .expect("applied index at or after the log offset lies within the log");
        let membership = self.membership_at(index);
        self.local_snapshot = Some(Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                membership: membership.clone(),
            },
            data,
        });
        let to = index.saturating_sub(self.cfg.compaction_lag);
        if to > self.log.offset {
            let at = self.membership_at(to);
            self.log.compact_to(to);
            self.conf_history.retain(|(i, _)| *i > to);
            self.base_membership = at;
        }
        info!(node = %self.id, index, compacted_to = self.log.offset, "snapshot taken, log compacted");
        Ok(SnapshotMeta {
            index,
            term,
            membership,
        })
    }

    /// The description a snapshot taken at `index` would carry, if the log
    /// still knows that index's term.
    pub fn snapshot_meta(&self, index: LogIndex) -> Option<SnapshotMeta> {
        Some(SnapshotMeta {
            index,
            term: self.log.term(index)?,
            membership: self.membership_at(index),
        })
    }

    /// Sets the snapshot a restarted node offers to followers (the one its
    /// storage holds), without compacting.
    pub fn set_local_snapshot(&mut self, snapshot: Snapshot) {
        self.local_snapshot = Some(snapshot);
    }

    // ------------------------------------------------------------------
    // Role changes
    // ------------------------------------------------------------------

    fn follower_role(&self) -> Role {
        if self.membership.is_learner(self.id) {
            Role::Learner
        } else {
            Role::Follower
        }
    }

    fn promotable(&self) -> bool {
        self.membership.is_voter(self.id) && self.pending_snapshot.is_none()
    }

    fn reset(&mut self, term: Term) {
        self.fail_pending_reads();
        self.pending_read_round = None;
        if term != self.term {
            self.term = term;
            self.vote = NodeId::NONE;
        }
        self.leader = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_timeout = self.rng.range(
            u64::from(self.cfg.election_ticks),
            2 * u64::from(self.cfg.election_ticks),
        ) as u32;
        self.votes.clear();
        self.lead_transferee = None;
        self.read_acks.clear();
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        let was_leader = self.role == Role::Leader;
        self.reset(term);
        self.role = self.follower_role();
        self.leader = leader;
        self.progress.clear();
        if was_leader {
            info!(node = %self.id, term, "stepped down from leader");
        }
        if let Some(l) = leader {
            debug!(node = %self.id, term, leader = %l, "following leader");
        }
    }

    fn become_pre_candidate(&mut self) {
        // Pre-vote changes neither the term nor the vote.
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
        self.votes.insert(self.id, true);
        info!(node = %self.id, term, "starting pre-vote");
    }

    fn become_candidate(&mut self) {
        let term = self.term + 1;
        self.reset(term);
        self.role = Role::Candidate;
        self.vote = self.id;
        self.votes.insert(self.id, true);
        info!(node = %self.id, term, "starting election");
    }

    fn become_leader(&mut self) {
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.id);
        let last = self.log.last_index();
        self.progress.clear();
        for id in self.replication_targets() {
            let mut pr = Progress::new(last + 1, self.now);
            if id == self.id {
                pr.matched = self.log.persisted;
                pr.state = ProgressState::Replicate;
            }
            pr.recent_active = true;
            self.progress.insert(id, pr);
        }
        // No membership change until this term's first entry commits: an
        // uncommitted change from an earlier term may still be in the log.
        self.pending_conf_index = last;
        info!(node = %self.id, term, last_index = last, "became leader");
        // An empty entry of our own term lets earlier terms' entries commit
        // (paper section 5.4.2) and lets reads be served.
        self.append_new(EntryKind::Noop, Bytes::new());
    }

    fn campaign_inner(&mut self, skip_pre_vote: bool, transfer: bool) {
        let pre = self.cfg.pre_vote && !skip_pre_vote;
        if pre {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
        if self.tally() == Some(true) {
            // A single-voter cluster wins at once.
            if pre {
                self.become_candidate();
            }
            self.become_leader();
            return;
        }
        self.send_vote_requests(pre, transfer);
    }

    fn send_vote_requests(&mut self, pre: bool, transfer: bool) {
        let term = if pre { self.term + 1 } else { self.term };
        let (li, lt) = (self.log.last_index(), self.log.last_term());
        for id in self.membership.all_voters() {
            if id == self.id {
                continue;
            }
            let m = Message {
                from: self.id,
                to: id,
                term,
                body: Body::RequestVote {
                    pre_vote: pre,
                    last_log_index: li,
                    last_log_term: lt,
                    transfer,
                },
            };
            if pre {
                self.msgs.push(m);
            } else {
                // Our own vote for ourselves must be durable before anyone
                // acts on this election.
                self.persisted_msgs.push(m);
            }
        }
    }

    /// `Some(true)` if granted votes form a quorum, `Some(false)` if
    /// rejections make one impossible, `None` while undecided.
    fn tally(&self) -> Option<bool> {
        let votes = &self.votes;
        if self
            .membership
            .is_quorum(|id| votes.get(&id) == Some(&true))
        {
            Some(true)
        } else if self
            .membership
            .is_quorum_impossible(|id| votes.get(&id) == Some(&false))
        {
            Some(false)
        } else {
            None
        }
    }

    // ------------------------------------------------------------------
    // Elections
    // ------------------------------------------------------------------

    fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        let can_vote = self.vote == from
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        let up_to_date = self.log.is_up_to_date(last_log_index, last_log_term);
        if can_vote && up_to_date {
            if pre_vote {
                debug!(node = %self.id, candidate = %from, term, "granting pre-vote");
                self.msgs.push(Message {
                    from: self.id,
                    to: from,
                    term,
                    body: Body::RequestVoteResponse {
                        pre_vote: true,
                        granted: true,
                    },
                });
            } else {
                info!(node = %self.id, candidate = %from, term, "granting vote");
                self.election_elapsed = 0;
                self.vote = from;
                // The vote is in the hard state of this Ready; the grant may
                // leave only once it is durable.
                self.persisted_msgs.push(Message {
                    from: self.id,
                    to: from,
                    term: self.term,
                    body: Body::RequestVoteResponse {
                        pre_vote: false,
                        granted: true,
                    },
                });
            }
        } else {
            debug!(node = %self.id, candidate = %from, term, pre_vote, up_to_date,
                vote = %self.vote, "rejecting vote request");
            self.send(
                from,
                Body::RequestVoteResponse {
                    pre_vote,
                    granted: false,
                },
            );
        }
    }

    fn handle_vote_response(&mut self, from: NodeId, term: Term, pre_vote: bool, granted: bool) {
        let expected = if pre_vote {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        if self.role != expected {
            return;
        }
        // A granted pre-vote answers for term + 1; anything else for our term.
        let for_term = if pre_vote { self.term + 1 } else { self.term };
        if granted && term != for_term {
            return;
        }
        if !self.membership.is_voter(from) {
            return;
        }
        self.votes.entry(from).or_insert(granted);
        match self.tally() {
            Some(true) => {
                if pre_vote {
                    self.become_candidate();
                    if self.tally() == Some(true) {
                        self.become_leader();
                    } else {
                        self.send_vote_requests(false, false);
                    }
                } else {
                    self.become_leader();
                }
            }
            Some(false) => {
                info!(node = %self.id, term = self.term, pre_vote, "election lost");
                let t = self.term;
                self.become_follower(t, None);
            }
            None => {}
        }
    }

    // ------------------------------------------------------------------
    // Per-role message handling
    // ------------------------------------------------------------------

    fn step_candidate(&mut self, m: Message) {
        match m.body {
            Body::AppendEntries { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => {
                // A leader exists for our term: we lost.
                let term = self.term;
                self.become_follower(term, Some(m.from));
                self.step_follower(m);
            }
            Body::TimeoutNow => {
                debug!(node = %self.id, "ignoring TimeoutNow while campaigning");
            }
            Body::ReadIndex { ctx } => {
                self.send(
                    m.from,
                    Body::ReadIndexResponse {
                        ctx,
                        index: 0,
                        ok: false,
                    },
                );
            }
            _ => {}
        }
    }

    fn step_follower(&mut self, m: Message) {
        match m.body {
            Body::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.handle_append(
                    m.from,
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                );
            }
            Body::Heartbeat { leader_commit, ctx } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                // The leader caps leader_commit at what it knows we hold.
                let c = leader_commit.min(self.log.last_index());
                if c > self.log.committed {
                    self.log.committed = c;
                }
                self.send(m.from, Body::HeartbeatResponse { ctx });
            }
            Body::InstallSnapshot {
                meta,
                offset,
                total,
                data,
            } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.handle_snapshot_chunk(m.from, meta, offset, total, data);
            }
            Body::TimeoutNow => {
                if self.promotable() {
                    info!(node = %self.id, term = self.term, from = %m.from,
                        "leadership transfer: campaigning at once");
                    self.campaign_inner(true, true);
                } else {
                    debug!(node = %self.id, "ignoring TimeoutNow: not promotable");
                }
            }
            Body::ReadIndex { ctx } => {
                // Not the leader: cannot serve a read index.
                self.send(
                    m.from,
                    Body::ReadIndexResponse {
                        ctx,
                        index: 0,
                        ok: false,
                    },
                );
            }
            Body::ReadIndexResponse { ctx, index, ok } => {
                if ok {
                    self.read_states.push(ReadState { ctx, index });
                } else {
                    self.failed_reads.push(ctx);
                }
            }
            _ => {
                debug!(node = %self.id, from = %m.from, kind = m.body.name(),
                    "follower ignoring message");
            }
        }
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
    ) {
        if prev < self.log.committed {
            self.ack_up_to_commit(from);
            return;
        }
        // Entries must be contiguous after prev and carry sane terms; a
        // message that breaks that is garbage from a faulty peer.
        let well_formed = entries.iter().enumerate().all(|(i, e)| {
            e.index == prev + 1 + i as u64
                && e.term <= self.term
                && e.term
                    >= if i == 0 {
                        prev_term
                    } else {
                        entries[i - 1].term
                    }
        });
        if !well_formed {
            warn!(node = %self.id, from = %from, "dropping malformed AppendEntries");
            return;
        }
        if self.log.matches(prev, prev_term) {
            let last_new = prev + entries.len() as u64;
            if let Some(pos) = entries
                .iter()
                .position(|e| !self.log.matches(e.index, e.term))
            {
                let first = entries[pos].index;
                if first <= self.log.last_index() && self.handed.is_some() {
                    // A Ready is outstanding: the driver may be writing
                    // these entries, and holds acknowledgements (of them or
                    // of earlier copies) that it will send once its write is
                    // durable. Truncating now would make those a lie by the
                    // time they leave; the leader retries after `advance`.
                    debug!(node = %self.id, from = %from, first,
                        "deferring a conflicting append until the write in flight completes");
                    return;
                }
                if first <= self.log.last_index() {
                    assert!(
                        first > self.log.committed,
                        "leader {from} conflicts with committed entry {first}"
                    );
                    info!(node = %self.id, from_index = first,
                        dropped = self.log.last_index() - first + 1,
                        "truncating conflicting log suffix");
                    self.log.truncate_from(first);
                    self.truncate_conf_history(first);
                    self.clamp_queued_acks(first);
                }
                for e in entries.into_iter().skip(pos) {
                    self.append_entry(e);
                }
            }
            let c = leader_commit.min(last_new);
            if c > self.log.committed {
                self.log.committed = c;
            }
            self.persisted_send(
                from,
                Body::AppendEntriesResponse {
                    success: true,
                    index: last_new,
                    hint_term: 0,
                    hint_index: 0,
                },
            );
        } else {
            let (hint_index, hint_term) = self.log.find_conflict_by_term(prev, prev_term);
            debug!(node = %self.id, from = %from, prev, prev_term, hint_index, hint_term,
                "rejecting AppendEntries: log mismatch");
            self.persisted_send(
                from,
                Body::AppendEntriesResponse {
                    success: false,
                    index: prev,
                    hint_term,
                    hint_index,
                },
            );
        }
    }

    fn step_leader(&mut self, m: Message) {
        let from = m.from;
        if !self.progress.contains_key(&from) {
            debug!(node = %self.id, from = %from, kind = m.body.name(),
                "leader ignoring message from a non-member");
            return;
        }
        match m.body {
            Body::AppendEntriesResponse {
                success,
                index,
                hint_term,
                hint_index,
            } => self.handle_append_response(from, success, index, hint_term, hint_index),
            Body::HeartbeatResponse { ctx } => {
                let last = self.log.last_index();
                let behind = match self.progress.get_mut(&from) {
                    Some(pr) => {
                        pr.recent_active = true;
                        pr.last_heard = self.now;
                        pr.probe_sent = false;
                        if pr.state == ProgressState::Replicate
                            && pr.inflight.len() >= self.cfg.max_inflight_msgs
                        {
                            // The follower is alive but the window is full:
                            // free one slot (as etcd does) so a lost append
                            // is found by the next send's consistency check
                            // within a heartbeat, not a stall timeout.
                            if let Some((_, bytes)) = pr.inflight.pop_front() {
                                pr.inflight_bytes -= bytes;
                            }
                        }
                        pr.matched < last
                    }
                    None => false,
                };
                if behind {
                    // In Probe this resends the probe (even an empty one: a
                    // lost probe must not stall the follower). In Replicate
                    // it sends whatever the window allows; lost appends are
                    // caught by the stall timer in `tick_leader`.
                    self.send_append(from, true);
                }
                if ctx > 0 {
                    self.ack_read_round(from, ctx);
                }
            }
            Body::InstallSnapshotResponse {
                index,
                next_offset,
                reject,
            } => self.handle_snapshot_response(from, index, next_offset, reject),
            Body::ReadIndex { ctx } => self.leader_read(ctx, from),
            Body::AppendEntries { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => {
                // Two leaders in one term would break election safety; the
                // vote rules make it impossible, so this is a broken peer.
                warn!(node = %self.id, from = %from, term = self.term,
                    "another node claims leadership of this term; ignoring it");
            }
            _ => {}
        }
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        index: LogIndex,
        hint_term: Term,
        hint_index: LogIndex,
    ) {
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.last_heard = self.now;
        if !success {
            // A rejection answers one particular probe; an old one is stale.
            let stale = match pr.state {
                ProgressState::Replicate => index <= pr.matched,
                ProgressState::Probe => index + 1 != pr.next,
                ProgressState::Snapshot => true,
            };
            if stale || index == 0 {
                return;
            }
            let probe = if hint_term > 0 {
                self.log.find_conflict_by_term(hint_index, hint_term).0
            } else {
                hint_index
            };
            let pr = self.progress.get_mut(&from).expect("checked above");
            let next = (probe + 1).min(index).max(pr.matched + 1);
            debug!(node = %self.id, peer = %from, rejected = index, next, "follower rejected; backing off");
            pr.become_probe(next);
            self.send_append(from, true);
            return;
        }
        if index > last {
            warn!(node = %self.id, peer = %from, index, last,
                "peer acknowledged entries this leader never sent; ignoring");
            return;
        }
        pr.probe_sent = false;
        let advanced = index > pr.matched;
        if advanced {
            pr.matched = index;
            pr.stall_ticks = 0;
        }
        pr.next = pr.next.max(index + 1);
        pr.ack(index);
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot => {
                if pr.snap.as_ref().is_none_or(|s| pr.matched >= s.index) {
                    pr.become_probe(pr.matched + 1);
                }
            }
            ProgressState::Replicate => {}
        }
        if advanced && self.maybe_commit() {
            self.pending_commit_bcast = true;
        }
        while self.send_append(from, false) {}
        if self.lead_transferee == Some(from)
            && self.progress.get(&from).is_some_and(|p| p.matched == last)
        {
            self.send_timeout_now(from);
        }
    }

    // ------------------------------------------------------------------
    // Replication
    // ------------------------------------------------------------------

    fn send(&mut self, to: NodeId, body: Body) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            body,
        });
    }

    fn persisted_send(&mut self, to: NodeId, body: Body) {
        self.persisted_msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            body,
        });
    }

    fn send_timeout_now(&mut self, to: NodeId) {
        info!(node = %self.id, term = self.term, target = %to, "sending TimeoutNow");
        self.send(to, Body::TimeoutNow);
    }

    /// Sends the next AppendEntries to `to` if its window allows. Returns
    /// whether a message carrying entries was sent (callers loop on it to
    /// fill a pipeline).
    fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(pr) = self.progress.get(&to) else {
            return false;
        };
        if to == self.id || pr.is_paused(&self.cfg) {
            return false;
        }
        let prev = pr.next - 1;
        let Some(prev_term) = self.log.term(prev) else {
            // The entries it needs are compacted away.
            self.start_snapshot_transfer(to);
            return false;
        };
        let entries = self.log.slice(
            pr.next,
            self.cfg.max_entries_per_msg,
            self.cfg.max_bytes_per_msg,
        );
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let pr = self.progress.get_mut(&to).expect("checked above");
        let sent_entries = !entries.is_empty();
        match pr.state {
            ProgressState::Replicate => {
                if let Some(last) = entries.last() {
                    let bytes: u64 = entries.iter().map(Entry::size).sum();
                    pr.next = last.index + 1;
                    pr.inflight.push_back((last.index, bytes));
                    pr.inflight_bytes += bytes;
                }
            }
            ProgressState::Probe => pr.probe_sent = true,
            ProgressState::Snapshot => return false,
        }
        let commit = self.log.committed;
        self.send(
            to,
            Body::AppendEntries {
                prev_log_index: prev,
                prev_log_term: prev_term,
                entries,
                leader_commit: commit,
            },
        );
        sent_entries
            && self
                .progress
                .get(&to)
                .is_some_and(|p| p.state == ProgressState::Replicate)
    }

    fn bcast_append(&mut self, send_if_empty: bool) {
        let peers: Vec<NodeId> = self
            .progress
            .keys()
            .copied()
            .filter(|id| *id != self.id)
            .collect();
        for id in peers {
            if self.send_append(id, send_if_empty) {
                while self.send_append(id, false) {}
            }
        }
    }

    /// Sends a heartbeat round to every peer. `round` 0 opens a new round;
    /// a read opens one through `pending_read_round`.
    fn bcast_heartbeat(&mut self, round: u64) {
        let ctx = if round == 0 {
            self.read_round += 1;
            self.read_round
        } else {
            round
        };
        self.round_sent_at.push_back((ctx, self.now));
        // Rounds older than two election timeouts can no longer confirm a
        // lease; keep the newest one in any case.
        let horizon = self
            .now
            .saturating_sub(2 * u64::from(self.cfg.election_ticks));
        while self.round_sent_at.len() > 1
            && self
                .round_sent_at
                .front()
                .is_some_and(|(_, t)| *t < horizon)
        {
            self.round_sent_at.pop_front();
        }
        let commit = self.log.committed;
        let peers: Vec<(NodeId, LogIndex)> = self
            .progress
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, p)| (*id, p.matched))
            .collect();
        for (id, matched) in peers {
            self.send(
                id,
                Body::Heartbeat {
                    leader_commit: commit.min(matched),
                    ctx,
                },
            );
        }
    }

    fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if let Some(t) = self.lead_transferee {
            return Err(ProposeError::TransferInProgress(t));
        }
        if !self.membership.is_voter(self.id) {
            // This leader's own configuration no longer includes it: it
            // steps down once that commits, and a proposal taken now could
            // be lost with it.
            return Err(ProposeError::NotLeader { leader: None });
        }
        Ok(())
    }

    fn append_new(&mut self, kind: EntryKind, data: Bytes) -> (Term, LogIndex) {
        let index = self.log.last_index() + 1;
        let term = self.term;
        self.append_entry(Entry {
            term,
            index,
            kind,
            data,
        });
        if kind == EntryKind::ConfChange {
            self.pending_conf_index = index;
        }
        self.pending_bcast = true;
        (term, index)
    }

    fn append_entry(&mut self, e: Entry) {
        let conf = if e.kind == EntryKind::ConfChange {
            Some((e.index, e.data.clone()))
        } else {
            None
        };
        self.log.append(e);
        if let Some((index, data)) = conf {
            self.apply_conf_entry(index, &data);
        }
    }

    /// Commits the highest index a quorum holds, if it is of this term
    /// (paper Figure 8: entries of earlier terms commit only indirectly).
    fn maybe_commit(&mut self) -> bool {
        let progress = &self.progress;
        let idx = self
            .membership
            .committed_index(|id| progress.get(&id).map_or(0, |p| p.matched));
        if idx > self.log.committed && self.log.term(idx) == Some(self.term) {
            self.log.committed = idx;
            self.release_reads_awaiting_commit();
            self.on_commit_advanced();
            true
        } else {
            false
        }
    }

    fn on_commit_advanced(&mut self) {
        // A committed joint configuration is left automatically; a leader
        // that is no longer a voter steps down once its removal commits.
        if self.role != Role::Leader {
            return;
        }
        // Nodes removed by a configuration that has now committed get no
        // more entries (see `replication_targets`). No allocation here: this
        // runs on every commit.
        let conf_committed = self
            .conf_history
            .last()
            .is_none_or(|(i, _)| *i <= self.log.committed);
        if conf_committed
            && self
                .progress
                .keys()
                .any(|id| !self.membership.contains(*id))
        {
            let m = &self.membership;
            self.progress.retain(|id, _| m.contains(*id));
        }
        if self.pending_conf_index <= self.log.committed {
            if self.membership.is_joint()
                && self
                    .conf_history
                    .last()
                    .is_some_and(|(i, _)| *i <= self.log.committed)
                && self.lead_transferee.is_none()
            {
                let data = Bytes::from(
                    postcard::to_allocvec(&ConfChange::default())
                        .expect("encoding a ConfChange cannot fail"),
                );
                let (_, index) = self.append_new(EntryKind::ConfChange, data);
                info!(node = %self.id, index, "leaving joint configuration");
            } else if !self.membership.is_voter(self.id)
                && self
                    .conf_history
                    .last()
                    .is_some_and(|(i, _)| *i <= self.log.committed)
            {
                info!(node = %self.id, term = self.term,
                    "this leader was removed from the voters; stepping down");
                let t = self.term;
                self.become_follower(t, None);
            }
        }
    }

    // ------------------------------------------------------------------
    // Membership
    // ------------------------------------------------------------------

    fn apply_conf_entry(&mut self, index: LogIndex, data: &[u8]) {
        let next = match postcard::from_bytes::<ConfChange>(data) {
            Ok(cc) => match self.membership.apply_change(&cc) {
                Ok(m) => m,
                Err(e) => {
                    // The leader validated the change against the same log,
                    // so every node reaches the same verdict.
                    warn!(node = %self.id, index, error = %e, "membership change entry is invalid; ignored");
                    self.membership.clone()
                }
            },
            Err(e) => {
                warn!(node = %self.id, index, error = %e, "undecodable membership change entry; ignored");
                self.membership.clone()
            }
        };
        info!(node = %self.id, index, voters = ?next.voters, outgoing = ?next.outgoing,
            learners = ?next.learners, "membership changed");
        self.conf_history.push((index, next));
        self.set_membership();
    }

    fn truncate_conf_history(&mut self, from: LogIndex) {
        let before = self.conf_history.len();
        self.conf_history.retain(|(i, _)| *i < from);
        if self.conf_history.len() != before {
            self.set_membership();
        }
    }

    fn rebuild_membership(&mut self) {
        self.conf_history.clear();
        self.membership = self.base_membership.clone();
        let confs: Vec<(LogIndex, Bytes)> = self
            .log
            .iter()
            .filter(|e| e.kind == EntryKind::ConfChange)
            .map(|e| (e.index, e.data.clone()))
            .collect();
        for (i, d) in confs {
            self.apply_conf_entry(i, &d);
        }
    }

    /// The nodes a leader replicates to: the members of its latest
    /// configuration and, until that configuration commits, those of the
    /// committed one. A node being removed so learns of its removal from
    /// the log and stops campaigning; otherwise it would time out as soon
    /// as the removal is appended and could, with members that lag behind
    /// it, win an election and cost the entries the leader had not yet
    /// committed. Only the latest configuration counts toward any quorum.
    fn replication_targets(&self) -> BTreeSet<NodeId> {
        let mut targets = self.membership.members();
        if self
            .conf_history
            .last()
            .is_some_and(|(i, _)| *i > self.log.committed)
        {
            targets.extend(self.membership_at(self.log.committed).members());
        }
        targets
    }

    fn membership_at(&self, index: LogIndex) -> Membership {
        self.conf_history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or_else(|| self.base_membership.clone(), |(_, m)| m.clone())
    }

    fn set_membership(&mut self) {
        self.membership = self
            .conf_history
            .last()
            .map_or_else(|| self.base_membership.clone(), |(_, m)| m.clone());
        if self.role == Role::Leader {
            let last = self.log.last_index();
            let members = self.replication_targets();
            self.progress.retain(|id, _| members.contains(id));
            for id in members {
                self.progress.entry(id).or_insert_with(|| {
                    let mut p = Progress::new(last + 1, self.now);
                    p.recent_active = true;
                    p
                });
            }
        } else if matches!(self.role, Role::Follower | Role::Learner) {
            self.role = self.follower_role();
        }
    }

    // ------------------------------------------------------------------
    // Reads
    // ------------------------------------------------------------------

    fn committed_in_term(&self) -> bool {
        self.log.term(self.log.committed) == Some(self.term)
    }

    fn leader_read(&mut self, ctx: u64, from: NodeId) {
        if !self.committed_in_term() {
            // A new leader does not know the latest commit index until an
            // entry of its own term commits.
            self.reads_awaiting_commit.push((ctx, from));
            return;
        }
        let index = self.log.committed;
        let single = self.membership.all_voters().len() == 1 && self.membership.is_voter(self.id);
        if single || (self.cfg.lease_read && self.lease_valid()) {
            self.finish_read(ctx, from, index);
            return;
        }
        // Reads that arrive between two `ready` calls share one round.
        let round = match self.pending_read_round {
            Some(r) => r,
            None => {
                self.read_round += 1;
                self.pending_read_round = Some(self.read_round);
                self.read_round
            }
        };
        self.pending_reads.push_back(PendingRead {
            ctx,
            from,
            index,
            round,
        });
    }

    fn ack_read_round(&mut self, from: NodeId, round: u64) {
        let e = self.read_acks.entry(from).or_insert(0);
        if round > *e {
            *e = round;
        } else {
            return;
        }
        // The highest round a quorum has echoed confirms every read of that
        // round and before.
        let acks = &self.read_acks;
        let me = self.id;
        let mut confirmed = 0;
        for r in self.pending_reads.iter().map(|r| r.round) {
            if r <= confirmed {
                continue;
            }
            if self
                .membership
                .is_quorum(|id| id == me || acks.get(&id).is_some_and(|a| *a >= r))
            {
                confirmed = r;
            } else {
                break;
            }
        }
        while self
            .pending_reads
            .front()
            .is_some_and(|r| r.round <= confirmed)
        {
            let r = self.pending_reads.pop_front().expect("front exists");
            self.finish_read(r.ctx, r.from, r.index);
        }
    }

    fn finish_read(&mut self, ctx: u64, from: NodeId, index: LogIndex) {
        if from == self.id {
            self.read_states.push(ReadState { ctx, index });
        } else {
            self.send(
                from,
                Body::ReadIndexResponse {
                    ctx,
                    index,
                    ok: true,
                },
            );
        }
    }

    /// Whether this leader holds a lease: a quorum acknowledged a heartbeat
    /// round sent less than three quarters of an election timeout ago. Every
    /// follower in that quorum restarted its election timer after the round
    /// was sent and ignores candidates for a full election timeout of its
    /// own ticks (leader stickiness), so no other leader can exist before
    /// the lease ends, provided tick rates differ by less than 25%. No lease
    /// during a leadership transfer, which bypasses stickiness.
    fn lease_valid(&self) -> bool {
        if self.lead_transferee.is_some() || !self.cfg.check_quorum {
            return false;
        }
        let me = self.id;
        let acks = &self.read_acks;
        let lease = u64::from(self.cfg.election_ticks) * 3 / 4;
        for &(round, sent) in self.round_sent_at.iter().rev() {
            if self.now.saturating_sub(sent) >= lease {
                return false;
            }
            if self
                .membership
                .is_quorum(|id| id == me || acks.get(&id).is_some_and(|a| *a >= round))
            {
                return true;
            }
        }
        false
    }

    fn release_reads_awaiting_commit(&mut self) {
        if !self.committed_in_term() {
            return;
        }
        for (ctx, from) in std::mem::take(&mut self.reads_awaiting_commit) {
            self.leader_read(ctx, from);
        }
    }

    fn fail_pending_reads(&mut self) {
        let pending: Vec<(u64, NodeId)> = self
            .pending_reads
            .drain(..)
            .map(|r| (r.ctx, r.from))
            .chain(self.reads_awaiting_commit.drain(..))
            .collect();
        for (ctx, from) in pending {
            if from == self.id {
                self.failed_reads.push(ctx);
            } else {
                self.send(
                    from,
                    Body::ReadIndexResponse {
                        ctx,
                        index: 0,
                        ok: false,
                    },
                );
            }
        }
    }

    // ------------------------------------------------------------------
    // Snapshots
    // ------------------------------------------------------------------

    fn start_snapshot_transfer(&mut self, to: NodeId) {
        let Some(snap) = self.local_snapshot.as_ref() else {
            warn!(node = %self.id, peer = %to,
                "peer needs compacted entries but no snapshot is available");
            return;
        };
        let index = snap.meta.index;
        let bytes = snap.data.len();
        let Some(pr) = self.progress.get_mut(&to) else {
            return;
        };
        info!(node = %self.id, peer = %to, index, bytes, "sending snapshot to lagging peer");
        pr.state = ProgressState::Snapshot;
        pr.probe_sent = false;
        pr.inflight.clear();
        pr.inflight_bytes = 0;
        pr.snap = Some(SnapshotTransfer {
            index,
            offset: 0,
            idle_ticks: 0,
        });
        self.send_snapshot_chunk(to);
    }

    /// Sends the chunk at the follower's acknowledged offset. Chunks go one
    /// at a time (each acknowledgement releases the next), so a transfer
    /// never floods the link and heartbeats keep flowing beside it; a lost
    /// chunk or acknowledgement is resent after an idle timeout, from the
    /// acknowledged offset, so a hiccup resumes rather than restarts.
    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(snap) = self.local_snapshot.as_ref() else {
            return;
        };
        let Some(t) = self.progress.get_mut(&to).and_then(|p| p.snap.as_mut()) else {
            return;
        };
        if t.index != snap.meta.index {
            // A newer snapshot replaced the one being sent: start over.
            t.index = snap.meta.index;
            t.offset = 0;
        }
        t.idle_ticks = 0;
        let total = snap.data.len() as u64;
        let offset = t.offset.min(total);
        let end = (offset + self.cfg.snapshot_chunk_bytes).min(total);
        let body = Body::InstallSnapshot {
            meta: snap.meta.clone(),
            offset,
            total,
            data: snap.data.slice(offset as usize..end as usize),
        };
        self.send(to, body);
    }

    /// A follower in Replicate that answers heartbeats but acknowledges
    /// nothing for an election timeout lost some AppendEntries (a dropped
    /// message leaves no trace otherwise, and a full window would stay
    /// full). Fall back to probing from its match index.
    fn tick_stalled_replication(&mut self) {
        let last = self.log.last_index();
        let limit = self.cfg.election_ticks;
        let mut stalled = Vec::new();
        for (id, pr) in self.progress.iter_mut() {
            if *id == self.id || pr.state != ProgressState::Replicate || pr.matched >= last {
                pr.stall_ticks = 0;
                continue;
            }
            pr.stall_ticks += 1;
            if pr.stall_ticks >= limit {
                stalled.push(*id);
            }
        }
        for id in stalled {
            if let Some(pr) = self.progress.get_mut(&id) {
                debug!(node = %self.id, peer = %id, matched = pr.matched, next = pr.next,
                    "replication stalled; probing from the match index");
                let m = pr.matched;
                pr.become_probe(m + 1);
            }
            self.send_append(id, true);
        }
    }

    /// Tells the core that `peer` could not be reached (its transport queue
    /// is full or the connection is down), so messages to it were lost:
    /// replication to it falls back to probing.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        if self.role != Role::Leader || peer == self.id {
            return;
        }
        if let Some(pr) = self.progress.get_mut(&peer) {
            if pr.state == ProgressState::Replicate {
                let m = pr.matched;
                pr.become_probe(m + 1);
            }
        }
    }

    fn tick_snapshot_transfers(&mut self) {
        let timeout = self.cfg.election_ticks;
        let mut resend = Vec::new();
        for (id, pr) in self.progress.iter_mut() {
            if let Some(t) = pr.snap.as_mut() {
                t.idle_ticks += 1;
                if t.idle_ticks >= timeout {
                    resend.push(*id);
                }
            }
        }
        for id in resend {
            debug!(node = %self.id, peer = %id, "snapshot chunk unanswered; resending");
            self.send_snapshot_chunk(id);
        }
    }

    fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        index: LogIndex,
        next_offset: u64,
        reject: bool,
    ) {
        let total = self
            .local_snapshot
            .as_ref()
            .map_or(0, |s| s.data.len() as u64);
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.last_heard = self.now;
        let Some(t) = pr.snap.as_mut() else {
            return;
        };
        if t.index != index {
            return;
        }
        if reject {
            // The follower already holds everything the snapshot holds.
            pr.become_probe(pr.matched + 1);
            self.send_append(from, true);
            return;
        }
        if next_offset >= total {
            // Installed and persisted on the follower.
            info!(node = %self.id, peer = %from, index, "snapshot installed on peer");
            pr.matched = pr.matched.max(index);
            pr.become_probe(index + 1);
            self.send_append(from, true);
            return;
        }
        if next_offset == t.offset {
            // A duplicate acknowledgement: the chunk for this offset is
            // already on its way, or was lost and the idle timer resends it.
            return;
        }
        // Either progress, or the follower lost its partial copy (restart)
        // and asks to resume from an earlier offset.
        t.offset = next_offset;
        self.send_snapshot_chunk(from);
    }

    fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        total: u64,
        data: Bytes,
    ) {
        let index = meta.index;
        if index <= self.log.committed {
            // We already hold everything it contains.
            self.persisted_send(
                from,
                Body::InstallSnapshotResponse {
                    index,
                    next_offset: 0,
                    reject: true,
                },
            );
            self.ack_up_to_commit(from);
            return;
        }
        let same = self
            .incoming_snapshot
            .as_ref()
            .is_some_and(|(m, _, t)| m.index == index && m.term == meta.term && *t == total);
        if !same {
            if offset != 0 {
                // We lost the start (or restarted): ask for it from zero.
                self.send(
                    from,
                    Body::InstallSnapshotResponse {
                        index,
                        next_offset: 0,
                        reject: false,
                    },
                );
                return;
            }
            self.incoming_snapshot = Some((meta.clone(), Vec::new(), total));
        }
        let (_, buf, _) = self.incoming_snapshot.as_mut().expect("set above");
        let have = buf.len() as u64;
        if have < total {
            if offset != have || have + data.len() as u64 > total {
                // Out of order or duplicate: tell the leader where we are.
                self.send(
                    from,
                    Body::InstallSnapshotResponse {
                        index,
                        next_offset: have,
                        reject: false,
                    },
                );
                return;
            }
            buf.extend_from_slice(&data);
            let have = buf.len() as u64;
            if have < total {
                self.send(
                    from,
                    Body::InstallSnapshotResponse {
                        index,
                        next_offset: have,
                        reject: false,
                    },
                );
                return;
            }
        }
        // Complete. If it replaces log entries that the driver is writing
        // right now (and will acknowledge), wait for that write: the leader
        // resends the last chunk and we install then.
        if !self.log.matches(meta.index, meta.term) && self.handed.is_some() {
            debug!(node = %self.id, index, "deferring snapshot install until the write in flight completes");
            return;
        }
        let (meta, buf, _) = self.incoming_snapshot.take().expect("set above");
        self.install_snapshot(Snapshot {
            meta,
            data: Bytes::from(buf),
        });
        // The acknowledgement promises the snapshot is durable.
        self.persisted_send(
            from,
            Body::InstallSnapshotResponse {
                index,
                next_offset: total,
                reject: false,
            },
        );
    }

    /// Tells the leader that our log matches its own up to our commit index
    /// (true of any leader's log, by leader completeness).
    fn ack_up_to_commit(&mut self, to: NodeId) {
        let c = self.log.committed;
        self.persisted_send(
            to,
            Body::AppendEntriesResponse {
                success: true,
                index: c,
                hint_term: 0,
                hint_index: 0,
            },
        );
    }

    /// After truncating the log from `from`, acknowledgements queued for the
    /// next `Ready` must not claim the dropped entries: they would reach an
    /// old leader that may count them toward a commit.
    fn clamp_queued_acks(&mut self, from: LogIndex) {
        for m in &mut self.persisted_msgs {
            if let Body::AppendEntriesResponse {
                success: true,
                index,
                ..
            } = &mut m.body
            {
                if *index >= from {
                    *index = from - 1;
                }
            }
        }
    }

    fn install_snapshot(&mut self, snap: Snapshot) {
        let meta = &snap.meta;
        info!(node = %self.id, index = meta.index, term = meta.term, bytes = snap.data.len(),
            "installing snapshot from leader");
        if self.log.matches(meta.index, meta.term) {
            // Our log already extends it: keep the suffix, just commit.
            // `applied` moves only when the driver advances past the Ready
            // that hands it the snapshot.
            self.log.committed = self.log.committed.max(meta.index);
            self.log.compact_to(meta.index);
            self.conf_history.retain(|(i, _)| *i > meta.index);
            self.base_membership = meta.membership.clone();
            self.log.handed = self.log.handed.max(meta.index);
        } else {
            self.log.reset_to_snapshot(meta.index, meta.term);
            self.conf_history.clear();
            self.base_membership = meta.membership.clone();
        }
        self.set_membership();
        self.local_snapshot = Some(snap.clone());
        self.pending_snapshot = Some(snap);
    }
}
