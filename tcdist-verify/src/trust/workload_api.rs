//! Trust domain bundles from the local SPIRE agent, over the SPIFFE Workload API
//! (`FetchX509Bundles`). One request per call: a verification needs the bundle once, and the
//! agent is local, so there is no cache to go stale.

use std::time::Duration;

use rustls_pki_types::CertificateDer;
use spiffe::WorkloadApiClient;
use spiffe::WorkloadApiError;
use spiffe::transport::{Endpoint, TransportError};

use super::TrustError;
use crate::spiffe_id::TrustDomain;
use tcdist_oci::registry::error_chain;

/// The variable the SPIFFE Workload API standard names for the agent's address.
pub const WORKLOAD_API_ENDPOINT_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// A local agent answers in milliseconds; one that does not answer within this is treated as
/// unavailable rather than left to hang a build.
pub const WORKLOAD_API_TIMEOUT: Duration = Duration::from_secs(10);

/// The X.509 authorities of `trust_domain` as the agent at `endpoint` serves them
/// (`unix:///path/api.sock` or `tcp://IP:PORT`).
pub async fn fetch_x509_authorities(
    endpoint: &str,
    trust_domain: &TrustDomain,
) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let parsed = Endpoint::parse(endpoint).map_err(|e| TrustError::WorkloadApiEndpointInvalid {
        endpoint: endpoint.to_owned(),
        detail: e.to_string(),
    })?;
    let unavailable = |detail: String| TrustError::WorkloadApiUnavailable {
        endpoint: endpoint.to_owned(),
        trust_domain: trust_domain.clone(),
        detail,
    };
    let fetch = async {
        let client = WorkloadApiClient::connect(parsed).await?;
        client.fetch_x509_bundles().await
    };
    let bundles = match tokio::time::timeout(WORKLOAD_API_TIMEOUT, fetch).await {
        Err(_) => {
            return Err(unavailable(format!(
                "no answer within {}s",
                WORKLOAD_API_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e @ WorkloadApiError::Transport(TransportError::Connect(_)))) => {
            return Err(unavailable(error_chain(&e)));
        }
        Ok(Err(e)) => {
            return Err(TrustError::WorkloadApiRefused {
                endpoint: endpoint.to_owned(),
                trust_domain: trust_domain.clone(),
                detail: error_chain(&e),
            });
        }
        Ok(Ok(bundles)) => bundles,
    };
    let no_bundle = || TrustError::WorkloadApiNoBundle {
        endpoint: endpoint.to_owned(),
        trust_domain: trust_domain.clone(),
    };
    let key = spiffe::TrustDomain::new(trust_domain.as_str()).map_err(|_| no_bundle())?;
    let bundle = bundles.get(&key).ok_or_else(no_bundle)?;
    let authorities: Vec<_> = bundle
        .authorities()
        .iter()
        .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
        .collect();
    if authorities.is_empty() {
        return Err(no_bundle());
    }
    Ok(authorities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workload_api_unreachable_socket_names_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("unix://{}/api.sock", dir.path().display());
        let td = TrustDomain::parse("tcdist.test").unwrap();
        let err = fetch_x509_authorities(&endpoint, &td).await.unwrap_err();
        assert!(
            matches!(err, TrustError::WorkloadApiUnavailable { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&endpoint), "{message}");
        assert!(message.contains("tcdist.test"), "{message}");
        assert!(err.hint().contains("SPIFFE_ENDPOINT_SOCKET"));
    }

    #[tokio::test]
    async fn workload_api_endpoint_rejected_if_not_an_address() {
        let td = TrustDomain::parse("tcdist.test").unwrap();
        let err = fetch_x509_authorities("/run/agent.sock", &td)
            .await
            .unwrap_err();
        assert!(
            matches!(err, TrustError::WorkloadApiEndpointInvalid { .. }),
            "{err:?}"
        );
    }
}
