//! What a cluster looks like right now, and the live view that keeps it on
//! screen: boxes, links and cut links redrawn as the nodes' watch streams
//! and status polls report changes (or, without a terminal, one line per
//! change).
//!
//! Everything shown comes from what the nodes report and from whether their
//! processes run; this module must never infer Raft state of its own.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc;

use crate::draw::{self, Link, NodeBox};
use crate::http::{self, NodeStatus};
use crate::procs::{self, Children, Probe};
use crate::state::ClusterState;
use crate::watch::{self, Event, WatchMsg};

/// Lines of recent events kept under the drawing.
const RECENT: usize = 8;
/// How often each node's status is polled (for `isolated_from`, which the
/// watch stream does not carry, and to notice nodes that stop answering).
const POLL_EVERY: Duration = Duration::from_millis(500);
const POLL_TIMEOUT: Duration = Duration::from_millis(1000);
/// Redraws are coalesced to at most one per this interval.
const FRAME: Duration = Duration::from_millis(100);

/// Whether a node can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// It answers.
    Up,
    /// Its process runs but it does not answer (starting, or overloaded).
    NoAnswer,
    /// Its process is stopped with SIGSTOP.
    Paused,
    /// Its process is gone.
    Down,
}

/// One node as last seen.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Its id.
    pub id: u64,
    /// Its label.
    pub label: String,
    /// Its last status (kept while it is unreachable, shown as last known).
    pub status: Option<NodeStatus>,
    /// Whether its last status poll was answered.
    pub answering: bool,
    /// Its process's state.
    pub process: Probe,
}

impl NodeView {
    /// A node not yet heard from.
    pub fn new(id: u64, label: String) -> NodeView {
        NodeView {
            id,
            label,
            status: None,
            answering: false,
            process: Probe::Running,
        }
    }

    /// Whether it can be reached now.
    pub fn reach(&self) -> Reach {
        match self.process {
            Probe::Gone => Reach::Down,
            Probe::Paused => Reach::Paused,
            Probe::Running if self.answering => Reach::Up,
            Probe::Running => Reach::NoAnswer,
        }
    }

    /// Its name in messages: `1a`, or `node 2`.
    pub fn name(&self) -> String {
        crate::state::display_name(self.id, &self.label)
    }

    fn live_status(&self) -> Option<&NodeStatus> {
        self.status.as_ref().filter(|_| self.reach() == Reach::Up)
    }
}

/// The whole cluster as last seen, in id order.
#[derive(Debug, Clone)]
pub struct Model {
    /// The nodes.
    pub nodes: Vec<NodeView>,
}

/// The facts about one node that a change is reported for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    reach: Reach,
    role: Option<String>,
    term: Option<u64>,
    commit: Option<u64>,
    isolated: Vec<u64>,
}

impl Model {
    /// A model of the nodes in `state`, none heard from yet.
    pub fn new(state: &ClusterState) -> Model {
        Model {
            nodes: state
                .nodes
                .iter()
                .map(|n| NodeView::new(n.id, n.label.clone()))
                .collect(),
        }
    }

    fn node_mut(&mut self, id: u64) -> Option<&mut NodeView> {
        self.nodes.iter_mut().find(|n| n.id == id)
    }

    /// Applies a status poll's outcome.
    pub fn on_poll(&mut self, id: u64, result: Option<NodeStatus>) {
        if let Some(n) = self.node_mut(id) {
            n.answering = result.is_some();
            if result.is_some() {
                n.status = result;
            }
        }
    }

    /// Applies a watch event (it refines the last status between polls).
    pub fn on_event(&mut self, id: u64, event: &Event) {
        let Some(st) = self.node_mut(id).and_then(|n| n.status.as_mut()) else {
            return;
        };
        match event {
            Event::Role { role, term, leader } => {
                st.role.clone_from(role);
                st.term = *term;
                st.leader = *leader;
            }
            Event::Membership { voters, learners } => {
                st.voters.clone_from(voters);
                st.learners.clone_from(learners);
            }
            Event::Commit { commit_index } => st.commit_index = *commit_index,
            Event::Applied { index, .. } => st.applied_index = st.applied_index.max(*index),
            Event::Unknown => {}
        }
    }

