//! Packages toolchain trees in the release format: deterministic layers, a config and a
//! manifest per platform, and one index. Same trees and settings, same digests.

pub mod cache;
pub mod layer;
pub mod metadata;
pub mod split;
pub mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tcverify::Platform;
use tcverify::release::{
    ANNOTATION_DESCRIPTION, ANNOTATION_GO_VERSION, ANNOTATION_LAYER_PART, ANNOTATION_TITLE,
    ANNOTATION_VERSION, Compression, ContainerConfig, Descriptor, ImageConfig, ImageIndex,
    ImageManifest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, RootFs,
    TOOLCHAIN_METADATA_FILE, TOOLCHAIN_ROOT, ToolchainMetadata,
};

use cache::{BlobCache, TreeKey};
use layer::{LayerBlob, LayerSettings};
use tree::EntryKind;

/// Bump when the layer bytes for the same tree would change, so cached layers are not reused.
const FORMAT_VERSION: &str = "tcdist-layers-v1";

#[derive(Clone, Debug)]
pub struct PackageSettings {
    pub layer: LayerSettings,
    pub target_layer_bytes: u64,
}

/// One tree to publish and, optionally, the platform it is for.
pub struct TreeInput {
    pub path: PathBuf,
    pub platform: Option<Platform>,
}

pub struct PackagedImage {
    pub manifest: Descriptor,
    /// The config and layer blobs, in the cache.
    pub blobs: Vec<Descriptor>,
}

pub struct PackagedRelease {
    pub index: Descriptor,
    pub images: Vec<PackagedImage>,
}

impl PackagedRelease {
    /// Every blob (configs, layers) of every image, without duplicates.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        let mut seen = std::collections::HashSet::new();
        self.images
            .iter()
            .flat_map(|i| &i.blobs)
            .filter(|d| seen.insert(d.digest.clone()))
            .collect()
    }
}

pub fn package(
    trees: &[TreeInput],
    settings: &PackageSettings,
    cache: &BlobCache,
) -> Result<PackagedRelease> {
    let mut images = Vec::new();
    let mut metadata_seen: Option<ToolchainMetadata> = None;
    for input in trees {
        let (image, metadata) = package_tree(input, settings, cache)?;
        if images
            .iter()
            .any(|i: &PackagedImage| i.manifest.platform == image.manifest.platform)
        {
            bail!(
                "two trees are for the same platform {:?}",
                image.manifest.platform
            );
        }
        metadata_seen.get_or_insert(metadata);
        images.push(image);
    }
    let metadata = metadata_seen.context("no tree to publish")?;
    images.sort_by(|a, b| a.manifest.platform.cmp(&b.manifest.platform));
    let index = ImageIndex {
        schema_version: 2,
        media_type: MEDIA_TYPE_INDEX.into(),
        manifests: images.iter().map(|i| i.manifest.clone()).collect(),
        annotations: annotations(&metadata, true),
    };
    let index = cache.put_document(MEDIA_TYPE_INDEX, &serde_json::to_vec(&index)?)?;
    Ok(PackagedRelease { index, images })
}

