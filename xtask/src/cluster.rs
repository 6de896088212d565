//! `cargo xtask cluster`: start a local cluster of raft-node processes and
//! watch it live; and, from another terminal, break it (partition, isolate,
//! kill, pause) and mend it (heal, resume, restart), or stop it.
//!
//! This module starts, signals and asks processes; it must never decide a
//! Raft question itself (who leads is always what the nodes report).

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use nix::sys::signal::Signal;
use serde_json::json;

use crate::http;
use crate::live::{self, Exit, Reach};
use crate::partition;
use crate::procs::{self, Children, Probe, Target, STOP_BOUND};
use crate::state::{ClusterState, NodeEntry, ProcessEntry, Supervisor, Transport};
use crate::{repo_root, Signals, UsageError};

/// Bound on one admin or status call.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// `cargo xtask cluster ...`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: Option<ClusterCommand>,
    #[command(flatten)]
    start: StartArgs,
}

/// Where to find a running cluster.
#[derive(Debug, Clone, Args)]
pub struct Where {
    /// The cluster's data directory [default: .cluster at the repository root].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl Where {
    fn dir(&self) -> Result<PathBuf> {
        resolve_data_dir(self.data_dir.as_deref())
    }
}

/// Options of `cargo xtask cluster` (starting a cluster).
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    pub nodes: u64,
    /// How the nodes talk: tcp and quic run a process per node, mem runs
    /// every node in one process.
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: Transport,
    /// Node i's Raft transport listens on P+i and its HTTP API on P+1000+i;
    /// 0 picks free ports.
    #[arg(long, value_name = "P", default_value_t = 7000)]
    pub base_port: u16,
    #[command(flatten)]
    pub place: Where,
    /// Keep the nodes' data from the last cluster in the data directory
    /// (by default each start begins empty).
    #[arg(long)]
    pub keep_data: bool,
    /// Run this raft-node binary instead of building one.
    #[arg(long, value_name = "FILE")]
    pub raft_node: Option<PathBuf>,
    /// Give up if no leader is elected within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub leader_timeout: u64,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Show every node's role, term, commit index and cut links.
    Status(Where),
    /// Cut the cluster into groups: `partition 1 2,3` (or '1 | 2,3', 1/2,3).
    /// Nodes not named form one more group.
    Partition {
        /// The groups.
        #[arg(required = true, num_args = 1..)]
        groups: Vec<String>,
        #[command(flatten)]
        place: Where,
    },
    /// Cut one node from every other.
    Isolate {
        /// The node id.
        id: u64,
        #[command(flatten)]
        place: Where,
    },
    /// Undo every cut on every node.
    Heal(Where),
    /// Kill a node's process (SIGKILL).
    Kill {
        /// The node id.
        id: u64,
        #[command(flatten)]
        place: Where,
    },
    /// Freeze a node's process (SIGSTOP).
    Pause {
        /// The node id.
        id: u64,
        #[command(flatten)]
        place: Where,
    },
    /// Thaw a paused node (SIGCONT).
    Resume {
        /// The node id.
        id: u64,
        #[command(flatten)]
        place: Where,
    },
    /// Stop a node (if it runs) and start it again with its data.
    Restart {
        /// The node id.
        id: u64,
        #[command(flatten)]
        place: Where,
    },
    /// Stop every node and the live view.
    Stop(Where),
}

/// Runs `cargo xtask cluster ...`.
pub async fn run(args: ClusterArgs) -> Result<ExitCode> {
    match args.command {
        None => start_and_watch(args.start).await,
        Some(ClusterCommand::Status(w)) => status(&running(&w.dir()?)?).await,
        Some(ClusterCommand::Partition { groups, place }) => {
            let state = running(&place.dir()?)?;
            let groups = partition::parse_groups(&groups, &state.ids()).map_err(UsageError::new)?;
            apply_partition(&state, &groups).await
        }
        Some(ClusterCommand::Isolate { id, place }) => isolate(&running(&place.dir()?)?, id).await,
        Some(ClusterCommand::Heal(w)) => heal(&running(&w.dir()?)?).await,
        Some(ClusterCommand::Kill { id, place }) => signal_node(&place, id, Signal::SIGKILL),
        Some(ClusterCommand::Pause { id, place }) => signal_node(&place, id, Signal::SIGSTOP),
        Some(ClusterCommand::Resume { id, place }) => signal_node(&place, id, Signal::SIGCONT),
        Some(ClusterCommand::Restart { id, place }) => restart(&place, id).await,
        Some(ClusterCommand::Stop(w)) => stop(&w.dir()?),
    }
}

