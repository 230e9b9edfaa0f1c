//! `distd publish`: package → push the content (or write a layout) → sign and attach the
//! signatures → move the tag → verify what was published with the same core `tcverify` uses
//! → print the index digest. `distd sign` runs the signing steps on a release already pushed.

pub mod attach;
pub mod layout;
pub mod registry;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tcdist_core::{Digest, Platform};
use tcdist_oci::reference::{LayoutRef, RegistryRef, ReleaseRef};
use tcdist_oci::registry::{Registry, RegistryArgs};
use tcdist_oci::release::{Descriptor, MEDIA_TYPE_INDEX};
use tcdist_oci::resolve::{parse_index, resolve_index};
use tcdist_oci::source::ReleaseSource;
use tcdist_verify::Verifier;
use tcdist_verify::policy::Policy;
use tcdist_verify::structure::ExtractBudget;

use crate::package::cache::BlobCache;
use crate::package::{PackageSettings, TreeInput, package_in_background};
use crate::sign::svid::SigningIdentity;
use crate::sign::{Signer, Subject};
use attach::Target;

pub struct PublishRequest {
    pub trees: Vec<TreeInput>,
    pub reference: Option<ReleaseRef>,
    pub oci_layout: Option<PathBuf>,
    /// The repository named in the signed statement when publishing only to a layout.
    pub repository: Option<String>,
    pub settings: PackageSettings,
    pub cache_dir: PathBuf,
    pub registry: RegistryArgs,
    pub signing: Signing,
}

/// How releases are signed and how the result is checked before it is announced.
pub struct Signing {
    pub signer: Signer,
    /// The TSA's certificate chain (PEM), so self-verification trusts only that TSA.
    pub tsa_chain: PathBuf,
    /// The transparency log's key and origin, when signatures are logged.
    pub log: Option<LogTrust>,
}

pub struct LogTrust {
    pub public_key: PathBuf,
    pub origin: String,
}

pub async fn publish(request: PublishRequest) -> Result<Digest> {
    let cache = BlobCache::open(&request.cache_dir)?;
    let release = package_in_background(
        request.trees,
        request.settings.clone(),
        request.cache_dir.clone(),
    )
    .await?;
    eprintln!(
        "distd: packaged {} ({} platform(s))",
        release.index.digest,
        release.images.len()
    );
    let index = release.index.clone();

    match (&request.oci_layout, &request.reference) {
        (Some(path), reference) => {
            let tag = match reference {
                Some(ReleaseRef::Registry(r)) => r.tag.clone(),
                Some(ReleaseRef::Layout(l)) => l.tag.clone(),
                None => None,
            };
            let repository = repository_name(reference.as_ref(), request.repository.as_deref())?;
            layout::write(path, tag.as_deref(), &release, &cache)?;
            eprintln!("distd: wrote OCI layout {}", path.display());
            let at = LayoutRef {
                path: path.clone(),
                tag: None,
                digest: Some(index.digest.clone()),
            };
            sign_layout(
                &request.signing,
                at,
                &repository,
                tag.as_deref(),
                &index,
                &request.registry,
            )
            .await?;
        }
        (None, Some(ReleaseRef::Layout(l))) => {
            let repository =
                repository_name(request.reference.as_ref(), request.repository.as_deref())?;
            layout::write(&l.path, l.tag.as_deref(), &release, &cache)?;
            let at = LayoutRef {
                digest: Some(index.digest.clone()),
                ..l.clone()
            };
            sign_layout(
                &request.signing,
                at,
                &repository,
                l.tag.as_deref(),
                &index,
                &request.registry,
            )
            .await?;
        }
        (None, Some(ReleaseRef::Registry(reference))) => {
            let registry = Registry::connect(&request.registry, &reference.registry).await?;
            let summary = registry::push(&registry, reference, &release, &cache).await?;
            eprintln!(
                "distd: pushed to {}: {} blob(s) uploaded, {} already present",
                reference.registry, summary.blobs_uploaded, summary.blobs_present,
            );
            let pinned = RegistryRef {
                digest: Some(index.digest.clone()),
                ..reference.clone()
            };
            sign_in_registry(
                &request.signing,
                &registry,
                &pinned,
                &index,
                &request.registry,
            )
            .await?;
            if registry::move_tag(&registry, reference, &release, &cache).await? {
                eprintln!(
                    "distd: tag {} now names {}",
                    reference.to_oci().whole(),
                    index.digest
                );
            }
        }
        (None, None) => bail!("nothing to publish to: give --ref or --oci-layout"),
    }
    Ok(index.digest)
}

/// `distd sign REF`: signs a release that is already in a registry (or layout), e.g. one
/// copied in from elsewhere; the tag is left as it is.
pub async fn sign_existing(
    reference: &ReleaseRef,
    repository: Option<&str>,
    signing: &Signing,
    registry_args: &RegistryArgs,
) -> Result<Digest> {
    let source = ReleaseSource::open(reference, registry_args).await?;
    let document = source.resolve_top().await?;
    parse_index(&document)?;
    let digest = document.digest().clone();
    let index = Descriptor::new(MEDIA_TYPE_INDEX, digest.clone(), document.len());
    match reference {
        ReleaseRef::Registry(r) => {
            let registry = Registry::connect(registry_args, &r.registry).await?;
            let pinned = RegistryRef {
                digest: Some(digest.clone()),
                ..r.clone()
            };
            sign_in_registry(signing, &registry, &pinned, &index, registry_args).await?;
        }
        ReleaseRef::Layout(l) => {
            let repository = repository_name(Some(reference), repository)?;
            let at = LayoutRef {
                digest: Some(digest.clone()),
                ..l.clone()
            };
            sign_layout(
                signing,
                at,
                &repository,
                l.tag.as_deref(),
                &index,
                registry_args,
            )
            .await?;
        }
    }
    Ok(digest)
}

