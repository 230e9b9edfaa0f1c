//! Build jobs: a queue worked one job at a time. Each job runs `distd release LINE` as a child
//! process in its own process group, its output in the job's log, so cancelling it or stopping
//! the daemon stops make.bash and everything under it, and the job's temporary files are the
//! child's to clean up. The journal records every change; a daemon that starts after a crash
//! kills what is left of the job's process group, marks the job interrupted and queues it
//! again (up to [`MAX_ATTEMPTS`]). Publishing moves no tag before the release is signed and
//! logged, so a job stopped at any point leaves no tag on an unsigned release.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use distd_api::wire::{Job, JobEvent, JobState};
use jiff::Timestamp;
use tokio::sync::{Notify, watch};

use super::journal::{Journal, ProcessRecord, Record};
use super::metrics::Metrics;
use crate::events;

/// A job interrupted this many times is failed rather than started again.
pub const MAX_ATTEMPTS: u32 = 3;

/// How a job's process is started.
pub struct Runner {
    pub exe: PathBuf,
    pub lines_file: PathBuf,
    pub cache_dir: Option<PathBuf>,
    /// The daemon's ledger, where a job records what it signs.
    pub ledger: PathBuf,
    /// How long a job has after SIGTERM before its process group is killed.
    pub stop_grace: Duration,
}

pub struct Jobs {
    journal: Journal,
    runner: Runner,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
    wake: Notify,
    /// Bumped at every change of any job, for those following one.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Inner {
    records: BTreeMap<u64, Record>,
    queue: VecDeque<u64>,
    next_id: u64,
    /// The running job and whether it was asked to stop.
    running: Option<(u64, Option<ProcessRecord>, bool)>,
}

/// Why a cancel was refused.
pub enum CancelError {
    NotFound,
    Finished(JobState),
}

