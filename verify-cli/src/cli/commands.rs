//! One function per subcommand; stdout carries only the result (DESIGN.md output contract).

use std::time::Duration;

use tcdist_core::error::{Error, Rejection, Result};
use tcdist_oci::mirrors::MirrorSkip;
use tcdist_oci::reference::ReleaseRef;
use tcdist_store::Store;
use tcdist_store::pull::{PullOptions, pull, verify_release};
use tcdist_verify::Verifier;
use tcdist_verify::lifecycle::Waivers;
use tcdist_verify::structure::ExtractBudget;
use tcverify::agent::client::ask;
use tcverify::agent::outcome::JobAttempt;
use tcverify::agent::protocol::Request;
use tcverify::host_id::HostId;
use tcverify::jobenv::environment_for;
use tcverify::output;

use tcdist_verify::policy::{Policy, check_policy_file};
use tcverify::audit::AuditLog;

use super::args::{
    AuditVerifyArgs, EnvArgs, FsckArgs, GcArgs, PolicyCheckArgs, PullArgs, ReleaseArgs, ReportArgs,
    StoreArgs, VerifyArgs,
};
use super::printer::Progress;

pub async fn pull_command(args: PullArgs) -> Result<()> {
    let job = args.job.job_id.clone().map(|id| JobAttempt {
        id,
        retry: args.job.retry.unwrap_or(0),
    });
    if let Some(socket) = &args.release.agent.socket {
        let request = |job| Request::Pull {
            reference: args.release.reference.clone(),
            platform: args.release.platform.to_string(),
            json: args.store.json,
            job,
        };
        let has_job = job.is_some();
        return match through_agent(socket, &request(job)).await {
            // An agent older than job records refuses the field; the job is then not judged,
            // but it gets its toolchain (the hooks may be upgraded before the agent).
            Err(Error::Agent {
                exit: 2, message, ..
            }) if has_job && message.contains("unknown field `job`") => {
                eprintln!(
                    "tcverify: warning: the agent at {} records no jobs (it is older than this \
                     tcverify); pulling without --job-id: this job's outcome cannot be reported",
                    socket.display()
                );
                through_agent(socket, &request(None)).await
            }
            answer => answer,
        };
    }
    if job.is_some() {
        return Err(Error::usage_with_hint(
            "--job-id is for the build-host agent: it records what it serves a job, for the \
             job's report",
            "pull through the agent (--agent SOCKET or TCVERIFY_AGENT), or leave out --job-id \
             and --retry",
        ));
    }
    let reference = ReleaseRef::parse(&args.release.reference)?;
    // Before the store: a setting refused leaves nothing behind.
    let mirrors = args.release.mirror_config()?;
    let store = Store::open(&args.store.store)?;
    let mut budget = ExtractBudget::default();
    if let Some(max) = args.max_unpacked_bytes {
        budget.max_unpacked_bytes = max;
    }
    let options = PullOptions {
        registry: &args.release.registry,
        mirrors: mirrors.as_ref(),
        platform: args.release.platform.clone(),
        jobs: args.jobs,
    };
    let verifier = verifier(&args.release, budget, &args.store.store)?;
    let outcome = pull(
        &reference,
        &options,
        &verifier,
        &store,
        &Progress::for_stderr(),
    )
    .await;
    let skips = outcome
        .as_ref()
        .map(|o| o.mirror_skips.clone())
        .unwrap_or_default();
    audit(
        &args.release,
        &reference,
        outcome.as_ref().map(|o| &o.report),
        &skips,
    )?;
    let outcome = outcome?;
    warn(&outcome.report, &skips);
    print!(
        "{}",
        output::pull_stdout(&outcome, &reference, args.store.json)
    );
    Ok(())
}

