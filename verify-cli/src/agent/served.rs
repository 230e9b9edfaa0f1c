//! The jobs this agent served a pull for, and their outcomes. A pull that names its job
//! ([`JobAttempt`]) leaves a record of what the agent served it: the release, and the arm and
//! stage of the rollout that was running. The job's report (`tcverify report`) closes the
//! record with how the job ended; a record no report closes within the window is closed as
//! `lost` (hangs, OOM kills and dead hosts never reach a `pre-exit` hook). Each outcome of a job
//! served during a running rollout goes to the spool as one [`OutcomeRecord`] line.
//!
//! Rules:
//! - a report is accepted only for a job this agent served (and still remembers), once: a
//!   second report, a report after the job was counted lost, and a report naming another
//!   attempt (`retry`) than the pull did are refused;
//! - a second pull for a job waiting for its report replaces what it was served (the last
//!   toolchain a job pulls is the one on its `PATH`) and restarts its window;
//! - at most `max_jobs` records are kept, waiting or closed. A closed record is kept for one
//!   window after its outcome, to refuse a second report; at the cap the oldest closed record
//!   goes first, then the oldest waiting one, forgotten without an outcome (counted in
//!   `tcdist_agent_served_jobs_dropped_total`): a flood of pulls under made-up job IDs cannot
//!   turn real jobs into `lost` ones;
//! - the spool grows up to its size cap; beyond it outcomes are counted and not written. With
//!   `report_to` the sender empties it once the daemon has answered for all of it (`outbox.rs`).
//!
//! Time is an argument of every call, so tests move the clock.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::metrics::Metrics;
use super::outcome::{JobAttempt, ServedRollout};
use super::spool::{Spool, SpoolError};
use distd_api::outcome::{Arm, JobId, JobResult, OutcomeRecord, PipelineName};
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Result};

/// The outcome settings of the agent's config.
#[derive(Clone, Debug)]
pub struct OutcomeSettings {
    /// A served job with no report after this long is `lost`.
    pub window: Duration,
    /// Records kept at most, waiting or closed.
    pub max_jobs: usize,
    /// The spool file (JSON lines).
    pub spool: PathBuf,
    /// The spool's size cap in bytes.
    pub spool_max_bytes: u64,
}

/// What a job says about how it ended.
#[derive(Clone, Debug)]
pub struct JobReport {
    pub job: JobAttempt,
    pub pipeline: PipelineName,
    pub exit_status: i32,
    pub cancelled: bool,
}

/// Why a report was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No pull for this job was served (or its record is gone: see the module's rules).
    UnknownJob,
    /// The job's outcome was recorded already.
    Duplicate(JobResult),
    /// The job was counted lost: its window ended before the report came.
    Late,
    /// The pull named another attempt of the job.
    RetryMismatch { served: u32 },
}

impl Refusal {
    /// The `reason` label of `tcdist_agent_report_refusals_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::UnknownJob => "unknown-job",
            Refusal::Duplicate(_) => "duplicate",
            Refusal::Late => "late",
            Refusal::RetryMismatch { .. } => "retry-mismatch",
        }
    }

    /// What went wrong, without the job's ID.
    fn detail(&self, report: &JobReport, window: Duration) -> String {
        match self {
            Refusal::UnknownJob => {
                "this agent served no pull for this job (or no longer remembers it)".to_owned()
            }
            Refusal::Duplicate(result) => {
                format!("its outcome is recorded already ({result}); a job reports once")
            }
            Refusal::Late => format!(
                "counted lost: no report came within {:#} of its pull",
                jiff::SignedDuration::try_from(window).unwrap_or_default()
            ),
            Refusal::RetryMismatch { served } => format!(
                "pulled as attempt {served} (retry), not {}",
                report.job.retry
            ),
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Refusal::UnknownJob => {
                "report the job ID the pull named (tcverify pull --agent … --job-id ID), on the \
                 host that served it; the agent forgets jobs on restart, one outcome_window after \
                 their outcome, and beyond outcome_max_jobs"
            }
            Refusal::Duplicate(_) | Refusal::Late => {
                "nothing to do: the job's outcome is counted once, as recorded first"
            }
            Refusal::RetryMismatch { .. } => {
                "give report the same --retry as the pull (BUILDKITE_RETRY_COUNT)"
            }
        }
    }

    /// The error a client gets: a usage error (exit 2): the report is wrong, retrying it does
    /// not help, and nothing about a release was refused (that is exit 42).
    pub fn to_error(&self, report: &JobReport, window: Duration) -> Error {
        Error::usage_with_hint(
            format!("job {}: {}", report.job.id, self.detail(report, window)),
            self.hint(),
        )
    }
}

