//! The node task: feeds inputs to the core and carries out its `Ready`
//! batches under the persistence contract (see [`raft_core::Ready`]).

use super::handle::{Control, Reply, Request, Shared};
use super::peers::{decode_peer_addresses, unwrap_snapshot, wrap_snapshot};
use super::{Committed, Error, Event, NodeConfig, NodeStatus, RaftHandle};
use crate::state_machine::{Command, StateMachine};
use crate::store::{LogStore, WriteBatch};
use bytes::Bytes;
use futures::FutureExt;
use raft_core::{
    ConfChange, ConfChangeStep, Entry, EntryKind, LogIndex, Message, NodeId, ProposeError, Raft,
    Ready, Role, SendError, Snapshot, SoftState, Term, TransferError, Transport,
};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn, Instrument};

/// Control requests waiting for the node task.
const CONTROL_QUEUE: usize = 64;

/// Why the loop stopped.
enum Stop {
    /// Asked to (or every handle was dropped).
    Requested,
    /// Something that makes continuing unsafe.
    Fatal(Error),
}

pub(super) async fn start<T, S, M>(
    config: NodeConfig,
    mut transport: T,
    mut store: S,
    mut sm: M,
) -> Result<RaftHandle, Error>
where
    T: Transport,
    S: LogStore,
    M: StateMachine,
{
    let id = config.raft.id;
    let store_err = |e: crate::store::StoreError| Error::Store(e.to_string());
    let state = store.initial_state().await.map_err(store_err)?;
    let snapshot = store.snapshot().await.map_err(store_err)?;

    // The application state starts from the stored snapshot; the log after
    // it is replayed by the core as committed entries.
    let mut peers = BTreeMap::new();
    let mut snapshot_index = 0;
    if let Some(snap) = &snapshot {
        if state.snapshot.as_ref() != Some(&snap.meta) {
            return Err(Error::Store(format!(
                "the store's snapshot (index {}) does not match its recovered state ({:?})",
                snap.meta.index,
                state.snapshot.as_ref().map(|m| m.index)
            )));
        }
        let (book, app) = unwrap_snapshot(&snap.data).map_err(Error::StateMachine)?;
        sm.restore(app)
            .await
            .map_err(|e| Error::StateMachine(format!("restoring snapshot: {e}")))?;
        peers = book;
        snapshot_index = snap.meta.index;
    } else if state.snapshot.is_some() {
        return Err(Error::Store(
            "the store reports a snapshot but cannot return it".into(),
        ));
    }
    let mut raft = Raft::restore(config.raft.clone(), state)
        .map_err(|e| Error::Invalid(format!("cannot restore from storage: {e}")))?;
    if let Some(snap) = snapshot {
        raft.set_local_snapshot(snap);
    }
    info!(
        node = %id, term = raft.term(), commit = raft.commit_index(),
        last_index = raft.last_index(), snapshot_index,
        voters = ?raft.membership().voters, learners = ?raft.membership().learners,
        "node recovered from storage"
    );

    // Tell the transport every address known: configured, from the
    // snapshot, and announced by membership entries still in the log.
    for (peer, addr) in config.peers.iter().chain(peers.iter()) {
        if *peer != id {
            transport.add_peer(*peer, addr.clone());
        }
    }
    for e in raft.entries().filter(|e| e.kind == EntryKind::ConfChange) {
        announce_addresses(&mut transport, id, e);
    }

    let (req_tx, req_rx) = mpsc::channel(config.proposal_queue);
    let (ctl_tx, ctl_rx) = mpsc::channel(CONTROL_QUEUE);
    let (events, _) = broadcast::channel(config.event_capacity);
    let soft = SoftState {
        role: raft.role(),
        leader: raft.leader(),
        term: raft.term(),
    };
    let applied = raft.applied_index();
    let status = NodeStatus {
        id,
        role: raft.role(),
        term: raft.term(),
        leader: raft.leader(),
        commit_index: raft.commit_index(),
        applied_index: applied,
        last_log_index: raft.last_index(),
        snapshot_index: raft.snapshot_index(),
        membership: raft.membership().clone(),
        pending_proposals: 0,
        running: true,
    };
    let (status_tx, status_rx) = watch::channel(status);
    let shared = Arc::new(Shared {
        fatal: OnceLock::new(),
    });
    let handle = RaftHandle::new(
        id,
        req_tx,
        ctl_tx,
        events.clone(),
        status_rx,
        shared.clone(),
        config.request_timeout,
        config.max_proposal_bytes,
    );
    let driver = Driver {
        id,
        raft,
        transport,
        store,
        sm,
        requests: req_rx,
        control: ctl_rx,
        events,
        status: status_tx,
        shared,
        pending: BTreeMap::new(),
        reads: BTreeMap::new(),
        next_read: 0,
        waiting_reads: BTreeMap::new(),
        applied,
        peers,
        last_snapshot: snapshot_index,
        soft,
        transfer: None,
        snapshot_request: None,
        membership_dirty: true,
        cfg: config,
    };
    tokio::spawn(
        driver
            .run()
            .instrument(tracing::info_span!("raft", node = %id)),
    );
    Ok(handle)
}

