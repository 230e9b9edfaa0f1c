//! How many jobs per arm a stage needs, with the judge's test, to halt a regression or to
//! pass an equal candidate: what a plan's `min_jobs` should be.
//!
//! For `n` jobs in each arm, the stage's sequence tuned for `n` (its `min_jobs`), the rates
//! `p₀` (control) and `p₁` (candidate), and `σ² = (p₀(1 − p₀) + p₁(1 − p₁)) / n`, the
//! estimate `d̂` is about `N(p₁ − p₀, σ²)` and the half-width is `h = half_width(1 / σ²)`:
//!
//! - **halt**: `P(d̂ − h > 0) = Φ((p₁ − p₀ − h) / σ)`;
//! - **pass** (equal rates `p`): `P(d̂ + h < allowed) = Φ((allowed − h) / σ)`.
//!
//! The answer is the smallest `n` where that reaches `power`. It is the chance at the look
//! when the arms hold `n`; earlier looks only add to a halt's chance, so the simulations
//! (`judge::simulation`) see at least as many halts.
//!
//! With the defaults (α 0.05, one judged stage, so 0.025 per rate), halting 5% → 10% with
//! power 0.8 takes **940 jobs per arm** (1044 when two stages share α). A fixed-sample test,
//! valid at one look only, would take 432 — the "few hundred" — and at 50 jobs even it
//! catches the regression one time in six (this test: one in a hundred). At a stage's
//! `min_jobs` of 400 the look halts it 28% of the time, so the default (`DEFAULT_MIN_JOBS`) is
//! 1000 (docs/rollout.md, "The judge's test").

use super::verdict::JudgeConfig;

/// The most jobs per arm the helpers consider.
const MAX_JOBS: u64 = 100_000_000;

/// Jobs per arm at which a stage halts a candidate whose rate is `regressed` against the
/// control's `base` with probability at least `power`; `None` if it never does (no
/// regression, or more than [`MAX_JOBS`]).
pub fn jobs_to_halt(base: f64, regressed: f64, config: &JudgeConfig, power: f64) -> Option<u64> {
    let increase = regressed - base;
    let variance = base * (1.0 - base) + regressed * (1.0 - regressed);
    smallest(|n| {
        let sigma = (variance / n as f64).sqrt();
        let half = config.sequence(n).half_width(1.0 / (sigma * sigma));
        normal_cdf((increase - half) / sigma) >= power
    })
}

/// Jobs per arm at which a stage passes a candidate whose rate equals the control's `rate`,
/// with probability at least `power`: the upper bound below `config.allowed_increase`.
pub fn jobs_to_pass(rate: f64, config: &JudgeConfig, power: f64) -> Option<u64> {
    let variance = 2.0 * rate * (1.0 - rate);
    smallest(|n| {
        let sigma = (variance / n as f64).sqrt();
        let half = config.sequence(n).half_width(1.0 / (sigma * sigma));
        normal_cdf((config.allowed_increase - half) / sigma) >= power
    })
}

/// Halting and passing grow more likely with `n`: bisection.
fn smallest(enough: impl Fn(u64) -> bool) -> Option<u64> {
    if !enough(MAX_JOBS) {
        return None;
    }
    let (mut low, mut high) = (0, MAX_JOBS);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if enough(middle) {
            high = middle;
        } else {
            low = middle;
        }
    }
    Some(high)
}

/// `Φ(z)`, from the complementary error function of Numerical Recipes (`erfcc`, relative
/// error below 1.2e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -a * a - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_matches_tabulated_values() {
        for (z, p) in [
            (0.0, 0.5),
            (1.959_964, 0.975),
            (-1.644_854, 0.05),
            (0.841_621, 0.8),
        ] {
            assert!((normal_cdf(z) - p).abs() < 1e-6, "Φ({z})");
        }
    }

    #[test]
    fn halting_five_to_ten_percent_takes_several_hundred_jobs_per_arm() {
        let config = JudgeConfig::default();
        let jobs = jobs_to_halt(0.05, 0.10, &config, 0.8).unwrap();
        assert_eq!(jobs, 940);
        // More than the fixed-sample test's 430 (z 1.96 + 0.84): the price of looking at
        // every interval.
        let fixed = ((1.959_964 + 0.841_621) / 0.05_f64).powi(2) * (0.05 * 0.95 + 0.1 * 0.9);
        assert_eq!(fixed.ceil() as u64, 432);
        // Two judged stages split alpha: more jobs.
        let two = JudgeConfig {
            judged_stages: 2,
            ..config
        };
        assert!(jobs_to_halt(0.05, 0.10, &two, 0.8).unwrap() > jobs);
        assert_eq!(jobs_to_halt(0.05, 0.05, &config, 0.8), None);
    }

    #[test]
    fn passing_needs_more_jobs_the_smaller_the_allowed_increase() {
        let config = JudgeConfig::default();
        let tight = jobs_to_pass(0.05, &config, 0.8).unwrap();
        let loose = jobs_to_pass(
            0.05,
            &JudgeConfig {
                allowed_increase: 0.05,
                ..config
            },
            0.8,
        )
        .unwrap();
        assert!(tight > 4 * loose, "{tight} {loose}");
    }
}
