//! `distd rollout start|advance|halt|abort|finish|status`: the statements that move a
//! channel's rollout (see `tcdist_verify::rollout` for what verifiers accept). Each reads the
//! channel through the verification core (its head, and the newest rollout statement attached
//! to the release the head names), signs the next statement in the channel's one sequence,
//! attaches it to that release, and reads the channel back. Statements after a start name the
//! plan's promoter-signed statement and the statement that entered the current stage, so a
//! brake (the daemon's judge) may sign them too; verifiers decide what each signer may do.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use jiff::{SignedDuration, Timestamp};
use ring::rand::SecureRandom as _;
use serde::Serialize;
use tcdist_core::Digest;
use tcdist_oci::attachments::lifecycle::{ANNOTATION_CHANNEL, ANNOTATION_SEQUENCE};
use tcdist_oci::attachments::rollout::{
    HINT_CANDIDATE, HINT_SALT, HINT_SHARE, Provenance, ROLLOUT_PREDICATE_TYPE, RolloutPlan,
    RolloutPredicate, RolloutState, RolloutStatement, Share, Stage,
};
use tcdist_oci::reference::RegistryRef;
use tcdist_oci::registry::RegistryArgs;
use tcdist_verify::lifecycle::{ChannelHead, current_head};
use tcdist_verify::rollout::{self, AcceptedRollout};

use crate::lifecycle::{HeadRequest, Promoter, next_sequence, now_in_seconds, sign_head};
use crate::publish::Signing;

mod judged;
pub use judged::{JudgeMove, RunningStage, judge_move, running_stage};

/// How long a running rollout statement is valid unless `--expires` says otherwise: a few of
/// the judge's intervals, so a dead judge or an undone halt lapses to the current release.
pub const DEFAULT_RUNNING_EXPIRY: SignedDuration = SignedDuration::from_mins(15);
/// How long a halted, aborted or finished statement is valid: it only orders later ones.
pub const DEFAULT_ENDED_EXPIRY: SignedDuration = SignedDuration::from_hours(7 * 24);

/// A channel as the promoter reads it: the release its head names, the head, and the newest
/// rollout statement attached to that release.
pub struct ChannelState {
    pub release: Digest,
    pub head: ChannelHead,
    pub rollout: Option<AcceptedRollout>,
}

impl ChannelState {
    /// The rollout that counts: newer than the head.
    pub fn live_rollout(&self) -> Option<&AcceptedRollout> {
        self.rollout
            .as_ref()
            .filter(|r| r.predicate.sequence > self.head.sequence)
    }
}

fn channel_ref(repository: &RegistryRef, channel: &str) -> RegistryRef {
    RegistryRef {
        tag: Some(channel.to_owned()),
        digest: None,
        ..repository.clone()
    }
}

pub(crate) async fn read_channel(
    promoter: &Promoter<'_>,
    repository: &RegistryRef,
    channel: &str,
) -> Result<ChannelState> {
    read_promoted_channel(promoter, repository, channel)
        .await?
        .with_context(|| {
            format!(
                "channel {channel:?} of {} has no head that verifies: promote a release to it \
                 first",
                repository.repository
            )
        })
}

/// The channel, or `None` when it has no head that verifies (never promoted).
async fn read_promoted_channel(
    promoter: &Promoter<'_>,
    repository: &RegistryRef,
    channel: &str,
) -> Result<Option<ChannelState>> {
    let tagged = channel_ref(repository, channel);
    let source = promoter.source(&tagged);
    let Some((release, head)) = current_head(&source, &promoter.policy).await? else {
        return Ok(None);
    };
    let rollout = rollout::current(&source, &release, channel, &promoter.policy).await?;
    Ok(Some(ChannelState {
        release,
        head,
        rollout,
    }))
}

/// What `distd rollout start` asks for.
pub struct StartRequest<'a> {
    pub channel: &'a str,
    pub stages: Vec<Stage>,
    pub expires_in: SignedDuration,
}

