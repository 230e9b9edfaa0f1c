//! A channel's rollout: a plan, signed by promoters, to bring a candidate release to a growing
//! share of the channel's hosts in stages, and the statements that move it along (advance,
//! halt, abort, finish). Each is an in-toto statement in a Sigstore bundle, attached as a
//! referrer of the release the channel's tag serves (the current release, which every host
//! outside the candidate's arm keeps), with a sequence shared with the channel's heads, so a
//! verifier orders a rollout against promotions and refuses a replayed older statement.

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Predicate, Statement};
use tcdist_core::digest::Digest;

pub const ROLLOUT_PREDICATE_TYPE: &str = "https://tcdist.dev/attestation/rollout/v1";

/// Shares are counted in basis points (hundredths of a percent) of a channel's hosts.
pub const WHOLE_CHANNEL: u32 = 10_000;
/// A plan has at most this many stages: a verifier follows a brake's statements back through
/// at most this many earlier ones.
pub const MAX_STAGES: usize = 10;
/// The salt is 32 random bytes, hex-encoded.
const SALT_HEX_LEN: usize = 64;

/// Annotations of a running statement's referrer manifest that repeat, unsigned, what a host
/// needs to guess its arm before it has fetched and verified the statement: the candidate, the
/// salt and the stage's share in basis points. A verifier may start fetching the candidate on
/// them; only the verified statement decides what it is served.
pub const HINT_CANDIDATE: &str = "dev.tcdist.rollout.candidate";
pub const HINT_SALT: &str = "dev.tcdist.rollout.salt";
pub const HINT_SHARE: &str = "dev.tcdist.rollout.share";

/// A share of a channel's hosts, in basis points: `5%` is 500, `2.5%` is 250.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Share(u32);

impl Share {
    pub fn basis_points(self) -> u32 {
        self.0
    }

    pub fn is_whole_channel(self) -> bool {
        self.0 == WHOLE_CHANNEL
    }

    pub fn from_basis_points(points: u32) -> Result<Self, String> {
        if (1..=WHOLE_CHANNEL).contains(&points) {
            Ok(Share(points))
        } else {
            Err(format!(
                "a share is from 0.01% to 100% ({points} basis points is not)"
            ))
        }
    }
}

impl FromStr for Share {
    type Err = String;

    /// `5%`, `2.5%`, `0.01%`, `100%`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a share of hosts (5%, 2.5%, 100%)");
        let number = text.strip_suffix('%').ok_or_else(bad)?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty()
            || fraction.len() > 2
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: u32 = whole.parse().map_err(|_| bad())?;
        let hundredths: u32 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
        let points = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(hundredths))
            .ok_or_else(bad)?;
        Share::from_basis_points(points)
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, hundredths) = (self.0 / 100, self.0 % 100);
        match hundredths {
            0 => write!(f, "{whole}%"),
            h if h % 10 == 0 => write!(f, "{whole}.{}%", h / 10),
            h => write!(f, "{whole}.{h:02}%"),
        }
    }
}

/// One stage of a plan: the share of hosts in the candidate's arm, and what must be seen
/// before it may be left for the next: time, jobs per arm, distinct hosts per arm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub share: Share,
    pub soak_seconds: u64,
    pub min_jobs: u64,
    pub min_hosts: u64,
}

/// What a stage needs when `--stages` does not say.
pub const DEFAULT_SOAK: SignedDuration = SignedDuration::from_hours(1);
/// Jobs per arm: the judge halts a 5% → 10% failure regression with power 0.8 before a pass is
/// possible (docs/rollout.md, "How many jobs a stage needs").
pub const DEFAULT_MIN_JOBS: u64 = 1000;
pub const DEFAULT_MIN_HOSTS: u64 = 20;

impl Stage {
    /// A stage with the default soak and minimums.
    pub fn with_defaults(share: Share) -> Self {
        let judged = !share.is_whole_channel();
        Stage {
            share,
            soak_seconds: if judged {
                DEFAULT_SOAK.as_secs().unsigned_abs()
            } else {
                0
            },
            min_jobs: if judged { DEFAULT_MIN_JOBS } else { 0 },
            min_hosts: if judged { DEFAULT_MIN_HOSTS } else { 0 },
        }
    }

    pub fn soak(&self) -> SignedDuration {
        SignedDuration::from_secs(i64::try_from(self.soak_seconds).unwrap_or(i64::MAX))
    }
}

impl FromStr for Stage {
    type Err = String;

