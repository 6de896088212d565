//! Following nodes' `/v1/watch` WebSocket streams.
//!
//! One task per node connects, parses each JSON event and forwards it on a
//! channel, and reconnects after the node goes away (killed, restarted).
//! It must never draw conclusions from the events: that is for the caller.

use futures::StreamExt;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Events are small JSON objects; a larger message is not one of ours.
const MAX_MESSAGE: usize = 64 * 1024;
/// Pause between reconnection attempts.
const RETRY: Duration = Duration::from_millis(300);
/// Bound on connecting (a paused node accepts TCP but never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One event from a node's watch stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// Its role, term or known leader changed (also sent first on connect).
    Role {
        /// follower | pre_candidate | candidate | leader | learner.
        role: String,
        /// Its term.
        term: u64,
        /// The leader it knows of.
        #[serde(default)]
        leader: Option<u64>,
    },
    /// The membership changed (also sent first on connect).
    Membership {
        /// Voters.
        #[serde(default)]
        voters: Vec<u64>,
        /// Learners.
        #[serde(default)]
        learners: Vec<u64>,
    },
    /// An entry was applied to its state machine.
    Applied {
        /// Its log index.
        index: u64,
        /// Its term.
        #[serde(default)]
        term: u64,
        /// put | delete | ...
        #[serde(default)]
        op: String,
        /// The key it touched.
        #[serde(default)]
        key: String,
    },
    /// Its commit index moved (rate-limited by the node).
    Commit {
        /// The new commit index.
        commit_index: u64,
    },
    /// An event type this xtask does not know; ignored.
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct Envelope {
    id: u64,
    #[serde(flatten)]
    event: Event,
}

/// What a watch task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMsg {
    /// Connected to the node's stream.
    Connected(u64),
    /// An event from the node.
    Event {
        /// The node whose stream it came on.
        node: u64,
        /// The event.
        event: Event,
    },
    /// The stream ended or could not be opened (repeated while the node is
    /// unreachable; callers show it once).
    Lost {
        /// The node.
        node: u64,
        /// Why.
        reason: String,
    },
    /// The node sent something that is not a watch event.
    Bad {
        /// The node.
        node: u64,
        /// What was wrong.
        reason: String,
    },
}

/// Parses one text message from node `node`'s stream.
pub fn parse(node: u64, text: &str) -> WatchMsg {
    match serde_json::from_str::<Envelope>(text) {
        Ok(env) if env.id == node => WatchMsg::Event {
            node,
            event: env.event,
        },
        Ok(env) => WatchMsg::Bad {
            node,
            reason: format!("event names node {} on node {node}'s stream", env.id),
        },
        Err(e) => WatchMsg::Bad {
            node,
            reason: format!("not a watch event ({e})"),
        },
    }
}

/// Follows node `node`'s stream at `http_addr` until `tx` is closed.
pub fn spawn(node: u64, http_addr: String, tx: mpsc::Sender<WatchMsg>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let url = format!("ws://{http_addr}/v1/watch");
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        loop {
            let connect =
                tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
            let reason = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                Err(_) => "no answer".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok((mut ws, _))) => {
                    if tx.send(WatchMsg::Connected(node)).await.is_err() {
                        return;
                    }
                    loop {
                        let msg = tokio::select! {
                            m = ws.next() => m,
                            _ = tx.closed() => return,
                        };
                        match msg {
                            Some(Ok(Message::Text(text))) => {
                                if tx.send(parse(node, text.as_str())).await.is_err() {
                                    return;
                                }
                            }
                            Some(Ok(Message::Close(_))) | None => break "stream closed".to_owned(),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => break e.to_string(),
                        }
                    }
                }
            };
            if tx.send(WatchMsg::Lost { node, reason }).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = tx.closed() => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_events() {
        assert_eq!(
            parse(
                1,
                r#"{"type":"role","id":1,"role":"leader","term":5,"leader":1}"#
            ),
            WatchMsg::Event {
                node: 1,
                event: Event::Role {
                    role: "leader".into(),
                    term: 5,
                    leader: Some(1)
                }
            }
        );
        assert_eq!(
            parse(
                1,
                r#"{"type":"role","id":1,"role":"follower","term":6,"leader":null}"#
            ),
            WatchMsg::Event {
                node: 1,
                event: Event::Role {
                    role: "follower".into(),
                    term: 6,
                    leader: None
                }
            }
        );
        assert_eq!(
            parse(
                2,
                r#"{"type":"membership","id":2,"voters":[1,2,3],"learners":[4]}"#
            ),
            WatchMsg::Event {
                node: 2,
                event: Event::Membership {
                    voters: vec![1, 2, 3],
                    learners: vec![4]
                }
            }
        );
        assert_eq!(
            parse(
                1,
                r#"{"type":"applied","id":1,"index":10,"term":5,"op":"put","key":"k"}"#
            ),
            WatchMsg::Event {
                node: 1,
                event: Event::Applied {
                    index: 10,
                    term: 5,
                    op: "put".into(),
                    key: "k".into()
                }
            }
        );
        assert_eq!(
            parse(1, r#"{"type":"commit","id":1,"commit_index":10}"#),
            WatchMsg::Event {
                node: 1,
                event: Event::Commit { commit_index: 10 }
            }
        );
        assert_eq!(
            parse(1, r#"{"type":"snapshot","id":1,"index":3}"#),
            WatchMsg::Event {
                node: 1,
                event: Event::Unknown
            }
        );
    }

    #[test]
    fn refuses_what_is_not_an_event() {
        for bad in ["", "[]", r#"{"type":"role","id":1}"#, r#"{"id":1}"#, "null"] {
            assert!(
                matches!(parse(1, bad), WatchMsg::Bad { node: 1, .. }),
                "{bad}"
            );
        }
        assert!(matches!(
            parse(1, r#"{"type":"commit","id":2,"commit_index":1}"#),
            WatchMsg::Bad { node: 1, .. }
        ));
    }
}
