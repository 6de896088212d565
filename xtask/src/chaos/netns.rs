//! `--net netns`: every node in a network namespace of its own, joined by a
//! private bridge, so partitions cut real links in the kernel instead of
//! asking the nodes to pretend.
//!
//! Layout of one run (the owner is the xtask process id, so two runs never
//! share a name and a crashed run's leftovers can be told from a live one's):
//!
//! ```text
//! root namespace: bridge rcbr<owner>, 10.213.<s>.254/24   (xtask, clients, watchers)
//!   veth rcv<owner>n<id>  <->  eth0 in namespace raftchaos-<owner>-n<id>, 10.213.<s>.<id>/24
//! ```
//!
//! A cut "a->b" (packets from a never reach b) is a policy rule in b's
//! namespace, `from <ip of a> iif eth0 blackhole`, ahead of the local table
//! (set up moves the `local` rule from preference 0 to 100 for that). The
//! packet really crosses the veth and the bridge and is then discarded on
//! arrival, as a cut cable or a firewall's INPUT DROP would: the sender
//! gets no error, its connects and writes just time out. The nemesis cuts
//! both directions of every link it partitions (`nemesis::cuts` is
//! symmetric), so neither TCP nor QUIC datagrams cross in either direction.
//! Why not something else: this machine has no iptables or nft, tc has no
//! classifiers or drop action loaded, and a blackhole *route* in the sender
//! fails its sends at once (EINVAL), which no real partition does.
//!
//! This module must never touch a namespace, link or process that does not
//! carry its naming scheme, and must never remove another live run's: only
//! names whose owner pid is this process (teardown) or no longer exists
//! (leftovers of a crashed run).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::future::BoxFuture;
use nix::sys::signal::Signal;

use super::client::nanos;
use super::net::{Links, NetEvent};
use crate::UsageError;

/// Prefix of every namespace this module creates.
const NS_PREFIX: &str = "raftchaos-";
/// Prefix of the bridge in the root namespace.
const BRIDGE_PREFIX: &str = "rcbr";
/// Prefix of the root-namespace side of each node's veth pair.
const VETH_PREFIX: &str = "rcv";
/// The node's side of its veth pair, inside its namespace.
pub const NODE_IF: &str = "eth0";
/// First two octets of every run's /24.
const NET_PREFIX: [u8; 2] = [10, 213];
/// Host part of the bridge's address.
const BRIDGE_HOST: u8 = 254;
/// Preference of the cut rules: below [`LOCAL_PREF`], so they are
/// consulted before the local table delivers anything.
const CUT_PREF: &str = "10";
/// Where the local table's rule goes (from 0) so cut rules come first.
const LOCAL_PREF: &str = "100";
/// Longest interface name Linux accepts.
const IFNAMSIZ_MAX: usize = 15;
/// Raft port of every node (each namespace has its own port space).
pub const RAFT_PORT: u16 = 7000;
/// HTTP port of every node.
pub const HTTP_PORT: u16 = 8000;

/// Why netns mode cannot run here, or `None` if it can: Linux, effective
/// uid 0, and iproute2's `ip` installed. One line, for a usage error.
pub fn unsupported() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("--net netns needs Linux (network namespaces); use --net api".into());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match effective_uid(&status) {
        Some(0) => {}
        Some(uid) => {
            return Some(format!(
                "--net netns must run as root (effective uid is {uid}) to create namespaces, veths and a bridge; use sudo or --net api"
            ))
        }
        None => {
            return Some("--net netns must run as root, and this process's uid cannot be read from /proc/self/status; use --net api".into())
        }
    }
    if ip_binary().is_none() {
        return Some("--net netns needs iproute2's `ip` (not found in /usr/sbin, /sbin, /usr/bin or /bin); install iproute2 or use --net api".into());
    }
    None
}

/// The effective uid from the text of `/proc/<pid>/status` (its `Uid:` line
/// holds real, effective, saved and filesystem uids).
pub fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
}

