//! A deterministic simulator of whole clusters, with the invariant checkers
//! of the Raft paper.
//!
//! Two ways in:
//!
//! - [`run_seed`] runs one randomized scenario. The seed picks the cluster
//!   size (3, 5 or 7), the configuration and the fault rates (swarm
//!   testing), then runs a phase of faults (message loss, duplication,
//!   delay and reordering; partitions of every shape, including every node
//!   alone; crashes at any point of a `Ready`, restarts from disk; slow
//!   disks; clients proposing and reading throughout), then heals
//!   everything and demands that one leader emerges, that proposals made
//!   to it commit and that every node applies everything, within a bounded
//!   number of ticks. A failure carries the command that replays it.
//! - [`Cluster`] is the same machinery under manual control: tick, deliver
//!   one message at a time, cut links, crash and restart, propose. The
//!   scenario tests of the paper's rules are written with it.
//!
//! Either way the [`Checker`] runs after every delivered message, tick and
//! `Ready`: election safety, leader append-only, log matching, leader
//! completeness, state machine safety, durability (every committed entry is
//! on a majority of disks; nothing acknowledged is missing from the
//! sender's disk), linearizable read indices, and the `Ready` contract
//! itself.
//!
//! ```
//! use raft_core::sim::{run_seed, SimOptions};
//!
//! let report = run_seed(7, &SimOptions::default()).expect("seed 7 passes");
//! assert!(report.committed > 0);
//! // Same seed, same run.
//! assert_eq!(run_seed(7, &SimOptions::default()).unwrap().fingerprint, report.fingerprint);
//! ```
//!
//! The simulator must never read a clock, use ambient randomness, do I/O
//! (beyond printing a trace when asked) or reach into a node other than
//! through the public [`crate::Raft`] API: a run is a pure function of its
//! seed and options.

mod checker;
mod cluster;
mod disk;
mod swarm;

pub use checker::{Checker, FakeNode, NodeView, Violation};
pub use cluster::{
    Brief, Cluster, ClusterBuilder, CrashPoint, DriverBug, Event, EventKind, IoFaults, NetFaults,
    Stats,
};
pub use disk::{digest_step, App, Disk, WriteOutcome};
pub use swarm::{
    replay_command, run_seed, ConfPlan, Faults, Setup, SimFailure, SimOptions, SimReport,
    ROUND_TRIP_TICKS,
};
