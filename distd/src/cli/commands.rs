//! One function per subcommand, and `run`, which picks one. Stdout carries only a command's
//! result (a tree's path, a digest, a sequence, a trusted root); everything else goes to stderr.

use anyhow::Context as _;
use tokio::runtime::Runtime;

use tcdist_oci::reference::ReleaseRef;

use super::args::{
    BuildArgs, ChannelArgs, Command, LedgerCommand, LedgerReadArgs, MonitorArgs, MonitorCommand,
    PromoteArgs, PromoterArgs, PublishArgs, RebuildArgs, RefreshArgs, ReleaseArgs, RolloutCommand,
    RolloutVerdictArgs, ServeArgs, SignArgs, SigningArgs, TrustRootCommand, TrustRootExportArgs,
    YankArgs, host_goroot, pinned_reference, repository_reference,
};
use crate::judge::{sample_size, tally, verdict};
use crate::package::TreeInput;
use crate::{
    build, ctl, events, lifecycle, line, monitor, publish, rebuild, rollout, serve, trust_root,
};

/// Runs `command`, on `runtime` when it is async.
pub fn run(command: Command, runtime: &Runtime) -> anyhow::Result<()> {
    match command {
        Command::Build(args) => build_command(args),
        Command::SourceDigest(args) => {
            println!("{}", build::source::source_digest(&args.go_root)?);
            Ok(())
        }
        Command::Publish(args) => runtime.block_on(publish_command(args)),
        Command::Sign(args) => runtime.block_on(sign_command(args)),
        Command::Promote(args) => runtime.block_on(promote_command(args)),
        Command::Refresh(args) => runtime.block_on(refresh_command(args)),
        Command::Yank(args) => runtime.block_on(yank_command(args)),
        Command::Rollout(command) => runtime.block_on(rollout_command(command)),
        Command::Rebuild(args) => runtime.block_on(rebuild_command(args)),
        Command::Release(args) => {
            events::report_to_file_from_environment();
            runtime.block_on(until_terminated(release_command(args)))
        }
        Command::Serve(args) => runtime.block_on(serve_command(args)),
        Command::Ctl(args) => runtime.block_on(ctl::run(args)).map_err(|e| {
            let code = ctl::exit_code(&e);
            e.context(CommandExit {
                code,
                command: "distd ctl",
            })
        }),
        Command::TrustRoot(TrustRootCommand::Export(args)) => trust_root_command(args),
        Command::Ledger(LedgerCommand::Verify(args)) => {
            runtime.block_on(ledger_verify_command(args))
        }
        Command::Monitor(args) => runtime.block_on(monitor_command(args)),
    }
}

async fn monitor_command(args: MonitorArgs) -> anyhow::Result<()> {
    if let Some(MonitorCommand::Ack(ack)) = args.command {
        for id in monitor::acknowledge(&ack.state, &ack.ids, ack.all).await? {
            println!("{id}");
        }
        return Ok(());
    }
    let (Some(state), Some(policy)) = (args.state, args.policy) else {
        return Err(tcdist_core::Error::usage("--state and --policy are required").into());
    };
    let policy =
        tcdist_verify::policy::Policy::load_with_trusted_root(&policy, args.trust.as_deref())
            .map_err(|e| tcdist_core::Error::usage(format!("{e}")))?;
    let service = monitor::Service {
        monitor: monitor::round::Monitor::new(
            policy,
            args.witnesses.as_deref(),
            args.ledger.open()?,
            monitor::state::StateDir::open(&state)?,
            args.max_lag,
            std::time::Duration::from_secs(30),
        ),
        once: args.once,
        interval: args.interval.unsigned_abs(),
        hook: args.alert_hook,
        metrics_listen: args.metrics_listen,
    };
    match monitor::run(service).await? {
        None => Ok(()),
        Some(class) => Err(anyhow::anyhow!(
            "alerts are open; the most severe is {}",
            class.as_str()
        )
        .context(CommandExit {
            code: class.exit_code(),
            command: "distd monitor",
        })),
    }
}

