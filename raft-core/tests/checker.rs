//! Each invariant checker, fed a bad trace, must say which invariant broke;
//! fed a good trace, it must stay quiet.

use bytes::Bytes;
use raft_core::sim::{Checker, Disk, FakeNode, Violation};
use raft_core::{Body, Entry, EntryKind, HardState, Message, NodeId, Role};

fn voters() -> Vec<NodeId> {
    vec![NodeId(1), NodeId(2), NodeId(3)]
}

fn entry(index: u64, term: u64, data: &str) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: Bytes::from(data.to_string()),
    }
}

#[test]
fn a_correct_trace_passes() {
    let mut c = Checker::new(voters());
    // Node 1 wins term 1, replicates two entries, commits them.
    c.observe(&FakeNode::new(1, Role::Leader, 1, &[1])).unwrap();
    c.observe(&FakeNode::new(1, Role::Leader, 1, &[1, 1, 1]))
        .unwrap();
    c.observe(&FakeNode::new(2, Role::Follower, 1, &[1, 1, 1]).committed(3))
        .unwrap();
    c.observe(&FakeNode::new(1, Role::Leader, 1, &[1, 1, 1]).committed(3))
        .unwrap();
    // Node 2 wins term 2 holding everything committed.
    c.observe(&FakeNode::new(2, Role::Leader, 2, &[1, 1, 1, 2]).committed(3))
        .unwrap();
    for n in [1, 2, 3] {
        for i in 1..=3 {
            c.on_apply(NodeId(n), &entry(i, 1, &format!("{i}@1")))
                .unwrap();
        }
    }
    let disk = |last: u64| Disk {
        hard_state: HardState {
            term: 2,
            vote: NodeId(2),
            commit: 3,
        },
        snapshot: None,
        entries: (1..=last).map(|i| entry(i, 1, &format!("{i}@1"))).collect(),
    };
    let (d1, d2, d3) = (disk(3), disk(3), disk(0));
    c.check_durable(|id| match id.0 {
        1 => Some(&d1),
        2 => Some(&d2),
        _ => Some(&d3),
    })
    .unwrap();
}

/// The story in shared/seed/step-01.txt: the cluster of zones 1a, 1b and
/// 1c is cut apart and two zones each declare themselves leader of the
/// same term.
#[test]
fn election_safety_catches_the_seed_story_two_leaders_in_one_term() {
    let mut c = Checker::new(voters());
    let zone_1a = FakeNode::new(1, Role::Leader, 5, &[1, 2, 3, 4, 5]);
    let zone_1b = FakeNode::new(2, Role::Leader, 5, &[1, 2, 3, 4]);
    c.observe(&zone_1a).unwrap();
    let v = c.observe(&zone_1b).unwrap_err();
    assert_eq!(
        v,
        Violation::ElectionSafety {
            term: 5,
            first: NodeId(1),
            second: NodeId(2)
        }
    );
    assert!(v.to_string().contains("both leader of term 5"), "{v}");
}

#[test]
fn election_safety_remembers_the_whole_run() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Leader, 3, &[])).unwrap();
    // Node 1 steps down long before node 2 claims the same term.
    c.observe(&FakeNode::new(1, Role::Follower, 4, &[]))
        .unwrap();
    let v = c
        .observe(&FakeNode::new(2, Role::Leader, 3, &[]))
        .unwrap_err();
    assert!(
        matches!(v, Violation::ElectionSafety { term: 3, .. }),
        "{v}"
    );
}

#[test]
fn leader_append_only_catches_a_leader_dropping_its_entries() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Leader, 3, &[1, 1, 3]))
        .unwrap();
    let v = c
        .observe(&FakeNode::new(1, Role::Leader, 3, &[1, 1]))
        .unwrap_err();
    assert_eq!(
        v,
        Violation::LeaderAppendOnly {
            node: NodeId(1),
            term: 3,
            index: 3
        }
    );
}

