//! How the nemesis cuts and heals links between nodes: one interface,
//! [`Links`], with two mechanisms behind it.
//!
//! - `api` ([`ApiLinks`]): each node's fault-injection endpoint
//!   (`/v1/admin/isolate`, `/v1/admin/heal`) makes its transport drop the
//!   named peers. Works anywhere, but only the Raft transport is cut, and a
//!   restarted node forgets its cuts.
//! - `netns` ([`super::netns::NetnsLinks`]): packets are discarded by the
//!   kernel between network namespaces. Linux and root only.
//!
//! Every change a mechanism makes is recorded as a [`NetEvent`], so the
//! report shows what was really done ("cut 1->2 (netns)"). A mechanism must
//! never report a cut it did not make, and after a successful
//! [`Links::heal`] no cut of its own may remain.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;

use super::client::{nanos, NodeAddr};

/// One change to the links between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetEvent {
    /// When, from the run's start.
    pub at_ns: u64,
    /// "api" or "netns".
    pub mechanism: &'static str,
    /// "cut" or "heal".
    pub action: &'static str,
    /// Traffic from this node...
    pub from: u64,
    /// ...to these nodes is dropped (cut) or flows again (heal); empty for
    /// an api heal, which restores every link of `from`.
    pub to: Vec<u64>,
    /// The command or request that did it.
    pub how: String,
}

impl NetEvent {
    /// "cut 1->2 (netns)", "heal 3->all (api)".
    pub fn label(&self) -> String {
        let to = if self.to.is_empty() {
            "all".to_string()
        } else {
            self.to
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        format!("{} {}->{} ({})", self.action, self.from, to, self.mechanism)
    }
}

/// Cutting and healing links: what the nemesis needs from a mechanism.
pub trait Links: Send {
    /// "api" or "netns".
    fn mechanism(&self) -> &'static str;
    /// Cuts, for every node, its links to the given peers (node -> peers it
    /// must not reach, as `nemesis::cuts` makes them). Returns what failed.
    fn cut<'a>(&'a mut self, cuts: &'a BTreeMap<u64, Vec<u64>>) -> BoxFuture<'a, Vec<String>>;
    /// Restores every link this mechanism cut. Returns what failed.
    fn heal(&mut self) -> BoxFuture<'_, Vec<String>>;
    /// Every change made so far, in order.
    fn events(&self) -> &[NetEvent];
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Partitions through the nodes' fault-injection endpoints.
#[derive(Debug)]
pub struct ApiLinks {
    nodes: Vec<NodeAddr>,
    start: Instant,
    events: Vec<NetEvent>,
}

impl ApiLinks {
    /// Links between `nodes`; event times count from `start`.
    pub fn new(nodes: Vec<NodeAddr>, start: Instant) -> ApiLinks {
        ApiLinks {
            nodes,
            start,
            events: Vec::new(),
        }
    }

    fn addr(&self, id: u64) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.http.clone())
    }
}

impl Links for ApiLinks {
    fn mechanism(&self) -> &'static str {
        "api"
    }

    /// Both sides of a cut are told, so one unreachable side (paused, say)
    /// still leaves the link cut.
    fn cut<'a>(&'a mut self, cuts: &'a BTreeMap<u64, Vec<u64>>) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let calls = cuts
                .iter()
                .filter(|(_, peers)| !peers.is_empty())
                .map(|(&id, peers)| {
                    let addr = self.addr(id);
                    let body = serde_json::json!({ "peers": peers });
                    async move {
                        let Some(addr) = addr else {
                            return (
                                id,
                                peers,
                                Err(format!("isolate on node {id}: no such node")),
                            );
                        };
                        let r = crate::http::admin(&addr, "isolate", body, ADMIN_TIMEOUT)
                            .await
                            .map(drop)
                            .map_err(|e| format!("isolate on node {id}: {e:#}"));
                        (id, peers, r)
                    }
                });
            let mut errors = Vec::new();
            for (id, peers, r) in futures::future::join_all(calls).await {
                match r {
                    Ok(()) => self.events.push(NetEvent {
                        at_ns: nanos(self.start.elapsed()),
                        mechanism: "api",
                        action: "cut",
                        from: id,
                        to: peers.clone(),
                        how: format!("POST /v1/admin/isolate {{\"peers\":{peers:?}}} on node {id}"),
                    }),
                    Err(e) => errors.push(e),
                }
            }
            errors
        })
    }

    /// Heals every node that answers (the endpoint restores all of a
    /// node's links at once).
    fn heal(&mut self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let calls = self.nodes.iter().map(|n| {
                let (id, addr) = (n.id, n.http.clone());
                async move {
                    let r = crate::http::admin(&addr, "heal", serde_json::json!({}), ADMIN_TIMEOUT)
                        .await
                        .map(drop)
                        .map_err(|e| format!("heal on node {id}: {e:#}"));
                    (id, r)
                }
            });
            let mut errors = Vec::new();
            for (id, r) in futures::future::join_all(calls).await {
                match r {
                    Ok(()) => self.events.push(NetEvent {
                        at_ns: nanos(self.start.elapsed()),
                        mechanism: "api",
                        action: "heal",
                        from: id,
                        to: Vec::new(),
                        how: format!("POST /v1/admin/heal on node {id}"),
                    }),
                    Err(e) => errors.push(e),
                }
            }
            errors
        })
    }

    fn events(&self) -> &[NetEvent] {
        &self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_say_direction_and_mechanism() {
        let e = NetEvent {
            at_ns: 0,
            mechanism: "netns",
            action: "cut",
            from: 1,
            to: vec![2],
            how: String::new(),
        };
        assert_eq!(e.label(), "cut 1->2 (netns)");
        let h = NetEvent {
            mechanism: "api",
            action: "heal",
            from: 3,
            to: vec![],
            ..e.clone()
        };
        assert_eq!(h.label(), "heal 3->all (api)");
    }
}
