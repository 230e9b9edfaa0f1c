//! Flags and their environment variables (flag, then `TCDIST_*`, then the config file, then
//! default), and what they become: signing setups, packaging settings, build requests.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{ArgGroup, Args, Parser, Subcommand};
use jiff::SignedDuration;
use tcdist_core::Platform;
use tcdist_oci::attachments::rollout::{
    DEFAULT_MIN_HOSTS, DEFAULT_MIN_JOBS, Share, Stage, parse_stages, plan_stages,
};
use tcdist_oci::reference::{RegistryRef, ReleaseRef};
use tcdist_oci::registry::RegistryArgs;
use tcdist_oci::release::Compression;

use crate::judge::tally::ArmCounts;
use crate::judge::verdict::{self, Inputs, JudgeConfig};
use crate::ledger::{FileLedger, Ledger, RemoteLedger};
use crate::package::PackageSettings;
use crate::package::layer::LayerSettings;
use crate::{build, ctl, publish, sign};
use tcdist_verify::spiffe_id::SpiffeId;

#[derive(Parser, Debug)]
#[command(
    name = "distd",
    version,
    about = "Package and publish customized Go toolchains as OCI releases"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Patch a Go source tree, build it with make.bash, and write a toolchain tree; prints
    /// the tree's path last
    Build(BuildArgs),
    /// Print the source digest of a Go source tree (what a release line's go_source_digest
    /// pins), without building it
    SourceDigest(SourceDigestArgs),
    /// Package toolchain trees as one release, push, sign and verify it; prints the index
    /// digest last
    Publish(PublishArgs),
    /// Sign a release that is already published (the tag is left alone); prints the index
    /// digest last
    Sign(SignArgs),
    /// Sign the next head of a channel naming a published release, and move the channel's
    /// tag to it; prints the head's sequence last
    Promote(PromoteArgs),
    /// Re-sign the heads of channels that expire soon (same release, next sequence)
    Refresh(RefreshArgs),
    /// Withdraw a published release: sign the next version of the repository's yank list;
    /// prints its sequence last
    Yank(YankArgs),
    /// Roll a release out to a channel's hosts in stages (start, advance, halt, abort, finish)
    /// or show where a rollout stands
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Rebuild a published release from its recorded inputs and co-sign it when the rebuild
    /// has the same index digest; otherwise name the first file that differs
    Rebuild(RebuildArgs),
    /// Build a release line (from the config) for each of its platforms, publish it as one
    /// release tagged with the toolchain's version, and promote it to the line's channels;
    /// prints the index digest last
    Release(ReleaseArgs),
    /// Run the publisher daemon: the SPIFFE mTLS API, the build queue, channel re-signing,
    /// health and metrics (config: deploy/distd/serve.toml)
    Serve(ServeArgs),
    /// Ask the daemon (`distd serve`) to build, promote or yank, or read its catalog and jobs
    Ctl(ctl::CtlArgs),
    /// The deployment's trust material for Sigstore clients
    #[command(subcommand)]
    TrustRoot(TrustRootCommand),
    /// The publisher's ledger of everything distd signed
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Watch the transparency logs for what the policy's identities signed and the ledger
    /// does not hold, and for logs that contradict themselves; prints open alerts as JSON
    /// lines (docs/monitor.md). Exit codes: 13 tamper, 12 unauthorized, 11 malformed,
    /// 10 operational
    Monitor(MonitorArgs),
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct MonitorArgs {
    #[command(subcommand)]
    pub command: Option<MonitorCommand>,
    /// Where the monitor keeps its position in each log, the checkpoints it accepted, the
    /// ledger head it pinned and its alerts
    #[arg(
        long,
        env = "TCDIST_MONITOR_STATE",
        value_name = "DIR",
        required = true
    )]
    pub state: Option<PathBuf>,
    /// The policy: the logs to watch (with their keys and tiles), the identities it gives
    /// power, the trust domains
    #[arg(long, env = "TCVERIFY_POLICY", value_name = "FILE", required = true)]
    pub policy: Option<PathBuf>,
    /// A Sigstore trusted root whose logs and CAs join the policy's
    #[arg(long, env = "TCVERIFY_TRUST", value_name = "FILE")]
    pub trust: Option<PathBuf>,
    #[command(flatten)]
    pub ledger: LedgerReadArgs,
    /// Where the witnesses the policy counts for a log are (the witnesses file distd signs
    /// with), when the policy gives no url for them: the monitor asks them to cosign each
    /// checkpoint it follows
    #[arg(long, env = "TCDIST_WITNESSES", value_name = "FILE")]
    pub witnesses: Option<PathBuf>,
    /// One round, then exit (cron, CI)
    #[arg(long)]
    pub once: bool,
    /// Between rounds, as a service
    #[arg(long, env = "TCDIST_MONITOR_INTERVAL", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub interval: SignedDuration,
    /// A log not read up to its checkpoint for longer than this is an operational alert (0s:
    /// any round that cannot read it)
    #[arg(long, env = "TCDIST_MONITOR_MAX_LAG", value_name = "DURATION", default_value = "15m", value_parser = parse_duration_or_zero)]
    pub max_lag: SignedDuration,
    /// A shell command run for every new alert, with the alert as JSON on its stdin
    #[arg(long, env = "TCDIST_MONITOR_HOOK", value_name = "COMMAND")]
    pub alert_hook: Option<String>,
    /// Serve /metrics (Prometheus) and /healthz here
    #[arg(long, env = "TCDIST_MONITOR_METRICS", value_name = "HOST:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Subcommand, Debug)]
