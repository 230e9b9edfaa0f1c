//! One look's verdict on a stage: `Worse`, `Pass` or `Hold`, from the two arms' counts, the
//! stage's minimums and whether its soak has passed.
//!
//! - **Worse** when the lower bound of `d` (candidate minus control) is above 0 for the
//!   failure rate or for the cancellation rate, whatever else holds: halting is always safe,
//!   and the bounds hold at every look.
//! - **Pass** only when, for both rates, the upper bound of `d` is below the allowed increase,
//!   and each arm has at least `min_jobs` completed jobs and `min_hosts` distinct hosts, and
//!   the soak has passed.
//! - **Hold** otherwise, with every reason that applies. Too few jobs or hosts sets `alert`:
//!   a stage that never gets its data must be looked at, never passed.
//!
//! The error budget `α` is the whole rollout's: each of the two rates of each of the plan's
//! `k` judged stages gets a confidence sequence at `a = α / (2k)`, so with probability at
//! least `1 − α` every bound of every look of the rollout holds, and then no verdict halts an
//! equal candidate or passes one that is worse by the allowed increase or more.
//!
//! A [`VerdictRecord`] holds the inputs, the method's parameters and the bounds, so anyone can
//! recompute it (`distd rollout verdict --record FILE`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::confidence::{ConfidenceSequence, DifferenceBounds, Proportion};
use super::tally::ArmCounts;
use distd_api::outcome::Arm;

/// What the record's `method` says.
pub const METHOD: &str = "normal-mixture confidence sequence in information time \
                          (Howard et al. 2021; Waudby-Smith et al. 2024), alpha / (2 * judged \
                          stages) per rate";

pub const DEFAULT_ALPHA: f64 = 0.05;
/// Two points of failure rate (absolute).
pub const DEFAULT_ALLOWED_INCREASE: f64 = 0.02;
/// The failure rate the sequences are tuned for.
pub const DEFAULT_PLANNING_RATE: f64 = 0.05;

/// The judge's settings, the same for every look of a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// The rollout's error budget: the probability that any verdict of any look rests on a
    /// bound that missed.
    pub alpha: f64,
    /// The plan's stages below 100%, which share `alpha`.
    pub judged_stages: u32,
    /// The largest increase of a rate (absolute: 0.02 is two points) a pass accepts.
    pub allowed_increase: f64,
    /// The rate the sequences are narrowest for (with the stage's `min_jobs`).
    pub planning_rate: f64,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            alpha: DEFAULT_ALPHA,
            judged_stages: 1,
            allowed_increase: DEFAULT_ALLOWED_INCREASE,
            planning_rate: DEFAULT_PLANNING_RATE,
        }
    }
}

impl JudgeConfig {
    pub fn check(&self) -> Result<(), String> {
        let open_unit = |name: &str, value: f64| {
            if value > 0.0 && value < 1.0 {
                Ok(())
            } else {
                Err(format!("{name} must be between 0 and 1 (not {value})"))
            }
        };
        open_unit("alpha", self.alpha)?;
        open_unit("the allowed increase", self.allowed_increase)?;
        open_unit("the planning rate", self.planning_rate)?;
        if self.judged_stages == 0 {
            return Err("a rollout has at least one judged stage".into());
        }
        Ok(())
    }

    /// The level of each rate's sequence in one stage: `α / (2k)`.
    pub fn level(&self) -> f64 {
        self.alpha / (2.0 * f64::from(self.judged_stages))
    }

    /// The sequence of a stage whose minimum is `min_jobs` jobs per arm.
    pub fn sequence(&self, min_jobs: u64) -> ConfidenceSequence {
        ConfidenceSequence::tuned(self.level(), min_jobs, self.planning_rate)
    }
}

/// Everything a verdict is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub candidate: ArmCounts,
    pub control: ArmCounts,
    /// The stage's minimum of completed jobs per arm (also where the sequences are tuned).
    pub min_jobs: u64,
    /// The stage's minimum of distinct hosts per arm.
    pub min_hosts: u64,
    /// The stage's soak time has passed.
    pub soaked: bool,
    /// Which look at the stage this is (1 for the first); the bounds do not depend on it.
    pub look: u64,
    pub config: JudgeConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Hold,
    Worse,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Hold => "hold",
            Verdict::Worse => "worse",
        })
    }
}

