//! An in-process network for Raft nodes, over tokio channels, with fault
//! injection.
//!
//! [`MemNetwork`] is one simulated network. It hands out a [`MemTransport`]
//! per node id (implementing [`raft_core::Transport`]) and one
//! [`FaultController`] that tests and tools share to cut it apart
//! (partitions in any grouping, one-way cuts, isolation), heal it, and
//! degrade individual links (random loss, delay and jitter, duplication,
//! reordering).
//!
//! Every random choice comes from a per-link PRNG seeded from the network's
//! seed and the link's endpoints, and every delay is a `tokio::time` sleep,
//! so a run under tokio's paused clock is reproducible.
//!
//! What this crate must never do: block a sender, or grow memory without
//! bound. Each directed link holds at most
//! [`MemConfig::queue_capacity`] messages in flight (delayed or waiting in
//! the receiver's inbox); beyond that, messages are dropped and counted.
//!
//! A node is "restarted" by dropping its transport and asking the network
//! for a new one under the same id: messages in flight to the old one are
//! lost, as they would be in a crash.

#![forbid(unsafe_code)]

mod faults;
mod link;

pub use faults::{FaultController, LinkFaults, NetworkStats};

use faults::Verdict;
use link::{Delivery, Link};
use raft_core::{Message, NodeId, PeerStats, SendError, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Settings of a [`MemNetwork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemConfig {
    /// Most messages in flight on one directed link (from one node to
    /// another). Further sends are dropped and counted until the receiver
    /// catches up.
    pub queue_capacity: usize,
}

impl Default for MemConfig {
    fn default() -> Self {
        MemConfig {
            queue_capacity: 4096,
        }
    }
}

/// One simulated network. Cheap to clone: clones share the network.
#[derive(Debug, Clone)]
pub struct MemNetwork {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) seed: u64,
    pub(crate) config: MemConfig,
    registry: Mutex<Registry>,
    pub(crate) faults: faults::Faults,
}

#[derive(Debug, Default)]
struct Registry {
    /// The current inbox of each node that has a transport, with the
    /// generation of that transport.
    inboxes: BTreeMap<NodeId, (u64, mpsc::UnboundedSender<Delivery>)>,
    links: BTreeMap<(NodeId, NodeId), Arc<Link>>,
    next_generation: u64,
}

impl Shared {
    fn lock_registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic elsewhere while holding the lock leaves the maps intact
        // (every update is a single insert), so a poisoned lock is usable.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn link(self: &Arc<Self>, from: NodeId, to: NodeId) -> Arc<Link> {
        let mut reg = self.lock_registry();
        if let Some(l) = reg.links.get(&(from, to)) {
            return l.clone();
        }
        let inbox = reg.inboxes.get(&to).map(|(_, tx)| tx.clone());
        let link = Arc::new(Link::new(from, to, self.seed, inbox));
        reg.links.insert((from, to), link.clone());
        link
    }
}

impl MemNetwork {
    /// A network whose random choices all derive from `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, MemConfig::default())
    }

    /// A network with explicit settings.
    pub fn with_config(seed: u64, config: MemConfig) -> Self {
        MemNetwork {
            shared: Arc::new(Shared {
                seed,
                config: MemConfig {
                    queue_capacity: config.queue_capacity.max(1),
                },
                registry: Mutex::new(Registry::default()),
                faults: faults::Faults::default(),
            }),
        }
    }

    /// The transport of node `id`. Asking again for the same id replaces
    /// the previous transport (a restart): messages not yet received by the
    /// old one are lost, and new messages go to the new one.
    pub fn transport(&self, id: NodeId) -> MemTransport {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut reg = self.shared.lock_registry();
        reg.next_generation += 1;
        let generation = reg.next_generation;
        let restarted = reg.inboxes.insert(id, (generation, tx.clone())).is_some();
        for ((_, to), link) in reg.links.iter() {
            if *to == id {
                link.set_inbox(Some(tx.clone()));
            }
        }
        drop(reg);
        tracing::debug!(node = %id, generation, restarted, "in-memory transport attached");
        MemTransport {
            id,
            generation,
            shared: self.shared.clone(),
            rx,
            links: Mutex::new(BTreeMap::new()),
            removed: BTreeSet::new(),
            closed: false,
        }
    }

    /// The fault controller of this network (shared by every clone).
    pub fn faults(&self) -> FaultController {
        FaultController::new(self.shared.clone())
    }

    /// The nodes that currently have a transport attached.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.shared
            .lock_registry()
            .inboxes
            .keys()
            .copied()
            .collect()
    }

    /// Counters of one directed link.
    pub fn link_stats(&self, from: NodeId, to: NodeId) -> PeerStats {
        self.shared.link(from, to).stats()
    }
}

