//! Reading a policy file: TOML into raw, span-carrying values, then validation into a
//! [`Policy`]. Syntax and type errors stop at the first (the TOML parser cannot go on);
//! everything after that is checked in full, so one run lists every semantic problem, each at
//! the line and column of the value at fault. Trust files are read and parsed here too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde::de::IgnoredAny;
use sigstore_types::TimeRange;
use toml::Spanned;

use super::diagnostic::{Diagnostic, LineIndex, PolicyError};
use super::pattern::RepositoryPattern;
use super::rule::IdentityRule;
use super::{
    DEFAULT_MAX_SVID_LIFETIME, DEFAULT_MAX_VERIFICATION_AGE, FORMAT_VERSION, Policy,
    RepositoryPolicy, RepositorySummary, TimestampAuthoritySummary, TrustDomainSummary,
    TrustedRootSummary,
};
use crate::spiffe_id::{SpiffeId, TrustDomain};
use crate::trust::tlog::{FreshnessMode, TransparencyLog, WitnessPolicy, parse_log_public_key};
use crate::trust::trusted_root::TrustedRoot;
use crate::trust::{
    Authority, TrustDomainBundle, TrustMaterial, WORKLOAD_API_ENDPOINT_ENV, narrowest,
    parse_pem_certificates, parse_spiffe_bundle, parse_tsa_chain,
};
use crate::witness::WitnessKey;
use crate::witness::client::Witness;
use sigstore_types::TsaAuthority;

/// Keys that a later format will give meaning; refusing them now keeps a policy written for
/// that format from being read, by this version, as if they were absent.
const RESERVED: &str = "is reserved for a later policy format; not accepted yet";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Option<Spanned<i64>>,
    #[serde(default)]
    trust_domains: BTreeMap<Spanned<String>, Spanned<RawTrustDomain>>,
    #[serde(default)]
    timestamp_authorities: BTreeMap<Spanned<String>, Spanned<RawTimestampAuthority>>,
    #[serde(default)]
    repository: Vec<Spanned<RawRepository>>,
    #[serde(default)]
    transparency_logs: BTreeMap<Spanned<String>, Spanned<RawTransparencyLog>>,
    max_svid_lifetime: Option<Spanned<String>>,
    max_verification_age: Option<Spanned<String>>,
    threshold: Option<Spanned<IgnoredAny>>,
    ratchet: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a trust domain table with one of bundle, spiffe_bundle or workload_api"
)]
struct RawTrustDomain {
    bundle: Option<Spanned<String>>,
    spiffe_bundle: Option<Spanned<String>>,
    workload_api: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a timestamp authority table with a chain file"
)]
struct RawTimestampAuthority {
    chain: Spanned<String>,
    valid_from: Option<Spanned<toml::Value>>,
    valid_until: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a transparency log table with origin, public_key, url, freshness and witnesses"
)]
struct RawTransparencyLog {
    /// Absent: the key of the trusted root's log with this origin.
    public_key: Option<Spanned<String>>,
    origin: Spanned<String>,
    url: Option<Spanned<String>>,
    /// `"best-effort"` (the default) or `"required"`.
    freshness: Option<Spanned<String>>,
    /// `"required"` or `"best-effort"`: whether a checkpoint without the witnesses' quorum
    /// is refused. Required with `witnesses`.
    witness: Option<Spanned<String>>,
    witness_quorum: Option<Spanned<usize>>,
    witnesses: Option<Spanned<Vec<RawWitness>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a witness: { name, key, url }")]
struct RawWitness {
    name: String,
    /// A C2SP verifier key, NAME+HASH+BASE64.
    key: Spanned<String>,
    /// Where it serves `add-checkpoint`, for entries with no cosigned checkpoint beside them.
    url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[repository]] table")]
struct RawRepository {
    name: Spanned<String>,
    signers: Spanned<RawRule>,
    /// How many distinct SPIFFE IDs that `signers` allows must have signed a release.
    threshold: Option<Spanned<i64>>,
    /// Who may sign channel statements and yank lists.
    promoters: Option<Spanned<RawRule>>,
    /// Who may halt a channel's rollout, or advance it along a plan promoters signed.
    brakes: Option<Spanned<RawRule>>,
    timestamp_authorities: Option<Spanned<Vec<Spanned<String>>>>,
    transparency_logs: Option<Spanned<Vec<Spanned<String>>>>,
    ratchet: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an identity rule table with one key: spiffe_id, trust_domain, path_prefix, \
                 any_of or all_of"
)]
struct RawRule {
    spiffe_id: Option<Spanned<String>>,
    trust_domain: Option<Spanned<String>>,
    path_prefix: Option<Spanned<String>>,
    any_of: Option<Spanned<Vec<Spanned<RawRule>>>>,
    all_of: Option<Spanned<Vec<Spanned<RawRule>>>>,
}

