//! Whole clusters of the runtime, in process, on the in-memory transport,
//! under tokio's paused clock: every timer is real (the nodes tick on
//! their own intervals) but virtual time costs nothing.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{Cluster, Opts, TransportFactory};
use raft_core::{NodeId, Role, Term};
use raft_node::runtime::{Error, Event};
use raft_transport_mem::{FaultController, MemNetwork, MemTransport};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

struct Mem {
    net: MemNetwork,
}

impl TransportFactory for Mem {
    type T = MemTransport;
    async fn create(&mut self, id: NodeId) -> (MemTransport, String) {
        (self.net.transport(id), format!("mem:{id}"))
    }
}

fn n(i: u64) -> NodeId {
    NodeId(i)
}

async fn cluster(size: u64, opts: Opts) -> (Cluster<Mem>, FaultController) {
    let net = MemNetwork::new(opts.seed);
    let faults = net.faults();
    (Cluster::start(Mem { net }, size, opts).await, faults)
}

/// Generous bound for anything that needs an election or two.
fn soon(o: &Opts) -> Duration {
    o.election_timeout() * 20
}

async fn elects_one_leader(size: u64) {
    let opts = Opts::default();
    let (c, _) = cluster(size, opts.clone()).await;
    let mut events = c.h(n(1)).subscribe();
    let leader = c.wait_leader(soon(&opts)).await;
    let sts = c.statuses();
    assert_eq!(sts.iter().filter(|s| s.role == Role::Leader).count(), 1);
    let term = sts[0].term;
    assert!(term >= 1);
    assert!(sts
        .iter()
        .all(|s| s.term == term && s.leader == Some(leader)));
    // Watchers of node 1 saw it learn of the leader.
    let mut saw_leader = false;
    while let Ok(e) = events.try_recv() {
        if let Event::LeaderChanged {
            leader: Some(l), ..
        } = e
        {
            saw_leader |= l == leader;
        }
    }
    assert!(
        saw_leader,
        "node 1 published no LeaderChanged event for {leader}"
    );
}

#[tokio::test(start_paused = true)]
async fn three_nodes_elect_one_leader() {
    elects_one_leader(3).await;
}

#[tokio::test(start_paused = true)]
async fn five_nodes_elect_one_leader() {
    elects_one_leader(5).await;
}

async fn writes_apply_in_order_everywhere(size: u64) {
    let opts = Opts::default();
    let (c, _) = cluster(size, opts.clone()).await;
    let leader = c.wait_leader(soon(&opts)).await;
    let h = c.h(leader).clone();
    // Sequential writes: each applies after the previous one.
    let mut last = 0;
    for i in 0..20u32 {
        let r = h.propose(format!("seq-{i}")).await.unwrap();
        assert!(r.index > last);
        last = r.index;
    }
    // Concurrent writes share Ready batches and store writes.
    let persists_before = c.store(leader).persist_calls();
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.propose(format!("par-{i}")).await })
        })
        .collect();
    let mut max = 0;
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        max = max.max(r.index);
    }
    let persists = c.store(leader).persist_calls() - persists_before;
    assert!(
        persists < 100,
        "200 concurrent writes took {persists} store writes: no group commit"
    );
    c.wait_all_applied(max, soon(&opts)).await;
    let reference = c.sm(leader).applied();
    assert_eq!(reference.len(), 220);
    let seq: Vec<Bytes> = reference.iter().take(20).map(|(_, d)| d.clone()).collect();
    let expect: Vec<Bytes> = (0..20).map(|i| Bytes::from(format!("seq-{i}"))).collect();
    assert_eq!(seq, expect, "sequential writes applied out of order");
    for id in c.ids() {
        assert_eq!(
            c.sm(id).applied(),
            reference,
            "node {id} applied a different sequence"
        );
    }
    // A follower refuses writes and names the leader.
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    assert_eq!(
        c.h(follower).propose("x").await,
        Err(Error::NotLeader {
            leader: Some(leader)
        })
    );
}

