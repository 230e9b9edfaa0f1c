//! The rollouts the daemon takes outcomes for: each line's channels with a running rollout, as
//! the judge last read them from the registry, and the checks a host's outcome record must pass
//! to count for a stage (docs/rollout.md, "Outcomes"). The checks use only what the daemon
//! knows itself: the caller's SPIFFE ID from its client certificate, and the signed plan.

use jiff::{SignedDuration, Timestamp};
use tcdist_core::Digest;
use tcdist_oci::attachments::rollout::Stage;
use tcdist_verify::rollout::in_candidate_arm;

use crate::rollout::RunningStage;
use distd_api::outcome::{Arm, OutcomeRecord};

/// One channel's running rollout stage.
#[derive(Clone, Debug)]
pub struct LiveStage {
    pub line: String,
    pub channel: String,
    pub current: Digest,
    pub candidate: Digest,
    /// The plan's digest: a new plan (a new salt, or a promoter's new stage) is a new stage.
    pub plan: Digest,
    salt: Vec<u8>,
    /// 0-based.
    pub stage: usize,
    pub spec: Stage,
    pub judged_stages: u32,
    /// The statement that entered the stage: its sequence (hosts served from it on were served
    /// this stage) and its proven signing time (the soak's start).
    pub entry_sequence: u64,
    pub entered_at: Timestamp,
    /// The newest statement.
    pub sequence: u64,
    pub issued: Timestamp,
    pub expires: Timestamp,
}

impl LiveStage {
    pub fn of(line: &str, running: &RunningStage) -> Self {
        let predicate = running.predicate();
        let plan = &predicate.plan;
        LiveStage {
            line: line.to_owned(),
            channel: predicate.channel.clone(),
            current: plan.current.clone(),
            candidate: plan.candidate.clone(),
            plan: plan.digest(),
            // A verified plan's salt is 64 hex digits (RolloutPlan::check).
            salt: hex::decode(&plan.salt).unwrap_or_default(),
            stage: predicate.stage,
            spec: running.stage().clone(),
            judged_stages: u32::try_from(plan.judged_stages()).unwrap_or(u32::MAX),
            entry_sequence: running.entry.predicate.sequence,
            entered_at: running.entry.signed_at,
            sequence: predicate.sequence,
            issued: predicate.issued,
            expires: predicate.expires,
        }
    }

    /// The arm `host`'s agent serves from, by the plan's salt and the stage's share.
    pub fn arm_of(&self, host: &str) -> Arm {
        if in_candidate_arm(&self.salt, host, self.spec.share) {
            Arm::Candidate
        } else {
            Arm::Control
        }
    }

    pub fn release_of(&self, arm: Arm) -> &Digest {
        match arm {
            Arm::Candidate => &self.candidate,
            Arm::Control => &self.current,
        }
    }

    /// Where the stage's outcomes are kept and its looks counted.
    pub fn key(&self) -> StageKey {
        StageKey {
            line: self.line.clone(),
            channel: self.channel.clone(),
            plan: self.plan.clone(),
            stage: self.stage + 1,
        }
    }

    /// How long the stage has soaked at `now`.
    pub fn soaked(&self, now: Timestamp) -> SignedDuration {
        now.duration_since(self.entered_at)
    }
}

/// A stage of a plan of a line's channel; `stage` is 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StageKey {
    pub line: String,
    pub channel: String,
    pub plan: Digest,
    pub stage: usize,
}

/// Why an outcome record does not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dropped {
    /// Its release is neither arm of a running rollout of its channel.
    NotInRollout,
    /// It was served in another stage, or by an earlier rollout.
    StaleStage,
    /// It names another host than the SVID it came with.
    HostMismatch,
    /// Its arm or release is not the one the plan gives its host.
    ArmMismatch,
    /// Its host may not report on the rollout's line.
    NotGranted,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::NotInRollout => "not-in-rollout",
            Dropped::StaleStage => "stale-stage",
            Dropped::HostMismatch => "host-mismatch",
            Dropped::ArmMismatch => "arm-mismatch",
            Dropped::NotGranted => "not-granted",
        }
    }
}

/// What a read found of one line's channel.
#[derive(Clone, Debug)]
pub struct ChannelView {
    pub line: String,
    pub channel: String,
    /// The newest sequence of its head and rollout.
    pub newest_sequence: u64,
    pub running: Option<LiveStage>,
}

