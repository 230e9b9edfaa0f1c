//! Where the signer's X.509-SVID comes from: the SPIFFE Workload API (fetched afresh for every
//! signing, so a rotated SVID is always the one used, and waited on for a short while when it
//! is about to expire), or files for offline signing. Either
//! way `distd` refuses an SVID that is not its configured signer ID, not an X.509-SVID, whose
//! key does not match, or that expires too soon to finish signing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use jiff::Timestamp;
use tcdist_verify::spiffe_id::SpiffeId;
use tcdist_verify::svid::{SvidLeaf, parse_leaf};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use super::key::SigningKey;

#[derive(Clone, Debug)]
pub enum SvidSource {
    /// The SPIFFE Workload API at this endpoint (`unix:///path/to/agent.sock`).
    WorkloadApi { endpoint: String },
    /// PEM files: the certificate (leaf first, then intermediates), its PKCS#8 key, and
    /// optionally the trust domain's bundle (used to check the result before publishing).
    Files {
        certificate: PathBuf,
        key: PathBuf,
        bundle: Option<PathBuf>,
    },
}

/// A signer's SVID, checked and ready to sign. The key lives only as long as this value.
#[derive(Debug)]
pub struct SigningIdentity {
    pub leaf: SvidLeaf,
    /// DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The trust domain's authorities (DER), when the source provides them.
    pub bundle: Vec<Vec<u8>>,
    pub key: SigningKey,
}

impl SvidSource {
    /// Fetches the current SVID for `signer` and checks it may sign now. An agent's SVID that
    /// is valid but too close to expiry is waited on (at most until it expires): the agent
    /// rotates SVIDs at half their TTL, so a short one is replaced soon, e.g. after the
    /// entry's TTL was raised.
    pub async fn fetch(
        &self,
        signer: &SpiffeId,
        min_lifetime: Duration,
    ) -> Result<SigningIdentity> {
        match self {
            SvidSource::WorkloadApi { endpoint } => {
                fetch_from_agent(endpoint, signer, min_lifetime).await
            }
            SvidSource::Files {
                certificate,
                key,
                bundle,
            } => {
                let identity = checked(read_files(certificate, key, bundle.as_ref())?, signer)?;
                check_lifetime(&identity.leaf, Timestamp::now(), min_lifetime)?;
                Ok(identity)
            }
        }
    }
}

type Material = (Vec<Vec<u8>>, Zeroizing<Vec<u8>>, Vec<Vec<u8>>);

/// Everything but the lifetime: the SVID parses, is the configured signer, and its key
/// belongs to its certificate.
fn checked((chain, key, bundle): Material, signer: &SpiffeId) -> Result<SigningIdentity> {
    let leaf_der = chain
        .first()
        .ok_or_else(|| anyhow!("the SVID has no certificate"))?;
    let leaf = parse_leaf(leaf_der).map_err(|reason| anyhow!("the SVID is refused: {reason}"))?;
    if leaf.id != *signer {
        bail!(
            "the SVID is for {}, but this signer is configured as {signer}; refusing to sign",
            leaf.id
        );
    }
    let key = SigningKey::from_pkcs8(key)?;
    check_key_matches(leaf_der, &key)?;
    Ok(SigningIdentity {
        leaf,
        chain,
        bundle,
        key,
    })
}

async fn fetch_from_agent(
    endpoint: &str,
    signer: &SpiffeId,
    min_lifetime: Duration,
) -> Result<SigningIdentity> {
    let client = spiffe::WorkloadApiClient::connect_to(endpoint)
        .await
        .with_context(|| format!("connecting to the SPIFFE Workload API at {endpoint}"))?;
    let no_svid = || {
        format!(
            "the SPIRE agent at {endpoint} issued no X.509-SVID to this process; check that a \
             registration entry for {signer} matches this binary (uid and path selectors)"
        )
    };
    let mut updates = Box::pin(client.stream_x509_contexts().await.with_context(no_svid)?);
    // Waiting is bounded by the lifetime asked for, whatever the agent sends.
    let give_up = tokio::time::Instant::now() + min_lifetime;
    let mut update = updates.next().await;
    loop {
        let context = update
            .ok_or_else(|| anyhow!("the SPIRE agent at {endpoint} closed the Workload API stream"))?
            .with_context(no_svid)?;
        let identity = checked(material_for(&context, endpoint, signer)?, signer)?;
        let now = Timestamp::now();
        let left = identity.leaf.not_after.duration_since(now);
        let usable = check_lifetime(&identity.leaf, now, min_lifetime);
        // An SVID shorter than the lifetime asked for says the entry's TTL is: its successor
        // would be no better.
        let too_short_ttl = identity
            .leaf
            .not_after
            .duration_since(identity.leaf.not_before)
            < jiff::SignedDuration::try_from(min_lifetime).unwrap_or(jiff::SignedDuration::MAX);
        if usable.is_ok()
            || left.is_negative()
            || too_short_ttl
            || tokio::time::Instant::now() >= give_up
        {
            return usable.map(|()| identity);
        }
        eprintln!(
            "distd: the SVID for {signer} expires in {}s, under the {}s needed to sign; waiting \
             for the agent to rotate it",
            left.as_secs(),
            min_lifetime.as_secs()
        );
        let until = give_up.min(tokio::time::Instant::now() + left.unsigned_abs());
        match tokio::time::timeout_at(until, updates.next()).await {
            Ok(next) => update = next,
            Err(_) => return usable.map(|()| identity),
        }
    }
}

