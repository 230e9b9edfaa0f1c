//! `distd promote`, `distd refresh`, `distd yank`: the statements promoters sign about
//! releases already published. Each reads the current state through the verification core
//! (the channel's head, the repository's yank list, verified as any promoter of the trust
//! domain signed them), signs the next statement with the promoter's SVID (timestamped and
//! logged like a release signature), attaches it as a referrer of the release, and only then
//! moves a tag; it ends by reading the result back through the same core.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use jiff::{SignedDuration, Timestamp};
use tcdist_core::Digest;
use tcdist_oci::attachments::lifecycle::{
    ANNOTATION_CHANNEL, ANNOTATION_SEQUENCE, CHANNEL_PREDICATE_TYPE, ChannelPredicate,
    ChannelStatement, YANKS_PREDICATE_TYPE, YANKS_TAG, Yank, YankListPredicate, YankListRef,
    YankListStatement,
};
use tcdist_oci::attachments::rollout::RolloutState;
use tcdist_oci::reference::RegistryRef;
use tcdist_oci::registry::{Registry, RegistryArgs};
use tcdist_oci::release::{Descriptor, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use tcdist_oci::resolve::parse_index;
use tcdist_oci::source::ReleaseSource;
use tcdist_verify::lifecycle::{ChannelHead, current_head, current_yank_list};
use tcdist_verify::policy::Policy;
use tcdist_verify::rollout;

use crate::publish::attach::{Target, attach_bundle};
use crate::publish::{Signing, signer_policy};
use crate::sign::svid::SigningIdentity;

/// The registry, the promoter's signing setup, and the policy that reads what promoters of
/// the trust domain signed before.
pub(crate) struct Promoter<'a> {
    pub(crate) registry: std::sync::Arc<Registry>,
    signing: &'a Signing,
    pub(crate) identity: SigningIdentity,
    pub(crate) policy: Policy,
}

impl<'a> Promoter<'a> {
    pub(crate) async fn start(
        reference: &RegistryRef,
        signing: &'a Signing,
        registry_args: &'a RegistryArgs,
    ) -> Result<Self> {
        let registry =
            std::sync::Arc::new(Registry::connect(registry_args, &reference.registry).await?);
        let identity = signing.signer.identity().await?;
        let policy = signer_policy(signing, &reference.repository, &identity.leaf.id, &identity)?;
        Ok(Promoter {
            registry,
            signing,
            identity,
            policy,
        })
    }

    pub(crate) fn source(&self, reference: &RegistryRef) -> ReleaseSource {
        ReleaseSource::through(reference, std::sync::Arc::clone(&self.registry))
    }

    /// The release `reference` pins: its index descriptor and bytes (refusing anything but an
    /// index).
    pub(crate) async fn release(&self, reference: &RegistryRef) -> Result<(Descriptor, Vec<u8>)> {
        if reference.digest.is_none() {
            bail!(
                "name the release by digest (REF@sha256:…): a tag can move while it is being \
                 promoted or yanked"
            );
        }
        let document = self.source(reference).resolve_top().await?;
        parse_index(&document)?;
        let descriptor =
            Descriptor::new(MEDIA_TYPE_INDEX, document.digest().clone(), document.len());
        Ok((descriptor, document.as_bytes().to_vec()))
    }

    /// The repository's current yank list, verified, and its reference for a channel head.
    pub(crate) async fn yank_list(
        &self,
        reference: &RegistryRef,
    ) -> Result<Option<(YankListRef, YankListPredicate)>> {
        let tagged = RegistryRef {
            tag: Some(YANKS_TAG.to_owned()),
            digest: None,
            ..reference.clone()
        };
        Ok(current_yank_list(&self.source(&tagged), &self.policy)
            .await?
            .map(|(manifest, list)| {
                (
                    YankListRef {
                        sequence: list.sequence,
                        manifest,
                    },
                    list,
                )
            }))
    }

