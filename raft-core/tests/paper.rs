//! The Raft paper (Ongaro and Ousterhout, "In Search of an Understandable
//! Consensus Algorithm"), section 5 and its figures, as a checklist of
//! scenarios. Each test is named after the rule it checks and runs on the
//! deterministic [`Cluster`] harness, whose invariant checkers (election
//! safety, log matching, leader completeness, state machine safety,
//! durability) run after every step of every test as well.
//!
//! Nodes are numbered from 1. Logs are written as lists of terms: `[1, 1,
//! 4]` is a log of three entries of terms 1, 1 and 4; entry `i` of term `t`
//! carries the payload `"i@t"`, so that equal (index, term) pairs are equal
//! entries on every node, as log matching demands.

use bytes::Bytes;
use raft_core::sim::Cluster;
use raft_core::{Body, Entry, EntryKind, HardState, InitialState, Message, NodeId, Role, Term};

const ELECTION: usize = 10;

fn log(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let index = i as u64 + 1;
            Entry {
                term: *t,
                index,
                kind: EntryKind::Normal,
                data: Bytes::from(format!("{index}@{t}")),
            }
        })
        .collect()
}

fn state(term: Term, vote: u64, commit: u64, terms: &[Term]) -> InitialState {
    InitialState {
        hard_state: HardState {
            term,
            vote: NodeId(vote),
            commit,
        },
        snapshot: None,
        entries: log(terms),
    }
}

/// A cluster whose node `i + 1` starts from `states[i]`.
fn restored(states: Vec<InitialState>) -> Cluster {
    let mut b = Cluster::builder(states.len());
    for (i, s) in states.into_iter().enumerate() {
        b = b.state(i as u64 + 1, s);
    }
    b.build()
}

fn terms_of(c: &Cluster, id: u64) -> Vec<Term> {
    c.node(id).entries().map(|e| e.term).collect()
}

fn msg(from: u64, to: u64, term: Term, body: Body) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term,
        body,
    }
}

fn heartbeat(from: u64, to: u64, term: Term) -> Message {
    msg(
        from,
        to,
        term,
        Body::Heartbeat {
            leader_commit: 0,
            ctx: 0,
        },
    )
}

/// Delivers messages one at a time until `id` leads.
fn deliver_until_leader(c: &mut Cluster, id: u64) {
    while c.node(id).role() != Role::Leader {
        c.deliver_next()
            .unwrap_or_else(|| panic!("node {id} did not win"));
    }
}

fn vote_responses_in_flight(c: &Cluster, to: u64) -> Vec<(u64, bool)> {
    c.in_flight()
        .filter(|m| m.to == NodeId(to))
        .filter_map(|m| match m.body {
            Body::RequestVoteResponse {
                pre_vote: false,
                granted,
            } => Some((m.from.0, granted)),
            _ => None,
        })
        .collect()
}

// ----------------------------------------------------------------------
// 5.1 Terms
// ----------------------------------------------------------------------

#[test]
fn s5_1_a_follower_adopts_a_higher_term_from_any_message() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let t = c.node(2).term();
    c.step(heartbeat(3, 2, t + 4));
    assert_eq!(c.node(2).term(), t + 4);
    assert_eq!(c.node(2).role(), Role::Follower);
    assert_eq!(c.node(2).leader(), Some(NodeId(3)));
    assert_eq!(
        c.node(2).hard_state().vote,
        NodeId::NONE,
        "a new term, no vote yet"
    );

    // A vote request carries its term too, once no leader holds the
    // follower (leader stickiness, thesis 9.6, is tested with pre-vote).
    let mut c = Cluster::new(3);
    let t = c.node(2).term();
    let (li, lt) = (c.node(3).last_index(), c.node(3).last_term());
    c.step(msg(
        3,
        2,
        t + 2,
        Body::RequestVote {
            pre_vote: false,
            last_log_index: li,
            last_log_term: lt,
            transfer: false,
        },
    ));
    assert_eq!(c.node(2).term(), t + 2);
}

