//! One HTTP exchange with a registry: the client and its TLS roots, redirects (followed without
//! credentials off the registry's origin), bodies read under a cap, and error responses turned
//! into short printable text.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};

use tcdist_core::error::{Error, Result};
use tcdist_core::text::sanitize;

/// Redirects followed for one request (a registry sends blobs to its storage with one).
const MAX_REDIRECTS: usize = 5;
/// Bytes of an error response read for its message.
const ERROR_BODY_MAX: u64 = 4 << 10;
/// Characters of registry text kept in our messages.
pub(super) const REGISTRY_TEXT_MAX: usize = 300;

/// What went wrong in one attempt, before it is sorted into "retry" or a final error.
#[derive(Debug)]
pub(super) enum AttemptError {
    /// The server answered with an error status; `detail` is its message, sanitized.
    Status { status: StatusCode, detail: String },
    /// The connection failed, timed out or broke off.
    Transport(reqwest::Error),
    /// Retrying cannot help: this is the error to report.
    Final(Error),
}

impl From<Error> for AttemptError {
    fn from(err: Error) -> Self {
        AttemptError::Final(err)
    }
}

/// A body longer than its limit; `received` is how much had arrived (or was announced) when
/// reading stopped.
#[derive(Debug)]
pub(super) enum BodyError {
    Transport(reqwest::Error),
    OverLimit { received: u64 },
}

/// The client for one registry: its origin (`scheme://host[:port]`) and the HTTP client.
pub(super) struct Http {
    pub client: reqwest::Client,
    pub origin: Url,
}

/// Makes a request body, anew for each send (a retry, or the send after a challenge).
pub(super) type BodyMaker<'a> = &'a (dyn Fn() -> Result<reqwest::Body> + Send + Sync);

/// One request as the caller describes it.
pub(super) struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<BodyMaker<'a>>,
}

impl Http {
    pub fn new(host: &str, plain_http: bool, registry_ca: Option<&Path>) -> Result<Self> {
        let scheme = if plain_http {
            if !is_loopback_host(host) {
                return Err(Error::usage_with_hint(
                    format!("plain HTTP refused for registry {host}: it is not a loopback address"),
                    "use HTTPS (with --registry-ca for a private CA)",
                ));
            }
            "http"
        } else {
            "https"
        };
        let origin = Url::parse(&format!("{scheme}://{host}/"))
            .map_err(|e| Error::usage(format!("invalid registry host {host:?}: {e}")))?;
        // ring instead of reqwest's default aws-lc: aws-lc seeds its RNG from CPU jitter on
        // first use, ~50 ms of CPU at every process start. Installing fails harmlessly when a
        // provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry_ca = match registry_ca {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        let builder = reqwest::Client::builder()
            // Redirects are followed in `send`, which decides where credentials go.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("tcdist/", env!("CARGO_PKG_VERSION")));
        // System roots plus the registry's CA; the platform's verifier runs only when no system
        // bundle file is found.
        let builder = match system_roots() {
            Some(mut roots) => {
                roots.extend(registry_ca);
                builder.tls_certs_only(roots)
            }
            None => builder.tls_certs_merge(registry_ca),
        };
        let client = builder.build().map_err(|e| {
            Error::usage(format!(
                "cannot set up the registry client: {}",
                super::error_chain(&e)
            ))
        })?;
        Ok(Self { client, origin })
    }

    /// `path` (starting with `/v2/`) on the registry.
    pub fn url(&self, path: &str) -> Result<Url> {
        self.origin
            .join(path)
            .map_err(|e| Error::usage(format!("invalid registry path {path:?}: {e}")))
    }

    /// Sends `request`; `authorization` goes only to the registry's own origin. GET and HEAD
    /// follow redirects; one to plain HTTP off loopback is refused.
    pub async fn send(
        &self,
        request: &Request<'_>,
        authorization: Option<&HeaderValue>,
    ) -> Result<Response, AttemptError> {
        let mut url = request.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut builder = self
                .client
                .request(request.method.clone(), url.clone())
                .headers(request.headers.clone());
            if let Some(value) = authorization
                && url.origin() == self.origin.origin()
            {
                builder = builder.header(AUTHORIZATION, value.clone());
            }
            if let Some(body) = request.body {
                builder = builder.body(body()?);
            }
            let response = builder.send().await.map_err(AttemptError::Transport)?;
            let follow = request.method == Method::GET || request.method == Method::HEAD;
            if !(follow && response.status().is_redirection()) {
                return Ok(response);
            }
            url = redirect_target(&url, &response)?;
        }
        Err(Error::Unavailable {
            operation: format!("{} {}", request.method, request.url),
            attempts: 1,
            detail: format!("more than {MAX_REDIRECTS} redirects"),
        }
        .into())
    }
}

