//! A Sigstore trusted root (`trusted_root.json`, protobuf-specs `TrustedRoot` in its JSON
//! mapping) as trust material: what `distd trust-root export` writes and ordinary Sigstore
//! clients read. tcverify takes from it
//! - certificate authorities whose `uri` is a SPIFFE trust domain ID (`spiffe://td`): the
//!   last certificate of each chain (its root) becomes an X.509 authority of that trust domain,
//!   trusted within the authority's `validFor`;
//! - timestamp authorities, named by their subject's common name;
//! - transparency logs, named by their origin, which Sigstore clients take from the host of
//!   `baseUrl`, trusted for signatures made within the key's `validFor`.
//!
//! Authorities of other kinds (a Fulcio CA: an `https://` URI) and CT logs are not SPIFFE trust,
//! so they are counted and left out. Anything malformed refuses the whole file: trust material
//! that half-loads is trust nobody reviewed.

use std::collections::HashSet;

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use sigstore_types::TsaAuthority;

use super::Authority;
use super::files::{parse_x509, tsa_from_chain};
use super::tlog::{LogKeyAlgorithm, TransparencyLog, parse_log_key_der};
use crate::spiffe_id::TrustDomain;

pub mod document;

use document::{CertChain, LogInstance, MEDIA_TYPE_TRUSTED_ROOT, TrustedRootDocument};

/// The media types of the trusted root versions this build reads.
const MEDIA_TYPES: [&str; 2] = [
    MEDIA_TYPE_TRUSTED_ROOT,
    "application/vnd.dev.sigstore.trustedroot.v0.2+json",
];

/// What a trusted root contributes, in file order.
#[derive(Clone, Debug, Default)]
pub struct TrustedRoot {
    pub authorities: Vec<(TrustDomain, Authority)>,
    pub timestamp_authorities: Vec<(String, TsaAuthority)>,
    pub transparency_logs: Vec<(String, TransparencyLog)>,
    /// Certificate authorities without a SPIFFE trust domain URI, left out.
    pub ignored_authorities: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct TrustedRootError {
    /// Where in the document, e.g. `certificateAuthorities[1].certChain`.
    pub at: String,
    pub reason: String,
}

fn error(at: impl Into<String>, reason: impl std::fmt::Display) -> TrustedRootError {
    TrustedRootError {
        at: at.into(),
        reason: reason.to_string(),
    }
}

pub fn parse_trusted_root(json: &[u8]) -> Result<TrustedRoot, TrustedRootError> {
    let raw: TrustedRootDocument = serde_json::from_slice(json)
        .map_err(|e| error("document", format!("is not a Sigstore trusted root: {e}")))?;
    if !MEDIA_TYPES.contains(&raw.media_type.as_str()) {
        return Err(error(
            "mediaType",
            format!(
                "{:?} is not a trusted root version this tcverify reads ({})",
                raw.media_type,
                MEDIA_TYPES.join(", ")
            ),
        ));
    }
    let mut root = TrustedRoot::default();
    for (i, raw_ca) in raw.certificate_authorities.iter().enumerate() {
        let at = format!("certificateAuthorities[{i}]");
        let Some(trust_domain) = spiffe_trust_domain(&at, raw_ca.uri.as_deref())? else {
            root.ignored_authorities += 1;
            continue;
        };
        let chain = certificates(&at, &raw_ca.cert_chain)?;
        let anchor = chain.last().expect("certificates() refuses an empty chain");
        root.authorities.push((
            trust_domain,
            Authority {
                certificate: anchor.clone(),
                valid_for: raw_ca.valid_for,
            },
        ));
    }
    let mut tsa_names = HashSet::new();
    for (i, raw_tsa) in raw.timestamp_authorities.iter().enumerate() {
        let at = format!("timestampAuthorities[{i}]");
        let chain = certificates(&at, &raw_tsa.cert_chain)?;
        let tsa = tsa_from_chain(chain, raw_tsa.valid_for)
            .map_err(|e| error(format!("{at}.certChain"), format!("the chain {e}")))?;
        let base = raw_tsa
            .subject
            .common_name
            .clone()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| "timestamp-authority".to_owned());
        let mut name = base.clone();
        let mut n = 2;
        while !tsa_names.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        root.timestamp_authorities.push((name, tsa));
    }
    for (i, raw_log) in raw.tlogs.iter().enumerate() {
        let at = format!("tlogs[{i}]");
        let log = transparency_log(&at, raw_log)?;
        root.transparency_logs.push((log.origin.clone(), log));
    }
    Ok(root)
}