    /// Signs `statement` and attaches it to the release `subject`; returns the referrer
    /// manifest's bytes.
    pub(crate) async fn attach(
        &self,
        reference: &RegistryRef,
        subject: &Descriptor,
        statement: Vec<u8>,
        predicate_type: &str,
        annotations: BTreeMap<String, String>,
    ) -> Result<Vec<u8>> {
        let bundle = self
            .signing
            .signer
            .sign_statement(&self.identity, statement)
            .await
            .context("signing failed, so nothing was attached and no tag moved")?;
        let target = Target::Registry {
            registry: &self.registry,
            reference,
        };
        attach_bundle(&target, subject, &bundle, predicate_type, annotations).await
    }
}

/// The current time to the second: statements carry no false precision.
pub(crate) fn now_in_seconds() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid time")
}

/// What a channel head is signed with.
pub struct HeadRequest<'a> {
    pub channel: &'a str,
    pub expires_in: SignedDuration,
}

/// `distd promote REF@DIGEST --channel NAME`: signs the channel's next head naming the
/// release and moves the channel's tag to it. Returns the new head's sequence.
pub async fn promote(
    reference: &RegistryRef,
    head: &HeadRequest<'_>,
    signing: &Signing,
    registry_args: &RegistryArgs,
) -> Result<u64> {
    let promoter = Promoter::start(reference, signing, registry_args).await?;
    let (release, index_bytes) = promoter.release(reference).await?;
    let yanks = promoter.yank_list(reference).await?;
    if let Some(yank) = yanks
        .as_ref()
        .and_then(|(_, list)| list.find(&release.digest))
    {
        bail!(
            "{} is yanked ({}): a yanked release is never promoted",
            release.digest,
            yank.reason
        );
    }
    sign_head(&promoter, reference, &release, &index_bytes, head, yanks).await
}

/// `distd refresh REPO --channel NAME…`: re-signs each channel head that expires within
/// `within`, naming the same release with the next sequence and the current yank list, and
/// re-signs each running rollout after it (a head newer than a rollout ends it), with the
/// rollout's own lifetime.
pub async fn refresh(
    repository: &RegistryRef,
    channels: &[String],
    within: SignedDuration,
    expires_in: SignedDuration,
    signing: &Signing,
    registry_args: &RegistryArgs,
) -> Result<()> {
    let promoter = Promoter::start(repository, signing, registry_args).await?;
    let yanks = promoter.yank_list(repository).await?;
    let now = Timestamp::now();
    for channel in channels {
        let state = crate::rollout::read_channel(&promoter, repository, channel).await?;
        let running = state
            .live_rollout()
            .filter(|r| r.predicate.state == RolloutState::Running)
            .cloned();
        let current = &state.head;
        // Whole seconds are precise enough for people.
        let left = SignedDuration::from_secs(current.expires.duration_since(now).as_secs());
        if left > within {
            eprintln!(
                "distd: channel {channel:?} head {} is valid until {} ({left:#} left): kept",
                current.sequence, current.expires
            );
        } else {
            let pinned = RegistryRef {
                tag: None,
                digest: Some(state.release.clone()),
                ..repository.clone()
            };
            let (release, index_bytes) = promoter.release(&pinned).await?;
            let head = HeadRequest {
                channel,
                expires_in,
            };
            sign_head(
                &promoter,
                &pinned,
                &release,
                &index_bytes,
                &head,
                yanks.clone(),
            )
            .await?;
        }
        if let Some(rollout) = running {
            crate::rollout::resign_running(&promoter, repository, channel, &rollout).await?;
        }
    }
    Ok(())
}

