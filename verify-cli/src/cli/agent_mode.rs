//! Settings a command cannot take through the agent. The agent verifies and installs with its
//! own policy, trust, store and credentials; a job's flag or variable that it would not honour
//! is refused (exit 2), so nobody believes a setting applied that did not.

use clap::parser::ValueSource;
use tcdist_core::Error;

/// What a request to the agent carries: every other setting given is refused. Listing what is
/// sent, not what is dropped, refuses a flag added later until it is sent too.
const SENT_TO_THE_AGENT: &[&str] = &[
    "reference",
    "socket",
    "platform",
    "json",
    "format",
    "job_id",
    "retry",
    "pipeline",
    "exit_status",
    "cancelled",
    "if_served",
];

/// Refuses, for a command run through the agent (`--agent` or `TCVERIFY_AGENT`), every setting
/// given on its command line, in its environment or by the config file that the agent does not
/// take from a caller.
pub fn refuse_unsent_settings(
    command: &clap::Command,
    matches: &clap::ArgMatches,
) -> Result<(), Error> {
    let Some((name, matches)) = matches.subcommand() else {
        return Ok(());
    };
    let Some(command) = command.find_subcommand(name) else {
        return Ok(());
    };
    let through_agent = command.get_arguments().any(|arg| arg.get_id() == "socket")
        && matches.value_source("socket").is_some();
    if !through_agent {
        return Ok(());
    }
    let refused: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|arg| !SENT_TO_THE_AGENT.contains(&arg.get_id().as_str()))
        .filter(|arg| {
            matches!(
                matches.value_source(arg.get_id().as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .collect();
    let Some(first) = refused.first() else {
        return Ok(());
    };
    let named: Vec<String> = refused
        .iter()
        .map(|arg| setting_name(arg, matches))
        .collect();
    Err(Error::usage_with_hint(
        format!(
            "{} {} not honoured through the agent",
            named.join(", "),
            if named.len() == 1 { "is" } else { "are" }
        ),
        format!(
            "{} Unset it (a key of the config file, TCVERIFY_CONFIG or /etc/tcdist/tcverify.toml, \
             sets its variable too), or run in direct mode, tcverify without --agent and \
             TCVERIFY_AGENT, where this command's own settings and store are used",
            why_not_taken(first.get_id().as_str())
        ),
    ))
}

/// `--store`, or `TCVERIFY_STORE (--store)` when the variable set it.
fn setting_name(arg: &clap::Arg, matches: &clap::ArgMatches) -> String {
    let flag = match arg.get_long() {
        Some(long) => format!("--{long}"),
        None => arg.get_id().to_string(),
    };
    match (matches.value_source(arg.get_id().as_str()), arg.get_env()) {
        (Some(ValueSource::EnvVariable), Some(variable)) => {
            format!("{} ({flag})", variable.to_string_lossy())
        }
        _ => flag,
    }
}

fn why_not_taken(id: &str) -> &'static str {
    match id {
        "allow_expired" | "allow_yanked" => {
            "The agent decides trust from its own config, never from a job; an operator waives a \
             check in direct mode with a store of their own."
        }
        "host_id" => {
            "The agent decides this host's arm in a channel's rollout (its config's host_id, else \
             its SVID's SPIFFE ID), never a job."
        }
        _ => {
            "The agent verifies and installs with its own policy, trust, store, credentials and \
             limits (its config file, docs/agent.md), never a job's."
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::cli::args::Cli;

    fn check(args: &[&str]) -> Result<(), Error> {
        let matches = Cli::command()
            .try_get_matches_from(std::iter::once("tcverify").chain(args.iter().copied()))
            .unwrap();
        refuse_unsent_settings(&Cli::command(), &matches)
    }

    fn message(args: &[&str]) -> String {
        match check(args) {
            Err(Error::Usage { message, .. }) => message,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    const AGENT: &[&str] = &["--agent", "/run/tcdist/agent.sock"];

    #[test]
    fn what_the_request_carries_is_accepted() {
        for args in [
            &[
                "pull",
                "r/x:stable",
                "--json",
                "--platform",
                "linux/arm64",
                "--job-id",
                "j",
                "--retry",
                "1",
            ][..],
            &["verify", "r/x:stable", "--json"],
            &["env", "r/x:stable", "--format", "json"],
            &[
                "report",
                "--job-id",
                "j",
                "--pipeline",
                "p",
                "--exit-status",
                "1",
                "--cancelled",
                "--if-served",
            ],
        ] {
            check(&[args, AGENT].concat()).unwrap();
        }
    }

    #[test]
    fn every_setting_the_agent_ignores_is_named() {
        assert_eq!(
            message(&[
                "pull",
                "r/x:stable",
                "--store",
                "/tmp/s",
                "--policy",
                "p.toml",
                "--jobs",
                "2",
                "--agent",
                "/s"
            ]),
            "--policy, --store, --jobs are not honoured through the agent"
        );
        for (flag, value) in [
            ("--trust", Some("t.json")),
            ("--audit-log", Some("-")),
            ("--offline", None),
            ("--registry-ca", Some("ca.pem")),
            ("--registry-plain-http", None),
            ("--registry-retries", Some("0")),
            ("--max-unpacked-bytes", Some("1")),
            ("--allow-yanked", None),
            ("--host-id", Some("build-1")),
        ] {
            let args: Vec<&str> = ["pull", "r/x:stable", flag]
                .into_iter()
                .chain(value)
                .chain(AGENT.iter().copied())
                .collect();
            assert_eq!(
                message(&args),
                format!("{flag} is not honoured through the agent")
            );
        }
        assert_eq!(
            message(&[&["verify", "r/x:stable", "--store", "/s"][..], AGENT].concat()),
            "--store is not honoured through the agent"
        );
        assert_eq!(
            message(&[&["env", "r/x:stable", "--store", "/s"][..], AGENT].concat()),
            "--store is not honoured through the agent"
        );
    }

    #[test]
    fn direct_mode_takes_every_setting() {
        check(&[
            "pull",
            "r/x:stable",
            "--store",
            "/s",
            "--policy",
            "p",
            "--allow-yanked",
        ])
        .unwrap();
    }

    #[test]
    fn the_hint_says_why_for_the_first_setting() {
        let Err(Error::Usage {
            hint: Some(hint), ..
        }) = check(&[&["pull", "r/x:stable", "--host-id", "h"][..], AGENT].concat())
        else {
            panic!("not refused");
        };
        assert!(
            hint.starts_with("The agent decides this host's arm"),
            "{hint}"
        );
        assert!(hint.contains("direct mode"), "{hint}");
    }
}
