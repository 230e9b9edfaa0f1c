//! The lifecycle stage: what a release's name means now. A release signature binds a release
//! to its repository and the tag it was published under; this stage adds what promoters sign
//! afterwards (DESIGN.md's TUF list, for toolchain releases):
//!
//! - a tag that a channel statement speaks for is a **channel**: its newest head must be signed
//!   by a promoter, name this release, be no older than the newest head this store has seen
//!   (`channel-rollback`) and not be expired (`channel-expired`, unless waived);
//! - the repository's **yank list** (newest of: the one this store remembers, the one under the
//!   `tcdist-yanks` tag, those attached to the release, the one the channel head names) must
//!   not list the release (`yanked`; waivable only for a pull by digest).
//!
//! Statements are fetched while the release's signatures are; they are judged after them.

mod memory;

use futures::future::join_all;
use jiff::Timestamp;
use serde::Serialize;

pub use memory::{LifecycleMemory, SeenRollout};

use crate::discover::{self, Candidate, Referrer};
use crate::policy::Policy;
use crate::rollout::MAX_ROLLOUT_STATEMENTS;
use crate::signature::{self, Role, SignatureVerdict};
use crate::spiffe_id::SpiffeId;
use memory::{SeenHead, SeenYankList};
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Rejection, Result};
use tcdist_core::rules::{Rule, SignatureFailure};
use tcdist_oci::attachments::ANNOTATION_BUNDLE_PREDICATE_TYPE;
use tcdist_oci::attachments::lifecycle::{
    ANNOTATION_CHANNEL, ANNOTATION_SEQUENCE, CHANNEL_PREDICATE_TYPE, ChannelStatement,
    YANKS_PREDICATE_TYPE, YANKS_TAG, YankListPredicate, YankListStatement,
};
use tcdist_oci::attachments::rollout::ROLLOUT_PREDICATE_TYPE;
use tcdist_oci::checked::CheckedBytes;
use tcdist_oci::release::{Descriptor, MEDIA_TYPE_MANIFEST};
use tcdist_oci::source::ReleaseSource;

/// At most this many channel statements of one channel are read per release, newest first
/// (every refresh adds one).
const MAX_CHANNEL_STATEMENTS: usize = 8;
/// At most this many yank lists attached to one release are read.
const MAX_YANK_LISTS: usize = 4;

/// Checks a caller may waive; each waiver is reported and audited.
#[derive(Clone, Copy, Debug, Default)]
pub struct Waivers {
    /// Accept a channel head past its expiry.
    pub expired_channel: bool,
    /// Accept a yanked release pulled by digest.
    pub yanked_by_digest: bool,
}

/// The bundle referrers of a release, sorted by what they claim to be (an unsigned
/// annotation: it only decides where each is read; what is inside decides what it is).
pub struct Referrers {
    pub release: Vec<Descriptor>,
    channel: Vec<Descriptor>,
    rollouts: Vec<Descriptor>,
    yank_lists: Vec<Descriptor>,
    /// The tag pulled, when the pull is by tag.
    tag: Option<String>,
}

