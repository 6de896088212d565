//! A small HTTP/1.1 client for talking to nodes: status, key-value calls and
//! admin calls, each bounded in time and in the size of what it reads.
//!
//! It knows the shapes of the node API's JSON (the contract in the
//! project's API notes) but must never interpret them beyond what a command
//! shows or checks.

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::net::TcpStream;

/// Nothing a node answers is larger than a value (1 MiB by default) plus
/// framing; refuse anything much bigger rather than buffer it.
const MAX_BODY: usize = 4 << 20;
/// Redirects followed by [`call_following`] before giving up.
const MAX_REDIRECTS: usize = 5;

/// What a node answered.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| anyhow!("answer is not JSON ({e}): {}", self.text()))
    }

    /// The body as text, cut to a length fit for one line of output.
    pub fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        let s = s.trim();
        if s.chars().count() > 200 {
            format!("{}...", s.chars().take(200).collect::<String>())
        } else {
            s.to_owned()
        }
    }

    /// `{"error": "..."}`'s message, or the body as text.
    pub fn error_message(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| self.text())
    }
}

/// Aborts the connection task when the call is dropped (on timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request to `addr` (`host:port`), bounded by `timeout` as a whole.
pub async fn call(
    addr: &str,
    method: Method,
    path: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<Reply> {
    match tokio::time::timeout(timeout, call_unbounded(addr, method, path, body)).await {
        Ok(r) => r,
        Err(_) => bail!("{addr} did not answer within {} ms", timeout.as_millis()),
    }
}

async fn call_unbounded(addr: &str, method: Method, path: &str, body: Bytes) -> Result<Reply> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake with {addr} failed"))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let is_json = body.first() == Some(&b'{');
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr)
        .header(CONTENT_LENGTH, body.len());
    if is_json {
        req = req.header(CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(body)).context("invalid request")?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("request to {addr} failed"))?;
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = resp.status().as_u16();
    let location = header(LOCATION);
    let retry_after = header(RETRY_AFTER);
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the answer from {addr} failed: {e}"))?
        .to_bytes();
    Ok(Reply {
        status,
        location,
        retry_after,
        body,
    })
}

/// Like [`call`], following 307/308 redirects (a follower pointing at the
/// leader) up to a small bound. Each hop gets the whole `timeout`.
pub async fn call_following(
    addr: &str,
    method: Method,
    path: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<Reply> {
    let (mut addr, mut path) = (addr.to_owned(), path.to_owned());
    for _ in 0..=MAX_REDIRECTS {
        let reply = call(&addr, method.clone(), &path, body.clone(), timeout).await?;
        match (reply.status, &reply.location) {
            (307 | 308, Some(loc)) => {
                (addr, path) = split_location(loc, &addr)
                    .ok_or_else(|| anyhow!("{addr} redirected to an unusable location: {loc}"))?;
            }
            _ => return Ok(reply),
        }
    }
    bail!("more than {MAX_REDIRECTS} redirects starting at {addr}{path}")
}

/// Splits a `Location` into (`host:port`, path); a bare path stays on `addr`.
fn split_location(loc: &str, addr: &str) -> Option<(String, String)> {
    if loc.starts_with('/') {
        return Some((addr.to_owned(), loc.to_owned()));
    }
    let rest = loc.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!host.is_empty()).then(|| (host.to_owned(), path.to_owned()))
}

/// A node's `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeStatus {
    /// Its id.
    pub id: u64,
    /// follower | pre_candidate | candidate | leader | learner.
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Its commit index.
    #[serde(default)]
    pub commit_index: u64,
    /// Its applied index.
    #[serde(default)]
    pub applied_index: u64,
    /// Its last log index.
    #[serde(default)]
    pub last_log_index: u64,
    /// The voters it knows of.
    #[serde(default)]
    pub voters: Vec<u64>,
    /// The learners it knows of.
    #[serde(default)]
    pub learners: Vec<u64>,
    /// Peers' addresses by id.
    #[serde(default)]
    pub peers: BTreeMap<String, serde_json::Value>,
    /// The peers this node has cut itself from (fault injection).
    #[serde(default)]
    pub isolated_from: Vec<u64>,
}

