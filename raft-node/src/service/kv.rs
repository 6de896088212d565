//! The replicated key-value map: the state machine behind the binary's HTTP
//! API.
//!
//! Commands are postcard-encoded [`KvCommand`]s carried in log entries; the
//! answer to each is a postcard-encoded [`KvResponse`]. Applying is
//! deterministic: every replica that applies the same entries holds the same
//! map and the same deduplication table, so a snapshot taken on one replica
//! restores on any other.
//!
//! Retries stay at-most-once (thesis section 6.3): a command that carries a
//! request id is applied only the first time that id is seen; later copies
//! answer with the first outcome. The table of seen ids is bounded (oldest
//! evicted first, in apply order, so every replica evicts the same ids) and
//! travels in snapshots, so a retry across a restart or a snapshot install
//! is still recognised.
//!
//! This module never trusts an entry's bytes: an undecodable command is
//! answered with an error response and changes nothing.

use bytes::Bytes;
use raft_core::{LogIndex, Term};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

/// Most request ids remembered for deduplication. Each costs at most
/// [`MAX_REQUEST_ID_BYTES`] plus a few dozen bytes.
pub const DEFAULT_DEDUP_CAPACITY: usize = 50_000;

/// Longest accepted `X-Request-Id`.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// What a CAS expects to find.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// The key must be absent.
    Absent,
    /// The key must hold exactly these bytes.
    Value(Bytes),
}

/// One operation on the map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// Set `key` to `value`, if `expect` (when given) holds.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Bytes,
        /// The compare-and-set condition, if any.
        expect: Option<Expect>,
    },
    /// Remove `key` (a no-op if it is absent).
    Delete {
        /// The key.
        key: String,
    },
    /// Record members' HTTP and Raft addresses (replacing earlier ones for
    /// the same ids), so every node can redirect clients to any leader.
    SetPeers(Vec<PeerAddrs>),
    /// Forget a removed member's addresses.
    ForgetPeer(u64),
}

/// Where a member can be reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddrs {
    /// Its node id.
    pub id: u64,
    /// Its Raft transport address.
    pub raft_addr: String,
    /// Its HTTP API address.
    pub http_addr: String,
}

impl KvOp {
    fn key(&self) -> &str {
        match self {
            KvOp::Put { key, .. } | KvOp::Delete { key } => key,
            KvOp::SetPeers(_) | KvOp::ForgetPeer(_) => "",
        }
    }

    /// The name watchers see; `None` for bookkeeping that is not a write.
    fn name(&self) -> Option<&'static str> {
        match self {
            KvOp::Put { .. } => Some("put"),
            KvOp::Delete { .. } => Some("delete"),
            KvOp::SetPeers(_) | KvOp::ForgetPeer(_) => None,
        }
    }
}

/// A command as stored in a log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvCommand {
    /// The client's request id, for deduplication of retries.
    pub request_id: Option<String>,
    /// What to do.
    pub op: KvOp,
}

impl KvCommand {
    /// The bytes to propose.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("serializing a command to memory cannot fail")
    }

    /// Reads a command back from an entry's bytes.
    pub fn decode(b: &[u8]) -> Result<KvCommand, postcard::Error> {
        postcard::from_bytes(b)
    }
}

/// How a command turned out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutcome {
    /// The command took effect at (`index`, `term`).
    Done,
    /// The CAS condition did not hold; `current` is the value found.
    Conflict {
        /// The value found (`None`: the key was absent).
        current: Option<Bytes>,
    },
    /// The entry could not be decoded; nothing changed.
    Invalid(String),
}

/// The answer to one applied command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvResponse {
    /// The log index of the entry that decided the outcome (for a retry:
    /// the first copy's).
    pub index: LogIndex,
    /// That entry's term.
    pub term: Term,
    /// The outcome.
    pub outcome: KvOutcome,
    /// Whether this answer was replayed from the deduplication table.
    pub duplicate: bool,
}

