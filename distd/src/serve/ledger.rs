//! `POST /v1/ledger` appends what a caller signed to the daemon's ledger; `GET /v1/ledger`
//! serves the whole ledger to readers (the monitor, `distd ledger verify`). A caller records
//! only its own signatures: an intent must name the caller's SPIFFE ID, and a logged record
//! an intent of the caller's.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Json, Router};
use distd_api::ledger::{LedgerEvent, LedgerRecord, check};
use distd_api::wire::Action;

use super::api::{Caller, Failure, Shared};

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/ledger", get(read).post(append))
}

async fn append(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    Json(event): Json<LedgerEvent>,
) -> Result<Json<LedgerRecord>, Failure> {
    let target = match &event {
        LedgerEvent::Intent(intent) => intent.subject.clone(),
        LedgerEvent::Logged(logged) => format!("intent {}", logged.intent),
    };
    daemon.authorize(&caller, Action::Ledger, None, Some(&target))?;
    let signer = match &event {
        LedgerEvent::Intent(intent) => intent.spiffe_id.clone(),
        LedgerEvent::Logged(logged) => {
            let text = daemon.ledger.read().await.map_err(internal)?;
            let ledger = check(&text).map_err(|e| {
                Failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the daemon's ledger is broken: {e}"),
                )
            })?;
            ledger
                .intent(logged.intent)
                .ok_or_else(|| {
                    Failure::bad_request(format!(
                        "record {} of the ledger is not an intent",
                        logged.intent
                    ))
                })?
                .spiffe_id
                .clone()
        }
    };
    if signer != caller.0.as_str() {
        return Err(Failure(
            StatusCode::FORBIDDEN,
            format!(
                "{} may record only what it signed itself, not a statement of {signer}",
                caller.0
            ),
        ));
    }
    let record = daemon
        .ledger
        .append(event, Some(caller.0.to_string()))
        .await
        .map_err(internal)?;
    Ok(Json(record))
}

async fn read(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Failure> {
    daemon.authorize(&caller, Action::Read, None, None)?;
    let text = daemon.ledger.read().await.map_err(internal)?;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from(text))
        .expect("a static response builds"))
}

fn internal(e: anyhow::Error) -> Failure {
    Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}
