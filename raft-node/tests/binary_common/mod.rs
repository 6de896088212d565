//! Helpers shared by the tests that run the real `raft-node` binary as
//! separate processes on 127.0.0.1. Every wait is bounded; every child is
//! killed when its `LocalCluster` is dropped, even on a failed assertion.

#![allow(dead_code)]

use bytes::Bytes;
use hyper::Method;
use raft_node::loadgen::client::{self, Response};
use raft_node::loadgen::cluster::LocalCluster;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_raft-node");

/// Generous bounds: CI machines are slow and shared.
pub const FORM: Duration = Duration::from_secs(20);
pub const REQ: Duration = Duration::from_secs(10);

/// Which network transport a test runs over.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Net {
    Tcp,
    /// TCP with mutual TLS.
    TcpTls,
    Quic,
}

/// A cluster of `ids` over `net`; for QUIC, a development PKI is written
/// into the cluster's directory first.
pub fn cluster(tag: &str, net: Net, ids: &[u64], extra: &[&str]) -> LocalCluster {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let mut cl = LocalCluster::new(BIN, tag, Vec::new()).expect("temp dir");
    if net == Net::Quic || net == Net::TcpTls {
        let pki = cl.dir().join("pki");
        let mut all_ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        // Room for nodes added later in the test.
        all_ids.extend(["4".to_owned(), "5".to_owned()]);
        let st = std::process::Command::new(BIN)
            .args(["gen-certs", "--out"])
            .arg(&pki)
            .args(["--ids", &all_ids.join(",")])
            .output()
            .expect("run gen-certs");
        assert!(st.status.success(), "gen-certs failed: {st:?}");
        let t = if net == Net::Quic { "quic" } else { "tcp" };
        args.extend(["--transport".into(), t.into()]);
        cl.common_args = args;
        cl.set_tls_dir(pki);
    } else {
        args.extend(["--transport".into(), "tcp".into()]);
        cl.common_args = args;
    }
    cl.start_initial(ids).expect("spawn nodes");
    cl
}

pub async fn req(addr: &str, method: Method, path: &str, body: &[u8]) -> Response {
    req_h(addr, method, path, &[], body).await
}

pub async fn req_h(
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    client::request(
        addr,
        method,
        path,
        headers,
        Bytes::copy_from_slice(body),
        REQ,
    )
    .await
    .unwrap_or_else(|e| panic!("{path} on {addr}: {e}"))
}

/// Follows 307s and retries 503s until `deadline`; returns the final
/// response (which may still be an error status if time ran out).
pub async fn req_follow(
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    within: Duration,
) -> Option<Response> {
    let deadline = Instant::now() + within;
    let mut target = addr.to_owned();
    let mut last = None;
    while Instant::now() < deadline {
        match client::request(
            &target,
            method.clone(),
            path,
            headers,
            Bytes::copy_from_slice(body),
            REQ,
        )
        .await
        {
            Ok(r) if r.status == 307 => {
                let loc = r.header("location").unwrap_or("").to_owned();
                let auth = loc
                    .strip_prefix("http://")
                    .and_then(|s| s.split('/').next())
                    .unwrap_or("")
                    .to_owned();
                assert!(!auth.is_empty(), "307 without a usable Location: {r:?}");
                target = auth;
                last = Some(r);
            }
            Ok(r) if r.status == 503 => {
                last = Some(r);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(r) => return Some(r),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    last
}

/// PUTs `value` at `key` through any node until it is acknowledged (200);
/// panics with the cluster's logs otherwise. Returns the JSON answer.
pub async fn put_ok(cl: &LocalCluster, via: u64, key: &str, value: &str) -> serde_json::Value {
    let r = req_follow(
        &cl.http(via),
        Method::PUT,
        &format!("/v1/kv/{key}"),
        &[],
        value.as_bytes(),
        FORM,
    )
    .await;
    match r {
        Some(r) if r.status == 200 => r.json(),
        other => panic!(
            "PUT {key} via node {via} failed: {other:?}\n{}",
            cl.log_tails(30)
        ),
    }
}

/// Polls until node `id` serves `key` == `value` with a stale (local) read.
pub async fn wait_value(cl: &LocalCluster, id: u64, key: &str, value: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let path = format!("/v1/kv/{key}?consistency=stale");
    loop {
        if let Ok(r) = client::request(
            &cl.http(id),
            Method::GET,
            &path,
            &[],
            Bytes::new(),
            Duration::from_secs(2),
        )
        .await
        {
            if r.status == 200 && r.body == value.as_bytes() {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "node {id} did not serve {key}={value} within {within:?}\n{}",
                cl.log_tails(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn leader(cl: &LocalCluster, among: &[u64]) -> u64 {
    match cl.wait_leader(among, FORM).await {
        Some(l) => l,
        None => panic!("no leader among {among:?}\n{}", cl.log_tails(40)),
    }
}