pub enum MonitorCommand {
    /// Acknowledge alerts, so the clean watermark moves past them and the exit code no longer
    /// counts them; prints the IDs acknowledged
    Ack(MonitorAckArgs),
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("which").required(true).args(["ids", "all"])))]
pub struct MonitorAckArgs {
    /// The monitor's state directory
    #[arg(long, env = "TCDIST_MONITOR_STATE", value_name = "DIR")]
    pub state: PathBuf,
    /// The alerts to acknowledge, by ID
    pub ids: Vec<u64>,
    /// Every open alert
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The daemon's config (TOML; see docs/daemon.md)
    #[arg(long, env = "TCDIST_SERVE_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// The SPIFFE ID that signs channel heads and yank lists
    #[arg(long, env = "TCDIST_PROMOTER_ID", value_name = "SPIFFE_ID")]
    pub promoter_id: String,
    /// The SPIFFE ID the rollout judge signs halts, advances and re-signs with (a `brakes`
    /// identity of the policy); needed with a `[judge]` table that is not a dry run
    #[arg(long, env = "TCDIST_JUDGE_ID", value_name = "SPIFFE_ID")]
    pub judge_id: Option<String>,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// The release: REGISTRY/REPOSITORY@sha256:…
    #[arg(value_name = "REF@DIGEST")]
    pub reference: String,
    /// The channel (a tag of the repository, e.g. stable)
    #[arg(long, value_name = "NAME")]
    pub channel: String,
    /// How long the head is valid; verifiers refuse it afterwards unless it is refreshed
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub expires: SignedDuration,
    #[command(flatten)]
    pub promoter: PromoterArgs,
}

#[derive(Args, Debug)]
pub struct RefreshArgs {
    /// The repository: REGISTRY/REPOSITORY
    #[arg(value_name = "REPOSITORY")]
    pub repository: String,
    /// The channels to keep fresh
    #[arg(long, value_name = "NAME", required = true)]
    pub channel: Vec<String>,
    /// Re-sign heads that expire within this time
    #[arg(long, value_name = "DURATION", default_value = "2d", value_parser = parse_duration)]
    pub within: SignedDuration,
    /// How long a re-signed head is valid
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub expires: SignedDuration,
    #[command(flatten)]
    pub promoter: PromoterArgs,
}

#[derive(Args, Debug)]
pub struct YankArgs {
    /// The release: REGISTRY/REPOSITORY@sha256:…
    #[arg(value_name = "REF@DIGEST")]
    pub reference: String,
    /// Why: every pull it refuses reports it
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    #[command(flatten)]
    pub promoter: PromoterArgs,
}

#[derive(Args, Debug)]
pub struct SourceDigestArgs {
    /// The Go source tree (a GOROOT)
    #[arg(value_name = "GO_ROOT")]
    pub go_root: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Sign a plan that brings a release to a share of a channel's hosts in stages, from the
    /// release the channel's head names; prints the statement's sequence last
    Start(RolloutStartArgs),
    /// Move a running (or halted) rollout to the plan's next stage, or to --share; prints the
    /// statement's sequence last
    Advance(RolloutAdvanceArgs),
    /// Stop a rollout: every host gets the channel's current release again; prints the
    /// statement's sequence last
    Halt(RolloutStopArgs),
    /// Give a rollout up: every host gets the current release, and the plan is over; prints
    /// the statement's sequence last
    Abort(RolloutStopArgs),
    /// End a running rollout by making its candidate the channel's head (moves the tag);
    /// prints the head's sequence last
    Finish(RolloutFinishArgs),
    /// Show a channel's head and rollout
    Status(RolloutStatusArgs),
    /// Recompute the judge's verdict on a stage from counts, from outcome reports (JSON
    /// lines), or from a verdict record (and say whether it agrees); with --plan, the jobs per
    /// arm a stage needs
    Verdict(RolloutVerdictArgs),
}

#[derive(Args, Debug)]
pub struct RolloutStartArgs {
    /// The candidate release: REGISTRY/REPOSITORY@sha256:…
    #[arg(value_name = "REF@DIGEST")]
    pub reference: String,
    /// The channel (a tag of the repository that a head names, e.g. stable)
    #[arg(long, value_name = "NAME")]
    pub channel: String,
    /// The first stage's share of hosts (e.g. 5%); with --stages, it must be the first stage's
    #[arg(long, value_name = "SHARE")]
    pub share: Option<Share>,
    /// The plan: SHARE[:SOAK[:MIN_JOBS[:MIN_HOSTS]]],… ending in 100% to finish (default:
    /// --share with a soak of 1h, 1000 jobs and 20 hosts per arm, then 100%)
    #[arg(long, value_name = "STAGES", value_parser = parse_plan)]
    pub stages: Option<Plan>,
    /// How long the running statement is valid; it lapses to the current release unless
    /// re-signed (by the judge, or `distd refresh`)
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub expires: SignedDuration,
    #[command(flatten)]
    pub promoter: PromoterArgs,
}