impl KvResponse {
    /// The bytes the state machine hands back to the proposer.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("serializing a response to memory cannot fail")
    }

    /// Reads a response back.
    pub fn decode(b: &[u8]) -> Result<KvResponse, postcard::Error> {
        postcard::from_bytes(b)
    }
}

/// One applied write, for watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEvent {
    /// The entry's index.
    pub index: LogIndex,
    /// The entry's term.
    pub term: Term,
    /// `put` or `delete`.
    pub op: &'static str,
    /// The key written.
    pub key: String,
}

/// What the dedup table remembers of a request: enough to answer a retry,
/// never the value (so the table's memory stays bounded by id lengths).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    index: LogIndex,
    term: Term,
    conflict: bool,
}

/// The replicated state: the map, the dedup table and the applied position.
#[derive(Debug, Default)]
pub struct KvState {
    map: HashMap<String, Bytes>,
    dedup: HashMap<String, Remembered>,
    /// Request ids in the order they were first applied; the front is
    /// evicted first.
    dedup_order: VecDeque<String>,
    dedup_capacity: usize,
    applied: LogIndex,
    value_bytes: u64,
    peers: std::collections::BTreeMap<u64, PeerAddrs>,
}

/// The snapshot's wire form.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    version: u8,
    applied: LogIndex,
    map: Vec<(String, Bytes)>,
    dedup: Vec<(String, Remembered)>,
    peers: Vec<PeerAddrs>,
}

/// Most member addresses remembered (a bound on what the log can make us
/// hold).
const MAX_PEERS: usize = 1024;

const SNAPSHOT_VERSION: u8 = 1;

impl KvState {
    fn new(dedup_capacity: usize) -> Self {
        KvState {
            dedup_capacity: dedup_capacity.max(1),
            ..Default::default()
        }
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.map.get(key).cloned()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The highest index applied.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// Total bytes of stored values.
    pub fn value_bytes(&self) -> u64 {
        self.value_bytes
    }

    /// The member addresses recorded through the log.
    pub fn peers(&self) -> &std::collections::BTreeMap<u64, PeerAddrs> {
        &self.peers
    }

    /// Request ids currently remembered.
    pub fn dedup_len(&self) -> usize {
        self.dedup.len()
    }

    fn remember(&mut self, id: String, r: Remembered) {
        while self.dedup_order.len() >= self.dedup_capacity {
            if let Some(old) = self.dedup_order.pop_front() {
                self.dedup.remove(&old);
            }
        }
        self.dedup.insert(id.clone(), r);
        self.dedup_order.push_back(id);
    }

    fn apply_op(&mut self, op: &KvOp) -> KvOutcome {
        match op {
            KvOp::Put { key, value, expect } => {
                let current = self.map.get(key);
                let holds = match expect {
                    None => true,
                    Some(Expect::Absent) => current.is_none(),
                    Some(Expect::Value(v)) => current == Some(v),
                };
                if !holds {
                    return KvOutcome::Conflict {
                        current: current.cloned(),
                    };
                }
                self.value_bytes += value.len() as u64;
                if let Some(old) = self.map.insert(key.clone(), value.clone()) {
                    self.value_bytes -= old.len() as u64;
                }
                KvOutcome::Done
            }
            KvOp::Delete { key } => {
                if let Some(old) = self.map.remove(key) {
                    self.value_bytes -= old.len() as u64;
                }
                KvOutcome::Done
            }
            KvOp::SetPeers(peers) => {
                for p in peers {
                    if p.id == 0
                        || p.raft_addr.len() > 1024
                        || p.http_addr.len() > 1024
                        || (self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&p.id))
                    {
                        continue;
                    }
                    self.peers.insert(p.id, p.clone());
                }
                KvOutcome::Done
            }
            KvOp::ForgetPeer(id) => {
                self.peers.remove(id);
                KvOutcome::Done
            }
        }
    }
}

/// A read-only view of the map for the HTTP layer (local and linearizable
/// reads both read here, the latter after the runtime says the read index
/// is applied).
#[derive(Clone, Debug)]
pub struct KvReader {
    state: Arc<RwLock<KvState>>,
}

