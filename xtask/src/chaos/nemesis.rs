//! The nemesis: a seeded schedule of faults, and the code that inflicts
//! them on a running cluster and undoes them.
//!
//! Faults are one at a time: each is applied, held for a few seconds, then
//! undone, with a quiet gap before the next, so every fault has one clear
//! window in the report. Partitions go through the link mechanism the
//! harness hands in ([`super::net::Links`]: the nodes' fault-injection
//! endpoints, or real network namespaces); kills and pauses go through the
//! process controller it hands in. The plan is a pure
//! function of (seed, nemesis kinds, node ids, run length); which node is
//! leader is only known when a fault starts.
//!
//! The nemesis must never leave a fault behind: [`Nemesis::heal_all`] undoes
//! every kind of fault whatever state a failed step left.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{nanos, NodeAddr};
use super::net::Links;
use super::rng::{Pick, Rng};

/// The families of faults `--nemesis` can enable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NemesisKind {
    Partition,
    Kill,
    Pause,
}

/// Parses `partition,kill,pause` or `all` (or `none`).
pub fn parse_kinds(s: &str) -> Result<BTreeSet<NemesisKind>, String> {
    let mut kinds = BTreeSet::new();
    for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word {
            "partition" => {
                kinds.insert(NemesisKind::Partition);
            }
            "kill" => {
                kinds.insert(NemesisKind::Kill);
            }
            "pause" => {
                kinds.insert(NemesisKind::Pause);
            }
            "all" => kinds.extend([NemesisKind::Partition, NemesisKind::Kill, NemesisKind::Pause]),
            "none" => {}
            other => {
                return Err(format!(
                    "unknown nemesis '{other}' (expected a comma-separated list of partition, kill, pause, or all, or none)"
                ))
            }
        }
    }
    Ok(kinds)
}

/// Which node a process fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Target {
    Node(u64),
    /// The leader at the moment the fault starts.
    Leader,
}

/// One fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// Cut one node (or the current leader) from every other.
    Isolate(Target),
    /// Cut a minority from the majority.
    Split { minority: Vec<u64> },
    /// Every node sees a majority (its ring neighbours), no two the same
    /// majority. `order` is the ring.
    Ring { order: Vec<u64> },
    /// Two halves that only `bridge` connects.
    Bridge {
        left: Vec<u64>,
        bridge: u64,
        right: Vec<u64>,
    },
    /// SIGKILL, restarted when the window ends.
    Kill(Target),
    /// SIGSTOP, SIGCONT when the window ends.
    Pause(Target),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |t: &Target| match t {
            Target::Node(n) => format!("node {n}"),
            Target::Leader => "leader".to_string(),
        };
        let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        match self {
            Fault::Isolate(x) => write!(f, "isolate {}", t(x)),
            Fault::Split { minority } => write!(f, "split off {}", ids(minority)),
            Fault::Ring { order } => write!(f, "majorities ring {}", ids(order)),
            Fault::Bridge {
                left,
                bridge,
                right,
            } => {
                write!(f, "bridge {} | {bridge} | {}", ids(left), ids(right))
            }
            Fault::Kill(x) => write!(f, "kill -9 {}", t(x)),
            Fault::Pause(x) => write!(f, "pause {}", t(x)),
        }
    }
}

impl Fault {
    fn kind(&self) -> NemesisKind {
        match self {
            Fault::Kill(_) => NemesisKind::Kill,
            Fault::Pause(_) => NemesisKind::Pause,
            _ => NemesisKind::Partition,
        }
    }
}

/// One planned step: apply `fault` at `at` (from the run's start) and undo
/// it `hold` later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub hold: Duration,
    pub fault: Fault,
}

