//! Crash consistency and recovery of the file store: torn and damaged
//! records at every byte of a record, hard state and snapshot round trips,
//! format markers, temporary-file leftovers, group commit.

use bytes::Bytes;
use raft_core::{Entry, EntryKind, HardState, Membership, NodeId, Snapshot, SnapshotMeta};
use raft_node::store::{LogStore, StoreError, WriteBatch};
use raft_node::wal::{FileStore, IoMode, RecoveryReport, WalOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn payload(index: u64, term: u64, len: usize) -> Bytes {
    (0..len)
        .map(|i| (index.wrapping_mul(31) ^ term.wrapping_mul(7) ^ i as u64) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn entry(index: u64, term: u64, len: usize) -> Entry {
    Entry {
        term,
        index,
        kind: if index % 5 == 0 {
            EntryKind::Noop
        } else {
            EntryKind::Normal
        },
        data: payload(index, term, len),
    }
}

fn opts() -> WalOptions {
    WalOptions::default()
}

fn small_segments() -> WalOptions {
    WalOptions {
        segment_size: 1,
        ..WalOptions::default()
    }
}

fn open(dir: &Path, o: WalOptions) -> (FileStore, RecoveryReport) {
    FileStore::open(dir, o).expect("open store")
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join("wal").join(format!("{seq:020}.wal"))
}

async fn append(s: &mut FileStore, entries: &[Entry], hs: Option<HardState>) {
    s.persist(WriteBatch {
        hard_state: hs,
        entries,
    })
    .await
    .expect("persist");
}

async fn all_entries(s: &mut FileStore) -> Vec<Entry> {
    s.initial_state().await.expect("initial state").entries
}

const DATA_LEN: usize = 40;
const RECORD_LEN: u64 = 32 + DATA_LEN as u64;

/// Five single-entry batches, no hard state: the last record of the only
/// segment is entry 5.
async fn five_records(dir: &Path) -> Vec<Entry> {
    let (mut s, _) = open(dir, opts());
    let es: Vec<Entry> = (1..=5).map(|i| entry(i, 1, DATA_LEN)).collect();
    for e in &es {
        append(&mut s, std::slice::from_ref(e), None).await;
    }
    es
}

#[tokio::test]
async fn truncation_at_every_offset_of_the_last_record_keeps_exactly_the_complete_records() {
    let tmp = tempfile::tempdir().unwrap();
    let es = five_records(tmp.path()).await;
    let seg = seg_path(tmp.path(), 1);
    let original = std::fs::read(&seg).unwrap();
    let len = original.len() as u64;
    let start = len - RECORD_LEN;
    for cut in start..len {
        std::fs::write(&seg, &original[..cut as usize]).unwrap();
        let (mut s, report) = open(tmp.path(), opts());
        assert_eq!(all_entries(&mut s).await, es[..4], "cut at {cut}");
        assert_eq!(report.last_index, 4);
        match report.torn_tail {
            None => assert_eq!(cut, start, "a torn record went unreported at cut {cut}"),
            Some(t) => {
                assert!(cut > start);
                assert_eq!(
                    (t.file, t.offset, t.bytes_cut),
                    (seg.clone(), start, cut - start)
                );
            }
        }
        drop(s);
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            start,
            "tail not cut at {cut}"
        );
    }
    // The cut store takes the entry again and keeps it.
    let (mut s, _) = open(tmp.path(), opts());
    append(&mut s, &es[4..], None).await;
    drop(s);
    let (mut s, report) = open(tmp.path(), opts());
    assert!(report.torn_tail.is_none());
    assert_eq!(all_entries(&mut s).await, es);
}

#[tokio::test]
async fn a_flipped_byte_in_the_tail_record_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let es = five_records(tmp.path()).await;
    let seg = seg_path(tmp.path(), 1);
    let original = std::fs::read(&seg).unwrap();
    let start = original.len() as u64 - RECORD_LEN;
    for pos in start as usize..original.len() {
        let mut bad = original.clone();
        bad[pos] ^= 0x5A;
        std::fs::write(&seg, &bad).unwrap();
        let (mut s, report) = open(tmp.path(), opts());
        assert_eq!(all_entries(&mut s).await, es[..4], "flip at {pos}");
        let t = report.torn_tail.expect("damaged tail reported");
        assert_eq!(
            (t.offset, t.bytes_cut),
            (start, RECORD_LEN),
            "flip at {pos}"
        );
        assert!(t.reason.contains("checksum"), "{}", t.reason);
    }
}

#[tokio::test]
async fn a_flipped_byte_in_a_middle_record_refuses_to_start_and_names_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    five_records(tmp.path()).await;
    let seg = seg_path(tmp.path(), 1);
    let original = std::fs::read(&seg).unwrap();
    let header_len = original.len() as u64 - 5 * RECORD_LEN;
    // Entry 3's record.
    let start = header_len + 2 * RECORD_LEN;
    for pos in start..start + RECORD_LEN {
        let mut bad = original.clone();
        bad[pos as usize] ^= 0x01;
        std::fs::write(&seg, &bad).unwrap();
        match FileStore::open(tmp.path(), opts()) {
            Err(StoreError::Corrupt {
                file,
                offset,
                reason,
            }) => {
                assert_eq!(file, seg.display().to_string());
                assert_eq!(offset, start, "flip at {pos}: {reason}");
                let msg = StoreError::Corrupt {
                    file,
                    offset,
                    reason,
                }
                .to_string();
                assert!(
                    msg.contains("00000000000000000001.wal") && msg.contains(&start.to_string()),
                    "{msg}"
                );
            }
            Err(e) => panic!("flip at {pos}: wrong error {e}"),
            Ok(_) => panic!("flip at {pos}: the store started on a damaged log"),
        }
        assert_eq!(
            std::fs::read(&seg).unwrap(),
            bad,
            "a refused start must not modify the log"
        );
    }
    // The segment header record is never treated as a torn tail either.
    for pos in [0usize, 4, 20, 31, header_len as usize - 1] {
        let mut bad = original.clone();
        bad[pos] ^= 0x80;
        std::fs::write(&seg, &bad).unwrap();
        match FileStore::open(tmp.path(), opts()) {
            Err(StoreError::Corrupt { offset: 0, .. }) => {}
            other => panic!(
                "flip at {pos} in the segment header: {:?}",
                other.map(|_| ())
            ),
        }
    }
}

