//! The QUIC transport: one endpoint (one UDP socket) that both dials and
//! accepts, one writer task per peer, one task per accepted connection.
//!
//! A dialed connection carries data one way. Its first bidirectional stream
//! is the handshake and then the ordered replication lane; snapshot chunks
//! travel on a unidirectional stream of their own, opened when the first one
//! is sent, so flow control on one never stalls the other. Nothing here may
//! block one peer's traffic on another's, and every wait is bounded.

use crate::certs::{check_node_id, node_server_name};
use crate::config::QuicConfig;
use crate::queue::LaneQueue;
use bytes::{Buf, Bytes, BytesMut};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use raft_core::backoff::Backoff;
use raft_core::codec::frame;
use raft_core::codec::Handshake;
use raft_core::transport::PeerCounters;
use raft_core::{Body, Message, NodeId, PeerStats, SendError, Transport};
use rustls::pki_types::CertificateDer;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::timeout;
use tracing::{debug, info, warn};

/// Frames smaller than this are copied into one buffer per stream write.
const BATCH_BYTES: usize = 256 * 1024;
/// Inbound connections (handshaking or established) served at once; more
/// are refused, so a connection flood cannot exhaust memory.
const MAX_INBOUND: usize = 1024;
/// Per-stream receive window: one frame of the default 16 MiB limit fits in
/// flight whole, and a single stream can fill a 1 Gbit/s path with a
/// 100 ms round trip (12.5 MB in flight).
const STREAM_WINDOW: u32 = 16 * 1024 * 1024;
/// Per-connection receive window: the replication stream and a bulk stream
/// can both run at their full window, with room for the handshake stream.
/// With one dialed and one accepted connection per peer, a node pins at
/// most this (plus SEND_WINDOW) per peer in each direction.
const CONNECTION_WINDOW: u32 = 48 * 1024 * 1024;
/// Bytes written to a connection and not yet acknowledged: enough to keep
/// both streams' windows full. Past it writes wait, and a slow peer's
/// backlog stays in the lane queues, which are bounded and count what they
/// drop.
const SEND_WINDOW: u32 = 48 * 1024 * 1024;
/// Requested size of the UDP socket's kernel send and receive buffers.
/// Linux's usual default (about 200 KiB) overflows when a burst of
/// datagrams arrives while the receiving task is busy, and every drop costs
/// a retransmission and halves the congestion window. The kernel caps the
/// request at `net.core.rmem_max` / `wmem_max`, which operators may raise;
/// the memory is the kernel's, one buffer per node, not per peer.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Application close codes.
const CLOSE_REFUSED: u32 = 1;
const CLOSE_PROTOCOL: u32 = 2;
const CLOSE_DONE: u32 = 0;

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    /// The configuration is inconsistent.
    #[error("invalid QUIC transport configuration: {0}")]
    Config(String),
    /// The TLS configuration is unusable for QUIC (it must allow TLS 1.3).
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(String),
    /// The UDP address could not be bound.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

struct Batch {
    from: NodeId,
    msgs: Vec<Message>,
    _budget: OwnedSemaphorePermit,
}

struct Shared {
    cfg: QuicConfig,
    endpoint: Endpoint,
    known: RwLock<HashSet<NodeId>>,
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
    normal: Arc<LaneQueue>,
    bulk: Arc<LaneQueue>,
    counters: Arc<PeerCounters>,
    task: JoinHandle<()>,
}

impl Outbound {
    fn close(&self) {
        let n = self.normal.close() + self.bulk.close();
        self.counters.add_dropped(n);
        self.task.abort();
    }
}

