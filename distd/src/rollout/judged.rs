//! What the daemon's judge reads of a channel's rollout, and the moves it signs with its brake
//! identity: re-sign (hold), halt, and advance along the promoter-signed plan. Each move
//! re-reads the channel and is refused when the rollout moved since the judge read it, so a
//! verdict on one stage never acts on another.

use anyhow::{Result, bail};
use jiff::Timestamp;
use tcdist_oci::attachments::rollout::{RolloutPredicate, RolloutState, Stage};
use tcdist_oci::reference::RegistryRef;
use tcdist_oci::registry::RegistryArgs;
use tcdist_verify::rollout::AcceptedRollout;

use super::{
    Move, change_read, live_rollout, read_channel, read_promoted_channel, resign_running,
    running_lifetime, stage_entry,
};
use crate::lifecycle::Promoter;
use crate::publish::Signing;

/// A channel's running rollout: its newest statement and the statement that entered its stage.
pub struct RunningStage {
    /// Running, unexpired and newer than the channel's head.
    pub statement: AcceptedRollout,
    /// The statement that entered the stage (`statement` itself when it did): its proven
    /// signing time starts the stage's soak, and hosts served from its sequence on were
    /// served this stage.
    pub entry: AcceptedRollout,
}

impl RunningStage {
    pub fn predicate(&self) -> &RolloutPredicate {
        &self.statement.predicate
    }

    pub fn stage(&self) -> &Stage {
        self.predicate().current_stage()
    }
}

/// What the judge read of a channel.
#[derive(Default)]
pub struct ChannelRead {
    /// The newest sequence the channel's head and rollout carry: a host served from a later
    /// statement met one this read did not see.
    pub newest_sequence: u64,
    /// Its rollout, if one is running and counts now.
    pub running: Option<RunningStage>,
}

/// What `channel` holds now: its newest sequence and its running rollout.
pub async fn running_stage(
    repository: &RegistryRef,
    channel: &str,
    signing: &Signing,
    registry_args: &RegistryArgs,
) -> Result<ChannelRead> {
    let promoter = Promoter::start(repository, signing, registry_args).await?;
    let Some(state) = read_promoted_channel(&promoter, repository, channel).await? else {
        return Ok(ChannelRead::default());
    };
    let newest_sequence = state
        .rollout
        .as_ref()
        .map_or(0, |r| r.predicate.sequence)
        .max(state.head.sequence);
    let Some(live) = state.live_rollout().filter(|live| {
        live.predicate.state == RolloutState::Running && Timestamp::now() <= live.predicate.expires
    }) else {
        return Ok(ChannelRead {
            newest_sequence,
            running: None,
        });
    };
    let entry = match &live.predicate.provenance {
        Some(named) => stage_entry(&promoter, repository, live, named).await?,
        // A statement without provenance set its plan, and so entered its stage.
        None => live.clone(),
    };
    Ok(ChannelRead {
        newest_sequence,
        running: Some(RunningStage {
            statement: live.clone(),
            entry,
        }),
    })
}

/// What the judge signs after a verdict.
pub enum JudgeMove {
    /// The same plan and stage, a new lifetime: after a verdict of hold or pass.
    Resign,
    /// After a verdict of worse.
    Halt { reason: String },
    /// To the plan's next stage, after a pass on a line that advances by itself.
    Advance,
}

/// Signs `judge_move` on `channel`'s rollout, which the judge read at statement
/// `judged_sequence`. Returns the new statement's sequence.
pub async fn judge_move(
    repository: &RegistryRef,
    channel: &str,
    judged_sequence: u64,
    judge_move: JudgeMove,
    signing: &Signing,
    registry_args: &RegistryArgs,
) -> Result<u64> {
    let promoter = Promoter::start(repository, signing, registry_args).await?;
    let state = read_channel(&promoter, repository, channel).await?;
    let live = live_rollout(&state, channel)?;
    let now = &live.predicate;
    if now.sequence != judged_sequence || now.state != RolloutState::Running {
        bail!(
            "channel {channel:?}'s rollout moved after it was judged at statement \
             {judged_sequence} (now statement {}, {}): the verdict is not acted on",
            now.sequence,
            now.state
        );
    }
    match judge_move {
        JudgeMove::Resign => resign_running(&promoter, repository, channel, live).await,
        JudgeMove::Halt { reason } => {
            let halt = Move::Halt { reason };
            change_read(&promoter, repository, channel, &state, halt, None).await
        }
        JudgeMove::Advance => {
            let advance = Move::Advance { share: None };
            let lifetime = Some(running_lifetime(now));
            change_read(&promoter, repository, channel, &state, advance, lifetime).await
        }
    }
}
