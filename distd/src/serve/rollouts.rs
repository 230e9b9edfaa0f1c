//! The API's rollout routes: start, advance, halt, abort and finish a channel's rollout. They
//! sign with the daemon's promoter through the functions `distd rollout` uses, one lifecycle
//! change at a time, and answer with the channel's rollout as read back within that change.
//! Each needs the `promote` action on the line; yanking the candidate (`yank`) is the other
//! emergency stop.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Extension, Json, Router};
use distd_api::wire::{Action, RolloutAnswer, RolloutMoveRequest, RolloutStartRequest};
use jiff::SignedDuration;
use tcdist_oci::attachments::rollout::{
    RolloutState, Share, Stage, WHOLE_CHANNEL, check_reason, parse_stages, plan_stages,
};

use super::api::{Caller, Daemon, Failure, Shared};
use crate::line::ReleaseLine;
use crate::rollout::{self, Move, StartRequest};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/lines/{line}/rollouts", post(start))
        .route("/v1/lines/{line}/rollouts/{channel}/advance", post(advance))
        .route("/v1/lines/{line}/rollouts/{channel}/halt", post(halt))
        .route("/v1/lines/{line}/rollouts/{channel}/abort", post(abort))
        .route("/v1/lines/{line}/rollouts/{channel}/finish", post(finish))
}

/// A body that is not the request's JSON is a bad request, whatever axum would answer.
fn body<T>(request: Result<Json<T>, JsonRejection>) -> Result<T, Failure> {
    request
        .map(|Json(request)| request)
        .map_err(|e| Failure::bad_request(format!("the request's body: {}", e.body_text())))
}

/// Refuses a channel that is not one of the line's: a rollout moves only channels the line
/// feeds.
fn check_channel(line: &str, channels: &[String], channel: &str) -> Result<(), Failure> {
    if channels.iter().any(|c| c == channel) {
        return Ok(());
    }
    Err(Failure::bad_request(format!(
        "line {line:?} feeds the channels {channels:?}, not {channel:?}"
    )))
}

/// `line`, when `channel` is one of its channels.
fn line_channel<'a>(
    daemon: &'a Daemon,
    line: &str,
    channel: &str,
) -> Result<&'a ReleaseLine, Failure> {
    let release_line = daemon.line(line)?;
    check_channel(line, &release_line.channels, channel)?;
    Ok(release_line)
}

fn parse_share(text: &str) -> Result<Share, Failure> {
    text.parse()
        .map_err(|e| Failure::bad_request(format!("share: {e}")))
}

/// The plan's stages and the running statement's lifetime that `request` asks for, checked
/// before anything is read or signed.
fn start_of(request: &RolloutStartRequest) -> Result<(Vec<Stage>, SignedDuration), Failure> {
    let share = request.share.as_deref().map(parse_share).transpose()?;
    let stages = match request.stages.as_slice() {
        [] => None,
        given => Some(
            parse_stages(&given.join(","))
                .map_err(|e| Failure::bad_request(format!("stages: {e}")))?,
        ),
    };
    let stages = plan_stages(share, stages)
        .map_err(|e| Failure::bad_request(format!("share, stages: {e}")))?;
    let expires_in = match &request.expires {
        None => rollout::DEFAULT_RUNNING_EXPIRY,
        Some(text) => crate::cli::args::parse_duration(text)
            .map_err(|e| Failure::bad_request(format!("expires: {e}")))?,
    };
    Ok((stages, expires_in))
}

/// Which move a route makes.
#[derive(Clone, Copy)]
enum Verb {
    Advance,
    Halt,
    Abort,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Advance => "advance",
            Verb::Halt => "halt",
            Verb::Abort => "abort",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Verb::Advance => "advanced",
            Verb::Halt => "halted",
            Verb::Abort => "aborted",
        }
    }
}

/// The move `request` asks for, checked: an advance takes at most a share, a halt or an abort
/// only a reason.
fn move_of(verb: Verb, request: RolloutMoveRequest) -> Result<Move, Failure> {
    let RolloutMoveRequest { share, reason } = request;
    match verb {
        Verb::Advance => {
            if reason.is_some() {
                return Err(Failure::bad_request(
                    "an advance takes no reason: halt or abort to stop a rollout".to_owned(),
                ));
            }
            let share = share.as_deref().map(parse_share).transpose()?;
            Ok(Move::Advance { share })
        }
        Verb::Halt => Ok(Move::Halt {
            reason: stop_reason(verb, share, reason)?,
        }),
        Verb::Abort => Ok(Move::Abort {
            reason: stop_reason(verb, share, reason)?,
        }),
    }
}

/// A halt's or an abort's reason: given, and without a share.
fn stop_reason(
    verb: Verb,
    share: Option<String>,
    reason: Option<String>,
) -> Result<String, Failure> {
    if share.is_some() {
        return Err(Failure::bad_request(format!(
            "a {} takes no share: it sends every host back to the current release",
            verb.as_str()
        )));
    }
    let reason = reason.unwrap_or_default();
    check_reason(&reason).map_err(Failure::bad_request)?;
    Ok(reason)
}

/// Runs `work` as one lifecycle change (so its read-back sees no other change of this daemon)
/// and hands its answer on.
async fn signed(
    daemon: &Daemon,
    work: impl Future<Output = anyhow::Result<RolloutAnswer>>,
) -> Result<RolloutAnswer, Failure> {
    let mut answer = None;
    daemon
        .change_lifecycle(async {
            let signed = work.await?;
            let sequence = signed.sequence;
            answer = Some(signed);
            Ok(sequence)
        })
        .await?;
    Ok(answer.expect("a lifecycle change that succeeded has its answer"))
}