#[test]
fn s5_1_a_candidate_steps_down_on_a_higher_term() {
    let mut c = Cluster::new(3);
    c.isolate(2);
    c.campaign(2);
    assert_eq!(c.node(2).role(), Role::Candidate);
    let t = c.node(2).term();
    c.step(heartbeat(1, 2, t + 1));
    assert_eq!(c.node(2).role(), Role::Follower);
    assert_eq!(c.node(2).term(), t + 1);
}

#[test]
fn s5_1_a_leader_steps_down_on_a_higher_term() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let t = c.node(1).term();
    c.step(msg(
        2,
        1,
        t + 1,
        Body::AppendEntriesResponse {
            success: false,
            index: 0,
            hint_term: 0,
            hint_index: 0,
        },
    ));
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(1).term(), t + 1);
}

#[test]
fn s5_1_a_message_from_an_older_term_changes_nothing() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.elect(2);
    let t = c.node(2).term();
    // Node 1's old leadership term says nothing to the current leader.
    c.step(heartbeat(1, 2, t - 1));
    assert_eq!(c.node(2).role(), Role::Leader);
    assert_eq!(c.node(2).term(), t);
}

// ----------------------------------------------------------------------
// 5.2 Leader election
// ----------------------------------------------------------------------

#[test]
fn s5_2_a_node_grants_at_most_one_vote_per_term_and_keeps_it_across_a_restart() {
    let mut c = Cluster::new(3);
    c.isolate(1);
    c.isolate(2);
    c.campaign(1);
    c.campaign(2);
    let t = c.node(1).term();
    assert_eq!(c.node(2).term(), t, "both campaign in the same term");
    let (li, lt) = (c.node(1).last_index(), c.node(1).last_term());
    let request = |from: u64| {
        msg(
            from,
            3,
            t,
            Body::RequestVote {
                pre_vote: false,
                last_log_index: li,
                last_log_term: lt,
                transfer: false,
            },
        )
    };
    c.heal();
    c.take_in_flight();
    c.step(request(1));
    c.step(request(2));
    let answers = vote_responses_in_flight(&c, 1)
        .into_iter()
        .chain(vote_responses_in_flight(&c, 2))
        .collect::<Vec<_>>();
    assert_eq!(answers, vec![(3, true), (3, false)]);
    assert_eq!(c.node(3).hard_state().vote, NodeId(1));

    // The vote is durable: after a crash, node 3 still refuses node 2 and
    // still grants node 1 (a repeated request).
    c.take_in_flight();
    c.crash(3);
    c.restart(3);
    assert_eq!(c.node(3).hard_state().vote, NodeId(1));
    c.step(request(2));
    c.step(request(1));
    let answers: Vec<_> = vote_responses_in_flight(&c, 2)
        .into_iter()
        .chain(vote_responses_in_flight(&c, 1))
        .collect();
    assert_eq!(answers, vec![(3, false), (3, true)]);
}

#[test]
fn s5_2_a_candidate_wins_only_with_a_majority_counting_its_own_vote() {
    let mut c = Cluster::new(5);
    c.campaign(1);
    let requests = c.take_in_flight();
    assert_eq!(requests.len(), 4);
    let to = |n: u64| {
        requests
            .iter()
            .find(|m| m.to == NodeId(n))
            .cloned()
            .expect("a request to every peer")
    };
    // Node 2's vote: two of five, with its own.
    c.step(to(2));
    c.stabilize();
    assert_eq!(c.node(1).role(), Role::Candidate);
    // Node 3's vote: three of five.
    c.step(to(3));
    c.stabilize();
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.leaders().len(), 1);
}

#[test]
fn s5_2_a_candidate_that_hears_from_a_leader_of_its_term_steps_down() {
    let mut c = Cluster::new(3);
    c.isolate(2);
    c.campaign(2);
    let t = c.node(2).term();
    c.step(heartbeat(3, 2, t));
    assert_eq!(c.node(2).role(), Role::Follower);
    assert_eq!(c.node(2).leader(), Some(NodeId(3)));
    assert_eq!(c.node(2).term(), t);
}

