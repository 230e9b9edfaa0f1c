//! Loading policy files: the format, and that every error points at the right line and column.

use std::path::PathBuf;

use super::*;
use crate::trust::files::tests::{ca, issued};

/// A directory with trust files and a policy written into it.
struct Fixture {
    dir: tempfile::TempDir,
}

const BASE: &str = r#"version = 1

[trust_domains."tcdist.test"]
bundle = "trust/td.pem"

[timestamp_authorities.stack]
chain = "trust/tsa.pem"

[[repository]]
name = "toolchains/go"
signers = { spiffe_id = "spiffe://tcdist.test/distd/signer" }
"#;

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("trust")).unwrap();
        let (td, tsa_root) = (ca("tcdist.test"), ca("tsa root"));
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("trust/td.pem", &td.pem);
        write(
            "trust/tsa.pem",
            &format!("{}{}", issued("tsa", &tsa_root), tsa_root.pem),
        );
        let b64 = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&td.der)
        };
        write(
            "trust/td.json",
            &serde_json::json!({ "keys": [{ "use": "x509-svid", "kty": "EC", "x5c": [b64] }] })
                .to_string(),
        );
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }

    fn load(&self, text: &str) -> Result<Policy, PolicyError> {
        std::fs::write(self.path(), text).unwrap();
        Policy::load(&self.path())
    }

    /// Every diagnostic as `LINE:COLUMN: message`, after checking it names the policy file.
    fn errors(&self, text: &str) -> Vec<String> {
        let error = self.load(text).expect_err("the policy should be refused");
        let prefix = format!("{}:", self.path().display());
        let lines: Vec<String> = error
            .to_string()
            .lines()
            .map(|line| {
                line.strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
                    .to_owned()
            })
            .collect();
        assert_eq!(lines.len(), error.diagnostics().len());
        lines
    }
}

/// `LINE:COLUMN` of the first occurrence of `needle` in `text`.
fn at(text: &str, needle: &str) -> String {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{column}")
}

fn line_of(text: &str, needle: &str) -> usize {
    at(text, needle).split(':').next().unwrap().parse().unwrap()
}

fn assert_one_error(errors: &[String], location: &str, contains: &str) {
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(&format!("{location}: ")) && errors[0].contains(contains),
        "expected {location}: …{contains}…, got {:?}",
        errors[0]
    );
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

#[test]
fn policy_with_every_source_and_rule_kind_loads() {
    let f = Fixture::new();
    let text = r#"# which signers tcverify accepts
version = 1

[trust_domains."tcdist.test"]
bundle = "trust/td.pem"

[trust_domains."other.test"]
spiffe_bundle = "trust/td.json"

[trust_domains."agent.test"]
workload_api = true

[timestamp_authorities.stack]
chain = "trust/tsa.pem"
valid_from = "2026-01-01T00:00:00Z"
valid_until = 2027-01-01T00:00:00Z

[[repository]]
name = "toolchains/go"
signers = { any_of = [
  { spiffe_id = "spiffe://tcdist.test/distd/signer" },
  { all_of = [ { trust_domain = "other.test" }, { path_prefix = "spiffe://other.test/release/" } ] },
] }
timestamp_authorities = ["stack"]

[[repository]]
name = "toolchains/**"
signers = { trust_domain = "agent.test" }
"#;
    let policy = f.load(text).unwrap();
    assert_eq!(policy.repositories().len(), 2);
    assert_eq!(policy.trust().domains.len(), 3);
    let agent = &policy.trust().domains[&TrustDomain::parse("agent.test").unwrap()];
    assert!(agent.workload_api && agent.authorities.is_empty());
    let other = &policy.trust().domains[&TrustDomain::parse("other.test").unwrap()];
    assert!(!other.workload_api && other.authorities.len() == 1);

    let go = policy.for_repository("toolchains/go").unwrap();
    assert_eq!(
        go.signers().to_string(),
        "any_of(spiffe_id=spiffe://tcdist.test/distd/signer, all_of(trust_domain=other.test, \
         path_prefix=spiffe://other.test/release))"
    );
    assert_eq!(go.declared_at().line, line_of(text, "[[repository]]"));
    assert!(
        go.check_signer(&id("spiffe://tcdist.test/distd/signer"))
            .is_ok()
    );
    assert!(
        go.check_signer(&id("spiffe://other.test/release/x"))
            .is_ok()
    );
    assert_eq!(
        go.check_signer(&id("spiffe://other.test/releases"))
            .unwrap_err()
            .len(),
        2
    );

    let tsas = policy.timestamp_authorities(go);
    assert_eq!(tsas.len(), 1);
    let (name, tsa) = tsas[0];
    assert_eq!(name, "stack");
    let window = tsa.valid_for.unwrap();
    assert_eq!(window.start, "2026-01-01T00:00:00Z".parse().unwrap());
    assert_eq!(window.end, Some("2027-01-01T00:00:00Z".parse().unwrap()));
    assert_eq!(tsa.intermediates.len(), 0);
    assert_ne!(tsa.leaf, tsa.root);

    let summary = policy.summary().to_string();
    assert!(
        summary.contains("2 repositories, 3 trust domains, 1 timestamp authority"),
        "{summary}"
    );
    assert!(
        summary.contains("trust domain tcdist.test: bundle trust/td.pem (1 X.509 authority)"),
        "{summary}"
    );
    let line = line_of(text, "[[repository]]\nname = \"toolchains/**");
    assert!(
        summary.contains(&format!(
            "repository toolchains/** (line {line}): signers trust_domain=agent.test"
        )),
        "{summary}"
    );
    assert!(summary.contains("timestamp authority stack: chain trust/tsa.pem (2 certificates)"));
    serde_json::to_string(&policy.summary()).unwrap();
}

