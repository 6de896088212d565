//! The binary's command line and configuration file.
//!
//! Every option can be given as a flag or in a TOML file named by
//! `--config`; a flag given on the command line wins over the file, the
//! file wins over the built-in default. Errors are returned as one line of
//! text: the binary prints it and exits with status 2. Nothing here touches
//! the network or the disk except reading the config file.

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Which transport carries Raft messages between nodes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// TCP with length-prefixed frames; mutual TLS if --tls-* are given.
    Tcp,
    /// QUIC with mutual TLS 1.3 (--tls-cert, --tls-key, --tls-ca required).
    Quic,
    /// In-process channels: runs --nodes nodes in this one process.
    Mem,
}

impl TransportKind {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Quic => "quic",
            TransportKind::Mem => "mem",
        }
    }
}

/// One initial member: `ID=RAFT_ADDR,HTTP_ADDR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// The member's node id.
    pub id: u64,
    /// Where its Raft transport listens.
    pub raft_addr: String,
    /// Where its HTTP API listens.
    pub http_addr: String,
}

impl FromStr for PeerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid peer '{s}': expected ID=RAFT_HOST:PORT,HTTP_HOST:PORT");
        let (id, addrs) = s.split_once('=').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        if id == 0 {
            return Err(format!("invalid peer '{s}': node id 0 is reserved"));
        }
        let (raft, http) = addrs.split_once(',').ok_or_else(bad)?;
        let (raft, http) = (raft.trim(), http.trim());
        for a in [raft, http] {
            match a.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => return Err(bad()),
            }
        }
        Ok(PeerSpec {
            id,
            raft_addr: raft.to_owned(),
            http_addr: http.to_owned(),
        })
    }
}

/// A replicated key-value service over HTTP, built on Raft.
///
/// Start three nodes, one per terminal (for nodes 2 and 3 change --id, --data-dir,
/// --raft-addr and --http-addr to match their --peer entries):
///
///   raft-node --id 1 --data-dir d1 --raft-addr 127.0.0.1:7001 --http-addr 127.0.0.1:8001 \
///     --peer 1=127.0.0.1:7001,127.0.0.1:8001 --peer 2=127.0.0.1:7002,127.0.0.1:8002 \
///     --peer 3=127.0.0.1:7003,127.0.0.1:8003
///
/// or all three in one process:
///
///   raft-node --transport mem --nodes 3 --http-addr 127.0.0.1:8001
///
/// Then:
///
///   curl -XPUT --data-binary hello localhost:8001/v1/kv/greeting
///   curl -L localhost:8001/v1/kv/greeting
///
/// Load and failover figures: raft-node loadgen --help
#[derive(Parser, Debug, Clone)]
#[command(
    name = "raft-node",
    version,
    args_conflicts_with_subcommands = true,
    verbatim_doc_comment
)]
pub struct Cli {
    /// A TOML file holding any of the options below (keys as the flag names,
    /// with '-' or '_'; `peer` is a list of strings). Flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// This node's id (non-zero). Required except with --transport mem.
    #[arg(long, value_name = "N")]
    pub id: Option<u64>,

    /// Where the Raft log, hard state and snapshots live.
    #[arg(long, value_name = "DIR", default_value = "raft-data")]
    pub data_dir: PathBuf,

    /// Where the Raft transport listens [default: this node's --peer entry, else 127.0.0.1:7001].
    #[arg(long, value_name = "HOST:PORT")]
    pub raft_addr: Option<SocketAddr>,

    /// Where the HTTP API listens [default: this node's --peer entry, else 127.0.0.1:8001].
    /// With --transport mem, node i listens on this port + i - 1.
    #[arg(long, value_name = "HOST:PORT")]
    pub http_addr: Option<SocketAddr>,

    /// An initial member, ID=RAFT_ADDR,HTTP_ADDR (repeatable; this node may be
    /// listed or not).
    #[arg(long = "peer", value_name = "ID=RAFT_ADDR,HTTP_ADDR")]
    pub peers: Vec<PeerSpec>,

    /// The cluster's id; nodes of another cluster are refused.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cluster_id: u64,

    /// The Raft transport.
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: TransportKind,

    /// This node's certificate (PEM). quic: required; tcp: enables mutual TLS.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// This node's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// The cluster CA certificate (PEM) that signs every node's certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// Milliseconds per Raft tick.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    pub tick_ms: u64,

