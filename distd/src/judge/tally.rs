//! Outcome reports → per-arm counts. The rules, in the order they apply:
//!
//! 1. **A job counts once, by its first attempt.** Only reports of first attempts (`retry` 0)
//!    count, grouped by job ID (the earliest on a tie, such as a report delivered twice); the
//!    host and arm of that report are the job's. Retries are not new evidence: a flaky job
//!    retried until it passes would otherwise count as a pass. Buildkite gives each retry a job
//!    ID of its own, so a retry is recognised by its `retry`, never by its ID.
//! 2. **No host counts for more than its share of an arm.** With `N` the stage's `min_hosts`
//!    and `J` the arm's jobs after rule 1, each host of the arm keeps at most `K = ⌈J / N⌉`
//!    jobs: its first `K` in report order (the order of the reports rule 1 counted); the rest
//!    are dropped and counted in `capped`. One busy (or broken) host cannot decide a verdict.
//!    With `N` ≤ 1 nothing is capped.
//! 3. **Outcomes.** `failed` and `lost` (served but never reported) count as failures;
//!    `cancelled` jobs are counted apart: they are left out of the failure rate and make a rate
//!    of their own, which the verdict compares too (a toolchain that hangs shows as
//!    cancellations).
//!
//! The tally borrows the records' strings: one hash map of job IDs, one of hosts, and a flag
//! per record are all it allocates.

use std::collections::HashMap;

use distd_api::outcome::{Arm, JobResult, OutcomeRecord};
use serde::{Deserialize, Serialize};

/// Reads outcome records from JSON lines (blank lines skipped), as the daemon keeps them:
/// each names its host.
pub fn parse_records(text: &str) -> Result<Vec<OutcomeRecord>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let record: OutcomeRecord = serde_json::from_str(line)
                .map_err(|e| format!("line {}: not an outcome record: {e}", i + 1))?;
            if record.host_id.is_none() {
                return Err(format!("line {}: the record names no host", i + 1));
            }
            Ok(record)
        })
        .collect()
}

/// One arm's counts: what a verdict is made from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmCounts {
    /// Jobs counted (once each, within the host cap), cancelled ones included.
    pub jobs: u64,
    /// Counted jobs that failed, lost ones included.
    pub failed: u64,
    /// Counted jobs that were cancelled.
    pub cancelled: u64,
    /// Of `failed`, the jobs served but never reported.
    #[serde(default)]
    pub lost: u64,
    /// Distinct hosts with a counted job.
    pub hosts: u64,
    /// Jobs left out because their host had reached its cap.
    #[serde(default)]
    pub capped: u64,
}

impl ArmCounts {
    /// Jobs that ran to an end: the failure rate's denominator.
    pub fn completed(&self) -> u64 {
        self.jobs.saturating_sub(self.cancelled)
    }

    /// The counts hang together: failures and cancellations are among the jobs, lost jobs
    /// among the failures, and jobs come from hosts.
    pub fn check(&self, arm: Arm) -> Result<(), String> {
        let ArmCounts {
            jobs,
            failed,
            cancelled,
            lost,
            hosts,
            ..
        } = *self;
        if failed.checked_add(cancelled).is_none_or(|n| n > jobs) {
            return Err(format!(
                "{arm} arm: {failed} failed and {cancelled} cancelled of {jobs} jobs"
            ));
        }
        if lost > failed {
            return Err(format!("{arm} arm: {lost} lost jobs but {failed} failures"));
        }
        if jobs > 0 && hosts == 0 {
            return Err(format!("{arm} arm: {jobs} jobs from no host"));
        }
        Ok(())
    }
}

/// The counts of both arms, and what the rules left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub candidate: ArmCounts,
    pub control: ArmCounts,
    /// The most jobs one host may contribute to the candidate's arm (rule 2).
    pub candidate_host_cap: u64,
    /// The most jobs one host may contribute to the control arm.
    pub control_host_cap: u64,
    /// Reports read.
    pub reports: u64,
    /// Reports not counted because another attempt of their job was (retries, duplicates).
    pub repeats: u64,
}

impl Tally {
    fn arm_mut(&mut self, arm: Arm) -> &mut ArmCounts {
        match arm {
            Arm::Candidate => &mut self.candidate,
            Arm::Control => &mut self.control,
        }
    }
}

