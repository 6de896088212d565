//! The swarm: many seeded simulations, each with its own cluster size,
//! configuration and fault rates, every invariant checked after every step.
//!
//! - CI: `cargo test -p raft-core --test sim` runs seeds 0..1000, split over
//!   four tests so that they share the machine's cores.
//! - Long run: `RAFT_SIM_SEEDS=100000 cargo test -p raft-core --release
//!   --test sim -- --nocapture` (`RAFT_SIM_SEED_START` moves the window).
//! - Replay one seed with a full event trace: `RAFT_SIM_SEED=1234 cargo
//!   test -p raft-core --test sim -- --nocapture` (every failure prints this
//!   command with its seed).

use raft_core::sim::{replay_command, run_seed, SimOptions};
use std::time::Instant;

const PARTS: u64 = 4;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name} must be a number, got {v:?}"),
    }
}

fn swarm_part(part: u64) {
    if let Some(seed) = env_u64("RAFT_SIM_SEED") {
        // Replay mode: one seed, traced, in the first part only.
        if part == 0 {
            let opts = SimOptions {
                trace: true,
                ..SimOptions::default()
            };
            match run_seed(seed, &opts) {
                Ok(r) => eprintln!("seed {seed} passed: {r:#?}"),
                Err(f) => panic!("{f}"),
            }
        }
        return;
    }
    let seeds = env_u64("RAFT_SIM_SEEDS").unwrap_or(1000);
    let start = env_u64("RAFT_SIM_SEED_START").unwrap_or(0);
    let opts = SimOptions::default();
    #[allow(clippy::disallowed_methods)] // the wall clock only reports progress
    let began = Instant::now();
    let mut ran = 0u64;
    let mut committed = 0usize;
    let mut failures = Vec::new();
    for seed in (start..start + seeds).filter(|s| s % PARTS == part) {
        match run_seed(seed, &opts) {
            Ok(r) => committed += r.committed,
            Err(f) => {
                eprintln!("{f}\n");
                failures.push(seed);
            }
        }
        ran += 1;
    }
    eprintln!(
        "sim part {part}: {ran} seeds, {committed} entries committed, {} failed, {:.1}s",
        failures.len(),
        began.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} seeds failed: {failures:?}\nreplay the first with: {}",
        failures.len(),
        replay_command(failures[0])
    );
}

#[test]
fn swarm_part_0() {
    swarm_part(0);
}

#[test]
fn swarm_part_1() {
    swarm_part(1);
}

#[test]
fn swarm_part_2() {
    swarm_part(2);
}

#[test]
fn swarm_part_3() {
    swarm_part(3);
}
