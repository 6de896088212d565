//! The runtime that drives a [`raft_core::Raft`] for real: it keeps time,
//! moves messages over a [`raft_core::Transport`], persists through a
//! [`store::LogStore`] and applies to a state machine. The `raft-node`
//! binary builds a replicated key-value service on it.

#![forbid(unsafe_code)]

pub mod loadgen;
pub mod mem_store;
pub mod runtime;
pub mod service;
pub mod state_machine;
pub mod store;
pub mod wal;