/// The signer's SVID, its key and its trust domain's bundle, from one Workload API update.
fn material_for(
    context: &spiffe::X509Context,
    endpoint: &str,
    signer: &SpiffeId,
) -> Result<Material> {
    let issued: Vec<String> = context
        .svids()
        .iter()
        .map(|svid| svid.spiffe_id().to_string())
        .collect();
    let svid = context
        .svids()
        .iter()
        .find(|svid| svid.spiffe_id().to_string() == signer.as_str())
        .ok_or_else(|| {
            anyhow!(
                "the SPIRE agent at {endpoint} did not issue {signer} to this process (it \
                 issued: {}); refusing to sign",
                if issued.is_empty() {
                    "nothing".to_owned()
                } else {
                    issued.join(", ")
                }
            )
        })?;
    let chain = svid
        .cert_chain()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let key = Zeroizing::new(svid.private_key().as_bytes().to_vec());
    let bundle = context
        .bundle_set()
        .get(svid.spiffe_id().trust_domain())
        .map(|b| {
            b.authorities()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect()
        })
        .unwrap_or_default();
    Ok((chain, key, bundle))
}

fn read_files(certificate: &PathBuf, key: &PathBuf, bundle: Option<&PathBuf>) -> Result<Material> {
    let chain = read_certificates(certificate)?;
    let key_pem = Zeroizing::new(
        std::fs::read(key).with_context(|| format!("reading SVID key {}", key.display()))?,
    );
    let block =
        pem::parse(&*key_pem).map_err(|e| anyhow!("SVID key {} is not PEM: {e}", key.display()))?;
    if block.tag() != "PRIVATE KEY" {
        bail!(
            "SVID key {} is a {:?} PEM block; a PKCS#8 \"PRIVATE KEY\" is needed (convert with \
             `openssl pkcs8 -topk8 -nocrypt`)",
            key.display(),
            block.tag()
        );
    }
    let key = Zeroizing::new(block.into_contents());
    let bundle = bundle
        .map(read_certificates)
        .transpose()?
        .unwrap_or_default();
    Ok((chain, key, bundle))
}

/// The certificates of a PEM file (DER, in file order), read by the verifier's own reader: each
/// must parse as X.509, and a file that also holds a private key is refused.
pub fn read_certificates(path: &PathBuf) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(tcdist_verify::trust::parse_pem_certificates(&text)
        .with_context(|| format!("{}", path.display()))?
        .into_iter()
        .map(|der| der.to_vec())
        .collect())
}

fn check_key_matches(leaf: &[u8], key: &SigningKey) -> Result<()> {
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|e| anyhow!("the SVID certificate does not parse: {e}"))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key() {
        bail!("the SVID private key does not belong to its certificate");
    }
    Ok(())
}

fn check_lifetime(leaf: &SvidLeaf, now: Timestamp, min_lifetime: Duration) -> Result<()> {
    if now < leaf.not_before {
        bail!(
            "the SVID for {} is not valid before {}; refusing to sign",
            leaf.id,
            leaf.not_before
        );
    }
    let left = leaf.not_after.duration_since(now);
    if left.is_negative() || left.unsigned_abs() < min_lifetime {
        bail!(
            "the SVID for {} expires at {} ({}s from now); at least {}s are required to sign \
             (wait for the agent to rotate it, or lower --min-svid-lifetime)",
            leaf.id,
            leaf.not_after,
            left.as_secs(),
            min_lifetime.as_secs()
        );
    }
    Ok(())
}
