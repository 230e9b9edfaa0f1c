//! The daemon's config (`distd serve --config serve.toml`): where it listens, the SPIFFE ID it
//! serves as, its release lines, where it keeps its job journal, when it re-signs channel
//! heads, and who may do what. Signing settings are not here: they are `distd`'s usual ones
//! (environment or `/etc/tcdist/distd.toml`), which the build jobs inherit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use distd_api::wire::Action;
use jiff::SignedDuration;
use serde::Deserialize;
use tcdist_verify::policy::IdentityRule;
use tcdist_verify::spiffe_id::{SpiffeId, TrustDomain};

use crate::judge::verdict::{self, JudgeConfig};
use crate::line::{self, ReleaseLine};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    ops_listen: Option<SocketAddr>,
    identity: String,
    lines: PathBuf,
    state_dir: PathBuf,
    cache_dir: Option<PathBuf>,
    refresh_every: Option<String>,
    refresh_within: Option<String>,
    stop_grace: Option<String>,
    judge: Option<RawJudge>,
    #[serde(default)]
    grant: Vec<RawGrant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    interval: Option<String>,
    #[serde(default)]
    dry_run: bool,
    alpha: Option<f64>,
    allowed_increase: Option<f64>,
    planning_rate: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    spiffe_id: Option<String>,
    path_prefix: Option<String>,
    lines: Vec<String>,
    actions: Vec<Action>,
}