/// The answer to a report: printed by `tcverify report` (one line, or one JSON object).
#[derive(Clone, Debug, Serialize)]
pub struct ReportAnswer {
    /// Whether the outcome was recorded now.
    pub recorded: bool,
    pub job_id: JobId,
    pub retry: u32,
    /// The result recorded (`recorded`), else the reason it was not (`--if-served`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The release the agent served the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<Digest>,
    /// The running rollout it was served from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutAnswer>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RolloutAnswer {
    pub arm: Arm,
    pub channel: String,
    pub sequence: u64,
    pub stage: u32,
}

impl ReportAnswer {
    /// A report `--if-served` left alone.
    pub fn skipped(report: &JobReport, refusal: &Refusal, window: Duration) -> Self {
        Self {
            recorded: false,
            job_id: report.job.id.clone(),
            retry: report.job.retry,
            result: None,
            reason: Some(refusal.reason()),
            message: Some(refusal.detail(report, window)),
            release: None,
            rollout: None,
        }
    }

    /// `tcverify report`'s stdout.
    pub fn stdout(&self, json: bool) -> String {
        if json {
            return format!(
                "{}\n",
                serde_json::to_string(self).expect("answers serialise")
            );
        }
        match (&self.result, &self.rollout) {
            (Some(result), Some(rollout)) => format!(
                "job {}: {result}, recorded ({} arm of channel {:?} rollout {}, stage {})\n",
                self.job_id, rollout.arm, rollout.channel, rollout.sequence, rollout.stage
            ),
            (Some(result), None) => format!(
                "job {}: {result}, recorded (no rollout was running for its pull)\n",
                self.job_id
            ),
            (None, _) => format!(
                "job {}: not recorded: {}\n",
                self.job_id,
                self.message.as_deref().unwrap_or("")
            ),
        }
    }
}

pub struct ServedJobs {
    window: Duration,
    max_jobs: usize,
    host_id: Option<String>,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
    /// Locked after `inner` when both are.
    spool: Arc<Mutex<Spool>>,
}

struct Inner {
    jobs: HashMap<JobId, Job>,
    /// Waiting records by the time of their pull (with a sequence number to keep keys unique).
    waiting: BTreeMap<(Timestamp, u64), JobId>,
    /// Closed records by the time of their outcome.
    closed: BTreeMap<(Timestamp, u64), JobId>,
    next: u64,
    dropped: u64,
}

struct Job {
    key: (Timestamp, u64),
    state: State,
}

enum State {
    Waiting(Served),
    Closed(JobResult),
}

struct Served {
    retry: u32,
    release: Digest,
    rollout: Option<ServedRollout>,
    at: Timestamp,
}

impl ServedJobs {
    /// Opens (or creates) the spool; a spool that cannot be opened is a store error (exit 4).
    pub fn new(
        settings: &OutcomeSettings,
        host_id: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        Ok(Self {
            window: settings.window,
            max_jobs: settings.max_jobs.max(1),
            host_id,
            metrics,
            inner: Mutex::new(Inner {
                jobs: HashMap::new(),
                waiting: BTreeMap::new(),
                closed: BTreeMap::new(),
                next: 0,
                dropped: 0,
            }),
            spool: Arc::new(Mutex::new(Spool::open(
                &settings.spool,
                settings.spool_max_bytes,
            )?)),
        })
    }