/// `distd rollout start REF@DIGEST --channel NAME`: signs a plan that brings the candidate
/// (the pinned release) to the channel's hosts in `stages`, from the release its head names.
/// Returns the statement's sequence.
pub async fn start(
    candidate: &RegistryRef,
    request: &StartRequest<'_>,
    signing: &Signing,
    registry_args: &RegistryArgs,
) -> Result<u64> {
    let promoter = Promoter::start(candidate, signing, registry_args).await?;
    let (candidate_release, _) = promoter.release(candidate).await?;
    if let Some(yank) = promoter
        .yank_list(candidate)
        .await?
        .and_then(|(_, list)| list.find(&candidate_release.digest).cloned())
    {
        bail!(
            "{} is yanked ({}): a yanked release is never rolled out",
            candidate_release.digest,
            yank.reason
        );
    }
    let state = read_channel(&promoter, candidate, request.channel).await?;
    if let Some(live) = state.live_rollout()
        && live.predicate.state == RolloutState::Running
        && Timestamp::now() <= live.predicate.expires
    {
        bail!(
            "channel {:?} is already rolling out {} (statement {}): abort or finish it first",
            request.channel,
            live.predicate.plan.candidate,
            live.predicate.sequence
        );
    }
    let plan = RolloutPlan {
        current: state.release.clone(),
        candidate: candidate_release.digest.clone(),
        salt: new_salt()?,
        stages: request.stages.clone(),
    };
    plan.check().map_err(anyhow::Error::msg)?;
    let predicate = next_statement(
        &promoter,
        candidate,
        request.channel,
        plan,
        0,
        RolloutState::Running,
        None,
        request.expires_in,
        None,
    )
    .await?;
    publish(&promoter, candidate, &state, predicate).await
}

/// 32 random bytes, hex: a new rollout's hosts are drawn independently of the last one's.
fn new_salt() -> Result<String> {
    let mut salt = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
    Ok(salt.iter().map(|b| format!("{b:02x}")).collect())
}

/// The rollout of `channel` that still counts (newer than its head), or why there is none.
fn live_rollout<'a>(state: &'a ChannelState, channel: &str) -> Result<&'a AcceptedRollout> {
    state.live_rollout().with_context(|| {
        format!(
            "channel {channel:?} has no rollout newer than its head {}: start one first",
            state.head.sequence
        )
    })
}

/// What to do to a running rollout.
pub enum Move {
    /// To the next stage of the plan, or (a promoter only) to `share`: a later stage of the
    /// plan, or a new stage, which makes a new plan with the same salt.
    Advance {
        share: Option<Share>,
    },
    Halt {
        reason: String,
    },
    Abort {
        reason: String,
    },
}

/// `distd rollout advance|halt|abort`: signs the channel's next rollout statement. Returns its
/// sequence.
pub async fn change(
    repository: &RegistryRef,
    channel: &str,
    change: Move,
    expires_in: Option<SignedDuration>,
    signing: &Signing,
    registry_args: &RegistryArgs,
) -> Result<u64> {
    let promoter = Promoter::start(repository, signing, registry_args).await?;
    let state = read_channel(&promoter, repository, channel).await?;
    change_read(&promoter, repository, channel, &state, change, expires_in).await
}