    /// `SHARE[:SOAK[:MIN_JOBS[:MIN_HOSTS]]]`, e.g. `5%:1h:400:20`; what is left out takes the
    /// default. `100%` alone is the end of a plan: finishing, which only promoters sign.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.split(':');
        let share: Share = parts.next().unwrap_or_default().parse()?;
        let mut stage = Stage::with_defaults(share);
        if let Some(soak) = parts.next() {
            let span: jiff::Span = soak.parse().map_err(|e| {
                format!("stage {text:?}: {soak:?} is not a duration (1h, 30m): {e}")
            })?;
            let soak = span
                .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                .map_err(|e| format!("stage {text:?}: {e}"))?;
            if soak.is_negative() {
                return Err(format!("stage {text:?}: the soak time is negative"));
            }
            stage.soak_seconds = soak.as_secs().unsigned_abs();
        }
        let count = |what: &str, value: Option<&str>, default: u64| match value {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| format!("stage {text:?}: {what} {v:?} is not a whole number")),
        };
        stage.min_jobs = count("the minimum of jobs", parts.next(), stage.min_jobs)?;
        stage.min_hosts = count("the minimum of hosts", parts.next(), stage.min_hosts)?;
        if parts.next().is_some() {
            return Err(format!(
                "stage {text:?} has more than SHARE:SOAK:MIN_JOBS:MIN_HOSTS"
            ));
        }
        Ok(stage)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.share.is_whole_channel() && self.soak_seconds == 0 {
            return write!(f, "{}", self.share);
        }
        write!(
            f,
            "{}:{:#}:{}:{}",
            self.share,
            self.soak(),
            self.min_jobs,
            self.min_hosts
        )
    }
}

/// Parses a comma-separated list of stages (`5%:1h:400:20,25%:2h:400:40,100%`).
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, String> {
    text.split(',').map(|stage| stage.trim().parse()).collect()
}

/// A new plan's stages as a promoter gives them: `stages`, or `first` (with the default soak
/// and minimums) then the whole channel. A `first` given with `stages` must be their first
/// share. The stages meet a plan's rules ([`RolloutPlan::check`]).
pub fn plan_stages(first: Option<Share>, stages: Option<Vec<Stage>>) -> Result<Vec<Stage>, String> {
    let stages = match (stages, first) {
        (None, None) => return Err("give a first share (e.g. 5%) or the stages".to_owned()),
        (None, Some(share)) => vec![
            Stage::with_defaults(share),
            Stage::with_defaults(Share(WHOLE_CHANNEL)),
        ],
        (Some(stages), Some(share)) if stages.first().is_some_and(|s| s.share != share) => {
            return Err(format!(
                "the share {share} is not the first of the stages ({})",
                stages[0].share
            ));
        }
        (Some(stages), _) => stages,
    };
    check_stages(&stages)?;
    Ok(stages)
}

/// 1 to [`MAX_STAGES`] stages with strictly growing shares.
fn check_stages(stages: &[Stage]) -> Result<(), String> {
    if stages.is_empty() || stages.len() > MAX_STAGES {
        return Err(format!(
            "a plan has 1 to {MAX_STAGES} stages, this one {}",
            stages.len()
        ));
    }
    for pair in stages.windows(2) {
        if pair[0].share >= pair[1].share {
            return Err(format!(
                "stage shares must grow: {} then {}",
                pair[0].share, pair[1].share
            ));
        }
    }
    Ok(())
}

/// Why a rollout is halted or aborted, as given: not blank, since the status and every host's
/// pull report it.
pub fn check_reason(reason: &str) -> Result<(), String> {
    if reason.trim().is_empty() {
        return Err(
            "a halt or abort needs a reason: the status and every host's pull report it".to_owned(),
        );
    }
    Ok(())
}

/// What promoters sign when they start a rollout: which release to bring to which hosts, in
/// which stages. Its digest is what a brake's statements name, so a brake can only follow it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    /// The release the channel's head serves: every host outside the candidate's arm keeps it.
    pub current: Digest,
    pub candidate: Digest,
    /// Decides each host's arm with its host ID; a new rollout gets a new salt, so the hosts
    /// that try one candidate first are not always the same.
    pub salt: String,
    pub stages: Vec<Stage>,
}

impl RolloutPlan {
    /// The digest brakes name the plan by: SHA-256 of its JSON (fields in declaration order,
    /// as this type writes them).
    pub fn digest(&self) -> Digest {
        Digest::of(&serde_json::to_vec(self).expect("a plan always serializes"))
    }

