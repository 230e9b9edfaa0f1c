//! Release lines: what a platform team publishes, declared once. A line names its repository,
//! its Go source (pinned by digest), its patch series and build settings, the platforms it is
//! built for and the channels it feeds. `distd release LINE` builds every platform from this
//! host, publishes them as one signed release tagged with the toolchain's version, and promotes
//! it to the line's channels.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jiff::SignedDuration;
use serde::Deserialize;
use tcdist_core::{Digest, Platform};
use tcdist_oci::reference::{RegistryRef, ReleaseRef, valid_tag};
use tcdist_oci::registry::RegistryArgs;
use tcdist_oci::release::{TOOLCHAIN_METADATA_FILE, ToolchainMetadata, parse_json};

use crate::build::{self, BuildConfig, BuildRequest, source};
use crate::events::{self, Event};
use crate::lifecycle::{self, HeadRequest};
use crate::package::{PackageSettings, TreeInput};
use crate::publish::{self, PublishRequest, Signing};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    line: Vec<RawLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    name: String,
    /// `REGISTRY/REPOSITORY`, no tag: releases are tagged with their toolchain version.
    repository: String,
    go_source: PathBuf,
    go_source_digest: String,
    patches: PathBuf,
    /// `distd build --config`'s KEY=VALUE file (version suffix, GOEXPERIMENT, go.env).
    build_config: Option<PathBuf>,
    platforms: Vec<String>,
    #[serde(default)]
    channels: Vec<String>,
    /// How long the channel heads it signs are valid (default 7 days).
    channel_expires: Option<String>,
    /// Whether the daemon's judge advances a rollout of this line to the plan's next stage
    /// after a pass (default: it waits for `distd ctl rollout advance`).
    #[serde(default)]
    auto_advance: bool,
}

/// One release line, checked.
#[derive(Debug)]
pub struct ReleaseLine {
    pub name: String,
    pub repository: RegistryRef,
    pub go_source: PathBuf,
    pub go_source_digest: Digest,
    pub patches: PathBuf,
    pub build_config: BuildConfig,
    pub platforms: Vec<Platform>,
    pub channels: Vec<String>,
    pub channel_expires: SignedDuration,
    pub auto_advance: bool,
}

/// Reads the release lines of `path` (TOML); relative paths are relative to its directory.
pub fn load(path: &Path) -> Result<Vec<ReleaseLine>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let raw: RawConfig = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid config", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut names = BTreeSet::new();
    raw.line
        .into_iter()
        .map(|line| {
            let name = line.name.clone();
            if !names.insert(name.clone()) {
                bail!("line {name:?} is declared twice");
            }
            check_line(line, base).with_context(|| format!("{}: line {name:?}", path.display()))
        })
        .collect()
}

fn check_line(line: RawLine, base: &Path) -> Result<ReleaseLine> {
    check_name(&line.name)?;
    let repository = match ReleaseRef::parse(&format!("{}:latest", line.repository))? {
        ReleaseRef::Registry(reference) => RegistryRef {
            tag: None,
            ..reference
        },
        ReleaseRef::Layout(_) => bail!("repository must be REGISTRY/REPOSITORY"),
    };
    let go_source_digest = line
        .go_source_digest
        .parse()
        .map_err(|e| anyhow::anyhow!("go_source_digest: {e}"))?;
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let build_config = match line.build_config.map(resolve) {
        Some(file) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            BuildConfig::parse(&text, &file.display().to_string())?
        }
        None => BuildConfig::default(),
    };
    if line.platforms.is_empty() {
        bail!("platforms is empty: name at least one OS/ARCH");
    }
    let mut platforms: Vec<Platform> = Vec::new();
    for text in &line.platforms {
        let platform: Platform = text
            .parse()
            .map_err(|e| anyhow::anyhow!("platforms: {e}"))?;
        // Refused now rather than after the other platforms' builds.
        build::Target::for_platform(&platform)?;
        if platforms.contains(&platform) {
            bail!("platforms: {platform} is listed twice");
        }
        platforms.push(platform);
    }
    for channel in &line.channels {
        if !valid_tag(channel) {
            bail!("channels: {channel:?} is not a valid tag");
        }
    }
    let channel_expires = match line.channel_expires.as_deref() {
        Some(text) => crate::cli::args::parse_duration(text).map_err(anyhow::Error::msg)?,
        None => SignedDuration::from_hours(7 * 24),
    };
    Ok(ReleaseLine {
        name: line.name,
        repository,
        go_source: resolve(line.go_source),
        go_source_digest,
        patches: resolve(line.patches),
        build_config,
        platforms,
        channels: line.channels,
        channel_expires,
        auto_advance: line.auto_advance,
    })
}

