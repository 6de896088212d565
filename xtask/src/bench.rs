//! `cargo xtask bench`: runs the benchmarks of every workspace crate that
//! has some and prints one table of figures beside their targets.
//!
//! Benchmarks report figures on stdout as lines of the form
//!
//! ```text
//! BENCH <name>=<value> <unit> [target>=<number> | target<=<number>]
//! ```
//!
//! (`target>=` when more is better, `target<=` when less is better; see the
//! team's bench-format note). Everything else a benchmark prints is shown
//! as progress and otherwise ignored. This module must never measure
//! anything itself: it runs `cargo bench` and reads what the benches say.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::live::format_table;
use crate::repo_root;

/// `cargo xtask bench ...`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Short runs (sets RAFT_BENCH_QUICK=1 for the benches): figures are
    /// rougher, for checking that the benches work.
    #[arg(long)]
    quick: bool,
    /// Only these crates (repeatable) [default: every crate with benches].
    #[arg(long = "package", short = 'p', value_name = "CRATE")]
    packages: Vec<String>,
    /// Fail (exit 1) when a figure misses its target.
    #[arg(long)]
    strict: bool,
}

/// A figure's target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// More is better: the value must be at least this.
    AtLeast(f64),
    /// Less is better: the value must be at most this.
    AtMost(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
        }
    }

    fn show(self) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {}", number(t)),
            Target::AtMost(t) => format!("<= {}", number(t)),
        }
    }
}

/// One reported figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// Its target, if the bench states one.
    pub target: Option<Target>,
}

/// Parses one line of bench output: `None` if it is not a `BENCH` line,
/// `Some(Err)` if it is one but malformed.
pub fn parse_line(line: &str) -> Option<Result<Figure, String>> {
    let rest = line.strip_prefix("BENCH ")?;
    Some(parse_figure(rest.trim()).map_err(|why| format!("{why}: {line}")))
}

fn parse_figure(s: &str) -> Result<Figure, String> {
    let mut words = s.split_whitespace();
    let (name, value) = words
        .next()
        .and_then(|w| w.split_once('='))
        .ok_or("expected <name>=<value>")?;
    if name.is_empty() {
        return Err("empty name".into());
    }
    let value: f64 = value
        .parse()
        .map_err(|_| format!("'{value}' is not a number"))?;
    if !value.is_finite() {
        return Err(format!("'{value}' is not a finite number"));
    }
    let unit = words.next().ok_or("missing unit")?.to_owned();
    let target = match words.next() {
        None => None,
        Some(t) => {
            let (make, n): (fn(f64) -> Target, &str) = if let Some(n) = t.strip_prefix("target>=") {
                (Target::AtLeast, n)
            } else if let Some(n) = t.strip_prefix("target<=") {
                (Target::AtMost, n)
            } else {
                return Err(format!("'{t}' is not target>=N or target<=N"));
            };
            let n: f64 = n
                .parse()
                .map_err(|_| format!("target '{n}' is not a number"))?;
            Some(make(n))
        }
    };
    if let Some(extra) = words.next() {
        return Err(format!("unexpected '{extra}' after the target"));
    }
    Ok(Figure {
        name: name.to_owned(),
        value,
        unit,
        target,
    })
}

/// A number without needless digits: 812345, 1.25, 0.0042.
fn number(x: f64) -> String {
    if x.abs() >= 100.0 || x == x.trunc() {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

/// Workspace crates with bench targets, from `cargo metadata`.
fn crates_with_benches() -> Result<Vec<String>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo_root())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed");
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .context("cargo metadata printed something that is not JSON")?;
    Ok(benched_packages(&meta))
}

fn benched_packages(meta: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["targets"].as_array().into_iter().flatten().any(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bench"))
            })
        })
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Runs `cargo bench -p krate --bench '*'`, echoing its output, and returns
/// the figures it reported, malformed BENCH lines, and whether it succeeded.
fn bench_crate(krate: &str, quick: bool) -> Result<(Vec<Figure>, Vec<String>, bool)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root())
        // Bench targets only: `--benches` would also run the library's
        // unit-test harness in bench mode.
        .args(["bench", "-p", krate, "--bench", "*"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if quick {
        cmd.env("RAFT_BENCH_QUICK", "1");
    }
    let mut child = cmd.spawn().context("cannot run cargo bench")?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let (mut figures, mut bad) = (Vec::new(), Vec::new());
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        eprintln!("  {line}");
        match parse_line(&line) {
            Some(Ok(f)) => figures.push(f),
            Some(Err(e)) => bad.push(e),
            None => {}
        }
    }
    let status = child.wait().context("cargo bench did not finish")?;
    Ok((figures, bad, status.success()))
}

