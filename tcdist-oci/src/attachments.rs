//! What is attached to a release to sign it, in the two encodings DESIGN.md fixes: a Sigstore
//! bundle (v0.3, DSSE envelope around an in-toto statement) as an OCI referrer, and cosign's
//! classic `sha256-<hex>.sig` tag. `distd` writes these and `tcverify` reads them, so names,
//! media types and payloads live here once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::release::{Descriptor, ImageIndex, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use tcdist_core::digest::Digest;

pub mod lifecycle;
pub mod rollout;

pub const MEDIA_TYPE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The empty config (`{}`) that OCI 1.1 artifacts carry.
pub const EMPTY_CONFIG: &[u8] = b"{}";
pub const MEDIA_TYPE_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const IN_TOTO_STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate of a release statement: which release of which repository was signed.
pub const RELEASE_PREDICATE_TYPE: &str = "https://tcdist.dev/attestation/release/v1";

pub const ANNOTATION_COSIGN_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
pub const ANNOTATION_COSIGN_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
pub const ANNOTATION_COSIGN_CHAIN: &str = "dev.sigstore.cosign/chain";
pub const ANNOTATION_COSIGN_TIMESTAMP: &str = "dev.sigstore.cosign/rfc3161timestamp";
/// Set on referrer manifests, so `tcverify` and cosign can tell a bundle from other referrers.
pub const ANNOTATION_BUNDLE_CONTENT: &str = "dev.sigstore.bundle.content";
pub const ANNOTATION_BUNDLE_PREDICATE_TYPE: &str = "dev.sigstore.bundle.predicateType";
/// On a bundle's referrer: the log's checkpoint with witness cosignatures, and the bundle's
/// entry proven in it ([`WitnessedCheckpoint`]). Beside the bundle, not in it: Sigstore
/// clients refuse a checkpoint with signature lines of keys they do not know.
pub const ANNOTATION_WITNESSED_CHECKPOINT: &str = "dev.tcdist.witnessed-checkpoint";

/// A checkpoint cosigned by witnesses, and the inclusion proof of one log entry in it (the
/// checkpoint may be newer than the one in the bundle: witnesses sign only trees that extend
/// the newest they signed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WitnessedCheckpoint {
    /// The signed note: the log's signature and the witnesses' cosignatures.
    pub checkpoint: String,
    pub log_index: u64,
    /// The RFC 6962 inclusion proof of the entry at `log_index` in the checkpoint's tree,
    /// base64.
    pub hashes: Vec<String>,
}

impl WitnessedCheckpoint {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a witnessed checkpoint serializes")
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not a witnessed checkpoint: {e}"))
    }
}

/// The tag under which referrers of `subject` are listed where the registry has no referrers
/// API (OCI distribution 1.1, "referrers tag schema").
pub fn referrers_tag(subject: &Digest) -> String {
    subject.file_name()
}

/// cosign's classic signature tag for `subject`.
pub fn cosign_signature_tag(subject: &Digest) -> String {
    format!("{}.sig", subject.file_name())
}

/// An in-toto statement v1 as tcdist signs it: one subject, a release index of a repository,
/// and a predicate of one of tcdist's types (a release, a channel head, a yank list).
#[derive(Debug, Serialize, Deserialize)]
pub struct Statement<P> {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<StatementSubject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: P,
}

