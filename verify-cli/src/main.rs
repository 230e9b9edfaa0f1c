//! `tcverify`: verify, fetch and install toolchain releases on build agents.

mod cli;

use std::process::ExitCode;

use clap::CommandFactory;
use cli::args::{Cli, Command};
use tcdist_core::program;

fn main() -> ExitCode {
    let config = program::ConfigFile {
        variable: "TCVERIFY_CONFIG",
        default: std::path::Path::new("/etc/tcdist/tcverify.toml"),
    };
    let (cli, matches): (Cli, _) = match program::parse_args_with_matches("tcverify", &config) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    if let Err(err) = cli::agent_mode::refuse_unsent_settings(&Cli::command(), &matches) {
        return cli::exit_with(Err(err));
    }
    if let Command::Agent(args) = &cli.command {
        return run_agent(&args.config);
    }
    let runtime = match program::start_runtime("tcverify") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Pull(args) => cli::commands::pull_command(args).await,
            Command::Verify(args) => cli::commands::verify_command(args).await,
            Command::Env(args) => cli::commands::env_command(args).await,
            Command::Report(args) => cli::commands::report_command(args).await,
            Command::Ls(args) => cli::commands::ls_command(args),
            Command::Gc(args) => cli::commands::gc_command(args),
            Command::Fsck(args) => cli::commands::fsck_command(args),
            Command::Audit(cli::args::AuditCommand::Verify(args)) => {
                cli::commands::audit_verify_command(args)
            }
            Command::Policy(cli::args::PolicyCommand::Check(args)) => {
                cli::commands::policy_check_command(args)
            }
            Command::Agent(_) => unreachable!("the agent runs before the runtime starts"),
        }
    });
    cli::exit_with(result)
}

/// The agent: its config, then its process environment set from the config alone (before any
/// thread exists), then the service.
fn run_agent(config: &std::path::Path) -> ExitCode {
    let config = match tcverify::agent::config::AgentConfig::load(config) {
        Ok(config) => config,
        Err(err) => return cli::exit_with(Err(err)),
    };
    config.apply_to_process_environment();
    let runtime = match program::start_runtime("tcverify") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let host = tcverify::agent::host::resolve(&config).await?;
        let agent = tcverify::agent::server::Agent::new(config, host)?;
        std::sync::Arc::new(agent).serve().await
    });
    // Requests in flight had their time to finish (`serve`); a prefetch round still
    // downloading is abandoned, leaving a staging directory the next pull removes.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    cli::exit_with(result)
}