#[test]
fn check_policy_file_reports_what_the_policy_declares() {
    let f = Fixture::new();
    std::fs::write(f.path(), BASE).unwrap();
    let summary = check_policy_file(&f.path(), None).unwrap();
    assert_eq!(summary.repositories.len(), 1);
    assert_eq!(summary.repositories[0].name, "toolchains/go");
    assert_eq!(summary.trust_domains.len(), 1);
    assert_eq!(summary.timestamp_authorities[0].certificates, 2);
    assert_eq!(summary.repositories[0].timestamp_authorities, ["stack"]);
}

#[test]
fn first_matching_repository_wins() {
    let f = Fixture::new();
    let text = format!(
        "{BASE}
[[repository]]
name = \"toolchains/*\"
signers = {{ trust_domain = \"tcdist.test\" }}
"
    );
    let policy = f.load(&text).unwrap();
    let go = policy.for_repository("toolchains/go").unwrap();
    assert!(matches!(go.signers(), IdentityRule::SpiffeId(_)));
    let other = policy.for_repository("toolchains/rust").unwrap();
    assert!(matches!(other.signers(), IdentityRule::TrustDomain(_)));
    assert!(policy.for_repository("toolchains/a/b").is_none());
    assert!(policy.for_repository("other/go").is_none());
}

#[test]
fn policy_rejected_if_version_is_not_1() {
    let f = Fixture::new();
    let text = BASE.replace("version = 1", "version = 2");
    let errors = f.errors(&text);
    assert_one_error(&errors, "1:11", "version 2 is not supported");
}

#[test]
fn policy_rejected_if_version_is_missing() {
    let f = Fixture::new();
    let errors = f.errors(&BASE.replace("version = 1\n", ""));
    assert_one_error(&errors, "1:1", "missing `version = 1`");
}

#[test]
fn policy_rejected_if_key_is_unknown() {
    let f = Fixture::new();
    let text = BASE.replace("bundle = \"trust/td.pem\"", "bundel = \"trust/td.pem\"");
    let errors = f.errors(&text);
    assert_one_error(&errors, &at(&text, "bundel"), "unknown field `bundel`");
}

#[test]
fn policy_rejected_if_rule_has_unknown_key_deep_inside() {
    let f = Fixture::new();
    let text = BASE.replace(
        "signers = { spiffe_id = \"spiffe://tcdist.test/distd/signer\" }",
        "signers = { any_of = [\n  { all_of = [ { trust_domain = \"tcdist.test\" },\n    { spiffe_ids = \"x\" } ] },\n] }",
    );
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "spiffe_ids"),
        "unknown field `spiffe_ids`",
    );
}

#[test]
fn policy_rejected_if_syntax_is_broken() {
    let f = Fixture::new();
    let text = BASE.replace("name = \"toolchains/go\"", "name = \"toolchains/go");
    let errors = f.errors(&text);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(&format!("{}:", line_of(&text, "name = "))),
        "{errors:?}"
    );
}

#[test]
fn policy_rejected_if_value_has_wrong_type() {
    let f = Fixture::new();
    let text = BASE.replace("version = 1", "version = \"1\"");
    let errors = f.errors(&text);
    assert_one_error(&errors, "1:11", "invalid type");
}

#[test]
fn policy_rejected_if_spiffe_id_is_invalid_pointing_at_the_value() {
    let f = Fixture::new();
    let text = BASE.replace(
        "spiffe://tcdist.test/distd/signer",
        "spiffe://TCdist.test/distd/signer",
    );
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "\"spiffe://TCdist"),
        "spiffe_id: \"spiffe://TCdist.test/distd/signer\" is not a SPIFFE ID: it has 'T' in the \
         trust domain",
    );
}

#[test]
fn policy_rejected_if_path_prefix_is_invalid() {
    let f = Fixture::new();
    let text = BASE.replace(
        "{ spiffe_id = \"spiffe://tcdist.test/distd/signer\" }",
        "{ path_prefix = \"spiffe://tcdist.test/a/../b\" }",
    );
    let errors = f.errors(&text);
    assert_one_error(&errors, &at(&text, "\"spiffe://tcdist.test/a"), "'..'");
}

