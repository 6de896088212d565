//! The runtime: one tokio task per node that drives a [`raft_core::Raft`].
//!
//! [`RaftNode::start`] recovers a node from its [`LogStore`] and spawns the
//! task; the returned [`RaftHandle`] (cheap to clone) proposes, reads,
//! changes membership, transfers leadership, reports status and streams
//! [`Event`]s.
//!
//! The task is a thin driver: it waits for the next input (a tick, a
//! message from a peer, a request from a handle), feeds it to the core,
//! then handles every [`raft_core::Ready`] exactly as its documentation
//! prescribes: send what may go at once, persist with one
//! [`LogStore::persist`] call per `Ready` (group commit: every proposal that
//! arrived meanwhile shares the write), send what promised durability,
//! apply, serve reads, advance.
//!
//! What it must never do: acknowledge anything that may not be durable
//! (a failed write stops the node), or let memory grow with load (the
//! proposal queue and the number of proposals awaiting commit are bounded;
//! beyond them callers get [`Error::Busy`] at once).

mod driver;
mod handle;
pub mod peers;

pub use handle::RaftHandle;
pub use peers::{decode_peer_addresses, encode_peer_addresses};

use crate::state_machine::StateMachine;
use crate::store::LogStore;
use bytes::Bytes;
use raft_core::{LogIndex, Membership, NodeId, Role, Term, Transport};
use std::collections::BTreeMap;
use std::time::Duration;

/// How a node runs, beyond the protocol settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The protocol settings (id, bootstrap voters, ticks, limits, seed).
    /// A node joining a running cluster starts with no voters: it learns the
    /// membership from the leader's log once a member adds it (for example
    /// with [`RaftHandle::add_learner`]).
    pub raft: raft_core::Config,
    /// Wall-clock length of one tick. Election timeouts are
    /// `raft.election_ticks` of these.
    pub tick_interval: Duration,
    /// Proposals, membership changes and reads waiting for the node task.
    /// When full, callers get [`Error::Busy`] at once.
    pub proposal_queue: usize,
    /// Most accepted proposals waiting to be applied. While this many wait,
    /// the node takes no more from the queue (which then fills up).
    pub max_pending: usize,
    /// Most requests, and separately most peer messages, taken in one turn
    /// of the loop before the resulting `Ready` is handled.
    pub max_batch: usize,
    /// How long a caller waits for an answer before getting
    /// [`Error::Timeout`] (the outcome is then unknown).
    pub request_timeout: Duration,
    /// Take a state-machine snapshot and compact the log every this many
    /// applied entries. 0 disables snapshots.
    pub snapshot_every: u64,
    /// Largest proposal accepted, in bytes. Keep it below the transport's
    /// frame limit.
    pub max_proposal_bytes: usize,
    /// Known addresses of other nodes, handed to the transport at start.
    /// Nodes added later announce theirs through membership changes.
    pub peers: BTreeMap<NodeId, String>,
    /// Events buffered per subscriber; a subscriber that falls further
    /// behind skips events (and is told how many).
    pub event_capacity: usize,
}