async fn sign_in_registry(
    signing: &Signing,
    registry: &Registry,
    pinned: &RegistryRef,
    index: &Descriptor,
    registry_args: &RegistryArgs,
) -> Result<()> {
    let subject = Subject {
        index: &index.digest,
        repository: &pinned.repository,
        tag: pinned.tag.as_deref(),
        docker_reference: &format!("{}/{}", pinned.registry, pinned.repository),
    };
    let target = Target::Registry {
        registry,
        reference: pinned,
    };
    // Pinned, and with the tag the statement names: a signature counts only if it names it.
    let at = ReleaseRef::Registry(pinned.clone());
    sign_and_check(signing, &target, &subject, index, &at, registry_args).await
}

async fn sign_layout(
    signing: &Signing,
    at: LayoutRef,
    repository: &str,
    tag: Option<&str>,
    index: &Descriptor,
    registry_args: &RegistryArgs,
) -> Result<()> {
    let subject = Subject {
        index: &index.digest,
        repository,
        tag,
        docker_reference: repository,
    };
    let target = Target::Layout(at.path.clone());
    let at = LayoutRef {
        tag: tag.map(str::to_owned),
        ..at
    };
    sign_and_check(
        signing,
        &target,
        &subject,
        index,
        &ReleaseRef::Layout(at),
        registry_args,
    )
    .await
}

/// Signs unless the release already carries a valid signature by this signer naming the tag
/// of `at` (republishing is a no-op; publishing the same tree under a new tag signs again),
/// attaches the signatures, and verifies the result.
async fn sign_and_check(
    signing: &Signing,
    target: &Target<'_>,
    subject: &Subject<'_>,
    index: &Descriptor,
    at: &ReleaseRef,
    registry_args: &RegistryArgs,
) -> Result<()> {
    let identity = signing.signer.identity().await?;
    let policy = signer_policy(signing, subject.repository, &identity.leaf.id, &identity)?;
    if self_verify(at, registry_args, &policy, false).await.is_ok() {
        eprintln!(
            "distd: {} is already signed by {}; nothing to add",
            index.digest, identity.leaf.id
        );
        return Ok(());
    }
    let signatures = signing.signer.sign(identity, subject).await.context(
        "signing failed, so nothing was announced: no signature is attached and no tag moved",
    )?;
    attach::attach(target, index, &signatures).await?;
    eprintln!(
        "distd: attached signatures by {} (bundle referrer and cosign .sig)",
        signatures.signer
    );
    self_verify(at, registry_args, &policy, true).await
}

/// The policy a release just signed must meet: this repository, `signer`, the trust domain
/// bundle that came with `identity`'s SVID, the configured TSA and log.
pub(crate) fn signer_policy(
    signing: &Signing,
    repository: &str,
    signer: &tcdist_verify::spiffe_id::SpiffeId,
    identity: &SigningIdentity,
) -> Result<Policy> {
    if identity.bundle.is_empty() {
        bail!(
            "no trust bundle came with the SVID, so the signed release cannot be checked before \
             it is announced; pass --svid-bundle with the trust domain's CA certificates"
        );
    }
    Policy::for_signer(
        repository,
        signer,
        identity.bundle.clone(),
        &signing.tsa_chain,
        signing
            .log
            .as_ref()
            .map(|log| (log.public_key.as_path(), log.origin.as_str())),
    )
    .map_err(anyhow::Error::msg)
    .context("building the policy to check the signed release")
}

/// Reads the release back from where it was published and runs the verification core on
/// every platform it has, so a broken publish is caught before anyone pulls it.
async fn self_verify(
    at: &ReleaseRef,
    registry: &RegistryArgs,
    policy: &Policy,
    report: bool,
) -> Result<()> {
    let source = ReleaseSource::open(at, registry).await?;
    let verifier = Verifier::new(policy.clone(), ExtractBudget::default());
    let (index, digest) = resolve_index(&source).await?;
    for descriptor in &index.manifests {
        let platform: &Platform = descriptor
            .platform
            .as_ref()
            .context("a release manifest has no platform")?;
        verifier
            .verify(&source, &at.to_string(), platform)
            .await
            .with_context(|| format!("the published release does not verify for {platform}"))?;
    }
    if report {
        eprintln!("distd: verified {digest} as published");
    }
    Ok(())
}

/// The repository a signature names: the registry reference's, or `--repository` for a
/// release that only goes into an OCI layout.
fn repository_name(reference: Option<&ReleaseRef>, repository: Option<&str>) -> Result<String> {
    match (reference, repository) {
        (_, Some(name)) => Ok(name.to_owned()),
        (Some(ReleaseRef::Registry(r)), None) => Ok(r.repository.clone()),
        _ => bail!(
            "name the repository this release belongs to with --repository (it goes into the \
             signed statement, and the policy of whoever pulls it is chosen by it)"
        ),
    }
}