/// A predicate type tcdist signs.
pub trait Predicate: Serialize + serde::de::DeserializeOwned {
    /// Its `predicateType` URI.
    const TYPE: &'static str;
    /// What it is, for messages ("release statement").
    const NAME: &'static str;
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StatementSubject {
    /// The repository path (no registry host: mirrors carry the same release).
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl<P: Predicate> Statement<P> {
    pub fn about(repository: &str, index: &Digest, predicate: P) -> Self {
        Statement {
            statement_type: IN_TOTO_STATEMENT_TYPE.into(),
            subject: vec![StatementSubject {
                name: repository.into(),
                digest: BTreeMap::from([("sha256".into(), index.hex().into())]),
            }],
            predicate_type: P::TYPE.into(),
            predicate,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement always serializes")
    }

    /// Parses a statement, refusing anything that is not an in-toto statement of this
    /// predicate type with exactly one sha256 subject; returns it with the subject it names.
    pub fn parse_statement(bytes: &[u8]) -> Result<(Self, SignedSubject), String> {
        let statement: Self =
            serde_json::from_slice(bytes).map_err(|e| format!("not a {}: {e}", P::NAME))?;
        if statement.statement_type != IN_TOTO_STATEMENT_TYPE {
            return Err(format!(
                "statement type is {:?}, expected {IN_TOTO_STATEMENT_TYPE:?}",
                statement.statement_type
            ));
        }
        if statement.predicate_type != P::TYPE {
            return Err(format!(
                "predicate type is {:?}, expected {:?}",
                statement.predicate_type,
                P::TYPE
            ));
        }
        let [subject] = statement.subject.as_slice() else {
            return Err(format!(
                "statement has {} subjects, expected exactly one",
                statement.subject.len()
            ));
        };
        let hex = subject
            .digest
            .get("sha256")
            .ok_or("statement subject has no sha256 digest")?;
        let subject = SignedSubject {
            repository: subject.name.clone(),
            digest: format!("sha256:{hex}")
                .parse()
                .map_err(|e| format!("statement subject digest: {e}"))?,
            tag: None,
        };
        Ok((statement, subject))
    }
}

/// The statement a release signature signs.
pub type ReleaseStatement = Statement<ReleasePredicate>;

#[derive(Debug, Serialize, Deserialize)]
pub struct ReleasePredicate {
    pub repository: String,
    /// The tag the release was published under: a pull by that tag accepts the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl Predicate for ReleasePredicate {
    const TYPE: &'static str = RELEASE_PREDICATE_TYPE;
    const NAME: &'static str = "release statement";
}

impl ReleaseStatement {
    pub fn new(repository: &str, tag: Option<&str>, index: &Digest) -> Self {
        Statement::about(
            repository,
            index,
            ReleasePredicate {
                repository: repository.into(),
                tag: tag.map(Into::into),
            },
        )
    }

    /// The subject a release statement names, with its tag.
    pub fn parse(bytes: &[u8]) -> Result<SignedSubject, String> {
        let (statement, subject) = Self::parse_statement(bytes)?;
        Ok(SignedSubject {
            tag: statement.predicate.tag,
            ..subject
        })
    }
}

/// What a signature's payload says was signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedSubject {
    /// The repository path; for cosign payloads, the docker reference without its host.
    pub repository: String,
    pub digest: Digest,
    /// The tag the signer published the release under, when the payload names one.
    pub tag: Option<String>,
}

/// cosign's "simple signing" payload.
#[derive(Debug, Serialize, Deserialize)]
pub struct SimpleSigning {
    pub critical: SimpleSigningCritical,
    pub optional: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SimpleSigningCritical {
    pub identity: SimpleSigningIdentity,
    pub image: SimpleSigningImage,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SimpleSigningIdentity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SimpleSigningImage {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";
/// The key of `optional` that names the tag the release was published under.
const SIMPLE_SIGNING_TAG: &str = "tag";

impl SimpleSigning {
    /// `docker_reference` is `registry/repository`, as cosign writes it. The tag goes into
    /// `optional`, where cosign keeps annotations (`cosign sign -a tag=…`).
    pub fn new(docker_reference: &str, tag: Option<&str>, index: &Digest) -> Self {
        SimpleSigning {
            critical: SimpleSigningCritical {
                identity: SimpleSigningIdentity {
                    docker_reference: docker_reference.into(),
                },
                image: SimpleSigningImage {
                    docker_manifest_digest: index.to_string(),
                },
                kind: SIMPLE_SIGNING_TYPE.into(),
            },
            optional: tag.map(|tag| serde_json::json!({ SIMPLE_SIGNING_TAG: tag })),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a payload always serializes")
    }

    pub fn parse(bytes: &[u8]) -> Result<SignedSubject, String> {
        let payload: SimpleSigning = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a simple-signing payload: {e}"))?;
        if payload.critical.kind != SIMPLE_SIGNING_TYPE {
            return Err(format!(
                "payload type is {:?}, expected {SIMPLE_SIGNING_TYPE:?}",
                payload.critical.kind
            ));
        }
        let reference = &payload.critical.identity.docker_reference;
        // cosign names the registry host first; the policy speaks of the repository path.
        // As in Docker's reference grammar, a first segment is a host only when it has a
        // `.` or `:` or is `localhost` (an OCI layout's payload names the path alone).
        let repository = match reference.split_once('/') {
            Some((host, path)) if host.contains(['.', ':']) || host == "localhost" => path,
            _ => reference.as_str(),
        };
        Ok(SignedSubject {
            repository: repository.to_owned(),
            digest: payload
                .critical
                .image
                .docker_manifest_digest
                .parse()
                .map_err(|e| format!("payload digest: {e}"))?,
            tag: payload
                .optional
                .as_ref()
                .and_then(|optional| optional.get(SIMPLE_SIGNING_TAG))
                .and_then(|tag| tag.as_str())
                .map(str::to_owned),
        })
    }
}

/// An OCI image manifest used as an artifact (the bundle referrer, the cosign signature).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactManifest {
    pub schema_version: u32,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ArtifactManifest {
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        ArtifactManifest {
            schema_version: 2,
            media_type: MEDIA_TYPE_MANIFEST.into(),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// The index the referrers tag points at: one descriptor per referrer manifest.
pub fn referrers_index(manifests: Vec<Descriptor>) -> ImageIndex {
    ImageIndex {
        schema_version: 2,
        media_type: MEDIA_TYPE_INDEX.into(),
        manifests,
        annotations: BTreeMap::new(),
    }
}

pub fn empty_config_descriptor() -> Descriptor {
    Descriptor::of_document(MEDIA_TYPE_EMPTY, EMPTY_CONFIG)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"index")
    }

    #[test]
    fn statement_round_trips_its_subject() {
        let bytes =
            ReleaseStatement::new("toolchains/go", Some("1.26.8-tc.1"), &digest()).to_json();
        let subject = ReleaseStatement::parse(&bytes).unwrap();
        assert_eq!(subject.digest, digest());
        assert_eq!(subject.repository, "toolchains/go");
        assert_eq!(subject.tag.as_deref(), Some("1.26.8-tc.1"));
    }

    #[test]
    fn statement_rejected_if_two_subjects() {
        let mut statement = ReleaseStatement::new("r", None, &digest());
        statement.subject.push(StatementSubject {
            name: "other".into(),
            digest: BTreeMap::from([("sha256".into(), Digest::of(b"x").hex().into())]),
        });
        let err = ReleaseStatement::parse(&statement.to_json()).unwrap_err();
        assert!(err.contains("2 subjects"), "{err}");
    }

    #[test]
    fn statement_rejected_if_other_predicate() {
        let mut statement = ReleaseStatement::new("r", None, &digest());
        statement.predicate_type = "https://slsa.dev/provenance/v1".into();
        assert!(ReleaseStatement::parse(&statement.to_json()).is_err());
    }

    #[test]
    fn simple_signing_names_repository_without_host() {
        let bytes =
            SimpleSigning::new("127.0.0.1:5000/toolchains/go", Some("v1"), &digest()).to_json();
        let subject = SimpleSigning::parse(&bytes).unwrap();
        assert_eq!(subject.repository, "toolchains/go");
        assert_eq!(subject.digest, digest());
        assert_eq!(subject.tag.as_deref(), Some("v1"));
    }

    #[test]
    fn simple_signing_without_host_keeps_the_whole_path() {
        let bytes = SimpleSigning::new("toolchains/go", None, &digest()).to_json();
        assert_eq!(
            SimpleSigning::parse(&bytes).unwrap().repository,
            "toolchains/go"
        );
    }

    #[test]
    fn tags_follow_the_fallback_schemes() {
        let d = digest();
        assert_eq!(referrers_tag(&d), format!("sha256-{}", d.hex()));
        assert_eq!(cosign_signature_tag(&d), format!("sha256-{}.sig", d.hex()));
    }
}