    /// Election timeout in ticks (each node waits a random time between this
    /// and twice this).
    #[arg(long, value_name = "TICKS", default_value_t = 15)]
    pub election_ticks: u32,

    /// Ticks between leader heartbeats (less than --election-ticks).
    #[arg(long, value_name = "TICKS", default_value_t = 3)]
    pub heartbeat_ticks: u32,

    /// Snapshot the state machine and compact the log every N applied entries.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub snapshot_every: u64,

    /// How long a request may wait (for a leader, a commit, a read) before it
    /// is answered 503/504.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub request_timeout_ms: u64,

    /// Largest accepted value; larger bodies get 413.
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    pub max_value_bytes: usize,

    /// Most HTTP connections open at once; past it, new connections wait
    /// for one to close.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_http_connections: usize,

    /// Allow POST /v1/admin/isolate and /v1/admin/heal (testing only).
    #[arg(long)]
    pub enable_fault_injection: bool,

    /// Start with no members, waiting to be added by an admin call on the
    /// leader (POST /v1/admin/learners).
    #[arg(long)]
    pub join: bool,

    /// With --transport mem: how many nodes to run in this process.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub nodes: u64,

    /// Other tools.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands besides running a node.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Drive PUT/GET load at a running cluster and print throughput and
    /// latency percentiles.
    Loadgen(crate::loadgen::LoadgenArgs),
    /// Write a development CA and per-node certificates for TLS (quic, or tcp
    /// with mutual TLS) into a directory.
    GenCerts(GenCertsArgs),
}

/// Arguments of `raft-node gen-certs`.
#[derive(clap::Args, Debug, Clone)]
pub struct GenCertsArgs {
    /// Where to write ca.pem, ca.key, node-<id>.pem and node-<id>.key.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The node ids to issue certificates for (comma-separated).
    #[arg(
        long,
        value_name = "IDS",
        value_delimiter = ',',
        default_value = "1,2,3"
    )]
    pub ids: Vec<u64>,
}

/// The config file's keys; every one optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<u64>,
    #[serde(alias = "data-dir")]
    data_dir: Option<PathBuf>,
    #[serde(alias = "raft-addr")]
    raft_addr: Option<SocketAddr>,
    #[serde(alias = "http-addr")]
    http_addr: Option<SocketAddr>,
    #[serde(alias = "peers")]
    peer: Option<Vec<String>>,
    #[serde(alias = "cluster-id")]
    cluster_id: Option<u64>,
    transport: Option<TransportKind>,
    #[serde(alias = "tls-cert")]
    tls_cert: Option<PathBuf>,
    #[serde(alias = "tls-key")]
    tls_key: Option<PathBuf>,
    #[serde(alias = "tls-ca")]
    tls_ca: Option<PathBuf>,
    #[serde(alias = "tick-ms")]
    tick_ms: Option<u64>,
    #[serde(alias = "election-ticks")]
    election_ticks: Option<u32>,
    #[serde(alias = "heartbeat-ticks")]
    heartbeat_ticks: Option<u32>,
    #[serde(alias = "snapshot-every")]
    snapshot_every: Option<u64>,
    #[serde(alias = "request-timeout-ms")]
    request_timeout_ms: Option<u64>,
    #[serde(alias = "max-value-bytes")]
    max_value_bytes: Option<usize>,
    #[serde(alias = "max-http-connections")]
    max_http_connections: Option<usize>,
    #[serde(alias = "enable-fault-injection")]
    enable_fault_injection: Option<bool>,
    join: Option<bool>,
    nodes: Option<u64>,
}

/// What `parse` decided.
#[derive(Debug)]
pub enum Parsed {
    /// Run a node (or, with mem, a cluster).
    Run(Box<Cli>),
    /// Run a subcommand.
    Command(Command),
    /// Print this (help or version) on stdout and exit 0.
    Print(String),
}