/// `distd ledger verify`: the chain checks, or exit 42 naming the line that breaks it.
async fn ledger_verify_command(args: LedgerReadArgs) -> anyhow::Result<()> {
    let ledger = args.open()?;
    let head = ledger.read().await?.head();
    println!("ledger ok: {} records, head {}", head.records, head.head);
    Ok(())
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

/// The exit code a command chose for its error (`distd ctl`, `distd monitor`), carried to
/// `main`; shown as the command's name before the error.
#[derive(Debug)]
pub struct CommandExit {
    pub code: u8,
    pub command: &'static str,
}

impl std::fmt::Display for CommandExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.command)
    }
}

async fn serve_command(mut args: ServeArgs) -> anyhow::Result<()> {
    let config = serve::config::load(&args.config)
        .map_err(|e| tcdist_core::Error::usage(format!("{e:#}")))?;
    // The daemon records what it signs in its own ledger, whatever the environment names.
    args.signing.ledger.ledger = Some(config.ledger_path());
    let endpoint = args.signing.spiffe_endpoint_socket.clone().ok_or_else(|| {
        tcdist_core::Error::usage(
            "the daemon serves with an SVID from the Workload API: set SPIFFE_ENDPOINT_SOCKET",
        )
    })?;
    let judging = config.judge.as_ref().is_some_and(|judge| !judge.dry_run);
    let brake = match (judging, args.judge_id) {
        (true, Some(id)) => Some(
            SigningArgs {
                signer_id: Some(id),
                ..args.signing.clone()
            }
            .into_signing()?,
        ),
        (true, None) => {
            return Err(tcdist_core::Error::usage(
                "the config's [judge] signs halts and advances: set TCDIST_JUDGE_ID (--judge-id) \
                 to its brake identity, or set dry_run = true",
            )
            .into());
        }
        (false, _) => None,
    };
    let promoter = SigningArgs {
        signer_id: Some(args.promoter_id),
        ..args.signing
    }
    .into_signing()?;
    let signers = serve::Signers { promoter, brake };
    serve::serve(config, signers, args.registry, &endpoint).await
}

fn build_command(args: BuildArgs) -> anyhow::Result<()> {
    let out = std::path::absolute(&args.out).context("resolving a path")?;
    let started = std::time::Instant::now();
    let mut request = args.inputs.request(out.clone())?;
    if let Some(host_out) = &args.host_out {
        if request.target.is_none() {
            anyhow::bail!("--host-out is for a cross build: --platform names this host's platform");
        }
        request.host_out = Some(std::path::absolute(host_out).context("resolving a path")?);
    }
    let outcome = build::build(&request)?;
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
    let repository = repository_reference(&args.repository)?;
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

async fn rollout_command(command: RolloutCommand) -> anyhow::Result<()> {
    let sequence = match command {
        RolloutCommand::Start(args) => {
            let reference = pinned_reference(&args.reference)?;
            let request = rollout::StartRequest {
                channel: &args.channel,
                stages: args.stages()?,
                expires_in: args.expires,
            };
            let (signing, registry) = args.promoter.into_signing()?;
            rollout::start(&reference, &request, &signing, &registry).await?
        }
        RolloutCommand::Advance(args) => {
            let change = rollout::Move::Advance { share: args.share };
            let expires = Some(args.expires);
            rollout_change(&args.channel, change, expires, args.promoter).await?
        }
        RolloutCommand::Halt(args) => {
            let change = rollout::Move::Halt {
                reason: stated_reason(args.reason)?,
            };
            rollout_change(&args.channel, change, None, args.promoter).await?
        }
        RolloutCommand::Abort(args) => {
            let change = rollout::Move::Abort {
                reason: stated_reason(args.reason)?,
            };
            rollout_change(&args.channel, change, None, args.promoter).await?
        }
        RolloutCommand::Finish(args) => {
            let repository = args.channel.repository()?;
            let (signing, registry) = args.promoter.into_signing()?;
            rollout::finish(
                &repository,
                &args.channel.channel,
                args.expires,
                &signing,
                &registry,
            )
            .await?
        }
        RolloutCommand::Status(args) => {
            let repository = args.channel.repository()?;
            let (signing, registry) = args.promoter.into_signing()?;
            let status =
                rollout::status(&repository, &args.channel.channel, &signing, &registry).await?;
            if args.json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                print!("{status}");
            }
            return Ok(());
        }
        RolloutCommand::Verdict(args) => return verdict_command(&args),
    };
    println!("{sequence}");
    Ok(())
}

