//! The invariants of the Raft paper (Figure 3) and the persistence
//! contract, checked incrementally after every step of a run.
//!
//! The checker sees nodes only through [`NodeView`] (implemented by
//! [`Raft`] and by [`FakeNode`], so that tests can feed it hand-made bad
//! traces) and disks only through [`Disk`]. It never changes what it
//! observes. Each check costs time proportional to what changed since the
//! node was last observed, so it can run after every delivered message.

use super::disk::{digest_step, Disk};
use crate::membership::Membership;
use crate::message::{Body, Entry, Message};
use crate::raft::Raft;
use crate::types::{LogIndex, NodeId, Role, Term};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

/// What the checker needs to see of a node.
pub trait NodeView {
    /// The node's id.
    fn id(&self) -> NodeId;
    /// Its role now.
    fn role(&self) -> Role;
    /// Its current term.
    fn term(&self) -> Term;
    /// Its commit index.
    fn commit_index(&self) -> LogIndex;
    /// The index its in-memory log starts after.
    fn snapshot_index(&self) -> LogIndex;
    /// Its last log index.
    fn last_index(&self) -> LogIndex;
    /// The term at `index`, if held (the snapshot point counts).
    fn term_at(&self, index: LogIndex) -> Option<Term>;
    /// The entry at `index`, if held in memory.
    fn entry(&self, index: LogIndex) -> Option<&Entry>;
    /// The entries held in memory, `snapshot_index() + 1 ..= last_index()`,
    /// in order.
    fn entries(&self) -> impl Iterator<Item = &Entry>;
    /// The configuration in force on the node (the latest it appended), if
    /// the view knows it. Without it the durability check counts against
    /// the checker's initial voters.
    fn membership(&self) -> Option<&Membership> {
        None
    }
}

impl NodeView for Raft {
    fn id(&self) -> NodeId {
        Raft::id(self)
    }
    fn role(&self) -> Role {
        Raft::role(self)
    }
    fn term(&self) -> Term {
        Raft::term(self)
    }
    fn commit_index(&self) -> LogIndex {
        Raft::commit_index(self)
    }
    fn snapshot_index(&self) -> LogIndex {
        Raft::snapshot_index(self)
    }
    fn last_index(&self) -> LogIndex {
        Raft::last_index(self)
    }
    fn term_at(&self, index: LogIndex) -> Option<Term> {
        Raft::term_at(self, index)
    }
    fn entry(&self, index: LogIndex) -> Option<&Entry> {
        Raft::entry(self, index)
    }
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        Raft::entries(self)
    }
    fn membership(&self) -> Option<&Membership> {
        Some(Raft::membership(self))
    }
}

/// A hand-made node state, for feeding the checker a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeNode {
    /// The node's id.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// Its commit index.
    pub commit: LogIndex,
    /// The index the log starts after.
    pub snapshot_index: LogIndex,
    /// The term at `snapshot_index`.
    pub snapshot_term: Term,
    /// Entries `snapshot_index + 1 ..`.
    pub entries: Vec<Entry>,
    /// The configuration it reports, if any (see [`NodeView::membership`]).
    pub membership: Option<Membership>,
}

impl FakeNode {
    /// A node whose log holds one entry per element of `terms` (index 1
    /// first), each carrying the payload `"{index}@{term}"`.
    pub fn new(id: u64, role: Role, term: Term, terms: &[Term]) -> FakeNode {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let index = i as u64 + 1;
                Entry {
                    term: *t,
                    index,
                    kind: crate::EntryKind::Normal,
                    data: bytes::Bytes::from(format!("{index}@{t}")),
                }
            })
            .collect();
        FakeNode {
            id: NodeId(id),
            role,
            term,
            commit: 0,
            snapshot_index: 0,
            snapshot_term: 0,
            entries,
            membership: None,
        }
    }

    /// The same node reporting the configuration `m`.
    pub fn with_membership(mut self, m: Membership) -> FakeNode {
        self.membership = Some(m);
        self
    }

    /// The same node with commit index `commit`.
    pub fn committed(mut self, commit: LogIndex) -> FakeNode {
        self.commit = commit;
        self
    }
}

impl NodeView for FakeNode {
    fn id(&self) -> NodeId {
        self.id
    }
    fn role(&self) -> Role {
        self.role
    }
    fn term(&self) -> Term {
        self.term
    }
    fn commit_index(&self) -> LogIndex {
        self.commit
    }
    fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }
    fn last_index(&self) -> LogIndex {
        self.snapshot_index + self.entries.len() as u64
    }
    fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|e| e.term)
    }
    fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
    fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }
}

