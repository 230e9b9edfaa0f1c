//! Which log entries a monitor watches: those whose leaf certificate names an identity the
//! policy gives power (signers, promoters, brakes of any repository), compared with the
//! verifier's own rules (exact SPIFFE ID parsing, the same identity rules), and those issued
//! by any CA key the trust domains have had (by the leaf's authority key ID), whatever ID the
//! certificate claims. A log entry holds only the leaf, so the issuer is known by key ID alone.

use std::collections::BTreeSet;

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::policy::IdentityRule;
use crate::policy::Policy;
use crate::svid::parse_leaf;

/// What makes an entry watched.
pub struct Watchlist {
    /// `(what the rule is, the rule)`, e.g. `("signers of toolchains/*", …)`.
    rules: Vec<(String, IdentityRule)>,
    /// Subject key IDs of every CA key of the trust domains.
    ca_key_ids: BTreeSet<Vec<u8>>,
}

/// A watched entry's signer, as its certificate says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedSigner {
    /// The SPIFFE ID, when the leaf is a valid X.509-SVID.
    pub spiffe_id: Option<String>,
    /// Why it is watched.
    pub because: String,
}

impl Watchlist {
    /// The identities `policy` gives power, and the CA key IDs `ca_key_ids`.
    pub fn new(policy: &Policy, ca_key_ids: BTreeSet<Vec<u8>>) -> Self {
        let mut rules = Vec::new();
        for repository in policy.repositories() {
            let name = repository.pattern().to_string();
            let roles = [
                ("signers", Some(repository.signers())),
                ("promoters", repository.promoters()),
                ("brakes", repository.brakes()),
            ];
            for (role, rule) in roles {
                if let Some(rule) = rule {
                    rules.push((format!("{role} of {name}"), rule.clone()));
                }
            }
        }
        Watchlist { rules, ca_key_ids }
    }

    /// Whether an entry signed with `certificate` (DER) is watched. `Err` when the
    /// certificate is not X.509 at all.
    pub fn check(&self, certificate: &[u8]) -> Result<Option<WatchedSigner>, String> {
        let (_, cert) = X509Certificate::from_der(certificate)
            .map_err(|e| format!("the entry's certificate does not parse: {e}"))?;
        let mut because = Vec::new();
        let spiffe_id = match parse_leaf(certificate) {
            Ok(leaf) => {
                because.extend(
                    self.rules
                        .iter()
                        .filter(|(_, rule)| rule.check(&leaf.id).is_ok())
                        .map(|(name, _)| name.clone()),
                );
                Some(leaf.id.to_string())
            }
            Err(_) => None,
        };
        if let Some(key_id) = authority_key_id(&cert)
            && self.ca_key_ids.contains(&key_id)
        {
            because.push(format!(
                "issued by CA key {} of a trust domain",
                hex::encode(&key_id)
            ));
        }
        Ok((!because.is_empty()).then(|| WatchedSigner {
            spiffe_id,
            because: because.join("; "),
        }))
    }
}

fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
}

/// The subject key ID of a CA certificate (DER), when it has one.
pub fn subject_key_id(certificate: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(certificate).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}
