//! Rollout statements signed by the fixture's trust domain and read from an OCI layout:
//! who may move a rollout and how far, and what this host is served (arm, halt, expiry,
//! supersession, yanks, replay against the store's memory).

use std::collections::BTreeMap;

use super::*;
use crate::test_support::{OciLayout, POLICY, Pki, Svid, at, bundle_of};
use tcdist_oci::attachments::lifecycle::{ANNOTATION_CHANNEL, Yank};
use tcdist_oci::attachments::rollout::{Provenance, RolloutPlan, parse_stages};
use tcdist_oci::attachments::{ArtifactManifest, MEDIA_TYPE_BUNDLE, empty_config_descriptor};
use tcdist_oci::release::MEDIA_TYPE_MANIFEST;

const PROMOTER: &str = "spiffe://tcdist.test/distd/promoter";
const BRAKE: &str = "spiffe://tcdist.test/distd/judge";
const CHANNEL: &str = "stable";

fn policy_text() -> String {
    format!(
        "{POLICY}promoters = {{ spiffe_id = \"{PROMOTER}\" }}\nbrakes = {{ spiffe_id = \"{BRAKE}\" }}\n"
    )
}

fn plan() -> RolloutPlan {
    RolloutPlan {
        current: Digest::of(b"current"),
        candidate: Digest::of(b"candidate"),
        salt: "5a".repeat(32),
        // Soak times short enough for the fixture's 15-minute SVIDs.
        stages: parse_stages("5%:4m:10:2,25%:4m:10:2,50%:4m:10:2,100%").unwrap(),
    }
}

fn statement(sequence: u64, stage: usize, state: RolloutState) -> RolloutPredicate {
    RolloutPredicate {
        repository: crate::test_support::REPOSITORY.into(),
        channel: CHANNEL.into(),
        sequence,
        plan: plan(),
        stage,
        state,
        reason: None,
        issued: Timestamp::now(),
        expires: Timestamp::now()
            .checked_add(jiff::SignedDuration::from_mins(15))
            .unwrap(),
        provenance: None,
    }
}

struct Fixture {
    pki: Pki,
    promoter: Svid,
    brake: Svid,
    stranger: Svid,
    layout: OciLayout,
    policy: Policy,
}

impl Fixture {
    fn new() -> Self {
        let pki = Pki::new();
        let policy = pki.policy(&policy_text());
        Fixture {
            promoter: Svid::issue(PROMOTER, &pki.trust_domain),
            brake: Svid::issue(BRAKE, &pki.trust_domain),
            stranger: Svid::issue("spiffe://tcdist.test/someone", &pki.trust_domain),
            pki,
            layout: OciLayout::new(),
            policy,
        }
    }

