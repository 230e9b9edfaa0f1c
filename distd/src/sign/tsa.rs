//! RFC 3161 timestamps from the timestamp authority, over the signature bytes. The whole
//! TimeStampResp is kept (Sigstore clients expect it in the bundle).

use anyhow::{Context, Result};
use sigstore_types::SignatureBytes;

/// The TSA's timestamp endpoint. A bare base URL (the local stack's `TCDIST_TSA_URL`) gets
/// sigstore timestamp-authority's path.
pub fn endpoint(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    match trimmed.split_once("://") {
        Some((_, rest)) if !rest.contains('/') => format!("{trimmed}/api/v1/timestamp"),
        _ => trimmed.to_owned(),
    }
}

pub struct TimestampAuthority {
    client: sigstore_tsa::TimestampClient,
    url: String,
}

impl TimestampAuthority {
    pub fn new(url: &str) -> Result<Self> {
        let url = endpoint(url);
        Ok(TimestampAuthority {
            client: sigstore_tsa::TimestampClient::new(url.clone())
                .with_context(|| format!("setting up the timestamp authority client for {url}"))?,
            url,
        })
    }

    /// A timestamp response over `signature`, checked to answer this request.
    pub async fn timestamp(&self, signature: &[u8]) -> Result<Vec<u8>> {
        let token = self
            .client
            .timestamp_signature(&SignatureBytes::from_bytes(signature))
            .await
            .with_context(|| format!("timestamping the signature at {}", self.url))?;
        Ok(token.as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn base_url_gets_the_timestamp_path() {
        assert_eq!(
            endpoint("http://127.0.0.1:3000"),
            "http://127.0.0.1:3000/api/v1/timestamp"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:3000/"),
            "http://127.0.0.1:3000/api/v1/timestamp"
        );
        assert_eq!(
            endpoint("https://tsa.example/tsr"),
            "https://tsa.example/tsr"
        );
    }
}