/// A broken invariant: what, where, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// Two nodes were leader of the same term (paper Figure 3: election
    /// safety).
    ElectionSafety {
        /// The term.
        term: Term,
        /// The node seen first as its leader.
        first: NodeId,
        /// The second one.
        second: NodeId,
    },
    /// Two candidates of one term each gathered a quorum of votes, each
    /// under the configuration it campaigned in. Votes are one per node
    /// and term, so this means two disjoint quorums decided the term
    /// (possible across configurations changed without a joint one), or a
    /// node voted twice.
    TwoQuorums {
        /// The term.
        term: Term,
        /// The candidate whose quorum was complete first.
        first: NodeId,
        /// The other one.
        second: NodeId,
    },
    /// A node became leader without a quorum of votes (its own included)
    /// under the configuration it campaigned in.
    LeaderWithoutQuorum {
        /// The node.
        node: NodeId,
        /// The term.
        term: Term,
        /// The voters whose grants it could have counted.
        votes: BTreeSet<NodeId>,
    },
    /// A leader removed or overwrote an entry of its own log while leader
    /// of one term (leader append-only).
    LeaderAppendOnly {
        /// The leader.
        node: NodeId,
        /// Its term.
        term: Term,
        /// The first index that changed or went missing.
        index: LogIndex,
    },
    /// Two logs hold an entry with the same index and term but differ in
    /// it or before it (log matching).
    LogMatching {
        /// The index.
        index: LogIndex,
        /// The term.
        term: Term,
        /// The node that held it first.
        first: NodeId,
        /// The node whose copy differs.
        second: NodeId,
        /// How they differ.
        detail: String,
    },
    /// A leader lacks an entry committed in an earlier term (leader
    /// completeness).
    LeaderCompleteness {
        /// The leader.
        leader: NodeId,
        /// Its term.
        term: Term,
        /// The committed index it lacks.
        index: LogIndex,
        /// The term in which that entry was committed.
        committed_in: Term,
    },
    /// Two nodes applied (or declared committed) different entries at one
    /// index, or a node applied out of order (state machine safety).
    StateMachineSafety {
        /// The node.
        node: NodeId,
        /// The index.
        index: LogIndex,
        /// What went wrong.
        detail: String,
    },
    /// Something acknowledged or committed is not durable where it must be.
    Durability {
        /// The node, if one is to blame.
        node: Option<NodeId>,
        /// What went wrong.
        detail: String,
    },
    /// A node's term went back, or its commit index did within one life.
    Regressed {
        /// The node.
        node: NodeId,
        /// What went back.
        detail: String,
    },
    /// A read was served at an index below a commit that finished before
    /// the read started (linearizability of ReadIndex).
    StaleRead {
        /// The node serving the read.
        node: NodeId,
        /// The read's tag.
        ctx: u64,
        /// The read index given.
        index: LogIndex,
        /// The commit index reached before the read was asked for.
        committed: LogIndex,
    },
    /// A read was given a read index beyond anything committed.
    ReadUncommitted {
        /// The node serving the read.
        node: NodeId,
        /// The read's tag.
        ctx: u64,
        /// The read index given.
        index: LogIndex,
        /// The highest index committed anywhere when it was served.
        committed: LogIndex,
    },
    /// A proposal's (term, index) was committed with another payload.
    ProposalMisreported {
        /// The index.
        index: LogIndex,
        /// The term.
        term: Term,
    },
    /// The core broke the `Ready` contract or refused its own persisted
    /// state.
    Contract {
        /// The node.
        node: NodeId,
        /// What went wrong.
        detail: String,
    },
    /// The cluster did not converge in time after the network healed.
    Liveness {
        /// What was still missing.
        detail: String,
    },
    /// The core panicked.
    Panic {
        /// The panic message.
        message: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::ElectionSafety {
                term,
                first,
                second,
            } => write!(
                f,
                "election safety: nodes {first} and {second} were both leader of term {term}"
            ),
            Violation::TwoQuorums {
                term,
                first,
                second,
            } => write!(
                f,
                "quorum intersection: candidates {first} and {second} both gathered a quorum of votes in term {term}"
            ),
            Violation::LeaderWithoutQuorum { node, term, votes } => write!(
                f,
                "election without quorum: node {node} became leader of term {term} with votes only from {votes:?}"
            ),
            Violation::LeaderAppendOnly { node, term, index } => write!(
                f,
                "leader append-only: leader {node} of term {term} changed or lost its entry {index}"
            ),
            Violation::LogMatching {
                index,
                term,
                first,
                second,
                detail,
            } => write!(
                f,
                "log matching: entry ({index}, term {term}) differs between nodes {first} and {second}: {detail}"
            ),
            Violation::LeaderCompleteness {
                leader,
                term,
                index,
                committed_in,
            } => write!(
                f,
                "leader completeness: leader {leader} of term {term} lacks entry {index} committed in term {committed_in}"
            ),
            Violation::StateMachineSafety {
                node,
                index,
                detail,
            } => write!(f, "state machine safety: node {node} at index {index}: {detail}"),
            Violation::Durability { node, detail } => match node {
                Some(n) => write!(f, "durability: node {n}: {detail}"),
                None => write!(f, "durability: {detail}"),
            },
            Violation::Regressed { node, detail } => write!(f, "node {node} went back: {detail}"),
            Violation::StaleRead {
                node,
                ctx,
                index,
                committed,
            } => write!(
                f,
                "linearizability: node {node} served read {ctx} at index {index}, below index {committed} committed before the read began"
            ),
            Violation::ReadUncommitted {
                node,
                ctx,
                index,
                committed,
            } => write!(
                f,
                "linearizability: node {node} served read {ctx} at index {index}, beyond the highest committed index {committed}"
            ),
            Violation::ProposalMisreported { index, term } => write!(
                f,
                "proposal accepted at (term {term}, index {index}) was committed with another payload"
            ),
            Violation::Contract { node, detail } => {
                write!(f, "Ready contract broken by node {node}: {detail}")
            }
            Violation::Liveness { detail } => write!(f, "liveness: {detail}"),
            Violation::Panic { message } => write!(f, "the core panicked: {message}"),
        }
    }
}

