//! The chaos clients: a minimal HTTP/1.1 client for the node's KV API that
//! can tell "definitely not sent" from "sent, answer lost", and the workload
//! loop that records every operation.
//!
//! A client opens a fresh connection per request so that a connection
//! refused (nothing sent, so the operation definitely failed) is never
//! confused with a connection lost after the request went out (outcome
//! unknown). It must never retry an operation as new after an unknown
//! outcome, and never classify an unknown outcome as ok or fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::history::{OpKind, OpRecord, Outcome};
use super::rng::{Pick, Rng};

/// Larger answers than this are not from a node (values are at most 1 MiB).
const MAX_ANSWER_BYTES: usize = 2 << 20;
/// Redirect hops followed before giving up (a 307 means nothing was done).
const MAX_REDIRECTS: usize = 4;

/// A node as the clients see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddr {
    pub id: u64,
    /// `host:port` of its HTTP API.
    pub http: String,
}

/// An HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: Bytes,
}

/// Why no answer came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No connection was made, so nothing was sent.
    NotSent(String),
    /// Sent (or possibly sent) and no answer within the deadline.
    Timeout,
    /// Sent (or possibly sent) and the connection broke.
    Lost(String),
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends one request on a fresh connection and reads the whole answer, all
/// within `deadline`.
pub async fn send(
    addr: &str,
    method: Method,
    path: &str,
    body: Bytes,
    headers: &[(&str, String)],
    deadline: tokio::time::Instant,
) -> Result<Answer, SendError> {
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(SendError::NotSent("connect timed out".into())),
        Ok(Err(e)) => return Err(SendError::NotSent(format!("connect: {e}"))),
        Ok(Ok(s)) => s,
    };
    // Latency matters more than packet count here; failure to set it is harmless.
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return Err(SendError::NotSent(format!("handshake: {e}"))),
        };
    let conn = AbortOnDrop(tokio::spawn(conn));
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr);
    for (name, value) in headers {
        req = req.header(*name, value.as_str());
    }
    let req = match req.body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => return Err(SendError::NotSent(format!("bad request: {e}"))),
    };
    let exchange = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| SendError::Lost(e.to_string()))?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| SendError::Lost(format!("reading answer: {e}")))?
            .to_bytes();
        Ok(Answer {
            status,
            location,
            body,
        })
    };
    let result = match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => Err(SendError::Timeout),
        Ok(r) => r,
    };
    drop(conn);
    result
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A KV request of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvRequest {
    Read {
        key: String,
        stale: bool,
    },
    Write {
        key: String,
        value: String,
    },
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
}

impl KvRequest {
    fn kind(&self) -> OpKind {
        match self {
            KvRequest::Read { .. } => OpKind::Read,
            KvRequest::Write { .. } => OpKind::Write,
            KvRequest::Cas { .. } => OpKind::Cas,
        }
    }

    fn key(&self) -> &str {
        match self {
            KvRequest::Read { key, .. }
            | KvRequest::Write { key, .. }
            | KvRequest::Cas { key, .. } => key,
        }
    }

    fn path(&self) -> String {
        let base = format!("/v1/kv/{}", encode(self.key()));
        match self {
            KvRequest::Read { stale: true, .. } => format!("{base}?consistency=stale"),
            KvRequest::Cas { expected, .. } => {
                format!(
                    "{base}?expect={}",
                    expected.as_deref().map(encode).unwrap_or_default()
                )
            }
            _ => base,
        }
    }
}

/// What one request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    pub outcome: Outcome,
    /// Read: the value returned (`None`: absent).
    pub value: Option<String>,
    /// Refused CAS: the current value the server reported.
    pub current: Option<Option<String>>,
    pub status: Option<u16>,
    pub answered_by: Option<u64>,
    pub error: Option<String>,
}