/// Why a verdict is what it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    /// The failure rate's lower bound of `d` is above 0.
    FailuresWorse,
    /// The cancellation rate's lower bound of `d` is above 0.
    CancellationsWorse,
    /// The stage's soak time has not passed.
    Soaking,
    /// An arm has fewer completed jobs than the stage's minimum.
    TooFewJobs { arm: Arm, jobs: u64, needed: u64 },
    /// An arm has fewer distinct hosts than the stage's minimum.
    TooFewHosts { arm: Arm, hosts: u64, needed: u64 },
    /// The failure rate's upper bound of `d` is not below the allowed increase.
    FailuresUndecided,
    /// The cancellation rate's upper bound of `d` is not below the allowed increase.
    CancellationsUndecided,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::FailuresWorse => {
                f.write_str("the candidate fails more often (lower bound > 0)")
            }
            Reason::CancellationsWorse => {
                f.write_str("the candidate's jobs are cancelled more often (lower bound > 0)")
            }
            Reason::Soaking => f.write_str("the stage's soak time has not passed"),
            Reason::TooFewJobs { arm, jobs, needed } => write!(
                f,
                "the {arm} arm has {jobs} completed jobs, the stage needs {needed}"
            ),
            Reason::TooFewHosts { arm, hosts, needed } => {
                write!(
                    f,
                    "the {arm} arm has {hosts} hosts, the stage needs {needed}"
                )
            }
            Reason::FailuresUndecided => {
                f.write_str("the failure rate's upper bound is not below the allowed increase")
            }
            Reason::CancellationsUndecided => {
                f.write_str("the cancellation rate's upper bound is not below the allowed increase")
            }
        }
    }
}

/// A verdict with what it was made from: enough to recompute it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    /// Held for want of data (jobs or hosts).
    pub alert: bool,
    pub method: String,
    /// Each sequence's level, `α / (2k)`.
    pub level: f64,
    /// The mixture parameter of both sequences.
    pub rho: f64,
    /// Bounds on the difference of failure rates (failed / completed jobs).
    pub failures: DifferenceBounds,
    /// Bounds on the difference of cancellation rates (cancelled / jobs).
    pub cancellations: DifferenceBounds,
    pub inputs: Inputs,
}

/// Judges one look.
pub fn judge(inputs: Inputs) -> Result<VerdictRecord, String> {
    inputs.config.check()?;
    inputs.candidate.check(Arm::Candidate)?;
    inputs.control.check(Arm::Control)?;
    let sequence = inputs.config.sequence(inputs.min_jobs);
    let (candidate, control) = (&inputs.candidate, &inputs.control);
    let failures = sequence.bounds(
        Proportion {
            events: candidate.failed,
            jobs: candidate.completed(),
        },
        Proportion {
            events: control.failed,
            jobs: control.completed(),
        },
    );
    let cancellations = sequence.bounds(
        Proportion {
            events: candidate.cancelled,
            jobs: candidate.jobs,
        },
        Proportion {
            events: control.cancelled,
            jobs: control.jobs,
        },
    );

    let mut worse = Vec::new();
    if failures.lower > 0.0 {
        worse.push(Reason::FailuresWorse);
    }
    if cancellations.lower > 0.0 {
        worse.push(Reason::CancellationsWorse);
    }
    let (verdict, reasons, alert) = if !worse.is_empty() {
        (Verdict::Worse, worse, false)
    } else {
        let mut reasons = Vec::new();
        if !inputs.soaked {
            reasons.push(Reason::Soaking);
        }
        for (arm, counts) in [(Arm::Candidate, candidate), (Arm::Control, control)] {
            if counts.completed() < inputs.min_jobs {
                reasons.push(Reason::TooFewJobs {
                    arm,
                    jobs: counts.completed(),
                    needed: inputs.min_jobs,
                });
            }
        }
        for (arm, counts) in [(Arm::Candidate, candidate), (Arm::Control, control)] {
            if counts.hosts < inputs.min_hosts {
                reasons.push(Reason::TooFewHosts {
                    arm,
                    hosts: counts.hosts,
                    needed: inputs.min_hosts,
                });
            }
        }
        let alert = reasons
            .iter()
            .any(|r| matches!(r, Reason::TooFewJobs { .. } | Reason::TooFewHosts { .. }));
        if failures.upper >= inputs.config.allowed_increase {
            reasons.push(Reason::FailuresUndecided);
        }
        if cancellations.upper >= inputs.config.allowed_increase {
            reasons.push(Reason::CancellationsUndecided);
        }
        let verdict = if reasons.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Hold
        };
        (verdict, reasons, alert)
    };
    Ok(VerdictRecord {
        verdict,
        reasons,
        alert,
        method: METHOD.into(),
        level: sequence.level,
        rho: sequence.rho,
        failures,
        cancellations,
        inputs,
    })
}

