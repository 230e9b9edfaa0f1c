//! Which mirrors serve a registry's content, as containerd's `hosts.toml` files say: a
//! `certs.d`-style directory with one `<registry host>/hosts.toml` per origin (and `_default/`
//! for any other), or one `hosts.toml` whose `server` names its origin. Mirrors are transport:
//! whatever they serve is checked against the digests the verified release names, and a mirror
//! that fails is skipped for that object (`source.rs`).
//!
//! ```toml
//! server = "https://registry.example.com"
//!
//! [host."https://mirror.eu.example.com"]
//!   capabilities = ["pull"]            # manifests by digest and blobs (the default)
//!   ca = "/etc/tcdist/mirror-eu-ca.pem"
//!
//! [host."https://mirror.us.example.com"]
//!   capabilities = ["pull", "resolve"] # tags too
//! ```
//!
//! One departure from containerd: a host without `capabilities` only pulls; tags are resolved
//! at the origin unless a host says `resolve`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::reference::RegistryRef;
use crate::registry::{Registry, RegistryArgs};
use tcdist_core::error::{Error, Result};

/// Retries of a failed request to a mirror: few, since the next host can serve the object.
const MIRROR_RETRIES: u32 = 1;

/// The directory name of the hosts file for registries without one of their own.
const DEFAULT_NAMESPACE: &str = "_default";

/// The most hosts one file may list (containerd's own configuration tools allow ten).
const MAX_HOSTS: usize = 16;

/// The mirrors of each origin registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorConfig {
    by_origin: HashMap<String, Vec<MirrorHost>>,
    default: Vec<MirrorHost>,
}

/// One mirror, in the order its hosts file lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorHost {
    /// The URL as the file gives it, for messages: `https://mirror.example.com`.
    pub url: String,
    /// `HOST[:PORT]`, the registry client's host (and whose credentials it may be given).
    pub host: String,
    pub plain_http: bool,
    /// Whether tags are resolved here (`resolve`), or only content named by digest.
    pub resolve: bool,
    /// The CA that signs the mirror's TLS certificate, besides the system roots.
    pub ca: Option<PathBuf>,
}

impl MirrorHost {
    /// A client for this mirror. It gets the registry settings' CA unless the hosts file names
    /// one, and only credentials for its own host (the docker config's entry for it, or the
    /// explicit ones when `--registry-credentials-host` names it): never the origin's.
    pub async fn connect(&self, args: &RegistryArgs) -> Result<Mirror> {
        let args = RegistryArgs {
            registry_ca: self.ca.clone().or_else(|| args.registry_ca.clone()),
            registry_plain_http: self.plain_http,
            registry_retries: args.registry_retries.min(MIRROR_RETRIES),
            ..args.clone()
        };
        Ok(Mirror {
            registry: Arc::new(Registry::connect(&args, &self.host).await?),
            url: self.url.clone(),
            resolve: self.resolve,
        })
    }
}

/// A connected mirror (cheap to clone: the client is shared).
#[derive(Clone)]
pub struct Mirror {
    registry: Arc<Registry>,
    url: String,
    resolve: bool,
}

impl Mirror {
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn resolves_tags(&self) -> bool {
        self.resolve
    }

    /// The origin's reference, on this mirror: the same repository path, so the policy that
    /// applies is the same.
    pub fn rehost(&self, reference: &RegistryRef) -> RegistryRef {
        RegistryRef {
            registry: self.registry.host().to_owned(),
            ..reference.clone()
        }
    }
}

/// A source's mirrors, in order, and the objects they failed to serve.
#[derive(Clone, Default)]
pub struct Mirrors {
    pub(crate) hosts: Arc<[Mirror]>,
    skips: Arc<Mutex<Vec<MirrorSkip>>>,
}

/// A mirror skipped for one object: what it did instead of serving it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MirrorSkip {
    pub mirror: String,
    pub object: String,
    pub reason: String,
}

impl Mirrors {
    pub fn new(hosts: Vec<Mirror>) -> Self {
        Self {
            hosts: hosts.into(),
            skips: Arc::default(),
        }
    }

    pub fn skipped(&self, mirror: &str, object: &str, reason: &Error) {
        self.skips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(MirrorSkip {
                mirror: mirror.to_owned(),
                object: object.to_owned(),
                reason: reason.to_string(),
            });
    }

