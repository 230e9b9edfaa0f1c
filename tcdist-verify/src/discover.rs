//! Finding a release's signatures: Sigstore bundles among its referrers, and cosign's `.sig`
//! tag. Everything found is untrusted input; it is only decoded here, into
//! [`Candidate`]s that the signature stage checks. A malformed attachment becomes a recorded
//! failure, not an error, so one broken signature cannot hide a valid one.

use base64::Engine as _;

use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Result};
use tcdist_core::rules::{Rule, SignatureFailure};
use tcdist_oci::attachments::{
    ANNOTATION_COSIGN_CERTIFICATE, ANNOTATION_COSIGN_CHAIN, ANNOTATION_COSIGN_SIGNATURE,
    ANNOTATION_COSIGN_TIMESTAMP, ANNOTATION_WITNESSED_CHECKPOINT, ArtifactManifest,
    IN_TOTO_PAYLOAD_TYPE, MEDIA_TYPE_BUNDLE, MEDIA_TYPE_SIMPLE_SIGNING, WitnessedCheckpoint,
    cosign_signature_tag,
};
use tcdist_oci::bundle::{Bundle, TransparencyLogEntry};
use tcdist_oci::checked::CheckedBytes;
use tcdist_oci::release::{Descriptor, MAX_DOCUMENT_BYTES, MEDIA_TYPE_MANIFEST, parse_document};
use tcdist_oci::source::ReleaseSource;

/// At most this many signatures are examined per release, so a flood of referrers cannot
/// make verification slow.
const MAX_CANDIDATES: usize = 16;
/// At most this many referrers are read per release, whatever they turn out to be: referrers
/// of other artifact types and unreadable ones do not count as signatures examined, so that a
/// few of them cannot hide the real bundle, and this bounds the work they cost.
const MAX_REFERRERS_READ: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// Sigstore bundle v0.3 with a DSSE envelope, attached as a referrer.
    Bundle,
    /// cosign's simple-signing payload under the `.sig` tag.
    CosignTag,
}

/// One signature as found, decoded but not yet trusted.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Where it was found, for messages (e.g. `bundle sha256:…`).
    pub origin: String,
    pub encoding: Encoding,
    /// The signed statement or payload.
    pub payload: Vec<u8>,
    /// The exact bytes the signature covers (the DSSE PAE, or the payload itself).
    pub signed_bytes: Vec<u8>,
    pub signature: Vec<u8>,
    /// DER certificates: the signer's leaf first, then whatever intermediates came with it.
    pub leaf: Vec<u8>,
    pub intermediates: Vec<Vec<u8>>,
    /// RFC 3161 responses (or bare tokens) over `signature`.
    pub timestamps: Vec<Vec<u8>>,
    /// Transparency log entries for this signature, with their proofs.
    pub tlog_entries: Vec<TransparencyLogEntry>,
    /// The witnessed checkpoint beside a bundle (its referrer's annotation), or why the one
    /// there does not parse.
    pub witnessed: Option<Result<WitnessedCheckpoint, String>>,
}

#[derive(Debug, Default)]
pub struct Discovered {
    pub candidates: Vec<Candidate>,
    /// Attachments that could not be decoded.
    pub failures: Vec<SignatureFailure>,
}

/// Where signatures are looked for, in order: Sigstore bundles first (they carry the log
/// entry), then cosign's tag. Each place is read only when the earlier ones gave nothing
/// acceptable, so a release with a good bundle costs no `.sig` round trips.
#[derive(Clone, Copy, Debug)]
pub enum Place {
    BundleReferrers,
    CosignTag,
}

pub const PLACES: [Place; 2] = [Place::BundleReferrers, Place::CosignTag];

/// The Sigstore bundles listed as referrers of `index`: one listing serves both the release
/// signatures and the lifecycle statements.
pub async fn list_bundles(source: &ReleaseSource, index: &Digest) -> Result<Vec<Descriptor>> {
    source.referrers(index, MEDIA_TYPE_BUNDLE).await
}

