//! `TOOLCHAIN.json` and the platform of a tree: read from the tree when present, otherwise
//! derived from it (`VERSION`, `go.env`, `pkg/tool/<os>_<arch>`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use tcdist_core::Platform;
use tcdist_oci::release::{TOOLCHAIN_METADATA_FILE, ToolchainMetadata};

pub struct TreeMetadata {
    pub metadata: ToolchainMetadata,
    /// Set when `TOOLCHAIN.json` is not in the tree and must be added to the layers.
    pub generated: Option<Vec<u8>>,
}

pub fn read(tree: &Path, platform: Option<&Platform>) -> Result<(TreeMetadata, Platform)> {
    let path = tree.join(TOOLCHAIN_METADATA_FILE);
    let from_file = match std::fs::read(&path) {
        Ok(bytes) => Some(
            serde_json::from_slice::<ToolchainMetadata>(&bytes)
                .with_context(|| format!("{} is not valid", path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let platform = match (platform, &from_file) {
        (Some(p), _) => p.clone(),
        (None, Some(m)) => Platform::new(&m.goos, &m.goarch),
        (None, None) => detect_platform(tree)?,
    };
    if let Some(metadata) = from_file {
        if (metadata.goos.as_str(), metadata.goarch.as_str())
            != (platform.os.as_str(), platform.architecture.as_str())
        {
            bail!(
                "{} says {}/{}, but the tree is published as {platform}",
                path.display(),
                metadata.goos,
                metadata.goarch
            );
        }
        return Ok((
            TreeMetadata {
                metadata,
                generated: None,
            },
            platform,
        ));
    }
    let go_version = read_go_version(tree)?;
    let metadata = ToolchainMetadata {
        name: "go".into(),
        version: go_version.trim_start_matches("go").to_owned(),
        go_version,
        goos: platform.os.clone(),
        goarch: platform.architecture.clone(),
        patches: Vec::new(),
        source_digest: None,
        goexperiment: String::new(),
        go_env: read_go_env(tree)?,
    };
    let mut bytes = serde_json::to_vec_pretty(&metadata)?;
    bytes.push(b'\n');
    Ok((
        TreeMetadata {
            metadata,
            generated: Some(bytes),
        },
        platform,
    ))
}

/// The first line of `VERSION` (e.g. `go1.26.8`).
fn read_go_version(tree: &Path) -> Result<String> {
    let path = tree.join("VERSION");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} is missing: is this a Go root?", path.display()))?;
    match text.lines().next() {
        Some(line) if line.starts_with("go") => Ok(line.trim().to_owned()),
        _ => bail!("{} does not start with a Go version", path.display()),
    }
}

fn read_go_env(tree: &Path) -> Result<BTreeMap<String, String>> {
    let path = tree.join("go.env");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// The single `pkg/tool/<os>_<arch>` directory of a Go root.
fn detect_platform(tree: &Path) -> Result<Platform> {
    let tools = tree.join("pkg/tool");
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir(&tools) {
        for entry in dir.flatten() {
            if let Some((os, arch)) = entry.file_name().to_str().and_then(|n| n.split_once('_')) {
                found.push(Platform::new(os, arch));
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "cannot tell the platform of {} (found {} tool directories under pkg/tool); pass --platform",
            tree.display(),
            found.len()
        ),
    }
}