impl RolloutStartArgs {
    /// The plan's stages from --share and --stages.
    pub fn stages(&self) -> anyhow::Result<Vec<Stage>> {
        let stages = self.stages.clone().map(|Plan(stages)| stages);
        plan_stages(self.share, stages)
            .map_err(|e| tcdist_core::Error::usage(format!("--share, --stages: {e}")).into())
    }
}

/// `--stages` as given: one value, a list (clap would take a bare `Vec` for repeated values).
#[derive(Clone, Debug)]
pub struct Plan(pub Vec<Stage>);

pub fn parse_plan(text: &str) -> Result<Plan, String> {
    parse_stages(text).map(Plan)
}

/// A channel of a repository, for the rollout commands that act on its current rollout.
#[derive(Args, Debug)]
pub struct ChannelArgs {
    /// The repository: REGISTRY/REPOSITORY
    #[arg(value_name = "REPOSITORY")]
    pub repository: String,
    /// The channel
    #[arg(long, value_name = "NAME")]
    pub channel: String,
}

impl ChannelArgs {
    pub fn repository(&self) -> anyhow::Result<RegistryRef> {
        repository_reference(&self.repository)
    }
}

#[derive(Args, Debug)]
pub struct RolloutAdvanceArgs {
    #[command(flatten)]
    pub channel: ChannelArgs,
    /// Widen to this share instead of the plan's next stage: a later stage of the plan, or a
    /// new one (a new plan; only a promoter's is accepted)
    #[arg(long, value_name = "SHARE")]
    pub share: Option<Share>,
    /// How long the running statement is valid
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub expires: SignedDuration,
    #[command(flatten)]
    pub promoter: PromoterArgs,
}

#[derive(Args, Debug)]
pub struct RolloutStopArgs {
    #[command(flatten)]
    pub channel: ChannelArgs,
    /// Why: the status and every host's pull report it
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    #[command(flatten)]
    pub promoter: PromoterArgs,
}

#[derive(Args, Debug)]
pub struct RolloutFinishArgs {
    #[command(flatten)]
    pub channel: ChannelArgs,
    /// How long the new head is valid
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub expires: SignedDuration,
    #[command(flatten)]
    pub promoter: PromoterArgs,
}

#[derive(Args, Debug)]
pub struct RolloutStatusArgs {
    #[command(flatten)]
    pub channel: ChannelArgs,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub promoter: PromoterArgs,
}

/// `distd rollout verdict`: counts (--candidate, --control, --hosts), --reports, --record or
/// --plan, and the judge's settings.
#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("source")
        .required(true)
        .args(["candidate", "reports", "record", "plan"])
))]
pub struct RolloutVerdictArgs {
    /// The candidate arm's counts: FAILED/JOBS[/CANCELLED], JOBS counting the cancelled jobs
    /// and FAILED the lost ones (served, never reported)
    #[arg(
        long,
        value_name = "FAILED/JOBS[/CANCELLED]",
        value_parser = parse_arm_counts,
        requires_all = ["control", "hosts"]
    )]
    pub candidate: Option<ArmCounts>,
    /// The control arm's counts, as --candidate
    #[arg(
        long,
        value_name = "FAILED/JOBS[/CANCELLED]",
        value_parser = parse_arm_counts,
        requires = "candidate"
    )]
    pub control: Option<ArmCounts>,
    /// Distinct hosts with counted jobs in each arm, candidate first
    #[arg(long, value_name = "CANDIDATE,CONTROL", value_parser = parse_host_counts, requires = "candidate")]
    pub hosts: Option<(u64, u64)>,
    /// Tally outcome records, one JSON object a line, as the daemon keeps them in its state
    /// dir (docs/rollout.md): host_id, job_id, arm, retry, result, …
    #[arg(long, value_name = "FILE.jsonl")]
    pub reports: Option<PathBuf>,
    /// Recompute a verdict record (as --json prints it) from its own inputs and settings, and
    /// say whether it agrees; exit 1 if it does not
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = [
            "alpha", "judged_stages", "allowed_increase", "planning_rate", "min_jobs",
            "min_hosts", "soaked", "look",
        ]
    )]
    pub record: Option<PathBuf>,
    /// Instead of judging: the jobs per arm a stage needs to halt a regression from FROM to
    /// TO (e.g. 5%:10%) with probability --power, and to pass a candidate equal to FROM
    #[arg(long, value_name = "FROM:TO", value_parser = parse_regression)]
    pub plan: Option<(f64, f64)>,
    /// With --plan: the probability of halting (or passing) by then
    #[arg(long, value_name = "P", default_value_t = 0.8, requires = "plan")]
    pub power: f64,
    /// The rollout's error budget, split over its judged stages and the two rates
    #[arg(long, value_name = "P", default_value_t = verdict::DEFAULT_ALPHA)]
    pub alpha: f64,
    /// The plan's stages below 100%, which share --alpha
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub judged_stages: u32,
    /// The largest increase of the failure and cancellation rates a pass accepts (2% or
    /// 0.02: two points)
    #[arg(long, value_name = "RATE", default_value = "2%", value_parser = parse_rate)]
    pub allowed_increase: f64,
    /// The failure rate the test is tuned for (with --min-jobs)
    #[arg(long, value_name = "RATE", default_value = "5%", value_parser = parse_rate)]
    pub planning_rate: f64,
    /// The stage's minimum of completed jobs per arm
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MIN_JOBS)]
    pub min_jobs: u64,
    /// The stage's minimum of distinct hosts per arm (with --reports, also the host cap's N)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MIN_HOSTS)]
    pub min_hosts: u64,
    /// The stage's soak time has passed
    #[arg(long)]
    pub soaked: bool,
    /// Which look at the stage this is (recorded; the bounds do not depend on it)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub look: u64,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

