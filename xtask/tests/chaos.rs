//! End-to-end tests of `cargo xtask chaos`.
//!
//! The four that start real clusters are `#[ignore]`d (they build raft-node
//! in release mode and run for tens of seconds); CI runs them explicitly:
//!
//! ```text
//! cargo test -p xtask --test chaos -- --ignored --test-threads 1
//! ```
//!
//! The two `--net netns` tests must be run as root on Linux (as CI does);
//! they fail, saying so, otherwise.
//!
//! Whatever happens, no node outlives a test: xtask stops its cluster on
//! every path, and the guard here kills anything the cluster's state file
//! still names (for when xtask itself was killed or hung), and removes any
//! namespace, veth or bridge named for that xtask process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Bound on one chaos run, including building raft-node in release mode.
const RUN_BOUND: Duration = Duration::from_secs(1500);

struct Run {
    out: tempfile::TempDir,
    child: Option<Child>,
    /// xtask's pid: the owner named in its netns namespaces and links.
    pid: u32,
}

impl Run {
    fn start(args: &[&str]) -> Run {
        let out = tempfile::tempdir().expect("a temporary directory");
        let log = std::fs::File::create(out.path().join("xtask.log")).expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("chaos")
            .args(args)
            .arg("--out")
            .arg(out.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("xtask starts");
        Run {
            out,
            pid: child.id(),
            child: Some(child),
        }
    }

    fn path(&self) -> &Path {
        self.out.path()
    }

    /// Waits for xtask to end (SIGTERM, then SIGKILL, past the bound).
    fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("waited once");
        let deadline = Instant::now() + RUN_BOUND;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
                std::thread::sleep(Duration::from_secs(20));
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chaos run did not end within {RUN_BOUND:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits (bounded) until xtask's output contains `needle`.
    fn wait_for_output(&self, needle: &str, bound: Duration) {
        let deadline = Instant::now() + bound;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {bound:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `sig` to xtask and waits (bounded) for it to end.
    fn signal(&mut self, sig: Signal) -> ExitStatus {
        let child = self.child.as_mut().expect("xtask runs");
        let _ = kill(Pid::from_raw(child.id() as i32), sig);
        self.wait()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("xtask.log")).unwrap_or_default()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name))
            .unwrap_or_else(|e| panic!("{name} missing ({e}):\n{}", self.log()))
    }

    /// Pids of node processes the cluster's state file names that still
    /// run the binary it names.
    fn leftover_nodes(&self) -> Vec<i32> {
        let state: PathBuf = self.path().join("cluster").join("cluster.json");
        let Ok(text) = std::fs::read_to_string(state) else {
            return Vec::new();
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Vec::new();
        };
        let binary = v["binary"].as_str().unwrap_or_default().to_owned();
        v["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["pid"].as_i64())
            .filter(|&pid| pid > 0)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| !binary.is_empty() && c.starts_with(binary.as_bytes()))
                    .unwrap_or(false)
            })
            .map(|pid| pid as i32)
            .collect()
    }

    /// Namespaces and links (`ip netns list`, `ip -o link show`) that carry
    /// this run's xtask pid in xtask's netns naming scheme; `None` if `ip`
    /// cannot list them (so "nothing left" is never concluded from nothing).
    fn try_leftover_network(&self) -> Option<Vec<String>> {
        let ns_prefix = format!("raftchaos-{}-n", self.pid);
        let bridge = format!("rcbr{}", self.pid);
        let veth = format!("rcv{}n", self.pid);
        let mut left = Vec::new();
        for line in ip(&["netns", "list"])?.lines() {
            if let Some(name) = line.split_whitespace().next() {
                if name.starts_with(&ns_prefix) {
                    left.push(format!("namespace {name}"));
                }
            }
        }
        for line in ip(&["-o", "link", "show"])?.lines() {
            if let Some(name) = line.split(": ").nth(1) {
                let name = name.split('@').next().unwrap_or(name);
                if name == bridge || name.starts_with(&veth) {
                    left.push(format!("link {name}"));
                }
            }
        }
        Some(left)
    }

    fn leftover_network(&self) -> Vec<String> {
        self.try_leftover_network()
            .expect("`ip netns list` and `ip -o link show` run (iproute2 installed)")
    }
}

/// The output of `ip args...`, or `None` if it cannot run or fails.
fn ip(args: &[&str]) -> Option<String> {
    let bin = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).is_file())?;
    let out = Command::new(bin).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether this process runs with effective uid 0.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().nth(1))
                .map(|uid| uid == "0")
        })
        .unwrap_or(false)
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
        }
        for pid in self.leftover_nodes() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Only if xtask could not clean up (the test asserts it did).
        for what in self.try_leftover_network().unwrap_or_default() {
            match what.split_once(' ') {
                Some(("namespace", name)) => drop(ip(&["netns", "del", name])),
                Some(("link", name)) => drop(ip(&["link", "del", name])),
                _ => {}
            }
        }
    }
}

