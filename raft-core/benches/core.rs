//! Throughput of the protocol core alone: a three-node cluster in one
//! thread, messages handed from node to node in memory (no serialization,
//! no fault injection, no disk), 64-byte proposals.
//!
//! Two figures, each in committed entries per second (entries of the
//! clients, counted when the leader commits them) and in heap allocations
//! per committed entry (a counting global allocator wraps the system one):
//!
//! - batched: the leader takes 64 proposals, then every node handles its
//!   `Ready` and every message in flight is delivered; repeat. Replication
//!   is pipelined across rounds, as a busy leader's would be.
//! - unbatched: one proposal, then rounds until the leader has committed
//!   it (one replication round trip per entry).
//!
//! `cargo bench -p raft-core` prints a table and `BENCH` lines (see the
//! workspace's benchmark format); `RAFT_BENCH_QUICK=1` runs each figure for
//! about a second.

use bytes::Bytes;
use raft_core::{Config, EntryKind, Message, NodeId, Raft, Role};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const PAYLOAD: [u8; 64] = [0x5a; 64];
/// Applied entries between two snapshots (keeps memory bounded).
const COMPACT_EVERY: u64 = 16_384;

struct Trio {
    nodes: Vec<Raft>,
    wire: Vec<Message>,
    next: Vec<Message>,
    applied: [u64; 3],
    last_compaction: [u64; 3],
}

impl Trio {
    fn new() -> Trio {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let nodes = ids
            .iter()
            .map(|&id| Raft::new(Config::new(id, ids)).expect("valid config"))
            .collect();
        let mut t = Trio {
            nodes,
            wire: Vec::with_capacity(64),
            next: Vec::with_capacity(64),
            applied: [0; 3],
            last_compaction: [0; 3],
        };
        t.nodes[0].campaign();
        for _ in 0..10 {
            t.round();
        }
        assert_eq!(t.nodes[0].role(), Role::Leader, "node 1 leads");
        t
    }

    /// Every node handles one `Ready` (persisting is free here), then every
    /// message in flight is delivered. Returns whether anything happened.
    fn round(&mut self) -> bool {
        let mut busy = false;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if !node.has_ready() {
                continue;
            }
            busy = true;
            let mut rd = node.ready();
            self.wire.append(&mut rd.messages);
            // (The entries and hard state would be written here.)
            self.wire.append(&mut rd.persisted_messages);
            for e in &rd.committed_entries {
                if e.kind == EntryKind::Normal {
                    self.applied[i] += 1;
                }
            }
            node.advance();
            let applied = node.applied_index();
            if applied >= self.last_compaction[i] + COMPACT_EVERY {
                node.compact(applied, Bytes::new())
                    .expect("compacting at the applied index");
                self.last_compaction[i] = applied;
            }
        }
        std::mem::swap(&mut self.wire, &mut self.next);
        for m in self.next.drain(..) {
            busy = true;
            let to = (m.to.0 - 1) as usize;
            self.nodes[to].step(m).expect("addressed to a member");
        }
        busy
    }

    fn commit(&self) -> u64 {
        self.nodes[0].commit_index()
    }
}

struct Figure {
    entries: u64,
    secs: f64,
    allocs: usize,
}

impl Figure {
    fn per_sec(&self) -> f64 {
        self.entries as f64 / self.secs
    }
    fn allocs_per_entry(&self) -> f64 {
        self.allocs as f64 / self.entries as f64
    }
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn now() -> Instant {
    Instant::now()
}

fn batched(run_for: Duration) -> Figure {
    let mut t = Trio::new();
    let payload = Bytes::from_static(&PAYLOAD);
    let start_commit = t.commit();
    let region = Region::new(GLOBAL);
    let began = now();
    let mut rounds = 0u64;
    loop {
        for _ in 0..64 {
            t.nodes[0]
                .propose(payload.clone())
                .expect("node 1 stays leader");
        }
        t.round();
        rounds += 1;
        if rounds % 256 == 0 && began.elapsed() >= run_for {
            break;
        }
    }
    // Drain what is in flight so every proposal counted is committed.
    while t.round() {}
    let secs = began.elapsed().as_secs_f64();
    let allocs = region.change().allocations;
    let entries = t.commit() - start_commit;
    assert_eq!(entries, rounds * 64, "every proposal committed");
    assert!(t.applied.iter().all(|a| *a == t.applied[0]), "all applied");
    Figure {
        entries,
        secs,
        allocs,
    }
}

fn unbatched(run_for: Duration) -> Figure {
    let mut t = Trio::new();
    let payload = Bytes::from_static(&PAYLOAD);
    let start_commit = t.commit();
    let region = Region::new(GLOBAL);
    let began = now();
    let mut proposals = 0u64;
    loop {
        let (_, index) = t.nodes[0]
            .propose(payload.clone())
            .expect("node 1 stays leader");
        while t.commit() < index {
            assert!(t.round(), "the proposal is stuck");
        }
        proposals += 1;
        if proposals % 1024 == 0 && began.elapsed() >= run_for {
            break;
        }
    }
    while t.round() {}
    let secs = began.elapsed().as_secs_f64();
    let allocs = region.change().allocations;
    let entries = t.commit() - start_commit;
    assert_eq!(entries, proposals, "every proposal committed");
    Figure {
        entries,
        secs,
        allocs,
    }
}

fn main() {
    let quick = std::env::var_os("RAFT_BENCH_QUICK").is_some();
    // `cargo test --benches` runs bench binaries with `--test`: a smoke run.
    let smoke = std::env::args().any(|a| a == "--test");
    let run_for = if smoke {
        Duration::from_millis(50)
    } else if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    // Warm up caches and the allocator.
    let _ = batched(run_for / 5);
    let b = batched(run_for);
    let u = unbatched(run_for);
    println!(
        "raft-core, 3 nodes in one thread, 64-byte proposals{}",
        if quick || smoke {
            " (quick run: rough figures)"
        } else {
            ""
        }
    );
    println!(
        "{:<28} {:>16} {:>12} {:>18}",
        "case", "committed/s", "entries", "allocs/entry"
    );
    for (name, f) in [
        ("batched (64 per round)", &b),
        ("unbatched (1 per round trip)", &u),
    ] {
        println!(
            "{:<28} {:>16.0} {:>12} {:>18.2}",
            name,
            f.per_sec(),
            f.entries,
            f.allocs_per_entry()
        );
    }
    println!(
        "BENCH core.commit.batched64={:.0} entries/s target>=2000000",
        b.per_sec()
    );
    println!(
        "BENCH core.commit.unbatched={:.0} entries/s target>=200000",
        u.per_sec()
    );
    println!(
        "BENCH core.alloc.batched64={:.3} allocs/entry",
        b.allocs_per_entry()
    );
    println!(
        "BENCH core.alloc.unbatched={:.3} allocs/entry",
        u.allocs_per_entry()
    );
}
