//! `cargo xtask`: the workspace's developer tasks.
//!
//! - `cluster`: build raft-node, start a local cluster, watch it live; break
//!   it and mend it from another terminal.
//! - `demo split-brain`: replay the seed story (every link cut) on a real
//!   cluster and check that no second leader appears.
//! - `sim`: run the deterministic simulator over many seeds.
//! - `bench`: run every crate's benchmarks and compare them with targets.
//!
//! xtask orchestrates processes. It must never hold protocol logic: what it
//! shows and checks is what nodes report over their HTTP API.

mod bench;
mod chaos;
mod cluster;
mod demo;
mod draw;
mod http;
mod live;
mod partition;
mod procs;
mod sim;
mod state;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

/// Developer tasks for the raft-toolkit workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Start a local cluster and watch it live (ctrl-c stops it); with a
    /// subcommand, act on the running cluster from another terminal.
    Cluster(cluster::ClusterArgs),
    /// Scripted demonstrations on a real cluster.
    Demo(demo::DemoArgs),
    /// Run the deterministic simulator.
    Sim(sim::SimArgs),
    /// Run every crate's benchmarks and print one table against targets.
    Bench(bench::BenchArgs),
    /// Jepsen-style fault injection against a real cluster, checked for linearizability.
    Chaos(chaos::ChaosArgs),
}

/// A mistake in how xtask was called, or nothing to act on (no cluster, an
/// unknown node): reported in one line with exit code 2.
#[derive(Debug)]
pub struct UsageError(String);

impl UsageError {
    /// A usage error saying `msg`.
    pub fn new(msg: impl Into<String>) -> UsageError {
        UsageError(msg.into())
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The workspace root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask's manifest directory has a parent: the workspace root")
        .to_path_buf()
}

/// The signals that end a long-running task in order: ctrl-c (SIGINT),
/// SIGTERM (`cluster stop`) and SIGHUP (the terminal went away). Once made,
/// they no longer kill xtask outright, so it can stop its nodes first.
#[derive(Debug)]
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Takes over SIGINT, SIGTERM and SIGHUP.
    pub fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves when one of them arrives.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.task {
            Task::Cluster(a) => cluster::run(a).await,
            Task::Demo(a) => demo::run(a).await,
            Task::Sim(a) => sim::run(a),
            Task::Bench(a) => bench::run(a),
            Task::Chaos(a) => chaos::run(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