fn shuffled(ids: &[u64], rng: &mut Rng) -> Vec<u64> {
    let mut v = ids.to_vec();
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

/// The faults of one family that make sense for this many nodes.
fn candidates(kind: NemesisKind, ids: &[u64], rng: &mut Rng) -> Vec<Fault> {
    let pick = |rng: &mut Rng| Target::Node(ids[rng.below(ids.len() as u64) as usize]);
    match kind {
        NemesisKind::Partition => {
            let mut v = vec![Fault::Isolate(pick(rng)), Fault::Isolate(Target::Leader)];
            if ids.len() >= 3 {
                let order = shuffled(ids, rng);
                let minority = (ids.len() - 1) / 2;
                let mut m = order[..minority].to_vec();
                m.sort_unstable();
                v.push(Fault::Split { minority: m });
                let half = (ids.len() - 1) / 2;
                let mut left = order[..half].to_vec();
                let mut right = order[half + 1..].to_vec();
                left.sort_unstable();
                right.sort_unstable();
                v.push(Fault::Bridge {
                    left,
                    bridge: order[half],
                    right,
                });
            }
            if ids.len() >= 5 {
                v.push(Fault::Ring {
                    order: shuffled(ids, rng),
                });
            }
            v
        }
        NemesisKind::Kill => vec![Fault::Kill(pick(rng)), Fault::Kill(Target::Leader)],
        NemesisKind::Pause => vec![Fault::Pause(pick(rng)), Fault::Pause(Target::Leader)],
    }
}

/// The schedule for a run of length `time`: a fault roughly every
/// `interval`, held for half to all of it, starting after a short warm-up,
/// and none starting so late that it would outlast the run.
pub fn plan(
    seed: u64,
    kinds: &BTreeSet<NemesisKind>,
    ids: &[u64],
    time: Duration,
    interval: Duration,
) -> Vec<Step> {
    let mut rng = Rng::new(seed ^ 0x6E65_6D65_7369_7321);
    let kinds: Vec<NemesisKind> = kinds.iter().copied().collect();
    let mut steps = Vec::new();
    if kinds.is_empty() || ids.is_empty() {
        return steps;
    }
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let interval_ms = ms(interval).max(200);
    let total = ms(time);
    let mut t = (interval_ms / 4).min(2000);
    loop {
        let hold = rng.between(interval_ms / 2, interval_ms);
        if t + hold > total {
            break;
        }
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let options = candidates(kind, ids, &mut rng);
        let fault = options[rng.below(options.len() as u64) as usize].clone();
        steps.push(Step {
            at: Duration::from_millis(t),
            hold: Duration::from_millis(hold),
            fault,
        });
        // A quiet gap lets the cluster recover between faults.
        t += hold + rng.between(interval_ms / 4, interval_ms / 2);
    }
    steps
}

/// For every node, the peers it must cut itself from. `leader` resolves
/// [`Target::Leader`]; `None` for process faults (and for a leader-targeted
/// partition when no leader is known).
pub fn cuts(fault: &Fault, ids: &[u64], leader: Option<u64>) -> Option<BTreeMap<u64, Vec<u64>>> {
    let groups: Vec<BTreeSet<u64>> = match fault {
        Fault::Isolate(target) => {
            let alone = match target {
                Target::Node(n) => *n,
                Target::Leader => leader?,
            };
            let rest: BTreeSet<u64> = ids.iter().copied().filter(|&i| i != alone).collect();
            vec![BTreeSet::from([alone]), rest]
        }
        Fault::Split { minority } => {
            let m: BTreeSet<u64> = minority.iter().copied().collect();
            let rest: BTreeSet<u64> = ids.iter().copied().filter(|i| !m.contains(i)).collect();
            vec![m, rest]
        }
        Fault::Bridge {
            left,
            bridge,
            right,
        } => {
            let mut out: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for &l in left {
                out.insert(l, right.clone());
            }
            for &r in right {
                out.insert(r, left.clone());
            }
            out.insert(*bridge, Vec::new());
            return Some(out);
        }
        Fault::Ring { order } => {
            let n = order.len();
            // Smallest reach d whose neighbourhood (2d + 1 nodes) is a majority.
            let majority = n / 2 + 1;
            let d = (majority - 1).div_ceil(2);
            let mut out = BTreeMap::new();
            for (i, &node) in order.iter().enumerate() {
                let near: BTreeSet<u64> = (0..=2 * d).map(|k| order[(i + n - d + k) % n]).collect();
                let mut cut: Vec<u64> = order
                    .iter()
                    .copied()
                    .filter(|p| !near.contains(p))
                    .collect();
                cut.sort_unstable();
                out.insert(node, cut);
            }
            return Some(out);
        }
        Fault::Kill(_) | Fault::Pause(_) => return None,
    };
    Some(crate::partition::cuts(&groups))
}

/// A fault's window, for the report and the picture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultWindow {
    pub label: String,
    pub kind: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// The nodes it hit (for partitions, those cut from anything).
    pub nodes: Vec<u64>,
    /// Set when applying or undoing it went wrong (it still counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The link changes that made and undid it ("cut 1->2 (netns)").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

/// Killing, restarting, pausing and resuming node processes: what the
/// harness provides to the nemesis.
pub trait Processes: Send {
    /// SIGKILL node `id`'s process and reap it.
    fn kill(&mut self, id: u64) -> anyhow::Result<()>;
    /// Start node `id` again, the way it was first started.
    fn restart(&mut self, id: u64) -> anyhow::Result<()>;
    /// SIGSTOP node `id`'s process.
    fn pause(&mut self, id: u64) -> anyhow::Result<()>;
    /// SIGCONT node `id`'s process.
    fn resume(&mut self, id: u64) -> anyhow::Result<()>;
}

/// The nemesis of one run.
pub struct Nemesis<P: Processes> {
    pub nodes: Vec<NodeAddr>,
    pub procs: P,
    pub links: Box<dyn Links>,
    start: Instant,
    killed: BTreeSet<u64>,
    paused: BTreeSet<u64>,
    pub windows: Vec<FaultWindow>,
}

impl<P: Processes> fmt::Debug for Nemesis<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nemesis")
            .field("nodes", &self.nodes)
            .field("links", &self.links.mechanism())
            .field("killed", &self.killed)
            .field("paused", &self.paused)
            .field("windows", &self.windows.len())
            .finish()
    }
}

