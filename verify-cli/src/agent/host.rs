//! The agent's host ID, decided once at start: the config's `host_id`; else, when the config
//! names a Workload API (`spiffe_endpoint_socket`), the SPIFFE ID of the agent's own
//! X.509-SVID (the one `spiffe_id` names, else the Workload API's first); else none, and the
//! host is in no rollout's candidate arm. Never from a client.

use std::time::Duration;

use spiffe::transport::Endpoint;
use spiffe::{WorkloadApiClient, WorkloadApiError};

use super::config::AgentConfig;
use crate::host_id::HostId;
use tcdist_core::error::{Error, Result};
use tcdist_oci::registry::error_chain;
use tcdist_verify::spiffe_id::SpiffeId;
use tcdist_verify::trust::WORKLOAD_API_TIMEOUT;

/// Where the agent's host ID came from, for its start-up line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostIdentity {
    Configured(HostId),
    Svid { id: HostId, endpoint: String },
    None,
}

impl HostIdentity {
    pub fn host_id(&self) -> Option<&HostId> {
        match self {
            HostIdentity::Configured(id) | HostIdentity::Svid { id, .. } => Some(id),
            HostIdentity::None => None,
        }
    }

    /// The SPIFFE ID of the SVID the host ID came from, if it came from one.
    pub fn spiffe_id(&self) -> Option<SpiffeId> {
        match self {
            HostIdentity::Svid { id, .. } => SpiffeId::parse(id.as_str()).ok(),
            HostIdentity::Configured(_) | HostIdentity::None => None,
        }
    }

    /// One line for the agent's log.
    pub fn describe(&self) -> String {
        match self {
            HostIdentity::Configured(id) => format!("host ID {id} (the config's host_id)"),
            HostIdentity::Svid { id, endpoint } => {
                format!("host ID {id} (the SPIFFE ID of its SVID from {endpoint})")
            }
            HostIdentity::None => "no host ID (neither host_id nor spiffe_endpoint_socket is \
                                   set): this host is in no rollout's candidate arm"
                .to_owned(),
        }
    }
}

/// The host ID the config gives, or the one its Workload API gives the agent. A Workload API
/// that does not answer with the SVID wanted within [`WORKLOAD_API_TIMEOUT`] is a
/// configuration error (exit 2): the agent does not start with a host ID other than the one it
/// was set up for.
pub async fn resolve(config: &AgentConfig) -> Result<HostIdentity> {
    let usage = |e: String| Error::usage(format!("agent config: {e}"));
    if let Some(id) = config.host_id().map_err(usage)? {
        return Ok(HostIdentity::Configured(id));
    }
    let Some(endpoint) = &config.spiffe_endpoint_socket else {
        return Ok(HostIdentity::None);
    };
    let wanted = config.spiffe_id().map_err(usage)?;
    let hint = match (&wanted, &config.report_to) {
        (Some(wanted), _) => format!(
            "give the agent (its user and binary) a registration entry for {wanted} \
             (spire-config/README.md), or set spiffe_id to an SVID the Workload API gives it"
        ),
        (None, Some(_)) => "give the agent (its user and binary) an SVID \
                            (spire-config/README.md): with report_to, its SPIFFE ID is the \
                            host ID"
            .to_owned(),
        (None, None) => "set host_id in the agent config to name this host, or give the agent's \
                         user an SVID (spire-config/README.md); the host ID decides this host's \
                         arm in channel rollouts"
            .to_owned(),
    };
    let spiffe_id = svid_spiffe_id(endpoint, wanted.as_ref())
        .await
        .map_err(|detail| {
            Error::usage_with_hint(
                format!(
                    "agent config: no host ID: the agent's SVID could not be fetched from the \
                     Workload API at {endpoint}: {detail}"
                ),
                hint.clone(),
            )
        })?;
    let id = HostId::parse(&spiffe_id).map_err(|e| {
        Error::usage_with_hint(
            format!(
                "agent config: the SPIFFE ID of the agent's SVID ({spiffe_id}) is not a host ID: \
                 {e}"
            ),
            hint,
        )
    })?;
    Ok(HostIdentity::Svid {
        id,
        endpoint: endpoint.clone(),
    })
}