/// A [`Transport`] over QUIC with mutual TLS. See the crate docs.
pub struct QuicTransport {
    shared: Option<Arc<Shared>>,
    node_id: NodeId,
    local_addr: SocketAddr,
    peers: HashMap<NodeId, Outbound>,
    inbound_rx: Option<mpsc::UnboundedReceiver<Batch>>,
    pending: VecDeque<(NodeId, Message)>,
    accept_task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("node_id", &self.node_id)
            .field("local_addr", &self.local_addr)
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn transport_config(
    cfg: &QuicConfig,
    accepting: bool,
) -> Result<quinn::TransportConfig, QuicError> {
    let mut tc = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(cfg.limits.idle_timeout)
        .map_err(|e| QuicError::Config(format!("idle_timeout: {e}")))?;
    tc.max_idle_timeout(Some(idle));
    tc.keep_alive_interval(Some(cfg.limits.keepalive_interval));
    // A dialer opens one bidirectional stream (handshake and replication)
    // and one unidirectional stream per bulk lane; the accepting side opens
    // none, so a dialed peer may open nothing towards us.
    if accepting {
        tc.max_concurrent_bidi_streams(1u32.into());
        tc.max_concurrent_uni_streams(2u32.into());
    } else {
        tc.max_concurrent_bidi_streams(0u32.into());
        tc.max_concurrent_uni_streams(0u32.into());
    }
    // Let MTU discovery grow datagrams to the endpoint's maximum UDP
    // payload (quinn's default of 1472 bytes, a full Ethernet frame) rather
    // than stopping at its default upper bound of 1452; paths that cannot
    // carry that fail the probe and keep the smaller size. (Raising the
    // endpoint's maximum towards the loopback MTU does not pay: on a busy
    // receiver, bursts of large datagrams overflow the socket buffer, quinn's
    // black-hole detector takes the losses for an MTU limit and falls back
    // to 1200 bytes.)
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(u16::MAX);
    tc.mtu_discovery_config(Some(mtu));
    // Flow-control windows, which bound the memory one connection can pin:
    // at most STREAM_WINDOW bytes received and not yet read on any one
    // stream, CONNECTION_WINDOW on all of its streams together, and
    // SEND_WINDOW bytes written but not yet acknowledged. See the
    // constants for why these sizes.
    tc.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
    tc.receive_window(VarInt::from_u32(CONNECTION_WINDOW));
    tc.send_window(u64::from(SEND_WINDOW));
    Ok(tc)
}

/// Binds the endpoint's UDP socket and asks for larger kernel buffers
/// (best effort: a kernel that grants less only means more drops under
/// bursts, which QUIC recovers from).
fn bind_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    let recv = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES);
    let send = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES);
    debug!(
        addr = %addr,
        requested = SOCKET_BUFFER_BYTES,
        recv_buffer = ?state.recv_buffer_size((&socket).into()).ok(),
        send_buffer = ?state.send_buffer_size((&socket).into()).ok(),
        recv_error = ?recv.err(),
        send_error = ?send.err(),
        "UDP socket buffers"
    );
    Ok(socket)
}

impl QuicTransport {
    /// Binds the UDP endpoint and starts accepting. Peers are added with
    /// [`Transport::add_peer`] and dialed when the first message for them is
    /// sent.
    pub async fn bind(cfg: QuicConfig) -> Result<QuicTransport, QuicError> {
        cfg.validate().map_err(QuicError::Config)?;
        let server_crypto = QuicServerConfig::try_from(cfg.tls.server.clone())
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(Arc::new(transport_config(&cfg, true)?));
        let client_crypto = QuicClientConfig::try_from(cfg.tls.client.clone())
            .map_err(|e| QuicError::Tls(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(Arc::new(transport_config(&cfg, false)?));
        let addr = cfg.listen_addr;
        let socket = bind_socket(addr).map_err(|source| QuicError::Bind { addr, source })?;
        let mut endpoint = Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| QuicError::Bind { addr, source })?;
        endpoint.set_default_client_config(client);
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| QuicError::Bind { addr, source })?;
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(
            cfg.limits.inbound_buffer_bytes.min(Semaphore::MAX_PERMITS),
        ));
        let node_id = cfg.node_id;
        let shared = Arc::new(Shared {
            cfg,
            endpoint,
            known: RwLock::new(HashSet::new()),
            inbound: Mutex::new(HashMap::new()),
            inbound_tx,
            budget,
            next_conn: AtomicU64::new(1),
        });
        info!(node = %node_id, addr = %local_addr, "quic transport listening");
        let accept_task = tokio::spawn(accept_loop(shared.clone()));
        Ok(QuicTransport {
            shared: Some(shared),
            node_id,
            local_addr,
            peers: HashMap::new(),
            inbound_rx: Some(inbound_rx),
            pending: VecDeque::new(),
            accept_task: Some(accept_task),
        })
    }

    /// The UDP address the endpoint is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