fn package_tree(
    input: &TreeInput,
    settings: &PackageSettings,
    cache: &BlobCache,
) -> Result<(PackagedImage, ToolchainMetadata)> {
    let tree = &input.path;
    if !tree.is_dir() {
        bail!("{} is not a directory", tree.display());
    }
    let (metadata, platform) = metadata::read(tree, input.platform.as_ref())?;
    let mut entries = tree::read_tree(tree)?;
    if let Some(bytes) = &metadata.generated {
        tree::insert_generated(&mut entries, TOOLCHAIN_METADATA_FILE, bytes.clone());
    }
    let layers = build_layers(tree, &entries, settings, cache)?;

    let config = ImageConfig {
        created: None,
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: ContainerConfig {
            env: vec![
                format!(
                    "PATH=/{TOOLCHAIN_ROOT}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                ),
                format!("GOROOT=/{TOOLCHAIN_ROOT}"),
                "GOTOOLCHAIN=local".into(),
            ],
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|(_, l)| l.diff_id.clone()).collect(),
        },
    };
    let config = cache.put_document(MEDIA_TYPE_CONFIG, &serde_json::to_vec(&config)?)?;
    let layer_descriptors: Vec<Descriptor> = layers
        .iter()
        .map(|(name, blob)| Descriptor {
            annotations: BTreeMap::from([(ANNOTATION_LAYER_PART.to_owned(), name.clone())]),
            ..Descriptor::new(
                settings.layer.compression.media_type(),
                blob.digest.clone(),
                blob.size,
            )
        })
        .collect();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST.into(),
        config: config.clone(),
        layers: layer_descriptors.clone(),
        annotations: annotations(&metadata.metadata, false),
    };
    let mut manifest = cache.put_document(MEDIA_TYPE_MANIFEST, &serde_json::to_vec(&manifest)?)?;
    manifest.platform = Some(platform);
    let mut blobs = vec![config];
    blobs.extend(layer_descriptors);
    Ok((PackagedImage { manifest, blobs }, metadata.metadata))
}

fn annotations(metadata: &ToolchainMetadata, with_description: bool) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        (ANNOTATION_TITLE.to_owned(), metadata.name.clone()),
        (ANNOTATION_VERSION.to_owned(), metadata.version.clone()),
        (
            ANNOTATION_GO_VERSION.to_owned(),
            metadata.go_version.clone(),
        ),
    ]);
    if with_description {
        annotations.insert(
            ANNOTATION_DESCRIPTION.to_owned(),
            format!(
                "{} {} ({}) toolchain",
                metadata.name, metadata.version, metadata.go_version
            ),
        );
    }
    annotations
}

/// The tree's layers, from the cache when this tree state was packaged before.
fn build_layers(
    tree: &Path,
    entries: &[tree::TreeEntry],
    settings: &PackageSettings,
    cache: &BlobCache,
) -> Result<Vec<(String, LayerBlob)>> {
    let key = tree_key(entries, settings);
    if let Some(layers) = cache.cached_layers(&key) {
        return Ok(layers);
    }
    let plans = split::plan(entries, settings.target_layer_bytes);
    let layers = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .iter()
            .map(|plan| {
                scope.spawn(move || -> Result<(String, LayerBlob)> {
                    let temp = cache.temp_file()?;
                    let blob = layer::write_layer(tree, &plan.entries, &settings.layer, &temp)
                        .with_context(|| format!("writing layer {}", plan.name))?;
                    cache.adopt(temp, &blob.digest)?;
                    Ok((plan.name.clone(), blob))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("layer threads do not panic"))
            .collect::<Result<Vec<_>>>()
    })?;
    cache.record_layers(&key, &layers)?;
    Ok(layers)
}

fn tree_key(entries: &[tree::TreeEntry], settings: &PackageSettings) -> cache::Digest {
    let mut key = TreeKey::new(&format!(
        "{FORMAT_VERSION} {} {} {} {}",
        settings.layer.compression.media_type(),
        settings.layer.level,
        settings.layer.mtime,
        settings.target_layer_bytes
    ));
    for entry in entries {
        let kind = match &entry.kind {
            EntryKind::Dir => "d".to_owned(),
            EntryKind::File { executable, .. } => format!("f{}", u8::from(*executable)),
            EntryKind::Symlink { target } => format!("l{target}"),
            EntryKind::Generated { bytes } => format!("g{}", tcverify::Digest::of(bytes)),
        };
        key.add(format!("{}\0{kind}\0{:?}", entry.rel, entry.stamp).as_bytes());
    }
    key.finish()
}

impl Default for PackageSettings {
    fn default() -> Self {
        Self {
            layer: LayerSettings {
                compression: Compression::Zstd,
                level: 3,
                mtime: 0,
            },
            target_layer_bytes: split::TARGET_LAYER_BYTES,
        }
    }
}
