//! The bounded outgoing queue of one lane of one peer, shared by `send` and
//! the lane's writer.
//!
//! `send` pushes without waiting; the writer of the replication lane takes
//! everything queued at once so it can write many frames in one stream
//! write, the writer of the bulk lane one snapshot chunk per round. Each lane
//! is bounded in messages and in bytes and may never grow past its bounds.
//! The bookkeeping is [`FrameQueue`]'s; this wrapper adds the lock, the
//! writer's wake-up (which need tokio and so cannot live in raft-core) and
//! a cheap early refusal: [`LaneQueue::refuses`] tells `send` that a message
//! cannot fit before it pays for encoding it. Encoding a 1 MiB message only
//! to have a full queue drop it costs as much as sending it, and a caller
//! that offers it again while the queue drains would spend the writer's CPU
//! on copies that go nowhere.

use raft_core::transport::{FrameQueue, PushError};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Debug)]
struct Inner {
    frames: FrameQueue,
    /// Bytes of the frames in `frames` (FrameQueue keeps its own count
    /// private); only [`LaneQueue::refuses`] reads it.
    bytes: usize,
}

#[derive(Debug)]
pub(crate) struct LaneQueue {
    inner: Mutex<Inner>,
    ready: Notify,
    bulk: bool,
    max_messages: usize,
    max_bytes: usize,
}

impl LaneQueue {
    /// A queue for the replication lane, or for the bulk lane when `bulk`.
    pub(crate) fn new(max_messages: usize, max_bytes: usize, bulk: bool) -> Self {
        LaneQueue {
            inner: Mutex::new(Inner {
                frames: FrameQueue::new(max_messages, max_bytes),
                bytes: 0,
            }),
            ready: Notify::new(),
            bulk,
            // The same floor FrameQueue applies to its bounds.
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock short of allocation
        // failure, which leaves the queue consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The refusal [`LaneQueue::push`] would give, at this moment, to a frame
    /// of at least `min_len` bytes. Given a true lower bound it never
    /// refuses a frame `push` would take at the same moment, so asking it
    /// first changes only what a refusal costs; `push` still decides.
    pub(crate) fn refuses(&self, min_len: usize) -> Option<PushError> {
        let q = self.lock();
        if q.frames.is_closed() {
            return Some(PushError::Closed);
        }
        let count = q.frames.len();
        let full = count >= self.max_messages
            || (count > 0 && q.bytes.saturating_add(min_len) > self.max_bytes);
        full.then_some(PushError::Full)
    }

    /// Queues a frame; one larger than the byte bound still enters an empty
    /// queue, so any message within the frame limit can pass.
    pub(crate) fn push(&self, frame: Vec<u8>) -> Result<(), PushError> {
        {
            let mut q = self.lock();
            let len = frame.len();
            q.frames.push(frame, self.bulk)?;
            q.bytes += len;
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Moves every queued frame (one, in the bulk lane) into `out`; false
    /// once closed.
    pub(crate) fn take(&self, out: &mut Vec<Vec<u8>>) -> bool {
        let mut q = self.lock();
        let before = out.len();
        let open = q.frames.take(out);
        let taken: usize = out[before..].iter().map(Vec::len).sum();
        q.bytes = q.bytes.saturating_sub(taken);
        open
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().frames.is_empty()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().frames.is_closed()
    }

    /// Waits for a push or a close. Cancel-safe.
    pub(crate) async fn changed(&self) {
        self.ready.notified().await;
    }

    /// Rejects further pushes and discards what is queued; returns how
    /// many messages were discarded.
    pub(crate) fn close(&self) -> usize {
        let n = {
            let mut q = self.lock();
            q.bytes = 0;
            q.frames.close()
        };
        self.ready.notify_one();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replication_lane_hands_out_everything_and_the_bulk_lane_one_chunk() {
        let normal = LaneQueue::new(10, 100, false);
        let bulk = LaneQueue::new(10, 100, true);
        for i in 0..3 {
            normal.push(vec![i]).unwrap();
            bulk.push(vec![i]).unwrap();
        }
        let mut out = Vec::new();
        assert!(normal.take(&mut out));
        assert_eq!(out, vec![vec![0], vec![1], vec![2]]);
        out.clear();
        assert!(bulk.take(&mut out));
        assert_eq!(out, vec![vec![0]]);
        assert_eq!(bulk.close(), 2);
        assert_eq!(bulk.push(vec![9]), Err(PushError::Closed));
        assert!(!bulk.take(&mut out));
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let q = LaneQueue::new(2, 10, false);
        q.push(vec![0; 20]).unwrap();
        assert_eq!(q.push(vec![0; 1]), Err(PushError::Full));
        let mut out = Vec::new();
        assert!(q.take(&mut out));
        q.push(vec![0; 1]).unwrap();
        q.push(vec![0; 1]).unwrap();
        assert_eq!(q.push(vec![0; 1]), Err(PushError::Full));
    }

    #[test]
    fn refuses_exactly_what_push_would_refuse() {
        let q = LaneQueue::new(3, 10, false);
        // An empty queue takes anything, even past the byte bound.
        assert_eq!(q.refuses(50), None);
        q.push(vec![0; 6]).unwrap();
        assert_eq!(q.refuses(4), None);
        assert_eq!(q.refuses(5), Some(PushError::Full));
        assert_eq!(q.push(vec![0; 5]), Err(PushError::Full));
        q.push(vec![0; 4]).unwrap();
        assert_eq!(q.refuses(0), None);
        q.push(vec![]).unwrap();
        // At the message bound.
        assert_eq!(q.refuses(0), Some(PushError::Full));
        // Taking frees the bytes and the slots.
        let mut out = Vec::new();
        assert!(q.take(&mut out));
        assert_eq!(q.refuses(50), None);
        q.push(vec![0; 9]).unwrap();
        assert_eq!(q.refuses(1), None);
        assert_eq!(q.refuses(2), Some(PushError::Full));
        q.close();
        assert_eq!(q.refuses(0), Some(PushError::Closed));
    }

    #[test]
    fn the_bulk_lane_counts_bytes_one_chunk_at_a_time() {
        let q = LaneQueue::new(10, 10, true);
        q.push(vec![0; 6]).unwrap();
        q.push(vec![0; 4]).unwrap();
        assert_eq!(q.refuses(1), Some(PushError::Full));
        let mut out = Vec::new();
        assert!(q.take(&mut out));
        assert_eq!(out.len(), 1);
        assert_eq!(q.refuses(6), None);
        assert_eq!(q.refuses(7), Some(PushError::Full));
    }
}
