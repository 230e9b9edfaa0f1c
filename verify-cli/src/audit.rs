//! The audit log: one JSON line per verification decision (accept, reject, or error), so an
//! operator can answer "which release did this agent accept, signed by whom, and why was that
//! one refused". Records in a file are hash-chained: each carries its sequence number and the
//! digest of the line before it, so an edited, inserted or removed record breaks the chain
//! (`chain.rs`). Appended under an exclusive lock with one write per record, so concurrent
//! pulls never interleave or fork the chain.

pub mod chain;

use std::io::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::output::RolloutSummary;
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Result};
use tcdist_oci::mirrors::MirrorSkip;
use tcdist_verify::VerificationReport;

/// Where records go: nowhere, stderr (`-`), or appended to a file.
#[derive(Clone, Debug, Default)]
pub enum AuditLog {
    #[default]
    Off,
    Stderr,
    File(PathBuf),
}

impl AuditLog {
    pub fn from_setting(setting: Option<&std::path::Path>) -> Self {
        match setting {
            None => AuditLog::Off,
            Some(path) if path.as_os_str() == "-" => AuditLog::Stderr,
            Some(path) => AuditLog::File(path.to_path_buf()),
        }
    }

    /// Records the outcome of verifying (and installing) `reference`, with the objects
    /// mirrors did not serve on the way.
    pub fn record(
        &self,
        reference: &str,
        outcome: std::result::Result<&VerificationReport, &Error>,
        mirror_skips: &[MirrorSkip],
    ) -> Result<()> {
        if matches!(self, AuditLog::Off) {
            return Ok(());
        }
        let record = match outcome {
            Ok(report) => AuditRecord {
                time: jiff::Timestamp::now().to_string(),
                reference,
                digest: Some(&report.index_digest),
                signer: Some(report.signature.signer.as_str()),
                signed_at: Some(report.signature.signed_at.to_string()),
                rule: None,
                decision: "accept",
                reason: format!("passed: {}", report.checks.join(", ")),
                waived: &report.lifecycle.waived,
                rollout: report.rollout.as_ref().map(RolloutSummary::of),
                mirrors_skipped: mirror_skips,
            },
            Err(Error::Rejected(rejection)) => AuditRecord {
                time: jiff::Timestamp::now().to_string(),
                reference,
                digest: match rejection {
                    tcdist_core::Rejection::Signature { index, .. } => Some(index),
                    _ => None,
                },
                signer: None,
                signed_at: None,
                rule: Some(rejection.rule()),
                decision: "reject",
                reason: rejection.to_string(),
                waived: &[],
                rollout: None,
                mirrors_skipped: mirror_skips,
            },
            Err(error) => AuditRecord {
                time: jiff::Timestamp::now().to_string(),
                reference,
                digest: None,
                signer: None,
                signed_at: None,
                rule: None,
                decision: "error",
                reason: error.to_string(),
                waived: &[],
                rollout: None,
                mirrors_skipped: mirror_skips,
            },
        };
        match self {
            AuditLog::Off => Ok(()),
            AuditLog::Stderr => {
                let mut line = serde_json::to_vec(&record).expect("audit records serialise");
                line.push(b'\n');
                let _ = std::io::stderr().write_all(&line);
                Ok(())
            }
            AuditLog::File(path) => chain::append(path, &record)
                .map_err(|e| Error::store("appending the audit record to", path, e)),
        }
    }
}

#[derive(Serialize)]
struct AuditRecord<'a> {
    time: String,
    reference: &'a str,
    digest: Option<&'a Digest>,
    signer: Option<&'a str>,
    signed_at: Option<String>,
    rule: Option<&'static str>,
    decision: &'static str,
    reason: String,
    /// Checks the caller waived (`--allow-expired`, `--allow-yanked`), with what they would
    /// have refused.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    waived: &'a [String],
    /// For a pull by channel during a rollout: which arm this host is in (`digest` is that
    /// arm's release), the statement's sequence and stage, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<RolloutSummary<'a>>,
    /// Objects a mirror failed to serve (an error, nothing, or other bytes), each then read
    /// from the next mirror or the registry.
    #[serde(skip_serializing_if = "<[MirrorSkip]>::is_empty")]
    mirrors_skipped: &'a [MirrorSkip],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{candidate_verdict, report};

    fn recorded(report: &VerificationReport) -> serde_json::Value {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        AuditLog::File(path.clone())
            .record("r.example/toolchains/go:stable", Ok(report), &[])
            .unwrap();
        serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim_end()).unwrap()
    }

    #[test]
    fn audit_record_carries_the_arm_sequence_and_stage_of_a_rollout() {
        let record = recorded(&report(Some(candidate_verdict())));
        assert_eq!(record["decision"], "accept");
        assert_eq!(
            record["digest"],
            serde_json::json!(Digest::of(b"candidate"))
        );
        let rollout = &record["rollout"];
        assert_eq!(rollout["arm"], "candidate");
        assert_eq!(rollout["sequence"], 7);
        assert_eq!(rollout["stage"], 1);
        assert_eq!(rollout["stages"], 3);
        assert_eq!(rollout["channel"], "stable");
        assert_eq!(rollout["host_id"], "build-017");
        assert!(rollout["reason"].as_str().unwrap().contains("bucket 123"));
    }

    #[test]
    fn audit_record_has_no_rollout_without_one() {
        let record = recorded(&report(None));
        assert!(record.get("rollout").is_none(), "{record}");
        assert_eq!(record["seq"], 1);
    }
}
