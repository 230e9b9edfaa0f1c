//! Bounds on `d = p_candidate − p_control` that hold at every look at once: a confidence
//! sequence, so the judge may look every interval for as long as a stage lasts.
//!
//! **Method: the two-sided normal-mixture boundary in information time.** With `I` the
//! information (the inverse of the estimated variance of `d̂`) and `S_I = (d̂ − d) · I`, the
//! sequence of `S_I` over the looks behaves, as the counts grow, like a Brownian motion in `I`
//! (the canonical joint distribution of sequential Wald statistics; Jennison and Turnbull,
//! "Group sequential methods", ch. 3). Mixing the martingales `exp(λ S − λ² I / 2)` over
//! `λ ~ N(0, 1/ρ)` gives `M_I = √(ρ / (I + ρ)) · exp(S² / (2 (I + ρ)))`, a nonnegative
//! martingale that starts at 1, so by Ville's inequality `P(∃ I: M_I ≥ 1/a) ≤ a`, and
//! `M_I ≥ 1/a` exactly when
//!
//! ```text
//! |d̂ − d| ≥ √((I + ρ) · ln((I + ρ) / (ρ a²))) / I
//! ```
//!
//! This is the normal-mixture boundary of Howard, Ramdas, McAuliffe and Sekhon (2021), and,
//! with the variance estimated from the data, the asymptotic confidence sequence of
//! Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas (2024): valid as the counts grow rather
//! than at every size, which is why the judge's simulations (`judge::simulation`) measure the
//! error rate at the sizes a stage sees.
//!
//! The variance uses `p̃ = (x + 1) / (n + 2)` per arm, so an arm without events yet still has
//! a width; `d̂` uses the plain rates.

use serde::{Deserialize, Serialize};

/// `x` events (failures, cancellations) among `n` jobs of one arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proportion {
    pub events: u64,
    pub jobs: u64,
}

impl Proportion {
    fn rate(self) -> f64 {
        if self.jobs == 0 {
            0.0
        } else {
            self.events as f64 / self.jobs as f64
        }
    }

    /// The variance of the arm's rate, from the adjusted rate `(x + 1) / (n + 2)`.
    fn variance(self) -> f64 {
        let adjusted = (self.events as f64 + 1.0) / (self.jobs as f64 + 2.0);
        adjusted * (1.0 - adjusted) / self.jobs as f64
    }
}

/// A confidence sequence at `level` (it misses `d` at some look with probability at most
/// `level`), with mixture parameter `rho` in units of information.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConfidenceSequence {
    pub level: f64,
    pub rho: f64,
}

impl ConfidenceSequence {
    /// The sequence at `level` that is narrowest when each arm holds `tuning_jobs` jobs at
    /// `planning_rate`: `ρ = I* / (L + ln(1 + L))` with `L = −2 ln level` and
    /// `I* = tuning_jobs / (2 p₀ (1 − p₀))` (Waudby-Smith et al.'s choice of `ρ` for a target
    /// time, here in information).
    pub fn tuned(level: f64, tuning_jobs: u64, planning_rate: f64) -> Self {
        let l = -2.0 * level.ln();
        let target = tuning_jobs.max(1) as f64 / (2.0 * planning_rate * (1.0 - planning_rate));
        ConfidenceSequence {
            level,
            rho: target / (l + (1.0 + l).ln()),
        }
    }

    /// The half-width at information `information`: `√((I + ρ) ln((I + ρ) / (ρ a²))) / I`.
    pub fn half_width(&self, information: f64) -> f64 {
        if information <= 0.0 {
            return f64::INFINITY;
        }
        let spread = information + self.rho;
        (spread * (spread / (self.rho * self.level * self.level)).ln()).sqrt() / information
    }

    /// The bounds on `candidate`'s rate minus `control`'s. Without a job in either arm they
    /// are `[−1, 1]`.
    pub fn bounds(&self, candidate: Proportion, control: Proportion) -> DifferenceBounds {
        let (candidate_rate, control_rate) = (candidate.rate(), control.rate());
        let difference = candidate_rate - control_rate;
        let information = if candidate.jobs == 0 || control.jobs == 0 {
            0.0
        } else {
            1.0 / (candidate.variance() + control.variance())
        };
        let half = self.half_width(information);
        DifferenceBounds {
            candidate_rate,
            control_rate,
            difference,
            lower: (difference - half).max(-1.0),
            upper: (difference + half).min(1.0),
            information,
        }
    }
}

/// One look's bounds on a difference of rates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DifferenceBounds {
    pub candidate_rate: f64,
    pub control_rate: f64,
    /// `d̂`, the candidate's rate minus the control's.
    pub difference: f64,
    pub lower: f64,
    pub upper: f64,
    /// `I = 1 / V̂`; 0 when an arm has no job.
    pub information: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_is_the_mixture_formula() {
        let sequence = ConfidenceSequence {
            level: 0.025,
            rho: 100.0,
        };
        // I = 400: √(500 · ln(500 / (100 · 0.025²))) / 400.
        let expected = (500.0 * (500.0_f64 / (100.0 * 0.025 * 0.025)).ln()).sqrt() / 400.0;
        assert!((sequence.half_width(400.0) - expected).abs() < 1e-15);
        assert!(sequence.half_width(0.0).is_infinite());
    }

    #[test]
    fn boundary_is_narrowest_relative_to_a_fixed_sample_interval_near_its_tuning() {
        // The ratio of the half-width to the fixed-sample z·σ is smallest near I*.
        let sequence = ConfidenceSequence::tuned(0.025, 400, 0.05);
        let target = 400.0 / (2.0 * 0.05 * 0.95);
        let ratio = |i: f64| sequence.half_width(i) * i.sqrt();
        assert!(ratio(target) < ratio(target / 4.0));
        assert!(ratio(target) < ratio(target * 4.0));
    }

    #[test]
    fn bounds_are_whole_range_without_jobs_and_narrow_with_them() {
        let sequence = ConfidenceSequence::tuned(0.025, 400, 0.05);
        let none = Proportion { events: 0, jobs: 0 };
        let some = Proportion {
            events: 5,
            jobs: 100,
        };
        let empty = sequence.bounds(none, some);
        assert_eq!(
            (empty.lower, empty.upper, empty.information),
            (-1.0, 1.0, 0.0)
        );
        let many = Proportion {
            events: 500,
            jobs: 10_000,
        };
        let wide = sequence.bounds(some, some);
        let narrow = sequence.bounds(many, many);
        assert_eq!(narrow.difference, 0.0);
        assert!(narrow.upper - narrow.lower < wide.upper - wide.lower);
        assert!(narrow.lower < 0.0 && narrow.upper > 0.0);
    }
}
