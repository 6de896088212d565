//! Counters the store updates as it writes, shared with whoever exports them
//! (the binary's `/metrics`). Lock-free: the write path only does relaxed
//! atomic adds, so reading metrics never delays a write.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the fsync latency histogram buckets, in the
/// Prometheus convention (`le`); a final `+Inf` bucket is implied.
pub const FSYNC_BUCKETS_SECONDS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Write-path metrics of one [`super::FileStore`].
///
/// Every fsync the store issues (WAL data, directories, snapshot files) is
/// counted and timed; `entries_written` and `bytes_written` count what was
/// appended to the WAL (bytes include record headers) and written to
/// snapshot files.
#[derive(Debug, Default)]
pub struct WalMetrics {
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    // Per-bucket (not cumulative) counts; the last slot is +Inf.
    fsync_buckets: [AtomicU64; FSYNC_BUCKETS_SECONDS.len() + 1],
    bytes_written: AtomicU64,
    entries_written: AtomicU64,
    batches: AtomicU64,
}

/// A consistent-enough copy of the fsync latency histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct FsyncHistogram {
    /// `(le, cumulative count)` for each bound of [`FSYNC_BUCKETS_SECONDS`],
    /// then `(f64::INFINITY, count)`.
    pub buckets: Vec<(f64, u64)>,
    /// Number of fsyncs observed.
    pub count: u64,
    /// Total time spent in fsync.
    pub sum: Duration,
}

impl WalMetrics {
    /// Fsyncs issued so far (files and directories).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Bytes written to WAL segments and snapshot files.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// Log entries appended to the WAL.
    pub fn entries_written(&self) -> u64 {
        self.entries_written.load(Ordering::Relaxed)
    }

    /// Batches persisted (calls to `persist` that wrote something).
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// The fsync latency histogram, with cumulative bucket counts.
    pub fn fsync_histogram(&self) -> FsyncHistogram {
        let mut buckets = Vec::with_capacity(FSYNC_BUCKETS_SECONDS.len() + 1);
        let mut acc = 0;
        for (i, slot) in self.fsync_buckets.iter().enumerate() {
            acc += slot.load(Ordering::Relaxed);
            let le = FSYNC_BUCKETS_SECONDS
                .get(i)
                .copied()
                .unwrap_or(f64::INFINITY);
            buckets.push((le, acc));
        }
        FsyncHistogram {
            buckets,
            count: acc,
            sum: Duration::from_nanos(self.fsync_nanos.load(Ordering::Relaxed)),
        }
    }

    /// Appends these metrics in the Prometheus text exposition format, with
    /// names starting `raft_wal_`.
    pub fn render_prometheus(&self, out: &mut String) {
        let h = self.fsync_histogram();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP raft_wal_fsync_duration_seconds Time spent in fsync by the storage layer.\n\
             # TYPE raft_wal_fsync_duration_seconds histogram"
        );
        for (le, n) in &h.buckets {
            if le.is_infinite() {
                let _ = writeln!(
                    out,
                    "raft_wal_fsync_duration_seconds_bucket{{le=\"+Inf\"}} {n}"
                );
            } else {
                let _ = writeln!(
                    out,
                    "raft_wal_fsync_duration_seconds_bucket{{le=\"{le}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "raft_wal_fsync_duration_seconds_sum {}\nraft_wal_fsync_duration_seconds_count {}",
            h.sum.as_secs_f64(),
            h.count
        );
        let counters = [
            (
                "raft_wal_fsyncs_total",
                "Fsyncs issued by the storage layer.",
                self.fsync_count(),
            ),
            (
                "raft_wal_bytes_written_total",
                "Bytes written to WAL segments and snapshots.",
                self.bytes_written(),
            ),
            (
                "raft_wal_entries_written_total",
                "Log entries appended to the WAL.",
                self.entries_written(),
            ),
            (
                "raft_wal_batches_total",
                "Write batches persisted (one fsync each).",
                self.batches(),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
    }

    pub(crate) fn record_fsync(&self, d: Duration) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
        let secs = d.as_secs_f64();
        let slot = FSYNC_BUCKETS_SECONDS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(FSYNC_BUCKETS_SECONDS.len());
        self.fsync_buckets[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_write(&self, bytes: u64, entries: u64) {
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        self.entries_written.fetch_add(entries, Ordering::Relaxed);
    }

    pub(crate) fn record_batch(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_renders() {
        let m = WalMetrics::default();
        m.record_fsync(Duration::from_micros(50));
        m.record_fsync(Duration::from_micros(700));
        m.record_fsync(Duration::from_secs(10));
        let h = m.fsync_histogram();
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets[0], (0.0001, 1));
        assert_eq!(h.buckets[3], (0.001, 2));
        assert_eq!(h.buckets.last().unwrap().1, 3);
        assert!(h.buckets.last().unwrap().0.is_infinite());
        let mut s = String::new();
        m.render_prometheus(&mut s);
        assert!(s.contains("raft_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 2"));
        assert!(s.contains("raft_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(s.contains("raft_wal_fsyncs_total 3"));
    }
}