#[test]
fn leader_append_only_catches_a_leader_overwriting_an_entry() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Leader, 3, &[1, 3, 3]))
        .unwrap();
    let mut rewritten = FakeNode::new(1, Role::Leader, 3, &[1, 3, 3]);
    rewritten.entries[1].data = Bytes::from_static(b"something else");
    let v = c.observe(&rewritten).unwrap_err();
    assert!(
        matches!(v, Violation::LeaderAppendOnly { index: 2, .. }),
        "{v}"
    );
    // The same change by a follower is allowed (it is how conflicts are
    // repaired); only log matching judges it.
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(2, Role::Follower, 3, &[1, 2, 2]))
        .unwrap();
    c.observe(&FakeNode::new(2, Role::Follower, 3, &[1, 3]))
        .unwrap();
}

#[test]
fn log_matching_catches_same_index_and_term_with_different_histories() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Follower, 2, &[1, 1, 2]))
        .unwrap();
    // (3, term 2) again, preceded by term 2 instead of term 1.
    let v = c
        .observe(&FakeNode::new(2, Role::Follower, 2, &[1, 2, 2]))
        .unwrap_err();
    match v {
        Violation::LogMatching {
            index: 3,
            term: 2,
            first,
            second,
            ..
        } => {
            assert_eq!((first, second), (NodeId(1), NodeId(2)));
        }
        other => panic!("expected a log matching violation, got {other}"),
    }
}

#[test]
fn log_matching_catches_same_index_and_term_with_different_contents() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Follower, 1, &[1, 1]))
        .unwrap();
    let mut other = FakeNode::new(2, Role::Follower, 1, &[1, 1]);
    other.entries[1].data = Bytes::from_static(b"not the same");
    let v = c.observe(&other).unwrap_err();
    assert!(matches!(v, Violation::LogMatching { index: 2, .. }), "{v}");
}

#[test]
fn log_matching_holds_across_a_snapshot_point() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Follower, 2, &[1, 1, 2, 2]))
        .unwrap();
    // Node 2 compacted up to 2 (term 1): its entry 3 must still follow a
    // term-1 entry.
    let mut n2 = FakeNode::new(2, Role::Follower, 2, &[]);
    n2.snapshot_index = 2;
    n2.snapshot_term = 2;
    n2.entries = vec![entry(3, 2, "3@2")];
    let v = c.observe(&n2).unwrap_err();
    assert!(matches!(v, Violation::LogMatching { index: 3, .. }), "{v}");
}

#[test]
fn leader_completeness_catches_a_leader_missing_a_committed_entry() {
    let mut c = Checker::new(voters());
    // Entry 2 is committed in term 1 (node 1 says so).
    c.observe(&FakeNode::new(1, Role::Leader, 1, &[1, 1]).committed(2))
        .unwrap();
    // Node 3 leads term 2 without it.
    let v = c
        .observe(&FakeNode::new(3, Role::Leader, 2, &[1]))
        .unwrap_err();
    assert_eq!(
        v,
        Violation::LeaderCompleteness {
            leader: NodeId(3),
            term: 2,
            index: 2,
            committed_in: 1
        }
    );
}

#[test]
fn leader_completeness_catches_a_leader_with_another_entry_at_a_committed_index() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Follower, 1, &[1, 1]).committed(2))
        .unwrap();
    // Node 3 leads term 2 with its own entry at index 2: a log that log
    // matching accepts (the pair (2, term 2) is new), but that lacks the
    // entry committed there in term 1.
    let mut leader = FakeNode::new(3, Role::Leader, 2, &[1]);
    leader.entries.push(entry(2, 2, "newer"));
    let v = c.observe(&leader).unwrap_err();
    assert!(
        matches!(v, Violation::LeaderCompleteness { index: 2, .. }),
        "{v}"
    );
}

#[test]
fn state_machine_safety_catches_two_nodes_applying_different_entries() {
    let mut c = Checker::new(voters());
    c.on_apply(NodeId(1), &entry(1, 1, "a")).unwrap();
    let v = c.on_apply(NodeId(2), &entry(1, 2, "b")).unwrap_err();
    assert!(
        matches!(v, Violation::StateMachineSafety { index: 1, .. }),
        "{v}"
    );
}

