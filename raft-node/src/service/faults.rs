//! Fault injection at the transport: a [`Transport`] wrapper that cuts this
//! node off from chosen peers in both directions, driven by the admin API.
//!
//! It also keeps the per-peer traffic counters the `/metrics` endpoint
//! exports, because the wrapped transport is owned by the runtime's driver
//! task and cannot be asked from an HTTP handler.
//!
//! The filter must never delay or reorder the messages it lets through, and
//! must never hold a lock across an await.

use raft_core::{Body, Message, NodeId, PeerStats, SendError, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which peers are cut off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Isolation {
    #[default]
    None,
    /// Every peer, present and future.
    All,
    Some(BTreeSet<NodeId>),
}

#[derive(Debug, Default)]
struct Inner {
    isolation: Isolation,
    peers: BTreeSet<NodeId>,
    stats: BTreeMap<NodeId, PeerStats>,
    /// Messages the filter itself dropped, per peer and direction.
    filtered_out: BTreeMap<NodeId, u64>,
    filtered_in: BTreeMap<NodeId, u64>,
}

/// The shared handle through which the admin API isolates and heals, and
/// metrics read the counters.
#[derive(Debug, Clone, Default)]
pub struct FaultControl {
    inner: Arc<Mutex<Inner>>,
    snapshots_sent: Arc<AtomicU64>,
    snapshots_received: Arc<AtomicU64>,
}

/// Counters for one peer, as exported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCounters {
    /// Messages the transport handed to the network.
    pub sent: u64,
    /// Messages the transport dropped (queue full, unreachable) plus those
    /// the fault filter dropped on the way out.
    pub dropped: u64,
    /// Messages from this peer the fault filter discarded.
    pub filtered_in: u64,
}

impl FaultControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts this node off from `peers`, or from every peer if empty.
    pub fn isolate(&self, peers: &[NodeId]) {
        let mut g = self.lock();
        if peers.is_empty() {
            g.isolation = Isolation::All;
            return;
        }
        let mut set = match std::mem::take(&mut g.isolation) {
            Isolation::All => {
                g.isolation = Isolation::All;
                return;
            }
            Isolation::None => BTreeSet::new(),
            Isolation::Some(s) => s,
        };
        set.extend(peers.iter().copied());
        g.isolation = Isolation::Some(set);
    }

    /// Undoes every isolation.
    pub fn heal(&self) {
        self.lock().isolation = Isolation::None;
    }

    /// Whether traffic with `peer` is cut.
    pub fn is_isolated(&self, peer: NodeId) -> bool {
        match &self.lock().isolation {
            Isolation::None => false,
            Isolation::All => true,
            Isolation::Some(s) => s.contains(&peer),
        }
    }

    /// The peers traffic is cut with (for "all": every peer known now).
    pub fn isolated_from(&self) -> Vec<NodeId> {
        let g = self.lock();
        match &g.isolation {
            Isolation::None => Vec::new(),
            Isolation::All => g.peers.iter().copied().collect(),
            Isolation::Some(s) => s.iter().copied().collect(),
        }
    }

    /// Counters per known peer.
    pub fn peer_counters(&self) -> BTreeMap<NodeId, PeerCounters> {
        let g = self.lock();
        g.peers
            .iter()
            .map(|p| {
                let st = g.stats.get(p).copied().unwrap_or_default();
                let out = g.filtered_out.get(p).copied().unwrap_or(0);
                let inn = g.filtered_in.get(p).copied().unwrap_or(0);
                (
                    *p,
                    PeerCounters {
                        sent: st.sent,
                        dropped: st.dropped + out,
                        filtered_in: inn,
                    },
                )
            })
            .collect()
    }

    /// Snapshot transfers started to followers.
    pub fn snapshots_sent(&self) -> u64 {
        self.snapshots_sent.load(Ordering::Relaxed)
    }

    /// Snapshot transfers started by a leader toward this node.
    pub fn snapshots_received(&self) -> u64 {
        self.snapshots_received.load(Ordering::Relaxed)
    }
}

/// How often the wrapped transport's counters are copied out.
const STATS_REFRESH: Duration = Duration::from_millis(200);

/// A transport that drops traffic with isolated peers. See the module docs.
#[derive(Debug)]
pub struct FaultFilter<T> {
    inner: T,
    control: FaultControl,
    last_refresh: Mutex<Option<Instant>>,
}

impl<T: Transport> FaultFilter<T> {
    /// Wraps `inner`; `control` is shared with the admin API.
    pub fn new(inner: T, control: FaultControl) -> Self {
        FaultFilter {
            inner,
            control,
            last_refresh: Mutex::new(None),
        }
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    fn refresh_stats(&self, force: bool) {
        let now = Instant::now();
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(|e| e.into_inner());
            if !force && last.is_some_and(|t| now.duration_since(t) < STATS_REFRESH) {
                return;
            }
            *last = Some(now);
        }
        let peers: Vec<NodeId> = self.control.lock().peers.iter().copied().collect();
        let stats: Vec<(NodeId, PeerStats)> =
            peers.iter().map(|p| (*p, self.inner.stats(*p))).collect();
        let mut g = self.control.lock();
        for (p, s) in stats {
            g.stats.insert(p, s);
        }
    }
}

