//! What `pull`, `verify` and `env` print: stdout, and the warnings for stderr. Direct mode and
//! the agent's answers use the same rendering, so a client prints exactly the same either way.

use std::path::Path;

use serde::Serialize;

use crate::jobenv::JobEnvironment;
use tcdist_core::digest::Digest;
use tcdist_oci::attachments::rollout::RolloutState;
use tcdist_oci::mirrors::MirrorSkip;
use tcdist_oci::reference::ReleaseRef;
use tcdist_store::pull::PullOutcome;
use tcdist_verify::VerificationReport;
use tcdist_verify::freshness::Freshness;
use tcdist_verify::lifecycle::LifecycleVerdict;
use tcdist_verify::rollout::{Arm, RolloutVerdict};
use tcdist_verify::signature::SignatureVerdict;

/// The version of [`ReleaseJson`]; raised when a field changes meaning or goes away.
pub const RELEASE_JSON_VERSION: u32 = 1;

/// `pull --json` and `verify --json`: one description of a verified release in one vocabulary
/// (docs/cli.md), `pull` adding where it is installed.
#[derive(Serialize)]
struct ReleaseJson<'a> {
    version: u32,
    reference: String,
    /// The release's index digest.
    digest: &'a Digest,
    manifest_digest: &'a Digest,
    platform: String,
    checks: &'a [&'static str],
    signature: &'a SignatureVerdict,
    cosignatures: &'a [SignatureVerdict],
    log_freshness: Option<&'a Freshness>,
    lifecycle: &'a LifecycleVerdict,
    rollout: Option<&'a RolloutVerdict>,
    #[serde(flatten)]
    installed: Option<Installed<'a>>,
}

/// Where `pull` installed the release.
#[derive(Serialize)]
struct Installed<'a> {
    root: &'a Path,
    downloaded: bool,
}

impl<'a> ReleaseJson<'a> {
    fn new(report: &'a VerificationReport, reference: &ReleaseRef) -> Self {
        Self {
            version: RELEASE_JSON_VERSION,
            reference: reference.to_string(),
            digest: &report.index_digest,
            manifest_digest: &report.manifest_digest,
            platform: report.platform.to_string(),
            checks: &report.checks,
            signature: &report.signature,
            cosignatures: &report.cosignatures,
            log_freshness: report.log_freshness.as_ref(),
            lifecycle: &report.lifecycle,
            rollout: report.rollout.as_ref(),
            installed: None,
        }
    }

    fn line(&self) -> String {
        format!(
            "{}\n",
            serde_json::to_string(self).expect("release descriptions serialise")
        )
    }
}

/// The toolchain root, or with `json` the release's description and where it is installed.
pub fn pull_stdout(outcome: &PullOutcome, reference: &ReleaseRef, json: bool) -> String {
    if !json {
        return format!("{}\n", outcome.entry.root.display());
    }
    ReleaseJson {
        installed: Some(Installed {
            root: &outcome.entry.root,
            downloaded: outcome.downloaded,
        }),
        ..ReleaseJson::new(&outcome.report, reference)
    }
    .line()
}

/// What a channel's rollout decided for this host, in brief: the audit record's `rollout`.
/// `--json` output carries the whole verdict.
#[derive(Debug, Serialize)]
pub struct RolloutSummary<'a> {
    pub channel: &'a str,
    pub sequence: u64,
    pub state: RolloutState,
    /// 1-based, of `stages`.
    pub stage: usize,
    pub stages: usize,
    /// The stage's share of hosts in the candidate arm, e.g. `5%`.
    pub share: &'a str,
    pub arm: Arm,
    /// Why this host is in its arm.
    pub reason: &'a str,
    pub host_id: Option<&'a str>,
}

impl<'a> RolloutSummary<'a> {
    pub fn of(verdict: &'a RolloutVerdict) -> Self {
        Self {
            channel: &verdict.channel,
            sequence: verdict.sequence,
            state: verdict.state,
            stage: verdict.stage,
            stages: verdict.stages,
            share: &verdict.share,
            arm: verdict.arm,
            reason: &verdict.reason,
            host_id: verdict.host_id.as_deref(),
        }
    }
}

/// One line for stderr about the rollout a channel pull met, e.g. `tcverify: channel "stable"
/// rollout 7 (running, stage 1 of 3, 5%): candidate arm — host h is in bucket 123, below 500 (5%)`.
pub fn rollout_line(verdict: &RolloutVerdict) -> String {
    format!(
        "tcverify: channel {:?} rollout {} ({}, stage {} of {}, {}): {} arm — {}",
        verdict.channel,
        verdict.sequence,
        verdict.state,
        verdict.stage,
        verdict.stages,
        verdict.share,
        verdict.arm,
        one_line(&verdict.reason)
    )
}

