//! The state file (`cluster.json` in the cluster's data directory): how
//! commands typed in another terminal find a running cluster.
//!
//! It records facts about processes (pids, ports, the exact command line)
//! and nothing about Raft. It must never be trusted blindly: a pid is only
//! signalled after the process behind it is checked to be the node we
//! started (see `procs::probe`).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::partition::list;
use crate::UsageError;

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "cluster.json";
/// A state file is small; anything larger is not ours.
const MAX_BYTES: u64 = 1 << 20;
const VERSION: u32 = 1;

/// Which transport the nodes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// One process per node, TCP between them.
    Tcp,
    /// One process per node, QUIC (mutual TLS) between them.
    Quic,
    /// Every node in one process, in-memory channels between them.
    Mem,
}

impl Transport {
    /// The name `raft-node --transport` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
            Transport::Mem => "mem",
        }
    }
}

/// One OS process running one node (tcp, quic) or all of them (mem).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry {
    /// Its pid; 0 once it has been stopped for good.
    pub pid: u32,
    /// The arguments it was started with (after the binary), so `restart`
    /// starts it the same way and `procs::probe` can recognise it.
    pub args: Vec<String>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// The node ids it runs.
    pub nodes: Vec<u64>,
    /// Stopped with SIGSTOP by `cluster pause`.
    #[serde(default)]
    pub paused: bool,
}

/// The process that started the cluster and shows its live view; it stops
/// the nodes when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervisor {
    /// Its pid.
    pub pid: u32,
    /// Its whole command line (argv), to recognise it.
    pub argv: Vec<String>,
}

impl Supervisor {
    /// This process.
    pub fn this_process() -> Supervisor {
        Supervisor {
            pid: std::process::id(),
            argv: std::env::args().collect(),
        }
    }

    /// Whether it still runs.
    pub fn alive(&self) -> bool {
        match self.argv.split_first() {
            Some((bin, args)) => {
                crate::procs::probe(self.pid, Path::new(bin), args) != crate::procs::Probe::Gone
            }
            None => false,
        }
    }
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// The Raft node id.
    pub id: u64,
    /// The name shown in tables and drawings (`1`, or `1a` in the demo).
    pub label: String,
    /// Where its Raft transport listens (none for mem).
    pub raft_addr: Option<String>,
    /// Where its HTTP API listens.
    pub http_addr: String,
}

/// Everything a later command needs to find and drive the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Format version of this file.
    pub version: u32,
    /// The transport the nodes use.
    pub transport: Transport,
    /// The `cargo xtask cluster` process showing the live view, if any.
    pub supervisor: Option<Supervisor>,
    /// The raft-node binary.
    pub binary: PathBuf,
    /// The data directory (this file's directory).
    pub data_dir: PathBuf,
    /// The node processes.
    pub processes: Vec<ProcessEntry>,
    /// The nodes, in id order.
    pub nodes: Vec<NodeEntry>,
}

impl ClusterState {
    /// A state for a new cluster.
    pub fn new(
        transport: Transport,
        binary: PathBuf,
        data_dir: PathBuf,
        nodes: Vec<NodeEntry>,
    ) -> ClusterState {
        ClusterState {
            version: VERSION,
            transport,
            supervisor: None,
            binary,
            data_dir,
            processes: Vec::new(),
            nodes,
        }
    }