/// iproute2's `ip`, by absolute path so the nodes' command lines do not
/// depend on PATH.
pub fn ip_binary() -> Option<PathBuf> {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Names and addresses of one run's network. Pure: building one changes
/// nothing on the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The pid of the xtask process that owns it.
    pub owner: u32,
    /// Third octet of the run's 10.213.x.0/24.
    pub subnet: u8,
    /// Node ids, each at host address `id` (so at most 253 nodes).
    pub ids: Vec<u64>,
    /// iproute2's `ip`.
    pub ip: PathBuf,
}

impl Topology {
    /// The network of owner `owner` for nodes `ids`.
    pub fn new(owner: u32, subnet: u8, ids: &[u64], ip: PathBuf) -> Result<Topology> {
        if let Some(bad) = ids
            .iter()
            .find(|&&id| id == 0 || id >= u64::from(BRIDGE_HOST))
        {
            bail!("node id {bad} cannot be a host address in a /24 (ids 1..=253)");
        }
        let t = Topology {
            owner,
            subnet,
            ids: ids.to_vec(),
            ip,
        };
        for id in ids {
            debug_assert!(t.veth(*id).len() <= IFNAMSIZ_MAX);
        }
        Ok(t)
    }

    /// The bridge in the root namespace.
    pub fn bridge(&self) -> String {
        format!("{BRIDGE_PREFIX}{}", self.owner)
    }

    /// Node `id`'s namespace.
    pub fn ns(&self, id: u64) -> String {
        format!("{NS_PREFIX}{}-n{id}", self.owner)
    }

    /// The root-namespace end of node `id`'s veth pair.
    pub fn veth(&self, id: u64) -> String {
        format!("{VETH_PREFIX}{}n{id}", self.owner)
    }

    /// Node `id`'s address.
    pub fn node_ip(&self, id: u64) -> Ipv4Addr {
        let host = u8::try_from(id).expect("ids are checked to be below 254 in Topology::new");
        Ipv4Addr::new(NET_PREFIX[0], NET_PREFIX[1], self.subnet, host)
    }

    /// The bridge's address: where xtask's own traffic to the nodes comes from.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(NET_PREFIX[0], NET_PREFIX[1], self.subnet, BRIDGE_HOST)
    }

    /// The run's subnet, for messages.
    pub fn cidr(&self) -> String {
        format!("{}.{}.{}.0/24", NET_PREFIX[0], NET_PREFIX[1], self.subnet)
    }

    /// The command prefix that starts a program inside node `id`'s
    /// namespace. `ip netns exec` execs the program in place (it does not
    /// fork), so the pid xtask holds is the node's own and SIGKILL, SIGSTOP
    /// and `procs::probe` act on the node itself.
    pub fn wrapper(&self, id: u64) -> Vec<String> {
        vec![
            self.ip.display().to_string(),
            "netns".into(),
            "exec".into(),
            self.ns(id),
        ]
    }

    /// The `ip` argument lists that build the network, in order.
    pub fn setup_commands(&self) -> Vec<Vec<String>> {
        let v = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let br = self.bridge();
        let mut cmds = vec![
            v(&["link", "add", &br, "type", "bridge"]),
            v(&[
                "addr",
                "add",
                &format!("{}/24", self.bridge_ip()),
                "dev",
                &br,
            ]),
            v(&["link", "set", &br, "up"]),
        ];
        for &id in &self.ids {
            let (ns, veth) = (self.ns(id), self.veth(id));
            let ip = format!("{}/24", self.node_ip(id));
            cmds.extend([
                v(&["netns", "add", &ns]),
                v(&["-n", &ns, "link", "set", "lo", "up"]),
                v(&[
                    "link", "add", &veth, "type", "veth", "peer", "name", NODE_IF, "netns", &ns,
                ]),
                v(&["link", "set", &veth, "master", &br]),
                v(&["link", "set", &veth, "up"]),
                v(&["-n", &ns, "addr", "add", &ip, "dev", NODE_IF]),
                v(&["-n", &ns, "link", "set", NODE_IF, "up"]),
                // Cut rules must be consulted before the local table, or
                // packets for the node's own address would be delivered
                // before any rule saw them.
                v(&[
                    "-n", &ns, "rule", "add", "pref", LOCAL_PREF, "lookup", "local",
                ]),
                v(&["-n", &ns, "rule", "del", "pref", "0", "lookup", "local"]),
            ]);
        }
        cmds
    }

    /// The `ip` arguments that cut (`add`) or heal (`del`) the link
    /// `from -> to`: in `to`'s namespace, discard what arrives from `from`.
    pub fn cut_command(&self, op: RuleOp, from: u64, to: u64) -> Vec<String> {
        let op = match op {
            RuleOp::Add => "add",
            RuleOp::Del => "del",
        };
        [
            "-n",
            &self.ns(to),
            "rule",
            op,
            "pref",
            CUT_PREF,
            "from",
            &self.node_ip(from).to_string(),
            "iif",
            NODE_IF,
            "blackhole",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// Adding or deleting a cut rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOp {
    Add,
    Del,
}

/// Which of our names `name` is, with its owner pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    /// A node namespace.
    Namespace(u32),
    /// A bridge or a veth end in the root namespace.
    Link(u32),
}

