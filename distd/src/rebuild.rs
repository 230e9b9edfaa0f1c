//! `distd rebuild`: the independent rebuilder. It pulls the release through the verification
//! core (signed by the builder it names), reads the inputs each platform records in
//! `TOOLCHAIN.json`, rebuilds every platform from its own copy of them (cross-building those
//! that are not the host's), packages the trees as `publish` does,
//! and co-signs the release with its own SVID only when it arrives at the same index digest.
//! Otherwise it names the first input, or the first file, that differs, and signs nothing.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tcdist_core::Digest;
use tcdist_core::Platform;
use tcdist_oci::reference::{RegistryRef, ReleaseRef};
use tcdist_oci::registry::RegistryArgs;
use tcdist_oci::release::{TOOLCHAIN_METADATA_FILE, ToolchainMetadata, parse_json};
use tcdist_oci::resolve::resolve_index;
use tcdist_oci::source::ReleaseSource;
use tcdist_store::Store;
use tcdist_store::pull::{PullOptions, pull};
use tcdist_store::report::Silent;
use tcdist_store::tree::TreeManifest;
use tcdist_verify::Verifier;
use tcdist_verify::spiffe_id::SpiffeId;
use tcdist_verify::structure::ExtractBudget;

use crate::build::{self, BuildRequest, patches, source};
use crate::package::{PackageSettings, TreeInput, package_in_background};
use crate::publish::{self, Signing, signer_policy};

pub struct RebuildRequest {
    pub reference: RegistryRef,
    /// Who signed the release: its signature is checked before anything is rebuilt.
    pub builder: SpiffeId,
    /// The build; each platform's goes into a tree of its own under `work`.
    pub build: BuildRequest,
    pub settings: PackageSettings,
    /// Where the rebuilt release's layers are packaged (the publish layer cache).
    pub cache_dir: PathBuf,
    /// A directory of this rebuild's own: the pulled release's store, the tree.
    pub work: PathBuf,
    /// The rebuilder's signing setup.
    pub signing: Signing,
    pub registry: RegistryArgs,
}

/// Returns the release's index digest once it is co-signed.
pub async fn rebuild(request: RebuildRequest) -> Result<Digest> {
    let reference = ReleaseRef::Registry(request.reference.clone());
    let source = ReleaseSource::open(&reference, &request.registry).await?;
    let (index, _) = resolve_index(&source).await?;
    let platforms: Vec<Platform> = index
        .manifests
        .iter()
        .map(|m| {
            m.platform
                .clone()
                .context("a release manifest has no platform")
        })
        .collect::<Result<_>>()?;

    // The release as the builder signed it, every platform through the same checks a build
    // agent runs.
    let identity = request.signing.signer.identity().await?;
    let builder_policy = signer_policy(
        &request.signing,
        &request.reference.repository,
        &request.builder,
        &identity,
    )?;
    drop(identity);
    let verifier = Verifier::new(builder_policy, ExtractBudget::default());
    let store = Store::open(&request.work.join("store"))?;
    let mut pulled = Vec::new();
    for platform in &platforms {
        let outcome = pull(
            &reference,
            &PullOptions {
                registry: &request.registry,
                mirrors: None,
                platform: platform.clone(),
                jobs: 4,
            },
            &verifier,
            &store,
            &Silent,
        )
        .await
        .with_context(|| format!("the release is not one {} signed", request.builder))?;
        check_inputs(&recorded_inputs(&outcome.entry.root)?, &request.build)?;
        pulled.push(outcome);
    }
    let digest = pulled[0].report.index_digest.clone();

    let mut trees = Vec::new();
    for platform in &platforms {
        eprintln!("distd: rebuilding {digest} for {platform} from its recorded inputs");
        let mut build = request.build.clone();
        build.out = request
            .work
            .join(format!("tree-{}-{}", platform.os, platform.architecture));
        build.target = build::Target::for_platform(platform)?;
        let tree = build.out.clone();
        let started = std::time::Instant::now();
        let outcome = build::build_in_background(build).await?;
        eprintln!(
            "distd: rebuilt {} in {:.0?}",
            outcome.go_version_line,
            started.elapsed()
        );
        trees.push(TreeInput {
            path: tree,
            platform: Some(platform.clone()),
        });
    }
    let rebuilt = package_in_background(
        trees.clone(),
        request.settings.clone(),
        request.cache_dir.clone(),
    )
    .await?
    .index
    .digest;
    if rebuilt != digest {
        bail!(
            "the rebuild is {rebuilt}, not {digest}; not co-signing. {}",
            first_difference(&pulled, &trees)?
        );
    }
    eprintln!("distd: the rebuild has the release's digest {digest}; co-signing");
    publish::sign_existing(&reference, None, &request.signing, &request.registry).await
}

/// The first file in which a rebuilt tree differs from the release's tree of its platform.
fn first_difference(
    pulled: &[tcdist_store::pull::PullOutcome],
    trees: &[TreeInput],
) -> Result<String> {
    for (release, rebuilt) in pulled.iter().zip(trees) {
        let expected = release
            .entry
            .manifest()
            .map_err(|e| anyhow::anyhow!("reading the pulled release's tree manifest: {e}"))?;
        let got = TreeManifest::build(&rebuilt.path)
            .with_context(|| format!("hashing the rebuilt tree {}", rebuilt.path.display()))?;
        if let Some(difference) = got.differences(&expected, 1).into_iter().next() {
            return Ok(format!(
                "First difference ({}): {difference}",
                release.report.platform
            ));
        }
    }
    Ok(
        "Every file is the same, so the packaging differs (compression, level or \
        SOURCE_DATE_EPOCH of the publish)"
            .to_owned(),
    )
}

/// The build inputs the release records.
fn recorded_inputs(root: &std::path::Path) -> Result<ToolchainMetadata> {
    let path = root.join(TOOLCHAIN_METADATA_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_json(TOOLCHAIN_METADATA_FILE, &bytes).map_err(anyhow::Error::msg)
}

/// The rebuilder's own inputs must be the ones the release records; the first that is not is
/// named before anything is built.
fn check_inputs(recorded: &ToolchainMetadata, build: &BuildRequest) -> Result<()> {
    let source_digest = source::source_digest(&build.go_root)?;
    if recorded.source_digest.as_ref() != Some(&source_digest) {
        bail!(
            "the Go source {} is {source_digest}, the release was built from {}; not co-signing",
            build.go_root.display(),
            recorded
                .source_digest
                .as_ref()
                .map_or("an unrecorded source".to_owned(), ToString::to_string)
        );
    }
    let series: Vec<_> = patches::read_series(&build.patches_dir)?
        .into_iter()
        .map(|patch| patch.record)
        .collect();
    if series != recorded.patches {
        let describe = |records: &[tcdist_oci::release::PatchRecord]| {
            records
                .iter()
                .map(|r| format!("{} ({})", r.name, r.digest))
                .collect::<Vec<_>>()
                .join(", ")
        };
        bail!(
            "the patch series {} is [{}], the release was built with [{}]; not co-signing",
            build.patches_dir.display(),
            describe(&series),
            describe(&recorded.patches)
        );
    }
    let goexperiment = &build.config.goexperiment;
    if *goexperiment != recorded.goexperiment {
        bail!(
            "the build config sets GOEXPERIMENT={goexperiment:?}, the release was built with \
             {:?}; not co-signing",
            recorded.goexperiment
        );
    }
    Ok(())
}