#[test]
fn s5_2_election_timeouts_are_randomized_between_one_and_two_timeouts() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let mut c = Cluster::builder(3).seed(seed).build();
        c.isolate(1);
        let mut ticks = 0;
        while c.node(1).role() == Role::Follower {
            c.tick(1);
            ticks += 1;
        }
        assert!(
            (ELECTION..2 * ELECTION).contains(&ticks),
            "seed {seed}: timed out after {ticks} ticks"
        );
        seen.insert(ticks);
    }
    assert!(seen.len() >= 5, "timeouts are spread out: {seen:?}");
}

#[test]
fn s5_2_split_votes_are_resolved_by_randomized_timeouts() {
    let mut c = Cluster::builder(4)
        .configure(|cfg| cfg.pre_vote = false)
        .build();
    c.campaign(1);
    c.campaign(2);
    let t = c.node(1).term();
    let mut requests = c.take_in_flight();
    // Node 3 hears from node 1 first, node 4 from node 2 first: 2 votes
    // each, 3 needed.
    requests.sort_by_key(|m| {
        let first = matches!((m.from.0, m.to.0), (1, 3) | (2, 4));
        (!first, m.from.0, m.to.0)
    });
    for m in requests {
        c.send(m);
    }
    c.stabilize();
    assert!(c.leaders().is_empty(), "the vote split: {:?}", c.leaders());
    assert_eq!(c.node(1).term(), t);
    let mut ticks = 0;
    while c.leaders().is_empty() {
        c.tick_all();
        c.stabilize();
        ticks += 1;
        assert!(ticks < 10 * ELECTION, "nobody won after {ticks} ticks");
    }
    let leaders = c.leaders();
    assert_eq!(leaders.len(), 1);
    assert!(leaders[0].1 > t, "won in a later term");
}

#[test]
fn s5_2_heartbeats_prevent_elections() {
    let mut c = Cluster::new(5);
    c.elect(1);
    let t = c.node(1).term();
    c.tick_and_settle(20 * ELECTION);
    for id in 1..=5 {
        assert_eq!(c.node(id).term(), t, "node {id} campaigned");
    }
    assert_eq!(c.leaders(), vec![(NodeId(1), t)]);

    // Without heartbeats the followers do campaign.
    c.isolate(1);
    c.tick_and_settle(3 * ELECTION);
    assert!(c
        .leaders()
        .iter()
        .any(|(id, term)| *id != NodeId(1) && *term > t));
}

// ----------------------------------------------------------------------
// 5.3 Log replication
// ----------------------------------------------------------------------

#[test]
fn s5_3_append_entries_is_refused_when_the_previous_entry_does_not_match() {
    let mut c = restored(vec![
        state(2, 0, 1, &[1, 1]),
        state(2, 0, 1, &[1, 1, 2, 2]),
        state(2, 0, 1, &[1, 1]),
    ]);
    let append = |prev: u64, prev_term: Term, entries: Vec<Entry>| {
        msg(
            1,
            2,
            3,
            Body::AppendEntries {
                prev_log_index: prev,
                prev_log_term: prev_term,
                entries,
                leader_commit: 1,
            },
        )
    };
    // Node 2 holds nothing at 5, and term 2 (not 3) at 4.
    for (prev, prev_term) in [(5, 3), (4, 3)] {
        c.step(append(prev, prev_term, vec![]));
        let answers: Vec<Message> = c.take_in_flight();
        assert!(
            matches!(
                answers[..],
                [Message {
                    body: Body::AppendEntriesResponse { success: false, .. },
                    ..
                }]
            ),
            "{answers:?}"
        );
    }
    assert_eq!(
        terms_of(&c, 2),
        vec![1, 1, 2, 2],
        "a refused append changes nothing"
    );
}

#[test]
fn s5_3_a_conflicting_suffix_is_deleted_and_replaced() {
    let mut c = restored(vec![
        state(2, 0, 1, &[1, 1]),
        state(2, 0, 1, &[1, 1, 2, 2, 2]),
        state(2, 0, 1, &[1, 1]),
    ]);
    let new = log(&[1, 1, 3, 3]).split_off(2);
    c.step(msg(
        1,
        2,
        3,
        Body::AppendEntries {
            prev_log_index: 2,
            prev_log_term: 1,
            entries: new,
            leader_commit: 1,
        },
    ));
    assert_eq!(terms_of(&c, 2), vec![1, 1, 3, 3]);
    // The disk agrees: the stored suffix of term 2 is gone too.
    let stored: Vec<Term> = c.disk(2).entries.iter().map(|e| e.term).collect();
    assert_eq!(stored, vec![1, 1, 3, 3]);
    let acks: Vec<Message> = c.take_in_flight();
    assert!(
        matches!(
            acks[..],
            [Message {
                body: Body::AppendEntriesResponse {
                    success: true,
                    index: 4,
                    ..
                },
                ..
            }]
        ),
        "{acks:?}"
    );
}

