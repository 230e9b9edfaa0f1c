//! The build configuration file: `KEY=VALUE` lines, the same syntax as Go's own `go.env`.
//!
//! ```text
//! # comments and blank lines are ignored
//! GOPROXY=https://proxy.corp.example,direct
//! GOSUMDB=off
//! GOFLAGS=-mod=readonly
//! GOEXPERIMENT=            # the GOEXPERIMENT baseline make.bash builds with ("" = none)
//! TCDIST_VERSION_SUFFIX=tc.2   # `go version` says go1.26.8-tc.2
//! TCDIST_NAME=go               # the toolchain name in TOOLCHAIN.json
//! ```
//!
//! Keys in [`GO_ENV_KEYS`] go into the root's `go.env`, after `GOTOOLCHAIN=local`, which is
//! always there and cannot be changed (a tcdist toolchain never switches to another one).
//! Upstream's `go.env` lines stay unless a key overrides them. Unknown keys, repeated keys and
//! values with a newline, carriage return or NUL are refused.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// Settings that may be baked into `go.env`.
pub const GO_ENV_KEYS: &[&str] = &[
    "GOFLAGS",
    "GOINSECURE",
    "GONOPROXY",
    "GONOSUMDB",
    "GOPRIVATE",
    "GOPROXY",
    "GOSUMDB",
    "GOVCS",
];

const DEFAULT_SUFFIX: &str = "tc.1";
const DEFAULT_NAME: &str = "go";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildConfig {
    /// Baked into `go.env`, keyed by variable.
    pub go_env: BTreeMap<String, String>,
    /// The GOEXPERIMENT baseline make.bash runs with ("" for none).
    pub goexperiment: String,
    /// Appended to the upstream version with a `-`: `go1.26.8-<suffix>`.
    pub version_suffix: String,
    pub name: String,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            go_env: BTreeMap::new(),
            goexperiment: String::new(),
            version_suffix: DEFAULT_SUFFIX.to_owned(),
            name: DEFAULT_NAME.to_owned(),
        }
    }
}

impl BuildConfig {
    /// Parses the file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut config = Self::default();
        let mut seen = std::collections::BTreeSet::new();
        for (number, line) in text.split('\n').enumerate() {
            let at = || format!("{origin}:{}", number + 1);
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.contains(['\r', '\0']) {
                bail!("{}: a carriage return or NUL is not allowed", at());
            }
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((key, value)) = trimmed.split_once('=') else {
                bail!("{}: expected KEY=VALUE, got {trimmed:?}", at());
            };
            let (key, value) = (key.trim(), value.trim());
            if !seen.insert(key.to_owned()) {
                bail!("{}: {key} is set twice", at());
            }
            match key {
                "GOTOOLCHAIN" => bail!(
                    "{}: GOTOOLCHAIN cannot be configured: a tcdist toolchain is always GOTOOLCHAIN=local",
                    at()
                ),
                "GOEXPERIMENT" => config.goexperiment = value.to_owned(),
                "TCDIST_VERSION_SUFFIX" => {
                    check_suffix(value).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
                    config.version_suffix = value.to_owned();
                }
                "TCDIST_NAME" => {
                    if value.is_empty()
                        || !value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    {
                        bail!(
                            "{}: TCDIST_NAME must be letters, digits, '-', '_' or '.'",
                            at()
                        );
                    }
                    config.name = value.to_owned();
                }
                k if GO_ENV_KEYS.contains(&k) => {
                    config.go_env.insert(k.to_owned(), value.to_owned());
                }
                k => bail!(
                    "{}: unknown key {k:?} (allowed: {}, GOEXPERIMENT, TCDIST_VERSION_SUFFIX, TCDIST_NAME)",
                    at(),
                    GO_ENV_KEYS.join(", ")
                ),
            }
        }
        Ok(config)
    }

    /// The settings make.bash compiles in: these without the `go.env` defaults.
    pub fn without_go_env(&self) -> BuildConfig {
        BuildConfig {
            go_env: BTreeMap::new(),
            ..self.clone()
        }
    }

    /// A canonical text of every setting, for the build's input digest.
    pub fn canonical(&self) -> String {
        let mut text = format!(
            "name={}\nsuffix={}\ngoexperiment={}\n",
            self.name, self.version_suffix, self.goexperiment
        );
        for (k, v) in &self.go_env {
            text.push_str(&format!("env {k}={v}\n"));
        }
        text
    }
}

/// The suffix becomes part of the toolchain name (`go1.26.8-<suffix>`), which cmd/go also uses
/// as a file name and a module version: keep it to a plain, short token. cmd/go cuts the
/// version at the first `-`, so anything after it is ignored for version comparisons, and it
/// refuses path separators.
fn check_suffix(suffix: &str) -> Result<()> {
    if suffix.is_empty() || suffix.len() > 32 {
        bail!("TCDIST_VERSION_SUFFIX must have 1 to 32 characters");
    }
    if !suffix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.')
    {
        bail!("TCDIST_VERSION_SUFFIX may only have letters, digits and '.'");
    }
    if suffix.starts_with('X') && suffix.contains(':') {
        bail!("TCDIST_VERSION_SUFFIX must not look like a GOEXPERIMENT suffix");
    }
    Ok(())
}