#[async_trait::async_trait]
impl Transport for QuicTransport {
    fn send(&self, msg: Message) -> Result<(), SendError> {
        let Some(shared) = &self.shared else {
            return Err(SendError::Shutdown);
        };
        let to = msg.to;
        let Some(out) = self.peers.get(&to) else {
            return Err(SendError::UnknownPeer(to));
        };
        let lane = if msg.body.is_bulk() {
            &out.bulk
        } else {
            &out.normal
        };
        let max_frame = shared.cfg.limits.max_frame_size;
        let min_len = min_frame_len(&msg);
        // A message that is surely over the frame limit goes on to the
        // encoder, which names that as the reason; otherwise a full queue
        // refuses it before it is encoded.
        let refused = (min_len <= max_frame.saturating_add(frame::HEADER_LEN))
            .then(|| lane.refuses(min_len))
            .flatten();
        let queued = match refused {
            Some(e) => Err(e.to_send_error(to)),
            None => frame::encode_for_send(&msg, max_frame)
                .and_then(|f| lane.push(f).map_err(|e| e.to_send_error(to))),
        };
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
            // Cancel-safe: the channel loses nothing when this future is
            // dropped, and a batch moves into `pending` without awaiting.
            let batch = self.inbound_rx.as_mut()?.recv().await?;
            let from = batch.from;
            self.pending
                .extend(batch.msgs.into_iter().map(|m| (from, m)));
        }
    }

    fn add_peer(&mut self, id: NodeId, addr: String) {
        let Some(shared) = &self.shared else {
            return;
        };
        if id == self.node_id || id.is_none() {
            warn!(node = %self.node_id, peer = %id, "ignoring add_peer for this node's own or the reserved id");
            return;
        }
        shared
            .known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        let counters = match self.peers.get(&id) {
            Some(out) if out.addr == addr => return,
            Some(out) => out.counters.clone(),
            None => Arc::new(PeerCounters::default()),
        };
        let cfg = &shared.cfg;
        let limits = &cfg.limits;
        let normal = Arc::new(LaneQueue::new(
            limits.queue_capacity,
            limits.queue_bytes,
            false,
        ));
        let bulk = Arc::new(LaneQueue::new(
            limits.queue_capacity,
            limits.queue_bytes,
            true,
        ));
        let task = tokio::spawn(run_outbound(
            shared.clone(),
            id,
            addr.clone(),
            normal.clone(),
            bulk.clone(),
            counters.clone(),
        ));
        let new = Outbound {
            addr: addr.clone(),
            normal,
            bulk,
            counters,
            task,
        };
        if let Some(old) = self.peers.insert(id, new) {
            info!(peer = %id, old = %old.addr, new = %addr, "peer address changed");
            old.close();
        }
    }

    fn remove_peer(&mut self, id: NodeId) {
        let Some(shared) = &self.shared else {
            return;
        };
        shared
            .known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(out) = self.peers.remove(&id) {
            out.close();
        }
        if let Some((_, conn)) = shared.inbound_map().remove(&id) {
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
        let Some(shared) = self.shared.take() else {
            return;
        };
        if let Some(accept) = self.accept_task.take() {
            accept.abort();
            let _ = accept.await;
        }
        for (_, out) in self.peers.drain() {
            out.close();
            let _ = out.task.await;
        }
        for (_, (_, conn)) in shared.inbound_map().drain() {
            conn.abort();
        }
        self.inbound_rx = None;
        self.pending.clear();
        shared
            .endpoint
            .close(VarInt::from_u32(CLOSE_DONE), b"shutting down");
        // Closing connections tell their peers; wait briefly for that, then
        // let go of the endpoint so its driver releases the socket.
        let _ = timeout(Duration::from_secs(2), shared.endpoint.wait_idle()).await;
        drop(shared);
        // The endpoint's driver task drops the UDP socket once it sees the
        // last handle go; wait (bounded) until the port can be bound again,
        // so that a caller may rebind as soon as this returns.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match std::net::UdpSocket::bind(self.local_addr) {
                Ok(_) => break,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Err(e) => {
                    warn!(addr = %self.local_addr, error = %e, "UDP port still in use after shutdown");
                    break;
                }
            }
        }
        info!(node = %self.node_id, addr = %self.local_addr, "quic transport shut down");
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        if let Some(t) = self.accept_task.take() {
            t.abort();
        }
        for out in self.peers.values() {
            out.close();
        }
        if let Some(shared) = &self.shared {
            shared
                .endpoint
                .close(VarInt::from_u32(CLOSE_DONE), b"shutting down");
        }
    }
}

