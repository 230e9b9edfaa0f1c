//! Judging what was found against what the store remembers: rollback, equivocation, expiry,
//! yanks, and the waivers. The statements' signatures are the signature stage's tests; here
//! they are taken as verified.

use std::collections::BTreeMap;

use super::*;
use crate::test_support::{OciLayout, POLICY, Pki};
use tcdist_oci::attachments::lifecycle::Yank;

const REPOSITORY: &str = "toolchains/go";

fn release(n: u8) -> Digest {
    Digest::of(&[n])
}

fn head(sequence: u64, expires_in_secs: i64) -> ChannelHead {
    ChannelHead {
        channel: "stable".into(),
        sequence,
        issued: Timestamp::now(),
        expires: Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(expires_in_secs))
            .unwrap(),
        promoter: SpiffeId::parse("spiffe://tcdist.test/distd/promoter").unwrap(),
        origin: format!("channel statement {sequence}"),
        yanks: None,
    }
}

fn yank_list(sequence: u64, yanked: &[Digest]) -> FoundYankList {
    FoundYankList {
        manifest: Digest::of(format!("yank list {sequence}").as_bytes()),
        list: YankListPredicate {
            repository: REPOSITORY.into(),
            sequence,
            issued: Timestamp::now(),
            yanked: yanked
                .iter()
                .map(|release| Yank {
                    release: release.clone(),
                    reason: "CVE-2026-0001".into(),
                    yanked_at: Timestamp::now(),
                })
                .collect(),
        },
    }
}

fn examined(channel: Option<ChannelHead>, yanks: Option<FoundYankList>) -> Examined {
    Examined {
        channel: channel.map(Ok),
        yanks,
        ignored: Vec::new(),
    }
}

struct Fixture {
    store: tempfile::TempDir,
    layout: OciLayout,
    policy: Policy,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            store: tempfile::tempdir().unwrap(),
            layout: OciLayout::new(),
            policy: Pki::new().policy(POLICY),
        }
    }

    fn memory(&self) -> LifecycleMemory {
        LifecycleMemory::new(self.store.path())
    }

    async fn judge(
        &self,
        found: Examined,
        index: &Digest,
        tag: Option<&str>,
        waivers: Waivers,
    ) -> Result<LifecycleVerdict> {
        judge(
            found,
            &self.layout.source(None),
            index,
            REPOSITORY,
            &self.policy,
            Some(&self.memory()),
            Asked { tag, waivers },
        )
        .await
    }
}

fn rule_of(result: Result<LifecycleVerdict>) -> Rule {
    match result {
        Err(Error::Rejected(Rejection::Signature { failures, .. })) => failures[0].rule,
        Err(other) => panic!("expected a lifecycle rejection, got {other}"),
        Ok(verdict) => panic!("expected a lifecycle rejection, got {verdict:?}"),
    }
}

#[tokio::test]
async fn a_newer_head_is_accepted_and_remembered_and_an_older_one_then_refused() {
    let f = Fixture::new();
    let verdict = f
        .judge(
            examined(Some(head(5, 60)), None),
            &release(2),
            Some("stable"),
            Waivers::default(),
        )
        .await
        .unwrap();
    assert_eq!(verdict.channel.unwrap().sequence, 5);
    assert_eq!(
        f.memory().load(REPOSITORY).unwrap().channels["stable"].sequence,
        5
    );
    let older = f
        .judge(
            examined(Some(head(4, 60)), None),
            &release(1),
            Some("stable"),
            Waivers::default(),
        )
        .await;
    assert_eq!(rule_of(older), Rule::ChannelRollback);
    // The same head again is fine; the same sequence naming another release is not.
    f.judge(
        examined(Some(head(5, 60)), None),
        &release(2),
        Some("stable"),
        Waivers::default(),
    )
    .await
    .unwrap();
    let equivocation = f
        .judge(
            examined(Some(head(5, 60)), None),
            &release(3),
            Some("stable"),
            Waivers::default(),
        )
        .await;
    assert_eq!(rule_of(equivocation), Rule::ChannelRollback);
}

#[tokio::test]
async fn an_expired_head_is_refused_unless_waived_and_the_waiver_is_reported() {
    let f = Fixture::new();
    let expired = f
        .judge(
            examined(Some(head(1, -1)), None),
            &release(1),
            Some("stable"),
            Waivers::default(),
        )
        .await;
    assert_eq!(rule_of(expired), Rule::ChannelExpired);
    assert!(f.memory().load(REPOSITORY).unwrap().channels.is_empty());
    let waivers = Waivers {
        expired_channel: true,
        ..Waivers::default()
    };
    let verdict = f
        .judge(
            examined(Some(head(1, -1)), None),
            &release(1),
            Some("stable"),
            waivers,
        )
        .await
        .unwrap();
    assert!(verdict.waived[0].starts_with("allow-expired: channel \"stable\" head 1 expired"));
}