/// Hands the transport the addresses a membership entry announces.
fn announce_addresses<T: Transport>(transport: &mut T, me: NodeId, e: &Entry) {
    let Ok(cc) = postcard::from_bytes::<ConfChange>(&e.data) else {
        return;
    };
    match decode_peer_addresses(&cc.context) {
        Ok(addrs) => {
            for (peer, addr) in addrs {
                if peer != me {
                    transport.add_peer(peer, addr);
                }
            }
        }
        Err(err) => {
            warn!(index = e.index, error = %err, "membership entry carries undecodable addresses; ignored");
        }
    }
}

struct PendingTransfer {
    to: NodeId,
    tx: Reply<()>,
    ticks: u32,
}

struct Driver<T, S, M> {
    id: NodeId,
    raft: Raft,
    transport: T,
    store: S,
    sm: M,
    cfg: NodeConfig,
    requests: mpsc::Receiver<Request>,
    control: mpsc::Receiver<Control>,
    events: broadcast::Sender<Event>,
    status: watch::Sender<NodeStatus>,
    shared: Arc<Shared>,
    /// Accepted proposals by (index, term), answered when that index is
    /// applied.
    pending: BTreeMap<(LogIndex, Term), Reply<Committed>>,
    /// Reads handed to the core, by context tag.
    reads: BTreeMap<u64, Reply<LogIndex>>,
    next_read: u64,
    /// Confirmed reads waiting for the state machine to reach their index.
    waiting_reads: BTreeMap<LogIndex, Vec<Reply<LogIndex>>>,
    /// The last index applied to the state machine.
    applied: LogIndex,
    /// Peer addresses as of `applied`, carried in snapshots.
    peers: BTreeMap<NodeId, String>,
    last_snapshot: LogIndex,
    soft: SoftState,
    transfer: Option<PendingTransfer>,
    /// An operator's request for a snapshot, taken after the current turn.
    snapshot_request: Option<Reply<LogIndex>>,
    /// The membership may have changed since it was last published
    /// (comparing it on every turn of the loop is measurable).
    membership_dirty: bool,
}

impl<T: Transport, S: LogStore, M: StateMachine> Driver<T, S, M> {
    async fn run(mut self) {
        let stop = self.run_loop().await;
        let err = match stop {
            Stop::Requested => {
                info!(node = %self.id, "node stopping");
                Error::Shutdown
            }
            Stop::Fatal(e) => {
                error!(node = %self.id, error = %e, "node stopped on a fatal error");
                let _ = self.shared.fatal.set(e.clone());
                e
            }
        };
        self.fail_all(&err);
        self.transport.shutdown().await;
        let _ = self.events.send(Event::Stopped {
            error: match &err {
                Error::Shutdown => None,
                e => Some(e.to_string()),
            },
        });
        self.status.send_modify(|s| s.running = false);
    }

