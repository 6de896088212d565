//! The real binary, three (then four) processes on 127.0.0.1, over TCP and
//! over QUIC: a cluster forms, replicates, survives `kill -9` of its
//! leader, loses nothing acknowledged when every node is killed and
//! restarted, and changes membership while serving.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod binary_common;

use binary_common::*;
use hyper::Method;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn replicate_fail_over_and_recover(net: Net) {
    let mut cl = cluster("cluster", net, &[1, 2, 3], &[]);
    let ids = cl.ids();
    let l = leader(&cl, &ids).await;

    // A write on one node is readable on all, linearizably.
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let r = put_ok(&cl, l, "greeting", "hello").await;
    assert!(r["index"].as_u64().unwrap() > 0, "{r}");
    assert!(r["term"].as_u64().unwrap() > 0, "{r}");
    acked.insert("greeting".into(), "hello".into());
    for id in &ids {
        let r = req_follow(
            &cl.http(*id),
            Method::GET,
            "/v1/kv/greeting",
            &[],
            b"",
            FORM,
        )
        .await
        .expect("answer");
        assert_eq!(r.status, 200, "node {id}: {r:?}");
        assert_eq!(&r.body[..], b"hello", "node {id}");
    }
    // A write through a follower is redirected to the leader (or served).
    let f = *ids.iter().find(|i| **i != l).unwrap();
    put_ok(&cl, f, "via-follower", "yes").await;
    acked.insert("via-follower".into(), "yes".into());

    // kill -9 the leader: a new leader appears and writes continue.
    let t0 = Instant::now();
    cl.kill(l);
    let survivors: Vec<u64> = ids.iter().copied().filter(|i| *i != l).collect();
    let nl = leader(&cl, &survivors).await;
    let took = t0.elapsed();
    println!("{net:?}: new leader {nl} {took:?} after kill -9 of leader {l}");
    assert_ne!(nl, l);
    assert!(
        took < Duration::from_secs(5),
        "new leader took {took:?}\n{}",
        cl.log_tails(30)
    );
    for i in 0..5 {
        let k = format!("after-kill-{i}");
        put_ok(&cl, survivors[i % 2], &k, "v").await;
        acked.insert(k, "v".into());
    }

    // The killed node restarts and catches up.
    cl.restart(l).expect("restart");
    wait_value(&cl, l, "after-kill-4", "v", FORM).await;
    wait_value(&cl, l, "greeting", "hello", FORM).await;

    // More acknowledged writes, then every node is killed and restarted:
    // nothing acknowledged is lost.
    for i in 0..20 {
        let k = format!("before-crash-{i}");
        put_ok(&cl, ids[i % 3], &k, &format!("value-{i}")).await;
        acked.insert(k, format!("value-{i}"));
    }
    for id in &ids {
        cl.kill(*id);
    }
    for id in &ids {
        cl.restart(*id).expect("restart");
    }
    let l2 = leader(&cl, &ids).await;
    for (k, v) in &acked {
        let r = req_follow(
            &cl.http(l2),
            Method::GET,
            &format!("/v1/kv/{k}"),
            &[],
            b"",
            FORM,
        )
        .await
        .expect("answer");
        assert_eq!(
            r.status,
            200,
            "{k} lost after restart: {r:?}\n{}",
            cl.log_tails(20)
        );
        assert_eq!(r.body, v.as_bytes(), "{k}");
    }
    put_ok(&cl, l2, "after-restart", "ok").await;
}