/// Every line's channels, as last read.
#[derive(Default)]
pub struct LiveRollouts {
    channels: Vec<ChannelView>,
    /// When the read that found them began: it saw every statement published before then.
    read_at: Option<Timestamp>,
}

impl LiveRollouts {
    /// Sets what a read that began at `read_at` found. A channel it could not read (in
    /// `unread`, as line and channel) keeps what was read of it before.
    pub fn replace(
        &mut self,
        mut read: Vec<ChannelView>,
        unread: &[(String, String)],
        read_at: Timestamp,
    ) {
        for (line, channel) in unread {
            read.extend(
                self.channels
                    .iter()
                    .filter(|c| &c.line == line && &c.channel == channel)
                    .cloned(),
            );
        }
        self.channels = read;
        self.read_at = Some(read_at);
    }

    /// The running stages.
    pub fn stages(&self) -> Vec<LiveStage> {
        self.channels
            .iter()
            .filter_map(|c| c.running.clone())
            .collect()
    }

    /// Whether a pull served at `served_at` may have met a statement this read did not see:
    /// then the daemon reads the registry again before it judges the record.
    pub fn older_than(&self, served_at: Timestamp) -> bool {
        self.read_at.is_none_or(|read_at| read_at <= served_at)
    }

    /// Whether `record` was served from a statement of its channel newer than any this read
    /// saw. Its host's clock may run behind the daemon's, so that `older_than` its serving
    /// time misses the statement: the sequence does not.
    pub fn unseen(&self, record: &OutcomeRecord) -> bool {
        self.channels
            .iter()
            .filter(|c| c.channel == record.channel)
            .map(|c| c.newest_sequence)
            .max()
            .is_some_and(|newest| record.sequence > newest)
    }

    pub fn is_read(&self) -> bool {
        self.read_at.is_some()
    }

    /// The stage `record`, sent by the host `caller`, counts for, or why it does not.
    pub fn classify(&self, caller: &str, record: &OutcomeRecord) -> Result<&LiveStage, Dropped> {
        if record.host_id.as_deref() != Some(caller) {
            return Err(Dropped::HostMismatch);
        }
        let stage = self
            .channels
            .iter()
            .filter_map(|c| c.running.as_ref())
            .find(|stage| {
                stage.channel == record.channel
                    && (record.release == stage.current || record.release == stage.candidate)
            })
            .ok_or(Dropped::NotInRollout)?;
        let this_stage = usize::try_from(record.stage).is_ok_and(|s| s == stage.stage + 1)
            && record.sequence >= stage.entry_sequence;
        if !this_stage {
            return Err(Dropped::StaleStage);
        }
        let arm = stage.arm_of(caller);
        if record.arm != arm || &record.release != stage.release_of(arm) {
            return Err(Dropped::ArmMismatch);
        }
        Ok(stage)
    }
}

