//! The output of the state machine, and the contract for handling it.

use crate::message::{Entry, Message, Snapshot, SnapshotMeta};
use crate::types::{HardState, LogIndex, SoftState};

/// Everything the core wants done, taken with [`crate::Raft::ready`] and
/// handed back with [`crate::Raft::advance`].
///
/// # The persistence contract
///
/// This is the one place the ordering rules are written down. A driver
/// handles a `Ready` in this order:
///
/// 1. **May start at once:** send [`Ready::messages`]. They promise nothing
///    about this node's disk (a leader's AppendEntries, heartbeats,
///    pre-vote probes), so a leader replicates while its own write is in
///    flight (thesis section 10.2.1).
/// 2. **Persist, durably (fsync), as one batch:** the [`Ready::snapshot`] if
///    any (it replaces the log up to its index), then
///    [`Ready::entries`] (first dropping every stored entry whose index is
///    `>= entries[0].index`: a conflicting suffix), then
///    [`Ready::hard_state`] if any.
/// 3. **Only after step 2:** send [`Ready::persisted_messages`]. These
///    promise durability: votes, and acknowledgements of appended entries
///    and installed snapshots. Sending one before the write is durable can
///    elect two leaders in a term or lose a committed entry after a crash.
/// 4. Restore the state machine from [`Ready::snapshot`] if any, then apply
///    [`Ready::committed_entries`] in order. (They are always covered by
///    step 2 of this or an earlier `Ready`.)
/// 5. Serve [`Ready::read_states`] once the state machine has applied up to
///    each one's index; fail [`Ready::failed_reads`].
/// 6. Call [`crate::Raft::advance`]. Only then does the core treat the
///    entries as durable here (a leader counts its own copy toward a commit
///    only from this point) and the committed entries as applied.
///
/// The simulator in [`crate::sim`] crashes nodes between every one of these
/// steps and checks that nothing acknowledged is lost.
#[derive(Debug, Default)]
#[must_use = "a Ready must be persisted, sent, applied and then advanced"]
pub struct Ready {
    /// Role, leader or term changed since the last `Ready`: for status and
    /// watchers. Nothing to persist.
    pub soft_state: Option<SoftState>,
    /// New hard state to persist (step 2), if it changed.
    pub hard_state: Option<HardState>,
    /// Log entries to persist (step 2). If the first index is at or below
    /// the last stored index, the stored suffix from there is dropped first.
    pub entries: Vec<Entry>,
    /// A snapshot received from the leader, to persist (step 2) and to
    /// restore the state machine from (step 4). It replaces the stored log
    /// up to its index. Stored entries *after* its index stay valid only if
    /// the stored entry at its index has the snapshot's term (then the log
    /// extends the snapshot); otherwise the driver discards the whole stored
    /// log. After restoring, the applied index is the snapshot's index.
    pub snapshot: Option<Snapshot>,
    /// Messages that may be sent at once (step 1).
    pub messages: Vec<Message>,
    /// Messages that may be sent only after step 2 (step 3).
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply in order (step 4).
    pub committed_entries: Vec<Entry>,
    /// Linearizable reads whose read index is now known (step 5).
    pub read_states: Vec<ReadState>,
    /// Reads that could not be served (leadership lost or unknown); the
    /// `ctx` values given to [`crate::Raft::read_index`].
    pub failed_reads: Vec<u64>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.entries.is_empty()
            && self.snapshot.is_none()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.failed_reads.is_empty()
    }

    /// Whether step 2 has anything to write.
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || !self.entries.is_empty() || self.snapshot.is_some()
    }
}

/// A linearizable read that may be served once the state machine has applied
/// up to `index` (thesis section 6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's tag from [`crate::Raft::read_index`].
    pub ctx: u64,
    /// The commit index confirmed by a quorum when the read arrived.
    pub index: LogIndex,
}

/// What a node recovered from its storage, to restart from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitialState {
    /// The last persisted hard state.
    pub hard_state: HardState,
    /// The newest persisted snapshot's description, if any.
    pub snapshot: Option<SnapshotMeta>,
    /// The persisted log entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}
