//! The bounded outgoing queue of one lane of one peer, shared by `send` and
//! the lane's writer.
//!
//! `send` pushes without waiting; the writer of the replication lane takes
//! everything queued at once so it can write many frames in one stream
//! write, the writer of the bulk lane one snapshot chunk per round. Each lane
//! is bounded in messages and in bytes and may never grow past its bounds.
//! The bookkeeping is [`FrameQueue`]'s; this wrapper adds the lock and the
//! writer's wake-up, which need tokio and so cannot live in raft-core.

use raft_core::transport::{FrameQueue, PushError};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct LaneQueue {
    frames: Mutex<FrameQueue>,
    ready: Notify,
    bulk: bool,
}

impl LaneQueue {
    /// A queue for the replication lane, or for the bulk lane when `bulk`.
    pub(crate) fn new(max_messages: usize, max_bytes: usize, bulk: bool) -> Self {
        LaneQueue {
            frames: Mutex::new(FrameQueue::new(max_messages, max_bytes)),
            ready: Notify::new(),
            bulk,
        }
    }

    fn lock(&self) -> MutexGuard<'_, FrameQueue> {
        // Nothing panics while holding the lock short of allocation
        // failure, which leaves the queue consistent.
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame; one larger than the byte bound still enters an empty
    /// queue, so any message within the frame limit can pass.
    pub(crate) fn push(&self, frame: Vec<u8>) -> Result<(), PushError> {
        self.lock().push(frame, self.bulk)?;
        self.ready.notify_one();
        Ok(())
    }

    /// Moves every queued frame (one, in the bulk lane) into `out`; false
    /// once closed.
    pub(crate) fn take(&self, out: &mut Vec<Vec<u8>>) -> bool {
        self.lock().take(out)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().is_closed()
    }

    /// Waits for a push or a close. Cancel-safe.
    pub(crate) async fn changed(&self) {
        self.ready.notified().await;
    }

    /// Rejects further pushes and discards what is queued; returns how
    /// many messages were discarded.
    pub(crate) fn close(&self) -> usize {
        let n = self.lock().close();
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
}
