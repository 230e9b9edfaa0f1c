//! Trust material read from files: PEM certificate bundles, SPIFFE bundles (JWKS) and RFC 3161
//! timestamp authority chains. Every certificate is parsed as X.509 when it is loaded, so a
//! broken trust file fails when the policy is checked, not in the middle of a verification.

use base64::Engine;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sigstore_types::{DerCertificate, TimeRange, TsaAuthority};
use x509_parser::certificate::X509Certificate;

/// Why a trust file was refused. Certificates are numbered from 1, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrustFileError {
    #[error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificates,
    #[error("is not valid PEM: {0}")]
    Pem(String),
    #[error(
        "holds a private key; trust files hold certificates only (remove the key and keep it \
         secret)"
    )]
    PrivateKey,
    #[error("certificate {index} is not a valid X.509 certificate: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("is not a SPIFFE bundle (a JSON object with a \"keys\" array): {0}")]
    BundleJson(String),
    #[error(
        "key {index} (\"use\": \"x509-svid\") must carry exactly one certificate in \"x5c\", \
         found {found}"
    )]
    X5cCount { index: usize, found: usize },
    #[error("key {index}: \"x5c\" is not base64: {reason}")]
    X5cBase64 { index: usize, reason: String },
    #[error("holds no X.509 authority (no key with \"use\": \"x509-svid\")")]
    NoX509Authorities,
    #[error(
        "certificate {index} was not issued by certificate {next}: the chain must be in order, \
         leaf first, root last"
    )]
    ChainOrder { index: usize, next: usize },
    #[error(
        "the last certificate is not self-signed: the chain must end with the root certificate"
    )]
    NoRoot,
}

/// All certificates of a PEM file, each checked to parse as X.509.
pub fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TrustFileError> {
    // A key next to the certificates usually means the wrong file was named; refuse rather than
    // quietly trust a file someone may copy around as "just the bundle".
    if pem
        .windows(b"PRIVATE KEY-----".len())
        .any(|w| w == b"PRIVATE KEY-----")
    {
        return Err(TrustFileError::PrivateKey);
    }
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustFileError::Pem(e.to_string()))?;
    if certificates.is_empty() {
        return Err(TrustFileError::NoCertificates);
    }
    for (i, der) in certificates.iter().enumerate() {
        parse_x509(der, i + 1)?;
    }
    Ok(certificates)
}

/// The X.509 authorities of a SPIFFE bundle (SPIFFE Trust Domain and Bundle, section 4): keys
/// with `"use": "x509-svid"`, each carrying exactly one DER certificate in `x5c`. JWT keys are
/// ignored: tcverify verifies X.509-SVIDs only.
pub fn parse_spiffe_bundle(json: &[u8]) -> Result<Vec<CertificateDer<'static>>, TrustFileError> {
    #[derive(serde::Deserialize)]
    struct Bundle {
        keys: Vec<Key>,
    }
    #[derive(serde::Deserialize)]
    struct Key {
        #[serde(rename = "use")]
        usage: Option<String>,
        #[serde(default)]
        x5c: Vec<String>,
    }
    let bundle: Bundle =
        serde_json::from_slice(json).map_err(|e| TrustFileError::BundleJson(e.to_string()))?;
    let mut authorities = Vec::new();
    for (i, key) in bundle.keys.iter().enumerate() {
        if key.usage.as_deref() != Some("x509-svid") {
            continue;
        }
        let index = i + 1;
        let [encoded] = key.x5c.as_slice() else {
            return Err(TrustFileError::X5cCount {
                index,
                found: key.x5c.len(),
            });
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| TrustFileError::X5cBase64 {
                index,
                reason: e.to_string(),
            })?;
        let der = CertificateDer::from(der);
        parse_x509(&der, authorities.len() + 1)?;
        authorities.push(der);
    }
    if authorities.is_empty() {
        return Err(TrustFileError::NoX509Authorities);
    }
    Ok(authorities)
}

/// A timestamp authority from its PEM chain, leaf first and root last. A single self-signed
/// certificate is both leaf and root. The order is checked by issuer and subject names, so a
/// shuffled or truncated chain is caught here rather than as a failed timestamp later.
pub fn parse_tsa_chain(
    pem: &[u8],
    valid_for: Option<TimeRange>,
) -> Result<TsaAuthority, TrustFileError> {
    tsa_from_chain(parse_pem_certificates(pem)?, valid_for)
}

/// A timestamp authority from its chain (at least one certificate), leaf first and root last,
/// with the same checks as [`parse_tsa_chain`].
pub fn tsa_from_chain(
    chain: Vec<CertificateDer<'static>>,
    valid_for: Option<TimeRange>,
) -> Result<TsaAuthority, TrustFileError> {
    if chain.is_empty() {
        return Err(TrustFileError::NoCertificates);
    }
    let parsed = chain
        .iter()
        .enumerate()
        .map(|(i, der)| parse_x509(der, i + 1))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0].issuer().as_raw() != pair[1].subject().as_raw() {
            return Err(TrustFileError::ChainOrder {
                index: i + 1,
                next: i + 2,
            });
        }
    }
    let root = parsed.last().expect("checked above: at least one");
    if root.issuer().as_raw() != root.subject().as_raw() {
        return Err(TrustFileError::NoRoot);
    }
    let mut chain: Vec<DerCertificate> = chain
        .into_iter()
        .map(|der| DerCertificate::new(der.to_vec()))
        .collect();
    let root = chain.pop().expect("at least one certificate");
    let (leaf, intermediates) = if chain.is_empty() {
        (root.clone(), Vec::new())
    } else {
        let leaf = chain.remove(0);
        (leaf, chain)
    };
    Ok(TsaAuthority::new(leaf, intermediates, root, valid_for))
}