/// A lower bound on the length of `msg`'s frame: its header and the
/// payload bytes it carries verbatim, without encoding it.
fn min_frame_len(msg: &Message) -> usize {
    let payload = match &msg.body {
        Body::AppendEntries { entries, .. } => entries.iter().map(|e| e.data.len()).sum(),
        Body::InstallSnapshot { data, .. } => data.len(),
        _ => 0,
    };
    frame::HEADER_LEN + payload
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------------------
// Outbound.

enum DialError {
    Refused(String),
    Failed(String),
}

async fn run_outbound(
    shared: Arc<Shared>,
    peer: NodeId,
    addr: String,
    normal: Arc<LaneQueue>,
    bulk: Arc<LaneQueue>,
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
        while normal.is_empty() && bulk.is_empty() {
            if normal.is_closed() {
                return;
            }
            tokio::select! {
                _ = normal.changed() => {}
                _ = bulk.changed() => {}
            }
        }
        match timeout(cfg.limits.connect_timeout, dial(&shared, peer, &addr)).await {
            Ok(Ok((conn, send))) => {
                info!(peer = %peer, addr = %addr, direction = "outbound", "connection established");
                backoff.reset();
                let reason = drive_outbound(&shared, &conn, send, &normal, &bulk, &counters).await;
                conn.close(VarInt::from_u32(CLOSE_DONE), b"");
                warn!(peer = %peer, addr = %addr, direction = "outbound", reason = %reason, "connection lost");
            }
            Ok(Err(DialError::Refused(reason))) => {
                // A misconfigured peer is refused on every redial: warn on
                // the first failures and then at doubling intervals.
                if backoff.attempt() == 0 || (backoff.attempt() + 1).is_power_of_two() {
                    warn!(remote = %addr, claimed_id = %peer, reason = %reason, direction = "outbound", attempt = backoff.attempt() + 1, "connection refused");
                } else {
                    debug!(remote = %addr, claimed_id = %peer, reason = %reason, direction = "outbound", attempt = backoff.attempt() + 1, "connection refused");
                }
            }
            Ok(Err(DialError::Failed(reason))) => {
                if backoff.attempt() == 0 {
                    warn!(peer = %peer, addr = %addr, reason = %reason, "cannot connect to peer");
                } else {
                    debug!(peer = %peer, addr = %addr, reason = %reason, "cannot connect to peer");
                }
            }
            Err(_) => {
                let reason = format!("no connection within {:?}", cfg.limits.connect_timeout);
                if backoff.attempt() == 0 {
                    warn!(peer = %peer, addr = %addr, reason = %reason, "cannot connect to peer");
                } else {
                    debug!(peer = %peer, addr = %addr, reason = %reason, "cannot connect to peer");
                }
            }
        }
        let delay = backoff.next_delay();
        if backoff.attempt().is_power_of_two() {
            info!(peer = %peer, addr = %addr, attempt = backoff.attempt(), delay_ms = delay.as_millis() as u64, "redial backoff");
        } else {
            debug!(peer = %peer, addr = %addr, attempt = backoff.attempt(), delay_ms = delay.as_millis() as u64, "redial backoff");
        }
        tokio::time::sleep(delay).await;
    }
}

fn peer_cert(conn: &Connection) -> Option<CertificateDer<'static>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?
        .into_iter()
        .next()
}