    /// Signs `predicate` as `signer` at minute `minute` of the SVIDs' validity and stores its
    /// referrer manifest; returns the manifest's descriptor, annotated as distd annotates it.
    fn put(&self, signer: &Svid, predicate: &RolloutPredicate, minute: u32) -> Descriptor {
        let statement = RolloutStatement::about(
            &predicate.repository,
            &predicate.plan.current,
            predicate.clone(),
        );
        let time = at(&format!("2026-01-01T00:{minute:02}:00Z"));
        let candidate = self.pki.sign_as(signer, statement.to_json(), time);
        let bundle = self
            .layout
            .blob(MEDIA_TYPE_BUNDLE, &bundle_of(&candidate).to_json());
        let mut manifest = ArtifactManifest::new(empty_config_descriptor(), vec![bundle]);
        manifest.artifact_type = Some(MEDIA_TYPE_BUNDLE.to_owned());
        let mut descriptor = self
            .layout
            .blob(MEDIA_TYPE_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        descriptor.annotations = BTreeMap::from([
            (ANNOTATION_CHANNEL.to_owned(), predicate.channel.clone()),
            (
                ANNOTATION_SEQUENCE.to_owned(),
                predicate.sequence.to_string(),
            ),
        ]);
        descriptor
    }

    async fn examine(&self, newest_first: &[Descriptor]) -> Examined {
        examine(
            &self.layout.source(None),
            &plan().current,
            CHANNEL,
            &self.policy,
            newest_first,
        )
        .await
        .unwrap()
    }
}

fn provenance(plan: &Descriptor, stage: &Descriptor) -> Option<Provenance> {
    Some(Provenance {
        plan_statement: plan.digest.clone(),
        stage_statement: stage.digest.clone(),
    })
}

fn only_failure(examined: &Examined) -> Rule {
    assert!(examined.newest.is_none() || !examined.unauthorized.is_empty());
    examined
        .unauthorized
        .first()
        .map(|(_, failure)| failure.rule)
        .or_else(|| examined.ignored.first().map(|failure| failure.rule))
        .expect("a failure")
}

#[tokio::test]
async fn promoter_statement_is_accepted_as_a_promoters() {
    let f = Fixture::new();
    let start = f.put(&f.promoter, &statement(2, 0, RolloutState::Running), 1);
    let examined = f.examine(&[start]).await;
    let newest = examined.newest.expect("accepted");
    assert_eq!(newest.authority, Authority::Promoter);
    assert_eq!(newest.signed_at, at("2026-01-01T00:01:00Z"));
}

#[tokio::test]
async fn rollout_statement_rejected_if_signer_is_neither_promoter_nor_brake() {
    let f = Fixture::new();
    let start = f.put(&f.stranger, &statement(2, 0, RolloutState::Running), 1);
    let examined = f.examine(&[start]).await;
    assert_eq!(only_failure(&examined), Rule::RolloutSignerAllowed);
}

#[tokio::test]
async fn rollout_statement_rejected_if_for_another_channel_or_release() {
    let f = Fixture::new();
    let mut other_channel = statement(2, 0, RolloutState::Running);
    other_channel.channel = "beta".into();
    let examined = f.examine(&[f.put(&f.promoter, &other_channel, 1)]).await;
    assert_eq!(only_failure(&examined), Rule::RolloutBinding);
    let mut other_current = statement(2, 0, RolloutState::Running);
    other_current.plan.current = Digest::of(b"elsewhere");
    let examined = f.examine(&[f.put(&f.promoter, &other_current, 1)]).await;
    assert_eq!(only_failure(&examined), Rule::RolloutBinding);
}

#[tokio::test]
async fn brake_advances_to_the_next_stage_after_its_soak() {
    let f = Fixture::new();
    let start = f.put(&f.promoter, &statement(2, 0, RolloutState::Running), 1);
    let mut advance = statement(3, 1, RolloutState::Running);
    advance.provenance = provenance(&start, &start);
    let advanced = f.put(&f.brake, &advance, 6);
    // And re-signs the stage it entered, and advances again from it.
    let mut again = statement(4, 1, RolloutState::Running);
    again.provenance = provenance(&start, &advanced);
    let resigned = f.put(&f.brake, &again, 8);
    let mut next = statement(5, 2, RolloutState::Running);
    next.provenance = provenance(&start, &advanced);
    let third = f.put(&f.brake, &next, 11);
    for (descriptor, sequence) in [(advanced, 3), (resigned, 4), (third, 5)] {
        let examined = f.examine(&[descriptor]).await;
        assert!(
            examined.unauthorized.is_empty(),
            "{:?}",
            examined.unauthorized
        );
        let newest = examined.newest.expect("accepted");
        assert_eq!(newest.authority, Authority::Brake);
        assert_eq!(newest.predicate.sequence, sequence);
    }
}

#[tokio::test]
async fn brake_statement_rejected_if_it_advances_before_the_soak() {
    let f = Fixture::new();
    let start = f.put(&f.promoter, &statement(2, 0, RolloutState::Running), 1);
    let mut early = statement(3, 1, RolloutState::Running);
    early.provenance = provenance(&start, &start);
    let examined = f.examine(&[f.put(&f.brake, &early, 3)]).await;
    assert_eq!(only_failure(&examined), Rule::RolloutBrakeWidening);
    let reason = &examined.unauthorized[0].1.reason;
    assert!(reason.contains("before its soak time of 4m"), "{reason}");
}

#[tokio::test]
async fn brake_statement_rejected_if_it_skips_a_stage_or_takes_the_whole_channel() {
    let f = Fixture::new();
    let start = f.put(&f.promoter, &statement(2, 0, RolloutState::Running), 1);
    let mut skip = statement(3, 2, RolloutState::Running);
    skip.provenance = provenance(&start, &start);
    let examined = f.examine(&[f.put(&f.brake, &skip, 9)]).await;
    assert_eq!(only_failure(&examined), Rule::RolloutBrakeWidening);
    assert!(
        examined.unauthorized[0]
            .1
            .reason
            .contains("only to the plan's next stage")
    );
    let mut whole = statement(3, 3, RolloutState::Running);
    whole.provenance = provenance(&start, &start);
    let examined = f.examine(&[f.put(&f.brake, &whole, 9)]).await;
    assert_eq!(only_failure(&examined), Rule::RolloutBrakeWidening);
    let mut finished = statement(3, 0, RolloutState::Finished);
    finished.provenance = provenance(&start, &start);
    let examined = f.examine(&[f.put(&f.brake, &finished, 9)]).await;
    assert_eq!(only_failure(&examined), Rule::RolloutBrakeWidening);
}

#[tokio::test]
async fn brake_statement_rejected_if_it_names_no_plan_or_another_plan() {
    let f = Fixture::new();
    let start = f.put(&f.promoter, &statement(2, 0, RolloutState::Running), 1);
    let bare = statement(3, 0, RolloutState::Running);
    let examined = f.examine(&[f.put(&f.brake, &bare, 2)]).await;
    assert_eq!(only_failure(&examined), Rule::RolloutBrakePlan);
    // Another candidate under the promoter's plan statement.
    let mut other = statement(3, 0, RolloutState::Running);
    other.plan.candidate = Digest::of(b"rogue");
    other.provenance = provenance(&start, &start);
    let examined = f.examine(&[f.put(&f.brake, &other, 2)]).await;
    assert_eq!(only_failure(&examined), Rule::RolloutBrakePlan);
    // A plan the brake signed itself is no promoter's plan.
    let own = f.put(&f.brake, &statement(2, 0, RolloutState::Running), 1);
    let mut follows_own = statement(3, 0, RolloutState::Running);
    follows_own.provenance = provenance(&own, &own);
    let examined = f.examine(&[f.put(&f.brake, &follows_own, 2)]).await;
    assert_eq!(only_failure(&examined), Rule::RolloutBrakePlan);
}

#[tokio::test]
async fn brake_halts_any_stage_of_a_promoters_plan() {
    let f = Fixture::new();
    let start = f.put(&f.promoter, &statement(2, 0, RolloutState::Running), 1);
    let mut halt = statement(3, 0, RolloutState::Halted);
    halt.provenance = provenance(&start, &start);
    halt.reason = Some("failures 12% against 5%".into());
    let examined = f.examine(&[f.put(&f.brake, &halt, 2)]).await;
    let newest = examined.newest.expect("accepted");
    assert_eq!(newest.predicate.state, RolloutState::Halted);
}

#[tokio::test]
async fn unauthorized_statement_newer_than_every_valid_one_refuses_the_channel() {
    let f = Fixture::new();
    let store = tempfile::tempdir().unwrap();
    let memory = LifecycleMemory::new(store.path());
    let start = f.put(&f.promoter, &statement(2, 0, RolloutState::Running), 1);
    let mut skip = statement(3, 2, RolloutState::Running);
    skip.provenance = provenance(&start, &start);
    let rogue = f.put(&f.brake, &skip, 9);
    let examined = f.examine(&[rogue, start]).await;
    let err = judge(
        examined,
        &plan().current,
        Some(&memory),
        judged(1, Some("h")),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("[rollout-brake-widening]"),
        "{err}"
    );
}

fn judged(head_sequence: u64, host: Option<&'static str>) -> Judged<'static> {
    let head = Box::leak(Box::new(ChannelHead::for_tests(CHANNEL, head_sequence)));
    Judged {
        repository: crate::test_support::REPOSITORY,
        channel: CHANNEL,
        head: Some(head),
        yanks: None,
        host_id: host,
    }
}

fn accepted(predicate: RolloutPredicate) -> Examined {
    Examined {
        newest: Some(AcceptedRollout {
            predicate,
            signer: SpiffeId::parse(PROMOTER).unwrap(),
            authority: Authority::Promoter,
            signed_at: Timestamp::now(),
            origin: "rollout statement under test".into(),
            manifest: Digest::of(b"manifest"),
        }),
        ..Default::default()
    }
}

/// A host ID in the plan's candidate arm at 5%, and one outside it at 50%.
fn hosts() -> (String, String) {
    let salt = hex::decode(plan().salt).unwrap();
    let id = |n: u32| format!("spiffe://tcdist.test/host/{n}");
    let inside = (0..).map(id).find(|h| bucket(&salt, h) < 500).unwrap();
    let outside = (0..).map(id).find(|h| bucket(&salt, h) >= 5000).unwrap();
    (inside, outside)
}

fn decide(
    memory: &LifecycleMemory,
    predicate: RolloutPredicate,
    head_sequence: u64,
    host: &str,
) -> Result<RolloutVerdict> {
    let head = ChannelHead::for_tests(CHANNEL, head_sequence);
    let asked = Judged {
        repository: crate::test_support::REPOSITORY,
        channel: CHANNEL,
        head: Some(&head),
        yanks: None,
        host_id: Some(host),
    };
    judge(accepted(predicate), &plan().current, Some(memory), asked).map(|v| v.unwrap())
}

#[test]
fn host_in_the_cohort_gets_the_candidate_and_others_the_current_release() {
    let store = tempfile::tempdir().unwrap();
    let memory = LifecycleMemory::new(store.path());
    let (inside, outside) = hosts();
    let verdict = decide(&memory, statement(2, 0, RolloutState::Running), 1, &inside).unwrap();
    assert_eq!(verdict.arm, Arm::Candidate, "{}", verdict.reason);
    assert_eq!(verdict.release(), &plan().candidate);
    assert_eq!(
        (verdict.stage, verdict.stages, verdict.share.as_str()),
        (1, 4, "5%")
    );
    let verdict = decide(&memory, statement(2, 0, RolloutState::Running), 1, &outside).unwrap();
    assert_eq!(verdict.arm, Arm::Current);
    assert!(
        verdict.reason.contains("not below 500 (5%)"),
        "{}",
        verdict.reason
    );
    let anonymous = judge(
        accepted(statement(2, 0, RolloutState::Running)),
        &plan().current,
        Some(&memory),
        judged(1, None),
    )
    .unwrap()
    .unwrap();
    assert_eq!(anonymous.arm, Arm::Current);
    assert!(anonymous.reason.contains("no host ID"));
}

#[test]
fn halted_expired_or_superseded_rollout_serves_the_current_release() {
    let (inside, _) = hosts();
    let fresh = || tempfile::tempdir().unwrap();
    let store = fresh();
    let mut halted = statement(2, 0, RolloutState::Halted);
    halted.reason = Some("worse".into());
    let verdict = decide(&LifecycleMemory::new(store.path()), halted, 1, &inside).unwrap();
    assert_eq!(verdict.arm, Arm::Current);
    assert_eq!(verdict.reason, "the rollout is halted: worse");
    let store = fresh();
    let mut expired = statement(2, 0, RolloutState::Running);
    expired.expires = Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(1))
        .unwrap();
    let verdict = decide(&LifecycleMemory::new(store.path()), expired, 1, &inside).unwrap();
    assert_eq!(verdict.arm, Arm::Current);
    assert!(verdict.reason.contains("expired"), "{}", verdict.reason);
    let store = fresh();
    let superseded = statement(2, 0, RolloutState::Running);
    let verdict = decide(&LifecycleMemory::new(store.path()), superseded, 3, &inside).unwrap();
    assert_eq!(verdict.arm, Arm::Current);
    assert!(
        verdict.reason.contains("older than channel head 3"),
        "{}",
        verdict.reason
    );
}

#[test]
fn yanked_candidate_is_never_served() {
    let store = tempfile::tempdir().unwrap();
    let memory = LifecycleMemory::new(store.path());
    let (inside, _) = hosts();
    let yanks = YankListPredicate {
        repository: crate::test_support::REPOSITORY.into(),
        sequence: 1,
        issued: Timestamp::now(),
        yanked: vec![Yank {
            release: plan().candidate,
            reason: "miscompiles".into(),
            yanked_at: Timestamp::now(),
        }],
    };
    let head = ChannelHead::for_tests(CHANNEL, 1);
    let asked = Judged {
        repository: crate::test_support::REPOSITORY,
        channel: CHANNEL,
        head: Some(&head),
        yanks: Some(&yanks),
        host_id: Some(&inside),
    };
    let verdict = judge(
        accepted(statement(2, 0, RolloutState::Running)),
        &plan().current,
        Some(&memory),
        asked,
    )
    .unwrap()
    .unwrap();
    assert_eq!(verdict.arm, Arm::Current);
    assert!(
        verdict.reason.contains("yanked: miscompiles"),
        "{}",
        verdict.reason
    );
}

#[test]
fn rollout_statement_rejected_if_older_than_one_this_store_saw() {
    let store = tempfile::tempdir().unwrap();
    let memory = LifecycleMemory::new(store.path());
    let (inside, _) = hosts();
    decide(&memory, statement(3, 0, RolloutState::Halted), 1, &inside).unwrap();
    // The registry puts back the running statement from before the halt.
    let err = decide(&memory, statement(2, 0, RolloutState::Running), 1, &inside).unwrap_err();
    assert!(err.to_string().contains("[rollout-rollback]"), "{err}");
    // Another statement under the sequence seen is refused too.
    let err = decide(&memory, statement(3, 0, RolloutState::Running), 1, &inside).unwrap_err();
    assert!(err.to_string().contains("[rollout-rollback]"), "{err}");
    // A head newer than both ends the rollout: the old statement no longer matters.
    let verdict = decide(&memory, statement(2, 0, RolloutState::Running), 4, &inside).unwrap();
    assert_eq!(verdict.arm, Arm::Current);
}

#[test]
fn replayed_running_statement_serves_a_fresh_host_only_until_it_expires() {
    let (inside, _) = hosts();
    let store = tempfile::tempdir().unwrap();
    let memory = LifecycleMemory::new(store.path());
    let mut replayed = statement(2, 0, RolloutState::Running);
    replayed.expires = Timestamp::now()
        .checked_add(jiff::SignedDuration::from_mins(10))
        .unwrap();
    let verdict = decide(&memory, replayed.clone(), 1, &inside).unwrap();
    assert_eq!(verdict.arm, Arm::Candidate);
    let store = tempfile::tempdir().unwrap();
    replayed.expires = Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(1))
        .unwrap();
    let verdict = decide(&LifecycleMemory::new(store.path()), replayed, 1, &inside).unwrap();
    assert_eq!(verdict.arm, Arm::Current);
}

