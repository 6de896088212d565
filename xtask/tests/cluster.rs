//! End to end: `cargo xtask cluster` (start, status, write, kill, restart,
//! pause, partition, heal, stop) and `cargo xtask demo split-brain` over tcp
//! and quic, against real raft-node processes built by cargo.
//!
//! Every test holds a guard that stops what it started, even when an
//! assertion fails: the supervisor with SIGTERM (it stops its nodes), then
//! SIGKILL for any process still running whose command line names the
//! test's own temporary directory. Tests run one at a time: each starts
//! three node processes and the machine may be small.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// Bounds on things that take as long as the machine needs.
const START_BOUND: Duration = Duration::from_secs(180);
const CONVERGE_BOUND: Duration = Duration::from_secs(60);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The raft-node binary, built by cargo (once per test run).
fn raft_node() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask sits in the workspace");
        let out = Command::new(cargo)
            .current_dir(root)
            .args([
                "build",
                "-p",
                "raft-node",
                "--bin",
                "raft-node",
                "--message-format=json-render-diagnostics",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "building raft-node failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "raft-node")
            .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
            .next_back()
            .expect("cargo reports the raft-node executable")
    })
    .clone()
}

fn xtask(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(args).stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    let out = xtask(args).output().expect("xtask runs");
    eprintln!(
        "$ xtask {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Stops everything started under `dir` when dropped.
struct Guard {
    dir: tempfile::TempDir,
    supervisor: Option<Child>,
}

impl Guard {
    fn new() -> Guard {
        Guard {
            dir: tempfile::tempdir().expect("a temporary directory"),
            supervisor: None,
        }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().expect("temporary paths are UTF-8")
    }
}

/// Pids of processes whose command line mentions `needle`.
fn processes_naming(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != std::process::id() as i32)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut sup) = self.supervisor.take() {
            let _ = kill(Pid::from_raw(sup.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && matches!(sup.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = sup.kill();
            let _ = sup.wait();
        }
        for pid in processes_naming(self.path()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// A blocking HTTP/1.1 call; follows one redirect. Returns (status, body).
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let headers = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    if status == 307 {
        let loc = headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or_else(|| l.strip_prefix("Location: "))
            })
            .ok_or("307 without location")?;
        let rest = loc.trim().strip_prefix("http://").ok_or("odd location")?;
        let (host, p) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        return http(host, method, p, body);
    }
    Ok((status, raw[split + 4..].to_vec()))
}

fn status_of(addr: &str) -> Option<Value> {
    match http(addr, "GET", "/v1/status", b"") {
        Ok((200, body)) => serde_json::from_slice(&body).ok(),
        _ => None,
    }
}

/// Polls until `f` holds, or fails the test after `bound`.
fn eventually<T>(what: &str, bound: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The one node every answering node agrees leads, among `ids`.
fn agreed_leader(addrs: &[(u64, String)], ids: &[u64]) -> Option<(u64, u64)> {
    let st: Vec<Value> = addrs
        .iter()
        .filter(|(id, _)| ids.contains(id))
        .map(|(_, a)| status_of(a))
        .collect::<Option<_>>()?;
    let leaders: Vec<&Value> = st.iter().filter(|s| s["role"] == "leader").collect();
    let [l] = leaders.as_slice() else { return None };
    let (id, term) = (l["id"].as_u64()?, l["term"].as_u64()?);
    st.iter()
        .all(|s| s["leader"].as_u64() == Some(id) && s["term"].as_u64() == Some(term))
        .then_some((id, term))
}

fn put(addr: &str, key: &str, value: &str) -> (u16, Vec<u8>) {
    http(addr, "PUT", &format!("/v1/kv/{key}"), value.as_bytes()).unwrap_or((0, Vec::new()))
}

/// Starts `xtask cluster` in the guard's directory; returns once it says
/// the cluster is up, with the node addresses from its state file.
fn start(g: &mut Guard, transport: &str) -> Vec<(u64, String)> {
    let bin = raft_node();
    let mut sup = xtask(&[
        "cluster",
        "--transport",
        transport,
        "--base-port",
        "0",
        "--data-dir",
        g.path(),
        "--raft-node",
        bin.to_str().expect("UTF-8 path"),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("xtask starts");
    let (tx, rx) = mpsc::channel::<String>();
    for pipe in [
        Box::new(sup.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(sup.stderr.take().expect("piped")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[cluster] {line}");
                let _ = tx.send(line);
            }
        });
    }
    g.supervisor = Some(sup);
    let deadline = Instant::now() + START_BOUND;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(" is up: leader ") => break,
            Ok(_) => {}
            Err(e) => panic!("xtask cluster did not report a leader: {e:?}"),
        }
    }
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(g.dir.path().join("cluster.json")).expect("state file"),
    )
    .expect("state file is JSON");
    state["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["id"].as_u64().expect("node id"),
                n["http_addr"].as_str().expect("http address").to_owned(),
            )
        })
        .collect()
}