async fn membership_changes(net: Net) {
    let mut cl = cluster("membership", net, &[1, 2, 3], &[]);
    let ids = cl.ids();
    let l = leader(&cl, &ids).await;
    put_ok(&cl, l, "before", "1").await;

    // A fourth node joins as a learner, catches up, is promoted.
    cl.start_joining(4).expect("spawn node 4");
    let n4 = cl.node(4).unwrap();
    let body = serde_json::json!({"id": 4, "raft_addr": n4.raft_addr, "http_addr": n4.http_addr})
        .to_string();
    let r = req_follow(
        &cl.http(l),
        Method::POST,
        "/v1/admin/learners",
        &[],
        body.as_bytes(),
        FORM,
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 200, "{r:?}\n{}", cl.log_tails(30));
    assert_eq!(r.json()["learners"], serde_json::json!([4]), "{r:?}");
    wait_value(&cl, 4, "before", "1", FORM).await;
    let st = cl.status(4).await.expect("status of node 4");
    assert_eq!(st["role"], "learner", "{st}");

    let r = req_follow(
        &cl.http(l),
        Method::POST,
        "/v1/admin/promote",
        &[],
        br#"{"id":4}"#,
        FORM,
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 200, "{r:?}\n{}", cl.log_tails(30));
    assert_eq!(r.json()["voters"], serde_json::json!([1, 2, 3, 4]), "{r:?}");
    // The new member sees the same membership (not, say, itself alone).
    let deadline = Instant::now() + FORM;
    loop {
        let st = cl.status(4).await.expect("status of node 4");
        if st["voters"] == serde_json::json!([1, 2, 3, 4]) && st["role"] == "follower" {
            break;
        }
        assert!(Instant::now() < deadline, "node 4's view: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Remove an original node (one that does not lead, so the answer comes
    // from a leader that stays).
    let l = leader(&cl, &[1, 2, 3, 4]).await;
    let victim = *ids.iter().find(|i| **i != l).unwrap();
    let body = format!(r#"{{"id":{victim}}}"#);
    let r = req_follow(
        &cl.http(l),
        Method::POST,
        "/v1/admin/remove",
        &[],
        body.as_bytes(),
        FORM,
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 200, "{r:?}\n{}", cl.log_tails(30));
    let voters: Vec<u64> = r.json()["voters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        !voters.contains(&victim) && voters.contains(&4),
        "{voters:?}"
    );
    cl.kill(victim);

    // The cluster keeps serving, and the new member serves reads and
    // redirects writes.
    let remaining: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|i| *i != victim).collect();
    let l = leader(&cl, &remaining).await;
    put_ok(&cl, 4, "after", "2").await;
    for id in &remaining {
        wait_value(&cl, *id, "after", "2", FORM).await;
    }
    let r = req_follow(&cl.http(4), Method::GET, "/v1/kv/before", &[], b"", FORM)
        .await
        .expect("answer");
    assert_eq!((r.status, &r.body[..]), (200, &b"1"[..]));
    let st = cl.status(l).await.expect("status");
    assert!(
        st["peers"].get("4").is_some(),
        "leader knows node 4's address: {st}"
    );

    // Hand leadership to the new member; the answer comes once it leads.
    if l != 4 {
        let r = req_follow(
            &cl.http(l),
            Method::POST,
            "/v1/admin/transfer",
            &[],
            br#"{"to":4}"#,
            FORM,
        )
        .await
        .expect("answer");
        assert_eq!(r.status, 200, "{r:?}\n{}", cl.log_tails(30));
        assert_eq!(r.json()["leader"], 4);
        // Node 4 publishes its own status after the Ready that made it
        // leader is handled, which may be a moment after the old leader
        // heard from it.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let st = cl.status(4).await.expect("status of node 4");
            if st["role"] == "leader" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node 4 never reported leading: {st}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        put_ok(&cl, l, "after-transfer", "3").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_replicate_fail_over_and_recover() {
    replicate_fail_over_and_recover(Net::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_replicate_fail_over_and_recover() {
    replicate_fail_over_and_recover(Net::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_membership_changes() {
    membership_changes(Net::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_membership_changes() {
    membership_changes(Net::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_with_mutual_tls_forms_a_cluster() {
    let cl = cluster("tcp-tls", Net::TcpTls, &[1, 2, 3], &[]);
    let ids = cl.ids();
    let l = leader(&cl, &ids).await;
    put_ok(&cl, l, "secure", "yes").await;
    for id in &ids {
        wait_value(&cl, *id, "secure", "yes", FORM).await;
    }
    let log = std::fs::read_to_string(&cl.node(l).unwrap().log).unwrap();
    assert!(log.contains("tls=true"), "{log}");
}
