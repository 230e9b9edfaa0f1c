//! `distd`: package, publish and (later) serve customized Go toolchains.

mod build;
mod ctl;
mod events;
mod lifecycle;
mod line;
mod package;
mod publish;
mod rebuild;
mod serve;
mod sign;
mod trust_root;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use jiff::SignedDuration;
use tcdist_core::Platform;
use tcdist_core::program;
use tcdist_oci::reference::{RegistryRef, ReleaseRef};
use tcdist_oci::registry::RegistryArgs;
use tcdist_oci::release::Compression;

use package::layer::LayerSettings;
use package::{PackageSettings, TreeInput};

#[derive(Parser, Debug)]
#[command(
    name = "distd",
    version,
    about = "Package and publish customized Go toolchains as OCI releases"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Patch a Go source tree, build it with make.bash, and write a toolchain tree; prints
    /// the tree's path last
    Build(BuildArgs),
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
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// The daemon's config (TOML; see docs/daemon.md)
    #[arg(long, env = "TCDIST_SERVE_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// The SPIFFE ID that signs channel heads and yank lists
    #[arg(long, env = "TCDIST_PROMOTER_ID", value_name = "SPIFFE_ID")]
    promoter_id: String,
    #[command(flatten)]
    signing: SigningArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Debug)]
struct PromoteArgs {
    /// The release: REGISTRY/REPOSITORY@sha256:…
    #[arg(value_name = "REF@DIGEST")]
    reference: String,
    /// The channel (a tag of the repository, e.g. stable)
    #[arg(long, value_name = "NAME")]
    channel: String,
    /// How long the head is valid; verifiers refuse it afterwards unless it is refreshed
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    expires: SignedDuration,
    #[command(flatten)]
    promoter: PromoterArgs,
}

#[derive(Args, Debug)]
struct RefreshArgs {
    /// The repository: REGISTRY/REPOSITORY
    #[arg(value_name = "REPOSITORY")]
    repository: String,
    /// The channels to keep fresh
    #[arg(long, value_name = "NAME", required = true)]
    channel: Vec<String>,
    /// Re-sign heads that expire within this time
    #[arg(long, value_name = "DURATION", default_value = "2d", value_parser = parse_duration)]
    within: SignedDuration,
    /// How long a re-signed head is valid
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    expires: SignedDuration,
    #[command(flatten)]
    promoter: PromoterArgs,
}

#[derive(Args, Debug)]
struct YankArgs {
    /// The release: REGISTRY/REPOSITORY@sha256:…
    #[arg(value_name = "REF@DIGEST")]
    reference: String,
    /// Why: every pull it refuses reports it
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    promoter: PromoterArgs,
}

/// Who promotes: the signing setup, as a promoter identity.
#[derive(Args, Debug)]
struct PromoterArgs {
    /// The SPIFFE ID this promoter signs as (instead of --signer-id)
    #[arg(long, env = "TCDIST_PROMOTER_ID", value_name = "SPIFFE_ID")]
    promoter_id: Option<String>,
    #[command(flatten)]
    signing: SigningArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

impl PromoterArgs {
    fn into_signing(self) -> anyhow::Result<(publish::Signing, RegistryArgs)> {
        let mut signing = self.signing;
        if self.promoter_id.is_some() {
            signing.signer_id = self.promoter_id;
        }
        Ok((signing.into_signing()?, self.registry))
    }
}

/// A duration such as `7d`, `36h`, `90m` or ISO 8601 (`P7D`).
fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let span: jiff::Span = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration (7d, 36h, 90m): {e}"))?;
    let duration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("{text:?}: {e}"))?;
    if duration.is_positive() {
        Ok(duration)
    } else {
        Err(format!("{text:?} is not a positive duration"))
    }
}

/// A registry reference to a release pinned by digest (what promote and yank act on).
fn pinned_reference(text: &str) -> anyhow::Result<RegistryRef> {
    match ReleaseRef::parse(text)? {
        ReleaseRef::Registry(reference) => Ok(reference),
        ReleaseRef::Layout(_) => anyhow::bail!(
            "{text}: channels and yanks live in a registry; an OCI layout has neither"
        ),
    }
}

#[derive(Subcommand, Debug)]
enum TrustRootCommand {
    /// Write a Sigstore trusted_root.json: the trust domain's CAs, the log's key, the TSA chain
    Export(TrustRootExportArgs),
}

