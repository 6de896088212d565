//! `cargo xtask chaos`: Jepsen-style testing of a real cluster. Starts a
//! cluster with fault injection enabled, runs concurrent clients doing
//! reads, writes and compare-and-set on a few keys while a seeded nemesis
//! partitions, kills and pauses nodes, then heals everything and checks:
//!
//! - the history is linearizable (per key, [`checker`]);
//! - no acknowledged write is lost in the final reads ([`history::lost_writes`]);
//! - no two leaders in one term, from every node's watch stream ([`watch`]);
//! - the cluster recovers (one leader everyone follows, a write goes
//!   through) within a bound after the final heal, and the replicas agree.
//!
//! Partitions are made by one of two link mechanisms ([`net`]): the nodes'
//! fault-injection endpoints (`--net api`), or, as root on Linux, a network
//! namespace per node with links cut in the kernel (`--net netns`,
//! [`netns`]).
//!
//! It writes the verdict, a summary, the history (JSON lines) and an HTML
//! timeline into `--out`, and exits non-zero on any violation. It must never
//! leave a node running, nor a namespace, veth or bridge: the node processes
//! belong to a [`Children`] and the network to a [`netns::Network`], which
//! both clean up when dropped, on any path out of [`run`].

pub mod checker;
pub mod client;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod netns;
pub mod report;
pub mod rng;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use nix::sys::signal::Signal;

use crate::cluster::{self, Host, Launch};
use crate::procs::{self, Children, Probe};
use crate::state::{ClusterState, Supervisor, Transport};
use crate::{repo_root, Signals, UsageError};

use client::{execute, KvRequest, NodeAddr, Recorder, Workload};
use history::{OpKind, OpRecord, Outcome};
use nemesis::{FaultWindow, Nemesis, NemesisKind, Processes};
use net::{ApiLinks, Links, NetEvent};

/// Exit code when a check found a violation.
const EXIT_VIOLATION: u8 = 1;
/// Exit code when the checker ran out of budget without a violation.
const EXIT_UNKNOWN: u8 = 3;

/// `cargo xtask chaos ...`
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Faults are one at a time: each is applied, held for about --nemesis-interval, \
undone, then a quiet gap.

Partitions, --net api (default): the nodes' fault-injection endpoints \
(/v1/admin/isolate, heal) make each node's transport drop the cut peers.

Partitions, --net netns (Linux, as root): each node runs in a network \
namespace of its own (raftchaos-<pid>-n<id>, address 10.213.<s>.<id>), \
joined by a private bridge (rcbr<pid>, 10.213.<s>.254/24) to xtask, which \
stays in the root namespace. A cut a->b is an `ip rule ... blackhole` in \
b's namespace that discards packets from a on arrival, so links are cut \
for real (senders see timeouts, not errors); both directions are cut. \
Kill and pause signal the node itself in either mode. The namespaces, \
veths and bridge are removed on every way out (ctrl-c and SIGTERM \
included), and leftovers of runs whose xtask died are removed at start.

Exit codes: 0 every check passed; 1 a violation (the report says which); \
2 bad usage; 3 the linearizability check ran out of --check-time.

Outputs in --out: summary.txt, history.jsonl, events.jsonl, timeline.html, \
and the cluster's data and node logs under cluster/.")]
pub struct ChaosArgs {
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=7))]
    pub nodes: u64,
    /// Transport between the nodes.
    #[arg(long, default_value = "tcp", value_parser = parse_transport)]
    pub transport: Transport,
    /// How long the clients and the nemesis run (e.g. 60s, 2m, 1500ms).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub time: Duration,
    /// Concurrent clients.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=200))]
    pub clients: u64,
    /// Keys the clients share (k0, k1, ...).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub keys: u64,
    /// Faults to inject: a comma-separated list of partition, kill, pause;
    /// or all; or none.
    #[arg(long, default_value = "all", value_parser = nemesis::parse_kinds)]
    pub nemesis: BTreeSet<NemesisKind>,
    /// About how often a fault starts (each is held for half to all of it).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub nemesis_interval: Duration,
    /// Seed of every random choice (keys, nodes, operations, faults);
    /// random if omitted. Timing is not replayed, choices are.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output directory [default: target/chaos/seed-<S>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A client gives up on a request after this long (outcome unknown).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Pause between one client's operations.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub think: Duration,
    /// After the final heal, the cluster must elect a leader that every node
    /// follows and commit a write within this long.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub recovery_bound: Duration,
    /// Time budget of the linearizability check; past it the verdict is
    /// "unknown" (exit code 3).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub check_time: Duration,
    /// Fraction of reads sent with consistency=stale. These are allowed to
    /// be stale by contract, so the checker may (rightly) flag them: this is
    /// for showing that the checker catches stale reads.
    #[arg(long, default_value_t = 0.0)]
    pub stale_reads: f64,
    /// Instead of random clients and faults, run a fixed scenario. The only
    /// one, stale-read, reads with consistency=stale from an isolated old
    /// leader after a newer write: the run must report a stale read.
    #[arg(long, value_parser = ["stale-read"])]
    pub scenario: Option<String>,
    /// How partitions are made: "api", the nodes' fault-injection
    /// endpoints; or "netns", a network namespace per node with links cut
    /// in the kernel (Linux, as root; see below).
    #[arg(long, default_value = "api", value_parser = ["api", "netns"])]
    pub net: String,
    /// Run this raft-node binary instead of building one.
    #[arg(long, value_name = "FILE")]
    pub raft_node: Option<PathBuf>,
    /// Start no cluster: check a history.jsonl from an earlier run
    /// (linearizability and lost writes) and print the verdict.
    #[arg(long, value_name = "FILE")]
    pub check_history: Option<PathBuf>,
    /// Stop after this many operations in the history (bounds memory).
    #[arg(long, default_value_t = 2_000_000)]
    pub max_ops: usize,
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    match s {
        "tcp" => Ok(Transport::Tcp),
        "quic" => Ok(Transport::Quic),
        _ => Err(format!(
            "'{s}': chaos needs one process per node: tcp or quic"
        )),
    }
}

