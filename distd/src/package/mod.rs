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
use tcdist_core::Platform;
use tcdist_oci::release::{
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
#[derive(Clone)]
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

/// [`package`] on a blocking thread: compression is CPU work the async runtime must not wait on.
pub async fn package_in_background(
    trees: Vec<TreeInput>,
    settings: PackageSettings,
    cache_dir: std::path::PathBuf,
) -> Result<PackagedRelease> {
    tokio::task::spawn_blocking(move || package(&trees, &settings, &BlobCache::open(&cache_dir)?))
        .await
        .context("packaging thread failed")?
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
            EntryKind::Generated { bytes } => format!("g{}", tcdist_core::Digest::of(bytes)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};
    use tcdist_oci::release::{MEDIA_TYPE_LAYER_ZSTD, parse_json};

    fn small_tree(dir: &Path) {
        for sub in ["bin", "pkg/tool/linux_amd64", "src/fmt", "lib/empty"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("VERSION"), "go1.26.8\n").unwrap();
        std::fs::write(dir.join("bin/go"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.join("bin/go"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(dir.join("src/fmt/print.go"), "package fmt\n".repeat(1000)).unwrap();
        std::os::unix::fs::symlink("../src/fmt", dir.join("lib/fmt-link")).unwrap();
    }

    fn package_fresh(
        tree: &Path,
        settings: &PackageSettings,
    ) -> (PackagedRelease, BlobCache, tempfile::TempDir) {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(cache_dir.path()).unwrap();
        let input = [TreeInput {
            path: tree.to_owned(),
            platform: None,
        }];
        (package(&input, settings, &cache).unwrap(), cache, cache_dir)
    }

    fn document<T: serde::de::DeserializeOwned>(cache: &BlobCache, d: &Descriptor) -> T {
        parse_json(
            "test document",
            &std::fs::read(cache.blob_path(&d.digest)).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn same_tree_twice_gives_the_same_layer_bytes() {
        let tree = tempfile::tempdir().unwrap();
        small_tree(tree.path());
        let (a, cache_a, _keep_a) = package_fresh(tree.path(), &PackageSettings::default());
        let (b, cache_b, _keep_b) = package_fresh(tree.path(), &PackageSettings::default());
        assert_eq!(a.index.digest, b.index.digest);
        for blob in a.blobs() {
            let bytes_a = std::fs::read(cache_a.blob_path(&blob.digest)).unwrap();
            let bytes_b = std::fs::read(cache_b.blob_path(&blob.digest)).unwrap();
            assert_eq!(bytes_a, bytes_b, "blob {}", blob.digest);
        }
    }

    #[test]
    fn other_mtimes_and_permission_bits_give_the_same_digest() {
        let tree = tempfile::tempdir().unwrap();
        small_tree(tree.path());
        let (before, _, _keep) = package_fresh(tree.path(), &PackageSettings::default());
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(981_173_106);
        for file in ["VERSION", "bin/go", "src/fmt/print.go"] {
            std::fs::File::options()
                .write(true)
                .open(tree.path().join(file))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        std::fs::set_permissions(
            tree.path().join("VERSION"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::set_permissions(
            tree.path().join("bin/go"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let (after, _, _keep) = package_fresh(tree.path(), &PackageSettings::default());
        assert_eq!(before.index.digest, after.index.digest);
    }

    #[test]
    fn a_changed_file_changes_the_digest_even_with_a_warm_cache() {
        let tree = tempfile::tempdir().unwrap();
        small_tree(tree.path());
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(cache_dir.path()).unwrap();
        let input = [TreeInput {
            path: tree.path().to_owned(),
            platform: None,
        }];
        let first = package(&input, &PackageSettings::default(), &cache).unwrap();
        std::fs::write(
            tree.path().join("src/fmt/print.go"),
            "package fmt // changed\n",
        )
        .unwrap();
        let second = package(&input, &PackageSettings::default(), &cache).unwrap();
        assert_ne!(first.index.digest, second.index.digest);
    }

    #[test]
    fn manifest_and_config_are_valid_oci_documents() {
        let tree = tempfile::tempdir().unwrap();
        small_tree(tree.path());
        let (release, cache, _keep) = package_fresh(tree.path(), &PackageSettings::default());
        let index: ImageIndex = document(&cache, &release.index);
        assert_eq!(
            (index.schema_version, index.media_type.as_str()),
            (2, MEDIA_TYPE_INDEX)
        );
        assert_eq!(index.manifests.len(), 1);
        assert_eq!(
            index.manifests[0].platform,
            Some(Platform::new("linux", "amd64"))
        );
        assert_eq!(index.annotations[ANNOTATION_GO_VERSION], "go1.26.8");
        let manifest: ImageManifest = document(&cache, &index.manifests[0]);
        assert_eq!(manifest.media_type, MEDIA_TYPE_MANIFEST);
        assert_eq!(manifest.config.media_type, MEDIA_TYPE_CONFIG);
        assert!(
            manifest
                .layers
                .iter()
                .all(|l| l.media_type == MEDIA_TYPE_LAYER_ZSTD)
        );
        // tools, src and rest each get a layer.
        let parts: Vec<&str> = manifest
            .layers
            .iter()
            .map(|l| l.annotations[ANNOTATION_LAYER_PART].as_str())
            .collect();
        assert_eq!(parts, ["tools/1", "src/1", "rest/1"]);
        let config: ImageConfig = document(&cache, &manifest.config);
        assert_eq!(
            (config.os.as_str(), config.architecture.as_str()),
            ("linux", "amd64")
        );
        assert_eq!(config.rootfs.diff_ids.len(), manifest.layers.len());
        assert!(config.config.env.contains(&"GOROOT=/toolchain".to_owned()));
    }

    #[test]
    fn large_groups_split_at_the_target_size() {
        let tree = tempfile::tempdir().unwrap();
        small_tree(tree.path());
        let settings = PackageSettings {
            target_layer_bytes: 4000,
            ..PackageSettings::default()
        };
        for i in 0..5 {
            std::fs::write(
                tree.path().join(format!("src/fmt/f{i}.go")),
                vec![b'x'; 3000],
            )
            .unwrap();
        }
        let (release, cache, _keep) = package_fresh(tree.path(), &settings);
        let manifest: ImageManifest = document(&cache, &release.images[0].manifest);
        let parts: Vec<&str> = manifest
            .layers
            .iter()
            .map(|l| l.annotations[ANNOTATION_LAYER_PART].as_str())
            .collect();
        // f0+f1 | f2+f3 | f4+print.go: a part closes once it reaches the target.
        assert_eq!(parts, ["tools/1", "src/1", "src/2", "src/3", "rest/1"]);
    }

    #[test]
    fn sockets_and_escaping_symlinks_cannot_be_published() {
        let tree = tempfile::tempdir().unwrap();
        small_tree(tree.path());
        let _socket =
            std::os::unix::net::UnixListener::bind(tree.path().join("agent.sock")).unwrap();
        let err = tree::read_tree(tree.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("sockets cannot be part of a release"),
            "{err:#}"
        );

        let tree = tempfile::tempdir().unwrap();
        small_tree(tree.path());
        std::os::unix::fs::symlink("../../etc", tree.path().join("lib/escape")).unwrap();
        let err = tree::read_tree(tree.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("escapes the toolchain root"),
            "{err:#}"
        );
    }
}