/// Classifies a final (non-redirect) answer. See the module docs: only what
/// the server states is taken as known.
pub fn classify(kind: OpKind, answer: &Answer) -> Executed {
    let json: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    let field = |name: &str| json.as_ref().and_then(|j| j.get(name));
    let error_text = || {
        field("error")
            .and_then(|e| e.as_str())
            .map(str::to_owned)
            .or_else(|| {
                Some(
                    String::from_utf8_lossy(&answer.body)
                        .chars()
                        .take(200)
                        .collect(),
                )
            })
    };
    let mut ex = Executed {
        outcome: Outcome::Unknown,
        value: None,
        current: None,
        status: Some(answer.status),
        answered_by: None,
        error: None,
    };
    match (kind, answer.status) {
        (OpKind::Read, 200) => {
            ex.outcome = Outcome::Ok;
            ex.value = Some(String::from_utf8_lossy(&answer.body).into_owned());
        }
        (OpKind::Read, 404) => ex.outcome = Outcome::Ok,
        (OpKind::Write | OpKind::Cas, 200) => ex.outcome = Outcome::Ok,
        (OpKind::Cas, 409) => {
            ex.outcome = Outcome::Fail;
            ex.current = match field("current") {
                Some(serde_json::Value::Null) => Some(None),
                Some(serde_json::Value::String(s)) => Some(Some(s.clone())),
                _ => None,
            };
            ex.error = Some("conflict".into());
        }
        (_, 400..=499) => {
            ex.outcome = Outcome::Fail;
            ex.error = error_text();
        }
        (_, 503 | 504) => {
            let unknown = field("outcome").and_then(|o| o.as_str()) == Some("unknown");
            // The contract marks every answer whose write may have happened;
            // anything else (no leader, shutting down) was never proposed.
            ex.outcome = if unknown {
                Outcome::Unknown
            } else {
                Outcome::Fail
            };
            ex.error = error_text();
        }
        _ => {
            ex.outcome = Outcome::Unknown;
            ex.error = error_text();
        }
    }
    ex
}

/// Splits a `Location` header into (`host:port`, path-and-query); a relative
/// location keeps `current`'s authority.
pub fn parse_location(location: &str, current: &str) -> Option<(String, String)> {
    if let Some(rest) = location.strip_prefix("http://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        (!authority.is_empty()).then(|| (authority.to_string(), path.to_string()))
    } else if location.starts_with('/') {
        Some((current.to_string(), location.to_string()))
    } else {
        None
    }
}

/// Executes one request against `first`, following 307/308 redirects.
pub async fn execute(
    nodes: &[NodeAddr],
    first: &NodeAddr,
    req: &KvRequest,
    timeout: Duration,
    request_id: &str,
) -> Executed {
    let deadline = tokio::time::Instant::now() + timeout;
    let kind = req.kind();
    let (method, body) = match req {
        KvRequest::Read { .. } => (Method::GET, Bytes::new()),
        KvRequest::Write { value, .. } | KvRequest::Cas { new: value, .. } => {
            (Method::PUT, Bytes::from(value.clone()))
        }
    };
    let headers = [("x-request-id", request_id.to_string())];
    let mut addr = first.http.clone();
    let mut path = req.path();
    for hop in 0..=MAX_REDIRECTS {
        let answered_by = nodes.iter().find(|n| n.http == addr).map(|n| n.id);
        match send(
            &addr,
            method.clone(),
            &path,
            body.clone(),
            &headers,
            deadline,
        )
        .await
        {
            Ok(a) if matches!(a.status, 307 | 308) => {
                // Not executed by this node; the target decides the outcome.
                let target = a.location.as_deref().and_then(|l| parse_location(l, &addr));
                match target {
                    Some((next_addr, next_path)) if hop < MAX_REDIRECTS => {
                        addr = next_addr;
                        path = next_path;
                    }
                    _ => {
                        return Executed {
                            outcome: Outcome::Fail,
                            value: None,
                            current: None,
                            status: Some(a.status),
                            answered_by,
                            error: Some(format!("redirect not followed: {:?}", a.location)),
                        }
                    }
                }
            }
            Ok(a) => {
                let mut ex = classify(kind, &a);
                ex.answered_by = answered_by;
                return ex;
            }
            Err(e) => {
                let (outcome, error) = match e {
                    SendError::NotSent(why) => (Outcome::Fail, why),
                    SendError::Timeout => (Outcome::Unknown, "timeout".to_string()),
                    SendError::Lost(why) => (Outcome::Unknown, why),
                };
                return Executed {
                    outcome,
                    value: None,
                    current: None,
                    status: None,
                    answered_by,
                    error: Some(error),
                };
            }
        }
    }
    unreachable!("the loop returns on its last hop")
}

/// The shared record all clients append to.
#[derive(Debug, Default)]
pub struct Recorder {
    ops: Mutex<Vec<OpRecord>>,
    /// Set once the history is as long as it may grow.
    pub full: AtomicBool,
}

impl Recorder {
    /// Appends an operation unless the history holds `max_ops` already.
    pub fn push(&self, op: OpRecord, max_ops: usize) {
        let mut ops = self
            .ops
            .lock()
            .expect("no client panics while holding the history");
        if ops.len() >= max_ops {
            self.full.store(true, Ordering::Relaxed);
            return;
        }
        ops.push(op);
    }

    /// Takes the history, ordered by invocation time, with ids renumbered to
    /// match that order.
    pub fn take(&self) -> Vec<OpRecord> {
        let mut ops = std::mem::take(
            &mut *self
                .ops
                .lock()
                .expect("no client panics while holding the history"),
        );
        ops.sort_by_key(|o| (o.invoke_ns, o.client));
        for (i, op) in ops.iter_mut().enumerate() {
            op.id = i;
        }
        ops
    }
}

