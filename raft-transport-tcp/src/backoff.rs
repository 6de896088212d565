//! Capped exponential backoff with jitter for redialing a peer.
//!
//! Jitter keeps the nodes of a cluster that lost a peer at the same moment
//! from redialing it in lockstep. The generator only needs to differ between
//! processes, not to be unpredictable, so it is seeded from the standard
//! library's per-process random hash keys rather than a new dependency.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    rng: u64,
    /// Consecutive failures since the last success.
    pub(crate) attempt: u32,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration, salt: u64) -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            rng: h.finish() | 1,
            attempt: 0,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: enough to spread redials apart.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// The delay before the next attempt: a uniform pick in [d/2, d] where
    /// d doubles on each failure up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let d = self.next;
        self.next = (d * 2).min(self.max);
        let half = d / 2;
        let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(self.random() % span)
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 7);
        let mut ceiling = Duration::from_millis(100);
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(Duration::from_secs(1));
        }
        assert_eq!(b.attempt, 10);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