/// The channel's next sequence: one above its newest head and its newest rollout statement,
/// which count in one sequence, so a verifier orders a promotion against a rollout.
pub(crate) async fn next_sequence(promoter: &Promoter<'_>, channel: &RegistryRef) -> Result<u64> {
    let tag = channel
        .tag
        .as_deref()
        .context("a channel is named by its tag")?;
    let source = promoter.source(channel);
    let Some((index, head)) = current_head(&source, &promoter.policy).await? else {
        return Ok(1);
    };
    let rollout = rollout::current(&source, &index, tag, &promoter.policy).await?;
    let newest = rollout.map_or(head.sequence, |r| r.predicate.sequence.max(head.sequence));
    newest.checked_add(1).context("sequence overflow")
}

/// Signs the next head of `head.channel` for `release`, attaches it, moves the channel's tag,
/// and reads the channel back. A rollout on the channel ends: the new head is newer.
pub(crate) async fn sign_head(
    promoter: &Promoter<'_>,
    reference: &RegistryRef,
    release: &Descriptor,
    index_bytes: &[u8],
    head: &HeadRequest<'_>,
    yanks: Option<(YankListRef, YankListPredicate)>,
) -> Result<u64> {
    let channel = head.channel;
    let tagged = RegistryRef {
        tag: Some(channel.to_owned()),
        digest: None,
        ..reference.clone()
    };
    let sequence = next_sequence(promoter, &tagged).await?;
    let issued = now_in_seconds();
    let expires = issued
        .checked_add(head.expires_in)
        .context("--expires is too far in the future")?;
    let statement = ChannelStatement::about(
        &reference.repository,
        &release.digest,
        ChannelPredicate {
            repository: reference.repository.clone(),
            channel: channel.to_owned(),
            sequence,
            release: release.digest.clone(),
            issued,
            expires,
            yanks: yanks.map(|(named, _)| named),
        },
    );
    let annotations = BTreeMap::from([
        (ANNOTATION_CHANNEL.to_owned(), channel.to_owned()),
        (ANNOTATION_SEQUENCE.to_owned(), sequence.to_string()),
    ]);
    promoter
        .attach(
            reference,
            release,
            statement.to_json(),
            CHANNEL_PREDICATE_TYPE,
            annotations,
        )
        .await?;
    Target::Registry {
        registry: &promoter.registry,
        reference,
    }
    .set_tag(channel, index_bytes, MEDIA_TYPE_INDEX)
    .await?;
    match current_head(&promoter.source(&tagged), &promoter.policy).await? {
        Some((index, now)) if index == release.digest && now.sequence == sequence => {}
        other => bail!(
            "channel {channel:?} does not read back as head {sequence} of {} (read: {:?}); \
             check the registry",
            release.digest,
            other.map(|(index, head)| (index, head.sequence))
        ),
    }
    eprintln!(
        "distd: channel {channel:?} head {sequence}: {} until {expires} (signed by {})",
        release.digest, promoter.identity.leaf.id
    );
    Ok(sequence)
}

