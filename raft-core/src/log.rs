//! The in-memory view of a node's log since its last snapshot.
//!
//! The core keeps every entry after the snapshot in memory (compaction bounds
//! it) and tracks three frontiers the persistence contract needs:
//! `handed` (given to the driver in a `Ready`), `persisted` (the driver
//! advanced past that `Ready`, so it is durable) and `committed`.

use crate::message::Entry;
use crate::types::{LogIndex, Term};
use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub(crate) struct RaftLog {
    /// The index of the last entry covered by the snapshot (0 if none).
    pub(crate) offset: LogIndex,
    /// The term of that entry.
    pub(crate) offset_term: Term,
    /// Entries `offset + 1 ..= last_index()`.
    entries: VecDeque<Entry>,
    /// The highest index known committed.
    pub(crate) committed: LogIndex,
    /// The highest index applied (handed out and advanced past).
    pub(crate) applied: LogIndex,
    /// The highest index given to the driver for persistence.
    pub(crate) handed: LogIndex,
    /// The highest index known durable on this node.
    pub(crate) persisted: LogIndex,
}

impl RaftLog {
    pub(crate) fn new(offset: LogIndex, offset_term: Term) -> Self {
        RaftLog {
            offset,
            offset_term,
            entries: VecDeque::new(),
            committed: offset,
            applied: offset,
            handed: offset,
            persisted: offset,
        }
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.offset + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.back().map_or(self.offset_term, |e| e.term)
    }

    /// The term of the entry at `i`, if this log knows it (the snapshot's
    /// last entry counts; compacted entries do not).
    pub(crate) fn term(&self, i: LogIndex) -> Option<Term> {
        if i == self.offset {
            return Some(self.offset_term);
        }
        self.entry(i).map(|e| e.term)
    }

    pub(crate) fn entry(&self, i: LogIndex) -> Option<&Entry> {
        if i <= self.offset {
            return None;
        }
        self.entries.get((i - self.offset - 1) as usize)
    }

    pub(crate) fn matches(&self, i: LogIndex, term: Term) -> bool {
        self.term(i) == Some(term)
    }

    /// Raft's "at least as up-to-date" comparison (paper section 5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The largest index `<= index` whose term is `<= term`, with that term:
    /// the probe point for fast backtracking. Falls back to the snapshot
    /// point when the log does not reach back far enough.
    pub(crate) fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> (LogIndex, Term) {
        let mut i = index.min(self.last_index());
        while i > self.offset {
            let t = self.term(i).expect("index within the log");
            if t <= term {
                return (i, t);
            }
            i -= 1;
        }
        (self.offset, self.offset_term)
    }

    /// Entries from `lo`, at most `max_entries` and (beyond the first)
    /// `max_bytes`.
    pub(crate) fn slice(&self, lo: LogIndex, max_entries: usize, max_bytes: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        if lo <= self.offset || lo > self.last_index() {
            return out;
        }
        let start = (lo - self.offset - 1) as usize;
        let mut bytes = 0u64;
        for e in self.entries.range(start..) {
            if out.len() >= max_entries {
                break;
            }
            let sz = e.size();
            if !out.is_empty() && bytes + sz > max_bytes {
                break;
            }
            bytes += sz;
            out.push(e.clone());
        }
        out
    }

    /// Entries in `lo..=hi` (clamped to the log), with a byte limit beyond
    /// the first entry.
    pub(crate) fn range(&self, lo: LogIndex, hi: LogIndex, max_bytes: u64) -> Vec<Entry> {
        let hi = hi.min(self.last_index());
        if lo > hi || lo <= self.offset {
            return Vec::new();
        }
        let n = (hi - lo + 1) as usize;
        let start = (lo - self.offset - 1) as usize;
        let mut out = Vec::with_capacity(n.min(4096));
        let mut bytes = 0u64;
        for e in self.entries.range(start..start + n) {
            let sz = e.size();
            if !out.is_empty() && bytes + sz > max_bytes {
                break;
            }
            bytes += sz;
            out.push(e.clone());
        }
        out
    }

    pub(crate) fn append(&mut self, e: Entry) {
        debug_assert_eq!(
            e.index,
            self.last_index() + 1,
            "log append must be contiguous"
        );
        self.entries.push_back(e);
    }

    /// Drops every entry with index `>= from` (a conflicting suffix).
    pub(crate) fn truncate_from(&mut self, from: LogIndex) {
        assert!(
            from > self.committed,
            "truncating committed entries ({from} <= commit {})",
            self.committed
        );
        if from > self.last_index() {
            return;
        }
        let keep = (from - self.offset - 1) as usize;
        self.entries.truncate(keep);
        self.handed = self.handed.min(from - 1);
        self.persisted = self.persisted.min(from - 1);
    }

    /// Drops entries up to and including `index` (which must be applied),
    /// remembering its term as the new offset.
    pub(crate) fn compact_to(&mut self, index: LogIndex) {
        if index <= self.offset {
            return;
        }
        let index = index.min(self.last_index());
        let term = self.term(index).expect("compaction point within the log");
        let n = (index - self.offset) as usize;
        self.entries.drain(..n);
        self.offset = index;
        self.offset_term = term;
    }

    /// Replaces the whole log with a snapshot point.
    pub(crate) fn reset_to_snapshot(&mut self, index: LogIndex, term: Term) {
        self.entries.clear();
        self.offset = index;
        self.offset_term = term;
        self.committed = self.committed.max(index);
        // `applied` catches up when the driver advances past the Ready
        // that carries the snapshot.
        self.handed = index;
        // Durable only once the driver advances past the Ready carrying it.
        self.persisted = self.persisted.min(index);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}
