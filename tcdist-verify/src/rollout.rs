//! The rollout stage: which release a channel serves *this host* while a candidate is being
//! rolled out. The channel's tag and head name the current release; a rollout statement
//! attached to it names a candidate, a plan of stages and the current stage. This host gets
//! the candidate only when every one of these holds, else the current release:
//!
//! - the newest rollout statement of the channel verifies, signed by a promoter, or by a
//!   brake that follows a promoter-signed plan by its digest and widens only to the plan's next
//!   stage after the stage's soak (`rollout-brake-plan`, `rollout-brake-widening`: refused);
//! - it is newer than the channel's head (a promotion after it ends the rollout) and no older
//!   than the newest this store has seen (`rollout-rollback`: refused);
//! - it is running and not expired (a halt that a registry undid lapses with it);
//! - the candidate is not yanked;
//! - this host's bucket for the plan's salt is below the stage's share (`cohort`).

mod cohort;

use std::future::Future;
use std::pin::Pin;

use jiff::Timestamp;
use serde::Serialize;

pub use cohort::{bucket, in_candidate_arm};

use crate::discover;
use crate::lifecycle::{self, ChannelHead, LifecycleMemory};
use crate::policy::{IdentityRule, Policy, RepositoryPolicy};
use crate::signature::{self, Role, SignatureVerdict};
use crate::spiffe_id::SpiffeId;
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Rejection, Result};
use tcdist_core::rules::{Rule, SignatureFailure};
use tcdist_oci::attachments::lifecycle::{ANNOTATION_SEQUENCE, YankListPredicate};
use tcdist_oci::attachments::rollout::{
    HINT_CANDIDATE, HINT_SALT, HINT_SHARE, RolloutPredicate, RolloutState, RolloutStatement, Share,
};
use tcdist_oci::release::Descriptor;
use tcdist_oci::source::ReleaseSource;

/// At most this many rollout statements of one channel are read per release, newest first.
pub(crate) const MAX_ROLLOUT_STATEMENTS: usize = 8;

/// Who signed a rollout statement, as the policy sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Authority {
    Promoter,
    Brake,
}

/// A rollout statement whose signature and binding verified (and, for a brake's, its plan
/// and stage), with where it was found.
#[derive(Clone, Debug)]
pub struct AcceptedRollout {
    pub predicate: RolloutPredicate,
    pub signer: SpiffeId,
    pub authority: Authority,
    pub signed_at: Timestamp,
    pub origin: String,
    /// The digest of its referrer manifest: what a brake's later statements name it by.
    pub manifest: Digest,
}

/// What [`examine`] found: the newest statement that verified, and the statements that did not.
#[derive(Default)]
pub struct Examined {
    newest: Option<AcceptedRollout>,
    /// Statements signed by a promoter or brake that broke a rule of rollout authority, with
    /// their sequences: one newer than every accepted statement refuses the channel.
    unauthorized: Vec<(u64, SignatureFailure)>,
    ignored: Vec<SignatureFailure>,
}

impl Examined {
    /// The statements that did not verify and were ignored, for the report.
    pub fn ignored(&self) -> impl Iterator<Item = String> + '_ {
        self.ignored.iter().map(ToString::to_string)
    }

    /// The candidate `host_id` gets unless [`judge`] finds against the newest statement (its
    /// order against the head and the store's memory, a yank): so its verification can start
    /// while the channel's current release is verified. Only the judge decides.
    pub fn provisional_candidate(&self, host_id: Option<&str>) -> Option<&Digest> {
        let newest = self.newest.as_ref()?;
        let predicate = &newest.predicate;
        let running =
            predicate.state == RolloutState::Running && Timestamp::now() <= predicate.expires;
        let refused = self
            .unauthorized
            .iter()
            .any(|(sequence, _)| *sequence > predicate.sequence);
        let salt = hex::decode(&predicate.plan.salt).ok()?;
        (running && !refused && in_candidate_arm(&salt, host_id?, predicate.current_stage().share))
            .then_some(&predicate.plan.candidate)
    }
}