/// Recognises a name made by [`Topology`]; `None` for anything else.
pub fn parse_name(name: &str) -> Option<Owned> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let pid = |s: &str| {
        if digits(s) {
            s.parse::<u32>().ok()
        } else {
            None
        }
    };
    if let Some(rest) = name.strip_prefix(NS_PREFIX) {
        let (owner, node) = rest.split_once("-n")?;
        return if digits(node) {
            pid(owner).map(Owned::Namespace)
        } else {
            None
        };
    }
    if let Some(owner) = name.strip_prefix(BRIDGE_PREFIX) {
        return pid(owner).map(Owned::Link);
    }
    if let Some(rest) = name.strip_prefix(VETH_PREFIX) {
        let (owner, node) = rest.split_once('n')?;
        return if digits(node) {
            pid(owner).map(Owned::Link)
        } else {
            None
        };
    }
    None
}

/// Namespace names in the output of `ip netns list` ("name" or
/// "name (id: 3)" per line).
pub fn namespace_names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Interface names in the output of `ip -o link show`
/// ("7: rcv12n1@if2: <...> ...").
pub fn link_names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// A third octet for 10.213.x.0/24 that no address or route in `in_use`
/// (the root namespace's `ip -4 addr` and `ip -4 route` listings) mentions,
/// trying from one derived from `owner` so runs side by side differ.
pub fn choose_subnet(owner: u32, in_use: &str) -> Option<u8> {
    let start = owner % 250;
    (0..250u32)
        .map(|k| ((start + k) % 250 + 1) as u8)
        .find(|s| {
            let net = format!("{}.{}.{s}.", NET_PREFIX[0], NET_PREFIX[1]);
            !in_use.contains(&net)
        })
}

/// Runs `ip args...`; an error names the command and what ip printed.
fn run_ip(ip: &Path, args: &[String]) -> Result<String> {
    let out = Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", ip.display()))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pid_alive(pid: u32) -> bool {
    pid != 0 && Path::new("/proc").join(pid.to_string()).exists()
}

/// Our namespaces and links (in the root namespace) whose owner `doomed`
/// says to remove, as (is a namespace, name).
fn owned_names(ip: &Path, doomed: &impl Fn(u32) -> bool) -> Result<Vec<(bool, String)>> {
    let mut names = Vec::new();
    for ns in namespace_names(&run_ip(ip, &["netns".into(), "list".into()])?) {
        if matches!(parse_name(&ns), Some(Owned::Namespace(pid)) if doomed(pid)) {
            names.push((true, ns));
        }
    }
    for link in link_names(&run_ip(ip, &["-o".into(), "link".into(), "show".into()])?) {
        if matches!(parse_name(&link), Some(Owned::Link(pid)) if doomed(pid)) {
            names.push((false, link));
        }
    }
    Ok(names)
}