fn is_first_snapshot_chunk(m: &Message) -> bool {
    matches!(&m.body, Body::InstallSnapshot { offset, .. } if *offset == 0)
}

#[async_trait::async_trait]
impl<T: Transport> Transport for FaultFilter<T> {
    fn send(&self, msg: Message) -> Result<(), SendError> {
        let to = msg.to;
        if self.control.is_isolated(to) {
            *self.control.lock().filtered_out.entry(to).or_insert(0) += 1;
            return Ok(());
        }
        if is_first_snapshot_chunk(&msg) {
            self.control.snapshots_sent.fetch_add(1, Ordering::Relaxed);
        }
        let r = self.inner.send(msg);
        self.refresh_stats(false);
        r
    }

    async fn recv(&mut self) -> Option<(NodeId, Message)> {
        loop {
            let (from, msg) = self.inner.recv().await?;
            if self.control.is_isolated(from) {
                *self.control.lock().filtered_in.entry(from).or_insert(0) += 1;
                continue;
            }
            if is_first_snapshot_chunk(&msg) {
                self.control
                    .snapshots_received
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Some((from, msg));
        }
    }

    fn add_peer(&mut self, id: NodeId, addr: String) {
        self.control.lock().peers.insert(id);
        self.inner.add_peer(id, addr);
    }

    fn remove_peer(&mut self, id: NodeId) {
        {
            let mut g = self.control.lock();
            g.peers.remove(&id);
            g.stats.remove(&id);
        }
        self.inner.remove_peer(id);
    }

    fn stats(&self, peer: NodeId) -> PeerStats {
        let mut s = self.inner.stats(peer);
        s.dropped += self
            .control
            .lock()
            .filtered_out
            .get(&peer)
            .copied()
            .unwrap_or(0);
        s
    }

    async fn shutdown(&mut self) {
        self.refresh_stats(true);
        self.inner.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_transport_mem::MemNetwork;
    use std::time::Duration;

    fn msg(from: u64, to: u64) -> Message {
        Message {
            from: NodeId(from),
            to: NodeId(to),
            term: 1,
            body: Body::TimeoutNow,
        }
    }

    async fn recv_within<T: Transport>(t: &mut T) -> Option<(NodeId, Message)> {
        tokio::time::timeout(Duration::from_millis(200), t.recv())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn isolation_cuts_both_directions_and_heals() {
        let net = MemNetwork::new(7);
        let c1 = FaultControl::default();
        let mut t1 = FaultFilter::new(net.transport(NodeId(1)), c1.clone());
        let mut t2 = net.transport(NodeId(2));
        let mut t3 = net.transport(NodeId(3));
        t1.add_peer(NodeId(2), "mem".into());
        t1.add_peer(NodeId(3), "mem".into());
        t2.add_peer(NodeId(1), "mem".into());
        t3.add_peer(NodeId(1), "mem".into());

        c1.isolate(&[NodeId(2)]);
        assert_eq!(c1.isolated_from(), vec![NodeId(2)]);
        // Out: to 2 dropped, to 3 delivered.
        t1.send(msg(1, 2)).unwrap();
        t1.send(msg(1, 3)).unwrap();
        assert!(recv_within(&mut t2).await.is_none());
        assert_eq!(recv_within(&mut t3).await.map(|(f, _)| f), Some(NodeId(1)));
        // In: from 2 discarded, from 3 delivered.
        t2.send(msg(2, 1)).unwrap();
        t3.send(msg(3, 1)).unwrap();
        assert_eq!(recv_within(&mut t1).await.map(|(f, _)| f), Some(NodeId(3)));
        assert!(recv_within(&mut t1).await.is_none());
        let counters = c1.peer_counters();
        assert_eq!(counters[&NodeId(2)].dropped, 1);
        assert_eq!(counters[&NodeId(2)].filtered_in, 1);

        // Empty list: every peer.
        c1.isolate(&[]);
        assert_eq!(c1.isolated_from(), vec![NodeId(2), NodeId(3)]);
        t1.send(msg(1, 3)).unwrap();
        assert!(recv_within(&mut t3).await.is_none());

        c1.heal();
        assert!(c1.isolated_from().is_empty());
        t1.send(msg(1, 2)).unwrap();
        assert_eq!(recv_within(&mut t2).await.map(|(f, _)| f), Some(NodeId(1)));
        t2.send(msg(2, 1)).unwrap();
        assert_eq!(recv_within(&mut t1).await.map(|(f, _)| f), Some(NodeId(2)));
    }
}