#[tokio::test(start_paused = true)]
async fn three_nodes_apply_writes_in_order() {
    writes_apply_in_order_everywhere(3).await;
}

#[tokio::test(start_paused = true)]
async fn five_nodes_apply_writes_in_order() {
    writes_apply_in_order_everywhere(5).await;
}

/// Records every leader seen per term; fails on two in one term.
fn check_one_leader_per_term(c: &Cluster<Mem>, seen: &mut BTreeMap<Term, NodeId>) {
    for s in c.statuses() {
        if s.role == Role::Leader {
            if let Some(other) = seen.insert(s.term, s.id) {
                assert_eq!(
                    other, s.id,
                    "two leaders in term {}: {other} and {}",
                    s.term, s.id
                );
            }
        }
    }
}

/// The incident this project exists for: a three-zone cluster cut apart
/// completely. No zone may crown itself; once healed, exactly one leader
/// at a higher term, and writes commit again.
#[tokio::test(start_paused = true)]
async fn seed_scenario_every_link_cut_then_healed() {
    let opts = Opts::default();
    let (c, faults) = cluster(3, opts.clone()).await;
    let first = c.wait_leader(soon(&opts)).await;
    let term_before = c.h(first).status().term;
    c.write("before the cut", soon(&opts)).await;

    faults.cut_all();
    let cut_at = Instant::now();
    // A leader notices it lost its quorum within two election timeouts
    // (check-quorum runs once per election timeout).
    let grace = opts.election_timeout() * 2 + opts.tick;
    let mut seen = BTreeMap::new();
    while cut_at.elapsed() < opts.election_timeout() * 30 {
        check_one_leader_per_term(&c, &mut seen);
        if cut_at.elapsed() > grace {
            for s in c.statuses() {
                assert_ne!(
                    s.role,
                    Role::Leader,
                    "node {} is leader while cut off (term {})",
                    s.id,
                    s.term
                );
            }
        }
        tokio::time::sleep(opts.tick).await;
    }

    faults.heal();
    let healed_at = Instant::now();
    let leader = loop {
        check_one_leader_per_term(&c, &mut seen);
        let sts = c.statuses();
        let leaders: Vec<_> = sts.iter().filter(|s| s.role == Role::Leader).collect();
        if leaders.len() == 1 && sts.iter().all(|s| s.leader == Some(leaders[0].id)) {
            break leaders[0].clone();
        }
        assert!(
            healed_at.elapsed() < soon(&opts),
            "no single leader after healing"
        );
        tokio::time::sleep(opts.tick).await;
    };
    assert!(
        leader.term > term_before,
        "leader after heal at term {} (before: {term_before})",
        leader.term
    );
    let w = c.h(leader.id).propose("after the heal").await.unwrap();
    c.wait_all_applied(w.index, soon(&opts)).await;
    for id in c.ids() {
        assert!(c.sm(id).contains(b"after the heal"));
    }
}

/// The leader is cut off from the majority: the majority elects a new
/// leader within two election timeouts, the old one steps down, and a
/// write it accepted meanwhile is never reported committed.
#[tokio::test(start_paused = true)]
async fn isolated_leader_is_replaced_and_its_write_never_commits() {
    let opts = Opts::default();
    let (c, faults) = cluster(3, opts.clone()).await;
    let old = c.wait_leader(soon(&opts)).await;
    let old_term = c.h(old).status().term;
    c.write("committed", soon(&opts)).await;

    faults.isolate(old);
    let cut_at = Instant::now();
    // Still leader in its own eyes for now: it accepts the proposal.
    let h = c.h(old).clone();
    let orphan = tokio::spawn(async move { h.propose("orphan").await });

    let rest: Vec<NodeId> = c.ids().into_iter().filter(|i| *i != old).collect();
    let new = c.wait_leader_among(&rest, soon(&opts)).await;
    let took = cut_at.elapsed();
    assert!(
        took <= opts.election_timeout() * 2,
        "new leader took {took:?}, more than two election timeouts"
    );
    assert_ne!(new, old);
    assert!(c.h(new).status().term > old_term);
    c.wait_for(
        opts.election_timeout() * 2 + opts.tick,
        "the old leader to step down",
        |c| (c.h(old).status().role != Role::Leader).then_some(()),
    )
    .await;
    // Reads on the cut-off node cannot be confirmed.
    assert!(c.h(old).read().await.is_err());

    let w = c.h(new).propose("new leader's write").await.unwrap();
    faults.heal();
    c.wait_all_applied(w.index, soon(&opts)).await;
    let r = orphan.await.unwrap();
    assert_eq!(
        r,
        Err(Error::Dropped),
        "the orphaned write was not reported dropped"
    );
    c.wait_all_applied(c.h(new).status().commit_index, soon(&opts))
        .await;
    for id in c.ids() {
        assert!(
            !c.sm(id).contains(b"orphan"),
            "node {id} applied the orphaned write"
        );
        assert!(c.sm(id).contains(b"new leader's write"));
    }
}