/// Runs `cargo xtask bench ...`.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let crates = if args.packages.is_empty() {
        crates_with_benches()?
    } else {
        args.packages.clone()
    };
    let mut rows = vec![["crate", "figure", "value", "unit", "target", ""]
        .map(str::to_owned)
        .to_vec()];
    let (mut failed, mut missed, mut notes) = (Vec::new(), 0, Vec::new());
    for krate in &crates {
        eprintln!(
            "\n== cargo bench -p {krate}{}",
            if args.quick { " (quick)" } else { "" }
        );
        let (figures, bad, ok) = bench_crate(krate, args.quick)?;
        if !ok {
            failed.push(krate.clone());
        }
        if figures.is_empty() {
            notes.push(format!("{krate}: printed no BENCH lines"));
        }
        notes.extend(
            bad.into_iter()
                .map(|b| format!("{krate}: malformed line: {b}")),
        );
        for f in figures {
            let verdict = match f.target {
                None => "",
                Some(t) if t.met(f.value) => "ok",
                Some(_) => {
                    missed += 1;
                    "MISSED"
                }
            };
            rows.push(vec![
                krate.clone(),
                f.name,
                number(f.value),
                f.unit,
                f.target.map(Target::show).unwrap_or_default(),
                verdict.to_owned(),
            ]);
        }
    }
    println!();
    for line in format_table(&rows) {
        println!("{line}");
    }
    for n in &notes {
        println!("note: {n}");
    }
    if args.quick {
        println!("(quick runs: figures are rough)");
    }
    if !failed.is_empty() {
        println!("benchmarks failed to run in: {}", failed.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    if missed > 0 {
        println!("{missed} figure(s) missed their target");
        if args.strict {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_figures_with_and_without_targets() {
        assert_eq!(
            parse_line("BENCH tcp.throughput=812345.5 msg/s target>=500000"),
            Some(Ok(Figure {
                name: "tcp.throughput".into(),
                value: 812345.5,
                unit: "msg/s".into(),
                target: Some(Target::AtLeast(500000.0)),
            }))
        );
        assert_eq!(
            parse_line("BENCH wal.fsync_p99=850 us target<=2000"),
            Some(Ok(Figure {
                name: "wal.fsync_p99".into(),
                value: 850.0,
                unit: "us".into(),
                target: Some(Target::AtMost(2000.0)),
            }))
        );
        let f = parse_line("BENCH core.step=1.5e-3 ms").unwrap().unwrap();
        assert_eq!((f.value, f.target), (0.0015, None));
        assert_eq!(parse_line("tcp small: median 812345 msg/s"), None);
        assert_eq!(
            parse_line("  BENCH x=1 u"),
            None,
            "BENCH must start the line"
        );
    }

    #[test]
    fn malformed_bench_lines_are_reported() {
        for bad in [
            "BENCH x 1 u",
            "BENCH =1 u",
            "BENCH x=fast u",
            "BENCH x=1",
            "BENCH x=1 u target=5",
            "BENCH x=1 u target>=lots",
            "BENCH x=1 u target>=5 extra",
            "BENCH x=inf u",
        ] {
            assert!(matches!(parse_line(bad), Some(Err(_))), "{bad}");
        }
    }

    #[test]
    fn targets_judge_in_the_right_direction() {
        assert!(Target::AtLeast(10.0).met(10.0) && !Target::AtLeast(10.0).met(9.9));
        assert!(Target::AtMost(10.0).met(3.0) && !Target::AtMost(10.0).met(10.1));
        assert_eq!(Target::AtLeast(500000.0).show(), ">= 500000");
        assert_eq!(number(1.25), "1.25");
        assert_eq!(number(0.00421), "0.0042");
        assert_eq!(number(812345.5), "812346");
    }

    #[test]
    fn finds_packages_with_bench_targets() {
        let meta = serde_json::json!({"packages": [
            {"name": "b", "targets": [{"kind": ["lib"]}, {"kind": ["bench"]}]},
            {"name": "a", "targets": [{"kind": ["bench"]}]},
            {"name": "c", "targets": [{"kind": ["bin"]}]},
        ]});
        assert_eq!(benched_packages(&meta), ["a", "b"]);
    }
}