pub struct ServeConfig {
    /// The API (SPIFFE mTLS).
    pub listen: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics` (plain HTTP, for probes and Prometheus).
    pub ops_listen: Option<SocketAddr>,
    /// The SPIFFE ID the daemon serves as; clients are accepted from its trust domain only.
    pub identity: SpiffeId,
    pub lines_file: PathBuf,
    pub lines: Vec<ReleaseLine>,
    pub state_dir: PathBuf,
    pub cache_dir: Option<PathBuf>,
    pub refresh_every: SignedDuration,
    pub refresh_within: SignedDuration,
    /// How long a build job has to stop after SIGTERM before it is killed.
    pub stop_grace: SignedDuration,
    /// The rollout judge, when the config has a `[judge]` table.
    pub judge: Option<JudgeSettings>,
    pub grants: Grants,
}

/// The `[judge]` table: how often the daemon judges each running rollout, and by which test.
#[derive(Clone, Debug)]
pub struct JudgeSettings {
    /// Between looks (default 1m; from 1s to 1h). Running rollout statements should live a
    /// few intervals: a dead judge then lapses to the current release soon.
    pub interval: SignedDuration,
    /// Judge and record every verdict, sign nothing.
    pub dry_run: bool,
    pub alpha: f64,
    pub allowed_increase: f64,
    pub planning_rate: f64,
}

/// How often the daemon reads its lines' rollouts without a judge (to take outcomes).
pub const DEFAULT_JUDGE_INTERVAL: SignedDuration = SignedDuration::from_mins(1);

impl JudgeSettings {
    /// The verdict settings for a plan of `judged_stages` stages below the whole channel.
    pub fn config(&self, judged_stages: u32) -> JudgeConfig {
        JudgeConfig {
            alpha: self.alpha,
            judged_stages: judged_stages.max(1),
            allowed_increase: self.allowed_increase,
            planning_rate: self.planning_rate,
        }
    }
}

fn check_judge(raw: RawJudge) -> Result<JudgeSettings> {
    let interval = match raw.interval.as_deref() {
        Some(text) => {
            crate::cli::args::parse_duration(text).map_err(|e| anyhow::anyhow!("interval: {e}"))?
        }
        None => DEFAULT_JUDGE_INTERVAL,
    };
    if interval < SignedDuration::from_secs(1) || interval > SignedDuration::from_hours(1) {
        bail!("interval must be between 1s and 1h, not {interval:#}");
    }
    let settings = JudgeSettings {
        interval,
        dry_run: raw.dry_run,
        alpha: raw.alpha.unwrap_or(verdict::DEFAULT_ALPHA),
        allowed_increase: raw
            .allowed_increase
            .unwrap_or(verdict::DEFAULT_ALLOWED_INCREASE),
        planning_rate: raw.planning_rate.unwrap_or(verdict::DEFAULT_PLANNING_RATE),
    };
    settings.config(1).check().map_err(anyhow::Error::msg)?;
    Ok(settings)
}

impl ServeConfig {
    pub fn trust_domain(&self) -> TrustDomain {
        self.identity.to_trust_domain()
    }

    pub fn line(&self, name: &str) -> Option<&ReleaseLine> {
        self.lines.iter().find(|line| line.name == name)
    }
}

/// Reads and checks `path`; relative paths are relative to its directory.
pub fn load(path: &Path) -> Result<ServeConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("{} is not a valid daemon config", path.display()))
}

fn parse(text: &str, base: &Path) -> Result<ServeConfig> {
    let raw: RawConfig = toml::from_str(text)?;
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let identity =
        SpiffeId::parse(&raw.identity).with_context(|| format!("identity {:?}", raw.identity))?;
    let lines_file = resolve(raw.lines);
    let lines = line::load(&lines_file)?;
    let duration = |key: &str, value: Option<String>, default: &str| {
        crate::cli::args::parse_duration(value.as_deref().unwrap_or(default))
            .map_err(|e| anyhow::anyhow!("{key}: {e}"))
    };
    let grants = raw
        .grant
        .into_iter()
        .enumerate()
        .map(|(i, grant)| check_grant(grant, &lines).with_context(|| format!("grant {}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    Ok(ServeConfig {
        listen: raw.listen,
        ops_listen: raw.ops_listen,
        identity,
        lines_file,
        lines,
        state_dir: resolve(raw.state_dir),
        cache_dir: raw.cache_dir.map(resolve),
        refresh_every: duration("refresh_every", raw.refresh_every, "1h")?,
        refresh_within: duration("refresh_within", raw.refresh_within, "2d")?,
        stop_grace: duration("stop_grace", raw.stop_grace, "30s")?,
        judge: raw.judge.map(check_judge).transpose().context("[judge]")?,
        grants: Grants(grants),
    })
}

impl ServeConfig {
    /// The daemon's ledger: every statement it, its jobs and its `ledger` grantees sign.
    pub fn ledger_path(&self) -> PathBuf {
        self.state_dir.join("ledger.jsonl")
    }
}

fn check_grant(grant: RawGrant, lines: &[ReleaseLine]) -> Result<Grant> {
    let who = match (grant.spiffe_id, grant.path_prefix) {
        (Some(id), None) => IdentityRule::SpiffeId(
            SpiffeId::parse(&id).with_context(|| format!("spiffe_id {id:?}"))?,
        ),
        (None, Some(prefix)) => IdentityRule::PathPrefix(
            SpiffeId::parse(&prefix).with_context(|| format!("path_prefix {prefix:?}"))?,
        ),
        _ => bail!("give exactly one of spiffe_id and path_prefix"),
    };
    if grant.actions.is_empty() {
        bail!("actions is empty: a grant that allows nothing is a mistake");
    }
    for name in &grant.lines {
        if name != "*" && !lines.iter().any(|line| &line.name == name) {
            bail!("lines: there is no line {name:?}");
        }
    }
    if grant.lines.is_empty() {
        bail!("lines is empty: name lines, or \"*\" for all");
    }
    Ok(Grant {
        who,
        lines: grant.lines,
        actions: grant.actions,
    })
}

/// Who may do what on which line. Nothing is allowed unless a grant says so.
pub struct Grants(Vec<Grant>);

struct Grant {
    who: IdentityRule,
    lines: Vec<String>,
    actions: Vec<Action>,
}

impl Grants {
    /// `Ok` when a grant lets `caller` do `action` on `line` (`None`: the whole daemon, as
    /// for the catalog, where each line is then filtered); otherwise why not.
    pub fn check(
        &self,
        caller: &SpiffeId,
        action: Action,
        line: Option<&str>,
    ) -> Result<(), String> {
        let mine: Vec<&Grant> = self
            .0
            .iter()
            .filter(|g| g.who.check(caller).is_ok())
            .collect();
        if mine.is_empty() {
            return Err(format!("{caller} has no grant on this daemon"));
        }
        let allowed = mine.iter().any(|grant| {
            grant.actions.contains(&action)
                && line.is_none_or(|line| grant.lines.iter().any(|l| l == "*" || l == line))
        });
        if allowed {
            return Ok(());
        }
        let what: Vec<String> = mine
            .iter()
            .map(|g| {
                let actions: Vec<&str> = g.actions.iter().map(|a| a.as_str()).collect();
                format!("{} on {}", actions.join(", "), g.lines.join(", "))
            })
            .collect();
        Err(format!(
            "{caller} may not {action}{}: its grants allow {}",
            line.map(|l| format!(" line {l:?}")).unwrap_or_default(),
            what.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(grants: &str) -> Result<ServeConfig> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("lines.toml"),
            r#"
[[line]]
name = "go1.26"
repository = "127.0.0.1:5000/toolchains/go"
go_source = "/srv/go"
go_source_digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
patches = "patches"
platforms = ["linux/amd64"]
"#,
        )
        .unwrap();
        let text = format!(
            "listen = \"127.0.0.1:8443\"\nidentity = \"spiffe://td/distd/server\"\n\
             lines = \"lines.toml\"\nstate_dir = \"state\"\n{grants}"
        );
        parse(&text, dir.path())
    }

    fn id(text: &str) -> SpiffeId {
        SpiffeId::parse(text).unwrap()
    }

    const GRANTS: &str = r#"
[[grant]]
spiffe_id = "spiffe://td/release/manager"
lines = ["*"]
actions = ["read", "build", "promote", "yank", "report", "ledger"]

[[grant]]
path_prefix = "spiffe://td/ci"
lines = ["go1.26"]
actions = ["read"]
"#;

    #[test]
    fn grants_allow_per_identity_line_and_action() {
        let config = config(GRANTS).unwrap();
        let grants = &config.grants;
        let manager = id("spiffe://td/release/manager");
        let reader = id("spiffe://td/ci/job");
        for action in Action::ALL {
            assert!(grants.check(&manager, action, Some("go1.26")).is_ok());
        }
        assert!(grants.check(&reader, Action::Read, Some("go1.26")).is_ok());
        assert!(grants.check(&reader, Action::Read, None).is_ok());
        let denied = grants
            .check(&reader, Action::Build, Some("go1.26"))
            .unwrap_err();
        assert!(
            denied.contains("may not build line \"go1.26\": its grants allow read on go1.26"),
            "{denied}"
        );
        let stranger = grants
            .check(&id("spiffe://td/other"), Action::Read, None)
            .unwrap_err();
        assert!(stranger.contains("has no grant"), "{stranger}");
        // Another trust domain with the same path is another identity.
        assert!(
            grants
                .check(
                    &id("spiffe://evil/release/manager"),
                    Action::Build,
                    Some("go1.26")
                )
                .is_err()
        );
    }

    #[test]
    fn bad_grants_are_refused() {
        for (grant, why) in [
            (
                "[[grant]]\nlines = [\"*\"]\nactions = [\"read\"]\n",
                "exactly one of",
            ),
            (
                "[[grant]]\nspiffe_id = \"spiffe://td/a\"\nlines = [\"nope\"]\nactions = [\"read\"]\n",
                "no line \"nope\"",
            ),
            (
                "[[grant]]\nspiffe_id = \"spiffe://td/a\"\nlines = [\"*\"]\nactions = []\n",
                "allows nothing",
            ),
            (
                "[[grant]]\nspiffe_id = \"spiffe://td/a\"\nlines = [\"*\"]\nactions = [\"delete\"]\n",
                "unknown variant",
            ),
        ] {
            let err = format!("{:#}", config(grant).err().unwrap());
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn judge_settings_default_and_are_checked() {
        let judge = config("[judge]\n").unwrap().judge.unwrap();
        assert_eq!(judge.interval, DEFAULT_JUDGE_INTERVAL);
        assert!(!judge.dry_run);
        assert_eq!(judge.config(3).judged_stages, 3);
        assert!(config("").unwrap().judge.is_none());
        for (table, why) in [
            ("[judge]\ninterval = \"0s\"\n", "positive"),
            ("[judge]\ninterval = \"2h\"\n", "between 1s and 1h"),
            ("[judge]\nalpha = 1.5\n", "alpha must be between 0 and 1"),
            ("[judge]\nallowed_increase = 0.0\n", "allowed increase"),
            ("[judge]\ndryrun = true\n", "unknown field"),
        ] {
            let err = format!("{:#}", config(table).err().unwrap());
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn the_shipped_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/distd/serve.toml");
        let config = load(&path).unwrap();
        assert_eq!(config.lines.len(), 1);
    }
}
