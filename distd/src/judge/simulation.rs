//! Simulated rollouts, judged look by look with [`judge`]: the error rates the method
//! promises, measured at the sizes a stage sees. Each test's seed is fixed, so its figures are
//! the same on every run; the figures in the comments are those runs'.
//!
//! A rollout adds `STEP` jobs to each arm between looks; a job is cancelled with the arm's
//! cancellation rate, and otherwise fails with its failure rate. Hosts and soak are met from
//! the first look unless a test says otherwise, so only the bounds decide.

use super::sample_size::{jobs_to_halt, jobs_to_pass};
use super::tally::ArmCounts;
use super::verdict::{Inputs, JudgeConfig, Verdict, judge};
use tcdist_oci::attachments::rollout::{DEFAULT_MIN_HOSTS, DEFAULT_MIN_JOBS};

/// Jobs added to each arm between looks.
const STEP: u64 = 50;

/// SplitMix64 (Steele, Lea and Flood 2014): small, fast, and enough for Bernoulli draws.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy)]
struct Rates {
    failure: f64,
    cancellation: f64,
}

const FIVE_PERCENT: Rates = Rates {
    failure: 0.05,
    cancellation: 0.02,
};

fn failing(failure: f64) -> Rates {
    Rates {
        failure,
        ..FIVE_PERCENT
    }
}

fn run_jobs(rng: &mut SplitMix64, counts: &mut ArmCounts, rates: Rates, jobs: u64) {
    for _ in 0..jobs {
        let u = rng.unit();
        counts.jobs += 1;
        if u < rates.cancellation {
            counts.cancelled += 1;
        } else if (u - rates.cancellation) / (1.0 - rates.cancellation) < rates.failure {
            counts.failed += 1;
        }
    }
}

/// When (in jobs per arm) a simulated rollout was first judged worse, and first passed.
#[derive(Default)]
struct Run {
    worse_at: Option<u64>,
    pass_at: Option<u64>,
}

/// How a simulated stage goes: the arms' rates, how many jobs each gets between looks, the
/// stage's minimum, from which look its soak has passed, and when the simulation stops.
#[derive(Clone, Copy)]
struct Stage {
    candidate: Rates,
    control: Rates,
    /// Jobs the control arm gets per `STEP` of the candidate's.
    control_ratio: u64,
    min_jobs: u64,
    soaked_from_look: u64,
    /// Candidate jobs at the last look.
    max_jobs: u64,
}

impl Stage {
    fn new(candidate: Rates, control: Rates, min_jobs: u64, max_jobs: u64) -> Self {
        Stage {
            candidate,
            control,
            control_ratio: 1,
            min_jobs,
            soaked_from_look: 1,
            max_jobs,
        }
    }
}

/// One rollout judged every `STEP` candidate jobs up to `max_jobs`; every look is judged (a
/// pass does not end it, so a later false halt still counts).
fn rollout(rng: &mut SplitMix64, stage: Stage) -> Run {
    let hosts = DEFAULT_MIN_HOSTS;
    let empty = ArmCounts {
        hosts,
        ..ArmCounts::default()
    };
    let (mut candidate, mut control) = (empty, empty);
    let mut run = Run::default();
    for look in 1..=stage.max_jobs / STEP {
        run_jobs(rng, &mut candidate, stage.candidate, STEP);
        run_jobs(rng, &mut control, stage.control, STEP * stage.control_ratio);
        let record = judge(Inputs {
            candidate,
            control,
            min_jobs: stage.min_jobs,
            min_hosts: hosts,
            soaked: look >= stage.soaked_from_look,
            look,
            config: JudgeConfig::default(),
        })
        .unwrap();
        let at = look * STEP;
        match record.verdict {
            Verdict::Worse => {
                run.worse_at.get_or_insert(at);
            }
            Verdict::Pass => {
                run.pass_at.get_or_insert(at);
            }
            Verdict::Hold => {}
        }
    }
    run
}

/// `count` simulated rollouts from `seed`.
fn rollouts(seed: u64, count: usize, stage: Stage) -> Vec<Run> {
    let mut rng = SplitMix64(seed);
    (0..count).map(|_| rollout(&mut rng, stage)).collect()
}

fn share(runs: &[Run], which: impl Fn(&Run) -> bool) -> f64 {
    runs.iter().filter(|r| which(r)).count() as f64 / runs.len() as f64
}

fn halted_by(runs: &[Run], jobs: u64) -> f64 {
    share(runs, |r| r.worse_at.is_some_and(|at| at <= jobs))
}

/// The standard error of a rate `p` measured over `n` rollouts.
fn standard_error(p: f64, n: usize) -> f64 {
    (p * (1.0 - p) / n as f64).sqrt()
}

/// The stage minimum the helper suggests: 5% → 10% halted with power 0.8 (940), rounded up.
fn suggested_min_jobs() -> u64 {
    jobs_to_halt(0.05, 0.10, &JudgeConfig::default(), 0.8)
        .unwrap()
        .next_multiple_of(100)
}

#[test]
fn false_halt_rate_at_equal_rates_stays_below_alpha_over_forty_looks() {
    // 5% failures and 2% cancellations in both arms, a look every 50 jobs up to 2000 per arm,
    // 2000 rollouts: halted (by either rate, at any look) in 0.25% of them, 5 of 2000.
    let stage = Stage::new(FIVE_PERCENT, FIVE_PERCENT, DEFAULT_MIN_JOBS, 2000);
    let runs = rollouts(1, 2000, stage);
    let rate = halted_by(&runs, 2000);
    // Two standard errors of a rate at alpha over 2000 rollouts (0.0097) below alpha: a
    // method whose true rate were alpha would pass this about one time in forty.
    let alpha = JudgeConfig::default().alpha;
    let margin = 2.0 * standard_error(alpha, runs.len());
    assert!(rate <= alpha - margin, "false halts {rate}");
    assert!(rate < 0.01, "false halts {rate}, measured 0.0025 before");
}