/// Parses the command line (and the config file it names), returning one
/// line of error text on failure.
pub fn parse<I, T>(args: I) -> Result<Parsed, String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = match Cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    Ok(Parsed::Print(e.render().to_string()))
                }
                _ => Err(first_line(&e.render().to_string())),
            };
        }
    };
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| first_line(&e.to_string()))?;
    if let Some(cmd) = cli.command.take() {
        return Ok(Parsed::Command(cmd));
    }
    if let Some(path) = cli.config.clone() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        let file: FileConfig = toml::from_str(&text)
            .map_err(|e| format!("invalid config file {}: {}", path.display(), toml_error(&e)))?;
        merge(&mut cli, file, &matches)?;
    }
    validate(&cli)?;
    Ok(Parsed::Run(Box::new(cli)))
}

/// A TOML error on one line: where, then what (the message is the last
/// line of the multi-line rendering).
fn toml_error(e: &toml::de::Error) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match (lines.first(), lines.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}: {b}"),
        (Some(a), _) => (*a).to_owned(),
        _ => "unreadable TOML".to_owned(),
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid arguments")
        .to_owned()
}

fn merge(cli: &mut Cli, file: FileConfig, m: &ArgMatches) -> Result<(), String> {
    let from_cli = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
    macro_rules! take {
        ($field:ident, $id:literal) => {
            if !from_cli($id) {
                if let Some(v) = file.$field {
                    cli.$field = v;
                }
            }
        };
        (opt $field:ident, $id:literal) => {
            if !from_cli($id) {
                if let Some(v) = file.$field {
                    cli.$field = Some(v);
                }
            }
        };
    }
    take!(opt id, "id");
    take!(data_dir, "data_dir");
    take!(opt raft_addr, "raft_addr");
    take!(opt http_addr, "http_addr");
    take!(cluster_id, "cluster_id");
    take!(transport, "transport");
    take!(opt tls_cert, "tls_cert");
    take!(opt tls_key, "tls_key");
    take!(opt tls_ca, "tls_ca");
    take!(tick_ms, "tick_ms");
    take!(election_ticks, "election_ticks");
    take!(heartbeat_ticks, "heartbeat_ticks");
    take!(snapshot_every, "snapshot_every");
    take!(request_timeout_ms, "request_timeout_ms");
    take!(max_value_bytes, "max_value_bytes");
    take!(max_http_connections, "max_http_connections");
    take!(enable_fault_injection, "enable_fault_injection");
    take!(join, "join");
    take!(nodes, "nodes");
    if !from_cli("peers") {
        if let Some(peers) = file.peer {
            cli.peers = peers
                .iter()
                .map(|p| p.parse())
                .collect::<Result<Vec<PeerSpec>, String>>()
                .map_err(|e| format!("in config file: {e}"))?;
        }
    }
    Ok(())
}