/// `distd yank REF@DIGEST --reason TEXT`: adds the release to the repository's yank list,
/// signs its next version, attaches it to the release and moves the yank tag to it. Returns
/// the list's new sequence (the current one when the release was yanked already).
pub async fn yank(
    reference: &RegistryRef,
    reason: &str,
    signing: &Signing,
    registry_args: &RegistryArgs,
) -> Result<u64> {
    if reason.trim().is_empty() {
        bail!("give a --reason: it is what every refused pull reports");
    }
    let promoter = Promoter::start(reference, signing, registry_args).await?;
    let (release, _) = promoter.release(reference).await?;
    let current = promoter.yank_list(reference).await?;
    if let Some((named, list)) = &current
        && let Some(yank) = list.find(&release.digest)
    {
        eprintln!(
            "distd: {} is already yanked (yank list {}): {}",
            release.digest, named.sequence, yank.reason
        );
        return Ok(named.sequence);
    }
    let now = now_in_seconds();
    let (sequence, mut yanked) = match current {
        Some((named, list)) => (named.sequence + 1, list.yanked),
        None => (1, Vec::new()),
    };
    yanked.push(Yank {
        release: release.digest.clone(),
        reason: reason.to_owned(),
        yanked_at: now,
    });
    let statement = YankListStatement::about(
        &reference.repository,
        &release.digest,
        YankListPredicate {
            repository: reference.repository.clone(),
            sequence,
            issued: now,
            yanked,
        },
    );
    let manifest = promoter
        .attach(
            reference,
            &release,
            statement.to_json(),
            YANKS_PREDICATE_TYPE,
            BTreeMap::new(),
        )
        .await?;
    Target::Registry {
        registry: &promoter.registry,
        reference,
    }
    .set_tag(YANKS_TAG, &manifest, MEDIA_TYPE_MANIFEST)
    .await?;
    match promoter.yank_list(reference).await? {
        Some((named, list))
            if named.sequence == sequence && list.find(&release.digest).is_some() => {}
        _ => bail!("the yank list does not read back as version {sequence}; check the registry"),
    }
    eprintln!(
        "distd: yanked {} (yank list {sequence}, signed by {})",
        release.digest, promoter.identity.leaf.id
    );
    Ok(sequence)
}

/// What a repository holds, as promoters and tags say: its release tags with their digests,
/// each channel's verified head, and the verified yank list.
pub struct RepositoryState {
    pub releases: Vec<(String, Digest)>,
    pub channels: Vec<ChannelRead>,
    pub yanks: Vec<Yank>,
}

/// A channel as read for the catalog: its verified head, and where its rollout stands.
pub struct ChannelRead {
    pub name: String,
    pub head: Option<(Digest, ChannelHead)>,
    pub rollout: Option<crate::rollout::StatusOfRollout>,
}

/// Concurrent reads of tags while listing a repository.
const TAG_READS: usize = 8;

/// Reads `repository`'s state for the catalog. Tags are pointers and listed as found (a pull
/// verifies what it gets); channel heads and the yank list are verified as `promote` reads
/// them, so a forged head or list fails the read instead of showing.
pub async fn read_state(
    repository: &RegistryRef,
    channels: &[String],
    signing: &Signing,
    registry_args: &RegistryArgs,
) -> Result<RepositoryState> {
    use futures::{StreamExt as _, TryStreamExt as _};
    let promoter = Promoter::start(repository, signing, registry_args).await?;
    let yanks = promoter
        .yank_list(repository)
        .await?
        .map(|(_, list)| list.yanked)
        .unwrap_or_default();
    let mut heads = Vec::new();
    for channel in channels {
        let tagged = RegistryRef {
            tag: Some(channel.clone()),
            digest: None,
            ..repository.clone()
        };
        let source = promoter.source(&tagged);
        let head = current_head(&source, &promoter.policy).await?;
        let rollout = match &head {
            Some((release, head)) => rollout::current(&source, release, channel, &promoter.policy)
                .await?
                .map(|r| crate::rollout::StatusOfRollout::of(&r, head.sequence)),
            None => None,
        };
        heads.push(ChannelRead {
            name: channel.clone(),
            head,
            rollout,
        });
    }
    let names: Vec<String> = promoter
        .registry
        .tags(&repository.with_tag("latest"))
        .await?
        .into_iter()
        .filter(|tag| tag != YANKS_TAG && !channels.contains(tag) && !tag.starts_with("sha256-"))
        .collect();
    let releases = futures::stream::iter(names)
        .map(|tag| {
            let registry = &promoter.registry;
            let reference = repository.with_tag(&tag);
            async move {
                let digest = registry.manifest_digest(&reference).await?;
                Ok::<_, anyhow::Error>(digest.map(|d| (tag, d)))
            }
        })
        .buffered(TAG_READS)
        .try_filter_map(|found| async move { Ok(found) })
        .try_collect()
        .await?;
    Ok(RepositoryState {
        releases,
        channels: heads,
        yanks,
    })
}
