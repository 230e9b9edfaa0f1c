//! One function per subcommand; stdout carries only the result (DESIGN.md output contract).

use std::time::Duration;

use serde_json::json;
use tcverify::error::{Error, Rejection, Result};
use tcverify::jobenv::job_environment;
use tcverify::pull::{PullOptions, pull, verify_release};
use tcverify::reference::ReleaseRef;
use tcverify::store::extract::ExtractBudget;
use tcverify::store::{Entry, Store};
use tcverify::verify::Verifier;

use tcverify::audit::AuditLog;
use tcverify::verify::policy::{Policy, check_policy_file};

use super::args::{
    AuditVerifyArgs, EnvArgs, FsckArgs, GcArgs, PolicyCheckArgs, PullArgs, ReleaseArgs, StoreArgs,
    VerifyArgs,
};
use super::printer::Progress;

pub async fn pull_command(args: PullArgs) -> Result<()> {
    let reference = ReleaseRef::parse(&args.release.reference)?;
    let store = Store::open(&args.store.store)?;
    let mut budget = ExtractBudget::default();
    if let Some(max) = args.max_unpacked_bytes {
        budget.max_unpacked_bytes = max;
    }
    let options = PullOptions {
        registry: &args.release.registry,
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
    audit(
        &args.release,
        &reference,
        outcome.as_ref().map(|o| &o.report),
    )?;
    let outcome = outcome?;
    warn_unchecked(&outcome.report);
    if args.store.json {
        let signature = &outcome.report.signature;
        let output = json!({
            "digest": outcome.report.index_digest,
            "root": outcome.entry.root,
            "reference": reference.to_string(),
            "manifest_digest": outcome.report.manifest_digest,
            "platform": outcome.report.platform.to_string(),
            "downloaded": outcome.downloaded,
            "signer": signature.signer,
            "signed_at": signature.signed_at,
            "log_index": signature.log.as_ref().map(|log| log.log_index),
            "log_freshness": outcome.report.log_freshness,
            "verified": {
                "checks": outcome.report.checks,
                "signature": signature,
            },
        });
        println!("{output}");
    } else {
        println!("{}", outcome.entry.root.display());
    }
    Ok(())
}

pub async fn verify_command(args: VerifyArgs) -> Result<()> {
    let reference = ReleaseRef::parse(&args.release.reference)?;
    let options = PullOptions {
        registry: &args.release.registry,
        platform: args.release.platform.clone(),
        jobs: 1,
    };
    let verifier = verifier(&args.release, ExtractBudget::default(), &args.store)?;
    let outcome = verify_release(&reference, &options, &verifier, &Progress::for_stderr()).await;
    audit(
        &args.release,
        &reference,
        outcome.as_ref().map(|(_, verified)| verified.report()),
    )?;
    let (_, verified) = outcome?;
    let report = verified.report();
    warn_unchecked(report);
    if args.json {
        println!(
            "{}",
            serde_json::to_string(report).expect("reports serialise")
        );
    } else {
        println!(
            "{} {} verified: {}; signed by {} at {}",
            report.index_digest,
            report.platform,
            report.checks.join(", "),
            report.signature.signer,
            report.signature.signed_at
        );
    }
    Ok(())
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

pub fn env_command(args: EnvArgs) -> Result<()> {
    let reference = ReleaseRef::parse(&args.reference)?;
    let store = Store::open(&args.store)?;
    let entry = store
        .find(&reference.to_string(), reference.digest(), &args.platform)?
        .ok_or_else(|| {
            Error::usage_with_hint(
                format!(
                    "{reference} ({}) is not in the store {}",
                    args.platform,
                    args.store.display()
                ),
                format!("run `tcverify pull {reference}` first"),
            )
        })?;
    check_entry_repository(&reference, &entry)?;
    let goexperiment = std::env::var("GOEXPERIMENT").unwrap_or_default();
    let path = std::env::var("PATH").unwrap_or_default();
    let environment = job_environment(&entry, &goexperiment, &path)?;
    if args.format == "json" {
        let vars: serde_json::Map<String, serde_json::Value> = environment
            .vars
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        println!("{}", serde_json::Value::Object(vars));
    } else {
        print!("{}", environment.to_shell());
    }
    Ok(())
}

/// An entry found by digest was verified for the repository its signature names; the same
/// bytes asked for under another repository were not (the policy's signers differ per
/// repository), so they are refused rather than handed out.
fn check_entry_repository(reference: &ReleaseRef, entry: &Entry) -> Result<()> {
    let ReleaseRef::Registry(wanted) = reference else {
        return Ok(());
    };
    if wanted.digest.is_none() || entry.record.repository.as_deref() == Some(&wanted.repository) {
        return Ok(());
    }
    Err(Rejection::malformed(
        format!("store entry {}", entry.path.display()),
        format!(
            "it was verified for repository {}, not {}; run `tcverify pull {reference}` to verify \
             it for that repository",
            entry
                .record
                .repository
                .as_deref()
                .unwrap_or("(not recorded)"),
            wanted.repository
        ),
    )
    .into())
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
/// and whether logs may be contacted.
fn verifier(
    args: &ReleaseArgs,
    budget: ExtractBudget,
    store: &std::path::Path,
) -> Result<Verifier> {
    let verifier = Verifier::new(load_policy(args)?, budget).remembering_checkpoints(store);
    Ok(if args.offline {
        verifier.offline()
    } else {
        verifier
    })
}

/// Says so when the log's current state could not be checked: the release verified from its
/// own proof, but a log that forked since would not have been noticed.
fn warn_unchecked(report: &tcverify::verify::VerificationReport) {
    if let Some(tcverify::verify::freshness::Freshness::Unchecked { reason }) =
        &report.log_freshness
    {
        eprintln!(
            "tcverify: warning: verified from the bundle's log proof; the log's freshness could \
             not be checked ({reason})"
        );
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

fn policy_error(error: tcverify::verify::policy::PolicyError) -> Error {
    let hint = error.hint();
    Error::usage_with_hint(error.to_string(), hint)
}

fn audit(
    args: &ReleaseArgs,
    reference: &ReleaseRef,
    outcome: std::result::Result<&tcverify::verify::VerificationReport, &Error>,
) -> Result<()> {
    AuditLog::from_setting(args.audit_log.as_deref()).record(&reference.to_string(), outcome)
}
