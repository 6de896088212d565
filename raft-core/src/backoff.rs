//! Capped exponential backoff with jitter, for transports redialing a peer.
//!
//! Jitter keeps the nodes of a cluster that lost a peer at the same moment
//! from redialing it in lockstep, so each process should seed its
//! [`Backoff`] differently. This module is arithmetic over durations only:
//! it never reads a clock or the OS's randomness, and it never sleeps. The
//! caller supplies the seed and waits out the delays.

use crate::rng::Rng;
use std::time::Duration;

/// The redial delays of one peer: the delay doubles on each failure up to a
/// cap, each pick is jittered into the upper half of the current delay, and
/// a success starts over.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    rng: Rng,
    attempt: u32,
}

impl Backoff {
    /// Delays starting at `initial` (at least 1 ms) and doubling up to `max`
    /// (at least `initial`), jittered by a generator seeded with `seed`.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            rng: Rng::new(seed),
            attempt: 0,
        }
    }

    /// Consecutive failures since the last success (or since creation).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Counts a failure and returns the delay before the next attempt: a
    /// uniform pick in [d/2, d] where d doubles on each failure up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let d = self.next;
        self.next = (d * 2).min(self.max);
        let half = d / 2;
        let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(self.rng.range(0, span))
    }

    /// Counts a success: the next failure waits the initial delay again.
    pub fn reset(&mut self) {
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
        assert_eq!(b.attempt(), 10);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn the_seed_fixes_the_jitter_and_different_seeds_spread_it() {
        let delays = |seed| {
            let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(1), delays(1));
        assert_ne!(delays(1), delays(2));
    }

    #[test]
    fn degenerate_bounds_are_raised() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, 3);
        for _ in 0..5 {
            let d = b.next_delay();
            assert!(d >= Duration::from_micros(500) && d <= Duration::from_millis(1));
        }
    }
}