/// The candidate the newest listed rollout statement's hints (its referrer manifest's
/// annotations, unsigned) put `host_id` in the arm of: a pull may start verifying it while the
/// statement is fetched and verified. A registry can make this guess wrong, which costs that
/// pull time, never what it is served: [`judge`] decides on the verified statement alone.
pub fn hinted_candidate(listed: &[Descriptor], host_id: Option<&str>) -> Option<Digest> {
    let hints = &listed.first()?.annotations;
    let candidate = hints.get(HINT_CANDIDATE)?.parse().ok()?;
    let salt = hex::decode(hints.get(HINT_SALT)?).ok()?;
    let share = Share::from_basis_points(hints.get(HINT_SHARE)?.parse().ok()?).ok()?;
    in_candidate_arm(&salt, host_id?, share).then_some(candidate)
}

/// Which release this host gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    Candidate,
    Current,
}

impl std::fmt::Display for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arm::Candidate => "candidate",
            Arm::Current => "current",
        })
    }
}

/// The rollout a channel pull met, and what it decided for this host (for `--json`, the
/// audit log and metrics).
#[derive(Clone, Debug, Serialize)]
pub struct RolloutVerdict {
    pub channel: String,
    pub sequence: u64,
    pub state: RolloutState,
    /// 1-based, of `stages`.
    pub stage: usize,
    pub stages: usize,
    pub share: String,
    pub arm: Arm,
    /// Why this host is in its arm.
    pub reason: String,
    pub current: Digest,
    pub candidate: Digest,
    pub signer: SpiffeId,
    pub authority: Authority,
    pub expires: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// Rollout statements that did not verify and were ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

impl RolloutVerdict {
    /// The release this host is served.
    pub fn release(&self) -> &Digest {
        match self.arm {
            Arm::Candidate => &self.candidate,
            Arm::Current => &self.current,
        }
    }
}

/// Fetches and verifies the rollout statements of channel `tag` attached to `index`, the
/// release the tag serves: `descriptors`, newest first by their (unsigned) sequence annotation.
pub async fn examine(
    source: &ReleaseSource,
    index: &Digest,
    tag: &str,
    policy: &Policy,
    descriptors: &[Descriptor],
) -> Result<Examined> {
    let mut examined = Examined::default();
    for descriptor in descriptors {
        let origin = format!("rollout statement {}", descriptor.digest);
        let read = read_statement(source, &descriptor.digest, &origin, policy).await?;
        let accepted = match read {
            Ok(accepted) => accepted,
            Err(failure) => {
                examined.ignored.push(failure);
                continue;
            }
        };
        if let Err(failure) = bound_to_channel(&accepted, index, tag, source) {
            examined.ignored.push(failure);
            continue;
        }
        let sequence = accepted.predicate.sequence;
        if accepted.authority == Authority::Brake
            && let Err(failure) = check_brake(source, policy, &accepted, 0).await?
        {
            examined.unauthorized.push((sequence, failure));
            continue;
        }
        if examined
            .newest
            .as_ref()
            .is_none_or(|n| n.predicate.sequence < sequence)
        {
            examined.newest = Some(accepted);
        }
        // Read newest first: the first acceptable one is the newest, unless an annotation
        // lied about the order, which costs only more reads.
        if descriptor.annotations.get(ANNOTATION_SEQUENCE) == Some(&sequence.to_string()) {
            break;
        }
    }
    Ok(examined)
}

/// Reads the rollout statement in the referrer manifest `manifest` and authenticates it as
/// signed by a promoter or a brake of the repository. Its binding to a channel and, for a
/// brake's, its authority are checked by the caller.
pub async fn read_statement(
    source: &ReleaseSource,
    manifest: &Digest,
    origin: &str,
    policy: &Policy,
) -> Result<std::result::Result<AcceptedRollout, SignatureFailure>> {
    let fail = |rule, reason: String| Ok(Err(SignatureFailure::new(origin, rule, reason)));
    let Some(bytes) = source.manifest(origin, manifest).await? else {
        return fail(
            Rule::SignatureFormat,
            "it is not in the registry".to_owned(),
        );
    };
    let referrer = discover::bundle_in_manifest(source, &bytes, origin).await?;
    let candidate = match lifecycle::bundle_or_failure(referrer, origin) {
        Ok(candidate) => candidate,
        Err(failure) => return Ok(Err(failure)),
    };
    let (statement, subject) = match RolloutStatement::parse_statement(&candidate.payload) {
        Ok(parsed) => parsed,
        Err(reason) => return fail(Rule::PayloadSubject, reason),
    };
    let predicate = statement.predicate;
    let repository = source
        .repository()
        .unwrap_or(&predicate.repository)
        .to_owned();
    let Some(rules) = policy.for_repository(&repository) else {
        return Ok(Err(signature::not_covered(&repository)));
    };
    let Some(movers) = movers(rules) else {
        return fail(
            Rule::RolloutSignerAllowed,
            format!(
                "the policy names no promoters for {repository}, so it accepts no rollout \
                 statement"
            ),
        );
    };
    let role = Role {
        identities: &movers,
        rule: Rule::RolloutSignerAllowed,
        name: "rollout signer",
    };
    let holds = || {
        signature::subject_names(&subject, &predicate.plan.current, &repository)
            .map_err(|(_, reason)| (Rule::RolloutBinding, reason))?;
        if predicate.repository != repository {
            return Err((
                Rule::RolloutBinding,
                format!(
                    "it is a rollout of {:?}, not {repository:?}",
                    predicate.repository
                ),
            ));
        }
        predicate
            .check()
            .map_err(|reason| (Rule::RolloutBinding, reason))
    };
    let verdict =
        signature::authenticate(&candidate, &repository, rules, role, policy, holds).await?;
    Ok(verdict.map(
        |SignatureVerdict {
             signer,
             signed_at,
             origin,
             ..
         }| {
            let is_promoter = rules
                .promoters()
                .is_some_and(|promoters| promoters.check(&signer).is_ok());
            AcceptedRollout {
                predicate,
                authority: if is_promoter {
                    Authority::Promoter
                } else {
                    Authority::Brake
                },
                signer,
                signed_at,
                origin,
                manifest: bytes.digest().clone(),
            }
        },
    ))
}

/// Promoters and brakes: who may sign a rollout statement at all.
fn movers(rules: &RepositoryPolicy) -> Option<IdentityRule> {
    let promoters = rules.promoters()?.clone();
    Some(match rules.brakes() {
        Some(brakes) => IdentityRule::AnyOf(vec![promoters, brakes.clone()]),
        None => promoters,
    })
}

/// A statement counts for channel `tag` only when it is about the release the tag serves.
fn bound_to_channel(
    accepted: &AcceptedRollout,
    index: &Digest,
    tag: &str,
    source: &ReleaseSource,
) -> std::result::Result<(), SignatureFailure> {
    let predicate = &accepted.predicate;
    let fail = |reason: String| {
        Err(SignatureFailure::new(
            &accepted.origin,
            Rule::RolloutBinding,
            reason,
        ))
    };
    if predicate.channel != tag {
        return fail(format!(
            "it is a rollout on channel {:?}, not {tag:?}",
            predicate.channel
        ));
    }
    if predicate.plan.current != *index {
        return fail(format!(
            "it rolls out from {}, but tag {tag:?} serves {index}",
            predicate.plan.current
        ));
    }
    if let Some(repository) = source.repository()
        && predicate.repository != repository
    {
        return fail(format!(
            "it is a rollout of {:?}, not {repository:?}",
            predicate.repository
        ));
    }
    Ok(())
}

type Checked<'a> =
    Pin<Box<dyn Future<Output = Result<std::result::Result<(), SignatureFailure>>> + Send + 'a>>;

/// A brake may halt or abort a rollout that promoters planned, and move it only along that
/// plan: each of its statements names the promoter-signed statement whose plan it follows and
/// the statement that entered the stage it continues (or the stage before, when it advances,
/// at least that stage's soak after it by their proven signing times). The statements named
/// are checked the same way, at most one plan's stages deep.
fn check_brake<'a>(
    source: &'a ReleaseSource,
    policy: &'a Policy,
    statement: &'a AcceptedRollout,
    depth: usize,
) -> Checked<'a> {
    Box::pin(async move {
        let predicate = &statement.predicate;
        let fail =
            |rule, reason: String| Ok(Err(SignatureFailure::new(&statement.origin, rule, reason)));
        let by = &statement.signer;
        let Some(provenance) = &predicate.provenance else {
            return fail(
                Rule::RolloutBrakePlan,
                format!("brake {by} signed it without naming the promoter-signed plan it follows"),
            );
        };
        let plan_origin = format!("rollout plan statement {}", provenance.plan_statement);
        let plan = match read_statement(source, &provenance.plan_statement, &plan_origin, policy)
            .await?
        {
            Ok(plan) => plan,
            Err(failure) => {
                return fail(
                    Rule::RolloutBrakePlan,
                    format!("brake {by} names a plan statement that does not verify: {failure}"),
                );
            }
        };
        if plan.authority != Authority::Promoter
            || plan.predicate.plan != predicate.plan
            || plan.predicate.channel != predicate.channel
            || plan.predicate.sequence >= predicate.sequence
        {
            return fail(
                Rule::RolloutBrakePlan,
                format!(
                    "brake {by} follows plan {}, but the statement it names ({}, sequence {}, \
                     signed by {} {}) is not an earlier promoter-signed statement of that plan \
                     on channel {:?}",
                    predicate.plan.digest(),
                    plan.predicate.plan.digest(),
                    plan.predicate.sequence,
                    authority_name(plan.authority),
                    plan.signer,
                    predicate.channel
                ),
            );
        }
        match predicate.state {
            RolloutState::Halted | RolloutState::Aborted => return Ok(Ok(())),
            RolloutState::Finished => {
                return fail(
                    Rule::RolloutBrakeWidening,
                    format!(
                        "brake {by} finished the rollout: making the candidate the head takes \
                         a promoter"
                    ),
                );
            }
            RolloutState::Running => {}
        }
        let stage = predicate.current_stage();
        if stage.share.is_whole_channel() {
            return fail(
                Rule::RolloutBrakeWidening,
                format!(
                    "brake {by} widened the rollout to the whole channel: finishing takes a \
                     promoter"
                ),
            );
        }
        let entry_origin = format!("rollout stage statement {}", provenance.stage_statement);
        let entry = match read_statement(source, &provenance.stage_statement, &entry_origin, policy)
            .await?
        {
            Ok(entry) => entry,
            Err(failure) => {
                return fail(
                    Rule::RolloutBrakeWidening,
                    format!("brake {by} names a stage statement that does not verify: {failure}"),
                );
            }
        };
        let entry_predicate = &entry.predicate;
        if entry_predicate.plan != predicate.plan
            || entry_predicate.channel != predicate.channel
            || entry_predicate.sequence >= predicate.sequence
            || entry_predicate.state != RolloutState::Running
        {
            return fail(
                Rule::RolloutBrakeWidening,
                format!(
                    "brake {by} continues from {entry_origin}, which is not an earlier running \
                     statement of the same plan (sequence {}, {})",
                    entry_predicate.sequence, entry_predicate.state
                ),
            );
        }
        if entry.authority == Authority::Brake {
            if depth >= predicate.plan.stages.len() {
                return fail(
                    Rule::RolloutBrakeWidening,
                    format!("brake {by}'s statements go back further than the plan has stages"),
                );
            }
            if let Err(failure) = check_brake(source, policy, &entry, depth + 1).await? {
                return Ok(Err(failure));
            }
        }
        let (from, to) = (entry_predicate.stage, predicate.stage);
        if from == to {
            return Ok(Ok(()));
        }
        if from + 1 != to {
            return fail(
                Rule::RolloutBrakeWidening,
                format!(
                    "brake {by} moved from stage {} to stage {} ({}): a brake advances only to \
                     the plan's next stage",
                    from + 1,
                    to + 1,
                    stage.share
                ),
            );
        }
        let soak = predicate.plan.stages[from].soak();
        let soaked = statement.signed_at.duration_since(entry.signed_at);
        if soaked < soak {
            return fail(
                Rule::RolloutBrakeWidening,
                format!(
                    "brake {by} advanced to stage {} ({}) {:#} after stage {} began, before its \
                     soak time of {soak:#}",
                    to + 1,
                    stage.share,
                    jiff::SignedDuration::from_secs(soaked.as_secs()),
                    from + 1
                ),
            );
        }
        Ok(Ok(()))
    })
}

