//! The agent's configuration: one TOML file, owned by root, naming everything the agent trusts
//! and where it keeps its state. Nothing comes from the environment of whoever started it, and
//! nothing from its clients.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::SignedDuration;
use serde::Deserialize;

use super::admission::ConnectionLimits;
use super::prefetch::PrefetchSettings;
use super::sender::ReportSettings;
use super::served::OutcomeSettings;
use crate::host_id::HostId;
use tcdist_core::error::{Error, Result};
use tcdist_core::platform::Platform;
use tcdist_oci::reference::ReleaseRef;
use tcdist_oci::registry::RegistryArgs;
use tcdist_store::budget::StoreBudget;
use tcdist_verify::spiffe_id::SpiffeId;

/// The longest a verification may be reused: a yank or a moved tag must reach agents soon.
pub const MAX_VERIFICATION_CACHE: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The unix socket clients connect to.
    pub socket: PathBuf,
    /// Its permission bits, octal (default `0660`: the service user and `socket_group`).
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
    /// The group that may connect (the build agent's); default: the service user's group.
    pub socket_group: Option<String>,
    /// Connections one user (by uid) may hold open at once (default 64); more are refused.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// How long a connection may take to send its request (default "5s"; between 100ms and
    /// 60s); then it is closed.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
    /// The store the agent owns.
    pub store: PathBuf,
    /// The policy file, and optionally a Sigstore trusted root.
    pub policy: PathBuf,
    pub trust: Option<PathBuf>,
    /// Hash-chained audit records, one per decision.
    pub audit_log: Option<PathBuf>,
    /// Verify without contacting transparency logs.
    #[serde(default)]
    pub offline: bool,
    /// Layers fetched at once per pull.
    #[serde(default = "default_jobs")]
    pub jobs: usize,
    pub max_unpacked_bytes: Option<u64>,
    /// Mirrors of the registries: a `certs.d`-style directory of containerd `hosts.toml`
    /// files, or one such file (docs/mirrors.md).
    pub mirrors: Option<PathBuf>,
    /// How long a verification of one index digest is reused (default 5m, at most 1h); the
    /// tag is still resolved on every request.
    #[serde(default = "default_cache")]
    pub verification_cache: String,
    /// Run `fsck` on the store this often (e.g. "6h"); default: never.
    pub fsck_interval: Option<String>,
    /// Releases kept installed ahead of jobs: registry references, usually channels
    /// (`REGISTRY/REPO:stable`); during a channel's rollout, both arms.
    #[serde(default)]
    pub prefetch: Vec<String>,
    /// The platforms prefetched (default: this host's).
    pub prefetch_platforms: Option<Vec<String>>,
    /// How often the prefetched references are resolved again (default "5m"; between 1s and
    /// 24h), plus a random delay of up to `prefetch_jitter` (default "30s"; at most the
    /// interval), so a fleet's hosts do not all ask the registry at once.
    #[serde(default = "default_prefetch_interval")]
    pub prefetch_interval: String,
    #[serde(default = "default_prefetch_jitter")]
    pub prefetch_jitter: String,
    /// The store's budget in bytes (as `du` counts them): past it, the least recently used
    /// entries are removed, never one the prefetched references name, one a job is using or
    /// one of the `store_keep_last_used` most recently used (default 2). Default: no budget.
    pub store_max_bytes: Option<u64>,
    pub store_keep_last_used: Option<usize>,
    /// Serve Prometheus metrics on this loopback address (e.g. "127.0.0.1:9464").
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The SPIRE agent's Workload API, for policies with `workload_api = true`; also where
    /// the host ID comes from without `host_id` (the SPIFFE ID of the agent's own SVID).
    pub spiffe_endpoint_socket: Option<String>,
    /// Which of the Workload API's SVIDs is this host's: its SPIFFE ID is the host ID, and
    /// outcomes are sent with it. Default: the Workload API's first.
    pub spiffe_id: Option<String>,
    /// This host's ID, which decides its arm in a channel's rollout (printable ASCII, at most
    /// 255 bytes). Default: the SPIFFE ID of the agent's SVID when `spiffe_endpoint_socket`
    /// is set, else none (the host is in no rollout's candidate arm).
    pub host_id: Option<String>,
    /// A job served a pull that has not reported after this long is counted `lost` (default
    /// "2h"; between 1s and 168h).
    #[serde(default = "default_outcome_window")]
    pub outcome_window: String,
    /// Served jobs remembered at most, waiting for their report or reported (default 10000).
    #[serde(default = "default_outcome_max_jobs")]
    pub outcome_max_jobs: usize,
    /// The outcome spool (JSON lines); default `<store>/.outcomes/outcomes.jsonl`.
    pub outcome_spool: Option<PathBuf>,
    /// The spool's size cap in bytes (default 64 MiB).
    #[serde(default = "default_outcome_spool_max_bytes")]
    pub outcome_spool_max_bytes: u64,
    /// The daemon the spooled outcomes are sent to (`https://HOST:PORT`); without it they are
    /// only spooled.
    pub report_to: Option<String>,
    /// The daemon's SPIFFE ID: a server presenting another SVID is refused.
    pub report_server_id: Option<String>,
    /// How often the outcomes not yet sent are sent (default "30s"; between 1s and 1h).
    #[serde(default = "default_report_every")]
    pub report_every: String,
    #[serde(default)]
    pub registry: RegistryConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub ca: Option<PathBuf>,
    /// A docker config directory (its `config.json`) for registry credentials.
    pub docker_config: Option<PathBuf>,
    pub credentials_host: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(default)]
    pub plain_http: bool,
    pub retries: Option<u32>,
}

