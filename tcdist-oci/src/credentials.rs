//! Registry credentials, per registry host: the explicit ones apply only to the host they were
//! given for; every other host gets what the docker config file holds for it (a credential
//! helper from `credHelpers` or `credsStore`, else its `auths` entry), else nothing.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use tcdist_core::error::{Error, Result};
use tcdist_core::text::sanitize;

/// A docker credential helper that does not answer within this is stopped.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from a helper's stdout (its answer) and stderr (for the error message).
const HELPER_OUTPUT_MAX: u64 = 64 << 10;
/// The user name docker uses for an identity (refresh) token.
const IDENTITY_TOKEN_USER: &str = "<token>";

#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (docker's "identity token"), exchanged at the token realm.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Where credentials come from.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `(host, credential)` given on the command line or in the environment.
    explicit: Option<(String, Credential)>,
    docker_config: Option<PathBuf>,
    helper_timeout: Duration,
    /// The `PATH` helpers are looked up in, when not the process's own (tests).
    helper_path: Option<std::ffi::OsString>,
}

impl Credentials {
    /// From the settings: a user name and password need the host they are for.
    pub fn from_settings(
        username: Option<&str>,
        password: Option<&str>,
        host: Option<&str>,
    ) -> Result<Self> {
        let explicit = match (username, password, host) {
            (None, None, _) => None,
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(Error::usage(
                    "registry credentials need both a user name and a password \
                     (TCDIST_REGISTRY_USERNAME, TCDIST_REGISTRY_PASSWORD)",
                ));
            }
            (Some(_), Some(_), None) => {
                return Err(Error::usage_with_hint(
                    "a registry user name and password need the registry they are for",
                    "name it with --registry-credentials-host HOST[:PORT] \
                     (TCDIST_REGISTRY_CREDENTIALS_HOST); they are sent to that registry only",
                ));
            }
            (Some(username), Some(password), Some(host)) => {
                if host.is_empty() || host.contains(['/', '@', ' ']) {
                    return Err(Error::usage_with_hint(
                        format!("invalid registry credentials host {host:?}"),
                        "write HOST or HOST:PORT, without a scheme or path (e.g. 127.0.0.1:5000)",
                    ));
                }
                let credential = Credential::Basic {
                    username: username.to_owned(),
                    password: password.to_owned(),
                };
                Some((host.to_owned(), credential))
            }
        };
        Ok(Self::new(explicit, docker_config_path()))
    }

    pub fn new(explicit: Option<(String, Credential)>, docker_config: Option<PathBuf>) -> Self {
        Self {
            explicit,
            docker_config,
            helper_timeout: HELPER_TIMEOUT,
            helper_path: None,
        }
    }

    #[cfg(test)]
    fn with_helpers(mut self, path: std::ffi::OsString, timeout: Duration) -> Self {
        self.helper_path = Some(path);
        self.helper_timeout = timeout;
        self
    }

    /// The credential for registry `host` (`name[:port]`, matched exactly), or `None` for
    /// anonymous access. Blocking: reads the docker config and may run a credential helper.
    pub fn for_host(&self, host: &str) -> Result<Option<Credential>> {
        if let Some((explicit_host, credential)) = &self.explicit
            && explicit_host.eq_ignore_ascii_case(host)
        {
            return Ok(Some(credential.clone()));
        }
        let Some(path) = &self.docker_config else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::usage(format!(
                    "cannot read docker config {}: {e}",
                    path.display()
                )));
            }
        };
        let config_error =
            |reason: String| Error::usage(format!("docker config {}: {reason}", path.display()));
        let config: DockerConfig = serde_json::from_str(&text)
            .map_err(|e| config_error(format!("not valid JSON: {e}")))?;
        if let Some(helper) = config.helper_for(host) {
            let found = run_helper(helper, host, self).map_err(|reason| {
                Error::usage_with_hint(
                    format!(
                        "credential helper docker-credential-{} (from {}) failed for {host}: \
                         {reason}",
                        sanitize(helper, 64),
                        path.display()
                    ),
                    "check that the helper is installed and on PATH, and that it can answer \
                     `docker-credential-NAME get`",
                )
            })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        config.auths_entry(host).map_err(config_error)
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    cred_helpers: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

impl DockerConfig {
    /// The helper named for `host` in `credHelpers`, else `credsStore`.
    fn helper_for(&self, host: &str) -> Option<&str> {
        matching(&self.cred_helpers, host)
            .and_then(serde_json::Value::as_str)
            .or(self.creds_store.as_deref())
            .filter(|name| !name.is_empty())
    }

    /// The `auths` entry for `host`: `auth` (base64 `user:password`), `username`/`password`,
    /// or `identitytoken`.
    fn auths_entry(&self, host: &str) -> std::result::Result<Option<Credential>, String> {
        let Some(value) = matching(&self.auths, host) else {
            return Ok(None);
        };
        let entry: AuthEntry = serde_json::from_value(value.clone())
            .map_err(|e| format!("auths entry for {host} is not valid: {e}"))?;
        if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(token)));
        }
        if let Some(encoded) = entry.auth.filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| format!("auth for {host} is not base64: {e}"))?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| format!("auth for {host} is not UTF-8"))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| format!("auth for {host} is not user:password"))?;
            return Ok(Some(Credential::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        Ok(match (entry.username, entry.password) {
            (Some(username), Some(password)) if !username.is_empty() => {
                Some(Credential::Basic { username, password })
            }
            _ => None,
        })
    }
}