impl Referrers {
    pub fn sort(listed: Vec<Descriptor>, tag: Option<&str>) -> Self {
        let mut sorted = Referrers {
            release: Vec::new(),
            channel: Vec::new(),
            rollouts: Vec::new(),
            yank_lists: Vec::new(),
            tag: tag.map(str::to_owned),
        };
        for descriptor in listed {
            let annotation = |key: &str| descriptor.annotations.get(key).map(String::as_str);
            match annotation(ANNOTATION_BUNDLE_PREDICATE_TYPE) {
                Some(CHANNEL_PREDICATE_TYPE) => {
                    if tag.is_some() && annotation(ANNOTATION_CHANNEL) == tag {
                        sorted.channel.push(descriptor);
                    }
                }
                Some(ROLLOUT_PREDICATE_TYPE) => {
                    if tag.is_some() && annotation(ANNOTATION_CHANNEL) == tag {
                        sorted.rollouts.push(descriptor);
                    }
                }
                Some(YANKS_PREDICATE_TYPE) => sorted.yank_lists.push(descriptor),
                _ => sorted.release.push(descriptor),
            }
        }
        // Newest first, by the claimed sequence.
        let claimed_sequence = |d: &Descriptor| {
            std::cmp::Reverse(
                d.annotations
                    .get(ANNOTATION_SEQUENCE)
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0),
            )
        };
        sorted.channel.sort_by_key(claimed_sequence);
        sorted.channel.truncate(MAX_CHANNEL_STATEMENTS);
        sorted.rollouts.sort_by_key(claimed_sequence);
        sorted.rollouts.truncate(MAX_ROLLOUT_STATEMENTS);
        sorted.yank_lists.truncate(MAX_YANK_LISTS);
        sorted
    }

    /// The rollout statements of the pulled channel, newest first by their claimed sequence.
    pub fn rollouts(&self) -> &[Descriptor] {
        &self.rollouts
    }

    /// Whether the pulled tag is a channel: then its release signatures need not name it, but
    /// a channel head must be accepted.
    pub fn is_channel(&self) -> bool {
        !self.channel.is_empty()
    }

    /// The tag release signatures must name: the pulled tag, unless it is a channel.
    pub fn tag_to_bind(&self) -> Option<&str> {
        if self.is_channel() {
            None
        } else {
            self.tag.as_deref()
        }
    }
}

/// What the stage found out, before judging it.
pub struct Examined {
    /// The newest acceptable head of the pulled channel, or why none was.
    channel: Option<std::result::Result<ChannelHead, Vec<SignatureFailure>>>,
    /// The newest valid yank list found anywhere, and where.
    yanks: Option<FoundYankList>,
    /// Lifecycle statements that did not verify and were ignored.
    ignored: Vec<SignatureFailure>,
}

struct FoundYankList {
    manifest: Digest,
    list: YankListPredicate,
}

/// The channel head a tag was accepted by.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelHead {
    pub channel: String,
    pub sequence: u64,
    pub issued: Timestamp,
    pub expires: Timestamp,
    pub promoter: SpiffeId,
    pub origin: String,
    #[serde(skip)]
    yanks: Option<tcdist_oci::attachments::lifecycle::YankListRef>,
}

#[cfg(test)]
impl ChannelHead {
    /// A head of `channel` with `sequence`, valid for a day, as if verified.
    pub(crate) fn for_tests(channel: &str, sequence: u64) -> Self {
        ChannelHead {
            channel: channel.into(),
            sequence,
            issued: Timestamp::now(),
            expires: Timestamp::now()
                .checked_add(jiff::SignedDuration::from_hours(24))
                .expect("a day from now"),
            promoter: SpiffeId::parse("spiffe://tcdist.test/distd/promoter").expect("an ID"),
            origin: format!("channel statement {sequence}"),
            yanks: None,
        }
    }
}

/// What the stage accepted, for `--json` and the audit log.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LifecycleVerdict {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelHead>,
    /// The sequence of the newest yank list known for the repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yank_list: Option<u64>,
    /// Checks the caller waived, each with what it would have refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waived: Vec<String>,
    /// Lifecycle statements that did not verify and were ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
    /// The newest yank list known, for the rollout stage (its sequence is `yank_list`).
    #[serde(skip)]
    pub yanks: Option<YankListPredicate>,
}

/// Fetches and verifies the lifecycle statements that concern the release `index` of
/// `repository` (known for registries; for a layout, the one its statements name).
pub async fn examine(
    source: &ReleaseSource,
    index: &Digest,
    policy: &Policy,
    referrers: &Referrers,
) -> Result<Examined> {
    // A registry's repository is known: without promoters in its policy no yank list can
    // count, so none is fetched.
    let yank_lists_count = source.repository().is_none_or(|repository| {
        policy
            .for_repository(repository)
            .is_some_and(|rules| rules.promoters().is_some())
    });
    let yank_lists = async {
        if !yank_lists_count {
            return Vec::new();
        }
        let attached = referrers
            .yank_lists
            .iter()
            .map(|descriptor| yank_list_at(source, policy, descriptor.clone()));
        let (mut found, tagged) =
            tokio::join!(join_all(attached), yank_list_tagged(source, policy));
        found.push(tagged);
        found
    };
    let (channel, yank_lists) =
        tokio::join!(channel_head(source, index, policy, referrers), yank_lists);
    let mut ignored = Vec::new();
    let mut newest: Option<FoundYankList> = None;
    for found in yank_lists {
        match found? {
            Some(Ok(list)) => keep_newest(&mut newest, list),
            Some(Err(failure)) => ignored.push(failure),
            None => {}
        }
    }
    Ok(Examined {
        channel: channel?,
        yanks: newest,
        ignored,
    })
}

