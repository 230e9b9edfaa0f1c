//! The OCI registry client: connection settings, retries, and the few operations tcdist needs
//! (manifests, referrers, blob streams, pushes). Every body is read under a cap, and credentials
//! go only where [`crate::credentials`] and `auth` allow. HTTP only; nothing here decides
//! trust — callers check every digest.

mod auth;
mod http;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use oci_client::Reference;
use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RANGE,
};
use reqwest::{Method, Response, StatusCode};
use tokio_util::io::ReaderStream;

use crate::credentials::Credentials;
use crate::release::{Descriptor, MAX_DOCUMENT_BYTES, MEDIA_TYPE_INDEX};
use auth::{Answer, Authenticator};
use http::{AttemptError, BodyError, BodyMaker, Http, Request, read_capped, status_error};
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Rejection, Result};
use tcdist_core::text::sanitize;

/// Registry connection settings, shared by `distd` and `tcverify`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// PEM file of CA certificates trusted for the registry, in addition to the system roots
    #[arg(long, env = "TCDIST_REGISTRY_CA", value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
    /// The registry (HOST[:PORT]) the user name and password are for; they are sent to no other
    #[arg(
        long,
        env = "TCDIST_REGISTRY_CREDENTIALS_HOST",
        value_name = "HOST[:PORT]"
    )]
    pub registry_credentials_host: Option<String>,
    /// Registry user name, for --registry-credentials-host only (every other registry gets the
    /// docker config file's credentials for it, or none)
    #[arg(long, env = "TCDIST_REGISTRY_USERNAME", value_name = "USER")]
    pub registry_username: Option<String>,
    /// Registry password, for --registry-credentials-host only
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
    http: Http,
    /// Boxed: its caches and locks would make every value holding a client large.
    auth: Box<Authenticator>,
    host: String,
    retries: u32,
}

/// A blob body, either from the requested offset or (when the registry ignores `Range`) whole.
pub enum BlobBody {
    FromOffset(BlobStream),
    Whole(BlobStream),
}

/// What a request does in its repository, which decides the token scope it needs.
#[derive(Clone, Copy)]
enum Access {
    Pull,
    Push,
}

impl Registry {
    /// A client for registry `host`. Nothing is sent until the first operation; credentials are
    /// looked up at the registry's first challenge.
    pub async fn connect(args: &RegistryArgs, host: &str) -> Result<Self> {
        let credentials = Credentials::from_settings(
            args.registry_username.as_deref(),
            args.registry_password.as_deref(),
            args.registry_credentials_host.as_deref(),
        )?;
        Self::with_credentials(args, host, credentials)
    }

