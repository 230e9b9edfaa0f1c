//! `pull`: resolve → verify → (already installed? done) → lock → stage → fetch and extract
//! every layer → seal and rename into the store. Nothing reaches the store unless every
//! verification stage and every layer check passed.

use serde::Serialize;

use crate::fetch::LayerFetch;
use crate::report::Reporter;
use crate::{Entry, EntryRecord, Store};
use tcdist_core::error::Result;
use tcdist_core::platform::Platform;
use tcdist_oci::mirrors::{MirrorConfig, MirrorSkip};
use tcdist_oci::reference::ReleaseRef;
use tcdist_oci::registry::RegistryArgs;
use tcdist_oci::resolve::ResolvedRelease;
use tcdist_oci::source::ReleaseSource;
use tcdist_verify::{VerificationReport, Verified, Verifier};

pub struct PullOptions<'a> {
    pub registry: &'a RegistryArgs,
    /// Mirrors tried before a registry, for manifests by digest and blobs (tags too where a
    /// mirror resolves them).
    pub mirrors: Option<&'a MirrorConfig>,
    pub platform: Platform,
    /// Layers fetched at once.
    pub jobs: usize,
}

#[derive(Debug, Serialize)]
pub struct PullOutcome {
    pub entry: Entry,
    pub report: VerificationReport,
    /// False when the entry was already in the store (no layer was fetched).
    pub downloaded: bool,
    /// Objects a mirror did not serve (or served wrong), each then read from the next host.
    pub mirror_skips: Vec<MirrorSkip>,
}

/// Resolves and verifies a release without fetching its layers.
pub async fn verify_release(
    reference: &ReleaseRef,
    options: &PullOptions<'_>,
    verifier: &Verifier,
    reporter: &dyn Reporter,
) -> Result<(ReleaseSource, Verified<ResolvedRelease>)> {
    reporter.step(&format!("resolving {reference}"));
    let mut source = ReleaseSource::open(reference, options.registry).await?;
    if let (Some(mirrors), ReleaseRef::Registry(at)) = (options.mirrors, reference) {
        source = source.with_mirrors(mirrors.connect(&at.registry, options.registry).await?);
    }
    reporter.step(&format!("verifying {reference}"));
    let verified = verifier
        .verify(&source, &reference.to_string(), &options.platform)
        .await?;
    Ok((source, verified))
}

pub async fn pull(
    reference: &ReleaseRef,
    options: &PullOptions<'_>,
    verifier: &Verifier,
    store: &Store,
    reporter: &dyn Reporter,
) -> Result<PullOutcome> {
    let (source, verified) = verify_release(reference, options, verifier, reporter).await?;
    install(&source, verified, options, verifier, store, reporter).await
}

/// Installs a verified release unless the store has it already; concurrent installs of one
/// entry (in any process) download it once.
pub async fn install(
    source: &ReleaseSource,
    verified: Verified<ResolvedRelease>,
    options: &PullOptions<'_>,
    verifier: &Verifier,
    store: &Store,
    reporter: &dyn Reporter,
) -> Result<PullOutcome> {
    let release = verified.get();
    let report = verified.report().clone();
    let remember = || {
        store.remember(
            &release.reference,
            &report.signature.repository,
            &release.index_digest,
            &release.platform,
        )
    };
    if let Some(entry) = store.lookup(&release.index_digest, &release.platform)? {
        remember()?;
        return Ok(PullOutcome {
            entry,
            report,
            downloaded: false,
            mirror_skips: source.mirror_skips(),
        });
    }
    let lock = store.lock(&release.index_digest, &release.platform).await?;
    // Another pull may have installed it while we waited for the lock.
    if let Some(entry) = store.lookup(&release.index_digest, &release.platform)? {
        remember()?;
        return Ok(PullOutcome {
            entry,
            report,
            downloaded: false,
            mirror_skips: source.mirror_skips(),
        });
    }
    let staging = store.stage(&verified, &lock)?;
    reporter.step(&format!(
        "fetching {} layers of {}",
        release.manifest.layers.len(),
        release.index_digest
    ));
    let manifest = LayerFetch {
        source,
        staging: &staging,
        budget: verifier.budget(),
        reporter,
        jobs: options.jobs,
        retries: options.registry.registry_retries,
    }
    .run(&verified)
    .await?;
    Store::write_record(
        &staging,
        EntryRecord::new(&release.reference, &report),
        &manifest,
    )?;
    reporter.step("installing into the store");
    staging.commit()?;
    remember()?;
    store.mark_used(&release.index_digest, &release.platform);
    let entry = store
        .lookup(&release.index_digest, &release.platform)?
        .expect("a committed entry is in the store");
    drop(lock);
    Ok(PullOutcome {
        entry,
        report,
        downloaded: true,
        mirror_skips: source.mirror_skips(),
    })
}