#[test]
fn path_prefix_with_trailing_slash_means_the_same_as_without() {
    let f = Fixture::new();
    let text = BASE.replace(
        "{ spiffe_id = \"spiffe://tcdist.test/distd/signer\" }",
        "{ path_prefix = \"spiffe://tcdist.test/release/\" }",
    );
    let policy = f.load(&text).unwrap();
    let rules = policy.for_repository("toolchains/go").unwrap();
    assert_eq!(
        rules.signers(),
        &IdentityRule::PathPrefix(id("spiffe://tcdist.test/release"))
    );
    assert!(
        rules
            .check_signer(&id("spiffe://tcdist.test/release"))
            .is_ok()
    );
    assert!(
        rules
            .check_signer(&id("spiffe://tcdist.test/release/a"))
            .is_ok()
    );
    assert!(
        rules
            .check_signer(&id("spiffe://tcdist.test/releases"))
            .is_err()
    );
}

#[test]
fn policy_rejected_if_any_of_or_all_of_is_empty() {
    let f = Fixture::new();
    for key in ["any_of", "all_of"] {
        let text = BASE.replace(
            "{ spiffe_id = \"spiffe://tcdist.test/distd/signer\" }",
            &format!("{{ {key} = [] }}"),
        );
        let errors = f.errors(&text);
        assert_one_error(&errors, &at(&text, "[]"), &format!("{key} = [] is refused"));
    }
}

#[test]
fn policy_rejected_if_rule_has_two_keys_or_none() {
    let f = Fixture::new();
    let text = BASE.replace(
        "{ spiffe_id = \"spiffe://tcdist.test/distd/signer\" }",
        "{ spiffe_id = \"spiffe://tcdist.test/a\", trust_domain = \"tcdist.test\" }",
    );
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "{ spiffe_id"),
        "exactly one key: spiffe_id, trust_domain, path_prefix, any_of or all_of (found \
         spiffe_id, trust_domain)",
    );
    let text = BASE.replace(
        "{ spiffe_id = \"spiffe://tcdist.test/distd/signer\" }",
        "{ any_of = [ {} ] }",
    );
    let errors = f.errors(&text);
    assert_one_error(&errors, &at(&text, "{} ]"), "(found none)");
}

#[test]
fn policy_rejected_if_rule_names_an_undeclared_trust_domain() {
    let f = Fixture::new();
    let text = BASE.replace(
        "{ spiffe_id = \"spiffe://tcdist.test/distd/signer\" }",
        "{ trust_domain = \"elsewhere.test\" }",
    );
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "\"elsewhere.test\""),
        "names trust domain elsewhere.test, which has no [trust_domains.\"elsewhere.test\"]",
    );
}

#[test]
fn policy_rejected_if_trust_file_is_missing() {
    let f = Fixture::new();
    let text = BASE.replace("trust/td.pem", "trust/missing.pem");
    let errors = f.errors(&text);
    let missing = f.dir.path().join("trust/missing.pem");
    assert_one_error(
        &errors,
        &at(&text, "\"trust/missing.pem\""),
        &format!("cannot read trust file {}", missing.display()),
    );
}

#[test]
fn policy_rejected_if_trust_file_is_not_a_bundle() {
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("trust/empty.pem"), "not pem\n").unwrap();
    let text = BASE.replace("trust/td.pem", "trust/empty.pem");
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "\"trust/empty.pem\""),
        "holds no PEM certificate",
    );
}

#[test]
fn policy_rejected_if_tsa_chain_is_out_of_order() {
    let f = Fixture::new();
    let root = ca("root");
    let chain = format!("{}{}", root.pem, issued("tsa", &root));
    std::fs::write(f.dir.path().join("trust/bad-tsa.pem"), chain).unwrap();
    let text = BASE.replace("trust/tsa.pem", "trust/bad-tsa.pem");
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "\"trust/bad-tsa.pem\""),
        "leaf first, root last",
    );
}

#[test]
fn policy_rejected_if_trust_domain_has_no_source_or_two() {
    let f = Fixture::new();
    let text = BASE.replace(
        "bundle = \"trust/td.pem\"",
        "bundle = \"trust/td.pem\"\nworkload_api = true",
    );
    let errors = f.errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(
            "needs exactly one of bundle, spiffe_bundle or workload_api = true \
                            (found bundle and workload_api)"
        ),
        "{errors:?}"
    );
    let text = BASE.replace("bundle = \"trust/td.pem\"", "");
    let errors = f.errors(&text);
    assert!(errors[0].contains("(found none)"), "{errors:?}");
}

#[test]
fn policy_rejected_if_trust_domain_name_is_invalid() {
    let f = Fixture::new();
    let text = BASE.replace(
        "[trust_domains.\"tcdist.test\"]",
        "[trust_domains.\"TCdist.test\"]",
    );
    let errors = f.errors(&text);
    // The table's name is refused, and the rule's trust domain is then undeclared.
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!(
            "{}: trust domain \"TCdist.test\"",
            at(&text, "\"TCdist")
        )),
        "{errors:?}"
    );
}

#[test]
fn policy_rejected_if_timestamp_authority_is_unknown() {
    let f = Fixture::new();
    let text = format!("{BASE}timestamp_authorities = [\"stack\", \"elsewhere\"]\n");
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "\"elsewhere\""),
        "unknown timestamp authority \"elsewhere\" (declared: stack)",
    );
}

