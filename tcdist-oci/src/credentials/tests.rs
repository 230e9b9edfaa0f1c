use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

use super::*;

/// Helper scripts are written and run one test at a time: a script still open for writing in
/// one thread while another forks cannot be executed ("text file busy").
static HELPERS: Mutex<()> = Mutex::new(());

fn basic(username: &str, password: &str) -> Credential {
    Credential::Basic {
        username: username.into(),
        password: password.into(),
    }
}

fn encoded(user_password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(user_password)
}

/// A temp dir holding `config.json` with `config`.
fn docker_config(config: serde_json::Value) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    (dir, path)
}

/// Writes `docker-credential-test` (a shell script with `body`) into `dir`; returns a PATH
/// that finds it first.
fn helper(dir: &std::path::Path, body: &str) -> std::ffi::OsString {
    let path = dir.join("docker-credential-test");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut search = dir.as_os_str().to_owned();
    search.push(":");
    search.push(std::env::var_os("PATH").unwrap_or_default());
    search
}

#[test]
fn credentials_not_sent_to_other_registry() {
    let credentials = Credentials::new(Some(("127.0.0.1:5000".into(), basic("u", "p"))), None);
    assert_eq!(
        credentials.for_host("127.0.0.1:5000").unwrap(),
        Some(basic("u", "p"))
    );
    for other in [
        "127.0.0.1:5001",
        "127.0.0.1",
        "localhost:5000",
        "evil.example",
    ] {
        assert_eq!(credentials.for_host(other).unwrap(), None, "{other}");
    }
}

#[test]
fn other_registry_falls_back_to_its_docker_config_entry() {
    let (_dir, path) = docker_config(serde_json::json!({
        "auths": { "mirror.example": { "auth": encoded("m:mp") } }
    }));
    let credentials =
        Credentials::new(Some(("origin.example".into(), basic("u", "p"))), Some(path));
    assert_eq!(
        credentials.for_host("mirror.example").unwrap(),
        Some(basic("m", "mp"))
    );
    assert_eq!(
        credentials.for_host("origin.example").unwrap(),
        Some(basic("u", "p"))
    );
}

#[test]
fn explicit_credentials_rejected_without_their_host() {
    let err = Credentials::from_settings(Some("u"), Some("p"), None).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.hint().unwrap().contains("--registry-credentials-host"),
        "{err}"
    );
    assert!(Credentials::from_settings(Some("u"), None, Some("h:1")).is_err());
    assert!(Credentials::from_settings(Some("u"), Some("p"), Some("https://h/")).is_err());
    // A host alone (no user name and password) names nothing to send and is harmless.
    assert!(Credentials::from_settings(None, None, Some("h:1")).is_ok());
}

#[test]
fn auths_matched_by_host_in_every_key_form_docker_writes() {
    for key in [
        "reg.example:5000",
        "https://reg.example:5000",
        "http://reg.example:5000",
        "https://reg.example:5000/v1/",
    ] {
        let (_dir, path) = docker_config(serde_json::json!({
            "auths": { key: { "auth": encoded("user:pass:word") } }
        }));
        let credentials = Credentials::new(None, Some(path));
        assert_eq!(
            credentials.for_host("reg.example:5000").unwrap(),
            Some(basic("user", "pass:word")),
            "{key}"
        );
        for other in ["reg.example", "reg.example:50001", "eg.example:5000"] {
            assert_eq!(credentials.for_host(other).unwrap(), None, "{key} {other}");
        }
    }
}

#[test]
fn auths_entry_fields_username_password_and_identity_token() {
    let (_dir, path) = docker_config(serde_json::json!({
        "auths": {
            "a.example": { "username": "ua", "password": "pa" },
            "b.example": { "identitytoken": "refresh" },
            "c.example": {},
            "d.example": { "auth": "!!" }
        }
    }));
    let credentials = Credentials::new(None, Some(path));
    assert_eq!(
        credentials.for_host("a.example").unwrap(),
        Some(basic("ua", "pa"))
    );
    assert_eq!(
        credentials.for_host("b.example").unwrap(),
        Some(Credential::IdentityToken("refresh".into()))
    );
    assert_eq!(credentials.for_host("c.example").unwrap(), None);
    let err = credentials.for_host("d.example").unwrap_err();
    assert!(err.to_string().contains("not base64"), "{err}");
}