fn validate(cli: &Cli) -> Result<(), String> {
    if cli.transport != TransportKind::Mem {
        match cli.id {
            None => return Err("--id is required (except with --transport mem)".into()),
            Some(0) => return Err("--id 0 is reserved; node ids start at 1".into()),
            Some(_) => {}
        }
    }
    if cli.transport == TransportKind::Mem && !(1..=64).contains(&cli.nodes) {
        return Err(format!(
            "--nodes must be between 1 and 64, not {}",
            cli.nodes
        ));
    }
    if cli.tick_ms == 0 || cli.tick_ms > 10_000 {
        return Err("--tick-ms must be between 1 and 10000".into());
    }
    if cli.election_ticks == 0 || cli.heartbeat_ticks == 0 {
        return Err("--election-ticks and --heartbeat-ticks must be at least 1".into());
    }
    if cli.heartbeat_ticks >= cli.election_ticks {
        return Err(format!(
            "--heartbeat-ticks ({}) must be less than --election-ticks ({})",
            cli.heartbeat_ticks, cli.election_ticks
        ));
    }
    if cli.snapshot_every == 0 {
        return Err("--snapshot-every must be at least 1".into());
    }
    if cli.request_timeout_ms == 0 {
        return Err("--request-timeout-ms must be at least 1".into());
    }
    if cli.max_value_bytes == 0 || cli.max_value_bytes > 64 << 20 {
        return Err("--max-value-bytes must be between 1 and 67108864".into());
    }
    if cli.max_http_connections == 0 || cli.max_http_connections > 1_000_000 {
        return Err("--max-http-connections must be between 1 and 1000000".into());
    }
    let tls = [&cli.tls_cert, &cli.tls_key, &cli.tls_ca];
    let given = tls.iter().filter(|t| t.is_some()).count();
    if given != 0 && given != 3 {
        return Err("--tls-cert, --tls-key and --tls-ca must be given together".into());
    }
    if cli.transport == TransportKind::Quic && given != 3 {
        return Err("--transport quic needs --tls-cert, --tls-key and --tls-ca".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &cli.peers {
        if !seen.insert(p.id) {
            return Err(format!("--peer lists node {} more than once", p.id));
        }
    }
    if cli.join && cli.transport == TransportKind::Mem {
        return Err("--join does not apply to --transport mem".into());
    }
    Ok(())
}

impl Cli {
    /// This node's Raft listen address: the flag, else its --peer entry,
    /// else the default.
    pub fn own_raft_addr(&self) -> Result<SocketAddr, String> {
        if let Some(a) = self.raft_addr {
            return Ok(a);
        }
        match self.own_peer() {
            Some(p) => p.raft_addr.parse().map_err(|_| {
                format!(
                    "--raft-addr is needed: this node's --peer address {} is not an IP:PORT to listen on",
                    p.raft_addr
                )
            }),
            None => Ok(SocketAddr::from(([127, 0, 0, 1], 7001))),
        }
    }

    /// This node's HTTP listen address, chosen like [`Cli::own_raft_addr`].
    pub fn own_http_addr(&self) -> Result<SocketAddr, String> {
        if let Some(a) = self.http_addr {
            return Ok(a);
        }
        match self.own_peer() {
            Some(p) => p.http_addr.parse().map_err(|_| {
                format!(
                    "--http-addr is needed: this node's --peer address {} is not an IP:PORT to listen on",
                    p.http_addr
                )
            }),
            None => Ok(SocketAddr::from(([127, 0, 0, 1], 8001))),
        }
    }

    fn own_peer(&self) -> Option<&PeerSpec> {
        let id = self.id?;
        self.peers.iter().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Cli, String> {
        let mut v = vec!["raft-node"];
        v.extend_from_slice(args);
        match parse(v)? {
            Parsed::Run(c) => Ok(*c),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults_and_peers() {
        let c = run(&["--id", "2", "--peer", "1=127.0.0.1:7001,127.0.0.1:8001"]).unwrap();
        assert_eq!(c.id, Some(2));
        assert_eq!(c.tick_ms, 10);
        assert_eq!(c.election_ticks, 15);
        assert_eq!(c.heartbeat_ticks, 3);
        assert_eq!(c.snapshot_every, 10_000);
        assert_eq!(c.max_value_bytes, 1_048_576);
        assert_eq!(c.transport, TransportKind::Tcp);
        assert_eq!(c.peers[0].http_addr, "127.0.0.1:8001");
    }

    #[test]
    fn own_addresses_come_from_the_peer_list() {
        let c = run(&["--id", "1", "--peer", "1=127.0.0.1:7101,127.0.0.1:8101"]).unwrap();
        assert_eq!(c.own_raft_addr().unwrap().port(), 7101);
        assert_eq!(c.own_http_addr().unwrap().port(), 8101);
    }

    #[test]
    fn errors_are_one_line() {
        for args in [
            &["--id", "1", "--bogus"][..],
            &["--id", "x"],
            &[],
            &["--id", "1", "--peer", "nonsense"],
            &["--id", "1", "--heartbeat-ticks", "20"],
            &["--id", "1", "--transport", "quic"],
            &["--id", "1", "--config", "/nonexistent/file.toml"],
        ] {
            let e = run(args).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
            assert!(!e.is_empty());
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("raft-node-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "id = 3\ntick-ms = 20\nsnapshot_every = 7\npeer = [\"3=127.0.0.1:7003,127.0.0.1:8003\"]\n",
        )
        .unwrap();
        let c = run(&["--config", f.to_str().unwrap(), "--tick-ms", "5"]).unwrap();
        assert_eq!(c.id, Some(3));
        assert_eq!(c.tick_ms, 5);
        assert_eq!(c.snapshot_every, 7);
        assert_eq!(c.peers.len(), 1);
        std::fs::write(&f, "id = 3\nunknown_key = 1\n").unwrap();
        let e = run(&["--config", f.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("unknown"), "{e}");
        assert!(!e.contains('\n'));
        let _ = std::fs::remove_dir_all(dir);
    }
}