fn default_socket_mode() -> String {
    "0660".into()
}

fn default_max_connections_per_peer() -> usize {
    64
}

fn default_request_timeout() -> String {
    "5s".into()
}

fn default_jobs() -> usize {
    4
}

fn default_cache() -> String {
    "5m".into()
}

fn default_prefetch_interval() -> String {
    "5m".into()
}

fn default_prefetch_jitter() -> String {
    "30s".into()
}

/// The most recently used entries the store budget keeps by default.
const DEFAULT_STORE_KEEP_LAST_USED: usize = 2;

fn default_outcome_window() -> String {
    "2h".into()
}

fn default_outcome_max_jobs() -> usize {
    10_000
}

fn default_outcome_spool_max_bytes() -> u64 {
    64 << 20
}

fn default_report_every() -> String {
    "30s".into()
}

/// The longest time between two prefetch rounds: a promotion should reach hosts the same day.
pub const MAX_PREFETCH_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The longest outcome window: a job that runs longer is beyond what a rollout stage waits for.
pub const MAX_OUTCOME_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest time between two rounds of sending outcomes: a stage's verdict waits for them.
pub const MAX_REPORT_EVERY: Duration = Duration::from_secs(3600);

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let invalid = |message: String| {
            Error::usage_with_hint(
                format!("agent config {}: {message}", path.display()),
                "see docs/agent.md for the keys",
            )
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot be read: {e}")))?;
        let config: AgentConfig = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        config.socket_mode().map_err(invalid)?;
        config.verification_cache().map_err(invalid)?;
        config.fsck_interval().map_err(invalid)?;
        config.outcome_window().map_err(invalid)?;
        if config.outcome_max_jobs == 0 {
            return Err(invalid("outcome_max_jobs must be at least 1".into()));
        }
        if config
            .outcome_spool
            .as_ref()
            .is_some_and(|path| !path.is_absolute())
        {
            return Err(invalid("outcome_spool must be an absolute path".into()));
        }
        if config
            .mirrors
            .as_ref()
            .is_some_and(|path| !path.is_absolute())
        {
            return Err(invalid("mirrors must be an absolute path".into()));
        }
        for (key, value) in [
            ("socket", &config.socket),
            ("store", &config.store),
            ("policy", &config.policy),
        ] {
            if !value.is_absolute() {
                return Err(invalid(format!("{key} must be an absolute path")));
            }
        }
        if config.jobs == 0 {
            return Err(invalid("jobs must be at least 1".into()));
        }
        config.host_id().map_err(invalid)?;
        config.spiffe_id().map_err(invalid)?;
        config.report_settings().map_err(invalid)?;
        config.prefetch_settings().map_err(invalid)?;
        if config.store_keep_last_used.is_some() && config.store_max_bytes.is_none() {
            return Err(invalid(
                "store_keep_last_used is used only with store_max_bytes".into(),
            ));
        }
        Ok(config)
    }

    pub fn socket_mode(&self) -> std::result::Result<u32, String> {
        u32::from_str_radix(&self.socket_mode, 8)
            .ok()
            .filter(|mode| mode & !0o777 == 0)
            .ok_or_else(|| {
                format!(
                    "socket_mode {:?} is not octal permission bits",
                    self.socket_mode
                )
            })
    }

    pub fn verification_cache(&self) -> std::result::Result<Duration, String> {
        let duration = duration("verification_cache", &self.verification_cache)?;
        if duration > MAX_VERIFICATION_CACHE {
            return Err(format!(
                "verification_cache {:?} is over the 1h maximum",
                self.verification_cache
            ));
        }
        Ok(duration)
    }

    /// The host ID the config names, if any.
    pub fn host_id(&self) -> std::result::Result<Option<HostId>, String> {
        self.host_id
            .as_deref()
            .map(|value| HostId::parse(value).map_err(|e| format!("host_id {value:?}: {e}")))
            .transpose()
    }

    /// The SVID the config picks as this host's, if any. It names one of the Workload API's
    /// SVIDs, so it needs one; and it is the host ID, so it excludes `host_id`.
    pub fn spiffe_id(&self) -> std::result::Result<Option<SpiffeId>, String> {
        let Some(value) = self.spiffe_id.as_deref() else {
            return Ok(None);
        };
        let id = SpiffeId::parse(value).map_err(|e| format!("spiffe_id {value:?}: {e}"))?;
        if self.spiffe_endpoint_socket.is_none() {
            return Err("spiffe_id picks one of the Workload API's SVIDs: it needs \
                        spiffe_endpoint_socket"
                .into());
        }
        if self.host_id.is_some() {
            return Err("host_id and spiffe_id both name this host's ID: set one".into());
        }
        Ok(Some(id))
    }

    /// Where and how often outcomes are sent; none without `report_to`. The daemon takes a
    /// host's outcomes only under the SPIFFE ID of the SVID they come with, so the host ID
    /// must be that ID: `report_to` needs the Workload API and excludes `host_id`.
    pub fn report_settings(&self) -> std::result::Result<Option<ReportSettings>, String> {
        let every = duration("report_every", &self.report_every)?;
        if every < Duration::from_secs(1) || every > MAX_REPORT_EVERY {
            return Err(format!(
                "report_every {:?} is not between 1s and 1h",
                self.report_every
            ));
        }
        let Some(to) = &self.report_to else {
            if self.report_server_id.is_some() {
                return Err("report_server_id is used only with report_to".into());
            }
            return Ok(None);
        };
        if !is_daemon_address(to) {
            return Err(format!("report_to {to:?} is not https://HOST:PORT"));
        }
        let server_id = self
            .report_server_id
            .as_deref()
            .ok_or("report_to needs report_server_id, the daemon's SPIFFE ID")?;
        let server_id = SpiffeId::parse(server_id)
            .map_err(|e| format!("report_server_id {server_id:?}: {e}"))?;
        let endpoint = self.spiffe_endpoint_socket.clone().ok_or(
            "report_to needs spiffe_endpoint_socket: outcomes are sent with this host's SVID",
        )?;
        if self.host_id.is_some() {
            return Err(
                "report_to and host_id cannot both be set: the daemon accepts a host's \
                        outcomes only under the SPIFFE ID of the SVID they come with, so the \
                        host ID must be that ID; remove host_id (and set spiffe_id if the \
                        Workload API gives the agent several SVIDs)"
                    .into(),
            );
        }
        Ok(Some(ReportSettings {
            to: to.clone(),
            server_id,
            every,
            endpoint,
        }))
    }

    pub fn connection_limits(&self) -> std::result::Result<ConnectionLimits, String> {
        let request_timeout = duration("request_timeout", &self.request_timeout)?;
        if request_timeout < Duration::from_millis(100) || request_timeout > Duration::from_secs(60)
        {
            return Err(format!(
                "request_timeout {:?} is not between 100ms and 60s",
                self.request_timeout
            ));
        }
        if self.max_connections_per_peer == 0 {
            return Err("max_connections_per_peer must be at least 1".into());
        }
        Ok(ConnectionLimits {
            max_per_peer: self.max_connections_per_peer,
            request_timeout,
        })
    }

    pub fn outcome_window(&self) -> std::result::Result<Duration, String> {
        let window = duration("outcome_window", &self.outcome_window)?;
        if window < Duration::from_secs(1) || window > MAX_OUTCOME_WINDOW {
            return Err(format!(
                "outcome_window {:?} is not between 1s and 168h",
                self.outcome_window
            ));
        }
        Ok(window)
    }

    /// The outcome settings: the window, the cap, and the spool (by default in the store,
    /// beside the agent's other records).
    pub fn outcome_settings(&self) -> std::result::Result<OutcomeSettings, String> {
        Ok(OutcomeSettings {
            window: self.outcome_window()?,
            max_jobs: self.outcome_max_jobs,
            spool: self
                .outcome_spool
                .clone()
                .unwrap_or_else(|| self.store.join(".outcomes/outcomes.jsonl")),
            spool_max_bytes: self.outcome_spool_max_bytes,
        })
    }

    /// What to prefetch and how often; none without `prefetch`.
    pub fn prefetch_settings(&self) -> std::result::Result<Option<PrefetchSettings>, String> {
        let interval = duration("prefetch_interval", &self.prefetch_interval)?;
        if interval < Duration::from_secs(1) || interval > MAX_PREFETCH_INTERVAL {
            return Err(format!(
                "prefetch_interval {:?} is not between 1s and 24h",
                self.prefetch_interval
            ));
        }
        let jitter = duration("prefetch_jitter", &self.prefetch_jitter)?;
        if jitter > interval {
            return Err(format!(
                "prefetch_jitter {:?} is longer than prefetch_interval {:?}",
                self.prefetch_jitter, self.prefetch_interval
            ));
        }
        let platforms = match &self.prefetch_platforms {
            None => vec![Platform::host()],
            Some(names) if names.is_empty() => {
                return Err("prefetch_platforms is empty: leave it out for this host's".into());
            }
            Some(names) => names
                .iter()
                .map(|name| {
                    name.parse()
                        .map_err(|e| format!("prefetch_platforms {name:?}: {e}"))
                })
                .collect::<std::result::Result<_, _>>()?,
        };
        let mut references = Vec::new();
        for value in &self.prefetch {
            match ReleaseRef::parse(value) {
                Ok(reference @ ReleaseRef::Registry(_)) => references.push(reference),
                Ok(ReleaseRef::Layout(_)) => {
                    return Err(format!(
                        "prefetch {value:?}: the agent pulls from registries only"
                    ));
                }
                Err(e) => return Err(format!("prefetch {value:?}: {e}")),
            }
        }
        if references.is_empty() {
            if self.prefetch_platforms.is_some() {
                return Err("prefetch_platforms is used only with prefetch".into());
            }
            return Ok(None);
        }
        Ok(Some(PrefetchSettings {
            references,
            platforms,
            interval,
            jitter,
        }))
    }

    /// The store's budget; none without `store_max_bytes`.
    pub fn store_budget(&self) -> Option<StoreBudget> {
        self.store_max_bytes.map(|max_bytes| StoreBudget {
            max_bytes,
            keep_last_used: self
                .store_keep_last_used
                .unwrap_or(DEFAULT_STORE_KEEP_LAST_USED),
        })
    }

    pub fn fsck_interval(&self) -> std::result::Result<Option<Duration>, String> {
        self.fsck_interval
            .as_deref()
            .map(|value| duration("fsck_interval", value))
            .transpose()
    }

    /// The registry settings, as the command-line flags would give them.
    pub fn registry_args(&self) -> RegistryArgs {
        RegistryArgs {
            registry_ca: self.registry.ca.clone(),
            registry_credentials_host: self.registry.credentials_host.clone(),
            registry_username: self.registry.username.clone(),
            registry_password: self.registry.password.clone(),
            registry_plain_http: self.registry.plain_http,
            registry_retries: self.registry.retries.unwrap_or(4),
        }
    }
}

