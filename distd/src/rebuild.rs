//! `distd rebuild`: the independent rebuilder. It pulls the release through the verification
//! core (signed by the builder it names), reads the inputs the release records in
//! `TOOLCHAIN.json`, rebuilds from its own copy of them, packages the tree as `publish` does,
//! and co-signs the release with its own SVID only when it arrives at the same index digest.
//! Otherwise it names the first input, or the first file, that differs, and signs nothing.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tcverify::Digest;
use tcverify::Platform;
use tcverify::pull::{PullOptions, pull};
use tcverify::reference::{RegistryRef, ReleaseRef};
use tcverify::registry::RegistryArgs;
use tcverify::release::{TOOLCHAIN_METADATA_FILE, ToolchainMetadata, parse_json};
use tcverify::report::Silent;
use tcverify::resolve::resolve_index;
use tcverify::source::ReleaseSource;
use tcverify::spiffe_id::SpiffeId;
use tcverify::store::Store;
use tcverify::store::extract::ExtractBudget;
use tcverify::store::tree::TreeManifest;
use tcverify::verify::Verifier;

use crate::build::{self, BuildRequest, patches, source};
use crate::package::cache::BlobCache;
use crate::package::{PackageSettings, TreeInput, package};
use crate::publish::{self, Signing, signer_policy};

pub struct RebuildRequest {
    pub reference: RegistryRef,
    /// Who signed the release: its signature is checked before anything is rebuilt.
    pub builder: SpiffeId,
    /// The build, into a tree under `work`.
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
    let platform = Platform::host();
    let reference = ReleaseRef::Registry(request.reference.clone());
    let source = ReleaseSource::open(&reference, &request.registry).await?;
    let (index, _) = resolve_index(&source).await?;
    let platforms: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|m| m.platform.as_ref().map(ToString::to_string))
        .collect();
    if platforms != [platform.to_string()] {
        bail!(
            "the release is for {}; this rebuilder builds {platform} only",
            platforms.join(", ")
        );
    }

    // The release as the builder signed it, through the same checks a build agent runs.
    let identity = request.signing.signer.identity().await?;
    let builder_policy = signer_policy(
        &request.signing,
        &request.reference.repository,
        &request.builder,
        &identity,
    )?;
    drop(identity);
    let store = Store::open(&request.work.join("store"))?;
    let pulled = pull(
        &reference,
        &PullOptions {
            registry: &request.registry,
            platform: platform.clone(),
            jobs: 4,
        },
        &Verifier::new(builder_policy, ExtractBudget::default()),
        &store,
        &Silent,
    )
    .await
    .with_context(|| format!("the release is not one {} signed", request.builder))?;
    let digest = pulled.report.index_digest.clone();
    let recorded = recorded_inputs(&pulled.entry.root)?;
    check_inputs(&recorded, &request.build)?;

    eprintln!("distd: rebuilding {digest} from its recorded inputs");
    let build = request.build;
    let tree = build.out.clone();
    let started = std::time::Instant::now();
    let outcome = tokio::task::spawn_blocking(move || build::build(&build))
        .await
        .context("build thread failed")??;
    eprintln!(
        "distd: rebuilt {} in {:.0?}",
        outcome.go_version_line,
        started.elapsed()
    );
    let rebuilt = {
        let trees = vec![TreeInput {
            path: tree.clone(),
            platform: Some(platform),
        }];
        let settings = request.settings.clone();
        let cache_dir = request.cache_dir.clone();
        tokio::task::spawn_blocking(move || {
            package(&trees, &settings, &BlobCache::open(&cache_dir)?)
        })
        .await
        .context("packaging thread failed")??
        .index
        .digest
    };
    if rebuilt != digest {
        let expected = pulled
            .entry
            .manifest()
            .map_err(|e| anyhow::anyhow!("reading the pulled release's tree manifest: {e}"))?;
        let got = TreeManifest::build(&tree)
            .with_context(|| format!("hashing the rebuilt tree {}", tree.display()))?;
        let first = got.differences(&expected, 1);
        bail!(
            "the rebuild is {rebuilt}, not {digest}; not co-signing. {}",
            match first.first() {
                Some(difference) => format!("First difference: {difference}"),
                None => "Every file is the same, so the packaging differs (compression, \
                         level or SOURCE_DATE_EPOCH of the publish)"
                    .to_owned(),
            }
        );
    }
    eprintln!("distd: the rebuild has the release's digest {digest}; co-signing");
    publish::sign_existing(&reference, None, &request.signing, &request.registry).await
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
        let describe = |records: &[tcverify::release::PatchRecord]| {
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