impl std::error::Error for Violation {}

/// Entry equality with a fast path: copies of one entry share their
/// payload's buffer, so most comparisons need not read it.
fn same_entry(a: &Entry, b: &Entry) -> bool {
    a.index == b.index
        && a.term == b.term
        && a.kind == b.kind
        && a.data.len() == b.data.len()
        && (a.data.as_ptr() == b.data.as_ptr() || a.data == b.data)
}

#[derive(Debug, Clone)]
struct Seen {
    entry: Entry,
    prev_term: Term,
    node: NodeId,
}

#[derive(Debug, Clone)]
struct Committed {
    entry: Entry,
    /// The term of the first node seen to count it committed: the term in
    /// which it was committed.
    term: Term,
    /// The configuration that node counted the commit against (its
    /// latest appended one): the voters whose disks must hold the entry.
    conf: Arc<Membership>,
}

/// One candidate's campaign in one term: the configuration it asked for
/// votes under and every voter whose grant left for it (its own vote
/// included).
#[derive(Debug, Clone)]
struct Campaign {
    conf: Option<Arc<Membership>>,
    votes: BTreeSet<NodeId>,
}

impl Campaign {
    fn has_quorum(&self) -> bool {
        self.conf
            .as_ref()
            .is_some_and(|c| c.is_quorum(|n| self.votes.contains(&n)))
    }
}

#[derive(Debug, Default, Clone)]
struct Track {
    /// The in-memory log as last observed: entries `cache_off + 1 ..`.
    cache_off: LogIndex,
    cache: VecDeque<Entry>,
    term: Term,
    /// `Some(term)` while observed as leader of `term`.
    leader_term: Option<Term>,
    commit_seen: LogIndex,
    /// Leader completeness verified for committed indices up to here.
    lc_checked: LogIndex,
    /// Applied up to here (in this life).
    applied: LogIndex,
    app_digest: u64,
    /// The highest term promised in a durable message, and the votes
    /// promised.
    promised_term: Term,
    promised_votes: BTreeMap<Term, NodeId>,
}

/// The invariant checker. Feed it every observation of a run, in order.
#[derive(Debug, Default)]
pub struct Checker {
    /// The initial configuration: the durability check's quorum for views
    /// that do not report their membership.
    initial: Arc<Membership>,
    /// The configuration last reported by an observed node, shared by the
    /// commits recorded under it.
    last_conf: Option<Arc<Membership>>,
    leaders: BTreeMap<Term, NodeId>,
    /// Per term, every candidate's campaign, from the durable messages
    /// that left (requests for votes and grants).
    campaigns: BTreeMap<Term, BTreeMap<NodeId, Campaign>>,
    seen: BTreeMap<(LogIndex, Term), Seen>,
    committed: BTreeMap<LogIndex, Committed>,
    /// The applied history every node must follow: `canon[i - 1]` is the
    /// entry at index `i`, `digests[i]` the digest after applying it.
    canon: Vec<Entry>,
    digests: Vec<u64>,
    tracks: BTreeMap<NodeId, Track>,
    /// Committed indices verified to be on a quorum of disks.
    durable_checked: LogIndex,
    max_committed: LogIndex,
    proposals: BTreeMap<LogIndex, Vec<(Term, bytes::Bytes)>>,
    reads: BTreeMap<u64, LogIndex>,
}

