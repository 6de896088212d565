//! Membership changes on the simulated cluster: learners, single-voter
//! changes, joint configurations, replacing every node, removed nodes that
//! keep running, and a leader change in the middle of a joint
//! configuration. The invariant checkers (including the durability check,
//! counted against the configuration each entry was committed under) run
//! after every step; every test also ends by checking the configuration
//! every member holds.

use bytes::Bytes;
use raft_core::sim::{Checker, Cluster, Disk, FakeNode, Violation};
use raft_core::{
    ConfChange, ConfChangeStep, Entry, EntryKind, LogIndex, Membership, NodeId, ProposeError, Role,
};
use std::collections::BTreeSet;

fn ids(v: &[u64]) -> BTreeSet<NodeId> {
    v.iter().map(|i| NodeId(*i)).collect()
}

fn change(steps: Vec<ConfChangeStep>) -> ConfChange {
    ConfChange {
        steps,
        context: Bytes::new(),
    }
}

/// Ticks until a leader holds a settled configuration: not joint, every
/// entry of its log committed (so the last change is in force and a new
/// one may start), and every running member applied up to it. Returns the
/// leader.
fn settle(c: &mut Cluster) -> u64 {
    for _ in 0..500 {
        c.tick_and_settle(1);
        let Some(l) = c.leader() else { continue };
        let r = c.node(l.0);
        if r.membership().is_joint() || r.commit_index() < r.last_index() {
            continue;
        }
        let last = r.last_index();
        let caught_up = r
            .membership()
            .members()
            .iter()
            .filter(|m| c.is_up(m.0))
            .all(|m| c.app(m.0).applied >= last);
        if caught_up {
            return l.0;
        }
    }
    panic!("no settled configuration within 500 ticks");
}

/// Every member in `voters` and `learners` that is running holds exactly
/// that configuration (not joint), has applied the same history, and the
/// checker saw nothing wrong.
fn assert_final(c: &Cluster, voters: &[u64], learners: &[u64]) {
    assert_eq!(c.violation(), None);
    let leader = c.leader().expect("a leader").0;
    let want = c.app(leader).clone();
    for id in voters.iter().chain(learners) {
        let m = c.node(*id).membership();
        assert_eq!(m.voters, ids(voters), "voters on node {id}");
        assert_eq!(m.learners, ids(learners), "learners on node {id}");
        assert!(!m.is_joint(), "node {id} still joint: {m:?}");
        assert_eq!(c.app(*id), &want, "node {id} applied a different history");
    }
}

fn propose_ok(c: &mut Cluster, leader: u64, data: &str) -> LogIndex {
    c.propose(leader, data.to_string())
        .expect("the leader accepts a proposal")
        .1
}

