//! The OCI registry client: connection settings, credentials, retries, and the few operations
//! tcdist needs. HTTP only; nothing here decides trust — callers check every digest.

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{
    BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol,
};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio_util::io::ReaderStream;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::release::{Descriptor, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};

/// Registry connection settings, shared by `distd` and `tcverify`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// PEM file of CA certificates trusted for the registry, in addition to the system roots
    #[arg(long, env = "TCDIST_REGISTRY_CA", value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
    /// Registry user name (otherwise the docker config file's entry for the registry is used)
    #[arg(long, env = "TCDIST_REGISTRY_USERNAME", value_name = "USER")]
    pub registry_username: Option<String>,
    /// Registry password
    #[arg(
        long,
        env = "TCDIST_REGISTRY_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub registry_password: Option<String>,
    /// Talk plain HTTP to the registry; allowed only for loopback registries
    #[arg(long, env = "TCDIST_REGISTRY_PLAIN_HTTP")]
    pub registry_plain_http: bool,
    /// How many times a failed registry request is retried (5xx, resets, timeouts)
    #[arg(
        long,
        env = "TCDIST_REGISTRY_RETRIES",
        value_name = "N",
        default_value_t = 4
    )]
    pub registry_retries: u32,
}

pub type BlobStream = BoxStream<'static, std::io::Result<Bytes>>;

pub struct Registry {
    client: Client,
    host: String,
    auth: RegistryAuth,
    retries: u32,
}

/// A blob body, either from the requested offset or (when the registry ignores `Range`) whole.
pub enum BlobBody {
    FromOffset(BlobStream),
    Whole(BlobStream),
}

