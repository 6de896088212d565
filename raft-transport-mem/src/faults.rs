//! The fault model: which links are cut, how each link misbehaves, and the
//! network-wide counters.

use crate::link::{random_duration, Link};
use crate::Shared;
use raft_core::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How one directed link misbehaves. The default is a perfect link.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkFaults {
    /// Probability in [0, 1] that a message is lost.
    pub drop: f64,
    /// Delay added to every message.
    pub delay: Duration,
    /// Extra random delay in `[0, jitter]` per message. Messages still
    /// arrive in order: jitter never lets one overtake another.
    pub jitter: Duration,
    /// Probability in [0, 1] that a message is delivered twice.
    pub duplicate: f64,
    /// Probability in [0, 1] that a message is held back by a random extra
    /// delay in `[0, reorder_window]`, outside the link's FIFO order, so
    /// that later messages overtake it. This deliberately breaks the
    /// transport's ordering promise, to test that nodes cope.
    pub reorder: f64,
    /// The longest hold-back of a reordered message (10 ms if zero).
    pub reorder_window: Duration,
}

impl LinkFaults {
    fn is_clean(&self) -> bool {
        self.drop <= 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.duplicate <= 0.0
            && self.reorder <= 0.0
    }
}

/// Network-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Messages accepted onto a link.
    pub sent: u64,
    /// Messages handed to the receiving node.
    pub delivered: u64,
    /// Messages dropped because their link was cut (at send or on arrival).
    pub dropped_cut: u64,
    /// Messages lost to a link's drop probability.
    pub dropped_random: u64,
    /// Messages dropped because their link's queue was full.
    pub dropped_overflow: u64,
    /// Messages dropped because the addressee had no transport.
    pub dropped_unreachable: u64,
    /// Messages sent twice.
    pub duplicated: u64,
    /// Messages held back out of order.
    pub reordered: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped_cut: AtomicU64,
    pub(crate) dropped_random: AtomicU64,
    pub(crate) dropped_overflow: AtomicU64,
    pub(crate) dropped_unreachable: AtomicU64,
    pub(crate) duplicated: AtomicU64,
    pub(crate) reordered: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> NetworkStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetworkStats {
            sent: get(&self.sent),
            delivered: get(&self.delivered),
            dropped_cut: get(&self.dropped_cut),
            dropped_random: get(&self.dropped_random),
            dropped_overflow: get(&self.dropped_overflow),
            dropped_unreachable: get(&self.dropped_unreachable),
            duplicated: get(&self.duplicated),
            reordered: get(&self.reordered),
        }
    }
}

#[derive(Debug, Default)]
struct FaultState {
    cut_all: bool,
    cuts: BTreeSet<(NodeId, NodeId)>,
    isolated: BTreeSet<NodeId>,
    links: BTreeMap<(NodeId, NodeId), LinkFaults>,
    default_link: LinkFaults,
}

impl FaultState {
    fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut_all
            || self.isolated.contains(&from)
            || self.isolated.contains(&to)
            || self.cuts.contains(&(from, to))
    }

    fn any(&self) -> bool {
        self.cut_all
            || !self.cuts.is_empty()
            || !self.isolated.is_empty()
            || !self.default_link.is_clean()
            || self.links.values().any(|l| !l.is_clean())
    }
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Plan {
    pub(crate) duplicate: bool,
    pub(crate) delay: Duration,
    pub(crate) reorder: Option<Duration>,
}

#[derive(Debug)]
pub(crate) enum Verdict {
    Cut,
    Lost,
    Deliver(Plan),
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    state: RwLock<FaultState>,
    /// False while the network is perfect, which keeps the lock off the
    /// send path.
    active: AtomicBool,
    /// Shared with the delay tasks, which must not keep the network alive.
    pub(crate) stats: Arc<Counters>,
}

impl Faults {
    pub(crate) fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        self.read().is_cut(from, to)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, FaultState> {
        // Fault settings are plain data updated in one assignment each; a
        // poisoned lock still holds a consistent state.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut FaultState)) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        f(&mut st);
        self.active.store(st.any(), Ordering::Release);
    }

    /// Decides the fate of the next message on `link`.
    pub(crate) fn judge(&self, link: &Link) -> Verdict {
        if !self.active.load(Ordering::Acquire) {
            return Verdict::Deliver(Plan::default());
        }
        let st = self.read();
        if st.is_cut(link.from, link.to) {
            return Verdict::Cut;
        }
        let lf = *st
            .links
            .get(&(link.from, link.to))
            .unwrap_or(&st.default_link);
        drop(st);
        if lf.is_clean() {
            return Verdict::Deliver(Plan::default());
        }
        link.with_rng(|rng| {
            if rng.chance(lf.drop) {
                return Verdict::Lost;
            }
            let delay = lf.delay + random_duration(rng, lf.jitter);
            let duplicate = rng.chance(lf.duplicate);
            let reorder = if rng.chance(lf.reorder) {
                let window = if lf.reorder_window.is_zero() {
                    Duration::from_millis(10)
                } else {
                    lf.reorder_window
                };
                Some(random_duration(rng, window))
            } else {
                None
            };
            Verdict::Deliver(Plan {
                duplicate,
                delay,
                reorder,
            })
        })
    }
}