    pub fn skips(&self) -> Vec<MirrorSkip> {
        self.skips.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    #[serde(default)]
    host: toml::map::Map<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    ca: Option<OneOrMany>,
    #[serde(default)]
    skip_verify: bool,
    #[serde(default)]
    override_path: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl MirrorConfig {
    /// Reads a `certs.d`-style directory or a single hosts file. Anything that does not parse,
    /// an unknown key, or a setting tcdist does not honour is an error naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        let metadata = std::fs::metadata(path)
            .map_err(|e| Error::usage(format!("mirrors {}: {e}", path.display())))?;
        if metadata.is_file() {
            let (server, hosts) = read_hosts_file(path)?;
            let origin = server.ok_or_else(|| {
                Error::usage(format!(
                    "mirrors {}: a single hosts file must name its origin with `server`",
                    path.display()
                ))
            })?;
            return Ok(Self {
                by_origin: HashMap::from([(origin, hosts)]),
                default: Vec::new(),
            });
        }
        let mut config = Self::default();
        let entries = std::fs::read_dir(path)
            .map_err(|e| Error::usage(format!("mirrors {}: {e}", path.display())))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::usage(format!("mirrors {}: {e}", path.display())))?;
            let file = entry.path().join("hosts.toml");
            if !file.is_file() {
                // containerd's directories may hold only certificates; nothing for us there.
                continue;
            }
            let namespace = entry.file_name().to_string_lossy().into_owned();
            let (server, hosts) = read_hosts_file(&file)?;
            if namespace == DEFAULT_NAMESPACE {
                config.default = hosts;
                continue;
            }
            if let Some(server) = server.filter(|server| *server != namespace) {
                return Err(Error::usage(format!(
                    "mirrors {}: `server` names {server}, but the directory is {namespace}'s",
                    file.display()
                )));
            }
            config.by_origin.insert(namespace, hosts);
        }
        Ok(config)
    }

    /// The mirrors of `origin` (`HOST[:PORT]`), in order; none when no file names it and there
    /// is no `_default`.
    pub fn for_origin(&self, origin: &str) -> &[MirrorHost] {
        self.by_origin
            .get(origin)
            .map(Vec::as_slice)
            .unwrap_or(&self.default)
    }

    /// Clients of `origin`'s mirrors, in order.
    pub async fn connect(&self, origin: &str, args: &RegistryArgs) -> Result<Vec<Mirror>> {
        let mut mirrors = Vec::new();
        for host in self.for_origin(origin) {
            mirrors.push(host.connect(args).await?);
        }
        Ok(mirrors)
    }
}

