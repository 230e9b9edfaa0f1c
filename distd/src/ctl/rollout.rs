//! `distd ctl rollout`: start and move a line's rollouts through the daemon, which signs them
//! with its promoter, and show where they stand (from the catalog).

use anyhow::Result;
use clap::{Args, Subcommand};
use distd_api::client::Client;
use distd_api::wire::{
    Catalog, ChannelHead, RolloutAnswer, RolloutMoveRequest, RolloutStartRequest,
};
use http::Method;
use jiff::SignedDuration;
use serde::Serialize;
use tcdist_oci::attachments::rollout::Share;

use super::print;
use crate::cli::args::{Plan, parse_duration, parse_plan};

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Start rolling a release of a line out to one of its channels, from the release the
    /// channel's head names; prints where the rollout stands
    Start {
        /// The release line
        line: String,
        /// The candidate's index digest
        #[arg(value_name = "DIGEST")]
        release: String,
        /// One of the line's channels
        #[arg(long, value_name = "NAME")]
        channel: String,
        /// The first stage's share of hosts (e.g. 5%); alone, the plan is it, then 100%
        #[arg(long, value_name = "SHARE")]
        share: Option<Share>,
        /// The plan: SHARE[:SOAK[:MIN_JOBS[:MIN_HOSTS]]],… ending in 100%
        #[arg(long, value_name = "STAGES", value_parser = parse_plan)]
        stages: Option<Plan>,
        /// How long the running statement is valid (the daemon's default: 15m)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<SignedDuration>,
    },
    /// The line's channels: each one's head and newest rollout statement
    Status {
        /// The release line
        line: String,
    },
    /// Move the rollout to its plan's next stage, or to --share
    Advance {
        #[command(flatten)]
        on: LineChannel,
        /// A later stage of the plan, or a new one (a new plan, same salt)
        #[arg(long, value_name = "SHARE")]
        share: Option<Share>,
    },
    /// Stop the rollout: every host gets the current release again; advance resumes it
    Halt {
        #[command(flatten)]
        on: LineChannel,
        /// Why: the status and every host's pull report it
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Give the rollout up: every host gets the current release, and the plan is over
    Abort {
        #[command(flatten)]
        on: LineChannel,
        /// Why: the status and every host's pull report it
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// End the running rollout: its candidate becomes the channel's head (the tag moves)
    Finish {
        #[command(flatten)]
        on: LineChannel,
    },
}

/// The channel of a line whose rollout a command moves.
#[derive(Args, Debug)]
pub struct LineChannel {
    /// The release line
    line: String,
    /// One of the line's channels
    #[arg(long, value_name = "NAME")]
    channel: String,
}

impl LineChannel {
    fn path(&self, verb: &str) -> String {
        format!("/v1/lines/{}/rollouts/{}/{verb}", self.line, self.channel)
    }
}

/// `distd ctl rollout status`: the line's part of the catalog.
#[derive(Serialize)]
struct LineRollouts {
    line: String,
    channels: Vec<ChannelHead>,
}

pub async fn run(client: &Client, command: RolloutCommand) -> Result<()> {
    let answer: RolloutAnswer = match command {
        RolloutCommand::Start {
            line,
            release,
            channel,
            share,
            stages,
            expires,
        } => {
            let request = start_request(release, channel, share, stages, expires);
            let path = format!("/v1/lines/{line}/rollouts");
            client.call(Method::POST, &path, Some(&request)).await?
        }
        RolloutCommand::Status { line } => return status(client, &line).await,
        RolloutCommand::Advance { on, share } => {
            let share = share.map(|share| share.to_string());
            moved(client, &on, "advance", share, None).await?
        }
        RolloutCommand::Halt { on, reason } => {
            moved(client, &on, "halt", None, Some(reason)).await?
        }
        RolloutCommand::Abort { on, reason } => {
            moved(client, &on, "abort", None, Some(reason)).await?
        }
        RolloutCommand::Finish { on } => {
            client
                .call(Method::POST, &on.path("finish"), None::<&()>)
                .await?
        }
    };
    print(&answer)
}

async fn moved(
    client: &Client,
    on: &LineChannel,
    verb: &str,
    share: Option<String>,
    reason: Option<String>,
) -> Result<RolloutAnswer> {
    let request = RolloutMoveRequest { share, reason };
    client
        .call(Method::POST, &on.path(verb), Some(&request))
        .await
}

/// The start request for the flags as parsed; the daemon checks the plan they make.
fn start_request(
    release: String,
    channel: String,
    share: Option<Share>,
    stages: Option<Plan>,
    expires: Option<SignedDuration>,
) -> RolloutStartRequest {
    RolloutStartRequest {
        release,
        channel,
        share: share.map(|share| share.to_string()),
        stages: stages
            .map(|Plan(stages)| stages.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        // The friendly form (`15m`, `1h 30m`), which the daemon parses as the flag was.
        expires: expires.map(|expires| format!("{expires:#}")),
    }
}

async fn status(client: &Client, line: &str) -> Result<()> {
    let catalog: Catalog = client.call(Method::GET, "/v1/catalog", None::<&()>).await?;
    let Some(found) = catalog.lines.into_iter().find(|l| l.name == line) else {
        return Err(tcdist_core::Error::usage(format!(
            "the catalog has no line {line:?} (or the caller may not read it)"
        ))
        .into());
    };
    print(&LineRollouts {
        line: found.name,
        channels: found.channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_flags_reach_the_daemon_as_they_were_given() {
        let given = "5%:90m:400:20,25%:1d,100%";
        let request = start_request(
            "sha256:ab".to_owned(),
            "stable".to_owned(),
            Some("5%".parse().unwrap()),
            Some(parse_plan(given).unwrap()),
            Some(parse_duration("90m").unwrap()),
        );
        assert_eq!(request.share.as_deref(), Some("5%"));
        assert_eq!(
            parse_plan(&request.stages.join(",")).unwrap().0,
            parse_plan(given).unwrap().0
        );
        let expires = request.expires.unwrap();
        assert_eq!(
            parse_duration(&expires).unwrap(),
            SignedDuration::from_mins(90)
        );
    }

    #[test]
    fn start_without_stages_or_expiry_leaves_them_to_the_daemon() {
        let request = start_request("d".into(), "c".into(), None, None, None);
        assert!(request.stages.is_empty() && request.expires.is_none());
    }
}
