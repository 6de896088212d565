//! Where a node keeps what must survive a crash: the log, the hard state and
//! snapshots.
//!
//! The runtime calls [`LogStore::persist`] once per `Ready` (group commit:
//! one durable write covers every entry and the hard state of the batch) and
//! sends the messages that promise durability only after it returns.

use raft_core::{Entry, HardState, InitialState, LogIndex, Snapshot};

/// Why a store operation failed. A failed write is fatal for the node: the
/// runtime stops rather than acknowledge what may not be durable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An operating-system I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing, naming the file.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Data on disk is damaged somewhere other than a torn tail, and cannot
    /// be trusted; the node refuses to start.
    #[error("corrupt data in {file} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: String,
        /// The byte offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The data directory was written by an incompatible version.
    #[error("incompatible data directory: {0}")]
    Incompatible(String),
    /// Another process holds the data directory's lock.
    #[error("data directory in use: {0}")]
    InUse(String),
    /// The caller asked for something inconsistent (a gap in the log, say).
    #[error("invalid request to the store: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// One `Ready`'s worth of writes.
#[derive(Debug, Clone, Copy)]
pub struct WriteBatch<'a> {
    /// New hard state, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append. If `entries[0].index` is at or below the last
    /// stored index, the stored suffix from that index is dropped first.
    pub entries: &'a [Entry],
}

/// Durable storage for one node's Raft state.
#[async_trait::async_trait]
pub trait LogStore: Send + 'static {
    /// Reads back everything persisted, to restart from. For a new store:
    /// the default hard state, no snapshot, no entries.
    async fn initial_state(&mut self) -> Result<InitialState, StoreError>;

    /// Persists a batch durably (one fsync for the whole batch) before
    /// returning.
    async fn persist(&mut self, batch: WriteBatch<'_>) -> Result<(), StoreError>;

    /// Stores a snapshot durably, then drops log entries up to
    /// `snapshot.meta.index - keep` (whole segments for a file store). If
    /// the log does not reach the snapshot's index (a snapshot received from
    /// a leader), the whole log is dropped.
    async fn save_snapshot(&mut self, snapshot: &Snapshot, keep: u64) -> Result<(), StoreError>;

    /// The newest snapshot stored, if any.
    async fn snapshot(&mut self) -> Result<Option<Snapshot>, StoreError>;

    /// Entries in `[lo, hi)`, for inspection and tests.
    async fn entries(&mut self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>, StoreError>;
}
