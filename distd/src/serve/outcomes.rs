//! `POST /v1/outcomes`: build hosts' job outcomes, checked and kept for the rollout judge.

use axum::Router;

use super::api::Shared;

pub fn routes() -> Router<Shared> {
    Router::new()
}