fn payloads(c: &Cluster, id: u64) -> Vec<String> {
    c.app(id)
        .payloads
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

#[test]
fn a_learner_is_promoted_then_an_original_voter_removed() {
    let mut c = Cluster::new(3);
    c.elect(1);
    propose_ok(&mut c, 1, "a");
    c.stabilize();

    // A learner catches up but does not count towards the quorum.
    c.add_learner(1, 4).unwrap();
    assert!(matches!(
        c.add_voter(1, 5),
        Err(ProposeError::ConfChangeInProgress(_))
    ));
    let l = settle(&mut c);
    assert_eq!(l, 1);
    assert!(c.node(4).membership().is_learner(NodeId(4)));
    assert_eq!(c.node(4).role(), Role::Learner);
    assert_eq!(payloads(&c, 4), ["a"]);
    assert_final(&c, &[1, 2, 3], &[4]);

    // With 2 and 3 down, {1, 4} is no majority of {1, 2, 3} while 4 is a
    // learner: nothing commits.
    c.crash(2);
    c.crash(3);
    let i = propose_ok(&mut c, 1, "b");
    c.tick_and_settle(3);
    assert!(c.node(1).commit_index() < i, "a learner's ack counted");
    c.restart(2);
    c.restart(3);
    let l = settle(&mut c);

    // Promote: 3 -> 4 voters.
    c.add_voter(l, 4).unwrap();
    let l = settle(&mut c);
    assert_final(&c, &[1, 2, 3, 4], &[]);

    // Remove an original voter: 4 -> 3, a different set.
    c.remove_node(l, 2).unwrap();
    let l = settle(&mut c);
    propose_ok(&mut c, l, "c");
    settle(&mut c);
    assert_final(&c, &[1, 3, 4], &[]);
    assert_eq!(payloads(&c, 4), ["a", "b", "c"]);

    // {1, 3, 4} is the quorum now: with 2 gone for good and 3 down, 1 and 4
    // still commit.
    c.crash(2);
    c.crash(3);
    let l = c.leader().expect("leader").0;
    let i = propose_ok(&mut c, l, "d");
    c.tick_and_settle(2);
    assert!(
        c.node(l).commit_index() >= i,
        "{{1, 4}} is a majority of {{1, 3, 4}}"
    );
    assert_eq!(c.violation(), None);
}

#[test]
fn three_to_five_to_three_through_joint_configurations() {
    let mut c = Cluster::new(3);
    c.elect(1);
    propose_ok(&mut c, 1, "a");
    c.stabilize();
    c.add_node(4);
    c.add_node(5);

    // While 2 and 3 cannot answer, the joint configuration {1..5} / {1, 2,
    // 3} cannot commit, though 1, 4 and 5 are a majority of the incoming
    // half.
    for o in [2, 3] {
        for x in [1, 4, 5] {
            c.cut(o, x);
        }
    }
    let (_, joint_at) = c
        .propose_conf_change(
            1,
            change(vec![
                ConfChangeStep::AddVoter(NodeId(4)),
                ConfChangeStep::AddVoter(NodeId(5)),
            ]),
        )
        .unwrap();
    let m = c.node(1).membership().clone();
    assert!(m.is_joint());
    assert_eq!(m.voters, ids(&[1, 2, 3, 4, 5]));
    assert_eq!(m.outgoing, ids(&[1, 2, 3]));
    c.tick_and_settle(3);
    assert!(
        c.node(1).commit_index() < joint_at,
        "a joint configuration committed without the outgoing majority"
    );
    assert!(c.node(4).membership().is_joint());
    c.heal();

    // It commits once the outgoing half answers, and the leader leaves it.
    let l = settle(&mut c);
    assert!(c.node(l).commit_index() > joint_at);
    assert_final(&c, &[1, 2, 3, 4, 5], &[]);

    // 5 -> 3, two voters out at once: joint again, then {1, 4, 5}.
    c.propose_conf_change(
        l,
        change(vec![
            ConfChangeStep::Remove(NodeId(2)),
            ConfChangeStep::Remove(NodeId(3)),
        ]),
    )
    .unwrap();
    assert!(c.node(l).membership().is_joint());
    let l = settle(&mut c);
    propose_ok(&mut c, l, "b");
    settle(&mut c);
    assert_final(&c, &[1, 4, 5], &[]);
    assert_eq!(payloads(&c, 5), ["a", "b"]);
}

#[test]
fn every_original_node_is_replaced_over_one_run() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let mut sent = Vec::new();
    for (k, (old, new)) in [(1, 4), (2, 5), (3, 6)].into_iter().enumerate() {
        let l = settle(&mut c);
        let p = format!("before {k}");
        propose_ok(&mut c, l, &p);
        sent.push(p);
        c.add_voter(l, new).unwrap();
        let l = settle(&mut c);
        // Removing the leader itself too: it steps down once the change
        // commits, and the others elect a new one.
        c.remove_node(l, old).unwrap();
        let l = settle(&mut c);
        assert_ne!(l, old, "a removed node leads");
        // The removed node is stopped for good.
        c.crash(old);
    }
    let l = settle(&mut c);
    propose_ok(&mut c, l, "after");
    sent.push("after".into());
    settle(&mut c);
    assert_final(&c, &[4, 5, 6], &[]);
    for id in [4, 5, 6] {
        assert_eq!(payloads(&c, id), sent, "node {id}");
    }
}

