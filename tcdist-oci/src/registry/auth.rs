//! Answering a registry's `401`: its `WWW-Authenticate` challenge (Basic, or Bearer with a token
//! realm), the realm rule (HTTPS, or plain HTTP on loopback only), and tokens cached per scope for
//! the life of the client. Credentials go only to the registry and to the realm it declared.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Response, Url};

use super::http::{
    AttemptError, BodyError, REGISTRY_TEXT_MAX, error_detail, read_capped, url_is_loopback,
};
use crate::credentials::{Credential, Credentials};
use tcdist_core::error::{Error, Result};
use tcdist_core::text::sanitize;

/// Token responses are small JSON objects; anything bigger is refused.
pub(super) const MAX_TOKEN_RESPONSE_BYTES: u64 = 64 << 10;
/// Docker's floor for a token's lifetime when the realm names none or a shorter one.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens are renewed this long before they expire.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// How a `401` can be answered.
pub(super) enum Answer {
    /// Send the request again with this `Authorization`.
    Retry(HeaderValue),
    /// There is nothing to authenticate with: no credentials for a Basic challenge, or a
    /// challenge of another scheme.
    Nothing,
}

/// The authentication state of one registry client.
pub(super) struct Authenticator {
    host: String,
    credentials: Credentials,
    /// The credential for `host`, looked up at the first challenge.
    credential: tokio::sync::OnceCell<Option<Credential>>,
    /// `Authorization` values per scope.
    cache: Mutex<HashMap<String, Cached>>,
    /// One challenge is answered at a time, so parallel requests share one token.
    answering: tokio::sync::Mutex<()>,
}

struct Cached {
    value: HeaderValue,
    expires: Option<Instant>,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Challenge {
    /// Lowercase: `basic`, `bearer`, …
    pub scheme: String,
    /// Lowercase parameter names.
    pub params: HashMap<String, String>,
}

impl Authenticator {
    pub fn new(host: &str, credentials: Credentials) -> Self {
        Self {
            host: host.to_owned(),
            credentials,
            credential: tokio::sync::OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
            answering: tokio::sync::Mutex::new(()),
        }
    }

    /// The `Authorization` to send for `scope`, when one is known and not expired.
    pub fn cached(&self, scope: &str) -> Option<HeaderValue> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(scope)
            .filter(|c| c.expires.is_none_or(|at| Instant::now() < at))
            .map(|c| c.value.clone())
    }

    /// Whether any credential is configured for the registry (looked up at most once).
    pub async fn has_credential(&self) -> Result<bool> {
        Ok(self.credential().await?.is_some())
    }

    /// Answers the challenge of a `401` to a request for `scope` that was sent with `sent`.
    pub async fn answer(
        &self,
        client: &reqwest::Client,
        response_headers: &HeaderMap,
        scope: &str,
        sent: Option<&HeaderValue>,
    ) -> Result<Answer, AttemptError> {
        let _one_at_a_time = self.answering.lock().await;
        // Another request may have authenticated while this one waited.
        if let Some(value) = self.cached(scope)
            && Some(&value) != sent
        {
            return Ok(Answer::Retry(value));
        }
        let challenges: Vec<Challenge> = response_headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .collect();
        let (value, expires) = if let Some(bearer) =
            challenges.iter().find(|c| c.scheme == "bearer")
        {
            let realm = checked_realm(&self.host, bearer)?;
            let credential = self.credential().await?;
            let (token, lifetime) = self
                .fetch_token(client, realm, bearer, scope, credential.as_ref())
                .await?;
            let expires = Instant::now() + lifetime.max(MIN_TOKEN_LIFETIME) - TOKEN_EXPIRY_MARGIN;
            (bearer_value(&self.host, &token)?, Some(expires))
        } else if challenges.iter().any(|c| c.scheme == "basic") {
            match self.credential().await? {
                Some(Credential::Basic { username, password }) => {
                    (basic_value(&username, &password)?, None)
                }
                Some(Credential::IdentityToken(_)) => {
                    return Err(Error::usage_with_hint(
                        format!(
                            "the credential for registry {} is an identity token, but the \
                             registry asks for a user name and password (Basic)",
                            self.host
                        ),
                        "give a user name and password for this registry",
                    )
                    .into());
                }
                None => return Ok(Answer::Nothing),
            }
        } else {
            return Ok(Answer::Nothing);
        };
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
            scope.to_owned(),
            Cached {
                value: value.clone(),
                expires,
            },
        );
        Ok(Answer::Retry(value))
    }

    async fn credential(&self) -> Result<Option<Credential>> {
        self.credential
            .get_or_try_init(|| async {
                let credentials = self.credentials.clone();
                let host = self.host.clone();
                tokio::task::spawn_blocking(move || credentials.for_host(&host))
                    .await
                    .map_err(|e| Error::usage(format!("looking up registry credentials: {e}")))?
            })
            .await
            .cloned()
    }

    /// A token from the realm: GET with the registry's Basic credentials (or none), or, for an
    /// identity token, the OAuth2 refresh-token POST. Returns the token and its lifetime.
    async fn fetch_token(
        &self,
        client: &reqwest::Client,
        mut realm: Url,
        challenge: &Challenge,
        scope: &str,
        credential: Option<&Credential>,
    ) -> Result<(String, Duration), AttemptError> {
        let mut form = Vec::new();
        if let Some(service) = challenge.params.get("service") {
            form.push(("service", service.as_str()));
        }
        form.push(("scope", scope));
        if let Some(theirs) = challenge.params.get("scope").filter(|s| *s != scope) {
            form.push(("scope", theirs.as_str()));
        }
        let request = match credential {
            Some(Credential::IdentityToken(refresh)) => {
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", "tcdist"),
                ]);
                let body = form_urlencoded(&form);
                client
                    .post(realm.clone())
                    .header(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    )
                    .body(body)
            }
            other => {
                realm.query_pairs_mut().extend_pairs(&form);
                let request = client.get(realm.clone());
                match other {
                    Some(Credential::Basic { username, password }) => {
                        request.header(AUTHORIZATION, basic_value(username, password)?)
                    }
                    _ => request,
                }
            }
        };
        let response = request.send().await.map_err(AttemptError::Transport)?;
        let status = response.status();
        if !status.is_success() {
            let detail = error_detail(response).await;
            return Err(if status.as_u16() == 401 || status.as_u16() == 403 {
                AttemptError::Final(Error::RegistryAuth {
                    registry: self.host.clone(),
                    operation: format!("a token from {}", realm_name(&realm)),
                    detail,
                })
            } else {
                AttemptError::Status { status, detail }
            });
        }
        parse_token(&self.host, &realm, response).await
    }
}

