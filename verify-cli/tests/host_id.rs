//! The host ID as the `tcverify` binary takes it: `--host-id` and `TCVERIFY_HOST_ID` in direct
//! mode, refused (exit 2) through the agent, checked before anything is contacted.

use std::process::{Command, Output};

/// Runs tcverify with only `env` (and an empty config file) in its environment.
fn tcverify(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tcverify.toml");
    std::fs::write(&config, "").unwrap();
    Command::new(env!("CARGO_BIN_EXE_tcverify"))
        .args(args)
        .env_clear()
        .env("TCVERIFY_CONFIG", &config)
        .env("HOME", dir.path())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const REF: &str = "registry.invalid/toolchains/go:stable";
const SOCKET: &str = "/nonexistent/tcdist/agent.sock";

#[test]
fn host_id_flag_refused_through_the_agent() {
    for command in ["pull", "verify"] {
        let out = tcverify(
            &[command, REF, "--agent", SOCKET, "--host-id", "build-017"],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("tcverify: error: --host-id / TCVERIFY_HOST_ID (\"build-017\") is not accepted through the agent"),
            "{err}"
        );
        assert!(
            err.contains("tcverify: hint: the agent decides this host's arm"),
            "{err}"
        );
        // Refused before the agent is asked: an unreachable agent would exit 3.
        assert!(!err.contains("cannot connect"), "{err}");
    }
}

#[test]
fn host_id_variable_refused_while_the_agent_variable_is_set() {
    let out = tcverify(
        &["pull", REF],
        &[
            ("TCVERIFY_AGENT", SOCKET),
            ("TCVERIFY_HOST_ID", "build-017"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("TCVERIFY_HOST_ID"), "{err}");
    assert!(err.contains("direct mode"), "{err}");
}

#[test]
fn agent_without_a_host_id_is_asked() {
    // The same request without a host ID goes to the agent (which is not there: exit 3).
    let out = tcverify(&["pull", REF], &[("TCVERIFY_AGENT", SOCKET)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn host_id_variable_rejected_if_invalid() {
    for value in ["host\n7", " host", &"h".repeat(256)] {
        let out = tcverify(&["verify", REF], &[("TCVERIFY_HOST_ID", value)]);
        assert_eq!(out.status.code(), Some(2), "{value:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("--host-id <ID>") && err.contains("a host ID"),
            "{err}"
        );
    }
}

#[test]
fn help_names_the_host_id_variable() {
    let out = tcverify(&["pull", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[env: TCVERIFY_HOST_ID="), "{help}");
}