#[test]
fn docker_config_that_is_not_json_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, "{not json").unwrap();
    let err = Credentials::new(None, Some(path))
        .for_host("h")
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    // No docker config at all: anonymous.
    let missing = Credentials::new(None, Some(dir.path().join("missing.json")));
    assert_eq!(missing.for_host("h").unwrap(), None);
}

#[test]
fn credential_helper_gets_the_host_on_stdin_and_answers() {
    let _serial = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let search = helper(
        dir.path(),
        r#"[ "$1" = get ] || exit 9
host=$(cat)
printf '{"ServerURL":"%s","Username":"user-for-%s","Secret":"s3cret"}' "$host" "$host""#,
    );
    let (_config_dir, path) = docker_config(serde_json::json!({ "credsStore": "test" }));
    let credentials =
        Credentials::new(None, Some(path)).with_helpers(search, Duration::from_secs(10));
    assert_eq!(
        credentials.for_host("reg.example:5000").unwrap(),
        Some(basic("user-for-reg.example:5000", "s3cret"))
    );
}

#[test]
fn credential_helper_per_host_wins_over_the_default_store() {
    let _serial = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let search = helper(
        dir.path(),
        r#"printf '{"Username":"<token>","Secret":"refresh"}'"#,
    );
    let (_config_dir, path) = docker_config(serde_json::json!({
        "credsStore": "missing-store",
        "credHelpers": { "reg.example": "test" }
    }));
    let credentials =
        Credentials::new(None, Some(path)).with_helpers(search, Duration::from_secs(10));
    assert_eq!(
        credentials.for_host("reg.example").unwrap(),
        Some(Credential::IdentityToken("refresh".into()))
    );
    // Another host uses the default store, which is not installed: a clear error.
    let err = credentials.for_host("other.example").unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains("docker-credential-missing-store"),
        "{err}"
    );
}

#[test]
fn credential_helper_not_found_answer_means_the_auths_entry_or_anonymous() {
    let _serial = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let search = helper(
        dir.path(),
        "echo 'credentials not found in native keychain'; exit 1",
    );
    let (_config_dir, path) = docker_config(serde_json::json!({
        "credsStore": "test",
        "auths": { "a.example": { "auth": encoded("a:b") } }
    }));
    let credentials =
        Credentials::new(None, Some(path)).with_helpers(search, Duration::from_secs(10));
    assert_eq!(
        credentials.for_host("a.example").unwrap(),
        Some(basic("a", "b"))
    );
    assert_eq!(credentials.for_host("b.example").unwrap(), None);
}

#[test]
fn credential_helper_failure_reported_with_sanitized_output() {
    let _serial = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let search = helper(
        dir.path(),
        r"printf 'keychain locked\n\033[31mforged line' >&2; exit 3",
    );
    let (_config_dir, path) = docker_config(serde_json::json!({ "credsStore": "test" }));
    let credentials =
        Credentials::new(None, Some(path)).with_helpers(search, Duration::from_secs(10));
    let err = credentials.for_host("a.example").unwrap_err();
    let text = err.to_string();
    assert_eq!(err.exit_code(), 2);
    assert!(text.contains("docker-credential-test"), "{text}");
    assert!(text.contains("keychain locked [31mforged line"), "{text}");
    assert!(!text.contains('\n') && !text.contains('\x1b'), "{text}");
}

#[test]
fn credential_helper_stopped_after_its_timeout() {
    let _serial = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let search = helper(dir.path(), "exec sleep 30");
    let (_config_dir, path) = docker_config(serde_json::json!({ "credsStore": "test" }));
    let credentials =
        Credentials::new(None, Some(path)).with_helpers(search, Duration::from_millis(300));
    let started = Instant::now();
    let err = credentials.for_host("a.example").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.to_string().contains("no answer within"), "{err}");
}

#[test]
fn credential_helper_output_over_the_cap_refused() {
    let _serial = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let search = helper(
        dir.path(),
        "exec yes '{\"Username\":\"u\",\"Secret\":\"s\"}'",
    );
    let (_config_dir, path) = docker_config(serde_json::json!({ "credsStore": "test" }));
    let credentials =
        Credentials::new(None, Some(path)).with_helpers(search, Duration::from_secs(10));
    let err = credentials.for_host("a.example").unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");
}

#[test]
fn credential_helper_name_cannot_be_a_path() {
    let (_config_dir, path) = docker_config(serde_json::json!({ "credsStore": "../../bin/sh" }));
    let err = Credentials::new(None, Some(path))
        .for_host("a.example")
        .unwrap_err();
    assert!(err.to_string().contains("helper name"), "{err}");
}
