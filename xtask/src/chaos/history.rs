//! The record of a chaos run: every client operation with its invocation and
//! completion times and its outcome, as the clients saw it, and the
//! translation of that record into what the linearizability checker and the
//! lost-write check need.
//!
//! Outcomes are classified by what the client can prove, never by hope:
//! `ok` (the server said it happened), `fail` (it definitely did not: a 4xx,
//! a 409 conflict, a refused connection before anything was sent) and
//! `unknown` (anything else). This module never guesses an unknown outcome
//! into a known one.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};

use serde::{Deserialize, Deserializer, Serialize};

use super::checker::{Action, CheckOp};

/// The operation a client invoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Read,
    Write,
    Cas,
}

/// What the client knows about the operation's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Fail,
    Unknown,
}

/// One operation, one line of `history.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    pub id: usize,
    /// Client number; final reads use the number after the last client.
    pub client: usize,
    /// Node the request was first sent to.
    pub node: u64,
    /// Node that gave the answer, after following redirects (when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<u64>,
    pub key: String,
    pub f: OpKind,
    /// Write / CAS: the value written. Read: the value returned (ok only;
    /// `null` for an absent key).
    #[serde(default)]
    pub value: Option<String>,
    /// CAS only: the expected value, `null` meaning "key must be absent".
    #[serde(
        default,
        deserialize_with = "some_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub expected: Option<Option<String>>,
    /// Refused CAS only: the current value the server reported (`null`:
    /// absent).
    #[serde(
        default,
        deserialize_with = "some_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub current: Option<Option<String>>,
    pub outcome: Outcome,
    /// Nanoseconds since the run started (monotonic clock).
    pub invoke_ns: u64,
    /// When the client got its answer or gave up.
    pub complete_ns: u64,
    /// HTTP status of the final answer, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why the outcome is fail or unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A read with `consistency=stale` (not linearizable by contract; only
    /// used to show the checker catches what such reads return).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// One of the reads made after the final heal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_final: bool,
}

/// Lets `Option<Option<T>>` tell a missing field (`None`) from `null`
/// (`Some(None)`).
fn some_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Writes the history as JSON lines.
pub fn write_jsonl<W: Write>(ops: &[OpRecord], mut out: W) -> std::io::Result<()> {
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Reads a history written by [`write_jsonl`]; a bad line is an error naming
/// its line number.
pub fn read_jsonl<R: BufRead>(input: R) -> anyhow::Result<Vec<OpRecord>> {
    let mut ops = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op: OpRecord = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("history line {}: {e}", n + 1))?;
        ops.push(op);
    }
    Ok(ops)
}

/// The operations the checker must explain. Reads that did not succeed tell
/// nothing and are left out; so are writes that definitely failed. A refused
/// CAS stays: it says the register did not hold the expected value.
pub fn to_check_ops(ops: &[OpRecord]) -> Vec<CheckOp> {
    ops.iter()
        .filter_map(|op| {
            let ret = Some(op.complete_ns);
            let (ret, action) = match (op.f, op.outcome) {
                (OpKind::Read, Outcome::Ok) => (
                    ret,
                    Action::Read {
                        saw: op.value.clone(),
                    },
                ),
                (OpKind::Read, _) => return None,
                (OpKind::Write, Outcome::Fail) => return None,
                (OpKind::Write, outcome) => (
                    ret.filter(|_| outcome == Outcome::Ok),
                    Action::Write {
                        value: op.value.clone(),
                    },
                ),
                (OpKind::Cas, Outcome::Fail) => {
                    // Only a 409 says the expected value was not there; any
                    // other refusal (400, ...) happened before the register
                    // was looked at.
                    if op.status != Some(409) {
                        return None;
                    }
                    (
                        ret,
                        Action::CasRejected {
                            expected: op.expected.clone().unwrap_or(None),
                            current: op.current.clone(),
                        },
                    )
                }
                (OpKind::Cas, outcome) => (
                    ret.filter(|_| outcome == Outcome::Ok),
                    Action::Cas {
                        expected: op.expected.clone().unwrap_or(None),
                        new: op.value.clone().unwrap_or_default(),
                    },
                ),
            };
            Some(CheckOp {
                id: op.id,
                key: op.key.clone(),
                call: op.invoke_ns,
                ret,
                action,
            })
        })
        .collect()
}