#[tokio::test(start_paused = true)]
async fn restarted_node_catches_up_from_its_store() {
    let opts = Opts::default();
    let (mut c, _) = cluster(3, opts.clone()).await;
    let leader = c.wait_leader(soon(&opts)).await;
    for i in 0..10 {
        c.write(format!("a{i}"), soon(&opts)).await;
    }
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let w = c.write("a-last", soon(&opts)).await;
    c.wait_applied(follower, w.index, soon(&opts)).await;
    c.stop(follower).await;
    let kept = c.store(follower).last_index();
    assert!(kept >= w.index);
    for i in 0..30 {
        c.write(format!("b{i}"), soon(&opts)).await;
    }
    c.restart(follower).await;
    // It starts from what it had persisted, not from nothing.
    let st = c.h(follower).status();
    assert!(
        st.last_log_index >= kept,
        "restarted with {} of {kept} entries",
        st.last_log_index
    );
    // No new writes: the leader must notice from heartbeat answers that
    // the appends it sent meanwhile were lost.
    let target = c.h(leader).status().commit_index;
    c.wait_applied(follower, target, soon(&opts)).await;
    assert_eq!(c.sm(follower).applied(), c.sm(leader).applied());
}

#[tokio::test(start_paused = true)]
async fn follower_behind_a_compacted_log_catches_up_by_snapshot() {
    let opts = Opts {
        snapshot_every: 20,
        compaction_lag: 5,
        ..Opts::default()
    };
    let (mut c, _) = cluster(3, opts.clone()).await;
    let leader = c.wait_leader(soon(&opts)).await;
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    c.write("early", soon(&opts)).await;
    c.stop(follower).await;
    let behind = c.store(follower).last_index();
    for i in 0..100 {
        c.write(format!("w{i}"), soon(&opts)).await;
    }
    let st = c.h(leader).status();
    assert!(
        st.snapshot_index > behind + 1,
        "the leader's log starts after {} yet the follower has up to {behind}",
        st.snapshot_index
    );
    assert!(c.store(leader).first_index() > behind + 1);
    c.restart(follower).await;
    c.wait_applied(follower, st.commit_index, soon(&opts)).await;
    assert!(
        c.sm(follower).restores() >= 1,
        "caught up without a snapshot"
    );
    assert!(c.store(follower).snapshot_index().is_some());
    assert_eq!(c.sm(follower).applied(), c.sm(leader).applied());
    // And it keeps up with new writes afterwards.
    let w = c.write("after", soon(&opts)).await;
    c.wait_applied(follower, w.index, soon(&opts)).await;
    assert!(c.sm(follower).contains(b"after"));
}

