//! The replicated key-value service that the `raft-node` binary runs: the
//! command line, the key-value state machine, the HTTP API, metrics and
//! fault injection. Everything here sits on top of the runtime and talks to
//! it only through its public handle; none of it may block the runtime's
//! driver task.

pub mod cli;
pub mod conn_limit;
pub mod faults;
pub mod http;
pub mod kv;
pub mod metrics;
pub mod node;
pub mod tls;