    /// Records a process's state.
    pub fn on_process(&mut self, id: u64, probe: Probe) {
        if let Some(n) = self.node_mut(id) {
            n.process = probe;
        }
    }

    fn summaries(&self) -> Vec<Summary> {
        self.nodes
            .iter()
            .map(|n| {
                let st = n.live_status();
                Summary {
                    reach: n.reach(),
                    role: st.map(|s| s.role.clone()),
                    term: st.map(|s| s.term),
                    commit: st.map(|s| s.commit_index),
                    isolated: st.map(|s| s.isolated_from.clone()).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// How the link between nodes `a` and `b` (indexes) is drawn.
    pub fn link(&self, a: usize, b: usize) -> Link {
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        let cuts = |from: &NodeView, to: &NodeView| {
            from.live_status()
                .is_some_and(|s| s.isolated_from.contains(&to.id))
        };
        if cuts(na, nb) || cuts(nb, na) {
            Link::Cut
        } else if na.live_status().is_none() || nb.live_status().is_none() {
            Link::Unknown
        } else {
            Link::Up
        }
    }

    /// The boxes of the drawing.
    pub fn boxes(&self) -> Vec<NodeBox> {
        self.nodes
            .iter()
            .map(|n| {
                let role = match (n.reach(), &n.status) {
                    (Reach::Up, Some(s)) if s.is_leader() => "LEADER".to_owned(),
                    (Reach::Up, Some(s)) => s.role.clone(),
                    (Reach::Up, None) | (Reach::NoAnswer, _) => "no answer".to_owned(),
                    (Reach::Paused, _) => "PAUSED".to_owned(),
                    (Reach::Down, _) => "DOWN".to_owned(),
                };
                let (term, commit) = match &n.status {
                    Some(s) if n.reach() == Reach::Up => (
                        format!("term {}", s.term),
                        format!("commit {}", s.commit_index),
                    ),
                    Some(s) => (
                        format!("term {}?", s.term),
                        format!("commit {}?", s.commit_index),
                    ),
                    None => ("term ?".to_owned(), "commit ?".to_owned()),
                };
                NodeBox {
                    lines: vec![n.name(), role, term, commit],
                    leader: n.live_status().is_some_and(NodeStatus::is_leader),
                }
            })
            .collect()
    }

    /// The drawing.
    pub fn draw(&self) -> Vec<String> {
        draw::draw(&self.boxes(), |a, b| self.link(a, b))
    }

    /// One line saying who leads: `leader 1a at term 5`, `no leader`, or
    /// every node that claims to (a leader that lost its majority keeps
    /// claiming until check-quorum makes it step down).
    pub fn headline(&self) -> String {
        let leaders: Vec<(String, u64)> = self
            .nodes
            .iter()
            .filter_map(|n| {
                n.live_status()
                    .filter(|s| s.is_leader())
                    .map(|s| (n.name(), s.term))
            })
            .collect();
        let commit = self
            .nodes
            .iter()
            .filter_map(|n| n.live_status().map(|s| s.commit_index))
            .max();
        let who = match leaders.as_slice() {
            [] => "no leader".to_owned(),
            [(l, t)] => format!("leader {l} at term {t}"),
            many => {
                let same_term = many
                    .iter()
                    .any(|(_, t)| many.iter().filter(|(_, u)| u == t).count() > 1);
                let list = many
                    .iter()
                    .map(|(l, t)| format!("{l} (term {t})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                if same_term {
                    format!("SPLIT BRAIN: two leaders in one term: {list}")
                } else {
                    format!("{} nodes claim leadership: {list}", many.len())
                }
            }
        };
        match commit {
            Some(c) => format!("{who} · commit {c}"),
            None => who,
        }
    }

    /// A table: id (and label, if any differs from the id), process state,
    /// role, term, leader, commit, applied, cut links, raft and HTTP
    /// addresses.
    pub fn table(&self, state: &ClusterState) -> Vec<String> {
        let labelled = self.nodes.iter().any(|n| n.label != n.id.to_string());
        let short = |id: u64| {
            self.nodes
                .iter()
                .find(|n| n.id == id)
                .map_or_else(|| id.to_string(), |n| n.label.clone())
        };
        let mut rows = vec![[
            "id", "name", "state", "role", "term", "leader", "commit", "applied", "cut from",
            "raft", "http",
        ]
        .map(str::to_owned)
        .to_vec()];
        for (n, e) in self.nodes.iter().zip(&state.nodes) {
            let reach = match n.reach() {
                Reach::Up => "up",
                Reach::NoAnswer => "no answer",
                Reach::Paused => "paused",
                Reach::Down => "down",
            };
            let st = n.live_status();
            let opt = |f: &dyn Fn(&NodeStatus) -> String| st.map_or_else(|| "-".to_owned(), f);
            rows.push(vec![
                n.id.to_string(),
                n.label.clone(),
                reach.to_owned(),
                opt(&|s| s.role.clone()),
                opt(&|s| s.term.to_string()),
                opt(&|s| s.leader.map_or_else(|| "-".to_owned(), short)),
                opt(&|s| s.commit_index.to_string()),
                opt(&|s| s.applied_index.to_string()),
                opt(&|s| {
                    if s.isolated_from.is_empty() {
                        "-".to_owned()
                    } else {
                        let names: Vec<String> =
                            s.isolated_from.iter().map(|&i| short(i)).collect();
                        names.join(",")
                    }
                }),
                e.raft_addr
                    .clone()
                    .unwrap_or_else(|| "(in process)".to_owned()),
                e.http_addr.clone(),
            ]);
        }
        if !labelled {
            for r in &mut rows {
                r.remove(1);
            }
        }
        format_table(&rows)
    }
}

/// Lays rows out in left-aligned columns two spaces apart.
pub fn format_table(rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// The lines describing how the cluster changed between two summaries
/// (one per node that changed). `with_commit` includes commit-only moves.
fn changes(model: &Model, old: &[Summary], new: &[Summary], with_commit: bool) -> Vec<String> {
    let mut out = Vec::new();
    for ((n, o), s) in model.nodes.iter().zip(old).zip(new) {
        if o == s {
            continue;
        }
        let mut parts = Vec::new();
        if o.reach != s.reach {
            parts.push(match s.reach {
                Reach::Up => "answering".to_owned(),
                Reach::NoAnswer => "not answering".to_owned(),
                Reach::Paused => "paused".to_owned(),
                Reach::Down => "down".to_owned(),
            });
        }
        if s.reach == Reach::Up {
            if o.role != s.role || o.term != s.term {
                let role = s.role.clone().unwrap_or_default();
                let term = s.term.unwrap_or_default();
                parts.push(match (&o.role, o.term) {
                    (Some(r), Some(t)) if *r != role && t != term => {
                        format!("{r} -> {role}, term {t} -> {term}")
                    }
                    (Some(r), _) if *r != role => format!("{r} -> {role} at term {term}"),
                    (Some(_), Some(t)) => format!("{role}, term {t} -> {term}"),
                    _ => format!("{role} at term {term}"),
                });
            }
            if o.isolated != s.isolated {
                parts.push(if s.isolated.is_empty() {
                    "links healed".to_owned()
                } else {
                    format!("cut from {}", crate::partition::list(&s.isolated))
                });
            }
            if with_commit && o.commit != s.commit {
                if let Some(c) = s.commit {
                    parts.push(match o.commit {
                        Some(oc) if o.reach == Reach::Up => format!("commit {oc} -> {c}"),
                        _ => format!("commit {c}"),
                    });
                }
            }
        }
        if !parts.is_empty() {
            out.push(format!("{}: {}", n.name(), parts.join(", ")));
        }
    }
    out
}

/// What ends the live view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// ctrl-c, SIGTERM (from `cluster stop`) or SIGHUP.
    Signal,
    /// The state file went away (the cluster was stopped from elsewhere).
    StateGone,
}

enum Input {
    Watch(WatchMsg),
    Poll(u64, Option<NodeStatus>),
}

/// Shows the cluster in `data_dir` until a signal arrives. `children` are
/// this process's own node processes, reaped as they exit.
pub async fn run(
    data_dir: &std::path::Path,
    children: &mut Children,
    tty: bool,
    signals: &mut crate::Signals,
) -> Result<Exit> {
    let Some(mut state) = ClusterState::load(data_dir)? else {
        return Ok(Exit::StateGone);
    };
    let start = Instant::now();
    let mut model = Model::new(&state);
    let (tx, mut rx) = mpsc::channel::<Input>(1024);
    let (wtx, mut wrx) = mpsc::channel::<WatchMsg>(1024);
    let mut tasks = Vec::new();
    for n in &state.nodes {
        tasks.push(watch::spawn(n.id, n.http_addr.clone(), wtx.clone()));
        let (id, addr, tx) = (n.id, n.http_addr.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let st = http::status(&addr, POLL_TIMEOUT).await.ok();
                if tx.send(Input::Poll(id, st)).await.is_err() {
                    return;
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        }));
    }
    drop((tx, wtx));
    let _abort = AbortAll(tasks);

    let mut frame = tokio::time::interval(FRAME);
    let mut probe_tick = tokio::time::interval(Duration::from_millis(250));
    let mut shown = model.summaries();
    let mut recent: Vec<String> = Vec::new();
    let mut dirty = true;
    let mut bad_reported = std::collections::BTreeSet::new();
    let stamp = |start: Instant| format!("+{:.1}s", start.elapsed().as_secs_f64());

    let exit = loop {
        let input = tokio::select! {
            _ = signals.recv() => break Exit::Signal,
            Some(m) = wrx.recv() => Input::Watch(m),
            Some(i) = rx.recv() => i,
            _ = probe_tick.tick() => {
                for (pid, how) in children.reap() {
                    let ids: Vec<u64> = state.processes.iter().filter(|p| p.pid == pid).flat_map(|p| p.nodes.clone()).collect();
                    recent_push(&mut recent, format!("{} process {pid} of node {} ended: {how}", stamp(start), crate::partition::list(&ids)), tty);
                }
                match ClusterState::load(data_dir) {
                    Ok(Some(s)) => state = s,
                    Ok(None) => break Exit::StateGone,
                    Err(_) => {}
                }
                for p in &state.processes {
                    let probe = procs::probe(p.pid, &state.binary, &p.args);
                    for &id in &p.nodes {
                        model.on_process(id, probe);
                    }
                }
                continue;
            }
            _ = frame.tick() => {
                if tty && dirty {
                    render(&model, &state, &recent);
                    dirty = false;
                }
                continue;
            }
        };
        match input {
            Input::Poll(id, st) => model.on_poll(id, st),
            Input::Watch(WatchMsg::Event { node, event }) => model.on_event(node, &event),
            Input::Watch(WatchMsg::Bad { node, reason }) => {
                if bad_reported.insert(node) {
                    recent_push(
                        &mut recent,
                        format!(
                            "{} node {node} sent a bad watch event: {reason}",
                            stamp(start)
                        ),
                        tty,
                    );
                }
            }
            Input::Watch(WatchMsg::Connected(_) | WatchMsg::Lost { .. }) => {}
        }
        let now = model.summaries();
        if now != shown {
            for line in changes(&model, &shown, &now, !tty) {
                recent_push(&mut recent, format!("{} {line}", stamp(start)), tty);
            }
            // Commit-only moves redraw the frame without filling the log.
            shown = now;
            dirty = true;
        }
    };
    if tty {
        render(&model, &state, &recent);
    }
    Ok(exit)
}

/// Aborts the tasks it holds when dropped.
#[derive(Debug)]
pub struct AbortAll(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn recent_push(recent: &mut Vec<String>, line: String, tty: bool) {
    if !tty {
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
    recent.push(line);
    if recent.len() > RECENT {
        recent.remove(0);
    }
}

fn render(model: &Model, state: &ClusterState, recent: &[String]) {
    let mut out = String::new();
    // Home the cursor and clear the screen, then draw the whole frame.
    out.push_str("\x1b[H\x1b[2J");
    out.push_str(&format!(
        "raft-toolkit · {} nodes over {} · {}\n\n",
        state.nodes.len(),
        state.transport.as_str(),
        model.headline(),
    ));
    for line in model.draw() {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("\n═ leader   X link cut (fault injection)   ╌ a node does not answer\n\n");
    for line in model.table(state) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("\nrecent:\n");
    for line in recent {
        out.push_str(&format!("  {line}\n"));
    }
    let first = state
        .nodes
        .first()
        .map(|n| n.http_addr.as_str())
        .unwrap_or("");
    out.push_str(&format!(
        "\nbreak it from another terminal:\n  cargo xtask cluster partition 1 2,3 | isolate 1 | heal | kill 2 | pause 2 | resume 2 | restart 2 | status | stop\n\
         write to it:\n  curl -L -XPUT --data-binary hello http://{first}/v1/kv/greeting\n\
         ctrl-c stops the cluster\n"
    ));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

/// Asks every node of `state` for its status once (and probes its
/// process), for `cluster status`.
pub async fn snapshot(state: &ClusterState) -> Model {
    let mut model = Model::new(state);
    for p in &state.processes {
        let probe = procs::probe(p.pid, &state.binary, &p.args);
        for &id in &p.nodes {
            model.on_process(id, probe);
        }
    }
    let polls = state.nodes.iter().map(|n| {
        let addr = n.http_addr.clone();
        async move { (n.id, http::status(&addr, POLL_TIMEOUT).await.ok()) }
    });
    for (id, st) in futures::future::join_all(polls).await {
        model.on_poll(id, st);
    }
    model
}

/// The statuses of the nodes that answered, by id.
pub fn statuses(model: &Model) -> BTreeMap<u64, &NodeStatus> {
    model
        .nodes
        .iter()
        .filter_map(|n| n.live_status().map(|s| (n.id, s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: u64, role: &str, term: u64, isolated: &[u64]) -> NodeStatus {
        NodeStatus {
            id,
            role: role.into(),
            term,
            leader: (role == "leader").then_some(id),
            commit_index: 7,
            applied_index: 7,
            last_log_index: 7,
            voters: vec![1, 2, 3],
            learners: vec![],
            peers: BTreeMap::new(),
            isolated_from: isolated.to_vec(),
        }
    }

    fn model(labels: &[&str]) -> Model {
        Model {
            nodes: labels
                .iter()
                .enumerate()
                .map(|(i, l)| NodeView::new(i as u64 + 1, (*l).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn cut_is_seen_from_either_side() {
        let mut m = model(&["1", "2", "3"]);
        m.on_poll(1, Some(status(1, "leader", 5, &[2, 3])));
        m.on_poll(2, Some(status(2, "follower", 5, &[])));
        m.on_poll(3, Some(status(3, "follower", 5, &[])));
        assert_eq!(m.link(0, 1), Link::Cut);
        assert_eq!(m.link(0, 2), Link::Cut);
        assert_eq!(m.link(1, 2), Link::Up);
        // Node 1 stops answering: its own cut list is no longer known, and
        // nobody else cut it.
        m.on_poll(1, None);
        assert_eq!(m.link(0, 1), Link::Unknown);
        m.on_poll(3, Some(status(3, "follower", 5, &[1])));
        assert_eq!(m.link(0, 2), Link::Cut);
        m.on_process(2, Probe::Gone);
        assert_eq!(m.link(1, 2), Link::Unknown);
    }

    #[test]
    fn boxes_show_role_term_commit_and_process_state() {
        let mut m = model(&["1a", "1b", "1c"]);
        m.on_poll(1, Some(status(1, "leader", 5, &[])));
        m.on_poll(2, Some(status(2, "follower", 5, &[])));
        m.on_process(3, Probe::Paused);
        let b = m.boxes();
        assert_eq!(b[0].lines, ["1a", "LEADER", "term 5", "commit 7"]);
        assert!(b[0].leader && !b[1].leader);
        assert_eq!(b[1].lines, ["1b", "follower", "term 5", "commit 7"]);
        assert_eq!(b[2].lines, ["1c", "PAUSED", "term ?", "commit ?"]);
        m.on_process(1, Probe::Gone);
        let b = m.boxes();
        assert_eq!(b[0].lines, ["1a", "DOWN", "term 5?", "commit 7?"]);
        assert!(!b[0].leader, "a dead leader is not drawn as leading");
        let m = model(&["1"]);
        assert_eq!(m.boxes()[0].lines[0], "node 1");
    }

    #[test]
    fn watch_events_refine_the_last_status() {
        let mut m = model(&["1", "2"]);
        // No status yet: nothing to refine.
        m.on_event(1, &Event::Commit { commit_index: 3 });
        assert!(m.nodes[0].status.is_none());
        m.on_poll(1, Some(status(1, "follower", 5, &[])));
        m.on_event(
            1,
            &Event::Role {
                role: "leader".into(),
                term: 6,
                leader: Some(1),
            },
        );
        m.on_event(1, &Event::Commit { commit_index: 12 });
        let s = m.nodes[0].status.as_ref().unwrap();
        assert_eq!((s.role.as_str(), s.term, s.commit_index), ("leader", 6, 12));
        assert_eq!(m.headline(), "leader node 1 at term 6 · commit 12");
    }

    #[test]
    fn headline_names_every_claimant() {
        let mut m = model(&["1a", "1b", "1c"]);
        assert_eq!(m.headline(), "no leader");
        m.on_poll(1, Some(status(1, "leader", 5, &[2, 3])));
        m.on_poll(2, Some(status(2, "leader", 6, &[])));
        assert_eq!(
            m.headline(),
            "2 nodes claim leadership: 1a (term 5), 1b (term 6) · commit 7"
        );
        m.on_poll(2, Some(status(2, "leader", 5, &[])));
        assert!(m.headline().starts_with("SPLIT BRAIN"), "{}", m.headline());
    }

    #[test]
    fn changes_are_one_line_per_node() {
        let mut m = model(&["1", "2", "3"]);
        for id in 1..=3 {
            m.on_poll(id, Some(status(id, "follower", 5, &[])));
        }
        let before = m.summaries();
        m.on_poll(1, Some(status(1, "leader", 6, &[])));
        m.on_poll(2, Some(status(2, "follower", 5, &[1, 3])));
        m.on_process(3, Probe::Gone);
        let after = m.summaries();
        let lines = changes(&m, &before, &after, true);
        assert_eq!(
            lines,
            [
                "node 1: follower -> leader, term 5 -> 6",
                "node 2: cut from 1, 3",
                "node 3: down",
            ]
        );
        let mut c = status(1, "leader", 6, &[]);
        c.commit_index = 9;
        m.on_poll(1, Some(c));
        let later = m.summaries();
        assert_eq!(changes(&m, &after, &later, true), ["node 1: commit 7 -> 9"]);
        assert!(changes(&m, &after, &later, false).is_empty());
    }

    #[test]
    fn table_names_nodes_only_when_labelled() {
        let dir = std::path::PathBuf::from("/d");
        let entries = |labels: &[&str]| {
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| crate::state::NodeEntry {
                    id: i as u64 + 1,
                    label: (*l).to_owned(),
                    raft_addr: Some(format!("127.0.0.1:700{}", i + 1)),
                    http_addr: format!("127.0.0.1:800{}", i + 1),
                })
                .collect()
        };
        let state = ClusterState::new(
            crate::state::Transport::Tcp,
            dir.clone(),
            dir.clone(),
            entries(&["1", "2"]),
        );
        let mut m = Model::new(&state);
        m.on_poll(1, Some(status(1, "leader", 5, &[2])));
        m.on_process(2, Probe::Paused);
        let t = m.table(&state);
        let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(words(&t[0])[..4], ["id", "state", "role", "term"], "{t:?}");
        assert_eq!(
            words(&t[1])[..9],
            [
                "1",
                "up",
                "leader",
                "5",
                "1",
                "7",
                "7",
                "2",
                "127.0.0.1:7001"
            ],
            "{t:?}"
        );
        assert_eq!(words(&t[2])[..3], ["2", "paused", "-"], "{t:?}");
        // Columns line up: every row's address starts at the same column.
        let col = t[0].find("raft").unwrap();
        assert!(
            t[1..].iter().all(|r| r[col..].starts_with("127.0.0.1:70")),
            "{t:?}"
        );

        let state = ClusterState::new(
            crate::state::Transport::Tcp,
            dir.clone(),
            dir,
            entries(&["1a", "1b"]),
        );
        let mut m = Model::new(&state);
        m.on_poll(1, Some(status(1, "leader", 5, &[2])));
        let t = m.table(&state);
        assert!(t[0].starts_with("id  name  state"), "{t:?}");
        assert!(
            t[1].contains(" 1a ") && t[1].contains(" 1b "),
            "leader and cut peer by label: {t:?}"
        );
    }

    #[test]
    fn table_columns_line_up() {
        let rows = vec![
            vec!["id".to_owned(), "role".to_owned()],
            vec!["10".to_owned(), "leader".to_owned()],
        ];
        assert_eq!(format_table(&rows), ["id  role", "10  leader"]);
    }
}