/// The SPIFFE ID of the X.509-SVID the Workload API at `endpoint` (`unix:///path/api.sock` or
/// `tcp://IP:PORT`) gives this process: the one for `wanted`, else its first (the default).
/// A Workload API that answers without it is asked again until [`WORKLOAD_API_TIMEOUT`] has
/// passed: a SPIRE agent serves a new registration entry only from its next sync with the
/// server (every few seconds), and until then answers "no identity issued".
async fn svid_spiffe_id(
    endpoint: &str,
    wanted: Option<&SpiffeId>,
) -> std::result::Result<String, String> {
    let parsed =
        Endpoint::parse(endpoint).map_err(|e| format!("not a Workload API address: {e}"))?;
    let deadline = tokio::time::Instant::now() + WORKLOAD_API_TIMEOUT;
    let secs = WORKLOAD_API_TIMEOUT.as_secs();
    loop {
        let fetch = async {
            let client = WorkloadApiClient::connect(parsed.clone()).await?;
            client.fetch_all_x509_svids().await
        };
        let why = match tokio::time::timeout_at(deadline, fetch).await {
            Err(_) => return Err(format!("no answer within {secs}s")),
            Ok(Err(WorkloadApiError::NoIdentityIssued)) => "it gives no SVID".to_owned(),
            Ok(Err(e)) => return Err(error_chain(&e)),
            Ok(Ok(svids)) => {
                match pick(
                    svids.iter().map(|s| s.spiffe_id().to_string()).collect(),
                    wanted,
                ) {
                    Ok(id) => return Ok(id),
                    Err(why) => why,
                }
            }
        };
        if tokio::time::Instant::now() + SVID_RETRY >= deadline {
            return Err(format!("{why} (asked for {secs}s)"));
        }
        tokio::time::sleep(SVID_RETRY).await;
    }
}

/// How long to wait before asking a Workload API that gave no SVID again.
const SVID_RETRY: Duration = Duration::from_millis(500);

/// The SVID wanted among those offered, else the first.
fn pick(offered: Vec<String>, wanted: Option<&SpiffeId>) -> std::result::Result<String, String> {
    match wanted {
        Some(wanted) if offered.iter().any(|id| id == wanted.as_str()) => {
            Ok(wanted.as_str().to_owned())
        }
        Some(wanted) => Err(format!(
            "it gives no SVID for spiffe_id {wanted}, only: {}",
            if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            }
        )),
        None => offered
            .into_iter()
            .next()
            .ok_or_else(|| "it gives no SVID".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> AgentConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            format!(
                "socket = \"/run/tcdist/agent.sock\"\nstore = \"/var/lib/tcdist/store\"\n\
                 policy = \"/etc/tcdist/policy.toml\"\n{extra}"
            ),
        )
        .unwrap();
        AgentConfig::load(&path).unwrap()
    }

    #[tokio::test]
    async fn host_id_is_none_without_host_id_or_workload_api() {
        let identity = resolve(&config("")).await.unwrap();
        assert_eq!(identity, HostIdentity::None);
        assert!(identity.describe().contains("no rollout's candidate arm"));
    }

    #[tokio::test]
    async fn host_id_from_the_config_wins_over_the_workload_api() {
        // The Workload API named is not asked: nothing listens there.
        let dir = tempfile::tempdir().unwrap();
        let identity = resolve(&config(&format!(
            "host_id = \"build-017\"\nspiffe_endpoint_socket = \"unix://{}/api.sock\"\n",
            dir.path().display()
        )))
        .await
        .unwrap();
        assert_eq!(
            identity,
            HostIdentity::Configured(HostId::parse("build-017").unwrap())
        );
    }

    #[test]
    fn svid_named_by_spiffe_id_is_picked_else_the_first() {
        let offered = || {
            vec![
                "spiffe://tcdist.test/ci/job".to_owned(),
                "spiffe://tcdist.test/buildkite/agent".to_owned(),
            ]
        };
        let agent = SpiffeId::parse("spiffe://tcdist.test/buildkite/agent").unwrap();
        assert_eq!(pick(offered(), Some(&agent)).unwrap(), agent.as_str());
        assert_eq!(
            pick(offered(), None).unwrap(),
            "spiffe://tcdist.test/ci/job"
        );
        let other = SpiffeId::parse("spiffe://tcdist.test/host/b-1").unwrap();
        assert_eq!(
            pick(offered(), Some(&other)).unwrap_err(),
            "it gives no SVID for spiffe_id spiffe://tcdist.test/host/b-1, only: \
             spiffe://tcdist.test/ci/job, spiffe://tcdist.test/buildkite/agent"
        );
        assert_eq!(pick(Vec::new(), None).unwrap_err(), "it gives no SVID");
    }

    #[tokio::test]
    async fn host_id_refused_if_the_workload_api_gives_no_svid_for_spiffe_id() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("unix://{}/api.sock", dir.path().display());
        let err = resolve(&config(&format!(
            "spiffe_endpoint_socket = \"{endpoint}\"\n\
             spiffe_id = \"spiffe://tcdist.test/buildkite/agent\"\n"
        )))
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains(&endpoint), "{err}");
        assert!(
            err.hint()
                .unwrap()
                .contains("registration entry for spiffe://tcdist.test/buildkite/agent"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn host_id_refused_if_the_workload_api_gives_no_svid() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("unix://{}/api.sock", dir.path().display());
        let err = resolve(&config(&format!(
            "spiffe_endpoint_socket = \"{endpoint}\"\n"
        )))
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains(&endpoint), "{err}");
        assert!(err.hint().unwrap().contains("set host_id"), "{err:?}");
    }
}