    async fn run_loop(&mut self) -> Stop {
        let mut ticker = tokio::time::interval(self.cfg.tick_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        // The first tick of an interval fires at once; the core's first
        // tick should come one interval after start.
        ticker.reset();
        loop {
            let can_take = self.pending.len() < self.cfg.max_pending;
            tokio::select! {
                biased;
                _ = ticker.tick() => self.on_tick(),
                c = self.control.recv() => match c {
                    None | Some(Control::Shutdown) => return Stop::Requested,
                    Some(c) => self.on_control(c),
                },
                m = self.transport.recv() => match m {
                    None => {
                        return Stop::Fatal(Error::Unavailable("the transport shut down".into()));
                    }
                    Some((from, msg)) => {
                        self.on_message(from, msg);
                        self.drain_messages();
                    }
                },
                r = self.requests.recv(), if can_take => match r {
                    None => return Stop::Requested,
                    Some(r) => {
                        self.on_request(r);
                        self.drain_requests();
                    }
                },
            }
            while self.raft.has_ready() {
                if let Err(e) = self.handle_ready().await {
                    return Stop::Fatal(e);
                }
            }
            if self.snapshot_request.is_some() {
                if let Err(e) = self.maybe_snapshot().await {
                    return Stop::Fatal(e);
                }
            }
            self.check_transfer();
            self.publish_status();
        }
    }

    // ------------------------------------------------------------------
    // Inputs
    // ------------------------------------------------------------------

    /// Takes, without waiting, what else peers have sent (up to
    /// `max_batch`), so that one Ready answers it all. (Draining callers'
    /// requests in the same turn measured slower: it delays the answers
    /// that let closed-loop callers send their next request.)
    fn drain_messages(&mut self) {
        for _ in 1..self.cfg.max_batch {
            // `recv` is cancel-safe: polling it once and dropping it loses
            // nothing.
            match self.transport.recv().now_or_never() {
                Some(Some((from, msg))) => self.on_message(from, msg),
                _ => break,
            }
        }
    }

    /// Takes, without waiting, what else callers have queued (up to
    /// `max_batch`): group commit.
    fn drain_requests(&mut self) {
        for _ in 1..self.cfg.max_batch {
            if self.pending.len() >= self.cfg.max_pending {
                break;
            }
            match self.requests.try_recv() {
                Ok(r) => self.on_request(r),
                Err(_) => break,
            }
        }
    }

    fn on_tick(&mut self) {
        self.raft.tick();
        // A truncated log can revert the membership without a new entry;
        // recheck once per tick.
        self.membership_dirty = true;
        if let Some(t) = &mut self.transfer {
            t.ticks += 1;
        }
        // Forget callers who gave up, so their slots free up.
        self.pending.retain(|_, tx| !tx.is_closed());
        self.reads.retain(|_, tx| !tx.is_closed());
        self.waiting_reads.retain(|_, v| {
            v.retain(|tx| !tx.is_closed());
            !v.is_empty()
        });
    }

    fn on_message(&mut self, from: NodeId, msg: Message) {
        if msg.from != from {
            warn!(node = %self.id, peer = %from, claimed = %msg.from,
                "dropping message whose sender field names another node");
            return;
        }
        if let Err(e) = self.raft.step(msg) {
            warn!(node = %self.id, peer = %from, error = %e, "dropping message");
        }
    }

    fn on_request(&mut self, r: Request) {
        match r {
            Request::Propose { data, tx } => match self.raft.propose(data) {
                Ok((term, index)) => {
                    self.pending.insert((index, term), tx);
                }
                Err(e) => {
                    let _ = tx.send(Err(propose_error(e)));
                }
            },
            Request::ConfChange { cc, tx } => match self.raft.propose_conf_change(cc) {
                Ok((term, index)) => {
                    info!(node = %self.id, term, index, "membership change proposed");
                    self.pending.insert((index, term), tx);
                }
                Err(e) => {
                    let _ = tx.send(Err(propose_error(e)));
                }
            },
            Request::Read { tx } => {
                self.next_read += 1;
                self.reads.insert(self.next_read, tx);
                self.raft.read_index(self.next_read);
            }
        }
    }

    fn on_control(&mut self, c: Control) {
        match c {
            Control::RaftStatus(tx) => {
                let _ = tx.send(self.raft.status());
            }
            Control::Transfer { to, tx } => match self.raft.transfer_leadership(to) {
                Ok(()) => {
                    if let Some(old) = self.transfer.take() {
                        let _ = old.tx.send(Err(Error::Unavailable(
                            "superseded by another leadership transfer".into(),
                        )));
                    }
                    self.transfer = Some(PendingTransfer { to, tx, ticks: 0 });
                }
                Err(TransferError::NotLeader { leader }) => {
                    let _ = tx.send(Err(Error::NotLeader { leader }));
                }
                Err(e) => {
                    let _ = tx.send(Err(Error::Invalid(e.to_string())));
                }
            },
            Control::SetPeerAddress { id, addr } => {
                if id != self.id {
                    info!(node = %self.id, peer = %id, %addr, "peer address set");
                    self.transport.add_peer(id, addr);
                }
            }
            Control::Campaign => {
                info!(node = %self.id, "election forced by operator");
                self.raft.campaign();
            }
            Control::Snapshot(tx) => {
                // Taken after this turn's Ready, at a consistent point.
                self.snapshot_request = Some(tx);
            }
            Control::Shutdown => {}
        }
    }

    // ------------------------------------------------------------------
    // Output: one Ready, in the order the contract prescribes
    // ------------------------------------------------------------------

    async fn handle_ready(&mut self) -> Result<(), Error> {
        let rd: Ready = self.raft.ready();
        if let Some(ss) = rd.soft_state {
            self.on_soft_state(ss);
        }
        // 1. Messages that promise nothing about our disk go at once.
        for m in rd.messages {
            self.send(m);
        }
        // 2. One durable write for the whole batch.
        if let Some(snap) = &rd.snapshot {
            self.store
                .save_snapshot(snap, 0)
                .await
                .map_err(|e| Error::Store(e.to_string()))?;
        }
        if rd.hard_state.is_some() || !rd.entries.is_empty() {
            self.store
                .persist(WriteBatch {
                    hard_state: rd.hard_state,
                    entries: &rd.entries,
                })
                .await
                .map_err(|e| Error::Store(e.to_string()))?;
        }
        // A new member must be reachable before its change commits: with
        // two voters, the change needs the newcomer's acknowledgement.
        for e in rd
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::ConfChange)
        {
            announce_addresses(&mut self.transport, self.id, e);
            self.membership_dirty = true;
        }
        if rd.snapshot.is_some() {
            self.membership_dirty = true;
        }
        // 3. Now the messages that promise durability.
        for m in rd.persisted_messages {
            self.send(m);
        }
        // 4. Install, then apply.
        if let Some(snap) = rd.snapshot {
            self.install_snapshot(snap).await?;
        }
        if !rd.committed_entries.is_empty() {
            self.apply(&rd.committed_entries).await?;
        }
        // 5. Reads.
        for rs in rd.read_states {
            if let Some(tx) = self.reads.remove(&rs.ctx) {
                if rs.index <= self.applied {
                    let _ = tx.send(Ok(rs.index));
                } else {
                    self.waiting_reads.entry(rs.index).or_default().push(tx);
                }
            }
        }
        for ctx in rd.failed_reads {
            if let Some(tx) = self.reads.remove(&ctx) {
                let _ = tx.send(Err(Error::ReadFailed {
                    leader: self.raft.leader(),
                }));
            }
        }
        self.serve_reads();
        // 6. Done.
        self.raft.advance();
        self.maybe_snapshot().await
    }