/// Node 3 misses its own removal: it keeps believing it is a voter of
/// {1, 2, 3}, stops hearing from the leader, and times out again and again
/// for 30 election timeouts once the links are back. Leader 1 must keep its
/// office and its term throughout, and node 2 its term. Returns node 3's
/// final term and the term the cluster held.
fn removed_node_keeps_ticking(mut c: Cluster) -> (u64, u64) {
    c.elect(1);
    propose_ok(&mut c, 1, "a");
    c.stabilize();
    for x in [1, 2] {
        c.cut_one_way(x, 3);
    }
    c.remove_node(1, 3)
        .expect("node 1 leads a settled configuration");
    let l = settle(&mut c);
    assert_eq!(l, 1);
    assert!(c.node(3).membership().is_voter(NodeId(3)));
    c.heal();
    let term = c.node(1).term();
    let leaders = c.checker().leaders().len();
    for _ in 0..30 * 10 {
        c.tick_and_settle(1);
        assert_eq!(c.node(1).role(), Role::Leader);
        assert_eq!(c.node(1).term(), term);
        assert_eq!(c.node(2).term(), term);
    }
    assert_eq!(c.checker().leaders().len(), leaders, "a leader changed");
    propose_ok(&mut c, 1, "b");
    settle(&mut c);
    assert_final(&c, &[1, 2], &[]);
    assert_eq!(payloads(&c, 2), ["a", "b"]);
    (c.node(3).term(), term)
}

#[test]
fn a_removed_node_that_keeps_ticking_cannot_disrupt_the_cluster() {
    // With pre-vote, node 3 never even raises its own term.
    let (removed, cluster) = removed_node_keeps_ticking(Cluster::new(3));
    assert!(
        removed <= cluster,
        "removed node 3 raised its term to {removed} (cluster at {cluster})"
    );
}

#[test]
fn a_new_leader_takes_over_a_pending_joint_configuration_and_leaves_it() {
    let mut c = Cluster::new(3);
    c.elect(1);
    propose_ok(&mut c, 1, "a");
    c.stabilize();
    // 4 and 5 join as learners first, so that they hold the log.
    for id in [4, 5] {
        c.add_learner(1, id).unwrap();
        settle(&mut c);
    }
    // The leader's acknowledgements are lost: every follower appends the
    // joint configuration, but the leader never learns it is committed.
    for x in [2, 3, 4, 5] {
        c.cut_one_way(x, 1);
    }
    let (_, joint_at) = c
        .propose_conf_change(
            1,
            change(vec![
                ConfChangeStep::AddVoter(NodeId(4)),
                ConfChangeStep::AddVoter(NodeId(5)),
            ]),
        )
        .unwrap();
    c.stabilize();
    for id in 2..=5 {
        let r = c.node(id);
        assert!(r.membership().is_joint(), "node {id} lacks the joint entry");
        assert!(r.commit_index() < joint_at);
    }
    c.crash(1);
    c.heal();

    // A new leader needs both halves, commits the joint configuration with
    // its first entry, and leaves it.
    let l = settle(&mut c);
    assert_ne!(l, 1);
    assert!(c.node(l).commit_index() > joint_at);
    c.restart(1);
    let l = settle(&mut c);
    propose_ok(&mut c, l, "b");
    settle(&mut c);
    assert_final(&c, &[1, 2, 3, 4, 5], &[]);
    assert_eq!(payloads(&c, 4), ["a", "b"]);
}

fn disk_of(n: u64) -> Disk {
    Disk {
        entries: (1..=n)
            .map(|i| Entry {
                term: 1,
                index: i,
                kind: EntryKind::Normal,
                data: Bytes::from(format!("{i}@1")),
            })
            .collect(),
        ..Disk::default()
    }
}