impl KvReader {
    /// Runs `f` on the current state.
    pub fn with<R>(&self, f: impl FnOnce(&KvState) -> R) -> R {
        let guard = self.state.read().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.with(|s| s.get(key))
    }
}

/// Counters of the state machine, for metrics.
#[derive(Debug, Default)]
pub struct KvCounters {
    /// Snapshots taken of this state machine.
    pub snapshots_taken: std::sync::atomic::AtomicU64,
    /// Snapshots restored into it (at start or from a leader).
    pub snapshots_restored: std::sync::atomic::AtomicU64,
    /// Commands answered from the dedup table.
    pub duplicates: std::sync::atomic::AtomicU64,
}

/// The key-value state machine. The runtime owns it and is the only writer;
/// [`KvStore::reader`] hands out read access.
#[derive(Debug)]
pub struct KvStore {
    state: Arc<RwLock<KvState>>,
    events: broadcast::Sender<AppliedEvent>,
    counters: Arc<KvCounters>,
}

impl Default for KvStore {
    fn default() -> Self {
        Self::new(DEFAULT_DEDUP_CAPACITY)
    }
}

impl KvStore {
    /// An empty map remembering at most `dedup_capacity` request ids.
    pub fn new(dedup_capacity: usize) -> Self {
        let (events, _) = broadcast::channel(1024);
        KvStore {
            state: Arc::new(RwLock::new(KvState::new(dedup_capacity))),
            events,
            counters: Arc::default(),
        }
    }

    /// Read access for the HTTP layer.
    pub fn reader(&self) -> KvReader {
        KvReader {
            state: self.state.clone(),
        }
    }

    /// Applied writes, for watchers. A slow watcher misses events (it is
    /// told how many) rather than slowing the state machine.
    pub fn events(&self) -> broadcast::Sender<AppliedEvent> {
        self.events.clone()
    }

