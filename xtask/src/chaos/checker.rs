//! Linearizability checker for a history of register operations, one
//! register per key.
//!
//! This is the Wing & Gong search with Lowe's memoisation, as Porcupine and
//! Knossos implement it: walk the history in real-time order, tentatively
//! linearize any pending call whose effect the model accepts, and backtrack
//! when some operation's response is reached before it could be placed. A
//! cache of (set of linearized operations, register state) pairs already
//! explored keeps the search from visiting the same configuration twice.
//!
//! Keys are independent registers, so each key is checked on its own
//! (linearizability is local); the history of one key is what the search
//! sees.
//!
//! Operations whose outcome is unknown (timeout, lost connection, a 503/504
//! saying so) may have taken effect at any moment after their invocation, or
//! never: they get an infinite response time, so the search may place them
//! anywhere after their call, including after everything else, which is the
//! same as "never".
//!
//! The search is exponential in the worst case, so it runs under a budget (a
//! deadline, a step count and a cap on the memo table) and answers
//! [`Verdict::Unknown`] when the budget runs out. It must never answer
//! "linearizable" or "violation" without having proven it.
//!
//! This module is pure: no I/O, no clock other than the deadline it is given.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

/// What one operation did, as the client saw it. Values are strings; `None`
/// stands for "key absent".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A read that returned `saw` (`None`: 404, the key was absent).
    Read { saw: Option<String> },
    /// A write of `value` (`None` would be a delete).
    Write { value: Option<String> },
    /// A compare-and-set from `expected` (`None`: key must be absent) to `new`.
    /// With a known completion it succeeded; with an unknown one it may have
    /// applied (if the register held `expected` at that moment) or not.
    Cas {
        expected: Option<String>,
        new: String,
    },
    /// A compare-and-set the server refused with 409: the register did not
    /// hold `expected`; it held `current` when that is known.
    CasRejected {
        expected: Option<String>,
        current: Option<Option<String>>,
    },
}

/// One operation handed to the checker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOp {
    /// The caller's identifier for this operation (its index in the history);
    /// verdicts name operations by it.
    pub id: usize,
    pub key: String,
    /// Invocation time, in nanoseconds since any fixed origin.
    pub call: u64,
    /// Completion time; `None` when the outcome is unknown.
    pub ret: Option<u64>,
    pub action: Action,
}

/// Limits on one check. The check answers [`Verdict::Unknown`] rather than
/// exceed any of them.
#[derive(Clone, Debug)]
pub struct Budget {
    /// Wall-clock deadline for the whole check (all keys).
    pub deadline: Option<Instant>,
    /// Search steps for the whole check (all keys); a step is one look at one
    /// history entry.
    pub max_steps: Option<u64>,
    /// Memo-table entries for one key at a time (bounds memory).
    pub max_cache_entries: usize,
}

impl Budget {
    /// A budget of `time` of wall-clock time, starting now, and a memo table of
    /// at most two million entries per key.
    pub fn with_time(time: Duration) -> Self {
        Budget {
            deadline: Instant::now().checked_add(time),
            max_steps: None,
            max_cache_entries: 2_000_000,
        }
    }
}

/// Why a key's history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// The operation that could not be placed: at the deepest point the search
    /// reached, its response came before any linearization could include it.
    pub blocking_op: usize,
    /// The longest linearizable prefix the search found, in order.
    pub prefix: Vec<usize>,
    /// The register's value after that prefix.
    pub state_after_prefix: Option<String>,
    /// Other operations that bear on the anomaly (the write a stale read
    /// should have seen, the other successful CAS, ...).
    pub related: Vec<usize>,
    /// A one-line explanation for people.
    pub explanation: String,
}

/// The answer for a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history has a linearization.
    Linearizable,
    /// At least one key's history has none; the first one found is described.
    Violation(Box<Violation>),
    /// The budget ran out before an answer was proven.
    Unknown(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::Violation(v) => write!(f, "NOT linearizable: {}", v.explanation),
            Verdict::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// Counts that describe a check, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    pub keys: usize,
    pub ops_checked: usize,
    /// Unknown-outcome writes dropped because nothing ever observed their
    /// value (placing them "never" is then exact, see [`check`]).
    pub unknown_dropped: usize,
    pub steps: u64,
    pub max_cache_entries: usize,
}

