//! Cluster membership: voters, learners and the joint configuration used
//! while voters change (thesis section 4.3).
//!
//! Every quorum decision in the crate (election wins, commit, check-quorum,
//! read-index confirmation) goes through [`Membership::is_quorum`] or
//! [`Membership::committed_index`], so there is exactly one place that says
//! what a majority is. In a joint configuration a decision needs a majority
//! of the incoming voters *and* a majority of the outgoing ones.

use crate::message::{ConfChange, ConfChangeStep};
use crate::types::{LogIndex, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The members of a cluster at one point of its log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    /// The voters (in a joint configuration: the incoming voters).
    pub voters: BTreeSet<NodeId>,
    /// The outgoing voters while in a joint configuration; empty otherwise.
    pub outgoing: BTreeSet<NodeId>,
    /// Non-voting members that receive the log.
    pub learners: BTreeSet<NodeId>,
}

/// Why a membership change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The change would leave the cluster without voters.
    #[error("the change would leave no voters")]
    NoVoters,
    /// The change removes a node that is not a member.
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
    /// A joint configuration must be left before another change starts.
    #[error("the cluster is in a joint configuration; it must leave it first")]
    InJoint,
    /// "Leave joint" was asked of a configuration that is not joint.
    #[error("the cluster is not in a joint configuration")]
    NotJoint,
    /// The same node appears twice in one change.
    #[error("node {0} appears more than once in the change")]
    Duplicate(NodeId),
    /// Node id 0 is reserved.
    #[error("node id 0 is reserved")]
    ReservedId,
}

