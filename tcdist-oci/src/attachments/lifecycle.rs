//! The statements that manage a repository's releases after they are signed: a channel head
//! (which release a channel tag serves, in which order, until when) and a yank list (which
//! releases are withdrawn). Both are in-toto statements in Sigstore bundles, timestamped and
//! logged like release signatures, and attached as referrers of a release index; their
//! sequence numbers let a verifier that remembers the highest one refuse a replayed older one.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Predicate, Statement};
use tcdist_core::digest::Digest;

pub const CHANNEL_PREDICATE_TYPE: &str = "https://tcdist.dev/attestation/channel/v1";
pub const YANKS_PREDICATE_TYPE: &str = "https://tcdist.dev/attestation/yanks/v1";

/// The tag under which a repository's current yank list is kept.
pub const YANKS_TAG: &str = "tcdist-yanks";

/// Set on the referrer manifest of a channel statement: its channel and sequence, so a
/// verifier reads the newest statements of the channel it asks for first. They are not
/// signed; the statement inside is what counts.
pub const ANNOTATION_CHANNEL: &str = "dev.tcdist.channel";
pub const ANNOTATION_SEQUENCE: &str = "dev.tcdist.sequence";

/// "Channel `channel` of `repository` serves `release` from `issued` until `expires`; this is
/// its `sequence`th head."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPredicate {
    pub repository: String,
    pub channel: String,
    /// Strictly increases per (repository, channel) with every promotion and refresh.
    pub sequence: u64,
    pub release: Digest,
    pub issued: Timestamp,
    pub expires: Timestamp,
    /// The repository's yank list when this head was signed, so a verifier that never saw it
    /// still learns of every yank up to then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yanks: Option<YankListRef>,
}

impl Predicate for ChannelPredicate {
    const TYPE: &'static str = CHANNEL_PREDICATE_TYPE;
    const NAME: &'static str = "channel statement";
}

pub type ChannelStatement = Statement<ChannelPredicate>;

/// Names one version of a yank list: its sequence and the digest of its referrer manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YankListRef {
    pub sequence: u64,
    pub manifest: Digest,
}

/// Every release of `repository` withdrawn so far. Each version holds all earlier yanks, so
/// the one with the highest sequence is the whole truth; its subject is the release that
/// version added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YankListPredicate {
    pub repository: String,
    pub sequence: u64,
    pub issued: Timestamp,
    pub yanked: Vec<Yank>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Yank {
    pub release: Digest,
    pub reason: String,
    pub yanked_at: Timestamp,
}

impl Predicate for YankListPredicate {
    const TYPE: &'static str = YANKS_PREDICATE_TYPE;
    const NAME: &'static str = "yank list";
}

pub type YankListStatement = Statement<YankListPredicate>;

impl YankListPredicate {
    pub fn find(&self, release: &Digest) -> Option<&Yank> {
        self.yanked.iter().find(|yank| yank.release == *release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> ChannelPredicate {
        ChannelPredicate {
            repository: "toolchains/go".into(),
            channel: "stable".into(),
            sequence: 3,
            release: Digest::of(b"index"),
            issued: "2026-12-01T00:00:00Z".parse().unwrap(),
            expires: "2026-12-08T00:00:00Z".parse().unwrap(),
            yanks: None,
        }
    }

    #[test]
    fn channel_statement_round_trips() {
        let statement = ChannelStatement::about("toolchains/go", &Digest::of(b"index"), channel());
        let (parsed, subject) = ChannelStatement::parse_statement(&statement.to_json()).unwrap();
        assert_eq!(parsed.predicate, channel());
        assert_eq!(subject.digest, Digest::of(b"index"));
    }

    #[test]
    fn release_statement_is_not_a_channel_statement() {
        let bytes =
            super::super::ReleaseStatement::new("r", Some("v1"), &Digest::of(b"i")).to_json();
        let err = ChannelStatement::parse_statement(&bytes).unwrap_err();
        assert!(err.contains("channel statement"), "{err}");
    }

    #[test]
    fn channel_predicate_refuses_unknown_fields() {
        let mut json =
            serde_json::to_value(ChannelStatement::about("r", &Digest::of(b"i"), channel()))
                .unwrap();
        json["predicate"]["rollback_ok"] = true.into();
        let err = ChannelStatement::parse_statement(json.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("rollback_ok"), "{err}");
    }

    #[test]
    fn yank_list_finds_its_releases() {
        let list = YankListPredicate {
            repository: "r".into(),
            sequence: 1,
            issued: "2026-12-01T00:00:00Z".parse().unwrap(),
            yanked: vec![Yank {
                release: Digest::of(b"bad"),
                reason: "CVE".into(),
                yanked_at: "2026-12-01T00:00:00Z".parse().unwrap(),
            }],
        };
        assert_eq!(list.find(&Digest::of(b"bad")).unwrap().reason, "CVE");
        assert!(list.find(&Digest::of(b"good")).is_none());
    }
}