/// Checks every key's history. See the module docs for the semantics.
pub fn check(ops: &[CheckOp], budget: &Budget) -> (Verdict, CheckStats) {
    let mut by_key: HashMap<&str, Vec<&CheckOp>> = HashMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut keys: Vec<&str> = by_key.keys().copied().collect();
    keys.sort_unstable();

    let mut stats = CheckStats {
        keys: keys.len(),
        ..CheckStats::default()
    };
    let mut steps_left = budget.max_steps;
    let mut unknown: Option<String> = None;
    for key in keys {
        let key_ops = prune(&by_key[key], &mut stats);
        stats.ops_checked += key_ops.len();
        let mut search = Search::new(key, &key_ops);
        let outcome = search.run(budget, &mut steps_left);
        stats.steps += search.steps;
        stats.max_cache_entries = stats.max_cache_entries.max(search.cache.len());
        match outcome {
            SearchOutcome::Linearizable => {}
            SearchOutcome::Violation => {
                let v = search.violation(&key_ops);
                return (Verdict::Violation(Box::new(v)), stats);
            }
            SearchOutcome::OutOfBudget(why) => {
                // Keep going: another key may still show a definite violation.
                unknown.get_or_insert(format!("key {key:?}: {why}"));
                if why == BUDGET_TIME || why == BUDGET_STEPS {
                    break;
                }
            }
        }
    }
    match unknown {
        Some(why) => (Verdict::Unknown(why), stats),
        None => (Verdict::Linearizable, stats),
    }
}

const BUDGET_TIME: &str = "time budget exceeded";
const BUDGET_STEPS: &str = "step budget exceeded";
const BUDGET_CACHE: &str = "memo table limit reached";

/// Drops unknown-outcome writes and CAS whose written value nobody ever
/// observed. Placing such an operation "never" is always as good as placing
/// it anywhere else: any operation it could influence before the next write
/// would have had to observe its value (a read returning it, a CAS expecting
/// it, a rejected CAS reporting it as current). That argument needs every
/// rejected CAS to report the current value, so nothing is dropped otherwise.
/// This keeps long runs with many timeouts tractable.
fn prune<'a>(ops: &[&'a CheckOp], stats: &mut CheckStats) -> Vec<&'a CheckOp> {
    let all_rejections_report_current = ops
        .iter()
        .all(|op| !matches!(op.action, Action::CasRejected { current: None, .. }));
    if !all_rejections_report_current {
        return ops.to_vec();
    }
    let mut observed: HashSet<&str> = HashSet::new();
    for op in ops {
        match &op.action {
            Action::Read { saw: Some(v) } if op.ret.is_some() => {
                observed.insert(v);
            }
            Action::Cas {
                expected: Some(v), ..
            } => {
                observed.insert(v);
            }
            Action::CasRejected { expected, current } => {
                if let Some(v) = expected {
                    observed.insert(v);
                }
                if let Some(Some(v)) = current {
                    observed.insert(v);
                }
            }
            _ => {}
        }
    }
    ops.iter()
        .copied()
        .filter(|op| {
            let written = match &op.action {
                Action::Write { value: Some(v) } => Some(v.as_str()),
                Action::Cas { new, .. } => Some(new.as_str()),
                _ => None,
            };
            let droppable = op.ret.is_none() && written.is_some_and(|v| !observed.contains(v));
            if droppable {
                stats.unknown_dropped += 1;
            }
            !droppable
        })
        .collect()
}

/// Interned register value: 0 is "absent", i > 0 is `values[i - 1]`.
type State = u32;
const ABSENT: State = 0;

#[derive(Clone, Copy, Debug)]
enum Act {
    Read(State),
    Write(State),
    Cas {
        expected: State,
        new: State,
    },
    CasMaybe {
        expected: State,
        new: State,
    },
    CasRejected {
        expected: State,
        current: Option<State>,
    },
}

