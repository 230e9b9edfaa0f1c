//! What the agent records of a job it served: the run of a job a pull names ([`JobAttempt`])
//! and the rollout the pull met ([`ServedRollout`]). The outcome types themselves
//! ([`OutcomeRecord`](distd_api::outcome::OutcomeRecord) and its parts) are shared with the
//! daemon that counts them, in `distd_api::outcome`.

use serde::{Deserialize, Serialize};

use distd_api::outcome::{Arm, JobId};
use tcdist_verify::rollout::RolloutVerdict;

/// One run of a job: its ID and which attempt it is (0 for the first, `n` for the `n`-th
/// retry; Buildkite: `BUILDKITE_RETRY_COUNT`). A pull names it so the agent can record what it
/// served; the job's report names it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobAttempt {
    pub id: JobId,
    #[serde(default)]
    pub retry: u32,
}

/// The rollout a pull met, as a record names it: enough for the daemon to find the stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedRollout {
    pub arm: Arm,
    pub channel: String,
    /// The rollout statement's sequence.
    pub sequence: u64,
    /// 1-based.
    pub stage: u32,
}

impl ServedRollout {
    /// The rollout of a pull's verdict, when its rollout was running (a halted, aborted or
    /// finished rollout judges nothing).
    pub fn of(verdict: &RolloutVerdict) -> Option<Self> {
        (verdict.state == tcdist_oci::attachments::rollout::RolloutState::Running).then(|| Self {
            arm: verdict.arm.into(),
            channel: verdict.channel.clone(),
            sequence: verdict.sequence,
            stage: u32::try_from(verdict.stage).unwrap_or(u32::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_defaults_to_the_first_and_names_nothing_else() {
        let attempt: JobAttempt = serde_json::from_str(r#"{"id":"j-1"}"#).unwrap();
        assert_eq!(attempt.retry, 0);
        assert!(serde_json::from_str::<JobAttempt>(r#"{"id":"j-1","retry":-1}"#).is_err());
        assert!(serde_json::from_str::<JobAttempt>(r#"{"id":"j-1","arm":"candidate"}"#).is_err());
        assert!(serde_json::from_str::<JobAttempt>(r#"{"id":"a\u0007b"}"#).is_err());
    }
}