impl VerdictRecord {
    /// Recomputes this record from its inputs, and lists where the record differs from the
    /// recomputation (bounds within 1e-9, for another platform's logarithm).
    pub fn recompute(&self) -> Result<(VerdictRecord, Vec<String>), String> {
        let again = judge(self.inputs)?;
        let mut differences = Vec::new();
        if self.verdict != again.verdict {
            differences.push(format!(
                "verdict: {} recorded, {} recomputed",
                self.verdict, again.verdict
            ));
        }
        if self.reasons != again.reasons {
            differences.push("reasons differ".into());
        }
        if self.alert != again.alert {
            differences.push(format!(
                "alert: {} recorded, {} recomputed",
                self.alert, again.alert
            ));
        }
        let mut close = |name: &str, recorded: f64, recomputed: f64| {
            if (recorded - recomputed).abs() > 1e-9 {
                differences.push(format!(
                    "{name}: {recorded} recorded, {recomputed} recomputed"
                ));
            }
        };
        close("level", self.level, again.level);
        close("rho", self.rho, again.rho);
        for (name, recorded, recomputed) in [
            ("failures", &self.failures, &again.failures),
            ("cancellations", &self.cancellations, &again.cancellations),
        ] {
            close(&format!("{name}.lower"), recorded.lower, recomputed.lower);
            close(&format!("{name}.upper"), recorded.upper, recomputed.upper);
            close(
                &format!("{name}.difference"),
                recorded.difference,
                recomputed.difference,
            );
        }
        Ok((again, differences))
    }
}

fn points(rate: f64) -> String {
    format!("{:+.2}", rate * 100.0)
}

fn rate_line(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    bounds: &DifferenceBounds,
    counts: [(u64, u64); 2],
) -> fmt::Result {
    let [(cx, cn), (tx, tn)] = counts;
    writeln!(
        f,
        "{name}: candidate {:.2}% ({cx}/{cn}), control {:.2}% ({tx}/{tn}), \
         d {} points, bounds [{}, {}]",
        bounds.candidate_rate * 100.0,
        bounds.control_rate * 100.0,
        points(bounds.difference),
        points(bounds.lower),
        points(bounds.upper),
    )
}

