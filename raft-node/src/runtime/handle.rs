//! The caller's side of a running node.

use super::peers::encode_peer_addresses;
use super::{Committed, Error, Event, NodeStatus};
use bytes::Bytes;
use raft_core::{ConfChange, ConfChangeStep, LogIndex, NodeId, Status};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Work that goes through the bounded queue (and may be refused as
/// [`Error::Busy`]).
#[derive(Debug)]
pub(crate) enum Request {
    Propose {
        data: Bytes,
        tx: Reply<Committed>,
    },
    ConfChange {
        cc: ConfChange,
        tx: Reply<Committed>,
    },
    Read {
        tx: Reply<LogIndex>,
    },
}

/// Requests that must not be refused because the node is busy.
#[derive(Debug)]
pub(crate) enum Control {
    RaftStatus(oneshot::Sender<Status>),
    Transfer { to: NodeId, tx: Reply<()> },
    SetPeerAddress { id: NodeId, addr: String },
    Campaign,
    Snapshot(Reply<LogIndex>),
    Shutdown,
}

#[derive(Debug)]
pub(crate) struct Shared {
    /// Why the node stopped on its own, once it has.
    pub(crate) fatal: OnceLock<Error>,
}

/// A handle to a running node. Cheap to clone; the node stops when
/// [`RaftHandle::shutdown`] is called or the last handle is dropped.
#[derive(Debug, Clone)]
pub struct RaftHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: NodeId,
    requests: mpsc::Sender<Request>,
    control: mpsc::Sender<Control>,
    events: broadcast::Sender<Event>,
    status: watch::Receiver<NodeStatus>,
    shared: Arc<Shared>,
    request_timeout: Duration,
    max_proposal_bytes: usize,
}