    fn with_credentials(args: &RegistryArgs, host: &str, credentials: Credentials) -> Result<Self> {
        Ok(Self {
            http: Http::new(host, args.registry_plain_http, args.registry_ca.as_deref())?,
            auth: Box::new(Authenticator::new(host, credentials)),
            host: host.to_owned(),
            retries: args.registry_retries,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Fetches an index or manifest (at most [`MAX_DOCUMENT_BYTES`]); returns its bytes and the
    /// digest of those bytes.
    pub async fn manifest(&self, reference: &Reference) -> Result<(Bytes, Digest)> {
        let what = format!("manifest {}", reference.whole());
        let bytes = self
            .read_manifest(reference, MAX_DOCUMENT_BYTES, over_document_limit(&what))
            .await?;
        let digest = Digest::of(&bytes);
        Ok((bytes, digest))
    }

    /// The manifest `descriptor` names, read no further than its size: a longer body is a size
    /// mismatch of `what`. The caller checks the digest.
    pub async fn document(
        &self,
        reference: &Reference,
        what: &str,
        descriptor: &Descriptor,
    ) -> Result<Bytes> {
        self.read_manifest(reference, descriptor.size, |received| {
            Rejection::SizeMismatch {
                object: what.to_owned(),
                expected: descriptor.size,
                actual: received,
            }
        })
        .await
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

    /// The referrers of `reference` (which names a digest) of `artifact_type`, from the
    /// registry's referrers API. A registry without the API (404) lists none, so callers must
    /// treat "none" as "none found", not as proof of absence.
    pub async fn referrers(
        &self,
        reference: &Reference,
        artifact_type: &str,
    ) -> Result<Vec<Descriptor>> {
        #[derive(serde::Deserialize)]
        struct Listed {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let what = format!("referrers list of {}", reference.whole());
        let digest = reference
            .digest()
            .ok_or_else(|| Error::usage(format!("{what}: the reference names no digest")))?;
        let mut url = self.repository_url(reference, &format!("referrers/{digest}"))?;
        url.query_pairs_mut()
            .append_pair("artifactType", artifact_type);
        let Some(bytes) = self
            .listing(reference, url, accept(MEDIA_TYPE_INDEX), &what)
            .await?
        else {
            return Ok(Vec::new());
        };
        let listed: Listed = serde_json::from_slice(&bytes)
            .map_err(|e| Rejection::malformed(&what, format!("not a valid index: {e}")))?;
        // A registry may ignore the filter (the spec lets it), so it is applied here too.
        Ok(listed
            .manifests
            .into_iter()
            .filter(|d| d.artifact_type.as_deref() == Some(artifact_type))
            .collect())
    }

    /// The repository's tags (the first page the registry gives: at most 1000). A repository
    /// the registry does not know has none.
    pub async fn tags(&self, reference: &Reference) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Listed {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let what = format!("tag list of {}", reference.repository());
        let mut url = self.repository_url(reference, "tags/list")?;
        url.query_pairs_mut().append_pair("n", "1000");
        let Some(bytes) = self
            .listing(reference, url, HeaderMap::new(), &what)
            .await?
        else {
            return Ok(Vec::new());
        };
        let listed: Listed = serde_json::from_slice(&bytes)
            .map_err(|e| Rejection::malformed(&what, format!("not a valid tag list: {e}")))?;
        Ok(listed.tags.unwrap_or_default())
    }

    /// A listing the registry serves for `reference`'s repository (referrers, tags), capped
    /// like a document; `None` when the registry answers 404 (no such repository or API).
    async fn listing(
        &self,
        reference: &Reference,
        url: reqwest::Url,
        headers: HeaderMap,
        what: &str,
    ) -> Result<Option<Bytes>> {
        let request = Request {
            method: Method::GET,
            url,
            headers,
            body: None,
        };
        let scope = scope(reference, Access::Pull);
        let fetched = self
            .retry(&format!("listing the {what}"), || async {
                let response = self.send_ok(&request, &scope).await?;
                read_capped(response, MAX_DOCUMENT_BYTES)
                    .await
                    .map_err(|e| over_limit(e, over_document_limit(what)))
            })
            .await;
        match fetched {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the registry holds a manifest for `reference`, and its digest.
    pub async fn manifest_digest(&self, reference: &Reference) -> Result<Option<Digest>> {
        let operation = format!("checking manifest {}", reference.whole());
        let request = Request {
            method: Method::HEAD,
            url: self.manifest_url(reference)?,
            headers: accept_manifests(),
            body: None,
        };
        let scope = scope(reference, Access::Pull);
        let header = self
            .retry(&operation, || async {
                let response = self.send_ok(&request, &scope).await?;
                Ok(response
                    .headers()
                    .get("docker-content-digest")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()))
            })
            .await;
        match header {
            Ok(Some(digest)) => digest.parse().map(Some).map_err(|e| Error::Unavailable {
                operation: format!("{operation} at {}", self.host),
                attempts: 1,
                detail: format!(
                    "the registry sent a bad digest {}: {e}",
                    sanitize(&digest, 100)
                ),
            }),
            // Without the header, the digest is that of the manifest's bytes.
            Ok(None) => Ok(self.optional_manifest(reference).await?.map(|(_, d)| d)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn blob_exists(&self, reference: &Reference, digest: &Digest) -> Result<bool> {
        let request = Request {
            method: Method::HEAD,
            url: self.repository_url(reference, &format!("blobs/{digest}"))?,
            headers: HeaderMap::new(),
            body: None,
        };
        let scope = scope(reference, Access::Pull);
        let found = self
            .retry(&format!("checking blob {digest}"), || async {
                self.send_ok(&request, &scope).await.map(drop)
            })
            .await;
        match found {
            Ok(()) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Opens a blob at `offset` (HTTP Range), for resuming an interrupted download. Redirects
    /// (to the registry's storage) are followed without the registry's credentials.
    pub async fn open_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        offset: u64,
    ) -> Result<BlobBody> {
        let digest = &descriptor.digest;
        let operation = format!("downloading blob {digest}");
        let mut headers = HeaderMap::new();
        if offset > 0 {
            let range = HeaderValue::try_from(format!("bytes={offset}-"))
                .map_err(|e| Error::usage(format!("{operation}: {e}")))?;
            headers.insert(RANGE, range);
        }
        let request = Request {
            method: Method::GET,
            url: self.repository_url(reference, &format!("blobs/{digest}"))?,
            headers,
            body: None,
        };
        let scope = scope(reference, Access::Pull);
        let response = self
            .retry(&operation, || self.send_ok(&request, &scope))
            .await?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {
                let range = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                if !range.starts_with(&format!("bytes {offset}-")) {
                    return Err(Error::Unavailable {
                        operation: format!("{operation} from {}", self.host),
                        attempts: 1,
                        detail: format!(
                            "asked for bytes from {offset}, the registry sent the range {:?}",
                            sanitize(&range, 100)
                        ),
                    });
                }
                Ok(BlobBody::FromOffset(body_stream(response)))
            }
            _ if offset == 0 => Ok(BlobBody::FromOffset(body_stream(response))),
            _ => Ok(BlobBody::Whole(body_stream(response))),
        }
    }

    /// Streams a file to the registry as the blob `descriptor` names.
    pub async fn push_blob_file(
        &self,
        reference: &Reference,
        path: &Path,
        descriptor: &Descriptor,
    ) -> Result<()> {
        let body = || -> Result<reqwest::Body> {
            let file = std::fs::File::open(path).map_err(|e| Error::store("reading", path, e))?;
            let file = tokio::fs::File::from_std(file);
            Ok(reqwest::Body::wrap_stream(ReaderStream::with_capacity(
                file,
                256 << 10,
            )))
        };
        self.upload(reference, &descriptor.digest, descriptor.size, &body)
            .await
    }

    /// Uploads a small in-memory blob (signatures, configs) unless the registry has it.
    pub async fn push_blob_bytes(&self, reference: &Reference, bytes: &Bytes) -> Result<()> {
        let digest = Digest::of(bytes);
        if self.blob_exists(reference, &digest).await? {
            return Ok(());
        }
        let body = || Ok(reqwest::Body::from(bytes.clone()));
        self.upload(reference, &digest, bytes.len() as u64, &body)
            .await
    }

    pub async fn push_manifest(
        &self,
        reference: &Reference,
        bytes: &Bytes,
        media_type: &'static str,
    ) -> Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
        let body = || Ok(reqwest::Body::from(bytes.clone()));
        let request = Request {
            method: Method::PUT,
            url: self.manifest_url(reference)?,
            headers,
            body: Some(&body),
        };
        let scope = scope(reference, Access::Push);
        self.retry(
            &format!("pushing manifest {}", reference.whole()),
            || async { self.send_ok(&request, &scope).await.map(drop) },
        )
        .await
    }

    /// A monolithic upload: POST opens a session, one PUT carries the whole blob (chunked
    /// PATCHes cost a round trip per chunk, and distribution 2.8 buffers them).
    async fn upload(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        body: BodyMaker<'_>,
    ) -> Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
        let start = Request {
            method: Method::POST,
            url: self.repository_url(reference, "blobs/uploads/")?,
            headers,
            body: None,
        };
        let scope = scope(reference, Access::Push);
        let operation = format!("uploading blob {digest}");
        self.retry(&operation, || async {
            let session = self.send_ok(&start, &scope).await?;
            let location = session
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Error::Unavailable {
                    operation: format!("{operation} to {}", self.host),
                    attempts: 1,
                    detail: "the registry opened no upload session (no Location)".into(),
                })?;
            let mut url = start.url.join(location).map_err(|e| Error::Unavailable {
                operation: format!("{operation} to {}", self.host),
                attempts: 1,
                detail: format!("bad upload Location {}: {e}", sanitize(location, 200)),
            })?;
            url.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
            let put = Request {
                method: Method::PUT,
                url,
                headers,
                body: Some(body),
            };
            self.send_ok(&put, &scope).await.map(drop)
        })
        .await
    }

    /// A manifest's body, read under `limit`; `over(received)` is the error for a longer one.
    async fn read_manifest(
        &self,
        reference: &Reference,
        limit: u64,
        over: impl Fn(u64) -> Rejection,
    ) -> Result<Bytes> {
        let request = Request {
            method: Method::GET,
            url: self.manifest_url(reference)?,
            headers: accept_manifests(),
            body: None,
        };
        let scope = scope(reference, Access::Pull);
        self.retry(
            &format!("fetching manifest {}", reference.whole()),
            || async {
                let response = self.send_ok(&request, &scope).await?;
                read_capped(response, limit)
                    .await
                    .map_err(|e| over_limit(e, &over))
            },
        )
        .await
    }

    /// One attempt of `request`: sent with the `Authorization` known for `scope`, and once more
    /// after answering the registry's `401`. A response that is not a success is an error.
    async fn send_ok(&self, request: &Request<'_>, scope: &str) -> Result<Response, AttemptError> {
        let sent = self.auth.cached(scope);
        let mut response = self.http.send(request, sent.as_ref()).await?;
        // Only the registry's own challenge is answered, not one from where it redirected to.
        if response.status() == StatusCode::UNAUTHORIZED
            && response.url().origin() == self.http.origin.origin()
        {
            match self
                .auth
                .answer(&self.http.client, response.headers(), scope, sent.as_ref())
                .await?
            {
                Answer::Retry(value) => {
                    response = self.http.send(request, Some(&value)).await?;
                }
                Answer::Nothing => {}
            }
        }
        if response.status().is_success() {
            return Ok(response);
        }
        let anonymous =
            response.status() == StatusCode::UNAUTHORIZED && !self.auth.has_credential().await?;
        match status_error(response).await {
            AttemptError::Status { status, detail } if anonymous => Err(AttemptError::Status {
                status,
                detail: format!(
                    "no credentials for {} (none given for it with --registry-credentials-host, \
                     none in the docker config); {detail}",
                    self.host
                ),
            }),
            err => Err(err),
        }
    }

    fn manifest_url(&self, reference: &Reference) -> Result<reqwest::Url> {
        let name = reference
            .digest()
            .or(reference.tag())
            .ok_or_else(|| Error::usage(format!("{} names no tag or digest", reference.whole())))?;
        self.repository_url(reference, &format!("manifests/{name}"))
    }

    fn repository_url(&self, reference: &Reference, rest: &str) -> Result<reqwest::Url> {
        if !reference.registry().eq_ignore_ascii_case(&self.host) {
            return Err(Error::usage(format!(
                "{} is not on registry {}",
                reference.whole(),
                self.host
            )));
        }
        self.http
            .url(&format!("/v2/{}/{rest}", reference.repository()))
    }

    /// Runs `attempt` with bounded exponential backoff on transient failures.
    async fn retry<T, F, Fut>(&self, operation: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let mut delay = Duration::from_millis(200);
        let mut attempts = 1;
        loop {
            let err = match attempt().await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            match classify(err, operation, &self.host, attempts) {
                Failure::Transient(detail) if attempts <= self.retries => {
                    tracing_note(operation, attempts, &detail);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempts += 1;
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
    }
}

fn scope(reference: &Reference, access: Access) -> String {
    let actions = match access {
        Access::Pull => "pull",
        Access::Push => "pull,push",
    };
    format!("repository:{}:{actions}", reference.repository())
}

fn accept(media_type: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static(media_type));
    headers
}

/// [`MEDIA_TYPE_INDEX`] and [`crate::release::MEDIA_TYPE_MANIFEST`] in one header: proxies that keep one value
/// per header name would drop one of two.
const ACCEPT_MANIFESTS: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

fn accept_manifests() -> HeaderMap {
    accept(ACCEPT_MANIFESTS)
}

/// The refusal of `what` when the registry sends more than a document may hold.
fn over_document_limit(what: &str) -> impl Fn(u64) -> Rejection + '_ {
    move |received| {
        Rejection::malformed(
            what,
            format!(
                "the registry sent {received} bytes or more, over the \
                 {MAX_DOCUMENT_BYTES}-byte document limit"
            ),
        )
    }
}

fn over_limit(err: BodyError, over: impl Fn(u64) -> Rejection) -> AttemptError {
    match err {
        BodyError::Transport(e) => AttemptError::Transport(e),
        BodyError::OverLimit { received } => AttemptError::Final(over(received).into()),
    }
}

/// The response body as a blob stream; it ends after the first error.
fn body_stream(response: Response) -> BlobStream {
    futures::stream::unfold(Some(response), |state| async move {
        let mut response = state?;
        match response.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
            Ok(None) => None,
            Err(e) => Some((
                Err(std::io::Error::other(error_chain(&e.without_url()))),
                None,
            )),
        }
    })
    .boxed()
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

/// Sorts a failed attempt into "try again" or a final error with the right exit code.
fn classify(err: AttemptError, operation: &str, host: &str, attempts: u32) -> Failure {
    match err {
        AttemptError::Final(err) => Failure::Final(err),
        AttemptError::Status { status, detail } => match status.as_u16() {
            401 | 403 => Failure::Final(Error::RegistryAuth {
                registry: host.to_owned(),
                operation: operation.to_owned(),
                detail,
            }),
            404 => Failure::Final(Error::NotFound {
                object: operation.to_owned(),
                source_name: host.to_owned(),
                detail,
            }),
            429 | 500..=599 => Failure::Transient(detail),
            _ => Failure::Final(Error::Unavailable {
                operation: format!("{operation} from {host}"),
                attempts,
                detail,
            }),
        },
        AttemptError::Transport(e) => {
            let builder = e.is_builder();
            let detail = sanitize(&error_chain(&e.without_url()), 500);
            if builder {
                Failure::Final(Error::Unavailable {
                    operation: format!("{operation} from {host}"),
                    attempts,
                    detail,
                })
            } else {
                Failure::Transient(detail)
            }
        }
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