    /// Where the state file of a cluster in `data_dir` lives.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Reads the state file in `data_dir`; `Ok(None)` if there is none.
    pub fn load(data_dir: &Path) -> Result<Option<ClusterState>> {
        let path = Self::path(data_dir);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut text = String::new();
        file.take(MAX_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if text.len() as u64 > MAX_BYTES {
            return Err(UsageError::new(format!(
                "{} is larger than {MAX_BYTES} bytes: not a cluster state file; remove it",
                path.display()
            ))
            .into());
        }
        let state: ClusterState = serde_json::from_str(&text).map_err(|e| {
            UsageError::new(format!(
                "{} is not a readable cluster state file ({e}); remove it if no cluster is running",
                path.display()
            ))
        })?;
        if state.version != VERSION {
            return Err(UsageError::new(format!(
                "{} has format version {} (expected {VERSION}); stop that cluster with the xtask that started it, or remove the file",
                path.display(),
                state.version
            ))
            .into());
        }
        Ok(Some(state))
    }

    /// Writes the state file atomically (a temporary file, then a rename),
    /// so a reader in another terminal never sees half of it.
    pub fn save(&self) -> Result<()> {
        let path = Self::path(&self.data_dir);
        let tmp = self.data_dir.join(format!("{FILE_NAME}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("the state serialises to JSON");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// Removes the state file of the cluster in `data_dir` (no error if it
    /// is already gone).
    pub fn remove(data_dir: &Path) -> Result<()> {
        let path = Self::path(data_dir);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Every node id, in order.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The node with this id, or a usage error naming the known ids.
    pub fn node(&self, id: u64) -> Result<&NodeEntry, UsageError> {
        self.nodes.iter().find(|n| n.id == id).ok_or_else(|| {
            UsageError::new(format!(
                "no node {id} in this cluster (nodes: {})",
                list(&self.ids())
            ))
        })
    }

    /// The index into `processes` of the process running node `id`.
    pub fn process_of(&self, id: u64) -> Option<usize> {
        self.processes.iter().position(|p| p.nodes.contains(&id))
    }

    /// How node `id` is named in messages: its label (`1a`), or `node 2`
    /// when its label is just its id.
    pub fn label(&self, id: u64) -> String {
        match self.nodes.iter().find(|n| n.id == id) {
            Some(n) => display_name(id, &n.label),
            None => display_name(id, ""),
        }
    }
}

/// `1a` for a node labelled 1a; `node 2` for node 2 labelled by its id (or
/// not at all).
pub fn display_name(id: u64, label: &str) -> String {
    if label.is_empty() || label == id.to_string() {
        format!("node {id}")
    } else {
        label.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> ClusterState {
        let nodes = (1..=3)
            .map(|id| NodeEntry {
                id,
                label: format!("1{}", (b'a' + id as u8 - 1) as char),
                raft_addr: Some(format!("127.0.0.1:{}", 7000 + id)),
                http_addr: format!("127.0.0.1:{}", 8000 + id),
            })
            .collect();
        let mut s = ClusterState::new(
            Transport::Quic,
            PathBuf::from("/bin/raft-node"),
            dir.to_path_buf(),
            nodes,
        );
        s.supervisor = Some(Supervisor {
            pid: 42,
            argv: vec!["xtask".into(), "cluster".into()],
        });
        for id in 1..=3 {
            s.processes.push(ProcessEntry {
                pid: 100 + id as u32,
                args: vec!["--id".into(), id.to_string()],
                log: dir.join(format!("node-{id}.log")),
                nodes: vec![id],
                paused: id == 2,
            });
        }
        s
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ClusterState::load(dir.path()).unwrap(), None);
        let s = sample(dir.path());
        s.save().unwrap();
        assert_eq!(ClusterState::load(dir.path()).unwrap(), Some(s.clone()));
        assert!(!dir.path().join("cluster.json.tmp").exists());
        ClusterState::remove(dir.path()).unwrap();
        ClusterState::remove(dir.path()).unwrap();
        assert_eq!(ClusterState::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn lookups_name_known_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let s = sample(dir.path());
        assert_eq!(s.node(2).unwrap().label, "1b");
        assert_eq!(s.process_of(3), Some(2));
        assert_eq!(s.process_of(9), None);
        let err = s.node(9).unwrap_err().to_string();
        assert_eq!(err, "no node 9 in this cluster (nodes: 1, 2, 3)");
        assert_eq!(s.label(1), "1a");
        assert_eq!(s.label(9), "node 9");
        assert_eq!(display_name(2, "2"), "node 2");
        assert_eq!(display_name(2, "zone-b"), "zone-b");
    }

    #[test]
    fn garbage_and_oversized_files_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = ClusterState::path(dir.path());
        std::fs::write(&path, "{not json").unwrap();
        let err = ClusterState::load(dir.path()).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err:#}");
        assert!(err
            .to_string()
            .contains("not a readable cluster state file"));

        std::fs::write(&path, vec![b' '; (MAX_BYTES + 10) as usize]).unwrap();
        let err = ClusterState::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err:#}");

        let mut s = sample(dir.path());
        s.version = 99;
        std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        let err = ClusterState::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("format version 99"), "{err:#}");
    }
}