fn authority_name(authority: Authority) -> &'static str {
    match authority {
        Authority::Promoter => "promoter",
        Authority::Brake => "brake",
    }
}

/// What a channel pull needs to decide its arm.
#[derive(Clone, Copy)]
pub struct Judged<'a> {
    pub repository: &'a str,
    pub channel: &'a str,
    /// The head the channel's tag was accepted by.
    pub head: Option<&'a ChannelHead>,
    /// The newest yank list known for the repository.
    pub yanks: Option<&'a YankListPredicate>,
    pub host_id: Option<&'a str>,
}

/// Decides this host's arm from what [`examine`] found, against and into what `memory`
/// remembers of the channel's rollouts. `None` when the channel has no rollout statement
/// that verifies.
pub fn judge(
    examined: Examined,
    index: &Digest,
    memory: Option<&LifecycleMemory>,
    asked: Judged<'_>,
) -> Result<Option<RolloutVerdict>> {
    let newest_sequence = examined.newest.as_ref().map(|n| n.predicate.sequence);
    if let Some((_, failure)) = examined
        .unauthorized
        .iter()
        .filter(|(sequence, _)| newest_sequence.is_none_or(|newest| *sequence > newest))
        .max_by_key(|(sequence, _)| *sequence)
    {
        return Err(refusal(index, failure.clone()));
    }
    let Some(newest) = examined.newest else {
        return Ok(None);
    };
    let predicate = &newest.predicate;
    let head_sequence = asked.head.map_or(0, |head| head.sequence);
    if let Some(memory) = memory {
        check_not_replayed(memory, asked, &newest, head_sequence, index)?;
    }
    let stage = predicate.current_stage();
    let mut verdict = RolloutVerdict {
        channel: predicate.channel.clone(),
        sequence: predicate.sequence,
        state: predicate.state,
        stage: predicate.stage + 1,
        stages: predicate.plan.stages.len(),
        share: stage.share.to_string(),
        arm: Arm::Current,
        reason: String::new(),
        current: predicate.plan.current.clone(),
        candidate: predicate.plan.candidate.clone(),
        signer: newest.signer.clone(),
        authority: newest.authority,
        expires: predicate.expires,
        host_id: asked.host_id.map(str::to_owned),
        // Statements a brake was not allowed to sign, older than the one accepted, no longer
        // decide anything, but are reported.
        ignored: examined
            .ignored
            .iter()
            .chain(examined.unauthorized.iter().map(|(_, failure)| failure))
            .map(ToString::to_string)
            .collect(),
    };
    let now = Timestamp::now();
    let yank = asked
        .yanks
        .and_then(|list| list.find(&predicate.plan.candidate));
    verdict.reason = if predicate.sequence <= head_sequence {
        format!(
            "rollout statement {} is older than channel head {head_sequence}, which ends it",
            predicate.sequence
        )
    } else if predicate.state != RolloutState::Running {
        format!(
            "the rollout is {}{}",
            predicate.state,
            predicate
                .reason
                .as_deref()
                .map_or(String::new(), |why| format!(": {why}"))
        )
    } else if now > predicate.expires {
        format!(
            "rollout statement {} expired at {}: the channel head alone counts",
            predicate.sequence, predicate.expires
        )
    } else if let Some(yank) = yank {
        format!(
            "the candidate {} is yanked: {}",
            predicate.plan.candidate, yank.reason
        )
    } else if let Some(host) = asked.host_id {
        let salt = hex::decode(&predicate.plan.salt).expect("a checked plan's salt is hex");
        let bucket = bucket(&salt, host);
        let share = stage.share.basis_points();
        if bucket < share {
            verdict.arm = Arm::Candidate;
            format!(
                "host {host} is in bucket {bucket}, below {share} ({})",
                stage.share
            )
        } else {
            format!(
                "host {host} is in bucket {bucket}, not below {share} ({})",
                stage.share
            )
        }
    } else {
        "this host has no host ID, so it is in no candidate arm".to_owned()
    };
    Ok(Some(verdict))
}