async fn dial(
    shared: &Shared,
    peer: NodeId,
    addr: &str,
) -> Result<(Connection, SendStream), DialError> {
    let cfg = &shared.cfg;
    let sock = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| DialError::Failed(format!("cannot resolve {addr}: {e}")))?
        .find(|a| {
            a.is_ipv4()
                == shared
                    .endpoint
                    .local_addr()
                    .map(|l| l.is_ipv4())
                    .unwrap_or(true)
        })
        .ok_or_else(|| {
            DialError::Failed(format!("{addr} has no address of this endpoint's family"))
        })?;
    let connecting = shared
        .endpoint
        .connect(sock, &node_server_name(peer))
        .map_err(|e| DialError::Failed(e.to_string()))?;
    let conn = connecting.await.map_err(|e| match e {
        quinn::ConnectionError::TransportError(_) | quinn::ConnectionError::ConnectionClosed(_) => {
            DialError::Refused(format!("TLS handshake failed: {e}"))
        }
        other => DialError::Failed(other.to_string()),
    })?;
    let cert = peer_cert(&conn)
        .ok_or_else(|| DialError::Refused("peer presented no certificate".into()))?;
    check_node_id(&cert, peer).map_err(DialError::Refused)?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| DialError::Failed(format!("opening stream: {e}")))?;
    send.write_all(&Handshake::new(cfg.cluster_id, cfg.node_id).encode())
        .await
        .map_err(|e| DialError::Failed(format!("writing handshake: {e}")))?;
    let mut theirs = [0u8; Handshake::LEN];
    recv.read_exact(&mut theirs).await.map_err(|e| {
        DialError::Refused(format!(
            "no handshake answer ({e}); the peer refused ours, see its log"
        ))
    })?;
    let hs = Handshake::decode(&theirs).map_err(|e| DialError::Refused(e.to_string()))?;
    hs.check(cfg.cluster_id).map_err(DialError::Refused)?;
    if hs.node_id != peer {
        return Err(DialError::Refused(format!(
            "dialed node {peer} but node {} answered",
            hs.node_id
        )));
    }
    Ok((conn, send))
}

/// Writes `data` fully, giving up if the peer accepts nothing for `idle`.
async fn write_all_within(
    s: &mut SendStream,
    mut data: &[u8],
    idle: Duration,
) -> Result<(), String> {
    while !data.is_empty() {
        match timeout(idle, s.write(data)).await {
            Err(_) => return Err(format!("peer accepted no data for {idle:?}")),
            Ok(Err(e)) => return Err(format!("write failed: {e}")),
            Ok(Ok(n)) => data = &data[n..],
        }
    }
    Ok(())
}

/// Writes `chunk` fully without copying it (quinn keeps the buffer until
/// it is acknowledged), giving up if the peer accepts nothing for `idle`.
async fn write_chunk_within(
    s: &mut SendStream,
    chunk: Bytes,
    idle: Duration,
) -> Result<(), String> {
    let mut chunks = [chunk];
    while !chunks[0].is_empty() {
        match timeout(idle, s.write_chunks(&mut chunks)).await {
            Err(_) => return Err(format!("peer accepted no data for {idle:?}")),
            Ok(Err(e)) => return Err(format!("write failed: {e}")),
            Ok(Ok(_)) => {}
        }
    }
    Ok(())
}

/// Writes one lane's frames to `stream` until the connection fails.
async fn drive_lane(
    stream: &mut SendStream,
    queue: &LaneQueue,
    counters: &PeerCounters,
    idle: Duration,
) -> String {
    let mut frames = Vec::new();
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    loop {
        frames.clear();
        if !queue.take(&mut frames) {
            return "peer removed".into();
        }
        if frames.is_empty() {
            queue.changed().await;
            continue;
        }
        let mut written = 0;
        let mut in_batch = 0;
        batch.clear();
        let mut result = Ok(());
        for f in frames.iter_mut() {
            if f.len() >= BATCH_BYTES {
                if !batch.is_empty() {
                    result = write_all_within(stream, &batch, idle).await;
                    if result.is_err() {
                        break;
                    }
                    written += in_batch;
                    in_batch = 0;
                    batch.clear();
                }
                // Large frames are handed over as they are: copying a
                // megabyte into the stream's buffer costs as much as
                // encrypting it.
                result = write_chunk_within(stream, Bytes::from(std::mem::take(f)), idle).await;
                if result.is_err() {
                    break;
                }
                written += 1;
            } else {
                batch.extend_from_slice(f);
                in_batch += 1;
                if batch.len() >= BATCH_BYTES {
                    result = write_all_within(stream, &batch, idle).await;
                    if result.is_err() {
                        break;
                    }
                    written += in_batch;
                    in_batch = 0;
                    batch.clear();
                }
            }
        }
        if result.is_ok() && !batch.is_empty() {
            result = write_all_within(stream, &batch, idle).await;
            if result.is_ok() {
                written += in_batch;
            }
        }
        counters.add_sent(written);
        if let Err(e) = result {
            counters.add_dropped(frames.len() - written);
            return e;
        }
        if batch.capacity() > 4 * BATCH_BYTES {
            batch = Vec::with_capacity(BATCH_BYTES);
        }
    }
}