    /// The spool the outcomes go to, for the sender.
    pub fn spool(&self) -> Arc<Mutex<Spool>> {
        Arc::clone(&self.spool)
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Records that `job` was served `release`, from `rollout` when one was running.
    pub fn served(
        &self,
        now: Timestamp,
        job: &JobAttempt,
        release: Digest,
        rollout: Option<ServedRollout>,
    ) {
        let mut guard = self.inner.lock().expect("served jobs lock");
        let inner = &mut *guard;
        self.sweep_locked(inner, now);
        let served = Served {
            retry: job.retry,
            release,
            rollout,
            at: now,
        };
        let key = inner.key(now);
        if let Some(existing) = inner.jobs.get_mut(&job.id) {
            // Reported or lost already: the outcome stands.
            if let State::Waiting(_) = existing.state {
                inner.waiting.remove(&existing.key);
                inner.waiting.insert(key, job.id.clone());
                existing.key = key;
                existing.state = State::Waiting(served);
            }
            return;
        }
        while inner.jobs.len() >= self.max_jobs {
            self.evict_one(inner);
        }
        inner.waiting.insert(key, job.id.clone());
        inner.jobs.insert(
            job.id.clone(),
            Job {
                key,
                state: State::Waiting(served),
            },
        );
    }

    /// Records a job's report, or says why not.
    pub fn report(
        &self,
        now: Timestamp,
        report: &JobReport,
    ) -> std::result::Result<ReportAnswer, Refusal> {
        let mut guard = self.inner.lock().expect("served jobs lock");
        let inner = &mut *guard;
        self.sweep_locked(inner, now);
        let refusal = match inner.jobs.get(&report.job.id).map(|job| &job.state) {
            None => Some(Refusal::UnknownJob),
            Some(State::Closed(JobResult::Lost)) => Some(Refusal::Late),
            Some(State::Closed(result)) => Some(Refusal::Duplicate(*result)),
            Some(State::Waiting(served)) if served.retry != report.job.retry => {
                Some(Refusal::RetryMismatch {
                    served: served.retry,
                })
            }
            Some(State::Waiting(_)) => None,
        };
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        let result = JobResult::reported(report.exit_status, report.cancelled);
        let served = self.close(
            inner,
            &report.job.id,
            now,
            result,
            Some(&report.pipeline),
            Some(report.exit_status),
        );
        Ok(ReportAnswer {
            recorded: true,
            job_id: report.job.id.clone(),
            retry: report.job.retry,
            result: Some(result),
            reason: None,
            message: None,
            release: Some(served.release),
            rollout: served.rollout.map(|r| RolloutAnswer {
                arm: r.arm,
                channel: r.channel,
                sequence: r.sequence,
                stage: r.stage,
            }),
        })
    }

    /// The answer to a report: recorded; or, with `if_served`, left alone when the agent is not
    /// waiting on the job; or refused (counted by reason; exit 2). A report naming another
    /// attempt than the pull is refused also with `if_served`: it is wrong, not unexpected.
    pub fn answer(
        &self,
        now: Timestamp,
        report: &JobReport,
        if_served: bool,
    ) -> Result<ReportAnswer> {
        match self.report(now, report) {
            Ok(answer) => Ok(answer),
            Err(refusal) if if_served && !matches!(refusal, Refusal::RetryMismatch { .. }) => {
                Ok(ReportAnswer::skipped(report, &refusal, self.window))
            }
            Err(refusal) => {
                self.metrics.add(
                    "tcdist_agent_report_refusals_total",
                    &[("reason", refusal.reason())],
                    1.0,
                );
                Err(refusal.to_error(report, self.window))
            }
        }
    }

    /// Closes every record whose window has ended as `lost`, and forgets closed records one
    /// window after their outcome.
    pub fn sweep(&self, now: Timestamp) {
        let mut inner = self.inner.lock().expect("served jobs lock");
        self.sweep_locked(&mut inner, now);
    }

    /// The releases served to jobs that have not reported yet (and whose window has not
    /// ended): in use.
    pub fn in_use(&self) -> std::collections::HashSet<Digest> {
        let inner = self.inner.lock().expect("served jobs lock");
        inner
            .jobs
            .values()
            .filter_map(|job| match &job.state {
                State::Waiting(served) => Some(served.release.clone()),
                State::Closed(_) => None,
            })
            .collect()
    }

    /// Records kept (waiting and closed).
    pub fn len(&self) -> usize {
        self.inner.lock().expect("served jobs lock").jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sweep_locked(&self, inner: &mut Inner, now: Timestamp) {
        while let Some((&(at, seq), _)) = inner.waiting.first_key_value() {
            let end = at.saturating_add(self.window).unwrap_or(Timestamp::MAX);
            if end > now {
                break;
            }
            let id = inner.waiting.remove(&(at, seq)).expect("first key");
            // Recorded at the end of its window, not when the sweep ran.
            self.close(inner, &id, end, JobResult::Lost, None, None);
        }
        while let Some((&(at, seq), _)) = inner.closed.first_key_value() {
            if at.saturating_add(self.window).unwrap_or(Timestamp::MAX) > now {
                break;
            }
            let id = inner.closed.remove(&(at, seq)).expect("first key");
            inner.jobs.remove(&id);
        }
    }

    /// Closes the waiting record of `id` with `result` at `at`, counts and spools the outcome,
    /// and returns what the job was served.
    fn close(
        &self,
        inner: &mut Inner,
        id: &JobId,
        at: Timestamp,
        result: JobResult,
        pipeline: Option<&PipelineName>,
        exit_status: Option<i32>,
    ) -> Served {
        let key = inner.key(at);
        let job = inner.jobs.get_mut(id).expect("a waiting record");
        inner.waiting.remove(&job.key);
        job.key = key;
        let State::Waiting(served) = std::mem::replace(&mut job.state, State::Closed(result))
        else {
            unreachable!("only waiting records are closed")
        };
        inner.closed.insert(key, id.clone());
        let arm = served
            .rollout
            .as_ref()
            .map_or("none".to_owned(), |r| r.arm.to_string());
        let family = if served.retry == 0 {
            "tcdist_agent_outcomes_total"
        } else {
            "tcdist_agent_retried_outcomes_total"
        };
        self.metrics.add(
            family,
            &[("arm", &arm), ("result", &result.to_string())],
            1.0,
        );
        if let Some(rollout) = &served.rollout {
            let record = OutcomeRecord {
                host_id: self.host_id.clone(),
                job_id: id.clone(),
                pipeline: pipeline.cloned(),
                arm: rollout.arm,
                release: served.release.clone(),
                channel: rollout.channel.clone(),
                sequence: rollout.sequence,
                stage: rollout.stage,
                result,
                retry: served.retry,
                exit_status,
                served_at: served.at,
                time: at,
            };
            let mut spool = self.spool.lock().expect("spool lock");
            if let Err(problem) = spool.append(&record) {
                let reason = match &problem {
                    SpoolError::Full => "full",
                    SpoolError::Io(_) => "error",
                };
                self.metrics.add(
                    "tcdist_agent_outcomes_unspooled_total",
                    &[("reason", reason)],
                    1.0,
                );
                if spool.should_log(&problem) {
                    eprintln!(
                        "tcverify agent: outcome of job {id} not written to the spool {}: {problem}",
                        spool.path().display()
                    );
                }
            }
        }
        served
    }

    /// Makes room for one record: the oldest closed one, else the oldest waiting one, which is
    /// forgotten without an outcome.
    fn evict_one(&self, inner: &mut Inner) {
        if let Some((_, id)) = inner.closed.pop_first() {
            inner.jobs.remove(&id);
            return;
        }
        let Some((_, id)) = inner.waiting.pop_first() else {
            return;
        };
        inner.jobs.remove(&id);
        inner.dropped += 1;
        self.metrics
            .add("tcdist_agent_served_jobs_dropped_total", &[], 1.0);
        // 1, 2, 4, 8, …: a flood is seen without flooding the log.
        if inner.dropped.is_power_of_two() {
            eprintln!(
                "tcverify agent: outcome_max_jobs ({}) reached: forgot job {id} without an \
                 outcome ({} forgotten so far)",
                self.max_jobs, inner.dropped
            );
        }
    }
}

impl Inner {
    fn key(&mut self, at: Timestamp) -> (Timestamp, u64) {
        self.next += 1;
        (at, self.next)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const WINDOW: Duration = Duration::from_secs(2 * 3600);

    struct Fixture {
        _dir: tempfile::TempDir,
        spool: PathBuf,
        metrics: Arc<Metrics>,
        jobs: ServedJobs,
    }

    fn fixture(max_jobs: usize, spool_max_bytes: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("outcomes/outcomes.jsonl");
        let metrics = Arc::new(Metrics::default());
        let jobs = ServedJobs::new(
            &OutcomeSettings {
                window: WINDOW,
                max_jobs,
                spool: spool.clone(),
                spool_max_bytes,
            },
            Some("build-017".into()),
            Arc::clone(&metrics),
        )
        .unwrap();
        Fixture {
            _dir: dir,
            spool,
            metrics,
            jobs,
        }
    }

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_900_000_000 + seconds).unwrap()
    }

    fn attempt(id: &str, retry: u32) -> JobAttempt {
        JobAttempt {
            id: JobId::parse(id).unwrap(),
            retry,
        }
    }

    fn rollout(arm: Arm) -> Option<ServedRollout> {
        Some(ServedRollout {
            arm,
            channel: "stable".into(),
            sequence: 7,
            stage: 1,
        })
    }

    fn report(id: &str, retry: u32, exit_status: i32, cancelled: bool) -> JobReport {
        JobReport {
            job: attempt(id, retry),
            pipeline: PipelineName::parse("app").unwrap(),
            exit_status,
            cancelled,
        }
    }

    fn spooled(fixture: &Fixture) -> Vec<OutcomeRecord> {
        std::fs::read_to_string(&fixture.spool)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn metric(fixture: &Fixture, series: &str) -> Option<f64> {
        fixture
            .metrics
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{series} "))?.parse().ok())
    }

    #[test]
    fn report_recorded_once_with_what_the_agent_served() {
        let f = fixture(100, 1 << 20);
        let release = Digest::of(b"candidate");
        f.jobs.served(
            t(0),
            &attempt("j-1", 0),
            release.clone(),
            rollout(Arm::Candidate),
        );
        let answer = f.jobs.report(t(60), &report("j-1", 0, 2, false)).unwrap();
        assert!(answer.recorded);
        assert_eq!(answer.result, Some(JobResult::Failed));
        assert_eq!(
            answer.stdout(false),
            "job j-1: failed, recorded (candidate arm of channel \"stable\" rollout 7, stage 1)\n"
        );
        let records = spooled(&f);
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(record.host_id.as_deref(), Some("build-017"));
        assert_eq!(record.release, release);
        assert_eq!(record.arm, Arm::Candidate);
        assert_eq!((record.sequence, record.stage), (7, 1));
        assert_eq!(record.result, JobResult::Failed);
        assert_eq!(record.exit_status, Some(2));
        assert_eq!(record.pipeline.as_ref().unwrap().as_str(), "app");
        assert_eq!((record.served_at, record.time), (t(0), t(60)));
        // Once per job: the second report is refused, and nothing more is spooled or counted.
        let refusal = f
            .jobs
            .report(t(61), &report("j-1", 0, 0, false))
            .unwrap_err();
        assert_eq!(refusal, Refusal::Duplicate(JobResult::Failed));
        assert_eq!(refusal.reason(), "duplicate");
        let error = refusal.to_error(&report("j-1", 0, 0, false), WINDOW);
        assert_eq!(error.exit_code(), 2);
        assert!(
            error.to_string().contains("recorded already (failed)"),
            "{error}"
        );
        assert_eq!(spooled(&f).len(), 1);
        assert_eq!(
            metric(
                &f,
                "tcdist_agent_outcomes_total{arm=\"candidate\",result=\"failed\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn report_refused_for_a_job_never_served() {
        let f = fixture(100, 1 << 20);
        f.jobs.served(
            t(0),
            &attempt("j-1", 0),
            Digest::of(b"r"),
            rollout(Arm::Control),
        );
        let refusal = f
            .jobs
            .report(t(1), &report("j-2", 0, 0, false))
            .unwrap_err();
        assert_eq!(refusal, Refusal::UnknownJob);
        assert_eq!(refusal.reason(), "unknown-job");
        assert!(spooled(&f).is_empty());
        // The job that was served can still report.
        assert!(f.jobs.report(t(2), &report("j-1", 0, 0, false)).is_ok());
    }

    #[test]
    fn if_served_leaves_unknown_and_closed_jobs_alone_and_counts_only_refusals() {
        let f = fixture(100, 1 << 20);
        let skipped = f
            .jobs
            .answer(t(0), &report("j-9", 0, 0, false), true)
            .unwrap();
        assert!(!skipped.recorded);
        assert_eq!(skipped.reason, Some("unknown-job"));
        assert_eq!(
            skipped.stdout(false),
            "job j-9: not recorded: this agent served no pull for this job (or no longer \
             remembers it)\n"
        );
        let json: serde_json::Value = serde_json::from_str(&skipped.stdout(true)).unwrap();
        assert_eq!(json["recorded"], false);
        assert_eq!(json["reason"], "unknown-job");
        f.jobs.served(
            t(1),
            &attempt("j-1", 0),
            Digest::of(b"r"),
            rollout(Arm::Candidate),
        );
        let recorded = f
            .jobs
            .answer(t(2), &report("j-1", 0, 0, false), true)
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&recorded.stdout(true)).unwrap();
        assert_eq!(json["recorded"], true);
        assert_eq!(json["result"], "passed");
        assert_eq!(json["rollout"]["arm"], "candidate");
        assert_eq!(json["release"], serde_json::json!(Digest::of(b"r")));
        let again = f
            .jobs
            .answer(t(3), &report("j-1", 0, 0, false), true)
            .unwrap();
        assert_eq!(again.reason, Some("duplicate"));
        assert_eq!(
            metric(
                &f,
                "tcdist_agent_report_refusals_total{reason=\"duplicate\"}"
            ),
            None
        );
        // Without it, the same reports are refused and counted by reason.
        let err = f
            .jobs
            .answer(t(4), &report("j-1", 0, 0, false), false)
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = f
            .jobs
            .answer(t(5), &report("j-9", 0, 0, false), false)
            .unwrap_err();
        assert!(err.to_string().contains("served no pull"), "{err}");
        assert!(err.hint().unwrap().contains("--job-id"));
        for reason in ["duplicate", "unknown-job"] {
            assert_eq!(
                metric(
                    &f,
                    &format!("tcdist_agent_report_refusals_total{{reason=\"{reason}\"}}")
                ),
                Some(1.0)
            );
        }
        // Another attempt than the pull is refused even with if_served.
        f.jobs.served(
            t(6),
            &attempt("j-2", 1),
            Digest::of(b"r"),
            rollout(Arm::Candidate),
        );
        let err = f
            .jobs
            .answer(t(7), &report("j-2", 0, 0, false), true)
            .unwrap_err();
        assert!(err.to_string().contains("pulled as attempt 1"), "{err}");
    }

    #[test]
    fn report_refused_if_it_names_another_attempt_than_the_pull() {
        let f = fixture(100, 1 << 20);
        f.jobs.served(
            t(0),
            &attempt("j-1", 1),
            Digest::of(b"r"),
            rollout(Arm::Control),
        );
        let refusal = f
            .jobs
            .report(t(1), &report("j-1", 0, 0, false))
            .unwrap_err();
        assert_eq!(refusal, Refusal::RetryMismatch { served: 1 });
        let answer = f.jobs.report(t(2), &report("j-1", 1, 0, false)).unwrap();
        assert_eq!(answer.retry, 1);
        assert_eq!(spooled(&f)[0].retry, 1);
        // Retries are counted apart from first attempts.
        assert_eq!(
            metric(
                &f,
                "tcdist_agent_retried_outcomes_total{arm=\"control\",result=\"passed\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            metric(
                &f,
                "tcdist_agent_outcomes_total{arm=\"control\",result=\"passed\"}"
            ),
            None
        );
    }

    #[test]
    fn job_served_but_never_reported_is_lost_at_the_end_of_its_window() {
        let f = fixture(100, 1 << 20);
        f.jobs.served(
            t(0),
            &attempt("j-1", 0),
            Digest::of(b"r"),
            rollout(Arm::Candidate),
        );
        let window = WINDOW.as_secs() as i64;
        f.jobs.sweep(t(window - 1));
        assert!(spooled(&f).is_empty());
        // A report just inside the window counts.
        f.jobs.served(
            t(10),
            &attempt("j-2", 0),
            Digest::of(b"r"),
            rollout(Arm::Candidate),
        );
        f.jobs.sweep(t(window + 5));
        let records = spooled(&f);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].job_id.as_str(), "j-1");
        assert_eq!(records[0].result, JobResult::Lost);
        assert_eq!(records[0].pipeline, None);
        assert_eq!(records[0].exit_status, None);
        assert_eq!(records[0].time, t(window));
        // A report after the window is refused: the job was counted lost.
        let refusal = f
            .jobs
            .report(t(window + 6), &report("j-1", 0, 0, false))
            .unwrap_err();
        assert_eq!(refusal, Refusal::Late);
        assert!(
            refusal
                .to_error(&report("j-1", 0, 0, false), WINDOW)
                .to_string()
                .contains("counted lost: no report came within 2h")
        );
        assert!(
            f.jobs
                .report(t(window + 9), &report("j-2", 0, 0, false))
                .is_ok()
        );
        assert_eq!(
            metric(
                &f,
                "tcdist_agent_outcomes_total{arm=\"candidate\",result=\"lost\"}"
            ),
            Some(1.0)
        );
        // One window after its outcome a record is forgotten.
        f.jobs.sweep(t(3 * window));
        assert!(f.jobs.is_empty());
        assert_eq!(
            f.jobs
                .report(t(3 * window), &report("j-1", 0, 0, false))
                .unwrap_err(),
            Refusal::UnknownJob
        );
    }

    #[test]
    fn second_pull_replaces_what_the_job_was_served_and_restarts_its_window() {
        let f = fixture(100, 1 << 20);
        f.jobs.served(
            t(0),
            &attempt("j-1", 0),
            Digest::of(b"first"),
            rollout(Arm::Control),
        );
        f.jobs.served(
            t(100),
            &attempt("j-1", 0),
            Digest::of(b"second"),
            rollout(Arm::Candidate),
        );
        assert_eq!(f.jobs.len(), 1);
        f.jobs.sweep(t(WINDOW.as_secs() as i64 + 50));
        assert!(spooled(&f).is_empty());
        f.jobs
            .report(t(WINDOW.as_secs() as i64 + 60), &report("j-1", 0, 0, false))
            .unwrap();
        let records = spooled(&f);
        assert_eq!(records[0].release, Digest::of(b"second"));
        assert_eq!(records[0].arm, Arm::Candidate);
        // A pull after the outcome changes nothing.
        f.jobs.served(
            t(WINDOW.as_secs() as i64 + 70),
            &attempt("j-1", 0),
            Digest::of(b"third"),
            None,
        );
        assert_eq!(
            f.jobs
                .report(t(WINDOW.as_secs() as i64 + 80), &report("j-1", 0, 0, false))
                .unwrap_err(),
            Refusal::Duplicate(JobResult::Passed)
        );
    }

    #[test]
    fn jobs_served_without_a_running_rollout_are_counted_but_not_spooled() {
        let f = fixture(100, 1 << 20);
        f.jobs
            .served(t(0), &attempt("j-1", 0), Digest::of(b"r"), None);
        let answer = f.jobs.report(t(1), &report("j-1", 0, -1, true)).unwrap();
        assert_eq!(answer.result, Some(JobResult::Cancelled));
        assert_eq!(
            answer.stdout(false),
            "job j-1: cancelled, recorded (no rollout was running for its pull)\n"
        );
        assert!(spooled(&f).is_empty());
        assert_eq!(
            metric(
                &f,
                "tcdist_agent_outcomes_total{arm=\"none\",result=\"cancelled\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn at_the_cap_closed_records_go_first_then_the_oldest_waiting_one_without_an_outcome() {
        let f = fixture(3, 1 << 20);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            f.jobs.served(
                t(i as i64),
                &attempt(id, 0),
                Digest::of(b"r"),
                rollout(Arm::Control),
            );
        }
        f.jobs.report(t(5), &report("b", 0, 0, false)).unwrap();
        // "b" is closed: it makes room for "d".
        f.jobs.served(
            t(6),
            &attempt("d", 0),
            Digest::of(b"r"),
            rollout(Arm::Control),
        );
        assert_eq!(f.jobs.len(), 3);
        assert_eq!(
            f.jobs.report(t(7), &report("b", 0, 0, false)).unwrap_err(),
            Refusal::UnknownJob
        );
        // Then the oldest waiting record, "a", is forgotten: never counted lost.
        f.jobs.served(
            t(8),
            &attempt("e", 0),
            Digest::of(b"r"),
            rollout(Arm::Control),
        );
        assert_eq!(f.jobs.len(), 3);
        assert_eq!(
            f.jobs.report(t(9), &report("a", 0, 0, false)).unwrap_err(),
            Refusal::UnknownJob
        );
        assert_eq!(
            metric(&f, "tcdist_agent_served_jobs_dropped_total"),
            Some(1.0)
        );
        f.jobs.sweep(t(10 * WINDOW.as_secs() as i64));
        let lost: Vec<String> = spooled(&f)
            .into_iter()
            .filter(|r| r.result == JobResult::Lost)
            .map(|r| r.job_id.to_string())
            .collect();
        assert_eq!(lost, ["c", "d", "e"]);
    }

    #[test]
    fn full_spool_counts_outcomes_it_does_not_write_and_keeps_whole_lines() {
        let f = fixture(100, 600);
        for i in 0..5 {
            let id = format!("job-{i}");
            f.jobs.served(
                t(i),
                &attempt(&id, 0),
                Digest::of(b"r"),
                rollout(Arm::Control),
            );
            f.jobs.report(t(i + 1), &report(&id, 0, 0, false)).unwrap();
        }
        let written = spooled(&f).len();
        assert!((1..5).contains(&written), "{written}");
        assert!(std::fs::metadata(&f.spool).unwrap().len() <= 600);
        assert_eq!(
            metric(&f, "tcdist_agent_outcomes_unspooled_total{reason=\"full\"}"),
            Some((5 - written) as f64)
        );
    }

    #[test]
    fn spool_reopened_after_a_torn_write_starts_a_new_line() {
        let f = fixture(100, 1 << 20);
        f.jobs.served(
            t(0),
            &attempt("j-1", 0),
            Digest::of(b"r"),
            rollout(Arm::Control),
        );
        f.jobs.report(t(1), &report("j-1", 0, 0, false)).unwrap();
        drop(f.jobs);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&f.spool)
            .unwrap();
        file.write_all(b"{\"host_id\":\"build-0").unwrap();
        drop(file);
        let jobs = ServedJobs::new(
            &OutcomeSettings {
                window: WINDOW,
                max_jobs: 10,
                spool: f.spool.clone(),
                spool_max_bytes: 1 << 20,
            },
            None,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        jobs.served(
            t(2),
            &attempt("j-2", 0),
            Digest::of(b"r"),
            rollout(Arm::Control),
        );
        jobs.report(t(3), &report("j-2", 0, 0, false)).unwrap();
        let text = std::fs::read_to_string(&f.spool).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(serde_json::from_str::<OutcomeRecord>(lines[1]).is_err());
        let last: OutcomeRecord = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(last.job_id.as_str(), "j-2");
        assert_eq!(last.host_id, None);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&f.spool).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o640);
    }
}
