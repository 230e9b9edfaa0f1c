//! What `pull`, `verify` and `env` print: stdout, and the warnings for stderr. Direct mode and
//! the agent's answers use the same rendering, so a client prints exactly the same either way.

use serde_json::json;

use crate::jobenv::JobEnvironment;
use tcdist_oci::reference::ReleaseRef;
use tcdist_store::pull::PullOutcome;
use tcdist_verify::VerificationReport;
use tcdist_verify::freshness::Freshness;

/// The toolchain root, or with `json` one object with what was verified.
pub fn pull_stdout(outcome: &PullOutcome, reference: &ReleaseRef, json: bool) -> String {
    if !json {
        return format!("{}\n", outcome.entry.root.display());
    }
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
            "cosignatures": outcome.report.cosignatures,
            "lifecycle": outcome.report.lifecycle,
        },
    });
    format!("{output}\n")
}

/// One line naming what passed and who signed when, or with `json` the whole report.
pub fn verify_stdout(report: &VerificationReport, json: bool) -> String {
    if json {
        return format!(
            "{}\n",
            serde_json::to_string(report).expect("reports serialise")
        );
    }
    let mut line = format!(
        "{} {} verified: {}; signed by {} at {}",
        report.index_digest,
        report.platform,
        report.checks.join(", "),
        report.signature.signer,
        report.signature.signed_at
    );
    for cosignature in &report.cosignatures {
        line += &format!(
            "; co-signed by {} at {}",
            cosignature.signer, cosignature.signed_at
        );
    }
    if let Some(head) = &report.lifecycle.channel {
        line += &format!(
            "; channel {} head {} by {}, until {}",
            head.channel, head.sequence, head.promoter, head.expires
        );
    }
    line + "\n"
}

/// `export` lines for a POSIX shell (`sh`), or one JSON object (`json`).
pub fn env_stdout(environment: &JobEnvironment, format: &str) -> String {
    if format != "json" {
        return environment.to_shell();
    }
    let vars: serde_json::Map<String, serde_json::Value> = environment
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    format!("{}\n", serde_json::Value::Object(vars))
}

/// Says so when the log's current state could not be checked: the release verified from its
/// own proof, but a log that forked since would not have been noticed.
pub fn warnings(report: &VerificationReport) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(Freshness::Unchecked { reason }) = &report.log_freshness {
        warnings.push(format!(
            "tcverify: warning: verified from the bundle's log proof; the log's freshness could \
             not be checked ({reason})"
        ));
    }
    for waived in &report.lifecycle.waived {
        warnings.push(format!("tcverify: warning: waived by the caller: {waived}"));
    }
    for ignored in &report.lifecycle.ignored {
        warnings.push(format!(
            "tcverify: warning: ignored a lifecycle statement that does not verify: {ignored}"
        ));
    }
    warnings
}
