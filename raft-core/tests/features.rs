//! Scenario tests of snapshots, leadership transfer and linearizable reads
//! on the simulated cluster, with every invariant checked after every step.
//! (Membership changes have their own file, `membership.rs`.)

use raft_core::sim::{Cluster, NetFaults};
use raft_core::{NodeId, ProposeError, Role};

const ELECTION_TICKS: u32 = 10;

/// A cluster of three with small snapshot chunks.
fn chunked_cluster(chunk_bytes: u64) -> Cluster {
    Cluster::builder(3)
        .configure(|cfg| {
            cfg.election_ticks = ELECTION_TICKS;
            cfg.heartbeat_ticks = 2;
            cfg.snapshot_chunk_bytes = chunk_bytes;
            cfg.compaction_lag = 0;
        })
        .build()
}

/// From now on messages take up to a tick each way, so that time passes
/// while things are in flight.
fn slow_down(c: &mut Cluster) {
    c.set_net_faults(NetFaults {
        drop: 0.0,
        duplicate: 0.0,
        max_delay: 1,
        reorder: false,
    });
}

fn write(c: &mut Cluster, leader: u64, range: std::ops::Range<u32>) {
    for i in range {
        c.propose(leader, format!("entry {i:04}"))
            .expect("the leader accepts");
        if i % 64 == 63 {
            c.stabilize();
        }
    }
    c.stabilize();
}

#[test]
fn a_follower_down_for_1000_entries_catches_up_through_a_chunked_snapshot() {
    let mut c = chunked_cluster(256);
    c.elect(1);
    c.crash(3);
    write(&mut c, 1, 0..500);
    assert!(c.compact(1), "the leader compacts at its applied index");
    let compacted_at = c.node(1).snapshot_index();
    assert!(compacted_at >= 500, "compacted at {compacted_at}");
    write(&mut c, 1, 500..1000);
    let commit = c.node(1).commit_index();
    let snapshot_bytes = c.disk(1).snapshot.as_ref().expect("a snapshot").data.len() as u64;
    assert!(
        snapshot_bytes > 20 * 256,
        "the snapshot needs many chunks ({snapshot_bytes} bytes)"
    );

    let term = c.node(1).term();
    let leaders = c.checker().leaders().len();
    let chunks_before = c.stats().snapshot_chunks;
    slow_down(&mut c);
    c.restart(3);
    let mut ticks = 0;
    while c.app(3).applied < commit {
        ticks += 1;
        assert!(ticks < 5_000, "node 3 did not catch up");
        c.run_tick(0.0);
        // Heartbeats keep flowing while chunks are in flight: nobody
        // campaigns, however long the transfer takes.
        assert_eq!(c.node(1).role(), Role::Leader, "tick {ticks}");
        assert_eq!(c.node(1).term(), term, "tick {ticks}");
    }
    let chunks = c.stats().snapshot_chunks - chunks_before;
    assert!(
        chunks >= snapshot_bytes.div_ceil(256),
        "{chunks} chunks for {snapshot_bytes} bytes"
    );
    assert!(
        ticks > u64::from(ELECTION_TICKS) * 2,
        "the transfer spanned several election timeouts ({ticks} ticks)"
    );
    assert_eq!(c.stats().snapshots_installed, 1);
    assert_eq!(c.checker().leaders().len(), leaders, "no election");
    assert_eq!(c.app(3), c.app(1), "node 3 holds the same history");
    assert_eq!(c.violation(), None);
}

#[test]
fn a_snapshot_transfer_resumes_after_a_hiccup() {
    let mut c = chunked_cluster(128);
    c.elect(1);
    c.crash(3);
    write(&mut c, 1, 0..300);
    assert!(c.compact(1));
    let commit = c.node(1).commit_index();
    let chunks_before = c.stats().snapshot_chunks;
    slow_down(&mut c);
    c.restart(3);
    // Let part of the snapshot through, then cut the link for a while.
    for _ in 0..10 {
        c.run_tick(0.0);
    }
    let sent_before_cut = c.stats().snapshot_chunks - chunks_before;
    // More than the slack allowed below, so a restart would show.
    assert!(
        sent_before_cut > 3,
        "{sent_before_cut} chunks before the cut"
    );
    c.cut(1, 3);
    for _ in 0..3 * ELECTION_TICKS {
        c.run_tick(0.0);
    }
    c.heal();
    let mut ticks = 0;
    while c.app(3).applied < commit {
        ticks += 1;
        assert!(ticks < 5_000, "node 3 did not catch up");
        c.run_tick(0.0);
    }
    let snapshot_bytes = c.disk(1).snapshot.as_ref().expect("a snapshot").data.len() as u64;
    let needed = snapshot_bytes.div_ceil(128);
    let chunks = c.stats().snapshot_chunks - chunks_before;
    // Resumed, not restarted: what arrived before the cut is not sent
    // again (a chunk lost at the cut, and one resent on idle, may be).
    assert!(
        chunks <= needed + 3,
        "{chunks} chunks delivered for {needed} needed: the transfer restarted"
    );
    assert_eq!(c.stats().snapshots_installed, 1);
    assert_eq!(c.app(3), c.app(1));
    assert_eq!(c.violation(), None);
}