/// How the workload behaves.
#[derive(Clone, Debug)]
pub struct Workload {
    pub keys: usize,
    pub request_timeout: Duration,
    /// Pause between one client's operations.
    pub think: Duration,
    /// Fraction of reads sent with `consistency=stale`.
    pub stale_reads: f64,
    pub max_ops: usize,
}

/// Key name of key number `i`.
pub fn key_name(i: usize) -> String {
    format!("k{i}")
}

/// One client: issues random reads, writes and CAS on random keys at random
/// nodes until `stop` is set, recording each operation. Written values are
/// `c{client}-{n}`, unique across the run.
#[allow(clippy::too_many_arguments)]
pub async fn run_client(
    client: usize,
    seed: u64,
    nodes: Arc<Vec<NodeAddr>>,
    work: Workload,
    start: Instant,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed ^ (client as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // The last value this client saw per key: a likely CAS expectation.
    let mut seen: Vec<Option<String>> = vec![None; work.keys.max(1)];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && !recorder.full.load(Ordering::Relaxed) {
        let k = rng.below(work.keys.max(1) as u64) as usize;
        let key = key_name(k);
        let node = &nodes[rng.below(nodes.len() as u64) as usize];
        n += 1;
        let fresh = format!("c{client}-{n}");
        let roll = rng.below(100);
        let req = if roll < 50 {
            KvRequest::Read {
                key: key.clone(),
                stale: rng.chance(work.stale_reads),
            }
        } else if roll < 75 {
            KvRequest::Write {
                key: key.clone(),
                value: fresh.clone(),
            }
        } else {
            // Mostly the value last seen, sometimes "absent" to exercise
            // create-if-absent.
            let expected = if rng.chance(0.15) {
                None
            } else {
                seen[k].clone()
            };
            KvRequest::Cas {
                key: key.clone(),
                expected,
                new: fresh.clone(),
            }
        };
        let invoke = start.elapsed();
        let ex = execute(&nodes, node, &req, work.request_timeout, &fresh).await;
        let complete = start.elapsed();
        let (f, value, expected, stale) = match &req {
            KvRequest::Read { stale, .. } => (OpKind::Read, ex.value.clone(), None, *stale),
            KvRequest::Write { value, .. } => (OpKind::Write, Some(value.clone()), None, false),
            KvRequest::Cas { expected, new, .. } => (
                OpKind::Cas,
                Some(new.clone()),
                Some(expected.clone()),
                false,
            ),
        };
        match (&req, ex.outcome) {
            (KvRequest::Read { .. }, Outcome::Ok) => seen[k] = ex.value.clone(),
            (KvRequest::Write { .. } | KvRequest::Cas { .. }, Outcome::Ok) => {
                seen[k] = value.clone()
            }
            (KvRequest::Cas { .. }, Outcome::Fail) => {
                if let Some(cur) = &ex.current {
                    seen[k] = cur.clone();
                }
            }
            _ => {}
        }
        recorder.push(
            OpRecord {
                id: 0,
                client,
                node: node.id,
                answered_by: ex.answered_by,
                key,
                f,
                value,
                expected,
                current: ex.current,
                outcome: ex.outcome,
                invoke_ns: nanos(invoke),
                complete_ns: nanos(complete),
                status: ex.status,
                error: ex.error,
                stale,
                is_final: false,
            },
            work.max_ops,
        );
        if !work.think.is_zero() {
            tokio::time::sleep(work.think).await;
        }
    }
}

/// A duration as whole nanoseconds (saturating; a run is far shorter than
/// 584 years).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            location: None,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn classification_follows_the_contract() {
        let ok_read = classify(OpKind::Read, &answer(200, "v1"));
        assert_eq!(
            (ok_read.outcome, ok_read.value.as_deref()),
            (Outcome::Ok, Some("v1"))
        );
        let absent = classify(OpKind::Read, &answer(404, r#"{"error":"not found"}"#));
        assert_eq!((absent.outcome, absent.value), (Outcome::Ok, None));
        assert_eq!(
            classify(OpKind::Write, &answer(200, r#"{"index":3,"term":1}"#)).outcome,
            Outcome::Ok
        );

        let conflict = classify(
            OpKind::Cas,
            &answer(409, r#"{"error":"conflict","current":"x"}"#),
        );
        assert_eq!(conflict.outcome, Outcome::Fail);
        assert_eq!(conflict.current, Some(Some("x".into())));
        let conflict_absent = classify(
            OpKind::Cas,
            &answer(409, r#"{"error":"conflict","current":null}"#),
        );
        assert_eq!(conflict_absent.current, Some(None));
        let conflict_garbled = classify(OpKind::Cas, &answer(409, "garbage"));
        assert_eq!(
            (conflict_garbled.outcome, conflict_garbled.current),
            (Outcome::Fail, None)
        );

        assert_eq!(
            classify(OpKind::Write, &answer(400, r#"{"error":"bad key"}"#)).outcome,
            Outcome::Fail
        );
        let unknown = classify(
            OpKind::Write,
            &answer(504, r#"{"error":"timeout","outcome":"unknown"}"#),
        );
        assert_eq!(unknown.outcome, Outcome::Unknown);
        assert_eq!(unknown.error.as_deref(), Some("timeout"));
        let unknown503 = classify(
            OpKind::Cas,
            &answer(503, r#"{"error":"leader lost","outcome":"unknown"}"#),
        );
        assert_eq!(unknown503.outcome, Outcome::Unknown);
        assert_eq!(
            classify(OpKind::Write, &answer(503, r#"{"error":"no leader"}"#)).outcome,
            Outcome::Fail
        );
        // Anything the contract does not cover is not assumed to have failed.
        assert_eq!(
            classify(OpKind::Write, &answer(500, "boom")).outcome,
            Outcome::Unknown
        );
        assert_eq!(
            classify(OpKind::Write, &answer(502, "")).outcome,
            Outcome::Unknown
        );
    }

    #[test]
    fn locations_parse_or_are_refused() {
        assert_eq!(
            parse_location("http://127.0.0.1:8002/v1/kv/k?expect=a", "127.0.0.1:8001"),
            Some(("127.0.0.1:8002".into(), "/v1/kv/k?expect=a".into()))
        );
        assert_eq!(
            parse_location("/v1/kv/k", "127.0.0.1:8001"),
            Some(("127.0.0.1:8001".into(), "/v1/kv/k".into()))
        );
        assert_eq!(parse_location("ftp://x/y", "a"), None);
        assert_eq!(parse_location("http:///y", "a"), None);
    }

    #[test]
    fn paths_encode_keys_and_expectations() {
        let cas = KvRequest::Cas {
            key: "a b".into(),
            expected: Some("x&y".into()),
            new: "z".into(),
        };
        assert_eq!(cas.path(), "/v1/kv/a%20b?expect=x%26y");
        let create = KvRequest::Cas {
            key: "k".into(),
            expected: None,
            new: "z".into(),
        };
        assert_eq!(create.path(), "/v1/kv/k?expect=");
        let stale = KvRequest::Read {
            key: "k".into(),
            stale: true,
        };
        assert_eq!(stale.path(), "/v1/kv/k?consistency=stale");
    }

    #[tokio::test]
    async fn refused_connection_is_a_definite_failure() {
        // Bind then drop a listener: its port refuses connections.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
            l.local_addr().expect("bound").port()
        };
        let node = NodeAddr {
            id: 1,
            http: format!("127.0.0.1:{port}"),
        };
        let req = KvRequest::Write {
            key: "k".into(),
            value: "v".into(),
        };
        let ex = execute(
            std::slice::from_ref(&node),
            &node,
            &req,
            Duration::from_secs(5),
            "r1",
        )
        .await;
        assert_eq!(ex.outcome, Outcome::Fail, "{ex:?}");
    }

    #[tokio::test]
    async fn silent_server_is_an_unknown_outcome_and_redirects_are_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Node 1 redirects to node 2; node 2 reads the request and never answers.
        let l1 = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let a1 = l1.local_addr().expect("bound").to_string();
        let a2 = l2.local_addr().expect("bound").to_string();
        let loc = format!("http://{a2}/v1/kv/k");
        let redirector = tokio::spawn(async move {
            let (mut s, _) = l1.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: {loc}\r\ncontent-length: 0\r\n\r\n"
            );
            s.write_all(resp.as_bytes()).await.expect("write");
            s
        });
        let silent = tokio::spawn(async move {
            let (mut s, _) = l2.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).await.expect("read");
            (s, String::from_utf8_lossy(&buf[..n]).into_owned())
        });
        let nodes = vec![NodeAddr { id: 1, http: a1 }, NodeAddr { id: 2, http: a2 }];
        let req = KvRequest::Write {
            key: "k".into(),
            value: "v".into(),
        };
        let ex = execute(&nodes, &nodes[0], &req, Duration::from_millis(300), "r1").await;
        assert_eq!(ex.outcome, Outcome::Unknown, "{ex:?}");
        assert_eq!(ex.answered_by, Some(2));
        let (_keep_open, seen) = silent.await.expect("silent server");
        assert!(seen.starts_with("PUT /v1/kv/k HTTP/1.1"), "{seen}");
        assert!(
            seen.to_ascii_lowercase().contains("x-request-id: r1"),
            "{seen}"
        );
        drop(redirector.await.expect("redirector"));
    }
}
