//! The application a Raft cluster replicates.
//!
//! The runtime calls a [`StateMachine`] from its single node task: entries
//! in log order, each exactly once per incarnation of the state machine
//! (after a restart the runtime restores the newest snapshot and replays the
//! log after it). A state machine must be deterministic: the same entries in
//! the same order give the same state and the same responses on every node.
//! It must never apply an entry out of order or skip one, and it must
//! never wait on the cluster itself (proposing from inside `apply` would
//! deadlock the node).

use bytes::Bytes;
use raft_core::{LogIndex, Term};

/// An error the state machine cannot recover from (its own storage
/// failed, a snapshot is undecodable...). The node stops: continuing would
/// let replicas diverge. Outcomes that belong to the application (a
/// compare-and-set that did not match) are responses, not errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateMachineError(pub String);

impl StateMachineError {
    /// An error with a message.
    pub fn new(msg: impl Into<String>) -> Self {
        StateMachineError(msg.into())
    }
}

/// One committed application command, as handed to
/// [`StateMachine::apply`].
#[derive(Debug, Clone, Copy)]
pub struct Command<'a> {
    /// Its log index.
    pub index: LogIndex,
    /// The term it was proposed in.
    pub term: Term,
    /// The bytes given to `propose`.
    pub data: &'a Bytes,
}

/// A replicated application.
#[async_trait::async_trait]
pub trait StateMachine: Send + 'static {
    /// Applies committed commands, in log order, and returns one response
    /// per command, in the same order (the proposer of each gets its
    /// response). The runtime hands over every run of consecutive commands
    /// it has at once, so a state machine can amortise work over a batch.
    ///
    /// Returning fewer or more responses than commands, or an error, stops
    /// the node.
    async fn apply(&mut self, commands: &[Command<'_>]) -> Result<Vec<Bytes>, StateMachineError>;

    /// Serializes the whole state as of the last applied command.
    async fn snapshot(&mut self) -> Result<Bytes, StateMachineError>;

    /// Replaces the whole state with a snapshot taken by
    /// [`StateMachine::snapshot`] (on this node or another one).
    async fn restore(&mut self, snapshot: Bytes) -> Result<(), StateMachineError>;
}