impl Act {
    /// The model: whether the operation can take effect on `state`, and the
    /// state after it.
    fn step(self, state: State) -> Option<State> {
        match self {
            Act::Read(saw) => (saw == state).then_some(state),
            Act::Write(v) => Some(v),
            Act::Cas { expected, new } => (expected == state).then_some(new),
            Act::CasMaybe { expected, new } => Some(if expected == state { new } else { state }),
            Act::CasRejected { expected, current } => {
                (expected != state && current.is_none_or(|c| c == state)).then_some(state)
            }
        }
    }
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// Memo key: the linearized set with its all-ones leading words and
/// all-zeros trailing words trimmed (exact, and small because linearized
/// sets are mostly a prefix of the history), plus the register state.
#[derive(Clone, PartialEq, Eq, Hash)]
struct MemoKey {
    full_words: u32,
    middle: Box<[u64]>,
    state: State,
}

enum SearchOutcome {
    Linearizable,
    Violation,
    OutOfBudget(&'static str),
}

struct Search {
    key: String,
    values: Vec<String>,
    acts: Vec<Act>,
    /// Whether the operation completed (must be linearized).
    known: Vec<bool>,
    // The history as a doubly linked list of entries; entry 0 is the head
    // sentinel, then two entries per operation (call, return).
    next: Vec<usize>,
    prev: Vec<usize>,
    entry_op: Vec<usize>,
    entry_is_call: Vec<bool>,
    call_entry_ret: Vec<usize>,
    bits: Vec<u64>,
    cache: HashSet<MemoKey>,
    steps: u64,
    // Diagnostics: the deepest linearized prefix seen and what blocked it.
    best_prefix: Vec<usize>,
    best_state: State,
    best_blocker: Option<usize>,
}

impl Search {
    fn new(key: &str, ops: &[&CheckOp]) -> Self {
        let mut values: Vec<String> = Vec::new();
        let mut index: HashMap<String, State> = HashMap::new();
        let mut intern = |v: &Option<String>| -> State {
            match v {
                None => ABSENT,
                Some(s) => {
                    if let Some(&i) = index.get(s) {
                        return i;
                    }
                    values.push(s.clone());
                    let i = State::try_from(values.len()).expect("fewer than 2^32 values per key");
                    index.insert(s.clone(), i);
                    i
                }
            }
        };
        let mut acts = Vec::with_capacity(ops.len());
        let mut known = Vec::with_capacity(ops.len());
        for op in ops {
            let act = match &op.action {
                Action::Read { saw } => Act::Read(intern(saw)),
                Action::Write { value } => Act::Write(intern(value)),
                Action::Cas { expected, new } => {
                    let expected = intern(expected);
                    let new = intern(&Some(new.clone()));
                    if op.ret.is_some() {
                        Act::Cas { expected, new }
                    } else {
                        Act::CasMaybe { expected, new }
                    }
                }
                Action::CasRejected { expected, current } => Act::CasRejected {
                    expected: intern(expected),
                    current: current.as_ref().map(&mut intern),
                },
            };
            acts.push(act);
            known.push(op.ret.is_some());
        }

        // Entries in real-time order. At equal times calls sort before
        // returns, which treats touching intervals as concurrent: the
        // permissive reading, so equal timestamps never cause a false alarm.
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, 0, i));
            events.push((op.ret.unwrap_or(u64::MAX), 1, i));
        }
        events.sort_unstable();
        let n_entries = events.len() + 1;
        let mut next = vec![NIL; n_entries];
        let mut prev = vec![NIL; n_entries];
        let mut entry_op = vec![NIL; n_entries];
        let mut entry_is_call = vec![false; n_entries];
        let mut call_entry_ret = vec![NIL; n_entries];
        let mut ret_entry_of_op = vec![NIL; ops.len()];
        let mut call_entry_of_op = vec![NIL; ops.len()];
        for (pos, &(_, kind, op)) in events.iter().enumerate() {
            let e = pos + 1;
            entry_op[e] = op;
            entry_is_call[e] = kind == 0;
            if kind == 0 {
                call_entry_of_op[op] = e;
            } else {
                ret_entry_of_op[op] = e;
            }
            prev[e] = e - 1;
            next[e - 1] = e;
        }
        for op in 0..ops.len() {
            call_entry_ret[call_entry_of_op[op]] = ret_entry_of_op[op];
        }
        Search {
            key: key.to_string(),
            values,
            acts,
            known,
            next,
            prev,
            entry_op,
            entry_is_call,
            call_entry_ret,
            bits: vec![0; ops.len().div_ceil(64)],
            cache: HashSet::new(),
            steps: 0,
            best_prefix: Vec::new(),
            best_state: ABSENT,
            best_blocker: None,
        }
    }

    fn lift(&mut self, call: usize) {
        let ret = self.call_entry_ret[call];
        for e in [call, ret] {
            let (p, n) = (self.prev[e], self.next[e]);
            self.next[p] = n;
            if n != NIL {
                self.prev[n] = p;
            }
        }
    }

    fn unlift(&mut self, call: usize) {
        let ret = self.call_entry_ret[call];
        // Reverse order of removal restores the list exactly.
        for e in [ret, call] {
            let (p, n) = (self.prev[e], self.next[e]);
            self.next[p] = e;
            if n != NIL {
                self.prev[n] = e;
            }
        }
    }

    fn memo_key(&self, state: State) -> MemoKey {
        let full = self.bits.iter().take_while(|&&w| w == u64::MAX).count();
        let end = self.bits.len() - self.bits.iter().rev().take_while(|&&w| w == 0).count();
        let middle = if end > full {
            &self.bits[full..end]
        } else {
            &[][..]
        };
        MemoKey {
            full_words: u32::try_from(full).expect("history fits in 2^32 words"),
            middle: middle.into(),
            state,
        }
    }

    fn run(&mut self, budget: &Budget, steps_left: &mut Option<u64>) -> SearchOutcome {
        let mut remaining_known = self.known.iter().filter(|&&k| k).count();
        let mut state = ABSENT;
        // (call entry, state before it)
        let mut stack: Vec<(usize, State)> = Vec::new();
        let mut entry = self.next[HEAD];
        loop {
            if remaining_known == 0 {
                return SearchOutcome::Linearizable;
            }
            self.steps += 1;
            if let Some(left) = steps_left {
                if *left == 0 {
                    return SearchOutcome::OutOfBudget(BUDGET_STEPS);
                }
                *left -= 1;
            }
            if self.steps % 4096 == 0 {
                if let Some(deadline) = budget.deadline {
                    if Instant::now() >= deadline {
                        return SearchOutcome::OutOfBudget(BUDGET_TIME);
                    }
                }
            }
            // Every completed operation's return entry is still in the list
            // while it is unlinearized, so the walk meets one before the end.
            debug_assert_ne!(entry, NIL, "walked past every return entry");
            if entry == NIL {
                return SearchOutcome::Violation;
            }
            let op = self.entry_op[entry];
            if self.entry_is_call[entry] {
                if let Some(new_state) = self.acts[op].step(state) {
                    self.bits[op / 64] |= 1 << (op % 64);
                    let key = self.memo_key(new_state);
                    if !self.cache.contains(&key) {
                        if self.cache.len() >= budget.max_cache_entries {
                            return SearchOutcome::OutOfBudget(BUDGET_CACHE);
                        }
                        self.cache.insert(key);
                        stack.push((entry, state));
                        state = new_state;
                        self.lift(entry);
                        if self.known[op] {
                            remaining_known -= 1;
                        }
                        entry = self.next[HEAD];
                        continue;
                    }
                    self.bits[op / 64] &= !(1 << (op % 64));
                }
                entry = self.next[entry];
            } else {
                // A response is due before this operation could be placed.
                if stack.len() >= self.best_prefix.len() {
                    self.best_prefix = stack.iter().map(|&(e, _)| self.entry_op[e]).collect();
                    self.best_state = state;
                    self.best_blocker = Some(op);
                }
                let Some((call, before)) = stack.pop() else {
                    return SearchOutcome::Violation;
                };
                let popped = self.entry_op[call];
                state = before;
                self.bits[popped / 64] &= !(1 << (popped % 64));
                self.unlift(call);
                if self.known[popped] {
                    remaining_known += 1;
                }
                entry = self.next[call];
            }
        }
    }

    fn value(&self, s: State) -> Option<String> {
        (s != ABSENT).then(|| self.values[s as usize - 1].clone())
    }

    /// Describes the failure in the caller's terms (ids from [`CheckOp::id`]).
    fn violation(&self, ops: &[&CheckOp]) -> Violation {
        let blocker = self.best_blocker.unwrap_or(0);
        let prefix: Vec<usize> = self.best_prefix.iter().map(|&i| ops[i].id).collect();
        let (explanation, related) = explain(ops, blocker, self.value(self.best_state));
        Violation {
            key: self.key.clone(),
            blocking_op: ops[blocker].id,
            prefix,
            state_after_prefix: self.value(self.best_state),
            related,
            explanation,
        }
    }
}