/// Cuts, heals and degrades a [`crate::MemNetwork`]. Cheap to clone; every
/// clone controls the same network. Cuts take effect at once, also on
/// messages already in flight.
#[derive(Debug, Clone)]
pub struct FaultController {
    shared: Arc<Shared>,
}

impl FaultController {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        FaultController { shared }
    }

    fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Splits the network into `groups`: every link between nodes of
    /// different groups is cut in both directions. Links of nodes not
    /// listed are left as they are. Adds to existing cuts.
    pub fn partition<G: AsRef<[NodeId]>>(&self, groups: &[G]) {
        let groups: Vec<&[NodeId]> = groups.iter().map(AsRef::as_ref).collect();
        tracing::info!(groups = ?groups, "network partitioned");
        self.faults().update(|st| {
            for (i, a) in groups.iter().enumerate() {
                for (j, b) in groups.iter().enumerate() {
                    if i == j {
                        continue;
                    }
                    for x in a.iter() {
                        for y in b.iter() {
                            if x != y {
                                st.cuts.insert((*x, *y));
                            }
                        }
                    }
                }
            }
        });
    }

    /// Cuts the link from `from` to `to` only (a one-way partition).
    pub fn cut(&self, from: NodeId, to: NodeId) {
        tracing::info!(%from, %to, "link cut (one way)");
        self.faults().update(|st| {
            st.cuts.insert((from, to));
        });
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_both(&self, a: NodeId, b: NodeId) {
        tracing::info!(%a, %b, "link cut (both ways)");
        self.faults().update(|st| {
            st.cuts.insert((a, b));
            st.cuts.insert((b, a));
        });
    }

    /// Cuts every link of every node, present and future.
    pub fn cut_all(&self) {
        tracing::info!("every link cut");
        self.faults().update(|st| st.cut_all = true);
    }

    /// Cuts `id` off from every other node, both ways.
    pub fn isolate(&self, id: NodeId) {
        tracing::info!(node = %id, "node isolated");
        self.faults().update(|st| {
            st.isolated.insert(id);
        });
    }

    /// Restores the link from `from` to `to` (not the reverse one). A node
    /// isolation or [`FaultController::cut_all`] still applies.
    pub fn restore(&self, from: NodeId, to: NodeId) {
        tracing::info!(%from, %to, "link restored (one way)");
        self.faults().update(|st| {
            st.cuts.remove(&(from, to));
        });
    }

    /// Lifts `id`'s isolation and every cut to or from it.
    pub fn heal_node(&self, id: NodeId) {
        tracing::info!(node = %id, "node healed");
        self.faults().update(|st| {
            st.isolated.remove(&id);
            st.cuts.retain(|(a, b)| *a != id && *b != id);
        });
    }

    /// Lifts every cut, isolation and partition. Link degradations set with
    /// [`FaultController::set_link`] stay.
    pub fn heal(&self) {
        tracing::info!("network healed");
        self.faults().update(|st| {
            st.cut_all = false;
            st.cuts.clear();
            st.isolated.clear();
        });
    }

    /// Sets how the link from `from` to `to` misbehaves.
    pub fn set_link(&self, from: NodeId, to: NodeId, faults: LinkFaults) {
        tracing::info!(%from, %to, ?faults, "link faults set");
        self.faults().update(|st| {
            st.links.insert((from, to), faults);
        });
    }

    /// Sets how every link without its own setting misbehaves.
    pub fn set_default_link(&self, faults: LinkFaults) {
        tracing::info!(?faults, "default link faults set");
        self.faults().update(|st| st.default_link = faults);
    }

    /// Makes every link perfect again (cuts stay).
    pub fn clear_link_faults(&self) {
        tracing::info!("link faults cleared");
        self.faults().update(|st| {
            st.links.clear();
            st.default_link = LinkFaults::default();
        });
    }

    /// Heals every cut and clears every link fault.
    pub fn reset(&self) {
        self.heal();
        self.clear_link_faults();
    }

    /// Whether messages from `from` to `to` are currently cut.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.faults().is_cut(from, to)
    }

    /// The network-wide counters.
    pub fn stats(&self) -> NetworkStats {
        self.faults().stats.snapshot()
    }
}
