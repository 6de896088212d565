//! The HTTP API (see DESIGN.md, "the client contract", and the binary's
//! API notes): key-value reads and writes, status, metrics, the watch
//! stream and the admin endpoints.
//!
//! Rules this module keeps:
//! - every error is JSON `{"error": "..."}` with a 4xx/5xx status, whatever
//!   produced it (a handler, an extractor, an unknown route);
//! - a write is answered 200 only once committed and applied, and a write
//!   whose fate is unknown is answered 503/504 with `"outcome":"unknown"`;
//! - every wait is bounded by the request timeout;
//! - request bodies are read only up to the configured limit.

use super::faults::FaultControl;
use super::kv::{
    AppliedEvent, Expect, KvCommand, KvCounters, KvOp, KvOutcome, KvReader, KvResponse, PeerAddrs,
    MAX_REQUEST_ID_BYTES,
};
use super::metrics::{metric, HttpMetrics};
use crate::runtime::{Error as RtError, Event, NodeStatus, RaftHandle};
use crate::wal::WalMetrics;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use raft_core::{NodeId, Role};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Longest accepted key, in bytes (after percent-decoding).
pub const MAX_KEY_BYTES: usize = 1024;

/// How long a request waits for a leader to become known before 503.
const LEADER_WAIT_POLL: Duration = Duration::from_millis(5);

/// Everything a handler needs.
#[derive(Debug)]
pub struct ApiState {
    /// This node.
    pub id: NodeId,
    /// The runtime.
    pub handle: RaftHandle,
    /// Reads of the key-value map.
    pub kv: KvReader,
    /// Applied writes, for watchers.
    pub kv_events: broadcast::Sender<AppliedEvent>,
    /// State machine counters.
    pub kv_counters: Arc<KvCounters>,
    /// Fault injection and per-peer traffic counters.
    pub faults: FaultControl,
    /// Whether the fault-injection endpoints are enabled.
    pub fault_injection: bool,
    /// Member addresses known from the command line.
    pub local_peers: BTreeMap<u64, PeerAddrs>,
    /// Storage metrics (absent for in-memory storage).
    pub wal: Option<Arc<WalMetrics>>,
    /// The HTTP layer's counters.
    pub metrics: HttpMetrics,
    /// Bound on every wait.
    pub request_timeout: Duration,
    /// Largest accepted value.
    pub max_value_bytes: usize,
    /// The transport's name, for metrics.
    pub transport: &'static str,
    /// Snapshots taken here / installed from a leader (counted from events).
    pub snapshots_taken: std::sync::atomic::AtomicU64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: std::sync::atomic::AtomicU64,
    /// Set when the node starts shutting down: watch streams close.
    pub closing: tokio::sync::watch::Sender<bool>,
}

type St = Arc<ApiState>;

impl ApiState {
    /// Tells long-lived streams (watchers) to close.
    pub fn begin_shutdown(&self) {
        let _ = self.closing.send(true);
    }

    /// The address book: replicated entries win over the command line's.
    pub fn peers(&self) -> BTreeMap<u64, PeerAddrs> {
        let mut all = self.local_peers.clone();
        self.kv.with(|s| {
            for (id, p) in s.peers() {
                all.insert(*id, p.clone());
            }
        });
        all
    }

    fn http_addr_of(&self, id: NodeId) -> Option<String> {
        self.peers().get(&id.0).map(|p| p.http_addr.clone())
    }

    /// Counts snapshot events for metrics; runs until the node stops.
    pub async fn count_snapshots(self: Arc<Self>) {
        let mut rx = self.handle.subscribe();
        loop {
            match rx.recv().await {
                Ok(Event::Snapshot { installed, .. }) => {
                    let c = if installed {
                        &self.snapshots_installed
                    } else {
                        &self.snapshots_taken
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Stopped { .. }) | Err(broadcast::error::RecvError::Closed) => return,
                _ => {}
            }
        }
    }
}

/// A rejected input: a status and a message, rendered as a JSON error.
#[derive(Debug)]
struct Rejection(StatusCode, String);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        err(self.0, self.1)
    }
}

fn bad(msg: impl Into<String>) -> Rejection {
    Rejection(StatusCode::BAD_REQUEST, msg.into())
}

/// A JSON error response.
fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": msg.into() }))).into_response()
}

