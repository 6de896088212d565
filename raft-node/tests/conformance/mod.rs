//! The transport conformance suite, written once and run against every
//! transport (raft-transport-mem, -tcp plain and TLS, -quic).
//!
//! A test file implements [`Harness`] (how to start a node's transport) and,
//! for transports with a wire, [`WireHarness`] (how to open a raw connection
//! to a node and write arbitrary bytes), then instantiates the cases with
//! [`conformance_tests!`], [`wire_conformance_tests!`] and
//! [`tls_conformance_tests!`].
//!
//! Real sockets mean real time: every wait is bounded by a generous timeout
//! so a hang fails instead of blocking, and nothing asserts on speed. Tests
//! run on tokio's current-thread runtime so that a per-test tracing
//! subscriber sees every event of the transports under test, which lets the
//! hostile-peer cases assert that each refusal was logged with its reason.

#![allow(dead_code, async_fn_in_trait)]

use bytes::Bytes;
use raft_core::codec::Handshake;
use raft_core::{Body, Entry, EntryKind, Message, NodeId, SendError, SnapshotMeta, Transport};
use std::future::Future;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio::time::timeout;

/// The cluster id every harness configures.
pub const CLUSTER: u64 = 0xC0FFEE;
/// Bound on any single wait in the suite.
pub const T: Duration = Duration::from_secs(30);

/// How a test wants its nodes built.
#[derive(Clone, Copy, Debug, Default)]
pub struct Opts {
    /// Small queues and inbound buffers (a few dozen messages, about 1 MiB),
    /// so that backpressure is reached quickly.
    pub small_buffers: bool,
}

/// Builds transports for one test.
pub trait Harness: Sized {
    /// The transport under test.
    type T: Transport;
    /// A harness for one test; every node it starts belongs to cluster
    /// [`CLUSTER`] and redials quickly (backoff capped well under a second).
    async fn create(opts: Opts) -> Self;
    /// Starts node `id`, bound to `at` if given (a restart on the same
    /// address) or to a fresh address; returns it and the address its
    /// peers use. The node knows no peers yet.
    async fn start(&self, id: NodeId, at: Option<&str>) -> (Self::T, String);
    /// Whether `addr` (as returned by `start`) can be bound again.
    async fn port_free(&self, addr: &str) -> bool;
}

/// The credentials a raw connection presents (ignored without TLS).
#[derive(Clone, Copy, Debug)]
pub enum Cred {
    /// A certificate for this node id, issued by the cluster CA.
    Trusted(NodeId),
    /// A certificate for this node id, issued by a CA the cluster does not
    /// trust.
    Untrusted(NodeId),
}

/// One raw connection to a node, speaking bytes rather than messages.
pub trait RawConn {
    /// Writes bytes on the connection (the data stream, for QUIC).
    async fn write(&mut self, b: &[u8]) -> io::Result<()>;
    /// Ends this side's data stream.
    async fn finish(&mut self) -> io::Result<()>;
    /// Reads exactly `n` bytes.
    async fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>>;
    /// Waits until the node closes the connection.
    async fn closed(&mut self);
}

/// Raw access to a transport's wire, for the hostile-peer cases.
pub trait WireHarness: Harness {
    /// A raw connection.
    type Raw: RawConn;
    /// Whether nodes use TLS.
    fn tls(&self) -> bool;
    /// Opens a raw connection to node `target` at `addr`, presenting `cred`.
    async fn raw(&self, addr: &str, target: NodeId, cred: Cred) -> io::Result<Self::Raw>;
}

// ---------------------------------------------------------------------------
// Helpers.

