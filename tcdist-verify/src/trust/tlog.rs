//! A transparency log as the verifier trusts it: its public key (which signs checkpoints),
//! the checkpoint origin it signs under, and where its tiles can be read for freshness and
//! consistency checks.

use sha2::{Digest as _, Sha256};

use crate::witness::client::{Witness, WitnessClient};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransparencyLog {
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// The raw key inside it (Ed25519: 32 bytes; ECDSA: the SEC1 point).
    pub raw_public_key: Vec<u8>,
    pub algorithm: LogKeyAlgorithm,
    /// The first line of every checkpoint the log signs.
    pub origin: String,
    /// Base URL of the log's tiles (`<url>/checkpoint`, `<url>/tile/…`), when known.
    pub tiles_url: Option<String>,
    /// When the key counts (a trusted root's `publicKey.validFor`): a signature made outside
    /// it is not vouched for by this log. `None`: always.
    pub valid_for: Option<sigstore_types::TimeRange>,
    /// Whether verification may go on when the log's current state cannot be checked.
    pub freshness: FreshnessMode,
    /// The witnesses whose cosignatures the policy counts, when it names any.
    pub witnesses: Option<WitnessPolicy>,
}

/// A log's witnesses in the policy: who, how many must cosign, and whether that is required.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessPolicy {
    pub keys: Vec<crate::witness::WitnessKey>,
    /// Those the policy gives a `url` for: where the log's current checkpoint can be cosigned.
    pub addresses: Vec<Witness>,
    pub quorum: usize,
    pub mode: FreshnessMode,
}

impl TransparencyLog {
    /// A client that gets this log's current checkpoint cosigned by the policy's witnesses.
    pub fn witness_client(&self) -> Result<WitnessClient, String> {
        let Some(policy) = &self.witnesses else {
            return Err("the policy names no witnesses for the log".into());
        };
        let Some(tiles) = &self.tiles_url else {
            return Err("the policy gives no url for the log's tiles".into());
        };
        if policy.addresses.len() < policy.quorum {
            return Err(format!(
                "the policy gives the url of {} of the log's witnesses, fewer than its quorum of {}",
                policy.addresses.len(),
                policy.quorum
            ));
        }
        WitnessClient::new(policy.addresses.clone(), policy.quorum, tiles)
    }
}

/// The policy's `freshness` for a log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FreshnessMode {
    /// `"best-effort"`: when the log cannot be reached, verify from the bundle's proof and say
    /// that freshness was not checked.
    #[default]
    BestEffort,
    /// `"required"`: when the log cannot be reached, or `--offline`, verification fails as
    /// unavailable (exit 3).
    Required,
}

impl FreshnessMode {
    pub const NAMES: [&str; 2] = ["best-effort", "required"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "best-effort" => Some(FreshnessMode::BestEffort),
            "required" => Some(FreshnessMode::Required),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKeyAlgorithm {
    Ed25519,
    EcdsaP256Sha256,
}

impl TransparencyLog {
    /// The log's checkpoint key ID (C2SP signed-note, as Rekor v2 computes it), which is also
    /// its log ID in entries and trusted roots: Ed25519 hashes origin, type 0x01 and the raw
    /// key; ECDSA hashes the DER public key. A checkpoint signature's key hint is its first
    /// four bytes.
    pub fn key_id(&self) -> [u8; 32] {
        match self.algorithm {
            LogKeyAlgorithm::Ed25519 => {
                let mut hash = Sha256::new();
                hash.update(self.origin.as_bytes());
                hash.update(b"\n\x01");
                hash.update(&self.raw_public_key);
                hash.finalize().into()
            }
            LogKeyAlgorithm::EcdsaP256Sha256 => Sha256::digest(&self.public_key).into(),
        }
    }
}

impl TransparencyLog {
    /// The log whose checkpoints `key` signs under `origin`, trusted at any time; where its
    /// tiles are is not known yet.
    pub fn with_key((public_key, raw_public_key, algorithm): LogKey, origin: &str) -> Self {
        Self {
            public_key,
            raw_public_key,
            algorithm,
            origin: origin.to_owned(),
            tiles_url: None,
            valid_for: None,
            freshness: FreshnessMode::BestEffort,
            witnesses: None,
        }
    }

    /// The log whose checkpoints are signed by the PEM public key in `file` under `origin`.
    pub fn from_key_file(file: &std::path::Path, origin: &str) -> Result<Self, String> {
        let pem = std::fs::read(file)
            .map_err(|e| format!("cannot read the log key {}: {e}", file.display()))?;
        let key = parse_log_public_key(&pem)
            .map_err(|e| format!("the log key {} {e}", file.display()))?;
        Ok(Self::with_key(key, origin))
    }
}

/// A parsed log key: DER SPKI, raw key, algorithm.
pub type LogKey = (Vec<u8>, Vec<u8>, LogKeyAlgorithm);

/// Reads a PEM public key (`-----BEGIN PUBLIC KEY-----`): Ed25519 or ECDSA P-256.
pub fn parse_log_public_key(pem_bytes: &[u8]) -> Result<LogKey, String> {
    let block = pem::parse(pem_bytes).map_err(|e| format!("is not a PEM public key: {e}"))?;
    if block.tag() != "PUBLIC KEY" {
        return Err(format!(
            "holds a {:?} PEM block; a log key file holds a \"PUBLIC KEY\"",
            block.tag()
        ));
    }
    parse_log_key_der(block.into_contents())
}

/// Reads a DER SubjectPublicKeyInfo: Ed25519 or ECDSA P-256.
pub fn parse_log_key_der(der: Vec<u8>) -> Result<LogKey, String> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(&der)
        .map_err(|e| format!("is not a SubjectPublicKeyInfo: {e}"))?;
    let raw = spki.subject_public_key.data.to_vec();
    let algorithm = match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.3.101.112" => LogKeyAlgorithm::Ed25519,
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            if curve.as_deref() != Some("1.2.840.10045.3.1.7") {
                return Err("is an EC key on a curve other than P-256".into());
            }
            LogKeyAlgorithm::EcdsaP256Sha256
        }
        other => {
            return Err(format!(
                "has key algorithm {other}; Ed25519 or ECDSA P-256 expected"
            ));
        }
    };
    Ok((der, raw, algorithm))
}