#[test]
fn false_halt_rate_stays_below_alpha_with_a_control_arm_four_times_larger() {
    // As a 20% stage sees it: 0.15% of 2000 rollouts halted, 3 of them.
    let stage = Stage {
        control_ratio: 4,
        ..Stage::new(FIVE_PERCENT, FIVE_PERCENT, DEFAULT_MIN_JOBS, 2000)
    };
    let runs = rollouts(11, 2000, stage);
    let rate = halted_by(&runs, 2000);
    let alpha = JudgeConfig::default().alpha;
    assert!(
        rate <= alpha - 2.0 * standard_error(alpha, runs.len()),
        "{rate}"
    );
}

#[test]
fn clear_regression_is_halted_by_the_time_the_arms_hold_the_minimum_jobs() {
    // 5% → 15% failures, 2000 rollouts. With the stage minimum the helper suggests (1000),
    // 100.0% are halted by then (the default); with a minimum of 400, 93.95%: just short of 95%,
    // the helper's 431 jobs for 95% power.
    let regression = Stage::new(failing(0.15), FIVE_PERCENT, 0, 0);
    let suggested = suggested_min_jobs();
    let runs = rollouts(
        2,
        2000,
        Stage {
            min_jobs: suggested,
            max_jobs: suggested,
            ..regression
        },
    );
    assert!(halted_by(&runs, suggested) >= 0.95);
    let runs = rollouts(
        2,
        2000,
        Stage {
            min_jobs: 400,
            max_jobs: 400,
            ..regression
        },
    );
    let at_400 = halted_by(&runs, 400);
    assert!((0.92..0.96).contains(&at_400), "{at_400}");
}

#[test]
fn miss_rate_of_five_to_ten_percent_is_high_at_400_jobs_and_below_a_fifth_at_940() {
    // 5% → 10% failures, 2000 rollouts, looks every 50 jobs to 2000: not yet halted by 400
    // jobs per arm in 71.95%; by 950 (the helper's 940, at the next look) in 16.25%; by 2000
    // in 0.2%. None passes at any look.
    let config = JudgeConfig::default();
    let stage = Stage::new(failing(0.10), FIVE_PERCENT, DEFAULT_MIN_JOBS, 2000);
    let runs = rollouts(3, 2000, stage);
    let missed_by = |jobs: u64| 1.0 - halted_by(&runs, jobs);
    let at_400 = missed_by(400);
    assert!((0.65..0.80).contains(&at_400), "{at_400}");
    let needed = jobs_to_halt(0.05, 0.10, &config, 0.8).unwrap();
    // Earlier looks only add halts, so the helper's figure is an upper bound on the misses.
    let at_needed = missed_by(needed.next_multiple_of(STEP));
    assert!(at_needed <= 0.2, "{at_needed}");
    assert!(missed_by(2000) < 0.01);
    assert!(runs.iter().all(|r| r.pass_at.is_none()));
}

#[test]
fn pass_rate_at_equal_rates_reaches_the_helpers_power_never_before_minimums_and_soak() {
    // 5% in both arms, allowed increase 2 points: the helper says 4034 jobs per arm for a
    // pass with probability 0.8; 1000 rollouts pass by 4050 in 80.3%, the first at 450
    // (a candidate that did better than its control by chance).
    let needed = jobs_to_pass(0.05, &JudgeConfig::default(), 0.8).unwrap();
    let last = needed.next_multiple_of(STEP);
    let runs = rollouts(
        5,
        1000,
        Stage::new(FIVE_PERCENT, FIVE_PERCENT, DEFAULT_MIN_JOBS, last),
    );
    let rate = share(&runs, |r| r.pass_at.is_some());
    assert!(
        rate >= 0.8 - 2.0 * standard_error(0.8, runs.len()),
        "{rate}"
    );
    assert!(
        runs.iter()
            .all(|r| r.pass_at.unwrap_or(u64::MAX) >= DEFAULT_MIN_JOBS)
    );

    // Soaked only from the 20th look (1000 jobs): no pass before it (17.9% pass by 1500).
    let soaking = Stage {
        soaked_from_look: 20,
        max_jobs: 1500,
        ..Stage::new(FIVE_PERCENT, FIVE_PERCENT, DEFAULT_MIN_JOBS, 0)
    };
    let runs = rollouts(6, 1000, soaking);
    assert!(runs.iter().all(|r| r.pass_at.unwrap_or(u64::MAX) >= 1000));
    assert!(runs.iter().any(|r| r.pass_at.is_some()));
}

#[test]
fn stage_holds_without_data_at_every_look_before_the_first_jobs() {
    let record = judge(Inputs {
        candidate: ArmCounts::default(),
        control: ArmCounts::default(),
        min_jobs: DEFAULT_MIN_JOBS,
        min_hosts: DEFAULT_MIN_HOSTS,
        soaked: true,
        look: 1,
        config: JudgeConfig::default(),
    })
    .unwrap();
    assert_eq!((record.verdict, record.alert), (Verdict::Hold, true));
}