/// The leader with the highest term among the nodes that answer.
pub async fn find_leader(nodes: &[NodeAddr]) -> Option<u64> {
    let answers = futures::future::join_all(
        nodes
            .iter()
            .map(|n| crate::http::status(&n.http, Duration::from_millis(500))),
    )
    .await;
    answers
        .into_iter()
        .flatten()
        .filter(|s| s.is_leader())
        .max_by_key(|s| s.term)
        .map(|s| s.id)
}

impl<P: Processes> Nemesis<P> {
    pub fn new(nodes: Vec<NodeAddr>, procs: P, links: Box<dyn Links>, start: Instant) -> Self {
        Nemesis {
            nodes,
            procs,
            links,
            start,
            killed: BTreeSet::new(),
            paused: BTreeSet::new(),
            windows: Vec::new(),
        }
    }

    fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Restores every link the nemesis cut.
    pub async fn heal_partitions(&mut self) -> Vec<String> {
        self.links.heal().await
    }

    /// Runs the plan until it ends or `stop` is set, then undoes whatever
    /// fault is in force.
    pub async fn run(&mut self, plan: &[Step], stop: Arc<AtomicBool>) {
        for step in plan {
            let at = self.start + step.at;
            while Instant::now() < at {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep(
                    Duration::from_millis(50).min(at.saturating_duration_since(Instant::now())),
                )
                .await;
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            self.inflict(step, &stop).await;
        }
    }

    async fn inflict(&mut self, step: &Step, stop: &AtomicBool) {
        let ids = self.ids();
        let needs_leader = matches!(
            step.fault,
            Fault::Isolate(Target::Leader)
                | Fault::Kill(Target::Leader)
                | Fault::Pause(Target::Leader)
        );
        let leader = if needs_leader {
            find_leader(&self.nodes).await
        } else {
            None
        };
        let resolve = |t: &Target| match t {
            Target::Node(n) => Some(*n),
            Target::Leader => leader,
        };
        let start_ns = nanos(self.start.elapsed());
        let events_before = self.links.events().len();
        let mut errors: Vec<String> = Vec::new();
        let mut hit: Vec<u64> = Vec::new();
        let mut label = step.fault.to_string();
        if let Some(l) = leader {
            label = label.replace("leader", &format!("leader {l}"));
        }
        match &step.fault {
            Fault::Kill(t) | Fault::Pause(t) => match resolve(t) {
                None => errors.push("no leader to target".into()),
                Some(id) => {
                    hit.push(id);
                    let r = if matches!(step.fault, Fault::Kill(_)) {
                        self.procs.kill(id).map(|()| {
                            self.killed.insert(id);
                        })
                    } else {
                        self.procs.pause(id).map(|()| {
                            self.paused.insert(id);
                        })
                    };
                    if let Err(e) = r {
                        errors.push(format!("{e:#}"));
                    }
                }
            },
            fault => match cuts(fault, &ids, leader) {
                None => errors.push("no leader to target".into()),
                Some(c) => {
                    hit = c
                        .iter()
                        .filter(|(_, p)| !p.is_empty())
                        .map(|(&id, _)| id)
                        .collect();
                    errors.extend(self.links.cut(&c).await);
                }
            },
        }
        eprintln!(
            "chaos: {:>7.2}s fault begins: {label} (nodes {hit:?})",
            start_ns as f64 / 1e9
        );
        if self.links.events().len() > events_before {
            let labels: Vec<String> = self.links.events()[events_before..]
                .iter()
                .map(|e| e.label())
                .collect();
            eprintln!("chaos: links: {}", labels.join(", "));
        }
        let end = Instant::now() + step.hold;
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(
                Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())),
            )
            .await;
        }
        errors.extend(self.undo(step.fault.kind()).await);
        eprintln!(
            "chaos: {:>7.2}s fault ends: {label}",
            self.start.elapsed().as_secs_f64()
        );
        for e in &errors {
            eprintln!("chaos: fault {label} did not go cleanly: {e}");
        }
        self.windows.push(FaultWindow {
            label,
            kind: format!("{:?}", step.fault.kind()).to_lowercase(),
            start_ns,
            end_ns: nanos(self.start.elapsed()),
            nodes: hit,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            links: self.links.events()[events_before..]
                .iter()
                .map(|e| e.label())
                .collect(),
        });
    }

    async fn undo(&mut self, kind: NemesisKind) -> Vec<String> {
        match kind {
            NemesisKind::Partition => self.heal_partitions().await,
            NemesisKind::Kill | NemesisKind::Pause => self.restore_processes(),
        }
    }

    fn restore_processes(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for id in std::mem::take(&mut self.paused) {
            if let Err(e) = self.procs.resume(id) {
                errors.push(format!("resume node {id}: {e:#}"));
            }
        }
        for id in std::mem::take(&mut self.killed) {
            if let Err(e) = self.procs.restart(id) {
                errors.push(format!("restart node {id}: {e:#}"));
            }
        }
        errors
    }

    /// Undoes every fault: resumes paused nodes, restarts killed ones, heals
    /// every partition. Returns what could not be done.
    pub async fn heal_all(&mut self) -> Vec<String> {
        let mut errors = self.restore_processes();
        errors.extend(self.heal_partitions().await);
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> BTreeSet<NemesisKind> {
        parse_kinds("all").expect("valid")
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(parse_kinds("partition,kill").expect("valid").len(), 2);
        assert_eq!(parse_kinds("all"), Ok(all()));
        assert!(parse_kinds("none").expect("valid").is_empty());
        assert!(parse_kinds("partition,flood")
            .unwrap_err()
            .contains("flood"));
    }

    #[test]
    fn plan_is_a_function_of_the_seed_and_fits_the_run() {
        let ids = [1, 2, 3, 4, 5];
        let time = Duration::from_secs(60);
        let a = plan(9, &all(), &ids, time, Duration::from_secs(5));
        let b = plan(9, &all(), &ids, time, Duration::from_secs(5));
        let c = plan(10, &all(), &ids, time, Duration::from_secs(5));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.len() >= 6, "{} faults in 60 s", a.len());
        for w in a.windows(2) {
            assert!(w[0].at + w[0].hold < w[1].at, "faults overlap: {w:?}");
        }
        for s in &a {
            assert!(s.at + s.hold <= time);
        }
        // Only enabled families appear.
        let only_kill = plan(
            9,
            &parse_kinds("kill").expect("valid"),
            &ids,
            time,
            Duration::from_secs(5),
        );
        assert!(only_kill.iter().all(|s| matches!(s.fault, Fault::Kill(_))));
        // Over many seeds every kind of fault shows up on five nodes.
        let mut seen = std::collections::HashSet::new();
        for seed in 0..50 {
            for s in plan(seed, &all(), &ids, time, Duration::from_secs(5)) {
                seen.insert(std::mem::discriminant(&s.fault));
            }
        }
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn cuts_make_the_intended_shapes() {
        let ids = [1, 2, 3, 4, 5];
        let iso = cuts(&Fault::Isolate(Target::Leader), &ids, Some(3)).expect("partition");
        assert_eq!(iso[&3], vec![1, 2, 4, 5]);
        assert_eq!(iso[&1], vec![3]);
        assert_eq!(cuts(&Fault::Isolate(Target::Leader), &ids, None), None);

        let split = cuts(
            &Fault::Split {
                minority: vec![2, 4],
            },
            &ids,
            None,
        )
        .expect("partition");
        assert_eq!(split[&2], vec![1, 3, 5]);
        assert_eq!(split[&1], vec![2, 4]);

        let bridge = cuts(
            &Fault::Bridge {
                left: vec![1, 2],
                bridge: 3,
                right: vec![4, 5],
            },
            &ids,
            None,
        )
        .expect("partition");
        assert_eq!(bridge[&3], Vec::<u64>::new());
        assert_eq!(bridge[&1], vec![4, 5]);
        assert_eq!(bridge[&5], vec![1, 2]);

        let ring = cuts(
            &Fault::Ring {
                order: vec![1, 3, 5, 2, 4],
            },
            &ids,
            None,
        )
        .expect("partition");
        let mut views = BTreeSet::new();
        for &id in &ids {
            let sees: BTreeSet<u64> = ids
                .iter()
                .copied()
                .filter(|p| !ring[&id].contains(p))
                .collect();
            assert_eq!(sees.len(), 3, "node {id} sees a majority: {sees:?}");
            assert!(sees.contains(&id));
            assert!(views.insert(sees), "two nodes see the same majority");
            for &p in &ring[&id] {
                assert!(ring[&p].contains(&id), "cut {id}-{p} is one-sided");
            }
        }
        assert_eq!(cuts(&Fault::Kill(Target::Node(1)), &ids, None), None);
    }

    #[test]
    fn ring_on_seven_nodes_still_gives_majorities() {
        let order: Vec<u64> = (1..=7).collect();
        let ring = cuts(
            &Fault::Ring {
                order: order.clone(),
            },
            &order,
            None,
        )
        .expect("partition");
        for id in &order {
            assert_eq!(7 - ring[id].len(), 5);
        }
    }
}
