//! `distd`: build, publish, sign and promote customized Go toolchains, and serve the
//! publisher daemon. Flags live in `cli::args`, one function per command in `cli::commands`.

mod build;
mod cli;
mod ctl;
mod events;
mod judge;
mod ledger;
mod lifecycle;
mod line;
mod monitor;
mod package;
mod publish;
mod rebuild;
mod rollout;
mod serve;
mod sign;
mod trust_root;

use std::process::ExitCode;

use cli::args::Cli;
use cli::commands::CommandExit;
use tcdist_core::program;

fn main() -> ExitCode {
    let config = program::ConfigFile {
        variable: "TCDIST_CONFIG",
        default: std::path::Path::new("/etc/tcdist/distd.toml"),
    };
    let cli: Cli = match program::parse_args("distd", &config) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match program::start_runtime("distd") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = cli::commands::run(cli.command, &runtime);
    // A build thread still copying or building after SIGTERM is not waited for.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Each cause once: an error whose message quotes its source does not repeat it.
            let chain =
                tcdist_oci::registry::error_chain(AsRef::<dyn std::error::Error>::as_ref(&err));
            eprintln!("distd: error: {chain}");
            let code = match err.downcast_ref::<CommandExit>() {
                Some(exit) => exit.code,
                None => err
                    .chain()
                    .find_map(|cause| cause.downcast_ref::<tcdist_core::Error>())
                    .map_or(1, tcdist_core::Error::exit_code),
            };
            ExitCode::from(code)
        }
    }
}