impl NodeConfig {
    /// Defaults around the given protocol settings: 100 ms ticks, a queue
    /// of 4096, snapshots every 10 000 entries.
    pub fn new(raft: raft_core::Config) -> Self {
        NodeConfig {
            raft,
            tick_interval: Duration::from_millis(100),
            proposal_queue: 4096,
            max_pending: 65_536,
            max_batch: 1024,
            request_timeout: Duration::from_secs(10),
            snapshot_every: 10_000,
            max_proposal_bytes: 4 << 20,
            peers: BTreeMap::new(),
            event_capacity: 1024,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        self.raft
            .validate()
            .map_err(|e| Error::Invalid(format!("raft config: {e}")))?;
        let positive = [
            ("tick_interval", !self.tick_interval.is_zero()),
            ("proposal_queue", self.proposal_queue > 0),
            ("max_pending", self.max_pending > 0),
            ("max_batch", self.max_batch > 0),
            ("request_timeout", !self.request_timeout.is_zero()),
            ("max_proposal_bytes", self.max_proposal_bytes > 0),
            ("event_capacity", self.event_capacity > 0),
        ];
        for (name, ok) in positive {
            if !ok {
                return Err(Error::Invalid(format!("{name} must be greater than zero")));
            }
        }
        Ok(())
    }
}

/// What went wrong with a request. Variants say whether the request may
/// have taken effect: only [`Error::Timeout`], [`Error::Unknown`] and
/// (for a request already accepted) [`Error::Shutdown`], [`Error::Store`]
/// and [`Error::StateMachine`] leave the outcome open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This node is not the leader; ask `leader` if known. Nothing was done.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The proposal queue is full. Nothing was done; retry later.
    #[error("the node is busy: its proposal queue is full")]
    Busy,
    /// The proposal was superseded: another entry was committed at its
    /// index. It will never be applied.
    #[error("the proposal was dropped: another entry was committed in its place")]
    Dropped,
    /// No answer in time. The outcome is unknown: the write may still
    /// commit.
    #[error("timed out; the outcome is unknown")]
    Timeout,
    /// The outcome cannot be known (e.g. the entry's index was covered by a
    /// snapshot from the leader before this node saw it applied).
    #[error("the outcome is unknown: {0}")]
    Unknown(String),
    /// The leader cannot take this request now (a leadership transfer or a
    /// membership change is under way). Nothing was done; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The read could not be confirmed (leadership lost or unknown).
    #[error("the read could not be confirmed (leader: {leader:?})")]
    ReadFailed {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The node has stopped.
    #[error("the node is shut down")]
    Shutdown,
    /// Storage failed; the node stopped rather than acknowledge what may not
    /// be durable.
    #[error("storage failed, node stopped: {0}")]
    Store(String),
    /// The state machine failed; the node stopped.
    #[error("state machine failed, node stopped: {0}")]
    StateMachine(String),
    /// The request is malformed or not allowed. Nothing was done.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// A proposal that was committed and applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Its log index.
    pub index: LogIndex,
    /// Its term.
    pub term: Term,
    /// The state machine's response (empty for membership changes).
    pub response: Bytes,
}

/// Something that happened on a node, for watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The node's role changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The term it holds it in.
        term: Term,
    },
    /// The node entered a new term.
    TermChanged {
        /// The new term.
        term: Term,
    },
    /// The leader this node knows of changed.
    LeaderChanged {
        /// The new leader, if any.
        leader: Option<NodeId>,
        /// In this term.
        term: Term,
    },
    /// A membership change was applied (or a snapshot brought one).
    MembershipChanged {
        /// The log index it took effect at.
        index: LogIndex,
        /// The members now.
        membership: Membership,
    },
    /// Entries up to `index` were applied.
    Applied {
        /// The applied index.
        index: LogIndex,
    },
    /// A snapshot was taken here or installed from the leader.
    Snapshot {
        /// The index it covers.
        index: LogIndex,
        /// Whether it came from the leader.
        installed: bool,
    },
    /// The node stopped; `error` says why if it was not asked to.
    Stopped {
        /// The fatal error, if any.
        error: Option<String>,
    },
}

/// A node's view of itself, as of the last turn of its loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The commit index.
    pub commit_index: LogIndex,
    /// The index applied to the state machine.
    pub applied_index: LogIndex,
    /// The last log index.
    pub last_log_index: LogIndex,
    /// The index the log starts after (latest snapshot or compaction).
    pub snapshot_index: LogIndex,
    /// The membership in force (the latest appended).
    pub membership: Membership,
    /// Proposals accepted and not yet applied.
    pub pending_proposals: usize,
    /// False once the node task has stopped.
    pub running: bool,
}

/// Starts nodes. See [`RaftNode::start`].
#[derive(Debug)]
pub struct RaftNode;

impl RaftNode {
    /// Recovers a node from `store` (restoring the state machine from the
    /// store's snapshot, if any) and starts its task on the current tokio
    /// runtime.
    ///
    /// Errors: [`Error::Invalid`] for a bad configuration or a stored state
    /// that contradicts itself, [`Error::Store`] if the store cannot be
    /// read, [`Error::StateMachine`] if the snapshot cannot be restored.
    pub async fn start<T, S, M>(
        config: NodeConfig,
        transport: T,
        store: S,
        state_machine: M,
    ) -> Result<RaftHandle, Error>
    where
        T: Transport,
        S: LogStore,
        M: StateMachine,
    {
        config.validate()?;
        driver::start(config, transport, store, state_machine).await
    }
}
