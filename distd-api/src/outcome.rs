//! How a job on a build host ended, as the agent records it and the daemon's rollout judge
//! counts it: the names a CI system gives a job ([`JobId`], [`PipelineName`]), the [`Arm`]
//! the agent served it from, how it ended ([`JobResult`]), and [`OutcomeRecord`], the one type
//! for a recorded outcome: a line of the agent's spool, an item of a batch the agent sends
//! (`POST /v1/outcomes`), and a line of the daemon's outcome files.
//!
//! A job names only itself (its ID, which attempt, its pipeline) and how it ended. What it was
//! served (the release, the arm, the rollout) is the agent's own record of the pull, and the
//! daemon checks the arm against the host's SPIFFE ID: a job cannot claim another arm or
//! release.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use tcdist_core::digest::Digest;

/// The longest job ID and pipeline name accepted, in bytes.
pub const MAX_NAME: usize = 255;

/// A CI system's ID for one run of a job (Buildkite: `BUILDKITE_JOB_ID`, a UUID; a retry is a
/// new job with a new ID). Not empty, at most [`MAX_NAME`] bytes of printable ASCII without
/// spaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

/// The pipeline a job belongs to (Buildkite: `BUILDKITE_PIPELINE_SLUG`). Not empty, at most
/// [`MAX_NAME`] bytes of printable ASCII; spaces inside, never at either end.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PipelineName(String);

