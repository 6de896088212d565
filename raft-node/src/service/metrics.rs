//! Counters and histograms the HTTP layer keeps, and the Prometheus text
//! rendering of everything `/metrics` exports.
//!
//! Recording is lock-free (relaxed atomics) so that it never slows a
//! request; rendering reads whatever the counters hold at that moment.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the request latency buckets.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut acc = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            let le = match LATENCY_BUCKETS.get(i) {
                Some(le) => le.to_string(),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {acc}");
        }
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}",
            Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64(),
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// The routes requests are counted under.
pub const ROUTES: [&str; 11] = [
    "kv_put",
    "kv_get",
    "kv_delete",
    "status",
    "metrics",
    "watch",
    "admin_membership",
    "admin_transfer",
    "admin_faults",
    "not_found",
    "other",
];

/// How a proposal ended.
pub const OUTCOMES: [&str; 9] = [
    "ok",
    "conflict",
    "duplicate",
    "not_leader",
    "busy",
    "dropped",
    "timeout",
    "unknown",
    "error",
];

/// How a read ended.
pub const READ_OUTCOMES: [&str; 5] = ["ok", "not_found", "redirect", "timeout", "error"];

/// Everything the HTTP layer counts.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    latency: [Histogram; ROUTES.len()],
    proposals: [AtomicU64; OUTCOMES.len()],
    reads_linearizable: [AtomicU64; READ_OUTCOMES.len()],
    reads_stale: [AtomicU64; READ_OUTCOMES.len()],
    responses_by_class: [AtomicU64; 5],
    /// Watch connections open now.
    pub watchers: AtomicU64,
}

fn index_of(list: &[&str], name: &str) -> usize {
    list.iter()
        .position(|r| *r == name)
        .unwrap_or(list.len() - 1)
}

impl HttpMetrics {
    /// Records a finished request.
    pub fn request(&self, route: &str, status: u16, d: Duration) {
        self.latency[index_of(&ROUTES, route)].observe(d);
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.responses_by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Records a proposal's outcome (one of [`OUTCOMES`]).
    pub fn proposal(&self, outcome: &str) {
        self.proposals[index_of(&OUTCOMES, outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// Records a read's outcome (one of [`READ_OUTCOMES`]).
    pub fn read(&self, stale: bool, outcome: &str) {
        let arr = if stale {
            &self.reads_stale
        } else {
            &self.reads_linearizable
        };
        arr[index_of(&READ_OUTCOMES, outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the HTTP metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP raft_http_request_duration_seconds HTTP request latency by route.\n\
             # TYPE raft_http_request_duration_seconds histogram"
        );
        for (i, route) in ROUTES.iter().enumerate() {
            self.latency[i].render(
                out,
                "raft_http_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP raft_http_responses_total HTTP responses by status class.\n\
             # TYPE raft_http_responses_total counter"
        );
        for (i, c) in self.responses_by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "raft_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP raft_proposals_total Writes proposed through the HTTP API, by outcome.\n\
             # TYPE raft_proposals_total counter"
        );
        for (i, o) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "raft_proposals_total{{outcome=\"{o}\"}} {}",
                self.proposals[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP raft_reads_total Reads through the HTTP API, by consistency and outcome.\n\
             # TYPE raft_reads_total counter"
        );
        for (kind, arr) in [
            ("linearizable", &self.reads_linearizable),
            ("stale", &self.reads_stale),
        ] {
            for (i, o) in READ_OUTCOMES.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "raft_reads_total{{consistency=\"{kind}\",outcome=\"{o}\"}} {}",
                    arr[i].load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP raft_watchers Open watch streams.\n# TYPE raft_watchers gauge\nraft_watchers {}",
            self.watchers.load(Ordering::Relaxed)
        );
    }
}

/// Appends one gauge or counter with its help line.
pub fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = HttpMetrics::default();
        m.request("kv_put", 200, Duration::from_micros(100));
        m.request("kv_put", 200, Duration::from_millis(2));
        m.request("nonsense", 404, Duration::from_secs(100));
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains(
            "raft_http_request_duration_seconds_bucket{route=\"kv_put\",le=\"0.00025\"} 1"
        ));
        assert!(
            s.contains("raft_http_request_duration_seconds_bucket{route=\"kv_put\",le=\"+Inf\"} 2")
        );
        assert!(s.contains("raft_http_request_duration_seconds_count{route=\"other\"} 1"));
        assert!(s.contains("raft_http_responses_total{class=\"4xx\"} 1"));
    }
}
