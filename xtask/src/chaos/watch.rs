//! Listens to every node's `/v1/watch` stream during a chaos run and checks
//! election safety from what the nodes say about themselves: at most one
//! leader per term.
//!
//! A node that is killed or paused drops its stream; the watcher reconnects
//! until the run ends (on connect a node first states its current role, so
//! a restart is seen). Only role events are kept, and only up to a fixed
//! number, so a long run cannot grow memory without bound. Watching must
//! never slow the clients: it runs in its own tasks and never blocks them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::client::{nanos, NodeAddr};

/// Role events kept per run; beyond this, later ones are dropped (and the
/// report says so).
pub const MAX_ROLE_EVENTS: usize = 200_000;
/// One watch message larger than this is not from a node.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// A node's statement of its role, as received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleEvent {
    /// Nanoseconds since the run started, when it was received.
    pub at_ns: u64,
    /// The node whose stream carried it.
    pub node: u64,
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    /// `watch` (the node's stream) or `status` (a poll of `/v1/status`).
    #[serde(default)]
    pub source: String,
}

/// What the watchers collected.
#[derive(Debug, Default)]
pub struct WatchLog {
    events: Mutex<Vec<RoleEvent>>,
    pub dropped: std::sync::atomic::AtomicU64,
    /// Times a node said its stream lagged (events were skipped on its side).
    pub lagged: std::sync::atomic::AtomicU64,
    /// Connections made (the first one per node included).
    pub connects: std::sync::atomic::AtomicU64,
}

impl WatchLog {
    fn push(&self, ev: RoleEvent) {
        let mut events = self
            .events
            .lock()
            .expect("no watcher panics while holding the log");
        if events.len() >= MAX_ROLE_EVENTS {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        events.push(ev);
    }

    /// Every event kept, in arrival order.
    pub fn events(&self) -> Vec<RoleEvent> {
        self.events
            .lock()
            .expect("no watcher panics while holding the log")
            .clone()
    }
}

/// Parses one watch message; `None` for events other than role changes and
/// for anything malformed.
pub fn parse_role(text: &str, node: u64, at_ns: u64) -> Option<RoleEvent> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v.get("type")?.as_str()? != "role" {
        return None;
    }
    Some(RoleEvent {
        at_ns,
        node: v.get("id").and_then(|i| i.as_u64()).unwrap_or(node),
        role: v.get("role")?.as_str()?.to_string(),
        term: v.get("term")?.as_u64()?,
        leader: v.get("leader").and_then(|l| l.as_u64()),
        source: "watch".to_string(),
    })
}

/// Polls one node's `/v1/status` every `every` until `stop` is set, keeping
/// a sample whenever (role, term, leader) changes. A second source beside
/// the watch stream: a stream may miss a change (and a node may change role
/// while its stream is reconnecting), a poll may miss a short-lived one;
/// election safety is checked over both.
pub async fn poll_status(
    node: NodeAddr,
    start: Instant,
    log: Arc<WatchLog>,
    stop: Arc<AtomicBool>,
    every: Duration,
) {
    let mut last: Option<(String, u64, Option<u64>)> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(s) = crate::http::status(&node.http, Duration::from_millis(500)).await {
            let now = (s.role.clone(), s.term, s.leader);
            if last.as_ref() != Some(&now) {
                log.push(RoleEvent {
                    at_ns: nanos(start.elapsed()),
                    node: s.id,
                    role: s.role,
                    term: s.term,
                    leader: s.leader,
                    source: "status".to_string(),
                });
                last = Some(now);
            }
        }
        tokio::time::sleep(every).await;
    }
}

fn is_lagged(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            v.get("type")
                .and_then(|t| t.as_str())
                .map(|t| t == "lagged")
        })
        .unwrap_or(false)
}