#[test]
fn policy_rejected_if_timestamp_authority_list_is_empty() {
    let f = Fixture::new();
    let text = format!("{BASE}timestamp_authorities = []\n");
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "[]"),
        "would trust no timestamp authority",
    );
}

#[test]
fn policy_rejected_if_tsa_window_is_reversed_or_unparseable() {
    let f = Fixture::new();
    let text = BASE.replace(
        "chain = \"trust/tsa.pem\"",
        "chain = \"trust/tsa.pem\"\nvalid_from = \"2027-01-01T00:00:00Z\"\nvalid_until = \
         \"2026-01-01T00:00:00Z\"",
    );
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "\"2026-01-01"),
        "valid_until is before valid_from",
    );
    let text = BASE.replace(
        "chain = \"trust/tsa.pem\"",
        "chain = \"trust/tsa.pem\"\nvalid_from = 2026-01-01T00:00:00",
    );
    let errors = f.errors(&text);
    assert_one_error(&errors, &at(&text, "2026-01-01"), "with a UTC offset");
}

#[test]
fn repository_name_rejected_if_it_names_a_registry_host() {
    let f = Fixture::new();
    let text = BASE.replace("\"toolchains/go\"", "\"127.0.0.1:5000/toolchains/go\"");
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "\"127.0.0.1"),
        "registries and mirrors are untrusted transport",
    );
}

#[test]
fn repository_rejected_if_declared_twice() {
    let f = Fixture::new();
    let text = format!(
        "{BASE}\n[[repository]]\nname = \"toolchains/go\"\nsigners = {{ trust_domain = \
         \"tcdist.test\" }}\n"
    );
    let errors = f.errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("already declared on line 10"),
        "{errors:?}"
    );
}

#[test]
fn policy_rejected_if_it_has_no_repository() {
    let f = Fixture::new();
    let text = &BASE[..BASE.find("[[repository]]").unwrap()];
    let errors = f.errors(text);
    assert_one_error(&errors, "1:1", "declares no [[repository]]");
}

#[test]
fn reserved_keys_are_refused_for_now() {
    let f = Fixture::new();
    let text = format!("{BASE}ratchet = true\n");
    let errors = f.errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("ratchet is reserved for a later policy format; not accepted yet"));
}

#[test]
fn repository_threshold_and_promoters_are_read() {
    let f = Fixture::new();
    let text = format!(
        "{BASE}threshold = 2\npromoters = {{ spiffe_id = \"spiffe://tcdist.test/distd/promoter\" }}\n"
    );
    let policy = f.load(&text).unwrap();
    let rules = policy.repositories().last().unwrap();
    assert_eq!(rules.threshold(), 2);
    assert_eq!(
        rules.promoters().unwrap().to_string(),
        "spiffe_id=spiffe://tcdist.test/distd/promoter"
    );
    let summary = policy.summary().to_string();
    assert!(
        summary.contains("(2 distinct); promoters spiffe_id=spiffe://tcdist.test/distd/promoter"),
        "{summary}"
    );
    assert_eq!(f.load(BASE).unwrap().repositories()[0].threshold(), 1);
    assert!(
        f.load(BASE).unwrap().repositories()[0]
            .promoters()
            .is_none()
    );
}

#[test]
fn repository_brakes_are_read_and_need_promoters() {
    let f = Fixture::new();
    let text = format!(
        "{BASE}promoters = {{ spiffe_id = \"spiffe://tcdist.test/distd/promoter\" }}\nbrakes = {{ spiffe_id = \"spiffe://tcdist.test/distd/judge\" }}\n"
    );
    let policy = f.load(&text).unwrap();
    let rules = policy.repositories().last().unwrap();
    assert_eq!(
        rules.brakes().unwrap().to_string(),
        "spiffe_id=spiffe://tcdist.test/distd/judge"
    );
    let summary = policy.summary().to_string();
    assert!(
        summary.contains("; brakes spiffe_id=spiffe://tcdist.test/distd/judge"),
        "{summary}"
    );
    let errors = f.errors(&format!(
        "{BASE}brakes = {{ spiffe_id = \"spiffe://tcdist.test/distd/judge\" }}\n"
    ));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("name promoters too"), "{errors:?}");
}

#[test]
fn repository_threshold_out_of_range_is_refused() {
    let f = Fixture::new();
    for value in ["0", "9", "-1"] {
        let text = format!("{BASE}threshold = {value}\n");
        let errors = f.errors(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("threshold must be a whole number from 1 to 8"),
            "{errors:?}"
        );
    }
}

/// An Ed25519 public key as a PEM SubjectPublicKeyInfo.
fn ed25519_public_key_pem() -> String {
    use ring::signature::KeyPair as _;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let mut spki = hex::decode("302a300506032b6570032100").unwrap();
    spki.extend_from_slice(pair.public_key().as_ref());
    pem::encode(&pem::Pem::new("PUBLIC KEY", spki))
}

const LOG: &str = r#"
[transparency_logs.stack]
public_key = "trust/log.pub"
origin = "rekor.tcdist.test"
url = "http://127.0.0.1:1/"
"#;