#[tokio::test]
async fn damage_at_the_end_of_a_segment_that_others_follow_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = open(tmp.path(), small_segments());
        for i in 1..=4 {
            append(&mut s, &[entry(i, 1, DATA_LEN)], None).await;
        }
    }
    // Segment 1 holds only its header; entry i is in segment i + 1.
    let seg = seg_path(tmp.path(), 3);
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();
    match FileStore::open(tmp.path(), small_segments()) {
        Err(StoreError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, seg.display().to_string());
            assert_eq!(offset, bytes.len() as u64 - RECORD_LEN);
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
    // A missing segment in the middle is refused too.
    bytes[last] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();
    std::fs::remove_file(seg_path(tmp.path(), 2)).unwrap();
    assert!(matches!(
        FileStore::open(tmp.path(), small_segments()),
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn a_torn_batch_loses_its_hard_state_with_its_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let hs1 = HardState {
        term: 1,
        vote: NodeId(2),
        commit: 2,
    };
    let hs2 = HardState {
        term: 2,
        vote: NodeId(3),
        commit: 4,
    };
    {
        let (mut s, _) = open(tmp.path(), opts());
        append(&mut s, &[entry(1, 1, 8), entry(2, 1, 8)], Some(hs1)).await;
        append(&mut s, &[entry(3, 2, 8), entry(4, 2, 8)], Some(hs2)).await;
    }
    let seg = seg_path(tmp.path(), 1);
    let full = std::fs::read(&seg).unwrap();
    // Cut one byte into the second batch's hard state record: its entries
    // survive but the new hard state does not.
    std::fs::write(&seg, &full[..full.len() - 1]).unwrap();
    let (mut s, r) = open(tmp.path(), opts());
    let st = s.initial_state().await.unwrap();
    assert_eq!(st.hard_state, hs1);
    assert_eq!(st.entries.len(), 4);
    assert!(r.torn_tail.is_some());
    // Everything intact: the newest hard state wins.
    drop(s);
    std::fs::write(&seg, &full).unwrap();
    let (mut s, _) = open(tmp.path(), opts());
    assert_eq!(s.initial_state().await.unwrap().hard_state, hs2);
}

#[tokio::test]
async fn recovery_logs_the_cut_with_file_and_offset_and_the_entries_recovered() {
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    five_records(tmp.path()).await;
    let seg = seg_path(tmp.path(), 1);
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..bytes.len() - 3]).unwrap();
    let cap = Capture::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let report = tracing::subscriber::with_default(subscriber, || open(tmp.path(), opts()).1);
    let log = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    let offset = bytes.len() as u64 - RECORD_LEN;
    assert_eq!(report.torn_tail.unwrap().offset, offset);
    let warn = log
        .lines()
        .find(|l| l.contains("WARN"))
        .expect("a warning about the cut");
    assert!(warn.contains("00000000000000000001.wal"), "{warn}");
    assert!(warn.contains(&format!("offset={offset}")), "{warn}");
    let info = log
        .lines()
        .find(|l| l.contains("recovered the raft store"))
        .expect("a recovery summary");
    assert!(
        info.contains("entries=4") && info.contains("elapsed_ms="),
        "{info}"
    );
}