/// The most distinct signers a repository may require: more would never be met by the
/// signatures a verifier reads (`discover`'s candidate limit).
const MAX_THRESHOLD: usize = 8;

/// A trusted root given next to the policy, already parsed, and the file it came from.
pub(super) type GivenTrustedRoot<'a> = (&'a Path, TrustedRoot);

pub(super) fn load(
    text: &str,
    path: &Path,
    trusted_root: Option<GivenTrustedRoot<'_>>,
) -> Result<Policy, PolicyError> {
    let index = LineIndex::new(path, text);
    let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Invalid {
        diagnostics: vec![index.diagnostic(e.span().unwrap_or(0..0), e.message().trim_end())],
    })?;
    let mut loader = Loader {
        index,
        base: path.parent().unwrap_or(Path::new("")),
        diagnostics: Vec::new(),
    };
    let policy = loader.policy(&raw, path, trusted_root);
    let mut diagnostics = loader.diagnostics;
    match policy {
        Some(policy) if diagnostics.is_empty() => Ok(policy),
        _ => {
            diagnostics.sort_by_key(|d| (d.location.line, d.location.column));
            Err(PolicyError::Invalid { diagnostics })
        }
    }
}

struct Loader<'a> {
    index: LineIndex<'a>,
    /// Trust file paths are relative to the policy file's directory.
    base: &'a Path,
    diagnostics: Vec<Diagnostic>,
}

