//! `cargo xtask demo split-brain`: the seed story replayed on a real
//! three-node cluster (zones 1a, 1b, 1c), narrated step by step, with every
//! claim checked against what the nodes report.
//!
//! The story: the network between three zones was cut and each zone made
//! itself leader without waiting for votes. Here every link is cut and the
//! demo watches for several election timeouts that no node claims
//! leadership; then it heals the links and checks that exactly one leader
//! emerges at a higher term and that a write commits and reads back
//! everywhere. The exit code is 0 only if every check held.
//!
//! It starts its own cluster in a temporary directory and always stops it
//! (a guard kills the processes even on an error or a panic). It must
//! never decide who leads: it only compares what the nodes say with what
//! Raft promises.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::json;
use tokio::sync::mpsc;

use crate::cluster::{self, Launch};
use crate::http::{self, NodeStatus};
use crate::live::{self, AbortAll};
use crate::procs::Children;
use crate::state::{ClusterState, Transport};
use crate::watch::{self, Event, WatchMsg};
use crate::{Signals, UsageError};

/// Milliseconds per tick, and the election timeout in ticks, given to the
/// nodes so the narration can speak in election timeouts.
const TICK_MS: u64 = 10;
const ELECTION_TICKS: u64 = 15;
const HEARTBEAT_TICKS: u64 = 3;
/// The longest randomised election timeout: each node waits between one
/// and two base timeouts.
const MAX_ELECTION: Duration = Duration::from_millis(2 * ELECTION_TICKS * TICK_MS);
/// How long nodes hold a request that cannot be served (no leader).
const REQUEST_TIMEOUT_MS: u64 = 2000;
/// How often every node is polled while the links are cut.
const POLL_EVERY: Duration = Duration::from_millis(50);
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Bounds on things that take as long as the machine needs. Generous, so a
/// slow machine does not fail the demo; Raft's promises do not depend on
/// them.
const LEADER_BOUND: Duration = Duration::from_secs(60);
const STEP_DOWN_BOUND: Duration = Duration::from_secs(20);

/// `cargo xtask demo ...`
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(subcommand)]
    demo: Demo,
}

#[derive(Debug, Subcommand)]
enum Demo {
    /// The seed story: cut every link of a 3-node cluster, watch that no
    /// node becomes leader, heal, watch one leader come back.
    SplitBrain(SplitBrainArgs),
}

/// Options of `cargo xtask demo split-brain`.
#[derive(Debug, Args)]
pub struct SplitBrainArgs {
    /// The transport between the nodes (tcp or quic: the demo cuts real links).
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// How many election timeouts to watch the cut cluster for.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    timeouts: u32,
    /// Run this raft-node binary instead of building one.
    #[arg(long, value_name = "FILE")]
    raft_node: Option<PathBuf>,
    /// Keep the cluster's data and logs in this directory [default: a
    /// temporary directory, removed if the demo passes].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Runs `cargo xtask demo ...`.
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    match args.demo {
        Demo::SplitBrain(a) => split_brain(a).await,
    }
}

/// A temporary directory, removed when the demo passes and kept (for its
/// logs) when it fails.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn new() -> Result<WorkDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("raft-split-brain-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(WorkDir { path, keep: false })
    }
}