/// Captures the tracing events of the current thread (and so of every task
/// on a current-thread runtime) for the lifetime of the value.
pub struct Logs {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        io::stderr().write_all(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn capture() -> Logs {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(w.clone()))
            .finish();
        Logs {
            buf,
            _guard: tracing::subscriber::set_default(sub),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Waits (bounded) for a log line containing every one of `needles`.
    pub async fn wait_for(&self, needles: &[&str]) -> String {
        let found = timeout(T, async {
            loop {
                if let Some(line) = self
                    .text()
                    .lines()
                    .find(|l| needles.iter().all(|n| l.contains(n)))
                {
                    return line.to_string();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        match found {
            Ok(line) => line,
            Err(_) => panic!(
                "no log line contains all of {needles:?}; log:\n{}",
                self.text()
            ),
        }
    }
}

pub fn hb(from: u64, to: u64, ctx: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: 1,
        body: Body::Heartbeat {
            leader_commit: 0,
            ctx,
        },
    }
}

fn ctx_of(m: &Message) -> u64 {
    match m.body {
        Body::Heartbeat { ctx, .. } => ctx,
        ref other => panic!("expected a heartbeat, got {}", other.name()),
    }
}

pub fn big_append(from: u64, to: u64, len: usize, seed: u8) -> Message {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: 2,
        body: Body::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry {
                term: 2,
                index: 1,
                kind: EntryKind::Normal,
                data: Bytes::from(data),
            }],
            leader_commit: 0,
        },
    }
}

pub fn chunk(from: u64, to: u64, offset: u64, len: usize) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: 2,
        body: Body::InstallSnapshot {
            meta: SnapshotMeta::default(),
            offset,
            total: u64::MAX,
            data: Bytes::from(vec![offset as u8; len]),
        },
    }
}

/// Sends `msg`, waiting while the peer's queue is full (a full queue drops
/// the message, so it is offered again). Returns how many offers were
/// refused as full.
pub async fn send_paced<X: Transport>(t: &X, msg: Message) -> u64 {
    let mut refused = 0;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match t.send(msg.clone()) {
            Ok(()) => return refused,
            Err(SendError::QueueFull(_)) => {
                refused += 1;
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "queue stayed full for {T:?}"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => panic!("send of {} failed: {e}", msg.body.name()),
        }
    }
}

