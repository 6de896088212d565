//! An in-memory [`LogStore`], for tests and for embedding where durability
//! across process restarts is not needed.
//!
//! [`MemStore`] is a cloneable handle to shared state: a test "restarts" a
//! node by starting a new runtime on a clone of the old node's store, which
//! then holds exactly what the old node had persisted. It offers hooks that
//! tests use to observe group commit (a count of writes) and to provoke
//! the paths a real disk takes (writes that stall, writes that fail).
//!
//! It never keeps more than the log since the last snapshot (plus the
//! `keep` tail), like a real store.

use crate::store::{LogStore, StoreError, WriteBatch};
use raft_core::{Entry, HardState, InitialState, LogIndex, Snapshot};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// A shared, in-memory log store. Clones share the data.
#[derive(Debug, Clone)]
pub struct MemStore {
    inner: Arc<Mutex<State>>,
    /// While true, writes wait (see [`MemStore::pause_writes`]).
    paused: Arc<watch::Sender<bool>>,
}

#[derive(Debug, Default)]
struct State {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    /// The index just before `entries[0]`.
    offset: LogIndex,
    entries: VecDeque<Entry>,
    persist_calls: u64,
    fail_writes: bool,
}

impl State {
    fn last_index(&self) -> LogIndex {
        self.offset + self.entries.len() as u64
    }

    fn get(&self, i: LogIndex) -> Option<&Entry> {
        if i <= self.offset {
            return None;
        }
        self.entries.get((i - self.offset - 1) as usize)
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.fail_writes {
            return Err(StoreError::io(
                "in-memory store",
                std::io::Error::other("writes are set to fail"),
            ));
        }
        Ok(())
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        MemStore {
            inner: Arc::new(Mutex::new(State::default())),
            paused: Arc::new(watch::channel(false).0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below completes before the guard drops, so a
        // poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many times [`LogStore::persist`] has been called.
    pub fn persist_calls(&self) -> u64 {
        self.lock().persist_calls
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.lock().hard_state
    }

    /// The last persisted log index.
    pub fn last_index(&self) -> LogIndex {
        self.lock().last_index()
    }

    /// The index of the stored snapshot, if any.
    pub fn snapshot_index(&self) -> Option<LogIndex> {
        self.lock().snapshot.as_ref().map(|s| s.meta.index)
    }

    /// The first log index held (entries before it were compacted).
    pub fn first_index(&self) -> LogIndex {
        self.lock().offset + 1
    }

    /// Makes every following write fail with an I/O error (or succeed
    /// again).
    pub fn fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }

    /// Makes writes wait until [`MemStore::resume_writes`], like a disk that
    /// stalls.
    pub fn pause_writes(&self) {
        self.paused.send_replace(true);
    }

    /// Lets waiting and future writes proceed.
    pub fn resume_writes(&self) {
        self.paused.send_replace(false);
    }

    async fn wait_unpaused(&self) {
        if !*self.paused.borrow() {
            return;
        }
        let mut rx = self.paused.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|paused| !*paused).await;
    }
}

#[async_trait::async_trait]
impl LogStore for MemStore {
    async fn initial_state(&mut self) -> Result<InitialState, StoreError> {
        let st = self.lock();
        let snap_index = st.snapshot.as_ref().map_or(0, |s| s.meta.index);
        Ok(InitialState {
            hard_state: st.hard_state,
            snapshot: st.snapshot.as_ref().map(|s| s.meta.clone()),
            entries: st
                .entries
                .iter()
                .filter(|e| e.index > snap_index)
                .cloned()
                .collect(),
        })
    }

    async fn persist(&mut self, batch: WriteBatch<'_>) -> Result<(), StoreError> {
        self.wait_unpaused().await;
        let mut st = self.lock();
        st.check_writable()?;
        st.persist_calls += 1;
        if let Some(first) = batch.entries.first() {
            if first.index <= st.offset || first.index > st.last_index() + 1 {
                return Err(StoreError::Invalid(format!(
                    "entries from {} do not attach to the stored log ({}..={})",
                    first.index,
                    st.offset + 1,
                    st.last_index()
                )));
            }
            if let Some(w) = batch
                .entries
                .windows(2)
                .find(|w| w[1].index != w[0].index + 1)
            {
                return Err(StoreError::Invalid(format!(
                    "entries are not contiguous: {} follows {}",
                    w[1].index, w[0].index
                )));
            }
            // A conflicting suffix goes first.
            let keep = (first.index - st.offset - 1) as usize;
            st.entries.truncate(keep);
            st.entries.extend(batch.entries.iter().cloned());
        }
        if let Some(hs) = batch.hard_state {
            st.hard_state = hs;
        }
        Ok(())
    }

