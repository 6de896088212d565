//! Dead-connection detection and configuration errors of the TCP transport,
//! driven from raw sockets. Real sockets mean real time: the idle bound is
//! set short and every wait has a generous limit; nothing asserts on speed.

#![allow(clippy::unwrap_used)]

use raft_core::codec::Handshake;
use raft_core::{Body, Message, NodeId, Transport};
use raft_transport_tcp::{TcpConfig, TcpError, TcpTransport};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const CLUSTER: u64 = 42;
const LIMIT: Duration = Duration::from_secs(20);

fn quick(id: u64) -> TcpConfig {
    let mut cfg = TcpConfig::new(NodeId(id), CLUSTER, "127.0.0.1:0".parse().unwrap());
    cfg.limits.keepalive_interval = Duration::from_millis(100);
    cfg.limits.idle_timeout = Duration::from_millis(600);
    cfg.limits.backoff_initial = Duration::from_millis(10);
    cfg.limits.backoff_max = Duration::from_millis(100);
    cfg
}

fn hb(ctx: u64) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: 1,
        body: Body::Heartbeat {
            leader_commit: 0,
            ctx,
        },
    }
}

/// Accepts a connection and completes the handshake as node 2.
async fn accept_and_handshake(listener: &TcpListener) -> TcpStream {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut theirs = [0u8; Handshake::LEN];
    s.read_exact(&mut theirs).await.unwrap();
    assert_eq!(Handshake::decode(&theirs).unwrap().node_id, NodeId(1));
    s.write_all(&Handshake::new(CLUSTER, NodeId(2)).encode())
        .await
        .unwrap();
    s
}

/// Reads until the other side hangs up; returns every byte received.
async fn read_to_hangup(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&b[..n]),
        }
    }
}

#[tokio::test]
async fn a_silent_inbound_connection_gets_keepalives_then_is_dropped() {
    let mut t = TcpTransport::bind(quick(2)).await.unwrap();
    t.add_peer(NodeId(1), "127.0.0.1:9".into());
    let mut s = TcpStream::connect(t.local_addr()).await.unwrap();
    s.write_all(&Handshake::new(CLUSTER, NodeId(1)).encode())
        .await
        .unwrap();
    let mut reply = [0u8; Handshake::LEN];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(Handshake::decode(&reply).unwrap().node_id, NodeId(2));
    // Say nothing more: the node must give up on us.
    let got = timeout(LIMIT, read_to_hangup(&mut s))
        .await
        .expect("the node kept a silent connection open");
    assert!(!got.is_empty(), "no keepalive arrived before the hang-up");
    assert!(
        got.len() % 4 == 0 && got.iter().all(|&b| b == 0),
        "only keepalive frames: {got:?}"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn the_dialer_drops_a_peer_that_stops_answering_and_redials() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut t = TcpTransport::bind(quick(1)).await.unwrap();
    t.add_peer(NodeId(2), listener.local_addr().unwrap().to_string());

    // Keep offering messages: the transport dials lazily, and redials only
    // when it has something to send.
    let mut n = 0u64;
    let mut first = timeout(LIMIT, async {
        loop {
            tokio::select! {
                s = accept_and_handshake(&listener) => return s,
                _ = tokio::time::sleep(Duration::from_millis(20)) => { let _ = t.send(hb(n)); n += 1; }
            }
        }
    })
    .await
    .expect("no connection");
    // This peer reads but never writes a keepalive: the dialer must hang up.
    timeout(LIMIT, read_to_hangup(&mut first))
        .await
        .expect("the dialer kept a silent peer's connection");
    timeout(LIMIT, async {
        loop {
            tokio::select! {
                _ = accept_and_handshake(&listener) => return,
                _ = tokio::time::sleep(Duration::from_millis(20)) => { let _ = t.send(hb(n)); n += 1; }
            }
        }
    })
    .await
    .expect("the dialer did not redial");
    t.shutdown().await;
}

#[tokio::test]
async fn bind_and_configuration_errors_are_reported() {
    let t = TcpTransport::bind(quick(1)).await.unwrap();
    let mut taken = quick(2);
    taken.listen_addr = t.local_addr();
    assert!(matches!(
        TcpTransport::bind(taken).await,
        Err(TcpError::Bind { .. })
    ));
    let mut bad = quick(3);
    bad.limits.idle_timeout = bad.limits.keepalive_interval;
    assert!(matches!(
        TcpTransport::bind(bad).await,
        Err(TcpError::Config(_))
    ));
    let mut bad = quick(3);
    bad.limits.max_frame_size = 0;
    assert!(matches!(
        TcpTransport::bind(bad).await,
        Err(TcpError::Config(_))
    ));
    assert!(matches!(
        TcpTransport::bind(quick(0)).await,
        Err(TcpError::Config(_))
    ));
}

#[tokio::test]
async fn oversized_sends_and_unknown_peers_are_refused_at_the_sender() {
    let mut cfg = quick(1);
    cfg.limits.max_frame_size = 1024;
    let mut t = TcpTransport::bind(cfg).await.unwrap();
    t.add_peer(NodeId(2), "127.0.0.1:9".into());
    let mut big = hb(0);
    big.body = Body::InstallSnapshot {
        meta: Default::default(),
        offset: 0,
        total: 2048,
        data: vec![0; 2048].into(),
    };
    assert!(matches!(
        t.send(big),
        Err(raft_core::SendError::TooLarge { limit: 1024, .. })
    ));
    assert_eq!(t.stats(NodeId(2)).dropped, 1);
    let mut stranger = hb(0);
    stranger.to = NodeId(7);
    assert_eq!(
        t.send(stranger),
        Err(raft_core::SendError::UnknownPeer(NodeId(7)))
    );
    t.remove_peer(NodeId(2));
    assert_eq!(
        t.send(hb(1)),
        Err(raft_core::SendError::UnknownPeer(NodeId(2)))
    );
    t.shutdown().await;
    assert_eq!(t.send(hb(1)), Err(raft_core::SendError::Shutdown));
}