impl Loader<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let diagnostic = self.index.diagnostic(span, message);
        self.diagnostics.push(diagnostic);
    }

    fn reserved(&mut self, key: &str, value: &Option<Spanned<IgnoredAny>>) {
        if let Some(value) = value {
            self.error(value.span(), format!("{key} {RESERVED}"));
        }
    }

    fn policy(
        &mut self,
        raw: &RawPolicy,
        path: &Path,
        trusted_root: Option<GivenTrustedRoot<'_>>,
    ) -> Option<Policy> {
        match &raw.version {
            None => self.error(
                0..0,
                format!("missing `version = {FORMAT_VERSION}` (the policy format version)"),
            ),
            Some(v) if *v.get_ref() != FORMAT_VERSION => self.error(
                v.span(),
                format!(
                    "version {} is not supported: this tcverify reads version {FORMAT_VERSION}",
                    v.get_ref()
                ),
            ),
            Some(_) => {}
        }
        self.reserved("threshold", &raw.threshold);
        self.reserved("ratchet", &raw.ratchet);
        let max_svid_lifetime = self.duration(
            "max_svid_lifetime",
            &raw.max_svid_lifetime,
            DEFAULT_MAX_SVID_LIFETIME,
        );
        let max_verification_age = self.duration(
            "max_verification_age",
            &raw.max_verification_age,
            DEFAULT_MAX_VERIFICATION_AGE,
        );

        // Names are collected before their tables are loaded, so a trust file that fails to
        // load does not also make every rule that names its trust domain an error.
        let root = trusted_root.as_ref().map(|(_, root)| root);
        let mut declared_domains: BTreeSet<String> = raw
            .trust_domains
            .keys()
            .map(|k| k.get_ref().clone())
            .collect();
        let mut declared_tsas: Vec<String> = raw
            .timestamp_authorities
            .keys()
            .map(|k| k.get_ref().clone())
            .collect();
        let mut declared_logs: Vec<String> = raw
            .transparency_logs
            .keys()
            .map(|k| k.get_ref().clone())
            .collect();
        if let Some(root) = root {
            declared_domains.extend(root.authorities.iter().map(|(td, _)| td.to_string()));
        }

        let mut trust = TrustMaterial::default();
        let mut trust_domains = Vec::new();
        for (name, table) in &raw.trust_domains {
            let td = match TrustDomain::parse(name.get_ref()) {
                Ok(td) => td,
                Err(e) => {
                    self.error(
                        name.span(),
                        format!("trust domain {:?} {e}", name.get_ref()),
                    );
                    continue;
                }
            };
            if let Some((bundle, source)) = self.trust_domain(&td, table) {
                trust_domains.push(TrustDomainSummary {
                    name: td.to_string(),
                    source,
                });
                trust.domains.insert(td, bundle);
            }
        }

        let mut timestamp_authorities = Vec::new();
        for (name, table) in &raw.timestamp_authorities {
            if let Some((tsa, summary)) = self.timestamp_authority(name, table) {
                trust
                    .timestamp_authorities
                    .push((name.get_ref().clone(), tsa));
                timestamp_authorities.push(summary);
            }
        }

        for (name, table) in &raw.transparency_logs {
            if let Some(log) = self.transparency_log(table, root) {
                trust.transparency_logs.push((name.get_ref().clone(), log));
            }
        }

        let trusted_root = trusted_root.map(|(file, root)| {
            let (summary, added) = self.merge_trusted_root(
                raw,
                file,
                root,
                &mut trust,
                &mut trust_domains,
                &mut timestamp_authorities,
            );
            declared_tsas.extend(added.timestamp_authorities);
            declared_logs.extend(added.transparency_logs);
            summary
        });

        if raw.repository.is_empty() {
            self.error(
                0..0,
                "the policy declares no [[repository]], so it would accept no release",
            );
        }
        let mut repositories = Vec::new();
        let mut exact_names: HashMap<String, usize> = HashMap::new();
        for repository in &raw.repository {
            if let Some(compiled) = self.repository(
                repository,
                &declared_domains,
                &declared_tsas,
                &declared_logs,
                &mut exact_names,
            ) {
                repositories.push(compiled);
            }
        }

        if !self.diagnostics.is_empty() {
            return None;
        }
        let summaries = repositories
            .iter()
            .map(|r: &RepositoryPolicy| RepositorySummary {
                name: r.pattern.to_string(),
                signers: r.signers.to_string(),
                threshold: r.threshold,
                promoters: r.promoters.as_ref().map(ToString::to_string),
                brakes: r.brakes.as_ref().map(ToString::to_string),
                timestamp_authorities: r.timestamp_authorities.clone(),
                transparency_logs: r.transparency_logs.clone(),
                declared_at: r.declared_at.clone(),
            })
            .collect();
        Some(Policy {
            path: path.to_path_buf(),
            repositories,
            trust,
            trust_domains,
            timestamp_authorities,
            repository_summaries: summaries,
            trusted_root,
            max_svid_lifetime: max_svid_lifetime?,
            max_verification_age: max_verification_age?,
            logs_offline: false,
        })
    }

    /// `key`: a positive duration such as `"1h"`, `"15m"` or `"PT1H"`; `default` when absent.
    fn duration(
        &mut self,
        key: &str,
        value: &Option<Spanned<String>>,
        default: SignedDuration,
    ) -> Option<SignedDuration> {
        let Some(value) = value else {
            return Some(default);
        };
        let expected =
            format!("{key} must be a positive duration, e.g. \"1h\", \"15m\" or \"90s\"");
        match value.get_ref().parse::<SignedDuration>() {
            Ok(duration) if duration.is_positive() => Some(duration),
            Ok(_) => {
                self.error(value.span(), format!("{expected}: {:?}", value.get_ref()));
                None
            }
            Err(e) => {
                self.error(
                    value.span(),
                    format!("{expected}: {:?}: {e}", value.get_ref()),
                );
                None
            }
        }
    }

    /// Adds a trusted root's material to the policy's own. Authorities join their trust
    /// domain's; a timestamp authority or log the policy already declares (same chain; same key
    /// and origin) is the policy's, under the policy's name. Another one under a name the policy
    /// uses is an error at the policy's table, since repositories could not tell them apart.
    /// Returns what it contributed and the names of the TSAs and logs it added.
    fn merge_trusted_root(
        &mut self,
        raw: &RawPolicy,
        file: &Path,
        root: TrustedRoot,
        trust: &mut TrustMaterial,
        trust_domains: &mut Vec<TrustDomainSummary>,
        timestamp_authorities: &mut Vec<TimestampAuthoritySummary>,
    ) -> (TrustedRootSummary, AddedNames) {
        let mut added = AddedNames::default();
        let source = format!("trusted root {}", file.display());
        let mut by_domain: BTreeMap<TrustDomain, usize> = BTreeMap::new();
        for (td, authority) in root.authorities.iter().cloned() {
            *by_domain.entry(td.clone()).or_default() += 1;
            trust.domains.entry(td).or_default().add([authority]);
        }
        for (td, n) in &by_domain {
            let counted = format!(
                "{source} ({})",
                count(*n, "X.509 authority", "X.509 authorities")
            );
            match trust_domains.iter_mut().find(|s| s.name == td.as_str()) {
                Some(summary) => summary.source = format!("{}; {counted}", summary.source),
                None => trust_domains.push(TrustDomainSummary {
                    name: td.to_string(),
                    source: counted,
                }),
            }
        }
        trust_domains.sort_by(|a, b| a.name.cmp(&b.name));

        for (name, tsa) in &root.timestamp_authorities {
            let narrowed = narrow_known(
                &mut trust.timestamp_authorities,
                |known| same_tsa(known, tsa),
                |known| &mut known.valid_for,
                tsa.valid_for,
            );
            // The summary shows the policy's own text unless the trusted root narrowed it.
            for (known, window) in narrowed.iter().filter(|_| tsa.valid_for.is_some()) {
                if let Some(summary) = timestamp_authorities.iter_mut().find(|s| s.name == *known) {
                    (summary.valid_from, summary.valid_until) = window_text(*window);
                }
            }
            let policy_table = raw
                .timestamp_authorities
                .get_key_value(name.as_str())
                .map(|(key, _)| key.span());
            if !narrowed.is_empty()
                || !self.joins("timestamp authority", &source, name, policy_table)
            {
                continue;
            }
            let (valid_from, valid_until) = window_text(tsa.valid_for);
            timestamp_authorities.push(TimestampAuthoritySummary {
                name: name.clone(),
                chain: source.clone(),
                certificates: 1 + tsa.intermediates.len() + usize::from(tsa.leaf != tsa.root),
                valid_from,
                valid_until,
            });
            trust
                .timestamp_authorities
                .push((name.clone(), tsa.clone()));
            added.timestamp_authorities.push(name.clone());
        }

        for (name, log) in &root.transparency_logs {
            let narrowed = narrow_known(
                &mut trust.transparency_logs,
                |known| known.key_id() == log.key_id(),
                |known| &mut known.valid_for,
                log.valid_for,
            );
            let policy_table = raw
                .transparency_logs
                .get_key_value(name.as_str())
                .map(|(key, _)| key.span());
            if !narrowed.is_empty() || !self.joins("transparency log", &source, name, policy_table)
            {
                continue;
            }
            trust.transparency_logs.push((name.clone(), log.clone()));
            added.transparency_logs.push(name.clone());
        }
        trust.timestamp_authorities.sort_by(|a, b| a.0.cmp(&b.0));
        trust.transparency_logs.sort_by(|a, b| a.0.cmp(&b.0));

        let summary = TrustedRootSummary {
            path: file.to_path_buf(),
            authorities: root.authorities.len(),
            timestamp_authorities: root.timestamp_authorities.len(),
            transparency_logs: root
                .transparency_logs
                .iter()
                .map(|(name, _)| name.clone())
                .collect(),
            ignored_authorities: root.ignored_authorities,
        };
        (summary, added)
    }

    /// Whether a trusted root's item named `name`, which the policy does not declare, joins the
    /// trust material: not when a policy table of this kind (`policy_table`, its key's span)
    /// uses the name for another, which is an error there.
    fn joins(
        &mut self,
        what: &str,
        source: &str,
        name: &str,
        policy_table: Option<Range<usize>>,
    ) -> bool {
        if let Some(span) = policy_table {
            self.error(
                span,
                format!(
                    "{source} has another {what} named {name:?}; rename this table so \
                     repositories can tell them apart"
                ),
            );
            return false;
        }
        true
    }

    fn trust_domain(
        &mut self,
        td: &TrustDomain,
        table: &Spanned<RawTrustDomain>,
    ) -> Option<(TrustDomainBundle, String)> {
        let raw = table.get_ref();
        if let Some(flag) = &raw.workload_api
            && !*flag.get_ref()
        {
            self.error(
                flag.span(),
                "workload_api = false names no source: remove it and set bundle or spiffe_bundle",
            );
            return None;
        }
        let set: Vec<&str> = [
            ("bundle", raw.bundle.is_some()),
            ("spiffe_bundle", raw.spiffe_bundle.is_some()),
            ("workload_api", raw.workload_api.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
        .collect();
        if set.len() != 1 {
            let found = if set.is_empty() {
                "none".to_owned()
            } else {
                set.join(" and ")
            };
            self.error(
                table.span(),
                format!(
                    "trust domain {td} needs exactly one of bundle, spiffe_bundle or \
                     workload_api = true (found {found})"
                ),
            );
            return None;
        }
        if let Some(file) = &raw.bundle {
            let (resolved, bytes) = self.read(file)?;
            let certificates = self.parsed(file, &resolved, parse_pem_certificates(&bytes))?;
            let source = format!(
                "bundle {} ({})",
                file.get_ref(),
                count(certificates.len(), "X.509 authority", "X.509 authorities")
            );
            return Some((from_files(certificates), source));
        }
        if let Some(file) = &raw.spiffe_bundle {
            let (resolved, bytes) = self.read(file)?;
            let certificates = self.parsed(file, &resolved, parse_spiffe_bundle(&bytes))?;
            let source = format!(
                "spiffe_bundle {} ({})",
                file.get_ref(),
                count(certificates.len(), "X.509 authority", "X.509 authorities")
            );
            return Some((from_files(certificates), source));
        }
        let bundle = TrustDomainBundle {
            authorities: Vec::new(),
            workload_api: true,
        };
        Some((
            bundle,
            format!("SPIFFE Workload API (${WORKLOAD_API_ENDPOINT_ENV})"),
        ))
    }

    fn timestamp_authority(
        &mut self,
        name: &Spanned<String>,
        table: &Spanned<RawTimestampAuthority>,
    ) -> Option<(sigstore_types::TsaAuthority, TimestampAuthoritySummary)> {
        let raw = table.get_ref();
        let from = raw
            .valid_from
            .as_ref()
            .map(|v| self.instant("valid_from", v));
        let until = raw
            .valid_until
            .as_ref()
            .map(|v| self.instant("valid_until", v));
        let valid_for = match (from, until) {
            (Some(None), _) | (_, Some(None)) => return None,
            (None, None) => None,
            (Some(Some(from)), None) => Some(TimeRange::new(from, None)),
            // Only an end: the window is open towards the past.
            (None, Some(Some(until))) => Some(TimeRange::new(Timestamp::UNIX_EPOCH, Some(until))),
            (Some(Some(from)), Some(Some(until))) => {
                if until < from {
                    let span = raw.valid_until.as_ref().expect("parsed above").span();
                    self.error(span, "valid_until is before valid_from");
                    return None;
                }
                Some(TimeRange::new(from, Some(until)))
            }
        };
        let (resolved, bytes) = self.read(&raw.chain)?;
        let tsa = self.parsed(&raw.chain, &resolved, parse_tsa_chain(&bytes, valid_for))?;
        let as_text = |v: &Option<Spanned<toml::Value>>| {
            v.as_ref().map(|v| match v.get_ref() {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let summary = TimestampAuthoritySummary {
            name: name.get_ref().clone(),
            chain: raw.chain.get_ref().clone(),
            certificates: 1 + tsa.intermediates.len() + usize::from(tsa.leaf != tsa.root),
            valid_from: as_text(&raw.valid_from),
            valid_until: as_text(&raw.valid_until),
        };
        Some((tsa, summary))
    }

    /// A time from an RFC 3339 string or a TOML offset date-time.
    fn instant(&mut self, key: &str, value: &Spanned<toml::Value>) -> Option<Timestamp> {
        let expected =
            format!("{key} must be an RFC 3339 time with a UTC offset, e.g. 2026-01-01T00:00:00Z");
        let text = match value.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Datetime(dt)
                if dt.date.is_some() && dt.time.is_some() && dt.offset.is_some() =>
            {
                dt.to_string()
            }
            _ => {
                self.error(value.span(), expected);
                return None;
            }
        };
        match text.parse::<Timestamp>() {
            Ok(time) => Some(time),
            Err(e) => {
                self.error(value.span(), format!("{expected}: {text:?}: {e}"));
                None
            }
        }
    }

    fn repository(
        &mut self,
        repository: &Spanned<RawRepository>,
        declared_domains: &BTreeSet<String>,
        declared_tsas: &[String],
        declared_logs: &[String],
        exact_names: &mut HashMap<String, usize>,
    ) -> Option<RepositoryPolicy> {
        let raw = repository.get_ref();
        self.reserved("ratchet", &raw.ratchet);
        let declared_at = self.index.locate(repository.span().start);

        let pattern = match RepositoryPattern::parse(raw.name.get_ref()) {
            Ok(pattern) => {
                let line = self.index.locate(raw.name.span().start).line;
                if let Some(first) = exact_names.get(pattern.as_str()) {
                    self.error(
                        raw.name.span(),
                        format!(
                            "repository {:?} is already declared on line {first}; the first \
                             matching [[repository]] wins, so this one would never apply",
                            pattern.as_str()
                        ),
                    );
                } else {
                    exact_names.insert(pattern.as_str().to_owned(), line);
                }
                Some(pattern)
            }
            Err(e) => {
                self.error(
                    raw.name.span(),
                    format!("repository name {:?}: {e}", raw.name.get_ref()),
                );
                None
            }
        };
        let signers = self.rule(&raw.signers, declared_domains);
        let promoters = raw
            .promoters
            .as_ref()
            .map(|rule| self.rule(rule, declared_domains));
        let brakes = raw
            .brakes
            .as_ref()
            .map(|rule| self.rule(rule, declared_domains));
        if let (Some(rule), None) = (&raw.brakes, &raw.promoters) {
            self.error(
                rule.span(),
                "brakes act only on rollouts that promoters start: name promoters too",
            );
        }
        let threshold = match &raw.threshold {
            None => Some(1),
            Some(value) => match usize::try_from(*value.get_ref()) {
                Ok(n @ 1..=MAX_THRESHOLD) => Some(n),
                _ => {
                    self.error(
                        value.span(),
                        format!(
                            "threshold must be a whole number from 1 to {MAX_THRESHOLD} (how \
                             many distinct signers a release needs)"
                        ),
                    );
                    None
                }
            },
        };

        let timestamp_authorities = self.names(
            "timestamp authority",
            &raw.timestamp_authorities,
            declared_tsas,
        );
        // No log declared: none required (a policy for signatures without a log).
        let transparency_logs =
            self.names("transparency log", &raw.transparency_logs, declared_logs);

        Some(RepositoryPolicy {
            pattern: pattern?,
            signers: signers?,
            threshold: threshold?,
            promoters: promoters.map(|rule| rule.ok_or(())).transpose().ok()?,
            brakes: brakes.map(|rule| rule.ok_or(())).transpose().ok()?,
            timestamp_authorities,
            transparency_logs,
            declared_at,
        })
    }

    /// A repository's list of declared names (TSAs, logs): all declared ones when absent.
    fn names(
        &mut self,
        what: &str,
        list: &Option<Spanned<Vec<Spanned<String>>>>,
        declared: &[String],
    ) -> Vec<String> {
        let Some(list) = list else {
            return declared.to_vec();
        };
        if list.get_ref().is_empty() {
            self.error(
                list.span(),
                format!(
                    "an empty list would trust no {what}; list at least one, or remove the key \
                     to trust all declared ones"
                ),
            );
            return Vec::new();
        }
        let mut names: Vec<String> = Vec::new();
        for name in list.get_ref() {
            let text = name.get_ref();
            if !declared.contains(text) {
                let known = if declared.is_empty() {
                    "none is declared".to_owned()
                } else {
                    format!("declared: {}", declared.join(", "))
                };
                self.error(name.span(), format!("unknown {what} {text:?} ({known})"));
            } else if names.contains(text) {
                self.error(name.span(), format!("{what} {text:?} is listed twice"));
            } else {
                names.push(text.clone());
            }
        }
        names
    }

    fn transparency_log(
        &mut self,
        table: &Spanned<RawTransparencyLog>,
        root: Option<&TrustedRoot>,
    ) -> Option<TransparencyLog> {
        let raw = table.get_ref();
        let origin = raw.origin.get_ref();
        if origin.trim().is_empty() || origin.contains('\n') {
            self.error(raw.origin.span(), "origin must be one non-empty line");
            return None;
        }
        let freshness = self.freshness(raw)?;
        let log = match &raw.public_key {
            Some(file) => {
                let (resolved, bytes) = self.read(file)?;
                let key = self.parsed(file, &resolved, parse_log_public_key(&bytes))?;
                TransparencyLog::with_key(key, origin)
            }
            None => {
                let Some((_, log)) = root.and_then(|root| {
                    root.transparency_logs
                        .iter()
                        .find(|(_, log)| log.origin == *origin)
                }) else {
                    let given = if root.is_some() {
                        "the trusted root has no log with this origin"
                    } else {
                        "no trusted root is given (--trust / TCVERIFY_TRUST)"
                    };
                    self.error(
                        table.span(),
                        format!(
                            "transparency log {origin:?} has no public_key, and {given}: name \
                             its key file, or give a trusted root that holds the log"
                        ),
                    );
                    return None;
                };
                log.clone()
            }
        };
        let witnesses = self.witnesses(table)?;
        Some(TransparencyLog {
            tiles_url: raw
                .url
                .as_ref()
                .map(|u| u.get_ref().trim_end_matches('/').to_owned()),
            freshness,
            witnesses,
            ..log
        })
    }

    /// A log's witnesses: `witnesses`, `witness_quorum` and `witness` all given, or none.
    /// `Some(None)`: none.
    fn witnesses(&mut self, table: &Spanned<RawTransparencyLog>) -> Option<Option<WitnessPolicy>> {
        let raw = table.get_ref();
        let (witnesses, quorum, mode) = match (&raw.witnesses, &raw.witness_quorum, &raw.witness) {
            (None, None, None) => return Some(None),
            (Some(w), Some(q), Some(m)) => (w, q, m),
            _ => {
                self.error(
                    table.span(),
                    "witnesses, witness_quorum and witness (\"required\" or \"best-effort\") go \
                     together: name the witnesses, how many must cosign, and whether that is \
                     required",
                );
                return None;
            }
        };
        let Some(mode) = FreshnessMode::parse(mode.get_ref()) else {
            self.error(
                mode.span(),
                format!(
                    "witness {:?} is not one of {}",
                    mode.get_ref(),
                    FreshnessMode::NAMES.map(|n| format!("{n:?}")).join(", ")
                ),
            );
            return None;
        };
        let mut keys = Vec::new();
        let mut addresses = Vec::new();
        for witness in witnesses.get_ref() {
            match WitnessKey::parse(witness.key.get_ref()) {
                Ok(key) if key.name == witness.name => {
                    if let Some(url) = &witness.url {
                        if url.get_ref().starts_with("http://")
                            || url.get_ref().starts_with("https://")
                        {
                            addresses.push(Witness {
                                key: key.clone(),
                                url: url.get_ref().trim_end_matches('/').to_owned(),
                            });
                        } else {
                            self.error(
                                url.span(),
                                format!("the url of witness {:?} is not http(s)", witness.name),
                            );
                        }
                    }
                    keys.push(key);
                }
                Ok(key) => self.error(
                    witness.key.span(),
                    format!(
                        "the key of witness {:?} is named {:?}",
                        witness.name, key.name
                    ),
                ),
                Err(e) => self.error(witness.key.span(), e),
            }
        }
        let distinct: BTreeSet<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        if distinct.len() != keys.len() {
            self.error(witnesses.span(), "a witness is named twice");
            return None;
        }
        let quorum_value = *quorum.get_ref();
        if quorum_value == 0 || quorum_value > keys.len() {
            self.error(
                quorum.span(),
                format!(
                    "a witness_quorum of {quorum_value} cannot be met by {} witnesses",
                    keys.len()
                ),
            );
            return None;
        }
        Some(Some(WitnessPolicy {
            keys,
            addresses,
            quorum: quorum_value,
            mode,
        }))
    }

    /// A log's `freshness`; `"required"` needs the `url` it is checked at.
    fn freshness(&mut self, raw: &RawTransparencyLog) -> Option<FreshnessMode> {
        let Some(value) = &raw.freshness else {
            return Some(FreshnessMode::default());
        };
        let Some(mode) = FreshnessMode::parse(value.get_ref()) else {
            self.error(
                value.span(),
                format!(
                    "freshness {:?} is not one of {}",
                    value.get_ref(),
                    FreshnessMode::NAMES.map(|n| format!("{n:?}")).join(", ")
                ),
            );
            return None;
        };
        if mode == FreshnessMode::Required && raw.url.is_none() {
            self.error(
                value.span(),
                "freshness = \"required\" needs the log's url: without its tiles, freshness \
                 can never be checked",
            );
            return None;
        }
        Some(mode)
    }

    fn rule(
        &mut self,
        raw: &Spanned<RawRule>,
        declared_domains: &BTreeSet<String>,
    ) -> Option<IdentityRule> {
        let rule = raw.get_ref();
        let keys: Vec<&str> = [
            ("spiffe_id", rule.spiffe_id.is_some()),
            ("trust_domain", rule.trust_domain.is_some()),
            ("path_prefix", rule.path_prefix.is_some()),
            ("any_of", rule.any_of.is_some()),
            ("all_of", rule.all_of.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
        .collect();
        if keys.len() != 1 {
            let found = if keys.is_empty() {
                "none".to_owned()
            } else {
                keys.join(", ")
            };
            self.error(
                raw.span(),
                format!(
                    "an identity rule has exactly one key: spiffe_id, trust_domain, path_prefix, \
                     any_of or all_of (found {found})"
                ),
            );
            return None;
        }

        if let Some(value) = &rule.spiffe_id {
            let id = self.spiffe_id("spiffe_id", value, value.get_ref())?;
            self.require_declared("spiffe_id", value, id.trust_domain(), declared_domains);
            return Some(IdentityRule::SpiffeId(id));
        }
        if let Some(value) = &rule.trust_domain {
            let td = match TrustDomain::parse(value.get_ref()) {
                Ok(td) => td,
                Err(e) => {
                    self.error(
                        value.span(),
                        format!("trust_domain {:?} {e}", value.get_ref()),
                    );
                    return None;
                }
            };
            self.require_declared("trust_domain", value, td.as_str(), declared_domains);
            return Some(IdentityRule::TrustDomain(td));
        }
        if let Some(value) = &rule.path_prefix {
            // A trailing slash reads naturally for a prefix; it means the same as none.
            let text = value.get_ref();
            let trimmed = match text.strip_suffix('/') {
                Some(t) if !t.ends_with('/') => t,
                _ => text,
            };
            let prefix = self.spiffe_id("path_prefix", value, trimmed)?;
            self.require_declared(
                "path_prefix",
                value,
                prefix.trust_domain(),
                declared_domains,
            );
            return Some(IdentityRule::PathPrefix(prefix));
        }
        let (key, list) = match (&rule.any_of, &rule.all_of) {
            (Some(list), _) => ("any_of", list),
            (_, Some(list)) => ("all_of", list),
            _ => unreachable!("exactly one key is set"),
        };
        if list.get_ref().is_empty() {
            let why = if key == "any_of" {
                "matches no identity"
            } else {
                "would constrain nothing"
            };
            self.error(
                list.span(),
                format!("{key} = [] is refused: an empty {key} {why}; list at least one rule"),
            );
            return None;
        }
        // Every child is checked, so all of their errors are reported at once.
        let children: Vec<Option<IdentityRule>> = list
            .get_ref()
            .iter()
            .map(|child| self.rule(child, declared_domains))
            .collect();
        let children = children.into_iter().collect::<Option<Vec<_>>>()?;
        Some(if key == "any_of" {
            IdentityRule::AnyOf(children)
        } else {
            IdentityRule::AllOf(children)
        })
    }

    fn spiffe_id(&mut self, key: &str, value: &Spanned<String>, text: &str) -> Option<SpiffeId> {
        match SpiffeId::parse(text) {
            Ok(id) => Some(id),
            Err(e) => {
                self.error(
                    value.span(),
                    format!("{key}: {:?} is not a SPIFFE ID: it {e}", value.get_ref()),
                );
                None
            }
        }
    }

    fn require_declared(
        &mut self,
        key: &str,
        value: &Spanned<String>,
        trust_domain: &str,
        declared: &BTreeSet<String>,
    ) {
        if !declared.contains(trust_domain) {
            self.error(
                value.span(),
                format!(
                    "{key} names trust domain {trust_domain}, which has no [trust_domains.\"{trust_domain}\"] \
                     table: no SVID from it could be verified"
                ),
            );
        }
    }

    /// Reads a trust file named by the policy; errors point at the file name in the policy.
    fn read(&mut self, file: &Spanned<String>) -> Option<(PathBuf, Vec<u8>)> {
        if file.get_ref().is_empty() {
            self.error(file.span(), "empty file name");
            return None;
        }
        let resolved = self.base.join(file.get_ref());
        match std::fs::read(&resolved) {
            Ok(bytes) => Some((resolved, bytes)),
            Err(e) => {
                self.error(
                    file.span(),
                    format!("cannot read trust file {}: {e}", resolved.display()),
                );
                None
            }
        }
    }

    fn parsed<T, E: std::fmt::Display>(
        &mut self,
        file: &Spanned<String>,
        resolved: &Path,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.error(
                    file.span(),
                    format!("trust file {} {e}", resolved.display()),
                );
                None
            }
        }
    }
}

/// A trust domain bundle of authorities read from a file.
fn from_files(certificates: Vec<rustls_pki_types::CertificateDer<'static>>) -> TrustDomainBundle {
    TrustDomainBundle {
        authorities: certificates.into_iter().map(Authority::new).collect(),
        workload_api: false,
    }
}

/// The timestamp authorities and logs a trusted root added under its own names.
#[derive(Default)]
struct AddedNames {
    timestamp_authorities: Vec<String>,
    transparency_logs: Vec<String>,
}

/// A trusted root's item that the policy already declares counts once, under the policy's
/// name, and only within both windows: narrows the window of every item of `known` that is
/// the `same` as it, and returns their names and new windows.
fn narrow_known<T>(
    known: &mut [(String, T)],
    same: impl Fn(&T) -> bool,
    window: fn(&mut T) -> &mut Option<TimeRange>,
    root_window: Option<TimeRange>,
) -> Vec<(String, Option<TimeRange>)> {
    known
        .iter_mut()
        .filter(|(_, item)| same(item))
        .map(|(name, item)| {
            let window = window(item);
            *window = narrowest(*window, root_window);
            (name.clone(), *window)
        })
        .collect()
}

/// A window as a summary shows it: its start and end, when it has them.
fn window_text(window: Option<TimeRange>) -> (Option<String>, Option<String>) {
    (
        window.map(|w| w.start.to_string()),
        window.and_then(|w| w.end).map(|t| t.to_string()),
    )
}

fn same_tsa(a: &TsaAuthority, b: &TsaAuthority) -> bool {
    a.leaf == b.leaf && a.intermediates == b.intermediates && a.root == b.root
}

fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}