#[tokio::test]
async fn hard_state_round_trips_and_survives_compaction_of_its_segment() {
    for mode in [IoMode::Thread, IoMode::SpawnBlocking] {
        let tmp = tempfile::tempdir().unwrap();
        let o = WalOptions {
            segment_size: 1,
            io_mode: mode,
        };
        let hs = HardState {
            term: 7,
            vote: NodeId(3),
            commit: 0,
        };
        {
            let (mut s, r) = open(tmp.path(), o.clone());
            assert!(r.created);
            assert_eq!(s.initial_state().await.unwrap(), Default::default());
            append(&mut s, &[], Some(hs)).await;
        }
        {
            let (mut s, r) = open(tmp.path(), o.clone());
            assert!(!r.created);
            assert_eq!(s.initial_state().await.unwrap().hard_state, hs);
            // Each batch starts a new segment; the hard state record above
            // lives in segment 1, which compaction deletes.
            for i in 1..=5 {
                append(&mut s, &[entry(i, 7, 10)], None).await;
            }
            let snap = Snapshot {
                meta: SnapshotMeta {
                    index: 5,
                    term: 7,
                    membership: Membership::new([NodeId(1)]),
                },
                data: Bytes::from_static(b"state"),
            };
            s.save_snapshot(&snap, 0).await.unwrap();
            assert!(
                !seg_path(tmp.path(), 1).exists(),
                "{mode:?}: segment 1 not compacted"
            );
        }
        let (mut s, _) = open(tmp.path(), o);
        let st = s.initial_state().await.unwrap();
        assert_eq!(st.hard_state, hs, "{mode:?}");
        assert_eq!(st.snapshot.map(|m| m.index), Some(5));
        assert!(st.entries.is_empty());
    }
}

fn snap(index: u64, term: u64, data: &'static [u8]) -> Snapshot {
    let mut membership = Membership::new([NodeId(1), NodeId(2), NodeId(3)]);
    membership.learners.insert(NodeId(9));
    Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            membership,
        },
        data: Bytes::from_static(data),
    }
}