#[test]
fn state_machine_safety_catches_an_out_of_order_apply() {
    let mut c = Checker::new(voters());
    c.on_apply(NodeId(1), &entry(1, 1, "a")).unwrap();
    let v = c.on_apply(NodeId(1), &entry(3, 1, "c")).unwrap_err();
    assert!(
        matches!(v, Violation::StateMachineSafety { index: 3, .. }),
        "{v}"
    );
}

#[test]
fn state_machine_safety_catches_two_different_commits_at_one_index() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Follower, 1, &[1]).committed(1))
        .unwrap();
    let mut other = FakeNode::new(2, Role::Follower, 2, &[2]).committed(1);
    other.entries[0].data = Bytes::from_static(b"x");
    let v = c.observe(&other).unwrap_err();
    assert!(
        matches!(v, Violation::StateMachineSafety { index: 1, .. }),
        "{v}"
    );
}

#[test]
fn state_machine_safety_catches_a_snapshot_with_another_history() {
    let mut c = Checker::new(voters());
    c.on_apply(NodeId(1), &entry(1, 1, "a")).unwrap();
    c.on_apply(NodeId(1), &entry(2, 1, "b")).unwrap();
    let v = c.on_restore(NodeId(2), 2, 12345).unwrap_err();
    assert!(
        matches!(v, Violation::StateMachineSafety { index: 2, .. }),
        "{v}"
    );
}

#[test]
fn a_snapshot_install_may_not_move_applied_back() {
    let mut c = Checker::new(voters());
    let digest_at = |c: &mut Checker, node: u64, upto: u64| {
        for i in 1..=upto {
            c.on_apply(NodeId(node), &entry(i, 1, &format!("{i}")))
                .unwrap();
        }
    };
    digest_at(&mut c, 1, 3);
    // Node 2 applies 1..=3 itself, then is handed a snapshot at 2 that
    // matches the history: still a step back.
    digest_at(&mut c, 2, 3);
    let d2 = raft_core::sim::digest_step(
        raft_core::sim::digest_step(0, &entry(1, 1, "1")),
        &entry(2, 1, "2"),
    );
    let v = c.on_restore(NodeId(2), 2, d2).unwrap_err();
    assert!(
        matches!(
            v,
            Violation::Regressed {
                node: NodeId(2),
                ..
            }
        ),
        "{v}"
    );
    // The same snapshot for node 3, which applied nothing yet, is fine, and
    // it applies on from 3 without a gap.
    c.on_restore(NodeId(3), 2, d2).unwrap();
    c.on_apply(NodeId(3), &entry(3, 1, "3")).unwrap();
}

#[test]
fn durability_catches_a_committed_entry_on_a_minority_of_disks() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Leader, 1, &[1, 1]).committed(2))
        .unwrap();
    let full = Disk {
        entries: vec![entry(1, 1, "1@1"), entry(2, 1, "2@1")],
        ..Disk::default()
    };
    let short = Disk {
        entries: vec![entry(1, 1, "1@1")],
        ..Disk::default()
    };
    // Entry 2 only on node 1's disk: a crash of node 1 loses it.
    let v = c
        .check_durable(|id| Some(if id.0 == 1 { &full } else { &short }))
        .unwrap_err();
    assert!(matches!(v, Violation::Durability { node: None, .. }), "{v}");
    assert!(v.to_string().contains("committed entry 2"), "{v}");
}

#[test]
fn durability_catches_an_acknowledgement_sent_before_the_write() {
    let mut c = Checker::new(voters());
    let node = FakeNode::new(2, Role::Follower, 1, &[1, 1, 1]);
    let ack = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: 1,
        body: Body::AppendEntriesResponse {
            success: true,
            index: 3,
            hint_term: 0,
            hint_index: 0,
        },
    };
    let disk = Disk {
        hard_state: HardState {
            term: 1,
            vote: NodeId(1),
            commit: 0,
        },
        snapshot: None,
        entries: vec![entry(1, 1, "1@1")],
    };
    let v = c.on_persisted_send(&node, &ack, &disk).unwrap_err();
    assert!(
        matches!(
            v,
            Violation::Durability {
                node: Some(NodeId(2)),
                ..
            }
        ),
        "{v}"
    );
}

