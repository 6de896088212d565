//! Runs a cluster of `raft-node` processes on 127.0.0.1 for tests, the
//! failover measurement and local experiments.
//!
//! Every child is killed when the [`LocalCluster`] is dropped, even when the
//! caller panics, so nothing is left running. Ports are picked by binding
//! port 0 and releasing it just before the child binds it.

use super::client;
use bytes::Bytes;
use hyper::Method;
use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound and released at once).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh, empty directory under the system temp dir.
pub fn fresh_dir(tag: &str) -> std::io::Result<PathBuf> {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!(
        "raft-node-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// One node of a [`LocalCluster`].
#[derive(Debug)]
pub struct NodeProc {
    /// Its id.
    pub id: u64,
    /// Its Raft address.
    pub raft_addr: String,
    /// Its HTTP address.
    pub http_addr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where its stderr goes.
    pub log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl NodeProc {
    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// A set of `raft-node` processes on 127.0.0.1. See the module docs.
#[derive(Debug)]
pub struct LocalCluster {
    bin: PathBuf,
    dir: PathBuf,
    keep_dir: bool,
    /// Arguments every node gets (transport, TLS, timings...).
    pub common_args: Vec<String>,
    nodes: BTreeMap<u64, NodeProc>,
    tls_dir: Option<PathBuf>,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if !self.keep_dir && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl LocalCluster {
    /// A cluster with no nodes yet, keeping its files under a fresh
    /// directory; `bin` is the `raft-node` executable.
    pub fn new(
        bin: impl Into<PathBuf>,
        tag: &str,
        common_args: Vec<String>,
    ) -> std::io::Result<Self> {
        Ok(LocalCluster {
            bin: bin.into(),
            dir: fresh_dir(tag)?,
            keep_dir: false,
            common_args,
            nodes: BTreeMap::new(),
            tls_dir: None,
        })
    }

    /// Gives every node started from now on `--tls-ca DIR/ca.pem --tls-cert
    /// DIR/node-<id>.pem --tls-key DIR/node-<id>.key` (the layout of
    /// `raft-node gen-certs`).
    pub fn set_tls_dir(&mut self, dir: PathBuf) {
        self.tls_dir = Some(dir);
    }

    /// Keeps the directory (logs, data) after drop.
    pub fn keep_dir(&mut self) {
        self.keep_dir = true;
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Allocates addresses for nodes `ids` and starts them as the initial
    /// members of a new cluster.
    pub fn start_initial(&mut self, ids: &[u64]) -> std::io::Result<()> {
        let mut specs = Vec::new();
        for &id in ids {
            let raft = format!("127.0.0.1:{}", free_port()?);
            let http = format!("127.0.0.1:{}", free_port()?);
            specs.push((id, raft, http));
        }
        let peer_args: Vec<String> = specs
            .iter()
            .flat_map(|(id, r, h)| ["--peer".to_owned(), format!("{id}={r},{h}")])
            .collect();
        for (id, raft, http) in specs {
            let mut args = peer_args.clone();
            args.extend([
                "--raft-addr".into(),
                raft.clone(),
                "--http-addr".into(),
                http.clone(),
            ]);
            self.add_node(id, raft, http, args)?;
        }
        Ok(())
    }

    /// Starts node `id` with `--join` (no members) on fresh addresses,
    /// telling it where the existing nodes are; it waits to be added with
    /// `POST /v1/admin/learners`.
    pub fn start_joining(&mut self, id: u64) -> std::io::Result<()> {
        let raft = format!("127.0.0.1:{}", free_port()?);
        let http = format!("127.0.0.1:{}", free_port()?);
        let mut args: Vec<String> = self
            .nodes
            .values()
            .flat_map(|n| {
                [
                    "--peer".to_owned(),
                    format!("{}={},{}", n.id, n.raft_addr, n.http_addr),
                ]
            })
            .collect();
        args.extend([
            "--join".into(),
            "--raft-addr".into(),
            raft.clone(),
            "--http-addr".into(),
            http.clone(),
        ]);
        self.add_node(id, raft, http, args)
    }

    fn add_node(
        &mut self,
        id: u64,
        raft: String,
        http: String,
        args: Vec<String>,
    ) -> std::io::Result<()> {
        let data_dir = self.dir.join(format!("node-{id}"));
        let log = self.dir.join(format!("node-{id}.log"));
        let mut all = vec![
            "--id".to_owned(),
            id.to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        all.extend(args);
        if let Some(d) = &self.tls_dir {
            all.extend([
                "--tls-ca".to_owned(),
                d.join("ca.pem").display().to_string(),
                "--tls-cert".to_owned(),
                d.join(format!("node-{id}.pem")).display().to_string(),
                "--tls-key".to_owned(),
                d.join(format!("node-{id}.key")).display().to_string(),
            ]);
        }
        let mut n = NodeProc {
            id,
            raft_addr: raft,
            http_addr: http,
            data_dir,
            log,
            args: all,
            child: None,
        };
        self.spawn(&mut n)?;
        self.nodes.insert(id, n);
        Ok(())
    }

    fn spawn(&self, n: &mut NodeProc) -> std::io::Result<()> {
        let log = File::options().create(true).append(true).open(&n.log)?;
        let child = Command::new(&self.bin)
            .args(&n.args)
            .args(&self.common_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        n.child = Some(child);
        Ok(())
    }

    /// The node `id`.
    pub fn node(&self, id: u64) -> Option<&NodeProc> {
        self.nodes.get(&id)
    }

    /// Mutable access to node `id`.
    pub fn node_mut(&mut self, id: u64) -> Option<&mut NodeProc> {
        self.nodes.get_mut(&id)
    }

    /// Every node's id.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The HTTP address of node `id`.
    pub fn http(&self, id: u64) -> String {
        self.nodes
            .get(&id)
            .map(|n| n.http_addr.clone())
            .unwrap_or_default()
    }

    /// Kills node `id` with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(n) = self.nodes.get_mut(&id) {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Sends SIGTERM to node `id` and waits up to `timeout` for it to exit,
    /// returning its exit code (None if it had to be killed or was not
    /// running).
    pub fn terminate(&mut self, id: u64, timeout: Duration) -> Option<i32> {
        let n = self.nodes.get_mut(&id)?;
        let mut c = n.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            match c.try_wait() {
                Ok(Some(st)) => return st.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return None;
                }
            }
        }
    }

    /// Starts a stopped node again with the same arguments and data.
    pub fn restart(&mut self, id: u64) -> std::io::Result<()> {
        let mut n = match self.nodes.remove(&id) {
            Some(n) => n,
            None => return Err(std::io::Error::other(format!("no node {id}"))),
        };
        if n.child.is_none() {
            let r = self.spawn(&mut n);
            self.nodes.insert(id, n);
            r
        } else {
            self.nodes.insert(id, n);
            Ok(())
        }
    }

    /// The last `lines` lines of every node's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in self.nodes.values() {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            out.push_str(&format!("--- node {} ({}) ---\n", n.id, n.log.display()));
            for l in &all[from..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Node `id`'s `/v1/status`, if it answers within a second.
    pub async fn status(&self, id: u64) -> Option<serde_json::Value> {
        let addr = self.http(id);
        let r = client::request(
            &addr,
            Method::GET,
            "/v1/status",
            &[],
            Bytes::new(),
            Duration::from_secs(1),
        )
        .await
        .ok()?;
        (r.status == 200).then(|| r.json())
    }

    /// Waits until the running nodes among `among` agree on one leader
    /// (itself among them and reporting `leader` role) and returns its id.
    pub async fn wait_leader(&self, among: &[u64], timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut leader = None;
            let mut agree = true;
            for &id in among {
                match self.status(id).await {
                    Some(s) => {
                        let l = s["leader"].as_u64();
                        if l.is_none() || (leader.is_some() && leader != l) {
                            agree = false;
                        }
                        leader = leader.or(l);
                    }
                    None => agree = false,
                }
            }
            if let (true, Some(l)) = (agree, leader) {
                if among.contains(&l) {
                    if let Some(s) = self.status(l).await {
                        if s["role"] == "leader" {
                            return Some(l);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}
