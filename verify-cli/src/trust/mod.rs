//! Trust material as loaded values: per trust domain, the X.509 authorities that SVIDs must
//! chain to, and the timestamp authorities whose RFC 3161 tokens prove signing time.
//!
//! The policy file names these (see `verify::policy`); loading it reads the files here, so a
//! [`TrustMaterial`] holds parsed certificates. Only bundles served by the local SPIRE agent are
//! fetched later, at verification time, because they rotate.

pub mod files;
pub mod tlog;
mod workload_api;

use std::collections::HashMap;

use rustls_pki_types::CertificateDer;
use sigstore_types::TsaAuthority;

use crate::spiffe_id::TrustDomain;

pub use files::{TrustFileError, parse_pem_certificates, parse_spiffe_bundle, parse_tsa_chain};
pub use workload_api::{WORKLOAD_API_ENDPOINT_ENV, WORKLOAD_API_TIMEOUT, fetch_x509_authorities};

/// Where a trust domain's X.509 authorities come from.
#[derive(Clone, Debug)]
pub enum TrustDomainBundle {
    /// Read from a PEM file or SPIFFE bundle when the policy was loaded.
    Certificates(Vec<CertificateDer<'static>>),
    /// Fetched from the SPIFFE Workload API at `SPIFFE_ENDPOINT_SOCKET` when needed.
    WorkloadApi,
}

impl TrustDomainBundle {
    /// The trust domain's X.509 authorities (trust anchors for its SVIDs).
    pub async fn authorities(
        &self,
        trust_domain: &TrustDomain,
    ) -> Result<Vec<CertificateDer<'static>>, TrustError> {
        match self {
            TrustDomainBundle::Certificates(certificates) => Ok(certificates.clone()),
            TrustDomainBundle::WorkloadApi => {
                let endpoint = std::env::var(WORKLOAD_API_ENDPOINT_ENV).map_err(|_| {
                    TrustError::WorkloadApiEndpointUnset {
                        trust_domain: trust_domain.clone(),
                    }
                })?;
                fetch_x509_authorities(&endpoint, trust_domain).await
            }
        }
    }

    /// One line for summaries: the source and, for files, the number of authorities.
    pub fn describe(&self) -> String {
        match self {
            TrustDomainBundle::Certificates(certificates) => {
                format!("{} X.509 authorities", certificates.len())
            }
            TrustDomainBundle::WorkloadApi => {
                format!("SPIFFE Workload API (${WORKLOAD_API_ENDPOINT_ENV})")
            }
        }
    }
}

/// Everything a verifier trusts, keyed as the policy declares it.
#[derive(Clone, Debug, Default)]
pub struct TrustMaterial {
    pub domains: HashMap<TrustDomain, TrustDomainBundle>,
    /// By the name the policy gives them, sorted by name.
    pub timestamp_authorities: Vec<(String, TsaAuthority)>,
    /// Transparency logs, by the name the policy gives them, sorted by name.
    pub transparency_logs: Vec<(String, tlog::TransparencyLog)>,
}

impl TrustMaterial {
    /// The X.509 authorities of `trust_domain`; a trust domain the policy does not declare has
    /// none, and that is an error rather than an empty list.
    pub async fn authorities(
        &self,
        trust_domain: &TrustDomain,
    ) -> Result<Vec<CertificateDer<'static>>, TrustError> {
        match self.domains.get(trust_domain) {
            Some(bundle) => bundle.authorities(trust_domain).await,
            None => Err(TrustError::UnknownTrustDomain {
                trust_domain: trust_domain.clone(),
            }),
        }
    }

    pub fn transparency_log(&self, name: &str) -> Option<&tlog::TransparencyLog> {
        self.transparency_logs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, log)| log)
    }

    pub fn timestamp_authority(&self, name: &str) -> Option<&TsaAuthority> {
        self.timestamp_authorities
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, tsa)| tsa)
    }
}

/// Trust material that could not be obtained at verification time.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("the policy declares no trust domain {trust_domain}, so none of its SVIDs is trusted")]
    UnknownTrustDomain { trust_domain: TrustDomain },
    #[error(
        "trust domain {trust_domain} takes its bundle from the SPIFFE Workload API, but \
         {WORKLOAD_API_ENDPOINT_ENV} is not set"
    )]
    WorkloadApiEndpointUnset { trust_domain: TrustDomain },
    #[error("{WORKLOAD_API_ENDPOINT_ENV}={endpoint:?} is not a Workload API address: {detail}")]
    WorkloadApiEndpointInvalid { endpoint: String, detail: String },
    #[error(
        "cannot reach the SPIFFE Workload API at {endpoint} ({WORKLOAD_API_ENDPOINT_ENV}) for \
         the bundle of trust domain {trust_domain}: {detail}"
    )]
    WorkloadApiUnavailable {
        endpoint: String,
        trust_domain: TrustDomain,
        detail: String,
    },
    #[error(
        "the SPIFFE Workload API at {endpoint} refused the bundle request for trust domain \
         {trust_domain}: {detail}"
    )]
    WorkloadApiRefused {
        endpoint: String,
        trust_domain: TrustDomain,
        detail: String,
    },
    #[error(
        "the SPIFFE Workload API at {endpoint} has no X.509 bundle for trust domain {trust_domain}"
    )]
    WorkloadApiNoBundle {
        endpoint: String,
        trust_domain: TrustDomain,
    },
}

impl TrustError {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        let offline = "or give the trust domain a `bundle` file in the policy to verify without \
                       the agent";
        match self {
            TrustError::UnknownTrustDomain { trust_domain } => format!(
                "add [trust_domains.\"{trust_domain}\"] to the policy if its signers are to be \
                 trusted"
            ),
            TrustError::WorkloadApiEndpointUnset { .. } => format!(
                "set {WORKLOAD_API_ENDPOINT_ENV} to the SPIRE agent's socket (e.g. \
                 unix:///run/spire/agent/public/api.sock), {offline}"
            ),
            TrustError::WorkloadApiEndpointInvalid { .. } => format!(
                "write {WORKLOAD_API_ENDPOINT_ENV} as unix:///path/to/api.sock or \
                 tcp://IP:PORT, {offline}"
            ),
            TrustError::WorkloadApiUnavailable { .. } => format!(
                "start the SPIRE agent, or point {WORKLOAD_API_ENDPOINT_ENV} at its socket, \
                 {offline}"
            ),
            TrustError::WorkloadApiRefused { .. } => format!(
                "register this workload with the SPIRE server (its selectors must match), \
                 {offline}"
            ),
            TrustError::WorkloadApiNoBundle { trust_domain, .. } => format!(
                "the agent knows no bundle for {trust_domain}: federate it with this trust \
                 domain, {offline}"
            ),
        }
    }
}
