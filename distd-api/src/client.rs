//! The API's client: one mutually authenticated HTTP/1.1 connection per request, so every
//! request is made with the SVID the Workload API holds at that moment.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_rustls::TlsConnector;

use crate::wire::ApiError;

pub struct Client {
    /// `HOST:PORT`.
    address: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
}

/// A non-2xx answer, kept apart from transport failures so callers can tell "not allowed"
/// from "not reachable".
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub error: String,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the daemon answered {}: {}", self.status, self.error)
    }
}

impl std::error::Error for Answer {}

impl Client {
    /// A client of the daemon at `server` (`https://HOST:PORT` or `HOST:PORT`).
    pub fn new(server: &str, config: rustls::ClientConfig) -> Result<Self> {
        let address = server
            .strip_prefix("https://")
            .unwrap_or(server)
            .trim_end_matches('/')
            .to_owned();
        let host = address
            .rsplit_once(':')
            .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
            .with_context(|| format!("{server:?} is not HOST:PORT"))?;
        // The server is authenticated by its SPIFFE ID; the name only has to be well formed.
        let server_name =
            ServerName::try_from(host.to_owned()).map_err(|e| anyhow!("{server:?}: {e}"))?;
        Ok(Client {
            address,
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Sends one request; the answer's body is left to stream.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<http::Response<Incoming>> {
        let tcp = tokio::net::TcpStream::connect(&self.address)
            .await
            .with_context(|| format!("connecting to the daemon at {}", self.address))?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .with_context(|| format!("TLS handshake with the daemon at {}", self.address))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("starting HTTP with the daemon")?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.address)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .context("building the request")?;
        sender
            .send_request(request)
            .await
            .with_context(|| format!("{path}: no answer from the daemon"))
    }

    /// Sends one request and reads a JSON answer; a non-2xx answer is an [`Answer`] error.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let response = ok(self.send(method, path, body).await?).await?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("{path}: reading the answer"))?
            .to_bytes();
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{path}: the answer is not what the API defines"))
    }
}

/// The response when it is 2xx, else an [`Answer`] error with the server's reason.
pub async fn ok(response: http::Response<Incoming>) -> Result<http::Response<Incoming>> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let error = serde_json::from_slice::<ApiError>(&bytes)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
    Err(Answer { status, error }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
    }

    #[test]
    fn server_addresses_take_a_scheme_or_not_and_ipv6_brackets() {
        for (server, address) in [
            ("https://127.0.0.1:8443", "127.0.0.1:8443"),
            ("127.0.0.1:8443/", "127.0.0.1:8443"),
            ("https://[::1]:8443", "[::1]:8443"),
            ("distd.internal:8443", "distd.internal:8443"),
        ] {
            assert_eq!(Client::new(server, config()).unwrap().address, address);
        }
        let err = Client::new("https://no-port", config()).err().unwrap();
        assert!(err.to_string().contains("is not HOST:PORT"), "{err}");
    }
}