/// Removes every namespace and link of ours whose owner `doomed` says to
/// remove; processes still inside such a namespace are killed first (they
/// are nodes of that run, and would otherwise keep it alive). Returns what
/// was removed and what could not be.
fn remove_owned(ip: &Path, doomed: impl Fn(u32) -> bool) -> (Vec<String>, Vec<String>) {
    let (mut removed, mut errors) = (Vec::new(), Vec::new());
    let names = match owned_names(ip, &doomed) {
        Ok(n) => n,
        Err(e) => return (removed, vec![format!("{e:#}")]),
    };
    let mut deleted_ns = false;
    for (_, ns) in names.iter().filter(|(is_ns, _)| *is_ns) {
        if let Ok(pids) = run_ip(ip, &["netns".into(), "pids".into(), ns.clone()]) {
            for p in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
            {
                let _ = crate::procs::signal(p, Signal::SIGKILL);
                removed.push(format!("killed process {p} in {ns}"));
            }
        }
        match run_ip(ip, &["netns".into(), "del".into(), ns.clone()]) {
            Ok(_) => {
                deleted_ns = true;
                removed.push(format!("namespace {ns}"));
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    // A namespace's end of each veth pair goes with it, and our end with
    // that, but the kernel does it in the background: give it a moment so
    // what is left is what really needs deleting (the bridge, and veths of
    // a half-built run).
    if deleted_ns {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let veths = owned_names(ip, &doomed).map(|n| {
                n.iter()
                    .any(|(is_ns, name)| !is_ns && name.starts_with(VETH_PREFIX))
            });
            if !matches!(veths, Ok(true)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let links = match owned_names(ip, &doomed) {
        Ok(n) => n,
        Err(e) => {
            errors.push(format!("{e:#}"));
            Vec::new()
        }
    };
    for (_, link) in links.iter().filter(|(is_ns, _)| !*is_ns) {
        match run_ip(ip, &["link".into(), "del".into(), link.clone()]) {
            Ok(_) => removed.push(format!("link {link}")),
            // Went with its namespace after all.
            Err(e) if format!("{e:#}").contains("Cannot find device") => {}
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (removed, errors)
}

/// Removes the namespaces, veths and bridges of earlier runs whose xtask
/// process is gone (killed before it could clean up). Returns what was
/// removed; failures are reported on stderr and do not stop the run.
pub fn remove_leftovers(ip: &Path) -> Vec<String> {
    let me = std::process::id();
    let (removed, errors) = remove_owned(ip, |pid| pid != me && !pid_alive(pid));
    for e in errors {
        eprintln!("chaos: netns: could not remove a leftover of an earlier run: {e}");
    }
    removed
}

/// The network of this run while it exists. Dropping it tears it down, so
/// no path out of a run (an error, a panic) leaves it behind.
#[derive(Debug)]
pub struct Network {
    topo: Topology,
    up: bool,
}

impl Network {
    /// Removes crashed runs' leftovers, picks a free subnet and builds the
    /// bridge, the namespaces and the veths for `ids`.
    pub fn setup(ids: &[u64]) -> Result<Network> {
        let ip = ip_binary().ok_or_else(|| UsageError::new("iproute2's `ip` is not installed"))?;
        for r in remove_leftovers(&ip) {
            eprintln!("chaos: netns: cleaned up after an earlier run whose xtask is gone: {r}");
        }
        let owner = std::process::id();
        let mut in_use = run_ip(
            &ip,
            &["-4".into(), "-o".into(), "addr".into(), "show".into()],
        )?;
        in_use.push_str(&run_ip(
            &ip,
            &[
                "-4".into(),
                "route".into(),
                "show".into(),
                "table".into(),
                "all".into(),
            ],
        )?);
        let subnet = choose_subnet(owner, &in_use)
            .ok_or_else(|| anyhow!("every 10.213.x.0/24 is in use on this machine"))?;
        let topo = Topology::new(owner, subnet, ids, ip)?;
        // From here on, Drop removes whatever was built, even half of it.
        let net = Network { topo, up: true };
        for cmd in net.topo.setup_commands() {
            run_ip(&net.topo.ip, &cmd).context("building the netns network")?;
        }
        eprintln!(
            "chaos: netns: bridge {} at {}/24; {}",
            net.topo.bridge(),
            net.topo.bridge_ip(),
            net.describe_nodes()
        );
        Ok(net)
    }

    /// The names and addresses.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// "node 1 10.213.5.1 in raftchaos-77-n1, ...".
    pub fn describe_nodes(&self) -> String {
        self.topo
            .ids
            .iter()
            .map(|&id| {
                format!(
                    "node {id} {} in {}",
                    self.topo.node_ip(id),
                    self.topo.ns(id)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Removes the namespaces, veths and bridge; returns what could not be
    /// removed (nothing, normally). Idempotent.
    pub fn teardown(&mut self) -> Result<Vec<String>, Vec<String>> {
        if !self.up {
            return Ok(Vec::new());
        }
        self.up = false;
        let owner = self.topo.owner;
        let (removed, mut errors) = remove_owned(&self.topo.ip, |pid| pid == owner);
        // Check: nothing of ours may remain.
        match owned_names(&self.topo.ip, &|pid| pid == owner) {
            Ok(left) => errors.extend(
                left.into_iter()
                    .map(|(_, name)| format!("{name} survived teardown")),
            ),
            Err(e) => errors.push(format!("cannot check the teardown: {e:#}")),
        }
        if errors.is_empty() {
            Ok(removed)
        } else {
            Err(errors)
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(errors) = self.teardown() {
            for e in errors {
                eprintln!("chaos: netns: teardown: {e}");
            }
        }
    }
}

/// Partitions as kernel rules in the nodes' namespaces (see the module
/// docs); heal removes exactly the rules this added.
#[derive(Debug)]
pub struct NetnsLinks {
    topo: Topology,
    start: Instant,
    /// Links cut now, as (from, to).
    active: BTreeSet<(u64, u64)>,
    events: Vec<NetEvent>,
}

impl NetnsLinks {
    /// Links of `topo`; event times count from `start`.
    pub fn new(topo: Topology, start: Instant) -> NetnsLinks {
        NetnsLinks {
            topo,
            start,
            active: BTreeSet::new(),
            events: Vec::new(),
        }
    }

    /// Runs one rule change per link off the async runtime (each is a short
    /// `ip` process); returns, per link, its command and the outcome.
    async fn apply(
        &self,
        op: RuleOp,
        links: Vec<(u64, u64)>,
    ) -> Vec<((u64, u64), Vec<String>, Result<(), String>)> {
        let topo = self.topo.clone();
        let work = move || {
            links
                .into_iter()
                .map(|(from, to)| {
                    let cmd = topo.cut_command(op, from, to);
                    let r = run_ip(&topo.ip, &cmd)
                        .map(drop)
                        .map_err(|e| format!("{e:#}"));
                    ((from, to), cmd, r)
                })
                .collect::<Vec<_>>()
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(results) => results,
            Err(e) => vec![(
                (0, 0),
                Vec::new(),
                Err(format!("rule changes did not run: {e}")),
            )],
        }
    }

    fn record(&mut self, action: &'static str, from: u64, to: u64, cmd: &[String]) {
        self.events.push(NetEvent {
            at_ns: nanos(self.start.elapsed()),
            mechanism: "netns",
            action,
            from,
            to: vec![to],
            how: format!("ip {}", cmd.join(" ")),
        });
    }
}

impl Links for NetnsLinks {
    fn mechanism(&self) -> &'static str {
        "netns"
    }

    fn cut<'a>(
        &'a mut self,
        cuts: &'a std::collections::BTreeMap<u64, Vec<u64>>,
    ) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let wanted: Vec<(u64, u64)> = cuts
                .iter()
                .flat_map(|(&from, peers)| peers.iter().map(move |&to| (from, to)))
                .filter(|l| !self.active.contains(l))
                .collect();
            let mut errors = Vec::new();
            for (link, cmd, r) in self.apply(RuleOp::Add, wanted).await {
                match r {
                    Ok(()) => {
                        self.active.insert(link);
                        self.record("cut", link.0, link.1, &cmd);
                    }
                    Err(e) => errors.push(format!("cut {}->{}: {e}", link.0, link.1)),
                }
            }
            errors
        })
    }

    fn heal(&mut self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let active: Vec<(u64, u64)> = self.active.iter().copied().collect();
            let mut errors = Vec::new();
            for (link, cmd, r) in self.apply(RuleOp::Del, active).await {
                match r {
                    Ok(()) => {
                        self.active.remove(&link);
                        self.record("heal", link.0, link.1, &cmd);
                    }
                    // Kept as active: the final heal tries again, and the
                    // teardown removes the namespace with it in any case.
                    Err(e) => errors.push(format!("heal {}->{}: {e}", link.0, link.1)),
                }
            }
            errors
        })
    }

    fn events(&self) -> &[NetEvent] {
        &self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology::new(4194304, 17, &[1, 2, 3], PathBuf::from("/usr/sbin/ip")).unwrap()
    }

    #[test]
    fn names_fit_linux_limits_and_carry_the_owner() {
        let t = topo();
        assert_eq!(t.bridge(), "rcbr4194304");
        assert_eq!(t.veth(3), "rcv4194304n3");
        assert_eq!(t.ns(2), "raftchaos-4194304-n2");
        // The largest pid Linux hands out and the largest chaos cluster.
        let big = Topology::new(4194304, 1, &[7], PathBuf::from("ip")).unwrap();
        assert!(big.bridge().len() <= IFNAMSIZ_MAX);
        assert!(big.veth(7).len() <= IFNAMSIZ_MAX);
        for name in [t.bridge(), t.veth(1), t.ns(1)] {
            assert!(parse_name(&name).is_some(), "{name} is not recognised");
        }
        assert_eq!(parse_name(&t.ns(3)), Some(Owned::Namespace(4194304)));
        assert_eq!(parse_name(&t.bridge()), Some(Owned::Link(4194304)));
        assert_eq!(parse_name(&t.veth(2)), Some(Owned::Link(4194304)));
        // Names that merely look alike are not ours.
        for other in [
            "eth0",
            "rcbr",
            "rcbrx1",
            "rcv12",
            "rcv12nx",
            "rcvn1",
            "raftchaos-12",
            "raftchaos--n1",
            "raftchaos-12-n",
            "raftchaos-1a-n1",
            "docker0",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn addresses_share_one_subnet_with_the_bridge() {
        let t = topo();
        assert_eq!(t.node_ip(1), Ipv4Addr::new(10, 213, 17, 1));
        assert_eq!(t.node_ip(3), Ipv4Addr::new(10, 213, 17, 3));
        assert_eq!(t.bridge_ip(), Ipv4Addr::new(10, 213, 17, 254));
        assert_eq!(t.cidr(), "10.213.17.0/24");
        assert!(Topology::new(1, 1, &[0], PathBuf::from("ip")).is_err());
        assert!(Topology::new(1, 1, &[254], PathBuf::from("ip")).is_err());
    }

    #[test]
    fn subnet_avoids_what_is_in_use_and_depends_on_the_owner() {
        assert_eq!(choose_subnet(0, ""), Some(1));
        assert_eq!(choose_subnet(41, ""), Some(42));
        assert_ne!(choose_subnet(41, ""), choose_subnet(42, ""));
        let used = "3: rcbr9 inet 10.213.42.254/24 scope global rcbr9\n10.213.43.0/24 dev x\n";
        assert_eq!(choose_subnet(41, used), Some(44));
        // 10.213.4.x in use must not block 10.213.42.x.
        assert_eq!(choose_subnet(41, "10.213.4.0/24 dev y"), Some(42));
        let all: String = (1..=250).map(|s| format!("10.213.{s}.0/24\n")).collect();
        assert_eq!(choose_subnet(7, &all), None);
    }

    #[test]
    fn setup_builds_bridge_then_one_namespace_per_node() {
        let t = topo();
        let cmds: Vec<String> = t.setup_commands().iter().map(|c| c.join(" ")).collect();
        assert_eq!(cmds[0], "link add rcbr4194304 type bridge");
        assert_eq!(cmds[1], "addr add 10.213.17.254/24 dev rcbr4194304");
        assert_eq!(cmds[2], "link set rcbr4194304 up");
        let node2: Vec<&String> = cmds
            .iter()
            .filter(|c| c.contains("raftchaos-4194304-n2") || c.contains("rcv4194304n2"))
            .collect();
        assert_eq!(
            node2,
            [
                "netns add raftchaos-4194304-n2",
                "-n raftchaos-4194304-n2 link set lo up",
                "link add rcv4194304n2 type veth peer name eth0 netns raftchaos-4194304-n2",
                "link set rcv4194304n2 master rcbr4194304",
                "link set rcv4194304n2 up",
                "-n raftchaos-4194304-n2 addr add 10.213.17.2/24 dev eth0",
                "-n raftchaos-4194304-n2 link set eth0 up",
                "-n raftchaos-4194304-n2 rule add pref 100 lookup local",
                "-n raftchaos-4194304-n2 rule del pref 0 lookup local",
            ]
        );
        assert_eq!(cmds.len(), 3 + 3 * 9);
        assert_eq!(
            t.wrapper(3),
            ["/usr/sbin/ip", "netns", "exec", "raftchaos-4194304-n3"]
        );
    }

    #[test]
    fn a_cut_drops_at_the_receiver_and_its_heal_is_the_same_rule() {
        let t = topo();
        assert_eq!(
            t.cut_command(RuleOp::Add, 1, 2).join(" "),
            "-n raftchaos-4194304-n2 rule add pref 10 from 10.213.17.1 iif eth0 blackhole"
        );
        assert_eq!(
            t.cut_command(RuleOp::Del, 1, 2).join(" "),
            "-n raftchaos-4194304-n2 rule del pref 10 from 10.213.17.1 iif eth0 blackhole"
        );
        // Rules are read in preference order: the cut must come before the
        // local table, which setup moves to LOCAL_PREF.
        let pref: u32 = CUT_PREF.parse().unwrap();
        assert!(pref < LOCAL_PREF.parse().unwrap() && pref > 0);
        assert!(t.setup_commands().iter().any(|c| c
            .join(" ")
            .ends_with(&format!("rule add pref {LOCAL_PREF} lookup local"))));
        // The reverse direction lives in the other namespace.
        assert_eq!(
            t.cut_command(RuleOp::Add, 2, 1).join(" "),
            "-n raftchaos-4194304-n1 rule add pref 10 from 10.213.17.2 iif eth0 blackhole"
        );
    }

    #[test]
    fn listings_are_parsed() {
        let ns = "raftchaos-12-n1 (id: 0)\nraftchaos-12-n2\nother\n";
        assert_eq!(
            namespace_names(ns),
            ["raftchaos-12-n1", "raftchaos-12-n2", "other"]
        );
        let links = "1: lo: <LOOPBACK,UP> mtu 65536\n5: rcbr12: <BROADCAST> mtu 1500\n7: rcv12n1@if2: <BROADCAST> mtu 1500\n";
        assert_eq!(link_names(links), ["lo", "rcbr12", "rcv12n1"]);
    }

    /// Environment variable that turns [`probe_helper`] into a TCP
    /// listener or client inside a namespace.
    const PROBE_ENV: &str = "XTASK_NETNS_PROBE";

    /// Not a test on its own: [`real_cuts_drop_packets_both_ways`] runs this
    /// test binary inside a namespace with [`PROBE_ENV`] set to
    /// `listen:ADDR` (answer "ok" to every connection for 60 s) or
    /// `connect:ADDR` (exit 0 if ADDR answers "ok" within a second).
    #[test]
    #[ignore = "helper process of real_cuts_drop_packets_both_ways"]
    fn probe_helper() {
        use std::io::{Read, Write};
        let Ok(mode) = std::env::var(PROBE_ENV) else {
            return;
        };
        if let Some(addr) = mode.strip_prefix("listen:") {
            let l = std::net::TcpListener::bind(addr).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            for c in l.incoming() {
                if let Ok(mut c) = c {
                    let _ = c.write_all(b"ok");
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            std::process::exit(0);
        }
        if let Some(addr) = mode.strip_prefix("connect:") {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            let ok = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .and_then(|mut c| {
                    c.set_read_timeout(Some(Duration::from_secs(1)))?;
                    let mut buf = [0u8; 2];
                    c.read_exact(&mut buf)?;
                    Ok(&buf == b"ok")
                })
                .unwrap_or(false);
            std::process::exit(if ok { 0 } else { 1 });
        }
        panic!("unknown {PROBE_ENV} mode {mode:?}");
    }

    fn helper_args() -> Vec<String> {
        [
            "--exact",
            "chaos::netns::tests::probe_helper",
            "--ignored",
            "--test-threads",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Whether node `from`'s namespace can open a TCP connection to `to`.
    fn reaches(t: &Topology, from: u64, to: u64) -> bool {
        let exe = std::env::current_exe().unwrap();
        let w = t.wrapper(from);
        Command::new(&w[0])
            .args(&w[1..])
            .arg(&exe)
            .args(helper_args())
            .env(PROBE_ENV, format!("connect:{}:{RAFT_PORT}", t.node_ip(to)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    fn root_reaches(t: &Topology, to: u64) -> bool {
        let addr = std::net::SocketAddr::from((t.node_ip(to), RAFT_PORT));
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    }

    /// Builds a real two-node network, checks that a cut really stops
    /// packets both ways between the namespaces (and only there), that
    /// heal restores exactly that, that `ip netns exec` leaves the node's
    /// own pid, and that teardown leaves nothing behind.
    #[test]
    #[ignore = "needs root on Linux: creates namespaces, veths and a bridge"]
    fn real_cuts_drop_packets_both_ways() {
        if let Some(why) = unsupported() {
            panic!("this test needs what --net netns needs: {why}");
        }
        let mut net = Network::setup(&[1, 2]).unwrap();
        let t = net.topology().clone();
        let exe = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut kids = crate::procs::Children::default();
        let mut pids = Vec::new();
        for id in [1, 2] {
            let mut args = helper_args();
            // Distinct command lines, so each probe below names one process.
            args.push(format!("--skip=node{id}"));
            // env, like ip netns exec, execs its command in place.
            let mut wrapper = vec![
                "/usr/bin/env".to_string(),
                format!("{PROBE_ENV}=listen:{}:{RAFT_PORT}", t.node_ip(id)),
            ];
            wrapper.extend(t.wrapper(id));
            let child = crate::procs::spawn_via(
                &wrapper,
                &exe,
                &args,
                &dir.path().join(format!("{id}.log")),
            )
            .unwrap();
            pids.push((child.id(), args));
            kids.push(child);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(root_reaches(&t, 1) && root_reaches(&t, 2)) {
            assert!(Instant::now() < deadline, "the listeners never came up");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The pid we hold is the listener itself, inside its namespace.
        let my_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
        for (pid, args) in &pids {
            assert_eq!(
                crate::procs::probe(*pid, &exe, args),
                crate::procs::Probe::Running
            );
            assert_ne!(
                std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
                my_ns
            );
        }
        assert!(
            reaches(&t, 1, 2) && reaches(&t, 2, 1),
            "no link before the cut"
        );

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut links = NetnsLinks::new(t.clone(), Instant::now());
        let cuts = std::collections::BTreeMap::from([(1, vec![2]), (2, vec![1])]);
        assert_eq!(rt.block_on(links.cut(&cuts)), Vec::<String>::new());
        assert!(!reaches(&t, 1, 2), "1 still reaches 2 after the cut");
        assert!(!reaches(&t, 2, 1), "2 still reaches 1 after the cut");
        // xtask's own traffic over the bridge is not cut.
        assert!(root_reaches(&t, 1) && root_reaches(&t, 2));
        let labels: Vec<String> = links.events().iter().map(NetEvent::label).collect();
        assert_eq!(labels, ["cut 1->2 (netns)", "cut 2->1 (netns)"]);

        assert_eq!(rt.block_on(links.heal()), Vec::<String>::new());
        assert!(
            reaches(&t, 1, 2) && reaches(&t, 2, 1),
            "heal did not restore"
        );
        assert_eq!(links.events().len(), 4);
        // Nothing left to heal: heal removed exactly what cut added.
        let rules = run_ip(&t.ip, &["-n".into(), t.ns(2), "rule".into()]).unwrap();
        assert!(!rules.contains("blackhole"), "{rules}");

        for (pid, _) in &pids {
            crate::procs::signal(*pid, Signal::SIGKILL).unwrap();
        }
        kids.kill_all();
        let removed = net.teardown().unwrap();
        assert!(
            removed.iter().any(|r| r.contains(&t.bridge())),
            "{removed:?}"
        );
        assert!(owned_names(&t.ip, &|pid| pid == t.owner)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn effective_uid_is_the_second_uid() {
        let status = "Name:\txtask\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t0\t1000\t0\t0\n"), Some(1000));
        assert_eq!(effective_uid("Name: x\n"), None);
        assert_eq!(effective_uid("Uid:\tzero\n"), None);
    }
}
