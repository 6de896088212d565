//! A simulated node's durable storage and its replicated state machine.
//!
//! [`Disk`] holds exactly what a driver following the [`crate::Ready`]
//! contract has made durable: nothing written here is ever lost to a crash,
//! and nothing else survives one. [`App`] is the state machine the
//! simulated clients write to; its snapshots carry a digest of every entry
//! applied so far, so a snapshot that does not match the applied history is
//! caught when it is restored.

use crate::message::{Entry, EntryKind, Snapshot};
use crate::ready::InitialState;
use crate::types::{HardState, LogIndex, Term};
use bytes::Bytes;

/// What one node has made durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disk {
    /// The last persisted hard state.
    pub hard_state: HardState,
    /// The newest persisted snapshot (installed from a leader, or taken
    /// locally on compaction).
    pub snapshot: Option<Snapshot>,
    /// The persisted entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

/// What a batch written to a [`Disk`] changed, for the durability checker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The lowest index of a stored entry that the write removed without a
    /// snapshot covering it (a conflicting suffix), if any.
    pub truncated_from: Option<LogIndex>,
}

impl Disk {
    /// The index the stored log starts after.
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    /// The index of the last stored entry (the snapshot's if none follow).
    pub fn last_index(&self) -> LogIndex {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }

    /// The stored entry at `index`, if any.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let first = self.snapshot_index() + 1;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize)
    }

    /// The term of the stored entry at `index`; the snapshot's last entry
    /// counts.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        match &self.snapshot {
            Some(s) if s.meta.index == index => Some(s.meta.term),
            _ if index == 0 => Some(0),
            _ => self.entry(index).map(|e| e.term),
        }
    }

    /// Whether this disk durably holds the entry of term `term` at `index`,
    /// directly or inside its snapshot.
    pub fn holds(&self, index: LogIndex, term: Term) -> bool {
        if index < self.snapshot_index() {
            return true;
        }
        self.term_at(index) == Some(term)
    }

    /// What a restarting node reads back.
    pub fn initial_state(&self) -> InitialState {
        InitialState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|s| s.meta.clone()),
            entries: self.entries.clone(),
        }
    }

    /// Writes step 2 of a `Ready` as one durable batch: the snapshot, then
    /// the entries (dropping a conflicting stored suffix first), then the
    /// hard state. Refuses (without writing anything) a batch that breaks
    /// the contract: entries that leave a gap or reach under the snapshot,
    /// a snapshot older than the stored one, a term that goes back, or a
    /// commit index beyond the stored log.
    pub fn write(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<WriteOutcome, String> {
        // Validate everything first, so that a refused batch writes nothing.
        let (snap_index, base_last, keep_suffix) = match snapshot {
            Some(s) => {
                let index = s.meta.index;
                if self.snapshot.is_some() && index <= self.snapshot_index() {
                    return Err(format!(
                        "snapshot at {index} is not newer than the stored one at {}",
                        self.snapshot_index()
                    ));
                }
                // A snapshot replaces the log up to its index. What follows
                // it stays valid only if the stored log agrees with the
                // snapshot at that index; otherwise the whole stored log is
                // superseded.
                let keep = self.term_at(index) == Some(s.meta.term);
                let last = if keep { self.last_index() } else { index };
                (index, last, keep)
            }
            None => (self.snapshot_index(), self.last_index(), true),
        };
        let prev_term_of = |this: &Disk, i: LogIndex| -> Option<Term> {
            match snapshot {
                Some(s) if i == s.meta.index => Some(s.meta.term),
                _ if i <= base_last => this.term_at(i),
                _ => None,
            }
        };
        if let Some(first) = entries.first() {
            if first.index <= snap_index {
                return Err(format!(
                    "entries from {} reach under the stored snapshot at {snap_index}",
                    first.index
                ));
            }
            if first.index > base_last + 1 {
                return Err(format!(
                    "entries from {} leave a gap after the stored log ending at {base_last}",
                    first.index
                ));
            }
            for pair in entries.windows(2) {
                if pair[1].index != pair[0].index + 1 || pair[1].term < pair[0].term {
                    return Err(format!(
                        "entries are not contiguous with non-decreasing terms at {}",
                        pair[1].index
                    ));
                }
            }
            if first.term < prev_term_of(self, first.index - 1).unwrap_or(0) {
                return Err(format!(
                    "entry {} has a term below its stored predecessor's",
                    first.index
                ));
            }
        }
        let new_last = entries.last().map_or(base_last, |e| e.index);
        if let Some(hs) = hard_state {
            if hs.term < self.hard_state.term {
                return Err(format!(
                    "hard state term goes back from {} to {}",
                    self.hard_state.term, hs.term
                ));
            }
        }
        let commit = hard_state.map_or(self.hard_state.commit, |h| h.commit);
        if commit > new_last {
            return Err(format!(
                "hard state commit {commit} is beyond the stored log ending at {new_last}"
            ));
        }

        // Then write.
        let mut out = WriteOutcome::default();
        if let Some(s) = snapshot {
            let index = s.meta.index;
            if keep_suffix {
                let first_after = self.snapshot_index() + 1;
                let drop = (index + 1).saturating_sub(first_after) as usize;
                self.entries.drain(..drop.min(self.entries.len()));
            } else {
                if self.last_index() > index {
                    out.truncated_from = Some(index + 1);
                }
                self.entries.clear();
            }
            self.snapshot = Some(s.clone());
        }
        if let Some(first) = entries.first() {
            if first.index <= self.last_index() {
                let keep = (first.index - self.snapshot_index() - 1) as usize;
                let differs = self.entries.len() - keep > entries.len()
                    || self.entries[keep..]
                        .iter()
                        .zip(entries.iter())
                        .any(|(old, new)| old != new);
                if differs {
                    out.truncated_from = Some(
                        out.truncated_from
                            .map_or(first.index, |t| t.min(first.index)),
                    );
                }
                self.entries.truncate(keep);
            }
            self.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        Ok(out)
    }
}

/// The replicated state machine of the simulation: the list of applied
/// client payloads, plus a digest of every applied entry (payloads, no-ops
/// and membership changes alike) so that two histories can be compared in
/// constant time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct App {
    /// The index of the last applied entry.
    pub applied: LogIndex,
    /// The digest of every entry applied up to `applied`.
    pub digest: u64,
    /// The payloads of the applied [`EntryKind::Normal`] entries, in order.
    pub payloads: Vec<Bytes>,
}