#[test]
#[ignore = "starts a real cluster for about a minute; run with --ignored"]
fn short_chaos_run_with_partitions_and_kills_passes() {
    let mut run = Run::start(&[
        "--nodes",
        "3",
        "--time",
        "20s",
        "--nemesis",
        "partition,kill",
        "--seed",
        "1",
        "--clients",
        "6",
    ]);
    let status = run.wait();
    let log = run.log();
    assert_eq!(status.code(), Some(0), "chaos run failed:\n{log}");
    let summary = run.file("summary.txt");
    assert!(summary.contains("chaos verdict: PASS"), "{summary}");
    assert!(
        summary.contains("linearizability: linearizable"),
        "{summary}"
    );
    assert!(
        !summary.contains("faults injected: 0"),
        "no fault was injected:\n{summary}"
    );

    // The history is real: many operations, acknowledged writes among them,
    // final reads from every node.
    let history = run.file("history.jsonl");
    let ops: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).expect("history lines are JSON"))
        .collect();
    assert!(ops.len() > 200, "only {} operations", ops.len());
    let ok_writes = ops
        .iter()
        .filter(|o| o["f"] == "write" && o["outcome"] == "ok")
        .count();
    assert!(ok_writes > 20, "only {ok_writes} acknowledged writes");
    let finals = ops.iter().filter(|o| o["is_final"] == true).count();
    assert_eq!(finals, 8 * 3, "one final read per key per node");
    let timeline = run.file("timeline.html");
    assert!(timeline.contains("<svg") && timeline.contains("kill -9"));
    assert!(run.leftover_nodes().is_empty(), "nodes left running");
}

#[test]
#[ignore = "starts a real cluster; run with --ignored"]
fn stale_read_from_an_isolated_old_leader_is_caught() {
    let mut run = Run::start(&["--nodes", "3", "--scenario", "stale-read", "--seed", "2"]);
    let status = run.wait();
    let summary = run.file("summary.txt");
    assert_eq!(
        status.code(),
        Some(1),
        "expected a violation:\n{}",
        run.log()
    );
    assert!(
        summary.contains("chaos verdict: FAIL: not linearizable: stale read"),
        "{summary}"
    );
    let timeline = run.file("timeline.html");
    assert!(timeline.contains("#e00000"), "the anomaly is not marked");
    assert!(run.leftover_nodes().is_empty(), "nodes left running");
}