impl Jobs {
    /// Opens the journal and settles what a previous daemon left: running jobs are
    /// interrupted (their leftover processes killed) and queued again with the queued ones.
    pub fn open(journal: Journal, runner: Runner, metrics: Arc<Metrics>) -> Result<Arc<Self>> {
        let mut inner = Inner::default();
        for mut record in journal.read_all()? {
            let id = record.job.id;
            inner.next_id = inner.next_id.max(id);
            let state = record.job.state;
            if state == JobState::Running {
                // What is left of its process group (make.bash outlives its parent).
                if let Some(process) = record.process.take() {
                    process.signal_group(libc::SIGKILL);
                }
                change(
                    &mut record.job,
                    JobState::Interrupted,
                    Some("the daemon stopped while it ran".into()),
                );
            }
            if matches!(record.job.state, JobState::Queued | JobState::Interrupted) {
                if record.job.attempts >= MAX_ATTEMPTS {
                    let error = format!("interrupted {} times", record.job.attempts);
                    record.job.error = Some(error.clone());
                    change(&mut record.job, JobState::Failed, Some(error));
                } else {
                    inner.queue.push_back(id);
                }
            }
            if record.job.state != state {
                journal.write(&record)?;
            }
            inner.records.insert(id, record);
        }
        inner.next_id += 1;
        let jobs = Arc::new(Jobs {
            journal,
            runner,
            metrics,
            inner: Mutex::new(inner),
            wake: Notify::new(),
            changed: watch::Sender::new(0),
        });
        jobs.metrics.set_queue_depth(jobs.depth());
        Ok(jobs)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn depth(&self) -> usize {
        let inner = self.lock();
        inner.queue.len() + usize::from(inner.running.is_some())
    }

    /// Records `record` and tells followers.
    fn save(&self, record: &Record) -> Result<()> {
        self.journal.write(record)?;
        self.changed.send_modify(|n| *n += 1);
        self.metrics.set_queue_depth(self.depth());
        Ok(())
    }

    /// Queues a build of `line` for `caller`.
    pub fn submit(&self, line: &str, caller: &str) -> Result<Job> {
        let record = {
            let mut inner = self.lock();
            let id = inner.next_id;
            inner.next_id += 1;
            let mut job = Job {
                id,
                line: line.to_owned(),
                requested_by: caller.to_owned(),
                state: JobState::Queued,
                attempts: 0,
                release: None,
                error: None,
                history: Vec::new(),
            };
            change(
                &mut job,
                JobState::Queued,
                Some(format!("requested by {caller}")),
            );
            let record = Record { job, process: None };
            inner.records.insert(id, record.clone());
            inner.queue.push_back(id);
            record
        };
        self.save(&record)?;
        self.wake.notify_one();
        Ok(record.job)
    }

    pub fn get(&self, id: u64) -> Option<Job> {
        self.lock().records.get(&id).map(|r| r.job.clone())
    }

    pub fn list(&self) -> Vec<Job> {
        self.lock()
            .records
            .values()
            .map(|r| r.job.clone())
            .collect()
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.journal.log_path(id)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Cancels a queued job at once, or stops a running one (its state follows when its
    /// process has ended).
    pub fn cancel(&self, id: u64, caller: &str) -> Result<Job, CancelError> {
        let mut inner = self.lock();
        let job = inner
            .records
            .get(&id)
            .ok_or(CancelError::NotFound)?
            .job
            .clone();
        if job.state.is_final() {
            return Err(CancelError::Finished(job.state));
        }
        if let Some((running, process, cancelled)) = inner.running.as_mut()
            && *running == id
        {
            *cancelled = true;
            if let Some(process) = *process {
                drop(inner);
                self.note(id, &format!("cancelled by {caller}; stopping"));
                stop(process, self.runner.stop_grace);
            }
            return Ok(job);
        }
        inner.queue.retain(|queued| *queued != id);
        let record = inner.records.get_mut(&id).ok_or(CancelError::NotFound)?;
        change(
            &mut record.job,
            JobState::Cancelled,
            Some(format!("cancelled by {caller}")),
        );
        let record = record.clone();
        drop(inner);
        self.metrics.job_finished(&record.job.line, "cancelled");
        if let Err(e) = self.save(&record) {
            eprintln!("distd: job {id}: {e:#}");
        }
        Ok(record.job)
    }

    /// Appends a line of the daemon's own to the job's log.
    fn note(&self, id: u64, text: &str) {
        let line = format!(
            "distd serve: {} {text}\n",
            Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| Timestamp::now())
        );
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.journal.log_path(id))
            .and_then(|mut file| file.write_all(line.as_bytes()));
        self.changed.send_modify(|n| *n += 1);
    }

    /// Works the queue until `stopping` turns true; a job running then is stopped (SIGTERM,
    /// then SIGKILL after the grace period) and left interrupted, to resume at the next start.
    pub async fn work(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        loop {
            if *stopping.borrow() {
                return;
            }
            let next = self.lock().queue.pop_front();
            let Some(id) = next else {
                tokio::select! {
                    () = self.wake.notified() => {}
                    _ = stopping.changed() => {}
                }
                continue;
            };
            if let Err(e) = self.run(id, &mut stopping).await {
                eprintln!("distd: job {id}: {e:#}");
                self.note(id, &format!("failed to run: {e:#}"));
                self.finish(id, JobState::Failed, None, Some(format!("{e:#}")));
            }
        }
    }

    async fn run(&self, id: u64, stopping: &mut watch::Receiver<bool>) -> Result<()> {
        let (line, attempt) = {
            let mut inner = self.lock();
            let record = inner.records.get_mut(&id).context("the job vanished")?;
            record.job.attempts += 1;
            let attempt = record.job.attempts;
            change(
                &mut record.job,
                JobState::Running,
                Some(format!("attempt {attempt}")),
            );
            let line = record.job.line.clone();
            inner.running = Some((id, None, false));
            (line, attempt)
        };
        self.note(id, &format!("attempt {attempt}: distd release {line}"));
        let output = self.journal.output_path(id);
        let events_file = self.journal.events_path(id);
        let _ = std::fs::remove_file(&events_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.journal.log_path(id))
            .context("opening the job's log")?;
        let mut command = tokio::process::Command::new(&self.runner.exe);
        command
            .arg("release")
            .arg(&line)
            .arg("--config")
            .arg(&self.runner.lines_file)
            .env(events::EVENTS_VARIABLE, &events_file)
            .env("TCDIST_LEDGER", &self.runner.ledger)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&output).context("creating the job's output")?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        if let Some(cache) = &self.runner.cache_dir {
            command.arg("--cache-dir").arg(cache);
        }
        // SAFETY: prctl(2) only, between fork and exec. The job dies with the daemon, so a
        // daemon killed with SIGKILL leaves no job publishing behind the next one's back.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().context("starting distd release")?;
        let process = child.id().and_then(|pid| ProcessRecord::of(pid as i32));
        let record = {
            let mut inner = self.lock();
            if let Some(running) = inner.running.as_mut() {
                running.1 = process;
            }
            let record = inner.records.get_mut(&id).context("the job vanished")?;
            record.process = process;
            record.clone()
        };
        self.save(&record)?;
        // A cancel that came before the process was recorded is carried out now.
        if self
            .lock()
            .running
            .is_some_and(|(_, _, cancelled)| cancelled)
            && let Some(process) = process
        {
            stop(process, self.runner.stop_grace);
        }
        let status = tokio::select! {
            status = child.wait() => status,
            _ = async { stopping.wait_for(|stop| *stop).await.map(drop) } => {
                if let Some(process) = process {
                    self.note(id, "the daemon is stopping; stopping the job");
                    stop(process, self.runner.stop_grace);
                }
                child.wait().await
            }
        }
        .context("waiting for distd release")?;
        for event in events::read(&events_file) {
            self.metrics.observe(&event);
        }
        let cancelled = self
            .lock()
            .running
            .is_some_and(|(_, _, cancelled)| cancelled);
        let (state, release, error) = if status.success() {
            let digest = std::fs::read_to_string(&output)
                .ok()
                .and_then(|text| text.lines().last().map(str::to_owned));
            (JobState::Succeeded, digest, None)
        } else if cancelled {
            (JobState::Cancelled, None, None)
        } else if *stopping.borrow() {
            (JobState::Interrupted, None, None)
        } else {
            (
                JobState::Failed,
                None,
                Some(
                    last_error(&self.journal.log_path(id))
                        .unwrap_or_else(|| format!("distd release {status}")),
                ),
            )
        };
        self.note(id, &format!("{} ({status})", state_name(state)));
        self.finish(id, state, release, error);
        Ok(())
    }