/// Control characters (a signed statement's reason may hold any) shown escaped, on one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One line naming what passed and who signed when, or with `json` the release's description.
pub fn verify_stdout(report: &VerificationReport, reference: &ReleaseRef, json: bool) -> String {
    if json {
        return ReleaseJson::new(report, reference).line();
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

/// What `pull` and `verify` print on stderr after a verification, with `--json` too: the
/// rollout line when a channel's rollout decided this host's arm, then the warnings, then one
/// line per object a mirror did not serve.
pub fn stderr_lines(report: &VerificationReport, mirror_skips: &[MirrorSkip]) -> Vec<String> {
    let mut lines: Vec<String> = report.rollout.iter().map(rollout_line).collect();
    lines.extend(warnings(report));
    lines.extend(mirror_skips.iter().map(|skip| {
        format!(
            "tcverify: warning: mirror {} skipped for {}: {}",
            skip.mirror,
            skip.object,
            one_line(&skip.reason)
        )
    }));
    lines
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
    for ignored in report.rollout.iter().flat_map(|r| &r.ignored) {
        warnings.push(format!(
            "tcverify: warning: ignored a rollout statement that does not verify: {ignored}"
        ));
    }
    warnings
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use tcdist_verify::discover::Encoding;
    use tcdist_verify::rollout::Authority;

    /// A rollout verdict as the verifier makes one for a host in the candidate arm.
    pub(crate) fn candidate_verdict() -> RolloutVerdict {
        RolloutVerdict {
            channel: "stable".into(),
            sequence: 7,
            state: RolloutState::Running,
            stage: 1,
            stages: 3,
            share: "5%".into(),
            arm: Arm::Candidate,
            reason: "host build-017 is in bucket 123, below 500 (5%)".into(),
            current: Digest::of(b"current"),
            candidate: Digest::of(b"candidate"),
            signer: "spiffe://tcdist.test/distd/promoter".parse().unwrap(),
            authority: Authority::Promoter,
            expires: "2030-01-01T00:00:00Z".parse().unwrap(),
            host_id: Some("build-017".into()),
            ignored: Vec::new(),
        }
    }

    pub(crate) fn report(rollout: Option<RolloutVerdict>) -> VerificationReport {
        VerificationReport {
            index_digest: Digest::of(b"candidate"),
            manifest_digest: Digest::of(b"manifest"),
            platform: "linux/amd64".parse().unwrap(),
            checks: vec!["digest-binding", "structure", "signature", "lifecycle"],
            signature: SignatureVerdict {
                signer: "spiffe://tcdist.test/distd/signer".parse().unwrap(),
                signed_at: "2029-12-01T00:00:00Z".parse().unwrap(),
                timestamp_authority: "stack".into(),
                encoding: Encoding::Bundle,
                origin: "bundle referrer sha256:…".into(),
                repository: "toolchains/go".into(),
                tag: None,
                certificate_serial: "01".into(),
                log: None,
            },
            cosignatures: Vec::new(),
            log_freshness: None,
            lifecycle: LifecycleVerdict::default(),
            rollout,
        }
    }

    #[test]
    fn rollout_line_names_channel_sequence_stage_share_arm_and_reason() {
        assert_eq!(
            rollout_line(&candidate_verdict()),
            "tcverify: channel \"stable\" rollout 7 (running, stage 1 of 3, 5%): candidate arm \
             — host build-017 is in bucket 123, below 500 (5%)"
        );
    }

    #[test]
    fn rollout_line_escapes_control_characters_of_a_signed_reason() {
        let mut verdict = candidate_verdict();
        verdict.arm = Arm::Current;
        verdict.state = RolloutState::Halted;
        verdict.reason = "the rollout is halted: \u{1b}[2Jerror rate\nup".into();
        let line = rollout_line(&verdict);
        assert!(
            line.ends_with("current arm — the rollout is halted: \\u{1b}[2Jerror rate\\nup"),
            "{line}"
        );
    }

    #[test]
    fn stderr_lines_carry_the_rollout_line_first_and_only_with_a_rollout() {
        assert!(stderr_lines(&report(None), &[]).is_empty());
        let mut verdict = candidate_verdict();
        verdict.ignored = vec!["rollout statement sha256:…: [rollout-binding] …".into()];
        let lines = stderr_lines(&report(Some(verdict)), &[]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("tcverify: channel \"stable\" rollout 7 "));
        assert!(
            lines[1].starts_with(
                "tcverify: warning: ignored a rollout statement that does not verify: "
            )
        );
    }

    #[test]
    fn rollout_summary_serialises_the_fields_scripts_read() {
        let verdict = candidate_verdict();
        let summary = serde_json::to_value(RolloutSummary::of(&verdict)).unwrap();
        assert_eq!(
            summary,
            json!({
                "channel": "stable",
                "sequence": 7,
                "state": "running",
                "stage": 1,
                "stages": 3,
                "share": "5%",
                "arm": "candidate",
                "reason": "host build-017 is in bucket 123, below 500 (5%)",
                "host_id": "build-017",
            })
        );
    }

    fn outcome(rollout: Option<RolloutVerdict>) -> PullOutcome {
        let report = report(rollout);
        PullOutcome {
            entry: tcdist_store::Entry {
                path: "/store/sha256-x/linux-amd64".into(),
                root: "/store/sha256-x/linux-amd64/toolchain".into(),
                record: tcdist_store::EntryRecord {
                    reference: "r.example/toolchains/go:stable".into(),
                    repository: Some("toolchains/go".into()),
                    index_digest: report.index_digest.clone(),
                    manifest_digest: report.manifest_digest.clone(),
                    platform: report.platform.clone(),
                    checks: Vec::new(),
                    tree_digest: None,
                    installed_at: 0,
                },
            },
            report,
            downloaded: true,
            mirror_skips: Vec::new(),
        }
    }

    #[test]
    fn pull_json_carries_the_whole_rollout_verdict() {
        let reference = ReleaseRef::parse("r.example/toolchains/go:stable").unwrap();
        let out: serde_json::Value = serde_json::from_str(&pull_stdout(
            &outcome(Some(candidate_verdict())),
            &reference,
            true,
        ))
        .unwrap();
        assert_eq!(out["version"], 1);
        assert_eq!(out["digest"], json!(Digest::of(b"candidate")));
        let verdict = &out["rollout"];
        assert_eq!(verdict["arm"], "candidate");
        assert_eq!(verdict["sequence"], 7);
        assert_eq!(verdict["stage"], 1);
        assert_eq!(verdict["share"], "5%");
        assert_eq!(verdict["current"], json!(Digest::of(b"current")));
        assert_eq!(verdict["candidate"], json!(Digest::of(b"candidate")));
        assert_eq!(verdict["authority"], "promoter");
    }

    /// The fields of schema version 1 (docs/cli.md): a field added, removed or renamed must be
    /// a decision, with the version and the docs to match.
    #[test]
    fn pull_and_verify_json_describe_a_release_in_one_schema() {
        let reference = ReleaseRef::parse("r.example/toolchains/go:stable").unwrap();
        let pulled = outcome(None);
        let pull: serde_json::Value =
            serde_json::from_str(&pull_stdout(&pulled, &reference, true)).unwrap();
        let verify: serde_json::Value =
            serde_json::from_str(&verify_stdout(&pulled.report, &reference, true)).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let common = [
            "version",
            "reference",
            "digest",
            "manifest_digest",
            "platform",
            "checks",
            "signature",
            "cosignatures",
            "log_freshness",
            "lifecycle",
            "rollout",
        ];
        let mut expected: Vec<String> = common.iter().map(|k| k.to_string()).collect();
        expected.sort();
        assert_eq!(keys(&verify), expected);
        expected.extend(["downloaded".to_owned(), "root".to_owned()]);
        expected.sort();
        assert_eq!(keys(&pull), expected);
        for key in common {
            assert_eq!(pull[key], verify[key], "{key}");
        }
        assert_eq!(pull["reference"], "r.example/toolchains/go:stable");
        assert_eq!(pull["platform"], "linux/amd64");
        assert_eq!(
            pull["signature"]["signer"],
            "spiffe://tcdist.test/distd/signer"
        );
        assert_eq!(pull["root"], "/store/sha256-x/linux-amd64/toolchain");
        assert_eq!(pull["downloaded"], true);
        assert!(pull["rollout"].is_null() && pull["log_freshness"].is_null());
    }

    #[test]
    fn text_output_is_the_root_and_one_line() {
        let reference = ReleaseRef::parse("r.example/toolchains/go:a").unwrap();
        assert_eq!(
            pull_stdout(&outcome(None), &reference, false),
            "/store/sha256-x/linux-amd64/toolchain\n"
        );
        // Text mode prints only the root, also during a rollout.
        assert_eq!(
            pull_stdout(&outcome(Some(candidate_verdict())), &reference, false),
            "/store/sha256-x/linux-amd64/toolchain\n"
        );
        let line = verify_stdout(&outcome(None).report, &reference, false);
        assert!(
            line.contains(" linux/amd64 verified: digest-binding, "),
            "{line}"
        );
    }
}