fn keep_newest(newest: &mut Option<FoundYankList>, found: FoundYankList) {
    if newest
        .as_ref()
        .is_none_or(|n| n.list.sequence < found.list.sequence)
    {
        *newest = Some(found);
    }
}

/// How a release was asked for.
#[derive(Clone, Copy, Debug)]
pub struct Asked<'a> {
    /// The tag the reference names; `None` for a pull by digest alone.
    pub tag: Option<&'a str>,
    pub waivers: Waivers,
}

/// Judges what [`examine`] found for a release asked for as `asked`, against and into what
/// `memory` remembers of the repository.
pub async fn judge(
    examined: Examined,
    source: &ReleaseSource,
    index: &Digest,
    repository: &str,
    policy: &Policy,
    memory: Option<&LifecycleMemory>,
    asked: Asked<'_>,
) -> Result<LifecycleVerdict> {
    let remembered = match memory {
        Some(memory) => Some(memory.load(repository)?),
        None => None,
    };
    let head = match examined.channel {
        None => None,
        Some(Err(failures)) => return Err(refusal(index, failures)),
        Some(Ok(head)) => Some(head),
    };
    let mut verdict = LifecycleVerdict {
        ignored: examined.ignored.iter().map(ToString::to_string).collect(),
        ..Default::default()
    };
    let known = remembered.as_ref().and_then(|m| m.yanks.as_ref());
    let found =
        newest_yank_list(examined.yanks, head.as_ref(), known, source, policy, index).await?;
    // Remembered before it is judged, so that a refusal is remembered too.
    if let (Some(memory), Some(found)) = (memory, &found) {
        memory.update(repository, |m| {
            if m.yanks
                .as_ref()
                .is_none_or(|seen| seen.list.sequence < found.list.sequence)
            {
                m.yanks = Some(SeenYankList {
                    manifest: found.manifest.clone(),
                    list: found.list.clone(),
                });
            }
        })?;
    }
    let yanks = match (&found, known) {
        (Some(found), Some(seen)) if seen.list.sequence > found.list.sequence => Some(&seen.list),
        (Some(found), _) => Some(&found.list),
        (None, seen) => seen.map(|s| &s.list),
    };
    verdict.yank_list = yanks.map(|list| list.sequence);
    verdict.yanks = yanks.cloned();
    if let Some(list) = yanks {
        check_not_yanked(list, index, asked, &mut verdict)?;
    }
    if let Some(head) = head {
        let seen = remembered
            .as_ref()
            .and_then(|m| m.channels.get(&head.channel));
        check_head(&head, seen, index, asked.waivers, &mut verdict)?;
        if let Some(memory) = memory {
            memory.update(repository, |m| {
                if m.channels
                    .get(&head.channel)
                    .is_none_or(|seen| seen.sequence < head.sequence)
                {
                    m.channels.insert(
                        head.channel.clone(),
                        SeenHead {
                            sequence: head.sequence,
                            release: index.clone(),
                        },
                    );
                }
            })?;
        }
        verdict.channel = Some(head);
    }
    Ok(verdict)
}

fn refusal(index: &Digest, failures: Vec<SignatureFailure>) -> Error {
    Rejection::Signature {
        index: index.clone(),
        failures,
    }
    .into()
}