impl WorkDir {
    fn given(path: &std::path::Path) -> Result<WorkDir> {
        let path = std::path::absolute(path)?;
        std::fs::create_dir_all(&path)?;
        Ok(WorkDir { path, keep: true })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

async fn split_brain(args: SplitBrainArgs) -> Result<ExitCode> {
    if args.transport == Transport::Mem {
        return Err(UsageError::new(
            "the demo cuts real network links between processes: use --transport tcp or quic",
        )
        .into());
    }
    let binary = match &args.raft_node {
        Some(b) => std::path::absolute(b)?,
        None => cluster::build_raft_node()?,
    };
    let mut dir = match &args.data_dir {
        Some(d) => WorkDir::given(d)?,
        None => WorkDir::new()?,
    };
    let launch = Launch {
        transport: args.transport,
        labels: ["1a", "1b", "1c"].map(str::to_owned).to_vec(),
        base_port: 0,
        data_dir: dir.path.clone(),
        binary,
        extra_args: [
            "--tick-ms",
            &TICK_MS.to_string(),
            "--election-ticks",
            &ELECTION_TICKS.to_string(),
            "--heartbeat-ticks",
            &HEARTBEAT_TICKS.to_string(),
            "--request-timeout-ms",
            &REQUEST_TIMEOUT_MS.to_string(),
        ]
        .map(str::to_owned)
        .to_vec(),
    };
    let mut signals = Signals::new()?;
    let mut children = Children::default();
    let mut demo = Observer {
        started: Instant::now(),
        leaders: BTreeMap::new(),
        events: None,
    };
    let outcome = tokio::select! {
        r = demo.script(&launch, args.timeouts, &mut children) => r,
        _ = signals.recv() => Err(anyhow!("interrupted")),
    };
    // Stop the cluster whatever happened (the guard in `children` would
    // kill it anyway; this stops it in order first).
    if let Ok(Some(state)) = ClusterState::load(&dir.path) {
        cluster::stop_processes(&state, &mut children);
    }
    children.kill_all();
    match outcome {
        Ok(()) => {
            println!("\nPASS: every check held. No leader while the links were cut; one leader, at a higher term, after healing.");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            dir.keep = true;
            println!("\nFAIL: {e:#}");
            println!("node logs kept in {}", dir.path.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The demo's memory of what the nodes claimed.
struct Observer {
    started: Instant,
    /// Every leader claim seen (poll or watch event): term -> nodes.
    leaders: BTreeMap<u64, BTreeSet<u64>>,
    events: Option<mpsc::Receiver<WatchMsg>>,
}

fn say(text: &str) {
    println!("{text}");
    let _ = std::io::stdout().flush();
}

fn step(n: u32, text: &str) {
    say(&format!("\n[{n}] {text}"));
}

fn indent(lines: &[String]) {
    for l in lines {
        say(&format!("    {l}"));
    }
}

impl Observer {
    /// Records leader claims from a poll; fails on two leaders in one term.
    fn note_polls(&mut self, state: &ClusterState, st: &BTreeMap<u64, &NodeStatus>) -> Result<()> {
        for s in st.values().filter(|s| s.is_leader()) {
            self.note_claim(state, s.id, s.term)?;
        }
        Ok(())
    }

    fn note_claim(&mut self, state: &ClusterState, node: u64, term: u64) -> Result<()> {
        let set = self.leaders.entry(term).or_default();
        set.insert(node);
        if set.len() > 1 {
            let names: Vec<String> = set.iter().map(|&i| state.label(i)).collect();
            bail!(
                "SPLIT BRAIN: {} {} claimed leadership in term {term}",
                names.join(" and "),
                if names.len() == 2 { "both" } else { "all" }
            );
        }
        Ok(())
    }

    /// Drains watch events, recording leader claims; returns the claims
    /// (node, term) seen in this batch.
    fn drain_events(&mut self, state: &ClusterState) -> Result<Vec<(u64, u64)>> {
        let mut claims = Vec::new();
        let mut events = Vec::new();
        if let Some(rx) = self.events.as_mut() {
            while let Ok(m) = rx.try_recv() {
                events.push(m);
            }
        }
        for m in events {
            if let WatchMsg::Event {
                node,
                event: Event::Role { role, term, .. },
            } = m
            {
                if role == "leader" {
                    self.note_claim(state, node, term)?;
                    claims.push((node, term));
                }
            }
        }
        Ok(claims)
    }

    fn t(&self) -> String {
        format!("t+{:.2}s", self.started.elapsed().as_secs_f64())
    }

    async fn script(
        &mut self,
        launch: &Launch,
        timeouts: u32,
        children: &mut Children,
    ) -> Result<()> {
        say("The seed story: three zones, 1a 1b 1c. The network between them was cut, and each zone's");
        say("election code counted the votes it needed, then made itself leader without waiting for them.");
        say("Two leaders: split brain. Here the same cut is made on a real cluster, and checked.");

        step(
            1,
            &format!(
                "Starting three raft-node processes over {} (election timeout {}-{} ms) in {}",
                launch.transport.as_str(),
                ELECTION_TICKS * TICK_MS,
                2 * ELECTION_TICKS * TICK_MS,
                launch.data_dir.display()
            ),
        );
        let state = cluster::launch(launch, false, children)?;
        // The caller races the whole script against ctrl-c; these waits need
        // their own handle.
        let mut sigs = Signals::new()?;
        let (mut leader, mut term) =
            cluster::wait_for_leader(&state, children, LEADER_BOUND, &mut sigs).await?;
        self.note_claim(&state, leader, term)?;
        let (tx, rx) = mpsc::channel(4096);
        let _watchers = AbortAll(
            state
                .nodes
                .iter()
                .map(|n| watch::spawn(n.id, n.http_addr.clone(), tx.clone()))
                .collect(),
        );
        self.events = Some(rx);
        let others = |l: u64| {
            state
                .nodes
                .iter()
                .filter(|n| n.id != l)
                .map(|n| n.label.clone())
                .collect::<Vec<_>>()
                .join(" and ")
        };
        say(&format!(
            "    {} is leader at term {term}; {} follow it.",
            state.label(leader),
            others(leader)
        ));
        let before = self
            .write(&state, leader, "before-the-cut", "written while whole")
            .await?;
        say(&format!(
            "    a write commits while the cluster is whole: before-the-cut at index {before}"
        ));

        step(2, "Cutting every link: each node isolates itself from both others (POST /v1/admin/isolate).");
        // Leadership claimed before the cut is legitimate (and a leader
        // may have changed while we wrote): record every claim made so far,
        // from the watch streams and a fresh poll, just before cutting.
        let mut incumbents: BTreeSet<(u64, u64)> = self.drain_events(&state)?.into_iter().collect();
        let fresh = live::snapshot(&state).await;
        let fresh = live::statuses(&fresh);
        self.note_polls(&state, &fresh)?;
        incumbents.extend(
            fresh
                .values()
                .filter(|s| s.is_leader())
                .map(|s| (s.id, s.term)),
        );
        incumbents.insert((leader, term));
        if let Some(&(l, t)) = incumbents.iter().max_by_key(|(_, t)| *t) {
            (leader, term) = (l, t);
        }
        let ids = state.ids();
        for n in &state.nodes {
            let peers: Vec<u64> = ids.iter().copied().filter(|&i| i != n.id).collect();
            http::admin(
                &n.http_addr,
                "isolate",
                json!({ "peers": peers }),
                CALL_TIMEOUT,
            )
            .await
            .map_err(|e| anyhow!("cutting {}'s links failed: {e:#}", n.label))?;
        }
        let cut_at = Instant::now();
        let model = live::snapshot(&state).await;
        let st = live::statuses(&model);
        self.check_cut(&state, &st)?;
        indent(&model.draw());
        let unexplained = st
            .values()
            .find(|s| s.is_leader() && !incumbents.contains(&(s.id, s.term)));
        if let Some(s) = unexplained {
            bail!(
                "{} claims leadership at term {} although every link is cut: a leader without a majority's votes",
                state.label(s.id),
                s.term
            );
        }
        self.note_polls(&state, &st)?;

        step(3, &format!(
            "{} was leader when the links were cut. It cannot know at once that it is alone: with check-quorum it",
            state.label(leader)
        ));
        say("    steps down once an election timeout passes without hearing from a majority. Until then it may still");
        say("    claim leadership (though it can commit nothing). Waiting for it to step down...");
        let deadline = Instant::now() + STEP_DOWN_BOUND;
        let grace_end_terms: BTreeMap<u64, u64> = loop {
            let claims = self.drain_events(&state)?;
            let model = live::snapshot(&state).await;
            let st = live::statuses(&model);
            self.note_polls(&state, &st)?;
            self.check_cut(&state, &st)?;
            let polled: Vec<(u64, u64)> = st
                .values()
                .filter(|s| s.is_leader())
                .map(|s| (s.id, s.term))
                .collect();
            for (node, t) in claims.iter().chain(&polled) {
                if !incumbents.contains(&(*node, *t)) {
                    bail!(
                        "{} claims leadership at term {t} although every link is cut: a leader without a majority's votes",
                        state.label(*node)
                    );
                }
            }
            if polled.is_empty() && st.len() == state.nodes.len() {
                break st.values().map(|s| (s.id, s.term)).collect();
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still claims leadership {} s after losing every link: check-quorum did not make it step down",
                    polled.iter().map(|(n, _)| state.label(*n)).collect::<Vec<_>>().join(", "),
                    STEP_DOWN_BOUND.as_secs()
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        };
        say(&format!(
            "    {}: no node claims leadership {} ms after the cut.",
            self.t(),
            cut_at.elapsed().as_millis()
        ));

        let window = MAX_ELECTION * timeouts;
        step(4, &format!(
            "Watching for {:.1} s ({timeouts} election timeouts of up to {} ms): polling every node every {} ms and",
            window.as_secs_f64(),
            MAX_ELECTION.as_millis(),
            POLL_EVERY.as_millis()
        ));
        say("    following their watch streams. In the seed story each zone became leader here.");
        let l_addr = state.node(leader)?.http_addr.clone();
        let write_during_cut = tokio::spawn(async move {
            http::call(
                &l_addr,
                Method::PUT,
                "/v1/kv/during-the-cut",
                Bytes::from_static(b"must not commit"),
                Duration::from_millis(REQUEST_TIMEOUT_MS) + CALL_TIMEOUT,
            )
            .await
        });
        let window_end = Instant::now() + window;
        let mut polls = 0u32;
        let mut next_report = Instant::now();
        let mut max_terms = grace_end_terms.clone();
        while Instant::now() < window_end {
            let claims = self.drain_events(&state)?;
            for (node, t) in claims {
                if !incumbents.contains(&(node, t)) {
                    bail!(
                        "{} became leader at term {t} while every link was cut: a leader without a majority's votes",
                        state.label(node)
                    );
                }
            }
            let model = live::snapshot(&state).await;
            let st = live::statuses(&model);
            polls += 1;
            self.note_polls(&state, &st)?;
            self.check_cut(&state, &st)?;
            if let Some(l) = st.values().find(|s| s.is_leader()) {
                bail!(
                    "{} claims leadership at term {} while every link is cut: a leader without a majority's votes",
                    state.label(l.id),
                    l.term
                );
            }
            for s in st.values() {
                let m = max_terms.entry(s.id).or_insert(s.term);
                *m = (*m).max(s.term);
            }
            if Instant::now() >= next_report {
                next_report = Instant::now() + MAX_ELECTION * 2;
                let line = state
                    .nodes
                    .iter()
                    .map(|n| match st.get(&n.id) {
                        Some(s) => format!("{} {} term {}", n.label, s.role, s.term),
                        None => format!("{} (no answer)", n.label),
                    })
                    .collect::<Vec<_>>()
                    .join(" · ");
                say(&format!("    {}  {line}  -> no leader", self.t()));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        say(&format!(
            "    no node claimed leadership in {polls} polls of every node over {:.1} s.",
            window.as_secs_f64()
        ));
        let rose: Vec<String> = max_terms
            .iter()
            .filter(|(id, t)| grace_end_terms.get(id).is_some_and(|g| *t > g))
            .map(|(id, t)| format!("{} to {t}", state.label(*id)))
            .collect();
        if rose.is_empty() {
            say(&format!(
                "    terms stayed at {}: with pre-vote a cut-off node first asks whether it could win, and no one answers.",
                max_terms.values().map(u64::to_string).collect::<Vec<_>>().join(", ")
            ));
        } else {
            say(&format!(
                "    terms rose ({}): elections were started and none was won.",
                rose.join(", ")
            ));
        }
        match write_during_cut.await {
            Ok(Ok(r)) if r.status == 200 => bail!(
                "a write sent to {} during the cut answered 200: it committed without a majority",
                state.label(leader)
            ),
            Ok(Ok(r)) => say(&format!(
                "    a write sent to {} during the cut: {} {}{} (nothing commits without a majority)",
                state.label(leader),
                r.status,
                r.error_message(),
                r.retry_after
                    .as_ref()
                    .map(|s| format!(", Retry-After {s}"))
                    .unwrap_or_default()
            )),
            Ok(Err(e)) => say(&format!(
                "    a write sent to {} during the cut got no answer ({e:#}); it did not commit",
                state.label(leader)
            )),
            Err(e) => bail!("the write during the cut did not finish: {e}"),
        }

        step(5, "Healing every link (POST /v1/admin/heal on each node).");
        for n in &state.nodes {
            http::admin(&n.http_addr, "heal", json!({}), CALL_TIMEOUT)
                .await
                .map_err(|e| anyhow!("healing {} failed: {e:#}", n.label))?;
        }
        let (new_leader, new_term) = loop {
            self.drain_events(&state)?;
            let model = live::snapshot(&state).await;
            let st = live::statuses(&model);
            self.note_polls(&state, &st)?;
            if st.len() == state.nodes.len() && st.values().all(|s| s.isolated_from.is_empty()) {
                break cluster::wait_for_leader(&state, children, LEADER_BOUND, &mut sigs).await?;
            }
            if cut_at.elapsed() > LEADER_BOUND + window {
                bail!("the nodes still report cut links after healing");
            }
            tokio::time::sleep(POLL_EVERY).await;
        };
        self.note_claim(&state, new_leader, new_term)?;
        self.drain_events(&state)?;
        if new_term <= term {
            bail!(
                "after healing {} leads at term {new_term}, not above the term before the cut ({term})",
                state.label(new_leader)
            );
        }
        let model = live::snapshot(&state).await;
        indent(&model.draw());
        say(&format!(
            "    {}: one leader: {} at term {new_term} (above {term}), and every node agrees.",
            self.t(),
            state.label(new_leader)
        ));

        step(6, "A write commits and reads back from every node.");
        let value = format!("healed at term {new_term}");
        let index = self
            .write(&state, new_leader, "after-the-heal", &value)
            .await?;
        say(&format!(
            "    PUT after-the-heal = {value:?}: committed at index {index}"
        ));
        for n in &state.nodes {
            for (key, want) in [
                ("after-the-heal", value.as_str()),
                ("before-the-cut", "written while whole"),
            ] {
                let got = self.read(n.http_addr.as_str(), key).await?;
                if got != want.as_bytes() {
                    bail!(
                        "reading {key} through {} gave {:?}, expected {want:?}",
                        n.label,
                        String::from_utf8_lossy(&got)
                    );
                }
            }
            say(&format!(
                "    read through {}: after-the-heal = {value:?}, before-the-cut still there",
                n.label
            ));
        }
        let during = self
            .read_status(&state.nodes[0].http_addr, "during-the-cut")
            .await?;
        if during == 200 {
            bail!("the write sent during the cut is readable: it committed without a majority");
        }
        say("    the write sent during the cut is nowhere: it never committed.");
        self.drain_events(&state)?;
        let per_term: Vec<String> = self
            .leaders
            .iter()
            .map(|(t, ls)| {
                format!(
                    "term {t}: {}",
                    ls.iter()
                        .map(|&l| state.label(l))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        say(&format!(
            "    leaders seen, by term (never two in one term): {}",
            per_term.join("; ")
        ));
        Ok(())
    }

    /// Checks that every answering node still reports every other as cut.
    fn check_cut(&self, state: &ClusterState, st: &BTreeMap<u64, &NodeStatus>) -> Result<()> {
        for s in st.values() {
            let missing: Vec<u64> = state
                .ids()
                .into_iter()
                .filter(|&i| i != s.id && !s.isolated_from.contains(&i))
                .collect();
            if !missing.is_empty() {
                bail!(
                    "{} reports links to {} as not cut (isolated_from = {:?}): the cut did not hold",
                    state.label(s.id),
                    missing.iter().map(|&i| state.label(i)).collect::<Vec<_>>().join(", "),
                    s.isolated_from
                );
            }
        }
        Ok(())
    }

    /// Writes through `node` (following redirects); returns the index.
    async fn write(&self, state: &ClusterState, node: u64, key: &str, value: &str) -> Result<u64> {
        let addr = &state.node(node)?.http_addr;
        let reply = http::call_following(
            addr,
            Method::PUT,
            &format!("/v1/kv/{}", http::encode_key(key)),
            Bytes::from(value.to_owned()),
            Duration::from_millis(REQUEST_TIMEOUT_MS) + CALL_TIMEOUT,
        )
        .await?;
        if reply.status != 200 {
            bail!(
                "PUT {key} through {} answered {}: {}",
                state.label(node),
                reply.status,
                reply.error_message()
            );
        }
        reply.json()?["index"]
            .as_u64()
            .ok_or_else(|| anyhow!("PUT {key} answered 200 without an index: {}", reply.text()))
    }

    /// A linearizable read of `key` through the node at `addr`.
    async fn get(&self, addr: &str, key: &str) -> Result<http::Reply> {
        http::call_following(
            addr,
            Method::GET,
            &format!("/v1/kv/{}", http::encode_key(key)),
            Bytes::new(),
            Duration::from_millis(REQUEST_TIMEOUT_MS) + CALL_TIMEOUT,
        )
        .await
    }

    /// The value of `key`, read through `addr`; an error unless it exists.
    async fn read(&self, addr: &str, key: &str) -> Result<Vec<u8>> {
        let reply = self.get(addr, key).await?;
        if reply.status != 200 {
            bail!(
                "GET {key} through {addr} answered {}: {}",
                reply.status,
                reply.error_message()
            );
        }
        Ok(reply.body.to_vec())
    }

    /// Whether `key` exists (200) or not (404), read through `addr`.
    async fn read_status(&self, addr: &str, key: &str) -> Result<u16> {
        let reply = self.get(addr, key).await?;
        match reply.status {
            200 | 404 => Ok(reply.status),
            s => bail!(
                "GET {key} through {addr} answered {s}: {}",
                reply.error_message()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::NodeEntry;

    fn state() -> ClusterState {
        let nodes = ["1a", "1b", "1c"]
            .iter()
            .enumerate()
            .map(|(i, l)| NodeEntry {
                id: i as u64 + 1,
                label: (*l).to_owned(),
                raft_addr: None,
                http_addr: String::new(),
            })
            .collect();
        ClusterState::new(Transport::Tcp, PathBuf::new(), PathBuf::new(), nodes)
    }

    fn observer() -> Observer {
        Observer {
            started: Instant::now(),
            leaders: BTreeMap::new(),
            events: None,
        }
    }

    #[test]
    fn two_leaders_in_one_term_is_split_brain() {
        let s = state();
        let mut o = observer();
        o.note_claim(&s, 1, 5).unwrap();
        o.note_claim(&s, 1, 5).unwrap();
        o.note_claim(&s, 2, 6).unwrap();
        let err = o.note_claim(&s, 3, 5).unwrap_err().to_string();
        assert_eq!(
            err,
            "SPLIT BRAIN: 1a and 1c both claimed leadership in term 5"
        );
    }

    #[test]
    fn watch_events_are_leader_claims() {
        let s = state();
        let mut o = observer();
        let (tx, rx) = mpsc::channel(16);
        o.events = Some(rx);
        let role = |node, role: &str, term| WatchMsg::Event {
            node,
            event: Event::Role {
                role: role.into(),
                term,
                leader: None,
            },
        };
        tx.try_send(role(1, "leader", 5)).unwrap();
        tx.try_send(role(2, "pre_candidate", 5)).unwrap();
        tx.try_send(WatchMsg::Event {
            node: 2,
            event: Event::Commit { commit_index: 3 },
        })
        .unwrap();
        tx.try_send(role(2, "leader", 6)).unwrap();
        assert_eq!(o.drain_events(&s).unwrap(), vec![(1, 5), (2, 6)]);
        assert!(o.drain_events(&s).unwrap().is_empty());
        tx.try_send(role(3, "leader", 6)).unwrap();
        assert!(o.drain_events(&s).is_err(), "1b and 1c both lead term 6");
    }

    fn st(id: u64, isolated: &[u64]) -> NodeStatus {
        NodeStatus {
            id,
            role: "follower".into(),
            term: 1,
            leader: None,
            commit_index: 0,
            applied_index: 0,
            last_log_index: 0,
            voters: vec![],
            learners: vec![],
            peers: BTreeMap::new(),
            isolated_from: isolated.to_vec(),
        }
    }

    #[test]
    fn a_cut_must_hold_on_every_answering_node() {
        let s = state();
        let o = observer();
        let (a, b, c) = (st(1, &[2, 3]), st(2, &[1, 3]), st(3, &[1]));
        let mut m = BTreeMap::new();
        m.insert(1, &a);
        m.insert(2, &b);
        o.check_cut(&s, &m).unwrap();
        m.insert(3, &c);
        let err = o.check_cut(&s, &m).unwrap_err().to_string();
        assert!(
            err.starts_with("1c reports links to 1b as not cut"),
            "{err}"
        );
    }
}