#[derive(Args, Debug)]
struct TrustRootExportArgs {
    /// Where to write it (`-` for stdout)
    #[arg(long, value_name = "FILE", default_value = "-")]
    out: PathBuf,
    /// The trust domain's CA certificates (PEM; SPIRE `bundle show -format pem`)
    #[arg(long, env = "TCDIST_SPIRE_BUNDLE", value_name = "FILE")]
    ca_bundle: PathBuf,
    /// The trust domain's name
    #[arg(long, env = "TCDIST_SPIRE_TRUST_DOMAIN", value_name = "NAME")]
    trust_domain: String,
    /// The timestamp authority's certificate chain (PEM, leaf first)
    #[arg(long, env = "TCDIST_TSA_CHAIN", value_name = "FILE")]
    tsa_chain: PathBuf,
    /// The transparency log's public key (PEM)
    #[arg(
        long,
        env = "TCDIST_REKOR_PUBLIC_KEY",
        value_name = "FILE",
        requires = "rekor_origin"
    )]
    rekor_public_key: Option<PathBuf>,
    /// The origin the log signs its checkpoints under
    #[arg(long, env = "TCDIST_REKOR_ORIGIN", value_name = "NAME")]
    rekor_origin: Option<String>,
}

#[derive(Args, Debug)]
struct SignArgs {
    /// The release: REGISTRY/REPOSITORY[:TAG][@DIGEST] or oci-layout:PATH[:TAG]
    #[arg(value_name = "REF")]
    reference: String,
    /// The repository named in the signed statement, for an OCI layout
    #[arg(long, env = "TCDIST_REPOSITORY", value_name = "NAME")]
    repository: Option<String>,
    #[command(flatten)]
    signing: SigningArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Who signs and how; shared by `publish` and `sign`.
#[derive(Args, Debug, Clone)]
struct SigningArgs {
    /// The SPIFFE ID this signer signs as; an SVID for any other ID is refused
    #[arg(long, env = "TCDIST_SIGNER_ID", value_name = "SPIFFE_ID")]
    signer_id: Option<String>,
    /// The SPIFFE Workload API (the SPIRE agent's socket) to fetch the SVID from
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET", value_name = "unix:///PATH")]
    spiffe_endpoint_socket: Option<String>,
    /// Sign offline with this SVID certificate (PEM, leaf first) instead of the Workload API
    #[arg(
        long,
        env = "TCDIST_SVID_CERT",
        value_name = "FILE",
        requires = "svid_key"
    )]
    svid_cert: Option<PathBuf>,
    /// The SVID's private key (PEM, PKCS#8)
    #[arg(
        long,
        env = "TCDIST_SVID_KEY",
        value_name = "FILE",
        requires = "svid_cert"
    )]
    svid_key: Option<PathBuf>,
    /// The trust domain's CA certificates (PEM), to check the signed release
    #[arg(long, env = "TCDIST_SVID_BUNDLE", value_name = "FILE")]
    svid_bundle: Option<PathBuf>,
    /// The RFC 3161 timestamp authority (base URL of sigstore timestamp-authority, or the full
    /// endpoint)
    #[arg(long, env = "TCDIST_TSA_URL", value_name = "URL")]
    tsa_url: Option<String>,
    /// The timestamp authority's certificate chain (PEM, leaf first)
    #[arg(long, env = "TCDIST_TSA_CHAIN", value_name = "FILE")]
    tsa_chain: Option<PathBuf>,
    /// The transparency log (Rekor v2 base URL) to record signatures in
    #[arg(long, env = "TCDIST_REKOR_URL", value_name = "URL", requires_all = ["rekor_public_key", "rekor_origin"])]
    rekor_url: Option<String>,
    /// The log's public key (PEM), to check the recorded entry before announcing it
    #[arg(long, env = "TCDIST_REKOR_PUBLIC_KEY", value_name = "FILE")]
    rekor_public_key: Option<PathBuf>,
    /// The origin the log signs its checkpoints under
    #[arg(long, env = "TCDIST_REKOR_ORIGIN", value_name = "NAME")]
    rekor_origin: Option<String>,
    /// Refuse an SVID that expires sooner than this (seconds)
    #[arg(
        long,
        env = "TCDIST_MIN_SVID_LIFETIME",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    min_svid_lifetime: u64,
}