    fn send(&mut self, m: Message) {
        let to = m.to;
        if let Err(e) = self.transport.send(m) {
            match e {
                // Routine under load or while a peer is down; Raft resends.
                SendError::QueueFull(_) | SendError::UnknownPeer(_) => {
                    debug!(node = %self.id, peer = %to, error = %e, "message not sent");
                }
                _ => warn!(node = %self.id, peer = %to, error = %e, "message not sent"),
            }
        }
    }

    fn on_soft_state(&mut self, ss: SoftState) {
        let old = self.soft;
        self.soft = ss;
        if ss.term != old.term {
            let _ = self.events.send(Event::TermChanged { term: ss.term });
        }
        if ss.role != old.role {
            info!(node = %self.id, term = ss.term, from = %old.role, to = %ss.role, "role changed");
            let _ = self.events.send(Event::RoleChanged {
                role: ss.role,
                term: ss.term,
            });
        }
        if ss.leader != old.leader {
            info!(node = %self.id, term = ss.term, leader = ?ss.leader, "leader changed");
            let _ = self.events.send(Event::LeaderChanged {
                leader: ss.leader,
                term: ss.term,
            });
        }
    }

    // ------------------------------------------------------------------
    // Applying
    // ------------------------------------------------------------------

    async fn apply(&mut self, entries: &[Entry]) -> Result<(), Error> {
        let mut i = 0;
        while i < entries.len() {
            let e = &entries[i];
            match e.kind {
                EntryKind::Normal => {
                    let end = entries[i..]
                        .iter()
                        .position(|e| e.kind != EntryKind::Normal)
                        .map_or(entries.len(), |p| i + p);
                    let run = &entries[i..end];
                    let commands: Vec<Command<'_>> = run
                        .iter()
                        .map(|e| Command {
                            index: e.index,
                            term: e.term,
                            data: &e.data,
                        })
                        .collect();
                    let responses = self
                        .sm
                        .apply(&commands)
                        .await
                        .map_err(|e| Error::StateMachine(e.to_string()))?;
                    if responses.len() != run.len() {
                        return Err(Error::StateMachine(format!(
                            "apply returned {} responses for {} commands",
                            responses.len(),
                            run.len()
                        )));
                    }
                    for (e, r) in run.iter().zip(responses) {
                        self.resolve(e.index, e.term, r);
                    }
                    i = end;
                }
                EntryKind::Noop => {
                    self.resolve(e.index, e.term, Bytes::new());
                    i += 1;
                }
                EntryKind::ConfChange => {
                    self.apply_conf_change(e);
                    self.resolve(e.index, e.term, Bytes::new());
                    i += 1;
                }
            }
            self.applied = entries[i - 1].index;
        }
        let _ = self.events.send(Event::Applied {
            index: self.applied,
        });
        Ok(())
    }

