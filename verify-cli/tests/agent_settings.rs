//! Settings through the agent as the `tcverify` binary takes them: what the agent would not
//! honour (a store, a policy, a host ID, …) is refused with exit 2 when given by flag, variable
//! or config file, before anything is contacted; direct mode takes them all.

use std::process::{Command, Output};

/// Runs tcverify with only `env` (and an empty config file) in its environment.
fn tcverify(args: &[&str], env: &[(&str, &str)]) -> Output {
    tcverify_with_config(args, env, "")
}

/// Runs tcverify with only `env` in its environment and `config` as its config file.
fn tcverify_with_config(args: &[&str], env: &[(&str, &str)], config_text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tcverify.toml");
    std::fs::write(&config, config_text).unwrap();
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
            err.contains("tcverify: error: --host-id is not honoured through the agent"),
            "{err}"
        );
        assert!(
            err.contains("tcverify: hint: The agent decides this host's arm"),
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
    assert!(
        err.contains("error: TCVERIFY_HOST_ID (--host-id) is not honoured through the agent"),
        "{err}"
    );
    assert!(err.contains("direct mode"), "{err}");
}

#[test]
fn store_flag_and_policy_variable_refused_through_the_agent() {
    let out = tcverify(
        &["pull", REF, "--store", "/tmp/mine"],
        &[("TCVERIFY_AGENT", SOCKET)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("error: --store is not honoured through the agent"),
        "{}",
        stderr(&out)
    );
    let out = tcverify(
        &["verify", REF],
        &[
            ("TCVERIFY_AGENT", SOCKET),
            ("TCVERIFY_POLICY", "strict.toml"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("error: TCVERIFY_POLICY (--policy) is not honoured through the agent"),
        "{err}"
    );
    assert!(
        err.contains("hint: The agent verifies and installs with its own policy"),
        "{err}"
    );
    assert!(!err.contains("cannot connect"), "{err}");
}

#[test]
fn config_file_setting_refused_through_the_agent() {
    let out = tcverify_with_config(
        &["pull", REF, "--agent", SOCKET],
        &[],
        "store = \"/tmp/mine\"\njobs = 2\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "error: TCVERIFY_STORE (--store), TCVERIFY_JOBS (--jobs) are not honoured through the agent"
        ),
        "{}",
        stderr(&out)
    );
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
