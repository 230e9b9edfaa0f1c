//! SPIFFE mutual TLS for the API. Both ends take their X.509-SVID and the trust domain's
//! bundle from a live Workload API source, so a rotated SVID or bundle is used by the next
//! handshake without a restart. The server accepts only clients whose SVID chains to its own
//! trust domain (anything else fails the handshake); which of those may do what is decided
//! per request by the daemon's grants. The client accepts only the server's SPIFFE ID.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use spiffe::x509_source::SvidPicker;
use spiffe::{X509Source, X509Svid};
use spiffe_rustls::{LocalOnly, authorizer, mtls_client, mtls_server};
use tcdist_verify::spiffe_id::{SpiffeId, TrustDomain};
use tcdist_verify::svid::parse_leaf;

/// Picks the SVID issued for one SPIFFE ID: a workload often holds several (the daemon is
/// also the signer and the promoter), and the Workload API's first is not necessarily it.
struct ById(String);

impl SvidPicker for ById {
    fn pick_svid(&self, svids: &[Arc<X509Svid>]) -> Option<usize> {
        svids
            .iter()
            .position(|svid| svid.spiffe_id().to_string() == self.0)
    }
}

/// A live source of this workload's SVID for `id` (the Workload API's default SVID when
/// `None`), from the agent at `endpoint` (`unix:///…`).
pub async fn workload_source(endpoint: &str, id: Option<&SpiffeId>) -> Result<X509Source> {
    let mut builder = X509Source::builder().endpoint(endpoint);
    if let Some(id) = id {
        builder = builder.picker(ById(id.as_str().to_owned()));
    }
    let source = builder.build().await.with_context(|| {
        format!("fetching this process's X.509-SVID from the SPIFFE Workload API at {endpoint}")
    })?;
    source.svid().map_err(|e| {
        anyhow!(
            "the SPIRE agent at {endpoint} issued no X.509-SVID{} to this process ({e}); check \
             that a registration entry matches it",
            id.map(|id| format!(" for {id}")).unwrap_or_default()
        )
    })?;
    Ok(source)
}

/// The SPIFFE ID of the SVID a source currently serves.
pub fn current_id(source: &X509Source) -> Result<SpiffeId> {
    let svid = source
        .svid()
        .context("the Workload API source has no SVID")?;
    SpiffeId::parse(&svid.spiffe_id().to_string()).map_err(|e| anyhow!("{e}"))
}

/// The server's TLS config: its own SVID, client certificates required and verified against
/// `trust_domain`'s bundle alone.
pub fn server_config(
    source: X509Source,
    trust_domain: &TrustDomain,
) -> Result<rustls::ServerConfig> {
    let domain: spiffe::TrustDomain = trust_domain
        .as_str()
        .try_into()
        .map_err(|e| anyhow!("trust domain {trust_domain}: {e}"))?;
    mtls_server(source)
        .authorize(authorizer::trust_domains([trust_domain.as_str()])?)
        .trust_domain_policy(LocalOnly(domain))
        .with_alpn_protocols([b"http/1.1"])
        .build()
        .context("building the API's TLS server config")
}

/// The client's TLS config: its own SVID, and a server that must present `server`'s SVID.
pub fn client_config(source: X509Source, server: &SpiffeId) -> Result<rustls::ClientConfig> {
    let domain: spiffe::TrustDomain = server
        .trust_domain()
        .try_into()
        .map_err(|e| anyhow!("trust domain of {server}: {e}"))?;
    mtls_client(source)
        .authorize(authorizer::exact([server.as_str()])?)
        .trust_domain_policy(LocalOnly(domain))
        .with_alpn_protocols([b"http/1.1"])
        .build()
        .context("building the API's TLS client config")
}

/// The SPIFFE ID of the peer of an established connection (its leaf certificate's URI SAN).
pub fn peer_id(certificates: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Result<SpiffeId> {
    let leaf = certificates
        .and_then(|chain| chain.first())
        .context("the peer presented no certificate")?;
    Ok(parse_leaf(leaf.as_ref())
        .map_err(|e| anyhow!("the peer's certificate is not an X.509-SVID: {e}"))?
        .id)
}