/// Checks a name a job gives: what it is (for the message), the text, and whether inner spaces
/// are allowed. Control characters, non-ASCII and overlong names are refused, so a name is
/// safe in a log line, a metric-free JSON record and a terminal.
fn check_name(what: &str, value: &str, spaces: bool) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("a {what} must not be empty"));
    }
    if value.len() > MAX_NAME {
        return Err(format!(
            "a {what} is at most {MAX_NAME} bytes; this one has {}",
            value.len()
        ));
    }
    if let Some((at, c)) = value
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_graphic() || (spaces && *c == ' ')))
    {
        let allowed = if spaces {
            "printable ASCII"
        } else {
            "printable ASCII without spaces"
        };
        return Err(format!("a {what} is {allowed}; {c:?} at byte {at} is not"));
    }
    if value.starts_with(' ') || value.ends_with(' ') {
        return Err(format!(
            "a {what} must not begin or end with a space: {value:?}"
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($type:ident, $what:literal, $spaces:literal) => {
        impl $type {
            pub fn parse(value: &str) -> Result<Self, String> {
                check_name($what, value, $spaces)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $type {
            type Error = String;

            fn try_from(value: String) -> Result<Self, String> {
                check_name($what, &value, $spaces)?;
                Ok(Self(value))
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> String {
                value.0
            }
        }

        impl FromStr for $type {
            type Err = String;

            fn from_str(value: &str) -> Result<Self, String> {
                Self::parse(value)
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(JobId, "job ID", false);
name_type!(PipelineName, "pipeline name", true);

/// The arm of a rollout stage a job was served from: the candidate release, or the channel's
/// current release (the judge's control arm).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    Candidate,
    Control,
}

impl From<tcdist_verify::rollout::Arm> for Arm {
    fn from(arm: tcdist_verify::rollout::Arm) -> Self {
        match arm {
            tcdist_verify::rollout::Arm::Candidate => Arm::Candidate,
            tcdist_verify::rollout::Arm::Current => Arm::Control,
        }
    }
}

impl fmt::Display for Arm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arm::Candidate => "candidate",
            Arm::Control => "control",
        })
    }
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobResult {
    Passed,
    Failed,
    /// Cancelled by a person, the CI system or its time limit: judged as a rate of its own.
    Cancelled,
    /// Served a toolchain and never reported within the agent's window (a hang, an OOM kill,
    /// a lost host): counted as a failure.
    Lost,
}

impl JobResult {
    /// What a report says: cancelled when the job was, else passed for exit status 0 and
    /// failed for any other (a negative status is a command killed by a signal).
    pub fn reported(exit_status: i32, cancelled: bool) -> Self {
        match (cancelled, exit_status) {
            (true, _) => JobResult::Cancelled,
            (false, 0) => JobResult::Passed,
            (false, _) => JobResult::Failed,
        }
    }
}

impl fmt::Display for JobResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobResult::Passed => "passed",
            JobResult::Failed => "failed",
            JobResult::Cancelled => "cancelled",
            JobResult::Lost => "lost",
        })
    }
}

/// One recorded outcome: a job's attempt on this host, what the agent served it, and how it
/// ended. One JSON line in the agent's spool, e.g.
/// `{"host_id":"build-017","job_id":"0190…","pipeline":"app","arm":"candidate","release":"sha256:…","channel":"stable","sequence":7,"stage":1,"result":"failed","retry":0,"exit_status":2,"served_at":"…","time":"…"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRecord {
    /// The agent's host ID (its config's `host_id` or its SVID's SPIFFE ID); `null` without one
    /// (such a host is never in a candidate arm).
    pub host_id: Option<String>,
    pub job_id: JobId,
    /// From the job's report; `null` for a `lost` job.
    pub pipeline: Option<PipelineName>,
    pub arm: Arm,
    /// The index digest of the release the agent served the job.
    pub release: Digest,
    pub channel: String,
    /// The rollout statement's sequence when the job was served.
    pub sequence: u64,
    /// The rollout's stage (1-based) when the job was served.
    pub stage: u32,
    pub result: JobResult,
    /// 0 for the first attempt of the job, `n` for the `n`-th retry.
    pub retry: u32,
    /// The exit status the job reported; `null` for a `lost` job.
    pub exit_status: Option<i32>,
    /// When the agent served the pull (RFC 3339, UTC).
    pub served_at: Timestamp,
    /// When the outcome was recorded: the report, or the end of the window for `lost`.
    pub time: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_accepts_ci_ids_and_refuses_hostile_text() {
        for good in [
            "0190b3a4-7c1e-4b3a-9f0e-2d5a1c9e8f77",
            "12345",
            "run-99/attempt-2",
            &"j".repeat(MAX_NAME),
        ] {
            assert_eq!(JobId::parse(good).unwrap().as_str(), good);
        }
        for (bad, want) in [
            ("", "must not be empty"),
            (&*"j".repeat(MAX_NAME + 1), "at most 255 bytes"),
            ("job\n2", "printable ASCII"),
            ("job\u{1b}[2J", "printable ASCII"),
            ("job\0", "printable ASCII"),
            ("job 2", "without spaces"),
            ("jöb", "printable ASCII"),
            ("job\u{202e}", "printable ASCII"),
        ] {
            let err = JobId::parse(bad).unwrap_err();
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }

    #[test]
    fn pipeline_name_allows_inner_spaces_only() {
        assert_eq!(
            PipelineName::parse("group/my app").unwrap().as_str(),
            "group/my app"
        );
        for bad in [" app", "app ", "", "app\t2", "app\r\n"] {
            assert!(PipelineName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_checked_when_deserialised_too() {
        assert!(serde_json::from_str::<JobId>(r#""a\u0007b""#).is_err());
        assert!(serde_json::from_str::<PipelineName>(r#""""#).is_err());
    }

    #[test]
    fn reported_result_follows_cancellation_then_exit_status() {
        assert_eq!(JobResult::reported(0, false), JobResult::Passed);
        assert_eq!(JobResult::reported(1, false), JobResult::Failed);
        assert_eq!(JobResult::reported(-1, false), JobResult::Failed);
        assert_eq!(JobResult::reported(0, true), JobResult::Cancelled);
        assert_eq!(JobResult::reported(-1, true), JobResult::Cancelled);
    }

    #[test]
    fn record_round_trips_as_one_json_line_with_the_named_fields() {
        let record = OutcomeRecord {
            host_id: Some("build-017".into()),
            job_id: JobId::parse("j-1").unwrap(),
            pipeline: Some(PipelineName::parse("app").unwrap()),
            arm: Arm::Candidate,
            release: Digest::of(b"candidate"),
            channel: "stable".into(),
            sequence: 7,
            stage: 1,
            result: JobResult::Failed,
            retry: 0,
            exit_status: Some(2),
            served_at: "2030-01-01T00:00:00Z".parse().unwrap(),
            time: "2030-01-01T00:10:00Z".parse().unwrap(),
        };
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(
            line,
            format!(
                "{{\"host_id\":\"build-017\",\"job_id\":\"j-1\",\"pipeline\":\"app\",\
                 \"arm\":\"candidate\",\"release\":\"{}\",\"channel\":\"stable\",\
                 \"sequence\":7,\"stage\":1,\"result\":\"failed\",\"retry\":0,\
                 \"exit_status\":2,\"served_at\":\"2030-01-01T00:00:00Z\",\
                 \"time\":\"2030-01-01T00:10:00Z\"}}",
                Digest::of(b"candidate")
            )
        );
        assert_eq!(
            serde_json::from_str::<OutcomeRecord>(&line).unwrap(),
            record
        );
    }
}
