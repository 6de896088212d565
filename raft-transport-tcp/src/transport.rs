//! The TCP transport: one writer task per peer, one accept loop, one reader
//! task per accepted connection.
//!
//! Connections carry data one way: a node dials each peer it sends to and
//! writes frames; the acceptor only reads frames and writes keepalives back.
//! Every task here must stay bounded (queues, buffers, timeouts) and must
//! never let one peer's trouble reach another peer's task.

use crate::config::TcpConfig;
use crate::queue::PeerQueue;
use bytes::{Buf, BytesMut};
use raft_core::backoff::Backoff;
use raft_core::codec::frame::{self, Decoded, HEADER_LEN, KEEPALIVE};
use raft_core::codec::Handshake;
use raft_core::transport::PeerCounters;
use raft_core::{Message, NodeId, PeerStats, SendError, Transport};
use rustls::pki_types::ServerName;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Frames at least this large are written on their own rather than copied
/// into the batch buffer.
const DIRECT_WRITE: usize = 64 * 1024;
/// The batch buffer is written out once it holds this much.
const BATCH_BYTES: usize = 256 * 1024;
/// Inbound connections (handshaking or established) served at once; more
/// are refused, so a connection flood cannot exhaust memory.
const MAX_INBOUND: usize = 1024;
/// Initial read buffer per connection; grows only as far as a frame needs.
const READ_BUF: usize = 64 * 1024;

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TcpError {
    /// The configuration is inconsistent.
    #[error("invalid TCP transport configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

/// Messages read from one connection in one go, with the share of the
/// inbound budget they hold until `recv` takes them.
struct Batch {
    from: NodeId,
    msgs: Vec<Message>,
    _budget: OwnedSemaphorePermit,
}

/// State the transport shares with its tasks.
struct Shared {
    cfg: TcpConfig,
    known: RwLock<HashSet<NodeId>>,
    /// Established inbound connections by peer, so that a newer connection,
    /// or removing the peer, closes the older ones.
    inbound: Mutex<HashMap<NodeId, (u64, AbortHandle)>>,
    inbound_tx: mpsc::UnboundedSender<Batch>,
    budget: Arc<Semaphore>,
    next_conn: AtomicU64,
}

impl Shared {
    fn is_known(&self, id: NodeId) -> bool {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    fn inbound_map(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, (u64, AbortHandle)>> {
        self.inbound.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Outbound {
    addr: String,
    queue: Arc<PeerQueue>,
    counters: Arc<PeerCounters>,
    task: JoinHandle<()>,
}

/// A [`Transport`] over TCP, optionally with mutual TLS. See the crate docs.
pub struct TcpTransport {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    peers: HashMap<NodeId, Outbound>,
    inbound_rx: Option<mpsc::UnboundedReceiver<Batch>>,
    pending: VecDeque<(NodeId, Message)>,
    accept_task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("node_id", &self.shared.cfg.node_id)
            .field("local_addr", &self.local_addr)
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// Binds the listener and starts accepting. Peers are added with
    /// [`Transport::add_peer`]; each is dialed when the first message for it
    /// is sent.
    pub async fn bind(cfg: TcpConfig) -> Result<TcpTransport, TcpError> {
        cfg.validate().map_err(TcpError::Config)?;
        let addr = cfg.listen_addr;
        let listener = listen(addr).map_err(|source| TcpError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| TcpError::Bind { addr, source })?;
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(
            cfg.limits.inbound_buffer_bytes.min(Semaphore::MAX_PERMITS),
        ));
        let shared = Arc::new(Shared {
            cfg,
            known: RwLock::new(HashSet::new()),
            inbound: Mutex::new(HashMap::new()),
            inbound_tx,
            budget,
            next_conn: AtomicU64::new(1),
        });
        info!(
            node = %shared.cfg.node_id,
            addr = %local_addr,
            tls = shared.cfg.tls.is_some(),
            "tcp transport listening"
        );
        let accept_task = tokio::spawn(accept_loop(shared.clone(), listener));
        Ok(TcpTransport {
            shared,
            local_addr,
            peers: HashMap::new(),
            inbound_rx: Some(inbound_rx),
            pending: VecDeque::new(),
            accept_task: Some(accept_task),
        })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn spawn_outbound(&self, peer: NodeId, addr: String, counters: Arc<PeerCounters>) -> Outbound {
        let cfg = &self.shared.cfg;
        let queue = Arc::new(PeerQueue::new(
            cfg.limits.queue_capacity,
            cfg.limits.queue_bytes,
        ));
        let task = tokio::spawn(run_outbound(
            self.shared.clone(),
            peer,
            addr.clone(),
            queue.clone(),
            counters.clone(),
        ));
        Outbound {
            addr,
            queue,
            counters,
            task,
        }
    }

    async fn stop_outbound(out: Outbound) {
        let discarded = out.queue.close();
        out.counters.add_dropped(discarded);
        out.task.abort();
        let _ = out.task.await;
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Lets a restarted node bind its port again while connections of its
    // previous incarnation linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

#[async_trait::async_trait]
impl Transport for TcpTransport {
    fn send(&self, msg: Message) -> Result<(), SendError> {
        if self.accept_task.is_none() {
            return Err(SendError::Shutdown);
        }
        let to = msg.to;
        let Some(out) = self.peers.get(&to) else {
            return Err(SendError::UnknownPeer(to));
        };
        let queued =
            frame::encode_for_send(&msg, self.shared.cfg.limits.max_frame_size).and_then(|f| {
                out.queue
                    .push(f, msg.body.is_bulk())
                    .map_err(|e| e.to_send_error(to))
            });
        if queued.is_err() {
            out.counters.add_dropped(1);
        }
        queued
    }

    async fn recv(&mut self) -> Option<(NodeId, Message)> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            // Cancel-safe: `mpsc::Receiver::recv` loses nothing when dropped,
            // and a batch is moved into `pending` before anything else awaits.
            let batch = self.inbound_rx.as_mut()?.recv().await?;
            let from = batch.from;
            self.pending
                .extend(batch.msgs.into_iter().map(|m| (from, m)));
        }
    }

    fn add_peer(&mut self, id: NodeId, addr: String) {
        if self.accept_task.is_none() {
            return;
        }
        if id == self.shared.cfg.node_id || id.is_none() {
            warn!(node = %self.shared.cfg.node_id, peer = %id, "ignoring add_peer for this node's own or the reserved id");
            return;
        }
        self.shared
            .known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        let counters = match self.peers.get(&id) {
            Some(out) if out.addr == addr => return,
            Some(out) => out.counters.clone(),
            None => Arc::new(PeerCounters::default()),
        };
        let new = self.spawn_outbound(id, addr, counters);
        if let Some(old) = self.peers.insert(id, new) {
            info!(peer = %id, old = %old.addr, new = %self.peers[&id].addr, "peer address changed");
            let discarded = old.queue.close();
            old.counters.add_dropped(discarded);
            old.task.abort();
        }
    }

    fn remove_peer(&mut self, id: NodeId) {
        self.shared
            .known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(out) = self.peers.remove(&id) {
            let discarded = out.queue.close();
            out.counters.add_dropped(discarded);
            out.task.abort();
        }
        if let Some((_, conn)) = self.shared.inbound_map().remove(&id) {
            conn.abort();
        }
    }

    fn stats(&self, peer: NodeId) -> PeerStats {
        self.peers
            .get(&peer)
            .map(|o| o.counters.snapshot())
            .unwrap_or_default()
    }

    async fn shutdown(&mut self) {
        let Some(accept) = self.accept_task.take() else {
            return;
        };
        // The accept task owns the listener and, through its JoinSet, every
        // inbound connection: once it has been dropped the port is free.
        accept.abort();
        let _ = accept.await;
        for (_, out) in self.peers.drain() {
            Self::stop_outbound(out).await;
        }
        for (_, (_, conn)) in self.shared.inbound_map().drain() {
            conn.abort();
        }
        self.inbound_rx = None;
        self.pending.clear();
        info!(node = %self.shared.cfg.node_id, addr = %self.local_addr, "tcp transport shut down");
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        if let Some(t) = self.accept_task.take() {
            t.abort();
        }
        for out in self.peers.values() {
            out.queue.close();
            out.task.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// Outbound: dial lazily, handshake, write batches, redial with backoff.

async fn run_outbound(
    shared: Arc<Shared>,
    peer: NodeId,
    addr: String,
    queue: Arc<PeerQueue>,
    counters: Arc<PeerCounters>,
) {
    let cfg = &shared.cfg;
    let mut backoff = Backoff::new(
        cfg.limits.backoff_initial,
        cfg.limits.backoff_max,
        // The jitter only needs to differ between processes (so that nodes
        // that lost a peer together do not redial it in lockstep), not to
        // be unpredictable: the per-process random hash keys serve.
        RandomState::new().hash_one(cfg.node_id.0.rotate_left(32) ^ peer.0),
    );
    loop {
        // Dial only when there is something to send.
        while queue.is_empty() {
            if queue.is_closed() {
                return;
            }
            queue.changed().await;
        }
        match dial(&shared, peer, &addr).await {
            Ok((rd, wr)) => {
                info!(peer = %peer, addr = %addr, direction = "outbound", "connection established");
                backoff.reset();
                let reason = drive_outbound(&shared, rd, wr, &queue, &counters).await;
                warn!(peer = %peer, addr = %addr, direction = "outbound", reason = %reason, "connection lost");
            }
            Err(DialError::Refused(reason)) => {
                // A misconfigured peer is refused on every redial: warn on
                // the first failures and then at doubling intervals.
                if backoff.attempt() == 0 || (backoff.attempt() + 1).is_power_of_two() {
                    warn!(remote = %addr, claimed_id = %peer, reason = %reason, direction = "outbound", attempt = backoff.attempt() + 1, "connection refused");
                } else {
                    debug!(remote = %addr, claimed_id = %peer, reason = %reason, direction = "outbound", attempt = backoff.attempt() + 1, "connection refused");
                }
            }
            Err(DialError::Failed(reason)) => {
                if backoff.attempt() == 0 {
                    warn!(peer = %peer, addr = %addr, reason = %reason, "cannot connect to peer");
                } else {
                    debug!(peer = %peer, addr = %addr, reason = %reason, "cannot connect to peer");
                }
            }
        }
        let delay = backoff.next_delay();
        // Logged on the first failures and then at doubling intervals, so a
        // peer that stays down does not flood the log.
        if backoff.attempt().is_power_of_two() {
            info!(peer = %peer, addr = %addr, attempt = backoff.attempt(), delay_ms = delay.as_millis() as u64, "redial backoff");
        } else {
            debug!(peer = %peer, addr = %addr, attempt = backoff.attempt(), delay_ms = delay.as_millis() as u64, "redial backoff");
        }
        tokio::time::sleep(delay).await;
    }
}

enum DialError {
    /// The peer answered but is not who it should be (or refused us).
    Refused(String),
    /// The peer could not be reached.
    Failed(String),
}

async fn dial(shared: &Shared, peer: NodeId, addr: &str) -> Result<(BoxRead, BoxWrite), DialError> {
    let cfg = &shared.cfg;
    let tcp = match timeout(cfg.limits.connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(DialError::Failed(format!(
                "connect timed out after {:?}",
                cfg.limits.connect_timeout
            )))
        }
        Ok(Err(e)) => return Err(DialError::Failed(e.to_string())),
        Ok(Ok(s)) => s,
    };
    tcp.set_nodelay(true)
        .map_err(|e| DialError::Failed(format!("cannot set TCP_NODELAY: {e}")))?;
    let ours = Handshake::new(cfg.cluster_id, cfg.node_id).encode();
    match &cfg.tls {
        None => {
            let mut tcp = tcp;
            timeout(
                cfg.limits.handshake_timeout,
                client_handshake(&mut tcp, &ours, shared, peer),
            )
            .await
            .map_err(|_| DialError::Failed("handshake timed out".into()))??;
            let (r, w) = tcp.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
        Some(tls) => {
            let name = (tls.server_name)(peer);
            let server_name = ServerName::try_from(name.clone())
                .map_err(|e| DialError::Failed(format!("invalid TLS server name {name:?}: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
            let fut = async {
                let mut s = connector
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| DialError::Refused(format!("TLS handshake failed: {e}")))?;
                let cert = s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .ok_or_else(|| DialError::Refused("peer presented no certificate".into()))?;
                (tls.check_peer)(cert, peer).map_err(DialError::Refused)?;
                client_handshake(&mut s, &ours, shared, peer).await?;
                Ok::<_, DialError>(s)
            };
            let s = timeout(cfg.limits.handshake_timeout, fut)
                .await
                .map_err(|_| DialError::Failed("TLS or raft handshake timed out".into()))??;
            let (r, w) = tokio::io::split(s);
            Ok((Box::new(r), Box::new(w)))
        }
    }
}

async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    ours: &[u8; Handshake::LEN],
    shared: &Shared,
    peer: NodeId,
) -> Result<(), DialError> {
    s.write_all(ours)
        .await
        .map_err(|e| DialError::Failed(format!("writing handshake: {e}")))?;
    s.flush()
        .await
        .map_err(|e| DialError::Failed(format!("writing handshake: {e}")))?;
    let mut theirs = [0u8; Handshake::LEN];
    match s.read_exact(&mut theirs).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(DialError::Refused(
                "peer closed the connection during the handshake (it refused ours; see its log)"
                    .into(),
            ))
        }
        Err(e) => return Err(DialError::Failed(format!("reading handshake: {e}"))),
    }
    let hs = Handshake::decode(&theirs).map_err(|e| DialError::Refused(e.to_string()))?;
    hs.check(shared.cfg.cluster_id)
        .map_err(DialError::Refused)?;
    if hs.node_id != peer {
        return Err(DialError::Refused(format!(
            "dialed node {peer} but node {} answered",
            hs.node_id
        )));
    }
    Ok(())
}

/// Writes `data` fully, giving up if no byte can be written for `idle`.
async fn write_all_within(w: &mut BoxWrite, mut data: &[u8], idle: Duration) -> io::Result<()> {
    while !data.is_empty() {
        match timeout(idle, w.write(data)).await {
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("peer accepted no data for {idle:?}"),
                ))
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => data = &data[n..],
        }
    }
    Ok(())
}

/// Runs one established outbound connection until it fails; returns why.
async fn drive_outbound(
    shared: &Shared,
    mut rd: BoxRead,
    mut wr: BoxWrite,
    queue: &PeerQueue,
    counters: &PeerCounters,
) -> String {
    let cfg = &shared.cfg;
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    let mut rbuf = BytesMut::with_capacity(256);
    let mut last_rx = Instant::now();
    let mut last_tx = Instant::now();
    let mut dirty = false;
    loop {
        frames.clear();
        if !queue.take(&mut frames) {
            return "peer removed".into();
        }
        if !frames.is_empty() {
            let total = frames.len();
            let mut written = 0;
            let mut pending_in_batch = 0;
            batch.clear();
            let mut result = Ok(());
            for f in &frames {
                if f.len() >= DIRECT_WRITE {
                    if !batch.is_empty() {
                        result = write_all_within(&mut wr, &batch, cfg.limits.idle_timeout).await;
                        if result.is_err() {
                            break;
                        }
                        written += pending_in_batch;
                        pending_in_batch = 0;
                        batch.clear();
                    }
                    result = write_all_within(&mut wr, f, cfg.limits.idle_timeout).await;
                    if result.is_err() {
                        break;
                    }
                    written += 1;
                } else {
                    batch.extend_from_slice(f);
                    pending_in_batch += 1;
                    if batch.len() >= BATCH_BYTES {
                        result = write_all_within(&mut wr, &batch, cfg.limits.idle_timeout).await;
                        if result.is_err() {
                            break;
                        }
                        written += pending_in_batch;
                        pending_in_batch = 0;
                        batch.clear();
                    }
                }
            }
            if result.is_ok() && !batch.is_empty() {
                result = write_all_within(&mut wr, &batch, cfg.limits.idle_timeout).await;
                if result.is_ok() {
                    written += pending_in_batch;
                }
            }
            counters.add_sent(written);
            if let Err(e) = result {
                counters.add_dropped(total - written);
                return format!("write failed: {e}");
            }
            if batch.capacity() > 4 * BATCH_BYTES {
                batch = Vec::with_capacity(BATCH_BYTES);
            }
            last_tx = Instant::now();
            dirty = true;
            continue;
        }
        if dirty {
            // The queue has drained: push out anything a TLS layer buffered.
            match timeout(cfg.limits.idle_timeout, wr.flush()).await {
                Err(_) => {
                    return format!("flush made no progress for {:?}", cfg.limits.idle_timeout)
                }
                Ok(Err(e)) => return format!("flush failed: {e}"),
                Ok(Ok(())) => dirty = false,
            }
        }
        tokio::select! {
            biased;
            _ = queue.changed() => {}
            r = rd.read_buf(&mut rbuf) => match r {
                Ok(0) => return "peer closed the connection".into(),
                Err(e) => return format!("read failed: {e}"),
                Ok(_) => {
                    last_rx = Instant::now();
                    // The acceptor only ever sends keepalives.
                    loop {
                        match frame::decode_frame(&rbuf, 0) {
                            Ok(Decoded::Keepalive { consumed }) => rbuf.advance(consumed),
                            Ok(Decoded::Incomplete { .. }) => break,
                            Ok(Decoded::Message { .. }) => return "unexpected message from the acceptor".into(),
                            Err(e) => return format!("unexpected data from the acceptor: {e}"),
                        }
                    }
                }
            },
            _ = sleep_until(last_tx + cfg.limits.keepalive_interval) => {
                if let Err(e) = write_all_within(&mut wr, &KEEPALIVE, cfg.limits.idle_timeout).await {
                    return format!("keepalive write failed: {e}");
                }
                last_tx = Instant::now();
                dirty = true;
            }
            _ = sleep_until(last_rx + cfg.limits.idle_timeout) => {
                return format!("nothing received for {:?}", cfg.limits.idle_timeout);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Inbound: accept, handshake, read frames, hand batches to `recv`.

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, remote)) if conns.len() >= MAX_INBOUND => {
                    drop(stream);
                    refuse(remote, None, &format!("{MAX_INBOUND} inbound connections are already open"));
                }
                Ok((stream, remote)) => {
                    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(serve_inbound(shared.clone(), stream, remote, conn_id));
                }
                Err(e) => {
                    // Usually descriptor exhaustion: back off rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn refuse(remote: SocketAddr, claimed: Option<NodeId>, reason: &str) {
    match claimed {
        Some(id) => {
            warn!(remote = %remote, claimed_id = %id, reason = %reason, direction = "inbound", "connection refused")
        }
        None => {
            warn!(remote = %remote, claimed_id = "none", reason = %reason, direction = "inbound", "connection refused")
        }
    }
}

/// Reads and checks the dialer's handshake, then answers with ours.
async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    shared: &Shared,
    cert: Option<&rustls::pki_types::CertificateDer<'static>>,
) -> Result<NodeId, (Option<NodeId>, String)> {
    let cfg = &shared.cfg;
    let mut theirs = [0u8; Handshake::LEN];
    s.read_exact(&mut theirs).await.map_err(|e| {
        let reason = if e.kind() == io::ErrorKind::UnexpectedEof {
            "connection closed before a complete handshake".to_string()
        } else {
            format!("reading handshake: {e}")
        };
        (None, reason)
    })?;
    let hs = Handshake::decode(&theirs).map_err(|e| (None, e.to_string()))?;
    let id = hs.node_id;
    hs.check(cfg.cluster_id).map_err(|r| (Some(id), r))?;
    if !shared.is_known(id) {
        return Err((Some(id), format!("node id {id} is not a known peer")));
    }
    if let Some(tls) = &cfg.tls {
        let cert = cert.ok_or((Some(id), "peer presented no certificate".to_string()))?;
        (tls.check_peer)(cert, id).map_err(|r| (Some(id), r))?;
    }
    let ours = Handshake::new(cfg.cluster_id, cfg.node_id).encode();
    s.write_all(&ours)
        .await
        .map_err(|e| (Some(id), format!("writing handshake: {e}")))?;
    s.flush()
        .await
        .map_err(|e| (Some(id), format!("writing handshake: {e}")))?;
    Ok(id)
}

async fn serve_inbound(shared: Arc<Shared>, tcp: TcpStream, remote: SocketAddr, conn_id: u64) {
    let cfg = &shared.cfg;
    if let Err(e) = tcp.set_nodelay(true) {
        debug!(remote = %remote, error = %e, "cannot set TCP_NODELAY");
    }
    let (peer, rd, wr): (NodeId, BoxRead, BoxWrite) = match &cfg.tls {
        None => {
            let mut tcp = tcp;
            match timeout(
                cfg.limits.handshake_timeout,
                server_handshake(&mut tcp, &shared, None),
            )
            .await
            {
                Err(_) => return refuse(remote, None, "no handshake within the handshake timeout"),
                Ok(Err((claimed, reason))) => return refuse(remote, claimed, &reason),
                Ok(Ok(id)) => {
                    let (r, w) = tcp.into_split();
                    (id, Box::new(r), Box::new(w))
                }
            }
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
            let fut = async {
                let mut s = acceptor
                    .accept(tcp)
                    .await
                    .map_err(|e| (None, format!("TLS handshake failed: {e}")))?;
                let cert = s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .cloned();
                let id = server_handshake(&mut s, &shared, cert.as_ref()).await?;
                Ok::<_, (Option<NodeId>, String)>((id, s))
            };
            match timeout(cfg.limits.handshake_timeout, fut).await {
                Err(_) => {
                    return refuse(
                        remote,
                        None,
                        "no TLS and raft handshake within the handshake timeout",
                    )
                }
                Ok(Err((claimed, reason))) => return refuse(remote, claimed, &reason),
                Ok(Ok((id, s))) => {
                    let (r, w) = tokio::io::split(s);
                    (id, Box::new(r), Box::new(w))
                }
            }
        }
    };
    info!(peer = %peer, addr = %remote, direction = "inbound", "connection established");

    // Register, closing an older connection from the same peer: its dialer
    // has given up on it, or it would not have dialed again.
    let me = tokio::spawn(read_inbound(shared.clone(), rd, peer, remote));
    let _reader_guard = AbortOnDrop(me.abort_handle());
    let previous = shared
        .inbound_map()
        .insert(peer, (conn_id, me.abort_handle()));
    if let Some((_, old)) = previous {
        old.abort();
    }
    let keepalive = tokio::spawn(write_keepalives(
        wr,
        cfg.limits.keepalive_interval,
        cfg.limits.idle_timeout,
    ));
    let _keepalive_guard = AbortOnDrop(keepalive.abort_handle());
    let reason = match me.await {
        Ok(reason) => reason,
        Err(e) if e.is_cancelled() => {
            "closed by this node (peer removed, reconnected or shut down)".to_string()
        }
        Err(e) => format!("reader failed: {e}"),
    };
    {
        let mut map = shared.inbound_map();
        if map.get(&peer).is_some_and(|(c, _)| *c == conn_id) {
            map.remove(&peer);
        }
    }
    warn!(peer = %peer, addr = %remote, direction = "inbound", reason = %reason, "connection lost");
}

/// Aborts a helper task when the task that owns it ends or is aborted, so
/// no reader or keepalive writer outlives its connection.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn write_keepalives(mut wr: BoxWrite, every: Duration, idle: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if write_all_within(&mut wr, &KEEPALIVE, idle).await.is_err() || wr.flush().await.is_err() {
            // The reader will see the failure and report it.
            return;
        }
    }
}

/// Reads frames until the connection ends; returns why it ended. Any frame
/// error ends the connection.
async fn read_inbound(
    shared: Arc<Shared>,
    mut rd: BoxRead,
    peer: NodeId,
    remote: SocketAddr,
) -> String {
    let cfg = &shared.cfg;
    let me = cfg.node_id;
    let max = cfg.limits.max_frame_size;
    let total_budget = cfg
        .limits
        .inbound_buffer_bytes
        .min(Semaphore::MAX_PERMITS)
        .min(u32::MAX as usize);
    let mut buf = BytesMut::with_capacity(READ_BUF);
    loop {
        let mut msgs = Vec::new();
        let drained = match frame::decode_batch(&buf, max, peer, me, &mut msgs) {
            Ok(d) => d,
            Err(e) => {
                let reason = e.to_string();
                refuse(remote, Some(peer), &reason);
                return reason;
            }
        };
        buf.advance(drained.consumed);
        buf.reserve(drained.needed.saturating_sub(buf.len()));
        let bytes = drained.message_bytes;
        if !msgs.is_empty() {
            // Wait for room in the inbound budget; while waiting this reader
            // stops reading and TCP flow control slows the peer down.
            let want = u32::try_from(bytes.clamp(1, total_budget)).unwrap_or(u32::MAX);
            let Ok(permit) = shared.budget.clone().acquire_many_owned(want).await else {
                return "transport shut down".into();
            };
            let batch = Batch {
                from: peer,
                msgs,
                _budget: permit,
            };
            if shared.inbound_tx.send(batch).is_err() {
                return "transport shut down".into();
            }
        }
        if buf.capacity() > 4 * READ_BUF && buf.len() < READ_BUF {
            // Give back the room a large frame needed.
            let mut smaller = BytesMut::with_capacity(READ_BUF);
            smaller.extend_from_slice(&buf);
            buf = smaller;
        }
        if buf.capacity() - buf.len() < HEADER_LEN {
            buf.reserve(READ_BUF);
        }
        match timeout(cfg.limits.idle_timeout, rd.read_buf(&mut buf)).await {
            Err(_) => return format!("nothing received for {:?}", cfg.limits.idle_timeout),
            Ok(Err(e)) => return format!("read failed: {e}"),
            Ok(Ok(0)) => {
                return match frame::check_end_of_stream(&buf) {
                    Ok(()) => "peer closed the connection".into(),
                    Err(e) => {
                        let reason = e.to_string();
                        refuse(remote, Some(peer), &reason);
                        reason
                    }
                };
            }
            Ok(Ok(_)) => {}
        }
    }
}