/// Tallies `reports` (in the order they were received) for a stage whose `min_hosts` is
/// `min_hosts`, by the rules of this module.
pub fn tally(reports: &[OutcomeRecord], min_hosts: u64) -> Tally {
    // Rule 1: each job's counting report, by index.
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(reports.len());
    for (index, report) in reports.iter().enumerate() {
        if report.retry == 0 {
            first.entry(report.job_id.as_str()).or_insert(index);
        }
    }
    let mut counted = vec![false; reports.len()];
    let (mut candidate_jobs, mut control_jobs) = (0u64, 0u64);
    for &index in first.values() {
        counted[index] = true;
        match reports[index].arm {
            Arm::Candidate => candidate_jobs += 1,
            Arm::Control => control_jobs += 1,
        }
    }
    let jobs = first.len();
    drop(first);

    // Rule 2: each host's first K jobs of its arm.
    let hosts = min_hosts.max(1);
    let mut tally = Tally {
        candidate_host_cap: candidate_jobs.div_ceil(hosts),
        control_host_cap: control_jobs.div_ceil(hosts),
        reports: reports.len() as u64,
        repeats: (reports.len() - jobs) as u64,
        ..Tally::default()
    };
    let mut per_host: HashMap<(&str, Arm), u64> = HashMap::new();
    for (report, _) in reports.iter().zip(&counted).filter(|(_, c)| **c) {
        let cap = match report.arm {
            Arm::Candidate => tally.candidate_host_cap,
            Arm::Control => tally.control_host_cap,
        };
        let seen = per_host
            .entry((report.host_id.as_deref().unwrap_or_default(), report.arm))
            .or_insert(0);
        let counts = tally.arm_mut(report.arm);
        if *seen >= cap {
            counts.capped += 1;
            continue;
        }
        if *seen == 0 {
            counts.hosts += 1;
        }
        *seen += 1;
        // Rule 3.
        counts.jobs += 1;
        match report.result {
            JobResult::Passed => {}
            JobResult::Failed => counts.failed += 1,
            JobResult::Lost => {
                counts.failed += 1;
                counts.lost += 1;
            }
            JobResult::Cancelled => counts.cancelled += 1,
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use distd_api::outcome::JobId;
    use tcdist_core::Digest;

    fn report(host: &str, arm: Arm, job: &str, retry: u32, result: JobResult) -> OutcomeRecord {
        let at: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        OutcomeRecord {
            host_id: Some(host.into()),
            job_id: JobId::parse(job).unwrap(),
            pipeline: None,
            arm,
            release: Digest::of(arm.to_string().as_bytes()),
            channel: "stable".into(),
            sequence: 1,
            stage: 1,
            result,
            retry,
            exit_status: None,
            served_at: at,
            time: at,
        }
    }

    #[test]
    fn tally_caps_a_host_at_its_share_keeping_its_first_jobs_in_report_order() {
        // 12 candidate jobs, N = 3 hosts: K = 4. Host a has 8 jobs; its first 4 count
        // (failures), its last 4 (passes) are dropped; b and c have 2 each.
        let mut reports = Vec::new();
        for i in 0..4 {
            reports.push(report(
                "a",
                Arm::Candidate,
                &format!("a{i}"),
                0,
                JobResult::Failed,
            ));
        }
        for i in 0..2 {
            reports.push(report(
                "b",
                Arm::Candidate,
                &format!("b{i}"),
                0,
                JobResult::Passed,
            ));
            reports.push(report(
                "c",
                Arm::Candidate,
                &format!("c{i}"),
                0,
                JobResult::Passed,
            ));
        }
        for i in 4..8 {
            reports.push(report(
                "a",
                Arm::Candidate,
                &format!("a{i}"),
                0,
                JobResult::Passed,
            ));
        }
        let tally = tally(&reports, 3);
        assert_eq!(tally.candidate_host_cap, 4);
        assert_eq!(
            tally.candidate,
            ArmCounts {
                jobs: 8,
                failed: 4,
                cancelled: 0,
                lost: 0,
                hosts: 3,
                capped: 4,
            }
        );
    }

    #[test]
    fn tally_caps_each_arm_by_its_own_jobs() {
        // Control: 2 jobs, N = 2: K = 1, so host x keeps one.
        let reports = [
            report("x", Arm::Control, "j1", 0, JobResult::Passed),
            report("x", Arm::Control, "j2", 0, JobResult::Failed),
            report("y", Arm::Candidate, "j3", 0, JobResult::Passed),
        ];
        let tally = tally(&reports, 2);
        assert_eq!((tally.control.jobs, tally.control.capped), (1, 1));
        assert_eq!(tally.control.failed, 0);
        assert_eq!((tally.candidate.jobs, tally.candidate.capped), (1, 0));
    }

    #[test]
    fn tally_counts_a_job_once_by_its_first_attempt_even_if_reported_later() {
        let reports = [
            // The retry arrives first and passed; the first attempt failed on another host,
            // in the other arm: the job is the first attempt's.
            report("h2", Arm::Control, "job", 1, JobResult::Passed),
            report("h1", Arm::Candidate, "job", 0, JobResult::Failed),
            report("h1", Arm::Candidate, "job", 0, JobResult::Passed),
            report("h3", Arm::Control, "job", 2, JobResult::Passed),
            // Only retries seen (each retry a job ID of its own, as Buildkite has them): none
            // counts.
            report("h4", Arm::Control, "other", 3, JobResult::Cancelled),
            report("h4", Arm::Control, "retry-of-x", 1, JobResult::Failed),
        ];
        let tally = tally(&reports, 1);
        assert_eq!((tally.reports, tally.repeats), (6, 5));
        assert_eq!((tally.candidate.jobs, tally.candidate.failed), (1, 1));
        assert_eq!(
            (
                tally.control.jobs,
                tally.control.failed,
                tally.control.cancelled
            ),
            (0, 0, 0)
        );
        assert_eq!(tally.candidate.hosts + tally.control.hosts, 1);
    }

    #[test]
    fn tally_counts_cancelled_jobs_apart_from_failures() {
        let reports = [
            report("h", Arm::Candidate, "1", 0, JobResult::Cancelled),
            report("h", Arm::Candidate, "2", 0, JobResult::Cancelled),
            report("h", Arm::Candidate, "3", 0, JobResult::Failed),
            report("h", Arm::Candidate, "4", 0, JobResult::Passed),
        ];
        let counts = tally(&reports, 1).candidate;
        assert_eq!((counts.jobs, counts.cancelled, counts.failed), (4, 2, 1));
        // The failure rate is over the two jobs that ran to an end.
        assert_eq!(counts.completed(), 2);
    }

    #[test]
    fn tally_counts_lost_jobs_as_failed() {
        let reports = [
            report("h", Arm::Control, "1", 0, JobResult::Lost),
            report("h", Arm::Control, "2", 0, JobResult::Failed),
            report("h", Arm::Control, "3", 0, JobResult::Passed),
        ];
        let counts = tally(&reports, 1).control;
        assert_eq!((counts.jobs, counts.failed, counts.lost), (3, 2, 1));
        assert_eq!(counts.completed(), 3);
    }

    #[test]
    fn records_parse_from_json_lines_and_must_name_their_host() {
        let records = [
            report("h", Arm::Candidate, "j", 1, JobResult::Lost),
            report("h", Arm::Control, "k", 0, JobResult::Passed),
        ];
        let text = format!(
            "{}\n\n{}\n",
            serde_json::to_string(&records[0]).unwrap(),
            serde_json::to_string(&records[1]).unwrap()
        );
        assert_eq!(parse_records(&text).unwrap(), records);
        let err = parse_records("{\"host_id\":\"h\"}\n").unwrap_err();
        assert!(err.starts_with("line 1: not an outcome record"), "{err}");
        let mut hostless = records[0].clone();
        hostless.host_id = None;
        let err = parse_records(&serde_json::to_string(&hostless).unwrap()).unwrap_err();
        assert!(err.contains("names no host"), "{err}");
    }

    #[test]
    fn counts_rejected_if_failures_and_cancellations_exceed_jobs() {
        let counts = ArmCounts {
            jobs: 10,
            failed: 6,
            cancelled: 5,
            hosts: 2,
            ..ArmCounts::default()
        };
        assert!(counts.check(Arm::Candidate).is_err());
        let lost = ArmCounts {
            jobs: 10,
            failed: 1,
            lost: 2,
            hosts: 2,
            ..ArmCounts::default()
        };
        assert!(lost.check(Arm::Control).is_err());
    }
}