    /// Answers the proposals waiting at `index`: the one whose term matches
    /// was applied; any other was superseded. Proposals at lower indexes
    /// still waiting were skipped over by a snapshot.
    fn resolve(&mut self, index: LogIndex, term: Term, response: Bytes) {
        while let Some(entry) = self.pending.first_entry() {
            let (i, t) = *entry.key();
            if i > index {
                break;
            }
            let tx = entry.remove();
            let answer = if i < index {
                Err(Error::Unknown(format!(
                    "index {i} was covered by a snapshot before it was applied here"
                )))
            } else if t == term {
                Ok(Committed {
                    index,
                    term,
                    response: response.clone(),
                })
            } else {
                Err(Error::Dropped)
            };
            let _ = tx.send(answer);
        }
    }

    fn apply_conf_change(&mut self, e: &Entry) {
        // The core decodes and validates the same bytes the same way; a
        // change it ignored is ignored here too.
        let cc = match postcard::from_bytes::<ConfChange>(&e.data) {
            Ok(cc) => cc,
            Err(err) => {
                warn!(node = %self.id, index = e.index, error = %err, "undecodable membership change; ignored");
                return;
            }
        };
        let addrs: BTreeMap<NodeId, String> = decode_peer_addresses(&cc.context)
            .unwrap_or_default()
            .into_iter()
            .collect();
        for step in &cc.steps {
            match *step {
                ConfChangeStep::AddVoter(id) | ConfChangeStep::AddLearner(id) => {
                    if let Some(addr) = addrs.get(&id) {
                        self.peers.insert(id, addr.clone());
                        if id != self.id {
                            self.transport.add_peer(id, addr.clone());
                        }
                    }
                }
                ConfChangeStep::Remove(id) => {
                    self.peers.remove(&id);
                    if id != self.id {
                        self.transport.remove_peer(id);
                    }
                }
            }
        }
        // The core switched to this configuration when the entry was
        // appended; one change is in flight at a time, so the latest
        // appended configuration is the one just applied.
        let m = self.raft.membership();
        info!(node = %self.id, index = e.index, voters = ?m.voters, outgoing = ?m.outgoing,
            learners = ?m.learners, "membership change applied");
        let _ = self.events.send(Event::MembershipChanged {
            index: e.index,
            membership: m.clone(),
        });
    }

