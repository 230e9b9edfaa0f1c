//! Flags and their environment variables (flag, then `TCVERIFY_*`/`TCDIST_*`, then default).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use distd_api::outcome::{JobId, PipelineName};
use tcdist_core::Platform;
use tcdist_oci::mirrors::MirrorConfig;
use tcdist_oci::registry::RegistryArgs;
use tcverify::host_id::HostId;

#[derive(Parser, Debug)]
#[command(
    name = "tcverify",
    version,
    about = "Verify, fetch and install signed Go toolchain releases"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Verify a release, then fetch and install it into the store; prints the toolchain root
    Pull(PullArgs),
    /// Verify a release without fetching its layers
    Verify(VerifyArgs),
    /// Print the environment a job needs to use an installed toolchain (after `pull`)
    Env(EnvArgs),
    /// List the toolchains in the store
    Ls(StoreArgs),
    /// Remove leftovers of interrupted pulls and, optionally, long-unused toolchains
    Gc(GcArgs),
    /// Re-hash every installed toolchain; move any that changed since install to quarantine
    /// (exit 42), so the next pull installs a fresh copy
    Fsck(FsckArgs),
    /// Work with policy files
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Work with audit logs
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run the build-host agent service: owns the store and answers pull, verify and env on a
    /// unix socket, with the policy, trust and credentials of its config file only
    Agent(AgentArgs),
    /// Report how a CI job ended to the build-host agent that served its pull (agent mode
    /// only), for the judging of channel rollouts
    Report(ReportArgs),
}

/// A job's run, as its CI system names it. Agent mode only.
#[derive(Args, Debug)]
pub struct JobArgs {
    /// The CI job this pull is for (Buildkite: BUILDKITE_JOB_ID): the agent records what it
    /// serves the job, for the job's `tcverify report`. Through the agent only
    #[arg(long, value_name = "ID")]
    pub job_id: Option<JobId>,
    /// Which attempt of the job this is: 0 the first, N the N-th retry (Buildkite:
    /// BUILDKITE_RETRY_COUNT)
    #[arg(long, value_name = "N", requires = "job_id")]
    pub retry: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The job, as its pull named it (Buildkite: BUILDKITE_JOB_ID)
    #[arg(long, value_name = "ID")]
    pub job_id: JobId,
    /// The job's pipeline (Buildkite: BUILDKITE_PIPELINE_SLUG)
    #[arg(long, value_name = "NAME")]
    pub pipeline: PipelineName,
    /// The job's exit status: 0 passed, any other failed; negative for a command killed by a
    /// signal (Buildkite: BUILDKITE_COMMAND_EXIT_STATUS)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub exit_status: i32,
    /// Which attempt of the job this is, as its pull said (Buildkite: BUILDKITE_RETRY_COUNT)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retry: u32,
    /// The job was cancelled (by a person, the CI system or its time limit), whatever its
    /// exit status (Buildkite: BUILDKITE_JOB_CANCELLED=true)
    #[arg(long)]
    pub cancelled: bool,
    /// Report only a job the agent is waiting on: a job it served no pull, or whose outcome it
    /// has, is left alone (exit 0) instead of refused. For hooks that run after every job
    #[arg(long)]
    pub if_served: bool,
    /// Print JSON for machines
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub agent: AgentClientArgs,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The agent's config file (see docs/agent.md); nothing else configures it
    #[arg(long, value_name = "FILE", default_value = "/etc/tcdist/agent.toml")]
    pub config: PathBuf,
}

/// Where the build-host agent listens, for the commands it can answer.
#[derive(Args, Debug)]
pub struct AgentClientArgs {
    /// Ask the build-host agent listening on SOCKET: it verifies and installs with its own
    /// policy, trust, store and credentials, and this command's other settings are not used.
    /// Without it, tcverify trusts its own flags and environment, which suits a single user's
    /// machine, not a shared build host
    #[arg(long = "agent", env = "TCVERIFY_AGENT", value_name = "SOCKET")]
    pub socket: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check an audit log's hash chain; prints the record count and the head (exit 42 at the
    /// first edited, inserted or removed record)
    Verify(AuditVerifyArgs),
}