impl RolloutVerdictArgs {
    pub fn config(&self) -> JudgeConfig {
        JudgeConfig {
            alpha: self.alpha,
            judged_stages: self.judged_stages,
            allowed_increase: self.allowed_increase,
            planning_rate: self.planning_rate,
        }
    }

    /// The counts given as flags, with their hosts.
    pub fn counts(&self) -> Option<(ArmCounts, ArmCounts)> {
        let (mut candidate, mut control) = (self.candidate?, self.control?);
        (candidate.hosts, control.hosts) = self.hosts?;
        Some((candidate, control))
    }

    /// What the judge is given for `candidate` and `control`.
    pub fn inputs(&self, candidate: ArmCounts, control: ArmCounts) -> Inputs {
        Inputs {
            candidate,
            control,
            min_jobs: self.min_jobs,
            min_hosts: self.min_hosts,
            soaked: self.soaked,
            look: self.look,
            config: self.config(),
        }
    }
}

/// `FAILED/JOBS[/CANCELLED]`; the hosts come from `--hosts`.
fn parse_arm_counts(text: &str) -> Result<ArmCounts, String> {
    let bad = || format!("{text:?} is not FAILED/JOBS[/CANCELLED] (e.g. 21/400/3)");
    let numbers = text
        .split('/')
        .map(|n| n.trim().parse::<u64>().map_err(|_| bad()))
        .collect::<Result<Vec<_>, _>>()?;
    let (failed, jobs, cancelled) = match numbers[..] {
        [failed, jobs] => (failed, jobs, 0),
        [failed, jobs, cancelled] => (failed, jobs, cancelled),
        _ => return Err(bad()),
    };
    Ok(ArmCounts {
        jobs,
        failed,
        cancelled,
        ..ArmCounts::default()
    })
}

/// `CANDIDATE,CONTROL` host counts.
fn parse_host_counts(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{text:?} is not CANDIDATE,CONTROL host counts (e.g. 20,180)");
    let (candidate, control) = text.split_once(',').ok_or_else(bad)?;
    let count = |n: &str| n.trim().parse::<u64>().map_err(|_| bad());
    Ok((count(candidate)?, count(control)?))
}

/// A rate as a percentage (`5%`, `0.5%`) or a fraction (`0.05`), strictly between 0 and 1.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let bad = || format!("{text:?} is not a rate between 0 and 1 (5%, 0.05)");
    let rate = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => text.trim().parse::<f64>().map_err(|_| bad())?,
    };
    if rate > 0.0 && rate < 1.0 {
        Ok(rate)
    } else {
        Err(bad())
    }
}

/// `FROM:TO`, two rates (`5%:10%`).
fn parse_regression(text: &str) -> Result<(f64, f64), String> {
    let (from, to) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not FROM:TO (e.g. 5%:10%)"))?;
    let (from, to) = (parse_rate(from)?, parse_rate(to)?);
    if to <= from {
        return Err(format!("{text:?}: TO must be above FROM (a regression)"));
    }
    Ok((from, to))
}

/// A repository named without tag or digest (REGISTRY/REPOSITORY).
pub fn repository_reference(text: &str) -> anyhow::Result<RegistryRef> {
    let mut repository = pinned_reference(&format!("{text}:latest"))?;
    repository.tag = None;
    Ok(repository)
}

/// Who promotes: the signing setup, as a promoter identity.
#[derive(Args, Debug)]
pub struct PromoterArgs {
    /// The SPIFFE ID this promoter signs as (instead of --signer-id)
    #[arg(long, env = "TCDIST_PROMOTER_ID", value_name = "SPIFFE_ID")]
    pub promoter_id: Option<String>,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl PromoterArgs {
    pub fn into_signing(self) -> anyhow::Result<(publish::Signing, RegistryArgs)> {
        let mut signing = self.signing;
        if self.promoter_id.is_some() {
            signing.signer_id = self.promoter_id;
        }
        Ok((signing.into_signing()?, self.registry))
    }
}

/// A duration such as `7d`, `36h`, `90m` or ISO 8601 (`P7D`).
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let duration = parse_duration_or_zero(text)?;
    if duration.is_positive() {
        Ok(duration)
    } else {
        Err(format!("{text:?} is not a positive duration"))
    }
}

/// A duration that may be zero ("0s": at once), never negative.
pub fn parse_duration_or_zero(text: &str) -> Result<SignedDuration, String> {
    let span: jiff::Span = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration (7d, 36h, 90m): {e}"))?;
    let duration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("{text:?}: {e}"))?;
    if duration.is_negative() {
        Err(format!("{text:?} is a negative duration"))
    } else {
        Ok(duration)
    }
}