fn dd(g: &Guard) -> [&str; 2] {
    ["--data-dir", g.path()]
}

fn node_pids(g: &Guard) -> Vec<i32> {
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(g.dir.path().join("cluster.json")).unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    state["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["pid"].as_i64().map(|p| p as i32))
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !matches!(
            s.rsplit_once(')')
                .and_then(|(_, r)| r.trim().chars().next()),
            Some('Z') | Some('X')
        )
    })
}

#[test]
fn no_cluster_is_a_usage_error() {
    let _s = serial();
    let g = Guard::new();
    for cmd in [
        &["status"][..],
        &["heal"],
        &["kill", "2"],
        &["partition", "1", "2,3"],
        &["stop"],
    ] {
        let mut args = vec!["cluster"];
        args.extend_from_slice(cmd);
        args.extend(dd(&g));
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains("no cluster is running"),
            "{}",
            text(&out)
        );
    }
    let out = run(&["cluster", "partition"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses a partition with no groups"
    );
}

#[test]
fn cluster_lifecycle_over_tcp() {
    let _s = serial();
    let mut g = Guard::new();
    let nodes = start(&mut g, "tcp");
    assert_eq!(nodes.len(), 3);
    let ids = [1, 2, 3];
    let addr = |id: u64| nodes.iter().find(|(i, _)| *i == id).unwrap().1.clone();
    let dir = g.path().to_owned();
    let d = ["--data-dir", dir.as_str()];

    // A second start in the same directory is refused.
    let out = run(&[
        "cluster",
        "--base-port",
        "0",
        d[0],
        d[1],
        "--raft-node",
        raft_node().to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already running"));

    let out = run(&["cluster", "status", d[0], d[1]]);
    assert!(out.status.success(), "{}", text(&out));
    let s = text(&out);
    assert!(
        s.contains("LEADER") && s.matches(" up ").count() == 3,
        "{s}"
    );

    // Write through one node, read through another.
    let (code, body) = put(&addr(1), "greeting", "hello");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, body) = http(&addr(3), "GET", "/v1/kv/greeting", b"").unwrap();
    assert_eq!((code, body.as_slice()), (200, &b"hello"[..]));

    // Unknown node ids are usage errors.
    let out = run(&["cluster", "kill", "9", d[0], d[1]]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no node 9"), "{}", text(&out));

    // Kill a follower: the other two still commit.
    let (leader, _) = eventually("a leader", CONVERGE_BOUND, || agreed_leader(&nodes, &ids));
    let victim = ids.into_iter().find(|&i| i != leader).unwrap();
    let v = victim.to_string();
    let out = run(&["cluster", "kill", &v, d[0], d[1]]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        status_of(&addr(victim)).is_none(),
        "a killed node does not answer"
    );
    let out = run(&["cluster", "status", d[0], d[1]]);
    assert!(text(&out).contains(" down "), "{}", text(&out));
    let (code, _) = put(&addr(leader), "while-down", "x");
    assert_eq!(code, 200);
    let out = run(&["cluster", "kill", &v, d[0], d[1]]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "killing a dead node fails: {}",
        text(&out)
    );

    // Restart it: it comes back with its data and catches up.
    let out = run(&["cluster", "restart", &v, d[0], d[1]]);
    assert!(out.status.success(), "{}", text(&out));
    eventually(
        "the restarted node catches up",
        CONVERGE_BOUND,
        || match http(
            &addr(victim),
            "GET",
            "/v1/kv/while-down?consistency=stale",
            b"",
        ) {
            Ok((200, b)) if b == b"x" => Some(()),
            _ => None,
        },
    );

    // Pause and resume a node.
    let out = run(&["cluster", "pause", &v, d[0], d[1]]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["cluster", "status", d[0], d[1]]);
    assert!(text(&out).contains(" paused "), "{}", text(&out));
    let out = run(&["cluster", "resume", &v, d[0], d[1]]);
    assert!(out.status.success(), "{}", text(&out));
    eventually("the resumed node answers", CONVERGE_BOUND, || {
        status_of(&addr(victim))
    });

    // Cut the leader off: the other two elect a new leader at a higher
    // term, and the old one steps down.
    let (leader, term) = eventually("a leader", CONVERGE_BOUND, || agreed_leader(&nodes, &ids));
    let rest: Vec<u64> = ids.into_iter().filter(|&i| i != leader).collect();
    let group = rest
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let out = run(&[
        "cluster",
        "partition",
        &leader.to_string(),
        &group,
        d[0],
        d[1],
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let st = status_of(&addr(leader)).expect("the cut-off leader answers HTTP");
    let cut: Vec<u64> = st["isolated_from"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(cut, rest);
    let (new_leader, new_term) = eventually("a leader among the majority", CONVERGE_BOUND, || {
        agreed_leader(&nodes, &rest)
    });
    assert!(new_leader != leader && new_term > term);
    eventually("the old leader steps down", CONVERGE_BOUND, || {
        status_of(&addr(leader)).filter(|s| s["role"] != "leader")
    });
    let (code, _) = put(&addr(new_leader), "majority-side", "y");
    assert_eq!(code, 200);
    let out = run(&["cluster", "status", d[0], d[1]]);
    assert!(
        text(&out).contains('X'),
        "the drawing shows cut links: {}",
        text(&out)
    );

    // Heal: one leader for all three, and the old leader catches up.
    let out = run(&["cluster", "heal", d[0], d[1]]);
    assert!(out.status.success(), "{}", text(&out));
    eventually("one leader for all", CONVERGE_BOUND, || {
        agreed_leader(&nodes, &ids)
    });
    eventually(
        "the old leader has the write",
        CONVERGE_BOUND,
        || match http(
            &addr(leader),
            "GET",
            "/v1/kv/majority-side?consistency=stale",
            b"",
        ) {
            Ok((200, b)) if b == b"y" => Some(()),
            _ => None,
        },
    );

    // Stop: the live view ends cleanly, every node is gone, and the cluster
    // is no longer found.
    let pids = node_pids(&g);
    assert_eq!(pids.len(), 3);
    let out = run(&["cluster", "stop", d[0], d[1]]);
    assert!(out.status.success(), "{}", text(&out));
    let mut sup = g.supervisor.take().unwrap();
    let code = eventually("the live view exits", CONVERGE_BOUND, || {
        sup.try_wait().ok().flatten()
    });
    assert!(code.success(), "the live view exits 0 on stop: {code:?}");
    for pid in pids {
        assert!(!alive(pid), "node process {pid} still runs after stop");
    }
    let out = run(&["cluster", "status", d[0], d[1]]);
    assert_eq!(out.status.code(), Some(2));
    assert!(g.dir.path().join("node-1.log").exists());
}

#[test]
fn mem_cluster_runs_in_one_process() {
    let _s = serial();
    let mut g = Guard::new();
    let nodes = start(&mut g, "mem");
    let d = dd(&g);
    assert_eq!(node_pids(&g).len(), 1);
    let out = run(&["cluster", "kill", "2", d[0], d[1]]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("one process"), "{}", text(&out));
    let out = run(&["cluster", "isolate", "1", d[0], d[1]]);
    assert!(out.status.success(), "{}", text(&out));
    let st = status_of(&nodes[0].1).unwrap();
    assert_eq!(st["isolated_from"], serde_json::json!([2, 3]));
    let out = run(&["cluster", "heal", d[0], d[1]]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["cluster", "stop", d[0], d[1]]);
    assert!(out.status.success(), "{}", text(&out));
}

fn demo(transport: &str) {
    let _s = serial();
    let g = Guard::new();
    let out = run(&[
        "demo",
        "split-brain",
        "--transport",
        transport,
        "--raft-node",
        raft_node().to_str().expect("UTF-8 path"),
        "--data-dir",
        g.path(),
    ]);
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("PASS: every check held"), "{s}");
    assert!(s.contains("no node claimed leadership in"), "{s}");
    assert!(
        processes_naming(g.path()).is_empty(),
        "the demo left processes behind"
    );
}

#[test]
fn split_brain_demo_over_tcp() {
    demo("tcp");
}

#[test]
fn split_brain_demo_over_quic() {
    demo("quic");
}

/// The demo must fail, loudly, against a node with the seed story's bug
/// (leader without votes once cut off): a check that cannot fail proves
/// nothing.
#[test]
fn split_brain_demo_fails_against_the_seed_bug() {
    let _s = serial();
    let g = Guard::new();
    let out = run(&[
        "demo",
        "split-brain",
        "--raft-node",
        env!("CARGO_BIN_EXE_split-brain-node"),
        "--data-dir",
        g.path(),
    ]);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(s.contains("FAIL:"), "{s}");
    assert!(
        s.contains("without a majority's votes") || s.contains("SPLIT BRAIN"),
        "{s}"
    );
    assert!(!s.contains("PASS"), "{s}");
    assert!(
        processes_naming(g.path()).is_empty(),
        "the demo left processes behind"
    );
}
