//! The API's JSON documents. Paths:
//!
//! | method and path | action | body / answer |
//! | --- | --- | --- |
//! | `GET /v1/catalog` | read | [`Catalog`] |
//! | `POST /v1/lines/{line}/builds` | build | [`Job`] (202) |
//! | `GET /v1/jobs` | read | `[Job]` |
//! | `GET /v1/jobs/{id}` | read | [`Job`] |
//! | `GET /v1/jobs/{id}/log?offset=N&follow=true` | read | the job's log from byte N, streamed until the job ends |
//! | `POST /v1/jobs/{id}/cancel` | build | [`Job`] |
//! | `POST /v1/lines/{line}/promote` | promote | [`PromoteRequest`] → [`LifecycleAnswer`] |
//! | `POST /v1/lines/{line}/yank` | yank | [`YankRequest`] → [`LifecycleAnswer`] |
//! | `POST /v1/lines/{line}/rollouts` | promote | [`RolloutStartRequest`] → [`RolloutAnswer`] |
//! | `POST /v1/lines/{line}/rollouts/{channel}/advance` | promote | [`RolloutMoveRequest`] (`share`) → [`RolloutAnswer`] |
//! | `POST /v1/lines/{line}/rollouts/{channel}/halt` | promote | [`RolloutMoveRequest`] (`reason`) → [`RolloutAnswer`] |
//! | `POST /v1/lines/{line}/rollouts/{channel}/abort` | promote | [`RolloutMoveRequest`] (`reason`) → [`RolloutAnswer`] |
//! | `POST /v1/lines/{line}/rollouts/{channel}/finish` | promote | no body → [`RolloutAnswer`] (the new head's sequence) |
//! | `POST /v1/outcomes` | report | [`OutcomeBatch`] → [`OutcomeAnswer`] |
//!
//! Every error is an [`ApiError`] with the HTTP status that fits it (403 for a caller the
//! config does not allow).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::outcome::OutcomeRecord;

/// What a caller may do, granted per line in the daemon's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// List the catalog, read jobs and their logs.
    Read,
    /// Request a build of a line; cancel its jobs.
    Build,
    /// Promote a release of a line to one of its channels.
    Promote,
    /// Yank a release of a line.
    Yank,
    /// Send the outcomes of jobs a build host served during a rollout of a line.
    Report,
    /// Append to the daemon's ledger what the caller itself signed (the daemon as a whole:
    /// a grant of it names `lines = ["*"]`).
    Ledger,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Read,
        Action::Build,
        Action::Promote,
        Action::Yank,
        Action::Report,
        Action::Ledger,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Build => "build",
            Action::Promote => "promote",
            Action::Yank => "yank",
            Action::Report => "report",
            Action::Ledger => "ledger",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// The daemon stopped or died while it ran; it is queued again when the daemon starts.
    Interrupted,
}

impl JobState {
    /// Whether the job will not change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// One change of a job's state, kept in its history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    pub at: Timestamp,
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A build of a line: its state and what it produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub line: String,
    /// The SPIFFE ID of the caller who asked for it.
    pub requested_by: String,
    pub state: JobState,
    /// How many times it started (more than one after an interruption).
    pub attempts: u32,
    /// The release's index digest, once published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub history: Vec<JobEvent>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromoteRequest {
    /// The release's index digest (`sha256:…`).
    pub release: String,
    pub channel: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct YankRequest {
    pub release: String,
    pub reason: String,
}

/// The signed statement a promote or yank produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LifecycleAnswer {
    pub release: String,
    /// The channel head's or the yank list's new sequence.
    pub sequence: u64,
}

/// Starts a rollout of `release` on `channel`: the plan is `stages`, or `share` then `100%`
/// (docs/rollout.md).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutStartRequest {
    /// The candidate's index digest (`sha256:…`).
    pub release: String,
    pub channel: String,
    /// The first stage's share of hosts (`5%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    /// The plan's stages, each `SHARE[:SOAK[:MIN_JOBS[:MIN_HOSTS]]]`, the last `100%`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
    /// How long the running statement is valid (`15m` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// Moves a channel's rollout: an advance takes an optional `share` (a later stage, or a new
