//! The random choices of a chaos run (which key, which node, which fault,
//! when), drawn from [`raft_core::rng::Rng`] so that a seed fixes every one
//! of them. Timing still varies between runs; choices do not.
//!
//! [`Pick`] adds the two shapes of choice the workload and the nemesis make.
//! Each must draw exactly as many values as it always has (none for an empty
//! range), or a seed would stop reproducing the runs it used to.

pub use raft_core::rng::Rng;

/// Choices over integer ranges.
pub trait Pick {
    /// A value in `[0, n)`; 0 (drawing nothing) when `n` is 0.
    fn below(&mut self, n: u64) -> u64;

    /// A value in `[lo, hi]`; `lo` (drawing nothing) when `hi <= lo`.
    fn between(&mut self, lo: u64, hi: u64) -> u64;
}

impl Pick for Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.range(0, n)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_in_range() {
        let mut a = Rng::new(5);
        let mut b = Rng::new(5);
        for _ in 0..1000 {
            let x = a.between(3, 7);
            assert_eq!(x, b.between(3, 7));
            assert!((3..=7).contains(&x));
        }
        assert_eq!(a.below(0), 0);
        assert!(!a.chance(0.0));
        assert!(a.chance(1.0));
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn a_seed_still_makes_the_choices_it_always_made() {
        // Drawn with the generator this module used before it moved to
        // raft-core; empty ranges draw nothing, so later picks line up.
        let mut r = Rng::new(5);
        let picks = [
            r.below(10),
            r.between(3, 7),
            r.between(9, 9),
            r.below(0),
            r.below(1000),
            r.between(100, 200),
            r.below(1 << 40),
        ];
        assert_eq!(picks, [8, 7, 9, 0, 63, 155, 617_032_539_589]);
    }
}
