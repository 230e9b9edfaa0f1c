use jiff::{SignedDuration, Timestamp};
use tcdist_core::Digest;

use super::*;
use distd_api::outcome::{Arm, JobId, JobResult, OutcomeRecord};

fn settings() -> JudgeSettings {
    JudgeSettings {
        interval: SignedDuration::from_mins(1),
        dry_run: false,
        alpha: verdict::DEFAULT_ALPHA,
        allowed_increase: verdict::DEFAULT_ALLOWED_INCREASE,
        planning_rate: verdict::DEFAULT_PLANNING_RATE,
    }
}

/// Stage 1 of 2 judged stages at 10%: 200 jobs and 4 hosts per arm, 1h soak.
fn stage() -> LiveStage {
    let mut stage = LiveStage::example(0, "10%", 2);
    stage.spec.min_jobs = 200;
    stage.spec.min_hosts = 4;
    stage.spec.soak_seconds = 3600;
    stage
}

fn entered() -> Timestamp {
    stage().entered_at
}

/// `jobs` first attempts in `arm` over 8 hosts, the first `failed` of them failed.
fn jobs(arm: Arm, jobs: usize, failed: usize) -> Vec<OutcomeRecord> {
    (0..jobs)
        .map(|i| OutcomeRecord {
            host_id: Some(format!("spiffe://tcdist.test/host/{arm}-{}", i % 8)),
            job_id: JobId::parse(&format!("{arm}-{i}")).unwrap(),
            pipeline: None,
            arm,
            release: Digest::of(arm.to_string().as_bytes()),
            channel: "stable".into(),
            sequence: 12,
            stage: 1,
            result: if i < failed {
                JobResult::Failed
            } else {
                JobResult::Passed
            },
            retry: 0,
            exit_status: Some(i32::from(i < failed)),
            served_at: entered(),
            time: entered(),
        })
        .collect()
}

fn both(candidate: (usize, usize), control: (usize, usize)) -> Vec<OutcomeRecord> {
    let mut records = jobs(Arm::Candidate, candidate.0, candidate.1);
    records.extend(jobs(Arm::Control, control.0, control.1));
    records
}

/// Two minutes into the stage: not soaked, the statement far from expiry.
fn early() -> Timestamp {
    entered() + SignedDuration::from_mins(2)
}

/// After the soak: the clock moved past an hour (the statement then long expired, so due).
fn soaked() -> Timestamp {
    entered() + SignedDuration::from_mins(61)
}

#[test]
fn a_clear_regression_halts_even_before_the_soak_and_the_minimums() {
    let records = both((120, 48), (120, 6));
    let look = decide(&stage(), &records, 3, early(), &settings(), true).unwrap();
    let record = look.record.unwrap();
    assert_eq!(record.verdict, Verdict::Worse);
    let Act::Halt { reason } = look.act else {
        panic!("{:?}", look.act)
    };
    assert!(
        reason.contains("stage 1 (10%)") && reason.contains("failure rate 40.00%"),
        "{reason}"
    );
    assert!(reason.contains("look 3"), "{reason}");
    assert_eq!(look.alert, Some("halted"));
}

#[test]
fn no_data_holds_and_alerts_only_once_the_soak_has_passed() {
    let look = decide(&stage(), &[], 1, early(), &settings(), true).unwrap();
    assert_eq!(look.record.unwrap().verdict, Verdict::Hold);
    assert_eq!((look.act, look.alert), (Act::Nothing, None));
    let late = decide(&stage(), &[], 9, soaked(), &settings(), true).unwrap();
    assert_eq!(late.record.unwrap().verdict, Verdict::Hold);
    assert_eq!(late.alert, Some("insufficient-data"));
    // Holding keeps the rollout alive: the judge re-signs it.
    assert_eq!(late.act, Act::Resign);
}

#[test]
fn equal_rates_pass_after_the_soak_and_advance_only_where_the_line_allows() {
    let records = both((5000, 250), (5000, 250));
    let soaking = decide(&stage(), &records, 1, early(), &settings(), true).unwrap();
    assert_eq!(soaking.record.unwrap().verdict, Verdict::Hold);
    assert_eq!(soaking.act, Act::Nothing);

    let pass = decide(&stage(), &records, 2, soaked(), &settings(), true).unwrap();
    assert_eq!(pass.record.unwrap().verdict, Verdict::Pass);
    assert_eq!((pass.act, pass.alert), (Act::Advance, None));

    let by_hand = decide(&stage(), &records, 2, soaked(), &settings(), false).unwrap();
    assert_eq!(by_hand.act, Act::Resign);
    assert_eq!(by_hand.alert, Some("awaiting-advance"));
}

#[test]
fn a_pass_of_the_last_judged_stage_waits_for_a_promoters_finish() {
    let mut last = stage();
    last.stage = 1;
    let records = both((5000, 250), (5000, 250));
    let look = decide(&last, &records, 5, soaked(), &settings(), true).unwrap();
    assert_eq!(look.record.unwrap().verdict, Verdict::Pass);
    assert_eq!(look.act, Act::Resign);
    assert_eq!(look.alert, Some("awaiting-advance"));
}

#[test]
fn the_statement_is_re_signed_once_half_its_lifetime_is_gone() {
    let stage = stage();
    // 15 minutes of life: not at 7 minutes, at 8.
    let at = |mins| entered() + SignedDuration::from_mins(mins);
    let act = |now| decide(&stage, &[], 1, now, &settings(), true).unwrap().act;
    assert_eq!(act(at(7)), Act::Nothing);
    assert_eq!(act(at(8)), Act::Resign);
    // A lifetime of two intervals or less is re-signed at every look.
    let mut short = settings();
    short.interval = SignedDuration::from_mins(8);
    assert_eq!(
        decide(&stage, &[], 1, at(1), &short, true).unwrap().act,
        Act::Resign
    );
}

#[test]
fn a_stage_of_the_whole_channel_is_not_judged() {
    let mut whole = stage();
    whole.spec = tcdist_oci::attachments::rollout::Stage::with_defaults("100%".parse().unwrap());
    let look = decide(
        &whole,
        &both((50, 25), (0, 0)),
        1,
        early(),
        &settings(),
        true,
    )
    .unwrap();
    assert!(look.record.is_none());
    assert_eq!((look.act, look.alert), (Act::Nothing, None));
}