pub(crate) fn parse_x509<'a>(
    der: &'a CertificateDer<'_>,
    index: usize,
) -> Result<X509Certificate<'a>, TrustFileError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(TrustFileError::BadCertificate {
            index,
            reason: format!("{} bytes after the certificate", rest.len()),
        }),
        Ok((_, certificate)) => Ok(certificate),
        Err(e) => Err(TrustFileError::BadCertificate {
            index,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    /// A CA certificate and the key that signs with it.
    pub(crate) struct TestCa {
        pub(crate) pem: String,
        pub(crate) der: Vec<u8>,
        pub(crate) params: CertificateParams,
        pub(crate) key: KeyPair,
    }

    pub(crate) fn ca(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            params,
            key,
        }
    }

    /// A certificate named `name` issued by `issuer`, as PEM.
    pub(crate) fn issued(name: &str, issuer: &TestCa) -> String {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&issuer.params, &issuer.key);
        params.signed_by(&key, &issuer).unwrap().pem()
    }

    #[test]
    fn pem_bundle_yields_every_certificate() {
        let (a, b) = (ca("a"), ca("b"));
        let certs = parse_pem_certificates(format!("{}{}", a.pem, b.pem).as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[1].as_ref(), b.der.as_slice());
    }

    #[test]
    fn pem_bundle_rejected_if_empty() {
        assert_eq!(
            parse_pem_certificates(b"# nothing here\n"),
            Err(TrustFileError::NoCertificates)
        );
    }

    #[test]
    fn pem_bundle_rejected_if_certificate_is_not_x509() {
        let pem = "-----BEGIN CERTIFICATE-----\nYWJjZA==\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_pem_certificates(pem.as_bytes()),
            Err(TrustFileError::BadCertificate { index: 1, .. })
        ));
    }

    #[test]
    fn pem_bundle_rejected_if_it_holds_a_private_key() {
        let a = ca("a");
        let pem = format!("{}{}", a.pem, a.key.serialize_pem());
        assert_eq!(
            parse_pem_certificates(pem.as_bytes()),
            Err(TrustFileError::PrivateKey)
        );
    }

    fn jwks(keys: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "spiffe_sequence": 1, "keys": keys })).unwrap()
    }

    fn b64(der: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    #[test]
    fn spiffe_bundle_yields_x509_svid_keys_only() {
        let (a, b) = (ca("a"), ca("b"));
        let json = jwks(serde_json::json!([
            { "use": "x509-svid", "kty": "EC", "x5c": [b64(&a.der)] },
            { "use": "jwt-svid", "kty": "EC", "kid": "k" },
            { "use": "x509-svid", "kty": "EC", "x5c": [b64(&b.der)] },
        ]));
        let certs = parse_spiffe_bundle(&json).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), a.der.as_slice());
    }

    #[test]
    fn spiffe_bundle_rejected_if_x509_key_has_two_certificates() {
        let a = ca("a");
        let json = jwks(serde_json::json!([
            { "use": "x509-svid", "x5c": [b64(&a.der), b64(&a.der)] },
        ]));
        assert_eq!(
            parse_spiffe_bundle(&json),
            Err(TrustFileError::X5cCount { index: 1, found: 2 })
        );
    }

    #[test]
    fn spiffe_bundle_rejected_if_it_has_no_x509_authority() {
        let json = jwks(serde_json::json!([{ "use": "jwt-svid", "kid": "k" }]));
        assert_eq!(
            parse_spiffe_bundle(&json),
            Err(TrustFileError::NoX509Authorities)
        );
    }

    #[test]
    fn spiffe_bundle_rejected_if_not_json() {
        assert!(matches!(
            parse_spiffe_bundle(b"-----BEGIN CERTIFICATE-----"),
            Err(TrustFileError::BundleJson(_))
        ));
    }

    #[test]
    fn tsa_chain_of_one_self_signed_certificate_is_leaf_and_root() {
        let root = ca("tsa");
        let tsa = parse_tsa_chain(root.pem.as_bytes(), None).unwrap();
        assert_eq!(tsa.leaf.as_bytes(), root.der.as_slice());
        assert_eq!(tsa.root.as_bytes(), root.der.as_slice());
        assert!(tsa.intermediates.is_empty());
    }

    #[test]
    fn tsa_chain_splits_leaf_intermediates_and_root() {
        let root = ca("root");
        let leaf = issued("tsa", &root);
        let tsa = parse_tsa_chain(format!("{leaf}{}", root.pem).as_bytes(), None).unwrap();
        assert_eq!(tsa.root.as_bytes(), root.der.as_slice());
        assert_ne!(tsa.leaf.as_bytes(), root.der.as_slice());
        assert!(tsa.intermediates.is_empty());
    }

    #[test]
    fn tsa_chain_rejected_if_root_comes_first() {
        let root = ca("root");
        let leaf = issued("tsa", &root);
        assert_eq!(
            parse_tsa_chain(format!("{}{leaf}", root.pem).as_bytes(), None).unwrap_err(),
            TrustFileError::ChainOrder { index: 1, next: 2 }
        );
    }

    #[test]
    fn tsa_chain_rejected_if_it_does_not_end_with_a_root() {
        let root = ca("root");
        let leaf = issued("tsa", &root);
        assert_eq!(
            parse_tsa_chain(leaf.as_bytes(), None).unwrap_err(),
            TrustFileError::NoRoot
        );
    }
}
