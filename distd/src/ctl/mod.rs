//! `distd ctl`: the daemon's client. It authenticates with the caller's X.509-SVID from the
//! Workload API (the one for `--as` when the caller holds several) and accepts only a server
//! presenting `--server-id`'s SVID. Answers are printed as JSON on stdout; a followed log
//! goes to stderr as it comes.

use anyhow::Result;
use clap::{Args, Subcommand};
use distd_api::client::{Answer, Client};
use distd_api::wire::{Catalog, LifecycleAnswer, PromoteRequest, YankRequest};
use http::Method;
use serde::Serialize;
use tcdist_verify::spiffe_id::SpiffeId;

mod jobs;
mod rollout;

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The daemon: https://HOST:PORT
    #[arg(long, env = "TCDIST_SERVER", value_name = "URL")]
    server: String,
    /// The daemon's SPIFFE ID; a server with another SVID is refused
    #[arg(long, env = "TCDIST_SERVER_ID", value_name = "SPIFFE_ID")]
    server_id: String,
    /// The SPIFFE ID to call as, when this process holds several SVIDs (default: the Workload
    /// API's first)
    #[arg(long = "as", env = "TCDIST_CTL_ID", value_name = "SPIFFE_ID")]
    caller: Option<String>,
    /// The SPIFFE Workload API (the SPIRE agent's socket)
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET", value_name = "unix:///PATH")]
    spiffe_endpoint_socket: String,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// Lines, their releases, channel heads and yanks
    Catalog,
    /// Request a build of a line; prints the job
    Build {
        line: String,
        /// Follow the job's log until it ends; exit 1 unless it succeeded
        #[arg(long)]
        follow: bool,
    },
    /// Every job
    Jobs,
    /// One job's state; with --follow, its log until it ends
    Job {
        id: u64,
        #[arg(long)]
        follow: bool,
    },
    /// Cancel a queued or running job
    Cancel { id: u64 },
    /// Promote a release of a line to one of its channels
    Promote {
        line: String,
        #[arg(value_name = "DIGEST")]
        release: String,
        #[arg(long)]
        channel: String,
    },
    /// Yank a release of a line
    Yank {
        line: String,
        #[arg(value_name = "DIGEST")]
        release: String,
        #[arg(long)]
        reason: String,
    },
    /// Start, advance, halt, abort or finish a channel's rollout, signed by the daemon; or
    /// show a line's rollouts
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
}

/// The exit code for an error of `distd ctl`: refused or unknown (2), unreachable (3), else 1;
/// an error found before an answer has its own code (a bad flag: 2).
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(answer) = err.chain().find_map(|c| c.downcast_ref::<Answer>()) {
        return match answer.status.as_u16() {
            400 | 403 | 404 => 2,
            502 | 503 => 3,
            _ => 1,
        };
    }
    if let Some(error) = err
        .chain()
        .find_map(|c| c.downcast_ref::<tcdist_core::Error>())
    {
        return error.exit_code();
    }
    let unreachable = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some() || c.downcast_ref::<hyper::Error>().is_some()
    });
    if unreachable { 3 } else { 1 }
}

pub async fn run(args: CtlArgs) -> Result<()> {
    let usage =
        |flag: &str, e: &dyn std::fmt::Display| tcdist_core::Error::usage(format!("{flag}: {e}"));
    let server_id = SpiffeId::parse(&args.server_id).map_err(|e| usage("--server-id", &e))?;
    let caller = args
        .caller
        .as_deref()
        .map(SpiffeId::parse)
        .transpose()
        .map_err(|e| usage("--as", &e))?;
    let source =
        distd_api::tls::workload_source(&args.spiffe_endpoint_socket, caller.as_ref()).await?;
    let client = Client::new(
        &args.server,
        distd_api::tls::client_config(source.clone(), &server_id)?,
    )?;
    let result = command(&client, args.command).await;
    source.shutdown().await;
    result
}

async fn command(client: &Client, command: CtlCommand) -> Result<()> {
    match command {
        CtlCommand::Catalog => print(
            &client
                .call::<Catalog>(Method::GET, "/v1/catalog", None::<&()>)
                .await?,
        ),
        CtlCommand::Build { line, follow } => jobs::build(client, &line, follow).await,
        CtlCommand::Jobs => jobs::list(client).await,
        CtlCommand::Job { id, follow } => jobs::show(client, id, follow).await,
        CtlCommand::Cancel { id } => jobs::cancel(client, id).await,
        CtlCommand::Promote {
            line,
            release,
            channel,
        } => print(
            &client
                .call::<LifecycleAnswer>(
                    Method::POST,
                    &format!("/v1/lines/{line}/promote"),
                    Some(&PromoteRequest { release, channel }),
                )
                .await?,
        ),
        CtlCommand::Yank {
            line,
            release,
            reason,
        } => print(
            &client
                .call::<LifecycleAnswer>(
                    Method::POST,
                    &format!("/v1/lines/{line}/yank"),
                    Some(&YankRequest { release, reason }),
                )
                .await?,
        ),
        CtlCommand::Rollout(command) => rollout::run(client, command).await,
    }
}

fn print(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
