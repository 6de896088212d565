//! The messages nodes exchange, and the log entries they carry.
//!
//! There is one [`Message`] type for every transport; the wire form is
//! produced by [`crate::codec`]. Nothing here trusts its sender: the protocol
//! state machine validates every field it reads.

use crate::membership::Membership;
use crate::types::{LogIndex, NodeId, Term};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What an entry means to the state machine that applies it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// Application data, handed to the state machine as is.
    Normal,
    /// A membership change: `data` is a postcard-encoded [`ConfChange`].
    ConfChange,
    /// The empty entry a new leader appends to commit earlier terms' entries
    /// (Raft paper, section 5.4.2). Applications skip it.
    Noop,
}

/// One record of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// How to interpret `data`.
    pub kind: EntryKind,
    /// The payload.
    pub data: Bytes,
}

impl Entry {
    /// The number of bytes this entry adds to a message, roughly: used for
    /// the byte limits on batches and in-flight windows.
    pub fn size(&self) -> u64 {
        self.data.len() as u64 + 24
    }
}

/// One step of a membership change.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfChangeStep {
    /// Add a voter, or promote a learner to voter.
    AddVoter(NodeId),
    /// Add a non-voting learner, or demote a voter to learner.
    AddLearner(NodeId),
    /// Remove a voter or a learner.
    Remove(NodeId),
}

/// A membership change request, as stored in a [`EntryKind::ConfChange`]
/// entry. An empty `steps` list means "leave the joint configuration".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfChange {
    /// The changes, applied together through a joint configuration when more
    /// than one voter changes.
    pub steps: Vec<ConfChangeStep>,
    /// Opaque application data carried along (the runtime stores peer
    /// addresses here).
    pub context: Bytes,
}

/// What describes a snapshot, apart from its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The index of the last entry the snapshot includes.
    pub index: LogIndex,
    /// The term of that entry.
    pub term: Term,
    /// The membership in force at `index`.
    pub membership: Membership,
}

/// A snapshot: its description and the application's serialized state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Where in the log the snapshot stands.
    pub meta: SnapshotMeta,
    /// The application state as of `meta.index`.
    pub data: Bytes,
}

/// A message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The addressee.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request, the term it would campaign
    /// in).
    pub term: Term,
    /// What the message says.
    pub body: Body,
}

/// The kinds of message, as in the Raft paper plus the thesis' extensions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// RequestVote (paper section 5.2) or a pre-vote probe (thesis 9.6).
    RequestVote {
        /// A pre-vote probe changes no state on the receiver.
        pre_vote: bool,
        /// The candidate's last log index, for the up-to-date check (5.4.1).
        last_log_index: LogIndex,
        /// The candidate's last log term.
        last_log_term: Term,
        /// Set when the election was started by a leadership transfer, which
        /// lets it through leader stickiness.
        transfer: bool,
    },
    /// The answer to a [`Body::RequestVote`].
    RequestVoteResponse {
        /// Answers a pre-vote probe.
        pre_vote: bool,
        /// Whether the vote is granted.
        granted: bool,
    },
    /// AppendEntries (paper section 5.3), carrying zero or more entries.
    AppendEntries {
        /// The index of the entry just before `entries`.
        prev_log_index: LogIndex,
        /// Its term.
        prev_log_term: Term,
        /// The entries to append.
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: LogIndex,
    },
    /// The answer to an [`Body::AppendEntries`].
    AppendEntriesResponse {
        /// Whether the entries matched and were appended (and persisted:
        /// this message is only sent once they are durable).
        success: bool,
        /// On success, the index of the last entry now known to match the
        /// leader's; on rejection, the `prev_log_index` that was rejected.
        index: LogIndex,
        /// On rejection: the term of the follower's entry at the rejected
        /// index, or of its last entry if its log is shorter (0 if none).
        hint_term: Term,
        /// On rejection: the first index the follower holds for
        /// `hint_term`, or its last index plus one if its log is shorter.
        hint_index: LogIndex,
    },
    /// A leader's heartbeat. Carries no entries, so it may be sent at once.
    Heartbeat {
        /// The commit index the follower may adopt: the leader's commit,
        /// capped at what the follower is known to hold.
        leader_commit: LogIndex,
        /// A read-index round number, echoed back (0 if none).
        ctx: u64,
    },
    /// The answer to a [`Body::Heartbeat`].
    HeartbeatResponse {
        /// The echoed round number.
        ctx: u64,
    },
    /// One chunk of a snapshot the follower needs because the leader
    /// compacted the entries it lacks.
    InstallSnapshot {
        /// Which snapshot this chunk belongs to.
        meta: SnapshotMeta,
        /// The byte offset of `data` within the snapshot.
        offset: u64,
        /// The snapshot's total size in bytes.
        total: u64,
        /// The chunk's bytes.
        data: Bytes,
    },
    /// The answer to a [`Body::InstallSnapshot`] chunk.
    InstallSnapshotResponse {
        /// The index of the snapshot being acknowledged.
        index: LogIndex,
        /// The offset the follower wants next. Equal to the total size once
        /// the snapshot is installed and persisted.
        next_offset: u64,
        /// Whether the follower rejected the transfer (stale snapshot).
        reject: bool,
    },
    /// Leadership transfer: "start an election now" (thesis section 3.10).
    TimeoutNow,
    /// A follower asks the leader for a read index (thesis section 6.4).
    ReadIndex {
        /// The follower's tag for the request, echoed back.
        ctx: u64,
    },
    /// The leader's answer to a [`Body::ReadIndex`].
    ReadIndexResponse {
        /// The follower's tag.
        ctx: u64,
        /// The index the follower must apply before serving the read; 0 and
        /// `ok == false` if the leader could not serve it.
        index: LogIndex,
        /// Whether the leader confirmed its leadership for this read.
        ok: bool,
    },
}

impl Body {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Body::RequestVote { pre_vote: true, .. } => "pre_vote",
            Body::RequestVote { .. } => "request_vote",
            Body::RequestVoteResponse { pre_vote: true, .. } => "pre_vote_response",
            Body::RequestVoteResponse { .. } => "request_vote_response",
            Body::AppendEntries { .. } => "append_entries",
            Body::AppendEntriesResponse { .. } => "append_entries_response",
            Body::Heartbeat { .. } => "heartbeat",
            Body::HeartbeatResponse { .. } => "heartbeat_response",
            Body::InstallSnapshot { .. } => "install_snapshot",
            Body::InstallSnapshotResponse { .. } => "install_snapshot_response",
            Body::TimeoutNow => "timeout_now",
            Body::ReadIndex { .. } => "read_index",
            Body::ReadIndexResponse { .. } => "read_index_response",
        }
    }

    /// Whether this is bulk snapshot data, which transports may carry on a
    /// separate lane so that it never delays heartbeats.
    pub fn is_bulk(&self) -> bool {
        matches!(self, Body::InstallSnapshot { .. })
    }
}

impl Message {
    /// An estimate of the encoded size, for byte limits.
    pub fn size_hint(&self) -> u64 {
        match &self.body {
            Body::AppendEntries { entries, .. } => {
                32 + entries.iter().map(Entry::size).sum::<u64>()
            }
            Body::InstallSnapshot { data, .. } => 64 + data.len() as u64,
            _ => 32,
        }
    }
}