/// The trust domain of a SPIFFE trust domain ID; `None` for a URI of another scheme.
fn spiffe_trust_domain(
    at: &str,
    uri: Option<&str>,
) -> Result<Option<TrustDomain>, TrustedRootError> {
    let Some(name) = uri.and_then(|uri| uri.strip_prefix("spiffe://")) else {
        return Ok(None);
    };
    TrustDomain::parse(name).map(Some).map_err(|e| {
        error(
            format!("{at}.uri"),
            format!("{name:?} is not a SPIFFE trust domain ID (spiffe://TRUST-DOMAIN): it {e}"),
        )
    })
}

fn certificates(
    at: &str,
    chain: &CertChain,
) -> Result<Vec<CertificateDer<'static>>, TrustedRootError> {
    let at = format!("{at}.certChain");
    if chain.certificates.is_empty() {
        return Err(error(at, "holds no certificate"));
    }
    chain
        .certificates
        .iter()
        .enumerate()
        .map(|(i, certificate)| {
            let der = CertificateDer::from(decode(&at, &certificate.raw_bytes)?);
            parse_x509(&der, i + 1).map_err(|e| error(&at, e))?;
            Ok(der)
        })
        .collect()
}

fn transparency_log(at: &str, raw: &LogInstance) -> Result<TransparencyLog, TrustedRootError> {
    let origin = origin_of(&raw.base_url).ok_or_else(|| {
        error(
            format!("{at}.baseUrl"),
            format!("{:?} is not a URL with a host", raw.base_url),
        )
    })?;
    let der = decode(&format!("{at}.publicKey"), &raw.public_key.raw_bytes)?;
    let key = parse_log_key_der(der)
        .map_err(|e| error(format!("{at}.publicKey"), format!("the key {e}")))?;
    let algorithm = key.2;
    let declared = match raw.public_key.key_details.as_str() {
        "PKIX_ED25519" => Some(LogKeyAlgorithm::Ed25519),
        "PKIX_ECDSA_P256_SHA_256" => Some(LogKeyAlgorithm::EcdsaP256Sha256),
        _ => None,
    };
    if declared != Some(algorithm) {
        return Err(error(
            format!("{at}.publicKey.keyDetails"),
            format!(
                "{:?} does not describe the key, which is {algorithm:?}",
                raw.public_key.key_details
            ),
        ));
    }
    let log = TransparencyLog {
        valid_for: raw.public_key.valid_for,
        ..TransparencyLog::with_key(key, &origin)
    };
    // The file names the log's key ID; one that is not the key's (for this origin) means the
    // file was assembled wrongly, and no entry or checkpoint of the log would match it.
    let (field, key_id) = match &raw.checkpoint_key_id {
        Some(id) => ("checkpointKeyId", id),
        None => ("logId", &raw.log_id),
    };
    if decode(&format!("{at}.{field}"), &key_id.key_id)? != log.key_id() {
        return Err(error(
            format!("{at}.{field}"),
            format!(
                "is not the key ID of the log's key under origin {:?} (expected {})",
                log.origin,
                base64::engine::general_purpose::STANDARD.encode(log.key_id())
            ),
        ));
    }
    Ok(log)
}