#[test]
fn transparency_logs_load_and_repositories_require_all_by_default() {
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("trust/log.pub"), ed25519_public_key_pem()).unwrap();
    let policy = f.load(&format!("{BASE}{LOG}")).unwrap();
    let repository = policy.for_repository("toolchains/go").unwrap();
    let logs = policy.transparency_logs(repository);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].1.origin, "rekor.tcdist.test");
    assert_eq!(logs[0].1.tiles_url.as_deref(), Some("http://127.0.0.1:1"));
}

#[test]
fn policy_without_logs_requires_none() {
    let f = Fixture::new();
    let policy = f.load(BASE).unwrap();
    let repository = policy.for_repository("toolchains/go").unwrap();
    assert!(policy.transparency_logs(repository).is_empty());
}

#[test]
fn unknown_transparency_log_name_is_refused() {
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("trust/log.pub"), ed25519_public_key_pem()).unwrap();
    let text = format!("{BASE}transparency_logs = [\"other\"]\n{LOG}");
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "\"other\""),
        "unknown transparency log \"other\"",
    );
}

#[test]
fn transparency_log_key_must_be_a_public_key() {
    let f = Fixture::new();
    let text = format!("{BASE}{LOG}").replace("trust/log.pub", "trust/td.pem");
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "\"trust/td.pem\"\norigin"),
        "PUBLIC KEY",
    );
}

#[test]
fn every_semantic_error_is_reported_in_file_order() {
    let f = Fixture::new();
    let text = r#"version = 1

[trust_domains."tcdist.test"]
bundle = "trust/nope.pem"

[[repository]]
name = "Toolchains/go"
signers = { any_of = [ { spiffe_id = "spiffe://tcdist.test/" }, { all_of = [] } ] }
timestamp_authorities = ["stack"]
"#;
    let errors = f.errors(text);
    let locations: Vec<&str> = errors
        .iter()
        .map(|e| e.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        locations,
        [
            at(text, "\"trust/nope"),
            at(text, "\"Toolchains"),
            at(text, "\"spiffe://tcdist.test/\""),
            at(text, "[] }"),
            at(text, "\"stack\""),
        ],
        "{errors:#?}"
    );
}

#[test]
fn policy_file_that_cannot_be_read_is_an_error() {
    let f = Fixture::new();
    let error = Policy::load(&f.dir.path().join("absent.toml")).unwrap_err();
    assert!(matches!(error, PolicyError::Read { .. }));
    assert!(
        error
            .to_string()
            .contains("absent.toml: cannot read the policy file")
    );
}

/// A policy that names signers only; its trust comes from a trusted root.
const SIGNERS_ONLY: &str = r#"version = 1

[[repository]]
name = "toolchains/go"
signers = { spiffe_id = "spiffe://tcdist.test/distd/signer" }
"#;

impl Fixture {
    /// Writes `trusted_root.json` for trust domain tcdist.test and log `rekor.tcdist.test`.
    fn trusted_root(&self) -> PathBuf {
        self.trusted_root_with_key(&crate::trust::trusted_root::tests::ed25519_spki())
    }

    fn trusted_root_with_key(&self, log_key: &[u8]) -> PathBuf {
        let path = self.dir.path().join("trusted_root.json");
        let value = crate::trust::trusted_root::tests::trusted_root_json(
            "tcdist.test",
            "rekor.tcdist.test",
            log_key,
        );
        std::fs::write(&path, value.to_string()).unwrap();
        path
    }

    fn load_with_root(&self, text: &str, root: &Path) -> Result<Policy, PolicyError> {
        std::fs::write(self.path(), text).unwrap();
        Policy::load_with_trusted_root(&self.path(), Some(root))
    }
}

#[test]
fn trusted_root_supplies_trust_for_a_signers_only_policy() {
    let f = Fixture::new();
    let root = f.trusted_root();
    let policy = f.load_with_root(SIGNERS_ONLY, &root).unwrap();
    let td = &policy.trust().domains[&TrustDomain::parse("tcdist.test").unwrap()];
    assert_eq!(td.authorities.len(), 1);
    let repository = policy.for_repository("toolchains/go").unwrap();
    // Every declared log and TSA applies by default, the trusted root's included.
    let logs = policy.transparency_logs(repository);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].0, "rekor.tcdist.test");
    assert_eq!(policy.timestamp_authorities(repository).len(), 1);

    let summary = policy.summary();
    let text = summary.to_string();
    assert!(
        text.contains("transparency logs [rekor.tcdist.test]; 1 certificate authority"),
        "{text}"
    );
    assert!(
        text.contains("trust domain tcdist.test: trusted root"),
        "{text}"
    );
}

#[test]
fn signers_only_policy_without_trusted_root_is_refused() {
    let f = Fixture::new();
    let errors = f.errors(SIGNERS_ONLY);
    assert_one_error(
        &errors,
        &at(SIGNERS_ONLY, "\"spiffe://tcdist.test/distd/signer\""),
        "has no [trust_domains.\"tcdist.test\"] table",
    );
}