#[derive(Args, Debug)]
pub struct AuditVerifyArgs {
    /// The audit log (`--audit-log`'s file)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// A head this log had earlier (from an earlier `audit verify`): it must still be in the
    /// log, so records removed from its end are found too
    #[arg(long, value_name = "sha256:HEX")]
    pub head: Option<String>,
    /// Print JSON for machines
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Load a policy file and its trust material; report every error with line and column
    Check(PolicyCheckArgs),
}

#[derive(Args, Debug)]
pub struct PolicyCheckArgs {
    /// The policy file (TOML; see docs/policy.md)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Print JSON for machines
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TrustArgs {
    /// A Sigstore trusted root (`distd trust-root export`) whose authorities, timestamp
    /// authorities and transparency logs are trusted along with the policy's
    #[arg(long = "trust", env = "TCVERIFY_TRUST", value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The local store directory
    #[arg(long, env = "TCVERIFY_STORE", value_name = "DIR", default_value_os_t = default_store())]
    pub store: PathBuf,
    /// Print JSON for machines
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The release: REGISTRY/REPOSITORY:TAG, …@sha256:…, or oci-layout:PATH[:TAG]
    #[arg(value_name = "REF")]
    pub reference: String,
    #[command(flatten)]
    pub agent: AgentClientArgs,
    /// The platform to install (default: this host's)
    #[arg(long, env = "TCVERIFY_PLATFORM", value_name = "OS/ARCH", default_value_t = Platform::host())]
    pub platform: Platform,
    /// The policy: which signers are allowed per repository, and the trust material
    #[arg(long, env = "TCVERIFY_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Mirrors of the registries, tried before them for content named by digest: a
    /// containerd `certs.d`-style directory of `HOST/hosts.toml` files, or one `hosts.toml`
    /// (docs/mirrors.md)
    #[arg(long, env = "TCVERIFY_MIRRORS", value_name = "DIR|FILE")]
    pub mirrors: Option<PathBuf>,
    /// Append one JSON audit record per decision to FILE (`-` for stderr)
    #[arg(long, env = "TCVERIFY_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Do not contact transparency logs: verify from the bundle's inclusion proof and the
    /// trust material alone (with an oci-layout: reference, nothing touches the network)
    #[arg(long, env = "TCVERIFY_OFFLINE")]
    pub offline: bool,
    /// Accept a channel whose head has expired (frozen); recorded in the audit log. Direct
    /// mode only: the agent takes no waivers from jobs
    #[arg(long)]
    pub allow_expired: bool,
    /// Accept a yanked release named by digest; recorded in the audit log. Direct mode only
    #[arg(long)]
    pub allow_yanked: bool,
    /// This host's ID, which decides its arm in a channel's rollout (printable ASCII, at most
    /// 255 bytes); without one, the host is in no rollout's candidate arm. Direct mode only:
    /// the agent decides its host's arm
    #[arg(long, env = "TCVERIFY_HOST_ID", value_name = "ID")]
    pub host_id: Option<HostId>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl ReleaseArgs {
    /// The mirrors `--mirrors` names, read and checked.
    pub fn mirror_config(&self) -> Result<Option<MirrorConfig>, tcdist_core::Error> {
        self.mirrors.as_deref().map(MirrorConfig::load).transpose()
    }
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// The local store, where the newest checkpoint seen of each log is remembered
    #[arg(long, env = "TCVERIFY_STORE", value_name = "DIR", default_value_os_t = default_store())]
    pub store: PathBuf,
    /// Print JSON for machines
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    #[command(flatten)]
    pub release: ReleaseArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Layers fetched in parallel
    #[arg(long, env = "TCVERIFY_JOBS", value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// Refuse releases that unpack to more than this many bytes
    #[arg(long, env = "TCVERIFY_MAX_UNPACKED_BYTES", value_name = "BYTES")]
    pub max_unpacked_bytes: Option<u64>,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Also remove toolchains not pulled for this many days
    #[arg(long, value_name = "DAYS")]
    pub unused_for_days: Option<u64>,
    /// Show what would be removed
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct FsckArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Report damaged toolchains without moving them
    #[arg(long)]
    pub dry_run: bool,
}

fn default_store() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("tcdist/store")
}

#[derive(Args, Debug)]
pub struct EnvArgs {
    /// The release, as it was pulled (REGISTRY/REPOSITORY:TAG, …@sha256:…, oci-layout:…)
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The platform of the installed toolchain (default: this host's)
    #[arg(long, env = "TCVERIFY_PLATFORM", value_name = "OS/ARCH", default_value_t = Platform::host())]
    pub platform: Platform,
    /// Output format: shell `export` lines for eval, or JSON
    #[arg(long, default_value = "sh", value_parser = ["sh", "json"])]
    pub format: String,
    #[command(flatten)]
    pub agent: AgentClientArgs,
    /// The local store directory
    #[arg(long, env = "TCVERIFY_STORE", value_name = "DIR", default_value_os_t = default_store())]
    pub store: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tcverify").chain(args.iter().copied()))
    }