#[test]
fn s5_3_a_committed_entry_reaches_every_state_machine_in_order() {
    let mut c = Cluster::new(5);
    c.elect(1);
    for i in 0..10 {
        c.propose(1, format!("v{i}")).unwrap();
    }
    c.stabilize();
    c.tick_and_settle(2);
    let want: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("v{i}"))).collect();
    for id in 1..=5 {
        assert_eq!(c.app(id).payloads, want, "node {id}");
        assert_eq!(c.node(id).commit_index(), c.node(1).last_index());
    }
}

/// Figure 7: a leader of term 8 and six followers whose logs differ from
/// its own in every way the paper shows. Each converges to the leader's.
#[test]
fn figure_7_every_follower_log_converges_to_the_leaders() {
    let leader = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [&[Term]; 6] = [
        &[1, 1, 1, 4, 4, 5, 5, 6, 6],          // (a) missing one entry
        &[1, 1, 1, 4],                         // (b) missing many
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],    // (c) an extra entry
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d) extra entries of term 7
        &[1, 1, 1, 4, 4, 4, 4],                // (e) missing and extra
        &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],    // (f) extra entries of terms 2, 3
    ];
    let mut states = vec![state(7, 0, 3, &leader)];
    states.extend(followers.iter().map(|f| state(7, 0, 3, f)));
    let mut c = restored(states);
    c.elect(1);
    assert_eq!(c.node(1).term(), 8);
    c.tick_and_settle(3);
    let mut want = leader.to_vec();
    want.push(8); // the new leader's no-op
    for id in 1..=7 {
        assert_eq!(terms_of(&c, id), want, "follower {}", id - 1);
        assert_eq!(c.node(id).commit_index(), want.len() as u64);
    }
    // Every entry is the leader's own, not just of the same term.
    let leader_log: Vec<Entry> = c.node(1).entries().cloned().collect();
    for id in 2..=7 {
        assert_eq!(
            c.node(id).entries().cloned().collect::<Vec<_>>(),
            leader_log
        );
    }
}

/// Fast backtracking (the paper's optimization at the end of 5.3): a
/// follower whose log diverges from the leader's by 200 entries spread over
/// five terms converges in a handful of rejected round trips, not 200.
#[test]
fn s5_3_a_follower_diverged_by_200_entries_over_5_terms_converges_in_o_terms_round_trips() {
    let mut leader: Vec<Term> = vec![1, 1];
    leader.extend(std::iter::repeat_n(7, 200));
    let mut diverged: Vec<Term> = vec![1, 1];
    for t in 2..=6 {
        diverged.extend(std::iter::repeat_n(t, 40));
    }
    let mut c = restored(vec![
        state(7, 0, 2, &leader),
        state(7, 0, 2, &diverged),
        state(7, 0, 2, &leader),
    ]);
    c.campaign(1);
    let mut rejections = 0;
    while let Some(m) = c.deliver_next() {
        if m.from == NodeId(2)
            && matches!(m.body, Body::AppendEntriesResponse { success: false, .. })
        {
            rejections += 1;
        }
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(terms_of(&c, 2), terms_of(&c, 1), "node 2 converged");
    assert!(
        (1..=5).contains(&rejections),
        "{rejections} rejected appends for 5 diverging terms"
    );
}

// ----------------------------------------------------------------------
// 5.4 Safety
// ----------------------------------------------------------------------

#[test]
fn s5_4_1_votes_go_only_to_candidates_whose_log_is_at_least_as_up_to_date() {
    // Node 1's last entry has an older term than node 2's; node 3's log is
    // node 1's, one entry shorter.
    let mut c = restored(vec![
        state(2, 0, 1, &[1, 1, 1]),
        state(2, 0, 1, &[1, 2]),
        state(2, 0, 1, &[1, 1]),
    ]);
    c.campaign(1);
    let t = c.node(1).term();
    c.stabilize();
    // Node 2 refused (its last term is higher), node 3 granted (same last
    // term, shorter log): elected with 2 of 3.
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), t);
    assert_eq!(c.node(2).hard_state().vote, NodeId::NONE);
    assert_eq!(c.node(3).hard_state().vote, NodeId(1));

    // Node 3 (shorter log, same last term) cannot win against nodes 1
    // and 2.
    let mut c = restored(vec![
        state(2, 0, 1, &[1, 1, 1]),
        state(2, 0, 1, &[1, 1, 1]),
        state(2, 0, 1, &[1, 1]),
    ]);
    c.campaign(3);
    c.stabilize();
    assert_ne!(c.node(3).role(), Role::Leader);
    assert_eq!(c.node(1).hard_state().vote, NodeId::NONE);
    assert_eq!(c.node(2).hard_state().vote, NodeId::NONE);
}