impl NodeStatus {
    /// Whether it claims to lead.
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }
}

/// `GET /v1/status` on `addr`.
pub async fn status(addr: &str, timeout: Duration) -> Result<NodeStatus> {
    let reply = call(addr, Method::GET, "/v1/status", Bytes::new(), timeout).await?;
    if reply.status != 200 {
        bail!(
            "{addr} answered {} to GET /v1/status: {}",
            reply.status,
            reply.error_message()
        );
    }
    serde_json::from_slice(&reply.body).map_err(|e| {
        anyhow!(
            "{addr} sent a status that does not parse ({e}): {}",
            reply.text()
        )
    })
}

/// `POST /v1/admin/<what>` with a JSON body; an error unless 200.
pub async fn admin(
    addr: &str,
    what: &str,
    body: serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let path = format!("/v1/admin/{what}");
    let reply = call(
        addr,
        Method::POST,
        &path,
        Bytes::from(body.to_string()),
        timeout,
    )
    .await?;
    if reply.status != 200 {
        bail!(
            "{addr} answered {} to POST {path}: {}",
            reply.status,
            reply.error_message()
        );
    }
    reply.json()
}

/// Percent-encodes a key for a URL path segment.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Serves each canned answer to one connection, in order.
    async fn serve(answers: Vec<String>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            for answer in answers {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        addr
    }

    fn answer(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn parses_a_status() {
        let body = r#"{"id":1,"role":"leader","term":5,"leader":1,"commit_index":9,"applied_index":9,
            "last_log_index":9,"voters":[1,2,3],"learners":[],
            "peers":{"2":{"raft_addr":"a","http_addr":"b"}},"isolated_from":[3]}"#;
        let addr = serve(vec![answer("200 OK", "", body)]).await;
        let s = status(&addr, Duration::from_secs(5)).await.unwrap();
        assert!(s.is_leader());
        assert_eq!((s.term, s.leader, s.commit_index), (5, Some(1), 9));
        assert_eq!(s.isolated_from, vec![3]);
    }

    #[tokio::test]
    async fn admin_errors_carry_the_node_message() {
        let addr = serve(vec![answer(
            "403 Forbidden",
            "",
            r#"{"error":"fault injection is disabled"}"#,
        )])
        .await;
        let err = admin(&addr, "heal", serde_json::json!({}), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("403"), "{err}");
        assert!(
            err.to_string().contains("fault injection is disabled"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn follows_redirects_to_the_leader() {
        let leader = serve(vec![answer("200 OK", "", "value")]).await;
        let follower = serve(vec![answer(
            "307 Temporary Redirect",
            &format!("location: http://{leader}/v1/kv/k\r\n"),
            "",
        )])
        .await;
        let r = call_following(
            &follower,
            Method::GET,
            "/v1/kv/k",
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"value"[..]));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(s);
        });
        let err = call(
            &addr,
            Method::GET,
            "/v1/status",
            Bytes::new(),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("did not answer within 200 ms"),
            "{err}"
        );
        held.abort();
    }

    #[tokio::test]
    async fn oversized_answers_are_refused() {
        let big = "x".repeat(MAX_BODY + 1);
        let addr = serve(vec![answer("200 OK", "", &big)]).await;
        let err = call(
            &addr,
            Method::GET,
            "/",
            Bytes::new(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("reading the answer"), "{err}");
    }

    #[test]
    fn locations_and_keys() {
        assert_eq!(
            split_location("http://127.0.0.1:8002/v1/kv/a?x=1", "h:1"),
            Some(("127.0.0.1:8002".into(), "/v1/kv/a?x=1".into()))
        );
        assert_eq!(
            split_location("/v1/kv/a", "h:1"),
            Some(("h:1".into(), "/v1/kv/a".into()))
        );
        assert_eq!(split_location("https://x/y", "h:1"), None);
        assert_eq!(split_location("http:///y", "h:1"), None);
        assert_eq!(encode_key("a b/ü"), "a%20b%2F%C3%BC");
    }
}