/// A saved history with a lost update: no cluster needed.
#[test]
fn check_history_flags_a_bad_history_and_passes_a_good_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let line = |id: u64, client: u64, f: &str, value: Option<&str>, t: (u64, u64), fin: bool| {
        serde_json::json!({
            "id": id, "client": client, "node": 1, "key": "k0", "f": f, "value": value,
            "outcome": "ok", "invoke_ns": t.0, "complete_ns": t.1, "is_final": fin,
        })
        .to_string()
    };
    let good = [
        line(0, 0, "write", Some("a"), (0, 10), false),
        line(1, 1, "write", Some("b"), (20, 30), false),
        line(2, 2, "read", Some("b"), (40, 50), true),
    ];
    let bad = [
        line(0, 0, "write", Some("a"), (0, 10), false),
        line(1, 1, "write", Some("b"), (20, 30), false),
        line(2, 2, "read", Some("a"), (40, 50), true),
    ];
    let check = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n")).expect("write history");
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["chaos", "--check-history"])
            .arg(&path)
            .output()
            .expect("xtask runs")
    };
    let ok = check("good.jsonl", &good);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let bad = check("bad.jsonl", &bad);
    let text = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("stale read"), "{text}");
    assert!(text.contains("lost write"), "{text}");

    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "{not json\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["chaos", "--check-history"])
        .arg(&garbage)
        .output()
        .expect("xtask runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["chaos", "--nodes", "2"][..],
        &["chaos", "--transport", "mem"],
        &["chaos", "--nemesis", "flood"],
        &["chaos", "--time", "soon"],
        &["chaos", "--net", "wires"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .output()
            .expect("xtask runs");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
#[ignore = "needs root on Linux; starts a real cluster in network namespaces for about 40 s; run with --ignored"]
fn netns_run_cuts_real_links_and_leaves_nothing_behind() {
    assert!(
        is_root(),
        "this test must run as root on Linux (--net netns creates namespaces, veths and a bridge): \
         sudo -E cargo test -p xtask --test chaos -- --ignored --test-threads 1"
    );
    let mut run = Run::start(&[
        "--net",
        "netns",
        "--nodes",
        "3",
        "--time",
        "20s",
        "--nemesis",
        "partition,kill",
        "--seed",
        "1",
        "--clients",
        "6",
    ]);
    let status = run.wait();
    let log = run.log();
    assert_eq!(status.code(), Some(0), "chaos run failed:\n{log}");
    let summary = run.file("summary.txt");
    assert!(summary.contains("chaos verdict: PASS"), "{summary}");
    assert!(summary.contains("network: netns: bridge"), "{summary}");

    // The partitions went through the kernel, both ways, and were healed
    // exactly: every link cut is healed, and nothing went through the
    // nodes' fault-injection endpoints.
    let events: Vec<serde_json::Value> = run
        .file("events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("event lines are JSON"))
        .collect();
    let net: Vec<&serde_json::Value> = events.iter().filter(|e| e["type"] == "net").collect();
    assert!(
        net.iter().all(|e| e["event"]["mechanism"] == "netns"),
        "a partition went another way: {net:?}"
    );
    let links = |action: &str| -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = net
            .iter()
            .filter(|e| e["event"]["action"] == action)
            .map(|e| {
                let to = e["event"]["to"].as_array().expect("to is a list");
                assert_eq!(to.len(), 1, "one link per netns event: {e}");
                (
                    e["event"]["from"].as_u64().expect("from"),
                    to[0].as_u64().expect("to"),
                )
            })
            .collect();
        v.sort_unstable();
        v
    };
    let (cuts, heals) = (links("cut"), links("heal"));
    assert!(!cuts.is_empty(), "no link was cut:\n{summary}");
    assert_eq!(cuts, heals, "heals do not match cuts");
    for &(a, b) in &cuts {
        assert!(cuts.contains(&(b, a)), "cut {a}->{b} is one-way");
    }
    assert!(
        summary.contains(&format!("cut {}->{} (netns)", cuts[0].0, cuts[0].1)),
        "{summary}"
    );
    for node in 1..=3 {
        let node_log = run.file(&format!("cluster/node-{node}.log"));
        assert!(
            !node_log.contains("fault injection: isolated"),
            "node {node} was isolated through its endpoint"
        );
    }
    // Seed 1 isolates the leader first: only a real cut makes the others
    // elect a new one.
    let changes: u64 = summary
        .lines()
        .find_map(|l| l.strip_prefix("leader changes: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the summary counts leader changes");
    assert!(
        changes >= 1,
        "isolating the leader changed nothing:\n{summary}"
    );

    assert!(log.contains("chaos: netns: removed"), "{log}");
    assert_eq!(run.leftover_network(), Vec::<String>::new(), "{log}");
    assert!(run.leftover_nodes().is_empty(), "nodes left running");
}

#[test]
fn netns_is_refused_without_root() {
    let xtask = env!("CARGO_BIN_EXE_xtask");
    let mut cmd = if is_root() {
        // Drop to an unprivileged user to see the refusal.
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
            xtask,
        ]);
        c
    } else {
        Command::new(xtask)
    };
    let out = cmd
        .args(["chaos", "--net", "netns", "--time", "1s"])
        .output()
        .expect("xtask runs (as root this test needs util-linux's setpriv)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--net netns must run as root"), "{stderr}");
}

#[test]
#[ignore = "needs root on Linux; starts two real clusters in network namespaces; run with --ignored"]
fn netns_network_is_removed_after_sigterm_and_after_a_crash() {
    assert!(
        is_root(),
        "this test must run as root on Linux (--net netns creates namespaces, veths and a bridge): \
         sudo -E cargo test -p xtask --test chaos -- --ignored --test-threads 1"
    );
    let long = ["--net", "netns", "--nodes", "3", "--time", "120s"];
    // A run killed outright cannot clean up: its network and nodes stay...
    let mut crashed = Run::start(&[&long[..], &["--nemesis", "none"]].concat());
    crashed.wait_for_output("running for", RUN_BOUND);
    assert_eq!(crashed.signal(Signal::SIGKILL).code(), None);
    let left = crashed.leftover_network();
    assert_eq!(left.len(), 3 + 3 + 1, "namespaces, veths, bridge: {left:?}");
    assert_eq!(
        crashed.leftover_nodes().len(),
        3,
        "the nodes outlive a killed xtask"
    );

    // ...until the next netns run removes them before building its own.
    let mut next = Run::start(&[&long[..], &["--nemesis", "partition"]].concat());
    next.wait_for_output("running for", RUN_BOUND);
    assert_eq!(
        crashed.leftover_network(),
        Vec::<String>::new(),
        "{}",
        next.log()
    );
    assert!(crashed.leftover_nodes().is_empty(), "{}", next.log());
    assert!(
        next.log().contains(&format!(
            "earlier run whose xtask is gone: namespace raftchaos-{}-n1",
            crashed.pid
        )),
        "{}",
        next.log()
    );
    assert_eq!(next.leftover_network().len(), 7, "{}", next.log());

    // SIGTERM (as ctrl-c) stops the run, its nodes and its network.
    next.wait_for_output("fault begins", RUN_BOUND);
    let status = next.signal(Signal::SIGTERM);
    let log = next.log();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("chaos: netns: removed"), "{log}");
    assert_eq!(next.leftover_network(), Vec::<String>::new(), "{log}");
    assert!(
        next.leftover_nodes().is_empty(),
        "nodes left running:\n{log}"
    );
}
