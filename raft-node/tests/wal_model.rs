//! The file store against an in-memory model: appends that replace
//! conflicting suffixes, hard states, local snapshots that compact, snapshots
//! from a leader that replace the log, clean restarts and restarts after a
//! torn write, in random interleavings, over tiny segments so that every
//! operation crosses segment boundaries.

// The helpers below run only inside the property test: a failed unwrap is a
// failed test.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use proptest::prelude::*;
use raft_core::{Entry, EntryKind, HardState, Membership, NodeId, Snapshot, SnapshotMeta};
use raft_node::store::{LogStore, WriteBatch};
use raft_node::wal::{FileStore, IoMode, WalOptions};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` entries, first replacing up to `overwrite` uncommitted
    /// entries at the end of the log.
    Append {
        n: u64,
        overwrite: u64,
        new_term: bool,
        len: usize,
        with_hard_state: bool,
    },
    /// A hard state on its own (a vote).
    Vote(u64),
    /// A local snapshot `back` entries below the last one.
    Snapshot {
        back: u64,
        keep: u64,
    },
    /// A snapshot from a leader, `ahead` entries past our log.
    LeaderSnapshot {
        ahead: u64,
        keep: u64,
    },
    Reopen,
    /// Crash in the middle of writing a batch: junk after the last record.
    TornReopen(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..6, 0u64..4, any::<bool>(), 0usize..48, any::<bool>()).prop_map(
            |(n, overwrite, new_term, len, with_hard_state)| Op::Append { n, overwrite, new_term, len, with_hard_state }
        ),
        1 => (1u64..4).prop_map(Op::Vote),
        2 => (0u64..6, 0u64..6).prop_map(|(back, keep)| Op::Snapshot { back, keep }),
        1 => (1u64..4, 0u64..3).prop_map(|(ahead, keep)| Op::LeaderSnapshot { ahead, keep }),
        1 => Just(Op::Reopen),
        1 => proptest::collection::vec(any::<u8>(), 1..80).prop_map(Op::TornReopen),
    ]
}

#[derive(Default)]
struct Model {
    /// Every live entry, including those at or below the snapshot.
    log: BTreeMap<u64, Entry>,
    snap: Option<Snapshot>,
    hs: HardState,
    term: u64,
    /// Entries from here on must still be readable (compaction only drops
    /// entries at or below `snapshot.index - keep`).
    retained_from: u64,
}

impl Model {
    fn snap_index(&self) -> u64 {
        self.snap.as_ref().map_or(0, |s| s.meta.index)
    }
    fn last(&self) -> u64 {
        self.log
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.snap_index())
    }
    fn after_snapshot(&self) -> Vec<Entry> {
        self.log
            .range(self.snap_index() + 1..)
            .map(|(_, e)| e.clone())
            .collect()
    }
}

fn data(index: u64, term: u64, len: usize) -> Bytes {
    (0..len)
        .map(|i| (index * 3 + term + i as u64) as u8)
        .collect::<Vec<_>>()
        .into()
}

fn opts(mode: IoMode) -> WalOptions {
    WalOptions {
        segment_size: 300,
        io_mode: mode,
    }
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut names: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    names.sort();
    names.pop().unwrap()
}

async fn check(s: &mut FileStore, m: &Model, step: usize, op: &Op) {
    let st = s.initial_state().await.unwrap();
    assert_eq!(st.hard_state, m.hs, "step {step} {op:?}: hard state");
    assert_eq!(
        st.snapshot,
        m.snap.as_ref().map(|s| s.meta.clone()),
        "step {step} {op:?}: snapshot"
    );
    assert_eq!(
        st.entries,
        m.after_snapshot(),
        "step {step} {op:?}: entries"
    );
    assert_eq!(
        s.snapshot().await.unwrap(),
        m.snap,
        "step {step} {op:?}: snapshot data"
    );
    let lo = m.retained_from.max(1);
    let hi = m.last() + 1;
    if lo < hi {
        let want: Vec<Entry> = m.log.range(lo..hi).map(|(_, e)| e.clone()).collect();
        assert_eq!(
            s.entries(lo, hi).await.unwrap(),
            want,
            "step {step} {op:?}: retained entries"
        );
    }
}

async fn run(ops: Vec<Op>, mode: IoMode) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = FileStore::open(dir, opts(mode)).unwrap();
    let mut m = Model {
        term: 1,
        ..Model::default()
    };
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Append {
                n,
                overwrite,
                new_term,
                len,
                with_hard_state,
            } => {
                if *new_term {
                    m.term += 1;
                }
                let floor = m.snap_index().max(m.hs.commit) + 1;
                let start = (m.last() + 1).saturating_sub(*overwrite).max(floor);
                let entries: Vec<Entry> = (start..start + n)
                    .map(|index| Entry {
                        term: m.term,
                        index,
                        kind: if index % 3 == 0 {
                            EntryKind::ConfChange
                        } else {
                            EntryKind::Normal
                        },
                        data: data(index, m.term, *len),
                    })
                    .collect();
                let hs = with_hard_state.then(|| HardState {
                    term: m.term,
                    vote: m.hs.vote,
                    commit: start - 1,
                });
                s.persist(WriteBatch {
                    hard_state: hs,
                    entries: &entries,
                })
                .await
                .unwrap();
                let _ = m.log.split_off(&start);
                m.log.extend(entries.into_iter().map(|e| (e.index, e)));
                if let Some(hs) = hs {
                    m.hs = hs;
                }
            }
            Op::Vote(v) => {
                m.term += 1;
                let hs = HardState {
                    term: m.term,
                    vote: NodeId(*v),
                    commit: m.hs.commit,
                };
                s.persist(WriteBatch {
                    hard_state: Some(hs),
                    entries: &[],
                })
                .await
                .unwrap();
                m.hs = hs;
            }
            Op::Snapshot { back, keep } => {
                let index = m.last().saturating_sub(*back);
                if index == 0 || index <= m.snap_index() {
                    continue;
                }
                let term = m.log[&index].term;
                let snap = Snapshot {
                    meta: SnapshotMeta {
                        index,
                        term,
                        membership: Membership::new([NodeId(1)]),
                    },
                    data: data(index, term, 10),
                };
                s.save_snapshot(&snap, *keep).await.unwrap();
                m.retained_from = m.retained_from.max((index + 1).saturating_sub(*keep));
                m.snap = Some(snap);
            }
            Op::LeaderSnapshot { ahead, keep } => {
                m.term += 1;
                let index = m.last() + ahead;
                let snap = Snapshot {
                    meta: SnapshotMeta {
                        index,
                        term: m.term,
                        membership: Membership::new([NodeId(2)]),
                    },
                    data: data(index, m.term, 5),
                };
                s.save_snapshot(&snap, *keep).await.unwrap();
                m.log.clear();
                m.retained_from = index + 1;
                m.snap = Some(snap);
            }
            Op::Reopen => {
                drop(s);
                let (s2, r) = FileStore::open(dir, opts(mode)).unwrap();
                assert!(
                    r.torn_tail.is_none(),
                    "step {step}: clean restart reported a torn tail"
                );
                s = s2;
            }
            Op::TornReopen(junk) => {
                drop(s);
                let seg = last_segment(dir);
                let mut bytes = std::fs::read(&seg).unwrap();
                let len = bytes.len() as u64;
                bytes.extend_from_slice(junk);
                std::fs::write(&seg, &bytes).unwrap();
                let (s2, r) = FileStore::open(dir, opts(mode)).unwrap();
                let t = r
                    .torn_tail
                    .expect("junk after the last record is a torn tail");
                assert_eq!(
                    (t.offset, t.bytes_cut),
                    (len, junk.len() as u64),
                    "step {step}"
                );
                s = s2;
            }
        }
        check(&mut s, &m, step, op).await;
    }
    // And everything once more from a clean start.
    drop(s);
    let (mut s, _) = FileStore::open(dir, opts(mode)).unwrap();
    check(&mut s, &m, ops.len(), &Op::Reopen).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_store_matches_the_model(ops in proptest::collection::vec(op(), 1..40), blocking in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mode = if blocking { IoMode::SpawnBlocking } else { IoMode::Thread };
        rt.block_on(run(ops, mode));
    }
}