/// A line's name is a path segment of the API and of the daemon's state, and a metric label:
/// letters, digits, `.`, `_` and `-`, not beginning with `.`, at most 128 bytes.
fn check_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 128 || name.starts_with('.') || !name.chars().all(allowed) {
        bail!(
            "name {name:?}: use 1 to 128 letters, digits, '.', '_' and '-', not beginning with '.'"
        );
    }
    Ok(())
}

/// Where and with what a line is built, besides the line itself.
pub struct Workshop<'a> {
    pub bootstrap: PathBuf,
    pub cache_dir: PathBuf,
    /// Where the trees are written (one directory per platform).
    pub work: PathBuf,
    pub settings: PackageSettings,
    pub registry: &'a RegistryArgs,
}

/// Builds every platform of `line`, publishes the release signed by `signer`, and promotes it
/// to the line's channels as `promoter`. Returns the release's index digest.
pub async fn release(
    line: &ReleaseLine,
    workshop: &Workshop<'_>,
    signer: Signing,
    promoter: Option<&Signing>,
) -> Result<Digest> {
    let digest = source::source_digest(&line.go_source)?;
    if digest != line.go_source_digest {
        bail!(
            "the Go source {} is {digest}, but line {:?} pins {}; nothing was built",
            line.go_source.display(),
            line.name,
            line.go_source_digest
        );
    }
    if !line.channels.is_empty() && promoter.is_none() {
        bail!(
            "line {:?} feeds channels {}: give the promoter's identity (--promoter-id)",
            line.name,
            line.channels.join(", ")
        );
    }
    // Cross builds first: each one's make.bash also builds the host's toolchain and caches
    // its tree, so the host's build then reuses it instead of running make.bash again.
    let mut order: Vec<&Platform> = line.platforms.iter().collect();
    order.sort_by_key(|platform| **platform == Platform::host());
    for platform in order {
        let out = tree_dir(&workshop.work, platform);
        let request = BuildRequest {
            go_root: line.go_source.clone(),
            out: out.clone(),
            config: line.build_config.clone(),
            patches_dir: line.patches.clone(),
            work_dir: None,
            bootstrap: workshop.bootstrap.clone(),
            target: build::Target::for_platform(platform)?,
            cache_dir: Some(workshop.cache_dir.clone()),
            scratch_dir: workshop.cache_dir.join("build/work"),
            host_out: None,
        };
        let started = std::time::Instant::now();
        let outcome = build::build_in_background(request).await?;
        events::report(Event::build(
            platform.to_string(),
            outcome.cached,
            started.elapsed(),
        ));
        eprintln!(
            "distd: line {:?}: {} {}",
            line.name,
            if outcome.cached { "reused" } else { "built" },
            outcome.go_version_line
        );
    }
    // Published in the line's order of platforms.
    let trees: Vec<TreeInput> = line
        .platforms
        .iter()
        .map(|platform| TreeInput {
            path: tree_dir(&workshop.work, platform),
            platform: Some(platform.clone()),
        })
        .collect();
    let tag = release_tag(&trees[0].path)?;
    let reference = RegistryRef {
        tag: Some(tag),
        ..line.repository.clone()
    };
    let digest = publish::publish(PublishRequest {
        trees,
        reference: Some(ReleaseRef::Registry(reference.clone())),
        oci_layout: None,
        repository: None,
        settings: workshop.settings.clone(),
        cache_dir: workshop.cache_dir.clone(),
        registry: workshop.registry.clone(),
        signing: signer,
    })
    .await?;
    let pinned = RegistryRef {
        digest: Some(digest.clone()),
        ..reference
    };
    if let Some(promoter) = promoter {
        for channel in &line.channels {
            let head = HeadRequest {
                channel,
                expires_in: line.channel_expires,
            };
            lifecycle::promote(&pinned, &head, promoter, workshop.registry).await?;
        }
    }
    Ok(digest)
}