/// The data directory: `dir` made absolute, or `.cluster` at the repository
/// root.
pub fn resolve_data_dir(dir: Option<&Path>) -> Result<PathBuf> {
    match dir {
        Some(d) => {
            std::path::absolute(d).with_context(|| format!("bad data directory {}", d.display()))
        }
        None => Ok(repo_root().join(".cluster")),
    }
}

// ---------------------------------------------------------------------------
// Starting

/// Everything needed to start a cluster's processes.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The transport.
    pub transport: Transport,
    /// Labels of the nodes, ids 1, 2, ...
    pub labels: Vec<String>,
    /// Base port (see [`StartArgs::base_port`]); 0 picks free ports.
    pub base_port: u16,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The raft-node binary.
    pub binary: PathBuf,
    /// Extra flags for every node.
    pub extra_args: Vec<String>,
}

/// Where one node runs when it is not on the loopback: an address of its
/// own (its ports are its own too) and the command prefix that puts its
/// process there, such as `ip netns exec NS`. The prefix must exec the
/// node in place (see `procs::spawn_via`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The node's IP address.
    pub ip: String,
    /// Its Raft transport's port.
    pub raft_port: u16,
    /// Its HTTP API's port.
    pub http_port: u16,
    /// The command prefix that starts it there.
    pub wrapper: Vec<String>,
}

/// Builds raft-node in release mode and returns the binary's path.
pub fn build_raft_node() -> Result<PathBuf> {
    eprintln!("building raft-node (cargo build --release -p raft-node)...");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "build",
            "--release",
            "-p",
            "raft-node",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!(
            "building raft-node failed ({})",
            procs::describe_exit(out.status)
        );
    }
    find_executable(&String::from_utf8_lossy(&out.stdout), "raft-node")
        .ok_or_else(|| anyhow!("cargo built raft-node but reported no raft-node executable"))
}

/// Finds the executable of binary target `name` in cargo's JSON messages.
fn find_executable(messages: &str, name: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
}

/// Ports for `n` nodes: (raft, http) per node. For mem the HTTP ports are
/// consecutive, as `raft-node --transport mem` requires.
pub fn choose_ports(base: u16, n: u64, transport: Transport) -> Result<Vec<(u16, u16)>> {
    if base == 0 {
        return free_ports(n, transport);
    }
    let last = u64::from(base) + 1000 + n;
    if last > u64::from(u16::MAX) {
        return Err(UsageError::new(format!(
            "--base-port {base} is too high: node {n}'s HTTP port would be {last}"
        ))
        .into());
    }
    let ports: Vec<(u16, u16)> = (1..=n)
        .map(|i| (base + i as u16, base + 1000 + i as u16))
        .collect();
    for &(raft, http) in &ports {
        let mut tcp = vec![http];
        if transport != Transport::Mem {
            tcp.push(raft);
        }
        for p in tcp {
            if TcpListener::bind(("127.0.0.1", p)).is_err() {
                return Err(UsageError::new(format!(
                    "port {p} is in use (is another cluster running? `cargo xtask cluster stop`, or pick other ports with --base-port)"
                ))
                .into());
            }
        }
        if transport == Transport::Quic && std::net::UdpSocket::bind(("127.0.0.1", raft)).is_err() {
            return Err(UsageError::new(format!(
                "UDP port {raft} is in use (pick other ports with --base-port)"
            ))
            .into());
        }
    }
    Ok(ports)
}

/// Free ports from the OS. Listeners are held until all are chosen so no
/// port is handed out twice; another program could still take one before
/// a node binds it, which the node then reports.
fn free_ports(n: u64, transport: Transport) -> Result<Vec<(u16, u16)>> {
    let bind = || -> Result<(TcpListener, u16)> {
        let l = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
        let p = l.local_addr()?.port();
        Ok((l, p))
    };
    let mut held = Vec::new();
    if transport == Transport::Mem {
        // Consecutive HTTP ports: take a free one and check the next n-1.
        for _ in 0..100 {
            let (l, p) = bind()?;
            if u64::from(p) + n > u64::from(u16::MAX) {
                continue;
            }
            let rest: Vec<_> = (1..n as u16)
                .map_while(|k| TcpListener::bind(("127.0.0.1", p + k)).ok())
                .collect();
            if rest.len() + 1 == n as usize {
                return Ok((0..n as u16).map(|k| (0, p + k)).collect());
            }
            held.push(l);
        }
        bail!("cannot find {n} consecutive free ports");
    }
    let mut ports = Vec::new();
    for _ in 0..n {
        let (l1, raft) = bind()?;
        if transport == Transport::Quic {
            // QUIC listens on UDP: make sure that side is free too.
            std::net::UdpSocket::bind(("127.0.0.1", raft))
                .with_context(|| format!("UDP port {raft} is taken"))?;
        }
        let (l2, http) = bind()?;
        held.push(l1);
        held.push(l2);
        ports.push((raft, http));
    }
    Ok(ports)
}

