//! Configuration of one node's protocol state machine.

use crate::types::NodeId;
use std::collections::BTreeSet;

/// Everything that shapes a node's behaviour. Time is counted in ticks: the
/// driver calls [`crate::Raft::tick`] at a fixed interval and chooses that
/// interval; the core never reads a clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// The voters of a brand-new cluster. Ignored once the log or a snapshot
    /// holds a configuration. Empty for a node that joins an existing
    /// cluster and learns its membership from the leader.
    pub voters: Vec<NodeId>,
    /// The learners of a brand-new cluster.
    pub learners: Vec<NodeId>,
    /// The base election timeout, in ticks. Each node waits a random number
    /// of ticks in `[election_ticks, 2 * election_ticks)`.
    pub election_ticks: u32,
    /// Ticks between leader heartbeats. Must be less than `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Pre-vote (thesis section 9.6): a node asks whether it could win
    /// before bumping its term, so a partitioned node cannot disrupt a
    /// healthy leader when it returns. On by default.
    pub pre_vote: bool,
    /// Check-quorum: a leader that has not heard from a majority within an
    /// election timeout steps down, and followers that hear from a leader
    /// ignore vote requests for that long (leader stickiness). On by default.
    pub check_quorum: bool,
    /// Most entries in one AppendEntries message.
    pub max_entries_per_msg: usize,
    /// Most entry bytes in one AppendEntries message (at least one entry is
    /// always sent, whatever its size).
    pub max_bytes_per_msg: u64,
    /// Most AppendEntries messages in flight to one follower.
    pub max_inflight_msgs: usize,
    /// Most entry bytes in flight to one follower.
    pub max_inflight_bytes: u64,
    /// Most bytes of committed entries handed out in one `Ready`.
    pub max_apply_bytes: u64,
    /// Bytes per snapshot chunk.
    pub snapshot_chunk_bytes: u64,
    /// Entries kept in the log behind a snapshot, so that slightly lagging
    /// followers catch up from the log rather than by snapshot.
    pub compaction_lag: u64,
    /// Serve reads from a leader lease instead of a heartbeat round. Assumes
    /// clocks on different nodes run at the same rate within a bounded drift
    /// (the lease is shorter than the election timeout by that margin). Off
    /// by default. Requires `check_quorum`.
    pub lease_read: bool,
    /// Seed of the PRNG behind election timeouts. Give each node its own.
    pub seed: u64,
}

impl Config {
    /// A configuration with the defaults for node `id` of a new cluster of
    /// `voters`.
    pub fn new(id: NodeId, voters: impl IntoIterator<Item = NodeId>) -> Self {
        Config {
            id,
            voters: voters.into_iter().collect(),
            learners: Vec::new(),
            election_ticks: 10,
            heartbeat_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            max_entries_per_msg: 1024,
            max_bytes_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_inflight_bytes: 32 << 20,
            max_apply_bytes: 64 << 20,
            snapshot_chunk_bytes: 1 << 20,
            compaction_lag: 1024,
            lease_read: false,
            seed: id.0,
        }
    }

    /// Checks the configuration, saying what is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.is_none() {
            return Err(ConfigError::ZeroId);
        }
        if self.election_ticks == 0 || self.heartbeat_ticks == 0 {
            return Err(ConfigError::ZeroTicks);
        }
        if self.heartbeat_ticks >= self.election_ticks {
            return Err(ConfigError::HeartbeatNotBelowElection {
                heartbeat: self.heartbeat_ticks,
                election: self.election_ticks,
            });
        }
        let mut seen = BTreeSet::new();
        for id in self.voters.iter().chain(self.learners.iter()) {
            if id.is_none() {
                return Err(ConfigError::ZeroId);
            }
            if !seen.insert(*id) {
                return Err(ConfigError::DuplicateId(*id));
            }
        }
        if !seen.is_empty() && !seen.contains(&self.id) {
            return Err(ConfigError::MissingSelf(self.id));
        }
        if !self.learners.is_empty() && self.voters.is_empty() {
            return Err(ConfigError::NoVoters);
        }
        if self.max_entries_per_msg == 0
            || self.max_bytes_per_msg == 0
            || self.max_inflight_msgs == 0
            || self.max_inflight_bytes == 0
            || self.max_apply_bytes == 0
            || self.snapshot_chunk_bytes == 0
        {
            return Err(ConfigError::ZeroLimit);
        }
        if self.lease_read && !self.check_quorum {
            return Err(ConfigError::LeaseWithoutCheckQuorum);
        }
        Ok(())
    }
}

/// What is wrong with a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Node id 0 is reserved.
    #[error("node id 0 is reserved; ids start at 1")]
    ZeroId,
    /// A tick count is zero.
    #[error("election_ticks and heartbeat_ticks must be at least 1")]
    ZeroTicks,
    /// Heartbeats would not arrive before followers time out.
    #[error("heartbeat_ticks ({heartbeat}) must be less than election_ticks ({election})")]
    HeartbeatNotBelowElection {
        /// The heartbeat interval.
        heartbeat: u32,
        /// The election timeout.
        election: u32,
    },
    /// An id is listed twice among voters and learners.
    #[error("node {0} is listed more than once among voters and learners")]
    DuplicateId(NodeId),
    /// The member list does not include this node.
    #[error("this node ({0}) is not among the listed voters and learners")]
    MissingSelf(NodeId),
    /// Learners without voters.
    #[error("a cluster with learners needs at least one voter")]
    NoVoters,
    /// A size or count limit is zero.
    #[error("message, in-flight, apply and snapshot limits must be non-zero")]
    ZeroLimit,
    /// The persisted state handed to `Raft::restore` contradicts itself.
    #[error("inconsistent persisted state: {0}")]
    InconsistentState(String),
    /// Lease reads are only safe with check-quorum.
    #[error("lease_read requires check_quorum")]
    LeaseWithoutCheckQuorum,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|i| NodeId(*i)).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new(NodeId(1), ids(&[1, 2, 3])).validate(), Ok(()));
        // A joining node knows no members yet.
        assert_eq!(Config::new(NodeId(4), ids(&[])).validate(), Ok(()));
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let mut c = Config::new(NodeId(1), ids(&[1, 2, 3]));
        c.heartbeat_ticks = 10;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::HeartbeatNotBelowElection { .. })
        ));
        let mut c = Config::new(NodeId(1), ids(&[1, 2, 3]));
        c.election_ticks = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroTicks));
        let c = Config::new(NodeId(1), ids(&[1, 2, 2]));
        assert_eq!(c.validate(), Err(ConfigError::DuplicateId(NodeId(2))));
        let c = Config::new(NodeId(4), ids(&[1, 2, 3]));
        assert_eq!(c.validate(), Err(ConfigError::MissingSelf(NodeId(4))));
        let c = Config::new(NodeId(0), ids(&[1]));
        assert_eq!(c.validate(), Err(ConfigError::ZeroId));
        let mut c = Config::new(NodeId(1), ids(&[1]));
        c.lease_read = true;
        c.check_quorum = false;
        assert_eq!(c.validate(), Err(ConfigError::LeaseWithoutCheckQuorum));
    }
}