/// Figure 8: why a leader never commits an entry of an earlier term by
/// counting replicas. S1 leads term 4 holding index 2 from term 2, and
/// index 2 is on a majority (S1, S2, S3). If S1 counted it committed, S5
/// (index 2 from term 3) could still win term 5 and overwrite it.
#[test]
fn figure_8_an_old_term_entry_on_a_majority_is_not_committed_by_counting() {
    fn setup() -> Cluster {
        let mut c = restored(vec![
            state(3, 0, 1, &[1, 2]),
            state(3, 0, 1, &[1, 2]),
            state(3, 5, 1, &[1, 2]),
            state(3, 5, 1, &[1]),
            state(3, 5, 1, &[1, 3]),
        ]);
        // (c) S5 is down; S1 wins term 4.
        c.crash(5);
        c.campaign(1);
        deliver_until_leader(&mut c, 1);
        assert_eq!(c.node(1).term(), 4);
        c.take_in_flight();
        // S2 and S3 acknowledge index 2 (which they hold): stored on a
        // majority.
        for from in [2, 3] {
            c.step(msg(
                from,
                1,
                4,
                Body::AppendEntriesResponse {
                    success: true,
                    index: 2,
                    hint_term: 0,
                    hint_index: 0,
                },
            ));
        }
        assert_eq!(
            c.node(1).commit_index(),
            1,
            "index 2 (term 2) must not commit by counting replicas"
        );
        c
    }

    // (d) S1 crashes before its term-4 entry spreads: S5 wins term 5 with
    // S2, S3 and S4 and replaces index 2 everywhere. Legal, because index 2
    // was never committed (the checkers agree).
    let mut c = setup();
    c.take_in_flight();
    c.crash(1);
    c.restart(5);
    for _ in 0..3 {
        if c.node(5).role() == Role::Leader {
            break;
        }
        c.campaign(5);
        c.stabilize();
    }
    assert_eq!(c.node(5).role(), Role::Leader);
    c.tick_and_settle(2);
    for id in 2..=5 {
        assert_eq!(c.node(id).term_at(2), Some(3), "node {id}");
    }

    // (e) S1 replicates an entry of its own term to a majority first:
    // that commits it and index 2 with it, and S5 can no longer win.
    let mut c = setup();
    c.stabilize();
    assert_eq!(c.node(1).commit_index(), 3);
    c.crash(1);
    c.restart(5);
    for _ in 0..3 {
        c.campaign(5);
        c.stabilize();
    }
    assert_ne!(c.node(5).role(), Role::Leader);
    assert_eq!(c.node(2).term_at(2), Some(2));
}

#[test]
fn s5_4_2_a_new_leader_commits_earlier_terms_entries_through_its_own_no_op() {
    // Index 2 (term 2) sits on nodes 1 and 2 uncommitted.
    let mut c = restored(vec![
        state(2, 0, 1, &[1, 2]),
        state(2, 0, 1, &[1, 2]),
        state(2, 0, 1, &[1]),
    ]);
    c.elect(1);
    c.tick_and_settle(2);
    let last = c.node(1).last_index();
    assert_eq!(c.node(1).term_at(last), Some(3), "the no-op of term 3");
    for id in 1..=3 {
        assert_eq!(c.node(id).commit_index(), last, "node {id}");
        assert_eq!(c.node(id).term_at(2), Some(2));
    }
}