impl AgentConfig {
    /// Makes the process environment say what the config says about the settings the core
    /// reads from it (docker credentials, the Workload API), whatever the agent was started
    /// with. Call before any thread exists.
    pub fn apply_to_process_environment(&self) {
        // Without a docker config of its own the agent reads none (not its user's ~/.docker).
        let docker_config = self
            .registry
            .docker_config
            .clone()
            .unwrap_or_else(|| PathBuf::from("/nonexistent"));
        // SAFETY: called from main before the runtime or any other thread starts.
        unsafe {
            std::env::set_var("DOCKER_CONFIG", docker_config);
            match &self.spiffe_endpoint_socket {
                Some(socket) => std::env::set_var("SPIFFE_ENDPOINT_SOCKET", socket),
                None => std::env::remove_var("SPIFFE_ENDPOINT_SOCKET"),
            }
        }
    }
}

/// Whether `value` is `https://HOST:PORT` (a trailing `/` allowed), as the daemon's clients
/// take it.
fn is_daemon_address(value: &str) -> bool {
    let Some(address) = value.strip_prefix("https://") else {
        return false;
    };
    let address = address.strip_suffix('/').unwrap_or(address);
    address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(['/', '@', '?', '#'])
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|port| port > 0)
    })
}

/// A non-negative duration such as `"5m"`, `"90s"` or `"0s"` (zero turns a cache off).
fn duration(key: &str, value: &str) -> std::result::Result<Duration, String> {
    value
        .parse::<SignedDuration>()
        .ok()
        .and_then(|d| Duration::try_from(d).ok())
        .ok_or_else(|| format!("{key} {value:?} is not a duration such as \"5m\" or \"90s\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AgentConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        AgentConfig::load(&path)
    }

    const MINIMAL: &str = "socket = \"/run/tcdist/agent.sock\"\nstore = \"/var/lib/tcdist/store\"\npolicy = \"/etc/tcdist/policy.toml\"\n";

    #[test]
    fn connection_limits_are_read_and_bounded() {
        let config = load(&format!(
            "{MINIMAL}max_connections_per_peer = 8\nrequest_timeout = \"500ms\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.connection_limits().unwrap(),
            ConnectionLimits {
                max_per_peer: 8,
                request_timeout: Duration::from_millis(500)
            }
        );
        for (extra, error) in [
            ("max_connections_per_peer = 0", "at least 1"),
            ("request_timeout = \"10ms\"", "not between 100ms and 60s"),
            ("request_timeout = \"2m\"", "not between 100ms and 60s"),
            ("request_timeout = \"soon\"", "not a duration"),
        ] {
            let config = load(&format!("{MINIMAL}{extra}\n")).unwrap();
            let err = config.connection_limits().unwrap_err();
            assert!(err.contains(error), "{extra}: {err}");
        }
    }

    #[test]
    fn minimal_config_gets_the_defaults() {
        let config = load(MINIMAL).unwrap();
        assert_eq!(config.socket_mode().unwrap(), 0o660);
        assert_eq!(
            config.verification_cache().unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(config.fsck_interval().unwrap(), None);
        assert_eq!(config.registry_args().registry_retries, 4);
        assert_eq!(config.host_id().unwrap(), None);
        assert_eq!(
            config.connection_limits().unwrap(),
            ConnectionLimits {
                max_per_peer: 64,
                request_timeout: Duration::from_secs(5)
            }
        );
        let outcomes = config.outcome_settings().unwrap();
        assert_eq!(outcomes.window, Duration::from_secs(2 * 3600));
        assert_eq!(outcomes.max_jobs, 10_000);
        assert_eq!(
            outcomes.spool,
            Path::new("/var/lib/tcdist/store/.outcomes/outcomes.jsonl")
        );
        assert_eq!(outcomes.spool_max_bytes, 64 << 20);
    }

    #[test]
    fn outcome_keys_are_read_and_validated() {
        let config = load(&format!(
            "{MINIMAL}outcome_window = \"30m\"\noutcome_max_jobs = 5\n\
             outcome_spool = \"/var/lib/tcdist/outcomes.jsonl\"\noutcome_spool_max_bytes = 4096\n"
        ))
        .unwrap();
        let outcomes = config.outcome_settings().unwrap();
        assert_eq!(outcomes.window, Duration::from_secs(1800));
        assert_eq!(outcomes.max_jobs, 5);
        assert_eq!(outcomes.spool, Path::new("/var/lib/tcdist/outcomes.jsonl"));
        assert_eq!(outcomes.spool_max_bytes, 4096);
        for (extra, want) in [
            ("outcome_window = \"0s\"\n", "between 1s and 168h"),
            ("outcome_window = \"169h\"\n", "between 1s and 168h"),
            ("outcome_window = \"soon\"\n", "not a duration"),
            ("outcome_max_jobs = 0\n", "at least 1"),
            ("outcome_max_jobs = -1\n", "invalid value"),
            ("outcome_spool = \"outcomes.jsonl\"\n", "absolute path"),
        ] {
            let err = load(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(want), "{extra}: {err}");
        }
    }

    #[test]
    fn host_id_key_is_read_and_validated() {
        let config = load(&format!("{MINIMAL}host_id = \"build-017.ci.example\"\n")).unwrap();
        assert_eq!(
            config.host_id().unwrap().as_ref().map(HostId::as_str),
            Some("build-017.ci.example")
        );
        for (value, want) in [
            ("\"\"", "must not be empty"),
            ("\"a\\nb\"", "printable ASCII"),
            (&format!("\"{}\"", "h".repeat(256)), "at most 255 bytes"),
        ] {
            let err = load(&format!("{MINIMAL}host_id = {value}\n")).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let message = err.to_string();
            assert!(
                message.contains("host_id") && message.contains(want),
                "{value}: {message}"
            );
        }
        let err = load(&format!("{MINIMAL}host_id = 17\n")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    const WORKLOAD_API: &str = "spiffe_endpoint_socket = \"unix:///run/spire/agent.sock\"\n";

    #[test]
    fn spiffe_id_key_is_read_and_validated() {
        assert_eq!(load(MINIMAL).unwrap().spiffe_id().unwrap(), None);
        let config = load(&format!(
            "{MINIMAL}{WORKLOAD_API}spiffe_id = \"spiffe://ci.example/host/build-017\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.spiffe_id().unwrap().unwrap().as_str(),
            "spiffe://ci.example/host/build-017"
        );
        for (extra, want) in [
            (
                "spiffe_id = \"spiffe://ci.example/host/b-1\"\n".to_owned(),
                "spiffe_id picks one of the Workload API's SVIDs: it needs spiffe_endpoint_socket",
            ),
            (
                format!(
                    "{WORKLOAD_API}spiffe_id = \"spiffe://ci.example/host/b-1\"\n\
                     host_id = \"b-1\"\n"
                ),
                "host_id and spiffe_id both name this host's ID",
            ),
            (
                format!("{WORKLOAD_API}spiffe_id = \"build-017\"\n"),
                "spiffe_id \"build-017\"",
            ),
        ] {
            let err = load(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(want), "{extra}: {err}");
        }
    }

    const REPORT_TO: &str = "report_to = \"https://distd.ci.example:8443\"\n\
                             report_server_id = \"spiffe://ci.example/distd/server\"\n";

    #[test]
    fn report_keys_are_read_with_their_defaults() {
        assert!(load(MINIMAL).unwrap().report_settings().unwrap().is_none());
        let config = load(&format!("{MINIMAL}{WORKLOAD_API}{REPORT_TO}")).unwrap();
        let report = config.report_settings().unwrap().unwrap();
        assert_eq!(report.to, "https://distd.ci.example:8443");
        assert_eq!(
            report.server_id.as_str(),
            "spiffe://ci.example/distd/server"
        );
        assert_eq!(report.every, Duration::from_secs(30));
        assert_eq!(report.endpoint, "unix:///run/spire/agent.sock");
        let config = load(&format!(
            "{MINIMAL}{WORKLOAD_API}{REPORT_TO}report_every = \"2s\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.report_settings().unwrap().unwrap().every,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn report_keys_refused_if_inconsistent_or_wrong() {
        let report_to = "report_to = \"https://distd.ci.example:8443\"\n";
        let server_id = "report_server_id = \"spiffe://ci.example/distd/server\"\n";
        for (extra, want) in [
            (
                format!("{WORKLOAD_API}{report_to}"),
                "report_to needs report_server_id",
            ),
            (
                REPORT_TO.to_owned(),
                "report_to needs spiffe_endpoint_socket",
            ),
            (
                format!("{WORKLOAD_API}{REPORT_TO}host_id = \"build-017\"\n"),
                "report_to and host_id cannot both be set: the daemon accepts a host's outcomes \
                 only under the SPIFFE ID of the SVID they come with",
            ),
            (
                server_id.to_owned(),
                "report_server_id is used only with report_to",
            ),
            (
                format!("{WORKLOAD_API}{report_to}report_server_id = \"distd\"\n"),
                "report_server_id \"distd\"",
            ),
            ("report_every = \"0s\"\n".to_owned(), "between 1s and 1h"),
            ("report_every = \"2h\"\n".to_owned(), "between 1s and 1h"),
            ("report_every = \"often\"\n".to_owned(), "not a duration"),
        ] {
            let err = load(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(want), "{extra}: {err}");
        }
        for address in [
            "http://distd.ci.example:8443",
            "https://distd.ci.example",
            "https://distd.ci.example:8443/v1",
            "https://:8443",
            "https://distd.ci.example:0",
            "https://distd.ci.example:+8443",
            "https://user@distd.ci.example:8443",
        ] {
            let err = load(&format!(
                "{MINIMAL}{WORKLOAD_API}{server_id}report_to = \"{address}\"\n"
            ))
            .unwrap_err();
            assert!(
                err.to_string().contains("is not https://HOST:PORT"),
                "{address}: {err}"
            );
        }
        for address in ["https://127.0.0.1:8443/", "https://[::1]:8443"] {
            let config = load(&format!(
                "{MINIMAL}{WORKLOAD_API}{server_id}report_to = \"{address}\"\n"
            ))
            .unwrap();
            assert_eq!(config.report_settings().unwrap().unwrap().to, address);
        }
    }

    #[test]
    fn prefetch_and_budget_keys_are_read_and_validated() {
        assert!(
            load(MINIMAL)
                .unwrap()
                .prefetch_settings()
                .unwrap()
                .is_none()
        );
        assert!(load(MINIMAL).unwrap().store_budget().is_none());
        let config = load(&format!(
            "{MINIMAL}prefetch = [\"r.example:5000/go:stable\", \"r.example:5000/go:beta\"]\n\
             store_max_bytes = 1000000\n"
        ))
        .unwrap();
        let settings = config.prefetch_settings().unwrap().unwrap();
        assert_eq!(settings.references.len(), 2);
        assert_eq!(settings.platforms, [Platform::host()]);
        assert_eq!(settings.interval, Duration::from_secs(300));
        assert_eq!(settings.jitter, Duration::from_secs(30));
        assert_eq!(
            config.store_budget(),
            Some(StoreBudget {
                max_bytes: 1_000_000,
                keep_last_used: 2
            })
        );
        let config = load(&format!(
            "{MINIMAL}prefetch = [\"r.example/go:stable\"]\nprefetch_interval = \"2s\"\n\
             prefetch_jitter = \"0s\"\nprefetch_platforms = [\"linux/arm64\"]\n\
             store_max_bytes = 0\nstore_keep_last_used = 0\n"
        ))
        .unwrap();
        let settings = config.prefetch_settings().unwrap().unwrap();
        assert_eq!(
            (settings.interval, settings.jitter),
            (Duration::from_secs(2), Duration::ZERO)
        );
        assert_eq!(settings.platforms, ["linux/arm64".parse().unwrap()]);
        assert_eq!(config.store_budget().unwrap().keep_last_used, 0);
        for (extra, want) in [
            ("prefetch = [\"oci-layout:/x:v1\"]\n", "registries only"),
            (
                "prefetch = [\"not a reference\"]\n",
                "prefetch \"not a reference\"",
            ),
            (
                "prefetch = [\"r/go:s\"]\nprefetch_interval = \"0s\"\n",
                "between 1s and 24h",
            ),
            (
                "prefetch = [\"r/go:s\"]\nprefetch_interval = \"25h\"\n",
                "between 1s and 24h",
            ),
            (
                "prefetch = [\"r/go:s\"]\nprefetch_interval = \"1m\"\nprefetch_jitter = \"2m\"\n",
                "longer than",
            ),
            (
                "prefetch = [\"r/go:s\"]\nprefetch_platforms = []\n",
                "empty",
            ),
            (
                "prefetch = [\"r/go:s\"]\nprefetch_platforms = [\"plan9\"]\n",
                "prefetch_platforms \"plan9\"",
            ),
            (
                "prefetch_platforms = [\"linux/amd64\"]\n",
                "only with prefetch",
            ),
            ("store_keep_last_used = 3\n", "only with store_max_bytes"),
            ("store_max_bytes = -1\n", "invalid value"),
        ] {
            let err = load(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(want), "{extra}: {err}");
        }
    }

    #[test]
    fn shipped_example_config_loads() {
        let config = load(include_str!("../../../deploy/systemd/agent.toml")).unwrap();
        assert_eq!(config.socket_group.as_deref(), Some("buildkite-agent"));
        assert_eq!(
            config.fsck_interval().unwrap(),
            Some(Duration::from_secs(6 * 3600))
        );
    }

    #[test]
    fn config_refused_if_a_key_is_unknown_or_a_value_wrong() {
        for (extra, want) in [
            ("polcy = \"/x\"\n", "unknown field"),
            ("socket_mode = \"0999\"\n", "octal"),
            ("verification_cache = \"2h\"\n", "over the 1h maximum"),
            ("fsck_interval = \"often\"\n", "not a duration"),
            ("jobs = 0\n", "at least 1"),
        ] {
            let err = load(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(want), "{extra}: {err}");
        }
        let err = load("socket = \"agent.sock\"\nstore = \"/s\"\npolicy = \"/p\"\n").unwrap_err();
        assert!(
            err.to_string().contains("socket must be an absolute path"),
            "{err}"
        );
    }
}
