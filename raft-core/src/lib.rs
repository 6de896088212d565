//! The Raft consensus protocol as a deterministic state machine.
//!
//! This crate does no I/O, reads no clock, starts no thread and uses no
//! ambient randomness. It decides; a driver (the runtime in `raft-node`, the
//! simulator in [`sim`], or your own) moves bytes, keeps time and writes to
//! disk. A run is a pure function of the configuration (including its
//! seed) and the sequence of inputs.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod config;
mod log;
pub mod membership;
pub mod message;
pub mod raft;
pub mod ready;
pub mod rng;
pub mod transport;
pub mod types;

pub use config::{Config, ConfigError};
pub use membership::{Membership, MembershipError};
pub use message::{
    Body, ConfChange, ConfChangeStep, Entry, EntryKind, Message, Snapshot, SnapshotMeta,
};
pub use raft::{
    CompactError, PeerProgress, ProgressState, ProposeError, Raft, Status, StepError, TransferError,
};
pub use ready::{InitialState, ReadState, Ready};
pub use transport::{PeerStats, SendError, Transport};
pub use types::{HardState, LogIndex, NodeId, Role, SoftState, Term};