/// A registry reference to a release pinned by digest (what promote and yank act on).
pub fn pinned_reference(text: &str) -> anyhow::Result<RegistryRef> {
    match ReleaseRef::parse(text)? {
        ReleaseRef::Registry(reference) => Ok(reference),
        ReleaseRef::Layout(_) => anyhow::bail!(
            "{text}: channels and yanks live in a registry; an OCI layout has neither"
        ),
    }
}

#[derive(Subcommand, Debug)]
pub enum TrustRootCommand {
    /// Write a Sigstore trusted_root.json: the trust domain's CAs, the log's key, the TSA chain
    Export(TrustRootExportArgs),
}

#[derive(Args, Debug)]
pub struct TrustRootExportArgs {
    /// Where to write it (`-` for stdout)
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub out: PathBuf,
    /// The trust domain's CA certificates (PEM; SPIRE `bundle show -format pem`)
    #[arg(long, env = "TCDIST_SPIRE_BUNDLE", value_name = "FILE")]
    pub ca_bundle: PathBuf,
    /// The trust domain's name
    #[arg(long, env = "TCDIST_SPIRE_TRUST_DOMAIN", value_name = "NAME")]
    pub trust_domain: String,
    /// The timestamp authority's certificate chain (PEM, leaf first)
    #[arg(long, env = "TCDIST_TSA_CHAIN", value_name = "FILE")]
    pub tsa_chain: PathBuf,
    /// The transparency log's public key (PEM)
    #[arg(
        long,
        env = "TCDIST_REKOR_PUBLIC_KEY",
        value_name = "FILE",
        requires = "rekor_origin"
    )]
    pub rekor_public_key: Option<PathBuf>,
    /// The origin the log signs its checkpoints under
    #[arg(long, env = "TCDIST_REKOR_ORIGIN", value_name = "NAME")]
    pub rekor_origin: Option<String>,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The release: REGISTRY/REPOSITORY[:TAG][@DIGEST] or oci-layout:PATH[:TAG]
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The repository named in the signed statement, for an OCI layout
    #[arg(long, env = "TCDIST_REPOSITORY", value_name = "NAME")]
    pub repository: Option<String>,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Who signs and how; shared by `publish` and `sign`.
#[derive(Args, Debug, Clone)]
pub struct SigningArgs {
    /// The SPIFFE ID this signer signs as; an SVID for any other ID is refused
    #[arg(long, env = "TCDIST_SIGNER_ID", value_name = "SPIFFE_ID")]
    pub signer_id: Option<String>,
    /// The SPIFFE Workload API (the SPIRE agent's socket) to fetch the SVID from
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET", value_name = "unix:///PATH")]
    pub spiffe_endpoint_socket: Option<String>,
    /// Sign offline with this SVID certificate (PEM, leaf first) instead of the Workload API
    #[arg(
        long,
        env = "TCDIST_SVID_CERT",
        value_name = "FILE",
        requires = "svid_key"
    )]
    pub svid_cert: Option<PathBuf>,
    /// The SVID's private key (PEM, PKCS#8)
    #[arg(
        long,
        env = "TCDIST_SVID_KEY",
        value_name = "FILE",
        requires = "svid_cert"
    )]
    pub svid_key: Option<PathBuf>,
    /// The trust domain's CA certificates (PEM), to check the signed release
    #[arg(long, env = "TCDIST_SVID_BUNDLE", value_name = "FILE")]
    pub svid_bundle: Option<PathBuf>,
    /// The RFC 3161 timestamp authority (base URL of sigstore timestamp-authority, or the full
    /// endpoint)
    #[arg(long, env = "TCDIST_TSA_URL", value_name = "URL")]
    pub tsa_url: Option<String>,
    /// The timestamp authority's certificate chain (PEM, leaf first)
    #[arg(long, env = "TCDIST_TSA_CHAIN", value_name = "FILE")]
    pub tsa_chain: Option<PathBuf>,
    /// The transparency log (Rekor v2 base URL) to record signatures in
    #[arg(long, env = "TCDIST_REKOR_URL", value_name = "URL", requires_all = ["rekor_public_key", "rekor_origin"])]
    pub rekor_url: Option<String>,
    /// The log's public key (PEM), to check the recorded entry before announcing it
    #[arg(long, env = "TCDIST_REKOR_PUBLIC_KEY", value_name = "FILE")]
    pub rekor_public_key: Option<PathBuf>,
    /// The origin the log signs its checkpoints under
    #[arg(long, env = "TCDIST_REKOR_ORIGIN", value_name = "NAME")]
    pub rekor_origin: Option<String>,
    /// The log's tiles (C2SP tlog-tiles base URL), for the witnesses' consistency proofs
    #[arg(long, env = "TCDIST_REKOR_TILES_URL", value_name = "URL")]
    pub rekor_tiles_url: Option<String>,
    /// The witnesses that cosign the log's checkpoint after each entry, and their quorum
    /// (TOML: quorum, [[witness]] name, key, url); fewer cosignatures fail the signing.
    /// Unused without --rekor-url
    #[arg(long, env = "TCDIST_WITNESSES", value_name = "FILE")]
    pub witnesses: Option<PathBuf>,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Refuse an SVID that expires sooner than this (seconds)
    #[arg(
        long,
        env = "TCDIST_MIN_SVID_LIFETIME",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub min_svid_lifetime: u64,
}

