//! The HTTP API of the real binary: bad input of every kind gets a 4xx JSON
//! error and leaves the node healthy; CAS and request-id deduplication;
//! fault injection is refused without its flag; status, metrics and the
//! watch stream; the embedded (`--transport mem`) mode; and the command
//! line's own errors and shutdown.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod binary_common;

use binary_common::*;
use futures::StreamExt;
use hyper::Method;
use raft_node::loadgen::cluster::{free_port, fresh_dir};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn assert_json_error(r: &raft_node::loadgen::client::Response, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    let j = r.json();
    assert!(
        j["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: not a JSON error: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_and_the_node_stays_healthy() {
    let cl = cluster("badinput", Net::Tcp, &[1], &["--max-value-bytes", "1024"]);
    let l = leader(&cl, &[1]).await;
    let a = cl.http(l);
    let long_key = "k".repeat(2048);
    let cases: Vec<(Method, String, Vec<u8>, u16, &str)> = vec![
        (
            Method::PUT,
            "/v1/kv/".into(),
            b"v".to_vec(),
            400,
            "empty key",
        ),
        (Method::GET, "/v1/kv".into(), vec![], 400, "no key"),
        (
            Method::PUT,
            format!("/v1/kv/{long_key}"),
            b"v".to_vec(),
            400,
            "2 KiB key",
        ),
        (
            Method::GET,
            format!("/v1/kv/{long_key}"),
            vec![],
            400,
            "2 KiB key read",
        ),
        (
            Method::PUT,
            "/v1/kv/%FF%FE".into(),
            b"v".to_vec(),
            400,
            "invalid UTF-8 key",
        ),
        (
            Method::PUT,
            "/v1/kv/a%zzb".into(),
            b"v".to_vec(),
            400,
            "bad percent-encoding",
        ),
        (
            Method::PUT,
            "/v1/kv/a/b".into(),
            b"v".to_vec(),
            400,
            "two segments",
        ),
        (
            Method::PUT,
            "/v1/kv/big".into(),
            vec![b'x'; 2048],
            413,
            "oversized body",
        ),
        (Method::GET, "/v1/nope".into(), vec![], 404, "unknown route"),
        (Method::POST, "/v1/kv/k".into(), vec![], 405, "wrong method"),
        (
            Method::GET,
            "/v1/kv/k?consistency=weird".into(),
            vec![],
            400,
            "bad consistency",
        ),
        (
            Method::PUT,
            "/v1/kv/k?expec=1".into(),
            b"v".to_vec(),
            400,
            "CAS: misspelt parameter",
        ),
        (
            Method::PUT,
            "/v1/kv/k?expect=%zz".into(),
            b"v".to_vec(),
            400,
            "CAS: bad encoding",
        ),
        (
            Method::PUT,
            "/v1/kv/k?expect=a&expect=b".into(),
            b"v".to_vec(),
            400,
            "CAS: repeated",
        ),
        (
            Method::DELETE,
            "/v1/kv/k?expect=a".into(),
            vec![],
            400,
            "CAS on delete",
        ),
        (
            Method::POST,
            "/v1/admin/learners".into(),
            b"{not json".to_vec(),
            400,
            "malformed JSON",
        ),
        (
            Method::POST,
            "/v1/admin/learners".into(),
            br#"{"id":"four"}"#.to_vec(),
            400,
            "wrong type",
        ),
        (
            Method::POST,
            "/v1/admin/learners".into(),
            br#"{"id":4,"raft_addr":"nope","http_addr":"x"}"#.to_vec(),
            400,
            "bad address",
        ),
        (
            Method::POST,
            "/v1/admin/promote".into(),
            b"[1,2]".to_vec(),
            400,
            "promote: not an object",
        ),
        (
            Method::POST,
            "/v1/admin/promote".into(),
            vec![],
            400,
            "promote: empty body",
        ),
        (
            Method::POST,
            "/v1/admin/promote".into(),
            br#"{"id":9}"#.to_vec(),
            400,
            "promote: not a learner",
        ),
        (
            Method::POST,
            "/v1/admin/remove".into(),
            br#"{"idd":1}"#.to_vec(),
            400,
            "remove: unknown field",
        ),
        (
            Method::POST,
            "/v1/admin/remove".into(),
            br#"{"id":9}"#.to_vec(),
            400,
            "remove: not a member",
        ),
        (
            Method::POST,
            "/v1/admin/transfer".into(),
            b"{".to_vec(),
            400,
            "transfer: truncated",
        ),
        (
            Method::POST,
            "/v1/admin/transfer".into(),
            br#"{"to":9}"#.to_vec(),
            400,
            "transfer: not a voter",
        ),
        (
            Method::GET,
            "/v1/watch".into(),
            vec![],
            400,
            "watch without upgrade",
        ),
    ];
    for (m, path, body, status, what) in cases {
        let r = req(&a, m, &path, &body).await;
        if what == "watch without upgrade" {
            assert!(r.status >= 400 && r.status < 500, "{what}: {r:?}");
            assert!(r.json()["error"].is_string(), "{what}: {r:?}");
        } else {
            assert_json_error(&r, status, what);
        }
        let s = req(&a, Method::GET, "/v1/status", b"").await;
        assert_eq!(s.status, 200, "node unhealthy after {what}");
    }
    // A bad request id.
    let r = req_h(
        &a,
        Method::PUT,
        "/v1/kv/k",
        &[("x-request-id", &"r".repeat(500))],
        b"v",
    )
    .await;
    assert_json_error(&r, 400, "long request id");
    // Exactly at the limits is fine.
    let r = req(
        &a,
        Method::PUT,
        &format!("/v1/kv/{}", "k".repeat(1024)),
        &[b'x'; 1024],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = req(&a, Method::GET, "/v1/kv/%C3%A9t%C3%A9", b"").await;
    assert_json_error(&r, 404, "absent key");
    assert_eq!(r.json()["error"], "not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_and_request_ids() {
    // Snapshots every 5 entries, so the restart below restores the dedup
    // table from a snapshot rather than replaying its entries.
    let mut cl = cluster("cas", Net::Tcp, &[1], &["--snapshot-every", "5"]);
    let a = cl.http(leader(&cl, &[1]).await);
    // expect= (empty): the key must be absent.
    let r = req(&a, Method::PUT, "/v1/kv/c?expect=", b"one").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = req(&a, Method::PUT, "/v1/kv/c?expect=", b"two").await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"], "conflict");
    assert_eq!(r.json()["current"], "one");
    let r = req(&a, Method::PUT, "/v1/kv/c?expect=wrong", b"two").await;
    assert_eq!((r.status, r.json()["current"].clone()), (409, "one".into()));
    let r = req(&a, Method::PUT, "/v1/kv/c?expect=one", b"two").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = req(&a, Method::PUT, "/v1/kv/absent?expect=x", b"v").await;
    assert_eq!(
        (r.status, r.json()["current"].clone()),
        (409, serde_json::Value::Null)
    );
    let r = req(&a, Method::GET, "/v1/kv/c", b"").await;
    assert_eq!(&r.body[..], b"two");

    // A retried request id is applied once: the retry answers with the
    // first index and does not overwrite a later write.
    let h = [("x-request-id", "client-7-seq-1")];
    let first = req_h(&a, Method::PUT, "/v1/kv/d", &h, b"first").await;
    assert_eq!(first.status, 200);
    let other = req(&a, Method::PUT, "/v1/kv/d", b"second").await;
    assert_eq!(other.status, 200);
    let retry = req_h(&a, Method::PUT, "/v1/kv/d", &h, b"first").await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json()["index"], first.json()["index"]);
    let r = req(&a, Method::GET, "/v1/kv/d", b"").await;
    assert_eq!(&r.body[..], b"second");
    // Still at-most-once after a crash and restart.
    for i in 0..10 {
        req(&a, Method::PUT, &format!("/v1/kv/filler{i}"), b"x").await;
    }
    cl.kill(1);
    cl.restart(1).unwrap();
    leader(&cl, &[1]).await;
    let retry = req_h(&a, Method::PUT, "/v1/kv/d", &h, b"first").await;
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!(retry.json()["index"], first.json()["index"]);
    let r = req(&a, Method::GET, "/v1/kv/d", b"").await;
    assert_eq!(&r.body[..], b"second");
    let st = cl.status(1).await.unwrap();
    assert!(
        st["snapshot_index"].as_u64().unwrap() > first.json()["index"].as_u64().unwrap(),
        "restarted from a snapshot past the first write: {st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_needs_its_flag() {
    let cl = cluster("faults-off", Net::Tcp, &[1], &[]);
    let a = cl.http(leader(&cl, &[1]).await);
    for path in ["/v1/admin/isolate", "/v1/admin/heal"] {
        let r = req(&a, Method::POST, path, br#"{"peers":[2]}"#).await;
        assert_json_error(&r, 403, path);
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("--enable-fault-injection"));
    }
    drop(cl);

    let cl = cluster(
        "faults-on",
        Net::Tcp,
        &[1, 2, 3],
        &["--enable-fault-injection"],
    );
    let ids = cl.ids();
    let l = leader(&cl, &ids).await;
    // Cut the leader off from everyone: the others elect a new leader, the
    // old one cannot commit.
    let r = req(&cl.http(l), Method::POST, "/v1/admin/isolate", b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    let st = cl.status(l).await.unwrap();
    let mut iso: Vec<u64> = st["isolated_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    iso.sort();
    let others: Vec<u64> = ids.iter().copied().filter(|i| *i != l).collect();
    assert_eq!(iso, others);
    let nl = leader(&cl, &others).await;
    assert_ne!(nl, l);
    put_ok(&cl, nl, "during-partition", "x").await;
    let r = req(
        &cl.http(l),
        Method::GET,
        "/v1/kv/during-partition?consistency=stale",
        b"",
    )
    .await;
    assert_eq!(r.status, 404, "the isolated node cannot have it");
    // Heal: the old leader rejoins and catches up.
    let r = req(&cl.http(l), Method::POST, "/v1/admin/heal", b"").await;
    assert_eq!(r.status, 200);
    wait_value(&cl, l, "during-partition", "x", FORM).await;
    let st = cl.status(l).await.unwrap();
    assert_eq!(st["isolated_from"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metrics_and_watch() {
    let cl = cluster("watch", Net::Tcp, &[1, 2, 3], &[]);
    let ids = cl.ids();
    let l = leader(&cl, &ids).await;
    let a = cl.http(l);
    let st = cl.status(l).await.unwrap();
    for field in [
        "id",
        "role",
        "term",
        "leader",
        "commit_index",
        "applied_index",
        "last_log_index",
        "voters",
        "learners",
        "peers",
        "isolated_from",
    ] {
        assert!(st.get(field).is_some(), "status lacks {field}: {st}");
    }
    assert_eq!(st["role"], "leader");
    assert_eq!(st["voters"], serde_json::json!([1, 2, 3]));
    assert_eq!(st["peers"].as_object().unwrap().len(), 2, "{st}");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{a}/v1/watch"))
        .await
        .expect("websocket");
    async fn next<S>(ws: &mut S) -> serde_json::Value
    where
        S: futures::Stream<
                Item = Result<
                    tokio_tungstenite::tungstenite::Message,
                    tokio_tungstenite::tungstenite::Error,
                >,
            > + Unpin,
    {
        let m = tokio::time::timeout(REQ, ws.next())
            .await
            .expect("event in time");
        let m = m.expect("stream open").expect("frame");
        serde_json::from_str(m.to_text().expect("text")).expect("JSON")
    }
    let first = next(&mut ws).await;
    assert_eq!(first["type"], "role", "{first}");
    assert_eq!(first["role"], "leader");
    let second = next(&mut ws).await;
    assert_eq!(second["type"], "membership", "{second}");
    assert_eq!(second["voters"], serde_json::json!([1, 2, 3]));
    put_ok(&cl, l, "watched", "v").await;
    let deadline = Instant::now() + REQ;
    let mut saw_applied = false;
    while Instant::now() < deadline && !saw_applied {
        let e = next(&mut ws).await;
        if e["type"] == "applied" {
            assert_eq!(e["key"], "watched");
            assert_eq!(e["op"], "put");
            assert!(e["index"].as_u64().unwrap() > 0);
            saw_applied = true;
        }
    }
    assert!(saw_applied);

    let m = req(&a, Method::GET, "/metrics", b"").await;
    assert_eq!(m.status, 200);
    let text = String::from_utf8(m.body.to_vec()).unwrap();
    for needle in [
        "raft_term ",
        "raft_role{role=\"leader\"} 1",
        "raft_commit_index ",
        "raft_applied_index ",
        "raft_proposals_total{outcome=\"ok\"} ",
        "raft_wal_fsync_duration_seconds_bucket",
        "raft_peer_messages_sent_total{peer=\"",
        "raft_peer_messages_dropped_total{peer=\"",
        "raft_snapshots_sent_total ",
        "raft_snapshots_installed_total ",
        "raft_http_request_duration_seconds_bucket{route=\"kv_put\"",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }

    // A leader change reaches the watch stream of the node that takes over.
    let f = *ids.iter().find(|i| **i != l).expect("a follower");
    let (mut fws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/watch", cl.http(f)))
        .await
        .expect("websocket to the follower");
    let r = req(
        &a,
        Method::POST,
        "/v1/admin/transfer",
        format!("{{\"to\":{f}}}").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let deadline = Instant::now() + REQ;
    let mut saw_leader = false;
    while Instant::now() < deadline && !saw_leader {
        let e = next(&mut fws).await;
        saw_leader = e["type"] == "role" && e["role"] == "leader" && e["leader"] == f;
    }
    assert!(saw_leader, "the new leader's watch stream announced it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_bound_the_log_and_bring_a_node_back() {
    let mut cl = cluster(
        "snapshots",
        Net::Tcp,
        &[1, 2, 3],
        &["--snapshot-every", "50"],
    );
    let ids = cl.ids();
    let l = leader(&cl, &ids).await;
    let lagger = *ids.iter().find(|i| **i != l).unwrap();
    cl.kill(lagger);
    for i in 0..300 {
        put_ok(&cl, l, &format!("s{}", i % 40), &format!("v{i}")).await;
    }
    let st = cl.status(l).await.unwrap();
    assert!(st["snapshot_index"].as_u64().unwrap() >= 250, "{st}");
    cl.restart(lagger).expect("restart");
    wait_value(&cl, lagger, "s19", "v299", FORM).await;
    // It came back through a snapshot from the leader, not the log.
    let m = req(&cl.http(lagger), Method::GET, "/metrics", b"").await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    let installed = text
        .lines()
        .find_map(|l| l.strip_prefix("raft_snapshots_installed_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("metric present");
    assert!(installed >= 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mem_cluster_serves_the_same_api() {
    let dir = fresh_dir("mem").unwrap();
    // Three consecutive free ports.
    let base = loop {
        let p = free_port().unwrap();
        if p < 65000
            && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p + 2)).is_ok()
        {
            break p;
        }
    };
    let child = Command::new(BIN)
        .args(["--transport", "mem", "--nodes", "3", "--http-addr"])
        .arg(format!("127.0.0.1:{base}"))
        .arg("--data-dir")
        .arg(&dir)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);
    let addrs: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    let deadline = Instant::now() + FORM;
    let leader = loop {
        let r = raft_node::loadgen::find_leader(&addrs).await;
        if let Some(l) = r {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "no leader in the embedded cluster"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let r = req_follow(&addrs[2], Method::PUT, "/v1/kv/mem", &[], b"yes", FORM)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    for a in &addrs {
        let r = req_follow(a, Method::GET, "/v1/kv/mem", &[], b"", FORM)
            .await
            .unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"yes"[..]), "{a}");
        let s = req(a, Method::GET, "/v1/status", b"").await;
        assert_eq!(s.json()["voters"], serde_json::json!([1, 2, 3]));
    }
    let r = req(&leader, Method::GET, "/v1/nope", b"").await;
    assert_json_error(&r, 404, "unknown route (mem)");
    let _ = std::fs::remove_dir_all(dir);
}

fn run_bin(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run")
}

#[test]
fn bad_flags_and_config_exit_2_with_one_line() {
    let dir = fresh_dir("flags").unwrap();
    let bad_toml = dir.join("bad.toml");
    std::fs::write(&bad_toml, "id = \"one\"\n").unwrap();
    let unknown_toml = dir.join("unknown.toml");
    std::fs::write(&unknown_toml, "id = 1\nfrobnicate = true\n").unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["--bogus".into()],
        vec!["--id".into(), "x".into()],
        vec![
            "--id".into(),
            "1".into(),
            "--transport".into(),
            "carrier-pigeon".into(),
        ],
        vec!["--id".into(), "1".into(), "--peer".into(), "garbage".into()],
        vec![
            "--id".into(),
            "1".into(),
            "--election-ticks".into(),
            "3".into(),
            "--heartbeat-ticks".into(),
            "3".into(),
        ],
        vec!["--config".into(), bad_toml.display().to_string()],
        vec!["--config".into(), unknown_toml.display().to_string()],
        vec![
            "--config".into(),
            dir.join("missing.toml").display().to_string(),
        ],
    ];
    for args in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_bin(&a);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_lists_every_option_with_defaults() {
    let out = run_bin(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--config",
        "--id",
        "--data-dir",
        "--raft-addr",
        "--http-addr",
        "--peer",
        "--cluster-id",
        "--transport",
        "--tls-cert",
        "--tls-key",
        "--tls-ca",
        "--tick-ms",
        "--election-ticks",
        "--heartbeat-ticks",
        "--snapshot-every",
        "--request-timeout-ms",
        "--max-value-bytes",
        "--enable-fault-injection",
        "--join",
        "--nodes",
    ] {
        assert!(help.contains(opt), "--help lacks {opt}:\n{help}");
    }
    for default in [
        "[default: 10]",
        "[default: 15]",
        "[default: 3]",
        "[default: 10000]",
        "[default: 5000]",
        "[default: 1048576]",
        "[default: tcp]",
        "[default: 1]",
    ] {
        assert!(help.contains(default), "--help lacks {default}:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_in_use_is_named_and_sigterm_exits_cleanly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = fresh_dir("port").unwrap();
    let out = Command::new(BIN)
        .args(["--id", "1", "--http-addr", &format!("127.0.0.1:{port}")])
        .arg("--raft-addr")
        .arg(format!("127.0.0.1:{}", free_port().unwrap()))
        .arg("--data-dir")
        .arg(dir.join("a"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&port.to_string()) && err.contains("in use"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["--id", "1", "--raft-addr", &format!("127.0.0.1:{port}")])
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{}", free_port().unwrap()))
        .arg("--data-dir")
        .arg(dir.join("b"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&port.to_string()) && err.contains("in use"),
        "{err}"
    );
    drop(taken);

    // SIGTERM: exits 0, and what was acknowledged is there after restart.
    let mut cl = cluster("sigterm", Net::Tcp, &[1], &[]);
    leader(&cl, &[1]).await;
    put_ok(&cl, 1, "kept", "yes").await;
    let code = cl.terminate(1, Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", cl.log_tails(20));
    let log = std::fs::read_to_string(&cl.node(1).unwrap().log).unwrap();
    assert!(log.contains("shutting down"), "{log}");
    cl.restart(1).unwrap();
    leader(&cl, &[1]).await;
    wait_value(&cl, 1, "kept", "yes", FORM).await;
    let log = std::fs::read_to_string(&cl.node(1).unwrap().log).unwrap();
    assert!(log.contains("recovered storage"), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_writes_are_never_acknowledged() {
    let mut cl = cluster(
        "noquorum",
        Net::Tcp,
        &[1, 2, 3],
        &["--request-timeout-ms", "1500"],
    );
    let ids = cl.ids();
    let l = leader(&cl, &ids).await;
    put_ok(&cl, l, "k", "before").await;
    for id in ids.iter().filter(|i| **i != l) {
        cl.kill(*id);
    }
    // The leader can no longer commit: a write is answered 503 (no
    // leader, once it has stepped down) or 504 with an unknown outcome,
    // never 200; reads cannot be confirmed either.
    let r = req(&cl.http(l), Method::PUT, "/v1/kv/k", b"during").await;
    match r.status {
        504 => assert_eq!(r.json()["outcome"], "unknown", "{r:?}"),
        503 => assert!(r.header("retry-after").is_some(), "{r:?}"),
        _ => panic!("a write without a quorum got {r:?}"),
    }
    let r = req(&cl.http(l), Method::PUT, "/v1/kv/k2", b"during").await;
    assert!(r.status == 503 || r.status == 504, "{r:?}");
    assert!(r.json()["error"].is_string(), "{r:?}");
    let r = req(&cl.http(l), Method::GET, "/v1/kv/k", b"").await;
    assert!(r.status == 503 || r.status == 504, "{r:?}");
    // A stale read still answers locally.
    let r = req(&cl.http(l), Method::GET, "/v1/kv/k?consistency=stale", b"").await;
    assert_eq!((r.status, &r.body[..]), (200, &b"before"[..]), "{r:?}");
    let st = cl.status(l).await.unwrap();
    assert_ne!(
        st["role"], "leader",
        "check-quorum makes it step down: {st}"
    );
}