impl Registry {
    pub async fn connect(args: &RegistryArgs, host: &str) -> Result<Self> {
        let protocol = if args.registry_plain_http {
            if !is_loopback_host(host) {
                return Err(Error::usage_with_hint(
                    format!("plain HTTP refused for registry {host}: it is not a loopback address"),
                    "use HTTPS (with --registry-ca for a private CA)",
                ));
            }
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let registry_ca = match &args.registry_ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::usage(format!(
                        "cannot read registry CA file {}: {e}",
                        path.display()
                    ))
                })?;
                let certificates = split_pem(&pem);
                if certificates.is_empty() {
                    return Err(Error::usage(format!(
                        "registry CA file {} holds no PEM certificate",
                        path.display()
                    )));
                }
                certificates
            }
            None => Vec::new(),
        };
        // System roots plus the registry's CA; the client's own root loader runs only when
        // no system bundle file is found.
        let (tls_certs_only, extra_root_certificates) = match system_roots() {
            Some(mut roots) => {
                roots.extend(registry_ca);
                (roots, Vec::new())
            }
            None => (Vec::new(), registry_ca),
        };
        let config = ClientConfig {
            protocol,
            tls_certs_only,
            extra_root_certificates,
            // A monolithic PUT streams a blob in one request; chunked PATCHes cost a round trip
            // per chunk and distribution 2.8 buffers them.
            use_monolithic_push: true,
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("tcdist/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        // ring instead of the client's default aws-lc: aws-lc seeds its RNG from CPU jitter
        // on first use, ~50 ms of CPU at every process start. Installing fails harmlessly
        // when a provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(config);
        let auth = credentials(args, host)?;
        client.store_auth_if_needed(host, &auth).await;
        Ok(Self {
            client,
            host: host.to_owned(),
            auth,
            retries: args.registry_retries,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Fetches an index or manifest; returns its bytes and the digest of those bytes.
    pub async fn manifest(&self, reference: &Reference) -> Result<(Bytes, Digest)> {
        let what = format!("manifest {}", reference.whole());
        let (bytes, _) = self
            .retry(&format!("fetching {what}"), || {
                self.client.pull_manifest_raw(
                    reference,
                    &self.auth,
                    &[MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST],
                )
            })
            .await?;
        Ok((bytes.clone(), Digest::of(&bytes)))
    }

    /// Like [`Registry::manifest`], but a missing manifest is `None`.
    pub async fn optional_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<(Bytes, Digest)>> {
        match self.manifest(reference).await {
            Ok(found) => Ok(Some(found)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The referrers of `reference` (which names a digest) of `artifact_type`: the registry's
    /// referrers API, or the referrers tag where the registry has none (the client reads it
    /// again after the API's 404). The client returns an empty list when neither answers, so
    /// callers must treat "none" as "none found", not as proof of absence.
    pub async fn referrers(
        &self,
        reference: &Reference,
        artifact_type: &str,
    ) -> Result<Vec<Descriptor>> {
        let index = self
            .retry(
                &format!("listing referrers of {}", reference.whole()),
                || self.client.pull_referrers(reference, Some(artifact_type)),
            )
            .await?;
        // Re-read the client's index through our own types, which validate digests.
        let bytes = serde_json::to_vec(&index.manifests).map_err(|e| Error::Unavailable {
            operation: format!("listing referrers of {}", reference.whole()),
            attempts: 1,
            detail: e.to_string(),
        })?;
        let listed: Vec<Descriptor> =
            serde_json::from_slice(&bytes).map_err(|e| Error::Unavailable {
                operation: format!("listing referrers of {}", reference.whole()),
                attempts: 1,
                detail: format!("registry sent a bad referrers index: {e}"),
            })?;
        // A registry may ignore the filter (the spec lets it), so it is applied here too.
        Ok(listed
            .into_iter()
            .filter(|d| d.artifact_type.as_deref() == Some(artifact_type))
            .collect())
    }

    /// Whether the registry holds a manifest for `reference`, and its digest.
    pub async fn manifest_digest(&self, reference: &Reference) -> Result<Option<Digest>> {
        let result = self
            .retry(&format!("checking manifest {}", reference.whole()), || {
                self.client.fetch_manifest_digest(reference, &self.auth)
            })
            .await;
        match result {
            Ok(digest) => digest.parse().map(Some).map_err(|e| Error::Unavailable {
                operation: format!("checking manifest {}", reference.whole()),
                attempts: 1,
                detail: format!("registry sent a bad digest: {e}"),
            }),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn blob_exists(&self, reference: &Reference, digest: &Digest) -> Result<bool> {
        let digest = digest.to_string();
        self.retry(&format!("checking blob {digest}"), || {
            self.client.blob_exists(reference, &digest)
        })
        .await
    }

    /// Opens a blob at `offset` (HTTP Range), for resuming an interrupted download.
    pub async fn open_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        offset: u64,
    ) -> Result<BlobBody> {
        let digest = descriptor.digest.to_string();
        let operation = format!("downloading blob {digest}");
        if offset == 0 {
            let sized = self
                .retry(&operation, || {
                    self.client.pull_blob_stream(reference, &digest[..])
                })
                .await?;
            return Ok(BlobBody::FromOffset(without_client_digest_check(
                sized.stream,
            )));
        }
        let response = self
            .retry(&operation, || {
                self.client
                    .pull_blob_stream_partial(reference, &digest[..], offset, None)
            })
            .await?;
        Ok(match response {
            BlobResponse::Partial(sized) => BlobBody::FromOffset(sized.stream),
            BlobResponse::Full(sized) => BlobBody::Whole(without_client_digest_check(sized.stream)),
        })
    }

    /// Streams a file to the registry as the blob `descriptor` names.
    pub async fn push_blob_file(
        &self,
        reference: &Reference,
        path: &Path,
        descriptor: &Descriptor,
    ) -> Result<()> {
        let digest = descriptor.digest.to_string();
        self.retry(&format!("uploading blob {digest}"), || async {
            let file = tokio::fs::File::open(path).await?;
            let stream =
                ReaderStream::with_capacity(file, 256 << 10).map_err(OciDistributionError::from);
            self.client
                .push_blob_stream(reference, stream, &digest, Some(descriptor.size))
                .await
        })
        .await
        .map(drop)
    }

    /// Uploads a small in-memory blob (signatures, configs) unless the registry has it.
    pub async fn push_blob_bytes(&self, reference: &Reference, bytes: &Bytes) -> Result<()> {
        let digest = Digest::of(bytes);
        if self.blob_exists(reference, &digest).await? {
            return Ok(());
        }
        let digest = digest.to_string();
        self.retry(&format!("uploading blob {digest}"), || {
            self.client.push_blob(reference, bytes.clone(), &digest)
        })
        .await
        .map(drop)
    }

    pub async fn push_manifest(
        &self,
        reference: &Reference,
        bytes: &Bytes,
        media_type: &'static str,
    ) -> Result<()> {
        self.retry(&format!("pushing manifest {}", reference.whole()), || {
            self.client.push_manifest_raw(
                reference,
                bytes.clone(),
                http::HeaderValue::from_static(media_type),
            )
        })
        .await
        .map(drop)
    }

    /// Runs `attempt` with bounded exponential backoff on transient failures.
    async fn retry<T, F, Fut>(&self, operation: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        let mut delay = Duration::from_millis(200);
        for attempts in 1.. {
            let err = match attempt().await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            match classify(err, operation, &self.host, attempts) {
                Failure::Transient(detail) if attempts <= self.retries => {
                    tracing_note(operation, attempts, &detail);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Failure::Transient(detail) => {
                    return Err(Error::Unavailable {
                        operation: format!("{operation} from {}", self.host),
                        attempts,
                        detail,
                    });
                }
                Failure::Final(err) => return Err(err),
            }
        }
        unreachable!("the retry loop returns")
    }
}

/// The client checks a whole blob's digest at its end and reports a mismatch as an I/O error
/// (again on every later poll). Callers hash every byte themselves and must report a mismatch
/// as a verification failure (exit 42), not a network error (exit 3), so the client's verdict
/// ends the stream here.
fn without_client_digest_check(stream: BlobStream) -> BlobStream {
    stream
        .scan((), |_, item| {
            let end = matches!(&item, Err(e) if e
                .get_ref()
                .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>()));
            futures::future::ready((!end).then_some(item))
        })
        .boxed()
}

/// The system's CA bundle, one file. The client's default loader also scans the hashed
/// certificate directory (hundreds of files); that cost ~60 ms per process start and dominated
/// a pull of an installed toolchain, so the single bundle file is read here instead.
fn system_roots() -> Option<Vec<Certificate>> {
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(std::path::PathBuf::from),
        );
    candidates
        .filter_map(|path| std::fs::read(path).ok())
        .map(|pem| split_pem(&pem))
        .find(|certificates| !certificates.is_empty())
}

/// Splits a PEM bundle into single certificates (the client converts one PEM block per entry).
fn split_pem(pem: &[u8]) -> Vec<Certificate> {
    const END: &str = "-----END CERTIFICATE-----";
    String::from_utf8_lossy(pem)
        .split_inclusive(END)
        .filter_map(|block| {
            block
                .find("-----BEGIN CERTIFICATE-----")
                .map(|start| &block[start..])
        })
        .filter(|block| block.ends_with(END))
        .map(|block| Certificate {
            encoding: CertificateEncoding::Pem,
            data: block.as_bytes().to_vec(),
        })
        .collect()
}

fn tracing_note(operation: &str, attempt: u32, detail: &str) {
    if std::env::var_os("TCDIST_DEBUG").is_some() {
        eprintln!("retrying {operation} (attempt {attempt} failed: {detail})");
    }
}

enum Failure {
    Transient(String),
    Final(Error),
}

/// Sorts a client error into "try again" or a final error with the right exit code.
fn classify(err: OciDistributionError, operation: &str, host: &str, attempts: u32) -> Failure {
    let final_unavailable = |detail: String| {
        Failure::Final(Error::Unavailable {
            operation: format!("{operation} from {host}"),
            attempts,
            detail,
        })
    };
    match err {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Failure::Final(Error::RegistryAuth {
            registry: host.to_owned(),
            operation: operation.to_owned(),
            detail: err.to_string(),
        }),
        OciDistributionError::RegistryError { ref envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    oci_client::errors::OciErrorCode::Unauthorized
                        | oci_client::errors::OciErrorCode::Denied
                )
            }) =>
        {
            Failure::Final(Error::RegistryAuth {
                registry: host.to_owned(),
                operation: operation.to_owned(),
                detail: err.to_string(),
            })
        }
        OciDistributionError::RegistryError { .. }
        | OciDistributionError::ImageManifestNotFoundError(_) => Failure::Final(Error::NotFound {
            object: operation.to_owned(),
            source_name: host.to_owned(),
            detail: err.to_string(),
        }),
        OciDistributionError::ServerError { code: 404, .. } => Failure::Final(Error::NotFound {
            object: operation.to_owned(),
            source_name: host.to_owned(),
            detail: err.to_string(),
        }),
        OciDistributionError::ServerError { code, .. } if code >= 500 || code == 429 => {
            Failure::Transient(err.to_string())
        }
        OciDistributionError::RequestError(ref e) if e.is_builder() => {
            final_unavailable(error_chain(&err))
        }
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
            Failure::Transient(error_chain(&err))
        }
        other => final_unavailable(error_chain(&other)),
    }
}

/// The error and its causes on one line (reqwest hides the useful part in `source()`).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Credentials: flags/environment first, then the docker config file's `auths` entry.
fn credentials(args: &RegistryArgs, host: &str) -> Result<RegistryAuth> {
    match (&args.registry_username, &args.registry_password) {
        (Some(user), Some(password)) => {
            return Ok(RegistryAuth::Basic(user.clone(), password.clone()));
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::usage(
                "registry credentials need both a user name and a password \
                 (TCDIST_REGISTRY_USERNAME, TCDIST_REGISTRY_PASSWORD)",
            ));
        }
        (None, None) => {}
    }
    let Some(path) = docker_config_path() else {
        return Ok(RegistryAuth::Anonymous);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(e) => {
            return Err(Error::usage(format!(
                "cannot read docker config {}: {e}",
                path.display()
            )));
        }
    };
    docker_config_auth(&text, host)
        .map_err(|reason| Error::usage(format!("docker config {}: {reason}", path.display())))
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// Reads `auths[host].auth` (base64 `user:password`) from a docker config file.
fn docker_config_auth(text: &str, host: &str) -> std::result::Result<RegistryAuth, String> {
    let config: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let entry = config
        .get("auths")
        .and_then(|auths| {
            auths
                .get(host)
                .or_else(|| auths.get(format!("https://{host}").as_str()))
        })
        .and_then(|entry| entry.get("auth"))
        .and_then(|auth| auth.as_str());
    let Some(encoded) = entry else {
        return Ok(RegistryAuth::Anonymous);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("auth for {host} is not base64: {e}"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| format!("auth for {host} is not UTF-8"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| format!("auth for {host} is not user:password"))?;
    Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundles_split_into_single_certificates() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let bundle = format!("# comment\n{one}{one}trailing");
        assert_eq!(split_pem(bundle.as_bytes()).len(), 2);
        assert!(split_pem(b"no certificates here").is_empty());
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for host in ["127.0.0.1:5000", "localhost:80", "[::1]:5000", "127.1.2.3"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "10.0.0.1:5000",
            "registry.example",
            "localhost.example:5000",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn docker_config_auth_is_read_for_the_host() {
        let text = r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYXNzOndvcmQ="}}}"#;
        match docker_config_auth(text, "127.0.0.1:5000").unwrap() {
            RegistryAuth::Basic(user, password) => {
                assert_eq!((user.as_str(), password.as_str()), ("user", "pass:word"))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            docker_config_auth(text, "other:5000").unwrap(),
            RegistryAuth::Anonymous
        ));
        assert!(docker_config_auth(r#"{"auths":{"h":{"auth":"!!"}}}"#, "h").is_err());
    }
}