impl SigningArgs {
    /// Checks the signing settings hang together; every missing piece is a usage error that
    /// names its flag and variable.
    pub fn into_signing(self) -> anyhow::Result<publish::Signing> {
        use tcdist_core::Error;
        let missing = |what: &str, flag: &str, var: &str| {
            Error::usage_with_hint(
                format!("{what} is not set: releases are always signed"),
                format!("pass {flag} or set {var} (the local stack's stack.env sets it)"),
            )
        };
        let signer_id = self
            .signer_id
            .ok_or_else(|| missing("the signer's SPIFFE ID", "--signer-id", "TCDIST_SIGNER_ID"))?;
        let signer = tcdist_verify::spiffe_id::SpiffeId::parse(&signer_id)
            .map_err(|e| Error::usage(format!("--signer-id {signer_id:?}: {e}")))?;
        let source = match (self.svid_cert, self.svid_key) {
            (Some(certificate), Some(key)) => sign::svid::SvidSource::Files {
                certificate,
                key,
                bundle: self.svid_bundle,
            },
            _ => sign::svid::SvidSource::WorkloadApi {
                endpoint: self.spiffe_endpoint_socket.ok_or_else(|| {
                    missing(
                        "the SPIFFE Workload API socket",
                        "--spiffe-endpoint-socket (or --svid-cert/--svid-key)",
                        "SPIFFE_ENDPOINT_SOCKET",
                    )
                })?,
            },
        };
        let tsa_url = self
            .tsa_url
            .ok_or_else(|| missing("the timestamp authority", "--tsa-url", "TCDIST_TSA_URL"))?;
        let tsa_chain = self.tsa_chain.ok_or_else(|| {
            missing(
                "the timestamp authority's chain",
                "--tsa-chain",
                "TCDIST_TSA_CHAIN",
            )
        })?;
        let endpoint = match &source {
            sign::svid::SvidSource::WorkloadApi { endpoint } => Some(endpoint.as_str()),
            sign::svid::SvidSource::Files { .. } => None,
        };
        // The daemon's ledger is appended with the SVID that signs.
        let ledger = match self.ledger.open(endpoint, Some(signer.clone()))? {
            Some(ledger) => ledger,
            None => {
                eprintln!(
                    "distd: warning: no ledger (--ledger, TCDIST_LEDGER, or the daemon's, \
                     TCDIST_SERVER): what this process signs will look unauthorized to distd \
                     monitor"
                );
                Ledger::None
            }
        };
        let (log, log_trust) = match (self.rekor_url, self.rekor_public_key, self.rekor_origin) {
            (Some(url), Some(public_key), Some(origin)) => (
                Some(sign::tlog::TransparencyLogClient::new(&url, &origin)?),
                Some(publish::LogTrust { public_key, origin }),
            ),
            _ => (None, None),
        };
        // Witnesses cosign the log's checkpoints: without a log there is nothing to witness.
        let witnesses = match (
            self.witnesses.filter(|_| log.is_some()),
            self.rekor_tiles_url,
        ) {
            (None, _) => None,
            (Some(file), Some(tiles)) => Some(
                sign::witness::Witnesses::load(&file, &tiles)
                    .map_err(|e| Error::usage(format!("--witnesses: {e:#}")))?,
            ),
            (Some(_), None) => {
                return Err(missing(
                    "the log's tiles, which witnesses need consistency proofs from,",
                    "--rekor-tiles-url",
                    "TCDIST_REKOR_TILES_URL",
                )
                .into());
            }
        };
        Ok(publish::Signing {
            signer: sign::Signer {
                source,
                signer,
                min_lifetime: std::time::Duration::from_secs(self.min_svid_lifetime),
                tsa: sign::tsa::TimestampAuthority::new(&tsa_url)?,
                log,
                ledger,
                witnesses,
            },
            tsa_chain,
            log: log_trust,
        })
    }
}

/// Which ledger records what is signed, or is read: a file, else the daemon's.
#[derive(Args, Debug, Clone)]
pub struct LedgerArgs {
    /// The ledger file (wins over --server)
    #[arg(long, env = "TCDIST_LEDGER", value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// The publisher daemon (https://HOST:PORT) whose ledger is meant, when --ledger is not
    /// given
    #[arg(long, env = "TCDIST_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The daemon's SPIFFE ID; a server with another SVID is refused
    #[arg(long, env = "TCDIST_SERVER_ID", value_name = "SPIFFE_ID")]
    pub server_id: Option<String>,
}