/// An acknowledged write missing from the final state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostWrite {
    pub op: usize,
    pub key: String,
    pub value: String,
    /// What the final reads showed instead.
    pub final_value: Option<String>,
    /// The operation that wrote the final value, when there is one.
    pub final_writer: Option<usize>,
}

/// Checks that every acknowledged write is visible in the final reads or
/// superseded by a write that may come after it. The final value of a key is
/// the last successful final read of it. A write is lost when the final
/// value was written by an operation that completed before the write was
/// invoked (so it cannot have overwritten it), or when the key reads as
/// absent (the workload never deletes), or when nothing wrote the final value
/// at all. Keys without a successful final read are returned separately:
/// their writes cannot be verified.
pub fn lost_writes(ops: &[OpRecord]) -> (Vec<LostWrite>, Vec<String>) {
    let mut final_value: BTreeMap<&str, (u64, Option<String>)> = BTreeMap::new();
    for op in ops
        .iter()
        .filter(|o| o.is_final && o.f == OpKind::Read && o.outcome == Outcome::Ok)
    {
        let e = final_value.entry(&op.key).or_insert((0, None));
        if op.invoke_ns >= e.0 {
            *e = (op.invoke_ns, op.value.clone());
        }
    }
    // Writers of each value (values are unique per write).
    let mut writer: HashMap<(&str, &str), &OpRecord> = HashMap::new();
    for op in ops {
        if matches!(op.f, OpKind::Write | OpKind::Cas) && op.outcome != Outcome::Fail {
            if let Some(v) = &op.value {
                writer.insert((&op.key, v), op);
            }
        }
    }
    let mut lost = Vec::new();
    let mut unverified: Vec<String> = Vec::new();
    for op in ops {
        if !matches!(op.f, OpKind::Write | OpKind::Cas) || op.outcome != Outcome::Ok {
            continue;
        }
        let Some(value) = &op.value else { continue };
        let Some((_, fin)) = final_value.get(op.key.as_str()) else {
            if !unverified.contains(&op.key) {
                unverified.push(op.key.clone());
            }
            continue;
        };
        if fin.as_ref() == Some(value) {
            continue;
        }
        let final_writer = fin
            .as_ref()
            .and_then(|f| writer.get(&(op.key.as_str(), f.as_str())));
        let superseded = final_writer.is_some_and(|w| {
            // w may follow op unless w finished before op began.
            w.outcome == Outcome::Unknown || w.complete_ns >= op.invoke_ns
        });
        if !superseded {
            lost.push(LostWrite {
                op: op.id,
                key: op.key.clone(),
                value: value.clone(),
                final_value: fin.clone(),
                final_writer: final_writer.map(|w| w.id),
            });
        }
    }
    unverified.sort();
    (lost, unverified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        id: usize,
        f: OpKind,
        key: &str,
        value: Option<&str>,
        outcome: Outcome,
        t: (u64, u64),
    ) -> OpRecord {
        OpRecord {
            id,
            client: 0,
            node: 1,
            answered_by: None,
            key: key.into(),
            f,
            value: value.map(Into::into),
            expected: None,
            current: None,
            outcome,
            invoke_ns: t.0,
            complete_ns: t.1,
            status: None,
            error: None,
            stale: false,
            is_final: false,
        }
    }

    #[test]
    fn jsonl_round_trips_and_keeps_null_apart_from_missing() {
        let mut cas = op(0, OpKind::Cas, "k", Some("b"), Outcome::Fail, (1, 2));
        cas.expected = Some(None);
        cas.current = Some(Some("z".into()));
        cas.status = Some(409);
        let read = op(1, OpKind::Read, "k", None, Outcome::Ok, (3, 4));
        let mut buf = Vec::new();
        write_jsonl(&[cas.clone(), read.clone()], &mut buf).expect("write to a Vec");
        let text = String::from_utf8(buf.clone()).expect("JSON is UTF-8");
        assert!(
            text.lines()
                .next()
                .is_some_and(|l| l.contains("\"expected\":null")),
            "{text}"
        );
        assert!(
            !text.lines().nth(1).is_some_and(|l| l.contains("expected")),
            "{text}"
        );
        let back = read_jsonl(&buf[..]).expect("parse");
        assert_eq!(back, vec![cas, read]);
    }

    #[test]
    fn bad_history_line_is_an_error_not_a_panic() {
        let err = read_jsonl(&b"{\"id\":1}\n"[..]).expect_err("missing fields");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn translation_drops_what_carries_no_information() {
        let mut h = vec![
            op(0, OpKind::Read, "k", None, Outcome::Unknown, (0, 1)),
            op(1, OpKind::Write, "k", Some("a"), Outcome::Fail, (0, 1)),
            op(2, OpKind::Write, "k", Some("b"), Outcome::Unknown, (0, 1)),
            op(3, OpKind::Cas, "k", Some("c"), Outcome::Fail, (0, 1)),
            op(4, OpKind::Cas, "k", Some("d"), Outcome::Fail, (0, 1)),
            op(5, OpKind::Read, "k", Some("b"), Outcome::Ok, (2, 3)),
        ];
        h[3].status = Some(400);
        h[4].status = Some(409);
        h[4].expected = Some(Some("x".into()));
        h[4].current = Some(None);
        let c = to_check_ops(&h);
        let ids: Vec<usize> = c.iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![2, 4, 5]);
        assert_eq!(c[0].ret, None, "unknown write has no completion");
        assert_eq!(
            c[1].action,
            Action::CasRejected {
                expected: Some("x".into()),
                current: Some(None)
            }
        );
    }

    #[test]
    fn lost_write_detection() {
        let mut fin = op(9, OpKind::Read, "k", Some("a"), Outcome::Ok, (100, 101));
        fin.is_final = true;
        // a, then b acknowledged strictly later, final shows a: b is lost.
        let h = vec![
            op(0, OpKind::Write, "k", Some("a"), Outcome::Ok, (0, 1)),
            op(1, OpKind::Write, "k", Some("b"), Outcome::Ok, (2, 3)),
            fin.clone(),
        ];
        let (lost, unverified) = lost_writes(&h);
        assert!(unverified.is_empty());
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].op, 1);
        assert_eq!(lost[0].final_writer, Some(0));

        // Overlapping writes: a may have come after b, so nothing is lost.
        let h = vec![
            op(0, OpKind::Write, "k", Some("a"), Outcome::Ok, (0, 5)),
            op(1, OpKind::Write, "k", Some("b"), Outcome::Ok, (2, 3)),
            fin.clone(),
        ];
        assert!(lost_writes(&h).0.is_empty());

        // An unknown write of the final value may have landed late.
        let h = vec![
            op(0, OpKind::Write, "k", Some("a"), Outcome::Unknown, (0, 1)),
            op(1, OpKind::Write, "k", Some("b"), Outcome::Ok, (2, 3)),
            fin.clone(),
        ];
        assert!(lost_writes(&h).0.is_empty());

        // Absent at the end after an acknowledged write: lost.
        let mut absent = fin.clone();
        absent.value = None;
        let h = vec![
            op(0, OpKind::Write, "k", Some("a"), Outcome::Ok, (0, 1)),
            absent,
        ];
        assert_eq!(lost_writes(&h).0.len(), 1);

        // No final read of the key: cannot verify.
        let h = vec![
            op(0, OpKind::Write, "j", Some("a"), Outcome::Ok, (0, 1)),
            fin,
        ];
        assert_eq!(lost_writes(&h).1, vec!["j".to_string()]);
    }
}