#[tokio::test]
async fn a_yank_is_remembered_when_it_refuses_and_outlives_its_deletion() {
    let f = Fixture::new();
    let yanked = release(7);
    let refused = f
        .judge(
            examined(None, Some(yank_list(1, std::slice::from_ref(&yanked)))),
            &yanked,
            Some("v7"),
            Waivers::default(),
        )
        .await;
    assert_eq!(rule_of(refused), Rule::Yanked);
    // Deleted from the registry: nothing found any more, the memory still refuses.
    let again = f
        .judge(
            examined(None, None),
            &yanked,
            Some("v7"),
            Waivers::default(),
        )
        .await;
    assert_eq!(rule_of(again), Rule::Yanked);
    // An older list found later does not replace the newer one remembered.
    let older = f
        .judge(
            examined(None, Some(yank_list(0, &[]))),
            &yanked,
            Some("v7"),
            Waivers::default(),
        )
        .await;
    assert_eq!(rule_of(older), Rule::Yanked);
    // Other releases pass, and say which yank list was known.
    let verdict = f
        .judge(
            examined(None, None),
            &release(8),
            Some("v8"),
            Waivers::default(),
        )
        .await
        .unwrap();
    assert_eq!(verdict.yank_list, Some(1));
}

#[tokio::test]
async fn a_yanked_release_is_waivable_by_digest_only() {
    let f = Fixture::new();
    let yanked = release(7);
    let waivers = Waivers {
        yanked_by_digest: true,
        ..Waivers::default()
    };
    let by_tag = f
        .judge(
            examined(None, Some(yank_list(1, std::slice::from_ref(&yanked)))),
            &yanked,
            Some("v7"),
            waivers,
        )
        .await;
    assert_eq!(rule_of(by_tag), Rule::Yanked);
    let verdict = f
        .judge(examined(None, None), &yanked, None, waivers)
        .await
        .unwrap();
    assert!(verdict.waived[0].contains("CVE-2026-0001"), "{verdict:?}");
}

#[tokio::test]
async fn a_head_naming_a_yank_list_that_cannot_be_read_fails_closed() {
    let f = Fixture::new();
    let mut newer = head(2, 60);
    newer.yanks = Some(tcdist_oci::attachments::lifecycle::YankListRef {
        sequence: 3,
        manifest: Digest::of(b"a yank list this layout does not have"),
    });
    let refused = f
        .judge(
            examined(Some(newer), None),
            &release(1),
            Some("stable"),
            Waivers::default(),
        )
        .await;
    assert_eq!(rule_of(refused), Rule::Yanked);
}

#[test]
fn referrers_are_sorted_by_claimed_kind_and_channel_heads_newest_first() {
    let descriptor = |n: u8, annotations: &[(&str, &str)]| {
        let mut d = Descriptor::new(MEDIA_TYPE_MANIFEST, Digest::of(&[n]), 10);
        d.annotations = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>();
        d
    };
    let channel = |n, name, sequence| {
        descriptor(
            n,
            &[
                (ANNOTATION_BUNDLE_PREDICATE_TYPE, CHANNEL_PREDICATE_TYPE),
                (ANNOTATION_CHANNEL, name),
                (ANNOTATION_SEQUENCE, sequence),
            ],
        )
    };
    let listed = vec![
        descriptor(1, &[]),
        channel(2, "stable", "3"),
        channel(3, "stable", "11"),
        channel(4, "beta", "20"),
        descriptor(
            5,
            &[(ANNOTATION_BUNDLE_PREDICATE_TYPE, YANKS_PREDICATE_TYPE)],
        ),
    ];
    let sorted = Referrers::sort(listed.clone(), Some("stable"));
    assert_eq!(sorted.release.len(), 1);
    assert_eq!(sorted.yank_lists.len(), 1);
    let order: Vec<_> = sorted.channel.iter().map(|d| d.digest.clone()).collect();
    assert_eq!(order, [Digest::of(&[3]), Digest::of(&[2])]);
    assert!(sorted.is_channel());
    assert_eq!(sorted.tag_to_bind(), None);
    // The same tag, pulled as a plain release tag with no head for it, binds signatures.
    let plain = Referrers::sort(listed.clone(), Some("v1"));
    assert!(!plain.is_channel());
    assert_eq!(plain.tag_to_bind(), Some("v1"));
    // By digest: nothing to bind.
    assert_eq!(Referrers::sort(listed, None).tag_to_bind(), None);
}
