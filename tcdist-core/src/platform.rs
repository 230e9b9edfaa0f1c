//! `os/arch[/variant]` platforms and this host's platform in OCI/Go naming.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch or os/arch/variant, e.g. linux/amd64")]
pub struct InvalidPlatform(pub String);

impl Platform {
    pub fn new(os: &str, architecture: &str) -> Self {
        Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// This host's platform, named as Go (and OCI) name it.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Self::new(std::env::consts::OS, arch)
    }

    /// Whether a release built for `self` serves a request for `wanted`; a request without a
    /// variant accepts any variant.
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || self.variant == wanted.variant)
    }

    /// `os-arch[-variant]`, for directory names.
    pub fn file_name(&self) -> String {
        self.to_string().replace('/', "-")
    }
}

impl FromStr for Platform {
    type Err = InvalidPlatform;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = value.split('/').collect();
        let valid_part = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid_part) {
            return Err(InvalidPlatform(value.to_owned()));
        }
        Ok(Self {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_parses_os_arch_and_variant() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm64"));
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.file_name(), "linux-arm64-v8");
    }

    #[test]
    fn platform_rejected_if_malformed() {
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "Linux/amd64",
            "../x",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn request_without_variant_accepts_any_variant() {
        let arm_v7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(arm_v7.satisfies(&"linux/arm".parse().unwrap()));
        assert!(!arm_v7.satisfies(&"linux/arm/v6".parse().unwrap()));
        assert!(!arm_v7.satisfies(&"linux/amd64".parse().unwrap()));
    }

    #[test]
    fn host_platform_uses_go_arch_names() {
        let host = Platform::host();
        assert_ne!(host.architecture, "x86_64");
        assert_ne!(host.architecture, "aarch64");
    }
}