/// `distd rollout verdict`: judges counts or reports, checks a record, or plans a stage's
/// minimum.
fn verdict_command(args: &RolloutVerdictArgs) -> anyhow::Result<()> {
    let usage = tcdist_core::Error::usage;
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    if let Some((from, to)) = args.plan {
        let config = args.config();
        config.check().map_err(usage)?;
        if !(args.power > 0.0 && args.power < 1.0) {
            return Err(usage(format!("--power {} is not between 0 and 1", args.power)).into());
        }
        let halt = sample_size::jobs_to_halt(from, to, &config, args.power);
        let pass = sample_size::jobs_to_pass(from, &config, args.power);
        if args.json {
            let plan = serde_json::json!({
                "from": from,
                "to": to,
                "power": args.power,
                "jobs_to_halt": halt,
                "jobs_to_pass": pass,
                "config": config,
            });
            println!("{plan}");
        } else {
            let jobs = |n: Option<u64>| n.map_or("more than 10^8".into(), |n| n.to_string());
            println!(
                "jobs per arm to halt {:.2}% -> {:.2}% with probability {}: {}",
                from * 100.0,
                to * 100.0,
                args.power,
                jobs(halt)
            );
            println!(
                "jobs per arm to pass an equal candidate ({:.2}%, allowed increase {:.2} points) \
                 with probability {}: {}",
                from * 100.0,
                config.allowed_increase * 100.0,
                args.power,
                jobs(pass)
            );
        }
        return Ok(());
    }
    if let Some(path) = &args.record {
        let record: verdict::VerdictRecord = serde_json::from_str(&read(path)?)
            .map_err(|e| usage(format!("{}: not a verdict record: {e}", path.display())))?;
        let (again, differences) = record
            .recompute()
            .map_err(|e| usage(format!("{}: {e}", path.display())))?;
        if args.json {
            let check = serde_json::json!({
                "agrees": differences.is_empty(),
                "differences": differences,
                "recomputed": again,
            });
            println!("{check}");
        } else {
            print!("{again}");
            if differences.is_empty() {
                println!("record: agrees");
            } else {
                println!("record: disagrees");
                for difference in &differences {
                    println!("  - {difference}");
                }
            }
        }
        if !differences.is_empty() {
            anyhow::bail!(
                "{} does not agree with its recomputation: {}",
                path.display(),
                differences.join("; ")
            );
        }
        return Ok(());
    }
    let (inputs, tallied) = match &args.reports {
        Some(path) => {
            let text = read(path)?;
            let reports = tally::parse_records(&text)
                .map_err(|e| usage(format!("{}: {e}", path.display())))?;
            let tallied = tally::tally(&reports, args.min_hosts);
            (
                args.inputs(tallied.candidate, tallied.control),
                Some(tallied),
            )
        }
        None => {
            let (candidate, control) = args
                .counts()
                .ok_or_else(|| usage("give --candidate, --control and --hosts".into()))?;
            (args.inputs(candidate, control), None)
        }
    };
    let record = verdict::judge(inputs).map_err(usage)?;
    if args.json {
        let mut object = serde_json::to_value(&record)?;
        if let (Some(tallied), Some(map)) = (&tallied, object.as_object_mut()) {
            map.insert("tally".into(), serde_json::to_value(tallied)?);
        }
        println!("{object}");
    } else {
        if let Some(t) = &tallied {
            println!(
                "reports: {} read, {} not counted (retries, repeats); host caps: candidate {} \
                 (dropped {}), control {} (dropped {})",
                t.reports,
                t.repeats,
                t.candidate_host_cap,
                t.candidate.capped,
                t.control_host_cap,
                t.control.capped
            );
        }
        print!("{record}");
    }
    Ok(())
}

async fn rollout_change(
    channel: &ChannelArgs,
    change: rollout::Move,
    expires: Option<jiff::SignedDuration>,
    promoter: PromoterArgs,
) -> anyhow::Result<u64> {
    let repository = channel.repository()?;
    let (signing, registry) = promoter.into_signing()?;
    rollout::change(
        &repository,
        &channel.channel,
        change,
        expires,
        &signing,
        &registry,
    )
    .await
}

fn stated_reason(reason: String) -> anyhow::Result<String> {
    tcdist_oci::attachments::rollout::check_reason(&reason)
        .map_err(|e| tcdist_core::Error::usage(format!("--reason: {e}")))?;
    Ok(reason)
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