impl Checker {
    /// A checker for a cluster whose initial voters are `voters` (the
    /// durability check's quorum when an observed node does not report
    /// its membership; see [`NodeView::membership`]).
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Checker {
        Checker {
            initial: Arc::new(Membership::new(voters)),
            digests: vec![0],
            ..Checker::default()
        }
    }

    /// The leader seen for each term so far.
    pub fn leaders(&self) -> &BTreeMap<Term, NodeId> {
        &self.leaders
    }

    /// The highest index seen committed (0 if none).
    pub fn max_committed(&self) -> LogIndex {
        self.max_committed
    }

    /// The committed entry at `index`, if seen.
    pub fn committed_entry(&self, index: LogIndex) -> Option<&Entry> {
        self.committed.get(&index).map(|c| &c.entry)
    }

    /// How many entries have been seen committed.
    pub fn committed_count(&self) -> usize {
        self.committed.len()
    }

    /// Checks one node's state after a step. See the module docs.
    pub fn observe(&mut self, v: &impl NodeView) -> Result<(), Violation> {
        let id = v.id();
        let term = v.term();
        let role = v.role();
        let off = v.snapshot_index();
        let last = v.last_index();
        let mut t = self.tracks.remove(&id).unwrap_or_default();
        let r = self.observe_inner(v, &mut t, id, term, role, off, last);
        self.tracks.insert(id, t);
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn observe_inner(
        &mut self,
        v: &impl NodeView,
        t: &mut Track,
        id: NodeId,
        term: Term,
        role: Role,
        off: LogIndex,
        last: LogIndex,
    ) -> Result<(), Violation> {
        if term < t.term {
            return Err(Violation::Regressed {
                node: id,
                detail: format!("term {} -> {term}", t.term),
            });
        }
        t.term = term;
        if last < off {
            return Err(Violation::Contract {
                node: id,
                detail: format!("last index {last} below snapshot index {off}"),
            });
        }

        // Election safety, over the whole run.
        if role == Role::Leader {
            let fresh = !self.leaders.contains_key(&term);
            let first = *self.leaders.entry(term).or_insert(id);
            if first != id {
                return Err(Violation::ElectionSafety {
                    term,
                    first,
                    second: id,
                });
            }
            if fresh {
                self.check_leader_quorum(v, id, term)?;
            }
        }
        let same_leadership = role == Role::Leader && t.leader_term == Some(term);

        // Bring the cached log up to the snapshot point.
        let cache_last = t.cache_off + t.cache.len() as u64;
        if off < t.cache_off {
            t.cache.clear();
            t.cache_off = off;
        } else if off > t.cache_off {
            let n = ((off - t.cache_off) as usize).min(t.cache.len());
            t.cache.drain(..n);
            t.cache_off = off;
        }
        // Find the first entry that differs from the cache (both start
        // right after the snapshot point now).
        let overlap_end = last.min(t.cache_off + t.cache.len() as u64);
        let mut first_diff = overlap_end + 1;
        let mut held = off;
        for (i, (cached, now)) in (off + 1..).zip(t.cache.iter().zip(v.entries())) {
            held = i;
            if !same_entry(cached, now) {
                first_diff = i;
                break;
            }
        }
        if first_diff > overlap_end && held < overlap_end {
            return Err(Violation::Contract {
                node: id,
                detail: format!("entries up to {last} claimed but only {held} held"),
            });
        }
        // Leader append-only: while leader of one term, the log only grows.
        if same_leadership && (first_diff <= overlap_end || last < cache_last) {
            let index = if first_diff <= overlap_end {
                first_diff
            } else {
                last + 1
            };
            return Err(Violation::LeaderAppendOnly {
                node: id,
                term,
                index,
            });
        }
        t.cache
            .truncate(first_diff.saturating_sub(t.cache_off + 1) as usize);
        // Log matching, for every entry new to this node's cache: an (index,
        // term) pair names one entry with one predecessor term, so by
        // induction two logs sharing it share everything before it.
        for i in first_diff..=last {
            let e = v.entry(i).ok_or_else(|| Violation::Contract {
                node: id,
                detail: format!("entry {i} within ({off}, {last}] is not readable"),
            })?;
            if e.index != i {
                return Err(Violation::Contract {
                    node: id,
                    detail: format!("entry at position {i} says index {}", e.index),
                });
            }
            let prev_term = v.term_at(i - 1).ok_or_else(|| Violation::Contract {
                node: id,
                detail: format!("term of entry {} unknown though {i} is held", i - 1),
            })?;
            if e.term < prev_term {
                return Err(Violation::LogMatching {
                    index: i,
                    term: e.term,
                    first: id,
                    second: id,
                    detail: format!("term {} follows a higher term {prev_term}", e.term),
                });
            }
            match self.seen.get(&(i, e.term)) {
                Some(s) => {
                    if s.entry != *e {
                        return Err(Violation::LogMatching {
                            index: i,
                            term: e.term,
                            first: s.node,
                            second: id,
                            detail: "the entries' contents differ".into(),
                        });
                    }
                    if s.prev_term != prev_term {
                        return Err(Violation::LogMatching {
                            index: i,
                            term: e.term,
                            first: s.node,
                            second: id,
                            detail: format!(
                                "preceded by an entry of term {} on one and {prev_term} on the other",
                                s.prev_term
                            ),
                        });
                    }
                }
                None => {
                    self.seen.insert(
                        (i, e.term),
                        Seen {
                            entry: e.clone(),
                            prev_term,
                            node: id,
                        },
                    );
                }
            }
            t.cache.push_back(e.clone());
        }

        // Commit: never back within one life; what it covers is recorded,
        // and must agree with what any other node committed.
        let commit = v.commit_index();
        if commit < t.commit_seen {
            return Err(Violation::Regressed {
                node: id,
                detail: format!("commit index {} -> {commit}", t.commit_seen),
            });
        }
        if commit > last {
            return Err(Violation::Contract {
                node: id,
                detail: format!("commit index {commit} beyond last index {last}"),
            });
        }
        let from = t.commit_seen.max(off) + 1;
        t.commit_seen = commit;
        if from <= commit {
            let conf = self.conf_of(v);
            for i in from..=commit {
                let e = v.entry(i).ok_or_else(|| Violation::Contract {
                    node: id,
                    detail: format!("committed entry {i} is not readable"),
                })?;
                self.record_commit(id, term, e, &conf, t)?;
            }
        }

        // Leader completeness: a leader holds everything committed in
        // earlier terms.
        if role == Role::Leader {
            if !same_leadership {
                t.leader_term = Some(term);
                t.lc_checked = 0;
            }
            let pending: Vec<(LogIndex, Term, Term)> = if t.lc_checked >= self.max_committed {
                Vec::new()
            } else {
                self.committed
                    .range(t.lc_checked + 1..)
                    .map(|(i, c)| (*i, c.entry.term, c.term))
                    .collect()
            };
            for (i, entry_term, committed_in) in pending {
                if committed_in < term {
                    let ok = if i < off {
                        true
                    } else if i == off {
                        v.term_at(i) == Some(entry_term)
                    } else {
                        v.entry(i) == self.committed.get(&i).map(|c| &c.entry)
                    };
                    if !ok {
                        return Err(Violation::LeaderCompleteness {
                            leader: id,
                            term,
                            index: i,
                            committed_in,
                        });
                    }
                }
                t.lc_checked = i;
            }
        } else {
            t.leader_term = None;
        }
        Ok(())
    }

    /// The configuration `v` counts commits against, shared with earlier
    /// commits when it has not changed.
    fn conf_of(&mut self, v: &impl NodeView) -> Arc<Membership> {
        let Some(m) = v.membership() else {
            return self.initial.clone();
        };
        match &self.last_conf {
            Some(c) if **c == *m => c.clone(),
            _ => {
                let c = Arc::new(m.clone());
                self.last_conf = Some(c.clone());
                c
            }
        }
    }

    fn record_commit(
        &mut self,
        node: NodeId,
        term: Term,
        e: &Entry,
        conf: &Arc<Membership>,
        me: &mut Track,
    ) -> Result<(), Violation> {
        let i = e.index;
        if let Some(c) = self.committed.get(&i) {
            if c.entry != *e {
                return Err(Violation::StateMachineSafety {
                    node,
                    index: i,
                    detail: format!(
                        "committed entry of term {} differs from the one committed before (term {})",
                        e.term, c.entry.term
                    ),
                });
            }
            return Ok(());
        }
        if let Some(ps) = self.proposals.get(&i) {
            if ps.iter().any(|(t, d)| *t == e.term && *d != e.data) {
                return Err(Violation::ProposalMisreported {
                    index: i,
                    term: e.term,
                });
            }
        }
        self.max_committed = self.max_committed.max(i);
        self.committed.insert(
            i,
            Committed {
                entry: e.clone(),
                term,
                conf: conf.clone(),
            },
        );
        // A commit recorded late must still be checked against leaders
        // already verified past its index.
        for t in self.tracks.values_mut() {
            if t.lc_checked >= i {
                t.lc_checked = i - 1;
            }
        }
        if me.lc_checked >= i {
            me.lc_checked = i - 1;
        }
        Ok(())
    }

    /// Checks that every committed entry is durable on a majority of the
    /// voters' disks, the voters being those of the configuration the
    /// entry was committed under (the committing node's latest appended
    /// configuration; in a joint configuration a majority of each half):
    /// what a leader has counted as committed survives the crash of any
    /// minority and the crash and restart of all.
    pub fn check_durable<'a>(
        &mut self,
        disks: impl Fn(NodeId) -> Option<&'a Disk>,
    ) -> Result<(), Violation> {
        if self.durable_checked >= self.max_committed {
            return Ok(());
        }
        for (i, c) in self.committed.range(self.durable_checked + 1..) {
            let holds = |v: NodeId| disks(v).is_some_and(|d| d.holds(*i, c.entry.term));
            if !c.conf.is_quorum(holds) {
                let count = |set: &BTreeSet<NodeId>| {
                    let held = set.iter().filter(|v| holds(**v)).count();
                    format!("{held} of {:?}", set)
                };
                let mut on = count(&c.conf.voters);
                if c.conf.is_joint() {
                    on = format!("{on} (incoming) and {} (outgoing)", count(&c.conf.outgoing));
                }
                return Err(Violation::Durability {
                    node: None,
                    detail: format!(
                        "committed entry {i} (term {}) is on the disks of {on} voters, fewer than a majority",
                        c.entry.term
                    ),
                });
            }
        }
        self.durable_checked = self.max_committed.max(self.durable_checked);
        Ok(())
    }

