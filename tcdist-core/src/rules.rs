//! The names of the signature rules, as they appear in messages, `--json` and the audit log.
//! A refusal always names one of these, the object it concerns, and why.

use std::fmt;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The release's repository has a rule in the policy.
    RepositoryCovered,
    /// At least one signature is attached.
    SignaturePresent,
    /// The attachment decodes as a bundle or a cosign signature.
    SignatureFormat,
    /// The leaf is an X.509-SVID: one URI SAN `spiffe://…`, not a CA, digitalSignature.
    SvidFormat,
    /// The leaf's validity (notAfter − notBefore) is no longer than the policy's
    /// `max_svid_lifetime`.
    SvidLifetime,
    /// The policy holds trust material for the SVID's trust domain.
    TrustDomainKnown,
    /// An RFC 3161 timestamp from a trusted TSA proves when the signature existed.
    SigningTime,
    /// The signing time lies inside the leaf's validity.
    SigningTimeInValidity,
    /// The leaf chains to its trust domain's bundle at the signing time.
    SvidChain,
    /// The signature verifies over the payload with the leaf's key.
    SignatureValid,
    /// The payload names this index digest and this repository.
    PayloadSubject,
    /// The SVID's SPIFFE ID is allowed for this repository.
    SignerAllowed,
    /// The signature is recorded in a transparency log the policy trusts.
    LogEntryPresent,
    /// The log entry's body is this signature, certificate and payload.
    LogEntryMatches,
    /// The entry's checkpoint is signed by the log's key under its origin.
    LogCheckpoint,
    /// The inclusion proof leads from the entry to the checkpoint's root.
    LogInclusion,
    /// A newer checkpoint of the log is consistent with the one seen (no forked history).
    LogConsistency,
    /// The entry is in a checkpoint cosigned by the policy's quorum of the log's witnesses.
    LogWitness,
    /// A pull by tag accepts a signature only if its statement names that tag, unless a
    /// channel statement for the tag names the release.
    TagBinding,
    /// The repository's `threshold` of distinct signers signed the release.
    SignatureThreshold,
    /// The SVID that signed a channel statement or yank list is a promoter of the repository.
    PromoterAllowed,
    /// A channel statement is for this channel and names the release its tag serves.
    ChannelBinding,
    /// A channel's head is not older than the newest one this store has seen.
    ChannelRollback,
    /// A channel's head has not expired.
    ChannelExpired,
    /// The release is not on the repository's yank list.
    Yanked,
    /// The SVID that signed a rollout statement is a promoter or a brake of the repository.
    RolloutSignerAllowed,
    /// A rollout statement is for this channel, about the release its tag serves, with a
    /// plan that meets the plan rules.
    RolloutBinding,
    /// A channel's rollout statement is not older than the newest one this store has seen.
    RolloutRollback,
    /// A brake's rollout statement follows a plan promoters signed, by its digest.
    RolloutBrakePlan,
    /// A brake's rollout statement widens only to the plan's next stage (never to the whole
    /// channel), after the stage's soak time.
    RolloutBrakeWidening,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::RepositoryCovered => "repository-covered",
            Rule::SignaturePresent => "signature-present",
            Rule::SignatureFormat => "signature-format",
            Rule::SvidFormat => "svid-format",
            Rule::SvidLifetime => "svid-lifetime",
            Rule::TrustDomainKnown => "trust-domain-known",
            Rule::SigningTime => "signing-time",
            Rule::SigningTimeInValidity => "signing-time-in-validity",
            Rule::SvidChain => "svid-chain",
            Rule::SignatureValid => "signature-valid",
            Rule::PayloadSubject => "payload-subject",
            Rule::SignerAllowed => "signer-allowed",
            Rule::LogEntryPresent => "tlog-entry-present",
            Rule::LogEntryMatches => "tlog-entry-matches",
            Rule::LogCheckpoint => "tlog-checkpoint",
            Rule::LogInclusion => "tlog-inclusion",
            Rule::LogConsistency => "tlog-consistency",
            Rule::LogWitness => "tlog-witness",
            Rule::TagBinding => "tag-binding",
            Rule::SignatureThreshold => "signature-threshold",
            Rule::PromoterAllowed => "promoter-allowed",
            Rule::ChannelBinding => "channel-binding",
            Rule::ChannelRollback => "channel-rollback",
            Rule::ChannelExpired => "channel-expired",
            Rule::Yanked => "yanked",
            Rule::RolloutSignerAllowed => "rollout-signer-allowed",
            Rule::RolloutBinding => "rollout-binding",
            Rule::RolloutRollback => "rollout-rollback",
            Rule::RolloutBrakePlan => "rollout-brake-plan",
            Rule::RolloutBrakeWidening => "rollout-brake-widening",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why one signature (or the release as a whole) failed.
#[derive(Clone, Debug, Serialize)]
pub struct SignatureFailure {
    /// The signature or object concerned.
    pub origin: String,
    pub rule: Rule,
    pub reason: String,
}

impl SignatureFailure {
    pub fn new(origin: &str, rule: Rule, reason: impl Into<String>) -> Self {
        SignatureFailure {
            origin: origin.to_owned(),
            rule,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for SignatureFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: [{}] {}", self.origin, self.rule, self.reason)
    }
}
