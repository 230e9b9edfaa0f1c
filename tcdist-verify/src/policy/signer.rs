//! The policy a signer holds its own output to before announcing it: exactly one repository,
//! exactly one signer, the trust domain bundle its SVID came with, and its one TSA. Built in
//! memory, so `distd` needs no policy file to check what it just signed.

use std::collections::HashMap;
use std::path::Path;

use rustls_pki_types::CertificateDer;

use super::{
    DEFAULT_MAX_SVID_LIFETIME, DEFAULT_MAX_VERIFICATION_AGE, IdentityRule, Policy,
    RepositoryPattern, RepositoryPolicy, SourceLocation,
};
use crate::spiffe_id::SpiffeId;
use crate::trust::tlog::TransparencyLog;
use crate::trust::{Authority, TrustDomainBundle, TrustMaterial, parse_tsa_chain};

/// Names of the one timestamp authority and the one log in a signer's policy.
const SIGNER_TSA: &str = "signer";
const SIGNER_LOG: &str = "signer";

impl Policy {
    /// `authorities` are DER certificates of the signer's trust domain; `tsa_chain` a PEM
    /// chain, leaf first; `log` the transparency log's PEM public key and origin, when
    /// signatures are logged.
    pub fn for_signer(
        repository: &str,
        signer: &SpiffeId,
        authorities: Vec<Vec<u8>>,
        tsa_chain: &Path,
        log: Option<(&Path, &str)>,
    ) -> Result<Policy, String> {
        let pem = std::fs::read(tsa_chain)
            .map_err(|e| format!("reading the TSA chain {}: {e}", tsa_chain.display()))?;
        let tsa = parse_tsa_chain(&pem, None)
            .map_err(|e| format!("the TSA chain {}: {e}", tsa_chain.display()))?;
        let pattern = RepositoryPattern::parse(repository)
            .map_err(|e| format!("repository {repository:?}: {e}"))?;
        let log = log
            .map(|(public_key, origin)| TransparencyLog::from_key_file(public_key, origin))
            .transpose()?;
        let location = SourceLocation {
            file: "(signer policy)".into(),
            line: 0,
            column: 0,
        };
        Ok(Policy {
            path: location.file.clone(),
            repositories: vec![RepositoryPolicy {
                pattern,
                signers: IdentityRule::SpiffeId(signer.clone()),
                threshold: 1,
                // Any identity of the signer's trust domain: a promoter reads the channel heads
                // and yank lists its peers signed, to sign the next.
                promoters: Some(IdentityRule::TrustDomain(signer.to_trust_domain())),
                // Nobody: a promoter reads every rollout statement its peers signed as theirs.
                brakes: None,
                timestamp_authorities: vec![SIGNER_TSA.to_owned()],
                transparency_logs: log.iter().map(|_| SIGNER_LOG.to_owned()).collect(),
                declared_at: location,
            }],
            trust: TrustMaterial {
                domains: HashMap::from([(
                    signer.to_trust_domain(),
                    TrustDomainBundle {
                        authorities: authorities
                            .into_iter()
                            .map(|der| Authority::new(CertificateDer::from(der)))
                            .collect(),
                        workload_api: false,
                    },
                )]),
                timestamp_authorities: vec![(SIGNER_TSA.to_owned(), tsa)],
                transparency_logs: log
                    .into_iter()
                    .map(|l| (SIGNER_LOG.to_owned(), l))
                    .collect(),
            },
            trust_domains: Vec::new(),
            timestamp_authorities: Vec::new(),
            repository_summaries: Vec::new(),
            trusted_root: None,
            max_svid_lifetime: DEFAULT_MAX_SVID_LIFETIME,
            max_verification_age: DEFAULT_MAX_VERIFICATION_AGE,
            logs_offline: false,
        })
    }
}
