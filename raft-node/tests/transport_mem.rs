//! The transport conformance suite against raft-transport-mem.

// Test code: a setup step that fails should fail the test, loudly.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod conformance;

use conformance::{Harness, Opts};
use raft_core::NodeId;
use raft_transport_mem::{MemConfig, MemNetwork, MemTransport};

struct Mem {
    net: MemNetwork,
}

impl Harness for Mem {
    type T = MemTransport;

    async fn create(opts: Opts) -> Self {
        let config = if opts.small_buffers {
            MemConfig { queue_capacity: 64 }
        } else {
            MemConfig::default()
        };
        Mem {
            net: MemNetwork::with_config(7, config),
        }
    }

    async fn start(&self, id: NodeId, _at: Option<&str>) -> (MemTransport, String) {
        // Addresses mean nothing in memory: a node is its id.
        (self.net.transport(id), format!("mem:{}", id.0))
    }

    async fn port_free(&self, _addr: &str) -> bool {
        true
    }
}

conformance_tests!(Mem);