impl Membership {
    /// A configuration of the given voters and no learners.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            outgoing: BTreeSet::new(),
            learners: BTreeSet::new(),
        }
    }

    /// Whether this is a joint configuration.
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `id` may vote (in either half of a joint configuration).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.contains(&id)
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id) && !self.is_voter(id)
    }

    /// Whether `id` is a member at all.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every member, voters and learners, in id order, without repeats.
    pub fn members(&self) -> BTreeSet<NodeId> {
        self.voters
            .iter()
            .chain(self.outgoing.iter())
            .chain(self.learners.iter())
            .copied()
            .collect()
    }

    /// Every voter of either half, in id order.
    pub fn all_voters(&self) -> BTreeSet<NodeId> {
        self.voters.union(&self.outgoing).copied().collect()
    }

    /// Whether the nodes for which `yes` holds form a quorum: a majority of
    /// `voters`, and in a joint configuration also of `outgoing`.
    pub fn is_quorum(&self, yes: impl Fn(NodeId) -> bool) -> bool {
        fn majority(set: &BTreeSet<NodeId>, yes: &dyn Fn(NodeId) -> bool) -> bool {
            if set.is_empty() {
                // An empty half (the outgoing half of a non-joint
                // configuration) places no constraint.
                return true;
            }
            let n = set.iter().filter(|id| yes(**id)).count();
            n > set.len() / 2
        }
        majority(&self.voters, &yes) && majority(&self.outgoing, &yes)
    }

    /// Whether the nodes for which `no` holds make a quorum impossible.
    pub fn is_quorum_impossible(&self, no: impl Fn(NodeId) -> bool) -> bool {
        fn lost(set: &BTreeSet<NodeId>, no: &dyn Fn(NodeId) -> bool) -> bool {
            if set.is_empty() {
                return false;
            }
            let n = set.iter().filter(|id| no(**id)).count();
            // More than half can never say yes: a majority is out of reach.
            n >= set.len() - set.len() / 2
        }
        lost(&self.voters, &no) || lost(&self.outgoing, &no)
    }

    /// The highest index that a quorum holds, given each voter's match
    /// index: the commit rule's arithmetic.
    pub fn committed_index(&self, matched: impl Fn(NodeId) -> LogIndex) -> LogIndex {
        fn half(set: &BTreeSet<NodeId>, matched: &dyn Fn(NodeId) -> LogIndex) -> LogIndex {
            if set.is_empty() {
                return LogIndex::MAX;
            }
            let mut v: Vec<LogIndex> = set.iter().map(|id| matched(*id)).collect();
            v.sort_unstable_by(|a, b| b.cmp(a));
            // The (n/2+1)-th highest value is held by a majority.
            v[set.len() / 2]
        }
        let a = half(&self.voters, &matched);
        let b = half(&self.outgoing, &matched);
        a.min(b)
    }

    /// The configuration that results from appending `cc` to a log whose
    /// configuration is `self`. Changes to more than one voter go through a
    /// joint configuration; a single voter change or learner changes apply
    /// directly. An empty change leaves the joint configuration.
    pub fn apply_change(&self, cc: &ConfChange) -> Result<Membership, MembershipError> {
        if cc.steps.is_empty() {
            if !self.is_joint() {
                return Err(MembershipError::NotJoint);
            }
            let mut next = self.clone();
            // Outgoing voters that are not incoming voters and were demoted
            // to learners stay as learners; the rest leave.
            next.outgoing.clear();
            next.learners.retain(|id| !next.voters.contains(id));
            return Ok(next);
        }
        if self.is_joint() {
            return Err(MembershipError::InJoint);
        }
        let mut seen = BTreeSet::new();
        for step in &cc.steps {
            let id = match step {
                ConfChangeStep::AddVoter(id)
                | ConfChangeStep::AddLearner(id)
                | ConfChangeStep::Remove(id) => *id,
            };
            if id.is_none() {
                return Err(MembershipError::ReservedId);
            }
            if !seen.insert(id) {
                return Err(MembershipError::Duplicate(id));
            }
        }
        let mut voters = self.voters.clone();
        let mut learners = self.learners.clone();
        for step in &cc.steps {
            match *step {
                ConfChangeStep::AddVoter(id) => {
                    learners.remove(&id);
                    voters.insert(id);
                }
                ConfChangeStep::AddLearner(id) => {
                    voters.remove(&id);
                    learners.insert(id);
                }
                ConfChangeStep::Remove(id) => {
                    if !self.contains(id) {
                        return Err(MembershipError::UnknownNode(id));
                    }
                    voters.remove(&id);
                    learners.remove(&id);
                }
            }
        }
        if voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        let changed_voters = self.voters.symmetric_difference(&voters).count();
        if changed_voters <= 1 || self.voters.is_empty() {
            // From no voters at all (the bootstrap entry, as seen by a node
            // that joins later) there is no old majority to overlap.
            // One voter more or less: any majority of the old set overlaps any
            // majority of the new one, so no joint phase is needed.
            Ok(Membership {
                voters,
                outgoing: BTreeSet::new(),
                learners,
            })
        } else {
            // Demoted voters stay voters of the outgoing half until the joint
            // configuration is left; they are listed as learners already.
            Ok(Membership {
                voters,
                outgoing: self.voters.clone(),
                learners,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<NodeId> {
        v.iter().map(|i| NodeId(*i)).collect()
    }

    #[test]
    fn majority_of_three_is_two() {
        let m = Membership::new(ids(&[1, 2, 3]));
        assert!(!m.is_quorum(|id| id == NodeId(1)));
        assert!(m.is_quorum(|id| id == NodeId(1) || id == NodeId(2)));
        assert!(m.is_quorum_impossible(|id| id != NodeId(1)));
        assert!(!m.is_quorum_impossible(|id| id == NodeId(3)));
    }

    #[test]
    fn majority_of_four_is_three() {
        let m = Membership::new(ids(&[1, 2, 3, 4]));
        assert!(!m.is_quorum(|id| id.0 <= 2));
        assert!(m.is_quorum(|id| id.0 <= 3));
        assert!(m.is_quorum_impossible(|id| id.0 <= 2));
    }

    #[test]
    fn joint_needs_both_majorities() {
        let m = Membership {
            voters: ids(&[4, 5, 6]),
            outgoing: ids(&[1, 2, 3]),
            learners: BTreeSet::new(),
        };
        assert!(!m.is_quorum(|id| [1, 2, 3].contains(&id.0)));
        assert!(!m.is_quorum(|id| [4, 5, 6].contains(&id.0)));
        assert!(m.is_quorum(|id| [1, 2, 4, 5].contains(&id.0)));
    }

    #[test]
    fn committed_index_is_the_majority_match() {
        let m = Membership::new(ids(&[1, 2, 3]));
        let idx = m.committed_index(|id| match id.0 {
            1 => 10,
            2 => 7,
            _ => 3,
        });
        assert_eq!(idx, 7);
        let joint = Membership {
            voters: ids(&[1, 2, 3]),
            outgoing: ids(&[3, 4, 5]),
            learners: BTreeSet::new(),
        };
        let idx = joint.committed_index(|id| match id.0 {
            1 => 10,
            2 => 9,
            3 => 8,
            4 => 2,
            _ => 1,
        });
        assert_eq!(idx, 2);
    }

    #[test]
    fn changes_validate() {
        let m = Membership::new(ids(&[1]));
        let rm = ConfChange {
            steps: vec![ConfChangeStep::Remove(NodeId(1))],
            context: Default::default(),
        };
        assert_eq!(m.apply_change(&rm), Err(MembershipError::NoVoters));
        let unknown = ConfChange {
            steps: vec![ConfChangeStep::Remove(NodeId(9))],
            context: Default::default(),
        };
        assert_eq!(
            m.apply_change(&unknown),
            Err(MembershipError::UnknownNode(NodeId(9)))
        );
        let two = ConfChange {
            steps: vec![
                ConfChangeStep::AddVoter(NodeId(2)),
                ConfChangeStep::AddVoter(NodeId(3)),
            ],
            context: Default::default(),
        };
        let j = m.apply_change(&two).unwrap();
        assert!(j.is_joint());
        assert_eq!(j.apply_change(&two), Err(MembershipError::InJoint));
        let left = j.apply_change(&ConfChange::default()).unwrap();
        assert!(!left.is_joint());
        assert_eq!(left.voters, ids(&[1, 2, 3]));
    }
}