#[tokio::test]
async fn snapshot_round_trip_keeps_the_suffix_and_hands_out_only_entries_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let es: Vec<Entry> = (1..=30).map(|i| entry(i, 1 + i / 10, 20)).collect();
    let s20 = snap(20, 3, b"the state at twenty");
    {
        let (mut s, _) = open(tmp.path(), small_segments());
        for chunk in es.chunks(3) {
            append(&mut s, chunk, None).await;
        }
        s.save_snapshot(&s20, 5).await.unwrap();
        assert_eq!(s.snapshot().await.unwrap(), Some(s20.clone()));
        // The kept suffix (index - keep, ...] stays readable.
        assert_eq!(s.entries(16, 31).await.unwrap(), es[15..]);
        assert!(matches!(
            s.entries(1, 31).await,
            Err(StoreError::Invalid(_))
        ));
    }
    let (mut s, r) = open(tmp.path(), small_segments());
    assert_eq!(r.snapshot, Some((20, 3)));
    assert!(
        r.first_index <= 16,
        "entries after index - keep were compacted: {}",
        r.first_index
    );
    assert!(r.first_index > 1, "nothing was compacted");
    let st = s.initial_state().await.unwrap();
    assert_eq!(st.snapshot, Some(s20.meta.clone()));
    assert_eq!(st.entries, es[20..]);
    assert_eq!(s.snapshot().await.unwrap(), Some(s20));
    // A second initial_state re-reads the same from disk.
    assert_eq!(s.initial_state().await.unwrap().entries, es[20..]);
    // An older snapshot is refused; nothing at or below the snapshot may be
    // rewritten.
    assert!(matches!(
        s.save_snapshot(&snap(10, 2, b"old"), 0).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.persist(WriteBatch {
            hard_state: None,
            entries: &[entry(20, 9, 1)]
        })
        .await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn compaction_deletes_exactly_the_whole_segments_below_index_minus_keep() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = open(tmp.path(), small_segments());
    for i in 1..=100 {
        append(&mut s, &[entry(i, 1, 8)], None).await;
    }
    // Entry i is in segment i + 1; segment 1 holds only its header.
    s.save_snapshot(&snap(90, 1, b"x"), 10).await.unwrap();
    let mut names: Vec<String> = std::fs::read_dir(tmp.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 20, "{names:?}");
    assert_eq!(names[0], format!("{:020}.wal", 82));
    assert_eq!(s.entries(81, 101).await.unwrap().len(), 20);
    assert!(s.entries(80, 81).await.is_err());
    drop(s);
    let (_, r) = open(tmp.path(), small_segments());
    assert_eq!((r.first_index, r.last_index, r.segments), (81, 100, 20));
}

#[tokio::test]
async fn a_snapshot_beyond_the_log_replaces_it_and_a_crash_before_the_reset_is_completed() {
    let tmp = tempfile::tempdir().unwrap();
    let leader_snap = snap(50, 4, b"from the leader");
    {
        let (mut s, _) = open(tmp.path(), opts());
        append(
            &mut s,
            &(1..=10).map(|i| entry(i, 1, 8)).collect::<Vec<_>>(),
            None,
        )
        .await;
        s.save_snapshot(&leader_snap, 0).await.unwrap();
        append(&mut s, &[entry(51, 4, 8)], None).await;
    }
    let (mut s, r) = open(tmp.path(), opts());
    assert!(!r.completed_snapshot_install);
    let st = s.initial_state().await.unwrap();
    assert_eq!(st.entries, vec![entry(51, 4, 8)]);
    drop(s);

    // The same, but as if the crash came after the snapshot file was renamed
    // into place and before the log was reset: put the file beside an old log.
    let other = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = open(other.path(), opts());
        append(
            &mut s,
            &(1..=10).map(|i| entry(i, 1, 8)).collect::<Vec<_>>(),
            None,
        )
        .await;
    }
    let name = "snap-00000000000000000050-00000000000000000004.snap";
    std::fs::copy(
        tmp.path().join("snap").join(name),
        other.path().join("snap").join(name),
    )
    .unwrap();
    let (mut s, r) = open(other.path(), opts());
    assert!(r.completed_snapshot_install);
    assert_eq!((r.first_index, r.last_index), (51, 50));
    let st = s.initial_state().await.unwrap();
    assert!(st.entries.is_empty());
    assert_eq!(st.snapshot, Some(leader_snap.meta.clone()));
    append(&mut s, &[entry(51, 4, 8)], None).await;
    drop(s);
    let (mut s, r) = open(other.path(), opts());
    assert!(
        !r.completed_snapshot_install,
        "the reset was not made durable"
    );
    assert_eq!(
        s.initial_state().await.unwrap().entries,
        vec![entry(51, 4, 8)]
    );
}

