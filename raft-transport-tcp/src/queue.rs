//! The bounded outgoing queue of one peer, shared by `send` and the peer's
//! writer task.
//!
//! `send` pushes without waiting; the writer takes everything queued at once,
//! which is what lets it batch many frames into one write. The bookkeeping
//! (two lanes, so that snapshot chunks never hold up the frames queued after
//! them; bounds in messages and bytes) is [`FrameQueue`]'s; this wrapper adds
//! the lock and the writer's wake-up, which need tokio and so cannot live in
//! raft-core.

use raft_core::transport::{FrameQueue, PushError};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct PeerQueue {
    frames: Mutex<FrameQueue>,
    ready: Notify,
}

impl PeerQueue {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        PeerQueue {
            frames: Mutex::new(FrameQueue::new(max_messages, max_bytes)),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FrameQueue> {
        // A panic while holding this lock can only come from an allocation
        // failure; the queue is still consistent, so keep using it.
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame in the bulk lane or the normal one; see
    /// [`FrameQueue::push`].
    pub(crate) fn push(&self, frame: Vec<u8>, bulk: bool) -> Result<(), PushError> {
        self.lock().push(frame, bulk)?;
        self.ready.notify_one();
        Ok(())
    }

    /// Moves every normal frame and at most one bulk frame into `out`.
    /// Returns false once the queue is closed.
    pub(crate) fn take(&self, out: &mut Vec<Vec<u8>>) -> bool {
        self.lock().take(out)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().is_closed()
    }

    /// Waits until a push may have happened (or the queue was closed).
    /// Cancel-safe: a wake-up that arrives for a dropped waiter is kept.
    pub(crate) async fn changed(&self) {
        self.ready.notified().await;
    }

    /// Rejects further pushes and discards what is queued, returning how
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

    #[tokio::test]
    async fn a_push_or_a_close_wakes_the_writer() {
        let q = PeerQueue::new(10, 100);
        q.push(vec![1], false).unwrap();
        // The permit stored by the push completes this wait at once.
        q.changed().await;
        let mut out = Vec::new();
        assert!(q.take(&mut out));
        assert_eq!(out, vec![vec![1]]);
        assert_eq!(q.push(vec![0; 200], true), Ok(()));
        assert_eq!(q.push(vec![0; 1], false), Err(PushError::Full));
        assert_eq!(q.close(), 1);
        q.changed().await;
        assert!(q.is_closed() && q.is_empty());
        assert!(!q.take(&mut out));
    }
}