/// Follows one node's watch stream until `stop` is set, reconnecting after
/// failures.
pub async fn watch_node(node: NodeAddr, start: Instant, log: Arc<WatchLog>, stop: Arc<AtomicBool>) {
    let url = format!("ws://{}/v1/watch", node.http);
    while !stop.load(Ordering::Relaxed) {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let connect =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        let mut ws = match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(Ok((ws, _))) => ws,
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        log.connects.fetch_add(1, Ordering::Relaxed);
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            // Wake up now and then to notice `stop` on a quiet stream.
            match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                Err(_) => continue,
                Ok(None) | Ok(Some(Err(_))) => break,
                Ok(Some(Ok(msg))) => {
                    let Ok(text) = msg.to_text() else { continue };
                    if let Some(ev) = parse_role(text, node.id, nanos(start.elapsed())) {
                        log.push(ev);
                    } else if is_lagged(text) {
                        // The node skipped events, role changes perhaps among
                        // them: reconnect, since a fresh stream starts with
                        // the current role.
                        log.lagged.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }
}

/// A term in which more than one node was leader (or was named leader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwoLeaders {
    pub term: u64,
    pub leaders: Vec<u64>,
    /// Where each claim came from: (reporting node, claimed leader).
    pub claims: Vec<(u64, u64)>,
}

/// Election safety over everything the nodes said: a node reporting itself
/// leader of term T, or a node naming some leader for term T, is a claim;
/// two different leaders claimed for one term is a violation.
pub fn two_leaders(events: &[RoleEvent]) -> Vec<TwoLeaders> {
    let mut by_term: BTreeMap<u64, BTreeSet<(u64, u64)>> = BTreeMap::new();
    for ev in events {
        let claimed = if ev.role == "leader" {
            Some(ev.node)
        } else {
            ev.leader
        };
        if let Some(leader) = claimed {
            by_term
                .entry(ev.term)
                .or_default()
                .insert((ev.node, leader));
        }
    }
    by_term
        .into_iter()
        .filter_map(|(term, claims)| {
            let leaders: BTreeSet<u64> = claims.iter().map(|&(_, l)| l).collect();
            (leaders.len() > 1).then(|| TwoLeaders {
                term,
                leaders: leaders.into_iter().collect(),
                claims: claims.into_iter().collect(),
            })
        })
        .collect()
}

/// Leader elections seen: (time first seen, term, leader), in term order.
/// The number of leader changes is this list's length minus one.
pub fn leaders_by_term(events: &[RoleEvent]) -> Vec<(u64, u64, u64)> {
    let mut first: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for ev in events.iter().filter(|e| e.role == "leader") {
        let e = first.entry(ev.term).or_insert((ev.at_ns, ev.node));
        if ev.at_ns < e.0 {
            *e = (ev.at_ns, ev.node);
        }
    }
    first
        .into_iter()
        .map(|(term, (at, id))| (at, term, id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(node: u64, role: &str, term: u64, leader: Option<u64>) -> RoleEvent {
        RoleEvent {
            at_ns: term * 10 + node,
            node,
            role: role.into(),
            term,
            leader,
            source: "watch".into(),
        }
    }

    #[test]
    fn parses_role_events_and_ignores_the_rest() {
        let e = parse_role(
            r#"{"type":"role","id":2,"role":"leader","term":5,"leader":2}"#,
            9,
            7,
        )
        .expect("a role event");
        assert_eq!(
            e,
            RoleEvent {
                at_ns: 7,
                node: 2,
                role: "leader".into(),
                term: 5,
                leader: Some(2),
                source: "watch".into(),
            }
        );
        let f = parse_role(
            r#"{"type":"role","id":3,"role":"candidate","term":6,"leader":null}"#,
            3,
            0,
        )
        .expect("a role event");
        assert_eq!(f.leader, None);
        assert_eq!(
            parse_role(r#"{"type":"applied","id":1,"index":3}"#, 1, 0),
            None
        );
        assert_eq!(parse_role("not json", 1, 0), None);
        assert!(is_lagged(r#"{"type":"lagged","id":1,"missed":3}"#));
        assert!(!is_lagged(r#"{"type":"role"}"#));
        assert_eq!(parse_role(r#"{"type":"role","id":1}"#, 1, 0), None);
    }

    #[test]
    fn one_leader_per_term_is_fine() {
        let events = vec![
            ev(1, "leader", 1, Some(1)),
            ev(2, "follower", 1, Some(1)),
            ev(3, "follower", 1, None),
            ev(2, "leader", 2, Some(2)),
            ev(1, "follower", 2, Some(2)),
        ];
        assert!(two_leaders(&events).is_empty());
        let l = leaders_by_term(&events);
        assert_eq!(
            l.iter().map(|&(_, t, id)| (t, id)).collect::<Vec<_>>(),
            vec![(1, 1), (2, 2)]
        );
    }

    #[test]
    fn two_self_declared_leaders_in_one_term_are_caught() {
        let events = vec![ev(1, "leader", 4, Some(1)), ev(3, "leader", 4, Some(3))];
        let v = two_leaders(&events);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].term, 4);
        assert_eq!(v[0].leaders, vec![1, 3]);
    }

    #[test]
    fn followers_naming_different_leaders_are_caught() {
        let events = vec![ev(1, "follower", 7, Some(2)), ev(3, "follower", 7, Some(1))];
        assert_eq!(two_leaders(&events).len(), 1);
    }
}