/// The digest of a history extended by one entry (FNV-1a over the entry's
/// fields, chained).
pub fn digest_step(digest: u64, e: &Entry) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01B3;
    let mut h = digest ^ 0xCBF2_9CE4_8422_2325;
    let kind = match e.kind {
        EntryKind::Normal => 1u8,
        EntryKind::ConfChange => 2,
        EntryKind::Noop => 3,
    };
    for b in e
        .index
        .to_le_bytes()
        .iter()
        .chain(e.term.to_le_bytes().iter())
        .chain(std::iter::once(&kind))
        .chain(e.data.iter())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

impl App {
    /// Applies one committed entry. The caller checks it is the next one.
    pub fn apply(&mut self, e: &Entry) {
        self.applied = e.index;
        self.digest = digest_step(self.digest, e);
        if e.kind == EntryKind::Normal {
            self.payloads.push(e.data.clone());
        }
    }

    /// Serializes the state: applied index, digest, then each payload with
    /// a length prefix.
    pub fn snapshot_data(&self) -> Bytes {
        let mut out =
            Vec::with_capacity(20 + self.payloads.iter().map(|p| p.len() + 4).sum::<usize>());
        out.extend_from_slice(&self.applied.to_le_bytes());
        out.extend_from_slice(&self.digest.to_le_bytes());
        out.extend_from_slice(&(self.payloads.len() as u32).to_le_bytes());
        for p in &self.payloads {
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(p);
        }
        Bytes::from(out)
    }

    /// Rebuilds the state from [`App::snapshot_data`]'s output.
    pub fn from_snapshot_data(data: &[u8]) -> Result<App, String> {
        fn take<'a>(d: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
            if d.len() < n {
                return Err(format!("snapshot data truncated (wanted {n} more bytes)"));
            }
            let (a, b) = d.split_at(n);
            *d = b;
            Ok(a)
        }
        fn u64_of(b: &[u8]) -> u64 {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        }
        fn u32_of(b: &[u8]) -> u32 {
            let mut a = [0u8; 4];
            a.copy_from_slice(b);
            u32::from_le_bytes(a)
        }
        let mut d = data;
        let applied = u64_of(take(&mut d, 8)?);
        let digest = u64_of(take(&mut d, 8)?);
        let n = u32_of(take(&mut d, 4)?) as usize;
        let mut payloads = Vec::with_capacity(n.min(d.len() / 4));
        for _ in 0..n {
            let len = u32_of(take(&mut d, 4)?) as usize;
            payloads.push(Bytes::copy_from_slice(take(&mut d, len)?));
        }
        if !d.is_empty() {
            return Err(format!("{} trailing bytes after snapshot data", d.len()));
        }
        Ok(App {
            applied,
            digest,
            payloads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Membership;
    use crate::message::SnapshotMeta;

    fn e(index: LogIndex, term: Term) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: Bytes::from(format!("{index}/{term}")),
        }
    }

    #[test]
    fn writes_truncate_conflicts_and_refuse_gaps() {
        let mut d = Disk::default();
        d.write(None, &[e(1, 1), e(2, 1), e(3, 1)], None).unwrap();
        let out = d.write(None, &[e(2, 2)], None).unwrap();
        assert_eq!(out.truncated_from, Some(2));
        assert_eq!(d.last_index(), 2);
        assert_eq!(d.term_at(2), Some(2));
        // Rewriting identical entries is not a truncation.
        let out = d.write(None, &[e(2, 2)], None).unwrap();
        assert_eq!(out.truncated_from, None);
        assert!(d.write(None, &[e(5, 2)], None).is_err());
        let hs = HardState {
            term: 2,
            vote: crate::NodeId(1),
            commit: 9,
        };
        assert!(d.write(None, &[], Some(hs)).is_err(), "commit beyond log");
        assert_eq!(d.last_index(), 2, "a refused batch writes nothing");
    }

    #[test]
    fn snapshot_keeps_a_matching_suffix_only() {
        let snap = |index, term| Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                membership: Membership::default(),
            },
            data: Bytes::new(),
        };
        let mut d = Disk::default();
        d.write(None, &[e(1, 1), e(2, 1), e(3, 2), e(4, 2)], None)
            .unwrap();
        d.write(Some(&snap(2, 1)), &[], None).unwrap();
        assert_eq!(d.snapshot_index(), 2);
        assert_eq!(d.last_index(), 4);
        let out = d.write(Some(&snap(3, 3)), &[], None).unwrap();
        assert_eq!(out.truncated_from, Some(4));
        assert_eq!(d.last_index(), 3);
        assert!(d.holds(1, 99), "under the snapshot");
        assert!(d.holds(3, 3));
        assert!(!d.holds(3, 2));
    }

    #[test]
    fn app_snapshot_round_trips() {
        let mut a = App::default();
        a.apply(&e(1, 1));
        a.apply(&e(2, 1));
        let b = App::from_snapshot_data(&a.snapshot_data()).unwrap();
        assert_eq!(a, b);
        assert!(App::from_snapshot_data(&a.snapshot_data()[..10]).is_err());
    }
}