impl RaftHandle {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: NodeId,
        requests: mpsc::Sender<Request>,
        control: mpsc::Sender<Control>,
        events: broadcast::Sender<Event>,
        status: watch::Receiver<NodeStatus>,
        shared: Arc<Shared>,
        request_timeout: Duration,
        max_proposal_bytes: usize,
    ) -> Self {
        RaftHandle {
            inner: Arc::new(Inner {
                id,
                requests,
                control,
                events,
                status,
                shared,
                request_timeout,
                max_proposal_bytes,
            }),
        }
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    fn stopped(&self) -> Error {
        self.inner
            .shared
            .fatal
            .get()
            .cloned()
            .unwrap_or(Error::Shutdown)
    }

    fn enqueue(&self, req: Request) -> Result<(), Error> {
        self.inner.requests.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::Busy,
            mpsc::error::TrySendError::Closed(_) => self.stopped(),
        })
    }

    async fn wait<T>(
        &self,
        rx: oneshot::Receiver<Result<T, Error>>,
        timeout: Duration,
    ) -> Result<T, Error> {
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(self.stopped()),
            Ok(Ok(r)) => r,
        }
    }

    /// Proposes `data` and waits until it is committed and applied here,
    /// returning the state machine's response. Only the leader accepts
    /// proposals ([`Error::NotLeader`] names the leader otherwise).
    pub async fn propose(&self, data: impl Into<Bytes>) -> Result<Committed, Error> {
        self.propose_with_timeout(data, self.inner.request_timeout)
            .await
    }

    /// [`RaftHandle::propose`] with its own timeout.
    pub async fn propose_with_timeout(
        &self,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Committed, Error> {
        let data = data.into();
        if data.len() > self.inner.max_proposal_bytes {
            return Err(Error::Invalid(format!(
                "proposal of {} bytes exceeds the limit of {} bytes",
                data.len(),
                self.inner.max_proposal_bytes
            )));
        }
        let (tx, rx) = oneshot::channel();
        self.enqueue(Request::Propose { data, tx })?;
        self.wait(rx, timeout).await
    }

    /// A linearizable read barrier (ReadIndex): resolves once this node's
    /// state machine has applied everything committed when the read was
    /// confirmed by the leader, returning that index. State read from the
    /// state machine afterwards is at least that fresh. Works on followers
    /// too (they ask the leader).
    pub async fn read(&self) -> Result<LogIndex, Error> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Request::Read { tx })?;
        self.wait(rx, self.inner.request_timeout).await
    }

    /// This node's status as of the last turn of its loop. Never waits.
    pub fn status(&self) -> NodeStatus {
        self.inner.status.borrow().clone()
    }

    /// A receiver that sees every status update.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.inner.status.clone()
    }

    /// The protocol core's full status (including, on a leader, each
    /// follower's replication progress).
    pub async fn raft_status(&self) -> Result<Status, Error> {
        let (tx, rx) = oneshot::channel();
        self.control(Control::RaftStatus(tx)).await?;
        match tokio::time::timeout(self.inner.request_timeout, rx).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(self.stopped()),
            Ok(Ok(s)) => Ok(s),
        }
    }

    async fn control(&self, c: Control) -> Result<(), Error> {
        self.inner.control.send(c).await.map_err(|_| self.stopped())
    }

    /// Adds `id` as a non-voting learner reachable at `addr`; resolves when
    /// the change is applied here.
    pub async fn add_learner(
        &self,
        id: NodeId,
        addr: impl Into<String>,
    ) -> Result<Committed, Error> {
        self.change_membership(ConfChange {
            steps: vec![ConfChangeStep::AddLearner(id)],
            context: encode_peer_addresses(&[(id, addr.into())]),
        })
        .await
    }

    /// Adds `id` as a voter reachable at `addr` (prefer adding a learner,
    /// letting it catch up, then [`RaftHandle::promote`]).
    pub async fn add_voter(&self, id: NodeId, addr: impl Into<String>) -> Result<Committed, Error> {
        self.change_membership(ConfChange {
            steps: vec![ConfChangeStep::AddVoter(id)],
            context: encode_peer_addresses(&[(id, addr.into())]),
        })
        .await
    }

    /// Promotes learner `id` to voter.
    pub async fn promote(&self, id: NodeId) -> Result<Committed, Error> {
        self.change_membership(ConfChange {
            steps: vec![ConfChangeStep::AddVoter(id)],
            context: Bytes::new(),
        })
        .await
    }

    /// Removes `id` (voter or learner) from the cluster.
    pub async fn remove_node(&self, id: NodeId) -> Result<Committed, Error> {
        self.change_membership(ConfChange {
            steps: vec![ConfChangeStep::Remove(id)],
            context: Bytes::new(),
        })
        .await
    }

    /// Proposes any membership change; its `context` may carry addresses
    /// made with [`super::encode_peer_addresses`]. Resolves when applied
    /// here. A change of several voters goes through a joint configuration,
    /// which the leader leaves on its own.
    pub async fn change_membership(&self, cc: ConfChange) -> Result<Committed, Error> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Request::ConfChange { cc, tx })?;
        self.wait(rx, self.inner.request_timeout).await
    }

    /// Hands leadership to voter `to`; resolves once this node sees `to`
    /// lead. Only the leader can do this.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.control(Control::Transfer { to, tx }).await?;
        self.wait(rx, self.inner.request_timeout).await
    }

    /// Tells the transport a (new) address for node `id`.
    pub async fn set_peer_address(&self, id: NodeId, addr: impl Into<String>) -> Result<(), Error> {
        self.control(Control::SetPeerAddress {
            id,
            addr: addr.into(),
        })
        .await
    }

    /// Starts an election on this node now, skipping pre-vote (for
    /// operators forcing a leader; ignored if it cannot campaign).
    pub async fn campaign(&self) -> Result<(), Error> {
        self.control(Control::Campaign).await
    }

    /// Takes a snapshot now and compacts the log, returning the index it
    /// covers.
    pub async fn snapshot(&self) -> Result<LogIndex, Error> {
        let (tx, rx) = oneshot::channel();
        self.control(Control::Snapshot(tx)).await?;
        self.wait(rx, self.inner.request_timeout).await
    }

    /// A stream of [`Event`]s from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Whether the node task is still running.
    pub fn is_running(&self) -> bool {
        self.inner.status.borrow().running
    }

    /// Stops the node and waits until its task has finished (its transport
    /// is shut down and every waiting caller answered).
    pub async fn shutdown(&self) {
        // A closed channel means the node already stopped.
        let _ = self.inner.control.send(Control::Shutdown).await;
        let mut status = self.inner.status.clone();
        // An error means the task is gone: stopped as well.
        let _ = status.wait_for(|s| !s.running).await;
    }
}
