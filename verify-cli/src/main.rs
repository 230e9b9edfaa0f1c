//! `tcverify`: verify, fetch and install toolchain releases on build agents.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // clap's own exit code for usage errors is 2, as DESIGN.md wants; help is 0.
            return ExitCode::from(err.exit_code() as u8);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tcverify: error: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Pull(args) => cli::commands::pull_command(args).await,
            Command::Verify(args) => cli::commands::verify_command(args).await,
            Command::Env(args) => cli::commands::env_command(args),
            Command::Ls(args) => cli::commands::ls_command(args),
            Command::Gc(args) => cli::commands::gc_command(args),
            Command::Policy(cli::args::PolicyCommand::Check(args)) => {
                cli::commands::policy_check_command(args)
            }
        }
    });
    cli::exit_with(result)
}