#[tokio::test(start_paused = true)]
async fn full_proposal_queue_answers_busy_at_once() {
    let opts = Opts {
        proposal_queue: 4,
        ..Opts::default()
    };
    let (c, _) = cluster(3, opts.clone()).await;
    let leader = c.wait_leader(soon(&opts)).await;
    let h = c.h(leader).clone();
    // A stalled disk holds the node inside one Ready; the queue fills.
    c.store(leader).pause_writes();
    // One proposal is taken (and its write stalls), four fill the queue.
    let mut waiting = Vec::new();
    for i in 0..5 {
        let h = h.clone();
        waiting.push(tokio::spawn(
            async move { h.propose(format!("q{i}")).await },
        ));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut busy = 0;
    for _ in 0..10 {
        let r = tokio::time::timeout(Duration::from_millis(1), h.propose("more")).await;
        match r {
            Ok(Err(Error::Busy)) => busy += 1,
            other => panic!("expected Busy at once, got {other:?}"),
        }
    }
    assert_eq!(busy, 10);
    c.store(leader).resume_writes();
    for t in waiting {
        t.await
            .unwrap()
            .expect("queued proposal commits once the disk recovers");
    }
    // And the queue takes work again.
    c.h(leader).propose("after").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn linearizable_read_sees_the_latest_write() {
    let opts = Opts::default();
    let (c, _) = cluster(3, opts.clone()).await;
    let leader = c.wait_leader(soon(&opts)).await;
    for id in c.ids() {
        let w = c.h(leader).propose(format!("v-{id}")).await.unwrap();
        let idx = c.h(id).read().await.unwrap();
        assert!(
            idx >= w.index,
            "read index {idx} below the write's {}",
            w.index
        );
        // Once the read resolves, the state machine holds the write.
        assert_eq!(
            c.sm(id).data().last().unwrap(),
            &Bytes::from(format!("v-{id}"))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn membership_add_learner_promote_remove() {
    let opts = Opts::default();
    let (mut c, _) = cluster(3, opts.clone()).await;
    let leader = c.wait_leader(soon(&opts)).await;
    let mut events = c.h(leader).subscribe();
    c.write("before", soon(&opts)).await;
    let addr = c.add_joining(n(4)).await;
    c.h(leader).add_learner(n(4), addr).await.unwrap();
    let w = c.write("with learner", soon(&opts)).await;
    c.wait_applied(n(4), w.index, soon(&opts)).await;
    assert_eq!(c.h(n(4)).status().role, Role::Learner);
    assert_eq!(c.sm(n(4)).applied(), c.sm(leader).applied());

    c.h(leader).promote(n(4)).await.unwrap();
    let st = c.h(leader).status();
    assert!(st.membership.is_voter(n(4)));
    assert_eq!(st.membership.voters.len(), 4);
    c.wait_for(soon(&opts), "node 4 to become a follower", |c| {
        (c.h(n(4)).status().role == Role::Follower).then_some(())
    })
    .await;

    let gone = c
        .ids()
        .into_iter()
        .find(|i| *i != leader && *i != n(4))
        .unwrap();
    c.h(leader).remove_node(gone).await.unwrap();
    let st = c.h(leader).status();
    assert!(!st.membership.contains(gone));
    assert_eq!(st.membership.voters.len(), 3);
    c.stop(gone).await;
    let w = c.write("after removal", soon(&opts)).await;
    c.wait_applied(n(4), w.index, soon(&opts)).await;

    let mut changes = 0;
    while let Ok(e) = events.try_recv() {
        if matches!(e, Event::MembershipChanged { .. }) {
            changes += 1;
        }
    }
    assert_eq!(changes, 3, "expected three membership events on the leader");
    // Invalid changes are refused without touching the log.
    assert!(matches!(
        c.h(leader).remove_node(n(42)).await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn leadership_transfer() {
    let opts = Opts::default();
    let (c, _) = cluster(3, opts.clone()).await;
    let old = c.wait_leader(soon(&opts)).await;
    let term = c.h(old).status().term;
    c.write("x", soon(&opts)).await;
    let target = c.ids().into_iter().find(|i| *i != old).unwrap();
    assert!(matches!(
        c.h(target).transfer_leadership(old).await,
        Err(Error::NotLeader { .. })
    ));
    c.h(old).transfer_leadership(target).await.unwrap();
    let now = c.wait_leader(soon(&opts)).await;
    assert_eq!(now, target);
    assert!(c.h(target).status().term > term);
    assert_ne!(c.h(old).status().role, Role::Leader);
    let w = c.h(target).propose("y").await.unwrap();
    c.wait_all_applied(w.index, soon(&opts)).await;
}

#[tokio::test(start_paused = true)]
async fn storage_failure_stops_the_node() {
    let opts = Opts::default();
    let (c, _) = cluster(3, opts.clone()).await;
    let leader = c.wait_leader(soon(&opts)).await;
    c.write("fine", soon(&opts)).await;
    c.store(leader).fail_writes(true);
    // The leader shipped the entry to its followers before its own write
    // failed, so the write may still commit: the caller is told the node
    // failed, never that the write succeeded.
    let r = c.h(leader).propose("doomed").await;
    assert!(matches!(r, Err(Error::Store(_))), "got {r:?}");
    c.wait_for(soon(&opts), "the node to stop", |c| {
        (!c.h(leader).is_running()).then_some(())
    })
    .await;
    assert!(matches!(
        c.h(leader).propose("again").await,
        Err(Error::Store(_))
    ));
    // The others carry on.
    let rest: Vec<NodeId> = c.ids().into_iter().filter(|i| *i != leader).collect();
    let new = c.wait_leader_among(&rest, soon(&opts)).await;
    c.h(new).propose("carry on").await.unwrap();
    // Nothing the failed node acknowledged is missing on the others.
    let survivors = c.sm(new).applied();
    for (i, d) in c.sm(leader).applied() {
        assert!(
            survivors.contains(&(i, d)),
            "entry {i} applied on the failed node is lost"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn restart_restores_the_state_machine_from_its_snapshot() {
    let opts = Opts {
        compaction_lag: 2,
        ..Opts::default()
    };
    let (mut c, _) = cluster(3, opts.clone()).await;
    let leader = c.wait_leader(soon(&opts)).await;
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    for i in 0..10 {
        c.write(format!("s{i}"), soon(&opts)).await;
    }
    let w = c.write("last before snapshot", soon(&opts)).await;
    c.wait_applied(follower, w.index, soon(&opts)).await;
    let at = c.h(follower).snapshot().await.unwrap();
    assert!(at >= w.index);
    assert_eq!(c.store(follower).snapshot_index(), Some(at));
    assert!(
        c.store(follower).first_index() > 1,
        "the log was not compacted"
    );
    let w = c.write("after snapshot", soon(&opts)).await;
    c.wait_applied(follower, w.index, soon(&opts)).await;
    let before = c.sm(follower).applied();

    c.restart(follower).await;
    c.wait_applied(follower, w.index, soon(&opts)).await;
    assert_eq!(
        c.sm(follower).restores(),
        1,
        "the stored snapshot was not restored"
    );
    assert_eq!(c.sm(follower).applied(), before);
}

#[tokio::test(start_paused = true)]
async fn oversized_proposals_are_refused() {
    let opts = Opts::default();
    let (c, _) = cluster(3, opts.clone()).await;
    let leader = c.wait_leader(soon(&opts)).await;
    let big = vec![0u8; (4 << 20) + 1];
    assert!(matches!(
        c.h(leader).propose(big).await,
        Err(Error::Invalid(_))
    ));
}

/// Under the paused clock a seed fixes the whole run: the same election,
/// at the same virtual time, with the same network faults.
#[tokio::test(start_paused = true)]
async fn a_seed_replays_the_same_run() {
    async fn run(seed: u64) -> (NodeId, Term, Duration, u64) {
        let opts = Opts {
            seed,
            ..Opts::default()
        };
        let (mut c, faults) = cluster(5, opts.clone()).await;
        faults.set_default_link(raft_transport_mem::LinkFaults {
            drop: 0.05,
            jitter: Duration::from_millis(3),
            ..Default::default()
        });
        let start = Instant::now();
        let leader = c.wait_leader(soon(&opts)).await;
        let took = start.elapsed();
        let term = c.h(leader).status().term;
        let w = c.write("x", soon(&opts)).await;
        c.shutdown().await;
        (leader, term, took, w.index)
    }
    let a = run(11).await;
    assert_eq!(a, run(11).await, "same seed, different run");
}