#[test]
fn durability_catches_a_vote_lost_across_a_restart() {
    let mut c = Checker::new(voters());
    let node = FakeNode::new(3, Role::Follower, 4, &[]);
    let grant = Message {
        from: NodeId(3),
        to: NodeId(1),
        term: 4,
        body: Body::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        },
    };
    let mut disk = Disk {
        hard_state: HardState {
            term: 4,
            vote: NodeId(1),
            commit: 0,
        },
        ..Disk::default()
    };
    c.on_persisted_send(&node, &grant, &disk).unwrap();
    // After the crash the disk says it voted for someone else in term 4.
    disk.hard_state.vote = NodeId(2);
    let v = c.on_restart(NodeId(3), &disk).unwrap_err();
    assert!(
        matches!(
            v,
            Violation::Durability {
                node: Some(NodeId(3)),
                ..
            }
        ),
        "{v}"
    );
    // A grant sent while the disk is still at an older term is caught at
    // once.
    let mut c = Checker::new(voters());
    disk.hard_state = HardState {
        term: 3,
        vote: NodeId::NONE,
        commit: 0,
    };
    let v = c.on_persisted_send(&node, &grant, &disk).unwrap_err();
    assert!(v.to_string().contains("before term 4 was durable"), "{v}");
}

#[test]
fn a_read_beyond_the_commit_index_is_caught() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Leader, 1, &[1, 1, 1]).committed(2))
        .unwrap();
    c.on_read_request(7);
    c.on_read_state(NodeId(1), 7, 2).unwrap();
    c.on_read_request(8);
    let v = c.on_read_state(NodeId(1), 8, 3).unwrap_err();
    assert_eq!(
        v,
        Violation::ReadUncommitted {
            node: NodeId(1),
            ctx: 8,
            index: 3,
            committed: 2
        }
    );
}

#[test]
fn a_read_below_a_finished_commit_is_stale() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Leader, 1, &[1, 1, 1]).committed(3))
        .unwrap();
    c.on_read_request(7);
    let v = c.on_read_state(NodeId(1), 7, 2).unwrap_err();
    assert_eq!(
        v,
        Violation::StaleRead {
            node: NodeId(1),
            ctx: 7,
            index: 2,
            committed: 3
        }
    );
    c.on_read_request(8);
    c.on_read_state(NodeId(2), 8, 3).unwrap();
}

#[test]
fn terms_and_commit_indexes_never_go_back() {
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Follower, 5, &[1]).committed(1))
        .unwrap();
    let v = c
        .observe(&FakeNode::new(1, Role::Follower, 4, &[1]).committed(1))
        .unwrap_err();
    assert!(matches!(v, Violation::Regressed { .. }), "{v}");
    let mut c = Checker::new(voters());
    c.observe(&FakeNode::new(1, Role::Follower, 5, &[1]).committed(1))
        .unwrap();
    let v = c
        .observe(&FakeNode::new(1, Role::Follower, 5, &[1]))
        .unwrap_err();
    assert!(matches!(v, Violation::Regressed { .. }), "{v}");
}

#[test]
fn a_proposal_committed_with_another_payload_is_misreported() {
    let mut c = Checker::new(voters());
    c.on_proposal(1, 2, Bytes::from_static(b"mine")).unwrap();
    let v = c
        .observe(&FakeNode::new(1, Role::Leader, 1, &[1, 1]).committed(2))
        .unwrap_err();
    assert_eq!(v, Violation::ProposalMisreported { index: 2, term: 1 });
}

