//! The client against tiny loopback HTTP servers that misbehave on purpose.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;

use super::*;
use crate::credentials::Credential;
use crate::release::MEDIA_TYPE_MANIFEST;

/// One request as a test server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
}

enum Body {
    Bytes(Vec<u8>),
    /// No length; 1 MiB chunks until the client hangs up (or 64 MiB).
    Flood,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

fn reply(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    Reply {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Body::Bytes(body.to_vec()),
    }
}

type Handler = Arc<dyn Fn(&Seen, SocketAddr) -> Reply + Send + Sync>;

/// An HTTP/1.1 server on 127.0.0.1 that records every request and answers with `handler`.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(handler: impl Fn(&Seen, SocketAddr) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let recorded = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, recorded) = (handler.clone(), recorded.clone());
                std::thread::spawn(move || serve(stream, addr, &handler, &recorded));
            }
        });
        Server { addr, seen }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, addr: SocketAddr, handler: &Handler, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let (mut authorization, mut length) = (None, 0usize);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.trim().to_owned()),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        let mut request_body = vec![0; length];
        if reader.read_exact(&mut request_body).is_err() {
            return;
        }
        let request = Seen {
            method,
            path,
            authorization,
        };
        seen.lock().unwrap().push(request.clone());
        let reply = handler(&request, addr);
        let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        match reply.body {
            Body::Bytes(body) => {
                if !reply.headers.iter().any(|(n, _)| n == "Content-Length") {
                    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                head.push_str("\r\n");
                let body = if request.method == "HEAD" {
                    &[][..]
                } else {
                    &body[..]
                };
                if writer.write_all(head.as_bytes()).is_err() || writer.write_all(body).is_err() {
                    return;
                }
            }
            Body::Flood => {
                head.push_str("Connection: close\r\n\r\n");
                let chunk = vec![b' '; 1 << 20];
                let _ = writer.write_all(head.as_bytes());
                for _ in 0..64 {
                    if writer.write_all(&chunk).is_err() {
                        break;
                    }
                }
                return;
            }
        }
    }
}

fn args() -> RegistryArgs {
    RegistryArgs {
        registry_plain_http: true,
        registry_retries: 2,
        ..RegistryArgs::default()
    }
}

fn registry(server: &Server, credentials: Option<(&str, Credential)>) -> Registry {
    let credentials = Credentials::new(credentials.map(|(h, c)| (h.to_owned(), c)), None);
    Registry::with_credentials(&args(), &server.host(), credentials).unwrap()
}

fn basic(username: &str, password: &str) -> Credential {
    Credential::Basic {
        username: username.into(),
        password: password.into(),
    }
}

/// `Basic dTpw`: the Authorization for `u:p`.
const BASIC_U_P: &str = "Basic dTpw";

fn reference(server: &Server, tag: &str) -> Reference {
    Reference::with_tag(server.host(), "toolchains/go".into(), tag.into())
}

fn manifest_bytes() -> Vec<u8> {
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
        .to_vec()
}

