//! `cargo xtask sim`: runs raft-core's deterministic simulator over a range
//! of seeds on every core, or replays one seed with a full event trace.
//!
//! It only schedules seeds and reports; every check lives in
//! `raft_core::sim`. It must never soften a failure: one failed seed fails
//! the command and prints how to replay it.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use raft_core::sim::{run_seed, SimFailure, SimOptions};

/// `cargo xtask sim ...`
#[derive(Debug, Args)]
pub struct SimArgs {
    /// How many seeds to run.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    seeds: u64,
    /// The first seed of the range.
    #[arg(long, value_name = "S", default_value_t = 0)]
    start: u64,
    /// Replay this one seed, printing every event.
    #[arg(long, value_name = "S", conflicts_with_all = ["seeds", "start"])]
    seed: Option<u64>,
    /// Worker threads [default: the number of cores].
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
}

/// How many failures are printed in full (the rest by seed only).
const SHOWN_FAILURES: usize = 3;

/// Runs `cargo xtask sim ...`.
pub fn run(args: SimArgs) -> Result<ExitCode> {
    if let Some(seed) = args.seed {
        let opts = SimOptions {
            trace: true,
            ..SimOptions::default()
        };
        return Ok(match run_seed(seed, &opts) {
            Ok(mut r) => {
                for line in std::mem::take(&mut r.trace) {
                    println!("{line}");
                }
                println!("seed {seed} passed: {r:#?}");
                ExitCode::SUCCESS
            }
            Err(f) => {
                println!("{f}");
                ExitCode::FAILURE
            }
        });
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let end = args.start.saturating_add(args.seeds);
    let count = end - args.start;
    if cfg!(debug_assertions) {
        eprintln!("note: xtask is a debug build, so the simulator runs unoptimised; `cargo run --release -p xtask -- sim ...` runs it several times faster");
    }
    println!(
        "simulating seeds {}..{end} on {jobs} threads (each: faults, then heal and converge; every invariant checked after every step)",
        args.start
    );
    let next = AtomicU64::new(args.start);
    let done = AtomicU64::new(0);
    let committed = AtomicUsize::new(0);
    let failures: Mutex<Vec<SimFailure>> = Mutex::new(Vec::new());
    let began = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                let opts = SimOptions::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        return;
                    }
                    match run_seed(seed, &opts) {
                        Ok(r) => {
                            committed.fetch_add(r.committed, Ordering::Relaxed);
                        }
                        Err(f) => {
                            eprintln!("seed {seed} FAILED: {}", f.violation);
                            failures
                                .lock()
                                .expect("no worker panics holding the lock")
                                .push(*f);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Progress every few seconds while the workers run.
        let mut last = Instant::now();
        while done.load(Ordering::Relaxed) < count {
            std::thread::sleep(Duration::from_millis(100));
            if last.elapsed() >= Duration::from_secs(5) {
                last = Instant::now();
                eprintln!(
                    "  {}/{} seeds, {} failed, {:.0} s",
                    done.load(Ordering::Relaxed),
                    count,
                    failures.lock().map_or(0, |f| f.len()),
                    began.elapsed().as_secs_f64()
                );
            }
        }
    });
    let mut failures = failures.into_inner().expect("workers have finished");
    failures.sort_by_key(|f| f.seed);
    println!(
        "{count} seeds in {:.1} s: {} entries committed, {} failed",
        began.elapsed().as_secs_f64(),
        committed.load(Ordering::Relaxed),
        failures.len()
    );
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for f in failures.iter().take(SHOWN_FAILURES) {
        println!("\n{f}\nor: cargo xtask sim --seed {}", f.seed);
    }
    let seeds: Vec<u64> = failures.iter().map(|f| f.seed).collect();
    println!("\nfailed seeds: {seeds:?}");
    Ok(ExitCode::FAILURE)
}