/// Where a platform's tree of a release is written.
fn tree_dir(work: &Path, platform: &Platform) -> PathBuf {
    work.join(format!("tree-{}-{}", platform.os, platform.architecture))
}

/// A release is tagged with its toolchain's version (`1.26.8-tc.1`).
fn release_tag(tree: &Path) -> Result<String> {
    let path = tree.join(TOOLCHAIN_METADATA_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let metadata: ToolchainMetadata =
        parse_json(TOOLCHAIN_METADATA_FILE, &bytes).map_err(anyhow::Error::msg)?;
    if !valid_tag(&metadata.version) {
        bail!("the version {:?} is not a valid tag", metadata.version);
    }
    Ok(metadata.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Vec<ReleaseLine>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("distd.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    const LINE: &str = r#"
[[line]]
name = "go1.26"
repository = "127.0.0.1:5000/toolchains/go"
go_source = "/srv/go"
go_source_digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
patches = "patches"
platforms = ["linux/amd64", "linux/arm64"]
channels = ["stable"]
"#;

    #[test]
    fn a_line_is_read_with_paths_relative_to_the_config() {
        let lines = load_text(LINE).unwrap();
        let line = &lines[0];
        assert_eq!(line.repository.repository, "toolchains/go");
        assert_eq!(line.repository.tag, None);
        assert!(line.patches.is_absolute() && line.patches.ends_with("patches"));
        assert_eq!(line.platforms.len(), 2);
        assert_eq!(line.channel_expires, SignedDuration::from_hours(168));
        assert!(!line.auto_advance);
        let auto = load_text(&format!("{LINE}auto_advance = true\n")).unwrap();
        assert!(auto[0].auto_advance);
    }

    #[test]
    fn the_shipped_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/distd/lines.toml");
        let lines = load(&path).unwrap();
        assert_eq!(lines[0].platforms.len(), 3);
        assert_eq!(lines[0].channels, ["stable"]);
    }

    #[test]
    fn bad_lines_are_refused_with_what_is_wrong() {
        for (change, why) in [
            (
                (
                    "platforms = [\"linux/amd64\", \"linux/arm64\"]",
                    "platforms = []",
                ),
                "platforms is empty",
            ),
            (("\"linux/arm64\"]", "\"linux/amd64\"]"), "listed twice"),
            (
                ("channels = [\"stable\"]", "channels = [\"no good\"]"),
                "not a valid tag",
            ),
            (
                (
                    "go_source_digest = \"sha256:0",
                    "go_source_digest = \"md5:0",
                ),
                "go_source_digest",
            ),
            (
                ("patches = \"patches\"", "patches = \"patches\"\ntypo = 1"),
                "unknown field",
            ),
            (("name = \"go1.26\"", "name = \"../go\""), "letters, digits"),
            (("name = \"go1.26\"", "name = \".hidden\""), "not beginning"),
            (("name = \"go1.26\"", "name = \"\""), "letters, digits"),
        ] {
            let text = LINE.replace(change.0, change.1);
            let err = format!("{:#}", load_text(&text).unwrap_err());
            assert!(err.contains(why), "{why}: {err}");
        }
        let twice = format!("{LINE}{LINE}");
        assert!(format!("{:#}", load_text(&twice).unwrap_err()).contains("declared twice"));
    }
}