/// A registry that wants Basic credentials `u:p`.
fn basic_registry() -> Server {
    Server::start(|seen, _| {
        if seen.authorization.as_deref() == Some(BASIC_U_P) {
            reply(200, &[], &manifest_bytes())
        } else {
            reply(
                401,
                &[("WWW-Authenticate", r#"Basic realm="test""#)],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
        }
    })
}

#[tokio::test]
async fn credentials_not_sent_to_other_registry() {
    let server = basic_registry();
    let client = registry(&server, Some(("127.0.0.1:1", basic("u", "p"))));
    let err = client
        .manifest(&reference(&server, "v1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegistryAuth { .. }), "{err}");
    assert!(err.to_string().contains("no credentials for"), "{err}");
    assert!(server.seen().iter().all(|s| s.authorization.is_none()));
}

#[tokio::test]
async fn credentials_sent_to_their_registry_after_its_challenge() {
    let server = basic_registry();
    let client = registry(&server, Some((&server.host(), basic("u", "p"))));
    let (bytes, _) = client.manifest(&reference(&server, "v1")).await.unwrap();
    assert_eq!(bytes, manifest_bytes());
    client.manifest(&reference(&server, "v2")).await.unwrap();
    let auths: Vec<_> = server.seen().into_iter().map(|s| s.authorization).collect();
    // Anonymous first, then Basic; the second fetch sends Basic at once.
    assert_eq!(
        auths,
        [None, Some(BASIC_U_P.into()), Some(BASIC_U_P.into())]
    );
}

#[tokio::test]
async fn manifest_rejected_if_over_the_document_limit_while_streaming() {
    let server = Server::start(|_, _| Reply {
        status: 200,
        headers: Vec::new(),
        body: Body::Flood,
    });
    let err = registry(&server, None)
        .manifest(&reference(&server, "v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Rejected(Rejection::Malformed { object, .. }) if object.contains("toolchains/go:v1")),
        "{err}"
    );
    assert_eq!(err.exit_code(), 42);
    // Not retried: the same registry would send the same bytes.
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn manifest_rejected_if_announced_over_the_document_limit() {
    let server = Server::start(|_, _| reply(200, &[("Content-Length", "1073741824")], b""));
    let err = registry(&server, None)
        .manifest(&reference(&server, "v1"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1073741824 bytes"), "{err}");
    assert_eq!(err.exit_code(), 42);
}

#[tokio::test]
async fn document_rejected_if_longer_than_its_descriptor() {
    let server = Server::start(|_, _| reply(200, &[], &manifest_bytes()));
    let descriptor = Descriptor::of_document(MEDIA_TYPE_MANIFEST, b"short");
    let at = Reference::with_digest(
        server.host(),
        "toolchains/go".into(),
        descriptor.digest.to_string(),
    );
    let err = registry(&server, None)
        .document(&at, "platform manifest", &descriptor)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rejected(Rejection::SizeMismatch { expected: 5, .. })
        ),
        "{err}"
    );
}

/// A registry whose token realm is `realm` (with `{addr}` replaced by its own address); a
/// request with `Bearer good` is answered.
fn bearer_registry(
    realm: &'static str,
    token: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> Server {
    Server::start(move |seen, addr| {
        if seen.path.starts_with("/token") {
            return token(seen);
        }
        if seen.authorization.as_deref() == Some("Bearer good") {
            return reply(200, &[], &manifest_bytes());
        }
        let challenge = format!(
            r#"Bearer realm="{}",service="test",scope="repository:toolchains/go:pull""#,
            realm.replace("{addr}", &addr.to_string())
        );
        reply(401, &[("WWW-Authenticate", &challenge)], b"")
    })
}

#[tokio::test]
async fn token_realm_rejected_if_plain_http_off_loopback() {
    let server = bearer_registry("http://registry.invalid/token", |_| reply(500, &[], b""));
    let client = registry(&server, Some((&server.host(), basic("u", "p"))));
    let err = client
        .manifest(&reference(&server, "v1"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("http://registry.invalid/token"),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was sent"), "{err}");
    assert_eq!(err.exit_code(), 2);
    // One anonymous request; no retry, no credentials anywhere.
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].authorization.is_none());
}

#[tokio::test]
async fn anonymous_token_flow_works_and_the_token_is_cached_per_scope() {
    let server = bearer_registry("http://{addr}/token", |seen| {
        assert!(seen.authorization.is_none(), "no credentials were given");
        assert!(seen.path.contains("service=test"), "{}", seen.path);
        assert!(
            seen.path
                .contains("scope=repository%3Atoolchains%2Fgo%3Apull"),
            "{}",
            seen.path
        );
        reply(200, &[], br#"{"token":"good","expires_in":300}"#)
    });
    let client = registry(&server, None);
    client.manifest(&reference(&server, "v1")).await.unwrap();
    client.manifest(&reference(&server, "v2")).await.unwrap();
    let tokens = server
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/token"))
        .count();
    assert_eq!(tokens, 1);
}

#[tokio::test]
async fn basic_credentials_sent_to_the_realm_the_registry_declared() {
    let server = bearer_registry("http://{addr}/token", |seen| {
        if seen.authorization.as_deref() == Some(BASIC_U_P) {
            reply(200, &[], br#"{"access_token":"good"}"#)
        } else {
            reply(401, &[], b"")
        }
    });
    let client = registry(&server, Some((&server.host(), basic("u", "p"))));
    client.manifest(&reference(&server, "v1")).await.unwrap();
    // The registry itself never saw the Basic credentials, only the token.
    assert!(
        server
            .seen()
            .iter()
            .filter(|s| !s.path.starts_with("/token"))
            .all(|s| s.authorization.as_deref() != Some(BASIC_U_P))
    );
}

#[tokio::test]
async fn token_response_rejected_if_over_its_cap() {
    let server = bearer_registry("http://{addr}/token", |_| Reply {
        status: 200,
        headers: Vec::new(),
        body: Body::Flood,
    });
    let err = registry(&server, None)
        .manifest(&reference(&server, "v1"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("over {} bytes", auth::MAX_TOKEN_RESPONSE_BYTES)),
        "{err}"
    );
    let tokens = server
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/token"))
        .count();
    assert_eq!(tokens, 1);
}

#[tokio::test]
async fn credentials_not_sent_on_redirect_to_another_host() {
    let storage = Server::start(|_, _| reply(200, &[], b"blob bytes"));
    let storage_url = format!("http://localhost:{}/data?sig=x", storage.addr.port());
    let server = Server::start(move |seen, _| match seen.authorization.as_deref() {
        Some(BASIC_U_P) => reply(307, &[("Location", &storage_url)], b""),
        _ => reply(401, &[("WWW-Authenticate", r#"Basic realm="test""#)], b""),
    });
    let client = registry(&server, Some((&server.host(), basic("u", "p"))));
    let descriptor = Descriptor::of_document("application/octet-stream", b"blob bytes");
    let at = Reference::with_digest(
        server.host(),
        "toolchains/go".into(),
        descriptor.digest.to_string(),
    );
    let BlobBody::FromOffset(stream) = client.open_blob(&at, &descriptor, 0).await.unwrap() else {
        panic!("a whole blob from offset 0 is FromOffset");
    };
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(chunks.concat(), b"blob bytes");
    assert_eq!(storage.seen().len(), 1);
    assert!(storage.seen()[0].authorization.is_none());
}

#[tokio::test]
async fn registry_error_text_sanitized_in_errors() {
    let server = Server::start(|_, _| {
        reply(
            403,
            &[],
            b"{\"errors\":[{\"code\":\"DENIED\",\"message\":\"go away\\n\\u001b[1mforged: ok\"}]}",
        )
    });
    let err = registry(&server, None)
        .manifest(&reference(&server, "v1"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("DENIED: go away [1mforged: ok"), "{text}");
    assert!(!text.contains('\n') && !text.contains('\x1b'), "{text}");
}

#[tokio::test]
async fn referrers_api_missing_lists_none_and_a_flood_is_refused() {
    let digest = Digest::of(b"subject").to_string();
    let missing = Server::start(|_, _| reply(404, &[], b""));
    let at = Reference::with_digest(missing.host(), "toolchains/go".into(), digest.clone());
    let listed = registry(&missing, None).referrers(&at, "x").await.unwrap();
    assert!(listed.is_empty());

    let flood = Server::start(|_, _| Reply {
        status: 200,
        headers: Vec::new(),
        body: Body::Flood,
    });
    let at = Reference::with_digest(flood.host(), "toolchains/go".into(), digest);
    let err = registry(&flood, None)
        .referrers(&at, "x")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 42, "{err}");
    assert!(flood.seen()[0].path.contains("/referrers/sha256:"));
    assert!(flood.seen()[0].path.ends_with("?artifactType=x"));
}

#[test]
fn manifests_accepted_in_both_media_types() {
    assert_eq!(
        ACCEPT_MANIFESTS,
        format!("{MEDIA_TYPE_INDEX}, {MEDIA_TYPE_MANIFEST}")
    );
}

#[tokio::test]
async fn transient_failures_retried_then_reported_unavailable() {
    let server = Server::start(|_, _| reply(503, &[], b"busy"));
    let err = registry(&server, None)
        .manifest(&reference(&server, "v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(server.seen().len(), 3);
}