    fn finish(&self, id: u64, state: JobState, release: Option<String>, error: Option<String>) {
        let record = {
            let mut inner = self.lock();
            inner.running = None;
            let Some(record) = inner.records.get_mut(&id) else {
                return;
            };
            record.process = None;
            record.job.release = release;
            record.job.error = error.clone();
            change(&mut record.job, state, error);
            record.clone()
        };
        if state.is_final() {
            self.metrics
                .job_finished(&record.job.line, state_name(state));
        }
        if let Err(e) = self.save(&record) {
            eprintln!("distd: job {id}: {e:#}");
        }
    }
}

fn change(job: &mut Job, state: JobState, note: Option<String>) {
    job.state = state;
    job.history.push(JobEvent {
        at: Timestamp::now(),
        state,
        note,
    });
}

pub fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
        JobState::Interrupted => "interrupted",
    }
}

/// SIGTERM to the job's process group now, SIGKILL to whatever is left of it after `grace`.
fn stop(process: ProcessRecord, grace: Duration) {
    process.signal_group(libc::SIGTERM);
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        process.signal_group(libc::SIGKILL);
    });
}

/// The last `distd: error:` line of a job's log: the reason it failed.
fn last_error(log: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("distd: error: "))
        .map(str::to_owned)
}

/// Refuses a job id that is not a number the daemon could have given.
pub fn parse_id(text: &str) -> Result<u64> {
    match text.parse() {
        Ok(id) if id > 0 => Ok(id),
        _ => bail!("{text:?} is not a job id"),
    }
}
