//! The rollout judge (docs/rollout.md, "The judge"). Every interval the daemon reads the
//! running rollout of each of its lines' channels (which also tells the outcome route what to
//! take), and, with a `[judge]` table, judges each running stage below the whole channel from
//! the outcomes its journal holds:
//!
//! - worse: it halts the rollout with its brake identity, and alerts;
//! - pass: it advances to the plan's next stage when the line has `auto_advance` (never to the
//!   whole channel: finishing is a promoter's), else it waits for an operator's advance;
//! - hold (too little data, soaking, undecided): it waits; an alert when the soak has passed
//!   and an arm still lacks jobs or hosts.
//!
//! Unless it halted or advanced, it re-signs the running statement once less than half its
//! lifetime (or two intervals) is left, so a judge that stops judging lets the rollout lapse to
//! the current release. Every verdict goes to the journal with its inputs and what was done;
//! `dry_run` records the same verdicts and signs nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use super::api::Daemon;
use super::config::JudgeSettings;
use super::live::{ChannelView, LiveStage};
use super::rollout_journal::VerdictEntry;
use crate::judge::tally;
use crate::judge::verdict::{self, Inputs, Verdict, VerdictRecord};
use crate::publish::Signing;
use crate::rollout::{JudgeMove, judge_move, running_stage};

/// How soon the outcome route may read the registry again for a batch served after the last
/// read began.
const REREAD_AFTER: Duration = Duration::from_secs(1);

/// The judge: its settings and its brake identity (`None` in a dry run).
pub struct Judge {
    pub settings: JudgeSettings,
    pub brake: Option<Signing>,
}

/// Reads every line's running rollouts into the daemon's view. A line that cannot be read
/// keeps what was read of it before.
pub async fn read_rollouts(daemon: &Daemon) -> Result<()> {
    let mut last = daemon.rollouts_read.lock().await;
    read_rollouts_locked(daemon, &mut last).await
}

/// Makes sure a read that began after `since` is in: reads the rollouts when the last read
/// began before it, at most once every [`REREAD_AFTER`] (a caller within that waits for the
/// next read, so hosts reporting often cannot keep the daemon reading the registry). `since`
/// is taken no later than now: a host's clock running ahead changes nothing.
pub async fn read_rollouts_since(daemon: &Daemon, since: Timestamp) -> Result<()> {
    let since = since.min(Timestamp::now());
    loop {
        let mut last = daemon.rollouts_read.lock().await;
        let wait = match *last {
            Some((began, _)) if began > since => return Ok(()),
            Some((_, at)) => REREAD_AFTER.saturating_sub(at.elapsed()),
            None => Duration::ZERO,
        };
        if wait.is_zero() {
            return read_rollouts_locked(daemon, &mut last).await;
        }
        drop(last);
        tokio::time::sleep(wait).await;
    }
}