    /// The state machine's counters.
    pub fn counters(&self) -> Arc<KvCounters> {
        self.counters.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KvState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the command in the entry at (`index`, `term`) and returns the
    /// encoded [`KvResponse`].
    pub fn apply_entry(&mut self, index: LogIndex, term: Term, data: &[u8]) -> Vec<u8> {
        self.apply_command(index, term, data).encode()
    }

    /// Notes that a non-command entry (no-op, membership change) was applied.
    pub fn apply_other(&mut self, index: LogIndex) {
        let mut s = self.write();
        s.applied = s.applied.max(index);
    }

    /// Applies one command and returns the decoded response.
    pub fn apply_command(&mut self, index: LogIndex, term: Term, data: &[u8]) -> KvResponse {
        let cmd = match KvCommand::decode(data) {
            Ok(c) => c,
            Err(e) => {
                self.apply_other(index);
                return KvResponse {
                    index,
                    term,
                    outcome: KvOutcome::Invalid(format!("undecodable command: {e}")),
                    duplicate: false,
                };
            }
        };
        let mut s = self.write();
        s.applied = s.applied.max(index);
        if let Some(id) = &cmd.request_id {
            if let Some(r) = s.dedup.get(id).copied() {
                let outcome = if r.conflict {
                    KvOutcome::Conflict {
                        current: s.get(cmd.op.key()),
                    }
                } else {
                    KvOutcome::Done
                };
                self.counters
                    .duplicates
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return KvResponse {
                    index: r.index,
                    term: r.term,
                    outcome,
                    duplicate: true,
                };
            }
        }
        let outcome = s.apply_op(&cmd.op);
        if let Some(id) = cmd.request_id {
            let conflict = matches!(outcome, KvOutcome::Conflict { .. });
            s.remember(
                id,
                Remembered {
                    index,
                    term,
                    conflict,
                },
            );
        }
        drop(s);
        if let (KvOutcome::Done, Some(op)) = (&outcome, cmd.op.name()) {
            // Nobody listening is fine.
            let _ = self.events.send(AppliedEvent {
                index,
                term,
                op,
                key: cmd.op.key().to_owned(),
            });
        }
        KvResponse {
            index,
            term,
            outcome,
            duplicate: false,
        }
    }

    /// The whole state (map, dedup table, applied index) as bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        let data = SnapshotData {
            version: SNAPSHOT_VERSION,
            applied: s.applied,
            map: s.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            dedup: s
                .dedup_order
                .iter()
                .filter_map(|id| s.dedup.get(id).map(|r| (id.clone(), *r)))
                .collect(),
            peers: s.peers.values().cloned().collect(),
        };
        drop(s);
        self.counters
            .snapshots_taken
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        postcard::to_allocvec(&data).expect("serializing a snapshot to memory cannot fail")
    }

    /// Replaces the whole state with a snapshot's. An undecodable snapshot
    /// leaves the state untouched and says why.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            // The empty snapshot of a cluster that never wrote anything.
            let cap = self.write().dedup_capacity;
            *self.write() = KvState::new(cap);
            return Ok(());
        }
        let data: SnapshotData =
            postcard::from_bytes(bytes).map_err(|e| format!("undecodable kv snapshot: {e}"))?;
        if data.version != SNAPSHOT_VERSION {
            return Err(format!(
                "kv snapshot version {} is not supported (expected {SNAPSHOT_VERSION})",
                data.version
            ));
        }
        let mut s = self.write();
        let cap = s.dedup_capacity;
        let mut next = KvState::new(cap);
        next.applied = data.applied;
        for (k, v) in data.map {
            next.value_bytes += v.len() as u64;
            next.map.insert(k, v);
        }
        for (id, r) in data.dedup {
            next.remember(id, r);
        }
        for p in data.peers.into_iter().take(MAX_PEERS) {
            next.peers.insert(p.id, p);
        }
        *s = next;
        drop(s);
        self.counters
            .snapshots_restored
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::state_machine::StateMachine for KvStore {
    async fn apply(
        &mut self,
        commands: &[crate::state_machine::Command<'_>],
    ) -> Result<Vec<Bytes>, crate::state_machine::StateMachineError> {
        Ok(commands
            .iter()
            .map(|c| Bytes::from(self.apply_entry(c.index, c.term, c.data)))
            .collect())
    }

    async fn snapshot(&mut self) -> Result<Bytes, crate::state_machine::StateMachineError> {
        Ok(Bytes::from(KvStore::snapshot(self)))
    }

    async fn restore(
        &mut self,
        snapshot: Bytes,
    ) -> Result<(), crate::state_machine::StateMachineError> {
        KvStore::restore(self, &snapshot).map_err(crate::state_machine::StateMachineError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(id: Option<&str>, k: &str, v: &str, expect: Option<Expect>) -> Vec<u8> {
        KvCommand {
            request_id: id.map(str::to_owned),
            op: KvOp::Put {
                key: k.into(),
                value: Bytes::copy_from_slice(v.as_bytes()),
                expect,
            },
        }
        .encode()
    }

    #[test]
    fn put_get_delete() {
        let mut kv = KvStore::default();
        let r = kv.apply_command(1, 1, &put(None, "a", "x", None));
        assert_eq!(r.outcome, KvOutcome::Done);
        assert_eq!((r.index, r.term), (1, 1));
        assert_eq!(kv.reader().get("a"), Some(Bytes::from_static(b"x")));
        let del = KvCommand {
            request_id: None,
            op: KvOp::Delete { key: "a".into() },
        };
        kv.apply_command(2, 1, &del.encode());
        assert_eq!(kv.reader().get("a"), None);
        assert_eq!(kv.reader().with(|s| s.applied()), 2);
    }

    #[test]
    fn cas_conflict_reports_current() {
        let mut kv = KvStore::default();
        let r = kv.apply_command(1, 1, &put(None, "a", "x", Some(Expect::Absent)));
        assert_eq!(r.outcome, KvOutcome::Done);
        let r = kv.apply_command(2, 1, &put(None, "a", "y", Some(Expect::Absent)));
        assert_eq!(
            r.outcome,
            KvOutcome::Conflict {
                current: Some(Bytes::from_static(b"x"))
            }
        );
        let r = kv.apply_command(
            3,
            1,
            &put(
                None,
                "a",
                "y",
                Some(Expect::Value(Bytes::from_static(b"x"))),
            ),
        );
        assert_eq!(r.outcome, KvOutcome::Done);
        assert_eq!(kv.reader().get("a"), Some(Bytes::from_static(b"y")));
        let r = kv.apply_command(
            4,
            1,
            &put(
                None,
                "b",
                "y",
                Some(Expect::Value(Bytes::from_static(b"x"))),
            ),
        );
        assert_eq!(r.outcome, KvOutcome::Conflict { current: None });
    }

    #[test]
    fn retries_apply_once_even_across_snapshots() {
        let mut kv = KvStore::default();
        let first = kv.apply_command(5, 2, &put(Some("req-1"), "a", "1", None));
        // Someone else overwrites; a late retry of req-1 must not undo it.
        kv.apply_command(6, 2, &put(None, "a", "2", None));
        let retry = kv.apply_command(7, 3, &put(Some("req-1"), "a", "1", None));
        assert!(retry.duplicate);
        assert_eq!((retry.index, retry.term), (first.index, first.term));
        assert_eq!(kv.reader().get("a"), Some(Bytes::from_static(b"2")));

        let snap = kv.snapshot();
        let mut other = KvStore::default();
        other.restore(&snap).unwrap();
        let retry = other.apply_command(8, 3, &put(Some("req-1"), "a", "1", None));
        assert!(retry.duplicate);
        assert_eq!(retry.index, 5);
        assert_eq!(other.reader().get("a"), Some(Bytes::from_static(b"2")));
        assert_eq!(other.reader().with(|s| s.applied()), 8);
    }

    #[test]
    fn dedup_table_is_bounded_and_evicts_oldest() {
        let mut kv = KvStore::new(3);
        for i in 0..10u64 {
            kv.apply_command(i + 1, 1, &put(Some(&format!("r{i}")), "k", "v", None));
        }
        assert_eq!(kv.reader().with(|s| s.dedup_len()), 3);
        // r9 is remembered, r0 was evicted and would apply again.
        assert!(
            kv.apply_command(20, 1, &put(Some("r9"), "k", "v", None))
                .duplicate
        );
        assert!(
            !kv.apply_command(21, 1, &put(Some("r0"), "k", "v", None))
                .duplicate
        );
        // Eviction order survives a snapshot: r7 is now the oldest.
        let mut other = KvStore::new(3);
        other.restore(&kv.snapshot()).unwrap();
        other.apply_command(22, 1, &put(Some("new"), "k", "v", None));
        assert!(
            !other
                .apply_command(23, 1, &put(Some("r8"), "k", "v", None))
                .duplicate
        );
    }

    #[test]
    fn garbage_changes_nothing() {
        let mut kv = KvStore::default();
        kv.apply_command(1, 1, &put(None, "a", "x", None));
        let r = kv.apply_command(2, 1, &[0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(r.outcome, KvOutcome::Invalid(_)));
        assert_eq!(kv.reader().with(|s| s.len()), 1);
        assert!(kv.restore(b"\xff\x00garbage").is_err());
        assert_eq!(kv.reader().get("a"), Some(Bytes::from_static(b"x")));
    }

    #[test]
    fn snapshot_round_trip() {
        let mut kv = KvStore::default();
        for i in 0..100 {
            kv.apply_command(i + 1, 1, &put(None, &format!("k{i}"), "v", None));
        }
        let mut other = KvStore::default();
        other.restore(&kv.snapshot()).unwrap();
        assert_eq!(other.reader().with(|s| s.len()), 100);
        assert_eq!(other.reader().with(|s| s.value_bytes()), 100);
        assert_eq!(other.reader().get("k42"), Some(Bytes::from_static(b"v")));
    }
}