#[cfg(test)]
impl LiveStage {
    /// Stage `stage` (0-based) at `share` of a plan with `judged_stages` stages below the whole
    /// channel, entered and issued at 2030-01-01T00:00:00Z, expiring 15 minutes later.
    pub fn example(stage: usize, share: &str, judged_stages: u32) -> Self {
        let at: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        LiveStage {
            line: "go1.26".into(),
            channel: "stable".into(),
            current: Digest::of(b"current"),
            candidate: Digest::of(b"candidate"),
            plan: Digest::of(b"plan"),
            salt: [9; 32].to_vec(),
            stage,
            spec: Stage::with_defaults(share.parse().unwrap()),
            judged_stages,
            entry_sequence: 10,
            entered_at: at,
            sequence: 12,
            issued: at,
            expires: at + SignedDuration::from_mins(15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distd_api::outcome::{JobId, JobResult};

    fn stage() -> LiveStage {
        LiveStage::example(1, "50%", 2)
    }

    /// A host of each arm at 50% with this salt.
    fn host_in(arm: Arm) -> String {
        (0..)
            .map(|i| format!("spiffe://tcdist.test/host/{i}"))
            .find(|host| stage().arm_of(host) == arm)
            .unwrap()
    }

    fn record(host: &str, arm: Arm) -> OutcomeRecord {
        let stage = stage();
        let at: Timestamp = "2030-01-01T00:05:00Z".parse().unwrap();
        OutcomeRecord {
            host_id: Some(host.into()),
            job_id: JobId::parse("j-1").unwrap(),
            pipeline: None,
            arm,
            release: stage.release_of(arm).clone(),
            channel: "stable".into(),
            sequence: 11,
            stage: 2,
            result: JobResult::Passed,
            retry: 0,
            exit_status: Some(0),
            served_at: at,
            time: at,
        }
    }

    /// The example's channel, its rollout at its newest statement.
    fn view(running: Option<LiveStage>) -> ChannelView {
        ChannelView {
            line: "go1.26".into(),
            channel: "stable".into(),
            newest_sequence: 12,
            running,
        }
    }

    fn live() -> LiveRollouts {
        let mut live = LiveRollouts::default();
        live.replace(vec![view(Some(stage()))], &[], Timestamp::now());
        live
    }

    #[test]
    fn a_record_of_the_hosts_own_arm_counts_for_the_stage() {
        for arm in [Arm::Candidate, Arm::Control] {
            let host = host_in(arm);
            let counted = live().classify(&host, &record(&host, arm)).map(|s| s.key());
            assert_eq!(counted, Ok(stage().key()), "{arm}");
        }
    }

    #[test]
    fn a_host_cannot_report_for_another_host_or_claim_another_arm_or_release() {
        let (candidate, control) = (host_in(Arm::Candidate), host_in(Arm::Control));
        let live = live();
        let other = record(&candidate, Arm::Candidate);
        assert_eq!(
            live.classify(&control, &other).unwrap_err(),
            Dropped::HostMismatch
        );
        // A control host claiming the candidate's arm, with its release or with its own.
        let claimed = record(&control, Arm::Candidate);
        assert_eq!(
            live.classify(&control, &claimed).unwrap_err(),
            Dropped::ArmMismatch
        );
        let mut forged = record(&control, Arm::Control);
        forged.release = stage().candidate;
        assert_eq!(
            live.classify(&control, &forged).unwrap_err(),
            Dropped::ArmMismatch
        );
    }

    #[test]
    fn records_of_other_releases_and_other_stages_are_dropped() {
        let host = host_in(Arm::Control);
        let live = live();
        let mut other_release = record(&host, Arm::Control);
        other_release.release = Digest::of(b"another");
        assert_eq!(
            live.classify(&host, &other_release).unwrap_err(),
            Dropped::NotInRollout
        );
        let mut other_channel = record(&host, Arm::Control);
        other_channel.channel = "beta".into();
        assert_eq!(
            live.classify(&host, &other_channel).unwrap_err(),
            Dropped::NotInRollout
        );
        let mut earlier_stage = record(&host, Arm::Control);
        earlier_stage.stage = 1;
        assert_eq!(
            live.classify(&host, &earlier_stage).unwrap_err(),
            Dropped::StaleStage
        );
        // Stage 2 of an earlier rollout: served before this stage's first statement.
        let mut earlier_rollout = record(&host, Arm::Control);
        earlier_rollout.sequence = 9;
        assert_eq!(
            live.classify(&host, &earlier_rollout).unwrap_err(),
            Dropped::StaleStage
        );
    }

    #[test]
    fn a_read_is_older_than_a_pull_served_after_it_began() {
        let mut live = LiveRollouts::default();
        let at: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        assert!(!live.is_read() && live.older_than(at));
        live.replace(vec![view(Some(stage()))], &[], at);
        assert!(live.is_read());
        assert!(live.older_than(at));
        assert!(!live.older_than(at - SignedDuration::from_secs(1)));
    }

    #[test]
    fn a_record_from_a_statement_newer_than_the_read_is_unseen_whatever_its_time() {
        let host = host_in(Arm::Control);
        let mut live = LiveRollouts::default();
        live.replace(vec![view(None)], &[], Timestamp::now());
        // Its host's clock behind the daemon's: served "before" the read, of a later statement.
        let mut later = record(&host, Arm::Control);
        later.sequence = 13;
        assert!(live.unseen(&later));
        later.sequence = 12;
        assert!(!live.unseen(&later));
        // A channel none of the daemon's lines serves: no read would tell more.
        later.sequence = 13;
        later.channel = "beta".into();
        assert!(!live.unseen(&later));
    }

    #[test]
    fn a_channel_a_read_could_not_read_keeps_what_was_read_of_it_before() {
        let mut live = live();
        let unread = [("go1.26".to_owned(), "stable".to_owned())];
        live.replace(Vec::new(), &unread, Timestamp::now());
        assert_eq!(live.stages().len(), 1);
        live.replace(Vec::new(), &[], Timestamp::now());
        assert!(live.stages().is_empty());
    }
}