#[derive(Args, Debug)]
struct PublishArgs {
    /// Toolchain trees (Go roots), one per platform
    #[arg(value_name = "DIR", required = true)]
    trees: Vec<PathBuf>,
    /// Where to publish: REGISTRY/REPOSITORY:TAG (or oci-layout:PATH[:TAG])
    #[arg(long = "ref", env = "TCDIST_REF", value_name = "REF")]
    reference: Option<String>,
    /// The platform of each DIR, in order (default: from TOOLCHAIN.json or pkg/tool/<os>_<arch>)
    #[arg(long, value_name = "OS/ARCH")]
    platform: Vec<Platform>,
    #[command(flatten)]
    packaging: PackagingArgs,
    /// Write an OCI image layout directory instead of pushing (tag from --ref)
    #[arg(long, env = "TCDIST_OCI_LAYOUT", value_name = "PATH")]
    oci_layout: Option<PathBuf>,
    /// The repository named in the signed statement, when publishing only to an OCI layout
    #[arg(long, env = "TCDIST_REPOSITORY", value_name = "NAME")]
    repository: Option<String>,
    /// Cache of packaged layers, so republishing an unchanged tree is cheap
    #[arg(long, env = "TCDIST_CACHE_DIR", value_name = "DIR", default_value_os_t = default_cache())]
    cache_dir: PathBuf,
    #[command(flatten)]
    signing: SigningArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// Where to write the toolchain tree (new, empty, or an earlier build's tree)
    #[arg(long, env = "TCDIST_BUILD_OUT", value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    inputs: BuildInputs,
}

/// What a build is made from, and where it works; shared by `build` and `rebuild`.
#[derive(Args, Debug)]
struct BuildInputs {
    /// The upstream Go root to build from (a release tree with VERSION and src/)
    #[arg(long, env = "TCDIST_GO_ROOT", value_name = "SRC")]
    go_root: PathBuf,
    /// Build settings: KEY=VALUE lines (GOPROXY, GOSUMDB, GOFLAGS, GOPRIVATE, GONOPROXY,
    /// GONOSUMDB, GOINSECURE, GOVCS for go.env; GOEXPERIMENT, TCDIST_VERSION_SUFFIX,
    /// TCDIST_NAME)
    #[arg(long, env = "TCDIST_BUILD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to copy and build the source (must be new or empty; kept afterwards)
    #[arg(long, env = "TCDIST_WORK_DIR", value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// The patch series to apply (*.patch, in file-name order)
    #[arg(long, env = "TCDIST_PATCHES", value_name = "DIR", default_value_os_t = build::patches::default_series_dir())]
    patches: PathBuf,
    /// The Go root make.bash builds with (default: `go env GOROOT` of the go on PATH)
    #[arg(long, env = "GOROOT_BOOTSTRAP", value_name = "DIR")]
    bootstrap: Option<PathBuf>,
    /// Cache of finished trees (by input digest) and of work dirs
    #[arg(long, env = "TCDIST_CACHE_DIR", value_name = "DIR", default_value_os_t = default_cache())]
    cache_dir: PathBuf,
    /// Neither reuse nor store a cached tree: always run the whole build
    #[arg(long)]
    no_cache: bool,
    /// The platform to build for (default: this host's); another one is cross-built
    #[arg(long, env = "TCDIST_BUILD_PLATFORM", value_name = "OS/ARCH")]
    platform: Option<Platform>,
}

/// How trees become layers; shared by `publish` and `rebuild`, which must package alike.
#[derive(Args, Debug)]
struct PackagingArgs {
    /// Layer compression
    #[arg(long, env = "TCDIST_COMPRESSION", default_value = "zstd", value_parser = ["zstd", "gzip"])]
    compression: String,
    /// Compression level (zstd 1-19, gzip 1-9)
    #[arg(long, env = "TCDIST_COMPRESSION_LEVEL", value_name = "N")]
    compression_level: Option<i32>,
    /// Timestamp for every layer entry (seconds since the epoch)
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        value_name = "SECONDS",
        default_value_t = 0
    )]
    source_date_epoch: u64,
}