impl LedgerArgs {
    /// The ledger named, `None` when neither a file nor a daemon is. The daemon is called
    /// with `caller`'s SVID from the Workload API at `endpoint`.
    pub fn open(
        self,
        endpoint: Option<&str>,
        caller: Option<SpiffeId>,
    ) -> anyhow::Result<Option<Ledger>> {
        use tcdist_core::Error;
        let server = match (self.ledger, self.server) {
            (Some(path), _) => return Ok(Some(Ledger::File(FileLedger::new(path)))),
            (None, None) => return Ok(None),
            (None, Some(server)) => server,
        };
        let server_id = self.server_id.ok_or_else(|| {
            Error::usage_with_hint(
                format!(
                    "the ledger of the daemon at {server} is meant, and its SPIFFE ID is not set"
                ),
                "pass --server-id or set TCDIST_SERVER_ID",
            )
        })?;
        let server_id = SpiffeId::parse(&server_id)
            .map_err(|e| Error::usage(format!("--server-id {server_id:?}: {e}")))?;
        let endpoint = endpoint.ok_or_else(|| {
            Error::usage_with_hint(
                format!(
                    "the ledger of the daemon at {server} is appended with an SVID from the \
                     Workload API, and this process has none (it signs with SVID files, or \
                     SPIFFE_ENDPOINT_SOCKET is not set)"
                ),
                "name a ledger file with --ledger (TCDIST_LEDGER): an offline signer keeps its \
                 own, for the monitor to read",
            )
        })?;
        Ok(Some(Ledger::Remote(RemoteLedger::new(
            server,
            server_id,
            endpoint.to_owned(),
            caller,
        ))))
    }
}

/// A ledger to read, and who reads it.
#[derive(Args, Debug)]
pub struct LedgerReadArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The SPIFFE ID to read the daemon's ledger as (a `read` grant), when this process holds
    /// several SVIDs
    #[arg(long = "as", env = "TCDIST_MONITOR_ID", value_name = "SPIFFE_ID")]
    pub caller: Option<String>,
    /// The SPIFFE Workload API (the SPIRE agent's socket)
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET", value_name = "unix:///PATH")]
    pub spiffe_endpoint_socket: Option<String>,
}

impl LedgerReadArgs {
    pub fn open(self) -> anyhow::Result<Ledger> {
        let caller = self
            .caller
            .as_deref()
            .map(SpiffeId::parse)
            .transpose()
            .map_err(|e| tcdist_core::Error::usage(format!("--as: {e}")))?;
        self.ledger
            .open(self.spiffe_endpoint_socket.as_deref(), caller)?
            .ok_or_else(|| {
                tcdist_core::Error::usage_with_hint(
                    "no ledger is named",
                    "pass --ledger FILE or --server URL (TCDIST_LEDGER, TCDIST_SERVER)",
                )
                .into()
            })
    }
}

#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Check the ledger's hash chain; prints its record count and head
    Verify(LedgerReadArgs),
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Toolchain trees (Go roots), one per platform
    #[arg(value_name = "DIR", required = true)]
    pub trees: Vec<PathBuf>,
    /// Where to publish: REGISTRY/REPOSITORY:TAG (or oci-layout:PATH[:TAG])
    #[arg(long = "ref", env = "TCDIST_REF", value_name = "REF")]
    pub reference: Option<String>,
    /// The platform of each DIR, in order (default: from TOOLCHAIN.json or pkg/tool/<os>_<arch>)
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Vec<Platform>,
    #[command(flatten)]
    pub packaging: PackagingArgs,
    /// Write an OCI image layout directory instead of pushing (tag from --ref)
    #[arg(long, env = "TCDIST_OCI_LAYOUT", value_name = "PATH")]
    pub oci_layout: Option<PathBuf>,
    /// The repository named in the signed statement, when publishing only to an OCI layout
    #[arg(long, env = "TCDIST_REPOSITORY", value_name = "NAME")]
    pub repository: Option<String>,
    /// Cache of packaged layers, so republishing an unchanged tree is cheap
    #[arg(long, env = "TCDIST_CACHE_DIR", value_name = "DIR", default_value_os_t = default_cache())]
    pub cache_dir: PathBuf,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Where to write the toolchain tree (new, empty, or an earlier build's tree)
    #[arg(long, env = "TCDIST_BUILD_OUT", value_name = "DIR")]
    pub out: PathBuf,
    /// With a cross build (--platform of another platform): also write the host's tree that
    /// its make.bash built (new, empty, or an earlier build's tree). The build then runs
    /// make.bash even when its tree is cached
    #[arg(long, value_name = "DIR", requires = "platform")]
    pub host_out: Option<PathBuf>,
    #[command(flatten)]
    pub inputs: BuildInputs,
}

/// What a build is made from, and where it works; shared by `build` and `rebuild`.
#[derive(Args, Debug)]
pub struct BuildInputs {
    /// The upstream Go root to build from (a release tree with VERSION and src/)
    #[arg(long, env = "TCDIST_GO_ROOT", value_name = "SRC")]
    pub go_root: PathBuf,
    /// Build settings: KEY=VALUE lines (GOPROXY, GOSUMDB, GOFLAGS, GOPRIVATE, GONOPROXY,
    /// GONOSUMDB, GOINSECURE, GOVCS for go.env; GOEXPERIMENT, TCDIST_VERSION_SUFFIX,
    /// TCDIST_NAME)
    #[arg(long, env = "TCDIST_BUILD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where to copy and build the source (must be new or empty; kept afterwards)
    #[arg(long, env = "TCDIST_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// The patch series to apply (*.patch, in file-name order)
    #[arg(long, env = "TCDIST_PATCHES", value_name = "DIR", default_value_os_t = build::patches::default_series_dir())]
    pub patches: PathBuf,
    /// The Go root make.bash builds with (default: `go env GOROOT` of the go on PATH)
    #[arg(long, env = "GOROOT_BOOTSTRAP", value_name = "DIR")]
    pub bootstrap: Option<PathBuf>,
    /// Cache of finished trees (by input digest) and of work dirs
    #[arg(long, env = "TCDIST_CACHE_DIR", value_name = "DIR", default_value_os_t = default_cache())]
    pub cache_dir: PathBuf,
    /// Neither reuse nor store a cached tree: always run the whole build
    #[arg(long)]
    pub no_cache: bool,
    /// The platform to build for (default: this host's); another one is cross-built
    #[arg(long, env = "TCDIST_BUILD_PLATFORM", value_name = "OS/ARCH")]
    pub platform: Option<Platform>,
}

