//! A load generator for any running cluster, and a failover timer.
//!
//! [`run_load`] drives PUT or GET requests over HTTP with `clients`
//! concurrent keep-alive connections, one request in flight on each, values
//! of `value_bytes` over `keys` keys, and reports throughput and latency
//! percentiles. [`measure_failover`] starts its own three-node TCP cluster
//! of the `raft-node` binary, kills the leader with SIGKILL over and over
//! and times the first successful write after each kill.
//!
//! From the command line: `raft-node loadgen --endpoints
//! 127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003` (see `raft-node loadgen
//! --help`); from xtask: call [`run_load`] / [`measure_failover`].
//!
//! Writes are sent to the leader (found through `/v1/status`, and followed
//! on 307). Only requests answered 200 (and 404 for reads) count toward
//! throughput and latency; everything else is counted as an error.

pub mod client;
pub mod cluster;

use bytes::Bytes;
use client::Conn;
use hyper::Method;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which request a run sends.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadOp {
    /// `PUT /v1/kv/{key}`.
    Put,
    /// `GET /v1/kv/{key}` (linearizable unless stale reads are asked for).
    Get,
}

impl LoadOp {
    fn as_str(self) -> &'static str {
        match self {
            LoadOp::Put => "put",
            LoadOp::Get => "get",
        }
    }
}

/// Arguments of `raft-node loadgen`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// HTTP addresses (host:port, comma-separated) of the cluster's nodes.
    /// Without it, a local three-node TCP cluster of this binary is started
    /// for the run (its data under the system temp dir) and stopped after.
    #[arg(long, value_delimiter = ',', value_name = "ADDRS")]
    pub endpoints: Vec<String>,
    /// Concurrent connections, one run per value (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub clients: Vec<usize>,
    /// Request kinds, one run per value and client count (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "put,get")]
    pub ops: Vec<LoadOp>,
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 64)]
    pub value_bytes: usize,
    /// Send reads with ?consistency=stale.
    #[arg(long)]
    pub stale: bool,
    /// Spread reads over every endpoint instead of sending them to the
    /// leader.
    #[arg(long)]
    pub reads_to_all: bool,
    /// After the load runs, time this many leader kills (SIGKILL) on a
    /// local three-node TCP cluster of this binary. 0: skip.
    #[arg(long, default_value_t = 0)]
    pub failover_trials: usize,
    /// Extra arguments for every node of a locally started cluster
    /// (space-separated, e.g. "--tick-ms 10").
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub node_args: String,
}

/// The shape of one load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// HTTP addresses of the nodes.
    pub endpoints: Vec<String>,
    /// Concurrent connections.
    pub clients: usize,
    /// What to send.
    pub op: LoadOp,
    /// How long.
    pub duration: Duration,
    /// Distinct keys.
    pub keys: u64,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Stale reads.
    pub stale: bool,
    /// Reads spread over all endpoints.
    pub reads_to_all: bool,
}

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// What was sent.
    pub op: LoadOp,
    /// Concurrent connections.
    pub clients: usize,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests (non-2xx other than redirects, connection errors).
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency percentiles of successful requests.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
}

impl LoadReport {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "op={:<3} clients={:<4} ok={:<8} errors={:<5} throughput={:>9.1}/s p50={:>7.3}ms p99={:>7.3}ms p99.9={:>7.3}ms",
            self.op.as_str(),
            self.clients,
            self.ok,
            self.errors,
            self.throughput(),
            ms(self.p50),
            ms(self.p99),
            ms(self.p999)
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A tiny deterministic PRNG (xorshift64*), so key choice costs nothing.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `host:port` of an absolute `http://host:port/...` URL.
fn location_authority(loc: &str) -> Option<String> {
    let rest = loc.strip_prefix("http://")?;
    Some(rest.split('/').next()?.to_owned())
}

/// Asks each endpoint for `/v1/status` and returns the leader's HTTP
/// address, if one is known.
pub async fn find_leader(endpoints: &[String]) -> Option<String> {
    for e in endpoints {
        let r = client::request(
            e,
            Method::GET,
            "/v1/status",
            &[],
            Bytes::new(),
            Duration::from_secs(1),
        )
        .await;
        let Ok(r) = r else { continue };
        let s = r.json();
        if s["role"] == "leader" {
            return Some(e.clone());
        }
        if let Some(l) = s["leader"].as_u64() {
            if let Some(addr) = s["peers"][l.to_string()]["http_addr"].as_str() {
                return Some(addr.to_owned());
            }
        }
    }
    None
}

/// Runs one load shape against a running cluster.
pub async fn run_load(cfg: &LoadConfig) -> anyhow::Result<LoadReport> {
    let leader = match find_leader(&cfg.endpoints).await {
        Some(l) => l,
        None => anyhow::bail!("no leader among {:?}", cfg.endpoints),
    };
    let value = Bytes::from(vec![b'x'; cfg.value_bytes]);
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let mut tasks = Vec::with_capacity(cfg.clients);
    let cfg = Arc::new(cfg.clone());
    for c in 0..cfg.clients {
        let target = if cfg.op == LoadOp::Get && cfg.reads_to_all && !cfg.endpoints.is_empty() {
            cfg.endpoints[c % cfg.endpoints.len()].clone()
        } else {
            leader.clone()
        };
        let cfg = cfg.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            worker(cfg, target, value, deadline, c as u64).await
        }));
    }
    let mut lat: Vec<u32> = Vec::new();
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        let (l, o, e) = t.await?;
        lat.extend(l);
        ok += o;
        errors += e;
    }
    let elapsed = start.elapsed();
    lat.sort_unstable();
    let pct = |p: f64| -> Duration {
        if lat.is_empty() {
            return Duration::ZERO;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        Duration::from_micros(u64::from(lat[i]))
    };
    Ok(LoadReport {
        op: cfg.op,
        clients: cfg.clients,
        ok,
        errors,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
    })
}

