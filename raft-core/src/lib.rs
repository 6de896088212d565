//! The Raft consensus protocol as a deterministic state machine.
//!
//! This crate does no I/O, reads no clock, starts no thread and uses no
//! ambient randomness. It decides; a driver (the runtime in `raft-node`, the
//! simulator in [`sim`], or your own) moves bytes, keeps time and writes to
//! disk. A run is a pure function of the configuration (including its
//! seed) and the sequence of inputs.
//!
//! # Example: three nodes on an in-memory loop
//!
//! ```
//! use raft_core::{Config, EntryKind, NodeId, Raft, Role};
//! use std::collections::VecDeque;
//!
//! let ids = [NodeId(1), NodeId(2), NodeId(3)];
//! let mut nodes: Vec<Raft> = ids
//!     .iter()
//!     .map(|&id| Raft::new(Config::new(id, ids)).expect("valid config"))
//!     .collect();
//! let mut applied = vec![Vec::new(); 3];
//! let mut wire = VecDeque::new();
//!
//! // One round of the driver loop: handle each node's Ready in the order
//! // the contract prescribes, then deliver every message.
//! let mut drive = |nodes: &mut Vec<Raft>, applied: &mut Vec<Vec<Vec<u8>>>| {
//!     for _ in 0..50 {
//!         for (i, node) in nodes.iter_mut().enumerate() {
//!             if !node.has_ready() {
//!                 continue;
//!             }
//!             let rd = node.ready();
//!             wire.extend(rd.messages); // may leave at once
//!             // ... persist rd.entries and rd.hard_state here ...
//!             wire.extend(rd.persisted_messages); // only after persisting
//!             for e in rd.committed_entries {
//!                 // Skip the bootstrap configuration and leaders' no-ops.
//!                 if e.kind == EntryKind::Normal {
//!                     applied[i].push(e.data.to_vec());
//!                 }
//!             }
//!             node.advance();
//!         }
//!         while let Some(m) = wire.pop_front() {
//!             let to = (m.to.0 - 1) as usize;
//!             nodes[to].step(m).expect("addressed to this node");
//!         }
//!     }
//! };
//!
//! // Node 1's election timer fires first.
//! while nodes[0].role() != Role::Leader {
//!     nodes[0].tick();
//!     drive(&mut nodes, &mut applied);
//! }
//! assert_eq!(nodes.iter().filter(|n| n.role() == Role::Leader).count(), 1);
//!
//! nodes[0].propose("hello".into()).expect("node 1 leads");
//! drive(&mut nodes, &mut applied);
//! // Heartbeats carry the new commit index to the followers.
//! for _ in 0..4 {
//!     nodes[0].tick();
//!     drive(&mut nodes, &mut applied);
//! }
//! for a in &applied {
//!     assert_eq!(a, &vec![b"hello".to_vec()]);
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod codec;
pub mod config;
mod log;
pub mod membership;
pub mod message;
pub mod raft;
pub mod ready;
pub mod rng;
#[cfg(feature = "sim")]
pub mod sim;
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