/// one), a halt or an abort a `reason`; finish takes no body.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutMoveRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a channel's rollout stands after a start or a move, as read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutAnswer {
    pub channel: String,
    /// The new rollout statement's sequence; after a finish, the new head's.
    pub sequence: u64,
    /// running, halted, aborted or finished.
    pub state: String,
    /// 1-based, of the plan's stages.
    pub stage: usize,
    pub share: String,
}

/// What the registry and the signed statements say about every line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub lines: Vec<LineCatalog>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LineCatalog {
    pub name: String,
    /// `REGISTRY/REPOSITORY`.
    pub repository: String,
    pub platforms: Vec<String>,
    /// Tags naming releases (channels and tcdist's own tags left out), by tag.
    pub releases: Vec<TaggedRelease>,
    pub channels: Vec<ChannelHead>,
    pub yanks: Vec<YankedRelease>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaggedRelease {
    pub tag: String,
    pub release: String,
}

/// A channel's current head, verified; `release` is absent for a channel never promoted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChannelHead {
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// The newest rollout statement attached to the head's release, verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<ChannelRollout>,
}

/// Where a channel's rollout stands (docs/rollout.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChannelRollout {
    pub sequence: u64,
    /// running, halted, aborted or finished.
    pub state: String,
    /// Whether it still counts: newer than the head and, when running, not expired.
    pub live: bool,
    pub candidate: String,
    /// 1-based, of `stages`.
    pub stage: usize,
    pub stages: Vec<String>,
    pub share: String,
    pub expires: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct YankedRelease {
    pub release: String,
    pub reason: String,
    pub yanked_at: Timestamp,
}

/// The most records one [`OutcomeBatch`] may carry.
pub const MAX_OUTCOME_BATCH: usize = 1000;

/// Outcomes of jobs a build host served during rollouts, sent by its agent with the host's
/// SVID. Each record's `host_id` must be the sender's SPIFFE ID; the daemon recomputes the
/// arm from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeBatch {
    pub records: Vec<OutcomeRecord>,
}

/// What the daemon did with a batch: records it keeps for a stage's verdict, and records it
/// dropped by reason (`not-in-rollout`, `stale-stage`, `host-mismatch`, `arm-mismatch`,
/// `not-granted`). A dropped record is not an error: the agent sends it once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeAnswer {
    pub accepted: u64,
    #[serde(default)]
    pub dropped: BTreeMap<String, u64>,
}

/// Every error answer's body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_states_are_lowercase_words_on_the_wire() {
        for action in Action::ALL {
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
            assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), action);
        }
        assert!(serde_json::from_str::<Action>("\"delete\"").is_err());
        assert_eq!(
            serde_json::to_string(&JobState::Interrupted).unwrap(),
            "\"interrupted\""
        );
        assert!(JobState::Cancelled.is_final() && !JobState::Interrupted.is_final());
    }

    #[test]
    fn rollout_requests_leave_out_what_is_absent_and_refuse_unknown_fields() {
        let start: RolloutStartRequest =
            serde_json::from_str(r#"{"release":"sha256:ab","channel":"stable","share":"5%"}"#)
                .unwrap();
        assert!(start.stages.is_empty() && start.expires.is_none());
        let typo = r#"{"release":"sha256:ab","channel":"stable","stage":"5%"}"#;
        let err = serde_json::from_str::<RolloutStartRequest>(typo).unwrap_err();
        assert!(err.to_string().contains("unknown field `stage`"), "{err}");
        assert_eq!(
            serde_json::to_string(&RolloutMoveRequest::default()).unwrap(),
            "{}"
        );
        assert!(serde_json::from_str::<RolloutMoveRequest>(r#"{"why":"x"}"#).is_err());
    }
}