#[test]
fn policy_and_trusted_root_authorities_of_one_trust_domain_are_both_trusted() {
    let f = Fixture::new();
    let root = f.trusted_root();
    let policy = f.load_with_root(BASE, &root).unwrap();
    let td = &policy.trust().domains[&TrustDomain::parse("tcdist.test").unwrap()];
    assert_eq!(td.authorities.len(), 2);
    let summary = policy.summary();
    assert_eq!(summary.trust_domains.len(), 1);
    assert!(summary.trust_domains[0].source.contains("; trusted root"));
}

#[test]
fn log_without_public_key_takes_the_trusted_roots_key_and_adds_its_tiles() {
    let f = Fixture::new();
    let key = crate::trust::trusted_root::tests::ed25519_spki();
    let root = f.trusted_root_with_key(&key);
    let text = format!(
        "{SIGNERS_ONLY}\n[transparency_logs.stack]\norigin = \"rekor.tcdist.test\"\nurl = \"http://127.0.0.1:1\"\n"
    );
    let policy = f.load_with_root(&text, &root).unwrap();
    let repository = policy.for_repository("toolchains/go").unwrap();
    // One log, under the policy's name, with the tiles the policy gives.
    let logs = policy.transparency_logs(repository);
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].0, "stack");
    assert_eq!(logs[0].1.public_key, key);
    assert_eq!(logs[0].1.tiles_url.as_deref(), Some("http://127.0.0.1:1"));

    let without_root =
        format!("{BASE}\n[transparency_logs.stack]\norigin = \"rekor.tcdist.test\"\n");
    let errors = f.errors(&without_root);
    assert_one_error(
        &errors,
        &at(&without_root, "[transparency_logs.stack]"),
        "has no public_key, and no trusted root is given",
    );
}

#[test]
fn log_without_public_key_needs_the_origin_in_the_trusted_root() {
    let f = Fixture::new();
    let root = f.trusted_root();
    let text = format!("{SIGNERS_ONLY}\n[transparency_logs.stack]\norigin = \"elsewhere\"\n");
    let error = f.load_with_root(&text, &root).unwrap_err().to_string();
    assert!(
        error.contains("has no public_key, and the trusted root has no log with this origin"),
        "{error}"
    );
}

#[test]
fn another_authority_under_a_name_the_policy_uses_is_refused() {
    let f = Fixture::new();
    let root = f.trusted_root();
    let text = BASE.replace(
        "timestamp_authorities.stack",
        "timestamp_authorities.\"stack tsa\"",
    );
    let error = f.load_with_root(&text, &root).unwrap_err().to_string();
    assert!(
        error.contains("has another timestamp authority named \"stack tsa\""),
        "{error}"
    );
}

#[test]
fn trusted_root_that_does_not_parse_is_refused_naming_the_file() {
    let f = Fixture::new();
    let root = f.dir.path().join("trusted_root.json");
    std::fs::write(&root, "{}").unwrap();
    let error = f.load_with_root(SIGNERS_ONLY, &root).unwrap_err();
    assert!(matches!(error, PolicyError::TrustedRoot { .. }));
    assert!(
        error
            .to_string()
            .contains("trusted_root.json: not a usable trusted root")
    );
    let absent = f.dir.path().join("absent.json");
    let error = f.load_with_root(SIGNERS_ONLY, &absent).unwrap_err();
    assert!(matches!(error, PolicyError::ReadTrustedRoot { .. }));
}

#[test]
fn material_in_both_counts_once_under_the_policys_name() {
    use base64::Engine as _;
    let f = Fixture::new();
    let root = f.trusted_root();
    // The policy's TSA chain file holds the trusted root's TSA chain.
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&root).unwrap()).unwrap();
    let chain: String = value["timestampAuthorities"][0]["certChain"]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let der = base64::engine::general_purpose::STANDARD
                .decode(c["rawBytes"].as_str().unwrap())
                .unwrap();
            pem::encode(&pem::Pem::new("CERTIFICATE", der))
        })
        .collect();
    std::fs::write(f.dir.path().join("trust/root-tsa.pem"), chain).unwrap();
    let text = BASE.replace("trust/tsa.pem", "trust/root-tsa.pem");
    let policy = f.load_with_root(&text, &root).unwrap();
    let repository = policy.for_repository("toolchains/go").unwrap();
    let names: Vec<&str> = policy
        .timestamp_authorities(repository)
        .iter()
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(names, ["stack"]);
    assert_eq!(policy.summary().timestamp_authorities.len(), 1);
}

#[test]
fn max_svid_lifetime_defaults_to_one_hour_and_takes_durations() {
    let f = Fixture::new();
    let policy = f.load(BASE).unwrap();
    assert_eq!(
        policy.max_svid_lifetime(),
        jiff::SignedDuration::from_hours(1)
    );
    assert!(policy.summary().to_string().contains("at most 1h"));
    for (text, minutes) in [("5m", 5), ("PT2H", 120), ("1h 30m", 90)] {
        let policy = f
            .load(&BASE.replace(
                "version = 1\n",
                &format!("version = 1\nmax_svid_lifetime = \"{text}\"\n"),
            ))
            .unwrap();
        assert_eq!(
            policy.max_svid_lifetime(),
            jiff::SignedDuration::from_mins(minutes),
            "{text}"
        );
    }
}

