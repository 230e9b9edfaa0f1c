//! `distd trust-root export`: the trust material of a tcdist deployment as a Sigstore
//! `trusted_root.json` (protobuf-specs `TrustedRoot`, JSON mapping), so ordinary Sigstore
//! verifiers (cosign, sigstore-js) can check tcdist's bundles: the SPIRE trust domain's CA
//! certificates as certificate authorities, the transparency log's key, the TSA's chain.

use std::path::Path;

use anyhow::{Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use tcverify::trust::tlog::{LogKeyAlgorithm, TransparencyLog};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::sign::svid::read_certificates;

pub const MEDIA_TYPE_TRUSTED_ROOT: &str =
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1";

pub struct TrustRootInputs<'a> {
    /// PEM: the trust domain's X.509 authorities (SPIRE `bundle show -format pem`).
    pub ca_bundle: &'a Path,
    /// The trust domain's name, recorded as each authority's URI.
    pub trust_domain: &'a str,
    /// PEM: the TSA chain, leaf first.
    pub tsa_chain: &'a Path,
    /// PEM public key and origin of the transparency log.
    pub log: Option<(&'a Path, &'a str)>,
}

pub fn export(inputs: &TrustRootInputs<'_>) -> Result<Value> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let authorities = read_certificates(&inputs.ca_bundle.to_path_buf())?
        .into_iter()
        .map(|der| {
            // sigstore-js chains a leaf only through certChain (issuer first, root last); SPIRE's
            // authorities are self-signed roots, each its own chain.
            let facts = certificate_facts(&der)?;
            Ok(json!({
                "subject": { "organization": facts.organization, "commonName": facts.common_name },
                "uri": format!("spiffe://{}", inputs.trust_domain),
                "certChain": { "certificates": [ { "rawBytes": b64(&der) } ] },
                "validFor": { "start": facts.not_before, "end": facts.not_after },
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    let tsa_chain = read_certificates(&inputs.tsa_chain.to_path_buf())?;
    let tsa_facts = certificate_facts(&tsa_chain[0])?;
    let timestamp_authority = json!({
        "subject": { "organization": tsa_facts.organization, "commonName": tsa_facts.common_name },
        "certChain": {
            "certificates": tsa_chain.iter().map(|der| json!({ "rawBytes": b64(der) })).collect::<Vec<_>>()
        },
        "validFor": { "start": tsa_facts.not_before },
    });
    let tlogs = match inputs.log {
        Some((public_key, origin)) => {
            let log =
                TransparencyLog::from_key_file(public_key, origin).map_err(anyhow::Error::msg)?;
            let key_id = b64(&log.key_id());
            vec![json!({
                // Sigstore clients take the checkpoint origin from this URL's host.
                "baseUrl": format!("https://{origin}"),
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(&log.public_key),
                    "keyDetails": match log.algorithm {
                        LogKeyAlgorithm::Ed25519 => "PKIX_ED25519",
                        LogKeyAlgorithm::EcdsaP256Sha256 => "PKIX_ECDSA_P256_SHA_256",
                    },
                    "validFor": { "start": "1970-01-01T00:00:00Z" },
                },
                "logId": { "keyId": key_id },
                "checkpointKeyId": { "keyId": key_id },
            })]
        }
        None => Vec::new(),
    };
    if authorities.is_empty() {
        bail!(
            "{} holds no certificate authority",
            inputs.ca_bundle.display()
        );
    }
    Ok(json!({
        "mediaType": MEDIA_TYPE_TRUSTED_ROOT,
        "tlogs": tlogs,
        "certificateAuthorities": authorities,
        "ctlogs": [],
        "timestampAuthorities": [timestamp_authority],
    }))
}

struct CertificateFacts {
    organization: String,
    common_name: String,
    not_before: String,
    not_after: String,
}

fn certificate_facts(der: &[u8]) -> Result<CertificateFacts> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("a certificate does not parse: {e}"))?;
    let first = |iter: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        iter.next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let time = |t: x509_parser::time::ASN1Time| {
        jiff::Timestamp::from_second(t.timestamp())
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    Ok(CertificateFacts {
        organization: first(&mut cert.subject().iter_organization()),
        common_name: first(&mut cert.subject().iter_common_name()),
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
    })
}