/// One node's end of a [`MemNetwork`].
///
/// Every node registered with the network is reachable unless removed with
/// [`Transport::remove_peer`]; addresses given to [`Transport::add_peer`]
/// are ignored.
#[derive(Debug)]
pub struct MemTransport {
    id: NodeId,
    generation: u64,
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Delivery>,
    /// Links by addressee, cached to keep the registry lock off the send
    /// path.
    links: Mutex<BTreeMap<NodeId, Arc<Link>>>,
    removed: BTreeSet<NodeId>,
    closed: bool,
}

impl MemTransport {
    /// The node this transport belongs to.
    pub fn id(&self) -> NodeId {
        self.id
    }

    fn link(&self, to: NodeId) -> Arc<Link> {
        let mut cache = self.links.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(to)
            .or_insert_with(|| self.shared.link(self.id, to))
            .clone()
    }
}

#[async_trait::async_trait]
impl Transport for MemTransport {
    fn send(&self, msg: Message) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Shutdown);
        }
        let to = msg.to;
        if self.removed.contains(&to) || to == self.id {
            return Err(SendError::UnknownPeer(to));
        }
        let link = self.link(to);
        let verdict = self.shared.faults.judge(&link);
        let stats = &self.shared.faults.stats;
        match verdict {
            Verdict::Cut => {
                link.dropped.fetch_add(1, Ordering::Relaxed);
                stats.dropped_cut.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Verdict::Lost => {
                link.dropped.fetch_add(1, Ordering::Relaxed);
                stats.dropped_random.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Verdict::Deliver(plan) => {
                if plan.duplicate {
                    stats.duplicated.fetch_add(1, Ordering::Relaxed);
                    // The copy's fate is separate: it may overflow on its own.
                    let _ =
                        link.deliver(msg.clone(), &plan, self.shared.config.queue_capacity, stats);
                }
                link.deliver(msg, &plan, self.shared.config.queue_capacity, stats)
            }
        }
    }

    async fn recv(&mut self) -> Option<(NodeId, Message)> {
        loop {
            if self.closed {
                return None;
            }
            // `UnboundedReceiver::recv` is cancel-safe, and nothing below
            // awaits, so dropping this future loses no message.
            let d = self.rx.recv().await?;
            d.link.queued.fetch_sub(1, Ordering::AcqRel);
            if self.shared.faults.is_cut(d.link.from, self.id) {
                // The cut happened while the message was in flight.
                d.link.dropped.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .faults
                    .stats
                    .dropped_cut
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if self.removed.contains(&d.link.from) {
                continue;
            }
            self.shared
                .faults
                .stats
                .delivered
                .fetch_add(1, Ordering::Relaxed);
            return Some((d.link.from, d.msg));
        }
    }

    fn add_peer(&mut self, id: NodeId, _addr: String) {
        self.removed.remove(&id);
    }

    fn remove_peer(&mut self, id: NodeId) {
        self.removed.insert(id);
    }

    fn stats(&self, peer: NodeId) -> PeerStats {
        self.link(peer).stats()
    }

    async fn shutdown(&mut self) {
        self.detach();
    }
}

impl MemTransport {
    fn detach(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.rx.close();
        let mut reg = self.shared.lock_registry();
        if reg
            .inboxes
            .get(&self.id)
            .is_some_and(|(g, _)| *g == self.generation)
        {
            reg.inboxes.remove(&self.id);
            for ((_, to), link) in reg.links.iter() {
                if *to == self.id {
                    link.set_inbox(None);
                }
            }
        }
        // Messages this node never read no longer occupy their links.
        while let Ok(d) = self.rx.try_recv() {
            d.link.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for MemTransport {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests;