#[test]
fn a_transfer_to_a_lagging_follower_completes() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(3);
    write(&mut c, 1, 0..50);
    c.heal();
    let last = c.node(1).last_index();
    c.transfer_leadership(1, 3).expect("node 3 is a voter");
    assert!(
        matches!(
            c.propose(1, "during"),
            Err(ProposeError::TransferInProgress(NodeId(3)))
        ),
        "proposals are refused during a transfer"
    );
    for _ in 0..3 * ELECTION_TICKS {
        c.tick_and_settle(1);
        if c.leader() == Some(NodeId(3)) {
            break;
        }
    }
    assert_eq!(c.leader(), Some(NodeId(3)), "node 3 took over");
    assert!(
        c.node(3).last_index() > last,
        "with every entry and its own"
    );
    c.propose(3, "after").expect("the new leader accepts");
    c.stabilize();
    assert_eq!(c.violation(), None);
}

#[test]
fn a_transfer_to_a_dead_follower_aborts_and_the_leader_resumes() {
    let mut c = Cluster::new(3);
    c.elect(1);
    write(&mut c, 1, 0..5);
    c.crash(3);
    let term = c.node(1).term();
    c.transfer_leadership(1, 3).expect("node 3 is a voter");
    assert!(matches!(
        c.propose(1, "during"),
        Err(ProposeError::TransferInProgress(_))
    ));
    for _ in 0..ELECTION_TICKS + 1 {
        c.tick_and_settle(1);
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), term, "no election happened");
    c.propose(1, "after")
        .expect("the leader takes proposals again");
    c.stabilize();
    assert_eq!(c.violation(), None);
}

#[test]
fn a_partitioned_old_leader_never_answers_a_read_index() {
    let mut c = Cluster::new(3);
    c.elect(1);
    write(&mut c, 1, 0..3);
    c.partition(&[&[1], &[2, 3]]);
    let stale = c.read_index(1);
    // The majority elects a new leader once the old one has been silent
    // for an election timeout, and commits a write the old leader never
    // sees.
    let mut new_leader = None;
    for _ in 0..5 * ELECTION_TICKS {
        c.tick_and_settle(1);
        assert_eq!(c.read_served(stale), None, "the old leader served a read");
        new_leader = [2, 3]
            .into_iter()
            .find(|id| c.node(*id).role() == Role::Leader);
        if new_leader.is_some() {
            break;
        }
    }
    let new_leader = new_leader.expect("the majority elects a leader");
    let (_, newer) = c.propose(new_leader, "newer").expect("it leads");
    c.stabilize();
    assert!(c.node(new_leader).commit_index() >= newer);
    for _ in 0..3 * ELECTION_TICKS {
        c.tick_and_settle(1);
        assert_eq!(c.read_served(stale), None, "the old leader served a read");
    }
    assert_ne!(c.node(1).role(), Role::Leader, "check-quorum deposed it");
    c.heal();
    for _ in 0..3 * ELECTION_TICKS {
        c.tick_and_settle(1);
    }
    assert_eq!(c.read_served(stale), None);
    // A read asked of the old leader, now a follower, goes to the leader
    // and sees the newer write.
    let fresh = c.read_index(1);
    for _ in 0..ELECTION_TICKS {
        c.tick_and_settle(1);
        if c.read_served(fresh).is_some() {
            break;
        }
    }
    let (node, index) = c.read_served(fresh).expect("the read is served");
    assert_eq!(node, 1);
    assert!(
        index >= newer,
        "read index {index} misses the write at {newer}"
    );
    assert_eq!(c.violation(), None);
}

#[test]
fn many_reads_share_one_heartbeat_round() {
    let mut c = Cluster::new(3);
    c.elect(1);
    write(&mut c, 1, 0..3);
    let delivered = c.stats().delivered;
    let ctxs = c.read_index_batch(1, 100);
    c.stabilize();
    for ctx in &ctxs {
        assert!(c.read_served(*ctx).is_some(), "read {ctx} not served");
    }
    // One round: a heartbeat to each follower and its answer.
    let messages = c.stats().delivered - delivered;
    assert!(messages <= 4, "{messages} messages for 100 reads");
}