/// Feeds the checker the durable messages of an election in `term`:
/// `candidate` asks for votes holding `conf`, and each of `voters` grants.
fn campaign(
    c: &mut Checker,
    term: u64,
    candidate: u64,
    conf: &raft_core::Membership,
    voters: &[u64],
) -> Result<(), Violation> {
    let disk = |vote: u64| Disk {
        hard_state: HardState {
            term,
            vote: NodeId(vote),
            commit: 0,
        },
        ..Disk::default()
    };
    let me = FakeNode::new(candidate, Role::Candidate, term, &[]).with_membership(conf.clone());
    for to in conf.members() {
        if to != NodeId(candidate) {
            let ask = Message {
                from: NodeId(candidate),
                to,
                term,
                body: Body::RequestVote {
                    pre_vote: false,
                    last_log_index: 0,
                    last_log_term: 0,
                    transfer: false,
                },
            };
            c.on_persisted_send(&me, &ask, &disk(candidate))?;
            c.on_vote_sent(&me, &ask)?;
        }
    }
    for v in voters {
        let node = FakeNode::new(*v, Role::Follower, term, &[]);
        let grant = Message {
            from: NodeId(*v),
            to: NodeId(candidate),
            term,
            body: Body::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            },
        };
        c.on_persisted_send(&node, &grant, &disk(candidate))?;
        c.on_vote_sent(&node, &grant)?;
    }
    Ok(())
}

fn conf(voters: &[u64]) -> raft_core::Membership {
    raft_core::Membership::new(voters.iter().map(|v| NodeId(*v)))
}

#[test]
fn a_leader_elected_without_a_quorum_of_votes_is_caught() {
    // The seed story: a zone of two nodes of five elects a leader.
    let five = conf(&[1, 2, 3, 4, 5]);
    let mut c = Checker::new((1..=5).map(NodeId));
    campaign(&mut c, 2, 1, &five, &[2]).unwrap();
    let leader = FakeNode::new(1, Role::Leader, 2, &[]).with_membership(five.clone());
    let v = c.observe(&leader).unwrap_err();
    assert_eq!(
        v,
        Violation::LeaderWithoutQuorum {
            node: NodeId(1),
            term: 2,
            votes: [NodeId(1), NodeId(2)].into_iter().collect(),
        }
    );
    // With a third vote it is a correct election.
    let mut c = Checker::new((1..=5).map(NodeId));
    campaign(&mut c, 2, 1, &five, &[2, 3]).unwrap();
    c.observe(&leader).unwrap();
    // A leader that never asked for votes is fine only as the sole voter.
    let mut c = Checker::new([NodeId(1)]);
    c.observe(&FakeNode::new(1, Role::Leader, 1, &[]).with_membership(conf(&[1])))
        .unwrap();
    let v = c
        .observe(&FakeNode::new(2, Role::Leader, 3, &[]).with_membership(conf(&[1, 2, 3])))
        .unwrap_err();
    assert!(matches!(v, Violation::LeaderWithoutQuorum { .. }), "{v}");
}

#[test]
fn two_quorums_deciding_one_term_are_caught_across_configurations() {
    // Node 1 holds {1, 2, 3}; node 4 holds {3, 4, 5} (a change applied
    // without a joint configuration). Each wins a majority of its own
    // configuration in term 7, with disjoint voters.
    let mut c = Checker::new((1..=3).map(NodeId));
    campaign(&mut c, 7, 1, &conf(&[1, 2, 3]), &[2]).unwrap();
    let v = campaign(&mut c, 7, 4, &conf(&[3, 4, 5]), &[5]).unwrap_err();
    assert_eq!(
        v,
        Violation::TwoQuorums {
            term: 7,
            first: NodeId(1),
            second: NodeId(4),
        }
    );
    // Through a joint configuration the second needs a majority of
    // {1, 2, 3} as well, which node 1's voters do not give it.
    let mut c = Checker::new((1..=3).map(NodeId));
    campaign(&mut c, 7, 1, &conf(&[1, 2, 3]), &[2]).unwrap();
    let joint = raft_core::Membership {
        voters: [3, 4, 5].into_iter().map(NodeId).collect(),
        outgoing: [1, 2, 3].into_iter().map(NodeId).collect(),
        learners: Default::default(),
    };
    campaign(&mut c, 7, 4, &joint, &[5, 3]).unwrap();
    // A different term is a different decision.
    campaign(&mut c, 8, 4, &conf(&[3, 4, 5]), &[5]).unwrap();
}