async fn worker(
    cfg: Arc<LoadConfig>,
    mut target: String,
    value: Bytes,
    deadline: Instant,
    seed: u64,
) -> (Vec<u32>, u64, u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (seed + 1).wrapping_mul(0x1000_0001));
    let mut lat = Vec::with_capacity(1 << 14);
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut conn: Option<Conn> = None;
    let mut fallback = seed as usize;
    let suffix = if cfg.stale { "?consistency=stale" } else { "" };
    while Instant::now() < deadline {
        if conn.as_ref().is_none_or(|c| !c.is_open()) {
            match Conn::connect(&target).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    errors += 1;
                    // The node is gone (or a redirect pointed at a dead
                    // leader): try the next endpoint, which redirects us on.
                    if !cfg.endpoints.is_empty() {
                        fallback += 1;
                        target = cfg.endpoints[fallback % cfg.endpoints.len()].clone();
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let key = rng.next() % cfg.keys.max(1);
        let path = format!("/v1/kv/key{key}{suffix}");
        let (method, body) = match cfg.op {
            LoadOp::Put => (Method::PUT, value.clone()),
            LoadOp::Get => (Method::GET, Bytes::new()),
        };
        let t0 = Instant::now();
        match c.request(method, &path, &[], body).await {
            Ok(r) if r.status == 200 || (cfg.op == LoadOp::Get && r.status == 404) => {
                ok += 1;
                lat.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
            Ok(r) if r.status == 307 => {
                if let Some(a) = r.header("location").and_then(location_authority) {
                    target = a;
                    conn = None;
                }
            }
            Ok(r) => {
                errors += 1;
                if r.status == 503 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Err(_) => {
                errors += 1;
                conn = None;
            }
        }
    }
    (lat, ok, errors)
}

/// What the failover measurement found.
#[derive(Debug, Clone)]
pub struct FailoverReport {
    /// Time from SIGKILL of the leader to the first write that succeeded
    /// after it, per trial.
    pub samples: Vec<Duration>,
}

impl FailoverReport {
    /// The median sample.
    pub fn median(&self) -> Option<Duration> {
        let mut s = self.samples.clone();
        s.sort();
        s.get(s.len() / 2).copied()
    }
}

/// Starts a three-node TCP cluster of `bin` (with `node_args` for every
/// node) and times `trials` leader kills. Each killed node is restarted and
/// given time to catch up before the next trial.
pub async fn measure_failover(
    bin: PathBuf,
    node_args: Vec<String>,
    trials: usize,
) -> anyhow::Result<FailoverReport> {
    let mut cl = cluster::LocalCluster::new(bin, "failover", node_args)?;
    cl.start_initial(&[1, 2, 3])?;
    let ids = cl.ids();
    let mut samples = Vec::new();
    for trial in 0..trials {
        let Some(leader) = cl.wait_leader(&ids, Duration::from_secs(10)).await else {
            anyhow::bail!("no leader before trial {trial}:\n{}", cl.log_tails(20));
        };
        // Make sure the cluster takes writes before the kill.
        let survivors: Vec<String> = ids
            .iter()
            .filter(|i| **i != leader)
            .map(|i| cl.http(*i))
            .collect();
        put_until_ok(&cl.http(leader), "warm", Duration::from_secs(5)).await?;
        // Let every follower hear from this leader so none is mid-election.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        cl.kill(leader);
        let mut target = survivors[trial % survivors.len()].clone();
        let mut took = None;
        let mut last = String::new();
        let mut attempt = 0;
        while t0.elapsed() < Duration::from_secs(10) {
            let r = client::request(
                &target,
                Method::PUT,
                &format!("/v1/kv/failover-{trial}"),
                &[],
                Bytes::from_static(b"v"),
                Duration::from_secs(5),
            )
            .await;
            match r {
                Ok(r) if r.status == 200 => {
                    took = Some(t0.elapsed());
                    break;
                }
                Ok(r) if r.status == 307 => {
                    if let Some(a) = r.header("location").and_then(location_authority) {
                        target = a;
                    }
                }
                other => {
                    last = format!("{target}: {other:?}");
                    if other.is_err() {
                        // A redirect may have pointed at the dead leader
                        // before the survivors noticed: go back to them.
                        attempt += 1;
                        target = survivors[(trial + attempt) % survivors.len()].clone();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        let Some(took) = took else {
            let mut states = String::new();
            for id in ids.iter().filter(|i| **i != leader) {
                states.push_str(&format!("node {id}: {:?}\n", cl.status(*id).await));
            }
            cl.keep_dir();
            anyhow::bail!(
                "no write succeeded within 10 s of killing leader {leader} (last answer: {last}):\n{states}{}",
                cl.log_tails(30)
            );
        };
        println!(
            "failover trial {trial}: killed node {leader}, first successful put after {:.1} ms",
            ms(took)
        );
        samples.push(took);
        cl.restart(leader)?;
        // Wait until the restarted node has caught up.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lead = cl.wait_leader(&ids, Duration::from_secs(10)).await;
            let caught_up = match (lead, cl.status(leader).await) {
                (Some(l), Some(s)) => match cl.status(l).await {
                    Some(ls) => s["applied_index"].as_u64() >= ls["commit_index"].as_u64(),
                    None => false,
                },
                _ => false,
            };
            if caught_up || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(FailoverReport { samples })
}

async fn put_until_ok(addr: &str, key: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut target = addr.to_owned();
    while Instant::now() < deadline {
        let r = client::request(
            &target,
            Method::PUT,
            &format!("/v1/kv/{key}"),
            &[],
            Bytes::from_static(b"v"),
            Duration::from_secs(2),
        )
        .await;
        match r {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) if r.status == 307 => {
                if let Some(a) = r.header("location").and_then(location_authority) {
                    target = a;
                }
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    anyhow::bail!("no write to {addr} succeeded within {timeout:?}")
}

/// `raft-node loadgen`: runs every (op, clients) pair and prints one line
/// each, then the failover trials if asked.
pub async fn main(args: LoadgenArgs) -> anyhow::Result<()> {
    let node_args: Vec<String> = args
        .node_args
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let bin = std::env::current_exe()?;
    let mut local = None;
    let endpoints = if args.endpoints.is_empty() {
        let mut cl = cluster::LocalCluster::new(bin.clone(), "loadgen", node_args.clone())?;
        cl.start_initial(&[1, 2, 3])?;
        let ids = cl.ids();
        if cl
            .wait_leader(&ids, Duration::from_secs(10))
            .await
            .is_none()
        {
            anyhow::bail!("the local cluster elected no leader:\n{}", cl.log_tails(20));
        }
        let e = ids.iter().map(|i| cl.http(*i)).collect();
        println!(
            "started a local 3-node tcp cluster in {}",
            cl.dir().display()
        );
        local = Some(cl);
        e
    } else {
        args.endpoints.clone()
    };
    println!(
        "load: {} keys, {}-byte values, {} s per run, reads {}",
        args.keys,
        args.value_bytes,
        args.duration_secs,
        if args.stale { "stale" } else { "linearizable" }
    );
    for op in &args.ops {
        for &clients in &args.clients {
            let cfg = LoadConfig {
                endpoints: endpoints.clone(),
                clients,
                op: *op,
                duration: Duration::from_secs(args.duration_secs),
                keys: args.keys,
                value_bytes: args.value_bytes,
                stale: args.stale,
                reads_to_all: args.reads_to_all,
            };
            let r = run_load(&cfg).await?;
            println!("{r}");
        }
    }
    drop(local);
    if args.failover_trials > 0 {
        let rep = measure_failover(bin, node_args, args.failover_trials).await?;
        let mut s = rep.samples.clone();
        s.sort();
        println!(
            "failover: trials={} median={:.1}ms min={:.1}ms max={:.1}ms",
            s.len(),
            rep.median().map(ms).unwrap_or(0.0),
            s.first().copied().map(ms).unwrap_or(0.0),
            s.last().copied().map(ms).unwrap_or(0.0)
        );
    }
    Ok(())
}
