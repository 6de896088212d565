//! A bounded outgoing queue for one lane of one peer.
//!
//! `send` pushes without waiting; the lane's writer takes everything queued
//! at once so it can write many frames in one stream write. Each peer has
//! two lanes (replication and bulk snapshot data), each bounded in messages
//! and in bytes; neither may ever grow past its bounds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// Per-peer counters behind [`raft_core::PeerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    Full,
    Closed,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct LaneQueue {
    state: Mutex<State>,
    ready: Notify,
    max_messages: usize,
    max_bytes: usize,
}

impl LaneQueue {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        LaneQueue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock short of allocation
        // failure, which leaves the state consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame; one larger than the byte bound still enters an empty
    /// queue, so any message within the frame limit can pass.
    pub(crate) fn push(&self, frame: Vec<u8>) -> Result<(), PushError> {
        {
            let mut s = self.lock();
            if s.closed {
                return Err(PushError::Closed);
            }
            let empty = s.frames.is_empty();
            if s.frames.len() >= self.max_messages
                || (!empty && s.bytes + frame.len() > self.max_bytes)
            {
                return Err(PushError::Full);
            }
            s.bytes += frame.len();
            s.frames.push_back(frame);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Moves up to `max` frames into `out`; false once closed.
    pub(crate) fn take(&self, out: &mut Vec<Vec<u8>>, max: usize) -> bool {
        let mut s = self.lock();
        let n = s.frames.len().min(max);
        let mut taken = 0;
        out.extend(s.frames.drain(..n).inspect(|f| taken += f.len()));
        s.bytes -= taken;
        !s.closed
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().frames.is_empty()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits for a push or a close. Cancel-safe.
    pub(crate) async fn changed(&self) {
        self.ready.notified().await;
    }

    /// Rejects further pushes and discards what is queued; returns how
    /// many messages were discarded.
    pub(crate) fn close(&self) -> usize {
        let n = {
            let mut s = self.lock();
            s.closed = true;
            s.bytes = 0;
            let n = s.frames.len();
            s.frames.clear();
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
        let q = LaneQueue::new(2, 10);
        q.push(vec![0; 20]).unwrap();
        assert_eq!(q.push(vec![0; 1]), Err(PushError::Full));
        let mut out = Vec::new();
        assert!(q.take(&mut out, usize::MAX));
        q.push(vec![0; 1]).unwrap();
        q.push(vec![0; 1]).unwrap();
        assert_eq!(q.push(vec![0; 1]), Err(PushError::Full));
        assert_eq!(q.close(), 2);
        assert_eq!(q.push(vec![0; 1]), Err(PushError::Closed));
        assert!(!q.take(&mut out, usize::MAX));
    }
}