/// Refuses a statement older than the newest this store has seen of the channel's rollout
/// (or another statement under the same sequence), unless a head newer than both ended it;
/// remembers a newer one.
fn check_not_replayed(
    memory: &LifecycleMemory,
    asked: Judged<'_>,
    newest: &AcceptedRollout,
    head_sequence: u64,
    index: &Digest,
) -> Result<()> {
    let predicate = &newest.predicate;
    let plan = predicate.plan.digest();
    let seen = memory
        .load(asked.repository)?
        .rollouts
        .remove(asked.channel);
    if let Some(seen) = &seen
        && seen.sequence > head_sequence
        && (seen.sequence > predicate.sequence
            || (seen.sequence == predicate.sequence
                && (seen.plan != plan || seen.state != predicate.state)))
    {
        return Err(refusal(
            index,
            SignatureFailure::new(
                &newest.origin,
                Rule::RolloutRollback,
                format!(
                    "channel {:?} rollout statement {} ({}, stage {}) was shown, but this \
                     store has seen statement {} ({}): an older statement was replayed",
                    asked.channel,
                    predicate.sequence,
                    predicate.state,
                    predicate.stage + 1,
                    seen.sequence,
                    seen.state
                ),
            ),
        ));
    }
    memory.update(asked.repository, |m| {
        if m.rollouts
            .get(asked.channel)
            .is_none_or(|seen| seen.sequence < predicate.sequence)
        {
            m.rollouts.insert(
                asked.channel.to_owned(),
                lifecycle::SeenRollout {
                    sequence: predicate.sequence,
                    plan: plan.clone(),
                    state: predicate.state,
                    expires: predicate.expires,
                },
            );
        }
    })
}

fn refusal(index: &Digest, failure: SignatureFailure) -> Error {
    Rejection::Signature {
        index: index.clone(),
        failures: vec![failure],
    }
    .into()
}

/// The newest rollout statement of channel `tag` that verifies, attached to `index`: for
/// promoters and the judge, who sign the next one.
pub async fn current(
    source: &ReleaseSource,
    index: &Digest,
    tag: &str,
    policy: &Policy,
) -> Result<Option<AcceptedRollout>> {
    let listed = discover::list_bundles(source, index).await?;
    let referrers = lifecycle::Referrers::sort(listed, Some(tag));
    Ok(examine(source, index, tag, policy, referrers.rollouts())
        .await?
        .newest)
}

#[cfg(test)]
mod tests;