pub async fn recv_one<X: Transport>(t: &mut X) -> (NodeId, Message) {
    timeout(T, t.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing received within {T:?}"))
        .expect("transport closed while receiving")
}

/// Sends heartbeats `ctxs` from `a` (node `from`) to `to`, paced, while
/// `b` receives them; checks they all arrive, from `from`, in order.
/// Returns the number of full-queue refusals.
pub async fn deliver<X: Transport>(a: &X, from: u64, b: &mut X, to: u64, ctxs: Range<u64>) -> u64 {
    let n = ctxs.end - ctxs.start;
    let start = ctxs.start;
    let sender = async {
        let mut refused = 0;
        for i in ctxs {
            refused += send_paced(a, hb(from, to, i)).await;
        }
        refused
    };
    let receiver = async {
        for k in 0..n {
            let (src, m) = recv_one(b).await;
            assert_eq!(src, NodeId(from));
            assert_eq!(m.from, NodeId(from));
            assert_eq!(ctx_of(&m), start + k, "message lost or out of order");
        }
    };
    let (refused, ()) = tokio::join!(sender, receiver);
    refused
}

/// Starts nodes 1 and 2 and introduces them to each other.
pub async fn pair<H: Harness>(h: &H) -> (H::T, String, H::T, String) {
    let (mut a, aa) = h.start(NodeId(1), None).await;
    let (mut b, ba) = h.start(NodeId(2), None).await;
    a.add_peer(NodeId(2), ba.clone());
    b.add_peer(NodeId(1), aa.clone());
    (a, aa, b, ba)
}

/// Waits (bounded) until `t` reports `sent` messages to `peer`.
pub async fn wait_sent<X: Transport>(t: &X, peer: NodeId, sent: u64) {
    let r = timeout(T, async {
        while t.stats(peer).sent < sent {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "stats({peer:?}).sent stayed at {:?}, expected {sent}",
        t.stats(peer)
    );
}

// ---------------------------------------------------------------------------
// Cases for every transport.

pub async fn in_order_delivery<H: Harness>() {
    let _logs = Logs::capture();
    let h = H::create(Opts::default()).await;
    let (mut a, _, mut b, _) = pair(&h).await;
    deliver(&a, 1, &mut b, 2, 0..1000).await;
    // And the other way, which is another connection.
    deliver(&b, 2, &mut a, 1, 0..1000).await;
    assert_eq!(b.send(hb(2, 9, 0)), Err(SendError::UnknownPeer(NodeId(9))));
    a.shutdown().await;
    b.shutdown().await;
}

/// `recv` abandoned mid-wait, over and over, loses nothing.
pub async fn recv_is_cancel_safe<H: Harness>() {
    let _logs = Logs::capture();
    let h = H::create(Opts::default()).await;
    let (mut a, _, mut b, _) = pair(&h).await;
    let n = 2000u64;
    let sender = async {
        for i in 0..n {
            send_paced(&a, hb(1, 2, i)).await;
            // Let the receiver catch up and find its inbox empty.
            tokio::task::yield_now().await;
        }
    };
    let receiver = async {
        let mut next = 0;
        let mut cancelled = 0u64;
        timeout(T, async {
            while next < n {
                // Poll `recv` once and drop it if it has to wait: nearly
                // every wait ends in a cancellation.
                let polled = {
                    let mut fut = Box::pin(b.recv());
                    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
                };
                match polled {
                    Poll::Pending => {
                        cancelled += 1;
                        tokio::task::yield_now().await;
                    }
                    Poll::Ready(Some((_, m))) => {
                        assert_eq!(ctx_of(&m), next, "message lost or reordered");
                        next += 1;
                    }
                    Poll::Ready(None) => panic!("transport closed"),
                }
            }
        })
        .await
        .expect("not every message arrived");
        cancelled
    };
    let ((), cancelled) = tokio::join!(sender, receiver);
    assert!(
        cancelled > 0,
        "no recv was ever cancelled; the case tested nothing"
    );
    a.shutdown().await;
    b.shutdown().await;
}

pub async fn ten_thousand_without_loss<H: Harness>() {
    let _logs = Logs::capture();
    let h = H::create(Opts::default()).await;
    let (mut a, _, mut b, _) = pair(&h).await;
    let refused = deliver(&a, 1, &mut b, 2, 0..10_000).await;
    wait_sent(&a, NodeId(2), 10_000).await;
    let stats = a.stats(NodeId(2));
    assert_eq!(stats.sent, 10_000, "{stats:?}");
    assert_eq!(
        stats.dropped, refused,
        "only the refused offers count as dropped: {stats:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

pub async fn eight_mib_messages<H: Harness>() {
    let _logs = Logs::capture();
    let h = H::create(Opts::default()).await;
    let (mut a, _, mut b, _) = pair(&h).await;
    let big = big_append(1, 2, 8 << 20, 7);
    send_paced(&a, big.clone()).await;
    let (from, got) = recv_one(&mut b).await;
    assert_eq!(from, NodeId(1));
    assert!(got == big, "8 MiB append arrived altered");
    // A snapshot chunk of the same size on the bulk lane, and the reply.
    let snap = chunk(1, 2, 0, 8 << 20);
    send_paced(&a, snap.clone()).await;
    let (_, got) = recv_one(&mut b).await;
    assert!(got == snap, "8 MiB snapshot chunk arrived altered");
    let back = big_append(2, 1, 8 << 20, 9);
    send_paced(&b, back.clone()).await;
    assert!(recv_one(&mut a).await.1 == back);
    a.shutdown().await;
    b.shutdown().await;
}

/// Snapshot chunks and replication traffic interleaved: everything
/// arrives, and each lane keeps its own order.
pub async fn bulk_and_replication_lanes<H: Harness>() {
    let _logs = Logs::capture();
    let h = H::create(Opts::default()).await;
    let (mut a, _, mut b, _) = pair(&h).await;
    let sender = async {
        for i in 0..200u64 {
            if i % 4 == 0 {
                send_paced(&a, chunk(1, 2, i, 256 * 1024)).await;
            }
            send_paced(&a, hb(1, 2, i)).await;
        }
    };
    let receiver = async {
        let (mut hbs, mut chunks) = (Vec::new(), Vec::new());
        while hbs.len() < 200 || chunks.len() < 50 {
            let (_, m) = recv_one(&mut b).await;
            match m.body {
                Body::Heartbeat { ctx, .. } => hbs.push(ctx),
                Body::InstallSnapshot {
                    offset, ref data, ..
                } => {
                    assert_eq!(data.len(), 256 * 1024);
                    assert!(data.iter().all(|&x| x == offset as u8));
                    chunks.push(offset);
                }
                ref other => panic!("unexpected {}", other.name()),
            }
        }
        assert_eq!(hbs, (0..200).collect::<Vec<_>>());
        assert_eq!(chunks, (0..200).step_by(4).collect::<Vec<_>>());
    };
    tokio::join!(sender, receiver);
    a.shutdown().await;
    b.shutdown().await;
}

/// The receiver shuts down and comes back on the same address; the sender,
/// untouched, resumes delivering to it.
pub async fn receiver_restart<H: Harness>() {
    let _logs = Logs::capture();
    let h = H::create(Opts::default()).await;
    let (a, aa, mut b, ba) = pair(&h).await;
    deliver(&a, 1, &mut b, 2, 0..100).await;
    b.shutdown().await;
    assert!(timeout(T, b.recv())
        .await
        .expect("recv after shutdown must not hang")
        .is_none());
    drop(b);

    let (mut b, ba2) = h.start(NodeId(2), Some(&ba)).await;
    assert_eq!(ba2, ba);
    b.add_peer(NodeId(1), aa);
    // Messages sent while the sender has not yet noticed the restart may be
    // lost; keep sending until one arrives.
    let first = timeout(T, async {
        let mut i = 1000u64;
        loop {
            let _ = a.send(hb(1, 2, i));
            i += 1;
            if let Ok(Some((_, m))) = timeout(Duration::from_millis(20), b.recv()).await {
                return ctx_of(&m);
            }
        }
    })
    .await
    .expect("traffic did not resume after the receiver restarted");
    assert!(first >= 1000);
    // Drain whatever else was in flight, then check ordered delivery again.
    while let Ok(Some(_)) = timeout(Duration::from_millis(300), b.recv()).await {}
    deliver(&a, 1, &mut b, 2, 1_000_000..1_000_500).await;
    let mut a = a;
    a.shutdown().await;
    b.shutdown().await;
}

/// A peer that never reads fills its own queue, and delivery to a healthy
/// peer completes regardless.
pub async fn slow_peer_does_not_block_others<H: Harness>() {
    let _logs = Logs::capture();
    let h = H::create(Opts {
        small_buffers: true,
    })
    .await;
    let (mut a, aa) = h.start(NodeId(1), None).await;
    let (mut b, ba) = h.start(NodeId(2), None).await;
    let (mut c, ca) = h.start(NodeId(3), None).await;
    a.add_peer(NodeId(2), ba);
    a.add_peer(NodeId(3), ca);
    b.add_peer(NodeId(1), aa.clone());
    c.add_peer(NodeId(1), aa);
    let big = big_append(1, 3, 256 * 1024, 1);
    let n = 2000u64;
    let sender = async {
        for i in 0..n {
            // Node 3 never calls recv; its queue fills and sends to it drop.
            let _ = a.send(big.clone());
            send_paced(&a, hb(1, 2, i)).await;
        }
    };
    let receiver = async {
        for k in 0..n {
            let (_, m) = recv_one(&mut b).await;
            assert_eq!(ctx_of(&m), k);
        }
    };
    tokio::join!(sender, receiver);
    let stuck = a.stats(NodeId(3));
    assert!(
        stuck.dropped > 0,
        "node 3 never reads, yet nothing to it was dropped: {stuck:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

/// After shutdown the address can be bound again, by the OS and by a new
/// transport.
pub async fn shutdown_releases_ports<H: Harness>() {
    let _logs = Logs::capture();
    let h = H::create(Opts::default()).await;
    let (mut a, aa, mut b, _) = pair(&h).await;
    deliver(&a, 1, &mut b, 2, 0..10).await;
    a.shutdown().await;
    assert!(
        h.port_free(&aa).await,
        "port {aa} still bound after shutdown"
    );
    assert_eq!(a.send(hb(1, 2, 0)), Err(SendError::Shutdown));
    let (mut again, addr) = h.start(NodeId(1), Some(&aa)).await;
    assert_eq!(addr, aa);
    again.shutdown().await;
    b.shutdown().await;
}

// ---------------------------------------------------------------------------
// Hostile peers (transports with a wire).

/// What a hostile connection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// Bytes that are not a handshake.
    GarbageBeforeHandshake,
    /// A valid handshake, then a frame whose body is not a message.
    GarbageFrame,
    /// A valid handshake, then half a frame and the end of the stream.
    TruncatedFrame,
    /// A valid handshake, then a length prefix over the limit.
    OversizedLength,
    /// A handshake naming another cluster.
    WrongCluster,
    /// A handshake from a node id that is not a peer.
    UnknownNode,
    /// A certificate from a CA the cluster does not trust.
    UntrustedCert,
    /// A trusted certificate for node 3 with a handshake claiming node 1.
    CertIdMismatch,
}

pub async fn hostile<H: WireHarness>(case: Hostile) {
    let logs = Logs::capture();
    let h = H::create(Opts::default()).await;
    let (a, _, mut b, ba) = pair(&h).await;
    // Node 3 is a known peer of node 2 that is never dialed.
    b.add_peer(NodeId(3), "127.0.0.1:9".into());
    deliver(&a, 1, &mut b, 2, 0..50).await;

    let (cred, claimed, cluster, needle) = match case {
        Hostile::GarbageBeforeHandshake => {
            (Cred::Trusted(NodeId(3)), 3, CLUSTER, "not a raft handshake")
        }
        Hostile::GarbageFrame => (Cred::Trusted(NodeId(3)), 3, CLUSTER, "undecodable frame"),
        Hostile::TruncatedFrame => (Cred::Trusted(NodeId(3)), 3, CLUSTER, "ended inside a frame"),
        Hostile::OversizedLength => (Cred::Trusted(NodeId(3)), 3, CLUSTER, "exceeds the limit"),
        Hostile::WrongCluster => (Cred::Trusted(NodeId(3)), 3, CLUSTER + 1, "cluster id"),
        Hostile::UnknownNode => (Cred::Trusted(NodeId(99)), 99, CLUSTER, "not a known peer"),
        Hostile::UntrustedCert => (Cred::Untrusted(NodeId(3)), 3, CLUSTER, "certificate"),
        Hostile::CertIdMismatch => (Cred::Trusted(NodeId(3)), 1, CLUSTER, "not bound to node id"),
    };
    let handshake = Handshake::new(cluster, NodeId(claimed)).encode();
    match h.raw(&ba, NodeId(2), cred).await {
        Err(e) => {
            // Only a TLS refusal may stop the raw client from connecting.
            assert_eq!(case, Hostile::UntrustedCert, "raw connection failed: {e}");
        }
        Ok(mut raw) => {
            if case == Hostile::GarbageBeforeHandshake {
                let _ = raw.write(b"GET / HTTP/1.1\r\nHost: node-2\r\n\r\n").await;
            } else {
                let _ = raw.write(&handshake).await;
            }
            if matches!(
                case,
                Hostile::GarbageFrame | Hostile::TruncatedFrame | Hostile::OversizedLength
            ) {
                let reply = raw
                    .read_exact(Handshake::LEN)
                    .await
                    .expect("the node answers a valid handshake");
                let reply = Handshake::decode(&reply).expect("the answer is a handshake");
                assert_eq!(reply.node_id, NodeId(2));
                assert_eq!(reply.cluster_id, CLUSTER);
                match case {
                    Hostile::GarbageFrame => raw
                        .write(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
                        .await
                        .unwrap(),
                    Hostile::TruncatedFrame => {
                        let mut b = 100u32.to_be_bytes().to_vec();
                        b.extend_from_slice(&[1; 10]);
                        raw.write(&b).await.unwrap();
                        raw.finish().await.unwrap();
                    }
                    // No body follows: the prefix alone must be refused.
                    _ => raw.write(&u32::MAX.to_be_bytes()).await.unwrap(),
                }
            }
            timeout(T, raw.closed())
                .await
                .unwrap_or_else(|_| panic!("{case:?}: the node kept the connection open"));
        }
    }
    let line = logs.wait_for(&["connection refused", needle]).await;
    assert!(
        line.contains("remote="),
        "the refusal names the remote address: {line}"
    );
    if !matches!(
        case,
        Hostile::GarbageBeforeHandshake | Hostile::UntrustedCert
    ) {
        assert!(
            line.contains(&format!("claimed_id={claimed}")),
            "the refusal names the claimed id: {line}"
        );
    }
    // The node kept serving its healthy peer, on the same connection.
    deliver(&a, 1, &mut b, 2, 50..100).await;
    assert_eq!(a.stats(NodeId(2)).dropped, 0);
    let mut a = a;
    a.shutdown().await;
    b.shutdown().await;
}

/// Instantiates the cases every transport must pass, for harness type `$h`.
#[macro_export]
macro_rules! conformance_tests {
    ($h:ty) => {
        #[tokio::test]
        async fn in_order_delivery() {
            conformance::in_order_delivery::<$h>().await
        }
        #[tokio::test]
        async fn recv_is_cancel_safe() {
            conformance::recv_is_cancel_safe::<$h>().await
        }
        #[tokio::test]
        async fn ten_thousand_without_loss() {
            conformance::ten_thousand_without_loss::<$h>().await
        }
        #[tokio::test]
        async fn eight_mib_messages() {
            conformance::eight_mib_messages::<$h>().await
        }
        #[tokio::test]
        async fn bulk_and_replication_lanes() {
            conformance::bulk_and_replication_lanes::<$h>().await
        }
        #[tokio::test]
        async fn receiver_restart() {
            conformance::receiver_restart::<$h>().await
        }
        #[tokio::test]
        async fn slow_peer_does_not_block_others() {
            conformance::slow_peer_does_not_block_others::<$h>().await
        }
        #[tokio::test]
        async fn shutdown_releases_ports() {
            conformance::shutdown_releases_ports::<$h>().await
        }
    };
}

/// Instantiates the hostile-peer cases for a transport with a wire.
#[macro_export]
macro_rules! wire_conformance_tests {
    ($h:ty) => {
        #[tokio::test]
        async fn refuses_garbage_before_handshake() {
            conformance::hostile::<$h>(conformance::Hostile::GarbageBeforeHandshake).await
        }
        #[tokio::test]
        async fn refuses_garbage_frame() {
            conformance::hostile::<$h>(conformance::Hostile::GarbageFrame).await
        }
        #[tokio::test]
        async fn refuses_truncated_frame() {
            conformance::hostile::<$h>(conformance::Hostile::TruncatedFrame).await
        }
        #[tokio::test]
        async fn refuses_oversized_length_prefix() {
            conformance::hostile::<$h>(conformance::Hostile::OversizedLength).await
        }
        #[tokio::test]
        async fn refuses_wrong_cluster() {
            conformance::hostile::<$h>(conformance::Hostile::WrongCluster).await
        }
        #[tokio::test]
        async fn refuses_unknown_node() {
            conformance::hostile::<$h>(conformance::Hostile::UnknownNode).await
        }
    };
}

/// Instantiates the certificate cases for a transport with TLS.
#[macro_export]
macro_rules! tls_conformance_tests {
    ($h:ty) => {
        #[tokio::test]
        async fn refuses_untrusted_certificate() {
            conformance::hostile::<$h>(conformance::Hostile::UntrustedCert).await
        }
        #[tokio::test]
        async fn refuses_certificate_of_another_node() {
            conformance::hostile::<$h>(conformance::Hostile::CertIdMismatch).await
        }
    };
}