/// A node holding `conf` counts entry 2 committed, then durability is
/// checked with entry 2 on the disks of `holders` only. (The node is a
/// follower: a hand-made leader would also need a hand-made election.)
fn durable_with(conf: Membership, holders: &[u64]) -> Result<(), Violation> {
    let mut c = Checker::new([NodeId(1), NodeId(2), NodeId(3)]);
    let node = FakeNode::new(1, Role::Follower, 1, &[1, 1])
        .committed(2)
        .with_membership(conf);
    c.observe(&node)
        .expect("a node committing what it holds is a correct trace");
    let (full, short) = (disk_of(2), disk_of(1));
    c.check_durable(|id| {
        Some(if holders.contains(&id.0) {
            &full
        } else {
            &short
        })
    })
}

#[test]
fn durability_counts_against_the_committing_configuration() {
    let five = Membership::new(ids(&[1, 2, 3, 4, 5]));
    // Two of the initial three, but not a majority of the five in force.
    let v = durable_with(five.clone(), &[1, 2]).unwrap_err();
    assert!(matches!(v, Violation::Durability { node: None, .. }), "{v}");
    assert!(durable_with(five, &[1, 4, 5]).is_ok());

    // Joint: a majority of each half is needed.
    let joint = Membership {
        voters: ids(&[4, 5, 6]),
        outgoing: ids(&[1, 2, 3]),
        learners: BTreeSet::new(),
    };
    let v = durable_with(joint.clone(), &[4, 5, 6]).unwrap_err();
    assert!(v.to_string().contains("outgoing"), "{v}");
    assert!(durable_with(joint.clone(), &[1, 2, 3]).is_err());
    assert!(durable_with(joint, &[1, 2, 4, 5]).is_ok());

    // Learners do not count.
    let with_learners = Membership {
        voters: ids(&[1, 2, 3]),
        outgoing: BTreeSet::new(),
        learners: ids(&[4, 5]),
    };
    assert!(durable_with(with_learners.clone(), &[1, 4, 5]).is_err());
    assert!(durable_with(with_learners, &[1, 2]).is_ok());
}

/// Without pre-vote and check-quorum (so no leader stickiness), a removed
/// node that missed its removal times out again and again with ever higher
/// terms. The members ignore its requests (it is no voter of theirs, and
/// its log is behind), so the leader keeps its office and its term.
#[test]
fn a_removed_node_cannot_depose_the_leader_even_without_check_quorum() {
    let c = Cluster::builder(3)
        .configure(|cfg| {
            cfg.pre_vote = false;
            cfg.check_quorum = false;
        })
        .build();
    let (removed, cluster) = removed_node_keeps_ticking(c);
    assert!(
        removed > cluster + 5,
        "node 3 kept campaigning (term {removed})"
    );
}

/// The leader keeps replicating to a node it removes until the removal
/// commits, so the node receives the entry that removes it, stops being a
/// voter in its own eyes, and never campaigns.
#[test]
fn a_removed_node_learns_its_removal_and_stays_quiet() {
    let mut c = Cluster::new(3);
    c.elect(1);
    propose_ok(&mut c, 1, "a");
    c.stabilize();
    let (_, at) = c.remove_node(1, 3).unwrap();
    settle(&mut c);
    let r = c.node(3);
    assert!(
        r.last_index() >= at,
        "node 3 never got its removal (entry {at})"
    );
    assert!(!r.membership().is_voter(NodeId(3)));
    assert_eq!(r.membership().voters, ids(&[1, 2]));
    // Once the removal committed, the leader stopped replicating to it.
    assert!(
        !c.node(1).status().progress.contains_key(&NodeId(3)),
        "the leader still tracks node 3"
    );
    let term = r.term();
    for _ in 0..30 * 10 {
        c.tick_and_settle(1);
    }
    assert_eq!(c.node(3).term(), term, "the removed node campaigned");
    assert_ne!(c.node(3).role(), Role::Candidate);
    assert_final(&c, &[1, 2], &[]);
}