impl PackagingArgs {
    fn settings(&self) -> anyhow::Result<PackageSettings> {
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
struct ReleaseArgs {
    /// The line's name in the config
    #[arg(value_name = "LINE")]
    line: String,
    /// The release lines (TOML; see docs/cli.md)
    #[arg(long, env = "TCDIST_LINES", value_name = "FILE")]
    config: PathBuf,
    /// The SPIFFE ID that signs the line's channel heads
    #[arg(long, env = "TCDIST_PROMOTER_ID", value_name = "SPIFFE_ID")]
    promoter_id: Option<String>,
    /// The Go root make.bash builds with (default: `go env GOROOT` of the go on PATH)
    #[arg(long, env = "GOROOT_BOOTSTRAP", value_name = "DIR")]
    bootstrap: Option<PathBuf>,
    /// Cache of finished trees (by input digest), work dirs and packaged layers
    #[arg(long, env = "TCDIST_CACHE_DIR", value_name = "DIR", default_value_os_t = default_cache())]
    cache_dir: PathBuf,
    #[command(flatten)]
    packaging: PackagingArgs,
    #[command(flatten)]
    signing: SigningArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Debug)]
struct RebuildArgs {
    /// The release to rebuild and co-sign: REGISTRY/REPOSITORY:TAG or …@sha256:…
    #[arg(value_name = "REF")]
    reference: String,
    /// The SPIFFE ID that signed the release (checked before anything is rebuilt)
    #[arg(long, env = "TCDIST_BUILDER_ID", value_name = "SPIFFE_ID")]
    builder_id: String,
    /// The SPIFFE ID this rebuilder co-signs as (instead of --signer-id)
    #[arg(long, env = "TCDIST_REBUILDER_ID", value_name = "SPIFFE_ID")]
    rebuilder_id: Option<String>,
    #[command(flatten)]
    inputs: BuildInputs,
    #[command(flatten)]
    packaging: PackagingArgs,
    #[command(flatten)]
    signing: SigningArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

fn default_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("tcdist/distd")
}

fn main() -> ExitCode {
    let config = program::ConfigFile {
        variable: "TCDIST_CONFIG",
        default: std::path::Path::new("/etc/tcdist/distd.toml"),
    };
    let cli: Cli = match program::parse_args("distd", &config) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match program::start_runtime("distd") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Build(args) => build_command(args),
        Command::Publish(args) => runtime.block_on(publish_command(args)),
        Command::Sign(args) => runtime.block_on(sign_command(args)),
        Command::Promote(args) => runtime.block_on(promote_command(args)),
        Command::Refresh(args) => runtime.block_on(refresh_command(args)),
        Command::Yank(args) => runtime.block_on(yank_command(args)),
        Command::Rebuild(args) => runtime.block_on(rebuild_command(args)),
        Command::Release(args) => {
            events::report_to_file_from_environment();
            runtime.block_on(until_terminated(release_command(args)))
        }
        Command::Serve(args) => runtime.block_on(serve_command(args)),
        Command::Ctl(args) => runtime.block_on(ctl::run(args)).map_err(|e| {
            let code = ctl::exit_code(&e);
            e.context(CtlExit(code))
        }),
        Command::TrustRoot(TrustRootCommand::Export(args)) => trust_root_command(args),
    };
    // A build thread still copying or building after SIGTERM is not waited for.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("distd: error: {err:#}");
            let code = match err.downcast_ref::<CtlExit>() {
                Some(exit) => exit.0,
                None => err
                    .chain()
                    .find_map(|cause| cause.downcast_ref::<tcdist_core::Error>())
                    .map_or(1, tcdist_core::Error::exit_code),
            };
            ExitCode::from(code)
        }
    }
}

/// Runs `work` unless SIGTERM comes first; then `work` is dropped, which removes its
/// temporary files (a build's make.bash, in the same process group, gets the signal too).
/// Publishing moves tags only after signing, so stopping at any point leaves none on an
/// unsigned release.
async fn until_terminated(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = work => result,
        _ = terminate.recv() => anyhow::bail!("stopped by SIGTERM before the release was finished"),
    }
}

/// The exit code `distd ctl` chose for its error, carried to `main`.
#[derive(Debug)]
struct CtlExit(u8);

impl std::fmt::Display for CtlExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("distd ctl")
    }
}