/// Names the kind of anomaly around the blocking operation, with the
/// operations that show it. Falls back to a generic description.
fn explain(ops: &[&CheckOp], blocker: usize, state: Option<String>) -> (String, Vec<usize>) {
    let b = ops[blocker];
    let show = |v: &Option<String>| match v {
        Some(s) => format!("{s:?}"),
        None => "absent".to_string(),
    };
    let writes_value = |op: &CheckOp, v: &str| match &op.action {
        Action::Write { value: Some(w) } => w == v,
        Action::Cas { new, .. } => new == v,
        _ => false,
    };
    let b_call = b.call;
    match &b.action {
        Action::Read { saw } => {
            if let Some(v) = saw {
                let writers: Vec<&&CheckOp> = ops.iter().filter(|o| writes_value(o, v)).collect();
                if writers.is_empty() {
                    return (
                        format!(
                            "read of a value never written: op {} read {} from key {:?}, and no write of that value was attempted or it definitely failed",
                            b.id,
                            show(saw),
                            b.key
                        ),
                        vec![],
                    );
                }
                if let Some(w) = writers.iter().find(|w| w.call > b.ret.unwrap_or(u64::MAX)) {
                    return (
                        format!(
                            "read from the future: op {} read {:?} from key {:?} before op {} wrote it",
                            b.id, v, b.key, w.id
                        ),
                        vec![w.id],
                    );
                }
            }
            // A stale read: some write that completed before the read began
            // was itself invoked after the value read was written (or the
            // read saw "absent" after a completed write).
            let source_done = saw.as_ref().and_then(|v| {
                ops.iter()
                    .filter(|o| writes_value(o, v))
                    .filter_map(|o| o.ret)
                    .min()
            });
            let newer = ops.iter().find(|o| {
                let is_write = matches!(o.action, Action::Write { .. } | Action::Cas { .. });
                let done_before_read = o.ret.is_some_and(|r| r < b_call);
                let after_source = source_done.is_none_or(|t| o.call > t);
                let different = !saw.as_ref().is_some_and(|v| writes_value(o, v));
                is_write && done_before_read && after_source && different
            });
            if let Some(w) = newer {
                return (
                    format!(
                        "stale read: op {} read {} from key {:?}, but op {} had already overwritten it before the read began",
                        b.id,
                        show(saw),
                        b.key,
                        w.id
                    ),
                    vec![w.id],
                );
            }
            (
                format!(
                    "op {} read {} from key {:?}, which no ordering of the concurrent operations allows (register held {} after the longest valid prefix)",
                    b.id,
                    show(saw),
                    b.key,
                    show(&state)
                ),
                vec![],
            )
        }
        Action::Cas { expected, new } => {
            let twin = ops.iter().find(|o| {
                o.id != b.id
                    && o.ret.is_some()
                    && matches!(&o.action, Action::Cas { expected: e, .. } if e == expected)
            });
            if let Some(t) = twin {
                return (
                    format!(
                        "two compare-and-set ops from the same value both succeeded: ops {} and {} on key {:?} both expected {}",
                        t.id,
                        b.id,
                        b.key,
                        show(expected)
                    ),
                    vec![t.id],
                );
            }
            (
                format!(
                    "compare-and-set op {} on key {:?} ({} -> {:?}) succeeded, but the register could not have held {} (it held {} after the longest valid prefix)",
                    b.id,
                    b.key,
                    show(expected),
                    new,
                    show(expected),
                    show(&state)
                ),
                vec![],
            )
        }
        Action::CasRejected { expected, current } => (
            format!(
                "compare-and-set op {} on key {:?} was refused (expected {}, server said current {}), which no ordering allows",
                b.id,
                b.key,
                show(expected),
                current.as_ref().map_or("unreported".to_string(), show)
            ),
            vec![],
        ),
        Action::Write { value } => (
            format!(
                "write op {} of {} to key {:?} cannot be placed in any order consistent with the reads around it",
                b.id,
                show(value),
                b.key
            ),
            vec![],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget {
            deadline: None,
            max_steps: Some(10_000_000),
            max_cache_entries: 1_000_000,
        }
    }

    struct H {
        ops: Vec<CheckOp>,
    }

    impl H {
        fn new() -> Self {
            H { ops: Vec::new() }
        }
        fn op(&mut self, key: &str, call: u64, ret: Option<u64>, action: Action) -> usize {
            let id = self.ops.len();
            self.ops.push(CheckOp {
                id,
                key: key.to_string(),
                call,
                ret,
                action,
            });
            id
        }
        fn w(&mut self, call: u64, ret: u64, v: &str) -> usize {
            self.op(
                "k",
                call,
                Some(ret),
                Action::Write {
                    value: Some(v.into()),
                },
            )
        }
        fn w_unknown(&mut self, call: u64, v: &str) -> usize {
            self.op(
                "k",
                call,
                None,
                Action::Write {
                    value: Some(v.into()),
                },
            )
        }
        fn r(&mut self, call: u64, ret: u64, saw: Option<&str>) -> usize {
            self.op(
                "k",
                call,
                Some(ret),
                Action::Read {
                    saw: saw.map(Into::into),
                },
            )
        }
        fn cas(&mut self, call: u64, ret: u64, from: Option<&str>, to: &str) -> usize {
            self.op(
                "k",
                call,
                Some(ret),
                Action::Cas {
                    expected: from.map(Into::into),
                    new: to.into(),
                },
            )
        }
        fn cas_unknown(&mut self, call: u64, from: Option<&str>, to: &str) -> usize {
            self.op(
                "k",
                call,
                None,
                Action::Cas {
                    expected: from.map(Into::into),
                    new: to.into(),
                },
            )
        }
        fn cas_rejected(
            &mut self,
            call: u64,
            ret: u64,
            from: Option<&str>,
            cur: Option<&str>,
        ) -> usize {
            self.op(
                "k",
                call,
                Some(ret),
                Action::CasRejected {
                    expected: from.map(Into::into),
                    current: Some(cur.map(Into::into)),
                },
            )
        }
        fn check(&self) -> Verdict {
            check(&self.ops, &budget()).0
        }
    }

    fn violation(v: Verdict) -> Violation {
        match v {
            Verdict::Violation(v) => *v,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(H::new().check(), Verdict::Linearizable);
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let mut h = H::new();
        h.r(0, 1, None);
        h.w(2, 3, "a");
        h.r(4, 5, Some("a"));
        h.cas(6, 7, Some("a"), "b");
        h.r(8, 9, Some("b"));
        h.cas_rejected(10, 11, Some("a"), Some("b"));
        h.cas(12, 13, Some("b"), "c");
        h.r(14, 15, Some("c"));
        assert_eq!(h.check(), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_ops_may_be_ordered_either_way() {
        // Two overlapping writes; reads that overlap both may see either,
        // and a later pair of reads agree on the final order.
        let mut h = H::new();
        h.w(0, 10, "a");
        h.w(1, 11, "b");
        h.r(2, 12, Some("b"));
        h.r(3, 13, Some("a"));
        h.r(20, 21, Some("a"));
        h.r(22, 23, Some("a"));
        assert_eq!(h.check(), Verdict::Linearizable);
    }

    #[test]
    fn read_concurrent_with_write_may_see_old_or_new() {
        let mut h = H::new();
        h.w(0, 1, "a");
        h.w(10, 20, "b");
        h.r(11, 12, Some("a"));
        h.r(13, 14, Some("b"));
        assert_eq!(h.check(), Verdict::Linearizable);
    }

    #[test]
    fn but_not_new_then_old() {
        let mut h = H::new();
        h.w(0, 1, "a");
        h.w(10, 20, "b");
        h.r(11, 12, Some("b"));
        let stale = h.r(13, 14, Some("a"));
        let v = violation(h.check());
        assert_eq!(v.blocking_op, stale);
    }

    #[test]
    fn stale_read_is_caught() {
        let mut h = H::new();
        h.w(0, 1, "a");
        let newer = h.w(2, 3, "b");
        let stale = h.r(4, 5, Some("a"));
        let v = violation(h.check());
        assert_eq!(v.key, "k");
        assert_eq!(v.blocking_op, stale);
        assert!(v.explanation.starts_with("stale read"), "{}", v.explanation);
        assert_eq!(v.related, vec![newer]);
    }

    #[test]
    fn absent_after_completed_write_is_stale() {
        let mut h = H::new();
        h.w(0, 1, "a");
        let stale = h.r(2, 3, None);
        let v = violation(h.check());
        assert_eq!(v.blocking_op, stale);
        assert!(v.explanation.starts_with("stale read"), "{}", v.explanation);
    }

    #[test]
    fn lost_write_is_caught() {
        // An acknowledged write that a later read does not see, while the
        // value it read was written before.
        let mut h = H::new();
        h.w(0, 1, "a");
        h.w(2, 3, "b");
        h.r(4, 5, Some("b"));
        h.r(6, 7, Some("a"));
        assert!(matches!(h.check(), Verdict::Violation(_)));

        let mut h = H::new();
        h.w(0, 1, "a");
        h.cas(2, 3, Some("a"), "b");
        // The CAS result vanished: the final read shows the value it replaced.
        h.r(10, 11, Some("a"));
        assert!(matches!(h.check(), Verdict::Violation(_)));
    }

    #[test]
    fn two_cas_from_same_value_cannot_both_succeed() {
        let mut h = H::new();
        h.w(0, 1, "a");
        let c1 = h.cas(2, 10, Some("a"), "b");
        let c2 = h.cas(3, 11, Some("a"), "c");
        let v = violation(h.check());
        assert!(
            v.explanation.starts_with("two compare-and-set"),
            "{}",
            v.explanation
        );
        let mut pair = vec![v.blocking_op, v.related[0]];
        pair.sort_unstable();
        assert_eq!(pair, vec![c1, c2]);
    }

    #[test]
    fn two_cas_from_absent_cannot_both_succeed() {
        let mut h = H::new();
        h.cas(0, 10, None, "b");
        h.cas(1, 11, None, "c");
        assert!(matches!(h.check(), Verdict::Violation(_)));
    }

    #[test]
    fn chained_cas_is_fine() {
        let mut h = H::new();
        h.w(0, 1, "a");
        h.cas(2, 10, Some("a"), "b");
        h.cas(3, 11, Some("b"), "c");
        h.cas_rejected(4, 12, Some("a"), Some("c"));
        h.r(20, 21, Some("c"));
        assert_eq!(h.check(), Verdict::Linearizable);
    }

    #[test]
    fn read_of_value_never_written_is_caught() {
        let mut h = H::new();
        h.w(0, 1, "a");
        let r = h.r(2, 3, Some("ghost"));
        let v = violation(h.check());
        assert_eq!(v.blocking_op, r);
        assert!(
            v.explanation.starts_with("read of a value never written"),
            "{}",
            v.explanation
        );
    }

    #[test]
    fn read_from_the_future_is_caught() {
        let mut h = H::new();
        let r = h.r(0, 1, Some("a"));
        let w = h.w(2, 3, "a");
        let v = violation(h.check());
        assert_eq!(v.blocking_op, r);
        assert_eq!(v.related, vec![w]);
    }

    #[test]
    fn rejected_cas_must_be_consistent() {
        // Refused although the register held the expected value.
        let mut h = H::new();
        h.w(0, 1, "a");
        h.cas_rejected(2, 3, Some("a"), Some("a"));
        assert!(matches!(h.check(), Verdict::Violation(_)));
        // Refused and reporting a value the register did not hold.
        let mut h = H::new();
        h.w(0, 1, "a");
        h.cas_rejected(2, 3, Some("z"), Some("b"));
        assert!(matches!(h.check(), Verdict::Violation(_)));
    }

    #[test]
    fn unknown_write_may_apply_late() {
        // The write timed out; a read long after shows it landed.
        let mut h = H::new();
        h.w(0, 1, "a");
        h.w_unknown(2, "b");
        h.r(3, 4, Some("a"));
        h.r(100, 101, Some("b"));
        h.r(102, 103, Some("b"));
        assert_eq!(h.check(), Verdict::Linearizable);
    }

    #[test]
    fn unknown_write_may_never_apply() {
        let mut h = H::new();
        h.w(0, 1, "a");
        h.w_unknown(2, "b");
        h.r(100, 101, Some("a"));
        assert_eq!(h.check(), Verdict::Linearizable);
        // Even when someone expected its value (so it is not pruned).
        let mut h = H::new();
        h.w(0, 1, "a");
        h.w_unknown(2, "b");
        h.cas_rejected(50, 51, Some("b"), Some("a"));
        h.r(100, 101, Some("a"));
        assert_eq!(h.check(), Verdict::Linearizable);
    }

    #[test]
    fn unknown_write_cannot_apply_before_its_invocation() {
        let mut h = H::new();
        h.w(0, 1, "a");
        h.r(2, 3, Some("b"));
        h.w_unknown(10, "b");
        assert!(matches!(h.check(), Verdict::Violation(_)));
    }

    #[test]
    fn unknown_write_applies_once() {
        // Seen, then overwritten, then seen again: it cannot apply twice.
        let mut h = H::new();
        h.w_unknown(0, "b");
        h.r(10, 11, Some("b"));
        h.w(12, 13, "c");
        h.r(14, 15, Some("b"));
        assert!(matches!(h.check(), Verdict::Violation(_)));
    }

    #[test]
    fn unknown_cas_applies_only_from_expected() {
        let mut h = H::new();
        h.w(0, 1, "a");
        h.cas_unknown(2, Some("a"), "b");
        h.r(10, 11, Some("b"));
        assert_eq!(h.check(), Verdict::Linearizable);

        let mut h = H::new();
        h.w(0, 1, "x");
        h.cas_unknown(2, Some("a"), "b");
        h.r(10, 11, Some("b"));
        assert!(matches!(h.check(), Verdict::Violation(_)));
    }

    #[test]
    fn keys_are_independent() {
        let mut h = H::new();
        h.op(
            "x",
            0,
            Some(1),
            Action::Write {
                value: Some("a".into()),
            },
        );
        h.op("y", 2, Some(3), Action::Read { saw: None });
        h.op(
            "x",
            4,
            Some(5),
            Action::Read {
                saw: Some("a".into()),
            },
        );
        assert_eq!(h.check(), Verdict::Linearizable);
        let stale = h.op(
            "y",
            6,
            Some(7),
            Action::Read {
                saw: Some("a".into()),
            },
        );
        let v = violation(h.check());
        assert_eq!(v.key, "y");
        assert_eq!(v.blocking_op, stale);
    }

    #[test]
    fn deletes_are_writes_of_absent() {
        let mut h = H::new();
        h.w(0, 1, "a");
        h.op("k", 2, Some(3), Action::Write { value: None });
        h.r(4, 5, None);
        h.cas(6, 7, None, "b");
        assert_eq!(h.check(), Verdict::Linearizable);
    }

    #[test]
    fn unobserved_unknown_writes_are_pruned_but_observed_ones_kept() {
        let mut h = H::new();
        h.w(0, 1, "a");
        h.w_unknown(2, "never-seen");
        h.w_unknown(3, "seen");
        h.r(10, 11, Some("seen"));
        let (v, stats) = check(&h.ops, &budget());
        assert_eq!(v, Verdict::Linearizable);
        assert_eq!(stats.unknown_dropped, 1);
        assert_eq!(stats.ops_checked, 3);
    }

    #[test]
    fn budget_exhaustion_is_unknown_not_a_verdict() {
        // Many concurrent unknown writes whose values are all observed make a
        // search far longer than a tiny step budget.
        let mut h = H::new();
        for i in 0..12 {
            h.w_unknown(i, &format!("v{i}"));
        }
        for i in 0..12 {
            h.r(100 + 2 * i, 101 + 2 * i, Some(&format!("v{}", 11 - i)));
        }
        let tiny = Budget {
            deadline: None,
            max_steps: Some(50),
            max_cache_entries: 1_000_000,
        };
        let (v, _) = check(&h.ops, &tiny);
        assert!(matches!(v, Verdict::Unknown(_)), "{v:?}");
        // With room to search, the same history is linearizable.
        assert_eq!(h.check(), Verdict::Linearizable);
        // A deadline already past also answers unknown.
        let past = Budget {
            deadline: Some(Instant::now()),
            max_steps: None,
            max_cache_entries: 1_000_000,
        };
        // The deadline is polled every few thousand steps; the search above
        // takes more than that only with a larger history, so use a
        // memo-table cap to exercise the same path deterministically.
        let small_cache = Budget {
            max_cache_entries: 3,
            ..past
        };
        assert!(matches!(check(&h.ops, &small_cache).0, Verdict::Unknown(_)));
    }

    /// Brute force: is there an order of the completed operations plus some
    /// subset of the unknown ones that respects real time and the model?
    fn brute_force(ops: &[CheckOp]) -> bool {
        fn model(state: &Option<String>, op: &CheckOp) -> Option<Option<String>> {
            match &op.action {
                Action::Read { saw } => (saw == state).then(|| state.clone()),
                Action::Write { value } => Some(value.clone()),
                Action::Cas { expected, new } if op.ret.is_some() => {
                    (expected == state).then(|| Some(new.clone()))
                }
                Action::Cas { expected, new } => Some(if expected == state {
                    Some(new.clone())
                } else {
                    state.clone()
                }),
                Action::CasRejected { expected, current } => (expected != state
                    && current.as_ref().is_none_or(|c| c == state))
                .then(|| state.clone()),
            }
        }
        fn go(ops: &[CheckOp], used: &mut Vec<bool>, state: Option<String>) -> bool {
            if ops
                .iter()
                .zip(used.iter())
                .all(|(o, &u)| u || o.ret.is_none())
            {
                return true;
            }
            for i in 0..ops.len() {
                if used[i] {
                    continue;
                }
                // i may go next only if no unused completed op finished
                // before i was invoked.
                let blocked = ops
                    .iter()
                    .enumerate()
                    .any(|(j, o)| !used[j] && j != i && o.ret.is_some_and(|r| r < ops[i].call));
                if blocked {
                    continue;
                }
                if let Some(next) = model(&state, &ops[i]) {
                    used[i] = true;
                    let ok = go(ops, used, next);
                    used[i] = false;
                    if ok {
                        return true;
                    }
                }
            }
            false
        }
        let mut used = vec![false; ops.len()];
        go(ops, &mut used, None)
    }

    #[test]
    fn agrees_with_brute_force_on_random_small_histories() {
        // SplitMix64, so the cases are the same on every run.
        let mut seed: u64 = 7;
        let mut rnd = move |n: u64| {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        };
        let vals = ["a", "b", "c"];
        let (mut yes, mut no) = (0, 0);
        for _ in 0..3000 {
            let n = 1 + rnd(6) as usize;
            let mut h = H::new();
            for _ in 0..n {
                let call = rnd(20);
                let ret = (rnd(5) != 0).then(|| call + rnd(8));
                let v = |i: u64| vals[i as usize].to_string();
                let opt = |i: u64| (i < 3).then(|| vals[i as usize].to_string());
                let action = match rnd(4) {
                    0 => Action::Read { saw: opt(rnd(4)) },
                    1 => Action::Write {
                        value: Some(v(rnd(3))),
                    },
                    2 => Action::Cas {
                        expected: opt(rnd(4)),
                        new: v(rnd(3)),
                    },
                    _ => Action::CasRejected {
                        expected: opt(rnd(4)),
                        current: Some(opt(rnd(4))),
                    },
                };
                // Reads and rejections with unknown outcome carry no
                // information; the harness drops them before checking.
                let ret = match action {
                    Action::Read { .. } | Action::CasRejected { .. } => {
                        Some(ret.unwrap_or(call + 1))
                    }
                    _ => ret,
                };
                h.op("k", call, ret, action);
            }
            let expected = brute_force(&h.ops);
            let got = h.check();
            assert_eq!(
                got == Verdict::Linearizable,
                expected,
                "checker said {got:?} for {:#?}",
                h.ops
            );
            assert!(!matches!(got, Verdict::Unknown(_)));
            if expected {
                yes += 1;
            } else {
                no += 1;
            }
        }
        // Both verdicts are well represented, so the comparison means something.
        assert!(yes > 300 && no > 300, "yes {yes} no {no}");
    }

    #[test]
    fn long_concurrent_history_is_linearizable() {
        // A long, valid history: rounds of 4 overlapping writers, each round
        // read back; the memo table keeps the search near-linear.
        let mut h = H::new();
        let mut t = 0;
        let mut last = None::<String>;
        for round in 0..400u64 {
            let base = t;
            for c in 0..4u64 {
                h.w(base + c, base + 10 + c, &format!("r{round}c{c}"));
            }
            // After the round, the last writer to be linearized wins; a read
            // after the round sees one of the round's values.
            let seen = format!("r{round}c3");
            h.r(base + 20, base + 21, Some(&seen));
            last = Some(seen);
            t += 30;
        }
        h.r(t, t + 1, last.as_deref());
        assert_eq!(h.check(), Verdict::Linearizable);
    }
}