/// The signatures at `place`; `bundles` is the listing [`list_bundles`] returned.
pub async fn discover(
    source: &ReleaseSource,
    index: &Digest,
    bundles: &[Descriptor],
    place: Place,
) -> Result<Discovered> {
    let mut found = Discovered::default();
    match place {
        Place::BundleReferrers => bundle_referrers(source, index, bundles, &mut found).await?,
        Place::CosignTag => {
            let tag = cosign_signature_tag(index);
            if let Some(document) = source.tagged(&tag).await? {
                let origin = format!("cosign signature {tag} ({})", document.digest());
                match cosign_candidates(source, &document, &origin).await? {
                    Ok(candidates) => found.candidates.extend(candidates),
                    Err(reason) => found.failures.push(SignatureFailure::new(
                        &origin,
                        Rule::SignatureFormat,
                        reason,
                    )),
                }
            }
        }
    }
    found.candidates.truncate(MAX_CANDIDATES);
    Ok(found)
}

/// The Sigstore bundles among the referrers of `index`: those whose descriptor looks like a
/// manifest's are read first, up to [`MAX_REFERRERS_READ`] in all, until
/// [`MAX_CANDIDATES`] bundles were examined. A referrer that cannot be read is recorded and
/// skipped; referrers of another artifact type are skipped and counted in one failure.
async fn bundle_referrers(
    source: &ReleaseSource,
    index: &Digest,
    bundles: &[Descriptor],
    found: &mut Discovered,
) -> Result<()> {
    let mut listed = bundles.to_vec();
    listed.sort_by_key(|descriptor| !looks_like_manifest(descriptor));
    let (mut examined, mut read) = (0, 0);
    let mut other_types = Vec::new();
    for descriptor in &listed {
        if examined == MAX_CANDIDATES || read == MAX_REFERRERS_READ {
            break;
        }
        read += 1;
        let origin = format!("bundle referrer {}", descriptor.digest);
        let failure = |reason| SignatureFailure::new(&origin, Rule::SignatureFormat, reason);
        match bundle_candidate(source, descriptor, &origin).await? {
            Referrer::Bundle(Ok(candidate)) => found.candidates.push(*candidate),
            Referrer::Bundle(Err(reason)) => found.failures.push(failure(reason)),
            // Not a bundle examined: recorded, but it takes no candidate's place.
            Referrer::Unreadable(reason) => {
                found.failures.push(failure(reason));
                continue;
            }
            Referrer::OtherType(artifact_type) => {
                other_types.push(format!("{} ({artifact_type:?})", descriptor.digest));
                continue;
            }
        }
        examined += 1;
    }
    let object = format!("bundle referrers of {index}");
    if !other_types.is_empty() {
        found.failures.push(SignatureFailure::new(
            &object,
            Rule::SignatureFormat,
            format!(
                "{} listed as Sigstore bundles are other artifacts, skipped: {}",
                count(other_types.len(), "referrer"),
                other_types.join(", ")
            ),
        ));
    }
    if read < listed.len() && examined < MAX_CANDIDATES {
        found.failures.push(SignatureFailure::new(
            &object,
            Rule::SignatureFormat,
            format!(
                "only {read} of {} referrers were read (at most {MAX_REFERRERS_READ} are)",
                listed.len()
            ),
        ));
    }
    Ok(())
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Whether a referrer's descriptor could name a bundle's manifest: the referrers index is
/// not signed, so this only decides which are read first.
fn looks_like_manifest(descriptor: &Descriptor) -> bool {
    descriptor.media_type == MEDIA_TYPE_MANIFEST && descriptor.size <= MAX_DOCUMENT_BYTES
}

/// What a referrer turned out to be.
pub(crate) enum Referrer {
    /// A Sigstore bundle's manifest: the bundle decoded, or why it did not.
    Bundle(std::result::Result<Box<Candidate>, String>),
    /// A manifest of another artifact type (its type).
    OtherType(String),
    /// Gone, or bytes that are not what the descriptor says, or not a manifest.
    Unreadable(String),
}

/// Outer `Result`: fetching failed (network, digest); inner: the attachment is malformed.
type Decoded<T> = Result<std::result::Result<T, String>>;

/// A document that could not be read (gone, or not the bytes its descriptor names) is the
/// failure of the attachment it belongs to; only an unreachable source ends discovery.
fn readable(fetched: Result<CheckedBytes>) -> Decoded<CheckedBytes> {
    match fetched {
        Ok(bytes) => Ok(Ok(bytes)),
        Err(e @ (Error::NotFound { .. } | Error::Rejected(_))) => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
}

pub(crate) async fn bundle_candidate(
    source: &ReleaseSource,
    descriptor: &Descriptor,
    origin: &str,
) -> Result<Referrer> {
    match readable(source.fetch_document(origin, descriptor).await)? {
        Ok(manifest) => bundle_in_manifest(source, &manifest, origin).await,
        Err(reason) => Ok(Referrer::Unreadable(reason)),
    }
}

/// What a referrer manifest, already fetched, holds: its bundle is fetched and decoded.
pub(crate) async fn bundle_in_manifest(
    source: &ReleaseSource,
    manifest_bytes: &CheckedBytes,
    origin: &str,
) -> Result<Referrer> {
    let manifest: ArtifactManifest = match parse_document(origin, manifest_bytes) {
        Ok(manifest) => manifest,
        Err(reason) => return Ok(Referrer::Unreadable(reason)),
    };
    // An OCI manifest's artifact type is its artifactType, else its config's media type.
    let artifact_type = manifest
        .artifact_type
        .as_deref()
        .unwrap_or(&manifest.config.media_type);
    if artifact_type != MEDIA_TYPE_BUNDLE {
        return Ok(Referrer::OtherType(artifact_type.to_owned()));
    }
    let [layer] = manifest.layers.as_slice() else {
        return Ok(Referrer::Bundle(Err(format!(
            "a bundle referrer has one layer, this one has {}",
            manifest.layers.len()
        ))));
    };
    if layer.media_type != MEDIA_TYPE_BUNDLE {
        return Ok(Referrer::Bundle(Err(format!(
            "layer media type is {:?}, expected {MEDIA_TYPE_BUNDLE:?}",
            layer.media_type
        ))));
    }
    let witnessed = manifest
        .annotations
        .get(ANNOTATION_WITNESSED_CHECKPOINT)
        .map(|text| WitnessedCheckpoint::parse(text));
    let decoded = readable(source.fetch_document(origin, layer).await)?
        .and_then(|bytes| decode_bundle(&bytes, origin))
        .map(|candidate| {
            Box::new(Candidate {
                witnessed,
                ..candidate
            })
        });
    Ok(Referrer::Bundle(decoded))
}

/// Decodes a Sigstore bundle v0.3 whose content is a DSSE envelope around an in-toto
/// statement.
pub fn decode_bundle(
    document: &CheckedBytes,
    origin: &str,
) -> std::result::Result<Candidate, String> {
    let bundle = Bundle::parse(document.as_bytes())?;
    if bundle.media_type != MEDIA_TYPE_BUNDLE {
        return Err(format!(
            "bundle media type is {:?}, expected {MEDIA_TYPE_BUNDLE}",
            bundle.media_type
        ));
    }
    let envelope = bundle
        .dsse_envelope
        .ok_or("bundle content is not a DSSE envelope")?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!(
            "DSSE payload type is {:?}, expected {IN_TOTO_PAYLOAD_TYPE:?}",
            envelope.payload_type
        ));
    }
    let [signature] = envelope.signatures.as_slice() else {
        return Err(format!(
            "the DSSE envelope has {} signatures, expected exactly one",
            envelope.signatures.len()
        ));
    };
    let material = bundle.verification_material;
    let (leaf, intermediates) = match (material.certificate, material.x509_certificate_chain) {
        (Some(leaf), _) => (leaf.raw_bytes, Vec::new()),
        (None, Some(chain)) => {
            let mut chain = chain.certificates.into_iter().map(|c| c.raw_bytes);
            let leaf = chain.next().ok_or("bundle certificate chain is empty")?;
            (leaf, chain.collect())
        }
        (None, None) => {
            return Err("bundle carries no certificate (a bare public key is not an SVID)".into());
        }
    };
    Ok(Candidate {
        origin: origin.to_owned(),
        encoding: Encoding::Bundle,
        signed_bytes: envelope.pae(),
        signature: signature.sig.clone(),
        payload: envelope.payload,
        leaf,
        intermediates,
        timestamps: material
            .timestamp_verification_data
            .map(|data| {
                data.rfc3161_timestamps
                    .into_iter()
                    .map(|t| t.signed_timestamp)
                    .collect()
            })
            .unwrap_or_default(),
        tlog_entries: material.tlog_entries,
        witnessed: None,
    })
}