async fn serve_command(args: ServeArgs) -> anyhow::Result<()> {
    let config = serve::config::load(&args.config)
        .map_err(|e| tcdist_core::Error::usage(format!("{e:#}")))?;
    let endpoint = args.signing.spiffe_endpoint_socket.clone().ok_or_else(|| {
        tcdist_core::Error::usage(
            "the daemon serves with an SVID from the Workload API: set SPIFFE_ENDPOINT_SOCKET",
        )
    })?;
    let promoter = SigningArgs {
        signer_id: Some(args.promoter_id),
        ..args.signing
    }
    .into_signing()?;
    serve::serve(config, promoter, args.registry, &endpoint).await
}

fn build_command(args: BuildArgs) -> anyhow::Result<()> {
    let out = std::path::absolute(&args.out).context("resolving a path")?;
    let started = std::time::Instant::now();
    let outcome = build::build(&args.inputs.request(out.clone())?)?;
    eprintln!(
        "distd: {} {} ({}) in {:.0?}",
        if outcome.cached { "reused" } else { "built" },
        outcome.go_version_line,
        outcome.input_digest,
        started.elapsed()
    );
    println!("{}", out.display());
    Ok(())
}

impl BuildInputs {
    /// The build of these inputs into `out`.
    fn request(&self, out: PathBuf) -> anyhow::Result<build::BuildRequest> {
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
        })
    }
}