/// `channel`'s rollout read back after statement `sequence` was signed: it must be the newest.
async fn read_back(
    daemon: &Daemon,
    line: &ReleaseLine,
    channel: &str,
    sequence: u64,
) -> anyhow::Result<RolloutAnswer> {
    let status = rollout::status(
        &line.repository,
        channel,
        &daemon.promoter,
        &daemon.registry,
    )
    .await?;
    let Some(read) = status.rollout.filter(|r| r.sequence == sequence) else {
        anyhow::bail!(
            "rollout statement {sequence} of channel {channel:?} was signed, but the channel \
             reads back without it: read the catalog"
        );
    };
    Ok(RolloutAnswer {
        channel: channel.to_owned(),
        sequence,
        state: read.state.to_string(),
        stage: read.stage,
        share: read.share,
    })
}

async fn start(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(line): Path<String>,
    request: Result<Json<RolloutStartRequest>, JsonRejection>,
) -> Result<Json<RolloutAnswer>, Failure> {
    let request = body(request)?;
    let target = format!("{} rollout start {}", request.channel, request.release);
    daemon.authorize(&caller, Action::Promote, Some(&line), Some(&target))?;
    let release_line = line_channel(&daemon, &line, &request.channel)?;
    let candidate = Daemon::release_of(release_line, &request.release)?;
    let (stages, expires_in) = start_of(&request)?;
    let plan: Vec<String> = stages.iter().map(ToString::to_string).collect();
    let start = StartRequest {
        channel: &request.channel,
        stages,
        expires_in,
    };
    let answer = signed(&daemon, async {
        let sequence =
            rollout::start(&candidate, &start, &daemon.promoter, &daemon.registry).await?;
        read_back(&daemon, release_line, &request.channel, sequence).await
    })
    .await?;
    eprintln!(
        "distd: {} started a rollout of {} on {line}/{} in stages {} (statement {})",
        caller.0,
        request.release,
        request.channel,
        plan.join(","),
        answer.sequence
    );
    Ok(Json(answer))
}

async fn advance(
    state: State<Shared>,
    caller: Extension<Caller>,
    path: Path<(String, String)>,
    request: Result<Json<RolloutMoveRequest>, JsonRejection>,
) -> Result<Json<RolloutAnswer>, Failure> {
    moved(Verb::Advance, state, caller, path, request).await
}

async fn halt(
    state: State<Shared>,
    caller: Extension<Caller>,
    path: Path<(String, String)>,
    request: Result<Json<RolloutMoveRequest>, JsonRejection>,
) -> Result<Json<RolloutAnswer>, Failure> {
    moved(Verb::Halt, state, caller, path, request).await
}

async fn abort(
    state: State<Shared>,
    caller: Extension<Caller>,
    path: Path<(String, String)>,
    request: Result<Json<RolloutMoveRequest>, JsonRejection>,
) -> Result<Json<RolloutAnswer>, Failure> {
    moved(Verb::Abort, state, caller, path, request).await
}

async fn moved(
    verb: Verb,
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((line, channel)): Path<(String, String)>,
    request: Result<Json<RolloutMoveRequest>, JsonRejection>,
) -> Result<Json<RolloutAnswer>, Failure> {
    let request = body(request)?;
    let target = format!("{channel} rollout {}", verb.as_str());
    daemon.authorize(&caller, Action::Promote, Some(&line), Some(&target))?;
    let release_line = line_channel(&daemon, &line, &channel)?;
    let change = move_of(verb, request)?;
    let why = match &change {
        Move::Halt { reason } | Move::Abort { reason } => format!(": {reason}"),
        Move::Advance { .. } => String::new(),
    };
    let answer = signed(&daemon, async {
        let repository = &release_line.repository;
        let sequence = rollout::change(
            repository,
            &channel,
            change,
            None,
            &daemon.promoter,
            &daemon.registry,
        )
        .await?;
        read_back(&daemon, release_line, &channel, sequence).await
    })
    .await?;
    eprintln!(
        "distd: {} {} the rollout on {line}/{channel} at stage {} ({}) (statement {}){why}",
        caller.0,
        verb.done(),
        answer.stage,
        answer.share,
        answer.sequence
    );
    Ok(Json(answer))
}

/// Ends the rollout and makes its candidate the channel's head, valid for the line's
/// `channel_expires`. The answer names the head's sequence and the plan's last stage.
async fn finish(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((line, channel)): Path<(String, String)>,
) -> Result<Json<RolloutAnswer>, Failure> {
    let target = format!("{channel} rollout finish");
    daemon.authorize(&caller, Action::Promote, Some(&line), Some(&target))?;
    let release_line = line_channel(&daemon, &line, &channel)?;
    let answer = signed(&daemon, async {
        let repository = &release_line.repository;
        // The plan's length, read before: afterwards the head names the candidate, and the
        // rollout's statements stay with the release it replaced.
        let before =
            rollout::status(repository, &channel, &daemon.promoter, &daemon.registry).await?;
        let sequence = rollout::finish(
            repository,
            &channel,
            release_line.channel_expires,
            &daemon.promoter,
            &daemon.registry,
        )
        .await?;
        Ok(RolloutAnswer {
            channel: channel.clone(),
            sequence,
            state: RolloutState::Finished.to_string(),
            stage: before.rollout.map_or(0, |r| r.stages.len()),
            share: Share::from_basis_points(WHOLE_CHANNEL)
                .map_err(anyhow::Error::msg)?
                .to_string(),
        })
    })
    .await?;
    eprintln!(
        "distd: {} finished the rollout on {line}/{channel}: the candidate is its head {}",
        caller.0, answer.sequence
    );
    Ok(Json(answer))
}

#[cfg(test)]
mod tests;