    async fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), Error> {
        let (book, app) = unwrap_snapshot(&snap.data).map_err(Error::StateMachine)?;
        self.sm
            .restore(app)
            .await
            .map_err(|e| Error::StateMachine(format!("restoring snapshot: {e}")))?;
        let index = snap.meta.index;
        info!(node = %self.id, index, term = snap.meta.term, bytes = snap.data.len(),
            "snapshot installed from the leader");
        for (id, addr) in &book {
            if *id != self.id {
                self.transport.add_peer(*id, addr.clone());
            }
        }
        for id in self.peers.keys() {
            if !book.contains_key(id) && !snap.meta.membership.contains(*id) && *id != self.id {
                self.transport.remove_peer(*id);
            }
        }
        self.peers = book;
        self.applied = index;
        self.last_snapshot = index;
        // Anything waiting at or below the snapshot: the snapshot may or
        // may not contain it.
        let later = self.pending.split_off(&(index + 1, 0));
        for ((i, _), tx) in std::mem::replace(&mut self.pending, later) {
            let _ = tx.send(Err(Error::Unknown(format!(
                "index {i} was covered by a snapshot from the leader"
            ))));
        }
        let _ = self.events.send(Event::MembershipChanged {
            index,
            membership: snap.meta.membership,
        });
        let _ = self.events.send(Event::Snapshot {
            index,
            installed: true,
        });
        Ok(())
    }

    fn serve_reads(&mut self) {
        if self
            .waiting_reads
            .first_key_value()
            .is_none_or(|(i, _)| *i > self.applied)
        {
            return;
        }
        let later = self.waiting_reads.split_off(&(self.applied + 1));
        for (index, txs) in std::mem::replace(&mut self.waiting_reads, later) {
            for tx in txs {
                let _ = tx.send(Ok(index));
            }
        }
    }

    // ------------------------------------------------------------------
    // Snapshots
    // ------------------------------------------------------------------

    async fn maybe_snapshot(&mut self) -> Result<(), Error> {
        let due = self.cfg.snapshot_every > 0
            && self.applied >= self.last_snapshot + self.cfg.snapshot_every;
        let asked = self.snapshot_request.take();
        if !due && asked.is_none() {
            return Ok(());
        }
        let r = self.take_snapshot().await;
        if let Some(tx) = asked {
            let _ = tx.send(r.clone());
        }
        r.map(|_| ())
    }

    async fn take_snapshot(&mut self) -> Result<LogIndex, Error> {
        let index = self.applied;
        if index <= self.last_snapshot {
            return Ok(self.last_snapshot);
        }
        let app = self
            .sm
            .snapshot()
            .await
            .map_err(|e| Error::StateMachine(format!("taking snapshot: {e}")))?;
        let data = wrap_snapshot(&self.peers, app);
        // The core records the snapshot (and the membership at `index`)
        // and compacts its log; the store keeps the same lag of entries.
        let meta = match self.raft.compact(index, data.clone()) {
            Ok(meta) => meta,
            Err(e) => {
                warn!(node = %self.id, index, error = %e, "snapshot not taken");
                return Ok(self.last_snapshot);
            }
        };
        let term = meta.term;
        self.store
            .save_snapshot(&Snapshot { meta, data }, self.cfg.raft.compaction_lag)
            .await
            .map_err(|e| Error::Store(e.to_string()))?;
        self.last_snapshot = index;
        info!(node = %self.id, index, term, compacted_to = self.raft.snapshot_index(), "snapshot taken");
        let _ = self.events.send(Event::Snapshot {
            index,
            installed: false,
        });
        Ok(index)
    }

    // ------------------------------------------------------------------
    // Bookkeeping
    // ------------------------------------------------------------------

    fn check_transfer(&mut self) {
        let Some(t) = &self.transfer else {
            return;
        };
        let leader = self.raft.leader();
        let outcome = if leader == Some(t.to) {
            Some(Ok(()))
        } else if self.raft.role() == Role::Leader {
            if self.raft.status().transferee != Some(t.to) {
                Some(Err(Error::Unavailable(
                    "leadership transfer abandoned: the target did not catch up in time".into(),
                )))
            } else {
                None
            }
        } else if let Some(other) = leader {
            Some(Err(Error::Unavailable(format!(
                "node {other} became leader instead"
            ))))
        } else if t.ticks > 4 * self.cfg.raft.election_ticks {
            Some(Err(Error::Timeout))
        } else {
            None
        };
        if let Some(r) = outcome {
            if let Some(t) = self.transfer.take() {
                info!(node = %self.id, target = %t.to, ok = r.is_ok(), "leadership transfer finished");
                let _ = t.tx.send(r);
            }
        }
    }

    fn publish_status(&mut self) {
        let r = &self.raft;
        let pending = self.pending.len();
        let applied = self.applied;
        let check_membership = std::mem::take(&mut self.membership_dirty);
        self.status.send_if_modified(|s| {
            let membership_changed = check_membership && s.membership != *r.membership();
            let changed = s.role != r.role()
                || s.term != r.term()
                || s.leader != r.leader()
                || s.commit_index != r.commit_index()
                || s.applied_index != applied
                || s.last_log_index != r.last_index()
                || s.snapshot_index != r.snapshot_index()
                || s.pending_proposals != pending
                || membership_changed;
            if changed {
                s.role = r.role();
                s.term = r.term();
                s.leader = r.leader();
                s.commit_index = r.commit_index();
                s.applied_index = applied;
                s.last_log_index = r.last_index();
                s.snapshot_index = r.snapshot_index();
                s.pending_proposals = pending;
                if membership_changed {
                    s.membership = r.membership().clone();
                }
            }
            changed
        });
    }

    /// Answers everyone still waiting, and everything still queued.
    fn fail_all(&mut self, err: &Error) {
        for (_, tx) in std::mem::take(&mut self.pending) {
            let _ = tx.send(Err(err.clone()));
        }
        for (_, tx) in std::mem::take(&mut self.reads) {
            let _ = tx.send(Err(err.clone()));
        }
        for (_, txs) in std::mem::take(&mut self.waiting_reads) {
            for tx in txs {
                let _ = tx.send(Err(err.clone()));
            }
        }
        if let Some(t) = self.transfer.take() {
            let _ = t.tx.send(Err(err.clone()));
        }
        if let Some(tx) = self.snapshot_request.take() {
            let _ = tx.send(Err(err.clone()));
        }
        self.requests.close();
        while let Ok(r) = self.requests.try_recv() {
            match r {
                Request::Propose { tx, .. } | Request::ConfChange { tx, .. } => {
                    let _ = tx.send(Err(err.clone()));
                }
                Request::Read { tx } => {
                    let _ = tx.send(Err(err.clone()));
                }
            }
        }
        self.control.close();
        while let Ok(c) = self.control.try_recv() {
            match c {
                Control::Transfer { tx, .. } => {
                    let _ = tx.send(Err(err.clone()));
                }
                Control::Snapshot(tx) => {
                    let _ = tx.send(Err(err.clone()));
                }
                Control::RaftStatus(_)
                | Control::SetPeerAddress { .. }
                | Control::Campaign
                | Control::Shutdown => {}
            }
        }
    }
}

fn propose_error(e: ProposeError) -> Error {
    match e {
        ProposeError::NotLeader { leader } => Error::NotLeader { leader },
        ProposeError::TransferInProgress(to) => {
            Error::Unavailable(format!("leadership transfer to {to} in progress"))
        }
        ProposeError::ConfChangeInProgress(i) => Error::Unavailable(format!(
            "a membership change (index {i}) has not committed yet"
        )),
        ProposeError::Membership(m) => Error::Invalid(format!("membership change: {m}")),
        e => Error::Invalid(e.to_string()),
    }
}