pub async fn verify_command(args: VerifyArgs) -> Result<()> {
    if let Some(socket) = &args.release.agent.socket {
        let request = Request::Verify {
            reference: args.release.reference.clone(),
            platform: args.release.platform.to_string(),
            json: args.json,
        };
        return through_agent(socket, &request).await;
    }
    let reference = ReleaseRef::parse(&args.release.reference)?;
    let mirrors = args.release.mirror_config()?;
    let options = PullOptions {
        registry: &args.release.registry,
        mirrors: mirrors.as_ref(),
        platform: args.release.platform.clone(),
        jobs: 1,
    };
    let verifier = verifier(&args.release, ExtractBudget::default(), &args.store)?;
    let outcome = verify_release(&reference, &options, &verifier, &Progress::for_stderr()).await;
    let skips = outcome
        .as_ref()
        .map(|(source, _)| source.mirror_skips())
        .unwrap_or_default();
    audit(
        &args.release,
        &reference,
        outcome.as_ref().map(|(_, verified)| verified.report()),
        &skips,
    )?;
    let (_, verified) = outcome?;
    warn(verified.report(), &skips);
    print!(
        "{}",
        output::verify_stdout(verified.report(), &reference, args.json)
    );
    Ok(())
}

/// A job's outcome, to the agent that served its pull. There is no direct mode: only the agent
/// knows what it served the job.
pub async fn report_command(args: ReportArgs) -> Result<()> {
    let Some(socket) = &args.agent.socket else {
        return Err(Error::usage_with_hint(
            "tcverify report has no direct mode: outcomes go to the build-host agent that served \
             the job's pull, which alone knows the release and rollout arm it served",
            "give --agent SOCKET or set TCVERIFY_AGENT (the agent's socket, e.g. \
             /run/tcdist/agent.sock); see docs/agent.md",
        ));
    };
    let request = Request::Report {
        job: JobAttempt {
            id: args.job_id,
            retry: args.retry,
        },
        pipeline: args.pipeline,
        exit_status: args.exit_status,
        cancelled: args.cancelled,
        if_served: args.if_served,
        json: args.json,
    };
    match through_agent(socket, &request).await {
        Err(Error::Agent {
            exit: 2, message, ..
        }) if message.contains("unknown variant `report`") => Err(Error::usage_with_hint(
            format!(
                "the agent at {} takes no reports: it is older than this tcverify",
                socket.display()
            ),
            "upgrade the agent (tcverify on the build host) and restart it; its jobs then \
                 report from their next pull on",
        )),
        answer => answer,
    }
}

pub fn ls_command(args: StoreArgs) -> Result<()> {
    let entries = Store::open(&args.store)?.list()?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&entries).expect("entries serialise")
        );
        return Ok(());
    }
    for entry in entries {
        println!(
            "{}\t{}\t{}\t{}",
            entry.record.index_digest,
            entry.record.platform,
            entry.record.reference,
            entry.root.display()
        );
    }
    Ok(())
}

pub fn gc_command(args: GcArgs) -> Result<()> {
    let store = Store::open(&args.store.store)?;
    let unused_for = args
        .unused_for_days
        .map(|days| Duration::from_secs(days * 86_400));
    let report = store.gc(unused_for, args.dry_run)?;
    if args.store.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("reports serialise")
        );
        return Ok(());
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for path in report.removed_staging.iter().chain(&report.removed_entries) {
        println!("{verb} {}", path.display());
    }
    Ok(())
}

pub fn fsck_command(args: FsckArgs) -> Result<()> {
    let report = Store::open(&args.store.store)?.fsck(args.dry_run)?;
    if args.store.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("reports serialise")
        );
    } else {
        for path in &report.intact {
            println!("intact {}", path.display());
        }
        for path in &report.busy {
            println!("busy {} (being pulled; not checked)", path.display());
        }
        for damaged in &report.damaged {
            match &damaged.quarantined {
                Some(to) => println!(
                    "quarantined {} to {}",
                    damaged.entry.display(),
                    to.display()
                ),
                None => println!("damaged {}", damaged.entry.display()),
            }
        }
    }
    let Some(first) = report.damaged.first() else {
        return Ok(());
    };
    let others = match report.damaged.len() {
        1 => String::new(),
        n => format!(" (and {} more damaged entries)", n - 1),
    };
    Err(Rejection::EntryDamaged {
        entry: first.entry.display().to_string(),
        reason: format!("{}{others}", first.reason),
    }
    .into())
}

