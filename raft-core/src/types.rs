//! Identifiers and the small value types every other module speaks in.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A Raft term: a logical clock that only ever grows. Term 0 means "before
/// any election".
pub type Term = u64;

/// A position in the replicated log. Index 0 is the empty prefix; the first
/// real entry has index 1.
pub type LogIndex = u64;

/// The identity of one member of a cluster. Zero is reserved for "nobody".
#[derive(Copy, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The reserved "no node" id.
    pub const NONE: NodeId = NodeId(0);

    /// Whether this is the reserved "no node" id.
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for NodeId {
    fn from(v: u64) -> Self {
        NodeId(v)
    }
}

/// The role a node currently plays.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accepts entries from a leader and votes.
    Follower,
    /// Asks whether it *could* win an election before disrupting anyone
    /// (thesis section 9.6). Does not bump its term.
    PreCandidate,
    /// Has bumped its term and asks for votes.
    Candidate,
    /// Holds votes from a majority of voters for its term.
    Leader,
    /// A non-voting member that only replicates the log.
    Learner,
}

impl Role {
    /// The lower-case name used in the HTTP API and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre_candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Learner => "learner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What must survive a crash besides the log: the current term, the vote
/// cast in it, and the highest index known to be committed.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// Whom this node voted for in `term`, or [`NodeId::NONE`].
    pub vote: NodeId,
    /// The highest log index known to be committed.
    pub commit: LogIndex,
}

/// State that is not persisted but that drivers report to operators.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// The role this node plays now.
    pub role: Role,
    /// The leader this node knows of in the current term, if any.
    pub leader: Option<NodeId>,
    /// The current term (also in the hard state; repeated for convenience).
    pub term: Term,
}
