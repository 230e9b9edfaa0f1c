//! Identity rules: which SPIFFE IDs may sign a repository's releases. Rules are values built
//! from the policy file; leaves compare one property of the ID, `any_of`/`all_of` combine them.
//! A refusal lists every reason, so one message shows why no branch matched.

use std::fmt;

use crate::spiffe_id::{SpiffeId, TrustDomain};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityRule {
    /// Exactly this SPIFFE ID.
    SpiffeId(SpiffeId),
    /// Any SPIFFE ID in this trust domain.
    TrustDomain(TrustDomain),
    /// This SPIFFE ID or any below it, at a path segment boundary (see
    /// [`SpiffeId::has_prefix`]).
    PathPrefix(SpiffeId),
    /// At least one rule matches. An empty list matches nothing.
    AnyOf(Vec<IdentityRule>),
    /// Every rule matches. An empty list matches nothing: a rule that constrains nothing is a
    /// mistake, not a wildcard (the policy loader refuses both empty forms).
    AllOf(Vec<IdentityRule>),
}

impl IdentityRule {
    /// `Ok` when `id` satisfies the rule; otherwise every reason it does not, one per failed
    /// leaf (for `any_of`, the reasons of all branches).
    pub fn check(&self, id: &SpiffeId) -> Result<(), Vec<String>> {
        match self {
            IdentityRule::SpiffeId(want) if id == want => Ok(()),
            IdentityRule::SpiffeId(want) => Err(vec![format!("{id} is not spiffe_id={want}")]),
            IdentityRule::TrustDomain(td) if id.is_member_of(td) => Ok(()),
            IdentityRule::TrustDomain(td) => Err(vec![format!("{id} is not in trust_domain={td}")]),
            IdentityRule::PathPrefix(prefix) if id.has_prefix(prefix) => Ok(()),
            IdentityRule::PathPrefix(prefix) => {
                Err(vec![format!("{id} is not under path_prefix={prefix}")])
            }
            IdentityRule::AnyOf(rules) if rules.is_empty() => {
                Err(vec!["any_of() has no rules and matches nothing".to_owned()])
            }
            IdentityRule::AnyOf(rules) => {
                let mut reasons = Vec::new();
                for rule in rules {
                    match rule.check(id) {
                        Ok(()) => return Ok(()),
                        Err(more) => reasons.extend(more),
                    }
                }
                Err(reasons)
            }
            IdentityRule::AllOf(rules) if rules.is_empty() => {
                Err(vec!["all_of() has no rules and matches nothing".to_owned()])
            }
            IdentityRule::AllOf(rules) => {
                let reasons: Vec<String> = rules
                    .iter()
                    .filter_map(|rule| rule.check(id).err())
                    .flatten()
                    .collect();
                if reasons.is_empty() {
                    Ok(())
                } else {
                    Err(reasons)
                }
            }
        }
    }
}