// ----------------------------------------------------------------------
// 5.6 and the thesis: timing, pre-vote, check-quorum
// ----------------------------------------------------------------------

#[test]
fn pre_vote_a_partitioned_node_does_not_bump_its_term() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.tick_and_settle(2);
    let t = c.node(1).term();
    c.isolate(3);
    let mut pre_campaigns = 0;
    for _ in 0..10 * ELECTION {
        c.tick_all();
        c.stabilize();
        assert_eq!(c.node(3).term(), t, "the isolated node bumped its term");
        assert_ne!(c.node(3).role(), Role::Candidate);
        if c.node(3).role() == Role::PreCandidate {
            pre_campaigns += 1;
        }
    }
    assert!(pre_campaigns > 0, "it did try (pre-vote)");
}

#[test]
fn pre_vote_a_rejoining_node_does_not_depose_a_healthy_leader() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.tick_and_settle(2);
    let t = c.node(1).term();
    c.isolate(3);
    c.tick_and_settle(10 * ELECTION);
    c.heal();
    c.tick_and_settle(5 * ELECTION);
    assert_eq!(c.leaders(), vec![(NodeId(1), t)]);
    assert_eq!(c.node(3).leader(), Some(NodeId(1)));
    assert_eq!(c.node(3).last_index(), c.node(1).last_index());

    // Without pre-vote, the returning node's inflated term deposes the
    // leader: this is what pre-vote is for.
    let mut c = Cluster::builder(3)
        .configure(|cfg| cfg.pre_vote = false)
        .build();
    c.elect(1);
    c.tick_and_settle(2);
    c.isolate(3);
    c.tick_and_settle(10 * ELECTION);
    assert!(c.node(3).term() > t + 3);
    c.heal();
    c.tick_and_settle(5 * ELECTION);
    assert!(c.node(1).term() > t, "the leader was deposed");
}

#[test]
fn check_quorum_a_leader_cut_from_the_majority_steps_down() {
    // Whenever the cut comes within the leader's heartbeat rhythm, it steps
    // down within one election timeout, and not before half of one.
    for offset in 0..ELECTION as u64 {
        let mut c = Cluster::builder(5).seed(offset).build();
        c.elect(1);
        for _ in 0..offset {
            c.tick_all();
            c.stabilize();
        }
        c.partition(&[&[1, 2], &[3, 4, 5]]);
        let mut ticks = 0;
        while c.node(1).role() == Role::Leader {
            c.tick_all();
            c.stabilize();
            ticks += 1;
            assert!(ticks <= ELECTION, "still leader after {ticks} ticks");
        }
        assert!(ticks > ELECTION / 2);
        // The majority side carries on with a leader of its own (three
        // voters must agree there, so split votes may take a few rounds).
        let mut waited = 0;
        while !c.leaders().iter().any(|(id, _)| [3, 4, 5].contains(&id.0)) {
            c.tick_all();
            c.stabilize();
            waited += 1;
            assert!(waited <= 20 * ELECTION, "no leader on the majority side");
        }
    }
}

#[test]
fn check_quorum_a_leader_that_hears_from_its_majority_stays() {
    let mut c = Cluster::new(5);
    c.elect(1);
    let t = c.node(1).term();
    // Two followers gone: still a majority.
    c.partition(&[&[1, 2, 3], &[4], &[5]]);
    c.tick_and_settle(10 * ELECTION);
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), t);
}

// ----------------------------------------------------------------------
// Persistence (Figure 2: "updated on stable storage before responding")
// ----------------------------------------------------------------------