/// The read, with the lock that makes reads one at a time held: `last` is when the last read
/// began (wall clock, and monotonic for the rate limit).
async fn read_rollouts_locked(
    daemon: &Daemon,
    last: &mut Option<(Timestamp, Instant)>,
) -> Result<()> {
    let began = (Timestamp::now(), Instant::now());
    let mut read = Vec::new();
    let mut failed = Vec::new();
    for line in &daemon.config.lines {
        for channel in &line.channels {
            let got = running_stage(
                &line.repository,
                channel,
                &daemon.promoter,
                &daemon.registry,
            )
            .await
            .with_context(|| format!("reading the rollout of {}/{channel}", line.name));
            match got {
                Ok(got) => {
                    let running = got.running.map(|r| LiveStage::of(&line.name, &r));
                    daemon.metrics.set_rollout_stage(
                        &line.name,
                        channel,
                        running
                            .as_ref()
                            .map(|s| (s.stage + 1, s.spec.share.basis_points())),
                    );
                    read.push(ChannelView {
                        line: line.name.clone(),
                        channel: channel.clone(),
                        newest_sequence: got.newest_sequence,
                        running,
                    });
                }
                Err(e) => failed.push(((line.name.clone(), channel.clone()), e)),
            }
        }
    }
    let unread: Vec<_> = failed.iter().map(|(at, _)| at.clone()).collect();
    let mut live = daemon.live.write().unwrap_or_else(|e| e.into_inner());
    live.replace(read, &unread, began.0);
    drop(live);
    *last = Some(began);
    match failed.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Reads and judges the rollouts every interval until the daemon stops.
pub async fn watch_rollouts(daemon: Arc<Daemon>, mut stopping: watch::Receiver<bool>) {
    let interval = daemon
        .judge
        .as_ref()
        .map_or(super::config::DEFAULT_JUDGE_INTERVAL, |j| {
            j.settings.interval
        })
        .unsigned_abs();
    loop {
        if let Err(e) = read_rollouts(&daemon).await {
            eprintln!("distd: {e:#}");
        }
        if let Some(judge) = &daemon.judge {
            let stages = daemon
                .live
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .stages();
            for stage in stages {
                if let Err(e) = look(&daemon, judge, &stage, Timestamp::now()).await {
                    eprintln!(
                        "distd: judging the rollout of {}/{}: {e:#}",
                        stage.line, stage.channel
                    );
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// What the judge does after a look.
#[derive(Debug, PartialEq)]
pub enum Act {
    Nothing,
    Resign,
    Halt { reason: String },
    Advance,
}

impl Act {
    fn name(&self) -> &'static str {
        match self {
            Act::Nothing => "none",
            Act::Resign => "resign",
            Act::Halt { .. } => "halt",
            Act::Advance => "advance",
        }
    }
}

/// One look's verdict and what follows from it; `None` for a stage of the whole channel,
/// which has no control arm to judge against (it waits for a promoter's finish).
#[derive(Debug)]
pub struct Look {
    pub record: Option<VerdictRecord>,
    pub act: Act,
    /// Why someone should look: `insufficient-data`, `halted`, `awaiting-advance`.
    pub alert: Option<&'static str>,
}

/// Judges `stage` at `now` from its outcome records, on a line that does or does not
/// `auto_advance`. The clock is an argument, so tests move it.
pub fn decide(
    stage: &LiveStage,
    records: &[distd_api::outcome::OutcomeRecord],
    look: u64,
    now: Timestamp,
    settings: &JudgeSettings,
    auto_advance: bool,
) -> Result<Look, String> {
    let resign_due = resign_due(stage, now, settings.interval);
    let keep = if resign_due {
        Act::Resign
    } else {
        Act::Nothing
    };
    if stage.spec.share.is_whole_channel() {
        return Ok(Look {
            record: None,
            act: keep,
            alert: None,
        });
    }
    let tallied = tally::tally(records, stage.spec.min_hosts);
    let soaked = stage.soaked(now) >= stage.spec.soak();
    let record = verdict::judge(Inputs {
        candidate: tallied.candidate,
        control: tallied.control,
        min_jobs: stage.spec.min_jobs,
        min_hosts: stage.spec.min_hosts,
        soaked,
        look,
        config: settings.config(stage.judged_stages),
    })?;
    let (act, alert) = match record.verdict {
        Verdict::Worse => (
            Act::Halt {
                reason: halt_reason(stage, &record),
            },
            Some("halted"),
        ),
        Verdict::Pass if auto_advance && stage.stage + 1 < judged(stage) => (Act::Advance, None),
        Verdict::Pass => (keep, Some("awaiting-advance")),
        Verdict::Hold => (
            keep,
            (record.alert && soaked).then_some("insufficient-data"),
        ),
    };
    Ok(Look {
        record: Some(record),
        act,
        alert,
    })
}

/// The number of the plan's stages the judge may advance into (those below the whole channel).
fn judged(stage: &LiveStage) -> usize {
    usize::try_from(stage.judged_stages).unwrap_or(usize::MAX)
}

/// Whether the running statement should be re-signed now: less than half its lifetime, or
/// less than two intervals, is left.
fn resign_due(stage: &LiveStage, now: Timestamp, interval: SignedDuration) -> bool {
    let left = stage.expires.duration_since(now);
    let half = stage.expires.duration_since(stage.issued) / 2;
    left < half || left < interval * 2
}

fn halt_reason(stage: &LiveStage, record: &VerdictRecord) -> String {
    let (what, bounds) = if record.reasons.contains(&verdict::Reason::FailuresWorse) {
        ("failure", &record.failures)
    } else {
        ("cancellation", &record.cancellations)
    };
    format!(
        "judge: stage {} ({}): the candidate's {what} rate {:.2}% against the control's {:.2}% \
         (difference at least {:.2} points, look {})",
        stage.stage + 1,
        stage.spec.share,
        bounds.candidate_rate * 100.0,
        bounds.control_rate * 100.0,
        bounds.lower * 100.0,
        record.inputs.look
    )
}

/// One look at `stage`: judge it, record the verdict, and sign what follows (unless dry run).
async fn look(daemon: &Daemon, judge: &Judge, stage: &LiveStage, now: Timestamp) -> Result<()> {
    let line = daemon
        .config
        .line(&stage.line)
        .context("the line is no longer configured")?;
    let key = stage.key();
    let records = daemon.journal.outcomes(&key)?;
    let look_number = daemon.journal.next_look(&key);
    let look = decide(
        stage,
        &records,
        look_number,
        now,
        &judge.settings,
        line.auto_advance,
    )
    .map_err(anyhow::Error::msg)?;
    let (name, channel) = (&stage.line, &stage.channel);
    if let Some(alert) = look.alert {
        daemon.metrics.rollout_alert(name, channel, alert);
        eprintln!(
            "distd: ALERT rollout of {name}/{channel} stage {} ({alert}): {}",
            stage.stage + 1,
            look.record
                .as_ref()
                .map(|r| r
                    .reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>())
                .unwrap_or_default()
                .join("; ")
        );
    }
    let done = match (&judge.brake, judge.settings.dry_run) {
        (Some(brake), false) if look.act != Act::Nothing => {
            match act(daemon, brake, stage, &look.act).await {
                Ok(sequence) => format!("{} (statement {sequence})", look.act.name()),
                Err(e) => format!("failed: {} ({e:#})", look.act.name()),
            }
        }
        _ => look.act.name().to_owned(),
    };
    let Some(record) = look.record else {
        return Ok(());
    };
    daemon
        .metrics
        .rollout_verdict(name, channel, &record.verdict.to_string());
    if matches!(look.act, Act::Halt { .. }) && !judge.settings.dry_run {
        daemon.metrics.rollout_halt(name, channel);
    }
    eprintln!(
        "distd: rollout of {name}/{channel} stage {} look {look_number}: {}{} -> {done}",
        stage.stage + 1,
        record.verdict,
        if judge.settings.dry_run {
            " (dry run)"
        } else {
            ""
        }
    );
    daemon.journal.record_verdict(&VerdictEntry {
        time: now,
        line: name.clone(),
        channel: channel.clone(),
        candidate: stage.candidate.clone(),
        plan: stage.plan.clone(),
        stage: stage.stage + 1,
        sequence: stage.sequence,
        dry_run: judge.settings.dry_run,
        action: done,
        record,
    })
}

/// Signs `act` with the brake identity, one lifecycle change at a time, then reads the
/// rollouts again so outcomes of a new stage are taken at once.
async fn act(daemon: &Daemon, brake: &Signing, stage: &LiveStage, act: &Act) -> Result<u64> {
    let judge_move_of = match act {
        Act::Resign => JudgeMove::Resign,
        Act::Halt { reason } => JudgeMove::Halt {
            reason: reason.clone(),
        },
        Act::Advance => JudgeMove::Advance,
        Act::Nothing => anyhow::bail!("nothing to sign"),
    };
    let line = daemon
        .config
        .line(&stage.line)
        .context("the line is no longer configured")?;
    let sequence = {
        let _one_at_a_time = daemon.lifecycle.lock().await;
        let sequence = judge_move(
            &line.repository,
            &stage.channel,
            stage.sequence,
            judge_move_of,
            brake,
            &daemon.registry,
        )
        .await?;
        daemon.changed();
        sequence
    };
    read_rollouts(daemon).await?;
    Ok(sequence)
}

#[cfg(test)]
mod tests;