/// A hosts file's origin (`server`'s host) and its hosts, in the file's order.
fn read_hosts_file(path: &Path) -> Result<(Option<String>, Vec<MirrorHost>)> {
    let error = |message: String| Error::usage(format!("mirrors {}: {message}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let file: HostsFile = toml::from_str(&text).map_err(|e| error(e.message().to_owned()))?;
    let server = file
        .server
        .as_deref()
        .map(|url| parse_url(url).map(|(host, _)| host))
        .transpose()
        .map_err(|e| error(format!("server: {e}")))?;
    if file.host.len() > MAX_HOSTS {
        return Err(error(format!("more than {MAX_HOSTS} hosts")));
    }
    let hosts = file
        .host
        .into_iter()
        .map(|(url, value)| {
            let entry: HostEntry = value
                .try_into()
                .map_err(|e: toml::de::Error| error(format!("host {url:?}: {}", e.message())))?;
            mirror_host(&url, entry).map_err(|e| error(format!("host {url:?}: {e}")))
        })
        .collect::<Result<_>>()?;
    Ok((server, hosts))
}

fn mirror_host(url: &str, entry: HostEntry) -> std::result::Result<MirrorHost, String> {
    if entry.skip_verify {
        return Err(
            "skip_verify is not honoured: give the mirror's CA with `ca` (what a mirror serves is \
             checked by digest, but its TLS still guards the credentials sent to it)"
                .into(),
        );
    }
    if entry.override_path {
        return Err(
            "override_path is not supported: a mirror serves the /v2 API at its root".into(),
        );
    }
    let (host, plain_http) = parse_url(url)?;
    let mut resolve = false;
    for capability in entry.capabilities.unwrap_or_else(|| vec!["pull".into()]) {
        match capability.as_str() {
            "resolve" => resolve = true,
            // tcdist never pushes to a mirror.
            "pull" | "push" => {}
            other => {
                return Err(format!(
                    "unknown capability {other:?} (pull, resolve, push)"
                ));
            }
        }
    }
    let ca = match entry.ca {
        None => None,
        Some(OneOrMany::One(path)) => Some(path),
        Some(OneOrMany::Many(paths)) => match <[PathBuf; 1]>::try_from(paths) {
            Ok([path]) => Some(path),
            Err(_) => return Err("`ca` names one file here".into()),
        },
    };
    if let Some(ca) = &ca
        && !ca.is_absolute()
    {
        return Err(format!("ca {} is not an absolute path", ca.display()));
    }
    Ok(MirrorHost {
        url: url.to_owned(),
        host,
        plain_http,
        resolve,
        ca,
    })
}

/// `https://HOST[:PORT]` (or `http://` for a loopback mirror) → (`HOST[:PORT]`, plain HTTP). A
/// bare host is HTTPS, as in containerd.
fn parse_url(url: &str) -> std::result::Result<(String, bool), String> {
    let (rest, plain_http) = match url.split_once("://") {
        Some(("https", rest)) => (rest, false),
        Some(("http", rest)) => (rest, true),
        Some((scheme, _)) => {
            return Err(format!("{url:?}: scheme {scheme:?} is not http or https"));
        }
        None => (url, false),
    };
    let host = rest
        .strip_suffix("/v2")
        .or_else(|| rest.strip_suffix("/v2/"))
        .or_else(|| rest.strip_suffix('/'))
        .unwrap_or(rest);
    if host.is_empty()
        || host.contains(['/', '?', '#', '@'])
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{url:?} is not a registry address (scheme://HOST[:PORT], no path)"
        ));
    }
    Ok((host.to_owned(), plain_http))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn error(path: &Path) -> String {
        MirrorConfig::load(path).unwrap_err().to_string()
    }

    #[test]
    fn directory_of_hosts_files_keeps_each_files_order() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "registry.example.com:5000/hosts.toml",
            r#"
server = "https://registry.example.com:5000"
[host."https://z-mirror.example.com"]
capabilities = ["pull", "resolve"]
ca = "/etc/tcdist/z.pem"
[host."http://127.0.0.1:5001"]
[host."a-mirror.example.com:443"]
capabilities = ["pull"]
ca = ["/etc/tcdist/a.pem"]
"#,
        );
        write(dir.path(), "other.example.com/ca.crt", "not ours");
        let config = MirrorConfig::load(dir.path()).unwrap();
        let hosts = config.for_origin("registry.example.com:5000");
        let names: Vec<_> = hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(
            names,
            [
                "z-mirror.example.com",
                "127.0.0.1:5001",
                "a-mirror.example.com:443"
            ]
        );
        assert!(hosts[0].resolve && !hosts[1].resolve && !hosts[2].resolve);
        assert!(hosts[1].plain_http && !hosts[0].plain_http);
        assert_eq!(hosts[2].ca.as_deref(), Some(Path::new("/etc/tcdist/a.pem")));
        assert!(config.for_origin("other.example.com").is_empty());
    }

    #[test]
    fn default_namespace_serves_registries_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "_default/hosts.toml",
            "[host.\"https://m.example.com\"]\n",
        );
        write(dir.path(), "own.example.com/hosts.toml", "");
        let config = MirrorConfig::load(dir.path()).unwrap();
        assert_eq!(
            config.for_origin("any.example.com")[0].host,
            "m.example.com"
        );
        assert!(config.for_origin("own.example.com").is_empty());
    }

    #[test]
    fn single_file_names_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "hosts.toml",
            "server = \"https://r.example.com\"\n[host.\"https://m.example.com/v2\"]\n",
        );
        let config = MirrorConfig::load(&file).unwrap();
        assert_eq!(config.for_origin("r.example.com")[0].host, "m.example.com");
        let file = write(
            dir.path(),
            "no-server.toml",
            "[host.\"https://m.example.com\"]\n",
        );
        assert!(error(&file).contains("must name its origin with `server`"));
    }

    #[test]
    fn settings_not_honoured_are_refused_naming_file_and_host() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            (
                "[host.\"https://m\"]\nskip_verify = true\n",
                "skip_verify is not honoured",
            ),
            (
                "[host.\"https://m\"]\noverride_path = true\n",
                "override_path is not supported",
            ),
            (
                "[host.\"https://m\"]\ncapabilities = [\"fetch\"]\n",
                "unknown capability \"fetch\"",
            ),
            (
                "[host.\"https://m\"]\nheader = { x = \"y\" }\n",
                "unknown field `header`",
            ),
            ("[host.\"https://m/prefix\"]\n", "is not a registry address"),
            ("[host.\"ftp://m\"]\n", "is not http or https"),
            (
                "[host.\"https://m\"]\nca = [\"/a\", \"/b\"]\n",
                "`ca` names one file",
            ),
            (
                "[host.\"https://m\"]\nca = \"rel.pem\"\n",
                "not an absolute path",
            ),
            ("mirrors = 1\n", "unknown field `mirrors`"),
            ("[host\n", "mirrors "),
        ] {
            let file = write(dir.path(), "r.example.com/hosts.toml", text);
            let message = error(dir.path());
            assert!(message.contains(expected), "{text}: {message}");
            assert!(message.contains(&file.display().to_string()), "{message}");
        }
    }

    #[test]
    fn server_must_match_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.example.com/hosts.toml",
            "server = \"https://elsewhere.example.com\"\n",
        );
        assert!(error(dir.path()).contains("the directory is r.example.com's"));
    }
}
