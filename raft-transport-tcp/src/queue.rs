//! The bounded outgoing queue of one peer, with two lanes.
//!
//! `send` pushes without waiting; the peer's writer task takes everything
//! queued at once, which is what lets it batch many frames into one write.
//! Bulk frames (snapshot chunks) wait in their own lane and the writer takes
//! at most one of them per round, so replication and heartbeats queued after
//! a chunk overtake the chunks still waiting. The queue is bounded both in
//! messages and in bytes; it must never grow past those bounds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// Per-peer counters behind [`raft_core::PeerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn add_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> raft_core::PeerStats {
        raft_core::PeerStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    Full,
    Closed,
}

#[derive(Debug, Default)]
struct Lanes {
    normal: VecDeque<Vec<u8>>,
    bulk: VecDeque<Vec<u8>>,
    bytes: usize,
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct PeerQueue {
    lanes: Mutex<Lanes>,
    ready: Notify,
    max_messages: usize,
    max_bytes: usize,
}

impl PeerQueue {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        PeerQueue {
            lanes: Mutex::new(Lanes::default()),
            ready: Notify::new(),
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lanes> {
        // A panic while holding this lock can only come from an allocation
        // failure; the lanes are still consistent, so keep using them.
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame. A frame larger than the byte bound is still accepted
    /// into an empty queue, so that a single large message can always pass.
    pub(crate) fn push(&self, frame: Vec<u8>, bulk: bool) -> Result<(), PushError> {
        {
            let mut l = self.lock();
            if l.closed {
                return Err(PushError::Closed);
            }
            let count = l.normal.len() + l.bulk.len();
            let empty = count == 0;
            if count >= self.max_messages || (!empty && l.bytes + frame.len() > self.max_bytes) {
                return Err(PushError::Full);
            }
            l.bytes += frame.len();
            if bulk {
                l.bulk.push_back(frame);
            } else {
                l.normal.push_back(frame);
            }
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Moves every normal frame and at most one bulk frame into `out`
    /// (normal frames first). Returns false once the queue is closed.
    pub(crate) fn take(&self, out: &mut Vec<Vec<u8>>) -> bool {
        let mut l = self.lock();
        let mut taken = 0;
        out.extend(l.normal.drain(..).inspect(|f| taken += f.len()));
        if let Some(f) = l.bulk.pop_front() {
            taken += f.len();
            out.push(f);
        }
        l.bytes -= taken;
        !l.closed
    }

    pub(crate) fn is_empty(&self) -> bool {
        let l = self.lock();
        l.normal.is_empty() && l.bulk.is_empty()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits until a push may have happened (or the queue was closed).
    /// Cancel-safe: a wake-up that arrives for a dropped waiter is kept.
    pub(crate) async fn changed(&self) {
        self.ready.notified().await;
    }

    /// Rejects further pushes and discards what is queued, returning how
    /// many messages were discarded.
    pub(crate) fn close(&self) -> usize {
        let n = {
            let mut l = self.lock();
            l.closed = true;
            let n = l.normal.len() + l.bulk.len();
            l.normal.clear();
            l.bulk.clear();
            l.bytes = 0;
            n
        };
        self.ready.notify_one();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_and_bytes() {
        let q = PeerQueue::new(3, 10);
        assert_eq!(q.push(vec![0; 4], false), Ok(()));
        assert_eq!(q.push(vec![0; 4], false), Ok(()));
        assert_eq!(
            q.push(vec![0; 4], false),
            Err(PushError::Full),
            "byte bound"
        );
        assert_eq!(q.push(vec![0; 2], true), Ok(()));
        assert_eq!(
            q.push(vec![0; 0], false),
            Err(PushError::Full),
            "count bound"
        );
        let mut out = Vec::new();
        assert!(q.take(&mut out));
        assert_eq!(out.len(), 3);
        assert!(q.is_empty());
        // An oversized frame passes an empty queue, then blocks the rest.
        assert_eq!(q.push(vec![0; 50], false), Ok(()));
        assert_eq!(q.push(vec![0; 1], false), Err(PushError::Full));
        assert_eq!(q.close(), 1);
        assert_eq!(q.push(vec![0; 1], false), Err(PushError::Closed));
    }

    #[test]
    fn normal_frames_overtake_waiting_bulk_frames() {
        let q = PeerQueue::new(100, 1000);
        q.push(vec![1], true).unwrap();
        q.push(vec![2], true).unwrap();
        q.push(vec![3], false).unwrap();
        let mut out = Vec::new();
        q.take(&mut out);
        assert_eq!(out, vec![vec![3], vec![1]]);
        q.push(vec![4], false).unwrap();
        out.clear();
        q.take(&mut out);
        assert_eq!(out, vec![vec![4], vec![2]]);
    }
}