    async fn save_snapshot(&mut self, snapshot: &Snapshot, keep: u64) -> Result<(), StoreError> {
        self.wait_unpaused().await;
        let mut st = self.lock();
        st.check_writable()?;
        let meta = &snapshot.meta;
        if st
            .snapshot
            .as_ref()
            .is_some_and(|s| s.meta.index > meta.index)
        {
            // An older snapshot than the one held adds nothing.
            return Ok(());
        }
        st.snapshot = Some(snapshot.clone());
        // The log survives only if it holds the snapshot's own last entry:
        // a log that diverges there (or stops short) is superseded whole.
        let matches = st.get(meta.index).is_some_and(|e| e.term == meta.term);
        if matches {
            let to = meta.index.saturating_sub(keep);
            if to > st.offset {
                let n = (to - st.offset) as usize;
                st.entries.drain(..n);
                st.offset = to;
            }
        } else {
            st.entries.clear();
            st.offset = meta.index;
        }
        Ok(())
    }

    async fn snapshot(&mut self) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.lock().snapshot.clone())
    }

    async fn entries(&mut self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>, StoreError> {
        let st = self.lock();
        Ok((lo.max(st.offset + 1)..hi.min(st.last_index() + 1))
            .filter_map(|i| st.get(i).cloned())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use raft_core::{EntryKind, Membership, NodeId, SnapshotMeta};

    fn e(index: LogIndex, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: Bytes::from(vec![index as u8]),
        }
    }

    fn snap(index: LogIndex, term: u64) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                membership: Membership::new([NodeId(1)]),
            },
            data: Bytes::from_static(b"state"),
        }
    }

    #[tokio::test]
    async fn persist_truncates_conflicts_and_refuses_gaps() {
        let mut s = MemStore::new();
        let hs = HardState {
            term: 2,
            vote: NodeId(1),
            commit: 1,
        };
        s.persist(WriteBatch {
            hard_state: Some(hs),
            entries: &[e(1, 1), e(2, 1), e(3, 1)],
        })
        .await
        .unwrap();
        s.persist(WriteBatch {
            hard_state: None,
            entries: &[e(2, 2)],
        })
        .await
        .unwrap();
        let st = s.clone().initial_state().await.unwrap();
        assert_eq!(st.hard_state, hs);
        assert_eq!(st.entries, vec![e(1, 1), e(2, 2)]);
        let gap = s
            .persist(WriteBatch {
                hard_state: None,
                entries: &[e(5, 2)],
            })
            .await;
        assert!(matches!(gap, Err(StoreError::Invalid(_))));
        assert_eq!(s.persist_calls(), 3);
    }

    #[tokio::test]
    async fn snapshots_compact_and_replace_diverging_logs() {
        let mut s = MemStore::new();
        let entries: Vec<Entry> = (1..=10).map(|i| e(i, 1)).collect();
        s.persist(WriteBatch {
            hard_state: None,
            entries: &entries,
        })
        .await
        .unwrap();
        s.save_snapshot(&snap(8, 1), 3).await.unwrap();
        assert_eq!(s.first_index(), 6);
        let st = s.initial_state().await.unwrap();
        assert_eq!(st.snapshot.unwrap().index, 8);
        assert_eq!(
            st.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![9, 10]
        );
        // A snapshot whose last entry differs from ours replaces the log.
        s.save_snapshot(&snap(9, 2), 0).await.unwrap();
        assert_eq!(s.last_index(), 9);
        assert!(s.initial_state().await.unwrap().entries.is_empty());
        // An older snapshot is ignored.
        s.save_snapshot(&snap(5, 1), 0).await.unwrap();
        assert_eq!(s.snapshot_index(), Some(9));
    }

    #[tokio::test]
    async fn failing_writes_error() {
        let mut s = MemStore::new();
        s.fail_writes(true);
        let r = s
            .persist(WriteBatch {
                hard_state: None,
                entries: &[e(1, 1)],
            })
            .await;
        assert!(matches!(r, Err(StoreError::Io { .. })));
        assert_eq!(s.last_index(), 0);
    }
}
