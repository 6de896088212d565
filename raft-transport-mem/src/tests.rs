use super::*;
use raft_core::Body;
use std::time::Duration;
use tokio::time::{timeout, Instant};

fn n(i: u64) -> NodeId {
    NodeId(i)
}

fn msg(from: u64, to: u64, tag: u64) -> Message {
    Message {
        from: n(from),
        to: n(to),
        term: 1,
        body: Body::Heartbeat {
            leader_commit: 0,
            ctx: tag,
        },
    }
}

fn tag(m: &Message) -> u64 {
    match m.body {
        Body::Heartbeat { ctx, .. } => ctx,
        _ => panic!("unexpected body"),
    }
}

/// Everything that arrives within `wait` (virtual time).
async fn drain(t: &mut MemTransport, wait: Duration) -> Vec<(NodeId, u64)> {
    let mut out = Vec::new();
    while let Ok(Some((from, m))) = timeout(wait, t.recv()).await {
        out.push((from, tag(&m)));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn delivers_in_order_and_counts() {
    let net = MemNetwork::new(1);
    let a = net.transport(n(1));
    let mut b = net.transport(n(2));
    for i in 0..100 {
        a.send(msg(1, 2, i)).unwrap();
    }
    let got = drain(&mut b, Duration::from_millis(1)).await;
    assert_eq!(got, (0..100).map(|i| (n(1), i)).collect::<Vec<_>>());
    assert_eq!(a.stats(n(2)).sent, 100);
    assert_eq!(a.stats(n(2)).dropped, 0);
    assert_eq!(net.faults().stats().delivered, 100);
}

#[tokio::test(start_paused = true)]
async fn full_link_drops_and_counts() {
    let net = MemNetwork::with_config(1, MemConfig { queue_capacity: 4 });
    let a = net.transport(n(1));
    let c = net.transport(n(3));
    let mut b = net.transport(n(2));
    let mut results = Vec::new();
    for i in 0..10 {
        results.push(a.send(msg(1, 2, i)));
    }
    assert!(results[..4].iter().all(Result::is_ok));
    assert!(results[4..]
        .iter()
        .all(|r| *r == Err(SendError::QueueFull(n(2)))));
    // The bound is per link: another sender is unaffected.
    assert!(c.send(msg(3, 2, 100)).is_ok());
    assert_eq!(a.stats(n(2)).dropped, 6);
    assert_eq!(net.faults().stats().dropped_overflow, 6);
    let got = drain(&mut b, Duration::from_millis(1)).await;
    assert_eq!(got.len(), 5);
    // Receiving frees the link.
    assert!(a.send(msg(1, 2, 11)).is_ok());
}

#[tokio::test(start_paused = true)]
async fn one_way_cut_and_heal() {
    let net = MemNetwork::new(1);
    let faults = net.faults();
    let mut a = net.transport(n(1));
    let mut b = net.transport(n(2));
    faults.cut(n(1), n(2));
    a.send(msg(1, 2, 1)).unwrap();
    b.send(msg(2, 1, 2)).unwrap();
    assert!(drain(&mut b, Duration::from_millis(5)).await.is_empty());
    assert_eq!(
        drain(&mut a, Duration::from_millis(5)).await,
        vec![(n(2), 2)]
    );
    faults.heal();
    a.send(msg(1, 2, 3)).unwrap();
    assert_eq!(
        drain(&mut b, Duration::from_millis(5)).await,
        vec![(n(1), 3)]
    );
    assert_eq!(faults.stats().dropped_cut, 1);
}

#[tokio::test(start_paused = true)]
async fn a_cut_also_stops_messages_in_flight() {
    let net = MemNetwork::new(1);
    let a = net.transport(n(1));
    let mut b = net.transport(n(2));
    a.send(msg(1, 2, 1)).unwrap();
    net.faults().isolate(n(2));
    assert!(drain(&mut b, Duration::from_millis(5)).await.is_empty());
    net.faults().heal_node(n(2));
    a.send(msg(1, 2, 2)).unwrap();
    assert_eq!(
        drain(&mut b, Duration::from_millis(5)).await,
        vec![(n(1), 2)]
    );
}

#[tokio::test(start_paused = true)]
async fn partition_groups() {
    let net = MemNetwork::new(1);
    let faults = net.faults();
    let t: Vec<MemTransport> = (1..=5).map(|i| net.transport(n(i))).collect();
    faults.partition(&[vec![n(1), n(2)], vec![n(3), n(4), n(5)]]);
    assert!(!faults.is_cut(n(1), n(2)));
    assert!(faults.is_cut(n(1), n(3)));
    assert!(faults.is_cut(n(5), n(2)));
    assert!(!faults.is_cut(n(4), n(5)));
    faults.heal();
    assert!(!faults.is_cut(n(1), n(3)));
    faults.cut_all();
    assert!(faults.is_cut(n(4), n(5)));
    drop(t);
}

#[tokio::test(start_paused = true)]
async fn delay_and_jitter_keep_order() {
    let net = MemNetwork::new(7);
    net.faults().set_link(
        n(1),
        n(2),
        LinkFaults {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(30),
            ..LinkFaults::default()
        },
    );
    let a = net.transport(n(1));
    let mut b = net.transport(n(2));
    let start = Instant::now();
    for i in 0..50 {
        a.send(msg(1, 2, i)).unwrap();
    }
    let first = b.recv().await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(50));
    let mut got = vec![tag(&first.1)];
    got.extend(
        drain(&mut b, Duration::from_millis(100))
            .await
            .into_iter()
            .map(|(_, t)| t),
    );
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    // Lifting the delay does not let new messages overtake delayed ones.
    for i in 50..60 {
        a.send(msg(1, 2, i)).unwrap();
    }
    net.faults().clear_link_faults();
    for i in 60..70 {
        a.send(msg(1, 2, i)).unwrap();
    }
    let got: Vec<u64> = drain(&mut b, Duration::from_millis(200))
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(got, (50..70).collect::<Vec<_>>());
}

async fn lossy_run(seed: u64) -> (Vec<u64>, NetworkStats) {
    let net = MemNetwork::new(seed);
    net.faults().set_default_link(LinkFaults {
        drop: 0.3,
        duplicate: 0.1,
        reorder: 0.1,
        reorder_window: Duration::from_millis(5),
        jitter: Duration::from_millis(1),
        ..LinkFaults::default()
    });
    let a = net.transport(n(1));
    let mut b = net.transport(n(2));
    for i in 0..1000 {
        a.send(msg(1, 2, i)).unwrap();
    }
    let got = drain(&mut b, Duration::from_millis(50))
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    (got, net.faults().stats())
}

#[tokio::test(start_paused = true)]
async fn random_faults_are_seeded() {
    let (got, stats) = lossy_run(42).await;
    // Roughly 30% lost, some duplicated, some overtaken.
    assert!((200..400).contains(&stats.dropped_random), "{stats:?}");
    assert!(stats.duplicated > 30, "{stats:?}");
    assert!(stats.reordered > 30, "{stats:?}");
    assert_eq!(got.len() as u64, stats.delivered);
    assert!(got.windows(2).any(|w| w[0] > w[1]), "nothing was reordered");
    assert!(
        got.windows(2).any(|w| w[0] == w[1]),
        "nothing was duplicated"
    );
    // The same seed replays the same run; another seed does not.
    let (again, stats2) = lossy_run(42).await;
    assert_eq!(got, again);
    assert_eq!(stats, stats2);
    let (other, _) = lossy_run(43).await;
    assert_ne!(got, other);
}

#[tokio::test(start_paused = true)]
async fn restart_replaces_the_transport() {
    let net = MemNetwork::new(1);
    let a = net.transport(n(1));
    let b = net.transport(n(2));
    a.send(msg(1, 2, 1)).unwrap();
    drop(b);
    // A crashed node is unreachable.
    assert_eq!(a.send(msg(1, 2, 2)), Err(SendError::UnknownPeer(n(2))));
    let mut b2 = net.transport(n(2));
    a.send(msg(1, 2, 3)).unwrap();
    // What was queued for the old incarnation is gone.
    assert_eq!(
        drain(&mut b2, Duration::from_millis(5)).await,
        vec![(n(1), 3)]
    );
    assert_eq!(net.nodes(), vec![n(1), n(2)]);
    // The link count was released on the crash, so it does not leak.
    assert_eq!(a.stats(n(2)).sent, 2);
}

#[tokio::test(start_paused = true)]
async fn removed_peers_and_shutdown() {
    let net = MemNetwork::new(1);
    let mut a = net.transport(n(1));
    let _b = net.transport(n(2));
    assert_eq!(a.send(msg(1, 9, 1)), Err(SendError::UnknownPeer(n(9))));
    a.remove_peer(n(2));
    assert_eq!(a.send(msg(1, 2, 1)), Err(SendError::UnknownPeer(n(2))));
    a.add_peer(n(2), String::new());
    assert!(a.send(msg(1, 2, 1)).is_ok());
    a.shutdown().await;
    assert_eq!(a.send(msg(1, 2, 1)), Err(SendError::Shutdown));
    assert!(a.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn recv_is_cancel_safe() {
    let net = MemNetwork::new(1);
    let a = net.transport(n(1));
    let mut b = net.transport(n(2));
    // Abandon a few receives mid-wait, then send: nothing is lost.
    for _ in 0..3 {
        assert!(timeout(Duration::from_millis(1), b.recv()).await.is_err());
    }
    a.send(msg(1, 2, 5)).unwrap();
    assert_eq!(
        drain(&mut b, Duration::from_millis(1)).await,
        vec![(n(1), 5)]
    );
}