impl fmt::Display for VerdictRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (candidate, control) = (&self.inputs.candidate, &self.inputs.control);
        let config = &self.inputs.config;
        write!(f, "verdict: {}", self.verdict)?;
        if self.alert {
            f.write_str(" (alert: not enough data)")?;
        }
        writeln!(f)?;
        for reason in &self.reasons {
            writeln!(f, "  - {reason}")?;
        }
        rate_line(
            f,
            "failures",
            &self.failures,
            [
                (candidate.failed, candidate.completed()),
                (control.failed, control.completed()),
            ],
        )?;
        rate_line(
            f,
            "cancellations",
            &self.cancellations,
            [
                (candidate.cancelled, candidate.jobs),
                (control.cancelled, control.jobs),
            ],
        )?;
        writeln!(
            f,
            "hosts: candidate {}, control {}; stage minimums {} jobs, {} hosts per arm; \
             soaked: {}; look {}",
            candidate.hosts,
            control.hosts,
            self.inputs.min_jobs,
            self.inputs.min_hosts,
            if self.inputs.soaked { "yes" } else { "no" },
            self.inputs.look,
        )?;
        writeln!(
            f,
            "test: pass below {} points; alpha {} over {} judged stage(s), each rate's sequence \
             at {:.4} (rho {:.1})",
            points(config.allowed_increase),
            config.alpha,
            config.judged_stages,
            self.level,
            self.rho,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(failed: u64, jobs: u64, cancelled: u64, hosts: u64) -> ArmCounts {
        ArmCounts {
            jobs,
            failed,
            cancelled,
            hosts,
            ..ArmCounts::default()
        }
    }

    fn inputs(candidate: ArmCounts, control: ArmCounts, soaked: bool) -> Inputs {
        Inputs {
            candidate,
            control,
            min_jobs: 400,
            min_hosts: 20,
            soaked,
            look: 1,
            config: JudgeConfig::default(),
        }
    }

    #[test]
    fn verdict_is_worse_if_lower_bound_above_zero() {
        // 15% against 5% over 600 jobs each: clearly worse, before the soak even.
        let record = judge(inputs(arm(90, 600, 0, 25), arm(30, 600, 0, 25), false)).unwrap();
        assert!(record.failures.lower > 0.0, "{record}");
        assert_eq!(record.verdict, Verdict::Worse);
        assert_eq!(record.reasons, [Reason::FailuresWorse]);
    }

    #[test]
    fn verdict_is_worse_if_cancellations_lower_bound_above_zero() {
        // Same failure rate among completed jobs, but 10% of the candidate's jobs cancelled
        // (hung) against 1%.
        let record = judge(inputs(arm(27, 600, 60, 25), arm(30, 600, 6, 25), true)).unwrap();
        assert!(record.failures.lower <= 0.0);
        assert!(record.cancellations.lower > 0.0);
        assert_eq!(record.verdict, Verdict::Worse);
        assert_eq!(record.reasons, [Reason::CancellationsWorse]);
    }

    #[test]
    fn verdict_holds_with_an_alert_without_data() {
        let record = judge(inputs(ArmCounts::default(), ArmCounts::default(), true)).unwrap();
        assert_eq!(record.verdict, Verdict::Hold);
        assert!(record.alert);
        assert_eq!((record.failures.lower, record.failures.upper), (-1.0, 1.0));
        assert!(record.reasons.contains(&Reason::TooFewJobs {
            arm: Arm::Candidate,
            jobs: 0,
            needed: 400
        }));
        assert!(record.reasons.contains(&Reason::FailuresUndecided));
    }

    #[test]
    fn verdict_passes_only_once_jobs_hosts_and_soak_are_met() {
        let (candidate, control) = (arm(250, 5000, 50, 40), arm(250, 5000, 50, 40));
        let record = judge(inputs(candidate, control, true)).unwrap();
        assert!(record.failures.upper < 0.02, "{record}");
        assert_eq!(record.verdict, Verdict::Pass, "{record}");
        assert!(!record.alert);

        let unsoaked = judge(inputs(candidate, control, false)).unwrap();
        assert_eq!(
            (unsoaked.verdict, unsoaked.reasons),
            (Verdict::Hold, vec![Reason::Soaking])
        );
        let few_hosts = judge(inputs(candidate, arm(250, 5000, 50, 19), true)).unwrap();
        assert_eq!(few_hosts.verdict, Verdict::Hold);
        assert!(few_hosts.alert);
        let mut more_jobs = inputs(candidate, control, true);
        more_jobs.min_jobs = 5000;
        let few_jobs = judge(more_jobs).unwrap();
        assert_eq!(few_jobs.verdict, Verdict::Hold);
        assert!(few_jobs.alert);
    }

    #[test]
    fn verdict_holds_if_upper_bound_reaches_the_allowed_increase() {
        // Equal rates, minimums met, but 400 jobs cannot rule out +2 points.
        let record = judge(inputs(arm(20, 400, 0, 20), arm(20, 400, 0, 20), true)).unwrap();
        assert_eq!(record.verdict, Verdict::Hold);
        assert_eq!(record.reasons, [Reason::FailuresUndecided]);
        assert!(!record.alert);
    }

    #[test]
    fn verdict_uses_alpha_split_over_stages_and_rates() {
        let mut two = inputs(arm(20, 400, 0, 20), arm(20, 400, 0, 20), true);
        two.config.judged_stages = 2;
        let one = judge(inputs(arm(20, 400, 0, 20), arm(20, 400, 0, 20), true)).unwrap();
        let two = judge(two).unwrap();
        assert_eq!(one.level, 0.025);
        assert_eq!(two.level, 0.0125);
        assert!(two.failures.upper > one.failures.upper);
    }

    #[test]
    fn record_recomputes_from_its_json_and_names_a_tampered_bound() {
        let record = judge(inputs(arm(30, 500, 5, 21), arm(25, 520, 4, 22), true)).unwrap();
        let json = serde_json::to_string(&record).unwrap();
        let read: VerdictRecord = serde_json::from_str(&json).unwrap();
        let (again, differences) = read.recompute().unwrap();
        assert_eq!(again, record);
        assert!(differences.is_empty(), "{differences:?}");

        let mut tampered = read;
        tampered.verdict = Verdict::Pass;
        tampered.failures.upper = 0.01;
        let (_, differences) = tampered.recompute().unwrap();
        assert_eq!(differences.len(), 2, "{differences:?}");
        assert!(differences[1].starts_with("failures.upper"));
    }

    #[test]
    fn verdict_rejected_if_counts_do_not_hang_together() {
        let err = judge(inputs(arm(30, 20, 0, 2), arm(0, 20, 0, 2), true)).unwrap_err();
        assert!(err.contains("candidate"), "{err}");
        let mut bad = inputs(arm(0, 20, 0, 2), arm(0, 20, 0, 2), true);
        bad.config.alpha = 0.0;
        assert!(judge(bad).is_err());
    }
}
