//! A replicated counter: three nodes in one process, on the in-memory
//! transport, each applying "add N" commands to its own copy.
//!
//! Run with `cargo run -p raft-node --example counter`.

use bytes::Bytes;
use raft_core::{Config, NodeId, Role};
use raft_node::mem_store::MemStore;
use raft_node::runtime::{NodeConfig, RaftNode};
use raft_node::state_machine::{Command, StateMachine, StateMachineError};
use raft_transport_mem::MemNetwork;
use std::time::Duration;

/// The application: a number, changed by 8-byte big-endian increments.
#[derive(Debug, Default)]
struct Counter(u64);

#[async_trait::async_trait]
impl StateMachine for Counter {
    async fn apply(&mut self, cmds: &[Command<'_>]) -> Result<Vec<Bytes>, StateMachineError> {
        let mut out = Vec::with_capacity(cmds.len());
        for c in cmds {
            let add: [u8; 8] = c.data[..].try_into().unwrap_or([0; 8]);
            self.0 = self.0.wrapping_add(u64::from_be_bytes(add));
            out.push(Bytes::copy_from_slice(&self.0.to_be_bytes()));
        }
        Ok(out)
    }
    async fn snapshot(&mut self) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::copy_from_slice(&self.0.to_be_bytes()))
    }
    async fn restore(&mut self, snap: Bytes) -> Result<(), StateMachineError> {
        let v: [u8; 8] = snap[..]
            .try_into()
            .map_err(|_| StateMachineError::new("bad snapshot"))?;
        self.0 = u64::from_be_bytes(v);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = MemNetwork::new(42);
    let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let mut nodes = Vec::new();
    for id in &ids {
        let mut cfg = NodeConfig::new(Config::new(*id, ids.clone()));
        cfg.tick_interval = Duration::from_millis(10);
        let t = net.transport(*id);
        nodes.push(RaftNode::start(cfg, t, MemStore::new(), Counter::default()).await?);
    }
    // Wait for an election, then add 1..=10 through the leader.
    let leader = loop {
        if let Some(h) = nodes.iter().find(|h| h.status().role == Role::Leader) {
            break h.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for i in 1..=10u64 {
        let done = leader
            .propose(Bytes::copy_from_slice(&i.to_be_bytes()))
            .await?;
        let value = u64::from_be_bytes(done.response[..].try_into()?);
        println!("add {i:>2} at index {:>2}: counter = {value}", done.index);
    }
    for h in &nodes {
        h.shutdown().await;
    }
    Ok(())
}
