//! A deliberately broken stand-in for `raft-node` that has the seed story's
//! bug: when it cannot see its peers it makes itself leader without asking
//! anyone for a vote.
//!
//! It exists only so that xtask's tests can prove the split-brain demo
//! *fails* when a node claims leadership without a majority; a demo that
//! passes against everything proves nothing. It speaks just enough of the
//! node HTTP API for the demo (status, isolate, heal, put, get) and keeps
//! everything in memory. It must never be mistaken for a node: it holds no
//! Raft at all and talks to no peer.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[derive(Debug)]
struct Node {
    id: u64,
    peers: Vec<u64>,
    role: &'static str,
    term: u64,
    leader: Option<u64>,
    isolated: BTreeSet<u64>,
    kv: BTreeMap<String, Bytes>,
    index: u64,
}

type Shared = Arc<Mutex<Node>>;

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    r
}

fn json_reply(status: u16, v: Value) -> Response<Full<Bytes>> {
    reply(status, v.to_string())
}

fn lock(node: &Shared) -> std::sync::MutexGuard<'_, Node> {
    node.lock().unwrap_or_else(|e| e.into_inner())
}

async fn handle(node: Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(json_reply(413, json!({"error": "body too large"}))),
    };
    let mut n = lock(&node);
    let answer = match (method, path.as_str()) {
        (Method::GET, "/v1/status") => json_reply(
            200,
            json!({
                "id": n.id, "role": n.role, "term": n.term, "leader": n.leader,
                "commit_index": n.index, "applied_index": n.index, "last_log_index": n.index,
                "voters": [], "learners": [], "peers": {},
                "isolated_from": n.isolated.iter().collect::<Vec<_>>(),
            }),
        ),
        (Method::POST, "/v1/admin/isolate") => {
            let peers: Vec<u64> = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| serde_json::from_value(v["peers"].clone()).ok())
                .filter(|p: &Vec<u64>| !p.is_empty())
                .unwrap_or_else(|| n.peers.clone());
            n.isolated.extend(peers);
            let node = node.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut n = lock(&node);
                if n.peers.iter().all(|p| n.isolated.contains(p)) {
                    // The seed's bug: "I can't see the leader, I must be leader!"
                    n.term += 1;
                    n.role = "leader";
                    n.leader = Some(n.id);
                }
            });
            json_reply(200, json!({"ok": true}))
        }
        (Method::POST, "/v1/admin/heal") => {
            n.isolated.clear();
            json_reply(200, json!({"ok": true}))
        }
        (Method::PUT, p) if p.starts_with("/v1/kv/") => {
            if n.role == "leader" {
                n.index += 1;
                n.kv.insert(p["/v1/kv/".len()..].to_owned(), body);
                json_reply(200, json!({"index": n.index, "term": n.term}))
            } else {
                json_reply(503, json!({"error": "no leader"}))
            }
        }
        (Method::GET, p) if p.starts_with("/v1/kv/") => match n.kv.get(&p["/v1/kv/".len()..]) {
            Some(v) => reply(200, v.clone()),
            None => json_reply(404, json!({"error": "not found"})),
        },
        _ => json_reply(404, json!({"error": "no such route"})),
    };
    Ok(answer)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(id), Some(http)) = (
        value("--id").and_then(|v| v.parse::<u64>().ok()),
        value("--http-addr"),
    ) else {
        eprintln!("split-brain-node: needs --id N and --http-addr HOST:PORT");
        std::process::exit(2);
    };
    let peers: Vec<u64> = args
        .windows(2)
        .filter(|w| w[0] == "--peer")
        .filter_map(|w| w[1].split_once('=')?.0.parse().ok())
        .filter(|&p| p != id)
        .collect();
    // Node 1 starts as leader of term 1 and the others follow it, so the
    // demo sees a healthy cluster before the cut.
    let node: Shared = Arc::new(Mutex::new(Node {
        id,
        peers,
        role: if id == 1 { "leader" } else { "follower" },
        term: 1,
        leader: Some(1),
        isolated: BTreeSet::new(),
        kv: BTreeMap::new(),
        index: 0,
    }));
    let listener = match tokio::net::TcpListener::bind(&http).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("split-brain-node: cannot listen on {http}: {e}");
            std::process::exit(2);
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(node.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
