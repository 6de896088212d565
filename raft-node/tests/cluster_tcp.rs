//! Whole clusters of the runtime, in process, over the TCP transport on
//! loopback: real sockets and real time, so every wait is bounded and
//! generous.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Cluster, Opts, TransportFactory};
use raft_core::NodeId;
use raft_transport_tcp::{TcpConfig, TcpTransport};
use std::collections::BTreeMap;
use std::net::SocketAddr;

const CLUSTER_ID: u64 = 0x7c9;

/// Binds each node on an OS-assigned port the first time, and on that same
/// port again after a restart.
#[derive(Default)]
struct Tcp {
    addrs: BTreeMap<NodeId, SocketAddr>,
}

impl TransportFactory for Tcp {
    type T = TcpTransport;
    async fn create(&mut self, id: NodeId) -> (TcpTransport, String) {
        let addr = self
            .addrs
            .get(&id)
            .copied()
            .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let t = common::rebind(&format!("node {id} on {addr}"), || {
            TcpTransport::bind(TcpConfig::new(id, CLUSTER_ID, addr))
        })
        .await;
        let local = t.local_addr();
        self.addrs.insert(id, local);
        (t, local.to_string())
    }
}

async fn cluster() -> Cluster<Tcp> {
    Cluster::start(Tcp::default(), 3, Opts::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_three_nodes_elect_one_leader() {
    let mut c = cluster().await;
    common::check_elects_one_leader(&c).await;
    common::shutdown_concurrently(&mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_writes_apply_in_order_on_every_node() {
    let mut c = cluster().await;
    common::check_writes_apply_in_order(&c).await;
    common::shutdown_concurrently(&mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_restarted_follower_catches_up() {
    let mut c = cluster().await;
    common::check_restarted_follower_catches_up(&mut c).await;
    common::shutdown_concurrently(&mut c).await;
}