/// Removes what an earlier cluster left in `dir`: node data, logs and
/// certificates (only names this xtask creates).
fn clean_data_dir(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name == "certs"
            || name == "mem"
            || name == "mem.log"
            || name
                .strip_prefix("node-")
                .map(|r| r.strip_suffix(".log").unwrap_or(r))
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
        if ours {
            let path = e.path();
            let r = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            r.with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

/// The command line of every node process of a cluster.
fn plan(l: &Launch, ports: &[(u16, u16)]) -> (Vec<NodeEntry>, Vec<ProcessEntry>) {
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let addrs: Vec<(String, String)> = ports
        .iter()
        .map(|&(raft, http)| (addr(raft), addr(http)))
        .collect();
    plan_at(l, &addrs)
}

/// [`plan`] with each node's (raft, http) address given.
fn plan_at(l: &Launch, addrs: &[(String, String)]) -> (Vec<NodeEntry>, Vec<ProcessEntry>) {
    let nodes: Vec<NodeEntry> = l
        .labels
        .iter()
        .zip(addrs)
        .enumerate()
        .map(|(i, (label, (raft, http)))| NodeEntry {
            id: i as u64 + 1,
            label: label.clone(),
            raft_addr: (l.transport != Transport::Mem).then(|| raft.clone()),
            http_addr: http.clone(),
        })
        .collect();
    let dd = |name: &str| l.data_dir.join(name).display().to_string();
    if l.transport == Transport::Mem {
        let mut args = vec![
            "--transport".to_owned(),
            "mem".to_owned(),
            "--nodes".to_owned(),
            nodes.len().to_string(),
            "--http-addr".to_owned(),
            nodes[0].http_addr.clone(),
            "--data-dir".to_owned(),
            dd("mem"),
            "--enable-fault-injection".to_owned(),
        ];
        args.extend(l.extra_args.iter().cloned());
        let process = ProcessEntry {
            pid: 0,
            args,
            log: l.data_dir.join("mem.log"),
            nodes: nodes.iter().map(|n| n.id).collect(),
            paused: false,
        };
        return (nodes, vec![process]);
    }
    let peers: Vec<String> = nodes
        .iter()
        .flat_map(|n| {
            [
                "--peer".to_owned(),
                format!(
                    "{}={},{}",
                    n.id,
                    n.raft_addr.clone().unwrap_or_default(),
                    n.http_addr
                ),
            ]
        })
        .collect();
    let processes = nodes
        .iter()
        .map(|n| {
            let mut args = vec![
                "--id".to_owned(),
                n.id.to_string(),
                "--transport".to_owned(),
                l.transport.as_str().to_owned(),
                "--data-dir".to_owned(),
                dd(&format!("node-{}", n.id)),
                "--raft-addr".to_owned(),
                n.raft_addr.clone().unwrap_or_default(),
                "--http-addr".to_owned(),
                n.http_addr.clone(),
            ];
            args.extend(peers.iter().cloned());
            if l.transport == Transport::Quic {
                let certs = |f: &str| l.data_dir.join("certs").join(f).display().to_string();
                args.extend([
                    "--tls-cert".to_owned(),
                    certs(&format!("node-{}.pem", n.id)),
                    "--tls-key".to_owned(),
                    certs(&format!("node-{}.key", n.id)),
                    "--tls-ca".to_owned(),
                    certs("ca.pem"),
                ]);
            }
            args.push("--enable-fault-injection".to_owned());
            args.extend(l.extra_args.iter().cloned());
            ProcessEntry {
                pid: 0,
                args,
                log: l.data_dir.join(format!("node-{}.log", n.id)),
                nodes: vec![n.id],
                paused: false,
            }
        })
        .collect();
    (nodes, processes)
}

/// Development certificates for quic: `raft-node gen-certs`.
fn make_certs(binary: &Path, dir: &Path, ids: &[u64]) -> Result<()> {
    let out = Command::new(binary)
        .arg("gen-certs")
        .arg("--out")
        .arg(dir)
        .arg("--ids")
        .arg(ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} gen-certs", binary.display()))?;
    if !out.status.success() {
        bail!(
            "{} gen-certs failed ({}): {}",
            binary.display(),
            procs::describe_exit(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Starts the processes of a cluster (fresh data unless `keep_data`) and
/// writes its state file. The processes belong to `children`.
pub fn launch(l: &Launch, keep_data: bool, children: &mut Children) -> Result<ClusterState> {
    std::fs::create_dir_all(&l.data_dir)
        .with_context(|| format!("cannot create data directory {}", l.data_dir.display()))?;
    if !keep_data {
        clean_data_dir(&l.data_dir)?;
    }
    let ports = choose_ports(l.base_port, l.labels.len() as u64, l.transport)?;
    let (nodes, processes) = plan(l, &ports);
    start_processes(l, nodes, processes, &[], children)
}

/// Starts the processes of a cluster whose nodes each run on a [`Host`]
/// of their own (`hosts[i]` is node i+1's; fresh data; tcp or quic), and
/// writes its state file. The processes belong to `children`.
pub fn launch_on(l: &Launch, hosts: &[Host], children: &mut Children) -> Result<ClusterState> {
    if l.transport == Transport::Mem || hosts.len() != l.labels.len() {
        bail!(
            "a cluster on hosts needs a process per node (tcp or quic) and one host per node ({} hosts, {} nodes)",
            hosts.len(),
            l.labels.len()
        );
    }
    std::fs::create_dir_all(&l.data_dir)
        .with_context(|| format!("cannot create data directory {}", l.data_dir.display()))?;
    clean_data_dir(&l.data_dir)?;
    let addrs: Vec<(String, String)> = hosts
        .iter()
        .map(|h| {
            (
                format!("{}:{}", h.ip, h.raft_port),
                format!("{}:{}", h.ip, h.http_port),
            )
        })
        .collect();
    let (nodes, processes) = plan_at(l, &addrs);
    let wrappers: Vec<Vec<String>> = hosts.iter().map(|h| h.wrapper.clone()).collect();
    start_processes(l, nodes, processes, &wrappers, children)
}

/// Starts `processes` (process i through `wrappers[i]`, if given).
fn start_processes(
    l: &Launch,
    nodes: Vec<NodeEntry>,
    processes: Vec<ProcessEntry>,
    wrappers: &[Vec<String>],
    children: &mut Children,
) -> Result<ClusterState> {
    if l.transport == Transport::Quic {
        let ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();
        make_certs(&l.binary, &l.data_dir.join("certs"), &ids)?;
    }
    let mut state = ClusterState::new(l.transport, l.binary.clone(), l.data_dir.clone(), nodes);
    for (i, mut p) in processes.into_iter().enumerate() {
        let wrapper = wrappers.get(i).map(Vec::as_slice).unwrap_or_default();
        let child = procs::spawn_via(wrapper, &l.binary, &p.args, &p.log)?;
        p.pid = child.id();
        children.push(child);
        state.processes.push(p);
    }
    state.save()?;
    Ok(state)
}

/// Waits until exactly one node leads and every node answers and agrees on
/// it; returns (leader id, term). Fails if a process exits or `bound`
/// passes, showing what each node said and the end of each log.
pub async fn wait_for_leader(
    state: &ClusterState,
    children: &mut Children,
    bound: Duration,
    signals: &mut Signals,
) -> Result<(u64, u64)> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some((pid, how)) = children.reap().into_iter().next() {
            let p = state.processes.iter().find(|p| p.pid == pid);
            let log = p.map(|p| p.log.clone()).unwrap_or_default();
            bail!(
                "a node process ({pid}) ended while waiting for a leader: {how}\nlast lines of {}:\n{}",
                log.display(),
                procs::log_tail(&log, 15)
            );
        }
        let model = live::snapshot(state).await;
        let st = live::statuses(&model);
        if st.len() == state.nodes.len() {
            let leaders: Vec<_> = st.values().filter(|s| s.is_leader()).collect();
            if let [l] = leaders.as_slice() {
                if st
                    .values()
                    .all(|s| s.leader == Some(l.id) && s.term == l.term)
                {
                    return Ok((l.id, l.term));
                }
            }
        }
        if Instant::now() >= deadline {
            let mut msg = format!(
                "no leader within {} s; the nodes said:\n{}\n",
                bound.as_secs(),
                model.table(state).join("\n")
            );
            for p in &state.processes {
                msg.push_str(&format!(
                    "last lines of {}:\n{}\n",
                    p.log.display(),
                    procs::log_tail(&p.log, 10)
                ));
            }
            bail!(msg);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = signals.recv() => bail!("interrupted while waiting for a leader"),
        }
    }
}

/// Stops every process of `state` (SIGTERM, then SIGKILL after a bound) and
/// removes the state file.
pub fn stop_processes(state: &ClusterState, children: &mut Children) -> Vec<u32> {
    let targets: Vec<Target<'_>> = state
        .processes
        .iter()
        .map(|p| Target {
            pid: p.pid,
            binary: &state.binary,
            args: &p.args,
        })
        .collect();
    let killed = procs::stop_all(&targets, STOP_BOUND, || {
        children.reap();
    });
    let _ = ClusterState::remove(&state.data_dir);
    killed
}

/// The curl lines that show a newcomer how to use the cluster.
pub fn curl_examples(state: &ClusterState) -> Vec<String> {
    let first = state
        .nodes
        .first()
        .map(|n| n.http_addr.as_str())
        .unwrap_or("");
    let other = state
        .nodes
        .last()
        .map(|n| n.http_addr.as_str())
        .unwrap_or("");
    vec![
        format!("curl -L -XPUT --data-binary hello http://{first}/v1/kv/greeting"),
        format!("curl -L http://{other}/v1/kv/greeting"),
        format!("curl http://{other}/v1/status"),
    ]
}

async fn start_and_watch(args: StartArgs) -> Result<ExitCode> {
    let data_dir = args.place.dir()?;
    if let Some(old) = ClusterState::load(&data_dir)? {
        if is_running(&old) {
            return Err(UsageError::new(format!(
                "a cluster is already running from {} (stop it with `cargo xtask cluster stop`)",
                data_dir.display()
            ))
            .into());
        }
    }
    let binary = match &args.raft_node {
        Some(b) => std::path::absolute(b)?,
        None => build_raft_node()?,
    };
    let spec = Launch {
        transport: args.transport,
        labels: (1..=args.nodes).map(|i| i.to_string()).collect(),
        base_port: args.base_port,
        data_dir: data_dir.clone(),
        binary,
        extra_args: Vec::new(),
    };
    // From here on a ctrl-c must stop the nodes, not kill xtask outright.
    let mut signals = Signals::new()?;
    let mut children = Children::default();
    eprintln!(
        "starting {} nodes over {} in {}...",
        spec.labels.len(),
        spec.transport.as_str(),
        data_dir.display()
    );
    let mut state = launch(&spec, args.keep_data, &mut children)?;
    state.supervisor = Some(Supervisor::this_process());
    state.save()?;

    let outcome = wait_for_leader(
        &state,
        &mut children,
        Duration::from_secs(args.leader_timeout),
        &mut signals,
    )
    .await;
    let exit = match outcome {
        Err(e) => {
            eprintln!("error: {e:#}");
            None
        }
        Ok((leader, term)) => {
            let model = live::snapshot(&state).await;
            println!(
                "\ncluster of {} nodes over {} is up: leader {} at term {term}\n",
                state.nodes.len(),
                state.transport.as_str(),
                state.label(leader)
            );
            for line in model.table(&state) {
                println!("  {line}");
            }
            println!("\ntry it:");
            for line in curl_examples(&state) {
                println!("  {line}");
            }
            println!(
                "\nbreak it from another terminal: cargo xtask cluster partition 1 2,3 | isolate 1 | heal | kill 2 | pause 2 | resume 2 | restart 2 | status | stop"
            );
            println!("ctrl-c stops the cluster\n");
            let tty = std::io::stdout().is_terminal();
            Some(live::run(&data_dir, &mut children, tty, &mut signals).await)
        }
    };
    // Stop from the latest state file: `restart` may have replaced pids.
    let latest = ClusterState::load(&data_dir)
        .ok()
        .flatten()
        .unwrap_or(state);
    eprintln!("\nstopping the nodes...");
    let killed = stop_processes(&latest, &mut children);
    if !killed.is_empty() {
        eprintln!(
            "killed (did not stop within {} s of SIGTERM): pids {killed:?}",
            STOP_BOUND.as_secs()
        );
    }
    eprintln!("stopped. data and logs are in {}", data_dir.display());
    for p in &latest.processes {
        eprintln!("  {}", p.log.display());
    }
    match exit {
        Some(Ok(Exit::Signal | Exit::StateGone)) => Ok(ExitCode::SUCCESS),
        Some(Err(e)) => Err(e),
        None => Ok(ExitCode::FAILURE),
    }
}

// ---------------------------------------------------------------------------
// Commands against a running cluster

/// Whether any part of the cluster still runs.
fn is_running(state: &ClusterState) -> bool {
    state.supervisor.as_ref().is_some_and(Supervisor::alive)
        || state
            .processes
            .iter()
            .any(|p| procs::probe(p.pid, &state.binary, &p.args) != Probe::Gone)
}

/// The running cluster in `dir`, or a usage error saying there is none.
fn running(dir: &Path) -> Result<ClusterState> {
    let Some(state) = ClusterState::load(dir)? else {
        return Err(UsageError::new(format!(
            "no cluster is running (no state file at {}); start one with `cargo xtask cluster`",
            ClusterState::path(dir).display()
        ))
        .into());
    };
    if !is_running(&state) {
        return Err(UsageError::new(format!(
            "no cluster is running (every process in {} has exited); start one with `cargo xtask cluster`",
            ClusterState::path(dir).display()
        ))
        .into());
    }
    Ok(state)
}

async fn status(state: &ClusterState) -> Result<ExitCode> {
    let model = live::snapshot(state).await;
    println!(
        "{} nodes over {} · {}\n",
        state.nodes.len(),
        state.transport.as_str(),
        model.headline()
    );
    for line in model.draw() {
        println!("{line}");
    }
    println!();
    for line in model.table(state) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `f` on every node whose process runs, concurrently; prints one line
/// per node; fails if any node that runs did not do it.
async fn on_nodes<F, Fut>(state: &ClusterState, ids: &[u64], what: &str, f: F) -> Result<ExitCode>
where
    F: Fn(u64, String) -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    let model = live::snapshot(state).await;
    let f = &f;
    let mut calls = Vec::new();
    for &id in ids {
        let node = state.node(id)?;
        let reach = model
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map_or(Reach::Down, |n| n.reach());
        calls.push(async move {
            let r = match reach {
                Reach::Down => Err(anyhow!("not running")),
                Reach::Paused => Err(anyhow!("paused (resume it first)")),
                _ => f(id, node.http_addr.clone()).await,
            };
            (id, r)
        });
    }
    let mut failed = 0;
    for (id, r) in futures::future::join_all(calls).await {
        match r {
            Ok(done) => println!("{}: {done}", state.label(id)),
            Err(e) => {
                failed += 1;
                println!("{}: could not {what}: {e:#}", state.label(id));
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Cuts the cluster into `groups`: every node first heals, then isolates
/// itself from the nodes outside its group.
pub async fn apply_partition(state: &ClusterState, groups: &[BTreeSet<u64>]) -> Result<ExitCode> {
    let cuts = partition::cuts(groups);
    println!("partition: {}", partition::show(groups));
    let ids: Vec<u64> = cuts.keys().copied().collect();
    on_nodes(state, &ids, "apply the partition", |id, addr| {
        let peers = cuts.get(&id).cloned().unwrap_or_default();
        async move {
            http::admin(&addr, "heal", json!({}), CALL_TIMEOUT).await?;
            if peers.is_empty() {
                return Ok("not cut".to_owned());
            }
            http::admin(&addr, "isolate", json!({ "peers": peers }), CALL_TIMEOUT).await?;
            Ok(format!("cut from {}", partition::list(&peers)))
        }
    })
    .await
}

async fn isolate(state: &ClusterState, id: u64) -> Result<ExitCode> {
    state.node(id)?;
    let others: Vec<u64> = state.ids().into_iter().filter(|&o| o != id).collect();
    on_nodes(state, &[id], "isolate it", |_, addr| {
        let others = others.clone();
        async move {
            http::admin(&addr, "isolate", json!({ "peers": others }), CALL_TIMEOUT).await?;
            Ok(format!(
                "cut from every peer ({})",
                partition::list(&others)
            ))
        }
    })
    .await
}

async fn heal(state: &ClusterState) -> Result<ExitCode> {
    on_nodes(state, &state.ids(), "heal", |_, addr| async move {
        http::admin(&addr, "heal", json!({}), CALL_TIMEOUT).await?;
        Ok("every link restored".to_owned())
    })
    .await
}

/// The process of node `id`, refusing mem (one process for every node).
fn node_process(state: &ClusterState, id: u64) -> Result<usize> {
    state.node(id)?;
    if state.transport == Transport::Mem {
        return Err(UsageError::new(
            "with --transport mem every node runs in one process: kill, pause, resume and restart need tcp or quic (isolate and partition work)",
        )
        .into());
    }
    state
        .process_of(id)
        .ok_or_else(|| anyhow!("the state file names no process for node {id}"))
}

fn signal_node(place: &Where, id: u64, sig: Signal) -> Result<ExitCode> {
    let mut state = running(&place.dir()?)?;
    let idx = node_process(&state, id)?;
    let (pid, args) = (state.processes[idx].pid, state.processes[idx].args.clone());
    let label = state.label(id);
    let probe = procs::probe(pid, &state.binary, &args);
    if probe == Probe::Gone {
        println!("{label} is not running (restart it with `cargo xtask cluster restart {id}`)");
        return Ok(ExitCode::FAILURE);
    }
    procs::signal(pid, sig)?;
    let msg = match sig {
        Signal::SIGKILL => {
            let deadline = Instant::now() + Duration::from_secs(5);
            while procs::probe(pid, &state.binary, &args) != Probe::Gone
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            state.processes[idx].paused = false;
            format!("{label} killed (SIGKILL, pid {pid}); bring it back with `cargo xtask cluster restart {id}`")
        }
        Signal::SIGSTOP => {
            state.processes[idx].paused = true;
            format!("{label} paused (SIGSTOP); it is silent but keeps its state: `cargo xtask cluster resume {id}`")
        }
        _ => {
            state.processes[idx].paused = false;
            format!("{label} resumed (SIGCONT)")
        }
    };
    state.save()?;
    println!("{msg}");
    Ok(ExitCode::SUCCESS)
}

async fn restart(place: &Where, id: u64) -> Result<ExitCode> {
    let mut state = running(&place.dir()?)?;
    let idx = node_process(&state, id)?;
    let label = state.label(id);
    {
        let p = &state.processes[idx];
        if procs::probe(p.pid, &state.binary, &p.args) != Probe::Gone {
            println!("stopping {label} (pid {})...", p.pid);
            let t = Target {
                pid: p.pid,
                binary: &state.binary,
                args: &p.args,
            };
            procs::stop_all(&[t], STOP_BOUND, || {});
        }
    }
    let p = &state.processes[idx];
    // Not kept as a child: the node must outlive this command. The live
    // view (or `cluster stop`) stops it through the state file.
    let child = procs::spawn(&state.binary, &p.args, &p.log)?;
    state.processes[idx].pid = child.id();
    state.processes[idx].paused = false;
    state.save()?;
    let addr = state.node(id)?.http_addr.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(st) = http::status(&addr, CALL_TIMEOUT).await {
            println!(
                "{label} restarted (pid {}): {} at term {}, commit {}",
                child.id(),
                st.role,
                st.term,
                st.commit_index
            );
            return Ok(ExitCode::SUCCESS);
        }
        let p = &state.processes[idx];
        if procs::probe(p.pid, &state.binary, &p.args) == Probe::Gone || Instant::now() >= deadline
        {
            println!(
                "{label} did not come back; last lines of {}:\n{}",
                p.log.display(),
                procs::log_tail(&p.log, 15)
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stop(dir: &Path) -> Result<ExitCode> {
    let state = running(dir)?;
    if let Some(sup) = state.supervisor.as_ref().filter(|s| s.alive()) {
        // The live view stops the nodes and removes the state file itself.
        procs::signal(sup.pid, Signal::SIGTERM)?;
        let deadline = Instant::now() + STOP_BOUND + Duration::from_secs(10);
        while sup.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Whatever is left (no live view, or it did not finish): stop directly.
    let latest = ClusterState::load(dir)?.unwrap_or(state);
    let killed = stop_processes(&latest, &mut Children::default());
    if !killed.is_empty() {
        println!(
            "killed pids {killed:?} (they did not stop within {} s of SIGTERM)",
            STOP_BOUND.as_secs()
        );
    }
    println!("cluster stopped; data and logs are in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(transport: Transport) -> Launch {
        Launch {
            transport,
            labels: vec!["1".into(), "2".into(), "3".into()],
            base_port: 7000,
            data_dir: PathBuf::from("/d"),
            binary: PathBuf::from("/bin/raft-node"),
            extra_args: vec!["--tick-ms".into(), "10".into()],
        }
    }

    #[test]
    fn tcp_plan_lists_every_peer_and_enables_fault_injection() {
        let ports = [(7001, 8001), (7002, 8002), (7003, 8003)];
        let (nodes, procs) = plan(&launch(Transport::Tcp), &ports);
        assert_eq!(nodes[1].raft_addr.as_deref(), Some("127.0.0.1:7002"));
        assert_eq!(nodes[1].http_addr, "127.0.0.1:8002");
        assert_eq!(procs.len(), 3);
        let a = procs[1].args.join(" ");
        assert!(a.starts_with("--id 2 --transport tcp --data-dir /d/node-2 --raft-addr 127.0.0.1:7002 --http-addr 127.0.0.1:8002"), "{a}");
        for peer in [
            "1=127.0.0.1:7001,127.0.0.1:8001",
            "2=127.0.0.1:7002,127.0.0.1:8002",
            "3=127.0.0.1:7003,127.0.0.1:8003",
        ] {
            assert!(a.contains(&format!("--peer {peer}")), "{a}");
        }
        assert!(a.contains("--enable-fault-injection"));
        assert!(a.ends_with("--tick-ms 10"));
        assert!(!a.contains("--tls"));
        assert_eq!(procs[1].log, PathBuf::from("/d/node-2.log"));
        assert_eq!(procs[1].nodes, vec![2]);
    }

    #[test]
    fn plan_at_puts_each_node_on_its_own_address() {
        let addrs: Vec<(String, String)> = (1..=3)
            .map(|i| (format!("10.213.5.{i}:7000"), format!("10.213.5.{i}:8000")))
            .collect();
        let (nodes, procs) = plan_at(&launch(Transport::Tcp), &addrs);
        assert_eq!(nodes[2].raft_addr.as_deref(), Some("10.213.5.3:7000"));
        assert_eq!(nodes[2].http_addr, "10.213.5.3:8000");
        let a = procs[0].args.join(" ");
        assert!(
            a.contains("--raft-addr 10.213.5.1:7000 --http-addr 10.213.5.1:8000"),
            "{a}"
        );
        assert!(
            a.contains("--peer 2=10.213.5.2:7000,10.213.5.2:8000"),
            "{a}"
        );
    }

    #[test]
    fn launch_on_refuses_a_host_count_that_does_not_match() {
        let host = Host {
            ip: "10.0.0.1".into(),
            raft_port: 7000,
            http_port: 8000,
            wrapper: Vec::new(),
        };
        let err =
            launch_on(&launch(Transport::Tcp), &[host], &mut Children::default()).unwrap_err();
        assert!(err.to_string().contains("one host per node"), "{err}");
    }

    #[test]
    fn quic_plan_names_each_nodes_certificates() {
        let ports = [(7001, 8001), (7002, 8002), (7003, 8003)];
        let (_, procs) = plan(&launch(Transport::Quic), &ports);
        let a = procs[2].args.join(" ");
        assert!(a.contains("--transport quic"), "{a}");
        assert!(a.contains("--tls-cert /d/certs/node-3.pem --tls-key /d/certs/node-3.key --tls-ca /d/certs/ca.pem"), "{a}");
    }

    #[test]
    fn mem_plan_is_one_process() {
        let ports = [(0, 8001), (0, 8002), (0, 8003)];
        let (nodes, procs) = plan(&launch(Transport::Mem), &ports);
        assert_eq!(procs.len(), 1);
        assert_eq!(procs[0].nodes, vec![1, 2, 3]);
        assert_eq!(
            procs[0].args.join(" "),
            "--transport mem --nodes 3 --http-addr 127.0.0.1:8001 --data-dir /d/mem --enable-fault-injection --tick-ms 10"
        );
        assert_eq!(nodes[2].raft_addr, None);
        assert_eq!(nodes[2].http_addr, "127.0.0.1:8003");
    }

    #[test]
    fn ports_follow_the_base_and_refuse_overflow() {
        let err = choose_ports(65000, 3, Transport::Tcp).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
        assert!(err.to_string().contains("too high"), "{err}");
        // A port held by someone else is named.
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let hp = held.local_addr().unwrap().port();
        if hp > 1001 {
            let err = choose_ports(hp - 1001, 1, Transport::Tcp).unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_some());
            assert!(
                err.to_string().contains(&format!("port {hp} is in use")),
                "{err}"
            );
        }
    }

    #[test]
    fn free_ports_are_distinct_and_consecutive_for_mem() {
        let ports = choose_ports(0, 3, Transport::Tcp).unwrap();
        let all: BTreeSet<u16> = ports.iter().flat_map(|&(a, b)| [a, b]).collect();
        assert_eq!(all.len(), 6);
        let mem = choose_ports(0, 3, Transport::Mem).unwrap();
        assert_eq!(mem[1].1, mem[0].1 + 1);
        assert_eq!(mem[2].1, mem[0].1 + 2);
    }

    #[test]
    fn cleaning_removes_only_our_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["node-1", "node-12", "certs", "mem", "keep", "node-x"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        for f in [
            "node-1.log",
            "mem.log",
            "notes.txt",
            "node-.log",
            "cluster.json",
        ] {
            std::fs::write(d.join(f), "x").unwrap();
        }
        clean_data_dir(d).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["cluster.json", "keep", "node-.log", "node-x", "notes.txt"]
        );
    }

    #[test]
    fn finds_the_built_executable_in_cargo_messages() {
        let msgs = r#"{"reason":"compiler-artifact","target":{"name":"raft-node","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"raft-node","kind":["bin"]},"executable":"/t/release/raft-node"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            find_executable(msgs, "raft-node"),
            Some(PathBuf::from("/t/release/raft-node"))
        );
        assert_eq!(find_executable("garbage\n", "raft-node"), None);
    }
}