    /// The rules every plan meets: 1 to [`MAX_STAGES`] stages with strictly growing shares,
    /// only the last of which may be the whole channel; a 32-byte hex salt; a candidate that
    /// is not the current release.
    pub fn check(&self) -> Result<(), String> {
        check_stages(&self.stages)?;
        if self.salt.len() != SALT_HEX_LEN
            || !self
                .salt
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "the salt must be {SALT_HEX_LEN} lowercase hex digits (32 bytes)"
            ));
        }
        if self.candidate == self.current {
            return Err(format!(
                "the candidate {} is the current release",
                self.candidate
            ));
        }
        Ok(())
    }

    /// The stages a judge decides on: every stage below the whole channel.
    pub fn judged_stages(&self) -> usize {
        self.stages
            .iter()
            .take_while(|stage| !stage.share.is_whole_channel())
            .count()
    }
}

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutState {
    /// Hosts in the candidate's arm get the candidate until the statement expires.
    Running,
    /// Stopped (by a brake or a promoter): every host gets the current release.
    Halted,
    /// Given up: every host gets the current release, and the plan is over.
    Aborted,
    /// Done: the candidate is the channel's next head.
    Finished,
}

impl fmt::Display for RolloutState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RolloutState::Running => "running",
            RolloutState::Halted => "halted",
            RolloutState::Aborted => "aborted",
            RolloutState::Finished => "finished",
        })
    }
}

/// The statements a brake's statement rests on, by the digests of their referrer manifests:
/// the promoter-signed statement whose plan it follows, and the statement that entered the
/// stage it continues (or, when it advances, the stage before).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    pub plan_statement: Digest,
    pub stage_statement: Digest,
}

/// "Channel `channel` of `repository` is rolling `plan.candidate` out to `plan.stages[stage]`'s
/// share of its hosts (or has halted, aborted, finished), from `issued` until `expires`; this is
/// the channel's `sequence`th statement, counted with its heads."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPredicate {
    pub repository: String,
    pub channel: String,
    pub sequence: u64,
    pub plan: RolloutPlan,
    /// The index of the current stage in `plan.stages`.
    pub stage: usize,
    pub state: RolloutState,
    /// Why it was halted or aborted, for the people who read the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub issued: Timestamp,
    pub expires: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

impl RolloutPredicate {
    /// The plan's rules, and a stage the plan has.
    pub fn check(&self) -> Result<(), String> {
        self.plan.check()?;
        if self.stage >= self.plan.stages.len() {
            return Err(format!(
                "it names stage {} of a plan with {}",
                self.stage + 1,
                self.plan.stages.len()
            ));
        }
        Ok(())
    }

    pub fn current_stage(&self) -> &Stage {
        &self.plan.stages[self.stage]
    }
}

impl Predicate for RolloutPredicate {
    const TYPE: &'static str = ROLLOUT_PREDICATE_TYPE;
    const NAME: &'static str = "rollout statement";
}

