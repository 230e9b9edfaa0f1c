//! `distd publish`: package → push (or write a layout) → verify what was published with the
//! same core `tcverify` uses → print the index digest.

pub mod layout;
pub mod registry;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tcverify::reference::{LayoutRef, ReleaseRef};
use tcverify::registry::{Registry, RegistryArgs};
use tcverify::resolve::resolve;
use tcverify::source::ReleaseSource;
use tcverify::store::extract::ExtractBudget;
use tcverify::verify::Verifier;
use tcverify::{Digest, Platform};

use crate::package::cache::BlobCache;
use crate::package::{PackageSettings, PackagedRelease, TreeInput, package};

pub struct PublishRequest {
    pub trees: Vec<TreeInput>,
    pub reference: Option<ReleaseRef>,
    pub oci_layout: Option<PathBuf>,
    pub settings: PackageSettings,
    pub cache_dir: PathBuf,
    pub registry: RegistryArgs,
}

pub async fn publish(request: PublishRequest) -> Result<Digest> {
    let cache = BlobCache::open(&request.cache_dir)?;
    let release = {
        let trees = request.trees;
        let settings = request.settings.clone();
        let cache_dir = request.cache_dir.clone();
        tokio::task::spawn_blocking(move || {
            package(&trees, &settings, &BlobCache::open(&cache_dir)?)
        })
        .await
        .context("packaging thread failed")??
    };
    eprintln!(
        "distd: packaged {} ({} platform(s))",
        release.index.digest,
        release.images.len()
    );

    let published_at = match (&request.oci_layout, &request.reference) {
        (Some(path), reference) => {
            let tag = match reference {
                Some(ReleaseRef::Registry(r)) => r.tag.clone(),
                Some(ReleaseRef::Layout(l)) => l.tag.clone(),
                None => None,
            };
            layout::write(path, tag.as_deref(), &release, &cache)?;
            eprintln!("distd: wrote OCI layout {}", path.display());
            ReleaseRef::Layout(LayoutRef {
                path: path.clone(),
                tag: None,
                digest: Some(release.index.digest.clone()),
            })
        }
        (None, Some(ReleaseRef::Layout(l))) => {
            layout::write(&l.path, l.tag.as_deref(), &release, &cache)?;
            ReleaseRef::Layout(LayoutRef {
                digest: Some(release.index.digest.clone()),
                ..l.clone()
            })
        }
        (None, Some(ReleaseRef::Registry(reference))) => {
            let registry = Registry::connect(&request.registry, &reference.registry).await?;
            let summary = registry::push(&registry, reference, &release, &cache).await?;
            eprintln!(
                "distd: pushed to {}: {} blob(s) uploaded, {} already present{}",
                reference.registry,
                summary.blobs_uploaded,
                summary.blobs_present,
                if summary.tag_moved {
                    ", tag updated"
                } else {
                    ""
                }
            );
            ReleaseRef::Registry(tcverify::reference::RegistryRef {
                digest: Some(release.index.digest.clone()),
                ..reference.clone()
            })
        }
        (None, None) => bail!("nothing to publish to: give --ref or --oci-layout"),
    };
    self_verify(&published_at, &request.registry, &release).await?;
    Ok(release.index.digest)
}

/// Reads the release back from where it was published and runs the verification core on
/// every platform, so a broken publish is caught before anyone pulls it.
async fn self_verify(
    at: &ReleaseRef,
    registry: &RegistryArgs,
    release: &PackagedRelease,
) -> Result<()> {
    let source = ReleaseSource::open(at, registry).await?;
    let verifier = Verifier::new(ExtractBudget::default());
    for image in &release.images {
        let platform: &Platform = image
            .manifest
            .platform
            .as_ref()
            .expect("packaged manifests have a platform");
        let resolved = resolve(&source, &at.to_string(), platform).await?;
        verifier
            .verify(resolved)
            .with_context(|| format!("the published release does not verify for {platform}"))?;
    }
    eprintln!("distd: verified {} as published", release.index.digest);
    Ok(())
}
