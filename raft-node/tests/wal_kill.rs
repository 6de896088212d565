//! Nothing acknowledged is lost to `kill -9`.
//!
//! The parent test re-executes this test binary in child mode
//! (`RAFT_WAL_KILL_DIR` set): the child opens the store, then appends
//! batches (with a hard state, and now and then a snapshot that compacts
//! the log) and prints one line per batch after `persist` returned. The
//! parent SIGKILLs it at a random moment, reopens the store, and checks
//! that every acknowledged entry is there, in order, with its data, and
//! that the hard state never went backwards. Then the next round restarts
//! the child on the same directory. The run is fixed by a seed
//! (`RAFT_WAL_KILL_SEED`, printed on failure) apart from where the kills
//! land in time.

use bytes::Bytes;
use raft_core::{Entry, EntryKind, HardState, Membership, NodeId, Snapshot, SnapshotMeta};
use raft_node::store::{LogStore, WriteBatch};
use raft_node::wal::{FileStore, WalOptions};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROUNDS: u64 = 25;

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn payload(index: u64, term: u64) -> Bytes {
    // Now and then a large entry, so that a kill can land inside a write
    // (a torn record) and not only inside an fsync.
    if index % 61 == 0 {
        let mut v = vec![(index ^ term) as u8; 1 << 20];
        v[..8].copy_from_slice(&index.to_le_bytes());
        v[8..16].copy_from_slice(&term.to_le_bytes());
        return v.into();
    }
    let len = ((index * 7 + term * 13) % 300) as usize;
    (0..len)
        .map(|i| (index ^ (term << 3) ^ i as u64) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn snapshot_data(index: u64, term: u64) -> Bytes {
    format!("snapshot {index} {term}").into_bytes().into()
}

fn opts() -> WalOptions {
    WalOptions {
        // Small segments so that rotation and compaction happen often.
        segment_size: 16 << 10,
        ..WalOptions::default()
    }
}

/// Child mode: appends until killed. A no-op in a normal test run.
#[tokio::test]
async fn kill9_child() {
    let Ok(dir) = std::env::var("RAFT_WAL_KILL_DIR") else {
        return;
    };
    let round: u64 = std::env::var("RAFT_WAL_KILL_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let mut rng = SplitMix(
        std::env::var("RAFT_WAL_KILL_SEED")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            ^ round,
    );
    let (mut store, _) = FileStore::open(Path::new(&dir), opts()).expect("child: open");
    let st = store.initial_state().await.expect("child: initial state");
    let snap_index = st.snapshot.as_ref().map_or(0, |m| m.index);
    let mut terms: BTreeMap<u64, u64> = st.entries.iter().map(|e| (e.index, e.term)).collect();
    if let Some(m) = &st.snapshot {
        terms.insert(m.index, m.term);
    }
    let mut last = st.entries.last().map_or(snap_index, |e| e.index);
    let term = st
        .hard_state
        .term
        .max(terms.values().max().copied().unwrap_or(0))
        + 1;
    // A fresh line first: the test harness may have printed a partial one.
    println!("\nREADY {last} {term}");
    let mut batches = 0u64;
    loop {
        let n = rng.range(1, 24);
        let entries: Vec<Entry> = (last + 1..=last + n)
            .map(|index| Entry {
                term,
                index,
                kind: EntryKind::Normal,
                data: payload(index, term),
            })
            .collect();
        let hs = HardState {
            term,
            vote: NodeId(round % 5 + 1),
            commit: last,
        };
        store
            .persist(WriteBatch {
                hard_state: Some(hs),
                entries: &entries,
            })
            .await
            .expect("child: persist");
        println!("ACK {} {} {} {}", last + 1, last + n, term, last);
        for e in &entries {
            terms.insert(e.index, e.term);
        }
        last += n;
        batches += 1;
        if batches % 40 == 0 {
            let snap = Snapshot {
                meta: SnapshotMeta {
                    index: last,
                    term,
                    membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)]),
                },
                data: snapshot_data(last, term),
            };
            store
                .save_snapshot(&snap, 32)
                .await
                .expect("child: snapshot");
            println!("SNAP {last} {term}");
        }
    }
}