/// Signed about the current release: the one the channel's tag serves.
pub type RolloutStatement = Statement<RolloutPredicate>;

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn plan() -> RolloutPlan {
        RolloutPlan {
            current: Digest::of(b"current"),
            candidate: Digest::of(b"candidate"),
            salt: "ab".repeat(32),
            stages: parse_stages("5%:1h:400:20,25%:2h:400:40,100%").unwrap(),
        }
    }

    #[test]
    fn shares_parse_in_basis_points_and_print_back() {
        for (text, points) in [
            ("5%", 500),
            ("2.5%", 250),
            ("0.01%", 1),
            ("100%", 10_000),
            ("12.34%", 1234),
        ] {
            let share: Share = text.parse().unwrap();
            assert_eq!(share.basis_points(), points, "{text}");
            assert_eq!(share.to_string(), text);
        }
    }

    #[test]
    fn share_rejected_if_not_a_percentage_from_a_hundredth_to_whole() {
        for text in [
            "5",
            "0%",
            "101%",
            "1.234%",
            "-1%",
            ".5%",
            "5.%x",
            "%",
            "99999999999%",
        ] {
            assert!(text.parse::<Share>().is_err(), "{text}");
        }
    }

    #[test]
    fn stages_parse_with_defaults_for_what_is_left_out() {
        let stages = parse_stages("5%:1h:400:20, 25%:90m,100%").unwrap();
        assert_eq!(
            stages[0],
            Stage {
                share: "5%".parse().unwrap(),
                soak_seconds: 3600,
                min_jobs: 400,
                min_hosts: 20
            }
        );
        assert_eq!(stages[1].soak_seconds, 5400);
        assert_eq!(stages[1].min_jobs, DEFAULT_MIN_JOBS);
        assert_eq!(stages[2].to_string(), "100%");
        assert_eq!(stages[0].to_string(), "5%:1h:400:20");
    }

    #[test]
    fn stage_rejected_if_malformed() {
        for text in ["5%:1x", "5%:1h:many", "5%:1h:1:2:3", "five", "5%:-1h"] {
            assert!(text.parse::<Stage>().is_err(), "{text}");
        }
    }

    #[test]
    fn plan_stages_are_the_stages_given_or_the_first_share_then_the_whole_channel() {
        let five: Share = "5%".parse().unwrap();
        let stages = plan_stages(Some(five), None).unwrap();
        assert_eq!(
            stages,
            [Stage::with_defaults(five), "100%".parse().unwrap()]
        );
        let given = parse_stages("5%:1h:400:20,100%").unwrap();
        assert_eq!(plan_stages(None, Some(given.clone())).unwrap(), given);
        assert_eq!(plan_stages(Some(five), Some(given.clone())).unwrap(), given);
    }

    #[test]
    fn plan_stages_rejected_if_missing_mismatched_or_not_growing() {
        let err = plan_stages(None, None).unwrap_err();
        assert!(err.contains("give a first share"), "{err}");
        let given = parse_stages("5%,100%").unwrap();
        let err = plan_stages(Some("10%".parse().unwrap()), Some(given)).unwrap_err();
        assert!(
            err.contains("10% is not the first of the stages (5%)"),
            "{err}"
        );
        let err = plan_stages(None, Some(parse_stages("25%,5%").unwrap())).unwrap_err();
        assert!(err.contains("must grow: 25% then 5%"), "{err}");
        let err = plan_stages(Some("100%".parse().unwrap()), None).unwrap_err();
        assert!(err.contains("must grow: 100% then 100%"), "{err}");
    }

    #[test]
    fn reason_rejected_if_blank() {
        assert!(check_reason("failures 14% against 5%").is_ok());
        for blank in ["", "  ", "\n"] {
            assert!(check_reason(blank).unwrap_err().contains("needs a reason"));
        }
    }

    #[test]
    fn plan_rejected_if_shares_do_not_grow_or_salt_is_not_32_hex_bytes() {
        assert!(plan().check().is_ok());
        let mut shrinking = plan();
        shrinking.stages = parse_stages("25%,5%").unwrap();
        assert!(shrinking.check().unwrap_err().contains("must grow"));
        let mut salted = plan();
        salted.salt = "AB".repeat(32);
        assert!(salted.check().unwrap_err().contains("salt"));
        let mut same = plan();
        same.candidate = same.current.clone();
        assert!(same.check().unwrap_err().contains("is the current release"));
        let mut long = plan();
        long.stages = (1..=11)
            .map(|n| Stage::with_defaults(Share::from_basis_points(n).unwrap()))
            .collect();
        assert!(long.check().unwrap_err().contains("1 to 10 stages"));
    }

    #[test]
    fn plan_digest_changes_with_any_field() {
        let mut other = plan();
        other.stages[0].min_jobs += 1;
        assert_ne!(plan().digest(), other.digest());
        assert_eq!(plan().digest(), plan().digest());
        assert_eq!(plan().judged_stages(), 2);
    }

    #[test]
    fn rollout_statement_round_trips_and_refuses_unknown_fields() {
        let predicate = RolloutPredicate {
            repository: "toolchains/go".into(),
            channel: "stable".into(),
            sequence: 4,
            plan: plan(),
            stage: 0,
            state: RolloutState::Running,
            reason: None,
            issued: "2026-12-01T00:00:00Z".parse().unwrap(),
            expires: "2026-12-01T00:15:00Z".parse().unwrap(),
            provenance: None,
        };
        let statement =
            RolloutStatement::about("toolchains/go", &plan().current, predicate.clone());
        let (parsed, subject) = RolloutStatement::parse_statement(&statement.to_json()).unwrap();
        assert_eq!(parsed.predicate, predicate);
        assert_eq!(subject.digest, plan().current);
        let mut json = serde_json::to_value(&statement).unwrap();
        json["predicate"]["share_override"] = 1.into();
        let err = RolloutStatement::parse_statement(json.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("share_override"), "{err}");
    }

    #[test]
    fn rollout_statement_rejected_if_stage_is_not_in_its_plan() {
        let predicate = RolloutPredicate {
            repository: "r".into(),
            channel: "stable".into(),
            sequence: 1,
            plan: plan(),
            stage: 3,
            state: RolloutState::Running,
            reason: None,
            issued: "2026-12-01T00:00:00Z".parse().unwrap(),
            expires: "2026-12-01T00:15:00Z".parse().unwrap(),
            provenance: None,
        };
        assert!(
            predicate
                .check()
                .unwrap_err()
                .contains("stage 4 of a plan with 3")
        );
    }
}