/// The `go.env` text: upstream's lines, with overridden keys replaced in place, then
/// `GOTOOLCHAIN=local` and any new keys at the end.
pub fn render_go_env(upstream: &str, config: &BuildConfig) -> String {
    let mut pending: BTreeMap<&str, &str> = config
        .go_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pending.insert("GOTOOLCHAIN", "local");
    let mut out = String::new();
    for line in upstream.lines() {
        let key = line
            .trim()
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|_| !line.trim_start().starts_with('#'));
        match key.and_then(|k| pending.remove_entry(k)) {
            Some((k, v)) => out.push_str(&format!("{k}={v}\n")),
            None if key.is_some_and(|k| k == "GOTOOLCHAIN" || config.go_env.contains_key(k)) => {
                // A second upstream line for a key already written: drop it.
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !pending.is_empty() {
        out.push_str("\n# Set by tcdist.\n");
        let toolchain = pending.remove("GOTOOLCHAIN");
        for (k, v) in pending {
            out.push_str(&format!("{k}={v}\n"));
        }
        if let Some(v) = toolchain {
            out.push_str(&format!("GOTOOLCHAIN={v}\n"));
        }
    }
    out
}

/// The settings a `go.env` text makes, as cmd/go reads them (last one wins).
pub fn parse_go_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "# defaults\nGOPROXY=https://proxy.golang.org,direct\nGOSUMDB=sum.golang.org\n\n# toolchain\nGOTOOLCHAIN=auto\n";

    #[test]
    fn config_accepts_go_env_keys_comments_and_tcdist_keys() {
        let config = BuildConfig::parse(
            "# corp\n\nGOPROXY = https://proxy.corp,direct\r\nGOFLAGS=-mod=readonly -trimpath\nGOEXPERIMENT=greenteagc\nTCDIST_VERSION_SUFFIX=corp.3\nTCDIST_NAME=corp-go\n",
            "c.env",
        )
        .unwrap();
        assert_eq!(config.go_env["GOPROXY"], "https://proxy.corp,direct");
        assert_eq!(config.go_env["GOFLAGS"], "-mod=readonly -trimpath");
        assert_eq!(config.go_env.len(), 2);
        assert_eq!(config.goexperiment, "greenteagc");
        assert_eq!(config.version_suffix, "corp.3");
        assert_eq!(config.name, "corp-go");
    }

    #[test]
    fn config_empty_file_gives_defaults() {
        assert_eq!(BuildConfig::parse("", "c").unwrap(), BuildConfig::default());
    }

    #[test]
    fn config_rejects_unknown_key() {
        let err = BuildConfig::parse("GOPATH=/x\n", "c.env").unwrap_err();
        assert!(
            err.to_string().contains("c.env:1: unknown key \"GOPATH\""),
            "{err}"
        );
    }

    #[test]
    fn config_rejects_gotoolchain() {
        let err = BuildConfig::parse("GOTOOLCHAIN=auto\n", "c").unwrap_err();
        assert!(err.to_string().contains("GOTOOLCHAIN"), "{err}");
    }

    #[test]
    fn config_rejects_nul_and_carriage_return_in_values() {
        assert!(BuildConfig::parse("GOPROXY=a\0b\n", "c").is_err());
        assert!(BuildConfig::parse("GOPROXY=a\rb\n", "c").is_err());
    }

    #[test]
    fn config_rejects_repeated_key_and_lines_without_equals() {
        assert!(BuildConfig::parse("GOSUMDB=off\nGOSUMDB=on\n", "c").is_err());
        assert!(BuildConfig::parse("GOSUMDB off\n", "c").is_err());
    }

    #[test]
    fn config_rejects_suffix_with_separator_or_dash() {
        for bad in ["a/b", "a-b", "a b", "", "x+y"] {
            let text = format!("TCDIST_VERSION_SUFFIX={bad}\n");
            assert!(BuildConfig::parse(&text, "c").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn go_env_keeps_upstream_lines_and_forces_local_toolchain() {
        let text = render_go_env(UPSTREAM, &BuildConfig::default());
        assert_eq!(
            text,
            "# defaults\nGOPROXY=https://proxy.golang.org,direct\nGOSUMDB=sum.golang.org\n\n# toolchain\nGOTOOLCHAIN=local\n"
        );
    }

    #[test]
    fn go_env_overrides_in_place_and_appends_new_keys() {
        let config = BuildConfig::parse("GOSUMDB=off\nGOPRIVATE=corp.example\n", "c").unwrap();
        let text = render_go_env(UPSTREAM, &config);
        let env = parse_go_env(&text);
        assert_eq!(env["GOSUMDB"], "off");
        assert_eq!(env["GOPROXY"], "https://proxy.golang.org,direct");
        assert_eq!(env["GOPRIVATE"], "corp.example");
        assert_eq!(env["GOTOOLCHAIN"], "local");
        assert_eq!(text.matches("GOSUMDB=").count(), 1);
        assert!(text.find("GOSUMDB=off").unwrap() < text.find("# toolchain").unwrap());
    }

    #[test]
    fn go_env_without_upstream_file_still_has_gotoolchain_local() {
        let env = parse_go_env(&render_go_env("", &BuildConfig::default()));
        assert_eq!(env.len(), 1);
        assert_eq!(env["GOTOOLCHAIN"], "local");
    }
}