impl BuildInputs {
    /// The build of these inputs into `out`.
    pub fn request(&self, out: PathBuf) -> anyhow::Result<build::BuildRequest> {
        let config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                build::BuildConfig::parse(&text, &path.display().to_string())?
            }
            None => build::BuildConfig::default(),
        };
        let absolute = |p: &std::path::Path| std::path::absolute(p).context("resolving a path");
        let bootstrap = match &self.bootstrap {
            Some(dir) => dir.clone(),
            None => host_goroot()?,
        };
        Ok(build::BuildRequest {
            go_root: absolute(&self.go_root)?,
            out,
            config,
            patches_dir: absolute(&self.patches)?,
            work_dir: self.work_dir.as_deref().map(absolute).transpose()?,
            bootstrap: absolute(&bootstrap)?,
            target: match &self.platform {
                Some(platform) => build::Target::for_platform(platform)?,
                None => None,
            },
            cache_dir: (!self.no_cache).then(|| self.cache_dir.clone()),
            scratch_dir: self.cache_dir.join("build/work"),
            host_out: None,
        })
    }
}

/// How trees become layers; shared by `publish` and `rebuild`, which must package alike.
#[derive(Args, Debug)]
pub struct PackagingArgs {
    /// Layer compression
    #[arg(long, env = "TCDIST_COMPRESSION", default_value = "zstd", value_parser = ["zstd", "gzip"])]
    pub compression: String,
    /// Compression level (zstd 1-19, gzip 1-9)
    #[arg(long, env = "TCDIST_COMPRESSION_LEVEL", value_name = "N")]
    pub compression_level: Option<i32>,
    /// Timestamp for every layer entry (seconds since the epoch)
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        value_name = "SECONDS",
        default_value_t = 0
    )]
    pub source_date_epoch: u64,
}

impl PackagingArgs {
    pub fn settings(&self) -> anyhow::Result<PackageSettings> {
        let compression: Compression = self.compression.parse().map_err(anyhow::Error::msg)?;
        let level = self.compression_level.unwrap_or(match compression {
            Compression::Zstd => 3,
            Compression::Gzip => 6,
        });
        Ok(PackageSettings {
            layer: LayerSettings {
                compression,
                level,
                mtime: self.source_date_epoch,
            },
            ..PackageSettings::default()
        })
    }
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The line's name in the config
    #[arg(value_name = "LINE")]
    pub line: String,
    /// The release lines (TOML; see docs/cli.md)
    #[arg(long, env = "TCDIST_LINES", value_name = "FILE")]
    pub config: PathBuf,
    /// The SPIFFE ID that signs the line's channel heads
    #[arg(long, env = "TCDIST_PROMOTER_ID", value_name = "SPIFFE_ID")]
    pub promoter_id: Option<String>,
    /// The Go root make.bash builds with (default: `go env GOROOT` of the go on PATH)
    #[arg(long, env = "GOROOT_BOOTSTRAP", value_name = "DIR")]
    pub bootstrap: Option<PathBuf>,
    /// Cache of finished trees (by input digest), work dirs and packaged layers
    #[arg(long, env = "TCDIST_CACHE_DIR", value_name = "DIR", default_value_os_t = default_cache())]
    pub cache_dir: PathBuf,
    #[command(flatten)]
    pub packaging: PackagingArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct RebuildArgs {
    /// The release to rebuild and co-sign: REGISTRY/REPOSITORY:TAG or …@sha256:…
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The SPIFFE ID that signed the release (checked before anything is rebuilt)
    #[arg(long, env = "TCDIST_BUILDER_ID", value_name = "SPIFFE_ID")]
    pub builder_id: String,
    /// The SPIFFE ID this rebuilder co-signs as (instead of --signer-id)
    #[arg(long, env = "TCDIST_REBUILDER_ID", value_name = "SPIFFE_ID")]
    pub rebuilder_id: Option<String>,
    #[command(flatten)]
    pub inputs: BuildInputs,
    #[command(flatten)]
    pub packaging: PackagingArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

fn default_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("tcdist/distd")
}

/// `go env GOROOT` of the go command on PATH, the default bootstrap toolchain.
pub fn host_goroot() -> anyhow::Result<PathBuf> {
    let output = std::process::Command::new("go")
        .args(["env", "GOROOT"])
        .env("GOTOOLCHAIN", "local")
        .env_remove("X_GO_RUNTIME_ROOT")
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "running `go env GOROOT` for the bootstrap toolchain: {e}; pass --bootstrap"
            )
        })?;
    let root = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || root.is_empty() {
        anyhow::bail!(
            "`go env GOROOT` failed ({}); pass --bootstrap",
            output.status
        );
    }
    Ok(PathBuf::from(root))
}