#[test]
fn max_verification_age_defaults_to_five_minutes_and_takes_durations() {
    let f = Fixture::new();
    let policy = f.load(BASE).unwrap();
    assert_eq!(
        policy.max_verification_age(),
        jiff::SignedDuration::from_mins(5)
    );
    assert!(
        policy
            .summary()
            .to_string()
            .contains("reused for at most 5m")
    );
    let policy = f
        .load(&BASE.replace(
            "version = 1\n",
            "version = 1\nmax_verification_age = \"30s\"\n",
        ))
        .unwrap();
    assert_eq!(
        policy.max_verification_age(),
        jiff::SignedDuration::from_secs(30)
    );
    let err = f
        .load(&BASE.replace(
            "version = 1\n",
            "version = 1\nmax_verification_age = \"-1m\"\n",
        ))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("max_verification_age must be a positive duration"),
        "{err}"
    );
}

#[test]
fn max_svid_lifetime_rejected_if_not_a_positive_duration() {
    let f = Fixture::new();
    for value in ["\"0s\"", "\"-5m\"", "\"an hour\"", "3600"] {
        let text = BASE.replace(
            "version = 1\n",
            &format!("version = 1\nmax_svid_lifetime = {value}\n"),
        );
        let errors = f.errors(&text);
        assert_eq!(errors.len(), 1, "{value}: {errors:#?}");
        assert!(
            errors[0].starts_with(&at(&text, value)),
            "{value}: {errors:#?}"
        );
    }
}

#[test]
fn log_freshness_defaults_to_best_effort_and_may_be_required() {
    use crate::trust::tlog::FreshnessMode;
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("trust/log.pub"), ed25519_public_key_pem()).unwrap();
    let freshness = |policy: &Policy| policy.trust().transparency_log("stack").unwrap().freshness;
    let policy = f.load(&format!("{BASE}{LOG}")).unwrap();
    assert_eq!(freshness(&policy), FreshnessMode::BestEffort);
    let required = format!("{BASE}{LOG}freshness = \"required\"\n");
    assert_eq!(
        freshness(&f.load(&required).unwrap()),
        FreshnessMode::Required
    );
}

#[test]
fn log_freshness_rejected_if_unknown_or_required_without_url() {
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("trust/log.pub"), ed25519_public_key_pem()).unwrap();
    let unknown = format!("{BASE}{LOG}freshness = \"sometimes\"\n");
    assert_one_error(
        &f.errors(&unknown),
        &at(&unknown, "\"sometimes\""),
        "freshness \"sometimes\" is not one of \"best-effort\", \"required\"",
    );
    let without_url = format!("{BASE}{LOG}freshness = \"required\"\n")
        .replace("url = \"http://127.0.0.1:1/\"\n", "");
    assert_one_error(
        &f.errors(&without_url),
        &at(&without_url, "\"required\""),
        "needs the log's url",
    );
}

impl Fixture {
    /// The trusted root of [`Fixture::trusted_root`], changed by `edit`.
    fn edited_trusted_root(&self, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
        let path = self.trusted_root();
        let mut value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut value);
        std::fs::write(&path, value.to_string()).unwrap();
        path
    }

    /// The DER certificates of a PEM file in the fixture, base64 as trusted roots hold them.
    fn raw_bytes(&self, file: &str) -> Vec<serde_json::Value> {
        use base64::Engine as _;
        pem::parse_many(std::fs::read(self.dir.path().join(file)).unwrap())
            .unwrap()
            .iter()
            .map(|block| {
                serde_json::json!({
                    "rawBytes": base64::engine::general_purpose::STANDARD.encode(block.contents())
                })
            })
            .collect()
    }
}

fn window(start: &str, end: &str) -> sigstore_types::TimeRange {
    sigstore_types::TimeRange::new(start.parse().unwrap(), Some(end.parse().unwrap()))
}

#[test]
fn narrowest_valid_for_wins_when_ca_from_two_sources() {
    let f = Fixture::new();
    // The trusted root holds the policy's own CA, trusted only in the first half of 2026.
    let certificates = f.raw_bytes("trust/td.pem");
    let root = f.edited_trusted_root(|root| {
        let ca = &mut root["certificateAuthorities"][0];
        ca["certChain"]["certificates"] = certificates.into();
        ca["validFor"] =
            serde_json::json!({ "start": "2026-01-01T00:00:00Z", "end": "2026-06-01T00:00:00Z" });
    });
    let policy = f.load_with_root(BASE, &root).unwrap();
    let td = &policy.trust().domains[&TrustDomain::parse("tcdist.test").unwrap()];
    assert_eq!(td.authorities.len(), 1, "the CA counts once");
    let authority = &td.authorities[0];
    assert_eq!(
        authority.valid_for,
        Some(window("2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z"))
    );
    assert!(authority.trusted_at("2026-03-01T00:00:00Z".parse().unwrap()));
    assert!(!authority.trusted_at("2026-07-01T00:00:00Z".parse().unwrap()));
}