fn err_json(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn unavailable(msg: impl Into<String>, extra: Option<(&str, &str)>) -> Response {
    let mut body = json!({ "error": msg.into() });
    if let Some((k, v)) = extra {
        body[k] = Value::String(v.to_owned());
    }
    let mut r = err_json(StatusCode::SERVICE_UNAVAILABLE, body);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn unknown_outcome(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut r = err_json(status, json!({ "error": msg.into(), "outcome": "unknown" }));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// Builds the router.
pub fn router(state: St) -> Router {
    Router::new()
        .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
        .route("/v1/kv", axum::routing::any(empty_key))
        .route("/v1/kv/", axum::routing::any(empty_key))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics_text))
        .route("/v1/watch", get(watch))
        .route("/v1/admin/learners", post(admin_learners))
        .route("/v1/admin/promote", post(admin_promote))
        .route("/v1/admin/remove", post(admin_remove))
        .route("/v1/admin/transfer", post(admin_transfer))
        .route("/v1/admin/isolate", post(admin_isolate))
        .route("/v1/admin/heal", post(admin_heal))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> Response {
    err(
        StatusCode::NOT_FOUND,
        format!("no such route: {method} {}", uri.path()),
    )
}

async fn empty_key() -> Response {
    err(StatusCode::BAD_REQUEST, "the key must not be empty")
}

/// Times each routed request and counts it under its route.
async fn track(State(st): State<St>, req: Request, next: Next) -> Response {
    let route = match req.extensions().get::<MatchedPath>().map(|m| m.as_str()) {
        Some("/v1/kv/{*key}") => match *req.method() {
            Method::PUT => "kv_put",
            Method::GET => "kv_get",
            Method::DELETE => "kv_delete",
            _ => "other",
        },
        Some("/v1/status") => "status",
        Some("/metrics") => "metrics",
        Some("/v1/watch") => "watch",
        Some("/v1/admin/transfer") => "admin_transfer",
        Some("/v1/admin/isolate") | Some("/v1/admin/heal") => "admin_faults",
        Some(p) if p.starts_with("/v1/admin/") => "admin_membership",
        _ => "other",
    };
    let t0 = Instant::now();
    let resp = next.run(req).await;
    st.metrics
        .request(route, resp.status().as_u16(), t0.elapsed());
    resp
}

/// Turns any error response that is not JSON (axum's own rejections: 405,
/// a failed WebSocket upgrade...) into a JSON one with the same status and
/// headers.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let msg = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    let body = serde_json::to_vec(&json!({ "error": msg })).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

// ---------------------------------------------------------------------------
// Input validation

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s`; `plus_is_space` for query strings.
fn percent_decode(s: &str, plus_is_space: bool) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex);
                let lo = b.get(i + 2).copied().and_then(hex);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h * 16 + l),
                    _ => return Err("invalid percent-encoding".into()),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The key of a `/v1/kv/{key}` path: one non-empty UTF-8 segment of at
/// most [`MAX_KEY_BYTES`] bytes.
fn parse_key(path: &str) -> Result<String, Rejection> {
    let raw = path.strip_prefix("/v1/kv/").unwrap_or("");
    if raw.is_empty() {
        return Err(bad("the key must not be empty"));
    }
    if raw.contains('/') {
        return Err(bad(
            "the key must be a single path segment (encode '/' as %2F)",
        ));
    }
    if raw.len() > 3 * MAX_KEY_BYTES {
        return Err(bad(format!("the key is longer than {MAX_KEY_BYTES} bytes")));
    }
    let bytes = percent_decode(raw, false).map_err(|e| bad(format!("bad key: {e}")))?;
    if bytes.len() > MAX_KEY_BYTES {
        return Err(bad(format!(
            "the key is {} bytes long; the limit is {MAX_KEY_BYTES}",
            bytes.len()
        )));
    }
    String::from_utf8(bytes).map_err(|_| bad("the key is not valid UTF-8"))
}

/// Query parameters, each at most once, from an allowed set.
fn parse_query(q: Option<&str>, allowed: &[&str]) -> Result<BTreeMap<String, Vec<u8>>, Rejection> {
    let mut out = BTreeMap::new();
    let Some(q) = q else { return Ok(out) };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = String::from_utf8(
            percent_decode(k, true).map_err(|e| bad(format!("bad query parameter: {e}")))?,
        )
        .map_err(|_| bad("query parameter names must be UTF-8"))?;
        if !allowed.contains(&k.as_str()) {
            return Err(bad(format!(
                "unknown query parameter '{k}' (allowed here: {})",
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        let v = percent_decode(v, true)
            .map_err(|e| bad(format!("bad value for query parameter '{k}': {e}")))?;
        if out.insert(k.clone(), v).is_some() {
            return Err(bad(format!("query parameter '{k}' given more than once")));
        }
    }
    Ok(out)
}

fn request_id(headers: &HeaderMap) -> Result<Option<String>, Rejection> {
    let Some(v) = headers.get("x-request-id") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| bad("X-Request-Id must be printable ASCII"))?;
    if s.is_empty() || s.len() > MAX_REQUEST_ID_BYTES {
        return Err(bad(format!(
            "X-Request-Id must be 1 to {MAX_REQUEST_ID_BYTES} bytes long"
        )));
    }
    Ok(Some(s.to_owned()))
}

fn too_large(limit: usize) -> Response {
    err(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than the limit of {limit} bytes"),
    )
}

/// Reads a body of at most `limit` bytes.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large(limit));
        }
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return too_large(limit);
            }
            src = s.source();
        }
        err(
            StatusCode::BAD_REQUEST,
            format!("could not read the request body: {e}"),
        )
    })
}

// ---------------------------------------------------------------------------
// Leader discovery

enum LeaderCheck {
    /// This node leads.
    Here,
    /// Another node leads; the response is the redirect (or an error if
    /// its address is unknown).
    Elsewhere(Response),
}

fn redirect(st: &ApiState, leader: NodeId, uri: &Uri) -> Response {
    match st.http_addr_of(leader) {
        Some(addr) => {
            let pq = uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or_else(|| uri.path());
            let loc = format!("http://{addr}{pq}");
            let mut r = err_json(
                StatusCode::TEMPORARY_REDIRECT,
                json!({ "error": "not the leader", "leader": leader.0, "location": loc }),
            );
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        None => unavailable(
            format!("node {leader} leads but its HTTP address is unknown here"),
            None,
        ),
    }
}

/// Waits (bounded) until some node is known to lead.
async fn find_leader(st: &ApiState, uri: &Uri, deadline: Instant) -> Result<LeaderCheck, Response> {
    let mut rx = st.handle.watch_status();
    loop {
        let s = rx.borrow_and_update().clone();
        if !s.running {
            return Err(unavailable("the node is shutting down", None));
        }
        if s.role == Role::Leader {
            return Ok(LeaderCheck::Here);
        }
        if let Some(l) = s.leader.filter(|l| *l != st.id) {
            return Ok(LeaderCheck::Elsewhere(redirect(st, l, uri)));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(unavailable("no leader", None));
        }
        // Wake on a status change, but look again at least every few ms in
        // case the watch is quiet.
        let wait = (deadline - now).min(LEADER_WAIT_POLL * 20);
        if let Ok(Err(_)) = tokio::time::timeout(wait, rx.changed()).await {
            // The node task is gone.
            return Err(unavailable("the node is shutting down", None));
        }
    }
}

// ---------------------------------------------------------------------------
// Key-value handlers

async fn kv_get(State(st): State<St>, uri: Uri) -> Response {
    let key = match parse_key(uri.path()) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let q = match parse_query(uri.query(), &["consistency"]) {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    let stale = match q.get("consistency").map(|v| v.as_slice()) {
        None | Some(b"linearizable") => false,
        Some(b"stale") => true,
        Some(_) => {
            return err(
                StatusCode::BAD_REQUEST,
                "consistency must be 'linearizable' or 'stale'",
            )
        }
    };
    if !stale {
        let deadline = Instant::now() + st.request_timeout;
        loop {
            match st.handle.read().await {
                Ok(_) => break,
                Err(RtError::NotLeader { leader: Some(l) })
                | Err(RtError::ReadFailed { leader: Some(l) })
                    if l != st.id =>
                {
                    st.metrics.read(false, "redirect");
                    return redirect(&st, l, &uri);
                }
                Err(RtError::NotLeader { .. })
                | Err(RtError::ReadFailed { .. })
                | Err(RtError::Busy)
                | Err(RtError::Unavailable(_))
                    if Instant::now() < deadline =>
                {
                    // No leader known yet, or it changed under us: wait a
                    // little and ask again, within the request's budget.
                    tokio::time::sleep(LEADER_WAIT_POLL).await;
                }
                Err(RtError::Timeout) => {
                    st.metrics.read(false, "timeout");
                    return err(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the read could not be confirmed in time",
                    );
                }
                Err(RtError::NotLeader { .. }) | Err(RtError::ReadFailed { .. }) => {
                    st.metrics.read(false, "timeout");
                    return unavailable("no leader", None);
                }
                Err(e) => {
                    st.metrics.read(false, "error");
                    return unavailable(e.to_string(), None);
                }
            }
        }
    }
    match st.kv.get(&key) {
        Some(v) => {
            st.metrics.read(stale, "ok");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/octet-stream")],
                v,
            )
                .into_response()
        }
        None => {
            st.metrics.read(stale, "not_found");
            err(StatusCode::NOT_FOUND, "not found")
        }
    }
}

async fn kv_put(State(st): State<St>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let key = match parse_key(uri.path()) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let q = match parse_query(uri.query(), &["expect"]) {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    let expect = match q.get("expect") {
        None => None,
        Some(v) if v.is_empty() => Some(Expect::Absent),
        Some(v) if v.len() > st.max_value_bytes => {
            return err(
                StatusCode::BAD_REQUEST,
                format!(
                    "the expected value is longer than the value limit of {} bytes",
                    st.max_value_bytes
                ),
            )
        }
        Some(v) => Some(Expect::Value(Bytes::copy_from_slice(v))),
    };
    let rid = match request_id(&headers) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let value = match read_body(&headers, body, st.max_value_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let cmd = KvCommand {
        request_id: rid,
        op: KvOp::Put { key, value, expect },
    };
    write(&st, &uri, cmd).await
}

async fn kv_delete(State(st): State<St>, uri: Uri, headers: HeaderMap) -> Response {
    let key = match parse_key(uri.path()) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = parse_query(uri.query(), &[]) {
        return r.into_response();
    }
    let rid = match request_id(&headers) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    write(
        &st,
        &uri,
        KvCommand {
            request_id: rid,
            op: KvOp::Delete { key },
        },
    )
    .await
}

/// Proposes a command on the leader (redirecting from elsewhere) and maps
/// the outcome to a response, never claiming success for an uncommitted
/// write nor failure for a committed one.
async fn write(st: &ApiState, uri: &Uri, cmd: KvCommand) -> Response {
    let deadline = Instant::now() + st.request_timeout;
    match find_leader(st, uri, deadline).await {
        Ok(LeaderCheck::Here) => {}
        Ok(LeaderCheck::Elsewhere(r)) => {
            st.metrics.proposal("not_leader");
            return r;
        }
        Err(r) => {
            st.metrics.proposal("not_leader");
            return r;
        }
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    let res = st
        .handle
        .propose_with_timeout(cmd.encode(), remaining.max(Duration::from_millis(1)))
        .await;
    match res {
        Ok(c) => match KvResponse::decode(&c.response) {
            Ok(r) => match r.outcome {
                KvOutcome::Done => {
                    st.metrics
                        .proposal(if r.duplicate { "duplicate" } else { "ok" });
                    (
                        StatusCode::OK,
                        axum::Json(json!({ "index": r.index, "term": r.term })),
                    )
                        .into_response()
                }
                KvOutcome::Conflict { current } => {
                    st.metrics.proposal("conflict");
                    let cur =
                        current.map(|v| Value::String(String::from_utf8_lossy(&v).into_owned()));
                    err_json(
                        StatusCode::CONFLICT,
                        json!({ "error": "conflict", "current": cur, "index": r.index, "term": r.term }),
                    )
                }
                KvOutcome::Invalid(e) => {
                    st.metrics.proposal("error");
                    err_json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({ "error": e, "outcome": "not_applied" }),
                    )
                }
            },
            Err(e) => {
                st.metrics.proposal("error");
                err_json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": format!("undecodable state machine response: {e}"), "outcome": "applied", "index": c.index, "term": c.term }),
                )
            }
        },
        Err(RtError::NotLeader { leader }) => {
            st.metrics.proposal("not_leader");
            match leader.filter(|l| *l != st.id) {
                Some(l) => redirect(st, l, uri),
                None => unavailable("no leader", None),
            }
        }
        Err(RtError::Busy) => {
            st.metrics.proposal("busy");
            unavailable(
                "the node is busy; retry later",
                Some(("outcome", "not_applied")),
            )
        }
        Err(RtError::Unavailable(m)) => {
            st.metrics.proposal("busy");
            unavailable(m, Some(("outcome", "not_applied")))
        }
        Err(RtError::Dropped) => {
            st.metrics.proposal("dropped");
            unavailable(
                "the write was superseded by a leader change and will not be applied; retry",
                Some(("outcome", "not_applied")),
            )
        }
        Err(RtError::Invalid(m)) => {
            st.metrics.proposal("error");
            err(StatusCode::BAD_REQUEST, m)
        }
        Err(RtError::Timeout) => {
            st.metrics.proposal("timeout");
            unknown_outcome(
                StatusCode::GATEWAY_TIMEOUT,
                "timed out waiting for the write to commit; it may still be applied",
            )
        }
        Err(e) => {
            st.metrics.proposal("unknown");
            unknown_outcome(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{e}; the write may or may not have been applied"),
            )
        }
    }
}

// ---------------------------------------------------------------------------
// Status and metrics

fn membership_lists(s: &NodeStatus) -> (Vec<u64>, Vec<u64>) {
    let voters = s.membership.all_voters().iter().map(|n| n.0).collect();
    let learners = s
        .membership
        .learners
        .iter()
        .filter(|n| !s.membership.is_voter(**n))
        .map(|n| n.0)
        .collect();
    (voters, learners)
}

/// The `/v1/status` document.
pub fn status_json(st: &ApiState) -> Value {
    let s = st.handle.status();
    let (voters, learners) = membership_lists(&s);
    let members = s.membership.members();
    let peers: serde_json::Map<String, Value> = st
        .peers()
        .into_iter()
        .filter(|(id, _)| *id != st.id.0 && (members.is_empty() || members.contains(&NodeId(*id))))
        .map(|(id, p)| {
            (
                id.to_string(),
                json!({ "raft_addr": p.raft_addr, "http_addr": p.http_addr }),
            )
        })
        .collect();
    let isolated: Vec<u64> = st.faults.isolated_from().iter().map(|n| n.0).collect();
    json!({
        "id": st.id.0,
        "role": s.role.as_str(),
        "term": s.term,
        "leader": s.leader.map(|l| l.0),
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "last_log_index": s.last_log_index,
        "snapshot_index": s.snapshot_index,
        "voters": voters,
        "learners": learners,
        "peers": peers,
        "isolated_from": isolated,
        "pid": std::process::id(),
        "running": s.running,
    })
}

async fn status(State(st): State<St>) -> Response {
    axum::Json(status_json(&st)).into_response()
}

async fn metrics_text(State(st): State<St>) -> Response {
    let s = st.handle.status();
    let mut out = String::with_capacity(16 << 10);
    out.push_str(&format!(
        "# HELP raft_node_info Static facts about this node.\n# TYPE raft_node_info gauge\nraft_node_info{{id=\"{}\",transport=\"{}\"}} 1\n",
        st.id, st.transport
    ));
    metric(&mut out, "raft_term", "gauge", "The current term.", s.term);
    out.push_str("# HELP raft_role Whether this node plays each role (1) or not (0).\n# TYPE raft_role gauge\n");
    for r in [
        Role::Follower,
        Role::PreCandidate,
        Role::Candidate,
        Role::Leader,
        Role::Learner,
    ] {
        out.push_str(&format!(
            "raft_role{{role=\"{}\"}} {}\n",
            r.as_str(),
            u8::from(s.role == r)
        ));
    }
    metric(
        &mut out,
        "raft_leader_id",
        "gauge",
        "The leader this node knows of (0: none).",
        s.leader.map(|l| l.0).unwrap_or(0),
    );
    metric(
        &mut out,
        "raft_commit_index",
        "gauge",
        "The commit index.",
        s.commit_index,
    );
    metric(
        &mut out,
        "raft_applied_index",
        "gauge",
        "The applied index.",
        s.applied_index,
    );
    metric(
        &mut out,
        "raft_last_log_index",
        "gauge",
        "The last log index.",
        s.last_log_index,
    );
    metric(
        &mut out,
        "raft_snapshot_index",
        "gauge",
        "The index the log starts after.",
        s.snapshot_index,
    );
    metric(
        &mut out,
        "raft_pending_proposals",
        "gauge",
        "Proposals accepted and not yet applied.",
        s.pending_proposals,
    );
    let (voters, learners) = membership_lists(&s);
    metric(
        &mut out,
        "raft_voters",
        "gauge",
        "Voting members.",
        voters.len(),
    );
    metric(
        &mut out,
        "raft_learners",
        "gauge",
        "Learners.",
        learners.len(),
    );
    metric(
        &mut out,
        "raft_snapshots_taken_total",
        "counter",
        "State-machine snapshots taken on this node.",
        st.snapshots_taken.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "raft_snapshots_installed_total",
        "counter",
        "Snapshots installed from a leader.",
        st.snapshots_installed.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "raft_snapshots_sent_total",
        "counter",
        "Snapshot transfers started to followers.",
        st.faults.snapshots_sent(),
    );
    metric(
        &mut out,
        "raft_snapshots_received_total",
        "counter",
        "Snapshot transfers started by a leader toward this node.",
        st.faults.snapshots_received(),
    );
    let counters = st.faults.peer_counters();
    out.push_str("# HELP raft_peer_messages_sent_total Messages handed to the network, per peer.\n# TYPE raft_peer_messages_sent_total counter\n");
    for (p, c) in &counters {
        out.push_str(&format!(
            "raft_peer_messages_sent_total{{peer=\"{p}\"}} {}\n",
            c.sent
        ));
    }
    out.push_str("# HELP raft_peer_messages_dropped_total Messages dropped (queue full, unreachable or isolated), per peer.\n# TYPE raft_peer_messages_dropped_total counter\n");
    for (p, c) in &counters {
        out.push_str(&format!(
            "raft_peer_messages_dropped_total{{peer=\"{p}\"}} {}\n",
            c.dropped
        ));
    }
    out.push_str("# HELP raft_peer_messages_filtered_in_total Messages from a peer discarded by fault injection.\n# TYPE raft_peer_messages_filtered_in_total counter\n");
    for (p, c) in &counters {
        out.push_str(&format!(
            "raft_peer_messages_filtered_in_total{{peer=\"{p}\"}} {}\n",
            c.filtered_in
        ));
    }
    let (keys, bytes, dedup) = st.kv.with(|k| (k.len(), k.value_bytes(), k.dedup_len()));
    metric(&mut out, "raft_kv_keys", "gauge", "Keys in the map.", keys);
    metric(
        &mut out,
        "raft_kv_value_bytes",
        "gauge",
        "Bytes of values in the map.",
        bytes,
    );
    metric(
        &mut out,
        "raft_kv_dedup_entries",
        "gauge",
        "Request ids remembered for deduplication.",
        dedup,
    );
    metric(
        &mut out,
        "raft_kv_duplicate_requests_total",
        "counter",
        "Retried writes answered from the deduplication table.",
        st.kv_counters.duplicates.load(Ordering::Relaxed),
    );
    if let Some(w) = &st.wal {
        w.render_prometheus(&mut out);
    }
    st.metrics.render(&mut out);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// Watch

fn role_event(id: NodeId, s: &NodeStatus) -> Value {
    json!({ "type": "role", "id": id.0, "role": s.role.as_str(), "term": s.term, "leader": s.leader.map(|l| l.0) })
}

fn membership_event(id: NodeId, s: &NodeStatus) -> Value {
    let (voters, learners) = membership_lists(s);
    json!({ "type": "membership", "id": id.0, "voters": voters, "learners": learners })
}

async fn watch(State(st): State<St>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(64 << 10)
        .on_upgrade(move |socket| watch_loop(st, socket))
}

async fn send_json(socket: &mut WebSocket, v: &Value) -> bool {
    socket
        .send(WsMessage::Text(v.to_string().into()))
        .await
        .is_ok()
}

async fn watch_loop(st: St, mut socket: WebSocket) {
    st.metrics.watchers.fetch_add(1, Ordering::Relaxed);
    let mut events = st.handle.subscribe();
    let mut applied = st.kv_events.subscribe();
    let mut closing = st.closing.subscribe();
    // Role, term and leader come from the status channel, which the runtime
    // updates after each Ready: building them from a runtime event would
    // read a status that may not reflect that event yet.
    let mut status_rx = st.handle.watch_status();
    let s = status_rx.borrow_and_update().clone();
    let mut last_role = (s.role, s.term, s.leader);
    let mut last_commit = s.commit_index;
    let ok = send_json(&mut socket, &role_event(st.id, &s)).await
        && send_json(&mut socket, &membership_event(st.id, &s)).await;
    if ok {
        // Commit events go out at most ten times a second.
        let mut commit_tick = tokio::time::interval(Duration::from_millis(100));
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let out = tokio::select! {
                ev = events.recv() => match ev {
                    Ok(Event::MembershipChanged { membership, .. }) => {
                        let voters: Vec<u64> = membership.all_voters().iter().map(|n| n.0).collect();
                        let learners: Vec<u64> = membership.learners.iter().filter(|n| !membership.is_voter(**n)).map(|n| n.0).collect();
                        json!({ "type": "membership", "id": st.id.0, "voters": voters, "learners": learners })
                    }
                    Ok(Event::Stopped { .. }) | Err(broadcast::error::RecvError::Closed) => break,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => json!({ "type": "lagged", "id": st.id.0, "missed": n }),
                },
                ev = applied.recv() => match ev {
                    Ok(a) => json!({ "type": "applied", "id": st.id.0, "index": a.index, "term": a.term, "op": a.op, "key": a.key }),
                    Err(broadcast::error::RecvError::Lagged(n)) => json!({ "type": "lagged", "id": st.id.0, "missed": n }),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                changed = status_rx.changed() => {
                    if changed.is_err() { break; }
                    let s = status_rx.borrow_and_update().clone();
                    let now = (s.role, s.term, s.leader);
                    if now == last_role { continue; }
                    last_role = now;
                    role_event(st.id, &s)
                }
                _ = commit_tick.tick() => {
                    let c = st.handle.status().commit_index;
                    if c == last_commit { continue; }
                    last_commit = c;
                    json!({ "type": "commit", "id": st.id.0, "commit_index": c })
                }
                _ = closing.wait_for(|c| *c) => break,
                msg = socket.recv() => match msg {
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                },
            };
            if !send_json(&mut socket, &out).await {
                break;
            }
        }
    }
    let _ = socket.send(WsMessage::Close(None)).await;
    st.metrics.watchers.fetch_sub(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------
// Admin

/// Reads a JSON request body (at most 64 KiB), with errors as 400 JSON.
/// `empty` is what an empty body means, if it is allowed.
async fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    empty: Option<T>,
) -> Result<T, Response> {
    let bytes = read_body(headers, body, 64 << 10).await?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        if let Some(d) = empty {
            return Ok(d);
        }
        return Err(err(StatusCode::BAD_REQUEST, "a JSON body is required"));
    }
    serde_json::from_slice::<T>(&bytes)
        .map_err(|e| err(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LearnerReq {
    id: u64,
    raft_addr: String,
    http_addr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdReq {
    id: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferReq {
    to: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IsolateReq {
    #[serde(default)]
    peers: Vec<u64>,
}

fn valid_addr(a: &str) -> bool {
    a.len() <= 256
        && matches!(a.rsplit_once(':'), Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok())
}

fn membership_answer(st: &ApiState, extra: Value) -> Response {
    let s = st.handle.status();
    let (voters, learners) = membership_lists(&s);
    let mut body =
        json!({ "ok": true, "voters": voters, "learners": learners, "index": s.applied_index });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Maps a runtime error of an admin call.
fn admin_error(st: &ApiState, uri: &Uri, e: RtError) -> Response {
    match e {
        RtError::NotLeader { leader: Some(l) } if l != st.id => redirect(st, l, uri),
        RtError::NotLeader { .. } => unavailable("no leader", None),
        RtError::Invalid(m) => err(StatusCode::BAD_REQUEST, m),
        RtError::Busy | RtError::Unavailable(_) | RtError::Dropped => {
            unavailable(e.to_string(), Some(("outcome", "not_applied")))
        }
        RtError::Timeout => unknown_outcome(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        other => unknown_outcome(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

/// Admin calls that change the cluster go to the leader.
async fn require_leader(st: &ApiState, uri: &Uri) -> Result<(), Response> {
    let deadline = Instant::now() + st.request_timeout;
    match find_leader(st, uri, deadline).await? {
        LeaderCheck::Here => Ok(()),
        LeaderCheck::Elsewhere(r) => Err(r),
    }
}

async fn admin_learners(
    State(st): State<St>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let req: LearnerReq = match parse_json(&headers, body, None).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.id == 0 {
        return err(StatusCode::BAD_REQUEST, "node id 0 is reserved");
    }
    if !valid_addr(&req.raft_addr) || !valid_addr(&req.http_addr) {
        return err(
            StatusCode::BAD_REQUEST,
            "raft_addr and http_addr must be HOST:PORT",
        );
    }
    if let Err(r) = require_leader(&st, &uri).await {
        return r;
    }
    // Record every known address first, so the new node (and any node)
    // can redirect clients to whichever member leads.
    let mut peers = st.peers();
    peers.insert(
        req.id,
        PeerAddrs {
            id: req.id,
            raft_addr: req.raft_addr.clone(),
            http_addr: req.http_addr.clone(),
        },
    );
    let cmd = KvCommand {
        request_id: None,
        op: KvOp::SetPeers(peers.into_values().collect()),
    };
    if let Err(e) = st.handle.propose(cmd.encode()).await {
        return admin_error(&st, &uri, e);
    }
    match st.handle.add_learner(NodeId(req.id), req.raft_addr).await {
        Ok(_) => membership_answer(&st, json!({ "id": req.id })),
        Err(e) => admin_error(&st, &uri, e),
    }
}

async fn admin_promote(State(st): State<St>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let req: IdReq = match parse_json(&headers, body, None).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = require_leader(&st, &uri).await {
        return r;
    }
    let s = st.handle.status();
    if !s.membership.is_learner(NodeId(req.id)) {
        return err(
            StatusCode::BAD_REQUEST,
            format!("node {} is not a learner", req.id),
        );
    }
    match st.handle.promote(NodeId(req.id)).await {
        Ok(_) => membership_answer(&st, json!({ "id": req.id })),
        Err(e) => admin_error(&st, &uri, e),
    }
}

async fn admin_remove(State(st): State<St>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let req: IdReq = match parse_json(&headers, body, None).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = require_leader(&st, &uri).await {
        return r;
    }
    if !st.handle.status().membership.contains(NodeId(req.id)) {
        return err(
            StatusCode::BAD_REQUEST,
            format!("node {} is not a member", req.id),
        );
    }
    match st.handle.remove_node(NodeId(req.id)).await {
        Ok(_) => membership_answer(&st, json!({ "id": req.id })),
        Err(e) => admin_error(&st, &uri, e),
    }
}

async fn admin_transfer(
    State(st): State<St>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let req: TransferReq = match parse_json(&headers, body, None).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = require_leader(&st, &uri).await {
        return r;
    }
    let to = NodeId(req.to);
    if to == st.id {
        return (
            StatusCode::OK,
            axum::Json(json!({ "ok": true, "leader": to.0 })),
        )
            .into_response();
    }
    if !st.handle.status().membership.is_voter(to) {
        return err(
            StatusCode::BAD_REQUEST,
            format!("node {} is not a voter", req.to),
        );
    }
    match st.handle.transfer_leadership(to).await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({ "ok": true, "leader": to.0 })),
        )
            .into_response(),
        Err(RtError::Timeout) => err(
            StatusCode::GATEWAY_TIMEOUT,
            format!("node {to} did not take over in time"),
        ),
        Err(e) => admin_error(&st, &uri, e),
    }
}

fn faults_disabled() -> Response {
    err(
        StatusCode::FORBIDDEN,
        "fault injection is disabled; start the node with --enable-fault-injection",
    )
}

async fn admin_isolate(State(st): State<St>, headers: HeaderMap, body: Body) -> Response {
    if !st.fault_injection {
        return faults_disabled();
    }
    let req: IsolateReq = match parse_json(&headers, body, Some(IsolateReq::default())).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.peers.contains(&0) {
        return err(StatusCode::BAD_REQUEST, "node id 0 is reserved");
    }
    let peers: Vec<NodeId> = req.peers.iter().map(|p| NodeId(*p)).collect();
    st.faults.isolate(&peers);
    let now: Vec<u64> = st.faults.isolated_from().iter().map(|n| n.0).collect();
    tracing::warn!(node = %st.id, peers = ?now, "fault injection: isolated from peers");
    (
        StatusCode::OK,
        axum::Json(json!({ "ok": true, "isolated_from": now })),
    )
        .into_response()
}

async fn admin_heal(State(st): State<St>) -> Response {
    if !st.fault_injection {
        return faults_disabled();
    }
    st.faults.heal();
    tracing::warn!(node = %st.id, "fault injection: healed");
    (
        StatusCode::OK,
        axum::Json(json!({ "ok": true, "isolated_from": [] })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert_eq!(parse_key("/v1/kv/abc").ok().unwrap(), "abc");
        assert_eq!(parse_key("/v1/kv/a%2Fb").ok().unwrap(), "a/b");
        assert_eq!(parse_key("/v1/kv/%C3%A9").ok().unwrap(), "é");
        assert!(parse_key("/v1/kv/").is_err());
        assert!(parse_key("/v1/kv/a/b").is_err());
        assert!(parse_key("/v1/kv/%FF").is_err());
        assert!(parse_key("/v1/kv/%zz").is_err());
        assert!(parse_key(&format!("/v1/kv/{}", "k".repeat(1024))).is_ok());
        assert!(parse_key(&format!("/v1/kv/{}", "k".repeat(1025))).is_err());
    }

    #[test]
    fn query_is_validated() {
        let q = parse_query(Some("expect="), &["expect"]).ok().unwrap();
        assert_eq!(q["expect"], b"");
        let q = parse_query(Some("expect=a+b%21"), &["expect"])
            .ok()
            .unwrap();
        assert_eq!(q["expect"], b"a b!");
        assert!(parse_query(Some("expect=%"), &["expect"]).is_err());
        assert!(parse_query(Some("expect=1&expect=2"), &["expect"]).is_err());
        assert!(parse_query(Some("bogus=1"), &["expect"]).is_err());
    }
}