/// [`change`] on the channel as read in `state`.
async fn change_read(
    promoter: &Promoter<'_>,
    repository: &RegistryRef,
    channel: &str,
    state: &ChannelState,
    change: Move,
    expires_in: Option<SignedDuration>,
) -> Result<u64> {
    let live = live_rollout(state, channel)?;
    let predicate = &live.predicate;
    let ended = !matches!(
        predicate.state,
        RolloutState::Running | RolloutState::Halted
    );
    if ended {
        bail!(
            "channel {channel:?}'s rollout of {} is {}: start a new one",
            predicate.plan.candidate,
            predicate.state
        );
    }
    let (plan, stage, new_state, reason) = match change {
        Move::Advance { share } => {
            let (plan, stage) = advanced_plan(predicate, share)?;
            warn_if_unsoaked(promoter, repository, live, stage).await?;
            (plan, stage, RolloutState::Running, None)
        }
        Move::Halt { reason } => (
            predicate.plan.clone(),
            predicate.stage,
            RolloutState::Halted,
            Some(reason),
        ),
        Move::Abort { reason } => (
            predicate.plan.clone(),
            predicate.stage,
            RolloutState::Aborted,
            Some(reason),
        ),
    };
    let provenance = if plan == predicate.plan {
        Some(provenance_after(promoter, repository, live).await?)
    } else {
        None
    };
    let expires_in = expires_in.unwrap_or(match new_state {
        RolloutState::Running => DEFAULT_RUNNING_EXPIRY,
        _ => DEFAULT_ENDED_EXPIRY,
    });
    let next = next_statement(
        promoter, repository, channel, plan, stage, new_state, reason, expires_in, provenance,
    )
    .await?;
    publish(promoter, repository, state, next).await
}

/// The plan and stage an advance leads to. Without a share: the plan's next stage below the
/// whole channel. With one: that stage of the plan, or a new plan with the share as a stage
/// (the same salt, so every host already in stays in).
fn advanced_plan(current: &RolloutPredicate, share: Option<Share>) -> Result<(RolloutPlan, usize)> {
    let stages = &current.plan.stages;
    let Some(share) = share else {
        let next = current.stage + 1;
        return match stages.get(next) {
            Some(stage) if !stage.share.is_whole_channel() => Ok((current.plan.clone(), next)),
            _ => bail!(
                "stage {} ({}) is the plan's last judged stage: `distd rollout finish` makes the \
                 candidate the channel's head",
                current.stage + 1,
                current.current_stage().share
            ),
        };
    };
    if share.is_whole_channel() {
        bail!("the whole channel is `distd rollout finish`");
    }
    if share <= current.current_stage().share {
        bail!(
            "{share} is not wider than stage {} ({}): halt the rollout to narrow it",
            current.stage + 1,
            current.current_stage().share
        );
    }
    if let Some(at) = stages.iter().position(|stage| stage.share == share) {
        return Ok((current.plan.clone(), at));
    }
    let mut plan = current.plan.clone();
    let at = plan
        .stages
        .iter()
        .position(|stage| stage.share > share)
        .unwrap_or(plan.stages.len());
    plan.stages.insert(at, Stage::with_defaults(share));
    plan.check().map_err(anyhow::Error::msg)?;
    Ok((plan, at))
}

/// What a statement continuing `previous`'s plan names: the plan's promoter-signed statement
/// and the statement that entered `previous`'s stage.
async fn provenance_after(
    promoter: &Promoter<'_>,
    repository: &RegistryRef,
    previous: &AcceptedRollout,
) -> Result<Provenance> {
    let Some(named) = &previous.predicate.provenance else {
        // `previous` set the plan, so it also entered its stage.
        return Ok(Provenance {
            plan_statement: previous.manifest.clone(),
            stage_statement: previous.manifest.clone(),
        });
    };
    let entry = stage_entry(promoter, repository, previous, named).await?;
    Ok(Provenance {
        plan_statement: named.plan_statement.clone(),
        stage_statement: entry.manifest,
    })
}

/// The statement that entered `statement`'s stage: the one it names, when that one is in the
/// same stage, else `statement` itself (it advanced).
async fn stage_entry(
    promoter: &Promoter<'_>,
    repository: &RegistryRef,
    statement: &AcceptedRollout,
    named: &Provenance,
) -> Result<AcceptedRollout> {
    let origin = format!("rollout stage statement {}", named.stage_statement);
    let source = promoter.source(repository);
    let entry = rollout::read_statement(&source, &named.stage_statement, &origin, &promoter.policy)
        .await?
        .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    Ok(if entry.predicate.stage == statement.predicate.stage {
        entry
    } else {
        statement.clone()
    })
}

