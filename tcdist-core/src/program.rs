//! What both binaries do before their command runs: read the settings (flags, then their
//! environment variables, then a config file) and start the async runtime, failing with the
//! exit codes DESIGN.md gives rather than a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where a program's config file is: the file `variable` names (which must exist), else
/// `default` when it exists.
pub struct ConfigFile<'a> {
    pub variable: &'a str,
    pub default: &'a Path,
}

/// The parsed command line, with the config file's settings beneath it; or the exit code after
/// clap printed help, a version or a usage error (clap's own codes: 0 for help, 2 for usage
/// errors), or after a config file error (2).
pub fn parse_args<C: clap::Parser>(program: &str, config: &ConfigFile<'_>) -> Result<C, ExitCode> {
    parse_args_with_matches(program, config).map(|(cli, _)| cli)
}

/// [`parse_args`], with clap's matches beside the settings: they tell a setting given by a
/// flag or a variable from one left at its default.
pub fn parse_args_with_matches<C: clap::Parser>(
    program: &str,
    config: &ConfigFile<'_>,
) -> Result<(C, clap::ArgMatches), ExitCode> {
    if let Err(message) = apply_config_file(&C::command(), config) {
        eprintln!("{program}: error: {message}");
        return Err(ExitCode::from(2));
    }
    let usage_error = |err: clap::Error| {
        let _ = err.print();
        ExitCode::from(err.exit_code() as u8)
    };
    // Built again: clap reads each argument's variable when the command is built, and the
    // config file has just set some.
    let matches = C::command().try_get_matches().map_err(usage_error)?;
    let cli = C::from_arg_matches(&matches).map_err(usage_error)?;
    Ok((cli, matches))
}

/// The multi-threaded runtime; when it cannot start (no threads, no file descriptors), a message
/// naming `program` and exit 4, the code for a local resource failure.
pub fn start_runtime(program: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{program}: error: cannot start the async runtime: {e}");
            ExitCode::from(4)
        })
}

/// Applies the config file: each key is a flag's long name, and its value becomes that flag's
/// environment variable where the environment does not set it already. So flags win over the
/// environment, and the environment over the file, with one parser for all three.
fn apply_config_file(command: &clap::Command, config: &ConfigFile<'_>) -> Result<(), String> {
    let Some(path) = config_path(config)? else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    let settings = config_settings(&text, &flag_variables(command))
        .map_err(|e| format!("config file {}: {e}", path.display()))?;
    for (variable, value) in settings {
        if std::env::var_os(&variable).is_none() {
            // SAFETY: called first thing in main, before the runtime or any other thread
            // exists, so nothing reads the environment concurrently.
            unsafe { std::env::set_var(&variable, value) };
        }
    }
    Ok(())
}

fn config_path(config: &ConfigFile<'_>) -> Result<Option<PathBuf>, String> {
    match std::env::var_os(config.variable) {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(Some(path))
            } else {
                Err(format!(
                    "{}={} names no config file",
                    config.variable,
                    path.display()
                ))
            }
        }
        _ => Ok(config
            .default
            .is_file()
            .then(|| config.default.to_path_buf())),
    }
}

/// Every long flag that has an environment variable, in every subcommand.
fn flag_variables(command: &clap::Command) -> BTreeMap<String, BTreeSet<String>> {
    let mut flags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![command];
    while let Some(command) = pending.pop() {
        for arg in command.get_arguments() {
            if let (Some(long), Some(variable)) = (arg.get_long(), arg.get_env()) {
                flags
                    .entry(long.to_owned())
                    .or_default()
                    .insert(variable.to_string_lossy().into_owned());
            }
        }
        pending.extend(command.get_subcommands());
    }
    flags
}

/// The (variable, value) pairs a config file sets. Unknown keys and values that are not
/// strings, integers or booleans are errors, so a misspelt setting is not silently ignored.
fn config_settings(
    text: &str,
    flags: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<(String, String)>, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("is not valid TOML: {}", e.message()))?;
    let mut settings = Vec::new();
    for (key, value) in table {
        let Some(variables) = flags.get(&key) else {
            return Err(format!(
                "unknown setting {key:?}; the settings are the long flags that have an \
                 environment variable: {}",
                flags.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        };
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "setting {key:?} must be a string, an integer or a boolean, not {}",
                    other.type_str()
                ));
            }
        };
        settings.extend(variables.iter().map(|v| (v.clone(), value.clone())));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn command() -> Command {
        Command::new("t")
            .arg(Arg::new("policy").long("policy").env("T_POLICY"))
            .arg(Arg::new("json").long("json"))
            .subcommand(Command::new("pull").arg(Arg::new("jobs").long("jobs").env("T_JOBS")))
    }

    #[test]
    fn settings_name_the_flags_variables_in_every_subcommand() {
        let flags = flag_variables(&command());
        let settings = config_settings("policy = \"/etc/p.toml\"\njobs = 8\n", &flags).unwrap();
        assert_eq!(
            settings,
            [
                ("T_POLICY".to_owned(), "/etc/p.toml".to_owned()),
                ("T_JOBS".to_owned(), "8".to_owned())
            ]
        );
    }

    #[test]
    fn unknown_or_flag_without_variable_is_refused() {
        let flags = flag_variables(&command());
        let error = config_settings("polcy = \"x\"", &flags).unwrap_err();
        assert!(error.starts_with("unknown setting \"polcy\""), "{error}");
        assert!(error.ends_with("jobs, policy"), "{error}");
        assert!(config_settings("json = true", &flags).is_err());
    }

    #[test]
    fn tables_and_arrays_are_refused() {
        let flags = flag_variables(&command());
        let error = config_settings("policy = [\"a\"]", &flags).unwrap_err();
        assert!(error.contains("must be a string, an integer or a boolean, not array"));
        assert!(
            config_settings("policy =", &flags)
                .unwrap_err()
                .starts_with("is not valid TOML")
        );
    }
}