#[tokio::test]
async fn a_snapshot_whose_term_disagrees_with_the_log_drops_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = open(tmp.path(), opts());
    append(
        &mut s,
        &(1..=10).map(|i| entry(i, 1, 8)).collect::<Vec<_>>(),
        None,
    )
    .await;
    s.save_snapshot(&snap(8, 2, b"other history"), 100)
        .await
        .unwrap();
    assert!(s.initial_state().await.unwrap().entries.is_empty());
    append(&mut s, &[entry(9, 2, 8)], None).await;
    drop(s);
    let (mut s, _) = open(tmp.path(), opts());
    assert_eq!(
        s.initial_state().await.unwrap().entries,
        vec![entry(9, 2, 8)]
    );
}

#[tokio::test]
async fn the_newest_valid_snapshot_is_used_and_older_ones_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let sdir = tmp.path().join("snap");
    let n5 = "snap-00000000000000000005-00000000000000000001.snap";
    let n8 = "snap-00000000000000000008-00000000000000000001.snap";
    {
        let (mut s, _) = open(tmp.path(), opts());
        append(
            &mut s,
            &(1..=10).map(|i| entry(i, 1, 8)).collect::<Vec<_>>(),
            None,
        )
        .await;
        s.save_snapshot(&snap(5, 1, b"five"), 100).await.unwrap();
        std::fs::copy(sdir.join(n5), tmp.path().join("keep5")).unwrap();
        s.save_snapshot(&snap(8, 1, b"eight"), 100).await.unwrap();
        assert!(!sdir.join(n5).exists(), "older snapshot not pruned on save");
    }
    // Two valid snapshots (a crash before pruning): the newer wins.
    std::fs::copy(tmp.path().join("keep5"), sdir.join(n5)).unwrap();
    {
        let (mut s, r) = open(tmp.path(), opts());
        assert_eq!((r.snapshot, r.snapshots_pruned), (Some((8, 1)), 1));
        assert!(!sdir.join(n5).exists());
        assert_eq!(s.snapshot().await.unwrap().unwrap().data, &b"eight"[..]);
    }
    // A damaged newest snapshot is skipped for the newest valid one.
    std::fs::copy(tmp.path().join("keep5"), sdir.join(n5)).unwrap();
    let mut bytes = std::fs::read(sdir.join(n8)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(sdir.join(n8), &bytes).unwrap();
    let (mut s, r) = open(tmp.path(), opts());
    assert_eq!(r.snapshot, Some((5, 1)));
    let st = s.initial_state().await.unwrap();
    assert_eq!(
        st.entries,
        (6..=10).map(|i| entry(i, 1, 8)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn snapshot_temp_file_leftovers_are_ignored_and_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = open(tmp.path(), opts());
        append(&mut s, &[entry(1, 1, 8), entry(2, 1, 8)], None).await;
        s.save_snapshot(&snap(1, 1, b"one"), 0).await.unwrap();
    }
    let leftovers = [
        tmp.path()
            .join("snap/snap-00000000000000000002-00000000000000000001.snap.tmp"),
        tmp.path().join("wal/00000000000000000002.wal.tmp"),
        tmp.path().join("FORMAT.tmp"),
    ];
    for p in &leftovers {
        std::fs::write(p, b"half a write").unwrap();
    }
    let (mut s, r) = open(tmp.path(), opts());
    assert_eq!(r.temp_files_removed, 3);
    for p in &leftovers {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    assert_eq!(r.snapshot, Some((1, 1)));
    assert_eq!(
        s.initial_state().await.unwrap().entries,
        vec![entry(2, 1, 8)]
    );
}

#[tokio::test]
async fn an_incompatible_data_directory_is_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    drop(open(tmp.path(), opts()));
    std::fs::write(tmp.path().join("FORMAT"), "raft-node-store 2\n").unwrap();
    match FileStore::open(tmp.path(), opts()) {
        Err(e @ StoreError::Incompatible(_)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("format 2") && msg.contains("format 1"),
                "{msg}"
            );
        }
        other => panic!("expected Incompatible, got {:?}", other.map(|_| ())),
    }
    std::fs::write(tmp.path().join("FORMAT"), "something else entirely").unwrap();
    assert!(matches!(
        FileStore::open(tmp.path(), opts()),
        Err(StoreError::Incompatible(_))
    ));
    // Store files without a marker: not a directory this version wrote.
    std::fs::remove_file(tmp.path().join("FORMAT")).unwrap();
    match FileStore::open(tmp.path(), opts()) {
        Err(e @ StoreError::Incompatible(_)) => assert!(e.to_string().contains("FORMAT"), "{e}"),
        other => panic!("expected Incompatible, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn one_fsync_covers_a_whole_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = open(tmp.path(), opts());
    let m = s.metrics();
    let before = m.fsync_count();
    let es: Vec<Entry> = (1..=256).map(|i| entry(i, 1, 64)).collect();
    append(
        &mut s,
        &es,
        Some(HardState {
            term: 1,
            vote: NodeId(1),
            commit: 0,
        }),
    )
    .await;
    assert_eq!(m.fsync_count() - before, 1);
    assert_eq!(m.entries_written(), 256);
    assert_eq!(m.batches(), 1);
    assert!(m.bytes_written() >= 256 * (64 + 32));
    let h = m.fsync_histogram();
    assert_eq!(h.count, m.fsync_count());
    let mut text = String::new();
    m.render_prometheus(&mut text);
    assert!(
        text.contains("raft_wal_entries_written_total 256"),
        "{text}"
    );
}

#[tokio::test]
async fn conflicting_suffixes_are_replaced_across_segments_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut model: Vec<Entry> = (1..=10).map(|i| entry(i, 1, 12)).collect();
    {
        let (mut s, _) = open(tmp.path(), small_segments());
        for e in &model {
            append(&mut s, std::slice::from_ref(e), None).await;
        }
        let new: Vec<Entry> = (4..=6).map(|i| entry(i, 2, 3)).collect();
        append(&mut s, &new, None).await;
        model.truncate(3);
        model.extend(new);
        assert_eq!(s.entries(1, 7).await.unwrap(), model);
        assert!(s.entries(1, 8).await.is_err());
    }
    let (mut s, _) = open(tmp.path(), small_segments());
    assert_eq!(all_entries(&mut s).await, model);
    // Replacing from the very first entry.
    append(&mut s, &[entry(1, 3, 1)], None).await;
    drop(s);
    let (mut s, _) = open(tmp.path(), small_segments());
    assert_eq!(all_entries(&mut s).await, vec![entry(1, 3, 1)]);
}

#[tokio::test]
async fn inconsistent_batches_are_refused_without_harming_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = open(tmp.path(), opts());
    for es in [
        vec![entry(2, 1, 1)],                 // gap after an empty log
        vec![entry(1, 1, 1), entry(3, 1, 1)], // not contiguous
        vec![entry(0, 1, 1)],                 // index 0
    ] {
        let r = s
            .persist(WriteBatch {
                hard_state: None,
                entries: &es,
            })
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{es:?}: {r:?}");
    }
    append(&mut s, &[entry(1, 1, 1)], None).await;
    assert_eq!(s.entries(1, 2).await.unwrap(), vec![entry(1, 1, 1)]);
}

#[tokio::test]
async fn a_data_directory_is_opened_by_one_store_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, _) = open(tmp.path(), opts());
    match FileStore::open(tmp.path(), opts()) {
        Err(e @ StoreError::InUse(_)) => {
            let msg = e.to_string();
            assert!(msg.contains("LOCK") && msg.contains("another"), "{msg}");
        }
        other => panic!("expected InUse, got {:?}", other.map(|_| ())),
    }
    // The lock goes with the store.
    drop(first);
    drop(open(tmp.path(), opts()));
}