#[test]
fn narrowest_valid_for_wins_when_tsa_from_two_sources() {
    let f = Fixture::new();
    let chain = f.raw_bytes("trust/tsa.pem");
    let root = f.edited_trusted_root(|root| {
        let tsa = &mut root["timestampAuthorities"][0];
        tsa["certChain"]["certificates"] = chain.into();
        tsa["validFor"] =
            serde_json::json!({ "start": "2026-01-01T00:00:00Z", "end": "2028-01-01T00:00:00Z" });
    });
    let text = BASE.replace(
        "chain = \"trust/tsa.pem\"\n",
        "chain = \"trust/tsa.pem\"\nvalid_from = \"2025-01-01T00:00:00Z\"\nvalid_until = \"2027-01-01T00:00:00Z\"\n",
    );
    let policy = f.load_with_root(&text, &root).unwrap();
    let repository = policy.for_repository("toolchains/go").unwrap();
    let tsas = policy.timestamp_authorities(repository);
    assert_eq!(tsas.len(), 1, "the TSA counts once");
    assert_eq!(tsas[0].0, "stack");
    assert_eq!(
        tsas[0].1.valid_for,
        Some(window("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"))
    );
    let summary = &policy.summary().timestamp_authorities[0];
    assert_eq!(summary.valid_from.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(summary.valid_until.as_deref(), Some("2027-01-01T00:00:00Z"));
}

#[test]
fn narrowest_valid_for_wins_when_log_key_from_two_sources() {
    let f = Fixture::new();
    let key = crate::trust::trusted_root::tests::ed25519_spki();
    std::fs::write(
        f.dir.path().join("trust/log.pub"),
        pem::encode(&pem::Pem::new("PUBLIC KEY", key.clone())),
    )
    .unwrap();
    let root = f.trusted_root_with_key(&key);
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&root).unwrap()).unwrap();
    value["tlogs"][0]["publicKey"]["validFor"] =
        serde_json::json!({ "start": "2026-02-01T00:00:00Z" });
    std::fs::write(&root, value.to_string()).unwrap();
    let policy = f.load_with_root(&format!("{BASE}{LOG}"), &root).unwrap();
    let repository = policy.for_repository("toolchains/go").unwrap();
    let logs = policy.transparency_logs(repository);
    assert_eq!(logs.len(), 1, "the log counts once: {logs:?}");
    assert_eq!(logs[0].0, "stack");
    let valid_for = logs[0].1.valid_for.expect("the trusted root's window");
    assert_eq!(valid_for.start, "2026-02-01T00:00:00Z".parse().unwrap());
}

/// A C2SP cosignature/v1 verifier key for witness `name`.
fn witness_vkey(name: &str) -> String {
    use base64::Engine as _;
    use ring::signature::KeyPair as _;
    use sha2::Digest as _;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let mut typed = vec![0x04];
    typed.extend_from_slice(pair.public_key().as_ref());
    let hint = sha2::Sha256::digest([name.as_bytes(), b"\n", &typed].concat());
    format!(
        "{name}+{}+{}",
        hex::encode(&hint[..4]),
        base64::engine::general_purpose::STANDARD.encode(&typed)
    )
}

fn log_with_witnesses(second_url: &str) -> String {
    format!(
        "{LOG}witness = \"required\"\nwitness_quorum = 2\nwitnesses = [\n\
         {{ name = \"w1.test\", key = \"{}\", url = \"http://127.0.0.1:2/\" }},\n\
         {{ name = \"w2.test\", key = \"{}\"{second_url} }},\n]\n",
        witness_vkey("w1.test"),
        witness_vkey("w2.test")
    )
}

#[test]
fn witnesses_load_with_the_addresses_the_policy_gives() {
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("trust/log.pub"), ed25519_public_key_pem()).unwrap();
    let policy = f
        .load(&format!("{BASE}{}", log_with_witnesses("")))
        .unwrap();
    let repository = policy.for_repository("toolchains/go").unwrap();
    let log = policy.transparency_logs(repository)[0].1;
    let witnesses = log.witnesses.as_ref().unwrap();
    assert_eq!((witnesses.keys.len(), witnesses.quorum), (2, 2));
    let addresses: Vec<_> = witnesses
        .addresses
        .iter()
        .map(|w| (w.key.name.as_str(), w.url.as_str()))
        .collect();
    assert_eq!(addresses, [("w1.test", "http://127.0.0.1:2")]);
    // One address for a quorum of two: the current checkpoint cannot be cosigned.
    let err = log.witness_client().err().unwrap();
    assert!(
        err.contains("the url of 1 of the log's witnesses, fewer than its quorum of 2"),
        "{err}"
    );
}

#[test]
fn witness_url_must_be_http() {
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("trust/log.pub"), ed25519_public_key_pem()).unwrap();
    let text = format!(
        "{BASE}{}",
        log_with_witnesses(", url = \"file:///etc/passwd\"")
    );
    let errors = f.errors(&text);
    assert_one_error(
        &errors,
        &at(&text, "\"file:///etc/passwd\""),
        "the url of witness \"w2.test\" is not http(s)",
    );
}
