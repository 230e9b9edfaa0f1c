//! The release format (see docs/architecture.md): an OCI image index, one image manifest per
//! platform, a standard image config, and layers holding the toolchain under [`TOOLCHAIN_ROOT`].
//! Both binaries use these types, so what `distd` writes is exactly what `tcverify` reads.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::checked::CheckedBytes;
use tcdist_core::digest::Digest;
use tcdist_core::platform::Platform;

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub use tcdist_core::TOOLCHAIN_ROOT;
/// Metadata file inside the toolchain root.
pub const TOOLCHAIN_METADATA_FILE: &str = "TOOLCHAIN.json";

pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
pub const ANNOTATION_VERSION: &str = "org.opencontainers.image.version";
pub const ANNOTATION_DESCRIPTION: &str = "org.opencontainers.image.description";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_GO_VERSION: &str = "dev.tcdist.toolchain.go-version";
pub const ANNOTATION_LAYER_PART: &str = "dev.tcdist.layer.part";

/// Manifests and configs are small; anything bigger is refused before parsing.
pub const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    Zstd,
    Gzip,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Zstd => MEDIA_TYPE_LAYER_ZSTD,
            Compression::Gzip => MEDIA_TYPE_LAYER_GZIP,
        }
    }

    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            MEDIA_TYPE_LAYER_ZSTD => Some(Compression::Zstd),
            MEDIA_TYPE_LAYER_GZIP => Some(Compression::Gzip),
            _ => None,
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "zstd" => Ok(Compression::Zstd),
            "gzip" => Ok(Compression::Gzip),
            other => Err(format!("unknown compression {other:?}: use zstd or gzip")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Set on descriptors of artifacts (signatures) in a referrers index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest,
            size,
            platform: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The descriptor of a JSON document serialised as `bytes`.
    pub fn of_document(media_type: &str, bytes: &[u8]) -> Self {
        Self::new(media_type, Digest::of(bytes), bytes.len() as u64)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    /// Optional in the spec (an OCI layout's `index.json` may omit it); `resolve` requires it
    /// for a release.
    #[serde(default)]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The subset of the OCI image config a toolchain image uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

impl ImageConfig {
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }
}

/// `TOOLCHAIN.json`: what the toolchain is, carried inside its root. Fields that later stages
/// add (patch series, source digest) are optional so older trees still parse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolchainMetadata {
    pub name: String,
    pub version: String,
    pub go_version: String,
    pub goos: String,
    pub goarch: String,
    #[serde(default)]
    pub patches: Vec<PatchRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// The GOEXPERIMENT baseline the toolchain was built with ("" for none).
    #[serde(default)]
    pub goexperiment: String,
    /// Defaults baked into the root's `go.env`.
    #[serde(default)]
    pub go_env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRecord {
    pub name: String,
    pub digest: Digest,
}

/// Parses a content-addressed document. It takes only [`CheckedBytes`], so nothing fetched is
/// parsed before its digest is known to be right.
pub fn parse_document<T: serde::de::DeserializeOwned>(
    what: &str,
    document: &CheckedBytes,
) -> Result<T, String> {
    parse_json(what, document.as_bytes())
}

/// Parses a JSON file that no digest names (an OCI layout's `index.json`, an installed
/// entry's `TOOLCHAIN.json`), under the same size cap as documents.
pub fn parse_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, String> {
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "{what} is {} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
            bytes.len()
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("{what} is not valid: {e}"))
}