    fn release(cli: Cli) -> ReleaseArgs {
        match cli.command {
            Command::Pull(args) => args.release,
            Command::Verify(args) => args.release,
            other => panic!("not a release command: {other:?}"),
        }
    }

    #[test]
    fn host_id_flag_reaches_the_release_settings_of_pull_and_verify() {
        for command in ["pull", "verify"] {
            let cli = parse(&[command, "r.example/t/go:stable", "--host-id", "build-017"]).unwrap();
            let release = release(cli);
            assert_eq!(
                release.host_id.as_ref().map(HostId::as_str),
                Some("build-017")
            );
            assert!(release.agent.socket.is_none());
        }
    }

    #[test]
    fn host_id_flag_rejected_if_invalid() {
        for value in ["", "host\n7", &"h".repeat(256)] {
            let err = parse(&["pull", "r.example/t/go:stable", "--host-id", value]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{value:?}"
            );
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn report_takes_the_job_its_pipeline_and_a_negative_exit_status() {
        let cli = parse(&[
            "report",
            "--job-id",
            "0190b3a4-7c1e",
            "--pipeline",
            "app",
            "--exit-status",
            "-1",
            "--retry",
            "2",
            "--cancelled",
            "--agent",
            "/run/tcdist/agent.sock",
        ])
        .unwrap();
        let Command::Report(args) = cli.command else {
            panic!("not a report");
        };
        assert_eq!(args.job_id.as_str(), "0190b3a4-7c1e");
        assert_eq!(args.pipeline.as_str(), "app");
        assert_eq!((args.exit_status, args.retry), (-1, 2));
        assert!(args.cancelled && !args.if_served && !args.json);
        assert!(args.agent.socket.is_some());
    }

    #[test]
    fn report_rejected_if_a_field_is_missing_or_hostile() {
        let base = ["report", "--pipeline", "app", "--exit-status", "0"];
        let err = parse(&base).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        for (flag, value) in [
            ("--job-id", "j\n1"),
            ("--job-id", "j 1"),
            ("--job-id", ""),
            ("--retry", "-1"),
        ] {
            let mut args: Vec<&str> = base.to_vec();
            if flag != "--job-id" {
                args.extend(["--job-id", "j-1"]);
            }
            args.extend([flag, value]);
            let err = parse(&args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{flag} {value:?}");
        }
        let long = "p".repeat(256);
        let err = parse(&[
            "report",
            "--job-id",
            "j-1",
            "--pipeline",
            &long,
            "--exit-status",
            "0",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn pull_takes_a_job_and_a_retry_only_with_it() {
        let cli = parse(&[
            "pull",
            "r.example/t/go:stable",
            "--job-id",
            "j-1",
            "--retry",
            "3",
        ])
        .unwrap();
        let Command::Pull(args) = cli.command else {
            panic!("not a pull");
        };
        assert_eq!(args.job.job_id.as_ref().map(JobId::as_str), Some("j-1"));
        assert_eq!(args.job.retry, Some(3));
        let err = parse(&["pull", "r.example/t/go:stable", "--retry", "3"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn help_names_the_host_id_variable() {
        for command in ["pull", "verify"] {
            let help = Cli::command()
                .find_subcommand_mut(command)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(help.contains("--host-id <ID>"), "{help}");
            assert!(help.contains("[env: TCVERIFY_HOST_ID"), "{help}");
        }
    }
}
