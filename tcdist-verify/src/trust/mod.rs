//! Trust material as loaded values: per trust domain, the X.509 authorities that SVIDs must
//! chain to, the timestamp authorities whose RFC 3161 tokens prove signing time, and the
//! transparency logs that record signatures.
//!
//! The policy file names these (see `verify::policy`), and a Sigstore trusted root
//! ([`trusted_root`]) can add to them; loading reads the files here, so a [`TrustMaterial`]
//! holds parsed certificates and keys. Only bundles served by the local SPIRE agent are
//! fetched later, at verification time, because they rotate.

pub mod files;
pub mod tlog;
pub mod trusted_root;
mod workload_api;

use std::collections::HashMap;

use rustls_pki_types::CertificateDer;
use sigstore_types::{TimeRange, TsaAuthority};

use crate::spiffe_id::TrustDomain;

pub use files::{TrustFileError, parse_pem_certificates, parse_spiffe_bundle, parse_tsa_chain};
pub use workload_api::{WORKLOAD_API_ENDPOINT_ENV, WORKLOAD_API_TIMEOUT, fetch_x509_authorities};

/// One X.509 authority of a trust domain: a trust anchor for its SVIDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    pub certificate: CertificateDer<'static>,
    /// When the authority's SVIDs count (a trusted root's `validFor`); `None`: whenever the
    /// certificate itself is valid.
    pub valid_for: Option<TimeRange>,
}

impl Authority {
    pub fn new(certificate: CertificateDer<'static>) -> Self {
        Self {
            certificate,
            valid_for: None,
        }
    }

    /// Whether a signature made at `at` may chain to this authority.
    pub fn trusted_at(&self, at: jiff::Timestamp) -> bool {
        self.valid_for.is_none_or(|window| window.contains(at))
    }
}

/// Where a trust domain's X.509 authorities come from: files read when the policy was loaded
/// (PEM or SPIFFE bundles, trusted roots), the local SPIRE agent, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustDomainBundle {
    pub authorities: Vec<Authority>,
    /// Also fetched from the SPIFFE Workload API at `SPIFFE_ENDPOINT_SOCKET` when needed,
    /// because the agent's bundle rotates.
    pub workload_api: bool,
}

/// The narrowest of two windows in which an item of trust counts: a time counts only if both
/// count it. `None` is no window (always). Windows that do not overlap give an empty window
/// (its end before its start), in which nothing counts.
pub fn narrowest(a: Option<TimeRange>, b: Option<TimeRange>) -> Option<TimeRange> {
    match (a, b) {
        (None, window) | (window, None) => window,
        (Some(a), Some(b)) => Some(TimeRange::new(
            a.start.max(b.start),
            match (a.end, b.end) {
                (None, end) | (end, None) => end,
                (Some(a), Some(b)) => Some(a.min(b)),
            },
        )),
    }
}

impl TrustDomainBundle {
    /// Adds authorities, each certificate once: one that is already there (from another
    /// source) counts only within both windows.
    pub fn add(&mut self, authorities: impl IntoIterator<Item = Authority>) {
        for authority in authorities {
            match self
                .authorities
                .iter_mut()
                .find(|known| known.certificate == authority.certificate)
            {
                Some(known) => known.valid_for = narrowest(known.valid_for, authority.valid_for),
                None => self.authorities.push(authority),
            }
        }
    }

    /// The trust domain's X.509 authorities (trust anchors for its SVIDs).
    pub async fn authorities(
        &self,
        trust_domain: &TrustDomain,
    ) -> Result<Vec<Authority>, TrustError> {
        let mut bundle = self.clone();
        if self.workload_api {
            let endpoint = std::env::var(WORKLOAD_API_ENDPOINT_ENV).map_err(|_| {
                TrustError::WorkloadApiEndpointUnset {
                    trust_domain: trust_domain.clone(),
                }
            })?;
            bundle.add(
                fetch_x509_authorities(&endpoint, trust_domain)
                    .await?
                    .into_iter()
                    .map(Authority::new),
            );
        }
        Ok(bundle.authorities)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn range(start: &str, end: Option<&str>) -> Option<TimeRange> {
        Some(TimeRange::new(at(start), end.map(at)))
    }

    #[test]
    fn narrowest_window_is_the_intersection() {
        let open = range("2026-01-01T00:00:00Z", None);
        let closed = range("2025-01-01T00:00:00Z", Some("2026-06-01T00:00:00Z"));
        assert_eq!(narrowest(None, None), None);
        assert_eq!(narrowest(open, None), open);
        assert_eq!(narrowest(None, closed), closed);
        assert_eq!(
            narrowest(open, closed),
            range("2026-01-01T00:00:00Z", Some("2026-06-01T00:00:00Z"))
        );
    }

    #[test]
    fn windows_that_do_not_overlap_trust_at_no_time() {
        let early = range("2020-01-01T00:00:00Z", Some("2021-01-01T00:00:00Z"));
        let late = range("2022-01-01T00:00:00Z", None);
        let window = narrowest(early, late).unwrap();
        for time in [
            "2020-06-01T00:00:00Z",
            "2021-06-01T00:00:00Z",
            "2023-01-01T00:00:00Z",
        ] {
            assert!(!window.contains(at(time)), "{time}");
        }
    }

    #[test]
    fn narrowest_valid_for_wins_when_an_authority_is_added_twice() {
        let certificate = CertificateDer::from(vec![1, 2, 3]);
        let mut bundle = TrustDomainBundle::default();
        bundle.add([Authority::new(certificate.clone())]);
        let window = range("2026-01-01T00:00:00Z", Some("2026-02-01T00:00:00Z"));
        bundle.add([Authority {
            certificate: certificate.clone(),
            valid_for: window,
        }]);
        // What the Workload API adds later has no window: it narrows nothing.
        bundle.add([Authority::new(certificate)]);
        assert_eq!(bundle.authorities.len(), 1);
        assert_eq!(bundle.authorities[0].valid_for, window);
    }
}