    /// A disk dropped stored entries from `index` on: committed entries
    /// from there must be re-counted.
    pub fn on_disk_truncated(&mut self, index: LogIndex) {
        self.durable_checked = self.durable_checked.min(index.saturating_sub(1));
    }

    /// Checks a message that promises durability (one of
    /// [`crate::Ready::persisted_messages`]) against the sender's disk just
    /// before it leaves.
    pub fn on_persisted_send(
        &mut self,
        node: &impl NodeView,
        m: &Message,
        disk: &Disk,
    ) -> Result<(), Violation> {
        let id = node.id();
        let hs = disk.hard_state;
        let fail = |detail: String| Violation::Durability {
            node: Some(id),
            detail,
        };
        if hs.term < m.term {
            return Err(fail(format!(
                "sent a {} of term {} before term {} was durable (disk: {})",
                m.body.name(),
                m.term,
                m.term,
                hs.term
            )));
        }
        let t = self.tracks.entry(id).or_default();
        t.promised_term = t.promised_term.max(m.term);
        match &m.body {
            Body::RequestVote {
                pre_vote: false, ..
            } if hs.term == m.term && hs.vote != id => {
                return Err(fail(format!(
                    "asked for votes in term {} before its own vote was durable",
                    m.term
                )));
            }
            Body::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            } => {
                if hs.term == m.term && hs.vote != m.to {
                    return Err(fail(format!(
                        "granted its vote in term {} to {} but the disk says vote {}",
                        m.term, m.to, hs.vote
                    )));
                }
                if let Some(prev) = t.promised_votes.insert(m.term, m.to) {
                    if prev != m.to {
                        return Err(fail(format!(
                            "voted for both {prev} and {} in term {}",
                            m.to, m.term
                        )));
                    }
                }
            }
            Body::AppendEntriesResponse {
                success: true,
                index,
                ..
            } => {
                let index = *index;
                if disk.last_index() < index {
                    return Err(fail(format!(
                        "acknowledged entries up to {index} to node {} (term {}) but only {} are durable",
                        m.to,
                        m.term,
                        disk.last_index()
                    )));
                }
                if index >= disk.snapshot_index() {
                    if let (Some(a), Some(b)) = (disk.term_at(index), node.term_at(index)) {
                        if a != b {
                            return Err(fail(format!(
                                "acknowledged entry {index} to node {} (term {}) while its log holds term {b} there and its disk term {a}: the acknowledged entry is being replaced",
                                m.to, m.term
                            )));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Records an election message as it leaves `node` (requests for votes
    /// and grants; others are ignored), whether or not the driver made it
    /// durable first, and checks that no two candidates of its term hold a
    /// quorum of grants.
    pub fn on_vote_sent(&mut self, node: &impl NodeView, m: &Message) -> Result<(), Violation> {
        match &m.body {
            Body::RequestVote {
                pre_vote: false, ..
            } => {
                let conf = node
                    .membership()
                    .map(|c| Arc::new(c.clone()))
                    .unwrap_or_else(|| Arc::clone(&self.initial));
                let c = self.campaign(m.term, node.id());
                c.conf.get_or_insert(conf);
                c.votes.insert(node.id());
            }
            Body::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            } => {
                self.campaign(m.term, m.to).votes.insert(node.id());
            }
            _ => return Ok(()),
        }
        self.check_quorums(m.term)
    }

    fn campaign(&mut self, term: Term, candidate: NodeId) -> &mut Campaign {
        self.campaigns
            .entry(term)
            .or_default()
            .entry(candidate)
            .or_insert_with(|| Campaign {
                conf: None,
                votes: BTreeSet::new(),
            })
    }

    /// No two candidates of `term` both hold a quorum of grants.
    fn check_quorums(&self, term: Term) -> Result<(), Violation> {
        let Some(cs) = self.campaigns.get(&term) else {
            return Ok(());
        };
        let mut won = cs.iter().filter(|(_, c)| c.has_quorum()).map(|(id, _)| *id);
        match (won.next(), won.next()) {
            (Some(first), Some(second)) => Err(Violation::TwoQuorums {
                term,
                first,
                second,
            }),
            _ => Ok(()),
        }
    }

    /// A node seen as leader of `term` for the first time must have had a
    /// quorum of grants, unless it is the only voter it knows. Views that
    /// do not report their configuration are not checked.
    fn check_leader_quorum(
        &self,
        v: &impl NodeView,
        id: NodeId,
        term: Term,
    ) -> Result<(), Violation> {
        let Some(m) = v.membership() else {
            return Ok(());
        };
        let campaign = self.campaigns.get(&term).and_then(|cs| cs.get(&id));
        if campaign.is_some_and(Campaign::has_quorum) {
            return Ok(());
        }
        let alone = m.is_quorum(|n| n == id);
        if campaign.is_none() && alone {
            return Ok(());
        }
        Err(Violation::LeaderWithoutQuorum {
            node: id,
            term,
            votes: campaign.map(|c| c.votes.clone()).unwrap_or_default(),
        })
    }

    /// A node restarted from `disk`: its durable promises must have
    /// survived, and its view of the log starts afresh.
    pub fn on_restart(&mut self, node: NodeId, disk: &Disk) -> Result<(), Violation> {
        self.restart(node, disk, true)
    }

    /// Like [`Checker::on_restart`], without checking the node's durable
    /// promises (for drivers known to break them, whose consequences the
    /// other checks must catch).
    pub fn on_restart_unchecked(&mut self, node: NodeId, disk: &Disk) -> Result<(), Violation> {
        self.restart(node, disk, false)
    }

    fn restart(&mut self, node: NodeId, disk: &Disk, check: bool) -> Result<(), Violation> {
        let t = self.tracks.entry(node).or_default();
        let hs = disk.hard_state;
        if check && hs.term < t.promised_term {
            return Err(Violation::Durability {
                node: Some(node),
                detail: format!(
                    "restarted at term {} after promising term {}",
                    hs.term, t.promised_term
                ),
            });
        }
        if let Some(v) = t.promised_votes.get(&hs.term).filter(|_| check) {
            if *v != hs.vote {
                return Err(Violation::Durability {
                    node: Some(node),
                    detail: format!(
                        "restarted with vote {} in term {} after granting it to {v}",
                        hs.vote, hs.term
                    ),
                });
            }
        }
        let promised_term = t.promised_term;
        let promised_votes = std::mem::take(&mut t.promised_votes);
        let (applied, digest) = match &disk.snapshot {
            Some(s) => match super::disk::App::from_snapshot_data(&s.data) {
                Ok(a) => (a.applied, a.digest),
                Err(e) => {
                    return Err(Violation::Durability {
                        node: Some(node),
                        detail: format!("stored snapshot is unreadable: {e}"),
                    })
                }
            },
            None => (0, 0),
        };
        *t = Track {
            term: hs.term,
            promised_term,
            promised_votes,
            ..Track::default()
        };
        self.on_restore(node, applied, digest)
    }

    /// A node's state machine was restored from a snapshot covering
    /// `index` with history digest `digest`.
    pub fn on_restore(
        &mut self,
        node: NodeId,
        index: LogIndex,
        digest: u64,
    ) -> Result<(), Violation> {
        let canon = self.digests.get(index as usize).copied();
        if index > 0 && canon != Some(digest) {
            return Err(Violation::StateMachineSafety {
                node,
                index,
                detail: match canon {
                    Some(_) => {
                        "restored a snapshot whose history differs from what others applied".into()
                    }
                    None => format!(
                        "restored a snapshot at {index}, beyond anything any node applied ({})",
                        self.canon.len()
                    ),
                },
            });
        }
        let t = self.tracks.entry(node).or_default();
        if index < t.applied {
            // A restart starts a new life at applied 0 before restoring, so
            // this is a snapshot installed from a leader within one life.
            return Err(Violation::Regressed {
                node,
                detail: format!(
                    "a snapshot install moved applied from {} back to {index}",
                    t.applied
                ),
            });
        }
        t.applied = index;
        t.app_digest = digest;
        Ok(())
    }

    /// A node applied `e` to its state machine.
    pub fn on_apply(&mut self, node: NodeId, e: &Entry) -> Result<(), Violation> {
        let t = self.tracks.entry(node).or_default();
        if e.index != t.applied + 1 {
            return Err(Violation::StateMachineSafety {
                node,
                index: e.index,
                detail: format!("applied out of order: after {}", t.applied),
            });
        }
        t.applied = e.index;
        t.app_digest = digest_step(t.app_digest, e);
        let digest = t.app_digest;
        let i = e.index as usize;
        if i <= self.canon.len() {
            let c = &self.canon[i - 1];
            if c != e {
                return Err(Violation::StateMachineSafety {
                    node,
                    index: e.index,
                    detail: format!(
                        "applied an entry of term {} where another node applied one of term {}{}",
                        e.term,
                        c.term,
                        if c.term == e.term {
                            " with other contents"
                        } else {
                            ""
                        }
                    ),
                });
            }
            if self.digests[i] != digest {
                return Err(Violation::StateMachineSafety {
                    node,
                    index: e.index,
                    detail: "applied history differs from other nodes' before this index".into(),
                });
            }
        } else {
            self.canon.push(e.clone());
            self.digests.push(digest);
        }
        if let Some(c) = self.committed.get(&e.index) {
            if c.entry != *e {
                return Err(Violation::StateMachineSafety {
                    node,
                    index: e.index,
                    detail: "applied an entry that differs from the committed one".into(),
                });
            }
        }
        Ok(())
    }

    /// A client's proposal was accepted at (`term`, `index`).
    pub fn on_proposal(
        &mut self,
        term: Term,
        index: LogIndex,
        data: bytes::Bytes,
    ) -> Result<(), Violation> {
        if let Some(c) = self.committed.get(&index) {
            if c.entry.term == term && c.entry.data != data {
                return Err(Violation::ProposalMisreported { index, term });
            }
        }
        self.proposals.entry(index).or_default().push((term, data));
        Ok(())
    }

    /// A linearizable read tagged `ctx` was asked for.
    pub fn on_read_request(&mut self, ctx: u64) {
        let c = self.max_committed();
        self.reads.insert(ctx, c);
    }

    /// A read tagged `ctx` was given read index `index` by `node`.
    pub fn on_read_state(
        &mut self,
        node: NodeId,
        ctx: u64,
        index: LogIndex,
    ) -> Result<(), Violation> {
        if index > self.max_committed {
            // It would show the client a write that has not committed
            // (and may never): one that may have begun after the read
            // returned, or be lost.
            return Err(Violation::ReadUncommitted {
                node,
                ctx,
                index,
                committed: self.max_committed,
            });
        }
        if let Some(committed) = self.reads.remove(&ctx) {
            if index < committed {
                return Err(Violation::StaleRead {
                    node,
                    ctx,
                    index,
                    committed,
                });
            }
        }
        Ok(())
    }

    /// A node crashed: it is no longer leader, and its next life is
    /// checked from its restart.
    pub fn on_crash(&mut self, node: NodeId) {
        if let Some(t) = self.tracks.get_mut(&node) {
            t.leader_term = None;
        }
    }
}