/// Compact, one line, in the policy file's own terms, e.g.
/// `any_of(spiffe_id=spiffe://td/signer, all_of(trust_domain=td, path_prefix=spiffe://td/release))`.
impl fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, rules) = match self {
            IdentityRule::SpiffeId(id) => return write!(f, "spiffe_id={id}"),
            IdentityRule::TrustDomain(td) => return write!(f, "trust_domain={td}"),
            IdentityRule::PathPrefix(prefix) => return write!(f, "path_prefix={prefix}"),
            IdentityRule::AnyOf(rules) => ("any_of", rules),
            IdentityRule::AllOf(rules) => ("all_of", rules),
        };
        write!(f, "{name}(")?;
        for (i, rule) in rules.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{rule}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn exact(s: &str) -> IdentityRule {
        IdentityRule::SpiffeId(id(s))
    }

    fn domain(s: &str) -> IdentityRule {
        IdentityRule::TrustDomain(TrustDomain::parse(s).unwrap())
    }

    fn prefix(s: &str) -> IdentityRule {
        IdentityRule::PathPrefix(id(s))
    }

    #[test]
    fn spiffe_id_rule_accepts_only_the_same_id() {
        let rule = exact("spiffe://td/distd/signer");
        assert_eq!(rule.check(&id("spiffe://td/distd/signer")), Ok(()));
        assert_eq!(
            rule.check(&id("spiffe://td/distd/signer2")),
            Err(vec![
                "spiffe://td/distd/signer2 is not spiffe_id=spiffe://td/distd/signer".to_owned()
            ])
        );
        assert!(rule.check(&id("spiffe://other/distd/signer")).is_err());
        assert!(rule.check(&id("spiffe://td/distd")).is_err());
    }

    #[test]
    fn trust_domain_rule_accepts_any_id_in_the_domain() {
        let rule = domain("td");
        assert_eq!(rule.check(&id("spiffe://td/a/b")), Ok(()));
        assert_eq!(rule.check(&id("spiffe://td")), Ok(()));
        assert_eq!(
            rule.check(&id("spiffe://td.evil/a")),
            Err(vec![
                "spiffe://td.evil/a is not in trust_domain=td".to_owned()
            ])
        );
    }

    #[test]
    fn path_prefix_rule_matches_at_segment_boundary_only() {
        let rule = prefix("spiffe://td/release");
        assert_eq!(rule.check(&id("spiffe://td/release")), Ok(()));
        assert_eq!(rule.check(&id("spiffe://td/release/x/y")), Ok(()));
        assert_eq!(
            rule.check(&id("spiffe://td/releases")),
            Err(vec![
                "spiffe://td/releases is not under path_prefix=spiffe://td/release".to_owned()
            ])
        );
        assert!(rule.check(&id("spiffe://other/release/x")).is_err());
    }

    #[test]
    fn any_of_accepts_if_one_branch_matches() {
        let rule = IdentityRule::AnyOf(vec![exact("spiffe://td/a"), exact("spiffe://td/b")]);
        assert_eq!(rule.check(&id("spiffe://td/b")), Ok(()));
    }

    #[test]
    fn all_of_rejected_if_one_branch_fails() {
        let rule = IdentityRule::AllOf(vec![domain("td"), prefix("spiffe://td/release")]);
        assert_eq!(rule.check(&id("spiffe://td/release/1")), Ok(()));
        assert_eq!(
            rule.check(&id("spiffe://td/dev/1")),
            Err(vec![
                "spiffe://td/dev/1 is not under path_prefix=spiffe://td/release".to_owned()
            ])
        );
    }

    #[test]
    fn nested_rule_rejection_lists_every_reason() {
        let rule = IdentityRule::AnyOf(vec![
            exact("spiffe://td/distd/signer"),
            IdentityRule::AllOf(vec![domain("other"), prefix("spiffe://td/release")]),
        ]);
        assert_eq!(
            rule.check(&id("spiffe://td/dev")),
            Err(vec![
                "spiffe://td/dev is not spiffe_id=spiffe://td/distd/signer".to_owned(),
                "spiffe://td/dev is not in trust_domain=other".to_owned(),
                "spiffe://td/dev is not under path_prefix=spiffe://td/release".to_owned(),
            ])
        );
    }

    #[test]
    fn empty_combinators_match_nothing() {
        for rule in [IdentityRule::AnyOf(vec![]), IdentityRule::AllOf(vec![])] {
            let reasons = rule.check(&id("spiffe://td/a")).unwrap_err();
            assert_eq!(reasons.len(), 1);
            assert!(reasons[0].contains("matches nothing"), "{reasons:?}");
        }
    }

    #[test]
    fn rule_displays_compactly() {
        let rule = IdentityRule::AnyOf(vec![
            exact("spiffe://td/distd/signer"),
            IdentityRule::AllOf(vec![domain("td"), prefix("spiffe://td/release")]),
        ]);
        assert_eq!(
            rule.to_string(),
            "any_of(spiffe_id=spiffe://td/distd/signer, \
             all_of(trust_domain=td, path_prefix=spiffe://td/release))"
        );
    }
}