/// The realm of a Bearer challenge, if it may be contacted: HTTPS, or plain HTTP to a loopback
/// host. Nothing is sent to a realm refused here.
pub(super) fn checked_realm(host: &str, challenge: &Challenge) -> Result<Url> {
    let realm = challenge.params.get("realm").ok_or_else(|| {
        Error::usage(format!(
            "registry {host} asked for a token but named no realm to get it from"
        ))
    })?;
    let url = Url::parse(realm).map_err(|e| {
        Error::usage(format!(
            "registry {host} named an invalid token realm {}: {e}",
            sanitize(realm, REGISTRY_TEXT_MAX)
        ))
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if url_is_loopback(&url) => Ok(url),
        _ => Err(Error::usage_with_hint(
            format!(
                "registry {host} named the token realm {}; refused (nothing was sent to it): \
                 a realm must use HTTPS unless it is on loopback",
                sanitize(realm, REGISTRY_TEXT_MAX)
            ),
            "the registry's token service must be reached over HTTPS",
        )),
    }
}

async fn parse_token(
    host: &str,
    realm: &Url,
    response: Response,
) -> Result<(String, Duration), AttemptError> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let bad = |detail: String| {
        AttemptError::Final(Error::Unavailable {
            operation: format!("getting a token for {host} from {}", realm_name(realm)),
            attempts: 1,
            detail,
        })
    };
    let body = match read_capped(response, MAX_TOKEN_RESPONSE_BYTES).await {
        Ok(body) => body,
        Err(BodyError::Transport(e)) => return Err(AttemptError::Transport(e)),
        Err(BodyError::OverLimit { received }) => {
            return Err(bad(format!(
                "the token response is over {MAX_TOKEN_RESPONSE_BYTES} bytes ({received} \
                 received); refused"
            )));
        }
    };
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the token response is not valid JSON: {e}")))?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("the token response holds no token".into()))?;
    Ok((token, Duration::from_secs(parsed.expires_in.unwrap_or(0))))
}

/// The realm without its query, for messages.
fn realm_name(realm: &Url) -> String {
    let mut name = realm.clone();
    name.set_query(None);
    sanitize(name.as_str(), REGISTRY_TEXT_MAX)
}

fn basic_value(username: &str, password: &str) -> Result<HeaderValue> {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|e| Error::usage(format!("registry credentials: {e}")))?;
    value.set_sensitive(true);
    Ok(value)
}

fn bearer_value(host: &str, token: &str) -> Result<HeaderValue> {
    let mut value =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::Unavailable {
            operation: format!("getting a token for {host}"),
            attempts: 1,
            detail: "the token holds characters a header cannot carry".into(),
        })?;
    value.set_sensitive(true);
    Ok(value)
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    let mut url = Url::parse("x:").expect("a constant URL parses");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

/// Parses one `WWW-Authenticate` value: `Scheme key=value, key="quoted \" value", …`.
pub(super) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end?..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            }
        };
        params.insert(key, value);
        rest = remaining;
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str) -> Challenge {
        parse_challenge(&format!(r#"Bearer realm="{realm}",service="reg""#)).unwrap()
    }

    #[test]
    fn challenges_parse_quoted_and_bare_values() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = parse_challenge(r#"Basic realm=plain, Charset="UTF-8\"x""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "plain");
        assert_eq!(c.params["charset"], "UTF-8\"x");
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn token_realm_rejected_if_plain_http_off_loopback() {
        for realm in [
            "http://registry.invalid/token",
            "http://10.0.0.1/token",
            "ftp://127.0.0.1/token",
            "file:///etc/passwd",
        ] {
            let err = checked_realm("reg", &bearer(realm)).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{realm}");
            assert!(err.to_string().contains("nothing was sent"), "{err}");
        }
        for realm in [
            "https://auth.example/token",
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
            "http://[::1]:1/token",
        ] {
            assert!(checked_realm("reg", &bearer(realm)).is_ok(), "{realm}");
        }
        let no_realm = parse_challenge(r#"Bearer service="x""#).unwrap();
        assert!(checked_realm("reg", &no_realm).is_err());
    }

    #[test]
    fn form_encoding_escapes_values() {
        assert_eq!(
            form_urlencoded(&[("scope", "repository:a/b:pull"), ("x", "a&b=c d")]),
            "scope=repository%3Aa%2Fb%3Apull&x=a%26b%3Dc+d"
        );
    }
}