async fn drive_outbound(
    shared: &Shared,
    conn: &Connection,
    mut send: SendStream,
    normal: &LaneQueue,
    bulk: &LaneQueue,
    counters: &PeerCounters,
) -> String {
    let idle = shared.cfg.limits.idle_timeout;
    let replication = drive_lane(&mut send, normal, counters, idle);
    let snapshots = async {
        // The bulk stream is opened when the first chunk is queued, and
        // carries one chunk per round so a chunk in flight never holds up
        // the replication lane, which has its own stream.
        while bulk.is_empty() {
            if bulk.is_closed() {
                return "peer removed".to_string();
            }
            bulk.changed().await;
        }
        let mut stream = match conn.open_uni().await {
            Ok(s) => s,
            Err(e) => return format!("opening bulk stream: {e}"),
        };
        drive_lane(&mut stream, bulk, counters, idle).await
    };
    tokio::select! {
        r = replication => r,
        r = snapshots => r,
        e = conn.closed() => e.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Inbound.

async fn accept_loop(shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            incoming = shared.endpoint.accept() => match incoming {
                Some(incoming) if conns.len() >= MAX_INBOUND => {
                    refuse(incoming.remote_address(), None, &format!("{MAX_INBOUND} inbound connections are already open"));
                    incoming.refuse();
                }
                Some(incoming) => {
                    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(serve_incoming(shared.clone(), incoming, id));
                }
                None => return,
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

async fn accept_handshake(
    shared: &Shared,
    conn: &Connection,
) -> Result<(NodeId, RecvStream), (Option<NodeId>, String)> {
    let cfg = &shared.cfg;
    let cert = peer_cert(conn).ok_or((None, "peer presented no certificate".to_string()))?;
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| (None, format!("no handshake stream: {e}")))?;
    let mut theirs = [0u8; Handshake::LEN];
    recv.read_exact(&mut theirs).await.map_err(|e| {
        let reason = match e {
            quinn::ReadExactError::FinishedEarly(n) => {
                format!("stream ended after {n} bytes, before a complete handshake")
            }
            quinn::ReadExactError::ReadError(e) => format!("reading handshake: {e}"),
        };
        (None, reason)
    })?;
    let hs = Handshake::decode(&theirs).map_err(|e| (None, e.to_string()))?;
    let id = hs.node_id;
    hs.check(cfg.cluster_id).map_err(|r| (Some(id), r))?;
    if !shared.is_known(id) {
        return Err((Some(id), format!("node id {id} is not a known peer")));
    }
    check_node_id(&cert, id).map_err(|r| (Some(id), r))?;
    send.write_all(&Handshake::new(cfg.cluster_id, cfg.node_id).encode())
        .await
        .map_err(|e| (Some(id), format!("writing handshake: {e}")))?;
    // The answer is all this stream carries towards the dialer.
    let _ = send.finish();
    Ok((id, recv))
}

async fn serve_incoming(shared: Arc<Shared>, incoming: quinn::Incoming, conn_id: u64) {
    let cfg = &shared.cfg;
    let remote = incoming.remote_address();
    let conn = match timeout(cfg.limits.handshake_timeout, incoming).await {
        Err(_) => {
            return refuse(
                remote,
                None,
                "no TLS handshake within the handshake timeout",
            )
        }
        Ok(Err(e)) => return refuse(remote, None, &format!("TLS handshake failed: {e}")),
        Ok(Ok(c)) => c,
    };
    let (peer, recv) = match timeout(
        cfg.limits.handshake_timeout,
        accept_handshake(&shared, &conn),
    )
    .await
    {
        Err(_) => {
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"no handshake");
            return refuse(remote, None, "no handshake within the handshake timeout");
        }
        Ok(Err((claimed, reason))) => {
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"handshake refused");
            return refuse(remote, claimed, &reason);
        }
        Ok(Ok(x)) => x,
    };
    info!(peer = %peer, addr = %remote, direction = "inbound", "connection established");

    let me = tokio::spawn(read_connection(
        shared.clone(),
        conn.clone(),
        recv,
        peer,
        remote,
    ));
    let _guard = AbortOnDrop(me.abort_handle());
    let previous = shared
        .inbound_map()
        .insert(peer, (conn_id, me.abort_handle()));
    if let Some((_, old)) = previous {
        old.abort();
    }
    let reason = match me.await {
        Ok(reason) => reason,
        Err(e) if e.is_cancelled() => {
            "closed by this node (peer removed, reconnected or shut down)".to_string()
        }
        Err(e) => format!("reader failed: {e}"),
    };
    conn.close(VarInt::from_u32(CLOSE_DONE), b"");
    {
        let mut map = shared.inbound_map();
        if map.get(&peer).is_some_and(|(c, _)| *c == conn_id) {
            map.remove(&peer);
        }
    }
    warn!(peer = %peer, addr = %remote, direction = "inbound", reason = %reason, "connection lost");
}

async fn read_connection(
    shared: Arc<Shared>,
    conn: Connection,
    recv: RecvStream,
    peer: NodeId,
    remote: SocketAddr,
) -> String {
    let replication = read_lane(&shared, &conn, recv, peer, remote);
    let snapshots = async {
        // Bulk streams are read one at a time, in the order they open.
        loop {
            match conn.accept_uni().await {
                Ok(s) => {
                    let reason = read_lane(&shared, &conn, s, peer, remote).await;
                    if reason != STREAM_DONE {
                        return reason;
                    }
                }
                Err(e) => return e.to_string(),
            }
        }
    };
    let reason = tokio::select! {
        r = replication => r,
        r = snapshots => r,
    };
    if reason == STREAM_DONE {
        "peer finished its stream".to_string()
    } else {
        reason
    }
}

const STREAM_DONE: &str = "stream finished";

/// Reads frames from one stream; returns [`STREAM_DONE`] when the peer
/// finished it cleanly, or why the connection must close (after closing it).
async fn read_lane(
    shared: &Shared,
    conn: &Connection,
    mut recv: RecvStream,
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
    let mut buf = BytesMut::new();
    let violation = |reason: String| {
        refuse(remote, Some(peer), &reason);
        conn.close(VarInt::from_u32(CLOSE_PROTOCOL), b"protocol violation");
        reason
    };
    loop {
        let mut msgs = Vec::new();
        let drained = match frame::decode_batch(&buf, max, peer, me, &mut msgs) {
            Ok(d) => d,
            Err(e) => return violation(e.to_string()),
        };
        buf.advance(drained.consumed);
        let room = drained.needed.saturating_sub(buf.len());
        let bytes = drained.message_bytes;
        if !msgs.is_empty() {
            let want = u32::try_from(bytes.clamp(1, total_budget)).unwrap_or(u32::MAX);
            let Ok(permit) = shared.budget.clone().acquire_many_owned(want).await else {
                return "transport shut down".into();
            };
            if shared
                .inbound_tx
                .send(Batch {
                    from: peer,
                    msgs,
                    _budget: permit,
                })
                .is_err()
            {
                return "transport shut down".into();
            }
        }
        if buf.is_empty() && buf.capacity() > 4 * BATCH_BYTES {
            buf = BytesMut::new();
        }
        // A large frame's whole length is known from its header (and is
        // within the frame limit, or decoding refused it): make room once
        // rather than regrowing, and copying, the buffer as chunks arrive.
        buf.reserve(room);
        // Read no further than the frame being assembled needs (at least a
        // window's worth), so the buffer stays within the frame limit.
        match recv.read_chunk(room.max(BATCH_BYTES), true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return match frame::check_end_of_stream(&buf) {
                    Ok(()) => STREAM_DONE.to_string(),
                    Err(e) => violation(e.to_string()),
                };
            }
            Err(e) => return format!("read failed: {e}"),
        }
    }
}