/// Where a redirect points, resolved against the request's URL; plain HTTP only on loopback.
fn redirect_target(from: &Url, response: &Response) -> Result<Url, AttemptError> {
    let refused = |detail: String| {
        AttemptError::Final(Error::Unavailable {
            operation: format!("following the registry's redirect from {from}"),
            attempts: 1,
            detail,
        })
    };
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refused(format!("{} without a Location", response.status())))?;
    let target = from
        .join(location)
        .map_err(|e| refused(format!("bad Location {}: {e}", sanitize(location, 200))))?;
    match target.scheme() {
        "https" => Ok(target),
        "http" if url_is_loopback(&target) => Ok(target),
        _ => Err(refused(format!(
            "redirect to {} refused: only HTTPS, or plain HTTP on loopback",
            sanitize(target.as_str(), 200)
        ))),
    }
}

/// Reads a body of at most `limit` bytes, stopping as soon as more arrive (or are announced).
pub(super) async fn read_capped(mut response: Response, limit: u64) -> Result<Bytes, BodyError> {
    if let Some(announced) = response.content_length()
        && announced > limit
    {
        return Err(BodyError::OverLimit {
            received: announced,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        let received = (body.len() + chunk.len()) as u64;
        if received > limit {
            return Err(BodyError::OverLimit { received });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// The error a non-success response stands for, with the registry's message (the `errors` of an
/// OCI error body, else its text), read under a small cap and sanitized.
pub(super) async fn status_error(response: Response) -> AttemptError {
    let status = response.status();
    AttemptError::Status {
        status,
        detail: error_detail(response).await,
    }
}

/// The status of an error response and the server's message, sanitized.
pub(super) async fn error_detail(response: Response) -> String {
    let status = response.status();
    let body = read_capped(response, ERROR_BODY_MAX)
        .await
        .unwrap_or_default();
    describe_status(status, &body)
}

fn describe_status(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<OciError>,
    }
    #[derive(serde::Deserialize)]
    struct OciError {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let said = match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => envelope
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let said = sanitize(&said, REGISTRY_TEXT_MAX);
    if said.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {said}")
    }
}

/// Whether `host` (`name[:port]`, IPv6 in brackets) is `localhost` or a loopback address.
pub(super) fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn url_is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(is_loopback_host)
}

fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::usage(format!(
            "cannot read registry CA file {}: {e}",
            path.display()
        ))
    })?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certificates) if !certificates.is_empty() => Ok(certificates),
        Ok(_) => Err(Error::usage(format!(
            "registry CA file {} holds no PEM certificate",
            path.display()
        ))),
        Err(e) => Err(Error::usage(format!(
            "registry CA file {}: {e}",
            path.display()
        ))),
    }
}

/// The system's CA bundle, one file. Loading the platform's roots also scans the hashed
/// certificate directory (hundreds of files); that cost ~60 ms per process start and dominated a
/// pull of an installed toolchain, so the single bundle file is read here instead.
fn system_roots() -> Option<Vec<reqwest::Certificate>> {
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
        .filter_map(|pem| reqwest::Certificate::from_pem_bundle(&pem).ok())
        .find(|certificates| !certificates.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback() {
        for host in ["127.0.0.1:5000", "localhost:80", "[::1]:5000", "127.1.2.3"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "10.0.0.1:5000",
            "registry.example",
            "localhost.example:5000",
            "registry.invalid",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
        assert!(Http::new("registry.example:5000", true, None).is_err());
    }

    #[test]
    fn registry_error_text_is_sanitized_and_capped() {
        let body = format!(
            r#"{{"errors":[{{"code":"DENIED","message":"no\nway\u001b[2J{}"}}]}}"#,
            "x".repeat(5000)
        );
        let detail = describe_status(StatusCode::FORBIDDEN, body.as_bytes());
        assert!(
            detail.starts_with("HTTP 403 Forbidden: DENIED: no way [2Jxx"),
            "{detail}"
        );
        assert!(detail.chars().count() < 400, "{detail}");
        assert!(!detail.contains('\n') && !detail.contains('\x1b'));
        let plain = describe_status(StatusCode::BAD_GATEWAY, b"<html>\r\nbad\r\n</html>");
        assert_eq!(plain, "HTTP 502 Bad Gateway: <html> bad </html>");
    }
}