#[derive(Default)]
struct Acked {
    /// Acknowledged entries: index -> term.
    entries: BTreeMap<u64, u64>,
    hard_state: HardState,
    snapshot: u64,
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let seed: u64 = std::env::var("RAFT_WAL_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0001);
    let mut rng = SplitMix(seed);
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = Acked::default();
    let mut seen_hs = HardState::default();
    let mut total_acks = 0;
    let mut torn_tails = 0;
    let started = Instant::now();
    for round in 1..=ROUNDS {
        let ctx = format!("seed {seed} round {round} (rerun with RAFT_WAL_KILL_SEED={seed})");
        let mut child = Command::new(&exe)
            .args(["kill9_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("RAFT_WAL_KILL_DIR", tmp.path())
            .env("RAFT_WAL_KILL_ROUND", round.to_string())
            .env("RAFT_WAL_KILL_SEED", seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut lines = Vec::new();
        // One round in five is killed early, possibly during recovery;
        // the others once the child is writing.
        if rng.range(0, 5) == 0 {
            std::thread::sleep(Duration::from_millis(rng.range(0, 40)));
        } else {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let line = rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .unwrap_or_else(|_| panic!("{ctx}: the child never became ready"));
                let ready = line.contains("READY");
                lines.push(line);
                if ready {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(rng.range(5, 120)));
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{ctx}: the child exited by itself ({status}): {}",
                err_reader.join().unwrap()
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let child_err = err_reader.join().unwrap();
        lines.extend(rx.try_iter());

        for line in &lines {
            if let Some(pos) = line.find("ACK ") {
                let f: Vec<u64> = line[pos + 4..]
                    .split(' ')
                    .map(|x| x.parse().unwrap())
                    .collect();
                let (first, last, term, commit) = (f[0], f[1], f[2], f[3]);
                // The child only appends after what it recovered, so a
                // batch starting at or below an acknowledged entry means
                // that entry was lost.
                let prev = acked.entries.keys().next_back().copied().unwrap_or(0);
                assert!(
                    first > prev,
                    "{ctx}: batch {first}..{last} rewrites acknowledged entry {prev}"
                );
                for i in first..=last {
                    acked.entries.insert(i, term);
                }
                acked.hard_state = HardState {
                    term,
                    vote: acked.hard_state.vote,
                    commit,
                };
                total_acks += 1;
            } else if let Some(pos) = line.find("SNAP ") {
                let f: Vec<u64> = line[pos + 5..]
                    .split(' ')
                    .map(|x| x.parse().unwrap())
                    .collect();
                acked.snapshot = f[0];
            }
        }

        // Recover in this process and check.
        let (mut store, report) = FileStore::open(tmp.path(), opts())
            .unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}\nchild stderr:\n{child_err}"));
        torn_tails += usize::from(report.torn_tail.is_some());
        let st = store.initial_state().await.unwrap();
        let hs = st.hard_state;
        assert!(
            (hs.term, hs.commit) >= (seen_hs.term, seen_hs.commit),
            "{ctx}: hard state went backwards: {seen_hs:?} -> {hs:?}"
        );
        assert!(
            hs.term >= acked.hard_state.term && hs.commit >= acked.hard_state.commit,
            "{ctx}: acknowledged hard state {:?} lost: recovered {hs:?}",
            acked.hard_state
        );
        seen_hs = hs;
        let snap_index = st.snapshot.as_ref().map_or(0, |m| m.index);
        assert!(
            snap_index >= acked.snapshot,
            "{ctx}: acknowledged snapshot lost"
        );
        if let Some(m) = &st.snapshot {
            let snap = store.snapshot().await.unwrap().unwrap();
            assert_eq!(snap.data, snapshot_data(m.index, m.term), "{ctx}");
        }
        for (k, e) in st.entries.iter().enumerate() {
            assert_eq!(
                e.index,
                snap_index + 1 + k as u64,
                "{ctx}: entries out of order"
            );
            assert_eq!(
                e.data,
                payload(e.index, e.term),
                "{ctx}: entry {} damaged",
                e.index
            );
        }
        let last = st.entries.last().map_or(snap_index, |e| e.index);
        for (&i, &term) in &acked.entries {
            if i <= snap_index {
                continue;
            }
            assert!(
                i <= last,
                "{ctx}: acknowledged entry {i} lost (log ends at {last})"
            );
            let e = &st.entries[(i - snap_index - 1) as usize];
            assert_eq!(
                e.term, term,
                "{ctx}: acknowledged entry {i} has the wrong term"
            );
        }
    }
    assert!(
        total_acks > ROUNDS,
        "too few acknowledged batches ({total_acks}) to mean anything"
    );
    eprintln!(
        "kill -9: {ROUNDS} rounds, {total_acks} acknowledged batches, {} acknowledged entries, \
         {torn_tails} torn tails cut, {:?}",
        acked.entries.len(),
        started.elapsed()
    );
}