#[test]
fn hints_name_the_candidate_only_for_a_host_they_put_in_its_arm() {
    let (inside, outside) = hosts();
    let hinted = |annotations: &[(&str, &str)], host: Option<&str>| {
        let mut listed = Descriptor::new(MEDIA_TYPE_MANIFEST, Digest::of(b"statement"), 1);
        listed.annotations = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        hinted_candidate(&[listed], host)
    };
    let candidate = plan().candidate.to_string();
    let salt = plan().salt;
    let hints = [
        (HINT_CANDIDATE, candidate.as_str()),
        (HINT_SALT, salt.as_str()),
        (HINT_SHARE, "500"),
    ];
    assert_eq!(hinted(&hints, Some(&inside)), Some(plan().candidate));
    assert_eq!(hinted(&hints, Some(&outside)), None);
    assert_eq!(hinted(&hints, None), None);
    // Missing or malformed hints guess nothing.
    assert_eq!(hinted(&hints[..2], Some(&inside)), None);
    let bad_share = [hints[0], hints[1], (HINT_SHARE, "20000")];
    assert_eq!(hinted(&bad_share, Some(&inside)), None);
    let bad_salt = [hints[0], (HINT_SALT, "not hex"), hints[2]];
    assert_eq!(hinted(&bad_salt, Some(&inside)), None);
}
