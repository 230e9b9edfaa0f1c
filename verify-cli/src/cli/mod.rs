//! The `tcverify` command line: flags → settings, commands, output, exit codes.

pub mod agent_mode;
pub mod args;
pub mod commands;
pub mod printer;

use std::process::ExitCode;

use tcdist_core::Error;

/// Prints an error with its hint and picks the exit code (the one place that does).
pub fn exit_with(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tcverify: error: {err}");
            if let Some(hint) = err.hint() {
                eprintln!("tcverify: hint: {hint}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}
