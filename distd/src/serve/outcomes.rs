//! `POST /v1/outcomes`: build hosts' job outcomes, checked and kept for the rollout judge. A
//! host sends the records of jobs its agent served, with its own SVID; each record counts only
//! for the stage its release, stage and sequence name, and only if the plan puts the sending
//! host in the arm it names (`live::LiveRollouts::classify`). The rest are dropped and counted
//! by reason, never an error: the agent sends each record once.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Json, Router};
use distd_api::wire::{Action, MAX_OUTCOME_BATCH, OutcomeAnswer, OutcomeBatch};
use jiff::Timestamp;

use super::api::{Caller, Failure, Shared};
use super::judge::read_rollouts_since;
use super::live::{Dropped, StageKey};
use distd_api::outcome::OutcomeRecord;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/outcomes", post(receive))
}

async fn receive(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    Json(batch): Json<OutcomeBatch>,
) -> Result<Json<OutcomeAnswer>, Failure> {
    // Allowed batches are not audited one by one (every host sends every few seconds); a
    // caller with no `report` grant at all is refused, and that is.
    if daemon
        .config
        .grants
        .check(&caller.0, Action::Report, None)
        .is_err()
    {
        daemon.authorize(&caller, Action::Report, None, None)?;
    }
    if batch.records.len() > MAX_OUTCOME_BATCH {
        return Err(Failure::bad_request(format!(
            "a batch carries at most {MAX_OUTCOME_BATCH} records, not {}",
            batch.records.len()
        )));
    }
    if let Some(since) = read_needed(&daemon, &batch)
        && let Err(e) = read_rollouts_since(&daemon, since).await
    {
        eprintln!("distd: {e:#}");
    }
    let caller_id = caller.0.as_str();
    let mut answer = OutcomeAnswer::default();
    let mut dropped: HashMap<Dropped, u64> = HashMap::new();
    let mut accepted: HashMap<StageKey, Vec<&OutcomeRecord>> = HashMap::new();
    {
        let live = daemon.live.read().unwrap_or_else(|e| e.into_inner());
        if !live.is_read() {
            return Err(Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "the daemon has not read its lines' rollouts yet: send the batch again".into(),
            ));
        }
        for record in &batch.records {
            let counted = live.classify(caller_id, record).and_then(|stage| {
                daemon
                    .config
                    .grants
                    .check(&caller.0, Action::Report, Some(&stage.line))
                    .map(|()| stage)
                    .map_err(|_| Dropped::NotGranted)
            });
            match counted {
                Ok(stage) => accepted.entry(stage.key()).or_default().push(record),
                Err(why) => *dropped.entry(why).or_default() += 1,
            }
        }
    }
    for (key, records) in &accepted {
        daemon.journal.append_outcomes(key, records).map_err(|e| {
            Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("keeping the outcomes: {e:#}"),
            )
        })?;
        for record in records {
            daemon.metrics.rollout_outcome(
                &key.line,
                &key.channel,
                &record.arm.to_string(),
                &record.result.to_string(),
            );
        }
        answer.accepted += records.len() as u64;
    }
    for (why, count) in dropped {
        daemon.metrics.rollout_dropped(why.as_str(), count);
        answer.dropped.insert(why.as_str().to_owned(), count);
    }
    Ok(Json(answer))
}

/// Since when the daemon must have read the rollouts to judge `batch`: its latest serving time
/// when the last read began before it, now when a record names a statement the last read did
/// not see (its host's clock behind the daemon's), else nothing.
fn read_needed(daemon: &Shared, batch: &OutcomeBatch) -> Option<Timestamp> {
    let live = daemon.live.read().unwrap_or_else(|e| e.into_inner());
    if batch.records.iter().any(|r| live.unseen(r)) {
        return Some(Timestamp::now());
    }
    let served = batch.records.iter().map(|r| r.served_at).max()?;
    live.older_than(served).then_some(served)
}