#[test]
fn a_restarted_node_resumes_from_its_persisted_state() {
    let mut c = Cluster::new(3);
    c.elect(1);
    for i in 0..5 {
        c.propose(1, format!("a{i}")).unwrap();
    }
    c.stabilize();
    c.tick_and_settle(2);
    let before = c.node(2).hard_state();
    let last = c.node(2).last_index();
    c.crash(2);
    c.restart(2);
    let after = c.node(2).hard_state();
    assert_eq!((after.term, after.vote), (before.term, before.vote));
    assert_eq!(after.commit, c.disk(2).hard_state.commit);
    assert_eq!(c.node(2).last_index(), last);
    // It rejoins and applies everything again from its log.
    c.propose(1, "b").unwrap();
    c.stabilize();
    c.tick_and_settle(2);
    assert_eq!(c.app(2).payloads.len(), 6);
    assert_eq!(c.app(2).payloads, c.app(1).payloads);

    // All three crash and restart: the committed entries survive, a new
    // leader of a higher term emerges and accepts more.
    let t = c.node(1).term();
    for id in 1..=3 {
        c.crash(id);
    }
    for id in 1..=3 {
        c.restart(id);
    }
    c.tick_and_settle(4 * ELECTION);
    let (leader, term) = c.leaders()[0];
    assert!(term > t);
    c.propose(leader.0, "c").unwrap();
    c.stabilize();
    c.tick_and_settle(2);
    for id in 1..=3 {
        let p = &c.app(id).payloads;
        assert_eq!(p.len(), 7, "node {id}: {p:?}");
        assert_eq!(p.last().map(|b| &b[..]), Some(&b"c"[..]));
    }
}

// ----------------------------------------------------------------------
// The seed story (shared/seed/step-01.txt)
// ----------------------------------------------------------------------

/// Zones 1a, 1b and 1c; 1a leads term 5; every link is cut. The buggy
/// election code of the story made each zone a leader. Here nobody leads
/// and no term grows while the cut lasts; once healed, exactly one leader
/// of a term above 5 emerges and a proposal commits everywhere.
#[test]
fn the_seed_story_a_three_way_cut_elects_nobody_and_heals_to_one_leader() {
    let name = |id: u64| format!("1{}", (b'a' + id as u8 - 1) as char);
    let mut c = Cluster::new(3);
    // Successive elections drive the term up to 5, 1a winning the last.
    let mut next = 2;
    while c.node(1).term() < 4 {
        c.elect(next);
        next = if next == 2 { 3 } else { 2 };
    }
    c.elect(1);
    assert_eq!(c.node(1).term(), 5);
    c.propose(1, "before the cut").unwrap();
    c.stabilize();
    c.tick_and_settle(2);
    println!("before the cut: 1a leads term 5");

    c.partition(&[]);
    println!("every link cut");
    for tick in 0..20 * ELECTION {
        c.tick_all();
        c.stabilize();
        for id in 1..=3 {
            let r = c.node(id);
            assert_eq!(r.term(), 5, "{} bumped its term at tick {tick}", name(id));
            if id != 1 {
                assert_ne!(r.role(), Role::Leader, "{} became leader", name(id));
            }
        }
        if tick >= 2 * ELECTION {
            assert!(
                c.leaders().is_empty(),
                "a leader during the cut: {:?}",
                c.leaders()
            );
        }
    }
    for id in 1..=3 {
        println!(
            "  {}: {} at term {}",
            name(id),
            c.node(id).role(),
            c.node(id).term()
        );
    }

    c.heal();
    println!("healed");
    let mut ticks = 0;
    while c.leaders().is_empty() {
        c.tick_all();
        c.stabilize();
        ticks += 1;
        assert!(
            ticks < 5 * ELECTION,
            "no leader {ticks} ticks after healing"
        );
    }
    let leaders = c.leaders();
    assert_eq!(leaders.len(), 1);
    let (leader, term) = leaders[0];
    assert!(term > 5);
    println!(
        "  {} leads term {term}, {ticks} ticks after healing",
        name(leader.0)
    );
    c.propose(leader.0, "after the cut").unwrap();
    c.stabilize();
    c.tick_and_settle(2);
    for id in 1..=3 {
        let p = &c.app(id).payloads;
        assert_eq!(
            p.iter().map(|b| &b[..]).collect::<Vec<_>>(),
            vec![&b"before the cut"[..], &b"after the cut"[..]],
            "{}",
            name(id)
        );
        println!("  {} applied both proposals", name(id));
    }
}