/// `go env GOROOT` of the go command on PATH, the default bootstrap toolchain.
fn host_goroot() -> anyhow::Result<PathBuf> {
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

async fn publish_command(args: PublishArgs) -> anyhow::Result<()> {
    if !args.platform.is_empty() && args.platform.len() != args.trees.len() {
        anyhow::bail!(
            "{} --platform values for {} trees: give one per DIR, in order, or none",
            args.platform.len(),
            args.trees.len()
        );
    }
    let reference = args
        .reference
        .as_deref()
        .map(ReleaseRef::parse)
        .transpose()?;
    let trees = args
        .trees
        .iter()
        .enumerate()
        .map(|(i, path)| TreeInput {
            path: path.clone(),
            platform: args.platform.get(i).cloned(),
        })
        .collect();
    let digest = publish::publish(publish::PublishRequest {
        trees,
        reference,
        oci_layout: args.oci_layout,
        settings: args.packaging.settings()?,
        cache_dir: args.cache_dir,
        registry: args.registry,
        repository: args.repository,
        signing: args.signing.into_signing()?,
    })
    .await?;
    println!("{digest}");
    Ok(())
}

fn trust_root_command(args: TrustRootExportArgs) -> anyhow::Result<()> {
    let root = trust_root::export(&trust_root::TrustRootInputs {
        ca_bundle: &args.ca_bundle,
        trust_domain: &args.trust_domain,
        tsa_chain: &args.tsa_chain,
        log: args
            .rekor_public_key
            .as_deref()
            .zip(args.rekor_origin.as_deref()),
    })?;
    let text = serde_json::to_string_pretty(&root)? + "\n";
    if args.out.as_os_str() == "-" {
        print!("{text}");
    } else {
        let temp = args.out.with_extension("tmp");
        std::fs::write(&temp, text).with_context(|| format!("writing {}", temp.display()))?;
        std::fs::rename(&temp, &args.out)
            .with_context(|| format!("writing {}", args.out.display()))?;
    }
    Ok(())
}

async fn sign_command(args: SignArgs) -> anyhow::Result<()> {
    let reference = ReleaseRef::parse(&args.reference)?;
    let digest = publish::sign_existing(
        &reference,
        args.repository.as_deref(),
        &args.signing.into_signing()?,
        &args.registry,
    )
    .await?;
    println!("{digest}");
    Ok(())
}

async fn promote_command(args: PromoteArgs) -> anyhow::Result<()> {
    let reference = pinned_reference(&args.reference)?;
    let (signing, registry) = args.promoter.into_signing()?;
    let head = lifecycle::HeadRequest {
        channel: &args.channel,
        expires_in: args.expires,
    };
    let sequence = lifecycle::promote(&reference, &head, &signing, &registry).await?;
    println!("{sequence}");
    Ok(())
}

async fn refresh_command(args: RefreshArgs) -> anyhow::Result<()> {
    // The repository is named without tag or digest; each channel's tag is set in turn.
    let mut repository = pinned_reference(&format!("{}:{}", args.repository, "latest"))?;
    repository.tag = None;
    let (signing, registry) = args.promoter.into_signing()?;
    lifecycle::refresh(
        &repository,
        &args.channel,
        args.within,
        args.expires,
        &signing,
        &registry,
    )
    .await
}

async fn yank_command(args: YankArgs) -> anyhow::Result<()> {
    let reference = pinned_reference(&args.reference)?;
    let (signing, registry) = args.promoter.into_signing()?;
    let sequence = lifecycle::yank(&reference, &args.reason, &signing, &registry).await?;
    println!("{sequence}");
    Ok(())
}

async fn release_command(args: ReleaseArgs) -> anyhow::Result<()> {
    let lines = line::load(&args.config)?;
    let Some(line) = lines.iter().find(|l| l.name == args.line) else {
        return Err(tcdist_core::Error::usage(format!(
            "{} has no line {:?} (it has: {})",
            args.config.display(),
            args.line,
            lines
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    };
    let promoter = match args.promoter_id {
        Some(id) => Some(
            SigningArgs {
                signer_id: Some(id),
                ..args.signing.clone()
            }
            .into_signing()?,
        ),
        None => None,
    };
    let bootstrap = match args.bootstrap {
        Some(dir) => dir,
        None => host_goroot()?,
    };
    std::fs::create_dir_all(args.cache_dir.join("release"))
        .with_context(|| format!("creating {}", args.cache_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("release.")
        .tempdir_in(args.cache_dir.join("release"))
        .context("creating the release's work dir")?;
    let workshop = line::Workshop {
        bootstrap,
        cache_dir: args.cache_dir.clone(),
        work: work.path().to_owned(),
        settings: args.packaging.settings()?,
        registry: &args.registry,
    };
    let digest = line::release(
        line,
        &workshop,
        args.signing.into_signing()?,
        promoter.as_ref(),
    )
    .await?;
    println!("{digest}");
    Ok(())
}

async fn rebuild_command(args: RebuildArgs) -> anyhow::Result<()> {
    let reference = pinned_reference(&args.reference)?;
    if let Some(platform) = &args.inputs.platform {
        return Err(tcdist_core::Error::usage(format!(
            "--platform {platform}: a rebuild builds every platform the release has"
        ))
        .into());
    }
    let builder = tcdist_verify::spiffe_id::SpiffeId::parse(&args.builder_id).map_err(|e| {
        tcdist_core::Error::usage(format!("--builder-id {:?}: {e}", args.builder_id))
    })?;
    let mut signing = args.signing;
    if args.rebuilder_id.is_some() {
        signing.signer_id = args.rebuilder_id;
    }
    let work = tempfile::Builder::new()
        .prefix("rebuild.")
        .tempdir_in({
            let dir = args.inputs.cache_dir.join("rebuild");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dir
        })
        .context("creating the rebuild's work dir")?;
    let rebuilt = rebuild::rebuild(rebuild::RebuildRequest {
        reference,
        builder,
        build: args.inputs.request(work.path().join("tree"))?,
        settings: args.packaging.settings()?,
        cache_dir: args.inputs.cache_dir.clone(),
        work: work.path().to_owned(),
        signing: signing.into_signing()?,
        registry: args.registry,
    })
    .await;
    // The pulled entry is sealed read-only, which a plain removal cannot undo.
    let _ = tcdist_store::staging::remove_tree(work.path());
    println!("{}", rebuilt?);
    Ok(())
}

impl SigningArgs {
    /// Checks the signing settings hang together; every missing piece is a usage error that
    /// names its flag and variable.
    fn into_signing(self) -> anyhow::Result<publish::Signing> {
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
        let (log, log_trust) = match (self.rekor_url, self.rekor_public_key, self.rekor_origin) {
            (Some(url), Some(public_key), Some(origin)) => (
                Some(sign::tlog::TransparencyLogClient::new(&url)?),
                Some(publish::LogTrust { public_key, origin }),
            ),
            _ => (None, None),
        };
        Ok(publish::Signing {
            signer: sign::Signer {
                source,
                signer,
                min_lifetime: std::time::Duration::from_secs(self.min_svid_lifetime),
                tsa: sign::tsa::TimestampAuthority::new(&tsa_url)?,
                log,
            },
            tsa_chain,
            log: log_trust,
        })
    }
}