/// The newest yank list found, or the one the channel head names when it is newer than
/// anything found or `known`: that one must be read, or the release is refused.
async fn newest_yank_list(
    found: Option<FoundYankList>,
    head: Option<&ChannelHead>,
    known: Option<&SeenYankList>,
    source: &ReleaseSource,
    policy: &Policy,
    index: &Digest,
) -> Result<Option<FoundYankList>> {
    let known_sequence = found
        .as_ref()
        .map(|f| f.list.sequence)
        .max(known.map(|k| k.list.sequence))
        .unwrap_or(0);
    let Some(named) = head
        .and_then(|h| h.yanks.clone())
        .filter(|named| named.sequence > known_sequence)
    else {
        return Ok(found);
    };
    let descriptor = Descriptor::new(MEDIA_TYPE_MANIFEST, named.manifest.clone(), 0);
    let why = match yank_list_manifest(source, policy, &descriptor, None).await? {
        Some(Ok(list)) if list.list.sequence >= named.sequence => return Ok(Some(list)),
        Some(Ok(list)) => format!("it is yank list {}", list.list.sequence),
        Some(Err(failure)) => failure.to_string(),
        None => "it is not in the registry".to_owned(),
    };
    Err(refusal(
        index,
        vec![SignatureFailure::new(
            &format!("yank list {} ({})", named.sequence, named.manifest),
            Rule::Yanked,
            format!(
                "the channel head names it, this store knows only up to yank list \
                 {known_sequence}, and it cannot be read ({why}): a release withdrawn since \
                 could be served"
            ),
        )],
    ))
}

/// A release on the yank list is refused, unless it was asked for by digest and the caller
/// waived the check.
fn check_not_yanked(
    list: &YankListPredicate,
    index: &Digest,
    asked: Asked<'_>,
    verdict: &mut LifecycleVerdict,
) -> Result<()> {
    let Some(yank) = list.find(index) else {
        return Ok(());
    };
    let what = format!(
        "{index} was yanked at {} (yank list {}): {}",
        yank.yanked_at, list.sequence, yank.reason
    );
    if asked.tag.is_none() && asked.waivers.yanked_by_digest {
        verdict.waived.push(format!("allow-yanked: {what}"));
        return Ok(());
    }
    Err(refusal(
        index,
        vec![SignatureFailure::new(
            &format!("release {index}"),
            Rule::Yanked,
            what,
        )],
    ))
}

/// A channel head must be no older than the one `seen` (nor another release under the same
/// sequence), and unexpired unless the caller waived it.
fn check_head(
    head: &ChannelHead,
    seen: Option<&SeenHead>,
    index: &Digest,
    waivers: Waivers,
    verdict: &mut LifecycleVerdict,
) -> Result<()> {
    let channel = &head.channel;
    if let Some(seen) = seen
        && (head.sequence < seen.sequence
            || (head.sequence == seen.sequence && seen.release != *index))
    {
        return Err(refusal(
            index,
            vec![SignatureFailure::new(
                &head.origin,
                Rule::ChannelRollback,
                format!(
                    "channel {channel:?} head {} names {index}, but this store has seen head {} \
                     (naming {}): an older head was replayed",
                    head.sequence, seen.sequence, seen.release
                ),
            )],
        ));
    }
    let now = Timestamp::now();
    if now <= head.expires {
        return Ok(());
    }
    let what = format!(
        "channel {channel:?} head {} expired at {} (it is {now})",
        head.sequence, head.expires
    );
    if waivers.expired_channel {
        verdict.waived.push(format!("allow-expired: {what}"));
        return Ok(());
    }
    Err(refusal(
        index,
        vec![SignatureFailure::new(
            &head.origin,
            Rule::ChannelExpired,
            format!("{what}: its promoters have not refreshed it, so it may be frozen"),
        )],
    ))
}