/// The value whose key names `host` the way docker writes keys (`host`, `https://host`,
/// `http://host`, `https://host/v1/`): scheme and path dropped, host and port compared exactly.
/// A bare `host` key wins over the others.
fn matching<'a>(
    map: &'a serde_json::Map<String, serde_json::Value>,
    host: &str,
) -> Option<&'a serde_json::Value> {
    map.get(host).or_else(|| {
        map.iter()
            .find(|(key, _)| key_host(key).eq_ignore_ascii_case(host))
            .map(|(_, value)| value)
    })
}

fn key_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

#[derive(serde::Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<name> get` with `host` on stdin, as docker does. `Ok(None)` when
/// the helper has no credentials for the host.
fn run_helper(
    name: &str,
    host: &str,
    settings: &Credentials,
) -> std::result::Result<Option<Credential>, String> {
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err("the helper name may hold only letters, digits, '.', '_' and '-'".into());
    }
    let program = format!("docker-credential-{name}");
    let mut command = Command::new(&program);
    if let Some(path) = &settings.helper_path {
        // Also where the program is looked up.
        command.env("PATH", path);
    }
    let mut child = command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input fails below with its own message.
        let _ = stdin.write_all(host.as_bytes());
    }
    let stdout = read_capped_in_background(child.stdout.take());
    let stderr = read_capped_in_background(child.stderr.take());
    let timeout = settings.helper_timeout;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {timeout:?}; stopped"));
            }
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if stdout.len() as u64 > HELPER_OUTPUT_MAX {
        return Err(format!("its answer is over {HELPER_OUTPUT_MAX} bytes"));
    }
    let stdout_text = String::from_utf8_lossy(&stdout);
    if !status.success() {
        if stdout_text
            .to_ascii_lowercase()
            .contains("credentials not found")
        {
            return Ok(None);
        }
        let said = [stdout_text.trim(), String::from_utf8_lossy(&stderr).trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        return Err(format!("{status}: {}", sanitize(&said, 300)));
    }
    let answer: HelperAnswer = serde_json::from_slice(&stdout).map_err(|e| {
        format!("its answer is not the JSON docker expects ({{\"Username\",\"Secret\"}}): {e}")
    })?;
    Ok(match (answer.username.as_str(), answer.secret) {
        (_, secret) if secret.is_empty() => None,
        (IDENTITY_TOKEN_USER, secret) => Some(Credential::IdentityToken(secret)),
        (username, secret) => Some(Credential::Basic {
            username: username.to_owned(),
            password: secret,
        }),
    })
}

/// Reads up to one byte more than [`HELPER_OUTPUT_MAX`] on a thread, so a helper cannot block
/// on a full pipe and a flood is noticed without being kept.
fn read_capped_in_background<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(pipe) = pipe {
            let _ = pipe.take(HELPER_OUTPUT_MAX + 1).read_to_end(&mut bytes);
        }
        bytes
    })
}

#[cfg(test)]
mod tests;