async fn cosign_candidates(
    source: &ReleaseSource,
    manifest_bytes: &CheckedBytes,
    origin: &str,
) -> Decoded<Vec<Candidate>> {
    let manifest: ArtifactManifest = match parse_document(origin, manifest_bytes) {
        Ok(manifest) => manifest,
        Err(reason) => return Ok(Err(reason)),
    };
    let mut candidates = Vec::new();
    for (n, layer) in manifest
        .layers
        .iter()
        .filter(|l| l.media_type == MEDIA_TYPE_SIMPLE_SIGNING)
        .take(MAX_CANDIDATES)
        .enumerate()
    {
        let layer_origin = format!("{origin} layer {n}");
        let payload = match readable(source.fetch_document(&layer_origin, layer).await)? {
            Ok(payload) => payload,
            Err(reason) => return Ok(Err(format!("layer {n}: {reason}"))),
        };
        match decode_cosign_layer(layer, payload.as_bytes().to_vec(), &layer_origin) {
            Ok(candidate) => candidates.push(candidate),
            Err(reason) => return Ok(Err(format!("layer {n}: {reason}"))),
        }
    }
    if candidates.is_empty() {
        return Ok(Err("no simple-signing layer".into()));
    }
    Ok(Ok(candidates))
}

/// cosign keeps everything but the payload in the layer's annotations.
fn decode_cosign_layer(
    layer: &Descriptor,
    payload: Vec<u8>,
    origin: &str,
) -> std::result::Result<Candidate, String> {
    let annotation = |key: &str| {
        layer
            .annotations
            .get(key)
            .ok_or_else(|| format!("annotation {key} is missing"))
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(annotation(ANNOTATION_COSIGN_SIGNATURE)?)
        .map_err(|e| format!("signature is not base64: {e}"))?;
    let mut leaf = pem_certificates(annotation(ANNOTATION_COSIGN_CERTIFICATE)?)?;
    if leaf.len() != 1 {
        return Err(format!(
            "certificate annotation holds {} certificates, expected one",
            leaf.len()
        ));
    }
    let intermediates = match layer.annotations.get(ANNOTATION_COSIGN_CHAIN) {
        Some(chain) => pem_certificates(chain)?,
        None => Vec::new(),
    };
    let timestamps = match layer.annotations.get(ANNOTATION_COSIGN_TIMESTAMP) {
        Some(json) => vec![cosign_timestamp(json)?],
        None => Vec::new(),
    };
    Ok(Candidate {
        origin: origin.to_owned(),
        encoding: Encoding::CosignTag,
        signed_bytes: payload.clone(),
        payload,
        signature,
        leaf: leaf.remove(0),
        intermediates,
        timestamps,
        tlog_entries: Vec::new(),
        witnessed: None,
    })
}

/// cosign's timestamp annotation: `{"SignedRFC3161Timestamp": "<base64 DER>"}`.
fn cosign_timestamp(json: &str) -> std::result::Result<Vec<u8>, String> {
    #[derive(serde::Deserialize)]
    struct Annotation {
        #[serde(rename = "SignedRFC3161Timestamp")]
        signed: String,
    }
    let annotation: Annotation =
        serde_json::from_str(json).map_err(|e| format!("timestamp annotation: {e}"))?;
    base64::engine::general_purpose::STANDARD
        .decode(annotation.signed)
        .map_err(|e| format!("timestamp annotation is not base64: {e}"))
}

fn pem_certificates(text: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("bad PEM: {e}"))?;
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() == "CERTIFICATE" {
                Ok(block.into_contents())
            } else {
                Err(format!("PEM block {:?} is not a certificate", block.tag()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