/// Says when an advance comes before the soak of the stage it leaves: verifiers accept it
/// from a promoter, and refuse it from a brake.
async fn warn_if_unsoaked(
    promoter: &Promoter<'_>,
    repository: &RegistryRef,
    live: &AcceptedRollout,
    to: usize,
) -> Result<()> {
    let entry = match &live.predicate.provenance {
        Some(named) => stage_entry(promoter, repository, live, named).await?,
        None => live.clone(),
    };
    let soak = live.predicate.current_stage().soak();
    let soaked = Timestamp::now().duration_since(entry.signed_at);
    if to == live.predicate.stage + 1 && soaked < soak {
        eprintln!(
            "distd: stage {} began {:#} ago, before its soak time of {soak:#}: verifiers accept \
             this advance from a promoter only",
            live.predicate.stage + 1,
            SignedDuration::from_secs(soaked.as_secs())
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn next_statement(
    promoter: &Promoter<'_>,
    repository: &RegistryRef,
    channel: &str,
    plan: RolloutPlan,
    stage: usize,
    state: RolloutState,
    reason: Option<String>,
    expires_in: SignedDuration,
    provenance: Option<Provenance>,
) -> Result<RolloutPredicate> {
    let sequence = next_sequence(promoter, &channel_ref(repository, channel)).await?;
    let issued = now_in_seconds();
    let expires = issued
        .checked_add(expires_in)
        .context("--expires is too far in the future")?;
    let predicate = RolloutPredicate {
        repository: repository.repository.clone(),
        channel: channel.to_owned(),
        sequence,
        plan,
        stage,
        state,
        reason,
        issued,
        expires,
        provenance,
    };
    predicate.check().map_err(anyhow::Error::msg)?;
    Ok(predicate)
}

/// Signs `predicate`, attaches it to the release the channel's head names, and reads the
/// channel back. Returns the statement's sequence.
async fn publish(
    promoter: &Promoter<'_>,
    repository: &RegistryRef,
    state: &ChannelState,
    predicate: RolloutPredicate,
) -> Result<u64> {
    let channel = predicate.channel.clone();
    let sequence = predicate.sequence;
    let pinned = RegistryRef {
        tag: None,
        digest: Some(state.release.clone()),
        ..repository.clone()
    };
    let (release, _) = promoter.release(&pinned).await?;
    let statement = RolloutStatement::about(&repository.repository, &release.digest, predicate);
    let mut annotations = BTreeMap::from([
        (ANNOTATION_CHANNEL.to_owned(), channel.clone()),
        (ANNOTATION_SEQUENCE.to_owned(), sequence.to_string()),
    ]);
    let p = &statement.predicate;
    if p.state == RolloutState::Running {
        annotations.extend([
            (HINT_CANDIDATE.to_owned(), p.plan.candidate.to_string()),
            (HINT_SALT.to_owned(), p.plan.salt.clone()),
            (
                HINT_SHARE.to_owned(),
                p.current_stage().share.basis_points().to_string(),
            ),
        ]);
    }
    promoter
        .attach(
            &pinned,
            &release,
            statement.to_json(),
            ROLLOUT_PREDICATE_TYPE,
            annotations,
        )
        .await?;
    let back = read_channel(promoter, repository, &channel).await?;
    match back.rollout.as_ref() {
        Some(r) if r.predicate.sequence == sequence && back.release == release.digest => {}
        other => bail!(
            "channel {channel:?} does not read back with rollout statement {sequence} (read: \
             {:?}); check the registry",
            other.map(|r| r.predicate.sequence)
        ),
    }
    eprintln!(
        "distd: channel {channel:?} rollout statement {sequence}: {} stage {} of {} ({}) of {} \
         until {} (signed by {})",
        p.state,
        p.stage + 1,
        p.plan.stages.len(),
        p.current_stage().share,
        p.plan.candidate,
        p.expires,
        promoter.identity.leaf.id
    );
    Ok(sequence)
}

/// `distd rollout finish`: signs the rollout's end, then the channel's next head naming the
/// candidate, and moves the channel's tag to it. Returns the head's sequence.
pub async fn finish(
    repository: &RegistryRef,
    channel: &str,
    head_expires_in: SignedDuration,
    signing: &Signing,
    registry_args: &RegistryArgs,
) -> Result<u64> {
    let promoter = Promoter::start(repository, signing, registry_args).await?;
    let state = read_channel(&promoter, repository, channel).await?;
    let live = live_rollout(&state, channel)?;
    if live.predicate.state != RolloutState::Running {
        bail!(
            "channel {channel:?}'s rollout is {}: only a running rollout is finished",
            live.predicate.state
        );
    }
    let candidate = live.predicate.plan.candidate.clone();
    let last = live.predicate.plan.stages.len() - 1;
    let provenance = provenance_after(&promoter, repository, live).await?;
    let ended = next_statement(
        &promoter,
        repository,
        channel,
        live.predicate.plan.clone(),
        last,
        RolloutState::Finished,
        None,
        DEFAULT_ENDED_EXPIRY,
        Some(provenance),
    )
    .await?;
    publish(&promoter, repository, &state, ended).await?;
    let pinned = RegistryRef {
        tag: None,
        digest: Some(candidate),
        ..repository.clone()
    };
    let (release, index_bytes) = promoter.release(&pinned).await?;
    let yanks = promoter.yank_list(repository).await?;
    let head = HeadRequest {
        channel,
        expires_in: head_expires_in,
    };
    sign_head(&promoter, &pinned, &release, &index_bytes, &head, yanks).await
}

/// Re-signs `channel`'s running rollout `previous` (same plan, stage and lifetime, next
/// sequence): after its head is re-signed, which would otherwise end it, and before it expires
/// (the judge after a verdict other than worse; `distd refresh` for a rollout run by hand).
pub(crate) async fn resign_running(
    promoter: &Promoter<'_>,
    repository: &RegistryRef,
    channel: &str,
    previous: &AcceptedRollout,
) -> Result<u64> {
    let predicate = &previous.predicate;
    let provenance = provenance_after(promoter, repository, previous).await?;
    let state = read_channel(promoter, repository, channel).await?;
    let next = next_statement(
        promoter,
        repository,
        channel,
        predicate.plan.clone(),
        predicate.stage,
        RolloutState::Running,
        None,
        running_lifetime(predicate),
        Some(provenance),
    )
    .await?;
    publish(promoter, repository, &state, next).await
}

/// How long a running statement after `predicate` is valid: as long as `predicate` was (at
/// least a minute), so re-signing keeps the lifetime its signer chose.
fn running_lifetime(predicate: &RolloutPredicate) -> SignedDuration {
    let lifetime = predicate.expires.duration_since(predicate.issued);
    SignedDuration::from_secs(lifetime.as_secs().max(60))
}

/// A channel's rollout for `distd rollout status` (and the catalog).
#[derive(Debug, Serialize)]
pub struct RolloutStatus {
    pub channel: String,
    pub head_sequence: u64,
    pub current: Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<StatusOfRollout>,
}

#[derive(Debug, Serialize)]
pub struct StatusOfRollout {
    pub sequence: u64,
    pub state: RolloutState,
    /// Whether it still counts: newer than the head and, when running, not expired.
    pub live: bool,
    pub candidate: Digest,
    pub stage: usize,
    pub stages: Vec<String>,
    pub share: String,
    pub plan: Digest,
    pub issued: Timestamp,
    pub expires: Timestamp,
    pub signer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl StatusOfRollout {
    /// `accepted`'s status on a channel whose head has `head_sequence`.
    pub fn of(accepted: &AcceptedRollout, head_sequence: u64) -> Self {
        let p = &accepted.predicate;
        StatusOfRollout {
            sequence: p.sequence,
            state: p.state,
            live: p.sequence > head_sequence
                && (p.state != RolloutState::Running || Timestamp::now() <= p.expires),
            candidate: p.plan.candidate.clone(),
            stage: p.stage + 1,
            stages: p.plan.stages.iter().map(ToString::to_string).collect(),
            share: p.current_stage().share.to_string(),
            plan: p.plan.digest(),
            issued: p.issued,
            expires: p.expires,
            signer: accepted.signer.to_string(),
            reason: p.reason.clone(),
        }
    }
}

pub async fn status(
    repository: &RegistryRef,
    channel: &str,
    signing: &Signing,
    registry_args: &RegistryArgs,
) -> Result<RolloutStatus> {
    let promoter = Promoter::start(repository, signing, registry_args).await?;
    let state = read_channel(&promoter, repository, channel).await?;
    let rollout = state
        .rollout
        .as_ref()
        .map(|r| StatusOfRollout::of(r, state.head.sequence));
    Ok(RolloutStatus {
        channel: channel.to_owned(),
        head_sequence: state.head.sequence,
        current: state.release,
        rollout,
    })
}

impl std::fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "channel {:?}: head {} serves {}",
            self.channel, self.head_sequence, self.current
        )?;
        let Some(r) = &self.rollout else {
            return writeln!(f, "no rollout");
        };
        writeln!(
            f,
            "rollout statement {}: {}{}, stage {} of {} ({}), candidate {}",
            r.sequence,
            r.state,
            if r.live { "" } else { " (no longer counts)" },
            r.stage,
            r.stages.len(),
            r.share,
            r.candidate
        )?;
        writeln!(f, "plan {}: {}", r.plan, r.stages.join(", "))?;
        if let Some(reason) = &r.reason {
            writeln!(f, "reason: {reason}")?;
        }
        writeln!(
            f,
            "signed by {} at {}, expires {}",
            r.signer, r.issued, r.expires
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcdist_oci::attachments::rollout::parse_stages;

    fn running(stage: usize) -> RolloutPredicate {
        RolloutPredicate {
            repository: "r".into(),
            channel: "stable".into(),
            sequence: 3,
            plan: RolloutPlan {
                current: Digest::of(b"a"),
                candidate: Digest::of(b"b"),
                salt: "00".repeat(32),
                stages: parse_stages("5%,25%,100%").unwrap(),
            },
            stage,
            state: RolloutState::Running,
            reason: None,
            issued: Timestamp::now(),
            expires: Timestamp::now(),
            provenance: None,
        }
    }

    #[test]
    fn advance_goes_to_the_next_judged_stage_and_no_further() {
        let (plan, stage) = advanced_plan(&running(0), None).unwrap();
        assert_eq!((plan, stage), (running(0).plan, 1));
        let err = advanced_plan(&running(1), None).unwrap_err().to_string();
        assert!(err.contains("distd rollout finish"), "{err}");
    }

    #[test]
    fn advance_to_a_share_outside_the_plan_makes_a_new_plan_with_the_same_salt() {
        let (plan, stage) = advanced_plan(&running(0), Some("10%".parse().unwrap())).unwrap();
        assert_eq!(stage, 1);
        assert_eq!(plan.salt, running(0).plan.salt);
        assert_eq!(
            plan.stages
                .iter()
                .map(|s| s.share.to_string())
                .collect::<Vec<_>>(),
            ["5%", "10%", "25%", "100%"]
        );
        let (same, at) = advanced_plan(&running(0), Some("25%".parse().unwrap())).unwrap();
        assert_eq!((same, at), (running(0).plan, 1));
    }

    #[test]
    fn advance_rejected_if_it_narrows_or_takes_the_whole_channel() {
        assert!(advanced_plan(&running(1), Some("5%".parse().unwrap())).is_err());
        assert!(advanced_plan(&running(0), Some("100%".parse().unwrap())).is_err());
    }
}