/// The newest acceptable head of the channel that `source` names by tag, and the release
/// the tag serves; `None` when there is no such tag or no statement for it verifies. For
/// promoters, who sign the next head.
pub async fn current_head(
    source: &ReleaseSource,
    policy: &Policy,
) -> Result<Option<(Digest, ChannelHead)>> {
    let tag = source
        .named_tag()
        .ok_or_else(|| Error::usage("a channel is named by a tag, not a digest"))?;
    let document = match source.resolve_top().await {
        Ok(document) => document,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let index = document.digest().clone();
    let referrers = Referrers::sort(discover::list_bundles(source, &index).await?, Some(tag));
    let head = channel_head(source, &index, policy, &referrers).await?;
    Ok(head.and_then(|head| head.ok()).map(|head| (index, head)))
}

/// The repository's yank list under its yank tag, when there is one that verifies, and the
/// digest of its manifest. For promoters, who sign the next one.
pub async fn current_yank_list(
    source: &ReleaseSource,
    policy: &Policy,
) -> Result<Option<(Digest, YankListPredicate)>> {
    Ok(yank_list_tagged(source, policy)
        .await?
        .and_then(|found| found.ok())
        .map(|found| (found.manifest, found.list)))
}

/// The newest channel statement for the pulled tag that meets every rule; `None` when the tag
/// is not a channel.
async fn channel_head(
    source: &ReleaseSource,
    index: &Digest,
    policy: &Policy,
    referrers: &Referrers,
) -> Result<Option<std::result::Result<ChannelHead, Vec<SignatureFailure>>>> {
    let Some(tag) = referrers.tag.as_deref().filter(|_| referrers.is_channel()) else {
        return Ok(None);
    };
    let mut failures = Vec::new();
    let mut best: Option<ChannelHead> = None;
    for descriptor in &referrers.channel {
        let origin = format!("channel statement {}", descriptor.digest);
        let candidate = match read_bundle(source, descriptor, &origin).await? {
            Ok(candidate) => candidate,
            Err(failure) => {
                failures.push(failure);
                continue;
            }
        };
        match channel_statement(&candidate, index, tag, source.repository(), policy).await? {
            Ok(head) => {
                if best.as_ref().is_none_or(|b| b.sequence < head.sequence) {
                    best = Some(head);
                }
                // Read newest first: the first acceptable one is the head, unless an
                // annotation lied about the order, which costs only more reads.
                if descriptor.annotations.get(ANNOTATION_SEQUENCE)
                    == best.as_ref().map(|b| b.sequence.to_string()).as_ref()
                {
                    break;
                }
            }
            Err(failure) => failures.push(failure),
        }
    }
    Ok(Some(best.ok_or(failures)))
}

async fn channel_statement(
    candidate: &Candidate,
    index: &Digest,
    tag: &str,
    expected_repository: Option<&str>,
    policy: &Policy,
) -> Result<std::result::Result<ChannelHead, SignatureFailure>> {
    let fail =
        |rule, reason: String| Ok(Err(SignatureFailure::new(&candidate.origin, rule, reason)));
    let (statement, subject) = match ChannelStatement::parse_statement(&candidate.payload) {
        Ok(parsed) => parsed,
        Err(reason) => return fail(Rule::PayloadSubject, reason),
    };
    let predicate = &statement.predicate;
    let repository = expected_repository.unwrap_or(&predicate.repository);
    let Some(rules) = policy.for_repository(repository) else {
        return Ok(Err(signature::not_covered(repository)));
    };
    let Some(promoters) = rules.promoters() else {
        return fail(
            Rule::PromoterAllowed,
            format!(
                "the policy names no promoters for {repository}, so it accepts no channel \
                 statement"
            ),
        );
    };
    let role = Role {
        identities: promoters,
        rule: Rule::PromoterAllowed,
        name: "promoter",
    };
    let holds = || {
        signature::subject_names(&subject, index, repository)
            .map_err(|(_, reason)| (Rule::ChannelBinding, reason))?;
        if predicate.channel != tag {
            return Err((
                Rule::ChannelBinding,
                format!(
                    "it is a statement for channel {:?}, not {tag:?}",
                    predicate.channel
                ),
            ));
        }
        if predicate.release != *index || predicate.repository != repository {
            return Err((
                Rule::ChannelBinding,
                format!(
                    "it names release {} of {:?}, but tag {tag:?} serves {index} of \
                     {repository:?}",
                    predicate.release, predicate.repository
                ),
            ));
        }
        Ok(())
    };
    let verdict =
        signature::authenticate(candidate, repository, rules, role, policy, holds).await?;
    Ok(
        verdict.map(|SignatureVerdict { signer, origin, .. }| ChannelHead {
            channel: predicate.channel.clone(),
            sequence: predicate.sequence,
            issued: predicate.issued,
            expires: predicate.expires,
            promoter: signer,
            origin,
            yanks: predicate.yanks.clone(),
        }),
    )
}

/// The yank list under the repository's `tcdist-yanks` tag, when there is one.
async fn yank_list_tagged(
    source: &ReleaseSource,
    policy: &Policy,
) -> Result<Option<std::result::Result<FoundYankList, SignatureFailure>>> {
    let Some(document) = source.tagged(YANKS_TAG).await? else {
        return Ok(None);
    };
    let descriptor = Descriptor::new(
        MEDIA_TYPE_MANIFEST,
        document.digest().clone(),
        document.len(),
    );
    yank_list_manifest(source, policy, &descriptor, Some(document)).await
}

async fn yank_list_at(
    source: &ReleaseSource,
    policy: &Policy,
    descriptor: Descriptor,
) -> Result<Option<std::result::Result<FoundYankList, SignatureFailure>>> {
    yank_list_manifest(source, policy, &descriptor, None).await
}

/// Reads and verifies the yank list whose referrer manifest `descriptor` names (fetched unless
/// given); `None` when it is not there.
async fn yank_list_manifest(
    source: &ReleaseSource,
    policy: &Policy,
    descriptor: &Descriptor,
    fetched: Option<CheckedBytes>,
) -> Result<Option<std::result::Result<FoundYankList, SignatureFailure>>> {
    let origin = format!("yank list {}", descriptor.digest);
    let manifest = match fetched {
        Some(bytes) => bytes,
        None => match source.manifest(&origin, &descriptor.digest).await? {
            Some(bytes) => bytes,
            None => return Ok(None),
        },
    };
    let referrer = discover::bundle_in_manifest(source, &manifest, &origin).await?;
    let candidate = match bundle_or_failure(referrer, &origin) {
        Ok(candidate) => candidate,
        Err(failure) => return Ok(Some(Err(failure))),
    };
    let fail = |rule, reason: String| Ok(Some(Err(SignatureFailure::new(&origin, rule, reason))));
    let (statement, subject) = match YankListStatement::parse_statement(&candidate.payload) {
        Ok(parsed) => parsed,
        Err(reason) => return fail(Rule::PayloadSubject, reason),
    };
    let repository = source
        .repository()
        .unwrap_or(&statement.predicate.repository)
        .to_owned();
    let Some(rules) = policy.for_repository(&repository) else {
        return Ok(Some(Err(signature::not_covered(&repository))));
    };
    let Some(promoters) = rules.promoters() else {
        return fail(
            Rule::PromoterAllowed,
            format!("the policy names no promoters for {repository}, so no yank list counts"),
        );
    };
    let role = Role {
        identities: promoters,
        rule: Rule::PromoterAllowed,
        name: "promoter",
    };
    let holds = || {
        if subject.repository != repository || statement.predicate.repository != repository {
            return Err((
                Rule::PayloadSubject,
                format!(
                    "it is the yank list of {:?}, not {repository:?}",
                    statement.predicate.repository
                ),
            ));
        }
        Ok(())
    };
    let verdict =
        signature::authenticate(&candidate, &repository, rules, role, policy, holds).await?;
    Ok(Some(verdict.map(|_| FoundYankList {
        manifest: manifest.digest().clone(),
        list: statement.predicate,
    })))
}

/// The bundle a lifecycle referrer manifest carries (the manifest fetched unless given).
pub(crate) async fn read_bundle(
    source: &ReleaseSource,
    descriptor: &Descriptor,
    origin: &str,
) -> Result<std::result::Result<Candidate, SignatureFailure>> {
    let referrer = discover::bundle_candidate(source, descriptor, origin).await?;
    Ok(bundle_or_failure(referrer, origin))
}

pub(crate) fn bundle_or_failure(
    referrer: Referrer,
    origin: &str,
) -> std::result::Result<Candidate, SignatureFailure> {
    match referrer {
        Referrer::Bundle(Ok(candidate)) => Ok(*candidate),
        Referrer::Bundle(Err(reason)) | Referrer::Unreadable(reason) => {
            Err(SignatureFailure::new(origin, Rule::SignatureFormat, reason))
        }
        Referrer::OtherType(kind) => Err(SignatureFailure::new(
            origin,
            Rule::SignatureFormat,
            format!("it is a {kind:?} artifact, not a Sigstore bundle"),
        )),
    }
}

#[cfg(test)]
mod tests;