/// `60s`, `2m`, `1500ms`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (try 60s, 2m, 500ms)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=7.0 * 86400.0).contains(&secs) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The node processes of the chaos cluster, for the nemesis.
#[derive(Debug)]
struct ChaosProcs {
    state: ClusterState,
    children: Children,
    /// Per process, the command prefix that starts it (`ip netns exec NS`
    /// in netns mode; empty otherwise), so a restart lands where it was.
    wrappers: Vec<Vec<String>>,
}

impl ChaosProcs {
    fn process(&self, id: u64) -> Result<usize> {
        self.state
            .process_of(id)
            .ok_or_else(|| anyhow!("no process runs node {id}"))
    }

    fn probe(&self, idx: usize) -> Probe {
        let p = &self.state.processes[idx];
        procs::probe(p.pid, &self.state.binary, &p.args)
    }

    fn save(&self) {
        // The state file only helps `cargo xtask cluster status --data-dir`
        // look at the run; failing to update it does not affect the run.
        if let Err(e) = self.state.save() {
            eprintln!("chaos: cannot update the cluster's state file: {e:#}");
        }
    }
}

impl Processes for ChaosProcs {
    fn kill(&mut self, id: u64) -> Result<()> {
        let idx = self.process(id)?;
        procs::signal(self.state.processes[idx].pid, Signal::SIGKILL)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.probe(idx) != Probe::Gone {
            self.children.reap();
            if Instant::now() >= deadline {
                bail!("node {id} survived SIGKILL for 5 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.children.reap();
        Ok(())
    }

    fn restart(&mut self, id: u64) -> Result<()> {
        let idx = self.process(id)?;
        if self.probe(idx) != Probe::Gone {
            bail!("node {id} still runs; not starting a second copy");
        }
        let p = &self.state.processes[idx];
        let wrapper = self
            .wrappers
            .get(idx)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let child = procs::spawn_via(wrapper, &self.state.binary, &p.args, &p.log)?;
        self.state.processes[idx].pid = child.id();
        self.state.processes[idx].paused = false;
        self.children.push(child);
        self.save();
        Ok(())
    }

    fn pause(&mut self, id: u64) -> Result<()> {
        let idx = self.process(id)?;
        procs::signal(self.state.processes[idx].pid, Signal::SIGSTOP)?;
        self.state.processes[idx].paused = true;
        self.save();
        Ok(())
    }

    fn resume(&mut self, id: u64) -> Result<()> {
        let idx = self.process(id)?;
        procs::signal(self.state.processes[idx].pid, Signal::SIGCONT)?;
        self.state.processes[idx].paused = false;
        self.save();
        Ok(())
    }
}

/// Everything measured in a run, for the report.
#[derive(Debug, Default)]
struct Findings {
    violations: Vec<String>,
    notes: Vec<String>,
    recovery: Option<Duration>,
    marks: report::Marks,
}

/// Runs `cargo xtask chaos`.
pub async fn run(args: ChaosArgs) -> Result<ExitCode> {
    let use_netns = args.net == "netns";
    if use_netns && args.check_history.is_none() {
        if let Some(why) = netns::unsupported() {
            return Err(UsageError::new(why).into());
        }
    }
    if !(0.0..=1.0).contains(&args.stale_reads) {
        return Err(UsageError::new("--stale-reads is a fraction between 0 and 1").into());
    }
    if args.request_timeout.is_zero() {
        return Err(UsageError::new("--request-timeout must be more than 0").into());
    }
    if let Some(path) = &args.check_history {
        return check_history_file(&args, path);
    }
    let seed = args.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        u64::from(t.subsec_nanos()) ^ t.as_secs().rotate_left(32) ^ u64::from(std::process::id())
    });
    let out = match &args.out {
        Some(d) => std::path::absolute(d)
            .with_context(|| format!("bad output directory {}", d.display()))?,
        None => repo_root()
            .join("target")
            .join("chaos")
            .join(format!("seed-{seed}")),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let binary = match &args.raft_node {
        Some(b) => std::path::absolute(b)?,
        None => cluster::build_raft_node()?,
    };
    let launch = Launch {
        transport: args.transport,
        labels: (1..=args.nodes).map(|i| i.to_string()).collect(),
        base_port: 0,
        data_dir: out.join("cluster"),
        binary,
        extra_args: Vec::new(),
    };
    // Before the network exists, so a ctrl-c from here on is handled (and
    // the network removed) instead of killing xtask outright.
    let mut signals = Signals::new()?;
    // Declared before the children: dropped after them, so on an early
    // return the nodes are gone before their namespaces are removed.
    let mut network = if use_netns {
        Some(netns::Network::setup(&ids_of(&launch))?)
    } else {
        None
    };
    let mut children = Children::default();
    eprintln!(
        "chaos: seed {seed}; starting {} nodes over {} in {}",
        args.nodes,
        args.transport.as_str(),
        launch.data_dir.display()
    );
    let hosts: Option<Vec<Host>> = network.as_ref().map(|n| {
        let t = n.topology();
        t.ids
            .iter()
            .map(|&id| Host {
                ip: t.node_ip(id).to_string(),
                raft_port: netns::RAFT_PORT,
                http_port: netns::HTTP_PORT,
                wrapper: t.wrapper(id),
            })
            .collect()
    });
    let mut state = match &hosts {
        Some(h) => cluster::launch_on(&launch, h, &mut children)?,
        None => cluster::launch(&launch, false, &mut children)?,
    };
    state.supervisor = Some(Supervisor::this_process());
    state.save()?;
    let wrappers: Vec<Vec<String>> = hosts
        .map(|h| h.into_iter().map(|h| h.wrapper).collect())
        .unwrap_or_default();
    let topology = network.as_ref().map(|n| n.topology().clone());
    let outcome = drive(
        &args,
        seed,
        &out,
        &mut state,
        &mut children,
        &mut signals,
        RunNet { topology, wrappers },
    )
    .await;
    // Whatever happened, stop every node (restarts may have replaced pids).
    let latest = ClusterState::load(&launch.data_dir)
        .ok()
        .flatten()
        .unwrap_or(state);
    let killed = cluster::stop_processes(&latest, &mut children);
    if !killed.is_empty() {
        eprintln!("chaos: killed pids {killed:?} (they did not stop after SIGTERM)");
    }
    children.kill_all();
    if let Some(n) = network.as_mut() {
        match n.teardown() {
            Ok(removed) => eprintln!("chaos: netns: removed {}", removed.join(", ")),
            Err(errors) => {
                for e in errors {
                    eprintln!("chaos: netns: teardown: {e}");
                }
            }
        }
    }
    outcome
}

fn ids_of(launch: &Launch) -> Vec<u64> {
    (1..=launch.labels.len() as u64).collect()
}

/// The network side of a run: the netns topology, if any, and how each
/// process is started.
#[derive(Debug, Default)]
struct RunNet {
    topology: Option<netns::Topology>,
    wrappers: Vec<Vec<String>>,
}

/// Aborts the tasks it holds when dropped, so no client or watcher keeps
/// running (and dialling node addresses) after the run ends on any path.
#[derive(Debug, Default)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

async fn drive(
    args: &ChaosArgs,
    seed: u64,
    out: &Path,
    state: &mut ClusterState,
    children: &mut Children,
    signals: &mut Signals,
    run_net: RunNet,
) -> Result<ExitCode> {
    let (leader, term) =
        cluster::wait_for_leader(state, children, Duration::from_secs(60), signals).await?;
    match &args.scenario {
        Some(name) => eprintln!("chaos: leader {leader} at term {term}; running scenario {name}"),
        None => eprintln!(
            "chaos: leader {leader} at term {term}; running for {:?}",
            args.time
        ),
    }
    let nodes: Vec<NodeAddr> = state
        .nodes
        .iter()
        .map(|n| NodeAddr {
            id: n.id,
            http: n.http_addr.clone(),
        })
        .collect();
    let ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let watch_log = Arc::new(watch::WatchLog::default());
    let watch_stop = Arc::new(AtomicBool::new(false));
    let mut watchers = Tasks(
        nodes
            .iter()
            .map(|n| {
                tokio::spawn(watch::watch_node(
                    n.clone(),
                    start,
                    watch_log.clone(),
                    watch_stop.clone(),
                ))
            })
            .chain(nodes.iter().map(|n| {
                tokio::spawn(watch::poll_status(
                    n.clone(),
                    start,
                    watch_log.clone(),
                    watch_stop.clone(),
                    Duration::from_millis(100),
                ))
            }))
            .collect(),
    );
    let recorder = Arc::new(Recorder::default());
    let procs = ChaosProcs {
        state: state.clone(),
        children: std::mem::take(children),
        wrappers: run_net.wrappers,
    };
    let network = match &run_net.topology {
        Some(t) => format!(
            "netns: bridge {} at {} on {} in the root namespace; {}; links cut by blackhole rules in the receiving namespace",
            t.bridge(),
            t.bridge_ip(),
            t.cidr(),
            t.ids
                .iter()
                .map(|&id| format!("node {id} {} in {}", t.node_ip(id), t.ns(id)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "api: partitions through the nodes' fault-injection endpoints".to_string(),
    };
    let links: Box<dyn Links> = match run_net.topology {
        Some(t) => Box::new(netns::NetnsLinks::new(t, start)),
        None => Box::new(ApiLinks::new(nodes.clone(), start)),
    };
    let mut nemesis = Nemesis::new(nodes.clone(), procs, links, start);
    let plan = match args.scenario {
        Some(_) => Vec::new(),
        None => nemesis::plan(seed, &args.nemesis, &ids, args.time, args.nemesis_interval),
    };
    let mut interrupted = false;

    if args.scenario.is_some() {
        tokio::select! {
            r = stale_read_scenario(&nodes, &mut nemesis, start, &recorder, args.request_timeout) => r?,
            _ = signals.recv() => interrupted = true,
        }
    } else {
        let work = Workload {
            keys: args.keys as usize,
            request_timeout: args.request_timeout,
            think: args.think,
            stale_reads: args.stale_reads,
            max_ops: args.max_ops,
        };
        let shared_nodes = Arc::new(nodes.clone());
        let mut clients = Tasks(
            (0..args.clients as usize)
                .map(|c| {
                    tokio::spawn(client::run_client(
                        c,
                        seed,
                        shared_nodes.clone(),
                        work.clone(),
                        start,
                        recorder.clone(),
                        stop.clone(),
                    ))
                })
                .collect(),
        );
        let until = start + args.time;
        tokio::select! {
            () = async {
                nemesis.run(&plan, stop.clone()).await;
                tokio::time::sleep_until(until.into()).await;
            } => {}
            _ = signals.recv() => interrupted = true,
        }
        stop.store(true, Ordering::Relaxed);
        // In-flight requests end within the request timeout.
        for c in std::mem::take(&mut clients.0) {
            let _ = c.await;
        }
    }

    // Final phase: heal, wait for recovery, read every key from every node.
    let heal_errors = nemesis.heal_all().await;
    let healed_at = start.elapsed();
    let mut f = Findings::default();
    for e in heal_errors {
        f.notes.push(format!("final heal: {e}"));
    }
    if !interrupted {
        eprintln!(
            "chaos: healed; waiting for recovery (bound {:?})",
            args.recovery_bound
        );
        f.recovery = recover(&nodes, args.recovery_bound, args.request_timeout).await;
        match f.recovery {
            Some(d) => eprintln!("chaos: recovered in {} ms", d.as_millis()),
            None => f.violations.push(format!(
                "no recovery: within {:?} of the final heal the nodes did not agree on one leader and commit a write",
                args.recovery_bound
            )),
        }
        let keys: Vec<String> = if args.scenario.is_some() {
            vec![client::key_name(0)]
        } else {
            (0..args.keys as usize).map(client::key_name).collect()
        };
        final_reads(
            &nodes,
            &keys,
            args.clients as usize,
            start,
            &recorder,
            args.request_timeout,
        )
        .await;
        match converged_values(&nodes, &keys, args.request_timeout).await {
            Ok(()) => {}
            Err(e) => f.violations.push(e),
        }
    }
    let end = start.elapsed();
    watch_stop.store(true, Ordering::Relaxed);
    for w in std::mem::take(&mut watchers.0) {
        let _ = w.await;
    }
    // The nemesis owned the processes; hand them back for the final stop.
    *children = std::mem::take(&mut nemesis.procs.children);
    *state = nemesis.procs.state.clone();

    if interrupted {
        eprintln!("chaos: interrupted; stopping the cluster without checking");
        return Ok(ExitCode::from(130));
    }
    let ops = recorder.take();
    if recorder.full.load(Ordering::Relaxed) {
        f.notes.push(format!(
            "history reached --max-ops {}; clients stopped early",
            args.max_ops
        ));
    }
    let events = watch_log.events();
    let dropped = watch_log.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        f.notes.push(format!(
            "{dropped} watch events beyond {} were not kept",
            watch::MAX_ROLE_EVENTS
        ));
    }
    f.notes.push(format!(
        "leadership: {} role events from watch streams, {} status samples; {} stream connections, {} lag notices (each followed by a reconnect)",
        events.iter().filter(|e| e.source == "watch").count(),
        events.iter().filter(|e| e.source == "status").count(),
        watch_log.connects.load(Ordering::Relaxed),
        watch_log.lagged.load(Ordering::Relaxed)
    ));
    let windows = nemesis.windows.clone();
    let net = NetReport {
        description: network,
        mechanism: nemesis.links.mechanism(),
        events: nemesis.links.events().to_vec(),
    };
    let verdict = analyse(args, &ops, &events, &mut f);
    let summary = write_outputs(
        args, seed, out, &ops, &events, &windows, &net, &f, &verdict, healed_at, end,
    )?;
    print!("{summary}");
    Ok(match verdict {
        _ if !f.violations.is_empty() => ExitCode::from(EXIT_VIOLATION),
        checker::Verdict::Unknown(_) => ExitCode::from(EXIT_UNKNOWN),
        _ => ExitCode::SUCCESS,
    })
}

/// The fixed stale-read scenario: write through the leader, cut the leader
/// off, write through the new leader, then read stale from the old one.
async fn stale_read_scenario(
    nodes: &[NodeAddr],
    nemesis: &mut Nemesis<ChaosProcs>,
    start: Instant,
    recorder: &Recorder,
    timeout: Duration,
) -> Result<()> {
    let key = client::key_name(0);
    let old = nemesis::find_leader(nodes)
        .await
        .ok_or_else(|| anyhow!("stale-read scenario: no leader"))?;
    let node = |id: u64| {
        nodes
            .iter()
            .find(|n| n.id == id)
            .cloned()
            .expect("leader is a cluster node")
    };
    let record = |client: usize,
                  node: u64,
                  req: &KvRequest,
                  ex: client::Executed,
                  t0: Duration,
                  t1: Duration| {
        let (f, value, expected, stale) = match req {
            KvRequest::Read { stale, .. } => (OpKind::Read, ex.value.clone(), None, *stale),
            KvRequest::Write { value, .. } => (OpKind::Write, Some(value.clone()), None, false),
            KvRequest::Cas { expected, new, .. } => (
                OpKind::Cas,
                Some(new.clone()),
                Some(expected.clone()),
                false,
            ),
        };
        recorder.push(
            OpRecord {
                id: 0,
                client,
                node,
                answered_by: ex.answered_by,
                key: key.clone(),
                f,
                value,
                expected,
                current: ex.current,
                outcome: ex.outcome,
                invoke_ns: client::nanos(t0),
                complete_ns: client::nanos(t1),
                status: ex.status,
                error: ex.error,
                stale,
                is_final: false,
            },
            usize::MAX,
        );
        ex.outcome
    };
    let run_op = |client: usize, target: NodeAddr, req: KvRequest, id: &'static str| async move {
        let t0 = start.elapsed();
        let ex = execute(nodes, &target, &req, timeout, id).await;
        let t1 = start.elapsed();
        record(client, target.id, &req, ex, t0, t1)
    };
    let first = KvRequest::Write {
        key: key.clone(),
        value: "before-isolation".into(),
    };
    if run_op(0, node(old), first, "scenario-1").await != Outcome::Ok {
        bail!("stale-read scenario: the first write did not succeed");
    }
    let isolate = nemesis::Step {
        at: Duration::ZERO,
        hold: Duration::ZERO,
        fault: nemesis::Fault::Isolate(nemesis::Target::Node(old)),
    };
    let others: Vec<NodeAddr> = nodes.iter().filter(|n| n.id != old).cloned().collect();
    let cuts = nemesis::cuts(
        &isolate.fault,
        &nodes.iter().map(|n| n.id).collect::<Vec<_>>(),
        None,
    )
    .expect("isolating a node is a partition");
    let t_start = client::nanos(start.elapsed());
    let events_before = nemesis.links.events().len();
    let errors = nemesis.links.cut(&cuts).await;
    if !errors.is_empty() {
        bail!(
            "stale-read scenario: isolating node {old}: {}",
            errors.join("; ")
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let new = loop {
        if let Some(l) = nemesis::find_leader(&others).await {
            break l;
        }
        if Instant::now() >= deadline {
            bail!("stale-read scenario: the majority elected no leader within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let second = KvRequest::Write {
        key: key.clone(),
        value: "after-isolation".into(),
    };
    if run_op(1, node(new), second, "scenario-2").await != Outcome::Ok {
        bail!("stale-read scenario: the write through the new leader {new} did not succeed");
    }
    let stale = KvRequest::Read {
        key: key.clone(),
        stale: true,
    };
    run_op(2, node(old), stale, "scenario-3").await;
    nemesis.windows.push(FaultWindow {
        label: format!("isolate old leader {old}"),
        kind: "partition".into(),
        start_ns: t_start,
        end_ns: client::nanos(start.elapsed()),
        nodes: vec![old],
        error: None,
        links: nemesis.links.events()[events_before..]
            .iter()
            .map(NetEvent::label)
            .collect(),
    });
    Ok(())
}

/// Waits until every node answers, one leader leads and every node follows
/// it in the same term, and a write commits; returns how long that took, or
/// `None` past `bound`.
async fn recover(nodes: &[NodeAddr], bound: Duration, timeout: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let deadline = t0 + bound;
    let mut probe_n = 0u64;
    while Instant::now() < deadline {
        let statuses = futures::future::join_all(
            nodes
                .iter()
                .map(|n| crate::http::status(&n.http, Duration::from_millis(500))),
        )
        .await;
        let all: Vec<_> = statuses.into_iter().flatten().collect();
        let leaders: Vec<_> = all.iter().filter(|s| s.is_leader()).collect();
        if all.len() == nodes.len() {
            if let [l] = leaders.as_slice() {
                if all
                    .iter()
                    .all(|s| s.leader == Some(l.id) && s.term == l.term)
                {
                    probe_n += 1;
                    let target = nodes.iter().find(|n| n.id == l.id).unwrap_or(&nodes[0]);
                    let req = KvRequest::Write {
                        key: "chaos-recovery-probe".into(),
                        value: format!("probe-{probe_n}"),
                    };
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .min(timeout);
                    let id = format!("recovery-probe-{probe_n}");
                    if execute(nodes, target, &req, left, &id).await.outcome == Outcome::Ok {
                        return Some(t0.elapsed());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Linearizable reads of every key from every node, recorded as the final
/// client's operations.
async fn final_reads(
    nodes: &[NodeAddr],
    keys: &[String],
    client: usize,
    start: Instant,
    recorder: &Recorder,
    timeout: Duration,
) {
    for key in keys {
        for node in nodes {
            let req = KvRequest::Read {
                key: key.clone(),
                stale: false,
            };
            let t0 = start.elapsed();
            let ex = execute(nodes, node, &req, timeout, "final-read").await;
            let t1 = start.elapsed();
            recorder.push(
                OpRecord {
                    id: 0,
                    client,
                    node: node.id,
                    answered_by: ex.answered_by,
                    key: key.clone(),
                    f: OpKind::Read,
                    value: ex.value,
                    expected: None,
                    current: None,
                    outcome: ex.outcome,
                    invoke_ns: client::nanos(t0),
                    complete_ns: client::nanos(t1),
                    status: ex.status,
                    error: ex.error,
                    stale: false,
                    is_final: true,
                },
                usize::MAX,
            );
        }
    }
}

/// Once every node has applied the same index, every node's local (stale)
/// read of every key must agree: the replicas converged.
async fn converged_values(
    nodes: &[NodeAddr],
    keys: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let statuses = futures::future::join_all(
            nodes
                .iter()
                .map(|n| crate::http::status(&n.http, Duration::from_millis(500))),
        )
        .await;
        let applied: BTreeSet<u64> = statuses.iter().flatten().map(|s| s.applied_index).collect();
        let answered = statuses.iter().flatten().count();
        if answered == nodes.len() && applied.len() == 1 {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "replicas did not converge: applied indexes {applied:?} ({answered} of {} nodes answered) 10 s after recovery",
                nodes.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for key in keys {
        let mut seen: BTreeMap<Option<String>, Vec<u64>> = BTreeMap::new();
        for node in nodes {
            let req = KvRequest::Read {
                key: key.clone(),
                stale: true,
            };
            // Only this node's own answer counts: no redirects for stale reads.
            let ex = execute(std::slice::from_ref(node), node, &req, timeout, "converge").await;
            if ex.outcome != Outcome::Ok {
                return Err(format!(
                    "replica check: node {} did not answer a local read of {key:?}: {:?}",
                    node.id, ex.error
                ));
            }
            seen.entry(ex.value).or_default().push(node.id);
        }
        if seen.len() > 1 {
            return Err(format!("replicas diverge on key {key:?}: {seen:?}"));
        }
    }
    Ok(())
}

/// `--check-history FILE`: the history checks alone, on a saved history.
fn check_history_file(args: &ChaosArgs, path: &Path) -> Result<ExitCode> {
    let file = std::fs::File::open(path)
        .map_err(|e| UsageError::new(format!("cannot open {}: {e}", path.display())))?;
    let ops = history::read_jsonl(std::io::BufReader::new(file))
        .map_err(|e| UsageError::new(format!("{}: {e:#}", path.display())))?;
    let mut f = Findings::default();
    let verdict = analyse(args, &ops, &[], &mut f);
    println!("{} operations from {}", ops.len(), path.display());
    println!("linearizability: {verdict}");
    for n in &f.notes {
        println!("  {n}");
    }
    for v in &f.violations {
        println!("violation: {v}");
    }
    Ok(if !f.violations.is_empty() {
        ExitCode::from(EXIT_VIOLATION)
    } else if matches!(verdict, checker::Verdict::Unknown(_)) {
        ExitCode::from(EXIT_UNKNOWN)
    } else {
        println!("PASS");
        ExitCode::SUCCESS
    })
}

/// Runs every check over the collected data.
fn analyse(
    args: &ChaosArgs,
    ops: &[OpRecord],
    events: &[watch::RoleEvent],
    f: &mut Findings,
) -> checker::Verdict {
    let check_ops = history::to_check_ops(ops);
    let t0 = Instant::now();
    eprintln!(
        "chaos: checking {} operations for linearizability...",
        check_ops.len()
    );
    let (verdict, stats) = checker::check(&check_ops, &checker::Budget::with_time(args.check_time));
    f.notes.push(format!(
        "linearizability: {} ops over {} keys checked in {} ms ({} unknown writes never observed, so placed last; {} search steps; memo peak {})",
        stats.ops_checked,
        stats.keys,
        t0.elapsed().as_millis(),
        stats.unknown_dropped,
        stats.steps,
        stats.max_cache_entries
    ));
    match &verdict {
        checker::Verdict::Violation(v) => {
            f.violations
                .push(format!("not linearizable: {}", v.explanation));
            f.marks.blocking = Some(v.blocking_op);
            f.marks.related.extend(v.related.iter().copied());
            f.marks.caption = Some(v.explanation.clone());
            let tail: Vec<String> = v
                .prefix
                .iter()
                .rev()
                .take(5)
                .rev()
                .map(|i| i.to_string())
                .collect();
            f.notes.push(format!(
                "  key {:?}: longest valid prefix {} ops (last: {}), register then {}",
                v.key,
                v.prefix.len(),
                tail.join(" "),
                v.state_after_prefix
                    .as_deref()
                    .map_or("absent".to_string(), |s| format!("{s:?}"))
            ));
            for &id in std::iter::once(&v.blocking_op).chain(v.related.iter()) {
                if let Some(op) = ops.get(id) {
                    f.notes.push(format!("  {}", report::describe(op)));
                }
            }
        }
        checker::Verdict::Unknown(why) => f.notes.push(format!("linearizability: unknown, {why}")),
        checker::Verdict::Linearizable => {}
    }
    let (lost, unverified) = history::lost_writes(ops);
    for l in &lost {
        f.violations.push(format!(
            "lost write: op {} wrote {:?} to {:?} and was acknowledged, but the final reads show {} (written by {})",
            l.op,
            l.value,
            l.key,
            l.final_value.as_deref().map_or("absent".to_string(), |s| format!("{s:?}")),
            l.final_writer.map_or("no operation".to_string(), |w| format!("op {w}, which finished before it began"))
        ));
        f.marks.related.push(l.op);
    }
    if !unverified.is_empty() {
        f.violations.push(format!(
            "no successful final read of keys {unverified:?}: their acknowledged writes cannot be verified"
        ));
    }
    for t in watch::two_leaders(events) {
        f.violations.push(format!(
            "two leaders in term {}: {:?} (claims as (reporting node, leader): {:?})",
            t.term, t.leaders, t.claims
        ));
    }
    verdict
}

/// What the link mechanism was and did, for the report.
#[derive(Debug)]
struct NetReport {
    description: String,
    mechanism: &'static str,
    events: Vec<NetEvent>,
}

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    args: &ChaosArgs,
    seed: u64,
    out: &Path,
    ops: &[OpRecord],
    events: &[watch::RoleEvent],
    windows: &[FaultWindow],
    net: &NetReport,
    f: &Findings,
    verdict: &checker::Verdict,
    healed_at: Duration,
    end: Duration,
) -> Result<String> {
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = out.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))
    };
    let mut jsonl = Vec::new();
    history::write_jsonl(ops, &mut jsonl).context("cannot encode the history")?;
    write("history.jsonl", &jsonl)?;
    let mut ev = String::new();
    for w in windows {
        ev.push_str(&serde_json::json!({ "type": "fault", "fault": w }).to_string());
        ev.push('\n');
    }
    for e in &net.events {
        ev.push_str(
            &serde_json::json!({ "type": "net", "label": e.label(), "event": e }).to_string(),
        );
        ev.push('\n');
    }
    for e in events {
        ev.push_str(&serde_json::json!({ "type": "role", "event": e }).to_string());
        ev.push('\n');
    }
    write("events.jsonl", ev.as_bytes())?;

    let leaders = watch::leaders_by_term(events);
    let headline = if !f.violations.is_empty() {
        format!("FAIL: {}", f.violations[0])
    } else if let checker::Verdict::Unknown(why) = verdict {
        format!("UNKNOWN: linearizability not decided ({why})")
    } else {
        "PASS: linearizable, no lost writes, one leader per term, recovered".to_string()
    };
    let nemesis_names: Vec<String> = args
        .nemesis
        .iter()
        .map(|k| format!("{k:?}").to_lowercase())
        .collect();
    let mut s = String::new();
    s.push_str(&format!("\nchaos verdict: {headline}\n\n"));
    let nemesis_list = if nemesis_names.is_empty() {
        "none".to_string()
    } else {
        nemesis_names.join(",")
    };
    let shape = match &args.scenario {
        Some(name) => format!("scenario {name}"),
        None => format!(
            "{} clients · {} keys · nemesis {nemesis_list}",
            args.clients, args.keys
        ),
    };
    s.push_str(&format!(
        "seed {seed} · {} nodes over {} · {:.1} s · {shape}\n\n",
        args.nodes,
        args.transport.as_str(),
        end.as_secs_f64(),
    ));
    s.push_str(&format!("network: {}\n\n", net.description));
    s.push_str(&report::ops_table(ops));
    s.push_str(&format!("\nfaults injected: {}\n", windows.len()));
    for w in windows {
        s.push_str(&format!(
            "  {:>7.2}s..{:>7.2}s  {}{}\n",
            w.start_ns as f64 / 1e9,
            w.end_ns as f64 / 1e9,
            w.label,
            w.error
                .as_deref()
                .map(|e| format!("  [{e}]"))
                .unwrap_or_default()
        ));
        if !w.links.is_empty() {
            s.push_str(&format!(
                "                      links: {}\n",
                w.links.join(", ")
            ));
        }
    }
    let count = |action: &str| net.events.iter().filter(|e| e.action == action).count();
    s.push_str(&format!(
        "link changes ({}): {} cuts, {} heals\n",
        net.mechanism,
        count("cut"),
        count("heal")
    ));
    s.push_str(&format!(
        "leader changes: {} ({} leaders seen over terms {})\n",
        leaders.len().saturating_sub(1),
        leaders.len(),
        match (leaders.first(), leaders.last()) {
            (Some(a), Some(b)) => format!("{}..{}", a.1, b.1),
            _ => "-".to_string(),
        }
    ));
    s.push_str(&format!(
        "final heal at {:.2}s; recovery: {}\n",
        healed_at.as_secs_f64(),
        f.recovery
            .map_or("none within the bound".to_string(), |d| format!(
                "{} ms (bound {:?})",
                d.as_millis(),
                args.recovery_bound
            ))
    ));
    s.push_str("\nchecks:\n");
    s.push_str(&format!("  linearizability: {verdict}\n"));
    for n in &f.notes {
        s.push_str(&format!("  {n}\n"));
    }
    if f.violations.is_empty() {
        s.push_str("  violations: none\n");
    } else {
        s.push_str(&format!("  violations ({}):\n", f.violations.len()));
        for v in &f.violations {
            s.push_str(&format!("    - {v}\n"));
        }
    }
    s.push_str(&format!(
        "\nfiles in {}:\n  summary.txt  history.jsonl  events.jsonl  timeline.html  cluster/ (node data and logs)\n",
        out.display()
    ));
    let net_flag = if args.net == "api" {
        String::new()
    } else {
        format!(" --net {}", args.net)
    };
    let replay = match &args.scenario {
        Some(name) => format!(
            "--nodes {} --transport {}{net_flag} --scenario {name}",
            args.nodes,
            args.transport.as_str()
        ),
        None => format!(
            "--nodes {} --transport {}{net_flag} --time {}s --clients {} --keys {} --nemesis {nemesis_list} --nemesis-interval {}s",
            args.nodes,
            args.transport.as_str(),
            args.time.as_secs_f64(),
            args.clients,
            args.keys,
            args.nemesis_interval.as_secs_f64()
        ),
    };
    s.push_str(&format!(
        "replay the same choices: cargo xtask chaos --seed {seed} {replay}\n"
    ));
    write("summary.txt", s.as_bytes())?;
    let title = format!("chaos run, seed {seed}");
    let html = report::timeline_html(
        &title,
        &format!("verdict: {headline}"),
        ops,
        windows,
        &leaders,
        &f.marks,
    );
    write("timeline.html", html.as_bytes())?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("99999999h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn only_process_transports_are_accepted() {
        assert_eq!(parse_transport("tcp"), Ok(Transport::Tcp));
        assert_eq!(parse_transport("quic"), Ok(Transport::Quic));
        assert!(parse_transport("mem").is_err());
    }
}
