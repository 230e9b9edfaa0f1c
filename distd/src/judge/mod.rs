//! The rollout judge's statistics: outcome reports become per-arm counts (`tally`), the
//! counts become bounds on the difference of failure and cancellation rates that hold at every
//! look (`confidence`), and the bounds with the stage's minimums become a verdict that carries
//! every input it was made from (`verdict`). `sample_size` says how many jobs per arm a stage
//! needs for the verdict to catch a regression. The daemon's loop that reads reports and signs
//! halts and advances is built on these; `distd rollout verdict` recomputes a verdict by hand.
//!
//! The method, in one place (docs/rollout.md, "The judge's test", says the same):
//!
//! - Per arm `a`, `x_a` events (failures, or cancellations) among `n_a` jobs (completed jobs for
//!   failures, all jobs for cancellations); `p̂_a = x_a / n_a`; for the variance only, the
//!   adjusted `p̃_a = (x_a + 1) / (n_a + 2)`, so an arm with no event yet has a width.
//! - `d̂ = p̂_candidate − p̂_control`, `V̂ = Σ_a p̃_a (1 − p̃_a) / n_a`, information `I = 1 / V̂`.
//! - Bounds `d̂ ± √((I + ρ) · ln((I + ρ) / (ρ a²))) / I`, clipped to [−1, 1]: the two-sided
//!   normal-mixture boundary (Robbins; Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform,
//!   nonparametric, nonasymptotic confidence sequences", 2021) in information time, which is
//!   the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas
//!   ("Time-uniform central limit theory and asymptotic confidence sequences", 2024, Thm 2.2)
//!   for a difference of two means.
//! - `a = α / (2k)`: the rollout's error budget `α`, split over the plan's `k` judged stages
//!   and the two rates (Bonferroni).
//! - `ρ = I* / (L + ln(1 + L))`, `L = −2 ln a`, `I* = m / (2 p₀ (1 − p₀))`: the boundary is
//!   tightest when each arm holds the stage's minimum `m` jobs at the planning rate `p₀`.
//!   `ρ` is fixed before any data, so it moves where the sequence is narrowest, never its
//!   validity.

pub mod confidence;
pub mod sample_size;
pub mod tally;
pub mod verdict;

#[cfg(test)]
mod simulation;