/// The checkpoint origin Sigstore clients derive from a log's base URL: its host, with the
/// port when one is given.
fn origin_of(base_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(base_url).ok()?;
    let host = url.host_str().filter(|h| !h.is_empty())?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

fn decode(at: &str, text: &str) -> Result<Vec<u8>, TrustedRootError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| error(at, format!("is not base64: {e}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trust::files::tests::{ca, issued};
    use serde_json::{Value, json};

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn der_of(pem_text: &str) -> Vec<u8> {
        pem::parse(pem_text).unwrap().into_contents()
    }

    /// A fresh Ed25519 log key as a DER SubjectPublicKeyInfo.
    pub(crate) fn ed25519_spki() -> Vec<u8> {
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut spki = hex::decode("302a300506032b6570032100").unwrap();
        spki.extend_from_slice(pair.public_key().as_ref());
        spki
    }

    /// A trusted root as `distd trust-root export` writes it: one SPIFFE trust domain CA, one
    /// Fulcio-style CA, a TSA with a two-certificate chain, one Ed25519 log.
    pub(crate) fn trusted_root_json(trust_domain: &str, origin: &str, log_key: &[u8]) -> Value {
        let (td, other, tsa_root) = (ca(trust_domain), ca("fulcio"), ca("tsa root"));
        let tsa_leaf = der_of(&issued("tsa", &tsa_root));
        let key = parse_log_key_der(log_key.to_vec()).unwrap();
        let key_id = TransparencyLog::with_key(key, origin).key_id();
        json!({
            "mediaType": MEDIA_TYPES[0],
            "certificateAuthorities": [
                { "subject": { "commonName": trust_domain }, "uri": format!("spiffe://{trust_domain}"),
                  "certChain": { "certificates": [ { "rawBytes": b64(&td.der) } ] },
                  "validFor": { "start": "2020-01-01T00:00:00Z" } },
                { "uri": "https://fulcio.example",
                  "certChain": { "certificates": [ { "rawBytes": b64(&other.der) } ] } },
            ],
            "timestampAuthorities": [
                { "subject": { "commonName": "stack tsa" },
                  "certChain": { "certificates": [ { "rawBytes": b64(&tsa_leaf) }, { "rawBytes": b64(&tsa_root.der) } ] } },
            ],
            "tlogs": [
                { "baseUrl": format!("https://{origin}"), "hashAlgorithm": "SHA2_256",
                  "publicKey": { "rawBytes": b64(log_key), "keyDetails": "PKIX_ED25519" },
                  "logId": { "keyId": b64(&key_id) }, "checkpointKeyId": { "keyId": b64(&key_id) } },
            ],
            "ctlogs": [],
        })
    }

    fn parse(value: &Value) -> Result<TrustedRoot, TrustedRootError> {
        parse_trusted_root(value.to_string().as_bytes())
    }

    fn refused(value: &Value) -> String {
        parse(value)
            .expect_err("the trusted root should be refused")
            .to_string()
    }

    #[test]
    fn exported_trusted_root_yields_spiffe_authorities_tsas_and_logs() {
        let key = ed25519_spki();
        let root = parse(&trusted_root_json("tcdist.test", "rekor.tcdist.test", &key)).unwrap();
        assert_eq!(root.authorities.len(), 1);
        assert_eq!(root.authorities[0].0.as_str(), "tcdist.test");
        assert!(root.authorities[0].1.valid_for.is_some());
        assert_eq!(root.ignored_authorities, 1);
        assert_eq!(root.timestamp_authorities.len(), 1);
        assert_eq!(root.timestamp_authorities[0].0, "stack tsa");
        assert_eq!(root.timestamp_authorities[0].1.intermediates.len(), 0);
        assert_eq!(root.transparency_logs.len(), 1);
        assert_eq!(root.transparency_logs[0].0, "rekor.tcdist.test");
        assert_eq!(root.transparency_logs[0].1.public_key, key);
    }

    #[test]
    fn log_key_window_is_kept() {
        let mut value = trusted_root_json("td", "log", &ed25519_spki());
        value["tlogs"][0]["publicKey"]["validFor"] =
            json!({ "start": "2026-01-01T00:00:00Z", "end": "2026-06-01T00:00:00Z" });
        let root = parse(&value).unwrap();
        let window = root.transparency_logs[0].1.valid_for.unwrap();
        assert!(window.contains("2026-03-01T00:00:00Z".parse().unwrap()));
        assert!(!window.contains("2026-07-01T00:00:00Z".parse().unwrap()));
    }

    #[test]
    fn origin_keeps_a_port_as_sigstore_clients_do() {
        let key = ed25519_spki();
        let root = parse(&trusted_root_json("td", "127.0.0.1:8443", &key)).unwrap();
        assert_eq!(root.transparency_logs[0].0, "127.0.0.1:8443");
    }

    #[test]
    fn trusted_root_of_another_media_type_is_refused() {
        let mut value = trusted_root_json("td", "log", &ed25519_spki());
        value["mediaType"] = json!("application/json");
        assert!(refused(&value).starts_with("mediaType: \"application/json\" is not"));
    }

    #[test]
    fn log_whose_key_id_is_not_its_key_is_refused() {
        let mut value = trusted_root_json("td", "log", &ed25519_spki());
        // Same key, another origin: the key ID (which covers the origin) no longer matches.
        value["tlogs"][0]["baseUrl"] = json!("https://another.origin");
        let error = refused(&value);
        assert!(
            error.starts_with("tlogs[0].checkpointKeyId: is not the key ID"),
            "{error}"
        );
    }

    #[test]
    fn log_key_details_must_describe_the_key() {
        let mut value = trusted_root_json("td", "log", &ed25519_spki());
        value["tlogs"][0]["publicKey"]["keyDetails"] = json!("PKIX_ECDSA_P256_SHA_256");
        assert!(refused(&value).starts_with("tlogs[0].publicKey.keyDetails:"));
    }

    #[test]
    fn malformed_material_is_refused_with_its_place() {
        let base = trusted_root_json("td", "log", &ed25519_spki());
        let cases: [(&str, Value, &str); 5] = [
            (
                "/certificateAuthorities/0/uri",
                json!("spiffe://td/path"),
                "certificateAuthorities[0].uri:",
            ),
            (
                "/certificateAuthorities/0/certChain/certificates",
                json!([]),
                "certificateAuthorities[0].certChain: holds no certificate",
            ),
            (
                "/certificateAuthorities/0/certChain/certificates/0/rawBytes",
                json!("YWJj"),
                "certificateAuthorities[0].certChain: certificate 1 is not a valid X.509",
            ),
            (
                "/tlogs/0/publicKey/rawBytes",
                json!("not base64!"),
                "tlogs[0].publicKey: is not base64",
            ),
            ("/tlogs/0/baseUrl", json!("rekor"), "tlogs[0].baseUrl:"),
        ];
        for (pointer, replacement, expected) in cases {
            let mut value = base.clone();
            *value.pointer_mut(pointer).unwrap() = replacement;
            let error = refused(&value);
            assert!(error.starts_with(expected), "{pointer}: {error}");
        }
    }

    #[test]
    fn tsa_chain_out_of_order_is_refused() {
        let mut value = trusted_root_json("td", "log", &ed25519_spki());
        let chain = value
            .pointer_mut("/timestampAuthorities/0/certChain/certificates")
            .unwrap()
            .as_array_mut()
            .unwrap();
        chain.reverse();
        assert!(refused(&value).starts_with("timestampAuthorities[0].certChain: the chain"));
    }

    #[test]
    fn not_json_is_refused() {
        let error = parse_trusted_root(b"{").unwrap_err().to_string();
        assert!(error.starts_with("document: is not a Sigstore trusted root"));
    }
}