pub async fn env_command(args: EnvArgs) -> Result<()> {
    let goexperiment = std::env::var("GOEXPERIMENT").unwrap_or_default();
    let path = std::env::var("PATH").unwrap_or_default();
    if let Some(socket) = &args.agent.socket {
        let request = Request::Env {
            reference: args.reference.clone(),
            platform: args.platform.to_string(),
            format: args.format.clone(),
            goexperiment,
            path,
        };
        return through_agent(socket, &request).await;
    }
    let reference = ReleaseRef::parse(&args.reference)?;
    let store = Store::open(&args.store)?;
    let environment = environment_for(&store, &reference, &args.platform, &goexperiment, &path)?;
    print!("{}", output::env_stdout(&environment, &args.format));
    Ok(())
}

pub fn audit_verify_command(args: AuditVerifyArgs) -> Result<()> {
    use tcverify::audit::chain::{VerifyError, verify};
    let file = std::fs::File::open(&args.file)
        .map_err(|e| Error::store("opening the audit log", &args.file, e))?;
    let summary =
        verify(std::io::BufReader::new(file), args.head.as_deref()).map_err(|e| match e {
            VerifyError::Read(e) => Error::store("reading the audit log", &args.file, e),
            VerifyError::Broken(at) => Rejection::AuditChainBroken {
                log: args.file.display().to_string(),
                line: at.line,
                reason: at.reason,
            }
            .into(),
        })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("summaries serialise")
        );
    } else {
        println!(
            "{}: {} records, chain intact, head {}",
            args.file.display(),
            summary.records,
            summary.head
        );
    }
    Ok(())
}

pub fn policy_check_command(args: PolicyCheckArgs) -> Result<()> {
    let summary =
        check_policy_file(&args.file, args.trust.trusted_root.as_deref()).map_err(policy_error)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("summaries serialise")
        );
    } else {
        print!("{summary}");
    }
    Ok(())
}

/// The verifier for one command: the policy, the budget, the store's remembered checkpoints,
/// the host ID that decides this host's arm in rollouts, and whether logs may be contacted.
fn verifier(
    args: &ReleaseArgs,
    budget: ExtractBudget,
    store: &std::path::Path,
) -> Result<Verifier> {
    let verifier = Verifier::new(load_policy(args)?, budget)
        .remembering(store)
        .waiving(Waivers {
            expired_channel: args.allow_expired,
            yanked_by_digest: args.allow_yanked,
        })
        .for_host(args.host_id.clone().map(HostId::into_string));
    Ok(if args.offline {
        verifier.offline()
    } else {
        verifier
    })
}

/// Sends the request to the agent and prints its answer as direct mode would.
async fn through_agent(socket: &std::path::Path, request: &Request) -> Result<()> {
    let (stdout, warnings) = ask(socket, request, &Progress::for_stderr()).await?;
    for warning in warnings {
        eprintln!("{warning}");
    }
    print!("{stdout}");
    Ok(())
}

fn warn(report: &tcdist_verify::VerificationReport, mirror_skips: &[MirrorSkip]) {
    for line in output::stderr_lines(report, mirror_skips) {
        eprintln!("{line}");
    }
}

/// The policy is required: nothing unsigned is accepted, and signatures mean nothing without
/// a policy that says whose.
fn load_policy(args: &ReleaseArgs) -> Result<Policy> {
    let path = args.policy.as_ref().ok_or_else(|| {
        Error::usage_with_hint(
            "no policy is configured, so no signer can be trusted",
            "pass --policy FILE or set TCVERIFY_POLICY (see docs/policy.md; the local stack's \
             stack.env sets it)",
        )
    })?;
    Policy::load_with_trusted_root(path, args.trust.trusted_root.as_deref()).map_err(policy_error)
}

fn policy_error(error: tcdist_verify::policy::PolicyError) -> Error {
    let hint = error.hint();
    Error::usage_with_hint(error.to_string(), hint)
}

fn audit(
    args: &ReleaseArgs,
    reference: &ReleaseRef,
    outcome: std::result::Result<&tcdist_verify::VerificationReport, &Error>,
    mirror_skips: &[MirrorSkip],
) -> Result<()> {
    AuditLog::from_setting(args.audit_log.as_deref()).record(
        &reference.to_string(),
        outcome,
        mirror_skips,
    )
}
