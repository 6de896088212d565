//! One directed link of the network: its bounded in-flight count, its
//! counters, its PRNG and, when it delays messages, the task that holds them
//! until they are due.

use crate::faults::{Counters, Plan};
use raft_core::rng::Rng;
use raft_core::{Message, NodeId, PeerStats, SendError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A message on its way into a node's inbox.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) link: Arc<Link>,
    pub(crate) msg: Message,
}

#[derive(Debug)]
struct Delayed {
    at: Instant,
    seq: u64,
    msg: Message,
}

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    /// Messages accepted on this link and not yet received (or discarded).
    pub(crate) queued: AtomicUsize,
    pub(crate) sent: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// Messages held by the delay task. While any are, new messages also go
    /// through it, so that a delay being lifted never lets a message
    /// overtake an earlier one.
    in_pipe: AtomicUsize,
    inbox: RwLock<Option<mpsc::UnboundedSender<Delivery>>>,
    state: Mutex<LinkState>,
}

#[derive(Debug)]
struct LinkState {
    rng: Rng,
    pipe: Option<mpsc::UnboundedSender<Delayed>>,
    /// When the last in-order delayed message is due: later ones are due no
    /// earlier, so jitter never reorders.
    fifo_tail: Option<Instant>,
    seq: u64,
}

impl Link {
    pub(crate) fn new(
        from: NodeId,
        to: NodeId,
        seed: u64,
        inbox: Option<mpsc::UnboundedSender<Delivery>>,
    ) -> Self {
        // Each link draws from its own stream, so what happens on one link
        // does not depend on how sends on others interleave with it.
        let mut mix = Rng::new(seed ^ from.0.rotate_left(32) ^ to.0);
        let link_seed = mix.next_u64();
        Link {
            from,
            to,
            queued: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            in_pipe: AtomicUsize::new(0),
            inbox: RwLock::new(inbox),
            state: Mutex::new(LinkState {
                rng: Rng::new(link_seed),
                pipe: None,
                fifo_tail: None,
                seq: 0,
            }),
        }
    }

    pub(crate) fn stats(&self) -> PeerStats {
        PeerStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_inbox(&self, inbox: Option<mpsc::UnboundedSender<Delivery>>) {
        *self.inbox.write().unwrap_or_else(|e| e.into_inner()) = inbox;
    }

    /// Runs `f` with this link's PRNG.
    pub(crate) fn with_rng<R>(&self, f: impl FnOnce(&mut Rng) -> R) -> R {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut st.rng)
    }

    /// Accepts `msg` onto the link (or drops it if the link is full) and
    /// delivers it now or when `plan` says.
    pub(crate) fn deliver(
        self: &Arc<Self>,
        msg: Message,
        plan: &Plan,
        capacity: usize,
        stats: &Arc<Counters>,
    ) -> Result<(), SendError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            stats.dropped_overflow.fetch_add(1, Ordering::Relaxed);
            return Err(SendError::QueueFull(self.to));
        }
        let immediate = plan.delay.is_zero()
            && plan.reorder.is_none()
            && self.in_pipe.load(Ordering::Acquire) == 0;
        if immediate {
            self.push_now(msg, stats)?;
            self.count_sent(stats);
            return Ok(());
        }
        self.count_sent(stats);
        if plan.reorder.is_some() {
            stats.reordered.fetch_add(1, Ordering::Relaxed);
        }
        self.schedule(msg, plan, stats)
    }

    fn count_sent(&self, stats: &Counters) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        stats.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands `msg` to the addressee's inbox.
    fn push_now(self: &Arc<Self>, msg: Message, stats: &Counters) -> Result<(), SendError> {
        let inbox = self.inbox.read().unwrap_or_else(|e| e.into_inner());
        let sent = match inbox.as_ref() {
            Some(tx) => tx
                .send(Delivery {
                    link: self.clone(),
                    msg,
                })
                .is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The addressee has no transport (never started, or crashed).
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            stats.dropped_unreachable.fetch_add(1, Ordering::Relaxed);
            Err(SendError::UnknownPeer(self.to))
        }
    }

    fn schedule(
        self: &Arc<Self>,
        msg: Message,
        plan: &Plan,
        stats: &Arc<Counters>,
    ) -> Result<(), SendError> {
        if tokio::runtime::Handle::try_current().is_err() {
            // No timer to wait on outside a runtime: deliver at once.
            return self.push_now(msg, stats);
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let at = match plan.reorder {
            // Held back outside the FIFO order: later messages overtake it.
            Some(extra) => now + plan.delay + extra,
            None => {
                let at = (now + plan.delay).max(st.fifo_tail.unwrap_or(now));
                st.fifo_tail = Some(at);
                at
            }
        };
        st.seq += 1;
        let seq = st.seq;
        let pipe = match &st.pipe {
            Some(p) if !p.is_closed() => p.clone(),
            _ => {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run_pipe(Arc::downgrade(self), rx, stats.clone()));
                st.pipe = Some(tx.clone());
                tx
            }
        };
        self.in_pipe.fetch_add(1, Ordering::AcqRel);
        if pipe.send(Delayed { at, seq, msg }).is_err() {
            self.in_pipe.fetch_sub(1, Ordering::AcqRel);
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Holds a link's delayed messages and releases each when it is due, in
/// (due time, send order).
async fn run_pipe(
    link: Weak<Link>,
    mut rx: mpsc::UnboundedReceiver<Delayed>,
    stats: Arc<Counters>,
) {
    let mut held: BTreeMap<(Instant, u64), Message> = BTreeMap::new();
    loop {
        let next = held.keys().next().map(|(at, _)| *at);
        let due = async move {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            item = rx.recv() => match item {
                Some(d) => {
                    held.insert((d.at, d.seq), d.msg);
                }
                None => return,
            },
            () = due => {
                let Some(link) = link.upgrade() else { return };
                let now = Instant::now();
                while let Some(entry) = held.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let msg = entry.remove();
                    let _ = link.push_now(msg, &stats);
                    // Only now may new sends take the direct path.
                    link.in_pipe.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
}

/// The largest jitter or reorder hold-back drawn, in nanoseconds, so the
/// arithmetic below cannot overflow.
const MAX_RANDOM_NANOS: u64 = 3_600 * 1_000_000_000;

/// A random duration in `[0, max]`.
pub(crate) fn random_duration(rng: &mut Rng, max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos())
        .unwrap_or(MAX_RANDOM_NANOS)
        .min(MAX_RANDOM_NANOS);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.range(0, nanos + 1))
}
